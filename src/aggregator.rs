//! Assembles the aggregator from a [`Config`]: the node pool, the cache, the
//! merged tree, the 9P server on every listen address and, when
//! configured, the HTTP listener for metrics scrapers, and applies
//! config reloads (SIGHUP) without dropping the connections of nodes that
//! stay.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cache::Cache;
use crate::client::pool::{NodeSpec, Pool, PoolOptions};
use crate::config::{AuthMode, Config, ConnectMode, PoolConfig};
use crate::net::Address;
use crate::server::listener::Listener;
use crate::server::{AccessPolicy, Server, ServerConfig};
use crate::tree::Tree;
use crate::view::Views;

/// The pool's node table from the config's.
pub fn pool_specs(cfg: &Config) -> Vec<NodeSpec> {
    cfg.nodes
        .iter()
        .map(|n| NodeSpec {
            name: n.name.clone(),
            address: n.address.clone(),
            aname: n.aname.clone(),
            uname: n.uname.clone(),
            uid: n.uid,
            dialect: n.dialect,
            munge: n.munge,
        })
        .collect()
}

/// The pool's options from the config's `[pool]`.
pub fn pool_options(p: &PoolConfig) -> PoolOptions {
    PoolOptions {
        max_in_flight: p.max_in_flight,
        max_in_flight_per_node: p.max_in_flight_per_node,
        max_in_flight_per_user: p.max_in_flight_per_user,
        request_timeout: p.request_timeout,
        connect_timeout: p.connect_timeout,
        reconnect_min: p.reconnect_min,
        reconnect_max: p.reconnect_max,
        connect_concurrency: p.connect_concurrency,
        msize: p.msize,
    }
}

/// The pool's defaults are the `[pool]` section's, written once, in
/// [`PoolConfig`].
impl Default for PoolOptions {
    fn default() -> Self {
        pool_options(&PoolConfig::default())
    }
}

/// The views' config, with the service users (`[server] service_users`)
/// among the administrators: they may name any user, root included, so
/// they see everything anyway; an aggregator above this one reads its
/// tables as one of them.
fn views_config(cfg: &Config) -> crate::config::ViewsConfig {
    let mut v = cfg.views.clone();
    v.admin_users
        .extend(cfg.server.service_users.iter().cloned());
    v
}

/// The uids of `[server] service_users` (root is always one); a name the
/// user database does not know is left out with a warning.
fn service_uids(cfg: &Config) -> Vec<u32> {
    let mut uids = vec![0];
    for u in &cfg.server.service_users {
        match u {
            crate::config::Ident::Id(id) => uids.push(*id),
            crate::config::Ident::Name(n) => match crate::sys::users::uid_by_name(n) {
                Some(id) => uids.push(id),
                None => warn!("[server] service_users: no user named {n:?} here; left out"),
            },
        }
    }
    uids
}

/// This aggregator's name: `[server] name`, else the host name.
fn own_name(cfg: &Config) -> String {
    cfg.server
        .name
        .clone()
        .unwrap_or_else(crate::sys::host_name)
}

/// A running aggregator.
pub struct Aggregator {
    /// The merged tree (shared with the server).
    pub tree: Arc<Tree>,
    /// The addresses actually bound (with real ports).
    pub addresses: Vec<Address>,
    /// Where the metrics listener is bound, when `[metrics] listen` is set.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Cancel to stop serving.
    pub shutdown: CancellationToken,
    /// The server task; ends after `shutdown` once connections drain.
    pub task: tokio::task::JoinHandle<()>,
}

impl Aggregator {
    /// Binds every listen address of `cfg` and starts serving.
    ///
    /// # Errors
    /// An address cannot be bound, or the open-file limit cannot hold the
    /// configured nodes.
    pub async fn start(cfg: &Config, shutdown: CancellationToken) -> Result<Aggregator> {
        let needed = cfg.nodes.len() as u64 + cfg.server.max_connections as u64 + 64;
        match crate::sys::raise_nofile_limit(needed) {
            Ok(n) => {
                info!("open-file limit {n} (needs about {needed}: one per node, one per client)")
            }
            Err(e) => warn!("{e}"),
        }
        let pool = Pool::new(pool_specs(cfg), pool_options(&cfg.pool));
        let cache = Cache::new(cfg.cache.clone());
        let views = Views::new(views_config(cfg));
        views.spawn_refresher(shutdown.clone());
        let gauges = Arc::new(crate::server::Gauges::default());
        let tree = Tree::new(pool.clone(), cache, cfg.pool.deadline, views)
            .with_server_gauges(gauges.clone())
            .with_control(cfg.control.clone())
            .with_name(&own_name(cfg));
        if cfg.control.enabled {
            info!(
                "control on: process directories have ctl files (signals go to nodes as the writer)"
            );
        }
        let tree = Arc::new(tree);
        tree.spawn_job_allotments(shutdown.clone());
        let mut scfg = ServerConfig {
            max_connections: cfg.server.max_connections as usize,
            max_connections_per_principal: Some(cfg.server.max_connections_per_user as usize),
            unix_mode: cfg.server.socket_mode,
            ..ServerConfig::default()
        };
        scfg.limits.gauges = gauges;
        scfg.limits.max_msize = cfg.server.msize;
        scfg.limits.attach_timeout = cfg.server.attach_timeout;
        let bytes = |b: crate::config::ByteSize| usize::try_from(b.bytes()).unwrap_or(usize::MAX);
        scfg.limits.snapshot_bytes = crate::server::session::snapshot_shares(
            bytes(cfg.server.snapshot_bytes),
            bytes(cfg.server.snapshot_bytes_per_user),
        );
        // Unix peers are who the kernel says (root may name the user); TCP
        // needs a MUNGE credential, or is believed with auth = "none", or
        // is refused when auth is not configured.
        match &cfg.server.auth {
            Some(AuthMode::Munge) => {
                let m = crate::auth::Munge::new(own_name(cfg))
                    .map_err(|e| anyhow::anyhow!("auth = \"munge\": {e}"))?;
                scfg.limits.access = AccessPolicy {
                    verifier: Some(Arc::new(m)),
                    ..AccessPolicy::default()
                };
            }
            Some(AuthMode::None) => scfg.limits.access = AccessPolicy::believing_claims(),
            Some(AuthMode::Key(p)) => anyhow::bail!(
                "auth = key ({}) is not supported yet; use auth = \"munge\", or \"none\" on a trusted network",
                p.display()
            ),
            _ => {}
        }
        scfg.limits.access.service_uids = service_uids(cfg);
        let mut listeners = Vec::new();
        for a in &cfg.server.listen {
            match &cfg.server.auth {
                Some(AuthMode::None) if a.is_tcp() => {
                    warn!("{a}: auth = \"none\": TCP clients are trusted to say who they are")
                }
                None if a.is_tcp() => warn!(
                    "{a}: no auth configured: TCP attaches are refused \
                     (auth = \"munge\", or \"none\" on a trusted network)"
                ),
                _ => {}
            }
            listeners.push(Listener::bind(a, scfg.unix_mode).await?);
        }
        let addresses = listeners.iter().map(Listener::local_addr).collect();
        let mut metrics_address = None;
        if let Some(a) = cfg.metrics.listen {
            let l = crate::scrape::bind(a).await?;
            metrics_address = l.local_addr().ok();
            // What an administrator sees: the listener is the scrapers'.
            let t = tree.clone();
            let render: crate::scrape::Render = Arc::new(move || {
                let t = t.clone();
                Box::pin(async move {
                    (
                        t.metrics_for_admin().await,
                        crate::tree::METRICS_CONTENT_TYPE,
                    )
                })
            });
            tokio::spawn(crate::scrape::serve(l, render, shutdown.clone()));
        }
        if cfg.pool.connect == ConnectMode::Eager {
            let p = pool.clone();
            tokio::spawn(async move { p.connect_all().await });
        }
        let server = Server::new(tree.clone(), scfg);
        let sd = shutdown.clone();
        let task = tokio::spawn(async move { server.serve(listeners, sd).await });
        info!("aggregating {} nodes", cfg.nodes.len());
        Ok(Aggregator {
            tree,
            addresses,
            metrics_address,
            shutdown,
            task,
        })
    }

    /// Applies a new configuration: nodes added and removed (connections to
    /// unchanged nodes stay), cache rules replaced. Listen addresses and
    /// limits need a restart; a change there is logged.
    pub fn reload(&self, old: &Config, new: &Config) {
        let removed = self.tree.pool().set_nodes(pool_specs(new));
        self.tree.forget_pool_nodes(&removed);
        self.tree.cache().set_policy(new.cache.clone());
        self.tree.views().set_config(views_config(new));
        if old.server != new.server {
            warn!("[server] changed: listen addresses and limits apply after a restart");
        }
        if old.control != new.control {
            warn!("[control] changed: applies after a restart");
        }
        if old.metrics != new.metrics {
            warn!("[metrics] changed: the metrics listener applies after a restart");
        }
        if old.cache.max_bytes != new.cache.max_bytes {
            warn!("cache.max_bytes changed: applies after a restart");
        }
        info!(
            "configuration reloaded: {} nodes ({} removed or changed), {} cache rules",
            new.nodes.len(),
            removed.len(),
            new.cache.rules.len()
        );
    }
}

/// `gproc serve`: runs until SIGINT/SIGTERM, reloading `path` on SIGHUP.
///
/// # Errors
/// The config is invalid at start (every error is listed) or an address
/// cannot be bound.
pub async fn run(path: PathBuf) -> Result<()> {
    let mut cfg = Config::load(&path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("invalid configuration, not started")?;
    for w in &cfg.warnings {
        warn!("{w}");
    }
    let shutdown = crate::server::listener::shutdown_on_signals();
    let agg = Aggregator::start(&cfg, shutdown.clone()).await?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", path.display());
                match Config::load(&path) {
                    Ok(new) => {
                        for w in &new.warnings {
                            warn!("{w}");
                        }
                        agg.reload(&cfg, &new);
                        cfg = new;
                    }
                    Err(e) => error!("reload refused, keeping the running configuration:\n{e}"),
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    let _ = agg.task.await;
    Ok(())
}

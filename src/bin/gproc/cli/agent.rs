//! `gproc agent`: serve a node's /proc over 9P.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use gproc::agent::ProcFs;
use gproc::net::Address;
use gproc::server::listener::Cidr;
use gproc::server::listener::{Listener, shutdown_on_signals};
use gproc::server::{AccessPolicy, Server, ServerConfig};

/// Options of `gproc agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to serve on: host:port or unix:/path (repeatable).
    #[arg(long, short, required = true, value_parser = parse_addr)]
    listen: Vec<Address>,
    /// The tree to serve.
    #[arg(long, default_value = "/proc")]
    root: PathBuf,
    /// Largest 9P message size offered to clients.
    #[arg(long, default_value_t = 1 << 20)]
    msize: u32,
    /// Connections served at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Accept TCP connections only from these addresses or blocks
    /// (repeatable; e.g. the aggregator's 10.0.0.5 or 10.0.0.0/24).
    #[arg(long, value_parser = Cidr::parse)]
    allow: Vec<Cidr>,
    /// Require MUNGE authentication of TCP clients (diod-compatible).
    #[arg(long, value_parser = ["munge"])]
    auth: Option<String>,
    /// With --auth: the users allowed to attach (repeatable; default root),
    /// i.e. the aggregator's service user.
    #[arg(long = "allow-user")]
    allow_users: Vec<String>,
}

pub(crate) fn parse_addr(s: &str) -> Result<Address, String> {
    s.parse()
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(a: AgentArgs) -> Result<ExitCode> {
    let fs = ProcFs::new(&a.root).with_context(|| format!("cannot serve {}", a.root.display()))?;
    let mut cfg = ServerConfig {
        max_connections: a.max_connections,
        allow: a.allow.clone(),
        ..ServerConfig::default()
    };
    cfg.limits.max_msize = a.msize.max(gproc::proto::MIN_MSIZE);
    if a.auth.is_some() {
        let m = gproc::auth::Munge::new().map_err(|e| anyhow::anyhow!("--auth munge: {e}"))?;
        let names = if a.allow_users.is_empty() {
            vec!["root".to_string()]
        } else {
            a.allow_users.clone()
        };
        let mut uids = Vec::new();
        for n in &names {
            let uid = n.parse().ok().or_else(|| gproc::sys::users::uid_by_name(n));
            uids.push(uid.with_context(|| format!("--allow-user {n}: no such user"))?);
        }
        // TCP clients need a verified credential; Unix peers are who the
        // kernel says; only the allowed users (or users named by root) in.
        cfg.limits.access = AccessPolicy {
            verifier: Some(Arc::new(m)),
            allow: Some(uids),
            ..AccessPolicy::default()
        };
    } else if !a.allow_users.is_empty() {
        anyhow::bail!(
            "--allow-user needs --auth munge: without it TCP clients have no proven identity"
        );
    }
    if a.auth.is_none() {
        // Without --auth the agent serves whoever connects, as whom they say.
        cfg.limits.access = AccessPolicy::believing_claims();
    }
    if a.allow.is_empty() && a.auth.is_none() && a.listen.iter().any(Address::is_tcp) {
        tracing::warn!(
            "any host that reaches the TCP port can read this node's /proc: use --allow and/or --auth munge"
        );
    }
    let mut listeners = Vec::new();
    for addr in &a.listen {
        listeners.push(Listener::bind(addr, cfg.unix_mode).await?);
    }
    let shutdown = shutdown_on_signals();
    Server::new(Arc::new(fs), cfg)
        .serve(listeners, shutdown)
        .await;
    Ok(ExitCode::SUCCESS)
}

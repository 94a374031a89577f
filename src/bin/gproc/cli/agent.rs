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
    /// Connections one user (a Unix peer's uid; a TCP address until its
    /// attach proves a uid) may hold. Default: an eighth of
    /// --max-connections; service users keep another eighth.
    #[arg(long)]
    max_connections_per_user: Option<usize>,
    /// Bytes of open-file snapshots one user may hold on this agent, on
    /// all connections together (e.g. 128MiB, the default; the agent holds
    /// at most 1GiB in all, an eighth of it reserved for service users).
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    snapshot_bytes_per_user: usize,
    /// Accept TCP connections only from these addresses or blocks
    /// (repeatable; e.g. the aggregator's 10.0.0.5 or 10.0.0.0/24).
    #[arg(long, value_parser = Cidr::parse)]
    allow: Vec<Cidr>,
    /// How TCP clients prove who they are: `munge` (diod-compatible), or
    /// `none` to believe the user they name (trusted networks and tests
    /// only; warned). Required when listening on TCP.
    #[arg(long, value_parser = ["munge", "none"])]
    auth: Option<String>,
    /// Service users: they may attach (with --allow-user, only they may,
    /// besides users named by root), name other users in `Tattach` over
    /// the Unix socket, and are served with the agent's own credentials
    /// (repeatable; e.g. the aggregator's service user). Everyone else is
    /// served as themselves.
    #[arg(long = "allow-user")]
    allow_users: Vec<String>,
    /// Permissions of the Unix sockets (octal). 0600: only the agent's own
    /// user; open it to a group with --socket-group and 0660.
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    socket_mode: u32,
    /// Group owning the Unix sockets (name or gid).
    #[arg(long)]
    socket_group: Option<String>,
    /// This node's name as the aggregator's config spells it: MUNGE
    /// credentials addressed to another name are refused. Default: the
    /// host name.
    #[arg(long)]
    name: Option<String>,
    /// Let users signal processes: every process directory gets a `ctl`
    /// file (write kill, term, stop, cont, signal N or signal NAME). The
    /// signal is sent as the writer's own uid, so the node's kernel decides
    /// whom they may signal; every signal is logged (target gproc::audit).
    /// Off by default: without it the tree is read-only.
    #[arg(long)]
    control: bool,
    /// A cgroup path pattern naming a batch job, tried before the built-in
    /// ones (Slurm cgroup v1 and v2, PBS) (repeatable). Components from
    /// the hierarchy's root, the first one literal; `*` matches within one
    /// component; {job} (required) and {step} capture the ids, e.g.
    /// `/flux.slice/imp-shell-*-{job}.service`. Anchor it at a root only
    /// the workload manager writes, so users' own cgroups cannot pose as
    /// jobs.
    #[arg(long = "job-cgroup", value_name = "PATTERN", value_parser = parse_job_pattern)]
    job_cgroups: Vec<String>,
    /// Whether the summary says which GPUs each process has open (a stat
    /// of its descriptors): `auto` where the node has an NVIDIA or AMD
    /// GPU driver or a DRM render node (looked at again every minute),
    /// `always`, or `never` (GPUs unknown).
    #[arg(long, default_value = "auto", value_name = "WHEN")]
    gpus: gproc::agent::gpus::GpuMode,
    /// Descriptors looked at per process for GPUs; a process with more
    /// is marked `+` (its later descriptors not looked at).
    #[arg(long, default_value_t = gproc::agent::gpus::DEFAULT_FD_CAP, value_name = "N")]
    gpu_fd_cap: usize,
    /// How long a process's GPU scan is reused before it is scanned again
    /// (seconds; each process between half this and this, by its pid, so
    /// rescans spread; a new process is scanned at once).
    #[arg(long, default_value_t = gproc::agent::gpus::DEFAULT_RESCAN.as_secs(), value_name = "SECONDS")]
    gpu_rescan: u64,
    /// Worker threads of the agent's runtime (1 to 64). One serves a
    /// node's readers: reads that can block on another process's memory
    /// run on threads of their own anyway, and fewer threads mean less
    /// noise on a compute node.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
}

fn parse_job_pattern(s: &str) -> Result<String, String> {
    gproc::format::jobs::JobPattern::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<usize, String> {
    let b = gproc::config::ByteSize::parse(s).map_err(|e| e.to_string())?;
    usize::try_from(b.bytes()).map_err(|_| format!("{s:?}: too large"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?}: expected an octal mode such as 0600"))
}

pub(crate) fn parse_addr(s: &str) -> Result<Address, String> {
    s.parse()
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(a: AgentArgs) -> Result<ExitCode> {
    let euid = rustix::process::geteuid().as_raw();
    if euid == 0 {
        // setfsuid without CAP_SETUID silently does nothing: an agent
        // that cannot switch would serve other users as root.
        gproc::sys::creds::check_capabilities()
            .map_err(|e| anyhow::anyhow!("refusing to serve other users as root: {e}"))?;
    }
    let mut service = Vec::new();
    for n in &a.allow_users {
        let uid = n.parse().ok().or_else(|| gproc::sys::users::uid_by_name(n));
        service.push(uid.with_context(|| format!("--allow-user {n}: no such user"))?);
    }
    // Descriptors: one per connection, per process directory a fid holds
    // and per file being read; the held directories' shares are half of
    // the limit in force when the tree is opened.
    match gproc::sys::raise_nofile_limit(a.max_connections as u64 + 64) {
        Ok(n) => tracing::debug!("open-file limit {n}"),
        Err(e) => tracing::warn!("{e}"),
    }
    let jobs = gproc::format::jobs::JobRules::with_site(&a.job_cgroups)
        .map_err(|e| anyhow::anyhow!("--job-cgroup: {e}"))?;
    let fs = ProcFs::new(&a.root)
        .with_context(|| format!("cannot serve {}", a.root.display()))?
        .with_service_uids(service.iter().copied())
        .with_control(a.control)
        .with_job_rules(jobs)
        .with_gpu_scan(gproc::agent::gpus::GpuScan::new(
            a.gpus,
            a.gpu_fd_cap,
            std::time::Duration::from_secs(a.gpu_rescan),
        ));
    if a.control {
        tracing::info!("control on: process directories have a ctl file (signals as the writer)");
    }
    if !fs.can_act_as_users() {
        tracing::warn!(
            "running as uid {euid} without CAP_SETUID/CAP_SETGID: serving only uid {euid}, other users are refused"
        );
    }
    let mut cfg = ServerConfig {
        max_connections: a.max_connections,
        max_connections_per_principal: a.max_connections_per_user,
        allow: a.allow.clone(),
        unix_mode: a.socket_mode,
        ..ServerConfig::default()
    };
    cfg.limits.max_msize = a.msize.max(gproc::proto::MIN_MSIZE);
    cfg.limits.snapshot_bytes =
        gproc::server::session::snapshot_shares(1 << 30, a.snapshot_bytes_per_user);
    let tcp = a.listen.iter().any(Address::is_tcp);
    let mut access = AccessPolicy::default();
    if !service.is_empty() {
        // Only the service users (or users they or root name) attach.
        access.service_uids.extend(service.iter().copied());
        access.allow = Some(service.clone());
    }
    match a.auth.as_deref() {
        Some("munge") => {
            let name = a.name.clone().unwrap_or_else(gproc::sys::host_name);
            let m =
                gproc::auth::Munge::new(name).map_err(|e| anyhow::anyhow!("--auth munge: {e}"))?;
            access.verifier = Some(Arc::new(m));
        }
        Some(_) => {
            if !service.is_empty() {
                anyhow::bail!(
                    "--allow-user needs --auth munge: with --auth none TCP clients have no proven identity"
                );
            }
            tracing::warn!(
                "--auth none: TCP clients are believed to be whoever they name; use only on a trusted network"
            );
            access.believe_claims = true;
        }
        None if tcp => anyhow::bail!(
            "listening on TCP needs --auth munge (or --auth none on a trusted network, where clients are believed)"
        ),
        None => {}
    }
    if a.allow.is_empty() && a.auth.as_deref() == Some("none") && tcp {
        tracing::warn!(
            "any host that reaches the TCP port can read this node's /proc as any user it names: use --allow"
        );
    }
    cfg.limits.access = access;
    let group = match &a.socket_group {
        Some(g) => Some(
            g.parse()
                .ok()
                .or_else(|| gproc::sys::users::gid_by_name(g))
                .with_context(|| format!("--socket-group {g}: no such group"))?,
        ),
        None => None,
    };
    let mut listeners = Vec::new();
    for addr in &a.listen {
        let l = Listener::bind(addr, cfg.unix_mode).await?;
        if let (Some(gid), Address::Unix(p)) = (group, addr) {
            rustix::fs::chown(p, None, Some(rustix::fs::Gid::from_raw(gid)))
                .with_context(|| format!("--socket-group: chown {}", p.display()))?;
        }
        listeners.push(l);
    }
    let shutdown = shutdown_on_signals();
    Server::new(Arc::new(fs), cfg)
        .serve(listeners, shutdown)
        .await;
    Ok(ExitCode::SUCCESS)
}

//! `gproc agent`: serve a node's /proc over 9P.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use crate::agent::ProcFs;
use crate::net::Address;
use crate::server::listener::{Listener, shutdown_on_signals};
use crate::server::{Server, ServerConfig};

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
}

pub(crate) fn parse_addr(s: &str) -> Result<Address, String> {
    s.parse()
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(a: AgentArgs) -> Result<ExitCode> {
    let fs = ProcFs::new(&a.root).with_context(|| format!("cannot serve {}", a.root.display()))?;
    let mut cfg = ServerConfig {
        max_connections: a.max_connections,
        ..ServerConfig::default()
    };
    cfg.limits.max_msize = a.msize.max(crate::proto::MIN_MSIZE);
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

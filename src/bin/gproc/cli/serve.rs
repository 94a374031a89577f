//! `gproc serve` and `gproc config check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

/// Options of `gproc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The aggregator's configuration (TOML); see config/gproc.toml.
    ///
    /// Sections: [server] (9P listen addresses, auth, limits), [pool],
    /// [[nodes]], [cache], [views] and [metrics]. `[metrics] listen =
    /// "127.0.0.1:9464"` also answers `GET /metrics` over HTTP for
    /// Prometheus scrapers: unauthenticated, with what an administrator
    /// sees in the tree's /metrics (per-node state, load and memory, the
    /// aggregator's counters; never a process). A non-loopback address
    /// draws a warning. Absent: no HTTP listener.
    #[arg(long, short)]
    config: PathBuf,
}

impl ServeArgs {
    /// The runtime's worker threads: `[server] threads` of the
    /// configuration, or one per [`gproc::sys::NODES_PER_WORKER`] of its
    /// nodes. Read once, at start: a reload does not change it. A file
    /// that does not load gets one worker; [`run`] reports why it failed.
    pub fn worker_threads(&self) -> usize {
        gproc::config::Config::load(&self.config).map_or(1, |c| c.worker_threads())
    }
}

/// Runs the aggregator until SIGINT/SIGTERM; SIGHUP reloads the config.
pub async fn run(a: ServeArgs) -> Result<ExitCode> {
    gproc::aggregator::run(a.config).await?;
    Ok(ExitCode::SUCCESS)
}

/// `gproc config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate a configuration file; every error is listed with its line.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// Runs `gproc config check`: exit 0 and a summary when valid, 1 and every
/// error (`file:line:col: key: message`) when not.
pub fn run_config(c: ConfigCmd) -> Result<ExitCode> {
    match c {
        ConfigCmd::Check { file } => match gproc::config::check_file(&file) {
            Ok(summary) => {
                println!("{summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

//! `gproc bench ...`: the benchmarks that produce BENCHMARKS.md.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::bench;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Node side: gproc agent vs diod reading this machine's /proc.
    Agent {
        /// Passes over every process's stat and status.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

/// Runs one benchmark.
pub async fn run(c: BenchCmd) -> Result<ExitCode> {
    match c {
        BenchCmd::Agent {
            rounds,
            concurrency,
        } => {
            bench::agent::run(bench::agent::AgentBench {
                rounds,
                concurrency,
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `gproc sim`: host many synthetic nodes, each a 9P server on its own
//! loopback address, and write the aggregator configuration that reaches
//! them.

use std::io::{IsTerminal, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use gproc::server::listener::shutdown_on_signals;
use gproc::sim::{SimCluster, SimOptions};

/// Options of `gproc sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of simulated nodes.
    #[arg(long, short = 'n')]
    nodes: usize,
    /// Processes per node (kernel threads, daemons, jobs, shells).
    #[arg(long, default_value_t = 100)]
    procs_per_node: usize,
    /// Seed: the same seed gives the same cluster, byte for byte.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Processes started plus exited per node per minute.
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    churn: f64,
    /// Fraction of nodes that answer each request after 200 ms to 2 s.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    slow: f64,
    /// Fraction of nodes that accept and read but stop answering.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    hang: f64,
    /// Fraction of nodes that go away and come back (see --die-period).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    die: f64,
    /// Fraction of nodes that answer with bytes that are not 9P.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    garbage: f64,
    /// Fraction of nodes that refuse connections.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    refuse: f64,
    /// Fraction of nodes where one process's maps is tens of MiB.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    huge: f64,
    /// Fraction of nodes without the /.gproc/ps summary (like diod).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    no_summary: f64,
    /// Mean flapping period of dying nodes ("60s", "5m").
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    die_period: Duration,
    /// Port every node listens on, each on its own address (0: any free).
    #[arg(long, default_value_t = 5640)]
    base_port: u16,
    /// Address of the first node (in 127.0.0.0/8).
    #[arg(long, default_value = "127.1.0.1")]
    first_address: Ipv4Addr,
    /// Node name prefix.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Give every process directory a `ctl` file that signals the
    /// simulated process (as agents with --control): the simulator believes
    /// the uid a client names and lets root signal anything, others only
    /// their own processes; each signal is logged (target gproc::audit).
    /// The aggregator needs `[control] enabled = true` to pass signals on.
    #[arg(long)]
    control: bool,
    /// Write the aggregator configuration here instead of to stdout.
    #[arg(long, value_name = "FILE")]
    config_out: Option<PathBuf>,
    /// Worker threads of the simulator's runtime (1 to 1024). Default: one
    /// per 4,000 nodes, at most one per core; each simulated node stands
    /// for an agent, which runs one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

impl SimArgs {
    /// The runtime's worker threads: `--threads`, or one per
    /// [`gproc::sys::NODES_PER_WORKER`] nodes.
    pub fn worker_threads(&self) -> usize {
        self.threads
            .map_or_else(|| gproc::sys::workers_for_nodes(self.nodes), usize::from)
    }
}

/// Starts the cluster and serves until SIGINT/SIGTERM.
pub async fn run(a: SimArgs) -> Result<ExitCode> {
    let opts = SimOptions {
        nodes: a.nodes,
        procs_per_node: a.procs_per_node,
        seed: a.seed,
        churn_per_min: a.churn,
        slow: a.slow,
        hang: a.hang,
        die: a.die,
        garbage: a.garbage,
        refuse: a.refuse,
        huge: a.huge,
        no_summary: a.no_summary,
        base_port: a.base_port,
        first_address: a.first_address,
        name_prefix: a.prefix,
        die_period: a.die_period,
        control: a.control,
        ..SimOptions::default()
    };
    let shutdown = shutdown_on_signals();
    let t0 = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_shown = Instant::now();
    let cluster = SimCluster::start_with_progress(opts, |done, total| {
        // On a terminal one updating line; otherwise a line per 10%.
        if tty {
            if done == total || last_shown.elapsed() >= Duration::from_millis(100) {
                eprint!("\rstarting nodes: {done}/{total}");
                if done == total {
                    eprintln!();
                }
                last_shown = Instant::now();
            }
        } else if total >= 1000 && done % (total / 10).max(100) == 0 {
            eprintln!("starting nodes: {done}/{total}");
        }
    })
    .await
    .context("cannot start the simulated cluster")?;
    let took = t0.elapsed();

    let config = cluster.config_toml();
    match &a.config_out {
        Some(p) => {
            // Written whole, then renamed: a reader polling for the file
            // never sees half of it.
            let mut tmp = p.clone().into_os_string();
            tmp.push(".tmp");
            std::fs::write(&tmp, &config)
                .and_then(|_| std::fs::rename(&tmp, p))
                .with_context(|| format!("cannot write the config to {}", p.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(config.as_bytes())?;
            out.flush()?;
        }
    }

    let nodes = cluster.nodes();
    let (first, last) = match (nodes.first(), nodes.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => anyhow::bail!("no nodes"),
    };
    let o = cluster.sim().options();
    eprintln!(
        "gproc sim: {} nodes {}..{} on {}..{}{}, {} processes each ({} in all), seed {}, churn {}/min; started in {:.2?}",
        nodes.len(),
        first.name,
        last.name,
        first.addr,
        last.addr,
        if cluster.single_address() {
            " (per-node addresses unavailable: one address, a port per node)"
        } else {
            ""
        },
        o.procs_per_node,
        cluster.total_processes(),
        o.seed,
        o.churn_per_min,
        took,
    );
    if let Some(w) = cluster.fd_warning() {
        eprintln!("warning: {w}");
    }
    let faults = cluster.describe_faults();
    if faults.is_empty() {
        eprintln!("faults: none");
    } else {
        eprintln!("faults:");
        for f in faults {
            eprintln!("  {f}");
        }
    }
    if a.control {
        eprintln!(
            "control: on (every process has a ctl file; give the aggregator [control] enabled = true)"
        );
    }
    if let Some(p) = &a.config_out {
        eprintln!("aggregator config written to {}", p.display());
    }
    eprintln!("serving; stop with Ctrl-C");
    shutdown.cancelled().await;
    cluster.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

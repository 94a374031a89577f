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
    /// The agent's node summary with and without the job field (a
    /// `cgroup` read and match per process), same run.
    Summary {
        /// Summaries built of each kind.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        /// Extra `sleep` processes to start for the run (as root, half in
        /// a Slurm-shaped job cgroup made for the run).
        #[arg(long, default_value_t = 500)]
        spawn: usize,
    },
    /// The aggregator's cold `/ps` work per node without the network:
    /// simulated summaries parsed and rendered in this process, by stage,
    /// against copying the same bytes.
    Tables {
        /// Simulated nodes.
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// Processes per node.
        #[arg(long, default_value_t = 100)]
        procs_per_node: usize,
        /// Passes of each stage (the median is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// The aggregator over simulated nodes: connect, fan-out, ps cold/warm,
    /// RSS per node, CPU per ps, cache hit ratio, vs a naive client.
    Cluster {
        /// Node counts, comma-separated (one row each).
        #[arg(long, default_value = "100,1000,2000", value_delimiter = ',')]
        nodes: Vec<usize>,
        /// Processes per node.
        #[arg(long, default_value_t = 100)]
        procs_per_node: usize,
        /// Requests in flight for the naive per-process client.
        #[arg(long, default_value_t = 256)]
        naive_concurrency: usize,
        /// Skip the naive client above this many nodes.
        #[arg(long, default_value_t = 2000)]
        naive_max_nodes: usize,
        /// TTL of the summary cache rule; make it longer than a cold `ps`
        /// takes (10,000 nodes: 30s) so the warm row is a cache hit.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        summary_ttl: std::time::Duration,
        /// Cold `/ps` reads to measure (each after the summaries expired,
        /// so each is a whole rebuild); the CPU column shows their median.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
        cold_rounds: u32,
        /// With `--aggregator-exe`: refreshes of `gproc top`'s tables
        /// (`/load`, `/ps`, `/nodes`) once a second per binary, after the
        /// cold rounds: each aggregator's CPU per refresh. Use a summary
        /// TTL under a second (`--summary-ttl 500ms`) so that every
        /// refresh reads every node again, as a live view does.
        #[arg(long, default_value_t = 0)]
        live_refreshes: usize,
        /// 2: the nodes behind `--racks` rack aggregators under a top one,
        /// against the same nodes flat, in one run (first `--nodes` only).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        levels: u8,
        /// Rack aggregators with `--levels 2`.
        #[arg(long, default_value_t = 10)]
        racks: usize,
        /// Compare these gproc binaries instead (comma-separated): each
        /// runs `gproc serve` in a process of its own over the same
        /// simulated nodes (first `--nodes` only), and its own CPU per
        /// cold and warm `/ps` is shown, in alternating rounds.
        #[arg(long, value_delimiter = ',')]
        aggregator_exe: Vec<std::path::PathBuf>,
    },
    /// Live refresh: a table over simulated nodes read once a second, the
    /// node summaries refreshed by deltas vs whole reads (same run), and
    /// the real agent's CPU share when read once a second.
    Live {
        /// Simulated nodes.
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// Processes per node.
        #[arg(long, default_value_t = 100)]
        procs_per_node: usize,
        /// Refreshes of each kind (one a second).
        #[arg(long, default_value_t = 10)]
        refreshes: usize,
        /// Tables read at each refresh, comma-separated.
        #[arg(long, default_value = "load,ps", value_delimiter = ',')]
        tables: Vec<String>,
        /// Seconds the agent on this machine is read (0: skip).
        #[arg(long, default_value_t = 20)]
        agent_seconds: usize,
    },
    /// Reading as the user: ps and cat as an administrator vs as a user,
    /// and node reads for many users reading /ps at once vs one.
    Views {
        /// Simulated nodes.
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// Processes per node.
        #[arg(long, default_value_t = 100)]
        procs_per_node: usize,
        /// Users reading /ps at once.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// TTL of the summary cache rule (longer than a cold ps takes).
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        summary_ttl: std::time::Duration,
    },
    /// One job's processes: /job/<id>/ps (filtered at the aggregator) vs
    /// gproc ps -j (all of /ps filtered by the client), cold and warm.
    Jobs {
        /// Simulated nodes.
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// Processes per node.
        #[arg(long, default_value_t = 100)]
        procs_per_node: usize,
        /// Warm reads of each kind (the median is shown).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// TTL of the summary cache rule (longer than the warm reads take).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        summary_ttl: std::time::Duration,
    },
    /// Node faults behind the aggregator: what `/ps` and `/nodes` show for
    /// slow, hanging, flapping, garbage, refusing and huge-file nodes.
    Faults {
        /// Simulated nodes.
        #[arg(long, default_value_t = 200)]
        nodes: usize,
        /// Processes per node.
        #[arg(long, default_value_t = 50)]
        procs_per_node: usize,
        /// Fraction of the nodes with each fault.
        #[arg(long, default_value_t = 0.05)]
        fraction: f64,
        /// How long to keep reading.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// The pool's deadline for a table.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        deadline: std::time::Duration,
    },
    /// Many clients against one aggregator (its own process) over flapping
    /// simulated nodes: ops/s, latencies, errors by cause, RSS over time,
    /// and optionally a SIGKILL and restart of the aggregator.
    Load(bench::load::LoadBench),
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
        BenchCmd::Tables {
            nodes,
            procs_per_node,
            rounds,
        } => {
            tokio::task::spawn_blocking(move || {
                bench::tables::run(bench::tables::TablesBench {
                    nodes,
                    procs_per_node,
                    rounds,
                })
            })
            .await??;
        }
        BenchCmd::Summary { rounds, spawn } => {
            tokio::task::spawn_blocking(move || {
                bench::summary::run(bench::summary::SummaryBench { rounds, spawn })
            })
            .await??;
        }
        BenchCmd::Cluster {
            nodes,
            procs_per_node,
            summary_ttl,
            levels: 2,
            racks,
            ..
        } => {
            bench::levels::run(bench::levels::LevelsBench {
                nodes: nodes.first().copied().unwrap_or(10_000),
                procs_per_node,
                racks,
                summary_ttl,
            })
            .await?;
        }
        BenchCmd::Cluster {
            nodes,
            procs_per_node,
            naive_concurrency,
            naive_max_nodes,
            summary_ttl,
            cold_rounds,
            live_refreshes,
            aggregator_exe,
            ..
        } => {
            let b = bench::cluster::ClusterBench {
                sizes: nodes,
                procs_per_node,
                naive_concurrency,
                naive_max_nodes,
                summary_ttl,
                cold_rounds: cold_rounds as usize,
                live_refreshes,
            };
            if aggregator_exe.is_empty() {
                bench::cluster::run(b).await?;
            } else {
                bench::versus::run(&b, &aggregator_exe).await?;
            }
        }
        BenchCmd::Live {
            nodes,
            procs_per_node,
            refreshes,
            tables,
            agent_seconds,
        } => {
            bench::live::run(bench::live::LiveBench {
                nodes,
                procs_per_node,
                refreshes,
                tables,
                agent_seconds,
            })
            .await?;
        }
        BenchCmd::Views {
            nodes,
            procs_per_node,
            users,
            summary_ttl,
        } => {
            bench::views::run(bench::views::ViewsBench {
                nodes,
                procs_per_node,
                users,
                summary_ttl,
            })
            .await?;
        }
        BenchCmd::Jobs {
            nodes,
            procs_per_node,
            rounds,
            summary_ttl,
        } => {
            bench::jobs::run(bench::jobs::JobsBench {
                nodes,
                procs_per_node,
                rounds,
                summary_ttl,
            })
            .await?;
        }
        BenchCmd::Faults {
            nodes,
            procs_per_node,
            fraction,
            duration,
            deadline,
        } => {
            let b = bench::faults::FaultBench {
                nodes,
                procs_per_node,
                fraction,
                duration,
                deadline,
                ..bench::faults::FaultBench::default()
            };
            let r = bench::faults::run(&b).await?;
            bench::faults::print(&b, &r);
        }
        BenchCmd::Load(b) => {
            bench::load::run(b).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

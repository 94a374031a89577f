//! `gproc bench live`: a live refresh (`gproc top`, a repeated `ps`) of a
//! table over N simulated nodes once a second, with the node summaries
//! refreshed on the summary fid kept open (one read), by deltas since the
//! generation the aggregator holds
//! ([`gproc::format::delta`]) and by whole reads, in one run: the
//! aggregator's CPU per refresh and the bytes it reads. Then the real
//! agent on this machine answering one reader once a second, whole and
//! by delta: its CPU share.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::cluster::{read_as, start_sims};
use super::{cpu_seconds, print_table};
use gproc::aggregator::Aggregator;
use gproc::client::{Client, ClientOptions};
use gproc::config::Config;
use gproc::tree::SummaryRefresh;

/// Settings of the live refresh benchmark.
#[derive(Debug, Clone)]
pub struct LiveBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Processes per simulated node.
    pub procs_per_node: usize,
    /// Refreshes of each kind, one a second.
    pub refreshes: usize,
    /// The tables read at each refresh (`load`, `ps`).
    pub tables: Vec<String>,
    /// Seconds of the agent's part (0: skip it).
    pub agent_seconds: usize,
}

/// What blocks of refreshes of one kind took, summed.
#[derive(Default)]
struct Block {
    walls: Vec<Duration>,
    elapsed: f64,
    cpu: f64,
    reads: gproc::tree::SummaryReads,
    table_bytes: usize,
}

impl Block {
    fn row(self, table: &str, mode: SummaryRefresh) -> Vec<String> {
        let n = self.walls.len().max(1);
        let per = |v: u64| v as f64 / n as f64;
        let r = self.reads;
        let (p50, _, max) = super::percentiles(self.walls);
        vec![
            format!("/{table}"),
            mode_name(mode).to_string(),
            n.to_string(),
            format!("{:.0}", p50 / 1000.0),
            format!("{:.0}", max / 1000.0),
            format!("{:.3}", self.cpu / n as f64),
            format!("{:.2}", self.cpu / self.elapsed.max(1e-9)),
            format!("{:.0}", per(r.deltas)),
            format!("{:.0}", per(r.rereads)),
            format!("{:.0}", per(r.wholes)),
            format!("{:.0}", per(r.fallbacks)),
            format!("{:.2}", per(r.bytes) / 1e6),
            format!("{:.1}", self.table_bytes as f64 / 1e6),
        ]
    }
}

/// What a refresh mode is called in the table.
fn mode_name(mode: SummaryRefresh) -> &'static str {
    match mode {
        SummaryRefresh::Reread => "kept fid read again",
        SummaryRefresh::Deltas => "deltas",
        SummaryRefresh::Whole => "whole reads",
    }
}

/// One block of `n` refreshes, added to `into`.
async fn refreshes(
    agg: &Aggregator,
    addr: &gproc::net::Address,
    table: &str,
    mode: SummaryRefresh,
    n: usize,
    into: &mut Block,
) -> Result<()> {
    let me = std::process::id();
    agg.tree.set_summary_refresh(mode);
    // One refresh first: the summaries the block starts from (a delta
    // needs a generation held), not counted.
    read_as(addr, 0, table).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r0 = agg.tree.summary_reads();
    let cpu0 = cpu_seconds(me);
    let t0 = Instant::now();
    let mut walls = Vec::with_capacity(n);
    let mut table_bytes = 0usize;
    for i in 0..n {
        let t = Instant::now();
        table_bytes = read_as(addr, 0, table).await?.len();
        walls.push(t.elapsed());
        if i + 1 < n {
            let next = t + Duration::from_secs(1);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    into.elapsed += t0.elapsed().as_secs_f64();
    into.cpu += cpu_seconds(me) - cpu0;
    let r = agg.tree.summary_reads();
    into.reads.deltas += r.deltas - r0.deltas;
    into.reads.rereads += r.rereads - r0.rereads;
    into.reads.wholes += r.wholes - r0.wholes;
    into.reads.fallbacks += r.fallbacks - r0.fallbacks;
    into.reads.bytes += r.bytes - r0.bytes;
    into.walls.extend(walls);
    into.table_bytes = table_bytes;
    Ok(())
}

/// The real agent (a `gproc agent` child on loopback) read once a second
/// by one reader for `secs` seconds, whole or by delta: its CPU share
/// and the bytes per read.
async fn agent_share(secs: usize, deltas: bool) -> Result<(f64, f64, f64)> {
    let exe = std::env::current_exe().context("cannot find the gproc binary")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(exe)
        .args(["agent", "--auth", "none", "--listen", &addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start gproc agent")?;
    let pid = child.id();
    let run = async {
        let address = gproc::net::Address::Tcp(addr.clone());
        let mut c = None;
        for _ in 0..100 {
            if let Ok(x) = Client::connect(&address, ClientOptions::default()).await {
                c = Some(x);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let c = c.context("gproc agent did not answer")?;
        let root = c.attach("root", "/proc", Some(0)).await?;
        let mut held = root.read_all(gproc::format::summary::FILE_PATH).await?;
        let mut token = gproc::format::delta::generation(&held);
        let mut summary = gproc::format::summary::parse(&held)?;
        let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
        let mut bytes = 0usize;
        let mut procs = 0usize;
        for _ in 0..secs {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match (deltas, token) {
                (true, Some(t)) => {
                    let d = root.read_all(&gproc::format::delta::since_path(t)).await?;
                    bytes += d.len();
                    let (nt, s) = gproc::format::delta::apply(&summary, t, &d)?;
                    (token, summary) = (Some(nt), s);
                }
                _ => {
                    held = root.read_all(gproc::format::summary::FILE_PATH).await?;
                    bytes += held.len();
                    summary = gproc::format::summary::parse(&held)?;
                }
            }
            procs = summary.procs.len();
        }
        let share = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
        anyhow::Ok((share, bytes as f64 / secs.max(1) as f64, procs as f64))
    };
    let r = run.await;
    let _ = child.kill();
    let _ = child.wait();
    r
}

/// This thread's CPU time, seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the struct passed.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The reader's and the node's work per node without the network:
/// simulated nodes' summaries one second apart, parsed whole against a
/// delta made (the node's work) and applied (the reader's). Prints the
/// table; returns nothing else.
async fn in_process(nodes: usize, procs: usize) -> Result<()> {
    use gproc::format::{delta, summary};
    use gproc::sim::{Sim, SimNodeFs, SimOptions};
    let sim = std::sync::Arc::new(
        Sim::new(SimOptions {
            nodes,
            procs_per_node: procs,
            ..SimOptions::default()
        })
        .context("cannot build the simulated cluster")?,
    );
    let fs: Vec<SimNodeFs> = (0..nodes).map(|i| SimNodeFs::new(sim.clone(), i)).collect();
    let tok = |g| delta::Token {
        epoch: 1,
        generation: g,
    };
    let before: Vec<Vec<u8>> = fs
        .iter()
        .map(|f| delta::with_generation(&f.summary().encode(), tok(1)))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<Vec<u8>> = fs
        .iter()
        .map(|f| delta::with_generation(&f.summary().encode(), tok(2)))
        .collect();
    let held: Vec<summary::NodeSummary> = before
        .iter()
        .map(|b| summary::parse(b))
        .collect::<Result<_, _>>()?;
    // Node by node, the three in turn, in this thread's CPU time: the
    // machine's other load weighs on none of them more than the others.
    let (mut parse, mut diff, mut apply) = (0.0, 0.0, 0.0);
    let mut deltas = Vec::with_capacity(nodes);
    for ((b, a), h) in before.iter().zip(&after).zip(&held) {
        let t = thread_cpu();
        std::hint::black_box(summary::parse(a)?);
        let t1 = thread_cpu();
        let d = delta::diff(b, a)?;
        let t2 = thread_cpu();
        std::hint::black_box(delta::apply(h, tok(1), &d)?);
        let t3 = thread_cpu();
        (parse, diff, apply) = (parse + t1 - t, diff + t2 - t1, apply + t3 - t2);
        deltas.push(d);
    }
    let count = |v: &[Vec<u8>]| -> usize {
        v.iter()
            .map(|b| {
                b.split(|&c| c == b'\n')
                    .filter(|l| l.starts_with(b"p "))
                    .count()
            })
            .sum()
    };
    let (lines, changed) = (count(&after), count(&deltas));
    let bytes = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / nodes as f64;
    let us = |s: f64| format!("{:.1}", s * 1e6 / nodes as f64);
    println!(
        "\nPer node, in this process, {nodes} simulated nodes one second apart \
         ({changed} of {lines} process lines changed, {:.0}%):\n",
        changed as f64 * 100.0 / lines.max(1) as f64
    );
    print_table(
        &["work", "CPU us per node", "bytes per node"],
        &[
            vec![
                "reader: parse the whole summary".into(),
                us(parse),
                format!("{:.0}", bytes(&after)),
            ],
            vec![
                "reader: apply the delta".into(),
                us(apply),
                format!("{:.0}", bytes(&deltas)),
            ],
            vec!["node: make the delta".into(), us(diff), "-".into()],
        ],
    );
    Ok(())
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// The simulator, the aggregator or the agent cannot start.
pub async fn run(b: LiveBench) -> Result<()> {
    eprintln!(
        "bench live: {} nodes x {} processes: starting the simulator ...",
        b.nodes, b.procs_per_node
    );
    let dir = tempfile::tempdir()?;
    let (sims, nodes) = start_sims(b.nodes, b.procs_per_node, dir.path(), &[]).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // Summaries go stale before the next refresh a second later.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauth = \"none\"\nmax_connections = 64\n\n\
         [pool]\nmax_in_flight = 2048\nrequest_timeout = \"30s\"\ndeadline = \"60s\"\nconnect_concurrency = 256\n\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"500ms\"\n\n{nodes}"
    );
    let cfg = Config::from_str(&text, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let shutdown = CancellationToken::new();
    let agg = Aggregator::start(&cfg, shutdown.clone()).await?;
    let addr = agg.addresses[0].clone();
    eprintln!("bench live: {} nodes: connecting ...", b.nodes);
    agg.tree.pool().connect_all().await;
    let mut rows = Vec::new();
    // Blocks of each kind alternate, so a machine's load that changes
    // during the run weighs on both.
    const BLOCKS: usize = 2;
    for table in &b.tables {
        let modes = [
            SummaryRefresh::Reread,
            SummaryRefresh::Deltas,
            SummaryRefresh::Whole,
        ];
        let mut blocks: Vec<Block> = modes.iter().map(|_| Block::default()).collect();
        for _ in 0..BLOCKS {
            for (mode, into) in modes.iter().zip(blocks.iter_mut()) {
                eprintln!(
                    "bench live: /{table}, {}: {} refreshes ...",
                    mode_name(*mode),
                    b.refreshes.div_ceil(BLOCKS)
                );
                refreshes(
                    &agg,
                    &addr,
                    table,
                    *mode,
                    b.refreshes.div_ceil(BLOCKS),
                    into,
                )
                .await?;
            }
        }
        for (mode, block) in modes.iter().zip(blocks) {
            rows.push(block.row(table, *mode));
        }
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agg.task).await;
    drop(sims);
    println!(
        "\nLive refresh, once a second, of {} simulated nodes x {} processes \
         (aggregator in this process; CPU includes the client's read of the table):\n",
        b.nodes, b.procs_per_node
    );
    print_table(
        &[
            "table",
            "summaries by",
            "refreshes",
            "wall p50 ms",
            "wall max ms",
            "CPU s per refresh",
            "cores",
            "deltas",
            "kept-fid reads",
            "whole reads (kept-fid ones too)",
            "fallbacks",
            "MB read from nodes",
            "table MB",
        ],
        &rows,
    );
    in_process(b.nodes, b.procs_per_node).await?;
    if b.agent_seconds > 0 {
        let mut rows = Vec::new();
        for deltas in [true, false] {
            eprintln!(
                "bench live: the agent, {}: {} s ...",
                if deltas { "deltas" } else { "whole reads" },
                b.agent_seconds
            );
            let (share, bytes, procs) = agent_share(b.agent_seconds, deltas).await?;
            rows.push(vec![
                if deltas { "deltas" } else { "whole reads" }.to_string(),
                format!("{procs:.0}"),
                format!("{:.2}", share * 100.0),
                format!("{:.1}", bytes / 1e3),
            ]);
        }
        println!(
            "\nThe gproc agent on this machine read once a second by one reader for {} s:\n",
            b.agent_seconds
        );
        print_table(
            &[
                "summaries by",
                "processes",
                "agent % of a core",
                "KB per read",
            ],
            &rows,
        );
    }
    Ok(())
}

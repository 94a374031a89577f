//! `gproc bench jobs`: one job's processes over N simulated nodes, read as
//! the tree serves them (`/job/<id>/ps`, rows filtered at the aggregator)
//! against what `gproc ps -j` does (all of `/ps` read, parsed and filtered
//! by the client), each cold (a fresh aggregator: empty cache, connections
//! open) and warm (the next reads, served from the cache), in one run.
//! The job is the one spread on the most nodes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::cluster::{read_as, start_sims};
use super::print_table;
use gproc::aggregator::Aggregator;
use gproc::config::Config;
use gproc::format::table::{JobRow, PsRow, Table};
use gproc::net::Address;

/// Settings of the jobs benchmark.
#[derive(Debug, Clone)]
pub struct JobsBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Processes per node.
    pub procs_per_node: usize,
    /// Warm reads of each kind (the median is shown).
    pub rounds: usize,
    /// TTL of the summary rule: longer than the run's warm reads.
    pub summary_ttl: Duration,
}

async fn start(text: &str) -> Result<(Aggregator, CancellationToken)> {
    let cfg = Config::from_str(text, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = CancellationToken::new();
    let agg = Aggregator::start(&cfg, stop.clone()).await?;
    agg.tree.pool().connect_all().await;
    Ok((agg, stop))
}

async fn stop(agg: Aggregator, stop: CancellationToken) {
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agg.task).await;
}

/// What one way of listing the job gives: its rows and the bytes read.
async fn list(addr: &Address, job: &str, tree: bool) -> Result<(usize, usize)> {
    if tree {
        let b = read_as(addr, 0, &format!("job/{job}/ps")).await?;
        let t = Table::<PsRow>::parse(&String::from_utf8_lossy(&b))
            .map_err(|e| anyhow::anyhow!("job ps: {e}"))?;
        return Ok((t.rows.len(), b.len()));
    }
    // `gproc ps -j`'s work: all of /ps, parsed, filtered here.
    let b = read_as(addr, 0, "ps").await?;
    let t = Table::<PsRow>::parse(&String::from_utf8_lossy(&b))
        .map_err(|e| anyhow::anyhow!("ps: {e}"))?;
    let n = t
        .rows
        .iter()
        .filter(|r| r.job.as_deref() == Some(job))
        .count();
    Ok((n, b.len()))
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// The simulator or an aggregator cannot start, or a read fails.
pub async fn run(b: JobsBench) -> Result<()> {
    eprintln!(
        "bench jobs: {} nodes x {} processes: starting the simulator ...",
        b.nodes, b.procs_per_node
    );
    let dir = tempfile::tempdir()?;
    let (sims, nodes) = start_sims(b.nodes, b.procs_per_node, dir.path(), &[]).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauth = \"none\"\nmax_connections = 256\n\n\
         [pool]\nmax_in_flight = 2048\nrequest_timeout = \"30s\"\ndeadline = \"60s\"\nconnect_concurrency = 256\n\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"{}ms\"\n\n{nodes}",
        b.summary_ttl.as_millis()
    );
    // Which job: the widest, found by an aggregator of its own.
    let (agg, s) = start(&text).await?;
    let jobs = read_as(&agg.addresses[0], 0, "jobs").await?;
    stop(agg, s).await;
    let jobs = Table::<JobRow>::parse(&String::from_utf8_lossy(&jobs))
        .map_err(|e| anyhow::anyhow!("jobs: {e}"))?;
    let job = jobs
        .rows
        .iter()
        .max_by_key(|j| (j.nnodes, j.procs))
        .context("the simulator ran no job")?
        .clone();
    eprintln!(
        "bench jobs: job {} on {} nodes, {} processes",
        job.job, job.nnodes, job.procs
    );

    let mut rows = Vec::new();
    let mut warm_of = Vec::new();
    for (name, tree) in [
        ("/job/<id>/ps (filtered at the aggregator)", true),
        ("gproc ps -j (all of /ps, filtered by the client)", false),
    ] {
        eprintln!("bench jobs: {name} ...");
        let (agg, s) = start(&text).await?;
        let addr = agg.addresses[0].clone();
        let t = Instant::now();
        let (n, bytes) = list(&addr, &job.job, tree).await?;
        let cold = t.elapsed().as_secs_f64() * 1000.0;
        let mut warm = Vec::new();
        for _ in 0..b.rounds.max(1) {
            let t = Instant::now();
            list(&addr, &job.job, tree).await?;
            warm.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let warm = super::median(warm);
        warm_of.push(warm);
        rows.push(vec![
            name.to_string(),
            n.to_string(),
            bytes.to_string(),
            format!("{cold:.0}"),
            format!("{warm:.1}"),
        ]);
        stop(agg, s).await;
    }
    let ratio = warm_of[1] / warm_of[0].max(1e-3);
    println!(
        "\nOne job's processes over {} simulated nodes ({} processes each): job {} on {} nodes, \
         {} processes; fresh aggregator per row; times in ms (warm: median of {}):\n",
        b.nodes,
        b.procs_per_node,
        job.job,
        job.nnodes,
        job.procs,
        b.rounds.max(1)
    );
    print_table(&["read", "rows", "bytes", "cold", "warm"], &rows);
    println!("\nwarm: gproc ps -j takes {ratio:.1}x the time of /job/<id>/ps");
    drop(sims);
    Ok(())
}

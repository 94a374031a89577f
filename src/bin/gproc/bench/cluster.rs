//! `gproc bench cluster`: the aggregator over N simulated nodes (each a
//! real 9P server on its own loopback address, hosted by `gproc sim`
//! child processes). Measures, in one run:
//!
//! - connecting every node: time and aggregator RSS per connected node;
//! - a fan-out read of one small file from every node (connections open);
//! - a cluster-wide `ps` through the aggregator over 9P, cold (cache empty,
//!   connections open) and warm (cached; the median of five reads), with
//!   CPU seconds of this process
//!   for each (the median of `--cold-rounds` cold reads; both include the
//!   benchmark's own client reading the table, which the warm figure is
//!   mostly);
//! - the same process listing built by a naive client that reads every
//!   process's `stat`, `status` and `cmdline` from every node, and the
//!   ratio;
//! - the cache hit ratio under a mixed read load.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{cpu_seconds, median, print_table, rss_kib};
use gproc::aggregator::Aggregator;
use gproc::client::{Client, ClientOptions};
use gproc::config::Config;
use gproc::net::Address;

/// Settings of the cluster benchmark.
#[derive(Debug, Clone)]
pub struct ClusterBench {
    /// Node counts to measure, one row each.
    pub sizes: Vec<usize>,
    /// Processes per simulated node.
    pub procs_per_node: usize,
    /// Requests in flight for the naive client.
    pub naive_concurrency: usize,
    /// Skip the naive client above this many nodes (it takes minutes).
    pub naive_max_nodes: usize,
    /// TTL of the `/.gproc/ps` rule: longer than a cold `/ps` takes, so
    /// that the warm read right after it is served from the cache.
    pub summary_ttl: Duration,
    /// Cold `/ps` reads per size (each after the summaries expired).
    pub cold_rounds: usize,
    /// Live refreshes (`gproc top`'s tables once a second) per binary
    /// (`--aggregator-exe` only).
    pub live_refreshes: usize,
}

/// Warm `/ps` reads per size; the median is shown.
const WARM_READS: usize = 5;

/// Nodes per `gproc sim` child: each node costs it a listener and a
/// connection, and the open-file limit here is 20,000.
const NODES_PER_SIM: usize = 4000;

/// The `gproc sim` children; killed when dropped.
pub(crate) struct Sims(pub(crate) Vec<Child>);

impl Drop for Sims {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the simulated nodes in child processes; returns them and the
/// aggregator config for all of them. `extra` goes to every `gproc sim`
/// (fault fractions, churn), so a benchmark can ask for flapping nodes.
pub(crate) async fn start_sims(
    n: usize,
    procs: usize,
    dir: &std::path::Path,
    extra: &[String],
) -> Result<(Sims, String)> {
    let exe = std::env::current_exe().context("cannot find the gproc binary")?;
    let shards = n.div_ceil(NODES_PER_SIM);
    let mut sims = Sims(Vec::new());
    let mut files = Vec::new();
    for s in 0..shards {
        let count = NODES_PER_SIM.min(n - s * NODES_PER_SIM);
        let file = dir.join(format!("sim{s}.toml"));
        let child = Command::new(&exe)
            .args([
                "sim",
                "--nodes",
                &count.to_string(),
                "--procs-per-node",
                &procs.to_string(),
            ])
            .args([
                "--base-port",
                "0",
                "--first-address",
                &format!("127.{}.0.1", 10 + s),
            ])
            .args([
                "--prefix",
                &format!("s{s}n"),
                "--seed",
                &(s + 1).to_string(),
            ])
            .args(extra)
            .arg("--config-out")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start gproc sim")?;
        sims.0.push(child);
        files.push(file);
    }
    let mut text = String::new();
    for f in &files {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(t) = std::fs::read_to_string(f)
                && Config::from_str(&format!("{t}\n"), "sim").is_ok()
            {
                text.push_str(&t);
                text.push('\n');
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "gproc sim did not write {}",
                f.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((sims, text))
}

/// `path` read whole from the aggregator at `addr` by root (an
/// administrator).
async fn read(addr: &Address, path: &str) -> Result<bytes::Bytes> {
    read_as(addr, 0, path).await
}

/// `path` read whole from the aggregator at `addr` by `uid` (believed:
/// the benchmarks' aggregators use `auth = "none"` on loopback).
pub(crate) async fn read_as(addr: &Address, uid: u32, path: &str) -> Result<bytes::Bytes> {
    let c = Client::connect(
        addr,
        ClientOptions {
            request_timeout: Duration::from_secs(120),
            ..ClientOptions::default()
        },
    )
    .await?;
    let root = c.attach(&uid.to_string(), "", Some(uid)).await?;
    root.read_all_limited(path, gproc::format::table::MAX_TABLE_BYTES)
        .await
        .with_context(|| format!("uid {uid}: {path}"))
}

/// The naive client: every process's three files from every node, direct.
async fn naive(cfg: &Config, concurrency: usize) -> Result<(usize, f64)> {
    let t = Instant::now();
    let roots: Vec<_> = futures::stream::iter(cfg.nodes.iter())
        .map(|n| async move {
            let c = Client::connect(&n.address, ClientOptions::default())
                .await
                .ok()?;
            c.attach("root", &n.aname, Some(0)).await.ok().map(Arc::new)
        })
        .buffer_unordered(concurrency)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    let lists: Vec<(Arc<gproc::client::FidHandle>, Vec<String>)> = futures::stream::iter(roots)
        .map(|r| async move {
            let pids = r
                .read_dir("/")
                .await
                .map(|l| {
                    l.into_iter()
                        .filter(|e| e.name.parse::<u32>().is_ok())
                        .map(|e| e.name)
                        .collect()
                })
                .unwrap_or_default();
            (r, pids)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let jobs: Vec<(Arc<gproc::client::FidHandle>, String)> = lists
        .into_iter()
        .flat_map(|(r, pids)| {
            pids.into_iter().flat_map(move |p| {
                ["stat", "status", "cmdline"].map(|f| (r.clone(), format!("{p}/{f}")))
            })
        })
        .collect();
    let n = futures::stream::iter(jobs)
        .map(|(r, p)| async move { r.read_all(&p).await.is_ok() })
        .buffer_unordered(concurrency)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    Ok((n, t.elapsed().as_secs_f64()))
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// The simulator or the aggregator cannot start.
pub async fn run(b: ClusterBench) -> Result<()> {
    let me = std::process::id();
    let mut rows = Vec::new();
    for &n in &b.sizes {
        eprintln!(
            "bench cluster: {n} nodes x {} processes: starting the simulator ...",
            b.procs_per_node
        );
        let dir = tempfile::tempdir()?;
        let (sims, nodes) = start_sims(n, b.procs_per_node, dir.path(), &[]).await?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauth = \"none\"\nmax_connections = 64\n\n\
             [pool]\nmax_in_flight = 2048\nrequest_timeout = \"30s\"\ndeadline = \"60s\"\nconnect_concurrency = 256\n\n\
             # Summaries stay fresh longer than a cold /ps takes, so that\n\
             # \"warm\" means cached.\n\
             [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"{}ms\"\n\n{nodes}",
            b.summary_ttl.as_millis()
        );
        let cfg = Config::from_str(&text, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
        let rss0 = rss_kib(me);
        let shutdown = CancellationToken::new();
        let agg = Aggregator::start(&cfg, shutdown.clone()).await?;
        let addr = agg.addresses[0].clone();

        eprintln!("bench cluster: {n} nodes: connecting ...");
        let t = Instant::now();
        agg.tree.pool().connect_all().await;
        let connect_s = t.elapsed().as_secs_f64();
        let up = agg
            .tree
            .pool()
            .nodes()
            .iter()
            .filter(|x| x.status().state == gproc::client::pool::NodeState::Up)
            .count();
        let rss_conn = rss_kib(me).saturating_sub(rss0);

        eprintln!("bench cluster: {n} nodes: fan-out read ...");
        let pool = agg.tree.pool().clone();
        let nodes_list = pool.nodes();
        let t = Instant::now();
        let ok = pool
            .fan_out(&nodes_list, Duration::from_secs(60), |root| async move {
                root.read_all("loadavg").await
            })
            .filter(|(_, r)| std::future::ready(r.is_ok()))
            .count()
            .await;
        let fanout_ms = t.elapsed().as_secs_f64() * 1000.0;

        eprintln!("bench cluster: {n} nodes: ps cold ...");
        let cpu0 = cpu_seconds(me);
        let t = Instant::now();
        let ps = read(&addr, "ps").await?;
        let cold_ms = t.elapsed().as_secs_f64() * 1000.0;
        let cpu_ps = cpu_seconds(me) - cpu0;
        let procs = ps
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
            .count()
            .saturating_sub(1);
        // Warm: the median of a few reads (one is a single sample of a
        // machine's minute), all well within the summaries' TTL.
        let mut warm = Vec::new();
        for _ in 0..WARM_READS {
            let cpu0 = cpu_seconds(me);
            let t = Instant::now();
            read(&addr, "ps").await?;
            warm.push((t.elapsed().as_secs_f64() * 1000.0, cpu_seconds(me) - cpu0));
        }
        let warm_ms = median(warm.iter().map(|w| w.0).collect());
        let cpu_warm = median(warm.iter().map(|w| w.1).collect());
        let rss_after = rss_kib(me).saturating_sub(rss0);
        // More cold reads, each once the summaries (and the tables built
        // from them) expired: one cold read is one sample of a noisy
        // machine's minute.
        let mut cold_cpu = vec![cpu_ps];
        for r in 1..b.cold_rounds {
            eprintln!(
                "bench cluster: {n} nodes: ps cold, round {} of {} ...",
                r + 1,
                b.cold_rounds
            );
            tokio::time::sleep(b.summary_ttl + Duration::from_millis(200)).await;
            let cpu0 = cpu_seconds(me);
            read(&addr, "ps").await?;
            cold_cpu.push(cpu_seconds(me) - cpu0);
        }
        cold_cpu.sort_by(f64::total_cmp);
        let cpu_ps = cold_cpu[cold_cpu.len() / 2];

        // A mixed load: tables, node files (cached and never-cached).
        eprintln!("bench cluster: {n} nodes: mixed read load ...");
        let names: Vec<String> = cfg.nodes.iter().map(|x| x.name.clone()).collect();
        let paths: Vec<String> = (0..400)
            .map(|i| {
                let node = &names[(i * 7919) % names.len()];
                match i % 8 {
                    0 => "load".to_string(),
                    1 => format!("{node}/1/maps"),
                    2 | 3 => format!("{node}/1/status"),
                    4 => format!("{node}/loadavg"),
                    5 => format!("{node}/meminfo"),
                    6 => format!("{node}/1/stat"),
                    _ => "nodes".to_string(),
                }
            })
            .collect();
        let c = Client::connect(&addr, ClientOptions::default()).await?;
        let root = Arc::new(c.attach("root", "", Some(0)).await?);
        futures::stream::iter(paths)
            .map(|p| {
                let r = root.clone();
                async move { r.read_all(&p).await.is_ok() }
            })
            .buffer_unordered(32)
            .count()
            .await;
        let stats = String::from_utf8_lossy(&read(&addr, "stats").await?).into_owned();
        let hit = stats
            .lines()
            .find_map(|l| l.strip_prefix("cache_hit_ratio "))
            .unwrap_or("?")
            .to_string();

        let (naive_s, naive_files) = if n <= b.naive_max_nodes {
            eprintln!("bench cluster: {n} nodes: naive per-process client ...");
            let (files, s) = naive(&cfg, b.naive_concurrency).await?;
            (Some(s), files)
        } else {
            (None, 0)
        };
        rows.push(vec![
            n.to_string(),
            format!("{up}"),
            procs.to_string(),
            format!("{connect_s:.2}"),
            format!("{:.1}", rss_conn as f64 / n as f64),
            format!("{:.1}", rss_after as f64 / n as f64),
            format!("{fanout_ms:.0} ({ok} ok)"),
            format!("{cold_ms:.0}"),
            format!("{warm_ms:.0}"),
            format!("{cpu_ps:.2}"),
            format!("{:.2} .. {:.2}", cold_cpu[0], cold_cpu[cold_cpu.len() - 1]),
            format!("{cpu_warm:.3}"),
            hit,
            naive_s
                .map(|s| format!("{:.0} ({naive_files} files)", s * 1000.0))
                .unwrap_or_else(|| "-".into()),
            naive_s
                .map(|s| format!("{:.1}x", s * 1000.0 / cold_ms))
                .unwrap_or_else(|| "-".into()),
        ]);
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), agg.task).await;
        drop(sims);
        let _ = PathBuf::from(dir.path());
    }
    println!(
        "\nAggregator over simulated nodes ({} processes each); times in ms unless noted:\n",
        b.procs_per_node
    );
    print_table(
        &[
            "nodes",
            "up",
            "processes",
            "connect s",
            "RSS KiB/node connected",
            "RSS KiB/node after ps",
            "fan-out read",
            "ps cold",
            "ps warm",
            "CPU s per cold ps",
            "cold CPU range",
            "CPU s per warm ps",
            "hit ratio (mixed)",
            "naive client",
            "naive / cold",
        ],
        &rows,
    );
    Ok(())
}

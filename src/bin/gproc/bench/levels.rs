//! `gproc bench cluster --levels 2`: the same simulated nodes behind one
//! flat aggregator and behind K rack aggregators under a top one, in one
//! run, every aggregator its own `gproc serve` process (so CPU and RSS are
//! per level): time until every node is connected, cold and warm `/ps` at
//! the top, a user's warm `/ps` (their view, filtered at the top), CPU
//! seconds and RSS per node at each level.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::cluster::{read_as, start_sims};
use super::load::{AggProc, wait_for_port};
use super::{cpu_seconds, print_table, rss_kib};
use gproc::config::Config;
use gproc::net::Address;

/// Settings of the hierarchy benchmark.
#[derive(Debug, Clone)]
pub struct LevelsBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Processes per node.
    pub procs_per_node: usize,
    /// Rack aggregators the nodes are split across.
    pub racks: usize,
    /// TTL of the summary rule at every level: longer than a cold `/ps`.
    pub summary_ttl: Duration,
}

/// The simulator's first user ("alice"): has processes on every node.
const USER_UID: u32 = 1000;

/// One aggregator process: its config written to `dir`, started, and
/// answering on its address.
async fn serve(dir: &Path, name: &str, text: &str, listen: &str) -> Result<AggProc> {
    Config::from_str(text, name).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, text).with_context(|| format!("cannot write {}", cfg.display()))?;
    let exe = std::env::current_exe().context("cannot find the gproc binary")?;
    let log = dir.join(format!("{name}.log"));
    let p = AggProc::spawn(&exe, &cfg, &log)?;
    wait_for_port(listen, Duration::from_secs(120))
        .await
        .with_context(|| format!("{name} did not start; see {}", log.display()))?;
    Ok(p)
}

fn free_addr() -> Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

/// An aggregator's config: listening on `listen`, named `name`, over
/// `nodes` (TOML `[[nodes]]` tables).
fn config(name: &str, listen: &str, ttl: Duration, deadline: &str, nodes: &str) -> String {
    format!(
        "[server]\nlisten = [\"{listen}\"]\nauth = \"none\"\nname = \"{name}\"\nmax_connections = 256\n\n\
         [pool]\nconnect = \"eager\"\nmax_in_flight = 2048\nrequest_timeout = \"{deadline}\"\n\
         deadline = \"{deadline}\"\nconnect_concurrency = 256\n\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"{}ms\"\n\n{nodes}",
        ttl.as_millis()
    )
}

/// Waits until `/nodes` at `addr` lists `n` nodes up.
async fn all_up(addr: &Address, n: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(b) = read_as(addr, 0, "nodes").await {
            let up = String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("up"))
                .count();
            if up >= n {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not all {n} nodes up at {addr} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Rows of `/ps` (not the header, not notes).
fn rows(b: &[u8]) -> usize {
    b.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count()
        .saturating_sub(1)
}

/// What one layout measured.
struct Measured {
    connect_s: f64,
    rows: usize,
    cold_ms: f64,
    warm_ms: f64,
    user_ms: f64,
    user_rows: usize,
    top_cpu: f64,
    racks_cpu: f64,
    top_rss: u64,
    racks_rss: u64,
}

/// Reads `/ps` cold, warm and as the user from the top at `addr`, with
/// the CPU the top (`top`) and the racks (`racks`) spent on the cold read.
async fn measure(addr: &Address, top: u32, racks: &[u32], connect_s: f64) -> Result<Measured> {
    let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let (t0, r0) = (cpu_seconds(top), cpu(racks));
    let t = Instant::now();
    let ps = read_as(addr, 0, "ps").await?;
    let cold_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (top_cpu, racks_cpu) = (cpu_seconds(top) - t0, cpu(racks) - r0);
    let t = Instant::now();
    read_as(addr, 0, "ps").await?;
    let warm_ms = t.elapsed().as_secs_f64() * 1000.0;
    read_as(addr, USER_UID, "ps").await?;
    let t = Instant::now();
    let user = read_as(addr, USER_UID, "ps").await?;
    let user_ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok(Measured {
        connect_s,
        rows: rows(&ps),
        cold_ms,
        warm_ms,
        user_ms,
        user_rows: rows(&user),
        top_cpu,
        racks_cpu,
        top_rss: rss_kib(top),
        racks_rss: racks.iter().map(|p| rss_kib(*p)).sum(),
    })
}

/// Runs the benchmark and prints its table.
///
/// # Errors
/// The simulator or an aggregator cannot start.
pub async fn run(b: LevelsBench) -> Result<()> {
    anyhow::ensure!(b.racks >= 1, "--racks must be at least 1");
    let n = b.nodes;
    let dir = tempfile::tempdir()?;
    eprintln!(
        "bench levels: {n} nodes x {} processes: starting the simulator ...",
        b.procs_per_node
    );
    let (sims, nodes_text) = start_sims(n, b.procs_per_node, dir.path(), &[]).await?;
    let all = Config::from_str(&nodes_text, "sim").map_err(|e| anyhow::anyhow!("{e}"))?;
    let deadline = "120s";

    // One aggregator holds a descriptor per node: past the open-file
    // limit a flat layout cannot run at all, which is the point of racks.
    let flat_m = if n <= FLAT_MAX_NODES {
        eprintln!("bench levels: flat aggregator over {n} nodes ...");
        let listen = free_addr()?;
        let t = Instant::now();
        let flat = serve(
            dir.path(),
            "flat",
            &config("flat", &listen, b.summary_ttl, deadline, &nodes_text),
            &listen,
        )
        .await?;
        let flat_addr: Address = listen.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        all_up(&flat_addr, n, Duration::from_secs(600)).await?;
        let m = measure(&flat_addr, flat.child.id(), &[], t.elapsed().as_secs_f64()).await?;
        drop(flat);
        Some(m)
    } else {
        eprintln!(
            "bench levels: no flat row: {n} nodes are more connections than one process may hold here"
        );
        None
    };

    eprintln!("bench levels: {} racks under a top aggregator ...", b.racks);
    let per = n.div_ceil(b.racks);
    let t = Instant::now();
    let mut racks = Vec::new();
    let mut rack_addrs = Vec::new();
    let mut top_nodes = String::new();
    for (k, chunk) in all.nodes.chunks(per).enumerate() {
        let mut text = String::new();
        for node in chunk {
            text.push_str(&format!(
                "[[nodes]]\nnames = \"{}\"\naddress = \"{}\"\n\n",
                node.name, node.address
            ));
        }
        let name = format!("rack{}", k + 1);
        let listen = free_addr()?;
        racks.push(
            serve(
                dir.path(),
                &name,
                &config(&name, &listen, b.summary_ttl, deadline, &text),
                &listen,
            )
            .await?,
        );
        top_nodes.push_str(&format!(
            "[[nodes]]\nnames = \"{name}\"\naddress = \"{listen}\"\naname = \"\"\n\n"
        ));
        let addr: Address = listen.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        rack_addrs.push((addr, chunk.len()));
    }
    // Every rack has all its nodes connected. Not asked of the top: its
    // `/nodes` would read the racks' summaries, and the cold `/ps` below
    // would not be cold.
    for (addr, count) in &rack_addrs {
        all_up(addr, *count, Duration::from_secs(600)).await?;
    }
    let listen = free_addr()?;
    let top = serve(
        dir.path(),
        "top",
        &config("top", &listen, b.summary_ttl, "180s", &top_nodes),
        &listen,
    )
    .await?;
    let top_addr: Address = listen.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rack_pids: Vec<u32> = racks.iter().map(|r| r.child.id()).collect();
    let lv = measure(
        &top_addr,
        top.child.id(),
        &rack_pids,
        t.elapsed().as_secs_f64(),
    )
    .await?;
    drop(top);
    drop(racks);
    drop(sims);

    println!(
        "\n{n} simulated nodes x {} processes: one flat aggregator vs {} racks of {per} under a top \
         (every aggregator its own process; times in ms unless noted):\n",
        b.procs_per_node, b.racks
    );
    let row = |name: String, m: &Measured, racks: bool| {
        vec![
            name,
            m.rows.to_string(),
            format!("{:.1}", m.connect_s),
            format!("{:.0}", m.cold_ms),
            format!("{:.0}", m.warm_ms),
            format!("{:.0} ({} rows)", m.user_ms, m.user_rows),
            format!("{:.2}", m.top_cpu),
            if racks {
                format!("{:.2}", m.racks_cpu)
            } else {
                "-".into()
            },
            format!("{:.1}", m.top_rss as f64 / n as f64),
            if racks {
                format!("{:.1}", m.racks_rss as f64 / n as f64)
            } else {
                "-".into()
            },
        ]
    };
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    let ratios = |f: &Measured| {
        vec![
            "2 levels / flat".into(),
            String::new(),
            ratio(lv.connect_s, f.connect_s),
            ratio(lv.cold_ms, f.cold_ms),
            ratio(lv.warm_ms, f.warm_ms),
            ratio(lv.user_ms, f.user_ms),
            ratio(lv.top_cpu, f.top_cpu),
            String::new(),
            ratio(lv.top_rss as f64, f.top_rss as f64),
            String::new(),
        ]
    };
    print_table(
        &[
            "layout",
            "rows",
            "all up s",
            "ps cold",
            "ps warm",
            "user ps warm",
            "top CPU s (cold)",
            "racks CPU s (cold)",
            "top RSS KiB/node",
            "racks RSS KiB/node",
        ],
        &flat_m
            .as_ref()
            .map(|f| {
                vec![
                    row("flat".into(), f, false),
                    row(format!("2 levels ({} racks)", b.racks), &lv, true),
                    ratios(f),
                ]
            })
            .unwrap_or_else(|| vec![row(format!("2 levels ({} racks)", b.racks), &lv, true)]),
    );
    Ok(())
}

/// Nodes one flat aggregator is run over at most (its open-file limit
/// here is 20,000: a descriptor per node and some for clients).
const FLAT_MAX_NODES: usize = 18_000;

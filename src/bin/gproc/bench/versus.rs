//! `gproc bench cluster --aggregator-exe A,B,...`: the aggregator's own
//! CPU per cold and warm `/ps`, for several gproc binaries over one
//! simulator in the same run (an A/B on a shared, noisy machine).
//!
//! Each binary runs as `gproc serve` in a process of its own, every one
//! connected to the same simulated nodes, so its CPU (from `/proc/PID/stat`)
//! is the aggregator's alone: not this benchmark's client, which reads
//! the table. Rounds alternate the binaries' order; each cold read comes
//! after the summaries of that aggregator expired (the rule's TTL), so
//! each is a whole rebuild. With `--live-refreshes`, each then serves
//! `gproc top`'s three tables once a second for a while: its CPU per such
//! refresh is the cores a live view of the cluster costs it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::cluster::{ClusterBench, start_sims};
use super::load::{AggProc, wait_for_port};
use super::{cpu_seconds, median, print_table, rss_kib};
use gproc::client::{Client, ClientOptions, FidHandle};
use gproc::config::Config;
use gproc::net::Address;

/// One binary's aggregator, and what was measured of it.
struct Contender {
    exe: PathBuf,
    agg: AggProc,
    root: FidHandle,
    cold: Vec<(f64, f64)>,
    warm: Vec<(f64, f64)>,
    /// Live refreshes as `gproc top` makes them: their count and the
    /// aggregator's CPU seconds.
    live: (usize, f64),
    /// The same with `/ps` read whole.
    live_ps: (usize, f64),
}

/// Warm reads per binary; the median is shown.
const WARM_READS: usize = 5;

/// `/ps` read whole by root: its wall time (ms), the aggregator's CPU
/// seconds for it, and its data rows.
async fn timed_ps(c: &Contender) -> Result<(f64, f64, usize)> {
    let pid = c.agg.child.id();
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    let ps = c
        .root
        .read_all_limited("ps", gproc::format::table::MAX_TABLE_BYTES)
        .await
        .with_context(|| format!("{}: reading /ps", c.exe.display()))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let rows = ps
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count()
        .saturating_sub(1);
    Ok((ms, cpu_seconds(pid) - cpu0, rows))
}

/// What `gproc top` reads for its process rows: the ranking of the first
/// rows by %CPU, as many as a terminal shows.
const TOP_QUERY: &str = "top/cpu:rows=300";

/// `n` refreshes of `gproc top`'s tables through `c`, one a second: the
/// aggregator's CPU seconds for them. `ranked`: the processes as `gproc
/// top` reads them (`/top`, or `/ps` from an aggregator without it);
/// else `/ps` whole, as a repeated `gproc ps` or an older `top` does.
async fn live_block(c: &Contender, n: usize, ranked: bool) -> Result<f64> {
    let pid = c.agg.child.id();
    let cpu0 = cpu_seconds(pid);
    for i in 0..n {
        let t = Instant::now();
        let read = |table: &'static str| async move {
            c.root
                .read_all_limited(table, gproc::format::table::MAX_TABLE_BYTES)
                .await
        };
        let procs = async {
            if ranked {
                match read(TOP_QUERY).await {
                    Err(e) if e.errno() == gproc::proto::errno::ENOENT => {}
                    r => return r,
                }
            }
            read("ps").await
        };
        // As `gproc top`: `/load` and the processes at once, then `/nodes`.
        tokio::try_join!(read("load"), procs)
            .and(read("nodes").await)
            .with_context(|| format!("{}: a live refresh", c.exe.display()))?;
        if i + 1 < n {
            tokio::time::sleep_until((t + Duration::from_secs(1)).into()).await;
        }
    }
    Ok(cpu_seconds(pid) - cpu0)
}

/// Runs the comparison on the first of `b.sizes`.
///
/// # Errors
/// The simulator or an aggregator does not start, or a read fails.
pub async fn run(b: &ClusterBench, exes: &[PathBuf]) -> Result<()> {
    anyhow::ensure!(!exes.is_empty(), "--aggregator-exe: no binary given");
    let n = b.sizes.first().copied().unwrap_or(2000);
    for e in exes {
        anyhow::ensure!(
            e.is_file(),
            "--aggregator-exe {}: no such file",
            e.display()
        );
    }
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    eprintln!(
        "bench cluster: {n} nodes x {} processes: starting the simulator ...",
        b.procs_per_node
    );
    let (_sims, nodes) = start_sims(n, b.procs_per_node, dir.path(), &[]).await?;
    let mut all = Vec::new();
    for (i, exe) in exes.iter().enumerate() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port")?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let text = format!(
            "[server]\nlisten = [\"{listen}\"]\nauth = \"none\"\nmax_connections = 64\n\
             max_connections_per_user = 64\n\n\
             [pool]\nmax_in_flight = 2048\nrequest_timeout = \"30s\"\ndeadline = \"60s\"\n\
             connect = \"eager\"\nconnect_concurrency = 256\n\n\
             [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"{}ms\"\n\n{nodes}",
            b.summary_ttl.as_millis()
        );
        Config::from_str(&text, "versus.toml")
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the benchmark's aggregator config is invalid")?;
        let cfg = dir.path().join(format!("agg{i}.toml"));
        std::fs::write(&cfg, &text).with_context(|| format!("cannot write {}", cfg.display()))?;
        let log = dir.path().join(format!("agg{i}.log"));
        eprintln!("bench cluster: starting {} on {listen} ...", exe.display());
        let agg = AggProc::spawn(exe, &cfg, &log)?;
        wait_for_port(&listen, Duration::from_secs(60)).await?;
        let addr: Address = listen
            .parse()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("aggregator address")?;
        let c = Client::connect(
            &addr,
            ClientOptions {
                request_timeout: Duration::from_secs(120),
                ..ClientOptions::default()
            },
        )
        .await?;
        let root = c.attach("root", "", Some(0)).await?;
        all.push(Contender {
            exe: exe.clone(),
            agg,
            root,
            cold: Vec::new(),
            warm: Vec::new(),
            live: (0, 0.0),
            live_ps: (0, 0.0),
        });
    }
    // Every node up in each (eager connect), then one untimed /ps each:
    // connections, kept files and allocator arenas warmed as in service.
    for c in &all {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, _, rows) = timed_ps(c).await?;
            if rows >= n * b.procs_per_node * 9 / 10 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let mut procs = 0;
    for r in 0..b.cold_rounds {
        eprintln!(
            "bench cluster: cold round {} of {} ...",
            r + 1,
            b.cold_rounds
        );
        tokio::time::sleep(b.summary_ttl + Duration::from_millis(300)).await;
        // Alternate who goes first: the second reads nodes just woken.
        let order: Vec<usize> = if r % 2 == 0 {
            (0..all.len()).collect()
        } else {
            (0..all.len()).rev().collect()
        };
        for i in order {
            let (ms, cpu, rows) = timed_ps(&all[i]).await?;
            procs = rows;
            all[i].cold.push((ms, cpu));
        }
    }
    for c in &mut all {
        for _ in 0..WARM_READS {
            let (ms, cpu, _) = timed_ps(c).await?;
            c.warm.push((ms, cpu));
        }
    }
    // Live refreshes in two blocks per binary, the order reversed in the
    // second.
    for block in 0..2 {
        let n_block = b.live_refreshes.div_ceil(2);
        if n_block == 0 {
            break;
        }
        let order: Vec<usize> = if block == 0 {
            (0..all.len()).collect()
        } else {
            (0..all.len()).rev().collect()
        };
        for i in order {
            eprintln!(
                "bench cluster: {}: {n_block} live refreshes ...",
                all[i].exe.display()
            );
            for ranked in [true, false] {
                let cpu = live_block(&all[i], n_block, ranked).await?;
                let l = if ranked {
                    &mut all[i].live
                } else {
                    &mut all[i].live_ps
                };
                *l = (l.0 + n_block, l.1 + cpu);
            }
        }
    }
    let base = all
        .first()
        .map_or(0.0, |c| median(c.cold.iter().map(|x| x.1).collect()));
    let mut rows = Vec::new();
    for c in &all {
        let cpu = median(c.cold.iter().map(|x| x.1).collect());
        let lo = c.cold.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        let hi = c.cold.iter().map(|x| x.1).fold(0.0, f64::max);
        rows.push(vec![
            c.exe.display().to_string(),
            n.to_string(),
            procs.to_string(),
            format!("{:.0}", median(c.cold.iter().map(|x| x.0).collect())),
            format!("{cpu:.3}"),
            format!("{lo:.3} .. {hi:.3}"),
            format!("{:.2}x", cpu / base.max(1e-9)),
            format!("{:.0}", median(c.warm.iter().map(|x| x.0).collect())),
            format!("{:.3}", median(c.warm.iter().map(|x| x.1).collect())),
            format!("{:.1}", rss_kib(c.agg.child.id()) as f64 / n as f64),
        ]);
        if b.live_refreshes > 0
            && let Some(r) = rows.last_mut()
        {
            for (k, cpu) in [c.live, c.live_ps] {
                r.push(format!("{:.3}", cpu / k.max(1) as f64));
            }
        }
    }
    println!(
        "\nAggregators over the same {n} simulated nodes ({} processes each), each its own \
         process; CPU is the aggregator's alone; medians of {} cold and {WARM_READS} warm reads:\n",
        b.procs_per_node, b.cold_rounds
    );
    let mut header = vec![
        "aggregator",
        "nodes",
        "processes",
        "ps cold ms",
        "CPU s per cold ps",
        "cold CPU range",
        "CPU / first",
        "ps warm ms",
        "CPU s per warm ps",
        "RSS KiB/node",
    ];
    if b.live_refreshes > 0 {
        header.push("CPU s per live refresh");
        header.push("same, /ps whole");
    }
    print_table(&header, &rows);
    if b.live_refreshes > 0 {
        println!(
            "\nA live refresh reads /load, the first 300 processes by %CPU ({TOP_QUERY}; /ps from \
             an aggregator without /top) and /nodes as `gproc top` does, once a second (its CPU \
             seconds are the cores it takes at that rate); \"same, /ps whole\" reads /ps instead, \
             as a repeated `gproc ps` does. The summary TTL was {} ms.",
            b.summary_ttl.as_millis()
        );
    }
    Ok(())
}

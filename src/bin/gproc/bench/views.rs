//! `gproc bench views`: what reading as the user costs at the aggregator,
//! over N simulated nodes. In one run, each against a fresh aggregator (an
//! empty cache, connections open):
//!
//! - `ps` and `cat` of one process file as an administrator and as a
//!   user: cold and warm times, aggregator CPU, rows, node reads. Tables
//!   are read once as the service identity and filtered per view; a
//!   user's node file is read on the node as that user (a separate
//!   attach on the node's connection), so its first read pays an attach;
//! - node reads for K users reading `/ps` at once vs one user: tables are
//!   shared, so the two must be equal (the ratio is printed).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::cluster::{read_as, start_sims};
use super::{cpu_seconds, print_table};
use gproc::aggregator::Aggregator;
use gproc::config::Config;
use gproc::format::table::{PsRow, Table};
use gproc::net::Address;

/// Settings of the views benchmark.
#[derive(Debug, Clone)]
pub struct ViewsBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Processes per node.
    pub procs_per_node: usize,
    /// Users reading `/ps` at once in the fan-in row.
    pub users: usize,
    /// TTL of the summary rule: longer than a cold `ps` takes.
    pub summary_ttl: Duration,
}

/// The simulator's first user (`sim::tables::FIRST_UID`, named "alice"
/// on the simulated nodes): owns processes on every node.
const USER_UID: u32 = 1000;
const USER_NAME: &str = "alice";

/// A started aggregator and what stops it.
struct Running {
    agg: Aggregator,
    shutdown: CancellationToken,
}

impl Running {
    async fn start(text: &str) -> Result<Running> {
        let cfg = Config::from_str(text, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
        let shutdown = CancellationToken::new();
        let agg = Aggregator::start(&cfg, shutdown.clone()).await?;
        agg.tree.pool().connect_all().await;
        Ok(Running { agg, shutdown })
    }

    fn addr(&self) -> &Address {
        &self.agg.addresses[0]
    }

    fn node_reads(&self) -> u64 {
        self.agg
            .tree
            .cache()
            .stats()
            .node_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.agg.task).await;
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// The simulator or an aggregator cannot start, or a read fails.
pub async fn run(b: ViewsBench) -> Result<()> {
    let me = std::process::id();
    eprintln!(
        "bench views: {} nodes x {} processes: starting the simulator ...",
        b.nodes, b.procs_per_node
    );
    let dir = tempfile::tempdir()?;
    let (sims, nodes) = start_sims(b.nodes, b.procs_per_node, dir.path(), &[]).await?;
    let sim_cfg = Config::from_str(&nodes, "sim").map_err(|e| anyhow::anyhow!("{e}"))?;
    let all: Vec<String> = sim_cfg.groups.iter().map(|g| g.names.to_string()).collect();
    let all = all.join(",");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauth = \"none\"\nmax_connections = 256\n\n\
         [pool]\nmax_in_flight = 2048\nrequest_timeout = \"30s\"\ndeadline = \"60s\"\nconnect_concurrency = 256\n\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"{}ms\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n",
        b.summary_ttl.as_millis()
    );
    for i in 0..b.users.max(1) as u32 {
        text.push_str(&format!(
            "[[views.allot]]\nuser = {}\nnodes = \"{all}\"\n\n",
            USER_UID + i
        ));
    }
    text.push_str(&nodes);

    // Admin and user: ps and cat, cold and warm, each on a fresh cache.
    let mut rows = Vec::new();
    let mut target: Option<String> = None;
    for (who, uid) in [("admin (root)", 0u32), ("user (uid 1000)", USER_UID)] {
        eprintln!("bench views: {who}: ps and cat ...");
        let r = Running::start(&text).await?;
        let reads0 = r.node_reads();
        let cpu0 = cpu_seconds(me);
        let t = Instant::now();
        let ps = read_as(r.addr(), uid, "ps").await?;
        let cold = ms(t);
        let cpu = cpu_seconds(me) - cpu0;
        let reads = r.node_reads() - reads0;
        let t = Instant::now();
        read_as(r.addr(), uid, "ps").await?;
        let warm = ms(t);
        let table = Table::<PsRow>::parse(&String::from_utf8_lossy(&ps))
            .map_err(|e| anyhow::anyhow!("ps: {e}"))?;
        // The same file both times: a process of the user's, found in the
        // administrator's table.
        let path = match &target {
            Some(p) => p.clone(),
            None => {
                let row = table
                    .rows
                    .iter()
                    .find(|row| row.user == USER_NAME)
                    .context("no process of the simulated user alice")?;
                let p = format!("{}/{}/status", row.node, row.pid);
                target = Some(p.clone());
                p
            }
        };
        let t = Instant::now();
        let cat = read_as(r.addr(), uid, &path).await;
        let cat_cold = ms(t);
        let t = Instant::now();
        let cat2 = read_as(r.addr(), uid, &path).await;
        let cat_warm = ms(t);
        let ok = |c: &Result<bytes::Bytes>| match c {
            Ok(_) => "",
            Err(_) => " (error)",
        };
        rows.push(vec![
            who.to_string(),
            table.rows.len().to_string(),
            format!("{cold:.0}"),
            format!("{warm:.0}"),
            format!("{cpu:.2}"),
            reads.to_string(),
            format!("{cat_cold:.1}{}", ok(&cat)),
            format!("{cat_warm:.1}{}", ok(&cat2)),
        ]);
        r.stop().await;
    }
    println!(
        "\nReading as the user over {} simulated nodes ({} processes each); fresh cache per row; \
         times in ms; cat = `{}`:\n",
        b.nodes,
        b.procs_per_node,
        target.as_deref().unwrap_or("?")
    );
    print_table(
        &[
            "who",
            "ps rows",
            "ps cold",
            "ps warm",
            "CPU s cold ps",
            "node reads cold ps",
            "cat cold",
            "cat warm",
        ],
        &rows,
    );

    // Fan-in: node reads for K users at once vs one.
    let mut fan = Vec::new();
    let mut one_reads = 0u64;
    for k in [1usize, b.users.max(1)] {
        eprintln!("bench views: {k} users reading /ps at once ...");
        let r = Running::start(&text).await?;
        let reads0 = r.node_reads();
        let t = Instant::now();
        let addr = r.addr().clone();
        let ok = futures::stream::iter(0..k as u32)
            .map(|i| {
                let addr = addr.clone();
                async move { read_as(&addr, USER_UID + i, "ps").await.is_ok() }
            })
            .buffer_unordered(k)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        let wall = ms(t);
        let reads = r.node_reads() - reads0;
        if k == 1 {
            one_reads = reads;
        }
        fan.push(vec![
            k.to_string(),
            ok.to_string(),
            reads.to_string(),
            format!("{wall:.0}"),
            format!("{:.2}x", reads as f64 / one_reads.max(1) as f64),
        ]);
        r.stop().await;
    }
    println!(
        "\nNode reads for users reading /ps at once (tables are read once, as the service):\n"
    );
    print_table(
        &[
            "users at once",
            "reads ok",
            "node reads",
            "wall ms",
            "node reads vs 1 user",
        ],
        &fan,
    );
    drop(sims);
    Ok(())
}

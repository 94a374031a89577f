//! What a simulated node costs: resident memory per node, idle and with a
//! connection open, and the start-up time. Printed, not timed: the
//! assertion only catches an order-of-magnitude regression. A test binary
//! of its own, so no other test's allocations land in the measurement.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gproc::client::{Client, ClientOptions};
use gproc::sim::{SimCluster, SimOptions};

/// VmRSS of this process, KiB.
fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_startup_per_node() {
    const N: usize = 2000;
    const CONNECTED: usize = 500;
    let before = rss_kb();
    let t0 = Instant::now();
    let cluster = SimCluster::start(SimOptions {
        nodes: N,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 5, 0, 1),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let started = t0.elapsed();
    // Let every accept loop run once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let idle = rss_kb();
    let per_idle = (idle.saturating_sub(before)) as f64 / N as f64;

    // Open one connection (and read a file) on CONNECTED nodes; keep them.
    let nodes = cluster.nodes()[..CONNECTED].to_vec();
    let clients: Vec<_> = tokio::time::timeout(
        Duration::from_secs(10),
        futures::stream::iter(nodes)
            .map(|n| async move {
                let c = Client::connect(&n.address(), ClientOptions::default())
                    .await
                    .unwrap();
                let root = c.attach("root", "/proc", Some(0)).await.unwrap();
                root.read_all("loadavg").await.unwrap();
                (c, root)
            })
            .buffer_unordered(64)
            .collect(),
    )
    .await
    .unwrap();
    let connected = rss_kb();
    let per_conn = (connected.saturating_sub(idle)) as f64 / CONNECTED as f64;
    eprintln!(
        "{N} nodes x {} procs: started in {started:?} ({:.1} us/node); RSS {:.1} KiB per idle node; \
         {per_conn:.1} KiB per connected node (server session + this test's client)",
        cluster.sim().options().procs_per_node,
        started.as_secs_f64() * 1e6 / N as f64,
        per_idle,
    );
    assert!(per_idle < 100.0, "{per_idle:.1} KiB per idle node");
    drop(clients);
    cluster.shutdown().await;
}

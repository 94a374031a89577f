//! The aggregator against a simulated cluster: the config the simulator
//! writes loads, and `/ps` lists exactly the processes of the nodes that
//! answer, whether they serve the summary file or only per-process files,
//! while hanging, garbage and refusing nodes are reported missing.

use std::net::Ipv4Addr;
use std::time::Duration;

use gproc::aggregator::Aggregator;
use gproc::client::{Client, ClientOptions};
use gproc::config::Config;
use gproc::sim::{Fault, SimCluster, SimOptions};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_lists_every_reachable_process() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 24,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 6, 0, 1),
        hang: 0.05,
        garbage: 0.1,
        refuse: 0.05,
        no_summary: 0.15,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [pool]\nrequest_timeout = \"5s\"\nconnect_timeout = \"1s\"\ndeadline = \"20s\"\n\n{}",
        cluster.config_toml()
    );
    let cfg = Config::from_str(&text, "sim.toml").unwrap();
    let stop = CancellationToken::new();
    let agg = Aggregator::start(&cfg, stop.clone()).await.unwrap();
    let check = async {
        let c = Client::connect(&agg.addresses[0], ClientOptions::default())
            .await
            .unwrap();
        let root = c.attach("root", "", Some(0)).await.unwrap();
        let ps = String::from_utf8(root.read_all("ps").await.unwrap().to_vec()).unwrap();
        let rows = ps
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("NODE "))
            .count();
        let notes: Vec<&str> = ps.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(rows, cluster.reachable_processes(), "{notes:#?}");
        for n in cluster.nodes() {
            let missing = ps.contains(&format!("# missing {}:", n.name));
            let expect = matches!(n.fault, Fault::Hang | Fault::Garbage | Fault::Refuse);
            assert_eq!(missing, expect, "{} ({:?})", n.name, n.fault);
        }
    };
    tokio::time::timeout(Duration::from_secs(25), check)
        .await
        .expect("the aggregator answers in time");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

/// Issue 13: a node that is up but has not answered when the table's
/// deadline passes (slow, or the aggregator busy, as after a restart) is
/// `# pending`, never `# missing`: nothing is known to have failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_node_late_for_the_deadline_is_pending_not_missing() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 12,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 57, 0, 1),
        slow: 0.25,
        slow_delay: (Duration::from_millis(1500), Duration::from_millis(2000)),
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [pool]\nrequest_timeout = \"10s\"\nconnect_timeout = \"5s\"\ndeadline = \"600ms\"\n\n{}",
        cluster.config_toml()
    );
    let cfg = Config::from_str(&text, "sim.toml").unwrap();
    let stop = CancellationToken::new();
    let agg = Aggregator::start(&cfg, stop.clone()).await.unwrap();
    // Every node connected (and so up) before the table is read.
    agg.tree.pool().connect_all().await;
    let c = Client::connect(&agg.addresses[0], ClientOptions::default())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let ps = String::from_utf8(root.read_all("ps").await.unwrap().to_vec()).unwrap();
    let slow: Vec<&str> = cluster
        .nodes()
        .iter()
        .filter(|n| n.fault == Fault::Slow)
        .map(|n| n.name.as_str())
        .collect();
    assert!(!slow.is_empty(), "the seed makes slow nodes");
    for n in cluster.nodes() {
        let pending = ps.contains(&format!("# pending {}: ", n.name));
        let missing = ps.contains(&format!("# missing {}:", n.name));
        let rows = ps.lines().any(|l| l.starts_with(&format!("{} ", n.name)));
        if n.fault == Fault::Slow {
            assert!(pending && !missing && !rows, "{}:\n{ps}", n.name);
        } else {
            assert!(rows && !pending && !missing, "{}:\n{ps}", n.name);
        }
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

/// Issue 13 item 6: a late node's summary read is not dropped with the
/// table that gave up on it at the deadline: it finishes in the
/// background into the cache, and a later table has the node's rows
/// without reading it again (the summaries' TTL here outlasts the test,
/// so every read the aggregator makes is counted once). Each reply of a
/// slow node comes 400 ms or more after the one before, and a summary
/// read is some five: far past the 300 ms deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_nodes_read_finishes_in_the_background_for_the_next_table() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 12,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 158, 0, 1),
        slow: 0.25,
        slow_delay: (Duration::from_millis(400), Duration::from_millis(500)),
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [pool]\nrequest_timeout = \"30s\"\nconnect_timeout = \"30s\"\ndeadline = \"300ms\"\n\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"10m\"\n\n{}",
        cluster.config_toml()
    );
    let cfg = Config::from_str(&text, "sim.toml").unwrap();
    let stop = CancellationToken::new();
    let agg = Aggregator::start(&cfg, stop.clone()).await.unwrap();
    // Every node connected (and so up) before the first table.
    agg.tree.pool().connect_all().await;
    let c = Client::connect(&agg.addresses[0], ClientOptions::default())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let slow: Vec<&str> = cluster
        .nodes()
        .iter()
        .filter(|n| n.fault == Fault::Slow)
        .map(|n| n.name.as_str())
        .collect();
    assert!(!slow.is_empty(), "the seed makes slow nodes");
    let first = String::from_utf8(root.read_all("ps").await.unwrap().to_vec()).unwrap();
    for n in &slow {
        assert!(first.contains(&format!("# pending {n}: ")), "{n}:\n{first}");
        assert!(!first.contains(&format!("# missing {n}:")), "{n}:\n{first}");
    }
    // Every node's read has started: one each.
    let reads = || {
        agg.tree
            .cache()
            .stats()
            .node_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let started = reads();
    assert_eq!(started, cluster.nodes().len() as u64);
    // Later tables: each waits at most the deadline, so a bounded number
    // of them sees the slow reads done (no clock asserted).
    let mut ps = first;
    for _ in 0..100 {
        if !ps.contains("# pending ") {
            break;
        }
        ps = String::from_utf8(root.read_all("ps").await.unwrap().to_vec()).unwrap();
    }
    for n in cluster.nodes() {
        let rows = ps.lines().any(|l| l.starts_with(&format!("{} ", n.name)));
        assert!(rows && !ps.contains("\n# "), "{}:\n{ps}", n.name);
    }
    assert_eq!(reads(), started, "the late reads were not started again");
    // `/load` too: built from the same cached summaries, no read.
    let load = String::from_utf8(root.read_all("load").await.unwrap().to_vec()).unwrap();
    assert!(!load.contains("\n# "), "{load}");
    assert_eq!(reads(), started);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

//! Live refresh (issue 13 item 2): the aggregator refreshes each node's
//! summary with the delta since the generation it holds
//! (`/.gproc/since/TOKEN`), and reads whole whenever that fails: a node
//! without deltas (an older agent), a token the node forgot (generations
//! skipped by other readers), a restarted agent (a new epoch). The tables
//! stay those of whole reads.

use std::net::Ipv4Addr;
use std::time::Duration;

use gproc::client::{Client, ClientOptions};
use gproc::sim::{SimCluster, SimOptions};
use gproc::tree::SummaryRefresh;

use crate::common::*;

/// Summaries expire fast, so each read of `/ps` below is a refresh.
const SHORT_TTL: &str = "[cache]\n[[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"100ms\"\n";

async fn read(root: &gproc::client::FidHandle, path: &str) -> String {
    String::from_utf8(root.read_all(path).await.unwrap().to_vec()).unwrap()
}

/// `/ps` rows as (node, pid, command): what does not move with time
/// (CPU and memory columns do, between two refreshes).
fn keys(ps: &str) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = ps
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("NODE "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f.last().unwrap_or(&"").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn refresh() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_apply_deltas_and_old_agents_are_read_whole() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 8,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 83, 0, 1),
        churn_per_min: 0.0,
        no_deltas: 0.25,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let (agg, stop, server) = aggregate_sim(&cluster, SHORT_TTL).await;
    agg.tree.set_summary_refresh(SummaryRefresh::Deltas);
    let c = Client::connect(&gproc::net::Address::Tcp(server), ClientOptions::default())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let first = read(&root, "ps").await;
    let r0 = agg.tree.summary_reads();
    // (The aggregator may have read some at start, to learn what the
    // pool's nodes are.)
    assert!(r0.wholes >= 8 && r0.fallbacks == 0, "{r0:?}");
    refresh().await;
    let second = read(&root, "ps").await;
    let r1 = agg.tree.summary_reads();
    // Six nodes refresh by delta; the two without deltas are read whole.
    assert_eq!(
        (r1.wholes - r0.wholes, r1.deltas - r0.deltas, r1.fallbacks),
        (2, 6, 0),
        "{r1:?}"
    );
    assert!(r1.bytes - r0.bytes < r0.bytes, "{r0:?} {r1:?}");
    // The same rows as whole reads give (no churn: the same processes).
    agg.tree.set_summary_refresh(SummaryRefresh::Whole);
    refresh().await;
    let whole = read(&root, "ps").await;
    let r2 = agg.tree.summary_reads();
    assert_eq!((r2.wholes - r1.wholes, r2.deltas), (8, r1.deltas));
    assert_eq!(keys(&second), keys(&whole));
    assert_eq!(keys(&first), keys(&whole));
    assert_eq!(keys(&whole).len(), cluster.reachable_processes());
    // The default: every node (all serve `fresh_at_zero`) is read again
    // on the fid its first read kept open, one message each.
    agg.tree.set_summary_refresh(SummaryRefresh::Reread);
    refresh().await;
    read(&root, "ps").await;
    let r3 = agg.tree.summary_reads();
    assert_eq!(
        (r3.wholes - r2.wholes, r3.rereads - r2.rereads),
        (8, 0),
        "{r3:?}"
    );
    refresh().await;
    let reread = read(&root, "ps").await;
    let r4 = agg.tree.summary_reads();
    assert_eq!(
        (r4.wholes - r3.wholes, r4.rereads - r3.rereads),
        (8, 8),
        "{r4:?}"
    );
    assert_eq!(keys(&reread), keys(&whole));
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

/// Another reader with the aggregator's identity reads a node's summary
/// more often than the node keeps generations: the aggregator's token is
/// forgotten (ENOENT), and it reads whole, then deltas again. A reader
/// one or two generations in between leaves the delta working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_generations_fall_back_to_a_whole_read() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 2,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 84, 0, 1),
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let (agg, stop, server) = aggregate_sim(&cluster, SHORT_TTL).await;
    agg.tree.set_summary_refresh(SummaryRefresh::Deltas);
    let c = Client::connect(&gproc::net::Address::Tcp(server), ClientOptions::default())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let node = Client::connect(&cluster.nodes()[0].address(), ClientOptions::default())
        .await
        .unwrap();
    let direct = node.attach("root", "/proc", Some(0)).await.unwrap();
    let want = keys(&read(&root, "ps").await);
    for (between, fallbacks) in [
        (1, 0),
        (2, 0),
        (gproc::format::delta::HISTORY_DEPTH + 1, 1),
        (0, 0),
    ] {
        let before = agg.tree.summary_reads();
        for _ in 0..between {
            direct.read_all(".gproc/ps").await.unwrap();
        }
        refresh().await;
        assert_eq!(keys(&read(&root, "ps").await), want);
        let after = agg.tree.summary_reads();
        assert_eq!(
            (
                after.fallbacks - before.fallbacks,
                after.wholes - before.wholes
            ),
            (fallbacks, fallbacks),
            "{between} reads in between: {after:?}"
        );
        assert_eq!(after.deltas - before.deltas, 2 - fallbacks, "{after:?}");
    }
    // A token never served is ENOENT at the node.
    let e = direct
        .read_all(".gproc/since/0000000000000001.0000000000000002")
        .await
        .unwrap_err();
    assert_eq!(e.errno(), gproc::proto::errno::ENOENT, "{e}");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

/// The real agent over the real `/proc`: a process started between two
/// refreshes appears and one killed disappears, through deltas; a
/// restarted agent (a new epoch) does not know the token, and the
/// aggregator reads it whole, then deltas again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_serves_deltas_and_a_restarted_one_is_read_whole() {
    let port = Port::new();
    let agent = start_agent(&port);
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [pool]\nconnect_timeout = \"1s\"\n\n{SHORT_TTL}\n\
         [[nodes]]\nnames = \"live1\"\naddress = \"{}\"\n",
        port.addr()
    );
    let cfg = gproc::config::Config::from_str(&text, "live.toml").unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let agg = gproc::aggregator::Aggregator::start(&cfg, stop.clone())
        .await
        .unwrap();
    agg.tree.set_summary_refresh(SummaryRefresh::Deltas);
    let c = Client::connect(&agg.addresses[0], ClientOptions::default())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let has = |ps: &str, pid: u32| {
        ps.lines().any(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some("live1") && f.next() == Some(pid.to_string().as_str())
        })
    };
    let me = std::process::id();
    assert!(has(&read(&root, "ps").await, me));
    let r0 = agg.tree.summary_reads();
    assert!(r0.wholes >= 1, "{r0:?}");

    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    refresh().await;
    let ps = read(&root, "ps").await;
    assert!(has(&ps, child.id()) && has(&ps, me), "{ps}");
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    refresh().await;
    let ps = read(&root, "ps").await;
    assert!(!has(&ps, pid) && has(&ps, me), "{ps}");
    let r1 = agg.tree.summary_reads();
    assert_eq!(
        (r1.wholes, r1.deltas - r0.deltas, r1.fallbacks),
        (r0.wholes, 2, 0),
        "{r1:?}"
    );

    // The agent restarts on the same port: a new epoch.
    drop(agent);
    let _agent = start_agent(&port);
    let mut back = false;
    for _ in 0..80 {
        refresh().await;
        if has(&read(&root, "ps").await, me) && agg.tree.summary_reads().wholes > r1.wholes {
            back = true;
            break;
        }
    }
    assert!(back, "the restarted agent's summary is read");
    let r2 = agg.tree.summary_reads();
    assert!(r2.fallbacks > r1.fallbacks, "{r2:?}");
    refresh().await;
    assert!(has(&read(&root, "ps").await, me));
    let r3 = agg.tree.summary_reads();
    assert_eq!((r3.wholes, r3.deltas), (r2.wholes, r2.deltas + 1), "{r3:?}");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
}

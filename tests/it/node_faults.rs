//! Node faults behind the aggregator: a simulated cluster where some nodes
//! are slow, hang, flap, answer garbage, refuse connections or serve a
//! huge file. Runs the scenario behind `gproc bench faults` (the figures
//! in RELIABILITY.md) and asserts what a user of the aggregator sees: the
//! healthy nodes are all there every time, broken ones are listed as
//! missing or down with their reason, flapping ones keep their last rows
//! as marked stale copies, nothing delays a table past the deadline, and
//! reads of a broken node's files fail with what is wrong with the node.

use std::net::Ipv4Addr;
use std::time::Duration;

use gproc::bench::faults::{FaultBench, FaultReport, FaultRow, run};

fn row<'a>(r: &'a FaultReport, fault: &str) -> &'a FaultRow {
    r.rows
        .iter()
        .find(|x| x.fault == fault)
        .unwrap_or_else(|| panic!("no {fault} nodes in {r:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_nodes_cost_only_themselves() {
    let b = FaultBench {
        nodes: 60,
        procs_per_node: 30,
        fraction: 5.0 / 60.0,
        duration: Duration::from_secs(12),
        interval: Duration::from_millis(300),
        // Generous for a debug build on a busy 2-core machine: these bound
        // hangs, they do not measure speed.
        deadline: Duration::from_secs(6),
        request_timeout: Duration::from_secs(3),
        stale: Duration::from_secs(30),
        die_period: Duration::from_secs(6),
        first_address: Ipv4Addr::new(127, 7, 0, 1),
        progress: false,
        ..FaultBench::default()
    };
    let r = run(&b).await.expect("the scenario runs");
    let show = format!("{r:#?}");
    assert!(r.rounds >= 3, "{show}");

    // No table waits past the deadline (plus rendering and transport).
    let slowest = r.ps_times.iter().max().copied().unwrap_or_default();
    assert!(slowest < b.deadline + Duration::from_secs(3), "{show}");

    // Healthy nodes, and nodes whose only trouble is a huge file, are in
    // every table.
    assert!(r.healthy_missing.is_empty(), "{show}");
    for f in ["none", "huge"] {
        let x = row(&r, f);
        assert_eq!(x.in_ps, (x.nodes, x.nodes), "{f}: {show}");
        assert_eq!(x.down_max, 0, "{f}: {show}");
    }
    assert!(
        row(&r, "none")
            .direct
            .as_ref()
            .is_some_and(|(_, o)| o.ends_with("bytes")),
        "{show}"
    );

    // Nodes that never answer 9P are never in a table, always noted missing.
    for f in ["hang", "garbage", "refuse"] {
        let x = row(&r, f);
        assert_eq!(x.in_ps.1, 0, "{f}: {show}");
        assert_eq!(x.missing_max, x.nodes, "{f}: {show}");
    }
    // Those that fail at connect are down in /nodes, with the reason.
    for (f, why) in [("garbage", "protocol error"), ("refuse", "refused")] {
        let x = row(&r, f);
        assert_eq!(x.down_max, x.nodes, "{f}: {show}");
        assert!(x.reasons.iter().any(|s| s.contains(why)), "{f}: {show}");
        // Reconnects back off exponentially from 250 ms: over 12 s that
        // is at most 7 attempts (without backoff it would be one per read).
        assert!((1..=8).contains(&x.failures_max), "{f}: {show}");
    }
    // A read of a broken node's file says what is wrong with the node,
    // not that the file does not exist.
    let direct = |f: &str| row(&r, f).direct.clone().unwrap_or_default().1;
    assert!(direct("refuse").contains("host is down"), "{show}");
    assert!(direct("garbage").contains("host is down"), "{show}");
    let hang = direct("hang");
    assert!(
        hang.contains("timed out") || hang.contains("host is down"),
        "{show}"
    );
    // A node that accepts and then answers nothing is dropped after one
    // request timeout and backs off, so it is down in /nodes too.
    assert!(row(&r, "hang").down_max >= 1, "{show}");

    // Flapping nodes went down during the run and kept their last rows as
    // stale copies, said to be stale, within the rule's grace period.
    let die = row(&r, "die");
    assert!(die.down_max >= 1, "{show}");
    assert!(die.stale_nodes >= 1, "{show}");
    assert!(
        die.stale_oldest <= (b.stale + Duration::from_secs(2)).as_secs_f64(),
        "{show}"
    );

    // Slow nodes are served when they answer within the deadline.
    assert!(row(&r, "slow").in_ps.1 >= 1, "{show}");
}

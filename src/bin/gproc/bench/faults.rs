//! `gproc bench faults`: an aggregator over a simulated cluster in which a
//! fraction of the nodes has each fault the simulator can inject (slow,
//! hanging, flapping, garbage, refusing, huge files). It reads `/ps` and
//! `/nodes` over and over for a while, as a user would, and reports what
//! that user saw per fault kind: rows kept or missing, stale copies and
//! their age, the node list's state and reason, what a direct read of a
//! node file gets, and how long every `/ps` took against the deadline.
//!
//! The same [`run`] backs this module's test (`tests` below), which
//! asserts on the report, so the published figures and the CI checks come
//! from one code path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::print_table;
use gproc::aggregator::Aggregator;
use gproc::client::{Client, ClientOptions, FidHandle};
use gproc::config::Config;
use gproc::format::table::{NodeRow, Note, PsRow, Table};
use gproc::sim::{Fault, SimCluster, SimOptions};

/// Settings of the fault benchmark.
#[derive(Debug, Clone)]
pub struct FaultBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Processes per node.
    pub procs_per_node: usize,
    /// Fraction of the nodes with each fault kind.
    pub fraction: f64,
    /// How long to keep reading.
    pub duration: Duration,
    /// Pause between rounds of reads.
    pub interval: Duration,
    /// The pool's deadline for one table (`pool.deadline`).
    pub deadline: Duration,
    /// The pool's limit on one request (`pool.request_timeout`).
    pub request_timeout: Duration,
    /// The `stale` grace of the `/.gproc/ps` rule (its TTL is 1 s).
    pub stale: Duration,
    /// Mean flapping period of dying nodes.
    pub die_period: Duration,
    /// Simulator seed.
    pub seed: u64,
    /// First node address (127.x.y.z), so runs can sit side by side.
    pub first_address: Ipv4Addr,
    /// Print progress on stderr.
    pub progress: bool,
}

impl Default for FaultBench {
    fn default() -> Self {
        Self {
            nodes: 200,
            procs_per_node: 50,
            fraction: 0.05,
            duration: Duration::from_secs(30),
            interval: Duration::from_millis(500),
            deadline: Duration::from_secs(3),
            request_timeout: Duration::from_millis(1500),
            stale: Duration::from_secs(10),
            die_period: Duration::from_secs(8),
            seed: 1,
            first_address: Ipv4Addr::new(127, 9, 0, 1),
            progress: true,
        }
    }
}

/// What the user saw of the nodes of one fault kind.
#[derive(Debug, Clone, Default)]
pub struct FaultRow {
    /// The fault (`none` for healthy nodes).
    pub fault: &'static str,
    /// Nodes with it.
    pub nodes: usize,
    /// Fewest and most of them with rows in one `/ps`.
    pub in_ps: (usize, usize),
    /// Most of them in `# missing` notes of one `/ps`.
    pub missing_max: usize,
    /// Nodes ever shown as `# stale` copies, and the oldest age seen.
    pub stale_nodes: usize,
    /// Oldest stale copy shown, in seconds.
    pub stale_oldest: f64,
    /// Most of them `down` in one `/nodes`.
    pub down_max: usize,
    /// Distinct reasons `/nodes` gave for them (shortened).
    pub reasons: BTreeSet<String>,
    /// Most consecutive failed connects of one of them at the end (the
    /// pool's backoff keeps this far below the number of rounds).
    pub failures_max: u32,
    /// A direct read of one of them (`NODE/loadavg`): time and outcome.
    pub direct: Option<(Duration, String)>,
}

/// Everything [`run`] measured.
#[derive(Debug, Clone, Default)]
pub struct FaultReport {
    /// One row per fault kind present, healthy first.
    pub rows: Vec<FaultRow>,
    /// Duration of every `/ps` read.
    pub ps_times: Vec<Duration>,
    /// The deadline they ran under.
    pub deadline: Duration,
    /// Nodes without a fault (or with only a huge file) ever reported
    /// missing, with why: a fault must not cost the nodes without one.
    pub healthy_missing: BTreeMap<String, String>,
    /// Reading the huge file through the aggregator: time and outcome.
    pub huge: Option<(String, Duration, String)>,
    /// Rounds of reads.
    pub rounds: usize,
}

/// Runs the scenario and returns what was seen. The caller prints it
/// ([`print()`]) or asserts on it.
///
/// # Errors
/// The simulator or the aggregator cannot start, or the aggregator itself
/// cannot be read.
pub async fn run(b: &FaultBench) -> Result<FaultReport> {
    let say = |m: String| {
        if b.progress {
            eprintln!("bench faults: {m}");
        }
    };
    say(format!(
        "{} nodes, {:.0}% of them with each fault ...",
        b.nodes,
        b.fraction * 100.0
    ));
    let cluster = SimCluster::start(SimOptions {
        nodes: b.nodes,
        procs_per_node: b.procs_per_node,
        seed: b.seed,
        slow: b.fraction,
        hang: b.fraction,
        die: b.fraction,
        garbage: b.fraction,
        refuse: b.fraction,
        huge: b.fraction,
        base_port: 0,
        first_address: b.first_address,
        // Slow, but each request well inside the deadline.
        slow_delay: (Duration::from_millis(50), Duration::from_millis(300)),
        die_period: b.die_period,
        huge_bytes: 48 << 20,
        ..SimOptions::default()
    })
    .await
    .context("cannot start the simulated cluster")?;
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [pool]\ndeadline = \"{}ms\"\nrequest_timeout = \"{}ms\"\nconnect_timeout = \"1s\"\n\
         reconnect_min = \"250ms\"\nreconnect_max = \"4s\"\n\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"1s\"\nstale = \"{}ms\"\n\n{}",
        b.deadline.as_millis(),
        b.request_timeout.as_millis(),
        b.stale.as_millis(),
        cluster.config_toml()
    );
    let cfg = Config::from_str(&text, "faults").map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = CancellationToken::new();
    let agg = Aggregator::start(&cfg, stop.clone()).await?;
    let result = observe(b, &cluster, &agg).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
    result
}

/// Per-node observations accumulated over the rounds.
#[derive(Default)]
struct Seen {
    in_ps: Vec<bool>,
    missing: Vec<bool>,
    stale_age: Option<f64>,
    down: Vec<bool>,
    reasons: BTreeSet<String>,
}

async fn observe(b: &FaultBench, cluster: &SimCluster, agg: &Aggregator) -> Result<FaultReport> {
    let addr = agg
        .addresses
        .first()
        .context("the aggregator has no address")?;
    let c = Client::connect(addr, ClientOptions::default())
        .await
        .with_context(|| format!("cannot reach the aggregator at {addr}"))?;
    let root = c.attach("root", "", Some(0)).await?;
    let fault_of: BTreeMap<&str, Fault> = cluster
        .nodes()
        .iter()
        .map(|n| (n.name.as_str(), n.fault))
        .collect();
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut report = FaultReport {
        deadline: b.deadline,
        ..FaultReport::default()
    };
    let start = Instant::now();
    let mut last_note = Instant::now();
    while start.elapsed() < b.duration || report.rounds == 0 {
        let t = Instant::now();
        let ps = read_text(&root, "ps").await?;
        report.ps_times.push(t.elapsed());
        let nodes = read_text(&root, "nodes").await?;
        record(&mut seen, &ps, &nodes, &fault_of, &mut report);
        report.rounds += 1;
        if last_note.elapsed() > Duration::from_secs(5) {
            last_note = Instant::now();
            if b.progress {
                eprintln!(
                    "bench faults: {:.0}s, {} rounds, last /ps {:.0?}",
                    start.elapsed().as_secs_f64(),
                    report.rounds,
                    t.elapsed()
                );
            }
        }
        tokio::time::sleep(b.interval).await;
    }

    // Direct reads of one node of each kind, and the huge file.
    let mut direct: BTreeMap<&'static str, (Duration, String)> = BTreeMap::new();
    for n in cluster.nodes() {
        let kind = n.fault.name();
        if direct.contains_key(kind) {
            continue;
        }
        let t = Instant::now();
        let out = outcome(root.read_all(&format!("{}/loadavg", n.name)).await);
        direct.insert(kind, (t.elapsed(), out));
    }
    if let Some(n) = cluster.nodes().iter().find(|n| n.huge_path.is_some()) {
        let path = format!("{}{}", n.name, n.huge_path.as_deref().unwrap_or(""));
        let t = Instant::now();
        let out = outcome(root.read_all(&path).await);
        report.huge = Some((path, t.elapsed(), out));
    }

    let status: BTreeMap<String, u32> = agg
        .tree
        .pool()
        .nodes()
        .iter()
        .map(|n| (n.spec.name.clone(), n.status().failures))
        .collect();
    for f in std::iter::once(Fault::None).chain(Fault::ALL) {
        let names: Vec<&str> = fault_of
            .iter()
            .filter(|(_, k)| **k == f)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut row = FaultRow {
            fault: f.name(),
            nodes: names.len(),
            direct: direct.get(f.name()).cloned(),
            ..FaultRow::default()
        };
        let per_round = |pick: fn(&Seen) -> &Vec<bool>| -> Vec<usize> {
            (0..report.rounds)
                .map(|r| {
                    names
                        .iter()
                        .filter(|n| {
                            seen.get(**n)
                                .and_then(|s| pick(s).get(r).copied())
                                .unwrap_or(false)
                        })
                        .count()
                })
                .collect()
        };
        let in_ps = per_round(|s| &s.in_ps);
        row.in_ps = (
            in_ps.iter().copied().min().unwrap_or(0),
            in_ps.iter().copied().max().unwrap_or(0),
        );
        row.missing_max = per_round(|s| &s.missing).into_iter().max().unwrap_or(0);
        row.down_max = per_round(|s| &s.down).into_iter().max().unwrap_or(0);
        for n in &names {
            if let Some(s) = seen.get(*n) {
                if let Some(age) = s.stale_age {
                    row.stale_nodes += 1;
                    row.stale_oldest = row.stale_oldest.max(age);
                }
                row.reasons.extend(s.reasons.iter().cloned());
            }
            row.failures_max = row.failures_max.max(status.get(*n).copied().unwrap_or(0));
        }
        report.rows.push(row);
    }
    Ok(report)
}

/// Folds one round's `/ps` and `/nodes` into the observations.
fn record(
    seen: &mut BTreeMap<String, Seen>,
    ps: &str,
    nodes: &str,
    fault_of: &BTreeMap<&str, Fault>,
    report: &mut FaultReport,
) {
    let round = report.rounds;
    for name in fault_of.keys() {
        let s = seen.entry((*name).to_string()).or_default();
        s.in_ps.resize(round + 1, false);
        s.missing.resize(round + 1, false);
        s.down.resize(round + 1, false);
    }
    // Tables that do not parse count as empty: every node then looks absent.
    let ps = Table::<PsRow>::parse(ps).unwrap_or_default();
    for note in &ps.notes {
        match note {
            // A pending node has no rows either; for a healthy one, why
            // is in its reason.
            Note::Missing { node, reason, .. } | Note::Pending { node, reason, .. } => {
                if let Some(s) = seen.get_mut(node.as_str()) {
                    s.missing[round] = true;
                    if matches!(fault_of.get(node.as_str()), Some(Fault::None | Fault::Huge)) {
                        report.healthy_missing.insert(node.clone(), reason.clone());
                    }
                }
            }
            Note::Stale { node, age, .. } => {
                if let Some(s) = seen.get_mut(node.as_str()) {
                    let age = age.as_secs_f64();
                    s.stale_age = Some(s.stale_age.unwrap_or(0.0).max(age));
                }
            }
            Note::Foreign { .. } | Note::Other(_) => {}
        }
    }
    for r in &ps.rows {
        if let Some(s) = seen.get_mut(&r.node) {
            s.in_ps[round] = true;
        }
    }
    let nodes = Table::<NodeRow>::parse(nodes).unwrap_or_default();
    for n in nodes.rows.iter().filter(|n| n.is_down()) {
        if let Some(s) = seen.get_mut(&n.node) {
            s.down[round] = true;
            s.reasons.insert(shorten(n.error.as_deref().unwrap_or("-")));
        }
    }
}

async fn read_text(root: &FidHandle, path: &str) -> Result<String> {
    let b = root
        .read_all_limited(path, gproc::format::table::MAX_TABLE_BYTES)
        .await
        .with_context(|| format!("reading /{path} from the aggregator"))?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// A read's outcome in a few words.
fn outcome<E: std::fmt::Display>(r: std::result::Result<bytes::Bytes, E>) -> String {
    match r {
        Ok(b) => format!("{} bytes", b.len()),
        Err(e) => format!("error: {}", shorten(&e.to_string())),
    }
}

/// A reason without the node-specific parts (addresses, numbers), so that
/// equal reasons group.
fn shorten(s: &str) -> String {
    let s: String = s
        .split_whitespace()
        .filter(|w| !w.contains("127.") && !w.starts_with("sim"))
        .collect::<Vec<_>>()
        .join(" ");
    s.chars().take(70).collect()
}

/// Prints the report as the tables in RELIABILITY.md.
pub fn print(b: &FaultBench, r: &FaultReport) {
    println!(
        "\nNode faults: {} simulated nodes ({} processes each), {:.0}% with each fault; \
         {} rounds of /ps + /nodes over {:?}; deadline {:?}, request timeout {:?}, \
         /.gproc/ps ttl 1s stale {:?}:\n",
        b.nodes,
        b.procs_per_node,
        b.fraction * 100.0,
        r.rounds,
        b.duration,
        r.deadline,
        b.request_timeout,
        b.stale
    );
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|x| {
            vec![
                x.fault.to_string(),
                x.nodes.to_string(),
                format!("{}-{}", x.in_ps.0, x.in_ps.1),
                x.missing_max.to_string(),
                if x.stale_nodes > 0 {
                    format!("{} (up to {:.1}s old)", x.stale_nodes, x.stale_oldest)
                } else {
                    "0".into()
                },
                x.down_max.to_string(),
                x.failures_max.to_string(),
                x.reasons
                    .iter()
                    .take(2)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
                x.direct
                    .as_ref()
                    .map(|(t, o)| format!("{o} in {:.0} ms", t.as_secs_f64() * 1000.0))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "fault",
            "nodes",
            "with rows in /ps (min-max)",
            "# missing (max)",
            "# stale (nodes)",
            "down in /nodes (max)",
            "failed connects (max)",
            "/nodes reason",
            "read NODE/loadavg",
        ],
        &rows,
    );
    let (p50, p99, max) = super::percentiles(r.ps_times.clone());
    println!(
        "\n/ps over {} rounds: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (deadline {:?})",
        r.ps_times.len(),
        p50 / 1000.0,
        p99 / 1000.0,
        max / 1000.0,
        r.deadline
    );
    if let Some((path, t, o)) = &r.huge {
        println!(
            "huge file /{path}: {o} in {:.0} ms",
            t.as_secs_f64() * 1000.0
        );
    }
    if r.healthy_missing.is_empty() {
        println!("nodes without a fault reported missing: none");
    } else {
        println!(
            "nodes without a fault reported missing: {}",
            r.healthy_missing.len()
        );
        for (n, why) in r.healthy_missing.iter().take(5) {
            println!("  {n}: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    // Node faults behind the aggregator: a simulated cluster where some nodes
    // are slow, hang, flap, answer garbage, refuse connections or serve a
    // huge file. Runs the scenario behind `gproc bench faults` (the figures
    // in RELIABILITY.md) and asserts what a user of the aggregator sees: the
    // healthy nodes are all there every time, broken ones are listed as
    // missing or down with their reason, flapping ones keep their last rows
    // as marked stale copies, nothing delays a table past the deadline, and
    // reads of a broken node's files fail with what is wrong with the node.

    use super::*;

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
}

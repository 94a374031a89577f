//! `/metrics` scraped for real: a simulated cluster and a node nobody
//! answers for, under `gproc serve` with `[metrics] listen`; the
//! exposition read through 9P (as root and as users of different views)
//! and over the HTTP listener, and parsed by the Python `prometheus_client`
//! parsers (the Prometheus text one and the OpenMetrics one), which must
//! agree. Values are checked against `/load` and `/nodes`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use gproc::format::table::{LoadRow, Table};
use gproc::sim::{SimCluster, SimOptions};

use crate::common::*;

const NOBODY: u32 = 65534;
const USER2: u32 = 64002;
/// The simulator's users have uids from here.
const SIM_USERS: std::ops::Range<u32> = 1000..1032;

/// One sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn python() -> PathBuf {
    peers_dir().join("venv-prometheus/bin/python")
}

/// Parses an exposition (`src` "-": `text` on stdin; else an URL fetched
/// with urllib) with both of prometheus_client's parsers; fails unless
/// both accept it and find the same samples. Returns them and the
/// response's Content-Type.
const PARSE: &str = r#"
import json, math, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
src = sys.argv[1]
ctype = None
if src == "-":
    text = sys.stdin.read()
else:
    with urllib.request.urlopen(src, timeout=20) as r:
        text = r.read().decode()
        ctype = r.headers.get("Content-Type")
def samples(families):
    return sorted((s.name, sorted(s.labels.items()), s.value) for f in families for s in f.samples)
a = samples(text_families(text))
b = samples(om_families(text))
if a != b:
    sys.exit("the parsers disagree:\n" + "\n".join(map(str, set(a) ^ set(b))))
out = [[n, dict(l), (v if math.isfinite(v) else 1e308)] for n, l, v in a]
print(json.dumps({"content_type": ctype, "samples": out}))
"#;

fn parse_with_python(src: &str, text: &str) -> (Option<String>, Vec<Sample>) {
    let mut child = Command::new(python())
        .args(["-c", PARSE, src])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                s[0].as_str().unwrap().to_string(),
                labels,
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    (v["content_type"].as_str().map(str::to_string), samples)
}

/// The value of `name` for `node`.
fn node_value(samples: &[Sample], name: &str, node: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.get("node").is_some_and(|v| v == node) && l.len() == 1)
        .map(|s| s.2)
}

/// Every node named by a `node` label.
fn nodes_named(samples: &[Sample]) -> BTreeSet<String> {
    samples
        .iter()
        .filter_map(|(_, l, _)| l.get("node").cloned())
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
        .map(|s| s.2)
}

/// Runs gproc as `uid` (as this process when it is ours).
fn gproc_as(uid: u32, args: &[&str]) -> String {
    let mut cmd = Command::new(gproc());
    cmd.args(args);
    // SAFETY: geteuid has no preconditions.
    if uid != unsafe { libc::geteuid() } {
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("run gproc");
    assert!(
        out.status.success(),
        "gproc {args:?} as {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sends `request` raw and returns what came back (up to the close or
/// 10 s).
fn http_raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading it all.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn metrics_parse_match_load_and_follow_views() {
    if !require(
        "the prometheus_client venv (.ci/setup-peers.sh)",
        python().exists(),
    ) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = rt
        .block_on(SimCluster::start(SimOptions {
            nodes: 4,
            base_port: 0,
            first_address: Ipv4Addr::new(127, 9, 0, 1),
            name_prefix: "mx".into(),
            ..SimOptions::default()
        }))
        .unwrap();
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let allotted = names[0].clone();

    let (pg, dead, pm) = (Port::new(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let unix = dir.path().join("g.sock").display().to_string();
    // Summaries kept a minute, so /load and /metrics show the same copy.
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\", \"unix:{unix}\"]\nauth = \"none\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:{pm}\"\n\n\
         [pool]\nconnect_timeout = \"1s\"\n\n\
         [cache]\n[[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"60s\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[views.allot]]\nuser = {NOBODY}\nnodes = \"{allotted}\"\n\n\
         {}\n\
         [[nodes]]\nnames = \"down1\"\naddress = \"127.0.0.1:{dead}\"\n",
        cluster.config_toml()
    );
    let agg = start_aggregator(dir.path(), &cfg, &pg);
    let server = format!("unix:{unix}");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };

    // The first scrape, before anyone read a table, has every answering
    // node's numbers (it gathers summaries as /load does).
    let (_, first) = parse_with_python(&format!("http://127.0.0.1:{pm}/metrics"), "");
    for n in &names {
        assert!(
            node_value(&first, "gproc_node_load1", n).is_some(),
            "{n}: no load in the first scrape"
        );
    }
    assert_eq!(node_value(&first, "gproc_node_load1", "down1"), None);

    // Reading /load reads every node's summary (and finds down1 down).
    let load = gproc_as(me, &["cat", "--server", &server, "load"]);
    let load: Table<LoadRow> = Table::parse(&load).unwrap();
    if root {
        assert_eq!(load.rows.len(), names.len(), "{:?}", load.notes);
    }

    // Through 9P, as this process's user (root in CI: an administrator).
    let text = gproc_as(me, &["cat", "--server", &server, "metrics"]);
    let (_, s) = parse_with_python("-", &text);
    if root {
        for row in &load.rows {
            let n = &row.node;
            assert_eq!(node_value(&s, "gproc_node_up", n), Some(1.0), "{n}");
            for (i, m) in ["gproc_node_load1", "gproc_node_load5", "gproc_node_load15"]
                .iter()
                .enumerate()
            {
                let v = node_value(&s, m, n).unwrap_or_else(|| panic!("{m} {n}\n{text}"));
                assert!(
                    (v - row.load[i]).abs() < 0.0051,
                    "{m} {n}: {v} vs /load {row:?}"
                );
            }
            let total = node_value(&s, "gproc_node_memory_total_bytes", n).unwrap();
            assert_eq!(total as u64 / (1 << 20), row.mem_total_mb, "{n}");
            let avail = node_value(&s, "gproc_node_memory_available_bytes", n).unwrap();
            assert_eq!(avail as u64 / (1 << 20), row.mem_avail_mb, "{n}");
            assert_eq!(
                node_value(&s, "gproc_node_cpus", n),
                Some(row.cpus as f64),
                "{n}"
            );
            assert_eq!(
                node_value(&s, "gproc_node_processes", n),
                Some(row.procs as f64),
                "{n}"
            );
            let arch = row.arch.clone().unwrap();
            assert_eq!(
                s.iter()
                    .find(|(m, l, _)| m == "gproc_node_machine" && l["node"] == *n)
                    .map(|(_, l, v)| (l["arch"].clone(), *v)),
                Some((arch, 1.0)),
                "{n}"
            );
        }
        // The node nobody answers for is down: 0 in the up series.
        assert_eq!(
            node_value(&s, "gproc_node_up", "down1"),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            value(
                &s,
                "gproc_node_state",
                &[("node", "down1"), ("state", "down")]
            ),
            Some(1.0)
        );
        assert_eq!(node_value(&s, "gproc_node_load1", "down1"), None);
        // Aggregator health, for administrators.
        assert_eq!(
            value(&s, "gproc_pool_nodes", &[]),
            Some(names.len() as f64 + 1.0)
        );
        assert_eq!(
            value(&s, "gproc_pool_connections", &[]),
            Some(names.len() as f64)
        );
        assert!(value(&s, "gproc_tables_built_total", &[]).unwrap() >= 1.0);
        assert!(value(&s, "gproc_cache_entries", &[]).unwrap() >= names.len() as f64);
        // This very read walked and opened: counted.
        let walks = value(
            &s,
            "gproc_9p_request_duration_seconds_count",
            &[("op", "walk")],
        );
        assert!(walks.is_some_and(|w| w >= 1.0), "{text}");
        // This read's own connection and fid are among what the 9P
        // server holds, and its messages among those it read.
        for held in ["gproc_9p_connections", "gproc_9p_fids"] {
            assert!(
                value(&s, held, &[]).is_some_and(|v| v >= 1.0),
                "{held}: {text}"
            );
        }
        let frames = value(&s, "gproc_9p_frames_read_total", &[]);
        assert!(frames.is_some_and(|f| f >= 3.0), "{text}");
    }

    // Over HTTP: what an administrator sees, whoever asks.
    let url = format!("http://127.0.0.1:{pm}/metrics");
    let (ctype, h) = parse_with_python(&url, "");
    assert!(
        ctype
            .as_deref()
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{ctype:?}"
    );
    assert_eq!(node_value(&h, "gproc_node_up", "down1"), Some(0.0));
    for row in &load.rows {
        let v = node_value(&h, "gproc_node_load1", &row.node).unwrap();
        assert!((v - row.load[0]).abs() < 0.0051, "{}", row.node);
    }
    assert_eq!(
        value(&h, "gproc_pool_nodes", &[]),
        Some(names.len() as f64 + 1.0)
    );
    // Anything but GET /metrics: 404, 405; garbage and oversized heads are
    // refused; none of it stops the listener or the 9P service.
    let addr = format!("127.0.0.1:{pm}");
    let r = http_raw(
        &addr,
        b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = http_raw(
        &addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert!(r.to_ascii_lowercase().contains("allow: get, head"), "{r}");
    let r = http_raw(&addr, b"\x00\x01\x02 garbage\r\n\r\n");
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 << 10));
    big.extend(b"\r\n\r\n");
    let r = http_raw(&addr, &big);
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r}");
    // Idle connections past the listener's bound hold no 9P slot.
    let idle: Vec<TcpStream> = (0..gproc::scrape::MAX_CONNECTIONS + 4)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let nodes = gproc_as(me, &["cat", "--server", &server, "nodes"]);
    assert!(nodes.contains("down1"), "{nodes}");
    drop(idle);
    let r = http_raw(
        &addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    if require("root (to read /metrics as other users)", root) {
        // NOBODY is allotted one node: its series only, and no other node
        // named anywhere; no aggregator health.
        let text = gproc_as(NOBODY, &["cat", "--server", &server, "metrics"]);
        let (_, s) = parse_with_python("-", &text);
        assert_eq!(
            nodes_named(&s),
            BTreeSet::from([allotted.clone()]),
            "{text}"
        );
        for n in names
            .iter()
            .filter(|n| **n != allotted)
            .chain(["down1".to_string()].iter())
        {
            assert!(!text.contains(n.as_str()), "{n} named for NOBODY:\n{text}");
        }
        let row = load.rows.iter().find(|r| r.node == allotted).unwrap();
        let v = node_value(&s, "gproc_node_load1", &allotted).unwrap();
        assert!((v - row.load[0]).abs() < 0.0051);
        assert!(
            s.iter().all(|(n, _, _)| n.starts_with("gproc_node_")),
            "{text}"
        );

        // USER2 has no allotment and runs nothing: no node at all.
        let text = gproc_as(USER2, &["cat", "--server", &server, "metrics"]);
        let (_, s) = parse_with_python("-", &text);
        assert!(nodes_named(&s).is_empty(), "{text}");
        for n in names.iter().chain(["down1".to_string()].iter()) {
            assert!(!text.contains(n.as_str()), "{n} named for USER2:\n{text}");
        }

        // A simulated user with no allotment sees the nodes where they run,
        // as /nodes shows them.
        let their_nodes = |uid: u32| -> BTreeSet<String> {
            gproc_as(uid, &["cat", "--server", &server, "nodes"])
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_string)
                .collect()
        };
        // One who runs somewhere, preferably not everywhere.
        let runs: Vec<(u32, BTreeSet<String>)> = SIM_USERS
            .map(|u| (u, their_nodes(u)))
            .filter(|(_, n)| !n.is_empty())
            .collect();
        let (sim_user, theirs) = runs
            .iter()
            .find(|(_, n)| n.len() < names.len())
            .or(runs.first())
            .cloned()
            .expect("a simulated user runs somewhere");
        println!("simulated user {sim_user} runs on {theirs:?}");
        let text = gproc_as(sim_user, &["cat", "--server", &server, "metrics"]);
        let (_, s) = parse_with_python("-", &text);
        assert_eq!(nodes_named(&s), theirs, "{text}");
        assert!(!text.contains("down1"), "{text}");
    }

    drop(agg);
    rt.block_on(cluster.shutdown());
}

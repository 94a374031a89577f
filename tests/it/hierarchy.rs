//! Aggregators of aggregators (issue 14), all real servers on loopback:
//! simulated nodes split across rack aggregators under a top one. The
//! top's tables are the union of the racks' (one read per rack), every
//! node is reachable by name at the top with qids unique across the whole
//! tree, a rack that dies makes its nodes missing with the reason while
//! the others keep working, and three levels work as two do.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use gproc::aggregator::Aggregator;
use gproc::client::{Client, ClientOptions, FidHandle};
use gproc::config::Config;
use gproc::format::table::{JobRow, NodeRow, Note, PsRow, Table};
use gproc::net::Address;
use gproc::sim::{SimCluster, SimOptions};

use crate::common::{have, require};
use tokio_util::sync::CancellationToken;

/// A running in-process aggregator and its stop switch.
struct Agg {
    agg: Aggregator,
    stop: CancellationToken,
}

impl Agg {
    /// Starts an aggregator named `name` over `nodes` (name, address)
    /// listening on `listen` (`127.0.0.1:0` for any port).
    async fn start(name: &str, listen: &str, nodes: &[(String, String)], extra: &str) -> Agg {
        let mut text = format!(
            "[server]\nlisten = [\"{listen}\"]\nauth = \"none\"\nname = \"{name}\"\n\n\
             [pool]\nrequest_timeout = \"3s\"\nconnect_timeout = \"1s\"\ndeadline = \"4s\"\n\
             reconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n\n{extra}\n"
        );
        for (n, a) in nodes {
            // A lower aggregator serves its tree at the attach root.
            let aname = if n.starts_with("sim") { "/proc" } else { "" };
            text.push_str(&format!(
                "[[nodes]]\nnames = \"{n}\"\naddress = \"{a}\"\naname = \"{aname}\"\n\n"
            ));
        }
        let cfg = Config::from_str(&text, &format!("{name}.toml")).unwrap();
        let stop = CancellationToken::new();
        let agg = Aggregator::start(&cfg, stop.clone()).await.unwrap();
        Agg { agg, stop }
    }

    fn addr(&self) -> String {
        match &self.agg.addresses[0] {
            Address::Tcp(a) => a.clone(),
            a => panic!("{a}"),
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(6), self.agg.task).await;
    }
}

async fn root_of(addr: &str) -> FidHandle {
    let c = Client::connect(&Address::Tcp(addr.into()), ClientOptions::default())
        .await
        .unwrap();
    c.attach("root", "", Some(0)).await.unwrap()
}

async fn text(root: &FidHandle, path: &str) -> String {
    String::from_utf8(root.read_all(path).await.unwrap().to_vec()).unwrap()
}

/// `/ps` as (node, pid, user, command) rows, and its notes.
async fn ps(root: &FidHandle) -> (BTreeSet<(String, i32, String, String)>, Vec<Note>) {
    let t = Table::<PsRow>::parse(&text(root, "ps").await).unwrap();
    let rows = t
        .rows
        .into_iter()
        .map(|r| (r.node, r.pid, r.user, r.command))
        .collect();
    (rows, t.notes)
}

async fn cluster(nodes: usize, second: u8) -> SimCluster {
    SimCluster::start(SimOptions {
        nodes,
        procs_per_node: 12,
        churn_per_min: 0.0,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 14, second, 1),
        ..SimOptions::default()
    })
    .await
    .unwrap()
}

/// The sim nodes `range` as `(name, address)` config entries.
fn entries(c: &SimCluster, range: std::ops::Range<usize>) -> Vec<(String, String)> {
    c.nodes()[range]
        .iter()
        .map(|n| (n.name.clone(), n.addr.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_levels_serve_the_union_of_the_racks() {
    let c = cluster(30, 1).await;
    let mut racks = Vec::new();
    for r in 0..3 {
        racks.push(
            Agg::start(
                &format!("rack{}", r + 1),
                "127.0.0.1:0",
                &entries(&c, r * 10..r * 10 + 10),
                "",
            )
            .await,
        );
    }
    let top_nodes: Vec<(String, String)> = racks
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("rack{}", i + 1), r.addr()))
        .collect();
    let top = Agg::start("top", "127.0.0.1:0", &top_nodes, "").await;
    let check = async {
        let t = root_of(&top.addr()).await;
        // The top's /ps is the union of the racks' own, row for row.
        let (rows, notes) = ps(&t).await;
        assert!(notes.is_empty(), "{notes:?}");
        let mut union = BTreeSet::new();
        for r in &racks {
            let (rr, rn) = ps(&root_of(&r.addr()).await).await;
            assert!(rn.is_empty(), "{rn:?}");
            union.extend(rr);
        }
        assert_eq!(rows.len(), c.total_processes());
        assert_eq!(rows, union);

        // /nodes names every node below, through its rack, with its age.
        let nodes = Table::<NodeRow>::parse(&text(&t, "nodes").await).unwrap();
        assert_eq!(nodes.rows.len(), 30, "{:?}", nodes.rows);
        for (i, n) in nodes.rows.iter().enumerate() {
            assert_eq!(n.node, c.nodes()[i].name);
            assert_eq!(n.via, vec![format!("rack{}", i / 10 + 1)], "{n:?}");
            assert!(n.is_up(), "{n:?}");
            assert!(n.age_s.is_some_and(|a| a < 60.0), "{n:?}");
        }
        // /load too.
        let load = text(&t, "load").await;
        assert_eq!(load.lines().filter(|l| !l.starts_with('#')).count(), 31);

        // The racks are not directories of the top; their nodes are, and
        // reads reach the nodes through them, byte for byte.
        assert!(t.walk("rack1").await.is_err());
        let mut root_listing: Vec<String> = t
            .read_dir("")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        root_listing.retain(|n| n.starts_with("sim"));
        assert_eq!(root_listing.len(), 30);
        let r2 = root_of(&racks[1].addr()).await;
        let name = &c.nodes()[14].name;
        for f in ["loadavg", "1/status", "1/cmdline", "meminfo"] {
            let path = format!("{name}/{f}");
            assert_eq!(
                t.read_all(&path).await.unwrap(),
                r2.read_all(&path).await.unwrap(),
                "{path}"
            );
        }
        // /pid aliases cover nodes below too.
        let alias = format!("pid/1@{name}/status");
        assert!(t.read_all(&alias).await.is_ok(), "{alias}");

        // qid.path is unique across the whole top tree: every node root,
        // every entry of two nodes of different racks, and the aliases.
        let mut seen = HashSet::new();
        for e in t.read_dir("").await.unwrap() {
            assert!(seen.insert(e.qid.path), "{} repeats a qid", e.name);
        }
        for n in [&c.nodes()[3].name, &c.nodes()[23].name] {
            for e in t.read_dir(n).await.unwrap() {
                if e.name == "." || e.name == ".." {
                    continue;
                }
                assert!(seen.insert(e.qid.path), "{n}/{} repeats a qid", e.name);
            }
        }
        for e in t.read_dir("pid").await.unwrap() {
            if e.name == "." || e.name == ".." {
                continue;
            }
            assert!(seen.insert(e.qid.path), "pid/{} repeats a qid", e.name);
        }

        // Jobs at the top span racks: each /jobs row counts the top's /ps
        // rows of its job, and a job's processes are reached through the
        // racks, byte for byte, under qids of their own.
        let all = Table::<PsRow>::parse(&text(&t, "ps").await).unwrap().rows;
        let jobs = Table::<JobRow>::parse(&text(&t, "jobs").await).unwrap();
        assert!(!jobs.rows.is_empty());
        for j in &jobs.rows {
            let rows: Vec<&PsRow> = all
                .iter()
                .filter(|r| r.job.as_deref() == Some(j.job.as_str()))
                .collect();
            assert_eq!(j.procs, rows.len() as u64, "{j:?}");
            let nodes: BTreeSet<&str> = rows.iter().map(|r| r.node.as_str()).collect();
            assert_eq!(j.nodes, gproc::config::hostlist::compress(nodes), "{j:?}");
        }
        let wide = jobs.rows.iter().max_by_key(|j| j.nnodes).unwrap();
        let job_dir = format!("job/{}", wide.job);
        assert!(seen.insert(t.metadata(&job_dir).await.unwrap().qid.path));
        for e in t.read_dir(&job_dir).await.unwrap() {
            if e.name == "." || e.name == ".." || !e.name.starts_with("sim") {
                continue;
            }
            assert!(
                seen.insert(e.qid.path),
                "{job_dir}/{} repeats a qid",
                e.name
            );
            let rack = racks[c.nodes().iter().position(|n| n.name == e.name).unwrap() / 10].addr();
            let rack = root_of(&rack).await;
            for p in t.read_dir(&format!("{job_dir}/{}", e.name)).await.unwrap() {
                if p.name == "." || p.name == ".." {
                    continue;
                }
                assert!(
                    seen.insert(p.qid.path),
                    "{job_dir}/{}/{} repeats a qid",
                    e.name,
                    p.name
                );
                let f = format!("{}/{}/status", e.name, p.name);
                assert_eq!(
                    t.read_all(&format!("{job_dir}/{f}")).await.unwrap(),
                    rack.read_all(&f).await.unwrap(),
                    "{f}"
                );
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), check)
        .await
        .expect("answers in time");
    top.stop().await;
    for r in racks {
        r.stop().await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_that_dies_is_missing_with_the_reason_then_back() {
    let c = cluster(12, 2).await;
    let r1 = Agg::start("rack1", "127.0.0.1:0", &entries(&c, 0..6), "").await;
    let r2 = Agg::start("rack2", "127.0.0.1:0", &entries(&c, 6..12), "").await;
    let r2_addr = r2.addr();
    let top = Agg::start(
        "top",
        "127.0.0.1:0",
        &[
            ("rack1".into(), r1.addr()),
            ("rack2".into(), r2_addr.clone()),
        ],
        "[cache]\n[[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"200ms\"\n",
    )
    .await;
    let t = root_of(&top.addr()).await;
    let (rows, notes) = ps(&t).await;
    assert_eq!(rows.len(), c.total_processes(), "{notes:?}");

    r2.stop().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (rows, notes) = ps(&t).await;
    let rack1: BTreeSet<&str> = c.nodes()[..6].iter().map(|n| n.name.as_str()).collect();
    assert!(rows.iter().all(|r| rack1.contains(r.0.as_str())));
    assert_eq!(rows.len(), c.total_processes() / 2, "{notes:?}");
    for n in &c.nodes()[6..] {
        let note = notes
            .iter()
            .find(|x| x.node() == Some(n.name.as_str()))
            .unwrap_or_else(|| panic!("no note for {}: {notes:?}", n.name));
        match note {
            Note::Missing { reason, via, .. } => {
                assert_eq!(via, &vec!["rack2".to_string()], "{note:?}");
                assert!(reason.contains("rack2"), "{note:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    // A node file below the dead rack fails with the reason; the other
    // rack's are read.
    assert!(
        t.read_all(&format!("{}/loadavg", c.nodes()[7].name))
            .await
            .is_err()
    );
    assert!(
        t.read_all(&format!("{}/loadavg", c.nodes()[1].name))
            .await
            .is_ok()
    );

    // Back on the same address: its nodes come back.
    let r2 = Agg::start("rack2", &r2_addr, &entries(&c, 6..12), "").await;
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (rows, notes) = ps(&t).await;
        if rows.len() == c.total_processes() && notes.is_empty() {
            back = true;
            break;
        }
    }
    assert!(back, "rack2's nodes came back");
    top.stop().await;
    r1.stop().await;
    r2.stop().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_levels_work_as_two() {
    let c = cluster(12, 3).await;
    let r1 = Agg::start("rack1", "127.0.0.1:0", &entries(&c, 0..4), "").await;
    let r2 = Agg::start("rack2", "127.0.0.1:0", &entries(&c, 4..8), "").await;
    let mid = Agg::start(
        "mid",
        "127.0.0.1:0",
        &[("rack1".into(), r1.addr()), ("rack2".into(), r2.addr())],
        "",
    )
    .await;
    // The top has the middle level and a rack of its own side by side,
    // and one node directly.
    let r3 = Agg::start("rack3", "127.0.0.1:0", &entries(&c, 8..11), "").await;
    let mut top_nodes = vec![("mid".to_string(), mid.addr()), ("rack3".into(), r3.addr())];
    top_nodes.extend(entries(&c, 11..12));
    let top = Agg::start("top", "127.0.0.1:0", &top_nodes, "").await;
    let check = async {
        let t = root_of(&top.addr()).await;
        let (rows, notes) = ps(&t).await;
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(rows.len(), c.total_processes());
        let nodes = Table::<NodeRow>::parse(&text(&t, "nodes").await).unwrap();
        let via: Vec<(String, Vec<String>)> = nodes
            .rows
            .iter()
            .map(|n| (n.node.clone(), n.via.clone()))
            .collect();
        let want: Vec<(String, Vec<String>)> = c
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let v: Vec<&str> = match i {
                    0..4 => vec!["mid", "rack1"],
                    4..8 => vec!["mid", "rack2"],
                    8..11 => vec!["rack3"],
                    _ => vec![],
                };
                (n.name.clone(), v.into_iter().map(String::from).collect())
            })
            .collect();
        assert_eq!(via, want);
        // A file three levels down, byte for byte as the node serves it.
        let name = &c.nodes()[5].name;
        let direct = {
            let c2 = Client::connect(
                &Address::Tcp(c.nodes()[5].addr.to_string()),
                ClientOptions::default(),
            )
            .await
            .unwrap();
            c2.attach("root", "", Some(0)).await.unwrap()
        };
        // Its context switch counters move between two reads.
        let steady = |b: bytes::Bytes| -> String {
            String::from_utf8_lossy(&b)
                .lines()
                .filter(|l| !l.contains("ctxt_switches"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (through, local) = (
            t.read_all(&format!("{name}/1/status")).await.unwrap(),
            direct.read_all("1/status").await.unwrap(),
        );
        assert!(through.len() > 500, "{through:?}");
        assert_eq!(steady(through), steady(local));
        let mut seen = HashSet::new();
        for n in c.nodes() {
            let q = t.metadata(&n.name).await.unwrap().qid;
            assert!(seen.insert(q.path), "{} repeats a qid", n.name);
            for e in t.read_dir(&format!("{}/1", n.name)).await.unwrap() {
                if e.name != "." && e.name != ".." {
                    assert!(seen.insert(e.qid.path), "{}/1/{} repeats", n.name, e.name);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), check)
        .await
        .expect("answers in time");
    for a in [top, mid, r1, r2, r3] {
        a.stop().await;
    }
    c.shutdown().await;
}

/// The shipped two-level example (`config/hierarchy.toml` over
/// `config/rack.toml`) as written, with MUNGE: only what names this
/// machine's addresses and nodes is replaced (loopback listeners, the
/// simulated nodes, two racks of the eight). The top's credentials must
/// be addressed to each rack by the name the top gives it, which the rack
/// checks against its `[server] name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_two_level_example_works_as_written() {
    let munged = have("munge")
        && std::process::Command::new("sh")
            .args(["-c", "munge -n </dev/null | unmunge >/dev/null"])
            .status()
            .is_ok_and(|s| s.success());
    if !require("munged (run .ci/setup-munge.sh)", munged) {
        return;
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rack_toml = std::fs::read_to_string(repo.join("config/rack.toml")).unwrap();
    let top_toml = std::fs::read_to_string(repo.join("config/hierarchy.toml")).unwrap();
    // Everything before the first [[nodes]] table and from [cache] on is
    // kept as written; the listen line names loopback.
    let split = |text: &str| -> (String, String) {
        let head = &text[..text.find("[[nodes]]").unwrap()];
        let tail = &text[text
            .find("\n[[cache.rule]]")
            .or(text.find("\n[cache]"))
            .unwrap()..];
        let head = head
            .lines()
            .map(|l| {
                if l.starts_with("listen = ") {
                    "listen = [\"127.0.0.1:0\"]".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        (head, tail.to_string())
    };
    let c = cluster(8, 4).await;
    let mut racks = Vec::new();
    for r in 0..2 {
        let (head, tail) = split(&rack_toml);
        let head = head.replace("name = \"rack1\"", &format!("name = \"rack{}\"", r + 1));
        let mut nodes = String::new();
        for (n, a) in entries(&c, r * 4..r * 4 + 4) {
            nodes.push_str(&format!(
                "[[nodes]]\nnames = \"{n}\"\naddress = \"{a}\"\n\n"
            ));
        }
        let toml = format!("{head}\n{nodes}{tail}");
        let cfg = Config::from_str(&toml, "rack.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let stop = CancellationToken::new();
        let agg = Aggregator::start(&cfg, stop.clone()).await.unwrap();
        racks.push(Agg { agg, stop });
    }
    let (head, tail) = split(&top_toml);
    let mut nodes = String::new();
    for (i, r) in racks.iter().enumerate() {
        // The shipped rack table, one per rack for its loopback address.
        nodes.push_str(&format!(
            "[[nodes]]\nnames = \"rack{}\"\naddress = \"{}\"\naname = \"\"\nauth = \"munge\"\n\n",
            i + 1,
            r.addr()
        ));
    }
    let toml = format!("{head}\n{nodes}{tail}");
    let cfg = Config::from_str(&toml, "hierarchy.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let stop = CancellationToken::new();
    let agg = Aggregator::start(&cfg, stop.clone()).await.unwrap();
    let top = Agg { agg, stop };
    let check = async {
        // root proves itself with a MUNGE credential of its own.
        let cl = Client::connect(&Address::Tcp(top.addr()), ClientOptions::default())
            .await
            .unwrap();
        let t = cl.attach("root", "", Some(0)).await.unwrap();
        let (rows, notes) = ps(&t).await;
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(rows.len(), c.total_processes());
        let nodes = Table::<NodeRow>::parse(&text(&t, "nodes").await).unwrap();
        assert_eq!(nodes.rows.len(), 8);
        assert!(nodes.rows.iter().all(|n| n.is_up() && n.via.len() == 1));
        let name = &c.nodes()[6].name;
        assert!(t.read_all(&format!("{name}/1/status")).await.is_ok());
    };
    tokio::time::timeout(Duration::from_secs(60), check)
        .await
        .expect("answers in time");
    top.stop().await;
    for r in racks {
        r.stop().await;
    }
    c.shutdown().await;
}

/// A node attached at a path (as every node serving its own `/proc` is)
/// cannot make itself an aggregator: a merged summary it serves, naming
/// nodes it invents, is refused with the reason, and the names do not
/// exist. Here diod exports a directory holding such a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_speak_for_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let gproc_dir = dir.path().join(".gproc");
    std::fs::create_dir(&gproc_dir).unwrap();
    let fake = "gproc-merged 1\nsource evil\n\
                n victim up x \\- \\- \\- \\- \\-\nm 5 io\nend 1\n";
    std::fs::write(gproc_dir.join("ps"), fake).unwrap();
    let port = crate::common::free_port();
    let Some(_diod) = crate::common::start_diod_exporting(port, dir.path().to_str().unwrap())
    else {
        return;
    };
    let top = Agg::start(
        "top",
        "127.0.0.1:0",
        &[],
        &format!(
            "[[nodes]]\nnames = \"evil\"\naddress = \"127.0.0.1:{port}\"\naname = \"{}\"\n",
            dir.path().display()
        ),
    )
    .await;
    let t = root_of(&top.addr()).await;
    let (rows, notes) = ps(&t).await;
    assert!(rows.is_empty(), "{rows:?}");
    assert!(
        notes
            .iter()
            .any(|n| matches!(n, Note::Missing { node, reason, .. }
            if node == "evil" && reason.contains("merged summary"))),
        "{notes:?}"
    );
    assert!(t.walk("victim").await.is_err());
    let nodes = text(&t, "nodes").await;
    assert!(!nodes.contains("victim"), "{nodes}");
    top.stop().await;
}

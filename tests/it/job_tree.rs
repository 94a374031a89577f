//! The job tree (issue 15 item 2, issue 16's job `ctl`): `/jobs`,
//! `/job/<id>/ps`, `/job/<id>/nodes`, `/job/<id>/<node>/<pid>/...` and
//! `gproc jobs`.
//!
//! On the simulator: for every job, `/jobs`'s sums are the sums of its
//! `/ps` rows as printed, its nodes the hostlist of theirs; a job's `ps` is
//! `/ps`'s header, its very lines and `/ps`'s notes; its `nodes` the
//! per-node sums; its process directories are the node's (same files,
//! other qids), and only its processes are there. With real cgroups and
//! test users (in `jobs.rs` and below): each user sees their own job only,
//! and signals it through `/job/<id>/ctl`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use gproc::client::{Client, ClientOptions};
use gproc::config::hostlist;
use gproc::format::table::{
    JOB_NODES_HEADER, JobNodeRow, JobRow, PS_HEADER, PsRow, Table, cpu_tenths,
};
use gproc::proto::errno;
use gproc::sim::{SimCluster, SimOptions};
use tokio_util::sync::CancellationToken;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// What `/jobs` should say of a job, from its `/ps` rows.
fn expected_row(job: &str, rows: &[&PsRow]) -> JobRow {
    let users: BTreeSet<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    let others: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| *u != "root" && *u != "0")
        .collect();
    let nodes: BTreeSet<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    let mut states: BTreeMap<char, u64> = BTreeMap::new();
    for r in rows {
        *states.entry(r.state).or_default() += 1;
    }
    JobRow {
        job: job.to_string(),
        user: if others.is_empty() {
            users.into_iter().collect::<Vec<_>>().join(",")
        } else {
            others.join(",")
        },
        procs: rows.len() as u64,
        nnodes: nodes.len() as u64,
        cpu_tenths: rows.iter().map(|r| cpu_tenths(r.cpu)).sum(),
        rss_kb: rows.iter().map(|r| r.rss_kb).sum(),
        states: states.into_iter().collect(),
        start: rows.iter().map(|r| r.start).min().unwrap_or(0),
        nodes: hostlist::compress(nodes),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_jobs_sum_their_ps_rows_and_hold_their_processes() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 40,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 16, 0, 1),
        no_summary: 0.25,
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    // Summaries and files kept for the test's length: /ps and the job
    // tree are built from the same summaries throughout.
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [cache]\n[[cache.rule]]\npath = \"/**\"\nttl = \"120s\"\n\n{}",
        cluster.config_toml()
    );
    let cfg = gproc::config::Config::from_str(&text, "sim.toml").unwrap();
    let stop = CancellationToken::new();
    let agg = gproc::aggregator::Aggregator::start(&cfg, stop.clone())
        .await
        .unwrap();
    let c = Client::connect(&agg.addresses[0], opts()).await.unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let read = |p: &'static str| {
        let root = &root;
        async move { String::from_utf8(root.read_all(p).await.unwrap().to_vec()).unwrap() }
    };
    let ps_text = read("ps").await;
    let ps = Table::<PsRow>::parse(&ps_text).unwrap();
    assert_eq!(ps.skipped, 0);
    // Each row with its line as /ps wrote it.
    let lines: Vec<&str> = ps_text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), ps.rows.len());
    let notes: String = ps_text
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut by_job: BTreeMap<&str, Vec<(&PsRow, &str)>> = BTreeMap::new();
    for (r, l) in ps.rows.iter().zip(&lines) {
        if let Some(j) = &r.job {
            by_job.entry(j.as_str()).or_default().push((r, l));
        }
    }
    assert!(by_job.len() > 3, "the simulator runs jobs: {by_job:?}");

    // /jobs: one row per job of /ps, each the sums of its rows.
    let jobs_text = read("jobs").await;
    let jobs = Table::<JobRow>::parse(&jobs_text).unwrap();
    assert_eq!(jobs.skipped, 0);
    let listed: BTreeSet<&str> = jobs.rows.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(listed, by_job.keys().copied().collect::<BTreeSet<_>>());
    for j in &jobs.rows {
        let rows: Vec<&PsRow> = by_job[j.job.as_str()].iter().map(|(r, _)| *r).collect();
        assert_eq!(*j, expected_row(&j.job, &rows), "{jobs_text}");
    }
    assert_eq!(jobs.notes, ps.notes, "/ps's notes are /jobs's");

    // The job on most nodes, with some on a node without a summary.
    let (job, rows) = by_job
        .iter()
        .max_by_key(|(_, rows)| {
            rows.iter()
                .map(|(r, _)| r.node.as_str())
                .collect::<BTreeSet<_>>()
                .len()
        })
        .unwrap();
    let nodes: Vec<&str> = {
        let mut seen = Vec::new();
        for (r, _) in rows {
            if !seen.contains(&r.node.as_str()) {
                seen.push(r.node.as_str());
            }
        }
        seen
    };
    assert!(nodes.len() > 1, "{job} on {nodes:?}");

    // /job/<id>/ps: /ps's header, the job's very lines, /ps's notes.
    let mut want = format!("{PS_HEADER}\n");
    for (_, l) in rows {
        want.push_str(l);
        want.push('\n');
    }
    want.push_str(&notes);
    let got = String::from_utf8(
        root.read_all(&format!("job/{job}/ps"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(got, want);

    // /job/<id>/nodes: per node, the sums of its rows there.
    let got = String::from_utf8(
        root.read_all(&format!("job/{job}/nodes"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(got.starts_with(&format!("{JOB_NODES_HEADER}\n")), "{got}");
    let per_node = Table::<JobNodeRow>::parse(&got).unwrap();
    let want: Vec<JobNodeRow> = nodes
        .iter()
        .map(|n| {
            let here: Vec<&PsRow> = rows
                .iter()
                .map(|(r, _)| *r)
                .filter(|r| r.node == *n)
                .collect();
            JobNodeRow {
                node: n.to_string(),
                procs: here.len() as u64,
                cpu_tenths: here.iter().map(|r| cpu_tenths(r.cpu)).sum(),
                mem_tenths: here.iter().map(|r| cpu_tenths(r.mem)).sum(),
                rss_kb: here.iter().map(|r| r.rss_kb).sum(),
            }
        })
        .collect();
    assert_eq!(per_node.rows, want);

    // The directories: /job lists every job; a job its files and nodes;
    // a job's node its processes there.
    let names = |v: Vec<gproc::client::DirEntryInfo>| -> Vec<String> {
        v.into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect()
    };
    let ids: BTreeSet<String> = names(root.read_dir("job").await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(
        ids,
        by_job
            .keys()
            .map(|k| k.to_string())
            .collect::<BTreeSet<_>>()
    );
    let mut want: Vec<String> = vec!["ps".into(), "nodes".into()];
    want.extend(nodes.iter().map(|n| n.to_string()));
    assert_eq!(
        names(root.read_dir(&format!("job/{job}")).await.unwrap()),
        want
    );
    let node = nodes[0];
    let pids: Vec<i32> = rows
        .iter()
        .filter(|(r, _)| r.node == node)
        .map(|(r, _)| r.pid)
        .collect();
    let listed: Vec<i32> = names(root.read_dir(&format!("job/{job}/{node}")).await.unwrap())
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(listed, pids);

    // A process's files under its job are its node's, under other qids.
    let pid = pids[0];
    let under_job = root
        .read_all(&format!("job/{job}/{node}/{pid}/stat"))
        .await
        .unwrap();
    let under_node = root.read_all(&format!("{node}/{pid}/stat")).await.unwrap();
    assert_eq!(under_job, under_node);
    let (qj, qn) = (
        root.metadata(&format!("job/{job}/{node}/{pid}"))
            .await
            .unwrap()
            .qid,
        root.metadata(&format!("{node}/{pid}")).await.unwrap().qid,
    );
    assert!(qj.is_dir() && qn.is_dir());
    assert_ne!(qj.path, qn.path, "one directory with two parents");
    let dir = root
        .walk(&format!("job/{job}/{node}/{pid}/.."))
        .await
        .unwrap();
    assert_eq!(
        dir.qid(),
        root.metadata(&format!("job/{job}/{node}"))
            .await
            .unwrap()
            .qid,
        ".. of a job's process is the job's node"
    );
    // Every qid of the job's tree is its own.
    let mut qids = BTreeSet::new();
    for p in [
        format!("job/{job}"),
        format!("job/{job}/ps"),
        format!("job/{job}/nodes"),
        format!("job/{job}/{node}"),
        format!("job/{job}/{node}/{pid}"),
        "job".to_string(),
        "jobs".to_string(),
        "ps".to_string(),
        format!("{node}/{pid}"),
        format!("pid/{pid}@{node}"),
    ] {
        let q = root.metadata(&p).await.unwrap().qid.path;
        assert!(qids.insert(q), "{p} shares qid {q:#x}");
    }
    for other in by_job.keys().filter(|k| *k != job).take(5) {
        let q = root
            .metadata(&format!("job/{other}"))
            .await
            .unwrap()
            .qid
            .path;
        assert!(qids.insert(q), "job {other} shares qid {q:#x}");
    }

    // Not the job's: ENOENT.
    let stranger = ps
        .rows
        .iter()
        .find(|r| r.node == node && r.job.as_deref() != Some(job))
        .expect("a process of another job or none on the node");
    let enoent = |r: gproc::client::Result<gproc::client::FidHandle>| match r {
        Err(e) => e.errno() == errno::ENOENT,
        Ok(_) => false,
    };
    assert!(enoent(
        root.walk(&format!("job/{job}/{node}/{}", stranger.pid))
            .await
    ));
    assert!(enoent(root.walk("job/no-such-job").await));
    let elsewhere = cluster
        .nodes()
        .iter()
        .map(|n| n.name.as_str())
        .find(|n| !nodes.contains(n))
        .expect("a node the job is not on");
    assert!(enoent(root.walk(&format!("job/{job}/{elsewhere}")).await));
    assert!(
        enoent(root.walk(&format!("job/{job}/ctl")).await),
        "no ctl with control off"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

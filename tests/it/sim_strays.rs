//! Strays, disk sleep and zombies on a simulated cluster (issue 15 item
//! 6): `gproc ps --strays`, `-s D` and `-s Z` through an aggregator find
//! exactly the processes the simulator's model made so, on nodes with a
//! summary and on nodes read file by file.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use gproc::sim::{Sim, SimCluster, SimOptions, SimProcess};

use crate::common::*;

/// `gproc ps ARGS -o node,pid --no-header`'s (node, pid) pairs.
fn listed(server: &str, args: &[&str]) -> BTreeSet<(String, u32)> {
    let out = Command::new(gproc())
        .args(["ps", "--server", server, "-o", "node,pid", "--no-header"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "gproc ps {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect()
}

/// The model's processes that `keep` picks, as (node, pid).
fn picked(sim: &Sim, keep: impl Fn(&SimProcess) -> bool) -> BTreeSet<(String, u32)> {
    (0..sim.len())
        .flat_map(|i| {
            sim.processes(i)
                .into_iter()
                .filter(&keep)
                .map(move |p| (sim.node_name(i), p.pid))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strays_disk_sleep_and_zombies_are_the_simulators() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 40,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 22, 0, 1),
        no_summary: 0.25,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let sim = cluster.sim().clone();
    let (agg, stop, server) = aggregate_sim(&cluster, "").await;
    let run = |args: &'static [&'static str]| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || listed(&server, args))
    };

    let disk = picked(&sim, |p| p.held == Some('D'));
    let zombies = picked(&sim, |p| p.held == Some('Z'));
    assert!(!disk.is_empty() && !zombies.is_empty());
    assert_eq!(run(&["-s", "D"]).await.unwrap(), disk);
    assert_eq!(run(&["-s", "Z"]).await.unwrap(), zombies);
    let both: BTreeSet<_> = disk.union(&zombies).cloned().collect();
    assert_eq!(run(&["-s", "DZ"]).await.unwrap(), both);

    // Strays: users' processes in no job, the leftovers of ended jobs
    // among them: every one the simulator made is found.
    let strays = picked(&sim, |p| p.stray);
    let left = picked(&sim, |p| p.left_behind);
    assert!(!left.is_empty() && left.is_subset(&strays));
    let got = run(&["--strays"]).await.unwrap();
    assert!(
        strays.is_subset(&got),
        "missing: {:?}",
        strays.difference(&got)
    );
    // And nothing else but what the documented rule adds: `--strays` knows
    // system accounts by this host's user database and shows a process
    // whose user it does not know, so the simulated nodes' system accounts
    // unknown here (`_chrony`, `slurm`) are listed where /ps names them (a
    // node's summary), not where it gives their number (the aggregator's
    // own names, for nodes read file by file).
    let summary: BTreeSet<String> = cluster
        .nodes()
        .iter()
        .filter(|n| n.has_summary)
        .map(|n| n.name.clone())
        .collect();
    let system_here = |user: &str| {
        let uid = user
            .parse::<u32>()
            .ok()
            .or_else(|| gproc::sys::users::uid_by_name(user));
        uid.is_some_and(|u| u < 1000 || (60000..=65535).contains(&u))
    };
    let mut want = BTreeSet::new();
    for i in 0..sim.len() {
        let name = sim.node_name(i);
        for p in sim.processes(i).into_iter().filter(|p| p.job.is_none()) {
            let shown = if summary.contains(&name) {
                p.user.clone()
            } else {
                gproc::sys::users::user_label(p.uid)
            };
            if !system_here(&shown) {
                want.insert((name.clone(), p.pid));
            }
        }
    }
    assert_eq!(got, want);

    stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

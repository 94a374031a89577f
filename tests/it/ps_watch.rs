//! `gproc ps --watch` off a terminal (issue 15 item 5): a stream of JSON
//! Lines, one document per refresh, over simulated nodes; a process the
//! test stops on its node shows as stopped in a later document.

use std::io::BufRead;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use gproc::client::{Client, ClientOptions, OpenMode};
use gproc::sim::{SimCluster, SimOptions};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_off_a_terminal_is_one_json_document_per_refresh() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 4,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 23, 0, 1),
        control: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let sim = cluster.sim().clone();
    let (agg, stop, server) = aggregate_sim(&cluster, "").await;
    let node = &cluster.nodes()[0];
    let p = sim
        .processes(0)
        .into_iter()
        .find(|p| p.uid >= 1000 && p.held.is_none())
        .expect("a user's process");
    let pid = p.pid.to_string();

    let mut child = Proc(
        Command::new(gproc())
            .args(["ps", "--server", &server, "--watch=300ms"])
            .args(["-n", &node.name, "-p", &pid])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Each line one whole document: its time, the nodes missing, the
    // selected process.
    let mut last_time = 0.0;
    let mut doc = async || -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a refresh within 20 s")
            .expect("gproc ps --watch is running");
        let d: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        let t = d["time"].as_f64().unwrap();
        assert!(t > last_time, "{line}");
        last_time = t;
        assert_eq!(d["missing"].as_u64(), Some(0), "{line}");
        let procs = d["processes"].as_array().unwrap();
        assert_eq!(procs.len(), 1, "{line}");
        assert_eq!(procs[0]["pid"].as_u64(), Some(u64::from(p.pid)), "{line}");
        assert_eq!(
            procs[0]["node"].as_str(),
            Some(node.name.as_str()),
            "{line}"
        );
        d
    };
    let first = doc().await;
    assert_ne!(first["processes"][0]["state"], "T", "{first}");

    // Stopped on its node: a later refresh says so.
    let c = Client::connect(&node.address(), ClientOptions::default())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let mut f = root.walk(&format!("{pid}/ctl")).await.unwrap();
    f.open(OpenMode::Write).await.unwrap();
    f.write_at(0, b"stop").await.unwrap();
    let mut refreshes = 1;
    loop {
        let d = doc().await;
        refreshes += 1;
        if d["processes"][0]["state"] == "T" {
            break;
        }
        assert!(refreshes < 100, "no refresh shows the stop: {d}");
    }
    drop(child);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

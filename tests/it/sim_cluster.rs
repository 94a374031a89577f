//! The simulated cluster over real loopback TCP: many nodes answering 9P,
//! the aggregator config, and every injected fault as a client sees it.
//!
//! Each test uses its own 127.x.0.0 range and free ports (base port 0), so
//! tests run side by side, and every network wait is bounded.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gproc::client::{Client, ClientError, ClientOptions};
use gproc::format::summary;
use gproc::sim::{Fault, GarbageKind, HangKind, NodeInfo, SimCluster, SimOptions};

fn opts(first: Ipv4Addr, nodes: usize) -> SimOptions {
    SimOptions {
        nodes,
        base_port: 0,
        first_address: first,
        ..SimOptions::default()
    }
}

fn quick() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

async fn read(n: &NodeInfo, path: &str, o: ClientOptions) -> Result<Vec<u8>, ClientError> {
    let c = Client::connect(&n.address(), o).await?;
    let root = c.attach("root", "/proc", Some(0)).await?;
    Ok(root.read_all(path).await?.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_nodes_answer_and_match_the_model() {
    let t0 = Instant::now();
    let cluster = SimCluster::start(opts(Ipv4Addr::new(127, 2, 0, 201), 200))
        .await
        .unwrap();
    eprintln!("200 nodes started in {:?}", t0.elapsed());
    assert!(!cluster.single_address());
    let nodes = cluster.nodes().to_vec();
    assert_eq!(nodes[0].addr.ip().to_string(), "127.2.0.201");
    assert_eq!(nodes[0].name, "sim0001");
    assert_eq!(nodes[199].name, "sim0200");
    // Addresses skip .255 and .0.
    assert_eq!(nodes[53].addr.ip().to_string(), "127.2.0.254");
    assert_eq!(nodes[54].addr.ip().to_string(), "127.2.1.1");
    let t1 = Instant::now();
    let counts: Vec<usize> = tokio::time::timeout(
        Duration::from_secs(10),
        futures::stream::iter(nodes.clone())
            .map(|n| async move {
                let c = Client::connect(&n.address(), ClientOptions::default())
                    .await
                    .unwrap();
                let root = c.attach("root", "/proc", Some(0)).await.unwrap();
                let status = root.read_all("1/status").await.unwrap();
                assert!(status.starts_with(b"Name:\tsystemd\n"));
                let ps = summary::parse(&root.read_all(".gproc/ps").await.unwrap()).unwrap();
                assert_eq!(ps.hostname, n.name);
                let dir = root.read_dir("/").await.unwrap();
                let pids = dir.iter().filter(|e| e.name.parse::<u32>().is_ok()).count();
                assert_eq!(pids, ps.procs.len());
                ps.procs.len()
            })
            .buffer_unordered(64)
            .collect(),
    )
    .await
    .expect("200 nodes answer within 10 s");
    eprintln!("200 nodes read over 9P in {:?}", t1.elapsed());
    assert_eq!(counts.iter().sum::<usize>(), cluster.total_processes());
    assert_eq!(cluster.total_processes(), 200 * 100);
    assert_eq!(cluster.reachable_processes(), 200 * 100);

    // The aggregator config loads and names every node at its address.
    let toml = cluster.config_toml();
    let cfg = gproc::config::Config::from_str(&toml, "sim.toml").unwrap();
    assert_eq!(cfg.nodes.len(), 200);
    for (spec, n) in cfg.nodes.iter().zip(&nodes) {
        assert_eq!(spec.name, n.name);
        assert_eq!(spec.address, n.address());
    }
    cluster.shutdown().await;
    // Nodes are gone after shutdown.
    let e = Client::connect(&nodes[0].address(), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Io { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_behave_as_advertised() {
    let o = SimOptions {
        slow: 0.1,
        hang: 0.2,
        die: 0.1,
        garbage: 0.2,
        refuse: 0.1,
        huge: 0.1,
        no_summary: 0.1,
        slow_delay: (Duration::from_millis(60), Duration::from_millis(80)),
        die_period: Duration::from_millis(800),
        huge_bytes: 4 << 20,
        ..opts(Ipv4Addr::new(127, 3, 0, 1), 30)
    };
    let cluster = SimCluster::start(o).await.unwrap();
    let nodes = cluster.nodes().to_vec();
    let of = |f: Fault| nodes.iter().filter(move |n| n.fault == f);
    let healthy = of(Fault::None).next().unwrap().clone();
    let checks = async {
        // Refuse: connection refused.
        for n in of(Fault::Refuse) {
            match Client::connect(&n.address(), quick()).await {
                Err(ClientError::Io { source, .. }) => {
                    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused)
                }
                other => panic!("{}: refuse gave {other:?}", n.name),
            }
        }
        // Hang: a request times out (the version exchange, or the first
        // request after attach).
        for n in of(Fault::Hang) {
            let t = Instant::now();
            let e = read(n, "loadavg", quick()).await.unwrap_err();
            assert!(matches!(e, ClientError::Timeout { .. }), "{}: {e}", n.name);
            if n.hang == Some(HangKind::AfterAttach) {
                let c = Client::connect(&n.address(), quick()).await.unwrap();
                let _ = c.attach("root", "/proc", Some(0)).await.unwrap();
            }
            assert!(t.elapsed() < Duration::from_secs(3));
        }
        // Garbage: a protocol error, never a hang or a panic.
        for n in of(Fault::Garbage) {
            let e = read(n, "loadavg", quick()).await.unwrap_err();
            assert!(
                matches!(
                    e,
                    ClientError::Protocol { .. } | ClientError::Version { .. }
                ),
                "{} ({:?}): {e}",
                n.name,
                n.garbage
            );
            if n.garbage != Some(GarbageKind::Noise) {
                // The handshake itself was clean.
                let c = Client::connect(&n.address(), quick()).await.unwrap();
                let _ = c.attach("root", "/proc", Some(0)).await.unwrap();
            }
        }
        // Slow: slower than a healthy node, by about the configured delay
        // per request (attach, walk, open, reads, clunk).
        let t = Instant::now();
        read(&healthy, "loadavg", quick()).await.unwrap();
        let fast = t.elapsed();
        for n in of(Fault::Slow) {
            let t = Instant::now();
            read(n, "loadavg", ClientOptions::default()).await.unwrap();
            let slow = t.elapsed();
            assert!(
                slow >= Duration::from_millis(4 * 60),
                "{}: {slow:?}",
                n.name
            );
            assert!(slow > fast, "{slow:?} vs {fast:?}");
        }
        // Huge: one process's maps is huge and still served whole.
        for n in of(Fault::Huge) {
            let path = n.huge_path.clone().unwrap();
            let maps = read(n, &path, ClientOptions::default()).await.unwrap();
            assert!(maps.len() >= 4 << 20, "{}", maps.len());
        }
        // No summary: the file does not exist, the rest does.
        for n in nodes
            .iter()
            .filter(|n| !n.has_summary && n.fault == Fault::None)
        {
            let e = read(n, ".gproc/ps", quick()).await.unwrap_err();
            assert_eq!(e.errno(), gproc::proto::errno::ENOENT, "{e}");
            read(n, "1/stat", quick()).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(12), checks)
        .await
        .expect("fault checks finish");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_nodes_go_away_and_come_back() {
    let o = SimOptions {
        die: 1.0,
        die_period: Duration::from_millis(600),
        ..opts(Ipv4Addr::new(127, 4, 0, 1), 8)
    };
    let cluster = SimCluster::start(o).await.unwrap();
    let nodes = cluster.nodes().to_vec();
    // The node that stays up longest at first, so the first connection
    // surely finds it up.
    let flapping = nodes
        .iter()
        .filter(|n| !n.die.unwrap().permanent)
        .max_by_key(|n| n.die.unwrap().first_down_after)
        .expect("some of 8 dying nodes come back")
        .clone();
    let sched = flapping.die.unwrap();
    let checks = async {
        // Up at first: a connection works...
        let c = Client::connect(&flapping.address(), quick()).await.unwrap();
        let root = c.attach("root", "/proc", Some(0)).await.unwrap();
        root.read_all("loadavg").await.unwrap();
        // ...until the node dies: new connections are refused...
        tokio::time::sleep(sched.first_down_after).await;
        let mut refused = false;
        for _ in 0..200 {
            match Client::connect(&flapping.address(), quick()).await {
                Err(ClientError::Io { .. }) => {
                    refused = true;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        assert!(refused, "{} went down", flapping.name);
        // ...and the one held open is cut.
        assert!(root.read_all("loadavg").await.is_err());
        // It comes back after its down time.
        let mut back = false;
        for _ in 0..300 {
            if read(&flapping, "loadavg", quick()).await.is_ok() {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(back, "{} came back", flapping.name);
    };
    tokio::time::timeout(Duration::from_secs(8), checks)
        .await
        .expect("die checks finish");
    cluster.shutdown().await;
}

//! The fan-out pool against 200+ real node servers on distinct loopback
//! addresses: nodes killed mid-run are named and the rest complete; a hung
//! node does not delay the others past the deadline, and once down fails
//! at once while it is reconnected in the background; restarted nodes come
//! back after backoff without a read having to wait for them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gproc::agent::ProcFs;
use gproc::client::pool::{NodeSpec, NodeState, Pool, PoolError, PoolOptions};
use gproc::net::Address;
use gproc::server::listener::Listener;
use gproc::server::{AccessPolicy, Server, ServerConfig};
use tokio_util::sync::CancellationToken;

const NODES: usize = 220;

fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("loadavg"), "0.10 0.20 0.30 1/100 4242\n").unwrap();
    d
}

/// Serves `root` on `addr` until the returned token is cancelled.
async fn serve(root: &std::path::Path, addr: &str) -> CancellationToken {
    let l = Listener::bind(&Address::Tcp(addr.into()), 0o666)
        .await
        .unwrap();
    let fs = Arc::new(ProcFs::new(root).unwrap());
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        Server::new(
            fs,
            ServerConfig::default().with_access(AccessPolicy::believing_claims()),
        )
        .serve(vec![l], s)
        .await
    });
    stop
}

fn addr(i: usize, port: u16) -> String {
    format!("127.0.{}.{}:{port}", 1 + i / 250, 1 + i % 250)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_survives_killed_and_hung_nodes_and_recovers() {
    let root = tree();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut stops = Vec::new();
    for i in 0..NODES {
        stops.push(serve(root.path(), &addr(i, port)).await);
    }
    // One more node that accepts connections and never answers.
    let hung = tokio::net::TcpListener::bind(addr(NODES, port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            held.push(s);
        }
    });
    let specs: Vec<NodeSpec> = (0..=NODES)
        .map(|i| NodeSpec {
            name: format!("n{i:04}"),
            address: Address::Tcp(addr(i, port)),
            aname: "/proc".into(),
            uname: "root".into(),
            uid: 0,
            dialect: None,
            munge: false,
        })
        .collect();
    let opts = PoolOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(1),
        ..PoolOptions::default()
    };
    let pool = Pool::new(specs, opts);
    let all = pool.nodes();
    let deadline = Duration::from_secs(3);
    let run = |pool: Arc<Pool>| {
        let all = all.clone();
        async move {
            let t = Instant::now();
            let res: Vec<_> = pool
                .fan_out(&all, deadline, |root| async move {
                    root.read_all("loadavg").await
                })
                .collect()
                .await;
            let ok = res
                .iter()
                .filter(|(_, r)| r.as_ref().is_ok_and(|b| b.starts_with(b"0.10")))
                .count();
            let mut failed: Vec<String> = res
                .iter()
                .filter(|(_, r)| r.is_err())
                .map(|(n, _)| n.spec.name.clone())
                .collect();
            failed.sort();
            (ok, failed, t.elapsed())
        }
    };

    let (ok, failed, took) = run(pool.clone()).await;
    assert_eq!(ok, NODES, "{failed:?}");
    assert_eq!(
        failed,
        vec![format!("n{NODES:04}")],
        "only the hung node fails"
    );
    assert!(
        took < deadline + Duration::from_secs(2),
        "the hung node held the fan-out for {took:?}"
    );

    // The hung node is down now. Reads of it fail at once, even when its
    // retry time has come: reconnects happen in the background, so no read
    // waits for a connect to a node known to be down...
    let h = pool.node(&format!("n{NODES:04}")).unwrap();
    assert!(
        matches!(h.status().state, NodeState::Down(_)),
        "{:?}",
        h.status()
    );
    let before = h.status().failures;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = pool
        .with_node(&h, |root| async move { root.read_all("loadavg").await })
        .await;
    assert!(matches!(r, Err(PoolError::Down { .. })), "{r:?}");
    // ... and keep being attempted, with nobody reading, under backoff.
    let after = h.status().failures;
    assert!(
        after > before,
        "no background reconnect: {before} -> {after}"
    );

    // Kill 20 nodes: their connections close; the next fan-out names them.
    for s in stops.iter().take(20) {
        s.cancel();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, _) = run(pool.clone()).await;
    assert_eq!(ok, NODES - 20);
    assert_eq!(failed.len(), 21);
    assert!(failed.contains(&"n0000".to_string()) && failed.contains(&"n0019".to_string()));
    let n0 = pool.node("n0000").unwrap();
    assert!(
        matches!(n0.status().state, NodeState::Down(_)),
        "{:?}",
        n0.status()
    );

    // Restart them: after the backoff they are up again.
    for (i, s) in stops.iter_mut().enumerate().take(20) {
        *s = serve(root.path(), &addr(i, port)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, failed, _) = run(pool.clone()).await;
    assert_eq!(ok, NODES, "{failed:?}");
    assert_eq!(pool.node("n0000").unwrap().status().state, NodeState::Up);
    for s in stops {
        s.cancel();
    }
}

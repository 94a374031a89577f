//! The aggregator killed (SIGKILL) under load and restarted on the same
//! port: every client's next call fails with a connection error at once,
//! not a hang, and after reconnecting every client works again. And a
//! config with several errors is refused at start with every error listed
//! (SIGHUP with a bad file is tests/it/reload.rs).
//!
//! Real binaries on 127.0.0.0/8 only; deadlines are generous and only
//! guard against hangs, never measure speed.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use gproc::client::{Client, ClientError, ClientOptions, FidHandle};
use gproc::net::Address;

const CLIENTS: usize = 8;
const NODES: usize = 20;

/// Longest any one call may take before it counts as a hang.
const CALL_LIMIT: Duration = Duration::from_secs(15);

/// Longest a phase (all clients working, all failing, all back) may take.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct ClientState {
    ok: AtomicU64,
    connection_errors: AtomicU64,
    /// Anything else: an error that is not about the connection, a hang.
    bad: Mutex<Vec<String>>,
}

/// Starts `gproc sim` and returns it with the config it wrote.
fn start_sim(dir: &Path) -> (Proc, String) {
    let out = dir.join("sim.toml");
    let child = Command::new(gproc())
        .args(["sim", "--nodes", &NODES.to_string()])
        .args(["--base-port", "0", "--first-address", "127.8.0.1"])
        .arg("--config-out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gproc sim");
    let sim = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Written to a temporary name and renamed: never half a file.
        if let Ok(t) = std::fs::read_to_string(&out) {
            return (sim, t);
        }
        assert!(Instant::now() < deadline, "gproc sim wrote no config");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn connect(addr: &Address) -> Result<FidHandle, ClientError> {
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(10),
        munge: false,
        ..ClientOptions::default()
    };
    Client::connect(addr, opts)
        .await?
        .attach("root", "", Some(0))
        .await
}

/// Reads `ps` and `simNNNN/1/status` in turn until `stop`, reconnecting
/// after a connection error.
async fn client(i: usize, addr: Address, st: Arc<ClientState>, stop: Arc<AtomicBool>) {
    let mut root: Option<FidHandle> = None;
    let mut n = i;
    while !stop.load(Ordering::Relaxed) {
        let Some(r) = root.as_ref() else {
            match tokio::time::timeout(CALL_LIMIT, connect(&addr)).await {
                Ok(Ok(r)) => root = Some(r),
                Ok(Err(e)) if e.is_connection_error() => {
                    st.connection_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(e)) => st.bad.lock().unwrap().push(format!("connect: {e}")),
                Err(_) => st.bad.lock().unwrap().push("connect hung".into()),
            }
            continue;
        };
        n += 1;
        let path = if n.is_multiple_of(2) {
            "ps".to_string()
        } else {
            format!("sim{:04}/1/status", 1 + n % NODES)
        };
        match tokio::time::timeout(CALL_LIMIT, r.read_all(&path)).await {
            Ok(Ok(_)) => {
                st.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) if e.is_connection_error() => {
                st.connection_errors.fetch_add(1, Ordering::Relaxed);
                root = None;
            }
            Ok(Err(e)) => st.bad.lock().unwrap().push(format!("{path}: {e}")),
            Err(_) => {
                st.bad
                    .lock()
                    .unwrap()
                    .push(format!("{path}: no answer within {CALL_LIMIT:?}"));
                root = None;
            }
        }
    }
}

/// Waits until `ok(client index, state)` holds for every client.
async fn wait_all(
    what: &str,
    states: &[Arc<ClientState>],
    ok: impl Fn(usize, &ClientState) -> bool,
) {
    let deadline = Instant::now() + PHASE_LIMIT;
    while !states.iter().enumerate().all(|(i, s)| ok(i, s)) {
        let summary: Vec<String> = states
            .iter()
            .map(|s| {
                format!(
                    "ok {} conn errors {} bad {:?}",
                    s.ok.load(Ordering::Relaxed),
                    s.connection_errors.load(Ordering::Relaxed),
                    s.bad.lock().unwrap()
                )
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {summary:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_fail_fast_when_the_aggregator_is_killed_and_reconnect_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, nodes) = start_sim(dir.path());
    // The first start takes the port's socket; restarts bind it by number.
    let port = std::sync::Arc::new(Port::new());
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauth = \"none\"\n\n\
         [pool]\nrequest_timeout = \"3s\"\ndeadline = \"3s\"\n\n{nodes}"
    );
    let start = {
        let (d, c, p) = (dir.path().to_path_buf(), config.clone(), port.clone());
        move || start_aggregator(&d, &c, &p)
    };
    let mut agg = tokio::task::spawn_blocking(start.clone()).await.unwrap();
    let addr: Address = format!("127.0.0.1:{port}").parse().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let states: Vec<Arc<ClientState>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = states
        .iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(client(i, addr.clone(), s.clone(), stop.clone())))
        .collect();
    wait_all("every client working", &states, |_, s| {
        s.ok.load(Ordering::Relaxed) >= 4
    })
    .await;
    assert!(
        states
            .iter()
            .all(|s| s.connection_errors.load(Ordering::Relaxed) == 0)
    );

    // SIGKILL: no goodbye, the kernel closes the sockets.
    agg.0.kill().unwrap();
    agg.0.wait().unwrap();
    wait_all("every client to see a connection error", &states, |_, s| {
        s.connection_errors.load(Ordering::Relaxed) >= 1
    })
    .await;

    // Same command, same port; clients reconnect on their own.
    let ok_before: Vec<u64> = states
        .iter()
        .map(|s| s.ok.load(Ordering::Relaxed))
        .collect();
    let _agg = tokio::task::spawn_blocking(start).await.unwrap();
    wait_all("every client working again", &states, |i, s| {
        s.ok.load(Ordering::Relaxed) >= ok_before[i] + 4
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(CALL_LIMIT * 2, t)
            .await
            .expect("a client stops")
            .unwrap();
    }
    for (i, s) in states.iter().enumerate() {
        let bad = s.bad.lock().unwrap();
        assert!(bad.is_empty(), "client {i}: {bad:#?}");
    }
}

#[test]
fn a_config_with_several_errors_is_refused_at_start_with_every_error_listed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauth = \"none\"\nmax_connections = 0\n\n\
             [pool]\nrequest_timeout = \"5x\"\n\n\
             [cache]\ndefault_ttl = \"soon\"\n\n\
             [[nodes]]\nnames = \"n[1-3\"\naddress = \"127.0.0.1:1\"\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Proc(
        Command::new(gproc())
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "gproc serve with a bad config is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("not started"), "{err}");
    for want in [
        "bad.toml:4:19: server.max_connections",
        "bad.toml:7:19: pool.request_timeout",
        "bad.toml:10:15: cache.default_ttl",
        "bad.toml:13:9: nodes[0].names",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing may listen"
    );
}

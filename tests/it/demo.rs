//! `gproc demo` starts a simulated cluster and an aggregator, answers
//! `gproc ps`, and exits cleanly on SIGINT.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn demo_serves_ps_and_stops_on_sigint() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("demo.sock");
    let log = dir.path().join("demo.err");
    let mut child = Command::new(gproc())
        .args([
            "demo",
            "--nodes",
            "40",
            "--procs-per-node",
            "20",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--socket")
        .arg(&sock)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard_pid = child.id();
    // The demo prints its summary, then the commands to try; read stdout
    // on a thread until the last line of those so the signal below comes
    // after the summary (the demo also stops cleanly before it).
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            out.push_str(&line);
            out.push('\n');
            if line.contains("Ctrl-C stops it") {
                let _ = tx.send(out.clone());
            }
        }
    });
    let summary = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("demo printed no summary within 60 s");
    wait_for_port(&format!("127.0.0.1:{port}"));
    let out = Command::new(gproc())
        .args([
            "ps",
            "--server",
            &format!("127.0.0.1:{port}"),
            "-o",
            "node,pid,user",
        ])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(ps.lines().count() > 40 * 10, "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("sim0001 ")), "{ps}");
    // The Unix socket answers too.
    let out = Command::new(gproc())
        .args([
            "cat",
            "--server",
            &format!("unix:{}", sock.display()),
            "nodes",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("sim0040"));
    // Every command the demo suggests works as printed (the mount needs
    // root and v9fs: tests/it/v9fs.rs).
    let exe = gproc().display().to_string();
    let suggested: Vec<&str> = summary
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&exe))
        .collect();
    assert!(suggested.len() >= 5, "{summary}");
    for cmd in suggested {
        let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // On a terminal (a pty from script(1)) `gproc ps` cuts lines at the
    // terminal's width, as procps does; `-w` keeps them whole.
    if require("script (util-linux)", have("script")) {
        let on_tty = |extra: &str| {
            let cmd = format!("env COLUMNS=50 {exe} ps --server 127.0.0.1:{port} {extra}");
            let out = Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{cmd}");
            let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
            text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
        };
        let cut = on_tty("");
        assert!(cut > 0 && cut <= 50, "longest line {cut}");
        assert!(on_tty("-w") > 50, "-w keeps whole command lines");
    }

    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(guard_pid as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "demo exited with {st}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        summary.contains("processes on") && summary.contains("Top processes by CPU"),
        "{summary}"
    );
    // Its own lines only: no log noise from the servers it runs.
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!err.contains(" INFO "), "{err}");
}

/// Ctrl-C while the demo is still reading its first summary stops it
/// cleanly (exit 0), not with a read error from the aggregator going away.
#[test]
fn demo_stops_cleanly_when_interrupted_during_startup() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(gproc())
        .args([
            "demo",
            "--nodes",
            "200",
            "--procs-per-node",
            "50",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--socket")
        .arg(dir.path().join("demo.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(&format!("127.0.0.1:{port}"));
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "demo exited with {st}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `gproc demo --racks 3`: the same cluster behind three rack aggregators
/// under the top; the summary counts every node and process, and `/nodes`
/// names each node's rack.
#[test]
fn demo_with_racks_is_a_two_level_site() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(gproc())
        .args([
            "demo",
            "--nodes",
            "30",
            "--procs-per-node",
            "20",
            "--racks",
            "3",
            "--once",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--socket")
        .arg(dir.path().join("demo.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One of the 30 may be made to refuse connections (the demo shows a
    // down node from 50 nodes on): none here.
    assert!(text.contains("600 processes on 30 of 30 nodes"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 rack aggregators"), "{err}");
}

//! Shared helpers for integration tests: spawning `gproc` and real peers
//! on loopback, and skipping loudly (or failing under CI) when a peer is
//! missing.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The built `gproc` binary.
pub fn gproc() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gproc"))
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `addr`.
pub fn wait_for_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after 20 s");
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gproc agent` on 127.0.0.1:`port` serving this machine's /proc,
/// believing the user each client names (`--auth none`: loopback only).
pub fn start_agent(port: u16) -> Proc {
    let child = Command::new(gproc())
        .args([
            "agent",
            "--auth",
            "none",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gproc agent");
    wait_for_port(&format!("127.0.0.1:{port}"));
    Proc(child)
}

/// Starts `gproc serve` with `config` (TOML text) written to `dir`.
pub fn start_aggregator(dir: &Path, config: &str, port: u16) -> Proc {
    let path = dir.join("gproc.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new(gproc())
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn gproc serve");
    wait_for_port(&format!("127.0.0.1:{port}"));
    Proc(child)
}

/// Whether a program is on PATH (or at an absolute path).
pub fn have(prog: &str) -> bool {
    if prog.starts_with('/') {
        return Path::new(prog).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).exists()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(prog).exists()
}

/// Skips (returns false) with a loud message when a peer is missing,
/// except under `CI=true`, where a missing peer fails the test.
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is missing under CI=true: .ci/setup-peers.sh should have installed it");
    }
    eprintln!("\n!!! SKIPPED: {what} is not installed (run .ci/setup-peers.sh) !!!\n");
    false
}

/// Where `.ci/setup-peers.sh` puts the Python clients and kernels.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("GPROC_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/gproc-peers".into())
}

/// Starts `diod -e /proc` on 127.0.0.1:`port`, or `None` (after
/// [`require`]) when diod is missing.
pub fn start_diod(port: u16) -> Option<Proc> {
    let diod = ["/usr/sbin/diod", "/usr/bin/diod"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if !require("diod", diod.is_some()) {
        return None;
    }
    let child = Command::new(diod?)
        .args([
            "-f",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-e",
            "/proc",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn diod");
    wait_for_port(&format!("127.0.0.1:{port}"));
    Some(Proc(child))
}

/// Runs a script of the repo, printing its output, and asserts success.
pub fn run_script(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run script");
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    println!("{so}");
    eprintln!("{se}");
    assert!(out.status.success(), "{cmd:?} failed:\n{so}\n{se}");
    out
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Serves `/proc` with an in-process agent on `addr` (127.0.0.1:0 or a
/// Unix socket) until the returned token is cancelled; returns the bound
/// address.
pub async fn serve_proc(
    addr: &gproc::net::Address,
    config: gproc::server::ServerConfig,
) -> (gproc::net::Address, tokio_util::sync::CancellationToken) {
    let l = gproc::server::listener::Listener::bind(addr, 0o666)
        .await
        .expect("bind the test agent's address");
    let bound = l.local_addr();
    let fs = std::sync::Arc::new(gproc::agent::ProcFs::new("/proc").expect("/proc is readable"));
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        gproc::server::Server::new(fs, config)
            .serve(vec![l], t)
            .await
    });
    (bound, token)
}

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

/// A loopback port for a server the test starts: bound here, on
/// 127.0.0.1:0, and handed to the first server started on it as an
/// inherited socket (`fd:3`), so no other process can take the port
/// between the test choosing it and the server listening. A server
/// restarted later on the same port binds it by number.
pub struct Port {
    /// The port number.
    pub n: u16,
    sock: std::sync::Mutex<Option<TcpListener>>,
}

impl Port {
    /// Binds 127.0.0.1:0.
    pub fn new() -> Port {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        Port {
            n: l.local_addr().unwrap().port(),
            sock: std::sync::Mutex::new(Some(l)),
        }
    }

    /// `127.0.0.1:N`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.n)
    }

    /// Spawns `cmd`, handing it the socket as descriptor 3; `listen` gets
    /// the address the server should listen on (`fd:3`, or `127.0.0.1:N`
    /// once the socket was handed over: a restart).
    pub fn spawn(&self, cmd: &mut Command, listen: impl FnOnce(&mut Command, &str)) -> Child {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let Some(l) = self.sock.lock().unwrap().take() else {
            listen(cmd, &self.addr());
            return cmd.spawn().expect("spawn a server");
        };
        let fd = l.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe and the closure
        // allocates nothing. dup2 clears close-on-exec on descriptor 3
        // (fcntl does when the socket already is 3).
        unsafe {
            cmd.pre_exec(move || {
                let rc = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        listen(cmd, "fd:3");
        let child = cmd.spawn().expect("spawn a server");
        // Our copy closes now, so a dead server's port refuses connections.
        drop(l);
        child
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.n)
    }
}

/// A free TCP port on 127.0.0.1 (bound then released), for peers that
/// cannot take an inherited socket (diod) and for restarts on one port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a 9P server answers `Tversion` on `addr`. With an
/// inherited socket the kernel accepts connections before the server runs,
/// so a connect alone says nothing: the answer says it serves (every
/// listener bound).
pub fn wait_for_9p(addr: &str) {
    use std::io::{Read, Write};
    let mut tversion = Vec::new();
    let version = b"9P2000.L";
    let size = 4 + 1 + 2 + 4 + 2 + version.len();
    tversion.extend_from_slice(&(size as u32).to_le_bytes());
    tversion.push(100); // Tversion
    tversion.extend_from_slice(&0xffffu16.to_le_bytes());
    tversion.extend_from_slice(&8192u32.to_le_bytes());
    tversion.extend_from_slice(&(version.len() as u16).to_le_bytes());
    tversion.extend_from_slice(version);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 5];
            if s.write_all(&tversion).is_ok() && s.read_exact(&mut head).is_ok() && head[4] == 101 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no 9P server answers on {addr} after 20 s");
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

/// Starts `gproc agent --auth none` on `port` (loopback: claims are
/// believed) serving this machine's /proc.
pub fn start_agent(port: &Port) -> Proc {
    start_agent_with(port, Command::new(gproc()))
}

/// [`start_agent`] with `cmd` as the gproc to run (e.g. a cross-built
/// one under qemu-user).
pub fn start_agent_with(port: &Port, mut cmd: Command) -> Proc {
    cmd.args(["agent", "--auth", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = port.spawn(&mut cmd, |c, listen| {
        c.args(["--listen", listen]);
    });
    wait_for_9p(&port.addr());
    Proc(child)
}

/// Starts `gproc serve` with `config` (TOML text) written to `dir`; its
/// `listen` entry `"127.0.0.1:N"` for `port` becomes the inherited socket.
pub fn start_aggregator(dir: &Path, config: &str, port: &Port) -> Proc {
    let path = dir.join("gproc.toml");
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut cmd = Command::new(gproc());
    cmd.args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log);
    let child = port.spawn(&mut cmd, |_, listen| {
        let quoted = format!("\"{}\"", port.addr());
        assert!(config.contains(&quoted), "the config listens on {quoted}");
        std::fs::write(&path, config.replace(&quoted, &format!("\"{listen}\""))).unwrap();
    });
    wait_for_9p(&port.addr());
    Proc(child)
}

/// The uids (real, effective, saved) of a process, from its status;
/// empty once it is gone.
pub fn uids(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Polls `ok` every 25 ms for up to 10 s; fails the test naming `what`.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what}: not after 10 s");
}

/// Makes (or reuses) a test user; its (uid, gid). Tests run
/// concurrently: another may be running useradd (which locks
/// /etc/passwd), so this tries again.
pub fn test_user(name: &str) -> (u32, u32) {
    for _ in 0..20 {
        if let Some(uid) = gproc::sys::users::uid_by_name(name) {
            let gid = gproc::sys::users::passwd(uid).unwrap().1;
            return (uid, gid);
        }
        let _ = Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", name])
            .stderr(Stdio::null())
            .status();
        if gproc::sys::users::uid_by_name(name).is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("useradd {name} failed");
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
    start_diod_exporting(port, "/proc")
}

/// diod on 127.0.0.1:`port` exporting `dir` (no authentication).
pub fn start_diod_exporting(port: u16, dir: &str) -> Option<Proc> {
    let diod = ["/usr/sbin/diod", "/usr/bin/diod"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if !require("diod", diod.is_some()) {
        return None;
    }
    let child = Command::new(diod?)
        .args(["-f", "-n", "-l", &format!("127.0.0.1:{port}"), "-e", dir])
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

/// An aggregator in this process over a simulated cluster, on a loopback
/// port without authentication; `extra` is config put before the nodes
/// (a `[cache]` section, say). Returns it, its stop token, and its TCP
/// address as `gproc --server` takes it.
pub async fn aggregate_sim(
    cluster: &gproc::sim::SimCluster,
    extra: &str,
) -> (
    gproc::aggregator::Aggregator,
    tokio_util::sync::CancellationToken,
    String,
) {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n{extra}\n{}",
        cluster.config_toml()
    );
    let cfg = gproc::config::Config::from_str(&text, "sim.toml").unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let agg = gproc::aggregator::Aggregator::start(&cfg, stop.clone())
        .await
        .unwrap();
    let server = match &agg.addresses[0] {
        gproc::net::Address::Tcp(a) => a.clone(),
        a => panic!("an in-process aggregator listens on TCP, not {a:?}"),
    };
    (agg, stop, server)
}

/// The `[cache]` rule that keeps every summary and file for a test's
/// length, so that tables read at different moments are built from the
/// same summaries.
pub const KEEP_FOR_THE_TEST: &str = "[cache]\n[[cache.rule]]\npath = \"/**\"\nttl = \"120s\"\n";

//! Fair shares (issue 12 item 8, finding 8): one user holding the most
//! they can of everything (connections, process directories held open,
//! open-file snapshots, slow reads) does not make another user's reads
//! fail, at the agent and at the aggregator; the greedy user gets errors.
//!
//! Real test users made here; the agent serves a directory made here as
//! its tree (`small`, a 4 MiB `big`, and `4242/`, which the agent treats
//! as a process directory and holds open for a fid). Slow reads: the
//! pool's share against a real 9P server whose `slow` file opens only
//! when the test says; the agent's per-user threads in `agent::tests`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gproc::client::pool::{NodeSpec, Pool, PoolOptions, User};
use gproc::client::{Client, ClientOptions, FidHandle, OpenMode};
use gproc::net::Address;
use gproc::proto::{Metadata, Qid, errno, qt};
use gproc::server::listener::Listener;
use gproc::server::{
    AttachRequest, Contents, Filesystem, FsError, FsResult, Identity, OpenFlags, Server,
    ServerConfig,
};
use tokio_util::sync::CancellationToken;

use crate::common::*;

const GREEDY: &str = "gproc-f1";
const OTHER: &str = "gproc-f2";

struct Users {
    greedy: (u32, u32),
    other: (u32, u32),
}

fn setup() -> Option<Users> {
    let root = rustix::process::geteuid().is_root();
    if !require("root (to make test users and act as them)", root) {
        return None;
    }
    if !require("useradd", have("useradd")) {
        return None;
    }
    Some(Users {
        greedy: test_user(GREEDY),
        other: test_user(OTHER),
    })
}

/// The tree the agent serves.
fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(d.path(), 0o755).unwrap();
    std::fs::write(d.path().join("small"), "hello\n").unwrap();
    std::fs::write(d.path().join("big"), vec![7u8; 4 << 20]).unwrap();
    std::fs::create_dir(d.path().join("4242")).unwrap();
    std::fs::write(d.path().join("4242/status"), "Name:\ttest\n").unwrap();
    for f in ["small", "big", "4242/status"] {
        mode(&d.path().join(f), 0o644).unwrap();
    }
    mode(&d.path().join("4242"), 0o755).unwrap();
    d
}

/// Starts the agent on `sock` serving `root`, with at most 256 open files
/// (so descriptors run out in a test, as 1024 do on a node).
fn agent(root: &Path, sock: &Path, extra: &[&str]) -> Proc {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(gproc());
    cmd.args(["agent", "--listen"])
        .arg(format!("unix:{}", sock.display()))
        .arg("--root")
        .arg(root)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches only its argument.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let p = Proc(cmd.spawn().unwrap());
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent does not listen on {}", sock.display());
}

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// A connection to `sock` whose peer credentials (SO_PEERCRED) are
/// `(uid, gid)`: made by a thread that switches only itself (raw system
/// calls, not glibc's process-wide ones) and then ends.
async fn connect_as(sock: &Path, (uid, gid): (u32, u32)) -> std::io::Result<Client> {
    let path = sock.to_path_buf();
    let s = std::thread::spawn(move || {
        // SAFETY: setresgid/setresuid take integers; -1 keeps a value.
        unsafe {
            if libc::syscall(libc::SYS_setresgid, -1i64, gid as libc::c_long, -1i64) != 0
                || libc::syscall(libc::SYS_setresuid, -1i64, uid as libc::c_long, -1i64) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        std::os::unix::net::UnixStream::connect(&path)
    })
    .join()
    .unwrap()?;
    s.set_nonblocking(true)?;
    let s = tokio::net::UnixStream::from_std(s)?;
    let hs = Client::handshake(s, sock.display().to_string(), opts());
    match tokio::time::timeout(Duration::from_secs(5), hs).await {
        Ok(r) => r.map_err(|e| std::io::Error::other(e.to_string())),
        Err(_) => Err(std::io::Error::other("no answer to Tversion")),
    }
}

/// Opens as many connections as `who` may (up to `max`), each attached.
async fn hold_connections(
    sock: &Path,
    who: (u32, u32),
    name: &str,
    max: usize,
) -> (Vec<(Client, FidHandle)>, std::io::Error) {
    let mut held = Vec::new();
    for _ in 0..max {
        match connect_as(sock, who).await {
            Ok(c) => {
                let root = c.attach(name, "", Some(who.0)).await.unwrap();
                held.push((c, root));
            }
            Err(e) => return (held, e),
        }
    }
    panic!("{name} opened {max} connections: no share stopped them");
}

/// Opens `path` and keeps it open until `limit` opens or the first
/// error; returns the open fids and the errno that stopped them.
async fn hold_open(root: &FidHandle, path: &str, limit: usize) -> (Vec<FidHandle>, u32) {
    let mut held = Vec::new();
    for _ in 0..limit {
        let r = async {
            let mut f = root.walk(path).await?;
            f.open(OpenMode::Read).await?;
            Ok::<_, gproc::client::ClientError>(f)
        }
        .await;
        match r {
            Ok(f) => held.push(f),
            Err(e) => return (held, e.errno()),
        }
    }
    (held, 0)
}

/// Everything `root` (another user) reads must succeed.
async fn reads_succeed(root: &FidHandle, prefix: &str, with_process_dir: bool) {
    let small = root.read_all(&format!("{prefix}small")).await;
    assert_eq!(&small.unwrap()[..], b"hello\n");
    let big = root.read_all(&format!("{prefix}big")).await.unwrap();
    assert_eq!(big.len(), 4 << 20);
    if with_process_dir {
        let st = root.read_all(&format!("{prefix}4242/status")).await;
        assert_eq!(&st.unwrap()[..], b"Name:\ttest\n");
    }
}

/// At the agent: the greedy user holds their share of connections (on
/// their own), of process directories held open and of snapshot bytes
/// (on root's connection, as the aggregator brings every user, and on
/// their own).
/// Each step fails the greedy user with EMFILE; the other user's reads,
/// on root's connection and on their own, still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_at_the_maximum_does_not_fail_anothers_reads_at_the_agent() {
    let Some(u) = setup() else { return };
    let t = tree();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = agent(
        t.path(),
        &sock,
        &["--socket-mode", "0666", "--max-connections", "16"],
    );

    // Connections: an eighth of 16 each.
    let (mine, e) = hold_connections(&sock, u.greedy, GREEDY, 17).await;
    assert_eq!(mine.len(), 2, "refused after its share: {e}");
    assert!(e.to_string().contains("too many open files"), "{e}");

    // Root's connection, as the aggregator's: both users named on it.
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let greedy = c.attach_named(GREEDY, "", u.greedy.0).await.unwrap();
    let other = c.attach_named(OTHER, "", u.other.0).await.unwrap();

    // Descriptors held for walked process directories.
    let mut dirs = Vec::new();
    let mut stopped = 0;
    for i in 0..400 {
        let from = if i % 2 == 0 { &greedy } else { &mine[0].1 };
        match from.walk("4242").await {
            Ok(f) => dirs.push(f),
            Err(e) => {
                stopped = e.errno();
                break;
            }
        }
    }
    assert_eq!(stopped, errno::EMFILE, "after {} directories", dirs.len());
    reads_succeed(&other, "", true).await;

    // Snapshot bytes: on root's connection, then on their own.
    let (held1, e1) = hold_open(&greedy, "big", 400).await;
    let (held2, e2) = hold_open(&mine[1].1, "big", 400).await;
    assert_eq!((e1, e2), (errno::EMFILE, errno::EMFILE));
    assert!(!held1.is_empty());
    reads_succeed(&other, "", true).await;

    reads_succeed(&other, "", true).await;
    let own = connect_as(&sock, u.other).await.unwrap();
    let own = own.attach(OTHER, "", Some(u.other.0)).await.unwrap();
    reads_succeed(&own, "", true).await;
    drop((held1, held2, dirs));
}

/// At the aggregator: the greedy user holds their share of connections
/// and of snapshot bytes; the other user's reads and an administrator's
/// (the service identity) still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_at_the_maximum_does_not_fail_anothers_reads_at_the_aggregator() {
    let Some(u) = setup() else { return };
    let t = tree();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = agent(t.path(), &sock, &[]);
    let agg: PathBuf = dir.path().join("agg.sock");
    let port = Port::new();
    let cfg = format!(
        "[server]\nlisten = [\"{}\", \"unix:{}\"]\nsocket_mode = \"0666\"\n\
         max_connections = 16\nsnapshot_bytes_per_user = \"8MiB\"\n\n\
         [pool]\nrequest_timeout = \"60s\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[views.allot]]\nuser = \"{GREEDY}\"\nnodes = \"n1\"\n\n\
         [[views.allot]]\nuser = \"{OTHER}\"\nnodes = \"n1\"\n",
        port.addr(),
        agg.display(),
        sock.display()
    );
    let _agg = start_aggregator(dir.path(), &cfg, &port);

    let (mine, e) = hold_connections(&agg, u.greedy, GREEDY, 17).await;
    assert_eq!(mine.len(), 2, "refused after its share: {e}");

    // 8 MiB of snapshots: two opens of the 4 MiB file, on either
    // connection.
    let (held1, e1) = hold_open(&mine[0].1, "n1/big", 400).await;
    let (held2, e2) = hold_open(&mine[1].1, "n1/big", 400).await;
    assert_eq!(
        (held1.len() + held2.len(), e1, e2),
        (2, errno::EMFILE, errno::EMFILE)
    );

    let other = connect_as(&agg, u.other).await.unwrap();
    let other = other.attach(OTHER, "", Some(u.other.0)).await.unwrap();
    reads_succeed(&other, "n1/", false).await;
    let admin = Client::connect(&Address::Unix(agg.clone()), opts())
        .await
        .unwrap();
    let admin = admin.attach("root", "", Some(0)).await.unwrap();
    reads_succeed(&admin, "n1/", false).await;
    let nodes = admin.read_all("nodes").await.unwrap();
    assert!(String::from_utf8_lossy(&nodes).contains("n1"));
    drop((held1, held2));
}

/// A node whose `slow` file opens only when the test says: a read as
/// slow as one likes, served over a real 9P server on a Unix socket.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    /// Opens of `slow` waiting at the gate now.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl Filesystem for Gated {
    type Node = String;

    async fn attach(&self, _req: &AttachRequest) -> FsResult<(String, Qid)> {
        Ok((String::new(), qid("")))
    }

    async fn walk(&self, _who: &Identity, dir: &String, name: &str) -> FsResult<(String, Qid)> {
        match (dir.as_str(), name) {
            ("", "slow" | "small") => Ok((name.to_string(), qid(name))),
            _ => Err(FsError::NOENT),
        }
    }

    async fn getattr(&self, _who: &Identity, node: &String) -> FsResult<Metadata> {
        let q = qid(node);
        Ok(Metadata {
            qid: q,
            mode: if q.is_dir() { 0o040555 } else { 0o100444 },
            ..Metadata::default()
        })
    }

    async fn open(&self, _who: &Identity, node: &String, _f: OpenFlags) -> FsResult<Contents> {
        if node == "slow" {
            use std::sync::atomic::Ordering;
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let permit = self.gate.acquire().await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        }
        Ok(Contents::File(Bytes::from_static(b"hello\n")))
    }
}

fn qid(path: &str) -> Qid {
    Qid {
        ty: if path.is_empty() { qt::DIR } else { qt::FILE },
        version: 0,
        path: path.len() as u64,
    }
}

/// At the aggregator's pool: one user's slow reads of a node fill their
/// share of its permits and wait there; another user's reads and the
/// service identity's (tables, summaries, admins) still get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_slow_reads_leave_a_node_to_others_in_the_pool() {
    let opts = PoolOptions {
        request_timeout: Duration::from_secs(60),
        ..PoolOptions::default()
    };
    let share = opts.max_in_flight_per_user;
    slow_reads_leave_room(opts, share).await;
}

/// The same across nodes: one user holds at most a quarter of the pool's
/// requests in flight, however many nodes they read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_slow_reads_leave_the_pool_to_others() {
    let opts = PoolOptions {
        request_timeout: Duration::from_secs(60),
        max_in_flight: 8,
        max_in_flight_per_node: 8,
        max_in_flight_per_user: 8,
        ..PoolOptions::default()
    };
    slow_reads_leave_room(opts, 2).await;
}

/// A greedy user sends more slow reads than the node has permits; exactly
/// `share` reach the node; another user's read and the service's succeed.
async fn slow_reads_leave_room(opts: PoolOptions, share: usize) {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("node.sock");
    let l = Listener::bind(&Address::Unix(sock.clone()), 0o600)
        .await
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fs = Arc::new(Gated {
        gate: gate.clone(),
        waiting: waiting.clone(),
    });
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        Server::new(fs, ServerConfig::default())
            .serve(vec![l], s)
            .await
    });
    let spec = NodeSpec {
        name: "n1".into(),
        address: Address::Unix(sock),
        aname: String::new(),
        uname: "root".into(),
        uid: 0,
        dialect: None,
        munge: false,
    };
    let per_node = opts.max_in_flight_per_node;
    let pool = Pool::new(vec![spec], opts);
    let node = pool.node("n1").unwrap();
    let greedy = User {
        uid: 60001,
        name: "60001".into(),
    };
    let other = User {
        uid: 60002,
        name: "60002".into(),
    };
    for _ in 0..per_node + 4 {
        let (pool, node, greedy) = (pool.clone(), node.clone(), greedy.clone());
        tokio::spawn(async move {
            pool.with_node_as(
                &node,
                Some(&greedy),
                |r| async move { r.read_all("slow").await },
            )
            .await
        });
    }
    for _ in 0..200 {
        if waiting.load(Ordering::SeqCst) >= share {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let read = |user: Option<User>| {
        let (pool, node) = (pool.clone(), node.clone());
        async move {
            pool.with_node_as(&node, user.as_ref(), |r| async move {
                r.read_all("small").await
            })
            .await
        }
    };
    let deadline = Duration::from_secs(20);
    let o = tokio::time::timeout(deadline, read(Some(other))).await;
    assert_eq!(
        &o.expect("another user's read waits").unwrap()[..],
        b"hello\n"
    );
    let s = tokio::time::timeout(deadline, read(None)).await;
    assert_eq!(
        &s.expect("the service's read waits").unwrap()[..],
        b"hello\n"
    );
    // The greedy user never had more than their share at the node.
    assert_eq!(waiting.load(Ordering::SeqCst), share);
    gate.add_permits(1 << 20);
    stop.cancel();
}

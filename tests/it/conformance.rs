//! One 9P conformance suite for every tree gproc serves, in the spirit of
//! hugelgupf/p9's `fsimpl/test`: the same checks run through the real
//! session over an in-memory pipe (`tokio::io::duplex` served by
//! `serve_connection`) against the agent over this machine's `/proc` and
//! over a temporary directory, a simulated node, and the aggregator's tree
//! over three simulated nodes; and over TCP against diod exporting a
//! temporary directory, the reference 9P2000.L server.
//!
//! Each check runs in every dialect the server speaks. A check a server is
//! known to fail is listed, with the reason, in that server's deviation
//! table: the suite fails if a listed check passes (the table is stale) as
//! well as if an unlisted one fails. The result table is printed.
//!
//! Normal operations go through the project's client; partial walk
//! replies, exact `Rread` sizes and directory reads at chosen offsets and
//! counts use raw frames encoded with `gproc::proto`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gproc::agent::ProcFs;
use gproc::cache::Cache;
use gproc::client::pool::{NodeSpec, Pool, PoolOptions};
use gproc::client::{Client, ClientOptions, FidHandle, FileKind};
use gproc::config::{CachePolicy, Ttl};
use gproc::proto::s_if;
use gproc::proto::{
    self, Dialect, DirEntry, Frame, IOHDRSZ, NOFID, Qid, Rmessage, Stat, Tmessage, errno,
};
use gproc::server::session::{SessionLimits, serve_connection};
use gproc::server::{Filesystem, Peer};
use gproc::sim::{Sim, SimCluster, SimNodeFs, SimOptions};
use gproc::tree::Tree;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------
// What a tree under test is, and how to reach it
// ---------------------------------------------------------------------

/// A byte stream to a 9P server.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type Io = Box<dyn Stream>;
type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// Opens a fresh connection (not yet version-negotiated).
type Connect = Box<dyn Fn() -> BoxFut<Io> + Send + Sync>;

/// A server under test.
struct Target {
    name: &'static str,
    dialects: Vec<Dialect>,
    connect: Connect,
    /// `Tattach` arguments.
    uname: &'static str,
    aname: String,
    n_uname: u32,
    spec: Spec,
    /// Check name -> why this server is known to fail it.
    deviations: &'static [(&'static str, &'static str)],
    /// Kept alive while the target is (children, temp dirs, clusters).
    _guards: Vec<Box<dyn std::any::Any + Send>>,
}

/// The paths of a tree the checks use.
struct Spec {
    /// Directories whose listings and entries are checked: the root ("")
    /// first, then at least one directory below it.
    dirs: Vec<String>,
    symlinks: Vec<Link>,
    /// A file larger than one message at msize 4096 + IOHDRSZ.
    big_file: String,
    /// Its contents when known; else the client's read at a large msize
    /// is the reference (the file must be stable from open to open).
    big_expected: Option<Vec<u8>>,
    vanish: Vanish,
}

/// A symbolic link and what it must say.
struct Link {
    path: String,
    target: LinkTarget,
    /// A name inside the target when the target is a directory: walking
    /// `path/child` must stop at the link, not follow it.
    child: Option<&'static str>,
}

enum LinkTarget {
    /// This exact target.
    Exact(String),
    /// A name in the link's directory that is a directory (`self` -> pid).
    SiblingDir,
}

/// How an entry of the tree is made to vanish.
enum Vanish {
    /// A child process this test starts and kills (the agent over /proc).
    Kill,
    /// A file created in `disk` (the directory `tree` of the tree) and
    /// removed again.
    Remove { disk: PathBuf, tree: String },
    /// The simulator's churn: wait until a process listed in `dir` exits.
    Churn { dir: String },
}

fn peer() -> Peer {
    Peer {
        addr: "conformance".into(),
        uid: None,
        gid: None,
    }
}

/// Connections served in-process by the real session over a duplex pipe.
fn in_process<F: Filesystem>(fs: Arc<F>) -> Connect {
    Box::new(move || {
        let fs = fs.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(1 << 20);
            tokio::spawn(serve_connection(
                fs,
                server,
                peer(),
                // The pipe has no peer credentials: the claim is believed,
                // as on a trusted network.
                SessionLimits {
                    access: gproc::server::AccessPolicy::believing_claims(),
                    ..SessionLimits::default()
                },
                CancellationToken::new(),
            ));
            Box::new(client) as Io
        })
    })
}

fn tcp(addr: String) -> Connect {
    Box::new(move || {
        let addr = addr.clone();
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            Box::new(s) as Io
        })
    })
}

const ALL: [Dialect; 3] = [Dialect::P2000, Dialect::P2000u, Dialect::P2000L];

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn comps(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A child that is killed when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A sleeping child with a large, fixed environment: its
/// `/proc/PID/environ` is a stable file of about 20 KB.
fn big_env_child() -> Kid {
    let big: String = (0..20_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    Kid(Command::new("sleep")
        .arg("600")
        .env_clear()
        .env("CONFORMANCE_BIG", big)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sleep"))
}

/// The directory tree the agent (over a temp dir) and diod serve.
fn make_tree(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("target.txt"), "hello\n").unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(dir.join("big"), &big).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/a"), "a\n").unwrap();
    for i in 0..30 {
        std::fs::write(dir.join(format!("sub/file-with-a-longer-name-{i:02}")), "x").unwrap();
    }
    std::os::unix::fs::symlink("target.txt", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("sub", dir.join("dirlink")).unwrap();
    big
}

fn tree_spec(dir: &Path, big: Vec<u8>) -> Spec {
    Spec {
        dirs: vec![String::new(), "sub".into()],
        symlinks: vec![
            Link {
                path: "link".into(),
                target: LinkTarget::Exact("target.txt".into()),
                child: None,
            },
            Link {
                path: "dirlink".into(),
                target: LinkTarget::Exact("sub".into()),
                child: Some("a"),
            },
        ],
        big_file: "big".into(),
        big_expected: Some(big),
        vanish: Vanish::Remove {
            disk: dir.join("sub"),
            tree: "sub".into(),
        },
    }
}

// ---------------------------------------------------------------------
// Constructors of the trees under test. After a change of the
// `Filesystem` trait or of `AttachRequest`, only these should need edits.
// ---------------------------------------------------------------------

/// The agent over this machine's /proc.
fn agent_proc() -> Target {
    let fs = Arc::new(ProcFs::new("/proc").expect("/proc is readable"));
    let kid = big_env_child();
    let environ = format!("{}/environ", kid.0.id());
    let expected = std::fs::read(format!("/proc/{environ}")).unwrap();
    Target {
        name: "agent /proc",
        dialects: ALL.to_vec(),
        connect: in_process(fs),
        uname: "root",
        aname: "/proc".into(),
        n_uname: 0,
        spec: Spec {
            dirs: vec![String::new(), "1".into()],
            symlinks: vec![Link {
                // The agent runs in this process: its /proc/self is us.
                path: "self".into(),
                target: LinkTarget::Exact(std::process::id().to_string()),
                child: Some("status"),
            }],
            big_file: environ,
            big_expected: Some(expected),
            vanish: Vanish::Kill,
        },
        deviations: &[],
        _guards: vec![Box::new(kid)],
    }
}

/// The agent over a temporary directory tree (real files and symlinks).
fn agent_dir() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let big = make_tree(dir.path());
    let fs = Arc::new(ProcFs::new(dir.path()).unwrap());
    Target {
        name: "agent dir",
        dialects: ALL.to_vec(),
        connect: in_process(fs),
        uname: "root",
        aname: String::new(),
        n_uname: 0,
        spec: tree_spec(dir.path(), big),
        deviations: &[],
        _guards: vec![Box::new(dir)],
    }
}

/// Churn fast enough that a process exits within a second or two, and
/// slow enough that a short command lives long enough to be walked to (on
/// a node above its process target every event after a start is an exit).
const CHURN_PER_MIN: f64 = 600.0;

/// The simulated node of `sim` with the most interactive shells: churn
/// ends the short commands shells start, so that node sees exits soonest.
fn busiest_node(sim: &Arc<Sim>) -> usize {
    (0..sim.len())
        .max_by_key(|&i| {
            let s = SimNodeFs::new(sim.clone(), i).summary();
            s.procs
                .iter()
                .filter(|p| p.comm.decode() == &b"bash"[..])
                .count()
        })
        .unwrap_or(0)
}

/// One simulated node with churn and a huge `maps` file.
fn sim_node() -> Target {
    let sim = Arc::new(
        Sim::new(SimOptions {
            nodes: 8,
            churn_per_min: CHURN_PER_MIN,
            huge: 1.0,
            huge_bytes: 100_000,
            ..SimOptions::default()
        })
        .unwrap(),
    );
    let i = busiest_node(&sim);
    let big = sim.huge_path(i).expect("every node is a huge node");
    let fs = Arc::new(SimNodeFs::new(sim, i));
    Target {
        name: "sim node",
        dialects: ALL.to_vec(),
        connect: in_process(fs),
        uname: "root",
        aname: "/proc".into(),
        n_uname: 0,
        spec: Spec {
            dirs: vec![String::new(), "1".into()],
            symlinks: vec![Link {
                path: "self".into(),
                target: LinkTarget::SiblingDir,
                child: Some("status"),
            }],
            big_file: big.trim_start_matches('/').to_string(),
            big_expected: None,
            vanish: Vanish::Churn { dir: String::new() },
        },
        deviations: &[],
        _guards: vec![],
    }
}

/// The aggregator's tree over three simulated nodes on loopback, without
/// caching (a cached listing keeps a vanished process for its TTL, by
/// design).
async fn aggregator_tree() -> Target {
    let cluster = SimCluster::start(SimOptions {
        nodes: 3,
        churn_per_min: CHURN_PER_MIN,
        huge: 0.34,
        huge_bytes: 100_000,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 11, 0, 1),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let specs: Vec<NodeSpec> = cluster
        .nodes()
        .iter()
        .map(|n| NodeSpec {
            name: n.name.clone(),
            address: n.address(),
            aname: "/proc".into(),
            uname: "root".into(),
            uid: 0,
            dialect: None,
            munge: false,
        })
        .collect();
    let pool = Pool::new(
        specs,
        PoolOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            ..PoolOptions::default()
        },
    );
    let policy = CachePolicy {
        default_ttl: Ttl::Never,
        rules: vec![],
        ..CachePolicy::default()
    };
    let tree = Tree::new(
        pool,
        Cache::new(policy),
        Duration::from_secs(5),
        gproc::view::Views::off(),
    );
    let node0 = cluster.nodes()[busiest_node(cluster.sim())].name.clone();
    let huge = cluster
        .nodes()
        .iter()
        .find_map(|n| n.huge_path.as_ref().map(|p| format!("{}{p}", n.name)))
        .expect("one huge node");
    Target {
        name: "aggregator tree",
        dialects: ALL.to_vec(),
        connect: in_process(Arc::new(tree)),
        uname: "root",
        aname: String::new(),
        n_uname: 0,
        spec: Spec {
            dirs: vec![String::new(), node0.clone(), format!("{node0}/1")],
            symlinks: vec![Link {
                path: format!("{node0}/self"),
                target: LinkTarget::SiblingDir,
                child: Some("status"),
            }],
            big_file: huge,
            big_expected: None,
            vanish: Vanish::Churn { dir: node0 },
        },
        deviations: &[],
        _guards: vec![Box::new(cluster)],
    }
}

/// What diod, serving an ordinary directory, does differently from our
/// /proc-like trees.
const DIOD_DEVIATIONS: &[(&str, &str)] = &[
    (
        "dotdot_root",
        "diod walks `..` of the export root to the host directory above it \
         (walk(5): `..` of the root is the root)",
    ),
    (
        "enoent_vanished",
        "diod binds newfid to the last file reached by a partial walk \
         (walk(5): newfid stays unbound unless every name is walked)",
    ),
    (
        "msize_clamp",
        "diod answers EIO to a Tread whose count exceeds msize - IOHDRSZ \
         instead of clamping the count",
    ),
    (
        "file_version0_len0",
        "diod exports an ordinary directory: files report their real size (the \
         length-0 rule is gproc's /proc convention, not a 9P rule)",
    ),
];

/// diod exporting a temporary directory on loopback, or `None` (after a
/// loud skip message) when diod is not installed.
fn diod() -> Option<Target> {
    let bin = ["/usr/sbin/diod", "/usr/bin/diod"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if !crate::common::require("diod", bin.is_some()) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let big = make_tree(dir.path());
    let port = crate::common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(bin?)
        .args(["-f", "-n", "-l", &listen, "-e"])
        .arg(dir.path())
        .args(["-L", "stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn diod");
    let kid = Kid(child);
    crate::common::wait_for_port(&listen);
    let spec = tree_spec(dir.path(), big);
    Some(Target {
        name: "diod",
        dialects: vec![Dialect::P2000L],
        connect: tcp(listen),
        uname: "root",
        aname: dir.path().to_string_lossy().into_owned(),
        n_uname: 0,
        spec,
        deviations: DIOD_DEVIATIONS,
        // The child is dropped (killed) before the directory is removed.
        _guards: vec![Box::new(kid), Box::new(dir)],
    })
}

// ---------------------------------------------------------------------
// Raw 9P: frames encoded and decoded with gproc::proto
// ---------------------------------------------------------------------

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

struct Raw {
    io: Io,
    d: Dialect,
    msize: u32,
    tag: u16,
}

/// The errno of an error reply (9P2000 carries only the string).
fn err_of(m: &Rmessage) -> Option<u32> {
    match m {
        Rmessage::Lerror(e) => Some(e.ecode),
        Rmessage::Error(e) if e.errno != 0 => Some(e.errno),
        Rmessage::Error(e) => Some(errno::from_string(&e.ename)),
        _ => None,
    }
}

fn show(m: &Rmessage) -> String {
    match err_of(m) {
        Some(e) => format!("error {e} ({})", errno::to_string(e)),
        None => format!("{m:?}").chars().take(200).collect(),
    }
}

impl Raw {
    /// Connects, negotiates `d` at `msize` and attaches fid 1.
    async fn open(t: &Target, d: Dialect, msize: u32) -> Result<(Raw, Qid), String> {
        let io = (t.connect)().await;
        let mut r = Raw {
            io,
            d,
            msize,
            tag: 0,
        };
        let v = r
            .call_tag(
                proto::NOTAG,
                Tmessage::Version(proto::Tversion {
                    msize,
                    version: d.version_string().into(),
                }),
            )
            .await?;
        let Rmessage::Version(v) = v else {
            return Err(format!("Tversion answered {}", show(&v)));
        };
        ensure!(
            v.version == d.version_string(),
            "asked {d}, got {:?}",
            v.version
        );
        ensure!(
            v.msize <= msize,
            "msize {} above the {msize} asked",
            v.msize
        );
        r.msize = v.msize;
        let a = r
            .call(Tmessage::Attach(proto::Tattach {
                fid: 1,
                afid: NOFID,
                uname: t.uname.into(),
                aname: t.aname.clone(),
                n_uname: t.n_uname,
            }))
            .await?;
        let Rmessage::Attach(a) = a else {
            return Err(format!("Tattach answered {}", show(&a)));
        };
        Ok((r, a.qid))
    }

    async fn call(&mut self, m: Tmessage) -> Result<Rmessage, String> {
        self.tag = (self.tag + 1) % 1000;
        self.call_tag(self.tag, m).await
    }

    async fn call_tag(&mut self, tag: u16, m: Tmessage) -> Result<Rmessage, String> {
        let b = Frame { tag, msg: m }
            .to_bytes(self.d)
            .map_err(|e| e.to_string())?;
        self.io.write_all(&b).await.map_err(|e| e.to_string())?;
        let read = async {
            let mut hdr = [0u8; 4];
            self.io.read_exact(&mut hdr).await?;
            let n = u32::from_le_bytes(hdr) as usize;
            let mut buf = BytesMut::zeroed(n.max(4));
            buf[..4].copy_from_slice(&hdr);
            self.io.read_exact(&mut buf[4..]).await?;
            Ok::<_, std::io::Error>(buf.freeze())
        };
        let buf = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .map_err(|_| "no reply within 30 s".to_string())?
            .map_err(|e| format!("connection: {e}"))?;
        ensure!(
            buf.len() <= self.msize as usize,
            "reply of {} bytes exceeds msize {}",
            buf.len(),
            self.msize
        );
        let f = Frame::<Rmessage>::decode(buf, self.d).map_err(|e| e.to_string())?;
        ensure!(f.tag == tag, "reply tag {} for request tag {tag}", f.tag);
        Ok(f.msg)
    }

    async fn walk(&mut self, fid: u32, newfid: u32, names: &[String]) -> Result<Rmessage, String> {
        self.call(Tmessage::Walk(proto::Twalk {
            fid,
            newfid,
            wnames: names.to_vec(),
        }))
        .await
    }

    /// A walk that must reach every name; the qids.
    async fn walk_all(
        &mut self,
        fid: u32,
        newfid: u32,
        names: &[String],
    ) -> Result<Vec<Qid>, String> {
        match self.walk(fid, newfid, names).await? {
            Rmessage::Walk(w) if w.wqids.len() == names.len() => Ok(w.wqids),
            m => Err(format!("walk {names:?}: {}", show(&m))),
        }
    }

    /// Whether a walk from the root to `path` fails now.
    async fn is_gone(&mut self, path: &str) -> Result<bool, String> {
        let names = comps(path);
        match self.walk(1, 95, &names).await? {
            Rmessage::Walk(w) if w.wqids.len() == names.len() => {
                self.clunk(95).await?;
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    async fn clunk(&mut self, fid: u32) -> Result<Rmessage, String> {
        self.call(Tmessage::Clunk(proto::Tclunk { fid })).await
    }

    /// The qid from `Tgetattr` (.L) or `Tstat`; `Err(errno)` if refused.
    async fn attr(&mut self, fid: u32) -> Result<Result<Qid, u32>, String> {
        let m = if self.d == Dialect::P2000L {
            self.call(Tmessage::Getattr(proto::Tgetattr {
                fid,
                request_mask: proto::getattr::BASIC,
            }))
            .await?
        } else {
            self.call(Tmessage::Stat(proto::Tstat { fid })).await?
        };
        Ok(match m {
            Rmessage::Getattr(g) => Ok(g.attr.qid),
            Rmessage::Stat(s) => Ok(s.stat.qid),
            m => Err(err_of(&m).ok_or_else(|| format!("stat answered {}", show(&m)))?),
        })
    }

    async fn qid_of(&mut self, fid: u32) -> Result<Qid, String> {
        match self.attr(fid).await? {
            Ok(q) => Ok(q),
            Err(e) => Err(format!("getattr of fid {fid}: errno {e}")),
        }
    }

    /// Opens for reading; the iounit. `Err(errno)` if refused.
    async fn open_read(&mut self, fid: u32) -> Result<Result<u32, u32>, String> {
        let m = if self.d == Dialect::P2000L {
            self.call(Tmessage::Lopen(proto::Tlopen { fid, flags: 0 }))
                .await?
        } else {
            self.call(Tmessage::Open(proto::Topen {
                fid,
                mode: proto::om::READ,
            }))
            .await?
        };
        Ok(match m {
            Rmessage::Lopen(o) => Ok(o.iounit),
            Rmessage::Open(o) => Ok(o.iounit),
            m => Err(err_of(&m).ok_or_else(|| format!("open answered {}", show(&m)))?),
        })
    }

    async fn read(&mut self, fid: u32, offset: u64, count: u32) -> Result<Bytes, String> {
        match self
            .call(Tmessage::Read(proto::Tread { fid, offset, count }))
            .await?
        {
            Rmessage::Read(r) => Ok(r.data),
            m => Err(format!("read at {offset} ({count}): {}", show(&m))),
        }
    }

    async fn readdir(
        &mut self,
        fid: u32,
        offset: u64,
        count: u32,
    ) -> Result<Vec<DirEntry>, String> {
        match self
            .call(Tmessage::Readdir(proto::Treaddir { fid, offset, count }))
            .await?
        {
            Rmessage::Readdir(r) => {
                ensure!(
                    r.data.len() <= count as usize,
                    "readdir of {count} bytes answered {}",
                    r.data.len()
                );
                DirEntry::decode_all(r.data).map_err(|e| format!("readdir entries: {e}"))
            }
            m => Err(format!(
                "readdir at cookie {offset} ({count}): {}",
                show(&m)
            )),
        }
    }

    /// Every entry from `cookie` on, reading `count` bytes at a time.
    async fn readdir_from(
        &mut self,
        fid: u32,
        mut cookie: u64,
        count: u32,
    ) -> Result<Vec<DirEntry>, String> {
        let mut out = Vec::new();
        loop {
            let ents = self.readdir(fid, cookie, count).await?;
            let Some(last) = ents.last() else {
                return Ok(out);
            };
            ensure!(out.len() < 100_000, "directory never ends");
            cookie = last.offset;
            out.extend(ents);
        }
    }

    /// A 9P2000/.u directory read at consecutive offsets from 0: every
    /// reply must be whole stat records.
    async fn dir_read(&mut self, fid: u32, count: u32) -> Result<Vec<Stat>, String> {
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let data = self.read(fid, offset, count).await?;
            if data.is_empty() {
                return Ok(out);
            }
            ensure!(
                data.len() <= count as usize,
                "directory read of {count} bytes answered {}",
                data.len()
            );
            let n = data.len();
            let recs = Stat::decode_dir(self.d, data).map_err(|e| {
                format!("read at {offset} ({count}) is not whole stat records: {e}")
            })?;
            let sum: usize = recs.iter().map(|s| s.size(self.d)).sum();
            ensure!(sum == n, "stat records of {sum} bytes in a {n}-byte reply");
            offset += n as u64;
            ensure!(out.len() < 100_000, "directory never ends");
            out.extend(recs);
        }
    }
}

// ---------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------

const CHECKS: [&str; 9] = [
    "walk_self",
    "dotdot_root",
    "readdir_cookies",
    "qid_unique_stable",
    "file_version0_len0",
    "symlinks",
    "enoent_vanished",
    "msize_reads",
    "msize_clamp",
];

async fn client(t: &Target, d: Dialect) -> Result<(Client, FidHandle), String> {
    let io = (t.connect)().await;
    let opts = ClientOptions {
        dialect: Some(d),
        munge: false,
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    let c = Client::handshake(io, t.name, opts)
        .await
        .map_err(|e| e.to_string())?;
    ensure!(
        c.dialect() == d,
        "negotiated {} instead of {d}",
        c.dialect()
    );
    let root = c
        .attach(t.uname, &t.aname, Some(t.n_uname))
        .await
        .map_err(|e| e.to_string())?;
    Ok((c, root))
}

async fn run(check: &str, t: &Target, d: Dialect) -> Check {
    match check {
        "walk_self" => walk_self(t, d).await,
        "dotdot_root" => dotdot_root(t, d).await,
        "readdir_cookies" if d == Dialect::P2000L => readdir_cookies_l(t, d).await,
        "readdir_cookies" => readdir_records(t, d).await,
        "qid_unique_stable" => qid_unique_stable(t, d).await,
        "file_version0_len0" => file_version0_len0(t, d).await,
        "symlinks" => symlinks(t, d).await,
        "enoent_vanished" => enoent_vanished(t, d).await,
        "msize_reads" => msize_reads(t, d).await,
        "msize_clamp" => msize_clamp(t, d).await,
        _ => Err(format!("no check named {check}")),
    }
}

/// The first directory below the root in the spec.
fn subdir(t: &Target) -> Vec<String> {
    comps(&t.spec.dirs[1])
}

/// `Twalk` with no names clones the fid (walk(5)), into a new fid or in
/// place; the clone has the same qid.
async fn walk_self(t: &Target, d: Dialect) -> Check {
    let (mut r, root) = Raw::open(t, d, 65536).await?;
    let q = r.walk_all(1, 2, &[]).await?;
    ensure!(q.is_empty(), "a walk of no names returned {} qids", q.len());
    let c = r.qid_of(2).await?;
    ensure!(c == root, "clone of the root has qid {c:?}, root {root:?}");
    r.walk_all(1, 1, &[]).await?;
    ensure!(
        r.qid_of(1).await? == root,
        "in-place clone changed the root"
    );
    let sub = subdir(t);
    let q = r.walk_all(1, 3, &sub).await?;
    let want = *q.last().ok_or("empty subdir path")?;
    ensure!(r.walk_all(3, 4, &[]).await?.is_empty(), "clone of {sub:?}");
    let got = r.qid_of(4).await?;
    ensure!(
        got == want,
        "clone of {sub:?} has qid {got:?}, walk gave {want:?}"
    );
    // The client's empty walk is the same clone.
    let (_c, h) = client(t, d).await?;
    let again = h.walk("").await.map_err(|e| e.to_string())?;
    ensure!(again.qid() == h.qid(), "client clone: {:?}", again.qid());
    Ok(())
}

/// `..` of the root is the root (walk(5)); `..` of a directory below it
/// is the root again.
async fn dotdot_root(t: &Target, d: Dialect) -> Check {
    let (mut r, root) = Raw::open(t, d, 65536).await?;
    let dd = vec!["..".to_string()];
    let q = r.walk_all(1, 2, &dd).await?;
    ensure!(q[0] == root, "/.. has qid {:?}, / has {root:?}", q[0]);
    ensure!(
        r.qid_of(2).await? == root,
        "fid walked to /.. is not the root"
    );
    let q = r.walk_all(1, 3, &["..".into(), "..".into()]).await?;
    ensure!(q == vec![root, root], "/../.. gave {q:?}");
    let sub = subdir(t);
    let first = vec![sub[0].clone()];
    let q1 = r.walk_all(1, 4, &first).await?;
    let q = r.walk_all(1, 5, &[sub[0].clone(), "..".into()]).await?;
    ensure!(
        q[1] == root,
        "/{}/.. has qid {:?}, / has {root:?}",
        sub[0],
        q[1]
    );
    let q = r.walk_all(1, 6, &["..".into(), sub[0].clone()]).await?;
    ensure!(q[1] == q1[0], "/../{} differs from /{}", sub[0], sub[0]);
    Ok(())
}

fn max_entry(ents: &[DirEntry]) -> u32 {
    ents.iter().map(|e| e.size() as u32).max().unwrap_or(64)
}

/// 9P2000.L: a listing read in small chunks equals the listing read in
/// large ones; resuming from any entry's cookie gives exactly the entries
/// after it; no duplicate names or cookies.
async fn readdir_cookies_l(t: &Target, d: Dialect) -> Check {
    let (mut r, _) = Raw::open(t, d, 65536).await?;
    for (i, dir) in t.spec.dirs.iter().enumerate() {
        let fid = 10 + i as u32;
        r.walk_all(1, fid, &comps(dir)).await?;
        r.open_read(fid)
            .await?
            .map_err(|e| format!("open /{dir}: errno {e}"))?;
        let big = r.msize - IOHDRSZ;
        let all = r.readdir_from(fid, 0, big).await?;
        ensure!(all.len() > 2, "/{dir} lists only {} entries", all.len());
        let mut names = HashSet::new();
        let mut cookies = HashSet::new();
        for e in &all {
            ensure!(names.insert(&e.name), "/{dir}: {:?} listed twice", e.name);
            ensure!(
                cookies.insert(e.offset),
                "/{dir}: cookie {} given twice",
                e.offset
            );
        }
        let m = max_entry(&all);
        for count in [m, m * 3 / 2 + 7] {
            let chunked = r.readdir_from(fid, 0, count).await?;
            ensure!(
                chunked == all,
                "/{dir} read {count} bytes at a time differs from one read: {} vs {} entries",
                chunked.len(),
                all.len()
            );
        }
        for (k, e) in all.iter().enumerate() {
            let rest = r.readdir_from(fid, e.offset, big).await?;
            ensure!(
                rest[..] == all[k + 1..],
                "/{dir}: resuming after {:?} (cookie {}) gave {} entries, not the {} after it",
                e.name,
                e.offset,
                rest.len(),
                all.len() - k - 1
            );
        }
        r.clunk(fid).await?;
    }
    Ok(())
}

/// 9P2000/.u: directory reads at consecutive offsets with small counts
/// return whole stat records and the same listing as large reads, without
/// `.` and `..` and without duplicates.
async fn readdir_records(t: &Target, d: Dialect) -> Check {
    let (mut r, _) = Raw::open(t, d, 65536).await?;
    for (i, dir) in t.spec.dirs.iter().enumerate() {
        let fid = 10 + i as u32;
        r.walk_all(1, fid, &comps(dir)).await?;
        r.open_read(fid)
            .await?
            .map_err(|e| format!("open /{dir}: errno {e}"))?;
        let all = r.dir_read(fid, r.msize - IOHDRSZ).await?;
        ensure!(all.len() > 1, "/{dir} lists only {} entries", all.len());
        let mut names = HashSet::new();
        for s in &all {
            ensure!(s.name != "." && s.name != "..", "/{dir} lists {:?}", s.name);
            ensure!(names.insert(&s.name), "/{dir}: {:?} listed twice", s.name);
        }
        let m = all.iter().map(|s| s.size(d) as u32).max().unwrap_or(64);
        for count in [m, m * 3 / 2 + 7] {
            // Offset 0 rewinds the same open directory.
            let small = r.dir_read(fid, count).await?;
            let key = |v: &[Stat]| {
                v.iter()
                    .map(|s| (s.name.clone(), s.qid))
                    .collect::<Vec<_>>()
            };
            // Stat records are made at read time: a process that exited
            // since the open has none. Any other difference is a fault.
            let (small, all) = (key(&small), key(&all));
            let mut rest = all.iter();
            for e in &small {
                ensure!(
                    rest.any(|a| a == e),
                    "/{dir} read {count} bytes at a time gave {:?} out of order or not in one read",
                    e.0
                );
            }
            let seen: HashSet<_> = small.iter().collect();
            for e in all.iter().filter(|e| !seen.contains(e)) {
                ensure!(
                    r.is_gone(&join(dir, &e.0)).await?,
                    "/{dir} read {count} bytes at a time lacks {:?}, which still exists",
                    e.0
                );
            }
        }
        r.clunk(fid).await?;
    }
    Ok(())
}

/// Walks every entry of the spec's directories (at most `limit` each);
/// returns (path, listed qid, walked qid) and how many vanished meanwhile.
async fn walk_entries(
    root: &FidHandle,
    t: &Target,
    limit: usize,
) -> Result<(Vec<(String, FileKind, Qid, Qid)>, usize), String> {
    let mut out = Vec::new();
    let mut gone = 0;
    for dir in &t.spec.dirs {
        let ents = root.read_dir(dir).await.map_err(|e| e.to_string())?;
        for e in ents.into_iter().take(limit) {
            let path = join(dir, &e.name);
            match root.walk(&path).await {
                Ok(h) => out.push((path, e.kind, e.qid, h.qid())),
                Err(err) if err.errno() == errno::ENOENT => gone += 1,
                Err(err) => return Err(format!("walk {path}: {err}")),
            }
        }
    }
    Ok((out, gone))
}

/// Distinct files have distinct qid.path across the walked subset; a walk
/// gives the qid the listing gave; walking the same path again gives the
/// same qid.
async fn qid_unique_stable(t: &Target, d: Dialect) -> Check {
    let (_c, root) = client(t, d).await?;
    let (walked, gone) = walk_entries(&root, t, 300).await?;
    let ok = walked.len();
    ensure!(ok > gone, "{gone} of {} entries vanished", ok + gone);
    let mut by_path: HashMap<u64, String> = HashMap::new();
    by_path.insert(root.qid().path, "/".into());
    for (path, _, listed, q) in &walked {
        ensure!(
            (listed.path, listed.ty) == (q.path, q.ty),
            "{path}: listed with qid {listed:?}, walked to {q:?}"
        );
        if let Ok(h) = root.walk(path).await {
            ensure!(
                h.qid() == *q,
                "{path}: walked twice, qids {q:?} and {:?}",
                h.qid()
            );
        }
        if let Some(other) = by_path.insert(q.path, path.clone())
            && other != *path
        {
            return Err(format!("{other} and {path} share qid.path {:#x}", q.path));
        }
    }
    Ok(())
}

/// Files report `qid.version` 0 and length 0 (they are read whole at
/// open, so their size is unknown and v9fs must not cache by version).
async fn file_version0_len0(t: &Target, d: Dialect) -> Check {
    let (_c, root) = client(t, d).await?;
    let (walked, _) = walk_entries(&root, t, 300).await?;
    let mut checked = 0;
    for (path, kind, _, q) in walked.iter().filter(|w| w.1 == FileKind::File).take(60) {
        let m = match root.metadata(path).await {
            Ok(m) => m,
            Err(e) if e.errno() == errno::ENOENT => continue,
            Err(e) => return Err(format!("{path}: {e}")),
        };
        // 9P2000 reports anything that is not a directory as a file.
        if d != Dialect::P2000 || m.kind() == FileKind::File {
            ensure!(
                m.kind() == *kind,
                "{path}: listed as {kind:?}, stat says {:?}",
                m.kind()
            );
        }
        ensure!(q.version == 0, "{path}: walk qid.version {}", q.version);
        ensure!(
            m.qid.version == 0,
            "{path}: stat qid.version {}",
            m.qid.version
        );
        ensure!(m.size == 0, "{path}: length {}", m.size);
        checked += 1;
    }
    ensure!(checked > 0, "no regular file to check");
    Ok(())
}

fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// Symlinks are links: the walk stops at the link (its own qid, not the
/// target's), readlink gives the target, the mode is S_IFLNK, and in .u
/// and .L a walk through the link does not follow it. 9P2000 has no
/// symlinks: there only the qid is checked (and walking *through* an
/// in-tree link follows it, by design, so 9P2000 clients can use `self`).
async fn symlinks(t: &Target, d: Dialect) -> Check {
    let (_c, root) = client(t, d).await?;
    let (mut r, _) = Raw::open(t, d, 65536).await?;
    for l in &t.spec.symlinks {
        let h = root.walk(&l.path).await.map_err(|e| e.to_string())?;
        let target = match d {
            Dialect::P2000 => None,
            _ => Some(root.readlink(&l.path).await.map_err(|e| e.to_string())?),
        };
        if let Some(got) = &target {
            match &l.target {
                LinkTarget::Exact(want) => {
                    ensure!(got == want, "{}: readlink {got:?}, want {want:?}", l.path)
                }
                LinkTarget::SiblingDir => {
                    let m = root
                        .metadata(&join(&parent(&l.path), got))
                        .await
                        .map_err(|e| format!("{}: target {got:?}: {e}", l.path))?;
                    ensure!(m.is_dir(), "{}: target {got:?} is not a directory", l.path);
                }
            }
            ensure!(
                h.qid().is_symlink(),
                "{}: qid {:?} is not a symlink's",
                l.path,
                h.qid()
            );
            let m = root.metadata(&l.path).await.map_err(|e| e.to_string())?;
            ensure!(
                m.mode & s_if::FMT == s_if::LNK,
                "{}: mode {:o} is not S_IFLNK",
                l.path,
                m.mode
            );
            // Through the link: stops at it.
            if let Some(child) = l.child {
                let mut names = comps(&l.path);
                names.push(child.into());
                match r.walk(1, 50, &names).await? {
                    Rmessage::Walk(w) if w.wqids.len() == names.len() - 1 => {
                        ensure!(
                            w.wqids.last() == Some(&h.qid()),
                            "{}: partial walk qids {:?}",
                            l.path,
                            w.wqids
                        )
                    }
                    m => {
                        r.clunk(50).await?;
                        return Err(format!(
                            "walk {names:?} through a link: {} (want a partial Rwalk stopping at the link)",
                            show(&m)
                        ));
                    }
                }
            }
        }
        // Not followed: the link's qid is not its target's.
        let tname = match (&l.target, &target) {
            (LinkTarget::Exact(s), _) => Some(s.clone()),
            (LinkTarget::SiblingDir, Some(s)) => Some(s.clone()),
            _ => None,
        };
        if let Some(tn) = tname.filter(|s| !s.starts_with('/')) {
            let tq = root
                .walk(&join(&parent(&l.path), &tn))
                .await
                .map_err(|e| format!("{}: target {tn:?}: {e}", l.path))?
                .qid();
            ensure!(
                tq != h.qid(),
                "{}: walk followed the link to {tn:?}",
                l.path
            );
        }
    }
    Ok(())
}

/// Gets candidates (paths that exist now) and then makes one vanish.
struct Vanishing {
    candidates: Vec<String>,
    kid: Option<Kid>,
    file: Option<PathBuf>,
}

impl Vanish {
    async fn prepare(&self, root: &FidHandle) -> Result<Vanishing, String> {
        let mut v = Vanishing {
            candidates: vec![],
            kid: None,
            file: None,
        };
        match self {
            Vanish::Kill => {
                let kid = Kid(Command::new("sleep").arg("60").spawn().unwrap());
                v.candidates.push(kid.0.id().to_string());
                v.kid = Some(kid);
            }
            Vanish::Remove { disk, tree } => {
                let name = "victim";
                std::fs::write(disk.join(name), "gone soon").unwrap();
                v.file = Some(disk.join(name));
                v.candidates.push(join(tree, name));
            }
            Vanish::Churn { dir } => {
                let ents = root.read_dir(dir).await.map_err(|e| e.to_string())?;
                v.candidates = ents
                    .iter()
                    .filter(|e| e.name.bytes().all(|b| b.is_ascii_digit()) && e.name != "1")
                    .map(|e| join(dir, &e.name))
                    .collect();
                // Newest first: short commands are the ones that exit, and
                // they are the newest processes.
                v.candidates.sort_by_key(|c| {
                    std::cmp::Reverse(c.rsplit('/').next().and_then(|p| p.parse::<u32>().ok()))
                });
            }
        }
        Ok(v)
    }

    /// Makes a candidate vanish; its index.
    async fn vanish(
        &self,
        v: &mut Vanishing,
        root: &FidHandle,
        held: &[bool],
    ) -> Result<usize, String> {
        match self {
            Vanish::Kill => {
                if let Some(mut k) = v.kid.take() {
                    k.0.kill().unwrap();
                    k.0.wait().unwrap();
                }
                Ok(0)
            }
            Vanish::Remove { .. } => {
                if let Some(f) = v.file.take() {
                    std::fs::remove_file(f).unwrap();
                }
                Ok(0)
            }
            Vanish::Churn { dir } => {
                for _ in 0..50 {
                    let ents = root.read_dir(dir).await.map_err(|e| e.to_string())?;
                    let now: HashSet<String> = ents.iter().map(|e| join(dir, &e.name)).collect();
                    if let Some(i) = (0..v.candidates.len())
                        .find(|&i| held[i] && !now.contains(&v.candidates[i]))
                    {
                        return Ok(i);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(format!(
                    "no held process of {dir:?} exited within 5 s of churn"
                ))
            }
        }
    }
}

/// ENOENT for vanished entries: a walk to one fails with ENOENT (an error
/// on the first name; a partial Rwalk, newfid unbound, on a later one); a
/// fid held on it answers getattr and open with ENOENT. Walking a name that
/// never existed behaves the same.
async fn enoent_vanished(t: &Target, d: Dialect) -> Check {
    // Watching for the vanished entry is the harness's business: .L lists
    // without a stat per entry, which matters for the uncached tree.
    let (_c, root) = client(t, Dialect::P2000L).await?;
    let (mut r, _) = Raw::open(t, d, 65536).await?;
    // Churn ends only the short commands, which may live a fraction of a
    // second: a round that holds none of the ones that exit is tried again.
    let mut attempt = 0u32;
    let (gone, fid) = loop {
        attempt += 1;
        let base = 1000 * attempt;
        let mut v = t.spec.vanish.prepare(&root).await?;
        ensure!(!v.candidates.is_empty(), "nothing that could vanish");
        let mut held = Vec::new();
        for (i, c) in v.candidates.iter().enumerate() {
            held.push(r.walk_all(1, base + i as u32, &comps(c)).await.is_ok());
        }
        match t.spec.vanish.vanish(&mut v, &root, &held).await {
            Ok(i) => break (v.candidates[i].clone(), base + i as u32),
            Err(e) if attempt >= 6 => return Err(format!("{e} ({attempt} rounds)")),
            Err(_) => {
                for (i, h) in held.iter().enumerate() {
                    if *h {
                        r.clunk(base + i as u32).await?;
                    }
                }
            }
        }
    };
    let names = comps(&gone);
    // A fresh walk.
    let m = r.walk(1, 90, &names).await?;
    match (&m, names.len()) {
        (m, 1) => ensure!(err_of(m) == Some(errno::ENOENT), "walk {gone}: {}", show(m)),
        (Rmessage::Walk(w), n) => {
            ensure!(
                w.wqids.len() == n - 1,
                "walk {gone}: {} qids for {n} names",
                w.wqids.len()
            );
            if let Ok(q) = r.attr(90).await? {
                return Err(format!(
                    "the partial walk to {gone} bound newfid (to {q:?})"
                ));
            }
        }
        (m, _) => return Err(format!("walk {gone}: {} (want a partial Rwalk)", show(m))),
    }
    // The fid held on it.
    match r.attr(fid).await? {
        Err(e) => ensure!(e == errno::ENOENT, "getattr of vanished {gone}: errno {e}"),
        Ok(q) => return Err(format!("getattr of vanished {gone} succeeded: {q:?}")),
    }
    match r.open_read(fid).await? {
        Err(e) => ensure!(e == errno::ENOENT, "open of vanished {gone}: errno {e}"),
        Ok(_) => return Err(format!("open of vanished {gone} succeeded")),
    }
    // A name that never existed, first and after a directory.
    let m = r.walk(1, 91, &["no-such-entry".into()]).await?;
    ensure!(
        err_of(&m) == Some(errno::ENOENT),
        "walk /no-such-entry: {}",
        show(&m)
    );
    let mut names = subdir(t);
    names.push("no-such-entry".into());
    match r.walk(1, 92, &names).await? {
        Rmessage::Walk(w) => {
            ensure!(
                w.wqids.len() == names.len() - 1,
                "walk {names:?}: {} qids",
                w.wqids.len()
            );
            if let Ok(q) = r.attr(92).await? {
                return Err(format!(
                    "the partial walk {names:?} bound newfid (to {q:?})"
                ));
            }
        }
        m => {
            return Err(format!(
                "walk {names:?}: {} (want a partial Rwalk)",
                show(&m)
            ));
        }
    }
    Ok(())
}

/// With msize 4096 + IOHDRSZ, reads of a larger file with the largest
/// count a client may ask (msize - IOHDRSZ) return at most that many bytes
/// per Rread, and the pieces make up the whole file.
async fn msize_reads(t: &Target, d: Dialect) -> Check {
    read_small_msize(t, d, None).await
}

/// As [`msize_reads`], but asking for more than fits in a message (64 KiB
/// at msize 4120): the server must clamp the count, not fail or overflow.
async fn msize_clamp(t: &Target, d: Dialect) -> Check {
    read_small_msize(t, d, Some(65536)).await
}

async fn read_small_msize(t: &Target, d: Dialect, count: Option<u32>) -> Check {
    let msize = 4096 + IOHDRSZ;
    let (mut r, _) = Raw::open(t, d, msize).await?;
    let max = (r.msize - IOHDRSZ) as usize;
    let count = count.unwrap_or(max as u32);
    let path = &t.spec.big_file;
    r.walk_all(1, 2, &comps(path)).await?;
    let iounit = r
        .open_read(2)
        .await?
        .map_err(|e| format!("open {path}: errno {e}"))?;
    ensure!(
        iounit as usize <= max,
        "iounit {iounit} above msize - IOHDRSZ {max}"
    );
    let mut data = Vec::new();
    let mut replies = 0;
    loop {
        let b = r.read(2, data.len() as u64, count).await?;
        ensure!(
            b.len() <= max,
            "Rread of {} bytes at msize {}",
            b.len(),
            r.msize
        );
        if b.is_empty() {
            break;
        }
        replies += 1;
        ensure!(data.len() < 64 << 20, "{path} never ends");
        data.extend_from_slice(&b);
    }
    ensure!(
        replies > 1,
        "{path} ({} bytes) fits one message: no test",
        data.len()
    );
    let want = match &t.spec.big_expected {
        Some(w) => w.clone(),
        None => {
            let (_c, root) = client(t, d).await?;
            root.read_all(path)
                .await
                .map_err(|e| e.to_string())?
                .to_vec()
        }
    };
    ensure!(
        data == want,
        "{path}: {} bytes read in {replies} pieces differ from the {} bytes of the file",
        data.len(),
        want.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------
// Running and reporting
// ---------------------------------------------------------------------

/// Runs every check in every dialect of `t`, prints the table, and fails
/// on an unlisted failure or a listed deviation that no longer holds.
async fn conformance(t: Target) {
    let mut rows: BTreeMap<(usize, String), String> = BTreeMap::new();
    let mut bad = Vec::new();
    for (ci, check) in CHECKS.iter().enumerate() {
        for &d in &t.dialects {
            let res = tokio::time::timeout(Duration::from_secs(120), run(check, &t, d))
                .await
                .unwrap_or_else(|_| Err("timed out after 120 s".into()));
            let why = t
                .deviations
                .iter()
                .find(|(c, _)| c == check)
                .map(|(_, w)| *w);
            let cell = match (res, why) {
                (Ok(()), None) => "pass".to_string(),
                (Err(e), Some(w)) => format!("deviation ({w}): {e}"),
                (Ok(()), Some(w)) => {
                    bad.push(format!(
                        "{check} {d}: listed as a deviation ({w}) but passes"
                    ));
                    "UNEXPECTED PASS".to_string()
                }
                (Err(e), None) => {
                    bad.push(format!("{check} {d}: {e}"));
                    format!("FAIL: {e}")
                }
            };
            rows.insert((ci, d.to_string()), cell);
        }
    }
    // One print, so tables of tests running side by side do not mix.
    let mut table = format!("\n== conformance: {} ==\n", t.name);
    for ((ci, d), cell) in &rows {
        table.push_str(&format!("{:<20} {:<9} {cell}\n", CHECKS[*ci], d));
    }
    println!("{table}");
    assert!(
        bad.is_empty(),
        "{}: {} failures:\n{}",
        t.name,
        bad.len(),
        bad.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_over_proc() {
    conformance(agent_proc()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_over_a_directory() {
    conformance(agent_dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_node() {
    conformance(sim_node()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_tree_over_simulated_nodes() {
    conformance(aggregator_tree().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diod_reference() {
    let Some(t) = diod() else { return };
    conformance(t).await;
}

/// The deviation tables name real checks.
#[test]
fn deviation_tables_name_checks() {
    for (c, _) in DIOD_DEVIATIONS {
        assert!(CHECKS.contains(c), "{c} is not a check");
    }
}

//! The differential test of issue 12 at the agent: with two real test
//! users made here, what user t1 gets from `/proc` locally (read by a
//! process of t1's, see [`read_as_t1`]) must equal what t1 gets through
//! the agent, (a) connecting to its Unix socket as t1 and (b) named in
//! `Tattach` by root over the Unix socket (how the aggregator and v9fs
//! `access=client` come): the same outcome
//! (data, or the kernel's errno), the same bytes where the file is stable,
//! and never more data than the local read.
//!
//! Targets, stopped with SIGSTOP during the comparison: t1's own process,
//! t2's, root's, a setuid-root program t1 started, a process with t1's
//! effective uid and root's real and saved uid, and kthreadd (a kernel
//! thread, which cannot be stopped: outcomes only).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gproc::client::{Client, ClientOptions, FidHandle, OpenMode};
use gproc::net::Address;
use gproc::proto::errno;

use crate::common::*;

pub(crate) const T1: &str = "gproc-t1";
pub(crate) const T2: &str = "gproc-t2";

/// Node-wide files compared by outcome only (data vs errno), because
/// their content moves by itself between two reads.
const MOVING: &[&str] = &[
    "interrupts",
    "stat",
    "uptime",
    "loadavg",
    "meminfo",
    "schedstat",
    "sched_debug",
    "timer_list",
    "softirqs",
    "vmstat",
    "zoneinfo",
    "slabinfo",
    "buddyinfo",
    "pagetypeinfo",
    "diskstats",
    "vmallocinfo",
    "locks",
    "cgroups",
    "key-users",
    "keys",
    "lock_stat",
    "latency_stats",
    "allocinfo",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "sys/kernel/random/uuid",
];

/// Files read only as a prefix: huge (kcore is the size of memory,
/// pagemap 8 bytes per page of the address space).
const PREFIX: &[&str] = &["kcore", "pagemap"];

/// Files never read: reading `kmsg` consumes the kernel log (and the
/// agent refuses it to everyone).
const SKIPPED: &[&str] = &["kmsg"];

/// Per-process files whose content moves even while the process is
/// stopped: scheduler clocks (`sched`, `schedstat`, `stat`, `status`),
/// and counts of pages shared with other processes, which come and go
/// (`smaps`, `smaps_rollup`, `numa_maps`: mapmax, Shared_*, Pss), and
/// x86's `arch_status` (milliseconds since the task last used AVX-512,
/// on CPUs that have it).
const MOVING_PID: &[&str] = &[
    "arch_status",
    "sched",
    "schedstat",
    "timers",
    "stat",
    "status",
    "smaps",
    "smaps_rollup",
    "numa_maps",
];

/// One read's result: the bytes (or sorted names of a directory, or a
/// link's target), or the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    Data(Vec<u8>),
    Err(u32),
}

impl Out {
    pub(crate) fn errno(e: &std::io::Error) -> Out {
        let n = e.raw_os_error().unwrap_or(libc::EIO) as u32;
        Out::Err(if n == errno::ESRCH { errno::ENOENT } else { n })
    }
    fn same_outcome(&self, o: &Out) -> bool {
        match (self, o) {
            (Out::Data(_), Out::Data(_)) => true,
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    File,
    Dir,
    Link,
}

/// Makes (or reuses) a test user; its uid.
fn user(name: &str) -> u32 {
    test_user(name).0
}

fn as_user(name: &str, prog: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        name,
        "--regid",
        name,
        "--init-groups",
        "--",
        prog,
    ]);
    c
}

fn stop(pid: u32, sig: i32) {
    // SAFETY: kill with a pid and signal number touches no memory.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// What to compare: paths under /proc with their kind (from root's lstat).
fn entries(dir: &str, out: &mut Vec<(String, Kind)>) {
    let Ok(rd) = std::fs::read_dir(Path::new("/proc").join(dir)) else {
        return;
    };
    let mut v: Vec<_> = rd.flatten().collect();
    v.sort_by_key(|e| e.file_name());
    for e in v {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(ft) = e.file_type() else { continue };
        let rel = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let kind = if ft.is_symlink() {
            Kind::Link
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        out.push((rel, kind));
    }
}

fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn limit_of(p: &str) -> usize {
    if PREFIX.contains(&base_name(p)) {
        65536
    } else {
        gproc::agent::MAX_FILE_BYTES
    }
}

/// The interpreter for [`READER`]: a system one, which t1 may run (a
/// version manager's shims may live in root's home).
const PYTHON: &str = "/usr/bin/python3";

/// Run as t1 (a real process of t1's, so the kernel sees t1's real,
/// effective and file system ids alike): reads each `KIND LIMIT PATH`
/// line of stdin below argv[1] with the agent's flags (no following, no
/// blocking, at most LIMIT bytes; a directory's sorted names; a link's
/// target) and writes `D LEN\n` and the bytes, or `E ERRNO\n`.
const READER: &str = r#"
import os, sys
root, out = sys.argv[1], sys.stdout.buffer
for line in sys.stdin:
    kind, limit, path = line.rstrip("\n").split(" ", 2)
    p = os.path.join(root, path)
    try:
        if kind == "l":
            data = os.fsencode(os.readlink(p))
        elif kind == "d":
            data = "\n".join(sorted(os.listdir(p))).encode()
        else:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                left, parts = int(limit), []
                while left > 0:
                    b = os.read(fd, min(left, 1 << 20))
                    if not b:
                        break
                    parts.append(b)
                    left -= len(b)
                data = b"".join(parts)
            finally:
                os.close(fd)
        out.write(b"D %d\n" % len(data))
        out.write(data)
    except OSError as e:
        out.write(b"E %d\n" % e.errno)
out.flush()
"#;

/// Reads `items` (at `prefix` below `root`) with [`READER`] run by
/// `run` (a command that runs its arguments as t1): one outcome per item.
pub(crate) fn read_as_t1(
    mut run: Command,
    root: &Path,
    prefix: &str,
    items: &[(String, Kind, bool, bool)],
) -> Vec<Out> {
    use std::io::{Read, Write};
    let mut list = String::new();
    for (p, k, ..) in items {
        let kind = match k {
            Kind::File => "f",
            Kind::Dir => "d",
            Kind::Link => "l",
        };
        list.push_str(&format!("{kind} {} {prefix}{p}\n", limit_of(p)));
    }
    let mut reader = run
        .args([PYTHON, "-c", READER])
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = reader.stdin.take().unwrap();
    let feed = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let mut out = Vec::new();
    reader.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let done = reader.wait_with_output().unwrap();
    feed.join().unwrap().unwrap();
    assert!(
        done.status.success(),
        "the reader as t1: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mut rest = &out[..];
    let mut v = Vec::with_capacity(items.len());
    while !rest.is_empty() {
        let nl = rest.iter().position(|b| *b == b'\n').unwrap();
        let head = String::from_utf8_lossy(&rest[..nl]).to_string();
        rest = &rest[nl + 1..];
        let (tag, num) = head.split_once(' ').unwrap();
        let num: usize = num.parse().unwrap();
        match tag {
            "D" => {
                v.push(Out::Data(rest[..num].to_vec()));
                rest = &rest[num..];
            }
            "E" => v.push(Out::errno(&std::io::Error::from_raw_os_error(num as i32))),
            _ => panic!("reader: {head:?}"),
        }
    }
    assert_eq!(v.len(), items.len(), "the reader answered every path");
    v
}

/// The same read through a 9P attach.
async fn remote(root: &FidHandle, p: &str, kind: Kind) -> Out {
    let r = async {
        match kind {
            Kind::Link => root.readlink(p).await.map(String::into_bytes),
            Kind::Dir => root.read_dir(p).await.map(|v| {
                let names: BTreeSet<String> = v
                    .into_iter()
                    .map(|e| e.name)
                    .filter(|n| n != "." && n != "..")
                    .collect();
                names
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes()
            }),
            Kind::File => {
                let mut f = root.walk(p).await?;
                f.open(OpenMode::Read).await?;
                let limit = limit_of(p);
                if limit < gproc::agent::MAX_FILE_BYTES {
                    f.read_at(0, limit as u32).await.map(|b| b.to_vec())
                } else {
                    f.read_to_end(limit as u64 + 1).await.map(|b| b.to_vec())
                }
            }
        }
    }
    .await;
    match r {
        Ok(d) => Out::Data(d),
        Err(e) => Out::Err(e.errno()),
    }
}

/// Compares p's local outcome `l` with `b`, what t1 got `way` (the
/// agent, a mount...); returns a description of any mismatch.
fn compare(p: &str, stable: bool, way: &str, l: &Out, b: &Out) -> Option<String> {
    let prefix = PREFIX.contains(&base_name(p));
    let ok = match (l, b) {
        (Out::Data(x), Out::Data(y)) if prefix => {
            let n = x.len().min(y.len()).min(4096);
            x[..n] == y[..n]
        }
        _ if stable => l == b,
        _ => l.same_outcome(b),
    };
    (!ok).then(|| format!("{p}: local {} / {way} {}", short(l), short(b)))
}

/// An outcome in a mismatch's description: the errno, or the length and
/// the first bytes.
fn short(o: &Out) -> String {
    match o {
        Out::Data(d) => format!(
            "{} bytes {:?}",
            d.len(),
            String::from_utf8_lossy(&d[..d.len().min(80)])
        ),
        Out::Err(e) => format!("errno {e}"),
    }
}

pub(crate) struct Users {
    pub(crate) t1: u32,
}

pub(crate) fn setup() -> Option<Users> {
    let root = rustix::process::geteuid().is_root();
    if !require("root (to make test users and act as them)", root) {
        return None;
    }
    if !require("useradd and setpriv", have("useradd") && have("setpriv")) {
        return None;
    }
    if !require("/usr/bin/python3 (reads as the test user)", have(PYTHON)) {
        return None;
    }
    let t1 = user(T1);
    user(T2);
    Some(Users { t1 })
}

/// Starts the agent binary on a Unix socket in `dir` with `extra` args.
fn agent(dir: &Path, name: &str, extra: &[&str]) -> (Proc, PathBuf) {
    let sock = dir.join(name);
    let child = Command::new(gproc())
        .args(["agent", "--listen"])
        .arg(format!("unix:{}", sock.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    (p, sock)
}

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// A process to compare, and whether t1's view shows it (real or
/// effective uid t1).
pub(crate) struct Target {
    label: &'static str,
    pid: u32,
    stoppable: bool,
    t1s: bool,
}

/// The targets (stopped), the paths to compare, and t1's local reads of
/// them, made once for every way through gproc.
pub(crate) struct Fixture {
    procs: Vec<Proc>,
    pub(crate) targets: Vec<Target>,
    /// (path under /proc, kind, stable, visible in t1's view).
    pub(crate) items: Vec<(String, Kind, bool, bool)>,
    pub(crate) locals: Vec<Out>,
    setuid: Option<u32>,
    mixed: Option<u32>,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for p in &self.procs {
            stop(p.0.id(), libc::SIGCONT);
        }
    }
}

pub(crate) async fn fixture(u: &Users) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut procs = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    let t = |label, pid, stoppable, t1s| Target {
        label,
        pid,
        stoppable,
        t1s,
    };

    let own = Proc(as_user(T1, "sleep").arg("120").spawn().unwrap());
    let other = Proc(as_user(T2, "sleep").arg("120").spawn().unwrap());
    let rootp = Proc(Command::new("sleep").arg("120").spawn().unwrap());
    // Not before setpriv has switched ids and exec'd sleep (stopped in
    // between, "t1's own" would stay root's setpriv).
    for p in [&own, &other] {
        let pid = p.0.id();
        wait_for("the test users' sleeps", || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        });
    }
    targets.push(t("t1's own", own.0.id(), true, true));
    targets.push(t("t2's", other.0.id(), true, false));
    targets.push(t("root's", rootp.0.id(), true, false));
    procs.extend([own, other, rootp]);

    // A setuid-root program t1 started: a copy of sleep, setuid in a
    // directory of a file system mounted without nosuid.
    let suid = dir.path().join("suid-sleep");
    std::fs::copy("/bin/sleep", &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let s = Proc(
        as_user(T1, suid.to_str().unwrap())
            .arg("120")
            .spawn()
            .unwrap(),
    );
    let spid = s.0.id();
    // setpriv runs as t1 before it execs the setuid program.
    let setuid_ids = vec![u.t1, 0, 0];
    let mut tries = 0;
    while uids(spid) != setuid_ids && tries < 100 {
        std::thread::sleep(Duration::from_millis(50));
        tries += 1;
    }
    let setuid = (uids(spid) == setuid_ids).then_some(spid);
    if setuid.is_some() {
        targets.push(t("setuid-root started by t1", spid, true, true));
    } else {
        eprintln!(
            "!!! SKIPPED case: the setuid copy of sleep did not run setuid (uids {:?}; nosuid?) !!!",
            uids(spid)
        );
    }
    procs.push(s);

    // t1's effective uid, root's real and saved uid.
    let mixed = if have("python3") {
        let p = Proc(
            Command::new("python3")
                .args([
                    "-c",
                    &format!(
                        "import os,time; os.setresuid(0, {}, 0); time.sleep(120)",
                        u.t1
                    ),
                ])
                .spawn()
                .unwrap(),
        );
        let pid = p.0.id();
        wait_for("the setresuid process", || uids(pid) == vec![0, u.t1, 0]);
        targets.push(t("euid t1, ruid/suid root", pid, true, true));
        procs.push(p);
        Some(pid)
    } else {
        require("python3 (for the setresuid case)", false);
        None
    };
    // A kernel thread: cannot be stopped, so outcomes only.
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        targets.push(t("kthreadd", 2, false, false));
    }
    for p in &procs {
        stop(p.0.id(), libc::SIGSTOP);
    }
    for p in &procs {
        let pid = p.0.id();
        wait_for("the target to stop", || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('T'))
            })
        });
    }

    // What to compare.
    let mut items: Vec<(String, Kind, bool, bool)> = Vec::new();
    for tg in &targets {
        let pid = tg.pid;
        let mut v = Vec::new();
        entries(&pid.to_string(), &mut v);
        entries(&format!("{pid}/task/{pid}"), &mut v);
        for (p, k) in v {
            let stable = tg.stoppable && !MOVING_PID.contains(&base_name(&p));
            items.push((p, k, stable, tg.t1s));
        }
    }
    let mut node = Vec::new();
    entries("", &mut node);
    for (p, k) in node {
        if p.as_bytes()[0].is_ascii_digit() || k == Kind::Dir || SKIPPED.contains(&p.as_str()) {
            continue;
        }
        let stable = !MOVING.contains(&p.as_str()) && k != Kind::Link;
        items.push((p, k, stable, true));
    }
    // Root-only (0600) sysctls among them: /proc/sys checks the
    // effective uid, not the file system uid.
    for p in [
        "sys/net/ipv4/tcp_fastopen_key",
        "sys/kernel/cad_pid",
        "sys/vm/mmap_rnd_bits",
        "sys/net/ipv6/conf/lo/stable_secret",
        "sys/kernel/random/boot_id",
        "sys/kernel/random/uuid",
        "sys/kernel/kptr_restrict",
        "sys/vm/drop_caches",
    ] {
        if Path::new("/proc").join(p).exists() {
            let stable = !MOVING.contains(&p);
            items.push((p.to_string(), Kind::File, stable, true));
        }
    }

    for tg in &targets {
        eprintln!("target {}: pid {}", tg.label, tg.pid);
    }
    // Local reads by a process of t1's: not a thread of this (root)
    // process with switched credentials, whose effective uid would still
    // be root's (the kernel checks /proc/sys by effective uid).
    let mut run = Command::new("setpriv");
    run.args(["--reuid", T1, "--regid", T1, "--init-groups", "--"]);
    let locals = read_as_t1(run, Path::new("/proc"), "", &items);
    Fixture {
        procs,
        targets,
        items,
        locals,
        setuid,
        mixed,
        _dir: dir,
    }
}

/// Reads every item through `root` (at `prefix`: `""` on an agent,
/// `"n1/"` through the aggregator) and returns the mismatches with t1's
/// local reads (see [`judge`]).
async fn differ(root: &FidHandle, prefix: &str, fx: &Fixture, views: bool) -> Vec<String> {
    let mut rows = Vec::new();
    for (i, (p, k, ..)) in fx.items.iter().enumerate() {
        let b = remote(root, &format!("{prefix}{p}"), *k).await;
        rows.push((i, fx.locals[i].clone(), b));
    }
    judge(fx, &format!("9P at {prefix:?}"), views, &rows)
}

/// The rules of the differential, for rows (index into `fx.items`, t1's
/// local outcome, what t1 got `way`): the same outcome, the same bytes
/// where the file is stable, never data where the local read was
/// refused. `views`: a process outside t1's view must not exist (ENOENT),
/// as the aggregator's views say; without, the kernel decides alone.
/// Returns the mismatches.
pub(crate) fn judge(
    fx: &Fixture,
    way: &str,
    views: bool,
    rows: &[(usize, Out, Out)],
) -> Vec<String> {
    let mut mismatches = Vec::new();
    let mut counts = (0usize, 0usize, 0usize, 0usize);
    for (i, l, b) in rows {
        let (p, _, stable, visible) = &fx.items[*i];
        if views && !visible {
            counts.3 += 1;
            if *b != Out::Err(errno::ENOENT) {
                mismatches.push(format!("{p}: outside t1's view, yet {way} {}", short(b)));
            }
            continue;
        }
        if let Some(m) = compare(p, *stable, way, l, b) {
            mismatches.push(m);
        }
        // Never more than the local read.
        if let (Out::Err(_), Out::Data(_)) = (l, b) {
            mismatches.push(format!("{p}: data {way}, refused locally"));
        }
        match l {
            Out::Data(_) => counts.0 += 1,
            Out::Err(e) if *e == errno::EACCES || *e == errno::EPERM => counts.1 += 1,
            Out::Err(_) => counts.2 += 1,
        }
    }
    eprintln!(
        "compared {} paths as {T1} {way}: {} data, {} refused, {} other errors, {} outside the view",
        rows.len(),
        counts.0,
        counts.1,
        counts.2,
        counts.3
    );
    mismatches
}

/// Fails the test with every mismatch, if any.
pub(crate) fn assert_none(mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// An agent and an aggregator over it whose views make t1 a non-admin
/// allotted node n1 (root the only admin), in a temporary directory.
pub(crate) struct N1 {
    /// The aggregator's TCP listener.
    pub(crate) port: Port,
    /// The aggregator's 0666 Unix socket.
    pub(crate) sock: PathBuf,
    _servers: (Proc, Proc),
    /// Holds the sockets; scratch space for the test.
    pub(crate) dir: tempfile::TempDir,
}

/// The configuration of an aggregator listening on `port` and on
/// `agg_sock` (0666), whose one node n1 is the agent on `agent_sock` and
/// whose views make t1 a non-admin allotted n1; `server` adds lines to
/// its `[server]` section.
fn n1_config(port: &Port, agg_sock: &Path, agent_sock: &Path, server: &str) -> String {
    format!(
        "[server]\nlisten = [\"{}\", \"unix:{}\"]\nsocket_mode = \"0666\"\n{server}\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[views.allot]]\nuser = \"{T1}\"\nnodes = \"n1\"\n",
        port.addr(),
        agg_sock.display(),
        agent_sock.display()
    )
}

/// Starts [`N1`]; `server` adds lines to the aggregator's `[server]`.
pub(crate) fn n1_aggregator(server: &str) -> N1 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (agent, sock) = agent(dir.path(), "agent.sock", &[]);
    let agg_sock = dir.path().join("agg.sock");
    let port = Port::new();
    let cfg = n1_config(&port, &agg_sock, &sock, server);
    let agg = start_aggregator(dir.path(), &cfg, &port);
    N1 {
        port,
        sock: agg_sock,
        _servers: (agent, agg),
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_gives_a_user_what_the_node_gives_them() {
    let Some(u) = setup() else { return };
    let fx = fixture(&u).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let targets = &fx.targets;
    // The agent: a 0666 socket so t1 can connect, root its service user.
    let (_agent, sock) = agent(dir.path(), "agent.sock", &["--socket-mode", "0666"]);
    let addr = Address::Unix(sock.clone());

    // (b) root names t1 in Tattach over the Unix socket.
    let c = Client::connect(&addr, opts()).await.unwrap();
    let named = c.attach(T1, "", Some(u.t1)).await.unwrap();
    assert_none(&differ(&named, "", &fx, false).await);

    // The findings of issue 12, each a regression.
    let find = |p: &str| {
        fx.items
            .iter()
            .position(|(q, ..)| q == p)
            .map(|i| fx.locals[i].clone())
    };
    // 2: root-only node files.
    if let Some(o) = find("timer_list") {
        assert_eq!(o, Out::Err(errno::EACCES), "timer_list is root's");
        assert_eq!(remote(&named, "timer_list", Kind::File).await, o);
    }
    if let Some(Out::Data(ks)) = find("kallsyms") {
        let through = remote(&named, "kallsyms", Kind::File).await;
        let Out::Data(through) = through else {
            panic!("kallsyms: {through:?}")
        };
        let first = String::from_utf8_lossy(&through[..through.len().min(200)]).to_string();
        assert!(
            first.starts_with("0000000000000000 "),
            "kallsyms addresses are zeroed for the user: {first}"
        );
        assert_eq!(ks, through);
    }
    // 3: ptrace rules: the setuid program's and the mixed-uid process's
    // environ/maps/auxv are refused, as locally.
    for pid in fx.setuid.into_iter().chain(fx.mixed) {
        for f in ["environ", "maps", "auxv"] {
            let p = format!("{pid}/{f}");
            let got = remote(&named, &p, Kind::File).await;
            assert!(
                matches!(got, Out::Err(e) if e == errno::EACCES || e == errno::EPERM),
                "{p}: {got:?}"
            );
        }
    }
    // The service identity still reads everything (the fast path).
    let as_root = c.attach("root", "", Some(0)).await.unwrap();
    let env = format!("{}/environ", targets[1].pid);
    assert!(matches!(
        remote(&as_root, &env, Kind::File).await,
        Out::Data(_)
    ));
    assert_eq!(
        remote(&named, &env, Kind::File).await,
        Out::Err(errno::EACCES),
        "t2's environ is not t1's"
    );

    // (a) t1 connects to the socket itself (SO_PEERCRED): a sample, each
    // also read locally by `cat` as t1, independent of gproc's own code.
    let mut sample: Vec<String> = ["timer_list", "kallsyms", "version", "modules"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for Target { pid, stoppable, .. } in targets {
        if *stoppable {
            for f in [
                "environ", "maps", "auxv", "cmdline", "syscall", "stack", "io",
            ] {
                sample.push(format!("{pid}/{f}"));
            }
        }
    }
    for p in &sample {
        let local = as_user(T1, "cat")
            .arg(Path::new("/proc").join(p))
            .output()
            .unwrap();
        let via = as_user(T1, gproc().to_str().unwrap())
            .args(["cat", "--server"])
            .arg(format!("unix:{}", sock.display()))
            .arg(p)
            .output()
            .unwrap();
        assert_eq!(
            local.status.success(),
            via.status.success(),
            "{p}: cat as t1 {:?} / gproc cat as t1 {:?} {}",
            local.status,
            via.status,
            String::from_utf8_lossy(&via.stderr)
        );
        if local.status.success() {
            assert_eq!(local.stdout, via.stdout, "{p}: bytes differ");
        } else {
            let e = String::from_utf8_lossy(&via.stderr).to_lowercase();
            let l = String::from_utf8_lossy(&local.stderr).to_lowercase();
            assert!(via.stdout.is_empty(), "{p}: no data after a refusal");
            let denied = |s: &str| {
                s.contains("permission denied")
                    || s.contains("eacces")
                    || s.contains("not permitted")
            };
            assert_eq!(denied(&l), denied(&e), "{p}: local {l} / agent {e}");
        }
    }
}

/// The same differential through the aggregator: t1 (allotted the node,
/// not an administrator) reads through the aggregator's Unix socket,
/// named by root in `Tattach` as v9fs `access=client` does; the
/// aggregator reads the agent as t1. Processes outside t1's view do not
/// exist; everything else is what t1 gets locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_gives_a_user_what_the_node_gives_them() {
    let Some(u) = setup() else { return };
    let fx = fixture(&u).await;
    let n1 = n1_aggregator("");
    let c = Client::connect(&Address::Unix(n1.sock.clone()), opts())
        .await
        .unwrap();
    let named = c.attach(T1, "", Some(u.t1)).await.unwrap();
    assert_none(&differ(&named, "n1/", &fx, true).await);
    // The administrator reads through the service identity: another
    // user's environ, which t1 is refused.
    let admin = c.attach("root", "", Some(0)).await.unwrap();
    let env = format!("n1/{}/environ", fx.targets[1].pid);
    assert!(matches!(
        remote(&admin, &env, Kind::File).await,
        Out::Data(_)
    ));
    let own = format!("n1/{}/environ", fx.setuid.unwrap_or(fx.targets[0].pid));
    let (a, t) = (
        remote(&admin, &own, Kind::File).await,
        remote(&named, &own, Kind::File).await,
    );
    assert!(matches!(a, Out::Data(_)), "{a:?}");
    if fx.setuid.is_some() {
        // Cached for the administrator, yet refused to t1: what one
        // identity read is never served to another.
        assert!(
            matches!(t, Out::Err(e) if e == errno::EACCES || e == errno::EPERM),
            "{t:?}"
        );
    }
}

/// The process's start time (clock ticks after boot), for its pinned
/// name `<pid>.<start>`.
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
    gproc::format::summary::stat_start_ticks(&stat).unwrap()
}

/// A pinned name (`<pid>.<start>`, which agents resolve and which an
/// aggregator above walks by) is judged as the pid is: a process outside
/// t1's view is ENOENT by either name, at one level and through two.
async fn pinned_names_follow_the_view(root: &FidHandle, fx: &Fixture) {
    for t in &fx.targets {
        let name = format!("{}.{}", t.pid, start_ticks(t.pid));
        let by_pin = remote(root, &format!("n1/{name}/status"), Kind::File).await;
        let by_pid = remote(root, &format!("n1/{}/status", t.pid), Kind::File).await;
        if t.t1s {
            assert!(
                matches!(by_pin, Out::Data(_)),
                "{}: {by_pin:?} {:?}",
                t.label,
                root.read_all(&format!("n1/{name}/status")).await
            );
        } else {
            assert_eq!(
                by_pin,
                Out::Err(errno::ENOENT),
                "{} by pinned name",
                t.label
            );
            assert_eq!(by_pid, Out::Err(errno::ENOENT), "{} by pid", t.label);
        }
        // A start time that is not the process's names nothing.
        let wrong = format!("n1/{}.{}/status", t.pid, start_ticks(t.pid) + 1);
        assert_eq!(
            remote(root, &wrong, Kind::File).await,
            Out::Err(errno::ENOENT),
            "{}",
            t.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_name_is_no_way_around_a_view() {
    let Some(u) = setup() else { return };
    let fx = fixture(&u).await;
    let n1 = n1_aggregator("");
    let c = Client::connect(&Address::Unix(n1.sock.clone()), opts())
        .await
        .unwrap();
    let named = c.attach(T1, "", Some(u.t1)).await.unwrap();
    pinned_names_follow_the_view(&named, &fx).await;
}

/// The differential through two levels (issue 14): a top aggregator whose
/// one node is a rack aggregator over the agent, each level allotting t1
/// node n1. t1, named by root at the top, reads every file as they would
/// locally (the top reads the rack as t1, the rack the agent as t1, so the
/// node's kernel decides), processes outside t1's view do not exist at the
/// top, and nothing of the lower level is readable raw: not its merged
/// summary, not its tables as a directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_levels_give_a_user_what_the_node_gives_them() {
    let Some(u) = setup() else { return };
    let fx = fixture(&u).await;
    let rack = n1_aggregator("name = \"rack1\"\n");
    let top_dir = rack.dir.path().join("top");
    std::fs::create_dir(&top_dir).unwrap();
    std::fs::set_permissions(&top_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let top_sock = top_dir.join("top.sock");
    let port = Port::new();
    let cfg = format!(
        "[server]\nlisten = [\"{}\", \"unix:{}\"]\nsocket_mode = \"0666\"\nname = \"top\"\n\n\
         [[nodes]]\nnames = \"rack1\"\naddress = \"unix:{}\"\naname = \"\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[views.allot]]\nuser = \"{T1}\"\nnodes = \"n1\"\n",
        port.addr(),
        top_sock.display(),
        rack.sock.display()
    );
    let _top = start_aggregator(&top_dir, &cfg, &port);
    let c = Client::connect(&Address::Unix(top_sock), opts())
        .await
        .unwrap();
    let named = c.attach(T1, "", Some(u.t1)).await.unwrap();
    assert_none(&differ(&named, "n1/", &fx, true).await);
    pinned_names_follow_the_view(&named, &fx).await;
    for p in [
        ".gproc/ps",
        ".gproc",
        "rack1",
        "rack1/ps",
        "n1/.gproc/ps",
        "stats",
    ] {
        assert_eq!(
            remote(&named, p, Kind::File).await,
            Out::Err(errno::ENOENT),
            "{p} exists for t1 at the top"
        );
    }
    // t1's /ps at the top: their own processes on n1, nobody else's.
    let ps = named.read_all("ps").await.unwrap();
    let ps = gproc::format::table::Table::<gproc::format::table::PsRow>::parse(
        &String::from_utf8_lossy(&ps),
    )
    .unwrap();
    assert!(ps.rows.iter().all(|r| r.node == "n1"), "{:?}", ps.rows);
    for t in fx.targets.iter().filter(|t| !t.t1s) {
        assert!(
            ps.rows.iter().all(|r| r.pid as u32 != t.pid),
            "{} is in t1's /ps",
            t.label
        );
    }
    for t in fx.targets.iter().filter(|t| t.t1s) {
        assert!(
            ps.rows.iter().any(|r| r.pid as u32 == t.pid),
            "{} missing from t1's /ps",
            t.label
        );
    }
    // The administrator reads through the service identity at both levels.
    let admin = c.attach("root", "", Some(0)).await.unwrap();
    let env = format!("n1/{}/environ", fx.targets[1].pid);
    assert!(matches!(
        remote(&admin, &env, Kind::File).await,
        Out::Data(_)
    ));
    assert_eq!(
        remote(&named, &env, Kind::File).await,
        Out::Err(errno::ENOENT)
    );
}

/// Finding 5: the agent's socket is 0600 by default (another user cannot
/// even connect), TCP without an --auth choice is refused at start, and an
/// agent without CAP_SETUID/CAP_SETGID refuses to start as root.
#[test]
fn the_agent_is_safe_by_default() {
    let Some(_u) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_a, sock) = agent(dir.path(), "default.sock", &[]);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let out = as_user(T1, gproc().to_str().unwrap())
        .args(["cat", "--server"])
        .arg(format!("unix:{}", sock.display()))
        .arg("version")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let out = Command::new(gproc())
        .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--auth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new("setpriv")
        .args(["--bounding-set=-setuid,-setgid", "--inh-caps=-all", "--"])
        .arg(gproc())
        .arg("agent")
        .arg("--listen")
        .arg(format!("unix:{}", dir.path().join("nocaps.sock").display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("CAP_SETUID") && err.contains("CAP_SETGID"),
        "{err}"
    );
    assert!(!dir.path().join("nocaps.sock").exists());
}

/// An agent run by an ordinary user serves that user only: it cannot
/// switch, so every other identity is refused with EPERM at attach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_agent_serves_only_them() {
    let Some(u) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    rustix::fs::chown(dir.path(), Some(rustix::fs::Uid::from_raw(u.t1)), None).unwrap();
    let sock = dir.path().join("mine.sock");
    let _agent = Proc(
        as_user(T1, gproc().to_str().unwrap())
            .args(["agent", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("t1's agent", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let e = c.attach("root", "", Some(0)).await.unwrap_err();
    assert_eq!(e.errno(), errno::EPERM, "{e}");
    let mine = c.attach(T1, "", Some(u.t1)).await.unwrap();
    assert!(matches!(
        remote(&mine, "version", Kind::File).await,
        Out::Data(_)
    ));
}

/// The agent under exactly the systemd unit's capability bounding set
/// starts, serves root as itself and t1 as t1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_under_its_units_capabilities_switches() {
    let Some(u) = setup() else { return };
    let unit = std::fs::read_to_string(repo().join("deploy/gproc-agent.service")).unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap()
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    assert!(caps.contains(&"setuid".to_string()) && caps.contains(&"setgid".to_string()));
    let bounding = format!(
        "--bounding-set=-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("unit.sock");
    let child = Command::new("setpriv")
        .args([bounding.as_str(), "--inh-caps=-all", "--"])
        .arg(gproc())
        .args(["agent", "--listen"])
        .arg(format!("unix:{}", sock.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Proc(child);
    wait_for("the agent under the unit's set", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    // Its capabilities are the unit's, nothing more.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id())).unwrap();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    let bnd = u64::from_str_radix(bnd, 16).unwrap();
    assert_eq!(bnd.count_ones() as usize, caps.len(), "CapBnd {bnd:x}");

    let sleeper = Proc(as_user(T2, "sleep").arg("60").spawn().unwrap());
    let env = format!("{}/environ", sleeper.0.id());
    wait_for("t2's sleep", || {
        uids(sleeper.0.id()).first() == Some(&user(T2))
    });
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    assert!(
        matches!(remote(&root, &env, Kind::File).await, Out::Data(_)),
        "the service identity reads t2's environ with CAP_SYS_PTRACE"
    );
    assert!(matches!(
        remote(&root, "kallsyms", Kind::File).await,
        Out::Data(_)
    ));
    let t1 = c.attach(T1, "", Some(u.t1)).await.unwrap();
    assert_eq!(
        remote(&t1, &env, Kind::File).await,
        Out::Err(errno::EACCES),
        "t1 is refused t2's environ: the switch took"
    );
    assert_eq!(
        remote(&t1, "timer_list", Kind::File).await,
        Out::Err(errno::EACCES)
    );
    assert!(matches!(
        remote(&t1, "version", Kind::File).await,
        Out::Data(_)
    ));
}

/// Whether munged answers (the test runs `.ci/setup-munge.sh` first).
fn munged_ready() -> bool {
    have("munge")
        && Command::new("sh")
            .args(["-c", "munge -n </dev/null | unmunge >/dev/null"])
            .status()
            .is_ok_and(|s| s.success())
}

/// Finding 7 with a real munged: the aggregator's credentials name the
/// node they are for; an agent refuses one addressed to another name; a
/// node not configured for MUNGE never receives one; over the one
/// MUNGE-proven connection the aggregator still reads as each user; and
/// diod's tools (credentials without a payload) still authenticate as
/// themselves only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn munge_credentials_name_their_node() {
    let Some(u) = setup() else { return };
    if !require("munged (run .ci/setup-munge.sh)", munged_ready()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pa = Port::new();
    let mut cmd = Command::new(gproc());
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    cmd.args(["agent", "--auth", "munge", "--name", "nodeA"])
        .stdout(Stdio::null())
        .stderr(log);
    let _agent = Proc(pa.spawn(&mut cmd, |c, l| {
        c.args(["--listen", l]);
    }));
    wait_for_9p(&pa.addr());

    // The same agent under three names: its own (MUNGE), another
    // (MUNGE, refused), and one configured without MUNGE.
    let pg = Port::new();
    let agg_sock = dir.path().join("agg.sock");
    let cfg = format!(
        "[server]\nlisten = [\"{}\", \"unix:{}\"]\n\n\
         [[nodes]]\nnames = \"nodeA\"\naddress = \"{}\"\naname = \"\"\nauth = \"munge\"\n\n\
         [[nodes]]\nnames = \"nodeB\"\naddress = \"{}\"\naname = \"\"\nauth = \"munge\"\n\n\
         [[nodes]]\nnames = \"plain\"\naddress = \"{}\"\naname = \"\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[views.allot]]\nuser = \"{T1}\"\nnodes = \"nodeA,nodeB,plain\"\n",
        pg.addr(),
        agg_sock.display(),
        pa.addr(),
        pa.addr(),
        pa.addr()
    );
    let _agg = start_aggregator(dir.path(), &cfg, &pg);
    let c = Client::connect(&Address::Unix(agg_sock.clone()), opts())
        .await
        .unwrap();
    let admin = c.attach("root", "", Some(0)).await.unwrap();
    let t1 = c.attach(T1, "", Some(u.t1)).await.unwrap();

    let theirs = Proc(as_user(T2, "sleep").arg("60").spawn().unwrap());
    let mine = Proc(as_user(T1, "sleep").arg("60").spawn().unwrap());
    wait_for("the sleeps", || {
        uids(theirs.0.id()).first() == Some(&user(T2)) && uids(mine.0.id()).first() == Some(&u.t1)
    });
    let env_theirs = format!("nodeA/{}/environ", theirs.0.id());
    let env_mine = format!("nodeA/{}/environ", mine.0.id());
    assert!(matches!(
        remote(&admin, &env_theirs, Kind::File).await,
        Out::Data(_)
    ));
    assert!(matches!(
        remote(&t1, &env_mine, Kind::File).await,
        Out::Data(_)
    ));
    // A root-only file: the administrator's read is root's, t1's is t1's,
    // on one MUNGE-proven connection.
    assert!(matches!(
        remote(&admin, "nodeA/timer_list", Kind::File).await,
        Out::Data(_)
    ));
    assert_eq!(
        remote(&t1, "nodeA/timer_list", Kind::File).await,
        Out::Err(errno::EACCES)
    );

    // nodeB's credential names nodeB: the agent (nodeA) refuses it, and
    // `plain` sends none, so the TCP attach is refused. 9P2000.L carries
    // only the errno; the agent's log says why.
    for n in ["nodeB", "plain"] {
        let got = remote(&admin, &format!("{n}/version"), Kind::File).await;
        assert!(
            matches!(got, Out::Err(e) if e == errno::EPERM || e == errno::EHOSTDOWN),
            "{n}: {got:?}"
        );
    }
    let nodes = admin.read_all("nodes").await.unwrap();
    let nodes = String::from_utf8_lossy(&nodes);
    for n in ["nodeB", "plain"] {
        let row = nodes.lines().find(|l| l.starts_with(n)).unwrap_or_default();
        assert!(
            row.contains("down") && row.contains("permission denied"),
            "{nodes}"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(
        log.contains("credential addressed to \"nodeB\""),
        "the agent says why: {log}"
    );
    assert!(
        log.contains("TCP attach without authentication refused"),
        "{log}"
    );

    // diodcat: a credential without a payload authenticates its own uid.
    if have("diodcat") {
        let cat = |who: &str, path: &str| {
            as_user(who, "diodcat")
                .args(["-s", &pa.addr(), "-a", "", path])
                .output()
                .unwrap()
        };
        let me = cat(T1, &format!("{}/environ", mine.0.id()));
        assert!(
            me.status.success(),
            "{}",
            String::from_utf8_lossy(&me.stderr)
        );
        let other = cat(T1, &format!("{}/environ", theirs.0.id()));
        assert!(!other.status.success() && other.stdout.is_empty());
    } else {
        require("diodcat (run .ci/setup-peers.sh)", false);
    }
}

/// Inside a new pid namespace (so the test can choose pids): the agent
/// (with any further arguments), serving that namespace's /proc on `sock`,
/// and a helper that spawns `sleep` as a given user at a chosen pid and
/// kills it, driven line by line over stdin/stdout.
const PIDNS_HELPER: &str = r#"
import os, subprocess, sys, time
gproc, sock, log = sys.argv[1], sys.argv[2], sys.argv[3]
agent = subprocess.Popen([gproc, "agent", "--listen", "unix:" + sock] + sys.argv[4:],
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"))
procs = {}
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "spawn":
        pid, user, secs = int(cmd[1]), cmd[2], cmd[3]
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        env = dict(os.environ, WHO=cmd[4])
        p = subprocess.Popen(["setpriv", "--reuid", user, "--regid", user,
                              "--init-groups", "sleep", secs], env=env)
        procs[p.pid] = p
        # Not before setpriv has switched ids and exec'd sleep: until then
        # the process is root's, and hidden from the user it is for.
        while True:
            try:
                if open(f"/proc/{p.pid}/comm").read().strip() == "sleep":
                    break
            except OSError:
                pass
            time.sleep(0.005)
        print(p.pid, flush=True)
    elif cmd[0] == "kill":
        p = procs.pop(int(cmd[1]))
        p.kill()
        p.wait()
        print("ok", flush=True)
agent.kill()
"#;

/// The pid-namespace helper ([`PIDNS_HELPER`]) and its agent.
pub(crate) struct PidNs {
    child: Proc,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    /// The agent's socket.
    pub(crate) sock: PathBuf,
}

impl PidNs {
    /// Starts it with its agent's socket and log in `dir` (which the
    /// agent's users must be able to enter), the agent started with
    /// `agent_args`; `None` (skipped loudly) without unshare or python3.
    pub(crate) fn start(dir: &Path, agent_args: &[&str]) -> Option<PidNs> {
        use std::io::BufRead;
        if !require("unshare (util-linux)", have("unshare")) || !require("python3", have("python3"))
        {
            return None;
        }
        let sock = dir.join("ns-agent.sock");
        let log = dir.join("ns-agent.log");
        let mut child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "python3",
                "-c",
                PIDNS_HELPER,
            ])
            .arg(gproc())
            .arg(&sock)
            .arg(&log)
            .args(agent_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready");
        let ns = PidNs {
            child: Proc(child),
            stdin,
            stdout,
            sock,
        };
        wait_for("the namespace's agent", || {
            std::os::unix::net::UnixStream::connect(&ns.sock).is_ok()
        });
        Some(ns)
    }

    /// Sends one command (`spawn PID USER SECONDS TAG`, `kill PID`) and
    /// returns the helper's answer (the new pid, `ok`).
    pub(crate) fn ask(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{line}").unwrap();
        let mut out = String::new();
        self.stdout.read_line(&mut out).unwrap();
        assert!(!out.is_empty(), "the pid-namespace helper died");
        out.trim().to_string()
    }
}

/// Finding 4 and Build item 5: a fid walked to t1's process P, after P
/// exits and t2's new process gets the same pid (chosen with
/// `ns_last_pid` in a pid namespace of the test's own), is ENOENT for
/// every operation, for t1 and for the administrator, through the
/// aggregator: never the new process's data. New processes are reachable
/// by path (Build item 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_never_the_old_fids_process() {
    let Some(u) = setup() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(mut ns) = PidNs::start(dir.path(), &[]) else {
        return;
    };
    let sock = ns.sock.clone();

    let agg_sock = dir.path().join("agg.sock");
    let port = Port::new();
    let cfg = n1_config(&port, &agg_sock, &sock, "");
    let _agg = start_aggregator(dir.path(), &cfg, &port);
    let c = Client::connect(&Address::Unix(agg_sock.clone()), opts())
        .await
        .unwrap();
    let admin = c.attach("root", "", Some(0)).await.unwrap();
    let t1 = c.attach(T1, "", Some(u.t1)).await.unwrap();

    // Warm the summary and both listings of n1's root, so what follows
    // cannot come from a first load.
    admin.read_all("ps").await.unwrap();
    admin.read_dir("n1").await.unwrap();
    t1.read_dir("n1").await.unwrap();
    let pid: u32 = 4000;
    assert_eq!(ns.ask(&format!("spawn {pid} {T1} 1000 A")), pid.to_string());
    // A new process is reachable by path at once, whatever the cached
    // summary and listing say (Build item 6).
    let cmd = t1.read_all(&format!("n1/{pid}/cmdline")).await.unwrap();
    assert_eq!(&cmd[..], b"sleep\x001000\x00");
    let t1_dir = t1.walk(&format!("n1/{pid}")).await.unwrap();
    let t1_cmd = t1.walk(&format!("n1/{pid}/cmdline")).await.unwrap();
    let admin_env = admin.walk(&format!("n1/{pid}/environ")).await.unwrap();
    let alias = admin.walk(&format!("pid/{pid}@n1/cmdline")).await.unwrap();

    // P exits; t2's process takes its pid.
    assert_eq!(ns.ask(&format!("kill {pid}")), "ok");
    assert_eq!(
        ns.ask(&format!("spawn {pid} {T2} 1001 B")),
        pid.to_string(),
        "the pid was reused"
    );
    // Every way back to P: the old process's data while its cached copy
    // is fresh (the cache's contract), then ENOENT; never a byte of the
    // process that reused the pid (its command line says 1001, its
    // environment WHO=B).
    let fids = [
        (t1_cmd, "t1's cmdline fid"),
        (admin_env, "the admin's environ fid"),
        (alias, "the admin's /pid alias fid"),
    ];
    let mut gone = vec![false; fids.len() + 2];
    for _ in 0..100 {
        let mut outcomes = Vec::new();
        for (f, what) in &fids {
            let f = f.walk("").await;
            let r = match f {
                Ok(mut f) => match f.open(OpenMode::Read).await {
                    Ok(()) => f.read_to_end(1 << 20).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            outcomes.push((r, *what));
        }
        outcomes.push((
            t1_dir.read_all("cmdline").await,
            "t1's walk from the old directory fid",
        ));
        outcomes.push((
            t1.read_all(&format!("n1/{pid}/cmdline")).await,
            "t1's fresh walk (t2's process is not in t1's view)",
        ));
        for (i, (r, what)) in outcomes.into_iter().enumerate() {
            match r {
                Ok(b) => {
                    let text = String::from_utf8_lossy(&b);
                    assert!(
                        !text.contains("1001") && !text.contains("WHO=B"),
                        "{what}: read {text:?} of the process that reused the pid"
                    );
                }
                Err(e) => {
                    assert_eq!(e.errno(), errno::ENOENT, "{what}: {e}");
                    gone[i] = true;
                }
            }
        }
        if gone.iter().all(|g| *g) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone.iter().all(|g| *g),
        "ENOENT everywhere once the cached copies expire: {gone:?}"
    );
    // The administrator reaches the new process once the summary shows it.
    let mut seen = None;
    for _ in 0..100 {
        if let Ok(b) = admin.read_all(&format!("n1/{pid}/cmdline")).await {
            seen = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.as_deref(), Some(&b"sleep\x001001\x00"[..]));
    let _ = ns.ask(&format!("kill {pid}"));
    drop(ns.stdin);
    let _ = ns.child.0.wait();
}

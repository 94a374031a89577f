//! `gproc mount` end to end: a real FUSE mount of an agent and of an
//! aggregator, read by unmodified tools (ls, find, cat, grep, readlink,
//! stat, dd, procps ps), compared with what `gproc cat` and the host's
//! /proc say. Needs /dev/fuse and fusermount3: skipped loudly without
//! them, failed under `CI=true`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Port, Proc, free_port, gproc, have, require, start_agent, start_aggregator};

fn fuse_ready() -> bool {
    require("/dev/fuse", Path::new("/dev/fuse").exists())
        && require("fusermount3", have("fusermount3"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `sh -c script` under a 60 s timeout.
fn sh(script: &str) -> Output {
    Command::new("timeout")
        .args(["60", "sh", "-c", script])
        .output()
        .expect("run sh")
}

/// `sh` that must succeed; returns stdout.
fn sh_ok(script: &str) -> String {
    let o = sh(script);
    assert!(
        o.status.success(),
        "{script:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `gproc cat --server addr paths...` (must succeed).
fn gproc_cat(addr: &str, aname: &str, paths: &[&str]) -> Vec<u8> {
    let o = Command::new(gproc())
        .args(["cat", "--server", addr, "--aname", aname])
        .args(paths)
        .output()
        .unwrap();
    assert!(o.status.success(), "gproc cat {paths:?}: {o:?}");
    o.stdout
}

/// Whether `dir` is a mount point of a gproc FUSE mount.
fn is_mounted(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = dir.to_string_lossy();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 4 && f[4] == want && l.contains(" - fuse") && l.contains(" gproc:")
    })
}

/// A `gproc mount -f` child.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// Mounts `addr` (attach name `aname`) on `dir` and waits until the
    /// mount is there.
    fn start(addr: &str, aname: &str, dir: &Path) -> Mount {
        let dir = dir.canonicalize().unwrap();
        let log = dir.with_extension("log");
        let child = Command::new(gproc())
            .args(["mount", addr])
            .arg(&dir)
            .args(["-f", "--aname", aname])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn gproc mount");
        let mut m = Mount {
            child: Some(child),
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&m.dir) {
            if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "gproc mount exited ({st}) before mounting:\n{}",
                    m.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not mounted after 20 s:\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dir.display())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits up to 20 s for the mount process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("mount process");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("gproc mount did not exit:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `fusermount3 -u`, then the mount process must exit 0.
    fn unmount(mut self) {
        let o = Command::new("timeout")
            .args(["20", "fusermount3", "-u"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "fusermount3 -u: {o:?}");
        let st = self.wait_exit();
        assert!(
            st.success(),
            "gproc mount exited with {st}:\n{}",
            self.log_text()
        );
        assert!(!is_mounted(&self.dir));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `sleep` child whose /proc directory is stable for the test, returned
/// once it has exec'd (until then it carries the test's name).
fn sleeper() -> Proc {
    let p = Proc(Command::new("sleep").arg("300").spawn().unwrap());
    let comm = format!("/proc/{}/comm", p.0.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm).unwrap_or_default() != "sleep\n" {
        assert!(Instant::now() < deadline, "sleep never exec'd");
        std::thread::sleep(Duration::from_millis(10));
    }
    p
}

fn pids_of(text: &str) -> BTreeSet<u32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn host_pids() -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// An agent on a free loopback port, and an empty mount point in a
/// temporary directory (kept while the returned `TempDir` lives).
fn agent_and_mountpoint() -> (Proc, Port, String, tempfile::TempDir, PathBuf) {
    let port = Port::new();
    let addr = format!("127.0.0.1:{port}");
    let agent = start_agent(&port);
    let tmp = tempfile::tempdir().unwrap();
    let mp = tmp.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    (agent, port, addr, tmp, mp)
}

#[test]
fn agent_tree_reads_like_proc_with_unmodified_tools() {
    if !fuse_ready() {
        return;
    }
    let (_agent, _, addr, _tmp, mp) = agent_and_mountpoint();
    let m = Mount::start(&addr, "", &mp);
    let s = sleeper();
    let pid = s.0.id();

    // ls -lR of a pid directory: every entry readable, exit 0.
    let out = sh_ok(&format!("ls -lR {}", m.path(&pid.to_string())));
    assert!(out.contains("status") && out.contains("/fd:"), "{out}");
    // The same names as the host's /proc.
    let through = sh_ok(&format!("cd {} && find {pid} | sort", m.dir.display()));
    let host = sh_ok(&format!("cd /proc && find {pid} | sort"));
    assert_eq!(through, host, "find of a pid directory differs from /proc");
    // find -maxdepth 1 of pid 1.
    let out = sh_ok(&format!("find {} -maxdepth 1", m.path("1")));
    assert!(out.lines().any(|l| l == m.path("1/status")), "{out}");
    assert!(out.lines().count() > 20, "{out}");

    // cat: size-0 files read whole; contents as gproc cat reads them.
    let load = sh_ok(&format!("cat {}", m.path("loadavg")));
    let f: Vec<&str> = load.split_whitespace().collect();
    assert_eq!(f.len(), 5, "{load}");
    assert!(f[..3].iter().all(|x| x.parse::<f64>().is_ok()), "{load}");
    for p in ["version", "1/cmdline", "filesystems", "sys/kernel/ostype"] {
        let through = std::fs::read(m.path(p)).unwrap();
        assert!(!through.is_empty(), "{p} read empty");
        assert_eq!(through, gproc_cat(&addr, "", &[p]), "{p}");
    }
    let status = format!("{pid}/status");
    let via_gproc = String::from_utf8(gproc_cat(&addr, "", &[&status])).unwrap();
    let through = std::fs::read_to_string(m.path(&status)).unwrap();
    assert_eq!(
        through.lines().next(),
        via_gproc.lines().next(),
        "Name: line"
    );
    // A file of several messages (more than the 512 KiB msize), read
    // as a snapshot: the first full read goes on to the end.
    let local = std::fs::read("/proc/kallsyms").unwrap();
    if local.len() > 1 << 20 {
        let through = std::fs::read(m.path("kallsyms")).unwrap();
        assert_eq!(through.len(), local.len(), "kallsyms through the mount");
        assert!(through == local, "kallsyms differs through the mount");
    }
    // Reads in 7-byte chunks give the same bytes (direct_io, snapshot).
    let chunked = sh(&format!("dd if={} bs=7 status=none", m.path("version"))).stdout;
    assert_eq!(chunked, std::fs::read("/proc/version").unwrap());

    // grep -r.
    let out = sh_ok(&format!("grep -r Name {}", m.path("1/status")));
    let host = sh_ok("grep -r Name /proc/1/status");
    assert_eq!(out, host);

    // readlink: self is the agent's own pid, as gproc stat sees it.
    let target = sh_ok(&format!("readlink {}", m.path("self")));
    let target = target.trim();
    assert!(target.parse::<u32>().is_ok(), "{target}");
    let st = Command::new(gproc())
        .args(["stat", "--server", &addr, "self"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&st.stdout).contains(&format!("self -> {target}")),
        "{st:?}"
    );
    assert_eq!(
        sh_ok(&format!("readlink {}", m.path(&format!("{pid}/exe")))),
        sh_ok(&format!("readlink /proc/{pid}/exe"))
    );

    // stat: distinct inode numbers, and they are the server's qid.paths
    // (procfs inode numbers for the agent).
    let paths = ["1", "1/status", "loadavg", &status, &pid.to_string()];
    let list: Vec<String> = paths.iter().map(|p| m.path(p)).collect();
    let inos = sh_ok(&format!("stat -c %i {}", list.join(" ")));
    let inos: Vec<&str> = inos.lines().collect();
    assert_eq!(inos.len(), paths.len());
    assert_eq!(
        inos.iter().collect::<BTreeSet<_>>().len(),
        paths.len(),
        "{inos:?}"
    );
    let host = sh_ok("stat -c %i /proc/loadavg");
    assert_eq!(inos[2], host.trim());

    // Directory listings larger than one FUSE readdir buffer resume
    // exactly (about 150 entries, over 4 KiB).
    let through = sh_ok(&format!("ls -f {} | sort", m.path("sys/net/ipv4")));
    let host = sh_ok("ls -f /proc/sys/net/ipv4 | sort");
    assert_eq!(through, host);
    assert!(through.lines().count() > 100);
    // telldir/seekdir in the middle: the cookie resumes exactly there.
    if have("perl") {
        let out = sh_ok(&format!(
            "perl -e 'opendir(D, $ARGV[0]) or die; my @all = readdir(D); closedir D; \
             opendir(D, $ARGV[0]) or die; readdir(D) for 1..60; my $pos = telldir(D); \
             my @a = readdir(D); seekdir(D, $pos); my @b = readdir(D); \
             print join(\",\", @all[60..$#all]) eq join(\",\", @a) ? \"tail\" : \"bad-tail\", \" \", \
             join(\",\", @a) eq join(\",\", @b) ? \"seek\" : \"bad-seek\";' {}",
            m.path("sys/net/ipv4")
        ));
        assert_eq!(out, "tail seek");
    }

    // Errors carry the right errno.
    let o = sh(&format!("cat {}", m.path("no-such-file")));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such file or directory"),
        "{o:?}"
    );
    let o = sh(&format!("echo x > {}", m.path(&format!("{pid}/comm"))));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only file system"),
        "{o:?}"
    );

    // procps ps with the mount as /proc, in a private mount namespace.
    if require("root (unshare -m, mount --bind)", is_root()) && require("unshare", have("unshare"))
    {
        let before = host_pids();
        let aux = sh_ok(&format!(
            "unshare -m sh -c 'mount --bind {} /proc && ps aux'",
            m.dir.display()
        ));
        assert!(aux.starts_with("USER"), "{aux}");
        assert!(
            aux.lines()
                .any(|l| l.contains("sleep 300") && l.contains(&pid.to_string())),
            "{aux}"
        );
        let ps = sh_ok(&format!(
            "unshare -m sh -c 'mount --bind {} /proc && ps -eo pid='",
            m.dir.display()
        ));
        let after = host_pids();
        let stable: BTreeSet<u32> = before.intersection(&after).copied().collect();
        let seen = pids_of(&ps);
        let missing: Vec<_> = stable.difference(&seen).collect();
        assert!(
            missing.is_empty(),
            "ps through the mount misses {missing:?}:\n{ps}"
        );
    }

    drop(s);

    // A process that exits: its open status file still reads (snapshot),
    // fstat on it is ESTALE, and its path is ENOENT (the kernel looks the
    // name up again after ESTALE).
    let gone = sleeper();
    let gpath = m.path(&format!("{}/status", gone.0.id()));
    let mut open = std::fs::File::open(&gpath).unwrap();
    drop(gone); // killed and reaped
    std::thread::sleep(Duration::from_millis(1500)); // past the TTL
    let e = std::fs::metadata(&gpath).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    let e = open.metadata().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
    let mut snap = String::new();
    std::io::Read::read_to_string(&mut open, &mut snap).unwrap();
    assert!(snap.starts_with("Name:\tsleep"), "{snap}");
    drop(open);

    // A lookup's fid and attributes are kept for the TTL only: a process
    // looked up (stat) and opened at once reads, and after it exits and
    // the TTL passes, neither a stat nor an open of it succeeds.
    let gone = sleeper();
    let gpath = m.path(&format!("{}/status", gone.0.id()));
    assert!(std::fs::metadata(&gpath).is_ok());
    let first = std::fs::read_to_string(&gpath).unwrap();
    assert!(first.starts_with("Name:\tsleep"), "{first}");
    drop(gone);
    std::thread::sleep(Duration::from_millis(1500));
    let e = std::fs::File::open(&gpath).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    let e = std::fs::metadata(&gpath).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");

    m.unmount();
}

/// A name looked up in a directory the mount looked up less than a TTL
/// ago is walked on from that directory's fid: what it finds (a file, a
/// subdirectory's file, a missing name) is what a walk from the root
/// finds, and after the TTL the walk from the root still answers.
#[test]
fn lookups_in_a_directory_just_looked_up_answer_as_from_the_root() {
    if !fuse_ready() {
        return;
    }
    let (_agent, _, addr, _tmp, mp) = agent_and_mountpoint();
    let m = Mount::start(&addr, "", &mp);
    let s = sleeper();
    let pid = s.0.id();
    let dir = m.path(&pid.to_string());
    let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap();
    let status = |p: &str| std::fs::read(p).map(|b| b.starts_with(b"Name:\tsleep\n"));
    for round in 0..2 {
        // Each step after the TTL, so that the directory is looked up anew
        // (its fid kept) and the next name is looked up in it.
        std::thread::sleep(Duration::from_millis(1200));
        std::fs::metadata(&dir).unwrap();
        let missing = std::fs::read(format!("{dir}/no-such-file")).unwrap_err();
        assert_eq!(
            missing.kind(),
            std::io::ErrorKind::NotFound,
            "round {round}"
        );
        // The directory's fid went to that lookup: the next walks from the root.
        assert_eq!(std::fs::read(format!("{dir}/comm")).unwrap(), comm);

        std::thread::sleep(Duration::from_millis(1200));
        std::fs::metadata(&dir).unwrap();
        assert_eq!(std::fs::read(format!("{dir}/comm")).unwrap(), comm);
        assert!(status(&format!("{dir}/status")).unwrap(), "round {round}");

        std::thread::sleep(Duration::from_millis(1200));
        std::fs::metadata(format!("{dir}/task")).unwrap();
        let task_comm = std::fs::read(format!("{dir}/task/{pid}/comm")).unwrap();
        assert_eq!(task_comm, comm, "round {round}");
    }
    drop(s);
    std::thread::sleep(Duration::from_millis(1200));
    // The process is gone: the directory and its files are too.
    assert!(std::fs::metadata(&dir).is_err());
    m.unmount();
}

#[test]
fn aggregator_tree_through_the_mount() {
    if !fuse_ready() {
        return;
    }
    let (pa, pg) = (Port::new(), Port::new());
    let _agent = start_agent(&pa);
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\"]\nauth = \"none\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n"
    );
    let _agg = start_aggregator(cfg_dir.path(), &cfg, &pg);
    let addr = format!("127.0.0.1:{pg}");
    let tmp = tempfile::tempdir().unwrap();
    let mp = tmp.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let m = Mount::start(&addr, "", &mp);

    let ps = sh_ok(&format!("cat {}", m.path("ps")));
    assert!(ps.starts_with("NODE PID"), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("n1 1 ")), "{ps}");
    let nodes = sh_ok(&format!("cat {}", m.path("nodes")));
    assert!(nodes.lines().any(|l| l.starts_with("n1 up ")), "{nodes}");
    let ls = sh_ok(&format!("ls {}", m.path("n1/1")));
    assert!(ls.lines().any(|l| l == "status"), "{ls}");
    let root = sh_ok(&format!("ls {}", m.dir.display()));
    for n in ["nodes", "ps", "load", "pid", "n1"] {
        assert!(root.lines().any(|l| l == n), "{n} missing: {root}");
    }
    let name = sh_ok(&format!("grep Name: {}", m.path("n1/1/status")));
    assert_eq!(name, sh_ok("grep Name: /proc/1/status"));
    let alias = sh_ok(&format!("ls {}", m.path("pid/1@n1")));
    assert!(alias.lines().any(|l| l == "status"), "{alias}");
    // A node directory and its /pid alias are different inodes.
    let inos = sh_ok(&format!(
        "stat -c %i {} {}",
        m.path("n1/1"),
        m.path("pid/1@n1")
    ));
    let inos: BTreeSet<&str> = inos.lines().collect();
    assert_eq!(inos.len(), 2);

    // One node's /proc attached directly.
    let mp2 = tmp.path().join("n1");
    std::fs::create_dir(&mp2).unwrap();
    let m2 = Mount::start(&addr, "/n1", &mp2);
    let v = std::fs::read(m2.path("version")).unwrap();
    assert_eq!(v, std::fs::read("/proc/version").unwrap());
    m2.unmount();
    m.unmount();
}

#[test]
fn reconnects_after_the_server_restarts_and_unmounts_on_sigterm() {
    if !fuse_ready() {
        return;
    }
    let (agent, port, addr, _tmp, mp) = agent_and_mountpoint();
    let mut m = Mount::start(&addr, "", &mp);
    let version = std::fs::read(m.path("version")).unwrap();
    let ino = sh_ok(&format!("stat -c %i {}", m.path("version")));
    // An open file is a snapshot: it reads after the server is gone.
    let mut open = std::fs::File::open(m.path("version")).unwrap();

    drop(agent);
    std::thread::sleep(Duration::from_millis(1500)); // past the entry TTL
    let err = std::fs::read(m.path("version")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ECONNREFUSED),
        "a down server: {err}"
    );
    let mut snap = Vec::new();
    std::io::Read::read_to_end(&mut open, &mut snap).unwrap();
    assert_eq!(snap, version);

    let _agent = start_agent(&port);
    std::thread::sleep(Duration::from_millis(600)); // past the redial backoff
    assert_eq!(std::fs::read(m.path("version")).unwrap(), version);
    assert_eq!(
        sh_ok(&format!("stat -c %i {}", m.path("version"))),
        ino,
        "inode numbers survive a reconnect"
    );
    assert!(m.log_text().contains("reconnected"), "{}", m.log_text());

    // SIGTERM unmounts. The file still open keeps the mount busy, so it is
    // detached lazily: gone from the namespace at once, served until the
    // file is closed, then the process exits 0.
    sh_ok(&format!("kill -TERM {}", m.pid()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(&m.dir) {
        assert!(
            Instant::now() < deadline,
            "still mounted:\n{}",
            m.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut again = Vec::new();
    std::io::Seek::rewind(&mut open).unwrap();
    std::io::Read::read_to_end(&mut open, &mut again).unwrap();
    assert_eq!(again, version, "the open file is served until closed");
    drop(open);
    let st = m.wait_exit();
    assert!(st.success(), "{st}:\n{}", m.log_text());
}

#[test]
fn background_mode_returns_once_mounted() {
    if !fuse_ready() {
        return;
    }
    let (_agent, _, addr, _tmp, mp) = agent_and_mountpoint();
    let mp = mp.canonicalize().unwrap();
    let st = Command::new("timeout")
        .arg("30")
        .arg(gproc())
        .args(["mount", &addr])
        .arg(&mp)
        .status()
        .unwrap();
    assert!(st.success(), "{st}");
    assert!(is_mounted(&mp), "mounted when the command returns");
    let v = std::fs::read(mp.join("version")).unwrap();
    assert_eq!(v, std::fs::read("/proc/version").unwrap());
    sh_ok(&format!("fusermount3 -u {}", mp.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_mounted(&mp) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    // A server that is not there: an error, and nothing left mounted.
    let dead = free_port();
    let o = Command::new("timeout")
        .arg("30")
        .arg(gproc())
        .args(["mount", &format!("127.0.0.1:{dead}")])
        .arg(&mp)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused"),
        "{o:?}"
    );
    assert!(!is_mounted(&mp));
}

/// The process's state letter (`S`, `T`, ...) from the host's /proc.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// Control through the mount (issue 16): with control on at the agent and
/// the aggregator, a shell's `echo stop > .../ctl` (open with O_TRUNC, or
/// the truncate before it, then a write) signals the process, by node
/// path and by its `/pid` alias; any other write is refused.
#[test]
fn a_shell_signals_through_ctl_in_the_mount() {
    if !fuse_ready() {
        return;
    }
    let (pa, pg) = (Port::new(), Port::new());
    let mut cmd = Command::new(gproc());
    cmd.args(["agent", "--auth", "none", "--control"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _agent = Proc(pa.spawn(&mut cmd, |c, listen| {
        c.args(["--listen", listen]);
    }));
    crate::common::wait_for_9p(&pa.addr());
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\"]\nauth = \"none\"\n\n\
         [control]\nenabled = true\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n"
    );
    let _agg = start_aggregator(cfg_dir.path(), &cfg, &pg);
    let tmp = tempfile::tempdir().unwrap();
    let mp = tmp.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    let m = Mount::start(&format!("127.0.0.1:{pg}"), "", &mp);
    let mut victim = Command::new("sleep").arg("300").spawn().unwrap();
    let pid = victim.id();
    let wait_state = |want: char| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while state_of(pid) != Some(want) {
            assert!(Instant::now() < deadline, "state {want} never came");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    sh_ok(&format!("echo stop > {}", m.path(&format!("n1/{pid}/ctl"))));
    wait_state('T');
    sh_ok(&format!(
        "echo cont > {}",
        m.path(&format!("pid/{pid}@n1/ctl"))
    ));
    wait_state('S');
    // Anything else is read-only, and a ctl reads nothing.
    for target in [format!("n1/{pid}/status"), "ps".to_string()] {
        let o = sh(&format!("echo x > {}", m.path(&target)));
        assert!(!o.status.success(), "{target} was written");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("Read-only"), "{target}: {err}");
    }
    assert!(
        !sh(&format!("cat {}", m.path(&format!("n1/{pid}/ctl"))))
            .status
            .success()
    );
    sh_ok(&format!(
        "printf kill > {}",
        m.path(&format!("n1/{pid}/ctl"))
    ));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(victim.wait().unwrap().signal(), Some(9));

    // A job's ctl: every process of the job, with one shell line.
    if let Some(v2) = crate::jobs::cgroup_mount(None) {
        let job = format!("2{}", std::process::id());
        let mut cg = crate::jobs::Cgroups::default();
        let dir = cg.make(
            &v2,
            &format!("system.slice/slurmstepd.scope/job_{job}/step_0"),
        );
        let mut members: Vec<std::process::Child> = (0..2)
            .map(|_| {
                let c = Command::new("sleep").arg("300").spawn().unwrap();
                std::fs::write(dir.join("cgroup.procs"), c.id().to_string()).unwrap();
                c
            })
            .collect();
        let ctl = m.path(&format!("job/{job}/ctl"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::path::Path::new(&ctl).exists() {
            assert!(Instant::now() < deadline, "{ctl} never came");
            std::thread::sleep(Duration::from_millis(100));
        }
        sh_ok(&format!("echo stop > {ctl}"));
        for c in &members {
            let pid = c.id();
            let deadline = Instant::now() + Duration::from_secs(10);
            while state_of(pid) != Some('T') {
                assert!(Instant::now() < deadline, "{pid} never stopped");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        sh_ok(&format!("echo kill > {ctl}"));
        for c in &mut members {
            assert_eq!(c.wait().unwrap().signal(), Some(9));
        }
    } else {
        eprintln!("no cgroup2 mount: a job's ctl through the mount is not tried");
    }
    m.unmount();
}

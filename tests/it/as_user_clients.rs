//! Issue 12's differential test through the two mount clients, after the
//! agent and the aggregator (tests/it/as_user.rs, whose fixture, local
//! reads as t1 and comparison rules these reuse): t1, a non-admin allotted
//! node n1 by the aggregator's views, reads the fixture's paths
//!
//! 1. under a `gproc mount` of the aggregator's Unix socket that t1 made
//!    (FUSE; the aggregator knows t1 by SO_PEERCRED), and
//! 2. under the Linux kernel's v9fs (`access=client`, `cache=none`) in a
//!    qemu guest that mounted the aggregator's TCP listener (`auth =
//!    "none"`, `aname=/n1`) and reads as t1's uid, so each read attaches
//!    with `n_uname` = t1.
//!
//! Each must give what t1 gets locally: the same outcome, the same bytes
//! where stable, never data where the local read was refused, ENOENT for
//! processes outside t1's view.
//!
//! v9fs with `access=client` also applies file modes in the guest (the
//! owner and mode the server reports, against the guest's uid, equal to
//! t1's here), so a root-only 0600 file is refused by the guest before
//! the server is asked; the `gproc mount` leg has no such client check
//! (FUSE without `default_permissions`) and tests the server alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::as_user::{
    Kind, Out, T1, T2, assert_none, fixture, judge, n1_aggregator, read_as_t1, setup,
};
use crate::common::*;

/// In a mount namespace of its own (so the host is untouched): a 0666
/// node for the FUSE device bound over /dev/fuse, as udev's default rule
/// makes it on an ordinary system (here, without udev, devtmpfs leaves it
/// 0600 and no unprivileged FUSE mount is possible); then t1 runs the
/// rest of the arguments.
const NAMESPACE: &str = r#"
set -e
dev=$1; shift
mount -t tmpfs -o mode=755 gproc-test-dev "$dev"
mknod -m 666 "$dev/fuse" c $(stat -c '0x%t 0x%T' /dev/fuse)
mount --bind "$dev/fuse" /dev/fuse
exec setpriv --reuid gproc-t1 --regid gproc-t1 --init-groups -- "$@"
"#;

/// A `gproc mount -f` run by t1 in a mount namespace of its own.
struct T1Mount {
    child: Option<Child>,
    mp: PathBuf,
    log: PathBuf,
}

impl T1Mount {
    /// t1 mounts the aggregator's Unix socket `agg` on `mp` (owned by
    /// t1); `dev` is a scratch directory for the device node. Waits until
    /// the mount is there.
    fn start(agg: &Path, mp: &Path, dev: &Path) -> T1Mount {
        let log = mp.with_extension("log");
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                NAMESPACE,
                "sh",
            ])
            .arg(dev)
            .arg(gproc())
            .arg("mount")
            .arg(format!("unix:{}", agg.display()))
            .arg(mp)
            .arg("-f")
            .env("USER", T1)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = T1Mount {
            child: Some(child),
            mp: mp.to_path_buf(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while m.mount_line().is_none() {
            let exited = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            let late = Instant::now() > deadline;
            assert!(
                exited.is_none() && !late,
                "t1's gproc mount: not mounted (exited: {exited:?}; 20 s passed: {late}):\n{}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mount's line in its namespace's mountinfo.
    fn mount_line(&self) -> Option<String> {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).ok()?;
        let want = self.mp.to_string_lossy().to_string();
        info.lines()
            .find(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() > 4 && f[4] == want && l.contains(" - fuse")
            })
            .map(str::to_string)
    }

    /// A command that runs its arguments as t1 inside the mount's
    /// namespace.
    fn as_t1(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .args(["--", "setpriv", "--reuid", T1, "--regid", T1])
            .args(["--init-groups", "--"]);
        c
    }

    /// t1 unmounts (`fusermount3 -u`); the mount process must exit 0.
    fn unmount(mut self) {
        let o = self
            .as_t1()
            .args(["fusermount3", "-u"])
            .arg(&self.mp)
            .output()
            .unwrap();
        assert!(o.status.success(), "fusermount3 -u as t1: {o:?}");
        let mut c = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let st = loop {
            if let Some(st) = c.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "gproc mount did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            st.success(),
            "gproc mount exited {st}:\n{}",
            self.log_text()
        );
    }
}

impl Drop for T1Mount {
    fn drop(&mut self) {
        // The mount process is the namespace's only one: with it gone,
        // the namespace and its FUSE mount go too.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Leg 1: a `gproc mount` of the aggregator made by t1, read by t1 with
/// ordinary system calls (a Python reader run as t1), gives t1 exactly
/// what t1 reads locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_gproc_mount_gives_them_what_the_node_gives_them() {
    let Some(u) = setup() else { return };
    let fuse = Path::new("/dev/fuse").exists() && have("fusermount3");
    if !require("/dev/fuse and fusermount3", fuse)
        || !require(
            "unshare and nsenter (util-linux)",
            have("unshare") && have("nsenter"),
        )
    {
        return;
    }
    let fx = fixture(&u).await;
    let n1 = n1_aggregator("");
    let mp = n1.dir.path().canonicalize().unwrap().join("mnt");
    let dev = n1.dir.path().join("dev");
    for d in [&mp, &dev] {
        std::fs::create_dir(d).unwrap();
    }
    rustix::fs::chown(&mp, Some(rustix::fs::Uid::from_raw(u.t1)), None).unwrap();

    let t0 = Instant::now();
    let m = T1Mount::start(&n1.sock, &mp, &dev);
    // The mount is t1's (fusermount3 made it for uid t1), and so is its
    // connection: the aggregator knows t1 by SO_PEERCRED.
    let line = m.mount_line().unwrap();
    assert!(line.contains(&format!("user_id={}", u.t1)), "{line}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", m.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        vec![u.t1.to_string(); 4],
        "the mount process is t1's"
    );

    let got = read_as_t1(m.as_t1(), &mp, "n1/", &fx.items);
    let rows: Vec<(usize, Out, Out)> = got
        .into_iter()
        .enumerate()
        .map(|(i, b)| (i, fx.locals[i].clone(), b))
        .collect();
    let mismatches = judge(&fx, "through t1's gproc mount", true, &rows);
    // Everything the mount knows (kept lookup fids included) was walked
    // as t1; another user, even right after t1's reads, gets nothing
    // through it: the kernel admits only the mount's owner.
    let status = mp.join("n1/1/status");
    let o = Command::new("nsenter")
        .arg(format!("--mount=/proc/{}/ns/mnt", m.pid()))
        .args(["--", "setpriv", "--reuid", T2, "--regid", T2])
        .args(["--init-groups", "--", "cat"])
        .arg(&status)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && o.stdout.is_empty(),
        "t2 read through t1's mount: {o:?}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{o:?}"
    );
    m.unmount();
    eprintln!("t1's gproc mount: {:.1} s", t0.elapsed().as_secs_f64());
    assert_none(&mismatches);
}

/// The state letter of a local process, `None` once it is gone.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

/// Issue 16 through a user's own `gproc mount`: with control on (agent
/// `--control`, aggregator `[control] enabled`), t1, who is not a gproc
/// administrator, writes `ctl` files with a shell's `echo ... >` (an open
/// with O_TRUNC, then the write) as themselves: their own process stops,
/// continues and is killed; another user's does not exist for them
/// (ENOENT), and one they can see but the kernel says is not theirs
/// (their effective uid, root's real and saved uid) is EPERM. Both are
/// unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_gproc_mount_signals_their_own_processes_and_no_others() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    let Some(u) = setup() else { return };
    let fuse = Path::new("/dev/fuse").exists() && have("fusermount3");
    if !require("/dev/fuse and fusermount3", fuse)
        || !require(
            "unshare and nsenter (util-linux)",
            have("unshare") && have("nsenter"),
        )
        || !require("perl and bash", have("perl") && have("bash"))
    {
        return;
    }
    let (t2, _) = test_user(T2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = Proc(
        Command::new(gproc())
            .args(["agent", "--control", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let agg = dir.path().join("agg.sock");
    let port = Port::new();
    let cfg = format!(
        "[server]\nlisten = [\"{}\", \"unix:{}\"]\nsocket_mode = \"0666\"\nauth = \"none\"\n\n\
         [control]\nenabled = true\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n",
        port.addr(),
        agg.display(),
        sock.display()
    );
    let _agg = start_aggregator(dir.path(), &cfg, &port);
    let mp = dir.path().canonicalize().unwrap().join("mnt");
    let dev = dir.path().join("dev");
    for d in [&mp, &dev] {
        std::fs::create_dir(d).unwrap();
    }
    rustix::fs::chown(&mp, Some(rustix::fs::Uid::from_raw(u.t1)), None).unwrap();

    let sleeper = |user: &str| {
        Proc(
            Command::new("setpriv")
                .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                .args(["sleep", "600"])
                .spawn()
                .unwrap(),
        )
    };
    let mut mine = sleeper(T1);
    let theirs = sleeper(T2);
    let half = Proc(
        Command::new("perl")
            .args(["-e", &format!("$> = {}; sleep 600", u.t1)])
            .spawn()
            .unwrap(),
    );
    let (m_pid, t_pid, h_pid) = (mine.0.id(), theirs.0.id(), half.0.id());
    wait_for("the processes' users", || {
        uids(m_pid).first() == Some(&u.t1)
            && uids(t_pid).first() == Some(&t2)
            && uids(h_pid) == [0, u.t1, 0]
    });

    let m = T1Mount::start(&agg, &mp, &dev);
    let echo = |pid: u32, cmd: &str| {
        let o = m
            .as_t1()
            // bash, which says which error a write got (dash's echo says
            // "I/O error" for every one).
            .args(["bash", "-c"])
            .arg(format!("echo {cmd} > {}/n1/{pid}/ctl", mp.display()))
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = echo(m_pid, "stop");
    assert!(ok, "{err}");
    wait_for("t1's sleep stopped", || state(m_pid) == Some('T'));
    let (ok, err) = echo(m_pid, "cont");
    assert!(ok, "{err}");
    wait_for("t1's sleep continued", || state(m_pid) == Some('S'));
    let (ok, err) = echo(t_pid, "kill");
    assert!(!ok && err.contains("No such file or directory"), "{err}");
    let (ok, err) = echo(h_pid, "kill");
    assert!(
        !ok && err.contains("write error: Operation not permitted"),
        "{err}"
    );
    let (ok, err) = echo(m_pid, "kill");
    assert!(ok, "{err}");
    assert_eq!(mine.0.wait().unwrap().signal(), Some(9));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(state(t_pid), Some('S'), "t2's is unharmed");
    assert_eq!(state(h_pid), Some('S'), "the half-dropped one is unharmed");
    m.unmount();
}

/// The per-process files and node-wide files the v9fs leg compares (one
/// VM run: a focused list), and how the guest reads each.
const V9FS_PID_FILES: &[&str] = &[
    "environ", "maps", "auxv", "cmdline", "status", "stat", "syscall", "stack", "fd", "exe",
];
const V9FS_NODE_FILES: &[&str] = &[
    "timer_list",
    "kallsyms",
    "version",
    "modules",
    "sys/net/ipv4/tcp_fastopen_key",
];

/// The guest's mount options. v9fs attaches the mount itself (its root
/// fid) with `uname` (default "nobody") and no `n_uname`; only later
/// attaches, one per user reading, carry `n_uname` = that uid. With views
/// on, "nobody" has no process on n1, so `aname=/n1` would not exist for
/// it (the mount fails with ENOENT): the mount's own attach names root.
const V9FS_OPTS: &str = "cache=none,access=client,uname=root";

/// The first line of a local outcome (what `head -n 1` prints).
fn first_line(o: &Out) -> Out {
    match o {
        Out::Data(d) => {
            let end = d
                .iter()
                .position(|b| *b == b'\n')
                .map_or(d.len(), |i| i + 1);
            Out::Data(d[..end].to_vec())
        }
        e => e.clone(),
    }
}

/// The errno whose text (strerror, as the guest's tools print it) is
/// `text`.
fn errno_of_text(text: &str) -> Option<u32> {
    (1..134)
        .find(|e| {
            let s = std::io::Error::from_raw_os_error(*e).to_string();
            s.strip_suffix(&format!(" (os error {e})")) == Some(text)
        })
        .map(|e| e as u32)
}

/// The guest's outcomes, by index, from guest-read.sh's lines.
fn parse_guest(text: &str, kinds: &[(usize, Kind)]) -> Vec<(usize, Out)> {
    let mut heads: std::collections::BTreeMap<usize, (String, String)> = Default::default();
    let mut hex: std::collections::BTreeMap<usize, String> = Default::default();
    for l in text.lines() {
        let mut f = l.splitn(4, ' ');
        match (f.next(), f.next().and_then(|i| i.parse::<usize>().ok())) {
            (Some("READ"), Some(i)) => {
                let tag = f.next().unwrap_or_default().to_string();
                heads.insert(i, (tag, f.next().unwrap_or_default().to_string()));
            }
            (Some("READX"), Some(i)) => {
                hex.entry(i)
                    .or_default()
                    .push_str(f.next().unwrap_or_default());
            }
            _ => {}
        }
    }
    let mut v = Vec::new();
    for (i, kind) in kinds {
        let Some((tag, rest)) = heads.get(i) else {
            panic!("the guest printed no outcome for path {i}");
        };
        let o = if tag == "D" {
            let h = hex.get(i).map(String::as_str).unwrap_or_default();
            let mut d: Vec<u8> = (0..h.len() / 2)
                .map(|j| u8::from_str_radix(&h[2 * j..2 * j + 2], 16).unwrap())
                .collect();
            assert_eq!(d.len().to_string(), *rest, "path {i}: every byte arrived");
            // ls and readlink end their answer with a newline.
            if *kind != Kind::File && d.last() == Some(&b'\n') {
                d.pop();
            }
            Out::Data(d)
        } else {
            match errno_of_text(rest) {
                Some(e) => Out::errno(&std::io::Error::from_raw_os_error(e as i32)),
                None => panic!("path {i}: unknown error text {rest:?}"),
            }
        };
        v.push((*i, o));
    }
    v
}

/// Leg 2: Linux's v9fs (6.12, `access=client`, `cache=none`) in a qemu
/// guest, mounted on the aggregator's TCP listener (`auth = "none"`,
/// `aname=/n1`), read as t1's uid in the guest: each read attaches with
/// `n_uname` = t1, and gives what t1 reads locally on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_v9fs_as_a_user_gives_them_what_the_node_gives_them() {
    let Some(u) = setup() else { return };
    let kernel = peers_dir().join("kernels/6.12");
    if !require(
        "qemu-system-x86_64 and the Debian 6.12 kernel",
        have("qemu-system-x86_64") && kernel.join(".complete").exists(),
    ) {
        return;
    }
    let fx = fixture(&u).await;
    let n1 = n1_aggregator("auth = \"none\"\n");

    // The list: (index into the fixture's items, guest mode, kind).
    let mut list = String::new();
    let mut kinds = Vec::new();
    for (i, (p, k, ..)) in fx.items.iter().enumerate() {
        let (first, rest) = p.split_once('/').unwrap_or((p.as_str(), ""));
        let per_pid = first.parse::<u32>().is_ok() && V9FS_PID_FILES.contains(&rest);
        if !per_pid && !V9FS_NODE_FILES.contains(&p.as_str()) {
            continue;
        }
        let mode = match k {
            Kind::Dir => "d",
            Kind::Link => "l",
            Kind::File if p == "kallsyms" => "1",
            Kind::File => "f",
        };
        list.push_str(&format!("{i} {mode} {p}\n"));
        kinds.push((i, *k));
    }
    let list_file = n1.dir.path().join("readlist");
    std::fs::write(&list_file, &list).unwrap();
    let gid = gproc::sys::users::passwd(u.t1).unwrap().1;

    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("tests/v9fs/run-vm.sh"))
        .args(["6.12", &n1.port.n.to_string(), "/n1", V9FS_OPTS])
        .env("V9FS_READ_AS", format!("{T1}:{}:{gid}", u.t1))
        .env("V9FS_READ_LIST", &list_file)
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for l in text.lines().filter(|l| !l.starts_with("READX ")) {
        eprintln!("{l}");
    }
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "run-vm.sh failed");
    eprintln!("v9fs leg: one VM, {secs:.0} s");

    let rows: Vec<(usize, Out, Out)> = parse_guest(&text, &kinds)
        .into_iter()
        .map(|(i, b)| {
            let l = if fx.items[i].0 == "kallsyms" {
                first_line(&fx.locals[i])
            } else {
                fx.locals[i].clone()
            };
            (i, l, b)
        })
        .collect();
    assert!(rows.len() >= V9FS_NODE_FILES.len() + fx.targets.len() * 8);
    assert_none(&judge(&fx, "through v9fs access=client", true, &rows));
}

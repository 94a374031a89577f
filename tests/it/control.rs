//! Control at the agent (issue 16): with `--control`, `/<pid>/ctl` signals
//! that process as the writer, so the node's kernel decides. Real
//! processes of two test users, of root, and one with a user's effective
//! uid but root's real and saved uid; the writers are those users and root,
//! named in `Tattach` by root over the agent's Unix socket, as the
//! aggregator comes. Every signal, sent or refused, is in the audit log.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gproc::client::{Client, ClientOptions, FidHandle, OpenMode};
use gproc::net::Address;
use gproc::proto::errno;

use crate::common::*;

const C1: &str = "gproc-c1";
const C2: &str = "gproc-c2";

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// `sleep` as `user` (or as root).
fn sleeper(user: Option<&str>) -> Child {
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", u, "--regid", u, "--init-groups", "--", "sleep"]);
            c
        }
        None => Command::new("sleep"),
    };
    c.arg("600").spawn().unwrap()
}

/// The state letter of a process (`S`, `T`, ...), `None` once it is gone.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

/// What most tests here start from: the two test users, a scratch
/// directory and an agent with control on its Unix socket there.
struct Setup {
    c1: u32,
    c2: u32,
    dir: tempfile::TempDir,
    _agent: Proc,
    sock: std::path::PathBuf,
}

/// [`Setup`], or `None` (skipped loudly) without root, useradd and setpriv.
fn setup() -> Option<Setup> {
    if !require(
        "root, useradd and setpriv",
        rustix::process::geteuid().is_root() && have("useradd") && have("setpriv"),
    ) {
        return None;
    }
    let (c1, _) = test_user(C1);
    let (c2, _) = test_user(C2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_agent, sock) = agent(dir.path(), true);
    Some(Setup {
        c1,
        c2,
        dir,
        _agent,
        sock,
    })
}

/// An agent on a Unix socket in `dir`, logging to `dir/agent.log`.
fn agent(dir: &Path, control: bool) -> (Proc, std::path::PathBuf) {
    let sock = dir.join("agent.sock");
    let mut cmd = Command::new(gproc());
    cmd.args(["agent", "--listen"])
        .arg(format!("unix:{}", sock.display()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("agent.log")).unwrap());
    if control {
        cmd.arg("--control");
    }
    let p = Proc(cmd.spawn().unwrap());
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    (p, sock)
}

/// Writes `command` to `<pid>/ctl` as the attach `root` is: at the
/// agent (`where_` empty), under a node's directory of the aggregator
/// (`n1`), or in its global pid space (`pid`).
async fn ctl(root: &FidHandle, pid: u32, where_: &str, command: &str) -> Result<(), u32> {
    let path = match where_ {
        "" => format!("{pid}/ctl"),
        "pid" => format!("pid/{pid}@n1/ctl"),
        node => format!("{node}/{pid}/ctl"),
    };
    let mut f = root.walk(&path).await.map_err(|e| e.errno())?;
    f.open(OpenMode::Write).await.map_err(|e| e.errno())?;
    let r = f.write_at(0, command.as_bytes()).await;
    let _ = f.clunk().await;
    match r {
        Ok(n) if n as usize == command.len() => Ok(()),
        Ok(n) => panic!("short write: {n}"),
        Err(e) => Err(e.errno()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_signal_what_the_kernel_lets_them_and_nothing_else() {
    let Some(Setup {
        c1,
        c2,
        dir,
        _agent,
        sock,
    }) = setup()
    else {
        return;
    };
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let as_c1 = c.attach_named(C1, "", c1).await.unwrap();
    let as_root = c.attach("root", "", Some(0)).await.unwrap();

    let mut mine = sleeper(Some(C1));
    let mut theirs = sleeper(Some(C2));
    let mut roots = sleeper(None);
    // c1's effective uid, root's real and saved uid (a program that
    // dropped its effective uid only): visible to c1, not theirs to signal.
    let mut half = Command::new("perl")
        .args(["-e", &format!("$> = {c1}; sleep 600")])
        .spawn()
        .unwrap();
    let (m, t, r, h) = (mine.id(), theirs.id(), roots.id(), half.id());
    wait_for("the processes' users", || {
        uids(m).first() == Some(&c1) && uids(t).first() == Some(&c2) && uids(h) == [0, c1, 0]
    });

    // ctl says whose it is and that its owner may write it.
    let md = as_c1.metadata(&format!("{m}/ctl")).await.unwrap();
    assert_eq!((md.mode & 0o7777, md.uid), (0o200, Some(c1)), "{md:?}");
    let listing = as_c1.read_dir(&m.to_string()).await.unwrap();
    assert!(listing.iter().any(|e| e.name == "ctl"));
    let mut f = as_c1.walk(&format!("{m}/ctl")).await.unwrap();
    assert_eq!(
        f.open(OpenMode::Read).await.unwrap_err().errno(),
        errno::EACCES
    );

    // Their own: stop, continue, kill.
    ctl(&as_c1, m, "", "stop\n").await.unwrap();
    wait_for("c1's sleep stopped", || state(m) == Some('T'));
    ctl(&as_c1, m, "", "signal CONT").await.unwrap();
    wait_for("c1's sleep continued", || state(m) == Some('S'));
    assert_eq!(ctl(&as_c1, m, "", "explode").await, Err(errno::EINVAL));
    ctl(&as_c1, m, "", "kill").await.unwrap();
    assert_eq!(mine.wait().unwrap().signal(), Some(9));

    // Others': the kernel says no, and they are unharmed.
    for (who, pid) in [("c2's", t), ("root's", r), ("root-real-uid", h)] {
        assert_eq!(
            ctl(&as_c1, pid, "", "kill").await,
            Err(errno::EPERM),
            "{who}"
        );
        assert_eq!(
            ctl(&as_c1, pid, "", "stop").await,
            Err(errno::EPERM),
            "{who}"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(theirs.try_wait().unwrap().is_none() && state(t) == Some('S'));
    assert!(roots.try_wait().unwrap().is_none() && state(r) == Some('S'));
    assert!(half.try_wait().unwrap().is_none() && state(h) == Some('S'));

    // A fid on a process that exited: gone, as everywhere (never another
    // process with its pid).
    let mut held = as_root.walk(&format!("{t}/ctl")).await.unwrap();
    held.open(OpenMode::Write).await.unwrap();
    theirs.kill().unwrap();
    theirs.wait().unwrap();
    assert_eq!(
        held.write_at(0, b"kill").await.unwrap_err().errno(),
        errno::ENOENT
    );

    // Root signals anything.
    ctl(&as_root, r, "", "term").await.unwrap();
    assert_eq!(roots.wait().unwrap().signal(), Some(15));
    ctl(&as_root, h, "", "signal 9").await.unwrap();
    assert_eq!(half.wait().unwrap().signal(), Some(9));

    // The audit log has each, sent or refused, with who and what.
    let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("gproc::audit")).collect();
    let has = |uid: u32, pid: u32, sig: &str, result: &str| {
        audit.iter().any(|l| {
            l.contains(&format!("uid={uid} "))
                && l.contains(&format!("pid={pid} "))
                && l.contains(&format!("signal=\"{sig}\""))
                && l.contains(result)
        })
    };
    assert!(has(c1, m, "SIGSTOP", "sent"), "{audit:#?}");
    assert!(has(c1, m, "SIGKILL", "sent"), "{audit:#?}");
    assert!(has(c1, t, "SIGKILL", "refused"), "{audit:#?}");
    assert!(has(c1, h, "SIGSTOP", "refused"), "{audit:#?}");
    assert!(has(0, r, "SIGTERM", "sent"), "{audit:#?}");
    assert!(
        audit
            .iter()
            .any(|l| l.contains(&format!("uid={c1} ")) && l.contains("unknown ctl command")),
        "{audit:#?}"
    );
    assert!(
        audit.iter().any(|l| l.contains("comm=\"sleep\"")),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_control_there_is_no_ctl() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, sock) = agent(dir.path(), false);
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let me = rustix::process::geteuid().as_raw();
    let root = c.attach("me", "", Some(me)).await.unwrap();
    let mut child = sleeper(None);
    let pid = child.id();
    let e = root.walk(&format!("{pid}/ctl")).await.unwrap_err();
    assert_eq!(e.errno(), errno::ENOENT);
    let listing = root.read_dir(&pid.to_string()).await.unwrap();
    assert!(!listing.iter().any(|e| e.name == "ctl"));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The aggregator over an agent with control: `[control]` on, users may
/// stop, continue, end and kill; a gproc administrator who is not root.
fn aggregator_config(pg: &Port, agent_sock: &Path, control: bool) -> String {
    let control = if control {
        "[control]\nenabled = true\nuser_signals = [\"STOP\", \"CONT\", \"TERM\", \"KILL\"]\n\n"
    } else {
        ""
    };
    format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n{control}\
         [views]\nadmin_users = [\"root\", \"{C2}\"]\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n",
        pg.addr(),
        agent_sock.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_through_the_aggregator_go_down_as_the_writer() {
    let Some(Setup {
        c1,
        c2,
        dir,
        _agent,
        sock,
    }) = setup()
    else {
        return;
    };
    let pg = Port::new();
    let _agg = start_aggregator(dir.path(), &aggregator_config(&pg, &sock, true), &pg);
    let c = Client::connect(&Address::Tcp(pg.addr()), opts())
        .await
        .unwrap();
    let as_c1 = c.attach_named(C1, "", c1).await.unwrap();
    let as_c2 = c.attach_named(C2, "", c2).await.unwrap(); // an administrator
    let as_root = c.attach("root", "", Some(0)).await.unwrap();

    let mut mine = sleeper(Some(C1));
    let mut theirs = sleeper(Some(C2));
    let mut roots = sleeper(None);
    let (m, t, r) = (mine.id(), theirs.id(), roots.id());
    wait_for("the processes' users", || {
        uids(m).first() == Some(&c1) && uids(t).first() == Some(&c2)
    });

    // Their own, by node path and by the global pid space.
    ctl(&as_c1, m, "n1", "stop").await.unwrap();
    wait_for("stopped", || state(m) == Some('T'));
    ctl(&as_c1, m, "pid", "cont").await.unwrap();
    wait_for("continued", || state(m) == Some('S'));
    // Not among user_signals: refused here, before the node.
    assert_eq!(ctl(&as_c1, m, "n1", "signal HUP").await, Err(errno::EPERM));
    assert!(mine.try_wait().unwrap().is_none());

    // Another user's process does not exist for them.
    assert_eq!(ctl(&as_c1, t, "n1", "kill").await, Err(errno::ENOENT));
    assert_eq!(ctl(&as_c1, t, "pid", "kill").await, Err(errno::ENOENT));
    // A gproc administrator who is not root sees it, but the node's
    // kernel decides as them: root's process is not theirs.
    assert_eq!(ctl(&as_c2, r, "n1", "kill").await, Err(errno::EPERM));
    std::thread::sleep(Duration::from_millis(100));
    assert!(theirs.try_wait().unwrap().is_none() && roots.try_wait().unwrap().is_none());

    // Root: anything, any signal.
    ctl(&as_root, t, "n1", "signal HUP").await.unwrap();
    assert_eq!(theirs.wait().unwrap().signal(), Some(1));
    ctl(&as_c1, m, "pid", "kill").await.unwrap();
    assert_eq!(mine.wait().unwrap().signal(), Some(9));
    ctl(&as_root, r, "pid", "term").await.unwrap();
    assert_eq!(roots.wait().unwrap().signal(), Some(15));

    // Audited at the aggregator, and at the agent as the writer.
    let agg_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let agg: Vec<&str> = agg_log
        .lines()
        .filter(|l| l.contains("gproc::audit"))
        .collect();
    assert!(
        agg.iter().any(|l| l.contains(&format!("uid={c1} "))
            && l.contains("signal=\"SIGHUP\"")
            && l.contains("user_signals")),
        "{agg:#?}"
    );
    assert!(
        agg.iter().any(|l| l.contains(&format!("uid={c2} "))
            && l.contains(&format!("process=\"{r}\""))
            && l.contains("refused")),
        "{agg:#?}"
    );
    let agent_log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(
        agent_log.lines().any(|l| l.contains("gproc::audit")
            && l.contains(&format!("uid={c2} "))
            && l.contains(&format!("pid={r} "))
            && l.contains("Operation not permitted")),
        "{agent_log}"
    );
}

/// Through two levels (issue 14): a top aggregator over a rack aggregator
/// over the agent, control on at each. A signal goes down every level as
/// the writer, so the node's kernel still decides; each level audits it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_go_down_two_levels_as_the_writer() {
    let Some(Setup {
        c1,
        c2,
        dir,
        _agent,
        sock,
    }) = setup()
    else {
        return;
    };
    let rack_dir = dir.path().join("rack");
    std::fs::create_dir(&rack_dir).unwrap();
    let pr = Port::new();
    let _rack = start_aggregator(&rack_dir, &aggregator_config(&pr, &sock, true), &pr);
    let top_dir = dir.path().join("top");
    std::fs::create_dir(&top_dir).unwrap();
    let pt = Port::new();
    let top_cfg = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n\
         [control]\nenabled = true\nuser_signals = [\"STOP\", \"CONT\", \"TERM\", \"KILL\"]\n\n\
         [views]\nadmin_users = [\"root\", \"{C2}\"]\n\n\
         [[nodes]]\nnames = \"rack1\"\naddress = \"{}\"\naname = \"\"\n",
        pt.addr(),
        pr.addr()
    );
    let _top = start_aggregator(&top_dir, &top_cfg, &pt);
    let c = Client::connect(&Address::Tcp(pt.addr()), opts())
        .await
        .unwrap();
    let as_c1 = c.attach_named(C1, "", c1).await.unwrap();
    let as_c2 = c.attach_named(C2, "", c2).await.unwrap();
    let as_root = c.attach("root", "", Some(0)).await.unwrap();

    let mut mine = sleeper(Some(C1));
    let mut theirs = sleeper(Some(C2));
    let mut roots = sleeper(None);
    let (m, t, r) = (mine.id(), theirs.id(), roots.id());
    wait_for("the processes' users", || {
        uids(m).first() == Some(&c1) && uids(t).first() == Some(&c2)
    });
    ctl(&as_c1, m, "n1", "stop").await.unwrap();
    wait_for("stopped", || state(m) == Some('T'));
    ctl(&as_c1, m, "pid", "cont").await.unwrap();
    wait_for("continued", || state(m) == Some('S'));
    assert_eq!(ctl(&as_c1, t, "n1", "kill").await, Err(errno::ENOENT));
    assert_eq!(ctl(&as_c1, t, "pid", "kill").await, Err(errno::ENOENT));
    assert_eq!(ctl(&as_c2, r, "n1", "kill").await, Err(errno::EPERM));
    std::thread::sleep(Duration::from_millis(100));
    assert!(theirs.try_wait().unwrap().is_none() && roots.try_wait().unwrap().is_none());
    ctl(&as_root, t, "n1", "signal HUP").await.unwrap();
    assert_eq!(theirs.wait().unwrap().signal(), Some(1));
    ctl(&as_c1, m, "pid", "kill").await.unwrap();
    assert_eq!(mine.wait().unwrap().signal(), Some(9));
    ctl(&as_root, r, "n1", "term").await.unwrap();
    assert_eq!(roots.wait().unwrap().signal(), Some(15));

    // The administrator's refused signal is in every level's audit log,
    // as their uid.
    let refused = |log: &str, pid_key: &str| {
        log.lines().any(|l| {
            l.contains("gproc::audit")
                && l.contains(&format!("uid={c2} "))
                && l.contains(&format!("{pid_key}{r}"))
                && (l.contains("refused") || l.contains("Operation not permitted"))
        })
    };
    for (name, log, key) in [
        ("top", top_dir.join("serve.log"), "process=\""),
        ("rack", rack_dir.join("serve.log"), "process=\""),
        ("agent", dir.path().join("agent.log"), "pid="),
    ] {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(refused(&text, key), "{name}: {text}");
    }
}

/// `[control] user_signals_per_minute`: a user past it gets EAGAIN (and
/// an audit line) and the process is left alone; administrators are not
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_signals_are_rate_limited() {
    let Some(Setup {
        c1,
        dir,
        _agent,
        sock,
        ..
    }) = setup()
    else {
        return;
    };
    let pg = Port::new();
    let cfg = aggregator_config(&pg, &sock, true).replace(
        "[control]\nenabled = true\n",
        "[control]\nenabled = true\nuser_signals_per_minute = 2\n",
    );
    assert!(cfg.contains("user_signals_per_minute"));
    let _agg = start_aggregator(dir.path(), &cfg, &pg);
    let c = Client::connect(&Address::Tcp(pg.addr()), opts())
        .await
        .unwrap();
    let as_c1 = c.attach_named(C1, "", c1).await.unwrap();
    let as_root = c.attach("root", "", Some(0)).await.unwrap();
    let mut mine = sleeper(Some(C1));
    let m = mine.id();
    wait_for("the process's user", || uids(m).first() == Some(&c1));
    ctl(&as_c1, m, "n1", "stop").await.unwrap();
    wait_for("stopped", || state(m) == Some('T'));
    ctl(&as_c1, m, "n1", "cont").await.unwrap();
    wait_for("continued", || state(m) == Some('S'));
    assert_eq!(ctl(&as_c1, m, "n1", "kill").await, Err(errno::EAGAIN));
    std::thread::sleep(Duration::from_millis(100));
    assert!(mine.try_wait().unwrap().is_none(), "a refused kill killed");
    // Root is not held to it.
    ctl(&as_root, m, "n1", "stop").await.unwrap();
    wait_for("stopped by root", || state(m) == Some('T'));
    ctl(&as_root, m, "n1", "kill").await.unwrap();
    assert_eq!(mine.wait().unwrap().signal(), Some(9));
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("gproc::audit")
            && l.contains(&format!("uid={c1} "))
            && l.contains("user_signals_per_minute")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_without_control_hides_the_nodes_ctl() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, sock) = agent(dir.path(), true);
    let pg = Port::new();
    let _agg = start_aggregator(dir.path(), &aggregator_config(&pg, &sock, false), &pg);
    let c = Client::connect(&Address::Tcp(pg.addr()), opts())
        .await
        .unwrap();
    let me = rustix::process::geteuid().as_raw();
    let root = c.attach("root", "", Some(me)).await.unwrap();
    let mut child = sleeper(None);
    let pid = child.id();
    for path in [format!("n1/{pid}"), format!("pid/{pid}@n1")] {
        let e = root.walk(&format!("{path}/ctl")).await.unwrap_err();
        assert_eq!(e.errno(), errno::ENOENT, "{path}");
        let listing = root.read_dir(&path).await.unwrap();
        assert!(listing.iter().any(|e| e.name == "status"), "{path}");
        assert!(!listing.iter().any(|e| e.name == "ctl"), "{path}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Linux's v9fs (6.12, `access=client`, `cache=none`) in a qemu guest,
/// mounted on the aggregator (`aname=/n1`) as c1's uid: a shell's `echo
/// stop > ctl` (an open with O_TRUNC, which v9fs sends as a `Tsetattr` of
/// size 0, then the write) signals c1's own processes, and c2's does not
/// exist for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_on_linux_v9fs_signals_through_ctl() {
    let kernel = peers_dir().join("kernels/6.12");
    if !require(
        "root, useradd, setpriv, qemu-system-x86_64 and the Debian 6.12 kernel",
        rustix::process::geteuid().is_root()
            && have("useradd")
            && have("setpriv")
            && have("qemu-system-x86_64")
            && kernel.join(".complete").exists(),
    ) {
        return;
    }
    let (c1, g1) = test_user(C1);
    let (c2, _) = test_user(C2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_agent, sock) = agent(dir.path(), true);
    let pg = Port::new();
    let _agg = start_aggregator(dir.path(), &aggregator_config(&pg, &sock, true), &pg);

    let mut stopped = sleeper(Some(C1));
    let mut killed = sleeper(Some(C1));
    let mut theirs = sleeper(Some(C2));
    let (s, k, t) = (stopped.id(), killed.id(), theirs.id());
    wait_for("the processes' users", || {
        uids(s).first() == Some(&c1) && uids(k).first() == Some(&c1) && uids(t).first() == Some(&c2)
    });
    let list = dir.path().join("writes");
    std::fs::write(
        &list,
        format!("1 w {s}/ctl stop\n2 w {t}/ctl kill\n3 w {k}/ctl kill\n"),
    )
    .unwrap();
    let out = Command::new("bash")
        .arg(repo().join("tests/v9fs/run-vm.sh"))
        .args([
            "6.12",
            &pg.n.to_string(),
            "/n1",
            "cache=none,access=client,uname=root",
        ])
        .env("V9FS_READ_AS", format!("{C1}:{c1}:{g1}"))
        .env("V9FS_READ_LIST", &list)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "run-vm.sh failed");
    let outcome = |i: u32| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("READ {i} ")))
            .unwrap_or_else(|| panic!("no outcome for write {i}"))
            .to_string()
    };
    assert_eq!(outcome(1), "D 0");
    // ENOENT, as busybox's shell words it for a missing directory.
    assert!(
        ["E nonexistent directory", "E No such file or directory"].contains(&outcome(2).as_str()),
        "{}",
        outcome(2)
    );
    assert_eq!(outcome(3), "D 0");
    wait_for("c1's first sleep stopped", || state(s) == Some('T'));
    assert_eq!(killed.wait().unwrap().signal(), Some(9));
    assert!(theirs.try_wait().unwrap().is_none() && state(t) == Some('S'));
    for c in [&mut stopped, &mut theirs] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

/// `gproc ARGS` as `user` (setpriv), with its exit status, stdout and
/// stderr.
fn gproc_as(user: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .arg(gproc())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gproc_kill_and_signal_select_list_and_report() {
    let Some(Setup {
        c1,
        c2,
        dir,
        _agent,
        sock,
    }) = setup()
    else {
        return;
    };
    let pg = Port::new();
    let _agg = start_aggregator(dir.path(), &aggregator_config(&pg, &sock, true), &pg);
    let server = pg.addr();
    let mut mine = sleeper(Some(C1));
    let mut theirs = sleeper(Some(C2));
    let (m, t) = (mine.id(), theirs.id());
    wait_for("the processes' users", || {
        uids(m).first() == Some(&c1) && uids(t).first() == Some(&c2)
    });
    let (ms, ts) = (m.to_string(), t.to_string());

    // Nothing is signalled without a selector, or without --yes off a
    // terminal; --dry-run only lists.
    let (rc, _, err) = gproc_as(C1, &["kill", "--server", &server]);
    assert_ne!(rc, 0);
    assert!(err.contains("say which processes"), "{err}");
    let (rc, out, err) = gproc_as(C1, &["kill", "--server", &server, "-p", &ms]);
    assert_ne!(rc, 0);
    assert!(err.contains("--yes"), "{err}");
    assert!(out.contains(&ms), "listed first: {out}");
    let (rc, out, _) = gproc_as(
        C1,
        &[
            "kill",
            "--server",
            &server,
            "-c",
            "^sleep 600$",
            "--dry-run",
        ],
    );
    assert_eq!(rc, 0);
    assert!(out.contains(&ms) && !out.contains(&ts), "{out}");
    assert_eq!(state(m), Some('S'));

    // Their own, by user, command and state (and pid: other tests'
    // processes of the same test users run meanwhile); the other user's
    // does not match.
    let (rc, out, err) = gproc_as(
        C1,
        &[
            "signal", "STOP", "--server", &server, "-u", C1, "-c", "sleep", "-p", &ms, "--yes",
        ],
    );
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains(&format!("n1 {ms} {C1}: sent SIGSTOP")),
        "{out}"
    );
    wait_for("stopped", || state(m) == Some('T'));
    let (rc, _, err) = gproc_as(C1, &["kill", "--server", &server, "-p", &ts, "--yes"]);
    assert_ne!(rc, 0);
    assert!(err.contains("no process matches"), "{err}");
    // /ps shows the stop once the node's summary is read again (its TTL).
    wait_for("/ps shows it stopped", || {
        gproc_as(C1, &["ps", "--server", &server, "-s", "T", "-o", "pid"])
            .1
            .contains(&ms)
    });
    let (rc, out, err) = gproc_as(
        C1,
        &[
            "kill", "--signal", "KILL", "--server", &server, "-s", "T", "-u", C1, "-p", &ms,
            "--yes",
        ],
    );
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(mine.wait().unwrap().signal(), Some(9));

    // An administrator who is not root lists c2's and root's, and the
    // node's kernel refuses what is not theirs: reported, exit 1.
    let mut roots = sleeper(None);
    let r = roots.id().to_string();
    wait_for("/ps lists root's new process", || {
        gproc_as(C2, &["ps", "--server", &server, "-p", &r, "-o", "pid"])
            .1
            .contains(&r)
    });
    let (rc, out, err) = gproc_as(
        C2,
        &[
            "kill",
            "--server",
            &server,
            "-p",
            &format!("{ts},{r}"),
            "--yes",
        ],
    );
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(&format!("n1 {ts} {C2}: sent SIGTERM")),
        "{out}"
    );
    assert!(
        out.contains(&format!("n1 {r} root: not sent: Operation not permitted")),
        "{out}"
    );
    assert_eq!(theirs.wait().unwrap().signal(), Some(15));
    assert!(roots.try_wait().unwrap().is_none());
    roots.kill().unwrap();
    roots.wait().unwrap();
}

/// `gproc kill` pins what it lists: it walks to each listed process
/// before asking, and signals through that fid. Here, while it asks (in a
/// terminal: `script` gives it one), the listed process exits and another
/// user's new process takes its pid (chosen with `ns_last_pid` in a pid
/// namespace of the test's own): the kill, run as root who could signal
/// anything, reports the listed process gone, exits 1, and the new
/// process is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gproc_kill_never_signals_a_pid_reused_while_it_asked() {
    use std::io::{Read, Write};
    if !require("script (util-linux)", have("script")) {
        return;
    }
    let Some(Setup { dir, .. }) = setup() else {
        return;
    };
    let Some(mut ns) = crate::as_user::PidNs::start(dir.path(), &["--control"]) else {
        return;
    };
    let pg = Port::new();
    let _agg = start_aggregator(dir.path(), &aggregator_config(&pg, &ns.sock, true), &pg);
    let pid: u32 = 4100;
    assert_eq!(ns.ask(&format!("spawn {pid} {C1} 1000 A")), pid.to_string());

    let cmdline = format!(
        "{} kill --server {} -n n1 -p {pid}",
        gproc().display(),
        pg.addr()
    );
    let mut kill = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut answer = kill.stdin.take().unwrap();
    let mut terminal = kill.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = terminal.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    wait_for("gproc kill asks", || text().contains("[y/N]"));
    let listed = text();
    assert!(
        listed.contains(&format!("n1   {C1}")) || listed.contains(&format!(" {pid} ")),
        "{listed}"
    );

    // While it asks: the listed process exits, c2's takes its pid.
    assert_eq!(ns.ask(&format!("kill {pid}")), "ok");
    assert_eq!(
        ns.ask(&format!("spawn {pid} {C2} 1001 B")),
        pid.to_string(),
        "the pid was reused"
    );
    // Answered once the aggregator knows the new process (its cached
    // summary said the old one for a moment): a walk now would reach it.
    let c = Client::connect(&Address::Tcp(pg.addr()), opts())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let mut new = false;
    for _ in 0..100 {
        if let Ok(cmd) = root.read_all(&format!("n1/{pid}/cmdline")).await {
            assert_eq!(&cmd[..], b"sleep\x001001\x00");
            new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(new, "the aggregator reaches the new process");
    answer.write_all(b"y\n").unwrap();
    drop(answer);
    let status = kill.wait().unwrap();
    reader.join().unwrap();
    let out = text();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("n1 {pid} {C1}: not sent: no such process")),
        "{out}"
    );
    assert!(!out.contains("sent SIGTERM"), "{out}");

    // The new process runs on, and the node signalled nothing.
    let status = root.read_all(&format!("n1/{pid}/status")).await.unwrap();
    let status = String::from_utf8_lossy(&status);
    assert!(status.contains("State:\tS"), "{status}");
    let log = std::fs::read_to_string(dir.path().join("ns-agent.log")).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.contains("gproc::audit") && l.contains("result=\"sent\"")),
        "{log}"
    );
    let _ = ns.ask(&format!("kill {pid}"));
}

//! GPUs (issue 15): which GPU devices a process has open.
//!
//! On this machine (no GPU), as root: the test makes device nodes with
//! NVIDIA's numbers (char 195:3, and `nvidiactl` 195:255) in a scratch
//! directory under names that say nothing, and starts `sleep`s holding
//! them with `O_PATH` descriptors (a device without its driver cannot be
//! opened otherwise; a path descriptor still names the inode). An agent
//! told to scan (`--gpus always`, with a cap of 8 descriptors) must show
//! `nvidia3` for the holder in its summary, in the aggregator's `/ps`,
//! with `gproc ps -o gpu` and in `--json`; none for a process holding
//! nothing or only `nvidiactl`; `nvidia0,render1` for a holder of NVIDIA's
//! 195:0 and the DRM render node 226:129; `+` and no device for a holder
//! whose device descriptor lies past the cap. Differential, with a real test
//! user: what the user can read of a process's descriptors on the node
//! (`stat -L /proc/PID/fd/N` as them) is what `/ps` shows them: their
//! own holder's GPU, and nothing of a holder they see only by its real uid.
//!
//! On the simulator: every `/ps` row's GPU column is what its node's own
//! summary says, GPU nodes exist, and nodes without a summary say none.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gproc::client::{Client, ClientOptions};
use gproc::format::gpus::{Gpu, Gpus};
use gproc::format::summary;
use gproc::format::table::{PsRow, Table};
use gproc::net::Address;
use gproc::sim::{SimCluster, SimOptions};

use crate::common::*;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// Makes the character device node `dir/name` (`major:minor`).
fn mknod(dir: &Path, name: &str, major: u32, minor: u32) -> CString {
    let path = dir.join(name);
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod touches no other memory.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o600,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    c
}

/// `argv`, started holding `O_PATH` descriptors of `nodes`, each at the
/// descriptor number given, and `/dev/null` at descriptors 3 to
/// `2 + filler` (so the process has more descriptors than a cap, before
/// the nodes'). The descriptors are made between fork and exec, without
/// close-on-exec, at fixed numbers (the child's others, the parent's, are
/// closed at exec and may be anywhere), so the program (and what it
/// execs) keeps exactly them.
fn holder(argv: &[&str], nodes: &[(CString, i32)], filler: i32) -> Proc {
    let null = CString::new("/dev/null").unwrap();
    let nodes: Vec<(CString, i32)> = nodes.to_vec();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: only async-signal-safe calls (open, dup2, close) on
    // memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if filler > 0 {
                let fd = libc::open(null.as_ptr(), libc::O_RDONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for k in 3..3 + filler {
                    if libc::dup2(fd, k) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if !(3..3 + filler).contains(&fd) {
                    libc::close(fd);
                }
            }
            for (path, at) in &nodes {
                let fd = libc::open(path.as_ptr(), libc::O_PATH);
                if fd < 0 || libc::dup2(fd, *at) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if fd != *at {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    Proc(cmd.spawn().unwrap())
}

/// `gproc ARGS`: exit status, stdout, stderr.
fn gproc_run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(gproc())
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

/// What `user` reads on this node of `pid`'s descriptor `fd`:
/// `Some("major:minor")` (hex, as `stat` prints them) or `None` when the
/// kernel refuses.
fn local_device_as(user: &str, pid: i32, fd: i32) -> Option<String> {
    let out = Command::new("setpriv")
        .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
        .args(["stat", "-L", "-c", "%t:%T"])
        .arg(format!("/proc/{pid}/fd/{fd}"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_holding_an_nvidia_numbered_node_shows_that_gpu() {
    if !require("root", rustix::process::geteuid().is_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let gpu3 = mknod(dir.path(), "plain-name", 195, 3);
    let ctl = mknod(dir.path(), "other-name", 195, 255);
    let gpu0 = mknod(dir.path(), "a", 195, 0);
    let render1 = mknod(dir.path(), "b", 226, 129);
    let sleep = ["sleep", "600"];
    let holds = holder(&sleep, &[(gpu3.clone(), 3)], 0);
    let holds_ctl = holder(&sleep, &[(ctl.clone(), 3)], 0);
    let nothing = holder(&sleep, &[], 0);
    // Two devices, a DRM render node among them, at descriptors 5 and 4.
    let two = holder(&sleep, &[(render1, 4), (gpu0, 5)], 0);
    // 3..=14 are /dev/null, the GPU at 30: past a cap of 8.
    let past_cap = holder(&sleep, &[(gpu3.clone(), 30)], 12);
    let pid = |p: &Proc| p.0.id() as i32;
    // The test user: one holder that is wholly theirs, one they see by
    // its real uid only (its effective uid is root's).
    let user = (have("useradd") && have("setpriv")).then(|| test_user("gproc-c2"));
    let as_user = |reuid: &str| {
        let argv = [
            "setpriv",
            reuid,
            "gproc-c2",
            "--regid",
            "gproc-c2",
            "--init-groups",
            "--",
            "sleep",
            "600",
        ];
        holder(&argv, &[(gpu3.clone(), 3)], 0)
    };
    let users_own = user.map(|_| as_user("--reuid"));
    let users_mixed = user.map(|_| as_user("--ruid"));
    if let (Some((uid, _)), Some(own), Some(mixed)) = (user, &users_own, &users_mixed) {
        // setpriv has switched and exec'd sleep (before, the row is
        // root's and the descriptors were not yet the user's).
        wait_for("the user's holders switched", || {
            uids(own.0.id()) == [uid, uid, uid]
                && uids(mixed.0.id()).first() == Some(&uid)
                && [own, mixed].iter().all(|p| {
                    std::fs::read_to_string(format!("/proc/{}/comm", p.0.id()))
                        .is_ok_and(|c| c.trim() == "sleep")
                })
        });
    }

    let sock = dir.path().join("agent.sock");
    let _agent = Proc(
        Command::new(gproc())
            .args(["agent", "--gpus", "always", "--gpu-fd-cap", "8", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });

    // 1. The agent's summary.
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let text = root.read_all(".gproc/ps").await.unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("\ngpu_scan 1\n"),
        "the summary says it looked"
    );
    let s = summary::parse(&text).unwrap();
    let at_agent = |p: &Proc| {
        s.procs
            .iter()
            .find(|e| e.pid == pid(p))
            .unwrap_or_else(|| panic!("pid {} in the summary", pid(p)))
            .gpus
            .as_deref()
            .cloned()
    };
    let nvidia3 = Gpus::new([Gpu::Nvidia(3)], false);
    assert_eq!(at_agent(&holds), Some(nvidia3.clone()));
    assert_eq!(
        at_agent(&holds_ctl),
        Some(Gpus::default()),
        "nvidiactl is no GPU"
    );
    assert_eq!(at_agent(&nothing), Some(Gpus::default()));
    assert_eq!(
        at_agent(&two),
        Some(Gpus::new([Gpu::Nvidia(0), Gpu::Render(1)], false))
    );
    assert_eq!(at_agent(&past_cap), Some(Gpus::new([], true)));
    if let (Some(own), Some(mixed)) = (&users_own, &users_mixed) {
        assert_eq!(at_agent(own), Some(nvidia3.clone()));
        let flagged = at_agent(mixed).expect("scanned as root");
        assert_eq!(flagged.devices, vec![Gpu::Nvidia(3)]);
        assert!(flagged.restricted, "its owner cannot read it: {flagged:?}");
    }

    // 2. The aggregator's /ps, as root.
    let pg = Port::new();
    let config = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n",
        pg.addr(),
        sock.display()
    );
    let _agg = start_aggregator(dir.path(), &config, &pg);
    let server = pg.addr();
    let agg = Client::connect(&Address::Tcp(server.clone()), opts())
        .await
        .unwrap();
    let read_ps = |uname: &'static str, uid: u32| {
        let agg = &agg;
        async move {
            let a = agg.attach(uname, "", Some(uid)).await.unwrap();
            let ps = String::from_utf8(a.read_all("ps").await.unwrap().to_vec()).unwrap();
            Table::<PsRow>::parse(&ps).unwrap().rows
        }
    };
    let rows = read_ps("root", 0).await;
    let gpu_of = |rows: &[PsRow], p: &Proc| {
        rows.iter()
            .find(|r| r.pid == pid(p))
            .map(|r| r.gpu.clone())
            .unwrap_or_else(|| panic!("pid {} in /ps", pid(p)))
    };
    assert_eq!(gpu_of(&rows, &holds).as_deref(), Some("nvidia3"));
    assert_eq!(gpu_of(&rows, &holds_ctl), None);
    assert_eq!(gpu_of(&rows, &nothing), None);
    assert_eq!(gpu_of(&rows, &two).as_deref(), Some("nvidia0,render1"));
    assert_eq!(gpu_of(&rows, &past_cap).as_deref(), Some("+"));

    // 3. gproc ps -o gpu and --json.
    let pids = [&holds, &holds_ctl, &nothing, &past_cap]
        .iter()
        .map(|p| pid(p).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let (rc, out, err) = gproc_run(&[
        "ps",
        "--server",
        &server,
        "-p",
        &pids,
        "-o",
        "pid,gpu",
        "--sort",
        "pid",
        "--no-header",
    ]);
    assert_eq!(rc, 0, "{err}");
    let mut want: Vec<(i32, &str)> = vec![
        (pid(&holds), "nvidia3"),
        (pid(&holds_ctl), "-"),
        (pid(&nothing), "-"),
        (pid(&past_cap), "+"),
    ];
    want.sort();
    let got: Vec<(i32, String)> = out
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(i32, String)> = want.into_iter().map(|(p, g)| (p, g.into())).collect();
    assert_eq!(got, want, "{out}");
    let (rc, out, err) = gproc_run(&["ps", "--server", &server, "-p", &pids, "--json"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for o in v.as_array().unwrap() {
        let p = o["pid"].as_i64().unwrap() as i32;
        let want = if p == pid(&holds) {
            serde_json::json!("nvidia3")
        } else if p == pid(&past_cap) {
            serde_json::json!("+")
        } else {
            serde_json::Value::Null
        };
        assert_eq!(o["gpu"], want, "{o}");
    }

    // 4. The user: /ps shows them what the node's kernel lets them read.
    let (Some((uid, _)), Some(own), Some(mixed)) = (user, &users_own, &users_mixed) else {
        eprintln!("no useradd/setpriv: the per-user rule is covered by tree::tables's unit test");
        return;
    };
    assert_eq!(
        local_device_as("gproc-c2", pid(own), 3).as_deref(),
        Some("c3:3"),
        "the user reads their own process's descriptor"
    );
    assert_eq!(
        local_device_as("gproc-c2", pid(mixed), 3),
        None,
        "the kernel refuses the user the other's descriptors"
    );
    let theirs = read_ps("gproc-c2", uid).await;
    assert_eq!(gpu_of(&theirs, own).as_deref(), Some("nvidia3"));
    assert_eq!(gpu_of(&theirs, mixed), None, "withheld");
    assert!(
        theirs.iter().all(|r| r.pid != pid(&holds)),
        "root's rows hidden"
    );
    // Root is shown both.
    let rows = read_ps("root", 0).await;
    assert_eq!(gpu_of(&rows, own).as_deref(), Some("nvidia3"));
    assert_eq!(gpu_of(&rows, mixed).as_deref(), Some("nvidia3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_gpu_columns_are_the_nodes_summaries() {
    // Seed 9: its first rack (32 nodes) has 8 GPUs a node, the second 4
    // (48 nodes: small, as other tests share this process's memory).
    let cluster = SimCluster::start(SimOptions {
        nodes: 48,
        seed: 9,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 16, 0, 1),
        no_summary: 0.2,
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let (agg, stop, _) = aggregate_sim(&cluster, KEEP_FOR_THE_TEST).await;
    let c = Client::connect(&agg.addresses[0], opts()).await.unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let ps = String::from_utf8(root.read_all("ps").await.unwrap().to_vec()).unwrap();
    let rows = Table::<PsRow>::parse(&ps).unwrap().rows;
    let (mut gpu_nodes, mut fallback_rows) = (std::collections::BTreeSet::new(), 0);
    for n in cluster.nodes() {
        let mine: Vec<&PsRow> = rows.iter().filter(|r| r.node == n.name).collect();
        if !n.has_summary {
            // The per-process fallback does not say: none shown.
            assert!(mine.iter().all(|r| r.gpu.is_none()), "{}", n.name);
            fallback_rows += mine.len();
            continue;
        }
        let nc = Client::connect(&n.address(), opts()).await.unwrap();
        let nroot = nc.attach("root", "/proc", Some(0)).await.unwrap();
        let s = summary::parse(&nroot.read_all(".gproc/ps").await.unwrap()).unwrap();
        assert_eq!(mine.len(), s.procs.len(), "{}", n.name);
        for r in mine {
            let p = s.procs.iter().find(|p| p.pid == r.pid).unwrap();
            let want = p.gpus.as_deref().and_then(Gpus::display);
            assert_eq!(r.gpu, want, "{} pid {}", n.name, r.pid);
            if let Some(g) = &r.gpu {
                assert_eq!(r.step.as_deref(), Some("0"), "{} pid {}", n.name, r.pid);
                gpu_nodes.insert((n.name.clone(), g.clone()));
            }
        }
    }
    assert!(fallback_rows > 0);
    let mut sizes = std::collections::BTreeSet::new();
    for (node, g) in &gpu_nodes {
        let k = g.split(',').count();
        let want: Vec<String> = (0..k).map(|i| format!("nvidia{i}")).collect();
        assert_eq!(*g, want.join(","), "{node}");
        sizes.insert(k);
    }
    assert_eq!(sizes, [4, 8].into_iter().collect(), "4- and 8-GPU nodes");
    stop.cancel();
}

//! SIGHUP reloads the aggregator's config: a bad file is refused and the
//! running config kept; a good one adds and removes nodes without dropping
//! the connections of nodes that stay.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn nodes(addr: &str) -> String {
    let out = Command::new(gproc())
        .args(["cat", "--server", addr, "nodes"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_reloads_good_configs_and_keeps_the_old_one_on_errors() {
    let (pa, pg) = (Port::new(), Port::new());
    let _agent = start_agent(&pa);
    let dir = tempfile::tempdir().unwrap();
    let head = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\"]\nauth = \"none\"\n\n[views]\nmode = \"off\"\n\n"
    );
    let node =
        |name: &str| format!("[[nodes]]\nnames = \"{name}\"\naddress = \"127.0.0.1:{pa}\"\n\n");
    let mut agg = start_aggregator(dir.path(), &format!("{head}{}", node("n1")), &pg);
    let addr = format!("127.0.0.1:{pg}");
    let pid = agg.0.id() as i32;
    // Use n1 so that its connection exists before the reloads.
    let out = Command::new(gproc())
        .args(["cat", "--server", &addr, "n1/loadavg"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let path = dir.path().join("gproc.toml");

    // A bad file: refused, the running config stays.
    std::fs::write(
        &path,
        format!("{head}{}[cache]\ndefault_ttl = \"soon\"\n", node("n2")),
    )
    .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    let n = nodes(&addr);
    assert!(n.contains("n1 up") && !n.contains("n2"), "{n}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("reload refused") && log.contains("default_ttl"),
        "{log}"
    );

    // A good file: n2 added, n1 kept up (same connection), n3 never there.
    std::fs::write(&path, format!("{head}{}{}", node("n1"), node("n2"))).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_until("n2 in /nodes", || nodes(&addr).contains("n2 "));
    // Not used since the reload, so "up" (not "idle") means the node and
    // its connection were kept rather than replaced.
    assert!(nodes(&addr).contains("n1 up"));
    let out = Command::new(gproc())
        .args(["cat", "--server", &addr, "n2/loadavg"])
        .output()
        .unwrap();
    assert!(out.status.success());

    // Removing n1: it disappears from the tree.
    std::fs::write(&path, format!("{head}{}", node("n2"))).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_until("n1 gone", || !nodes(&addr).contains("n1 "));
    let out = Command::new(gproc())
        .args(["cat", "--server", &addr, "n1/loadavg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        agg.0.try_wait().unwrap().is_none(),
        "the aggregator kept running"
    );
    let _ = agg.0.kill();
}

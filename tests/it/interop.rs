//! Interop with 9P clients nobody here wrote, over loopback: diod's
//! `diodls`/`diodcat` (9P2000.L), the Python `p9fs` raw client (9P2000,
//! 9P2000.u, 9P2000.L) and `python-9p` (9P2000), against `gproc agent`,
//! against diod itself (the same checks, so both servers answer alike), and
//! against the aggregator's node directories. The checks compare what they
//! read with this machine's /proc; see tests/interop/README.md.

use std::process::Command;

use crate::common::*;

fn py9p_ready() -> bool {
    require(
        "the p9fs venv",
        peers_dir().join("venv-p9fs/bin/python").exists(),
    )
}

fn python9p_ready() -> bool {
    require(
        "the python-9p venv",
        peers_dir().join("venv-python9p/bin/python").exists(),
    )
}

fn diod_tools_ready() -> bool {
    require("diodls/diodcat", have("diodls") && have("diodcat"))
}

fn py9p(port: u16, dialect: &str, aname: &str) {
    run_script(
        Command::new("python3")
            .arg(repo().join("tests/interop/py9p_check.py"))
            .args(["127.0.0.1", &port.to_string(), dialect, aname]),
    );
}

fn python9p(port: u16, aname: &str) {
    run_script(
        Command::new("python3")
            .arg(repo().join("tests/interop/python9p_check.py"))
            .args(["127.0.0.1", &port.to_string(), aname]),
    );
}

fn diod_tools(port: u16, aname: &str) {
    run_script(
        Command::new("bash")
            .arg(repo().join("tests/interop/diod_tools.sh"))
            .args([&format!("127.0.0.1:{port}"), aname]),
    );
}

#[test]
fn agent_is_read_by_diod_tools() {
    if !diod_tools_ready() {
        return;
    }
    let port = Port::new();
    let _a = start_agent(&port);
    diod_tools(port.n, "/proc");
}

#[test]
fn agent_is_read_by_py9p_in_every_dialect() {
    if !py9p_ready() {
        return;
    }
    let port = Port::new();
    let _a = start_agent(&port);
    for d in ["9P2000.L", "9P2000.u", "9P2000"] {
        py9p(port.n, d, "/proc");
    }
}

#[test]
fn agent_is_read_by_python9p() {
    if !python9p_ready() {
        return;
    }
    let port = Port::new();
    let _a = start_agent(&port);
    python9p(port.n, "");
}

/// The same checks against diod prove the checks are about 9P, not about
/// our own server's habits.
#[test]
fn diod_passes_the_same_dotl_checks() {
    if !py9p_ready() || !diod_tools_ready() {
        return;
    }
    let port = free_port();
    let Some(_d) = start_diod(port) else { return };
    diod_tools(port, "/proc");
    // diod lets `..` climb above the export root (qid of the host's /); the
    // check is about a server that keeps it at the root, so it is excused.
    run_script(
        Command::new("python3")
            .arg(repo().join("tests/interop/py9p_check.py"))
            .args(["127.0.0.1", &port.to_string(), "9P2000.L", "/proc"])
            .env("P9_XFAIL", "walk-dotdot-at-root"),
    );
}

#[test]
fn aggregator_node_directories_pass_the_same_checks() {
    if !py9p_ready() || !python9p_ready() || !diod_tools_ready() {
        return;
    }
    let (pa, pd, pg) = (Port::new(), free_port(), Port::new());
    let _a = start_agent(&pa);
    let Some(_d) = start_diod(pd) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\"]\nauth = \"none\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n\n\
         [[nodes]]\nnames = \"d1\"\naddress = \"127.0.0.1:{pd}\"\n\n\
         [[cache.rule]]\npath = \"/\"\nttl = \"never\"\n\n[views]\nmode = \"off\"\n"
    );
    // The root listing rule: the checks compare the pid list with the live
    // /proc, which a cached listing (1 s by default) may miss by design.
    let _g = start_aggregator(dir.path(), &cfg, &pg);
    for d in ["9P2000.L", "9P2000.u", "9P2000"] {
        py9p(pg.n, d, "/n1");
    }
    py9p(pg.n, "9P2000.L", "/d1");
    python9p(pg.n, "/n1");
    diod_tools(pg.n, "/n1");
    diod_tools(pg.n, "/d1");
    // The merged root lists the synthesized files and both nodes.
    let out = Command::new("diodls")
        .args(["-s", &format!("127.0.0.1:{pg}"), "-a", "/", "/"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    for n in ["nodes", "ps", "load", "pid", "n1", "d1"] {
        assert!(
            names.lines().any(|l| l == n),
            "{n} missing from the merged root: {names}"
        );
    }
}

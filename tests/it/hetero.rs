//! Heterogeneous nodes, "Opterons and G5s": the agent built for big-endian
//! powerpc64 and for aarch64 (`.ci/setup-cross.sh`), run under qemu-user
//! as nodes of an x86_64 aggregator beside a native agent and diod; and
//! the aggregator built for powerpc64 over x86_64 agents, so the codec's
//! byte order is exercised in both directions. Every table and a node file
//! of every node are read. And a Plan 9 style node (the p9fs reference
//! server over 9P2000.u) beside a Linux one in the same merged tree.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::*;

/// A cross-built gproc and how to run it.
struct Cross {
    triple: &'static str,
    bin: PathBuf,
    qemu: &'static str,
    sysroot: &'static str,
}

const TARGETS: [(&str, &str, &str); 2] = [
    (
        "powerpc64-unknown-linux-gnu",
        "qemu-ppc64",
        "/usr/powerpc64-linux-gnu",
    ),
    (
        "aarch64-unknown-linux-gnu",
        "qemu-aarch64",
        "/usr/aarch64-linux-gnu",
    ),
];

/// The cross builds, or `None` after saying loudly why not. A failed
/// download in `.ci/setup-cross.sh` skips (CI goes on, as the issue asks);
/// the script not run at all is a missing peer (fails under CI).
fn cross_builds() -> Option<Vec<Cross>> {
    let dir = repo().join("target/cross");
    let status = std::fs::read_to_string(dir.join("STATUS"));
    let Ok(status) = status else {
        require("the cross-built gproc (run .ci/setup-cross.sh)", false);
        return None;
    };
    if let Some(why) = status.strip_prefix("failed:") {
        eprintln!("\n!!! SKIPPED: heterogeneous nodes: .ci/setup-cross.sh failed:{why} !!!\n");
        return None;
    }
    let mut out = Vec::new();
    for (triple, qemu, sysroot) in TARGETS {
        let bin = dir.join(format!("gproc-{triple}"));
        if !require(
            &format!("{} and {qemu}", bin.display()),
            bin.exists() && have(qemu),
        ) {
            return None;
        }
        out.push(Cross {
            triple,
            bin,
            qemu,
            sysroot,
        });
    }
    Some(out)
}

impl Cross {
    /// `gproc ARGS` under qemu-user.
    fn command(&self) -> Command {
        let mut c = Command::new(self.qemu);
        c.args(["-L", self.sysroot]).arg(&self.bin);
        c
    }

    /// Its agent on `port` (the inherited socket passes through qemu).
    fn agent(&self, port: &Port) -> Proc {
        start_agent_with(port, self.command())
    }
}

/// `gproc cat --server ADDR PATH` (native), as text.
fn cat(addr: &str, path: &str) -> String {
    let out = Command::new(gproc())
        .args(["cat", "--server", addr, path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cat {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of `table` whose first column is `node`.
fn rows_of<'a>(table: &'a str, node: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(node))
        .collect()
}

/// The cell of column `col` (by header name) in `node`'s row of `table`.
fn cell(table: &str, node: &str, col: &str) -> String {
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let i = header.iter().position(|h| *h == col).unwrap();
    let row = rows_of(table, node);
    row[0].split_whitespace().nth(i).unwrap().to_string()
}

/// Checks every table and a node file of every node through `addr`.
fn check_tables(addr: &str, nodes: &[&str]) {
    let ps = cat(addr, "ps");
    let load = cat(addr, "load");
    let list = cat(addr, "nodes");
    for n in nodes {
        assert!(rows_of(&ps, n).len() > 1, "{n}: no processes in /ps:\n{ps}");
        assert_eq!(rows_of(&load, n).len(), 1, "{n} in /load:\n{load}");
        let row = rows_of(&list, n);
        assert!(
            row.len() == 1 && row[0].contains(" up "),
            "{n} up in /nodes:\n{list}"
        );
        let la = cat(addr, &format!("{n}/loadavg"));
        assert_eq!(la.split_whitespace().count(), 5, "{n}/loadavg: {la}");
        let st = cat(addr, &format!("{n}/1/status"));
        assert!(st.starts_with("Name:"), "{n}/1/status: {st}");
    }
    // The process tables of all the nodes describe one machine's /proc:
    // pid 1 is the same command everywhere, whatever byte order read it.
    let init: Vec<String> = nodes
        .iter()
        .map(|n| {
            rows_of(&ps, n)
                .into_iter()
                .find(|l| l.split_whitespace().nth(1) == Some("1"))
                .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        init.windows(2).all(|w| w[0] == w[1]) && !init[0].is_empty(),
        "pid 1 as each node reports it: {init:?}\n{ps}"
    );
}

#[test]
fn big_endian_and_arm_nodes_beside_native_ones_both_ways() {
    let Some(cross) = cross_builds() else { return };
    let dir = tempfile::tempdir().unwrap();

    // x86_64 aggregator over: native agent, ppc64 agent, aarch64 agent, diod.
    let native = Port::new();
    let _native = start_agent(&native);
    let ports: Vec<Port> = cross.iter().map(|_| Port::new()).collect();
    let _agents: Vec<Proc> = cross.iter().zip(&ports).map(|(c, p)| c.agent(p)).collect();
    let dport = free_port();
    let diod = start_diod(dport);
    let mut nodes = format!(
        "[[nodes]]\nnames = \"x86\"\naddress = \"{}\"\naname = \"\"\n\n",
        native.addr()
    );
    let mut names = vec!["x86"];
    for (c, p) in cross.iter().zip(&ports) {
        let name = if c.triple.starts_with("powerpc64") {
            "ppc64"
        } else {
            "arm64"
        };
        nodes.push_str(&format!(
            "[[nodes]]\nnames = \"{name}\"\naddress = \"{}\"\naname = \"\"\n\n",
            p.addr()
        ));
        names.push(name);
    }
    if diod.is_some() {
        nodes.push_str(&format!(
            "[[nodes]]\nnames = \"diod\"\naddress = \"127.0.0.1:{dport}\"\naname = \"/proc\"\n\n"
        ));
        names.push("diod");
    }
    let pg = Port::new();
    let cfg = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n[views]\nadmin_users = [\"root\"]\n\n{nodes}",
        pg.addr()
    );
    let _agg = start_aggregator(dir.path(), &cfg, &pg);
    check_tables(&pg.addr(), &names);
    // /load says what each node is; `gproc ps --arch` selects by it.
    let load = cat(&pg.addr(), "load");
    let arch_of = |n: &str| cell(&load, n, "ARCH");
    assert_eq!(arch_of("x86"), std::env::consts::ARCH);
    // /nodes shows the machine from each node's last summary.
    let nodes = cat(&pg.addr(), "nodes");
    let arch_in_nodes = |n: &str| cell(&nodes, n, "ARCH");
    assert_eq!(arch_in_nodes("ppc64"), "ppc64", "{nodes}");
    assert_eq!(arch_in_nodes("arm64"), "aarch64", "{nodes}");
    assert_eq!(arch_of("ppc64"), "ppc64");
    assert_eq!(arch_of("arm64"), "aarch64");
    if diod.is_some() {
        assert_eq!(arch_of("diod"), "-", "no summary: unknown");
    }
    let out = Command::new(gproc())
        .args([
            "ps",
            "--server",
            &pg.addr(),
            "--arch",
            "ppc64,aarch64",
            "-o",
            "node",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picked: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(
        picked,
        ["arm64", "ppc64"].map(String::from).into_iter().collect(),
        "ps --arch"
    );

    // The powerpc64 aggregator over the x86_64 agent and the aarch64 one.
    let ppc = cross
        .iter()
        .find(|c| c.triple.starts_with("powerpc64"))
        .unwrap();
    let arm_port = &ports[cross
        .iter()
        .position(|c| c.triple.starts_with("aarch64"))
        .unwrap()];
    let up = Port::new();
    let path = dir.path().join("ppc-aggregator.toml");
    let ppc_cfg = format!(
        "[server]\nlisten = [\"fd:3\"]\nauth = \"none\"\n\n[views]\nadmin_users = [\"root\"]\n\n\
         [[nodes]]\nnames = \"x86\"\naddress = \"{}\"\naname = \"\"\n\n\
         [[nodes]]\nnames = \"arm64\"\naddress = \"{}\"\naname = \"\"\n",
        native.addr(),
        arm_port.addr()
    );
    std::fs::write(&path, ppc_cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("ppc-serve.log")).unwrap();
    let mut cmd = ppc.command();
    cmd.args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log);
    let _ppc_agg = Proc(up.spawn(&mut cmd, |_, _| {}));
    wait_for_9p(&up.addr());
    check_tables(&up.addr(), &["x86", "arm64"]);
}

/// A Plan 9 machine's `/proc` as its 9P2000.u server exports it (the
/// p9fs reference server over a directory): `status` in Plan 9's fixed
/// columns, no `stat`, `meminfo` or `loadavg`.
fn plan9_proc(dir: &std::path::Path) {
    for (pid, line) in [
        (
            1,
            "init            bootes          Await             0     10     100       0       0       0     100      10",
        ),
        (
            42,
            "rc              glenda          Ready             5     20     300       0       0       0     200      10",
        ),
    ] {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("status"), format!("{line}\n")).unwrap();
    }
    std::fs::write(dir.join("README"), "a Plan 9 cpu server\n").unwrap();
}

/// The tables' notes, as `gproc ps` would read them.
fn notes(table: &str) -> Vec<String> {
    table
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn a_plan9_node_and_a_down_one_sit_in_the_merged_tree_without_breaking_tables() {
    let python = peers_dir().join("venv-p9fs/bin/python");
    if !require("the p9fs venv", python.exists()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("plan9");
    plan9_proc(&root);
    let p9port = free_port();
    let _p9 = Proc(
        Command::new(&python)
            .args(["-m", "py9p", "-D", "-a", "127.0.0.1", "-p"])
            .arg(p9port.to_string())
            .arg("-r")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(&format!("127.0.0.1:{p9port}"));
    let native = Port::new();
    let _native = start_agent(&native);
    let pg = Port::new();
    let cfg = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n[views]\nadmin_users = [\"root\"]\n\n\
         [[nodes]]\nnames = \"x86\"\naddress = \"{}\"\naname = \"\"\n\n\
         [[nodes]]\nnames = \"plan9\"\naddress = \"127.0.0.1:{p9port}\"\naname = \"\"\ndialect = \"9P2000.u\"\n\n\
         [[nodes]]\nnames = \"gone\"\naddress = \"127.0.0.1:{}\"\naname = \"\"\n",
        pg.addr(),
        native.addr(),
        free_port()
    );
    let _agg = start_aggregator(dir.path(), &cfg, &pg);
    let addr = pg.addr();

    // Its files, through the merged tree, as the Plan 9 server has them.
    assert_eq!(
        cat(&addr, "plan9/42/status"),
        std::fs::read_to_string(root.join("42/status")).unwrap()
    );
    assert_eq!(cat(&addr, "plan9/README"), "a Plan 9 cpu server\n");
    let ls = Command::new(gproc())
        .args(["ls", "--server", &addr, "plan9"])
        .output()
        .unwrap();
    let names: std::collections::BTreeSet<String> = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        names,
        ["1", "42", "README"]
            .map(String::from)
            .into_iter()
            .collect()
    );

    // The tables: the Linux node's rows; the Plan 9 node neither a row of
    // zeros nor missing, but said to be foreign.
    for table in ["ps", "load"] {
        let t = cat(&addr, table);
        assert!(!rows_of(&t, "x86").is_empty(), "x86 in /{table}:\n{t}");
        assert!(rows_of(&t, "plan9").is_empty(), "plan9 in /{table}:\n{t}");
        let n = notes(&t);
        assert_eq!(n.len(), 2, "/{table} notes: {n:?}");
        assert!(n[0].starts_with("# missing gone: "), "{n:?}");
        assert!(n[1].starts_with("# foreign plan9: "), "{n:?}");
    }
    let nodes = cat(&addr, "nodes");
    assert_eq!(cell(&nodes, "plan9", "STATE"), "up", "{nodes}");
    assert_eq!(cell(&nodes, "plan9", "DIALECT"), "9P2000.u", "{nodes}");
    assert_eq!(cell(&nodes, "x86", "STATE"), "up", "{nodes}");

    // `gproc ps` lists the Linux node, says why plan9 has no rows, and
    // fails only for what its selection misses: a foreign node is not
    // missing, and a down node outside `-n` is not this listing's.
    let ps = |nodes: Option<&str>| {
        let mut c = Command::new(gproc());
        c.args(["ps", "--server", &addr, "-o", "node"]);
        if let Some(n) = nodes {
            c.args(["-n", n]);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = ps(Some("x86,plan9"));
    assert!(ok, "{err}");
    assert!(
        err.contains("foreign plan9") && !err.contains("gone"),
        "{err}"
    );
    assert!(out.contains("x86"));
    let (ok, _, err) = ps(None);
    assert!(!ok && err.contains("missing gone"), "{err}");
    let (ok, _, err) = ps(Some("gone"));
    assert!(!ok && err.contains("missing gone"), "{err}");
}

//! The real Linux v9fs client: Debian's 6.1 and 6.12 kernels booted under
//! qemu mount our servers over loopback (the guest reaches the host's
//! 127.0.0.1 as 10.0.2.2) with version=9p2000.L, access=any/client/user,
//! cache=none and cache=loose, and run ls, cat, readlink, stat, find and df
//! (tests/v9fs/guest-check.sh). One test, run step by step, because each VM
//! takes a core.

use std::process::Command;

use crate::common::*;

fn matrix(port: u16, aname: &str, env: &[(&str, &str)]) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("tests/v9fs/run-matrix.sh"))
        .args([&port.to_string(), aname]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_script(&mut cmd);
}

#[test]
fn linux_v9fs_mounts_the_agent_the_aggregator_and_diod() {
    let kernels = peers_dir().join("kernels");
    let ready =
        have("qemu-system-x86_64") && kernels.join("6.1").exists() && kernels.join("6.12").exists();
    if !require("qemu-system-x86_64 and the Debian kernels", ready) {
        return;
    }
    // The agent: the full matrix.
    let pa = Port::new();
    let _a = start_agent(&pa);
    matrix(pa.n, "/proc", &[]);

    // The aggregator, attached to one node's directory (aname=/n1): the
    // same matrix. The root listing is not cached so that the pid list
    // matches the live /proc the checks compare with.
    let pg = Port::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\"]\nauth = \"none\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n\n\
         [[cache.rule]]\npath = \"/\"\nttl = \"never\"\n\n\
         # Views off: v9fs with access=any claims uid -2, which views would\n\
         # rightly show nothing.\n[views]\nmode = \"off\"\n"
    );
    let _g = start_aggregator(dir.path(), &cfg, &pg);
    // The session code is the agent's; three VMs cover what the tree adds
    // (qids, snapshots, cache) on both kernels and both cache modes.
    matrix(pg.n, "/n1", &[("V9FS_OPTSETS", "cache=none,access=client")]);
    matrix(
        pg.n,
        "/n1",
        &[
            ("V9FS_KERNELS", "6.12"),
            ("V9FS_OPTSETS", "cache=loose,access=client"),
        ],
    );

    // diod itself, on the newer kernel: the same checks pass on the
    // reference server.
    let pd = free_port();
    if let Some(_d) = start_diod(pd) {
        matrix(
            pd,
            "/proc",
            &[
                ("V9FS_KERNELS", "6.12"),
                ("V9FS_OPTSETS", "cache=none,access=client"),
            ],
        );
    }
}

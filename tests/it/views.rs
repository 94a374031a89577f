//! Identity and per-user views with real credentials: Unix socket peers
//! (SO_PEERCRED) as root and as unprivileged users, and TCP with MUNGE
//! (real munged; diod's own clients authenticate with it).

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::common::*;

const NOBODY: u32 = 65534;
const USER2: u32 = 64002;

fn as_user(uid: u32, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(gproc())
        .args(args)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run gproc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    require(
        "root (to run clients as other users)",
        unsafe { libc::geteuid() } == 0,
    )
}

/// A node (our agent) and an aggregator on TCP + a Unix socket.
struct Cluster {
    _agent: Proc,
    _agg: Proc,
    tcp: String,
    unix: String,
    _dir: tempfile::TempDir,
}

fn cluster(auth: &str) -> Cluster {
    let (pa, pg) = (Port::new(), Port::new());
    let agent = start_agent(&pa);
    let dir = tempfile::tempdir().unwrap();
    // World-traversable so the unprivileged test users reach the socket.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let unix = dir.path().join("g.sock").display().to_string();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\", \"unix:{unix}\"]\nauth = \"{auth}\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n\n\
         [[nodes]]\nnames = \"n2\"\naddress = \"127.0.0.1:{pa}\"\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[views.allot]]\nuser = {NOBODY}\nnodes = \"n1\"\n\n\
         [[views.allot]]\nuser = {USER2}\nnodes = \"n1,n2\"\n"
    );
    let agg = start_aggregator(dir.path(), &cfg, &pg);
    Cluster {
        _agent: agent,
        _agg: agg,
        tcp: format!("127.0.0.1:{pg}"),
        unix: format!("unix:{unix}"),
        _dir: dir,
    }
}

#[test]
fn unix_socket_peers_get_their_own_view() {
    if !root_or_skip() {
        return;
    }
    let c = cluster("none");
    // A process of NOBODY's, and one of USER2's.
    let mut mine = Command::new("sleep")
        .arg("60")
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    let mut theirs = Command::new("sleep")
        .arg("61")
        .uid(USER2)
        .gid(USER2)
        .spawn()
        .unwrap();
    let (mp, tp) = (mine.id(), theirs.id());

    // The admin sees both nodes and both processes.
    let (ok, ps, err) = as_user(0, &["ps", "--server", &c.unix, "-o", "node,pid"]);
    assert!(ok, "{err}");
    assert!(
        ps.contains(&format!("n2   {tp}"))
            || ps
                .lines()
                .any(|l| l.starts_with("n2") && l.ends_with(&tp.to_string())),
        "{ps}"
    );

    // NOBODY sees only n1 and only their own processes.
    let (ok, ps, err) = as_user(NOBODY, &["ps", "--server", &c.unix, "-o", "node,user,pid"]);
    assert!(ok, "{err}");
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert!(rows.iter().all(|l| l.starts_with("n1 ")), "{ps}");
    assert!(rows.iter().all(|l| l.contains("nobody")), "{ps}");
    assert!(rows.iter().any(|l| l.ends_with(&mp.to_string())), "{ps}");
    let (_, ls, _) = as_user(NOBODY, &["ls", "--server", &c.unix, "/"]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        [
            "job", "jobs", "load", "metrics", "n1", "nodes", "pid", "ps", "top"
        ]
    );
    // Guessing paths to others' things gives "does not exist".
    for p in [
        format!("n1/{tp}/status"),
        "n2/loadavg".to_string(),
        "n1/1/status".to_string(),
        format!("pid/{tp}@n1"),
        "stats".to_string(),
    ] {
        let (ok, _, err) = as_user(NOBODY, &["cat", "--server", &c.unix, &p]);
        assert!(!ok && err.contains("does not exist"), "{p}: {err}");
    }
    assert!(
        as_user(
            NOBODY,
            &["cat", "--server", &c.unix, &format!("n1/{mp}/status")]
        )
        .0
    );
    // A non-root peer claiming uid 0 in Tattach is still itself.
    let (ok, out, err) = as_user(
        NOBODY,
        &["cat", "--server", &c.unix, "--uname", "root", "nodes"],
    );
    assert!(ok && !out.contains("n2"), "{out}{err}");

    let _ = (mine.kill(), theirs.kill(), mine.wait(), theirs.wait());
}

#[test]
fn tcp_needs_munge_and_gets_the_credentials_view() {
    if !root_or_skip() {
        return;
    }
    let ready = have("munge")
        && have("diodcat")
        && Command::new("sh")
            .args(["-c", "munge -n </dev/null | unmunge >/dev/null"])
            .status()
            .is_ok_and(|s| s.success());
    if !require(
        "munged and diodcat (run .ci/setup-munge.sh and .ci/setup-peers.sh)",
        ready,
    ) {
        return;
    }
    let c = cluster("munge");
    // diodcat authenticates with MUNGE (Tauth, credential written to the afid).
    let cat = |uid: u32, path: &str| {
        let out = Command::new("diodcat")
            .args(["-s", &c.tcp, "-a", "/", path])
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, nodes, err) = cat(0, "nodes");
    assert!(
        ok && nodes.contains("n1 ") && nodes.contains("n2 "),
        "{nodes}{err}"
    );
    let (ok, nodes, err) = cat(NOBODY, "nodes");
    assert!(
        ok && nodes.contains("n1 ") && !nodes.contains("n2 "),
        "{nodes}{err}"
    );
    let (ok, _, _) = cat(NOBODY, "n1/1/status");
    assert!(!ok, "nobody must not read root's process over TCP either");
    // Our own client authenticates the same way when the server asks.
    let (ok, out, err) = as_user(0, &["cat", "--server", &c.tcp, "nodes"]);
    assert!(ok && out.contains("n2 "), "{out}{err}");
    let (ok, out, err) = as_user(NOBODY, &["cat", "--server", &c.tcp, "nodes"]);
    assert!(
        ok && out.contains("n1 ") && !out.contains("n2 "),
        "{out}{err}"
    );
    // No credential at all: refused.
    assert!(
        !raw_attach(&c.tcp, None, 0),
        "an attach without authentication is refused"
    );

    // Forged and replayed credentials, by hand.
    let cred = Command::new("munge").arg("-n").output().unwrap().stdout;
    assert!(
        raw_attach(&c.tcp, Some(&cred), 0),
        "a fresh credential is accepted"
    );
    assert!(
        !raw_attach(&c.tcp, Some(&cred), 0),
        "the same credential again is a replay"
    );
    let fresh = Command::new("munge").arg("-n").output().unwrap().stdout;
    assert!(
        !raw_attach(&c.tcp, Some(&fresh), 1000),
        "a root credential cannot attach as uid 1000"
    );
    assert!(
        !raw_attach(&c.tcp, Some(b"MUNGE:forged:"), 0),
        "garbage is refused"
    );
}

/// Tversion, Tauth and Twrite of `cred` (if any), Tattach as `uid`:
/// whether attached.
fn raw_attach(addr: &str, cred: Option<&[u8]>, uid: u32) -> bool {
    use gproc::proto::*;
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let d = Dialect::P2000L;
    let mut rpc = |tag: u16, m: Tmessage| -> Rmessage {
        let f = Frame { tag, msg: m }.to_bytes(d).unwrap();
        s.write_all(&f).unwrap();
        let mut h = [0u8; 4];
        s.read_exact(&mut h).unwrap();
        let mut b = vec![0u8; u32::from_le_bytes(h) as usize];
        b[..4].copy_from_slice(&h);
        s.read_exact(&mut b[4..]).unwrap();
        Frame::<Rmessage>::decode(bytes::Bytes::from(b), d)
            .unwrap()
            .msg
    };
    rpc(
        NOTAG,
        Tmessage::Version(Tversion {
            msize: 65536,
            version: "9P2000.L".into(),
        }),
    );
    let Some(cred) = cred else {
        let a = Tattach {
            fid: 2,
            afid: NOFID,
            uname: String::new(),
            aname: String::new(),
            n_uname: uid,
        };
        return matches!(rpc(3, Tmessage::Attach(a)), Rmessage::Attach(_));
    };
    let r = rpc(
        1,
        Tmessage::Auth(Tauth {
            afid: 1,
            uname: String::new(),
            aname: String::new(),
            n_uname: uid,
        }),
    );
    assert!(matches!(r, Rmessage::Auth(_)), "{r:?}");
    let w = Twrite {
        fid: 1,
        offset: 0,
        data: bytes::Bytes::copy_from_slice(cred),
    };
    assert!(matches!(rpc(2, Tmessage::Write(w)), Rmessage::Write(_)));
    let a = Tattach {
        fid: 2,
        afid: 1,
        uname: String::new(),
        aname: String::new(),
        n_uname: uid,
    };
    matches!(rpc(3, Tmessage::Attach(a)), Rmessage::Attach(_))
}

/// An aggregator whose config has an empty admin list and no allotments
/// (views on: root alone is an administrator), over a live agent (n1) and
/// a node nobody answers for (n2), on a Unix socket the test users reach.
fn unallotted_cluster() -> (Proc, Proc, String, tempfile::TempDir) {
    let (pa, pg) = (Port::new(), Port::new());
    let agent = start_agent(&pa);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let unix = dir.path().join("g.sock").display().to_string();
    let dead = free_port();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\", \"unix:{unix}\"]\nauth = \"none\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n\n\
         [[nodes]]\nnames = \"n2\"\naddress = \"127.0.0.1:{dead}\"\n\n\
         [views]\nadmin_users = []\n"
    );
    let agg = start_aggregator(dir.path(), &cfg, &pg);
    (agent, agg, format!("unix:{unix}"), dir)
}

#[test]
fn an_empty_admin_list_is_no_admins_and_unallotted_users_see_where_they_run() {
    if !root_or_skip() {
        return;
    }
    let (_a, _g, unix, _dir) = unallotted_cluster();
    // NOBODY runs a shell whose command line carries terminal escapes.
    let mut mine = Command::new("sh")
        .args(["-c", "sleep 60; :", "\u{1b}]0;owned\u{7}\u{1b}[2J"])
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    let mp = mine.id();

    // Root is an administrator: both nodes, and n2 named as missing.
    let (_, ls, err) = as_user(0, &["ls", "--server", &unix, "/"]);
    assert!(ls.contains("n1") && ls.contains("n2"), "{ls}{err}");

    // NOBODY, with no allotment, is not an administrator (an empty admin
    // list used to make everyone one): n1, where their shell runs, with
    // only their processes; n2 neither exists nor is named in a note.
    let (ok, ps, err) = as_user(
        NOBODY,
        &["ps", "--server", &unix, "-o", "node,user,pid,command"],
    );
    assert!(ok, "{err}");
    let rows: Vec<&str> = ps.lines().skip(1).collect();
    assert!(
        rows.iter()
            .all(|l| l.starts_with("n1 ") && l.contains("nobody")),
        "{ps}"
    );
    assert!(rows.iter().any(|l| l.contains(&format!(" {mp} "))), "{ps}");
    assert!(!ps.contains('\u{1b}') && !ps.contains('\u{7}'), "{ps:?}");
    assert!(!err.contains("n2") && !err.contains('\u{1b}'), "{err}");
    let (_, ls, err) = as_user(NOBODY, &["ls", "--server", &unix, "/"]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        [
            "job", "jobs", "load", "metrics", "n1", "nodes", "pid", "ps", "top"
        ],
        "{err}"
    );
    for p in ["n2/loadavg", "n1/1/status", "stats"] {
        let (ok, _, err) = as_user(NOBODY, &["cat", "--server", &unix, p]);
        assert!(!ok && err.contains("does not exist"), "{p}: {err}");
    }
    assert!(as_user(NOBODY, &["cat", "--server", &unix, "n1/loadavg"]).0);

    // USER2 runs nothing: no node exists for them.
    let (_, ls, err) = as_user(USER2, &["ls", "--server", &unix, "/"]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        [
            "job", "jobs", "load", "metrics", "nodes", "pid", "ps", "top"
        ],
        "{err}"
    );
    let (_, nodes, _) = as_user(USER2, &["cat", "--server", &unix, "nodes"]);
    assert!(!nodes.contains("n1") && !nodes.contains("n2"), "{nodes}");

    let _ = (mine.kill(), mine.wait());
}

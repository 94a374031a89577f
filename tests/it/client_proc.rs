//! The client against our own agent serving this machine's /proc, in each
//! of the three dialects: what it reads must match the local files.

use std::sync::Arc;
use std::time::Duration;

use gproc::client::{Client, ClientError, ClientOptions, FidHandle, FileKind, s_if};
use gproc::net::Address;
use gproc::proto::{Dialect, errno};
use gproc::server::{AccessPolicy, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::common::serve_proc;

const DIALECTS: [Dialect; 3] = [Dialect::P2000L, Dialect::P2000u, Dialect::P2000];

/// Serves /proc on 127.0.0.1:<free port> until the token is cancelled.
async fn start_agent() -> (Address, CancellationToken) {
    serve_proc(
        &"127.0.0.1:0".parse().unwrap(),
        ServerConfig::default().with_access(AccessPolicy::believing_claims()),
    )
    .await
}

fn opts(d: Option<Dialect>) -> ClientOptions {
    ClientOptions {
        dialect: d,
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

async fn root(addr: &Address, d: Option<Dialect>) -> (Client, FidHandle) {
    let c = Client::connect(addr, opts(d)).await.unwrap();
    let r = c.attach("nobody", "", None).await.unwrap();
    (c, r)
}

fn name_line(status: &[u8]) -> String {
    String::from_utf8_lossy(status)
        .lines()
        .find(|l| l.starts_with("Name:"))
        .unwrap_or_default()
        .to_string()
}

/// `0.52 0.58 0.59 2/1234 56789`: three loads, running/total, last pid.
fn check_loadavg(s: &str) {
    let f: Vec<&str> = s.split_whitespace().collect();
    assert_eq!(f.len(), 5, "{s:?}");
    for l in &f[..3] {
        l.parse::<f64>().unwrap();
    }
    let (r, t) = f[3].split_once('/').unwrap();
    r.parse::<u64>().unwrap();
    t.parse::<u64>().unwrap();
    f[4].parse::<u64>().unwrap();
}

#[tokio::test]
async fn default_negotiates_dotl() {
    let (addr, stop) = start_agent().await;
    let (c, r) = root(&addr, None).await;
    assert_eq!(c.dialect(), Dialect::P2000L);
    assert!(c.msize() >= 4096);
    let st = r.statfs().await.unwrap();
    assert_eq!(st.ty, gproc::proto::V9FS_MAGIC);
    stop.cancel();
}

#[tokio::test]
async fn reads_proc_in_every_dialect() {
    let (addr, stop) = start_agent().await;
    let local_status = std::fs::read("/proc/1/status").unwrap();
    let local_1 = std::fs::metadata("/proc/1").unwrap();
    for d in DIALECTS {
        let (c, r) = root(&addr, Some(d)).await;
        assert_eq!(c.dialect(), d);

        let load = r.read_all("loadavg").await.unwrap();
        check_loadavg(std::str::from_utf8(&load).unwrap());

        let status = r.read_all("/1/status").await.unwrap();
        assert_eq!(name_line(&status), name_line(&local_status), "{d}");

        let ents = r.read_dir("/").await.unwrap();
        let names: Vec<&str> = ents.iter().map(|e| e.name.as_str()).collect();
        assert!(names.contains(&"1"), "{d}: {names:?}");
        assert!(names.contains(&"loadavg"), "{d}");
        assert!(!names.contains(&"."), "{d}");
        let one = ents.iter().find(|e| e.name == "1").unwrap();
        assert_eq!(one.kind, FileKind::Dir, "{d}");
        let la = ents.iter().find(|e| e.name == "loadavg").unwrap();
        assert_eq!(la.kind, FileKind::File, "{d}");
        // 9P2000/.u listings carry full stat records.
        assert_eq!(one.meta.is_some(), d != Dialect::P2000L, "{d}");

        let m = r.metadata("1").await.unwrap();
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.mode & 0o777, {
            use std::os::unix::fs::PermissionsExt;
            local_1.permissions().mode() & 0o777
        });
        use std::os::unix::fs::MetadataExt;
        if d == Dialect::P2000 {
            assert_eq!(m.uid, None);
            assert_eq!(m.name.as_deref(), Some("1"));
            assert!(m.user.is_some());
        } else {
            assert_eq!(m.uid, Some(local_1.uid()), "{d}");
            assert_eq!(m.gid, Some(local_1.gid()), "{d}");
        }
        if d == Dialect::P2000L {
            assert_eq!(m.nlink, Some(local_1.nlink()));
        }
        let f = r.metadata("loadavg").await.unwrap();
        assert_eq!(f.mode & s_if::FMT, s_if::REG, "{d}");

        // The agent serves itself: /proc/self is this test process.
        let link = r.readlink("self").await;
        match d {
            Dialect::P2000 => {
                let e = link.unwrap_err();
                assert!(matches!(e, ClientError::Unsupported { .. }), "{e}");
                assert_eq!(e.errno(), errno::EOPNOTSUPP);
            }
            _ => assert_eq!(link.unwrap(), std::process::id().to_string(), "{d}"),
        }
        if d != Dialect::P2000 {
            let m = r.metadata("self").await.unwrap();
            assert!(m.is_symlink(), "{d}");
        }
        assert!(!c.is_closed());
    }
    stop.cancel();
}

#[tokio::test]
async fn missing_files_name_server_and_path() {
    let (addr, stop) = start_agent().await;
    for d in DIALECTS {
        let (_c, r) = root(&addr, Some(d)).await;
        let e = r.read_all("1/statuss").await.unwrap_err();
        assert_eq!(e.errno(), errno::ENOENT, "{d}: {e}");
        assert_eq!(
            e.to_string(),
            format!("{addr} /1/statuss: file does not exist"),
            "{d}"
        );
        // A first-element failure is an error reply, not a partial walk.
        let e = r.metadata("nosuchfile").await.unwrap_err();
        assert_eq!(e.errno(), errno::ENOENT, "{d}: {e}");
        // Reading a directory is refused in .L; a file is not a directory.
        let e = r.read_dir("loadavg").await.unwrap_err();
        assert!(matches!(e, ClientError::Remote { .. }), "{d}: {e}");
    }
    stop.cancel();
}

#[tokio::test]
async fn long_paths_take_several_walks() {
    let (addr, stop) = start_agent().await;
    // 22 names: 1, then task/1/../.. five times, then status.
    let mut p = String::from("1/");
    for _ in 0..5 {
        p.push_str("task/1/../../");
    }
    p.push_str("status");
    assert_eq!(p.split('/').count(), 22);
    let local = std::fs::read("/proc/1/status").unwrap();
    for d in DIALECTS {
        let (_c, r) = root(&addr, Some(d)).await;
        let s = r.read_all(&p).await.unwrap();
        assert_eq!(name_line(&s), name_line(&local), "{d}");
        // A failure in a later chunk names the whole path and gives the
        // server's reason for the name that failed, not just ENOENT.
        let bad = format!("{}nonexistent/x/y", p.trim_end_matches("status"));
        let e = r.walk(&bad).await.unwrap_err();
        assert_eq!(e.errno(), errno::ENOENT, "{d}: {e}");
        assert!(e.to_string().contains(&bad), "{d}: {e}");
        let e = r.walk(&format!("{p}/../x")).await.unwrap_err();
        assert_eq!(e.errno(), errno::ENOTDIR, "{d}: {e}");
    }
    stop.cancel();
}

#[tokio::test]
async fn concurrent_reads_on_one_connection_stay_unmixed() {
    let (addr, stop) = start_agent().await;
    let (c, r) = root(&addr, None).await;
    let r = Arc::new(r);
    let expect_status = name_line(&std::fs::read("/proc/1/status").unwrap());
    // The agent runs in this process, so our pid's files are there.
    let expect_pid = std::process::id().to_string();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..300 {
        let r = r.clone();
        let (es, ep) = (expect_status.clone(), expect_pid.clone());
        set.spawn(async move {
            match i % 3 {
                0 => {
                    let s = r.read_all("1/status").await.unwrap();
                    assert_eq!(name_line(&s), es);
                }
                1 => {
                    let s = r.read_all(&format!("{ep}/stat")).await.unwrap();
                    let s = String::from_utf8(s.to_vec()).unwrap();
                    assert_eq!(s.split_whitespace().next().unwrap(), ep);
                }
                _ => {
                    let s = r.read_all("loadavg").await.unwrap();
                    check_loadavg(std::str::from_utf8(&s).unwrap());
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(res) = set.join_next().await {
            res.unwrap();
        }
    })
    .await
    .unwrap();
    assert!(!c.is_closed());
    stop.cancel();
}

#[tokio::test]
async fn dropped_handles_release_their_fids() {
    let (addr, stop) = start_agent().await;
    let (_c, r) = root(&addr, None).await;
    // Many walks whose handles are dropped at once: if fids leaked, numbers
    // would keep growing; after the clunks land, they are reused.
    for _ in 0..50 {
        let _ = r.walk("1/status").await.unwrap();
    }
    let h = r.walk("loadavg").await.unwrap();
    assert!(h.fid() < 50, "fid {} suggests leaked fids", h.fid());
    h.clunk().await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn server_shutdown_fails_calls_fast() {
    let (addr, stop) = start_agent().await;
    let (c, r) = root(&addr, None).await;
    r.read_all("loadavg").await.unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(7), async {
        while !c.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let e = r.read_all("loadavg").await.unwrap_err();
    assert!(e.is_connection_error(), "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[tokio::test]
async fn unix_socket_and_refused_connect() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Address::Unix(dir.path().join("g.sock"));
    let (_, token) = serve_proc(
        &addr,
        ServerConfig::default().with_access(AccessPolicy::believing_claims()),
    )
    .await;
    let (_c, r) = root(&addr, None).await;
    check_loadavg(std::str::from_utf8(&r.read_all("loadavg").await.unwrap()).unwrap());
    token.cancel();

    // Nobody listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a: Address = format!("127.0.0.1:{port}").parse().unwrap();
    let e = Client::connect(&a, opts(None)).await.unwrap_err();
    assert_eq!(e.errno(), errno::ECONNREFUSED, "{e}");
    assert!(
        e.to_string().starts_with(&format!("127.0.0.1:{port}")),
        "{e}"
    );
}

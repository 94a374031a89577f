//! The client against diod, the reference 9P2000.L server, exporting this
//! machine's /proc. Skipped (loudly) when diod is not installed, except
//! under `CI=true`, where a missing diod is a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gproc::client::{Client, ClientError, ClientOptions, FidHandle};
use gproc::net::Address;
use gproc::proto::{Dialect, V9FS_MAGIC};

/// Kills diod when the test ends, however it ends.
struct Diod(Child);

impl Drop for Diod {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_diod() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("diod"))
            .find(|f| f.is_file())
    });
    on_path.or_else(|| {
        let f = std::path::PathBuf::from("/usr/sbin/diod");
        f.is_file().then_some(f)
    })
}

/// Starts diod on a free loopback port, or returns `None` after printing
/// why the test is skipped.
fn start_diod() -> Option<(Diod, Address)> {
    let Some(bin) = find_diod() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("diod is not installed, and CI=true requires the diod interop test");
        }
        eprintln!(
            "\n*** SKIP: diod not found on PATH or at /usr/sbin/diod; diod interop untested ***\n"
        );
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["-f", "-n", "-l", &listen, "-e", "/proc", "-L", "stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some((Diod(child), listen.parse().unwrap()))
}

fn opts(d: Option<Dialect>) -> ClientOptions {
    ClientOptions {
        dialect: d,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    }
}

/// Connects once diod listens (it takes a moment to start).
async fn connect(addr: &Address) -> Client {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect(addr, opts(None)).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline && matches!(e, ClientError::Io { .. }) => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("cannot connect to diod: {e}"),
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

async fn attach(c: &Client) -> FidHandle {
    c.attach("", "/proc", Some(euid())).await.unwrap()
}

fn name_line(status: &[u8]) -> String {
    String::from_utf8_lossy(status)
        .lines()
        .find(|l| l.starts_with("Name:"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn reads_proc_from_diod() {
    let Some((diod, addr)) = start_diod() else {
        return;
    };
    let c = connect(&addr).await;
    assert_eq!(c.dialect(), Dialect::P2000L);
    let root = attach(&c).await;

    let load = root.read_all("loadavg").await.unwrap();
    let load = String::from_utf8(load.to_vec()).unwrap();
    assert_eq!(load.split_whitespace().count(), 5, "{load:?}");

    let status = root.read_all("1/status").await.unwrap();
    let local = std::fs::read("/proc/1/status").unwrap();
    assert_eq!(name_line(&status), name_line(&local));

    let names: Vec<String> = root
        .read_dir("/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.iter().any(|n| n == "1"), "{names:?}");
    assert!(names.iter().any(|n| n == "loadavg"));

    // diod's /proc/self is diod itself.
    assert_eq!(
        root.readlink("self").await.unwrap(),
        diod.0.id().to_string()
    );
    assert!(root.metadata("1").await.unwrap().is_dir());
    assert_eq!(root.statfs().await.unwrap().ty, V9FS_MAGIC);

    // diod drops the connection on a 17-name Twalk: the client must split.
    let mut deep = String::from("1/");
    for _ in 0..5 {
        deep.push_str("task/1/../../");
    }
    deep.push_str("status");
    let s = root.read_all(&deep).await.unwrap();
    assert_eq!(name_line(&s), name_line(&local));

    let e = root.read_all("1/statuss").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{addr} /1/statuss: file does not exist")
    );
    assert!(!c.is_closed());
}

#[tokio::test]
async fn diod_refuses_older_dialects_with_a_clear_error() {
    let Some((_diod, addr)) = start_diod() else {
        return;
    };
    drop(connect(&addr).await); // wait until it listens
    let e = Client::connect(&addr, opts(Some(Dialect::P2000u)))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Version { .. }), "{e}");
    assert!(e.to_string().starts_with(&addr.to_string()), "{e}");
}

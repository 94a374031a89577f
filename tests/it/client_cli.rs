//! The `gproc ls/cat/stat` commands, run as the built binary against an
//! in-process agent serving /proc: output, error messages, exit status.

use std::time::Duration;

use gproc::net::Address;
use gproc::server::{AccessPolicy, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::common::serve_proc;

async fn start_agent() -> (Address, CancellationToken) {
    serve_proc(
        &"127.0.0.1:0".parse().unwrap(),
        ServerConfig::default().with_access(AccessPolicy::believing_claims()),
    )
    .await
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with a time limit.
async fn gproc(args: &[&str]) -> Out {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gproc"))
        .args(args)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let o = tokio::time::timeout(Duration::from_secs(5), child)
        .await
        .expect("gproc did not finish in 5 s")
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_prints_files_and_names_failures() {
    let (addr, stop) = start_agent().await;
    let a = addr.to_string();

    let o = gproc(&["cat", "--server", &a, "loadavg"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.split_whitespace().count(), 5, "{:?}", o.stdout);
    assert!(o.stdout.ends_with('\n'));

    // A missing path: reported, the others still printed, exit 1.
    let o = gproc(&["cat", "--server", &a, "1/statuss", "1/status"]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains(&format!("gproc: cat {a} /1/statuss: file does not exist\n")),
        "{}",
        o.stderr
    );
    assert!(o.stdout.starts_with("Name:"), "{}", o.stdout);

    // Every dialect reads the same way.
    for d in ["9P2000.L", "9P2000.u", "9P2000"] {
        let o = gproc(&["cat", "--server", &a, "--dialect", d, "1/status"]).await;
        assert_eq!(o.code, 0, "{d}: {}", o.stderr);
        assert!(o.stdout.starts_with("Name:"), "{d}");
    }
    stop.cancel();
}

/// Many paths are read ahead concurrently, yet printed in argument order,
/// byte for byte what the files hold, with each failure reported in its
/// place; a file longer than what is read ahead (kallsyms, megabytes)
/// streams whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cat_of_many_paths_keeps_their_order() {
    let (addr, stop) = start_agent().await;
    let a = addr.to_string();
    let files = [
        "version",
        "filesystems",
        "sys/kernel/ostype",
        "sys/kernel/osrelease",
        "1/cmdline",
        "cmdline",
    ];
    let big = std::fs::read("/proc/kallsyms").unwrap_or_default();
    let mut args = vec!["cat", "--server", &a];
    let mut want = Vec::new();
    let mut missing = Vec::new();
    for i in 0..40 {
        if i % 7 == 3 {
            let p = ["no-such-file", "1/no-such", "999999999/status"][i % 3];
            args.push(p);
            missing.push(p);
        } else if i == 20 && big.len() > 1 << 20 {
            args.push("kallsyms");
            want.extend_from_slice(&big);
        } else {
            let p = files[i % files.len()];
            args.push(p);
            want.extend(std::fs::read(format!("/proc/{p}")).unwrap());
        }
    }
    let o = gproc(&args).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stdout.as_bytes() == want.as_slice(), "output differs");
    let reported: Vec<&str> = o
        .stderr
        .lines()
        .map(|l| l.rsplit_once(": ").map_or(l, |(head, _)| head))
        .collect();
    let expected: Vec<String> = missing
        .iter()
        .map(|p| format!("gproc: cat {a} /{p}"))
        .collect();
    assert_eq!(reported, expected, "{}", o.stderr);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_stat() {
    let (addr, stop) = start_agent().await;
    let a = addr.to_string();

    let o = gproc(&["ls", "--server", &a]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let names: Vec<&str> = o.stdout.lines().collect();
    assert!(
        names.contains(&"1") && names.contains(&"loadavg"),
        "{names:?}"
    );

    // -l on a symlink shows its target: the agent is this process.
    for d in ["9P2000.L", "9P2000.u"] {
        let o = gproc(&["ls", "-l", "--server", &a, "--dialect", d, "self"]).await;
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stdout.starts_with('l'), "{}", o.stdout);
        assert!(
            o.stdout
                .trim_end()
                .ends_with(&format!("self -> {}", std::process::id())),
            "{d}: {}",
            o.stdout
        );
    }
    let o = gproc(&["ls", "-l", "--server", &a, "1"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let status = o.stdout.lines().find(|l| l.ends_with(" status")).unwrap();
    assert!(status.starts_with("-r--r--r--"), "{status}");

    let o = gproc(&["stat", "--server", &a, "1", "nope"]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.contains("  File: 1\n  Type: directory\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stderr
            .contains(&format!("gproc: stat {a} /nope: file does not exist"))
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_connection_errors() {
    // No --server: a usage error.
    let o = gproc(&["cat", "loadavg"]).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    let o = gproc(&["ls", "--server", "127.0.0.1:1", "--dialect", "9P2001"]).await;
    assert_eq!(o.code, 2, "{}", o.stderr);

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = format!("127.0.0.1:{port}");
    let o = gproc(&["cat", "--server", &a, "loadavg"]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with(&format!("gproc: cat {a}: ")),
        "{}",
        o.stderr
    );
}

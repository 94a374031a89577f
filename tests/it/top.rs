//! `gproc top` in plain mode (stdout not a terminal) against a real
//! aggregator over a real agent, plus one node that is down.

use std::process::{Command, Output};

use crate::common::{Port, free_port, gproc, start_agent, start_aggregator};

fn top(addr: &str, extra: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(gproc())
        .args(["top", "--server", addr, "--interval", "300ms"])
        .args(extra)
        .output()
        .expect("run gproc top")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn plain_output_over_an_aggregator() {
    let (pa, pg, dead) = (Port::new(), Port::new(), free_port());
    let _agent = start_agent(&pa);
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:{pg}\"]\nauth = \"none\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"127.0.0.1:{pa}\"\n\n\
         [[nodes]]\nnames = \"n2\"\naddress = \"127.0.0.1:{dead}\"\n"
    );
    let _agg = start_aggregator(dir.path(), &cfg, &pg);
    let addr = format!("127.0.0.1:{pg}");

    let o = top(&addr, &["--iterations", "2"]);
    assert!(o.status.success(), "{o:?}");
    let out = text(&o);
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "two refreshes:\n{out}");
    for b in &blocks {
        let lines: Vec<&str> = b.lines().collect();
        assert!(lines[0].starts_with(&format!("gproc top {addr} ")), "{b}");
        assert!(lines[1].starts_with("Nodes: 1 up, 1 down, 2 total"), "{b}");
        assert!(lines[1].contains("Procs: "), "{b}");
        assert!(
            lines.iter().any(|l| l.starts_with("n1 up ")),
            "n1's load line:\n{b}"
        );
        assert!(lines.iter().any(|l| l.starts_with("n2 down ")), "{b}");
        assert!(lines.iter().any(|l| l.starts_with("# missing n2")), "{b}");
        let procs: Vec<&str> = lines
            .iter()
            .skip_while(|l| !l.starts_with("NODE PID USER"))
            .skip(1)
            .copied()
            .collect();
        assert!(!procs.is_empty() && procs.len() <= 20, "{b}");
        assert!(procs.iter().all(|l| l.starts_with("n1 ")), "{b}");
        // Ranked by %CPU, highest first.
        let cpu: Vec<f64> = procs
            .iter()
            .map(|l| l.split(' ').nth(3).unwrap().parse().unwrap())
            .collect();
        assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "{cpu:?}");
    }

    // Filters and the memory ranking.
    let o = top(
        &addr,
        &[
            "--iterations",
            "1",
            "-u",
            "root",
            "-n",
            "n1",
            "--sort",
            "mem",
            "--limit",
            "5",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let out = text(&o);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("Nodes: 1 up, 0 down, 1 total"),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.starts_with("n2 ")), "{out}");
    let procs: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("NODE PID USER"))
        .skip(1)
        .collect();
    assert_eq!(procs.len(), 5, "{out}");
    assert!(
        procs.iter().all(|l| l.split(' ').nth(2) == Some("root")),
        "{out}"
    );
    let rss: Vec<u64> = procs
        .iter()
        .map(|l| l.split(' ').nth(5).unwrap().parse().unwrap())
        .collect();
    assert!(rss.windows(2).all(|w| w[0] >= w[1]), "{rss:?}");

    // No aggregator: every refresh fails, reported, exit status 1.
    let o = top(&format!("127.0.0.1:{dead}"), &["--iterations", "1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused"),
        "{o:?}"
    );
}

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

/// A simulated cluster of 12 nodes (`procs` processes each, no churn) on
/// `first`'s addresses, an aggregator over it whose files are kept for
/// the test's length (so the test and what it compares read the same
/// tables) with `extra` config after the cluster's names are known, and
/// a client of the aggregator.
async fn sim_cluster_and_aggregator(
    first: std::net::Ipv4Addr,
    procs: usize,
    extra: impl FnOnce(&gproc::sim::SimCluster) -> String,
) -> (
    gproc::sim::SimCluster,
    gproc::aggregator::Aggregator,
    tokio_util::sync::CancellationToken,
    gproc::client::Client,
) {
    use std::time::Duration;

    use gproc::client::{Client, ClientOptions};
    use gproc::sim::{SimCluster, SimOptions};

    let cluster = SimCluster::start(SimOptions {
        nodes: 12,
        procs_per_node: procs,
        base_port: 0,
        first_address: first,
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [cache]\n[[cache.rule]]\npath = \"/**\"\nttl = \"120s\"\n\n{}\n{}",
        extra(&cluster),
        cluster.config_toml()
    );
    let cfg = gproc::config::Config::from_str(&config, "sim.toml").unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let agg = gproc::aggregator::Aggregator::start(&cfg, stop.clone())
        .await
        .unwrap();
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    let c = Client::connect(&agg.addresses[0], opts).await.unwrap();
    (cluster, agg, stop, c)
}

/// `gproc top` run from async code (the aggregator runs in this process).
async fn top_async(addr: &str, extra: &[&str]) -> Output {
    tokio::process::Command::new("timeout")
        .arg("60")
        .arg(gproc())
        .args(["top", "--server", addr, "--interval", "300ms"])
        .args(extra)
        // The identity the test reads with below.
        .env("USER", "root")
        .output()
        .await
        .expect("run gproc top")
}

/// The rows of a plain block: the lines after the header line `head`,
/// notes left out.
fn rows_after<'a>(out: &'a str, head: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(head))
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .collect()
}

/// `--jobs` lists every job of `/jobs`, ranked by %CPU; `-j ID` prints
/// exactly the rows of `/job/<id>/ps`; a job that is not there, an id
/// that is not one and an aggregator without `/jobs` are clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_jobs_and_one_jobs_processes_on_the_simulator() {
    use std::net::Ipv4Addr;

    use gproc::format::table::{JobRow, PsRow, Table, format_cputime};
    use gproc::sim::SimOptions;

    let (_cluster, agg, stop, c) = sim_cluster_and_aggregator(
        Ipv4Addr::new(127, 24, 0, 1),
        SimOptions::default().procs_per_node,
        |_| String::new(),
    )
    .await;
    let addr = agg.addresses[0].to_string();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let read = |p: String| {
        let root = &root;
        async move { String::from_utf8(root.read_all(&p).await.unwrap().to_vec()).unwrap() }
    };

    // --jobs: /jobs's rows, every one, by %CPU then job id.
    let jobs_text = read("jobs".into()).await;
    let jobs = Table::<JobRow>::parse(&jobs_text).unwrap();
    assert!(jobs.rows.len() > 3, "the simulator runs jobs:\n{jobs_text}");
    let o = top_async(&addr, &["--jobs", "--iterations", "1", "--limit", "1"]).await;
    assert!(o.status.success(), "{o:?}");
    let out = text(&o);
    assert!(out.starts_with(&format!("gproc top {addr} ")), "{out}");
    assert_eq!(
        out.lines().nth(1),
        Some(format!("Jobs: {}", jobs.rows.len()).as_str())
    );
    let got = rows_after(&out, gproc::format::table::JOBS_HEADER);
    let mut want: Vec<&str> = jobs_text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    want.sort_unstable();
    assert_eq!(sorted, want, "every job, as /jobs writes it");
    let cpu: Vec<f64> = got
        .iter()
        .map(|l| l.split(' ').nth(4).unwrap().parse().unwrap())
        .collect();
    assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "by %CPU: {cpu:?}");

    // -j ID: the job on most nodes; exactly its /job/<id>/ps rows.
    let job = jobs.rows.iter().max_by_key(|j| j.nnodes).unwrap();
    assert!(job.nnodes > 1, "{job:?}");
    let ps_text = read(format!("job/{}/ps", job.job)).await;
    let ps = Table::<PsRow>::parse(&ps_text).unwrap();
    assert_eq!(ps.rows.len() as u64, job.procs);
    let o = top_async(&addr, &["-j", &job.job, "--iterations", "2"]).await;
    assert!(o.status.success(), "{o:?}");
    let out = text(&o);
    let blocks: Vec<&str> = out.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "two refreshes:\n{out}");
    let mut want: Vec<String> = ps
        .rows
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {:.1} {:.1} {} {} {} {} {} {}",
                p.node,
                p.pid,
                p.user,
                p.cpu,
                p.mem,
                p.rss_kb,
                format_cputime(p.time),
                p.job.as_deref().unwrap_or("-"),
                p.step.as_deref().unwrap_or("-"),
                p.gpu.as_deref().unwrap_or("-"),
                p.command
            )
        })
        .collect();
    want.sort_unstable();
    for b in blocks {
        assert!(
            b.lines()
                .next()
                .unwrap()
                .contains(&format!(" job {} ", job.job)),
            "{b}"
        );
        assert!(
            b.lines().nth(1).unwrap().starts_with(&format!(
                "Job {}: {} procs on {} nodes",
                job.job, job.procs, job.nnodes
            )),
            "{b}"
        );
        let mut got: Vec<String> = rows_after(b, "NODE PID USER")
            .into_iter()
            .map(str::to_string)
            .collect();
        got.sort_unstable();
        assert_eq!(got, want, "{b}");
    }

    // A job that is not there: an error naming it, exit status 1.
    let o = top_async(&addr, &["-j", "999999999", "--iterations", "1"]).await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("job 999999999: no such job"), "{err}");
    // An id that would walk elsewhere is refused before any read.
    let o = top_async(&addr, &["-j", "1/../../ps", "--iterations", "1"]).await;
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a job id"),
        "{o:?}"
    );
    stop.cancel();

    // A server without /jobs (an agent: a node's tree has none).
    let pa = Port::new();
    let _agent = start_agent(&pa);
    let o = top_async(&pa.addr(), &["--jobs", "--iterations", "1"]).await;
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("has no /jobs: upgrade it"), "{err}");
}

/// `/top/<query>` is the reader's own `/ps` ranked: for an administrator
/// and for a user, each query's rows are the first of that reader's `/ps`
/// rows (filtered as asked) in `gproc top`'s order, byte for byte, then
/// how many matched, then `/ps`'s notes. Names that are not queries do
/// not exist; a bad hostlist is an error at open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rankings_are_the_readers_ps_sorted() {
    use std::cmp::Ordering;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use gproc::config::Hostlist;
    use gproc::config::hostlist::natural_cmp;
    use gproc::format::rank::{RankKey, RankQuery, count_line};
    use gproc::format::table::{PS_HEADER, PsRow, Table};

    // `/ps` and `/top` read the same summaries. The simulated users (uids
    // 1000 to 1019) are allotted half the nodes.
    let mut names: Vec<String> = Vec::new();
    let (cluster, agg, stop, c) =
        sim_cluster_and_aggregator(Ipv4Addr::new(127, 25, 0, 1), 60, |cluster| {
            names = cluster.nodes().iter().map(|n| n.name.clone()).collect();
            let allot: String = (1000..1020)
                .map(|u| {
                    format!(
                        "[[views.allot]]\nuser = {u}\nnodes = \"{}\"\n",
                        names[..6].join(",")
                    )
                })
                .collect();
            format!("[views]\nadmin_users = [\"root\"]\n{allot}")
        })
        .await;
    let two = format!("{},{}", names[1], names[4]);
    // The simulated user with the most processes on those nodes.
    let mut most = (0, 1000);
    for uid in 1000..1020 {
        let r = c.attach("u", "", Some(uid)).await.unwrap();
        let ps = r.read_all("ps").await.unwrap();
        let n = ps
            .split(|&b| b == b'\n')
            .filter(|l| !l.starts_with(b"#"))
            .count();
        most = most.max((n, uid));
    }
    for (uname, uid) in [("root", 0), ("a user", most.1)] {
        let root = c.attach(uname, "", Some(uid)).await.unwrap();
        let read = |p: String| {
            let root = &root;
            async move { String::from_utf8(root.read_all(&p).await.unwrap().to_vec()).unwrap() }
        };
        let ps = read("ps".into()).await;
        let lines: Vec<&str> = ps
            .lines()
            .filter(|l| !l.starts_with('#') && *l != PS_HEADER)
            .collect();
        let rows = Table::<PsRow>::parse(&ps).unwrap().rows;
        assert_eq!(rows.len(), lines.len(), "every line a row");
        assert!(rows.len() > 20, "{uname} sees processes:\n{ps}");
        let notes: String = ps
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let listed: Vec<String> = root
            .read_dir("top")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect();
        assert_eq!(listed, ["cpu", "mem"]);
        for name in [
            "cpu".to_string(),
            "mem:rows=7".into(),
            "cpu:rows=100000".into(),
            "mem:users=alice+bob:rows=5".into(),
            format!("cpu:hosts={two}"),
            format!("mem:hosts={two}:users=root+alice"),
            "cpu:users=nobody-at-all".into(),
        ] {
            let q = RankQuery::parse(&name).unwrap();
            let hosts = q.hosts.as_deref().map(|h| Hostlist::parse(h).unwrap());
            let mut want: Vec<(&PsRow, &str)> = rows
                .iter()
                .zip(lines.iter().copied())
                .filter(|(r, _)| q.users.is_empty() || q.users.contains(&r.user))
                .filter(|(r, _)| hosts.as_ref().is_none_or(|h| h.contains(&r.node)))
                .collect();
            let matched = want.len();
            // `gproc top`'s order: the key, the other, node, pid.
            want.sort_by(|(a, _), (b, _)| {
                let (x, y) = match q.key {
                    RankKey::Cpu => (b.cpu.total_cmp(&a.cpu), b.rss_kb.cmp(&a.rss_kb)),
                    RankKey::Mem => (b.rss_kb.cmp(&a.rss_kb), b.cpu.total_cmp(&a.cpu)),
                };
                x.then(y)
                    .then_with(|| natural_cmp(&a.node, &b.node))
                    .then(a.pid.cmp(&b.pid))
                    .then(Ordering::Equal)
            });
            want.truncate(q.rows);
            let mut expect = format!("{PS_HEADER}\n");
            for (_, l) in &want {
                expect.push_str(l);
                expect.push('\n');
            }
            expect.push_str(&count_line(matched));
            expect.push_str(&notes);
            let got = read(format!("top/{name}")).await;
            assert_eq!(got, expect, "{uname}: /top/{name}");
        }
        assert_eq!(
            root.walk("top/rss").await.unwrap_err().errno(),
            gproc::proto::errno::ENOENT
        );
        assert_eq!(
            root.read_all("top/cpu:hosts=n[[1")
                .await
                .unwrap_err()
                .errno(),
            gproc::proto::errno::EINVAL
        );
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

//! The job tree (issue 15 item 2, issue 16's job `ctl`): `/jobs`,
//! `/job/<id>/ps`, `/job/<id>/nodes`, `/job/<id>/<node>/<pid>/...` and
//! `gproc jobs`.
//!
//! On the simulator: for every job, `/jobs`'s sums are the sums of its
//! `/ps` rows as printed, its nodes the hostlist of theirs; a job's `ps` is
//! `/ps`'s header, its very lines and `/ps`'s notes; its `nodes` the
//! per-node sums; its process directories are the node's (same files,
//! other qids), and only its processes are there. With real cgroups and
//! test users (in `jobs.rs` and below): each user sees their own job only,
//! and signals it through `/job/<id>/ctl`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use gproc::client::{Client, ClientOptions};
use gproc::config::hostlist;
use gproc::format::table::{
    JOB_NODES_HEADER, JobNodeRow, JobRow, PS_HEADER, PsRow, Table, cpu_tenths,
};
use gproc::proto::errno;
use gproc::sim::{SimCluster, SimOptions};

use crate::common::*;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// What `/jobs` should say of a job, from its `/ps` rows.
fn expected_row(job: &str, rows: &[&PsRow]) -> JobRow {
    let users: BTreeSet<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    let others: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| *u != "root" && *u != "0")
        .collect();
    let nodes: BTreeSet<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    let mut states: BTreeMap<char, u64> = BTreeMap::new();
    for r in rows {
        *states.entry(r.state).or_default() += 1;
    }
    JobRow {
        job: job.to_string(),
        user: if others.is_empty() {
            users.into_iter().collect::<Vec<_>>().join(",")
        } else {
            others.join(",")
        },
        procs: rows.len() as u64,
        nnodes: nodes.len() as u64,
        cpu_tenths: rows.iter().map(|r| cpu_tenths(r.cpu)).sum(),
        rss_kb: rows.iter().map(|r| r.rss_kb).sum(),
        states: states.into_iter().collect(),
        start: rows.iter().map(|r| r.start).min().unwrap_or(0),
        gpus: nodes.iter().map(|n| gpus_on(rows, n).0.len() as u64).sum(),
        gpus_truncated: nodes.iter().any(|n| gpus_on(rows, n).1),
        nodes: hostlist::compress(nodes),
    }
}

/// The GPU devices `rows` on node `node` show, and whether a list was cut.
fn gpus_on(rows: &[&PsRow], node: &str) -> (BTreeSet<String>, bool) {
    let mut devices = BTreeSet::new();
    let mut cut = false;
    for item in rows
        .iter()
        .filter(|r| r.node == node)
        .filter_map(|r| r.gpu.as_deref())
        .flat_map(|l| l.split(','))
        .filter(|i| !i.is_empty())
    {
        if item == "+" {
            cut = true;
        } else {
            devices.insert(item.to_string());
        }
    }
    (devices, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_jobs_sum_their_ps_rows_and_hold_their_processes() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 40,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 16, 0, 1),
        no_summary: 0.25,
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    // Summaries and files kept for the test's length: /ps and the job
    // tree are built from the same summaries throughout.
    let (agg, stop, _) = aggregate_sim(&cluster, KEEP_FOR_THE_TEST).await;
    let c = Client::connect(&agg.addresses[0], opts()).await.unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let read = |p: &'static str| {
        let root = &root;
        async move { String::from_utf8(root.read_all(p).await.unwrap().to_vec()).unwrap() }
    };
    let ps_text = read("ps").await;
    let ps = Table::<PsRow>::parse(&ps_text).unwrap();
    assert_eq!(ps.skipped, 0);
    // Each row with its line as /ps wrote it.
    let lines: Vec<&str> = ps_text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), ps.rows.len());
    let notes: String = ps_text
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut by_job: BTreeMap<&str, Vec<(&PsRow, &str)>> = BTreeMap::new();
    for (r, l) in ps.rows.iter().zip(&lines) {
        if let Some(j) = &r.job {
            by_job.entry(j.as_str()).or_default().push((r, l));
        }
    }
    assert!(by_job.len() > 3, "the simulator runs jobs: {by_job:?}");

    // /jobs: one row per job of /ps, each the sums of its rows.
    let jobs_text = read("jobs").await;
    let jobs = Table::<JobRow>::parse(&jobs_text).unwrap();
    assert_eq!(jobs.skipped, 0);
    let listed: BTreeSet<&str> = jobs.rows.iter().map(|r| r.job.as_str()).collect();
    assert_eq!(listed, by_job.keys().copied().collect::<BTreeSet<_>>());
    for j in &jobs.rows {
        let rows: Vec<&PsRow> = by_job[j.job.as_str()].iter().map(|(r, _)| *r).collect();
        assert_eq!(*j, expected_row(&j.job, &rows), "{jobs_text}");
    }
    assert_eq!(jobs.notes, ps.notes, "/ps's notes are /jobs's");

    // The job on most nodes, with some on a node without a summary.
    let (job, rows) = by_job
        .iter()
        .max_by_key(|(_, rows)| {
            rows.iter()
                .map(|(r, _)| r.node.as_str())
                .collect::<BTreeSet<_>>()
                .len()
        })
        .unwrap();
    let nodes: Vec<&str> = {
        let mut seen = Vec::new();
        for (r, _) in rows {
            if !seen.contains(&r.node.as_str()) {
                seen.push(r.node.as_str());
            }
        }
        seen
    };
    assert!(nodes.len() > 1, "{job} on {nodes:?}");

    // /job/<id>/ps: /ps's header, the job's very lines, /ps's notes.
    let mut want = format!("{PS_HEADER}\n");
    for (_, l) in rows {
        want.push_str(l);
        want.push('\n');
    }
    want.push_str(&notes);
    let got = String::from_utf8(
        root.read_all(&format!("job/{job}/ps"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(got, want);

    // /job/<id>/nodes: per node, the sums of its rows there.
    let got = String::from_utf8(
        root.read_all(&format!("job/{job}/nodes"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(got.starts_with(&format!("{JOB_NODES_HEADER}\n")), "{got}");
    let per_node = Table::<JobNodeRow>::parse(&got).unwrap();
    let want: Vec<JobNodeRow> = nodes
        .iter()
        .map(|n| {
            let here: Vec<&PsRow> = rows
                .iter()
                .map(|(r, _)| *r)
                .filter(|r| r.node == *n)
                .collect();
            JobNodeRow {
                node: n.to_string(),
                procs: here.len() as u64,
                cpu_tenths: here.iter().map(|r| cpu_tenths(r.cpu)).sum(),
                mem_tenths: here.iter().map(|r| cpu_tenths(r.mem)).sum(),
                rss_kb: here.iter().map(|r| r.rss_kb).sum(),
                gpu: {
                    let (devices, cut) = gpus_on(&here, n);
                    let mut shown: Vec<String> = devices.into_iter().collect();
                    if cut {
                        shown.push("+".into());
                    }
                    (!shown.is_empty()).then(|| shown.join(","))
                },
            }
        })
        .collect();
    assert_eq!(per_node.rows, want);

    // The directories: /job lists every job; a job its files and nodes;
    // a job's node its processes there.
    let names = |v: Vec<gproc::client::DirEntryInfo>| -> Vec<String> {
        v.into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect()
    };
    let ids: BTreeSet<String> = names(root.read_dir("job").await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(
        ids,
        by_job
            .keys()
            .map(|k| k.to_string())
            .collect::<BTreeSet<_>>()
    );
    let mut want: Vec<String> = vec!["ps".into(), "nodes".into()];
    want.extend(nodes.iter().map(|n| n.to_string()));
    assert_eq!(
        names(root.read_dir(&format!("job/{job}")).await.unwrap()),
        want
    );
    let node = nodes[0];
    let pids: Vec<i32> = rows
        .iter()
        .filter(|(r, _)| r.node == node)
        .map(|(r, _)| r.pid)
        .collect();
    let listed: Vec<i32> = names(root.read_dir(&format!("job/{job}/{node}")).await.unwrap())
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(listed, pids);

    // A process's files under its job are its node's, under other qids.
    let pid = pids[0];
    let under_job = root
        .read_all(&format!("job/{job}/{node}/{pid}/stat"))
        .await
        .unwrap();
    let under_node = root.read_all(&format!("{node}/{pid}/stat")).await.unwrap();
    assert_eq!(under_job, under_node);
    let (qj, qn) = (
        root.metadata(&format!("job/{job}/{node}/{pid}"))
            .await
            .unwrap()
            .qid,
        root.metadata(&format!("{node}/{pid}")).await.unwrap().qid,
    );
    assert!(qj.is_dir() && qn.is_dir());
    assert_ne!(qj.path, qn.path, "one directory with two parents");
    let dir = root
        .walk(&format!("job/{job}/{node}/{pid}/.."))
        .await
        .unwrap();
    assert_eq!(
        dir.qid(),
        root.metadata(&format!("job/{job}/{node}"))
            .await
            .unwrap()
            .qid,
        ".. of a job's process is the job's node"
    );
    // Every qid of the job's tree is its own.
    let mut qids = BTreeSet::new();
    for p in [
        format!("job/{job}"),
        format!("job/{job}/ps"),
        format!("job/{job}/nodes"),
        format!("job/{job}/{node}"),
        format!("job/{job}/{node}/{pid}"),
        "job".to_string(),
        "jobs".to_string(),
        "ps".to_string(),
        "top".to_string(),
        "top/cpu".to_string(),
        "top/mem".to_string(),
        format!("{node}/{pid}"),
        format!("pid/{pid}@{node}"),
    ] {
        let q = root.metadata(&p).await.unwrap().qid.path;
        assert!(qids.insert(q), "{p} shares qid {q:#x}");
    }
    for other in by_job.keys().filter(|k| *k != job).take(5) {
        let q = root
            .metadata(&format!("job/{other}"))
            .await
            .unwrap()
            .qid
            .path;
        assert!(qids.insert(q), "job {other} shares qid {q:#x}");
    }

    // Not the job's: ENOENT.
    let stranger = ps
        .rows
        .iter()
        .find(|r| r.node == node && r.job.as_deref() != Some(job))
        .expect("a process of another job or none on the node");
    let enoent = |r: gproc::client::Result<gproc::client::FidHandle>| match r {
        Err(e) => e.errno() == errno::ENOENT,
        Ok(_) => false,
    };
    assert!(enoent(
        root.walk(&format!("job/{job}/{node}/{}", stranger.pid))
            .await
    ));
    assert!(enoent(root.walk("job/no-such-job").await));
    let elsewhere = cluster
        .nodes()
        .iter()
        .map(|n| n.name.as_str())
        .find(|n| !nodes.contains(n))
        .expect("a node the job is not on");
    assert!(enoent(root.walk(&format!("job/{job}/{elsewhere}")).await));
    assert!(
        enoent(root.walk(&format!("job/{job}/ctl")).await),
        "no ctl with control off"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

/// `ROW` of `/jobs` for job `id` as `root` reads it, if there.
async fn job_row(root: &gproc::client::FidHandle, id: &str) -> Option<JobRow> {
    let text = root.read_all("jobs").await.ok()?;
    Table::<JobRow>::parse(&String::from_utf8_lossy(&text))
        .ok()?
        .rows
        .into_iter()
        .find(|r| r.job == id)
}

/// Writes `command` to `path` as the attach `root` is.
async fn write_ctl(
    root: &gproc::client::FidHandle,
    path: &str,
    command: &str,
) -> Result<(), (u32, String)> {
    let err = |e: gproc::client::ClientError| (e.errno(), e.to_string());
    let mut f = root.walk(path).await.map_err(err)?;
    f.open(gproc::client::OpenMode::Write).await.map_err(err)?;
    let r = f.write_at(0, command.as_bytes()).await;
    let _ = f.clunk().await;
    r.map(|_| ()).map_err(err)
}

/// The state letter of a process, `None` once it is gone.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

/// Real processes in real Slurm-shaped cgroups (v2), of two test users
/// and root, through the agent and the aggregator with views on and
/// control enabled: each user sees only their job, its sums over what
/// they see, its processes, and signals it through `/job/<id>/ctl`; the
/// other user's job does not exist for them; `gproc jobs` shows the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_signal_only_their_own_jobs() {
    use crate::jobs::{Cgroups, cgroup_mount};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    if !require(
        "root, useradd, setpriv and perl",
        rustix::process::geteuid().is_root() && have("useradd") && have("setpriv") && have("perl"),
    ) {
        return;
    }
    let v2 = cgroup_mount(None);
    if !require("a cgroup2 mount (this test makes cgroups)", v2.is_some()) {
        return;
    }
    let Some(v2) = v2 else { return };
    const C1: &str = "gproc-c1";
    const C2: &str = "gproc-c2";
    let (c1, _) = test_user(C1);
    let (c2, _) = test_user(C2);
    let me = std::process::id();
    let (job_a, job_b) = (format!("3{me}"), format!("4{me}"));
    // Declared first, so removed last.
    let mut cg = Cgroups::default();
    let dir_a = cg.make(
        &v2,
        &format!("system.slice/slurmstepd.scope/job_{job_a}/step_0/user/task_0"),
    );
    let dir_b = cg.make(
        &v2,
        &format!("system.slice/slurmstepd.scope/job_{job_b}/step_0/user/task_0"),
    );
    let spawn_in = |dir: Option<&std::path::Path>, cmd: &mut Command| {
        let child = cmd.spawn().unwrap();
        if let Some(d) = dir {
            std::fs::write(d.join("cgroup.procs"), child.id().to_string()).unwrap();
        }
        Proc(child)
    };
    let as_user = |u: &str| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            u,
            "--regid",
            u,
            "--init-groups",
            "--",
            "sleep",
            "600",
        ]);
        c
    };
    // Job A: two of c1's, root's (slurmstepd's part of a job), and one
    // with c1's effective uid but root's real one (c1 sees it, the kernel
    // will not let c1 signal it). Job B: c2's. And c1's in no job.
    let mut a1 = spawn_in(Some(&dir_a), &mut as_user(C1));
    let mut a2 = spawn_in(Some(&dir_a), &mut as_user(C1));
    let a_root = spawn_in(Some(&dir_a), Command::new("sleep").arg("600"));
    let half = spawn_in(
        Some(&dir_a),
        Command::new("perl").args(["-e", &format!("$> = {c1}; sleep 600")]),
    );
    let b1 = spawn_in(Some(&dir_b), &mut as_user(C2));
    let stray = spawn_in(None, &mut as_user(C1));
    let pid = |p: &Proc| p.0.id();
    wait_for("the processes' users", || {
        [&a1, &a2, &stray]
            .iter()
            .all(|p| uids(pid(p)).first() == Some(&c1))
            && uids(pid(&b1)).first() == Some(&c2)
            && uids(pid(&half)) == [0, c1, 0]
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = Proc(
        Command::new(gproc())
            .args(["agent", "--control", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let pg = Port::new();
    let config = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n\
         [control]\nenabled = true\nuser_signals = [\"STOP\", \"CONT\", \"TERM\", \"KILL\"]\n\n\
         [views]\nadmin_users = [\"root\"]\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n",
        pg.addr(),
        sock.display()
    );
    let _agg = start_aggregator(dir.path(), &config, &pg);
    let c = Client::connect(&gproc::net::Address::Tcp(pg.addr()), opts())
        .await
        .unwrap();
    let as_root = c.attach("root", "", Some(0)).await.unwrap();
    let as_c1 = c.attach_named(C1, "", c1).await.unwrap();
    let as_c2 = c.attach_named(C2, "", c2).await.unwrap();

    // Root's /jobs: job A with all four, once the summary shows them.
    let mut row = None;
    for _ in 0..100 {
        row = job_row(&as_root, &job_a).await.filter(|r| r.procs == 4);
        if row.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = row.expect("job A's four processes in root's /jobs");
    assert_eq!(all.user, C1, "root's processes in the job are not its user");
    assert_eq!(all.nodes, "n1");

    // c1: job A with the three they see, summed over those alone; job B
    // does not exist for them.
    let mine = job_row(&as_c1, &job_a).await.expect("c1 sees job A");
    assert_eq!((mine.procs, mine.nnodes, mine.user.as_str()), (3, 1, C1));
    let c1_ps = Table::<PsRow>::parse(&String::from_utf8_lossy(
        &as_c1.read_all("ps").await.unwrap(),
    ))
    .unwrap();
    let rows_a: Vec<&PsRow> = c1_ps
        .rows
        .iter()
        .filter(|r| r.job.as_deref() == Some(job_a.as_str()))
        .collect();
    assert_eq!(mine, expected_row(&job_a, &rows_a));
    let mut seen: Vec<u32> = rows_a.iter().map(|r| r.pid as u32).collect();
    seen.sort_unstable();
    let mut want = vec![pid(&a1), pid(&a2), pid(&half)];
    want.sort_unstable();
    assert_eq!(seen, want, "root's process in the job is not c1's to see");
    assert!(all.rss_kb >= mine.rss_kb && all.procs > mine.procs);
    assert_eq!(job_row(&as_c1, &job_b).await, None);
    let enoent = |r: gproc::client::Result<gproc::client::FidHandle>| matches!(r, Err(e) if e.errno() == errno::ENOENT);
    for p in [
        format!("job/{job_b}"),
        format!("job/{job_b}/ps"),
        format!("job/{job_b}/n1"),
        format!("job/{job_b}/ctl"),
        format!("job/{job_a}/n1/{}", pid(&a_root)),
        format!("job/{job_a}/n1/{}", pid(&stray)),
    ] {
        assert!(enoent(as_c1.walk(&p).await), "{p} exists for c1");
    }
    let listed: Vec<String> = as_c1
        .read_dir("job")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(
        listed.contains(&job_a) && !listed.contains(&job_b),
        "{listed:?}"
    );
    // Their job's ps: their rows of /ps, as /ps wrote them.
    let ps_a = String::from_utf8(
        as_c1
            .read_all(&format!("job/{job_a}/ps"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let t = Table::<PsRow>::parse(&ps_a).unwrap();
    assert_eq!(
        t.rows,
        rows_a.iter().map(|r| (*r).clone()).collect::<Vec<_>>()
    );
    let nodes = Table::<JobNodeRow>::parse(&String::from_utf8_lossy(
        &as_c1.read_all(&format!("job/{job_a}/nodes")).await.unwrap(),
    ))
    .unwrap();
    assert_eq!(nodes.rows.len(), 1);
    assert_eq!(
        (
            nodes.rows[0].node.as_str(),
            nodes.rows[0].procs,
            nodes.rows[0].rss_kb
        ),
        ("n1", 3, mine.rss_kb)
    );
    // Their process's files, through the job, as the node serves them.
    let status = as_c1
        .read_all(&format!("job/{job_a}/n1/{}/status", pid(&a1)))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&status).contains(&format!("Uid:\t{c1}\t")));
    // c2: their job, not c1's.
    assert_eq!(job_row(&as_c2, &job_b).await.map(|r| r.procs), Some(1));
    assert!(enoent(as_c2.walk(&format!("job/{job_a}")).await));

    // gproc jobs as c1: job A, three processes; not job B.
    let server = pg.addr();
    let gproc_as = |user: &str, args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
            .arg(gproc())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (rc, out, err) = gproc_as(
        C1,
        &[
            "jobs",
            "--server",
            &server,
            "-j",
            &format!("{job_a},{job_b}"),
            "--json",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["job"], job_a.as_str());
    assert_eq!(list[0]["procs"], 3);
    assert_eq!(list[0]["users"], serde_json::json!([C1]));
    let (rc, out, err) = gproc_as(C1, &["jobs", "--server", &server, "-u", C1]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.starts_with("JOBID "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().next() == Some(job_a.as_str())),
        "{out}"
    );
    assert!(!out.contains(&job_b), "{out}");

    // Control: c1 stops and continues job A: their own two stop, the
    // process they see but may not signal is refused (EPERM for the
    // write, with what was sent), root's is never tried.
    let ctl_a = format!("job/{job_a}/ctl");
    let md = as_c1.metadata(&ctl_a).await.unwrap();
    assert_eq!(md.mode & 0o777, 0o222, "{md:?}");
    let (code, msg) = write_ctl(&as_c1, &ctl_a, "stop").await.unwrap_err();
    // (9P2000.L carries the errno alone; what was sent is in the audit.)
    assert_eq!(code, errno::EPERM, "{msg}");
    wait_for("c1's job processes stopped", || {
        state(pid(&a1)) == Some('T') && state(pid(&a2)) == Some('T')
    });
    assert_eq!(state(pid(&half)), Some('S'));
    assert_eq!(state(pid(&a_root)), Some('S'));
    assert_eq!(state(pid(&b1)), Some('S'));
    assert_eq!(
        write_ctl(&as_c1, &ctl_a, "explode").await.map_err(|e| e.0),
        Err(errno::EINVAL)
    );
    // c2 cannot reach job A at all.
    assert_eq!(
        write_ctl(&as_c2, &ctl_a, "kill").await.map_err(|e| e.0),
        Err(errno::ENOENT)
    );
    let _ = write_ctl(&as_c1, &ctl_a, "cont").await;
    wait_for("c1's job processes continued", || {
        state(pid(&a1)) == Some('S') && state(pid(&a2)) == Some('S')
    });
    let _ = write_ctl(&as_c1, &ctl_a, "kill").await;
    assert_eq!(a1.0.wait().unwrap().signal(), Some(9));
    assert_eq!(a2.0.wait().unwrap().signal(), Some(9));
    std::thread::sleep(Duration::from_millis(100));
    for p in [&half, &a_root, &b1, &stray] {
        assert!(state(pid(p)).is_some(), "{} unharmed", pid(p));
    }
    // c2 signals their own job whole.
    write_ctl(&as_c2, &format!("job/{job_b}/ctl"), "term")
        .await
        .unwrap();
    let mut b1 = b1;
    assert_eq!(b1.0.wait().unwrap().signal(), Some(15));

    // Audited per process, and once for each job write.
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("gproc::audit")).collect();
    for (uid, p, sig, result) in [
        (c1, pid(&a1), "SIGSTOP", "sent"),
        (c1, pid(&a2), "SIGKILL", "sent"),
        (c1, pid(&half), "SIGSTOP", "refused"),
        (c2, b1.0.id(), "SIGTERM", "sent"),
    ] {
        assert!(
            audit.iter().any(|l| l.contains(&format!("uid={uid} "))
                && l.contains(&format!("process=\"{p}\""))
                && l.contains(&format!("signal=\"{sig}\""))
                && l.contains(result)),
            "{uid} {p} {sig} {result}: {audit:#?}"
        );
    }
    assert!(
        audit.iter().any(|l| l.contains("job signal")
            && l.contains(&format!("job=\"{job_a}\""))
            && l.contains("sent 2, exited 0, refused 1")),
        "{audit:#?}"
    );
    assert!(
        !audit
            .iter()
            .any(|l| l.contains(&format!("process=\"{}\"", pid(&a_root)))),
        "root's process was never tried: {audit:#?}"
    );
}

/// The node directories at the root of the tree, as `root` sees it.
async fn nodes_of(root: &gproc::client::FidHandle) -> Vec<String> {
    let mut v: Vec<String> = root
        .read_dir("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.starts_with('n') && n != "nodes")
        .collect();
    v.sort();
    v
}

/// Waits (15 s at most) until `root` sees the nodes `want`.
async fn until(root: &gproc::client::FidHandle, want: &[&str]) {
    let mut got = Vec::new();
    for _ in 0..150 {
        got = nodes_of(root).await;
        if got == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nodes {got:?}, want {want:?}");
}

/// `[views] allot_from_jobs`: a user whose process runs in a real
/// Slurm-shaped cgroup is allotted the nodes where it runs (two names
/// for this machine's agent), combined with a static allotment of
/// another user's; once the process ends, the nodes are theirs no more.
/// Uids of their own (no one else runs as them), so the parallel tests'
/// jobs do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_allot_their_users_nodes() {
    use crate::jobs::{Cgroups, cgroup_mount};
    use std::process::{Command, Stdio};

    if !require(
        "root and setpriv",
        rustix::process::geteuid().is_root() && have("setpriv"),
    ) {
        return;
    }
    let v2 = cgroup_mount(None);
    if !require("a cgroup2 mount (this test makes cgroups)", v2.is_some()) {
        return;
    }
    let Some(v2) = v2 else { return };
    let me = std::process::id();
    let (uid_a, uid_b) = (61_000 + (me % 400) * 2, 61_001 + (me % 400) * 2);
    let job = format!("1{me}");
    let mut cg = Cgroups::default();
    let dir_a = cg.make(
        &v2,
        &format!("system.slice/slurmstepd.scope/job_{job}/step_0/user/task_0"),
    );
    let as_uid = |uid: u32| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            "--",
            "sleep",
            "600",
        ]);
        Proc(c.spawn().unwrap())
    };
    let a = as_uid(uid_a);
    std::fs::write(dir_a.join("cgroup.procs"), a.0.id().to_string()).unwrap();
    let b = as_uid(uid_b);
    wait_for("the processes' users", || {
        uids(a.0.id()).first() == Some(&uid_a) && uids(b.0.id()).first() == Some(&uid_b)
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = Proc(
        Command::new(gproc())
            .args(["agent", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    let pg = Port::new();
    let config = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n\
         [views]\nunallotted = \"nothing\"\nallot_from_jobs = true\n\n\
         [[views.allot]]\nuser = {uid_b}\nnodes = \"n2\"\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{sock}\"\n\n\
         [[nodes]]\nnames = \"n2\"\naddress = \"unix:{sock}\"\n",
        pg.addr(),
        sock = sock.display()
    );
    let _agg = start_aggregator(dir.path(), &config, &pg);
    let c = Client::connect(&gproc::net::Address::Tcp(pg.addr()), opts())
        .await
        .unwrap();
    let as_a = c.attach_named("job-owner", "", uid_a).await.unwrap();
    let as_b = c.attach_named("static", "", uid_b).await.unwrap();
    // The job's owner: both nodes, from the job; their process in /ps.
    until(&as_a, &["n1", "n2"]).await;
    let ps = Table::<PsRow>::parse(&String::from_utf8_lossy(
        &as_a.read_all("ps").await.unwrap(),
    ))
    .unwrap();
    let mut seen: Vec<&str> = ps
        .rows
        .iter()
        .filter(|r| r.pid as u32 == a.0.id())
        .map(|r| r.node.as_str())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, ["n1", "n2"]);
    // The other: their static node alone (their process is in no job).
    until(&as_b, &["n2"]).await;
    let ps = Table::<PsRow>::parse(&String::from_utf8_lossy(
        &as_b.read_all("ps").await.unwrap(),
    ))
    .unwrap();
    assert!(ps.rows.iter().all(|r| r.node == "n2"), "{:?}", ps.rows);
    assert!(ps.rows.iter().any(|r| r.pid as u32 == b.0.id()));
    // The job's process ends: its nodes are the user's no more.
    drop(a);
    until(&as_a, &[]).await;
    until(&as_b, &["n2"]).await;
}

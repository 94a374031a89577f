//! Jobs (issue 15): a process's batch job and step, from its cgroups.
//!
//! On this machine, as root: real processes moved into Slurm-shaped
//! cgroups the test makes (cgroup v2 `system.slice/slurmstepd.scope/...`,
//! and v1 `slurm/uid_N/job_N/step_N` in the freezer hierarchy when one is
//! mounted), one in a site pattern given with `--job-cgroup`, one in a
//! user-delegated look-alike and one outside any job. Their jobs are
//! checked in the agent's summary, in the aggregator's `/ps` (also from
//! diod serving the same `/proc`: the per-process fallback), with `gproc
//! ps -j` and `gproc kill -j`; a test user's process in no job is the only
//! one `gproc ps --strays` lists. The cgroups are removed afterwards,
//! failed or not.
//!
//! On the simulator: `gproc ps -j` lists exactly the `/ps` rows of a job
//! spread over several nodes (some of them without a summary, so from the
//! per-process fallback), `gproc kill -j --dry-run` lists exactly them,
//! and `gproc ps --forest` puts every process under its parent.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gproc::client::{Client, ClientOptions};
use gproc::format::jobs::JobRef;
use gproc::format::summary;
use gproc::format::table::{JobRow, PsRow, Table};
use gproc::net::Address;
use gproc::sim::{SimCluster, SimOptions};

use crate::common::*;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// A cgroup filesystem mounted here: its mount point, from mountinfo
/// (`root` must be `/`, so the paths in `/proc/<pid>/cgroup` are the
/// paths under the mount point). `v1` names a v1 controller to look for;
/// `None` finds the cgroup2 mount.
pub(crate) fn cgroup_mount(v1: Option<&str>) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (root, point) = (pre.get(3)?, pre.get(4)?);
        let (fstype, supers) = (post.first()?, post.get(2).copied().unwrap_or(""));
        let ok = match v1 {
            None => *fstype == "cgroup2",
            Some(c) => *fstype == "cgroup" && supers.split(',').any(|o| o == c),
        };
        (ok && *root == "/").then(|| PathBuf::from(point))
    })
}

/// Cgroup directories this test made, removed when dropped (deepest
/// first), any process still in one moved to its hierarchy's root first.
#[derive(Default)]
pub(crate) struct Cgroups {
    made: Vec<(PathBuf, PathBuf)>,
}

impl Cgroups {
    /// Makes `mount/rel` and its missing parents; returns the leaf.
    pub(crate) fn make(&mut self, mount: &Path, rel: &str) -> PathBuf {
        let mut dir = mount.to_path_buf();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            dir.push(c);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                self.made.push((mount.to_path_buf(), dir.clone()));
            }
        }
        dir
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for (mount, dir) in self.made.iter().rev() {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(mount.join("cgroup.procs"), pid);
                }
            }
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if dir.exists() {
                eprintln!("could not remove the test's cgroup {}", dir.display());
            }
        }
    }
}

/// `sleep 600` moved into `cgroup` (a directory of a cgroup filesystem).
fn sleeper_in(cgroup: Option<&Path>) -> Proc {
    let child: Child = Command::new("sleep").arg("600").spawn().unwrap();
    if let Some(dir) = cgroup {
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string())
            .unwrap_or_else(|e| panic!("moving {} into {}: {e}", child.id(), dir.display()));
    }
    Proc(child)
}

/// `gproc ARGS`: exit status, stdout, stderr.
pub(crate) fn gproc_run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(gproc())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn job(id: &str, step: Option<&str>) -> Option<JobRef> {
    Some(JobRef {
        id: id.into(),
        step: step.map(Into::into),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cgroups_name_jobs_at_the_agent_the_aggregator_and_the_cli() {
    if !require("root", rustix::process::geteuid().is_root()) {
        return;
    }
    let v2 = cgroup_mount(None);
    let v1 = cgroup_mount(Some("freezer"));
    if !require("a cgroup2 mount (this test makes cgroups)", v2.is_some()) {
        return;
    }
    let Some(v2) = v2 else { return };
    if v1.is_none() {
        eprintln!(
            "no cgroup v1 freezer hierarchy mounted: v1 is covered by format::jobs's unit tests only"
        );
    }
    let me = std::process::id();
    let (v2_job, v1_job, site_job, fake_job) = (
        format!("7{me}"),
        format!("8{me}"),
        format!("9{me}"),
        format!("6{me}"),
    );
    // Declared first, so removed last: after every process below is gone.
    let mut cg = Cgroups::default();
    let v2_dir = cg.make(
        &v2,
        &format!("system.slice/slurmstepd.scope/job_{v2_job}/step_0/user/task_0"),
    );
    let site_root = format!("gproc-test-{me}.slice");
    let site_dir = cg.make(&v2, &format!("{site_root}/run-{site_job}.scope"));
    let fake_dir = cg.make(
        &v2,
        &format!("user.slice/user-1000.slice/user@1000.service/app.slice/job_{fake_job}/step_0"),
    );
    let v1_dir = v1
        .as_ref()
        .map(|m| cg.make(m, &format!("slurm/uid_0/job_{v1_job}/step_batch")));

    let in_v2 = sleeper_in(Some(&v2_dir));
    let in_site = sleeper_in(Some(&site_dir));
    let in_fake = sleeper_in(Some(&fake_dir));
    let outside = sleeper_in(None);
    let mut in_v1 = v1_dir.as_deref().map(|d| sleeper_in(Some(d)));
    // A test user's processes, one in the job and one in none (a stray),
    // when the test can make users.
    let user = (have("useradd") && have("setpriv")).then(|| test_user("gproc-c1"));
    let as_user = |dir: Option<&Path>| {
        let child = Command::new("setpriv")
            .args([
                "--reuid",
                "gproc-c1",
                "--regid",
                "gproc-c1",
                "--init-groups",
                "--",
                "sleep",
                "600",
            ])
            .spawn()
            .unwrap();
        if let Some(d) = dir {
            std::fs::write(d.join("cgroup.procs"), child.id().to_string()).unwrap();
        }
        Proc(child)
    };
    let users_dir = cg.make(
        &v2,
        &format!("system.slice/slurmstepd.scope/job_5{me}/step_extern"),
    );
    let users_job = user.map(|_| as_user(Some(&users_dir)));
    let users_stray = user.map(|_| as_user(None));
    let pid = |p: &Proc| p.0.id() as i32;
    let cgroup_text = std::fs::read_to_string(format!("/proc/{}/cgroup", pid(&in_v2))).unwrap();
    assert!(
        cgroup_text.contains(&format!(
            "/system.slice/slurmstepd.scope/job_{v2_job}/step_0"
        )),
        "{cgroup_text}"
    );

    // The agent, with a site pattern; a bad one is refused up front.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("agent.sock");
    let (rc, _, err) = gproc_run(&[
        "agent",
        "--listen",
        &format!("unix:{}", dir.path().join("bad.sock").display()),
        "--job-cgroup",
        "/*/job_{job}",
    ]);
    assert_ne!(rc, 0);
    assert!(
        err.contains("--job-cgroup") && err.contains("literal text"),
        "{err}"
    );
    let site_pattern = format!("/{site_root}/run-{{job}}.scope");
    let _agent = Proc(
        Command::new(gproc())
            .args(["agent", "--control", "--listen"])
            .arg(format!("unix:{}", sock.display()))
            .args(["--job-cgroup", &site_pattern])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the agent's socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });

    // 1. The agent's summary.
    let c = Client::connect(&Address::Unix(sock.clone()), opts())
        .await
        .unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let s = summary::parse(&root.read_all(".gproc/ps").await.unwrap()).unwrap();
    let job_at_agent = |p: &Proc| {
        s.procs
            .iter()
            .find(|e| e.pid == pid(p))
            .unwrap_or_else(|| panic!("pid {} in the summary", pid(p)))
            .job
            .as_deref()
            .cloned()
    };
    assert_eq!(job_at_agent(&in_v2), job(&v2_job, Some("0")));
    assert_eq!(job_at_agent(&in_site), job(&site_job, None));
    assert_eq!(
        job_at_agent(&in_fake),
        None,
        "a user's look-alike is no job"
    );
    assert_eq!(job_at_agent(&outside), None);
    if let Some(p) = &in_v1 {
        assert_eq!(job_at_agent(p), job(&v1_job, Some("batch")));
    }

    // 2. The aggregator's /ps: n1 is the agent, d1 diod serving the same
    // /proc (no summary: the aggregator reads each <pid>/cgroup).
    let dport = free_port();
    let diod = start_diod(dport);
    let pg = Port::new();
    let mut config = format!(
        "[server]\nlisten = [\"{}\"]\nauth = \"none\"\n\n\
         [control]\nenabled = true\n\n\
         [[nodes]]\nnames = \"n1\"\naddress = \"unix:{}\"\n\n",
        pg.addr(),
        sock.display()
    );
    if diod.is_some() {
        config.push_str(&format!(
            "[[nodes]]\nnames = \"d1\"\naddress = \"127.0.0.1:{dport}\"\naname = \"/proc\"\n"
        ));
    }
    let _agg = start_aggregator(dir.path(), &config, &pg);
    let server = pg.addr();
    let agg = Client::connect(&Address::Tcp(server.clone()), opts())
        .await
        .unwrap();
    let aroot = agg.attach("root", "", Some(0)).await.unwrap();
    let ps = String::from_utf8(aroot.read_all("ps").await.unwrap().to_vec()).unwrap();
    let table = Table::<PsRow>::parse(&ps).unwrap();
    let row = |node: &str, p: &Proc| {
        table
            .rows
            .iter()
            .find(|r| r.node == node && r.pid == pid(p))
            .unwrap_or_else(|| panic!("pid {} of {node} in /ps:\n{ps}", pid(p)))
            .clone()
    };
    let js = |r: PsRow| (r.job, r.step);
    // The fallback for diod knows the built-in patterns only (the site's
    // are the agent's flags).
    let nodes: &[&str] = if diod.is_some() {
        &["n1", "d1"]
    } else {
        &["n1"]
    };
    for &n in nodes {
        assert_eq!(js(row(n, &in_v2)), (Some(v2_job.clone()), Some("0".into())));
        let site = (n == "n1").then(|| site_job.clone());
        assert_eq!(js(row(n, &in_site)), (site, None), "{n}");
        assert_eq!(js(row(n, &in_fake)), (None, None), "{n}");
        assert_eq!(js(row(n, &outside)), (None, None), "{n}");
        if let Some(p) = &in_v1 {
            assert_eq!(
                js(row(n, p)),
                (Some(v1_job.clone()), Some("batch".into())),
                "{n}"
            );
        }
    }

    // 2b. The job tree: the job in /jobs, its process in its ps and its
    // node in its nodes (on each node serving this /proc); the process in
    // no job, and the look-alike's, in no job's ps.
    let jobs = String::from_utf8(aroot.read_all("jobs").await.unwrap().to_vec()).unwrap();
    let jobs = Table::<JobRow>::parse(&jobs).unwrap();
    let j = jobs
        .rows
        .iter()
        .find(|r| r.job == v2_job)
        .unwrap_or_else(|| panic!("{v2_job} in /jobs: {jobs:?}"));
    assert_eq!(
        (j.procs, j.nnodes),
        (nodes.len() as u64, nodes.len() as u64)
    );
    let job_ps = String::from_utf8(
        aroot
            .read_all(&format!("job/{v2_job}/ps"))
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let mut got: Vec<(String, i32)> = Table::<PsRow>::parse(&job_ps)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| (r.node, r.pid))
        .collect();
    got.sort();
    let mut want: Vec<(String, i32)> = nodes.iter().map(|n| (n.to_string(), pid(&in_v2))).collect();
    want.sort();
    assert_eq!(got, want, "{job_ps}");
    let job_nodes = aroot
        .read_all(&format!("job/{v2_job}/nodes"))
        .await
        .unwrap();
    let job_nodes =
        Table::<gproc::format::table::JobNodeRow>::parse(&String::from_utf8_lossy(&job_nodes))
            .unwrap();
    assert_eq!(job_nodes.rows.len(), nodes.len());
    for id in aroot.read_dir("job").await.unwrap() {
        if id.name == "." || id.name == ".." {
            continue;
        }
        let Ok(text) = aroot.read_all(&format!("job/{}/ps", id.name)).await else {
            continue; // another test's job, ended meanwhile
        };
        let t = Table::<PsRow>::parse(&String::from_utf8_lossy(&text)).unwrap();
        for p in [&outside, &in_fake] {
            assert!(
                !t.rows.iter().any(|r| r.node == "n1" && r.pid == pid(p)),
                "{} in job {}",
                pid(p),
                id.name
            );
        }
    }
    let (rc, out, err) = gproc_run(&["jobs", "--server", &server, "-j", &v2_job, "--no-header"]);
    assert_eq!(rc, 0, "{err}");
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f.first(), Some(&v2_job.as_str()), "{out}");
    assert_eq!(f.get(2), Some(&nodes.len().to_string().as_str()), "{out}");

    // 3. gproc ps -j: exactly the job's process (on each node serving
    // this machine's /proc), in a table and in JSON.
    let (rc, out, err) = gproc_run(&[
        "ps",
        "--server",
        &server,
        "-j",
        &v2_job,
        "-o",
        "node,pid,jobid,step",
        "--sort",
        "node",
        "--no-header",
    ]);
    assert_eq!(rc, 0, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let me_pid = pid(&in_v2).to_string();
    let mut want = Vec::new();
    if diod.is_some() {
        want.push(vec!["d1", me_pid.as_str(), v2_job.as_str(), "0"]);
    }
    want.push(vec!["n1", me_pid.as_str(), v2_job.as_str(), "0"]);
    assert_eq!(lines, want, "{out}");
    let (rc, out, err) = gproc_run(&["ps", "--server", &server, "-j", &site_job, "--json"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["pid"], pid(&in_site));
    assert_eq!(list[0]["job"], site_job.as_str());
    assert_eq!(list[0]["step"], serde_json::Value::Null);
    let (rc, out, _) = gproc_run(&["ps", "--server", &server, "-j", &fake_job]);
    assert_eq!(rc, 0);
    assert!(!out.contains(&pid(&in_fake).to_string()), "{out}");

    // Strays: of these, only the test user's process in no job (root's
    // are a system account's).
    if let (Some(j), Some(s)) = (&users_job, &users_stray) {
        let (uid, _) = user.unwrap();
        wait_for("the user's processes switched", || {
            [j, s].iter().all(|p| {
                std::fs::read_to_string(format!("/proc/{}/status", pid(p)))
                    .unwrap_or_default()
                    .contains(&format!("Uid:\t{uid}\t"))
            })
        });
        let pids: Vec<String> = [&in_v2, &in_site, &in_fake, &outside, j, s]
            .iter()
            .map(|p| pid(p).to_string())
            .collect();
        let listed = || {
            let (rc, out, err) = gproc_run(&[
                "ps",
                "--server",
                &server,
                "-n",
                "n1",
                "--strays",
                "-p",
                &pids.join(","),
                "-o",
                "pid",
                "--no-header",
            ]);
            assert_eq!(rc, 0, "{err}");
            out.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        // /ps shows the user's processes once the summary is read again.
        wait_for("/ps lists the user's processes", || !listed().is_empty());
        assert_eq!(listed(), vec![pid(s).to_string()]);
    }

    // 4. gproc kill -j: every process of the job, and nothing else.
    if let Some(p) = in_v1.as_mut() {
        let (rc, out, err) = gproc_run(&[
            "kill", "--server", &server, "-j", &v1_job, "-n", "n1", "--yes",
        ]);
        assert_eq!(rc, 0, "{out}{err}");
        assert!(
            out.contains(&format!("n1 {} root: sent SIGTERM", pid(p))),
            "{out}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(p.0.wait().unwrap().signal(), Some(15));
    }
    let (rc, out, err) = gproc_run(&[
        "kill",
        "--server",
        &server,
        "-j",
        &v2_job,
        "-n",
        "n1",
        "--dry-run",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains(&pid(&in_v2).to_string()), "{out}");
    assert!(err.contains("1 process on 1 node"), "{err}");
    for p in [&in_v2, &in_site, &in_fake, &outside] {
        assert!(
            std::fs::metadata(format!("/proc/{}", pid(p))).is_ok(),
            "{} still runs",
            pid(p)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_jobs_across_nodes_select_with_ps_and_kill() {
    let cluster = SimCluster::start(SimOptions {
        nodes: 48,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 15, 0, 1),
        no_summary: 0.3,
        churn_per_min: 0.0,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let no_summary: std::collections::HashSet<String> = cluster
        .nodes()
        .iter()
        .filter(|n| !n.has_summary)
        .map(|n| n.name.clone())
        .collect();
    assert!(!no_summary.is_empty());
    // Summaries and files kept for the test's length: one /ps throughout.
    let (agg, stop, server) = aggregate_sim(&cluster, KEEP_FOR_THE_TEST).await;
    let c = Client::connect(&agg.addresses[0], opts()).await.unwrap();
    let root = c.attach("root", "", Some(0)).await.unwrap();
    let read_ps = || async {
        let ps = String::from_utf8(root.read_all("ps").await.unwrap().to_vec()).unwrap();
        Table::<PsRow>::parse(&ps).unwrap().rows
    };
    let rows = read_ps().await;
    // The job on most nodes, among those with processes on a node
    // without a summary (its rows come from the per-process fallback).
    let mut nodes_of: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for r in &rows {
        if let Some(j) = &r.job {
            nodes_of
                .entry(j.clone())
                .or_default()
                .insert(r.node.clone());
        }
    }
    let (job_id, nodes) = nodes_of
        .iter()
        .filter(|(_, nodes)| nodes.iter().any(|n| no_summary.contains(n)))
        .max_by_key(|(_, nodes)| nodes.len())
        .expect("a job with processes on a node without a summary");
    assert!(nodes.len() > 1, "{job_id} spans {nodes:?}");
    assert!(
        rows.iter().any(|r| r.job.is_none() && r.user != "root"),
        "some users' processes are in no job"
    );
    let want: Vec<PsRow> = rows
        .iter()
        .filter(|r| r.job.as_deref() == Some(job_id.as_str()))
        .cloned()
        .collect();

    let job_arg = job_id.clone();
    let server2 = server.clone();
    let server_for_forest = server.clone();
    let (rc, out, err) = tokio::task::spawn_blocking(move || {
        gproc_run(&["ps", "--server", &server2, "-j", &job_arg, "--json"])
    })
    .await
    .unwrap();
    assert_eq!(rc, 0, "{err}");
    let got: Vec<PsRow> = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| PsRow {
            node: o["node"].as_str().unwrap().into(),
            pid: o["pid"].as_i64().unwrap() as i32,
            ppid: o["ppid"].as_i64().unwrap() as i32,
            user: o["user"].as_str().unwrap().into(),
            state: o["state"].as_str().unwrap().chars().next().unwrap(),
            cpu: o["cpu"].as_f64().unwrap(),
            mem: o["mem"].as_f64().unwrap(),
            rss_kb: o["rss_kb"].as_u64().unwrap(),
            vsz_kb: o["vsz_kb"].as_u64().unwrap(),
            start: o["start"].as_u64().unwrap(),
            time: o["time"].as_u64().unwrap(),
            threads: o["threads"].as_i64().unwrap(),
            job: o["job"].as_str().map(Into::into),
            gpu: o["gpu"].as_str().map(Into::into),
            step: o["step"].as_str().map(Into::into),
            command: o["command"].as_str().unwrap().into(),
        })
        .collect();
    assert_eq!(got.len(), want.len());
    if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
        panic!("gproc ps -j: {g:?}\n/ps: {w:?}");
    }
    // The same table once more: nothing changed under the test.
    assert_eq!(read_ps().await, rows);

    let job_arg = job_id.clone();
    let (rc, out, err) = tokio::task::spawn_blocking(move || {
        gproc_run(&["kill", "--server", &server, "-j", &job_arg, "--dry-run"])
    })
    .await
    .unwrap();
    assert_eq!(rc, 0, "{err}");
    let listed: std::collections::BTreeSet<(String, i32)> = out
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].parse().unwrap())
        })
        .collect();
    let expected: std::collections::BTreeSet<(String, i32)> =
        want.iter().map(|r| (r.node.clone(), r.pid)).collect();
    assert_eq!(listed, expected);
    assert!(
        err.contains(&format!(
            "{} processes on {} nodes",
            want.len(),
            nodes.len()
        )),
        "{err}"
    );

    // --forest: each node's rows, every child right under its parent's
    // subtree, one level deeper, as /ps's PPID links them.
    let picked: Vec<String> = nodes.iter().take(3).cloned().collect();
    let hostlist = picked.join(",");
    let server3 = server_for_forest.clone();
    let (rc, out, err) = tokio::task::spawn_blocking(move || {
        gproc_run(&[
            "ps", "--server", &server3, "-n", &hostlist, "--forest", "--json",
        ])
    })
    .await
    .unwrap();
    assert_eq!(rc, 0, "{err}");
    let list: Vec<(String, i32, i32, usize)> = serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["node"].as_str().unwrap().to_string(),
                o["pid"].as_i64().unwrap() as i32,
                o["ppid"].as_i64().unwrap() as i32,
                o["depth"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let mut listed: Vec<(String, i32)> = list.iter().map(|(n, p, _, _)| (n.clone(), *p)).collect();
    listed.sort();
    let mut expected: Vec<(String, i32)> = rows
        .iter()
        .filter(|r| picked.contains(&r.node))
        .map(|r| (r.node.clone(), r.pid))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    let mut deep = 0;
    for (i, (node, pid, ppid, depth)) in list.iter().enumerate() {
        let pids_here: std::collections::HashSet<i32> = list
            .iter()
            .filter(|(n, ..)| n == node)
            .map(|(_, p, ..)| *p)
            .collect();
        if *depth == 0 {
            assert!(
                !pids_here.contains(ppid) || ppid == pid,
                "{node} {pid} is a root"
            );
            continue;
        }
        deep = deep.max(*depth);
        let parent = list[..i]
            .iter()
            .rev()
            .find(|(n, _, _, d)| n == node && *d < *depth)
            .unwrap_or_else(|| panic!("{node} {pid}: nothing above it"));
        assert_eq!(
            (parent.1, parent.3),
            (*ppid, depth - 1),
            "{node} {pid} under {parent:?}"
        );
    }
    assert!(deep >= 2, "the forest has depth: {deep}");

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

//! Control over a simulated cluster (issue 16): `gproc kill -j` through an
//! aggregator with `[control]` on, over simulated nodes with `ctl` files,
//! checked against the simulator's model and its record of every signal.
//!
//! Root ends a job spread over several nodes: exactly the processes the
//! dry run listed are signalled, they end on every node, nothing else is
//! touched, exit 0. The job's owner, a gproc administrator who is not
//! root, kills another job: their own processes end, the root-owned
//! `slurmstepd`s are refused by the nodes (EPERM, as a kernel would),
//! reported per process, exit 1.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use gproc::net::Address;
use gproc::sim::{SignalOutcome, Sim, SimCluster, SimOptions};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// `gproc ARGS` as `uid` (root when `None`) with `USER` set to `user`:
/// exit status, stdout, stderr.
fn gproc_as(uid: Option<u32>, user: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--clear-groups",
                "--",
            ])
            .arg(gproc());
            c
        }
        None => Command::new(gproc()),
    };
    let out = cmd
        .args(args)
        .env("USER", user)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every process of the model: (node name, pid) -> (start, uid, user,
/// job).
type Procs = BTreeMap<(String, u32), (u64, u32, String, Option<String>)>;

fn everything(sim: &Sim) -> Procs {
    let mut out = BTreeMap::new();
    for i in 0..sim.len() {
        for p in sim.processes(i) {
            out.insert((sim.node_name(i), p.pid), (p.start, p.uid, p.user, p.job));
        }
    }
    out
}

/// The (node, pid) of the rows `gproc kill` lists before it signals:
/// the table after its header, up to the first report line.
fn listed(out: &str) -> BTreeSet<(String, u32)> {
    out.lines()
        .skip(1)
        .take_while(|l| !l.contains(": sent ") && !l.contains(": not sent"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gproc_kill_ends_a_simulated_job_on_every_node_and_reports_refusals() {
    if !require(
        "root and setpriv",
        rustix::process::geteuid().is_root() && have("setpriv"),
    ) {
        return;
    }
    let cluster = SimCluster::start(SimOptions {
        nodes: 40,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 21, 0, 1),
        control: true,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let sim = cluster.sim().clone();
    let before = everything(&sim);
    // Jobs by their processes: the one on most nodes for root, another
    // one for its owner.
    let mut jobs: BTreeMap<String, BTreeSet<(String, u32)>> = BTreeMap::new();
    for (k, (_, _, _, job)) in &before {
        if let Some(j) = job {
            jobs.entry(j.clone()).or_default().insert(k.clone());
        }
    }
    let nodes_of =
        |j: &str| -> BTreeSet<String> { jobs[j].iter().map(|(n, _)| n.clone()).collect() };
    let wide = jobs
        .keys()
        .max_by_key(|j| nodes_of(j).len())
        .unwrap()
        .clone();
    assert!(nodes_of(&wide).len() > 1, "{wide} spans one node");
    let other = jobs.keys().find(|j| **j != wide).unwrap().clone();
    let owner = before
        .iter()
        .filter(|(k, v)| jobs[&other].contains(k) && v.1 != 0)
        .map(|(_, v)| v.1)
        .next()
        .expect("the job has its owner's processes");
    let owner_name = before
        .values()
        .find(|v| v.1 == owner)
        .map(|v| v.2.clone())
        .unwrap();

    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nauth = \"none\"\n\n\
         [control]\nenabled = true\n\n\
         [views]\nadmin_users = [\"root\", {owner}]\n\n{}",
        cluster.config_toml()
    );
    let cfg = gproc::config::Config::from_str(&text, "sim.toml").unwrap();
    let stop = CancellationToken::new();
    let agg = gproc::aggregator::Aggregator::start(&cfg, stop.clone())
        .await
        .unwrap();
    let server = match &agg.addresses[0] {
        Address::Tcp(a) => a.clone(),
        a => panic!("{a:?}"),
    };
    let run = |uid: Option<u32>, user: &str, args: Vec<String>| {
        let user = user.to_string();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            gproc_as(uid, &user, &args)
        })
    };
    let kill = |job: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["kill", "--server", &server, "-j", job]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // The dry run lists the job's processes and signals nothing.
    let (rc, dry, err) = run(None, "root", kill(&wide, &["--dry-run"]))
        .await
        .unwrap();
    assert_eq!(rc, 0, "{dry}{err}");
    assert_eq!(listed(&dry), jobs[&wide], "{dry}");
    assert!(sim.signals().is_empty(), "{:?}", sim.signals());
    assert_eq!(everything(&sim), before);

    // Root: what the dry run listed is signalled, and ends, on every node.
    let (rc, out, err) = run(None, "root", kill(&wide, &["--yes"])).await.unwrap();
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(listed(&out), listed(&dry));
    let log = sim.signals();
    let signalled: BTreeSet<(String, u32)> =
        log.iter().map(|r| (sim.node_name(r.node), r.pid)).collect();
    assert_eq!(signalled, jobs[&wide]);
    assert_eq!(log.len(), jobs[&wide].len(), "each once: {log:?}");
    for r in &log {
        assert_eq!(
            (r.uid, r.signal, r.outcome),
            (0, Some(15), SignalOutcome::Ended),
            "{r:?}"
        );
        let (node, pid) = (sim.node_name(r.node), r.pid);
        let (start, _, user, _) = &before[&(node.clone(), pid)];
        assert_eq!(r.start, *start);
        assert!(
            out.contains(&format!("{node} {pid} {user}: sent SIGTERM")),
            "{out}"
        );
    }
    let after = everything(&sim);
    let mut untouched = before.clone();
    untouched.retain(|k, _| !jobs[&wide].contains(k));
    assert_eq!(after, untouched, "the job's processes end, nothing else");

    // Its owner, an administrator who is not root: their processes end;
    // the nodes refuse root's slurmstepds, each reported; exit 1.
    let (rc, out, err) = run(
        Some(owner),
        &owner_name,
        kill(&other, &["--signal", "KILL", "--yes"]),
    )
    .await
    .unwrap();
    assert_eq!(rc, 1, "{out}{err}");
    assert_eq!(listed(&out), jobs[&other], "{out}");
    let mine: BTreeSet<(String, u32)> = jobs[&other]
        .iter()
        .filter(|k| before[*k].1 == owner)
        .cloned()
        .collect();
    let roots: BTreeSet<(String, u32)> = jobs[&other]
        .iter()
        .filter(|k| before[*k].1 == 0)
        .cloned()
        .collect();
    assert!(!mine.is_empty() && !roots.is_empty(), "{:?}", jobs[&other]);
    assert_eq!(mine.len() + roots.len(), jobs[&other].len());
    for (node, pid) in &mine {
        assert!(
            out.contains(&format!("{node} {pid} {owner_name}: sent SIGKILL")),
            "{out}"
        );
    }
    for (node, pid) in &roots {
        assert!(
            out.contains(&format!(
                "{node} {pid} root: not sent: Operation not permitted"
            )),
            "{out}"
        );
    }
    assert!(
        err.contains(&format!(
            "{} of {} not sent",
            roots.len(),
            jobs[&other].len()
        )),
        "{err}"
    );
    let now = everything(&sim);
    let mut expect = untouched.clone();
    expect.retain(|k, _| !mine.contains(k));
    assert_eq!(now, expect, "their processes end, root's stay");
    let refused = sim
        .signals()
        .into_iter()
        .filter(|r| r.outcome == SignalOutcome::Refused(gproc::proto::errno::EPERM))
        .map(|r| {
            assert_eq!((r.uid, r.signal), (owner, Some(9)), "{r:?}");
            (sim.node_name(r.node), r.pid)
        })
        .collect::<BTreeSet<_>>();
    assert_eq!(refused, roots);

    stop.cancel();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), agg.task).await;
    cluster.shutdown().await;
}

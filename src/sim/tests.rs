//! Handler-level tests of the simulated node: shapes, formats, churn.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use procfs::FromRead;

use super::model::HZ;
use super::tables::Role;
use super::*;
use crate::format::summary;
use crate::proto::errno;
use crate::proto::s_if;
use crate::server::{AttachRequest, Contents, Filesystem, Identity, OpenFlags, Proof};

fn opts(nodes: usize) -> SimOptions {
    SimOptions {
        nodes,
        epoch: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..SimOptions::default()
    }
}

fn root() -> Identity {
    Identity::lookup(0, Proof::Peer)
}

fn attach_req() -> AttachRequest {
    AttachRequest {
        aname: "/proc".into(),
        who: root(),
    }
}

async fn walk(fs: &SimNodeFs, path: &str) -> crate::server::FsResult<SimNode> {
    let (mut f, _) = fs.attach(&attach_req()).await?;
    for n in path.split('/').filter(|s| !s.is_empty()) {
        f = fs.walk(&root(), &f, n).await?.0;
    }
    Ok(f)
}

async fn open(fs: &SimNodeFs, f: &SimNode) -> crate::server::FsResult<Contents> {
    fs.open(&root(), f, OpenFlags::READ).await
}

async fn read(fs: &SimNodeFs, path: &str) -> crate::server::FsResult<Vec<u8>> {
    match open(fs, &walk(fs, path).await?).await? {
        Contents::File(b) | Contents::Fresh(b) => Ok(b.to_vec()),
        c => panic!("{path}: not a file: {c:?}"),
    }
}

async fn entries(fs: &SimNodeFs, path: &str) -> Vec<crate::proto::DirEntry> {
    match open(fs, &walk(fs, path).await.unwrap()).await.unwrap() {
        Contents::Dir(d) => d,
        c => panic!("{path}: not a directory: {c:?}"),
    }
}

async fn list(fs: &SimNodeFs, path: &str) -> Vec<String> {
    entries(fs, path)
        .await
        .into_iter()
        .map(|e| e.name)
        .collect()
}

fn node(sim: &Arc<Sim>, i: usize) -> SimNodeFs {
    SimNodeFs::new(sim.clone(), i)
}

/// A file's bytes without the summary's `generation` line: the one line
/// a seed does not decide (its epoch is drawn per start, so a restarted
/// simulator never takes an old token).
async fn read_fixed(fs: &SimNodeFs, path: &str) -> Vec<u8> {
    let b = read(fs, path).await.unwrap();
    match crate::format::delta::generation(&b) {
        Some(t) => String::from_utf8(b)
            .unwrap()
            .replace(&format!("generation {t}\n"), "")
            .into_bytes(),
        None => b,
    }
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_bytes() {
    let a = Arc::new(Sim::new(opts(8)).unwrap());
    let b = Arc::new(Sim::new(opts(8)).unwrap());
    for i in 0..8 {
        for path in ["1/status", ".gproc/ps", "loadavg", "stat", "meminfo"] {
            let x = read_fixed(&node(&a, i), path).await;
            let y = read_fixed(&node(&b, i), path).await;
            assert_eq!(x, y, "node {i} {path}");
        }
    }
    let c = Arc::new(Sim::new(SimOptions { seed: 2, ..opts(8) }).unwrap());
    let mut differ = false;
    for i in 0..8 {
        differ |= read_fixed(&node(&a, i), ".gproc/ps").await
            != read_fixed(&node(&c, i), ".gproc/ps").await;
    }
    assert!(differ, "another seed gives another cluster");
}

#[tokio::test(start_paused = true)]
async fn files_parse_with_procfs() {
    // One node per rack of 32: every hardware kind of the seed shows up.
    let sim = Arc::new(Sim::new(opts(32 * 12)).unwrap());
    let mut checked = 0;
    let mut archs = std::collections::BTreeSet::new();
    for i in (0..12).map(|r| r * 32 + r) {
        let fs = node(&sim, i);
        let ps = summary::parse(&read(&fs, ".gproc/ps").await.unwrap()).unwrap();
        archs.insert((ps.arch.clone(), ps.page_size, ps.kernel.clone()));
        let mem = procfs::Meminfo::from_read(&read(&fs, "meminfo").await.unwrap()[..]).unwrap();
        assert_eq!(mem.mem_total, ps.mem_total_kb * 1024);
        let la = procfs::LoadAverage::from_read(&read(&fs, "loadavg").await.unwrap()[..]).unwrap();
        assert!(la.max as usize >= ps.procs.len());
        let ks_text = read(&fs, "stat").await.unwrap();
        let info = procfs::ExplicitSystemInfo {
            boot_time_secs: ps.boot_time,
            ticks_per_second: 100,
            page_size: ps.page_size,
            is_little_endian: true,
        };
        let ks =
            <procfs::KernelStats as procfs::FromReadSI>::from_read(&ks_text[..], &info).unwrap();
        assert_eq!(ks.btime, ps.boot_time);
        assert_eq!(ks.cpu_time.len(), ps.cpus as usize);
        let ci = procfs::CpuInfo::from_read(&read(&fs, "cpuinfo").await.unwrap()[..]).unwrap();
        assert_eq!(ci.num_cores(), ps.cpus as usize);
        let up = procfs::Uptime::from_read(&read(&fs, "uptime").await.unwrap()[..]).unwrap();
        assert!((up.uptime - ps.uptime).abs() < 0.01);
        for p in &ps.procs {
            let stat_b = read(&fs, &format!("{}/stat", p.pid)).await.unwrap();
            let st = procfs::process::Stat::from_read(&stat_b[..]).unwrap();
            assert_eq!(st.pid, p.pid);
            assert_eq!(st.ppid, p.ppid);
            assert_eq!(st.comm.as_bytes(), &*p.comm.decode());
            assert_eq!(st.state, p.state);
            assert_eq!((st.utime, st.stime), (p.utime, p.stime));
            assert_eq!(st.starttime, p.start_ticks);
            assert_eq!(st.rss, p.rss_pages);
            assert_eq!(st.vsize, p.vsize);
            assert_eq!(st.num_threads, p.threads);
            assert_eq!(
                stat_b.iter().filter(|&&b| b == b' ').count() + 1 - comm_spaces(&p.comm.decode()),
                52
            );
            let status_b = read(&fs, &format!("{}/status", p.pid)).await.unwrap();
            let s = procfs::process::Status::from_read(&status_b[..]).unwrap();
            assert_eq!((s.pid, s.ppid, s.tgid), (p.pid, p.ppid, p.pid));
            assert_eq!((s.ruid, s.euid), (p.ruid, p.euid));
            assert_eq!(s.threads as i64, p.threads);
            if p.cmdline.is_empty() {
                assert!(s.vmrss.is_none());
            } else {
                assert_eq!(s.vmrss.unwrap() / (ps.page_size / 1024), p.rss_pages);
            }
            let cmdline = read(&fs, &format!("{}/cmdline", p.pid)).await.unwrap();
            assert_eq!(
                crate::format::summary::Args::from_cmdline(&cmdline),
                p.cmdline
            );
            let statm = read(&fs, &format!("{}/statm", p.pid)).await.unwrap();
            let sm = procfs::process::StatM::from_read(&statm[..]).unwrap();
            assert_eq!(sm.resident, p.rss_pages);
            let io = read(&fs, &format!("{}/io", p.pid)).await.unwrap();
            procfs::process::Io::from_read(&io[..]).unwrap();
            let maps = read(&fs, &format!("{}/maps", p.pid)).await.unwrap();
            let mm = procfs::process::MemoryMaps::from_read(&maps[..]).unwrap();
            assert_eq!(
                mm.0.is_empty(),
                p.cmdline.is_empty(),
                "kernel threads map nothing"
            );
            let env = read(&fs, &format!("{}/environ", p.pid)).await.unwrap();
            assert!(env.is_empty() || env.ends_with(b"\0"));
            for var in env.split(|&b| b == 0).filter(|v| !v.is_empty()) {
                assert!(var.contains(&b'='), "{:?}", String::from_utf8_lossy(var));
            }
            checked += 1;
        }
        // Threads.
        let rank = ps.procs.iter().find(|p| p.threads > 2).unwrap();
        let tasks = list(&fs, &format!("{}/task", rank.pid)).await;
        assert_eq!(tasks.len() as i64, rank.threads + 2);
        let tid = rank.pid + 1;
        let ts = read(&fs, &format!("{}/task/{tid}/status", rank.pid))
            .await
            .unwrap();
        let ts = procfs::process::Status::from_read(&ts[..]).unwrap();
        assert_eq!((ts.pid, ts.tgid), (tid, rank.pid));
        let tst = read(&fs, &format!("{}/task/{tid}/stat", rank.pid))
            .await
            .unwrap();
        assert_eq!(procfs::process::Stat::from_read(&tst[..]).unwrap().pid, tid);
    }
    assert!(checked >= 12 * 100);
    assert!(archs.len() >= 2, "heterogeneous nodes: {archs:?}");
    assert!(
        archs.iter().any(|(a, p, _)| a == "aarch64" && *p == 65536),
        "{archs:?}"
    );
}

fn comm_spaces(comm: &[u8]) -> usize {
    comm.iter().filter(|&&b| b == b' ').count()
}

#[tokio::test(start_paused = true)]
async fn summary_matches_listing_and_tree_is_realistic() {
    let sim = Arc::new(Sim::new(opts(30)).unwrap());
    let mut users = std::collections::BTreeSet::new();
    let mut long_cmdline = false;
    let mut kworker = false;
    for i in 0..30 {
        let fs = node(&sim, i);
        let ps = summary::parse(&read(&fs, ".gproc/ps").await.unwrap()).unwrap();
        assert_eq!(ps.procs.len(), 100);
        assert_eq!(ps.hostname, sim.node_name(i));
        let root = list(&fs, "/").await;
        assert_eq!(&root[..3], [".", "..", ".gproc"]);
        let pids: Vec<i32> = root.iter().filter_map(|n| n.parse().ok()).collect();
        let sum_pids: Vec<i32> = ps.procs.iter().map(|p| p.pid).collect();
        assert_eq!(pids, sum_pids);
        let init = &ps.procs[0];
        assert_eq!(
            (init.pid, init.ppid, &*init.comm.decode()),
            (1, 0, &b"systemd"[..])
        );
        let known: std::collections::HashSet<i32> = sum_pids.iter().copied().collect();
        for p in &ps.procs {
            assert!(
                p.ppid == 0 || known.contains(&p.ppid),
                "{} has parent {}",
                p.pid,
                p.ppid
            );
            if p.ruid >= 1000 {
                users.insert(p.user.clone());
            }
            long_cmdline |= p.cmdline.iter().map(|a| a.len() + 1).sum::<usize>() > 1024;
            if p.comm.decode().starts_with(b"kworker") {
                kworker = true;
                assert!(p.cmdline.is_empty());
            }
        }
        assert!(ps.procs.iter().any(|p| p.comm.decode() == &b"sshd"[..]));
        let me = String::from_utf8(read(&fs, "1/comm").await.unwrap()).unwrap();
        assert_eq!(me, "systemd\n");
    }
    assert!(users.len() >= 3, "{users:?}");
    assert!(long_cmdline && kworker);
}

#[tokio::test(start_paused = true)]
async fn agent_shapes() {
    let sim = Arc::new(Sim::new(opts(2)).unwrap());
    let fs = node(&sim, 0);
    // Length 0, version 0, types.
    for (path, fmt) in [
        ("loadavg", s_if::REG),
        ("1", s_if::DIR),
        ("1/status", s_if::REG),
        ("1/exe", s_if::LNK),
        ("1/fd", s_if::DIR),
        ("1/fd/0", s_if::LNK),
        ("self", s_if::LNK),
        (".gproc/ps", s_if::REG),
    ] {
        let f = walk(&fs, path).await.unwrap();
        let m = fs.getattr(&root(), &f).await.unwrap();
        assert_eq!(
            (m.size, m.qid.version, m.mode & s_if::FMT),
            (0, 0, fmt),
            "{path}"
        );
    }
    // Symlinks are read, never opened.
    let exe = walk(&fs, "1/exe").await.unwrap();
    assert_eq!(
        fs.readlink(&root(), &exe).await.unwrap(),
        "/usr/lib/systemd/systemd"
    );
    assert_eq!(open(&fs, &exe).await.unwrap_err().errno, errno::ELOOP);
    let slf = walk(&fs, "self").await.unwrap();
    let agent: u32 = fs.readlink(&root(), &slf).await.unwrap().parse().unwrap();
    let comm = read(&fs, &format!("{agent}/comm")).await.unwrap();
    assert_eq!(comm, b"gproc\n");
    assert_eq!(
        fs.readlink(&root(), &walk(&fs, "1/fd/0").await.unwrap())
            .await
            .unwrap(),
        "/dev/null"
    );
    let kexe = walk(&fs, "2/exe").await.unwrap();
    assert_eq!(
        fs.readlink(&root(), &kexe).await.unwrap_err().errno,
        errno::ENOENT
    );
    // qids unique.
    let all = entries(&fs, "").await;
    let qids: std::collections::HashSet<_> = all[2..].iter().map(|e| e.qid.path).collect();
    assert_eq!(qids.len(), all.len() - 2);
    // Errors.
    for bad in [
        "nope",
        "01",
        "999999",
        "1/nope",
        "1/task/99999",
        "1/fd/4000",
    ] {
        assert_eq!(
            walk(&fs, bad).await.unwrap_err().errno,
            errno::ENOENT,
            "{bad}"
        );
    }
    let w = OpenFlags {
        read: false,
        write: true,
        truncate: false,
    };
    assert_eq!(
        fs.open(&root(), &walk(&fs, "loadavg").await.unwrap(), w)
            .await
            .unwrap_err()
            .errno,
        errno::EROFS
    );
    let mut bad = attach_req();
    bad.aname = "/etc".into();
    assert_eq!(fs.attach(&bad).await.unwrap_err().errno, errno::ENOENT);
    // `..` walks back up.
    let up = walk(&fs, "1/task/1/..").await.unwrap();
    assert_eq!(
        up.entry_qid(),
        walk(&fs, "1/task").await.unwrap().entry_qid()
    );
    let top = walk(&fs, "1/..").await.unwrap();
    assert_eq!(top.entry_qid(), walk(&fs, "").await.unwrap().entry_qid());
}

#[tokio::test(start_paused = true)]
async fn churn_starts_and_ends_processes_deterministically() {
    let o = SimOptions {
        churn_per_min: 120.0,
        ..opts(4)
    };
    let a = Arc::new(Sim::new(o.clone()).unwrap());
    let b = Arc::new(Sim::new(o).unwrap());
    // The pids, and the last pid handed out (`loadavg`): a node where
    // every command started has exited again has the same pids.
    let before: Vec<(Vec<i32>, Vec<u8>)> = futures::future::join_all((0..4).map(|i| {
        let fs = node(&a, i);
        async move {
            let ps = summary::parse(&read(&fs, ".gproc/ps").await.unwrap()).unwrap();
            let last = read(&fs, "loadavg").await.unwrap();
            (ps.procs.iter().map(|p| p.pid).collect(), last)
        }
    }))
    .await;
    // A process held open across its exit gives ENOENT afterwards.
    let short = a.nodes[0]
        .snapshot(&a)
        .procs
        .iter()
        .find(|p| p.role == Role::Short)
        .map(|p| p.pid);
    let held = match short {
        Some(pid) => Some(walk(&node(&a, 0), &format!("{pid}/status")).await.unwrap()),
        None => None,
    };
    tokio::time::advance(Duration::from_secs(600)).await;
    let mut changed = 0;
    for (i, (before, loadavg)) in before.iter().enumerate() {
        let x = read_fixed(&node(&a, i), ".gproc/ps").await;
        // `b` is read at the same instant: same bytes.
        let y = read_fixed(&node(&b, i), ".gproc/ps").await;
        assert_eq!(x, y);
        let ps = summary::parse(&x).unwrap();
        let now: Vec<i32> = ps.procs.iter().map(|p| p.pid).collect();
        assert!(now.windows(2).all(|w| w[0] < w[1]));
        let n = now.len() as i64;
        assert!((n - 100).abs() <= 12, "count {n} stays near 100");
        let last_pid = |l: &[u8]| {
            String::from_utf8_lossy(l)
                .rsplit(' ')
                .next()
                .map(str::to_owned)
        };
        let forked = last_pid(loadavg) != last_pid(&read(&node(&a, i), "loadavg").await.unwrap());
        if now != *before || forked {
            changed += 1;
        }
        let started: Vec<_> = ps
            .procs
            .iter()
            .filter(|p| !before.contains(&p.pid))
            .collect();
        for p in started {
            assert!(p.start_ticks > ps.uptime as u64 * HZ - 600 * HZ - 100);
        }
    }
    assert!(changed >= 3, "churn changed {changed} of 4 nodes");
    if let (Some(f), Some(pid)) = (held, short)
        && a.nodes[0].process(&a, pid, None).is_none()
    {
        let fs = node(&a, 0);
        assert_eq!(open(&fs, &f).await.unwrap_err().errno, errno::ENOENT);
    }
}

#[tokio::test(start_paused = true)]
async fn cpu_and_rss_grow_with_time() {
    let sim = Arc::new(Sim::new(opts(4)).unwrap());
    let i = (0..4).find(|&i| sim.nodes[i].job.is_some()).unwrap_or(0);
    let fs = node(&sim, i);
    let a = summary::parse(&read(&fs, ".gproc/ps").await.unwrap()).unwrap();
    tokio::time::advance(Duration::from_secs(120)).await;
    let b = summary::parse(&read(&fs, ".gproc/ps").await.unwrap()).unwrap();
    assert!((b.uptime - a.uptime - 120.0).abs() < 0.02);
    assert!((b.time - a.time - 120.0).abs() < 0.02);
    let busy = a.procs.iter().max_by_key(|p| p.utime).unwrap();
    let later = b.procs.iter().find(|p| p.pid == busy.pid).unwrap();
    assert!(later.utime > busy.utime);
    let user = a.procs.iter().find(|p| p.ruid >= 1000).unwrap();
    let later = b.procs.iter().find(|p| p.pid == user.pid).unwrap();
    assert!(later.rss_pages >= user.rss_pages);
}

#[test]
fn faults_are_assigned_from_the_seed() {
    let o = SimOptions {
        slow: 0.1,
        hang: 0.1,
        die: 0.1,
        garbage: 0.1,
        refuse: 0.1,
        huge: 0.1,
        no_summary: 0.2,
        ..opts(100)
    };
    let a = Sim::new(o.clone()).unwrap();
    let b = Sim::new(o.clone()).unwrap();
    for f in Fault::ALL {
        let n: Vec<usize> = (0..100).filter(|&i| a.fault(i) == f).collect();
        assert_eq!(n.len(), 10, "{f:?}");
        assert_eq!(n, (0..100).filter(|&i| b.fault(i) == f).collect::<Vec<_>>());
    }
    assert_eq!((0..100).filter(|&i| !a.has_summary(i)).count(), 20);
    let c = Sim::new(SimOptions {
        seed: 9,
        ..o.clone()
    })
    .unwrap();
    assert!((0..100).any(|i| a.fault(i) != c.fault(i)));
    // Tiny fractions still pick a node; too many is refused.
    let t = Sim::new(SimOptions {
        hang: 0.0001,
        ..opts(10)
    })
    .unwrap();
    assert_eq!((0..10).filter(|&i| t.fault(i) == Fault::Hang).count(), 1);
    let e = Sim::new(SimOptions {
        hang: 0.6,
        refuse: 0.6,
        ..opts(10)
    })
    .unwrap_err();
    assert!(e.to_string().contains("at most one fault"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn huge_node_has_a_huge_maps() {
    let sim = Arc::new(
        Sim::new(SimOptions {
            huge: 0.5,
            huge_bytes: 3 << 20,
            ..opts(2)
        })
        .unwrap(),
    );
    let i = (0..2).find(|&i| sim.fault(i) == Fault::Huge).unwrap();
    let path = sim.huge_path(i).unwrap();
    let fs = node(&sim, i);
    let maps = read(&fs, &path).await.unwrap();
    assert!(maps.len() >= 3 << 20, "{}", maps.len());
    assert!(
        std::str::from_utf8(&maps)
            .unwrap()
            .lines()
            .all(|l| l.len() >= 40)
    );
    let other = read(&node(&sim, 1 - i), "1/maps").await.unwrap();
    assert!(other.len() < 64 << 10);
}

#[test]
fn small_and_odd_sizes_build() {
    for p in [1, 2, 3, 5, 10, 50, 1000] {
        let sim = Sim::new(SimOptions {
            procs_per_node: p,
            ..opts(3)
        })
        .unwrap();
        for i in 0..3 {
            let s = sim.nodes[i].snapshot(&sim);
            assert_eq!(s.procs.len(), p, "procs_per_node {p}");
            assert!(
                s.procs
                    .windows(2)
                    .all(|w| w[0].pid + u32::from(w[0].threads) <= w[1].pid)
            );
        }
    }
    assert!(
        Sim::new(SimOptions {
            nodes: 0,
            ..opts(1)
        })
        .is_err()
    );
    assert!(
        Sim::new(SimOptions {
            slow: 1.5,
            ..opts(1)
        })
        .is_err()
    );
    assert!(
        Sim::new(SimOptions {
            first_address: "10.0.0.1".parse().unwrap(),
            ..opts(1)
        })
        .is_err()
    );
}

#[test]
fn memory_per_node_is_small() {
    // The model's own heap per node: records plus the node struct.
    let sim = Sim::new(opts(1)).unwrap();
    let recs =
        sim.nodes[0].snapshot(&sim).procs.capacity() * std::mem::size_of::<super::model::ProcRec>();
    assert!(std::mem::size_of::<super::model::ProcRec>() <= 40);
    assert!(recs + std::mem::size_of_val(&sim.nodes[0]) < 8 << 10);
}

/// Jobs: the summary's job of each process is what its `cgroup` file says
/// by the built-in patterns (the aggregator's fallback for nodes without
/// a summary); jobs span several nodes with one id; users' sessions,
/// daemons and kernel threads are in none; both cgroup versions appear.
#[tokio::test(start_paused = true)]
async fn jobs_in_the_summary_match_the_cgroup_files() {
    let n = 40;
    let sim = Arc::new(Sim::new(opts(n)).unwrap());
    let rules = crate::format::jobs::JobRules::default();
    let mut nodes_of_job: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> =
        Default::default();
    let (mut in_job, mut outside, mut users_outside) = (0, 0, 0);
    let (mut v1, mut v2) = (false, false);
    let mut steps = std::collections::BTreeSet::new();
    for i in 0..n {
        let fs = node(&sim, i);
        let ps = summary::parse(&read(&fs, ".gproc/ps").await.unwrap()).unwrap();
        for p in &ps.procs {
            let cg = read(&fs, &format!("{}/cgroup", p.pid)).await.unwrap();
            let text = String::from_utf8(cg.clone()).unwrap();
            v1 |= text.contains(":freezer:");
            v2 |= text.starts_with("0::");
            assert_eq!(
                rules.job_of(&cg),
                p.job.as_deref().cloned(),
                "node {i} pid {}: {text}",
                p.pid
            );
            match &p.job {
                Some(j) => {
                    in_job += 1;
                    nodes_of_job.entry(j.id.clone()).or_default().insert(i);
                    steps.insert(j.step.clone().unwrap());
                }
                None => {
                    outside += 1;
                    users_outside += usize::from(p.ruid >= 1000);
                }
            }
        }
    }
    assert!(in_job > 0 && outside > 0 && users_outside > 0);
    assert!(v1 && v2, "both cgroup versions are modelled");
    assert!(nodes_of_job.values().any(|nodes| nodes.len() > 1));
    let want: std::collections::BTreeSet<String> = ["0", "batch", "extern"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(steps, want);
}

/// GPUs: some EPYC racks have 4 or 8 NVIDIA GPUs; there, the user
/// processes of the job's step 0 hold every one of them, and nothing else
/// holds any; the summary says it looked (none is "none", not unknown).
#[tokio::test(start_paused = true)]
async fn gpus_in_the_summary_match_the_modelled_devices() {
    use crate::format::gpus::{Gpu, Gpus};
    let n = 256;
    let sim = Arc::new(Sim::new(opts(n)).unwrap());
    let mut sizes = std::collections::BTreeSet::new();
    let (mut holders, mut step0_without) = (0, 0);
    for i in 0..n {
        let model = &sim.nodes[i];
        if !model.summary {
            continue;
        }
        let ps = summary::parse(&read(&node(&sim, i), ".gproc/ps").await.unwrap()).unwrap();
        for p in &ps.procs {
            let step0 = p.job.as_ref().and_then(|j| j.step.as_deref()) == Some("0");
            let want = if step0 && p.ruid >= 1000 {
                (0..u32::from(model.hw.gpus)).map(Gpu::Nvidia).collect()
            } else {
                Vec::new()
            };
            let got = p.gpus.as_ref().expect("the simulated agent looked");
            assert_eq!(
                &**got,
                &Gpus::new(want.clone(), false),
                "node {i} pid {}",
                p.pid
            );
            if want.is_empty() {
                step0_without += usize::from(step0);
            } else {
                holders += 1;
                sizes.insert(want.len());
            }
        }
    }
    assert!(
        holders > 0 && step0_without > 0,
        "{holders} {step0_without}"
    );
    assert_eq!(sizes, [4, 8].into_iter().collect(), "4- and 8-GPU nodes");
}

/// Live refresh (issue 13): a delta since a summary the reader holds,
/// applied to it, is the summary read whole at the same instant, whether
/// one second or ten minutes (with churn) passed, and also when another
/// read came in between (a skipped generation). Tokens of another run or
/// another reader are ENOENT.
#[tokio::test(start_paused = true)]
async fn deltas_applied_give_the_whole_summary_of_the_same_instant() {
    use crate::format::delta;
    let sim = Arc::new(
        Sim::new(SimOptions {
            churn_per_min: 30.0,
            ..opts(4)
        })
        .unwrap(),
    );
    let (mut lines, mut changed) = (0usize, 0usize);
    for i in 0..4 {
        let fs = node(&sim, i);
        let first = read(&fs, ".gproc/ps").await.unwrap();
        let mut token = delta::generation(&first).unwrap();
        let mut held = summary::parse(&first).unwrap();
        for step in [1, 1, 5, 60, 600] {
            tokio::time::advance(Duration::from_secs(step)).await;
            let d = read(&fs, &format!(".gproc/since/{token}")).await.unwrap();
            let (t, s) = delta::apply(&held, token, &d).unwrap();
            let whole = read(&fs, ".gproc/ps").await.unwrap();
            assert_eq!(
                s,
                summary::parse(&whole).unwrap(),
                "node {i} after {step} s"
            );
            if step == 1 {
                lines += s.procs.len();
                changed += d
                    .split(|&b| b == b'\n')
                    .filter(|l| l.starts_with(b"p "))
                    .count();
            }
            (token, held) = (t, s);
        }
        // Another run's token, and a token never served.
        let other = delta::Token {
            epoch: token.epoch ^ 1,
            ..token
        };
        let never = delta::Token {
            generation: token.generation ^ 1,
            ..token
        };
        for t in [other, never] {
            let e = read(&fs, &format!(".gproc/since/{t}")).await.unwrap_err();
            assert_eq!(e.errno, errno::ENOENT, "{t}");
        }
        // The token works here, and a restarted node does not know it.
        assert!(read(&fs, &format!(".gproc/since/{token}")).await.is_ok());
        let e = read(&node(&sim, i), &format!(".gproc/since/{token}"))
            .await
            .unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
    }
    assert!(changed > 0 && changed < lines, "{changed} of {lines}");
    eprintln!("sim: {changed} of {lines} process lines changed in one second");
}

/// A node told to be an agent from before deltas: no generation, no
/// `since` directory.
#[tokio::test(start_paused = true)]
async fn a_node_without_deltas_says_no_generation() {
    let sim = Arc::new(
        Sim::new(SimOptions {
            no_deltas: 1.0,
            ..opts(2)
        })
        .unwrap(),
    );
    let fs = node(&sim, 0);
    let b = read(&fs, ".gproc/ps").await.unwrap();
    assert!(summary::parse(&b).is_ok());
    assert_eq!(crate::format::delta::generation(&b), None);
    assert_eq!(list(&fs, ".gproc").await, [".", "..", "ps"]);
    assert!(walk(&fs, ".gproc/since").await.is_err());
}

/// The summary says `fresh_at_zero`, so it must be served as a file taken
/// anew by a read at 0: a reader that keeps it open would otherwise see
/// the node as it was at the open forever.
#[tokio::test]
async fn the_summary_is_served_fresh_as_its_header_says() {
    let sim = Arc::new(Sim::new(opts(2)).unwrap());
    let fs = node(&sim, 0);
    match open(&fs, &walk(&fs, ".gproc/ps").await.unwrap())
        .await
        .unwrap()
    {
        Contents::Fresh(b) => assert!(summary::says_fresh_at_zero(&b)),
        c => panic!("the summary is not served fresh: {c:?}"),
    }
}

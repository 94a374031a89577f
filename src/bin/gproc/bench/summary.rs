//! `gproc bench summary`: what the job field costs the agent. Builds this
//! machine's node summary (the agent's `/.gproc/ps`: collect then encode)
//! with the job patterns and without them (no `cgroup` read, no job
//! field), alternating the two in one run, and prints the time per
//! summary and per process, the bytes, and the ratio.
//!
//! `--spawn N` starts N `sleep` processes for the run so the machine has
//! a realistic process count; as root, with a cgroup2 mount, half of them
//! are moved into a Slurm-shaped job cgroup made (and removed) for the
//! run, so the summary carries job fields too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use gproc::agent::collect::generate_with;
use gproc::format::jobs::JobRules;

use super::{percentiles, print_table};

/// Settings of the summary benchmark.
#[derive(Debug, Clone)]
pub struct SummaryBench {
    /// Summaries built of each kind.
    pub rounds: usize,
    /// Extra processes to start for the run.
    pub spawn: usize,
}

/// The run's processes and job cgroup, gone when dropped.
struct Extra {
    children: Vec<Child>,
    cgroup: Vec<PathBuf>,
    root_procs: Option<PathBuf>,
}

impl Drop for Extra {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for dir in self.cgroup.iter().rev() {
            if let (Some(root), Ok(procs)) = (
                &self.root_procs,
                std::fs::read_to_string(dir.join("cgroup.procs")),
            ) {
                for pid in procs.lines() {
                    let _ = std::fs::write(root, pid);
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The cgroup2 mount point, if its root is the hierarchy's root.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let point = pre.get(4)?;
        (post.starts_with("cgroup2 ") && pre.get(3) == Some(&"/")).then(|| PathBuf::from(point))
    })
}

/// Starts the extra processes, half of them in a job cgroup when possible.
fn spawn(n: usize) -> Result<(Extra, usize)> {
    let mut extra = Extra {
        children: Vec::new(),
        cgroup: Vec::new(),
        root_procs: None,
    };
    let job_dir = match cgroup2_mount() {
        Some(m) if rustix::process::geteuid().is_root() && n > 0 => {
            let rel = format!(
                "system.slice/slurmstepd.scope/job_{}/step_0/user/task_0",
                std::process::id()
            );
            let mut dir = m.clone();
            let mut ok = true;
            for c in rel.split('/') {
                dir.push(c);
                if !dir.exists() {
                    if std::fs::create_dir(&dir).is_err() {
                        ok = false;
                        break;
                    }
                    extra.cgroup.push(dir.clone());
                }
            }
            extra.root_procs = Some(m.join("cgroup.procs"));
            ok.then_some(dir)
        }
        _ => None,
    };
    let mut in_job = 0;
    for i in 0..n {
        let child = Command::new("sleep")
            .arg("3600")
            .stdout(Stdio::null())
            .spawn()
            .context("starting sleep")?;
        if let Some(dir) = &job_dir
            && i % 2 == 0
            && std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).is_ok()
        {
            in_job += 1;
        }
        extra.children.push(child);
    }
    Ok((extra, in_job))
}

/// Runs the benchmark and prints its table.
pub fn run(b: SummaryBench) -> Result<()> {
    let (_extra, in_job) = spawn(b.spawn)?;
    let root = Path::new("/proc");
    let rules = JobRules::default();
    // Warm-up: NSS for user names, the page cache of /proc's dentries.
    let first = generate_with(root, Some(&rules), None)?;
    generate_with(root, None, None)?;
    let procs = gproc::format::summary::parse(&first)
        .map(|s| s.procs.len())
        .unwrap_or(0);
    let mut with = Vec::with_capacity(b.rounds);
    let mut without = Vec::with_capacity(b.rounds);
    let (mut bytes_with, mut bytes_without) = (0, 0);
    for _ in 0..b.rounds.max(1) {
        let t = Instant::now();
        bytes_with = generate_with(root, Some(&rules), None)?.len();
        with.push(t.elapsed());
        let t = Instant::now();
        bytes_without = generate_with(root, None, None)?.len();
        without.push(t.elapsed());
    }
    eprintln!(
        "{procs} processes ({} started for the run, {in_job} of them in a job cgroup), {} rounds each",
        b.spawn, b.rounds
    );
    let row = |name: &str, v: &[Duration], bytes: usize| {
        let (p50, p99, _) = percentiles(v.to_vec());
        vec![
            name.to_string(),
            format!("{p50:.0}"),
            format!("{p99:.0}"),
            format!("{:.2}", p50 / procs.max(1) as f64),
            bytes.to_string(),
        ]
    };
    print_table(
        &["summary", "p50 us", "p99 us", "us/process (p50)", "bytes"],
        &[
            row("without job field", &without, bytes_without),
            row("with job field", &with, bytes_with),
        ],
    );
    let (w, wo) = (percentiles(with).0, percentiles(without).0);
    println!(
        "ratio with / without the job field: **{:.2}x time** (p50), {:.3}x bytes",
        w / wo.max(1e-9),
        bytes_with as f64 / bytes_without.max(1) as f64
    );
    Ok(())
}

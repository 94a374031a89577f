//! `gproc bench summary`: what the job and GPU fields cost the agent.
//! Builds this machine's node summary (the agent's `/.gproc/ps`: collect
//! then encode) without the job patterns (no `cgroup` read, no job field),
//! with them, and with them and the GPU scan (every process's descriptors
//! stat'ed each summary: a rescan interval of zero, the worst case; and
//! with the agent's default interval, the steady state between rescans),
//! alternating the kinds in one run, and prints the time per summary and
//! per process, the bytes, and the ratios.
//!
//! `--spawn N` starts N `sleep` processes for the run so the machine has
//! a realistic process count; as root, with a cgroup2 mount, half of them
//! are moved into a Slurm-shaped job cgroup made (and removed) for the
//! run, so the summary carries job fields too; and as root a quarter of
//! them hold a device node with an NVIDIA GPU's number (made for the run
//! in a scratch directory, held by an `O_PATH` descriptor), so the summary
//! carries GPU fields.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use gproc::agent::collect::generate_with;
use gproc::agent::gpus::{DEFAULT_FD_CAP, DEFAULT_RESCAN, GpuMode, GpuScan};
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
    /// The scratch directory of the device nodes.
    _devices: Option<tempfile::TempDir>,
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
        _devices: None,
    };
    let device = if rustix::process::geteuid().is_root() && n > 0 {
        let dir = tempfile::tempdir().context("a scratch directory for device nodes")?;
        let path = dir.path().join("gpu");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            rustix::fs::makedev(195, 1),
        )
        .with_context(|| format!("mknod {}", path.display()))?;
        extra._devices = Some(dir);
        Some(std::ffi::CString::new(
            path.into_os_string().into_encoded_bytes(),
        )?)
    } else {
        None
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
        let mut cmd = Command::new("sleep");
        cmd.arg("3600").stdout(Stdio::null());
        if let Some(dev) = device.clone().filter(|_| i % 4 == 1) {
            use std::os::unix::process::CommandExt;
            // SAFETY: open is async-signal-safe and the path was made
            // before the fork; the descriptor (no close-on-exec) is kept
            // across exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::open(dev.as_ptr(), libc::O_PATH) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().context("starting sleep")?;
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
    let every_time = GpuScan::new(GpuMode::Always, DEFAULT_FD_CAP, Duration::ZERO);
    let kept = GpuScan::new(GpuMode::Always, DEFAULT_FD_CAP, DEFAULT_RESCAN);
    // The kinds, each built once per round, in turn.
    let kinds: [(&str, Option<&JobRules>, Option<&GpuScan>); 4] = [
        ("without job field", None, None),
        ("with job field", Some(&rules), None),
        (
            "job + GPU scan, every summary",
            Some(&rules),
            Some(&every_time),
        ),
        ("job + GPU, kept 30 s (default)", Some(&rules), Some(&kept)),
    ];
    // Warm-up: NSS for user names, the page cache of /proc's dentries,
    // the kept scans.
    let mut first = Vec::new();
    for (_, jobs, gpus) in kinds {
        first = generate_with(root, jobs, gpus)?;
    }
    let parsed = gproc::format::summary::parse(&first).ok();
    let procs = parsed.as_ref().map_or(0, |s| s.procs.len());
    let holders = parsed.as_ref().map_or(0, |s| {
        s.procs
            .iter()
            .filter(|p| p.gpus.as_ref().is_some_and(|g| !g.devices.is_empty()))
            .count()
    });
    let mut times = vec![Vec::with_capacity(b.rounds); kinds.len()];
    let mut bytes = vec![0; kinds.len()];
    for _ in 0..b.rounds.max(1) {
        for (k, (_, jobs, gpus)) in kinds.iter().enumerate() {
            let t = Instant::now();
            bytes[k] = generate_with(root, *jobs, *gpus)?.len();
            times[k].push(t.elapsed());
        }
    }
    eprintln!(
        "{procs} processes ({} started for the run, {in_job} of them in a job cgroup, \
         {holders} holding a GPU-numbered device), {} rounds each",
        b.spawn, b.rounds
    );
    let p50: Vec<f64> = times.iter().map(|v| percentiles(v.clone()).0).collect();
    let rows: Vec<Vec<String>> = kinds
        .iter()
        .enumerate()
        .map(|(k, (name, _, _))| {
            let (p50, p99, _) = percentiles(times[k].clone());
            vec![
                name.to_string(),
                format!("{p50:.0}"),
                format!("{p99:.0}"),
                format!("{:.2}", p50 / procs.max(1) as f64),
                bytes[k].to_string(),
            ]
        })
        .collect();
    print_table(
        &["summary", "p50 us", "p99 us", "us/process (p50)", "bytes"],
        &rows,
    );
    let ratio = |a: usize, b: usize| p50[a] / p50[b].max(1e-9);
    println!(
        "ratio with / without the job field: **{:.2}x time** (p50), {:.3}x bytes",
        ratio(1, 0),
        bytes[1] as f64 / bytes[0].max(1) as f64
    );
    println!(
        "ratio with the GPU scan every summary / job field only: **{:.2}x time** (p50); \
         kept 30 s: **{:.2}x**; {:.3}x bytes",
        ratio(2, 1),
        ratio(3, 1),
        bytes[2] as f64 / bytes[1].max(1) as f64
    );
    Ok(())
}

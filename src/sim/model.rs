//! The simulated cluster's state: per node a hardware description and a
//! compact record per process, built deterministically from the seed, plus
//! the churn that starts and ends processes as simulated time passes.
//!
//! A node costs its [`ProcRec`]s (40 bytes each) and a few words; command
//! lines live once in the shared [`Tables`], and file contents are rendered
//! when opened (see `render`).
//!
//! Time is a tick count (USER_HZ, 100 per second) since the cluster
//! started, read from `tokio::time::Instant` so that tests can pause it.
//! Churn is a pure function of the seed and that count: the events of
//! simulated minute `m` of node `i` come from `hash(seed, i, m)`, and a
//! node's state is advanced lazily, under its lock, to the current tick
//! whenever it is read. Two reads at the same tick therefore agree, and an
//! idle node costs no CPU.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::control::{Action, SignalLog, SignalOutcome, SignalRecord, default_action};
use super::tables::{self, AGENT_DAEMON, APPS, DAEMONS, Job, JobCmd, Role, SHORTS, Tables, USERS};
use super::{Fault, SimError, SimOptions};
use crate::sys;
use crate::sys::rng::{Rng, hash, unit};

/// Clock ticks per second (USER_HZ), the unit of every time in a record.
pub(crate) const HZ: u64 = 100;

/// Ticks in one simulated minute: churn events are drawn per minute.
const MINUTE: u64 = 60 * HZ;

/// Largest pid before wrapping (the 64-bit kernel's `pid_max` limit).
const PID_MAX: u32 = 4_194_304;

/// First pid handed out after a wrap, as the kernel does (`RESERVED_PIDS`).
const PID_WRAP_TO: u32 = 300;

/// The simulated clock: ticks since the cluster started, and the wall
/// time of tick 0.
#[derive(Debug)]
pub(crate) struct Clock {
    start: tokio::time::Instant,
    /// Unix time of tick 0, in milliseconds, a multiple of 10.
    epoch_ms: u64,
}

impl Clock {
    fn new(epoch: Option<SystemTime>) -> Self {
        let wall = epoch.unwrap_or_else(SystemTime::now);
        let ms = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start: tokio::time::Instant::now(),
            epoch_ms: ms - ms % 10,
        }
    }

    /// Ticks since the cluster started.
    pub(crate) fn ticks(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 / (1000 / HZ)
    }

    /// Unix time in seconds at `ticks` after the start.
    pub(crate) fn unix_at(&self, ticks: u64) -> f64 {
        (self.epoch_ms + ticks * (1000 / HZ)) as f64 / 1000.0
    }

    /// Unix time of tick 0, in milliseconds.
    pub(crate) fn epoch_ms(&self) -> u64 {
        self.epoch_ms
    }
}

/// CPU architecture of a node: the aggregator must not assume its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64, 4 KiB pages.
    X86_64,
    /// aarch64 with 64 KiB pages (as RHEL ships it).
    Aarch64,
}

impl Arch {
    /// `uname -m`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// CPU models the simulated nodes have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuModel {
    /// 2 × AMD EPYC 7763, 128 cores.
    Epyc,
    /// 2 × Intel Xeon Gold 6248R, 48 cores.
    Xeon,
    /// 1 × Ampere Altra Q80-30, 80 cores.
    Altra,
}

/// A node's hardware and OS facts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hw {
    pub(crate) cpus: u32,
    pub(crate) sockets: u32,
    pub(crate) model: CpuModel,
    pub(crate) arch: Arch,
    /// `MemTotal`, KiB.
    pub(crate) mem_total_kb: u64,
    /// Page size, bytes.
    pub(crate) page_size: u64,
    /// An older kernel on some x86 nodes: the aggregator must not assume one.
    pub(crate) old_kernel: bool,
    /// NVIDIA GPUs (`/dev/nvidia0..`): 0, 4 or 8, on some EPYC racks.
    pub(crate) gpus: u8,
}

impl Hw {
    /// `uname -r`.
    pub(crate) fn kernel(&self) -> &'static str {
        match (self.arch, self.old_kernel) {
            (Arch::Aarch64, _) => "6.1.0-18-arm64",
            (Arch::X86_64, true) => "5.10.0-28-amd64",
            (Arch::X86_64, false) => "6.1.0-18-amd64",
        }
    }
}

/// One simulated process: everything else is derived from these fields
/// and the current tick when a file is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcRec {
    /// Process id; its threads are `pid..pid + threads`.
    pub(crate) pid: u32,
    /// Parent pid; 0 for init and kthreadd.
    pub(crate) ppid: u32,
    /// Real and effective uid (and gid: every account has its own group).
    pub(crate) uid: u32,
    /// Index into [`Tables::cmds`].
    pub(crate) cmd: u32,
    /// Start, in ticks after boot.
    pub(crate) start: u64,
    /// Resident set at start, KiB; user processes grow from it.
    pub(crate) rss_kb: u32,
    /// Average CPU use over its life, thousandths of a CPU (all threads).
    pub(crate) cpu_milli: u32,
    /// Number of threads.
    pub(crate) threads: u16,
    /// What it is.
    pub(crate) role: Role,
    /// Controlling terminal: `pts/(tty - 1)`, 0 for none.
    pub(crate) tty: u8,
    /// The step of its node's job it runs in (its cgroup), if any.
    pub(crate) step: JobStep,
    /// A state the model holds it in (stopped, disk sleep, zombie)
    /// instead of the running or sleeping its CPU rate gives.
    pub(crate) hold: Hold,
}

/// A state a process stays in until something changes it, rather than
/// the `R`/`S` its CPU rate gives from second to second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// None: running or sleeping.
    None,
    /// `T`: stopped (`SIGSTOP` and the terminal stops).
    Stopped,
    /// `T` with a fatal signal pending: it ends when continued, as a
    /// stopped Linux process acts on `SIGTERM` only after `SIGCONT`.
    StoppedDying,
    /// `D`: uninterruptible sleep (a hung file system); every signal,
    /// `SIGKILL` included, waits.
    Disk,
    /// `Z`: exited, not reaped by its parent: signals do nothing.
    Zombie,
}

/// A Slurm step of the node's job (the job id is the node's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobStep {
    /// In no job.
    None,
    /// `extern`: the job's adopted processes (the extern step's `sleep`).
    Extern,
    /// `batch`: the batch script and what it starts.
    Batch,
    /// `0`: the first `srun` step, the ranks.
    Zero,
}

impl JobStep {
    /// The step's name as Slurm writes it in cgroup paths (`step_<name>`).
    pub(crate) fn name(self) -> Option<&'static str> {
        match self {
            JobStep::None => None,
            JobStep::Extern => Some("extern"),
            JobStep::Batch => Some("batch"),
            JobStep::Zero => Some("0"),
        }
    }
}

impl ProcRec {
    /// Whether `tid` is one of its threads.
    pub(crate) fn has_thread(&self, tid: u32) -> bool {
        tid >= self.pid && tid - self.pid < u32::from(self.threads)
    }
}

/// What churn and reads change: guarded by the node's lock.
#[derive(Debug)]
struct NodeState {
    /// Live processes in pid order.
    procs: Vec<ProcRec>,
    /// The next pid to hand out.
    next_pid: u32,
    /// Forks since boot (`processes` in `/proc/stat`).
    forks: u64,
    /// Ticks since the cluster start up to which churn has been applied.
    churned_to: u64,
}

/// A simulated process as the model holds it (see [`Sim::processes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimProcess {
    /// Process id.
    pub pid: u32,
    /// Parent.
    pub ppid: u32,
    /// Its uid (real, effective, saved and filesystem).
    pub uid: u32,
    /// The account name the node gives it.
    pub user: String,
    /// Start, clock ticks after the node's boot.
    pub start: u64,
    /// The state the model holds it in (`T`, `D` or `Z`); `None` for one
    /// that runs or sleeps as its CPU use goes.
    pub held: Option<char>,
    /// The batch job it is in, by its cgroup.
    pub job: Option<String>,
    /// A user's process (not a system account's: uid 1000 to 59999) in no
    /// job: what `gproc ps --strays` finds (leftovers of ended jobs and
    /// interactive sessions).
    pub stray: bool,
    /// Left behind by an ended job: an application process in no job,
    /// reparented to init.
    pub left_behind: bool,
}

/// A consistent view of a node at one tick.
#[derive(Debug, Clone)]
pub(crate) struct NodeAt {
    /// Ticks since boot.
    pub(crate) now: u64,
    /// Ticks since the cluster started.
    pub(crate) ticks: u64,
    /// Processes in pid order.
    pub(crate) procs: Vec<ProcRec>,
    /// The most recently handed out pid (`/proc/loadavg`'s last field).
    pub(crate) last_pid: u32,
    /// Forks since boot.
    pub(crate) forks: u64,
}

/// How a dying node flaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DieSchedule {
    /// Up for this long after the cluster starts, then it dies.
    pub first_down_after: Duration,
    /// Down for this long each time.
    pub down_for: Duration,
    /// Then up again for this long, and so on.
    pub up_for: Duration,
    /// Dies once and never comes back.
    pub permanent: bool,
}

/// How a hanging node hangs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangKind {
    /// Accepts and reads but never answers anything, not even `Tversion`.
    Silent,
    /// Answers `Tversion`, `Tauth` and `Tattach`, then nothing: the client
    /// believes it is connected.
    AfterAttach,
}

/// How a garbage node breaks the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarbageKind {
    /// Answers every message, `Tversion` included, with a frame of random
    /// bytes of an invalid type.
    Noise,
    /// A correct handshake, then every reply has its type and body
    /// replaced by random bytes.
    BrokenFrame,
    /// A correct handshake, then a frame header claiming 2 GiB.
    Oversize,
}

/// One simulated node.
#[derive(Debug)]
pub(crate) struct NodeModel {
    pub(crate) index: u32,
    pub(crate) hw: Hw,
    /// Ticks since boot when the cluster started.
    pub(crate) uptime0: u64,
    pub(crate) fault: Fault,
    /// Serves `/.gproc/ps` (else it looks like diod: per-process reads).
    pub(crate) summary: bool,
    /// Its summary has a generation and it serves deltas since one.
    pub(crate) deltas: bool,
    /// The process whose `maps` is huge (huge nodes only), else 0.
    pub(crate) huge_pid: u32,
    /// Target of `self`: the gproc agent daemon, else init.
    pub(crate) agent_pid: u32,
    /// Index into [`Sim::jobs`] of the job on this node.
    pub(crate) job: Option<u32>,
    state: Mutex<NodeState>,
    /// Requests served while slow, to vary the delay deterministically.
    slow_seq: AtomicU64,
}

/// The whole simulated cluster without any sockets: deterministic nodes
/// that [`SimNodeFs`](super::SimNodeFs) serves.
pub struct Sim {
    pub(crate) opts: SimOptions,
    pub(crate) tables: Tables,
    pub(crate) jobs: Vec<Job>,
    pub(crate) nodes: Vec<NodeModel>,
    pub(crate) clock: Clock,
    /// Every `ctl` write (with control on).
    pub(crate) signals: SignalLog,
}

impl std::fmt::Debug for Sim {
    /// Short: a derived one would print every process of every node.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("nodes", &self.nodes.len())
            .field("procs_per_node", &self.opts.procs_per_node)
            .field("seed", &self.opts.seed)
            .field("jobs", &self.jobs.len())
            .field("commands", &self.tables.cmds.len())
            .finish()
    }
}

/// Number of nodes a fraction stands for: rounded, but at least one for a
/// non-zero fraction so that `--hang 0.001` on 200 nodes still hangs one.
pub(crate) fn fraction_count(f: f64, n: usize) -> usize {
    if f <= 0.0 || n == 0 {
        0
    } else {
        ((f * n as f64).round() as usize).clamp(1, n)
    }
}

/// A permutation of `0..n` from the seed.
fn shuffled(n: usize, key: &[u64]) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut rng = Rng::new(key);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}

const K_JOBS: u64 = 0x6a6f6273;
const K_HW: u64 = 0x6877;
const K_NODE: u64 = 0x6e6f6465;
const K_FAULT: u64 = 0x6661756c74;
const K_SUMMARY: u64 = 0x73756d6d;
const K_DELTAS: u64 = 0x64656c74;
const K_CHURN: u64 = 0x636875726e;
const K_SLOW: u64 = 0x736c6f77;
const K_FLAVOR: u64 = 0x666c6176;
const K_STRAY: u64 = 0x7374726179;
const K_HOLD: u64 = 0x686f6c64;

impl Sim {
    /// Builds the cluster model: jobs, hardware, processes and faults.
    ///
    /// # Errors
    /// Options out of range (see [`SimOptions`]).
    pub fn new(opts: SimOptions) -> Result<Self, SimError> {
        opts.validate()?;
        let n = opts.nodes;
        let seed = opts.seed;
        let mut jobs = layout_jobs(seed, n as u32);
        let tables = Tables::build(&mut jobs);

        let mut faults = vec![Fault::None; n];
        let order = shuffled(n, &[seed, K_FAULT]);
        let mut next = 0usize;
        for (fault, frac) in [
            (Fault::Slow, opts.slow),
            (Fault::Hang, opts.hang),
            (Fault::Die, opts.die),
            (Fault::Garbage, opts.garbage),
            (Fault::Refuse, opts.refuse),
            (Fault::Huge, opts.huge),
        ] {
            for _ in 0..fraction_count(frac, n) {
                faults[order[next] as usize] = fault;
                next += 1;
            }
        }
        let mut summary = vec![true; n];
        for &i in shuffled(n, &[seed, K_SUMMARY])
            .iter()
            .take(fraction_count(opts.no_summary, n))
        {
            summary[i as usize] = false;
        }
        let mut deltas = vec![true; n];
        for &i in shuffled(n, &[seed, K_DELTAS])
            .iter()
            .take(fraction_count(opts.no_deltas, n))
        {
            deltas[i as usize] = false;
        }

        let mut nodes = Vec::with_capacity(n);
        let mut job_cursor = 0usize;
        for i in 0..n as u32 {
            while job_cursor < jobs.len() && jobs[job_cursor].first + jobs[job_cursor].nodes <= i {
                job_cursor += 1;
            }
            let job = (job_cursor < jobs.len() && jobs[job_cursor].first <= i)
                .then_some(job_cursor as u32);
            let hw = hardware(seed, i, opts.arch_mix);
            let uptime0 =
                Rng::new(&[seed, K_HW, u64::from(i), 1]).range(3_600 * HZ, 90 * 86_400 * HZ);
            let built = build_procs(
                &opts,
                &tables,
                i,
                hw,
                uptime0,
                job.map(|j| &jobs[j as usize]),
            );
            let fault = faults[i as usize];
            nodes.push(NodeModel {
                index: i,
                hw,
                uptime0,
                fault,
                summary: summary[i as usize],
                deltas: deltas[i as usize],
                huge_pid: if fault == Fault::Huge {
                    built.huge_pid
                } else {
                    0
                },
                agent_pid: built.agent_pid,
                job,
                state: Mutex::new(NodeState {
                    next_pid: built.next_pid,
                    forks: u64::from(built.next_pid)
                        + Rng::new(&[seed, K_NODE, u64::from(i), 9]).below(50_000),
                    procs: built.procs,
                    churned_to: 0,
                }),
                slow_seq: AtomicU64::new(0),
            });
        }
        Ok(Sim {
            clock: Clock::new(opts.epoch),
            opts,
            tables,
            jobs,
            nodes,
            signals: SignalLog::default(),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &SimOptions {
        &self.opts
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes (never: options require one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The name of node `i` (`sim0001` for node 0): the prefix and a
    /// 1-based number, zero-padded to at least 4 digits.
    pub fn node_name(&self, i: usize) -> String {
        let width = self.nodes.len().to_string().len().max(4);
        format!("{}{:0width$}", self.opts.name_prefix, i + 1)
    }

    /// The fault of node `i`.
    pub fn fault(&self, i: usize) -> Fault {
        self.nodes[i].fault
    }

    /// Processes on node `i` now.
    pub fn processes_on(&self, i: usize) -> usize {
        self.nodes[i].snapshot(self).procs.len()
    }

    /// Processes on all nodes now (faulty ones included).
    pub fn total_processes(&self) -> usize {
        (0..self.nodes.len()).map(|i| self.processes_on(i)).sum()
    }

    /// Node `i`'s processes now, as the model holds them: what tests
    /// compare the aggregator's answers with.
    pub fn processes(&self, i: usize) -> Vec<SimProcess> {
        let node = &self.nodes[i];
        let snap = node.snapshot(self);
        snap.procs
            .iter()
            .map(|p| {
                let job = super::render::job(node, self, p);
                let user = tables::user_name(p.uid);
                SimProcess {
                    pid: p.pid,
                    ppid: p.ppid,
                    uid: p.uid,
                    start: p.start,
                    held: match p.hold {
                        Hold::None => None,
                        Hold::Stopped | Hold::StoppedDying => Some('T'),
                        Hold::Disk => Some('D'),
                        Hold::Zombie => Some('Z'),
                    },
                    left_behind: p.role == Role::Rank && p.step == JobStep::None,
                    stray: job.is_none() && p.uid >= tables::FIRST_UID && p.uid < 60_000,
                    job: job.map(|j| j.id),
                    user,
                }
            })
            .collect()
    }

    /// Every `ctl` write so far, oldest first (the last 100,000).
    pub fn signals(&self) -> Vec<SignalRecord> {
        self.signals.records()
    }

    /// `ctl` writes no longer in [`signals`](Self::signals).
    pub fn signals_dropped(&self) -> u64 {
        self.signals.dropped()
    }

    /// Where node `i`'s huge file is, if it is a huge node.
    pub fn huge_path(&self, i: usize) -> Option<String> {
        let n = &self.nodes[i];
        (n.huge_pid != 0).then(|| format!("/{}/maps", n.huge_pid))
    }

    /// Whether node `i` serves the summary file `/.gproc/ps`.
    pub fn has_summary(&self, i: usize) -> bool {
        self.nodes[i].summary
    }

    /// Hang flavor of node `i` (deterministic from the seed).
    pub fn hang_kind(&self, i: usize) -> HangKind {
        if hash(&[self.opts.seed, K_FLAVOR, i as u64]).is_multiple_of(2) {
            HangKind::Silent
        } else {
            HangKind::AfterAttach
        }
    }

    /// Garbage flavor of node `i`.
    pub fn garbage_kind(&self, i: usize) -> GarbageKind {
        match hash(&[self.opts.seed, K_FLAVOR, i as u64]) % 3 {
            0 => GarbageKind::Noise,
            1 => GarbageKind::BrokenFrame,
            _ => GarbageKind::Oversize,
        }
    }

    /// The flapping schedule of node `i`: a period around `die_period`,
    /// up for 50-80% of it; a quarter of dying nodes never come back.
    pub fn die_schedule(&self, i: usize) -> DieSchedule {
        let mut r = Rng::new(&[self.opts.seed, K_FLAVOR, i as u64, 2]);
        let period = self.opts.die_period.mul_f64(0.5 + r.unit());
        let up = period.mul_f64(0.5 + 0.3 * r.unit());
        DieSchedule {
            first_down_after: up.mul_f64(0.3 + 0.7 * r.unit()),
            down_for: period.saturating_sub(up),
            up_for: up,
            permanent: r.chance(0.25),
        }
    }

    /// A deterministic delay for the next request to a slow node.
    pub(crate) fn slow_delay(&self, node: &NodeModel) -> Option<Duration> {
        if node.fault != Fault::Slow {
            return None;
        }
        let k = node.slow_seq.fetch_add(1, Ordering::Relaxed);
        let (lo, hi) = self.opts.slow_delay;
        let u = unit(hash(&[self.opts.seed, K_SLOW, u64::from(node.index), k]));
        Some(lo + hi.saturating_sub(lo).mul_f64(u))
    }
}

/// Lays out batch jobs over consecutive nodes, leaving about 15% idle.
fn layout_jobs(seed: u64, n: u32) -> Vec<Job> {
    const SPANS: &[u32] = &[1, 1, 1, 2, 2, 4, 4, 8, 8, 16, 32, 64];
    let mut rng = Rng::new(&[seed, K_JOBS]);
    let mut jobs = Vec::new();
    let mut i = 0;
    while i < n {
        if rng.chance(0.15) {
            i += rng.range(1, 3) as u32;
            continue;
        }
        let app = rng.below(APPS.len() as u64) as u16;
        let span = if APPS[usize::from(app)].mpi {
            rng.pick(SPANS).min(n - i)
        } else {
            1
        };
        jobs.push(Job {
            first: i,
            nodes: span,
            id: 4_100_000 + jobs.len() as u32 * 7 + rng.below(7) as u32,
            user: rng.below(USERS.len() as u64) as u16,
            app,
            cmds: 0,
        });
        i += span;
    }
    jobs
}

/// Hardware comes in racks of 32 identical nodes.
fn hardware(seed: u64, i: u32, arch_mix: bool) -> Hw {
    let mut r = Rng::new(&[seed, K_HW, u64::from(i / 32)]);
    let kind = r.unit();
    let old_kernel = r.chance(0.1);
    // Drawn after the others, so adding it left the rest of the
    // hardware as it was.
    let gpus = [0, 0, 4, 8][r.below(4) as usize];
    if arch_mix && kind >= 0.9 {
        Hw {
            cpus: 80,
            sockets: 1,
            model: CpuModel::Altra,
            arch: Arch::Aarch64,
            mem_total_kb: 263_487_232,
            page_size: 65_536,
            old_kernel: false,
            gpus: 0,
        }
    } else if kind >= 0.7 {
        Hw {
            cpus: 48,
            sockets: 2,
            model: CpuModel::Xeon,
            arch: Arch::X86_64,
            mem_total_kb: 197_559_712,
            page_size: 4096,
            old_kernel,
            gpus: 0,
        }
    } else {
        Hw {
            cpus: 128,
            sockets: 2,
            model: CpuModel::Epyc,
            arch: Arch::X86_64,
            mem_total_kb: 263_856_144,
            page_size: 4096,
            old_kernel,
            gpus,
        }
    }
}

/// A process before pids are assigned.
struct Draft {
    parent: Parent,
    rec: ProcRec,
}

#[derive(Clone, Copy)]
enum Parent {
    /// A daemon of [`DAEMONS`] (init when it is absent).
    Daemon(usize),
    /// Another draft.
    Draft(usize),
    /// Init: an orphan, reparented.
    Init,
}

struct Built {
    procs: Vec<ProcRec>,
    next_pid: u32,
    agent_pid: u32,
    huge_pid: u32,
}

fn rec(
    uid: u32,
    cmd: u32,
    start: u64,
    rss_kb: u32,
    cpu_milli: u32,
    threads: u16,
    role: Role,
) -> ProcRec {
    ProcRec {
        pid: 0,
        ppid: 0,
        uid,
        cmd,
        start,
        rss_kb,
        cpu_milli,
        threads: threads.max(1),
        role,
        tty: 0,
        step: JobStep::None,
        hold: Hold::None,
    }
}

/// `r` in a step of the node's job.
fn in_step(mut r: ProcRec, step: JobStep) -> ProcRec {
    r.step = step;
    r
}

/// Jitter a value by ±`pct` percent.
fn jitter(r: &mut Rng, v: u32, pct: u32) -> u32 {
    let lo = u64::from(v) * u64::from(100 - pct) / 100;
    let hi = u64::from(v) * u64::from(100 + pct) / 100;
    r.range(lo, hi) as u32
}

/// Builds one node's processes: init and kthreadd, kernel threads (30%),
/// daemons (15%), the node's share of its batch job (Slurm steps and
/// ranks), interactive ssh sessions with short commands, and more kernel
/// threads to reach exactly `procs_per_node`.
fn build_procs(
    opts: &SimOptions,
    t: &Tables,
    i: u32,
    hw: Hw,
    uptime0: u64,
    job: Option<&Job>,
) -> Built {
    let p = opts.procs_per_node;
    let mut r = Rng::new(&[opts.seed, K_NODE, u64::from(i)]);
    let core = p.min(2);
    let n_d = DAEMONS.len().min(p * 15 / 100).min(p - core);
    let n_k_min = (p * 3 / 10).min(p - core - n_d);
    let mut budget = p - core - n_d - n_k_min;

    // The user part, planned before pids exist.
    let mut drafts: Vec<Draft> = Vec::new();
    let boot_done = 3_000u64;
    let slurmd = 2usize;
    let sshd = 4usize;
    if let Some(job) = job
        && budget >= 4
    {
        let user = usize::from(job.user);
        let uid = tables::FIRST_UID + u32::from(job.user);
        let app = &APPS[usize::from(job.app)];
        let js = uptime0
            - r.range(
                10 * MINUTE,
                (48 * 60 * MINUTE).min(uptime0 - boot_done - MINUTE),
            );
        let push = |drafts: &mut Vec<Draft>, parent, rec| {
            drafts.push(Draft { parent, rec });
            drafts.len() - 1
        };
        let ext = push(
            &mut drafts,
            Parent::Daemon(slurmd),
            in_step(
                rec(0, t.job(job, JobCmd::Extern), js, 5_800, 0, 4, Role::Stepd),
                JobStep::Extern,
            ),
        );
        push(
            &mut drafts,
            Parent::Draft(ext),
            in_step(
                rec(uid, t.extern_sleep, js + 3, 900, 0, 1, Role::Job),
                JobStep::Extern,
            ),
        );
        budget -= 2;
        if i == job.first && budget >= 5 {
            let b = push(
                &mut drafts,
                Parent::Daemon(slurmd),
                in_step(
                    rec(
                        0,
                        t.job(job, JobCmd::Batch),
                        js + 5,
                        6_100,
                        0,
                        4,
                        Role::Stepd,
                    ),
                    JobStep::Batch,
                ),
            );
            let script = push(
                &mut drafts,
                Parent::Draft(b),
                in_step(
                    rec(
                        uid,
                        t.job(job, JobCmd::Script),
                        js + 8,
                        3_400,
                        0,
                        1,
                        Role::Shell,
                    ),
                    JobStep::Batch,
                ),
            );
            push(
                &mut drafts,
                Parent::Draft(script),
                in_step(
                    rec(
                        uid,
                        t.job(job, JobCmd::Srun),
                        js + 20,
                        11_000,
                        2,
                        5,
                        Role::Job,
                    ),
                    JobStep::Batch,
                ),
            );
            budget -= 3;
        }
        if budget >= 2 {
            let step = push(
                &mut drafts,
                Parent::Daemon(slurmd),
                in_step(
                    rec(
                        0,
                        t.job(job, JobCmd::Step),
                        js + 25,
                        6_300,
                        1,
                        7,
                        Role::Stepd,
                    ),
                    JobStep::Zero,
                ),
            );
            budget -= 1;
            let per_node = if app.mpi {
                (hw.cpus / u32::from(app.threads)).max(1) as usize
            } else {
                1
            };
            let reserve = if budget > 12 { 6 } else { 0 };
            let ranks = per_node.min(budget - reserve).max(1);
            let threads = app.threads + if app.mpi { 2 } else { 0 };
            for k in 0..ranks {
                let cpu = u32::from(app.threads) * jitter(&mut r, 960, 4);
                push(
                    &mut drafts,
                    Parent::Draft(step),
                    in_step(
                        rec(
                            uid,
                            t.app(user, usize::from(job.app)),
                            js + 30 + k as u64 / 8,
                            jitter(&mut r, app.rss_mb * 1024, 10),
                            cpu,
                            threads,
                            Role::Rank,
                        ),
                        JobStep::Zero,
                    ),
                );
            }
            budget -= ranks;
        }
    }
    let mut sessions = 0u32;
    let first_chance = if job.is_some() { 0.8 } else { 0.3 };
    while budget >= 4 && sessions < 8 && r.chance(if sessions == 0 { first_chance } else { 0.4 }) {
        let user = match job {
            Some(j) if r.chance(0.6) => usize::from(j.user),
            _ => r.below(USERS.len() as u64) as usize,
        };
        let uid = tables::FIRST_UID + user as u32;
        let s = uptime0 - r.range(MINUTE, (12 * 60 * MINUTE).min(uptime0 - boot_done - MINUTE));
        let tty = (sessions + 1) as u8;
        drafts.push(Draft {
            parent: Parent::Daemon(sshd),
            rec: rec(0, t.sshd_priv(user), s, 10_200, 0, 1, Role::Stepd),
        });
        let prv = drafts.len() - 1;
        drafts.push(Draft {
            parent: Parent::Draft(prv),
            rec: rec(
                uid,
                t.sshd_pts(user, sessions),
                s + 5,
                7_100,
                0,
                1,
                Role::Session,
            ),
        });
        let sess = drafts.len() - 1;
        let mut shell = rec(uid, t.shell(user), s + 9, 5_300, 0, 1, Role::Shell);
        shell.tty = tty;
        drafts.push(Draft {
            parent: Parent::Draft(sess),
            rec: shell,
        });
        let sh = drafts.len() - 1;
        budget -= 3;
        let shorts = (r.range(1, 5) as usize).min(budget);
        for _ in 0..shorts {
            let k = r.below(SHORTS.len() as u64) as usize;
            let spec = &SHORTS[k];
            let start = s + 100 + r.below(uptime0 - s - 100);
            let mut c = rec(
                uid,
                t.short(user, k),
                start,
                jitter(&mut r, spec.rss_kb, 20),
                spec.cpu_milli,
                spec.threads,
                Role::Short,
            );
            c.tty = tty;
            drafts.push(Draft {
                parent: Parent::Draft(sh),
                rec: c,
            });
        }
        budget -= shorts;
        sessions += 1;
    }

    // What an ended job left behind on some nodes: a rank or two of a
    // user's application, reparented to init and in no job's cgroup (its
    // step's cgroup went with the job). Drawn apart from the rest, so the
    // other processes are those the seed gave before strays existed.
    let mut rs = Rng::new(&[opts.seed, K_STRAY, u64::from(i)]);
    if budget >= 6 && rs.chance(STRAY_NODES) {
        let user = rs.below(USERS.len() as u64) as usize;
        let uid = tables::FIRST_UID + user as u32;
        let k = rs.below(APPS.len() as u64) as usize;
        let app = &APPS[k];
        let ended =
            uptime0 - rs.range(MINUTE, (24 * 60 * MINUTE).min(uptime0 - boot_done - MINUTE));
        let started = ended
            .saturating_sub(rs.range(10 * MINUTE, 6 * 60 * MINUTE))
            .max(boot_done);
        // Spinning where it was left, or blocked on a peer that is gone.
        let cpu = if rs.chance(0.5) {
            u32::from(app.threads) * 990
        } else {
            0
        };
        for n in 0..rs.range(1, 4) {
            drafts.push(Draft {
                parent: Parent::Init,
                rec: rec(
                    uid,
                    t.app(user, k),
                    started + n,
                    jitter(&mut rs, app.rss_mb * 1024, 10),
                    cpu,
                    app.threads,
                    Role::Rank,
                ),
            });
            budget -= 1;
        }
    }

    // pids: init, kthreadd, kernel threads, daemons, then the user part in
    // start order.
    let n_k = n_k_min + budget;
    let mut procs = Vec::with_capacity(p);
    if core >= 1 {
        let mut init = rec(0, t.init, 26, jitter(&mut r, 12_800, 10), 2, 1, Role::Init);
        init.pid = 1;
        procs.push(init);
    }
    if core >= 2 {
        let mut kt = rec(0, t.kthreadd, 26, 0, 0, 1, Role::Kernel);
        kt.pid = 2;
        procs.push(kt);
    }
    let mut pid = 3u32;
    for j in 0..n_k as u32 {
        let mut k = rec(
            0,
            t.kthread(j, hw.cpus),
            26 + u64::from(j) / 4,
            0,
            r.below(3) as u32,
            1,
            Role::Kernel,
        );
        k.pid = pid;
        k.ppid = 2;
        procs.push(k);
        pid += 1;
    }
    let mut daemon_pids = [0u32; DAEMONS.len()];
    pid = pid.max(300) + r.below(400) as u32;
    for (d, spec) in DAEMONS.iter().enumerate().take(n_d) {
        let mut rr = rec(
            spec.uid,
            t.daemon(d),
            300 + d as u64 * 37 + r.below(30),
            jitter(&mut r, spec.rss_kb, 10),
            spec.cpu_milli,
            spec.threads,
            Role::Daemon,
        );
        rr.pid = pid;
        rr.ppid = 1;
        daemon_pids[d] = pid;
        procs.push(rr);
        pid += u32::from(spec.threads) + r.range(1, 60) as u32;
    }
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&k| (drafts[k].rec.start, k));
    let mut pid_of = vec![0u32; drafts.len()];
    // Pids advance with time, as forks happen all along (cron, shells,
    // prologs): a fifth of a fork per second keeps 90 days of uptime
    // below pid_max.
    pid += r.range(200, 3000) as u32;
    let mut at = boot_done;
    for &k in &order {
        let start = drafts[k].rec.start;
        pid += ((start.saturating_sub(at)) / HZ / 5) as u32;
        at = at.max(start);
        pid_of[k] = pid;
        pid += u32::from(drafts[k].rec.threads) + r.range(1, 40) as u32;
    }
    for &k in &order {
        let mut rr = drafts[k].rec;
        rr.pid = pid_of[k];
        rr.ppid = match drafts[k].parent {
            Parent::Draft(d) => pid_of[d],
            Parent::Daemon(d) if daemon_pids[d] != 0 => daemon_pids[d],
            Parent::Daemon(_) | Parent::Init => 1,
        };
        procs.push(rr);
    }
    hold_some(opts.seed, i, &mut procs);
    let huge_pid = procs
        .iter()
        .find(|p| p.role == Role::Rank)
        .map(|p| p.pid)
        .unwrap_or(1);
    let agent_pid = match daemon_pids[AGENT_DAEMON] {
        0 => 1,
        p => p,
    };
    Built {
        procs,
        next_pid: pid,
        agent_pid,
        huge_pid,
    }
}

/// Fraction of nodes where an ended job left processes behind.
const STRAY_NODES: f64 = 0.2;

/// Fraction of nodes with a process in disk sleep, and with a zombie.
const HELD_NODES: f64 = 0.2;

/// Holds a process of some nodes in `D` (a short command or daemon stuck
/// on a hung file system) and one in `Z` (a short command its shell has not
/// reaped), drawn apart from the rest of the node.
fn hold_some(seed: u64, i: u32, procs: &mut [ProcRec]) {
    let mut r = Rng::new(&[seed, K_HOLD, u64::from(i)]);
    let pick = |r: &mut Rng, procs: &mut [ProcRec], ok: &dyn Fn(&ProcRec) -> bool, h| {
        let n = procs
            .iter()
            .filter(|p| p.hold == Hold::None && ok(p))
            .count();
        if n == 0 {
            return;
        }
        let k = r.below(n as u64) as usize;
        if let Some(p) = procs
            .iter_mut()
            .filter(|p| p.hold == Hold::None && ok(p))
            .nth(k)
        {
            p.hold = h;
        }
    };
    if r.chance(HELD_NODES) {
        let stuck = |p: &ProcRec| {
            p.step == JobStep::None && matches!(p.role, Role::Short | Role::Daemon) && p.pid != 1
        };
        pick(&mut r, procs, &stuck, Hold::Disk);
    }
    if r.chance(HELD_NODES) {
        let short = |p: &ProcRec| p.role == Role::Short;
        pick(&mut r, procs, &short, Hold::Zombie);
    }
}

impl NodeModel {
    /// The node's processes and counters at the current tick, after
    /// applying any churn due.
    pub(crate) fn snapshot(&self, sim: &Sim) -> NodeAt {
        let mut st = sys::lock(&self.state);
        let ticks = self.advance(sim, &mut st);
        NodeAt {
            now: self.uptime0 + ticks,
            ticks,
            procs: st.procs.clone(),
            last_pid: st.next_pid.saturating_sub(1),
            forks: st.forks,
        }
    }

    /// One process at the current tick, if it is alive and started at
    /// `start` (a pid reused since does not count), with the tick.
    pub(crate) fn process(
        &self,
        sim: &Sim,
        pid: u32,
        start: Option<u64>,
    ) -> Option<(ProcRec, u64)> {
        let mut st = sys::lock(&self.state);
        let ticks = self.advance(sim, &mut st);
        let k = st.procs.binary_search_by_key(&pid, |p| p.pid).ok()?;
        let p = st.procs[k];
        if start.is_some_and(|s| s != p.start) {
            return None;
        }
        Some((p, self.uptime0 + ticks))
    }

    /// Signal `signal` from `uid` to process `pid` started at `start`,
    /// applied to the model (see [`super::control`]); with the process as
    /// it was, when it existed.
    pub(crate) fn signal(
        &self,
        sim: &Sim,
        pid: u32,
        start: u64,
        uid: u32,
        signal: i32,
    ) -> (SignalOutcome, Option<ProcRec>) {
        let mut st = sys::lock(&self.state);
        self.advance(sim, &mut st);
        let Ok(k) = st.procs.binary_search_by_key(&pid, |p| p.pid) else {
            return (SignalOutcome::Refused(crate::proto::errno::ENOENT), None);
        };
        let p = st.procs[k];
        if p.start != start {
            return (SignalOutcome::Refused(crate::proto::errno::ENOENT), None);
        }
        if uid != 0 && uid != p.uid {
            return (SignalOutcome::Refused(crate::proto::errno::EPERM), Some(p));
        }
        if matches!(p.role, Role::Kernel | Role::Init) || p.hold == Hold::Zombie {
            return (SignalOutcome::NoEffect, Some(p));
        }
        let (hold, outcome) = match (default_action(signal), p.hold) {
            (Action::Ignore, h) | (Action::Cont, h @ (Hold::None | Hold::Disk | Hold::Zombie)) => {
                (h, SignalOutcome::NoEffect)
            }
            (_, Hold::Disk) => (Hold::Disk, SignalOutcome::Pending),
            (Action::End, Hold::Stopped | Hold::StoppedDying) if signal != 9 => {
                (Hold::StoppedDying, SignalOutcome::Pending)
            }
            (Action::End, _) => {
                st.procs.remove(k);
                for c in st.procs.iter_mut().filter(|c| c.ppid == pid) {
                    c.ppid = 1;
                }
                return (SignalOutcome::Ended, Some(p));
            }
            (Action::Stop, Hold::None) => (Hold::Stopped, SignalOutcome::Stopped),
            (Action::Stop, h) => (h, SignalOutcome::NoEffect),
            (Action::Cont, Hold::Stopped) => (Hold::None, SignalOutcome::Continued),
            (Action::Cont, Hold::StoppedDying) => {
                st.procs.remove(k);
                for c in st.procs.iter_mut().filter(|c| c.ppid == pid) {
                    c.ppid = 1;
                }
                return (SignalOutcome::Ended, Some(p));
            }
        };
        st.procs[k].hold = hold;
        (outcome, Some(p))
    }

    /// Applies the churn events up to now; returns the current tick
    /// (since the cluster start). Called with the lock held, so the tick is
    /// read under it and never goes backwards for this node.
    fn advance(&self, sim: &Sim, st: &mut NodeState) -> u64 {
        let now = sim.clock.ticks().max(st.churned_to);
        let rate = sim.opts.churn_per_min;
        if rate <= 0.0 || now == st.churned_to {
            st.churned_to = now;
            return now;
        }
        let seed = sim.opts.seed;
        let whole = rate.floor() as u64;
        let frac = rate - rate.floor();
        let mut minute = st.churned_to / MINUTE;
        while minute * MINUTE <= now {
            let key = [seed, K_CHURN, u64::from(self.index), minute];
            let n = whole + u64::from(unit(hash(&key)) < frac);
            let mut times: Vec<(u64, u64)> = (0..n)
                .map(|e| {
                    let h = hash(&[seed, K_CHURN, u64::from(self.index), minute, e + 1]);
                    (minute * MINUTE + 1 + h % (MINUTE - 1), h)
                })
                .collect();
            times.sort_unstable();
            for (t, h) in times {
                if t > st.churned_to && t <= now {
                    self.churn_event(sim, st, t, h);
                }
            }
            minute += 1;
        }
        st.churned_to = now;
        now
    }

    /// One churn event at tick `t`: a short command exits, or a new one
    /// starts in a shell, chosen so the count stays near `procs_per_node`.
    fn churn_event(&self, sim: &Sim, st: &mut NodeState, t: u64, h: u64) {
        let target = sim.opts.procs_per_node as f64;
        let slack = (target / 10.0).max(2.0);
        let n = st.procs.len() as f64;
        // Held processes (stopped, in disk sleep, zombies) do not exit on
        // their own.
        let ends = |p: &ProcRec| p.role == Role::Short && p.hold == Hold::None;
        let shorts = st.procs.iter().filter(|p| ends(p)).count();
        let shells = st.procs.iter().filter(|p| p.role == Role::Shell).count();
        let p_exit = (0.5 + (n - target) / (2.0 * slack)).clamp(0.0, 1.0);
        let mut r = Rng::new(&[h]);
        let exit = match (shorts, shells) {
            (0, 0) => return,
            (0, _) => false,
            (_, 0) => true,
            _ => r.chance(p_exit),
        };
        if exit {
            let k = r.below(shorts as u64) as usize;
            if let Some(pos) = st
                .procs
                .iter()
                .enumerate()
                .filter(|(_, p)| ends(p))
                .nth(k)
                .map(|(i, _)| i)
            {
                st.procs.remove(pos);
            }
            return;
        }
        let k = r.below(shells as u64) as usize;
        let Some(parent) = st
            .procs
            .iter()
            .filter(|p| p.role == Role::Shell)
            .nth(k)
            .copied()
        else {
            return;
        };
        let user = parent.uid.saturating_sub(tables::FIRST_UID) as usize % USERS.len();
        let which = r.below(SHORTS.len() as u64) as usize;
        let spec = &SHORTS[which];
        let mut c = rec(
            parent.uid,
            sim.tables.short(user, which),
            self.uptime0 + t,
            jitter(&mut r, spec.rss_kb, 20),
            spec.cpu_milli,
            spec.threads,
            Role::Short,
        );
        c.tty = parent.tty;
        c.ppid = parent.pid;
        // A child stays in its parent's cgroup (the batch script's
        // commands are in the batch step).
        c.step = parent.step;
        // Other forks happen between ours (cron, shells' pipelines).
        let gap = r.range(1, 8) as u32;
        let mut pid = st.next_pid;
        let span = u32::from(c.threads);
        loop {
            if pid + span >= PID_MAX {
                pid = PID_WRAP_TO;
            }
            let lo = st
                .procs
                .partition_point(|p| p.pid + u32::from(p.threads) <= pid);
            match st.procs.get(lo) {
                Some(p) if p.pid < pid + span => pid = p.pid + u32::from(p.threads),
                _ => break,
            }
        }
        c.pid = pid;
        st.next_pid = pid + span + gap;
        st.forks += u64::from(gap) + 1;
        let at = st.procs.partition_point(|p| p.pid < pid);
        st.procs.insert(at, c);
    }
}

//! The node summary's collector: one snapshot of a local proc tree as a
//! [`NodeSummary`], read with procfs. The format itself (types, writer,
//! parser) is [`crate::format::summary`].

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use procfs::process::Process;
use procfs::{FromRead, FromReadSI, KernelStats, LoadAverage, ProcError, Uptime};

use super::classify::{Class, Op, classify};
use super::deadline::{Outcome, Reads};
use super::gpus::GpuScan;
use crate::format::jobs::JobRules;
use crate::format::summary::{Args, Escaped, LoadAvg, NodeSummary, ProcEntry};

/// A node-wide file (`stat`, `uptime`, `meminfo`, `loadavg`) or the process
/// directory itself could not be read: no summary is possible.
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub struct CollectError {
    /// The file under the proc root.
    pub path: PathBuf,
    /// What procfs reported.
    #[source]
    pub source: ProcError,
}

/// A whole small proc file, bytes untouched: procfs's own `Stat` and
/// `cmdline()` decode lossily, and the summary must carry `comm` and
/// arguments exactly.
struct Raw(Vec<u8>);

impl FromRead for Raw {
    fn from_read<R: Read>(mut r: R) -> procfs::ProcResult<Self> {
        let mut buf = Vec::with_capacity(2048);
        r.read_to_end(&mut buf)?;
        Ok(Raw(buf))
    }
}

/// The fields the summary takes from `/proc/<pid>/stat`.
struct StatFields {
    comm: Vec<u8>,
    state: char,
    ppid: i32,
    utime: u64,
    stime: u64,
    threads: i64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `stat`. `comm` is what lies between the first `(` and the last
/// `)`, so a `comm` holding `) ` cannot shift the fields after it.
fn parse_stat(buf: &[u8]) -> Option<StatFields> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    let comm = buf.get(open + 1..close)?.to_vec();
    let mut f = [&b""[..]; 22];
    let mut toks = buf[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    for slot in f.iter_mut() {
        *slot = toks.next()?;
    }
    fn n<T: std::str::FromStr>(t: &[u8]) -> Option<T> {
        std::str::from_utf8(t).ok()?.parse().ok()
    }
    // f[0] is field 3 of proc_pid_stat(5), so field k is f[k - 3].
    let state = match f[0] {
        [c] => char::from(*c),
        _ => return None,
    };
    Some(StatFields {
        comm,
        state,
        ppid: n(f[1])?,
        utime: n(f[11])?,
        stime: n(f[12])?,
        threads: n(f[17])?,
        start_ticks: n(f[19])?,
        vsize: n(f[20])?,
        // Signed in the kernel's format; never negative in practice.
        rss_pages: n::<i64>(f[21])?.max(0).unsigned_abs(),
    })
}

/// Real and effective uid from the `Uid:` line of `status`.
fn parse_uids(status: &[u8]) -> Option<(u32, u32)> {
    let line = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Uid:"))?;
    let mut toks = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| std::str::from_utf8(t).ok()?.parse::<u32>().ok());
    Some((toks.next()??, toks.next()??))
}

/// uname(2): (nodename, release, machine), the fallback for the sysctl
/// files when a test root lacks them.
fn uname() -> Option<(String, String, String)> {
    let u = rustix::system::uname();
    let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    Some((s(u.nodename()), s(u.release()), s(u.machine())))
}

/// A one-line sysctl file under `root/sys/kernel`, trimmed.
fn sysctl(root: &Path, name: &str) -> Option<String> {
    let s = std::fs::read(root.join("sys/kernel").join(name)).ok()?;
    let s = String::from_utf8_lossy(&s).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn read_err(root: &Path, name: &str) -> impl FnOnce(ProcError) -> CollectError {
    let path = root.join(name);
    move |source| CollectError { path, source }
}

/// `MemTotal`, `MemFree` and `MemAvailable` (kB) of `/proc/meminfo`.
/// Read here rather than with procfs's `Meminfo`, which insists on 17
/// fields and would lose the whole summary on a kernel lacking one.
struct Mem {
    total: u64,
    free: u64,
    available: Option<u64>,
}

impl FromRead for Mem {
    fn from_read<R: Read>(r: R) -> procfs::ProcResult<Self> {
        let Raw(buf) = Raw::from_read(r)?;
        let (mut total, mut free, mut available) = (None, None, None);
        for line in buf.split(|&b| b == b'\n') {
            let mut toks = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|t| !t.is_empty());
            let slot = match toks.next() {
                Some(b"MemTotal:") => &mut total,
                Some(b"MemFree:") => &mut free,
                Some(b"MemAvailable:") => &mut available,
                _ => continue,
            };
            let value = toks
                .next()
                .and_then(|t| std::str::from_utf8(t).ok()?.parse::<u64>().ok());
            *slot = match (value, toks.next()) {
                (Some(v), Some(b"kB") | None) => Some(v),
                _ => None,
            };
        }
        match (total, free) {
            (Some(total), Some(free)) => Ok(Mem {
                total,
                free,
                available,
            }),
            _ => Err(ProcError::Other(
                "meminfo lacks MemTotal or MemFree in kB".to_string(),
            )),
        }
    }
}

/// Rounds a kernel load average (two decimals in `/proc/loadavg`, an `f32`
/// in procfs) so that it prints as the kernel wrote it.
fn load(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

/// The per-process files the summary reads. `stat` and `status` make the
/// row and are read inline, so they must be [`Class::Fast`] (a test checks
/// it); `cmdline` is read as [`classify`] says: through [`Reads`], with a
/// deadline, when it is isolated.
const STAT: &str = "stat";
const STATUS: &str = "status";
const CMDLINE: &str = "cmdline";

/// The arguments a `cmdline` read's outcome gives a row: unreadable
/// (permissions, or the process exiting) costs only the arguments (`ps`
/// then shows `[comm]`); not answered in time makes them unknown (`?`).
fn cmdline_of(o: Outcome) -> Args {
    match o {
        Outcome::Read(c) => Args::from_cmdline(&c),
        Outcome::Failed => Args::default(),
        Outcome::Late => Args::unknown(),
    }
}

/// One process's row without its arguments (read elsewhere, with a
/// deadline), or `None` if it vanished while being read. With `jobs`, its
/// job too, from its `cgroup` file (world-readable, a fast read;
/// unreadable or vanished: no job; kernel threads: not read).
fn collect_proc(
    p: &Process,
    users: &mut HashMap<u32, std::sync::Arc<str>>,
    jobs: Option<&JobRules>,
) -> Option<ProcEntry> {
    // `stat` is world-readable: failing to read it means the process is gone.
    let stat = parse_stat(&p.read::<_, Raw>(STAT).ok()?.0)?;
    let (ruid, euid) = match p.read::<_, Raw>(STATUS) {
        Ok(Raw(s)) => parse_uids(&s)?,
        // Unreadable but present (e.g. an LSM): the directory's owner is
        // the effective uid, the best that is left.
        Err(ProcError::PermissionDenied(_)) => {
            let uid = p.uid().ok()?;
            (uid, uid)
        }
        Err(_) => return None,
    };
    // Kernel threads (kthreadd and its children) are in no job: their
    // `cgroup` is not read.
    let kernel_thread = p.pid() == 2 || stat.ppid == 2;
    let job = jobs.filter(|_| !kernel_thread).and_then(|rules| {
        let Raw(c) = p.read::<_, Raw>("cgroup").ok()?;
        rules.job_of(&c)
    });
    let user = users
        .entry(euid)
        .or_insert_with(|| crate::sys::users::user_label(euid).into())
        .clone();
    Some(ProcEntry {
        pid: p.pid(),
        ppid: stat.ppid,
        ruid,
        euid,
        user,
        state: stat.state,
        utime: stat.utime,
        stime: stat.stime,
        rss_pages: stat.rss_pages,
        vsize: stat.vsize,
        start_ticks: stat.start_ticks,
        threads: stat.threads,
        comm: Escaped::new(&stat.comm),
        cmdline: Args::default(),
        job: job.map(std::sync::Arc::new),
        gpus: None,
    })
}

/// Collects a snapshot of the proc tree at `root` (normally `/proc`),
/// jobs recognised by the built-in patterns, no GPU scan
/// ([`collect_with`]).
pub fn collect(root: &Path) -> Result<NodeSummary, CollectError> {
    collect_with(root, Some(&JobRules::default()), None)
}

/// Collects a snapshot of the proc tree at `root`.
///
/// Per process it reads `stat`, `status` (for the uids only) and `cmdline`
/// once each, and `cgroup` when `jobs` is given (each process's job is
/// then the first pattern's match). Processes that vanish during the scan
/// are left out; an unreadable `cmdline` leaves only the arguments out.
/// `cmdline` can sleep on the process (its memory map lock): those reads
/// are made on a helper thread, each with a deadline
/// ([`super::deadline`]), and one not answered in time marks its row's
/// arguments unknown. With `gpus`, each process's GPUs too, from its
/// descriptors as [`super::gpus`] says (bounded, kept between summaries,
/// each scan with the same kind of deadline); without, unknown. The
/// node-wide files (`stat`, `uptime`, `meminfo`, `loadavg`) must be
/// readable.
pub fn collect_with(
    root: &Path,
    jobs: Option<&JobRules>,
    gpus: Option<&GpuScan>,
) -> Result<NodeSummary, CollectError> {
    let ks = KernelStats::from_file(root.join("stat"), procfs::current_system_info())
        .map_err(read_err(root, "stat"))?;
    let mem = Mem::from_file(root.join("meminfo")).map_err(read_err(root, "meminfo"))?;
    let la = LoadAverage::from_file(root.join("loadavg")).map_err(read_err(root, "loadavg"))?;
    let up = Uptime::from_file(root.join("uptime")).map_err(read_err(root, "uptime"))?;
    // Taken right after `uptime` so that `time - uptime` is the boot time.
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e6);
    let (node, release, machine) = uname().unwrap_or_default();

    let mut users = HashMap::new();
    // Pids first (one listing), so the `cmdline` reads start on their
    // helper while this thread reads the rows; each process directory is
    // opened in turn, never all at once (a node's processes outnumber the
    // descriptors the agent may hold).
    let pids: Vec<i32> = std::fs::read_dir(root)
        .map_err(|e| read_err(root, "")(ProcError::from(e)))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 0)
        .collect();
    let mut cmdlines = match classify(&Path::new("1").join(CMDLINE), Op::Open) {
        Class::Isolated => Some(Reads::start(root, CMDLINE, pids.clone())),
        Class::Fast => None,
    };
    // The rows first, from the fast files, while the helper reads the
    // arguments; then the arguments, in the same order, each within its
    // deadline (by then most are waiting in the channel: no hand-off per
    // process, and a stuck read's deadline runs during the rows).
    let rows: Vec<Option<ProcEntry>> = pids
        .iter()
        .map(|&pid| {
            let p = Process::new_with_root(root.join(pid.to_string())).ok()?;
            let mut row = collect_proc(&p, &mut users, jobs)?;
            if cmdlines.is_none() {
                row.cmdline = cmdline_of(
                    p.read::<_, Raw>(CMDLINE)
                        .map_or(Outcome::Failed, |Raw(c)| Outcome::Read(c)),
                );
            }
            Some(row)
        })
        .collect();
    // The GPU scans start now, on their own helper, while the arguments
    // are taken below.
    let listed: Vec<(i32, u64, bool)> = rows
        .iter()
        .flatten()
        .map(|r| (r.pid, r.start_ticks, r.pid == 2 || r.ppid == 2))
        .collect();
    let gpu_round = gpus.and_then(|g| g.start(root, &listed));
    let mut procs: Vec<ProcEntry> = rows
        .into_iter()
        .filter_map(|row| {
            // Taken for every listed process, in order, even a vanished one.
            let outcome = cmdlines.as_mut().map(Reads::next_outcome);
            let mut row = row?;
            if let Some(o) = outcome {
                row.cmdline = cmdline_of(o);
            }
            Some(row)
        })
        .collect();
    if let Some(round) = gpu_round {
        let mut held = round.finish();
        for p in &mut procs {
            p.gpus = held.remove(&p.pid).flatten().map(std::sync::Arc::new);
        }
    }
    procs.sort_by_key(|p| p.pid);

    Ok(NodeSummary {
        hostname: sysctl(root, "hostname").unwrap_or(node),
        // The machine this agent runs on (uname, which qemu-user answers
        // for the emulated one); a test's fake root may say otherwise.
        arch: (root != Path::new("/proc"))
            .then(|| sysctl(root, "arch"))
            .flatten()
            .or_else(|| (!machine.is_empty()).then_some(machine))
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        kernel: sysctl(root, "osrelease").unwrap_or(release),
        boot_time: ks.btime,
        clk_tck: procfs::ticks_per_second().max(1),
        page_size: procfs::page_size().max(1),
        uptime: up.uptime,
        idle: up.idle,
        time,
        cpus: u32::try_from(ks.cpu_time.len()).unwrap_or(u32::MAX),
        mem_total_kb: mem.total,
        mem_free_kb: mem.free,
        mem_available_kb: mem.available,
        loadavg: LoadAvg {
            one: load(la.one),
            five: load(la.five),
            fifteen: load(la.fifteen),
            running: la.cur,
            total: la.max,
        },
        procs,
        // The agent's walk resolves `<pid>.<start>` (see `agent::walk`).
        pinned_walk: true,
        // The agent serves the file as `Contents::Fresh` (see its `open`).
        fresh_at_zero: true,
    })
}

/// The summary file's bytes for the proc tree at `root`: [`collect`] then
/// [`NodeSummary::encode`].
pub fn generate(root: &Path) -> Result<Vec<u8>, CollectError> {
    Ok(collect(root)?.encode())
}

/// [`generate`] with the agent's job patterns (`None`: no job field) and
/// GPU scanner (`None`: GPUs unknown). Runs on every read of the file.
pub fn generate_with(
    root: &Path,
    jobs: Option<&JobRules>,
    gpus: Option<&GpuScan>,
) -> Result<Vec<u8>, CollectError> {
    Ok(collect_with(root, jobs, gpus)?.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::summary::parse;

    /// The files a row is made of are read inline: they must not sleep on
    /// another process. `cmdline` can, and goes through the deadline.
    #[test]
    fn the_collectors_files_are_classified() {
        for f in [STAT, STATUS] {
            assert_eq!(classify(&Path::new("1").join(f), Op::Open), Class::Fast);
        }
        assert_eq!(
            classify(&Path::new("1").join(CMDLINE), Op::Open),
            Class::Isolated
        );
    }

    #[test]
    fn stat_and_status_parsing() {
        let stat = b"77 (a) b (c)) R 1 77 77 0 -1 4194560 100 0 0 0 11 22 0 0 20 0 3 0 555 1234567 89 18446744073709551615\n";
        let s = parse_stat(stat).unwrap();
        assert_eq!(s.comm, b"a) b (c)");
        assert_eq!((s.state, s.ppid, s.utime, s.stime), ('R', 1, 11, 22));
        assert_eq!(
            (s.threads, s.start_ticks, s.vsize, s.rss_pages),
            (3, 555, 1234567, 89)
        );
        assert!(parse_stat(b"77 (x) R 1 2").is_none());
        assert!(parse_stat(b")(").is_none());
        assert_eq!(
            parse_uids(b"Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n"),
            Some((1000, 0))
        );
        assert_eq!(parse_uids(b"Name:\tx\n"), None);
    }

    /// Reads `/proc/<pid>/stat` directly, independently of `parse_stat`.
    fn direct_stat(pid: &str) -> (i32, Vec<u8>) {
        let raw = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
        let close = raw.iter().rposition(|&b| b == b')').unwrap();
        let open = raw.iter().position(|&b| b == b'(').unwrap();
        let rest = String::from_utf8_lossy(&raw[close + 2..]).into_owned();
        let ppid = rest.split(' ').nth(1).unwrap().parse().unwrap();
        (ppid, raw[open + 1..close].to_vec())
    }

    #[test]
    fn generate_from_real_proc() {
        // Not a timed test: prints the cost per read of the file (first run
        // pays NSS start-up for the user names).
        let mut times = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..5 {
            let start = std::time::Instant::now();
            bytes = generate(Path::new("/proc")).unwrap();
            times.push(start.elapsed());
        }
        let s = parse(&bytes).unwrap();
        eprintln!(
            "generate(/proc): {} processes, {} bytes, first {:?}, best {:?}",
            s.procs.len(),
            bytes.len(),
            times[0],
            times.iter().min().unwrap()
        );
        assert!(s.clk_tck > 0 && s.page_size > 0 && s.cpus > 0);
        assert!(s.mem_total_kb > 0 && s.boot_time > 0 && !s.kernel.is_empty());
        assert!(s.procs.windows(2).all(|w| w[0].pid < w[1].pid));

        let me = std::process::id() as i32;
        let p = s.procs.iter().find(|p| p.pid == me).expect("self listed");
        let (ppid, comm) = direct_stat("self");
        assert_eq!(p.ppid, ppid);
        assert_eq!(p.comm.decode(), comm);
        // SAFETY: getuid/geteuid cannot fail.
        let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
        assert_eq!((p.ruid, p.euid), (uid, euid));
        assert_eq!(&*p.user, crate::sys::users::user_label(euid));
        assert!(p.threads >= 1);
        let argv0 = std::env::args_os().next().unwrap();
        assert_eq!(p.cmdline.to_vecs()[0], argv0.as_encoded_bytes());
        assert!(p.start_ticks > 0 && p.vsize > 0 && p.rss_pages > 0);
        let started = p.start_time_unix(s.boot_time, s.clk_tck);
        assert!(started <= s.time + 2.0, "{started} vs {}", s.time);

        let init = s.procs.iter().find(|p| p.pid == 1).expect("pid 1 listed");
        let (ppid, comm) = direct_stat("1");
        assert_eq!((init.ppid, &*init.comm.decode()), (ppid, &comm[..]));
    }

    #[test]
    fn generate_from_other_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("stat"), "cpu  1 2 3 4 5 6 7 0 0 0\ncpu0 1 2 3 4 5 6 7 0 0 0\ncpu1 1 2 3 4 5 6 7 0 0 0\nctxt 10\nbtime 1700000000\nprocesses 5\n").unwrap();
        std::fs::write(
            root.join("meminfo"),
            "MemTotal: 2048 kB\nMemFree: 1024 kB\n",
        )
        .unwrap();
        std::fs::write(root.join("loadavg"), "0.50 0.25 1.00 3/99 4242\n").unwrap();
        std::fs::write(root.join("uptime"), "100.50 180.25\n").unwrap();
        std::fs::create_dir_all(root.join("sys/kernel")).unwrap();
        std::fs::write(root.join("sys/kernel/hostname"), "fake7\n").unwrap();
        std::fs::write(root.join("sys/kernel/arch"), "ppc64\n").unwrap();
        let p = root.join("4242");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(
            p.join("stat"),
            b"4242 (we\xffird job) S 1 4242 4242 0 -1 0 0 0 0 0 7 3 0 0 20 0 2 0 900 4096 10 0\n",
        )
        .unwrap();
        std::fs::write(p.join("status"), "Name:\tx\nUid:\t0\t0\t0\t0\n").unwrap();
        std::fs::write(p.join("cmdline"), b"a\xfe\0b\tc\0").unwrap();
        std::fs::write(
            p.join("cgroup"),
            "1:name=systemd:/user.slice/job_9/step_0\n0::/system.slice/slurmstepd.scope/job_55/step_batch/user/task_0\n",
        )
        .unwrap();
        // Vanished mid-scan: no stat.
        std::fs::create_dir(root.join("4243")).unwrap();

        let s = parse(&generate(root).unwrap()).unwrap();
        assert_eq!((s.hostname.as_str(), s.arch.as_str()), ("fake7", "ppc64"));
        assert_eq!(
            (s.boot_time, s.cpus, s.mem_total_kb, s.mem_available_kb),
            (1_700_000_000, 2, 2048, None)
        );
        assert_eq!(
            s.loadavg,
            LoadAvg {
                one: 0.5,
                five: 0.25,
                fifteen: 1.0,
                running: 3,
                total: 99
            }
        );
        assert_eq!((s.uptime, s.idle), (100.5, 180.25));
        assert_eq!(s.procs.len(), 1);
        let p = &s.procs[0];
        assert_eq!(p.comm.decode(), &b"we\xffird job"[..]);
        assert_eq!(
            p.cmdline.to_vecs(),
            vec![b"a\xfe".to_vec(), b"b\tc".to_vec()]
        );
        assert_eq!(
            (p.pid, p.ppid, p.utime, p.stime, p.threads),
            (4242, 1, 7, 3, 2)
        );
        assert_eq!(
            (p.start_ticks, p.vsize, p.rss_pages, &*p.user),
            (900, 4096, 10, "root")
        );
        assert_eq!(
            p.job,
            Some(std::sync::Arc::new(crate::format::jobs::JobRef {
                id: "55".into(),
                step: Some("batch".into())
            }))
        );
        let no_jobs = collect_with(root, None, None).unwrap();
        assert_eq!(no_jobs.procs[0].job, None);

        // A process whose cmdline read sleeps (a FIFO's open blocks until
        // a writer comes, as a locked memory map makes a cmdline read
        // wait): its row says `?`, in time, and the others are intact.
        let q = root.join("4244");
        std::fs::create_dir(&q).unwrap();
        std::fs::write(
            q.join("stat"),
            b"4244 (hung) D 1 4244 4244 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 901 4096 10 0\n",
        )
        .unwrap();
        std::fs::write(q.join("status"), "Name:\thung\nUid:\t0\t0\t0\t0\n").unwrap();
        let fifo = std::ffi::CString::new(q.join("cmdline").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        let s2 = parse(&generate(root).unwrap()).unwrap();
        let took = t.elapsed();
        assert!(
            took < crate::agent::deadline::READ_DEADLINE * 5,
            "the summary came back in {took:?}"
        );
        assert_eq!(s2.procs.len(), 2);
        assert_eq!(s2.procs[0], s.procs[0], "the other row is intact");
        let hung = &s2.procs[1];
        assert_eq!((hung.pid, hung.state), (4244, 'D'));
        assert!(hung.cmdline_unknown());
        assert_eq!(hung.cmdline_display(), "?");
        // Known stuck: the next summary does not try (and wait) again.
        let stuck = crate::agent::deadline::Registry::global().stuck();
        assert!(stuck >= 1);
        let s3 = parse(&generate(root).unwrap()).unwrap();
        assert!(s3.procs[1].cmdline_unknown());
        assert_eq!(crate::agent::deadline::Registry::global().stuck(), stuck);
        // Let the stuck read finish (a writer opens the FIFO).
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(q.join("cmdline"));
        std::fs::remove_dir_all(&q).unwrap();

        std::fs::remove_file(root.join("uptime")).unwrap();
        let e = generate(root).unwrap_err();
        assert!(e.to_string().contains("uptime"), "{e}");
    }
}

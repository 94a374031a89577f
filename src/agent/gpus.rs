//! The summary's GPU scan: which GPU devices each process has open, from
//! its open descriptors, recognised by device number
//! ([`crate::format::gpus`]).
//!
//! # What it costs, and its bounds
//!
//! A stat per descriptor, so it is bounded three ways:
//! - only on nodes with a GPU driver: `/proc/devices` lists NVIDIA's major
//!   (195) or `kfd`, or `/sys/class/drm` has a render node. The agent
//!   looks at its first summary and again every [`PRESENCE_RECHECK`] (a
//!   driver may be loaded later); elsewhere every process holds none, and
//!   no descriptor is looked at;
//! - at most `cap` descriptors per process ([`DEFAULT_FD_CAP`]), in
//!   descriptor order (the GPU libraries open their devices early, so low
//!   numbers); a process with more is marked `+` (truncated);
//! - once per `rescan` ([`DEFAULT_RESCAN`]) per process: a result is kept
//!   under the process's pid and start time and the asker's ids, and reused
//!   by the summaries in between (a new process is scanned at once). Each
//!   process's interval is between half and the whole of `rescan`, by its
//!   pid, so the processes scanned together at start are not all rescanned
//!   in one later summary.
//!
//! # Can it block? (the kernel's rules)
//!
//! Listing `/proc/<pid>/fd` walks the process's descriptor table under
//! RCU: it never sleeps on the process (not on its memory map, unlike
//! `cmdline`). `statx` of `/proc/<pid>/fd/N` resolves the link with the
//! ptrace read check (credentials compared under a spinlock) and jumps to
//! the open file's own path, with no lookup in its file system; then the
//! stat asks the *target's* file system for its attributes. For a device
//! node (devtmpfs, tmpfs), a socket, a pipe or a local disk that is memory;
//! a network file system may ask its server (NFS, Lustre, GPFS, FUSE), and a
//! hung server hangs the stat. The scan asks for the file type only, with
//! `AT_STATX_DONT_SYNC`, which NFS, CIFS and FUSE answer from their cache;
//! others may not, so each process's scan runs as the summary's `cmdline`
//! reads do ([`super::deadline`], with a registry of its own): one not done
//! within the deadline leaves that row's GPUs unknown (`?`), and the
//! process is not scanned again until the stuck stat returns.
//!
//! # Whose
//!
//! The scan runs as the asker, as the rest of the summary: the kernel lets
//! a user stat the descriptors of their own (dumpable, same uids and gids)
//! processes only, and others' rows say unknown. The aggregator's service
//! identity sees all, so the scan flags a process whose owner could not
//! read its descriptors (saved or effective ids that differ, or not
//! dumpable: a setuid program) `restricted`, and the aggregator shows its
//! GPUs to administrators only.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use super::deadline::{LATE_PER_SUMMARY, Outcome, READ_DEADLINE, ReadOp, Reads, Registry};
use crate::format::gpus::{self, Gpu, Gpus};
use crate::format::summary::stat_start_ticks;
use crate::sys::lock;

/// Descriptors looked at per process, by default.
pub const DEFAULT_FD_CAP: usize = 512;

/// How long a process's scan is reused, by default.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(30);

/// How often the agent looks again whether the node has a GPU driver.
pub const PRESENCE_RECHECK: Duration = Duration::from_secs(60);

/// Scans given up and still stuck in the kernel at once, node-wide.
const MAX_STUCK_SCANS: usize = 4;

/// Whether the agent scans descriptors for GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMode {
    /// Where the node has a GPU driver (looked at now and then).
    Auto,
    /// Always (a node whose drivers this build does not recognise; tests).
    Always,
    /// Never: every process's GPUs are unknown.
    Never,
}

impl std::str::FromStr for GpuMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuMode::Auto),
            "always" => Ok(GpuMode::Always),
            "never" => Ok(GpuMode::Never),
            _ => Err(format!("{s:?}: expected auto, always or never")),
        }
    }
}

/// What the node has, as last looked at.
#[derive(Debug, Clone, Copy)]
struct Presence {
    /// A GPU driver is loaded (or the mode says to scan anyway).
    scan: bool,
    /// `kfd`'s major.
    kfd: Option<u32>,
}

/// A kept scan: the process (pid, start time) and the ids it was made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    ids: (u32, u32),
    pid: i32,
    start: u64,
}

#[derive(Debug, Default)]
struct State {
    presence: Option<(Instant, Presence)>,
    kept: HashMap<Key, (Instant, Gpus)>,
}

/// The agent's GPU scanner: its settings, what it knows of the node, and
/// the scans it keeps.
#[derive(Debug)]
pub struct GpuScan {
    mode: GpuMode,
    cap: usize,
    rescan: Duration,
    registry: Arc<Registry>,
    state: std::sync::Mutex<State>,
}

impl Default for GpuScan {
    fn default() -> Self {
        Self::new(GpuMode::Auto, DEFAULT_FD_CAP, DEFAULT_RESCAN)
    }
}

impl GpuScan {
    /// A scanner: `cap` descriptors per process (at least 1), each
    /// process rescanned after `rescan`.
    pub fn new(mode: GpuMode, cap: usize, rescan: Duration) -> Self {
        static STUCK: LazyLock<Arc<Registry>> = LazyLock::new(|| Registry::new(MAX_STUCK_SCANS));
        GpuScan {
            mode,
            cap: cap.max(1),
            rescan,
            registry: STUCK.clone(),
            state: std::sync::Mutex::new(State::default()),
        }
    }

    /// How long `pid`'s scan is kept: between half and the whole interval.
    fn rescan_of(&self, pid: i32) -> Duration {
        let spread = u32::try_from(pid.rem_euclid(16)).unwrap_or(0);
        self.rescan - self.rescan * spread / 32
    }

    /// The node's drivers, looked at again when the last look is old.
    fn presence(&self, root: &Path) -> Presence {
        let mut st = lock(&self.state);
        if let Some((t, p)) = st.presence
            && t.elapsed() < PRESENCE_RECHECK
        {
            return p;
        }
        let devices = std::fs::read(root.join("devices")).unwrap_or_default();
        let scan = match self.mode {
            GpuMode::Always => true,
            GpuMode::Never => false,
            GpuMode::Auto => gpus::gpu_driver_loaded(&devices) || render_nodes(root),
        };
        let p = Presence {
            scan,
            kfd: gpus::kfd_major(&devices),
        };
        st.presence = Some((Instant::now(), p));
        p
    }

    /// Starts a summary's scan of `procs` (pid, start time, kernel
    /// thread), as the calling thread's credentials; `None` when the mode
    /// is [`GpuMode::Never`] (every process unknown).
    pub fn start(&self, root: &Path, procs: &[(i32, u64, bool)]) -> Option<Round<'_>> {
        if self.mode == GpuMode::Never {
            return None;
        }
        let presence = self.presence(root);
        let ids = crate::sys::creds::fs_ids();
        let mut known = HashMap::new();
        let mut pending = Vec::new();
        {
            let mut st = lock(&self.state);
            let listed: HashSet<Key> = procs
                .iter()
                .map(|&(pid, start, _)| Key { ids, pid, start })
                .collect();
            // Gone processes and old results go; others' are theirs.
            let rescan = self.rescan;
            st.kept.retain(|k, (t, _)| {
                (k.ids != ids || listed.contains(k)) && t.elapsed() < rescan * 2
            });
            for &(pid, start, kernel) in procs {
                if !presence.scan || kernel {
                    known.insert(pid, Some(Gpus::default()));
                    continue;
                }
                match st.kept.get(&Key { ids, pid, start }) {
                    Some((t, g)) if t.elapsed() < self.rescan_of(pid) => {
                        known.insert(pid, Some(g.clone()));
                    }
                    _ => pending.push((pid, start)),
                }
            }
        }
        let reads = (!pending.is_empty()).then(|| {
            let (cap, kfd) = (self.cap, presence.kfd);
            let op: ReadOp = Arc::new(move |dir: &Path| scan_process(dir, cap, kfd));
            Reads::start_op(
                root,
                ("fd", "a descriptor's file system is not answering?"),
                op,
                pending.iter().map(|&(pid, _)| pid).collect(),
                self.registry.clone(),
                READ_DEADLINE,
                LATE_PER_SUMMARY,
            )
        });
        Some(Round {
            scan: self,
            ids,
            known,
            pending,
            reads,
        })
    }
}

/// One summary's scan, under way.
pub struct Round<'a> {
    scan: &'a GpuScan,
    ids: (u32, u32),
    known: HashMap<i32, Option<Gpus>>,
    pending: Vec<(i32, u64)>,
    reads: Option<Reads>,
}

impl Round<'_> {
    /// Every listed process's GPUs (`None`: unknown), waiting for the
    /// scans under way (each within its deadline); keeps the new ones.
    pub fn finish(mut self) -> HashMap<i32, Option<Gpus>> {
        let Some(mut reads) = self.reads.take() else {
            return self.known;
        };
        let mut fresh = Vec::new();
        for &(pid, start) in &self.pending {
            let got = match reads.next_outcome() {
                Outcome::Read(b) => parse_result(&b)
                    // Its pid taken by another process since its row.
                    .filter(|(s, _)| *s == start)
                    .map(|(_, g)| g),
                Outcome::Failed | Outcome::Late => None,
            };
            if let Some(g) = &got {
                fresh.push((pid, start, g.clone()));
            }
            self.known.insert(pid, got);
        }
        let now = Instant::now();
        let mut st = lock(&self.scan.state);
        for (pid, start, g) in fresh {
            let key = Key {
                ids: self.ids,
                pid,
                start,
            };
            st.kept.insert(key, (now, g));
        }
        self.known
    }
}

/// Whether sysfs shows a DRM render node (only for the real `/proc`: a
/// test's root has no sysfs of its own).
fn render_nodes(root: &Path) -> bool {
    root == Path::new("/proc")
        && std::fs::read_dir("/sys/class/drm").is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().as_encoded_bytes().starts_with(b"renderD"))
        })
}

/// A helper's answer: `<start> <token>`.
fn parse_result(b: &[u8]) -> Option<(u64, Gpus)> {
    let s = std::str::from_utf8(b).ok()?;
    let (start, token) = s.split_once(' ')?;
    Some((start.parse().ok()?, Gpus::parse_token(token)?))
}

fn open_dir(dir: &OwnedFd, name: &str) -> Option<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

fn read_small(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut out = Vec::with_capacity(1024);
    std::fs::File::from(fd)
        .take(super::MAX_FILE_BYTES as u64)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// Scans one process directory (`root/<pid>`): its start time and the
/// GPUs among its first `cap` descriptors, as `<start> <token>`. Every
/// file is opened under the one directory descriptor, so all are the same
/// process's (a process that exits meanwhile fails, never another one that
/// reused its pid).
fn scan_process(dir: &Path, cap: usize, kfd: Option<u32>) -> Option<Vec<u8>> {
    let pid_dir = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let start = stat_start_ticks(&read_small(&pid_dir, "stat")?)?;
    let fds = open_dir(&pid_dir, "fd")?;
    let mut devices = Vec::new();
    let (mut seen, mut truncated) = (0usize, false);
    for entry in rustix::fs::Dir::read_from(&fds).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        if seen == cap {
            truncated = true;
            break;
        }
        seen += 1;
        // Closed since the listing: skipped.
        let Ok(st) = rustix::fs::statx(&fds, name, AtFlags::STATX_DONT_SYNC, StatxFlags::TYPE)
        else {
            continue;
        };
        if FileType::from_raw_mode(st.stx_mode.into()) == FileType::CharacterDevice
            && let Some(g) = Gpu::of_char_device(st.stx_rdev_major, st.stx_rdev_minor, kfd)
        {
            devices.push(g);
        }
    }
    let mut g = Gpus::new(devices, truncated);
    if !g.is_empty() {
        g.restricted = owner_could_not_read(&pid_dir);
    }
    Some(format!("{start} {}", g.token()).into_bytes())
}

/// Whether the process's owner could not stat its descriptors: the
/// kernel's ptrace read check wants the asker's uid to be the process's
/// real, effective and saved uid, its gid likewise, and the process
/// dumpable (a process that is not has its `/proc` directory owned by
/// root). Unreadable: assumed so.
fn owner_could_not_read(pid_dir: &OwnedFd) -> bool {
    let Some(status) = read_small(pid_dir, "status") else {
        return true;
    };
    let ids = |tag: &[u8]| -> Option<Vec<u32>> {
        let line = status
            .split(|&b| b == b'\n')
            .find_map(|l| l.strip_prefix(tag))?;
        line.split(|b| b.is_ascii_whitespace())
            .filter(|t| !t.is_empty())
            .take(3)
            .map(|t| std::str::from_utf8(t).ok()?.parse().ok())
            .collect()
    };
    let same = |v: &Option<Vec<u32>>| {
        v.as_ref()
            .is_some_and(|v| v.len() == 3 && v.iter().all(|x| *x == v[0]))
    };
    let (uids, gids) = (ids(b"Uid:"), ids(b"Gid:"));
    let owner = rustix::fs::fstat(pid_dir).map(|s| s.st_uid).ok();
    let dumpable = matches!((&uids, owner), (Some(u), Some(o)) if u.first() == Some(&o));
    !(same(&uids) && same(&gids) && dumpable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Makes a character device node (root only) and holds it with
    /// `O_PATH`, which needs no driver.
    fn hold_device(dir: &Path, name: &str, major: u32, minor: u32) -> Option<OwnedFd> {
        let path = dir.join(name);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(major, minor),
        )
        .ok()?;
        rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok()
    }

    #[test]
    fn a_process_holding_device_nodes_shows_its_gpus_by_number() {
        let d = tempfile::tempdir().unwrap();
        let Some(gpu) = hold_device(d.path(), "not-a-gpu-name", 195, 3) else {
            eprintln!("SKIP: mknod needs CAP_MKNOD");
            return;
        };
        let ctl = hold_device(d.path(), "nvidiactl", 195, 255).unwrap();
        let render = hold_device(d.path(), "r", 226, 129).unwrap();
        let kfd = hold_device(d.path(), "k", 511, 0).unwrap();
        let me = Path::new("/proc").join(std::process::id().to_string());
        let (start, g) = parse_result(&scan_process(&me, 100_000, Some(511)).unwrap()).unwrap();
        let stat = std::fs::read(me.join("stat")).unwrap();
        assert_eq!(Some(start), stat_start_ticks(&stat));
        assert_eq!(g.devices, vec![Gpu::Nvidia(3), Gpu::Render(1), Gpu::Amd]);
        assert!(!g.truncated && !g.restricted, "{g:?}");
        // Without kfd's major, that node is nothing.
        let (_, g) = parse_result(&scan_process(&me, 100_000, None).unwrap()).unwrap();
        assert_eq!(g.devices, vec![Gpu::Nvidia(3), Gpu::Render(1)]);
        // A cap below the device's descriptor: marked, the device not seen.
        let below = usize::try_from(gpu.as_raw_fd()).unwrap().min(3);
        let (_, g) = parse_result(&scan_process(&me, below, None).unwrap()).unwrap();
        assert!(g.truncated && !g.devices.contains(&Gpu::Nvidia(3)), "{g:?}");
        // Through a scanner: kept until the rescan interval has passed.
        let pid = i32::try_from(std::process::id()).unwrap();
        let listed = [(pid, start, false)];
        let keeps = GpuScan::new(GpuMode::Always, 100_000, Duration::from_secs(3600));
        let fresh = GpuScan::new(GpuMode::Always, 100_000, Duration::ZERO);
        let root = Path::new("/proc");
        let seen = |s: &GpuScan| s.start(root, &listed).unwrap().finish()[&pid].clone();
        let nvidia3 = |g: Option<Gpus>| g.is_some_and(|g| g.devices.contains(&Gpu::Nvidia(3)));
        assert!(nvidia3(seen(&keeps)) && nvidia3(seen(&fresh)));
        drop((gpu, ctl, render, kfd));
        let (_, g) = parse_result(&scan_process(&me, 100_000, Some(511)).unwrap()).unwrap();
        assert!(g.is_empty(), "{g:?}");
        assert!(nvidia3(seen(&keeps)), "kept");
        assert_eq!(seen(&fresh), Some(Gpus::default()), "rescanned");
        // Another start time is another process: scanned.
        let other = [(pid, start + 1, false)];
        assert_eq!(keeps.start(root, &other).unwrap().finish()[&pid], None);
    }

    /// A scan that blocks (here on its `stat`, a FIFO in a fake root; on
    /// a node, a stat answered by a hung file server) leaves its row
    /// unknown within the deadline, and the summary goes on.
    #[test]
    fn a_scan_that_blocks_leaves_its_row_unknown_in_time() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("devices"), "Character devices:\n195 nvidia\n").unwrap();
        std::fs::create_dir(d.path().join("7")).unwrap();
        let fifo = d.path().join("7/stat");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let scan = GpuScan::new(GpuMode::Always, 8, DEFAULT_RESCAN);
        let t = Instant::now();
        let got = scan.start(d.path(), &[(7, 1, false)]).unwrap().finish();
        assert_eq!(got.get(&7), Some(&None));
        // It did block (waited out the deadline), and no longer.
        let took = t.elapsed();
        assert!(
            took >= READ_DEADLINE && took < READ_DEADLINE * 5,
            "{took:?}"
        );
        // Let the stuck open finish.
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
    }

    #[test]
    fn modes_and_presence() {
        assert_eq!("auto".parse(), Ok(GpuMode::Auto));
        assert!("sometimes".parse::<GpuMode>().is_err());
        // A fake root whose /proc/devices has no GPU driver: in auto mode
        // nobody is scanned and everyone holds none; never: unknown.
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("devices"),
            "Character devices:\n  1 mem\n226 drm\n",
        )
        .unwrap();
        let procs = [(1, 5, false), (42, 77, false)];
        let auto = GpuScan::new(GpuMode::Auto, 8, DEFAULT_RESCAN);
        let got = auto.start(d.path(), &procs).unwrap().finish();
        assert_eq!(got.len(), 2);
        assert!(got.values().all(|g| g.as_ref().is_some_and(Gpus::is_empty)));
        let never = GpuScan::new(GpuMode::Never, 8, DEFAULT_RESCAN);
        assert!(never.start(d.path(), &procs).is_none());
        // With a driver: scanned; these pids have no directory, so unknown.
        std::fs::write(d.path().join("devices"), "Character devices:\n195 nvidia\n").unwrap();
        let auto = GpuScan::new(GpuMode::Auto, 8, DEFAULT_RESCAN);
        let got = auto.start(d.path(), &procs).unwrap().finish();
        assert_eq!(got.get(&42), Some(&None));
        // Kernel threads are not scanned.
        let got = auto.start(d.path(), &[(2, 1, true)]).unwrap().finish();
        assert_eq!(got.get(&2), Some(&Some(Gpus::default())));
    }
}

//! The node summary's reads that may sleep on another process, each with a
//! deadline, so one hung process marks its own row instead of stalling the
//! whole summary (the classic hung `ps`).
//!
//! [`Reads`] reads one file (`cmdline`) of every listed process in order on
//! a helper thread while the collector reads the fast files (or makes
//! another reading of each process directory that may sleep: the GPU
//! scan's stat of each descriptor, `super::gpus`); the collector takes the
//! results in the same order. A read not answered within
//! [`READ_DEADLINE`] of its start is given up: the row says its arguments
//! are unknown ([`crate::format::summary::ProcEntry::unknown_cmdline`]),
//! the helper is left to finish in the kernel, and a new helper goes on
//! with the next process. A helper is started from the collecting thread,
//! so it has that thread's credentials (the asking user's): every read is
//! still made as the asker.
//!
//! Bounds, so a node with many hung processes neither stalls summaries nor
//! gathers threads:
//! - a summary gives up at most [`LATE_PER_SUMMARY`] reads; past that it
//!   starts no helper, and the reads it has not made are unknown (so a
//!   summary waits at most `LATE_PER_SUMMARY x READ_DEADLINE` in all);
//! - a process whose given-up read is still stuck is not read again: later
//!   summaries mark it unknown at once (no deadline spent);
//! - at most [`MAX_STUCK`] given-up helpers may be stuck at once, node-wide.
//!   At the bound no helper is started: every row's arguments are unknown
//!   until a stuck read returns. Each stuck helper ends when its read does.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::sys::lock;

/// How long one read may take before its row is marked unknown. A read
/// that does not sleep on another process takes microseconds.
pub const READ_DEADLINE: Duration = Duration::from_millis(200);

/// Reads one summary gives up before it stops trying the rest.
pub const LATE_PER_SUMMARY: usize = 4;

/// Given-up helper threads that may be stuck in the kernel at once.
pub const MAX_STUCK: usize = 16;

/// Stack of a helper thread: it only opens and reads one file at a time.
const HELPER_STACK: usize = 64 << 10;

/// Given-up reads still stuck in the kernel, shared by every summary of a
/// process (one [`Registry::global`]); tests make their own.
#[derive(Debug)]
pub struct Registry {
    stuck: AtomicUsize,
    /// (proc root, pid) of the stuck reads, and how many are stuck on
    /// each (two summaries at once can both give one up).
    on: Mutex<HashMap<(PathBuf, i32), usize>>,
    max_stuck: usize,
}

impl Registry {
    /// A registry allowing `max_stuck` stuck helpers.
    pub fn new(max_stuck: usize) -> Arc<Self> {
        Arc::new(Self {
            stuck: AtomicUsize::new(0),
            on: Mutex::new(HashMap::new()),
            max_stuck,
        })
    }

    /// The one every summary of this process uses.
    pub fn global() -> Arc<Self> {
        static GLOBAL: LazyLock<Arc<Registry>> = LazyLock::new(|| Registry::new(MAX_STUCK));
        GLOBAL.clone()
    }

    /// Helper threads given up and still stuck in the kernel.
    pub fn stuck(&self) -> usize {
        self.stuck.load(Ordering::Acquire)
    }

    fn is_stuck_on(&self, root: &Path, pid: i32) -> bool {
        lock(&self.on).contains_key(&(root.to_path_buf(), pid))
    }

    /// Counts a given-up read of `key` as stuck.
    fn hold(&self, key: (PathBuf, i32)) {
        self.stuck.fetch_add(1, Ordering::AcqRel);
        *lock(&self.on).entry(key).or_insert(0) += 1;
    }

    /// A given-up read of `key` returned: one stuck fewer; the process is
    /// known stuck until the last of its reads returned.
    fn release(&self, key: &(PathBuf, i32)) {
        let mut on = lock(&self.on);
        if let Some(n) = on.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                on.remove(key);
            }
        }
        self.stuck.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What became of one process's read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file's bytes.
    Read(Vec<u8>),
    /// The kernel refused it or the process is gone (as when read inline).
    Failed,
    /// Not answered within its deadline, or not tried (see the module
    /// doc): unknown.
    Late,
}

/// A helper thread's progress, shared with the collector.
#[derive(Debug, Default)]
struct State {
    /// The item being read and since when.
    current: Option<(usize, Instant)>,
    /// Given up by the collector: counted in the registry until it exits.
    abandoned: Option<(PathBuf, i32)>,
    exited: bool,
}

struct Helper {
    rx: Receiver<(usize, Option<Vec<u8>>)>,
    state: Arc<Mutex<State>>,
}

/// What a helper does for one process: given its directory
/// (`root/<pid>`), the bytes to hand back, `None` when it could not.
pub type ReadOp = Arc<dyn Fn(&Path) -> Option<Vec<u8>> + Send + Sync>;

/// One summary's reads of `file` for a list of processes, in order.
pub struct Reads {
    root: PathBuf,
    file: &'static str,
    op: ReadOp,
    /// What a blocked read probably waits for, for the log.
    hint: &'static str,
    pids: Vec<i32>,
    /// Processes not to read: their read is still stuck from earlier.
    skip: Vec<bool>,
    next: usize,
    helper: Option<Helper>,
    late: usize,
    registry: Arc<Registry>,
    deadline: Duration,
    late_max: usize,
}

impl Reads {
    /// Starts reading `root/<pid>/file` for each of `pids`, in order, with
    /// the global registry and the default limits.
    pub fn start(root: &Path, file: &'static str, pids: Vec<i32>) -> Self {
        Self::start_with(
            root,
            file,
            pids,
            Registry::global(),
            READ_DEADLINE,
            LATE_PER_SUMMARY,
        )
    }

    /// [`Reads::start`] with a registry, a deadline and a number of reads
    /// given up per summary of one's own.
    pub fn start_with(
        root: &Path,
        file: &'static str,
        pids: Vec<i32>,
        registry: Arc<Registry>,
        deadline: Duration,
        late_max: usize,
    ) -> Self {
        let op: ReadOp = Arc::new(move |dir: &Path| read_capped(&dir.join(file)));
        let hint = "the process's memory map is locked?";
        Self::start_op(root, (file, hint), op, pids, registry, deadline, late_max)
    }

    /// Runs `op` on each process directory of `pids`, in order, as
    /// [`Reads::start_with`] reads a file; `what` names the reading and
    /// what a blocked one probably waits for, for the log.
    pub fn start_op(
        root: &Path,
        what: (&'static str, &'static str),
        op: ReadOp,
        pids: Vec<i32>,
        registry: Arc<Registry>,
        deadline: Duration,
        late_max: usize,
    ) -> Self {
        let skip = pids
            .iter()
            .map(|&p| registry.is_stuck_on(root, p))
            .collect();
        let mut r = Self {
            root: root.to_path_buf(),
            file: what.0,
            op,
            hint: what.1,
            pids,
            skip,
            next: 0,
            helper: None,
            late: 0,
            registry,
            deadline,
            late_max,
        };
        r.helper = r.spawn(0);
        r
    }

    /// A helper for the items from `from` on, unless a bound says no.
    fn spawn(&self, from: usize) -> Option<Helper> {
        if self.late >= self.late_max || self.registry.stuck() >= self.registry.max_stuck {
            return None;
        }
        let items: Vec<(usize, i32)> = (from..self.pids.len())
            .filter(|&i| !self.skip[i])
            .map(|i| (i, self.pids[i]))
            .collect();
        if items.is_empty() {
            return None;
        }
        let (tx, rx) = channel();
        let state = Arc::new(Mutex::new(State::default()));
        let (root, op, st, reg) = (
            self.root.clone(),
            self.op.clone(),
            state.clone(),
            self.registry.clone(),
        );
        let file = self.file;
        let spawned = std::thread::Builder::new()
            .name("gproc-slow-read".into())
            .stack_size(HELPER_STACK)
            .spawn(move || helper(&root, &*op, items, &tx, &st, &reg));
        match spawned {
            Ok(_) => Some(Helper { rx, state }),
            Err(e) => {
                tracing::warn!("cannot start a thread for the summary's {file} reads: {e}");
                None
            }
        }
    }

    /// The outcome of the next process's read, in the order of the pids
    /// given; [`Outcome::Late`] past the end.
    pub fn next_outcome(&mut self) -> Outcome {
        let i = self.next;
        self.next += 1;
        if i >= self.pids.len() || self.skip[i] {
            return Outcome::Late;
        }
        loop {
            let Some(h) = &self.helper else {
                return Outcome::Late;
            };
            let started = lock(&h.state).current;
            let until = match started {
                Some((k, t0)) if k == i => t0 + self.deadline,
                // Between two reads: this one starts now.
                _ => Instant::now() + self.deadline,
            };
            let wait = until.saturating_duration_since(Instant::now());
            match h.rx.recv_timeout(wait) {
                Ok((k, r)) if k == i => return r.map_or(Outcome::Failed, Outcome::Read),
                // An earlier item's answer, already given up: skip it.
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    // The helper ended without answering (it panicked).
                    self.helper = self.spawn(i + 1);
                    return Outcome::Failed;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if !self.give_up(i) {
                        continue; // it answered just now
                    }
                    self.late += 1;
                    self.helper = self.spawn(i + 1);
                    return Outcome::Late;
                }
            }
        }
    }

    /// Gives up the helper if it is still on item `i` past its deadline;
    /// false if it moved on (its answer is in the channel).
    fn give_up(&mut self, i: usize) -> bool {
        let Some(h) = &self.helper else {
            return true;
        };
        let mut st = lock(&h.state);
        match st.current {
            Some((k, t0)) if k == i && t0.elapsed() >= self.deadline && !st.exited => {
                let key = (self.root.clone(), self.pids[i]);
                tracing::warn!(
                    pid = self.pids[i],
                    file = self.file,
                    "read still blocked after {:?} ({}): \
                     its row is marked unknown and it is not read again until this read returns",
                    self.deadline,
                    self.hint
                );
                self.registry.hold(key.clone());
                st.abandoned = Some(key);
                true
            }
            Some((k, _)) if k == i && !st.exited => false,
            // Moved on or ended: its answer for `i` is in the channel.
            _ => false,
        }
    }
}

/// A helper thread: reads each item's file in order and sends the bytes
/// (`None` when unreadable); stops once given up, and leaves the registry
/// when it ends.
fn helper(
    root: &Path,
    op: &(dyn Fn(&Path) -> Option<Vec<u8>> + Send + Sync),
    items: Vec<(usize, i32)>,
    tx: &Sender<(usize, Option<Vec<u8>>)>,
    state: &Mutex<State>,
    registry: &Registry,
) {
    for (i, pid) in items {
        {
            let mut st = lock(state);
            if st.abandoned.is_some() {
                break;
            }
            st.current = Some((i, Instant::now()));
        }
        let r = op(&root.join(pid.to_string()));
        if tx.send((i, r)).is_err() {
            break;
        }
    }
    let mut st = lock(state);
    st.exited = true;
    if let Some(key) = st.abandoned.take() {
        registry.release(&key);
    }
}

fn read_capped(path: &Path) -> Option<Vec<u8>> {
    let f = std::fs::File::open(path).ok()?;
    let mut out = Vec::with_capacity(256);
    f.take(super::MAX_FILE_BYTES as u64)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    /// A fake proc root: pids with a `cmdline` file, and pids whose
    /// `cmdline` is a FIFO, whose open blocks until a writer comes (a read
    /// that sleeps on another process, as a locked memory map makes it).
    fn root(plain: &[i32], blocking: &[i32]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for p in plain {
            std::fs::create_dir(d.path().join(p.to_string())).unwrap();
            std::fs::write(d.path().join(format!("{p}/cmdline")), format!("arg{p}\0")).unwrap();
        }
        for p in blocking {
            std::fs::create_dir(d.path().join(p.to_string())).unwrap();
            let f = std::ffi::CString::new(
                d.path()
                    .join(format!("{p}/cmdline"))
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(f.as_ptr(), 0o600) }, 0);
        }
        d
    }

    /// Lets the reads blocked on `pid`'s FIFO finish (with no data).
    fn release(d: &Path, pid: i32) {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(d.join(format!("{pid}/cmdline")));
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    const D: Duration = Duration::from_millis(300);

    #[test]
    fn a_blocked_read_is_late_and_the_others_are_read() {
        let d = root(&[1, 2, 4, 5], &[3]);
        let reg = Registry::new(8);
        let t = Instant::now();
        let mut r = Reads::start_with(
            d.path(),
            "cmdline",
            vec![1, 2, 3, 4, 5, 6],
            reg.clone(),
            D,
            4,
        );
        let got: Vec<Outcome> = (0..6).map(|_| r.next_outcome()).collect();
        let took = t.elapsed();
        let read = |s: &str| Outcome::Read(s.as_bytes().to_vec());
        assert_eq!(
            got,
            vec![
                read("arg1\0"),
                read("arg2\0"),
                Outcome::Late,
                read("arg4\0"),
                read("arg5\0"),
                Outcome::Failed // no such process
            ]
        );
        assert!(took >= D && took < D * 10, "{took:?}");
        assert_eq!(reg.stuck(), 1, "the given-up helper is counted");
        // The next summary does not wait for it again.
        let t = Instant::now();
        let mut r = Reads::start_with(d.path(), "cmdline", vec![3, 4], reg.clone(), D, 4);
        assert_eq!(
            (r.next_outcome(), r.next_outcome()),
            (Outcome::Late, read("arg4\0"))
        );
        assert!(t.elapsed() < D, "known stuck: no deadline spent");
        // Once its read returns, the helper ends and leaves the registry.
        release(d.path(), 3);
        wait_until("the stuck helper ends", || reg.stuck() == 0);
        std::fs::remove_file(d.path().join("3/cmdline")).unwrap();
        std::fs::write(d.path().join("3/cmdline"), "arg3\0").unwrap();
        let mut r = Reads::start_with(d.path(), "cmdline", vec![3], reg.clone(), D, 4);
        assert_eq!(r.next_outcome(), read("arg3\0"));
    }

    /// Two summaries that both gave up the same process's read: it stays
    /// known stuck until both reads returned.
    #[test]
    fn a_process_stays_known_stuck_until_every_read_of_it_returned() {
        let d = root(&[], &[5]);
        let reg = Registry::new(8);
        let mut a = Reads::start_with(d.path(), "cmdline", vec![5], reg.clone(), D, 4);
        let mut b = Reads::start_with(d.path(), "cmdline", vec![5], reg.clone(), D, 4);
        assert_eq!(
            (a.next_outcome(), b.next_outcome()),
            (Outcome::Late, Outcome::Late)
        );
        assert_eq!(reg.stuck(), 2);
        // One FIFO writer releases one blocked open at a time, or both:
        // either way the key goes only with the last.
        release(d.path(), 5);
        wait_until("both end", || reg.stuck() == 0);
        assert!(!reg.is_stuck_on(d.path(), 5));
        // The counting itself: known stuck until the last one returned.
        let key = (d.path().to_path_buf(), 6);
        reg.hold(key.clone());
        reg.hold(key.clone());
        reg.release(&key);
        assert!(reg.is_stuck_on(d.path(), 6) && reg.stuck() == 1);
        reg.release(&key);
        assert!(!reg.is_stuck_on(d.path(), 6) && reg.stuck() == 0);
    }

    #[test]
    fn a_summary_gives_up_a_bounded_number_of_reads() {
        let d = root(&[9], &[1, 2, 3, 4]);
        let reg = Registry::new(8);
        let t = Instant::now();
        let mut r = Reads::start_with(d.path(), "cmdline", vec![1, 2, 3, 9], reg.clone(), D, 2);
        let got: Vec<Outcome> = (0..4).map(|_| r.next_outcome()).collect();
        // Two given up; past that nothing is tried: 3 and 9 are unknown.
        assert_eq!(got, vec![Outcome::Late; 4]);
        let took = t.elapsed();
        assert!(took >= D * 2 && took < D * 4, "{took:?}");
        assert_eq!(reg.stuck(), 2);
        for p in [1, 2] {
            release(d.path(), p);
        }
        wait_until("stuck helpers end", || reg.stuck() == 0);
        for p in [3, 4] {
            release(d.path(), p);
        }
    }

    #[test]
    fn at_the_bound_of_stuck_threads_nothing_is_tried() {
        let d = root(&[7], &[1, 2]);
        let reg = Registry::new(2);
        let mut r = Reads::start_with(d.path(), "cmdline", vec![1, 2], reg.clone(), D, 4);
        assert_eq!(
            (r.next_outcome(), r.next_outcome()),
            (Outcome::Late, Outcome::Late)
        );
        assert_eq!(reg.stuck(), 2);
        // At the bound: no thread, no wait, every row unknown.
        let t = Instant::now();
        let mut r = Reads::start_with(d.path(), "cmdline", vec![7], reg.clone(), D, 4);
        assert_eq!(r.next_outcome(), Outcome::Late);
        assert!(t.elapsed() < D);
        release(d.path(), 1);
        wait_until("one stuck helper ends", || reg.stuck() == 1);
        let mut r = Reads::start_with(d.path(), "cmdline", vec![7], reg.clone(), D, 4);
        assert_eq!(r.next_outcome(), Outcome::Read(b"arg7\0".to_vec()));
        release(d.path(), 2);
        wait_until("the other ends", || reg.stuck() == 0);
    }

    /// The helper has the collecting thread's credentials, so its reads
    /// are the asker's: a file only root may read is refused to a user.
    #[test]
    fn helpers_read_with_the_collecting_threads_credentials() {
        use std::os::unix::fs::PermissionsExt;
        if !(rustix::process::geteuid().is_root()
            && crate::sys::creds::check_capabilities().is_ok())
        {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let d = root(&[1], &[]);
        let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        mode(d.path(), 0o755).unwrap();
        mode(&d.path().join("1"), 0o755).unwrap();
        mode(&d.path().join("1/cmdline"), 0o600).unwrap();
        let read_as = |creds: Option<crate::sys::creds::Creds>| {
            let root = d.path().to_path_buf();
            std::thread::spawn(move || {
                let read = || {
                    let mut r =
                        Reads::start_with(&root, "cmdline", vec![1], Registry::new(1), D, 1);
                    r.next_outcome()
                };
                match creds {
                    Some(c) => crate::sys::creds::run_here(&c, read).unwrap(),
                    None => read(),
                }
            })
            .join()
            .unwrap()
        };
        assert_eq!(read_as(None), Outcome::Read(b"arg1\0".to_vec()));
        let user = crate::sys::creds::Creds {
            uid: 4242,
            gid: 4343,
            groups: vec![4343],
        };
        assert_eq!(read_as(Some(user)), Outcome::Failed);
    }
}

//! The node agent: a read-only [`Filesystem`] over a local Linux `/proc`
//! (or any directory given as the root), plus the synthesized node summary
//! file `/.gproc/ps` (format in [`crate::format::summary`], built by
//! [`collect`]) and the deltas since a summary it served
//! (`/.gproc/since/TOKEN`, [`crate::format::delta`]).
//!
//! Rules that make /proc work over 9P:
//! - a file is read whole when it is opened, and reads are served from that
//!   snapshot, so a client reading in chunks never sees a torn file;
//! - files report length 0 and `qid.version` 0, so Linux v9fs reads them
//!   directly even under `cache=loose`;
//! - `qid.path` is the inode number, which procfs keeps unique;
//! - symlinks (`exe`, `cwd`, `fd/N`, `self`) are links: walked to, never
//!   followed. Opening one is refused (ELOOP), because following `fd/N` as
//!   root would hand out any file a process has open;
//! - a process that vanishes mid-way gives ENOENT, not EIO or ESRCH;
//! - a fid walked into `/proc/<pid>` (or `<pid>/task/<tid>`) holds that
//!   directory open and everything below it is opened relative to it, so
//!   once the process exits the fid answers ENOENT, even if the pid is
//!   reused by another process.
//!
//! Control (`--control`, off by default): every process directory has a
//! `ctl` file; writing a [`crate::format::ctl`] command signals that
//! process as the writer ([`crate::sys::signal`]), through the directory
//! the fid holds, so the node's kernel decides who may signal whom and a
//! reused pid is never signalled. Every signal, sent or refused, is logged
//! under the `gproc::audit` target.
//!
//! Who reads: the node's kernel decides. A service identity (the agent's
//! own uid, the aggregator's service user) is served with the agent's own
//! credentials; everyone else's walk, getattr, open, listing, readlink and
//! summary are made by a thread switched to that user, never falling back
//! to the agent's own credentials.
//!
//! Where: a request that cannot sleep on another process ([`classify`]:
//! walks, getattrs, `stat`, `status`, node-wide files, most of a process
//! directory) runs on the async worker that received it, switched to the
//! asker for that one call ([`crate::sys::creds::run_here`]) when the
//! asker is not a service identity. A request that can (`cmdline`,
//! `environ`, `maps` and the others that take a process's memory map
//! lock, see [`classify::PROCESS_ENTRIES`]) and the summary run on a
//! thread of their own: tokio's blocking pool for a service identity (at
//! most 64 at once), [`crate::sys::creds::UserThreads`] for a user (a
//! bounded number per user); past the bounds they wait, so a node's hung
//! processes cannot gather threads without end. The summary gives each
//! such read of a process a deadline ([`deadline`]).

pub mod classify;
pub mod collect;
pub mod deadline;
pub mod gpus;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustix::fs::{Mode, OFlags};

use crate::format::ctl;
use crate::format::delta::{self, History, SINCE_DIR, Token};
use crate::format::summary::{self, GPROC_DIR, SUMMARY_FILE};
use crate::proto::{
    DirEntry, Metadata, Qid, dt, errno, qid_type_from_mode, qt, s_if, time_from_wire,
};
use crate::server::{
    AttachRequest, Contents, Filesystem, FsError, FsResult, Identity, OpenFlags, Principal, Share,
    Shares,
};
use crate::sys::creds::{CredError, Creds, UserThreads};
use classify::{Class, Op};

/// Largest snapshot taken of one file. /proc has files that claim to be
/// huge (`kcore`); reading stops here.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Files never read: reading `kmsg` blocks and consumes the kernel log.
const DENIED: &[&str] = &["kmsg"];

/// qid.path space of synthesized files: procfs inode numbers are 32-bit,
/// so the top bit never collides with them.
const SYNTH_QID: u64 = 1 << 63;

/// Which file a fid names.
#[derive(Debug, Clone)]
enum Place {
    /// A path under the root ("" is the root itself).
    Real(PathBuf),
    /// `/.gproc`.
    GprocDir,
    /// `/.gproc/ps`.
    Summary,
    /// `/.gproc/since`.
    SinceDir,
    /// `/.gproc/since/TOKEN`: the delta since that summary.
    Since(Token),
    /// `<pid>/ctl` (with control on): the process directory's path.
    Ctl(PathBuf),
}

/// The control file of a process directory.
pub const CTL_FILE: &str = "ctl";

/// A directory held open for a fid: `depth` path components below the
/// root. Operations below it open relative to it, so a fid walked into
/// `/proc/<pid>` keeps naming that process: once it exits, they fail with
/// ENOENT even if the pid is reused.
type Held = (usize, Arc<HeldDir>);

/// A descriptor the agent holds for fids, charged to the identity that
/// walked there (the root's is charged to no one): descriptors are the
/// node's, and one user's walked fids must not use up the ones every other
/// user's reads need (EMFILE, issue 12 finding 8).
#[derive(Debug)]
pub struct HeldDir {
    fd: OwnedFd,
    _share: Option<Share>,
}

impl std::ops::Deref for HeldDir {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl std::os::fd::AsFd for HeldDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Where a fid is: which file, its qid when walked to, and the process
/// directories held open on the way.
#[derive(Debug, Clone)]
pub struct AgentNode {
    place: Place,
    qid: Qid,
    held: Vec<Held>,
}

/// A `Filesystem` over a local proc tree.
///
/// Requests of a service identity (the agent's own uid and the users
/// given to [`ProcFs::with_service_uids`], i.e. the aggregator's service
/// user) are served with the agent's own credentials. Every other
/// identity's requests are made by a thread switched to that user (the
/// receiving worker for [`Class::Fast`] requests, [`UserThreads`] for
/// [`Class::Isolated`] ones), so the node's kernel decides what they may
/// read; an agent that cannot switch refuses them.
pub struct ProcFs {
    /// The tree served (normally `/proc`).
    root: PathBuf,
    /// The root, held open: every path is resolved below it.
    root_fd: Arc<HeldDir>,
    /// Descriptors held for walked process directories: a share per
    /// identity, a reserve for the service ([`held_dir_shares`]).
    held_dirs: Arc<Shares>,
    /// Per-user threads one identity may occupy at once, by uid: the rest
    /// stay free for other users however slow one user's reads are.
    user_slots: Mutex<HashMap<u32, Arc<tokio::sync::Semaphore>>>,
    /// Blocking-pool threads the service identities' isolated requests
    /// may occupy at once: each may be stuck in the kernel for as long as
    /// a process is, so they are bounded; past the bound they wait.
    service_slots: Arc<tokio::sync::Semaphore>,
    /// uid/gid -> name, for 9P2000 stat records (resolved once each).
    names: Mutex<HashMap<(bool, u32), Option<String>>>,
    /// Identities served with the agent's own credentials.
    service: Vec<u32>,
    /// Threads acting as users; `None` when this process cannot switch
    /// (not root, CAP_SETUID/CAP_SETGID missing).
    users: Option<UserThreads>,
    /// Whether process directories have a `ctl` file.
    control: bool,
    /// How the summary tells a process's batch job from its cgroups.
    job_rules: Arc<crate::format::jobs::JobRules>,
    /// How the summary finds the GPUs processes hold (and what it keeps).
    gpu_scan: Arc<gpus::GpuScan>,
    /// The summaries served lately, per reader credentials: a delta is
    /// made only between two summaries built with the same credentials.
    history: Arc<Mutex<History<Reader>>>,
}

/// The credentials a summary was built with: what a delta's base must
/// have been built with too.
type Reader = (u32, Option<u32>, Vec<u32>);

fn reader_of(who: &Identity) -> Reader {
    (who.uid, who.gid, who.gids.clone())
}

/// A new random epoch for this agent's tokens (so a restarted agent never
/// takes a token of its previous run).
fn new_epoch() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        return u64::from_le_bytes(b);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    crate::sys::rng::hash(&[nanos, u64::from(std::process::id())])
}

/// Threads acting as users, and how many requests may wait for them.
const USER_THREADS: usize = 8;
const USER_QUEUE: usize = 4096;
/// Of those threads, how many one user's requests may occupy at once.
const USER_THREADS_PER_USER: usize = USER_THREADS / 2;
/// Isolated requests of the service identities running at once (on the
/// blocking pool); more wait for one of them to finish.
const SERVICE_ISOLATED: usize = 64;

/// The shares of descriptors held for walked process directories: half of
/// this process's open-file limit (the rest is for sockets and the files
/// being read), an eighth of that per identity and an eighth reserved for
/// the service identities.
pub fn held_dir_shares() -> Arc<Shares> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    let total = (soft / 2).max(16);
    Shares::with_reserve(total, (total / 8).max(1))
}

/// The group of a user the node's user database does not know.
const OVERFLOW_GID: u32 = 65534;

/// File metadata, from one `fstatat` (the kernel's `struct stat`, whose
/// field types differ between architectures, as plain numbers).
struct St {
    mode: u32,
    ino: u64,
    uid: u32,
    gid: u32,
    nlink: u64,
    rdev: u64,
    size: u64,
    /// (seconds, nanoseconds) of access, modification and change.
    times: [(i64, i64); 3],
}

impl St {
    // The casts are no-ops on some architectures and widenings on others.
    #[allow(clippy::unnecessary_cast)]
    fn of(s: &rustix::fs::Stat) -> Self {
        St {
            mode: s.st_mode as u32,
            ino: s.st_ino as u64,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            nlink: s.st_nlink as u64,
            rdev: s.st_rdev as u64,
            size: s.st_size.max(0) as u64,
            times: [
                (s.st_atime as i64, s.st_atime_nsec as i64),
                (s.st_mtime as i64, s.st_mtime_nsec as i64),
                (s.st_ctime as i64, s.st_ctime_nsec as i64),
            ],
        }
    }
}

impl ProcFs {
    /// Serves the tree under `root`. The agent's own uid is the service
    /// identity; other identities are served as themselves when this
    /// process can act as other users, refused otherwise.
    ///
    /// # Errors
    /// `root` is not a readable directory.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        let md = fs::metadata(&root)?;
        if !md.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root_fd = rustix::fs::openat(
            rustix::fs::CWD,
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            root,
            root_fd: Arc::new(HeldDir {
                fd: root_fd,
                _share: None,
            }),
            held_dirs: held_dir_shares(),
            user_slots: Mutex::new(HashMap::new()),
            service_slots: Arc::new(tokio::sync::Semaphore::new(SERVICE_ISOLATED)),
            names: Mutex::new(HashMap::new()),
            service: vec![rustix::process::geteuid().as_raw()],
            users: UserThreads::new(USER_THREADS, USER_QUEUE).ok(),
            control: false,
            job_rules: Arc::default(),
            gpu_scan: Arc::default(),
            history: Arc::new(Mutex::new(History::new(new_epoch()))),
        })
    }

    /// Gives every process directory a `ctl` file that signals the process
    /// as the writer (see the module doc). Off unless asked for.
    pub fn with_control(mut self, on: bool) -> Self {
        self.control = on;
        self
    }

    /// Sets the cgroup patterns that name a process's job in the summary
    /// (default: the built-in ones of [`crate::format::jobs`]).
    pub fn with_job_rules(mut self, rules: crate::format::jobs::JobRules) -> Self {
        self.job_rules = Arc::new(rules);
        self
    }

    /// Sets how the summary scans processes' descriptors for GPUs
    /// (default: [`gpus::GpuMode::Auto`], [`gpus::DEFAULT_FD_CAP`],
    /// [`gpus::DEFAULT_RESCAN`]).
    pub fn with_gpu_scan(mut self, scan: gpus::GpuScan) -> Self {
        self.gpu_scan = Arc::new(scan);
        self
    }

    /// Adds service identities: their requests are served with the
    /// agent's own credentials (the aggregator's service user, which reads
    /// node summaries for everyone and filters them itself).
    pub fn with_service_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        for u in uids {
            if !self.service.contains(&u) {
                self.service.push(u);
            }
        }
        self
    }

    /// Replaces the shares of descriptors held for walked process
    /// directories (default: [`held_dir_shares`]).
    pub fn with_held_dir_shares(mut self, shares: Arc<Shares>) -> Self {
        self.held_dirs = shares;
        self
    }

    /// Whether requests of other users can be served (as those users).
    pub fn can_act_as_users(&self) -> bool {
        self.users.is_some()
    }

    /// Whether `who` is served with the agent's own credentials.
    pub fn is_service(&self, who: &Identity) -> bool {
        self.service.contains(&who.uid)
    }

    /// Runs `f` for `who` as `class` says: [`Class::Fast`] on this thread
    /// ([`Self::run_here`]), [`Class::Isolated`] on a thread of its own
    /// ([`Self::run_isolated`]). Never falls back to the agent's own
    /// credentials.
    async fn run<T: Send + 'static>(
        &self,
        who: &Identity,
        class: Class,
        f: impl FnOnce() -> FsResult<T> + Send + 'static,
    ) -> FsResult<T> {
        match class {
            Class::Fast => self.run_here(who, f),
            Class::Isolated => self.run_isolated(who, f).await,
        }
    }

    /// The credentials `who`'s requests are made with, or why this agent
    /// cannot act as them.
    fn creds_of(&self, who: &Identity) -> FsResult<(&UserThreads, Creds)> {
        let Some(users) = &self.users else {
            return Err(FsError::new(errno::EPERM).with(format!(
                "this agent runs as uid {} without CAP_SETUID/CAP_SETGID: it serves only {:?}, not uid {}",
                rustix::process::geteuid().as_raw(),
                self.service,
                who.uid
            )));
        };
        let creds = Creds {
            uid: who.uid,
            gid: who.gid.unwrap_or(OVERFLOW_GID),
            groups: who.gids.clone(),
        };
        Ok((users, creds))
    }

    /// Runs `f` on the calling thread: as the agent for a service
    /// identity, switched to `who` for the call otherwise. Only for work
    /// that cannot sleep on another process ([`Class::Fast`]).
    fn run_here<T>(&self, who: &Identity, f: impl FnOnce() -> FsResult<T>) -> FsResult<T> {
        if self.is_service(who) {
            return f();
        }
        let (_, creds) = self.creds_of(who)?;
        crate::sys::creds::run_here(&creds, f).map_err(|e| {
            FsError::new(errno::EPERM).with(format!("acting as uid {}: {e}", who.uid))
        })?
    }

    /// Runs `f` for `who` on a thread of its own: the blocking pool for a
    /// service identity, a thread switched to `who`'s credentials
    /// otherwise, of which one user may occupy a bounded number.
    async fn run_isolated<T: Send + 'static>(
        &self,
        who: &Identity,
        f: impl FnOnce() -> FsResult<T> + Send + 'static,
    ) -> FsResult<T> {
        if self.is_service(who) {
            // The permit goes with the work, as a user's slot does: a read
            // given up while it blocks still counts.
            let permit = self.service_slots.clone().acquire_owned().await;
            return blocking(move || {
                let _slot = permit;
                f()
            })
            .await;
        }
        let (users, creds) = self.creds_of(who)?;
        // One user's slow reads wait for that user's own slots, never for
        // the threads other users need.
        let slots = crate::sys::lock(&self.user_slots)
            .entry(who.uid)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(USER_THREADS_PER_USER)))
            .clone();
        // The slot goes with the work to the thread: a request given up
        // (flushed) while its read still blocks keeps its thread counted.
        let permit = slots.clone().acquire_owned().await;
        let r = users
            .run(&creds, move || {
                let _slot = permit;
                f()
            })
            .await;
        {
            let mut m = crate::sys::lock(&self.user_slots);
            // Only the map's and ours: nobody else uses it; forget it.
            if Arc::strong_count(&slots) == 2 {
                m.remove(&who.uid);
            }
        }
        r.map_err(|e| {
            let n = if matches!(e, CredError::Busy(_)) {
                errno::EAGAIN
            } else {
                errno::EPERM
            };
            FsError::new(n).with(format!("acting as uid {}: {e}", who.uid))
        })?
    }

    fn qid_of(md: &St) -> Qid {
        Qid {
            ty: qid_type_from_mode(md.mode),
            version: 0,
            path: md.ino,
        }
    }

    fn synth_qid(node: &Place) -> Qid {
        match node {
            Place::GprocDir => Qid {
                ty: qt::DIR,
                version: 0,
                path: SYNTH_QID | 1,
            },
            Place::SinceDir => Qid {
                ty: qt::DIR,
                version: 0,
                path: SYNTH_QID | 3,
            },
            // Distinct per token, apart from the other synthesized files.
            Place::Since(t) => Qid {
                ty: qt::FILE,
                version: 0,
                path: SYNTH_QID | 1 << 62 | t.generation >> 2,
            },
            _ => Qid {
                ty: qt::FILE,
                version: 0,
                path: SYNTH_QID | 2,
            },
        }
    }

    fn name_of(&self, group: bool, id: u32) -> Option<String> {
        crate::sys::lock(&self.names)
            .entry((group, id))
            .or_insert_with(|| crate::sys::users::id_name(group, id))
            .clone()
    }

    fn meta_from(&self, md: &St, name: String) -> Metadata {
        let size = if md.mode & s_if::FMT == s_if::REG {
            0
        } else {
            md.size
        };
        let t = |(sec, nsec): (i64, i64)| time_from_wire(sec.max(0) as u64, nsec.max(0) as u64);
        Metadata {
            qid: Self::qid_of(md),
            name: Some(name),
            mode: md.mode,
            uid: Some(md.uid),
            gid: Some(md.gid),
            user: self.name_of(false, md.uid),
            group: self.name_of(true, md.gid),
            nlink: Some(md.nlink),
            rdev: md.rdev,
            size,
            atime: t(md.times[0]),
            mtime: t(md.times[1]),
            ctime: Some(t(md.times[2])),
            link_target: None,
        }
    }

    fn synth_meta(&self, node: &Place) -> Metadata {
        let token;
        let (mode, name) = match node {
            Place::GprocDir => (s_if::DIR | 0o555, GPROC_DIR),
            Place::SinceDir => (s_if::DIR | 0o555, SINCE_DIR),
            Place::Since(t) => {
                token = t.to_string();
                (s_if::REG | 0o444, token.as_str())
            }
            _ => (s_if::REG | 0o444, SUMMARY_FILE),
        };
        Metadata::synthetic(
            Self::synth_qid(node),
            name,
            mode,
            std::time::SystemTime::now(),
        )
    }

    /// The process directory `p` (held by the fid) as `who` sees it now:
    /// ENOENT once it exited or when it is not theirs to see.
    async fn process_dir_stat(&self, who: &Identity, held: &[Held], p: &Path) -> FsResult<St> {
        let (base, rel) = self.base_of(held, p);
        let abs = self.root.join(p);
        self.run(who, Class::Fast, move || {
            lstat_at(&base, &rel).map_err(|e| vanished(e, &abs))
        })
        .await
    }

    /// `ctl`'s metadata: the process's owner may write it (so a shell's
    /// `>` through v9fs is allowed where the kernel would allow the signal).
    fn ctl_meta(&self, dir: &St) -> Metadata {
        let mut md = self.meta_from(
            &St {
                mode: s_if::REG | 0o200,
                nlink: 1,
                size: 0,
                ..*dir
            },
            CTL_FILE.into(),
        );
        md.qid = ctl_qid(dir);
        md
    }

    /// The summary built now as `who` (the collector sees what they may),
    /// as served: with a new generation, kept for `who`'s deltas.
    async fn served_summary(&self, who: &Identity) -> FsResult<Arc<[u8]>> {
        let root = self.root.clone();
        let rules = self.job_rules.clone();
        let gpus = self.gpu_scan.clone();
        let data = self
            .run(who, Class::Isolated, move || {
                collect::generate_with(&root, Some(&rules), Some(&gpus))
                    .map_err(|e| FsError::IO.with(format!("node summary: {e}")))
            })
            .await?;
        Ok(crate::sys::lock(&self.history).record(&reader_of(who), &data))
    }

    /// Whether `who` is this agent's own uid (its signals need no switch).
    fn is_own(&self, who: &Identity) -> bool {
        who.uid == rustix::process::geteuid().as_raw()
    }

    /// The directory `p` is resolved from (the deepest held one, else the
    /// root) and the path relative to it ("." for the directory itself).
    fn base_of(&self, held: &[Held], p: &Path) -> (Arc<HeldDir>, PathBuf) {
        let (depth, fd) = held
            .last()
            .map(|(d, fd)| (*d, fd.clone()))
            .unwrap_or((0, self.root_fd.clone()));
        let rel: PathBuf = p.components().skip(depth).collect();
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        (fd, rel)
    }
}

/// Whether `p` (relative to the root) names a process or thread
/// directory: `<pid>` or `<pid>/task/<tid>`.
fn is_process_dir(p: &Path) -> bool {
    let c: Vec<&OsStr> = p.iter().collect();
    let num = |s: &OsStr| !s.is_empty() && s.as_bytes().iter().all(u8::is_ascii_digit);
    match c.as_slice() {
        [pid] => num(pid),
        [pid, task, tid] => num(pid) && *task == "task" && num(tid),
        _ => false,
    }
}

/// `lstat` of `rel` below `base`, never following a final symlink: one
/// `fstatat` (walk and getattr are the hot path).
fn lstat_at(base: &OwnedFd, rel: &Path) -> std::io::Result<St> {
    let s = rustix::fs::statat(base, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(St::of(&s))
}

/// Maps errors of a vanished process to ENOENT: procfs answers ESRCH (or
/// ENOENT) when the process exited between walk and read.
fn vanished(e: std::io::Error, what: &Path) -> FsError {
    let mut fe = FsError::from(e);
    if fe.errno == errno::ESRCH {
        fe.errno = errno::ENOENT;
    }
    fe.with(what.display().to_string())
}

/// Reads a whole file below `base` without following a final symlink and
/// without blocking on FIFOs; stops at [`MAX_FILE_BYTES`].
fn read_whole(base: &OwnedFd, rel: &Path) -> std::io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(
        base,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let f = fs::File::from(fd);
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut out = Vec::with_capacity(4096);
    f.take(MAX_FILE_BYTES as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// Lists a directory below `base` as readdir entries: `.` and `..` first,
/// then the entries in the order the kernel gave them.
fn list_dir(
    base: &OwnedFd,
    rel: &Path,
    self_qid: Qid,
    extra: Option<DirEntry>,
) -> std::io::Result<Vec<DirEntry>> {
    use rustix::fs::FileType;
    let fd = rustix::fs::openat(
        base,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = vec![
        dirent(self_qid, dt::DIR, "."),
        dirent(self_qid, dt::DIR, ".."),
    ];
    out.extend(extra);
    for ent in rustix::fs::Dir::new(fd)? {
        let ent = match ent {
            Ok(e) => e,
            // A process directory whose process exited while listed.
            Err(e) if out.len() <= 2 => return Err(e.into()),
            Err(_) => break,
        };
        let Ok(name) = ent.file_name().to_str() else {
            continue; // not representable as a 9P string
        };
        if name == "." || name == ".." {
            continue;
        }
        let (ty, qty) = match ent.file_type() {
            FileType::Directory => (dt::DIR, qt::DIR),
            FileType::Symlink => (dt::LNK, qt::SYMLINK),
            FileType::RegularFile => (dt::REG, qt::FILE),
            _ => (dt::UNKNOWN, qt::FILE),
        };
        out.push(DirEntry {
            qid: Qid {
                ty: qty,
                version: 0,
                path: ent.ino(),
            },
            offset: 0,
            ty,
            name: name.to_string(),
        });
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> FsResult<T> + Send + 'static,
) -> FsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(FsError::IO.with(format!("worker failed: {e}"))))
}

impl Filesystem for ProcFs {
    type Node = AgentNode;

    async fn attach(&self, req: &AttachRequest) -> FsResult<(AgentNode, Qid)> {
        let a = req.aname.trim_end_matches('/');
        if !(a.is_empty() || a == "/proc" || Path::new(a) == self.root) {
            return Err(FsError::NOENT.with(format!(
                "no tree named {:?} (use \"\" or \"/proc\")",
                req.aname
            )));
        }
        let root = self.root_fd.clone();
        let md = self
            .run(&req.who, Class::Fast, move || {
                lstat_at(&root, Path::new(".")).map_err(FsError::from)
            })
            .await?;
        let qid = Self::qid_of(&md);
        let place = Place::Real(PathBuf::new());
        Ok((
            AgentNode {
                place,
                qid,
                held: Vec::new(),
            },
            qid,
        ))
    }

    async fn walk(
        &self,
        who: &Identity,
        dir: &AgentNode,
        name: &str,
    ) -> FsResult<(AgentNode, Qid)> {
        // `<pid>.<start>`: that pid only while it is the process started
        // then (format::summary::pinned_name), checked below once its
        // directory is held.
        let pinned = match &dir.place {
            Place::Real(p) if p.as_os_str().is_empty() => summary::parse_pinned_name(name),
            _ => None,
        };
        let pid_name;
        let name = match pinned {
            Some((pid, _)) => {
                pid_name = pid.to_string();
                pid_name.as_str()
            }
            None => name,
        };
        let place = match (&dir.place, name) {
            (Place::Real(p), "..") => {
                let mut p = p.clone();
                p.pop(); // at the root this stays the root
                Place::Real(p)
            }
            (Place::Real(p), GPROC_DIR) if p.as_os_str().is_empty() => Place::GprocDir,
            (Place::Real(p), CTL_FILE) if self.control && is_tgid_dir(p) => Place::Ctl(p.clone()),
            (Place::Real(_), n) if n.contains('/') => return Err(FsError::NOENT),
            (Place::Real(p), _) => Place::Real(p.join(name)),
            (Place::GprocDir, "..") => Place::Real(PathBuf::new()),
            (Place::GprocDir, SUMMARY_FILE) => Place::Summary,
            (Place::GprocDir, SINCE_DIR) => Place::SinceDir,
            (Place::SinceDir, "..") => Place::GprocDir,
            // Only a token of a summary served to these credentials.
            (Place::SinceDir, _) => match Token::parse(name.as_bytes()) {
                Some(t)
                    if crate::sys::lock(&self.history)
                        .get(&reader_of(who), t)
                        .is_some() =>
                {
                    Place::Since(t)
                }
                _ => return Err(FsError::NOENT),
            },
            _ => return Err(FsError::NOENT),
        };
        if let Place::Ctl(p) = &place {
            let held = dir.held.clone();
            let md = self.process_dir_stat(who, &held, p).await?;
            let qid = ctl_qid(&md);
            return Ok((AgentNode { place, qid, held }, qid));
        }
        let Place::Real(p) = &place else {
            let qid = Self::synth_qid(&place);
            let node = AgentNode {
                place,
                qid,
                held: Vec::new(),
            };
            return Ok((node, qid));
        };
        let depth = p.components().count();
        let mut held: Vec<Held> = dir
            .held
            .iter()
            .filter(|(d, _)| *d <= depth)
            .cloned()
            .collect();
        let (base, rel) = self.base_of(&held, p);
        let enter = is_process_dir(p) && held.last().is_none_or(|(d, _)| *d < depth);
        // Charged before the descriptor is opened, so a share is never
        // passed, not even for a moment.
        let share = if enter {
            let p = Principal::Uid(who.uid);
            let s = self
                .held_dirs
                .take(p, self.is_service(who), 1)
                .map_err(|r| {
                    FsError::new(errno::EMFILE).with(format!(
                        "{} on this node",
                        r.message(
                            &p,
                            "process directories held open for fids",
                            |n| n.to_string(),
                            "clunk fids"
                        )
                    ))
                })?;
            Some(s)
        } else {
            None
        };
        let abs = self.root.join(p);
        let class = classify::classify(p, Op::Lookup);
        let (md, fd) = self
            .run(who, class, move || {
                if enter {
                    let opened = rustix::fs::openat(
                        &*base,
                        &rel,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    );
                    match opened {
                        Ok(fd) => {
                            let md =
                                lstat_at(&fd, Path::new(".")).map_err(|e| vanished(e, &abs))?;
                            if let Some((_, start)) = pinned {
                                let stat = read_whole(&fd, Path::new("stat"))
                                    .map_err(|e| vanished(e, &abs))?;
                                if summary::stat_start_ticks(&stat) != Some(start) {
                                    // The pid now names another process.
                                    return Err(FsError::NOENT.with(format!(
                                        "{}: not the process started at {start}",
                                        abs.display()
                                    )));
                                }
                            }
                            return Ok((md, Some(fd)));
                        }
                        // Not a directory after all: a plain entry.
                        Err(e)
                            if e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::LOOP => {}
                        Err(e) => return Err(vanished(e.into(), &abs)),
                    }
                }
                Ok((lstat_at(&base, &rel).map_err(|e| vanished(e, &abs))?, None))
            })
            .await?;
        if let Some(fd) = fd {
            held.push((depth, Arc::new(HeldDir { fd, _share: share })));
        }
        let qid = Self::qid_of(&md);
        Ok((AgentNode { place, qid, held }, qid))
    }

    async fn getattr(&self, who: &Identity, node: &AgentNode) -> FsResult<Metadata> {
        match &node.place {
            Place::Real(p) => {
                let (base, rel) = self.base_of(&node.held, p);
                let abs = self.root.join(p);
                let class = classify::classify(p, Op::Lookup);
                let md = self
                    .run(who, class, move || {
                        lstat_at(&base, &rel).map_err(|e| vanished(e, &abs))
                    })
                    .await?;
                let name = p
                    .file_name()
                    .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
                    .unwrap_or_else(|| "/".into());
                Ok(self.meta_from(&md, name))
            }
            Place::Ctl(p) => {
                let md = self.process_dir_stat(who, &node.held, p).await?;
                Ok(self.ctl_meta(&md))
            }
            n => Ok(self.synth_meta(n)),
        }
    }

    async fn open(&self, who: &Identity, node: &AgentNode, flags: OpenFlags) -> FsResult<Contents> {
        if (flags.write || flags.truncate) && !matches!(node.place, Place::Ctl(_)) {
            return Err(FsError::ROFS);
        }
        match &node.place {
            Place::Summary => {
                let data = self.served_summary(who).await?;
                // Taken again by a read at 0, as `/proc`'s files are:
                // the summary says so (`fresh_at_zero`).
                Ok(Contents::Fresh(Bytes::from(data.to_vec())))
            }
            Place::Since(t) => {
                let base = crate::sys::lock(&self.history)
                    .get(&reader_of(who), *t)
                    .ok_or_else(|| FsError::NOENT.with(format!("no summary {t} here")))?;
                let new = self.served_summary(who).await?;
                let d = delta::diff(&base, &new)
                    .map_err(|e| FsError::IO.with(format!("node summary delta: {e}")))?;
                Ok(Contents::File(Bytes::from(d)))
            }
            Place::SinceDir => Ok(Contents::Dir(vec![
                dirent(node.qid, dt::DIR, "."),
                dirent(Self::synth_qid(&Place::GprocDir), dt::DIR, ".."),
            ])),
            Place::Ctl(p) => {
                if flags.read {
                    return Err(FsError::ACCES.with(
                        "ctl is write-only: write kill, term, stop, cont, signal N or signal NAME",
                    ));
                }
                self.process_dir_stat(who, &node.held, p).await?;
                Ok(Contents::File(Bytes::new()))
            }
            Place::GprocDir => Ok(Contents::Dir(vec![
                dirent(node.qid, dt::DIR, "."),
                dirent(node.qid, dt::DIR, ".."),
                dirent(Self::synth_qid(&Place::Summary), dt::REG, SUMMARY_FILE),
                dirent(Self::synth_qid(&Place::SinceDir), dt::DIR, SINCE_DIR),
            ])),
            Place::Real(p) => {
                if node.qid.is_symlink() {
                    return Err(FsError::new(errno::ELOOP)
                        .with("symlinks are read with readlink, not opened"));
                }
                if p.file_name()
                    .is_some_and(|n| DENIED.iter().any(|d| OsStr::new(d) == n))
                    && p.parent().is_some_and(|d| d.as_os_str().is_empty())
                {
                    return Err(FsError::ACCES.with(format!("{} is not served", p.display())));
                }
                let (base, rel) = self.base_of(&node.held, p);
                let abs = self.root.join(p);
                let qid = node.qid;
                let is_root = p.as_os_str().is_empty();
                let control = self.control && is_tgid_dir(p);
                let class = classify::classify(p, Op::Open);
                self.run(who, class, move || {
                    if qid.is_dir() {
                        let extra = if is_root {
                            Some(dirent(
                                ProcFs::synth_qid(&Place::GprocDir),
                                dt::DIR,
                                GPROC_DIR,
                            ))
                        } else if control {
                            lstat_at(&base, &rel)
                                .ok()
                                .map(|md| dirent(ctl_qid(&md), dt::REG, CTL_FILE))
                        } else {
                            None
                        };
                        list_dir(&base, &rel, qid, extra)
                            .map(Contents::Dir)
                            .map_err(|e| vanished(e, &abs))
                    } else {
                        read_whole(&base, &rel)
                            .map(|d| Contents::File(Bytes::from(d)))
                            .map_err(|e| vanished(e, &abs))
                    }
                })
                .await
            }
        }
    }

    async fn readlink(&self, who: &Identity, node: &AgentNode) -> FsResult<String> {
        let Place::Real(p) = &node.place else {
            return Err(FsError::INVAL);
        };
        let (base, rel) = self.base_of(&node.held, p);
        let abs = self.root.join(p);
        self.run(who, classify::classify(p, Op::Open), move || {
            let t = rustix::fs::readlinkat(&*base, &rel, Vec::new())
                .map_err(|e| vanished(e.into(), &abs))?;
            Ok(String::from_utf8_lossy(t.as_bytes()).into_owned())
        })
        .await
    }

    async fn truncate(&self, who: &Identity, node: &AgentNode) -> FsResult<()> {
        let Place::Ctl(p) = &node.place else {
            return Err(FsError::ROFS);
        };
        self.process_dir_stat(who, &node.held, p).await.map(|_| ())
    }

    async fn write(
        &self,
        who: &Identity,
        node: &AgentNode,
        _offset: u64,
        data: Bytes,
    ) -> FsResult<u32> {
        let Place::Ctl(p) = &node.place else {
            return Err(FsError::ROFS);
        };
        let command = match ctl::Command::parse(&data) {
            Ok(c) => c,
            Err(e) => {
                audit(who, p, None, "-", &format!("refused: {e}"));
                return Err(FsError::INVAL.with(e.to_string()));
            }
        };
        // Still there and still theirs to see, as they would see it.
        self.process_dir_stat(who, &node.held, p).await?;
        let Some((_, dir)) = node.held.iter().find(|(d, _)| *d == 1).cloned() else {
            return Err(FsError::NOENT.with(format!("{}: not a held process", p.display())));
        };
        let creds = (!self.is_own(who)).then(|| Creds {
            uid: who.uid,
            gid: who.gid.unwrap_or(OVERFLOW_GID),
            groups: who.gids.clone(),
        });
        let signal = command.signal;
        let (what, sent) = blocking(move || {
            // For the audit record, read with the agent's own credentials
            // and logged only: which process this is.
            let what = read_whole(&dir, Path::new("stat"))
                .ok()
                .and_then(|st| summary::stat_comm_and_start(&st));
            let sent = crate::sys::signal::send(dir.as_fd(), creds.as_ref(), signal);
            Ok((what, sent))
        })
        .await?;
        let name = command.signal_name();
        match sent {
            Ok(()) => {
                audit(who, p, what.as_ref(), &name, "sent");
                u32::try_from(data.len()).map_err(|_| FsError::INVAL)
            }
            Err(e) => {
                audit(who, p, what.as_ref(), &name, &format!("refused: {e}"));
                let mut fe =
                    FsError::new(e.errno()).with(format!("{name} to {}: {e}", p.display()));
                if fe.errno == errno::ESRCH {
                    fe.errno = errno::ENOENT; // it exited: gone, as everywhere
                }
                Err(fe)
            }
        }
    }
}

/// One audit record of a signal, sent or refused: who (uid, name, how
/// established), what, which process (pid, start time in ticks, command),
/// the result.
fn audit(who: &Identity, p: &Path, what: Option<&(String, u64)>, signal: &str, result: &str) {
    let (comm, start) = what.map_or(("?", 0), |(c, s)| (c.as_str(), *s));
    tracing::info!(
        target: "gproc::audit",
        uid = who.uid,
        user = who.name.as_deref().unwrap_or("?"),
        proof = ?who.proof,
        pid = %p.display(),
        start,
        comm,
        signal,
        result,
        "signal"
    );
}

/// Whether `p` (relative to the root) names a process (not a thread)
/// directory: the ones `pidfd_send_signal` accepts.
fn is_tgid_dir(p: &Path) -> bool {
    let mut c = p.iter();
    matches!((c.next(), c.next()), (Some(pid), None)
        if !pid.is_empty() && pid.as_bytes().iter().all(u8::is_ascii_digit))
}

/// The qid of a process's `ctl`: in the synthesized space, by the process
/// directory's inode (32-bit in procfs), so unique per process.
fn ctl_qid(dir: &St) -> Qid {
    Qid {
        ty: qt::FILE,
        version: 0,
        path: SYNTH_QID | (1 << 62) | dir.ino,
    }
}

fn dirent(qid: Qid, ty: u8, name: &str) -> DirEntry {
    DirEntry {
        qid,
        offset: 0,
        ty,
        name: name.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Proof;

    fn root() -> Identity {
        Identity::lookup(0, Proof::Peer)
    }

    fn attach_req() -> AttachRequest {
        AttachRequest {
            aname: "/proc".into(),
            who: root(),
        }
    }

    async fn walk_path(fs: &ProcFs, path: &str) -> FsResult<AgentNode> {
        let (mut f, _) = fs.attach(&attach_req()).await?;
        for n in path.split('/').filter(|s| !s.is_empty()) {
            f = fs.walk(&root(), &f, n).await?.0;
        }
        Ok(f)
    }

    async fn open(fs: &ProcFs, f: &AgentNode) -> FsResult<Contents> {
        fs.open(&root(), f, OpenFlags::READ).await
    }

    async fn read_all(fs: &ProcFs, path: &str) -> FsResult<Vec<u8>> {
        let f = walk_path(fs, path).await?;
        match open(fs, &f).await? {
            Contents::File(b) | Contents::Fresh(b) => Ok(b.to_vec()),
            c => panic!("{path}: not a file: {c:?}"),
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("loadavg"), "0.1 0.2 0.3 1/2 3\n").unwrap();
        fs::create_dir(d.path().join("42")).unwrap();
        fs::write(d.path().join("42/status"), "Name:\tx\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("42/exe")).unwrap();
        std::os::unix::fs::symlink("42", d.path().join("self")).unwrap();
        fs::write(d.path().join("kmsg"), "secret").unwrap();
        d
    }

    #[tokio::test]
    async fn reads_whole_files_in_chunks_and_reports_length_zero() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        assert_eq!(read_all(&fs, "42/status").await.unwrap(), b"Name:\tx\n");
        let m = fs
            .getattr(&root(), &walk_path(&fs, "loadavg").await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            (m.size, m.qid.version, m.mode & s_if::FMT),
            (0, 0, s_if::REG)
        );
    }

    /// A process directory walked as `<pid>.<start>` is that process only:
    /// another start time (the pid reused) is ENOENT, and the name is
    /// resolved, never listed.
    #[tokio::test]
    async fn a_pinned_walk_reaches_only_the_process_started_then() {
        let fs = ProcFs::new("/proc").unwrap();
        let pid = std::process::id() as i32;
        let stat = fs::read(format!("/proc/{pid}/stat")).unwrap();
        let start = summary::stat_start_ticks(&stat).unwrap();
        let mine = read_all(&fs, &format!("{}/comm", summary::pinned_name(pid, start)))
            .await
            .unwrap();
        assert_eq!(mine, fs::read(format!("/proc/{pid}/comm")).unwrap());
        let other = summary::pinned_name(pid, start + 1);
        let e = walk_path(&fs, &other).await.unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
        // Only at the root: below it the name means nothing special.
        let e = walk_path(
            &fs,
            &format!("{pid}/task/{}", summary::pinned_name(pid, start)),
        )
        .await
        .unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
        let (root_fid, _) = fs.attach(&attach_req()).await.unwrap();
        let Contents::Dir(ents) = fs.open(&root(), &root_fid, OpenFlags::READ).await.unwrap()
        else {
            panic!("root is a directory")
        };
        assert!(
            !ents
                .iter()
                .any(|e| e.name.contains('.') && e.name.starts_with(char::is_numeric))
        );
    }

    #[tokio::test]
    async fn snapshot_is_taken_at_open() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let f = walk_path(&fs, "loadavg").await.unwrap();
        let o = open(&fs, &f).await.unwrap();
        fs::write(d.path().join("loadavg"), "changed").unwrap();
        assert!(matches!(o, Contents::File(b) if &b[..] == b"0.1 0.2 0.3 1/2 3\n"));
    }

    #[tokio::test]
    async fn symlinks_are_links_never_followed() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let exe = walk_path(&fs, "42/exe").await.unwrap();
        assert!(exe.qid.is_symlink());
        assert_eq!(fs.readlink(&root(), &exe).await.unwrap(), "/etc/hostname");
        assert_eq!(open(&fs, &exe).await.unwrap_err().errno, errno::ELOOP);
        let m = fs.getattr(&root(), &exe).await.unwrap();
        assert_eq!(m.mode & s_if::FMT, s_if::LNK);
    }

    #[tokio::test]
    async fn read_only_and_denied_files() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let f = walk_path(&fs, "loadavg").await.unwrap();
        let w = OpenFlags {
            read: false,
            write: true,
            truncate: false,
        };
        assert_eq!(
            fs.open(&root(), &f, w).await.unwrap_err().errno,
            errno::EROFS
        );
        let k = walk_path(&fs, "kmsg").await.unwrap();
        assert_eq!(open(&fs, &k).await.unwrap_err().errno, errno::EACCES);
    }

    #[tokio::test]
    async fn attach_names_and_dotdot_at_root() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        for a in ["", "/proc", "/proc/"] {
            let req = AttachRequest {
                aname: a.into(),
                ..attach_req()
            };
            assert!(fs.attach(&req).await.is_ok(), "{a:?}");
        }
        let req = AttachRequest {
            aname: "/etc".into(),
            ..attach_req()
        };
        assert_eq!(fs.attach(&req).await.unwrap_err().errno, errno::ENOENT);
        let (top, rq) = fs.attach(&attach_req()).await.unwrap();
        let (up, uq) = fs.walk(&root(), &top, "..").await.unwrap();
        assert_eq!(uq, rq);
        assert_eq!(
            fs.walk(&root(), &up, "loadavg").await.unwrap().1,
            walk_path(&fs, "loadavg").await.unwrap().qid
        );
    }

    #[tokio::test]
    async fn root_listing_has_the_summary_dir_and_unique_qids() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let top = walk_path(&fs, "").await.unwrap();
        let Contents::Dir(all) = open(&fs, &top).await.unwrap() else {
            panic!("the root is a directory")
        };
        let names: Vec<_> = all.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(&names[..3], [".", "..", GPROC_DIR]);
        assert!(names.contains(&"42") && names.contains(&"self") && names.contains(&"loadavg"));
        let self_ent = all.iter().find(|e| e.name == "self").unwrap();
        assert_eq!(self_ent.ty, 10, "DT_LNK");
        let qids: std::collections::HashSet<_> = all[2..].iter().map(|e| e.qid.path).collect();
        assert_eq!(qids.len(), all.len() - 2, "qid.path unique per entry");
    }

    #[tokio::test]
    async fn summary_file_is_served_from_the_real_proc() {
        let fs = ProcFs::new("/proc").unwrap();
        let data = read_all(&fs, ".gproc/ps").await.unwrap();
        let s = crate::format::summary::parse(&data).unwrap();
        assert!(s.procs.iter().any(|p| p.pid == std::process::id() as i32));
    }

    #[tokio::test]
    async fn a_process_that_exits_gives_enoent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fs = ProcFs::new("/proc").unwrap();
        let path = format!("{}/status", child.id());
        let f = walk_path(&fs, &path).await.unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(open(&fs, &f).await.unwrap_err().errno, errno::ENOENT);
        assert_eq!(
            walk_path(&fs, &path).await.unwrap_err().errno,
            errno::ENOENT
        );
    }

    fn user(uid: u32) -> Identity {
        Identity {
            uid,
            name: None,
            gid: Some(uid),
            gids: vec![uid],
            proof: Proof::NamedByService { service: 0 },
        }
    }

    fn can_switch() -> bool {
        rustix::process::geteuid().is_root() && crate::sys::creds::check_capabilities().is_ok()
    }

    async fn walk_as(fs: &ProcFs, who: &Identity, path: &str) -> FsResult<AgentNode> {
        let req = AttachRequest {
            aname: "/proc".into(),
            who: who.clone(),
        };
        let (mut f, _) = fs.attach(&req).await?;
        for n in path.split('/').filter(|s| !s.is_empty()) {
            f = fs.walk(who, &f, n).await?.0;
        }
        Ok(f)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_users_read_as_themselves() {
        if !can_switch() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fs = ProcFs::new("/proc").unwrap();
        assert!(fs.can_act_as_users());
        let u = user(4242);
        let path = format!("{}/environ", child.id());
        let f = walk_as(&fs, &u, &path).await.unwrap();
        // The kernel refuses a root process's environ to the user...
        let e = fs.open(&u, &f, OpenFlags::READ).await.unwrap_err();
        assert_eq!(e.errno, errno::EACCES, "{e:?}");
        // ...and the same fid read by the service identity is allowed.
        assert!(fs.open(&root(), &f, OpenFlags::READ).await.is_ok());
        // status is world-readable; readlink of exe is ptrace-guarded.
        let st = walk_as(&fs, &u, &format!("{}/status", child.id()))
            .await
            .unwrap();
        assert!(fs.open(&u, &st, OpenFlags::READ).await.is_ok());
        let exe = walk_as(&fs, &u, &format!("{}/exe", child.id()))
            .await
            .unwrap();
        assert_eq!(
            fs.readlink(&u, &exe).await.unwrap_err().errno,
            errno::EACCES
        );
        // timer_list is 0400 root.
        if let Ok(t) = walk_as(&fs, &u, "timer_list").await {
            assert_eq!(
                fs.open(&u, &t, OpenFlags::READ).await.unwrap_err().errno,
                errno::EACCES
            );
        }
        // A tree the user may not enter is refused at walk.
        let d = tree();
        let tfs = ProcFs::new(d.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("42"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            walk_as(&tfs, &u, "42/status").await.unwrap_err().errno,
            errno::EACCES
        );
        assert!(walk_as(&tfs, &root(), "42/status").await.is_ok());
        // A service uid other than the agent's own reads as the agent.
        let tfs = tfs.with_service_uids([4242]);
        assert!(walk_as(&tfs, &u, "42/status").await.is_ok());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Deltas are per reader credentials. A user handed the token of
    /// root's summary gets ENOENT, not a delta against root's view (whose
    /// `x PID` lines would name processes root saw and the user may not,
    /// e.g. under `hidepid`), and root cannot use a user's token either;
    /// each one's own works, and a restarted agent knows neither.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delta_is_only_for_the_credentials_that_read_its_base() {
        use crate::format::delta;
        let fs = ProcFs::new("/proc").unwrap();
        let whole = read_all(&fs, ".gproc/ps").await.unwrap();
        let t = delta::generation(&whole).unwrap();
        let d = read_all(&fs, &format!(".gproc/since/{t}")).await.unwrap();
        let (t2, s) = delta::apply(&summary::parse(&whole).unwrap(), t, &d).unwrap();
        assert!(s.procs.iter().any(|p| p.pid == std::process::id() as i32));
        // A restarted agent: another epoch.
        let again = ProcFs::new("/proc").unwrap();
        let e = walk_path(&again, &format!(".gproc/since/{t2}"))
            .await
            .unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
        if !can_switch() {
            eprintln!("SKIP (the other users): needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let u = user(4242);
        let e = walk_as(&fs, &u, &format!(".gproc/since/{t2}"))
            .await
            .unwrap_err();
        assert_eq!(e.errno, errno::ENOENT, "root's token is not the user's");
        let f = walk_as(&fs, &u, ".gproc/ps").await.unwrap();
        let Contents::Fresh(mine) = fs.open(&u, &f, OpenFlags::READ).await.unwrap() else {
            panic!("a file");
        };
        let tu = delta::generation(&mine).unwrap();
        let e = walk_path(&fs, &format!(".gproc/since/{tu}"))
            .await
            .unwrap_err();
        assert_eq!(e.errno, errno::ENOENT, "the user's token is not root's");
        let f = walk_as(&fs, &u, &format!(".gproc/since/{tu}"))
            .await
            .unwrap();
        let Contents::File(d) = fs.open(&u, &f, OpenFlags::READ).await.unwrap() else {
            panic!("a file");
        };
        assert!(delta::apply(&summary::parse(&mine).unwrap(), tu, &d).is_ok());
        // Root's token still works for root.
        assert!(read_all(&fs, &format!(".gproc/since/{t2}")).await.is_ok());
    }

    /// The service's isolated requests that never finish occupy at most
    /// SERVICE_ISOLATED threads; more wait, and fast requests are served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_services_blocked_reads_are_bounded() {
        use std::sync::Condvar;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let d = tree();
        let fs = Arc::new(ProcFs::new(d.path()).unwrap());
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let mut blocked = Vec::new();
        for _ in 0..SERVICE_ISOLATED + 3 {
            let (fs, gate, running) = (fs.clone(), gate.clone(), running.clone());
            blocked.push(tokio::spawn(async move {
                fs.run(&root(), Class::Isolated, move || {
                    running.fetch_add(1, Ordering::SeqCst);
                    let (open, cv) = &*gate;
                    let mut g = crate::sys::lock(open);
                    while !*g {
                        g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    Ok(())
                })
                .await
            }));
        }
        for _ in 0..400 {
            if running.load(Ordering::SeqCst) >= SERVICE_ISOLATED {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let f = walk_path(&fs, "42/status").await.unwrap();
        assert!(open(&fs, &f).await.is_ok(), "a fast read is served");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(running.load(Ordering::SeqCst), SERVICE_ISOLATED);
        *crate::sys::lock(&gate.0) = true;
        gate.1.notify_all();
        for t in blocked {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(running.load(Ordering::SeqCst), SERVICE_ISOLATED + 3);
    }

    /// Fast requests run on the calling thread (switched for a user and
    /// back after), isolated ones on a thread of their own; both as the
    /// asker.
    #[tokio::test]
    async fn fast_requests_stay_on_the_calling_thread_as_the_asker() {
        if !can_switch() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let here = std::thread::current().id();
        let probe = || {
            let s = fs::read_to_string("/proc/thread-self/status").unwrap();
            let fsuid = s
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string));
            Ok((std::thread::current().id(), fsuid.unwrap_or_default()))
        };
        for (who, uid) in [(user(4242), "4242"), (root(), "0")] {
            let (t, u) = fs.run(&who, Class::Fast, probe).await.unwrap();
            assert_eq!((t, u.as_str()), (here, uid));
            let (t, u) = fs.run(&who, Class::Isolated, probe).await.unwrap();
            assert!(t != here && u == uid, "{u}");
        }
        let (_, me) = probe().unwrap();
        assert_eq!(me, "0", "the calling thread is itself again");
        // Through the file system: a user's fast reads are the kernel's
        // to refuse (exe's link needs ptrace access to a root process).
        let exe = walk_as(&ProcFs::new("/proc").unwrap(), &user(4242), "1/exe")
            .await
            .unwrap();
        let e = ProcFs::new("/proc")
            .unwrap()
            .readlink(&user(4242), &exe)
            .await
            .unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
    }

    #[tokio::test]
    async fn an_agent_that_cannot_switch_serves_only_itself() {
        let d = tree();
        let mut fs = ProcFs::new(d.path()).unwrap();
        fs.users = None;
        let e = walk_as(&fs, &user(4242), "loadavg").await.unwrap_err();
        assert_eq!(e.errno, errno::EPERM);
        assert!(format!("{e:?}").contains("CAP_SETUID"), "{e:?}");
        let me = Identity::lookup(rustix::process::geteuid().as_raw(), Proof::Peer);
        assert!(walk_as(&fs, &me, "loadavg").await.is_ok());
    }

    #[tokio::test]
    async fn a_walked_process_dir_is_held_not_looked_up_again() {
        // The same condition as a reused pid: the directory a fid walked
        // into goes away and another appears under the same name.
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let f = walk_path(&fs, "42/status").await.unwrap();
        let dirf = walk_path(&fs, "42").await.unwrap();
        let exe = walk_path(&fs, "42/exe").await.unwrap();
        fs::remove_dir_all(d.path().join("42")).unwrap();
        fs::create_dir(d.path().join("42")).unwrap();
        fs::write(d.path().join("42/status"), "Name:\tnew owner\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("42/exe")).unwrap();
        assert_eq!(open(&fs, &f).await.unwrap_err().errno, errno::ENOENT);
        assert_eq!(
            fs.getattr(&root(), &f).await.unwrap_err().errno,
            errno::ENOENT
        );
        assert_eq!(
            fs.readlink(&root(), &exe).await.unwrap_err().errno,
            errno::ENOENT
        );
        assert_eq!(
            fs.walk(&root(), &dirf, "status").await.unwrap_err().errno,
            errno::ENOENT
        );
        // A removed directory lists empty here (procfs answers ENOENT),
        // never the new one's entries.
        assert!(matches!(open(&fs, &dirf).await, Ok(Contents::Dir(v)) if v.len() == 2));
        // Walking again finds the new one; `..` leaves the held directory.
        assert_eq!(
            read_all(&fs, "42/status").await.unwrap(),
            b"Name:\tnew owner\n"
        );
        let up = fs.walk(&root(), &f, "..").await.unwrap().0;
        let up = fs.walk(&root(), &up, "..").await.unwrap().0;
        let l = fs.walk(&root(), &up, "loadavg").await.unwrap().0;
        assert!(open(&fs, &l).await.is_ok());
    }

    #[tokio::test]
    async fn a_fid_of_a_dead_process_stays_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fs = ProcFs::new("/proc").unwrap();
        let pid = child.id();
        let env = walk_path(&fs, &format!("{pid}/environ")).await.unwrap();
        let dir = walk_path(&fs, &format!("{pid}")).await.unwrap();
        let task = walk_path(&fs, &format!("{pid}/task/{pid}/status"))
            .await
            .unwrap();
        assert!(open(&fs, &env).await.is_ok());
        child.kill().unwrap();
        child.wait().unwrap();
        for f in [&env, &task] {
            assert_eq!(open(&fs, f).await.unwrap_err().errno, errno::ENOENT);
        }
        assert_eq!(
            fs.walk(&root(), &dir, "cmdline").await.unwrap_err().errno,
            errno::ENOENT
        );
        assert_eq!(open(&fs, &dir).await.unwrap_err().errno, errno::ENOENT);
    }

    /// Finding 8 (EMFILE): one user's walked process directories are
    /// bounded by their share of the descriptors; another user's walks,
    /// and the service's, still get theirs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_users_walked_process_dirs_leave_descriptors_to_others() {
        if !can_switch() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let d = tree();
        let fs = ProcFs::new(d.path())
            .unwrap()
            .with_held_dir_shares(Shares::new(6, 2, 2));
        let (greedy, other) = (user(60001), user(60002));
        let a = walk_as(&fs, &greedy, "42").await.unwrap();
        let b = walk_as(&fs, &greedy, "42/status").await.unwrap();
        let e = walk_as(&fs, &greedy, "42").await.unwrap_err();
        assert_eq!(e.errno, errno::EMFILE);
        assert!(
            e.context
                .unwrap()
                .starts_with("uid 60001: 2 of process directories"),
            "a clear error"
        );
        // Walking on inside a held directory holds nothing more.
        assert!(fs.walk(&greedy, &a, "status").await.is_ok());
        let o = walk_as(&fs, &other, "42").await.unwrap();
        assert!(
            open(&fs, &fs.walk(&other, &o, "status").await.unwrap().0)
                .await
                .is_ok()
        );
        let _o2 = walk_as(&fs, &other, "42").await.unwrap();
        // Users together stop at 4 of 6; the service has the rest.
        assert_eq!(
            walk_as(&fs, &user(60003), "42/status")
                .await
                .unwrap_err()
                .errno,
            errno::EMFILE
        );
        let _s1 = walk_as(&fs, &root(), "42").await.unwrap();
        let _s2 = walk_as(&fs, &root(), "42").await.unwrap();
        // Clunked fids give their descriptors back.
        drop((a, b));
        assert!(walk_as(&fs, &greedy, "42").await.is_ok());
    }

    /// Finding 8 (slow reads): one user's reads that never finish occupy
    /// at most their share of the per-user threads; another user's read
    /// is served by the threads left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_users_slow_reads_leave_threads_to_others() {
        use std::sync::Condvar;
        use std::sync::atomic::{AtomicUsize, Ordering};
        if !can_switch() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let d = tree();
        let fs = Arc::new(ProcFs::new(d.path()).unwrap());
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let running = Arc::new(AtomicUsize::new(0));
        let mut slow = Vec::new();
        for _ in 0..2 * USER_THREADS {
            let (fs, gate, running) = (fs.clone(), gate.clone(), running.clone());
            slow.push(tokio::spawn(async move {
                fs.run(&user(60001), Class::Isolated, move || {
                    running.fetch_add(1, Ordering::SeqCst);
                    let (open, cv) = &*gate;
                    let mut g = crate::sys::lock(open);
                    while !*g {
                        g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    Ok(())
                })
                .await
            }));
        }
        for _ in 0..400 {
            if running.load(Ordering::SeqCst) >= USER_THREADS_PER_USER {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let them = user(60002);
        let other = fs.run(&them, Class::Isolated, || {
            Ok(rustix::process::getpid().as_raw_nonzero())
        });
        let r = tokio::time::timeout(std::time::Duration::from_secs(20), other).await;
        assert!(
            r.expect("another user's read waits for the slow ones")
                .is_ok()
        );
        assert_eq!(running.load(Ordering::SeqCst), USER_THREADS_PER_USER);
        *crate::sys::lock(&gate.0) = true;
        gate.1.notify_all();
        for t in slow {
            assert!(t.await.unwrap().is_ok());
        }
    }
}

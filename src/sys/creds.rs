//! Acting as another user, one thread at a time, so the node's kernel
//! decides what that user may read.
//!
//! A root daemon that reads `/proc` for a user must not decide access
//! itself: file modes, `ptrace_may_access`, `hidepid`, `kptr_restrict` and
//! pagemap's frame-number hiding are the kernel's rules, several applied
//! from the opener's credentials at open time. So the read is made by a
//! thread whose credentials *are* that user's: effective uid and gid (the
//! kernel checks `/proc/sys` files against the *effective* ids, not the
//! file-system ones: with fsuid alone a user read 0600 sysctls such as
//! `tcp_fastopen_key`), fsuid/fsgid, supplementary groups, and an empty
//! effective capability set (fsuid alone leaves CAP_SYS_PTRACE, CAP_SYSLOG
//! and CAP_SYS_ADMIN in effect). The real and saved ids stay the agent's,
//! which is what lets the thread switch back.
//!
//! Credentials are per thread in the kernel, but glibc's `setfsuid`,
//! `setgroups` and friends broadcast to every thread of the process, so
//! the raw system calls are used, on dedicated threads (never tokio's
//! shared blocking pool). `setfsuid` reports no errors: every switch is
//! read back and a request is refused if it did not take; a thread that
//! cannot restore itself ends instead of serving again, and replacements
//! are spawned from a caller's thread, whose credentials are the
//! process's own (a new thread inherits its creator's).
//!
//! Work that cannot sleep on another process (most `/proc` reads) need not
//! leave the calling thread at all: [`run_here`] switches the calling
//! thread itself for the length of one synchronous call and switches it
//! back before returning, aborting the process if it cannot (a thread that
//! goes on serving must never keep a user's credentials).
//!
//! See `shared/notes/per-user-credentials.md` in the design notes, and
//! credentials(7), capabilities(7), setfsuid(2), ptrace(2).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use rustix::thread::{CapabilitySet, CapabilitySets};
use thiserror::Error;

/// Whose credentials a request runs with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Creds {
    /// The user (fsuid).
    pub uid: u32,
    /// The primary group (fsgid).
    pub gid: u32,
    /// Supplementary groups, as the node's user database has them.
    pub groups: Vec<u32>,
}

impl Creds {
    /// The credentials a login of `uid` on this machine would have: the
    /// primary group and the supplementary groups from the user database.
    /// `None` when the user database does not know the uid.
    pub fn of_user(uid: u32) -> Option<Self> {
        let (name, gid) = crate::sys::users::passwd(uid)?;
        let groups = crate::sys::users::group_list(&name, gid);
        Some(Self { uid, gid, groups })
    }
}

/// Why acting as a user failed. Every variant refuses the request: the
/// caller must never fall back to its own credentials.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CredError {
    /// The process lacks capabilities it needs to act as other users.
    #[error(
        "cannot act as other users: capabilities {0} are missing from the permitted set \
         (run as root, or grant them, e.g. AmbientCapabilities/CapabilityBoundingSet in the systemd unit)"
    )]
    Missing(String),
    /// A switch did not take (read back differently).
    #[error("switching a thread to uid {uid} failed: {why}")]
    Switch {
        /// The user asked for.
        uid: u32,
        /// What the kernel answered or what was read back.
        why: String,
    },
    /// No thread is free to take the request and the queue is full.
    #[error("too many requests waiting for a per-user thread ({0} queued); try again")]
    Busy(usize),
    /// The worker ended before answering (it could not restore itself, or
    /// the work panicked).
    #[error("the per-user thread ended before answering: {0}")]
    Lost(String),
}

/// The capabilities acting as another user needs in the permitted set:
/// CAP_SETUID for fsuid, CAP_SETGID for fsgid and groups.
const NEEDED: [(CapabilitySet, &str); 2] = [
    (CapabilitySet::SETUID, "CAP_SETUID"),
    (CapabilitySet::SETGID, "CAP_SETGID"),
];

/// Checks that this process can act as other users, naming what is
/// missing. Call at start: `setfsuid` without CAP_SETUID silently does
/// nothing, so a daemon without it would read as itself.
///
/// # Errors
/// [`CredError::Missing`] naming the missing capabilities.
pub fn check_capabilities() -> Result<(), CredError> {
    let sets = rustix::thread::capabilities(None)
        .map_err(|e| CredError::Missing(format!("(capget failed: {e})")))?;
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(c, _)| !sets.permitted.contains(*c))
        .map(|(_, n)| *n)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CredError::Missing(missing.join(", ")))
    }
}

/// The calling thread's (fsuid, fsgid), which the kernel checks file
/// access with: `setfs[ug]id` with an invalid id changes nothing and
/// returns the current value.
pub fn fs_ids() -> (u32, u32) {
    // SAFETY: setfsuid/setfsgid take an integer and touch no memory; -1 is
    // never a valid id, so nothing changes.
    unsafe {
        (
            libc::syscall(libc::SYS_setfsuid, -1i64) as u32,
            libc::syscall(libc::SYS_setfsgid, -1i64) as u32,
        )
    }
}

/// The calling thread's effective (uid, gid), from the raw system calls
/// (per thread; nothing cached).
fn effective_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// Sets the calling thread's effective gid, then uid, leaving the real and
/// saved ids as they are (`-1`): raw system calls, so no other thread
/// changes (glibc's `setresuid` would broadcast to every thread).
fn set_effective_ids(uid: u32, gid: u32) -> Result<(), String> {
    let keep = -1i64 as libc::c_long;
    // SAFETY: setresgid/setresuid take integers and touch no memory.
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, keep, gid as libc::c_long, keep) };
    if rc != 0 {
        return Err(format!(
            "setresgid(-1, {gid}, -1): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) };
    if rc != 0 {
        return Err(format!(
            "setresuid(-1, {uid}, -1): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn set_fs_ids(uid: u32, gid: u32) {
    // SAFETY: as in `fs_ids`; the result is checked by reading back.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid as libc::c_long);
        libc::syscall(libc::SYS_setfsuid, uid as libc::c_long);
    }
}

fn thread_groups() -> std::io::Result<Vec<u32>> {
    // The raw getgroups returns the calling thread's groups.
    Ok(rustix::process::getgroups()?
        .into_iter()
        .map(|g| g.as_raw())
        .collect())
}

fn set_thread_groups(groups: &[u32]) -> std::io::Result<()> {
    let gids: Vec<rustix::process::Gid> = groups
        .iter()
        .map(|&g| rustix::process::Gid::from_raw(g))
        .collect();
    Ok(rustix::thread::set_thread_groups(&gids)?)
}

/// A thread's own credentials, kept to restore after each request.
struct Own {
    euid: u32,
    egid: u32,
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
    caps: CapabilitySets,
}

impl Own {
    fn read() -> std::io::Result<Self> {
        let (fsuid, fsgid) = fs_ids();
        let (euid, egid) = effective_ids();
        Ok(Self {
            euid,
            egid,
            fsuid,
            fsgid,
            groups: thread_groups()?,
            caps: rustix::thread::capabilities(None)?,
        })
    }

    /// Makes the calling thread `c`: groups first (setgroups needs
    /// CAP_SETGID in effect), then the effective gid and uid (which the
    /// file-system ids follow; leaving euid 0 also empties the effective
    /// set), fsgid and fsuid again for a thread that did not start as
    /// root, then an empty effective set. Every step is read back.
    fn become_user(&self, c: &Creds) -> Result<(), String> {
        let mut groups = c.groups.clone();
        groups.sort_unstable();
        groups.dedup();
        set_thread_groups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        set_effective_ids(c.uid, c.gid)?;
        set_fs_ids(c.uid, c.gid);
        let (u, g) = fs_ids();
        if (u, g) != (c.uid, c.gid) {
            return Err(format!(
                "fsuid/fsgid read back as {u}/{g}, not {}/{} (is CAP_SETUID/CAP_SETGID missing?)",
                c.uid, c.gid
            ));
        }
        let (eu, eg) = effective_ids();
        if (eu, eg) != (c.uid, c.gid) {
            return Err(format!(
                "effective uid/gid read back as {eu}/{eg}, not {}/{}",
                c.uid, c.gid
            ));
        }
        let mut got = thread_groups().map_err(|e| format!("getgroups: {e}"))?;
        got.sort_unstable();
        if got != groups {
            return Err(format!("groups read back as {got:?}, not {groups:?}"));
        }
        let caps = CapabilitySets {
            effective: CapabilitySet::empty(),
            ..self.caps
        };
        rustix::thread::set_capabilities(None, caps).map_err(|e| format!("capset: {e}"))?;
        let now = rustix::thread::capabilities(None).map_err(|e| format!("capget: {e}"))?;
        if !now.effective.is_empty() {
            return Err(format!(
                "effective capabilities read back as {:?}",
                now.effective
            ));
        }
        Ok(())
    }

    /// Back to the thread's own credentials: the effective uid first (its
    /// own real or saved uid, always allowed; back to euid 0 the kernel
    /// restores the effective set from the permitted one), the effective
    /// capabilities (so setgroups and setresgid are allowed again), then
    /// the effective gid, groups and file-system ids; read back.
    fn restore(&self) -> Result<(), String> {
        let keep = -1i64 as libc::c_long;
        // SAFETY: setresuid takes integers and touches no memory.
        let rc =
            unsafe { libc::syscall(libc::SYS_setresuid, keep, self.euid as libc::c_long, keep) };
        if rc != 0 {
            return Err(format!(
                "setresuid(-1, {}, -1): {}",
                self.euid,
                std::io::Error::last_os_error()
            ));
        }
        rustix::thread::set_capabilities(None, self.caps).map_err(|e| format!("capset: {e}"))?;
        set_effective_ids(self.euid, self.egid)?;
        set_thread_groups(&self.groups).map_err(|e| format!("setgroups: {e}"))?;
        set_fs_ids(self.fsuid, self.fsgid);
        let back = Own::read().map_err(|e| format!("reading back: {e}"))?;
        if (back.euid, back.egid) != (self.euid, self.egid)
            || (back.fsuid, back.fsgid) != (self.fsuid, self.fsgid)
            || back.groups != self.groups
            || back.caps.effective != self.caps.effective
        {
            return Err(format!(
                "read back euid {} egid {} fsuid {} fsgid {} groups {:?} caps {:?}",
                back.euid, back.egid, back.fsuid, back.fsgid, back.groups, back.caps.effective
            ));
        }
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&Own) + Send>;

/// A pool of dedicated threads that run work as a given user.
///
/// Threads are started lazily from the callers' threads (so they inherit
/// the process's own credentials, never a switched thread's) up to
/// `threads`; a thread that cannot restore itself ends and is replaced by
/// the next caller.
pub struct UserThreads {
    tx: SyncSender<Job>,
    rx: Arc<Mutex<Receiver<Job>>>,
    live: Arc<AtomicUsize>,
    idle: Arc<AtomicUsize>,
    /// Jobs sent and not yet taken by a worker.
    queued: Arc<AtomicUsize>,
    threads: usize,
    queue: usize,
}

impl std::fmt::Debug for UserThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UserThreads({} of {} live)",
            self.live.load(Ordering::Relaxed),
            self.threads
        )
    }
}

impl UserThreads {
    /// Up to `threads` worker threads and `queue` requests waiting.
    ///
    /// # Errors
    /// [`CredError::Missing`] when this process cannot act as other users.
    pub fn new(threads: usize, queue: usize) -> Result<Self, CredError> {
        check_capabilities()?;
        let (tx, rx) = sync_channel(queue.max(1));
        Ok(Self {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            live: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(AtomicUsize::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
            threads: threads.max(1),
            queue: queue.max(1),
        })
    }

    /// Worker threads alive now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Starts a worker when fewer are idle than jobs are `waiting` and the
    /// pool is not full. Counting the waiting jobs matters: an idle worker
    /// may be about to take an earlier job, and a job left with no worker
    /// would wait until some other work ends. Called on the caller's
    /// thread, whose credentials are the process's own.
    fn grow(&self, waiting: usize) {
        if self.idle.load(Ordering::Acquire) >= waiting {
            return;
        }
        let n = self.live.fetch_add(1, Ordering::AcqRel);
        if n >= self.threads {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let (rx, live, idle, queued) = (
            self.rx.clone(),
            self.live.clone(),
            self.idle.clone(),
            self.queued.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("gproc-as-user".into())
            .spawn(move || worker(rx, live, idle, queued));
        if let Err(e) = spawned {
            self.live.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("cannot start a per-user thread: {e}");
        }
    }

    /// Runs `f` on a worker thread switched to `creds`; the thread is back
    /// to its own credentials before it takes other work.
    ///
    /// # Errors
    /// The switch did not take, the pool is saturated, or the worker ended.
    pub async fn run<T: Send + 'static>(
        &self,
        creds: &Creds,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CredError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let creds = creds.clone();
        let job: Job = Box::new(move |own: &Own| {
            let out = match own.become_user(&creds) {
                Ok(()) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .map_err(|_| CredError::Lost("the work panicked".into())),
                Err(why) => Err(CredError::Switch {
                    uid: creds.uid,
                    why,
                }),
            };
            let _ = done.send(out);
        });
        let waiting = self.queued.fetch_add(1, Ordering::AcqRel) + 1;
        self.grow(waiting);
        let sent = self.tx.try_send(job);
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(CredError::Busy(self.queue)),
            Err(TrySendError::Disconnected(_)) => {
                return Err(CredError::Lost("the pool is shut down".into()));
            }
        }
        answer.await.map_err(|_| {
            CredError::Lost("no answer (the thread could not restore itself)".into())
        })?
    }
}

/// Runs `f` on the calling thread switched to `creds`, and switches the
/// thread back before returning: the same switch and read-backs as
/// [`UserThreads::run`], with no hand-off to another thread.
///
/// For short work that cannot sleep on another process: while `f` runs,
/// the calling thread (an async worker) serves nothing else. A panic in
/// `f` unwinds through the restore. If the thread cannot be restored, the
/// process aborts: the thread would otherwise go on serving other users
/// (or the agent itself) with this user's credentials.
///
/// # Errors
/// The calling thread's own credentials cannot be read, or the switch did
/// not take (the thread is restored first); `f` has not run.
pub fn run_here<T>(creds: &Creds, f: impl FnOnce() -> T) -> Result<T, CredError> {
    /// Restores the thread when dropped, also while unwinding.
    struct Restore<'a>(&'a Own);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            if let Err(why) = self.0.restore() {
                tracing::error!(
                    "a thread switched to another user could not restore its credentials \
                     ({why}); aborting rather than serving as the wrong user"
                );
                std::process::abort();
            }
        }
    }
    let own = Own::read().map_err(|e| CredError::Switch {
        uid: creds.uid,
        why: format!("reading the thread's own credentials: {e}"),
    })?;
    let restore = Restore(&own);
    if let Err(why) = own.become_user(creds) {
        drop(restore);
        return Err(CredError::Switch {
            uid: creds.uid,
            why,
        });
    }
    let out = f();
    drop(restore);
    Ok(out)
}

/// One worker: takes jobs, runs each as its user, restores. Ends when it
/// cannot restore its own credentials, so no later job runs as the wrong
/// user.
fn worker(
    rx: Arc<Mutex<Receiver<Job>>>,
    live: Arc<AtomicUsize>,
    idle: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
) {
    struct Leave(Arc<AtomicUsize>);
    impl Drop for Leave {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _leave = Leave(live);
    let own = match Own::read() {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("per-user thread cannot read its own credentials: {e}");
            return;
        }
    };
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let job = {
            let guard = super::lock(&rx);
            guard.recv()
        };
        // Busy first, then one job fewer waiting: never, even for a
        // moment, an idle count that covers a job no worker will take.
        idle.fetch_sub(1, Ordering::AcqRel);
        let Ok(job) = job else { return };
        queued.fetch_sub(1, Ordering::AcqRel);
        job(&own);
        if let Err(why) = own.restore() {
            tracing::error!("per-user thread could not restore its credentials ({why}); ending it");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (fsuid, fsgid, groups, effective caps) of the calling thread, from
    /// the kernel's own report.
    fn thread_status() -> (String, String, String, String) {
        let s = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let fs4 = |v: String| v.split_whitespace().nth(3).unwrap_or_default().to_string();
        (
            fs4(field("Uid:")),
            fs4(field("Gid:")),
            field("Groups:"),
            field("CapEff:"),
        )
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root() && check_capabilities().is_ok()
    }

    fn root_creds() -> Creds {
        Creds {
            uid: 0,
            gid: 0,
            groups: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn switches_one_thread_and_restores_it() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let pool = UserThreads::new(1, 8).unwrap();
        let me = thread_status();
        let c = Creds {
            uid: 4242,
            gid: 4343,
            groups: vec![4343, 4444],
        };
        let inside = pool.run(&c, thread_status).await.unwrap();
        assert_eq!(
            (inside.0.as_str(), inside.1.as_str(), inside.2.as_str()),
            ("4242", "4343", "4343 4444")
        );
        assert_eq!(inside.3, "0000000000000000", "effective set empty");
        // The effective ids too: the kernel checks /proc/sys files (0600
        // sysctls) against them, not against the file-system ids.
        assert_eq!(pool.run(&c, effective_ids).await.unwrap(), (4242, 4343));
        if std::path::Path::new("/proc/sys/net/ipv4/tcp_fastopen_key").exists() {
            let r = pool
                .run(&c, || {
                    std::fs::read("/proc/sys/net/ipv4/tcp_fastopen_key").map_err(|e| e.kind())
                })
                .await
                .unwrap();
            assert_eq!(
                r,
                Err(std::io::ErrorKind::PermissionDenied),
                "a 0600 sysctl"
            );
        }
        // The caller's thread never changed; the worker is itself again.
        assert_eq!(thread_status(), me);
        assert_eq!(
            pool.run(&root_creds(), effective_ids).await.unwrap(),
            (0, 0)
        );
        let root = Creds {
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        let back = pool
            .run(&root, || Own::read().unwrap().fsuid)
            .await
            .unwrap();
        assert_eq!(back, 0);
        assert_eq!(pool.live(), 1, "one thread served every request");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_kernel_decides_for_the_user() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let shared = dir.path().join("group");
        std::fs::write(&shared, "group 4444").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
        rustix::fs::chown(&shared, None, Some(rustix::process::Gid::from_raw(4444))).unwrap();
        let pool = UserThreads::new(2, 8).unwrap();
        let user = |groups: Vec<u32>| Creds {
            uid: 4242,
            gid: 4343,
            groups,
        };
        let read = |p: std::path::PathBuf| move || std::fs::read_to_string(p).map_err(|e| e.kind());
        let denied = std::io::ErrorKind::PermissionDenied;
        assert_eq!(
            pool.run(&user(vec![4343]), read(secret.clone()))
                .await
                .unwrap(),
            Err(denied)
        );
        // Supplementary groups are applied.
        assert_eq!(
            pool.run(&user(vec![4343]), read(shared.clone()))
                .await
                .unwrap(),
            Err(denied)
        );
        assert_eq!(
            pool.run(&user(vec![4343, 4444]), read(shared.clone()))
                .await
                .unwrap()
                .as_deref(),
            Ok("group 4444")
        );
        // CAP_SYS_PTRACE is gone: a root process's environ is the kernel's
        // to refuse.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let env = std::path::PathBuf::from(format!("/proc/{}/environ", child.id()));
        assert_eq!(
            pool.run(&user(vec![]), read(env.clone())).await.unwrap(),
            Err(denied)
        );
        // The process itself still reads everything.
        assert!(std::fs::read_to_string(&secret).is_ok());
        assert!(std::fs::read(&env).is_ok());
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_switch_that_does_not_take_is_refused() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        // A thread that lost CAP_SETUID: setfsuid silently does nothing
        // there, and so would the workers it starts (they inherit it).
        let out = std::thread::spawn(|| {
            let pool = UserThreads::new(1, 8).unwrap();
            let mut caps = rustix::thread::capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::SETUID);
            caps.permitted.remove(CapabilitySet::SETUID);
            rustix::thread::set_capabilities(None, caps).unwrap();
            assert!(
                matches!(check_capabilities(), Err(CredError::Missing(m)) if m == "CAP_SETUID")
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let c = Creds {
                uid: 4242,
                gid: 4242,
                groups: vec![4242],
            };
            rt.block_on(pool.run(&c, || std::fs::read("/proc/self/status").is_ok()))
        })
        .join()
        .unwrap();
        assert!(
            matches!(&out, Err(CredError::Switch { uid: 4242, why })
                if why.contains("read back") || why.contains("setresuid")),
            "{out:?}"
        );
    }

    #[test]
    fn run_here_switches_the_calling_thread_and_restores_it() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        // On a thread of its own, so a failure cannot leave the test
        // harness's thread switched.
        std::thread::spawn(|| {
            let me = thread_status();
            let c = Creds {
                uid: 4242,
                gid: 4343,
                groups: vec![4343, 4444],
            };
            let inside = run_here(&c, thread_status).unwrap();
            assert_eq!(
                (inside.0.as_str(), inside.1.as_str(), inside.2.as_str()),
                ("4242", "4343", "4343 4444")
            );
            assert_eq!(inside.3, "0000000000000000", "effective set empty");
            assert_eq!(run_here(&c, effective_ids).unwrap(), (4242, 4343));
            // The kernel decides: a root process's environ is refused.
            let env = format!("/proc/{}/environ", std::process::id());
            let r = run_here(&c, || std::fs::read(&env).map_err(|e| e.kind())).unwrap();
            assert_eq!(r, Err(std::io::ErrorKind::PermissionDenied));
            assert_eq!(thread_status(), me, "restored");
            assert!(std::fs::read(&env).is_ok());
            // A panic inside unwinds through the restore.
            let p = std::panic::catch_unwind(|| {
                run_here(&c, || -> () { panic!("inside") }).unwrap();
            });
            assert!(p.is_err());
            assert_eq!(thread_status(), me, "restored after a panic");
            // Other threads never changed.
            let other = std::thread::spawn(thread_status).join().unwrap();
            assert_eq!(other, me);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn run_here_refuses_a_switch_that_does_not_take() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let out = std::thread::spawn(|| {
            let mut caps = rustix::thread::capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::SETUID);
            caps.permitted.remove(CapabilitySet::SETUID);
            rustix::thread::set_capabilities(None, caps).unwrap();
            let c = Creds {
                uid: 4242,
                gid: 4242,
                groups: vec![4242],
            };
            let mut ran = false;
            let r = run_here(&c, || ran = true);
            (r, ran, thread_status().0)
        })
        .join();
        // Without CAP_SETUID the switch fails and the thread cannot become
        // the user: refused before `f`, or the process would have aborted.
        let (r, ran, fsuid) = out.unwrap();
        assert!(
            matches!(&r, Err(CredError::Switch { uid: 4242, .. })),
            "{r:?}"
        );
        assert!(!ran);
        assert_eq!(fsuid, "0");
    }

    /// A job sent while the only idle worker is about to take an earlier
    /// one (which then blocks) gets a worker of its own.
    #[tokio::test]
    async fn a_job_behind_a_blocked_one_gets_its_own_worker() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let pool = UserThreads::new(4, 8).unwrap();
        // One worker, idle.
        pool.run(&root_creds(), || ()).await.unwrap();
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let g = gate.clone();
        let me = root_creds();
        let blocked = pool.run(&me, move || {
            let (open, cv) = &*g;
            let mut o = crate::sys::lock(open);
            while !*o {
                o = cv.wait(o).unwrap_or_else(|p| p.into_inner());
            }
        });
        // Both sent in one go (the blocking one first): the idle worker has
        // not taken the first yet when the second is sent.
        let quick = pool.run(&me, || 42);
        let quick = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::select! {
                biased;
                _ = blocked => panic!("the gate is shut"),
                q = quick => q,
            }
        })
        .await;
        *crate::sys::lock(&gate.0) = true;
        gate.1.notify_all();
        assert_eq!(
            quick.expect("the second job waited for the first").unwrap(),
            42
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_users_never_mix() {
        if !root() {
            eprintln!("SKIP: needs root with CAP_SETUID/CAP_SETGID");
            return;
        }
        let pool = Arc::new(UserThreads::new(3, 256).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let uid = 5000 + i % 7;
                let c = Creds {
                    uid,
                    gid: uid,
                    groups: vec![uid],
                };
                let seen = pool
                    .run(&c, || {
                        std::thread::yield_now();
                        thread_status().0
                    })
                    .await
                    .unwrap();
                assert_eq!(seen, uid.to_string());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(pool.live() <= 3);
    }
}

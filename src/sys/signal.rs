//! Signalling a process as a user, so the node's kernel decides who may.
//!
//! kill(2) checks the sender's *real* and effective uid against the
//! target's real and saved uid (and CAP_KILL). Switching a thread of the
//! agent's to the user's real uid would make that thread the user's to
//! signal: for the moment it sends, a user who races `tgkill(agent, tid,
//! SIGKILL)` could end the whole agent. So the signal is sent by a child
//! process that drops to the user's ids for good (real, effective and
//! saved uid and gid, groups; the kernel then clears its capabilities and
//! makes it non-dumpable) and exits: a signal to it harms no one but the
//! request. Signals are rare; a fork per signal is cheap next to them.
//!
//! The target is named by a directory descriptor of `/proc/<pid>`, which
//! `pidfd_send_signal(2)` accepts: once that process exits the call fails
//! (ESRCH), even if the pid is reused, so a signal never reaches another
//! process than the one walked to.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::creds::Creds;

/// Exit codes of the child for a failed switch (distinct from the errno
/// values 1-133 it exits with when the signal itself fails).
const SWITCH_FAILED: i32 = 250;

/// Why a signal was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// The kernel refused or failed the send (EPERM: not the user's
    /// process; ESRCH: it exited).
    #[error("{0}")]
    Kernel(Errno),
    /// The sending child could not become the user; nothing was sent.
    #[error("could not switch a child to uid {0}: nothing sent")]
    Switch(u32),
    /// The sending child could not be made or ended abnormally.
    #[error("the sending child failed: {0}")]
    Child(String),
}

impl SignalError {
    /// The errno for a 9P reply.
    pub fn errno(&self) -> u32 {
        match self {
            SignalError::Kernel(e) => e.raw_os_error() as u32,
            SignalError::Switch(_) => libc::EPERM as u32,
            SignalError::Child(_) => libc::EIO as u32,
        }
    }
}

/// Sends `signal` to the process whose `/proc/<pid>` directory `proc_dir`
/// is (an `O_PATH` descriptor is fine), as `user`, or with this process's
/// own credentials when `user` is `None`. Blocks (a fork and a wait): call
/// from a blocking thread whose credentials are the process's own.
///
/// # Errors
/// [`SignalError`]: the kernel's answer, or a child that failed.
pub fn send(
    proc_dir: BorrowedFd<'_>,
    user: Option<&Creds>,
    signal: i32,
) -> Result<(), SignalError> {
    // pidfd_send_signal takes a real open of the process directory, not an
    // O_PATH descriptor; "." of the held one is the same process.
    let dir = rustix::fs::openat(
        proc_dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SignalError::Kernel(if e == Errno::NOENT { Errno::SRCH } else { e }))?;
    let Some(c) = user else {
        return pidfd_send_signal(dir.as_fd(), signal).map_err(SignalError::Kernel);
    };
    let groups: Vec<libc::gid_t> = c.groups.clone();
    let (uid, gid) = (c.uid, c.gid);
    let fd = dir.as_raw_fd();
    // SAFETY: fork in a threaded process: the child runs only raw system
    // calls on memory prepared before the fork (no allocation, no locks)
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SignalError::Child(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        // SAFETY: see above; `child` never returns.
        unsafe { child(fd, &groups, uid, gid, signal) }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing only `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(SignalError::Child(format!("waitpid: {e}")));
        }
    }
    if !libc::WIFEXITED(status) {
        return Err(SignalError::Child(format!(
            "ended by signal {}",
            libc::WTERMSIG(status)
        )));
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        SWITCH_FAILED => Err(SignalError::Switch(uid)),
        n => Err(SignalError::Kernel(Errno::from_raw_os_error(n))),
    }
}

/// The child: becomes the user for good, sends, exits with 0 or the errno.
///
/// # Safety
/// Only in a child just forked: raw system calls and `_exit` only.
unsafe fn child(fd: i32, groups: &[libc::gid_t], uid: u32, gid: u32, signal: i32) -> ! {
    let errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: raw system calls on integers and on `groups`, which outlives
    // them; the ids are read back before anything is sent.
    unsafe {
        let g = gid as libc::c_long;
        let u = uid as libc::c_long;
        let switched = libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0
            && libc::syscall(libc::SYS_setresgid, g, g, g) == 0
            && libc::syscall(libc::SYS_setresuid, u, u, u) == 0;
        let (mut r, mut e, mut s) = (0, 0, 0);
        let uids = libc::syscall(libc::SYS_getresuid, &mut r, &mut e, &mut s) == 0;
        if !switched || !uids || (r, e, s) != (uid, uid, uid) {
            libc::_exit(SWITCH_FAILED);
        }
        let sent = libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
        libc::_exit(if sent == 0 { 0 } else { errno().clamp(1, 249) })
    }
}

fn pidfd_send_signal(fd: BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: integers and a null siginfo (the kernel fills in a kill's).
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn proc_dir(pid: u32) -> std::os::fd::OwnedFd {
        rustix::fs::openat(
            rustix::fs::CWD,
            format!("/proc/{pid}"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn signals_reach_the_process_held_and_none_after_it_exits() {
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let dir = proc_dir(child.id());
        send(dir.as_fd(), None, libc::SIGKILL).unwrap();
        let st = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        // Reaped: the held directory names no process any more.
        assert_eq!(
            send(dir.as_fd(), None, libc::SIGKILL),
            Err(SignalError::Kernel(Errno::SRCH))
        );
    }

    #[test]
    fn as_another_user_the_kernel_decides() {
        if !root() {
            eprintln!("SKIPPED: needs root to act as another user");
            return;
        }
        // Our own (root's) process: nobody may not signal it.
        let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
        let dir = proc_dir(child.id());
        let nobody = Creds {
            uid: 65534,
            gid: 65534,
            groups: vec![],
        };
        assert_eq!(
            send(dir.as_fd(), Some(&nobody), libc::SIGKILL),
            Err(SignalError::Kernel(Errno::PERM))
        );
        assert!(child.try_wait().unwrap().is_none(), "still running");
        // Root (as a user switched to uid 0) may.
        let root = Creds {
            uid: 0,
            gid: 0,
            groups: vec![0],
        };
        send(dir.as_fd(), Some(&root), libc::SIGTERM).unwrap();
        let st = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(15));

        // Their own process: they may.
        let mut own = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sleep",
                "1000",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        send(proc_dir(own.id()).as_fd(), Some(&nobody), libc::SIGKILL).unwrap();
        let st = own.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));

        // Their effective uid, root's real and saved uid: the kernel
        // compares the target's real and saved uid, so no.
        let mut half = Command::new("perl")
            .args(["-e", "$> = 65534; sleep 1000"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let status = std::fs::read_to_string(format!("/proc/{}/status", half.id())).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["Uid:", "0", "65534", "0", "65534"]),
            "{status}"
        );
        assert_eq!(
            send(proc_dir(half.id()).as_fd(), Some(&nobody), libc::SIGKILL),
            Err(SignalError::Kernel(Errno::PERM))
        );
        assert!(half.try_wait().unwrap().is_none(), "still running");
        half.kill().unwrap();
        half.wait().unwrap();
    }
}

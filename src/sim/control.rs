//! Signals on simulated nodes (with [`SimOptions::control`]): what a
//! write to a process's `ctl` does to the model, and the record of every
//! one, for tests and for the `gproc::audit` log.
//!
//! The simulator has no kernel and no real credentials: it believes the
//! uid a client names in `Tattach`, as it does for reads (which show every
//! process to everyone, like a node without `hidepid`). On that uid it
//! applies the rule Linux applies to `kill(2)`: uid 0 may signal anything,
//! anyone else only processes whose real or saved uid is theirs (a
//! simulated process has one uid for all four); others get `EPERM`, as
//! from a node's kernel. Behind an aggregator, which sends each signal as
//! the writer and hides other users' processes from non-administrators,
//! that is what a real node would answer.
//!
//! A signal acts as its default disposition says (no simulated program
//! catches one): the terminating and core-dumping signals end the process
//! (it leaves the node's listing and summary, its children go to init),
//! the stop signals stop it (`T`), `SIGCONT` resumes it, the rest are
//! ignored. As on Linux, a stopped process acts on a fatal signal other
//! than `SIGKILL` only once continued, one in disk sleep (`D`) on none
//! until it wakes (which a simulated one never does), a zombie on none,
//! and kernel threads and init ignore them all.
//!
//! [`SimOptions::control`]: super::SimOptions::control

use std::collections::VecDeque;

use crate::sys;

/// Records kept; past it the oldest go (counted in
/// [`SignalLog::dropped`]).
const MAX_RECORDS: usize = 100_000;

/// What a signal does by default (`signal(7)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Ends the process (`Term` and `Core`).
    End,
    /// Stops it.
    Stop,
    /// Continues it if stopped.
    Cont,
    /// Nothing.
    Ignore,
}

/// The default action of Linux signal `n` (x86_64, aarch64 and powerpc64
/// numbers, as [`crate::format::ctl`] names them): real-time signals end
/// the process.
pub(crate) fn default_action(n: i32) -> Action {
    match n {
        // SIGCHLD, SIGURG, SIGWINCH.
        17 | 23 | 28 => Action::Ignore,
        18 => Action::Cont,
        // SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU.
        19..=22 => Action::Stop,
        _ => Action::End,
    }
}

/// What a simulated node did with one `ctl` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalOutcome {
    /// The process ended: gone from the node's directories and summary.
    Ended,
    /// It stopped (`T`).
    Stopped,
    /// It was stopped and runs again.
    Continued,
    /// Delivered but waiting: it is stopped (a fatal signal acts once it
    /// is continued) or in disk sleep.
    Pending,
    /// Delivered, no effect (ignored by default, a zombie, a kernel thread,
    /// init, or `SIGCONT` to a process that was not stopped).
    NoEffect,
    /// Not sent: the errno the writer got (`EPERM`: not theirs;
    /// `ENOENT`: it no longer exists; `EINVAL`: not a command).
    Refused(u32),
}

impl SignalOutcome {
    /// Whether the signal was delivered (the write succeeded).
    pub fn sent(self) -> bool {
        !matches!(self, SignalOutcome::Refused(_))
    }
}

/// One `ctl` write on a simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalRecord {
    /// Index of the node.
    pub node: usize,
    /// The process.
    pub pid: u32,
    /// Its start, clock ticks after the node's boot (as `stat` says).
    pub start: u64,
    /// The writer's uid, as the client named it.
    pub uid: u32,
    /// The signal's number; `None` when the write was not a command.
    pub signal: Option<i32>,
    /// What happened.
    pub outcome: SignalOutcome,
}

/// Every `ctl` write of a cluster, in order, up to [`MAX_RECORDS`].
#[derive(Debug, Default)]
pub(crate) struct SignalLog {
    records: std::sync::Mutex<(VecDeque<SignalRecord>, u64)>,
}

impl SignalLog {
    /// Adds a record, and logs it under `gproc::audit` as agents do.
    pub(crate) fn push(&self, node_name: &str, comm: &str, user: Option<&str>, r: SignalRecord) {
        tracing::info!(
            target: "gproc::audit",
            node = node_name,
            uid = r.uid,
            user = user.unwrap_or("?"),
            pid = r.pid,
            start = r.start,
            comm,
            signal = r.signal.map_or_else(|| "-".to_string(), crate::format::ctl::signal_name),
            result = ?r.outcome,
            "signal (simulated)"
        );
        let mut g = sys::lock(&self.records);
        if g.0.len() >= MAX_RECORDS {
            g.0.pop_front();
            g.1 += 1;
        }
        g.0.push_back(r);
    }

    /// The records kept, oldest first.
    pub(crate) fn records(&self) -> Vec<SignalRecord> {
        sys::lock(&self.records).0.iter().cloned().collect()
    }

    /// Records dropped to keep the log bounded.
    pub(crate) fn dropped(&self) -> u64 {
        sys::lock(&self.records).1
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;

    use super::super::{Sim, SimNode, SimNodeFs, SimOptions};
    use super::*;
    use crate::format::summary;
    use crate::proto::errno;
    use crate::server::{AttachRequest, Contents, Filesystem, Identity, OpenFlags, Proof};

    fn sim(control: bool) -> Arc<Sim> {
        Arc::new(
            Sim::new(SimOptions {
                nodes: 40,
                epoch: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                control,
                ..SimOptions::default()
            })
            .unwrap(),
        )
    }

    fn who(uid: u32) -> Identity {
        Identity {
            uid,
            name: None,
            gid: None,
            gids: Vec::new(),
            proof: Proof::Claim,
        }
    }

    async fn walk(fs: &SimNodeFs, uid: u32, path: &str) -> crate::server::FsResult<SimNode> {
        let req = AttachRequest {
            aname: String::new(),
            who: who(uid),
        };
        let (mut f, _) = fs.attach(&req).await?;
        for n in path.split('/').filter(|s| !s.is_empty()) {
            f = fs.walk(&who(uid), &f, n).await?.0;
        }
        Ok(f)
    }

    /// Writes `cmd` to `<pid>/ctl` as `uid` as a shell would: open with
    /// truncation, then write.
    async fn ctl(fs: &SimNodeFs, uid: u32, pid: u32, cmd: &str) -> Result<(), u32> {
        let f = walk(fs, uid, &format!("{pid}/ctl"))
            .await
            .map_err(|e| e.errno)?;
        let flags = OpenFlags {
            read: false,
            write: true,
            truncate: true,
        };
        fs.open(&who(uid), &f, flags).await.map_err(|e| e.errno)?;
        fs.truncate(&who(uid), &f).await.map_err(|e| e.errno)?;
        fs.write(&who(uid), &f, 0, Bytes::from(cmd.to_string()))
            .await
            .map(|_| ())
            .map_err(|e| e.errno)
    }

    fn state_in_summary(fs: &SimNodeFs, pid: u32) -> Option<char> {
        let s = fs.summary();
        s.procs
            .iter()
            .find(|p| p.pid == pid as i32)
            .map(|p| p.state)
    }

    #[tokio::test(start_paused = true)]
    async fn signals_stop_continue_and_end_simulated_processes() {
        let sim = sim(true);
        let (i, user) = (0..sim.len())
            .find_map(|i| {
                let ps = sim.processes(i);
                let u = ps.iter().find(|p| p.uid >= 1000 && p.held.is_none())?;
                Some((i, u.clone()))
            })
            .expect("a user's process");
        let fs = SimNodeFs::new(sim.clone(), i);
        let pid = user.pid;

        // ctl is listed, write-only, and its owner's.
        let f = walk(&fs, 0, &pid.to_string()).await.unwrap();
        let Contents::Dir(d) = fs.open(&who(0), &f, OpenFlags::READ).await.unwrap() else {
            panic!("not a directory");
        };
        assert!(d.iter().any(|e| e.name == "ctl"));
        let f = walk(&fs, 0, &format!("{pid}/ctl")).await.unwrap();
        let md = fs.getattr(&who(0), &f).await.unwrap();
        assert_eq!((md.mode & 0o7777, md.uid), (0o200, Some(user.uid)));
        let e = fs.open(&who(0), &f, OpenFlags::READ).await.unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
        assert_eq!(
            walk(&fs, 0, &format!("{pid}/task/{pid}/ctl"))
                .await
                .unwrap_err()
                .errno,
            errno::ENOENT,
            "threads have no ctl"
        );

        // Another user's: EPERM, and nothing changes; not a command: EINVAL.
        assert_eq!(ctl(&fs, user.uid + 1, pid, "kill").await, Err(errno::EPERM));
        assert_eq!(ctl(&fs, user.uid, pid, "explode").await, Err(errno::EINVAL));
        assert!(sim.processes(i).iter().any(|p| p.pid == pid));

        // Their own: stop, a pending term, continue (which ends it).
        ctl(&fs, user.uid, pid, "stop\n").await.unwrap();
        assert_eq!(state_in_summary(&fs, pid), Some('T'));
        let stat = String::from_utf8(
            match fs
                .open(
                    &who(0),
                    &walk(&fs, 0, &format!("{pid}/stat")).await.unwrap(),
                    OpenFlags::READ,
                )
                .await
                .unwrap()
            {
                Contents::File(b) | Contents::Fresh(b) => b.to_vec(),
                _ => panic!("stat is a file"),
            },
        )
        .unwrap();
        assert!(stat.contains(") T "), "{stat}");
        ctl(&fs, user.uid, pid, "cont").await.unwrap();
        assert_ne!(state_in_summary(&fs, pid), Some('T'));
        ctl(&fs, user.uid, pid, "stop").await.unwrap();
        ctl(&fs, user.uid, pid, "term").await.unwrap();
        assert_eq!(state_in_summary(&fs, pid), Some('T'), "waits for SIGCONT");
        // A held fid sees the same process; a pinned name too.
        let pinned = summary::pinned_name(pid as i32, user.start);
        walk(&fs, 0, &format!("{pinned}/stat")).await.unwrap();
        let other = summary::pinned_name(pid as i32, user.start + 1);
        assert_eq!(walk(&fs, 0, &other).await.unwrap_err().errno, errno::ENOENT);
        ctl(&fs, user.uid, pid, "signal CONT").await.unwrap();
        assert_eq!(state_in_summary(&fs, pid), None, "ended");
        assert!(!sim.processes(i).iter().any(|p| p.pid == pid));
        assert_eq!(
            walk(&fs, 0, &pid.to_string()).await.unwrap_err().errno,
            errno::ENOENT
        );
        assert_eq!(
            walk(&fs, 0, &format!("{pinned}/stat"))
                .await
                .unwrap_err()
                .errno,
            errno::ENOENT
        );

        // Every write is recorded, refused ones too.
        let got: Vec<(u32, Option<i32>, SignalOutcome)> = sim
            .signals()
            .into_iter()
            .filter(|r| r.node == i && r.pid == pid)
            .map(|r| (r.uid, r.signal, r.outcome))
            .collect();
        let u = user.uid;
        assert_eq!(
            got,
            vec![
                (u + 1, Some(9), SignalOutcome::Refused(errno::EPERM)),
                (u, None, SignalOutcome::Refused(errno::EINVAL)),
                (u, Some(19), SignalOutcome::Stopped),
                (u, Some(18), SignalOutcome::Continued),
                (u, Some(19), SignalOutcome::Stopped),
                (u, Some(15), SignalOutcome::Pending),
                (u, Some(18), SignalOutcome::Ended),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn root_signals_anything_but_kernel_threads_zombies_and_disk_sleep_stay() {
        let sim = sim(true);
        let mut checked = [false; 3];
        for i in 0..sim.len() {
            let fs = SimNodeFs::new(sim.clone(), i);
            let before = sim.processes(i);
            for p in &before {
                let stays = match p.held {
                    Some('Z') => 0,
                    Some('D') => 1,
                    _ if p.pid == 2 => 2,
                    _ => continue,
                };
                ctl(&fs, 0, p.pid, "kill").await.unwrap();
                let now = sim.processes(i);
                let after = now.iter().find(|q| q.pid == p.pid);
                assert_eq!(after.map(|q| q.held), Some(p.held), "{p:?}");
                checked[stays] = true;
            }
            // Root's kill of a daemon ends it; its children go to init.
            if let Some(d) = before
                .iter()
                .find(|p| p.uid == 0 && p.ppid == 1 && p.held.is_none())
            {
                ctl(&fs, 0, d.pid, "kill").await.unwrap();
                let now = sim.processes(i);
                assert!(!now.iter().any(|q| q.pid == d.pid));
                assert!(!now.iter().any(|q| q.ppid == d.pid));
            }
        }
        assert_eq!(checked, [true; 3], "zombies, disk sleep and kthreadd seen");
    }

    #[tokio::test(start_paused = true)]
    async fn without_control_there_is_no_ctl() {
        let sim = sim(false);
        let fs = SimNodeFs::new(sim.clone(), 0);
        let pid = sim.processes(0)[5].pid;
        assert_eq!(
            walk(&fs, 0, &format!("{pid}/ctl")).await.unwrap_err().errno,
            errno::ENOENT
        );
        let f = walk(&fs, 0, &format!("{pid}/stat")).await.unwrap();
        let w = OpenFlags {
            read: false,
            write: true,
            truncate: false,
        };
        assert_eq!(
            fs.open(&who(0), &f, w).await.unwrap_err().errno,
            errno::EROFS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn strays_disk_sleep_and_zombies_come_from_the_seed() {
        let (a, b) = (sim(false), sim(true));
        let mut seen = [0usize; 3];
        for i in 0..a.len() {
            let (pa, pb) = (a.processes(i), b.processes(i));
            assert_eq!(pa, pb, "node {i}: same seed, same processes");
            for p in &pa {
                seen[0] += usize::from(p.left_behind);
                seen[1] += usize::from(p.held == Some('D'));
                seen[2] += usize::from(p.held == Some('Z'));
                if p.left_behind {
                    assert!(p.stray && p.ppid == 1 && p.job.is_none(), "{p:?}");
                }
            }
            // The summary says the same states, and nothing else is D or Z.
            let s = SimNodeFs::new(a.clone(), i).summary();
            for (q, p) in s.procs.iter().zip(&pa) {
                assert_eq!(q.pid, p.pid as i32);
                match p.held {
                    Some(c) => assert_eq!(q.state, c, "{p:?}"),
                    None => assert!(!matches!(q.state, 'D' | 'Z' | 'T'), "{q:?}"),
                }
                if p.held == Some('Z') {
                    assert!(q.cmdline.is_empty() && q.rss_pages == 0, "{q:?}");
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[test]
    fn default_actions_are_linuxs() {
        for (sig, action) in [
            (libc::SIGHUP, Action::End),
            (libc::SIGINT, Action::End),
            (libc::SIGKILL, Action::End),
            (libc::SIGTERM, Action::End),
            (libc::SIGSEGV, Action::End),
            (libc::SIGUSR1, Action::End),
            (libc::SIGPIPE, Action::End),
            (libc::SIGCHLD, Action::Ignore),
            (libc::SIGURG, Action::Ignore),
            (libc::SIGWINCH, Action::Ignore),
            (libc::SIGCONT, Action::Cont),
            (libc::SIGSTOP, Action::Stop),
            (libc::SIGTSTP, Action::Stop),
            (libc::SIGTTIN, Action::Stop),
            (libc::SIGTTOU, Action::Stop),
            (40, Action::End),
        ] {
            assert_eq!(default_action(sig), action, "signal {sig}");
        }
    }
}

//! The classic hung `ps`, for real: a process whose memory map lock is
//! held by one of its reads stuck on a file system that does not answer,
//! with a writer queued behind it, so every read of its `cmdline` sleeps.
//! The agent's node summary must come back within its deadline, with that
//! process's arguments marked unknown (`?`) and every other row intact,
//! and the agent must keep serving other reads meanwhile.
//!
//! How the lock is held, with nothing but the kernel and this test:
//! - a FUSE file system served by this test (fuser) whose reads are not
//!   answered until the test says so: a network file system whose server
//!   went away;
//! - a child (forked, raw system calls only) maps a page of that file and
//!   reads it through its own `/proc/self/mem`: `access_remote_vm` faults
//!   the page in with the memory map lock held for reading and no retry,
//!   so the child sleeps in the file system holding the lock;
//! - a thread of this test writes `5` to the child's `clear_refs`, which
//!   takes the lock for writing (`mmap_write_lock_killable`): a queued
//!   writer, behind which every new reader (a `cmdline` read) waits.
//!
//! Releasing the file system's reads undoes all of it.

use std::ffi::{CString, OsStr};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, LockOwner, OpenFlags,
    ReplyAttr, ReplyData, ReplyEntry, Request,
};
use gproc::client::{Client, ClientOptions};
use gproc::format::summary;
use gproc::net::Address;

use crate::common::*;

const FILE_INO: u64 = 2;
const FILE_SIZE: u64 = 8192;

/// Reads held unanswered until released; a counter of reads seen.
#[derive(Default)]
struct Gate {
    held: Vec<ReplyData>,
    seen: usize,
    open: bool,
}

/// A FUSE file system with one file, `slow`, whose reads wait for the gate.
struct Stuck(Arc<(Mutex<Gate>, Condvar)>);

fn attr(ino: u64) -> FileAttr {
    let file = ino == FILE_INO;
    let now = std::time::SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: if file { FILE_SIZE } else { 0 },
        blocks: if file { FILE_SIZE / 512 } else { 0 },
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind: if file {
            FileType::RegularFile
        } else {
            FileType::Directory
        },
        perm: if file { 0o444 } else { 0o555 },
        nlink: if file { 1 } else { 2 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for Stuck {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == "slow" {
            reply.entry(&Duration::from_secs(60), &attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 | FILE_INO => reply.attr(&Duration::from_secs(60), &attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap();
        g.seen += 1;
        cv.notify_all();
        if g.open {
            let n = FILE_SIZE.saturating_sub(offset).min(u64::from(size));
            reply.data(&vec![b'x'; n as usize]);
        } else {
            g.held.push(reply);
        }
    }
}

/// Undoes the setup however the test ends: answers the held reads (which
/// lets the child's read, the queued writer and every waiting reader go
/// on), kills and reaps the child.
struct Cleanup {
    gate: Arc<(Mutex<Gate>, Condvar)>,
    child: libc::pid_t,
}

impl Cleanup {
    fn release(&self) {
        let mut g = self.gate.0.lock().unwrap_or_else(|p| p.into_inner());
        g.open = true;
        for r in g.held.drain(..) {
            r.data(&[b'x'; 4096]);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.release();
        if self.child > 0 {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(self.child, libc::SIGKILL);
                libc::waitpid(self.child, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Forks a child that maps `file` and reads the page through its own
/// `/proc/self/mem`; the read sleeps in the file system with the child's
/// memory map lock held. Only raw system calls run in the child.
fn fork_child_reading(file: &std::path::Path) -> libc::pid_t {
    let path = CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    let mem = CString::new("/proc/self/mem").unwrap();
    // SAFETY: the child calls only async-signal-safe functions (open,
    // mmap, pread, _exit) on memory prepared before the fork.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                libc::_exit(2);
            }
            let addr = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            if addr == libc::MAP_FAILED {
                libc::_exit(3);
            }
            let m = libc::open(mem.as_ptr(), libc::O_RDONLY);
            if m < 0 {
                libc::_exit(4);
            }
            let mut b = [0u8; 1];
            libc::pread(m, b.as_mut_ptr().cast(), 1, addr as libc::off_t);
            libc::_exit(0);
        }
        pid
    }
}

/// Reads `path` on a thread of its own; whether it finished within `wait`.
fn read_finishes_within(path: String, wait: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::fs::read(&path);
        let _ = tx.send(());
    });
    rx.recv_timeout(wait).is_ok()
}

async fn summary_as(addr: &Address, user: &str, uid: u32) -> (Duration, summary::NodeSummary) {
    let client = Client::connect(addr, ClientOptions::default())
        .await
        .unwrap();
    let root = client.attach(user, "/proc", Some(uid)).await.unwrap();
    let t = Instant::now();
    let bytes = tokio::time::timeout(Duration::from_secs(20), root.read_all(summary::FILE_PATH))
        .await
        .expect("the summary stalled behind a hung process")
        .unwrap();
    (t.elapsed(), summary::parse(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_with_a_locked_memory_map_marks_its_own_row() {
    let root_ok = rustix::process::geteuid().is_root();
    if !require(
        "root and /dev/fuse (a FUSE file system served by the test)",
        root_ok && std::path::Path::new("/dev/fuse").exists(),
    ) {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let gate = Arc::new((Mutex::new(Gate::default()), Condvar::new()));
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("gproc-hung-test".into()),
    ];
    let _session = fuser::spawn_mount(Stuck(gate.clone()), mnt.path(), &config)
        .expect("mount the test's FUSE file system");
    let mut cleanup = Cleanup {
        gate: gate.clone(),
        child: 0,
    };
    let child = fork_child_reading(&mnt.path().join("slow"));
    cleanup.child = child;

    // The child is asleep in the file system, holding its map's lock.
    {
        let (m, cv) = &*gate;
        let g = m.lock().unwrap();
        let (g, t) = cv
            .wait_timeout_while(g, Duration::from_secs(10), |g| g.seen == 0)
            .unwrap();
        assert!(
            !t.timed_out(),
            "the child's read never reached the file system"
        );
        drop(g);
    }
    // A writer queues behind it (this thread sleeps until the release).
    let clear_refs = format!("/proc/{child}/clear_refs");
    let writer = std::thread::spawn(move || std::fs::write(clear_refs, "5"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !read_finishes_within(format!("/proc/{child}/cmdline"), Duration::from_millis(500)),
        "the setup did not make cmdline reads sleep: nothing to test"
    );
    // Reads that do not take the memory map's lock still answer.
    assert!(read_finishes_within(
        format!("/proc/{child}/status"),
        Duration::from_secs(5)
    ));

    let port = Port::new();
    let _agent = start_agent(&port);
    let addr = Address::Tcp(port.addr());
    let deadline = gproc::agent::deadline::READ_DEADLINE;

    // While a 9P read of the child's cmdline sleeps on an isolated thread,
    // fast reads are served.
    let stuck_read = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let c = Client::connect(&addr, ClientOptions::default())
                .await
                .unwrap();
            let r = c.attach("root", "/proc", Some(0)).await.unwrap();
            r.read_all(&format!("{child}/cmdline")).await
        })
    };
    let client = Client::connect(&addr, ClientOptions::default())
        .await
        .unwrap();
    let r = client.attach("root", "/proc", Some(0)).await.unwrap();
    for p in [
        format!("{child}/status"),
        format!("{child}/stat"),
        "loadavg".into(),
    ] {
        let got = tokio::time::timeout(Duration::from_secs(5), r.read_all(&p)).await;
        assert!(matches!(got, Ok(Ok(_))), "{p}: {got:?}");
    }

    // The summary: in time, the child's row marked, the others intact.
    let (took, s) = summary_as(&addr, "root", 0).await;
    assert!(took < deadline + Duration::from_secs(3), "took {took:?}");
    let row = |s: &summary::NodeSummary, pid: i32| s.procs.iter().find(|p| p.pid == pid).cloned();
    let hung = row(&s, child).expect("the hung process is listed");
    assert!(hung.cmdline_unknown(), "{:?}", hung.cmdline);
    assert_eq!(hung.cmdline_display(), "?");
    let me = row(&s, std::process::id() as i32).expect("this test is listed");
    let argv: Vec<Vec<u8>> = std::env::args_os()
        .map(|a| a.into_encoded_bytes())
        .collect();
    assert_eq!(me.cmdline.to_vecs(), argv, "another row is intact");
    let unknown: Vec<i32> = s
        .procs
        .iter()
        .filter(|p| p.cmdline_unknown())
        .map(|p| p.pid)
        .collect();
    assert_eq!(unknown, vec![child], "only the hung process is marked");
    assert!(s.procs.len() > 3);

    // Again, and as an ordinary user (a per-user thread, whose helper reads
    // as that user): the process known to be stuck is marked at once.
    let (uid, _) = test_user("gproc-c1");
    for (who, id) in [("root", 0), ("gproc-c1", uid)] {
        let (took, s) = summary_as(&addr, who, id).await;
        assert!(
            took < deadline + Duration::from_secs(3),
            "{who}: took {took:?}"
        );
        let hung = row(&s, child).expect("listed");
        assert!(hung.cmdline_unknown(), "{who}");
        assert_eq!(
            row(&s, std::process::id() as i32).map(|p| p.cmdline.to_vecs()),
            Some(argv.clone()),
            "{who}"
        );
    }

    // Release: the child's read, the writer and the stuck 9P read finish;
    // the child's cmdline reads again.
    cleanup.release();
    assert!(writer.join().unwrap().is_ok());
    let got = tokio::time::timeout(Duration::from_secs(10), stuck_read)
        .await
        .expect("the stuck 9P read finishes once the file system answers")
        .unwrap();
    assert!(got.is_ok(), "{got:?}");
    let mut ok = false;
    for _ in 0..50 {
        let (_, s) = summary_as(&addr, "root", 0).await;
        // Reaped or still there, the child is no longer marked.
        if row(&s, child).is_none_or(|p| !p.cmdline_unknown()) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the child stays marked after its read returned");
}

//! `gproc mount`: any 9P server's tree (an aggregator, an agent, diod with
//! `aname=/proc`) as a read-only FUSE file system, over gproc's own 9P
//! client. For machines without the kernel's 9p module, and for users who
//! cannot `mount -t 9p`: where `fusermount3` exists, no root is needed.
//!
//! How the 9P tree becomes a FUSE one:
//! - node ids are the server's `qid.path` (see [`inodes`]), so `stat`
//!   shows the server's inode numbers; the kernel's lookup counts are kept
//!   and `forget` drops entries;
//! - a file is read whole at `open` into a per-handle snapshot served with
//!   `direct_io`: /proc files report size 0, which the page cache would
//!   take at its word, and a reader in chunks never sees a torn file;
//! - a directory is listed whole at `opendir`; readdir cookies are indexes
//!   into that snapshot, so resuming with any buffer size is exact;
//! - from a gproc server (its root has `.gproc`), which serves every open
//!   file and listing as a snapshot, a short read or listing is the end:
//!   the closing empty read is not sent;
//! - a lookup sends its walk and getattr together (one round trip with a
//!   gproc server, which holds a request on a fid until the walk making
//!   it is done; two with a server that answers the early getattr with
//!   an error);
//! - errors carry the server's errno ([`ClientError::errno`]); an inode
//!   whose path is gone or now names another file answers ESTALE, which
//!   makes the kernel look the name up again;
//! - attributes and names are cached by the kernel for [`DEFAULT_TTL`]
//!   (`--ttl`): long enough that `ls -l` does not stat twice, short enough
//!   that processes appear and vanish as on a local /proc; a lookup's fid
//!   and attributes are kept for the same TTL ([`fids`]), so the open or
//!   stat that follows it costs one round trip less, and a lookup inside
//!   a directory just looked up walks on from that directory's fid;
//! - the connection is re-dialled and re-attached on the first operation
//!   after it is lost ([`connection`], a [`Redialer`]); nothing on the
//!   server outlives an operation, so nothing needs replaying.
//!
//! Depends on [`gproc::client`] and `fuser`; nothing of the server side.
//!
//! [`ClientError::errno`]: gproc::client::ClientError::errno
//! [`Redialer`]: gproc::client::redial::Redialer

pub mod fids;
pub mod fs;
pub mod inodes;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fuser::{Config, MountOption, Session, SessionACL};
use tokio::signal::unix::{SignalKind, signal};

pub use crate::remote::connection;
pub use fs::{FuseSettings, GprocFuse};
pub use gproc::client::redial::Target;

/// Attribute and entry TTL: how long the kernel trusts a name or a file's
/// attributes before asking again. /proc changes all the time; one second
/// matches the aggregator's default cache TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// What to mount where.
#[derive(Debug, Clone)]
pub struct MountRequest {
    /// The server and how to attach.
    pub target: Target,
    /// An existing directory to mount on.
    pub mountpoint: PathBuf,
    /// Attribute and entry TTL.
    pub ttl: Duration,
}

/// Mounts `req`, calls `ready` once the mount is usable, and serves it
/// until it is unmounted: by `fusermount3 -u` (or `umount`), or by SIGINT
/// or SIGTERM, on which it unmounts itself (lazily if the mount is busy,
/// so the process exits once the last user lets go). A second signal
/// exits at once.
///
/// # Errors
/// The server cannot be reached (checked before mounting, so a typo does
/// not leave a dead mount), the mount fails, or the FUSE session ends with
/// an error.
pub async fn mount(req: MountRequest, ready: impl FnOnce()) -> Result<()> {
    let remote = connection(req.target.clone());
    // The client's errors name the server already; no context chain (it
    // would repeat the I/O error's text).
    let root = remote
        .root()
        .await
        .map_err(|e| anyhow::anyhow!("cannot attach: {e}"))?;
    let root_qid = root.qid();
    if !root_qid.is_dir() {
        bail!(
            "{} aname {:?}: the attach root is not a directory",
            req.target.addr,
            req.target.aname
        );
    }
    // A gproc agent or aggregator has `/.gproc` (an aggregator shows it
    // to its administrators): it serves snapshots, read without the
    // closing empty read. Any other server is read to its empty read.
    let snapshots = root.walk(".gproc").await.is_ok();
    drop(root);
    // SAFETY: getegid/geteuid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let fs = GprocFuse::new(
        tokio::runtime::Handle::current(),
        remote,
        root_qid,
        FuseSettings {
            ttl: req.ttl,
            uid,
            gid,
            max_bytes: req.target.opts.max_read_bytes,
            snapshots,
        },
    );
    let mut config = Config::default();
    config.mount_options = vec![
        // Read-write so that a process's ctl can be written (the server
        // decides, and has no ctl files unless its control is on); every
        // other write is refused here with EROFS.
        MountOption::RW,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        MountOption::FSName(format!("gproc:{}", req.target.addr)),
        MountOption::Subtype("gproc".into()),
    ];
    // Only the mounting user: every access goes to the server as that
    // user, so letting others in would hand them this user's view.
    config.acl = SessionACL::Owner;
    // One session thread is enough: it only dispatches; the work runs on
    // the tokio runtime.
    config.n_threads = Some(1);
    let mp = req.mountpoint.clone();
    let mut session = tokio::task::spawn_blocking(move || Session::new(fs, &mp, &config))
        .await
        .context("mount task failed")?
        .with_context(|| format!("cannot mount on {}", req.mountpoint.display()))?;
    let mut unmounter = Some(session.unmount_callable());
    tracing::info!(
        server = %req.target.addr,
        mountpoint = %req.mountpoint.display(),
        "mounted"
    );
    ready();
    // A plain thread, not spawn_blocking: the runtime waits for blocking
    // tasks when it shuts down, and this one may be stuck reading
    // /dev/fuse when a second signal makes us leave.
    let (done_tx, mut run) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("gproc-fuse".into())
        .spawn(move || {
            let _ = done_tx.send(session.run());
        })
        .context("cannot start the FUSE session thread")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut signalled = false;
    loop {
        tokio::select! {
            r = &mut run => {
                r.context("FUSE session thread died")?
                    .context("FUSE session failed")?;
                tracing::info!(mountpoint = %req.mountpoint.display(), "unmounted");
                return Ok(());
            }
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        if signalled {
            bail!(
                "second signal: exiting with {} still mounted (fusermount3 -u it)",
                req.mountpoint.display()
            );
        }
        signalled = true;
        tracing::info!(mountpoint = %req.mountpoint.display(), "signal: unmounting");
        let mp = req.mountpoint.clone();
        let Some(mut u) = unmounter.take() else {
            continue;
        };
        let res = tokio::task::spawn_blocking(move || {
            u.unmount().or_else(|e| {
                // Busy (a shell's cwd, an open file): detach now, and the
                // session ends when the last user lets go.
                tracing::warn!("unmount {}: {e}; detaching lazily", mp.display());
                lazy_unmount(&mp)
            })
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot unmount {}: {e}", req.mountpoint.display()),
            Err(e) => tracing::warn!("unmount task failed: {e}"),
        }
    }
}

/// `umount -l`: the mount leaves the namespace now and goes away when
/// unused. As root that is `umount2(MNT_DETACH)`; otherwise the setuid
/// helper does it.
fn lazy_unmount(mp: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(mp.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let st = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(mp)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("fusermount3 -u -z: {st}")))
    }
}

//! The FUSE side: [`GprocFuse`] implements `fuser::Filesystem` over the
//! [`Redialer`] 9P connection.
//!
//! fuser calls us synchronously on its session thread. Every operation
//! that talks to the server is spawned onto the tokio runtime and replies
//! from there (fuser's `Reply*` objects are `Send`), so a slow server never
//! blocks the session thread and operations run concurrently, multiplexed
//! by tag on the one connection. Operations answered from memory (`read`
//! of an open snapshot, `readdir`, `forget`, `release`) reply at once.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use tokio::runtime::Handle;

use super::fids::FidCache;
use super::inodes::{Inode, InodeTable, ROOT_INO};
use gproc::client::redial::Redialer;
use gproc::client::{ClientError, DirEntryInfo, FidHandle, FileKind, Metadata, OpenMode};
use gproc::proto::{Qid, errno};
use gproc::sys;

/// One entry of an open directory's snapshot.
#[derive(Debug, Clone)]
struct DirItem {
    ino: u64,
    kind: FileType,
    name: String,
}

/// Open files and directories, by file handle.
#[derive(Default)]
struct Handles {
    /// An open file's contents, read whole at open.
    files: HashMap<u64, Bytes>,
    /// An open directory's entries, listed whole at opendir; readdir
    /// offsets are indexes into it, so a resumed readdir is exact however
    /// small the kernel's buffer.
    dirs: HashMap<u64, Arc<Vec<DirItem>>>,
}

/// State shared by the session thread and the spawned operations.
struct Inner {
    remote: Redialer,
    inodes: Mutex<InodeTable>,
    /// Each recent lookup's fid and attributes, reused for the TTL.
    fids: Mutex<FidCache>,
    handles: Mutex<Handles>,
    next_fh: AtomicU64,
    /// How long the kernel may cache attributes and names.
    ttl: Duration,
    /// Owner reported for files whose server gives no numeric ids
    /// (plain 9P2000): the mounting user.
    uid: u32,
    /// Group reported likewise.
    gid: u32,
    /// Largest file or listing snapshot.
    max_bytes: u64,
    /// The server serves open-time snapshots (gproc's): files and listings
    /// are read without the closing empty read.
    snapshots: bool,
}

/// The mount's `fuser::Filesystem`.
pub struct GprocFuse {
    rt: Handle,
    inner: Arc<Inner>,
}

/// Settings of a [`GprocFuse`].
#[derive(Debug, Clone)]
pub struct FuseSettings {
    /// Attribute and entry TTL.
    pub ttl: Duration,
    /// Owner for servers without numeric ids.
    pub uid: u32,
    /// Group for servers without numeric ids.
    pub gid: u32,
    /// Largest snapshot of one file or listing.
    pub max_bytes: u64,
    /// The server is a gproc agent or aggregator, which serves every open
    /// file and listing as a snapshot taken at open: a short read is the
    /// end ([`FidHandle::read_snapshot`], [`FidHandle::list_snapshot`]).
    pub snapshots: bool,
}

fn errno_of(e: &ClientError) -> Errno {
    Errno::from_i32(i32::try_from(e.errno()).unwrap_or(libc::EIO))
}

/// An error for an operation on a known inode: a path that no longer
/// exists means the file the kernel holds is gone, which is ESTALE (the
/// kernel then looks the name up again and reports ENOENT, or finds the
/// new file, such as a process with a reused pid).
fn errno_for_inode(e: &ClientError) -> Errno {
    if e.errno() == errno::ENOENT {
        Errno::ESTALE
    } else {
        errno_of(e)
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::File | FileKind::Unknown => FileType::RegularFile,
    }
}

/// Whether a path from the attach root names a `ctl` file: a process's
/// (`.../<pid>/ctl`, `pid/<pid>@<node>/ctl`) or a job's (`job/<id>/ctl`).
fn is_ctl_path(path: &str) -> bool {
    let Some(dir) = path.strip_suffix("/ctl") else {
        return false;
    };
    let pid = dir
        .rsplit('/')
        .next()
        .and_then(|d| d.split('@').next())
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    let job = dir
        .strip_prefix("job/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    pid || job
}

/// Joins a node path and a name (`""` + `1` is `1`; `1` + `status` is
/// `1/status`); `.` and `..` resolve here, `..` stopping at the root.
fn child_path(parent: &str, name: &str) -> String {
    match name {
        "." => parent.to_string(),
        ".." => match parent.rsplit_once('/') {
            Some((up, _)) => up.to_string(),
            None => String::new(),
        },
        _ if parent.is_empty() => name.to_string(),
        _ => format!("{parent}/{name}"),
    }
}

impl Inner {
    fn attr(&self, ino: u64, m: &Metadata) -> FileAttr {
        let kind = file_type(m.kind());
        let dir = kind == FileType::Directory;
        FileAttr {
            ino: INodeNo(ino),
            size: m.size,
            blocks: m.size.div_ceil(512),
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime.unwrap_or(m.mtime),
            crtime: m.mtime,
            kind,
            perm: (m.mode & 0o7777) as u16,
            nlink: m
                .nlink
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
                .unwrap_or(if dir { 2 } else { 1 }),
            uid: m.uid.unwrap_or(self.uid),
            gid: m.gid.unwrap_or(self.gid),
            rdev: u32::try_from(m.rdev).unwrap_or(0),
            blksize: 4096,
            flags: 0,
        }
    }

    fn inode(&self, ino: u64) -> Result<Inode, Errno> {
        sys::lock(&self.inodes).get(ino).ok_or(Errno::ESTALE)
    }

    /// Whether a walk to `node`'s path still finds the same file. The root
    /// is always itself (a reconnect may legitimately change its qid).
    fn same_file(&self, node: &Inode, qid: &Qid) -> Result<(), Errno> {
        if node.ino == ROOT_INO {
            if node.qid != *qid {
                sys::lock(&self.inodes).set_root_qid(*qid);
            }
            return Ok(());
        }
        if node.qid.path == qid.path {
            Ok(())
        } else {
            Err(Errno::ESTALE)
        }
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, Handles> {
        sys::lock(&self.handles)
    }

    async fn lookup(&self, parent: u64, name: &str) -> Result<FileAttr, Errno> {
        let dir = self.inode(parent)?;
        let path = child_path(&dir.path, name);
        let p = &path;
        if path.is_empty() {
            // The root itself: its attributes, no fid to keep.
            let meta = self
                .remote
                .call(|root| async move { root.metadata(p).await })
                .await
                .map_err(|e| errno_of(&e))?;
            let ino = sys::lock(&self.inodes).lookup(parent, &path, meta.qid, meta.kind());
            return Ok(self.attr(ino, &meta));
        }
        let (fid, meta) = match self.lookup_from_parent(parent, name).await {
            Some(found) => found.map_err(|e| errno_of(&e))?,
            None => self
                .remote
                .call(|root| async move { root.walk_getattr(p).await })
                .await
                .map_err(|e| errno_of(&e))?,
        };
        let ino = sys::lock(&self.inodes).lookup(parent, &path, meta.qid, meta.kind());
        let attr = self.attr(ino, &meta);
        // Kept for the open or getattr that usually follows at once.
        sys::lock(&self.fids).insert(ino, fid, meta, Instant::now());
        Ok(attr)
    }

    /// A lookup of `name` in `parent` from the fid the parent's own lookup
    /// kept (one name to walk instead of the whole path): `None` when
    /// there is none or the connection failed (the caller walks from the
    /// root). The server's own error for the name is the answer: the
    /// parent was looked up less than a TTL ago, as the kernel itself
    /// trusts. The walk is to a new fid, so that the getattr can go out
    /// with it ([`FidHandle::walk_getattr`]); the parent's fid is clunked
    /// in the background when dropped.
    async fn lookup_from_parent(
        &self,
        parent: u64,
        name: &str,
    ) -> Option<Result<(FidHandle, Metadata), ClientError>> {
        if name == "." || name == ".." {
            return None;
        }
        let f = sys::lock(&self.fids).take_fid(parent, Instant::now())?;
        match f.walk_getattr(name).await {
            Ok(found) => Some(Ok(found)),
            Err(e @ ClientError::Remote { .. }) => Some(Err(e)),
            Err(_) => None,
        }
    }

    async fn getattr(&self, ino: u64) -> Result<FileAttr, Errno> {
        // Within the TTL of a lookup: what it found, as the kernel itself
        // would have trusted it.
        if let Some(meta) = sys::lock(&self.fids).attr(ino, Instant::now()) {
            return Ok(self.attr(ino, &meta));
        }
        let node = self.inode(ino)?;
        let p = &*node.path;
        let meta = self
            .remote
            .call(|root| async move { root.metadata(p).await })
            .await
            .map_err(|e| errno_for_inode(&e))?;
        self.same_file(&node, &meta.qid)?;
        Ok(self.attr(ino, &meta))
    }

    /// The fid a lookup of `ino` walked less than a TTL ago, opened for
    /// reading; `None` if there is none or it fails (the caller then walks
    /// the path, so the answer is the server's for the path as it is now).
    async fn open_cached(&self, ino: u64) -> Option<FidHandle> {
        let mut f = sys::lock(&self.fids).take_fid(ino, Instant::now())?;
        f.open(OpenMode::Read).await.ok()?;
        Some(f)
    }

    /// The contents of the file behind the fid a lookup of `ino` walked
    /// less than a TTL ago, as [`open_cached`](Self::open_cached) then a
    /// whole read; from a gproc server, the open and the first read leave
    /// together ([`FidHandle::open_read_snapshot`]).
    async fn read_cached(&self, ino: u64) -> Option<Bytes> {
        let max = self.max_bytes;
        if !self.snapshots {
            let f = self.open_cached(ino).await?;
            return f.read_whole(max, false).await.ok();
        }
        let mut f = sys::lock(&self.fids).take_fid(ino, Instant::now())?;
        // Dropping `f` clunks it in the background.
        f.open_read_snapshot(max).await.ok()
    }

    async fn readlink(&self, ino: u64) -> Result<String, Errno> {
        let node = self.inode(ino)?;
        let p = &*node.path;
        let (qid, target) = self
            .remote
            .call(|root| async move {
                let f = root.walk(p).await?;
                let t = f.readlink("").await?;
                Ok((f.qid(), t))
            })
            .await
            .map_err(|e| errno_for_inode(&e))?;
        self.same_file(&node, &qid)?;
        // A 9P2000.u server that cannot read a link (a process's `exe`
        // without permission) sends an empty stat extension; Linux has no
        // empty symlinks, so that is an error, not a target.
        if target.is_empty() {
            return Err(Errno::EIO);
        }
        Ok(target)
    }

    /// Reads the whole file into a new handle's snapshot.
    async fn open(&self, ino: u64) -> Result<u64, Errno> {
        let node = self.inode(ino)?;
        let (max, snapshots) = (self.max_bytes, self.snapshots);
        let data = match self.read_cached(ino).await {
            Some(data) => data,
            None => {
                let p = &*node.path;
                let (qid, data) = self
                    .remote
                    .call(|root| async move {
                        if snapshots {
                            // Walk, open and first read in one round trip;
                            // dropping the handle clunks it.
                            let (_f, walked, data) = root.walk_open_read_snapshot(p, max).await?;
                            return Ok((walked, data));
                        }
                        let mut f = root.walk(p).await?;
                        let walked = f.qid();
                        f.open(OpenMode::Read).await?;
                        // Dropping `f` clunks it in the background: the
                        // snapshot is all we keep, and the reply need not
                        // wait for that.
                        Ok((walked, f.read_whole(max, snapshots).await?))
                    })
                    .await
                    .map_err(|e| errno_for_inode(&e))?;
                self.same_file(&node, &qid)?;
                data
            }
        };
        let fh = self.new_fh();
        self.handles().files.insert(fh, data);
        Ok(fh)
    }

    /// Opens a process's `ctl` for writing: the server decides whether
    /// this user may (control on, the process theirs to see); nothing is
    /// held but the path, and each write goes to the server at once.
    async fn open_ctl(&self, ino: u64) -> Result<u64, Errno> {
        let node = self.inode(ino)?;
        let p = &*node.path;
        let qid = self
            .remote
            .call(|root| async move {
                let mut f = root.walk(p).await?;
                let walked = f.qid();
                f.open(OpenMode::Write).await?;
                let _ = f.clunk().await;
                Ok(walked)
            })
            .await
            .map_err(|e| errno_for_inode(&e))?;
        self.same_file(&node, &qid)?;
        Ok(self.new_fh())
    }

    /// One write to a `ctl` file: a command, sent as this user.
    async fn write_ctl(&self, ino: u64, data: Vec<u8>) -> Result<u32, Errno> {
        let node = self.inode(ino)?;
        let (p, data) = (&*node.path, &data[..]);
        self.remote
            .call(|root| async move {
                let mut f = root.walk(p).await?;
                f.open(OpenMode::Write).await?;
                let r = f.write_at(0, data).await;
                let _ = f.clunk().await;
                r
            })
            .await
            .map_err(|e| errno_for_inode(&e))
    }

    /// Lists the directory into a new handle's snapshot.
    async fn opendir(&self, ino: u64) -> Result<u64, Errno> {
        let node = self.inode(ino)?;
        let (max, snapshots) = (self.max_bytes, self.snapshots);
        let cached = match self.open_cached(ino).await {
            Some(d) => d.list_whole(max, snapshots).await.ok(),
            None => None,
        };
        let entries: Vec<DirEntryInfo> = match cached {
            Some(entries) => entries,
            None => {
                let p = &*node.path;
                let (qid, entries) = self
                    .remote
                    .call(|root| async move {
                        let mut d = root.walk(p).await?;
                        let walked = d.qid();
                        d.open(OpenMode::Read).await?;
                        Ok((walked, d.list_whole(max, snapshots).await?))
                    })
                    .await
                    .map_err(|e| errno_for_inode(&e))?;
                self.same_file(&node, &qid)?;
                entries
            }
        };
        let mut items = Vec::with_capacity(entries.len() + 2);
        items.push(DirItem {
            ino,
            kind: FileType::Directory,
            name: ".".into(),
        });
        items.push(DirItem {
            ino: node.parent,
            kind: FileType::Directory,
            name: "..".into(),
        });
        {
            let t = sys::lock(&self.inodes);
            items.extend(entries.into_iter().map(|e| DirItem {
                ino: t.peek(e.qid.path),
                kind: file_type(e.kind),
                name: e.name,
            }));
        }
        let fh = self.new_fh();
        self.handles().dirs.insert(fh, Arc::new(items));
        Ok(fh)
    }
}

impl GprocFuse {
    /// Whether inode `ino` is a process's `ctl` file (`.../<pid>/ctl`) or
    /// a job's (`job/<id>/ctl`), the only files a write may reach.
    fn is_ctl(&self, ino: u64) -> bool {
        self.inner.inode(ino).is_ok_and(|n| is_ctl_path(&n.path))
    }

    /// A file system over `remote`, whose attach root has `root_qid`;
    /// operations run on `rt`.
    pub fn new(rt: Handle, remote: Redialer, root_qid: Qid, s: FuseSettings) -> Self {
        let inner = Arc::new(Inner {
            remote,
            inodes: Mutex::new(InodeTable::new(root_qid)),
            fids: Mutex::new(FidCache::new(s.ttl)),
            handles: Mutex::new(Handles::default()),
            next_fh: AtomicU64::new(1),
            ttl: s.ttl,
            uid: s.uid,
            gid: s.gid,
            max_bytes: s.max_bytes,
            snapshots: s.snapshots,
        });
        if !s.ttl.is_zero() {
            // An idle mount holds no fid on the server for long: expired
            // entries go within two TTLs.
            let weak = Arc::downgrade(&inner);
            rt.spawn(async move {
                let mut tick = tokio::time::interval(s.ttl);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    sys::lock(&inner.fids).sweep(Instant::now());
                }
            });
        }
        GprocFuse { rt, inner }
    }
}

impl Filesystem for GprocFuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // 9P names are UTF-8: a name that is not cannot exist there.
        let Some(name) = name.to_str().map(str::to_string) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let inner = self.inner.clone();
        self.rt.spawn(async move {
            match inner.lookup(parent.0, &name).await {
                Ok(attr) => reply.entry(&inner.ttl, &attr, Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if sys::lock(&self.inner.inodes).forget(ino.0, nlookup) {
            sys::lock(&self.inner.fids).forget(ino.0);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let inner = self.inner.clone();
        self.rt.spawn(async move {
            match inner.getattr(ino.0).await {
                Ok(attr) => reply.attr(&inner.ttl, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inner = self.inner.clone();
        self.rt.spawn(async move {
            match inner.readlink(ino.0).await {
                Ok(t) => reply.data(t.as_bytes()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            // Only a process's ctl is ever written (`echo term > ctl`).
            if flags.acc_mode() != OpenAccMode::O_WRONLY || !self.is_ctl(ino.0) {
                reply.error(Errno::EROFS);
                return;
            }
            let inner = self.inner.clone();
            self.rt.spawn(async move {
                match inner.open_ctl(ino.0).await {
                    Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                    Err(e) => reply.error(e),
                }
            });
            return;
        }
        let inner = self.inner.clone();
        self.rt.spawn(async move {
            match inner.open(ino.0).await {
                // direct_io: /proc files report size 0, so the page cache
                // would read nothing; the kernel passes reads through and
                // a read's length is what we return.
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = self.inner.handles().files.get(&fh.0).cloned();
        let Some(data) = data else {
            reply.error(Errno::EBADF);
            return;
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.inner.handles().files.remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let inner = self.inner.clone();
        self.rt.spawn(async move {
            match inner.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let items = self.inner.handles().dirs.get(&fh.0).cloned();
        let Some(items) = items else {
            reply.error(Errno::EBADF);
            return;
        };
        // Entry i carries cookie i+1: the kernel resumes from the cookie of
        // the last entry it consumed, which is the index of the next one.
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, it) in items.iter().enumerate().skip(start) {
            if reply.add(INodeNo(it.ino), i as u64 + 1, it.kind, &it.name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner.handles().dirs.remove(&fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes (to ctl files) go to the server at once: nothing to flush.
        reply.ok();
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if !self.is_ctl(ino.0) {
            reply.error(Errno::EROFS);
            return;
        }
        let inner = self.inner.clone();
        let data = data.to_vec();
        self.rt.spawn(async move {
            match inner.write_ctl(ino.0, data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The truncate a shell's `>` sends before writing a ctl: nothing
        // to truncate (writes are commands), so its attributes as they are.
        let truncate_only = size == Some(0) && mode.is_none() && uid.is_none() && gid.is_none();
        if !truncate_only || !self.is_ctl(ino.0) {
            reply.error(Errno::EROFS);
            return;
        }
        let inner = self.inner.clone();
        self.rt.spawn(async move {
            match inner.getattr(ino.0).await {
                Ok(attr) => reply.attr(&inner.ttl, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Writing is refused here but for a ctl (the server decides when
        // it is opened); reading is the server's decision, made when the
        // file is opened.
        if mask.contains(AccessFlags::W_OK) && !self.is_ctl(ino.0) {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // 9P has no extended attributes worth passing on; ENOSYS makes the
        // kernel stop asking (ls -l probes security.selinux on every file).
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Like procfs: no blocks, no free inodes; a non-zero block size and
        // name length so that df and pathconf callers are content.
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctl_paths_are_processes_and_jobs() {
        for p in [
            "n1/42/ctl",
            "pid/42@n1/ctl",
            "42/ctl",
            "job/42/ctl",
            "job/1.pbs/ctl",
        ] {
            assert!(is_ctl_path(p), "{p}");
        }
        for p in [
            "n1/42/status",
            "ps",
            "job/ctl",
            "job/42/n1/ctl",
            "n1/x/ctl",
            "ctl",
        ] {
            assert!(!is_ctl_path(p), "{p}");
        }
    }

    #[test]
    fn child_paths_resolve_dots_and_stop_at_the_root() {
        assert_eq!(child_path("", "1"), "1");
        assert_eq!(child_path("1", "status"), "1/status");
        assert_eq!(child_path("n1/1", ".."), "n1");
        assert_eq!(child_path("n1", ".."), "");
        assert_eq!(child_path("", ".."), "");
        assert_eq!(child_path("n1", "."), "n1");
    }

    #[test]
    fn missing_paths_of_known_inodes_are_stale() {
        let gone = ClientError::Remote {
            server: "s".into(),
            op: "walk",
            path: "/1".into(),
            errno: errno::ENOENT,
            message: String::new(),
        };
        assert_eq!(errno_for_inode(&gone), Errno::ESTALE);
        assert_eq!(errno_of(&gone), Errno::ENOENT);
        let denied = ClientError::Remote {
            server: "s".into(),
            op: "open",
            path: "/1/environ".into(),
            errno: errno::EACCES,
            message: String::new(),
        };
        assert_eq!(errno_for_inode(&denied), Errno::EACCES);
    }
}

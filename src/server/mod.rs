//! The 9P server core: the [`Filesystem`] trait that the agent, the
//! simulator and the aggregator implement, the per-connection [`session`]
//! that enforces the protocol before a filesystem sees a request, and the
//! TCP/Unix [`listener`].
//!
//! The shape follows Plan 9's lib9p `Srv`: one method per operation, with
//! the protocol bookkeeping (fid table, tags, flush, walk semantics, dialect
//! differences) written once in the session. Methods take dialect-neutral
//! arguments and return typed results; the session turns them into
//! 9P2000, 9P2000.u or 9P2000.L replies.

mod access;
mod chunks;
pub mod fair;
mod gauges;
pub mod listener;
pub mod session;
mod snapshot;

use bytes::Bytes;
use std::future::Future;
use thiserror::Error;

use crate::proto::{self, DirEntry, Metadata, Qid, Statfs, errno};

pub use access::{AccessPolicy, Claim, Identity, Proof};
pub use chunks::Chunks;
pub use fair::{Principal, Refused, Share, Shares};
pub use gauges::{Gauges, Level};
pub use listener::{Server, ServerConfig};
pub use snapshot::{Charge, Meter, SnapshotBudget};

/// An error a filesystem returns: an errno (sent as is in 9P2000.L, with
/// its string in .u, as its string in 9P2000) and optional context for logs.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}{}", errno::to_string(*.errno), .context.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
pub struct FsError {
    /// Linux errno.
    pub errno: u32,
    /// What failed, for logs; never sent to the client.
    pub context: Option<String>,
}

impl FsError {
    /// An error with just an errno.
    pub const fn new(errno: u32) -> Self {
        Self {
            errno,
            context: None,
        }
    }

    /// Adds context for logs.
    pub fn with(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// No such file (or it vanished).
    pub const NOENT: FsError = FsError::new(errno::ENOENT);
    /// Permission denied.
    pub const ACCES: FsError = FsError::new(errno::EACCES);
    /// Not a directory.
    pub const NOTDIR: FsError = FsError::new(errno::ENOTDIR);
    /// Is a directory.
    pub const ISDIR: FsError = FsError::new(errno::EISDIR);
    /// Invalid argument.
    pub const INVAL: FsError = FsError::new(errno::EINVAL);
    /// Read-only file system.
    pub const ROFS: FsError = FsError::new(errno::EROFS);
    /// Not supported.
    pub const OPNOTSUPP: FsError = FsError::new(errno::EOPNOTSUPP);
    /// I/O error.
    pub const IO: FsError = FsError::new(errno::EIO);
    /// Bad fid.
    pub const BADF: FsError = FsError::new(errno::EBADF);
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError {
            errno: errno::from_io(&e),
            context: Some(e.to_string()),
        }
    }
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, FsError>;

/// Who is on the other end of a connection, as far as the transport knows.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Printable address for logs (`127.0.0.1:40000`, `unix:pid=123`).
    pub addr: String,
    /// The peer's uid from `SO_PEERCRED` (Unix sockets only): the one
    /// identity a client cannot forge.
    pub uid: Option<u32>,
    /// The peer's primary gid from `SO_PEERCRED`.
    pub gid: Option<u32>,
}

/// What a filesystem needs of a `Tattach`: the tree asked for and who is
/// attaching (resolved by the session under its [`AccessPolicy`]).
#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// Which tree (the agent accepts "" and "/proc").
    pub aname: String,
    /// Who is attaching: the same identity is passed with every later call
    /// on fids walked from this attach.
    pub who: Identity,
}

/// How a file is opened, independent of dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    /// Wants to read.
    pub read: bool,
    /// Wants to write.
    pub write: bool,
    /// Wants truncation.
    pub truncate: bool,
}

impl OpenFlags {
    /// Read-only.
    pub const READ: OpenFlags = OpenFlags {
        read: true,
        write: false,
        truncate: false,
    };

    /// From a 9P2000/.u `Topen` mode.
    pub fn from_9p(mode: u8) -> Self {
        let (read, write) = match mode & 3 {
            proto::om::READ | proto::om::EXEC => (true, false),
            proto::om::WRITE => (false, true),
            _ => (true, true),
        };
        OpenFlags {
            read,
            write,
            truncate: mode & proto::om::TRUNC != 0,
        }
    }

    /// From Linux open flags in `Tlopen`.
    pub fn from_linux(flags: u32) -> Self {
        let acc = flags & 3;
        OpenFlags {
            read: acc == 0 || acc == 2,
            write: acc == 1 || acc == 2,
            truncate: flags & 0o1000 != 0,
        }
    }
}

/// What an open fid holds, taken whole at open. The session keeps it,
/// charges it to the connection's budget, serves reads and directory reads
/// from it and numbers directory cookies (entry `i` has cookie `i + 1`), so
/// a client reading in chunks never sees a torn file and cookies are stable.
#[derive(Debug, Clone)]
pub enum Contents {
    /// A file's bytes.
    File(Bytes),
    /// A file that, like `/proc`'s own, is made anew when it is read again
    /// from offset 0: after the fid's first read, a read at offset 0 calls
    /// [`Filesystem::open`] again (as the same identity) and serves the new
    /// bytes. A reader can then keep the file open and read it from 0 for
    /// the current content: one message per refresh instead of a walk, an
    /// open, reads and a clunk. Charged as [`Contents::File`].
    Fresh(Bytes),
    /// A file's bytes held anyway by a cache bounded by its own byte limit,
    /// so holding them costs nothing more: not charged.
    Shared(Bytes),
    /// A file held, as [`Contents::Shared`], by a cache, in several
    /// buffers ([`Chunks`]): not charged, and not joined into one.
    Chunks(std::sync::Arc<Chunks>),
    /// A directory's entries in listing order, `.` and `..` included where
    /// the tree wants them (9P2000 directory reads skip them). Their
    /// `offset` is ignored: the session numbers them.
    Dir(Vec<DirEntry>),
}

/// A tree served over 9P. Implemented by the agent (a local `/proc`), the
/// simulator and the aggregator.
///
/// A fid's state is a [`Node`](Self::Node): only *where* it is. What an
/// open fid holds is the [`Contents`] returned by [`open`](Self::open),
/// owned by the session (lib9p's `readbuf`/`dirread9p`, virtiofsd's
/// `Inode`/`Handle`). Every call carries the [`Identity`] the fid was
/// attached as, so a filesystem can decide visibility at every operation.
///
/// Concurrency: the session runs requests of one connection concurrently,
/// so every method may be called concurrently, including on the same node.
/// The session guarantees the protocol rules before a call: the fid
/// exists, a walk starts from a directory, names contain no `/`, reads are
/// on opened fids.
pub trait Filesystem: Send + Sync + 'static {
    /// Where a fid is. `Clone` serves `Twalk` with no names (fid cloning).
    type Node: Clone + Send + Sync + 'static;

    /// Attaches to the root of the tree named by `req.aname`.
    fn attach(
        &self,
        req: &AttachRequest,
    ) -> impl Future<Output = FsResult<(Self::Node, Qid)>> + Send;

    /// Walks one element from a directory. `..` at the root stays at the
    /// root.
    fn walk(
        &self,
        who: &Identity,
        dir: &Self::Node,
        name: &str,
    ) -> impl Future<Output = FsResult<(Self::Node, Qid)>> + Send;

    /// Metadata of the file.
    fn getattr(
        &self,
        who: &Identity,
        node: &Self::Node,
    ) -> impl Future<Output = FsResult<Metadata>> + Send;

    /// Opens the file: its contents, taken now (see [`Contents`]).
    fn open(
        &self,
        who: &Identity,
        node: &Self::Node,
        flags: OpenFlags,
    ) -> impl Future<Output = FsResult<Contents>> + Send;

    /// Target of a symbolic link.
    fn readlink(
        &self,
        _who: &Identity,
        _node: &Self::Node,
    ) -> impl Future<Output = FsResult<String>> + Send {
        async { Err(FsError::INVAL) }
    }

    /// File system statistics (`df`). The default is what v9fs needs:
    /// V9FS_MAGIC and non-zero block size and name length.
    fn statfs(
        &self,
        _who: &Identity,
        _node: &Self::Node,
    ) -> impl Future<Output = FsResult<Statfs>> + Send {
        async {
            Ok(Statfs {
                ty: proto::V9FS_MAGIC,
                bsize: 4096,
                namelen: 255,
                ..Statfs::default()
            })
        }
    }

    /// Writes to a file opened for writing. Read-only trees keep the
    /// default.
    fn write(
        &self,
        _who: &Identity,
        _node: &Self::Node,
        _offset: u64,
        _data: Bytes,
    ) -> impl Future<Output = FsResult<u32>> + Send {
        async { Err(FsError::ROFS) }
    }

    /// A request was answered: its kind (one of a few fixed names, see
    /// [`session::op_name`]), how long the session took to answer it, and
    /// whether the answer was a success. For counters (the aggregator's
    /// `/metrics`); the default ignores it. Called on the request's task:
    /// keep it cheap.
    fn request_done(&self, _op: &'static str, _elapsed: std::time::Duration, _ok: bool) {}

    /// Truncates the file to length zero: what a shell's `>` asks (through
    /// v9fs, a `Tsetattr` of size 0 after the open). Only files that take
    /// whole writes (a `ctl`) accept it; the default refuses.
    fn truncate(
        &self,
        _who: &Identity,
        _node: &Self::Node,
    ) -> impl Future<Output = FsResult<()>> + Send {
        async { Err(FsError::ROFS) }
    }

    /// The fid is forgotten. Dropping the node is usually enough.
    fn clunk(&self, _who: &Identity, _node: Self::Node) -> impl Future<Output = ()> + Send {
        async {}
    }
}

#[cfg(test)]
mod tests;

//! An opened file's contents, taken whole at open: reads and directory
//! reads are served from it, so a client reading in chunks never sees a
//! torn file, and directory cookies stay stable (entry index + 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::{FsError, FsResult};
use crate::proto::{DirEntry, errno};

/// A count of bytes held by open snapshots against a limit.
#[derive(Debug)]
pub struct Meter {
    used: AtomicUsize,
    limit: usize,
}

impl Meter {
    /// A meter allowing `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes if they fit, or if nothing is held and `first_fits`
    /// (so one file of any size the reader allows stays readable).
    fn take(&self, n: usize, first_fits: bool) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                let next = u.saturating_add(n);
                (next <= self.limit || (first_fits && u == 0)).then_some(next)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Where an open's snapshot is charged: its connection's meter and the
/// server's. Every open holds its file whole until clunk, so without this
/// one client opening a large file many times (50 opens of a 5 MB
/// `/proc/kallsyms`) could hold any amount of a node's memory; the fid
/// limit alone does not bound bytes.
#[derive(Debug, Clone)]
pub struct SnapshotBudget {
    conn: Arc<Meter>,
    server: Arc<Meter>,
}

impl SnapshotBudget {
    /// A budget for one connection of a server whose connections share
    /// `server`.
    pub fn new(per_connection: usize, server: Arc<Meter>) -> Self {
        Self {
            conn: Meter::new(per_connection),
            server,
        }
    }

    /// No limit: for callers that are not a network peer (tests, the
    /// in-process benchmark).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX, Meter::new(usize::MAX))
    }

    /// Charges `bytes` to the connection and the server. A connection
    /// holding nothing may always take one snapshot past its own limit; the
    /// server's limit is strict.
    ///
    /// # Errors
    /// EMFILE (as for too many fids: the remedy is to clunk open files)
    /// when either limit would be passed.
    pub fn charge(&self, bytes: usize) -> FsResult<Charge> {
        if !self.conn.take(bytes, true) {
            return Err(FsError::new(errno::EMFILE).with(format!(
                "open files of this connection hold {} bytes (limit {}); clunk some",
                self.conn.used(),
                self.conn.limit()
            )));
        }
        if !self.server.take(bytes, false) {
            self.conn.give(bytes);
            return Err(FsError::new(errno::EMFILE).with(format!(
                "open files of all connections hold {} bytes (limit {})",
                self.server.used(),
                self.server.limit()
            )));
        }
        Ok(Charge {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes charged to a [`SnapshotBudget`], given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: SnapshotBudget,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.conn.give(self.bytes);
        self.budget.server.give(self.bytes);
    }
}

/// What an open fid holds: the file's bytes or the directory's entries,
/// and the charge for them (released with the last clone of the fid).
#[derive(Debug)]
pub struct Snapshot {
    body: Body,
    _charge: Option<Charge>,
}

#[derive(Debug)]
enum Body {
    File(Bytes),
    /// Entry `i` carries cookie `i + 1`.
    Dir(Vec<DirEntry>),
}

/// Bytes a directory entry costs in memory, roughly: the struct and its
/// name's heap allocation.
const DIR_ENTRY_COST: usize = std::mem::size_of::<DirEntry>() + 16;

impl Snapshot {
    /// A file's bytes, charged to `budget`.
    ///
    /// # Errors
    /// EMFILE past the budget (see [`SnapshotBudget::charge`]).
    pub fn file(data: Bytes, budget: &SnapshotBudget) -> FsResult<Self> {
        let charge = budget.charge(data.len())?;
        Ok(Self {
            body: Body::File(data),
            _charge: Some(charge),
        })
    }

    /// A file whose bytes are held elsewhere anyway (a cache bounded by
    /// its own byte limit shares them), so holding them costs nothing more.
    pub fn shared_file(data: Bytes) -> Self {
        Self {
            body: Body::File(data),
            _charge: None,
        }
    }

    /// A directory's entries, charged to `budget`.
    ///
    /// # Errors
    /// EMFILE past the budget.
    pub fn dir(entries: Vec<DirEntry>, budget: &SnapshotBudget) -> FsResult<Self> {
        let bytes = entries.iter().map(|e| DIR_ENTRY_COST + e.name.len()).sum();
        let charge = budget.charge(bytes)?;
        Ok(Self {
            body: Body::Dir(entries),
            _charge: Some(charge),
        })
    }

    /// `count` bytes at `offset` of an opened file (empty at EOF).
    ///
    /// # Errors
    /// EBADF when not opened, EISDIR for a directory.
    pub fn read(snap: Option<&Snapshot>, offset: u64, count: u32) -> FsResult<Bytes> {
        match snap.map(|s| &s.body) {
            Some(Body::File(b)) => {
                let start = offset.min(b.len() as u64) as usize;
                let end = start.saturating_add(count as usize).min(b.len());
                Ok(b.slice(start..end))
            }
            Some(Body::Dir(_)) => Err(FsError::ISDIR),
            None => Err(FsError::BADF),
        }
    }

    /// The entries after cookie `offset` of an opened directory.
    ///
    /// # Errors
    /// EBADF when not opened, ENOTDIR for a file.
    pub fn readdir(snap: Option<&Snapshot>, offset: u64) -> FsResult<Vec<DirEntry>> {
        match snap.map(|s| &s.body) {
            Some(Body::Dir(ents)) => Ok(ents[offset.min(ents.len() as u64) as usize..].to_vec()),
            Some(Body::File(_)) => Err(FsError::NOTDIR),
            None => Err(FsError::BADF),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Qid;

    #[test]
    fn reads_slice_and_cookies_resume() {
        let u = SnapshotBudget::unlimited();
        let f = Snapshot::file(Bytes::from_static(b"hello"), &u).unwrap();
        assert_eq!(&Snapshot::read(Some(&f), 1, 3).unwrap()[..], b"ell");
        assert!(Snapshot::read(Some(&f), 9, 3).unwrap().is_empty());
        assert_eq!(Snapshot::read(None, 0, 1).unwrap_err(), FsError::BADF);
        let e = |n: &str, o| DirEntry {
            qid: Qid::default(),
            offset: o,
            ty: 8,
            name: n.into(),
        };
        let d = Snapshot::dir(vec![e("a", 1), e("b", 2)], &u).unwrap();
        assert_eq!(Snapshot::readdir(Some(&d), 1).unwrap(), vec![e("b", 2)]);
        assert!(Snapshot::readdir(Some(&d), 7).unwrap().is_empty());
        assert_eq!(Snapshot::read(Some(&d), 0, 1).unwrap_err(), FsError::ISDIR);
        assert_eq!(Snapshot::readdir(Some(&f), 0).unwrap_err(), FsError::NOTDIR);
    }

    #[test]
    fn budget_bounds_bytes_held_and_gives_them_back() {
        let server = Meter::new(250);
        let a = SnapshotBudget::new(100, server.clone());
        let b = SnapshotBudget::new(100, server.clone());
        let data = |n| Bytes::from(vec![0u8; n]);
        // One snapshot past the connection's limit is allowed when it
        // holds nothing; a second is not.
        let big = Snapshot::file(data(150), &a).unwrap();
        let err = Snapshot::file(data(1), &a).unwrap_err();
        assert_eq!(err.errno, errno::EMFILE);
        // The server's limit is strict and shared.
        let b1 = Snapshot::file(data(90), &b).unwrap();
        assert_eq!(
            Snapshot::file(data(20), &b).unwrap_err().errno,
            errno::EMFILE
        );
        assert_eq!(server.used(), 240);
        // A refused charge leaves nothing behind; drops give bytes back.
        drop(big);
        assert_eq!(server.used(), 90);
        let b2 = Snapshot::file(data(10), &b).unwrap();
        drop((b1, b2));
        assert_eq!(server.used(), 0);
        // Shared bytes are not charged.
        let _s = Snapshot::shared_file(data(1000));
        assert_eq!(server.used(), 0);
    }
}

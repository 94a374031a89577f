//! An opened file's contents, taken whole at open: reads and directory
//! reads are served from it, so a client reading in chunks never sees a
//! torn file, and directory cookies stay stable (entry index + 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::fair::{self, Principal, Share, Shares};
use super::{Chunks, Contents, FsError, FsResult};
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

/// Where an open's snapshot is charged: its identity's meter on its
/// connection and the identity's share of the server's bytes. Every open
/// holds its file whole until clunk, so without this one client opening a
/// large file many times (50 opens of a 5 MB `/proc/kallsyms`) could hold
/// any amount of a node's memory; the fid limit alone does not bound
/// bytes. Per identity, because every user arrives on the aggregator's one
/// connection to an agent: one user's open files must not use up what
/// another user's opens need (issue 12 item 8).
#[derive(Debug, Clone)]
pub struct SnapshotBudget {
    conn: Arc<Meter>,
    server: Arc<Shares>,
    who: Principal,
    service: bool,
}

impl SnapshotBudget {
    /// A budget for `who` (a service identity when `service`) on one
    /// connection of a server whose connections share `server`.
    pub fn new(per_connection: usize, server: Arc<Shares>, who: Principal, service: bool) -> Self {
        Self {
            conn: Meter::new(per_connection),
            server,
            who,
            service,
        }
    }

    /// No limit: for callers that are not a network peer (tests, the
    /// in-process benchmark).
    pub fn unlimited() -> Self {
        Self::new(
            usize::MAX,
            Shares::new(usize::MAX, usize::MAX, 0),
            Principal::Uid(0),
            true,
        )
    }

    /// Charges `bytes` to the identity on its connection and to its share
    /// of the server. An identity holding nothing on its connection may
    /// always take one snapshot past that limit; the server's shares are
    /// strict.
    ///
    /// # Errors
    /// EMFILE (as for too many fids: the remedy is to clunk open files)
    /// when a limit would be passed.
    pub fn charge(&self, bytes: usize) -> FsResult<Charge> {
        if !self.conn.take(bytes, true) {
            return Err(FsError::new(errno::EMFILE).with(format!(
                "{}: {} of open-file snapshots already held on this connection (limit {}); close files",
                self.who,
                fair::bytes(self.conn.used()),
                fair::bytes(self.conn.limit())
            )));
        }
        match self.server.take(self.who, self.service, bytes) {
            Ok(share) => Ok(Charge {
                conn: self.conn.clone(),
                bytes,
                _share: share,
            }),
            Err(r) => {
                self.conn.give(bytes);
                Err(FsError::new(errno::EMFILE).with(format!(
                    "{} on this server",
                    r.message(&self.who, "open-file snapshots", fair::bytes, "close files")
                )))
            }
        }
    }
}

/// Bytes charged to a [`SnapshotBudget`], given back when dropped.
#[derive(Debug)]
#[must_use = "dropping the charge gives the bytes back at once"]
pub struct Charge {
    conn: Arc<Meter>,
    bytes: usize,
    _share: Share,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.conn.give(self.bytes);
    }
}

/// What an open fid holds: the file's bytes or the directory's entries,
/// and the charge for them (released when the fid is clunked).
#[derive(Debug)]
pub(crate) struct Snapshot {
    body: Body,
    _charge: Option<Charge>,
}

/// A [`Contents::Fresh`] file: its bytes now, replaced on a read at 0.
#[derive(Debug)]
struct FreshFile {
    bytes: Bytes,
    charge: Charge,
    /// Whether a read was served from these bytes: the first read at 0
    /// after the open is served from what the open took.
    read: bool,
}

#[derive(Debug)]
enum Body {
    File(Bytes),
    Chunks(Arc<Chunks>),
    Fresh(std::sync::Mutex<FreshFile>),
    /// Entry `i` carries cookie `i + 1`.
    Dir(Vec<DirEntry>),
}

/// Bytes a directory entry costs in memory, roughly: the struct and its
/// name's heap allocation.
const DIR_ENTRY_COST: usize = std::mem::size_of::<DirEntry>() + 16;

impl Snapshot {
    /// Holds what `open` returned, charged to `budget` (shared bytes are
    /// not); numbers directory entries: entry `i` gets cookie `i + 1`.
    ///
    /// # Errors
    /// EMFILE past the budget (see [`SnapshotBudget::charge`]).
    pub(crate) fn new(contents: Contents, budget: &SnapshotBudget) -> FsResult<Self> {
        let (body, charge) = match contents {
            Contents::File(b) => {
                let charge = budget.charge(b.len())?;
                (Body::File(b), Some(charge))
            }
            Contents::Shared(b) => (Body::File(b), None),
            Contents::Chunks(c) => (Body::Chunks(c), None),
            Contents::Fresh(bytes) => {
                let charge = budget.charge(bytes.len())?;
                let f = FreshFile {
                    bytes,
                    charge,
                    read: false,
                };
                (Body::Fresh(std::sync::Mutex::new(f)), None)
            }
            Contents::Dir(mut ents) => {
                let bytes = ents.iter().map(|e| DIR_ENTRY_COST + e.name.len()).sum();
                let charge = budget.charge(bytes)?;
                for (i, e) in ents.iter_mut().enumerate() {
                    e.offset = i as u64 + 1;
                }
                (Body::Dir(ents), Some(charge))
            }
        };
        Ok(Self {
            body,
            _charge: charge,
        })
    }

    /// `count` bytes at `offset` of a file (empty at EOF).
    ///
    /// # Errors
    /// EISDIR for a directory.
    pub(crate) fn read(&self, offset: u64, count: u32) -> FsResult<Bytes> {
        let slice = |b: &Bytes| {
            let start = offset.min(b.len() as u64) as usize;
            let end = start.saturating_add(count as usize).min(b.len());
            b.slice(start..end)
        };
        match &self.body {
            Body::File(b) => Ok(slice(b)),
            Body::Chunks(c) => Ok(c.read(offset, count as usize)),
            Body::Fresh(f) => {
                let mut f = crate::sys::lock(f);
                f.read = true;
                Ok(slice(&f.bytes))
            }
            Body::Dir(_) => Err(FsError::ISDIR),
        }
    }

    /// Whether a read at `offset` must first take the file anew
    /// ([`Contents::Fresh`], read before, and `offset` 0).
    pub(crate) fn wants_fresh(&self, offset: u64) -> bool {
        match &self.body {
            Body::Fresh(f) => offset == 0 && crate::sys::lock(f).read,
            _ => false,
        }
    }

    /// Replaces a fresh file's bytes with what `open` returned again,
    /// charged to `budget` in place of the old ones.
    ///
    /// # Errors
    /// EMFILE past the budget (the old bytes stay); EIO if the file
    /// system answered the new open with anything but a file.
    pub(crate) fn refresh(&self, contents: Contents, budget: &SnapshotBudget) -> FsResult<()> {
        let Body::Fresh(f) = &self.body else {
            return Ok(());
        };
        let bytes = match contents {
            Contents::Fresh(b) | Contents::File(b) | Contents::Shared(b) => b,
            Contents::Chunks(c) => c.to_bytes(),
            Contents::Dir(_) => {
                return Err(FsError::IO.with("a file opened again was a directory"));
            }
        };
        let mut f = crate::sys::lock(f);
        // The old charge is released once the new one is held.
        f.charge = budget.charge(bytes.len())?;
        f.bytes = bytes;
        f.read = false;
        Ok(())
    }

    /// The entries of a directory after cookie `offset` (0: all of them).
    ///
    /// # Errors
    /// ENOTDIR for a file.
    pub(crate) fn entries(&self, offset: u64) -> FsResult<&[DirEntry]> {
        match &self.body {
            Body::Dir(ents) => Ok(&ents[offset.min(ents.len() as u64) as usize..]),
            Body::File(_) | Body::Chunks(_) | Body::Fresh(_) => Err(FsError::NOTDIR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Qid;

    fn file(n: usize, budget: &SnapshotBudget) -> FsResult<Snapshot> {
        Snapshot::new(Contents::File(Bytes::from(vec![0u8; n])), budget)
    }

    #[test]
    fn reads_slice_and_cookies_are_numbered_and_resume() {
        let u = SnapshotBudget::unlimited();
        let f = Snapshot::new(Contents::File(Bytes::from_static(b"hello")), &u).unwrap();
        assert_eq!(&f.read(1, 3).unwrap()[..], b"ell");
        assert!(f.read(9, 3).unwrap().is_empty());
        let e = |n: &str, o| DirEntry {
            qid: Qid::default(),
            offset: o,
            ty: 8,
            name: n.into(),
        };
        // Whatever offsets the filesystem left, entry i gets cookie i + 1.
        let d = Snapshot::new(Contents::Dir(vec![e("a", 0), e("b", 9)]), &u).unwrap();
        assert_eq!(d.entries(0).unwrap(), &[e("a", 1), e("b", 2)]);
        assert_eq!(d.entries(1).unwrap(), &[e("b", 2)]);
        assert!(d.entries(7).unwrap().is_empty());
        assert_eq!(d.read(0, 1).unwrap_err(), FsError::ISDIR);
        assert_eq!(f.entries(0).unwrap_err(), FsError::NOTDIR);
    }

    #[test]
    fn budget_bounds_bytes_held_and_gives_them_back() {
        let server = Shares::new(250, 200, 0);
        let a = SnapshotBudget::new(100, server.clone(), Principal::Uid(1), false);
        let b = SnapshotBudget::new(100, server.clone(), Principal::Uid(2), false);
        // One snapshot past the connection's limit is allowed when the
        // identity holds nothing there; a second is not.
        let big = file(150, &a).unwrap();
        let err = file(1, &a).unwrap_err();
        assert_eq!(err.errno, errno::EMFILE);
        // The server's limit is strict and shared.
        let b1 = file(90, &b).unwrap();
        assert_eq!(file(20, &b).unwrap_err().errno, errno::EMFILE);
        assert_eq!(server.used(), 240);
        // A refused charge leaves nothing behind; drops give bytes back.
        drop(big);
        assert_eq!(server.used(), 90);
        let b2 = file(10, &b).unwrap();
        drop((b1, b2));
        assert_eq!(server.used(), 0);
        // Shared bytes are not charged.
        let _s = Snapshot::new(Contents::Shared(Bytes::from(vec![0u8; 1000])), &a).unwrap();
        assert_eq!(server.used(), 0);
    }

    #[test]
    fn one_identity_cannot_take_the_bytes_another_needs() {
        // Finding 8: a shared budget filled by one user failed everyone's
        // opens. Each identity now has its share; the service its reserve.
        let server = Shares::new(100, 40, 20);
        let greedy = SnapshotBudget::new(1000, server.clone(), Principal::Uid(1001), false);
        let _held: Vec<_> = (0..4).map(|_| file(10, &greedy).unwrap()).collect();
        let e = file(10, &greedy).unwrap_err();
        assert_eq!(e.errno, errno::EMFILE);
        let why = e.context.unwrap();
        assert!(
            why.starts_with("uid 1001: ") && why.contains("open-file snapshots"),
            "{why}"
        );
        let other = SnapshotBudget::new(1000, server.clone(), Principal::Uid(1002), false);
        let _o = file(40, &other).unwrap();
        let svc = SnapshotBudget::new(1000, server.clone(), Principal::Uid(0), true);
        let _s = file(20, &svc).unwrap();
    }
}

//! What a lookup learned, kept for the mount's TTL: the fid it walked and
//! the attributes it fetched, per inode.
//!
//! The kernel looks a name up and then, at once, opens or stats it. A
//! lookup is a `Twalk` and a `Tgetattr`; without this the open walks the
//! same path again, and a `getattr` walks and asks again. With it, the open
//! takes the lookup's fid and sends `Tlopen` on it (one round trip less),
//! a lookup of a name inside it walks that fid on to the name (one name to
//! resolve instead of the whole path, and no clunk of the directory's fid),
//! and a `getattr` within the TTL is answered from the lookup's
//! attributes, which is what the kernel was told it may trust for that
//! long anyway.
//!
//! Rules that keep this exactly as correct as walking every time:
//! - an entry lives at most the TTL: after it the next operation walks
//!   from the root and sees the file as it is now (a process that exited
//!   is ESTALE/ENOENT as before);
//! - a fid is used once, for an open or a lookup inside it (taken out of
//!   the table: an opened or moved fid cannot serve again); an error on
//!   an open makes the caller fall back to walking the path, and a
//!   lookup's answer is the server's for the name in that directory, so
//!   the answer is always the server's answer for the path;
//! - one identity: a mount attaches once, as the mounting user, and every
//!   fid here was walked from that attach, so no fid is ever used for
//!   another user (the FUSE session admits only its owner). The table
//!   belongs to one mount and is never shared;
//! - bounded: at most [`MAX_ENTRIES`] fids are held; past that, lookups
//!   simply do not keep theirs. `forget` drops an inode's entry, and a
//!   timer sweeps expired ones out within two TTLs, so an idle mount
//!   holds none for long.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gproc::client::{FidHandle, Metadata};

/// Most fids one mount keeps open on the server for reuse (each costs the
/// server a fid entry; a `find` over a large tree looks up many names).
pub const MAX_ENTRIES: usize = 1024;

/// What one lookup of an inode learned.
struct Entry {
    /// The fid the lookup walked; `None` once an open took it.
    fid: Option<FidHandle>,
    /// The attributes the lookup fetched (through that fid).
    meta: Metadata,
    /// When the lookup's reply arrived: the entry is good until `ttl`
    /// after it.
    at: Instant,
}

/// Per-inode lookup results, each good for `ttl`.
pub struct FidCache {
    ttl: Duration,
    entries: HashMap<u64, Entry>,
    /// Last time expired entries were swept out.
    swept: Instant,
}

impl FidCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        FidCache {
            ttl,
            entries: HashMap::new(),
            swept: Instant::now(),
        }
    }

    /// Records what a lookup of `ino` found at `at` (replacing an older
    /// entry, whose fid is clunked). A zero TTL keeps nothing.
    pub fn insert(&mut self, ino: u64, fid: FidHandle, meta: Metadata, at: Instant) {
        self.sweep(at);
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&ino) {
            return;
        }
        self.entries.insert(
            ino,
            Entry {
                fid: Some(fid),
                meta,
                at,
            },
        );
    }

    /// The attributes the last lookup of `ino` found, if it was less than
    /// the TTL ago.
    pub fn attr(&self, ino: u64, now: Instant) -> Option<Metadata> {
        self.entries
            .get(&ino)
            .filter(|e| self.fresh(e, now))
            .map(|e| e.meta.clone())
    }

    /// Takes the fid of the last lookup of `ino`, if it was less than the
    /// TTL ago and no one took it yet. The attributes stay.
    pub fn take_fid(&mut self, ino: u64, now: Instant) -> Option<FidHandle> {
        let ttl = self.ttl;
        let e = self.entries.get_mut(&ino)?;
        if now.saturating_duration_since(e.at) >= ttl {
            return None;
        }
        e.fid.take()
    }

    /// The kernel forgot `ino`: its fid is clunked.
    pub fn forget(&mut self, ino: u64) {
        self.entries.remove(&ino);
    }

    fn fresh(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.at) < self.ttl
    }

    /// Drops expired entries (clunking their fids), at most once a TTL;
    /// called on each insert and by the mount's timer.
    pub fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.swept) < self.ttl {
            return;
        }
        self.swept = now;
        let ttl = self.ttl;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.at) < ttl);
    }
}

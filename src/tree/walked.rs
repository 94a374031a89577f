//! Node fids a metadata read walked, kept a moment for the open that
//! usually follows.
//!
//! A client looks a name up (walk, getattr) and then opens it. Through the
//! aggregator that was two node walks, each with its clunk: one for the
//! getattr, one for the read. Here the getattr's walk keeps its fid, and
//! the read or listing that follows sends `Tlopen` on it instead of walking
//! again: two node messages less per file browsed.
//!
//! Rules that keep this exactly as correct as walking every time:
//! - one identity: entries are keyed by the pool node, the asker's uid
//!   (`None`: the service identity) and the path as sent to the node. A
//!   fid was walked from that asker's own attach of that node, so it only
//!   ever serves the same identity on the same node for the same path
//!   (the pinned `<pid>.<start>` name where the node resolves it, so the
//!   same process too);
//! - only paths the cache rules allow caching, and for at most their TTL
//!   (capped at [`MAX_KEEP`]): a `never` path (`environ`, `mem`) is walked
//!   afresh by every read;
//! - a fid is used once (taken out): opened and read at once, or walked
//!   on to a name looked up in it (a process directory's fid to a new fid
//!   for its `status`, a shorter walk); the data is the node's answer now, and
//!   any error on it makes the caller walk the path again, so the answer
//!   is the node's for the path as it is;
//! - bounded: at most [`MAX_FIDS`] held; past that nothing more is kept.
//!   Expired ones are clunked (dropped) by the next keep or take.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::FidHandle;
use crate::sys;

/// Longest a walked fid is kept, whatever the path's cache TTL.
pub(super) const MAX_KEEP: Duration = Duration::from_secs(1);

/// Most fids kept over all nodes (each is a fid entry on its node).
pub(super) const MAX_FIDS: usize = 4096;

/// How often expired entries are swept out at most.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Who walked what: pool node index, asker's uid, path as sent.
type Slot = (u32, Option<u32>, String);

/// Walked fids by node, asker and path, each good until its deadline.
pub(super) struct Walked {
    inner: Mutex<Inner>,
}

struct Inner {
    fids: HashMap<Slot, (FidHandle, Instant)>,
    swept: Instant,
}

impl Default for Walked {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                fids: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl Inner {
    /// Takes out the expired entries (at most once per [`SWEEP_EVERY`]),
    /// for the caller to drop once it let go of the lock.
    fn sweep(&mut self, now: Instant) -> Vec<FidHandle> {
        if now.saturating_duration_since(self.swept) < SWEEP_EVERY {
            return Vec::new();
        }
        self.swept = now;
        let expired: Vec<Slot> = self
            .fids
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .iter()
            .filter_map(|k| self.fids.remove(k).map(|(f, _)| f))
            .collect()
    }
}

impl Walked {
    /// Keeps `fid`, walked to `path` on pool node `node` for `user`, for
    /// `ttl` (capped at [`MAX_KEEP`]); a zero `ttl` or a full table keeps
    /// nothing (the fid is clunked).
    pub(super) fn keep(
        &self,
        node: u32,
        user: Option<u32>,
        path: &str,
        fid: FidHandle,
        ttl: Duration,
    ) {
        let ttl = ttl.min(MAX_KEEP);
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        // Whatever is let go is dropped outside the lock: a drop clunks.
        let _gone = {
            let mut g = sys::lock(&self.inner);
            let expired = g.sweep(now);
            let slot = (node, user, path.to_string());
            let left = if g.fids.len() >= MAX_FIDS && !g.fids.contains_key(&slot) {
                Some(fid)
            } else {
                g.fids.insert(slot, (fid, now + ttl)).map(|(f, _)| f)
            };
            (expired, left)
        };
    }

    /// The fid kept for (`node`, `user`, `path`), taken out, if its time
    /// is not up.
    pub(super) fn take(&self, node: u32, user: Option<u32>, path: &str) -> Option<FidHandle> {
        let now = Instant::now();
        let (_expired, found) = {
            let mut g = sys::lock(&self.inner);
            let expired = g.sweep(now);
            let found = if g.fids.is_empty() {
                None
            } else {
                g.fids.remove(&(node, user, path.to_string()))
            };
            (expired, found)
        };
        let (fid, until) = found?;
        (until > now).then_some(fid)
    }

    /// How many fids are held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        sys::lock(&self.inner).fids.len()
    }
}

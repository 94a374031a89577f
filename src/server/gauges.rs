//! Server-wide counts of what sessions hold (connections, fids, replies
//! queued for writing) and of the frames they read, each with its peak:
//! how a test or an operator sees that hostile clients stay within the
//! limits, without measuring the process's memory (noisy, and shared with
//! everything else the process does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One count of things held, and the most it has been.
#[derive(Debug, Default)]
pub struct Level {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Level {
    fn add(&self, n: usize) {
        let v = self.now.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        self.peak.fetch_max(v, Ordering::AcqRel);
    }

    fn sub(&self, n: usize) {
        // Never below zero, whatever the order of the updates.
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// How many are held now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::Acquire)
    }

    /// The most held at once since the server started.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

/// What every session of a server holds and has read, together.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Connections being served.
    pub connections: Level,
    /// Fids, in the fid tables and in requests still running.
    pub fids: Level,
    /// Replies encoded and not yet written to their connection.
    pub queued_replies: Level,
    frames_read: AtomicU64,
}

impl Gauges {
    /// Frames read from clients (each a whole 9P message) since the server
    /// started.
    pub fn frames_read(&self) -> u64 {
        self.frames_read.load(Ordering::Acquire)
    }

    pub(crate) fn read_frame(&self) {
        self.frames_read.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn queue_reply(&self) {
        self.queued_replies.add(1);
    }

    pub(crate) fn wrote_replies(&self, n: usize) {
        self.queued_replies.sub(n);
    }

    /// One connection, counted until the guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> Holding {
        self.connections.add(1);
        Holding(self.clone(), |g| &g.connections)
    }

    /// One fid, counted until the guard is dropped.
    pub(crate) fn fid(self: &Arc<Self>) -> Holding {
        self.fids.add(1);
        Holding(self.clone(), |g| &g.fids)
    }
}

/// One unit of a [`Level`], given back when dropped (on every way out of a
/// session or a fid's life).
pub(crate) struct Holding(Arc<Gauges>, fn(&Gauges) -> &Level);

impl Drop for Holding {
    fn drop(&mut self) {
        (self.1)(&self.0).sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_count_what_is_held_and_keep_the_peak() {
        let g = Arc::new(Gauges::default());
        let a = g.fid();
        let b = g.fid();
        assert_eq!((g.fids.now(), g.fids.peak()), (2, 2));
        drop(a);
        drop(b);
        let _c = g.fid();
        assert_eq!((g.fids.now(), g.fids.peak()), (1, 2));
        g.queue_reply();
        g.wrote_replies(5);
        assert_eq!(g.queued_replies.now(), 0, "never below zero");
    }
}

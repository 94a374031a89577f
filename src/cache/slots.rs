//! The store of per-node kinds ([`super::Kind::PER_NODE`]): one slot per
//! key, its value replaced in place by the next load.
//!
//! A node's summary is read again on every table once its TTL has passed,
//! by every node at once (10,000 per second in a live view). In the
//! byte-bounded store each such refresh was a lookup, a removal of the
//! expired entry, an insertion and the store's housekeeping of both: a
//! sixth of the aggregator's CPU in a cold `/ps` of 2,000 nodes. Here it is a lookup and a
//! replacement under a lock held for neither the load nor the drop of
//! the old value.
//!
//! Slots are outside the byte bound and never evicted: one value per node
//! is what every table needs, and it is bounded by the cluster's size. As
//! in the store, a value past its TTL and stale time by a second is
//! dropped (swept at most once a second), so an idle aggregator does not
//! hold every node's summary; a node removed from the config is
//! forgotten.
//!
//! Concurrent loads of one slot are coalesced as the store's are: the
//! first runs, the others wait for it and take its value, or its error.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Entry, Slot};
use crate::sys;

/// Shards of the slot map: loads of different nodes seldom meet on one
/// lock.
const SHARDS: usize = 16;

/// One shard of the slot map.
type Shard = Mutex<HashMap<Slot, Arc<Cell>>>;

/// The slots of every per-node kind.
pub(super) struct Slots {
    shards: Box<[Shard]>,
    /// When the slots were made: the clock's origin for `swept`.
    born: Instant,
    /// When values past their time were last dropped, in ms after `born`:
    /// checked by every lookup, so an atomic rather than one more lock
    /// every node's lookup takes.
    swept: AtomicU64,
}

/// How often values past their time are looked for, in ms.
const SWEEP_EVERY_MS: u64 = 1000;

/// A value is dropped this long after it can no longer be served.
const KEEP_AFTER: Duration = Duration::from_secs(1);

/// One slot.
pub(super) struct Cell {
    state: Mutex<State>,
    /// Held by the one load in progress; waiters queue on it.
    loading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    entry: Option<Entry>,
    /// Loads finished, successful or not: a waiter that saw `n` and finds
    /// more knows the load it waited for is done.
    loads: u64,
    /// The error of the last load, when it failed (`E` of the caller),
    /// for the callers that waited for it.
    error: Option<Arc<dyn Any + Send + Sync>>,
}

/// What a waiter finds once the load it waited for is done.
pub(super) enum Waited<E> {
    /// That load's value, fresh.
    Value(Entry),
    /// That load's error.
    Failed(E),
    /// Nothing to take (no load finished meanwhile, or its value was not
    /// kept): load.
    Load,
}

impl Slots {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            born: Instant::now(),
            swept: AtomicU64::new(0),
        }
    }

    /// Drops the values past their TTL and stale time by [`KEEP_AFTER`],
    /// when the last sweep is [`SWEEP_EVERY_MS`] old; says whether it
    /// swept.
    pub(super) fn sweep_if_due(&self) -> bool {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.swept.load(Ordering::Relaxed);
        // One caller sweeps: the one whose exchange succeeds.
        if now.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        for s in self.shards.iter() {
            let cells: Vec<Arc<Cell>> = sys::lock(s).values().cloned().collect();
            for c in cells {
                let mut st = sys::lock(&c.state);
                if st
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.loaded.elapsed() > e.ttl + e.stale + KEEP_AFTER)
                {
                    let old = st.entry.take();
                    drop(st);
                    drop(old);
                }
            }
        }
        true
    }

    fn shard(&self, slot: &Slot) -> &Shard {
        &self.shards[slot.node as usize % SHARDS]
    }

    /// The slot of `slot`, made empty if new.
    pub(super) fn cell(&self, slot: &Slot) -> Arc<Cell> {
        let mut m = sys::lock(self.shard(slot));
        if let Some(c) = m.get(slot) {
            return c.clone();
        }
        let c = Arc::new(Cell {
            state: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
        });
        m.insert(slot.clone(), c.clone());
        c
    }

    /// The value in `slot`, if any, without making the slot.
    pub(super) fn get(&self, slot: &Slot) -> Option<Entry> {
        let c = sys::lock(self.shard(slot)).get(slot).cloned()?;
        c.entry()
    }

    /// Empties `slot`.
    pub(super) fn remove(&self, slot: &Slot) {
        let old = sys::lock(self.shard(slot)).remove(slot);
        drop(old);
    }

    /// Drops every slot of `node`.
    pub(super) fn forget_node(&self, node: u32) {
        for s in self.shards.iter() {
            let mut m = sys::lock(s);
            let gone: Vec<Arc<Cell>> = m
                .extract_if(|k, _| k.node == node)
                .map(|(_, c)| c)
                .collect();
            drop(m);
            drop(gone);
        }
    }

    /// Values held and their bytes, as the store weighs them.
    pub(super) fn usage(&self) -> (u64, u64) {
        let (mut n, mut bytes) = (0, 0);
        for s in self.shards.iter() {
            let cells: Vec<(usize, Arc<Cell>)> = sys::lock(s)
                .iter()
                .map(|(k, c)| (k.path.len(), c.clone()))
                .collect();
            for (path, c) in cells {
                if let Some(e) = c.entry() {
                    n += 1;
                    bytes += (path + 64 + e.weight) as u64;
                }
            }
        }
        (n, bytes)
    }
}

impl Cell {
    /// The value held.
    pub(super) fn entry(&self) -> Option<Entry> {
        sys::lock(&self.state).entry.clone()
    }

    /// The value held and the loads finished so far.
    pub(super) fn seen(&self) -> (Option<Entry>, u64) {
        let st = sys::lock(&self.state);
        (st.entry.clone(), st.loads)
    }

    /// Waits for the load in progress, if any; then, holding the right to
    /// load until the guard is dropped, says what a caller that saw
    /// `loads` finished loads should do: take a value loaded meanwhile
    /// (when still fresh), take its error, or load.
    pub(super) async fn wait<E: Clone + Send + Sync + 'static>(
        &self,
        loads: u64,
    ) -> (tokio::sync::MutexGuard<'_, ()>, Waited<E>) {
        let guard = self.loading.lock().await;
        let st = sys::lock(&self.state);
        let waited = if st.loads == loads {
            Waited::Load
        } else if let Some(e) = &st.error {
            match e.downcast_ref::<E>() {
                Some(e) => Waited::Failed(e.clone()),
                None => Waited::Load,
            }
        } else {
            match &st.entry {
                Some(e) if e.loaded.elapsed() <= e.ttl => Waited::Value(e.clone()),
                _ => Waited::Load,
            }
        };
        drop(st);
        (guard, waited)
    }

    /// A load finished with `entry` (`None`: a value not to keep, which
    /// also drops the older one, as the store does).
    pub(super) fn loaded(&self, entry: Option<Entry>) {
        let mut st = sys::lock(&self.state);
        st.loads += 1;
        st.error = None;
        let old = std::mem::replace(&mut st.entry, entry);
        drop(st);
        // The old value (a node's whole summary) is freed outside the lock.
        drop(old);
    }

    /// Drops the value loaded at `at`, too old to serve, before a load
    /// replaces it: a node's old and new summaries are not both held
    /// while it is read (at the fan-out of a table, every node's at once).
    pub(super) fn expired(&self, at: tokio::time::Instant) {
        let mut st = sys::lock(&self.state);
        if st.entry.as_ref().is_some_and(|e| e.loaded == at) {
            let old = st.entry.take();
            drop(st);
            drop(old);
        }
    }

    /// A load failed with `error`; the value held, if any, stays (a stale
    /// rule may still serve it).
    pub(super) fn failed<E: Send + Sync + 'static>(&self, error: E) {
        let mut st = sys::lock(&self.state);
        st.loads += 1;
        st.error = Some(Arc::new(error));
    }

    /// Replaces the value (a background refresh), unless a newer one is
    /// there already.
    pub(super) fn refreshed(&self, entry: Entry) {
        let mut st = sys::lock(&self.state);
        if st.entry.as_ref().is_some_and(|e| e.loaded > entry.loaded) {
            return;
        }
        let old = st.entry.replace(entry);
        drop(st);
        drop(old);
    }
}

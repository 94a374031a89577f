//! The aggregator's cache of node data and of what the tree derives from it,
//! under per-path rules ([`crate::config::CachePolicy`]).
//!
//! - Entries are keyed by (kind, node, path, user) and weighed in bytes; one moka
//!   store bounds the total of every kind and evicts.
//! - A [`Kind`] names what an entry holds and its value type, so a reader
//!   of one kind cannot be handed another kind's value.
//! - Concurrent readers of one uncached key cause one load (moka's
//!   `try_get_with` coalesces loads).
//! - Freshness is decided here against [`tokio::time::Instant`], not by
//!   moka's wall clock, so tests drive expiry with `tokio::time::pause()`.
//!   moka's own expiry only backs it up to free memory. Node data is fresh
//!   for its TTL from when its read completed; a value built from cached
//!   data ([`Cache::get_or_build`]) from when its build started, being no
//!   fresher than what it was built from.
//! - A rule with `stale = "30s"` lets an entry past its TTL be served while
//!   one background load refreshes it, and while the node is down (the
//!   caller learns the age).
//! - `ttl = "never"` paths bypass the cache: every read goes to the node.
//! - Errors are never cached.
//! - Kinds with one value per node that every table needs (a node's
//!   summary, [`Kind::PER_NODE`]) are kept in slots of their own
//!   ([`slots`]), replaced in place, outside the byte bound.

use std::any::{Any, TypeId};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use moka::future::Cache as Moka;
use tokio::time::Instant;

use crate::config::{CachePolicy, Ttl};
use crate::sys;

mod slots;
use slots::{Slots, Waited};

/// What an entry holds. Each kind is its own type with its own value type,
/// and the kind is part of the key, so the value read under a key is always
/// of the type its kind says.
pub trait Kind: Send + Sync + 'static {
    /// The cached value (cheap to clone: shared data behind an `Arc` or
    /// [`bytes::Bytes`]).
    type Value: Clone + Send + Sync + 'static;

    /// Approximate bytes `value` holds, for the byte bound.
    fn weight(value: &Self::Value) -> usize;

    /// How entries of this kind at `path` live; by default as the
    /// per-path rule in `policy` says.
    fn lifetime(policy: &CachePolicy, path: &str) -> Lifetime {
        Lifetime::of(policy, path)
    }

    /// Whether loads of this kind are node reads, counted in [`Stats`]
    /// (values derived from several nodes' data are not).
    const NODE_READS: bool = true;

    /// One value per node that the tables need of every node, refreshed
    /// as often as they are (a node's summary): kept in a slot replaced
    /// in place ([`slots`]), outside the byte bound, dropped a second
    /// after it can no longer be served (as the store's are) and when its
    /// node is forgotten. Freshness, stale rules, the entry bound and
    /// coalescing are as for other kinds.
    const PER_NODE: bool = false;
}

/// Cache key: what kind of value, of which node, at which path.
#[derive(Debug, Clone)]
pub struct Key<K> {
    /// What is cached; its type fixes the value's.
    pub kind: K,
    /// Stable node index, or [`CLUSTER`] for values of several nodes.
    pub node: u32,
    /// Node-relative path starting with `/` (for [`CLUSTER`] values, a
    /// name the kind chooses).
    pub path: Arc<str>,
    /// Read on behalf of this uid; `None`: as the service identity. What
    /// one user read is never served to another.
    pub user: Option<u32>,
}

/// The [`Key::node`] of values derived from several nodes; no node has
/// this index, so [`Cache::forget_node`] never drops them.
pub const CLUSTER: u32 = u32::MAX;

/// How long an entry lives, and whether it is kept at all.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Freshness period, or never cached.
    pub ttl: Ttl,
    /// Then servable as stale for this long.
    pub stale: Duration,
    /// Values heavier than this are served once, not kept.
    pub max_entry_bytes: usize,
}

impl Lifetime {
    /// The rule `policy` has for `path`.
    pub fn of(policy: &CachePolicy, path: &str) -> Self {
        let d = policy.ttl_for(path);
        Self {
            ttl: d.ttl,
            stale: d.stale.unwrap_or_default(),
            max_entry_bytes: policy.max_entry_bytes.0 as usize,
        }
    }
}

/// The store's key: the kind's type stands for the kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Slot {
    kind: TypeId,
    node: u32,
    path: Arc<str>,
    user: Option<u32>,
}

impl Slot {
    fn of<K: Kind>(key: &Key<K>) -> Self {
        Self {
            kind: TypeId::of::<K>(),
            node: key.node,
            path: key.path.clone(),
            user: key.user,
        }
    }
}

#[derive(Clone)]
struct Entry {
    /// A `K::Value` of the slot's kind `K`.
    value: Arc<dyn Any + Send + Sync>,
    /// `K::weight(value)`.
    weight: usize,
    /// When the value was read (tokio clock; for built values, when the
    /// build started).
    loaded: Instant,
    /// Fresh for this long.
    ttl: Duration,
    /// Then servable as stale for this long.
    stale: Duration,
}

impl Entry {
    fn new<K: Kind>(value: K::Value, loaded: Instant, ttl: Duration, stale: Duration) -> Self {
        Self {
            weight: K::weight(&value),
            value: Arc::new(value),
            loaded,
            ttl,
            stale,
        }
    }

    /// The value, for a reader of the slot's kind `K`.
    fn value<K: Kind>(&self) -> K::Value {
        // Entries are only stored under a slot whose `kind` is `K`'s type
        // id, by `Entry::new::<K>`: the downcast cannot fail.
        self.value
            .downcast_ref::<K::Value>()
            .expect("an entry's value type follows from its slot's kind")
            .clone()
    }
}

/// How fresh a returned value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Read from the node for this request.
    Loaded,
    /// From the cache, within its TTL.
    Fresh,
    /// From the cache past its TTL (allowed by a `stale` rule); the value is
    /// this old.
    Stale(Duration),
}

/// Counters shown in the aggregator's stats file and logs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered from the cache (fresh).
    pub hits: AtomicU64,
    /// Requests answered with stale data.
    pub stale_hits: AtomicU64,
    /// Requests that needed a node read (including coalesced waiters).
    pub misses: AtomicU64,
    /// Reads actually sent to nodes (after coalescing).
    pub node_reads: AtomicU64,
    /// Reads of `never` paths, which bypass the cache.
    pub bypass: AtomicU64,
    /// Node reads that failed.
    pub errors: AtomicU64,
}

impl Stats {
    /// The counters as `name value` lines.
    pub fn render(&self, entries: u64, bytes: u64) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let lookups = g(&self.hits) + g(&self.stale_hits) + g(&self.misses);
        let ratio = if lookups == 0 {
            0.0
        } else {
            (g(&self.hits) + g(&self.stale_hits)) as f64 / lookups as f64
        };
        format!(
            "cache_entries {entries}\ncache_bytes {bytes}\ncache_hits {}\ncache_stale_hits {}\ncache_misses {}\n\
             cache_hit_ratio {ratio:.3}\nnode_reads {}\nnode_read_errors {}\nuncached_reads {}\n",
            g(&self.hits),
            g(&self.stale_hits),
            g(&self.misses),
            g(&self.node_reads),
            g(&self.errors),
            g(&self.bypass),
        )
    }
}

/// The counters a lookup updates: none for kinds whose loads are not node
/// reads.
type Counted = Option<Arc<Stats>>;

/// Bumps a counter, when the kind's loads are counted.
fn bump(stats: &Counted, counter: impl Fn(&Stats) -> &AtomicU64) {
    if let Some(s) = stats {
        counter(s).fetch_add(1, Ordering::Relaxed);
    }
}

/// The cache. Cheap to clone (shared).
#[derive(Clone)]
pub struct Cache {
    store: Moka<Slot, Entry>,
    policy: Arc<RwLock<Arc<CachePolicy>>>,
    stats: Arc<Stats>,
    /// Keys with a background refresh in flight, so a stale entry read by
    /// many clients triggers one refresh.
    refreshing: Arc<Mutex<HashSet<Slot>>>,
    /// The values of [`Kind::PER_NODE`] kinds.
    slots: Arc<Slots>,
}

/// moka's expiry: drop an entry once it is past TTL + stale on the wall
/// clock, so dead entries do not hold memory until evicted by size.
struct Expire;

impl moka::Expiry<Slot, Entry> for Expire {
    fn expire_after_create(
        &self,
        _k: &Slot,
        v: &Entry,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl + v.stale + Duration::from_secs(1))
    }
    fn expire_after_update(
        &self,
        _k: &Slot,
        v: &Entry,
        _now: std::time::Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl + v.stale + Duration::from_secs(1))
    }
}

impl Cache {
    /// A cache bounded by `policy.max_bytes`, shared by every kind.
    pub fn new(policy: CachePolicy) -> Self {
        let store = Moka::builder()
            .max_capacity(policy.max_bytes.0)
            .weigher(|k: &Slot, e: &Entry| {
                (k.path.len() + 64 + e.weight).min(u32::MAX as usize) as u32
            })
            .expire_after(Expire)
            // For `forget_node`: without it moka refuses predicates.
            .support_invalidation_closures()
            .build();
        Self {
            store,
            policy: Arc::new(RwLock::new(Arc::new(policy))),
            stats: Arc::new(Stats::default()),
            refreshing: Arc::default(),
            slots: Arc::new(Slots::new()),
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> Arc<CachePolicy> {
        sys::read(&self.policy).clone()
    }

    /// Replaces the rules (config reload). Entries already cached keep the
    /// TTL they were loaded with; the byte bound keeps its first value
    /// (moka cannot resize), which the reload log says.
    pub fn set_policy(&self, policy: CachePolicy) {
        *sys::write(&self.policy) = Arc::new(policy);
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries and weighted bytes held now (per-node slots included).
    pub fn usage(&self) -> (u64, u64) {
        let (n, bytes) = self.slots.usage();
        (
            self.store.entry_count() + n,
            self.store.weighted_size() + bytes,
        )
    }

    /// Runs moka's pending maintenance (evictions), for exact numbers.
    pub async fn sync(&self) {
        self.store.run_pending_tasks().await;
    }

    /// Drops everything of one node (it was removed from the config).
    pub fn forget_node(&self, node: u32) {
        let _ = self.store.invalidate_entries_if(move |k, _| k.node == node);
        self.slots.forget_node(node);
    }

    /// The value kept for `key`, whatever its age, without loading or
    /// counting a read: facts shown beside live state (a node's machine
    /// in `/nodes`), gone once the store drops the entry.
    pub async fn peek<K: Kind>(&self, key: &Key<K>) -> Option<K::Value> {
        let slot = Slot::of(key);
        let e = if K::PER_NODE {
            self.slots.get(&slot)
        } else {
            self.store.get(&slot).await
        };
        e.map(|e| e.value::<K>())
    }

    /// The value for `key`, from the cache when its kind's
    /// [`Lifetime`] allows it, else from `load` (a node read).
    ///
    /// # Errors
    /// What `load` returned, when no servable copy exists.
    pub async fn get_or_load<K, E, Fut>(
        &self,
        key: Key<K>,
        load: impl FnOnce() -> Fut,
    ) -> Result<(K::Value, Freshness), E>
    where
        K: Kind,
        E: Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<K::Value, E>> + Send + 'static,
    {
        let me = self.clone();
        let refresh = move |slot, fut, life, stats| me.refresh::<K, E, Fut>(slot, fut, life, stats);
        // Boxed: moka's load futures are large, and callers join several
        // of these, which in debug builds overflowed a 2 MiB stack.
        Box::pin(self.lookup(key, load, Some(refresh))).await
    }

    /// Drops `key`'s entry, so that the next reader loads or builds it
    /// anew (a table built while some nodes' reads were still going).
    pub async fn forget<K: Kind>(&self, key: &Key<K>) {
        if K::PER_NODE {
            self.slots.remove(&Slot::of(key));
        } else {
            self.store.invalidate(&Slot::of(key)).await;
            self.store.run_pending_tasks().await;
        }
    }

    /// The value for `key`, from the cache when it is fresh, else built by
    /// `build`, which may borrow (a value the caller derives from other
    /// cached data, such as a table of every node). Readers that find it
    /// missing or expired while another builds it wait for that build.
    /// A `stale` rule does not apply: serving it stale would need a build
    /// that outlives the caller.
    ///
    /// # Errors
    /// What `build` returned.
    pub async fn get_or_build<K, E, Fut>(
        &self,
        key: Key<K>,
        build: impl FnOnce() -> Fut,
    ) -> Result<(K::Value, Freshness), E>
    where
        K: Kind,
        E: Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<K::Value, E>>,
    {
        Box::pin(self.lookup(key, build, None::<fn(Slot, Fut, Lifetime, Counted)>)).await
    }

    /// [`Self::get_or_load`] and [`Self::get_or_build`]: serves a fresh
    /// entry, or a stale one while `refresh` reloads it (when given), or
    /// loads with moka coalescing concurrent loads of one key.
    async fn lookup<K, E, Fut>(
        &self,
        key: Key<K>,
        load: impl FnOnce() -> Fut,
        refresh: Option<impl FnOnce(Slot, Fut, Lifetime, Counted)>,
    ) -> Result<(K::Value, Freshness), E>
    where
        K: Kind,
        E: Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<K::Value, E>>,
    {
        let stats = K::NODE_READS.then(|| self.stats.clone());
        let mut life = K::lifetime(&self.policy(), &key.path);
        // A built value is never served stale, and is as old as its build.
        let built = refresh.is_none();
        if built {
            life.stale = Duration::ZERO;
        }
        let Ttl::For(ttl) = life.ttl else {
            bump(&stats, |s| &s.bypass);
            bump(&stats, |s| &s.node_reads);
            let r = load().await;
            if r.is_err() {
                bump(&stats, |s| &s.errors);
            }
            return r.map(|v| (v, Freshness::Loaded));
        };
        let slot = Slot::of(&key);
        // A per-node kind's slot, or the store.
        let cell = if K::PER_NODE {
            if self.slots.sweep_if_due() {
                // The store's own upkeep runs on its operations, which
                // per-node kinds no longer make: without this, tables past
                // their time (and the old summaries they hold) wait there
                // for the next.
                self.store.run_pending_tasks().await;
            }
            Some(self.slots.cell(&slot))
        } else {
            None
        };
        let (held, loads) = match &cell {
            Some(c) => c.seen(),
            None => (self.store.get(&slot).await, 0),
        };
        if let Some(e) = held {
            let age = e.loaded.elapsed();
            if age <= e.ttl {
                bump(&stats, |s| &s.hits);
                return Ok((e.value::<K>(), Freshness::Fresh));
            }
            if let Some(refresh) = refresh
                && age <= e.ttl + e.stale
            {
                // Serve it; one background load refreshes it. A failed
                // refresh leaves the stale copy in place.
                bump(&stats, |s| &s.stale_hits);
                if sys::lock(&self.refreshing).insert(slot.clone()) {
                    refresh(slot, load(), life, stats);
                }
                return Ok((e.value::<K>(), Freshness::Stale(age)));
            }
            // Too old to serve: drop it (a node's old summary is not held
            // while its next is read) and load below. Another reader may
            // do the same; the loads that follow are coalesced.
            match &cell {
                Some(c) => c.expired(e.loaded),
                None => self.store.invalidate(&slot).await,
            }
        }
        bump(&stats, |s| &s.misses);
        if let Some(cell) = cell {
            return load_slot::<K, E, Fut>(&cell, loads, load, life, ttl, stats, built).await;
        }
        let fut = load();
        let ran = Arc::new(AtomicBool::new(false));
        let ran2 = ran.clone();
        let stale = life.stale;
        let loaded = self
            .store
            .try_get_with(slot.clone(), async move {
                ran2.store(true, Ordering::Relaxed);
                bump(&stats, |s| &s.node_reads);
                let started = Instant::now();
                let v = fut.await.inspect_err(|_| bump(&stats, |s| &s.errors))?;
                let at = if built { started } else { Instant::now() };
                Ok::<_, E>(Entry::new::<K>(v, at, ttl, stale))
            })
            .await;
        if built {
            // A value built from many nodes' (a table, a gather) replaced
            // an older one, which holds every node's older summary until
            // the store's upkeep lets it go: let it go now, not at the
            // next burst of operations.
            self.store.run_pending_tasks().await;
        }
        match loaded {
            Ok(e) => {
                if e.weight > life.max_entry_bytes {
                    // Served once, not kept: large files would push out
                    // thousands of small hot ones.
                    self.store.invalidate(&slot).await;
                }
                let f = if ran.load(Ordering::Relaxed) {
                    Freshness::Loaded
                } else {
                    Freshness::Fresh
                };
                Ok((e.value::<K>(), f))
            }
            Err(e) => Err((*e).clone()),
        }
    }

    /// Reloads a stale entry in the background; the caller has put `slot`
    /// in `refreshing`, which this takes it out of when done.
    fn refresh<K, E, Fut>(&self, slot: Slot, fut: Fut, life: Lifetime, stats: Counted)
    where
        K: Kind,
        E: Send + 'static,
        Fut: Future<Output = Result<K::Value, E>> + Send + 'static,
    {
        let Ttl::For(ttl) = life.ttl else {
            sys::lock(&self.refreshing).remove(&slot);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            bump(&stats, |s| &s.node_reads);
            match fut.await {
                Ok(v) if K::weight(&v) <= life.max_entry_bytes => {
                    let e = Entry::new::<K>(v, Instant::now(), ttl, life.stale);
                    if K::PER_NODE {
                        me.slots.cell(&slot).refreshed(e);
                    } else {
                        me.store.insert(slot.clone(), e).await;
                    }
                }
                Ok(_) => {}
                Err(_) => bump(&stats, |s| &s.errors),
            }
            sys::lock(&me.refreshing).remove(&slot);
        });
    }
}

/// The load of a [`Kind::PER_NODE`] kind's slot `cell` whose value is
/// missing or too old, by a reader that saw `loads` loads finished: the
/// value of a load by another reader that finished meanwhile, or its
/// error, else `load`'s, kept unless over the entry bound.
async fn load_slot<K, E, Fut>(
    cell: &slots::Cell,
    loads: u64,
    load: impl FnOnce() -> Fut,
    life: Lifetime,
    ttl: Duration,
    stats: Counted,
    built: bool,
) -> Result<(K::Value, Freshness), E>
where
    K: Kind,
    E: Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<K::Value, E>>,
{
    let (_loading, waited) = cell.wait::<E>(loads).await;
    match waited {
        Waited::Value(e) => return Ok((e.value::<K>(), Freshness::Fresh)),
        Waited::Failed(e) => return Err(e),
        Waited::Load => {}
    }
    bump(&stats, |s| &s.node_reads);
    let started = Instant::now();
    match load().await {
        Ok(v) => {
            let at = if built { started } else { Instant::now() };
            let e = Entry::new::<K>(v.clone(), at, ttl, life.stale);
            // Served once, not kept, when over the entry bound.
            cell.loaded((e.weight <= life.max_entry_bytes).then_some(e));
            Ok((v, Freshness::Loaded))
        }
        Err(e) => {
            bump(&stats, |s| &s.errors);
            cell.failed(e.clone());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;

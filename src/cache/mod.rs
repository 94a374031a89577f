//! The aggregator's cache of node data, under per-path rules
//! ([`crate::config::CachePolicy`]).
//!
//! - Entries are keyed by (node, kind, node-relative path) and weighed in
//!   bytes; moka bounds the total and evicts.
//! - Concurrent readers of one uncached key cause one node read (moka's
//!   `try_get_with` coalesces loads).
//! - Freshness is decided here against [`tokio::time::Instant`], not by
//!   moka's wall clock, so tests drive expiry with `tokio::time::pause()`.
//!   moka's own expiry only backs it up to free memory.
//! - A rule with `stale = "30s"` lets an entry past its TTL be served while
//!   one background load refreshes it, and while the node is down (the
//!   caller learns the age).
//! - `ttl = "never"` paths bypass the cache: every read goes to the node.
//! - Errors are never cached.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache as Moka;
use tokio::time::Instant;

use crate::config::{CachePolicy, Ttl};

/// What kind of node data an entry holds; one path can have several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A file's bytes.
    Data,
    /// A directory listing.
    Dir,
    /// Metadata (getattr/stat).
    Attr,
    /// A symlink target.
    Link,
    /// A value derived from `Data` (a parsed summary).
    Parsed,
}

/// Cache key: which node, which kind, which path under the node's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Stable node index.
    pub node: u32,
    /// What is cached.
    pub kind: Kind,
    /// Node-relative path starting with `/`.
    pub path: Arc<str>,
}

/// A cached value: anything cloneable whose size in bytes is known.
pub trait Weigh: Clone + Send + Sync + 'static {
    /// Approximate bytes held (for the byte bound).
    fn weight(&self) -> usize;
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// When the node was read (tokio clock).
    loaded: Instant,
    /// Fresh for this long.
    ttl: Duration,
    /// Then servable as stale for this long.
    stale: Duration,
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

/// The cache. Cheap to clone (shared).
#[derive(Clone)]
pub struct Cache<V: Weigh> {
    store: Moka<Key, Entry<V>>,
    policy: Arc<std::sync::RwLock<Arc<CachePolicy>>>,
    stats: Arc<Stats>,
    /// Keys with a background refresh in flight, so a stale entry read by
    /// many clients triggers one refresh.
    refreshing: Arc<std::sync::Mutex<std::collections::HashSet<Key>>>,
}

/// moka's expiry: drop an entry once it is past TTL + stale on the wall
/// clock, so dead entries do not hold memory until evicted by size.
struct Expire;

impl<V: Weigh> moka::Expiry<Key, Entry<V>> for Expire {
    fn expire_after_create(
        &self,
        _k: &Key,
        v: &Entry<V>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl + v.stale + Duration::from_secs(1))
    }
    fn expire_after_update(
        &self,
        _k: &Key,
        v: &Entry<V>,
        _now: std::time::Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl + v.stale + Duration::from_secs(1))
    }
}

impl<V: Weigh> Cache<V> {
    /// A cache bounded by `policy.max_bytes`.
    pub fn new(policy: CachePolicy) -> Self {
        let store = Moka::builder()
            .max_capacity(policy.max_bytes.0)
            .weigher(|k: &Key, e: &Entry<V>| {
                (k.path.len() + 64 + e.value.weight()).min(u32::MAX as usize) as u32
            })
            .expire_after(Expire)
            .build();
        Self {
            store,
            policy: Arc::new(std::sync::RwLock::new(Arc::new(policy))),
            stats: Arc::new(Stats::default()),
            refreshing: Arc::default(),
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> Arc<CachePolicy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the rules (config reload). Entries already cached keep the
    /// TTL they were loaded with; the byte bound keeps its first value
    /// (moka cannot resize), which the reload log says.
    pub fn set_policy(&self, policy: CachePolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Entries and weighted bytes held now.
    pub fn usage(&self) -> (u64, u64) {
        (self.store.entry_count(), self.store.weighted_size())
    }

    /// Runs moka's pending maintenance (evictions), for exact numbers.
    pub async fn sync(&self) {
        self.store.run_pending_tasks().await;
    }

    /// Drops everything of one node (it was removed from the config).
    pub fn forget_node(&self, node: u32) {
        let _ = self.store.invalidate_entries_if(move |k, _| k.node == node);
    }

    /// The value for `key`, from the cache when the rule for `key.path`
    /// allows it, else from `load`.
    ///
    /// The work is boxed: moka's load futures are large, and callers join
    /// several of these, which in debug builds overflowed a 2 MiB stack.
    ///
    /// # Errors
    /// What `load` returned, when no servable copy exists.
    pub async fn get_or_load<E, Fut>(
        &self,
        key: Key,
        load: impl FnOnce() -> Fut,
    ) -> Result<(V, Freshness), E>
    where
        E: Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<V, E>> + Send + 'static,
    {
        Box::pin(self.get_or_load_inner(key, load)).await
    }

    async fn get_or_load_inner<E, Fut>(
        &self,
        key: Key,
        load: impl FnOnce() -> Fut,
    ) -> Result<(V, Freshness), E>
    where
        E: Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<V, E>> + Send + 'static,
    {
        let policy = self.policy();
        let decision = policy.ttl_for(&key.path);
        let Ttl::For(ttl) = decision.ttl else {
            self.stats.bypass.fetch_add(1, Ordering::Relaxed);
            self.stats.node_reads.fetch_add(1, Ordering::Relaxed);
            let r = load().await;
            if r.is_err() {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            return r.map(|v| (v, Freshness::Loaded));
        };
        let stale = decision.stale.unwrap_or_default();
        let max_entry = policy.max_entry_bytes.0 as usize;
        if let Some(e) = self.store.get(&key).await {
            let age = e.loaded.elapsed();
            if age <= e.ttl {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((e.value, Freshness::Fresh));
            }
            if age <= e.ttl + e.stale {
                // Serve it; one background load refreshes it. A failed
                // refresh leaves the stale copy in place.
                self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                let start = self
                    .refreshing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone());
                if start {
                    let me = self.clone();
                    let fut = load();
                    let k = key.clone();
                    tokio::spawn(async move {
                        me.stats.node_reads.fetch_add(1, Ordering::Relaxed);
                        match fut.await {
                            Ok(v) if v.weight() <= max_entry => {
                                me.store
                                    .insert(
                                        k.clone(),
                                        Entry {
                                            value: v,
                                            loaded: Instant::now(),
                                            ttl,
                                            stale,
                                        },
                                    )
                                    .await;
                            }
                            Ok(_) => {}
                            Err(_) => {
                                me.stats.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        me.refreshing
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&k);
                    });
                }
                return Ok((e.value, Freshness::Stale(age)));
            }
            // Too old to serve: drop it and load below. Another reader may
            // do the same; moka coalesces the loads that follow.
            self.store.invalidate(&key).await;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let stats = self.stats.clone();
        let fut = load();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ran2 = ran.clone();
        let loaded = self
            .store
            .try_get_with(key.clone(), async move {
                ran2.store(true, Ordering::Relaxed);
                stats.node_reads.fetch_add(1, Ordering::Relaxed);
                let v = fut.await.inspect_err(|_| {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                })?;
                Ok::<_, E>(Entry {
                    value: v,
                    loaded: Instant::now(),
                    ttl,
                    stale,
                })
            })
            .await;
        match loaded {
            Ok(e) => {
                if e.value.weight() > max_entry {
                    // Served once, not kept: large files would push out
                    // thousands of small hot ones.
                    self.store.invalidate(&key).await;
                }
                let f = if ran.load(Ordering::Relaxed) {
                    Freshness::Loaded
                } else {
                    Freshness::Fresh
                };
                Ok((e.value, f))
            }
            Err(e) => Err((*e).clone()),
        }
    }
}

#[cfg(test)]
mod tests;

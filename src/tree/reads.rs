//! Node data read through the cache, one [`Kind`] per sort of read: the
//! kind fixes the cached value's type, so each accessor gets back what it
//! stored.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{Freshness, Key, Kind};
use crate::client::pool::{Node, Pool, PoolError, User};
use crate::client::{ClientError, DirEntryInfo, FidHandle, OpenMode};
use crate::config::Ttl;
use crate::format::delta::{self, Token};
use crate::format::merged::{self, Merged, MergedNode};
use crate::format::summary::{self, NodeSummary};
use crate::proto::{Metadata, errno};
use crate::server::{FsError, FsResult};
use crate::sys;

use super::Tree;
use super::members::Member;

/// A node file's bytes.
pub(super) struct Data;

impl Kind for Data {
    type Value = Bytes;
    fn weight(b: &Bytes) -> usize {
        b.len()
    }
}

/// A node directory's entries, without `.` and `..`.
pub(super) struct Listing;

impl Kind for Listing {
    type Value = Arc<Vec<DirEntryInfo>>;
    fn weight(d: &Self::Value) -> usize {
        d.iter().map(|e| 48 + e.name.len()).sum()
    }
}

/// A node file's metadata.
pub(super) struct Attr;

impl Kind for Attr {
    type Value = Arc<Metadata>;
    fn weight(_: &Self::Value) -> usize {
        160
    }
}

/// A node symlink's target.
pub(super) struct Link;

impl Kind for Link {
    type Value = Arc<str>;
    fn weight(l: &Arc<str>) -> usize {
        l.len()
    }
}

/// A pool node's summary file, parsed: a node's own, or the merged one of
/// a lower aggregator.
pub(super) struct Parsed;

/// What a pool node's summary file held.
#[derive(Clone)]
pub(super) enum Fetched {
    /// A node's summary.
    Node(Arc<NodeSummary>),
    /// A lower aggregator's merged summary.
    Merged(Arc<MergedIndex>),
}

/// A merged summary with its nodes by name.
pub(super) struct MergedIndex {
    /// The file.
    pub(super) merged: Merged,
    by_name: HashMap<String, usize>,
    /// Unique per parse: says whether a member list was made from it.
    pub(super) id: u64,
}

impl MergedIndex {
    fn new(merged: Merged) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let by_name = merged
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Self {
            merged,
            by_name,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The node named `name`.
    pub(super) fn get(&self, name: &str) -> Option<&MergedNode> {
        self.by_name.get(name).map(|&i| &self.merged.nodes[i])
    }
}

fn summary_weight(s: &NodeSummary) -> usize {
    256 + s
        .procs
        .iter()
        .map(|p| 96 + p.comm.as_escaped().len() + p.cmdline.bytes_len())
        .sum::<usize>()
}

impl Kind for Parsed {
    type Value = Fetched;
    const PER_NODE: bool = true;
    fn weight(f: &Fetched) -> usize {
        match f {
            Fetched::Node(s) => summary_weight(s),
            Fetched::Merged(m) => m
                .merged
                .nodes
                .iter()
                .map(|n| {
                    128 + match &n.data {
                        merged::NodeData::Summary { summary, .. } => summary_weight(summary),
                        merged::NodeData::Missing { reason, .. } => reason.len(),
                    }
                })
                .sum(),
        }
    }
}

/// Open summary files by pool node, kept where the node takes the file
/// anew on a read at 0 (`fresh_at_zero`), so that a refresh is one read
/// instead of a walk, an open, two reads and a clunk. Each is the service
/// identity's, as every summary read is, and is used only on the
/// connection that opened it.
#[derive(Clone, Default)]
pub(super) struct KeptFiles(Arc<std::sync::Mutex<HashMap<u32, Arc<FidHandle>>>>);

impl KeptFiles {
    /// Reads the summary at `path` of pool node `idx` through `root`: on
    /// the kept fid when it is `root`'s connection's, else (or when that
    /// read fails) by walking and opening it, kept if its header says
    /// `fresh_at_zero`. Also says whether the kept fid served it.
    async fn read(
        self,
        root: Arc<FidHandle>,
        idx: u32,
        path: String,
    ) -> Result<(Bytes, bool), ClientError> {
        let limit = root.client().options().max_read_bytes;
        let held = sys::lock(&self.0).get(&idx).cloned();
        if let Some(f) = held {
            if f.same_connection(&root)
                && let Ok(b) = f.reread(limit).await
            {
                return Ok((b, true));
            }
            // Another connection's, or it failed: open it again.
            let mut map = sys::lock(&self.0);
            if map.get(&idx).is_some_and(|k| Arc::ptr_eq(k, &f)) {
                map.remove(&idx);
            }
        }
        let mut f = root.walk(&path).await?;
        f.open(OpenMode::Read).await?;
        let bytes = f.read_to_end(limit).await?;
        if summary::says_fresh_at_zero(&bytes) {
            sys::lock(&self.0).insert(idx, Arc::new(f));
        }
        Ok((bytes, false))
    }

    /// The file kept for pool node `idx`.
    #[cfg(test)]
    pub(super) fn held(&self, idx: u32) -> Option<Arc<FidHandle>> {
        sys::lock(&self.0).get(&idx).cloned()
    }

    /// Drops the kept files of pool nodes a reload removed (or all).
    pub(super) fn forget(&self, removed: Option<&[u32]>) {
        let mut map = sys::lock(&self.0);
        match removed {
            Some(r) => r.iter().for_each(|idx| {
                map.remove(idx);
            }),
            None => map.clear(),
        }
    }
}

/// Whether the node behind a node-relative `path` is a gproc server, whose
/// open takes a snapshot of the file that reads then slice: a path whose
/// first component is a pinned `<pid>.<start>` name, which only our agent
/// resolves (and a lower aggregator passes through to it; both serve
/// files that way).
fn serves_snapshots(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next();
    first.is_some_and(|f| summary::parse_pinned_name(f).is_some())
}

/// Each pool node's last summary and its generation, outside the cache
/// (which evicts): a refresh asks the node for what changed since then
/// ([`crate::format::delta`]) and falls back to a whole read on any error.
#[derive(Default)]
pub(super) struct Held {
    by_node: Mutex<HashMap<u32, (Token, Arc<NodeSummary>)>>,
    /// How refreshes are made ([`SummaryRefresh`] as a number).
    mode: AtomicU8,
    deltas: AtomicU64,
    rereads: AtomicU64,
    wholes: AtomicU64,
    fallbacks: AtomicU64,
    bytes: AtomicU64,
}

/// How the aggregator refreshes a node's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum SummaryRefresh {
    /// Read again from offset 0 on the fid kept open, where the node
    /// serves the file anew there (`fresh_at_zero`): one message per
    /// refresh, the fewest, and the least aggregator CPU measured
    /// (BENCHMARKS.md, `gproc bench live`). Other nodes: whole reads.
    #[default]
    Reread = 0,
    /// Ask the node what changed since the last summary
    /// ([`crate::format::delta`]), where it serves deltas: a third to a
    /// half fewer bytes, for links where bytes cost more than messages.
    Deltas = 1,
    /// A walk, an open and reads every time (a comparison's floor).
    Whole = 2,
}

/// How the aggregator's summary reads went (counters since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummaryReads {
    /// Refreshes made by applying a delta.
    pub deltas: u64,
    /// Whole reads made on a kept fid (one message each).
    pub rereads: u64,
    /// Whole reads of a summary file (node or merged).
    pub wholes: u64,
    /// Deltas asked for that failed (unknown token, restarted node, a
    /// delta that did not apply), each followed by a whole read.
    pub fallbacks: u64,
    /// Bytes of summary files and deltas read.
    pub bytes: u64,
}

impl Held {
    fn mode(&self) -> SummaryRefresh {
        match self.mode.load(Ordering::Relaxed) {
            1 => SummaryRefresh::Deltas,
            2 => SummaryRefresh::Whole,
            _ => SummaryRefresh::Reread,
        }
    }

    fn get(&self, node: u32) -> Option<(Token, Arc<NodeSummary>)> {
        if self.mode() != SummaryRefresh::Deltas {
            return None;
        }
        sys::lock(&self.by_node).get(&node).cloned()
    }

    pub(super) fn put(&self, node: u32, held: Option<(Token, Arc<NodeSummary>)>) {
        let mut m = sys::lock(&self.by_node);
        match held {
            Some(h) => m.insert(node, h),
            None => m.remove(&node),
        };
    }

    fn count(&self, c: &AtomicU64, bytes: usize) {
        c.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Summary files at least this big are parsed on a blocking thread.
const OFFLOAD_PARSE_BYTES: usize = 1 << 20;

pub(super) fn pool_err(e: PoolError) -> FsError {
    FsError::new(e.errno()).with(e.to_string())
}

impl Tree {
    /// The `kind` value of `node`'s `path`, from the cache or from `load`
    /// (given the pool, the pool node reads go through and the path as
    /// sent there).
    async fn cached<K, F, Fut>(
        &self,
        kind: K,
        node: &Member,
        path: &str,
        user: Option<&User>,
        load: F,
    ) -> FsResult<(K::Value, Freshness)>
    where
        K: Kind,
        F: FnOnce(Arc<Pool>, Arc<Node>, String, Option<User>) -> Fut + Send + 'static,
        Fut: Future<Output = FsResult<K::Value>> + Send + 'static,
    {
        self.cached_owned(kind, node, path, user, load).await
    }

    /// [`Self::cached`] as a future that borrows nothing, so that it can
    /// run on in a task of its own ([`super::late`]).
    fn cached_owned<K, F, Fut>(
        &self,
        kind: K,
        node: &Member,
        path: &str,
        user: Option<&User>,
        load: F,
    ) -> impl Future<Output = FsResult<(K::Value, Freshness)>> + Send + 'static
    where
        K: Kind,
        F: FnOnce(Arc<Pool>, Arc<Node>, String, Option<User>) -> Fut + Send + 'static,
        Fut: Future<Output = FsResult<K::Value>> + Send + 'static,
    {
        let key = Key {
            kind,
            node: node.index,
            path: path.into(),
            user: user.map(|u| u.uid),
        };
        let (pool, n, p, u) = (
            self.pool.clone(),
            node.via.clone(),
            node.wire(path).into_owned(),
            user.cloned(),
        );
        let cache = self.cache.clone();
        async move { cache.get_or_load(key, move || load(pool, n, p, u)).await }
    }

    /// A node file's bytes, through the cache, read on behalf of `user`
    /// (`None`: the service identity; the same for the accessors below).
    /// A fid the metadata read just walked for the same asker and path is
    /// opened instead of walking again ([`Walked`](super::walked::Walked)).
    pub(super) async fn node_read(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Bytes> {
        let walked = self.walked.clone();
        let snapshot = serves_snapshots(path);
        self.cached(Data, node, path, user, move |pool, n, p, u| async move {
            let kept = walked.take(n.index, u.as_ref().map(|u| u.uid), &p);
            pool.with_node_as(&n, u.as_ref(), |root| async move {
                // From a gproc server ([`serves_snapshots`]) without the
                // closing empty read, and with the open and the first read
                // (and the walk) sent together: one node round trip
                // instead of three.
                let limit = root.client().options().max_read_bytes;
                if let Some(mut f) = kept {
                    // Any failure: the path walked afresh answers.
                    let read = if snapshot {
                        f.open_read_snapshot(limit).await
                    } else {
                        match f.open(OpenMode::Read).await {
                            Ok(()) => f.read_whole(limit, false).await,
                            Err(e) => Err(e),
                        }
                    };
                    if let Ok(b) = read {
                        return Ok(b);
                    }
                }
                if snapshot {
                    let (_f, _, b) = root.walk_open_read_snapshot(&p, limit).await?;
                    return Ok(b);
                }
                let mut f = root.walk(&p).await?;
                f.open(OpenMode::Read).await?;
                f.read_whole(limit, false).await
            })
            .await
            .map_err(pool_err)
        })
        .await
        .map(|(v, _)| v)
    }

    /// A node directory's entries (without `.` and `..`), through the
    /// cache; like [`Self::node_read`], on a just walked fid if one is kept.
    pub(super) async fn node_list(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Arc<Vec<DirEntryInfo>>> {
        let walked = self.walked.clone();
        let snapshot = serves_snapshots(path);
        self.cached(Listing, node, path, user, move |pool, n, p, u| async move {
            let kept = walked.take(n.index, u.as_ref().map(|u| u.uid), &p);
            let mut v = pool
                .with_node_as(&n, u.as_ref(), |root| async move {
                    if let Some(mut f) = kept {
                        let limit = f.client().options().max_read_bytes;
                        if f.open(OpenMode::Read).await.is_ok()
                            && let Ok(v) = f.list_whole(limit, snapshot).await
                        {
                            return Ok(v);
                        }
                    }
                    if !snapshot {
                        return root.read_dir(&p).await;
                    }
                    let mut f = root.walk(&p).await?;
                    f.open(OpenMode::Read).await?;
                    let limit = f.client().options().max_read_bytes;
                    f.list_whole(limit, snapshot).await
                })
                .await
                .map_err(pool_err)?;
            v.retain(|e| e.name != "." && e.name != "..");
            Ok(Arc::new(v))
        })
        .await
        .map(|(v, _)| v)
    }

    /// The listing of a node directory the cache holds now for `user`,
    /// whatever its age (at most its TTL and stale bound plus a second),
    /// without reading anything.
    pub(super) async fn node_list_kept(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> Option<Arc<Vec<DirEntryInfo>>> {
        let key = Key {
            kind: Listing,
            node: node.index,
            path: path.into(),
            user: user.map(|u| u.uid),
        };
        self.cache.peek(&key).await
    }

    /// A node file's metadata, through the cache. The fid walked for it is
    /// kept for the open that usually follows, for the path's cache TTL
    /// (capped; never for a path the rules never cache).
    pub(super) async fn node_meta(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Arc<Metadata>> {
        let (walked, policy, rel) = (self.walked.clone(), self.cache.policy(), path.to_owned());
        self.cached(Attr, node, path, user, |pool, n, p, u| async move {
            let (index, uid) = (n.index, u.as_ref().map(|u| u.uid));
            let keep_for = match policy.ttl_for(&rel).ttl {
                Ttl::For(d) => d,
                Ttl::Never => Duration::ZERO,
            };
            pool.with_node_as(&n, u.as_ref(), |root| async move {
                if p.trim_matches('/').is_empty() {
                    return root.metadata(&p).await;
                }
                // From the parent's fid, if a metadata read kept it (a
                // process directory stat'ed before the file looked up in
                // it): a shorter walk. Any error: the path walked afresh
                // answers. Walk and getattr go out together (one round
                // trip, not two); the parent's fid is clunked once dropped.
                let from_parent = match p.rsplit_once('/') {
                    Some((parent, name)) if !parent.is_empty() && !name.is_empty() => walked
                        .take(index, uid, parent)
                        .filter(|f| f.same_connection(&root))
                        .map(|f| (f, name)),
                    _ => None,
                };
                let moved = match from_parent {
                    Some((f, name)) => f.walk_getattr(name).await.ok(),
                    None => None,
                };
                let (f, m) = match moved {
                    Some(fm) => fm,
                    None => root.walk_getattr(&p).await?,
                };
                walked.keep(index, uid, &p, f, keep_for);
                Ok(m)
            })
            .await
            .map(Arc::new)
            .map_err(pool_err)
        })
        .await
        .map(|(v, _)| v)
    }

    /// A node symlink's target, through the cache.
    pub(super) async fn node_link(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Arc<str>> {
        self.cached(Link, node, path, user, |pool, n, p, u| async move {
            pool.with_node_as(
                &n,
                u.as_ref(),
                |root| async move { root.readlink(&p).await },
            )
            .await
            .map(Arc::from)
            .map_err(pool_err)
        })
        .await
        .map(|(v, _)| v)
    }

    /// The member's last parsed summary, if the cache still has it,
    /// without reading anything (for `/nodes`, which shows live state).
    pub(super) async fn last_summary(&self, node: &Member) -> Option<Arc<NodeSummary>> {
        let key = Key {
            kind: Parsed,
            node: node.via.index,
            path: summary::FILE_PATH.into(),
            user: None,
        };
        match self.cache.peek(&key).await? {
            Fetched::Node(s) if !node.is_below() => Some(s),
            Fetched::Merged(m) if node.is_below() => match &m.get(&node.name)?.data {
                merged::NodeData::Summary { summary, .. } => Some(summary.clone()),
                merged::NodeData::Missing { .. } => None,
            },
            _ => None,
        }
    }

    /// How node summaries are refreshed ([`SummaryRefresh::Reread`] by
    /// default): what the others cost is what a benchmark compares.
    pub fn set_summary_refresh(&self, mode: SummaryRefresh) {
        self.held.mode.store(mode as u8, Ordering::Relaxed);
        if mode != SummaryRefresh::Deltas {
            sys::lock(&self.held.by_node).clear();
        }
        if mode != SummaryRefresh::Reread {
            self.summary_fids.forget(None);
        }
    }

    /// How summary reads went so far: deltas applied, whole reads, failed
    /// deltas, bytes.
    pub fn summary_reads(&self) -> SummaryReads {
        let h = &self.held;
        SummaryReads {
            deltas: h.deltas.load(Ordering::Relaxed),
            rereads: h.rereads.load(Ordering::Relaxed),
            wholes: h.wholes.load(Ordering::Relaxed),
            fallbacks: h.fallbacks.load(Ordering::Relaxed),
            bytes: h.bytes.load(Ordering::Relaxed),
        }
    }

    /// A pool node's summary file, parsed (a node's or a lower
    /// aggregator's), and, when a `stale` rule let the cache serve it past
    /// its TTL, its age. What the pool node was found to be is recorded.
    ///
    /// How it is refreshed is [`SummaryRefresh`]: by default on the fid
    /// kept open ([`KeptFiles`]); with deltas, a node's summary that
    /// carried a generation is kept ([`Held`]), the next load asks the node
    /// for the delta since it and applies it, and reads whole on any error.
    /// Every way gives what a whole read gives.
    pub(super) async fn fetch_summary(
        &self,
        node: &Arc<Node>,
    ) -> FsResult<(Fetched, Option<Duration>)> {
        let direct = Member::direct(node);
        let kept = self.summary_fids.clone();
        let held = self.held.clone();
        // In a task of its own: a read still going at a table's deadline
        // finishes into the cache for the next table (`super::late`).
        let read = self.cached_owned(
                Parsed,
                &direct,
                summary::FILE_PATH,
                None,
                |pool, n, p, _| async move {
                    if let Some((token, base)) = held.get(n.index) {
                        let since = delta::since_path(token);
                        let got = pool
                            .with_node(&n, |root| async move { root.read_all(&since).await })
                            .await;
                        let applied = match got {
                            Ok(d) => {
                                let len = d.len();
                                tokio::spawn(async move { delta::apply(&base, token, &d) })
                                    .await
                                    .ok()
                                    .and_then(Result::ok)
                                    .map(|r| (r, len))
                            }
                            Err(_) => None,
                        };
                        match applied {
                            Some(((t, s), len)) => {
                                held.count(&held.deltas, len);
                                let s = Arc::new(s);
                                held.put(n.index, Some((t, s.clone())));
                                return Ok(Fetched::Node(s));
                            }
                            // Whatever went wrong, a whole read below.
                            None => held.count(&held.fallbacks, 0),
                        }
                    }
                    let bytes = if held.mode() == SummaryRefresh::Reread {
                        let (bytes, kept_fid) = pool
                            .with_node(&n, |root| kept.read(root, n.index, p))
                            .await
                            .map_err(pool_err)?;
                        if kept_fid {
                            held.count(&held.rereads, 0);
                        }
                        bytes
                    } else {
                        pool.with_node(&n, |root| async move { root.read_all(&p).await })
                            .await
                            .map_err(pool_err)?
                    };
                    let name = n.spec.name.clone();
                    // Only a peer the config attaches whole (aname "", as
                    // a lower aggregator is) may speak for other nodes: a
                    // compromised node attached at /proc cannot make
                    // itself an aggregator and serve nodes it invents.
                    if merged::is_merged(&bytes) && !n.spec.aname.trim_matches('/').is_empty() {
                        return Err(FsError::new(errno::EPROTO).with(format!(
                            "{name} serves a merged summary (a gproc aggregator's) but is attached at {:?}; \
                             a lower aggregator is configured with aname = \"\"",
                            n.spec.aname
                        )));
                    }
                    held.count(&held.wholes, bytes.len());
                    let small = bytes.len() < OFFLOAD_PARSE_BYTES;
                    let index = n.index;
                    let parse = move || {
                        let bad = |e| {
                            FsError::new(errno::EPROTO).with(format!("{name}: bad summary: {e}"))
                        };
                        if merged::is_merged(&bytes) {
                            held.put(index, None);
                            merged::parse_shared(&bytes)
                                .map(|m| Fetched::Merged(Arc::new(MergedIndex::new(m))))
                                .map_err(bad)
                        } else {
                            let s = Arc::new(summary::parse_shared(&bytes).map_err(bad)?);
                            // A node that serves deltas says its summary's
                            // generation; one that does not is read whole.
                            // Held only where deltas are asked for: the
                            // summary would otherwise outlive the cache.
                            let token = (held.mode() == SummaryRefresh::Deltas)
                                .then(|| delta::generation(&bytes))
                                .flatten();
                            held.put(index, token.map(|t| (t, s.clone())));
                            Ok(Fetched::Node(s))
                        }
                    };
                    // This read runs in a task of its own (`LateReads`),
                    // so a fan-out's parses already spread over the
                    // runtime's workers. A lower aggregator's file is
                    // CPU-bound work of up to seconds: off the runtime's
                    // threads.
                    if small {
                        return parse();
                    }
                    tokio::task::spawn_blocking(parse)
                        .await
                        .map_err(|e| FsError::IO.with(format!("parsing a summary: {e}")))?
                },
            );
        let (f, fresh) = self.late.run(node.index, read).await?;
        self.learn(node, &f);
        let age = match fresh {
            Freshness::Stale(age) => Some(age),
            _ => None,
        };
        Ok((f, age))
    }
}

//! Node data read through the cache, one [`Kind`] per sort of read: the
//! kind fixes the cached value's type, so each accessor gets back what it
//! stored.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{Freshness, Key, Kind};
use crate::client::DirEntryInfo;
use crate::client::pool::{Node, Pool, PoolError, User};
use crate::format::merged::{self, Merged, MergedNode};
use crate::format::summary::{self, NodeSummary};
use crate::proto::{Metadata, errno};
use crate::server::{FsError, FsResult};

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
        .map(|p| 96 + p.comm.len() + p.cmdline.iter().map(Vec::len).sum::<usize>())
        .sum::<usize>()
}

impl Kind for Parsed {
    type Value = Fetched;
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
    pub(super) async fn node_read(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Bytes> {
        self.cached(Data, node, path, user, |pool, n, p, u| async move {
            pool.with_node_as(
                &n,
                u.as_ref(),
                |root| async move { root.read_all(&p).await },
            )
            .await
            .map_err(pool_err)
        })
        .await
        .map(|(v, _)| v)
    }

    /// A node directory's entries (without `.` and `..`), through the cache.
    pub(super) async fn node_list(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Arc<Vec<DirEntryInfo>>> {
        self.cached(Listing, node, path, user, |pool, n, p, u| async move {
            let mut v = pool
                .with_node_as(
                    &n,
                    u.as_ref(),
                    |root| async move { root.read_dir(&p).await },
                )
                .await
                .map_err(pool_err)?;
            v.retain(|e| e.name != "." && e.name != "..");
            Ok(Arc::new(v))
        })
        .await
        .map(|(v, _)| v)
    }

    /// A node file's metadata, through the cache.
    pub(super) async fn node_meta(
        &self,
        node: &Member,
        path: &str,
        user: Option<&User>,
    ) -> FsResult<Arc<Metadata>> {
        self.cached(Attr, node, path, user, |pool, n, p, u| async move {
            pool.with_node_as(
                &n,
                u.as_ref(),
                |root| async move { root.metadata(&p).await },
            )
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

    /// A pool node's summary file, parsed (a node's or a lower
    /// aggregator's), and, when a `stale` rule let the cache serve it past
    /// its TTL, its age. What the pool node was found to be is recorded.
    pub(super) async fn fetch_summary(
        &self,
        node: &Arc<Node>,
    ) -> FsResult<(Fetched, Option<Duration>)> {
        let direct = Member::direct(node);
        // In a task of its own: a read still going at a table's deadline
        // finishes into the cache for the next table (`super::late`).
        let read = self.cached_owned(
                Parsed,
                &direct,
                summary::FILE_PATH,
                None,
                |pool, n, p, _| async move {
                    let bytes = pool
                        .with_node(&n, |root| async move { root.read_all(&p).await })
                        .await
                        .map_err(pool_err)?;
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
                    let small = bytes.len() < OFFLOAD_PARSE_BYTES;
                    let parse = move || {
                        let bad = |e| {
                            FsError::new(errno::EPROTO).with(format!("{name}: bad summary: {e}"))
                        };
                        if merged::is_merged(&bytes) {
                            merged::parse(&bytes)
                                .map(|m| Fetched::Merged(Arc::new(MergedIndex::new(m))))
                                .map_err(bad)
                        } else {
                            summary::parse(&bytes)
                                .map(|s| Fetched::Node(Arc::new(s)))
                                .map_err(bad)
                        }
                    };
                    // A node's summary is parsed in a task of its own, so
                    // that a fan-out's parses spread over the runtime's
                    // workers instead of queueing in the one task that
                    // polls them all. A lower aggregator's file is
                    // CPU-bound work of up to seconds: off the runtime's
                    // threads.
                    if small {
                        return tokio::spawn(async move { parse() })
                            .await
                            .map_err(|e| FsError::IO.with(format!("parsing a summary: {e}")))?;
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

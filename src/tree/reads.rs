//! Node data read through the cache, one [`Kind`] per sort of read: the
//! kind fixes the cached value's type, so each accessor gets back what it
//! stored.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{Freshness, Key, Kind};
use crate::client::DirEntryInfo;
use crate::client::pool::{Node, Pool, PoolError, User};
use crate::format::summary::{self, NodeSummary};
use crate::proto::{Metadata, errno};
use crate::server::{FsError, FsResult};

use super::Tree;

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

/// A node's summary file, parsed.
pub(super) struct Parsed;

impl Kind for Parsed {
    type Value = Arc<NodeSummary>;
    fn weight(s: &Self::Value) -> usize {
        256 + s
            .procs
            .iter()
            .map(|p| 96 + p.comm.len() + p.cmdline.iter().map(Vec::len).sum::<usize>())
            .sum::<usize>()
    }
}

pub(super) fn pool_err(e: PoolError) -> FsError {
    FsError::new(e.errno()).with(e.to_string())
}

impl Tree {
    /// The `kind` value of `node`'s `path`, from the cache or from `load`
    /// (given the pool, the node and the path).
    async fn cached<K, F, Fut>(
        &self,
        kind: K,
        node: &Arc<Node>,
        path: &str,
        user: Option<&User>,
        load: F,
    ) -> FsResult<(K::Value, Freshness)>
    where
        K: Kind,
        F: FnOnce(Arc<Pool>, Arc<Node>, String, Option<User>) -> Fut,
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
            node.clone(),
            path.to_string(),
            user.cloned(),
        );
        self.cache
            .get_or_load(key, move || load(pool, n, p, u))
            .await
    }

    /// A node file's bytes, through the cache, read on behalf of `user`
    /// (`None`: the service identity; the same for the accessors below).
    pub(super) async fn node_read(
        &self,
        node: &Arc<Node>,
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
        node: &Arc<Node>,
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
        node: &Arc<Node>,
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
        node: &Arc<Node>,
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

    /// The node's last parsed summary, if the cache still has it, without
    /// reading the node (for `/nodes`, which shows live pool state).
    pub(super) async fn last_summary(&self, node: &Node) -> Option<Arc<NodeSummary>> {
        let key = Key {
            kind: Parsed,
            node: node.index,
            path: summary::FILE_PATH.into(),
            user: None,
        };
        self.cache.peek(&key).await
    }

    /// The node's parsed summary and, when a `stale` rule let the cache
    /// serve it past its TTL, its age.
    pub(super) async fn node_parsed_summary(
        &self,
        node: &Arc<Node>,
    ) -> FsResult<(Arc<NodeSummary>, Option<Duration>)> {
        let (s, fresh) = self
            .cached(
                Parsed,
                node,
                summary::FILE_PATH,
                None,
                |pool, n, p, _| async move {
                    let bytes = pool
                        .with_node(&n, |root| async move { root.read_all(&p).await })
                        .await
                        .map_err(pool_err)?;
                    summary::parse(&bytes).map(Arc::new).map_err(|e| {
                        FsError::new(errno::EPROTO)
                            .with(format!("{}: bad summary: {e}", n.spec.name))
                    })
                },
            )
            .await?;
        let age = match fresh {
            Freshness::Stale(age) => Some(age),
            _ => None,
        };
        Ok((s, age))
    }
}

//! The merged namespace the aggregator serves: a [`Filesystem`] built on
//! the node [`Pool`] and the [`Cache`].
//!
//! ```text
//! /nodes              one line per node: state, address, dialect, rtt, last error
//! /ps                 one line per visible process of the cluster
//! /load               one line per visible node: load, cpus, memory, uptime
//! /stats              cache and pool counters
//! /pid/<pid>@<node>   the global process space: that process's directory
//! /<node>/...         everything that node's /proc export has
//! ```
//!
//! Node data is read path by path from each node's attach root and cached
//! under the per-path rules; a fid's node is only a location (what an open
//! fid holds is the session's). So a node reconnect needs no fid replay.
//!
//! `qid.path` is unique and stable across the tree: the top two bits say
//! which part of the namespace a file is in (synthesized, node tree, or the
//! `/pid` aliases, which Linux must not see as the same directories), the
//! next 22 bits are the node's stable index, the low 40 bits the node's own
//! qid.path (hashed into 40 bits when larger, as a lower aggregator's are).

mod procs;
pub mod tables;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;

use crate::cache::{Cache, Key, Kind, Weigh};
use crate::client::DirEntryInfo;
use crate::client::pool::{Node, Pool, PoolError};
use crate::format::summary::{self, NodeSummary};
use crate::format::table::{LOAD_HEADER, NODES_HEADER, PS_HEADER, Row};
use crate::proto::{DirEntry, Metadata, Qid, dt, errno, qt, s_if};
use crate::server::{AttachRequest, Contents, Filesystem, FsError, FsResult, Identity, OpenFlags};
use crate::view::{View, Views};

/// A cached piece of node data.
#[derive(Clone)]
pub enum Value {
    /// File contents.
    Bytes(Bytes),
    /// A directory listing.
    Dir(Arc<Vec<DirEntryInfo>>),
    /// Metadata.
    Meta(Arc<Metadata>),
    /// A symlink target.
    Link(Arc<str>),
    /// A parsed node summary.
    Summary(Arc<NodeSummary>),
}

impl Weigh for Value {
    fn weight(&self) -> usize {
        match self {
            Value::Bytes(b) => b.len(),
            Value::Dir(d) => d.iter().map(|e| 48 + e.name.len()).sum(),
            Value::Meta(_) => 160,
            Value::Link(l) => l.len(),
            Value::Summary(s) => {
                256 + s
                    .procs
                    .iter()
                    .map(|p| 96 + p.comm.len() + p.cmdline.iter().map(Vec::len).sum::<usize>())
                    .sum::<usize>()
            }
        }
    }
}

/// Synthesized files at the top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synth {
    Nodes,
    Ps,
    Load,
    Stats,
}

impl Synth {
    fn name(self) -> &'static str {
        match self {
            Synth::Nodes => "nodes",
            Synth::Ps => "ps",
            Synth::Load => "load",
            Synth::Stats => "stats",
        }
    }
    const ALL: [Synth; 4] = [Synth::Nodes, Synth::Ps, Synth::Load, Synth::Stats];
}

/// Where a fid is.
#[derive(Clone)]
enum Loc {
    Root,
    File(Synth),
    PidDir,
    /// A node's file; `path` is node-relative ("/" for its root).
    Node {
        node: Arc<Node>,
        path: Arc<str>,
        alias: bool,
    },
}

/// Where a fid of the merged tree is, and the view it was attached with.
#[derive(Clone)]
pub struct TreeNode {
    /// The attaching identity's view, decided at attach.
    view: Arc<View>,
    /// Attached to one node's directory (`aname = "/NODE"`): `..` stops
    /// there, as at any attach root.
    rooted: bool,
    loc: Loc,
    qid: Qid,
}

impl std::fmt::Debug for TreeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loc = match &self.loc {
            Loc::Root => "/".to_string(),
            Loc::File(s) => format!("/{}", s.name()),
            Loc::PidDir => "/pid".to_string(),
            Loc::Node { node, path, .. } => format!("/{}{path}", node.spec.name),
        };
        f.debug_struct("TreeNode")
            .field("loc", &loc)
            .field("qid", &self.qid)
            .finish()
    }
}

const KIND_NODE: u64 = 1;
const KIND_ALIAS: u64 = 2;
const LOW40: u64 = (1 << 40) - 1;

fn synth_qid(n: u64, dir: bool) -> Qid {
    Qid {
        ty: if dir { qt::DIR } else { qt::FILE },
        version: 0,
        path: n,
    }
}

const ROOT_QID: u64 = 1;
const PIDDIR_QID: u64 = 2;

fn file_qid(s: Synth) -> Qid {
    synth_qid(3 + s as u64, false)
}

/// Maps a node's qid into the merged tree's qid space.
fn map_qid(kind: u64, node: u32, q: Qid) -> Qid {
    let low = if q.path <= LOW40 {
        q.path
    } else {
        fold40(q.path)
    };
    Qid {
        ty: q.ty,
        version: 0,
        path: kind << 62 | (node as u64 & 0x3F_FFFF) << 40 | low,
    }
}

/// Folds 64 bits into 40 (a lower aggregator's composite qids).
fn fold40(p: u64) -> u64 {
    let mut z = p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 29;
    // Never 0: 0 is the node root's low bits.
    (z & LOW40).max(1)
}

/// The qid of a node's root directory, independent of the node being up.
fn node_root_qid(kind: u64, node: u32) -> Qid {
    map_qid(
        kind,
        node,
        Qid {
            ty: qt::DIR,
            version: 0,
            path: 0,
        },
    )
}

fn pool_err(e: PoolError) -> FsError {
    FsError::new(e.errno()).with(e.to_string())
}

/// The aggregator's tree.
pub struct Tree {
    pool: Arc<Pool>,
    cache: Cache<Value>,
    /// Limit for cluster-wide tables (`/ps`, `/load`, `/pid`).
    deadline: Duration,
    /// Nodes found without a summary file, and when; rechecked after a
    /// while (the agent may be installed later).
    no_summary: Mutex<HashMap<u32, Instant>>,
    /// Recently rendered cluster-wide tables per (table, admin, uid): a
    /// table of 200,000 processes costs CPU to format, and is no fresher
    /// than the summaries it is built from, so it is kept as long as they
    /// are (the `/.gproc/ps` rule's TTL).
    rendered: Mutex<HashMap<RenderKey, (Instant, Bytes)>>,
    /// One rebuild at a time per table and view: readers that find the
    /// table expired while another rebuilds it wait for that one instead
    /// of each gathering every node again.
    rendering: Mutex<HashMap<RenderKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Cluster-wide tables built so far (`tables_built` in `/stats`).
    tables_built: std::sync::atomic::AtomicU64,
    /// Who sees what.
    views: Arc<Views>,
}

/// A rendered table's key: (table, admin view, uid).
type RenderKey = (u8, bool, u32);

/// How long a node without a summary file is not asked for it again.
const NO_SUMMARY_RECHECK: Duration = Duration::from_secs(300);

impl Tree {
    /// A tree over `pool`, caching in `cache`, showing each identity its
    /// view under `views` (who may attach is the server's access policy).
    pub fn new(
        pool: Arc<Pool>,
        cache: Cache<Value>,
        deadline: Duration,
        views: Arc<Views>,
    ) -> Self {
        Self {
            pool,
            cache,
            deadline,
            no_summary: Mutex::new(HashMap::new()),
            rendered: Mutex::new(HashMap::new()),
            rendering: Mutex::new(HashMap::new()),
            tables_built: std::sync::atomic::AtomicU64::new(0),
            views,
        }
    }

    /// The view policy.
    pub fn views(&self) -> &Arc<Views> {
        &self.views
    }

    /// The pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The cache.
    pub fn cache(&self) -> &Cache<Value> {
        &self.cache
    }

    fn lacks_summary(&self, node: u32) -> bool {
        let mut m = self.no_summary.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(&node) {
            Some(t) if t.elapsed() < NO_SUMMARY_RECHECK => true,
            Some(_) => {
                m.remove(&node);
                false
            }
            None => false,
        }
    }

    fn mark_no_summary(&self, node: u32) {
        self.no_summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node, Instant::now());
    }

    fn key(node: &Node, kind: Kind, path: &str) -> Key {
        Key {
            node: node.index,
            kind,
            path: path.into(),
        }
    }

    /// A node file's bytes, through the cache.
    async fn node_read(&self, node: &Arc<Node>, path: &str) -> FsResult<Bytes> {
        let (pool, n, p) = (self.pool.clone(), node.clone(), path.to_string());
        let r = self
            .cache
            .get_or_load(Self::key(node, Kind::Data, path), move || async move {
                pool.with_node(&n, |root| async move { root.read_all(&p).await })
                    .await
                    .map(Value::Bytes)
                    .map_err(pool_err)
            })
            .await?;
        match r.0 {
            Value::Bytes(b) => Ok(b),
            _ => Err(FsError::IO.with("cache kind mismatch")),
        }
    }

    /// A node directory's entries (without `.` and `..`), through the cache.
    async fn node_list(&self, node: &Arc<Node>, path: &str) -> FsResult<Arc<Vec<DirEntryInfo>>> {
        let (pool, n, p) = (self.pool.clone(), node.clone(), path.to_string());
        let r = self
            .cache
            .get_or_load(Self::key(node, Kind::Dir, path), move || async move {
                pool.with_node(&n, |root| async move { root.read_dir(&p).await })
                    .await
                    .map(|mut v| {
                        v.retain(|e| e.name != "." && e.name != "..");
                        Value::Dir(Arc::new(v))
                    })
                    .map_err(pool_err)
            })
            .await?;
        match r.0 {
            Value::Dir(d) => Ok(d),
            _ => Err(FsError::IO.with("cache kind mismatch")),
        }
    }

    async fn node_meta(&self, node: &Arc<Node>, path: &str) -> FsResult<Arc<Metadata>> {
        let (pool, n, p) = (self.pool.clone(), node.clone(), path.to_string());
        let r = self
            .cache
            .get_or_load(Self::key(node, Kind::Attr, path), move || async move {
                pool.with_node(&n, |root| async move { root.metadata(&p).await })
                    .await
                    .map(|m| Value::Meta(Arc::new(m)))
                    .map_err(pool_err)
            })
            .await?;
        match r.0 {
            Value::Meta(m) => Ok(m),
            _ => Err(FsError::IO.with("cache kind mismatch")),
        }
    }

    async fn node_link(&self, node: &Arc<Node>, path: &str) -> FsResult<Arc<str>> {
        let (pool, n, p) = (self.pool.clone(), node.clone(), path.to_string());
        let r = self
            .cache
            .get_or_load(Self::key(node, Kind::Link, path), move || async move {
                pool.with_node(&n, |root| async move { root.readlink(&p).await })
                    .await
                    .map(|l| Value::Link(l.into()))
                    .map_err(pool_err)
            })
            .await?;
        match r.0 {
            Value::Link(l) => Ok(l),
            _ => Err(FsError::IO.with("cache kind mismatch")),
        }
    }

    /// The node's parsed summary and, when a `stale` rule let the cache
    /// serve it past its TTL, its age.
    async fn node_parsed_summary(
        &self,
        node: &Arc<Node>,
    ) -> FsResult<(Arc<NodeSummary>, Option<Duration>)> {
        let (pool, n) = (self.pool.clone(), node.clone());
        let r = self
            .cache
            .get_or_load(
                Self::key(node, Kind::Parsed, summary::FILE_PATH),
                move || async move {
                    let bytes =
                        pool.with_node(&n, |root| async move {
                            root.read_all(summary::FILE_PATH).await
                        })
                        .await
                        .map_err(pool_err)?;
                    summary::parse(&bytes)
                        .map(|s| Value::Summary(Arc::new(s)))
                        .map_err(|e| {
                            FsError::new(errno::EPROTO)
                                .with(format!("{}: bad summary: {e}", n.spec.name))
                        })
                },
            )
            .await?;
        let age = match r.1 {
            crate::cache::Freshness::Stale(age) => Some(age),
            _ => None,
        };
        match r.0 {
            Value::Summary(s) => Ok((s, age)),
            _ => Err(FsError::IO.with("cache kind mismatch")),
        }
    }

    /// The nodes this view sees, in config order.
    fn visible_nodes(&self, view: &View) -> Vec<Arc<Node>> {
        self.pool
            .nodes()
            .iter()
            .filter(|n| view.sees_node(&n.spec.name))
            .cloned()
            .collect()
    }

    /// Summaries of every visible node, gathered within the deadline; the
    /// nodes that failed with why; and notes for nodes whose summary is a
    /// stale copy (allowed by a `stale` rule) with its age and why.
    async fn gather(&self, view: &View) -> Gathered {
        let nodes = self.visible_nodes(view);
        let mut futs = self
            .pool
            .fan_out_with(&nodes, self.deadline, |n| async move {
                self.node_summary_aged(&n).await
            });
        let ttl = match self.cache.policy().ttl_for(summary::FILE_PATH).ttl {
            crate::config::Ttl::For(d) => d,
            crate::config::Ttl::Never => Duration::ZERO,
        };
        let (mut ok, mut missing, mut stale) = (Vec::new(), Vec::new(), Vec::new());
        while let Some((n, r)) = futs.next().await {
            match r {
                Some(Ok((s, age))) => {
                    // A copy just past its TTL while a refresh runs is
                    // normal (stale-while-revalidate); say so only when the
                    // node is down, or up but not refreshed within a
                    // deadline after the TTL.
                    if let Some(age) = age {
                        match n.status().state {
                            crate::client::pool::NodeState::Down(r) => {
                                stale.push((n.spec.name.clone(), age, format!("node down: {r}")));
                            }
                            _ if age > ttl + self.deadline => {
                                stale.push((n.spec.name.clone(), age, "refreshing".into()));
                            }
                            _ => {}
                        }
                    }
                    ok.push((n, s));
                }
                Some(Err(e)) => missing.push((n.spec.name.clone(), e.to_string())),
                None => missing.push((
                    n.spec.name.clone(),
                    format!("no answer within {:?}", self.deadline),
                )),
            }
        }
        // Config order, so the tables are stable from read to read.
        let order: HashMap<u32, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.index, i))
            .collect();
        ok.sort_by_key(|(n, _)| order.get(&n.index).copied().unwrap_or(usize::MAX));
        missing.sort();
        stale.sort();
        Gathered { ok, missing, stale }
    }

    async fn render(&self, view: &View, s: Synth) -> Bytes {
        if !matches!(s, Synth::Ps | Synth::Load) {
            return self.render_now(view, s).await;
        }
        let key = (s as u8, view.admin, view.uid);
        let ttl = match self.cache.policy().ttl_for(summary::FILE_PATH).ttl {
            crate::config::Ttl::For(d) => d,
            crate::config::Ttl::Never => Duration::ZERO,
        };
        let fresh = || {
            self.rendered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .filter(|(at, _)| at.elapsed() < ttl)
                .map(|(_, b)| b.clone())
        };
        if let Some(b) = fresh() {
            return b;
        }
        let gate = self
            .rendering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let _turn = gate.lock().await;
        // Rebuilt by the reader we waited for.
        if let Some(b) = fresh() {
            return b;
        }
        let started = Instant::now();
        let b = self.render_now(view, s).await;
        self.tables_built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (at, _)| at.elapsed() < ttl);
        if !ttl.is_zero() {
            // Stamped with the start: the data is as old as the reads.
            m.insert(key, (started, b.clone()));
        }
        b
    }

    async fn render_now(&self, view: &View, s: Synth) -> Bytes {
        let mut out = String::new();
        match s {
            Synth::Nodes => {
                out.push_str(NODES_HEADER);
                out.push('\n');
                for n in self.visible_nodes(view) {
                    out.push_str(
                        &tables::node_row(&n.spec.name, &n.spec.address.to_string(), &n.status())
                            .line(),
                    );
                    out.push('\n');
                }
            }
            Synth::Ps => {
                let Gathered { ok, missing, stale } = self.gather(view).await;
                out.push_str(PS_HEADER);
                out.push('\n');
                for (n, s) in &ok {
                    for p in s.procs.iter().filter(|p| view.sees_process(p.ruid, p.euid)) {
                        out.push_str(&tables::ps_row(&n.spec.name, s, p).line());
                        out.push('\n');
                    }
                }
                tables::missing_notes(&mut out, &missing);
                tables::stale_notes(&mut out, &stale);
            }
            Synth::Load => {
                let Gathered { ok, missing, stale } = self.gather(view).await;
                out.push_str(LOAD_HEADER);
                out.push('\n');
                for (n, s) in &ok {
                    out.push_str(&tables::load_row(&n.spec.name, s).line());
                    out.push('\n');
                }
                tables::missing_notes(&mut out, &missing);
                tables::stale_notes(&mut out, &stale);
            }
            Synth::Stats => {
                self.cache.sync().await;
                let (entries, bytes) = self.cache.usage();
                out.push_str(&self.cache.stats().render(entries, bytes));
                let nodes = self.pool.nodes();
                let up = nodes
                    .iter()
                    .filter(|n| n.status().state == crate::client::pool::NodeState::Up)
                    .count();
                out.push_str(&format!(
                    "nodes_total {}\nnodes_up {up}\ntables_built {}\n",
                    nodes.len(),
                    self.tables_built.load(std::sync::atomic::Ordering::Relaxed)
                ));
            }
        }
        Bytes::from(out)
    }

    /// Whether a node path is visible: admins see all; users see node-wide
    /// files and their own processes' directories.
    async fn path_visible(&self, view: &View, node: &Arc<Node>, path: &str) -> FsResult<bool> {
        if view.admin {
            return Ok(true);
        }
        let Some(first) = path.trim_start_matches('/').split('/').next() else {
            return Ok(true);
        };
        let Ok(pid) = first.parse::<i32>() else {
            return Ok(true);
        };
        let s = self.node_summary(node).await?;
        Ok(s.procs
            .iter()
            .any(|p| p.pid == pid && view.sees_process(p.ruid, p.euid)))
    }

    fn child_path(parent: &str, name: &str) -> String {
        if parent == "/" {
            format!("/{name}")
        } else {
            format!("{parent}/{name}")
        }
    }

    fn parent_path(path: &str) -> Option<String> {
        if path == "/" {
            return None;
        }
        match path.rfind('/') {
            Some(0) => Some("/".into()),
            Some(i) => Some(path[..i].to_string()),
            None => Some("/".into()),
        }
    }

    /// Directory entries of an opened directory, `.` and `..` first.
    async fn list(&self, fid: &TreeNode) -> FsResult<Vec<DirEntry>> {
        let mut out = vec![
            DirEntry {
                qid: fid.qid,
                offset: 0,
                ty: dt::DIR,
                name: ".".into(),
            },
            DirEntry {
                qid: fid.qid,
                offset: 0,
                ty: dt::DIR,
                name: "..".into(),
            },
        ];
        match &fid.loc {
            Loc::Root => {
                for s in Synth::ALL {
                    // Counters of the whole cluster are for administrators.
                    if s == Synth::Stats && !fid.view.admin {
                        continue;
                    }
                    out.push(DirEntry {
                        qid: file_qid(s),
                        offset: 0,
                        ty: dt::REG,
                        name: s.name().into(),
                    });
                }
                out.push(DirEntry {
                    qid: synth_qid(PIDDIR_QID, true),
                    offset: 0,
                    ty: dt::DIR,
                    name: "pid".into(),
                });
                for n in self.visible_nodes(&fid.view) {
                    out.push(DirEntry {
                        qid: node_root_qid(KIND_NODE, n.index),
                        offset: 0,
                        ty: dt::DIR,
                        name: n.spec.name.clone(),
                    });
                }
            }
            Loc::PidDir => {
                let ok = self.gather(&fid.view).await.ok;
                for (n, s) in ok {
                    for p in s
                        .procs
                        .iter()
                        .filter(|p| fid.view.sees_process(p.ruid, p.euid))
                    {
                        let q = map_qid(
                            KIND_ALIAS,
                            n.index,
                            Qid {
                                ty: qt::DIR,
                                version: 0,
                                path: 0x8000_0000 + p.pid as u64,
                            },
                        );
                        out.push(DirEntry {
                            qid: q,
                            offset: 0,
                            ty: dt::DIR,
                            name: format!("{}@{}", p.pid, n.spec.name),
                        });
                    }
                }
            }
            Loc::Node { node, path, alias } => {
                let kind = if *alias { KIND_ALIAS } else { KIND_NODE };
                let ents = self.node_list(node, path).await?;
                let visible_pids: Option<HashSet<i32>> = if !fid.view.admin && &**path == "/" {
                    let s = self.node_summary(node).await?;
                    Some(
                        s.procs
                            .iter()
                            .filter(|p| fid.view.sees_process(p.ruid, p.euid))
                            .map(|p| p.pid)
                            .collect(),
                    )
                } else {
                    None
                };
                for e in ents.iter() {
                    if let (Some(v), Ok(pid)) = (&visible_pids, e.name.parse::<i32>())
                        && !v.contains(&pid)
                    {
                        continue;
                    }
                    out.push(DirEntry {
                        qid: map_qid(kind, node.index, e.qid),
                        offset: 0,
                        ty: e.kind.dt(),
                        name: e.name.clone(),
                    });
                }
            }
            Loc::File(_) => return Err(FsError::NOTDIR),
        }
        Ok(out)
    }
}

fn synth_meta(qid: Qid, name: &str) -> Metadata {
    let now = std::time::SystemTime::now();
    let (mode, nlink) = if qid.is_dir() {
        (s_if::DIR | 0o555, 2)
    } else {
        (s_if::REG | 0o444, 1)
    };
    Metadata {
        qid,
        name: Some(name.into()),
        mode,
        uid: Some(0),
        gid: Some(0),
        user: Some("root".into()),
        group: Some("root".into()),
        nlink: Some(nlink),
        atime: now,
        mtime: now,
        ctime: Some(now),
        ..Metadata::default()
    }
}

/// What [`Tree::gather`] collected.
struct Gathered {
    ok: Vec<(Arc<Node>, Arc<NodeSummary>)>,
    missing: Vec<(String, String)>,
    /// Node, age of its copy, why it is stale.
    stale: Vec<(String, Duration, String)>,
}

impl Filesystem for Tree {
    type Node = TreeNode;

    async fn attach(&self, req: &AttachRequest) -> FsResult<(TreeNode, Qid)> {
        let view = self.views.view_for(&req.who);
        let aname = req.aname.trim_matches('/');
        if aname.is_empty() {
            let qid = synth_qid(ROOT_QID, true);
            return Ok((
                TreeNode {
                    view,
                    rooted: false,
                    loc: Loc::Root,
                    qid,
                },
                qid,
            ));
        }
        // `aname = "/n17"` attaches straight to one node's /proc: a mount of
        // it is that node's /proc, so unmodified tools (`ps`) work on it.
        let node = self
            .pool
            .node(aname)
            .filter(|n| view.sees_node(&n.spec.name))
            .ok_or_else(|| {
                FsError::NOENT.with(format!(
                    "no tree named {:?} (use \"\" or \"/NODE\")",
                    req.aname
                ))
            })?;
        let qid = node_root_qid(KIND_NODE, node.index);
        let loc = Loc::Node {
            node,
            path: "/".into(),
            alias: false,
        };
        Ok((
            TreeNode {
                view,
                rooted: true,
                loc,
                qid,
            },
            qid,
        ))
    }

    async fn walk(&self, _who: &Identity, dir: &TreeNode, name: &str) -> FsResult<(TreeNode, Qid)> {
        let view = dir.view.clone();
        let (loc, qid) = match &dir.loc {
            Loc::Root => {
                if name == ".." {
                    (Loc::Root, dir.qid)
                } else if let Some(s) = Synth::ALL
                    .into_iter()
                    .find(|s| s.name() == name && (view.admin || *s != Synth::Stats))
                {
                    (Loc::File(s), file_qid(s))
                } else if name == "pid" {
                    (Loc::PidDir, synth_qid(PIDDIR_QID, true))
                } else {
                    let node = self
                        .pool
                        .node(name)
                        .filter(|n| view.sees_node(&n.spec.name))
                        .ok_or(FsError::NOENT)?;
                    let q = node_root_qid(KIND_NODE, node.index);
                    (
                        Loc::Node {
                            node,
                            path: "/".into(),
                            alias: false,
                        },
                        q,
                    )
                }
            }
            Loc::PidDir => {
                if name == ".." {
                    (Loc::Root, synth_qid(ROOT_QID, true))
                } else {
                    let (pid, nname) = name.split_once('@').ok_or(FsError::NOENT)?;
                    let pid: i32 = pid.parse().map_err(|_| FsError::NOENT)?;
                    let node = self
                        .pool
                        .node(nname)
                        .filter(|n| view.sees_node(&n.spec.name))
                        .ok_or(FsError::NOENT)?;
                    let path = format!("/{pid}");
                    if !self.path_visible(&view, &node, &path).await? {
                        return Err(FsError::NOENT);
                    }
                    let ents = self.node_list(&node, "/").await?;
                    if !ents.iter().any(|e| e.name == path[1..]) {
                        return Err(FsError::NOENT);
                    }
                    let q = map_qid(
                        KIND_ALIAS,
                        node.index,
                        Qid {
                            ty: qt::DIR,
                            version: 0,
                            path: 0x8000_0000 + pid as u64,
                        },
                    );
                    (
                        Loc::Node {
                            node,
                            path: path.into(),
                            alias: true,
                        },
                        q,
                    )
                }
            }
            Loc::File(_) => return Err(FsError::NOTDIR),
            Loc::Node { node, path, alias } => {
                let kind = if *alias { KIND_ALIAS } else { KIND_NODE };
                if name == ".." {
                    match Self::parent_path(path) {
                        None if dir.rooted => (dir.loc.clone(), dir.qid),
                        None => (Loc::Root, synth_qid(ROOT_QID, true)),
                        Some(_) if *alias && path.matches('/').count() == 1 => {
                            (Loc::PidDir, synth_qid(PIDDIR_QID, true))
                        }
                        Some(p) => {
                            let q = if p == "/" {
                                node_root_qid(kind, node.index)
                            } else {
                                self.lookup_qid(&view, node, &p, kind).await?
                            };
                            (
                                Loc::Node {
                                    node: node.clone(),
                                    path: p.into(),
                                    alias: *alias,
                                },
                                q,
                            )
                        }
                    }
                } else {
                    let child = Self::child_path(path, name);
                    if !self.path_visible(&view, node, &child).await? {
                        return Err(FsError::NOENT);
                    }
                    let q = self.lookup_qid(&view, node, &child, kind).await?;
                    (
                        Loc::Node {
                            node: node.clone(),
                            path: child.into(),
                            alias: *alias,
                        },
                        q,
                    )
                }
            }
        };
        Ok((
            TreeNode {
                view,
                rooted: dir.rooted,
                loc,
                qid,
            },
            qid,
        ))
    }

    async fn getattr(&self, _who: &Identity, fid: &TreeNode) -> FsResult<Metadata> {
        match &fid.loc {
            Loc::Root => Ok(synth_meta(fid.qid, "/")),
            Loc::PidDir => Ok(synth_meta(fid.qid, "pid")),
            Loc::File(s) => Ok(synth_meta(fid.qid, s.name())),
            Loc::Node { node, path, alias } => {
                let name = if &**path == "/" {
                    node.spec.name.clone()
                } else if *alias && path.matches('/').count() == 1 {
                    format!("{}@{}", &path[1..], node.spec.name)
                } else {
                    path.rsplit('/').next().unwrap_or_default().to_string()
                };
                if &**path == "/" {
                    // The node directory exists even while the node is down.
                    return Ok(synth_meta(fid.qid, &name));
                }
                let m = self.node_meta(node, path).await?;
                Ok(Metadata {
                    qid: fid.qid,
                    name: Some(name),
                    uid: Some(m.uid.unwrap_or(0)),
                    gid: Some(m.gid.unwrap_or(0)),
                    rdev: 0,
                    // Files are read whole at open: their size is unknown.
                    size: if m.mode & s_if::FMT == s_if::REG {
                        0
                    } else {
                        m.size
                    },
                    link_target: None,
                    ..(*m).clone()
                })
            }
        }
    }

    async fn open(&self, _who: &Identity, fid: &TreeNode, flags: OpenFlags) -> FsResult<Contents> {
        if flags.write || flags.truncate {
            return Err(FsError::ROFS);
        }
        match &fid.loc {
            // Rendered tables are held by their own cache (one per view).
            Loc::File(s) => Ok(Contents::Shared(Box::pin(self.render(&fid.view, *s)).await)),
            Loc::Node { node, path, .. } if !fid.qid.is_dir() => {
                if fid.qid.is_symlink() {
                    return Err(FsError::new(errno::ELOOP).with("symlinks are read with readlink"));
                }
                Ok(Contents::File(self.node_read(node, path).await?))
            }
            _ => Ok(Contents::Dir(Box::pin(self.list(fid)).await?)),
        }
    }

    async fn readlink(&self, _who: &Identity, fid: &TreeNode) -> FsResult<String> {
        match &fid.loc {
            Loc::Node { node, path, .. } if fid.qid.is_symlink() => {
                Ok(self.node_link(node, path).await?.to_string())
            }
            _ => Err(FsError::INVAL),
        }
    }
}

impl Tree {
    /// The qid of a node path: from the parent's (cached) listing, which
    /// serves every sibling lookup with one node read.
    async fn lookup_qid(
        &self,
        _view: &View,
        node: &Arc<Node>,
        path: &str,
        kind: u64,
    ) -> FsResult<Qid> {
        let parent = Self::parent_path(path).unwrap_or_else(|| "/".into());
        let name = path.rsplit('/').next().unwrap_or_default();
        let ents = self.node_list(node, &parent).await?;
        let e = ents.iter().find(|e| e.name == name).ok_or(FsError::NOENT)?;
        Ok(map_qid(kind, node.index, e.qid))
    }
}

#[cfg(test)]
mod tests;

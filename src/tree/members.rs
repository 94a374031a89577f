//! Every node this aggregator serves, as [`Member`]s: the pool's own nodes
//! and the nodes below the lower gproc aggregators among them.
//!
//! A pool node is found to be a lower aggregator by its summary file (the
//! same path as an agent's): a merged summary ([`crate::format::merged`])
//! lists the nodes below it, each a member here with a name, an index of
//! this level's own (qids and cache keys, allocated from the pool's
//! counter, never reused, never hashed) and the path prefix reads take
//! through the lower aggregator (`/n17/...`). A lower aggregator is not a
//! directory of the tree itself: only its nodes are. A name served by two
//! peers is a configuration error of this level: a pool node's own name
//! always keeps it, otherwise the peer whose list was read first, and the
//! clash is logged once.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::warn;

use crate::client::pool::{Node, NodeState, NodeStatus, Pool};
use crate::format::merged::MergedNode;
use crate::proto::Dialect;
use crate::sys;

use super::reads::{Fetched, MergedIndex};

/// A node of the merged tree: where its files are read.
pub(crate) struct Member {
    /// Its name: its directory under the root, what views name.
    pub(super) name: String,
    /// This level's index: qid paths and cache keys.
    pub(super) index: u32,
    /// The pool node reads go through: the node itself, or the lower
    /// aggregator it is below.
    pub(super) via: Arc<Node>,
    /// Below a lower aggregator: `/NAME`, what its paths there start with.
    prefix: Option<Arc<str>>,
    /// The aggregators between this one and the node, nearest first.
    pub(super) chain: Vec<String>,
    /// Below a lower aggregator: the node's state as that one last said.
    below: Mutex<Option<MergedNode>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.name, self.index)
    }
}

impl Member {
    /// A pool node serving its own `/proc`.
    pub(super) fn direct(node: &Arc<Node>) -> Arc<Member> {
        Arc::new(Member {
            name: node.spec.name.clone(),
            index: node.index,
            via: node.clone(),
            prefix: None,
            chain: Vec::new(),
            below: Mutex::new(None),
        })
    }

    /// Whether it is reached through a lower aggregator.
    pub(super) fn is_below(&self) -> bool {
        self.prefix.is_some()
    }

    /// `path` (node-relative, starting with `/`) as sent to the pool node.
    pub(super) fn wire<'a>(&self, path: &'a str) -> Cow<'a, str> {
        match &self.prefix {
            None => Cow::Borrowed(path),
            Some(p) if path == "/" => Cow::Owned(p.to_string()),
            Some(p) => Cow::Owned(format!("{p}{path}")),
        }
    }

    /// The node's state: the pool's for a direct node; for one below, the
    /// lower aggregator's word, or down when that one is.
    pub(super) fn status(&self) -> NodeStatus {
        let via = self.via.status();
        if !self.is_below() {
            return via;
        }
        if let NodeState::Down(r) = &via.state {
            return blank(NodeState::Down(format!("via {}: {r}", self.via.spec.name)));
        }
        let below = sys::lock(&self.below);
        let Some(n) = below.as_ref() else {
            return blank(NodeState::Idle);
        };
        NodeStatus {
            state: match n.state.as_str() {
                "up" => NodeState::Up,
                "down" => NodeState::Down(n.last_error.clone().unwrap_or_default()),
                _ => NodeState::Idle,
            },
            dialect: n.dialect.as_deref().and_then(|d| Dialect::parse(d).ok()),
            rtt: n
                .rtt_ms
                .map(|ms| Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 1e9))),
            last_contact: n
                .last_contact
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            last_error: n.last_error.clone(),
            failures: 0,
        }
    }

    /// The address shown in `/nodes`: a direct node's own; for one below,
    /// the lower aggregator's word for it.
    pub(super) fn address(&self) -> String {
        if !self.is_below() {
            return self.via.spec.address.to_string();
        }
        sys::lock(&self.below)
            .as_ref()
            .map(|n| n.address.clone())
            .unwrap_or_default()
    }
}

/// A status with nothing known but its state.
fn blank(state: NodeState) -> NodeStatus {
    NodeStatus {
        state,
        dialect: None,
        rtt: None,
        last_contact: None,
        last_error: None,
        failures: 0,
    }
}

/// What a pool node was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A node serving its own `/proc` (an agent, diod, ...).
    Node,
    /// A lower gproc aggregator.
    Aggregator,
}

/// The members below the lower aggregators, and what each pool node is.
#[derive(Default)]
pub(super) struct Members {
    kinds: HashMap<u32, Kind>,
    /// Per lower aggregator (pool index): its members in its order.
    below: HashMap<u32, Arc<Vec<Arc<Member>>>>,
    /// Name of a member below a lower aggregator → it.
    by_name: HashMap<String, Arc<Member>>,
    /// Indexes given out, by (pool index, name): kept so a node that
    /// leaves a lower aggregator's list and comes back keeps its qids.
    indexes: HashMap<(u32, String), u32>,
    /// The merged summary each lower aggregator's list was made from.
    made_from: HashMap<u32, u64>,
    /// Clashes already logged.
    clashes: HashSet<(u32, String)>,
}

impl Members {
    /// Whether pool node `index` is known to be a lower aggregator.
    pub(super) fn is_aggregator(&self, index: u32) -> bool {
        self.kinds.get(&index) == Some(&Kind::Aggregator)
    }

    /// Whether pool node `index` is known to serve its own `/proc`.
    pub(super) fn is_node(&self, index: u32) -> bool {
        self.kinds.get(&index) == Some(&Kind::Node)
    }

    /// Records that pool node `via` serves its own `/proc`.
    pub(super) fn set_node(&mut self, via: u32) {
        self.kinds.insert(via, Kind::Node);
        if let Some(old) = self.below.remove(&via) {
            for m in old.iter() {
                self.by_name.remove(&m.name);
            }
            self.made_from.remove(&via);
        }
    }

    /// The members of lower aggregator `via` (empty when it is not one or
    /// was never read).
    pub(super) fn below(&self, via: u32) -> Arc<Vec<Arc<Member>>> {
        self.below.get(&via).cloned().unwrap_or_default()
    }

    /// The member named `name` below some lower aggregator.
    pub(super) fn named(&self, name: &str) -> Option<Arc<Member>> {
        self.by_name.get(name).cloned()
    }

    /// Records that pool node `via` is a lower aggregator whose nodes are
    /// those of `merged`; `taken` says whether a name is a pool node's
    /// own (which keeps it). Unchanged when `merged` is the one the list
    /// was last made from.
    pub(super) fn set_aggregator(
        &mut self,
        pool: &Pool,
        via: &Arc<Node>,
        merged: &MergedIndex,
        taken: impl Fn(&str) -> bool,
    ) {
        let stamp = merged.id;
        let merged = &merged.merged;
        self.kinds.insert(via.index, Kind::Aggregator);
        if self.made_from.get(&via.index) == Some(&stamp) {
            return;
        }
        let old = self.below(via.index);
        let old_by_name: HashMap<&str, &Arc<Member>> =
            old.iter().map(|m| (m.name.as_str(), m)).collect();
        let mut list = Vec::with_capacity(merged.nodes.len());
        let mut seen = HashSet::new();
        for n in &merged.nodes {
            let clash = taken(&n.name)
                || !seen.insert(n.name.as_str())
                || self
                    .by_name
                    .get(&n.name)
                    .is_some_and(|m| m.via.index != via.index);
            if clash {
                if self.clashes.insert((via.index, n.name.clone())) {
                    warn!(
                        "node name {:?} is served both by {} and by another peer of this aggregator: \
                         kept by the one read first; rename one, or give each lower aggregator \
                         unique node names",
                        n.name, via.spec.name
                    );
                }
                continue;
            }
            let member = match old_by_name.get(n.name.as_str()) {
                Some(m) => Arc::clone(m),
                None => {
                    let index = *self
                        .indexes
                        .entry((via.index, n.name.clone()))
                        .or_insert_with(|| pool.allocate_index());
                    let mut chain = vec![via.spec.name.clone()];
                    chain.extend(n.via.iter().cloned());
                    Arc::new(Member {
                        name: n.name.clone(),
                        index,
                        via: via.clone(),
                        prefix: Some(Arc::from(format!("/{}", n.name))),
                        chain,
                        below: Mutex::new(None),
                    })
                }
            };
            *sys::lock(&member.below) = Some(MergedNode {
                data: crate::format::merged::NodeData::Missing {
                    errno: 0,
                    reason: String::new(),
                },
                ..n.clone()
            });
            list.push(member);
        }
        for m in old.iter() {
            if self.by_name.get(&m.name).is_some_and(|x| Arc::ptr_eq(x, m)) {
                self.by_name.remove(&m.name);
            }
        }
        for m in &list {
            self.by_name.insert(m.name.clone(), m.clone());
        }
        self.below.insert(via.index, Arc::new(list));
        self.made_from.insert(via.index, stamp);
    }

    /// Forgets pool nodes removed by a reload; returns the indexes of the
    /// members that went with them (their cached data is to be dropped).
    pub(super) fn forget(&mut self, removed: &[u32]) -> Vec<u32> {
        let mut gone = Vec::new();
        for via in removed {
            self.kinds.remove(via);
            self.made_from.remove(via);
            if let Some(list) = self.below.remove(via) {
                for m in list.iter() {
                    self.by_name.remove(&m.name);
                    gone.push(m.index);
                }
            }
            self.indexes.retain(|(v, _), _| v != via);
        }
        gone
    }
}

impl super::Tree {
    /// Records what pool node `node` was found to be by its summary file.
    pub(super) fn learn(&self, node: &Arc<Node>, f: &Fetched) {
        let mut m = sys::lock(&self.members);
        match f {
            Fetched::Node(_) => {
                if !m.is_node(node.index) {
                    m.set_node(node.index);
                }
            }
            Fetched::Merged(mi) => {
                let pool = &self.pool;
                m.set_aggregator(pool, node, mi, |name| {
                    pool.node(name).is_some_and(|p| p.index != node.index)
                });
            }
        }
    }

    /// Reads the summary file of every pool node not yet known to be a
    /// node or a lower aggregator (once: cached under its rule, and a kind
    /// once learnt is kept), so listings and lookups know the nodes below.
    pub(super) async fn learn_kinds(&self) {
        let unknown: Vec<Arc<Node>> = {
            let m = sys::lock(&self.members);
            self.pool
                .nodes()
                .iter()
                .filter(|n| !m.is_node(n.index) && !m.is_aggregator(n.index))
                .cloned()
                .collect()
        };
        if unknown.is_empty() {
            return;
        }
        let mut futs = self
            .pool
            .fan_out_with(&unknown, self.deadline, |n| async move {
                self.peer_data(&n).await
            });
        while futures::StreamExt::next(&mut futs).await.is_some() {}
    }

    /// Every member, in config order: each pool node serving its own
    /// `/proc` (or not known yet), and in place of each lower aggregator
    /// the nodes below it, in its order.
    pub(super) fn all_members(&self) -> Vec<Arc<Member>> {
        let m = sys::lock(&self.members);
        let mut out = Vec::new();
        for n in self.pool.nodes().iter() {
            if m.is_aggregator(n.index) {
                out.extend(m.below(n.index).iter().cloned());
            } else {
                out.push(Member::direct(n));
            }
        }
        out
    }

    /// The member named `name`, if any: a pool node of its own, or a node
    /// below a lower aggregator (pool nodes of unknown kind are read first).
    pub(super) async fn member(&self, name: &str) -> Option<Arc<Member>> {
        if let Some(n) = self.pool.node(name) {
            let (node, aggregator) = {
                let m = sys::lock(&self.members);
                (m.is_node(n.index), m.is_aggregator(n.index))
            };
            if node {
                return Some(Member::direct(&n));
            }
            if !aggregator {
                let _ = self.peer_data(&n).await;
                if !sys::lock(&self.members).is_aggregator(n.index) {
                    // A node, or one that cannot be read yet: its
                    // directory exists and its reads say why they fail.
                    return Some(Member::direct(&n));
                }
            }
        }
        if let Some(m) = sys::lock(&self.members).named(name) {
            return Some(m);
        }
        self.learn_kinds().await;
        sys::lock(&self.members).named(name)
    }

    /// Forgets pool nodes a reload removed, and the nodes below them.
    pub fn forget_pool_nodes(&self, removed: &[u32]) {
        let gone = sys::lock(&self.members).forget(removed);
        for idx in removed.iter().chain(&gone) {
            self.cache.forget_node(*idx);
        }
        self.summary_fids.forget(Some(removed));
        for idx in removed {
            self.held.put(*idx, None);
        }
    }
}

//! The synthesized files at the top of the tree, `/nodes`, `/ps`, `/load`,
//! `/stats` and `/metrics` (written by `metrics`), rendered per view. The cluster-wide tables (`/ps`,
//! `/load`) are cached like node data, as a [`Table`] kind: a table of
//! 200,000 processes costs CPU to format and is no fresher than the
//! summaries it is built from, and readers that find it expired while
//! another builds it wait for that build instead of each gathering every
//! node again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::cache::{CLUSTER, Key, Kind, Lifetime};
use crate::client::pool::{Node, NodeState};
use crate::config::{CachePolicy, Ttl};
use crate::format::summary::{self, NodeSummary};
use crate::format::table::{LOAD_HEADER, NODES_HEADER, PS_HEADER, Row};
use crate::proto::errno;
use crate::view::View;

use super::{Tree, tables};

/// Synthesized files at the top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Synth {
    Nodes,
    Ps,
    Load,
    Stats,
    Metrics,
}

impl Synth {
    /// The file's name under the root.
    pub(super) fn name(self) -> &'static str {
        match self {
            Synth::Nodes => "nodes",
            Synth::Ps => "ps",
            Synth::Load => "load",
            Synth::Stats => "stats",
            Synth::Metrics => "metrics",
        }
    }

    /// Every synthesized file, in listing order.
    pub(super) const ALL: [Synth; 5] = [
        Synth::Nodes,
        Synth::Ps,
        Synth::Load,
        Synth::Stats,
        Synth::Metrics,
    ];
}

/// A rendered cluster-wide table, for one view.
struct Table;

impl Kind for Table {
    type Value = Bytes;

    fn weight(b: &Bytes) -> usize {
        b.len()
    }

    /// Kept as long as the summaries it is built from (the `/.gproc/ps`
    /// rule's TTL), whatever its size: the byte bound still counts it.
    fn lifetime(policy: &CachePolicy, _path: &str) -> Lifetime {
        Lifetime {
            max_entry_bytes: usize::MAX,
            ..Lifetime::of(policy, summary::FILE_PATH)
        }
    }

    /// Building a table reads summaries, which count themselves.
    const NODE_READS: bool = false;
}

/// What [`Tree::gather`] collected.
pub(super) struct Gathered {
    /// Nodes that answered, with their summaries, in config order.
    pub(super) ok: Vec<(Arc<Node>, Arc<NodeSummary>)>,
    /// Node, why it is missing (for a user, the errno's text alone: a
    /// node's own error text can name other users' processes).
    missing: Vec<(String, String)>,
    /// Node, age of its copy, why it is stale.
    stale: Vec<(String, Duration, String)>,
    /// Nodes that did not answer and that this view cannot name, since
    /// only their summary would say whether the user runs there.
    unsure: usize,
}

impl Tree {
    /// The nodes a view may see before looking at what runs on them (all
    /// of them for a view that sees the nodes where the user runs), in
    /// config order.
    pub(super) fn candidate_nodes(&self, view: &View) -> Vec<Arc<Node>> {
        self.pool
            .nodes()
            .iter()
            .filter(|n| view.depends_on_processes() || view.sees_node(&n.spec.name))
            .cloned()
            .collect()
    }

    /// The nodes this view sees, in config order: for a view of the nodes
    /// where the user runs, those whose summary (as cached) shows one of
    /// their processes now.
    pub(super) async fn visible_nodes(&self, view: &View) -> Vec<Arc<Node>> {
        if !view.depends_on_processes() {
            return self.candidate_nodes(view);
        }
        self.gather(view)
            .await
            .ok
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// Whether `node` exists for `view` now. For a view of the nodes where
    /// the user runs this asks the node's summary (cached per its TTL), so
    /// a node appears and disappears as their processes come and go; a
    /// node whose summary cannot be read does not exist for them.
    pub(super) async fn node_visible(&self, view: &View, node: &Arc<Node>) -> bool {
        if view.sees_node(&node.spec.name) {
            return true;
        }
        if !view.depends_on_processes() {
            return false;
        }
        match self.node_summary(node).await {
            Ok(s) => {
                view.sees_node_running(&node.spec.name, s.procs.iter().map(|p| (p.ruid, p.euid)))
            }
            Err(_) => false,
        }
    }

    /// The node named `name` if it exists for `view` now.
    pub(super) async fn visible_node(&self, view: &View, name: &str) -> Option<Arc<Node>> {
        let node = self.pool.node(name)?;
        self.node_visible(view, &node).await.then_some(node)
    }

    /// Summaries of every visible node, gathered within the deadline; the
    /// nodes that failed with why; and notes for nodes whose summary is a
    /// stale copy (allowed by a `stale` rule) with its age and why.
    pub(super) async fn gather(&self, view: &View) -> Gathered {
        let nodes = self.candidate_nodes(view);
        let mut futs = self
            .pool
            .fan_out_with(&nodes, self.deadline, |n| async move {
                self.node_summary_aged(&n).await
            });
        let ttl = match self.cache.policy().ttl_for(summary::FILE_PATH).ttl {
            Ttl::For(d) => d,
            Ttl::Never => Duration::ZERO,
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
                            NodeState::Down(r) => {
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
                Some(Err(e)) if view.admin => missing.push((n.spec.name.clone(), e.to_string())),
                Some(Err(e)) => missing.push((n.spec.name.clone(), errno::to_string(e.errno))),
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
        let mut unsure = 0;
        if view.depends_on_processes() {
            // Only the nodes where they run exist for them: the others
            // are neither listed nor named in a note.
            ok.retain(|(n, s)| {
                view.sees_node_running(&n.spec.name, s.procs.iter().map(|p| (p.ruid, p.euid)))
            });
            stale.retain(|(name, _, _)| ok.iter().any(|(n, _)| n.spec.name == *name));
            unsure = missing.len();
            missing.clear();
        }
        missing.sort();
        stale.sort();
        Gathered {
            ok,
            missing,
            stale,
            unsure,
        }
    }

    /// The synthesized file `s` as `view` sees it; `/ps` and `/load`
    /// through the cache.
    pub(super) async fn render(&self, view: &View, s: Synth) -> Bytes {
        if !matches!(s, Synth::Ps | Synth::Load) {
            return self.render_now(view, s).await;
        }
        let key = Key {
            kind: Table,
            node: CLUSTER,
            // Per view, as decided at its generation: a table built before
            // an allotment changed is not served after.
            path: format!(
                "/{}?admin={}&uid={}&generation={}",
                s.name(),
                view.admin,
                view.uid,
                view.generation
            )
            .into(),
            user: None,
        };
        let built = self
            .cache
            .get_or_build(key, || async {
                let b = self.render_now(view, s).await;
                self.tables_built.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(b)
            })
            .await;
        match built {
            Ok((b, _)) => b,
            Err(never) => match never {},
        }
    }

    /// A table built from every visible node's summary: `header`, the rows
    /// `rows` writes for each node that answered, then the notes for those
    /// that did not or answered with a stale copy.
    async fn cluster_table(
        &self,
        view: &View,
        header: &str,
        out: &mut String,
        rows: impl Fn(&mut String, &str, &NodeSummary),
    ) {
        let Gathered {
            ok,
            missing,
            stale,
            unsure,
        } = self.gather(view).await;
        out.push_str(header);
        out.push('\n');
        let mut foreign = Vec::new();
        for (n, s) in &ok {
            if s.has_linux_facts() {
                rows(out, &n.spec.name, s);
            } else {
                foreign.push(n.spec.name.as_str());
            }
        }
        tables::missing_notes(out, &missing);
        tables::foreign_notes(out, &foreign);
        tables::unsure_note(out, unsure);
        tables::stale_notes(out, &stale);
    }

    async fn render_now(&self, view: &View, s: Synth) -> Bytes {
        let mut out = String::new();
        match s {
            Synth::Metrics => return self.render_metrics(view).await,
            Synth::Nodes => {
                out.push_str(NODES_HEADER);
                out.push('\n');
                for n in self.visible_nodes(view).await {
                    let last = self.last_summary(&n).await;
                    let row = tables::node_row(
                        &n.spec.name,
                        &n.spec.address.to_string(),
                        &n.status(),
                        last.as_deref(),
                    );
                    out.push_str(&row.line());
                    out.push('\n');
                }
            }
            Synth::Ps => {
                self.cluster_table(view, PS_HEADER, &mut out, |out, name, s| {
                    for p in s.procs.iter().filter(|p| view.sees_process(p.ruid, p.euid)) {
                        out.push_str(&tables::ps_row(name, s, p).line());
                        out.push('\n');
                    }
                })
                .await;
            }
            Synth::Load => {
                self.cluster_table(view, LOAD_HEADER, &mut out, |out, name, s| {
                    out.push_str(&tables::load_row(name, s).line());
                    out.push('\n');
                })
                .await;
            }
            Synth::Stats => {
                self.cache.sync().await;
                let (entries, bytes) = self.cache.usage();
                out.push_str(&self.cache.stats().render(entries, bytes));
                let nodes = self.pool.nodes();
                let up = nodes
                    .iter()
                    .filter(|n| n.status().state == NodeState::Up)
                    .count();
                out.push_str(&format!(
                    "nodes_total {}\nnodes_up {up}\ntables_built {}\n",
                    nodes.len(),
                    self.tables_built.load(Ordering::Relaxed)
                ));
            }
        }
        Bytes::from(out)
    }
}

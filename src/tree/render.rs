//! The synthesized files at the top of the tree, `/nodes`, `/ps`, `/load`,
//! `/jobs`, `/stats` and `/metrics` (written by `metrics`), rendered per
//! view. The cluster-wide tables are cached like node data: `/load` (and
//! the merged summary) as a [`Table`] kind, `/ps` and `/jobs` in the job
//! index (`jobs`), built together. A table of 200,000 processes costs CPU
//! to format and is no fresher than the summaries it is built from, and
//! readers that find it expired while another builds it wait for that
//! build instead of each gathering every node again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::cache::{CLUSTER, Key, Kind, Lifetime};
use crate::client::pool::{Node, NodeState};
use crate::config::{CachePolicy, Ttl};
use crate::format::merged::{self, NodeData};
use crate::format::summary::{self, NodeSummary};
use crate::format::table::{LOAD_HEADER, NODES_HEADER, Row};
use crate::proto::errno;
use crate::server::FsError;
use crate::sys;
use crate::view::View;

use super::members::Member;
use super::reads::Fetched;
use super::{Tree, tables};

/// Synthesized files at the top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Synth {
    Nodes,
    Ps,
    Load,
    Stats,
    Metrics,
    /// `/.gproc/ps`, for administrators: every node's summary in one file
    /// (the merged summary), what an aggregator above this one reads.
    Merged,
    /// `/jobs`: one line per job (after `Merged`, so older files keep
    /// their qids).
    Jobs,
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
            Synth::Merged => summary::SUMMARY_FILE,
            Synth::Jobs => "jobs",
        }
    }

    /// The synthesized files at the root, in listing order.
    pub(super) const ALL: [Synth; 6] = [
        Synth::Nodes,
        Synth::Ps,
        Synth::Load,
        Synth::Jobs,
        Synth::Stats,
        Synth::Metrics,
    ];
}

/// A rendered cluster-wide table, for one view.
#[derive(Clone, Copy)]
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

/// One view's gather, shared by the reads that come while it is made: the
/// tables of one `gproc top` refresh (`/load`, `/top`, read at once) fan
/// out to the nodes once, not once each. Forgotten as soon as it is made,
/// so it never outlives the reads that waited for it: a later read
/// gathers afresh, and no table is built from an older gather than it
/// would be alone.
#[derive(Clone, Copy)]
struct GatherKind;

impl Kind for GatherKind {
    type Value = Arc<Gathered>;

    /// Its summaries count themselves; this is its own vectors.
    fn weight(g: &Arc<Gathered>) -> usize {
        64 * (g.ok.len() + g.missing.len() + g.pending.len() + g.stale.len() + 1)
    }

    fn lifetime(policy: &CachePolicy, _path: &str) -> Lifetime {
        Lifetime {
            max_entry_bytes: usize::MAX,
            ..Lifetime::of(policy, summary::FILE_PATH)
        }
    }

    const NODE_READS: bool = false;
}

/// The cache key of something built for one view: per view as decided at
/// its generation, so that nothing built before an allotment changed is
/// served after.
pub(super) fn view_key<K: Kind>(kind: K, name: &str, view: &View) -> Key<K> {
    Key {
        kind,
        node: CLUSTER,
        path: format!(
            "/{name}?admin={}&uid={}&generation={}",
            view.admin, view.uid, view.generation
        )
        .into(),
        user: None,
    }
}

/// A node left out of a table, and why.
pub(super) struct MissingNode {
    /// Its name.
    pub(super) node: String,
    /// Linux errno.
    pub(super) errno: u32,
    /// Why, as the view may be told (for a user, the errno's text alone:
    /// a node's own error text can name other users' processes).
    pub(super) reason: String,
    /// The lower aggregators the news came through, nearest first.
    pub(super) via: Vec<String>,
}

/// A node whose rows come from a copy past its TTL.
pub(super) struct StaleNode {
    pub(super) node: String,
    pub(super) age: Duration,
    pub(super) reason: String,
    pub(super) via: Vec<String>,
}

/// A node that answered, with its summary.
pub(super) type Answered = (Arc<Member>, Arc<NodeSummary>);

/// What [`Tree::gather`] collected.
pub(super) struct Gathered {
    /// Nodes that answered, with their summaries, in config order.
    pub(super) ok: Vec<Answered>,
    /// Nodes that did not.
    pub(super) missing: Vec<MissingNode>,
    /// Nodes up but whose data had not come when the deadline passed.
    pub(super) pending: Vec<MissingNode>,
    /// Nodes whose data is a stale copy.
    pub(super) stale: Vec<StaleNode>,
    /// Nodes that did not answer and that this view cannot name, since
    /// only their summary would say whether the user runs there.
    pub(super) unsure: usize,
    /// Nodes up whose reads were still going at the deadline (`pending`,
    /// or counted in `unsure` for a view that cannot be told of them):
    /// their reads finish into the cache, so a table built from this is
    /// not kept for the next reader, who finds them done.
    pub(super) late: usize,
}

impl Gathered {
    /// The nodes that answered without Linux `/proc` facts (no rows).
    pub(super) fn foreign(&self) -> Vec<&str> {
        self.ok
            .iter()
            .filter(|(_, s)| !s.has_linux_facts())
            .map(|(n, _)| n.name.as_str())
            .collect()
    }

    /// The notes that follow a table's rows: nodes missing, foreign, not
    /// told of, and stale.
    pub(super) fn notes(&self, out: &mut String) {
        tables::missing_notes(
            out,
            self.missing
                .iter()
                .map(|m| (m.node.as_str(), m.reason.as_str(), m.via.as_slice())),
        );
        tables::pending_notes(
            out,
            self.pending
                .iter()
                .map(|m| (m.node.as_str(), m.reason.as_str(), m.via.as_slice())),
        );
        tables::foreign_notes(out, &self.foreign());
        tables::unsure_note(out, self.unsure);
        tables::stale_notes(
            out,
            self.stale
                .iter()
                .map(|s| (s.node.as_str(), s.age, s.reason.as_str(), s.via.as_slice())),
        );
    }
}

impl Tree {
    /// The nodes a view may see before looking at what runs on them (all
    /// of them for a view that sees the nodes where the user runs), in
    /// config order.
    pub(super) fn candidate_nodes(&self, view: &View) -> Vec<Arc<Member>> {
        self.all_members()
            .into_iter()
            .filter(|n| view.depends_on_processes() || view.sees_node(&n.name))
            .collect()
    }

    /// The nodes this view sees, in config order: for a view of the nodes
    /// where the user runs, those whose summary (as cached) shows one of
    /// their processes now.
    pub(super) async fn visible_nodes(&self, view: &View) -> Vec<Arc<Member>> {
        if !view.depends_on_processes() {
            self.learn_kinds().await;
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
    pub(super) async fn node_visible(&self, view: &View, node: &Member) -> bool {
        if view.sees_node(&node.name) {
            return true;
        }
        if !view.depends_on_processes() {
            return false;
        }
        match self.node_summary(node).await {
            Ok(s) => view.sees_node_running(&node.name, s.procs.iter().map(|p| (p.ruid, p.euid))),
            Err(_) => false,
        }
    }

    /// The node named `name` if it exists for `view` now.
    pub(super) async fn visible_node(&self, view: &View, name: &str) -> Option<Arc<Member>> {
        // Which names exist may not be told to those who see part of the
        // cluster: one not theirs is not looked up (no probe of the pool).
        if !view.admin && !view.depends_on_processes() && !view.sees_node(name) {
            return None;
        }
        let node = self.member(name).await?;
        self.node_visible(view, &node).await.then_some(node)
    }

    /// [`gather`](Self::gather), shared with the reads of the same view
    /// that come while it is made ([`GatherKind`]).
    pub(super) async fn gathered(&self, view: &View) -> Arc<Gathered> {
        let key = view_key(GatherKind, "gather", view);
        let built = self
            .cache
            .get_or_build(key.clone(), || async {
                Ok::<_, std::convert::Infallible>(Arc::new(self.gather(view).await))
            })
            .await;
        self.cache.forget(&key).await;
        match built {
            Ok((g, _)) => g,
            Err(never) => match never {},
        }
    }

    /// Summaries of every visible node, gathered within the deadline (one
    /// read per pool node: a lower aggregator's merged summary covers every
    /// node below it); the nodes that failed with why; and notes for nodes
    /// whose summary is a stale copy (allowed by a `stale` rule).
    pub(super) async fn gather(&self, view: &View) -> Gathered {
        let pool_nodes = self.pool.nodes();
        // Lower aggregators and pool nodes of unknown kind are always read
        // (what is below them decides); known nodes when the view may see
        // them.
        let targets: Vec<Arc<Node>> = {
            let m = sys::lock(&self.members);
            pool_nodes
                .iter()
                .filter(|n| {
                    !m.is_node(n.index)
                        || view.depends_on_processes()
                        || view.sees_node(&n.spec.name)
                })
                .cloned()
                .collect()
        };
        let mut futs = self
            .pool
            .fan_out_with(&targets, self.deadline, |n| async move {
                self.peer_data(&n).await
            });
        let ttl = match self.cache.policy().ttl_for(summary::FILE_PATH).ttl {
            Ttl::For(d) => d,
            Ttl::Never => Duration::ZERO,
        };
        let reason_for = |e: &FsError| {
            if view.admin {
                e.to_string()
            } else {
                errno::to_string(e.errno)
            }
        };
        let order: HashMap<u32, usize> = pool_nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.index, i))
            .collect();
        // Per pool node (by config position): what it gave.
        let mut slots: Vec<(usize, Vec<Answered>)> = Vec::new();
        let (mut missing, mut pending, mut stale) = (Vec::new(), Vec::new(), Vec::new());
        while let Some((n, r)) = futs.next().await {
            let pos = order.get(&n.index).copied().unwrap_or(usize::MAX);
            let below = sys::lock(&self.members).below(n.index);
            let failed = |e: FsError, missing: &mut Vec<MissingNode>| {
                if below.is_empty() {
                    missing.push(MissingNode {
                        node: n.spec.name.clone(),
                        errno: e.errno,
                        reason: reason_for(&e),
                        via: Vec::new(),
                    });
                    return;
                }
                // A lower aggregator that does not answer: every node
                // below it is missing, with its reason.
                for m in below
                    .iter()
                    .filter(|m| view.depends_on_processes() || view.sees_node(&m.name))
                {
                    missing.push(MissingNode {
                        node: m.name.clone(),
                        errno: e.errno,
                        reason: reason_for(&e),
                        via: m.chain.clone(),
                    });
                }
            };
            // How far past its TTL this level's copy is, and whether to say.
            let own_stale = |age: Option<Duration>| -> Option<(Duration, String)> {
                let age = age?;
                match n.status().state {
                    NodeState::Down(r) => Some((age, format!("node down: {r}"))),
                    _ if age > ttl + self.deadline => Some((age, "refreshing".into())),
                    _ => None,
                }
            };
            match r {
                Some(Ok((Fetched::Node(s), age))) => {
                    if !(view.depends_on_processes() || view.sees_node(&n.spec.name)) {
                        continue;
                    }
                    if let Some((age, reason)) = own_stale(age) {
                        stale.push(StaleNode {
                            node: n.spec.name.clone(),
                            age,
                            reason,
                            via: Vec::new(),
                        });
                    }
                    slots.push((pos, vec![(Member::direct(&n), s)]));
                }
                Some(Ok((Fetched::Merged(mi), age))) => {
                    let own = own_stale(age);
                    let mut got = Vec::new();
                    for m in below.iter() {
                        if !(view.depends_on_processes() || view.sees_node(&m.name)) {
                            continue;
                        }
                        let Some(mn) = mi.get(&m.name) else { continue };
                        match &mn.data {
                            NodeData::Summary {
                                summary,
                                stale: lower,
                            } => {
                                if let Some((age, reason)) = &own {
                                    stale.push(StaleNode {
                                        node: m.name.clone(),
                                        age: (*age).max(lower.unwrap_or_default()),
                                        reason: reason.clone(),
                                        via: Vec::new(),
                                    });
                                } else if let Some(lower) = lower {
                                    stale.push(StaleNode {
                                        node: m.name.clone(),
                                        age: *lower,
                                        reason: if mn.state == "down" {
                                            format!(
                                                "node down: {}",
                                                mn.last_error.as_deref().unwrap_or("?")
                                            )
                                        } else {
                                            "refreshing".into()
                                        },
                                        via: m.chain.clone(),
                                    });
                                }
                                got.push((m.clone(), summary.clone()));
                            }
                            NodeData::Missing { errno: e, reason } => missing.push(MissingNode {
                                node: m.name.clone(),
                                errno: *e,
                                reason: if view.admin {
                                    reason.clone()
                                } else {
                                    errno::to_string(*e)
                                },
                                via: m.chain.clone(),
                            }),
                        }
                    }
                    slots.push((pos, got));
                }
                Some(Err(e)) => failed(e, &mut missing),
                // Up, and its read still going: not lost, only late (a
                // slow node, or this aggregator busy, as after a
                // restart). Said so, not called missing. Its read goes on
                // into the cache for the next table (`super::late`).
                None if n.status().state == NodeState::Up => failed(
                    FsError::new(errno::ETIMEDOUT)
                        .with(format!("up, no answer yet within {:?}", self.deadline)),
                    &mut pending,
                ),
                None => failed(
                    FsError::new(errno::ETIMEDOUT)
                        .with(format!("no answer within {:?}", self.deadline)),
                    &mut missing,
                ),
            }
        }
        // Config order, so the tables are stable from read to read.
        slots.sort_by_key(|(pos, _)| *pos);
        let mut ok: Vec<Answered> = slots.into_iter().flat_map(|(_, v)| v).collect();
        let mut unsure = 0;
        let mut late = pending.len();
        if view.depends_on_processes() {
            // Only the nodes where they run exist for them: the others
            // are neither listed nor named in a note.
            ok.retain(|(n, s)| {
                view.sees_node_running(&n.name, s.procs.iter().map(|p| (p.ruid, p.euid)))
            });
            stale.retain(|st| ok.iter().any(|(n, _)| n.name == st.node));
            unsure = missing.len() + pending.len();
            late = pending.len();
            missing.clear();
            pending.clear();
        }
        missing.sort_by(|a, b| a.node.cmp(&b.node));
        pending.sort_by(|a, b| a.node.cmp(&b.node));
        stale.sort_by(|a, b| a.node.cmp(&b.node));
        Gathered {
            ok,
            missing,
            pending,
            stale,
            unsure,
            late,
        }
    }

    /// The synthesized file `s` as `view` sees it; `/ps`, `/jobs` and
    /// `/load` through the cache.
    pub(super) async fn render(&self, view: &View, s: Synth) -> Bytes {
        if !matches!(s, Synth::Load | Synth::Merged) {
            return self.render_now(view, s).await;
        }
        let name = if s == Synth::Merged {
            summary::FILE_PATH.trim_start_matches('/')
        } else {
            s.name()
        };
        let key = view_key(Table, name, view);
        let late = AtomicUsize::new(0);
        let built = self
            .cache
            .get_or_build(key.clone(), || async {
                let (b, n) = self.render_table(view, s).await;
                late.store(n, Ordering::Relaxed);
                self.tables_built.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(b)
            })
            .await;
        if late.load(Ordering::Relaxed) > 0 {
            // Served to those who waited for it; the next reader's build
            // finds the late reads done ([`Gathered::late`]).
            self.cache.forget(&key).await;
        }
        match built {
            Ok((b, _)) => b,
            Err(never) => match never {},
        }
    }

    /// `/load` or the merged summary, built now, and how many nodes were
    /// late ([`Gathered::late`]).
    async fn render_table(&self, view: &View, s: Synth) -> (Bytes, usize) {
        if s == Synth::Merged {
            return self.render_merged(view).await;
        }
        let mut out = String::new();
        let late = self
            .cluster_table(view, LOAD_HEADER, &mut out, |out, name, s| {
                out.push_str(&tables::load_row(name, s).line());
                out.push('\n');
            })
            .await;
        (Bytes::from(out), late)
    }

    /// A table built from every visible node's summary: `header`, the rows
    /// `rows` writes for each node that answered, then the notes for those
    /// that did not or answered with a stale copy. Returns how many nodes
    /// were late ([`Gathered::late`]).
    async fn cluster_table(
        &self,
        view: &View,
        header: &str,
        out: &mut String,
        mut rows: impl FnMut(&mut String, &str, &NodeSummary),
    ) -> usize {
        let gathered = self.gathered(view).await;
        out.push_str(header);
        out.push('\n');
        for (n, s) in &gathered.ok {
            if s.has_linux_facts() {
                rows(out, &n.name, s);
            }
        }
        gathered.notes(out);
        gathered.late
    }

    /// The merged summary: every node this aggregator serves, with its
    /// state and its summary or why there is none, gathered as `/ps` is
    /// (through the cache, within the deadline).
    async fn render_merged(&self, view: &View) -> (Bytes, usize) {
        let Gathered {
            ok,
            missing,
            pending,
            stale,
            late,
            ..
        } = self.gather(view).await;
        let summaries: HashMap<u32, Arc<NodeSummary>> =
            ok.into_iter().map(|(m, s)| (m.index, s)).collect();
        // The merged summary has no pending state: a late node is missing
        // there, with why (the level above then says so).
        let missing: HashMap<&str, &MissingNode> = missing
            .iter()
            .chain(&pending)
            .map(|m| (m.node.as_str(), m))
            .collect();
        let stale: HashMap<&str, Duration> =
            stale.iter().map(|s| (s.node.as_str(), s.age)).collect();
        let mut w = merged::Writer::new(&self.name);
        for m in self.all_members() {
            let data = match (summaries.get(&m.index), missing.get(m.name.as_str())) {
                (Some(s), _) => NodeData::Summary {
                    summary: s.clone(),
                    stale: stale.get(m.name.as_str()).copied(),
                },
                (None, Some(x)) => NodeData::Missing {
                    errno: x.errno,
                    reason: x.reason.clone(),
                },
                (None, None) => continue,
            };
            let st = m.status();
            let (state, error) = match &st.state {
                NodeState::Idle => ("idle", st.last_error.clone()),
                NodeState::Up => ("up", st.last_error.clone()),
                NodeState::Down(r) => ("down", Some(r.clone())),
            };
            w.node(
                &merged::MergedNode {
                    name: m.name.clone(),
                    state: state.into(),
                    address: m.address(),
                    via: m.chain.clone(),
                    dialect: st.dialect.map(|d| d.version_string().to_string()),
                    rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    last_contact: st
                        .last_contact
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
                    last_error: error,
                    data,
                },
                None,
            );
        }
        (Bytes::from(w.finish()), late)
    }

    async fn render_now(&self, view: &View, s: Synth) -> Bytes {
        let mut out = String::new();
        match s {
            Synth::Metrics => return self.render_metrics(view).await,
            Synth::Jobs => return self.job_index(view).await.jobs().await.table.clone(),
            Synth::Merged | Synth::Load => return self.render_table(view, s).await.0,
            Synth::Nodes => {
                out.push_str(NODES_HEADER);
                out.push('\n');
                for n in self.visible_nodes(view).await {
                    let last = self.last_summary(&n).await;
                    let row = tables::node_row(
                        &n.name,
                        &n.address(),
                        &n.status(),
                        last.as_deref(),
                        &n.chain,
                    );
                    out.push_str(&row.line());
                    out.push('\n');
                }
            }
            // With the jobs: they agree to the byte.
            Synth::Ps => return self.job_index(view).await.ps.to_bytes(),
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

//! `/metrics`: the aggregator in the Prometheus / OpenMetrics text format,
//! written by the `prometheus-client` crate (which escapes label values:
//! node names, and the architecture and kernel strings nodes report).
//!
//! What it holds, and who sees it:
//!
//! - Per node, for the nodes the reader's view shows (as `/nodes` and
//!   `/load` do): its state (`gproc_node_up`, `gproc_node_state`), the
//!   round trip of its last operation, and, from its summary (gathered as
//!   `/load` gathers it: through the cache under its rules, within the
//!   deadline, one read coalesced with every other reader's), its machine,
//!   load averages, CPUs, memory, process count and uptime. A node that did
//!   not answer has its state series only. For a user who sees the nodes
//!   where they run, a node exists here when its summary shows one of
//!   their processes, as in `/nodes`.
//! - Aggregator health, for administrators only, like `/stats`: cache
//!   counters, pool connections and requests in flight, and the 9P
//!   server's request counts and latencies. They are not per node and
//!   name no node, but they are about everyone: cache misses and request
//!   counts tell a watcher when and how much other users read (a side
//!   channel on their activity), and the node and connection totals tell
//!   a user with part of the cluster how much exists beyond it, which
//!   their view says does not exist for them.
//!
//! Never one series per process: the per-node series are a fixed handful
//! per node, and the request series one per kind of 9P operation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cache::Stats;
use crate::client::pool::{NodeState, NodeStatus};
use crate::format::summary::NodeSummary;
use crate::view::View;

use super::Tree;
use super::members::Member;

/// The media type of `/metrics` (the OpenMetrics text format), for HTTP.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    node: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MachineLabel {
    node: String,
    arch: String,
    kernel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// A float gauge.
type FGauge = Gauge<f64, AtomicU64>;

/// Latency buckets of 9P requests: 100 µs to about 26 s, by fours.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// The 9P server's request counts and latencies, kept for the tree's life
/// (the session reports each answered request, see
/// [`crate::server::Filesystem::request_done`]).
pub(super) struct Requests {
    latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    errors: Family<OpLabel, Counter>,
}

impl Default for Requests {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        }
    }
}

impl Requests {
    /// Counts one answered request of kind `op`.
    pub(super) fn record(&self, op: &'static str, elapsed: Duration, ok: bool) {
        let l = OpLabel { op };
        self.latency
            .get_or_create(&l)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.errors.get_or_create(&l).inc();
        }
    }
}

/// What one visible node shows: its pool status and its last summary, if
/// still cached.
pub(super) struct NodeFacts {
    /// The node's name (its directory).
    pub(super) name: String,
    /// Pool state as `/nodes` shows it.
    pub(super) status: NodeStatus,
    /// The last summary the cache holds, whatever its age.
    pub(super) summary: Option<Arc<NodeSummary>>,
}

/// The aggregator's own numbers (administrators only).
pub(super) struct Health<'a> {
    /// Cache counters.
    pub(super) cache: &'a Stats,
    /// Entries and weighted bytes the cache holds.
    pub(super) cache_entries: u64,
    /// See `cache_entries`.
    pub(super) cache_bytes: u64,
    /// Configured nodes.
    pub(super) nodes: usize,
    /// Nodes with a live connection.
    pub(super) connections: usize,
    /// Requests to nodes in flight now.
    pub(super) in_flight: usize,
    /// The pool's bound on them.
    pub(super) max_in_flight: usize,
    /// Cluster-wide tables built so far.
    pub(super) tables_built: u64,
    /// What the 9P server's sessions hold.
    pub(super) server: &'a crate::server::Gauges,
}

fn state_name(s: &NodeState) -> &'static str {
    match s {
        NodeState::Idle => "idle",
        NodeState::Up => "up",
        NodeState::Down(_) => "down",
    }
}

/// A gauge family labelled by node, registered under `name`.
fn node_gauge(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> Family<NodeLabel, FGauge> {
    let f = Family::<NodeLabel, FGauge>::default();
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, f.clone()),
        None => reg.register(name, help, f.clone()),
    }
    f
}

/// A counter registered under `name` (`_total` is added) holding `v`.
fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// A gauge registered under `name` holding `v`.
fn gauge(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    reg.register(name, help, g);
}

/// The exposition for `nodes` (already filtered to what the reader may
/// see) and, for an administrator, the aggregator's `health` and 9P
/// `requests`.
pub(super) fn render(nodes: &[NodeFacts], health: Option<(&Health<'_>, &Requests)>) -> String {
    let mut reg = Registry::with_prefix("gproc");
    let up = node_gauge(
        &mut reg,
        "node_up",
        "Whether the aggregator is connected to the node (1) or not (0: down, or never contacted)",
        None,
    );
    let state = Family::<StateLabel, Gauge>::default();
    reg.register(
        "node_state",
        "The node's state in the pool: 1 for the current one of idle, up, down",
        state.clone(),
    );
    let rtt = node_gauge(
        &mut reg,
        "node_rtt",
        "Round trip of the node's last successful operation",
        Some(Unit::Seconds),
    );
    let contact = node_gauge(
        &mut reg,
        "node_last_contact",
        "Unix time of the node's last successful operation",
        Some(Unit::Seconds),
    );
    let machine = Family::<MachineLabel, Gauge>::default();
    reg.register(
        "node_machine",
        "The node's architecture and kernel release, from its last cached summary (always 1)",
        machine.clone(),
    );
    let load = [
        node_gauge(
            &mut reg,
            "node_load1",
            "1-minute load average (last cached summary)",
            None,
        ),
        node_gauge(
            &mut reg,
            "node_load5",
            "5-minute load average (last cached summary)",
            None,
        ),
        node_gauge(
            &mut reg,
            "node_load15",
            "15-minute load average (last cached summary)",
            None,
        ),
    ];
    let cpus = node_gauge(
        &mut reg,
        "node_cpus",
        "Online CPUs (last cached summary)",
        None,
    );
    let mem_total = node_gauge(
        &mut reg,
        "node_memory_total",
        "MemTotal (last cached summary)",
        Some(Unit::Bytes),
    );
    let mem_avail = node_gauge(
        &mut reg,
        "node_memory_available",
        "MemAvailable, or MemFree on kernels without it, as /load's AVAIL (last cached summary)",
        Some(Unit::Bytes),
    );
    let mem_free = node_gauge(
        &mut reg,
        "node_memory_free",
        "MemFree (last cached summary)",
        Some(Unit::Bytes),
    );
    let procs = node_gauge(
        &mut reg,
        "node_processes",
        "Processes on the node, all users (last cached summary)",
        None,
    );
    let uptime = node_gauge(
        &mut reg,
        "node_uptime",
        "Time since the node booted (last cached summary)",
        Some(Unit::Seconds),
    );
    for n in nodes {
        let l = NodeLabel {
            node: n.name.clone(),
        };
        let st = &n.status;
        up.get_or_create(&l)
            .set(if st.state == NodeState::Up { 1.0 } else { 0.0 });
        for s in ["idle", "up", "down"] {
            state
                .get_or_create(&StateLabel {
                    node: n.name.clone(),
                    state: s,
                })
                .set(i64::from(state_name(&st.state) == s));
        }
        if let Some(d) = st.rtt {
            rtt.get_or_create(&l).set(d.as_secs_f64());
        }
        if let Some(t) = st
            .last_contact
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        {
            contact.get_or_create(&l).set(t.as_secs_f64());
        }
        let Some(s) = &n.summary else { continue };
        if !s.arch.is_empty() || !s.kernel.is_empty() {
            machine
                .get_or_create(&MachineLabel {
                    node: n.name.clone(),
                    arch: s.arch.clone(),
                    kernel: s.kernel.clone(),
                })
                .set(1);
        }
        for (g, v) in load
            .iter()
            .zip([s.loadavg.one, s.loadavg.five, s.loadavg.fifteen])
        {
            g.get_or_create(&l).set(v);
        }
        let kib = |k: u64| k as f64 * 1024.0;
        cpus.get_or_create(&l).set(f64::from(s.cpus));
        mem_total.get_or_create(&l).set(kib(s.mem_total_kb));
        mem_avail
            .get_or_create(&l)
            .set(kib(s.mem_available_kb.unwrap_or(s.mem_free_kb)));
        mem_free.get_or_create(&l).set(kib(s.mem_free_kb));
        procs.get_or_create(&l).set(s.procs.len() as f64);
        uptime.get_or_create(&l).set(s.uptime);
    }
    if let Some((h, req)) = health {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut reg,
            "cache_entries",
            "Entries the cache holds",
            h.cache_entries,
        );
        reg.register_with_unit(
            "cache_size",
            "Weighted size of what the cache holds",
            Unit::Bytes,
            {
                let b = Gauge::<i64>::default();
                b.set(i64::try_from(h.cache_bytes).unwrap_or(i64::MAX));
                b
            },
        );
        counter(
            &mut reg,
            "cache_hits",
            "Lookups answered from the cache, fresh",
            g(&h.cache.hits),
        );
        counter(
            &mut reg,
            "cache_stale_hits",
            "Lookups answered with a stale copy (a stale rule allowed it)",
            g(&h.cache.stale_hits),
        );
        counter(
            &mut reg,
            "cache_misses",
            "Lookups that needed a node read (coalesced waiters included)",
            g(&h.cache.misses),
        );
        counter(
            &mut reg,
            "node_reads",
            "Reads sent to nodes (after coalescing)",
            g(&h.cache.node_reads),
        );
        counter(
            &mut reg,
            "node_read_errors",
            "Node reads that failed",
            g(&h.cache.errors),
        );
        counter(
            &mut reg,
            "uncached_reads",
            "Reads of paths whose rule is ttl = never",
            g(&h.cache.bypass),
        );
        counter(
            &mut reg,
            "tables_built",
            "Cluster-wide tables (/ps, /load) built",
            h.tables_built,
        );
        gauge(&mut reg, "pool_nodes", "Configured nodes", h.nodes as u64);
        gauge(
            &mut reg,
            "pool_connections",
            "Nodes with a live connection",
            h.connections as u64,
        );
        gauge(
            &mut reg,
            "pool_in_flight",
            "Requests to nodes in flight now",
            h.in_flight as u64,
        );
        gauge(
            &mut reg,
            "pool_max_in_flight",
            "Bound on requests to nodes in flight ([pool] max_in_flight)",
            h.max_in_flight as u64,
        );
        gauge(
            &mut reg,
            "9p_connections",
            "9P connections being served",
            h.server.connections.now() as u64,
        );
        gauge(
            &mut reg,
            "9p_fids",
            "Fids the 9P connections hold (in fid tables and requests running)",
            h.server.fids.now() as u64,
        );
        gauge(
            &mut reg,
            "9p_replies_queued",
            "9P replies encoded and not yet written to their connection",
            h.server.queued_replies.now() as u64,
        );
        counter(
            &mut reg,
            "9p_frames_read",
            "9P messages read from clients",
            h.server.frames_read(),
        );
        reg.register_with_unit(
            "9p_request_duration",
            "9P requests answered by the aggregator, by operation, and how long each took",
            Unit::Seconds,
            req.latency.clone(),
        );
        reg.register(
            "9p_request_errors",
            "9P requests answered with an error, by operation",
            req.errors.clone(),
        );
    }
    let mut out = String::new();
    // Writing to a String cannot fail and every name here is valid; should
    // the encoder still refuse, a scraper gets an empty exposition rather
    // than a half-written one.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        tracing::warn!("/metrics: the encoder failed ({e}); serving an empty exposition");
        out = "# EOF\n".to_string();
    }
    out
}

impl Tree {
    /// The nodes `view` sees in `/metrics`, with their summaries gathered
    /// as `/load` gathers them (through the cache, within the deadline,
    /// coalesced with other readers), so a scrape every 15 s has every
    /// answering node's numbers whether or not anyone else read lately.
    /// A node that did not answer, or serves no Linux `/proc`, keeps its
    /// state series and has no load series.
    async fn metrics_nodes(&self, view: &View) -> Vec<NodeFacts> {
        let gathered = self.gather(view).await;
        let nodes: Vec<Arc<Member>> = if view.depends_on_processes() {
            gathered.ok.iter().map(|(n, _)| n.clone()).collect()
        } else {
            self.candidate_nodes(view)
        };
        let mut summaries: std::collections::HashMap<u32, Arc<NodeSummary>> = gathered
            .ok
            .into_iter()
            .filter(|(_, s)| s.has_linux_facts())
            .map(|(n, s)| (n.index, s))
            .collect();
        nodes
            .iter()
            .map(|n| facts(n, summaries.remove(&n.index)))
            .collect()
    }

    /// `/metrics` as `view` sees it.
    pub(super) async fn render_metrics(&self, view: &View) -> Bytes {
        let nodes = self.metrics_nodes(view).await;
        if !view.admin {
            return Bytes::from(render(&nodes, None));
        }
        self.cache.sync().await;
        let (cache_entries, cache_bytes) = self.cache.usage();
        let all = self.pool.nodes();
        let health = Health {
            cache: self.cache.stats(),
            cache_entries,
            cache_bytes,
            nodes: all.len(),
            connections: all
                .iter()
                .filter(|n| n.status().state == NodeState::Up)
                .count(),
            in_flight: self.pool.in_flight(),
            max_in_flight: self.pool.options().max_in_flight,
            tables_built: self.tables_built.load(Ordering::Relaxed),
            server: &self.server_gauges,
        };
        Bytes::from(render(&nodes, Some((&health, &self.requests))))
    }

    /// `/metrics` as an administrator sees it: what the HTTP listener
    /// serves to scrapers.
    pub async fn metrics_for_admin(&self) -> Bytes {
        self.render_metrics(&View::admin()).await
    }
}

fn facts(n: &Member, summary: Option<Arc<NodeSummary>>) -> NodeFacts {
    NodeFacts {
        name: n.name.clone(),
        status: n.status(),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::summary::{LoadAvg, ProcEntry};
    use std::time::SystemTime;

    fn status(state: NodeState, rtt_ms: Option<u64>) -> NodeStatus {
        NodeStatus {
            state,
            dialect: None,
            rtt: rtt_ms.map(Duration::from_millis),
            last_contact: rtt_ms
                .map(|_| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            last_error: None,
            failures: 0,
        }
    }

    fn summary(load: f64, procs: usize) -> Arc<NodeSummary> {
        Arc::new(NodeSummary {
            arch: "ppc64".into(),
            kernel: "6.1.0 \"quoted\"\\\nnext".into(),
            cpus: 4,
            mem_total_kb: 1024,
            mem_free_kb: 256,
            mem_available_kb: Some(512),
            uptime: 12.5,
            loadavg: LoadAvg {
                one: load,
                five: 0.5,
                fifteen: 0.25,
                ..LoadAvg::default()
            },
            procs: vec![ProcEntry::default(); procs],
            ..NodeSummary::default()
        })
    }

    /// The value of the sample line that starts with `series` (name and
    /// labels as written).
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn node_series_come_from_status_and_summary() {
        let nodes = [
            NodeFacts {
                name: "n1".into(),
                status: status(NodeState::Up, Some(3)),
                summary: Some(summary(1.75, 3)),
            },
            NodeFacts {
                name: "n2".into(),
                status: status(NodeState::Down("refused".into()), None),
                summary: None,
            },
        ];
        let t = render(&nodes, None);
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert_eq!(value(&t, "gproc_node_up{node=\"n1\"}"), Some(1.0), "{t}");
        assert_eq!(value(&t, "gproc_node_up{node=\"n2\"}"), Some(0.0), "{t}");
        assert_eq!(
            value(&t, "gproc_node_state{node=\"n2\",state=\"down\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(&t, "gproc_node_state{node=\"n2\",state=\"up\"}"),
            Some(0.0)
        );
        assert_eq!(
            value(&t, "gproc_node_rtt_seconds{node=\"n1\"}"),
            Some(0.003)
        );
        assert_eq!(value(&t, "gproc_node_load1{node=\"n1\"}"), Some(1.75));
        assert_eq!(value(&t, "gproc_node_load15{node=\"n1\"}"), Some(0.25));
        assert_eq!(value(&t, "gproc_node_cpus{node=\"n1\"}"), Some(4.0));
        assert_eq!(
            value(&t, "gproc_node_memory_available_bytes{node=\"n1\"}"),
            Some(512.0 * 1024.0)
        );
        assert_eq!(value(&t, "gproc_node_processes{node=\"n1\"}"), Some(3.0));
        assert_eq!(
            value(&t, "gproc_node_last_contact_seconds{node=\"n1\"}"),
            Some(1_700_000_000.0)
        );
        // No summary, no machine numbers; no round trip, no rtt series.
        assert!(!t.contains("gproc_node_load1{node=\"n2\"}"), "{t}");
        assert!(!t.contains("gproc_node_rtt_seconds{node=\"n2\"}"), "{t}");
        // The counter names of one per kind of type line, once.
        assert_eq!(t.matches("# TYPE gproc_node_up gauge").count(), 1);
    }

    #[test]
    fn label_values_from_nodes_are_escaped() {
        let nodes = [NodeFacts {
            name: "n1".into(),
            status: status(NodeState::Up, Some(1)),
            summary: Some(summary(0.0, 0)),
        }];
        let t = render(&nodes, None);
        // The kernel string a node reported holds a quote, a backslash
        // and a newline: each escaped, the sample on one line.
        let line = t
            .lines()
            .find(|l| l.starts_with("gproc_node_machine{"))
            .unwrap();
        assert_eq!(
            line,
            r#"gproc_node_machine{node="n1",arch="ppc64",kernel="6.1.0 \"quoted\"\\\nnext"} 1"#
        );
    }

    #[test]
    fn health_only_when_given_and_no_per_process_series() {
        let nodes = [NodeFacts {
            name: "n1".into(),
            status: status(NodeState::Up, Some(1)),
            summary: Some(summary(0.5, 500)),
        }];
        let user = render(&nodes, None);
        assert!(!user.contains("gproc_cache"), "{user}");
        assert!(!user.contains("gproc_pool"), "{user}");
        assert!(!user.contains("gproc_9p"), "{user}");
        // 500 processes, still a handful of series per node.
        let samples = user.lines().filter(|l| !l.starts_with('#')).count();
        assert!(samples < 20, "{samples} samples:\n{user}");

        let stats = Stats::default();
        stats.hits.store(7, Ordering::Relaxed);
        stats.misses.store(2, Ordering::Relaxed);
        let req = Requests::default();
        req.record("walk", Duration::from_millis(2), true);
        req.record("walk", Duration::from_millis(3), false);
        req.record("read", Duration::from_micros(50), true);
        let h = Health {
            cache: &stats,
            cache_entries: 5,
            cache_bytes: 4096,
            nodes: 3,
            connections: 1,
            in_flight: 2,
            max_in_flight: 1024,
            tables_built: 9,
            server: &crate::server::Gauges::default(),
        };
        let t = render(&nodes, Some((&h, &req)));
        assert_eq!(value(&t, "gproc_cache_hits_total"), Some(7.0), "{t}");
        assert_eq!(value(&t, "gproc_cache_misses_total"), Some(2.0));
        assert_eq!(value(&t, "gproc_cache_entries"), Some(5.0));
        assert_eq!(value(&t, "gproc_cache_size_bytes"), Some(4096.0));
        assert_eq!(value(&t, "gproc_pool_connections"), Some(1.0));
        assert_eq!(value(&t, "gproc_pool_in_flight"), Some(2.0));
        assert_eq!(value(&t, "gproc_tables_built_total"), Some(9.0));
        assert_eq!(value(&t, "gproc_9p_connections"), Some(0.0));
        assert_eq!(value(&t, "gproc_9p_frames_read_total"), Some(0.0));
        assert_eq!(
            value(&t, "gproc_9p_request_duration_seconds_count{op=\"walk\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&t, "gproc_9p_request_errors_total{op=\"walk\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                "gproc_9p_request_duration_seconds_bucket{le=\"0.0001\",op=\"read\"}"
            )
            .or_else(|| value(
                &t,
                "gproc_9p_request_duration_seconds_bucket{op=\"read\",le=\"0.0001\"}"
            )),
            Some(1.0),
            "{t}"
        );
    }
}

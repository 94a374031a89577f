//! The merged namespace the aggregator serves: a [`Filesystem`] built on
//! the node [`Pool`] and the [`Cache`].
//!
//! ```text
//! /nodes              one line per node: state, address, dialect, rtt, last error
//! /ps                 one line per visible process of the cluster
//! /load               one line per visible node: load, cpus, memory, uptime
//! /stats              cache and pool counters (administrators)
//! /metrics            the same and per-node state, load and memory, in the
//!                     Prometheus/OpenMetrics text format, per view
//! /jobs               one line per visible batch job: user, nodes, sums
//! /top/<query>        the first rows of /ps ranked by %CPU or memory
//!                     (`cpu`, `mem:rows=40:users=a+b:hosts=n[1-9]`)
//! /job/<id>/ps        that job's rows of /ps
//! /job/<id>/nodes     the nodes it runs on, with its sums on each
//! /job/<id>/<node>/<pid>/...  its processes, as /<node>/<pid>/...
//! /job/<id>/ctl       with [control] on: a command for each of its processes
//! /pid/<pid>@<node>   the global process space: that process's directory
//! /<node>/...         everything that node's /proc export has, for the
//!                     pool's nodes and the nodes below lower aggregators
//! /.gproc/ps          (administrators) every node's summary in one file,
//!                     for an aggregator above this one
//! /<node>/<pid>/ctl   with [control] on: write kill, term, stop, cont or
//!                     signal N|NAME; sent down to the node as the writer
//! ```
//!
//! Node data is read path by path from each node's attach root and cached
//! under the per-path rules; a fid's node is only a location (what an open
//! fid holds is the session's). So a node reconnect needs no fid replay.
//!
//! One job per file: every node served and the lower aggregators they
//! come through (`members`), which process a path names and the pin a fid keeps
//! to it (`pin`), the `qid.path` scheme (`qid`), node data read through
//! the cache, one typed kind per sort of read (`reads`), per-node process
//! tables from the summary or per-process files (`procs`), table rows
//! (`tables`), the rankings of `/ps` under `/top` (`rank`), each node's `/ps` lines written once per summary for every
//! view (`rows`), the job tree (`jobs`), the synthesized files rendered
//! through the cache (`render`),
//! the Prometheus exposition (`metrics`), node fids a getattr walked, kept
//! for the open that follows (`walked`), and the [`Filesystem`] impl (`fs`).
//!
//! [`Filesystem`]: crate::server::Filesystem

mod control;
mod fs;
mod jobs;
mod late;
mod members;
mod metrics;
mod pin;
mod procs;
mod qid;
mod rank;
mod reads;
mod render;
mod rows;
pub mod tables;
mod walked;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cache::Cache;
use crate::client::pool::Pool;
use crate::config::ControlConfig;
use crate::sys;
use crate::view::Views;

pub use fs::TreeNode;
pub use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use reads::{SummaryReads, SummaryRefresh};

/// The aggregator's tree.
pub struct Tree {
    pool: Arc<Pool>,
    /// Node data and rendered tables, under one byte bound.
    cache: Cache,
    /// Limit for cluster-wide tables (`/ps`, `/load`, `/pid`).
    deadline: Duration,
    /// Nodes found without a summary file, and when; rechecked after a
    /// while (the agent may be installed later).
    no_summary: Mutex<HashMap<u32, Instant>>,
    /// Cluster-wide tables built so far (`tables_built` in `/stats`).
    tables_built: AtomicU64,
    /// Who sees what.
    views: Arc<Views>,
    /// Names nodes lately said do not exist.
    negatives: Mutex<pin::Negatives>,
    /// The 9P server's request counts and latencies, for `/metrics`.
    requests: metrics::Requests,
    /// Whether process directories have `ctl` files, and what users may
    /// send through them (`[control]`).
    control: ControlConfig,
    /// The nodes below the lower aggregators among the pool's.
    members: Mutex<members::Members>,
    /// This aggregator's name, in the merged summary it serves upwards.
    name: String,
    /// When each user's signals of the last minute were sent, for
    /// `[control] user_signals_per_minute`.
    signal_times: Mutex<HashMap<u32, std::collections::VecDeque<Instant>>>,
    /// Each node's `/ps` lines, written once per summary for every view.
    rows: rows::RowsCache,
    /// Job ids' numbers in the job tree's qids.
    job_numbers: Mutex<qid::JobNumbers>,
    /// Each pool node's summary file, kept open where the node takes it
    /// anew on a read at 0 (`fresh_at_zero`): a refresh is one read.
    summary_fids: reads::KeptFiles,
    /// Node fids metadata reads walked, kept for the open that follows.
    walked: Arc<walked::Walked>,
    /// Each node's last summary and generation, for deltas.
    held: Arc<reads::Held>,
    /// Summary reads still going past a table's deadline, finishing into
    /// the cache for the next table.
    late: late::LateReads<(reads::Fetched, crate::cache::Freshness)>,
    /// What the 9P server's sessions hold, for `/metrics`.
    server_gauges: Arc<crate::server::Gauges>,
}

/// How long a node without a summary file is not asked for it again.
const NO_SUMMARY_RECHECK: Duration = Duration::from_secs(300);

impl Tree {
    /// A tree over `pool`, caching in `cache`, showing each identity its
    /// view under `views` (who may attach is the server's access policy).
    pub fn new(pool: Arc<Pool>, cache: Cache, deadline: Duration, views: Arc<Views>) -> Self {
        Self {
            pool,
            cache,
            deadline,
            no_summary: Mutex::new(HashMap::new()),
            tables_built: AtomicU64::new(0),
            views,
            negatives: Mutex::new(pin::Negatives::default()),
            requests: metrics::Requests::default(),
            control: ControlConfig::default(),
            members: Mutex::new(members::Members::default()),
            name: sys::host_name(),
            signal_times: Mutex::new(HashMap::new()),
            rows: rows::RowsCache::default(),
            job_numbers: Mutex::new(qid::JobNumbers::default()),
            summary_fids: reads::KeptFiles::default(),
            walked: Arc::default(),
            held: Arc::default(),
            server_gauges: Arc::default(),
            late: late::LateReads::default(),
        }
    }

    /// Names this aggregator in the merged summary it serves to an
    /// aggregator above it (`[server] name`; the host name by default).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Shows in `/metrics` what the sessions of the server serving this
    /// tree hold (`SessionLimits::gauges`).
    pub fn with_server_gauges(mut self, gauges: Arc<crate::server::Gauges>) -> Self {
        self.server_gauges = gauges;
        self
    }

    /// Gives process directories `ctl` files per `control` (off by default:
    /// the tree is read-only, and a node's own `ctl` files are hidden).
    pub fn with_control(mut self, control: ControlConfig) -> Self {
        self.control = control;
        self
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
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether `node` was lately found without a summary file.
    fn lacks_summary(&self, node: u32) -> bool {
        let mut m = sys::lock(&self.no_summary);
        match m.get(&node) {
            Some(t) if t.elapsed() < NO_SUMMARY_RECHECK => true,
            Some(_) => {
                m.remove(&node);
                false
            }
            None => false,
        }
    }

    /// Notes that `node` has no summary file, so it is not asked again for
    /// a while.
    fn mark_no_summary(&self, node: u32) {
        sys::lock(&self.no_summary).insert(node, Instant::now());
    }
}

#[cfg(test)]
mod tests;

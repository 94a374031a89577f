//! Per-node process tables: from the agent's summary file in one read, or,
//! for nodes without one (diod, Plan 9 style), from per-process reads of
//! `stat`, `status`, `cmdline` and `cgroup` (the job, by the built-in
//! patterns) plus the node-wide files. The fallback does not say which
//! GPUs a process holds (unknown, shown `-`): that takes a stat of every
//! descriptor, one 9P walk and stat each here, and a diod node serves the
//! `fd` links as the link's text, not the device numbers the agent
//! recognises GPUs by.

use std::sync::Arc;

use futures::StreamExt;
use procfs::FromRead;

use crate::client::pool::Node;
use crate::format::jobs::JobRules;
use crate::format::merged::NodeData;
use crate::format::summary::{Args, Escaped, LoadAvg, NodeSummary, ProcEntry};
use crate::proto::errno;
use crate::server::{FsError, FsResult};
use crate::sys;

use super::Tree;
use super::members::Member;
use super::reads::Fetched;

/// The job patterns of the fallback path: the built-in ones (a site's own
/// patterns are the agents' flags; nodes without a summary have no agent).
static JOB_RULES: std::sync::LazyLock<JobRules> = std::sync::LazyLock::new(JobRules::default);

/// Per-process reads in flight per node on the fallback path.
const FALLBACK_CONCURRENCY: usize = 16;

impl Tree {
    /// The node's processes and facts: the summary file where the node
    /// serves one, else assembled from per-process files; for a node below
    /// a lower aggregator, its part of that one's merged summary.
    pub(crate) async fn node_summary(&self, node: &Member) -> FsResult<Arc<NodeSummary>> {
        self.node_summary_aged(node).await.map(|(s, _)| s)
    }

    /// [`Self::node_summary`], with the age of a stale copy of the summary
    /// file (served past its TTL under a `stale` rule).
    pub(crate) async fn node_summary_aged(
        &self,
        node: &Member,
    ) -> FsResult<(Arc<NodeSummary>, Option<std::time::Duration>)> {
        let (fetched, age) = self.peer_data(&node.via).await?;
        match fetched {
            Fetched::Node(s) if !node.is_below() => Ok((s, age)),
            Fetched::Merged(m) if node.is_below() => match m.get(&node.name).map(|n| &n.data) {
                Some(NodeData::Summary { summary, stale }) => {
                    Ok((summary.clone(), age.max(*stale)))
                }
                Some(NodeData::Missing { errno, reason }) => {
                    Err(FsError::new(if *errno == 0 { errno::EIO } else { *errno })
                        .with(format!("{reason} [via {}]", node.chain.join("/"))))
                }
                None => Err(FsError::NOENT.with(format!(
                    "{} no longer serves {}",
                    node.via.spec.name, node.name
                ))),
            },
            _ => Err(FsError::NOENT.with(format!(
                "{} changed between a node and an aggregator; read again",
                node.via.spec.name
            ))),
        }
    }

    /// What pool node `node`'s summary file holds (a node's summary, or a
    /// lower aggregator's merged one), or for a node without that file,
    /// its summary assembled from per-process files.
    pub(super) async fn peer_data(
        &self,
        node: &Arc<Node>,
    ) -> FsResult<(Fetched, Option<std::time::Duration>)> {
        if !self.lacks_summary(node.index) {
            match self.fetch_summary(node).await {
                Ok(s) => return Ok(s),
                Err(e) if e.errno == errno::ENOENT => {
                    self.mark_no_summary(node.index);
                    sys::lock(&self.members).set_node(node.index);
                }
                Err(e) => return Err(e),
            }
        }
        self.summary_from_files(&Member::direct(node))
            .await
            .map(|s| (Fetched::Node(s), None))
    }

    async fn summary_from_files(&self, node: &Member) -> FsResult<Arc<NodeSummary>> {
        let root = self.node_list(node, "/", None).await?;
        let (stat, uptime, meminfo, loadavg) = tokio::join!(
            self.node_read(node, "/stat", None),
            self.node_read(node, "/uptime", None),
            self.node_read(node, "/meminfo", None),
            self.node_read(node, "/loadavg", None),
        );
        let mut s = NodeSummary {
            hostname: node.name.clone(),
            arch: String::new(),
            kernel: String::new(),
            boot_time: 0,
            // USER_HZ is 100 on every Linux architecture userspace sees; a
            // node without the summary file cannot tell us otherwise.
            clk_tck: 100,
            page_size: 4096,
            uptime: 0.0,
            idle: 0.0,
            time: now_unix(),
            cpus: 0,
            mem_total_kb: 0,
            mem_free_kb: 0,
            mem_available_kb: None,
            loadavg: LoadAvg {
                one: 0.0,
                five: 0.0,
                fifteen: 0.0,
                running: 0,
                total: 0,
            },
            procs: Vec::new(),
            pinned_walk: false,
            fresh_at_zero: false,
        };
        if let Ok(b) = stat {
            // Only two facts are needed; parsing by hand avoids procfs's
            // need for the *local* tick rate to build KernelStats.
            let text = String::from_utf8_lossy(&b);
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("btime ") {
                    s.boot_time = v.trim().parse().unwrap_or(0);
                } else if line.starts_with("cpu")
                    && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                {
                    s.cpus += 1;
                }
            }
        }
        if let Ok(b) = uptime {
            let text = String::from_utf8_lossy(&b);
            let mut it = text
                .split_whitespace()
                .filter_map(|v| v.parse::<f64>().ok());
            s.uptime = it.next().unwrap_or(0.0);
            s.idle = it.next().unwrap_or(0.0);
        }
        if let Ok(b) = meminfo
            && let Ok(m) = procfs::Meminfo::from_read(&b[..])
        {
            s.mem_total_kb = m.mem_total / 1024;
            s.mem_free_kb = m.mem_free / 1024;
            s.mem_available_kb = m.mem_available.map(|v| v / 1024);
        }
        if let Ok(b) = loadavg
            && let Ok(l) = procfs::LoadAverage::from_read(&b[..])
        {
            s.loadavg = LoadAvg {
                one: l.one as f64,
                five: l.five as f64,
                fifteen: l.fifteen as f64,
                running: l.cur,
                total: l.max,
            };
        }
        let pids: Vec<i32> = root
            .iter()
            .filter_map(|e| e.name.parse::<i32>().ok())
            .collect();
        let results: Vec<FsResult<Option<ProcEntry>>> = futures::stream::iter(pids)
            .map(|pid| self.proc_from_files(node, pid))
            .buffer_unordered(FALLBACK_CONCURRENCY)
            .collect()
            .await;
        // A process that exited is simply gone; any other failure (a
        // timeout, a lost connection) would silently shorten the table, so
        // the node is reported instead.
        let failed = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            return Err(e.clone().with(format!(
                "{failed} of {} processes unreadable",
                results.len()
            )));
        }
        let mut procs: Vec<ProcEntry> = results
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .collect();
        procs.sort_by_key(|p| p.pid);
        s.procs = procs;
        Ok(Arc::new(s))
    }

    /// One process from its files; `None` when it vanished or is unreadable.
    async fn proc_from_files(&self, node: &Member, pid: i32) -> FsResult<Option<ProcEntry>> {
        let (p_stat, p_status, p_cmdline, p_cgroup) = (
            format!("/{pid}/stat"),
            format!("/{pid}/status"),
            format!("/{pid}/cmdline"),
            format!("/{pid}/cgroup"),
        );
        let (stat, status, cmdline, cgroup) = tokio::join!(
            self.node_read(node, &p_stat, None),
            self.node_read(node, &p_status, None),
            self.node_read(node, &p_cmdline, None),
            self.node_read(node, &p_cgroup, None),
        );
        let stat = match stat {
            Ok(b) => b,
            Err(e) if e.errno == crate::proto::errno::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(st) = procfs::process::Stat::from_read(&stat[..]) else {
            return Ok(None); // unparsable: not a process we can show
        };
        let (ruid, euid) = status
            .ok()
            .and_then(|b| procfs::process::Status::from_read(&b[..]).ok())
            .map(|s| (s.ruid, s.euid))
            .unwrap_or((u32::MAX, u32::MAX));
        let cmdline = cmdline.map(|b| Args::from_cmdline(&b)).unwrap_or_default();
        // Unreadable (an old kernel, a node that hides it): no job.
        let job = cgroup.ok().and_then(|b| JOB_RULES.job_of(&b));
        Ok(Some(ProcEntry {
            pid,
            ppid: st.ppid,
            ruid,
            euid,
            user: self.user_name(euid).into(),
            state: st.state,
            utime: st.utime,
            stime: st.stime,
            rss_pages: st.rss,
            vsize: st.vsize,
            start_ticks: st.starttime,
            threads: st.num_threads,
            comm: Escaped::new(st.comm.as_bytes()),
            cmdline,
            job: job.map(std::sync::Arc::new),
            gpus: None,
        }))
    }

    /// A uid's name for nodes that do not send names: the aggregator's own
    /// user database (clusters share one), else the number.
    fn user_name(&self, uid: u32) -> String {
        if uid == u32::MAX {
            return "?".into();
        }
        crate::sys::users::user_label(uid)
    }
}

/// Seconds since the epoch, now.
pub(crate) fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

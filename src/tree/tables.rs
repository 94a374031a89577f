//! The rows of the aggregator's tables, `/ps`, `/load`, `/nodes`, `/jobs`
//! and `/job/<id>/nodes`, from node summaries and the pool's node status.
//! The format (row types, headers, writers, the parser readers use) is
//! [`crate::format::table`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::client::pool::{NodeState, NodeStatus};
use crate::config::hostlist;
use crate::format::gpus::Gpus;
use crate::format::summary::{NodeSummary, ProcEntry};
use crate::format::table::{
    JobNodeRow, JobRow, LoadRow, NodeRow, Note, PsFields, PsRow, Uptime, cpu_tenths,
};
use crate::view::View;

/// The numbers of a process's `/ps` row, from its node's summary.
struct PsNumbers {
    cpu: f64,
    mem: f64,
    rss_kb: u64,
    vsz_kb: u64,
    start: u64,
    time: u64,
}

fn ps_numbers(s: &NodeSummary, p: &ProcEntry) -> PsNumbers {
    let tck = s.clk_tck.max(1);
    let cpu_s = p.cpu_seconds(tck);
    let start = p.start_time_unix(s.boot_time, tck);
    let elapsed = (s.time - start).max(0.0);
    let cpu = if elapsed > 0.0 {
        (cpu_s / elapsed * 100.0).min(100.0 * s.cpus.max(1) as f64)
    } else {
        0.0
    };
    let rss = p.rss_bytes(s.page_size.max(1));
    let mem = if s.mem_total_kb > 0 {
        rss as f64 / (s.mem_total_kb as f64 * 1024.0) * 100.0
    } else {
        0.0
    };
    PsNumbers {
        cpu,
        mem,
        rss_kb: rss / 1024,
        vsz_kb: p.vsize / 1024,
        start: start.max(0.0) as u64,
        time: cpu_s as u64,
    }
}

/// What a process is ranked by in `/top` ([`crate::format::rank`]): its
/// `%CPU` in tenths as its row prints it, and its RSS in KiB.
pub(super) fn rank_numbers(s: &NodeSummary, p: &ProcEntry) -> (u64, u64) {
    let n = ps_numbers(s, p);
    (cpu_tenths(n.cpu), n.rss_kb)
}

/// The `/ps` row for one process of a node's summary, as `view` is shown
/// it (the caller has decided that the view sees the process).
pub fn ps_row(node: &str, s: &NodeSummary, p: &ProcEntry, view: &View) -> PsRow {
    let n = ps_numbers(s, p);
    PsRow {
        node: node.to_string(),
        pid: p.pid,
        ppid: p.ppid,
        user: if p.user.is_empty() {
            p.euid.to_string()
        } else {
            p.user.to_string()
        },
        state: p.state,
        cpu: n.cpu,
        mem: n.mem,
        rss_kb: n.rss_kb,
        vsz_kb: n.vsz_kb,
        start: n.start,
        time: n.time,
        threads: p.threads,
        job: p.job.as_ref().map(|j| j.id.clone()),
        step: p.job.as_ref().and_then(|j| j.step.clone()),
        gpu: gpus_shown(view, p),
        command: p.cmdline_display(),
    }
}

/// Appends the `/ps` line of one process of a node's summary (no
/// newline) with `gpu` as its GPU cell: the bytes of `ps_row(node, s, p,
/// view).line()` for a view shown `gpu` ([`gpus_shown`]), written without
/// building the row.
pub fn write_ps_line(
    out: &mut String,
    node: &str,
    s: &NodeSummary,
    p: &ProcEntry,
    gpu: Option<&str>,
) {
    let n = ps_numbers(s, p);
    let mut uid = itoa::Buffer::new();
    let user = if p.user.is_empty() {
        uid.format(p.euid)
    } else {
        &p.user
    };
    PsFields {
        node,
        pid: p.pid,
        ppid: p.ppid,
        user,
        state: p.state,
        cpu: n.cpu,
        mem: n.mem,
        rss_kb: n.rss_kb,
        vsz_kb: n.vsz_kb,
        start: n.start,
        time: n.time,
        threads: p.threads,
        job: p.job.as_ref().map(|j| j.id.as_str()),
        step: p.job.as_ref().and_then(|j| j.step.as_deref()),
        gpu,
    }
    .write(out, |out| p.cmdline_into(out));
}

/// The GPUs of a process's row, if `view` may be shown them. The agent
/// read them from the process's descriptors as its service identity;
/// the node's kernel shows a user those (`stat` of `/proc/<pid>/fd/N`)
/// only for a process whose real, effective and saved uids are theirs,
/// whose gids are their current group, and that is dumpable (ptrace read
/// access). A view sees rows whose real *or* effective uid is theirs, so
/// a user is shown the GPUs only where both are, and the agent has not
/// flagged the process as one its owner could not read (restricted: its
/// uids or its gids differ among themselves, or it is not dumpable, as a
/// setuid or setgid program is); administrators see them all. Withheld
/// reads as none. A user's plain process running under another group of
/// theirs (`sg`) is shown: under that group they could read it too.
pub fn gpus_shown(view: &View, p: &ProcEntry) -> Option<String> {
    let g = p.gpus.as_ref()?;
    (view.admin || gpus_owner(p) == Some(view.uid))
        .then(|| g.display())
        .flatten()
}

/// The one user besides administrators shown the GPUs of `p`'s row
/// ([`gpus_shown`]): its owner, when its real and effective uids agree
/// and the agent did not flag it.
pub fn gpus_owner(p: &ProcEntry) -> Option<u32> {
    let g = p.gpus.as_ref()?;
    (p.ruid == p.euid && !g.restricted).then_some(p.ruid)
}

/// The `/load` row of a node (Supermon's per-node numbers).
pub fn load_row(node: &str, s: &NodeSummary) -> LoadRow {
    let avail = s.mem_available_kb.unwrap_or(s.mem_free_kb);
    LoadRow {
        node: node.to_string(),
        load: [s.loadavg.one, s.loadavg.five, s.loadavg.fifteen],
        running: u64::from(s.loadavg.running),
        tasks: u64::from(s.loadavg.total),
        cpus: u64::from(s.cpus),
        mem_total_mb: s.mem_total_kb / 1024,
        mem_used_mb: s.mem_total_kb.saturating_sub(avail) / 1024,
        mem_avail_mb: avail / 1024,
        procs: s.procs.len() as u64,
        uptime: Uptime::from_secs(s.uptime),
        arch: (!s.arch.is_empty()).then(|| s.arch.clone()),
        kernel: (!s.kernel.is_empty()).then(|| s.kernel.clone()),
    }
}

/// The `/nodes` row of a node: its name, where it is dialled, its status,
/// its last summary and the lower aggregators it is reached through.
pub fn node_row(
    name: &str,
    address: &str,
    st: &NodeStatus,
    last: Option<&NodeSummary>,
    via: &[String],
) -> NodeRow {
    let state = match &st.state {
        NodeState::Idle => "idle",
        NodeState::Up => "up",
        NodeState::Down(_) => "down",
    };
    let error = match &st.state {
        NodeState::Down(r) => Some(r.clone()),
        _ => st.last_error.clone(),
    };
    NodeRow {
        node: name.to_string(),
        state: state.to_string(),
        address: address.to_string(),
        dialect: st.dialect.map(|d| d.version_string().to_string()),
        rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
        last_contact: st
            .last_contact
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        arch: last.map(|s| s.arch.clone()).filter(|a| !a.is_empty()),
        kernel: last.map(|s| s.kernel.clone()).filter(|k| !k.is_empty()),
        age_s: last.map(|s| (now_unix() - s.time).max(0.0)),
        via: via.to_vec(),
        error,
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Appends `# missing NODE: reason [via A/B]` notes for nodes left out
/// of a table: each `(node, reason, via)`.
pub fn missing_notes<'a>(
    out: &mut String,
    missing: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
) {
    node_notes(out, missing, |node, reason, via| Note::Missing {
        node,
        reason,
        via,
    });
}

/// Writes one note per `(node, reason, via)`, made by `note`.
fn node_notes<'a>(
    out: &mut String,
    items: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
    note: impl Fn(String, String, Vec<String>) -> Note,
) {
    for (node, why, via) in items {
        note(node.to_string(), why.to_string(), via.to_vec()).write(out);
    }
}

/// Appends `# pending NODE: reason` notes for nodes that are up but whose
/// data had not come when the table was made.
pub fn pending_notes<'a>(
    out: &mut String,
    pending: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
) {
    node_notes(out, pending, |node, reason, via| Note::Pending {
        node,
        reason,
        via,
    });
}

/// Appends `# foreign NODE: ...` notes for nodes that answered without
/// any Linux `/proc` facts, so they are neither missing nor a row of zeros.
pub fn foreign_notes(out: &mut String, foreign: &[&str]) {
    for node in foreign {
        Note::Foreign {
            node: node.to_string(),
            reason: format!(
                "answers 9P but serves no Linux /proc (no stat, meminfo, loadavg or <pid>/stat); browse /{node}/"
            ),
        }
        .write(out);
    }
}

/// Appends, when `unsure` nodes did not answer that the reader may not be
/// told about (a user who sees the nodes where they run cannot be told
/// which nodes exist), a note naming none of them, so an incomplete table
/// still says it is.
pub fn unsure_note(out: &mut String, unsure: usize) {
    if unsure > 0 {
        Note::Other(
            "incomplete: some nodes did not answer; your processes there are not listed".into(),
        )
        .write(out);
    }
}

/// Appends `# stale NODE: 12.3s old (why) [via A/B]` notes for nodes
/// whose rows come from a copy past its TTL (a `stale` cache rule allowed
/// it): each `(node, age, why, via)`.
pub fn stale_notes<'a>(
    out: &mut String,
    stale: impl IntoIterator<Item = (&'a str, std::time::Duration, &'a str, &'a [String])>,
) {
    for (node, age, why, via) in stale {
        Note::Stale {
            node: node.to_string(),
            age,
            reason: why.to_string(),
            via: via.to_vec(),
        }
        .write(out);
    }
}

/// One job's sums, as its `/ps` rows are added: its `/jobs` row and its
/// `/job/<id>/nodes` rows. Only rows the reader sees are ever added, so
/// no sum tells anything of a process hidden from them.
#[derive(Debug, Default, Clone)]
pub struct JobSums {
    procs: u64,
    cpu_tenths: u64,
    rss_kb: u64,
    states: BTreeMap<char, u64>,
    start: Option<u64>,
    users: BTreeSet<String>,
    /// Per node, in the order rows came.
    nodes: Vec<JobNodeRow>,
    node_at: HashMap<String, usize>,
    /// Per node (as `nodes`): the GPU devices its rows show, and whether a
    /// list was cut at the node's descriptor cap.
    gpus: Vec<(BTreeSet<String>, bool)>,
    /// The devices of the last process [`Self::add_proc`] counted, and
    /// its node's index: the next process of the job on that node
    /// usually holds the same, already counted.
    last_gpus: Option<(usize, Arc<Gpus>)>,
}

/// The cells of one `/ps` row that a job's sums read.
struct JobCells<'a> {
    node: &'a str,
    user: &'a str,
    state: char,
    cpu: f64,
    mem: f64,
    rss_kb: u64,
    start: u64,
    gpu: Option<&'a str>,
}

impl JobSums {
    /// Adds one `/ps` row of the job.
    pub fn add(&mut self, r: &PsRow) {
        self.add_cells(&JobCells {
            node: &r.node,
            user: &r.user,
            state: r.state,
            cpu: r.cpu,
            mem: r.mem,
            rss_kb: r.rss_kb,
            start: r.start,
            gpu: r.gpu.as_deref(),
        });
    }

    /// Adds one process of a node's summary, as `view` is shown it: what
    /// [`Self::add`] of its [`ps_row`] adds, without making the row (the
    /// aggregator sums every job's processes on each cold `/ps`).
    pub fn add_proc(&mut self, node: &str, s: &NodeSummary, p: &ProcEntry, view: &View) {
        let n = ps_numbers(s, p);
        let mut uid = itoa::Buffer::new();
        let on_last = |i: usize| self.nodes.get(i).is_some_and(|r| r.node == node);
        let counted = match (&p.gpus, &self.last_gpus) {
            (Some(g), Some((i, l))) => g == l && on_last(*i),
            _ => false,
        };
        let gpu = if counted { None } else { gpus_shown(view, p) };
        let i = self.add_cells(&JobCells {
            node,
            user: if p.user.is_empty() {
                uid.format(p.euid)
            } else {
                &p.user
            },
            state: p.state,
            cpu: n.cpu,
            mem: n.mem,
            rss_kb: n.rss_kb,
            start: n.start,
            gpu: gpu.as_deref(),
        });
        if gpu.is_some() {
            self.last_gpus = p.gpus.clone().map(|g| (i, g));
        }
    }

    /// Adds one row's cells; returns its node's index in `nodes`.
    fn add_cells(&mut self, r: &JobCells<'_>) -> usize {
        let cpu = cpu_tenths(r.cpu);
        self.procs += 1;
        self.cpu_tenths += cpu;
        self.rss_kb += r.rss_kb;
        *self.states.entry(r.state).or_default() += 1;
        self.start = Some(self.start.map_or(r.start, |s| s.min(r.start)));
        if !self.users.contains(r.user) {
            self.users.insert(r.user.to_string());
        }
        // Rows come node by node: the last node's index needs no lookup.
        let last = self
            .nodes
            .len()
            .checked_sub(1)
            .filter(|&i| self.nodes[i].node == r.node);
        let i = match last.or_else(|| self.node_at.get(r.node).copied()) {
            Some(i) => i,
            None => {
                self.nodes.push(JobNodeRow {
                    node: r.node.to_string(),
                    ..JobNodeRow::default()
                });
                self.node_at
                    .insert(r.node.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        let n = &mut self.nodes[i];
        n.procs += 1;
        n.cpu_tenths += cpu;
        n.mem_tenths += cpu_tenths(r.mem);
        n.rss_kb += r.rss_kb;
        if let Some(list) = r.gpu.filter(|l| !l.is_empty()) {
            let count = self.nodes.len();
            self.gpus.resize_with(count, Default::default);
            let (devices, cut) = &mut self.gpus[i];
            let mut changed = false;
            for item in list.split(',') {
                match item {
                    "+" => {
                        changed |= !*cut;
                        *cut = true;
                    }
                    d => {
                        if !devices.contains(d) {
                            devices.insert(d.to_string());
                            changed = true;
                        }
                    }
                }
            }
            // Written again only when the node's set grew.
            if changed || self.nodes[i].gpu.is_none() {
                let mut shown: Vec<&str> = devices.iter().map(String::as_str).collect();
                if *cut {
                    shown.push("+");
                }
                self.nodes[i].gpu = Some(shown.join(","));
            }
        }
        i
    }

    /// Processes added.
    pub fn procs(&self) -> u64 {
        self.procs
    }

    /// The job's `/jobs` row.
    pub fn row(&self, job: &str) -> JobRow {
        // The workload manager's own processes in a job's cgroup are
        // root's: the job is its other users'.
        let others: Vec<&str> = self
            .users
            .iter()
            .map(String::as_str)
            .filter(|u| *u != "root" && *u != "0")
            .collect();
        let user = if others.is_empty() {
            self.users.iter().cloned().collect::<Vec<_>>().join(",")
        } else {
            others.join(",")
        };
        JobRow {
            job: job.to_string(),
            user,
            procs: self.procs,
            nnodes: self.nodes.len() as u64,
            cpu_tenths: self.cpu_tenths,
            rss_kb: self.rss_kb,
            states: self.states.iter().map(|(c, n)| (*c, *n)).collect(),
            start: self.start.unwrap_or(0),
            gpus: self.gpus.iter().map(|(d, _)| d.len() as u64).sum(),
            gpus_truncated: self.gpus.iter().any(|(_, cut)| *cut),
            nodes: hostlist::compress(self.nodes.iter().map(|n| n.node.as_str())),
        }
    }

    /// Its `/job/<id>/nodes` rows, in the order their rows came (`/ps`'s).
    pub fn node_rows(&self) -> &[JobNodeRow] {
        &self.nodes
    }
}

/// Job ids in order: numbers by value, before other text (which sorts as
/// text).
pub fn job_order(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, pid: i32, user: &str, state: char, cpu: f64, rss: u64) -> PsRow {
        PsRow {
            node: node.into(),
            pid,
            user: user.into(),
            state,
            cpu,
            mem: cpu / 10.0,
            rss_kb: rss,
            start: 1_000 + pid as u64,
            job: Some("42".into()),
            ..PsRow::default()
        }
    }

    #[test]
    fn job_sums_are_the_sums_of_the_rows_as_printed() {
        let rows = [
            row("n10", 7, "alice", 'R', 99.96, 100),
            row("n2", 3, "root", 'S', 0.04, 10),
            row("n2", 5, "alice", 'R', 50.05, 200),
            row("n3", 9, "alice", 'D', 0.0, 0),
        ];
        let mut j = JobSums::default();
        for r in &rows {
            j.add(r);
        }
        let r = j.row("42");
        // 100.0 + 0.0 + 50.1 (printed 50.0 or 50.1: the row's own rounding)
        let printed: u64 = rows
            .iter()
            .map(|r| {
                let s = format!("{:.1}", r.cpu);
                (s.parse::<f64>().unwrap() * 10.0).round() as u64
            })
            .sum();
        assert_eq!(r.cpu_tenths, printed);
        assert_eq!((r.procs, r.nnodes, r.rss_kb), (4, 3, 310));
        assert_eq!(r.states, vec![('D', 1), ('R', 2), ('S', 1)]);
        assert_eq!(r.start, 1_003);
        assert_eq!(
            r.user, "alice",
            "root's processes in the job are not its user"
        );
        assert_eq!(r.nodes, "n[2-3,10]");
        let nodes: Vec<(&str, u64, u64)> = j
            .node_rows()
            .iter()
            .map(|n| (n.node.as_str(), n.procs, n.rss_kb))
            .collect();
        assert_eq!(nodes, vec![("n10", 1, 100), ("n2", 2, 210), ("n3", 1, 0)]);
        let mut only_root = JobSums::default();
        only_root.add(&row("n1", 1, "root", 'S', 0.0, 1));
        assert_eq!(only_root.row("7").user, "root");
        let mut two = JobSums::default();
        two.add(&row("n1", 1, "bob", 'S', 0.0, 1));
        two.add(&row("n1", 2, "alice", 'S', 0.0, 1));
        assert_eq!(two.row("7").user, "alice,bob");
    }

    /// Summing a job from the summary gives what summing its `/ps` rows
    /// gives, GPUs included, for each kind of reader.
    #[test]
    fn job_sums_of_processes_are_those_of_their_rows() {
        use crate::format::gpus::{Gpu, Gpus};
        use crate::format::jobs::JobRef;
        let s = NodeSummary {
            boot_time: 1_700_000_000,
            clk_tck: 100,
            page_size: 4096,
            time: 1_700_100_000.5,
            cpus: 8,
            mem_total_kb: 1 << 20,
            procs: (0..40)
                .map(|i: u32| ProcEntry {
                    pid: 100 + i as i32,
                    ruid: 1000 + i % 3,
                    euid: 1000 + i % 2,
                    user: if i.is_multiple_of(5) {
                        "".into()
                    } else {
                        format!("u{}", i % 2).into()
                    },
                    state: ['R', 'S', 'D'][i as usize % 3],
                    utime: u64::from(i) * 997,
                    stime: u64::from(i) * 13,
                    rss_pages: u64::from(i) * 311,
                    start_ticks: u64::from(i) * 50_000,
                    job: Some(std::sync::Arc::new(JobRef {
                        id: "42".into(),
                        step: None,
                    })),
                    gpus: (!i.is_multiple_of(4)).then(|| {
                        let mut g = Gpus::new(
                            [Gpu::Nvidia(i % 3), Gpu::Render(i % 2)],
                            i.is_multiple_of(7),
                        );
                        g.restricted = i.is_multiple_of(6);
                        Arc::new(g)
                    }),
                    ..ProcEntry::default()
                })
                .collect(),
            ..NodeSummary::default()
        };
        for view in [
            View::admin(),
            View::user(1000, Vec::new()),
            View::user(1001, Vec::new()),
        ] {
            let (mut by_rows, mut by_procs) = (JobSums::default(), JobSums::default());
            for node in ["n1", "n2"] {
                for p in &s.procs {
                    by_rows.add(&ps_row(node, &s, p, &view));
                    by_procs.add_proc(node, &s, p, &view);
                }
            }
            assert_eq!(by_rows.row("42"), by_procs.row("42"));
            assert_eq!(by_rows.node_rows(), by_procs.node_rows());
        }
    }

    #[test]
    fn job_ids_sort_numerically_then_as_text() {
        let mut ids = vec!["10", "9", "b.pbs", "a.pbs", "010"];
        ids.sort_by(|a, b| job_order(a, b));
        assert_eq!(ids, vec!["9", "010", "10", "a.pbs", "b.pbs"]);
    }

    use crate::format::summary::tests::{arb_proc, sample};
    use crate::format::table::Row;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The aggregator writes a process's `/ps` line in place; it must
        /// be the bytes of the row it used to build and print.
        #[test]
        fn written_lines_are_the_rows_lines(
            p in arb_proc(),
            node in prop_oneof![any::<String>(), "[a-z0-9-]{1,12}"],
            boot_time in prop_oneof![any::<u64>(), 0u64..2_000_000_000],
            clk_tck in prop_oneof![any::<u64>(), Just(100u64)],
            time in prop_oneof![any::<f64>(), 0.0..2e9f64],
            cpus in any::<u32>(),
            mem_total_kb in any::<u64>(),
            page_size in prop_oneof![any::<u64>(), Just(4096u64)],
        ) {
            let mut s = sample();
            (s.boot_time, s.clk_tck, s.time, s.cpus) = (boot_time, clk_tck, time, cpus);
            (s.mem_total_kb, s.page_size) = (mem_total_kb, page_size);
            for view in [View::admin(), View::user(p.ruid, Vec::new())] {
                let row = ps_row(&node, &s, &p, &view);
                let mut out = String::new();
                write_ps_line(&mut out, &node, &s, &p, gpus_shown(&view, &p).as_deref());
                prop_assert_eq!(out, row.line());
            }
        }
    }
}

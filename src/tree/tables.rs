//! The rows of the aggregator's tables, `/ps`, `/load` and `/nodes`, from
//! node summaries and the pool's node status. The format (row types,
//! headers, writers, the parser readers use) is [`crate::format::table`].

use std::time::UNIX_EPOCH;

use crate::client::pool::{NodeState, NodeStatus};
use crate::format::summary::{NodeSummary, ProcEntry};
use crate::format::table::{LoadRow, NodeRow, Note, PsRow, Uptime};
use crate::view::View;

/// The `/ps` row for one process of a node's summary, as `view` is shown
/// it (the caller has decided that the view sees the process).
pub fn ps_row(node: &str, s: &NodeSummary, p: &ProcEntry, view: &View) -> PsRow {
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
    PsRow {
        node: node.to_string(),
        pid: p.pid,
        ppid: p.ppid,
        user: if p.user.is_empty() {
            p.euid.to_string()
        } else {
            p.user.clone()
        },
        state: p.state,
        cpu,
        mem,
        rss_kb: rss / 1024,
        vsz_kb: p.vsize / 1024,
        start: start.max(0.0) as u64,
        time: cpu_s as u64,
        threads: p.threads,
        job: p.job.as_ref().map(|j| j.id.clone()),
        step: p.job.as_ref().and_then(|j| j.step.clone()),
        gpu: gpus_shown(view, p),
        command: p.cmdline_display(),
    }
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
    let own = p.ruid == view.uid && p.euid == view.uid && !g.restricted;
    (view.admin || own).then(|| g.display()).flatten()
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
    for (node, why, via) in missing {
        Note::Missing {
            node: node.to_string(),
            reason: why.to_string(),
            via: via.to_vec(),
        }
        .write(out);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::gpus::{Gpu, Gpus};

    /// Users are shown the GPUs of their own plain processes only: not of
    /// a row they see by one uid (a setuid program they run, a root
    /// process switched to their uid), nor of one the agent flagged;
    /// administrators see them all.
    #[test]
    fn gpus_are_shown_where_the_user_could_read_the_descriptors() {
        let held = Gpus::new([Gpu::Nvidia(3)], false);
        let p = |ruid, euid, restricted| ProcEntry {
            ruid,
            euid,
            gpus: Some(Gpus {
                restricted,
                ..held.clone()
            }),
            ..ProcEntry::default()
        };
        let alice = View::user(1000, Vec::new());
        let admin = View::admin();
        let shown = Some("nvidia3".to_string());
        assert_eq!(gpus_shown(&alice, &p(1000, 1000, false)), shown);
        for (r, e, flag) in [(1000, 0, false), (0, 1000, false), (1000, 1000, true)] {
            assert!(alice.sees_process(r, e));
            assert_eq!(gpus_shown(&alice, &p(r, e, flag)), None, "{r} {e} {flag}");
            assert_eq!(gpus_shown(&admin, &p(r, e, flag)), shown);
        }
        let unknown = ProcEntry {
            ruid: 1000,
            euid: 1000,
            ..ProcEntry::default()
        };
        assert_eq!(gpus_shown(&admin, &unknown), None);
    }
}

//! The plain-text form of `gproc top`, for when stdout is not a terminal
//! (scripts, logs, tests): one block per refresh, blocks separated by a
//! blank line, columns separated by spaces so `awk` can cut them.

use std::fmt::Write as _;
use std::time::Duration;

use super::model::{ClusterTables, Filter, SortKey, human_mb};
use gproc::format::table::format_cputime;

/// What the plain form shows and how often.
#[derive(Debug, Clone)]
pub struct Plain {
    /// The aggregator's address, for the title.
    pub server: String,
    /// Time between refreshes.
    pub interval: Duration,
    /// How processes are ranked.
    pub sort: SortKey,
    /// Which users and nodes are shown.
    pub filter: Filter,
    /// Processes listed per refresh.
    pub limit: usize,
}

/// One refresh as text: title, totals, the node table, then the first
/// `limit` processes by `sort`.
pub fn render(server: &str, snap: &ClusterTables, sort: SortKey, limit: usize) -> String {
    let mut out = String::new();
    let when = snap
        .taken
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "gproc top {server} {when} sort {}", sort.label());
    let _ = writeln!(out, "{}", totals_text(snap));
    let _ = writeln!(
        out,
        "NODE STATE LOAD1 LOAD5 LOAD15 CPUS MEM_USED_MB MEM_TOTAL_MB PROCS UPTIME"
    );
    for name in snap.node_names() {
        let state = snap.node(&name).map(|n| n.state.as_str()).unwrap_or("?");
        match snap.load_of(&name) {
            Some(l) => {
                let _ = writeln!(
                    out,
                    "{name} {state} {:.2} {:.2} {:.2} {} {} {} {} {}",
                    l.load[0],
                    l.load[1],
                    l.load[2],
                    l.cpus,
                    l.mem_used_mb,
                    l.mem_total_mb,
                    l.procs,
                    l.uptime
                );
            }
            None => {
                let _ = writeln!(out, "{name} {state} - - - - - - - -");
            }
        }
    }
    for n in &snap.notes {
        let _ = writeln!(out, "# {n}");
    }
    let _ = writeln!(
        out,
        "NODE PID USER %CPU %MEM RSS TIME JOBID STEP GPU COMMAND"
    );
    for p in snap.top(sort, None, limit) {
        let _ = writeln!(
            out,
            "{} {} {} {:.1} {:.1} {} {} {} {} {} {}",
            p.node,
            p.pid,
            p.user,
            p.cpu,
            p.mem,
            p.rss_kb,
            format_cputime(p.time),
            p.job.as_deref().unwrap_or("-"),
            p.step.as_deref().unwrap_or("-"),
            p.gpu.as_deref().unwrap_or("-"),
            p.command
        );
    }
    out
}

/// The totals line.
pub fn totals_text(snap: &ClusterTables) -> String {
    let t = snap.totals();
    let pct = if t.mem_total_mb > 0 {
        t.mem_used_mb as f64 * 100.0 / t.mem_total_mb as f64
    } else {
        0.0
    };
    format!(
        "Nodes: {} up, {} down, {} total   Procs: {}   CPUs: {}   Mem: {} / {} ({pct:.0}%)   Load1: {:.2}",
        t.up,
        t.down,
        t.nodes,
        t.procs,
        t.cpus,
        human_mb(t.mem_used_mb),
        human_mb(t.mem_total_mb),
        t.load1
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::tests::snap;

    #[test]
    fn plain_output_has_totals_nodes_and_ranked_processes() {
        let s = render("agg:5640", &snap(), SortKey::Cpu, 2);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("gproc top agg:5640 "), "{s}");
        assert!(lines[1].starts_with("Nodes: 2 up, 1 down, 3 total"), "{s}");
        assert!(
            s.contains("\nn1 up 4.80 4.85 4.28 16 32000 64000 3 0d+01:00\n"),
            "{s}"
        );
        assert!(s.contains("\nn3 down - - - - - - - -\n"), "{s}");
        assert!(s.contains("\n# missing n3: connection refused\n"), "{s}");
        let procs: Vec<&str> = s
            .lines()
            .skip_while(|l| !l.starts_with("NODE PID"))
            .skip(1)
            .collect();
        assert_eq!(
            procs,
            vec![
                "n1 4242 alice 99.5 12.5 8000000 1:02:03 1234 0 nvidia0,nvidia1 ./sim --big",
                "n1 4243 bob 50.0 0.1 50000 0:30:00 1250 batch - bob-job",
            ]
        );
    }
}

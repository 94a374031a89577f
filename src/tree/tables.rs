//! The aggregator's synthesized tables: `/ps`, `/load` and `/nodes`.
//!
//! Each is plain text, one header line then one line per row, columns
//! separated by spaces; the last column (`COMMAND`, `ERROR`) is the rest of
//! the line and may hold spaces. Lines starting with `#` are notes, such as
//! the nodes missing from a table and why. `gproc ps` parses `/ps` with
//! [`PsRow::parse`], so the format is an interface: change both together.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use crate::format::summary::{NodeSummary, ProcEntry};
use crate::pool::{NodeState, NodeStatus};

/// Most bytes a client reads of one cluster-wide table. `/ps` is about
/// 110 bytes per process: 10,000 nodes of 100 processes make 110 MB, past
/// the client's default limit for a file (64 MiB), and a large cluster
/// with busy nodes makes several times that.
pub const MAX_TABLE_BYTES: u64 = 4 << 30;

/// Header of `/ps`.
pub const PS_HEADER: &str = "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR COMMAND";

/// One process as `/ps` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PsRow {
    /// Node name.
    pub node: String,
    /// Process id on that node.
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Effective user's name.
    pub user: String,
    /// State letter.
    pub state: char,
    /// CPU use over the process's life, percent of one CPU.
    pub cpu: f64,
    /// Resident memory, percent of the node's memory.
    pub mem: f64,
    /// Resident set, KiB.
    pub rss_kb: u64,
    /// Virtual size, KiB.
    pub vsz_kb: u64,
    /// Start time, unix seconds.
    pub start: u64,
    /// CPU time consumed, seconds.
    pub time: u64,
    /// Threads.
    pub threads: i64,
    /// Command line (or `[comm]`), control characters replaced by `?`.
    pub command: String,
}

impl PsRow {
    /// The row for one process of a node's summary.
    pub fn from_proc(node: &str, s: &NodeSummary, p: &ProcEntry) -> Self {
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
        let command: String = p
            .cmdline_display()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        PsRow {
            node: node.to_string(),
            pid: p.pid,
            ppid: p.ppid,
            user: if p.user.is_empty() {
                p.euid.to_string()
            } else {
                p.user.replace(char::is_whitespace, "?")
            },
            state: if p.state.is_whitespace() {
                '?'
            } else {
                p.state
            },
            cpu,
            mem,
            rss_kb: rss / 1024,
            vsz_kb: p.vsize / 1024,
            start: start.max(0.0) as u64,
            time: cpu_s as u64,
            threads: p.threads,
            command: if command.is_empty() {
                "?".into()
            } else {
                command
            },
        }
    }

    /// The row as a `/ps` line (no newline).
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {:.1} {:.1} {} {} {} {} {} {}",
            self.node,
            self.pid,
            self.ppid,
            self.user,
            self.state,
            self.cpu,
            self.mem,
            self.rss_kb,
            self.vsz_kb,
            format_start(self.start),
            format_cputime(self.time),
            self.threads,
            self.command
        )
    }

    /// Parses a `/ps` line; `None` for the header, notes and malformed
    /// lines.
    pub fn parse(line: &str) -> Option<PsRow> {
        if line.starts_with('#') || line.starts_with("NODE ") {
            return None;
        }
        let mut rest = line.trim_start();
        let mut f = Vec::with_capacity(12);
        for _ in 0..12 {
            let end = rest.find(' ')?;
            f.push(&rest[..end]);
            rest = rest[end..].trim_start_matches(' ');
        }
        Some(PsRow {
            node: f[0].to_string(),
            pid: f[1].parse().ok()?,
            ppid: f[2].parse().ok()?,
            user: f[3].to_string(),
            state: f[4].chars().next()?,
            cpu: f[5].parse().ok()?,
            mem: f[6].parse().ok()?,
            rss_kb: f[7].parse().ok()?,
            vsz_kb: f[8].parse().ok()?,
            start: parse_start(f[9])?,
            time: parse_cputime(f[10])?,
            threads: f[11].parse().ok()?,
            command: rest.to_string(),
        })
    }
}

/// RFC 3339 UTC to the second: unambiguous across time zones, sorts as text.
pub fn format_start(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn parse_start(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// CPU time as `H:MM:SS`, hours unbounded (ps's TIME).
pub fn format_cputime(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn parse_cputime(s: &str) -> Option<u64> {
    let mut it = s.split(':');
    let (h, m, sec) = (
        it.next()?.parse::<u64>().ok()?,
        it.next()?.parse::<u64>().ok()?,
        it.next()?.parse::<u64>().ok()?,
    );
    Some(h * 3600 + m * 60 + sec)
}

/// Header of `/load`.
pub const LOAD_HEADER: &str =
    "NODE LOAD1 LOAD5 LOAD15 RUNNING TASKS CPUS MEM_TOTAL_MB MEM_USED_MB MEM_AVAIL_MB PROCS UPTIME";

/// One `/load` line for a node (Supermon's per-node numbers).
pub fn load_line(node: &str, s: &NodeSummary) -> String {
    let avail = s.mem_available_kb.unwrap_or(s.mem_free_kb);
    format!(
        "{node} {:.2} {:.2} {:.2} {} {} {} {} {} {} {} {}",
        s.loadavg.one,
        s.loadavg.five,
        s.loadavg.fifteen,
        s.loadavg.running,
        s.loadavg.total,
        s.cpus,
        s.mem_total_kb / 1024,
        s.mem_total_kb.saturating_sub(avail) / 1024,
        avail / 1024,
        s.procs.len(),
        format_uptime(s.uptime),
    )
}

/// Uptime as `Dd+HH:MM`.
pub fn format_uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}d+{:02}:{:02}", s / 86400, s / 3600 % 24, s / 60 % 60)
}

/// Header of `/nodes`.
pub const NODES_HEADER: &str = "NODE STATE ADDRESS DIALECT RTT_MS LAST_CONTACT ERROR";

/// One `/nodes` line.
pub fn nodes_line(name: &str, address: &str, st: &NodeStatus) -> String {
    let state = match &st.state {
        NodeState::Idle => "idle",
        NodeState::Up => "up",
        NodeState::Down(_) => "down",
    };
    let dialect = st.dialect.map(|d| d.version_string()).unwrap_or("-");
    let rtt = st
        .rtt
        .map(|d| format!("{:.2}", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into());
    let contact = st
        .last_contact
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|| "-".into());
    let err = match &st.state {
        NodeState::Down(r) => r.clone(),
        _ => st.last_error.clone().unwrap_or_else(|| "-".into()),
    };
    let err: String = err
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{name} {state} {address} {dialect} {rtt} {contact} {err}")
}

/// Appends `# missing NODE: reason` notes for nodes left out of a table.
pub fn missing_notes(out: &mut String, missing: &[(String, String)]) {
    for (node, why) in missing {
        let why: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = writeln!(out, "# missing {node}: {why}");
    }
}

/// Appends `# stale NODE: 12.3s old (why)` notes for nodes whose rows
/// come from a copy past its TTL (a `stale` cache rule allowed it).
pub fn stale_notes(out: &mut String, stale: &[(String, std::time::Duration, String)]) {
    for (node, age, why) in stale {
        let why: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let _ = writeln!(out, "# stale {node}: {:.1}s old ({why})", age.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_round_trip_through_their_line() {
        let r = PsRow {
            node: "n01".into(),
            pid: 4242,
            ppid: 1,
            user: "alice".into(),
            state: 'R',
            cpu: 99.5,
            mem: 1.2,
            rss_kb: 51200,
            vsz_kb: 2097152,
            start: 1_795_669_636,
            time: 3723,
            threads: 8,
            command: "./my job  --name x".into(),
        };
        let line = r.line();
        assert!(line.contains(" 1:02:03 "), "{line}");
        assert_eq!(PsRow::parse(&line), Some(r));
        assert_eq!(PsRow::parse(PS_HEADER), None);
        assert_eq!(PsRow::parse("# missing n2: down"), None);
        assert_eq!(PsRow::parse("garbage"), None);
    }
}

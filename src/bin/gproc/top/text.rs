//! The plain-text form of `gproc top`, for when stdout is not a terminal
//! (scripts, logs, tests): one block per refresh, blocks separated by a
//! blank line, columns separated by spaces so `awk` can cut them. The
//! cluster view, or with `--jobs` the jobs table, or with `-j JOBID` one
//! job's processes.

use std::fmt::Write as _;
use std::time::Duration;

use super::Fetched;
use super::model::{
    ClusterTables, Filter, JobList, JobProcs, SortKey, Want, human_mb, job_cmp, job_shown,
};
use gproc::format::rank::RankQuery;
use gproc::format::table::{JobRow, Note, PsRow, Row, format_cputime};

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
    /// Processes listed per refresh in the cluster view (the jobs
    /// table and a job's processes are listed whole).
    pub limit: usize,
    /// The cluster, the jobs or one job.
    pub want: Want,
}

impl Plain {
    /// The rankings a cluster refresh reads ([`super::model::rankings`]).
    pub fn rankings(&self) -> Option<Vec<RankQuery>> {
        super::model::rankings(self.sort, &self.filter, None, self.limit)
    }

    /// One refresh as text, or why there is none to show (no `/jobs` on
    /// this aggregator, the job is not there).
    pub fn render(&self, f: Fetched) -> Result<String, String> {
        match f {
            Fetched::Cluster(s) => Ok(render(
                &self.server,
                &s.filtered(&self.filter),
                self.sort,
                self.limit,
            )),
            Fetched::Jobs(JobList::NotServed) => Err(no_jobs(&self.server)),
            Fetched::Jobs(JobList::Listed { mut rows, notes }) => {
                rows.retain(|r| job_shown(&self.filter, r));
                rows.sort_by(|a, b| job_cmp(self.sort, a, b));
                Ok(render_jobs(&self.server, &rows, &notes, self.sort))
            }
            Fetched::Job(id, JobProcs::Gone) => Err(job_gone(&id)),
            Fetched::Job(id, JobProcs::Listed(t)) => Ok(render_job(
                &self.server,
                &id,
                &t.filtered(&self.filter),
                self.sort,
            )),
        }
    }
}

/// What an aggregator without `/jobs` is told.
pub fn no_jobs(server: &str) -> String {
    format!("the aggregator at {server} has no /jobs: upgrade it to a gproc that serves jobs")
}

/// What a job id that `/job/<id>/ps` does not know is told.
pub fn job_gone(id: &str) -> String {
    format!(
        "job {id}: no such job: it ended, none of its processes is yours to see, \
         or the aggregator has no /job tree"
    )
}

/// The jobs table: title, then one line per job in `/jobs`'s columns,
/// ranked by `sort`, then the notes.
pub fn render_jobs(server: &str, rows: &[JobRow], notes: &[Note], sort: SortKey) -> String {
    let mut out = String::new();
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let _ = writeln!(out, "gproc top {server} {when} jobs sort {}", sort.label());
    let _ = writeln!(out, "Jobs: {}", rows.len());
    // As /jobs writes them (its header and lines), so a script reads both
    // alike.
    let _ = writeln!(out, "{}", gproc::format::table::JOBS_HEADER);
    for r in rows {
        let _ = writeln!(out, "{}", r.line());
    }
    for n in notes {
        let _ = writeln!(out, "# {n}");
    }
    out
}

/// One job's processes across its nodes: title, a summary line, then
/// every process ranked by `sort`, then the notes.
pub fn render_job(server: &str, id: &str, snap: &ClusterTables, sort: SortKey) -> String {
    let mut out = String::new();
    let when = snap
        .taken
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "gproc top {server} {when} job {id} sort {}",
        sort.label()
    );
    let _ = writeln!(out, "{}", job_summary(id, snap));
    write_procs(&mut out, &snap.top(sort, None, usize::MAX));
    for n in &snap.notes {
        let _ = writeln!(out, "# {n}");
    }
    out
}

/// `Job 1234: 3 procs on 2 nodes   %CPU: 179.5   RSS: 7.9G`.
pub fn job_summary(id: &str, snap: &ClusterTables) -> String {
    let mut nodes: Vec<&str> = snap.procs.iter().map(|p| p.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let cpu: f64 = snap.procs.iter().map(|p| p.cpu).sum();
    let rss: u64 = snap.procs.iter().map(|p| p.rss_kb).sum();
    format!(
        "Job {id}: {} procs on {} nodes   %CPU: {cpu:.1}   RSS: {}",
        snap.procs.len(),
        nodes.len(),
        human_mb(rss >> 10)
    )
}

/// The process table's header and rows.
fn write_procs(out: &mut String, procs: &[&PsRow]) {
    let _ = writeln!(
        out,
        "NODE PID USER %CPU %MEM RSS TIME JOBID STEP GPU COMMAND"
    );
    for p in procs {
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
    write_procs(&mut out, &snap.top(sort, None, limit));
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
    use crate::top::model::tests::{JOB_PS, JOBS, snap};

    fn plain(want: Want, users: &[&str]) -> Plain {
        Plain {
            server: "agg:5640".into(),
            interval: Duration::from_secs(1),
            sort: SortKey::Cpu,
            filter: Filter {
                users: users.iter().map(|u| u.to_string()).collect(),
                hosts: None,
            },
            limit: 1,
            want,
        }
    }

    fn body(s: &str) -> Vec<&str> {
        s.lines().skip(2).collect()
    }

    #[test]
    fn plain_jobs_and_one_job() {
        let p = plain(Want::Jobs, &[]);
        let s = p.render(Fetched::Jobs(JobList::parse(JOBS))).unwrap();
        assert!(s.starts_with("gproc top agg:5640 "), "{s}");
        assert_eq!(
            body(&s),
            [
                "JOBID USER PROCS NNODES %CPU RSS STATES START GPUS NODES",
                "1234 alice 130 64 6399.0 104857600 R128,S2 2026-11-26T05:07:16Z 0 n[001-064]",
                "1250 bob 1 1 50.0 50000 R1 2026-11-26T05:07:16Z 0 n1",
                "99 carol 3 2 0.5 200000000 S3 2026-11-26T05:07:16Z 0 n[1-2]",
                "# missing n3: connection refused",
            ],
            "every job, whatever --limit"
        );
        let s = plain(Want::Jobs, &["carol"])
            .render(Fetched::Jobs(JobList::parse(JOBS)))
            .unwrap();
        assert_eq!(s.lines().nth(1), Some("Jobs: 1"), "{s}");
        assert_eq!(
            p.render(Fetched::Jobs(JobList::NotServed)),
            Err(
                "the aggregator at agg:5640 has no /jobs: upgrade it to a gproc that serves jobs"
                    .into()
            )
        );
        let p = plain(Want::Job("1234".into()), &[]);
        let s = p
            .render(Fetched::Job("1234".into(), JobProcs::parse(JOB_PS)))
            .unwrap();
        assert!(s.lines().next().unwrap().contains(" job 1234 "), "{s}");
        assert_eq!(
            s.lines().nth(1),
            Some("Job 1234: 3 procs on 2 nodes   %CPU: 179.5   RSS: 7.7G")
        );
        assert_eq!(
            body(&s),
            [
                "NODE PID USER %CPU %MEM RSS TIME JOBID STEP GPU COMMAND",
                "n1 4242 alice 99.5 12.5 8000000 1:02:03 1234 0 nvidia0,nvidia1 ./sim --big",
                "n2 5151 alice 80.0 1.0 100000 0:10:00 1234 0 - ./sim --rank 2",
                "n2 5152 root 0.0 0.0 3000 0:00:00 1234 extern - sleep 100000000",
            ]
        );
        let e = p
            .render(Fetched::Job("1234".into(), JobProcs::Gone))
            .unwrap_err();
        assert!(e.starts_with("job 1234: no such job"), "{e}");
    }

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

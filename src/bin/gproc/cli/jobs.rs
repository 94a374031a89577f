//! `gproc jobs`: the cluster's batch jobs, read from the aggregator's
//! `/jobs` (one line per job the reader sees: users, processes, nodes,
//! summed %CPU and RSS, states, start), sorted and filtered here.

use std::cmp::Ordering;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use gproc::config::hostlist::natural_cmp;
use gproc::format::table::{JobRow, Note, Table, format_start};
use gproc::net::Address;

use super::ps::{read_aggregator_file, server_address};

/// Options of `gproc jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The aggregator: host:port or unix:/path (default: $GPROC_SERVER, else
    /// the local socket unix:/run/gproc/gproc.sock).
    #[arg(long, value_parser = super::agent::parse_addr)]
    server: Option<Address>,
    /// Only jobs of these users (comma-separated names).
    #[arg(short = 'u', long = "user", value_delimiter = ',')]
    users: Vec<String>,
    /// Only these jobs (comma-separated job ids).
    #[arg(short = 'j', long = "job", value_delimiter = ',')]
    jobs: Vec<String>,
    /// Sort keys, comma-separated; prefix `-` for descending (e.g.
    /// `-cpu,jobid`). Keys: jobid user procs nnodes cpu rss start nodes.
    /// Default: by job id.
    #[arg(short = 's', long, allow_hyphen_values = true)]
    sort: Option<String>,
    /// Print JSON (one array of objects) instead of a table.
    #[arg(long)]
    json: bool,
    /// Omit the header line.
    #[arg(long)]
    no_header: bool,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// A sort key of `gproc jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Job,
    User,
    Procs,
    Nnodes,
    Cpu,
    Rss,
    Start,
    Nodes,
}

impl Key {
    fn parse(s: &str) -> Option<Key> {
        Some(
            match s
                .trim()
                .trim_start_matches('%')
                .to_ascii_lowercase()
                .as_str()
            {
                "jobid" | "job" | "id" => Key::Job,
                "user" => Key::User,
                "procs" | "processes" => Key::Procs,
                "nnodes" => Key::Nnodes,
                "cpu" | "pcpu" => Key::Cpu,
                "rss" | "mem" => Key::Rss,
                "start" => Key::Start,
                "nodes" | "nodelist" => Key::Nodes,
                _ => return None,
            },
        )
    }

    fn cmp(self, a: &JobRow, b: &JobRow) -> Ordering {
        match self {
            Key::Job => gproc::tree::tables::job_order(&a.job, &b.job),
            Key::User => a.user.cmp(&b.user),
            Key::Procs => a.procs.cmp(&b.procs),
            Key::Nnodes => a.nnodes.cmp(&b.nnodes),
            Key::Cpu => a.cpu_tenths.cmp(&b.cpu_tenths),
            Key::Rss => a.rss_kb.cmp(&b.rss_kb),
            Key::Start => a.start.cmp(&b.start),
            Key::Nodes => natural_cmp(&a.nodes, &b.nodes),
        }
    }
}

fn parse_sort(s: &str) -> Result<Vec<(Key, bool)>> {
    super::ps::sort_keys(s, Key::parse, "jobid user procs nnodes cpu rss start nodes")
}

/// The rows `a` keeps, in its order.
fn select(a: &JobsArgs, sort: &[(Key, bool)], mut rows: Vec<JobRow>) -> Vec<JobRow> {
    rows.retain(|r| {
        (a.users.is_empty() || r.user.split(',').any(|u| a.users.iter().any(|w| w == u)))
            && (a.jobs.is_empty() || a.jobs.contains(&r.job))
    });
    rows.sort_by(|x, y| {
        for (k, desc) in sort {
            let o = k.cmp(x, y);
            if o != Ordering::Equal {
                return if *desc { o.reverse() } else { o };
            }
        }
        gproc::tree::tables::job_order(&x.job, &y.job)
    });
    rows
}

/// Aligned columns, numbers to the right; the node list last, unpadded.
fn write_table(out: &mut impl Write, rows: &[JobRow], header: bool) -> std::io::Result<()> {
    const HEAD: [&str; 10] = [
        "JOBID", "USER", "PROCS", "NNODES", "%CPU", "RSS", "STATES", "START", "GPUS", "NODES",
    ];
    const RIGHT: [bool; 10] = [
        false, false, true, true, true, true, false, false, true, false,
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.job.clone(),
                r.user.clone(),
                r.procs.to_string(),
                r.nnodes.to_string(),
                format!("{:.1}", r.cpu()),
                r.rss_kb.to_string(),
                r.states_cell(),
                format_start(r.start),
                format!("{}{}", r.gpus, if r.gpus_truncated { "+" } else { "" }),
                if r.nodes.is_empty() {
                    "-".into()
                } else {
                    r.nodes.clone()
                },
            ]
        })
        .collect();
    let mut width: Vec<usize> = HEAD.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, vals: &[&str]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i == vals.len() - 1 {
                text.push_str(v);
            } else if RIGHT[i] {
                text.push_str(&format!("{v:>w$} ", w = width[i]));
            } else {
                text.push_str(&format!("{v:<w$} ", w = width[i]));
            }
        }
        writeln!(out, "{text}")
    };
    if header {
        line(out, &HEAD)?;
    }
    for row in &cells {
        let v: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &v)?;
    }
    Ok(())
}

/// Runs `gproc jobs`.
pub async fn run(a: JobsArgs) -> Result<ExitCode> {
    let sort = match &a.sort {
        Some(s) => parse_sort(s)?,
        None => Vec::new(),
    };
    let server = server_address(a.server.clone())?;
    let data = read_aggregator_file(&server, "jobs", a.timeout).await?;
    let table = Table::<JobRow>::parse(&String::from_utf8_lossy(&data)).context("reading /jobs")?;
    let mut missing = 0;
    for note in &table.notes {
        eprintln!("gproc jobs: {note}");
        // A node that did not answer may run processes of any job.
        if matches!(note, Note::Missing { .. } | Note::Pending { .. }) {
            missing += 1;
        }
    }
    let rows = select(&a, &sort, table.rows);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let states: serde_json::Map<String, serde_json::Value> = r
                    .states
                    .iter()
                    .map(|(c, n)| (c.to_string(), (*n).into()))
                    .collect();
                serde_json::json!({
                    "job": r.job,
                    "users": r.user.split(',').filter(|u| !u.is_empty()).collect::<Vec<_>>(),
                    "procs": r.procs, "nnodes": r.nnodes, "cpu": r.cpu(),
                    "rss_kb": r.rss_kb, "states": states, "start": r.start,
                    "gpus": r.gpus, "gpus_truncated": r.gpus_truncated,
                    "nodes": r.nodes,
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &rows, !a.no_header)?;
    }
    out.flush()?;
    Ok(if missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: JobsArgs,
    }

    fn job(id: &str, user: &str, procs: u64, cpu: u64) -> JobRow {
        JobRow {
            job: id.into(),
            user: user.into(),
            procs,
            nnodes: 1,
            cpu_tenths: cpu,
            rss_kb: procs * 10,
            states: vec![('R', procs)],
            start: 0,
            gpus: 0,
            gpus_truncated: false,
            nodes: "n1".into(),
        }
    }

    #[test]
    fn jobs_are_filtered_and_sorted() {
        let rows = vec![
            job("10", "alice", 5, 30),
            job("9", "bob,carol", 2, 900),
            job("a.pbs", "alice", 1, 10),
        ];
        let args = |v: &[&str]| {
            T::try_parse_from(std::iter::once("t").chain(v.iter().copied()))
                .unwrap()
                .a
        };
        let ids = |a: &JobsArgs| {
            let sort = a
                .sort
                .as_deref()
                .map(|s| parse_sort(s).unwrap())
                .unwrap_or_default();
            select(a, &sort, rows.clone())
                .into_iter()
                .map(|r| r.job)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&args(&[])), ["9", "10", "a.pbs"]);
        assert_eq!(ids(&args(&["-s", "-cpu"])), ["9", "10", "a.pbs"]);
        assert_eq!(ids(&args(&["--sort", "-procs"])), ["10", "9", "a.pbs"]);
        assert_eq!(ids(&args(&["-u", "alice"])), ["10", "a.pbs"]);
        assert_eq!(ids(&args(&["-u", "carol"])), ["9"]);
        assert_eq!(ids(&args(&["-j", "a.pbs,10"])), ["10", "a.pbs"]);
        assert!(parse_sort("bogus").is_err());
    }

    #[test]
    fn the_table_aligns_and_keeps_the_nodes_last() {
        let mut out = Vec::new();
        write_table(&mut out, &[job("9", "bob", 2, 15)], true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "JOBID USER PROCS NNODES %CPU RSS STATES START                GPUS NODES\n\
             9     bob      2      1  1.5  20 R2     1970-01-01T00:00:00Z    0 n1\n"
        );
    }
}

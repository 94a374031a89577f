//! `gproc bench tables`: the aggregator's CPU per node for a cold `/ps`,
//! without the network: N simulated nodes' summary files (the bytes an
//! agent serves) parsed and rendered into `/ps` in this process, split by
//! stage, against the floor of copying the same bytes.
//!
//! What a cold `/ps` costs beyond this is the 9P round trips to every node
//! (`gproc bench cluster` measures the whole); what this isolates is the
//! part that grows with the process count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use gproc::format::summary::{self, NodeSummary};
use gproc::format::table::Row;
use gproc::sim::{Sim, SimNodeFs, SimOptions};
use gproc::tree::tables;

use super::print_table;

/// Settings of the tables benchmark.
#[derive(Debug, Clone)]
pub struct TablesBench {
    /// Simulated nodes.
    pub nodes: usize,
    /// Processes per node.
    pub procs_per_node: usize,
    /// Passes of each stage; the median is reported.
    pub rounds: usize,
}

/// The median of `rounds` runs of `f`.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut v: Vec<Duration> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

/// Runs the benchmark and prints its table.
pub fn run(b: TablesBench) -> Result<()> {
    let sim = Arc::new(
        Sim::new(SimOptions {
            nodes: b.nodes,
            procs_per_node: b.procs_per_node,
            ..SimOptions::default()
        })
        .context("cannot build the simulated cluster")?,
    );
    eprintln!("rendering {} simulated nodes' summaries...", b.nodes);
    let files: Vec<(String, Vec<u8>)> = (0..b.nodes)
        .map(|i| {
            let fs = SimNodeFs::new(sim.clone(), i);
            (fs.hostname(), fs.summary().encode())
        })
        .collect();
    let bytes: usize = files.iter().map(|(_, f)| f.len()).sum();
    let parsed: Vec<(String, NodeSummary)> = files
        .iter()
        .map(|(n, f)| Ok((n.clone(), summary::parse(f)?)))
        .collect::<Result<_, summary::SummaryError>>()
        .context("a simulated summary does not parse")?;
    let procs: usize = parsed.iter().map(|(_, s)| s.procs.len()).sum();

    let admin = gproc::view::View::admin();
    let copy = median(b.rounds, || {
        let mut out = Vec::with_capacity(bytes);
        for (_, f) in &files {
            out.extend_from_slice(f);
        }
        std::hint::black_box(out);
    });
    let parse = median(b.rounds, || {
        for (_, f) in &files {
            std::hint::black_box(summary::parse(f).ok());
        }
    });
    let mut table_bytes = 0;
    let rows = median(b.rounds, || {
        let mut out = String::new();
        for (name, s) in &parsed {
            for p in &s.procs {
                out.push_str(&tables::ps_row(name, s, p, &admin).line());
                out.push('\n');
            }
        }
        std::hint::black_box(out);
    });
    let render = median(b.rounds, || {
        let mut out = String::new();
        for (name, s) in &parsed {
            for p in &s.procs {
                tables::write_ps_line(
                    &mut out,
                    name,
                    s,
                    p,
                    tables::gpus_shown(&admin, p).as_deref(),
                );
                out.push('\n');
            }
        }
        table_bytes = out.len();
        std::hint::black_box(out);
    });

    let per_node = |d: Duration| d.as_secs_f64() * 1e6 / b.nodes.max(1) as f64;
    let per_proc = |d: Duration| d.as_secs_f64() * 1e9 / procs.max(1) as f64;
    let ratio = |d: Duration| d.as_secs_f64() / copy.as_secs_f64().max(1e-9);
    let row = |stage: &str, d: Duration| {
        vec![
            stage.to_string(),
            format!("{:.1}", d.as_secs_f64() * 1e3),
            format!("{:.1}", per_node(d)),
            format!("{:.0}", per_proc(d)),
            format!("{:.1}x", ratio(d)),
        ]
    };
    println!(
        "\nCold /ps work per node, no network: {} nodes x {} processes, {:.1} MB of \
         summaries, {:.1} MB of table; median of {} passes:\n",
        b.nodes,
        b.procs_per_node,
        bytes as f64 / 1e6,
        table_bytes as f64 / 1e6,
        b.rounds
    );
    print_table(
        &["stage", "ms", "us/node", "ns/process", "/ copy"],
        &[
            row("copy the summaries (floor)", copy),
            row("parse", parse),
            row("render /ps through rows (a PsRow each)", rows),
            row("render /ps straight (the aggregator's)", render),
            row("parse + render", parse + render),
        ],
    );
    Ok(())
}

//! Each node's `/ps` lines, written once per summary and shared by every
//! view and every table built from that summary: a view's `/ps` (and its
//! jobs' `ps`) copies the lines of the processes it sees. A
//! cold `/ps` then costs one write of each process's line, spread over the
//! cores; a hundred users reading `/ps` cost a hundred copies, not a
//! hundred renderings.
//!
//! Lines are kept as long as the summary they were written from is alive
//! (held by the cache); a summary replaced or evicted leaves its lines to
//! the next sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::format::gpus::Gpus;
use crate::format::summary::NodeSummary;
use crate::sys;
use crate::view::View;

use super::tables;

/// Bytes of a `/ps` line before its command and node name, a little
/// more than most take (a sizing hint only).
const ROW_CELLS_BYTES: usize = 112;

/// A node's `/ps` lines, each with the uids that decide who sees it.
///
/// A line is written as an administrator sees it. Where that shows GPUs
/// a user may not be shown ([`tables::gpus_shown`]), the line without
/// them is kept too, and a user is given the one their uid allows.
pub(super) struct NodeRows {
    /// Every line, each ending in `\n`.
    text: Bytes,
    /// Per line: where it ends in `text`, its (real, effective) uid, and
    /// for a line with GPUs, the user shown them (if any) and where its
    /// line without them is in `withheld`.
    lines: Vec<Line>,
    /// The lines without their GPUs, each ending in `\n`.
    withheld: String,
}

#[derive(Clone, Copy)]
struct Line {
    end: usize,
    ruid: u32,
    euid: u32,
    /// For a line with GPUs: the one user also shown them, and the range
    /// of its line without them in `withheld`.
    gpus: Option<(Option<u32>, usize, usize)>,
}

impl NodeRows {
    /// The lines of `s`'s processes on node `name`.
    pub(super) fn render(name: &str, s: &NodeSummary) -> Self {
        let admin = View::admin();
        // Sized once: a line is its cells (under 100 bytes but for long
        // names) and its command, about as long as its tokens in the
        // summary. Growing the string instead copies it and touches fresh
        // pages at every doubling.
        let estimate: usize = s
            .procs
            .iter()
            .map(|p| {
                ROW_CELLS_BYTES
                    + name.len()
                    + p.cmdline.bytes_len().max(p.comm.as_escaped().len() + 2)
            })
            .sum();
        let mut text = String::with_capacity(estimate);
        let mut withheld = String::new();
        let mut lines = Vec::with_capacity(s.procs.len());
        // Processes of a job on a GPU node hold the same devices, one
        // after another: their cell is written once.
        let mut last: Option<(&Gpus, Option<String>)> = None;
        for p in &s.procs {
            if let Some(g) = &p.gpus
                && last.as_ref().is_none_or(|(l, _)| **l != **g)
            {
                last = Some((&**g, tables::gpus_shown(&admin, p)));
            }
            let shown = match p.gpus {
                Some(_) => last.as_ref().and_then(|(_, cell)| cell.as_deref()),
                None => None,
            };
            tables::write_ps_line(&mut text, name, s, p, shown);
            text.push('\n');
            let gpus = shown.map(|_| {
                let owner = tables::gpus_owner(p);
                let start = withheld.len();
                tables::write_ps_line(&mut withheld, name, s, p, None);
                withheld.push('\n');
                (owner, start, withheld.len())
            });
            lines.push(Line {
                end: text.len(),
                ruid: p.ruid,
                euid: p.euid,
                gpus,
            });
        }
        Self {
            text: Bytes::from(text),
            lines,
            withheld,
        }
    }

    /// The line of the summary's `i`th process as `view` is shown it
    /// (with its `\n`), if it has one; whether `view` sees the process is
    /// the caller's to decide.
    pub(super) fn line(&self, i: usize, view: &View) -> Option<&[u8]> {
        let l = self.lines.get(i)?;
        if let Some((owner, start, end)) = l.gpus
            && !view.admin
            && owner != Some(view.uid)
        {
            return self.withheld.as_bytes().get(start..end);
        }
        let start = i.checked_sub(1).map_or(0, |j| self.lines[j].end);
        self.text.get(start..l.end)
    }

    /// Every line as an administrator sees it, in order: what an
    /// administrator's `/ps` shares instead of copying the lines.
    pub(super) fn all(&self) -> Bytes {
        self.text.clone()
    }

    /// Bytes of the lines `view` may see (to size the table once).
    pub(super) fn len_for(&self, view: &View) -> usize {
        if view.admin {
            return self.text.len();
        }
        let mut start = 0;
        let mut n = 0;
        for l in &self.lines {
            if view.sees_process(l.ruid, l.euid) {
                n += l.end - start;
            }
            start = l.end;
        }
        n
    }
}

/// One summary's lines, with what they were written from.
struct Entry {
    summary: Weak<NodeSummary>,
    name: String,
    rows: Arc<NodeRows>,
}

/// The lines of the summaries alive, by summary.
#[derive(Default)]
pub(super) struct RowsCache {
    by_summary: Mutex<HashMap<usize, Entry>>,
}

/// The key of a summary: its address, which is unique while it is alive
/// (the entry's `Weak` tells a reused address from the same summary).
fn key(s: &Arc<NodeSummary>) -> usize {
    Arc::as_ptr(s) as usize
}

impl RowsCache {
    /// The lines of every `(name, summary)`, written where not already,
    /// the missing ones over the machine's cores.
    pub(super) async fn rows_for(
        &self,
        nodes: &[(String, Arc<NodeSummary>)],
    ) -> Vec<Arc<NodeRows>> {
        let mut found: Vec<Option<Arc<NodeRows>>> = {
            let map = sys::lock(&self.by_summary);
            nodes
                .iter()
                .map(|(name, s)| {
                    map.get(&key(s))
                        .filter(|e| {
                            e.name == *name
                                && e.summary.upgrade().is_some_and(|a| Arc::ptr_eq(&a, s))
                        })
                        .map(|e| e.rows.clone())
                })
                .collect()
        };
        let todo: Vec<usize> = (0..nodes.len()).filter(|&i| found[i].is_none()).collect();
        if !todo.is_empty() {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let per = todo.len().div_ceil(threads).max(64);
            let mut tasks = Vec::new();
            for chunk in todo.chunks(per) {
                let work: Vec<(usize, String, Arc<NodeSummary>)> = chunk
                    .iter()
                    .map(|&i| (i, nodes[i].0.clone(), nodes[i].1.clone()))
                    .collect();
                tasks.push(tokio::task::spawn_blocking(move || {
                    work.into_iter()
                        .map(|(i, name, s)| {
                            let rows = Arc::new(NodeRows::render(&name, &s));
                            (i, name, s, rows)
                        })
                        .collect::<Vec<_>>()
                }));
            }
            let mut done = Vec::with_capacity(todo.len());
            for t in tasks {
                // A render never panics; if one did, its nodes are written
                // below instead of lost.
                if let Ok(v) = t.await {
                    done.extend(v);
                }
            }
            let mut map = sys::lock(&self.by_summary);
            // Lines of summaries gone since: dropped with each batch.
            map.retain(|_, e| e.summary.strong_count() > 0);
            for (i, name, s, rows) in done {
                map.insert(
                    key(&s),
                    Entry {
                        summary: Arc::downgrade(&s),
                        name,
                        rows: rows.clone(),
                    },
                );
                found[i] = Some(rows);
            }
        }
        found
            .into_iter()
            .zip(nodes)
            .map(|(r, (name, s))| r.unwrap_or_else(|| Arc::new(NodeRows::render(name, s))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::summary::tests::{arb_proc, sample};
    use crate::format::table::Row;
    use proptest::prelude::*;

    proptest! {
        /// A node's `/ps` lines built from a summary refreshed by a delta
        /// are those built from the same summary read whole, for every
        /// reader (issue 13: tables byte-identical whichever path).
        #[test]
        fn rows_from_a_delta_are_rows_from_a_whole_read(
            (base, new) in crate::format::delta::tests::churn(),
            other in any::<u32>(),
        ) {
            use crate::format::{delta, summary};
            use crate::format::delta::tests::{served, tok};
            let (b, n) = (served(&base, 1), served(&new, 2));
            let d = delta::diff(&b, &n).unwrap();
            let (_, via) = delta::apply(&summary::parse(&b).unwrap(), tok(1), &d).unwrap();
            let whole = summary::parse(&n).unwrap();
            let (x, y) = (NodeRows::render("n1", &via), NodeRows::render("n1", &whole));
            for view in [View::admin(), View::user(other, Vec::new())] {
                for i in 0..whole.procs.len() + 1 {
                    prop_assert_eq!(x.line(i, &view), y.line(i, &view));
                }
                prop_assert_eq!(x.len_for(&view), y.len_for(&view));
            }
            for p in &whole.procs {
                let view = View::user(p.ruid, Vec::new());
                prop_assert_eq!(x.len_for(&view), y.len_for(&view));
            }
        }

        /// Whoever reads it, a node's kept line is the row that reader
        /// would be shown, GPUs included or withheld.
        #[test]
        fn each_reader_gets_their_own_rows_line(
            procs in proptest::collection::vec(arb_proc(), 1..6),
            other in any::<u32>(),
        ) {
            let mut s = sample();
            s.procs = procs;
            let rows = NodeRows::render("n1", &s);
            for (i, p) in s.procs.iter().enumerate() {
                for view in [
                    View::admin(),
                    View::user(p.ruid, Vec::new()),
                    View::user(p.euid, Vec::new()),
                    View::user(other, Vec::new()),
                ] {
                    let want = format!("{}\n", tables::ps_row("n1", &s, p, &view).line());
                    prop_assert_eq!(rows.line(i, &view), Some(want.as_bytes()));
                }
            }
            // All of them at once: an administrator's lines, in order.
            let admin = View::admin();
            let each: Vec<u8> = (0..s.procs.len())
                .flat_map(|i| rows.line(i, &admin).unwrap_or_default().to_vec())
                .collect();
            prop_assert_eq!(&rows.all()[..], &each[..]);
        }
    }
}

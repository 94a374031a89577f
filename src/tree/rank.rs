//! `/top/<query>`: the first rows of a view's `/ps` ranked by %CPU or
//! memory ([`crate::format::rank`]). A live view shows forty rows of a
//! cluster's million; ranked here, only those are written and sent, and
//! no node's `/ps` lines need writing at all.
//!
//! Rows are those `/ps` has for the same reader, byte for byte: the same
//! summaries (through the cache), the same visibility, the same GPU cell.
//! Rendered per open and kept by no cache: ranking a million processes
//! costs a few milliseconds, less than a table's entry would.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use bytes::Bytes;

use crate::config::Hostlist;
use crate::config::hostlist::natural_cmp;
use crate::format::rank::{RankKey, RankQuery, count_line};
use crate::format::table::{PS_HEADER, cell_text};
use crate::proto::errno;
use crate::server::{FsError, FsResult};
use crate::view::View;

use super::Tree;
use super::tables;

/// One ranked process: the order key (smallest first), then where it is.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    key: (Reverse<u64>, Reverse<u64>, usize, i32),
    node: usize,
    proc: usize,
}

impl Tree {
    /// The ranking `q` of `view`'s processes.
    ///
    /// # Errors
    /// EINVAL when the query's hostlist does not parse.
    pub(super) async fn render_ranked(&self, view: &View, q: &RankQuery) -> FsResult<Bytes> {
        let hosts =
            match &q.hosts {
                Some(h) => Some(Hostlist::parse(h).map_err(|e| {
                    FsError::new(errno::EINVAL).with(format!("/top: hosts={h}: {e}"))
                })?),
                None => None,
            };
        let g = self.gathered(view).await;
        // The nodes that pass, and their rank among themselves for ties
        // (natural order of names, as `gproc top` sorts).
        let nodes: Vec<usize> = (0..g.ok.len())
            .filter(|&i| {
                let (m, s) = &g.ok[i];
                s.has_linux_facts() && hosts.as_ref().is_none_or(|h| h.contains(&m.name))
            })
            .collect();
        let mut by_name = nodes.clone();
        by_name.sort_by(|&a, &b| natural_cmp(&g.ok[a].0.name, &g.ok[b].0.name));
        let mut name_rank = vec![0; g.ok.len()];
        for (r, &i) in by_name.iter().enumerate() {
            name_rank[i] = r;
        }
        // The best `q.rows`, the worst on top of the heap.
        let mut heap: BinaryHeap<Ranked> = BinaryHeap::with_capacity(q.rows.min(4096) + 1);
        let mut matched = 0usize;
        for &i in &nodes {
            let s = &g.ok[i].1;
            for (j, p) in s.procs.iter().enumerate() {
                if !view.sees_process(p.ruid, p.euid) {
                    continue;
                }
                if !q.users.is_empty() {
                    let uid;
                    let user = if p.user.is_empty() {
                        uid = p.euid.to_string();
                        uid.as_str()
                    } else {
                        &p.user
                    };
                    let user = cell_text(user);
                    if !q.users.iter().any(|u| *u == user) {
                        continue;
                    }
                }
                matched += 1;
                let (cpu, rss) = tables::rank_numbers(s, p);
                let (first, second) = match q.key {
                    RankKey::Cpu => (cpu, rss),
                    RankKey::Mem => (rss, cpu),
                };
                let r = Ranked {
                    key: (Reverse(first), Reverse(second), name_rank[i], p.pid),
                    node: i,
                    proc: j,
                };
                if heap.len() < q.rows {
                    heap.push(r);
                } else if heap
                    .peek()
                    .is_some_and(|worst| r.cmp(worst) == Ordering::Less)
                {
                    heap.pop();
                    heap.push(r);
                }
            }
        }
        let mut out = String::with_capacity(PS_HEADER.len() + 160 * heap.len() + 256);
        out.push_str(PS_HEADER);
        out.push('\n');
        for r in heap.into_sorted_vec() {
            let (m, s) = &g.ok[r.node];
            let p = &s.procs[r.proc];
            let gpu = tables::gpus_shown(view, p);
            tables::write_ps_line(&mut out, &m.name, s, p, gpu.as_deref());
            out.push('\n');
        }
        out.push_str(&count_line(matched));
        g.notes(&mut out);
        Ok(Bytes::from(out))
    }
}

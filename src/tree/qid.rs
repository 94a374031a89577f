//! The tree's `qid.path` scheme: unique and stable across the tree.
//!
//! The top two bits say which part of the namespace a file is in
//! (synthesized, node tree, or the `/pid` aliases, which Linux must not see
//! as the same directories), the next 22 bits are the node's index at this
//! level (unique among every node this aggregator serves, its own and
//! those below lower aggregators: about four million), the low 40 bits the
//! node's own qid.path. A node's own qids larger than 40 bits (rare: Linux
//! procfs inode numbers are 32-bit) are folded into 40. For a node below a
//! lower gproc aggregator, whose qids have this same layout, the low 40
//! bits are taken as they are: they are the node's own, already mapped
//! once at the bottom, so at every level of a hierarchy a file's qid is
//! its node's index at that level beside its own 40 bits, never a hash of
//! a hash. Synthesized files have small constants.
//!
//! The job tree (`/job/<id>/...`) has two parts. Its own directories and
//! files (`/job/<id>`, its `ps`, `nodes` and `ctl`, and `/job/<id>/<node>`)
//! are synthesized: bit 61 set, a 3-bit part, the job's number (32 bits,
//! [`JobNumbers`]) and the node's index (22 bits). The node files under
//! `/job/<id>/<node>/<pid>/` have the node tree's layout under namespace
//! bits of their own ([`KIND_JOB`]): like the `/pid` aliases they must not
//! be the directories of `/<node>/<pid>` to Linux, and a process is in one
//! job at a time, so its node and own qid make them unique.

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::{Qid, qt};

/// The namespace bits of a node's own files (`/NODE/...`).
pub(super) const KIND_NODE: u64 = 1;
/// The namespace bits of the `/pid/PID@NODE` aliases.
pub(super) const KIND_ALIAS: u64 = 2;
/// The namespace bits of node files reached through `/job/<id>/<node>/`.
pub(super) const KIND_JOB: u64 = 3;
/// The job tree's synthesized qids: bit 61 of the synthesized namespace.
const JOB_AREA: u64 = 1 << 61;
const LOW40: u64 = (1 << 40) - 1;

/// The root directory's qid.path.
pub(super) const ROOT_QID: u64 = 1;
/// `/pid`'s qid.path.
pub(super) const PIDDIR_QID: u64 = 2;
/// `/.gproc`'s qid.path.
pub(super) const GPROC_DIR_QID: u64 = 100;
/// `/job`'s qid.path.
pub(super) const JOBDIR_QID: u64 = 101;
/// `/top`'s qid.path.
pub(super) const TOP_DIR_QID: u64 = 102;
/// The rankings under `/top`: bit 60 of the synthesized namespace, below
/// it a hash of the query's canonical name.
const TOP_AREA: u64 = 1 << 60;

/// The qid of the ranking `/top/<canonical>` (the same query by any
/// spelling has one qid).
pub(super) fn top_qid(canonical: &str) -> Qid {
    // FNV-1a: stable across builds and runs, as a qid must be.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    synth_qid(TOP_AREA | (h & (TOP_AREA - 1)), false)
}

/// The first synthesized file's qid.path; the others follow.
pub(super) const FIRST_FILE_QID: u64 = 3;

/// Which of a job's synthesized files or directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobPart {
    /// `/job/<id>`.
    Dir = 1,
    /// `/job/<id>/ps`.
    Ps = 2,
    /// `/job/<id>/nodes`.
    Nodes = 3,
    /// `/job/<id>/ctl`.
    Ctl = 4,
    /// `/job/<id>/<node>`.
    Node = 5,
}

/// The qid of a job's `part` (of node `node` for [`JobPart::Node`], else
/// 0), the job numbered `job` by [`JobNumbers`].
pub(super) fn job_qid(part: JobPart, job: u32, node: u32) -> Qid {
    Qid {
        ty: if matches!(part, JobPart::Dir | JobPart::Node) {
            qt::DIR
        } else {
            qt::FILE
        },
        version: 0,
        path: JOB_AREA | (part as u64) << 56 | u64::from(job) << 22 | (u64::from(node) & 0x3F_FFFF),
    }
}

/// Most job ids that are not plain numbers remembered at once; past it the
/// memory is cleared (the serials go on, so no two ids ever share one).
const MAX_NAMED_JOBS: usize = 1 << 16;

/// Numbers for job ids, for their qids: a Slurm id (a decimal number below
/// 2^31, written without leading zeros) is its own number; any other id
/// (`12345.pbs01`, `007`) gets a serial with the top bit set, the same one
/// for as long as it is remembered.
#[derive(Debug, Default)]
pub(super) struct JobNumbers {
    named: HashMap<Arc<str>, u32>,
    next: u32,
}

impl JobNumbers {
    /// The number of job `id`.
    pub(super) fn number(&mut self, id: &str) -> u32 {
        if let Some(n) = plain_number(id) {
            return n;
        }
        if let Some(n) = self.named.get(id) {
            return *n;
        }
        if self.named.len() >= MAX_NAMED_JOBS {
            self.named.clear();
        }
        let n = 1 << 31 | (self.next & 0x7FFF_FFFF);
        self.next = self.next.wrapping_add(1);
        self.named.insert(Arc::from(id), n);
        n
    }
}

/// `id` as a number below 2^31 when it is one written plainly.
fn plain_number(id: &str) -> Option<u32> {
    if id.is_empty() || (id.len() > 1 && id.starts_with('0')) {
        return None;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse::<u32>().ok().filter(|n| *n < 1 << 31)
}

/// The qid of a synthesized file or directory.
pub(super) fn synth_qid(n: u64, dir: bool) -> Qid {
    Qid {
        ty: if dir { qt::DIR } else { qt::FILE },
        version: 0,
        path: n,
    }
}

/// Maps a node's qid into the merged tree's qid space; `below`: the qid
/// is a lower gproc aggregator's, whose low 40 bits are the node's own.
pub(super) fn map_qid(kind: u64, node: u32, q: Qid, below: bool) -> Qid {
    let low = if below || q.path <= LOW40 {
        q.path & LOW40
    } else {
        fold40(q.path)
    };
    Qid {
        ty: q.ty,
        version: 0,
        path: kind << 62 | (node as u64 & 0x3F_FFFF) << 40 | low,
    }
}

/// Folds 64 bits into 40 (a node whose own qid.path is that large).
fn fold40(p: u64) -> u64 {
    let mut z = p.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 29;
    // Never 0: 0 is the node root's low bits.
    (z & LOW40).max(1)
}

/// The qid of a node's root directory, independent of the node being up.
pub(super) fn node_root_qid(kind: u64, node: u32) -> Qid {
    map_qid(
        kind,
        node,
        Qid {
            ty: qt::DIR,
            version: 0,
            path: 0,
        },
        false,
    )
}

/// The qid of `/pid/PID@NODE` (the directory of process `pid`).
pub(super) fn alias_qid(node: u32, pid: i32) -> Qid {
    map_qid(
        KIND_ALIAS,
        node,
        Qid {
            ty: qt::DIR,
            version: 0,
            path: 0x8000_0000 + pid as u64,
        },
        false,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    /// One node's index at each of three levels (rack, middle, top),
    /// distinct per level, each below the 22-bit bound.
    fn indexes(n: usize) -> impl Strategy<Value = Vec<[u32; 3]>> {
        let level = move || {
            proptest::collection::btree_set(1u32..(1 << 22), n)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                .prop_shuffle()
        };
        (level(), level(), level()).prop_map(|(a, b, c)| {
            a.into_iter()
                .zip(b)
                .zip(c)
                .map(|((a, b), c)| [a, b, c])
                .collect()
        })
    }

    proptest! {
        /// Across three levels, every node file's qid at the top is
        /// unique: the node's own 40 bits under its top index, never a
        /// hash; and no node file's qid is an alias's or a synthesized
        /// file's.
        #[test]
        fn qids_stay_unique_through_three_levels(
            (idx, files) in (1usize..40).prop_flat_map(|n| (
                indexes(n),
                proptest::collection::vec(
                    proptest::collection::btree_set(0u64..(1 << 40), 1..20), n),
            )),
            pids in proptest::collection::btree_set(1i32..4_194_304, 1..20),
        ) {
            let mut seen: HashMap<u64, (usize, u64)> = HashMap::new();
            let mut aliases = HashSet::new();
            for (node, own) in files.iter().enumerate() {
                let [rack, mid, top] = idx[node];
                for &p in own.iter().chain(std::iter::once(&0)) {
                    let q = Qid { ty: 0, version: 0, path: p };
                    let at_rack = map_qid(KIND_NODE, rack, q, false);
                    let at_mid = map_qid(KIND_NODE, mid, at_rack, true);
                    let at_top = map_qid(KIND_NODE, top, at_mid, true);
                    if let Some(prev) = seen.insert(at_top.path, (node, p)) {
                        prop_assert_eq!(prev, (node, p), "two files share qid {:#x}", at_top.path);
                    }
                    prop_assert!(at_top.path > GPROC_DIR_QID);
                }
                for &pid in &pids {
                    prop_assert!(aliases.insert(alias_qid(top, pid).path));
                }
            }
            let files: BTreeSet<u64> = seen.keys().copied().collect();
            prop_assert!(aliases.iter().all(|a| !files.contains(a)));
        }

        /// Every job's synthesized qids are unique (per job, part and
        /// node), none is another namespace's, and a process's files under
        /// its job are not its files under its node nor its alias.
        #[test]
        fn job_qids_are_unique_and_apart(
            ids in proptest::collection::btree_set(
                prop_oneof![
                    (0u64..(1 << 33)).prop_map(|n| n.to_string()),
                    "[0-9]{1,4}\\.pbs[0-9]",
                    "0[0-9]{1,3}",
                ],
                1..30,
            ),
            nodes in proptest::collection::btree_set(0u32..(1 << 22), 1..6),
            own in 0u64..(1 << 40),
        ) {
            let mut numbers = JobNumbers::default();
            let nums: Vec<u32> = ids.iter().map(|i| numbers.number(i)).collect();
            let distinct: BTreeSet<u32> = nums.iter().copied().collect();
            prop_assert_eq!(distinct.len(), ids.len(), "two ids share a number");
            let again: Vec<u32> = ids.iter().map(|i| numbers.number(i)).collect();
            prop_assert_eq!(&again, &nums, "numbers are stable");
            let mut seen = HashSet::new();
            for &j in &nums {
                for part in [JobPart::Dir, JobPart::Ps, JobPart::Nodes, JobPart::Ctl] {
                    prop_assert!(seen.insert(job_qid(part, j, 0).path));
                }
                for &n in &nodes {
                    prop_assert!(seen.insert(job_qid(JobPart::Node, j, n).path));
                }
            }
            let fixed = [ROOT_QID, PIDDIR_QID, GPROC_DIR_QID, JOBDIR_QID];
            for &n in &nodes {
                let q = Qid { ty: qt::DIR, version: 0, path: own };
                let under_job = map_qid(KIND_JOB, n, q, false).path;
                prop_assert!(seen.insert(under_job));
                prop_assert!(seen.insert(map_qid(KIND_NODE, n, q, false).path));
                prop_assert!(seen.insert(map_qid(KIND_ALIAS, n, q, false).path));
                prop_assert!(seen.insert(node_root_qid(KIND_NODE, n).path));
            }
            for f in fixed.into_iter().chain(FIRST_FILE_QID..FIRST_FILE_QID + 16) {
                prop_assert!(!seen.contains(&f));
            }
        }
    }

    #[test]
    fn job_numbers() {
        let mut n = JobNumbers::default();
        assert_eq!(n.number("42"), 42);
        assert_eq!(n.number("0"), 0);
        let pbs = n.number("12345.pbs01");
        assert!(pbs >= 1 << 31);
        assert_eq!(n.number("12345.pbs01"), pbs);
        assert_ne!(n.number("042"), 42, "not the number 42's");
        assert!(n.number("4294967296") >= 1 << 31, "too large: a serial");
        assert!(n.number("2147483648") >= 1 << 31);
        assert_eq!(n.number("2147483647"), 2_147_483_647);
    }
}

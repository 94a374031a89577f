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

use crate::proto::{Qid, qt};

/// The namespace bits of a node's own files (`/NODE/...`).
pub(super) const KIND_NODE: u64 = 1;
/// The namespace bits of the `/pid/PID@NODE` aliases.
pub(super) const KIND_ALIAS: u64 = 2;
const LOW40: u64 = (1 << 40) - 1;

/// The root directory's qid.path.
pub(super) const ROOT_QID: u64 = 1;
/// `/pid`'s qid.path.
pub(super) const PIDDIR_QID: u64 = 2;
/// `/.gproc`'s qid.path.
pub(super) const GPROC_DIR_QID: u64 = 100;
/// The first synthesized file's qid.path; the others follow.
pub(super) const FIRST_FILE_QID: u64 = 3;

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
    }
}

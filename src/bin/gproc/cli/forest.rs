//! `gproc ps --forest` and `--strays`: pure functions over `/ps` rows.
//!
//! The forest is each node's process tree as its PPID column links it,
//! like `ps --forest`: a process follows its parent, one level deeper. A
//! process whose parent is not among the rows (filtered out, or gone) is
//! a root; so is one caught in a PPID cycle (which no kernel makes, but a
//! node may send), so every row is shown exactly once.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use gproc::config::hostlist::natural_cmp;
use gproc::format::table::PsRow;

/// `rows` in forest order, each with its depth (0 for a root). Nodes in
/// natural order; siblings (and roots) by `cmp`.
pub(crate) fn forest(
    rows: Vec<PsRow>,
    cmp: impl Fn(&PsRow, &PsRow) -> Ordering,
) -> Vec<(PsRow, usize)> {
    let mut by_node: HashMap<String, Vec<PsRow>> = HashMap::new();
    for r in rows {
        by_node.entry(r.node.clone()).or_default().push(r);
    }
    let mut nodes: Vec<String> = by_node.keys().cloned().collect();
    nodes.sort_by(|a, b| natural_cmp(a, b));
    let mut out = Vec::new();
    for node in nodes {
        let mut rows = by_node.remove(&node).unwrap_or_default();
        rows.sort_by(&cmp);
        let pids: HashSet<i32> = rows.iter().map(|r| r.pid).collect();
        // Children of each pid, in `cmp` order (rows are sorted).
        let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if r.ppid != r.pid && pids.contains(&r.ppid) {
                children.entry(r.ppid).or_default().push(i);
            } else {
                roots.push(i);
            }
        }
        let mut seen = vec![false; rows.len()];
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
        let walk = |start: usize, seen: &mut Vec<bool>, order: &mut Vec<(usize, usize)>| {
            let mut stack = vec![(start, 0usize)];
            while let Some((i, depth)) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                order.push((i, depth));
                if let Some(kids) = children.get(&rows[i].pid) {
                    for &k in kids.iter().rev() {
                        stack.push((k, depth + 1));
                    }
                }
            }
        };
        for &r in &roots {
            walk(r, &mut seen, &mut order);
        }
        // Rows only reachable from a cycle: shown as roots.
        for i in 0..rows.len() {
            if !seen[i] {
                walk(i, &mut seen, &mut order);
            }
        }
        let mut slots: Vec<Option<PsRow>> = rows.into_iter().map(Some).collect();
        for (i, depth) in order {
            if let Some(r) = slots[i].take() {
                out.push((r, depth));
            }
        }
    }
    out
}

/// The command as `ps --forest` draws it at `depth`.
pub(crate) fn drawn(command: &str, depth: usize) -> String {
    if depth == 0 {
        command.to_string()
    } else {
        format!("{}\\_ {command}", " ".repeat(4 * depth - 3))
    }
}

/// Whether a `/ps` USER (a name, or a uid in decimal when the node had no
/// name for it) is a system account here: uid below 1000, or in 60000 to
/// 65535 (Debian's globally allocated system accounts such as slurm's
/// 64030, and nobody). An unknown name is not: a stray is shown rather
/// than hidden.
pub(crate) fn system_user(user: &str, uid_of: impl Fn(&str) -> Option<u32>) -> bool {
    let uid = user.parse::<u32>().ok().or_else(|| uid_of(user));
    uid.is_some_and(|u| u < 1000 || (60000..=65535).contains(&u))
}

/// Strays: processes of users who are not system accounts that are in no
/// batch job. Each name is looked up once (the user database may be a
/// directory server).
pub(crate) fn strays(rows: Vec<PsRow>, uid_of: impl Fn(&str) -> Option<u32>) -> Vec<PsRow> {
    let mut system: HashMap<String, bool> = HashMap::new();
    rows.into_iter()
        .filter(|r| {
            r.job.is_none()
                && !*system
                    .entry(r.user.clone())
                    .or_insert_with(|| system_user(&r.user, &uid_of))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, pid: i32, ppid: i32) -> PsRow {
        PsRow {
            node: node.into(),
            pid,
            ppid,
            user: "alice".into(),
            command: format!("p{pid}"),
            ..PsRow::default()
        }
    }

    fn shape(f: &[(PsRow, usize)]) -> Vec<(String, i32, usize)> {
        f.iter().map(|(r, d)| (r.node.clone(), r.pid, *d)).collect()
    }

    #[test]
    fn children_follow_their_parents_per_node() {
        let rows = vec![
            row("n10", 1, 0),
            row("n2", 50, 1),
            row("n2", 1, 0),
            row("n2", 7, 1),
            row("n2", 60, 50),
            row("n2", 8, 7),
            // Its parent is not shown: a root.
            row("n2", 90, 4242),
        ];
        let f = forest(rows, |a, b| a.pid.cmp(&b.pid));
        assert_eq!(
            shape(&f),
            vec![
                ("n2".into(), 1, 0),
                ("n2".into(), 7, 1),
                ("n2".into(), 8, 2),
                ("n2".into(), 50, 1),
                ("n2".into(), 60, 2),
                ("n2".into(), 90, 0),
                ("n10".into(), 1, 0),
            ]
        );
        assert_eq!(drawn("init", 0), "init");
        assert_eq!(drawn("sh", 1), " \\_ sh");
        assert_eq!(drawn("sleep", 2), "     \\_ sleep");
    }

    /// A node that sends a PPID cycle (or a process that is its own
    /// parent) still has every row shown once.
    #[test]
    fn cycles_lose_no_row() {
        let rows = vec![
            row("n1", 5, 6),
            row("n1", 6, 5),
            row("n1", 7, 7),
            row("n1", 8, 6),
        ];
        let f = forest(rows, |a, b| a.pid.cmp(&b.pid));
        let mut pids: Vec<i32> = f.iter().map(|(r, _)| r.pid).collect();
        pids.sort();
        assert_eq!(pids, vec![5, 6, 7, 8]);
        // 7 is its own parent: a root.
        assert!(f.iter().any(|(r, d)| r.pid == 7 && *d == 0));
        // 8 comes right after its parent 6, one level deeper.
        let at = |p: i32| f.iter().position(|(r, _)| r.pid == p).unwrap();
        assert_eq!(at(8), at(6) + 1);
        assert_eq!(f[at(8)].1, f[at(6)].1 + 1);
    }

    #[test]
    fn strays_are_users_processes_in_no_job() {
        let uid_of = |n: &str| match n {
            "root" => Some(0),
            "slurm" => Some(64030),
            "nobody" => Some(65534),
            "daemon" => Some(1),
            "alice" => Some(1000),
            _ => None,
        };
        let mk = |user: &str, job: Option<&str>| PsRow {
            user: user.into(),
            job: job.map(Into::into),
            ..row("n1", 1, 0)
        };
        let rows = vec![
            mk("alice", None),
            mk("alice", Some("42")),
            mk("root", None),
            mk("daemon", None),
            mk("nobody", None),
            mk("999", None),
            mk("1001", None),
            mk("unknown-elsewhere", None),
            mk("slurm", None),
            mk("100001", None),
        ];
        let users: Vec<String> = strays(rows, uid_of).into_iter().map(|r| r.user).collect();
        assert_eq!(users, vec!["alice", "1001", "unknown-elsewhere", "100001"]);
    }
}

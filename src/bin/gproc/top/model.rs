//! The data behind `gproc top`: the aggregator's `/nodes`, `/load` and
//! `/ps` parsed (by [`gproc::format::table`]) into one [`ClusterTables`], filtered by user and hostlist,
//! with cluster totals and process rankings. No I/O and no drawing, so
//! all of it is unit-tested on text.

use std::cmp::Ordering;
use std::time::SystemTime;

use gproc::config::Hostlist;
use gproc::config::hostlist::natural_cmp;
use gproc::format::table::{LoadRow, NodeRow, Note, PsRow, Table};

/// How processes are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By %CPU, highest first.
    Cpu,
    /// By resident memory, largest first.
    Mem,
}

impl SortKey {
    /// Parses `cpu`/`%cpu` or `mem`/`%mem`/`rss`.
    pub fn parse(s: &str) -> Option<SortKey> {
        match s
            .trim()
            .trim_start_matches(['-', '%'])
            .to_ascii_lowercase()
            .as_str()
        {
            "cpu" | "pcpu" | "c" => Some(SortKey::Cpu),
            "mem" | "pmem" | "rss" | "m" => Some(SortKey::Mem),
            _ => None,
        }
    }

    /// Its name in headers.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Cpu => "%CPU",
            SortKey::Mem => "%MEM",
        }
    }

    /// Descending order by this key; ties by node (natural) then pid, so
    /// the ranking does not flicker between refreshes.
    pub fn cmp(self, a: &PsRow, b: &PsRow) -> Ordering {
        let primary = match self {
            SortKey::Cpu => b.cpu.total_cmp(&a.cpu).then(b.rss_kb.cmp(&a.rss_kb)),
            SortKey::Mem => b.rss_kb.cmp(&a.rss_kb).then(b.cpu.total_cmp(&a.cpu)),
        };
        primary
            .then_with(|| natural_cmp(&a.node, &b.node))
            .then(a.pid.cmp(&b.pid))
    }
}

/// Which part of the cluster to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these users' processes (empty: everyone's).
    pub users: Vec<String>,
    /// Only these nodes.
    pub hosts: Option<Hostlist>,
}

impl Filter {
    /// Whether node `name` is shown.
    pub fn node(&self, name: &str) -> bool {
        self.hosts.as_ref().is_none_or(|h| h.contains(name))
    }

    /// Whether process `p` is shown.
    pub fn process(&self, p: &PsRow) -> bool {
        self.node(&p.node) && (self.users.is_empty() || self.users.contains(&p.user))
    }
}

/// One refresh: the three tables as read at about the same time.
#[derive(Debug, Clone, Default)]
pub struct ClusterTables {
    /// `/nodes`, in the aggregator's (config) order.
    pub nodes: Vec<NodeRow>,
    /// `/load`.
    pub load: Vec<LoadRow>,
    /// `/ps`.
    pub procs: Vec<PsRow>,
    /// The tables' `#` notes (nodes missing from a table and why), once
    /// each.
    pub notes: Vec<Note>,
    /// When it was read.
    pub taken: Option<SystemTime>,
}

/// Cluster-wide sums over the shown nodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Nodes shown.
    pub nodes: usize,
    /// Of which up.
    pub up: usize,
    /// Of which down.
    pub down: usize,
    /// Processes shown.
    pub procs: usize,
    /// CPUs of the nodes with load figures.
    pub cpus: u64,
    /// Memory of those nodes, MiB.
    pub mem_total_mb: u64,
    /// Used memory, MiB.
    pub mem_used_mb: u64,
    /// Sum of 1-minute load averages.
    pub load1: f64,
}

impl ClusterTables {
    /// Parses the three files' texts. A text that is not such a table
    /// counts as empty, and lines that are not rows are skipped.
    pub fn parse(nodes: &str, load: &str, ps: &str) -> ClusterTables {
        let nodes = Table::<NodeRow>::parse(nodes).unwrap_or_default();
        let load = Table::<LoadRow>::parse(load).unwrap_or_default();
        let ps = Table::<PsRow>::parse(ps).unwrap_or_default();
        // `/load` and `/ps` both report a missing node: once is enough.
        let mut notes: Vec<Note> = Vec::new();
        for n in load.notes.into_iter().chain(ps.notes) {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        ClusterTables {
            nodes: nodes.rows,
            load: load.rows,
            procs: ps.rows,
            notes,
            taken: Some(SystemTime::now()),
        }
    }

    /// The part of the snapshot `f` lets through.
    pub fn filtered(&self, f: &Filter) -> ClusterTables {
        ClusterTables {
            nodes: self
                .nodes
                .iter()
                .filter(|n| f.node(&n.node))
                .cloned()
                .collect(),
            load: self
                .load
                .iter()
                .filter(|l| f.node(&l.node))
                .cloned()
                .collect(),
            procs: self
                .procs
                .iter()
                .filter(|p| f.process(p))
                .cloned()
                .collect(),
            notes: self.notes.clone(),
            taken: self.taken,
        }
    }

    /// Sums over the whole snapshot (filter it first).
    pub fn totals(&self) -> Totals {
        Totals {
            nodes: self.nodes.len(),
            up: self.nodes.iter().filter(|n| n.is_up()).count(),
            down: self.nodes.iter().filter(|n| n.is_down()).count(),
            procs: self.procs.len(),
            cpus: self.load.iter().map(|l| l.cpus).sum(),
            mem_total_mb: self.load.iter().map(|l| l.mem_total_mb).sum(),
            mem_used_mb: self.load.iter().map(|l| l.mem_used_mb).sum(),
            load1: self.load.iter().map(|l| l.load[0]).sum(),
        }
    }

    /// The `n` first processes by `key` (of one node if `node` is given).
    pub fn top(&self, key: SortKey, node: Option<&str>, n: usize) -> Vec<&PsRow> {
        let mut v: Vec<&PsRow> = self
            .procs
            .iter()
            .filter(|p| node.is_none_or(|name| p.node == name))
            .collect();
        v.sort_by(|a, b| key.cmp(a, b));
        v.truncate(n);
        v
    }

    /// The load figures of `node`.
    pub fn load_of(&self, node: &str) -> Option<&LoadRow> {
        self.load.iter().find(|l| l.node == node)
    }

    /// Node names to list: those of `/nodes`, plus any that only `/load`
    /// knows (an aggregator whose `/nodes` failed to read).
    pub fn node_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.nodes.iter().map(|n| n.node.clone()).collect();
        for l in &self.load {
            if !names.contains(&l.node) {
                names.push(l.node.clone());
            }
        }
        names
    }

    /// The `/nodes` row of `name`.
    pub fn node(&self, name: &str) -> Option<&NodeRow> {
        self.nodes.iter().find(|n| n.node == name)
    }
}

/// MiB as a short human figure (`512M`, `23.5G`, `1.2T`).
pub fn human_mb(mb: u64) -> String {
    if mb >= 1 << 20 {
        format!("{:.1}T", mb as f64 / (1u64 << 20) as f64)
    } else if mb >= 1 << 10 {
        format!("{:.1}G", mb as f64 / 1024.0)
    } else {
        format!("{mb}M")
    }
}

/// KiB as a short human figure (the interactive view's RSS column).
#[cfg(any(feature = "tui", test))]
pub fn human_kb(kb: u64) -> String {
    if kb >= 1 << 10 {
        human_mb(kb >> 10)
    } else {
        format!("{kb}K")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const NODES: &str = "NODE STATE ADDRESS DIALECT RTT_MS LAST_CONTACT ERROR\n\
        n1 up 10.0.0.1:5640 9P2000.L 0.42 2026-11-26T06:07:52Z -\n\
        n2 up 10.0.0.2:5640 9P2000.L 0.50 2026-11-26T06:07:52Z -\n\
        n3 down 10.0.0.3:5640 - - - 10.0.0.3:5640: Connection refused (os error 111)\n";
    pub(crate) const LOAD: &str = "NODE LOAD1 LOAD5 LOAD15 RUNNING TASKS CPUS MEM_TOTAL_MB MEM_USED_MB MEM_AVAIL_MB PROCS UPTIME\n\
        n1 4.80 4.85 4.28 6 199 16 64000 32000 32000 3 0d+01:00\n\
        n2 0.10 0.20 0.30 1 99 8 32000 1000 31000 2 3d+02:00\n\
        # missing n3: connection refused\n";
    pub(crate) const PS: &str = "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR JOBID STEP GPU COMMAND\n\
        n1 1 0 root S 0.1 0.0 11308 37768 2026-11-26T05:07:16Z 0:00:04 1 - - - /sbin/init\n\
        n1 4242 1 alice R 99.5 12.5 8000000 9000000 2026-11-26T05:07:16Z 1:02:03 8 1234 0 nvidia0,nvidia1 ./sim --big\n\
        n1 4243 1 bob R 50.0 0.1 50000 90000 2026-11-26T05:07:16Z 0:30:00 1 1250 batch - bob-job\n\
        n2 1 0 root S 0.0 0.0 9000 30000 2026-11-26T05:07:16Z 0:00:01 1 - - - /sbin/init\n\
        n2 77 1 alice S 3.0 40.0 12800000 13000000 2026-11-26T05:07:16Z 0:05:00 4 - - - python train.py\n\
        # missing n3: connection refused\n";

    pub(crate) fn snap() -> ClusterTables {
        ClusterTables::parse(NODES, LOAD, PS)
    }

    #[test]
    fn the_three_tables_parse() {
        let s = snap();
        assert_eq!(s.nodes.len(), 3);
        assert!(s.nodes[0].is_up() && s.nodes[2].is_down());
        assert_eq!(s.nodes[0].rtt_ms, Some(0.42));
        assert_eq!(
            s.nodes[2].error.as_deref(),
            Some("10.0.0.3:5640: Connection refused (os error 111)")
        );
        assert_eq!(s.load.len(), 2);
        assert_eq!(s.load[0].cpus, 16);
        assert_eq!(s.load[1].uptime.to_string(), "3d+02:00");
        assert_eq!(s.procs.len(), 5);
        assert_eq!(
            s.notes,
            vec![Note::Missing {
                node: "n3".into(),
                reason: "connection refused".into(),
                via: vec![],
            }]
        );
        assert_eq!(s.node_names(), vec!["n1", "n2", "n3"]);
    }

    #[test]
    fn totals_sum_the_shown_nodes() {
        let t = snap().totals();
        assert!((t.load1 - 4.9).abs() < 1e-9, "{t:?}");
        assert_eq!(
            t,
            Totals {
                nodes: 3,
                up: 2,
                down: 1,
                procs: 5,
                cpus: 24,
                mem_total_mb: 96000,
                mem_used_mb: 33000,
                load1: t.load1,
            }
        );
    }

    #[test]
    fn sorting_by_cpu_and_memory() {
        let s = snap();
        let cpu: Vec<i32> = s.top(SortKey::Cpu, None, 3).iter().map(|p| p.pid).collect();
        assert_eq!(cpu, vec![4242, 4243, 77]);
        let mem: Vec<(&str, i32)> = s
            .top(SortKey::Mem, None, 2)
            .iter()
            .map(|p| (p.node.as_str(), p.pid))
            .collect();
        assert_eq!(mem, vec![("n2", 77), ("n1", 4242)]);
        let n2: Vec<i32> = s
            .top(SortKey::Cpu, Some("n2"), 10)
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(n2, vec![77, 1]);
        assert_eq!(SortKey::parse("%MEM"), Some(SortKey::Mem));
        assert_eq!(SortKey::parse("-cpu"), Some(SortKey::Cpu));
        assert_eq!(SortKey::parse("pid"), None);
    }

    #[test]
    fn filters_by_user_and_hostlist() {
        let s = snap();
        let f = Filter {
            users: vec!["alice".into()],
            hosts: None,
        };
        let a = s.filtered(&f);
        assert_eq!(a.procs.len(), 2);
        assert_eq!(a.nodes.len(), 3, "a user filter keeps every node");
        let f = Filter {
            users: vec![],
            hosts: Some(Hostlist::parse("n[2-3]").unwrap()),
        };
        let h = s.filtered(&f);
        assert_eq!(h.node_names(), vec!["n2", "n3"]);
        assert!(h.procs.iter().all(|p| p.node == "n2"));
        let t = h.totals();
        assert_eq!((t.nodes, t.up, t.down, t.cpus, t.procs), (2, 1, 1, 8, 2));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_mb(512), "512M");
        assert_eq!(human_mb(24105), "23.5G");
        assert_eq!(human_mb(3 << 20), "3.0T");
        assert_eq!(human_kb(11308), "11M");
        assert_eq!(human_kb(900), "900K");
    }
}

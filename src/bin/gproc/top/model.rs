//! The data behind `gproc top`: the aggregator's `/nodes`, `/load` and
//! `/ps` parsed (by [`gproc::format::table`]) into one [`ClusterTables`], filtered by user and hostlist,
//! with cluster totals and process rankings; `/jobs` and `/job/<id>/ps`
//! with [`JobsState`], the jobs view's drill-down (list, open one job,
//! back). No I/O and no drawing, so all of it is unit-tested on text.

use std::cmp::Ordering;
use std::time::SystemTime;

use gproc::config::Hostlist;
use gproc::config::hostlist::natural_cmp;
use gproc::format::rank::{self, RankKey, RankQuery};
use gproc::format::table::{JobRow, LoadRow, NodeRow, Note, PsRow, Table};

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

    /// The aggregator's ranking by the same key (`/top/cpu`, `/top/mem`).
    pub fn rank_key(self) -> RankKey {
        match self {
            SortKey::Cpu => RankKey::Cpu,
            SortKey::Mem => RankKey::Mem,
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

/// The rankings a refresh reads instead of the whole `/ps`: the first
/// `rows` processes by `key` that `f` lets through, and, for the node view,
/// those of `node`. `None` when the filter cannot be put in a query name
/// (a user name with `:`, too long a hostlist) or `rows` is more than a
/// ranking serves: then `/ps` is read whole.
pub fn rankings(
    key: SortKey,
    f: &Filter,
    node: Option<&str>,
    rows: usize,
) -> Option<Vec<RankQuery>> {
    // More rows than a ranking serves: `/ps` whole has them all.
    if rows > rank::MAX_ROWS {
        return None;
    }
    let cluster = RankQuery {
        key: key.rank_key(),
        rows,
        users: f.users.clone(),
        hosts: f.hosts.as_ref().map(|h| h.as_str().to_string()),
    };
    let mut out = vec![cluster.clone()];
    if let Some(n) = node {
        out.push(RankQuery {
            hosts: Some(n.to_string()),
            ..cluster
        });
    }
    // Each must read back as itself.
    out.iter()
        .all(|q| RankQuery::parse(&q.to_string()).as_ref() == Ok(q))
        .then_some(out)
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
    /// How many processes the rankings read matched (the cluster's, the
    /// first), when `procs` holds only the first of them; `None` when
    /// `procs` is every process (`/ps` read whole).
    pub matched: Option<usize>,
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
        Self::parse_ranked(nodes, load, &[ps], false)
    }

    /// As [`ClusterTables::parse`], with the process rows of several
    /// `/ps`-like tables: the rankings of `/top` (`ranked`: the first's
    /// count line is the number of processes), each process once.
    pub fn parse_ranked(nodes: &str, load: &str, ps: &[&str], ranked: bool) -> ClusterTables {
        let nodes = Table::<NodeRow>::parse(nodes).unwrap_or_default();
        let load = Table::<LoadRow>::parse(load).unwrap_or_default();
        let matched = ps
            .first()
            .filter(|_| ranked)
            .and_then(|t| t.lines().find_map(rank::parse_count_line));
        let mut procs: Vec<PsRow> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // `/load` and `/ps` both report a missing node: once is enough.
        let mut notes: Vec<Note> = Vec::new();
        let mut note = |n: Note| {
            let count =
                matches!(&n, Note::Other(t) if rank::parse_count_line(&format!("# {t}")).is_some());
            if !count && !notes.contains(&n) {
                notes.push(n);
            }
        };
        load.notes.into_iter().for_each(&mut note);
        for t in ps {
            let t = Table::<PsRow>::parse(t).unwrap_or_default();
            for r in t.rows {
                if seen.insert((r.node.clone(), r.pid)) {
                    procs.push(r);
                }
            }
            t.notes.into_iter().for_each(&mut note);
        }
        ClusterTables {
            nodes: nodes.rows,
            load: load.rows,
            procs,
            notes,
            matched,
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
            // The rankings were read with the same filter.
            matched: self.matched,
            taken: self.taken,
        }
    }

    /// Sums over the whole snapshot (filter it first).
    pub fn totals(&self) -> Totals {
        Totals {
            nodes: self.nodes.len(),
            up: self.nodes.iter().filter(|n| n.is_up()).count(),
            down: self.nodes.iter().filter(|n| n.is_down()).count(),
            procs: self.matched.unwrap_or(self.procs.len()),
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

/// What one refresh reads, from where the view is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `/nodes`, `/load` and `/ps`.
    Cluster,
    /// `/jobs`.
    Jobs,
    /// `/job/<id>/ps`.
    Job(String),
}

/// `/jobs` as read.
#[derive(Debug, Clone, PartialEq)]
pub enum JobList {
    /// The aggregator has no `/jobs` (ENOENT: older than jobs).
    NotServed,
    /// Its rows (unsorted) and notes.
    Listed {
        /// One per job the reader sees.
        rows: Vec<JobRow>,
        /// Nodes missing from it and why.
        notes: Vec<Note>,
    },
}

impl JobList {
    /// Parses `/jobs`'s text; a text that is not the table counts as
    /// empty, like the other tables.
    pub fn parse(text: &str) -> JobList {
        let t = Table::<JobRow>::parse(text).unwrap_or_default();
        JobList::Listed {
            rows: t.rows,
            notes: t.notes,
        }
    }
}

/// One job's `/job/<id>/ps` as read.
#[derive(Debug, Clone)]
pub enum JobProcs {
    /// Its processes (in `procs`) and notes; nodes and load are empty.
    Listed(ClusterTables),
    /// ENOENT: the job ended, or none of its processes is the reader's to
    /// see any more.
    Gone,
}

impl JobProcs {
    /// Parses `/job/<id>/ps`'s text (`/ps`'s header and rows).
    pub fn parse(text: &str) -> JobProcs {
        JobProcs::Listed(ClusterTables::parse("", "", text))
    }
}

/// Whether `id` can name a job in a path (`/job/<id>/ps`): what a job id
/// may be ([`gproc::format::jobs::is_valid_id`]: no `/`, no `..`, nothing
/// unprintable). Checked before any read so that a job id cannot walk
/// elsewhere in the tree.
pub fn valid_job_id(id: &str) -> bool {
    gproc::format::jobs::is_valid_id(id)
}

/// Jobs ranked by `key` like processes: summed %CPU or RSS, highest first;
/// ties by job id, so the list does not flicker between refreshes.
pub fn job_cmp(key: SortKey, a: &JobRow, b: &JobRow) -> Ordering {
    let primary = match key {
        SortKey::Cpu => b
            .cpu_tenths
            .cmp(&a.cpu_tenths)
            .then(b.rss_kb.cmp(&a.rss_kb)),
        SortKey::Mem => b
            .rss_kb
            .cmp(&a.rss_kb)
            .then(b.cpu_tenths.cmp(&a.cpu_tenths)),
    };
    primary.then_with(|| gproc::tree::tables::job_order(&a.job, &b.job))
}

/// Most of a job's node names looked at to match a hostlist filter: its
/// NODES cell comes from the server, and `n[0-999999999]` must not keep
/// `gproc top` busy.
const MAX_JOB_NODES: usize = 1 << 16;

/// Whether `f` shows job `j`: one of its users is shown, and it runs on
/// one of the shown nodes.
pub fn job_shown(f: &Filter, j: &JobRow) -> bool {
    let user = f.users.is_empty() || j.user.split(',').any(|u| f.users.iter().any(|w| w == u));
    let node = f.hosts.as_ref().is_none_or(|h| {
        Hostlist::parse(&j.nodes)
            .is_ok_and(|l| l.iter().take(MAX_JOB_NODES).any(|n| h.contains(&n)))
    });
    user && node
}

/// The jobs view: the list of jobs, the selection, and the job opened
/// from it. Refreshes arrive with [`JobsState::set_list`] and
/// [`JobsState::set_procs`]; keys call [`JobsState::select`],
/// [`JobsState::open`] and [`JobsState::back`].
#[cfg(any(feature = "tui", test))]
#[derive(Debug, Clone, Default)]
pub struct JobsState {
    /// The last `/jobs`, sorted and filtered; `None` before the first.
    pub list: Option<JobList>,
    /// Index of the selected job in the list.
    pub selected: usize,
    /// The job whose processes are shown (`None`: the list is).
    pub open: Option<String>,
    /// The open job's last `/job/<id>/ps`, filtered; `None` before it.
    pub procs: Option<JobProcs>,
    /// When the list was read.
    pub list_taken: Option<SystemTime>,
    /// When the open job's processes were read.
    pub procs_taken: Option<SystemTime>,
}

#[cfg(any(feature = "tui", test))]
impl JobsState {
    /// The listed jobs (none before the first read or without `/jobs`).
    pub fn rows(&self) -> &[JobRow] {
        match &self.list {
            Some(JobList::Listed { rows, .. }) => rows,
            _ => &[],
        }
    }

    /// The selected job's row.
    pub fn selected_row(&self) -> Option<&JobRow> {
        self.rows().get(self.selected)
    }

    /// The open job's row in the last `/jobs` (gone from it once ended).
    pub fn open_row(&self) -> Option<&JobRow> {
        let id = self.open.as_deref()?;
        self.rows().iter().find(|r| r.job == id)
    }

    /// When what is shown (the list, or the open job's processes) was
    /// read.
    pub fn taken(&self) -> Option<SystemTime> {
        match self.open {
            Some(_) => self.procs_taken,
            None => self.list_taken,
        }
    }

    /// What a refresh of this view reads.
    pub fn want(&self) -> Want {
        match &self.open {
            Some(id) => Want::Job(id.clone()),
            None => Want::Jobs,
        }
    }

    /// Takes a new `/jobs`, keeps the jobs `f` shows, ranks them by `key`;
    /// the selection follows the selected job by id.
    pub fn set_list(&mut self, list: JobList, key: SortKey, f: &Filter) {
        let was = self.selected_row().map(|r| r.job.clone());
        let list = match list {
            JobList::Listed { mut rows, notes } => {
                rows.retain(|r| job_shown(f, r));
                rows.sort_by(|a, b| job_cmp(key, a, b));
                JobList::Listed { rows, notes }
            }
            JobList::NotServed => JobList::NotServed,
        };
        self.list = Some(list);
        self.list_taken = Some(SystemTime::now());
        self.follow(was);
    }

    /// Ranks the list again by `key` (the sort key changed).
    pub fn resort(&mut self, key: SortKey) {
        let was = self.selected_row().map(|r| r.job.clone());
        if let Some(JobList::Listed { rows, .. }) = &mut self.list {
            rows.sort_by(|a, b| job_cmp(key, a, b));
        }
        self.follow(was);
    }

    /// Puts the selection back on job `was` if it is still listed, else
    /// keeps the index within the list.
    fn follow(&mut self, was: Option<String>) {
        let rows = self.rows();
        self.selected = match was.and_then(|w| rows.iter().position(|r| r.job == w)) {
            Some(i) => i,
            None => self.selected.min(rows.len().saturating_sub(1)),
        };
    }

    /// Takes job `id`'s processes, keeping those `f` shows. A read for a
    /// job that is no longer open (the user went back, or opened another
    /// meanwhile) is dropped.
    pub fn set_procs(&mut self, id: &str, procs: JobProcs, f: &Filter) {
        if self.open.as_deref() != Some(id) {
            return;
        }
        self.procs = Some(match procs {
            JobProcs::Listed(t) => JobProcs::Listed(t.filtered(f)),
            JobProcs::Gone => JobProcs::Gone,
        });
        self.procs_taken = Some(SystemTime::now());
    }

    /// Moves the selection by `delta` rows, within the list.
    pub fn select(&mut self, delta: isize) {
        let n = self.rows().len();
        self.selected = self
            .selected
            .saturating_add_signed(delta)
            .min(n.saturating_sub(1));
    }

    /// Opens the selected job; whether there was one.
    pub fn open(&mut self) -> bool {
        match self.selected_row().map(|r| r.job.clone()) {
            Some(id) if self.open.is_none() => {
                self.open = Some(id);
                self.procs = None;
                self.procs_taken = None;
                true
            }
            _ => false,
        }
    }

    /// Back from a job to the list; whether a job was open.
    pub fn back(&mut self) -> bool {
        self.procs = None;
        self.procs_taken = None;
        self.open.take().is_some()
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

    pub(crate) const JOBS: &str = "JOBID USER PROCS NNODES %CPU RSS STATES START NODES\n\
        1234 alice 130 64 6399.0 104857600 R128,S2 2026-11-26T05:07:16Z n[001-064]\n\
        1250 bob 1 1 50.0 50000 R1 2026-11-26T05:07:16Z n1\n\
        99 carol 3 2 0.5 200000000 S3 2026-11-26T05:07:16Z n[1-2]\n\
        # missing n3: connection refused\n";
    pub(crate) const JOB_PS: &str = "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR JOBID STEP GPU COMMAND\n\
        n1 4242 1 alice R 99.5 12.5 8000000 9000000 2026-11-26T05:07:16Z 1:02:03 8 1234 0 nvidia0,nvidia1 ./sim --big\n\
        n2 5151 1 alice R 80.0 1.0 100000 200000 2026-11-26T05:07:16Z 0:10:00 2 1234 0 - ./sim --rank 2\n\
        n2 5152 1 root S 0.0 0.0 3000 9000 2026-11-26T05:07:16Z 0:00:00 1 1234 extern - sleep 100000000\n";

    pub(crate) fn jobs_state() -> JobsState {
        let mut j = JobsState::default();
        j.set_list(JobList::parse(JOBS), SortKey::Cpu, &Filter::default());
        j
    }

    fn ids(j: &JobsState) -> Vec<&str> {
        j.rows().iter().map(|r| r.job.as_str()).collect()
    }

    #[test]
    fn jobs_rank_by_cpu_or_memory_and_filter_by_user() {
        let mut j = jobs_state();
        assert_eq!(ids(&j), ["1234", "1250", "99"]);
        match &j.list {
            Some(JobList::Listed { notes, .. }) => assert_eq!(notes.len(), 1),
            other => panic!("{other:?}"),
        }
        j.select(1);
        assert_eq!(j.selected_row().map(|r| r.job.as_str()), Some("1250"));
        j.resort(SortKey::Mem);
        assert_eq!(ids(&j), ["99", "1234", "1250"]);
        assert_eq!(j.selected, 2, "the selection follows its job");
        let f = Filter {
            users: vec!["bob".into(), "carol".into()],
            hosts: None,
        };
        j.set_list(JobList::parse(JOBS), SortKey::Cpu, &f);
        assert_eq!(ids(&j), ["1250", "99"]);
        let on_n2 = Filter {
            users: vec![],
            hosts: Some(Hostlist::parse("n2,n050").unwrap()),
        };
        let mut k = JobsState::default();
        k.set_list(JobList::parse(JOBS), SortKey::Cpu, &on_n2);
        assert_eq!(ids(&k), ["1234", "99"], "jobs on a shown node");
        assert_eq!(j.selected_row().map(|r| r.job.as_str()), Some("1250"));
        j.select(-5);
        assert_eq!(j.selected, 0);
        j.select(5);
        assert_eq!(j.selected, 1);
        // Equal sums: by job id, numbers by value.
        let mut a = j.rows()[0].clone();
        let mut b = a.clone();
        a.job = "10".into();
        b.job = "9".into();
        assert_eq!(job_cmp(SortKey::Cpu, &b, &a), Ordering::Less);
    }

    #[test]
    fn drilling_into_a_job_and_back() {
        let mut j = jobs_state();
        assert_eq!(j.want(), Want::Jobs);
        assert!(!j.back(), "nothing open");
        assert!(j.open());
        assert_eq!(j.open.as_deref(), Some("1234"));
        assert_eq!(j.want(), Want::Job("1234".into()));
        assert!(j.procs.is_none(), "not read yet");
        assert!(j.taken().is_none(), "nothing of the job read yet");
        assert!(!j.open(), "already in a job");
        // A read for another job (opened before) is dropped.
        j.set_procs("1250", JobProcs::parse(JOB_PS), &Filter::default());
        assert!(j.procs.is_none());
        let root_only = Filter {
            users: vec!["alice".into()],
            hosts: None,
        };
        j.set_procs("1234", JobProcs::parse(JOB_PS), &root_only);
        match &j.procs {
            Some(JobProcs::Listed(t)) => {
                let top: Vec<i32> = t
                    .top(SortKey::Cpu, None, 10)
                    .iter()
                    .map(|p| p.pid)
                    .collect();
                assert_eq!(top, [4242, 5151], "alice's rows, by %CPU");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(j.open_row().map(|r| r.procs), Some(130));
        assert!(j.taken().is_some());
        assert!(j.back());
        assert_eq!(j.taken(), j.list_taken, "the list's time again");
        assert_eq!(j.want(), Want::Jobs);
        assert!(j.procs.is_none());
        assert_eq!(j.selected, 0, "back on the job it left");
    }

    #[test]
    fn a_job_that_ends_while_open_is_gone_not_an_error() {
        let mut j = jobs_state();
        assert!(j.open());
        j.set_procs("1234", JobProcs::parse(JOB_PS), &Filter::default());
        // The next refresh: the job ended, /job/1234/ps is ENOENT and
        // /jobs no longer lists it.
        j.set_procs("1234", JobProcs::Gone, &Filter::default());
        assert!(matches!(j.procs, Some(JobProcs::Gone)));
        let without: String = JOBS
            .lines()
            .filter(|l| !l.starts_with("1234 "))
            .map(|l| format!("{l}\n"))
            .collect();
        j.set_list(JobList::parse(&without), SortKey::Cpu, &Filter::default());
        assert!(j.open_row().is_none());
        assert_eq!(j.open.as_deref(), Some("1234"), "still shown, as gone");
        assert!(j.back());
        assert_eq!(ids(&j), ["1250", "99"]);
        assert_eq!(j.selected, 0);
        // An aggregator without /jobs: nothing listed, nothing to open.
        j.set_list(JobList::NotServed, SortKey::Cpu, &Filter::default());
        assert!(j.rows().is_empty() && j.selected_row().is_none());
        assert!(!j.open());
    }

    #[test]
    fn job_ids_that_could_walk_elsewhere_are_refused() {
        for ok in ["1234", "1234_5", "a.pbs", "flux-f2x3"] {
            assert!(valid_job_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "12/../ps", "1 2", "a\nb"] {
            assert!(!valid_job_id(bad), "{bad:?}");
        }
    }

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

    /// Rankings read for the node view: each process once, the count of
    /// the first (the cluster's) is the total, and the count lines are no
    /// notes.
    #[test]
    fn ranked_reads_merge_and_count() {
        let lines: Vec<&str> = PS.lines().collect();
        let header = lines[0];
        let cluster = format!(
            "{header}\n{}\n{}\n# matched 5\n# missing n3: connection refused\n",
            lines[2], lines[3]
        );
        let node = format!("{header}\n{}\n{}\n# matched 2\n", lines[5], lines[4]);
        let t = ClusterTables::parse_ranked(NODES, LOAD, &[&cluster, &node], true);
        assert_eq!(t.procs.len(), 4);
        assert_eq!(t.matched, Some(5));
        assert_eq!(t.totals().procs, 5);
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
        // The node view ranks n2's own.
        let n2 = t.top(SortKey::Cpu, Some("n2"), 10);
        assert_eq!(n2.iter().map(|p| p.pid).collect::<Vec<_>>(), [77, 1]);
        // `/ps` read whole counts its rows.
        let whole = ClusterTables::parse(NODES, LOAD, PS);
        assert_eq!((whole.matched, whole.totals().procs), (None, 5));
        let f = Filter {
            users: vec!["alice".into()],
            hosts: Some(Hostlist::parse("n[1-2]").unwrap()),
        };
        let r = rankings(SortKey::Mem, &f, Some("n2"), 40).unwrap();
        assert_eq!(r[0].to_string(), "mem:rows=40:users=alice:hosts=n[1-2]");
        assert_eq!(r[1].to_string(), "mem:rows=40:users=alice:hosts=n2");
        // A user name a query cannot carry: `/ps` whole.
        let odd = Filter {
            users: vec!["a:b".into()],
            hosts: None,
        };
        assert_eq!(rankings(SortKey::Cpu, &odd, None, 40), None);
        assert_eq!(
            rankings(SortKey::Cpu, &Filter::default(), None, usize::MAX),
            None
        );
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

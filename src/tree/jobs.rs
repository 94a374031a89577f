//! The job tree: `/jobs` and `/job/<id>/{ps,nodes,ctl,<node>/<pid>/...}`,
//! all from one index per view that `/ps` is part of: one gather of the
//! summaries ([`Tree::gather`]) makes `/ps`, `/jobs` and every job's files
//! together, so they agree to the byte whenever they are read (a node
//! without a summary file is assembled anew at each gather, its `%CPU`
//! moving with the clock). It is cached per view and generation as long as
//! the summaries' TTL (a [`JobsKind`] entry).
//!
//! Only the rows a view sees go in: a job exists for a reader while one of
//! its processes is visible to them, and every sum (`/jobs`, a job's
//! `nodes`) is over those rows alone, so nothing about another user's
//! hidden processes (how many, how much CPU, where) can be learnt from a
//! total. A job's `ps` is `/ps`'s header, the very `/ps` lines of the
//! job's processes in `/ps` order, and `/ps`'s notes (a missing node may
//! hold some of the job's processes).
//!
//! `/job/<id>/ctl` signals each process of the job the writer sees through
//! the per-process path ([`Tree::signal`]: as the writer, pinned to the
//! process's start, limited and audited per process).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::cache::{Kind, Lifetime};
use crate::config::CachePolicy;
use crate::format::ctl;
use crate::format::summary;
use crate::format::table::{JOB_NODES_HEADER, JOBS_HEADER, PS_HEADER, Row};
use crate::proto::errno;
use crate::server::{Chunks, FsError, FsResult, Identity};
use crate::sys;
use crate::view::View;

use super::Tree;
use super::members::Member;
use super::pin::Pin;
use super::render::{Gathered, view_key};
use super::rows::NodeRows;
use super::tables::{self, JobSums};

/// Signals of one `/job/<id>/ctl` write in flight at once.
const JOB_SIGNAL_CONCURRENCY: usize = 32;

/// One view's `/ps`, and its jobs built from the same gather when a job
/// file is first asked for: most readers of a cold `/ps` never look at a
/// job, and the job sums cost a seventh of the table's CPU.
pub(super) struct JobIndex {
    /// `/ps`, rendered: for an administrator, the nodes' own lines.
    pub(super) ps: Arc<Chunks>,
    /// Nodes whose reads were late when it was built ([`Gathered::late`]).
    late: usize,
    /// The jobs, once built.
    jobs: tokio::sync::OnceCell<Jobs>,
    /// What `/ps` was built from, for the jobs: the same summaries and
    /// lines, so the two agree to the byte whenever the jobs are built.
    view: View,
    gathered: Arc<Gathered>,
    rows: Vec<Arc<NodeRows>>,
}

/// One view's jobs.
pub(super) struct Jobs {
    /// By id.
    jobs: HashMap<Arc<str>, Job>,
    /// The ids in `/jobs` order.
    order: Vec<Arc<str>>,
    /// `/jobs`, rendered.
    pub(super) table: Bytes,
}

/// One job as a view sees it.
pub(super) struct Job {
    /// `/job/<id>/ps`, rendered.
    pub(super) ps: Bytes,
    /// `/job/<id>/nodes`, rendered.
    pub(super) nodes: Bytes,
    /// Its visible processes, by node, nodes in `/ps` order.
    procs: Vec<(Arc<Member>, Vec<Pin>)>,
}

impl JobIndex {
    /// The jobs, built on the first call.
    pub(super) async fn jobs(&self) -> &Jobs {
        self.jobs.get_or_init(|| async { self.build_jobs() }).await
    }

    /// Builds the jobs from what `/ps` was built from.
    fn build_jobs(&self) -> Jobs {
        build_jobs(&self.view, &self.gathered, &self.rows)
    }
}

impl Jobs {
    /// Job `id`, if the view sees a process of it.
    pub(super) fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// The id of job `name` as the index holds it, if the view sees it.
    pub(super) fn id(&self, name: &str) -> Option<Arc<str>> {
        self.jobs.get_key_value(name).map(|(k, _)| k.clone())
    }

    /// The job ids, in `/jobs` order.
    pub(super) fn ids(&self) -> &[Arc<str>] {
        &self.order
    }
}

impl Job {
    /// The nodes it runs on (visibly), with its processes there.
    pub(super) fn nodes(&self) -> impl Iterator<Item = (&Arc<Member>, &[Pin])> {
        self.procs.iter().map(|(m, p)| (m, p.as_slice()))
    }

    /// Its processes on the node named `name`, if it runs there.
    pub(super) fn on(&self, name: &str) -> Option<(&Arc<Member>, &[Pin])> {
        self.nodes().find(|(m, _)| m.name == name)
    }
}

/// The job index of one view, as a cache kind.
#[derive(Clone, Copy)]
struct JobsKind;

impl Kind for JobsKind {
    type Value = Arc<JobIndex>;

    /// `/ps` twice: once for itself and once for the jobs it may yet
    /// build (their `ps` files hold its lines again; their sums and pins
    /// are smaller). The summaries and lines it holds are the cache's
    /// own, counted there.
    fn weight(v: &Arc<JobIndex>) -> usize {
        2 * v.ps.len()
    }

    /// As long as the summaries it is built from, as `/ps`.
    fn lifetime(policy: &CachePolicy, _path: &str) -> Lifetime {
        Lifetime {
            max_entry_bytes: usize::MAX,
            ..Lifetime::of(policy, summary::FILE_PATH)
        }
    }

    const NODE_READS: bool = false;
}

/// Builds a view's `/ps` from what [`Tree::gather`] collected for it.
///
/// `rows` holds each Linux node's lines (in `g.ok`'s order), written once
/// per summary for every view.
fn build(view: &View, g: Arc<Gathered>, rows: Vec<Arc<NodeRows>>) -> JobIndex {
    let mut ps = Chunks::new();
    ps.push(Bytes::from(format!("{PS_HEADER}\n")));
    if view.admin {
        // Every line of every node: the nodes' own text, not a copy.
        for r in &rows {
            ps.push(r.all());
        }
    } else {
        let linux = g.ok.iter().filter(|(_, s)| s.has_linux_facts());
        let mut mine = Vec::with_capacity(rows.iter().map(|r| r.len_for(view)).sum::<usize>());
        for ((_, s), lines) in linux.zip(&rows) {
            for (i, p) in s.procs.iter().enumerate() {
                if !view.sees_process(p.ruid, p.euid) {
                    continue;
                }
                if let Some(line) = lines.line(i, view) {
                    mine.extend_from_slice(line);
                }
            }
        }
        ps.push(Bytes::from(mine));
    }
    let mut notes = String::new();
    g.notes(&mut notes);
    ps.push(Bytes::from(notes));
    JobIndex {
        ps: Arc::new(ps),
        late: g.late,
        jobs: tokio::sync::OnceCell::new(),
        view: view.clone(),
        gathered: g,
        rows,
    }
}

/// Builds a view's jobs from what its `/ps` was built from ([`build`]):
/// each job's processes are the `/ps` lines of the processes in it, in
/// `/ps` order, and its sums are over those.
fn build_jobs(view: &View, g: &Gathered, rows: &[Arc<NodeRows>]) -> Jobs {
    #[derive(Default)]
    struct Acc {
        sums: JobSums,
        lines: Vec<u8>,
        procs: Vec<(Arc<Member>, Vec<Pin>)>,
    }
    let mut accs: Vec<Acc> = Vec::new();
    let mut acc: HashMap<&str, usize> = HashMap::new();
    // A node's processes of one job share one `JobRef` (the parser's):
    // consecutive ones skip the map's hashing.
    let mut last: Option<(&Arc<crate::format::jobs::JobRef>, usize)> = None;
    let linux = g.ok.iter().filter(|(_, s)| s.has_linux_facts());
    for ((n, s), lines) in linux.zip(rows) {
        for (i, p) in s.procs.iter().enumerate() {
            let Some(job) = &p.job else { continue };
            if !view.sees_process(p.ruid, p.euid) {
                continue;
            }
            let Some(line) = lines.line(i, view) else {
                continue;
            };
            let k = match last {
                Some((j, k)) if Arc::ptr_eq(j, job) || j.id == job.id => k,
                _ => *acc.entry(job.id.as_str()).or_insert_with(|| {
                    accs.push(Acc::default());
                    accs.len() - 1
                }),
            };
            last = Some((job, k));
            let a = &mut accs[k];
            a.sums.add_proc(&n.name, s, p, view);
            a.lines.extend_from_slice(line);
            let pin = Pin {
                pid: p.pid,
                start: p.start_ticks,
                by_name: s.pinned_walk,
            };
            match a.procs.last_mut() {
                Some((m, pins)) if m.index == n.index => pins.push(pin),
                _ => a.procs.push((n.clone(), vec![pin])),
            }
        }
    }
    let mut notes = String::new();
    g.notes(&mut notes);
    let mut order: Vec<&str> = acc.keys().copied().collect();
    order.sort_by(|a, b| tables::job_order(a, b));
    let mut table = format!("{JOBS_HEADER}\n");
    let mut jobs = HashMap::with_capacity(order.len());
    for id in &order {
        let Some(a) = acc.get(id).map(|&k| std::mem::take(&mut accs[k])) else {
            continue;
        };
        table.push_str(&a.sums.row(id).line());
        table.push('\n');
        let mut ps = Vec::with_capacity(PS_HEADER.len() + 1 + a.lines.len() + notes.len());
        ps.extend_from_slice(PS_HEADER.as_bytes());
        ps.push(b'\n');
        ps.extend_from_slice(&a.lines);
        ps.extend_from_slice(notes.as_bytes());
        let mut nodes = format!("{JOB_NODES_HEADER}\n");
        for r in a.sums.node_rows() {
            nodes.push_str(&r.line());
            nodes.push('\n');
        }
        nodes.push_str(&notes);
        jobs.insert(
            Arc::from(*id),
            Job {
                ps: Bytes::from(ps),
                nodes: Bytes::from(nodes),
                procs: a.procs,
            },
        );
    }
    table.push_str(&notes);
    Jobs {
        jobs,
        order: order.into_iter().map(Arc::from).collect(),
        table: Bytes::from(table),
    }
}

impl Tree {
    /// The `/ps` and jobs `view` sees, through the cache.
    pub(super) async fn job_index(&self, view: &View) -> Arc<JobIndex> {
        let key = view_key(JobsKind, "jobs", view);
        let built = self
            .cache
            .get_or_build(key.clone(), || async {
                let g = self.gathered(view).await;
                let linux: Vec<(String, Arc<summary::NodeSummary>)> =
                    g.ok.iter()
                        .filter(|(_, s)| s.has_linux_facts())
                        .map(|(n, s)| (n.name.clone(), s.clone()))
                        .collect();
                let rows = self.rows.rows_for(&linux).await;
                self.tables_built
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(Arc::new(build(view, g, rows)))
            })
            .await;
        match built {
            Ok((v, _)) => {
                if v.late > 0 {
                    // Served to those who waited for it; the next
                    // reader's build finds the late reads done.
                    self.cache.forget(&key).await;
                }
                v
            }
            Err(never) => match never {},
        }
    }

    /// The number of job `id` in qids.
    pub(super) fn job_number(&self, id: &str) -> u32 {
        sys::lock(&self.job_numbers).number(id)
    }

    /// Sends the command in `data` to every process of job `id` that
    /// `view` sees, each through [`Tree::signal`] (as `who`, pinned,
    /// limited and audited per process), some at once.
    ///
    /// The write succeeds when every process was signalled or had exited
    /// meanwhile (ENOENT: its pin no longer names a process) and at least
    /// one was signalled. Otherwise it fails, though the others were
    /// signalled: ENOENT when the job has no process the writer sees (or
    /// all exited), EINVAL for a command that does not parse (nothing
    /// sent), else EPERM if any process was refused so, else EAGAIN if a
    /// rate limit stopped any, else the first other error; the message
    /// counts what was sent and names the first failures. Each outcome is
    /// in the audit log, and a line for the whole write.
    pub(super) async fn signal_job(
        &self,
        view: &View,
        who: &Identity,
        id: &str,
        data: Bytes,
    ) -> FsResult<u32> {
        let index = self.job_index(view).await;
        let job = index.jobs().await.get(id).ok_or(FsError::NOENT)?;
        let audit = |signal: &str, processes: usize, result: &str| {
            tracing::info!(
                target: "gproc::audit",
                uid = who.uid,
                user = who.name.as_deref().unwrap_or("?"),
                proof = ?who.proof,
                admin = view.admin,
                job = id,
                processes,
                signal,
                result,
                "job signal"
            );
        };
        let total: usize = job.nodes().map(|(_, p)| p.len()).sum();
        let command = match ctl::Command::parse(&data) {
            Ok(c) => c,
            Err(e) => {
                audit("-", total, &format!("refused: {e}"));
                return Err(FsError::INVAL.with(e.to_string()));
            }
        };
        let name = command.signal_name();
        let targets: Vec<(Arc<Member>, Pin)> = job
            .nodes()
            .flat_map(|(m, pins)| pins.iter().map(move |p| (m.clone(), *p)))
            .collect();
        let outcomes: Vec<(Arc<Member>, Pin, FsResult<u32>)> = futures::stream::iter(targets)
            .map(|(m, p)| {
                let data = data.clone();
                async move {
                    let path = format!("/{}/ctl", p.pid);
                    let r = self.signal(view, who, &m, &path, Some(p), data).await;
                    (m, p, r)
                }
            })
            .buffer_unordered(JOB_SIGNAL_CONCURRENCY)
            .collect()
            .await;
        let sent = outcomes.iter().filter(|(_, _, r)| r.is_ok()).count();
        let gone = |e: &FsError| e.errno == errno::ENOENT || e.errno == errno::ESRCH;
        let mut failed: Vec<(&Arc<Member>, &Pin, &FsError)> = outcomes
            .iter()
            .filter_map(|(m, p, r)| match r {
                Err(e) if !gone(e) => Some((m, p, e)),
                _ => None,
            })
            .collect();
        let exited = outcomes.len() - sent - failed.len();
        audit(
            &name,
            total,
            &format!("sent {sent}, exited {exited}, refused {}", failed.len()),
        );
        if failed.is_empty() {
            if sent == 0 {
                return Err(FsError::NOENT.with(format!(
                    "job {id}: its {exited} processes exited before the signal"
                )));
            }
            return u32::try_from(data.len()).map_err(|_| FsError::INVAL);
        }
        failed.sort_by(|a, b| hostlist_order(&a.0.name, &b.0.name).then(a.1.pid.cmp(&b.1.pid)));
        let pick = |code: u32| failed.iter().any(|(_, _, e)| e.errno == code);
        let code = if pick(errno::EPERM) {
            errno::EPERM
        } else if pick(errno::EAGAIN) {
            errno::EAGAIN
        } else {
            failed[0].2.errno
        };
        let first: Vec<String> = failed
            .iter()
            .take(3)
            .map(|(m, p, e)| format!("{} {}: {}", m.name, p.pid, errno::to_string(e.errno)))
            .collect();
        Err(FsError::new(code).with(format!(
            "job {id}: {name} sent to {sent} of {} processes, {} refused ({}{})",
            outcomes.len(),
            failed.len(),
            first.join("; "),
            if failed.len() > first.len() {
                "; ..."
            } else {
                ""
            }
        )))
    }
}

/// The shortest time between refreshes of the allotments from jobs: each
/// reads every node's summary (through the cache), so an idle aggregator
/// does not read the cluster every second for them.
const JOB_ALLOT_MIN_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

impl Tree {
    /// Sets the views' allotments from jobs (`[views] allot_from_jobs`)
    /// from every node's summary as cached: each user (real uid, root
    /// aside) with a process in a batch job is allotted the nodes where
    /// one runs.
    pub async fn refresh_job_allotments(&self) {
        use crate::config::hostlist::{Hostlist, compress};
        use crate::config::views::{Allotment, Ident, Principal};
        let g = self.gather(&View::admin()).await;
        let mut by_uid: std::collections::BTreeMap<u32, Vec<&str>> = Default::default();
        for (n, s) in &g.ok {
            for p in s.procs.iter().filter(|p| p.job.is_some()) {
                // Root's (a workload manager's own) and unknown uids give
                // no one anything.
                if p.ruid == 0 || p.ruid == u32::MAX {
                    continue;
                }
                let names = by_uid.entry(p.ruid).or_default();
                if names.last() != Some(&n.name.as_str()) {
                    names.push(&n.name);
                }
            }
        }
        let mut allot = Vec::with_capacity(by_uid.len());
        for (uid, names) in by_uid {
            let nodes = match Hostlist::parse(&compress(&names)) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("allot_from_jobs: uid {uid}'s nodes {names:?}: {e}");
                    continue;
                }
            };
            allot.push(Allotment {
                who: Principal::User(Ident::Id(uid)),
                nodes,
            });
        }
        self.views.set_job_allotments(allot);
    }

    /// Refreshes the allotments from jobs as the summaries are (their
    /// rule's TTL, at least [`JOB_ALLOT_MIN_REFRESH`]), while `[views]
    /// allot_from_jobs` is on, until `shutdown`.
    pub fn spawn_job_allotments(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                if me.views.allots_from_jobs() {
                    me.refresh_job_allotments().await;
                } else {
                    me.views.set_job_allotments(Vec::new());
                }
                let every = match me.cache.policy().ttl_for(summary::FILE_PATH).ttl {
                    crate::config::Ttl::For(d) => d.max(JOB_ALLOT_MIN_REFRESH),
                    crate::config::Ttl::Never => JOB_ALLOT_MIN_REFRESH,
                };
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// Node names in the order people count them.
fn hostlist_order(a: &str, b: &str) -> std::cmp::Ordering {
    crate::config::hostlist::natural_cmp(a, b)
}

#[cfg(test)]
mod tests {
    /// Each Linux node's lines, as the job index is given them.
    fn rows_of(g: &Gathered) -> Vec<Arc<NodeRows>> {
        g.ok.iter()
            .filter(|(_, s)| s.has_linux_facts())
            .map(|(n, s)| Arc::new(NodeRows::render(&n.name, s)))
            .collect()
    }

    use super::*;
    use crate::client::pool::{NodeSpec, Pool, PoolOptions};
    use crate::format::jobs::JobRef;
    use crate::format::summary::{LoadAvg, NodeSummary, ProcEntry};
    use crate::format::table::{JobNodeRow, JobRow, PsRow, Table};
    use crate::net::Address;

    use super::super::render::MissingNode;

    fn summary(procs: Vec<ProcEntry>) -> Arc<NodeSummary> {
        Arc::new(NodeSummary {
            hostname: String::new(),
            arch: "x86_64".into(),
            kernel: "6.1".into(),
            boot_time: 1_700_000_000,
            clk_tck: 100,
            page_size: 4096,
            uptime: 1000.0,
            idle: 0.0,
            time: 1_700_001_000.0,
            cpus: 4,
            mem_total_kb: 1 << 20,
            mem_free_kb: 1 << 19,
            mem_available_kb: None,
            loadavg: LoadAvg {
                one: 0.0,
                five: 0.0,
                fifteen: 0.0,
                running: 1,
                total: 1,
            },
            procs,
            pinned_walk: true,
            fresh_at_zero: false,
        })
    }

    fn proc(pid: i32, uid: u32, job: Option<&str>, utime: u64) -> ProcEntry {
        ProcEntry {
            pid,
            ppid: 1,
            ruid: uid,
            euid: uid,
            user: format!("u{uid}").into(),
            state: 'R',
            utime,
            stime: 0,
            rss_pages: 256,
            vsize: 1 << 20,
            start_ticks: 1000 + pid as u64,
            threads: 1,
            comm: crate::format::summary::Escaped::new(b"a"),
            cmdline: crate::format::summary::Args::new([b"./a"]),
            job: job.map(|j| {
                Arc::new(JobRef {
                    id: j.into(),
                    step: Some("0".into()),
                })
            }),
            gpus: None,
        }
    }

    /// Three nodes (two answered, one missing): user 1000's job 7 on both,
    /// with a process of user 1001 in it on n2 and user 1001's job 8.
    fn gathered() -> Gathered {
        let spec = |name: &str| NodeSpec {
            name: name.into(),
            address: Address::Tcp("127.0.0.1:1".into()),
            aname: "/proc".into(),
            uname: "root".into(),
            uid: 0,
            dialect: None,
            munge: false,
        };
        let pool = Pool::new(vec![spec("n1"), spec("n2")], PoolOptions::default());
        let nodes = pool.nodes();
        let n1 = Member::direct(&nodes[0]);
        let n2 = Member::direct(&nodes[1]);
        Gathered {
            ok: vec![
                (
                    n1,
                    summary(vec![
                        proc(10, 1000, Some("7"), 50_000),
                        proc(11, 1000, None, 10),
                        proc(12, 1001, Some("8"), 10),
                    ]),
                ),
                (
                    n2,
                    summary(vec![
                        proc(20, 1000, Some("7"), 90_000),
                        proc(21, 1001, Some("7"), 90_000),
                    ]),
                ),
            ],
            pending: Vec::new(),
            missing: vec![MissingNode {
                node: "n3".into(),
                errno: errno::ECONNREFUSED,
                reason: "Connection refused".into(),
                via: Vec::new(),
            }],
            stale: Vec::new(),
            unsure: 0,
            late: 0,
        }
    }

    #[test]
    fn the_index_is_ps_and_the_jobs_in_one_and_sums_what_the_view_sees() {
        let g = gathered();
        let admin_index = build(&View::admin(), Arc::new(gathered()), rows_of(&g));
        let admin = admin_index.build_jobs();
        let ps = String::from_utf8(admin_index.ps.to_bytes().to_vec()).unwrap();
        let rows = Table::<PsRow>::parse(&ps).unwrap();
        assert_eq!(rows.rows.len(), 5);
        assert!(ps.ends_with("# missing n3: Connection refused\n"), "{ps}");
        assert_eq!(admin.ids(), [Arc::from("7"), Arc::from("8")]);
        let jobs = Table::<JobRow>::parse(&String::from_utf8_lossy(&admin.table)).unwrap();
        assert_eq!(jobs.notes, rows.notes);
        let seven = &jobs.rows[0];
        assert_eq!((seven.procs, seven.nnodes), (3, 2));
        assert_eq!(seven.user, "u1000,u1001");
        assert_eq!(seven.nodes, "n[1-2]");
        // A job's ps: /ps's header, its very lines in /ps order, the notes.
        let job = admin.get("7").unwrap();
        let want: String = std::iter::once(format!("{PS_HEADER}\n"))
            .chain(
                ps.lines()
                    .filter(|l| l.contains(" 7 0 "))
                    .map(|l| format!("{l}\n")),
            )
            .chain(std::iter::once("# missing n3: Connection refused\n".into()))
            .collect();
        assert_eq!(String::from_utf8_lossy(&job.ps), want);
        let per_node = Table::<JobNodeRow>::parse(&String::from_utf8_lossy(&job.nodes)).unwrap();
        assert_eq!(
            per_node
                .rows
                .iter()
                .map(|r| (r.node.as_str(), r.procs))
                .collect::<Vec<_>>(),
            [("n1", 1), ("n2", 2)]
        );
        let pins: Vec<(&str, Vec<i32>)> = job
            .nodes()
            .map(|(m, p)| (m.name.as_str(), p.iter().map(|p| p.pid).collect()))
            .collect();
        assert_eq!(pins, [("n1", vec![10]), ("n2", vec![20, 21])]);
        assert!(
            job.on("n2")
                .is_some_and(|(_, p)| p[0].by_name && p[0].start == 1020)
        );

        // User 1000: their rows only; job 8 does not exist for them, and
        // job 7 sums their two processes, not user 1001's third.
        let mine_index = build(
            &View::user(1000, Vec::new()),
            Arc::new(gathered()),
            rows_of(&g),
        );
        let mine = mine_index.build_jobs();
        assert_eq!(mine.ids(), [Arc::from("7")]);
        assert!(mine.get("8").is_none() && mine.id("8").is_none());
        let jobs = Table::<JobRow>::parse(&String::from_utf8_lossy(&mine.table)).unwrap();
        let all = Table::<JobRow>::parse(&String::from_utf8_lossy(&admin.table)).unwrap();
        let (m, a) = (&jobs.rows[0], &all.rows[0]);
        assert_eq!((m.procs, m.user.as_str()), (2, "u1000"));
        assert!(m.cpu_tenths < a.cpu_tenths && m.rss_kb < a.rss_kb);
        let theirs =
            Table::<PsRow>::parse(&String::from_utf8_lossy(&mine_index.ps.to_bytes())).unwrap();
        assert!(theirs.rows.iter().all(|r| r.user == "u1000"));
        let job_ps =
            Table::<PsRow>::parse(&String::from_utf8_lossy(&mine.get("7").unwrap().ps)).unwrap();
        assert_eq!(
            job_ps.rows.iter().map(|r| r.pid).collect::<Vec<_>>(),
            [10, 20]
        );
    }
}

//! [`SimNodeFs`]: one simulated node's `/proc` as a [`Filesystem`], with
//! the agent's shapes: length 0 and `qid.version` 0 for files, readdir
//! cookies = index + 1 with `.` and `..` first, symlinks that are read
//! with readlink and never opened, the `/.gproc/ps` summary (with its
//! generation) and the deltas since one (`/.gproc/since/TOKEN`,
//! [`crate::format::delta`]), ENOENT for a process that exited (or whose
//! pid was reused) since it was walked to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::control::{SignalOutcome, SignalRecord};
use super::model::{Hold, NodeAt, NodeModel, ProcRec, Sim};
use super::render::{self, NodeFile, ProcCtx, ProcFile};
use super::tables::{Role, user_name};
use crate::format::ctl;
use crate::format::delta::{self, History, SINCE_DIR, Token};
use crate::format::summary::{self, GPROC_DIR, SUMMARY_FILE};
use crate::proto::{
    DirEntry, Metadata, Qid, dt, errno, qid_type_from_mode, qt, s_if, time_from_wire,
};
use crate::server::{AttachRequest, Contents, Filesystem, FsError, FsResult, Identity, OpenFlags};

/// A process's control file (with [`super::SimOptions::control`]).
const CTL_FILE: &str = "ctl";

/// qid.path of synthesized files: the agent's values, so a client sees the
/// same numbers from an agent and from the simulator.
const SYNTH_QID: u64 = 1 << 63;

/// Which file a fid names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Root,
    Node(NodeFile),
    SelfLink,
    GprocDir,
    Summary,
    /// `/.gproc/since`.
    SinceDir,
    /// `/.gproc/since/TOKEN`: the delta since that summary.
    Since(Token),
    /// Something of process `pid` (started at `start`, so a reused pid is
    /// a different process); `tid` 0 is the process level, otherwise
    /// `task/<tid>`.
    Proc {
        pid: u32,
        start: u64,
        tid: u32,
        item: Item,
    },
}

/// A process-level entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Dir,
    File(ProcFile),
    TaskDir,
    FdDir,
    Fd(u32),
    Exe,
    Cwd,
    /// `ctl` (with control on): writing a command signals the process.
    Ctl,
}

/// A process directory's entries, in the kernel's order.
const PROC_ITEMS: &[(&str, Item)] = &[
    ("task", Item::TaskDir),
    ("fd", Item::FdDir),
    ("environ", Item::File(ProcFile::Environ)),
    ("status", Item::File(ProcFile::Status)),
    ("comm", Item::File(ProcFile::Comm)),
    ("cmdline", Item::File(ProcFile::Cmdline)),
    ("stat", Item::File(ProcFile::Stat)),
    ("statm", Item::File(ProcFile::Statm)),
    ("maps", Item::File(ProcFile::Maps)),
    ("cwd", Item::Cwd),
    ("exe", Item::Exe),
    ("io", Item::File(ProcFile::Io)),
    ("cgroup", Item::File(ProcFile::Cgroup)),
];

/// Node-wide files of the root, in listing order.
const NODE_FILES: &[(&str, NodeFile)] = &[
    ("cpuinfo", NodeFile::Cpuinfo),
    ("loadavg", NodeFile::Loadavg),
    ("meminfo", NodeFile::Meminfo),
    ("stat", NodeFile::Stat),
    ("uptime", NodeFile::Uptime),
    ("version", NodeFile::Version),
];

impl Item {
    fn code(self) -> u64 {
        match self {
            Item::Dir => 0,
            // After the codes of the other items (files are 1..=8).
            Item::File(ProcFile::Cgroup) => 13,
            Item::File(f) => 1 + f as u64,
            Item::TaskDir => 9,
            Item::FdDir => 10,
            Item::Exe => 11,
            Item::Cwd => 12,
            Item::Ctl => 14,
            Item::Fd(n) => 16 + u64::from(n),
        }
    }

    fn mode(self) -> u32 {
        match self {
            Item::Dir | Item::TaskDir => s_if::DIR | 0o555,
            Item::FdDir => s_if::DIR | 0o500,
            Item::Fd(_) => s_if::LNK | 0o700,
            Item::Exe | Item::Cwd => s_if::LNK | 0o777,
            // Its owner may write it, so a shell's `>` through v9fs is
            // allowed where the signal would be.
            Item::Ctl => s_if::REG | 0o200,
            Item::File(ProcFile::Environ | ProcFile::Io) => s_if::REG | 0o400,
            Item::File(_) => s_if::REG | 0o444,
        }
    }

    fn dt(self) -> u8 {
        dt::from_mode(self.mode())
    }

    fn qtype(self) -> u8 {
        qid_type_from_mode(self.mode())
    }
}

impl Entry {
    /// A qid.path unique in the node's tree: procfs-like small numbers for
    /// node files, and for processes `1<<62 | pid<<34 | tid<<12 | item`.
    fn qid(self) -> Qid {
        let (ty, path) = match self {
            Entry::Root => (qt::DIR, 1),
            Entry::Node(f) => (qt::FILE, 0x100 + f as u64),
            Entry::SelfLink => (qt::SYMLINK, 0x1ff),
            Entry::GprocDir => (qt::DIR, SYNTH_QID | 1),
            Entry::Summary => (qt::FILE, SYNTH_QID | 2),
            Entry::SinceDir => (qt::DIR, SYNTH_QID | 3),
            // Distinct per token (the low bits of a generation are a
            // permutation's), and apart from the other synthesized files.
            Entry::Since(t) => (qt::FILE, SYNTH_QID | 1 << 62 | t.generation >> 2),
            Entry::Proc { pid, tid, item, .. } => (
                item.qtype(),
                1 << 62
                    | (u64::from(pid) & 0x3f_ffff) << 34
                    | (u64::from(tid) & 0x3f_ffff) << 12
                    | item.code() & 0xfff,
            ),
        };
        Qid {
            ty,
            version: 0,
            path,
        }
    }

    fn is_dir(self) -> bool {
        self.qid().is_dir()
    }
}

/// Where a fid is: which file.
#[derive(Debug, Clone, Copy)]
pub struct SimNode {
    entry: Entry,
}

#[cfg(test)]
impl SimNode {
    /// The qid of the named file, for tests.
    pub(crate) fn entry_qid(&self) -> Qid {
        self.entry.qid()
    }
}

/// One simulated node's `/proc`, served over 9P.
#[derive(Debug, Clone)]
pub struct SimNodeFs {
    sim: Arc<Sim>,
    index: usize,
    /// The summaries served lately, per reader uid, for deltas.
    history: Arc<Mutex<History<u32>>>,
}

impl SimNodeFs {
    /// Node `index` of `sim`.
    ///
    /// # Panics
    /// `index` is not a node of `sim`.
    pub fn new(sim: Arc<Sim>, index: usize) -> Self {
        assert!(index < sim.nodes.len(), "node {index} out of range");
        // A new epoch per start, so a restarted simulator never takes a
        // token of its previous run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let epoch = crate::sys::rng::hash(&[nanos, u64::from(std::process::id()), index as u64]);
        Self {
            sim,
            index,
            history: Arc::new(Mutex::new(History::new(epoch))),
        }
    }

    fn node(&self) -> &NodeModel {
        &self.sim.nodes[self.index]
    }

    /// The node's hostname.
    pub fn hostname(&self) -> String {
        self.sim.node_name(self.index)
    }

    /// How long a slow node waits before its next reply (`None`: not a
    /// slow node). Applied to every reply by the simulated cluster's
    /// connections, since reads of open files never reach the filesystem.
    pub(crate) fn request_delay(&self) -> Option<Duration> {
        self.sim.slow_delay(self.node())
    }

    /// The process an entry belongs to, if it still exists.
    fn live(&self, pid: u32, start: u64, tid: u32) -> FsResult<(ProcRec, u64)> {
        let (p, now) = self
            .node()
            .process(&self.sim, pid, Some(start))
            .ok_or_else(|| FsError::NOENT.with(format!("process {pid} exited")))?;
        if tid != 0 && !p.has_thread(tid) {
            return Err(FsError::NOENT.with(format!("thread {tid} of {pid} exited")));
        }
        Ok((p, now))
    }

    fn ctx(&self, p: ProcRec, now: u64) -> ProcCtx<'_> {
        ProcCtx {
            sim: &self.sim,
            node: self.node(),
            p,
            now,
        }
    }

    fn walk_entry(&self, dir: Entry, name: &str) -> FsResult<Entry> {
        let noent = || FsError::NOENT.with(name.to_string());
        Ok(match (dir, name) {
            (_, ".") => dir,
            (Entry::Root, "..") => Entry::Root,
            (Entry::Root, GPROC_DIR) if self.node().summary => Entry::GprocDir,
            (Entry::Root, "self") => Entry::SelfLink,
            (Entry::Root, _) => {
                if let Some((_, f)) = NODE_FILES.iter().find(|(n, _)| *n == name) {
                    return Ok(Entry::Node(*f));
                }
                // `<pid>.<start>` names the process started then, as on
                // agents (`pinned_walk` in the summary).
                let (pid, want) = match summary::parse_pinned_name(name) {
                    Some((pid, start)) => (u32::try_from(pid).map_err(|_| noent())?, Some(start)),
                    None => (parse_pid(name).ok_or_else(noent)?, None),
                };
                let (p, _) = self
                    .node()
                    .process(&self.sim, pid, want)
                    .ok_or_else(noent)?;
                Entry::Proc {
                    pid,
                    start: p.start,
                    tid: 0,
                    item: Item::Dir,
                }
            }
            (Entry::GprocDir, "..") => Entry::Root,
            (Entry::GprocDir, SUMMARY_FILE) => Entry::Summary,
            (Entry::GprocDir, SINCE_DIR) if self.node().deltas => Entry::SinceDir,
            (Entry::SinceDir, "..") => Entry::GprocDir,
            (Entry::SinceDir, _) => Entry::Since(Token::parse(name.as_bytes()).ok_or_else(noent)?),
            (
                Entry::Proc {
                    pid,
                    start,
                    tid,
                    item,
                },
                _,
            ) => {
                let (p, now) = self.live(pid, start, tid)?;
                let at = |tid, item| Entry::Proc {
                    pid,
                    start,
                    tid,
                    item,
                };
                match (item, name) {
                    (Item::Dir, "..") if tid == 0 => Entry::Root,
                    (Item::Dir, "..") => at(0, Item::TaskDir),
                    (Item::TaskDir | Item::FdDir, "..") => at(tid, Item::Dir),
                    (Item::Dir, CTL_FILE) if tid == 0 && self.sim.opts.control => at(0, Item::Ctl),
                    (Item::Dir, _) => {
                        let (_, it) = PROC_ITEMS
                            .iter()
                            .find(|(n, it)| *n == name && !(tid != 0 && *it == Item::TaskDir))
                            .ok_or_else(noent)?;
                        at(tid, *it)
                    }
                    (Item::TaskDir, _) => {
                        let t = parse_pid(name)
                            .filter(|&t| p.has_thread(t))
                            .ok_or_else(noent)?;
                        at(t, Item::Dir)
                    }
                    (Item::FdDir, _) => {
                        let fd = parse_pid(name)
                            .filter(|&fd| fd < render::fd_count(&self.ctx(p, now)))
                            .ok_or_else(noent)?;
                        at(tid, Item::Fd(fd))
                    }
                    _ => return Err(FsError::NOTDIR),
                }
            }
            _ => return Err(noent()),
        })
    }

    fn listing(&self, e: Entry) -> FsResult<Vec<DirEntry>> {
        let qid = e.qid();
        let mut out = vec![dirent(qid, dt::DIR, "."), dirent(qid, dt::DIR, "..")];
        match e {
            Entry::Root => {
                let snap = self.node().snapshot(&self.sim);
                if self.node().summary {
                    out.push(dirent(Entry::GprocDir.qid(), dt::DIR, GPROC_DIR));
                }
                for (name, f) in NODE_FILES {
                    out.push(dirent(Entry::Node(*f).qid(), dt::REG, name));
                    if *name == "meminfo" {
                        out.push(dirent(Entry::SelfLink.qid(), dt::LNK, "self"));
                    }
                }
                for p in &snap.procs {
                    let pe = Entry::Proc {
                        pid: p.pid,
                        start: p.start,
                        tid: 0,
                        item: Item::Dir,
                    };
                    out.push(dirent(pe.qid(), dt::DIR, &p.pid.to_string()));
                }
            }
            Entry::GprocDir => {
                out.push(dirent(Entry::Summary.qid(), dt::REG, SUMMARY_FILE));
                if self.node().deltas {
                    out.push(dirent(Entry::SinceDir.qid(), dt::DIR, SINCE_DIR));
                }
            }
            // Tokens are a reader's own: none is listed.
            Entry::SinceDir => {}
            Entry::Proc {
                pid,
                start,
                tid,
                item,
            } => {
                let (p, now) = self.live(pid, start, tid)?;
                let at = |tid, item| Entry::Proc {
                    pid,
                    start,
                    tid,
                    item,
                };
                match item {
                    Item::Dir => {
                        for (name, it) in PROC_ITEMS {
                            if tid != 0 && *it == Item::TaskDir {
                                continue;
                            }
                            out.push(dirent(at(tid, *it).qid(), it.dt(), name));
                        }
                        if tid == 0 && self.sim.opts.control {
                            out.push(dirent(at(0, Item::Ctl).qid(), dt::REG, CTL_FILE));
                        }
                    }
                    Item::TaskDir => {
                        for t in p.pid..p.pid + u32::from(p.threads) {
                            out.push(dirent(at(t, Item::Dir).qid(), dt::DIR, &t.to_string()));
                        }
                    }
                    Item::FdDir => {
                        for fd in 0..render::fd_count(&self.ctx(p, now)) {
                            out.push(dirent(
                                at(tid, Item::Fd(fd)).qid(),
                                dt::LNK,
                                &fd.to_string(),
                            ));
                        }
                    }
                    _ => return Err(FsError::NOTDIR),
                }
            }
            _ => return Err(FsError::NOTDIR),
        }
        Ok(out)
    }

    fn contents(&self, e: Entry) -> FsResult<Vec<u8>> {
        match e {
            Entry::Node(f) => {
                let snap = self.node().snapshot(&self.sim);
                Ok(render::node_file(&self.sim, self.node(), &snap, f))
            }
            Entry::Summary | Entry::Since(_) => Err(FsError::IO.with("served by open")),
            Entry::Proc {
                pid,
                start,
                tid,
                item: Item::File(f),
            } => {
                let (p, now) = self.live(pid, start, tid)?;
                let ctx = self.ctx(p, now);
                let tid = if tid == 0 { pid } else { tid };
                Ok(match f {
                    ProcFile::Cgroup => render::cgroup(&ctx),
                    ProcFile::Cmdline => render::cmdline(&ctx),
                    ProcFile::Comm => render::comm(&ctx),
                    ProcFile::Environ => render::environ(&ctx),
                    ProcFile::Io => render::io(&ctx),
                    ProcFile::Maps => {
                        let huge = if pid == self.node().huge_pid {
                            self.sim.opts.huge_bytes
                        } else {
                            0
                        };
                        render::maps(&ctx, huge)
                    }
                    ProcFile::Stat => render::stat(&ctx, tid),
                    ProcFile::Statm => render::statm(&ctx),
                    ProcFile::Status => render::status(&ctx, tid),
                })
            }
            _ => Err(FsError::ISDIR),
        }
    }

    /// `/.gproc/ps` as served to `who`: the summary now, with a new
    /// generation kept for deltas.
    fn served_summary(&self, who: &Identity) -> Arc<[u8]> {
        let bytes = self.summary().encode();
        if !self.node().deltas {
            return bytes.into();
        }
        crate::sys::lock(&self.history).record(&who.uid, &bytes)
    }

    /// `/.gproc/since/TOKEN` for `who`: the delta from the summary of
    /// `token` they were served to the summary now (which becomes theirs);
    /// ENOENT for a token that is not theirs or forgotten.
    fn served_delta(&self, who: &Identity, token: Token) -> FsResult<Vec<u8>> {
        let base = crate::sys::lock(&self.history)
            .get(&who.uid, token)
            .ok_or_else(|| FsError::NOENT.with(format!("no summary {token} here")))?;
        let new = self.served_summary(who);
        delta::diff(&base, &new).map_err(|e| FsError::IO.with(format!("delta: {e}")))
    }

    fn summary_at(&self, snap: &NodeAt) -> crate::format::summary::NodeSummary {
        render::summary(&self.sim, self.node(), snap, self.hostname())
    }

    /// The node summary now, as `/.gproc/ps` would serve it.
    pub fn summary(&self) -> crate::format::summary::NodeSummary {
        self.summary_at(&self.node().snapshot(&self.sim))
    }

    fn meta(&self, e: Entry) -> FsResult<Metadata> {
        let sim = &self.sim;
        let node = self.node();
        let now_ticks = sim.clock.ticks();
        let wall = |ticks_since_boot: u64| {
            let ms = (sim.clock.epoch_ms() / 10).saturating_sub(node.uptime0) * 10
                + ticks_since_boot * 10;
            time_from_wire(ms / 1000, ms % 1000 * 1_000_000)
        };
        let root_meta = Metadata::synthetic;
        let now = wall(node.uptime0 + now_ticks);
        Ok(match e {
            Entry::Root => root_meta(e.qid(), "/", s_if::DIR | 0o555, wall(0)),
            Entry::Node(f) => {
                let name = NODE_FILES
                    .iter()
                    .find(|(_, g)| *g == f)
                    .map_or("", |(n, _)| n);
                root_meta(e.qid(), name, s_if::REG | 0o444, now)
            }
            Entry::SelfLink => root_meta(e.qid(), "self", s_if::LNK | 0o777, wall(0)),
            Entry::GprocDir => root_meta(e.qid(), GPROC_DIR, s_if::DIR | 0o555, now),
            Entry::Summary => root_meta(e.qid(), SUMMARY_FILE, s_if::REG | 0o444, now),
            Entry::SinceDir => root_meta(e.qid(), SINCE_DIR, s_if::DIR | 0o555, now),
            Entry::Since(t) => root_meta(e.qid(), &t.to_string(), s_if::REG | 0o444, now),
            Entry::Proc {
                pid,
                start,
                tid,
                item,
            } => {
                let (p, _) = self.live(pid, start, tid)?;
                let name = match item {
                    Item::Dir if tid != 0 => tid.to_string(),
                    Item::Dir => pid.to_string(),
                    Item::Fd(n) => n.to_string(),
                    Item::Ctl => CTL_FILE.to_string(),
                    _ => PROC_ITEMS
                        .iter()
                        .find(|(_, it)| *it == item)
                        .map_or_else(String::new, |(n, _)| (*n).to_string()),
                };
                let t = wall(p.start);
                let user = user_name(p.uid);
                Metadata {
                    qid: e.qid(),
                    name: Some(name),
                    mode: item.mode(),
                    uid: Some(p.uid),
                    gid: Some(p.uid),
                    user: Some(user.clone()),
                    group: Some(user),
                    nlink: Some(if e.is_dir() { 2 } else { 1 }),
                    atime: t,
                    mtime: t,
                    ctime: Some(t),
                    ..Metadata::default()
                }
            }
        })
    }
}

impl SimNodeFs {
    /// Applies the `ctl` command in `data` from `who` to process `pid`
    /// started at `start`, and records it (see [`super::control`]).
    fn signal(&self, who: &Identity, pid: u32, start: u64, data: &[u8]) -> FsResult<()> {
        let name = self.hostname();
        let record = |signal, outcome, comm: &str| {
            self.sim.signals.push(
                &name,
                comm,
                who.name.as_deref(),
                SignalRecord {
                    node: self.index,
                    pid,
                    start,
                    uid: who.uid,
                    signal,
                    outcome,
                },
            );
        };
        let command = match ctl::Command::parse(data) {
            Ok(c) => c,
            Err(e) => {
                record(None, SignalOutcome::Refused(errno::EINVAL), "?");
                return Err(FsError::INVAL.with(e.to_string()));
            }
        };
        let (outcome, p) = self
            .node()
            .signal(&self.sim, pid, start, who.uid, command.signal);
        let comm = p.map_or("?", |p| &*self.sim.tables.cmd(p.cmd).comm);
        record(Some(command.signal), outcome, comm);
        match outcome {
            SignalOutcome::Refused(n) => Err(FsError::new(n).with(format!(
                "{} to {pid}: {}",
                command.signal_name(),
                if n == errno::EPERM {
                    "not the writer's process"
                } else {
                    "it exited"
                }
            ))),
            _ => Ok(()),
        }
    }
}

fn dirent(qid: Qid, ty: u8, name: &str) -> DirEntry {
    DirEntry {
        qid,
        offset: 0,
        ty,
        name: name.to_string(),
    }
}

/// A pid, tid or fd as a directory name: decimal, no sign, no leading
/// zeros (`01` is not a process, as in procfs).
fn parse_pid(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    name.parse().ok()
}

impl Filesystem for SimNodeFs {
    type Node = SimNode;

    async fn attach(&self, req: &AttachRequest) -> FsResult<(SimNode, Qid)> {
        let a = req.aname.trim_end_matches('/');
        if !(a.is_empty() || a == "/proc") {
            return Err(FsError::NOENT.with(format!(
                "no tree named {:?} (use \"\" or \"/proc\")",
                req.aname
            )));
        }
        let e = Entry::Root;
        Ok((SimNode { entry: e }, e.qid()))
    }

    async fn walk(&self, _who: &Identity, dir: &SimNode, name: &str) -> FsResult<(SimNode, Qid)> {
        let e = self.walk_entry(dir.entry, name)?;
        Ok((SimNode { entry: e }, e.qid()))
    }

    async fn getattr(&self, _who: &Identity, fid: &SimNode) -> FsResult<Metadata> {
        self.meta(fid.entry)
    }

    async fn open(&self, who: &Identity, fid: &SimNode, flags: OpenFlags) -> FsResult<Contents> {
        let e = fid.entry;
        let ctl = matches!(
            e,
            Entry::Proc {
                item: Item::Ctl,
                ..
            }
        );
        if (flags.write || flags.truncate) && !ctl {
            return Err(FsError::ROFS);
        }
        match e {
            Entry::Proc {
                pid, start, tid, ..
            } if ctl => {
                if flags.read {
                    return Err(FsError::ACCES.with(
                        "ctl is write-only: write kill, term, stop, cont, signal N or signal NAME",
                    ));
                }
                self.live(pid, start, tid)?;
                Ok(Contents::File(Bytes::new()))
            }
            Entry::SelfLink
            | Entry::Proc {
                item: Item::Exe | Item::Cwd | Item::Fd(_),
                ..
            } => {
                Err(FsError::new(errno::ELOOP).with("symlinks are read with readlink, not opened"))
            }
            _ if e.is_dir() => Ok(Contents::Dir(self.listing(e)?)),
            // Taken again by a read at 0, as the agent's is (the summary
            // says `fresh_at_zero`).
            Entry::Summary => Ok(Contents::Fresh(Bytes::from(
                self.served_summary(who).to_vec(),
            ))),
            Entry::Since(t) => Ok(Contents::File(Bytes::from(self.served_delta(who, t)?))),
            _ => {
                // Huge files take a while to render: off the async threads.
                let this = self.clone();
                let data = if matches!(e, Entry::Proc { item: Item::File(ProcFile::Maps), pid, .. } if pid == self.node().huge_pid)
                {
                    tokio::task::spawn_blocking(move || this.contents(e))
                        .await
                        .unwrap_or_else(|j| Err(FsError::IO.with(format!("render failed: {j}"))))?
                } else {
                    this.contents(e)?
                };
                Ok(Contents::File(Bytes::from(data)))
            }
        }
    }

    async fn truncate(&self, _who: &Identity, fid: &SimNode) -> FsResult<()> {
        match fid.entry {
            Entry::Proc {
                pid,
                start,
                tid,
                item: Item::Ctl,
            } => self.live(pid, start, tid).map(|_| ()),
            _ => Err(FsError::ROFS),
        }
    }

    async fn write(
        &self,
        who: &Identity,
        fid: &SimNode,
        _offset: u64,
        data: Bytes,
    ) -> FsResult<u32> {
        let Entry::Proc {
            pid,
            start,
            item: Item::Ctl,
            ..
        } = fid.entry
        else {
            return Err(FsError::ROFS);
        };
        self.signal(who, pid, start, &data)?;
        u32::try_from(data.len()).map_err(|_| FsError::INVAL)
    }

    async fn readlink(&self, _who: &Identity, fid: &SimNode) -> FsResult<String> {
        match fid.entry {
            Entry::SelfLink => Ok(self.node().agent_pid.to_string()),
            Entry::Proc {
                pid,
                start,
                tid,
                item,
            } => {
                let (p, now) = self.live(pid, start, tid)?;
                let cmd = self.sim.tables.cmd(p.cmd);
                match item {
                    Item::Exe if p.role == Role::Kernel => {
                        Err(FsError::NOENT.with("kernel threads have no exe"))
                    }
                    Item::Exe if p.hold == Hold::Zombie => {
                        Err(FsError::NOENT.with("a zombie has no exe"))
                    }
                    Item::Exe => Ok(cmd.exe.to_string()),
                    Item::Cwd => Ok(cmd.cwd.to_string()),
                    Item::Fd(n) => Ok(render::fd_target(&self.ctx(p, now), n)),
                    _ => Err(FsError::INVAL),
                }
            }
            _ => Err(FsError::INVAL),
        }
    }
}

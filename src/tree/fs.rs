//! The tree as a [`Filesystem`]: where a fid is ([`TreeNode`]), attach,
//! walk, getattr, open, readlink and directory listings, each as the
//! fid's view allows.

use std::collections::HashSet;
use std::sync::Arc;

use crate::client::pool::User;
use crate::format::rank::{RankKey, RankQuery};
use crate::format::summary::{self, GPROC_DIR};
use crate::proto::{DirEntry, Metadata, Qid, dt, errno, s_if};
use crate::server::{AttachRequest, Contents, Filesystem, FsError, FsResult, Identity, OpenFlags};
use crate::view::View;

use super::Tree;
use super::members::Member;
use super::pin::{Pin, wire_path};
use super::qid::{
    FIRST_FILE_QID, GPROC_DIR_QID, JOBDIR_QID, JobPart, KIND_ALIAS, KIND_JOB, KIND_NODE,
    PIDDIR_QID, ROOT_QID, TOP_DIR_QID, alias_qid, job_qid, map_qid, node_root_qid, synth_qid,
    top_qid,
};
use super::render::Synth;

/// Where a fid is.
#[derive(Clone)]
enum Loc {
    Root,
    File(Synth),
    PidDir,
    /// `/.gproc`, administrators only: the merged summary's directory.
    GprocDir,
    /// `/job`: the visible jobs.
    JobDir,
    /// `/top`: the rankings of `/ps` ([`crate::format::rank`]).
    TopDir,
    /// `/top/<query>`.
    Top(Arc<RankQuery>),
    /// `/job/<id>`.
    Job(Arc<str>),
    /// `/job/<id>/ps`, `nodes` or `ctl`.
    JobFile(Arc<str>, JobPart),
    /// `/job/<id>/<node>`: the job's processes there.
    JobNode(Arc<str>, Arc<Member>),
    /// A node's file; `path` is node-relative ("/" for its root); `pin`
    /// the process its first component named when walked; `alias`: under
    /// `/pid`; `job`: under `/job/<id>/<node>` (never at a node's root).
    Node {
        node: Arc<Member>,
        path: Arc<str>,
        alias: bool,
        pin: Option<Pin>,
        job: Option<Arc<str>>,
    },
}

impl Loc {
    /// Whether writes to it are commands: a process's `ctl` or a job's.
    fn is_ctl(&self) -> bool {
        match self {
            Loc::JobFile(_, JobPart::Ctl) => true,
            Loc::Node { path, .. } => is_ctl(path),
            _ => false,
        }
    }

    /// The job a location is in or under.
    fn job(&self) -> Option<&Arc<str>> {
        match self {
            Loc::Job(j) | Loc::JobFile(j, _) | Loc::JobNode(j, _) => Some(j),
            Loc::Node { job, .. } => job.as_ref(),
            _ => None,
        }
    }
}

/// The qid namespace of a node location.
fn node_kind(alias: bool, job: &Option<Arc<str>>) -> u64 {
    if job.is_some() {
        KIND_JOB
    } else if alias {
        KIND_ALIAS
    } else {
        KIND_NODE
    }
}

/// The name of a job file.
fn job_file_name(part: JobPart) -> &'static str {
    match part {
        JobPart::Ps => "ps",
        JobPart::Nodes => "nodes",
        JobPart::Ctl => "ctl",
        JobPart::Dir | JobPart::Node => "",
    }
}

/// Where a fid of the merged tree is, and the view last decided for it.
#[derive(Clone)]
pub struct TreeNode {
    /// The identity's view, decided at attach or walk; decided again for
    /// any operation after the views changed (see [`Tree::current_view`]).
    pub(super) view: Arc<View>,
    /// The views' generation `view` was decided at.
    generation: u64,
    /// Attached to one node's directory (`aname = "/NODE"`): `..` stops
    /// there, as at any attach root.
    rooted: bool,
    loc: Loc,
    pub(super) qid: Qid,
}

impl std::fmt::Debug for TreeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loc = match &self.loc {
            Loc::Root => "/".to_string(),
            Loc::File(Synth::Merged) => "/.gproc/ps".to_string(),
            Loc::File(s) => format!("/{}", s.name()),
            Loc::PidDir => "/pid".to_string(),
            Loc::GprocDir => "/.gproc".to_string(),
            Loc::JobDir => "/job".to_string(),
            Loc::TopDir => "/top".to_string(),
            Loc::Top(q) => format!("/top/{q}"),
            Loc::Job(j) => format!("/job/{j}"),
            Loc::JobFile(j, p) => format!("/job/{j}/{}", job_file_name(*p)),
            Loc::JobNode(j, n) => format!("/job/{j}/{}", n.name),
            Loc::Node {
                node,
                path,
                job: Some(j),
                ..
            } => format!("/job/{j}/{}{path}", node.name),
            Loc::Node { node, path, .. } => format!("/{}{path}", node.name),
        };
        f.debug_struct("TreeNode")
            .field("loc", &loc)
            .field("qid", &self.qid)
            .finish()
    }
}

/// The qid of a synthesized file.
fn file_qid(s: Synth) -> Qid {
    synth_qid(FIRST_FILE_QID + s as u64, false)
}

impl Tree {
    /// The view an operation on `fid` runs under, and its generation: the
    /// fid's own, or, when the views changed since it was decided (a
    /// reload, new allotments), decided again for `who`. Either way the
    /// fid's location must still be visible under it (a revoked node, a
    /// process no longer the user's): checked at every operation, not only
    /// at walk.
    ///
    /// # Errors
    /// ENOENT when the location is no longer visible.
    async fn current_view(&self, who: &Identity, fid: &TreeNode) -> FsResult<(Arc<View>, u64)> {
        let generation = self.views.generation();
        let view = if fid.generation == generation {
            fid.view.clone()
        } else {
            self.views.view_for(who)
        };
        // The process walked to must still be the one the fid names.
        if let Loc::Node {
            node, pin: Some(p), ..
        } = &fid.loc
            && self
                .proc_id(node, p.pid)
                .await?
                .is_none_or(|now| now.pin.start != p.start)
        {
            return Err(FsError::NOENT);
        }
        // A job exists while the view sees one of its processes (there
        // when the location is a job's node directory).
        if let Some(j) = fid.loc.job() {
            let index = self.job_index(&view).await;
            let index = index.jobs().await;
            let job = index.get(j).ok_or(FsError::NOENT)?;
            if let Loc::JobNode(_, n) = &fid.loc
                && job.on(&n.name).is_none()
            {
                return Err(FsError::NOENT);
            }
        }
        if view.admin {
            return Ok((view, generation));
        }
        let visible = match &fid.loc {
            Loc::Root | Loc::PidDir | Loc::JobDir | Loc::TopDir | Loc::Top(_) => true,
            Loc::Job(_) | Loc::JobFile(..) | Loc::JobNode(..) => true,
            Loc::GprocDir => false,
            Loc::File(s) => !matches!(s, Synth::Stats | Synth::Merged),
            Loc::Node { node, path, .. } => {
                self.node_visible(&view, node).await && self.path_visible(&view, node, path).await?
            }
        };
        if !visible {
            return Err(FsError::NOENT);
        }
        Ok((view, generation))
    }

    /// On whose behalf node files are read for an operation under `view`
    /// (the README's table): an administrator's as the service identity,
    /// a user's as that user, so the node's kernel decides what they get.
    fn asker(view: &View, who: &Identity) -> Option<User> {
        if view.admin {
            return None;
        }
        let name = match &who.name {
            Some(n) => Arc::from(n.as_str()),
            None => Arc::from(who.uid.to_string()),
        };
        Some(User { uid: who.uid, name })
    }

    /// Whether a node path is visible: admins see all; users see node-wide
    /// files and their own processes' directories, never a name starting
    /// with `.` at the node's root (the agent's `.gproc` summary holds
    /// every user's command lines).
    async fn path_visible(&self, view: &View, node: &Arc<Member>, path: &str) -> FsResult<bool> {
        if view.admin {
            return Ok(true);
        }
        let Some(first) = path.trim_start_matches('/').split('/').next() else {
            return Ok(true);
        };
        if first.starts_with('.') {
            return Ok(false);
        }
        // A process directory, by pid or by pinned name (`<pid>.<start>`,
        // which an agent resolves too: it must be judged as the pid is).
        let (pid, start) = match first.parse::<i32>() {
            Ok(pid) => (pid, None),
            Err(_) => match summary::parse_pinned_name(first) {
                Some((pid, start)) => (pid, Some(start)),
                None => return Ok(true),
            },
        };
        Ok(self.proc_id(node, pid).await?.is_some_and(|p| {
            start.is_none_or(|s| s == p.pin.start) && view.sees_process(p.ruid, p.euid)
        }))
    }

    /// The pin of a walk from a node's root to `name`: the process it
    /// names, ENOENT if there is none. Not a process directory: `None`.
    /// An administrator on a node without summaries is not pinned (that
    /// would rebuild the node's table from every process's files), nor
    /// where the node's processes cannot be told: the node decides.
    async fn pin_for(&self, view: &View, node: &Arc<Member>, name: &str) -> FsResult<Option<Pin>> {
        let Ok(pid) = name.parse::<i32>() else {
            return Ok(None);
        };
        if view.admin && self.lacks_summary(node.index) {
            return Ok(None);
        }
        match self.proc_id(node, pid).await {
            Ok(Some(p)) => Ok(Some(p.pin)),
            // The summary read just now found the node has none (the
            // first walk into it): as above, the node decides.
            Ok(None) if view.admin && self.lacks_summary(node.index) => Ok(None),
            Ok(None) => Err(FsError::NOENT),
            Err(_) if view.admin => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn child_path(parent: &str, name: &str) -> String {
        if parent == "/" {
            format!("/{name}")
        } else {
            format!("{parent}/{name}")
        }
    }

    fn parent_path(path: &str) -> Option<String> {
        if path == "/" {
            return None;
        }
        match path.rfind('/') {
            Some(0) => Some("/".into()),
            Some(i) => Some(path[..i].to_string()),
            None => Some("/".into()),
        }
    }

    /// Directory entries of an opened directory, `.` and `..` first.
    async fn list(
        &self,
        fid: &TreeNode,
        view: &View,
        user: Option<&User>,
    ) -> FsResult<Vec<DirEntry>> {
        let mut out = vec![
            DirEntry {
                qid: fid.qid,
                offset: 0,
                ty: dt::DIR,
                name: ".".into(),
            },
            DirEntry {
                qid: fid.qid,
                offset: 0,
                ty: dt::DIR,
                name: "..".into(),
            },
        ];
        match &fid.loc {
            Loc::Root => {
                for s in Synth::ALL {
                    // Counters of the whole cluster are for administrators.
                    if s == Synth::Stats && !view.admin {
                        continue;
                    }
                    out.push(DirEntry {
                        qid: file_qid(s),
                        offset: 0,
                        ty: dt::REG,
                        name: s.name().into(),
                    });
                }
                out.push(DirEntry {
                    qid: synth_qid(PIDDIR_QID, true),
                    offset: 0,
                    ty: dt::DIR,
                    name: "pid".into(),
                });
                out.push(DirEntry {
                    qid: synth_qid(JOBDIR_QID, true),
                    offset: 0,
                    ty: dt::DIR,
                    name: "job".into(),
                });
                out.push(DirEntry {
                    qid: synth_qid(TOP_DIR_QID, true),
                    offset: 0,
                    ty: dt::DIR,
                    name: "top".into(),
                });
                // `/.gproc` (administrators) is walked to, never listed:
                // it is for the aggregator above, not for browsing.
                for n in self.visible_nodes(view).await {
                    out.push(DirEntry {
                        qid: node_root_qid(KIND_NODE, n.index),
                        offset: 0,
                        ty: dt::DIR,
                        name: n.name.clone(),
                    });
                }
            }
            Loc::PidDir => {
                let ok = self.gather(view).await.ok;
                for (n, s) in ok {
                    for p in s.procs.iter().filter(|p| view.sees_process(p.ruid, p.euid)) {
                        out.push(DirEntry {
                            qid: alias_qid(n.index, p.pid),
                            offset: 0,
                            ty: dt::DIR,
                            name: format!("{}@{}", p.pid, n.name),
                        });
                    }
                }
            }
            Loc::JobDir => {
                let index = self.job_index(view).await;
                let index = index.jobs().await;
                for id in index.ids() {
                    out.push(DirEntry {
                        qid: job_qid(JobPart::Dir, self.job_number(id), 0),
                        offset: 0,
                        ty: dt::DIR,
                        name: id.to_string(),
                    });
                }
            }
            Loc::Job(id) => {
                let index = self.job_index(view).await;
                let index = index.jobs().await;
                let job = index.get(id).ok_or(FsError::NOENT)?;
                let num = self.job_number(id);
                let mut parts = vec![JobPart::Ps, JobPart::Nodes];
                if self.control.enabled {
                    parts.push(JobPart::Ctl);
                }
                for p in parts {
                    out.push(DirEntry {
                        qid: job_qid(p, num, 0),
                        offset: 0,
                        ty: dt::REG,
                        name: job_file_name(p).into(),
                    });
                }
                for (n, _) in job.nodes() {
                    out.push(DirEntry {
                        qid: job_qid(JobPart::Node, num, n.index),
                        offset: 0,
                        ty: dt::DIR,
                        name: n.name.clone(),
                    });
                }
            }
            Loc::JobNode(id, node) => {
                let index = self.job_index(view).await;
                let index = index.jobs().await;
                let (_, pins) = index
                    .get(id)
                    .and_then(|j| j.on(&node.name))
                    .ok_or(FsError::NOENT)?;
                // The node's own listing gives each directory's qid, as a
                // walk to it finds it.
                let ents = self.node_list(node, "/", user).await?;
                for p in pins {
                    let name = p.pid.to_string();
                    if let Some(e) = ents.iter().find(|e| e.name == name) {
                        out.push(DirEntry {
                            qid: map_qid(KIND_JOB, node.index, e.qid, node.is_below()),
                            offset: 0,
                            ty: dt::DIR,
                            name,
                        });
                    }
                }
            }
            Loc::JobFile(..) => return Err(FsError::NOTDIR),
            Loc::Node {
                node,
                path,
                alias,
                pin,
                job,
            } => {
                let kind = node_kind(*alias, job);
                let ents = self.node_list(node, &wire_path(path, *pin), user).await?;
                let visible_pids: Option<HashSet<i32>> = if !view.admin && &**path == "/" {
                    let s = self.node_summary(node).await?;
                    Some(
                        s.procs
                            .iter()
                            .filter(|p| view.sees_process(p.ruid, p.euid))
                            .map(|p| p.pid)
                            .collect(),
                    )
                } else {
                    None
                };
                for e in ents.iter() {
                    if let (Some(v), Ok(pid)) = (&visible_pids, e.name.parse::<i32>())
                        && !v.contains(&pid)
                    {
                        continue;
                    }
                    // Admin-only names at a node's root (see `path_visible`).
                    if visible_pids.is_some() && e.name.starts_with('.') {
                        continue;
                    }
                    if !self.control.enabled && is_ctl(&Self::child_path(path, &e.name)) {
                        continue;
                    }
                    out.push(DirEntry {
                        qid: map_qid(kind, node.index, e.qid, node.is_below()),
                        offset: 0,
                        ty: e.kind.dt(),
                        name: e.name.clone(),
                    });
                }
            }
            Loc::TopDir => {
                for key in RankKey::ALL {
                    let q = RankQuery::new(key);
                    out.push(DirEntry {
                        qid: top_qid(&q.to_string()),
                        offset: 0,
                        ty: dt::REG,
                        name: q.to_string(),
                    });
                }
            }
            Loc::GprocDir => out.push(DirEntry {
                qid: file_qid(Synth::Merged),
                offset: 0,
                ty: dt::REG,
                name: Synth::Merged.name().into(),
            }),
            Loc::File(_) | Loc::Top(_) => return Err(FsError::NOTDIR),
        }
        Ok(out)
    }

    /// The qid of a node path. At a node's root, from its (cached)
    /// listing, which serves every pid lookup with one node read. Deeper,
    /// from the parent's listing if the cache holds one (a `find` just
    /// listed it), else from the path's own metadata: one walk and
    /// getattr, which the getattr that follows a lookup then finds cached
    /// and the open after it reuses the fid of ([`Walked`]), instead of a
    /// listing of the whole directory per file. A name the listing lacks
    /// (a process newer than it) is asked of the node, and a "no"
    /// remembered for a moment.
    ///
    /// [`Walked`]: super::walked::Walked
    async fn lookup_qid(
        &self,
        node: &Arc<Member>,
        path: &str,
        kind: u64,
        user: Option<&User>,
        pin: Option<Pin>,
    ) -> FsResult<Qid> {
        let parent = Self::parent_path(path).unwrap_or_else(|| "/".into());
        let name = path.rsplit('/').next().unwrap_or_default();
        let wire_parent = wire_path(&parent, pin);
        let ents = if parent == "/" {
            Some(self.node_list(node, &wire_parent, user).await?)
        } else {
            self.node_list_kept(node, &wire_parent, user).await
        };
        if let Some(e) = ents.iter().flat_map(|v| v.iter()).find(|e| e.name == name) {
            return Ok(map_qid(kind, node.index, e.qid, node.is_below()));
        }
        let wire = wire_path(path, pin);
        if self.known_absent(node, user, &wire) {
            return Err(FsError::NOENT);
        }
        match self.node_meta(node, &wire, user).await {
            Ok(m) => Ok(map_qid(kind, node.index, m.qid, node.is_below())),
            Err(e) => {
                if e.errno == errno::ENOENT {
                    self.note_absent(node, user, &wire);
                }
                Err(e)
            }
        }
    }
}

/// Metadata of a synthesized file or directory: root's, read-only.
fn synth_meta(qid: Qid, name: &str) -> Metadata {
    let mode = if qid.is_dir() {
        s_if::DIR | 0o555
    } else {
        s_if::REG | 0o444
    };
    Metadata::synthetic(qid, name, mode, std::time::SystemTime::now())
}

impl Filesystem for Tree {
    type Node = TreeNode;

    async fn attach(&self, req: &AttachRequest) -> FsResult<(TreeNode, Qid)> {
        let generation = self.views.generation();
        let view = self.views.view_for(&req.who);
        let aname = req.aname.trim_matches('/');
        if aname.is_empty() {
            let qid = synth_qid(ROOT_QID, true);
            return Ok((
                TreeNode {
                    view,
                    generation,
                    rooted: false,
                    loc: Loc::Root,
                    qid,
                },
                qid,
            ));
        }
        // `aname = "/n17"` attaches straight to one node's /proc: a mount of
        // it is that node's /proc, so unmodified tools (`ps`) work on it.
        let node = self.visible_node(&view, aname).await.ok_or_else(|| {
            FsError::NOENT.with(format!(
                "no tree named {:?} here: this is a gproc aggregator, attach \"\" for its tree                  (an aggregator above it sets aname = \"\" for it) or \"/NODE\" for one node",
                req.aname
            ))
        })?;
        let qid = node_root_qid(KIND_NODE, node.index);
        let loc = Loc::Node {
            node,
            path: "/".into(),
            alias: false,
            pin: None,
            job: None,
        };
        Ok((
            TreeNode {
                view,
                generation,
                rooted: true,
                loc,
                qid,
            },
            qid,
        ))
    }

    async fn walk(&self, who: &Identity, dir: &TreeNode, name: &str) -> FsResult<(TreeNode, Qid)> {
        let (view, generation) = self.current_view(who, dir).await?;
        let user = Self::asker(&view, who);
        let user = user.as_ref();
        let (loc, qid) = match &dir.loc {
            Loc::Root => {
                if name == ".." {
                    (Loc::Root, dir.qid)
                } else if let Some(s) = Synth::ALL
                    .into_iter()
                    .find(|s| s.name() == name && (view.admin || *s != Synth::Stats))
                {
                    (Loc::File(s), file_qid(s))
                } else if name == "pid" {
                    (Loc::PidDir, synth_qid(PIDDIR_QID, true))
                } else if name == "job" {
                    (Loc::JobDir, synth_qid(JOBDIR_QID, true))
                } else if name == "top" {
                    (Loc::TopDir, synth_qid(TOP_DIR_QID, true))
                } else if name == GPROC_DIR && view.admin {
                    (Loc::GprocDir, synth_qid(GPROC_DIR_QID, true))
                } else {
                    let node = self.visible_node(&view, name).await.ok_or(FsError::NOENT)?;
                    let q = node_root_qid(KIND_NODE, node.index);
                    (
                        Loc::Node {
                            node,
                            path: "/".into(),
                            alias: false,
                            pin: None,
                            job: None,
                        },
                        q,
                    )
                }
            }
            Loc::JobDir => {
                if name == ".." {
                    (Loc::Root, synth_qid(ROOT_QID, true))
                } else {
                    let index = self.job_index(&view).await;
                    let index = index.jobs().await;
                    let id = index.id(name).ok_or(FsError::NOENT)?;
                    let q = job_qid(JobPart::Dir, self.job_number(&id), 0);
                    (Loc::Job(id), q)
                }
            }
            Loc::Job(id) => {
                let num = self.job_number(id);
                match name {
                    ".." => (Loc::JobDir, synth_qid(JOBDIR_QID, true)),
                    "ps" => (
                        Loc::JobFile(id.clone(), JobPart::Ps),
                        job_qid(JobPart::Ps, num, 0),
                    ),
                    "nodes" => (
                        Loc::JobFile(id.clone(), JobPart::Nodes),
                        job_qid(JobPart::Nodes, num, 0),
                    ),
                    "ctl" if self.control.enabled => (
                        Loc::JobFile(id.clone(), JobPart::Ctl),
                        job_qid(JobPart::Ctl, num, 0),
                    ),
                    _ => {
                        let index = self.job_index(&view).await;
                        let index = index.jobs().await;
                        let (node, _) = index
                            .get(id)
                            .and_then(|j| j.on(name))
                            .ok_or(FsError::NOENT)?;
                        let q = job_qid(JobPart::Node, num, node.index);
                        (Loc::JobNode(id.clone(), node.clone()), q)
                    }
                }
            }
            Loc::JobFile(..) => return Err(FsError::NOTDIR),
            Loc::JobNode(id, node) => {
                if name == ".." {
                    let q = job_qid(JobPart::Dir, self.job_number(id), 0);
                    (Loc::Job(id.clone()), q)
                } else {
                    // Only the job's processes, each pinned to the start
                    // it had in the summaries the job was found in.
                    let pid: i32 = name.parse().map_err(|_| FsError::NOENT)?;
                    let index = self.job_index(&view).await;
                    let index = index.jobs().await;
                    let pin = index
                        .get(id)
                        .and_then(|j| j.on(&node.name))
                        .and_then(|(_, pins)| pins.iter().find(|p| p.pid == pid).copied())
                        .ok_or(FsError::NOENT)?;
                    let path = format!("/{pid}");
                    if !self.node_visible(&view, node).await
                        || !self.path_visible(&view, node, &path).await?
                    {
                        return Err(FsError::NOENT);
                    }
                    let q = self
                        .lookup_qid(node, &path, KIND_JOB, user, Some(pin))
                        .await?;
                    (
                        Loc::Node {
                            node: node.clone(),
                            path: path.into(),
                            alias: false,
                            pin: Some(pin),
                            job: Some(id.clone()),
                        },
                        q,
                    )
                }
            }
            Loc::PidDir => {
                if name == ".." {
                    (Loc::Root, synth_qid(ROOT_QID, true))
                } else {
                    let (pid, nname) = name.split_once('@').ok_or(FsError::NOENT)?;
                    let pid: i32 = pid.parse().map_err(|_| FsError::NOENT)?;
                    let node = self
                        .visible_node(&view, nname)
                        .await
                        .ok_or(FsError::NOENT)?;
                    let path = format!("/{pid}");
                    if !self.path_visible(&view, &node, &path).await? {
                        return Err(FsError::NOENT);
                    }
                    let pin = self.pin_for(&view, &node, &path[1..]).await?;
                    if pin.is_none() {
                        // Not pinned: the node says whether it exists.
                        self.lookup_qid(&node, &path, KIND_ALIAS, user, None)
                            .await?;
                    }
                    let q = alias_qid(node.index, pid);
                    (
                        Loc::Node {
                            node,
                            path: path.into(),
                            alias: true,
                            pin,
                            job: None,
                        },
                        q,
                    )
                }
            }
            Loc::TopDir => {
                if name == ".." {
                    (Loc::Root, synth_qid(ROOT_QID, true))
                } else {
                    // Any well-formed query is there; a name that is not
                    // one is not (ENOENT, as an older aggregator answers).
                    let q = RankQuery::parse(name)
                        .map_err(|e| FsError::NOENT.with(format!("/top/{name}: {e}")))?;
                    let qid = top_qid(&q.to_string());
                    (Loc::Top(Arc::new(q)), qid)
                }
            }
            Loc::GprocDir => match name {
                ".." => (Loc::Root, synth_qid(ROOT_QID, true)),
                n if n == Synth::Merged.name() => {
                    (Loc::File(Synth::Merged), file_qid(Synth::Merged))
                }
                _ => return Err(FsError::NOENT),
            },
            Loc::File(_) | Loc::Top(_) => return Err(FsError::NOTDIR),
            Loc::Node {
                node,
                path,
                alias,
                pin,
                job,
            } => {
                let kind = node_kind(*alias, job);
                if name == ".." {
                    match Self::parent_path(path) {
                        None if dir.rooted => (dir.loc.clone(), dir.qid),
                        None => (Loc::Root, synth_qid(ROOT_QID, true)),
                        Some(_) if *alias && path.matches('/').count() == 1 => {
                            (Loc::PidDir, synth_qid(PIDDIR_QID, true))
                        }
                        Some(_) if job.is_some() && path.matches('/').count() == 1 => {
                            let id = job.clone().ok_or(FsError::NOENT)?;
                            let q = job_qid(JobPart::Node, self.job_number(&id), node.index);
                            (Loc::JobNode(id, node.clone()), q)
                        }
                        Some(p) => {
                            let (q, pin) = if p == "/" {
                                (node_root_qid(kind, node.index), None)
                            } else {
                                (self.lookup_qid(node, &p, kind, user, *pin).await?, *pin)
                            };
                            (
                                Loc::Node {
                                    node: node.clone(),
                                    path: p.into(),
                                    alias: *alias,
                                    job: job.clone(),
                                    pin,
                                },
                                q,
                            )
                        }
                    }
                } else if let Some((pid, start)) =
                    summary::parse_pinned_name(name).filter(|_| &**path == "/")
                {
                    // The pinned name an aggregator above this one walks
                    // by: that process and no other, or nothing.
                    let p = self
                        .proc_id(node, pid)
                        .await?
                        .filter(|p| p.pin.start == start)
                        .ok_or(FsError::NOENT)?;
                    if !view.admin && !view.sees_process(p.ruid, p.euid) {
                        return Err(FsError::NOENT);
                    }
                    let child = format!("/{pid}");
                    let q = self
                        .lookup_qid(node, &child, kind, user, Some(p.pin))
                        .await?;
                    (
                        Loc::Node {
                            node: node.clone(),
                            path: child.into(),
                            alias: *alias,
                            job: job.clone(),
                            pin: Some(p.pin),
                        },
                        q,
                    )
                } else {
                    let child = Self::child_path(path, name);
                    if is_ctl(&child) && !self.control.enabled {
                        return Err(FsError::NOENT);
                    }
                    if !self.path_visible(&view, node, &child).await? {
                        return Err(FsError::NOENT);
                    }
                    let pin = match pin {
                        Some(p) => Some(*p),
                        None if &**path == "/" => self.pin_for(&view, node, name).await?,
                        None => None,
                    };
                    let q = self.lookup_qid(node, &child, kind, user, pin).await?;
                    (
                        Loc::Node {
                            node: node.clone(),
                            path: child.into(),
                            alias: *alias,
                            job: job.clone(),
                            pin,
                        },
                        q,
                    )
                }
            }
        };
        Ok((
            TreeNode {
                view,
                generation,
                rooted: dir.rooted,
                loc,
                qid,
            },
            qid,
        ))
    }

    async fn getattr(&self, who: &Identity, fid: &TreeNode) -> FsResult<Metadata> {
        let (view, _) = self.current_view(who, fid).await?;
        match &fid.loc {
            Loc::Root => Ok(synth_meta(fid.qid, "/")),
            Loc::PidDir => Ok(synth_meta(fid.qid, "pid")),
            Loc::GprocDir => Ok(synth_meta(fid.qid, GPROC_DIR)),
            Loc::File(s) => Ok(synth_meta(fid.qid, s.name())),
            Loc::JobDir => Ok(synth_meta(fid.qid, "job")),
            Loc::TopDir => Ok(synth_meta(fid.qid, "top")),
            Loc::Top(q) => Ok(synth_meta(fid.qid, q.key.name())),
            Loc::Job(id) => Ok(synth_meta(fid.qid, id)),
            Loc::JobNode(_, n) => Ok(synth_meta(fid.qid, &n.name)),
            Loc::JobFile(_, JobPart::Ctl) => {
                // Anyone may write a command; each process's node decides.
                let mut m = synth_meta(fid.qid, "ctl");
                m.mode = s_if::REG | 0o222;
                Ok(m)
            }
            Loc::JobFile(_, p) => Ok(synth_meta(fid.qid, job_file_name(*p))),
            Loc::Node {
                node,
                path,
                alias,
                pin,
                ..
            } => {
                let name = if &**path == "/" {
                    node.name.clone()
                } else if *alias && path.matches('/').count() == 1 {
                    format!("{}@{}", &path[1..], node.name)
                } else {
                    path.rsplit('/').next().unwrap_or_default().to_string()
                };
                if &**path == "/" {
                    // The node directory exists even while the node is down.
                    return Ok(synth_meta(fid.qid, &name));
                }
                let m = self
                    .node_meta(
                        node,
                        &wire_path(path, *pin),
                        Self::asker(&view, who).as_ref(),
                    )
                    .await?;
                Ok(Metadata {
                    qid: fid.qid,
                    name: Some(name),
                    uid: Some(m.uid.unwrap_or(0)),
                    gid: Some(m.gid.unwrap_or(0)),
                    rdev: 0,
                    // Files are read whole at open: their size is unknown.
                    size: if m.mode & s_if::FMT == s_if::REG {
                        0
                    } else {
                        m.size
                    },
                    link_target: None,
                    ..(*m).clone()
                })
            }
        }
    }

    async fn open(&self, who: &Identity, fid: &TreeNode, flags: OpenFlags) -> FsResult<Contents> {
        let ctl = fid.loc.is_ctl();
        if (flags.write || flags.truncate) && !(ctl && self.control.enabled) {
            return Err(FsError::ROFS);
        }
        let (view, _) = self.current_view(who, fid).await?;
        if ctl {
            if flags.read {
                return Err(FsError::ACCES.with(
                    "ctl is write-only: write kill, term, stop, cont, signal N or signal NAME",
                ));
            }
            // Written through to the node at each write; nothing to hold.
            return Ok(Contents::File(bytes::Bytes::new()));
        }
        match &fid.loc {
            // Rendered per open and held by no cache: charged to the reader.
            Loc::File(Synth::Metrics) => Ok(Contents::File(
                Box::pin(self.render(&view, Synth::Metrics)).await,
            )),
            // Rendered tables are cached per view; the session shares them.
            // Served in the nodes' own buffers, not joined.
            Loc::File(Synth::Ps) => Ok(Contents::Chunks(
                Box::pin(self.job_index(&view)).await.ps.clone(),
            )),
            Loc::File(s) => Ok(Contents::Shared(Box::pin(self.render(&view, *s)).await)),
            // Ranked per open, for this reader.
            Loc::Top(q) => Ok(Contents::File(
                Box::pin(self.render_ranked(&view, q)).await?,
            )),
            Loc::JobFile(id, part) => {
                let index = self.job_index(&view).await;
                let index = index.jobs().await;
                let job = index.get(id).ok_or(FsError::NOENT)?;
                Ok(Contents::Shared(match part {
                    JobPart::Nodes => job.nodes.clone(),
                    _ => job.ps.clone(),
                }))
            }
            Loc::Node {
                node, path, pin, ..
            } if !fid.qid.is_dir() => {
                if fid.qid.is_symlink() {
                    return Err(FsError::new(errno::ELOOP).with("symlinks are read with readlink"));
                }
                let user = Self::asker(&view, who);
                Ok(Contents::File(
                    self.node_read(node, &wire_path(path, *pin), user.as_ref())
                        .await?,
                ))
            }
            _ => {
                let user = Self::asker(&view, who);
                Ok(Contents::Dir(
                    Box::pin(self.list(fid, &view, user.as_ref())).await?,
                ))
            }
        }
    }

    fn request_done(&self, op: &'static str, elapsed: std::time::Duration, ok: bool) {
        self.requests.record(op, elapsed, ok);
    }

    async fn readlink(&self, who: &Identity, fid: &TreeNode) -> FsResult<String> {
        let (view, _) = self.current_view(who, fid).await?;
        match &fid.loc {
            Loc::Node {
                node, path, pin, ..
            } if fid.qid.is_symlink() => {
                let user = Self::asker(&view, who);
                let wire = wire_path(path, *pin);
                Ok(self
                    .node_link(node, &wire, user.as_ref())
                    .await?
                    .to_string())
            }
            _ => Err(FsError::INVAL),
        }
    }

    async fn truncate(&self, who: &Identity, fid: &TreeNode) -> FsResult<()> {
        if fid.loc.is_ctl() && self.control.enabled {
            return self.current_view(who, fid).await.map(|_| ());
        }
        Err(FsError::ROFS)
    }

    async fn write(
        &self,
        who: &Identity,
        fid: &TreeNode,
        _offset: u64,
        data: bytes::Bytes,
    ) -> FsResult<u32> {
        if !fid.loc.is_ctl() || !self.control.enabled {
            return Err(FsError::ROFS);
        }
        let (view, _) = self.current_view(who, fid).await?;
        match &fid.loc {
            Loc::JobFile(id, _) => self.signal_job(&view, who, id, data).await,
            Loc::Node {
                node, path, pin, ..
            } => self.signal(&view, who, node, path, *pin, data).await,
            _ => Err(FsError::ROFS),
        }
    }
}

/// Whether a node path is a process's `ctl` file: `/<pid>/ctl`.
fn is_ctl(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_suffix("/ctl"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

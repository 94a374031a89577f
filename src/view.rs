//! Views: what one identity may see of the cluster.
//!
//! Views are on unless the config says `[views] mode = "off"` (a
//! single-user test setup, the demo): nothing else turns them off. An
//! administrator (uid 0 always, and the configured users and group
//! members; an empty list means root alone) sees everything. Anyone else
//! sees the nodes allotted to them (statically in the config and/or by a
//! periodically run command such as a scheduler query) and, on those
//! nodes, only processes whose real or effective uid is theirs; node-wide
//! files of their nodes are visible. A user with no allotment sees the
//! nodes where a process of theirs runs, decided per operation from the
//! node summaries (or nothing, with `unallotted = "nothing"`); an
//! allotment replaces that set rather than adding to it. Invisible things
//! do not exist for that user: the tree neither lists nor walks to them.
//!
//! With `allot_from_jobs`, a user is also allotted the nodes where a
//! process of theirs runs inside a batch job: the tree finds them in the
//! node summaries and sets them here ([`Views::set_job_allotments`]) each
//! time the summaries are refreshed.
//!
//! Group membership comes from this machine's user database
//! (`getgrouplist`), never from what a client claims.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::hostlist::Hostlist;
use crate::config::views::{
    AllotCommand, Allotment, Ident, Principal, Unallotted, ViewsConfig, ViewsMode,
    parse_allot_output,
};
use crate::server::Identity;
use crate::sys;

/// One identity's view of the cluster.
#[derive(Debug, Clone)]
pub struct View {
    /// Sees everything.
    pub admin: bool,
    /// The user's uid (processes with this real or effective uid are theirs).
    pub uid: u32,
    /// Hostlists of the nodes the user may see (ignored for admins).
    pub nodes: Vec<Hostlist>,
    /// No allotment: the nodes where a process of theirs runs (real or
    /// effective uid, per the node's summary) exist for them too. Decided
    /// by the tree at each operation, since processes come and go.
    pub where_they_run: bool,
    /// The [`Views::generation`] this view was decided at: tables built
    /// for it are not served to a view decided later.
    pub generation: u64,
}

impl View {
    /// The administrator's view: everything.
    pub fn admin() -> Arc<View> {
        Arc::new(View {
            admin: true,
            uid: 0,
            nodes: Vec::new(),
            where_they_run: false,
            generation: 0,
        })
    }

    /// A user's view: their processes on `nodes`.
    pub fn user(uid: u32, nodes: Vec<Hostlist>) -> Arc<View> {
        Arc::new(View {
            admin: false,
            uid,
            nodes,
            where_they_run: false,
            generation: 0,
        })
    }

    /// An unallotted user's view: their processes on the nodes where they
    /// run.
    pub fn where_they_run(uid: u32) -> Arc<View> {
        Arc::new(View {
            admin: false,
            uid,
            nodes: Vec::new(),
            where_they_run: true,
            generation: 0,
        })
    }

    /// Whether the node exists for this view whatever runs on it (an
    /// administrator, or an allotted node). With [`View::where_they_run`],
    /// a node for which this is false may still exist for the user: ask
    /// [`View::sees_node_running`] with its processes.
    pub fn sees_node(&self, name: &str) -> bool {
        self.admin || self.nodes.iter().any(|h| h.contains(name))
    }

    /// Whether the node exists for this view given the (real, effective)
    /// uids of the processes its summary shows.
    pub fn sees_node_running(
        &self,
        name: &str,
        mut uids: impl Iterator<Item = (u32, u32)>,
    ) -> bool {
        self.sees_node(name) || (self.where_they_run && uids.any(|(r, e)| self.sees_process(r, e)))
    }

    /// Whether what a node is running decides if it exists for this view.
    pub fn depends_on_processes(&self) -> bool {
        !self.admin && self.where_they_run
    }

    /// Whether a process with these uids exists for this view.
    pub fn sees_process(&self, ruid: u32, euid: u32) -> bool {
        self.admin || ruid == self.uid || euid == self.uid
    }
}

/// The view policy: admins and allotments, with the allotment command's
/// last good answer.
pub struct Views {
    cfg: RwLock<ViewsConfig>,
    /// Allotments from the command; kept when a run fails.
    dynamic: RwLock<Vec<Allotment>>,
    /// Allotments from jobs (`allot_from_jobs`), set by the tree.
    from_jobs: RwLock<Vec<Allotment>>,
    /// Bumped whenever what anyone may see can have changed (a reload, new
    /// allotments), so views decided earlier are decided again.
    generation: AtomicU64,
}

impl Views {
    /// A policy from the `[views]` config.
    pub fn new(cfg: ViewsConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg: RwLock::new(cfg),
            dynamic: RwLock::new(Vec::new()),
            from_jobs: RwLock::new(Vec::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// Views off: everyone is an administrator (`mode = "off"`; tests of
    /// what the tree serves, whoever asks).
    pub fn off() -> Arc<Self> {
        Self::new(ViewsConfig {
            mode: ViewsMode::Off,
            ..ViewsConfig::default()
        })
    }

    /// Replaces the config (reload); dynamic allotments stay until the next
    /// run of the (possibly new) command.
    pub fn set_config(&self, cfg: ViewsConfig) {
        *sys::write(&self.cfg) = cfg;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes each time the views may have changed: a view decided at
    /// another generation must be decided again before it is used.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the dynamic allotments (the command's output).
    pub fn set_dynamic(&self, a: Vec<Allotment>) {
        let mut d = sys::write(&self.dynamic);
        // The command runs every refresh; only a different answer changes
        // anyone's view.
        if *d != a {
            *d = a;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether allotments come from jobs too (`allot_from_jobs`).
    pub fn allots_from_jobs(&self) -> bool {
        let cfg = sys::read(&self.cfg);
        cfg.allot_from_jobs && cfg.mode == ViewsMode::On
    }

    /// Replaces the allotments from jobs: each user's nodes where a process
    /// of theirs runs in a batch job, as the summaries show now.
    pub fn set_job_allotments(&self, a: Vec<Allotment>) {
        let mut d = sys::write(&self.from_jobs);
        if *d != a {
            *d = a;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The view of `id` (resolved by the server's access policy).
    pub fn view_for(&self, id: &Identity) -> Arc<View> {
        // Read before the config: a change after this bumps it again, so a
        // view is never labelled newer than what it was decided from.
        let generation = self.generation();
        let mut view = self.decide(id);
        Arc::make_mut(&mut view).generation = generation;
        view
    }

    fn decide(&self, id: &Identity) -> Arc<View> {
        let cfg = sys::read(&self.cfg);
        // Only an explicit `mode = "off"` opens everything; an empty admin
        // list means root alone.
        if cfg.mode == ViewsMode::Off || id.uid == 0 {
            return View::admin();
        }
        let user_is = |i: &Ident| match i {
            Ident::Id(u) => *u == id.uid,
            Ident::Name(n) => id.name.as_deref() == Some(n.as_str()),
        };
        let in_group = |i: &Ident| match i {
            Ident::Id(g) => id.gids.contains(g),
            Ident::Name(n) => {
                crate::sys::users::gid_by_name(n).is_some_and(|g| id.gids.contains(&g))
            }
        };
        if cfg.admin_users.iter().any(user_is) || cfg.admin_groups.iter().any(in_group) {
            return View::admin();
        }
        let dynamic = sys::read(&self.dynamic);
        let from_jobs = sys::read(&self.from_jobs);
        let jobs: &[Allotment] = if cfg.allot_from_jobs { &from_jobs } else { &[] };
        let nodes = cfg
            .allot
            .iter()
            .chain(dynamic.iter())
            .chain(jobs.iter())
            .filter(|a| match &a.who {
                Principal::User(u) => user_is(u),
                Principal::Group(g) => in_group(g),
            })
            .map(|a| a.nodes.clone())
            .collect::<Vec<_>>();
        // An allotment replaces the nodes where they run: a user given part
        // of the cluster sees only their own processes on their own nodes.
        if nodes.is_empty() && cfg.unallotted == Unallotted::OwnProcesses {
            return View::where_they_run(id.uid);
        }
        View::user(id.uid, nodes)
    }

    /// Runs the allotment command every `refresh` until `shutdown`; a
    /// failed or slow run keeps the last good allotments and logs why.
    pub fn spawn_refresher(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let cmd = sys::read(&me.cfg).allot_command.clone();
                let Some(cmd) = cmd else {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                };
                match run_allot_command(&cmd).await {
                    Ok((allot, bad)) => {
                        for b in bad {
                            warn!("allot_command {:?}: {b}", cmd.argv);
                        }
                        info!("allot_command: {} allotments", allot.len());
                        me.set_dynamic(allot);
                    }
                    Err(e) => warn!(
                        "allot_command {:?} failed, keeping the last allotments: {e}",
                        cmd.argv
                    ),
                }
                tokio::select! {
                    _ = tokio::time::sleep(cmd.refresh) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// Runs the command once with its timeout.
///
/// # Errors
/// It cannot start, times out, or exits non-zero.
pub async fn run_allot_command(
    cmd: &AllotCommand,
) -> Result<(Vec<Allotment>, Vec<String>), String> {
    let (prog, args) = cmd.argv.split_first().ok_or("empty command")?;
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let out = tokio::time::timeout(cmd.timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("no answer within {:?}", cmd.timeout))?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{}: {}", out.status, err.trim()));
    }
    Ok(parse_allot_output(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> ViewsConfig {
        let full = format!("[[nodes]]\nnames = \"n[1-4]\"\naddress = \"{{name}}:564\"\n{text}");
        crate::config::Config::from_str(&full, "t.toml")
            .unwrap()
            .views
    }

    fn id(uid: u32, name: Option<&str>, gids: Vec<u32>) -> Identity {
        Identity {
            uid,
            name: name.map(str::to_string),
            gid: gids.first().copied(),
            gids,
            proof: crate::server::Proof::Peer,
        }
    }

    #[test]
    fn users_see_their_nodes_and_processes_only() {
        let v = View::user(1000, vec![Hostlist::parse("n1").unwrap()]);
        assert!(v.sees_node("n1") && !v.sees_node("n2"));
        assert!(v.sees_process(1000, 0) && v.sees_process(0, 1000) && !v.sees_process(0, 0));
        let a = View::admin();
        assert!(a.sees_node("n2") && a.sees_process(0, 0));
    }

    #[test]
    fn allotments_by_user_and_group_and_admins() {
        let views = Views::new(cfg(
            "[views]\nadmin_users = [\"root\", 4242]\n[[views.allot]]\nuser = 1000\nnodes = \"n[1-2]\"\n\
             [[views.allot]]\ngroup = 77\nnodes = \"n4\"\n",
        ));
        let alice = id(1000, Some("alice"), vec![1000, 77]);
        let v = views.view_for(&alice);
        assert!(
            !v.admin
                && v.sees_node("n1")
                && v.sees_node("n2")
                && !v.sees_node("n3")
                && v.sees_node("n4")
        );
        let bob = id(1001, Some("bob"), vec![1001]);
        let b = views.view_for(&bob);
        assert!(
            !b.sees_node("n1") && b.where_they_run,
            "no allotment: only the nodes where they run"
        );
        assert!(b.sees_node_running("n1", [(0, 0), (1001, 0)].into_iter()));
        assert!(!b.sees_node_running("n2", [(0, 0), (1000, 1000)].into_iter()));
        assert!(
            !v.where_they_run && !v.sees_node_running("n3", [(1000, 1000)].into_iter()),
            "an allotment replaces the nodes where they run"
        );
        assert!(views.view_for(&id(4242, None, vec![])).admin);
        assert!(views.view_for(&id(0, None, vec![])).admin);
        // Dynamic allotments add up with the static ones.
        let (dynamic, _) = parse_allot_output("bob n3\n");
        views.set_dynamic(dynamic);
        assert!(views.view_for(&bob).sees_node("n3"));
    }

    #[test]
    fn allotments_from_jobs_add_to_the_others_when_on() {
        let alice = id(1000, Some("alice"), vec![1000]);
        let job = |uid: u32, nodes: &str| Allotment {
            who: Principal::User(Ident::Id(uid)),
            nodes: Hostlist::parse(nodes).unwrap(),
        };
        let on = Views::new(cfg(
            "[views]\nallot_from_jobs = true\n[[views.allot]]\nuser = \"alice\"\nnodes = \"n1\"\n",
        ));
        assert!(on.allots_from_jobs());
        let g = on.generation();
        on.set_job_allotments(vec![job(1000, "n3"), job(1001, "n2")]);
        assert_eq!(on.generation(), g + 1);
        on.set_job_allotments(vec![job(1000, "n3"), job(1001, "n2")]);
        assert_eq!(on.generation(), g + 1, "the same answer changes nothing");
        let v = on.view_for(&alice);
        assert!(v.sees_node("n1") && v.sees_node("n3") && !v.sees_node("n2"));
        let bob = on.view_for(&id(1001, Some("bob"), vec![1001]));
        assert!(bob.sees_node("n2") && !bob.where_they_run, "a job allots");
        on.set_job_allotments(vec![]);
        assert!(
            on.view_for(&id(1001, Some("bob"), vec![1001]))
                .where_they_run
        );
        // Off: set allotments from jobs count for nothing.
        let off = Views::new(cfg(""));
        assert!(!off.allots_from_jobs());
        off.set_job_allotments(vec![job(1000, "n3")]);
        assert!(!off.view_for(&alice).sees_node("n3"));
    }

    #[test]
    fn views_are_off_only_when_the_config_says_so() {
        let alice = id(1000, Some("alice"), vec![1000]);
        // An empty admin list is no administrators but root, not everyone
        // (issue 12 finding 9).
        let empty = Views::new(cfg("[views]\nadmin_users = []\n"));
        assert!(!empty.view_for(&alice).admin);
        assert!(empty.view_for(&id(0, None, vec![])).admin, "root always");
        // No [views] at all: on, root alone.
        let none = Views::new(cfg(""));
        assert!(!none.view_for(&alice).admin);
        assert!(none.view_for(&id(0, Some("root"), vec![])).admin);
        assert!(!Views::new(ViewsConfig::default()).view_for(&alice).admin);
        // Only mode = "off" opens everything.
        let off = Views::new(cfg("[views]\nmode = \"off\"\n"));
        assert!(off.view_for(&alice).admin);
        assert!(Views::off().view_for(&alice).admin);
        // Unallotted users: their nodes by default, or nothing.
        assert!(none.view_for(&alice).where_they_run);
        let nothing = Views::new(cfg("[views]\nunallotted = \"nothing\"\n"));
        let v = nothing.view_for(&alice);
        assert!(!v.admin && !v.where_they_run && v.nodes.is_empty());
        assert!(!v.sees_node_running("n1", [(1000, 1000)].into_iter()));
    }

    #[test]
    fn views_carry_the_generation_they_were_decided_at() {
        let views = Views::new(cfg(""));
        let alice = id(1000, Some("alice"), vec![1000]);
        let g = views.view_for(&alice).generation;
        views.set_config(cfg("[views]\nunallotted = \"nothing\"\n"));
        assert_eq!(views.view_for(&alice).generation, g + 1);
    }

    #[tokio::test]
    async fn allot_command_output_and_failures() {
        let ok = AllotCommand {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo 'alice n[1-2]'; echo '@grp n3'".into(),
            ],
            refresh: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        };
        let (a, bad) = run_allot_command(&ok).await.unwrap();
        assert_eq!((a.len(), bad.len()), (2, 0));
        let fails = AllotCommand {
            argv: vec!["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            ..ok.clone()
        };
        assert!(
            run_allot_command(&fails)
                .await
                .unwrap_err()
                .contains("boom")
        );
        let slow = AllotCommand {
            argv: vec!["sleep".into(), "5".into()],
            timeout: Duration::from_millis(100),
            ..ok
        };
        assert!(
            run_allot_command(&slow)
                .await
                .unwrap_err()
                .contains("no answer")
        );
    }
}

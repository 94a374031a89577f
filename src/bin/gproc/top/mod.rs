//! `gproc top`: a live view of the cluster from the aggregator's `/nodes`,
//! `/load` and `/ps`: nodes up and down, cluster totals, the top
//! processes by CPU or memory with their node, and a per-node view.
//!
//! - [`model`]: parsing the three tables into a [`ClusterTables`], filters,
//!   totals, rankings. Pure.
//! - `ui` (the `tui` feature): the interactive state (`App`), keys, and
//!   drawing with ratatui (any backend: tests use `TestBackend`).
//! - [`text`]: the plain form printed when stdout is not a terminal (or
//!   always, in a build without the `tui` feature).
//!
//! The jobs view reads `/jobs`, and `/job/<id>/ps` for the job opened
//! from it, instead of the three cluster files; the plain form prints
//! either with `--jobs` and `-j JOBID`.
//!
//! This module only reads: the files over one 9P connection that
//! is re-dialled when lost ([`gproc::client::redial::Redialer`], shared with
//! `gproc mount`). `%CPU` is what `/ps` reports: CPU time over the
//! process's life, as `ps` shows it, not a rate over the last interval.

pub mod model;
pub mod text;
#[cfg(feature = "tui")]
pub mod ui;

use std::io::Write;
#[cfg(feature = "tui")]
use std::sync::Arc;
#[cfg(feature = "tui")]
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Result;
#[cfg(feature = "tui")]
use crossterm::event::{Event, KeyEventKind};
#[cfg(feature = "tui")]
use tokio::signal::unix::{SignalKind, signal};
#[cfg(feature = "tui")]
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use gproc::client::ClientError;
use gproc::client::redial::Redialer;
use gproc::format::rank::RankQuery;
use gproc::format::table::MAX_TABLE_BYTES;
use gproc::proto::errno;
pub use model::{ClusterTables, Filter, JobList, JobProcs, SortKey, Want};
#[cfg(feature = "tui")]
pub use ui::{Action, App};

/// Where the tables come from.
pub struct Source {
    remote: Redialer,
}

impl Source {
    /// Reads from the aggregator behind `remote`.
    pub fn new(remote: Redialer) -> Self {
        Source { remote }
    }

    /// Reads `/load`, the processes and then `/nodes` (after the others,
    /// so that nodes contacted for them show as up rather than idle). The
    /// processes are the `rankings` under `/top` when given and the
    /// aggregator serves them (a live view shows a few dozen rows of up
    /// to a million), else `/ps` whole.
    ///
    /// # Errors
    /// The aggregator cannot be reached or refuses a read.
    pub async fn fetch(
        &self,
        rankings: Option<&[RankQuery]>,
    ) -> Result<ClusterTables, ClientError> {
        let (load, ps, ranked) = self
            .remote
            .call(|root| async move {
                let root = &root;
                let load = root.read_all_limited("load", MAX_TABLE_BYTES);
                let procs = async move {
                    if let Some(qs) = rankings {
                        let reads = qs.iter().map(|q| {
                            let path = format!("top/{q}");
                            async move { root.read_all_limited(&path, MAX_TABLE_BYTES).await }
                        });
                        match futures::future::try_join_all(reads).await {
                            Ok(v) => return Ok((v, true)),
                            // An aggregator from before `/top`.
                            Err(e) if e.errno() == errno::ENOENT => {}
                            Err(e) => return Err(e),
                        }
                    }
                    let ps = root.read_all_limited("ps", MAX_TABLE_BYTES).await?;
                    Ok((vec![ps], false))
                };
                let (load, (ps, ranked)) = tokio::try_join!(load, procs)?;
                Ok((load, ps, ranked))
            })
            .await?;
        let nodes = self
            .remote
            .call(|root| async move { root.read_all_limited("nodes", MAX_TABLE_BYTES).await })
            .await?;
        let ps: Vec<String> = ps
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
        Ok(ClusterTables::parse_ranked(
            &String::from_utf8_lossy(&nodes),
            &String::from_utf8_lossy(&load),
            &ps,
            ranked,
        ))
    }
}

/// What a refresh read, by what was wanted.
#[derive(Debug)]
pub enum Fetched {
    /// The three cluster tables.
    Cluster(ClusterTables),
    /// `/jobs`.
    Jobs(JobList),
    /// `/job/<id>/ps` of the job named.
    Job(String, JobProcs),
}

impl Source {
    /// Reads `/jobs`. An aggregator without it (ENOENT) is
    /// [`JobList::NotServed`], not an error.
    ///
    /// # Errors
    /// The aggregator cannot be reached or refuses the read otherwise.
    pub async fn jobs(&self) -> Result<JobList, ClientError> {
        let read = self
            .remote
            .call(|root| async move { root.read_all_limited("jobs", MAX_TABLE_BYTES).await })
            .await;
        match read {
            Ok(b) => Ok(JobList::parse(&String::from_utf8_lossy(&b))),
            Err(e) if e.errno() == errno::ENOENT => Ok(JobList::NotServed),
            Err(e) => Err(e),
        }
    }

    /// Reads `/job/<id>/ps`. ENOENT (the job ended, is not the reader's
    /// to see, or the aggregator has no job tree) is [`JobProcs::Gone`].
    /// `id` must pass [`model::valid_job_id`] (else `Gone`: no such job).
    ///
    /// # Errors
    /// The aggregator cannot be reached or refuses the read otherwise.
    pub async fn job(&self, id: &str) -> Result<JobProcs, ClientError> {
        if !model::valid_job_id(id) {
            return Ok(JobProcs::Gone);
        }
        let path = format!("job/{id}/ps");
        let path = &path;
        let read = self
            .remote
            .call(|root| async move { root.read_all_limited(path, MAX_TABLE_BYTES).await })
            .await;
        match read {
            Ok(b) => Ok(JobProcs::parse(&String::from_utf8_lossy(&b))),
            Err(e) if e.errno() == errno::ENOENT => Ok(JobProcs::Gone),
            Err(e) => Err(e),
        }
    }

    /// Reads what `want` names.
    ///
    /// # Errors
    /// As [`Source::fetch`], [`Source::jobs`] and [`Source::job`].
    pub async fn fetch_want(
        &self,
        want: &Want,
        rankings: Option<&[RankQuery]>,
    ) -> Result<Fetched, ClientError> {
        Ok(match want {
            Want::Cluster => Fetched::Cluster(self.fetch(rankings).await?),
            Want::Jobs => Fetched::Jobs(self.jobs().await?),
            Want::Job(id) => Fetched::Job(id.clone(), self.job(id).await?),
        })
    }
}

/// Plain output: a block every `interval`, `iterations` times (forever
/// if `None`). Returns whether every refresh succeeded; a failed one is
/// reported on stderr and the next is tried.
///
/// # Errors
/// Writing to `out` fails (a closed pipe ends the command).
pub async fn run_text(
    source: &Source,
    view: &text::Plain,
    iterations: Option<u64>,
    out: &mut impl Write,
) -> Result<bool> {
    let mut tick = tokio::time::interval(view.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ok = true;
    let mut done = 0u64;
    let mut printed = 0u64;
    loop {
        tick.tick().await;
        match source
            .fetch_want(&view.want, view.rankings().as_deref())
            .await
        {
            Ok(f) => match view.render(f) {
                Ok(block) => {
                    if printed > 0 {
                        writeln!(out)?;
                    }
                    printed += 1;
                    out.write_all(block.as_bytes())?;
                    out.flush()?;
                }
                Err(why) => {
                    eprintln!("gproc top: {why}");
                    ok = false;
                }
            },
            Err(e) => {
                eprintln!("gproc top: {e}");
                ok = false;
            }
        }
        done += 1;
        if iterations.is_some_and(|n| done >= n) {
            return Ok(ok);
        }
    }
}

#[cfg(feature = "tui")]
/// The refresh in flight's result; never ready if there is none.
async fn finished<T>(
    p: &mut Option<tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match p {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

#[cfg(feature = "tui")]
/// What the key-reading thread sends.
enum Input {
    Key(crossterm::event::KeyEvent),
    Resize,
}

#[cfg(feature = "tui")]
/// Puts the terminal back however the view ends (error, panic, `q`).
struct Restore;

#[cfg(feature = "tui")]
impl Drop for Restore {
    fn drop(&mut self) {
        let _ = ratatui::try_restore();
    }
}

#[cfg(feature = "tui")]
/// The real stderr while the view runs (-1: not redirected).
static SAVED_STDERR: AtomicI32 = AtomicI32::new(-1);

#[cfg(feature = "tui")]
/// Puts stderr back where it was.
fn restore_stderr() {
    let fd = SAVED_STDERR.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `fd` is the descriptor dup'ed in `StderrAside::new` and
        // not closed since (the swap makes this run once).
        unsafe {
            libc::dup2(fd, libc::STDERR_FILENO);
            libc::close(fd);
        }
    }
}

#[cfg(feature = "tui")]
/// Sends stderr to /dev/null while the full-screen view is up: log lines
/// (a refresh that failed is already shown in the footer) would be drawn
/// over the screen. A panic puts stderr back before its message.
struct StderrAside;

#[cfg(feature = "tui")]
impl StderrAside {
    fn new() -> Self {
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            // SAFETY: dup and dup2 on descriptors that are open for the
            // duration of the calls.
            let saved = unsafe { libc::dup(libc::STDERR_FILENO) };
            if saved >= 0 {
                SAVED_STDERR.store(saved, Ordering::SeqCst);
                unsafe {
                    libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO);
                }
                let prev = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    restore_stderr();
                    prev(info);
                }));
            }
        }
        StderrAside
    }
}

#[cfg(feature = "tui")]
impl Drop for StderrAside {
    fn drop(&mut self) {
        restore_stderr();
    }
}

#[cfg(feature = "tui")]
/// The interactive view, until `q` (or `iterations` refreshes).
///
/// # Errors
/// The terminal cannot be set up or drawn on.
pub async fn run_tui(source: Arc<Source>, mut app: App, iterations: Option<u64>) -> Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    // Dropped before `_restore`: stderr is back before the screen is.
    let _stderr = StderrAside::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // crossterm's reads block: a plain thread feeds them to the loop. It
    // stays blocked in read() after we leave, until the process exits.
    std::thread::Builder::new()
        .name("gproc-top-keys".into())
        .spawn(move || {
            loop {
                let ev = match crossterm::event::read() {
                    Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
                    Ok(Event::Resize(..)) => Input::Resize,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
        })?;
    let mut tick = tokio::time::interval(app.interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending: Option<tokio::task::JoinHandle<Result<Fetched, ClientError>>> = None;
    let mut done = 0u64;
    // Raw mode turns Ctrl-C into a key; these are for `kill`, so that the
    // terminal is restored whatever ends the view.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut keys_open = true;
    loop {
        terminal.draw(|f| ui::draw(f, &app))?;
        tokio::select! {
            _ = tick.tick(), if pending.is_none() => {
                let s = source.clone();
                let want = app.want();
                let rankings = app.rankings();
                pending = Some(tokio::spawn(async move {
                    s.fetch_want(&want, rankings.as_deref()).await
                }));
            }
            r = finished(&mut pending), if pending.is_some() => {
                pending = None;
                match r {
                    Ok(Ok(f)) => app.apply(f),
                    // It can quote what the server sent.
                    Ok(Err(e)) => app.error = Some(gproc::format::table::printable(&e.to_string())),
                    Err(e) => app.error = Some(format!("refresh task failed: {e}")),
                }
                done += 1;
                if iterations.is_some_and(|n| done >= n) {
                    break;
                }
            }
            ev = rx.recv(), if keys_open => match ev {
                Some(Input::Key(k)) => match app.key(k) {
                    Action::Quit => break,
                    Action::Refresh => tick.reset_immediately(),
                    Action::Redraw | Action::Ignore => {}
                },
                Some(Input::Resize) => {}
                // No keyboard (stdin is not a terminal): keep refreshing.
                None => keys_open = false,
            },
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    if let Some(p) = pending {
        p.abort();
    }
    Ok(())
}

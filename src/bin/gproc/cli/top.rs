//! `gproc top`: the live cluster view (see [`crate::top`]). Interactive
//! on a terminal; plain periodic text when stdout is not one.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::remote::connection;
use crate::top::text::Plain;
use crate::top::{Filter, SortKey, Source, Want};
use gproc::client::ClientOptions;
use gproc::client::redial::Target;
use gproc::config::Hostlist;
use gproc::net::Address;

/// Options of `gproc top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The aggregator: host:port or unix:/path (default: $GPROC_SERVER, else
    /// the local socket unix:/run/gproc/gproc.sock).
    #[arg(long, value_parser = super::agent::parse_addr)]
    server: Option<Address>,
    /// Time between refreshes.
    #[arg(long, short = 'd', default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Rank processes by cpu or mem (keys c and m switch).
    #[arg(long, default_value = "cpu", value_parser = parse_sort)]
    sort: SortKey,
    /// Only these users' processes (comma-separated names).
    #[arg(short = 'u', long = "user", value_delimiter = ',')]
    users: Vec<String>,
    /// Only these nodes (a hostlist: n[01-16],login1).
    #[arg(short = 'n', long = "nodes")]
    nodes: Option<String>,
    /// Stop after this many refreshes (default: run until q, or forever
    /// in plain mode).
    #[arg(long)]
    iterations: Option<u64>,
    /// Processes listed per refresh in plain mode (the jobs table and a
    /// job's processes are listed whole).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Show the jobs (`/jobs`: one line per job, ranked like processes)
    /// instead of the cluster; key J switches in the interactive view.
    #[arg(long, conflicts_with = "job")]
    jobs: bool,
    /// Show one job's processes across its nodes (`/job/JOBID/ps`); in
    /// the interactive view, Esc goes back to the jobs.
    #[arg(short = 'j', long = "job", value_name = "JOBID")]
    job: Option<String>,
    /// Give up on one read of the aggregator after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn parse_sort(s: &str) -> Result<SortKey, String> {
    SortKey::parse(s).ok_or_else(|| format!("{s:?}: expected cpu or mem"))
}

/// Runs `gproc top`.
pub async fn run(a: TopArgs) -> Result<ExitCode> {
    if a.interval.is_zero() {
        bail!("--interval must be more than 0");
    }
    if a.iterations == Some(0) {
        bail!("--iterations must be at least 1");
    }
    let hosts = match &a.nodes {
        Some(h) => Some(Hostlist::parse(h).map_err(|e| anyhow::anyhow!("-n {h:?}: {e}"))?),
        None => None,
    };
    if let Some(id) = &a.job
        && !crate::top::model::valid_job_id(id)
    {
        bail!("-j {id:?}: not a job id (no '/', spaces or control characters)");
    }
    let want = match (&a.job, a.jobs) {
        (Some(id), _) => Want::Job(id.clone()),
        (None, true) => Want::Jobs,
        (None, false) => Want::Cluster,
    };
    let server = super::ps::server_address(a.server.clone())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let source = Arc::new(Source::new(connection(Target {
        name: server.to_string(),
        addr: server.clone(),
        aname: String::new(),
        uname: std::env::var("USER").unwrap_or_else(|_| "nobody".into()),
        uid: Some(uid),
        opts: ClientOptions {
            request_timeout: a.timeout,
            connect_timeout: a.timeout.min(Duration::from_secs(5)),
            ..ClientOptions::default()
        },
    })));
    let filter = Filter {
        users: a.users.clone(),
        hosts,
    };
    #[cfg(feature = "tui")]
    if std::io::stdout().is_terminal() {
        let mut app = crate::top::App::new(server.to_string(), a.interval, a.sort, filter);
        app.start_at(&want);
        crate::top::run_tui(source, app, a.iterations).await?;
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(not(feature = "tui"))]
    if std::io::stdout().is_terminal() {
        eprintln!(
            "gproc top: plain text only: the interactive view needs the cargo feature `tui` \
             (this binary was built without it)"
        );
    }
    let view = Plain {
        server: server.to_string(),
        interval: a.interval,
        sort: a.sort,
        filter,
        limit: a.limit,
        want,
    };
    let mut out = std::io::stdout().lock();
    let ok = crate::top::run_text(&source, &view, a.iterations, &mut out).await?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

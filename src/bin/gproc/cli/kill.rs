//! `gproc kill` and `gproc signal`: signal the processes a selection
//! picks (the selectors of `gproc ps`) through the aggregator's `ctl`
//! files, which send each signal to its node as the caller's own uid.
//!
//! It lists what it would signal, walks to each listed process at once
//! (the aggregator pins the fid to the process that had the pid then: its
//! start time, which agents and the simulator resolve exactly), and only
//! then asks in a terminal; each signal goes through its pinned fid, so a
//! pid reused while the question waited is ENOENT, never signalled. The
//! start time is compared with the listing's as well (whole seconds), for
//! nodes that do not resolve pinned names (diod) and for the processes past
//! [`PINNED_MAX`], which are walked to only when signalled.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures::StreamExt;

use gproc::client::{Client, ClientOptions, FidHandle, OpenMode};
use gproc::format::ctl::{self, Command as CtlCommand};
use gproc::format::table::PsRow;
use gproc::net::Address;

use super::ps::{Select, Selected, print_rows, server_address};

/// Signals in flight at once.
const IN_FLIGHT: usize = 32;

/// Processes pinned (walked to) before asking: held fids count against
/// the aggregator's per-user fid limit (16384 by default).
const PINNED_MAX: usize = 8192;

/// Options shared by `gproc kill` and `gproc signal`.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The aggregator: host:port or unix:/path (default: $GPROC_SERVER, else
    /// the local socket).
    #[arg(long, value_parser = super::agent::parse_addr)]
    server: Option<Address>,
    #[command(flatten)]
    select: Select,
    /// Signal without asking (needed when standard input is not a
    /// terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Only list what would be signalled.
    #[arg(long)]
    dry_run: bool,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Options of `gproc kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal: a name (TERM, KILL, HUP, STOP, CONT, USR1, with or
    /// without SIG) or a number.
    #[arg(long, default_value = "TERM")]
    signal: String,
    #[command(flatten)]
    target: TargetArgs,
}

/// Options of `gproc signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: a name (HUP, STOP, CONT, USR1...) or a number.
    signal: String,
    #[command(flatten)]
    target: TargetArgs,
}

/// Runs `gproc kill`.
pub async fn kill(a: KillArgs) -> Result<ExitCode> {
    run(&a.signal, a.target, "gproc kill").await
}

/// Runs `gproc signal`.
pub async fn signal(a: SignalArgs) -> Result<ExitCode> {
    run(&a.signal, a.target, "gproc signal").await
}

async fn run(signal: &str, a: TargetArgs, who: &str) -> Result<ExitCode> {
    let Some(number) = ctl::signal_number(signal) else {
        bail!(
            "{signal:?} is not a signal (a name such as TERM, KILL, HUP, STOP, CONT, or 1-31, 34-64)"
        );
    };
    let command = CtlCommand { signal: number };
    let name = command.signal_name();
    if !a.select.narrows() {
        bail!(
            "say which processes: -u USER, -n NODES, -p PIDS, -j JOBID, -c REGEX or -s STATES \
             (all of your own: -u $USER)"
        );
    }
    let server = server_address(a.server.clone())?;
    let Selected { rows, missing } = a.select.read(&server, a.timeout, who).await?;
    if rows.is_empty() {
        eprintln!("{who}: no process matches");
        return Ok(ExitCode::FAILURE);
    }
    let nodes: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.node.as_str()).collect();
    print_rows(&rows)?;
    let what = format!(
        "{name} to {} process{} on {} node{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "es" },
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" }
    );
    if a.dry_run {
        eprintln!("{who}: would send {what} (--dry-run: nothing sent)");
        return Ok(if missing > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    if !a.yes && !std::io::stdin().is_terminal() {
        bail!("standard input is not a terminal: pass --yes to send {what} without asking");
    }

    let opts = ClientOptions {
        request_timeout: a.timeout,
        connect_timeout: a.timeout.min(Duration::from_secs(10)),
        ..ClientOptions::default()
    };
    let client = Client::connect(&server, opts)
        .await
        .with_context(|| format!("cannot reach the aggregator at {server}"))?;
    let uname = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
    let uid = rustix::process::geteuid().as_raw();
    let root = Arc::new(client.attach(&uname, "", Some(uid)).await?);
    // Pinned now, while they are the processes listed.
    let targets: Vec<(PsRow, Result<Option<FidHandle>, String>)> =
        futures::stream::iter(rows.into_iter().enumerate())
            .map(|(i, r)| {
                let root = root.clone();
                async move {
                    let dir = if i < PINNED_MAX {
                        root.walk(&format!("{}/{}", r.node, r.pid))
                            .await
                            .map(Some)
                            .map_err(|e| describe(&e))
                    } else {
                        Ok(None)
                    };
                    (r, dir)
                }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
    if !a.yes {
        eprint!("Send {what}? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("{who}: nothing sent");
            return Ok(ExitCode::FAILURE);
        }
    }

    let boot: Arc<tokio::sync::Mutex<HashMap<String, Option<u64>>>> = Arc::default();
    let text = command.to_string();
    let results: Vec<(PsRow, Result<(), String>)> = futures::stream::iter(targets)
        .map(|(r, dir)| {
            let (root, boot, text) = (root.clone(), boot.clone(), text.clone());
            async move {
                let res = match dir {
                    Ok(dir) => one(&root, dir, &boot, &r, &text).await,
                    Err(e) => Err(e),
                };
                (r, res)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for (r, res) in &results {
        match res {
            Ok(()) => writeln!(out, "{} {} {}: sent {name}", r.node, r.pid, r.user)?,
            Err(e) => {
                failed += 1;
                writeln!(out, "{} {} {}: not sent: {e}", r.node, r.pid, r.user)?;
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        eprintln!("{who}: {failed} of {} not sent", results.len());
    }
    Ok(if failed > 0 || missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Signals one listed process through `dir`, its pinned directory
/// (walked to now when `None`): checks it started when the listing says,
/// then writes its `ctl`.
async fn one(
    root: &FidHandle,
    dir: Option<FidHandle>,
    boot: &tokio::sync::Mutex<HashMap<String, Option<u64>>>,
    r: &PsRow,
    text: &str,
) -> Result<(), String> {
    let dir = match dir {
        Some(d) => d,
        None => root
            .walk(&format!("{}/{}", r.node, r.pid))
            .await
            .map_err(|e| describe(&e))?,
    };
    let btime = {
        let mut b = boot.lock().await;
        match b.get(&r.node) {
            Some(v) => *v,
            None => {
                let v = root
                    .read_all(&format!("{}/stat", r.node))
                    .await
                    .ok()
                    .and_then(|s| boot_time(&s));
                b.insert(r.node.clone(), v);
                v
            }
        }
    };
    let stat = dir.read_all("stat").await.map_err(|e| describe(&e))?;
    let started = gproc::format::summary::stat_start_ticks(&stat);
    // USER_HZ is 100 on every Linux architecture userspace sees; /ps's
    // START is whole seconds.
    if let (Some(b), Some(t)) = (btime, started) {
        let now = b + t / 100;
        if now.abs_diff(r.start) > 1 {
            return Err(format!(
                "pid {} is now another process (started {now}, listed {})",
                r.pid, r.start
            ));
        }
    }
    let mut f = dir.walk("ctl").await.map_err(|e| {
        if e.errno() == gproc::proto::errno::ENOENT {
            "no ctl file: control is off ([control] enabled = true on the aggregator, --control on the agent)"
                .to_string()
        } else {
            describe(&e)
        }
    })?;
    f.open(OpenMode::Write).await.map_err(|e| describe(&e))?;
    let sent = f.write_at(0, text.as_bytes()).await;
    let _ = f.clunk().await;
    let _ = dir.clunk().await;
    sent.map(|_| ()).map_err(|e| describe(&e))
}

/// `btime` of a node's `/proc/stat`.
fn boot_time(stat: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(stat)
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// What failed, in the words of the errno (ENOENT: gone, or not yours to
/// see; EPERM: the node's kernel said no).
fn describe(e: &gproc::client::ClientError) -> String {
    match e.errno() {
        0 => e.to_string(),
        n if n == gproc::proto::errno::ENOENT => {
            "no such process (it exited, or is not yours to see)".into()
        }
        n => std::io::Error::from_raw_os_error(n as i32).to_string(),
    }
}

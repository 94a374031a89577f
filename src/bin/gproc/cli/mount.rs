//! `gproc mount ADDR MOUNTPOINT`: a 9P server's tree as a read-only FUSE
//! mount (see [`crate::mount`]).
//!
//! Without `-f` the command starts itself again in the foreground as a
//! detached child (its own process group, so the terminal's Ctrl-C does
//! not reach it), waits until that child says the mount is ready, and
//! exits; errors before that point are printed by the parent. A
//! multi-threaded process cannot safely `fork`, hence the re-exec.

use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::mount::{DEFAULT_TTL, MountRequest, Target};
use gproc::client::ClientOptions;
use gproc::net::Address;
use gproc::proto::Dialect;

/// The line a foreground child prints on stdout once mounted.
const READY: &str = "gproc-mount-ready";

/// Options of `gproc mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The 9P server: host:port or unix:/path (an aggregator, an agent,
    /// diod).
    #[arg(value_parser = super::agent::parse_addr)]
    server: Address,
    /// An existing directory to mount on.
    mountpoint: PathBuf,
    /// The tree to attach: "" for a gproc agent or aggregator, /NODE for
    /// one node of an aggregator, the exported path for diod (/proc).
    #[arg(long, default_value = "")]
    aname: String,
    /// Stay in the foreground (logs go to stderr; Ctrl-C unmounts).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// User name to attach as (default: $USER); the numeric id sent is
    /// always this process's effective uid.
    #[arg(long)]
    uname: Option<String>,
    /// Force a dialect (9P2000.L, 9P2000.u, 9P2000); default: ask for
    /// 9P2000.L and accept what the server offers.
    #[arg(long, value_parser = Dialect::parse)]
    dialect: Option<Dialect>,
    /// Give up on a server request after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// How long the kernel caches names and attributes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Internal: print a ready line on stdout once mounted (used by the
    /// background mode to wait for its child).
    #[arg(long, hide = true)]
    notify_ready: bool,
}

/// Runs `gproc mount`.
pub async fn run(a: MountArgs) -> Result<ExitCode> {
    match std::fs::metadata(&a.mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("{}: not a directory", a.mountpoint.display()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => bail!(
            "{}: a FUSE mount whose process is gone is still there: fusermount3 -u it first",
            a.mountpoint.display()
        ),
        Err(e) => bail!("{}: {e}", a.mountpoint.display()),
    }
    if !a.foreground {
        return background(&a).await;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let uname = a
        .uname
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "nobody".into());
    let req = MountRequest {
        target: Target {
            name: a.server.to_string(),
            addr: a.server.clone(),
            aname: a.aname.clone(),
            uname,
            uid: Some(uid),
            opts: ClientOptions {
                dialect: a.dialect,
                request_timeout: a.timeout,
                connect_timeout: a.timeout.min(Duration::from_secs(5)),
                ..ClientOptions::default()
            },
        },
        mountpoint: a.mountpoint.clone(),
        ttl: if a.ttl.is_zero() { DEFAULT_TTL } else { a.ttl },
    };
    let notify = a.notify_ready;
    crate::mount::mount(req, move || {
        if notify {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{READY}");
            let _ = out.flush();
            drop(out);
            detach_output();
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the foreground mount as a detached child and waits for it to
/// be ready, passing on its errors if it is not.
async fn background(a: &MountArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the gproc executable")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("mount")
        .arg(a.server.to_string())
        .arg(&a.mountpoint)
        .arg("--aname")
        .arg(&a.aname)
        .arg("--timeout")
        .arg(humantime::format_duration(a.timeout).to_string())
        .arg("--ttl")
        .arg(humantime::format_duration(a.ttl).to_string())
        .args(["-f", "--notify-ready"]);
    if let Some(u) = &a.uname {
        cmd.arg("--uname").arg(u);
    }
    if let Some(d) = a.dialect {
        cmd.arg("--dialect").arg(d.version_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn().context("cannot start the mount process")?;
    let (Some(out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        bail!("the mount process has no output pipes");
    };
    let mut lines = BufReader::new(out).lines();
    // Collect stderr concurrently so a chatty child never blocks on it.
    let errs = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    while let Some(line) = lines.next_line().await? {
        if line == READY {
            // The child keeps running; its later logs go nowhere (use -f
            // to see them).
            errs.abort();
            return Ok(ExitCode::SUCCESS);
        }
    }
    let status = child.wait().await?;
    let msg = errs.await.unwrap_or_default();
    eprint!("{msg}");
    bail!("the mount process exited before mounting ({status})");
}

/// Points stdout and stderr at /dev/null: the parent that read them has
/// exited, and writing to a pipe nobody reads fails (a failed write of a
/// log line or panic message must not take the mount down).
fn detach_output() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    use std::os::fd::AsRawFd;
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: both descriptors are valid for the duration of the call;
        // dup2 replaces `fd` atomically.
        unsafe {
            libc::dup2(null.as_raw_fd(), fd);
        }
    }
}

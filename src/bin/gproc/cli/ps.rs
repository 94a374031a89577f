//! `gproc ps`: the cluster's processes, read from the aggregator's `/ps`,
//! printed like `ps aux` with a NODE column.

use std::cmp::Ordering;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use gproc::client::{Client, ClientOptions, FidHandle};
use gproc::config::Hostlist;
use gproc::format::table::{LoadRow, Note, PsRow, Table, format_cputime, format_start};
use gproc::net::Address;

/// Options of `gproc ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// The aggregator: host:port or unix:/path (default: $GPROC_SERVER, else
    /// the local socket unix:/run/gproc/gproc.sock).
    #[arg(long, value_parser = super::agent::parse_addr)]
    server: Option<Address>,
    #[command(flatten)]
    select: Select,
    /// Sort keys, comma-separated; prefix `-` for descending
    /// (e.g. `-cpu,node`). Keys: node user pid ppid cpu mem rss vsz stat
    /// start time thr jobid step gpu command.
    #[arg(long, allow_hyphen_values = true)]
    sort: Option<String>,
    /// Columns to print, comma-separated (same names as --sort). Scripts
    /// should name their columns here, or read --json: the default
    /// columns may grow.
    #[arg(short = 'o', long = "output")]
    columns: Option<String>,
    /// Print JSON (one array of objects) instead of a table; with --watch,
    /// one JSON object per line and refresh (see --watch).
    #[arg(long)]
    json: bool,
    /// Each node's processes as a tree, children under their parent (as
    /// `ps --forest`; a process whose parent is not listed is a root).
    /// Siblings are ordered by --sort, else by pid; --json gives each
    /// object its `depth`.
    #[arg(long)]
    forest: bool,
    /// Only strays: processes of users who are not system accounts (uid
    /// 1000 to 59999, or 65536 and up, by this host's user database) that
    /// are in no batch job, such as what an ended job or an ssh session
    /// left behind. Combine with -n to leave out login nodes.
    #[arg(long)]
    strays: bool,
    /// Omit the header line.
    #[arg(long)]
    no_header: bool,
    /// Wide output: full command lines on a terminal too (otherwise, as
    /// procps does, lines are cut at the terminal's width; pipes and
    /// files always get whole lines).
    #[arg(short = 'w', long)]
    wide: bool,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Read again every interval (`--watch` alone: 2s) until interrupted.
    /// On a terminal the table is redrawn in place (cut to the screen);
    /// otherwise, or with --json, each refresh is one line of JSON (JSON
    /// Lines): `{"time": UNIX_SECONDS, "missing": NODES_NOT_ANSWERING,
    /// "processes": [...]}`, the objects as --json prints them.
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "2s",
        value_parser = parse_interval
    )]
    watch: Option<Duration>,
}

/// A `--watch` interval: a duration of at least 100 ms.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 2s or 500ms)"))?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s:?}: at least 100ms between refreshes"));
    }
    Ok(d)
}

/// Which processes: the selectors `gproc ps`, `gproc kill` and `gproc
/// signal` share.
#[derive(Debug, Args)]
pub struct Select {
    /// Only these users' processes (comma-separated names).
    #[arg(short = 'u', long = "user", value_delimiter = ',')]
    users: Vec<String>,
    /// Only these nodes (a hostlist: n[01-16],login1).
    #[arg(short = 'n', long = "nodes")]
    nodes: Option<String>,
    /// Only nodes of these machines (comma-separated `uname -m` names, as
    /// /load's ARCH column shows them: x86_64,ppc64,aarch64).
    #[arg(long, value_delimiter = ',')]
    arch: Vec<String>,
    /// Only nodes whose kernel release starts with this (/load's KERNEL).
    #[arg(long)]
    kernel: Option<String>,
    /// Only these pids (comma-separated).
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pids: Vec<i32>,
    /// Only processes whose command line matches this regular expression
    /// (anywhere in it; anchor with ^ and $).
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Only processes in these states (letters as in STAT: D, Z, R, S, T...;
    /// e.g. `-s DZ` for uninterruptible and zombie processes).
    #[arg(short = 's', long = "state")]
    states: Option<String>,
    /// Only processes of these batch jobs (comma-separated job ids, as the
    /// JOBID column shows them), on every node they run on; read from the
    /// aggregator's `/job/<id>/ps` (one job's rows, not the whole `/ps`),
    /// job after job.
    #[arg(short = 'j', long = "job", value_delimiter = ',')]
    jobs: Vec<String>,
}

/// The rows a [`Select`] keeps, and how many nodes it concerns did not
/// answer.
pub(crate) struct Selected {
    pub(crate) rows: Vec<PsRow>,
    pub(crate) missing: usize,
}

impl Select {
    /// Whether any selector is given (a command that signals wants one:
    /// never everything by default).
    pub(crate) fn narrows(&self) -> bool {
        !self.users.is_empty()
            || self.nodes.is_some()
            || !self.arch.is_empty()
            || self.kernel.is_some()
            || !self.pids.is_empty()
            || self.command.is_some()
            || self.states.is_some()
            || !self.jobs.is_empty()
    }

    /// Reads `/ps` (and `/load` for the machine filters) from the
    /// aggregator, prints the notes about the selected nodes on stderr
    /// (prefixed with `who`), and keeps the selected rows.
    pub(crate) async fn read(
        &self,
        server: &Address,
        timeout: Duration,
        who: &str,
    ) -> Result<Selected> {
        let hosts = match &self.nodes {
            Some(h) => Some(Hostlist::parse(h).map_err(|e| anyhow::anyhow!("-n {h:?}: {e}"))?),
            None => None,
        };
        let command = match &self.command {
            Some(c) => Some(regex::Regex::new(c).with_context(|| format!("-c {c:?}"))?),
            None => None,
        };
        // Which nodes the machine filters keep, from /load's ARCH and
        // KERNEL, and every node /load has a row for (the machine of the
        // others is not known).
        type Nodes = std::collections::HashSet<String>;
        let machines: Option<(Nodes, Nodes)> = if self.arch.is_empty() && self.kernel.is_none() {
            None
        } else {
            let load = read_aggregator_file(server, "load", timeout).await?;
            let load = Table::<LoadRow>::parse(&String::from_utf8_lossy(&load))
                .context("reading /load")?;
            let known = load.rows.iter().map(|r| r.node.clone()).collect();
            let picked = load
                .rows
                .into_iter()
                .filter(|r| {
                    (self.arch.is_empty() || r.arch.as_ref().is_some_and(|x| self.arch.contains(x)))
                        && self.kernel.as_ref().is_none_or(|k| {
                            r.kernel.as_ref().is_some_and(|x| x.starts_with(k.as_str()))
                        })
                })
                .map(|r| r.node)
                .collect();
            Some((picked, known))
        };
        let table = match self.job_tables(server, timeout).await? {
            Some(t) => t,
            None => {
                let data = read_aggregator_file(server, "ps", timeout).await?;
                let text = String::from_utf8_lossy(&data);
                Table::<PsRow>::parse(&text).context("reading /ps")?
            }
        };
        let mut missing = 0;
        for note in &table.notes {
            // A note about a node the selection leaves out is not about
            // this listing: `-n n[01-10]` is complete when those ten
            // answered. A missing node of unknown machine may be one
            // --arch asks for.
            if let Some(node) = note.node()
                && (hosts.as_ref().is_some_and(|h| !h.contains(node))
                    || machines.as_ref().is_some_and(|(picked, known)| {
                        known.contains(node) && !picked.contains(node)
                    }))
            {
                continue;
            }
            eprintln!("{who}: {note}");
            // Stale rows are shown (and said to be stale); missing nodes
            // make the listing incomplete, so the exit status says so.
            if matches!(note, Note::Missing { .. } | Note::Pending { .. }) {
                missing += 1;
            }
        }
        let rows = table
            .rows
            .into_iter()
            .filter(|r| {
                (self.users.is_empty() || self.users.contains(&r.user))
                    && (self.pids.is_empty() || self.pids.contains(&r.pid))
                    && hosts.as_ref().is_none_or(|h| h.contains(&r.node))
                    && machines.as_ref().is_none_or(|(m, _)| m.contains(&r.node))
                    && command.as_ref().is_none_or(|c| c.is_match(&r.command))
                    && self.states.as_ref().is_none_or(|s| s.contains(r.state))
                    && (self.jobs.is_empty()
                        || r.job.as_ref().is_some_and(|j| self.jobs.contains(j)))
            })
            .collect();
        Ok(Selected { rows, missing })
    }
}

impl Select {
    /// With `-j`, the rows of those jobs from the aggregator's job tree
    /// (`/job/<id>/ps`: that job's `/ps` lines and `/ps`'s notes), so that
    /// one job's processes do not cost reading every process of the
    /// cluster; the other selectors still apply. `None` without `-j`, or
    /// when the aggregator has no job tree (an older one): then `/ps` is
    /// read and filtered.
    async fn job_tables(
        &self,
        server: &Address,
        timeout: Duration,
    ) -> Result<Option<Table<PsRow>>> {
        if self.jobs.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = self
            .jobs
            .iter()
            .find(|j| !gproc::format::jobs::is_valid_id(j))
        {
            anyhow::bail!("-j {bad:?} is not a job id (letters, digits and . _ - [ ], up to 64)");
        }
        let root = attach_aggregator(server, timeout).await?;
        match root.walk("job").await {
            Ok(_) => {}
            Err(e) if e.errno() == gproc::proto::errno::ENOENT => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut merged = Table::<PsRow>::default();
        let mut seen_notes = std::collections::HashSet::new();
        for id in &self.jobs {
            let path = format!("job/{id}/ps");
            let data = match root
                .read_all_limited(&path, gproc::format::table::MAX_TABLE_BYTES)
                .await
            {
                Ok(d) => d,
                // A job with no process this user may see: no rows.
                Err(e) if e.errno() == gproc::proto::errno::ENOENT => continue,
                Err(e) => return Err(e.into()),
            };
            let t = Table::<PsRow>::parse(&String::from_utf8_lossy(&data))
                .with_context(|| format!("reading /{path}"))?;
            merged.rows.extend(t.rows);
            // Every job's file carries /ps's notes: each said once.
            for n in t.notes {
                if seen_notes.insert(n.to_string()) {
                    merged.notes.push(n);
                }
            }
        }
        Ok(Some(merged))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Node,
    User,
    Pid,
    Ppid,
    Cpu,
    Mem,
    Rss,
    Vsz,
    Stat,
    Start,
    Time,
    Thr,
    Job,
    Step,
    Gpu,
    Command,
}

impl Col {
    fn parse(s: &str) -> Option<Col> {
        Some(
            match s
                .trim()
                .trim_start_matches('%')
                .to_ascii_lowercase()
                .as_str()
            {
                "node" => Col::Node,
                "user" => Col::User,
                "pid" => Col::Pid,
                "ppid" => Col::Ppid,
                "cpu" | "pcpu" => Col::Cpu,
                "mem" | "pmem" => Col::Mem,
                "rss" => Col::Rss,
                "vsz" => Col::Vsz,
                "stat" | "state" | "s" => Col::Stat,
                "start" => Col::Start,
                "time" => Col::Time,
                "thr" | "threads" | "nlwp" => Col::Thr,
                "jobid" | "job" => Col::Job,
                "step" => Col::Step,
                "gpu" | "gpus" => Col::Gpu,
                "command" | "cmd" | "args" => Col::Command,
                _ => return None,
            },
        )
    }

    fn header(self) -> &'static str {
        match self {
            Col::Node => "NODE",
            Col::User => "USER",
            Col::Pid => "PID",
            Col::Ppid => "PPID",
            Col::Cpu => "%CPU",
            Col::Mem => "%MEM",
            Col::Rss => "RSS",
            Col::Vsz => "VSZ",
            Col::Stat => "STAT",
            Col::Start => "START",
            Col::Time => "TIME",
            Col::Thr => "THR",
            Col::Job => "JOBID",
            Col::Step => "STEP",
            Col::Gpu => "GPU",
            Col::Command => "COMMAND",
        }
    }

    fn right_aligned(self) -> bool {
        matches!(
            self,
            Col::Pid | Col::Ppid | Col::Cpu | Col::Mem | Col::Rss | Col::Vsz | Col::Thr
        )
    }

    fn cell(self, r: &PsRow) -> String {
        match self {
            Col::Node => r.node.clone(),
            Col::User => r.user.clone(),
            Col::Pid => r.pid.to_string(),
            Col::Ppid => r.ppid.to_string(),
            Col::Cpu => format!("{:.1}", r.cpu),
            Col::Mem => format!("{:.1}", r.mem),
            Col::Rss => r.rss_kb.to_string(),
            Col::Vsz => r.vsz_kb.to_string(),
            Col::Stat => r.state.to_string(),
            Col::Start => format_start(r.start),
            Col::Time => format_cputime(r.time),
            Col::Thr => r.threads.to_string(),
            Col::Job => r.job.clone().unwrap_or_else(|| "-".into()),
            Col::Step => r.step.clone().unwrap_or_else(|| "-".into()),
            Col::Gpu => r.gpu.clone().unwrap_or_else(|| "-".into()),
            Col::Command => r.command.clone(),
        }
    }

    fn cmp(self, a: &PsRow, b: &PsRow) -> Ordering {
        match self {
            Col::Node => gproc::config::hostlist::natural_cmp(&a.node, &b.node),
            Col::User => a.user.cmp(&b.user),
            Col::Pid => a.pid.cmp(&b.pid),
            Col::Ppid => a.ppid.cmp(&b.ppid),
            Col::Cpu => a.cpu.total_cmp(&b.cpu),
            Col::Mem => a.mem.total_cmp(&b.mem),
            Col::Rss => a.rss_kb.cmp(&b.rss_kb),
            Col::Vsz => a.vsz_kb.cmp(&b.vsz_kb),
            Col::Stat => a.state.cmp(&b.state),
            Col::Start => a.start.cmp(&b.start),
            Col::Time => a.time.cmp(&b.time),
            Col::Thr => a.threads.cmp(&b.threads),
            // Numerically where both are numbers (Slurm's), else as text;
            // processes in no job last.
            Col::Job => job_cmp(a.job.as_deref(), b.job.as_deref()),
            Col::Step => job_cmp(a.step.as_deref(), b.step.as_deref()),
            // Processes holding GPUs first, by their devices' names.
            Col::Gpu => match (&a.gpu, &b.gpu) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            Col::Command => a.command.cmp(&b.command),
        }
    }
}

/// Job and step ids in order: as `/jobs` orders them, and none last.
fn job_cmp(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => gproc::tree::tables::job_order(a, b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

const DEFAULT_COLS: [Col; 14] = [
    Col::Node,
    Col::User,
    Col::Pid,
    Col::Cpu,
    Col::Mem,
    Col::Vsz,
    Col::Rss,
    Col::Stat,
    Col::Start,
    Col::Time,
    Col::Job,
    Col::Step,
    Col::Gpu,
    Col::Command,
];

fn parse_cols(s: &str) -> Result<Vec<Col>> {
    s.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            Col::parse(c).with_context(|| {
                format!(
                    "unknown column {c:?} (try node,user,pid,cpu,mem,rss,jobid,step,gpu,command)"
                )
            })
        })
        .collect()
}

fn parse_sort(s: &str) -> Result<Vec<(Col, bool)>> {
    sort_keys(
        s,
        Col::parse,
        "node user pid ppid cpu mem rss vsz stat start time thr jobid step gpu command",
    )
}

/// A `--sort` list: comma-separated keys `parse` knows, each `-` first
/// for descending (`+` or nothing: ascending); an unknown one is an error
/// naming the keys in `known`.
pub(crate) fn sort_keys<K>(
    s: &str,
    parse: impl Fn(&str) -> Option<K>,
    known: &str,
) -> Result<Vec<(K, bool)>> {
    s.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let c = c.trim();
            let (desc, name) = match c.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, c.strip_prefix('+').unwrap_or(c)),
            };
            parse(name)
                .map(|k| (k, desc))
                .with_context(|| format!("unknown sort key {c:?} ({known})"))
        })
        .collect()
}

/// The aggregator's address for commands: `--server`, `$GPROC_SERVER`,
/// else the default local socket.
pub(crate) fn server_address(given: Option<Address>) -> Result<Address> {
    if let Some(a) = given {
        return Ok(a);
    }
    if let Ok(s) = std::env::var("GPROC_SERVER") {
        return Address::parse(&s).map_err(|e| anyhow::anyhow!("GPROC_SERVER: {e}"));
    }
    Address::parse(gproc::config::DEFAULT_LISTEN).map_err(|e| anyhow::anyhow!(e))
}

/// Reads a whole file of the aggregator's tree.
pub(crate) async fn read_aggregator_file(
    server: &Address,
    path: &str,
    timeout: Duration,
) -> Result<bytes::Bytes> {
    let root = attach_aggregator(server, timeout).await?;
    Ok(root
        .read_all_limited(path, gproc::format::table::MAX_TABLE_BYTES)
        .await?)
}

/// The aggregator's root, attached as this user.
async fn attach_aggregator(server: &Address, timeout: Duration) -> Result<FidHandle> {
    let opts = ClientOptions {
        request_timeout: timeout,
        connect_timeout: timeout.min(Duration::from_secs(10)),
        ..ClientOptions::default()
    };
    let client = Client::connect(server, opts)
        .await
        .with_context(|| format!("cannot reach the aggregator at {server}"))?;
    let uname = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    Ok(client.attach(&uname, "", Some(uid)).await?)
}

/// Runs `gproc ps`.
pub async fn run(a: PsArgs) -> Result<ExitCode> {
    let cols = match &a.columns {
        Some(c) => parse_cols(c)?,
        None => DEFAULT_COLS.to_vec(),
    };
    let sort = match &a.sort {
        Some(s) => parse_sort(s)?,
        None => Vec::new(),
    };
    if cols.is_empty() {
        bail!("-o needs at least one column");
    }
    let server = server_address(a.server.clone())?;
    if let Some(every) = a.watch {
        return watch(&a, &server, &cols, &sort, every).await;
    }
    let Selected { rows, missing } = a.select.read(&server, a.timeout, "gproc ps").await?;
    let rows = arrange(&a, rows, &sort);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        serde_json::to_writer_pretty(&mut out, &json_rows(&rows, a.forest))?;
        writeln!(out)?;
    } else {
        let fit = if a.wide { None } else { terminal_width() };
        write_table(&mut out, &cols, &drawn(rows), !a.no_header, fit)?;
    }
    out.flush()?;
    Ok(if missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The selected rows as printed: strays only with --strays, in forest
/// order with their depth with --forest (depth 0 otherwise), sorted.
fn arrange(a: &PsArgs, mut rows: Vec<PsRow>, sort: &[(Col, bool)]) -> Vec<(PsRow, usize)> {
    if a.strays {
        rows = super::forest::strays(rows, gproc::sys::users::uid_by_name);
    }
    let by_keys = |x: &PsRow, y: &PsRow| {
        for (k, desc) in sort {
            let o = k.cmp(x, y);
            if o != Ordering::Equal {
                return if *desc { o.reverse() } else { o };
            }
        }
        Ordering::Equal
    };
    if a.forest {
        super::forest::forest(rows, |x, y| by_keys(x, y).then(x.pid.cmp(&y.pid)))
    } else {
        if !sort.is_empty() {
            rows.sort_by(by_keys);
        }
        rows.into_iter().map(|r| (r, 0)).collect()
    }
}

/// The rows as `--json` gives them (with `depth` under --forest).
fn json_rows(rows: &[(PsRow, usize)], forest: bool) -> serde_json::Value {
    rows.iter()
        .map(|(r, depth)| {
            let mut o = serde_json::json!({
                "node": r.node, "pid": r.pid, "ppid": r.ppid, "user": r.user,
                "state": r.state.to_string(), "cpu": r.cpu, "mem": r.mem,
                "rss_kb": r.rss_kb, "vsz_kb": r.vsz_kb, "start": r.start,
                "time": r.time, "threads": r.threads, "job": r.job,
                "step": r.step, "gpu": r.gpu, "command": r.command,
            });
            if forest {
                o["depth"] = (*depth).into();
            }
            o
        })
        .collect()
}

/// The rows with each command drawn at its forest depth.
fn drawn(rows: Vec<(PsRow, usize)>) -> Vec<PsRow> {
    rows.into_iter()
        .map(|(mut r, depth)| {
            r.command = super::forest::drawn(&r.command, depth);
            r
        })
        .collect()
}

/// `--watch`: reads and prints every `every` until interrupted (or until
/// standard output is closed). A refresh that fails says why on stderr
/// and the next one tries again.
async fn watch(
    a: &PsArgs,
    server: &Address,
    cols: &[Col],
    sort: &[(Col, bool)],
    every: Duration,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let redraw = !a.json && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (rows, missing) = match a.select.read(server, a.timeout, "gproc ps").await {
            Ok(Selected { rows, missing }) => (arrange(a, rows, sort), missing),
            Err(e) => {
                eprintln!("gproc ps: {e:#}");
                continue;
            }
        };
        let mut buf = Vec::new();
        if redraw {
            // Home and clear, a header as watch(1) has, then the table cut
            // to the screen.
            let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok();
            let (w, h) = size.map_or((None, None), |s| {
                (
                    (s.ws_col > 0 && !a.wide).then(|| usize::from(s.ws_col)),
                    (s.ws_row > 2).then(|| usize::from(s.ws_row) - 2),
                )
            });
            write!(
                buf,
                "\x1b[H\x1b[2JEvery {}: gproc ps, {} processes{}  {}\n\n",
                humantime::format_duration(every),
                rows.len(),
                if missing > 0 {
                    format!(", {missing} nodes not answering")
                } else {
                    String::new()
                },
                format_start(unix_now() as u64),
            )?;
            let mut table = Vec::new();
            write_table(&mut table, cols, &drawn(rows), !a.no_header, w)?;
            let text = String::from_utf8_lossy(&table);
            for line in text.lines().take(h.unwrap_or(usize::MAX)) {
                writeln!(buf, "{line}")?;
            }
        } else {
            let doc = serde_json::json!({
                "time": unix_now(),
                "missing": missing,
                "processes": json_rows(&rows, a.forest),
            });
            serde_json::to_writer(&mut buf, &doc)?;
            buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(&buf).and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader went away (`| head`): done.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Seconds since the epoch, now (milliseconds kept).
pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// Prints `rows` as `gproc ps` does by default (fitted to a terminal).
pub(crate) fn print_rows(rows: &[PsRow]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write_table(&mut out, &DEFAULT_COLS, rows, true, terminal_width())?;
    out.flush()
}

/// The width to fit lines to: standard output's terminal (`COLUMNS` when
/// set, as procps honours it, else the terminal's size); `None` when it is
/// not a terminal.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    if let Some(c) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(c);
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|c| *c > 0)
}

/// Aligned columns; the last column is not padded; a line is cut at `fit`
/// characters when given.
fn write_table(
    out: &mut impl Write,
    cols: &[Col],
    rows: &[PsRow],
    header: bool,
    fit: Option<usize>,
) -> std::io::Result<()> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| c.cell(r)).collect())
        .collect();
    let mut width: Vec<usize> = cols.iter().map(|c| c.header().len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |out: &mut dyn Write, vals: &[&str]| -> std::io::Result<()> {
        let last = vals.len() - 1;
        let mut text = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i == last {
                text.push_str(v);
            } else if cols[i].right_aligned() {
                text.push_str(&format!("{v:>w$} ", w = width[i]));
            } else {
                text.push_str(&format!("{v:<w$} ", w = width[i]));
            }
        }
        match fit {
            Some(n) => writeln!(out, "{}", text.chars().take(n).collect::<String>()),
            None => writeln!(out, "{text}"),
        }
    };
    if header {
        let h: Vec<&str> = cols.iter().map(|c| c.header()).collect();
        line(out, &h)?;
    }
    for row in &cells {
        let v: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, pid: i32, cpu: f64) -> PsRow {
        PsRow {
            node: node.into(),
            pid,
            ppid: 1,
            user: "alice".into(),
            state: 'R',
            cpu,
            mem: 0.5,
            rss_kb: 100,
            vsz_kb: 1000,
            start: 0,
            time: 61,
            threads: 1,
            job: None,
            step: None,
            gpu: None,
            command: "a b".into(),
        }
    }

    #[test]
    fn sort_keys_and_columns_parse() {
        assert_eq!(
            parse_sort("-%cpu,node").unwrap(),
            vec![(Col::Cpu, true), (Col::Node, false)]
        );
        assert!(parse_sort("bogus").is_err());
        assert_eq!(
            parse_cols("jobid,step,job").unwrap(),
            vec![Col::Job, Col::Step, Col::Job]
        );
        assert_eq!(
            parse_cols("node,pid,args").unwrap(),
            vec![Col::Node, Col::Pid, Col::Command]
        );
    }

    #[test]
    fn jobs_sort_numerically_and_none_last() {
        let mut ids = vec![
            None,
            Some("10"),
            Some("9"),
            Some("batch"),
            Some("extern"),
            None,
        ];
        ids.sort_by(|a, b| job_cmp(*a, *b));
        assert_eq!(
            ids,
            vec![
                Some("9"),
                Some("10"),
                Some("batch"),
                Some("extern"),
                None,
                None
            ]
        );
    }

    #[test]
    fn table_aligns_and_keeps_the_command_whole() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &[Col::Node, Col::Pid, Col::Command],
            &[row("n1", 5, 1.0), row("n10", 12345, 2.0)],
            true,
            None,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "NODE   PID COMMAND\nn1       5 a b\nn10  12345 a b\n");
    }

    /// On a terminal lines are cut at its width, in the command column
    /// (procps' behaviour; `-w` and pipes keep whole lines).
    #[test]
    fn a_terminal_width_cuts_the_command() {
        let mut long = row("n1", 5, 1.0);
        long.command = "./solver --input /scratch/big/case.h5 --steps 100000".into();
        let mut out = Vec::new();
        write_table(
            &mut out,
            &[Col::Node, Col::Pid, Col::Command],
            &[long],
            true,
            Some(20),
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "NODE PID COMMAND\nn1     5 ./solver --\n");
        assert!(s.lines().all(|l| l.chars().count() <= 20), "{s}");
    }
}

//! The aggregator's tables: `/ps`, `/load`, `/nodes`, `/jobs` and each
//! job's `/job/<id>/nodes` (its `/job/<id>/ps` is `/ps`'s).
//!
//! # Format
//!
//! Plain text, lines ended by `\n`. The first line that is neither blank
//! nor a note is the header: the column names, separated by spaces. Every
//! later line is a row, or a note when it starts with `#`. The cells of a
//! row are separated by spaces (readers accept runs of them); no cell holds
//! whitespace, except the last column (`COMMAND` of `/ps`, `ERROR` of
//! `/nodes`), which is the rest of the line and may hold spaces. A cell of
//! `-` means "none" (no round-trip time yet, no error).
//!
//! ```text
//! NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR JOBID STEP GPU COMMAND
//! n1 4242 1 alice R 99.5 1.2 51200 2097152 2026-11-26T05:07:16Z 1:02:03 8 1234 0 nvidia0,nvidia3 ./my job --name x
//! n1 4300 1 alice S 0.0 0.1 2048 8192 2026-11-26T05:10:00Z 0:00:00 1 - - - -bash
//! # missing n3: connection refused
//! # stale n4: 12.3s old (deadline exceeded)
//! ```
//!
//! Notes say what a table leaves out or qualifies, one per line:
//! `# missing NODE: reason` (the node has no rows: it failed or timed out),
//! `# pending NODE: reason` (no rows either, but the node is up and its
//! data had not come by the table's deadline: late, not failed; a reader
//! that does not know this kind keeps it as another note),
//! `# stale NODE: AGEs old (reason)` (its rows come from a copy past its
//! cache TTL, which a `stale` cache rule allowed) and `# foreign NODE:
//! reason` (the node answers but serves no Linux `/proc`, a Plan 9 machine
//! or a plain file server: it has no rows, and its files are browsable
//! under `/NODE/`). They follow the rows.
//!
//! The columns are [`PS_HEADER`], [`LOAD_HEADER`], [`NODES_HEADER`],
//! [`JOBS_HEADER`] and [`JOB_NODES_HEADER`]; [`PsRow`], [`LoadRow`],
//! [`NodeRow`], [`JobRow`] and [`JobNodeRow`] are the rows, each written by
//! its `line` and read by [`Table::parse`].
//!
//! ```text
//! JOBID USER PROCS NNODES %CPU RSS STATES START NODES
//! 1234 alice 130 64 6399.0 104857600 R128,S2 2026-11-26T05:07:16Z n[001-064]
//! ```
//!
//! A `/jobs` row sums the `/ps` rows of one job **as printed** (each
//! `%CPU` to its tenth), so its sums are exactly those of the job's rows a
//! reader of `/ps` can add up: the rows the reader may see, never others.
//!
//! # Extending it without breaking older readers
//!
//! Readers ([`Table::parse`], so `gproc ps`, `gproc top`, the benchmarks)
//! find columns **by header name**, never by position, so:
//!
//! - a new column goes anywhere **before the last column** (the last one is
//!   the rest of the line, so it must stay last); an older reader ignores a
//!   column it does not know;
//! - a reader that finds a column it knows missing, or a cell it cannot
//!   read, uses the column's default (0, empty, none), so a column may be
//!   dropped or a value written as `-`; only the columns that identify a
//!   row (`NODE`, and `PID` in `/ps`) are required, and a table whose header
//!   lacks one is refused;
//! - a cell's syntax never changes (units, time formats); a new meaning is a
//!   new column;
//! - any line starting with `#` is a note, and a note kind a reader does not
//!   know is kept as [`Note::Other`], never read as a row. So new kinds of
//!   notes start with `#` and a word of their own.
//!
//! Scripts that split rows by position (`awk '{print $2}'`) keep working
//! too when a new column goes right before the last one, after all others.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

/// Most bytes a client reads of one cluster-wide table. `/ps` is about
/// 110 bytes per process: 10,000 nodes of 100 processes make 110 MB, past
/// the client's default limit for a file (64 MiB), and a large cluster
/// with busy nodes makes several times that.
pub const MAX_TABLE_BYTES: u64 = 4 << 30;

/// Header of `/ps`.
pub const PS_HEADER: &str =
    "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR JOBID STEP GPU COMMAND";

/// Header of `/load`.
pub const LOAD_HEADER: &str = "NODE LOAD1 LOAD5 LOAD15 RUNNING TASKS CPUS MEM_TOTAL_MB MEM_USED_MB MEM_AVAIL_MB PROCS UPTIME ARCH KERNEL";

/// Header of `/nodes`.
pub const NODES_HEADER: &str =
    "NODE STATE ADDRESS DIALECT RTT_MS LAST_CONTACT ARCH KERNEL AGE VIA ERROR";

/// Header of `/jobs`.
pub const JOBS_HEADER: &str = "JOBID USER PROCS NNODES %CPU RSS STATES START GPUS NODES";

/// Header of `/job/<id>/nodes`.
pub const JOB_NODES_HEADER: &str = "NODE PROCS %CPU %MEM RSS GPU";

// ---------------------------------------------------------------------------
// Rows

/// A kind of table row: its header, how a row is written and how it is read
/// back from the cells of a parsed line.
pub trait Row: Sized {
    /// The header this build writes: column names separated by one space.
    /// Cell indexes given to [`Cells::get`] are positions in it.
    const HEADER: &'static str;
    /// Columns a line cannot be a row without; a header lacking one is
    /// refused.
    const REQUIRED: &'static [&'static str];

    /// The row as one line (no newline), cells made safe for the format.
    fn line(&self) -> String;

    /// The row from its cells; `None` when a required cell is unreadable.
    fn read(cells: &Cells<'_>) -> Option<Self>;
}

/// The cells of one row, by the position of their column in the reader's
/// [`Row::HEADER`] (whatever the order in the table read).
#[derive(Debug)]
pub struct Cells<'a> {
    cells: Vec<Option<&'a str>>,
}

impl<'a> Cells<'a> {
    /// The cell of column `i` of [`Row::HEADER`]; `None` when the table has
    /// no such column.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.cells.get(i).copied().flatten()
    }

    /// Column `i` read by `f`; `None` when absent, `-` or unreadable.
    fn opt<T>(&self, i: usize, f: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        self.get(i).filter(|c| *c != "-").and_then(f)
    }

    /// Column `i` parsed, its type's default when absent or unreadable.
    fn num<T: FromStr + Default>(&self, i: usize) -> T {
        self.opt(i, |c| c.parse().ok()).unwrap_or_default()
    }

    /// Column `i` as text, empty when absent, [`hostile`] characters made
    /// `?`: a table from an older or a foreign server reaches terminals
    /// (`gproc ps`, `gproc top`) only through this.
    fn text(&self, i: usize) -> String {
        visible(self.get(i).unwrap_or_default())
    }

    /// The row's node name: required, never empty, made visible.
    fn node(&self) -> Option<String> {
        self.get(0).filter(|n| !n.is_empty()).map(visible)
    }
}

/// One process as `/ps` shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PsRow {
    /// Node name.
    pub node: String,
    /// Process id on that node.
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Effective user's name.
    pub user: String,
    /// State letter.
    pub state: char,
    /// CPU use over the process's life, percent of one CPU (one decimal).
    pub cpu: f64,
    /// Resident memory, percent of the node's memory (one decimal).
    pub mem: f64,
    /// Resident set, KiB.
    pub rss_kb: u64,
    /// Virtual size, KiB.
    pub vsz_kb: u64,
    /// Start time, unix seconds.
    pub start: u64,
    /// CPU time consumed, seconds.
    pub time: u64,
    /// Threads.
    pub threads: i64,
    /// The batch job it runs in (`JOBID`); `None` outside any job, or
    /// from an aggregator that does not say.
    pub job: Option<String>,
    /// The job's step (`STEP`), where it is in one.
    pub step: Option<String>,
    /// The GPU devices it has open (`GPU`, as
    /// [`crate::format::gpus::Gpus::display`] writes them); `None` for
    /// none, and when unknown or not the reader's to see.
    pub gpu: Option<String>,
    /// Command line (or `[comm]`).
    pub command: String,
}

impl Row for PsRow {
    const HEADER: &'static str = PS_HEADER;
    const REQUIRED: &'static [&'static str] = &["NODE", "PID"];

    fn line(&self) -> String {
        let mut out = String::with_capacity(128);
        self.fields()
            .write(&mut out, |out| out.push_str(&self.command));
        out
    }

    fn read(c: &Cells<'_>) -> Option<Self> {
        Some(PsRow {
            node: c.node()?,
            pid: c.get(1)?.parse().ok()?,
            ppid: c.num(2),
            user: c.text(3),
            state: c
                .opt(4, |s| s.chars().next())
                .filter(|s| !hostile(*s))
                .unwrap_or('?'),
            cpu: c.num(5),
            mem: c.num(6),
            rss_kb: c.num(7),
            vsz_kb: c.num(8),
            start: c.opt(9, parse_start).unwrap_or_default(),
            time: c.opt(10, parse_cputime).unwrap_or_default(),
            threads: c.num(11),
            job: c.opt(12, |s| Some(visible(s))),
            step: c.opt(13, |s| Some(visible(s))),
            gpu: c.opt(14, |s| Some(visible(s))),
            command: c.text(15),
        })
    }
}

/// One node's figures as `/load` shows them (Supermon's per-node numbers).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadRow {
    /// Node name.
    pub node: String,
    /// Load averages over 1, 5 and 15 minutes (two decimals).
    pub load: [f64; 3],
    /// Runnable tasks.
    pub running: u64,
    /// All tasks.
    pub tasks: u64,
    /// CPUs.
    pub cpus: u64,
    /// Total memory, MiB.
    pub mem_total_mb: u64,
    /// Used memory, MiB.
    pub mem_used_mb: u64,
    /// Available memory, MiB.
    pub mem_avail_mb: u64,
    /// Processes.
    pub procs: u64,
    /// Time since boot.
    pub uptime: Uptime,
    /// The node's machine (`uname -m`: `x86_64`, `ppc64`, `aarch64`);
    /// `None` when the node did not say (no summary file).
    pub arch: Option<String>,
    /// The node's kernel release; `None` when unknown.
    pub kernel: Option<String>,
}

impl LoadRow {
    /// Used memory as a percentage of the total.
    pub fn mem_pct(&self) -> f64 {
        if self.mem_total_mb == 0 {
            0.0
        } else {
            self.mem_used_mb as f64 * 100.0 / self.mem_total_mb as f64
        }
    }
}

impl Row for LoadRow {
    const HEADER: &'static str = LOAD_HEADER;
    const REQUIRED: &'static [&'static str] = &["NODE"];

    fn line(&self) -> String {
        format!(
            "{} {:.2} {:.2} {:.2} {} {} {} {} {} {} {} {} {} {}",
            cell(&self.node),
            self.load[0],
            self.load[1],
            self.load[2],
            self.running,
            self.tasks,
            self.cpus,
            self.mem_total_mb,
            self.mem_used_mb,
            self.mem_avail_mb,
            self.procs,
            self.uptime,
            self.arch.as_deref().map_or_else(|| "-".into(), cell),
            self.kernel.as_deref().map_or_else(|| "-".into(), cell),
        )
    }

    fn read(c: &Cells<'_>) -> Option<Self> {
        Some(LoadRow {
            node: c.node()?,
            load: [c.num(1), c.num(2), c.num(3)],
            running: c.num(4),
            tasks: c.num(5),
            cpus: c.num(6),
            mem_total_mb: c.num(7),
            mem_used_mb: c.num(8),
            mem_avail_mb: c.num(9),
            procs: c.num(10),
            uptime: c.num(11),
            arch: c.opt(12, |s| Some(visible(s))),
            kernel: c.opt(13, |s| Some(visible(s))),
        })
    }
}

impl PsRow {
    /// The row's cells, borrowed, for [`PsFields::write`].
    pub fn fields(&self) -> PsFields<'_> {
        PsFields {
            node: &self.node,
            pid: self.pid,
            ppid: self.ppid,
            user: &self.user,
            state: self.state,
            cpu: self.cpu,
            mem: self.mem,
            rss_kb: self.rss_kb,
            vsz_kb: self.vsz_kb,
            start: self.start,
            time: self.time,
            threads: self.threads,
            job: self.job.as_deref(),
            step: self.step.as_deref(),
            gpu: self.gpu.as_deref(),
        }
    }
}

/// A `/ps` row's cells but the command, borrowed: the one writer of a
/// row's bytes, used by [`PsRow::line`] and by the aggregator straight
/// from a node's summary (no allocation per cell, so a cold `/ps` costs
/// what its bytes do).
#[derive(Debug, Clone, Copy)]
pub struct PsFields<'a> {
    /// See [`PsRow::node`].
    pub node: &'a str,
    /// See [`PsRow::pid`].
    pub pid: i32,
    /// See [`PsRow::ppid`].
    pub ppid: i32,
    /// See [`PsRow::user`].
    pub user: &'a str,
    /// See [`PsRow::state`].
    pub state: char,
    /// See [`PsRow::cpu`].
    pub cpu: f64,
    /// See [`PsRow::mem`].
    pub mem: f64,
    /// See [`PsRow::rss_kb`].
    pub rss_kb: u64,
    /// See [`PsRow::vsz_kb`].
    pub vsz_kb: u64,
    /// See [`PsRow::start`].
    pub start: u64,
    /// See [`PsRow::time`].
    pub time: u64,
    /// See [`PsRow::threads`].
    pub threads: i64,
    /// See [`PsRow::job`].
    pub job: Option<&'a str>,
    /// See [`PsRow::step`].
    pub step: Option<&'a str>,
    /// See [`PsRow::gpu`].
    pub gpu: Option<&'a str>,
}

impl PsFields<'_> {
    /// Appends the row (no newline): the cells, then whatever `command`
    /// appends as the last one, with [`hostile`] characters made `?` (an
    /// empty command is `?`).
    pub fn write(&self, out: &mut String, command: impl FnOnce(&mut String)) {
        let state = if self.state.is_whitespace() || hostile(self.state) {
            '?'
        } else {
            self.state
        };
        let mut n = itoa::Buffer::new();
        cell_into(out, self.node);
        out.push(' ');
        out.push_str(n.format(self.pid));
        out.push(' ');
        out.push_str(n.format(self.ppid));
        out.push(' ');
        cell_into(out, self.user);
        out.push(' ');
        out.push(state);
        out.push(' ');
        tenths_into(out, self.cpu);
        out.push(' ');
        tenths_into(out, self.mem);
        out.push(' ');
        out.push_str(n.format(self.rss_kb));
        out.push(' ');
        out.push_str(n.format(self.vsz_kb));
        out.push(' ');
        start_into(out, self.start);
        out.push(' ');
        cputime_into(out, self.time);
        out.push(' ');
        out.push_str(n.format(self.threads));
        for v in [self.job, self.step, self.gpu] {
            out.push(' ');
            match v {
                Some(v) => cell_into(out, v),
                None => out.push('-'),
            }
        }
        out.push(' ');
        let at = out.len();
        command(out);
        last_cell_fixup(out, at);
    }
}

/// Makes the text appended from `at` on a last cell: [`hostile`]
/// characters become `?`, and nothing at all becomes `?`.
fn last_cell_fixup(out: &mut String, at: usize) {
    let tail = &out[at..];
    if tail.is_empty() {
        out.push('?');
    } else if !tail.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        let fixed: String = tail
            .chars()
            .map(|c| if hostile(c) { '?' } else { c })
            .collect();
        out.truncate(at);
        out.push_str(&fixed);
    }
}

/// Time since boot to the minute, as `/load` prints it: `Dd+HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Uptime {
    /// Whole minutes since boot.
    pub minutes: u64,
}

impl Uptime {
    /// From seconds (a node's `/proc/uptime`); negative counts as 0.
    pub fn from_secs(secs: f64) -> Uptime {
        Uptime {
            minutes: secs.max(0.0) as u64 / 60,
        }
    }
}

impl fmt::Display for Uptime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.minutes;
        write!(f, "{}d+{:02}:{:02}", m / 1440, m / 60 % 24, m % 60)
    }
}

impl FromStr for Uptime {
    type Err = ();

    fn from_str(s: &str) -> Result<Uptime, ()> {
        let (d, hm) = s.split_once("d+").ok_or(())?;
        let (h, m) = hm.split_once(':').ok_or(())?;
        let n = |v: &str| v.parse::<u64>().ok();
        let minutes = || {
            n(d)?
                .checked_mul(1440)?
                .checked_add(n(h)?.checked_mul(60)?)?
                .checked_add(n(m)?)
        };
        minutes().map(|minutes| Uptime { minutes }).ok_or(())
    }
}

/// One node as `/nodes` shows it: the aggregator's connection to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeRow {
    /// Node name.
    pub node: String,
    /// `up`, `down`, `idle` (never contacted yet), or what a newer
    /// aggregator says.
    pub state: String,
    /// The node's 9P address.
    pub address: String,
    /// The 9P dialect spoken (`9P2000.L`, ...), once connected.
    pub dialect: Option<String>,
    /// Round-trip time in milliseconds (two decimals), if measured.
    pub rtt_ms: Option<f64>,
    /// Last successful exchange, unix seconds.
    pub last_contact: Option<u64>,
    /// The node's machine, from its last summary read; `None` if unknown.
    pub arch: Option<String>,
    /// The node's kernel release, from its last summary read.
    pub kernel: Option<String>,
    /// How old the node's data is: seconds since the snapshot of its last
    /// summary (one decimal); `None` when there is none.
    pub age_s: Option<f64>,
    /// The lower aggregators it is reached through, nearest first; empty
    /// for a node this aggregator dials itself.
    pub via: Vec<String>,
    /// Why the node is down, or its last error.
    pub error: Option<String>,
}

impl NodeRow {
    /// Whether the aggregator reaches the node.
    pub fn is_up(&self) -> bool {
        self.state == "up"
    }

    /// Whether the aggregator failed to reach it.
    pub fn is_down(&self) -> bool {
        self.state == "down"
    }
}

impl Row for NodeRow {
    const HEADER: &'static str = NODES_HEADER;
    const REQUIRED: &'static [&'static str] = &["NODE"];

    fn line(&self) -> String {
        let rtt = self
            .rtt_ms
            .map(|r| format!("{r:.2}"))
            .unwrap_or_else(|| "-".into());
        let contact = self
            .last_contact
            .map(format_start)
            .unwrap_or_else(|| "-".into());
        let err = self.error.as_deref().map_or_else(|| "-".into(), one_line);
        let age = self
            .age_s
            .filter(|a| a.is_finite())
            .map(|a| format!("{:.1}", a.max(0.0)))
            .unwrap_or_else(|| "-".into());
        let via = if self.via.is_empty() {
            "-".to_string()
        } else {
            self.via
                .iter()
                .map(|v| cell(v))
                .collect::<Vec<_>>()
                .join("/")
        };
        format!(
            "{} {} {} {} {rtt} {contact} {} {} {age} {via} {err}",
            cell(&self.node),
            cell(&self.state),
            cell(&self.address),
            self.dialect.as_deref().map_or_else(|| "-".into(), cell),
            self.arch.as_deref().map_or_else(|| "-".into(), cell),
            self.kernel.as_deref().map_or_else(|| "-".into(), cell),
        )
    }

    fn read(c: &Cells<'_>) -> Option<Self> {
        Some(NodeRow {
            node: c.node()?,
            state: c.text(1),
            address: c.text(2),
            dialect: c.opt(3, |d| Some(visible(d))),
            rtt_ms: c.opt(4, |r| r.parse().ok()),
            last_contact: c.opt(5, parse_start),
            arch: c.opt(6, |s| Some(visible(s))),
            kernel: c.opt(7, |s| Some(visible(s))),
            age_s: c.opt(8, |a| a.parse().ok().filter(|v: &f64| v.is_finite())),
            via: c
                .opt(9, |v| Some(v.split('/').map(visible).collect()))
                .unwrap_or_default(),
            error: c.opt(10, |e| (!e.is_empty()).then(|| visible(e))),
        })
    }
}

/// One batch job as `/jobs` shows it: the sums of its `/ps` rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobRow {
    /// The job id (`JOBID`).
    pub job: String,
    /// Who runs it: the users of its rows, comma-separated, root left out
    /// when anyone else is there (a workload manager's own processes in
    /// the job's cgroup are root's).
    pub user: String,
    /// Processes.
    pub procs: u64,
    /// Nodes it runs on.
    pub nnodes: u64,
    /// The `%CPU` of its rows summed, in tenths (as printed, one decimal).
    pub cpu_tenths: u64,
    /// Resident memory summed, KiB.
    pub rss_kb: u64,
    /// How many of its processes are in each state, by state letter.
    pub states: Vec<(char, u64)>,
    /// The earliest start of its processes, unix seconds.
    pub start: u64,
    /// GPU devices its processes have open, counted once per node and
    /// device (`GPUS`; `/job/<id>/nodes` lists them).
    pub gpus: u64,
    /// Whether a process had more descriptors than its node looked at, so
    /// that more may be open (`GPUS` ends in `+`).
    pub gpus_truncated: bool,
    /// Its nodes as a compressed hostlist (`n[001-064],login1`).
    pub nodes: String,
}

impl JobRow {
    /// The summed `%CPU`.
    pub fn cpu(&self) -> f64 {
        self.cpu_tenths as f64 / 10.0
    }

    /// The state counts as `/jobs` writes them (`R128,S2`; `-` for none),
    /// a state letter that could split the cell made `?`.
    pub fn states_cell(&self) -> String {
        if self.states.is_empty() {
            return "-".to_string();
        }
        self.states
            .iter()
            .map(|(c, n)| {
                let c = if c.is_whitespace() || hostile(*c) || *c == ',' {
                    '?'
                } else {
                    *c
                };
                format!("{c}{n}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A percentage as a `/ps` row prints it (`{:.1}`), in tenths: what sums
/// add up. Taken from the printed digits, since `x * 10.0` rounded can
/// differ from the decimal printing of `x` (50.05 prints `50.0`). Negative,
/// NaN and infinite: 0.
pub fn cpu_tenths(cpu: f64) -> u64 {
    if !cpu.is_finite() || cpu <= 0.0 {
        return 0;
    }
    if let Some(t) = tenths_far_from_tie(cpu) {
        return t;
    }
    let printed = format!("{cpu:.1}");
    let (int, frac) = printed.split_once('.').unwrap_or((&printed, "0"));
    let int: u64 = int.parse().unwrap_or(u64::MAX / 10);
    int.saturating_mul(10)
        .saturating_add(frac.parse::<u64>().unwrap_or(0))
}

/// Tenths written with one decimal (exact: no float rounding).
fn tenths(t: u64) -> String {
    format!("{}.{}", t / 10, t % 10)
}

/// Reads a cell written by [`tenths`] (or any decimal) back as tenths.
fn parse_tenths(s: &str) -> Option<u64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| cpu_tenths(v))
}

impl Row for JobRow {
    const HEADER: &'static str = JOBS_HEADER;
    const REQUIRED: &'static [&'static str] = &["JOBID"];

    fn line(&self) -> String {
        let states = self.states_cell();
        format!(
            "{} {} {} {} {} {} {states} {} {}{} {}",
            cell(&self.job),
            cell(&self.user),
            self.procs,
            self.nnodes,
            tenths(self.cpu_tenths),
            self.rss_kb,
            format_start(self.start),
            self.gpus,
            if self.gpus_truncated { "+" } else { "" },
            if self.nodes.is_empty() {
                "-".to_string()
            } else {
                cell(&self.nodes)
            },
        )
    }

    fn read(c: &Cells<'_>) -> Option<Self> {
        let states = c
            .opt(6, |s| {
                s.split(',')
                    .map(|e| {
                        let mut it = e.chars();
                        let st = it.next().filter(|s| !hostile(*s))?;
                        Some((st, it.as_str().parse().ok()?))
                    })
                    .collect::<Option<Vec<_>>>()
            })
            .unwrap_or_default();
        Some(JobRow {
            job: c.get(0).filter(|j| !j.is_empty()).map(visible)?,
            user: c.text(1),
            procs: c.num(2),
            nnodes: c.num(3),
            cpu_tenths: c.opt(4, parse_tenths).unwrap_or_default(),
            rss_kb: c.num(5),
            states,
            start: c.opt(7, parse_start).unwrap_or_default(),
            gpus: c
                .opt(8, |s| s.trim_end_matches('+').parse().ok())
                .unwrap_or_default(),
            gpus_truncated: c.get(8).is_some_and(|s| s.ends_with('+')),
            nodes: c.opt(9, |s| Some(visible(s))).unwrap_or_default(),
        })
    }
}

/// One node of a job as `/job/<id>/nodes` shows it: the sums of the job's
/// `/ps` rows there.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobNodeRow {
    /// Node name.
    pub node: String,
    /// The job's processes there.
    pub procs: u64,
    /// Their `%CPU` summed, in tenths (as printed).
    pub cpu_tenths: u64,
    /// Their `%MEM` summed, in tenths (as printed).
    pub mem_tenths: u64,
    /// Their resident memory summed, KiB.
    pub rss_kb: u64,
    /// The GPU devices they have open (`GPU`, as a `/ps` row's); `None`
    /// for none.
    pub gpu: Option<String>,
}

impl Row for JobNodeRow {
    const HEADER: &'static str = JOB_NODES_HEADER;
    const REQUIRED: &'static [&'static str] = &["NODE"];

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            cell(&self.node),
            self.procs,
            tenths(self.cpu_tenths),
            tenths(self.mem_tenths),
            self.rss_kb,
            self.gpu.as_deref().map_or_else(|| "-".into(), cell)
        )
    }

    fn read(c: &Cells<'_>) -> Option<Self> {
        Some(JobNodeRow {
            node: c.node()?,
            procs: c.num(1),
            cpu_tenths: c.opt(2, parse_tenths).unwrap_or_default(),
            mem_tenths: c.opt(3, parse_tenths).unwrap_or_default(),
            rss_kb: c.num(4),
            gpu: c.opt(5, |s| Some(visible(s))),
        })
    }
}

/// Characters a node (or whoever controls a process's name or command
/// line there) must not get onto a reader's terminal: control characters
/// (escape sequences, newlines that forge rows) and the bidirectional
/// overrides that make text display as something else.
fn hostile(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A cell that is not the last one: whitespace (which would split the cell
/// or the line) and [`hostile`] characters become `?`, and an empty cell
/// is `?`, so the columns stay where the header says.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    cell_into(&mut out, s);
    out
}

/// [`cell`], appended to `out`.
fn cell_into(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push('?');
    } else if s.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        out.push_str(s);
    } else {
        out.extend(s.chars().map(|c| {
            if c.is_whitespace() || hostile(c) {
                '?'
            } else {
                c
            }
        }));
    }
}

/// A cell's text as a table prints it ([`cell`]), borrowed when it needs
/// no change (nearly always).
pub fn cell_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.is_empty() && s.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(cell(s))
    }
}

/// Free text at the end of a line (an error, a note's reason): [`hostile`]
/// characters, newlines included, become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if hostile(c) { ' ' } else { c })
        .collect()
}

/// Text read from a table, with [`hostile`] characters made `?`.
fn visible(s: &str) -> String {
    s.chars()
        .map(|c| if hostile(c) { '?' } else { c })
        .collect()
}

/// `s` fit for a terminal on one line: control characters (escape
/// sequences, newlines) and bidirectional overrides become spaces. For
/// text that came from elsewhere and is printed outside a table, such as
/// an error a server sent.
pub fn printable(s: &str) -> String {
    one_line(s)
}

/// RFC 3339 UTC to the second: unambiguous across time zones, sorts as
/// text; `-` past the year 9999.
pub fn format_start(unix: u64) -> String {
    let mut out = String::with_capacity(20);
    start_into(&mut out, unix);
    out
}

/// The first second of the year 10000, past which RFC 3339 has no form.
const YEAR_10000: u64 = 253_402_300_800;

/// [`format_start`], appended to `out`: the civil date from the day
/// count (Hinnant's `civil_from_days`), as RFC 3339 writes it. A time
/// past the year 9999 (only a broken or hostile node sends one) has no
/// such form and is `-`, unknown.
fn start_into(out: &mut String, unix: u64) {
    if unix >= YEAR_10000 {
        out.push('-');
        return;
    }
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Days since 0000-03-01, in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // Filled in place and appended at once (a push per character cost
    // a fiftieth of a cold `/ps`).
    let mut b = *b"0000-00-00T00:00:00Z";
    let two = |b: &mut [u8; 20], at: usize, v: u64| {
        b[at] = b'0' + (v / 10 % 10) as u8;
        b[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut b, 0, year / 100);
    two(&mut b, 2, year % 100);
    two(&mut b, 5, month);
    two(&mut b, 8, day);
    two(&mut b, 11, secs / 3600);
    two(&mut b, 14, secs / 60 % 60);
    two(&mut b, 17, secs % 60);
    match std::str::from_utf8(&b) {
        Ok(t) => out.push_str(t),
        Err(_) => out.push('-'),
    }
}

fn parse_start(s: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// CPU time as `H:MM:SS`, hours unbounded (ps's TIME).
pub fn format_cputime(secs: u64) -> String {
    let mut out = String::with_capacity(10);
    cputime_into(&mut out, secs);
    out
}

/// [`format_cputime`], appended to `out`.
fn cputime_into(out: &mut String, secs: u64) {
    out.push_str(itoa::Buffer::new().format(secs / 3600));
    let (m, s) = (secs / 60 % 60, secs % 60);
    let b = [
        b':',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b':',
        b'0' + (s / 10) as u8,
        b'0' + (s % 10) as u8,
    ];
    if let Ok(t) = std::str::from_utf8(&b) {
        out.push_str(t);
    }
}

/// `v` with one decimal, the bytes `format!("{v:.1}")` makes: computed
/// from `v * 10` when that is far enough from a tie for its rounding
/// error not to matter, else by `format!`'s exact method.
fn tenths_into(out: &mut String, v: f64) {
    if let Some(r) = tenths_far_from_tie(v) {
        out.push_str(itoa::Buffer::new().format(r / 10));
        out.push('.');
        out.push(char::from(b'0' + (r % 10) as u8));
        return;
    }
    // Writing to a String cannot fail.
    let _ = write!(out, "{v:.1}");
}

/// `v` in tenths as `{v:.1}` prints it, when `v * 10` is far enough from a
/// tie for its rounding error not to matter; `None` near a tie (and for
/// negative, huge or non-finite `v`), where only the exact decimal
/// method of `format!` gives the printed digits.
fn tenths_far_from_tie(v: f64) -> Option<u64> {
    if !(v.is_sign_positive() && v < 1e9) {
        return None;
    }
    let t = v * 10.0;
    let frac = t - t.floor();
    ((frac - 0.5).abs() > 1e-6).then(|| t.round() as u64)
}

fn parse_cputime(s: &str) -> Option<u64> {
    let mut it = s.split(':');
    let (h, m, sec) = (
        it.next()?.parse::<u64>().ok()?,
        it.next()?.parse::<u64>().ok()?,
        it.next()?.parse::<u64>().ok()?,
    );
    h.checked_mul(3600)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(sec)
}

// ---------------------------------------------------------------------------
// Notes

/// A `#` line of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// `# missing NODE: reason`: the node has no rows in the table.
    Missing {
        /// The node.
        node: String,
        /// Why (an error, a timeout).
        reason: String,
        /// The aggregators the note came through, nearest the reader's
        /// first (empty when the reader's own aggregator wrote it).
        via: Vec<String>,
    },
    /// `# pending NODE: reason`: the node is up, but its data had not
    /// arrived when the table was made (the node is slow, or the
    /// aggregator busy, as just after a restart): it has no rows in this
    /// table, and a later read should have them. Unlike `missing`, nothing
    /// is known to have failed.
    Pending {
        /// The node.
        node: String,
        /// What is awaited.
        reason: String,
        /// As [`Note::Missing`]'s.
        via: Vec<String>,
    },
    /// `# stale NODE: 12.3s old (reason)`: the node's rows come from a copy
    /// past its TTL, which a `stale` cache rule allowed.
    Stale {
        /// The node.
        node: String,
        /// How far past its TTL the copy was (a tenth of a second in the
        /// text).
        age: Duration,
        /// Why no fresh copy was read.
        reason: String,
        /// As [`Note::Missing`]'s.
        via: Vec<String>,
    },
    /// `# foreign NODE: reason`: the node answers but serves no Linux
    /// `/proc` (no `stat`, `meminfo`, `loadavg` or `<pid>/stat`), so it has
    /// no rows; unlike `missing`, nothing failed and nothing is lost.
    Foreign {
        /// The node.
        node: String,
        /// What it lacks, and where to look instead.
        reason: String,
    },
    /// Any other note: its text after `#` and spaces. A kind this build does
    /// not know, from a newer aggregator.
    Other(String),
}

impl Note {
    /// The note of a `#` line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Note> {
        let text = line.strip_prefix('#')?.trim_start();
        let parsed = if let Some(rest) = text.strip_prefix("missing ") {
            rest.split_once(": ").map(|(node, reason)| {
                let (reason, via) = split_via(reason);
                Note::Missing {
                    node: visible(node),
                    reason: one_line(reason),
                    via,
                }
            })
        } else if let Some(rest) = text.strip_prefix("pending ") {
            rest.split_once(": ").map(|(node, reason)| {
                let (reason, via) = split_via(reason);
                Note::Pending {
                    node: visible(node),
                    reason: one_line(reason),
                    via,
                }
            })
        } else if let Some(rest) = text.strip_prefix("foreign ") {
            rest.split_once(": ").map(|(node, reason)| Note::Foreign {
                node: visible(node),
                reason: one_line(reason),
            })
        } else if let Some(rest) = text.strip_prefix("stale ") {
            rest.split_once(": ").and_then(|(node, tail)| {
                let (tail, via) = split_via(tail);
                let (age, after) = tail.split_once("s old")?;
                // Milliseconds, so that the tenths written read back exactly.
                let ms = (age.parse::<f64>().ok()? * 1000.0).round();
                let age = (0.0..1e15)
                    .contains(&ms)
                    .then(|| Duration::from_millis(ms as u64))?;
                let after = after.trim();
                let reason = after
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or(after);
                Some(Note::Stale {
                    node: visible(node),
                    age,
                    reason: one_line(reason),
                    via,
                })
            })
        } else {
            None
        };
        Some(parsed.unwrap_or_else(|| Note::Other(one_line(text))))
    }

    /// The node a note is about, if it is about one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Note::Missing { node, .. }
            | Note::Pending { node, .. }
            | Note::Stale { node, .. }
            | Note::Foreign { node, .. } => Some(node),
            Note::Other(_) => None,
        }
    }

    /// Appends the note as a line, newline included.
    pub fn write(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# {self}");
    }
}

/// The note's text, without the `# ` of its line.
impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Missing { node, reason, via } => {
                write!(f, "missing {}: {}", cell(node), one_line(reason))?;
                write_via(f, via)
            }
            Note::Pending { node, reason, via } => {
                write!(f, "pending {}: {}", cell(node), one_line(reason))?;
                write_via(f, via)
            }
            Note::Stale {
                node,
                age,
                reason,
                via,
            } => {
                write!(
                    f,
                    "stale {}: {:.1}s old ({})",
                    cell(node),
                    age.as_secs_f64(),
                    one_line(reason)
                )?;
                write_via(f, via)
            }
            Note::Foreign { node, reason } => {
                write!(f, "foreign {}: {}", cell(node), one_line(reason))
            }
            Note::Other(text) => f.write_str(&one_line(text)),
        }
    }
}

/// Writes ` [via A/B]` when a note came through lower aggregators.
fn write_via(f: &mut fmt::Formatter<'_>, via: &[String]) -> fmt::Result {
    if via.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = via.iter().map(|v| cell(v)).collect();
    write!(f, " [via {}]", names.join("/"))
}

/// A note's text without its trailing ` [via A/B]`, and the chain.
fn split_via(text: &str) -> (&str, Vec<String>) {
    let trimmed = text.trim_end();
    if let Some(open) = trimmed.rfind(" [via ")
        && let Some(inner) = trimmed[open + 6..].strip_suffix(']')
        && !inner.is_empty()
        && !inner.contains([' ', '['])
    {
        let via = inner.split('/').map(visible).collect();
        return (&trimmed[..open], via);
    }
    (text, Vec::new())
}

// ---------------------------------------------------------------------------
// Reading a table

/// A table read by [`Table::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Table<R> {
    /// The rows, in the table's order.
    pub rows: Vec<R>,
    /// The notes, in the table's order.
    pub notes: Vec<Note>,
    /// Lines that were neither rows nor notes (too few cells, or a required
    /// cell unreadable).
    pub skipped: usize,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            rows: Vec::new(),
            notes: Vec::new(),
            skipped: 0,
        }
    }
}

/// Why a text is not a table of the kind asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TableError {
    /// No header line: the text is empty or holds only notes.
    #[error("no header line (expected one like `{expected}`)")]
    NoHeader {
        /// The header this build writes.
        expected: &'static str,
    },
    /// The header lacks a column that identifies a row.
    #[error("the header lacks the {column} column: `{header}`")]
    MissingColumn {
        /// The column.
        column: &'static str,
        /// The header found (shortened).
        header: String,
    },
}

impl<R: Row> Table<R> {
    /// Reads a table, finding columns by header name (see the module doc
    /// for what is tolerated). Never panics, whatever the text.
    pub fn parse(text: &str) -> Result<Table<R>, TableError> {
        let known: Vec<&str> = R::HEADER.split(' ').collect();
        let mut table = Table::default();
        // For each column of the table read: its index in `known`.
        let mut columns: Option<Vec<Option<usize>>> = None;
        for line in text.lines() {
            if let Some(note) = Note::parse(line) {
                table.notes.push(note);
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let Some(cols) = &columns else {
                let names: Vec<&str> = line.split_whitespace().collect();
                if let Some(column) = R::REQUIRED.iter().find(|c| !names.contains(c)) {
                    return Err(TableError::MissingColumn {
                        column,
                        header: line.chars().take(120).collect(),
                    });
                }
                columns = Some(
                    names
                        .iter()
                        .map(|n| known.iter().position(|k| k == n))
                        .collect(),
                );
                continue;
            };
            let mut cells = Cells {
                cells: vec![None; known.len()],
            };
            if split_row(line, cols, &mut cells) {
                match R::read(&cells) {
                    Some(r) => table.rows.push(r),
                    None => table.skipped += 1,
                }
            } else {
                table.skipped += 1;
            }
        }
        if columns.is_none() {
            return Err(TableError::NoHeader {
                expected: R::HEADER,
            });
        }
        Ok(table)
    }
}

/// Splits `line` into the cells of `cols` (the last one the rest of the
/// line); false when it has too few cells.
fn split_row<'a>(line: &'a str, cols: &[Option<usize>], cells: &mut Cells<'a>) -> bool {
    let Some((last, firsts)) = cols.split_last() else {
        return false;
    };
    let mut rest = line.trim_start_matches(' ');
    for col in firsts {
        let Some(end) = rest.find(' ') else {
            // The last cell may be empty, but every other one is there.
            if rest.is_empty() {
                return false;
            }
            if let Some(k) = col {
                cells.cells[*k] = Some(rest);
            }
            rest = "";
            continue;
        };
        if let Some(k) = col {
            cells.cells[*k] = Some(&rest[..end]);
        }
        rest = rest[end..].trim_start_matches(' ');
    }
    if let Some(k) = last {
        cells.cells[*k] = Some(rest);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ps_row() -> PsRow {
        PsRow {
            node: "n01".into(),
            pid: 4242,
            ppid: 1,
            user: "alice".into(),
            state: 'R',
            cpu: 99.5,
            mem: 1.2,
            rss_kb: 51200,
            vsz_kb: 2097152,
            start: 1_795_669_636,
            time: 3723,
            threads: 8,
            job: Some("1234".into()),
            step: Some("0".into()),
            gpu: Some("nvidia0,nvidia3".into()),
            command: "./my job  --name x".into(),
        }
    }

    fn load_row() -> LoadRow {
        LoadRow {
            node: "n01".into(),
            load: [4.8, 4.85, 4.28],
            running: 6,
            tasks: 199,
            cpus: 16,
            mem_total_mb: 64000,
            mem_used_mb: 32000,
            mem_avail_mb: 32000,
            procs: 3,
            uptime: Uptime {
                minutes: 3 * 1440 + 2 * 60 + 7,
            },
            arch: Some("ppc64".into()),
            kernel: Some("6.1.0-18-powerpc64".into()),
        }
    }

    fn node_row() -> NodeRow {
        NodeRow {
            node: "n3".into(),
            state: "down".into(),
            address: "10.0.0.3:5640".into(),
            dialect: None,
            rtt_ms: None,
            last_contact: Some(1_795_669_636),
            arch: Some("aarch64".into()),
            kernel: None,
            age_s: Some(12.5),
            via: vec!["rack1".into()],
            error: Some("10.0.0.3:5640: Connection refused (os error 111)".into()),
        }
    }

    /// A table as the tree writes one: header, rows, notes.
    fn write<R: Row>(rows: &[R], notes: &[Note]) -> String {
        let mut out = format!("{}\n", R::HEADER);
        for r in rows {
            out.push_str(&r.line());
            out.push('\n');
        }
        for n in notes {
            n.write(&mut out);
        }
        out
    }

    #[test]
    fn node_supplied_text_cannot_reach_a_terminal_or_forge_rows() {
        let esc = "\u{1b}[2J\u{1b}]0;owned\u{7}";
        let row = PsRow {
            node: format!("n1{esc}"),
            user: format!("ev il{esc}\nroot"),
            state: '\u{1b}',
            command: format!("sleep 1{esc}\n\u{202e}gnp.exe"),
            ..PsRow::default()
        };
        let line = row.line();
        assert!(!line.chars().any(hostile), "{line:?}");
        let back = Table::<PsRow>::parse(&format!("{PS_HEADER}\n{line}\n")).unwrap();
        assert_eq!(back.rows.len(), 1, "one row, none forged");
        assert_eq!(back.rows[0].pid, row.pid);
        assert_eq!(back.rows[0].user, "ev?il?[2J?]0;owned??root");
        let err = NodeRow {
            node: "n2".into(),
            error: Some(format!("refused{esc}\n# missing n3: forged")),
            ..NodeRow::default()
        };
        let text = format!("{NODES_HEADER}\n{}\n", err.line());
        let t = Table::<NodeRow>::parse(&text).unwrap();
        assert!(t.notes.is_empty() && t.rows.len() == 1, "{text:?}");
    }

    #[test]
    fn tables_read_never_hand_control_characters_to_a_terminal() {
        // What an older or a foreign server may send: `gproc ps` and
        // `gproc top` print what they read, so reading cleans it.
        let esc = "\u{1b}]0;owned\u{7}\r\u{202e}";
        let text = format!(
            "{PS_HEADER}\nn1{esc} 7 1 ev{esc}il \u{1b} 0 0 0 0 - - 1 cmd {esc} x\n\
             # missing n2{esc}: refused{esc}\n# stale n3{esc}: 1.0s old ({esc})\n# new{esc}\n"
        );
        let t = Table::<PsRow>::parse(&text).unwrap();
        let r = &t.rows[0];
        for s in [&r.node, &r.user, &r.command] {
            assert!(!s.chars().any(hostile), "{s:?}");
        }
        assert_eq!(r.state, '?');
        assert_eq!(t.notes.len(), 3);
        for n in &t.notes {
            let (a, b) = match n {
                Note::Missing { node, reason, .. }
                | Note::Pending { node, reason, .. }
                | Note::Stale { node, reason, .. }
                | Note::Foreign { node, reason } => (node.clone(), reason.clone()),
                Note::Other(o) => (o.clone(), String::new()),
            };
            assert!(!a.chars().chain(b.chars()).any(hostile), "{n:?}");
        }
        let nodes =
            format!("{NODES_HEADER}\nn1 up{esc} a{esc} 9P{esc} - - ppc{esc} - - r{esc} err{esc}\n");
        let n = &Table::<NodeRow>::parse(&nodes).unwrap().rows[0];
        for s in [&n.state, &n.address] {
            assert!(!s.chars().any(hostile), "{s:?}");
        }
        assert!(!n.dialect.as_deref().unwrap().chars().any(hostile));
        assert!(!n.arch.as_deref().unwrap().chars().any(hostile));
        assert!(!n.error.as_deref().unwrap().chars().any(hostile));
        assert!(!n.via.iter().flat_map(|v| v.chars()).any(hostile));
        let load =
            format!("{LOAD_HEADER}\nn1{esc} 1 1 1 1 1 1 1 1 1 1 0d+00:01 ppc{esc} 6.1{esc}\n");
        let l = &Table::<LoadRow>::parse(&load).unwrap().rows[0];
        for s in [
            &l.node,
            l.arch.as_ref().unwrap(),
            l.kernel.as_ref().unwrap(),
        ] {
            assert!(!s.chars().any(hostile), "{s:?}");
        }
        assert_eq!(printable("a\u{1b}[2Jb\nc"), "a [2Jb c");
    }

    /// An older aggregator's `/nodes`, without ARCH and KERNEL (which go
    /// before the free-text ERROR), still reads, its error whole.
    #[test]
    fn nodes_without_arch_and_kernel_read_as_unknown() {
        let old = "NODE STATE ADDRESS DIALECT RTT_MS LAST_CONTACT ERROR\n\
                   n3 down 10.0.0.3:565 - - - connection refused (os error 111)\n";
        let r = &Table::<NodeRow>::parse(old).unwrap().rows[0];
        assert_eq!((r.arch.as_deref(), r.kernel.as_deref()), (None, None));
        assert_eq!(
            r.error.as_deref(),
            Some("connection refused (os error 111)")
        );
    }

    /// An older aggregator's `/ps`, without JOBID and STEP (which go
    /// before COMMAND), still reads, with no job and the command whole;
    /// a table with them reads them, whatever their place before COMMAND.
    #[test]
    fn ps_without_jobid_and_step_reads_as_no_job() {
        let old = "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR COMMAND\n\
                   n01 4242 1 alice R 99.5 1.2 51200 2097152 2026-11-26T05:07:16Z 1:02:03 8 ./my job  --name x\n";
        let r = &Table::<PsRow>::parse(old).unwrap().rows[0];
        assert_eq!(
            *r,
            PsRow {
                job: None,
                step: None,
                gpu: None,
                ..ps_row()
            }
        );
        let new = format!("{PS_HEADER}\n{}\n", ps_row().line());
        assert_eq!(Table::<PsRow>::parse(&new).unwrap().rows, vec![ps_row()]);
        let moved = "STEP NODE JOBID PID COMMAND\nbatch n1 77 5 sh -c x\n- n1 - 6 y\n";
        let t = Table::<PsRow>::parse(moved).unwrap();
        assert_eq!(
            (t.rows[0].job.as_deref(), t.rows[0].step.as_deref()),
            (Some("77"), Some("batch"))
        );
        assert_eq!(t.rows[0].command, "sh -c x");
        assert_eq!(
            (t.rows[1].job.as_deref(), t.rows[1].step.as_deref()),
            (None, None)
        );
    }

    /// An aggregator's `/ps` without GPU (older, before COMMAND) reads as
    /// no GPU with the command whole; GPU is found by name wherever it is.
    #[test]
    fn ps_without_gpu_reads_as_none() {
        let old = "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR JOBID STEP COMMAND\n\
                   n01 4242 1 alice R 99.5 1.2 51200 2097152 2026-11-26T05:07:16Z 1:02:03 8 1234 0 ./my job  --name x\n";
        let r = &Table::<PsRow>::parse(old).unwrap().rows[0];
        assert_eq!(
            *r,
            PsRow {
                gpu: None,
                ..ps_row()
            }
        );
        let moved = "GPU NODE PID COMMAND\nrender1,amd? n1 5 sh -c x\n- n1 6 y\n";
        let t = Table::<PsRow>::parse(moved).unwrap();
        assert_eq!(t.rows[0].gpu.as_deref(), Some("render1,amd?"));
        assert_eq!(t.rows[0].command, "sh -c x");
        assert_eq!(t.rows[1].gpu, None);
    }

    /// An older aggregator's `/load`, without ARCH and KERNEL, still reads.
    #[test]
    fn load_without_arch_and_kernel_reads_as_unknown() {
        let old = "NODE LOAD1 LOAD5 LOAD15 RUNNING TASKS CPUS MEM_TOTAL_MB MEM_USED_MB MEM_AVAIL_MB PROCS UPTIME\n\
                   n1 1 1 1 1 1 1 1 1 1 1 0d+00:01\n";
        let r = &Table::<LoadRow>::parse(old).unwrap().rows[0];
        assert_eq!((r.node.as_str(), r.cpus), ("n1", 1));
        assert_eq!((r.arch.as_deref(), r.kernel.as_deref()), (None, None));
    }

    #[test]
    fn lines_are_the_documented_bytes() {
        assert_eq!(
            ps_row().line(),
            "n01 4242 1 alice R 99.5 1.2 51200 2097152 2026-11-26T05:07:16Z 1:02:03 8 1234 0 nvidia0,nvidia3 ./my job  --name x"
        );
        let no_job = PsRow {
            job: None,
            step: None,
            gpu: None,
            ..ps_row()
        };
        assert!(
            no_job
                .line()
                .ends_with(" 1:02:03 8 - - - ./my job  --name x"),
            "{}",
            no_job.line()
        );
        assert_eq!(
            load_row().line(),
            "n01 4.80 4.85 4.28 6 199 16 64000 32000 32000 3 3d+02:07 ppc64 6.1.0-18-powerpc64"
        );
        assert_eq!(
            node_row().line(),
            "n3 down 10.0.0.3:5640 - - 2026-11-26T05:07:16Z aarch64 - 12.5 rack1 10.0.0.3:5640: Connection refused (os error 111)"
        );
        let up = NodeRow {
            state: "up".into(),
            dialect: Some("9P2000.L".into()),
            rtt_ms: Some(0.4213),
            error: None,
            ..node_row()
        };
        assert_eq!(
            up.line(),
            "n3 up 10.0.0.3:5640 9P2000.L 0.42 2026-11-26T05:07:16Z aarch64 - 12.5 rack1 -"
        );
        let mut out = String::new();
        Note::Missing {
            node: "n3".into(),
            reason: "refused\nagain".into(),
            via: vec![],
        }
        .write(&mut out);
        Note::Stale {
            node: "n4".into(),
            age: Duration::from_millis(12_345),
            reason: "deadline".into(),
            via: vec![],
        }
        .write(&mut out);
        Note::Missing {
            node: "n5".into(),
            reason: "refused".into(),
            via: vec!["rack1".into(), "sub 2".into()],
        }
        .write(&mut out);
        assert_eq!(
            out,
            "# missing n3: refused again\n# stale n4: 12.3s old (deadline)\n\
             # missing n5: refused [via rack1/sub?2]\n"
        );
    }

    #[test]
    fn cells_that_would_break_the_line_are_replaced() {
        let r = PsRow {
            user: "a b".into(),
            state: ' ',
            command: "rm\x1b[2J\n".into(),
            ..ps_row()
        };
        let line = r.line();
        assert!(line.contains(" a?b ? "), "{line}");
        assert!(line.ends_with(" rm?[2J?"), "{line}");
        let empty = PsRow {
            command: String::new(),
            ..ps_row()
        };
        assert!(empty.line().ends_with(" 8 1234 0 nvidia0,nvidia3 ?"));
        let spaced = PsRow {
            job: Some("12 34".into()),
            step: Some(String::new()),
            ..ps_row()
        };
        assert!(
            spaced.line().contains(" 8 12?34 ? nvidia0,nvidia3 ./my"),
            "{}",
            spaced.line()
        );
    }

    #[test]
    fn tables_round_trip() {
        let notes = vec![
            Note::Missing {
                node: "n3".into(),
                reason: "connection refused".into(),
                via: vec![],
            },
            Note::Stale {
                node: "n4".into(),
                age: Duration::from_millis(3_000),
                reason: "deadline exceeded (2s)".into(),
                via: vec!["rack1".into()],
            },
            Note::Missing {
                node: "n5".into(),
                reason: "connection refused".into(),
                via: vec!["mid".into(), "rack2".into()],
            },
            Note::Other("a note of a newer kind".into()),
        ];
        let ps = vec![
            ps_row(),
            PsRow {
                pid: 1,
                command: "[kthreadd]".into(),
                ..ps_row()
            },
        ];
        let t = Table::<PsRow>::parse(&write(&ps, &notes)).unwrap();
        assert_eq!((t.rows, t.notes, t.skipped), (ps, notes.clone(), 0));
        let load = vec![load_row()];
        let t = Table::<LoadRow>::parse(&write(&load, &notes)).unwrap();
        assert_eq!((t.rows, t.notes), (load, notes));
        let nodes = vec![
            node_row(),
            NodeRow {
                node: "n1".into(),
                state: "up".into(),
                dialect: Some("9P2000.u".into()),
                rtt_ms: Some(0.42),
                error: None,
                ..node_row()
            },
        ];
        let t = Table::<NodeRow>::parse(&write(&nodes, &[])).unwrap();
        assert_eq!(t.rows, nodes);
    }

    /// `/jobs` and `/job/<id>/nodes` rows: the documented bytes, sums
    /// in exact tenths, and back.
    #[test]
    fn job_rows_round_trip() {
        let j = JobRow {
            job: "1234".into(),
            user: "alice".into(),
            procs: 130,
            nnodes: 64,
            cpu_tenths: 63990,
            rss_kb: 104_857_600,
            states: vec![('R', 128), ('S', 2)],
            start: 1_795_669_636,
            gpus: 256,
            gpus_truncated: false,
            nodes: "n[001-064]".into(),
        };
        assert_eq!(
            j.line(),
            "1234 alice 130 64 6399.0 104857600 R128,S2 2026-11-26T05:07:16Z 256 n[001-064]"
        );
        assert_eq!(j.cpu(), 6399.0);
        let idle = JobRow {
            job: "12345.pbs01".into(),
            user: "bob,carol".into(),
            cpu_tenths: 3,
            states: vec![],
            gpus: 1,
            gpus_truncated: true,
            nodes: String::new(),
            ..j.clone()
        };
        assert!(idle.line().contains(" 1+ "), "{}", idle.line());
        let t = Table::<JobRow>::parse(&write(&[j.clone(), idle.clone()], &[])).unwrap();
        assert_eq!(t.rows, vec![j, idle]);
        let n = JobNodeRow {
            node: "n001".into(),
            procs: 2,
            cpu_tenths: 1999,
            mem_tenths: 12,
            rss_kb: 4096,
            gpu: Some("nvidia0,nvidia1,+".into()),
        };
        assert_eq!(n.line(), "n001 2 199.9 1.2 4096 nvidia0,nvidia1,+");
        let none = JobNodeRow {
            gpu: None,
            ..n.clone()
        };
        assert_eq!(none.line(), "n001 2 199.9 1.2 4096 -");
        let t = Table::<JobNodeRow>::parse(&write(&[n.clone(), none.clone()], &[])).unwrap();
        assert_eq!(t.rows, vec![n, none]);
        // What a /ps row prints is what is summed: 0.05 prints 0.1.
        assert_eq!(cpu_tenths(0.05), 1);
        assert_eq!(cpu_tenths(-1.0), 0);
        assert_eq!(cpu_tenths(f64::NAN), 0);
        for x in [199.94, 50.05, 0.25, 0.35, 1e6 + 0.05] {
            assert_eq!(format!("{x:.1}"), tenths(cpu_tenths(x)), "{x}");
        }
    }

    #[test]
    fn columns_are_found_by_name() {
        // Reordered, with a column this build does not know, and a last
        // column that is not COMMAND: COMMAND is then one cell.
        let text = "PID FUTURE NODE USER %CPU COMMAND START STAT NEWEST\n\
                    4242 x n01 alice 99.5 ./job 2026-11-26T05:07:16Z R what ever\n\
                    # missing n2: down\n";
        let t = Table::<PsRow>::parse(text).unwrap();
        assert_eq!(
            t.rows,
            vec![PsRow {
                node: "n01".into(),
                pid: 4242,
                user: "alice".into(),
                state: 'R',
                cpu: 99.5,
                start: 1_795_669_636,
                command: "./job".into(),
                ..PsRow::default()
            }]
        );
        assert_eq!(t.notes[0].node(), Some("n2"));

        let text = "NODE STATE GPUS ADDRESS RTT_MS ERROR\n\
                    n1 up 8 10.0.0.1:5640 0.50 -\n\
                    n2 down 0 10.0.0.2:5640 - timed out after 2s\n";
        let t = Table::<NodeRow>::parse(text).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert!(t.rows[0].is_up() && t.rows[1].is_down());
        assert_eq!(t.rows[0].rtt_ms, Some(0.5));
        assert_eq!(t.rows[0].dialect, None, "absent column: default");
        assert_eq!(t.rows[1].error.as_deref(), Some("timed out after 2s"));

        let text = "UPTIME CPUS NODE EXTRA LOAD1\n1d+00:01 4 n9 ? 0.25\n";
        let t = Table::<LoadRow>::parse(text).unwrap();
        assert_eq!(
            t.rows,
            vec![LoadRow {
                node: "n9".into(),
                load: [0.25, 0.0, 0.0],
                cpus: 4,
                uptime: Uptime { minutes: 1441 },
                ..LoadRow::default()
            }]
        );
    }

    #[test]
    fn unreadable_cells_default_and_rows_without_identity_are_skipped() {
        let text = format!(
            "{PS_HEADER}\n\
             a1 1 0 root S 0 0 1 1 0 0 1 - - - init\n\
             a1 x 0 root S 0 0 1 1 0 0 1 - - - no pid\n\
             short line\n\
             \n\
             a2 7 1 root S - - 1 1 - - 1 - - -\n"
        );
        let t = Table::<PsRow>::parse(&text).unwrap();
        assert_eq!(t.skipped, 2);
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.rows[0].start, t.rows[0].time), (0, 0));
        assert_eq!(t.rows[0].command, "init");
        assert_eq!((t.rows[1].pid, t.rows[1].cpu), (7, 0.0));
        assert_eq!(t.rows[1].command, "");
    }

    #[test]
    fn texts_that_are_not_tables() {
        assert_eq!(
            Table::<PsRow>::parse("").unwrap_err(),
            TableError::NoHeader {
                expected: PS_HEADER
            }
        );
        assert!(matches!(
            Table::<PsRow>::parse("# missing n1: x\n"),
            Err(TableError::NoHeader { .. })
        ));
        assert!(matches!(
            Table::<PsRow>::parse("NODE USER\nn1 root\n"),
            Err(TableError::MissingColumn { column: "PID", .. })
        ));
        assert!(matches!(
            Table::<LoadRow>::parse("Name:\tbash\n"),
            Err(TableError::MissingColumn { column: "NODE", .. })
        ));
    }

    #[test]
    fn notes_parse() {
        assert_eq!(Note::parse("n1 up"), None);
        assert_eq!(
            Note::parse("# stale n8: 3s old"),
            Some(Note::Stale {
                node: "n8".into(),
                age: Duration::from_secs(3),
                reason: String::new(),
                via: vec![],
            })
        );
        assert_eq!(
            Note::parse("# stale n8: soon"),
            Some(Note::Other("stale n8: soon".into()))
        );
        assert_eq!(
            Note::parse("# missing n7"),
            Some(Note::Other("missing n7".into()))
        );
        assert_eq!(
            Note::parse("#missing n7: gone").and_then(|n| n.node().map(str::to_string)),
            Some("n7".into())
        );
        assert_eq!(Note::parse("# stale n8: -1s old ()").unwrap().node(), None);
    }

    #[test]
    fn uptime_and_times() {
        assert_eq!(Uptime::from_secs(-5.0), Uptime { minutes: 0 });
        assert_eq!(Uptime::from_secs(90061.9).to_string(), "1d+01:01");
        assert_eq!("1d+01:01".parse(), Ok(Uptime { minutes: 1501 }));
        assert!("1d01:01".parse::<Uptime>().is_err());
        assert!("99999999999999999d+00:00".parse::<Uptime>().is_err());
        assert_eq!(format_cputime(3723), "1:02:03");
        assert_eq!(parse_cputime("1:02:03"), Some(3723));
        assert_eq!(parse_cputime("99999999999999999:0:0"), None);
        assert_eq!(
            parse_start(&format_start(1_795_669_636)),
            Some(1_795_669_636)
        );
    }

    /// A cell value the writer keeps as it is (no whitespace, not empty).
    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._:@\\[\\]-]{1,12}".prop_filter("`-` is none", |s| s != "-")
    }

    /// Free text that survives as a last column (no control characters, no
    /// leading space).
    fn tail() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9(][a-zA-Z0-9 ._:()\u{e9}-]{0,30}"
    }

    fn arb_ps() -> impl Strategy<Value = PsRow> {
        (
            (token(), any::<i32>(), any::<i32>(), token()),
            (
                "[A-Za-z]",
                0u32..100_000,
                0u32..10_000,
                any::<u64>(),
                any::<u64>(),
            ),
            (0u64..253_402_300_799, any::<u64>(), any::<i64>(), tail()),
            (
                proptest::option::of(token()),
                proptest::option::of(token()),
                proptest::option::of(token()),
            ),
        )
            .prop_map(
                |(
                    (node, pid, ppid, user),
                    (state, cpu, mem, rss_kb, vsz_kb),
                    (start, time, threads, command),
                    (job, step, gpu),
                )| PsRow {
                    node,
                    pid,
                    ppid,
                    user,
                    state: state.chars().next().unwrap_or('R'),
                    cpu: f64::from(cpu) / 10.0,
                    mem: f64::from(mem) / 10.0,
                    rss_kb,
                    vsz_kb,
                    start,
                    time,
                    threads,
                    job,
                    step,
                    gpu,
                    command,
                },
            )
    }

    fn arb_load() -> impl Strategy<Value = LoadRow> {
        (
            token(),
            [0u32..100_000, 0u32..100_000, 0u32..100_000],
            (any::<u64>(), any::<u64>(), any::<u64>()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
            0u64..1 << 40,
            (proptest::option::of(token()), proptest::option::of(token())),
        )
            .prop_map(
                |(
                    node,
                    load,
                    (running, tasks, cpus),
                    (total, used, avail, procs),
                    minutes,
                    (arch, kernel),
                )| {
                    LoadRow {
                        node,
                        load: load.map(|l| f64::from(l) / 100.0),
                        running,
                        tasks,
                        cpus,
                        mem_total_mb: total,
                        mem_used_mb: used,
                        mem_avail_mb: avail,
                        procs,
                        uptime: Uptime { minutes },
                        arch,
                        kernel,
                    }
                },
            )
    }

    fn arb_node() -> impl Strategy<Value = NodeRow> {
        (
            (token(), token(), token()),
            proptest::option::of(token()),
            proptest::option::of(0u32..1_000_000),
            proptest::option::of(0u64..253_402_300_799),
            (proptest::option::of(token()), proptest::option::of(token())),
            proptest::option::of(tail()),
            (
                proptest::option::of(0u32..1_000_000),
                proptest::collection::vec("[a-z][a-z0-9-]{0,7}", 0..3),
            ),
        )
            .prop_map(
                |(
                    (node, state, address),
                    dialect,
                    rtt,
                    last_contact,
                    (arch, kernel),
                    error,
                    (age, via),
                )| {
                    NodeRow {
                        node,
                        state,
                        address,
                        dialect,
                        rtt_ms: rtt.map(|r| f64::from(r) / 100.0),
                        last_contact,
                        arch,
                        kernel,
                        age_s: age.map(|a| f64::from(a) / 10.0),
                        via,
                        error: error.filter(|e| e != "-"),
                    }
                },
            )
    }

    fn arb_note() -> impl Strategy<Value = Note> {
        prop_oneof![
            (
                token(),
                tail(),
                proptest::collection::vec("[a-z][a-z0-9-]{0,7}", 0..3)
            )
                .prop_map(|(node, reason, via)| Note::Missing { node, reason, via }),
            (
                token(),
                tail(),
                proptest::collection::vec("[a-z][a-z0-9-]{0,7}", 0..3)
            )
                .prop_map(|(node, reason, via)| Note::Pending { node, reason, via }),
            (token(), tail()).prop_map(|(node, reason)| Note::Foreign { node, reason }),
            (
                token(),
                0u64..1_000_000,
                tail(),
                proptest::collection::vec("[a-z][a-z0-9-]{0,7}", 0..3)
            )
                .prop_map(|(node, tenths, reason, via)| Note::Stale {
                    node,
                    age: Duration::from_millis(tenths * 100),
                    reason,
                    via,
                }),
            "[a-z][a-z ]{0,20}[a-z]"
                .prop_filter("other kinds", |t| !t.starts_with("missing ")
                    && !t.starts_with("pending ")
                    && !t.starts_with("stale ")
                    && !t.starts_with("foreign "))
                .prop_map(Note::Other),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_tables_round_trip(
            ps in proptest::collection::vec(arb_ps(), 0..8),
            load in proptest::collection::vec(arb_load(), 0..8),
            nodes in proptest::collection::vec(arb_node(), 0..8),
            notes in proptest::collection::vec(arb_note(), 0..4),
        ) {
            let t = Table::<PsRow>::parse(&write(&ps, &notes)).unwrap();
            prop_assert_eq!(t, Table { rows: ps, notes: notes.clone(), skipped: 0 });
            let t = Table::<LoadRow>::parse(&write(&load, &notes)).unwrap();
            prop_assert_eq!(t, Table { rows: load, notes: notes.clone(), skipped: 0 });
            let t = Table::<NodeRow>::parse(&write(&nodes, &notes)).unwrap();
            prop_assert_eq!(t, Table { rows: nodes, notes, skipped: 0 });
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}", header in 0usize..3) {
            let text = format!("{}\n{text}", [PS_HEADER, LOAD_HEADER, NODES_HEADER][header]);
            let _ = Table::<PsRow>::parse(&text);
            let _ = Table::<LoadRow>::parse(&text);
            let _ = Table::<NodeRow>::parse(&text);
        }
    }

    /// The row writer before it wrote in place (a `format!` of cells
    /// each made a `String`): the bytes every table must keep.
    fn reference_line(r: &PsRow) -> String {
        fn cell(s: &str) -> String {
            if s.is_empty() {
                return "?".into();
            }
            s.replace(|c: char| c.is_whitespace() || hostile(c), "?")
        }
        let state = if r.state.is_whitespace() || hostile(r.state) {
            '?'
        } else {
            r.state
        };
        let command: String = r
            .command
            .chars()
            .map(|c| if hostile(c) { '?' } else { c })
            .collect();
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), cell);
        let cputime = format!(
            "{}:{:02}:{:02}",
            r.time / 3600,
            r.time / 60 % 60,
            r.time % 60
        );
        format!(
            "{} {} {} {} {} {:.1} {:.1} {} {} {} {} {} {} {} {} {}",
            cell(&r.node),
            r.pid,
            r.ppid,
            cell(&r.user),
            state,
            r.cpu,
            r.mem,
            r.rss_kb,
            r.vsz_kb,
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(r.start)),
            cputime,
            r.threads,
            opt(&r.job),
            opt(&r.step),
            opt(&r.gpu),
            if command.is_empty() { "?" } else { &command }
        )
    }

    /// Floats where one decimal is hard: ties in binary (`k/4`), values
    /// just around them, tenths, huge, negative, not finite.
    fn hard_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (0u32..4_000_000).prop_map(|k| f64::from(k) / 4.0),
            (0u32..4_000_000).prop_map(|k| f64::from(k) / 20.0),
            (0u32..4_000_000, -3i32..=3).prop_map(|(k, d)| f64::from_bits(
                (f64::from(k) / 20.0)
                    .to_bits()
                    .wrapping_add_signed(i64::from(d))
            )),
            0.0..1e12f64,
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
        ]
    }

    /// Any text at all, and the kinds that need escaping.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z \t\n\x1b\u{202e}\u{e9}\u{85}\u{a0}\u{3000}-]{0,12}",
            token(),
        ]
    }

    fn hostile_ps() -> impl Strategy<Value = PsRow> {
        (
            (
                any_text(),
                any::<i32>(),
                any::<i32>(),
                any_text(),
                any::<char>(),
            ),
            (hard_float(), hard_float(), any::<u64>(), any::<u64>()),
            (
                prop_oneof![0u64..YEAR_10000 + 10, any::<u64>(), Just(YEAR_10000 - 1)],
                any::<u64>(),
                any::<i64>(),
                any_text(),
            ),
            (
                proptest::option::of(any_text()),
                proptest::option::of(any_text()),
                proptest::option::of(any_text()),
            ),
        )
            .prop_map(
                |(
                    (node, pid, ppid, user, state),
                    (cpu, mem, rss_kb, vsz_kb),
                    (start, time, threads, command),
                    (job, step, gpu),
                )| PsRow {
                    node,
                    pid,
                    ppid,
                    user,
                    state,
                    cpu,
                    mem,
                    rss_kb,
                    vsz_kb,
                    start,
                    time,
                    threads,
                    job,
                    step,
                    gpu,
                    command,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The in-place writer makes the bytes the old one made, whatever
        /// the cells hold.
        #[test]
        fn ps_lines_are_the_old_writers_bytes(r in prop_oneof![arb_ps(), hostile_ps()]) {
            if r.start < YEAR_10000 {
                prop_assert_eq!(r.line(), reference_line(&r));
            } else {
                // The old writer panicked here (humantime has no form for
                // it); the row now says the start is unknown.
                let far = PsRow { start: 0, ..r.clone() };
                let read = |line: String| {
                    Table::<PsRow>::parse(&format!("{PS_HEADER}\n{line}\n")).map(|t| t.rows).ok()
                };
                // Debug, as NaN is not equal to itself.
                prop_assert_eq!(format!("{:?}", read(r.line())), format!("{:?}", read(reference_line(&far))));
            }
        }

        #[test]
        fn tenths_are_formats(v in hard_float()) {
            let mut out = String::new();
            tenths_into(&mut out, v);
            prop_assert_eq!(out, format!("{v:.1}"));
        }

        /// The sums' tenths are the printed digits, with or without the
        /// fast path.
        #[test]
        fn cpu_tenths_are_the_printed_digits(v in hard_float()) {
            let expected = if v.is_finite() && v > 0.0 {
                let printed = format!("{v:.1}");
                let (int, frac) = printed.split_once('.').unwrap_or((&printed, "0"));
                int.parse::<u64>()
                    .unwrap_or(u64::MAX / 10)
                    .saturating_mul(10)
                    .saturating_add(frac.parse().unwrap_or(0))
            } else {
                0
            };
            prop_assert_eq!(cpu_tenths(v), expected);
        }

        #[test]
        fn start_times_are_humantimes(t in prop_oneof![0u64..YEAR_10000, Just(YEAR_10000 - 1)]) {
            prop_assert_eq!(
                format_start(t),
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
            );
        }

        #[test]
        fn start_times_past_9999_are_unknown(t in YEAR_10000..=u64::MAX) {
            prop_assert_eq!(format_start(t), "-");
        }
    }
}

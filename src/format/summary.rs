//! The node summary file: every process of a node, and the node's clock and
//! identity facts, in one read.
//!
//! Reading `/proc/<pid>/status` for 200 processes over 9P, times thousands of
//! nodes, is the slow path. The agent therefore serves one synthesized file
//! ([`FILE_PATH`], `/.gproc/ps` in its tree) that it builds from the local
//! `/proc` on every read (its collector, `agent::collect`), and the
//! aggregator decodes with [`parse`]. The simulator builds the same bytes
//! from synthetic data with [`NodeSummary::encode`]. This module is the
//! format only: types, writer and parser, no I/O.
//!
//! # Format (`gproc-ps 1`)
//!
//! Plain text, one record per line, lines ended by `\n`, the whole file valid
//! UTF-8. Fields are separated by one space (the parser also accepts runs of
//! spaces). Every line starts with a tag saying what it is:
//!
//! ```text
//! gproc-ps 1
//! hostname n17
//! arch x86_64
//! kernel 6.1.0-18-amd64
//! boot_time 1700000000
//! clk_tck 100
//! page_size 4096
//! uptime 12345.67
//! idle 98765.43
//! time 1700012345.678901
//! cpus 64
//! mem_total_kb 263921340
//! mem_free_kb 101234500
//! mem_available_kb 200123456
//! loadavg 0.52 0.58 0.59 2 1234
//! # pid ppid ruid euid user state utime stime rss vsize start threads comm argc argv... [job step gpu]
//! p 1 0 0 0 root S 120 340 3000 170000000 5 1 systemd 2 /sbin/init splash
//! p 2 0 0 0 root S 0 0 0 0 5 1 kthreadd 0
//! p 4242 1 1000 1000 alice R 9000 12 51200 2147483648 81234 8 my\sjob 3 ./my\sjob --name \- 1234 0
//! end 3
//! ```
//!
//! - Line 1 is the magic `gproc-ps` and the format's major version. A parser
//!   refuses any other major version; compatible additions (new header keys,
//!   new line tags, new trailing fields) never change it.
//! - Header lines are `key value...`:
//!   `hostname`, `arch` (uname machine), `kernel` (uname release) are
//!   escaped strings; `boot_time` (unix seconds, `btime` of `/proc/stat`),
//!   `clk_tck` (`sysconf(_SC_CLK_TCK)`, positive), `page_size` (bytes,
//!   positive), `cpus` (online CPUs in `/proc/stat`), `mem_total_kb`,
//!   `mem_free_kb` are integers; `uptime` and `idle` (seconds, from
//!   `/proc/uptime`) and `time` (unix seconds of the snapshot, with
//!   fraction) are finite decimals; `loadavg` is `one five fifteen running
//!   total` as in `/proc/loadavg`. All of these are required.
//!   `mem_available_kb` is optional (kernels before 3.14 lack it).
//!   `gpu_scan 1` (optional, default 0) says the `p` lines' `gpu` fields
//!   are meaningful (see below).
//!   `pinned_walk 1` (optional, default 0) says the node resolves a
//!   process directory walked as `<pid>.<start>` ([`pinned_name`]) only to
//!   the process with that pid *and* that start time, so a reader that
//!   learnt a process from this summary never reaches another process that
//!   reused its pid.
//!   `fresh_at_zero 1` (optional, default 0) says the node serves this
//!   file as `/proc` serves its own: a read at offset 0 of an open fid,
//!   after its first read, takes a new summary, and every read returns as
//!   many bytes as asked until the end (a short read is the end). A reader
//!   may then keep the file open and read it from 0 for each refresh: one
//!   message instead of a walk, an open, two reads and a clunk. Without
//!   the line, a kept fid would serve the summary of its open forever.
//!   `generation EPOCH.GEN` (optional) names this summary for a reader
//!   that will ask the node what changed since it
//!   ([`crate::format::delta`]); a node that serves no deltas writes none.
//! - `p` lines are processes, in pid order, with these fields:
//!   `pid ppid ruid euid user state utime stime rss vsize start threads comm
//!   argc arg1 ... argN`: `user` is the name of the *effective* uid as
//!   resolved on the node (the uid in decimal when it has no name), as `ps`
//!   shows it; `state` is the one-character state of `stat`; `utime`,
//!   `stime` and `start` (time after boot) are clock ticks; `rss` is in
//!   pages and `vsize` in bytes; `threads` the number of threads; `comm` the
//!   escaped `comm` of `stat`; `argc` the number of arguments that follow,
//!   each one escaped field (so arguments stay distinct, empty ones too).
//!   `argc` is `0` for kernel threads, zombies and processes whose
//!   `cmdline` could not be read. Optional fields follow the arguments,
//!   in this order (added after version 1 first shipped, by the rules
//!   below, so older readers ignore them):
//!   `job` and `step`, escaped strings, the batch job and step the
//!   process runs in as its cgroup says ([`crate::format::jobs`]), `\-`
//!   for none; then `gpu`, the GPU devices the process has open
//!   ([`crate::format::gpus`]: `nvidia0,nvidia3`, `render1`, `amd?`, with
//!   the flags `+` for a scan cut at the agent's cap and `!` for a process
//!   whose owner could not read its descriptors), `\-` for none, `?` for
//!   unknown. A writer omits trailing optional fields that are all none,
//!   so a process in no job and holding no GPU has no field after its
//!   arguments; a reader takes a missing field as none (so a summary of an
//!   older agent reads as "no job"). A missing `gpu` is "none" only in a
//!   summary with the header line `gpu_scan 1` (the agent looked); without
//!   it every process's GPUs are unknown (an older agent, or one told not
//!   to look).
//! - Unknown arguments: `argc` `1` with the single argument `\x00` (one NUL
//!   byte, [`UNKNOWN_ARG`]) says the node's read of the process's
//!   `cmdline` did not finish within its deadline (the process's memory
//!   map is locked, e.g. by a thread stuck on a hung network file system),
//!   so its arguments are unknown, not absent. No real argument holds a
//!   NUL byte (`cmdline` separates arguments with NULs), so the marker is
//!   never a process's own; it is a listed field's ordinary syntax, so
//!   readers of version 1 that predate it keep the row and print it as `?`
//!   (a control character), which is what [`ProcEntry::cmdline_display`]
//!   shows.
//! - `end N` closes the file; `N` is the number of `p` lines. A file without
//!   it, or with the wrong count, was truncated and is rejected. Nothing after
//!   it is read.
//!
//! Escaping (strings only: `hostname`, `arch`, `kernel`, `user`, `state`,
//! `comm`, each argument): `\\` is a backslash, `\s` a space, `\t` a tab,
//! `\n` a newline, `\xHH` (two hex digits) any other byte: the writer uses it
//! for control characters (C0, DEL, C1, so a terminal is safe) and for bytes
//! that are not valid UTF-8. A field that is exactly `\-` is the empty
//! string. Any other backslash sequence is an error. Other bytes stand for
//! themselves, so printable UTF-8 (`café`) stays readable.
//!
//! # Extending it without breaking older readers
//!
//! What a reader of version 1 does with what it does not know, and so how a
//! newer writer may add to the format while older aggregators keep reading
//! it (`forward_compatible` in the tests writes each of these):
//!
//! - an unknown header key or line tag (`gpu_count 8`, `t 4242 ...`): the
//!   line is ignored. So a new node-wide fact is a new `key value...` line,
//!   and new per-process or per-thread records are lines with a new tag;
//! - fields past the ones listed above (after `loadavg`'s five, after the
//!   arguments of a `p` line, after any header key's value): ignored. So a
//!   new process field is appended after the arguments, never inserted;
//! - blank lines and `#` comments: ignored; anything after `end N`: never
//!   read;
//! - a later duplicate header key replaces an earlier one;
//! - a header key listed above as required but absent, or a listed field
//!   that does not parse: the whole summary is rejected. So required keys
//!   and the listed fields stay, with their meaning and syntax, for as long
//!   as the major version does; a new fact that some nodes cannot provide
//!   is optional, as `mem_available_kb` is;
//! - a new header key that changes how `p` lines read (as `gpu_scan`
//!   does): nothing more to do, deltas ([`crate::format::delta`]) send
//!   every `p` line when such a key changes. A new key that is a plain
//!   value, meaning nothing for `p` lines, may be added to the delta's
//!   list of value-only keys, so that its changing alone does not;
//! - another major version on line 1: rejected ([`SummaryError::Version`]),
//!   so an incompatible change (removing or reordering fields, changing a
//!   unit) is a new major version, which old readers refuse rather than
//!   misread. Tokens after the version on line 1 are ignored.
//!
//! `cmdline` is split at NUL bytes after dropping trailing NULs (the padding
//! that `setproctitle` leaves), so `a\0\0b\0` gives the arguments `a`, an empty
//! one, and `b`.

use std::borrow::Cow;
use std::fmt::Display;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;

pub use crate::format::escaped::{Args, Escaped};
pub(super) use crate::format::escaped::{escape_into, unescape};
use crate::format::gpus::{self, Gpus};
use crate::format::jobs::JobRef;

/// The directory, at the root of a node's tree, holding gproc's synthesized
/// files.
pub const GPROC_DIR: &str = ".gproc";

/// The summary file's name inside [`GPROC_DIR`].
pub const SUMMARY_FILE: &str = "ps";

/// Where a node serves the summary, relative to the root of its tree
/// (`/` [`GPROC_DIR`] `/` [`SUMMARY_FILE`]).
pub const FILE_PATH: &str = "/.gproc/ps";

/// First token of line 1: tells a summary from any other file.
pub const MAGIC: &str = "gproc-ps";

/// Major version written by [`NodeSummary::encode`] and the only one
/// [`parse`] reads. Compatible additions do not change it.
pub const VERSION: u32 = 1;

/// The one argument of a process whose arguments are unknown (see the
/// module doc): a NUL byte, which no real argument can hold.
pub const UNKNOWN_ARG: &[u8] = b"\0";

/// Most process entries a parse reserves room for before reading them;
/// a node with more grows the vector as its lines come.
const PROCS_RESERVED_MAX: usize = 4096;

/// Longest piece of hostile input quoted back in an error message.
const QUOTE_MAX: usize = 40;

/// Why bytes are not a summary this build can read.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The bytes are not a well-formed summary.
    #[error("line {line}: {msg}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was expected, and what was found.
        msg: String,
    },
    /// A file of a major version this build cannot read.
    #[error("line 1: unsupported {magic} version `{found}` (this build reads version {reads})")]
    Version {
        /// The format's magic (`gproc-ps`, `gproc-merged`).
        magic: &'static str,
        /// The version token as written (escaped, shortened).
        found: String,
        /// The version this build reads.
        reads: u32,
    },
}

impl SummaryError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            SummaryError::Parse { line, .. } => *line,
            SummaryError::Version { .. } => 1,
        }
    }
}

/// `/proc/loadavg`: the run-queue averages and the scheduling entity counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub one: f64,
    /// 5-minute load average.
    pub five: f64,
    /// 15-minute load average.
    pub fifteen: f64,
    /// Runnable threads now.
    pub running: u32,
    /// Threads that exist.
    pub total: u32,
}

/// One decoded summary: the node's facts and every process it had.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSummary {
    /// The node's hostname (`/proc/sys/kernel/hostname`).
    pub hostname: String,
    /// Machine architecture as uname reports it (`x86_64`, `ppc64`, ...):
    /// the aggregator must not assume its own.
    pub arch: String,
    /// Kernel release (uname `-r`).
    pub kernel: String,
    /// Boot time, unix seconds (`btime`).
    pub boot_time: u64,
    /// Clock ticks per second: the unit of `utime`, `stime`, `start_ticks`.
    pub clk_tck: u64,
    /// Page size in bytes: the unit of `rss_pages`.
    pub page_size: u64,
    /// Seconds since boot when the snapshot was taken; `time - uptime` is a
    /// finer boot time than `boot_time`.
    pub uptime: f64,
    /// Summed idle seconds of all CPUs.
    pub idle: f64,
    /// Unix time of the snapshot, with fraction: lets the aggregator compute
    /// %CPU between two summaries and spot a node with a wrong clock.
    pub time: f64,
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal`, KiB.
    pub mem_total_kb: u64,
    /// `MemFree`, KiB.
    pub mem_free_kb: u64,
    /// `MemAvailable`, KiB; `None` on kernels that lack it.
    pub mem_available_kb: Option<u64>,
    /// `/proc/loadavg`.
    pub loadavg: LoadAvg,
    /// The processes (not threads), in pid order.
    pub procs: Vec<ProcEntry>,
    /// The node resolves [`pinned_name`]s (`pinned_walk 1`).
    pub pinned_walk: bool,
    /// The node serves the summary anew on a read at offset 0 of an open
    /// fid (`fresh_at_zero 1`).
    pub fresh_at_zero: bool,
}

/// One process as the summary carries it; units are the node's (see
/// [`NodeSummary`] for `clk_tck` and `page_size`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcEntry {
    /// Process id (in the node's pid namespace).
    pub pid: i32,
    /// Parent's pid; 0 for init and kthreadd.
    pub ppid: i32,
    /// Real uid.
    pub ruid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Name of `euid` on the node (decimal uid when it has none): names are
    /// resolved where the password database is.
    pub user: Arc<str>,
    /// State letter from `stat` (`R`, `S`, `D`, `Z`, `T`, `I`, ...).
    pub state: char,
    /// User-mode CPU time, clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, clock ticks.
    pub stime: u64,
    /// Resident set size, pages.
    pub rss_pages: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
    /// Start time, clock ticks after boot.
    pub start_ticks: u64,
    /// Number of threads.
    pub threads: i64,
    /// `comm` exactly as the kernel has it (any bytes, kept escaped; see
    /// [`Self::comm_lossy`]).
    pub comm: Escaped,
    /// `argv` exactly, one element per argument (kept escaped); empty for
    /// kernel threads.
    pub cmdline: Args,
    /// The batch job (and step) the process runs in; `None` outside any
    /// job, and from agents that do not say.
    pub job: Option<Arc<JobRef>>,
    /// The GPU devices it has open; `None` when unknown (an agent that
    /// did not look, a scan that failed or did not finish in time).
    pub gpus: Option<Arc<Gpus>>,
}

impl ProcEntry {
    /// User plus system CPU time in seconds. A zero `clk_tck` (never valid)
    /// counts as 1 rather than dividing by zero.
    pub fn cpu_seconds(&self, clk_tck: u64) -> f64 {
        self.utime.saturating_add(self.stime) as f64 / clk_tck.max(1) as f64
    }

    /// Start time as unix seconds (with fraction), given the node's boot
    /// time and tick rate.
    pub fn start_time_unix(&self, boot_time: u64, clk_tck: u64) -> f64 {
        boot_time as f64 + self.start_ticks as f64 / clk_tck.max(1) as f64
    }

    /// Resident set size in bytes.
    pub fn rss_bytes(&self, page_size: u64) -> u64 {
        self.rss_pages.saturating_mul(page_size)
    }

    /// `comm` as text, invalid UTF-8 replaced.
    pub fn comm_lossy(&self) -> Cow<'_, str> {
        self.comm.lossy()
    }

    /// Whether the arguments are unknown (the node's read of `cmdline`
    /// did not finish in time), as opposed to absent.
    pub fn cmdline_unknown(&self) -> bool {
        self.cmdline.is_unknown()
    }

    /// The command as `ps` shows it: arguments joined by spaces, `[comm]`
    /// when there are none (kernel threads, zombies), `?` when they are
    /// unknown. Control characters become `?`, as in `ps`, so the result
    /// is safe on a terminal.
    pub fn cmdline_display(&self) -> String {
        let mut out = String::new();
        self.cmdline_into(&mut out);
        out.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }

    /// Appends the command as [`Self::cmdline_display`] shows it, but
    /// with control characters left in: for a writer that makes them safe
    /// itself (a table's last cell).
    pub fn cmdline_into(&self, out: &mut String) {
        if self.cmdline_unknown() {
            out.push('?');
        } else if self.cmdline.is_empty() {
            out.push('[');
            out.push_str(&self.comm_lossy());
            out.push(']');
        } else {
            self.cmdline.lossy_into(out);
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Appends ` value` (space first).
fn put(out: &mut Vec<u8>, v: impl Display) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, " {v}");
}

/// Non-finite floats (which `parse` refuses) become 0, so that `encode`
/// output always parses.
fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

/// Appends ` escaped`.
fn put_esc(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b' ');
    escape_into(out, bytes);
}

impl NodeSummary {
    /// Whether the summary says anything a Linux `/proc` would: a CPU, some
    /// memory, a process. Every Linux node has all three; a summary built
    /// from the files of a node that has none of them (a Plan 9 machine's
    /// `/proc`, a plain file server) is empty, and tables must say so
    /// rather than print a row of zeros as if the node were idle.
    pub fn has_linux_facts(&self) -> bool {
        self.cpus > 0 || self.mem_total_kb > 0 || !self.procs.is_empty()
    }

    /// The file's bytes: what the agent serves (from its collector) and the
    /// simulator serves (from synthetic data).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.procs.len() * 128);
        // Without `gpu_scan 1`, a reader takes every process's GPUs as
        // unknown; so a summary where none is known says nothing of them.
        let gpu_scan = self.procs.iter().any(|p| p.gpus.is_some());
        // Writing to a Vec cannot fail: the `io::Result`s are ignored.
        let _ = writeln!(out, "{MAGIC} {VERSION}");
        for (key, value) in [
            ("hostname", &self.hostname),
            ("arch", &self.arch),
            ("kernel", &self.kernel),
        ] {
            out.extend_from_slice(key.as_bytes());
            put_esc(&mut out, value.as_bytes());
            out.push(b'\n');
        }
        let _ = writeln!(
            out,
            "boot_time {}\nclk_tck {}\npage_size {}\nuptime {}\nidle {}\ntime {}\ncpus {}",
            self.boot_time,
            self.clk_tck,
            self.page_size,
            finite(self.uptime),
            finite(self.idle),
            finite(self.time),
            self.cpus,
        );
        let _ = writeln!(
            out,
            "mem_total_kb {}\nmem_free_kb {}",
            self.mem_total_kb, self.mem_free_kb
        );
        if let Some(avail) = self.mem_available_kb {
            let _ = writeln!(out, "mem_available_kb {avail}");
        }
        if self.pinned_walk {
            let _ = writeln!(out, "pinned_walk 1");
        }
        if self.fresh_at_zero {
            let _ = writeln!(out, "fresh_at_zero 1");
        }
        if gpu_scan {
            let _ = writeln!(out, "gpu_scan 1");
        }
        let l = &self.loadavg;
        let _ = writeln!(
            out,
            "loadavg {} {} {} {} {}",
            finite(l.one),
            finite(l.five),
            finite(l.fifteen),
            l.running,
            l.total
        );
        out.extend_from_slice(
            b"# pid ppid ruid euid user state utime stime rss vsize start threads comm argc argv... [job step gpu]\n",
        );
        for p in &self.procs {
            out.push(b'p');
            put(&mut out, p.pid);
            put(&mut out, p.ppid);
            put(&mut out, p.ruid);
            put(&mut out, p.euid);
            put_esc(&mut out, p.user.as_bytes());
            let mut buf = [0u8; 4];
            put_esc(&mut out, p.state.encode_utf8(&mut buf).as_bytes());
            put(&mut out, p.utime);
            put(&mut out, p.stime);
            put(&mut out, p.rss_pages);
            put(&mut out, p.vsize);
            put(&mut out, p.start_ticks);
            put(&mut out, p.threads);
            out.push(b' ');
            out.extend_from_slice(p.comm.as_escaped());
            put(&mut out, p.cmdline.len());
            if !p.cmdline.is_empty() {
                out.push(b' ');
                out.extend_from_slice(p.cmdline.as_escaped());
            }
            // Optional fields: written only up to the last one that is not
            // none.
            let gpu = match &p.gpus {
                // Unknown is the default without the header.
                None => gpu_scan.then(|| gpus::UNKNOWN.to_string()),
                Some(g) => (!g.is_empty()).then(|| g.token()),
            };
            let step = p.job.as_ref().and_then(|j| j.step.as_deref());
            if p.job.is_some() || gpu.is_some() {
                put_esc(&mut out, p.job.as_ref().map_or("", |j| &j.id).as_bytes());
            }
            if step.is_some() || gpu.is_some() {
                put_esc(&mut out, step.unwrap_or_default().as_bytes());
            }
            if let Some(g) = gpu {
                put_esc(&mut out, g.as_bytes());
            }
            out.push(b'\n');
        }
        let _ = writeln!(out, "end {}", self.procs.len());
        out
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// The pieces of bytes between `\n`s, as `split` gives them (the last one
/// empty after a final `\n`), found with a vectorised search: a summary
/// is mostly scanned here.
pub(super) struct Lines<'a>(pub(super) Option<&'a [u8]>);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                self.0 = rest.get(i + 1..);
                rest.get(..i)
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

/// Space-separated tokens of one line; runs of spaces count as one.
#[derive(Clone)]
pub(super) struct Tokens<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let (tok, after) = rest.split_at(end);
        self.rest = after;
        Some(tok)
    }
}

/// Hostile bytes made printable and short for an error message.
pub(super) fn quote(bytes: &[u8]) -> String {
    let mut esc = Vec::new();
    escape_into(&mut esc, bytes);
    let s = String::from_utf8_lossy(&esc);
    if s.chars().count() > QUOTE_MAX {
        let short: String = s.chars().take(QUOTE_MAX).collect();
        format!("`{short}...`")
    } else {
        format!("`{s}`")
    }
}

/// The first token of `rest` when it is 1 to 19 ASCII digits, as a
/// number, and what follows it; `None` for anything else (the general
/// path then reads the token, with its error).
fn leading_digits(rest: &[u8]) -> Option<(u64, &[u8])> {
    let start = rest.iter().position(|&b| b != b' ')?;
    let mut v: u64 = 0;
    let mut i = start;
    while let Some(&b) = rest.get(i) {
        if b == b' ' {
            break;
        }
        if !b.is_ascii_digit() || i - start == 19 {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
        i += 1;
    }
    (i > start).then(|| (v, &rest[i..]))
}

/// A token of ASCII digits only, as a number; `None` for anything else
/// (signs, overflow), which then takes `FromStr`'s slower, same answer.
fn digits(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 19 {
        return None;
    }
    tok.iter().try_fold(0u64, |v, &b| {
        b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0'))
    })
}

/// The tokens of one line, with the line number for errors.
pub(super) struct Fields<'a> {
    pub(super) toks: Tokens<'a>,
    pub(super) line: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn err(&self, msg: String) -> SummaryError {
        SummaryError::Parse {
            line: self.line,
            msg,
        }
    }

    pub(super) fn token(&mut self, what: &str) -> Result<&'a [u8], SummaryError> {
        match self.toks.next() {
            Some(t) => Ok(t),
            None => Err(self.err(format!("expected {what}, found end of line"))),
        }
    }

    pub(super) fn num<T: std::str::FromStr + TryFrom<u64>>(
        &mut self,
        what: &str,
    ) -> Result<T, SummaryError> {
        // Nearly every number is plain digits: read them in the one pass
        // that finds the token's end.
        if let Some((v, rest)) = leading_digits(self.toks.rest)
            && let Ok(v) = T::try_from(v)
        {
            self.toks.rest = rest;
            return Ok(v);
        }
        let tok = self.token(what)?;
        digits(tok)
            .and_then(|v| T::try_from(v).ok())
            .or_else(|| std::str::from_utf8(tok).ok().and_then(|s| s.parse().ok()))
            .ok_or_else(|| self.err(format!("expected {what}, found {}", quote(tok))))
    }

    fn positive(&mut self, what: &str) -> Result<u64, SummaryError> {
        let v: u64 = self.num(what)?;
        if v == 0 {
            return Err(self.err(format!("expected {what}, found `0`")));
        }
        Ok(v)
    }

    pub(super) fn float(&mut self, what: &str) -> Result<f64, SummaryError> {
        let tok = self.token(what)?;
        std::str::from_utf8(tok)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.err(format!("expected {what}, found {}", quote(tok))))
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, SummaryError> {
        let tok = self.token(what)?;
        unescape(tok).ok_or_else(|| self.bad_escape(what, tok))
    }

    /// The error for a string field `what` whose token `tok` is not
    /// escaped as the format says.
    fn bad_escape(&self, what: &str, tok: &[u8]) -> SummaryError {
        self.err(format!(
            "expected {what} (escaped as \\\\ \\s \\t \\n \\xHH \\-), found {}",
            quote(tok)
        ))
    }

    /// An optional trailing string field: `None` when the line ends
    /// before it or it is `\-` (empty).
    fn optional(&mut self, what: &str) -> Result<Option<String>, SummaryError> {
        if self.toks.clone().next().is_none() {
            return Ok(None);
        }
        let s = self.string(what)?;
        Ok((!s.is_empty()).then_some(s))
    }

    pub(super) fn string(&mut self, what: &str) -> Result<String, SummaryError> {
        let b = self.bytes(what)?;
        Ok(String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn char(&mut self, what: &str) -> Result<char, SummaryError> {
        if let Some(&[b]) = self.toks.clone().next()
            && (b'!'..=b'~').contains(&b)
            && b != b'\\'
        {
            self.toks.next();
            return Ok(char::from(b));
        }
        let s = self.string(what)?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(self.err(format!(
                "expected {what} (one character), found {}",
                quote(s.as_bytes())
            ))),
        }
    }
}

/// Header values seen so far; required ones are checked at `end`.
#[derive(Default)]
struct Header {
    hostname: Option<String>,
    arch: Option<String>,
    kernel: Option<String>,
    boot_time: Option<u64>,
    clk_tck: Option<u64>,
    page_size: Option<u64>,
    uptime: Option<f64>,
    idle: Option<f64>,
    time: Option<f64>,
    cpus: Option<u32>,
    mem_total_kb: Option<u64>,
    mem_free_kb: Option<u64>,
    mem_available_kb: Option<u64>,
    loadavg: Option<LoadAvg>,
    pinned_walk: bool,
    fresh_at_zero: bool,
    gpu_scan: bool,
}

/// Strings many processes of one summary share (user names, job ids),
/// each allocated once per summary: a node's hundreds of processes run as
/// a handful of users in a few jobs.
#[derive(Default)]
struct Shared {
    users: Vec<Arc<str>>,
    /// The `job` and `step` fields as written, and what they decoded to.
    jobs: Vec<SharedJob>,
    /// The last `gpu` field as written, and what it decoded to: a job's
    /// processes on a GPU node hold the same devices, one after another.
    gpu: Option<(Vec<u8>, Arc<Gpus>)>,
}

/// The `job` and `step` fields as written, and what they decoded to.
type SharedJob = (Vec<u8>, Option<Vec<u8>>, Option<Arc<JobRef>>);

/// Past this many distinct values a summary's strings are not shared
/// (a linear search stays cheap, and a hostile node gains nothing).
const SHARED_MAX: usize = 32;

impl Shared {
    /// `user` as an `Arc<str>` equal to the last one of the same bytes.
    fn user(&mut self, raw: &[u8]) -> Option<Arc<str>> {
        if let Some(u) = self.users.iter().find(|u| u.as_bytes() == raw) {
            return Some(u.clone());
        }
        let bytes = unescape(raw)?;
        let u: Arc<str> = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            .into();
        // Kept only when the token was the name itself (no escapes), so
        // that the comparison above stays on raw bytes.
        if self.users.len() < SHARED_MAX && u.as_bytes() == raw {
            self.users.push(u.clone());
        }
        Some(u)
    }

    /// The job of the fields `id` and `step` as written, if an earlier
    /// process had the same (`Some(None)`: they name no valid job).
    fn job(&self, id: &[u8], step: Option<&[u8]>) -> Option<Option<Arc<JobRef>>> {
        self.jobs
            .iter()
            .find(|(i, s, _)| i.as_slice() == id && s.as_deref() == step)
            .map(|(_, _, j)| j.clone())
    }

    /// Keeps what the fields `id` and `step` decoded to.
    fn remember_job(&mut self, id: &[u8], step: Option<&[u8]>, job: Option<Arc<JobRef>>) {
        if self.jobs.len() < SHARED_MAX {
            self.jobs.push((id.to_vec(), step.map(<[u8]>::to_vec), job));
        }
    }
}

/// One `p` line, and whether it lacks the `gpu` field. `all` is the
/// summary the line is a slice of (its strings are kept as slices of it);
/// `args` is room for the line's argument tokens, reused line to line.
fn parse_proc<'a>(
    f: &mut Fields<'a>,
    all: &Bytes,
    shared: &mut Shared,
    args: &mut Vec<&'a [u8]>,
) -> Result<(ProcEntry, bool), SummaryError> {
    let pid = f.num("pid")?;
    let ppid = f.num("ppid")?;
    let ruid = f.num("ruid")?;
    let euid = f.num("euid")?;
    let raw = f.token("user")?;
    let user = shared.user(raw).ok_or_else(|| f.bad_escape("user", raw))?;
    let state = f.char("state")?;
    let utime = f.num("utime (ticks)")?;
    let stime = f.num("stime (ticks)")?;
    let rss_pages = f.num("rss (pages)")?;
    let vsize = f.num("vsize (bytes)")?;
    let start_ticks = f.num("start (ticks)")?;
    let threads = f.num("threads")?;
    let raw = f.token("comm")?;
    let comm = Escaped::parse(all, raw).ok_or_else(|| f.bad_escape("comm", raw))?;
    let argc: usize = f.num("argc")?;
    // No allocation sized by the untrusted argc: each argument must exist.
    args.clear();
    for i in 1..=argc {
        match f.toks.next() {
            Some(t) => args.push(t),
            None => {
                return Err(f.err(format!(
                    "expected argument {i} of {argc}, found end of line"
                )));
            }
        }
    }
    let cmdline = match Args::parse(all, args) {
        Some(a) => a,
        None => {
            let (i, bad) = args
                .iter()
                .enumerate()
                .find(|(_, t)| unescape(t).is_none())
                .map_or((0, &b""[..]), |(i, t)| (i + 1, *t));
            return Err(f.bad_escape(&format!("argument {i} of {argc}"), bad));
        }
    };
    // Optional fields; absent ones are none. An id no pattern could have
    // taken from a cgroup path (a `/`, a control character, too long) is
    // no job: ids become names in the tree and cells of tables.
    let raw_id = f.toks.clone().next();
    let raw_step = f.toks.clone().nth(1);
    let job = match raw_id.and_then(|id| shared.job(id, raw_step)) {
        Some(job) => {
            f.toks.nth(usize::from(raw_step.is_some()));
            job
        }
        None => {
            let id = f.optional("job")?;
            let step = f.optional("step")?;
            let job = id
                .filter(|id| crate::format::jobs::is_valid_id(id))
                .map(|id| {
                    Arc::new(JobRef {
                        id,
                        step: step.filter(|s| crate::format::jobs::is_valid_id(s)),
                    })
                });
            if let Some(id) = raw_id {
                shared.remember_job(id, raw_step, job.clone());
            }
            job
        }
    };
    let gpu = match f.toks.clone().next() {
        None => GpuField::Absent,
        Some(t) if t == gpus::UNKNOWN.as_bytes() => GpuField::Unknown,
        Some(raw) => match &shared.gpu {
            Some((last, g)) if last.as_slice() == raw => {
                f.toks.next();
                GpuField::Known(g.clone())
            }
            _ => {
                let s = f.string("gpu")?;
                let g = Gpus::parse_token(&s).ok_or_else(|| {
                    f.err(format!(
                        "expected gpu (devices such as nvidia0,render1,amd? and flags + !), found {}",
                        quote(s.as_bytes())
                    ))
                })?;
                let g = Arc::new(g);
                shared.gpu = Some((raw.to_vec(), g.clone()));
                GpuField::Known(g)
            }
        },
    };
    let absent = matches!(gpu, GpuField::Absent);
    let entry = ProcEntry {
        pid,
        ppid,
        ruid,
        euid,
        user,
        state,
        utime,
        stime,
        rss_pages,
        vsize,
        start_ticks,
        threads,
        comm,
        cmdline,
        job,
        gpus: match gpu {
            GpuField::Known(g) => Some(g),
            _ => None,
        },
    };
    Ok((entry, absent))
}

/// A `p` line's `gpu` field as written: its meaning when absent depends on
/// the `gpu_scan` header, which may come later.
enum GpuField {
    Absent,
    Unknown,
    Known(Arc<Gpus>),
}

/// Checks that line 1 (`first`) is `magic version`: another magic is a
/// parse error naming `what` was expected, another major version of this
/// magic [`SummaryError::Version`]; tokens after the version are ignored.
pub(super) fn check_first_line(
    first: &[u8],
    magic: &'static str,
    version: u32,
    what: &str,
) -> Result<(), SummaryError> {
    let mut f = Fields {
        toks: Tokens { rest: first },
        line: 1,
    };
    if f.toks.next().unwrap_or_default() != magic.as_bytes() {
        return Err(f.err(format!(
            "expected `{magic} {version}` ({what}), found {}",
            quote(first)
        )));
    }
    let found = f.token("format version")?;
    if found != version.to_string().as_bytes() {
        return Err(SummaryError::Version {
            magic,
            found: quote(found).trim_matches('`').to_string(),
            reads: version,
        });
    }
    Ok(())
}

/// Decodes a summary. Never panics, whatever the bytes: a node can send
/// anything. Errors name the line and what was expected there.
pub fn parse(bytes: &[u8]) -> Result<NodeSummary, SummaryError> {
    parse_shared(&Bytes::copy_from_slice(bytes))
}

/// [`parse`] of bytes the summary may keep slices of (its processes'
/// `comm` and arguments): no copy of each string.
pub fn parse_shared(all: &Bytes) -> Result<NodeSummary, SummaryError> {
    let bytes: &[u8] = all;
    let mut lines = Lines(Some(bytes)).zip(1usize..);
    let first = lines.next().map(|(l, _)| l).unwrap_or_default();
    check_first_line(first, MAGIC, VERSION, "a gproc node summary")?;

    let mut h = Header::default();
    // Room for the process lines at once (no growth and copy of the vector
    // as they come), but never more than a big node's: bytes that are
    // mostly `p` tags (a hostile node) must not reserve gigabytes.
    let p_lines = memchr::memmem::find_iter(bytes, b"\np ").count();
    let mut procs: Vec<ProcEntry> = Vec::with_capacity(p_lines.min(PROCS_RESERVED_MAX));
    let mut gpu_absent = Vec::new();
    let mut shared = Shared::default();
    let mut args = Vec::new();
    let mut end_line = None;
    let mut last_line = 1;
    for (line, n) in lines {
        last_line = n;
        let mut f = Fields {
            toks: Tokens { rest: line },
            line: n,
        };
        let Some(tag) = f.toks.next() else {
            continue;
        };
        match tag {
            b"p" => {
                let (p, no_gpu) = parse_proc(&mut f, all, &mut shared, &mut args)?;
                if no_gpu {
                    gpu_absent.push(procs.len());
                }
                procs.push(p);
            }
            b"hostname" => h.hostname = Some(f.string("hostname")?),
            b"arch" => h.arch = Some(f.string("arch")?),
            b"kernel" => h.kernel = Some(f.string("kernel release")?),
            b"boot_time" => h.boot_time = Some(f.num("boot time (unix seconds)")?),
            b"clk_tck" => h.clk_tck = Some(f.positive("clock ticks per second (> 0)")?),
            b"page_size" => h.page_size = Some(f.positive("page size in bytes (> 0)")?),
            b"uptime" => h.uptime = Some(f.float("uptime (seconds)")?),
            b"idle" => h.idle = Some(f.float("idle time (seconds)")?),
            b"time" => h.time = Some(f.float("snapshot time (unix seconds)")?),
            b"cpus" => h.cpus = Some(f.num("number of CPUs")?),
            b"mem_total_kb" => h.mem_total_kb = Some(f.num("MemTotal (kB)")?),
            b"mem_free_kb" => h.mem_free_kb = Some(f.num("MemFree (kB)")?),
            b"mem_available_kb" => h.mem_available_kb = Some(f.num("MemAvailable (kB)")?),
            b"pinned_walk" => h.pinned_walk = f.num::<u8>("pinned_walk (0 or 1)")? == 1,
            b"fresh_at_zero" => h.fresh_at_zero = f.num::<u8>("fresh_at_zero (0 or 1)")? == 1,
            b"gpu_scan" => h.gpu_scan = f.num::<u8>("gpu_scan (0 or 1)")? == 1,
            b"loadavg" => {
                h.loadavg = Some(LoadAvg {
                    one: f.float("1-minute load average")?,
                    five: f.float("5-minute load average")?,
                    fifteen: f.float("15-minute load average")?,
                    running: f.num("running thread count")?,
                    total: f.num("total thread count")?,
                })
            }
            b"end" => {
                let count: usize = f.num("process count")?;
                if count != procs.len() {
                    return Err(f.err(format!(
                        "expected {count} process lines as `end` says, found {}",
                        procs.len()
                    )));
                }
                end_line = Some(n);
                break;
            }
            _ => {} // comment, or a tag from a newer agent
        }
    }
    let Some(end) = end_line else {
        return Err(SummaryError::Parse {
            line: last_line,
            msg: "expected an `end` line; the summary is truncated".to_string(),
        });
    };
    if h.gpu_scan {
        // The agent looked: a process without the field holds none.
        for i in gpu_absent {
            procs[i].gpus = Some(Arc::default());
        }
    }
    let missing = |key: &str| SummaryError::Parse {
        line: end,
        msg: format!("expected a `{key}` header line before `end`"),
    };
    Ok(NodeSummary {
        hostname: h.hostname.ok_or_else(|| missing("hostname"))?,
        arch: h.arch.ok_or_else(|| missing("arch"))?,
        kernel: h.kernel.ok_or_else(|| missing("kernel"))?,
        boot_time: h.boot_time.ok_or_else(|| missing("boot_time"))?,
        clk_tck: h.clk_tck.ok_or_else(|| missing("clk_tck"))?,
        page_size: h.page_size.ok_or_else(|| missing("page_size"))?,
        uptime: h.uptime.ok_or_else(|| missing("uptime"))?,
        idle: h.idle.ok_or_else(|| missing("idle"))?,
        time: h.time.ok_or_else(|| missing("time"))?,
        cpus: h.cpus.ok_or_else(|| missing("cpus"))?,
        mem_total_kb: h.mem_total_kb.ok_or_else(|| missing("mem_total_kb"))?,
        mem_free_kb: h.mem_free_kb.ok_or_else(|| missing("mem_free_kb"))?,
        mem_available_kb: h.mem_available_kb,
        loadavg: h.loadavg.ok_or_else(|| missing("loadavg"))?,
        procs,
        pinned_walk: h.pinned_walk,
        fresh_at_zero: h.fresh_at_zero,
    })
}

/// Whether a summary's header says `fresh_at_zero 1`, without parsing it
/// (the header is a few lines; a reader decides from it whether to keep
/// the file open).
pub fn says_fresh_at_zero(bytes: &[u8]) -> bool {
    let mut lines = bytes.split(|&b| b == b'\n');
    // A node's own summary only: a lower aggregator's merged file holds
    // its nodes' headers, and is not taken anew.
    let first = lines.next().unwrap_or_default();
    if check_first_line(first, MAGIC, VERSION, "a gproc node summary").is_err() {
        return false;
    }
    lines
        .take_while(|l| !l.starts_with(b"p ") && !l.starts_with(b"end"))
        .any(|l| l.trim_ascii_end() == b"fresh_at_zero 1")
}

/// The name a process directory is walked by so that it resolves only to
/// the process with `pid` started at `start_ticks` (clock ticks after boot,
/// field 22 of `stat`): `<pid>.<start>`. Nodes whose summary says
/// `pinned_walk 1` resolve it; it is never listed.
pub fn pinned_name(pid: i32, start_ticks: u64) -> String {
    format!("{pid}.{start_ticks}")
}

/// The pid and start time a [`pinned_name`] names.
pub fn parse_pinned_name(name: &str) -> Option<(i32, u64)> {
    let (pid, start) = name.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(start) {
        return None;
    }
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// The start time (clock ticks after boot) in a `/proc/<pid>/stat` line:
/// field 22, counted after the `)` that ends `comm` (which may itself hold
/// spaces and parentheses).
pub fn stat_start_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields 3.. follow; start time is field 22, the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// `comm` (between the first `(` and the last `)`, made printable) and the
/// start time of a `/proc/<pid>/stat`: which process it is, for logs.
pub fn stat_comm_and_start(stat: &[u8]) -> Option<(String, u64)> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(stat.get(open + 1..close)?)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Some((comm, stat_start_ticks(stat)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::gpus::Gpu;
    use proptest::prelude::*;

    pub(crate) fn sample() -> NodeSummary {
        NodeSummary {
            hostname: "n17".into(),
            arch: "x86_64".into(),
            kernel: "6.1.0-18-amd64".into(),
            boot_time: 1_700_000_000,
            clk_tck: 100,
            page_size: 4096,
            uptime: 12345.67,
            idle: 98765.43,
            time: 1_700_012_345.678901,
            cpus: 64,
            mem_total_kb: 263_921_340,
            mem_free_kb: 101_234_500,
            mem_available_kb: Some(200_123_456),
            loadavg: LoadAvg {
                one: 0.52,
                five: 0.58,
                fifteen: 0.59,
                running: 2,
                total: 1234,
            },
            procs: vec![
                ProcEntry {
                    pid: 1,
                    ppid: 0,
                    ruid: 0,
                    euid: 0,
                    user: "root".into(),
                    state: 'S',
                    utime: 120,
                    stime: 340,
                    rss_pages: 3000,
                    vsize: 170_000_000,
                    start_ticks: 5,
                    threads: 1,
                    comm: Escaped::new(b"systemd"),
                    cmdline: Args::new(vec![b"/sbin/init".to_vec(), b"splash".to_vec()]),
                    job: None,
                    gpus: None,
                },
                ProcEntry {
                    pid: 2,
                    user: "root".into(),
                    state: 'S',
                    start_ticks: 5,
                    threads: 1,
                    comm: Escaped::new(b"kthreadd"),
                    ..ProcEntry::default()
                },
                ProcEntry {
                    pid: 4242,
                    ppid: 1,
                    ruid: 1000,
                    euid: 1000,
                    user: "alice".into(),
                    state: 'R',
                    utime: 9000,
                    stime: 12,
                    rss_pages: 51200,
                    vsize: 2_147_483_648,
                    start_ticks: 81234,
                    threads: 8,
                    comm: Escaped::new(b"my job"),
                    cmdline: Args::new(vec![b"./my job".to_vec(), b"--name".to_vec(), Vec::new()]),
                    job: Some(Arc::new(JobRef {
                        id: "1234".into(),
                        step: Some("0".into()),
                    })),
                    gpus: None,
                },
            ],
            pinned_walk: false,
            fresh_at_zero: false,
        }
    }

    /// The module doc's example is what `encode` writes.
    #[test]
    fn encode_matches_documented_example() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "gproc-ps 1");
        assert!(lines.contains(&"loadavg 0.52 0.58 0.59 2 1234"));
        assert!(lines.contains(&"time 1700012345.678901"));
        assert!(
            lines.contains(
                &"p 1 0 0 0 root S 120 340 3000 170000000 5 1 systemd 2 /sbin/init splash"
            )
        );
        assert!(lines.contains(&"p 2 0 0 0 root S 0 0 0 0 5 1 kthreadd 0"));
        assert!(lines.contains(
            &"p 4242 1 1000 1000 alice R 9000 12 51200 2147483648 81234 8 my\\sjob 3 ./my\\sjob --name \\- 1234 0"
        ));
        assert_eq!(*lines.last().unwrap(), "end 3");
    }

    #[test]
    fn file_path_is_dir_and_name() {
        assert_eq!(FILE_PATH, format!("/{GPROC_DIR}/{SUMMARY_FILE}"));
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert_eq!(parse(&s.encode()).unwrap(), s);
        let mut no_avail = s.clone();
        no_avail.mem_available_kb = None;
        no_avail.procs.clear();
        assert_eq!(parse(&no_avail.encode()).unwrap(), no_avail);
        let mut pinned = s.clone();
        pinned.pinned_walk = true;
        let text = pinned.encode();
        assert!(String::from_utf8_lossy(&text).contains("\npinned_walk 1\n"));
        assert_eq!(parse(&text).unwrap(), pinned);
    }

    #[test]
    fn pinned_names_and_stat_start_times() {
        assert_eq!(pinned_name(4242, 81234), "4242.81234");
        assert_eq!(parse_pinned_name("4242.81234"), Some((4242, 81234)));
        for bad in [
            "4242", "4242.", ".5", "42a.5", "4242.5.6", "-1.5", "4242.+5",
        ] {
            assert_eq!(parse_pinned_name(bad), None, "{bad}");
        }
        // comm may hold spaces and parentheses; the start time is field 22.
        let stat = b"4242 (my) job) S 1 4242 4242 0 -1 4194560 100 0 0 0 9000 12 0 0 20 0 8 0 81234 2147483648 51200";
        assert_eq!(stat_start_ticks(stat), Some(81234));
        assert_eq!(stat_start_ticks(b"4242 (x) S 1"), None);
    }

    #[test]
    fn escapes() {
        let mut out = Vec::new();
        escape_into(
            &mut out,
            b"a b\tc\nd\\e\0f\x1b\xffg\x7f caf\xc3\xa9 \xc2\x85",
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "a\\sb\\tc\\nd\\\\e\\x00f\\x1b\\xffg\\x7f\\scaf\u{e9}\\s\\xc2\\x85"
        );
        assert_eq!(
            unescape(&out).unwrap(),
            b"a b\tc\nd\\e\0f\x1b\xffg\x7f caf\xc3\xa9 \xc2\x85"
        );
        for bad in [&b"\\"[..], b"\\q", b"\\x", b"\\x4", b"\\xzz", b"a\\-"] {
            assert_eq!(unescape(bad), None, "{bad:?}");
        }
        assert_eq!(unescape(b"\\-").unwrap(), b"");
    }

    #[test]
    fn helpers() {
        let s = sample();
        let job = &s.procs[2];
        assert_eq!(job.cpu_seconds(100), 90.12);
        assert!((job.start_time_unix(s.boot_time, s.clk_tck) - 1_700_000_812.34).abs() < 1e-6);
        assert_eq!(job.rss_bytes(4096), 51200 * 4096);
        assert_eq!(job.cmdline_display(), "./my job --name ");
        assert_eq!(s.procs[1].cmdline_display(), "[kthreadd]");
        assert_eq!(job.cpu_seconds(0), 9012.0);
        let evil = ProcEntry {
            cmdline: Args::new(vec![b"rm\x1b[2J".to_vec(), b"\xff".to_vec()]),
            ..ProcEntry::default()
        };
        assert_eq!(evil.cmdline_display(), "rm?[2J \u{fffd}");
    }

    /// Every addition the module doc allows a newer writer is read by this
    /// build as if it were not there.
    #[test]
    fn fresh_at_zero_is_read_from_a_node_summary_header_only() {
        let mut s = sample();
        assert!(!says_fresh_at_zero(&s.encode()));
        s.fresh_at_zero = true;
        let bytes = s.encode();
        assert!(says_fresh_at_zero(&bytes));
        assert!(parse(&bytes).unwrap().fresh_at_zero);
        // Not from a process's argument, nor from another file's header.
        let text = String::from_utf8(bytes).unwrap();
        assert!(!says_fresh_at_zero(
            text.replace("gproc-ps 1", "gproc-merged 1").as_bytes()
        ));
        let mut arg = sample();
        arg.procs[0].cmdline = Args::new(vec![b"fresh_at_zero".to_vec(), b"1".to_vec()]);
        assert!(!says_fresh_at_zero(&arg.encode()));
    }

    #[test]
    fn forward_compatible() {
        let text = String::from_utf8(sample().encode()).unwrap();
        let mut newer = String::new();
        for line in text.lines() {
            newer.push_str(line);
            if line.starts_with("p ") && !line.starts_with("p 4242 ") {
                // Fields after the optional ones this build knows (job
                // and step none, gpu unknown here).
                newer.push_str(" \\- \\- ? 42 future\\sfield");
            } else if line.starts_with("p ") {
                newer.push_str(" ? 42 future\\sfield");
            } else if line.starts_with("loadavg") || line.starts_with("cpus") {
                newer.push_str(" 42 future\\sfield");
            }
            newer.push('\n');
            if line.starts_with("hostname") {
                newer.push_str("gpu_count 8\nnuma_nodes 0-1 2-3\n\n# a comment\n");
            }
        }
        newer.push_str("t 4242 4243 R\n");
        newer = newer.replace("end 3\n", "t 1 1 S\nend 3\nanything at all \\q\n");
        newer = newer.replacen("gproc-ps 1\n", "gproc-ps 1 minor\\s3\n", 1);
        assert_eq!(parse(newer.as_bytes()).unwrap(), sample());
        // A later duplicate key replaces an earlier one.
        let again = newer.replace("end 3\n", "cpus 65\nend 3\n");
        assert_eq!(parse(again.as_bytes()).unwrap().cpus, 65);
    }

    /// A summary of an agent that knows no jobs reads as "no job".
    #[test]
    fn older_summaries_read_as_no_job() {
        let old = "gproc-ps 1\nhostname n1\narch x86_64\nkernel 6.1\nboot_time 1\nclk_tck 100\n\
                   page_size 4096\nuptime 1\nidle 1\ntime 2\ncpus 1\nmem_total_kb 1\nmem_free_kb 1\n\
                   loadavg 0 0 0 1 1\n\
                   p 4242 1 1000 1000 alice R 9000 12 51200 2147483648 81234 8 my\\sjob 3 ./my\\sjob --name \\-\n\
                   p 4243 1 1000 1000 alice S 0 0 0 0 1 1 sh 0\nend 2\n";
        let s = parse(old.as_bytes()).unwrap();
        assert_eq!(s.procs.len(), 2);
        assert!(s.procs.iter().all(|p| p.job.is_none()), "{:?}", s.procs);
        assert!(s.procs.iter().all(|p| p.gpus.is_none()), "unknown GPUs");
        assert_eq!(s.procs[0].cmdline.len(), 3);
        // A job without a step, and explicit nones.
        let with = old
            .replace(" sh 0\n", " sh 0 77\n")
            .replace("--name \\-\n", "--name \\- \\- \\-\n");
        let s = parse(with.as_bytes()).unwrap();
        assert_eq!(s.procs[0].job, None);
        assert_eq!(
            s.procs[1].job,
            Some(Arc::new(JobRef {
                id: "77".into(),
                step: None
            }))
        );
        // Ids no cgroup pattern could give are no job (or no step).
        for (id, step, want) in [
            ("../etc", "0", None),
            ("a/b", "0", None),
            ("..", "0", None),
            ("x\\n1", "0", None),
            (&"9".repeat(65) as &str, "0", None),
            ("12", "../x", Some(("12", None))),
            ("12.pbs01", "batch", Some(("12.pbs01", Some("batch")))),
        ] {
            let line = old.replace(" sh 0\n", &format!(" sh 0 {id} {step}\n"));
            let s = parse(line.as_bytes()).unwrap();
            let want = want.map(|(i, st): (&str, Option<&str>)| {
                Arc::new(JobRef {
                    id: i.into(),
                    step: st.map(Into::into),
                })
            });
            assert_eq!(s.procs[1].job, want, "{id} {step}");
        }
        let bad = old.replace(" sh 0\n", " sh 0 7\\q\n");
        let (n, msg) = err_line(&bad);
        assert_eq!(n, 16);
        assert!(msg.contains("expected job"), "{msg}");
    }

    /// A summary whose agent looked at GPUs: the `gpu_scan` header, the
    /// `gpu` field after job and step (`\\-` placeholders where there is
    /// no job), `?` for a process it could not look at, nothing for none.
    #[test]
    fn gpus_round_trip_with_their_header() {
        let mut s = sample();
        s.procs[0].gpus = Some(Arc::default());
        s.procs[1].gpus = None;
        s.procs[2].gpus = Some(std::sync::Arc::new(Gpus::new(
            [Gpu::Nvidia(3), Gpu::Nvidia(0)],
            true,
        )));
        let text = String::from_utf8(s.encode()).unwrap();
        assert!(text.contains("\ngpu_scan 1\n"), "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("p ")).collect();
        assert!(lines[0].ends_with(" /sbin/init splash"), "{}", lines[0]);
        assert!(lines[1].ends_with(" kthreadd 0 \\- \\- ?"), "{}", lines[1]);
        assert!(
            lines[2].ends_with(" \\- 1234 0 nvidia0,nvidia3,+"),
            "{}",
            lines[2]
        );
        assert_eq!(parse(text.as_bytes()).unwrap(), s);
        // Without the header (an older agent), a line without the field
        // is unknown, not none.
        let old = text.replace("gpu_scan 1\n", "");
        let back = parse(old.as_bytes()).unwrap();
        assert_eq!(back.procs[0].gpus, None);
        assert_eq!(back.procs[2].gpus, s.procs[2].gpus);
        // A job without a step keeps the step's place.
        s.procs[2].job = Some(Arc::new(JobRef {
            id: "9".into(),
            step: None,
        }));
        let text = String::from_utf8(s.encode()).unwrap();
        assert!(text.contains(" \\- 9 \\- nvidia0,nvidia3,+\n"), "{text}");
        assert_eq!(parse(text.as_bytes()).unwrap(), s);
        // A field that is no list rejects the summary, naming the line.
        let bad = text.replace("nvidia0,nvidia3,+", "nvidia0,,x");
        let (n, msg) = err_line(&bad);
        assert_eq!(
            n,
            text.lines().position(|l| l.starts_with("p 4242")).unwrap() + 1
        );
        assert!(msg.contains("expected gpu"), "{msg}");
    }

    /// What a reader without the `gpu` field reads of a summary with it:
    /// it reads job and step and ignores what follows and the header it
    /// does not know, so it reads exactly the summary without GPUs.
    #[test]
    fn older_readers_read_summaries_with_gpus_unchanged() {
        let mut new = sample();
        for p in &mut new.procs {
            p.gpus = Some(std::sync::Arc::new(Gpus::default()));
        }
        new.procs[2].gpus = Some(std::sync::Arc::new(Gpus::new(
            [Gpu::Render(1), Gpu::Amd],
            false,
        )));
        let text = String::from_utf8(new.encode()).unwrap();
        // What that reader sees: the listed fields and job and step only.
        let cut: String = text
            .lines()
            .filter(|l| *l != "gpu_scan 1")
            .map(|l| l.strip_suffix(" render1,amd?").unwrap_or(l).to_string() + "\n")
            .collect();
        let mut old = new.clone();
        for p in &mut old.procs {
            p.gpus = None;
        }
        assert_eq!(parse(cut.as_bytes()).unwrap(), old);
        assert_eq!(cut, String::from_utf8(old.encode()).unwrap());
    }

    /// What an older reader reads of a summary with jobs: it reads the
    /// listed fields of each `p` line and ignores the rest, and the listed
    /// fields are exactly those the same process has in a summary without
    /// jobs, the job and step only appended.
    #[test]
    fn older_readers_read_summaries_with_jobs_unchanged() {
        let new = sample();
        let mut old = new.clone();
        for p in &mut old.procs {
            p.job = None;
        }
        let new_text = String::from_utf8(new.encode()).unwrap();
        let old_text = String::from_utf8(old.encode()).unwrap();
        let p_lines = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("p "))
                .map(str::to_string)
                .collect()
        };
        let (new_p, old_p) = (p_lines(&new_text), p_lines(&old_text));
        assert_eq!(new_p.len(), old_p.len());
        let mut extended = 0;
        for ((n, o), p) in new_p.iter().zip(&old_p).zip(&new.procs) {
            match &p.job {
                None => assert_eq!(n, o),
                Some(_) => {
                    let tail = n.strip_prefix(o.as_str()).expect("old fields first");
                    assert_eq!(tail, " 1234 0");
                    extended += 1;
                }
            }
        }
        assert_eq!(extended, 1);
        // The other lines are the same bytes.
        let others = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with("p "))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(others(&new_text), others(&old_text));
        // And this build's reader drops exactly the job when told to ignore
        // fields past the arguments, as an older one does.
        let cut: String = new_text
            .lines()
            .map(|l| l.strip_suffix(" 1234 0").unwrap_or(l).to_string() + "\n")
            .collect();
        assert_eq!(parse(cut.as_bytes()).unwrap(), old);
    }

    fn err_line(text: &str) -> (usize, String) {
        let e = parse(text.as_bytes()).unwrap_err();
        (e.line(), e.to_string())
    }

    #[test]
    fn errors_carry_line_numbers() {
        let good = String::from_utf8(sample().encode()).unwrap();
        let line_of = |prefix: &str| good.lines().position(|l| l.starts_with(prefix)).unwrap() + 1;

        let (n, msg) = err_line(&good.replace("clk_tck 100", "clk_tck fast"));
        assert_eq!(n, line_of("clk_tck"));
        assert!(msg.contains("expected clock ticks per second"), "{msg}");
        assert!(msg.contains("`fast`"), "{msg}");

        let (n, msg) = err_line(&good.replace("clk_tck 100", "clk_tck 0"));
        assert_eq!(n, line_of("clk_tck"), "{msg}");

        let (n, msg) = err_line(&good.replace(" kthreadd 0", ""));
        assert_eq!(n, line_of("p 2 "));
        assert!(msg.contains("expected comm, found end of line"), "{msg}");

        let (n, msg) = err_line(&good.replace("systemd 2 ", "systemd 9 "));
        assert_eq!(n, line_of("p 1 "));
        assert!(msg.contains("expected argument 3 of 9"), "{msg}");

        let (n, msg) = err_line(&good.replace("systemd", "sys\\qtemd"));
        assert_eq!(n, line_of("p 1 "));
        assert!(msg.contains("expected comm"), "{msg}");

        let (n, msg) = err_line(&good.replace(" R 9000", " RR 9000"));
        assert_eq!(n, line_of("p 4242 "));
        assert!(msg.contains("one character"), "{msg}");

        let (n, msg) = err_line(&good.replace("mem_free_kb 101234500\n", ""));
        assert_eq!(n, line_of("end") - 1);
        assert!(msg.contains("`mem_free_kb`"), "{msg}");

        let (n, msg) = err_line(&good.replace("end 3", "end 4"));
        assert_eq!(n, line_of("end"));
        assert!(msg.contains("expected 4 process lines"), "{msg}");

        let cut = &good[..good.find("p 4242").unwrap()];
        let (n, msg) = err_line(cut);
        assert!(msg.contains("truncated"), "{msg}");
        assert_eq!(n, cut.lines().count() + 1);

        let (n, msg) = err_line("Name:\tbash\n");
        assert_eq!(n, 1);
        assert!(msg.contains("expected `gproc-ps 1`"), "{msg}");

        let e = parse(b"gproc-ps 2\n").unwrap_err();
        assert!(matches!(e, SummaryError::Version { .. }), "{e}");
        assert_eq!(e.line(), 1);

        assert_eq!(err_line("").0, 1);
        assert_eq!(err_line("gproc-ps").0, 1);
    }

    #[test]
    fn cmdline_splits_at_nuls() {
        assert_eq!(Args::from_cmdline(b""), Args::default());
        assert_eq!(Args::from_cmdline(b"\0\0"), Args::default());
        assert_eq!(
            Args::from_cmdline(b"a\0\0b c\0\0\0").to_vecs(),
            vec![b"a".to_vec(), Vec::new(), b"b c".to_vec()]
        );
        assert_eq!(
            Args::from_cmdline(b"nginx: worker").to_vecs(),
            vec![b"nginx: worker".to_vec()]
        );
        assert_eq!(
            Args::from_cmdline(b"a\0\0b\0").to_vecs(),
            vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn unknown_arguments_are_a_marker_old_readers_show_as_a_question_mark() {
        let mut s = sample();
        s.procs[0].cmdline = Args::unknown();
        let bytes = s.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let line = text.lines().find(|l| l.starts_with("p ")).unwrap();
        assert!(line.ends_with(" 1 \\x00"), "{line}");
        let back = parse(&bytes).unwrap();
        assert_eq!(back, s);
        assert!(back.procs[0].cmdline_unknown());
        assert_eq!(back.procs[0].cmdline_display(), "?");
        // What a reader without the marker's rule does: an argument whose
        // control character is shown as `?`.
        let old_display: String = String::from_utf8_lossy(&back.procs[0].cmdline.to_vecs()[0])
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        assert_eq!(old_display, "?");
        // Other rows are untouched, and absent arguments are not unknown.
        assert!(back.procs[1..].iter().all(|p| !p.cmdline_unknown()));
        assert!(!ProcEntry::default().cmdline_unknown());
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..24),
            proptest::collection::vec(
                prop_oneof![
                    Just(b' '),
                    Just(b'\\'),
                    Just(b'\n'),
                    Just(b'\t'),
                    Just(0u8),
                    Just(b'-'),
                    Just(0xc3),
                    Just(0xa9)
                ],
                0..12
            ),
        ]
    }

    pub(crate) fn arb_proc() -> impl Strategy<Value = ProcEntry> {
        (
            (
                any::<i32>(),
                any::<i32>(),
                any::<u32>(),
                any::<u32>(),
                any::<String>(),
                any::<char>(),
            ),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<i64>(),
            ),
            arb_bytes(),
            proptest::collection::vec(arb_bytes(), 0..5),
            (
                proptest::option::of((
                    // Ids as patterns take them: one letter or digit at least.
                    "[0-9a-z.\\[\\]_-]{0,11}[0-9a-z]",
                    proptest::option::of("[0-9a-z]{1,8}"),
                )),
                proptest::option::of((
                    proptest::collection::vec((0u32..300, 0u8..3), 0..4),
                    any::<bool>(),
                    any::<bool>(),
                )),
            ),
        )
            .prop_map(
                |(
                    (pid, ppid, ruid, euid, user, state),
                    (utime, stime, rss_pages, vsize, start_ticks, threads),
                    comm,
                    cmdline,
                    (job, gpus),
                )| ProcEntry {
                    pid,
                    ppid,
                    ruid,
                    euid,
                    user: user.into(),
                    state,
                    utime,
                    stime,
                    rss_pages,
                    vsize,
                    start_ticks,
                    threads,
                    comm: Escaped::new(&comm),
                    cmdline: Args::new(cmdline),
                    job: job.map(|(id, step)| Arc::new(JobRef { id, step })),
                    gpus: gpus.map(|(devs, truncated, restricted)| {
                        Arc::new(Gpus {
                            restricted,
                            ..Gpus::new(
                                devs.into_iter().map(|(n, kind)| match kind {
                                    0 => Gpu::Nvidia(n),
                                    1 => Gpu::Render(n),
                                    _ => Gpu::Amd,
                                }),
                                truncated,
                            )
                        })
                    }),
                },
            )
    }

    proptest! {
        /// A number field reads as it did before its fast path: the token
        /// parsed as the type, or the same error.
        #[test]
        fn number_fields_read_as_the_token_parses(
            tok in "[ ]{0,2}(-?[0-9]{0,22}|[0-9a-z+.-]{1,6})",
            tail in "( [a-z0-9]{1,4}){0,2}",
        ) {
            let line = format!("{tok}{tail}");
            let mut f = Fields { toks: Tokens { rest: line.as_bytes() }, line: 1 };
            let got = f.num::<u32>("n").ok();
            let rest = String::from_utf8_lossy(f.toks.rest).into_owned();
            let first = line.split(' ').find(|t| !t.is_empty());
            let want = first.and_then(|t| t.parse::<u32>().ok().or_else(|| {
                digits(t.as_bytes()).and_then(|v| u32::try_from(v).ok())
            }));
            prop_assert_eq!(got, want, "{:?}", line);
            if let (Some(_), Some(t)) = (got, first) {
                // What follows the token read, whichever part it came from.
                let after = &line.trim_start_matches(' ')[t.len()..];
                prop_assert_eq!(rest.as_str(), after);
            }
            let mut f = Fields { toks: Tokens { rest: line.as_bytes() }, line: 1 };
            let wide = f.num::<u64>("n").ok();
            let want = first.and_then(|t| t.parse::<u64>().ok());
            prop_assert_eq!(wide, want, "{:?}", line);
        }

        #[test]
        fn arbitrary_procs_round_trip(
            procs in proptest::collection::vec(arb_proc(), 0..6),
            hostname in any::<String>(),
            uptime in -1e12f64..1e12,
            avail in proptest::option::of(any::<u64>()),
        ) {
            let mut s = sample();
            s.procs = procs;
            s.hostname = hostname;
            s.uptime = uptime;
            s.mem_available_kb = avail;
            let bytes = s.encode();
            prop_assert!(std::str::from_utf8(&bytes).is_ok());
            prop_assert_eq!(parse(&bytes).unwrap(), s);
        }

        #[test]
        fn no_real_cmdline_is_the_unknown_marker(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let p = ProcEntry { cmdline: Args::from_cmdline(&raw), ..ProcEntry::default() };
            prop_assert!(!p.cmdline_unknown());
            prop_assert!(p.cmdline.iter().all(|a| !a.contains(&0)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
            let mut with_magic = b"gproc-ps 1\n".to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = parse(&with_magic);
        }

        #[test]
        fn mangled_summaries_never_panic(
            cut in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let mut bytes = sample().encode();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let _ = parse(&bytes);
            // Cutting anything more than the final newline loses `end N`.
            let mut cut_short = sample().encode();
            cut_short.truncate(cut.index(cut_short.len() - 1));
            prop_assert!(parse(&cut_short).is_err());
        }
    }
}

//! Summary deltas: what changed in a node's summary since a generation the
//! reader holds, so a live refresh (`gproc top`, a repeated `ps`) moves and
//! parses the processes that changed instead of every process every time.
//!
//! A node that serves deltas puts a `generation TOKEN` header line in every
//! summary it serves (an optional key: readers that do not know it ignore
//! it, see [`crate::format::summary`]'s extension rules) and keeps the last
//! few summaries it served, per reader identity ([`History`]). A reader that
//! holds the summary of generation `T` reads `/.gproc/since/T`
//! ([`since_path`]) and gets a delta file: the new summary's header lines
//! and those of its `p` lines that are not byte-for-byte in `T`'s summary,
//! and the pids gone. It applies the delta to what it holds ([`apply`]); on
//! any error (a token the node no longer has: ENOENT; a restarted node; a
//! delta that does not fit) it reads the whole summary again. This module is
//! the format only: no I/O.
//!
//! # Token
//!
//! `EPOCH.GEN`, each 16 lowercase hex digits. The epoch is drawn when the
//! node's server starts, so a restarted node never knows a token of its
//! previous run; generations are unique within an epoch and never reused
//! (a keyed permutation of a counter, so a token says nothing of how many
//! summaries other readers were served).
//!
//! # Format (`gproc-ps-delta 1`)
//!
//! ```text
//! gproc-ps-delta 1
//! base 6c0f00d1e2a3b4c5.00000000000000a1
//! generation 6c0f00d1e2a3b4c5.9d3e55aa01b2c3d4
//! procs 212
//! h hostname n17
//! h uptime 12346.67
//! ...                      every header line of the new summary, `h ` first
//! p 4242 1 1000 1000 alice R 9100 12 51200 2147483648 81234 8 my\sjob 0
//! x 4100
//! end 2
//! ```
//!
//! - `base`: the token the delta applies to; `generation`: the new one;
//!   `procs`: how many processes the new summary has (checked after
//!   applying).
//! - `h LINE`: a header line of the new summary exactly (its `generation`
//!   line left out): every one, in order, whether it changed or not (they
//!   are few). Any line of the summary that is not a `p` line, `end`, a
//!   blank line or a comment counts as one, so line tags added to the
//!   summary later travel whole.
//! - `p ...`: a `p` line of the new summary exactly, for every process
//!   whose line is not in the base summary with the same bytes (a new
//!   process, a changed one, a pid reused by a process started later).
//! - `x PID`: a process of the base summary that the new one lacks.
//! - `end N`: `N` is the number of `p` and `x` lines; a file without it or
//!   with another count was truncated and is rejected.
//!
//! A reader rejects a delta with any other line tag: unlike a summary, a
//! delta has a fallback (the whole summary), so a newer writer's delta
//! this reader does not understand is read whole rather than misapplied.
//!
//! A `p` line is unchanged only when its meaning is too: when a header line
//! that says how `p` lines read (`gpu_scan`, or any key added later and not
//! in the list of value-only keys here) differs between the two summaries,
//! the delta carries every `p` line. Both summaries must list processes in
//! strictly increasing pid order, as the summary format says; a summary that
//! does not gets no delta (the node answers with an error, the reader reads
//! it whole).

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;

use crate::format::summary::{self, NodeSummary, ProcEntry};

/// First token of a delta's line 1: tells it from a summary, so no reader
/// of summaries can take one for the other.
pub const MAGIC: &str = "gproc-ps-delta";

/// The delta format's major version.
pub const VERSION: u32 = 1;

/// The summary header key carrying the summary's [`Token`].
pub const GENERATION_KEY: &str = "generation";

/// The directory, inside the node's `/.gproc`, whose entries are tokens.
pub const SINCE_DIR: &str = "since";

/// Summaries a node keeps per reader identity: a reader more than this many
/// generations behind (another reader with the same identity in between)
/// reads whole.
pub const HISTORY_DEPTH: usize = 4;

/// Reader identities a node keeps summaries for; the least recently served
/// is forgotten first (its reader then reads whole once).
pub const HISTORY_IDENTITIES: usize = 32;

/// Header keys whose values never change how a `p` line reads: a change of
/// one of them alone leaves unchanged `p` lines out of the delta.
const VALUE_KEYS: &[&[u8]] = &[
    b"hostname",
    b"arch",
    b"kernel",
    b"boot_time",
    b"clk_tck",
    b"page_size",
    b"uptime",
    b"idle",
    b"time",
    b"cpus",
    b"mem_total_kb",
    b"mem_free_kb",
    b"mem_available_kb",
    b"loadavg",
    b"pinned_walk",
];

/// Why a delta cannot be made or applied; the reader then reads whole.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeltaError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, DeltaError> {
    Err(DeltaError(msg.into()))
}

/// A summary's generation: `EPOCH.GEN` (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// Drawn when the node's server started.
    pub epoch: u64,
    /// Unique within the epoch.
    pub generation: u64,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.{:016x}", self.epoch, self.generation)
    }
}

impl Token {
    /// A token as [`Display`](fmt::Display) writes it, exactly (so one
    /// token has one spelling); `None` for anything else.
    pub fn parse(s: &[u8]) -> Option<Token> {
        let hex = |h: &[u8]| -> Option<u64> {
            if h.len() != 16 || !h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            u64::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        };
        if s.len() != 33 || s[16] != b'.' {
            return None;
        }
        Some(Token {
            epoch: hex(&s[..16])?,
            generation: hex(&s[17..])?,
        })
    }
}

/// Where a node serves the delta since `token`, relative to its root.
pub fn since_path(token: Token) -> String {
    format!("/{}/{SINCE_DIR}/{token}", crate::format::summary::GPROC_DIR)
}

/// The summary's `generation` token, if its header has one (a node that
/// serves no deltas writes none).
pub fn generation(summary_bytes: &[u8]) -> Option<Token> {
    let mut found = None;
    for line in summary_bytes.split(|&b| b == b'\n').skip(1) {
        if line.starts_with(b"p ") || line.starts_with(b"end ") {
            break;
        }
        if let Some(v) = line
            .strip_prefix(GENERATION_KEY.as_bytes())
            .and_then(|v| v.strip_prefix(b" "))
        {
            // A later duplicate key replaces an earlier one, as for any
            // header key.
            found = Token::parse(v);
        }
    }
    found
}

/// `summary_bytes` with the header line `generation TOKEN` after line 1
/// (any it had removed).
pub fn with_generation(summary_bytes: &[u8], token: Token) -> Vec<u8> {
    let mut out = Vec::with_capacity(summary_bytes.len() + 48);
    let mut lines = summary_bytes.split_inclusive(|&b| b == b'\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
        if !first.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    let _ = writeln!(out, "{GENERATION_KEY} {token}");
    let mut in_header = true;
    for line in lines {
        if in_header && (line.starts_with(b"p ") || line.starts_with(b"end ")) {
            in_header = false;
        }
        if in_header && is_generation_line(line) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

fn is_generation_line(line: &[u8]) -> bool {
    line.strip_prefix(GENERATION_KEY.as_bytes())
        .is_some_and(|r| r.is_empty() || r[0] == b' ' || r[0] == b'\n')
}

/// A summary cut into its lines: header lines (without `generation`) and
/// `p` lines by pid, in order.
struct Lines<'a> {
    header: Vec<&'a [u8]>,
    procs: Vec<(i32, &'a [u8])>,
}

fn key_of(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b' ').next().unwrap_or_default()
}

fn pid_of(line: &[u8]) -> Option<i32> {
    let tok = line
        .split(|&b| b == b' ')
        .find(|t| !t.is_empty() && *t != b"p")?;
    std::str::from_utf8(tok).ok()?.parse().ok()
}

fn cut<'a>(bytes: &'a [u8], what: &str) -> Result<Lines<'a>, DeltaError> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    if key_of(first) != summary::MAGIC.as_bytes() {
        return err(format!("the {what} summary is not a gproc summary"));
    }
    let mut out = Lines {
        header: Vec::new(),
        procs: Vec::new(),
    };
    for line in lines {
        if line.starts_with(b"p ") {
            let Some(pid) = pid_of(line) else {
                return err(format!("the {what} summary has a `p` line without a pid"));
            };
            if out.procs.last().is_some_and(|&(last, _)| last >= pid) {
                return err(format!(
                    "the {what} summary's processes are not in increasing pid order (pid {pid})"
                ));
            }
            out.procs.push((pid, line));
        } else if line.starts_with(b"end ") || line == b"end" {
            return Ok(out);
        } else if line.iter().all(|&b| b == b' ') || line.starts_with(b"#") {
            continue;
        } else if !is_generation_line(line) {
            out.header.push(line);
        }
    }
    err(format!("the {what} summary has no `end` line"))
}

/// The delta from `base` to `new`, both summaries as served (each with its
/// `generation` line).
pub fn diff(base: &[u8], new: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let (Some(from), Some(to)) = (generation(base), generation(new)) else {
        return err("a summary without a generation has no delta");
    };
    let (b, n) = (cut(base, "base")?, cut(new, "new")?);
    let shaping = |h: &[&[u8]]| -> Vec<Vec<u8>> {
        h.iter()
            .filter(|l| !VALUE_KEYS.contains(&key_of(l)))
            .map(|l| l.to_vec())
            .collect()
    };
    let every = shaping(&b.header) != shaping(&n.header);
    let mut out = Vec::with_capacity(256 + new.len() / 8);
    let _ = writeln!(
        out,
        "{MAGIC} {VERSION}\nbase {from}\n{GENERATION_KEY} {to}\nprocs {}",
        n.procs.len()
    );
    for h in &n.header {
        out.extend_from_slice(b"h ");
        out.extend_from_slice(h);
        out.push(b'\n');
    }
    let mut count = 0usize;
    // Both in pid order: one merge.
    let (mut i, mut j) = (0, 0);
    while i < b.procs.len() || j < n.procs.len() {
        let (bp, np) = (b.procs.get(i), n.procs.get(j));
        match (bp, np) {
            (Some(&(bpid, _)), Some(&(npid, _))) if bpid < npid => {
                let _ = writeln!(out, "x {bpid}");
                count += 1;
                i += 1;
            }
            (Some(&(bpid, bl)), Some(&(npid, nl))) if bpid == npid => {
                if every || bl != nl {
                    out.extend_from_slice(nl);
                    out.push(b'\n');
                    count += 1;
                }
                i += 1;
                j += 1;
            }
            (_, Some(&(_, nl))) => {
                out.extend_from_slice(nl);
                out.push(b'\n');
                count += 1;
                j += 1;
            }
            (Some(&(bpid, _)), None) => {
                let _ = writeln!(out, "x {bpid}");
                count += 1;
                i += 1;
            }
            (None, None) => break,
        }
    }
    let _ = writeln!(out, "end {count}");
    Ok(out)
}

/// The delta's base token, if the bytes start like a delta.
pub fn base_of(delta: &[u8]) -> Option<Token> {
    let mut lines = delta.split(|&b| b == b'\n');
    if lines.next()? != format!("{MAGIC} {VERSION}").as_bytes() {
        return None;
    }
    Token::parse(lines.next()?.strip_prefix(b"base ")?)
}

/// `base` (the summary of generation `base_token`) updated by `delta`:
/// the new summary and its token. Equal to what parsing the new summary
/// whole gives, or an error (the reader then reads whole).
pub fn apply(
    base: &NodeSummary,
    base_token: Token,
    delta: &[u8],
) -> Result<(Token, NodeSummary), DeltaError> {
    let mut lines = delta.split(|&b| b == b'\n').zip(1usize..);
    let first = lines.next().map(|(l, _)| l).unwrap_or_default();
    if first != format!("{MAGIC} {VERSION}").as_bytes() {
        return err(format!(
            "line 1: expected `{MAGIC} {VERSION}`, found {}",
            String::from_utf8_lossy(&first[..first.len().min(40)])
        ));
    }
    let mut want = |key: &str| -> Result<&[u8], DeltaError> {
        match lines.next() {
            Some((l, n)) => l
                .strip_prefix(key.as_bytes())
                .and_then(|v| v.strip_prefix(b" "))
                .ok_or_else(|| DeltaError(format!("line {n}: expected `{key}`"))),
            None => err(format!("truncated before `{key}`")),
        }
    };
    let from = Token::parse(want("base")?).ok_or_else(|| DeltaError("bad base token".into()))?;
    let to = Token::parse(want(GENERATION_KEY)?)
        .ok_or_else(|| DeltaError("bad generation token".into()))?;
    let total: usize = std::str::from_utf8(want("procs")?)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| DeltaError("bad process count".into()))?;
    if from != base_token {
        return err(format!(
            "the delta is since {from}, but the summary held is {base_token}"
        ));
    }
    // The header and the changed processes, as a summary of their own:
    // parsed by the summary's own parser, so they read exactly as in a
    // whole read.
    let mut text = Vec::with_capacity(delta.len() + 16);
    let _ = writeln!(text, "{} {}", summary::MAGIC, summary::VERSION);
    let mut gone: Vec<i32> = Vec::new();
    let mut changed = 0usize;
    let mut end = None;
    for (line, n) in lines {
        if let Some(h) = line.strip_prefix(b"h ") {
            text.extend_from_slice(h);
            text.push(b'\n');
        } else if line.starts_with(b"p ") {
            text.extend_from_slice(line);
            text.push(b'\n');
            changed += 1;
        } else if let Some(pid) = line.strip_prefix(b"x ") {
            let pid = std::str::from_utf8(pid)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| DeltaError(format!("line {n}: bad pid")))?;
            gone.push(pid);
        } else if let Some(c) = line.strip_prefix(b"end ") {
            end = std::str::from_utf8(c)
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            if end.is_none() {
                return err(format!("line {n}: bad count"));
            }
            break;
        } else {
            return err(format!(
                "line {n}: unknown line {}",
                String::from_utf8_lossy(&line[..line.len().min(40)])
            ));
        }
    }
    if end != Some(changed + gone.len()) {
        return err("truncated delta (no `end`, or a wrong count)");
    }
    let _ = writeln!(text, "end {changed}");
    let mut fresh = summary::parse_shared(&Bytes::from(text))
        .map_err(|e| DeltaError(format!("in the delta: {e}")))?;
    let news = std::mem::take(&mut fresh.procs);
    if !increasing(base.procs.iter().map(|p| p.pid)) || !increasing(news.iter().map(|p| p.pid)) {
        return err("processes out of pid order");
    }
    if !increasing(gone.iter().copied()) {
        return err("removed pids out of order");
    }
    let mut procs: Vec<ProcEntry> = Vec::with_capacity(total.min(base.procs.len() + news.len()));
    let mut news = news.into_iter().peekable();
    let mut gone = gone.into_iter().peekable();
    for p in &base.procs {
        while let Some(np) = news.next_if(|np| np.pid < p.pid) {
            procs.push(np);
        }
        if gone.next_if_eq(&p.pid).is_some() {
            continue;
        }
        match news.next_if(|np| np.pid == p.pid) {
            Some(np) => procs.push(np),
            None => procs.push(p.clone()),
        }
    }
    procs.extend(news);
    if let Some(pid) = gone.next() {
        return err(format!("the delta removes pid {pid}, which the base lacks"));
    }
    if procs.len() != total {
        return err(format!(
            "the delta gives {} processes, it says {total}",
            procs.len()
        ));
    }
    fresh.procs = procs;
    Ok((to, fresh))
}

fn increasing(mut pids: impl Iterator<Item = i32>) -> bool {
    let Some(mut last) = pids.next() else {
        return true;
    };
    pids.all(|p| {
        let ok = p > last;
        last = p;
        ok
    })
}

/// A bijection of 64-bit values (the splitmix64 finalizer), so distinct
/// counters give distinct generations.
fn permute(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One reader's summaries, oldest first, each as served.
type Kept = VecDeque<(Token, Arc<[u8]>)>;

/// The last summaries a node served, per reader identity `K`: a delta is
/// only ever made between two summaries built for the same identity, so a
/// reader never learns from one what another identity's summary held.
pub struct History<K> {
    epoch: u64,
    key: u64,
    counter: u64,
    /// Most recently served identity last.
    by_reader: VecDeque<(K, Kept)>,
}

impl<K> fmt::Debug for History<K> {
    /// Short: the summaries themselves are large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("epoch", &format_args!("{:016x}", self.epoch))
            .field("readers", &self.by_reader.len())
            .finish()
    }
}

impl<K: Eq + Clone> History<K> {
    /// An empty history for a server started with `epoch` (drawn at
    /// random by the server: see the module doc).
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            key: permute(epoch ^ 0x5bd1_e995_0123_4567),
            counter: 0,
            by_reader: VecDeque::new(),
        }
    }

    /// This history's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Gives `summary` (just built for `who`) a new token, keeps it, and
    /// returns it as served (with its `generation` line).
    pub fn record(&mut self, who: &K, summary_bytes: &[u8]) -> Arc<[u8]> {
        self.counter += 1;
        let token = Token {
            epoch: self.epoch,
            generation: permute(self.counter ^ self.key),
        };
        let served: Arc<[u8]> = with_generation(summary_bytes, token).into();
        let mut kept = match self.by_reader.iter().position(|(k, _)| k == who) {
            Some(i) => self.by_reader.remove(i).map(|(_, v)| v).unwrap_or_default(),
            None => VecDeque::new(),
        };
        if kept.len() >= HISTORY_DEPTH {
            kept.pop_front();
        }
        kept.push_back((token, served.clone()));
        if self.by_reader.len() >= HISTORY_IDENTITIES {
            self.by_reader.pop_front();
        }
        self.by_reader.push_back((who.clone(), kept));
        served
    }

    /// The summary of `token` as served to `who`; `None` when it is not
    /// `who`'s, is forgotten, or is of another epoch.
    pub fn get(&self, who: &K, token: Token) -> Option<Arc<[u8]>> {
        if token.epoch != self.epoch {
            return None;
        }
        let (_, kept) = self.by_reader.iter().find(|(k, _)| k == who)?;
        kept.iter()
            .find(|(t, _)| *t == token)
            .map(|(_, b)| b.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::summary::tests::{arb_proc, sample};
    use proptest::prelude::*;

    pub(crate) fn tok(g: u64) -> Token {
        Token {
            epoch: 7,
            generation: g,
        }
    }

    pub(crate) fn served(s: &NodeSummary, g: u64) -> Vec<u8> {
        with_generation(&s.encode(), tok(g))
    }

    /// The reader's side: what it holds after a whole read of `base` and
    /// a delta to `new`, against a whole read of `new`.
    fn check(base: &NodeSummary, new: &NodeSummary) -> Result<Vec<u8>, TestCaseError> {
        let (b, n) = (served(base, 1), served(new, 2));
        let held = summary::parse(&b).unwrap();
        prop_assert_eq!(generation(&b), Some(tok(1)));
        let d = diff(&b, &n).unwrap();
        prop_assert_eq!(base_of(&d), Some(tok(1)));
        let (t, got) = apply(&held, tok(1), &d).unwrap();
        prop_assert_eq!(t, tok(2));
        prop_assert_eq!(&got, &summary::parse(&n).unwrap());
        prop_assert_eq!(with_generation(&got.encode(), t), n);
        Ok(d)
    }

    #[test]
    fn a_delta_carries_only_what_changed() {
        let base = sample();
        let mut new = base.clone();
        new.uptime += 1.0;
        new.procs[2].utime += 5;
        new.procs.remove(1);
        let mut late = new.procs[0].clone();
        late.pid = 9000;
        new.procs.push(late);
        let d = check(&base, &new).unwrap();
        let text = String::from_utf8(d).unwrap();
        let body: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("p ") || l.starts_with("x "))
            .collect();
        assert_eq!(body.len(), 3, "{text}");
        assert!(body[0] == "x 2" && body[1].starts_with("p 4242 "), "{text}");
        assert!(body[2].starts_with("p 9000 "), "{text}");
        assert!(text.contains("\nh uptime 12346.67\n"), "{text}");
        assert!(text.ends_with("end 3\n"), "{text}");
        assert!(!text.contains("h generation"), "{text}");
    }

    /// A header that changes how `p` lines read (`gpu_scan` turning on
    /// makes a line without a `gpu` field say "none" instead of
    /// "unknown") sends every line, though their bytes did not change.
    #[test]
    fn a_header_that_changes_meaning_sends_every_line() {
        let base = sample();
        let mut new = base.clone();
        new.procs[0].gpus = Some(Arc::default());
        let d = check(&base, &new).unwrap();
        let text = String::from_utf8(d).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("p ")).count(), 3);
    }

    #[test]
    fn bad_deltas_are_errors_never_wrong_summaries() {
        let base = sample();
        let mut new = base.clone();
        new.procs[0].utime += 1;
        let (b, n) = (served(&base, 1), served(&new, 2));
        let held = summary::parse(&b).unwrap();
        let d = diff(&b, &n).unwrap();
        // Another base held (out of order, skipped generations).
        assert!(apply(&held, tok(3), &d).is_err());
        // Truncated, anywhere.
        for i in 0..d.len() - 1 {
            assert!(apply(&held, tok(1), &d[..i]).is_err(), "cut at {i}");
        }
        // A summary is no delta, and an unknown tag is refused.
        assert!(apply(&held, tok(1), &n).is_err());
        let odd = String::from_utf8(d.clone())
            .unwrap()
            .replace("\nend 1", "\nq 1\nend 1");
        assert!(apply(&held, tok(1), odd.as_bytes()).is_err());
        // Removing a pid the base lacks, or a wrong total.
        let gone = String::from_utf8(d.clone())
            .unwrap()
            .replace("\nend 1", "\nx 77\nend 2");
        assert!(apply(&held, tok(1), gone.as_bytes()).is_err());
        let total = String::from_utf8(d).unwrap().replace("procs 3", "procs 4");
        assert!(apply(&held, tok(1), total.as_bytes()).is_err());
        // No generation, no delta; unordered pids, no delta.
        assert!(diff(&base.encode(), &n).is_err());
        let mut shuffled = new.clone();
        shuffled.procs.swap(0, 2);
        assert!(diff(&b, &served(&shuffled, 2)).is_err());
    }

    #[test]
    fn tokens_have_one_spelling() {
        let t = Token {
            epoch: 0xabc,
            generation: u64::MAX,
        };
        let s = t.to_string();
        assert_eq!(s, "0000000000000abc.ffffffffffffffff");
        assert_eq!(Token::parse(s.as_bytes()), Some(t));
        for bad in [
            "abc.ffffffffffffffff",
            &s.to_uppercase(),
            &format!("{s}0"),
            "",
        ] {
            assert_eq!(Token::parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(since_path(t), format!("/.gproc/since/{s}"));
    }

    /// Old readers ignore the generation line: the summary parses to the
    /// same thing with and without it.
    #[test]
    fn the_generation_line_is_an_ignored_header_for_summary_readers() {
        let s = sample();
        let b = served(&s, 9);
        assert!(
            String::from_utf8_lossy(&b)
                .starts_with(&format!("gproc-ps 1\ngeneration {}\nhostname ", tok(9)))
        );
        assert_eq!(summary::parse(&b).unwrap(), s);
        // Re-stamping replaces the line rather than adding one.
        let again = with_generation(&b, tok(10));
        assert_eq!(generation(&again), Some(tok(10)));
        assert_eq!(again, served(&s, 10));
        assert_eq!(generation(&s.encode()), None);
    }

    #[test]
    fn history_is_per_reader_bounded_and_epoch_bound() {
        let mut h: History<u32> = History::new(42);
        let s = sample().encode();
        let a1 = h.record(&1, &s);
        let t1 = generation(&a1).unwrap();
        assert_eq!(t1.epoch, 42);
        // Another reader's token is not theirs.
        assert!(h.get(&2, t1).is_none());
        assert_eq!(h.get(&1, t1).as_deref(), Some(&a1[..]));
        // Tokens are unique, never reused.
        let mut seen = std::collections::HashSet::new();
        seen.insert(t1);
        for _ in 0..HISTORY_DEPTH {
            let t = generation(&h.record(&1, &s)).unwrap();
            assert!(seen.insert(t));
        }
        assert!(h.get(&1, t1).is_none(), "older than the depth is forgotten");
        // Another epoch (a restarted server) never matches.
        let h2: History<u32> = History::new(43);
        assert!(h2.get(&1, t1).is_none());
        // Identities are bounded: the least recently served goes first.
        for who in 0..HISTORY_IDENTITIES as u32 + 1 {
            h.record(&(100 + who), &s);
        }
        assert!(h.by_reader.len() <= HISTORY_IDENTITIES);
        assert!(h.by_reader.iter().all(|(k, _)| *k != 1));
    }

    /// Random churn: processes gone, new, changed, and pids reused by a
    /// process started later.
    pub(crate) fn churn() -> impl Strategy<Value = (NodeSummary, NodeSummary)> {
        (
            proptest::collection::vec(arb_proc(), 0..12),
            proptest::collection::vec((0u8..5, arb_proc()), 0..12),
            proptest::collection::vec(arb_proc(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(procs, edits, born, gpu_flip)| {
                let mut base = sample();
                base.procs = procs;
                base.procs.sort_by_key(|p| p.pid);
                base.procs.dedup_by_key(|p| p.pid);
                let mut new = base.clone();
                new.time += 1.0;
                new.loadavg.one += 0.25;
                let mut keep = Vec::new();
                for (i, p) in new.procs.iter().enumerate() {
                    let (what, other) = edits.get(i).cloned().unwrap_or((0, p.clone()));
                    match what {
                        0 | 1 => keep.push(p.clone()),
                        2 => {}
                        3 => keep.push(ProcEntry {
                            utime: p.utime.wrapping_add(1),
                            rss_pages: other.rss_pages,
                            ..p.clone()
                        }),
                        _ => keep.push(ProcEntry {
                            pid: p.pid,
                            start_ticks: p.start_ticks.wrapping_add(1),
                            ..other
                        }),
                    }
                }
                keep.extend(born);
                keep.sort_by_key(|p| p.pid);
                keep.dedup_by_key(|p| p.pid);
                if gpu_flip && let Some(p) = keep.first_mut() {
                    p.gpus = Some(Arc::default());
                }
                new.procs = keep;
                (base, new)
            })
    }

    proptest! {
        #[test]
        fn applying_a_delta_gives_the_whole_read((base, new) in churn()) {
            check(&base, &new)?;
            // And the other way round, and from a summary to itself.
            check(&new, &base)?;
            let same = check(&new, &new)?;
            let text = String::from_utf8(same).unwrap();
            prop_assert!(text.ends_with("end 0\n"), "{}", text);
        }

        #[test]
        fn arbitrary_deltas_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let held = sample();
            let mut d = format!("{MAGIC} {VERSION}\nbase {}\n", tok(1)).into_bytes();
            d.extend_from_slice(&bytes);
            let _ = apply(&held, tok(1), &d);
            let _ = apply(&held, tok(1), &bytes);
            let _ = diff(&bytes, &served(&held, 2));
        }
    }
}

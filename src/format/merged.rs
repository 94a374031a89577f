//! The merged summary: every node a gproc aggregator serves, in one read,
//! so an aggregator above it builds its tables with one read per lower
//! aggregator rather than one per node below it (issue 14's hierarchy).
//!
//! An aggregator serves it at the same path as an agent's node summary
//! ([`super::summary::FILE_PATH`], `/.gproc/ps`), to its administrators
//! only (it holds every user's command lines), so an upper aggregator
//! tells a lower aggregator from a node by the first line of that one
//! file: `gproc-ps` is a node, `gproc-merged` an aggregator. This module
//! is the format only: types, writer and parser, no I/O.
//!
//! # Format (`gproc-merged 1`)
//!
//! Lines ended by `\n`, fields separated by one space (runs accepted),
//! strings escaped as in the node summary (`\s` a space, `\-` the empty
//! string, ...). Every line starts with a tag:
//!
//! ```text
//! gproc-merged 1
//! source rack1
//! n n17 up 127.0.0.1:565 \- 9P2000.L 0.21 1700000000 \-
//! s 1234 -
//! <1234 bytes: n17's node summary, `gproc-ps 1` ... `end N`>
//! n n18 down 127.0.0.1:565 \- \- \- \- connection\srefused
//! m 111 connection\srefused
//! n n40 up unix:/run/r2.sock rack2 9P2000.L 0.30 1700000000 \-
//! s 987 4200
//! <987 bytes>
//! end 3
//! ```
//!
//! - `source NAME`: the aggregator that wrote it (its `[server] name`).
//! - `n NAME STATE ADDRESS VIA DIALECT RTT_MS LAST_CONTACT LAST_ERROR`: one
//!   node, as the writer's `/nodes` shows it. `VIA` is the chain of
//!   aggregators between the writer and the node, nearest the writer
//!   first, joined by `/` (empty for the writer's own nodes); `DIALECT`,
//!   `RTT_MS` (decimal), `LAST_CONTACT` (unix seconds) and `LAST_ERROR`
//!   are empty when unknown.
//! - `s LEN STALE_MS`, right after its node's `n` line: the node's summary
//!   follows the line as exactly `LEN` bytes; `STALE_MS` is how far past
//!   its TTL the writer's copy was (milliseconds), `-` when fresh.
//! - `m ERRNO REASON`, right after its node's `n` line instead of `s`: the
//!   writer has no data for the node (it did not answer within the
//!   writer's deadline, or failed), with the errno and the writer's reason.
//! - `end N` closes the file, `N` the number of `n` lines; without it the
//!   file was truncated and is rejected.
//!
//! Every node named is reached through the writer by its name
//! (`/NAME/...`), and the writer resolves pinned process names
//! (`<pid>.<start>`, [`super::summary::pinned_name`]) for every one of its
//! nodes, so the parser marks every summary `pinned_walk`.
//!
//! # Extending it
//!
//! As the node summary: an unknown tag is a line ignored (so a new record
//! never carries a payload: only `s` is followed by bytes, and a new kind
//! of payload is a new major version), fields past the listed ones are
//! ignored, a listed field that does not parse rejects the file. One
//! node's summary that does not parse does not: that node alone becomes
//! missing, with the parse error as its reason, as a node that sent it
//! directly would be.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use super::summary::{self, Fields, NodeSummary, SummaryError, Tokens, escape_into, quote};

/// The first token of a merged summary.
pub const MAGIC: &str = "gproc-merged";

/// The major version this build writes and reads.
pub const VERSION: u32 = 1;

/// `EPROTO`: a node's summary inside the file did not parse. The format
/// module imports nothing of the crate, so the number is Linux's own.
const EPROTO: u32 = 71;

/// What the writer knows of one of its nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedNode {
    /// The node's name, its directory under the writer.
    pub name: String,
    /// `up`, `down`, `idle` as the writer's `/nodes` says.
    pub state: String,
    /// Where the writer (or the aggregator below it) dials it.
    pub address: String,
    /// Aggregators between the writer and the node, nearest the writer
    /// first; empty for the writer's own nodes.
    pub via: Vec<String>,
    /// The 9P dialect spoken, once connected.
    pub dialect: Option<String>,
    /// The last round trip, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Last successful exchange, unix seconds.
    pub last_contact: Option<u64>,
    /// The node's last error.
    pub last_error: Option<String>,
    /// Its summary, or why there is none.
    pub data: NodeData,
}

/// A node's data in a merged summary.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeData {
    /// The node's summary; `stale` when the writer's copy was past its TTL.
    Summary {
        /// The summary (marked `pinned_walk`: see the module doc).
        summary: Arc<NodeSummary>,
        /// How far past its TTL the writer's copy was.
        stale: Option<Duration>,
    },
    /// No data: the errno and the writer's reason.
    Missing {
        /// Linux errno.
        errno: u32,
        /// Why.
        reason: String,
    },
}

/// A decoded merged summary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Merged {
    /// The aggregator that wrote it.
    pub source: String,
    /// Its nodes, in its order.
    pub nodes: Vec<MergedNode>,
}

/// Whether `bytes` start like a merged summary (rather than a node's).
pub fn is_merged(bytes: &[u8]) -> bool {
    bytes
        .strip_prefix(MAGIC.as_bytes())
        .is_some_and(|r| r.first() == Some(&b' '))
}

/// Appends ` escaped` (the empty string as `\-`).
fn put_esc(out: &mut Vec<u8>, s: &str) {
    out.push(b' ');
    escape_into(out, s.as_bytes());
}

/// Writes a merged summary incrementally: [`Writer::node`] per node, then
/// [`Writer::finish`].
pub struct Writer {
    out: Vec<u8>,
    count: usize,
}

impl Writer {
    /// A file written by the aggregator named `source`.
    pub fn new(source: &str) -> Self {
        let mut out = Vec::new();
        let _ = write!(out, "{MAGIC} {VERSION}\nsource");
        put_esc(&mut out, source);
        out.push(b'\n');
        Self { out, count: 0 }
    }

    /// Appends one node: its `n` line and its data (`encoded` is the node
    /// summary's bytes for [`NodeData::Summary`]; the `summary` field
    /// itself is not re-encoded, so a writer holding the bytes passes them).
    pub fn node(&mut self, n: &MergedNode, encoded: Option<&[u8]>) {
        let out = &mut self.out;
        out.push(b'n');
        put_esc(out, &n.name);
        put_esc(out, &n.state);
        put_esc(out, &n.address);
        put_esc(out, &n.via.join("/"));
        put_esc(out, n.dialect.as_deref().unwrap_or_default());
        put_esc(
            out,
            &n.rtt_ms
                .filter(|r| r.is_finite())
                .map(|r| format!("{r:.3}"))
                .unwrap_or_default(),
        );
        put_esc(
            out,
            &n.last_contact.map(|t| t.to_string()).unwrap_or_default(),
        );
        put_esc(out, n.last_error.as_deref().unwrap_or_default());
        out.push(b'\n');
        match (&n.data, encoded) {
            (NodeData::Summary { stale, .. }, Some(bytes)) => {
                let stale = stale.map_or_else(|| "-".to_string(), |d| d.as_millis().to_string());
                let _ = writeln!(out, "s {} {stale}", bytes.len());
                out.extend_from_slice(bytes);
                if bytes.last() != Some(&b'\n') {
                    // Keeps the next record on a line of its own; LEN
                    // counts the summary's bytes alone.
                    out.push(b'\n');
                }
            }
            (NodeData::Summary { summary, stale }, None) => {
                let bytes = summary.encode();
                let stale = stale.map_or_else(|| "-".to_string(), |d| d.as_millis().to_string());
                let _ = writeln!(out, "s {} {stale}", bytes.len());
                out.extend_from_slice(&bytes);
            }
            (NodeData::Missing { errno, reason }, _) => {
                let _ = write!(out, "m {errno}");
                put_esc(out, reason);
                out.push(b'\n');
            }
        }
        self.count += 1;
    }

    /// The file.
    pub fn finish(mut self) -> Vec<u8> {
        let _ = writeln!(self.out, "end {}", self.count);
        self.out
    }
}

/// Most nodes one merged summary may name: far above any machine built
/// (Fugaku has 158,976 nodes), so a hostile peer cannot make the reader
/// allocate without bound before `end` is checked.
pub const MAX_NODES: usize = 4_000_000;

/// The next line of `bytes` from `*pos` (without its `\n`), advancing.
fn next_line<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    if *pos >= bytes.len() {
        return None;
    }
    let rest = &bytes[*pos..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    *pos += (end + 1).min(rest.len());
    Some(&rest[..end])
}

/// Whether `name` can be a node's directory name: not empty, no `/`, no
/// NUL, not `.` or `..`, not starting with `.` (the tree's hidden names).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\0'])
        && !name.chars().any(char::is_control)
}

/// Decodes a merged summary. Never panics whatever the bytes; errors name
/// the line. A node whose embedded summary does not parse is returned as
/// missing (with the parse error), the others are kept.
pub fn parse(bytes: &[u8]) -> Result<Merged, SummaryError> {
    parse_shared(&bytes::Bytes::copy_from_slice(bytes))
}

/// [`parse`] of bytes the nodes' summaries may keep slices of
/// ([`summary::parse_shared`]).
pub fn parse_shared(all: &bytes::Bytes) -> Result<Merged, SummaryError> {
    let bytes: &[u8] = all;
    let mut pos = 0;
    let mut line_no = 1usize;
    let first = next_line(bytes, &mut pos).unwrap_or_default();
    summary::check_first_line(first, MAGIC, VERSION, "a gproc merged summary")?;
    let mut m = Merged::default();
    let mut current: Option<MergedNode> = None;
    let push = |m: &mut Merged, n: Option<MergedNode>| {
        if let Some(n) = n {
            m.nodes.push(n);
        }
    };
    while let Some(line) = next_line(bytes, &mut pos) {
        line_no += 1;
        let mut f = Fields {
            toks: Tokens { rest: line },
            line: line_no,
        };
        let Some(tag) = f.toks.next() else {
            continue;
        };
        match tag {
            b"source" => m.source = f.string("source name")?,
            b"n" => {
                push(&mut m, current.take());
                if m.nodes.len() >= MAX_NODES {
                    return Err(f.err(format!("more than {MAX_NODES} nodes")));
                }
                let name = f.string("node name")?;
                if !valid_node_name(&name) {
                    return Err(f.err(format!("invalid node name {}", quote(name.as_bytes()))));
                }
                let state = f.string("state")?;
                let address = f.string("address")?;
                let via = f.string("via")?;
                let dialect = f.string("dialect")?;
                let rtt = f.string("round trip (ms)")?;
                let contact = f.string("last contact (unix seconds)")?;
                let last_error = f.string("last error")?;
                let rtt_ms =
                    match rtt.as_str() {
                        "" => None,
                        r => Some(r.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(
                            || f.err(format!("bad round trip {}", quote(r.as_bytes()))),
                        )?),
                    };
                let last_contact =
                    match contact.as_str() {
                        "" => None,
                        c => Some(c.parse::<u64>().map_err(|_| {
                            f.err(format!("bad last contact {}", quote(c.as_bytes())))
                        })?),
                    };
                current = Some(MergedNode {
                    name,
                    state,
                    address,
                    via: via
                        .split('/')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    dialect: (!dialect.is_empty()).then_some(dialect),
                    rtt_ms,
                    last_contact,
                    last_error: (!last_error.is_empty()).then_some(last_error),
                    data: NodeData::Missing {
                        errno: EPROTO,
                        reason: "the aggregator sent no data for it".into(),
                    },
                });
            }
            b"s" => {
                let len: usize = f.num("summary length (bytes)")?;
                let stale = f.string("stale (ms, or -)")?;
                let Some(n) = current.as_mut() else {
                    return Err(f.err("`s` before any `n` line".into()));
                };
                let Some(body) = bytes.get(pos..pos.saturating_add(len)) else {
                    return Err(f.err(format!(
                        "summary of {len} bytes, but only {} remain: the file is truncated",
                        bytes.len() - pos
                    )));
                };
                pos += len;
                // The writer ends each summary with `\n`; one it added
                // after a summary that lacked it is skipped too.
                if bytes.get(pos) == Some(&b'\n') && body.last() != Some(&b'\n') {
                    pos += 1;
                }
                line_no += body.iter().filter(|&&b| b == b'\n').count();
                let stale = match stale.as_str() {
                    "-" => None,
                    s => Some(Duration::from_millis(s.parse().map_err(|_| {
                        f.err(format!("bad stale age {}", quote(s.as_bytes())))
                    })?)),
                };
                n.data = match summary::parse_shared(&all.slice_ref(body)) {
                    Ok(mut s) => {
                        s.pinned_walk = true;
                        // A node's own file's property, not the merged one's.
                        s.fresh_at_zero = false;
                        NodeData::Summary {
                            summary: Arc::new(s),
                            stale,
                        }
                    }
                    Err(e) => NodeData::Missing {
                        errno: EPROTO,
                        reason: format!("bad summary: {e}"),
                    },
                };
            }
            b"m" => {
                let errno = f.num("errno")?;
                let reason = f.string("reason")?;
                let Some(n) = current.as_mut() else {
                    return Err(f.err("`m` before any `n` line".into()));
                };
                n.data = NodeData::Missing { errno, reason };
            }
            b"end" => {
                push(&mut m, current.take());
                let count: usize = f.num("node count")?;
                if count != m.nodes.len() {
                    return Err(f.err(format!(
                        "expected {count} nodes as `end` says, found {}",
                        m.nodes.len()
                    )));
                }
                return Ok(m);
            }
            _ => {} // a tag from a newer writer
        }
    }
    Err(SummaryError::Parse {
        line: line_no,
        msg: "expected an `end` line; the merged summary is truncated".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::summary::{LoadAvg, ProcEntry};

    fn summary(host: &str, pids: &[i32]) -> NodeSummary {
        NodeSummary {
            hostname: host.into(),
            arch: "x86_64".into(),
            kernel: "6.1".into(),
            boot_time: 1_700_000_000,
            clk_tck: 100,
            page_size: 4096,
            uptime: 10.0,
            idle: 5.0,
            time: 1_700_000_010.5,
            cpus: 4,
            mem_total_kb: 1000,
            mem_free_kb: 500,
            mem_available_kb: Some(600),
            loadavg: LoadAvg::default(),
            procs: pids
                .iter()
                .map(|&pid| ProcEntry {
                    pid,
                    user: "alice".into(),
                    state: 'S',
                    comm: summary::Escaped::new(b"sleep"),
                    cmdline: summary::Args::new([&b"sleep"[..], b"a b"]),
                    ..ProcEntry::default()
                })
                .collect(),
            pinned_walk: false,
            fresh_at_zero: false,
        }
    }

    fn node(name: &str, data: NodeData) -> MergedNode {
        MergedNode {
            name: name.into(),
            state: "up".into(),
            address: "127.0.0.1:565".into(),
            via: vec![],
            dialect: Some("9P2000.L".into()),
            rtt_ms: Some(0.25),
            last_contact: Some(1_700_000_000),
            last_error: None,
            data,
        }
    }

    #[test]
    fn round_trip() {
        let mut a = summary("n1", &[1, 42]);
        // A process's batch job travels up with its node's summary.
        a.procs[1].job = Some(std::sync::Arc::new(crate::format::jobs::JobRef {
            id: "4242".into(),
            step: Some("batch".into()),
        }));
        // And the GPUs it holds (the other's are none: the agent looked).
        use crate::format::gpus::{Gpu, Gpus};
        a.procs[0].gpus = Some(std::sync::Arc::new(Gpus::default()));
        a.procs[1].gpus = Some(std::sync::Arc::new(Gpus::new([Gpu::Nvidia(3)], false)));
        let mut w = Writer::new("rack 1");
        let n1 = node(
            "n1",
            NodeData::Summary {
                summary: Arc::new(a.clone()),
                stale: None,
            },
        );
        w.node(&n1, None);
        let mut n2 = node(
            "n2",
            NodeData::Missing {
                errno: 111,
                reason: "connection refused".into(),
            },
        );
        n2.state = "down".into();
        n2.dialect = None;
        n2.rtt_ms = None;
        n2.last_error = Some("refused\nforged row".into());
        w.node(&n2, None);
        let mut n3 = node(
            "n3",
            NodeData::Summary {
                summary: Arc::new(summary("n3", &[7])),
                stale: Some(Duration::from_millis(4200)),
            },
        );
        n3.via = vec!["rack2".into(), "sub".into()];
        let encoded = summary("n3", &[7]).encode();
        w.node(&n3, Some(&encoded));
        let bytes = w.finish();
        assert!(is_merged(&bytes));
        let m = parse(&bytes).expect("parses");
        assert_eq!(m.source, "rack 1");
        assert_eq!(m.nodes.len(), 3);
        let mut want = a;
        want.pinned_walk = true;
        assert_eq!(
            m.nodes[0].data,
            NodeData::Summary {
                summary: Arc::new(want),
                stale: None
            }
        );
        assert_eq!(m.nodes[0].rtt_ms, Some(0.25));
        assert_eq!(m.nodes[1].data, n2.data);
        assert_eq!(
            m.nodes[1].last_error.as_deref(),
            Some("refused\nforged row")
        );
        assert_eq!(m.nodes[1].dialect, None);
        assert_eq!(m.nodes[2].via, vec!["rack2", "sub"]);
        assert!(matches!(
            &m.nodes[2].data,
            NodeData::Summary { stale: Some(d), summary } if d.as_millis() == 4200 && summary.procs[0].pid == 7
        ));
    }

    #[test]
    fn one_bad_summary_makes_one_node_missing() {
        let mut w = Writer::new("r");
        let good = summary("a", &[1]).encode();
        let bad = b"gproc-ps 1\nhostname b\nend 0\n".to_vec();
        for (name, bytes) in [("a", &good), ("b", &bad)] {
            w.node(
                &node(
                    name,
                    NodeData::Summary {
                        summary: Arc::new(NodeSummary::default()),
                        stale: None,
                    },
                ),
                Some(bytes),
            );
        }
        let m = parse(&w.finish()).expect("parses");
        assert!(matches!(m.nodes[0].data, NodeData::Summary { .. }));
        assert!(
            matches!(&m.nodes[1].data, NodeData::Missing { errno: EPROTO, reason } if reason.contains("bad summary"))
        );
    }

    #[test]
    fn truncated_and_hostile_files_are_errors_not_panics() {
        let mut w = Writer::new("r");
        w.node(
            &node(
                "a",
                NodeData::Summary {
                    summary: Arc::new(summary("a", &[1, 2, 3])),
                    stale: None,
                },
            ),
            None,
        );
        let full = w.finish();
        assert!(parse(&full).is_ok());
        // Every prefix is refused (never a panic), except the whole file.
        for cut in 0..full.len() - 1 {
            assert!(parse(&full[..cut]).is_err(), "prefix of {cut} bytes parsed");
        }
        for bad in [
            &b"gproc-merged 2\nend 0\n"[..],
            b"gproc-ps 1\n",
            b"gproc-merged 1\ns 10 -\n",
            b"gproc-merged 1\nn a up x \\- \\- \\- \\- \\-\ns 99999999999 -\nend 1\n",
            b"gproc-merged 1\nn ../x up x \\- \\- \\- \\- \\-\nend 1\n",
            b"gproc-merged 1\nn .gproc up x \\- \\- \\- \\- \\-\nend 1\n",
            b"gproc-merged 1\nn a up x \\- \\- nan \\- \\-\nend 1\n",
            b"gproc-merged 1\nend 1\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn newer_writers_lines_and_fields_are_ignored() {
        let text = "gproc-merged 1 extra\nsource r future\ngpu_nodes 3\n\
                    n a up x \\- \\- \\- \\- \\- newfield\nm 5 io\\serror more\nq 1 2\nend 1\n";
        let m = parse(text.as_bytes()).expect("parses");
        assert_eq!(m.nodes.len(), 1);
        assert_eq!(
            m.nodes[0].data,
            NodeData::Missing {
                errno: 5,
                reason: "io error".into()
            }
        );
    }
}

//! `gproc bench load`: many clients against one aggregator over thousands
//! of simulated nodes, some of them flapping, for a fixed time; optionally
//! the aggregator is killed (SIGKILL) and restarted in the middle.
//!
//! The aggregator runs as its own `gproc serve` child, so that its RSS is
//! its own and it can be killed; the nodes run in `gproc sim` children
//! (`--die` nodes go down and come back, `--churn` makes processes come and
//! go). Each client is one 9P connection doing a fixed mix of operations in
//! a loop. Errors are sorted by cause, because most of them are expected:
//!
//! - **flapping**: the path names a node with the simulator's `die` fault
//!   (the sim config marks them `# fault: die`; a quarter of them die for
//!   good);
//! - **vanished pid**: ENOENT for a process that exited (churn);
//! - **restart**: our connection failed after the benchmark killed the
//!   aggregator, until that client worked again;
//! - **unexpected**: anything else (an error from a live node, a timeout,
//!   a connection lost without a restart). The target is zero.
//!
//! Pids and nodes come from what the tree lists (`nodes`, `ps`), refreshed
//! every `REFRESH` by a task of its own whose reads are not counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::cluster::start_sims;
use super::{cpu_seconds, percentiles, print_table, rss_kib};
use gproc::client::health::Backoff;
use gproc::client::redial::{DialError, RedialPolicy, Redialer, Target};
use gproc::client::{Client, ClientError, ClientOptions, FidHandle, OpenMode};
use gproc::config::Config;
use gproc::format::table::{NodeRow, Note, PsRow, Row, Table};
use gproc::net::Address;
use gproc::proto::errno;
use gproc::sys::{self, rng::Rng};

/// Settings of the load benchmark (also its command-line options).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadBench {
    /// Simulated nodes.
    #[arg(long, default_value_t = 2000)]
    pub nodes: usize,
    /// Processes per node.
    #[arg(long, default_value_t = 100)]
    pub procs_per_node: usize,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long the clients run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Fraction of nodes that flap (the simulator's `--die`).
    #[arg(long, default_value_t = 0.1)]
    pub flap: f64,
    /// Mean flapping period (the simulator's `--die-period`): short, so that
    /// nodes go down and come back during the run.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub die_period: Duration,
    /// Processes started plus exited per node per minute.
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// Kill the aggregator (SIGKILL) at this time and restart it.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub restart_at: Option<Duration>,
    /// Interval of the aggregator RSS samples.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub sample: Duration,
    /// Override weights of the operation mix: KIND=WEIGHT,... with kinds
    /// ps, load, nodes, ls-root, ls-node, ls-pid, status, maps (default
    /// per mille: 50, 25, 25, 100, 100, 100, 450, 150).
    #[arg(long, default_value = "")]
    pub mix: Mix,
    /// The `gproc` binary that runs the aggregator (default: this one),
    /// for an A/B of two builds' aggregators under the same clients and
    /// simulator.
    #[arg(long)]
    pub aggregator_exe: Option<PathBuf>,
}

/// Weights of the operation kinds, in per mille by default: `ps` 50,
/// `load` 25, `nodes` 25, `ls-root`, `ls-node`, `ls-pid` 100 each,
/// `status` 450, `maps` 150. Tables are the costly reads and the rarest;
/// most reads are one process's status, as `top`-like tools do. Parsed
/// from `kind=weight,...`, which overrides those kinds only (`ps=0`
/// drops the cluster-wide table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix([u64; 8]);

impl Default for Mix {
    fn default() -> Self {
        Mix([50, 25, 25, 100, 100, 100, 450, 150])
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = Mix::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KIND=WEIGHT"))?;
            let op = Op::ALL
                .iter()
                .find(|o| o.key() == k.trim())
                .ok_or_else(|| {
                    let keys: Vec<&str> = Op::ALL.iter().map(|o| o.key()).collect();
                    format!("unknown kind {k:?}: one of {}", keys.join(", "))
                })?;
            m.0[op.index()] = v
                .trim()
                .parse()
                .map_err(|e| format!("{part:?}: weight: {e}"))?;
        }
        if m.0.iter().sum::<u64>() == 0 {
            return Err("every weight is 0".into());
        }
        Ok(m)
    }
}

impl Mix {
    fn weight(&self, op: Op) -> u64 {
        self.0[op.index()]
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One row of the operations table.
#[derive(Debug, Clone)]
pub struct OpRow {
    /// What the operation does (`read NODE/PID/status`), or `all`.
    pub op: String,
    /// Operations finished (successes and errors).
    pub count: u64,
    /// `count` per second of the run.
    pub ops_per_s: f64,
    /// Latency percentiles of the successful operations, in ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Bytes read by the successful operations, MiB.
    pub mib: f64,
    /// Errors naming a flapping node.
    pub flapping: u64,
    /// ENOENT of a process that exited.
    pub vanished: u64,
    /// Connection errors after the aggregator was killed.
    pub restart: u64,
    /// Everything else.
    pub unexpected: u64,
}

/// What the restart cost the clients.
#[derive(Debug, Clone)]
pub struct RestartReport {
    /// When the aggregator was killed, from the start of the run.
    pub killed_at: Duration,
    /// From the kill until the new aggregator accepted connections.
    pub listening_after: Option<Duration>,
    /// Operations that failed because of the restart.
    pub failed_ops: u64,
    /// From the kill until the last operation in flight at the kill
    /// failed: how long a client waited to learn of it.
    pub in_flight_failed_within: Option<Duration>,
    /// Error kinds of those failures (`closed 60, refused 3`).
    pub failure_kinds: String,
    /// Connection attempts refused while the aggregator was down.
    pub reconnect_failures: u64,
    /// From the kill until a client was attached again, median and
    /// slowest over clients.
    pub reattached: (Option<Duration>, Option<Duration>),
    /// Clients that worked again before the end of the run.
    pub clients_back: usize,
    /// From the kill until a client's first success, median over clients.
    pub back_p50: Option<Duration>,
    /// From the kill until every client had succeeded again.
    pub all_back_after: Option<Duration>,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// One row per operation kind, then `all`.
    pub ops: Vec<OpRow>,
    /// A few examples of each error class, `class: message`.
    pub examples: Vec<(String, Vec<String>)>,
    /// Reads of `ps`/`load` whose table left out a live node or served its
    /// rows stale (the node did not answer within the pool's deadline).
    pub incomplete_tables: u64,
    /// Of those, reads whose table left out a live node (`# missing`):
    /// the "live-node misses".
    pub missing_tables: u64,
    /// Reads of `ps`/`load` that said a live node was pending: up, its
    /// data not yet in when the table was made (the aggregator busy).
    pub pending_tables: u64,
    /// Latency (p50, p99, max ms) of successful operations on one node,
    /// on nodes that never flap and on flapping nodes: whether the tail
    /// comes from nodes coming back.
    pub node_ops_split: [(f64, f64, f64); 2],
    /// Examples of such table lines.
    pub incomplete_examples: Vec<String>,
    /// Aggregator RSS samples: time from the start of the run, KiB (0
    /// while it was being restarted). Nothing prints them yet: they show
    /// only in the report's `Debug` form.
    #[allow(dead_code)]
    pub rss: Vec<(Duration, u64)>,
    /// Non-flapping nodes that `/nodes` did not show up at the end.
    pub live_nodes_not_up: Vec<String>,
    /// Nodes up and down in `/nodes` at the end.
    pub nodes_up_down: (usize, usize),
    /// Set when the aggregator exited without being killed by us.
    pub aggregator_exit: Option<String>,
    /// Lines of the aggregator's log that report a panic.
    pub panics: Vec<String>,
    /// The restart, when asked for.
    pub restart: Option<RestartReport>,
}

/// Client-side limit on each 9P request: far above the pool's 3 s
/// deadline, so that hitting it means the aggregator failed to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the pid and node lists are read again (processes churn).
const REFRESH: Duration = Duration::from_secs(10);

/// Progress lines on stderr this often.
const PROGRESS: Duration = Duration::from_secs(5);

/// The RSS table shows a sample this often.
const SHOW_EVERY: Duration = Duration::from_secs(5);

/// Largest file a client reads (the `ps` table of 2,000 x 100 processes
/// is about 20 MB); past it the read is an error, not a memory blow-up.
const MAX_READ: u64 = 1 << 30;

/// Examples kept per error class.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ps,
    Load,
    Nodes,
    ListRoot,
    ListNode,
    ListPid,
    Status,
    Maps,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Ps,
        Op::Load,
        Op::Nodes,
        Op::ListRoot,
        Op::ListNode,
        Op::ListPid,
        Op::Status,
        Op::Maps,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Ps => "read ps",
            Op::Load => "read load",
            Op::Nodes => "read nodes",
            Op::ListRoot => "list /",
            Op::ListNode => "list /NODE",
            Op::ListPid => "list /NODE/PID",
            Op::Status => "read NODE/PID/status",
            Op::Maps => "read NODE/PID/maps",
        }
    }

    /// The name in `--mix`.
    fn key(self) -> &'static str {
        match self {
            Op::Ps => "ps",
            Op::Load => "load",
            Op::Nodes => "nodes",
            Op::ListRoot => "ls-root",
            Op::ListNode => "ls-node",
            Op::ListPid => "ls-pid",
            Op::Status => "status",
            Op::Maps => "maps",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn has_pid(self) -> bool {
        matches!(self, Op::ListPid | Op::Status | Op::Maps)
    }

    /// Tables whose `# missing`/`# stale` lines are checked.
    fn is_table(self) -> bool {
        matches!(self, Op::Ps | Op::Load)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Flapping,
    Vanished,
    Restart,
    Unexpected,
}

impl Class {
    const ALL: [Class; 4] = [
        Class::Flapping,
        Class::Vanished,
        Class::Restart,
        Class::Unexpected,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Flapping => "flapping node",
            Class::Vanished => "vanished pid",
            Class::Restart => "during restart",
            Class::Unexpected => "unexpected",
        }
    }
}

/// A random index below `n` (0 when `n` is 0).
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

impl Mix {
    /// An operation drawn with the mix's weights.
    fn pick(&self, rng: &mut Rng) -> Op {
        let mut r = rng.below(self.total());
        for o in Op::ALL {
            if r < self.weight(o) {
                return o;
            }
            r -= self.weight(o);
        }
        Op::Status
    }
}

/// What the clients pick from: the tree's nodes and processes.
#[derive(Debug, Default)]
struct Targets {
    nodes: Vec<String>,
    /// (index into `nodes`, pid).
    procs: Vec<(u32, u32)>,
}

impl Targets {
    /// From the texts of `/nodes` and `/ps` (a text that is not such a
    /// table gives nothing).
    fn parse(nodes: &str, ps: &str) -> Targets {
        let nodes: Vec<String> = Table::<NodeRow>::parse(nodes)
            .map(|t| t.rows.into_iter().map(|n| n.node).collect())
            .unwrap_or_default();
        let index: HashMap<&str, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let procs = Table::<PsRow>::parse(ps)
            .map(|t| t.rows)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| Some((*index.get(r.node.as_str())?, u32::try_from(r.pid).ok()?)))
            .collect();
        Targets { nodes, procs }
    }
}

/// The nodes the simulator made flap: its config marks them
/// `names = "s0n0012"  # fault: die`.
fn flapping_nodes(sim_config: &str) -> HashSet<String> {
    sim_config
        .lines()
        .filter(|l| l.ends_with("# fault: die"))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_string)
        .collect()
}

/// State shared by the clients, the sampler and the restart task.
struct Shared {
    addr: Address,
    mix: Mix,
    flapping: HashSet<String>,
    targets: RwLock<Arc<Targets>>,
    t0: Instant,
    end: Instant,
    /// When the benchmark killed the aggregator.
    killed: OnceLock<Instant>,
    ops: AtomicU64,
    errors: [AtomicU64; 4],
    examples: Mutex<Vec<Vec<String>>>,
    incomplete_examples: Mutex<Vec<String>>,
    stop: CancellationToken,
}

impl Shared {
    fn targets(&self) -> Arc<Targets> {
        sys::read(&self.targets).clone()
    }

    /// Keeps the first few errors of a class, with the time into the run
    /// (so that errors can be placed before or after a restart).
    fn example(&self, class: Class, text: String) {
        let mut ex = sys::lock(&self.examples);
        let v = &mut ex[class as usize];
        if v.len() < EXAMPLES {
            v.push(format!("{:5.1} s  {text}", self.t0.elapsed().as_secs_f64()));
        }
    }

    fn is_flapping(&self, path: &str) -> bool {
        path.split('/')
            .find(|p| !p.is_empty())
            .is_some_and(|n| self.flapping.contains(n))
    }
}

#[derive(Default)]
struct KindStats {
    ok: Vec<Duration>,
    errors: [u64; 4],
    bytes: u64,
}

/// One client's results.
#[derive(Default)]
struct ClientStats {
    kinds: [KindStats; 8],
    incomplete_tables: u64,
    missing_tables: u64,
    /// Tables that said a live node was still pending (up, its data not
    /// yet in).
    pending_tables: u64,
    /// Successful operations naming a node: never-flapping, flapping.
    node_ok: [Vec<Duration>; 2],
    /// The first success that started after the kill (from the kill).
    back_after: Option<Duration>,
    /// The first attach after the kill (from the kill).
    reattached_after: Option<Duration>,
    /// Failures of operations in flight at the kill (from the kill).
    in_flight_failed_after: Option<Duration>,
    restart_kinds: HashMap<&'static str, u64>,
    reconnect_failures: u64,
    /// Failed connects while the aggregator was not being restarted.
    connect_unexpected: u64,
}

/// A short name for a connection error, for the restart summary.
fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Closed { .. } => "closed",
        ClientError::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused",
            std::io::ErrorKind::ConnectionReset => "reset",
            std::io::ErrorKind::BrokenPipe => "broken pipe",
            _ => "io",
        },
        ClientError::Timeout { .. } => "timeout",
        ClientError::Protocol { .. } => "protocol",
        ClientError::Version { .. } => "version",
        _ => "other",
    }
}

fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(3),
        request_timeout: REQUEST_TIMEOUT,
        // auth = "none": no Tauth round trip.
        munge: false,
        ..ClientOptions::default()
    }
}

async fn connect(addr: &Address) -> Result<FidHandle, ClientError> {
    let c = Client::connect(addr, client_options()).await?;
    c.attach("root", "", Some(0)).await
}

/// Bytes kept from the end of a table to find its comment lines, which
/// the tree appends after every row: some 20,000 lines.
const TAIL: usize = 2 << 20;

/// Reads a file to the end without keeping it (the `ps` table is about
/// 20 MB); with `scan`, returns its `# missing`/`# stale` lines. Only the
/// tail is kept and looked at: scanning every byte of every `ps` would
/// take CPU from the aggregator on the same cores.
async fn read_discard(
    root: &FidHandle,
    path: &str,
    scan: bool,
) -> Result<(u64, Vec<String>), ClientError> {
    let mut f = root.walk(path).await?;
    f.open(OpenMode::Read).await?;
    let mut off = 0u64;
    let mut tail: VecDeque<Bytes> = VecDeque::new();
    let mut kept = 0usize;
    loop {
        let data = f.read_at(off, u32::MAX).await?;
        if data.is_empty() {
            break;
        }
        off += data.len() as u64;
        if off > MAX_READ {
            return Err(ClientError::TooLarge {
                server: root.client().server().to_string(),
                path: path.to_string(),
                limit: MAX_READ,
            });
        }
        if scan {
            kept += data.len();
            tail.push_back(data);
            while let Some(first) = tail.front()
                && kept - first.len() >= TAIL
            {
                kept -= first.len();
                tail.pop_front();
            }
        }
    }
    f.clunk().await?;
    Ok((
        off,
        if scan {
            trailing_comments(&tail)
        } else {
            Vec::new()
        },
    ))
}

/// The `# missing`/`# stale`/`# pending` lines of the comment block that
/// ends a table.
fn trailing_comments(tail: &VecDeque<Bytes>) -> Vec<String> {
    let mut buf = Vec::with_capacity(tail.iter().map(Bytes::len).sum());
    for c in tail {
        buf.extend_from_slice(c);
    }
    let mut out: Vec<String> = buf
        .split(|b| *b == b'\n')
        .rev()
        .skip_while(|l| l.is_empty())
        .take_while(|l| l.starts_with(b"#"))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .filter(|l| {
            matches!(
                Note::parse(l),
                Some(Note::Missing { .. } | Note::Stale { .. } | Note::Pending { .. })
            )
        })
        .collect();
    out.reverse();
    out
}

/// The node a table comment line is about (`# missing NODE: reason`), or
/// an empty string.
fn comment_node(line: &str) -> String {
    Note::parse(line)
        .and_then(|n| n.node().map(str::to_string))
        .unwrap_or_default()
}

/// Runs one operation: bytes read (or entries listed) and table comments.
async fn run_op(root: &FidHandle, op: Op, path: &str) -> Result<(u64, Vec<String>), ClientError> {
    match op {
        Op::ListRoot | Op::ListNode | Op::ListPid => {
            let entries = root.read_dir(path).await?;
            // Bytes are not known for listings; 64 per entry is close.
            Ok((64 * entries.len() as u64, Vec::new()))
        }
        _ => read_discard(root, path, op.is_table()).await,
    }
}

/// Sorts an error; `recovered` says whether this client already worked
/// again after the kill.
fn classify(sh: &Shared, op: Op, path: &str, e: &ClientError, recovered: bool) -> Class {
    let ours = e.is_connection_error() || matches!(e, ClientError::Timeout { .. });
    if ours && sh.killed.get().is_some() && !recovered {
        return Class::Restart;
    }
    if ours {
        // The aggregator must answer within its pool deadline, whatever
        // the node does: a lost connection or our timeout is its fault.
        return Class::Unexpected;
    }
    if sh.is_flapping(path) {
        return Class::Flapping;
    }
    if op.has_pid() && e.errno() == errno::ENOENT {
        return Class::Vanished;
    }
    Class::Unexpected
}

/// A client's connection: re-dialled after a loss, a failed dial retried
/// after 20 ms, doubling up to 500 ms until an operation succeeds again.
fn dialer(addr: &Address) -> Redialer {
    let target = Target {
        name: addr.to_string(),
        addr: addr.clone(),
        aname: String::new(),
        uname: "root".into(),
        uid: Some(0),
        opts: client_options(),
    };
    let backoff = Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(500),
        jitter: false,
    };
    Redialer::new(
        target,
        RedialPolicy {
            backoff,
            ..RedialPolicy::fixed(Duration::ZERO)
        },
    )
}

/// Connects until it works or the run ends, waiting out the backoff.
async fn reconnect(
    sh: &Shared,
    st: &mut ClientStats,
    recovered: bool,
    dialer: &Redialer,
) -> Option<Arc<FidHandle>> {
    loop {
        if Instant::now() >= sh.end || sh.stop.is_cancelled() {
            return None;
        }
        match dialer.session(None).await {
            Ok(s) => {
                if let Some(&kill) = sh.killed.get()
                    && st.reattached_after.is_none()
                {
                    st.reattached_after = Some(kill.elapsed());
                }
                return Some(s.root);
            }
            Err(DialError::Backoff { retry_in, .. }) => {
                let left = sh.end.saturating_duration_since(Instant::now());
                tokio::time::sleep(retry_in.min(left)).await;
            }
            Err(e) => {
                let e = e.into_client_error(dialer.target());
                if sh.killed.get().is_some() && !recovered {
                    st.reconnect_failures += 1;
                } else {
                    st.connect_unexpected += 1;
                    sh.errors[Class::Unexpected as usize].fetch_add(1, Ordering::Relaxed);
                    sh.example(Class::Unexpected, format!("connect: {e}"));
                }
            }
        }
    }
}

/// One client: operations in a loop until the end of the run.
async fn client(id: usize, sh: Arc<Shared>) -> ClientStats {
    let mut st = ClientStats::default();
    // Each client draws its own sequence.
    let mut rng = Rng::new(&[id as u64]);
    let dialer = dialer(&sh.addr);
    let mut root: Option<Arc<FidHandle>> = None;
    let end = tokio::time::Instant::from_std(sh.end);
    loop {
        if Instant::now() >= sh.end || sh.stop.is_cancelled() {
            break;
        }
        let recovered = st.back_after.is_some();
        let Some(r) = root.as_ref() else {
            root = reconnect(&sh, &mut st, recovered, &dialer).await;
            continue;
        };
        let op = sh.mix.pick(&mut rng);
        let tg = sh.targets();
        let path = match op {
            Op::Ps => "ps".to_string(),
            Op::Load => "load".to_string(),
            Op::Nodes => "nodes".to_string(),
            Op::ListRoot => "/".to_string(),
            Op::ListNode => match tg.nodes.get(below(&mut rng, tg.nodes.len())) {
                Some(n) => n.clone(),
                None => continue,
            },
            Op::ListPid | Op::Status | Op::Maps => {
                let Some(&(n, pid)) = tg.procs.get(below(&mut rng, tg.procs.len())) else {
                    continue;
                };
                let node = tg.nodes.get(n as usize).map_or("", String::as_str);
                match op {
                    Op::ListPid => format!("{node}/{pid}"),
                    Op::Status => format!("{node}/{pid}/status"),
                    _ => format!("{node}/{pid}/maps"),
                }
            }
        };
        let started = Instant::now();
        let res = tokio::select! {
            r = run_op(r, op, &path) => r,
            _ = tokio::time::sleep_until(end) => break,
            _ = sh.stop.cancelled() => break,
        };
        let done = Instant::now();
        let k = &mut st.kinds[op.index()];
        sh.ops.fetch_add(1, Ordering::Relaxed);
        match res {
            Ok((bytes, notes)) => {
                dialer
                    .health()
                    .succeeded(done - started, std::time::SystemTime::now());
                k.ok.push(done - started);
                if matches!(op, Op::ListNode) || op.has_pid() {
                    st.node_ok[usize::from(sh.is_flapping(&path))].push(done - started);
                }
                k.bytes += bytes;
                let (pending, live): (Vec<&String>, Vec<&String>) = notes
                    .iter()
                    .filter(|l| !sh.flapping.contains(&comment_node(l)))
                    .partition(|l| matches!(Note::parse(l), Some(Note::Pending { .. })));
                if !pending.is_empty() {
                    st.pending_tables += 1;
                }
                if !live.is_empty() {
                    st.incomplete_tables += 1;
                    let missing =
                        |l: &&String| matches!(Note::parse(l), Some(Note::Missing { .. }));
                    if live.iter().any(missing) {
                        st.missing_tables += 1;
                    }
                    let mut ex = sys::lock(&sh.incomplete_examples);
                    // Up to EXAMPLES of each kind, `# missing` first.
                    let (miss, stale): (Vec<&String>, Vec<&String>) =
                        live.into_iter().partition(missing);
                    for l in miss.into_iter().chain(stale) {
                        let is_missing = missing(&l);
                        let same = ex
                            .iter()
                            .filter(|e| e.contains(": # missing ") == is_missing)
                            .count();
                        if same < EXAMPLES {
                            let t = sh.t0.elapsed().as_secs_f64();
                            ex.push(format!("{t:5.1} s  {path}: {l}"));
                        }
                    }
                }
                if let Some(&kill) = sh.killed.get()
                    && st.back_after.is_none()
                    && started > kill
                {
                    st.back_after = Some(done - kill);
                }
            }
            Err(e) => {
                let class = classify(&sh, op, &path, &e, recovered);
                k.errors[class as usize] += 1;
                sh.errors[class as usize].fetch_add(1, Ordering::Relaxed);
                sh.example(class, format!("{}: {e}", op.name()));
                if class == Class::Restart {
                    *st.restart_kinds.entry(error_kind(&e)).or_default() += 1;
                    if let Some(&kill) = sh.killed.get()
                        && started <= kill
                    {
                        let after = done.saturating_duration_since(kill);
                        st.in_flight_failed_after =
                            Some(st.in_flight_failed_after.map_or(after, |a| a.max(after)));
                    }
                }
                if r.client().is_closed() {
                    root = None;
                }
            }
        }
    }
    st
}

/// The `gproc serve` child; killed when dropped.
pub(crate) struct AggProc {
    pub(crate) child: Child,
    exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl AggProc {
    pub(crate) fn spawn(exe: &Path, config: &Path, log: &Path) -> Result<AggProc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let child = Command::new(exe)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .context("cannot start gproc serve")?;
        Ok(AggProc {
            child,
            exe: exe.to_path_buf(),
            config: config.to_path_buf(),
            log: log.to_path_buf(),
        })
    }

    /// SIGKILL, then the same command again.
    fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let new = AggProc::spawn(&self.exe, &self.config, &self.log)?;
        let old = std::mem::replace(self, new);
        // Already dead; dropping it only reaps nothing twice.
        drop(old);
        Ok(())
    }
}

impl Drop for AggProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts on `addr` (a `host:port`).
pub(crate) async fn wait_for_port(addr: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A whole table as text; `ps` of more than about 6,000 nodes passes the
/// client's default 64 MiB cap, hence [`MAX_READ`].
async fn read_text(root: &FidHandle, path: &str) -> Result<String> {
    let b = root
        .read_all_limited(path, MAX_READ)
        .await
        .with_context(|| format!("cannot read {path} from the aggregator"))?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// Up and down counts of `/nodes`, and the non-flapping nodes not up.
fn node_states(nodes: &str, flapping: &HashSet<String>) -> (usize, usize, Vec<String>) {
    let (mut up, mut down, mut live_not_up) = (0, 0, Vec::new());
    let rows = Table::<NodeRow>::parse(nodes)
        .map(|t| t.rows)
        .unwrap_or_default();
    for n in rows {
        if n.is_up() {
            up += 1;
        } else {
            down += 1;
            if !flapping.contains(&n.node) {
                live_not_up.push(n.line());
            }
        }
    }
    (up, down, live_not_up)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

struct Sample {
    t: Duration,
    pid: u32,
    rss_kib: u64,
    cpu_s: f64,
    load1: f64,
    /// Machine-wide CPU ticks (busy, total) from `/proc/stat`: tells a
    /// CPU-bound run, and how much others took, from a stalled one.
    machine: (u64, u64),
}

/// Busy and total CPU ticks of the whole machine so far.
fn machine_ticks() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Percent busy between two `machine_ticks` readings.
fn busy_pct(a: (u64, u64), b: (u64, u64)) -> Option<f64> {
    let total = b.1.checked_sub(a.1).filter(|t| *t > 0)?;
    Some(b.0.saturating_sub(a.0) as f64 * 100.0 / total as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// The aggregator's config: room for every client and the benchmark's own
/// connections. Every client attaches as the one user root, so that user
/// may hold every connection: left unset, its share would be an eighth of
/// `max_connections` (16 of 128), and the other clients would be refused
/// at attach with EMFILE ("too many open files") and, while those refused
/// connections wait for their address's share, at `Tversion`.
fn aggregator_config(listen: &str, clients: usize, nodes_toml: &str) -> String {
    let max = clients + 64;
    format!(
        "[server]\nlisten = [\"{listen}\"]\nauth = \"none\"\nmax_connections = {max}\n\
         max_connections_per_user = {max}\n\n\
         [pool]\nrequest_timeout = \"3s\"\ndeadline = \"3s\"\nconnect_timeout = \"2s\"\n\
         reconnect_min = \"500ms\"\nreconnect_max = \"5s\"\nconnect = \"eager\"\n\
         connect_concurrency = 256\nmax_in_flight = 2048\n\n\
         # A flapping node's summary is served up to 60 s past its TTL, so\n\
         # /ps keeps its last rows while it is down.\n\
         [[cache.rule]]\npath = \"/.gproc/ps\"\nttl = \"2s\"\nstale = \"60s\"\n\n{nodes_toml}"
    )
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// The simulator or the aggregator cannot start, or the aggregator never
/// serves the tree.
pub async fn run(b: LoadBench) -> Result<LoadReport> {
    anyhow::ensure!(b.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(b.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(!b.sample.is_zero(), "--sample must be positive");
    anyhow::ensure!(
        (0.0..=1.0).contains(&b.flap),
        "--flap is a fraction of nodes, 0 to 1"
    );
    let exe = match &b.aggregator_exe {
        Some(p) => {
            anyhow::ensure!(
                p.is_file(),
                "--aggregator-exe {}: no such file",
                p.display()
            );
            p.clone()
        }
        None => std::env::current_exe().context("cannot find the gproc binary")?,
    };
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;

    eprintln!(
        "bench load: {} nodes x {} processes, {:.0}% flapping: starting the simulator ...",
        b.nodes,
        b.procs_per_node,
        b.flap * 100.0
    );
    let mut extra = vec!["--churn".to_string(), b.churn.to_string()];
    if b.flap > 0.0 {
        extra.extend([
            "--die".to_string(),
            b.flap.to_string(),
            "--die-period".to_string(),
            humantime::format_duration(b.die_period).to_string(),
        ]);
    }
    let (sims, nodes_toml) = start_sims(b.nodes, b.procs_per_node, dir.path(), &extra).await?;
    let flapping = flapping_nodes(&nodes_toml);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let text = aggregator_config(&listen, b.clients, &nodes_toml);
    Config::from_str(&text, "load.toml")
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the benchmark's aggregator config is invalid")?;
    let cfg_path = dir.path().join("load.toml");
    std::fs::write(&cfg_path, &text)
        .with_context(|| format!("cannot write {}", cfg_path.display()))?;
    let log = dir.path().join("serve.log");

    eprintln!(
        "bench load: starting the aggregator ({}) on {listen} ...",
        exe.display()
    );
    let agg = AggProc::spawn(&exe, &cfg_path, &log)?;
    let agg_pid = Arc::new(AtomicU32::new(agg.child.id()));
    let agg = Arc::new(Mutex::new(agg));
    if let Err(e) = wait_for_port(&listen, Duration::from_secs(60)).await {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(e.context(format!(
            "gproc serve did not start; its log ends:\n{}",
            tail.join("\n")
        )));
    }
    let addr: Address = listen
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("aggregator address")?;

    // Every live node connected (eager connect) before the clients start.
    let setup = connect(&addr)
        .await
        .context("cannot attach to the aggregator")?;
    let live = b.nodes.saturating_sub(flapping.len());
    let deadline = Instant::now() + Duration::from_secs(120);
    let nodes_text = loop {
        let t = read_text(&setup, "nodes").await?;
        let (up, _, _) = node_states(&t, &flapping);
        if up >= live || Instant::now() > deadline {
            eprintln!("bench load: {up} nodes up ({live} never flap)");
            break t;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ps_text = read_text(&setup, "ps").await?;
    let targets = Targets::parse(&nodes_text, &ps_text);
    anyhow::ensure!(
        !targets.procs.is_empty(),
        "the aggregator's ps lists no processes"
    );
    eprintln!(
        "bench load: {} nodes, {} processes listed; {} clients for {:?} ...",
        targets.nodes.len(),
        targets.procs.len(),
        b.clients,
        b.duration
    );

    let t0 = Instant::now();
    let sh = Arc::new(Shared {
        addr: addr.clone(),
        mix: b.mix,
        flapping,
        targets: RwLock::new(Arc::new(targets)),
        t0,
        end: t0 + b.duration,
        killed: OnceLock::new(),
        ops: AtomicU64::new(0),
        errors: Default::default(),
        examples: Mutex::new(vec![Vec::new(); Class::ALL.len()]),
        incomplete_examples: Mutex::new(Vec::new()),
        stop: CancellationToken::new(),
    });
    // Whatever way this function ends, the helper tasks stop.
    let _stop_tasks = sh.stop.clone().drop_guard();
    let cpu0_self = cpu_seconds(std::process::id());
    let cpu0_sims: f64 = sims.0.iter().map(|c| cpu_seconds(c.id())).sum();

    // Refresher: new pids appear, old ones exit.
    let refresher = {
        let sh = sh.clone();
        let mut root = Some(setup);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(REFRESH) => {}
                    _ = sh.stop.cancelled() => return,
                }
                if root.as_ref().is_none_or(|r| r.client().is_closed()) {
                    root = connect(&sh.addr).await.ok();
                }
                let Some(r) = root.as_ref() else { continue };
                if let (Ok(n), Ok(p)) = (read_text(r, "nodes").await, read_text(r, "ps").await) {
                    let t = Targets::parse(&n, &p);
                    if !t.procs.is_empty() {
                        *sys::write(&sh.targets) = Arc::new(t);
                    }
                }
            }
        })
    };

    // Sampler: RSS, CPU, load average; progress; an aggregator that died
    // on its own ends the run.
    let exit_note: Arc<Mutex<Option<String>>> = Arc::default();
    let sampler = {
        let (sh, agg, agg_pid, exit_note) =
            (sh.clone(), agg.clone(), agg_pid.clone(), exit_note.clone());
        let sample = b.sample;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut last_progress = Instant::now();
            let mut tick = tokio::time::interval(sample);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = sh.stop.cancelled() => return samples,
                }
                let pid = agg_pid.load(Ordering::Relaxed);
                let s = Sample {
                    t: sh.t0.elapsed(),
                    pid,
                    rss_kib: if pid == 0 { 0 } else { rss_kib(pid) },
                    cpu_s: if pid == 0 { 0.0 } else { cpu_seconds(pid) },
                    load1: load_average(),
                    machine: machine_ticks(),
                };
                {
                    let mut a = sys::lock(&agg);
                    if let Ok(Some(status)) = a.child.try_wait() {
                        let mut n = sys::lock(&exit_note);
                        *n = Some(format!(
                            "the aggregator exited on its own at {:.1} s: {status}",
                            s.t.as_secs_f64()
                        ));
                        sh.stop.cancel();
                    }
                }
                if last_progress.elapsed() >= PROGRESS {
                    last_progress = Instant::now();
                    let e = |c: Class| sh.errors[c as usize].load(Ordering::Relaxed);
                    eprintln!(
                        "bench load: {:>5.1} s  {} ops  errors: flapping {}, vanished {}, restart {}, unexpected {}  aggregator RSS {:.1} MiB  load {:.2}",
                        s.t.as_secs_f64(),
                        sh.ops.load(Ordering::Relaxed),
                        e(Class::Flapping),
                        e(Class::Vanished),
                        e(Class::Restart),
                        e(Class::Unexpected),
                        s.rss_kib as f64 / 1024.0,
                        s.load1
                    );
                }
                samples.push(s);
            }
        })
    };

    // Restart: SIGKILL and the same command again, same port.
    let restarter = b.restart_at.map(|at| {
        let (sh, agg, agg_pid) = (sh.clone(), agg.clone(), agg_pid.clone());
        let listen = listen.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(sh.t0 + at)) => {}
                _ = sh.stop.cancelled() => return Ok(None),
            }
            let kill = Instant::now();
            let _ = sh.killed.set(kill);
            agg_pid.store(0, Ordering::Relaxed);
            eprintln!(
                "bench load: {:.1} s: SIGKILL to the aggregator, restarting it",
                sh.t0.elapsed().as_secs_f64()
            );
            let pid = {
                let mut a = sys::lock(&agg);
                a.restart()?;
                a.child.id()
            };
            agg_pid.store(pid, Ordering::Relaxed);
            wait_for_port(&listen, Duration::from_secs(60)).await?;
            anyhow::Ok(Some(kill.elapsed()))
        })
    });

    let tasks: Vec<_> = (0..b.clients)
        .map(|i| tokio::spawn(client(i, sh.clone())))
        .collect();
    let mut stats = Vec::new();
    for t in tasks {
        // A client ends at the end of the run; the grace covers one request.
        match tokio::time::timeout(
            sh.end.saturating_duration_since(Instant::now()) + REQUEST_TIMEOUT * 2,
            t,
        )
        .await
        {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) => anyhow::bail!("a client task failed: {e}"),
            Err(_) => anyhow::bail!("a client did not stop at the end of the run"),
        }
    }
    let elapsed = sh
        .t0
        .elapsed()
        .min(b.duration)
        .max(Duration::from_millis(1));
    let cpu_self = cpu_seconds(std::process::id()) - cpu0_self;
    let cpu_sims = sims.0.iter().map(|c| cpu_seconds(c.id())).sum::<f64>() - cpu0_sims;
    let listening_after = match restarter {
        Some(t) => t
            .await
            .context("the restart task failed")?
            .context("cannot restart the aggregator")?,
        None => None,
    };
    sh.stop.cancel();
    let samples = sampler.await.context("the sampler failed")?;
    let _ = refresher.await;

    // The end state of /nodes: every node that never flaps must be up.
    let (up, down, live_not_up) = match connect(&addr).await {
        Ok(r) => match read_text(&r, "nodes").await {
            Ok(t) => node_states(&t, &sh.flapping),
            Err(e) => (0, 0, vec![format!("cannot read /nodes: {e:#}")]),
        },
        Err(e) => (0, 0, vec![format!("cannot attach: {e}")]),
    };
    drop(agg);
    drop(sims);
    let panics: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(EXAMPLES)
        .map(str::to_string)
        .collect();

    let report = build_report(&b, &sh, stats, &samples, elapsed, listening_after);
    let report = LoadReport {
        incomplete_examples: sys::lock(&sh.incomplete_examples).clone(),
        live_nodes_not_up: live_not_up,
        nodes_up_down: (up, down),
        aggregator_exit: sys::lock(&exit_note).clone(),
        panics,
        ..report
    };
    print_report(&b, &report, &samples, elapsed, cpu_self, cpu_sims);
    Ok(report)
}

fn build_report(
    b: &LoadBench,
    sh: &Shared,
    stats: Vec<ClientStats>,
    samples: &[Sample],
    elapsed: Duration,
    listening_after: Option<Duration>,
) -> LoadReport {
    let secs = elapsed.as_secs_f64();
    let mut rows = Vec::new();
    let mut all_ok = Vec::new();
    let mut all_err = [0u64; 4];
    let mut all_bytes = 0u64;
    let row = |name: &str, ok: Vec<Duration>, errs: [u64; 4], bytes: u64| {
        let count = ok.len() as u64 + errs.iter().sum::<u64>();
        let (p50, p99, max) = percentiles(ok);
        OpRow {
            op: name.to_string(),
            count,
            ops_per_s: count as f64 / secs,
            p50_ms: p50 / 1000.0,
            p99_ms: p99 / 1000.0,
            max_ms: max / 1000.0,
            mib: bytes as f64 / (1 << 20) as f64,
            flapping: errs[Class::Flapping as usize],
            vanished: errs[Class::Vanished as usize],
            restart: errs[Class::Restart as usize],
            unexpected: errs[Class::Unexpected as usize],
        }
    };
    for op in Op::ALL {
        let mut ok = Vec::new();
        let mut errs = [0u64; 4];
        let mut bytes = 0;
        for s in &stats {
            let k = &s.kinds[op.index()];
            ok.extend_from_slice(&k.ok);
            for (a, e) in errs.iter_mut().zip(k.errors) {
                *a += e;
            }
            bytes += k.bytes;
        }
        all_ok.extend_from_slice(&ok);
        for (a, e) in all_err.iter_mut().zip(errs) {
            *a += e;
        }
        all_bytes += bytes;
        rows.push(row(op.name(), ok, errs, bytes));
    }
    let mut all = row("all", all_ok, all_err, all_bytes);
    // Failed connects outside a restart are no operation but count here.
    all.unexpected += stats.iter().map(|s| s.connect_unexpected).sum::<u64>();
    rows.push(all);

    let restart = b.restart_at.and_then(|_| {
        let kill = *sh.killed.get()?;
        let mut back: Vec<Duration> = stats.iter().filter_map(|s| s.back_after).collect();
        back.sort();
        let mut again: Vec<Duration> = stats.iter().filter_map(|s| s.reattached_after).collect();
        again.sort();
        let mut kinds: HashMap<&str, u64> = HashMap::new();
        for s in &stats {
            for (k, n) in &s.restart_kinds {
                *kinds.entry(k).or_default() += n;
            }
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        Some(RestartReport {
            killed_at: kill.duration_since(sh.t0),
            listening_after,
            failed_ops: stats
                .iter()
                .map(|s| {
                    s.kinds
                        .iter()
                        .map(|k| k.errors[Class::Restart as usize])
                        .sum::<u64>()
                })
                .sum(),
            in_flight_failed_within: stats.iter().filter_map(|s| s.in_flight_failed_after).max(),
            failure_kinds: kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            reconnect_failures: stats.iter().map(|s| s.reconnect_failures).sum(),
            reattached: (
                again.get(again.len() / 2).copied(),
                (again.len() == stats.len())
                    .then(|| again.last().copied())
                    .flatten(),
            ),
            clients_back: back.len(),
            back_p50: back.get(back.len() / 2).copied(),
            all_back_after: (back.len() == stats.len())
                .then(|| back.last().copied())
                .flatten(),
        })
    });
    let examples = sys::lock(&sh.examples);
    LoadReport {
        ops: rows,
        examples: Class::ALL
            .iter()
            .map(|c| (c.name().to_string(), examples[*c as usize].clone()))
            .collect(),
        incomplete_tables: stats.iter().map(|s| s.incomplete_tables).sum(),
        missing_tables: stats.iter().map(|s| s.missing_tables).sum(),
        pending_tables: stats.iter().map(|s| s.pending_tables).sum(),
        node_ops_split: [0, 1].map(|i| {
            let v: Vec<Duration> = stats.iter().flat_map(|s| s.node_ok[i].clone()).collect();
            let (a, b, c) = percentiles(v);
            (a / 1000.0, b / 1000.0, c / 1000.0)
        }),
        incomplete_examples: Vec::new(),
        rss: samples.iter().map(|s| (s.t, s.rss_kib)).collect(),
        live_nodes_not_up: Vec::new(),
        nodes_up_down: (0, 0),
        aggregator_exit: None,
        panics: Vec::new(),
        restart,
    }
}

fn print_report(
    b: &LoadBench,
    r: &LoadReport,
    samples: &[Sample],
    elapsed: Duration,
    cpu_self: f64,
    cpu_sims: f64,
) {
    println!(
        "\nLoad: {} nodes x {} processes ({:.0}% flapping, die period {}, churn {}/min per node), \
         {} clients for {:.1} s{}; aggregator `gproc serve` in its own process. \
         Latencies of successful operations, ms:\n",
        b.nodes,
        b.procs_per_node,
        b.flap * 100.0,
        humantime::format_duration(b.die_period),
        b.churn,
        b.clients,
        elapsed.as_secs_f64(),
        b.restart_at
            .map(|t| format!(
                ", aggregator killed and restarted at {}",
                humantime::format_duration(t)
            ))
            .unwrap_or_default(),
    );
    let rows: Vec<Vec<String>> = r
        .ops
        .iter()
        .map(|o| {
            let share = Op::ALL
                .iter()
                .find(|x| x.name() == o.op)
                .map_or("100%".to_string(), |x| {
                    format!(
                        "{:.1}%",
                        b.mix.weight(*x) as f64 * 100.0 / b.mix.total() as f64
                    )
                });
            vec![
                o.op.clone(),
                share,
                o.count.to_string(),
                format!("{:.0}", o.ops_per_s),
                format!("{:.1}", o.p50_ms),
                format!("{:.1}", o.p99_ms),
                format!("{:.0}", o.max_ms),
                format!("{:.1}", o.mib),
                o.flapping.to_string(),
                o.vanished.to_string(),
                o.restart.to_string(),
                o.unexpected.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "operation",
            "mix",
            "ops",
            "ops/s",
            "p50",
            "p99",
            "max",
            "MiB read",
            "err: flapping node",
            "err: vanished pid",
            "err: restart",
            "err: unexpected",
        ],
        &rows,
    );
    println!();
    for (class, ex) in &r.examples {
        if ex.is_empty() {
            continue;
        }
        println!("Examples, {class}:");
        for e in ex {
            println!("  {e}");
        }
    }
    let [live, flap] = r.node_ops_split;
    println!(
        "Successful operations on one node, p50/p99/max ms: nodes that never flap \
         {:.1}/{:.1}/{:.0}, flapping nodes {:.1}/{:.1}/{:.0}",
        live.0, live.1, live.2, flap.0, flap.1, flap.2
    );
    println!(
        "Tables (ps, load) that left out a live node or served its rows stale: {} \
         (that left out a live node, `# missing`: {})",
        r.incomplete_tables, r.missing_tables
    );
    for e in &r.incomplete_examples {
        println!("  {e}");
    }
    println!(
        "Tables (ps, load) that said a live node was pending (up, its data not yet in): {}",
        r.pending_tables
    );
    println!(
        "/nodes at the end: {} up, {} down; nodes that never flap and are not up: {}",
        r.nodes_up_down.0,
        r.nodes_up_down.1,
        r.live_nodes_not_up.len()
    );
    for l in r.live_nodes_not_up.iter().take(EXAMPLES) {
        println!("  {l}");
    }
    if let Some(e) = &r.aggregator_exit {
        println!("PROBLEM: {e}");
    }
    for p in &r.panics {
        println!("PROBLEM: aggregator log: {p}");
    }

    // RSS over time.
    let every = ((SHOW_EVERY.as_secs_f64() / b.sample.as_secs_f64()).round() as usize).max(1);
    println!(
        "\nAggregator over time (sampled every {}, shown every {}; CPU %: the aggregator's, of one core; machine busy %: all cores; both since the previous row):\n",
        humantime::format_duration(b.sample),
        humantime::format_duration(b.sample * every as u32)
    );
    let mut shown: Vec<&Sample> = samples.iter().step_by(every).collect();
    if let Some(last) = samples.last()
        && shown.last().is_none_or(|s| !std::ptr::eq(*s, last))
    {
        shown.push(last);
    }
    let mut rows = Vec::new();
    let mut prev: Option<&Sample> = None;
    for s in shown {
        let cpu = match prev {
            Some(p) if p.pid == s.pid && s.pid != 0 && s.t > p.t => format!(
                "{:.0}",
                (s.cpu_s - p.cpu_s) * 100.0 / (s.t - p.t).as_secs_f64()
            ),
            _ => "-".into(),
        };
        rows.push(vec![
            format!("{:.0}", s.t.as_secs_f64()),
            if s.pid == 0 {
                "(restarting)".into()
            } else {
                format!("{:.1}", s.rss_kib as f64 / 1024.0)
            },
            cpu,
            prev.and_then(|p| busy_pct(p.machine, s.machine))
                .map_or("-".into(), |b| format!("{b:.0}")),
            format!("{:.2}", s.load1),
        ]);
        prev = Some(s);
    }
    print_table(
        &["t s", "RSS MiB", "CPU %", "machine busy %", "load avg"],
        &rows,
    );
    let mib = |k: u64| k as f64 / 1024.0;
    let rss: Vec<u64> = samples
        .iter()
        .filter(|s| s.pid != 0 && s.rss_kib > 0)
        .map(|s| s.rss_kib)
        .collect();
    if let (Some(first), Some(last), Some(min), Some(max)) =
        (rss.first(), rss.last(), rss.iter().min(), rss.iter().max())
    {
        println!(
            "\nAggregator RSS MiB: first {:.1}, min {:.1}, max {:.1}, last {:.1} ({} samples)",
            mib(*first),
            mib(*min),
            mib(*max),
            mib(*last),
            rss.len()
        );
    }
    // Flat or not: the two halves of the run, after the first 10 s.
    let half = |from: f64, to: f64| {
        let v: Vec<u64> = samples
            .iter()
            .filter(|s| s.pid != 0 && s.rss_kib > 0)
            .filter(|s| (from..to).contains(&s.t.as_secs_f64()))
            .map(|s| s.rss_kib)
            .collect();
        (v.iter().min().copied(), v.iter().max().copied())
    };
    let secs = elapsed.as_secs_f64();
    if secs > 20.0 && b.restart_at.is_none() {
        let mid = 10.0 + (secs - 10.0) / 2.0;
        if let ((Some(a0), Some(a1)), (Some(b0), Some(b1))) =
            (half(10.0, mid), half(mid, secs + 1.0))
        {
            println!(
                "RSS MiB, {:.0}-{:.0} s: {:.1}..{:.1}; {:.0}-{:.0} s: {:.1}..{:.1}",
                10.0,
                mid,
                mib(a0),
                mib(a1),
                mid,
                secs,
                mib(b0),
                mib(b1)
            );
        }
    }
    let loads: Vec<f64> = samples.iter().map(|s| s.load1).collect();
    let lmin = loads.iter().copied().fold(f64::INFINITY, f64::min);
    let lmax = loads.iter().copied().fold(0.0, f64::max);
    let agg_cpu: f64 = samples
        .windows(2)
        .filter(|w| w[0].pid == w[1].pid && w[0].pid != 0)
        .map(|w| (w[1].cpu_s - w[0].cpu_s).max(0.0))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (m0, m1) = (
        samples.first().map_or((0, 0), |s| s.machine),
        samples.last().map_or((0, 0), |s| s.machine),
    );
    let machine_s = m1.0.saturating_sub(m0.0) as f64 / tck;
    println!(
        "CPU seconds during the run: aggregator {agg_cpu:.1}, simulators {cpu_sims:.1}, \
         this process (the clients) {cpu_self:.1}; the whole machine {machine_s:.1} \
         (busy {}%); load average (1 min) {:.2}..{:.2}",
        busy_pct(m0, m1).map_or("-".into(), |b| format!("{b:.0}")),
        if lmin.is_finite() { lmin } else { 0.0 },
        lmax
    );

    if let Some(x) = &r.restart {
        println!("\nRestart (SIGKILL, then `gproc serve` again on the same port):\n");
        let opt = |d: Option<Duration>| d.map_or("-".to_string(), ms);
        print_table(
            &[
                "killed at s",
                "listening again after ms",
                "ops failed",
                "in-flight ops failed within ms",
                "failures by kind",
                "refused reconnects",
                "attached again p50/max ms",
                "clients back",
                "first success p50 ms",
                "all clients succeeded after ms",
            ],
            &[vec![
                format!("{:.1}", x.killed_at.as_secs_f64()),
                opt(x.listening_after),
                x.failed_ops.to_string(),
                opt(x.in_flight_failed_within),
                if x.failure_kinds.is_empty() {
                    "-".into()
                } else {
                    x.failure_kinds.clone()
                },
                x.reconnect_failures.to_string(),
                format!("{}/{}", opt(x.reattached.0), opt(x.reattached.1)),
                format!("{}/{}", x.clients_back, b.clients),
                opt(x.back_p50),
                opt(x.all_back_after),
            ]],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_the_tables() {
        let nodes = "NODE STATE ADDRESS DIALECT RTT_MS LAST_CONTACT ERROR\n\
                     a1 up 127.0.0.1:1 9P2000.L - - -\na2 down 127.0.0.2:1 9P2000.L - - refused\n";
        let ps = "NODE PID PPID USER STAT %CPU %MEM RSS VSZ START TIME THR COMMAND\n\
                  a1 1 0 root S 0 0 1 1 0 0 1 init\na2 7 1 root S 0 0 1 1 0 0 1 x y\n\
                  zz 9 1 root S 0 0 1 1 0 0 1 unknown node\n# missing a2: down\n";
        let t = Targets::parse(nodes, ps);
        assert_eq!(t.nodes, ["a1", "a2"]);
        assert_eq!(t.procs, [(0, 1), (1, 7)]);
        let flap: HashSet<String> = ["a2".to_string()].into();
        let (up, down, live) = node_states(nodes, &flap);
        assert_eq!((up, down, live.len()), (1, 1, 0));
    }

    #[test]
    fn flapping_nodes_come_from_the_sim_config() {
        let t = "[[nodes]]\nnames = \"s0n0001\"\naddress = \"x:1\"\n\n\
                 [[nodes]]\nnames = \"s0n0002\"  # fault: die\naddress = \"x:2\"\n\
                 [[nodes]]\nnames = \"s0n0003\"  # fault: slow\naddress = \"x:3\"\n";
        let f = flapping_nodes(t);
        assert_eq!(f.len(), 1);
        assert!(f.contains("s0n0002"));
    }

    #[test]
    fn comment_lines_are_found_across_chunks() {
        let tail: VecDeque<Bytes> = [
            &b"# not a note\na 1\nb 2\n# mis"[..],
            b"sing n7: gone\n# other\n# stale n8: 3s old\n",
        ]
        .into_iter()
        .map(Bytes::from_static)
        .collect();
        let out = trailing_comments(&tail);
        assert_eq!(out, ["# missing n7: gone", "# stale n8: 3s old"]);
        assert_eq!(comment_node(&out[0]), "n7");
        assert_eq!(comment_node("# other"), "");
    }

    /// The 16-of-64 clients after a restart: every client (and the
    /// target refresher) attaches as root, so root's share of connections
    /// must hold them all.
    #[test]
    fn the_aggregator_config_lets_every_client_attach_as_root() {
        let nodes = "[[nodes]]\nnames = \"s0n0001\"\naddress = \"127.0.0.1:1\"\n";
        for clients in [1, 64, 500] {
            let text = aggregator_config("127.0.0.1:9", clients, nodes);
            let c = Config::from_str(&text, "load.toml").unwrap();
            let per_user = c.server.max_connections_per_user as usize;
            assert!(per_user > clients, "{clients} clients, per user {per_user}");
            assert!(c.server.max_connections as usize > clients);
        }
    }

    #[test]
    fn the_mix_follows_the_weights() {
        let mut r = Rng::new(&[3]);
        let mix = Mix::default();
        assert_eq!(mix.total(), 1000);
        let mut n = [0u32; 8];
        for _ in 0..100_000 {
            n[mix.pick(&mut r).index()] += 1;
        }
        for o in Op::ALL {
            let want = mix.weight(o) as f64 * 100.0;
            assert!((f64::from(n[o.index()]) - want).abs() < want * 0.1 + 50.0);
        }
        let m: Mix = "ps=0, maps=300".parse().unwrap();
        assert_eq!((m.weight(Op::Ps), m.weight(Op::Maps)), (0, 300));
        assert_eq!(m.weight(Op::Status), 450);
        assert!("pss=1".parse::<Mix>().is_err());
        assert!("ps".parse::<Mix>().is_err());
    }
}

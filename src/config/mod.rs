//! The gproc configuration: TOML schema, defaults, and validation that names
//! the line and column of every error at once.
//!
//! [`Config::from_str`] / [`Config::load`] turn a file into a resolved
//! [`Config`]: hostlists expanded into one [`NodeSpec`] per node, addresses
//! parsed, durations and sizes converted, cache globs compiled, and every
//! problem reported as a [`Diagnostic`] (`gproc.toml:12:9: cache.rule[1].ttl:
//! invalid duration "2x": ...`). `config/gproc.toml` documents every key.
//!
//! Pure code: no sockets, no name resolution, no clock. It depends on nothing
//! else in the crate, so every other module may depend on it.
//!
//! # Layout
//!
//! - [`hostlist`]: Slurm/pdsh hostlists (`n[0001-2000]`), expansion,
//!   membership, compression.
//! - [`units`]: durations, TTLs (`never`), byte sizes.
//! - [`endpoint`]: `host:port` / `unix:/path` addresses and `{name}` templates.
//! - [`cache`]: the cache policy, its rules and the built-in defaults.
//! - [`views`]: admins and allotments.
//! - `diag`: diagnostics with positions; `raw`: the serde schema;
//!   `resolve`: raw schema to [`Config`].

pub mod cache;
mod diag;
pub mod endpoint;
pub mod hostlist;
mod raw;
mod resolve;
pub mod units;
pub mod views;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::{CacheDecision, CachePolicy, CacheRule};
pub use diag::{ConfigErrors, Diagnostic, Pos};
pub use endpoint::{Endpoint, NodeAddr};
pub use hostlist::{Hostlist, HostlistError};
pub use units::{ByteSize, Ttl, UnitError};
pub use views::{AllotCommand, Allotment, Ident, Principal, Unallotted, ViewsConfig, ViewsMode};

/// Top-level names of the merged tree that a node may not take, because
/// the aggregator serves its own files there. Names starting with `.` are
/// reserved too (see [`check_node_name`]).
pub const RESERVED_NAMES: &[&str] = &[
    "nodes", "ps", "load", "pid", "stats", "metrics", "jobs", "job", "top",
];

/// Where the aggregator listens when `server.listen` is absent: the Unix
/// socket only, where the peer's uid is a real identity.
pub const DEFAULT_LISTEN: &str = "unix:/run/gproc/gproc.sock";

/// Smallest msize accepted: Linux v9fs refuses less than 4096.
pub const MIN_MSIZE: u32 = 4096;
/// Largest msize accepted; more only costs memory per connection.
pub const MAX_MSIZE: u32 = 16 << 20;
/// Default msize, the Linux v9fs default since 5.15.
pub const DEFAULT_MSIZE: u32 = 512 << 10;

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file name it came from, for messages.
    pub origin: String,
    /// `[server]`: what the aggregator serves on.
    pub server: ServerConfig,
    /// `[pool]`: how the aggregator talks to nodes.
    pub pool: PoolConfig,
    /// One entry per `[[nodes]]` table, in file order.
    pub groups: Vec<NodeGroup>,
    /// Every node, expanded, in file and hostlist order; names are unique.
    pub nodes: Vec<NodeSpec>,
    /// `[cache]`.
    pub cache: CachePolicy,
    /// `[views]`.
    pub views: ViewsConfig,
    /// `[metrics]`.
    pub metrics: MetricsConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// Things that are legal but probably not meant (e.g. a TCP listener
    /// with `auth = "none"`); `gproc config check` prints them.
    pub warnings: Vec<Diagnostic>,
}

/// `[server]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses to listen on.
    pub listen: Vec<Endpoint>,
    /// How TCP attaches authenticate; `None` when not configured, in which
    /// case unauthenticated TCP attaches are refused (Unix sockets use the
    /// peer's credentials either way).
    pub auth: Option<AuthMode>,
    /// Permission bits of Unix sockets created by the server.
    pub socket_mode: u32,
    /// Concurrent client connections; more wait in the accept backlog.
    pub max_connections: u32,
    /// Connections one user may hold (a TCP address until its attach
    /// proves a uid); by default an eighth of `max_connections`. Service
    /// users keep another eighth.
    pub max_connections_per_user: u32,
    /// A connection that has not attached by then is closed.
    pub attach_timeout: Duration,
    /// Bytes the snapshots of open files may hold, all clients together.
    pub snapshot_bytes: ByteSize,
    /// Of those, what one user may hold.
    pub snapshot_bytes_per_user: ByteSize,
    /// Largest 9P message size offered to clients.
    pub msize: u32,
    /// This aggregator's name: the receiver a MUNGE credential must be
    /// addressed to, and the source named in the merged summary it serves
    /// to an aggregator above it. `None`: the host name.
    pub name: Option<String>,
    /// Users besides root that may name other users in their attaches
    /// (the service identity of an aggregator above this one): they are
    /// administrators here, since they could name root anyway.
    pub service_users: Vec<Ident>,
    /// Worker threads of the aggregator's runtime; `None`: one per
    /// [`crate::sys::NODES_PER_WORKER`] nodes ([`Config::worker_threads`]).
    pub threads: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![Endpoint::Unix(PathBuf::from(
                DEFAULT_LISTEN.trim_start_matches("unix:"),
            ))],
            auth: None,
            socket_mode: 0o666,
            max_connections: 4096,
            max_connections_per_user: 512,
            attach_timeout: Duration::from_secs(10),
            snapshot_bytes: ByteSize(1 << 30),
            snapshot_bytes_per_user: ByteSize(128 << 20),
            msize: DEFAULT_MSIZE,
            name: None,
            service_users: Vec::new(),
            threads: None,
        }
    }
}

/// `[metrics]`, resolved: the HTTP listener for Prometheus scrapers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to answer `GET /metrics` over HTTP; `None` (the default): no
    /// listener. It is unauthenticated and serves what an administrator
    /// sees in `/metrics` (the per-node numbers of every node, the
    /// aggregator's counters, never a process), so the config check warns
    /// when it is not a loopback address.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[control]`, resolved: signalling processes through `ctl` files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlConfig {
    /// Whether process directories have a `ctl` file (off by default: the
    /// tree is read-only). Each signal goes to the node as the writer's own
    /// uid, administrators included, so the node's kernel decides.
    pub enabled: bool,
    /// The signals users who are not gproc administrators may send, by
    /// number; `None`: any. A site that wants users to only stop, continue
    /// and end their processes lists those.
    pub user_signals: Option<Vec<i32>>,
    /// Signals one user who is not a gproc administrator may send per
    /// minute through this aggregator (every node together); `None`: no
    /// limit. Past it a write fails with EAGAIN until the minute frees up.
    pub user_signals_per_minute: Option<u32>,
}

/// How TCP clients prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: every TCP client is trusted. Trusted networks only.
    None,
    /// MUNGE credentials, the HPC standard.
    Munge,
    /// A shared secret read from this file.
    Key(PathBuf),
}

/// `[pool]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Requests outstanding to all nodes together; bounds aggregator memory
    /// and the burst a cluster-wide `ls` sends.
    pub max_in_flight: usize,
    /// Requests outstanding to one node, so one slow node cannot take the
    /// whole budget.
    pub max_in_flight_per_node: usize,
    /// Requests of one user outstanding to one node (and a quarter of
    /// `max_in_flight` on all nodes); users together get three quarters of
    /// either bound, the rest is kept for the service identity (tables,
    /// summaries, admins' reads).
    pub max_in_flight_per_user: usize,
    /// Time limit for one request to one node.
    pub request_timeout: Duration,
    /// Time limit for a cluster-wide fan-out (`/ps`, `/load`): nodes that
    /// have not answered by then are left out and reported slow.
    pub deadline: Duration,
    /// Time limit for connecting and the version/attach handshake.
    pub connect_timeout: Duration,
    /// First retry delay after a node is lost; doubles up to the max.
    pub reconnect_min: Duration,
    /// Longest retry delay.
    pub reconnect_max: Duration,
    /// When to connect.
    pub connect: ConnectMode,
    /// Connects in progress at once, so a restart does not open thousands
    /// of connections in the same millisecond.
    pub connect_concurrency: usize,
    /// Largest 9P message size asked of nodes.
    pub msize: u32,
}

/// The `[pool]` defaults, which are also the node pool's
/// ([`crate::client::pool::PoolOptions`]): written here only.
impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_in_flight_per_node: 16,
            max_in_flight_per_user: 4,
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            connect: ConnectMode::Lazy,
            connect_concurrency: 64,
            msize: DEFAULT_MSIZE,
        }
    }
}

/// When the pool opens node connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectMode {
    /// On first use: cheap for big clusters where most nodes are rarely read.
    #[default]
    Lazy,
    /// At start, in stages of `connect_concurrency`: `/nodes` is accurate
    /// from the first read.
    Eager,
}

/// The 9P dialect to speak to a node: the codec's own type.
pub use crate::proto::Dialect;

/// One `[[nodes]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    /// The hostlist as written.
    pub names: Hostlist,
    /// The address template as written.
    pub address: String,
    /// How many nodes it expanded to.
    pub count: usize,
}

/// One node the aggregator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// The node's name: its directory in the merged tree.
    pub name: String,
    /// Where to dial it.
    pub address: NodeAddr,
    /// The attach name (`aname`) of the node's export.
    pub aname: String,
    /// The dialect to speak, or `None` to negotiate (9P2000.L first).
    pub dialect: Option<Dialect>,
    /// The user name to attach as.
    pub uname: String,
    /// The numeric uid to attach as (9P2000.u/.L `n_uname`).
    pub uid: u32,
    /// Authenticate with MUNGE (`auth = "munge"`): only such nodes ever
    /// receive a credential, and it names the node.
    pub munge: bool,
    /// Index into [`Config::groups`].
    pub group: usize,
}

/// Default attach name: the node's `/proc` export on diod.
pub const DEFAULT_ANAME: &str = "/proc";
/// Default user to attach as: the aggregator needs to read every process.
pub const DEFAULT_UNAME: &str = "root";

/// Checks a node name: it becomes a directory of the merged tree, so it
/// must be one path component that does not collide with the aggregator's
/// own files.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty node name".to_string());
    }
    if name.starts_with('.') {
        return Err(format!(
            "node name {name:?} starts with '.': those names are reserved for the aggregator"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "node name {name:?} is reserved: the aggregator serves /{name} itself (reserved: {})",
            RESERVED_NAMES.join(", ")
        ));
    }
    if let Some(c) = name.chars().find(|&c| {
        c == '/'
            || c == '@'
            || c == '['
            || c == ']'
            || c == ','
            || c.is_whitespace()
            || c.is_control()
    }) {
        let why = match c {
            '/' => "it would not be one path component",
            '@' => "'@' separates pid and node in /pid/<pid>@<node>",
            _ => "node names must be plain host names",
        };
        return Err(format!("node name {name:?} contains {c:?}: {why}"));
    }
    if name.len() > 255 {
        return Err(format!("node name {name:?} is longer than 255 bytes"));
    }
    Ok(())
}

impl Default for Config {
    /// No nodes, and the documented default for everything else.
    fn default() -> Self {
        Self {
            origin: "<default>".to_string(),
            server: ServerConfig::default(),
            pool: PoolConfig::default(),
            groups: Vec::new(),
            nodes: Vec::new(),
            cache: CachePolicy::default(),
            views: ViewsConfig::default(),
            metrics: MetricsConfig::default(),
            control: ControlConfig::default(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// Parses and validates a configuration. `origin` names the text in
    /// messages (usually the file name).
    ///
    /// # Errors
    /// Every problem found, each with its line and column where it has one.
    pub fn from_str(text: &str, origin: &str) -> Result<Self, ConfigErrors> {
        let mut diags = diag::Diags::new(origin, text);
        let config = raw::parse(text, &mut diags)
            .map(|(raw, pruned)| resolve::resolve(raw, &pruned, origin, &mut diags));
        let mut errors = std::mem::take(&mut diags.errors);
        let mut warnings = std::mem::take(&mut diags.warnings);
        diag::sort(&mut errors);
        diag::sort(&mut warnings);
        match config {
            Some(mut c) if errors.is_empty() => {
                c.warnings = warnings;
                Ok(c)
            }
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Worker threads for the aggregator's runtime: `[server] threads`,
    /// or one per [`crate::sys::NODES_PER_WORKER`] nodes.
    pub fn worker_threads(&self) -> usize {
        self.server.threads.map_or_else(
            || crate::sys::workers_for_nodes(self.nodes.len()),
            |n| n as usize,
        )
    }

    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// The read error, or every problem in the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigErrors> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_str(&text, &origin),
            Err(e) => Err(ConfigErrors(vec![Diagnostic {
                origin,
                pos: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])),
        }
    }

    /// The node called `name`, if configured.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// What `gproc config check` prints about a valid configuration.
    pub fn summary(&self) -> Summary {
        Summary {
            origin: self.origin.clone(),
            nodes: self.nodes.len(),
            groups: self.groups.len(),
            node_list: hostlist::compress(self.nodes.iter().map(|n| n.name.as_str())),
            cache_rules: self.cache.user_rule_count(),
            builtin_rules: self.cache.rules.len() - self.cache.user_rule_count(),
            listen: self.server.listen.clone(),
            metrics: self.metrics.listen,
            warnings: self.warnings.clone(),
        }
    }
}

/// A short account of a valid configuration, for `gproc config check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The file name.
    pub origin: String,
    /// Number of nodes after expansion.
    pub nodes: usize,
    /// Number of `[[nodes]]` tables.
    pub groups: usize,
    /// All node names as one compressed hostlist.
    pub node_list: String,
    /// Rules written in the file.
    pub cache_rules: usize,
    /// Built-in rules in effect after them.
    pub builtin_rules: usize,
    /// Listen addresses.
    pub listen: Vec<Endpoint>,
    /// The metrics listener's address, if any.
    pub metrics: Option<std::net::SocketAddr>,
    /// Warnings to show the admin.
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &str, many: &str| {
            if n == 1 {
                format!("{n} {one}")
            } else {
                format!("{n} {many}")
            }
        };
        writeln!(f, "{}: OK", self.origin)?;
        writeln!(
            f,
            "  {} in {}: {}",
            plural(self.nodes, "node", "nodes"),
            plural(self.groups, "group", "groups"),
            self.node_list
        )?;
        writeln!(
            f,
            "  {} (+{} built-in)",
            plural(self.cache_rules, "cache rule", "cache rules"),
            self.builtin_rules
        )?;
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        writeln!(f, "  listen: {}", listen.join(", "))?;
        if let Some(m) = self.metrics {
            writeln!(f, "  metrics: http://{m}/metrics (unauthenticated)")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Validates a file for `gproc config check`.
///
/// # Errors
/// Every problem in the file, each with its position.
pub fn check_file(path: impl AsRef<Path>) -> Result<Summary, ConfigErrors> {
    Config::load(path).map(|c| c.summary())
}

#[cfg(test)]
mod tests;

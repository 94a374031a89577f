//! Raw schema to [`Config`]: parse every value, apply defaults, and check
//! what spans several keys (duplicates, required keys, bounds), recording
//! every problem rather than stopping at the first.
//!
//! A value that fails keeps its default so that checks further down still
//! run (and report their own problems) on something sensible.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::cache::{self, CachePolicy, CacheRule};
use super::diag::Diags;
use super::endpoint::{self, Endpoint};
use super::hostlist::{self, Hostlist};
use super::raw::{
    OneOrMany, RawAllot, RawCache, RawConfig, RawControl, RawMetrics, RawNodes, RawPool, RawServer,
    RawViews, Scalar,
};
use super::units::{self, ByteSize, Ttl};
use super::views::{AllotCommand, Allotment, Ident, Principal, Unallotted, ViewsConfig, ViewsMode};
use super::{
    AuthMode, Config, ConnectMode, ControlConfig, DEFAULT_ANAME, DEFAULT_UNAME, Dialect, MAX_MSIZE,
    MIN_MSIZE, MetricsConfig, NodeGroup, NodeSpec, PoolConfig, ServerConfig, check_node_name,
};

/// How many individual bad names to report per `[[nodes]]` table before
/// summarising: `n[1-2000]` with a bad prefix is one mistake, not 2000.
const MAX_NAME_ERRORS: usize = 3;

/// The resolver's state: where to report, and which keys were already
/// deleted by the shape check (so they are not also "missing").
struct Cx<'d, 'a> {
    d: &'d mut Diags<'a>,
    pruned: &'d HashSet<String>,
}

impl Cx<'_, '_> {
    fn error(&mut self, span: Option<Range<usize>>, key: &str, msg: impl Into<String>) {
        self.d.error(span, key, msg);
    }

    fn warn(&mut self, span: Option<Range<usize>>, key: &str, msg: impl Into<String>) {
        self.d.warn(span, key, msg);
    }

    /// Reports a missing required key, unless it was deleted for an error.
    fn missing(&mut self, span: Range<usize>, key: &str, what: &str) {
        if !self.pruned.contains(key) {
            self.d.error(Some(span), key, format!("missing: {what}"));
        }
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match units::parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.error(
                    Some(v.span()),
                    key,
                    format!("{:?} is zero: must be longer", v.get_ref()),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(Some(v.span()), key, e.0);
                default
            }
        }
    }

    fn ttl(&mut self, v: &Spanned<String>, key: &str, default: Ttl) -> Ttl {
        Ttl::parse(v.get_ref()).unwrap_or_else(|e| {
            self.error(Some(v.span()), key, e.0);
            default
        })
    }

    fn size(&mut self, v: &Option<Spanned<Scalar>>, key: &str, default: ByteSize) -> ByteSize {
        let Some(v) = v else { return default };
        let parsed = match v.get_ref() {
            Scalar::Int(n) => u64::try_from(*n)
                .map(ByteSize)
                .map_err(|_| format!("invalid size {n}: must not be negative")),
            Scalar::Str(s) => ByteSize::parse(s).map_err(|e| e.0),
            other => Err(format!(
                "invalid type: {}, expected a size such as \"256MiB\" or an integer number of bytes",
                other.type_name()
            )),
        };
        parsed.unwrap_or_else(|e| {
            self.error(Some(v.span()), key, e);
            default
        })
    }

    fn msize(&mut self, v: &Option<Spanned<Scalar>>, key: &str, default: u32) -> u32 {
        let size = self.size(v, key, ByteSize(u64::from(default)));
        match u32::try_from(size.0) {
            Ok(m) if (MIN_MSIZE..=MAX_MSIZE).contains(&m) => m,
            _ => {
                let span = v.as_ref().map(Spanned::span);
                self.error(
                    span,
                    key,
                    format!(
                        "msize {size} is out of range: expected {} to {}",
                        ByteSize(u64::from(MIN_MSIZE)),
                        ByteSize(u64::from(MAX_MSIZE))
                    ),
                );
                default
            }
        }
    }

    fn int(&mut self, v: &Option<Spanned<i64>>, key: &str, default: u64, range: Range<u64>) -> u64 {
        let Some(v) = v else { return default };
        match u64::try_from(*v.get_ref()) {
            Ok(n) if range.contains(&n) => n,
            _ => {
                self.error(
                    Some(v.span()),
                    key,
                    format!(
                        "{} is out of range: expected {} to {}",
                        v.get_ref(),
                        range.start,
                        range.end - 1
                    ),
                );
                default
            }
        }
    }

    /// A list of strings (or a single string), each with its key and span.
    fn strings(
        &mut self,
        v: &Spanned<OneOrMany>,
        key: &str,
    ) -> Vec<(String, Range<usize>, String)> {
        let many = matches!(v.get_ref(), OneOrMany::Many(_));
        let mut out = Vec::new();
        for (i, item) in v.get_ref().items(v.span()).into_iter().enumerate() {
            let k = if many {
                format!("{key}[{i}]")
            } else {
                key.to_string()
            };
            match item.get_ref() {
                Scalar::Str(s) => out.push((s.clone(), item.span(), k)),
                other => self.error(
                    Some(item.span()),
                    &k,
                    format!("invalid type: {}, expected a string", other.type_name()),
                ),
            }
        }
        out
    }
}

pub(crate) fn resolve(
    raw: RawConfig,
    pruned: &HashSet<String>,
    origin: &str,
    d: &mut Diags<'_>,
) -> Config {
    let mut cx = Cx { d, pruned };
    let server = raw
        .server
        .map(|s| server(&mut cx, s.get_ref()))
        .unwrap_or_default();
    let pool = raw
        .pool
        .map(|p| pool(&mut cx, p.get_ref()))
        .unwrap_or_default();
    let (groups, nodes) = nodes(&mut cx, raw.nodes.as_deref().unwrap_or_default());
    let cache = raw
        .cache
        .map(|c| cache(&mut cx, c.get_ref()))
        .unwrap_or_default();
    let views = raw
        .views
        .map(|v| views(&mut cx, v.get_ref(), &nodes, &server))
        .unwrap_or_default();
    let metrics = raw
        .metrics
        .map(|m| metrics(&mut cx, m.get_ref(), &server))
        .unwrap_or_default();
    let control = raw
        .control
        .map(|c| control(&mut cx, c.get_ref(), c.span()))
        .unwrap_or_default();
    Config {
        origin: origin.to_string(),
        server,
        pool,
        groups,
        nodes,
        cache,
        views,
        metrics,
        control,
        warnings: Vec::new(),
    }
}

/// `[control]`: whether `ctl` files exist, and which signals users who are
/// not administrators may send (names as `signal NAME` takes them, or
/// numbers).
fn control(cx: &mut Cx<'_, '_>, raw: &RawControl, span: std::ops::Range<usize>) -> ControlConfig {
    let enabled = raw.enabled.as_ref().is_some_and(|e| *e.get_ref());
    let user_signals = raw.user_signals.as_ref().map(|l| {
        let mut out = Vec::new();
        for item in l.get_ref().items(l.span()) {
            let n = match item.get_ref() {
                Scalar::Str(s) => crate::format::ctl::signal_number(s),
                Scalar::Int(i) => i32::try_from(*i)
                    .ok()
                    .and_then(|n| crate::format::ctl::signal_number(&n.to_string())),
                Scalar::Other(_) => None,
            };
            match n {
                Some(n) if !out.contains(&n) => out.push(n),
                Some(_) => {}
                None => {
                    let shown = match item.get_ref() {
                        Scalar::Str(s) => format!("{s:?}"),
                        Scalar::Int(i) => i.to_string(),
                        Scalar::Other(t) => (*t).to_string(),
                    };
                    cx.error(
                        Some(item.span()),
                        "control.user_signals",
                        format!(
                            "{shown} is not a signal: write names such as \"TERM\", \"STOP\", \"CONT\", \"KILL\" or numbers 1-31, 34-64"
                        ),
                    )
                }
            }
        }
        out
    });
    if !enabled && raw.user_signals.is_some() {
        cx.warn(
            Some(span),
            "control",
            "user_signals is set but enabled is not true: there are no ctl files".to_string(),
        );
    }
    let user_signals_per_minute = raw.user_signals_per_minute.as_ref().map(|_| {
        cx.int(
            &raw.user_signals_per_minute,
            "control.user_signals_per_minute",
            0,
            1..1_000_001,
        ) as u32
    });
    ControlConfig {
        enabled,
        user_signals,
        user_signals_per_minute,
    }
}

/// `[metrics]`: an `IP:PORT` for the scrape listener, which must not be a
/// 9P listen address, warned about when not loopback (it is
/// unauthenticated).
fn metrics(cx: &mut Cx<'_, '_>, raw: &RawMetrics, server: &ServerConfig) -> MetricsConfig {
    let Some(l) = &raw.listen else {
        return MetricsConfig::default();
    };
    let key = "metrics.listen";
    let addr = match l.get_ref().parse::<std::net::SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            cx.error(
                Some(l.span()),
                key,
                format!(
                    "{:?} is not an IP:PORT address: expected e.g. \"127.0.0.1:9464\" or \"[::1]:9464\" (host names are not accepted)",
                    l.get_ref()
                ),
            );
            return MetricsConfig::default();
        }
    };
    let taken = server.listen.iter().any(|e| match e {
        Endpoint::Tcp(t) => t.parse::<std::net::SocketAddr>().is_ok_and(|s| {
            s.port() == addr.port()
                && (s.ip() == addr.ip() || s.ip().is_unspecified() || addr.ip().is_unspecified())
        }),
        _ => false,
    });
    if taken && addr.port() != 0 {
        cx.error(
            Some(l.span()),
            key,
            format!(
                "{addr} is also a [server] listen address: the metrics listener needs its own port"
            ),
        );
        return MetricsConfig::default();
    }
    if !addr.ip().is_loopback() {
        cx.warn(
            Some(l.span()),
            key,
            format!(
                "{addr} is not loopback: the metrics listener is unauthenticated, and whoever reaches it \
                 sees every node's name, state, load and memory and the aggregator's counters (what an \
                 administrator sees in /metrics)"
            ),
        );
    }
    MetricsConfig { listen: Some(addr) }
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.") || addr.starts_with("localhost:") || addr.starts_with("[::1]:")
}

fn server(cx: &mut Cx<'_, '_>, raw: &RawServer) -> ServerConfig {
    let def = ServerConfig::default();
    let mut listen = Vec::new();
    let mut listen_spans = Vec::new();
    if let Some(l) = &raw.listen {
        let mut seen = HashSet::new();
        for (s, span, key) in cx.strings(l, "server.listen") {
            match Endpoint::parse(&s) {
                Ok(e) if !seen.insert(e.clone()) => {
                    cx.error(Some(span), &key, format!("{s:?} is listed twice"))
                }
                Ok(e) => {
                    listen.push(e);
                    listen_spans.push((span, key));
                }
                Err(m) => cx.error(Some(span), &key, m),
            }
        }
        if matches!(l.get_ref(), OneOrMany::Many(v) if v.is_empty()) {
            cx.error(
                Some(l.span()),
                "server.listen",
                "no listen address: expected e.g. [\"unix:/run/gproc/gproc.sock\"]",
            );
        }
    } else {
        listen = def.listen.clone();
    }

    let auth = raw.auth.as_ref().and_then(|a| match a.get_ref().as_str() {
        "none" => Some(AuthMode::None),
        "munge" => Some(AuthMode::Munge),
        "key" => match &raw.key_file {
            Some(k) if k.get_ref().starts_with('/') => {
                Some(AuthMode::Key(PathBuf::from(k.get_ref())))
            }
            Some(k) => {
                cx.error(
                    Some(k.span()),
                    "server.key_file",
                    format!("{:?} must be an absolute path", k.get_ref()),
                );
                None
            }
            None => {
                cx.missing(
                    a.span(),
                    "server.key_file",
                    "auth = \"key\" needs key_file, the path of the shared key",
                );
                None
            }
        },
        other => {
            cx.error(
                Some(a.span()),
                "server.auth",
                format!("invalid value {other:?}: expected \"none\", \"munge\" or \"key\""),
            );
            None
        }
    });
    if let Some(k) = &raw.key_file
        && raw.auth.as_ref().is_none_or(|a| a.get_ref() != "key")
    {
        cx.error(
            Some(k.span()),
            "server.key_file",
            "key_file is only used with auth = \"key\"",
        );
    }
    for ((span, key), e) in listen_spans.iter().zip(&listen) {
        let Endpoint::Tcp(addr) = e else { continue };
        match &auth {
            None if raw.auth.is_none() => cx.warn(
                Some(span.clone()),
                key,
                format!("TCP listener {addr} without `auth`: its attaches will be refused until auth is configured"),
            ),
            Some(AuthMode::None) if !is_loopback(addr) => cx.warn(
                Some(span.clone()),
                key,
                format!("auth = \"none\" on {addr}: anyone who can reach it sees every process of the cluster"),
            ),
            _ => {}
        }
    }

    let socket_mode = match &raw.socket_mode {
        None => def.socket_mode,
        Some(m) => {
            let parsed = match m.get_ref() {
                Scalar::Int(n) => u32::try_from(*n).ok().filter(|n| *n <= 0o777),
                Scalar::Str(s) => u32::from_str_radix(s, 8).ok().filter(|n| *n <= 0o777),
                Scalar::Other(_) => None,
            };
            parsed.unwrap_or_else(|| {
                cx.error(
                    Some(m.span()),
                    "server.socket_mode",
                    "invalid mode: expected octal permissions as a string (\"0660\") or a TOML octal (0o660)",
                );
                def.socket_mode
            })
        }
    };
    let max_connections = cx.int(
        &raw.max_connections,
        "server.max_connections",
        u64::from(def.max_connections),
        1..1_000_001,
    );
    let per_user = cx.int(
        &raw.max_connections_per_user,
        "server.max_connections_per_user",
        (max_connections / 8).max(1),
        1..1_000_001,
    );
    if per_user > max_connections {
        cx.error(
            raw.max_connections_per_user.as_ref().map(Spanned::span),
            "server.max_connections_per_user",
            format!("{per_user} is more than max_connections ({max_connections})"),
        );
    }
    let snapshot_bytes = cx.size(
        &raw.snapshot_bytes,
        "server.snapshot_bytes",
        def.snapshot_bytes,
    );
    let snapshot_bytes_per_user = cx.size(
        &raw.snapshot_bytes_per_user,
        "server.snapshot_bytes_per_user",
        def.snapshot_bytes_per_user.min(snapshot_bytes),
    );
    if snapshot_bytes_per_user > snapshot_bytes {
        cx.error(
            raw.snapshot_bytes_per_user.as_ref().map(Spanned::span),
            "server.snapshot_bytes_per_user",
            format!("{snapshot_bytes_per_user} is more than snapshot_bytes ({snapshot_bytes})"),
        );
    }
    ServerConfig {
        listen,
        auth,
        socket_mode,
        // In range by the check above.
        max_connections: u32::try_from(max_connections).unwrap_or(def.max_connections),
        max_connections_per_user: u32::try_from(per_user).unwrap_or(def.max_connections_per_user),
        attach_timeout: cx.duration(
            &raw.attach_timeout,
            "server.attach_timeout",
            def.attach_timeout,
        ),
        snapshot_bytes,
        snapshot_bytes_per_user,
        msize: cx.msize(&raw.msize, "server.msize", def.msize),
        name: raw.name.as_ref().and_then(|n| {
            let s = n.get_ref();
            if crate::format::merged::valid_node_name(s) && !s.contains(char::is_whitespace) {
                Some(s.clone())
            } else {
                cx.error(
                    Some(n.span()),
                    "server.name",
                    format!("{s:?} cannot name an aggregator: expected a host-name-like word (no spaces, no `/`, not starting with `.`)"),
                );
                None
            }
        }),
        service_users: raw
            .service_users
            .as_ref()
            .map_or_else(Vec::new, |v| idents(cx, v, "server.service_users")),
        threads: raw.threads.as_ref().map(|_| {
            let n = cx.int(&raw.threads, "server.threads", 1, 1..1025);
            u32::try_from(n).unwrap_or(1)
        }),
    }
}

fn pool(cx: &mut Cx<'_, '_>, raw: &RawPool) -> PoolConfig {
    let def = PoolConfig::default();
    let to_usize = |n: u64, d: usize| usize::try_from(n).unwrap_or(d);
    let max_in_flight = cx.int(
        &raw.max_in_flight,
        "pool.max_in_flight",
        def.max_in_flight as u64,
        1..10_000_001,
    );
    let per_node = cx.int(
        &raw.max_in_flight_per_node,
        "pool.max_in_flight_per_node",
        def.max_in_flight_per_node as u64,
        1..65_536,
    );
    if per_node > max_in_flight {
        let span = raw
            .max_in_flight_per_node
            .as_ref()
            .or(raw.max_in_flight.as_ref())
            .map(Spanned::span);
        cx.error(
            span,
            "pool.max_in_flight_per_node",
            format!("{per_node} is more than max_in_flight ({max_in_flight})"),
        );
    }
    let per_user = cx.int(
        &raw.max_in_flight_per_user,
        "pool.max_in_flight_per_user",
        (def.max_in_flight_per_user as u64).min(per_node),
        1..65_536,
    );
    if per_user > per_node {
        cx.error(
            raw.max_in_flight_per_user.as_ref().map(Spanned::span),
            "pool.max_in_flight_per_user",
            format!("{per_user} is more than max_in_flight_per_node ({per_node})"),
        );
    }
    let reconnect_min = cx.duration(&raw.reconnect_min, "pool.reconnect_min", def.reconnect_min);
    let reconnect_max = cx.duration(&raw.reconnect_max, "pool.reconnect_max", def.reconnect_max);
    if reconnect_min > reconnect_max {
        let span = raw
            .reconnect_min
            .as_ref()
            .or(raw.reconnect_max.as_ref())
            .map(Spanned::span);
        cx.error(
            span,
            "pool.reconnect_min",
            format!(
                "reconnect_min ({}) is longer than reconnect_max ({})",
                humantime::format_duration(reconnect_min),
                humantime::format_duration(reconnect_max)
            ),
        );
    }
    let connect = match &raw.connect {
        None => def.connect,
        Some(c) => match c.get_ref().as_str() {
            "lazy" => ConnectMode::Lazy,
            "eager" => ConnectMode::Eager,
            other => {
                cx.error(
                    Some(c.span()),
                    "pool.connect",
                    format!("invalid value {other:?}: expected \"lazy\" or \"eager\""),
                );
                def.connect
            }
        },
    };
    let connect_concurrency = cx.int(
        &raw.connect_concurrency,
        "pool.connect_concurrency",
        def.connect_concurrency as u64,
        1..100_001,
    );
    PoolConfig {
        max_in_flight: to_usize(max_in_flight, def.max_in_flight),
        max_in_flight_per_node: to_usize(per_node, def.max_in_flight_per_node),
        max_in_flight_per_user: to_usize(per_user, def.max_in_flight_per_user),
        request_timeout: cx.duration(
            &raw.request_timeout,
            "pool.request_timeout",
            def.request_timeout,
        ),
        deadline: cx.duration(&raw.deadline, "pool.deadline", def.deadline),
        connect_timeout: cx.duration(
            &raw.connect_timeout,
            "pool.connect_timeout",
            def.connect_timeout,
        ),
        reconnect_min,
        reconnect_max,
        connect,
        connect_concurrency: to_usize(connect_concurrency, def.connect_concurrency),
        msize: cx.msize(&raw.msize, "pool.msize", def.msize),
    }
}

/// Where a node name was first seen: group index and the span of its `names`.
struct Seen {
    group: usize,
    line: usize,
}

fn nodes(cx: &mut Cx<'_, '_>, raw: &[Spanned<RawNodes>]) -> (Vec<NodeGroup>, Vec<NodeSpec>) {
    let mut groups = Vec::new();
    let mut nodes: Vec<NodeSpec> = Vec::new();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    if raw.is_empty() && !cx.pruned.contains("nodes") {
        cx.error(
            None,
            "nodes",
            "no nodes configured: expected at least one [[nodes]] table with names and address",
        );
    }
    for (gi, table) in raw.iter().enumerate() {
        let g = table.get_ref();
        let key = |k: &str| format!("nodes[{gi}].{k}");
        let Some(names_v) = &g.names else {
            cx.missing(
                table.span(),
                &key("names"),
                "a hostlist such as \"n[0001-2000]\" or a single name",
            );
            continue;
        };
        let names_key = key("names");
        let names_span = names_v.span();
        let hl = match Hostlist::parse(names_v.get_ref()) {
            Ok(h) => h,
            Err(e) => {
                cx.error(
                    Some(names_span),
                    &names_key,
                    format!("invalid hostlist {:?}: {e}", names_v.get_ref()),
                );
                continue;
            }
        };
        let room = hostlist::MAX_EXPANSION.saturating_sub(nodes.len() as u64);
        let names = match hl.expand_limit(room) {
            Ok(n) => n,
            Err(e) => {
                cx.error(
                    Some(names_span),
                    &names_key,
                    format!("hostlist {:?}: {e}", names_v.get_ref()),
                );
                continue;
            }
        };

        let address = match &g.address {
            None => {
                cx.missing(
                    table.span(),
                    &key("address"),
                    "an address such as \"{name}:5640\" or \"unix:/run/gproc/{name}.sock\"",
                );
                None
            }
            Some(a) => {
                let t = a.get_ref();
                if let Err(m) = endpoint::check_template(t) {
                    cx.error(Some(a.span()), &key("address"), m);
                    None
                } else if names.len() > 1 && !t.contains(endpoint::NAME_PLACEHOLDER) {
                    cx.error(
                        Some(a.span()),
                        &key("address"),
                        format!(
                            "address {t:?} has no {{name}}: all {} nodes of this group would share it",
                            names.len()
                        ),
                    );
                    None
                } else {
                    Some(a)
                }
            }
        };
        let dialect = g.dialect.as_ref().and_then(|v| {
            Dialect::parse(v.get_ref())
                .map_err(|m| cx.error(Some(v.span()), &key("dialect"), m))
                .ok()
        });
        let aname = match &g.aname {
            Some(a) if a.get_ref().contains('\0') => {
                cx.error(Some(a.span()), &key("aname"), "NUL in aname");
                DEFAULT_ANAME.to_string()
            }
            Some(a) => a.get_ref().clone(),
            None => DEFAULT_ANAME.to_string(),
        };
        let uname = match &g.uname {
            Some(u) if u.get_ref().is_empty() => {
                cx.error(Some(u.span()), &key("uname"), "empty uname");
                DEFAULT_UNAME.to_string()
            }
            Some(u) => u.get_ref().clone(),
            None => DEFAULT_UNAME.to_string(),
        };
        let uid = cx.int(&g.uid, &key("uid"), 0, 0..u64::from(u32::MAX));
        let uid = u32::try_from(uid).unwrap_or(0);
        let munge = match &g.auth {
            None => false,
            Some(a) => match a.get_ref().as_str() {
                "none" => false,
                "munge" => true,
                other => {
                    cx.error(
                        Some(a.span()),
                        &key("auth"),
                        format!("invalid value {other:?}: expected \"none\" or \"munge\""),
                    );
                    false
                }
            },
        };

        if munge
            && let Some(a) = address
            && !a.get_ref().starts_with("unix:")
            && let Some(port) = a
                .get_ref()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
            && port >= 1024
        {
            cx.warn(
                Some(a.span()),
                &key("address"),
                format!(
                    "auth = \"munge\" to port {port}, which any user on those nodes may bind: \
                     while an agent is down, they can answer in its place; run agents on a \
                     port below 1024 (565 by convention)"
                ),
            );
        }
        let line = cx.d.pos(names_span.start).line;
        let mut bad = Vec::new();
        let mut bad_addr: Option<(String, usize)> = None;
        for name in &names {
            let problem = check_node_name(name).err().or_else(|| {
                seen.get(name).map(|s| {
                    if s.group == gi {
                        format!("duplicate node name {name:?}: listed twice in this group")
                    } else {
                        format!(
                            "duplicate node name {name:?}: also in nodes[{}] (line {})",
                            s.group, s.line
                        )
                    }
                })
            });
            if let Some(p) = problem {
                bad.push(p);
                continue;
            }
            seen.insert(name.clone(), Seen { group: gi, line });
            let Some(a) = address else { continue };
            match endpoint::instantiate(a.get_ref(), name) {
                Ok(addr) => nodes.push(NodeSpec {
                    name: name.clone(),
                    address: addr,
                    aname: aname.clone(),
                    dialect,
                    uname: uname.clone(),
                    uid,
                    munge,
                    group: groups.len(),
                }),
                Err(m) => {
                    let b = bad_addr.get_or_insert_with(|| (format!("for node {name:?}: {m}"), 0));
                    b.1 += 1;
                }
            }
        }
        for p in bad.iter().take(MAX_NAME_ERRORS) {
            cx.error(Some(names_span.clone()), &names_key, p.clone());
        }
        if bad.len() > MAX_NAME_ERRORS {
            cx.error(
                Some(names_span.clone()),
                &names_key,
                format!(
                    "... and {} more bad names in this group",
                    bad.len() - MAX_NAME_ERRORS
                ),
            );
        }
        if let (Some((m, n)), Some(a)) = (bad_addr, address) {
            let more = if n > 1 {
                format!(" (and {} more nodes)", n - 1)
            } else {
                String::new()
            };
            cx.error(Some(a.span()), &key("address"), format!("{m}{more}"));
        }
        groups.push(NodeGroup {
            names: hl,
            address: g
                .address
                .as_ref()
                .map(|a| a.get_ref().clone())
                .unwrap_or_default(),
            count: names.len(),
        });
    }
    // Two groups dialling the same export is legal (tests, odd setups) but
    // usually a copy-paste slip.
    let mut by_addr: HashMap<(&Endpoint, &str), &str> = HashMap::new();
    let mut dup_addrs = Vec::new();
    for n in &nodes {
        if let Some(other) = by_addr.insert((&n.address, n.aname.as_str()), &n.name) {
            dup_addrs.push(format!(
                "nodes {other:?} and {:?} both use {} {:?}",
                n.name, n.address, n.aname
            ));
        }
    }
    if let Some(first) = dup_addrs.first() {
        let more = if dup_addrs.len() > 1 {
            format!(" (and {} more)", dup_addrs.len() - 1)
        } else {
            String::new()
        };
        cx.warn(None, "nodes", format!("{first}{more}"));
    }
    (groups, nodes)
}

fn cache(cx: &mut Cx<'_, '_>, raw: &RawCache) -> CachePolicy {
    let def = CachePolicy::default();
    let default_ttl = raw.default_ttl.as_ref().map_or(def.default_ttl, |v| {
        cx.ttl(v, "cache.default_ttl", def.default_ttl)
    });
    let max_bytes = cx.size(&raw.max_bytes, "cache.max_bytes", def.max_bytes);
    // An unset max_entry_bytes follows a small max_bytes down rather than
    // failing on a key the admin never wrote.
    let max_entry_bytes = cx.size(
        &raw.max_entry_bytes,
        "cache.max_entry_bytes",
        def.max_entry_bytes.min(max_bytes),
    );
    if max_entry_bytes > max_bytes {
        let span = raw
            .max_entry_bytes
            .as_ref()
            .or(raw.max_bytes.as_ref())
            .map(Spanned::span);
        cx.error(
            span,
            "cache.max_entry_bytes",
            format!("max_entry_bytes ({max_entry_bytes}) is more than max_bytes ({max_bytes})"),
        );
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rule.as_deref().unwrap_or_default().iter().enumerate() {
        let key = |k: &str| format!("cache.rule[{i}].{k}");
        let rule = r.get_ref();
        let pattern = match &rule.path {
            None => {
                cx.missing(r.span(), &key("path"), "a path glob such as \"/*/status\"");
                None
            }
            Some(p) => cache::compile_glob(p.get_ref())
                .map_err(|m| cx.error(Some(p.span()), &key("path"), m))
                .ok()
                .map(|g| (g, p.get_ref().clone())),
        };
        let ttl = match &rule.ttl {
            None => {
                cx.missing(r.span(), &key("ttl"), "a ttl such as \"2s\" or \"never\"");
                None
            }
            Some(t) => Ttl::parse(t.get_ref())
                .map_err(|e| cx.error(Some(t.span()), &key("ttl"), e.0))
                .ok(),
        };
        let stale = rule.stale.as_ref().and_then(|s| {
            let d = units::parse_duration(s.get_ref())
                .map_err(|e| cx.error(Some(s.span()), &key("stale"), e.0))
                .ok()?;
            match ttl {
                Some(Ttl::Never) => {
                    cx.error(
                        Some(s.span()),
                        &key("stale"),
                        "stale needs a ttl: with ttl = \"never\" nothing is kept to serve",
                    );
                    None
                }
                // "0s": no grace period, the same as leaving it out.
                _ if d.is_zero() => None,
                _ => Some(d),
            }
        });
        if let (Some((pattern, text)), Some(ttl)) = (pattern, ttl) {
            rules.push(CacheRule {
                pattern,
                text,
                ttl,
                stale,
                builtin: false,
            });
        }
    }
    if raw.builtin_rules.as_ref().is_none_or(|b| *b.get_ref()) {
        rules.extend(cache::builtin_rules());
    }
    CachePolicy {
        default_ttl,
        max_bytes,
        max_entry_bytes,
        rules,
    }
}

fn idents(cx: &mut Cx<'_, '_>, v: &Spanned<OneOrMany>, key: &str) -> Vec<Ident> {
    let many = matches!(v.get_ref(), OneOrMany::Many(_));
    let mut out = Vec::new();
    for (i, item) in v.get_ref().items(v.span()).into_iter().enumerate() {
        let k = if many {
            format!("{key}[{i}]")
        } else {
            key.to_string()
        };
        if let Some(id) = ident(cx, &item, &k) {
            out.push(id);
        }
    }
    out
}

fn ident(cx: &mut Cx<'_, '_>, v: &Spanned<Scalar>, key: &str) -> Option<Ident> {
    let r = match v.get_ref() {
        Scalar::Str(s) => Ident::parse(s),
        Scalar::Int(n) => u32::try_from(*n)
            .map(Ident::Id)
            .map_err(|_| format!("id {n} is out of range")),
        other => Err(format!(
            "invalid type: {}, expected a name or a numeric id",
            other.type_name()
        )),
    };
    r.map_err(|m| cx.error(Some(v.span()), key, m)).ok()
}

fn views(
    cx: &mut Cx<'_, '_>,
    raw: &RawViews,
    nodes: &[NodeSpec],
    server: &ServerConfig,
) -> ViewsConfig {
    let def = ViewsConfig::default();
    let mode = match &raw.mode {
        None => def.mode,
        Some(m) => match m.get_ref().as_str() {
            "on" => ViewsMode::On,
            "off" => ViewsMode::Off,
            other => {
                cx.error(
                    Some(m.span()),
                    "views.mode",
                    format!("invalid value {other:?}: expected \"on\" or \"off\""),
                );
                def.mode
            }
        },
    };
    if let Some(m) = raw.mode.as_ref().filter(|_| mode == ViewsMode::Off) {
        // Everyone an administrator is only sane where only one user can
        // reach the server.
        for e in &server.listen {
            if let Endpoint::Tcp(addr) = e
                && !is_loopback(addr)
            {
                cx.warn(
                    Some(m.span()),
                    "views.mode",
                    format!("views are off and {addr} is not loopback: whoever reaches it is an administrator and sees every process of the cluster"),
                );
            }
        }
        for (set, k) in [
            (raw.admin_users.is_some(), "admin_users"),
            (raw.admin_groups.is_some(), "admin_groups"),
            (raw.allot.is_some(), "allot"),
            (raw.allot_command.is_some(), "allot_command"),
            (raw.unallotted.is_some(), "unallotted"),
            (raw.allot_from_jobs.is_some(), "allot_from_jobs"),
        ] {
            if set {
                cx.warn(
                    Some(m.span()),
                    &format!("views.{k}"),
                    "has no effect with mode = \"off\" (everyone is an administrator)",
                );
            }
        }
    }
    let unallotted = match &raw.unallotted {
        None => def.unallotted,
        Some(u) => match u.get_ref().as_str() {
            "own-processes" => Unallotted::OwnProcesses,
            "nothing" => Unallotted::Nothing,
            other => {
                cx.error(
                    Some(u.span()),
                    "views.unallotted",
                    format!("invalid value {other:?}: expected \"own-processes\" or \"nothing\""),
                );
                def.unallotted
            }
        },
    };
    let admin_users = raw
        .admin_users
        .as_ref()
        .map_or(def.admin_users, |v| idents(cx, v, "views.admin_users"));
    let admin_groups = raw
        .admin_groups
        .as_ref()
        .map_or(def.admin_groups, |v| idents(cx, v, "views.admin_groups"));
    let known: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut allot = Vec::new();
    for (i, a) in raw.allot.as_deref().unwrap_or_default().iter().enumerate() {
        if let Some(x) = allotment(cx, a, i, &known) {
            allot.push(x);
        }
    }
    let allot_command = raw.allot_command.as_ref().and_then(|c| {
        let argv: Vec<String> = cx.strings(c, "views.allot_command").into_iter().map(|(s, _, _)| s).collect();
        match c.get_ref() {
            OneOrMany::One(Scalar::Str(s)) if s.trim().contains(char::is_whitespace) => {
                cx.error(
                    Some(c.span()),
                    "views.allot_command",
                    "the command is run without a shell: write it as an array, e.g. [\"squeue\", \"-h\", \"-t\", \"R\", \"-o\", \"%u %N\"]",
                );
                return None;
            }
            _ => {}
        }
        if argv.is_empty() || argv[0].is_empty() {
            cx.error(Some(c.span()), "views.allot_command", "empty command");
            return None;
        }
        Some(argv)
    });
    let refresh = cx.duration(
        &raw.allot_refresh,
        "views.allot_refresh",
        super::views::DEFAULT_ALLOT_REFRESH,
    );
    let timeout = cx.duration(
        &raw.allot_timeout,
        "views.allot_timeout",
        super::views::DEFAULT_ALLOT_TIMEOUT,
    );
    if raw.allot_command.is_none() {
        for (v, k) in [
            (&raw.allot_refresh, "views.allot_refresh"),
            (&raw.allot_timeout, "views.allot_timeout"),
        ] {
            if let Some(v) = v {
                cx.warn(Some(v.span()), k, "has no effect without allot_command");
            }
        }
    } else if timeout >= refresh {
        let span = raw
            .allot_timeout
            .as_ref()
            .or(raw.allot_refresh.as_ref())
            .map(Spanned::span);
        cx.warn(
            span,
            "views.allot_timeout",
            "allot_timeout is not shorter than allot_refresh: runs may overlap",
        );
    }
    ViewsConfig {
        mode,
        unallotted,
        admin_users,
        admin_groups,
        allot,
        allot_command: allot_command.map(|argv| AllotCommand {
            argv,
            refresh,
            timeout,
        }),
        allot_from_jobs: raw.allot_from_jobs.as_ref().is_some_and(|b| *b.get_ref()),
    }
}

fn allotment(
    cx: &mut Cx<'_, '_>,
    a: &Spanned<RawAllot>,
    i: usize,
    known: &HashSet<&str>,
) -> Option<Allotment> {
    let raw = a.get_ref();
    let key = |k: &str| format!("views.allot[{i}].{k}");
    let who = match (&raw.user, &raw.group) {
        (Some(u), None) => ident(cx, u, &key("user")).map(Principal::User),
        (None, Some(g)) => ident(cx, g, &key("group")).map(Principal::Group),
        (Some(_), Some(g)) => {
            cx.error(
                Some(g.span()),
                &key("group"),
                "give user or group, not both (use two [[views.allot]] tables)",
            );
            None
        }
        (None, None) => {
            if !cx.pruned.contains(&key("user")) && !cx.pruned.contains(&key("group")) {
                cx.error(
                    Some(a.span()),
                    &format!("views.allot[{i}]"),
                    "missing: user = \"NAME\" or group = \"NAME\"",
                );
            }
            None
        }
    };
    let Some(n) = &raw.nodes else {
        cx.missing(
            a.span(),
            &key("nodes"),
            "a hostlist such as \"n[0001-0500]\"",
        );
        return None;
    };
    let nodes = match Hostlist::parse(n.get_ref()) {
        Ok(h) => h,
        Err(e) => {
            cx.error(
                Some(n.span()),
                &key("nodes"),
                format!("invalid hostlist {:?}: {e}", n.get_ref()),
            );
            return None;
        }
    };
    if !known.is_empty() {
        // Only check lists small enough to walk; the check is a courtesy.
        if nodes.len() <= hostlist::MAX_EXPANSION {
            let unknown: Vec<String> = nodes
                .iter()
                .filter(|x| !known.contains(x.as_str()))
                .collect();
            if !unknown.is_empty() {
                cx.warn(
                    Some(n.span()),
                    &key("nodes"),
                    format!(
                        "{} of these are not configured nodes: {}",
                        unknown.len(),
                        hostlist::compress(&unknown)
                    ),
                );
            }
        }
    }
    Some(Allotment { who: who?, nodes })
}

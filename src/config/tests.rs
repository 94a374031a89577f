//! Whole-file tests: the shipped examples parse, every kind of error is
//! reported with its line and column, and all of them come out at once.

use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../../config/gproc.toml");
const MINIMAL: &str = include_str!("../../config/minimal.toml");
const HIERARCHY: &str = include_str!("../../config/hierarchy.toml");
const RACK: &str = include_str!("../../config/rack.toml");

/// Minimal valid text to build error cases on.
const NODES: &str = "[[nodes]]\nnames = \"n[1-4]\"\naddress = \"{name}:5640\"\n";

fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, "t.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.errors().iter().map(ToString::to_string).collect(),
    }
}

/// Asserts that exactly one error is reported and that it starts with `want`.
#[track_caller]
fn one_error(text: &str, want: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(want),
        "got  {}\nwant {want}...",
        errs[0]
    );
}

fn ok(text: &str) -> Config {
    Config::from_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_example_parses() {
    let c = ok(EXAMPLE);
    assert_eq!(c.nodes.len(), 2001);
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.groups[0].count, 2000);
    assert_eq!(c.nodes[0].name, "n0001");
    assert_eq!(c.nodes[0].address, NodeAddr::Tcp("n0001:565".into()));
    assert!(c.nodes[0].munge);
    assert_eq!(c.nodes[0].aname, "/proc");
    assert_eq!(c.nodes[0].dialect, Some(Dialect::P2000L));
    assert_eq!(c.nodes[1999].name, "n2000");
    let login = c.node("login1").unwrap();
    assert_eq!(login.address, NodeAddr::Tcp("127.0.0.1:5701".into()));
    assert!(!login.munge, "no credential unless the config says so");
    assert_eq!(login.dialect, None);
    assert_eq!(login.group, 1);
    assert_eq!(
        c.server.listen,
        [
            Endpoint::Tcp("127.0.0.1:5640".into()),
            Endpoint::Unix("/run/gproc/gproc.sock".into())
        ]
    );
    assert_eq!(c.server.socket_mode, 0o666);
    assert_eq!(c.pool.reconnect_max, Duration::from_secs(60));
    assert_eq!(c.cache.user_rule_count(), 2);
    let status = c.cache.ttl_for("/42/status");
    assert_eq!(status.ttl, Ttl::For(Duration::from_secs(2)));
    assert_eq!(status.stale, Some(Duration::from_secs(30)));
    assert_eq!(c.cache.ttl_for("/42/maps").rule, Some(1));
    assert_eq!(c.cache.ttl_for("/42/environ").ttl, Ttl::Never);
    assert_eq!(c.views.admin_groups, [Ident::Name("wheel".into())]);
    assert_eq!(c.views.allot.len(), 2);
    assert!(c.views.allot[1].nodes.contains("login1"));
    // The example listens on TCP without `auth`: that is worth a warning.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].message.contains("without `auth`"));
}

#[test]
fn example_documents_the_builtin_rules() {
    assert!(EXAMPLE.contains("the same under \"/*/task/*/\""));
    for (glob, _) in cache::builtin_rule_specs() {
        if glob.starts_with("/*/task/*/") {
            continue;
        }
        // The long globs are wrapped in the comment; check their first part.
        let head: String = glob.chars().take(30).collect();
        assert!(
            EXAMPLE.contains(&head),
            "gproc.toml does not document {glob}"
        );
    }
}

#[test]
fn other_examples_parse() {
    let m = ok(MINIMAL);
    assert_eq!(m.nodes.len(), 128);
    assert_eq!(m.server, ServerConfig::default());
    assert_eq!(m.pool, PoolConfig::default());
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let h = ok(HIERARCHY);
    assert_eq!(h.nodes.len(), 11);
    assert_eq!(h.server.auth, Some(AuthMode::Munge));
    assert_eq!(h.pool.connect, ConnectMode::Eager);
    assert_eq!(h.node("fs2").unwrap().dialect, Some(Dialect::P2000));
    assert_eq!(
        h.node("login1").unwrap().address,
        NodeAddr::Unix("/run/diod/login1.sock".into())
    );
    let cmd = h.views.allot_command.as_ref().unwrap();
    assert_eq!(cmd.argv[0], "/usr/bin/squeue");
    assert_eq!(cmd.refresh, Duration::from_secs(30));
    assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    let racks: Vec<_> = h
        .nodes
        .iter()
        .filter(|n| n.name.starts_with("rack"))
        .collect();
    assert!(
        racks.iter().all(|n| n.aname.is_empty() && n.munge),
        "{racks:?}"
    );
    assert_eq!(h.server.name.as_deref(), Some("top"));
    let r = ok(RACK);
    assert_eq!(r.nodes.len(), 128);
    assert_eq!(r.server.name.as_deref(), Some("rack1"));
    assert_eq!(r.server.service_users, vec![Ident::Name("gproc".into())]);
    assert!(
        r.pool.deadline < h.pool.request_timeout,
        "a rack answers within the top's request timeout"
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn defaults() {
    let c = Config::default();
    assert!(c.nodes.is_empty());
    assert_eq!(
        c.server.listen,
        [Endpoint::Unix("/run/gproc/gproc.sock".into())]
    );
    assert_eq!(c.server.auth, None);
    assert_eq!(c.pool.connect, ConnectMode::Lazy);
    assert_eq!(c.cache.default_ttl, Ttl::For(Duration::from_secs(1)));
    assert_eq!(c.cache.max_bytes, ByteSize(256 << 20));
    assert_eq!(c.cache.user_rule_count(), 0);
    assert!(!c.cache.rules.is_empty());
    assert_eq!(c.views.admin_users, [Ident::Name("root".into())]);

    let m = ok(NODES);
    assert_eq!(m.nodes.len(), 4);
    assert_eq!(m.nodes[0].uname, "root");
    assert_eq!(m.nodes[0].uid, 0);
    assert_eq!(m.cache.rules.len(), c.cache.rules.len());
}

#[test]
fn builtin_rules_follow_user_rules_or_can_be_turned_off() {
    let with = ok(&format!(
        "{NODES}[cache]\n[[cache.rule]]\npath = \"/*/environ\"\nttl = \"5s\"\n"
    ));
    assert_eq!(with.cache.rules[0].text, "/*/environ");
    assert!(!with.cache.rules[0].builtin);
    assert!(with.cache.rules[1].builtin);
    assert_eq!(
        with.cache.ttl_for("/1/environ").ttl,
        Ttl::For(Duration::from_secs(5)),
        "the admin's rule wins"
    );
    assert_eq!(with.cache.ttl_for("/1/mem").ttl, Ttl::Never);

    let without = ok(&format!(
        "{NODES}[cache]\nbuiltin_rules = false\ndefault_ttl = \"never\"\n"
    ));
    assert!(without.cache.rules.is_empty());
    assert_eq!(without.cache.ttl_for("/1/status").ttl, Ttl::Never);
}

#[test]
fn the_documented_message_format() {
    let text = "\
[[nodes]]
names = \"n1\"
address = \"n1:5640\"

[cache]
default_ttl = \"1s\"

[[cache.rule]]
path = \"/*/status\"
ttl  = \"2s\"
[[cache.rule]]
ttl   = \"2x\"
path = \"/*/maps\"
";
    let errs = errors(text);
    assert_eq!(
        errs,
        [
            r#"t.toml:12:9: cache.rule[1].ttl: invalid duration "2x": expected e.g. "250ms", "2s" or "never""#
        ]
    );
}

#[test]
fn syntax_error() {
    one_error(
        "[[nodes]]\nnames = \"n1\"\naddress = n1:5640\n",
        "t.toml:3:11: TOML syntax: ",
    );
}

#[test]
fn unknown_keys() {
    one_error(
        &format!("{NODES}[pool]\nmax_inflight = 4\n"),
        "t.toml:5:1: pool.max_inflight: unknown key \"max_inflight\": expected one of: max_in_flight,",
    );
    one_error(
        &format!("{NODES}[sever]\n"),
        "t.toml:4:2: sever: unknown key \"sever\"",
    );
    one_error(
        &format!("{NODES}adress = \"x\"\n"),
        "t.toml:4:1: nodes[0].adress: unknown key",
    );
}

#[test]
fn wrong_types() {
    one_error(
        &format!("{NODES}[pool]\nmax_in_flight = \"10\"\n"),
        "t.toml:5:17: pool.max_in_flight: invalid type: string \"10\", expected an integer",
    );
    one_error(
        &format!("{NODES}[cache]\nbuiltin_rules = \"yes\"\n"),
        "t.toml:5:17: cache.builtin_rules: invalid type: string",
    );
    one_error(
        &format!("{NODES}[cache]\nmax_bytes = true\n"),
        "t.toml:5:13: cache.max_bytes: invalid type: a boolean, expected a size",
    );
    one_error(
        &format!("{NODES}[server]\nlisten = [\"a:1\", 2]\n"),
        "t.toml:5:18: server.listen[1]: invalid type: an integer, expected a string",
    );
    // A table where an array of tables belongs gets a hint.
    let errs = errors("[nodes]\nnames = \"n1\"\naddress = \"n1:1\"\n");
    assert!(
        errs[0].starts_with("t.toml:1:1: nodes: invalid type"),
        "{errs:?}"
    );
    assert!(errs[0].contains("write [[nodes]]"), "{errs:?}");
}

#[test]
fn bad_durations() {
    one_error(
        &format!("{NODES}[pool]\nrequest_timeout = \"5\"\n"),
        r#"t.toml:5:19: pool.request_timeout: invalid duration "5": a unit is needed, e.g. "5s" or "5ms""#,
    );
    one_error(
        &format!("{NODES}[pool]\nconnect_timeout = \"never\"\n"),
        r#"t.toml:5:19: pool.connect_timeout: invalid duration "never": expected e.g. "250ms", "2s" or "1m30s""#,
    );
    one_error(
        &format!("{NODES}[pool]\nrequest_timeout = \"0s\"\n"),
        "t.toml:5:19: pool.request_timeout: \"0s\" is zero",
    );
    one_error(
        &format!("{NODES}[cache]\ndefault_ttl = \"1 fortnight\"\n"),
        "t.toml:5:15: cache.default_ttl: invalid duration",
    );
    one_error(
        &format!("{NODES}[pool]\nreconnect_min = \"2m\"\nreconnect_max = \"1m\"\n"),
        "t.toml:5:17: pool.reconnect_min: reconnect_min (2m) is longer than reconnect_max (1m)",
    );
}

#[test]
fn bad_sizes() {
    one_error(
        &format!("{NODES}[cache]\nmax_bytes = \"256M\"\n"),
        r#"t.toml:5:13: cache.max_bytes: ambiguous size "256M": write "256MiB""#,
    );
    one_error(
        &format!("{NODES}[cache]\nmax_bytes = -5\n"),
        "t.toml:5:13: cache.max_bytes: invalid size -5",
    );
    one_error(
        &format!("{NODES}[cache]\nmax_bytes = \"1MiB\"\nmax_entry_bytes = \"2MiB\"\n"),
        "t.toml:6:19: cache.max_entry_bytes: max_entry_bytes (2MiB) is more than max_bytes (1MiB)",
    );
    one_error(
        &format!("{NODES}[pool]\nmsize = 100\n"),
        "t.toml:5:9: pool.msize: msize 100 is out of range: expected 4KiB to 16MiB",
    );
    let c = ok(&format!(
        "{NODES}[cache]\nmax_bytes = 1000\n[pool]\nmsize = \"1MiB\"\n"
    ));
    assert_eq!(c.cache.max_bytes, ByteSize(1000));
    assert_eq!(c.pool.msize, 1 << 20);
}

#[test]
fn bad_hostlists() {
    one_error(
        "[[nodes]]\nnames = \"n[1-3\"\naddress = \"{name}:1\"\n",
        r#"t.toml:2:9: nodes[0].names: invalid hostlist "n[1-3": unclosed '[' at character 2"#,
    );
    one_error(
        "[[nodes]]\nnames = \"n[3-1]\"\naddress = \"{name}:1\"\n",
        r#"t.toml:2:9: nodes[0].names: invalid hostlist "n[3-1]": reversed range 3-1"#,
    );
    one_error(
        "[[nodes]]\nnames = \"\"\naddress = \"{name}:1\"\n",
        r#"t.toml:2:9: nodes[0].names: invalid hostlist "": empty hostlist"#,
    );
    one_error(
        "[[nodes]]\nnames = \"n[a-c]\"\naddress = \"{name}:1\"\n",
        "t.toml:2:9: nodes[0].names: invalid hostlist \"n[a-c]\": range bound \"a\"",
    );
    one_error(
        "[[nodes]]\nnames = \"n[0-99999999]\"\naddress = \"{name}:1\"\n",
        "t.toml:2:9: nodes[0].names: hostlist \"n[0-99999999]\": hostlist names 100000000 hosts, more than the limit of 1000000",
    );
    one_error(
        &format!("{NODES}[views]\n[[views.allot]]\nuser = \"alice\"\nnodes = \"n[1-\"\n"),
        "t.toml:7:9: views.allot[0].nodes: invalid hostlist",
    );
}

#[test]
fn bad_globs() {
    one_error(
        &format!("{NODES}[[cache.rule]]\npath = \"*/status\"\nttl = \"1s\"\n"),
        r#"t.toml:5:8: cache.rule[0].path: invalid path pattern "*/status": must start with '/'"#,
    );
    one_error(
        &format!("{NODES}[[cache.rule]]\npath = \"/[a-\"\nttl = \"1s\"\n"),
        r#"t.toml:5:8: cache.rule[0].path: invalid path pattern "/[a-": "#,
    );
}

#[test]
fn stale_rules() {
    one_error(
        &format!("{NODES}[[cache.rule]]\npath = \"/x\"\nttl = \"never\"\nstale = \"1m\"\n"),
        "t.toml:7:9: cache.rule[0].stale: stale needs a ttl",
    );
    one_error(
        &format!("{NODES}[[cache.rule]]\npath = \"/x\"\nttl = \"5s\"\nstale = \"2x\"\n"),
        r#"t.toml:7:9: cache.rule[0].stale: invalid duration "2x": expected e.g. "250ms", "2s" or "1m30s""#,
    );
    // A grace period shorter than the TTL is fine; zero means none.
    let c = ok(&format!(
        "{NODES}[[cache.rule]]\npath = \"/x\"\nttl = \"5s\"\nstale = \"2s\"\n\
         [[cache.rule]]\npath = \"/y\"\nttl = \"5s\"\nstale = \"0s\"\n"
    ));
    assert_eq!(c.cache.ttl_for("/x").stale, Some(Duration::from_secs(2)));
    assert_eq!(c.cache.ttl_for("/y").stale, None);
}

#[test]
fn bad_addresses() {
    one_error(
        "[server]\nlisten = \"localhost\"\n[[nodes]]\nnames = \"a\"\naddress = \"a:1\"\n",
        r#"t.toml:2:10: server.listen: invalid address "localhost": missing port"#,
    );
    one_error(
        "[server]\nlisten = [\"unix:relative\"]\n[[nodes]]\nnames = \"a\"\naddress = \"a:1\"\n",
        "t.toml:2:11: server.listen[0]: invalid address \"unix:relative\": a unix socket path must be absolute",
    );
    one_error(
        "[server]\nlisten = []\n[[nodes]]\nnames = \"a\"\naddress = \"a:1\"\n",
        "t.toml:2:10: server.listen: no listen address",
    );
    one_error(
        "[server]\nlisten = [\"unix:/a\", \"unix:/a\"]\n[[nodes]]\nnames = \"a\"\naddress = \"a:1\"\n",
        "t.toml:2:22: server.listen[1]: \"unix:/a\" is listed twice",
    );
    one_error(
        "[[nodes]]\nnames = \"n[1-2]\"\naddress = \"{name}\"\n",
        r#"t.toml:3:11: nodes[0].address: for node "n1": invalid address "n1": missing port"#,
    );
    one_error(
        "[[nodes]]\nnames = \"n[1-2]\"\naddress = \"{host}:1\"\n",
        r#"t.toml:3:11: nodes[0].address: unknown placeholder "{host}""#,
    );
    one_error(
        "[[nodes]]\nnames = \"n[1-2]\"\naddress = \"10.0.0.1:564\"\n",
        r#"t.toml:3:11: nodes[0].address: address "10.0.0.1:564" has no {name}: all 2 nodes"#,
    );
    one_error(
        "[[nodes]]\nnames = \"n1\"\naddress = \"{name}:564\"\ndialect = \"9P2001\"\n",
        r#"t.toml:4:11: nodes[0].dialect: invalid dialect "9P2001""#,
    );
    let c = ok("[[nodes]]\nnames = \"n1\"\naddress = \"{name}:564\"\ndialect = \"9p2000.u\"\n");
    assert_eq!(c.nodes[0].dialect, Some(Dialect::P2000u));
}

#[test]
fn duplicate_node_names() {
    one_error(
        "[[nodes]]\nnames = \"n[1-4]\"\naddress = \"{name}:1\"\n\n[[nodes]]\nnames = \"n3\"\naddress = \"x:1\"\n",
        r#"t.toml:6:9: nodes[1].names: duplicate node name "n3": also in nodes[0] (line 2)"#,
    );
    one_error(
        "[[nodes]]\nnames = \"n[1-3,2]\"\naddress = \"{name}:1\"\n",
        r#"t.toml:2:9: nodes[0].names: duplicate node name "n2": listed twice in this group"#,
    );
    // Many duplicates are summarised, not listed one by one.
    let errs = errors(
        "[[nodes]]\nnames = \"n[1-100]\"\naddress = \"{name}:1\"\n[[nodes]]\nnames = \"n[1-100]\"\naddress = \"{name}:2\"\n",
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[3].ends_with("... and 97 more bad names in this group"));
}

#[test]
fn reserved_and_malformed_node_names() {
    for (name, why) in [
        ("nodes", "is reserved"),
        ("ps", "is reserved"),
        ("load", "is reserved"),
        ("pid", "is reserved"),
        ("stats", "is reserved"),
        ("jobs", "is reserved"),
        ("job", "is reserved"),
        ("top", "is reserved"),
        (".gproc", "starts with '.'"),
        (".hidden", "starts with '.'"),
        ("a/b", "contains '/'"),
        ("a@b", "contains '@'"),
    ] {
        one_error(
            &format!("[[nodes]]\nnames = \"{name}\"\naddress = \"x:1\"\n"),
            &format!("t.toml:2:9: nodes[0].names: node name {name:?} {why}"),
        );
    }
    // Names made by expansion are checked too.
    let errs = errors("[[nodes]]\nnames = \"a/[1-2]\"\naddress = \"x{name}:1\"\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with(r#"t.toml:2:9: nodes[0].names: node name "a/1" contains '/'"#));
}

#[test]
fn empty_node_list() {
    one_error(
        "[server]\nlisten = \"unix:/tmp/g.sock\"\n",
        "t.toml: nodes: no nodes configured",
    );
    one_error("", "t.toml: nodes: no nodes configured");
}

#[test]
fn missing_required_keys() {
    one_error(
        "[[nodes]]\naddress = \"{name}:1\"\n",
        "t.toml:1:1: nodes[0].names: missing: a hostlist",
    );
    one_error(
        "[[nodes]]\nnames = \"n1\"\n",
        "t.toml:1:1: nodes[0].address: missing: an address",
    );
    one_error(
        &format!("{NODES}[[cache.rule]]\npath = \"/x\"\n"),
        "t.toml:4:1: cache.rule[0].ttl: missing: a ttl",
    );
    // A key deleted for a type error is not also reported as missing.
    one_error(
        "[[nodes]]\nnames = 7\naddress = \"{name}:1\"\n",
        "t.toml:2:9: nodes[0].names: invalid type: integer `7`, expected a string",
    );
}

#[test]
fn server_auth() {
    let c = ok(&format!(
        "{NODES}[server]\nauth = \"key\"\nkey_file = \"/etc/gproc/key\"\n"
    ));
    assert_eq!(c.server.auth, Some(AuthMode::Key("/etc/gproc/key".into())));
    one_error(
        &format!("{NODES}[server]\nauth = \"key\"\n"),
        "t.toml:5:8: server.key_file: missing: auth = \"key\" needs key_file",
    );
    one_error(
        &format!("{NODES}[server]\nauth = \"kerberos\"\n"),
        r#"t.toml:5:8: server.auth: invalid value "kerberos": expected "none", "munge" or "key""#,
    );
    one_error(
        &format!("{NODES}[server]\nkey_file = \"/k\"\n"),
        "t.toml:5:12: server.key_file: key_file is only used with auth = \"key\"",
    );
    let open = ok(&format!(
        "{NODES}[server]\nlisten = \"0.0.0.0:5640\"\nauth = \"none\"\n"
    ));
    assert_eq!(open.warnings.len(), 1);
    assert!(
        open.warnings[0]
            .to_string()
            .starts_with("t.toml:5:10: server.listen: auth = \"none\" on 0.0.0.0:5640")
    );
    let lo = ok(&format!(
        "{NODES}[server]\nlisten = \"127.0.0.1:5640\"\nauth = \"none\"\n"
    ));
    assert!(lo.warnings.is_empty());
}

#[test]
fn server_socket_mode_and_limits() {
    assert_eq!(
        ok(&format!("{NODES}[server]\nsocket_mode = \"0660\"\n"))
            .server
            .socket_mode,
        0o660
    );
    assert_eq!(
        ok(&format!("{NODES}[server]\nsocket_mode = 0o600\n"))
            .server
            .socket_mode,
        0o600
    );
    one_error(
        &format!("{NODES}[server]\nsocket_mode = 666\n"),
        "t.toml:5:15: server.socket_mode: invalid mode",
    );
    one_error(
        &format!("{NODES}[server]\nmax_connections = 0\n"),
        "t.toml:5:19: server.max_connections: 0 is out of range: expected 1 to 1000000",
    );
    one_error(
        &format!("{NODES}[server]\nthreads = 0\n"),
        "t.toml:5:11: server.threads: 0 is out of range: expected 1 to 1024",
    );
    let c = ok(&format!("{NODES}[server]\nthreads = 3\n"));
    assert_eq!((c.server.threads, c.worker_threads()), (Some(3), 3));
    let d = ok(NODES);
    assert_eq!(d.server.threads, None);
    assert_eq!(d.worker_threads(), 1, "one worker for a few nodes");
}

#[test]
fn pool_checks() {
    one_error(
        &format!("{NODES}[pool]\nmax_in_flight = 8\nmax_in_flight_per_node = 16\n"),
        "t.toml:6:26: pool.max_in_flight_per_node: 16 is more than max_in_flight (8)",
    );
    one_error(
        &format!("{NODES}[pool]\nconnect = \"Lazy\"\n"),
        r#"t.toml:5:11: pool.connect: invalid value "Lazy": expected "lazy" or "eager""#,
    );
}

#[test]
fn fair_share_keys() {
    let c = ok(&format!(
        "{NODES}[server]\nmax_connections = 64\nattach_timeout = \"3s\"\n\
         snapshot_bytes = \"64MiB\"\nsnapshot_bytes_per_user = \"8MiB\"\n\
         [pool]\nmax_in_flight_per_user = 2\n"
    ));
    assert_eq!(c.server.max_connections_per_user, 8, "an eighth by default");
    assert_eq!(c.server.attach_timeout, Duration::from_secs(3));
    assert_eq!(
        (
            c.server.snapshot_bytes.bytes(),
            c.server.snapshot_bytes_per_user.bytes()
        ),
        (64 << 20, 8 << 20)
    );
    assert_eq!(c.pool.max_in_flight_per_user, 2);
    let d = ok(NODES);
    assert_eq!(
        (
            d.server.max_connections_per_user,
            d.pool.max_in_flight_per_user
        ),
        (512, 4)
    );
    one_error(
        &format!("{NODES}[server]\nmax_connections = 8\nmax_connections_per_user = 9\n"),
        "t.toml:6:28: server.max_connections_per_user: 9 is more than max_connections (8)",
    );
    one_error(
        &format!(
            "{NODES}[server]\nsnapshot_bytes = \"1MiB\"\nsnapshot_bytes_per_user = \"2MiB\"\n"
        ),
        "t.toml:6:27: server.snapshot_bytes_per_user: 2MiB is more than snapshot_bytes (1MiB)",
    );
    one_error(
        &format!("{NODES}[pool]\nmax_in_flight_per_user = 17\n"),
        "t.toml:5:26: pool.max_in_flight_per_user: 17 is more than max_in_flight_per_node (16)",
    );
}

#[test]
fn views() {
    let c = ok(&format!(
        "{NODES}[views]\nadmin_users = [\"root\", 1000]\nadmin_groups = \"wheel\"\n\
         [[views.allot]]\nuser = \"alice\"\nnodes = \"n[1-2]\"\n"
    ));
    assert_eq!(
        c.views.admin_users,
        [Ident::Name("root".into()), Ident::Id(1000)]
    );
    assert_eq!(c.views.admin_groups, [Ident::Name("wheel".into())]);
    assert_eq!(
        c.views.allot[0].who,
        Principal::User(Ident::Name("alice".into()))
    );
    one_error(
        &format!("{NODES}[[views.allot]]\nuser = \"a\"\ngroup = \"b\"\nnodes = \"n1\"\n"),
        "t.toml:6:9: views.allot[0].group: give user or group, not both",
    );
    one_error(
        &format!("{NODES}[[views.allot]]\nnodes = \"n1\"\n"),
        "t.toml:4:1: views.allot[0]: missing: user = \"NAME\" or group = \"NAME\"",
    );
    one_error(
        &format!("{NODES}[views]\nadmin_users = [\"bad name\"]\n"),
        "t.toml:5:16: views.admin_users[0]: invalid name \"bad name\"",
    );
    one_error(
        &format!("{NODES}[views]\nallot_command = \"squeue -h -o '%u %N'\"\n"),
        "t.toml:5:17: views.allot_command: the command is run without a shell",
    );
    one_error(
        &format!("{NODES}[views]\nallot_command = []\n"),
        "t.toml:5:17: views.allot_command: empty command",
    );
    // A single program path is fine; defaults fill refresh and timeout.
    let c = ok(&format!(
        "{NODES}[views]\nallot_command = \"/usr/local/sbin/gproc-allot\"\n"
    ));
    let cmd = c.views.allot_command.unwrap();
    assert_eq!(cmd.argv, ["/usr/local/sbin/gproc-allot"]);
    assert_eq!(cmd.refresh, views::DEFAULT_ALLOT_REFRESH);
    // Allotting nodes that do not exist is legal but flagged.
    let c = ok(&format!(
        "{NODES}[[views.allot]]\nuser = \"a\"\nnodes = \"n[3-9]\"\n"
    ));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0]
            .message
            .starts_with("5 of these are not configured nodes: n[5-9]")
    );
    let c = ok(&format!("{NODES}[views]\nallot_refresh = \"1m\"\n"));
    assert!(c.warnings[0].message.contains("without allot_command")); // Allotments from jobs: off unless said; a boolean.
    assert!(!ok(NODES).views.allot_from_jobs);
    assert!(
        ok(&format!("{NODES}[views]\nallot_from_jobs = true\n"))
            .views
            .allot_from_jobs
    );
    assert!(!errors(&format!("{NODES}[views]\nallot_from_jobs = \"yes\"\n")).is_empty());
    let c = ok(&format!(
        "{NODES}[views]\nmode = \"off\"\nallot_from_jobs = true\n"
    ));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("no effect") && w.key == "views.allot_from_jobs"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn views_are_on_unless_turned_off() {
    // No section, an empty one, an empty admin list: on (issue 12 finding 9).
    for text in ["", "[views]\n", "[views]\nadmin_users = []\n"] {
        let c = ok(&format!("{NODES}{text}"));
        assert_eq!(c.views.mode, ViewsMode::On, "{text:?}");
        assert_eq!(c.views.unallotted, Unallotted::OwnProcesses, "{text:?}");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
    assert_eq!(Config::default().views.mode, ViewsMode::On);
    let c = ok(&format!("{NODES}[views]\nmode = \"off\"\n"));
    assert_eq!(c.views.mode, ViewsMode::Off);
    assert!(
        c.warnings.is_empty(),
        "the default Unix socket: {:?}",
        c.warnings
    );
    let c = ok(&format!("{NODES}[views]\nunallotted = \"nothing\"\n"));
    assert_eq!(c.views.unallotted, Unallotted::Nothing);
    one_error(
        &format!("{NODES}[views]\nmode = \"open\"\n"),
        r#"t.toml:5:8: views.mode: invalid value "open": expected "on" or "off""#,
    );
    one_error(
        &format!("{NODES}[views]\nunallotted = \"all\"\n"),
        r#"t.toml:5:14: views.unallotted: invalid value "all": expected "own-processes" or "nothing""#,
    );
    // Off on a TCP listener others can reach, and settings off ignores.
    let c = ok(&format!(
        "[server]\nlisten = [\"0.0.0.0:5640\", \"127.0.0.1:5641\"]\nauth = \"munge\"\n\
         {NODES}[views]\nmode = \"off\"\nadmin_groups = [\"wheel\"]\n"
    ));
    let w: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("0.0.0.0:5640 is not loopback"), "{w:?}");
    assert!(w[1].contains("has no effect with mode = \"off\""), "{w:?}");
}

#[test]
fn all_errors_at_once_in_file_order() {
    let text = "\
[server]
listen = [\"nowhere\"]
colour = \"blue\"

[pool]
request_timeout = \"soon\"
msize = \"1.5MiB\"

[[nodes]]
names = \"n[1-3\"
address = \"{name}:5640\"

[[nodes]]
names = \"ps\"
address = \"ps:5640\"
dialect = 9

[cache]
max_bytes = \"lots\"
[[cache.rule]]
path = \"status\"
ttl = \"2x\"
";
    let errs = errors(text);
    let lines: Vec<usize> = errs
        .iter()
        .map(|e| e.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 6, 7, 10, 14, 16, 19, 21, 22], "{errs:#?}");
    let joined = ConfigErrors(Config::from_str(text, "t.toml").unwrap_err().0).to_string();
    assert_eq!(joined.lines().count(), 10);
}

#[test]
fn load_and_check_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("gproc.toml");
    std::fs::write(&good, EXAMPLE).unwrap();
    let s = check_file(&good).unwrap();
    assert_eq!(s.nodes, 2001);
    assert_eq!(s.groups, 2);
    assert_eq!(s.cache_rules, 2);
    assert_eq!(s.node_list, "login1,n[0001-2000]");
    let shown = s.to_string();
    assert!(
        shown.contains("2001 nodes in 2 groups: login1,n[0001-2000]"),
        "{shown}"
    );
    assert!(shown.contains("2 cache rules (+"), "{shown}");
    assert!(
        shown.contains("listen: 127.0.0.1:5640, unix:/run/gproc/gproc.sock"),
        "{shown}"
    );
    assert!(shown.contains("warning: "), "{shown}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[nodes]]\nnames = \"ps\"\naddress = \"a:1\"\n").unwrap();
    let e = check_file(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2:9: nodes[0].names:", bad.display())),
        "{e}"
    );

    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn node_auth_is_explicit_and_munge_wants_a_privileged_port() {
    let c = ok("[[nodes]]\nnames = \"n1\"\naddress = \"n1:565\"\nauth = \"munge\"\n");
    assert!(c.nodes[0].munge);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = ok("[[nodes]]\nnames = \"n1\"\naddress = \"n1:5640\"\nauth = \"munge\"\n");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].message.contains("below 1024"));
    let c = ok("[[nodes]]\nnames = \"n1\"\naddress = \"n1:5640\"\n");
    assert!(!c.nodes[0].munge, "no credential unless configured");
    assert_eq!(
        errors("[[nodes]]\nnames = \"n1\"\naddress = \"n1:565\"\nauth = \"krb5\"\n"),
        ["t.toml:4:8: nodes[0].auth: invalid value \"krb5\": expected \"none\" or \"munge\""]
    );
}

#[test]
fn metrics_listener() {
    // Absent: no listener.
    assert_eq!(ok(NODES).metrics.listen, None);
    assert_eq!(ok(&format!("{NODES}[metrics]\n")).metrics.listen, None);
    let c = ok(&format!("{NODES}[metrics]\nlisten = \"127.0.0.1:9464\"\n"));
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(
        ok(&format!("{NODES}[metrics]\nlisten = \"[::1]:9464\"\n"))
            .warnings
            .is_empty()
    );
    // Unauthenticated on the network: legal, warned with its line.
    let open = ok(&format!("{NODES}[metrics]\nlisten = \"0.0.0.0:9464\"\n"));
    assert_eq!(open.metrics.listen, Some("0.0.0.0:9464".parse().unwrap()));
    assert_eq!(open.warnings.len(), 1, "{:?}", open.warnings);
    let w = open.warnings[0].to_string();
    assert!(
        w.starts_with("t.toml:5:10: metrics.listen: 0.0.0.0:9464 is not loopback"),
        "{w}"
    );
    // Not an address, a host name, a Unix socket, the wrong type, an
    // unknown key, a port the 9P server listens on.
    one_error(
        &format!("{NODES}[metrics]\nlisten = \"9464\"\n"),
        "t.toml:5:10: metrics.listen: \"9464\" is not an IP:PORT address: expected e.g. \"127.0.0.1:9464\"",
    );
    one_error(
        &format!("{NODES}[metrics]\nlisten = \"localhost:9464\"\n"),
        "t.toml:5:10: metrics.listen: \"localhost:9464\" is not an IP:PORT address",
    );
    one_error(
        &format!("{NODES}[metrics]\nlisten = \"unix:/run/m.sock\"\n"),
        "t.toml:5:10: metrics.listen: \"unix:/run/m.sock\" is not an IP:PORT",
    );
    one_error(
        &format!("{NODES}[metrics]\nlisten = 9464\n"),
        "t.toml:5:10: metrics.listen: invalid type: integer `9464`, expected a string",
    );
    one_error(
        &format!("{NODES}[metrics]\nlisen = \"127.0.0.1:9464\"\n"),
        "t.toml:5:1: metrics.lisen: unknown key",
    );
    one_error(
        &format!(
            "[server]\nlisten = [\"0.0.0.0:5640\"]\nauth = \"munge\"\n{NODES}[metrics]\nlisten = \"127.0.0.1:5640\"\n"
        ),
        "t.toml:8:10: metrics.listen: 127.0.0.1:5640 is also a [server] listen address",
    );
    one_error(
        &format!("{NODES}[[metrics]]\nlisten = \"127.0.0.1:9464\"\n"),
        "t.toml:4:1: metrics: [metrics] is a single table",
    );
    // A node may not take the file's name.
    one_error(
        "[[nodes]]\nnames = \"metrics\"\naddress = \"{name}:5640\"\n",
        "t.toml:2:9: nodes[0].names: node name \"metrics\" is reserved",
    );
}

#[test]
fn control_section() {
    // Off unless enabled.
    assert_eq!(ok(NODES).control, ControlConfig::default());
    let c = ok(&format!("{NODES}[control]\nenabled = true\n"));
    assert!(c.control.enabled && c.control.user_signals.is_none());
    let c = ok(&format!(
        "{NODES}[control]\nenabled = true\nuser_signals = [\"TERM\", \"sigstop\", 18, \"KILL\", 15]\n"
    ));
    assert_eq!(c.control.user_signals, Some(vec![15, 19, 18, 9]));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A list without enabled: no ctl files, said.
    let c = ok(&format!("{NODES}[control]\nuser_signals = \"TERM\"\n"));
    assert!(!c.control.enabled);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    one_error(
        &format!("{NODES}[control]\nenabled = true\nuser_signals = [\"TERM\", \"BOOM\"]\n"),
        "t.toml:6:25: control.user_signals: \"BOOM\" is not a signal",
    );
    one_error(
        &format!("{NODES}[control]\nenabled = true\nuser_signals = [0]\n"),
        "t.toml:6:17: control.user_signals: 0 is not a signal",
    );
}

//! The TOML schema as serde sees it, and the loop that turns serde's
//! first-error-only behaviour into "every error at once".
//!
//! The raw structs only check *shape*: known keys (`deny_unknown_fields`)
//! and TOML types. Every leaf is `Option<Spanned<_>>` so that the resolver
//! can check values and required keys itself and point at their positions.
//!
//! serde stops at the first error. To report all of them, [`parse`]
//! deserializes, records the error, deletes the offending key from the
//! parsed document (located by the error's byte span) and tries again, until
//! the document deserializes. Deleted keys are remembered so that the
//! resolver does not then also report them as missing.

use std::collections::HashSet;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::Diags;

/// A bound on the delete-and-retry loop: each round removes one key, so
/// this is also the most errors one file can produce from this stage.
const MAX_ROUNDS: usize = 200;

/// A string or integer leaf whose accepted type depends on the key (sizes
/// take both, user lists take names or uids); checked by the resolver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Int(i64),
    /// Any other TOML type, kept so the resolver can name it in its error.
    Other(&'static str),
}

impl Scalar {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "a string",
            Scalar::Int(_) => "an integer",
            Scalar::Other(t) => t,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Other("a huge integer"), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other("a float"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other("a boolean"))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or an array of them: `listen = "x"` and `listen = ["x", "y"]`
/// both work, because admins write both.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OneOrMany {
    One(Scalar),
    Many(Vec<Spanned<Scalar>>),
}

impl OneOrMany {
    /// The items, each with its span; a single value gets `outer`.
    pub(crate) fn items(&self, outer: Range<usize>) -> Vec<Spanned<Scalar>> {
        match self {
            OneOrMany::One(s) => vec![Spanned::new(outer, s.clone())],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(Scalar::Str(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(Scalar::Int(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Scalar>>()? {
                    v.push(item);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

type Opt<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) server: Opt<RawServer>,
    pub(crate) pool: Opt<RawPool>,
    pub(crate) nodes: Option<Vec<Spanned<RawNodes>>>,
    pub(crate) cache: Opt<RawCache>,
    pub(crate) views: Opt<RawViews>,
    pub(crate) metrics: Opt<RawMetrics>,
    pub(crate) control: Opt<RawControl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub(crate) enabled: Opt<bool>,
    pub(crate) user_signals: Opt<OneOrMany>,
    pub(crate) user_signals_per_minute: Opt<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) listen: Opt<OneOrMany>,
    pub(crate) auth: Opt<String>,
    pub(crate) key_file: Opt<String>,
    pub(crate) socket_mode: Opt<Scalar>,
    pub(crate) max_connections: Opt<i64>,
    pub(crate) max_connections_per_user: Opt<i64>,
    pub(crate) attach_timeout: Opt<String>,
    pub(crate) snapshot_bytes: Opt<Scalar>,
    pub(crate) snapshot_bytes_per_user: Opt<Scalar>,
    pub(crate) msize: Opt<Scalar>,
    pub(crate) name: Opt<String>,
    pub(crate) service_users: Opt<OneOrMany>,
    pub(crate) threads: Opt<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) max_in_flight: Opt<i64>,
    pub(crate) max_in_flight_per_node: Opt<i64>,
    pub(crate) max_in_flight_per_user: Opt<i64>,
    pub(crate) request_timeout: Opt<String>,
    pub(crate) deadline: Opt<String>,
    pub(crate) connect_timeout: Opt<String>,
    pub(crate) reconnect_min: Opt<String>,
    pub(crate) reconnect_max: Opt<String>,
    pub(crate) connect: Opt<String>,
    pub(crate) connect_concurrency: Opt<i64>,
    pub(crate) msize: Opt<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNodes {
    pub(crate) names: Opt<String>,
    pub(crate) address: Opt<String>,
    pub(crate) aname: Opt<String>,
    pub(crate) dialect: Opt<String>,
    pub(crate) uname: Opt<String>,
    pub(crate) uid: Opt<i64>,
    pub(crate) auth: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub(crate) default_ttl: Opt<String>,
    pub(crate) max_bytes: Opt<Scalar>,
    pub(crate) max_entry_bytes: Opt<Scalar>,
    pub(crate) builtin_rules: Opt<bool>,
    pub(crate) rule: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) path: Opt<String>,
    pub(crate) ttl: Opt<String>,
    pub(crate) stale: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawViews {
    pub(crate) mode: Opt<String>,
    pub(crate) unallotted: Opt<String>,
    pub(crate) admin_users: Opt<OneOrMany>,
    pub(crate) admin_groups: Opt<OneOrMany>,
    pub(crate) allot: Option<Vec<Spanned<RawAllot>>>,
    pub(crate) allot_command: Opt<OneOrMany>,
    pub(crate) allot_refresh: Opt<String>,
    pub(crate) allot_timeout: Opt<String>,
    pub(crate) allot_from_jobs: Opt<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAllot {
    pub(crate) user: Opt<Scalar>,
    pub(crate) group: Opt<Scalar>,
    pub(crate) nodes: Opt<String>,
}

/// The top-level tables that are single tables, for the "write `[x]`" hint.
const SECTIONS: &[&str] = &["server", "pool", "cache", "views", "metrics", "control"];

/// Keys that hold arrays of tables, for the "write `[[x]]`" hint.
const TABLE_ARRAYS: &[&str] = &["nodes", "cache.rule", "views.allot"];

/// Parses `text` into the raw schema, recording every syntax, unknown-key and
/// type error in `diags`. Returns `None` after syntax errors (a recovered
/// parse tree produces confusing follow-on errors); otherwise the raw config
/// and the set of key paths deleted because of errors.
pub(crate) fn parse(text: &str, diags: &mut Diags<'_>) -> Option<(RawConfig, HashSet<String>)> {
    let (mut root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // The recovering parser reports cascades; one error per line is
        // enough to fix the file.
        let mut seen_lines = HashSet::new();
        for e in syntax {
            let span = e.span();
            let line = span.as_ref().map(|s| diags.pos(s.start).line);
            if seen_lines.insert(line) {
                diags.error(span, "", format!("TOML syntax: {}", e.message()));
            }
        }
        return None;
    }
    let mut pruned = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let err = match RawConfig::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(raw) => return Some((raw, pruned)),
            Err(e) => e,
        };
        let Some(span) = err.span() else {
            diags.error(None, "", err.message().to_string());
            return None;
        };
        let Some(path) = locate(root.get_ref(), &span) else {
            diags.error(Some(span), "", err.message().to_string());
            return None;
        };
        let mut path = path;
        let message = match path.as_slice() {
            // `[[server]]`: serde would try to read the array as a struct
            // written as a tuple and complain about its first field.
            [Step::Key(s), Step::Index(_), ..] if SECTIONS.contains(&s.as_str()) => {
                let m = format!("[{s}] is a single table: write [{s}], not [[{s}]]");
                path.truncate(1);
                m
            }
            _ => rewrite(err.message(), &path_string(&path)),
        };
        diags.error(Some(span), &path_string(&path), message);
        // Delete the nearest enclosing *key*: deleting an array element
        // would renumber its siblings and mislabel their later errors.
        while matches!(path.last(), Some(Step::Index(_))) {
            path.pop();
        }
        pruned.insert(path_string(&path));
        if !remove(root.get_mut(), &path) {
            return None;
        }
    }
    diags.error(
        None,
        "",
        format!("too many errors (stopped after {MAX_ROUNDS})"),
    );
    None
}

/// One step of a key path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// Formats a path as `cache.rule[1].ttl`, quoting keys that need it.
pub(crate) fn path_string(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    s.push_str(k);
                } else {
                    s.push_str(&format!("{k:?}"));
                }
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Finds the entry an error span points at: the deepest key or value whose
/// span is exactly `span`, else the deepest value containing it.
fn locate(root: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    struct Best {
        exact: Option<Vec<Step>>,
        containing: Option<Vec<Step>>,
    }
    fn visit_value(
        v: &Spanned<DeValue<'_>>,
        path: &mut Vec<Step>,
        span: &Range<usize>,
        best: &mut Best,
    ) {
        let vs = v.span();
        if vs == *span {
            best.exact = Some(path.clone());
        } else if vs.start <= span.start && span.end <= vs.end {
            best.containing = Some(path.clone());
        }
        match v.get_ref() {
            DeValue::Table(t) => visit_table(t, path, span, best),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    path.push(Step::Index(i));
                    visit_value(item, path, span, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    fn visit_table(t: &DeTable<'_>, path: &mut Vec<Step>, span: &Range<usize>, best: &mut Best) {
        for (k, v) in t.iter() {
            path.push(Step::Key(k.get_ref().to_string()));
            if k.span() == *span {
                best.exact = Some(path.clone());
            }
            visit_value(v, path, span, best);
            path.pop();
        }
    }
    let mut best = Best {
        exact: None,
        containing: None,
    };
    visit_table(root, &mut Vec::new(), span, &mut best);
    best.exact.or(best.containing).filter(|p| !p.is_empty())
}

/// Deletes the key at `path` (which ends with a key). False if not found.
fn remove(root: &mut DeTable<'_>, path: &[Step]) -> bool {
    let Some((Step::Key(last), parents)) = path.split_last() else {
        return false;
    };
    let mut table = root;
    let mut rest = parents;
    while let Some((Step::Key(k), after)) = rest.split_first() {
        let Some(mut value) = table.get_mut(k.as_str()).map(Spanned::get_mut) else {
            return false;
        };
        rest = after;
        while let Some((Step::Index(i), after)) = rest.split_first() {
            let DeValue::Array(a) = value else {
                return false;
            };
            let Some(item) = a.get_mut(*i) else {
                return false;
            };
            value = item.get_mut();
            rest = after;
        }
        let DeValue::Table(t) = value else {
            return false;
        };
        table = t;
    }
    table.remove(last.as_str()).is_some()
}

/// Makes serde's wording fit the rest of the messages.
fn rewrite(msg: &str, key: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let expected = tail
            .trim_start_matches(", ")
            .replace("expected one of ", "")
            .replace("expected ", "")
            .replace('`', "");
        let valid = if expected.starts_with("there are no fields") {
            "no keys are allowed here".to_string()
        } else {
            format!("expected one of: {expected}")
        };
        return format!("unknown key {name:?}: {valid}");
    }
    if TABLE_ARRAYS.contains(&key) && msg.contains("expected a sequence") {
        return format!("{msg} (write [[{key}]], with double brackets, once per entry)");
    }
    // Don't leak Rust type names (`struct RawServer`, `i64`) to admins.
    if let Some(i) = msg.find("expected struct ") {
        return format!("{}expected a table", &msg[..i]);
    }
    msg.replace("expected i64", "expected an integer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> (Option<(RawConfig, HashSet<String>)>, Vec<String>) {
        let mut d = Diags::new("t.toml", text);
        let r = parse(text, &mut d);
        (r, d.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn clean_document() {
        let (r, errs) = run("[server]\nlisten = [\"127.0.0.1:1\"]\n[[nodes]]\nnames = \"a\"\n");
        assert!(errs.is_empty(), "{errs:?}");
        let (raw, pruned) = r.unwrap();
        assert!(pruned.is_empty());
        assert_eq!(raw.nodes.unwrap().len(), 1);
    }

    #[test]
    fn every_unknown_key_and_type_error() {
        let text = "\
[server]
lisen = 1
max_connections = \"many\"

[[nodes]]
names = \"a\"
adress = \"x\"

[[nodes]]
names = 5

[cache]
max_bytes = 1.5
[[cache.rule]]
path = \"/x\"
tll = \"1s\"
";
        let (r, errs) = run(text);
        let (raw, pruned) = r.unwrap();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        let has = |s: &str| errs.iter().any(|e| e.contains(s));
        assert!(
            has("t.toml:2:1: server.lisen: unknown key \"lisen\": expected one of: listen,"),
            "{errs:#?}"
        );
        assert!(
            has("t.toml:3:19: server.max_connections: invalid type: string \"many\""),
            "{errs:#?}"
        );
        assert!(
            has("t.toml:7:1: nodes[0].adress: unknown key \"adress\""),
            "{errs:#?}"
        );
        assert!(
            has("t.toml:10:9: nodes[1].names: invalid type: integer `5`, expected a string"),
            "{errs:#?}"
        );
        assert!(
            has("t.toml:16:1: cache.rule[0].tll: unknown key"),
            "{errs:#?}"
        );
        assert!(pruned.contains("nodes[1].names"));
        // The float passes the shape check; the resolver rejects it.
        assert!(matches!(
            raw.cache
                .unwrap()
                .into_inner()
                .max_bytes
                .unwrap()
                .into_inner(),
            Scalar::Other("a float")
        ));
    }

    #[test]
    fn single_table_where_an_array_is_needed() {
        let (_, errs) = run("[nodes]\nnames = \"a\"\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("write [[nodes]]"), "{errs:?}");
    }

    #[test]
    fn messages_name_toml_types_not_rust_types() {
        let (_, errs) = run("[[server]]\n[pool]\nmax_in_flight = \"8\"\n");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with(
                "t.toml:1:1: server: [server] is a single table: write [server], not [[server]]"
            )),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.ends_with("expected an integer")),
            "{errs:?}"
        );
    }

    #[test]
    fn scalar_where_a_table_belongs() {
        let (_, errs) = run("views = 5\n");
        assert_eq!(
            errs,
            ["t.toml:1:9: views: invalid type: integer `5`, expected a table"]
        );
    }

    #[test]
    fn wrong_item_type_in_list_deletes_the_list() {
        let (r, errs) = run("[server]\nlisten = [\"a:1\", [1]]\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("t.toml:2:"), "{errs:?}");
        assert!(r.unwrap().1.contains("server.listen"));
    }

    #[test]
    fn syntax_errors_one_per_line() {
        let (r, mut errs) = run("a = \"unterminated\n[server\nlisten = = 1\n");
        errs.sort();
        assert!(r.is_none());
        assert!(errs.len() >= 2, "{errs:?}");
        assert!(errs.iter().all(|e| e.contains("TOML syntax")), "{errs:?}");
        assert!(errs[0].starts_with("t.toml:1:"), "{errs:?}");
        let lines: HashSet<&str> = errs.iter().map(|e| e.split(':').nth(1).unwrap()).collect();
        assert_eq!(lines.len(), errs.len());
    }

    #[test]
    fn paths_are_quoted_when_needed() {
        assert_eq!(
            path_string(&[
                Step::Key("cache".into()),
                Step::Key("rule".into()),
                Step::Index(1),
                Step::Key("ttl".into())
            ]),
            "cache.rule[1].ttl"
        );
        assert_eq!(path_string(&[Step::Key("a b".into())]), "\"a b\"");
    }
}

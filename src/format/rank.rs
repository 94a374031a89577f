//! The name of a ranked excerpt of `/ps`, `/top/<query>`: a view's
//! processes ranked by %CPU or memory, the first few served by the
//! aggregator. A live view (`gproc top`) shows forty rows of a cluster's
//! million; reading them ranked spares the aggregator writing and sending
//! every other row each second.
//!
//! ```text
//! cpu                      the first DEFAULT_ROWS by %CPU
//! mem:rows=40              the first 40 by resident memory
//! cpu:rows=40:users=alice+bob:hosts=node[001-100]
//! ```
//!
//! The key comes first; options follow, each `:name=value`, at most once
//! each, in any order. Users are joined by `+` (a user name holds no `+`
//! or `:`); `hosts` is a hostlist (checked by the aggregator).
//!
//! The file is a `/ps` table: the header, the rows as `/ps` has them for
//! the same reader, in rank order, then a [`COUNT_NOTE`] line with how
//! many processes matched, then `/ps`'s notes. Rank order: the key
//! descending as printed (%CPU in tenths, RSS in KiB), then the other one
//! descending, then the node (natural order), then the pid.
//!
//! Growth: a new key or option is a new name; an older aggregator answers
//! a name it does not know with ENOENT (as it answers `/top` itself), and
//! its reader falls back to `/ps`.

use std::fmt;

/// Rows when the query names none.
pub const DEFAULT_ROWS: usize = 100;

/// Most rows a query may ask for.
pub const MAX_ROWS: usize = 100_000;

/// Longest query name: a 9P name (Linux caps names at 255 bytes).
pub const MAX_NAME: usize = 255;

/// The note after the rows: `# matched N` (processes that passed the
/// query's filters, ranked or not).
pub const COUNT_NOTE: &str = "matched";

/// What processes are ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankKey {
    /// %CPU, highest first.
    Cpu,
    /// Resident memory, largest first.
    Mem,
}

impl RankKey {
    /// Its name in a query.
    pub fn name(self) -> &'static str {
        match self {
            RankKey::Cpu => "cpu",
            RankKey::Mem => "mem",
        }
    }

    /// Both, in listing order.
    pub const ALL: [RankKey; 2] = [RankKey::Cpu, RankKey::Mem];
}

/// A parsed `/top/<query>` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankQuery {
    /// Ranked by.
    pub key: RankKey,
    /// How many rows at most.
    pub rows: usize,
    /// Only these users' processes (by the `/ps` user cell); empty: all
    /// the reader sees.
    pub users: Vec<String>,
    /// Only the nodes of this hostlist (text, checked by the aggregator).
    pub hosts: Option<String>,
}

impl RankQuery {
    /// The first [`DEFAULT_ROWS`] by `key`, unfiltered.
    pub fn new(key: RankKey) -> Self {
        RankQuery {
            key,
            rows: DEFAULT_ROWS,
            users: Vec::new(),
            hosts: None,
        }
    }

    /// Parses a query name; the error says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.len() > MAX_NAME {
            return Err(format!("longer than {MAX_NAME} bytes"));
        }
        let mut parts = name.split(':');
        let key = match parts.next().unwrap_or_default() {
            "cpu" => RankKey::Cpu,
            "mem" => RankKey::Mem,
            other => return Err(format!("expected cpu or mem first, found {other:?}")),
        };
        let mut q = RankQuery::new(key);
        let (mut rows, mut users, mut hosts) = (false, false, false);
        for opt in parts {
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("expected name=value, found {opt:?}"))?;
            let once = |seen: &mut bool| {
                if std::mem::replace(seen, true) {
                    Err(format!("{k} given twice"))
                } else {
                    Ok(())
                }
            };
            match k {
                "rows" => {
                    once(&mut rows)?;
                    q.rows = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_ROWS).contains(n))
                        .ok_or_else(|| format!("rows: expected 1 to {MAX_ROWS}, found {v:?}"))?;
                }
                "users" => {
                    once(&mut users)?;
                    q.users = v.split('+').map(str::to_string).collect();
                    if q.users.iter().any(|u| u.is_empty() || !valid_text(u)) {
                        return Err(format!("users: expected names joined by +, found {v:?}"));
                    }
                }
                "hosts" => {
                    once(&mut hosts)?;
                    if v.is_empty() || !valid_text(v) {
                        return Err(format!("hosts: expected a hostlist, found {v:?}"));
                    }
                    q.hosts = Some(v.to_string());
                }
                _ => return Err(format!("unknown option {k:?} (rows, users, hosts)")),
            }
        }
        Ok(q)
    }
}

/// Printable ASCII without the query's separators or a path's `/`.
fn valid_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b':' | b'/' | b'='))
}

/// The name, as [`RankQuery::parse`] reads it (options left out when
/// they are the defaults).
impl fmt::Display for RankQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key.name())?;
        if self.rows != DEFAULT_ROWS {
            write!(f, ":rows={}", self.rows)?;
        }
        if !self.users.is_empty() {
            write!(f, ":users={}", self.users.join("+"))?;
        }
        if let Some(h) = &self.hosts {
            write!(f, ":hosts={h}")?;
        }
        Ok(())
    }
}

/// The count line after a ranking's rows: `# matched N`.
pub fn count_line(matched: usize) -> String {
    format!("# {COUNT_NOTE} {matched}\n")
}

/// The count a [`count_line`] says, if `line` is one.
pub fn parse_count_line(line: &str) -> Option<usize> {
    line.strip_prefix('#')?
        .trim_start()
        .strip_prefix(COUNT_NOTE)?
        .strip_prefix(' ')?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_parse_and_print_back() {
        let q = RankQuery::parse("mem:rows=40:users=alice+bob:hosts=n[001-100,200]").unwrap();
        assert_eq!(q.key, RankKey::Mem);
        assert_eq!(q.rows, 40);
        assert_eq!(q.users, ["alice", "bob"]);
        assert_eq!(q.hosts.as_deref(), Some("n[001-100,200]"));
        assert_eq!(
            q.to_string(),
            "mem:rows=40:users=alice+bob:hosts=n[001-100,200]"
        );
        assert_eq!(
            RankQuery::parse("cpu").unwrap(),
            RankQuery::new(RankKey::Cpu)
        );
        assert_eq!(RankQuery::new(RankKey::Cpu).to_string(), "cpu");
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        for (name, says) in [
            ("", "cpu or mem"),
            ("rss", "cpu or mem"),
            ("cpu:rows", "name=value"),
            ("cpu:rows=0", "rows: expected"),
            ("cpu:rows=100001", "rows: expected"),
            ("cpu:rows=x", "rows: expected"),
            ("cpu:rows=5:rows=6", "twice"),
            ("cpu:users=", "users"),
            ("cpu:users=a++b", "users"),
            ("cpu:hosts=", "hosts"),
            ("cpu:hosts=a b", "hosts"),
            ("cpu:sort=x", "unknown option"),
        ] {
            let e = RankQuery::parse(name).unwrap_err();
            assert!(e.contains(says), "{name:?}: {e}");
        }
        assert!(RankQuery::parse(&format!("cpu:hosts={}", "a".repeat(300))).is_err());
    }

    #[test]
    fn count_lines_read_back() {
        assert_eq!(parse_count_line(&count_line(1_000_000)), Some(1_000_000));
        assert_eq!(parse_count_line("# matched x"), None);
        assert_eq!(parse_count_line("# missing n1: down"), None);
    }

    proptest! {
        /// Any query printed parses back to itself.
        #[test]
        fn printed_queries_parse_back(
            mem in any::<bool>(),
            rows in 1usize..=MAX_ROWS,
            users in proptest::collection::vec("[a-z_][a-z0-9_.-]{0,8}", 0..4),
            hosts in proptest::option::of("[a-z]{1,5}(\\[[0-9]{1,3}-[0-9]{1,3}\\])?"),
        ) {
            let q = RankQuery {
                key: if mem { RankKey::Mem } else { RankKey::Cpu },
                rows,
                users,
                hosts,
            };
            prop_assert_eq!(RankQuery::parse(&q.to_string()).unwrap(), q);
        }
    }
}

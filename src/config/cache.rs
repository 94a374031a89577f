//! Cache policy: which node files may be cached, and for how long.
//!
//! Rules map a glob over a path *relative to a node's root* (`/1234/status`,
//! `/loadavg`, `/.gproc/ps`) to a [`Ttl`]. The first matching rule wins; a
//! path no rule matches gets the default TTL. `*` never crosses `/`, so
//! `/*/status` is a process's `status` and not `/1234/task/1234/status`.
//!
//! The built-in rules mark files that are secret or costly to produce
//! (`environ`, `mem`, `maps`, `fd/*`, ...) as never cached: caching `environ`
//! would keep secrets in the aggregator's memory, and a stale `maps` is
//! useless to the debugger that asked for it. They are appended after the
//! admin's own rules unless `builtin_rules = false`, so an admin's rule
//! always takes precedence but forgetting one never exposes `mem`.

use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};

use super::units::{ByteSize, Ttl};

/// Default TTL for paths no rule matches.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);
/// Default bound on the whole cache.
pub const DEFAULT_MAX_BYTES: ByteSize = ByteSize(256 << 20);
/// Default bound on one cached file; larger files are read through.
pub const DEFAULT_MAX_ENTRY_BYTES: ByteSize = ByteSize(4 << 20);

/// Per-process files that are secret, large, or only meaningful live.
const NEVER_PER_PROCESS: &str = "{environ,auxv,mem,pagemap,maps,smaps,smaps_rollup,numa_maps,\
syscall,stack,wchan,personality,timers,clear_refs,coredump_filter,sched,schedstat,\
oom_score_adj,oom_adj,loginuid,sessionid,attr/*,ns/*,fd/*,fdinfo/*,map_files/*}";

/// Per-process files that `ps` and `top` read for every process.
const HOT_PER_PROCESS: &str = "{status,stat,statm,cmdline,io}";

/// Node-wide files that are secret or expensive: kernel memory, the kernel
/// log, symbol addresses, per-page tables, write-only triggers.
const NEVER_NODE: &str = "/{kcore,kmsg,kallsyms,kpagecount,kpageflags,kpagecgroup,\
vmallocinfo,slabinfo,timer_list,sysrq-trigger,keys,key-users}";

/// The built-in rules in match order: `(glob, ttl)`, `None` meaning never.
/// `config/gproc.toml` documents the same list.
pub fn builtin_rule_specs() -> Vec<(String, Option<Duration>)> {
    let one = Some(Duration::from_secs(1));
    let two = Some(Duration::from_secs(2));
    vec![
        // The node summary: one read per node replaces hundreds.
        ("/.gproc/ps".to_string(), one),
        // Anything else in the agent's private directory is live.
        ("/.gproc/**".to_string(), None),
        // Node-wide files behind `/load` and `/nodes`.
        ("/{loadavg,meminfo,uptime,stat}".to_string(), one),
        (NEVER_NODE.to_string(), None),
        (format!("/*/{NEVER_PER_PROCESS}"), None),
        (format!("/*/task/*/{NEVER_PER_PROCESS}"), None),
        (format!("/*/{HOT_PER_PROCESS}"), two),
        (format!("/*/task/*/{HOT_PER_PROCESS}"), two),
    ]
}

/// One rule: a path glob and what to do with the paths it matches.
#[derive(Debug, Clone)]
pub struct CacheRule {
    /// The compiled glob (`*` does not cross `/`).
    pub pattern: GlobMatcher,
    /// The glob as written, for messages and `gproc config check`.
    pub text: String,
    /// How long a read stays fresh.
    pub ttl: Ttl,
    /// Grace period *after* the TTL (like HTTP's `stale-while-revalidate`):
    /// a copy up to `ttl + stale` old may be served while a fresh one is
    /// being fetched, or while the node is down. `None`: never serve stale.
    pub stale: Option<Duration>,
    /// True for the built-in rules, so a listing can tell them apart.
    pub builtin: bool,
}

impl CacheRule {
    /// Compiles a rule. `path` must start with `/`.
    ///
    /// # Errors
    /// A message for a path without a leading `/` or a bad glob.
    pub fn new(path: &str, ttl: Ttl, stale: Option<Duration>) -> Result<Self, String> {
        Ok(Self {
            pattern: compile_glob(path)?,
            text: path.to_string(),
            ttl,
            stale,
            builtin: false,
        })
    }

    /// Whether this rule applies to `path`.
    pub fn matches(&self, path: &str) -> bool {
        self.pattern.is_match(path)
    }
}

/// Compiles a cache-rule glob with the semantics the docs promise.
///
/// # Errors
/// A message for a path without a leading `/` or a glob syntax error.
pub fn compile_glob(path: &str) -> Result<GlobMatcher, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "invalid path pattern {path:?}: must start with '/' (paths are relative to a node's root, e.g. \"/*/status\")"
        ));
    }
    GlobBuilder::new(path)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid path pattern {path:?}: {}", e.kind()))
}

/// What the cache should do with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheDecision {
    /// Freshness period, or never cached.
    pub ttl: Ttl,
    /// Stale grace period past the TTL, if any.
    pub stale: Option<Duration>,
    /// Index into [`CachePolicy::rules`] of the rule that decided, or `None`
    /// for the default.
    pub rule: Option<usize>,
}

/// The whole `[cache]` section, resolved.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    /// TTL for paths no rule matches.
    pub default_ttl: Ttl,
    /// Bound on the bytes held by the whole cache, but for the one
    /// summary per node that every table needs (held beside it, see
    /// [`crate::cache::Kind::PER_NODE`]).
    pub max_bytes: ByteSize,
    /// Files larger than this are served but not kept.
    pub max_entry_bytes: ByteSize,
    /// The rules in match order: the admin's, then the built-ins (if on).
    pub rules: Vec<CacheRule>,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Ttl::For(DEFAULT_TTL),
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            rules: builtin_rules(),
        }
    }
}

impl CachePolicy {
    /// The first rule matching `path` (node-relative, starting with `/`).
    pub fn rule_for(&self, path: &str) -> Option<&CacheRule> {
        self.rules.iter().find(|r| r.matches(path))
    }

    /// The TTL and stale bound for `path`: the first matching rule's, or
    /// the default.
    pub fn ttl_for(&self, path: &str) -> CacheDecision {
        match self.rules.iter().position(|r| r.matches(path)) {
            Some(i) => CacheDecision {
                ttl: self.rules[i].ttl,
                stale: self.rules[i].stale,
                rule: Some(i),
            },
            None => CacheDecision {
                ttl: self.default_ttl,
                stale: None,
                rule: None,
            },
        }
    }

    /// How many rules came from the file (the rest are built-in).
    pub fn user_rule_count(&self) -> usize {
        self.rules.iter().filter(|r| !r.builtin).count()
    }
}

/// The built-in rules, compiled. See [`builtin_rule_specs`].
pub fn builtin_rules() -> Vec<CacheRule> {
    builtin_rule_specs()
        .into_iter()
        .filter_map(|(glob, ttl)| {
            // Constant globs, covered by the `builtins_compile` test.
            let pattern = compile_glob(&glob).ok()?;
            Some(CacheRule {
                pattern,
                text: glob,
                ttl: ttl.map_or(Ttl::Never, Ttl::For),
                stale: None,
                builtin: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compile() {
        for (glob, _) in builtin_rule_specs() {
            compile_glob(&glob).unwrap();
        }
        assert_eq!(builtin_rules().len(), builtin_rule_specs().len());
    }

    #[test]
    fn builtin_decisions() {
        let p = CachePolicy::default();
        let ttl = |path: &str| p.ttl_for(path).ttl;
        let secs = |s| Ttl::For(Duration::from_secs(s));
        for hot in [
            "/1234/status",
            "/1/stat",
            "/1/statm",
            "/1/cmdline",
            "/1/io",
            "/1/task/2/status",
        ] {
            assert_eq!(ttl(hot), secs(2), "{hot}");
        }
        for node in ["/loadavg", "/meminfo", "/uptime", "/stat", "/.gproc/ps"] {
            assert_eq!(ttl(node), secs(1), "{node}");
        }
        for never in [
            "/1/maps",
            "/1/smaps",
            "/1/smaps_rollup",
            "/1/environ",
            "/1/fd/3",
            "/1/fdinfo/3",
            "/1/mem",
            "/1/pagemap",
            "/1/task/7/environ",
            "/1/task/7/fd/0",
            "/1/ns/net",
            "/kcore",
            "/kmsg",
            "/sysrq-trigger",
            "/.gproc/other",
        ] {
            assert_eq!(ttl(never), Ttl::Never, "{never}");
        }
        // Unlisted files get the default.
        assert_eq!(ttl("/cpuinfo"), secs(1));
        assert_eq!(p.ttl_for("/cpuinfo").rule, None);
        // `*` does not cross '/': a deeper `status` is not a process's.
        assert!(
            p.rule_for("/1/task/2/status")
                .is_some_and(|r| r.text.contains("task"))
        );
    }

    #[test]
    fn first_match_wins_and_star_stays_in_one_component() {
        let rules = vec![
            CacheRule::new("/*/status", Ttl::For(Duration::from_secs(5)), None).unwrap(),
            CacheRule::new("/**/status", Ttl::Never, None).unwrap(),
        ];
        let p = CachePolicy {
            rules,
            ..CachePolicy::default()
        };
        assert_eq!(p.ttl_for("/1/status").ttl, Ttl::For(Duration::from_secs(5)));
        assert_eq!(p.ttl_for("/1/status").rule, Some(0));
        assert_eq!(p.ttl_for("/1/task/1/status").ttl, Ttl::Never);
        assert_eq!(p.ttl_for("/1/task/1/status").rule, Some(1));
        assert_eq!(p.ttl_for("/x").rule, None);
    }

    #[test]
    fn glob_errors() {
        assert!(
            compile_glob("*/status")
                .unwrap_err()
                .contains("must start with '/'")
        );
        assert!(
            compile_glob("/[a")
                .unwrap_err()
                .starts_with("invalid path pattern \"/[a\": ")
        );
        assert!(compile_glob("/{a,b").is_err());
    }
}

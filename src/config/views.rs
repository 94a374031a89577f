//! Who sees what: administrators, and allotments of nodes to users and
//! groups, static or from a command (typically a scheduler query).
//!
//! This module only holds the configuration and parses the command's output.
//! Enforcing views (only a user's own processes, only allotted nodes,
//! invisible things not walkable) is the `view` and `tree` modules' job.

use std::fmt;
use std::time::Duration;

use super::hostlist::Hostlist;

/// Default interval between runs of the allotment command.
pub const DEFAULT_ALLOT_REFRESH: Duration = Duration::from_secs(60);
/// Default time limit for one run of the allotment command.
pub const DEFAULT_ALLOT_TIMEOUT: Duration = Duration::from_secs(10);

/// A user or group, by name or by numeric id. Names are resolved by the
/// `view` module at run time, since `/etc/passwd` and LDAP change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ident {
    /// A name such as `alice` or `wheel`.
    Name(String),
    /// A numeric uid or gid.
    Id(u32),
}

impl Ident {
    /// Parses a name, or a number as an id.
    ///
    /// # Errors
    /// A message for an empty name or one with whitespace, `:` or `/`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Ident::Id)
                .map_err(|_| format!("id {s:?} is out of range"));
        }
        if s.is_empty() {
            return Err("empty name".to_string());
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == ':' || *c == '/')
        {
            return Err(format!("invalid name {s:?}: character {c:?}"));
        }
        Ok(Ident::Name(s.to_string()))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ident::Name(n) => f.write_str(n),
            Ident::Id(i) => write!(f, "{i}"),
        }
    }
}

/// Who an allotment is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// One user.
    User(Ident),
    /// Every member of a group.
    Group(Ident),
}

/// Nodes given to a user or group: they see those nodes and, on them, only
/// their own processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allotment {
    /// Who.
    pub who: Principal,
    /// Which nodes; kept unexpanded, tested with [`Hostlist::contains`].
    pub nodes: Hostlist,
}

/// A command whose output lists allotments, rerun periodically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllotCommand {
    /// Program and arguments, run without a shell (no quoting surprises).
    pub argv: Vec<String>,
    /// Time between runs.
    pub refresh: Duration,
    /// A run taking longer is killed and the previous allotments are kept.
    pub timeout: Duration,
}

/// Whether views are enforced (`[views] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewsMode {
    /// Every identity sees its view (the default, also without a config).
    #[default]
    On,
    /// Everyone is an administrator: for a single-user test setup and the
    /// demo only. Never implied by anything but `mode = "off"`.
    Off,
}

/// What a user with no allotment sees (`[views] unallotted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unallotted {
    /// Their own processes on every node where one runs, and those nodes'
    /// node-wide files (their "global to me" space).
    #[default]
    OwnProcesses,
    /// Nothing: no node exists for them.
    Nothing,
}

/// The `[views]` section, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewsConfig {
    /// On, or explicitly off.
    pub mode: ViewsMode,
    /// What users without an allotment see.
    pub unallotted: Unallotted,
    /// Users who see everything (uid 0 always does; empty: no one else).
    pub admin_users: Vec<Ident>,
    /// Members of these groups see everything.
    pub admin_groups: Vec<Ident>,
    /// Static allotments from the file.
    pub allot: Vec<Allotment>,
    /// Dynamic allotments, added to the static ones.
    pub allot_command: Option<AllotCommand>,
    /// Allotments from jobs, added to the others: each user is allotted
    /// the nodes where a process of theirs (real uid) runs in a batch job
    /// (recognised from its cgroups), refreshed with the node summaries.
    pub allot_from_jobs: bool,
}

impl Default for ViewsConfig {
    fn default() -> Self {
        Self {
            mode: ViewsMode::On,
            unallotted: Unallotted::OwnProcesses,
            admin_users: vec![Ident::Name("root".to_string())],
            admin_groups: Vec::new(),
            allot: Vec::new(),
            allot_command: None,
            allot_from_jobs: false,
        }
    }
}

/// Parses the allotment command's output: one `USER HOSTLIST` or
/// `@GROUP HOSTLIST` per line, blank lines and `#` comments ignored. This is
/// what `squeue -h -t R -o "%u %N"` prints; its `(null)` node list (a job
/// not yet placed) is skipped. A user may appear on many lines.
///
/// Returns the good lines and a message per bad line, so that one odd line
/// does not take everyone's view away.
pub fn parse_allot_output(text: &str) -> (Vec<Allotment>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(who), Some(nodes), None) = (fields.next(), fields.next(), fields.next()) else {
            errors.push(format!(
                "line {}: expected \"USER HOSTLIST\" or \"@GROUP HOSTLIST\", got {line:?}",
                i + 1
            ));
            continue;
        };
        if nodes == "(null)" || nodes == "None" {
            continue;
        }
        let principal = match who.strip_prefix('@') {
            Some(g) => Ident::parse(g).map(Principal::Group),
            None => Ident::parse(who).map(Principal::User),
        };
        let principal = match principal {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("line {}: {e}", i + 1));
                continue;
            }
        };
        match Hostlist::parse(nodes) {
            Ok(h) => out.push(Allotment {
                who: principal,
                nodes: h,
            }),
            Err(e) => errors.push(format!("line {}: invalid hostlist {nodes:?}: {e}", i + 1)),
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents() {
        assert_eq!(Ident::parse("alice"), Ok(Ident::Name("alice".into())));
        assert_eq!(Ident::parse("1000"), Ok(Ident::Id(1000)));
        assert!(Ident::parse("99999999999").is_err());
        assert!(Ident::parse("").is_err());
        assert!(Ident::parse("a b").is_err());
        assert!(Ident::parse("a:b").is_err());
    }

    #[test]
    fn allot_output() {
        let text = "\
# from squeue
alice n[0001-0004]
bob   n0007
carol (null)
@physics rack[1-2]n[01-32]
dave
eve n[1-
";
        let (ok, bad) = parse_allot_output(text);
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].who, Principal::User(Ident::Name("alice".into())));
        assert!(ok[0].nodes.contains("n0003"));
        assert_eq!(ok[2].who, Principal::Group(Ident::Name("physics".into())));
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].starts_with("line 6:"), "{bad:?}");
        assert!(bad[1].starts_with("line 7: invalid hostlist"), "{bad:?}");
    }
}

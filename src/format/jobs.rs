//! Which batch job (and step) a process runs in, from its
//! `/proc/<pid>/cgroup`: a small table of patterns, one per workload
//! manager's documented cgroup layout, matched against each line's path.
//!
//! # Why patterns anchored at the manager's root
//!
//! A cgroup path names a job only where the workload manager (root) made
//! it. Users may own cgroups too (systemd delegates
//! `/user.slice/user-1000.slice/user@1000.service/...` to user 1000), and
//! there they can name a directory `job_123`. So every pattern matches a
//! path **from the root of its hierarchy**, one pattern component per path
//! component (a wildcard never crosses a `/`): `/slurm/uid_*/job_{job}`
//! matches `/slurm/uid_1000/job_42/step_0/task_0` but never
//! `/user.slice/.../slurm/uid_1000/job_42`. A pattern's first component
//! must begin with literal text, so no pattern can start with a wildcard
//! that reaches into a user's tree. The paths are those of the reader's
//! cgroup namespace, so the agent must run in the host's: in a container
//! with its own, the container's cgroup is `/` and no pattern matches.
//!
//! # Pattern syntax (`--job-cgroup`)
//!
//! `/COMPONENT/COMPONENT/...`, each component literal text with, at most
//! once each per pattern, `{job}` (required) and `{step}` (optional, in a
//! component after the job's), and any number of `*` (any run of
//! characters within the component, possibly empty). The pattern matches a
//! path that starts with components of that shape (deeper components, a
//! task's own cgroup, are allowed). A captured id is 1 to
//! [`MAX_ID_LEN`] characters of `A-Z a-z 0-9 . _ - + [ ] @`, at least one
//! a letter or digit; a path whose id has anything else is not a job. Examples: the built-in
//! [`BUILTIN`] patterns.
//!
//! # Layouts recognised out of the box
//!
//! - Slurm, cgroup v1 (`cgroups.html` of the Slurm documentation, and
//!   Slurm's task/cgroup sources): `/slurm/uid_<uid>/job_<id>/step_<step>`
//!   in each hierarchy Slurm uses (`cpuset`, `memory`, `freezer`,
//!   `cpu,cpuacct`, `devices`); `/slurm_<nodename>/...` when slurmd was
//!   built with `--enable-multiple-slurmd`.
//! - Slurm, cgroup v2 (`cgroup_v2.html`):
//!   `/system.slice/slurmstepd.scope/job_<id>/step_<step>/...`, and
//!   `/system.slice/<nodename>_slurmstepd.scope/...` with multiple slurmd.
//!   Steps are numbers, `batch`, `extern` or `interactive`. The scope's
//!   own `system` directory (slurmstepd's waiting area) is no job.
//! - PBS Professional / OpenPBS, cgroups hook:
//!   `/pbs_jobs.service/jobid/<jobid>` (no steps).
//!
//! Flux's cgroups are not in this table: with `sdexec` Flux runs each job
//! shell as a systemd unit (`imp-shell-<rank>-<jobid>.service`) of the
//! Flux instance owner's own systemd, a layout Flux documents only through
//! its sources and that differs between sites; a site adds it with
//! `--job-cgroup`.

use std::fmt;

/// Longest job or step id taken from a path.
pub const MAX_ID_LEN: usize = 64;

/// The job (and step) a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    /// The workload manager's job id (`42`, `12345.pbs01`).
    pub id: String,
    /// The step within the job (`0`, `batch`, `extern`), where the
    /// manager has steps and the process is in one.
    pub step: Option<String>,
}

/// The patterns built in, in the order they are tried: Slurm v2, Slurm
/// v1 (each also with a node name, for multiple slurmd per host), PBS.
pub const BUILTIN: &[&str] = &[
    "/system.slice/slurmstepd.scope/job_{job}/step_{step}",
    "/system.slice/*_slurmstepd.scope/job_{job}/step_{step}",
    "/slurm/uid_*/job_{job}/step_{step}",
    "/slurm_*/uid_*/job_{job}/step_{step}",
    "/pbs_jobs.service/jobid/{job}",
];

/// One piece of a component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Star,
    Job,
    Step,
}

/// A parsed pattern: one list of pieces per path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPattern {
    text: String,
    components: Vec<Vec<Piece>>,
}

/// Why a `--job-cgroup` pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "job cgroup pattern {pattern:?}: {msg} (syntax: /slurm/uid_*/job_{{job}}/step_{{step}}: components from the hierarchy's root, `*` within a component, {{job}} required, {{step}} optional)"
)]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub msg: String,
}

impl JobPattern {
    /// Parses a pattern (see the module doc for the syntax).
    pub fn parse(text: &str) -> Result<JobPattern, PatternError> {
        let err = |msg: &str| PatternError {
            pattern: text.to_string(),
            msg: msg.to_string(),
        };
        let Some(rest) = text.strip_prefix('/') else {
            return Err(err("must start with `/` (the hierarchy's root)"));
        };
        let mut components = Vec::new();
        let (mut job_at, mut step_at) = (None, None);
        for (i, comp) in rest.split('/').enumerate() {
            if comp.is_empty() {
                return Err(err("has an empty component (`//` or a trailing `/`)"));
            }
            let mut pieces = Vec::new();
            let mut lit = String::new();
            let mut chars = comp.char_indices().peekable();
            while let Some((at, c)) = chars.next() {
                match c {
                    '*' => {
                        if lit.is_empty() && matches!(pieces.last(), Some(Piece::Job | Piece::Step))
                        {
                            return Err(err(
                                "puts `*` right after {job} or {step} (where would the id end?)",
                            ));
                        }
                        if !lit.is_empty() {
                            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                        }
                        if pieces.last() != Some(&Piece::Star) {
                            pieces.push(Piece::Star);
                        }
                    }
                    '{' => {
                        let tail = &comp[at..];
                        let (piece, len) = if tail.starts_with("{job}") {
                            if job_at.is_some() {
                                return Err(err("has {job} more than once"));
                            }
                            job_at = Some(i);
                            (Piece::Job, 5)
                        } else if tail.starts_with("{step}") {
                            if step_at.is_some() {
                                return Err(err("has {step} more than once"));
                            }
                            step_at = Some(i);
                            (Piece::Step, 6)
                        } else {
                            return Err(err("has a `{` that is not {job} or {step}"));
                        };
                        if !lit.is_empty() {
                            pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                        }
                        if matches!(pieces.last(), Some(Piece::Star | Piece::Job | Piece::Step)) {
                            return Err(err(
                                "puts {job} or {step} right after `*` or another capture (where would one end?)",
                            ));
                        }
                        pieces.push(piece);
                        for _ in 1..len {
                            chars.next();
                        }
                    }
                    '}' => return Err(err("has a `}` that closes nothing")),
                    c if c.is_control() || c.is_whitespace() => {
                        return Err(err("has whitespace or a control character"));
                    }
                    c => lit.push(c),
                }
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(lit));
            }
            if i == 0 && !matches!(pieces.first(), Some(Piece::Lit(_))) {
                return Err(err(
                    "must begin with literal text (a root only the workload manager creates, e.g. /slurm or /system.slice): a leading wildcard or capture would reach users' own cgroups",
                ));
            }
            components.push(pieces);
        }
        let Some(job_at) = job_at else {
            return Err(err("has no {job}"));
        };
        if step_at.is_some_and(|s| s <= job_at) {
            return Err(err(
                "puts {step} before or beside {job}: a step is inside its job",
            ));
        }
        Ok(JobPattern {
            text: text.to_string(),
            components,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The job a cgroup path (as in `/proc/<pid>/cgroup`, starting with
    /// `/`) is in by this pattern. A path that stops after the job's
    /// component (a process in the job but in no step) gives no step, and
    /// so does one whose components after the job's do not match.
    pub fn match_path(&self, path: &str) -> Option<JobRef> {
        let rest = path.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let mut job = None;
        let mut step = None;
        for pieces in &self.components {
            let Some(part) = parts.next() else {
                // The path ended: fine after the job's component.
                break;
            };
            let mut caps = Caps::default();
            if !match_pieces(pieces, part, &mut caps) {
                if job.is_some() {
                    break; // in the job, not in a step
                }
                return None;
            }
            if let Some(j) = caps.job {
                job = Some(j);
            }
            if let Some(s) = caps.step {
                step = Some(s);
            }
        }
        Some(JobRef { id: job?, step })
    }
}

impl fmt::Display for JobPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Default)]
struct Caps {
    job: Option<String>,
    step: Option<String>,
}

/// Whether `s` is an id a pattern could have taken from a path: 1 to
/// [`MAX_ID_LEN`] characters an id may hold, one of them a letter or
/// digit. What a summary (a node, a lower aggregator) says is a job or
/// step id is kept only when it is one, since ids become names in the
/// aggregator's tree (`/job/<id>`) and cells of its tables.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.chars().all(id_char)
        && s.chars().any(|c| c.is_ascii_alphanumeric())
}

/// A character an id may hold.
fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '[' | ']' | '@')
}

/// Whether `pieces` match all of `s`, filling `caps`. Components are
/// short, so a plain backtracking match is enough.
fn match_pieces(pieces: &[Piece], s: &str, caps: &mut Caps) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return s.is_empty();
    };
    match first {
        Piece::Lit(l) => s
            .strip_prefix(l.as_str())
            .is_some_and(|after| match_pieces(rest, after, caps)),
        Piece::Star => s
            .char_indices()
            .map(|(i, _)| i)
            .chain([s.len()])
            .any(|i| match_pieces(rest, &s[i..], caps)),
        Piece::Job | Piece::Step => {
            // The id: the longest run of id characters the rest still
            // matches after (at least one character).
            let run = s.find(|c: char| !id_char(c)).unwrap_or(s.len());
            let ends: Vec<usize> = s[..run]
                .char_indices()
                .map(|(i, c)| i + c.len_utf8())
                .filter(|&e| e <= MAX_ID_LEN)
                .collect();
            for &end in ends.iter().rev() {
                // An id says something: not only punctuation (`-` is
                // "none" in tables).
                if !s[..end].chars().any(|c| c.is_ascii_alphanumeric()) {
                    continue;
                }
                if match_pieces(rest, &s[end..], caps) {
                    let id = s[..end].to_string();
                    if *first == Piece::Job {
                        caps.job = Some(id);
                    } else {
                        caps.step = Some(id);
                    }
                    return true;
                }
            }
            false
        }
    }
}

/// The patterns an agent tries, in order: the site's own first, then
/// [`BUILTIN`].
#[derive(Debug, Clone)]
pub struct JobRules {
    patterns: Vec<JobPattern>,
}

impl Default for JobRules {
    fn default() -> Self {
        JobRules::with_site(&[]).unwrap_or(JobRules {
            patterns: Vec::new(),
        })
    }
}

impl JobRules {
    /// The built-in patterns after the site's `extra` ones (tried first).
    pub fn with_site(extra: &[String]) -> Result<JobRules, PatternError> {
        let mut patterns = Vec::new();
        for p in extra {
            patterns.push(JobPattern::parse(p)?);
        }
        for p in BUILTIN {
            patterns.push(JobPattern::parse(p)?);
        }
        Ok(JobRules { patterns })
    }

    /// The patterns, in the order they are tried.
    pub fn patterns(&self) -> &[JobPattern] {
        &self.patterns
    }

    /// The job of a process from its `/proc/<pid>/cgroup` text: the first
    /// pattern (in order) that matches a line's path, lines in file order.
    /// Lines are `ID:CONTROLLERS:PATH` (cgroup v1 hierarchies, and `0::PATH`
    /// for v2); malformed lines are skipped.
    pub fn job_of(&self, cgroup_file: &[u8]) -> Option<JobRef> {
        let paths: Vec<&str> = cgroup_paths(cgroup_file).collect();
        self.patterns
            .iter()
            .find_map(|p| paths.iter().find_map(|path| p.match_path(path)))
    }
}

/// The paths of a `/proc/<pid>/cgroup` file's lines (third field, which
/// may itself hold `:`), skipping lines that are not `ID:CONTROLLERS:/...`.
pub fn cgroup_paths(file: &[u8]) -> impl Iterator<Item = &str> {
    file.split(|&b| b == b'\n').filter_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let mut it = line.splitn(3, ':');
        let id = it.next()?;
        let _controllers = it.next()?;
        let path = it.next()?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && path.starts_with('/'))
            .then_some(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, step: Option<&str>) -> Option<JobRef> {
        Some(JobRef {
            id: id.into(),
            step: step.map(Into::into),
        })
    }

    /// Real `/proc/<pid>/cgroup` contents of Slurm-managed processes, as
    /// the kernel writes them.
    #[test]
    fn slurm_v1_and_v2_lines() {
        let rules = JobRules::default();
        let v1 = b"11:pids:/system.slice/slurmd.service\n\
10:freezer:/slurm/uid_1000/job_4242/step_0\n\
9:memory:/slurm/uid_1000/job_4242/step_0/task_3\n\
4:cpu,cpuacct:/slurm/uid_1000/job_4242/step_0/task_3\n\
3:cpuset:/slurm/uid_1000/job_4242/step_0\n\
1:name=systemd:/system.slice/slurmd.service\n";
        assert_eq!(rules.job_of(v1), job("4242", Some("0")));
        let batch = b"6:freezer:/slurm/uid_1000/job_77/step_batch\n";
        assert_eq!(rules.job_of(batch), job("77", Some("batch")));
        let multi = b"6:freezer:/slurm_n17/uid_1000/job_77/step_extern\n";
        assert_eq!(rules.job_of(multi), job("77", Some("extern")));
        let v2 = b"0::/system.slice/slurmstepd.scope/job_1234/step_batch/user/task_0\n";
        assert_eq!(rules.job_of(v2), job("1234", Some("batch")));
        let v2n = b"0::/system.slice/n17_slurmstepd.scope/job_99/step_3/user/task_1\n";
        assert_eq!(rules.job_of(v2n), job("99", Some("3")));
        // slurmstepd itself, in its step but not a task.
        let stepd = b"0::/system.slice/slurmstepd.scope/job_99/step_3/slurm\n";
        assert_eq!(rules.job_of(stepd), job("99", Some("3")));
        // In the job, in no step.
        let nostep = b"0::/system.slice/slurmstepd.scope/job_99\n";
        assert_eq!(rules.job_of(nostep), job("99", None));
        // slurmstepd infinity and slurmd: no job.
        for none in [
            &b"0::/system.slice/slurmstepd.scope/system\n"[..],
            b"0::/system.slice/slurmd.service\n",
            b"0::/\n",
            b"",
            b"garbage\n\n:::\n",
        ] {
            assert_eq!(
                rules.job_of(none),
                None,
                "{:?}",
                String::from_utf8_lossy(none)
            );
        }
        let pbs = b"5:memory:/pbs_jobs.service/jobid/12345.pbs01\n";
        assert_eq!(rules.job_of(pbs), job("12345.pbs01", None));
    }

    /// A user's delegated cgroup named like a job is no job: patterns are
    /// anchored at the manager's root.
    #[test]
    fn look_alikes_in_users_trees_are_not_jobs() {
        let rules = JobRules::default();
        for fake in [
            &b"0::/user.slice/user-1000.slice/user@1000.service/app.slice/job_123/step_0\n"[..],
            b"0::/user.slice/user-1000.slice/user@1000.service/system.slice/slurmstepd.scope/job_123/step_0\n",
            b"0::/user.slice/slurm/uid_1000/job_5/step_0\n",
            b"1:name=systemd:/user.slice/user-1000.slice/session-3.scope/slurm/uid_0/job_1/step_0\n",
            b"0::/system.slice/slurmstepd.scope/job_/step_0\n",
            b"0::/system.slice/slurmstepd.scope/job_1\x1b[2J/step_0\n",
            b"0::/system.slice/slurmstepd.scope/job_1 2/step_0\n",
            b"0::/system.slice/slurmstepd.scope/job_-/step_0\n",
        ] {
            assert_eq!(rules.job_of(fake), None, "{:?}", String::from_utf8_lossy(fake));
        }
        let long = format!(
            "0::/system.slice/slurmstepd.scope/job_{}/step_0\n",
            "9".repeat(MAX_ID_LEN + 1)
        );
        assert_eq!(rules.job_of(long.as_bytes()), None);
    }

    #[test]
    fn site_patterns_come_first_and_may_use_wildcards() {
        let rules = JobRules::with_site(&[
            "/flux.slice/imp-shell-*-{job}.service".to_string(),
            "/system.slice/slurmstepd.scope/job_{job}".to_string(),
        ])
        .unwrap();
        assert_eq!(
            rules.job_of(b"0::/flux.slice/imp-shell-0-f2Ux8bB3.service\n"),
            job("f2Ux8bB3", None)
        );
        // The site's pattern (no step) wins over the built-in one.
        assert_eq!(
            rules.job_of(b"0::/system.slice/slurmstepd.scope/job_5/step_0\n"),
            job("5", None)
        );
        assert_eq!(rules.patterns().len(), 2 + BUILTIN.len());
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("slurm/job_{job}", "must start with `/`"),
            ("/slurm//job_{job}", "empty component"),
            ("/slurm/job_{job}/", "empty component"),
            ("/slurm/uid_*", "no {job}"),
            ("/*/job_{job}", "literal text"),
            ("/{job}", "literal text"),
            ("/slurm/job_{job}_{job}", "more than once"),
            ("/slurm/job_{jobid}", "not {job} or {step}"),
            ("/slurm/job_}", "closes nothing"),
            ("/slurm/step_{step}/job_{job}", "a step is inside its job"),
            ("/slurm/job_{job}{step}", "right after"),
            ("/slurm/job_*{job}", "right after"),
            ("/slurm/job_{job}*", "right after {job}"),
            ("/slurm/job {job}", "whitespace"),
        ] {
            let e = JobPattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains(bad), "{bad}: {e}");
        }
        for p in BUILTIN {
            assert_eq!(JobPattern::parse(p).unwrap().as_str(), *p);
        }
    }

    #[test]
    fn cgroup_paths_keep_colons_in_paths() {
        let file = b"0::/a:b/c\n12:cpu,cpuacct:/x\nnot a line\n1:name=systemd:relative\n";
        assert_eq!(cgroup_paths(file).collect::<Vec<_>>(), vec!["/a:b/c", "/x"]);
    }
}

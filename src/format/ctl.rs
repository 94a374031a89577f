//! The commands of a process's `ctl` file: what `gproc kill`, a shell's
//! `echo term > /mnt/gproc/n17/4242/ctl` and the aggregator write, and
//! what the agent parses before it signals.
//!
//! One command per write, surrounding white space (a shell's newline)
//! ignored:
//!
//! ```text
//! kill | term | stop | cont | signal N | signal NAME
//! ```
//!
//! `kill` is SIGKILL, `term` SIGTERM, `stop` SIGSTOP, `cont` SIGCONT;
//! `signal` takes a number (1 to 64, as Linux numbers them on every
//! architecture gproc runs on, minus the numbers glibc keeps for itself)
//! or a name with or without `SIG` (`HUP`, `SIGUSR1`), case-insensitive.
//! Extending it: a new command is a new first word; a reader that does not
//! know it refuses the write (EINVAL), never guesses.
//!
//! Signal numbers differ between architectures for a few names (SIGUSR1 is
//! 10 on x86 and aarch64, 30 on Alpha and SPARC, 16 on MIPS); the names here
//! are those of the architectures gproc is built for (x86_64, aarch64,
//! powerpc64, whose numbers agree), so a name travels better than a number.

use std::fmt;

/// A command written to `ctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// The Linux signal number to send.
    pub signal: i32,
}

/// The signals by name, as numbered on x86_64, aarch64 and powerpc64.
const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Why a write to `ctl` is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// Nothing but white space.
    #[error("empty ctl command (write one of: kill, term, stop, cont, signal N, signal NAME)")]
    Empty,
    /// A first word this build does not know.
    #[error(
        "unknown ctl command {0:?} (write one of: kill, term, stop, cont, signal N, signal NAME)"
    )]
    Unknown(String),
    /// `signal` with a number or name that is not a signal.
    #[error("not a signal: {0:?} (a number 1-31 or 34-64, or a name such as HUP or SIGUSR1)")]
    BadSignal(String),
}

impl Command {
    /// Parses one command (see the module doc).
    ///
    /// # Errors
    /// [`CtlError`] saying what is wrong and what would be right.
    pub fn parse(text: &[u8]) -> Result<Command, CtlError> {
        let text = String::from_utf8_lossy(text);
        let mut words = text.split_whitespace();
        let Some(first) = words.next() else {
            return Err(CtlError::Empty);
        };
        let rest: Vec<&str> = words.collect();
        let plain = |signal| {
            if rest.is_empty() {
                Ok(Command { signal })
            } else {
                Err(CtlError::Unknown(text.trim().chars().take(64).collect()))
            }
        };
        match first.to_ascii_lowercase().as_str() {
            "kill" => plain(9),
            "term" => plain(15),
            "stop" => plain(19),
            "cont" => plain(18),
            "signal" => match rest.as_slice() {
                [s] => signal_number(s)
                    .map(|signal| Command { signal })
                    .ok_or_else(|| CtlError::BadSignal(s.chars().take(32).collect())),
                _ => Err(CtlError::BadSignal(
                    rest.join(" ").chars().take(32).collect(),
                )),
            },
            other => Err(CtlError::Unknown(other.chars().take(32).collect())),
        }
    }

    /// The signal's name (`SIGTERM`), or `SIGRTMIN+N` / its number.
    pub fn signal_name(&self) -> String {
        signal_name(self.signal)
    }
}

/// The text that parses back to this command: `signal NAME`.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match NAMES.iter().find(|(_, n)| *n == self.signal) {
            Some((name, _)) => write!(f, "signal {name}"),
            None => write!(f, "signal {}", self.signal),
        }
    }
}

/// A signal's number from its number or name (`HUP`, `sigusr1`).
pub fn signal_number(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        // 32 and 33 are glibc's own (its threads' cancellation and setxid).
        return ((1..=31).contains(&n) || (34..=64).contains(&n)).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// A signal's name for people and logs.
pub fn signal_name(n: i32) -> String {
    match NAMES.iter().find(|(_, v)| *v == n) {
        Some((name, _)) => format!("SIG{name}"),
        None if (34..=64).contains(&n) => format!("SIGRTMIN+{}", n - 34),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_documented() {
        let sig = |t: &str| Command::parse(t.as_bytes()).map(|c| c.signal);
        assert_eq!(sig("kill"), Ok(9));
        assert_eq!(sig("term\n"), Ok(15));
        assert_eq!(sig("  stop "), Ok(19));
        assert_eq!(sig("CONT"), Ok(18));
        assert_eq!(sig("signal 1"), Ok(1));
        assert_eq!(sig("signal HUP"), Ok(1));
        assert_eq!(sig("signal sigusr1\n"), Ok(10));
        assert_eq!(sig("signal 64"), Ok(64));
        assert_eq!(sig(""), Err(CtlError::Empty));
        assert!(matches!(sig("signal 0"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("signal 32"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("signal 65"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("signal -9"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("signal FOO"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("signal"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("signal 1 2"), Err(CtlError::BadSignal(_))));
        assert!(matches!(sig("kill 9"), Err(CtlError::Unknown(_))));
        assert!(matches!(sig("rm -rf"), Err(CtlError::Unknown(_))));
        assert!(matches!(
            Command::parse(&[0xff, 0xfe]),
            Err(CtlError::Unknown(_))
        ));
    }

    #[test]
    fn written_commands_read_back() {
        for n in (1..=31).chain(34..=64) {
            let c = Command { signal: n };
            assert_eq!(Command::parse(c.to_string().as_bytes()), Ok(c), "{c}");
        }
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(35), "SIGRTMIN+1");
    }

    #[test]
    fn the_names_are_this_machines_numbers() {
        // The table must agree with the libc gproc is built against.
        for (name, n) in NAMES {
            let expect = match *name {
                "HUP" => libc::SIGHUP,
                "KILL" => libc::SIGKILL,
                "USR1" => libc::SIGUSR1,
                "TERM" => libc::SIGTERM,
                "CHLD" => libc::SIGCHLD,
                "CONT" => libc::SIGCONT,
                "STOP" => libc::SIGSTOP,
                "PWR" => libc::SIGPWR,
                "SYS" => libc::SIGSYS,
                "STKFLT" => libc::SIGSTKFLT,
                _ => *n,
            };
            assert_eq!(*n, expect, "SIG{name}");
        }
    }
}

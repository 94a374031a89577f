//! Human-written durations (`250ms`, `1m30s`, `never`) and byte sizes
//! (`256MiB`, `10MB`, `1000`).
//!
//! Each parser returns a [`UnitError`] whose message already says what was
//! expected, so the config layer only adds the file position and key.

use std::fmt;
use std::time::Duration;

/// A value that did not parse; the message quotes it and gives examples.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// How long a cached file stays fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// Never cached: every read goes to the node.
    Never,
    /// Fresh for this long after it was read. Never zero: `"0s"` parses as
    /// [`Ttl::Never`], so callers need only one "not cacheable" test.
    For(Duration),
}

impl Ttl {
    /// Parses `"never"` or a duration such as `"2s"`; `"0s"` is `Never`.
    ///
    /// # Errors
    /// A [`UnitError`] naming the accepted forms.
    pub fn parse(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("never") {
            return Ok(Ttl::Never);
        }
        match humantime::parse_duration(t) {
            Ok(d) if d.is_zero() => Ok(Ttl::Never),
            Ok(d) => Ok(Ttl::For(d)),
            Err(_) => Err(duration_error(s, r#""250ms", "2s" or "never""#)),
        }
    }

    /// The freshness period, or `None` when never cached.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Ttl::Never => None,
            Ttl::For(d) => Some(d),
        }
    }

    /// Whether a file under this TTL may be kept at all.
    pub fn is_cacheable(self) -> bool {
        matches!(self, Ttl::For(_))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ttl::Never => f.write_str("never"),
            Ttl::For(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

/// Parses a duration such as `"250ms"`, `"2s"` or `"1m30s"` (humantime
/// syntax). A bare number is refused: `"10"` could mean seconds or
/// milliseconds, and guessing wrong is a 1000x timeout.
///
/// # Errors
/// A [`UnitError`] naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(s.trim())
        .map_err(|_| duration_error(s, r#""250ms", "2s" or "1m30s""#))
}

fn duration_error(s: &str, examples: &str) -> UnitError {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        UnitError(format!(
            "invalid duration {s:?}: a unit is needed, e.g. \"{t}s\" or \"{t}ms\""
        ))
    } else {
        UnitError(format!("invalid duration {s:?}: expected e.g. {examples}"))
    }
}

/// A number of bytes, written as `1000`, `512KiB`, `256MiB`, `1GiB` or `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Units by suffix, case-insensitive. Single letters (`K`, `M`, `G`) are
/// refused on purpose: Slurm reads `M` as MiB, disk vendors as MB.
const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl ByteSize {
    /// Parses a size; see the type docs for the forms.
    ///
    /// # Errors
    /// A [`UnitError`] naming the accepted forms.
    pub fn parse(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let bad = || {
            UnitError(format!(
                "invalid size {s:?}: expected e.g. \"1000\" (bytes), \"512KiB\", \"256MiB\", \"1GiB\" or \"10MB\""
            ))
        };
        if num.is_empty() {
            return Err(bad());
        }
        let n: u64 = num.parse().map_err(|_| too_large(s))?;
        let mult = if unit.is_empty() {
            1
        } else if let Some(&(_, m)) = UNITS.iter().find(|(u, _)| unit.eq_ignore_ascii_case(u)) {
            m
        } else if let Some(c) = ["k", "m", "g", "t"]
            .iter()
            .find(|u| unit.eq_ignore_ascii_case(u))
        {
            let up = c.to_ascii_uppercase();
            return Err(UnitError(format!(
                "ambiguous size {s:?}: write \"{num}{up}iB\" (powers of 1024) or \"{num}{up}B\" (powers of 1000)"
            )));
        } else {
            return Err(bad());
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| too_large(s))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

fn too_large(s: &str) -> UnitError {
    UnitError(format!("invalid size {s:?}: too large"))
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, m) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{}{name}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_forms() {
        assert_eq!(Ttl::parse("never"), Ok(Ttl::Never));
        assert_eq!(Ttl::parse("Never"), Ok(Ttl::Never));
        assert_eq!(Ttl::parse("0s"), Ok(Ttl::Never));
        assert_eq!(
            Ttl::parse("250ms"),
            Ok(Ttl::For(Duration::from_millis(250)))
        );
        assert_eq!(Ttl::parse("2s"), Ok(Ttl::For(Duration::from_secs(2))));
        assert_eq!(Ttl::parse("1m30s"), Ok(Ttl::For(Duration::from_secs(90))));
        assert_eq!(
            Ttl::parse("2x").unwrap_err().to_string(),
            r#"invalid duration "2x": expected e.g. "250ms", "2s" or "never""#
        );
        assert_eq!(
            Ttl::parse("10").unwrap_err().to_string(),
            r#"invalid duration "10": a unit is needed, e.g. "10s" or "10ms""#
        );
        assert!(Ttl::parse("").is_err());
        assert!(Ttl::parse("-1s").is_err());
        assert_eq!(Ttl::For(Duration::from_secs(90)).to_string(), "1m 30s");
        assert_eq!(Ttl::Never.to_string(), "never");
        assert!(!Ttl::Never.is_cacheable());
        assert_eq!(
            Ttl::parse("2s").unwrap().duration(),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("never").is_err(), "never is only for TTLs");
        assert_eq!(
            parse_duration("soon").unwrap_err().to_string(),
            r#"invalid duration "soon": expected e.g. "250ms", "2s" or "1m30s""#
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("1000"), Ok(ByteSize(1000)));
        assert_eq!(ByteSize::parse("512KiB"), Ok(ByteSize(512 * 1024)));
        assert_eq!(ByteSize::parse("256MiB"), Ok(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("256 MiB"), Ok(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("1GiB"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("1gib"), Ok(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse("7B"), Ok(ByteSize(7)));
        assert_eq!(ByteSize::parse("2TiB"), Ok(ByteSize(2 << 40)));
        let err = |s| ByteSize::parse(s).unwrap_err().to_string();
        assert!(err("256M").contains(r#"write "256MiB""#), "{}", err("256M"));
        assert!(err("lots").starts_with(r#"invalid size "lots": expected"#));
        assert!(err("1.5GiB").starts_with("invalid size"));
        assert!(err("MiB").starts_with("invalid size"));
        assert!(err("-1").starts_with("invalid size"));
        assert_eq!(
            err("99999999999999999999"),
            r#"invalid size "99999999999999999999": too large"#
        );
        assert_eq!(
            err("17000000TiB"),
            r#"invalid size "17000000TiB": too large"#
        );
    }

    #[test]
    fn size_display() {
        assert_eq!(ByteSize(256 << 20).to_string(), "256MiB");
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        assert_eq!(ByteSize(0).to_string(), "0");
        assert_eq!(ByteSize(1536).to_string(), "1536");
        assert_eq!(ByteSize(3 << 10).to_string(), "3KiB");
    }
}

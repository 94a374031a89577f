//! Slurm/pdsh hostlists: `n[0001-2000]`, `rack[1-4]n[01-32]`, `login1,n[1-3,7]`.
//!
//! A [`Hostlist`] is kept in its compact parsed form so that membership tests
//! and counting never expand it; [`Hostlist::expand`] refuses lists longer than
//! a limit *before* allocating, because one typo (`n[1-10000000]`) must not
//! take the aggregator's memory with it. [`compress`] goes the other way, for
//! display. Pure code: no I/O, no dependency on the rest of the crate.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Largest number of names [`Hostlist::expand`] will produce. A million nodes
/// is beyond any single aggregator; anything longer is a typo.
pub const MAX_EXPANSION: u64 = 1_000_000;

/// Longest digit string accepted in a range; keeps every bound in a `u64`.
const MAX_DIGITS: usize = 18;

/// Why a hostlist was refused. Positions are 1-based character columns
/// within the hostlist text, so the config layer can point at them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostlistError {
    /// The whole list is empty or blank.
    #[error("empty hostlist")]
    Empty,
    /// An empty item between commas, or a leading/trailing comma.
    #[error("empty host name at character {pos}")]
    EmptyName {
        /// Where the empty item is.
        pos: usize,
    },
    /// A `[` with no matching `]`.
    #[error("unclosed '[' at character {pos}")]
    Unclosed {
        /// Where the `[` is.
        pos: usize,
    },
    /// A `]` with no `[` before it.
    #[error("unexpected ']' at character {pos}")]
    UnexpectedClose {
        /// Where the `]` is.
        pos: usize,
    },
    /// A `[` inside brackets: hostlists do not nest.
    #[error("nested '[' at character {pos}: brackets do not nest")]
    Nested {
        /// Where the inner `[` is.
        pos: usize,
    },
    /// `[]`, `[1,,2]` or `[1-]`.
    #[error("empty range at character {pos}")]
    EmptyRange {
        /// Where the range starts.
        pos: usize,
    },
    /// A range bound that is not a decimal number.
    #[error("range bound {text:?} at character {pos} is not a number")]
    NotNumeric {
        /// The offending bound.
        text: String,
        /// Where it starts.
        pos: usize,
    },
    /// `[5-1]`.
    #[error("reversed range {lo}-{hi}: the low bound comes first")]
    Reversed {
        /// The range as written, low side.
        lo: String,
        /// The range as written, high side.
        hi: String,
    },
    /// A bound with more digits than fit in a `u64` with room to spare.
    #[error("number {text:?} is too long (at most {MAX_DIGITS} digits)")]
    NumberTooLong {
        /// The offending number.
        text: String,
    },
    /// Whitespace or a control character inside a host name.
    #[error("invalid character {ch:?} at character {pos}")]
    BadChar {
        /// The character.
        ch: char,
        /// Where it is.
        pos: usize,
    },
    /// The list names more hosts than the expansion limit.
    #[error("hostlist names {count} hosts, more than the limit of {limit}")]
    TooMany {
        /// How many names the list stands for (saturating).
        count: u64,
        /// The limit that was exceeded.
        limit: u64,
    },
}

/// One numeric range inside brackets. Every value is printed with at least
/// `width` digits, zero padded: the width of the low bound as written, the
/// Slurm rule that makes `n[0001-2000]` keep its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    lo: u64,
    hi: u64,
    width: usize,
}

impl Range {
    fn len(&self) -> u64 {
        self.hi - self.lo + 1
    }

    /// Whether the digit string `s` (all ASCII digits) is one of this range's
    /// printed values, without formatting anything.
    fn matches_digits(&self, s: &str) -> bool {
        let Ok(v) = s.parse::<u64>() else {
            return false;
        };
        v >= self.lo && v <= self.hi && s.len() == self.width.max(digits(v))
    }
}

/// One part of a pattern: literal text or a bracket set of ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Set(Vec<Range>),
}

impl Part {
    /// Number of alternatives this part contributes (1 for a literal).
    fn count(&self) -> u64 {
        match self {
            Part::Lit(_) => 1,
            Part::Set(ranges) => ranges
                .iter()
                .fold(0u64, |acc, r| acc.saturating_add(r.len())),
        }
    }

    /// The `i`-th printed value of a set (0-based, in written order).
    fn push_nth(ranges: &[Range], mut i: u64, out: &mut String) {
        for r in ranges {
            if i < r.len() {
                push_padded(out, r.lo + i, r.width);
                return;
            }
            i -= r.len();
        }
    }
}

/// One top-level comma item, e.g. `rack[1-4]n[01-32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<Part>,
}

impl Pattern {
    fn count(&self) -> u64 {
        self.parts
            .iter()
            .fold(1u64, |acc, p| acc.saturating_mul(p.count()))
    }

    /// Backtracking match: a set may match digit runs of several lengths
    /// (`n[1-20]0` against `n100`), so try each.
    fn matches(&self, name: &str) -> bool {
        fn go(parts: &[Part], s: &str) -> bool {
            let Some((first, rest)) = parts.split_first() else {
                return s.is_empty();
            };
            match first {
                Part::Lit(lit) => s.strip_prefix(lit.as_str()).is_some_and(|t| go(rest, t)),
                Part::Set(ranges) => {
                    let run = s.bytes().take_while(u8::is_ascii_digit).count();
                    (1..=run.min(MAX_DIGITS + 1)).any(|k| {
                        let (num, tail) = s.split_at(k);
                        ranges.iter().any(|r| r.matches_digits(num)) && go(rest, tail)
                    })
                }
            }
        }
        go(&self.parts, name)
    }
}

/// A parsed hostlist. Cheap to keep around unexpanded; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostlist {
    text: String,
    patterns: Vec<Pattern>,
}

impl Hostlist {
    /// Parses a hostlist such as `login1,n[0001-2000],rack[1-4]n[01-32]`.
    ///
    /// # Errors
    /// Any [`HostlistError`] except `TooMany`: parsing never expands.
    pub fn parse(text: &str) -> Result<Self, HostlistError> {
        if text.trim().is_empty() {
            return Err(HostlistError::Empty);
        }
        let mut patterns = Vec::new();
        for (start, item) in split_top_level(text)? {
            patterns.push(parse_pattern(item, start)?);
        }
        Ok(Self {
            text: text.to_string(),
            patterns,
        })
    }

    /// The text this list was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many names the list stands for, duplicates included, without
    /// expanding it. Saturates at `u64::MAX`.
    pub fn len(&self) -> u64 {
        self.patterns
            .iter()
            .fold(0u64, |acc, p| acc.saturating_add(p.count()))
    }

    /// Always false for a parsed list (parsing refuses empty lists); present
    /// because `len` is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `name` is one of the list's names, without expanding it.
    pub fn contains(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }

    /// Iterates the names lazily, in written order; several bracket groups
    /// vary rightmost-fastest (`rack[1-2]n[1-2]`: rack1n1, rack1n2, rack2n1, ...).
    pub fn iter(&self) -> Names<'_> {
        Names {
            patterns: &self.patterns,
            pattern: 0,
            counters: Vec::new(),
            started: false,
        }
    }

    /// Expands to every name, refusing lists over [`MAX_EXPANSION`].
    ///
    /// # Errors
    /// [`HostlistError::TooMany`] before allocating anything.
    pub fn expand(&self) -> Result<Vec<String>, HostlistError> {
        self.expand_limit(MAX_EXPANSION)
    }

    /// Like [`Hostlist::expand`] with a caller-chosen limit.
    ///
    /// # Errors
    /// [`HostlistError::TooMany`] when the list is longer than `limit`.
    pub fn expand_limit(&self, limit: u64) -> Result<Vec<String>, HostlistError> {
        let count = self.len();
        if count > limit {
            return Err(HostlistError::TooMany { count, limit });
        }
        // count <= limit, and limits are meant to be small enough to allocate.
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        out.extend(self.iter());
        Ok(out)
    }
}

impl fmt::Display for Hostlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Hostlist {
    type Err = HostlistError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Lazy iterator over a hostlist's names; see [`Hostlist::iter`].
#[derive(Debug, Clone)]
pub struct Names<'a> {
    patterns: &'a [Pattern],
    pattern: usize,
    /// One counter per part of the current pattern (literals stay at 0).
    counters: Vec<u64>,
    started: bool,
}

impl Iterator for Names<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            let pat = self.patterns.get(self.pattern)?;
            if !self.started {
                self.started = true;
                self.counters = vec![0; pat.parts.len()];
            } else if !advance(pat, &mut self.counters) {
                self.pattern += 1;
                self.started = false;
                continue;
            }
            let mut name = String::new();
            for (part, &i) in pat.parts.iter().zip(&self.counters) {
                match part {
                    Part::Lit(s) => name.push_str(s),
                    Part::Set(ranges) => Part::push_nth(ranges, i, &mut name),
                }
            }
            return Some(name);
        }
    }
}

/// Odometer step, rightmost part fastest. False when the pattern is done.
fn advance(pat: &Pattern, counters: &mut [u64]) -> bool {
    for (part, c) in pat.parts.iter().zip(counters.iter_mut()).rev() {
        if let Part::Set(_) = part {
            *c += 1;
            if *c < part.count() {
                return true;
            }
            *c = 0;
        }
    }
    false
}

/// Expands a hostlist in one call; see [`Hostlist::expand`].
///
/// # Errors
/// Any [`HostlistError`].
pub fn expand(text: &str) -> Result<Vec<String>, HostlistError> {
    Hostlist::parse(text)?.expand()
}

/// Splits at commas outside brackets, checking bracket balance. Yields each
/// trimmed item with its 1-based character column.
fn split_top_level(text: &str) -> Result<Vec<(usize, &str)>, HostlistError> {
    let mut items = Vec::new();
    let mut open: Option<usize> = None;
    let mut start_byte = 0;
    let mut start_col = 1;
    for (col0, (byte, ch)) in text.char_indices().enumerate() {
        let col = col0 + 1;
        match ch {
            '[' if open.is_some() => return Err(HostlistError::Nested { pos: col }),
            '[' => open = Some(col),
            ']' if open.is_none() => return Err(HostlistError::UnexpectedClose { pos: col }),
            ']' => open = None,
            ',' if open.is_none() => {
                items.push(trimmed(text, start_byte, byte, start_col)?);
                start_byte = byte + 1;
                start_col = col + 1;
            }
            _ => {}
        }
    }
    if let Some(pos) = open {
        return Err(HostlistError::Unclosed { pos });
    }
    items.push(trimmed(text, start_byte, text.len(), start_col)?);
    Ok(items)
}

fn trimmed(text: &str, from: usize, to: usize, col: usize) -> Result<(usize, &str), HostlistError> {
    let raw = &text[from..to];
    let lead = raw.len() - raw.trim_start().len();
    let item = raw.trim();
    let col = col + raw[..lead].chars().count();
    if item.is_empty() {
        return Err(HostlistError::EmptyName { pos: col });
    }
    Ok((col, item))
}

/// Parses one balanced item (brackets already checked) into parts.
fn parse_pattern(item: &str, col: usize) -> Result<Pattern, HostlistError> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = item.chars().enumerate().map(|(i, c)| (col + i, c));
    while let Some((pos, ch)) = chars.next() {
        if ch == '[' {
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            let mut body = String::new();
            for (_, c) in chars.by_ref() {
                if c == ']' {
                    break;
                }
                body.push(c);
            }
            parts.push(Part::Set(parse_set(&body, pos + 1)?));
        } else if ch.is_whitespace() || ch.is_control() {
            return Err(HostlistError::BadChar { ch, pos });
        } else {
            lit.push(ch);
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(Pattern { parts })
}

/// Parses the inside of `[...]`: `1-3,7,010-012`. `col` is the column of
/// the first character after `[`.
fn parse_set(body: &str, col: usize) -> Result<Vec<Range>, HostlistError> {
    let mut ranges = Vec::new();
    let mut at = col;
    for elem in body.split(',') {
        let width = elem.chars().count();
        let e = elem.trim();
        if e.is_empty() {
            return Err(HostlistError::EmptyRange { pos: at });
        }
        let (lo_s, hi_s) = match e.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (e, e),
        };
        if lo_s.is_empty() || hi_s.is_empty() {
            return Err(HostlistError::EmptyRange { pos: at });
        }
        let lo = parse_bound(lo_s, at)?;
        let hi = parse_bound(hi_s, at)?;
        if lo > hi {
            return Err(HostlistError::Reversed {
                lo: lo_s.to_string(),
                hi: hi_s.to_string(),
            });
        }
        ranges.push(Range {
            lo,
            hi,
            width: lo_s.len(),
        });
        at += width + 1;
    }
    Ok(ranges)
}

fn parse_bound(s: &str, pos: usize) -> Result<u64, HostlistError> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostlistError::NotNumeric {
            text: s.to_string(),
            pos,
        });
    }
    if s.len() > MAX_DIGITS {
        return Err(HostlistError::NumberTooLong {
            text: s.to_string(),
        });
    }
    s.parse().map_err(|_| HostlistError::NotNumeric {
        text: s.to_string(),
        pos,
    })
}

fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

fn push_padded(out: &mut String, v: u64, width: usize) {
    use fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "{v:0width$}");
}

/// Compresses names into a short hostlist for display, e.g. 128 names
/// `rack1n01`..`rack4n32` become `rack[1-4]n[01-32]`.
///
/// Duplicates are dropped and the output is in natural order. The result is
/// short, not provably the shortest: numbers are folded on the last digit run
/// of each name, then groups that share the same tail are folded again on
/// their prefixes. `expand(compress(names))` is always the same *set* as
/// `names`, as long as no name contains `[`, `]`, `,` or whitespace.
pub fn compress<I, S>(names: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let uniq: BTreeSet<String> = names.into_iter().map(|s| s.as_ref().to_string()).collect();
    let refs: Vec<&str> = uniq.iter().map(String::as_str).collect();
    let mut out = compress_set(&refs);
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    out.into_iter()
        .map(|(_, pattern)| pattern)
        .collect::<Vec<_>>()
        .join(",")
}

/// Returns (smallest name covered, pattern) pairs for a set of unique names.
fn compress_set(names: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // (prefix, suffix) -> numbers found in the last digit run.
    let mut groups: BTreeMap<(&str, &str), Vec<(u64, &str)>> = BTreeMap::new();
    for &name in names {
        match split_last_digits(name) {
            Some((pre, num, suf)) if num.len() <= MAX_DIGITS => {
                // All ASCII digits and at most 18 of them: always fits.
                let v = num.parse::<u64>().unwrap_or(0);
                groups.entry((pre, suf)).or_default().push((v, num));
            }
            _ => out.push((name.to_string(), name.to_string())),
        }
    }
    // tail (numbers + suffix) -> prefixes that share it, with their first name.
    let mut by_tail: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for ((pre, suf), mut nums) in groups {
        nums.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.len().cmp(&b.1.len())));
        nums.dedup();
        let first = format!("{pre}{}{suf}", nums[0].1);
        let body = ranges_text(&nums);
        by_tail
            .entry(format!("{body}{suf}"))
            .or_default()
            .push((pre, first));
    }
    for (tail, prefixes) in by_tail {
        if let [(pre, first)] = prefixes.as_slice() {
            out.push((first.clone(), format!("{pre}{tail}")));
            continue;
        }
        let firsts: BTreeMap<&str, &String> = prefixes.iter().map(|(p, f)| (*p, f)).collect();
        let pres: Vec<&str> = firsts.keys().copied().collect();
        for (first_pre, pattern) in compress_set(&pres) {
            let first = firsts
                .get(first_pre.as_str())
                .map_or_else(|| first_pre.clone(), |f| (*f).clone());
            out.push((first, format!("{pattern}{tail}")));
        }
    }
    out
}

/// `[1-3,7,010-012]`, or the bare number when there is only one.
fn ranges_text(nums: &[(u64, &str)]) -> String {
    let mut runs: Vec<(u64, u64, usize)> = Vec::new();
    for &(v, s) in nums {
        if let Some(last) = runs.last_mut()
            && last.1.checked_add(1) == Some(v)
            && s.len() == last.2.max(digits(v))
        {
            last.1 = v;
            continue;
        }
        runs.push((v, v, s.len()));
    }
    if let [(lo, hi, w)] = runs.as_slice()
        && lo == hi
    {
        return format!("{lo:0w$}");
    }
    let body: Vec<String> = runs
        .iter()
        .map(|&(lo, hi, w)| {
            if lo == hi {
                format!("{lo:0w$}")
            } else {
                format!("{lo:0w$}-{hi:0w$}")
            }
        })
        .collect();
    format!("[{}]", body.join(","))
}

/// Splits `rack12n007-ib` into (`rack12n`, `007`, `-ib`): the last digit run.
fn split_last_digits(name: &str) -> Option<(&str, &str, &str)> {
    let end = name.rfind(|c: char| c.is_ascii_digit())? + 1;
    // The start of the digit run: a byte index on a char boundary even
    // when the character before the digits is multi-byte.
    let start = name[..end]
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .len();
    Some((&name[..start], &name[start..end], &name[end..]))
}

/// Orders names the way people count: `n2` before `n10`. Digit runs compare
/// by value (then by length, so `n01` and `n1` stay distinct), the rest by
/// character.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.bytes().take_while(u8::is_ascii_digit).count();
                let nb = b.bytes().take_while(u8::is_ascii_digit).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let ta = da.trim_start_matches('0');
                let tb = db.trim_start_matches('0');
                let ord = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| na.cmp(&nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Vec<String> {
        expand(s).unwrap()
    }

    #[test]
    fn single_name() {
        assert_eq!(ex("login1"), ["login1"]);
        assert_eq!(ex("  login1 "), ["login1"]);
    }

    #[test]
    fn zero_padding_is_kept() {
        let v = ex("n[0001-2000]");
        assert_eq!(v.len(), 2000);
        assert_eq!(v[0], "n0001");
        assert_eq!(v[9], "n0010");
        assert_eq!(v[1999], "n2000");
    }

    #[test]
    fn unpadded_ranges_grow_naturally() {
        assert_eq!(ex("n[8-11]"), ["n8", "n9", "n10", "n11"]);
        assert_eq!(ex("n[08-10]"), ["n08", "n09", "n10"]);
        assert_eq!(ex("n[0-1]"), ["n0", "n1"]);
    }

    #[test]
    fn several_groups_are_rack_major() {
        let v = ex("rack[1-4]n[01-32]");
        assert_eq!(v.len(), 128);
        assert_eq!(v[0], "rack1n01");
        assert_eq!(v[1], "rack1n02");
        assert_eq!(v[32], "rack2n01");
        assert_eq!(v[127], "rack4n32");
        assert_eq!(ex("a[1-2]b[3-4]c"), ["a1b3c", "a1b4c", "a2b3c", "a2b4c"]);
    }

    #[test]
    fn lists_inside_brackets() {
        assert_eq!(
            ex("n[1-3,7,10-12]"),
            ["n1", "n2", "n3", "n7", "n10", "n11", "n12"]
        );
    }

    #[test]
    fn top_level_commas() {
        assert_eq!(
            ex("login1,login2,n[1-4]"),
            ["login1", "login2", "n1", "n2", "n3", "n4"]
        );
        assert_eq!(ex("a, b ,c"), ["a", "b", "c"]);
        assert_eq!(ex("n[1,3],m[2]"), ["n1", "n3", "m2"]);
    }

    #[test]
    fn suffix_after_brackets() {
        assert_eq!(ex("n[1-2]-ib"), ["n1-ib", "n2-ib"]);
        assert_eq!(ex("[1-2]x"), ["1x", "2x"]);
    }

    #[test]
    fn errors() {
        use HostlistError::*;
        let e = |s: &str| Hostlist::parse(s).unwrap_err();
        assert_eq!(e(""), Empty);
        assert_eq!(e("   "), Empty);
        assert_eq!(e("a,,b"), EmptyName { pos: 3 });
        assert_eq!(e("a,"), EmptyName { pos: 3 });
        assert_eq!(e(",a"), EmptyName { pos: 1 });
        assert_eq!(e("n[1-3"), Unclosed { pos: 2 });
        assert_eq!(e("n1-3]"), UnexpectedClose { pos: 5 });
        assert_eq!(e("n[1[2]]"), Nested { pos: 4 });
        assert_eq!(e("n[]"), EmptyRange { pos: 3 });
        assert_eq!(e("n[1,,2]"), EmptyRange { pos: 5 });
        assert_eq!(e("n[1-]"), EmptyRange { pos: 3 });
        assert_eq!(
            e("n[a-b]"),
            NotNumeric {
                text: "a".into(),
                pos: 3
            }
        );
        assert_eq!(
            e("n[1,x]"),
            NotNumeric {
                text: "x".into(),
                pos: 5
            }
        );
        assert_eq!(
            e("n[-3]"),
            EmptyRange { pos: 3 },
            "a negative bound is an empty low side"
        );
        assert_eq!(
            e("n[5-1]"),
            Reversed {
                lo: "5".into(),
                hi: "1".into()
            }
        );
        assert!(matches!(
            e("n[1-9999999999999999999]"),
            NumberTooLong { .. }
        ));
        assert_eq!(e("n 1"), BadChar { ch: ' ', pos: 2 });
        // Messages name the problem and where.
        assert_eq!(e("n[1-3").to_string(), "unclosed '[' at character 2");
        assert_eq!(
            e("n[5-1]").to_string(),
            "reversed range 5-1: the low bound comes first"
        );
    }

    #[test]
    fn over_limit_is_refused_without_allocating() {
        let h = Hostlist::parse("n[000000000000-999999999999]").unwrap();
        assert_eq!(h.len(), 1_000_000_000_000);
        assert_eq!(
            h.expand().unwrap_err(),
            HostlistError::TooMany {
                count: 1_000_000_000_000,
                limit: MAX_EXPANSION
            }
        );
        // Products saturate instead of overflowing.
        let h = Hostlist::parse("a[0-999999999999999999]b[0-999999999999999999]").unwrap();
        assert_eq!(h.len(), u64::MAX);
        assert!(h.expand().is_err());
        // ...and the lazy iterator still works on the huge list.
        assert_eq!(h.iter().take(2).collect::<Vec<_>>(), ["a0b0", "a0b1"]);
        assert_eq!(
            Hostlist::parse("n[1-10]").unwrap().expand_limit(9),
            Err(HostlistError::TooMany {
                count: 10,
                limit: 9
            })
        );
    }

    #[test]
    fn contains_without_expanding() {
        let h = Hostlist::parse("login1,n[0001-2000],rack[1-4]n[01-32]").unwrap();
        assert!(h.contains("login1"));
        assert!(h.contains("n0001"));
        assert!(h.contains("n2000"));
        assert!(!h.contains("n1"), "padding matters");
        assert!(!h.contains("n2001"));
        assert!(!h.contains("n0000"));
        assert!(h.contains("rack3n17"));
        assert!(!h.contains("rack5n01"));
        assert!(!h.contains("rack3n7"));
        assert!(!h.contains("login"));
        assert!(!h.contains("login12"));
        let huge = Hostlist::parse("x[0-999999999999999999]").unwrap();
        assert!(huge.contains("x123456789"));
        assert!(!huge.contains("x0123"));
        // Backtracking: the set could end at several places in the digits.
        let h = Hostlist::parse("n[1-20]0[5-6]").unwrap();
        assert!(h.contains("n1005"));
        assert!(h.contains("n206"));
        assert!(!h.contains("n2107"));
        let nat = Hostlist::parse("n[8-11]").unwrap();
        assert!(nat.contains("n9") && nat.contains("n10") && !nat.contains("n09"));
    }

    #[test]
    fn contains_agrees_with_expand() {
        for s in [
            "n[1-12]",
            "n[01-12]x",
            "a[1-3]b[07-11]",
            "q[5,9-10,0010-0012]",
        ] {
            let h = Hostlist::parse(s).unwrap();
            let all: BTreeSet<String> = h.iter().collect();
            for cand in [
                "n1", "n01", "n12", "n012", "a1b07", "a1b7", "a3b11", "q5", "q05", "q10", "q0010",
                "q0012", "q11",
            ] {
                assert_eq!(h.contains(cand), all.contains(cand), "{s} {cand}");
            }
        }
    }

    #[test]
    fn compress_examples() {
        assert_eq!(compress(ex("n[0001-2000]")), "n[0001-2000]");
        assert_eq!(compress(ex("rack[1-4]n[01-32]")), "rack[1-4]n[01-32]");
        assert_eq!(compress(["n3", "n1", "n2", "n7"]), "n[1-3,7]");
        assert_eq!(compress(["login2", "login1", "n1"]), "login[1-2],n1");
        assert_eq!(compress(["a", "b", "a"]), "a,b");
        assert_eq!(compress(["n8", "n9", "n10"]), "n[8-10]");
        assert_eq!(compress(["n08", "n09", "n10"]), "n[08-10]");
        assert_eq!(compress(["n1", "n01"]), "n[1,01]");
        assert_eq!(compress(["n1-ib", "n2-ib"]), "n[1-2]-ib");
        assert_eq!(compress(["n5"]), "n5");
        assert_eq!(compress(Vec::<String>::new()), "");
        assert_eq!(compress(["r1n5", "r2n5"]), "r[1-2]n5");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["n10", "n9", "login1", "n01", "n1", "m"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["login1", "m", "n1", "n01", "n9", "n10"]);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            (
                prop::sample::select(vec!["n", "rack", "a-", ""]),
                0u32..40,
                prop::sample::select(vec![0usize, 1, 2, 3]),
                prop::sample::select(vec!["", "n", "-ib"]),
                0u32..5,
            )
                .prop_map(|(pre, num, w, mid, num2)| {
                    if mid == "n" {
                        format!("{pre}{num:0w$}{mid}{num2:02}")
                    } else {
                        format!("{pre}{num:0w$}{mid}")
                    }
                })
        }

        proptest! {
            #[test]
            fn compress_round_trips(names in prop::collection::vec(name(), 1..60)) {
                let want: BTreeSet<String> = names.iter().cloned().collect();
                let text = compress(&names);
                let got = expand(&text).unwrap();
                let got_set: BTreeSet<String> = got.iter().cloned().collect();
                prop_assert_eq!(&got_set, &want, "{}", text);
                prop_assert_eq!(got.len(), want.len(), "no duplicates in {}", text);
                let h = Hostlist::parse(&text).unwrap();
                for n in &want {
                    prop_assert!(h.contains(n));
                }
            }
        }
    }
}

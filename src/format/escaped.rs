//! The summary's escaped string fields, and the strings kept in that form.
//!
//! A string field of a summary (a user, `comm`, each argument) is one
//! space-free token: `\\` a backslash, `\s` a space, `\t` a tab, `\n` a
//! newline, `\xHH` any other byte the writer hides (control characters,
//! bytes that are not UTF-8), `\-` alone the empty string
//! ([`crate::format::summary`] has the full rule).
//!
//! An aggregator parses thousands of summaries per table and shows each
//! process's `comm` and arguments at most once, in one `/ps` line. So
//! [`Escaped`] and [`Args`] keep them as written, slices of the summary's
//! own bytes (no allocation per string), and decode where they are shown.
//! Both hold only the canonical spelling [`escape_into`] writes: a parser
//! re-spells anything else (a hostile node's raw control byte, `\x41` for
//! `A`), so equal strings compare equal, and writing one back out is a
//! copy that an older reader parses as before.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// The empty string's spelling.
const EMPTY: &[u8] = b"\\-";

/// Appends `bytes` escaped as one field.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_empty() {
        out.extend_from_slice(EMPTY);
        return;
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                ' ' => out.extend_from_slice(b"\\s"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\n' => out.extend_from_slice(b"\\n"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        hex_escape(out, b);
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            hex_escape(out, b);
        }
    }
}

fn hex_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ]);
}

/// Undoes [`escape_into`]; `None` on a malformed escape.
pub fn unescape(tok: &[u8]) -> Option<Vec<u8>> {
    if tok == EMPTY {
        return Some(Vec::new());
    }
    if !tok.contains(&b'\\') {
        return Some(tok.to_vec());
    }
    let mut out = Vec::with_capacity(tok.len());
    let mut it = tok.iter().copied();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b'\\' => out.push(b'\\'),
            b's' => out.push(b' '),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'x' => {
                let hi = char::from(it.next()?).to_digit(16)?;
                let lo = char::from(it.next()?).to_digit(16)?;
                // Both digits are < 16, so the value fits a byte.
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Whether `tok` is spelt as [`escape_into`] spells something: printable
/// ASCII and the named escapes `\\ \s \t \n` (what nearly every token is,
/// checked byte by byte), `\-`, or anything else whose decoding spells
/// back the same.
fn canonical(tok: &[u8]) -> bool {
    if tok == EMPTY {
        return true;
    }
    let mut plain = !tok.is_empty();
    let mut it = tok.iter();
    while let Some(&b) = it.next() {
        let ok = match b {
            b'\\' => matches!(it.next(), Some(b'\\' | b's' | b't' | b'n')),
            b'!'..=b'~' => true,
            _ => false,
        };
        if !ok {
            plain = false;
            break;
        }
    }
    if plain {
        return true;
    }
    match unescape(tok) {
        Some(raw) if !raw.is_empty() => {
            let mut again = Vec::with_capacity(tok.len());
            escape_into(&mut again, &raw);
            again == tok
        }
        _ => false,
    }
}

/// A token as its canonical spelling: the same bytes when it already is
/// (a slice of `line`, no copy), re-spelt when not; `None` when it is not
/// a valid escaped field. `tok` must be a slice of `line`.
fn respell(line: &Bytes, tok: &[u8]) -> Option<Bytes> {
    if canonical(tok) {
        return Some(sub(line, tok).unwrap_or_else(|| Bytes::copy_from_slice(tok)));
    }
    let raw = unescape(tok)?;
    let mut out = Vec::with_capacity(tok.len() + 4);
    escape_into(&mut out, &raw);
    Some(Bytes::from(out))
}

/// `part` as a slice of `line`, if it is one (else a caller copies).
fn sub(line: &Bytes, part: &[u8]) -> Option<Bytes> {
    let off = (part.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let end = off.checked_add(part.len()).filter(|&e| e <= line.len())?;
    Some(line.slice(off..end))
}

/// Decoded bytes as text for a person: invalid UTF-8 replaced.
fn lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(v) => Cow::Owned(
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

/// One escaped token decoded: borrowed when it holds no escape.
fn decode(tok: &[u8]) -> Cow<'_, [u8]> {
    if tok == EMPTY {
        return Cow::Borrowed(&[]);
    }
    if !tok.contains(&b'\\') {
        return Cow::Borrowed(tok);
    }
    // Every stored token is canonical, hence valid.
    Cow::Owned(unescape(tok).unwrap_or_default())
}

/// One string kept escaped (`comm`): see the module doc.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Escaped(Bytes);

impl Default for Escaped {
    fn default() -> Self {
        Self(Bytes::from_static(EMPTY))
    }
}

impl Escaped {
    /// `raw` (any bytes) escaped.
    pub fn new(raw: &[u8]) -> Self {
        let mut out = Vec::with_capacity(raw.len());
        escape_into(&mut out, raw);
        Self(Bytes::from(out))
    }

    /// The token `tok`, a slice of `line`, kept without a copy when it is
    /// spelt canonically; `None` when it is not a valid escaped field.
    pub fn parse(line: &Bytes, tok: &[u8]) -> Option<Self> {
        respell(line, tok).map(Self)
    }

    /// The escaped spelling: one token, written as is into a summary.
    pub fn as_escaped(&self) -> &[u8] {
        &self.0
    }

    /// The bytes it stands for.
    pub fn decode(&self) -> Cow<'_, [u8]> {
        decode(&self.0)
    }

    /// The bytes as text for a person, invalid UTF-8 replaced (control
    /// characters are left in: the writer of a table makes them safe).
    pub fn lossy(&self) -> Cow<'_, str> {
        lossy(self.decode())
    }
}

impl fmt::Debug for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.lossy())
    }
}

/// A process's arguments kept escaped: the tokens joined by single spaces,
/// as a summary's `p` line has them after `argc` (see the module doc).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Args {
    text: Bytes,
    len: usize,
}

/// The one argument of a process whose arguments are unknown (a NUL byte,
/// which no real argument can hold), escaped.
const UNKNOWN: &[u8] = b"\\x00";

impl Args {
    /// `args` (any bytes each) escaped.
    pub fn new<A: AsRef<[u8]>>(args: impl IntoIterator<Item = A>) -> Self {
        let mut text = Vec::new();
        let mut len = 0;
        for a in args {
            if len > 0 {
                text.push(b' ');
            }
            escape_into(&mut text, a.as_ref());
            len += 1;
        }
        Self {
            text: Bytes::from(text),
            len,
        }
    }

    /// The arguments in raw `cmdline` bytes: trailing NUL padding (what
    /// `setproctitle` leaves) dropped, then one argument per NUL-separated
    /// piece, empty ones kept; so `a\0\0b\0` gives `a`, an empty one and
    /// `b`. The agent, the simulator and the aggregator's fallback for
    /// nodes without a summary all split this way.
    pub fn from_cmdline(raw: &[u8]) -> Self {
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end == 0 {
            return Self::default();
        }
        Self::new(raw[..end].split(|&b| b == 0))
    }

    /// The arguments of a process whose `cmdline` the node could not read
    /// in time: the one argument NUL (see [`crate::format::summary`]).
    pub fn unknown() -> Self {
        Self {
            text: Bytes::from_static(UNKNOWN),
            len: 1,
        }
    }

    /// The tokens `toks` (each a slice of `line`, in order), kept without
    /// a copy when they are canonical and one space apart in `line`;
    /// `None` when one is not a valid escaped field.
    pub fn parse(line: &Bytes, toks: &[&[u8]]) -> Option<Self> {
        let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
            return Some(Self::default());
        };
        let total: usize = toks.iter().map(|t| t.len()).sum::<usize>() + toks.len() - 1;
        let start = first.as_ptr() as usize;
        let end = last.as_ptr() as usize + last.len();
        if end.checked_sub(start) == Some(total) && toks.iter().all(|t| canonical(t)) {
            // Contiguous and one space apart: the line's own bytes.
            let off = start.wrapping_sub(line.as_ptr() as usize);
            if let Some(span) = line
                .get(off..off.saturating_add(total))
                .and_then(|s| sub(line, s))
            {
                return Some(Self {
                    text: span,
                    len: toks.len(),
                });
            }
        }
        let mut text = Vec::with_capacity(total + 8);
        for (i, t) in toks.iter().enumerate() {
            if i > 0 {
                text.push(b' ');
            }
            text.extend_from_slice(&respell(line, t)?);
        }
        Some(Self {
            text: Bytes::from(text),
            len: toks.len(),
        })
    }

    /// How many arguments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (kernel threads, zombies, unreadable).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether they are unknown (the node's read of `cmdline` did not
    /// finish in time), as opposed to absent.
    pub fn is_unknown(&self) -> bool {
        self.len == 1 && self.text.as_ref() == UNKNOWN
    }

    /// The escaped tokens joined by single spaces: written as is after
    /// `argc` in a summary.
    pub fn as_escaped(&self) -> &[u8] {
        &self.text
    }

    /// Each argument's bytes.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, [u8]>> {
        self.tokens().map(decode)
    }

    fn tokens(&self) -> impl Iterator<Item = &[u8]> {
        let text: &[u8] = if self.len == 0 { &[] } else { &self.text };
        text.split(|&b| b == b' ').take(self.len)
    }

    /// Each argument's bytes, owned (for tests and callers that keep them).
    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(Cow::into_owned).collect()
    }

    /// Appends the arguments joined by spaces as text for a person,
    /// invalid UTF-8 replaced, control characters left in (the writer of
    /// a table makes them safe).
    pub fn lossy_into(&self, out: &mut String) {
        if self.len == 0 {
            return;
        }
        if !self.text.contains(&b'\\') {
            // Nothing escaped (nearly always): the tokens joined by
            // spaces are the text itself (checked as UTF-8 in one pass
            // first: the lossy path walks it in chunks).
            match std::str::from_utf8(&self.text) {
                Ok(s) => out.push_str(s),
                Err(_) => out.push_str(&String::from_utf8_lossy(&self.text)),
            }
            return;
        }
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&lossy(a));
        }
    }

    /// Bytes held (for a cache's weigher).
    pub fn bytes_len(&self) -> usize {
        self.text.len()
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|a| String::from_utf8_lossy(&a).into_owned()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tokens(line: &Bytes) -> Vec<&[u8]> {
        line.split(|&b| b == b' ')
            .filter(|t| !t.is_empty())
            .collect()
    }

    #[test]
    fn canonical_tokens_are_kept_as_slices_of_the_line() {
        let line = Bytes::from_static(b"./my\\sjob --name \\-");
        let toks = tokens(&line);
        let a = Args::parse(&line, &toks).unwrap();
        assert_eq!(a.as_escaped().as_ptr(), line.as_ptr(), "no copy");
        assert_eq!(
            a.to_vecs(),
            vec![b"./my job".to_vec(), b"--name".to_vec(), vec![]]
        );
        assert_eq!(a, Args::new([&b"./my job"[..], b"--name", b""]));
        let mut s = String::new();
        a.lossy_into(&mut s);
        assert_eq!(s, "./my job --name ");
    }

    #[test]
    fn other_spellings_are_respelt_so_equal_strings_compare_equal() {
        // `\x41` for `A`, a raw ESC, runs of spaces between tokens.
        let line = Bytes::from_static(b"\\x41b  c\x1bd   \\-");
        let toks = tokens(&line);
        let a = Args::parse(&line, &toks).unwrap();
        assert_eq!(a, Args::new([&b"Ab"[..], b"c\x1bd", b""]));
        assert_eq!(a.as_escaped(), b"Ab c\\x1bd \\-");
        let line = Bytes::from_static(b"x\\x41");
        let toks = tokens(&line);
        assert_eq!(Escaped::parse(&line, toks[0]).unwrap(), Escaped::new(b"xA"));
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for bad in ["a\\", "\\q", "\\x4", "\\xzz"] {
            let line = Bytes::from_static(bad.as_bytes());
            let toks = tokens(&line);
            assert!(Escaped::parse(&line, toks[0]).is_none(), "{bad}");
            assert!(Args::parse(&line, &toks).is_none(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_empty_arguments_are_told_apart() {
        assert!(Args::unknown().is_unknown());
        assert_eq!(Args::unknown().to_vecs(), vec![b"\0".to_vec()]);
        assert!(!Args::new([b""]).is_unknown());
        assert_eq!(Args::new([b""]).len(), 1);
        assert!(Args::default().is_empty());
        assert_eq!(Args::from_cmdline(b"\0\0"), Args::default());
        assert_eq!(
            Args::from_cmdline(b"a\0\0b c\0\0\0").to_vecs(),
            vec![b"a".to_vec(), vec![], b"b c".to_vec()]
        );
        assert_eq!(Escaped::default(), Escaped::new(b""));
        assert!(Escaped::default().decode().is_empty());
    }

    proptest! {
        #[test]
        fn any_arguments_survive_escaping_and_parsing(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6),
        ) {
            let a = Args::new(&args);
            prop_assert_eq!(a.to_vecs(), args.clone());
            let line = Bytes::copy_from_slice(a.as_escaped());
            let toks: Vec<&[u8]> = if args.is_empty() {
                Vec::new()
            } else {
                line.split(|&b| b == b' ').collect()
            };
            let back = Args::parse(&line, &toks).unwrap();
            prop_assert_eq!(&back, &a);
            let mut shown = String::new();
            back.lossy_into(&mut shown);
            let joined: Vec<String> =
                args.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect();
            prop_assert_eq!(shown, joined.join(" "));
        }

        #[test]
        fn any_token_is_refused_or_parsed_canonically(tok in proptest::collection::vec(any::<u8>(), 1..16)) {
            let tok: Vec<u8> = tok.into_iter().filter(|&b| b != b' ' && b != b'\n').collect();
            prop_assume!(!tok.is_empty());
            let line = Bytes::from(tok.clone());
            if let Some(e) = Escaped::parse(&line, &line) {
                prop_assert_eq!(Some(e.decode().into_owned()), unescape(&tok));
                prop_assert_eq!(e.clone(), Escaped::new(&e.decode()));
            } else {
                prop_assert!(unescape(&tok).is_none());
            }
        }
    }
}

//! Configuration diagnostics: one message per problem, with the file, line,
//! column and key it is about, printed the way compilers do
//! (`gproc.toml:12:9: cache.rule[1].ttl: invalid duration ...`) so editors
//! and `grep` can jump to it.

use std::fmt;
use std::ops::Range;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub col: usize,
}

/// One error or warning about a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as the user gave it (or `<default>` and the like).
    pub origin: String,
    /// Where in the file, when the problem has a place.
    pub pos: Option<Pos>,
    /// The dotted key it concerns (`cache.rule[1].ttl`); empty for the file.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file, in file order. Displays one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[Diagnostic] {
        &self.0
    }

    /// How many errors there are (at least one when returned as an `Err`).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none; `Config` never returns an empty `Err`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Maps byte offsets to line and column.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    /// The position of byte `offset`, clamped to the text.
    pub(crate) fn pos(&self, offset: usize) -> Pos {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line.saturating_sub(1)];
        let col = self.text[start..offset].chars().count() + 1;
        Pos { line, col }
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Diags<'a> {
    origin: String,
    lines: LineIndex<'a>,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl<'a> Diags<'a> {
    pub(crate) fn new(origin: &str, text: &'a str) -> Self {
        Self {
            origin: origin.to_string(),
            lines: LineIndex::new(text),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn make(&self, span: Option<Range<usize>>, key: &str, msg: String) -> Diagnostic {
        Diagnostic {
            origin: self.origin.clone(),
            pos: span.map(|s| self.lines.pos(s.start)),
            key: key.to_string(),
            message: msg,
        }
    }

    /// Records an error at `span` (a byte range of the file).
    pub(crate) fn error(&mut self, span: Option<Range<usize>>, key: &str, msg: impl Into<String>) {
        let d = self.make(span, key, msg.into());
        self.errors.push(d);
    }

    /// Records a warning: the file is usable but probably not what was meant.
    pub(crate) fn warn(&mut self, span: Option<Range<usize>>, key: &str, msg: impl Into<String>) {
        let d = self.make(span, key, msg.into());
        self.warnings.push(d);
    }

    pub(crate) fn pos(&self, offset: usize) -> Pos {
        self.lines.pos(offset)
    }
}

/// Sorts by position; problems without a place go last, in the order found.
pub(crate) fn sort(v: &mut [Diagnostic]) {
    v.sort_by_key(|d| d.pos.map_or((usize::MAX, usize::MAX), |p| (p.line, p.col)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_to_positions() {
        let t = "ab\ncdé\n\nx";
        let li = LineIndex::new(t);
        assert_eq!(li.pos(0), Pos { line: 1, col: 1 });
        assert_eq!(li.pos(2), Pos { line: 1, col: 3 });
        assert_eq!(li.pos(3), Pos { line: 2, col: 1 });
        assert_eq!(li.pos(5), Pos { line: 2, col: 3 });
        // After the two-byte 'é': column counts characters.
        assert_eq!(li.pos(7), Pos { line: 2, col: 4 });
        // Inside the 'é': clamps back to its start.
        assert_eq!(li.pos(6), Pos { line: 2, col: 3 });
        assert_eq!(li.pos(8), Pos { line: 3, col: 1 });
        assert_eq!(li.pos(9), Pos { line: 4, col: 1 });
        assert_eq!(li.pos(999), Pos { line: 4, col: 2 });
    }

    #[test]
    fn display() {
        let d = Diagnostic {
            origin: "gproc.toml".into(),
            pos: Some(Pos { line: 12, col: 9 }),
            key: "cache.rule[1].ttl".into(),
            message: "invalid duration \"2x\"".into(),
        };
        assert_eq!(
            d.to_string(),
            "gproc.toml:12:9: cache.rule[1].ttl: invalid duration \"2x\""
        );
        let d2 = Diagnostic {
            pos: None,
            key: String::new(),
            ..d.clone()
        };
        assert_eq!(d2.to_string(), "gproc.toml: invalid duration \"2x\"");
        let all = ConfigErrors(vec![d, d2]);
        assert_eq!(all.to_string().lines().count(), 2);
    }
}

//! A file served from several buffers in order, without joining them: the
//! aggregator's `/ps` for an administrator is every node's lines, already
//! written once per summary ([`crate::tree`]); copying them into one
//! buffer per table cost a tenth of a cold table's CPU at 10,000 nodes
//! (mostly the kernel zeroing the fresh pages of a 100 MB buffer).

use bytes::{Bytes, BytesMut};

/// Buffers read as one file, in order.
#[derive(Debug, Default)]
pub struct Chunks {
    parts: Vec<Bytes>,
    /// Where each part ends in the file.
    ends: Vec<usize>,
}

impl Chunks {
    /// No bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `b` (an empty one is skipped).
    pub fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.ends.push(self.len() + b.len());
        self.parts.push(b);
    }

    /// The file's length.
    pub fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `count` bytes at `offset` (fewer at the end, none past it): a slice
    /// of one part when the range lies within it, else a copy of the
    /// pieces.
    pub fn read(&self, offset: u64, count: usize) -> Bytes {
        let len = self.len();
        let start = offset.min(len as u64) as usize;
        let end = start.saturating_add(count).min(len);
        if start == end {
            return Bytes::new();
        }
        // The first part ending after `start`.
        let first = self.ends.partition_point(|&e| e <= start);
        let part_start = |i: usize| if i == 0 { 0 } else { self.ends[i - 1] };
        if end <= self.ends[first] {
            let at = part_start(first);
            return self.parts[first].slice(start - at..end - at);
        }
        let mut out = BytesMut::with_capacity(end - start);
        let mut i = first;
        while out.len() < end - start {
            let at = part_start(i);
            let from = (start + out.len()) - at;
            let to = (end - at).min(self.parts[i].len());
            out.extend_from_slice(&self.parts[i][from..to]);
            i += 1;
        }
        out.freeze()
    }

    /// The whole file in one buffer (a copy unless it is one part).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            _ => self.read(0, self.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any read of the parts is the same read of the parts joined.
        #[test]
        fn reads_are_those_of_the_joined_bytes(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            offset in 0u64..300,
            count in 0usize..300,
        ) {
            let mut c = Chunks::new();
            let mut joined = Vec::new();
            for p in &parts {
                c.push(Bytes::from(p.clone()));
                joined.extend_from_slice(p);
            }
            prop_assert_eq!(c.len(), joined.len());
            let start = (offset as usize).min(joined.len());
            let end = start.saturating_add(count).min(joined.len());
            prop_assert_eq!(&c.read(offset, count)[..], &joined[start..end]);
            prop_assert_eq!(&c.to_bytes()[..], &joined[..]);
        }
    }
}

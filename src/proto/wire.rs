//! Primitive wire types: little-endian integers, strings and qids, read
//! from a bounds-checked cursor and written to a growable buffer.
//!
//! Every read checks the remaining length first, so hostile bytes produce a
//! [`DecodeError`] and never a panic or an allocation larger than the frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{DecodeError, EncodeError, Qid};

/// A cursor over one frame's body. Reading past the end is an error.
pub struct Reader {
    /// The bytes not read yet; slicing a `Bytes` is zero-copy, so `Rread`
    /// payloads are not copied out of the frame.
    buf: Bytes,
}

impl Reader {
    /// A cursor at the start of `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Truncated {
                needed: n,
                left: self.buf.remaining(),
            })
        } else {
            Ok(())
        }
    }

    /// A little-endian `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16_le())
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32_le())
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }

    /// `n` raw bytes, shared with the frame (no copy).
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// A 9P string: `len[2]` then that many UTF-8 bytes.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        let raw = self.bytes(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A qid: `type[1] version[4] path[8]`.
    pub fn qid(&mut self) -> Result<Qid, DecodeError> {
        Ok(Qid {
            ty: self.u8()?,
            version: self.u32()?,
            path: self.u64()?,
        })
    }

    /// A count-prefixed (`n[2]`) list, each element read by `f`. The count is
    /// checked against the bytes left (each element takes at least
    /// `min_size` bytes) before anything is allocated.
    pub fn list<T>(
        &mut self,
        min_size: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.u16()? as usize;
        self.need(n.saturating_mul(min_size))?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(out)
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    /// Fails when bytes are left over: a frame longer than its message is
    /// malformed, and accepting it would hide encoder bugs on the peer.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.has_remaining() {
            Err(DecodeError::TrailingBytes(self.buf.remaining()))
        } else {
            Ok(())
        }
    }
}

/// Writes wire primitives into a `BytesMut`.
pub struct Writer<'a> {
    /// The frame being built.
    pub buf: &'a mut BytesMut,
}

impl Writer<'_> {
    /// Appends `v` as a little-endian `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }
    /// Appends `v` as a little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16_le(v);
    }
    /// Appends `v` as a little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32_le(v);
    }
    /// Appends `v` as a little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64_le(v);
    }
    /// Appends `v` as is (no length prefix).
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    /// A 9P string. Over 65535 bytes is an error, never a silent truncation.
    pub fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        let n = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong(s.len()))?;
        self.u16(n);
        self.bytes(s.as_bytes());
        Ok(())
    }

    /// Appends a qid.
    pub fn qid(&mut self, q: &Qid) {
        self.u8(q.ty);
        self.u32(q.version);
        self.u64(q.path);
    }

    /// A count-prefixed list.
    pub fn list<T>(
        &mut self,
        items: &[T],
        mut f: impl FnMut(&mut Self, &T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let n =
            u16::try_from(items.len()).map_err(|_| EncodeError::TooManyElements(items.len()))?;
        self.u16(n);
        for it in items {
            f(self, it)?;
        }
        Ok(())
    }
}

/// Encoded size of a 9P string.
pub fn str_size(s: &str) -> usize {
    2 + s.len()
}

//! Framing: splitting a byte stream into whole 9P messages.
//!
//! "Is a whole frame buffered?" is separate from "decode it" so that a
//! frame's size is checked against msize before anything is allocated
//! for it, and an incomplete frame is not an error.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

use super::DecodeError;

/// `size[4] type[1] tag[2]`.
pub const HEADER_SIZE: usize = 7;

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Whole frame length including the size field.
    pub size: u32,
    /// Message type.
    pub ty: u8,
    /// Tag.
    pub tag: u16,
}

/// Reads the header of a frame of at least 7 bytes.
pub fn parse_header(frame: &[u8]) -> Result<Header, DecodeError> {
    if frame.len() < HEADER_SIZE {
        return Err(DecodeError::Truncated {
            needed: HEADER_SIZE,
            left: frame.len(),
        });
    }
    Ok(Header {
        size: u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]),
        ty: frame[4],
        tag: u16::from_le_bytes([frame[5], frame[6]]),
    })
}

/// A byte stream that cannot be split into frames: the connection cannot
/// continue, because the next frame boundary is unknown.
#[derive(Debug, Error)]
pub enum FrameError {
    /// A size field below the header size.
    #[error("frame size {0} is smaller than the 7-byte header")]
    TooShort(u32),
    /// A size field above the negotiated msize.
    #[error("frame size {size} exceeds msize {max}")]
    TooBig {
        /// The size field.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The size field of the frame starting `buf`, once its four bytes are
/// there (not yet checked: see [`check_size`]).
pub fn declared_size(buf: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(..4)?.try_into().ok()?))
}

/// Checks a frame's size field: at least a header, at most `max`.
///
/// # Errors
/// A size under 7 or over `max`.
pub fn check_size(size: u32, max: u32) -> Result<usize, FrameError> {
    if (size as usize) < HEADER_SIZE {
        return Err(FrameError::TooShort(size));
    }
    if size > max {
        return Err(FrameError::TooBig { size, max });
    }
    Ok(size as usize)
}

/// Length of the first frame in `buf` if it is all there.
///
/// # Errors
/// A size field under 7 or over `max`.
pub fn frame_size(buf: &[u8], max: u32) -> Result<Option<usize>, FrameError> {
    let Some(size) = declared_size(buf) else {
        return Ok(None);
    };
    let size = check_size(size, max)?;
    Ok((buf.len() >= size).then_some(size))
}

/// A `tokio_util` decoder yielding whole raw frames (header included).
/// Messages are decoded by the session, which knows the dialect.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    /// Largest acceptable frame: the msize offered before `Tversion`, the
    /// negotiated one after.
    pub max_size: u32,
}

impl FrameCodec {
    /// A codec accepting frames up to `max_size` bytes.
    pub fn new(max_size: u32) -> Self {
        Self { max_size }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match frame_size(src, self.max_size)? {
            Some(n) => Ok(Some(src.split_to(n).freeze())),
            None => {
                if let Some(size) = declared_size(src) {
                    // Reserve the rest of the frame once rather than growing
                    // in steps; bounded by max_size above.
                    src.reserve((size as usize).saturating_sub(src.len()));
                }
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(buf)? {
            Some(f) => Ok(Some(f)),
            None if buf.has_remaining() => Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed with {} bytes of a partial frame",
                    buf.len()
                ),
            ))),
            None => Ok(None),
        }
    }
}

//! The 9P wire format: 9P2000, 9P2000.u and 9P2000.L.
//!
//! Pure code: typed messages ([`Tmessage`], [`Rmessage`], one struct per
//! message), the records they carry ([`Qid`], [`Stat`], [`Attr`],
//! [`Statfs`], [`DirEntry`]) and framing ([`FrameCodec`]). No sockets, no
//! tasks, no clock. The dialect is a decode/encode parameter because .u and
//! .L change the layout of `Tauth`, `Tattach`, `Tcreate`, the stat record and
//! errors.
//!
//! All integers are little-endian on the wire whatever the host: the codec
//! only uses `bytes`' explicit `_le` accessors.

pub mod errno;
mod frame;
mod messages;
mod meta;
mod records;
pub mod wire;

pub use frame::{
    FrameCodec, FrameError, HEADER_SIZE, check_size, declared_size, frame_size, parse_header,
};
pub use messages::*;
pub use meta::{FileKind, Metadata, dt, epoch_parts, qid_type_from_mode, s_if, time_from_wire};
pub use records::{Attr, DirEntry, SetAttr, Stat, Statfs};

use thiserror::Error;

/// The tag of `Tversion`, the only message that uses it.
pub const NOTAG: u16 = 0xFFFF;
/// "No fid": the afid of an unauthenticated `Tattach`.
pub const NOFID: u32 = 0xFFFF_FFFF;
/// `n_uname` meaning "no numeric user" (9P2000.u/.L).
pub const NONUNAME: u32 = 0xFFFF_FFFF;
/// At most this many names in one `Twalk` (walk(5)).
pub const MAXWELEM: usize = 16;
/// Room for the `Tread`/`Rread` header: clients read `msize - IOHDRSZ` bytes.
pub const IOHDRSZ: u32 = 24;
/// The smallest msize we accept; Linux refuses a server below 4096.
pub const MIN_MSIZE: u32 = 4096;
/// `Statfs::ty` that Linux v9fs expects (`V9FS_MAGIC`).
pub const V9FS_MAGIC: u32 = 0x0102_1997;

/// qid.type bits (the top byte of a 9P2000 mode).
pub mod qt {
    /// A directory.
    pub const DIR: u8 = 0x80;
    /// Append-only file.
    pub const APPEND: u8 = 0x40;
    /// Exclusive-use file.
    pub const EXCL: u8 = 0x20;
    /// An authentication file (afid).
    pub const AUTH: u8 = 0x08;
    /// A symbolic link (9P2000.u/.L).
    pub const SYMLINK: u8 = 0x02;
    /// A plain file.
    pub const FILE: u8 = 0x00;
}

/// 9P2000/.u mode bits in stat records.
pub mod dm {
    /// A directory.
    pub const DIR: u32 = 0x8000_0000;
    /// Append-only.
    pub const APPEND: u32 = 0x4000_0000;
    /// Exclusive use.
    pub const EXCL: u32 = 0x2000_0000;
    /// An authentication file.
    pub const AUTH: u32 = 0x0800_0000;
    /// A symbolic link (.u).
    pub const SYMLINK: u32 = 0x0200_0000;
    /// A device (.u).
    pub const DEVICE: u32 = 0x0080_0000;
    /// A named pipe (.u).
    pub const NAMEDPIPE: u32 = 0x0020_0000;
    /// A socket (.u).
    pub const SOCKET: u32 = 0x0010_0000;
}

/// 9P2000/.u open modes (`Topen.mode`).
pub mod om {
    /// Read.
    pub const READ: u8 = 0;
    /// Write.
    pub const WRITE: u8 = 1;
    /// Read and write.
    pub const RDWR: u8 = 2;
    /// Execute (read for our purposes).
    pub const EXEC: u8 = 3;
    /// Truncate on open.
    pub const TRUNC: u8 = 0x10;
    /// Remove on clunk.
    pub const RCLOSE: u8 = 0x40;
}

/// `Tgetattr.request_mask` / `Rgetattr.valid` bits.
pub mod getattr {
    /// st_mode.
    pub const MODE: u64 = 0x1;
    /// st_nlink.
    pub const NLINK: u64 = 0x2;
    /// st_uid.
    pub const UID: u64 = 0x4;
    /// st_gid.
    pub const GID: u64 = 0x8;
    /// st_rdev.
    pub const RDEV: u64 = 0x10;
    /// st_atime.
    pub const ATIME: u64 = 0x20;
    /// st_mtime.
    pub const MTIME: u64 = 0x40;
    /// st_ctime.
    pub const CTIME: u64 = 0x80;
    /// st_ino.
    pub const INO: u64 = 0x100;
    /// st_size.
    pub const SIZE: u64 = 0x200;
    /// st_blocks.
    pub const BLOCKS: u64 = 0x400;
    /// Everything `stat(2)` has.
    pub const BASIC: u64 = 0x7ff;
    /// Everything including btime, gen and data_version.
    pub const ALL: u64 = 0x3fff;
}

/// Which 9P dialect a connection speaks, fixed by `Tversion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Plain 9P2000 (Plan 9).
    P2000,
    /// 9P2000.u (Unix extensions: numeric ids, symlinks, errno).
    P2000u,
    /// 9P2000.L (Linux).
    P2000L,
}

impl Dialect {
    /// The version string sent in `Tversion`/`Rversion`.
    pub fn version_string(self) -> &'static str {
        match self {
            Dialect::P2000 => "9P2000",
            Dialect::P2000u => "9P2000.u",
            Dialect::P2000L => "9P2000.L",
        }
    }

    /// The dialect a server answers to a client's version string, by prefix
    /// as Linux and gVisor expect: any `9P2000.L*` (gVisor sends
    /// `9P2000.L.Google.N`) is .L; `9P2000.u`; `9P2000`; else `None`
    /// (answered `"unknown"`).
    pub fn negotiate(client: &str) -> Option<Dialect> {
        if client.starts_with("9P2000.L") {
            Some(Dialect::P2000L)
        } else if client.starts_with("9P2000.u") {
            Some(Dialect::P2000u)
        } else if client.starts_with("9P2000") {
            // Plan 9: a version "9P2000.x" the server does not know is
            // answered with the base version.
            Some(Dialect::P2000)
        } else {
            None
        }
    }

    /// Parses a dialect name as written in configs and on command lines:
    /// `9P2000`, `9P2000.u` or `9P2000.L`, in any case; `.u`/`u` and
    /// `.L`/`L` are short forms.
    ///
    /// # Errors
    /// A message listing the three names.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "9p2000" => Ok(Dialect::P2000),
            "9p2000.u" | ".u" | "u" => Ok(Dialect::P2000u),
            "9p2000.l" | ".l" | "l" => Ok(Dialect::P2000L),
            _ => Err(format!(
                "invalid dialect {s:?}: expected \"9P2000\", \"9P2000.u\" or \"9P2000.L\""
            )),
        }
    }

    /// Whether `Tauth`/`Tattach` carry `n_uname` and errors an errno.
    pub fn has_unix_ids(self) -> bool {
        !matches!(self, Dialect::P2000)
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version_string())
    }
}

/// The server's unique identity of a file: two files are the same iff their
/// qids are. `path` doubles as the inode number in Linux v9fs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Qid {
    /// `qt::*` bits.
    pub ty: u8,
    /// Changes when the file changes; 0 for synthetic files, which makes
    /// v9fs read them directly even under `cache=loose`.
    pub version: u32,
    /// Unique within the server's tree.
    pub path: u64,
}

impl Qid {
    /// Encoded size.
    pub const SIZE: usize = 13;

    /// Whether this qid names a directory.
    pub fn is_dir(&self) -> bool {
        self.ty & qt::DIR != 0
    }

    /// Whether this qid names a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.ty & qt::SYMLINK != 0
    }
}

/// Bytes that are not a valid message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The message ends before a field does.
    #[error("message truncated: needed {needed} more bytes, {left} left")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        left: usize,
    },
    /// Bytes left after the last field.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// A string that is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A message type that is not part of the dialect (or of any).
    #[error("unknown message type {ty} for {dialect}")]
    UnknownType {
        /// The type byte.
        ty: u8,
        /// The negotiated dialect.
        dialect: Dialect,
    },
    /// A size field that cannot be right.
    #[error("invalid size field: {0}")]
    BadSize(String),
}

/// A message that cannot be encoded: 9P has fixed field widths, and we
/// never truncate silently.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A string over 65535 bytes.
    #[error("string of {0} bytes does not fit a 9P string (max 65535)")]
    StringTooLong(usize),
    /// A list over 65535 elements.
    #[error("list of {0} elements does not fit a 9P count (max 65535)")]
    TooManyElements(usize),
    /// A payload or record larger than its size field.
    #[error("{0} bytes do not fit the size field")]
    TooLarge(usize),
    /// A message that does not exist in the dialect.
    #[error("{what} cannot be sent in {dialect}")]
    WrongDialect {
        /// The message.
        what: &'static str,
        /// The negotiated dialect.
        dialect: Dialect,
    },
}

#[cfg(test)]
mod tests;

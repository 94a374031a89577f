//! Records carried inside messages: the 9P2000/.u stat record, .L getattr
//! attributes, statfs and readdir entries.

use super::wire::{Reader, Writer, str_size};
use super::{DecodeError, Dialect, EncodeError, NONUNAME, Qid};

/// The 9P2000 stat record (stat(5)), with the 9P2000.u extension fields.
/// In plain 9P2000 the extension fields are neither sent nor read (decoding
/// leaves them at their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Server type (kernel use).
    pub ty: u16,
    /// Server subtype.
    pub dev: u32,
    /// The file's qid.
    pub qid: Qid,
    /// Permissions and `dm::*` bits.
    pub mode: u32,
    /// Last access, seconds since the epoch.
    pub atime: u32,
    /// Last modification.
    pub mtime: u32,
    /// Length in bytes (0 for /proc-style files).
    pub length: u64,
    /// Last path element.
    pub name: String,
    /// Owner name.
    pub uid: String,
    /// Group name.
    pub gid: String,
    /// Last modifier name.
    pub muid: String,
    /// .u: symlink target or device description.
    pub extension: String,
    /// .u: numeric owner.
    pub n_uid: u32,
    /// .u: numeric group.
    pub n_gid: u32,
    /// .u: numeric last modifier.
    pub n_muid: u32,
}

impl Default for Stat {
    fn default() -> Self {
        Self {
            ty: 0,
            dev: 0,
            qid: Qid::default(),
            mode: 0,
            atime: 0,
            mtime: 0,
            length: 0,
            name: String::new(),
            uid: String::new(),
            gid: String::new(),
            muid: String::new(),
            extension: String::new(),
            n_uid: NONUNAME,
            n_gid: NONUNAME,
            n_muid: NONUNAME,
        }
    }
}

impl Stat {
    /// Encoded size including the leading `size[2]`.
    pub fn size(&self, d: Dialect) -> usize {
        let mut n = 2 + 2 + 4 + Qid::SIZE + 4 + 4 + 4 + 8;
        n +=
            str_size(&self.name) + str_size(&self.uid) + str_size(&self.gid) + str_size(&self.muid);
        if d == Dialect::P2000u {
            n += str_size(&self.extension) + 12;
        }
        n
    }

    pub(crate) fn encode(&self, d: Dialect, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let total = self.size(d);
        let inner = u16::try_from(total - 2).map_err(|_| EncodeError::TooLarge(total))?;
        w.u16(inner);
        w.u16(self.ty);
        w.u32(self.dev);
        w.qid(&self.qid);
        w.u32(self.mode);
        w.u32(self.atime);
        w.u32(self.mtime);
        w.u64(self.length);
        w.string(&self.name)?;
        w.string(&self.uid)?;
        w.string(&self.gid)?;
        w.string(&self.muid)?;
        if d == Dialect::P2000u {
            w.string(&self.extension)?;
            w.u32(self.n_uid);
            w.u32(self.n_gid);
            w.u32(self.n_muid);
        }
        Ok(())
    }

    /// Reads one record. Its `size[2]` bounds the fields; extra bytes inside
    /// the record (a newer extension) are skipped.
    pub(crate) fn decode(d: Dialect, r: &mut Reader) -> Result<Self, DecodeError> {
        let n = r.u16()? as usize;
        let mut r = Reader::new(r.bytes(n)?);
        let mut st = Stat {
            ty: r.u16()?,
            dev: r.u32()?,
            qid: r.qid()?,
            mode: r.u32()?,
            atime: r.u32()?,
            mtime: r.u32()?,
            length: r.u64()?,
            name: r.string()?,
            uid: r.string()?,
            gid: r.string()?,
            muid: r.string()?,
            ..Stat::default()
        };
        if d == Dialect::P2000u {
            st.extension = r.string()?;
            st.n_uid = r.u32()?;
            st.n_gid = r.u32()?;
            st.n_muid = r.u32()?;
        }
        Ok(st)
    }

    /// Decodes the records of a 9P2000/.u directory read, back to back.
    pub fn decode_dir(d: Dialect, data: bytes::Bytes) -> Result<Vec<Stat>, DecodeError> {
        let mut r = Reader::new(data);
        let mut out = Vec::new();
        while r.remaining() > 0 {
            out.push(Stat::decode(d, &mut r)?);
        }
        Ok(out)
    }

    /// Appends this record to a directory-read buffer.
    pub fn encode_to(&self, d: Dialect, buf: &mut bytes::BytesMut) -> Result<(), EncodeError> {
        self.encode(d, &mut Writer { buf })
    }
}

/// 9P2000.L `Rgetattr` body: what `stat(2)` returns, plus a validity mask.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attr {
    /// `getattr::*` bits that are filled in.
    pub valid: u64,
    /// The file's qid.
    pub qid: Qid,
    /// `st_mode` (type and permission bits, Linux values).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u64,
    /// Device number for device files.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O size.
    pub blksize: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Access time, seconds.
    pub atime_sec: u64,
    /// Access time, nanoseconds.
    pub atime_nsec: u64,
    /// Modification time, seconds.
    pub mtime_sec: u64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u64,
    /// Change time, seconds.
    pub ctime_sec: u64,
    /// Change time, nanoseconds.
    pub ctime_nsec: u64,
    /// Birth time, seconds.
    pub btime_sec: u64,
    /// Birth time, nanoseconds.
    pub btime_nsec: u64,
    /// Inode generation.
    pub gen_: u64,
    /// Data version.
    pub data_version: u64,
}

impl Attr {
    /// Encoded size.
    pub const SIZE: usize = 8 + Qid::SIZE + 4 * 3 + 8 * 5 + 8 * 8 + 8 * 2;

    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.valid);
        w.qid(&self.qid);
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        for v in [
            self.nlink,
            self.rdev,
            self.size,
            self.blksize,
            self.blocks,
            self.atime_sec,
            self.atime_nsec,
            self.mtime_sec,
            self.mtime_nsec,
            self.ctime_sec,
            self.ctime_nsec,
            self.btime_sec,
            self.btime_nsec,
            self.gen_,
            self.data_version,
        ] {
            w.u64(v);
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Attr {
            valid: r.u64()?,
            qid: r.qid()?,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            nlink: r.u64()?,
            rdev: r.u64()?,
            size: r.u64()?,
            blksize: r.u64()?,
            blocks: r.u64()?,
            atime_sec: r.u64()?,
            atime_nsec: r.u64()?,
            mtime_sec: r.u64()?,
            mtime_nsec: r.u64()?,
            ctime_sec: r.u64()?,
            ctime_nsec: r.u64()?,
            btime_sec: r.u64()?,
            btime_nsec: r.u64()?,
            gen_: r.u64()?,
            data_version: r.u64()?,
        })
    }
}

/// 9P2000.L `Tsetattr` body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// Which fields to set.
    pub valid: u32,
    /// New mode.
    pub mode: u32,
    /// New owner.
    pub uid: u32,
    /// New group.
    pub gid: u32,
    /// New size.
    pub size: u64,
    /// New atime, seconds.
    pub atime_sec: u64,
    /// New atime, nanoseconds.
    pub atime_nsec: u64,
    /// New mtime, seconds.
    pub mtime_sec: u64,
    /// New mtime, nanoseconds.
    pub mtime_nsec: u64,
}

impl SetAttr {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.valid);
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u64(self.size);
        w.u64(self.atime_sec);
        w.u64(self.atime_nsec);
        w.u64(self.mtime_sec);
        w.u64(self.mtime_nsec);
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SetAttr {
            valid: r.u32()?,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            size: r.u64()?,
            atime_sec: r.u64()?,
            atime_nsec: r.u64()?,
            mtime_sec: r.u64()?,
            mtime_nsec: r.u64()?,
        })
    }
}

/// 9P2000.L `Rstatfs` body (`statfs(2)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Statfs {
    /// File system type; v9fs wants `V9FS_MAGIC`.
    pub ty: u32,
    /// Block size; must be non-zero for `df`.
    pub bsize: u32,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to non-root.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// File system id.
    pub fsid: u64,
    /// Maximum name length; must be non-zero.
    pub namelen: u32,
}

impl Statfs {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.ty);
        w.u32(self.bsize);
        w.u64(self.blocks);
        w.u64(self.bfree);
        w.u64(self.bavail);
        w.u64(self.files);
        w.u64(self.ffree);
        w.u64(self.fsid);
        w.u32(self.namelen);
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Statfs {
            ty: r.u32()?,
            bsize: r.u32()?,
            blocks: r.u64()?,
            bfree: r.u64()?,
            bavail: r.u64()?,
            files: r.u64()?,
            ffree: r.u64()?,
            fsid: r.u64()?,
            namelen: r.u32()?,
        })
    }
}

/// One 9P2000.L `Rreaddir` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's qid.
    pub qid: Qid,
    /// Cookie of the *next* entry: a later `Treaddir` at this offset resumes
    /// right after this entry.
    pub offset: u64,
    /// Linux `DT_*` type (`DT_DIR` 4, `DT_REG` 8, `DT_LNK` 10), not qid.type.
    pub ty: u8,
    /// The name.
    pub name: String,
}

impl DirEntry {
    /// Encoded size.
    pub fn size(&self) -> usize {
        Qid::SIZE + 8 + 1 + str_size(&self.name)
    }

    /// Appends the entry to a readdir payload.
    pub fn encode_to(&self, buf: &mut bytes::BytesMut) -> Result<(), EncodeError> {
        let mut w = Writer { buf };
        w.qid(&self.qid);
        w.u64(self.offset);
        w.u8(self.ty);
        w.string(&self.name)
    }

    /// Decodes every entry of an `Rreaddir` payload.
    pub fn decode_all(data: bytes::Bytes) -> Result<Vec<DirEntry>, DecodeError> {
        let mut r = Reader::new(data);
        let mut out = Vec::new();
        while r.remaining() > 0 {
            out.push(DirEntry {
                qid: r.qid()?,
                offset: r.u64()?,
                ty: r.u8()?,
                name: r.string()?,
            });
        }
        Ok(out)
    }
}

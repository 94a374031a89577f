//! Typed T- and R-messages of all three dialects, one struct per message,
//! named as in the manuals, with their encoders and decoders.

use bytes::{Bytes, BytesMut};

use super::records::{Attr, DirEntry, SetAttr, Stat, Statfs};
use super::wire::{Reader, Writer};
use super::{DecodeError, Dialect, EncodeError, HEADER_SIZE, Qid};

/// Message type numbers (Linux `include/net/9p/9p.h`).
pub mod ty {
    #![allow(missing_docs)]
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const RERROR: u8 = 107;
    pub const TFLUSH: u8 = 108;
    pub const TWALK: u8 = 110;
    pub const TOPEN: u8 = 112;
    pub const TCREATE: u8 = 114;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
    pub const TSTAT: u8 = 124;
    pub const TWSTAT: u8 = 126;
}

/// Whether a type number belongs to the .L-only range (6..=77).
fn is_dotl_type(t: u8) -> bool {
    t < ty::TVERSION
}

/// Whether a type number is a 9P2000-only message that .L replaced.
fn is_legacy_only(t: u8) -> bool {
    matches!(
        t,
        ty::TOPEN | ty::TCREATE | ty::TSTAT | ty::TWSTAT | 113 | 115 | 125 | 127
    )
}

/// Checks that message type `t` exists in dialect `d`.
fn check_dialect(t: u8, d: Dialect) -> Result<(), DecodeError> {
    let ok = if is_dotl_type(t) {
        d == Dialect::P2000L
    } else if is_legacy_only(t) {
        d != Dialect::P2000L
    } else {
        true
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::UnknownType { ty: t, dialect: d })
    }
}

macro_rules! messages {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $fty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: $fty),* }
    };
}

// ---- 9P2000 (and the shared part of .u/.L) ----
messages!(/// Negotiates msize and dialect; resets the session.
    Tversion { /// Largest message the client accepts.
        msize: u32, /// Requested version string.
        version: String });
messages!(/// The server's answer: msize ≤ the client's, and a version.
    Rversion { /// Negotiated msize.
        msize: u32, /// The version or `"unknown"`.
        version: String });
messages!(/// Opens an authentication fid.
    Tauth { /// The new auth fid.
        afid: u32, /// User name.
        uname: String, /// Tree to attach.
        aname: String, /// Numeric user (.u/.L), `NONUNAME` if none.
        n_uname: u32 });
messages!(/// The auth fid's qid.
    Rauth { /// qid with `qt::AUTH`.
        aqid: Qid });
messages!(/// Attaches a fid to the root of a tree.
    Tattach { /// The new root fid.
        fid: u32, /// An authenticated afid or `NOFID`.
        afid: u32, /// User name.
        uname: String, /// Tree to attach.
        aname: String, /// Numeric user (.u/.L), `NONUNAME` if none.
        n_uname: u32 });
messages!(/// The root's qid.
    Rattach { /// Root qid.
        qid: Qid });
messages!(/// An error: a string (9P2000) plus an errno (.u).
    Rerror { /// The message.
        ename: String, /// errno (.u only; 0 in 9P2000).
        errno: u32 });
messages!(/// Aborts the request with tag `oldtag`.
    Tflush { /// Tag to cancel.
        oldtag: u16 });
messages!(/// Walks `wnames` from `fid`, binding `newfid` on full success.
    Twalk { /// Starting fid.
        fid: u32, /// Fid for the result (may equal `fid`).
        newfid: u32, /// Path elements, at most `MAXWELEM`.
        wnames: Vec<String> });
messages!(/// One qid per element walked.
    Rwalk { /// Qids of the walked elements.
        wqids: Vec<Qid> });
messages!(/// Opens a fid (9P2000/.u).
    Topen { /// The fid.
        fid: u32, /// `om::*` mode.
        mode: u8 });
messages!(/// Open answer.
    Ropen { /// The file's qid.
        qid: Qid, /// Max bytes per I/O, 0 for msize-24.
        iounit: u32 });
messages!(/// Creates a file (9P2000/.u).
    Tcreate { /// Directory fid.
        fid: u32, /// New name.
        name: String, /// Permissions and `dm::*`.
        perm: u32, /// Open mode.
        mode: u8, /// .u extension string.
        extension: String });
messages!(/// Create answer.
    Rcreate { /// New file's qid.
        qid: Qid, /// I/O unit.
        iounit: u32 });
messages!(/// Reads `count` bytes at `offset`.
    Tread { /// Open fid.
        fid: u32, /// Byte offset (or directory offset).
        offset: u64, /// Max bytes.
        count: u32 });
messages!(/// Read answer; empty data is EOF.
    Rread { /// The bytes.
        data: Bytes });
messages!(/// Writes data at `offset`.
    Twrite { /// Open fid.
        fid: u32, /// Byte offset.
        offset: u64, /// The bytes.
        data: Bytes });
messages!(/// Write answer.
    Rwrite { /// Bytes written.
        count: u32 });
messages!(/// Forgets a fid.
    Tclunk { /// The fid.
        fid: u32 });
messages!(/// Removes the file and clunks the fid.
    Tremove { /// The fid.
        fid: u32 });
messages!(/// Asks for a stat record (9P2000/.u).
    Tstat { /// The fid.
        fid: u32 });
messages!(/// The stat record.
    Rstat { /// The record.
        stat: Stat });
messages!(/// Changes a stat record (9P2000/.u).
    Twstat { /// The fid.
        fid: u32, /// New values.
        stat: Stat });

// ---- 9P2000.L ----
messages!(/// .L error: a Linux errno.
    Rlerror { /// errno.
        ecode: u32 });
messages!(/// Asks for file system statistics.
    Tstatfs { /// Any fid of the tree.
        fid: u32 });
messages!(/// File system statistics.
    Rstatfs { /// The record.
        statfs: Statfs });
messages!(/// Opens with Linux open flags.
    Tlopen { /// The fid.
        fid: u32, /// `O_*` flags.
        flags: u32 });
messages!(/// Lopen answer.
    Rlopen { /// qid.
        qid: Qid, /// I/O unit.
        iounit: u32 });
messages!(/// Creates and opens a regular file.
    Tlcreate { /// Directory fid; becomes the new file.
        fid: u32, /// Name.
        name: String, /// Open flags.
        flags: u32, /// Mode.
        mode: u32, /// Group.
        gid: u32 });
messages!(/// Lcreate answer.
    Rlcreate { /// qid.
        qid: Qid, /// I/O unit.
        iounit: u32 });
messages!(/// Creates a symlink.
    Tsymlink { /// Directory fid.
        fid: u32, /// Name.
        name: String, /// Target.
        symtgt: String, /// Group.
        gid: u32 });
messages!(/// Symlink answer.
    Rsymlink { /// qid.
        qid: Qid });
messages!(/// Creates a device node.
    Tmknod { /// Directory fid.
        dfid: u32, /// Name.
        name: String, /// Mode.
        mode: u32, /// Major.
        major: u32, /// Minor.
        minor: u32, /// Group.
        gid: u32 });
messages!(/// Mknod answer.
    Rmknod { /// qid.
        qid: Qid });
messages!(/// Renames a fid's file.
    Trename { /// The file.
        fid: u32, /// Target directory.
        dfid: u32, /// New name.
        name: String });
messages!(/// Reads a symlink.
    Treadlink { /// The link's fid.
        fid: u32 });
messages!(/// The link target.
    Rreadlink { /// Target.
        target: String });
messages!(/// Asks for attributes.
    Tgetattr { /// The fid.
        fid: u32, /// `getattr::*` bits wanted.
        request_mask: u64 });
messages!(/// Attributes.
    Rgetattr { /// The record.
        attr: Attr });
messages!(/// Sets attributes.
    Tsetattr { /// The fid.
        fid: u32, /// What to set.
        attr: SetAttr });
messages!(/// Opens an xattr (or the list, for an empty name) as `newfid`.
    Txattrwalk { /// The file.
        fid: u32, /// The xattr fid.
        newfid: u32, /// Attribute name.
        name: String });
messages!(/// Size of the attribute.
    Rxattrwalk { /// Bytes.
        size: u64 });
messages!(/// Prepares an xattr write.
    Txattrcreate { /// The fid.
        fid: u32, /// Name.
        name: String, /// Size.
        attr_size: u64, /// Flags.
        flags: u32 });
messages!(/// Reads directory entries from cookie `offset`.
    Treaddir { /// Open directory fid.
        fid: u32, /// 0 or a cookie from a previous entry.
        offset: u64, /// Max bytes.
        count: u32 });
messages!(/// Directory entries, encoded back to back (see `DirEntry`).
    Rreaddir { /// Raw entries.
        data: Bytes });
messages!(/// Flushes a file to storage.
    Tfsync { /// The fid.
        fid: u32, /// Data only.
        datasync: u32 });
messages!(/// POSIX byte-range lock.
    Tlock { /// The fid.
        fid: u32, /// Lock type.
        lock_type: u8, /// Flags.
        flags: u32, /// Start.
        start: u64, /// Length.
        length: u64, /// Owner pid.
        proc_id: u32, /// Owner host.
        client_id: String });
messages!(/// Lock status.
    Rlock { /// Status.
        status: u8 });
messages!(/// Tests a lock.
    Tgetlock { /// The fid.
        fid: u32, /// Lock type.
        lock_type: u8, /// Start.
        start: u64, /// Length.
        length: u64, /// Owner pid.
        proc_id: u32, /// Owner host.
        client_id: String });
messages!(/// Conflicting lock, if any.
    Rgetlock { /// Lock type.
        lock_type: u8, /// Start.
        start: u64, /// Length.
        length: u64, /// Owner pid.
        proc_id: u32, /// Owner host.
        client_id: String });
messages!(/// Hard link.
    Tlink { /// Directory.
        dfid: u32, /// Existing file.
        fid: u32, /// Name.
        name: String });
messages!(/// Creates a directory.
    Tmkdir { /// Parent.
        dfid: u32, /// Name.
        name: String, /// Mode.
        mode: u32, /// Group.
        gid: u32 });
messages!(/// Mkdir answer.
    Rmkdir { /// qid.
        qid: Qid });
messages!(/// Renames by directory and name.
    Trenameat { /// Old directory.
        olddirfid: u32, /// Old name.
        oldname: String, /// New directory.
        newdirfid: u32, /// New name.
        newname: String });
messages!(/// Removes by directory and name.
    Tunlinkat { /// Directory.
        dirfid: u32, /// Name.
        name: String, /// Flags.
        flags: u32 });

/// A request, as a server receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Tmessage {
    Version(Tversion),
    Auth(Tauth),
    Attach(Tattach),
    Flush(Tflush),
    Walk(Twalk),
    Open(Topen),
    Create(Tcreate),
    Read(Tread),
    Write(Twrite),
    Clunk(Tclunk),
    Remove(Tremove),
    Stat(Tstat),
    Wstat(Twstat),
    Statfs(Tstatfs),
    Lopen(Tlopen),
    Lcreate(Tlcreate),
    Symlink(Tsymlink),
    Mknod(Tmknod),
    Rename(Trename),
    Readlink(Treadlink),
    Getattr(Tgetattr),
    Setattr(Tsetattr),
    Xattrwalk(Txattrwalk),
    Xattrcreate(Txattrcreate),
    Readdir(Treaddir),
    Fsync(Tfsync),
    Lock(Tlock),
    Getlock(Tgetlock),
    Link(Tlink),
    Mkdir(Tmkdir),
    Renameat(Trenameat),
    Unlinkat(Tunlinkat),
}

/// A reply, as a client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Rmessage {
    Version(Rversion),
    Auth(Rauth),
    Attach(Rattach),
    Error(Rerror),
    Flush,
    Walk(Rwalk),
    Open(Ropen),
    Create(Rcreate),
    Read(Rread),
    Write(Rwrite),
    Clunk,
    Remove,
    Stat(Rstat),
    Wstat,
    Lerror(Rlerror),
    Statfs(Rstatfs),
    Lopen(Rlopen),
    Lcreate(Rlcreate),
    Symlink(Rsymlink),
    Mknod(Rmknod),
    Rename,
    Readlink(Rreadlink),
    Getattr(Rgetattr),
    Setattr,
    Xattrwalk(Rxattrwalk),
    Xattrcreate,
    Readdir(Rreaddir),
    Fsync,
    Lock(Rlock),
    Getlock(Rgetlock),
    Link,
    Mkdir(Rmkdir),
    Renameat,
    Unlinkat,
}

/// A message with its tag: what travels in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<M> {
    /// Matches a reply to its request.
    pub tag: u16,
    /// The message.
    pub msg: M,
}

/// Encoding and decoding shared by [`Tmessage`] and [`Rmessage`].
pub trait Message: Sized {
    /// The type byte.
    fn msg_type(&self) -> u8;
    /// Appends the body (after the 7-byte header).
    fn encode_body(&self, d: Dialect, w: &mut Writer<'_>) -> Result<(), EncodeError>;
    /// Reads a body of type `t`.
    fn decode_body(t: u8, d: Dialect, r: &mut Reader) -> Result<Self, DecodeError>;
}

impl<M: Message> Frame<M> {
    /// Appends the whole frame (size, type, tag, body) to `out`.
    ///
    /// # Errors
    /// A field that does not fit its wire width. `out` is left as it was.
    pub fn encode(&self, d: Dialect, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, self.msg.msg_type()]);
        out.extend_from_slice(&self.tag.to_le_bytes());
        let res = self.msg.encode_body(d, &mut Writer { buf: out });
        if let Err(e) = res {
            out.truncate(start);
            return Err(e);
        }
        let len = out.len() - start;
        let Ok(size) = u32::try_from(len) else {
            out.truncate(start);
            return Err(EncodeError::TooLarge(len));
        };
        out[start..start + 4].copy_from_slice(&size.to_le_bytes());
        Ok(())
    }

    /// Encodes into a fresh buffer.
    pub fn to_bytes(&self, d: Dialect) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::new();
        self.encode(d, &mut b)?;
        Ok(b.freeze())
    }

    /// Decodes one whole frame (as split by [`super::FrameCodec`]).
    ///
    /// # Errors
    /// Malformed bytes. When the header was readable, the caller can still
    /// answer the tag with an error (see [`super::parse_header`]).
    pub fn decode(frame: Bytes, d: Dialect) -> Result<Self, DecodeError> {
        let h = super::parse_header(&frame)?;
        if h.size as usize != frame.len() {
            return Err(DecodeError::BadSize(format!(
                "size field {} but frame has {} bytes",
                h.size,
                frame.len()
            )));
        }
        let mut r = Reader::new(frame.slice(HEADER_SIZE..));
        let msg = M::decode_body(h.ty, d, &mut r)?;
        r.finish()?;
        Ok(Frame { tag: h.tag, msg })
    }
}

impl Frame<Rmessage> {
    /// [`encode`](Self::encode), except that the data of an `Rread` of at
    /// least `min_shared` bytes is not copied: everything before it goes
    /// to `out` and the data is returned, to be written right after
    /// `out`'s new bytes (a vectored write). The bytes on the wire are the
    /// same; a large read reply is served from the file's snapshot without
    /// a copy in user space. (`Rread` is valid in every dialect, so there
    /// is no dialect to check.)
    ///
    /// # Errors
    /// As [`encode`](Self::encode); `out` is left as it was.
    pub fn encode_split(
        &self,
        d: Dialect,
        out: &mut BytesMut,
        min_shared: usize,
    ) -> Result<Option<Bytes>, EncodeError> {
        let data = match &self.msg {
            Rmessage::Read(Rread { data }) if data.len() >= min_shared => data,
            _ => return self.encode(d, out).map(|()| None),
        };
        let too_large = || EncodeError::TooLarge(data.len());
        let count = u32::try_from(data.len()).map_err(|_| too_large())?;
        let size = u32::try_from(HEADER_SIZE + 4 + data.len()).map_err(|_| too_large())?;
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&[self.msg.msg_type()]);
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        Ok(Some(data.clone()))
    }
}

fn walk_names(r: &mut Reader) -> Result<Vec<String>, DecodeError> {
    // Up to 65535 names may be encoded; the session enforces MAXWELEM with a
    // proper error so the request can be answered rather than dropped.
    r.list(2, Reader::string)
}

impl Message for Tmessage {
    fn msg_type(&self) -> u8 {
        use Tmessage::*;
        match self {
            Version(_) => ty::TVERSION,
            Auth(_) => ty::TAUTH,
            Attach(_) => ty::TATTACH,
            Flush(_) => ty::TFLUSH,
            Walk(_) => ty::TWALK,
            Open(_) => ty::TOPEN,
            Create(_) => ty::TCREATE,
            Read(_) => ty::TREAD,
            Write(_) => ty::TWRITE,
            Clunk(_) => ty::TCLUNK,
            Remove(_) => ty::TREMOVE,
            Stat(_) => ty::TSTAT,
            Wstat(_) => ty::TWSTAT,
            Statfs(_) => ty::TSTATFS,
            Lopen(_) => ty::TLOPEN,
            Lcreate(_) => ty::TLCREATE,
            Symlink(_) => ty::TSYMLINK,
            Mknod(_) => ty::TMKNOD,
            Rename(_) => ty::TRENAME,
            Readlink(_) => ty::TREADLINK,
            Getattr(_) => ty::TGETATTR,
            Setattr(_) => ty::TSETATTR,
            Xattrwalk(_) => ty::TXATTRWALK,
            Xattrcreate(_) => ty::TXATTRCREATE,
            Readdir(_) => ty::TREADDIR,
            Fsync(_) => ty::TFSYNC,
            Lock(_) => ty::TLOCK,
            Getlock(_) => ty::TGETLOCK,
            Link(_) => ty::TLINK,
            Mkdir(_) => ty::TMKDIR,
            Renameat(_) => ty::TRENAMEAT,
            Unlinkat(_) => ty::TUNLINKAT,
        }
    }

    fn encode_body(&self, d: Dialect, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        use Tmessage::*;
        let t = self.msg_type();
        if check_dialect(t, d).is_err() && t != ty::TVERSION {
            return Err(EncodeError::WrongDialect {
                what: "message",
                dialect: d,
            });
        }
        match self {
            Version(m) => {
                w.u32(m.msize);
                w.string(&m.version)?;
            }
            Auth(m) => {
                w.u32(m.afid);
                w.string(&m.uname)?;
                w.string(&m.aname)?;
                if d.has_unix_ids() {
                    w.u32(m.n_uname);
                }
            }
            Attach(m) => {
                w.u32(m.fid);
                w.u32(m.afid);
                w.string(&m.uname)?;
                w.string(&m.aname)?;
                if d.has_unix_ids() {
                    w.u32(m.n_uname);
                }
            }
            Flush(m) => w.u16(m.oldtag),
            Walk(m) => {
                w.u32(m.fid);
                w.u32(m.newfid);
                w.list(&m.wnames, |w, s| w.string(s))?;
            }
            Open(m) => {
                w.u32(m.fid);
                w.u8(m.mode);
            }
            Create(m) => {
                w.u32(m.fid);
                w.string(&m.name)?;
                w.u32(m.perm);
                w.u8(m.mode);
                if d == Dialect::P2000u {
                    w.string(&m.extension)?;
                }
            }
            Read(m) => {
                w.u32(m.fid);
                w.u64(m.offset);
                w.u32(m.count);
            }
            Write(m) => {
                w.u32(m.fid);
                w.u64(m.offset);
                let n =
                    u32::try_from(m.data.len()).map_err(|_| EncodeError::TooLarge(m.data.len()))?;
                w.u32(n);
                w.bytes(&m.data);
            }
            Clunk(m) => w.u32(m.fid),
            Remove(m) => w.u32(m.fid),
            Stat(m) => w.u32(m.fid),
            Wstat(m) => {
                w.u32(m.fid);
                let n = m.stat.size(d);
                w.u16(u16::try_from(n).map_err(|_| EncodeError::TooLarge(n))?);
                m.stat.encode(d, w)?;
            }
            Statfs(m) => w.u32(m.fid),
            Lopen(m) => {
                w.u32(m.fid);
                w.u32(m.flags);
            }
            Lcreate(m) => {
                w.u32(m.fid);
                w.string(&m.name)?;
                w.u32(m.flags);
                w.u32(m.mode);
                w.u32(m.gid);
            }
            Symlink(m) => {
                w.u32(m.fid);
                w.string(&m.name)?;
                w.string(&m.symtgt)?;
                w.u32(m.gid);
            }
            Mknod(m) => {
                w.u32(m.dfid);
                w.string(&m.name)?;
                w.u32(m.mode);
                w.u32(m.major);
                w.u32(m.minor);
                w.u32(m.gid);
            }
            Rename(m) => {
                w.u32(m.fid);
                w.u32(m.dfid);
                w.string(&m.name)?;
            }
            Readlink(m) => w.u32(m.fid),
            Getattr(m) => {
                w.u32(m.fid);
                w.u64(m.request_mask);
            }
            Setattr(m) => {
                w.u32(m.fid);
                m.attr.encode(w);
            }
            Xattrwalk(m) => {
                w.u32(m.fid);
                w.u32(m.newfid);
                w.string(&m.name)?;
            }
            Xattrcreate(m) => {
                w.u32(m.fid);
                w.string(&m.name)?;
                w.u64(m.attr_size);
                w.u32(m.flags);
            }
            Readdir(m) => {
                w.u32(m.fid);
                w.u64(m.offset);
                w.u32(m.count);
            }
            Fsync(m) => {
                w.u32(m.fid);
                w.u32(m.datasync);
            }
            Lock(m) => {
                w.u32(m.fid);
                w.u8(m.lock_type);
                w.u32(m.flags);
                w.u64(m.start);
                w.u64(m.length);
                w.u32(m.proc_id);
                w.string(&m.client_id)?;
            }
            Getlock(m) => {
                w.u32(m.fid);
                w.u8(m.lock_type);
                w.u64(m.start);
                w.u64(m.length);
                w.u32(m.proc_id);
                w.string(&m.client_id)?;
            }
            Link(m) => {
                w.u32(m.dfid);
                w.u32(m.fid);
                w.string(&m.name)?;
            }
            Mkdir(m) => {
                w.u32(m.dfid);
                w.string(&m.name)?;
                w.u32(m.mode);
                w.u32(m.gid);
            }
            Renameat(m) => {
                w.u32(m.olddirfid);
                w.string(&m.oldname)?;
                w.u32(m.newdirfid);
                w.string(&m.newname)?;
            }
            Unlinkat(m) => {
                w.u32(m.dirfid);
                w.string(&m.name)?;
                w.u32(m.flags);
            }
        }
        Ok(())
    }

    fn decode_body(t: u8, d: Dialect, r: &mut Reader) -> Result<Self, DecodeError> {
        use Tmessage::*;
        // Tversion is legal in any state: it is how the dialect is chosen.
        if t != ty::TVERSION {
            check_dialect(t, d)?;
        }
        let n_uname = |r: &mut Reader| -> Result<u32, DecodeError> {
            if d.has_unix_ids() {
                r.u32()
            } else {
                Ok(super::NONUNAME)
            }
        };
        Ok(match t {
            ty::TVERSION => Version(Tversion {
                msize: r.u32()?,
                version: r.string()?,
            }),
            ty::TAUTH => Auth(Tauth {
                afid: r.u32()?,
                uname: r.string()?,
                aname: r.string()?,
                n_uname: n_uname(r)?,
            }),
            ty::TATTACH => Attach(Tattach {
                fid: r.u32()?,
                afid: r.u32()?,
                uname: r.string()?,
                aname: r.string()?,
                n_uname: n_uname(r)?,
            }),
            ty::TFLUSH => Flush(Tflush { oldtag: r.u16()? }),
            ty::TWALK => Walk(Twalk {
                fid: r.u32()?,
                newfid: r.u32()?,
                wnames: walk_names(r)?,
            }),
            ty::TOPEN => Open(Topen {
                fid: r.u32()?,
                mode: r.u8()?,
            }),
            ty::TCREATE => Create(Tcreate {
                fid: r.u32()?,
                name: r.string()?,
                perm: r.u32()?,
                mode: r.u8()?,
                extension: if d == Dialect::P2000u {
                    r.string()?
                } else {
                    String::new()
                },
            }),
            ty::TREAD => Read(Tread {
                fid: r.u32()?,
                offset: r.u64()?,
                count: r.u32()?,
            }),
            ty::TWRITE => {
                let fid = r.u32()?;
                let offset = r.u64()?;
                let n = r.u32()? as usize;
                Write(Twrite {
                    fid,
                    offset,
                    data: r.bytes(n)?,
                })
            }
            ty::TCLUNK => Clunk(Tclunk { fid: r.u32()? }),
            ty::TREMOVE => Remove(Tremove { fid: r.u32()? }),
            ty::TSTAT => Stat(Tstat { fid: r.u32()? }),
            ty::TWSTAT => {
                let fid = r.u32()?;
                let _n = r.u16()?;
                Wstat(Twstat {
                    fid,
                    stat: super::Stat::decode(d, r)?,
                })
            }
            ty::TSTATFS => Statfs(Tstatfs { fid: r.u32()? }),
            ty::TLOPEN => Lopen(Tlopen {
                fid: r.u32()?,
                flags: r.u32()?,
            }),
            ty::TLCREATE => Lcreate(Tlcreate {
                fid: r.u32()?,
                name: r.string()?,
                flags: r.u32()?,
                mode: r.u32()?,
                gid: r.u32()?,
            }),
            ty::TSYMLINK => Symlink(Tsymlink {
                fid: r.u32()?,
                name: r.string()?,
                symtgt: r.string()?,
                gid: r.u32()?,
            }),
            ty::TMKNOD => Mknod(Tmknod {
                dfid: r.u32()?,
                name: r.string()?,
                mode: r.u32()?,
                major: r.u32()?,
                minor: r.u32()?,
                gid: r.u32()?,
            }),
            ty::TRENAME => Rename(Trename {
                fid: r.u32()?,
                dfid: r.u32()?,
                name: r.string()?,
            }),
            ty::TREADLINK => Readlink(Treadlink { fid: r.u32()? }),
            ty::TGETATTR => Getattr(Tgetattr {
                fid: r.u32()?,
                request_mask: r.u64()?,
            }),
            ty::TSETATTR => Setattr(Tsetattr {
                fid: r.u32()?,
                attr: SetAttr::decode(r)?,
            }),
            ty::TXATTRWALK => Xattrwalk(Txattrwalk {
                fid: r.u32()?,
                newfid: r.u32()?,
                name: r.string()?,
            }),
            ty::TXATTRCREATE => Xattrcreate(Txattrcreate {
                fid: r.u32()?,
                name: r.string()?,
                attr_size: r.u64()?,
                flags: r.u32()?,
            }),
            ty::TREADDIR => Readdir(Treaddir {
                fid: r.u32()?,
                offset: r.u64()?,
                count: r.u32()?,
            }),
            ty::TFSYNC => Fsync(Tfsync {
                fid: r.u32()?,
                datasync: r.u32()?,
            }),
            ty::TLOCK => Lock(Tlock {
                fid: r.u32()?,
                lock_type: r.u8()?,
                flags: r.u32()?,
                start: r.u64()?,
                length: r.u64()?,
                proc_id: r.u32()?,
                client_id: r.string()?,
            }),
            ty::TGETLOCK => Getlock(Tgetlock {
                fid: r.u32()?,
                lock_type: r.u8()?,
                start: r.u64()?,
                length: r.u64()?,
                proc_id: r.u32()?,
                client_id: r.string()?,
            }),
            ty::TLINK => Link(Tlink {
                dfid: r.u32()?,
                fid: r.u32()?,
                name: r.string()?,
            }),
            ty::TMKDIR => Mkdir(Tmkdir {
                dfid: r.u32()?,
                name: r.string()?,
                mode: r.u32()?,
                gid: r.u32()?,
            }),
            ty::TRENAMEAT => Renameat(Trenameat {
                olddirfid: r.u32()?,
                oldname: r.string()?,
                newdirfid: r.u32()?,
                newname: r.string()?,
            }),
            ty::TUNLINKAT => Unlinkat(Tunlinkat {
                dirfid: r.u32()?,
                name: r.string()?,
                flags: r.u32()?,
            }),
            _ => return Err(DecodeError::UnknownType { ty: t, dialect: d }),
        })
    }
}

impl Message for Rmessage {
    fn msg_type(&self) -> u8 {
        use Rmessage::*;
        let t = match self {
            Version(_) => ty::TVERSION,
            Auth(_) => ty::TAUTH,
            Attach(_) => ty::TATTACH,
            Error(_) => return ty::RERROR,
            Flush => ty::TFLUSH,
            Walk(_) => ty::TWALK,
            Open(_) => ty::TOPEN,
            Create(_) => ty::TCREATE,
            Read(_) => ty::TREAD,
            Write(_) => ty::TWRITE,
            Clunk => ty::TCLUNK,
            Remove => ty::TREMOVE,
            Stat(_) => ty::TSTAT,
            Wstat => ty::TWSTAT,
            Lerror(_) => return ty::RLERROR,
            Statfs(_) => ty::TSTATFS,
            Lopen(_) => ty::TLOPEN,
            Lcreate(_) => ty::TLCREATE,
            Symlink(_) => ty::TSYMLINK,
            Mknod(_) => ty::TMKNOD,
            Rename => ty::TRENAME,
            Readlink(_) => ty::TREADLINK,
            Getattr(_) => ty::TGETATTR,
            Setattr => ty::TSETATTR,
            Xattrwalk(_) => ty::TXATTRWALK,
            Xattrcreate => ty::TXATTRCREATE,
            Readdir(_) => ty::TREADDIR,
            Fsync => ty::TFSYNC,
            Lock(_) => ty::TLOCK,
            Getlock(_) => ty::TGETLOCK,
            Link => ty::TLINK,
            Mkdir(_) => ty::TMKDIR,
            Renameat => ty::TRENAMEAT,
            Unlinkat => ty::TUNLINKAT,
        };
        t + 1
    }

    fn encode_body(&self, d: Dialect, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        use Rmessage::*;
        let t = self.msg_type();
        // Rversion may answer in any dialect; Rerror is also how a .L server
        // would never answer, but encoding it is harmless.
        if t != ty::TVERSION + 1 && t != ty::RERROR && check_dialect(t - 1, d).is_err() {
            return Err(EncodeError::WrongDialect {
                what: "reply",
                dialect: d,
            });
        }
        match self {
            Version(m) => {
                w.u32(m.msize);
                w.string(&m.version)?;
            }
            Auth(m) => w.qid(&m.aqid),
            Attach(m) => w.qid(&m.qid),
            Error(m) => {
                w.string(&m.ename)?;
                if d.has_unix_ids() {
                    w.u32(m.errno);
                }
            }
            Walk(m) => w.list(&m.wqids, |w, q| {
                w.qid(q);
                Ok(())
            })?,
            Open(m) => {
                w.qid(&m.qid);
                w.u32(m.iounit);
            }
            Create(m) => {
                w.qid(&m.qid);
                w.u32(m.iounit);
            }
            Read(Rread { data }) | Readdir(Rreaddir { data }) => {
                let n = u32::try_from(data.len()).map_err(|_| EncodeError::TooLarge(data.len()))?;
                w.u32(n);
                w.bytes(data);
            }
            Write(m) => w.u32(m.count),
            Stat(m) => {
                let n = m.stat.size(d);
                w.u16(u16::try_from(n).map_err(|_| EncodeError::TooLarge(n))?);
                m.stat.encode(d, w)?;
            }
            Lerror(m) => w.u32(m.ecode),
            Statfs(m) => m.statfs.encode(w),
            Lopen(m) => {
                w.qid(&m.qid);
                w.u32(m.iounit);
            }
            Lcreate(m) => {
                w.qid(&m.qid);
                w.u32(m.iounit);
            }
            Symlink(m) => w.qid(&m.qid),
            Mknod(m) => w.qid(&m.qid),
            Readlink(m) => w.string(&m.target)?,
            Getattr(m) => m.attr.encode(w),
            Xattrwalk(m) => w.u64(m.size),
            Lock(m) => w.u8(m.status),
            Getlock(m) => {
                w.u8(m.lock_type);
                w.u64(m.start);
                w.u64(m.length);
                w.u32(m.proc_id);
                w.string(&m.client_id)?;
            }
            Mkdir(m) => w.qid(&m.qid),
            Flush | Clunk | Remove | Wstat | Rename | Setattr | Xattrcreate | Fsync | Link
            | Renameat | Unlinkat => {}
        }
        Ok(())
    }

    fn decode_body(t: u8, d: Dialect, r: &mut Reader) -> Result<Self, DecodeError> {
        use Rmessage::*;
        if t != ty::TVERSION + 1 && t != ty::RERROR && t != ty::RLERROR {
            check_dialect(t.wrapping_sub(1), d)?;
        }
        if t == ty::RLERROR && d != Dialect::P2000L {
            return Err(DecodeError::UnknownType { ty: t, dialect: d });
        }
        let data = |r: &mut Reader| -> Result<Bytes, DecodeError> {
            let n = r.u32()? as usize;
            r.bytes(n)
        };
        Ok(match t {
            101 => Version(Rversion {
                msize: r.u32()?,
                version: r.string()?,
            }),
            103 => Auth(Rauth { aqid: r.qid()? }),
            105 => Attach(Rattach { qid: r.qid()? }),
            ty::RERROR => {
                let ename = r.string()?;
                let errno = if d.has_unix_ids() && r.remaining() >= 4 {
                    r.u32()?
                } else {
                    0
                };
                Error(Rerror { ename, errno })
            }
            109 => Flush,
            111 => Walk(Rwalk {
                wqids: r.list(Qid::SIZE, Reader::qid)?,
            }),
            113 => Open(Ropen {
                qid: r.qid()?,
                iounit: r.u32()?,
            }),
            115 => Create(Rcreate {
                qid: r.qid()?,
                iounit: r.u32()?,
            }),
            117 => Read(Rread { data: data(r)? }),
            119 => Write(Rwrite { count: r.u32()? }),
            121 => Clunk,
            123 => Remove,
            125 => {
                let _n = r.u16()?;
                Stat(Rstat {
                    stat: super::Stat::decode(d, r)?,
                })
            }
            127 => Wstat,
            ty::RLERROR => Lerror(Rlerror { ecode: r.u32()? }),
            9 => Statfs(Rstatfs {
                statfs: super::Statfs::decode(r)?,
            }),
            13 => Lopen(Rlopen {
                qid: r.qid()?,
                iounit: r.u32()?,
            }),
            15 => Lcreate(Rlcreate {
                qid: r.qid()?,
                iounit: r.u32()?,
            }),
            17 => Symlink(Rsymlink { qid: r.qid()? }),
            19 => Mknod(Rmknod { qid: r.qid()? }),
            21 => Rename,
            23 => Readlink(Rreadlink {
                target: r.string()?,
            }),
            25 => Getattr(Rgetattr {
                attr: Attr::decode(r)?,
            }),
            27 => Setattr,
            31 => Xattrwalk(Rxattrwalk { size: r.u64()? }),
            33 => Xattrcreate,
            41 => Readdir(Rreaddir { data: data(r)? }),
            51 => Fsync,
            53 => Lock(Rlock { status: r.u8()? }),
            55 => Getlock(Rgetlock {
                lock_type: r.u8()?,
                start: r.u64()?,
                length: r.u64()?,
                proc_id: r.u32()?,
                client_id: r.string()?,
            }),
            71 => Link,
            73 => Mkdir(Rmkdir { qid: r.qid()? }),
            75 => Renameat,
            77 => Unlinkat,
            _ => return Err(DecodeError::UnknownType { ty: t, dialect: d }),
        })
    }
}

impl Rreaddir {
    /// Packs as many entries as fit in `count` bytes of payload; returns the
    /// reply and how many entries it holds.
    pub fn pack<'a>(entries: impl IntoIterator<Item = &'a DirEntry>, count: u32) -> (Self, usize) {
        let mut buf = BytesMut::new();
        let mut n = 0;
        for e in entries {
            if buf.len() + e.size() > count as usize {
                break;
            }
            if e.encode_to(&mut buf).is_err() {
                break;
            }
            n += 1;
        }
        (Rreaddir { data: buf.freeze() }, n)
    }
}

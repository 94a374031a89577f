//! File metadata in one shape for every dialect and both sides: Linux
//! `S_IF*` and `DT_*` constants, [`FileKind`] and [`Metadata`], decoded
//! from 9P2000.L `Rgetattr` or 9P2000/.u stat records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Attr, NONUNAME, Qid, Stat, dm, qt};

/// Linux `S_IF*` type bits and the set-id bits, as found in `st_mode`.
pub mod s_if {
    /// Mask of the type bits.
    pub const FMT: u32 = 0o170000;
    /// Socket.
    pub const SOCK: u32 = 0o140000;
    /// Symbolic link.
    pub const LNK: u32 = 0o120000;
    /// Regular file.
    pub const REG: u32 = 0o100000;
    /// Block device.
    pub const BLK: u32 = 0o060000;
    /// Directory.
    pub const DIR: u32 = 0o040000;
    /// Character device.
    pub const CHR: u32 = 0o020000;
    /// FIFO.
    pub const FIFO: u32 = 0o010000;
    /// Set-user-id.
    pub const ISUID: u32 = 0o4000;
    /// Set-group-id.
    pub const ISGID: u32 = 0o2000;
    /// Sticky.
    pub const ISVTX: u32 = 0o1000;
}

/// 9P2000.u set-id mode bits (not in `dm`, which the server side never
/// needs to send).
const DMSETUID: u32 = 0x0008_0000;
const DMSETGID: u32 = 0x0004_0000;
const DMSETVTX: u32 = 0x0001_0000;

/// Linux `DT_*` directory entry types (9P2000.L readdir).
pub mod dt {
    /// Unknown.
    pub const UNKNOWN: u8 = 0;
    /// FIFO.
    pub const FIFO: u8 = 1;
    /// Character device.
    pub const CHR: u8 = 2;
    /// Directory.
    pub const DIR: u8 = 4;
    /// Block device.
    pub const BLK: u8 = 6;
    /// Regular file.
    pub const REG: u8 = 8;
    /// Symbolic link.
    pub const LNK: u8 = 10;
    /// Socket.
    pub const SOCK: u8 = 12;

    /// The type of a file of `st_mode` `mode`.
    pub fn from_mode(mode: u32) -> u8 {
        match mode & super::s_if::FMT {
            super::s_if::DIR => DIR,
            super::s_if::REG => REG,
            super::s_if::LNK => LNK,
            super::s_if::CHR => CHR,
            super::s_if::BLK => BLK,
            super::s_if::FIFO => FIFO,
            super::s_if::SOCK => SOCK,
            _ => UNKNOWN,
        }
    }
}

/// qid.type for a file of `st_mode` `mode`.
pub fn qid_type_from_mode(mode: u32) -> u8 {
    match mode & s_if::FMT {
        s_if::DIR => qt::DIR,
        s_if::LNK => qt::SYMLINK,
        _ => qt::FILE,
    }
}

/// What kind of file an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file (also what plain 9P2000 reports for anything that is
    /// not a directory).
    File,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// The server did not say.
    Unknown,
}

impl FileKind {
    /// From Linux `st_mode` type bits.
    pub fn from_mode(mode: u32) -> Self {
        match mode & s_if::FMT {
            s_if::DIR => FileKind::Dir,
            s_if::REG => FileKind::File,
            s_if::LNK => FileKind::Symlink,
            s_if::CHR => FileKind::CharDevice,
            s_if::BLK => FileKind::BlockDevice,
            s_if::FIFO => FileKind::Fifo,
            s_if::SOCK => FileKind::Socket,
            _ => FileKind::Unknown,
        }
    }

    /// From a Linux `DT_*` value (9P2000.L readdir), falling back to the
    /// qid type when the server sends `DT_UNKNOWN`.
    pub fn from_dt(dt: u8, qid: &Qid) -> Self {
        match dt {
            dt::FIFO => FileKind::Fifo,
            dt::CHR => FileKind::CharDevice,
            dt::DIR => FileKind::Dir,
            dt::BLK => FileKind::BlockDevice,
            dt::REG => FileKind::File,
            dt::LNK => FileKind::Symlink,
            dt::SOCK => FileKind::Socket,
            _ => Self::from_qid(qid),
        }
    }

    /// From qid type bits alone (the least a server tells us).
    pub fn from_qid(qid: &Qid) -> Self {
        if qid.ty & qt::DIR != 0 {
            FileKind::Dir
        } else if qid.ty & qt::SYMLINK != 0 {
            FileKind::Symlink
        } else {
            FileKind::File
        }
    }

    /// Its `DT_*` type for a readdir entry.
    pub fn dt(self) -> u8 {
        match self {
            FileKind::Dir => dt::DIR,
            FileKind::File => dt::REG,
            FileKind::Symlink => dt::LNK,
            FileKind::CharDevice => dt::CHR,
            FileKind::BlockDevice => dt::BLK,
            FileKind::Fifo => dt::FIFO,
            FileKind::Socket => dt::SOCK,
            FileKind::Unknown => dt::UNKNOWN,
        }
    }

    /// Words as `stat(1)` prints them.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Dir => "directory",
            FileKind::File => "regular file",
            FileKind::Symlink => "symbolic link",
            FileKind::CharDevice => "character special file",
            FileKind::BlockDevice => "block special file",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::Unknown => "unknown",
        }
    }
}

/// A file's metadata in one shape for all dialects: what a client decodes
/// from `Rgetattr` or a stat record, and what a server's filesystem
/// returns for the session to encode. Fields a dialect does not carry are
/// `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The server's identity of the file.
    pub qid: Qid,
    /// Linux `st_mode`: `S_IF*` type bits, set-id bits and permissions
    /// (translated from 9P2000 `DM*` bits where the server speaks those).
    pub mode: u32,
    /// Numeric owner (.L, .u); `None` from a plain 9P2000 server.
    pub uid: Option<u32>,
    /// Numeric group (.L, .u); `None` from a plain 9P2000 server.
    pub gid: Option<u32>,
    /// Owner name (9P2000/.u stat records carry names; .L does not).
    pub user: Option<String>,
    /// Group name (9P2000/.u).
    pub group: Option<String>,
    /// Link count (.L only).
    pub nlink: Option<u64>,
    /// Size in bytes; 0 for /proc-style files whose size is only known by
    /// reading them.
    pub size: u64,
    /// Device number (.L only; 0 otherwise).
    pub rdev: u64,
    /// Last access.
    pub atime: SystemTime,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last status change (.L only).
    pub ctime: Option<SystemTime>,
    /// The file's name (9P2000/.u stat records carry it; .L does not).
    pub name: Option<String>,
    /// The link target when the stat record already carried it (.u
    /// `extension`); otherwise use `readlink`.
    pub link_target: Option<String>,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            qid: Qid::default(),
            mode: 0,
            uid: None,
            gid: None,
            user: None,
            group: None,
            nlink: None,
            size: 0,
            rdev: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: None,
            name: None,
            link_target: None,
        }
    }
}

impl Metadata {
    /// A file a server makes up (a summary, a table, a synthesized
    /// directory): owned by root, link count 2 for a directory and 1
    /// otherwise, all three times `at`.
    pub fn synthetic(qid: Qid, name: &str, mode: u32, at: SystemTime) -> Self {
        Metadata {
            qid,
            name: Some(name.to_string()),
            mode,
            uid: Some(0),
            gid: Some(0),
            user: Some("root".into()),
            group: Some("root".into()),
            nlink: Some(if mode & s_if::FMT == s_if::DIR { 2 } else { 1 }),
            atime: at,
            mtime: at,
            ctime: Some(at),
            ..Metadata::default()
        }
    }

    /// The file's kind.
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode)
    }

    /// Whether the file is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == FileKind::Dir
    }

    /// Whether the file is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.kind() == FileKind::Symlink
    }

    /// From a 9P2000.L `Rgetattr`.
    pub fn from_attr(a: &Attr) -> Self {
        Metadata {
            qid: a.qid,
            mode: a.mode,
            uid: Some(a.uid),
            gid: Some(a.gid),
            user: None,
            group: None,
            nlink: Some(a.nlink),
            size: a.size,
            rdev: a.rdev,
            atime: time_from_wire(a.atime_sec, a.atime_nsec),
            mtime: time_from_wire(a.mtime_sec, a.mtime_nsec),
            ctime: Some(time_from_wire(a.ctime_sec, a.ctime_nsec)),
            name: None,
            link_target: None,
        }
    }

    /// From a 9P2000 or 9P2000.u stat record.
    pub fn from_stat(s: &Stat) -> Self {
        let ty = if s.mode & dm::DIR != 0 || s.qid.ty & qt::DIR != 0 {
            s_if::DIR
        } else if s.mode & dm::SYMLINK != 0 || s.qid.ty & qt::SYMLINK != 0 {
            s_if::LNK
        } else if s.mode & dm::DEVICE != 0 {
            // .u describes devices in the extension: "b 8 0" or "c 1 3".
            if s.extension.starts_with('b') {
                s_if::BLK
            } else {
                s_if::CHR
            }
        } else if s.mode & dm::NAMEDPIPE != 0 {
            s_if::FIFO
        } else if s.mode & dm::SOCKET != 0 {
            s_if::SOCK
        } else {
            s_if::REG
        };
        let mut mode = ty | (s.mode & 0o777);
        if s.mode & DMSETUID != 0 {
            mode |= s_if::ISUID;
        }
        if s.mode & DMSETGID != 0 {
            mode |= s_if::ISGID;
        }
        if s.mode & DMSETVTX != 0 {
            mode |= s_if::ISVTX;
        }
        let id = |n: u32| (n != NONUNAME).then_some(n);
        let name = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Metadata {
            qid: s.qid,
            mode,
            uid: id(s.n_uid),
            gid: id(s.n_gid),
            user: name(&s.uid),
            group: name(&s.gid),
            nlink: None,
            size: s.length,
            rdev: 0,
            atime: time_from_wire(s.atime as u64, 0),
            mtime: time_from_wire(s.mtime as u64, 0),
            ctime: None,
            name: name(&s.name),
            link_target: (ty == s_if::LNK && !s.extension.is_empty()).then(|| s.extension.clone()),
        }
    }
}

/// A timestamp from the wire; a value past what `SystemTime` holds (a
/// hostile or broken server) becomes the epoch rather than a panic.
pub fn time_from_wire(sec: u64, nsec: u64) -> SystemTime {
    let nsec = if nsec < 1_000_000_000 { nsec as u32 } else { 0 };
    UNIX_EPOCH
        .checked_add(Duration::new(sec, nsec))
        .unwrap_or(UNIX_EPOCH)
}

/// (seconds, nanoseconds) since the epoch for the wire; 0 before it.
pub fn epoch_parts(t: SystemTime) -> (u64, u64) {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs(), u64::from(d.subsec_nanos())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_modes_become_linux_modes() {
        let mut s = Stat {
            mode: dm::DIR | 0o555,
            ..Stat::default()
        };
        assert_eq!(Metadata::from_stat(&s).mode, s_if::DIR | 0o555);
        s.mode = dm::SYMLINK | 0o777;
        s.extension = "4242".into();
        let m = Metadata::from_stat(&s);
        assert!(m.is_symlink());
        assert_eq!(m.link_target.as_deref(), Some("4242"));
        assert_eq!(m.uid, None);
        s.mode = DMSETUID | 0o755;
        s.n_uid = 0;
        let m = Metadata::from_stat(&s);
        assert_eq!(m.mode, s_if::REG | s_if::ISUID | 0o755);
        assert_eq!(m.uid, Some(0));
    }

    #[test]
    fn absurd_times_do_not_panic() {
        let a = Attr {
            mtime_sec: u64::MAX,
            mtime_nsec: u64::MAX,
            ..Attr::default()
        };
        assert_eq!(Metadata::from_attr(&a).mtime, UNIX_EPOCH);
    }
}

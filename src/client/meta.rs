//! Directory entries in one shape for every dialect: 9P2000.L `Rreaddir`
//! entries and 9P2000/.u directory-read stat records. File metadata is
//! [`Metadata`], shared with the server side in `proto`.

use crate::proto::{DirEntry, Qid, Stat};
pub use crate::proto::{FileKind, Metadata, s_if};

/// One directory entry, whatever the dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryInfo {
    /// The entry's name.
    pub name: String,
    /// The entry's qid.
    pub qid: Qid,
    /// Its kind.
    pub kind: FileKind,
    /// Full metadata when the dialect delivers it with the listing
    /// (9P2000/.u directory reads are stat records); `None` in .L, where
    /// it costs a walk and a getattr per entry.
    pub meta: Option<Metadata>,
}

impl DirEntryInfo {
    /// From a 9P2000.L readdir entry.
    pub fn from_dirent(e: &DirEntry) -> Self {
        DirEntryInfo {
            name: e.name.clone(),
            qid: e.qid,
            kind: FileKind::from_dt(e.ty, &e.qid),
            meta: None,
        }
    }

    /// From a 9P2000/.u directory-read stat record.
    pub fn from_stat(s: &Stat) -> Self {
        let meta = Metadata::from_stat(s);
        DirEntryInfo {
            name: s.name.clone(),
            qid: s.qid,
            kind: meta.kind(),
            meta: Some(meta),
        }
    }
}

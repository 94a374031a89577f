//! An opened file's contents, taken whole at open: reads and directory
//! reads are served from it, so a client reading in chunks never sees a
//! torn file, and directory cookies stay stable (entry index + 1).

use bytes::Bytes;

use super::{FsError, FsResult};
use crate::proto::DirEntry;

/// What an open fid holds.
#[derive(Debug)]
pub enum Snapshot {
    /// A file's bytes.
    File(Bytes),
    /// A directory's entries; entry `i` carries cookie `i + 1`.
    Dir(Vec<DirEntry>),
}

impl Snapshot {
    /// `count` bytes at `offset` of an opened file (empty at EOF).
    ///
    /// # Errors
    /// EBADF when not opened, EISDIR for a directory.
    pub fn read(snap: Option<&Snapshot>, offset: u64, count: u32) -> FsResult<Bytes> {
        match snap {
            Some(Snapshot::File(b)) => {
                let start = offset.min(b.len() as u64) as usize;
                let end = start.saturating_add(count as usize).min(b.len());
                Ok(b.slice(start..end))
            }
            Some(Snapshot::Dir(_)) => Err(FsError::ISDIR),
            None => Err(FsError::BADF),
        }
    }

    /// The entries after cookie `offset` of an opened directory.
    ///
    /// # Errors
    /// EBADF when not opened, ENOTDIR for a file.
    pub fn readdir(snap: Option<&Snapshot>, offset: u64) -> FsResult<Vec<DirEntry>> {
        match snap {
            Some(Snapshot::Dir(ents)) => {
                Ok(ents[offset.min(ents.len() as u64) as usize..].to_vec())
            }
            Some(Snapshot::File(_)) => Err(FsError::NOTDIR),
            None => Err(FsError::BADF),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Qid;

    #[test]
    fn reads_slice_and_cookies_resume() {
        let f = Snapshot::File(Bytes::from_static(b"hello"));
        assert_eq!(&Snapshot::read(Some(&f), 1, 3).unwrap()[..], b"ell");
        assert!(Snapshot::read(Some(&f), 9, 3).unwrap().is_empty());
        assert_eq!(Snapshot::read(None, 0, 1).unwrap_err(), FsError::BADF);
        let e = |n: &str, o| DirEntry {
            qid: Qid::default(),
            offset: o,
            ty: 8,
            name: n.into(),
        };
        let d = Snapshot::Dir(vec![e("a", 1), e("b", 2)]);
        assert_eq!(Snapshot::readdir(Some(&d), 1).unwrap(), vec![e("b", 2)]);
        assert!(Snapshot::readdir(Some(&d), 7).unwrap().is_empty());
        assert_eq!(Snapshot::read(Some(&d), 0, 1).unwrap_err(), FsError::ISDIR);
        assert_eq!(Snapshot::readdir(Some(&f), 0).unwrap_err(), FsError::NOTDIR);
    }
}

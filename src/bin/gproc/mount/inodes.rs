//! The inode table: FUSE node ids ↔ 9P `qid.path`, with the kernel's
//! lookup counts so that `forget` can drop entries.
//!
//! The node id FUSE hands back to us is also the `st_ino` that `stat(2)`
//! shows, so it is the server's `qid.path` wherever that is possible: a
//! gproc agent's qids are procfs inode numbers, and an aggregator's are
//! unique across the merged tree. Two numbers cannot be used as they are:
//! 0 (not a valid node id) and 1 (FUSE's root); a file with one of those,
//! or whose `qid.path` is already in use as another file's allocated
//! number, gets a number counted down from `u64::MAX - 1` instead.
//!
//! The root is always node 1 and is never forgotten. It is kept out of the
//! `qid.path` index, so a server whose root shares its `qid.path` with
//! some other file cannot make that file look like the root (a directory
//! loop to the kernel).
//!
//! Each entry remembers the path it was last looked up by: the mount
//! reaches files by walking that path from the attach root, which needs no
//! fid state on the server and so survives reconnects.

use std::collections::HashMap;
use std::sync::Arc;

use gproc::client::FileKind;
use gproc::proto::Qid;

/// FUSE's root node id.
pub const ROOT_INO: u64 = 1;

/// One file the kernel knows about.
#[derive(Debug, Clone)]
pub struct Inode {
    /// The node id (and `st_ino`).
    pub ino: u64,
    /// The server's qid when last looked up; a later walk to `path` that
    /// finds another `qid.path` means the file was replaced (ESTALE).
    pub qid: Qid,
    /// Path from the attach root, without a leading `/` (`""` is the
    /// root): what the mount walks to reach the file.
    pub path: Arc<str>,
    /// The directory it was last looked up in, for `..` in listings.
    pub parent: u64,
    /// What kind of file it is.
    pub kind: FileKind,
    /// Lookups the kernel has not yet forgotten.
    nlookup: u64,
}

/// Node ids ↔ qids. Not thread-safe by itself: the mount keeps it under a
/// mutex held only for these quick map operations.
#[derive(Debug)]
pub struct InodeTable {
    /// Every known node, root included.
    by_ino: HashMap<u64, Inode>,
    /// `qid.path` → node id, root excluded.
    by_qid: HashMap<u64, u64>,
    /// Next candidate for a number that cannot be the `qid.path` itself.
    next_alloc: u64,
}

impl InodeTable {
    /// A table holding only the root, whose qid is `root_qid`.
    pub fn new(root_qid: Qid) -> Self {
        let mut by_ino = HashMap::new();
        by_ino.insert(
            ROOT_INO,
            Inode {
                ino: ROOT_INO,
                qid: root_qid,
                path: Arc::from(""),
                parent: ROOT_INO,
                kind: FileKind::Dir,
                nlookup: 0,
            },
        );
        InodeTable {
            by_ino,
            by_qid: HashMap::new(),
            next_alloc: u64::MAX - 1,
        }
    }

    /// The node `ino`, if the kernel still knows it.
    pub fn get(&self, ino: u64) -> Option<Inode> {
        self.by_ino.get(&ino).cloned()
    }

    /// Records a successful lookup of `path` (in directory `parent`) that
    /// found `qid`, and returns its node id. Each call is one reference
    /// that the kernel will give back through [`forget`](Self::forget).
    pub fn lookup(&mut self, parent: u64, path: &str, qid: Qid, kind: FileKind) -> u64 {
        if let Some(&ino) = self.by_qid.get(&qid.path)
            && let Some(node) = self.by_ino.get_mut(&ino)
        {
            node.nlookup += 1;
            // The last name wins: the file is reached by the path the
            // kernel used most recently (hard links, renamed entries).
            if *node.path != *path {
                node.path = Arc::from(path);
            }
            node.parent = parent;
            node.qid = qid;
            node.kind = kind;
            return ino;
        }
        let ino = self.number_for(qid.path);
        self.by_qid.insert(qid.path, ino);
        self.by_ino.insert(
            ino,
            Inode {
                ino,
                qid,
                path: Arc::from(path),
                parent,
                kind,
                nlookup: 1,
            },
        );
        ino
    }

    /// The node id a directory listing reports for `qid_path` (`d_ino`):
    /// the known one, else the number a lookup would most likely assign.
    /// Nothing is recorded: listings take no references.
    pub fn peek(&self, qid_path: u64) -> u64 {
        match self.by_qid.get(&qid_path) {
            Some(&ino) => ino,
            None if Self::usable(qid_path) && !self.by_ino.contains_key(&qid_path) => qid_path,
            None => self.next_free_below(self.next_alloc),
        }
    }

    /// The kernel dropped `n` references to `ino`; at zero the entry goes
    /// (and this returns true). The root is never removed.
    pub fn forget(&mut self, ino: u64, n: u64) -> bool {
        if ino == ROOT_INO {
            return false;
        }
        let Some(node) = self.by_ino.get_mut(&ino) else {
            return false;
        };
        node.nlookup = node.nlookup.saturating_sub(n);
        if node.nlookup > 0 {
            return false;
        }
        let q = node.qid.path;
        self.by_ino.remove(&ino);
        if self.by_qid.get(&q) == Some(&ino) {
            self.by_qid.remove(&q);
        }
        true
    }

    /// Sets the root's qid (after a reconnect the server may report a new
    /// one; the root stays node 1 whatever it is).
    pub fn set_root_qid(&mut self, qid: Qid) {
        if let Some(r) = self.by_ino.get_mut(&ROOT_INO) {
            r.qid = qid;
        }
    }

    /// Nodes known, root included (for tests: the mount never needs it).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    fn usable(n: u64) -> bool {
        n > ROOT_INO
    }

    /// `qid_path` itself if free, else a fresh number from the top.
    fn number_for(&mut self, qid_path: u64) -> u64 {
        if Self::usable(qid_path) && !self.by_ino.contains_key(&qid_path) {
            return qid_path;
        }
        let n = self.next_free_below(self.next_alloc);
        self.next_alloc = n.saturating_sub(1).max(2);
        n
    }

    /// The largest unused number `<= start` (and `> 1`), wrapping to the
    /// top if the range below is exhausted.
    fn next_free_below(&self, start: u64) -> u64 {
        let mut n = start;
        loop {
            if Self::usable(n) && !self.by_ino.contains_key(&n) {
                return n;
            }
            n = if n <= 2 { u64::MAX - 1 } else { n - 1 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gproc::proto::qt;

    fn q(path: u64) -> Qid {
        Qid {
            ty: qt::FILE,
            version: 0,
            path,
        }
    }

    #[test]
    fn inode_numbers_are_qid_paths_and_forget_drops_them() {
        let mut t = InodeTable::new(Qid {
            ty: qt::DIR,
            version: 0,
            path: 1,
        });
        let a = t.lookup(ROOT_INO, "loadavg", q(4026531990), FileKind::File);
        assert_eq!(a, 4026531990);
        assert_eq!(
            t.lookup(ROOT_INO, "loadavg", q(4026531990), FileKind::File),
            a
        );
        assert_eq!(t.peek(4026531990), a);
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "one reference left");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1, "only the root is left");
        t.forget(ROOT_INO, 100);
        assert!(t.get(ROOT_INO).is_some(), "the root is never forgotten");
    }

    #[test]
    fn reserved_and_taken_numbers_are_remapped() {
        let mut t = InodeTable::new(Qid {
            ty: qt::DIR,
            version: 0,
            path: 1,
        });
        // qid.path 1 is the root's number, 0 is invalid.
        let one = t.lookup(ROOT_INO, "x", q(1), FileKind::File);
        let zero = t.lookup(ROOT_INO, "y", q(0), FileKind::File);
        assert!(one > 1 && zero > 1 && one != zero, "{one} {zero}");
        assert_eq!(one, u64::MAX - 1);
        // A real qid.path equal to an allocated number gets another one.
        let clash = t.lookup(ROOT_INO, "z", q(u64::MAX - 1), FileKind::File);
        assert!(clash != one && clash > 1);
        assert_eq!(t.get(one).map(|n| n.path.to_string()), Some("x".into()));
        assert_eq!(t.get(clash).map(|n| n.path.to_string()), Some("z".into()));
        // The root is found by node id, never by qid.path.
        assert_eq!(t.get(ROOT_INO).map(|n| n.path.to_string()), Some("".into()));
    }

    #[test]
    fn the_last_path_wins_and_the_qid_is_refreshed() {
        let mut t = InodeTable::new(q(1));
        let a = t.lookup(ROOT_INO, "pid/7@n1", q(77), FileKind::Dir);
        let b = t.lookup(5, "n1/7", q(77), FileKind::Dir);
        assert_eq!(a, b);
        let n = t.get(a).unwrap();
        assert_eq!(&*n.path, "n1/7");
        assert_eq!(n.parent, 5);
    }
}

//! The node agent: a read-only [`Filesystem`] over a local Linux `/proc`
//! (or any directory given as the root), plus the synthesized node summary
//! file `/.gproc/ps` (format in [`crate::format::summary`], built by
//! [`collect`]).
//!
//! Rules that make /proc work over 9P:
//! - a file is read whole when it is opened, and reads are served from that
//!   snapshot, so a client reading in chunks never sees a torn file;
//! - files report length 0 and `qid.version` 0, so Linux v9fs reads them
//!   directly even under `cache=loose`;
//! - `qid.path` is the inode number, which procfs keeps unique;
//! - symlinks (`exe`, `cwd`, `fd/N`, `self`) are links: walked to, never
//!   followed. Opening one is refused (ELOOP), because following `fd/N` as
//!   root would hand out any file a process has open;
//! - a process that vanishes mid-way gives ENOENT, not EIO or ESRCH.

pub mod collect;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use crate::format::summary::{GPROC_DIR, SUMMARY_FILE};
use crate::proto::{
    DirEntry, Metadata, Qid, dt, errno, qid_type_from_mode, qt, s_if, time_from_wire,
};
use crate::server::{AttachRequest, Contents, Filesystem, FsError, FsResult, Identity, OpenFlags};

/// Largest snapshot taken of one file. /proc has files that claim to be
/// huge (`kcore`); reading stops here.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Files never read: reading `kmsg` blocks and consumes the kernel log.
const DENIED: &[&str] = &["kmsg"];

/// qid.path space of synthesized files: procfs inode numbers are 32-bit,
/// so the top bit never collides with them.
const SYNTH_QID: u64 = 1 << 63;

/// Which file a fid names.
#[derive(Debug, Clone)]
enum Place {
    /// A path under the root ("" is the root itself).
    Real(PathBuf),
    /// `/.gproc`.
    GprocDir,
    /// `/.gproc/ps`.
    Summary,
}

/// Where a fid is: which file, and its qid when walked to.
#[derive(Debug, Clone)]
pub struct AgentNode {
    place: Place,
    qid: Qid,
}

/// A `Filesystem` over a local proc tree.
pub struct ProcFs {
    /// The tree served (normally `/proc`).
    root: PathBuf,
    /// uid/gid -> name, for 9P2000 stat records (resolved once each).
    names: Mutex<HashMap<(bool, u32), Option<String>>>,
}

impl ProcFs {
    /// Serves the tree under `root`.
    ///
    /// # Errors
    /// `root` is not a readable directory.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        let md = fs::metadata(&root)?;
        if !md.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self {
            root,
            names: Mutex::new(HashMap::new()),
        })
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn qid_of(md: &fs::Metadata) -> Qid {
        Qid {
            ty: qid_type_from_mode(md.mode()),
            version: 0,
            path: md.ino(),
        }
    }

    fn synth_qid(node: &Place) -> Qid {
        match node {
            Place::GprocDir => Qid {
                ty: qt::DIR,
                version: 0,
                path: SYNTH_QID | 1,
            },
            _ => Qid {
                ty: qt::FILE,
                version: 0,
                path: SYNTH_QID | 2,
            },
        }
    }

    fn name_of(&self, group: bool, id: u32) -> Option<String> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        names
            .entry((group, id))
            .or_insert_with(|| lookup_name(group, id))
            .clone()
    }

    fn meta_from(&self, md: &fs::Metadata, name: String) -> Metadata {
        let mode = md.mode();
        let size = if mode & s_if::FMT == s_if::REG {
            0
        } else {
            md.size()
        };
        let t = |sec: i64, nsec: i64| time_from_wire(sec.max(0) as u64, nsec.max(0) as u64);
        Metadata {
            qid: Self::qid_of(md),
            name: Some(name),
            mode,
            uid: Some(md.uid()),
            gid: Some(md.gid()),
            user: self.name_of(false, md.uid()),
            group: self.name_of(true, md.gid()),
            nlink: Some(md.nlink()),
            rdev: md.rdev(),
            size,
            atime: t(md.atime(), md.atime_nsec()),
            mtime: t(md.mtime(), md.mtime_nsec()),
            ctime: Some(t(md.ctime(), md.ctime_nsec())),
            link_target: None,
        }
    }

    fn synth_meta(&self, node: &Place) -> Metadata {
        let now = std::time::SystemTime::now();
        let (mode, name, nlink) = match node {
            Place::GprocDir => (s_if::DIR | 0o555, GPROC_DIR, 2),
            _ => (s_if::REG | 0o444, SUMMARY_FILE, 1),
        };
        Metadata {
            qid: Self::synth_qid(node),
            name: Some(name.into()),
            mode,
            uid: Some(0),
            gid: Some(0),
            user: Some("root".into()),
            group: Some("root".into()),
            nlink: Some(nlink),
            atime: now,
            mtime: now,
            ctime: Some(now),
            ..Metadata::default()
        }
    }
}

/// Maps errors of a vanished process to ENOENT: procfs answers ESRCH (or
/// ENOENT) when the process exited between walk and read.
fn vanished(e: std::io::Error, what: &Path) -> FsError {
    let mut fe = FsError::from(e);
    if fe.errno == errno::ESRCH {
        fe.errno = errno::ENOENT;
    }
    fe.with(what.display().to_string())
}

/// The name of a uid in this machine's user database (NSS).
pub fn user_name(uid: u32) -> Option<String> {
    crate::sys::users::user_name(uid)
}

fn lookup_name(group: bool, id: u32) -> Option<String> {
    if group {
        crate::sys::users::group_name(id)
    } else {
        crate::sys::users::user_name(id)
    }
}

/// Reads a whole file without following a final symlink and without
/// blocking on FIFOs; stops at [`MAX_FILE_BYTES`].
fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut out = Vec::with_capacity(4096);
    f.take(MAX_FILE_BYTES as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// Lists a directory as readdir entries: `.` and `..` first, then the
/// entries in the order the kernel gave them.
fn list_dir(path: &Path, self_qid: Qid, extra: Option<DirEntry>) -> std::io::Result<Vec<DirEntry>> {
    use std::os::unix::fs::DirEntryExt;
    let mut out = vec![
        DirEntry {
            qid: self_qid,
            offset: 0,
            ty: dt::DIR,
            name: ".".into(),
        },
        DirEntry {
            qid: self_qid,
            offset: 0,
            ty: dt::DIR,
            name: "..".into(),
        },
    ];
    out.extend(extra);
    for ent in fs::read_dir(path)? {
        let Ok(ent) = ent else { continue };
        let Some(name) = ent.file_name().to_str().map(str::to_string) else {
            continue; // not representable as a 9P string
        };
        let ft = ent.file_type().ok();
        let (ty, qty) = match ft {
            Some(t) if t.is_dir() => (dt::DIR, qt::DIR),
            Some(t) if t.is_symlink() => (dt::LNK, qt::SYMLINK),
            Some(t) if t.is_file() => (dt::REG, qt::FILE),
            _ => (dt::UNKNOWN, qt::FILE),
        };
        out.push(DirEntry {
            qid: Qid {
                ty: qty,
                version: 0,
                path: ent.ino(),
            },
            offset: 0,
            ty,
            name,
        });
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> FsResult<T> + Send + 'static,
) -> FsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(FsError::IO.with(format!("worker failed: {e}"))))
}

impl Filesystem for ProcFs {
    type Node = AgentNode;

    async fn attach(&self, req: &AttachRequest) -> FsResult<(AgentNode, Qid)> {
        let a = req.aname.trim_end_matches('/');
        if !(a.is_empty() || a == "/proc" || Path::new(a) == self.root) {
            return Err(FsError::NOENT.with(format!(
                "no tree named {:?} (use \"\" or \"/proc\")",
                req.aname
            )));
        }
        let md = fs::metadata(&self.root)?;
        let qid = Self::qid_of(&md);
        let place = Place::Real(PathBuf::new());
        Ok((AgentNode { place, qid }, qid))
    }

    async fn walk(
        &self,
        _who: &Identity,
        dir: &AgentNode,
        name: &str,
    ) -> FsResult<(AgentNode, Qid)> {
        let place = match (&dir.place, name) {
            (Place::Real(p), "..") => {
                let mut p = p.clone();
                p.pop(); // at the root this stays the root
                Place::Real(p)
            }
            (Place::Real(p), GPROC_DIR) if p.as_os_str().is_empty() => Place::GprocDir,
            (Place::Real(p), _) => Place::Real(p.join(name)),
            (Place::GprocDir, "..") => Place::Real(PathBuf::new()),
            (Place::GprocDir, SUMMARY_FILE) => Place::Summary,
            _ => return Err(FsError::NOENT),
        };
        let qid = match &place {
            Place::Real(p) => {
                let abs = self.abs(p);
                Self::qid_of(&fs::symlink_metadata(&abs).map_err(|e| vanished(e, &abs))?)
            }
            n => Self::synth_qid(n),
        };
        Ok((AgentNode { place, qid }, qid))
    }

    async fn getattr(&self, _who: &Identity, node: &AgentNode) -> FsResult<Metadata> {
        match &node.place {
            Place::Real(p) => {
                let abs = self.abs(p);
                let md = fs::symlink_metadata(&abs).map_err(|e| vanished(e, &abs))?;
                let name = p
                    .file_name()
                    .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
                    .unwrap_or_else(|| "/".into());
                Ok(self.meta_from(&md, name))
            }
            n => Ok(self.synth_meta(n)),
        }
    }

    async fn open(
        &self,
        _who: &Identity,
        node: &AgentNode,
        flags: OpenFlags,
    ) -> FsResult<Contents> {
        if flags.write || flags.truncate {
            return Err(FsError::ROFS);
        }
        match &node.place {
            Place::Summary => {
                let root = self.root.clone();
                let data = blocking(move || {
                    collect::generate(&root)
                        .map_err(|e| FsError::IO.with(format!("node summary: {e}")))
                })
                .await?;
                Ok(Contents::File(Bytes::from(data)))
            }
            Place::GprocDir => Ok(Contents::Dir(vec![
                dirent(node.qid, dt::DIR, "."),
                dirent(node.qid, dt::DIR, ".."),
                dirent(Self::synth_qid(&Place::Summary), dt::REG, SUMMARY_FILE),
            ])),
            Place::Real(p) => {
                if node.qid.is_symlink() {
                    return Err(FsError::new(errno::ELOOP)
                        .with("symlinks are read with readlink, not opened"));
                }
                if p.file_name()
                    .is_some_and(|n| DENIED.iter().any(|d| OsStr::new(d) == n))
                    && p.parent().is_some_and(|d| d.as_os_str().is_empty())
                {
                    return Err(FsError::ACCES.with(format!("{} is not served", p.display())));
                }
                let abs = self.abs(p);
                let qid = node.qid;
                let is_root = p.as_os_str().is_empty();
                blocking(move || {
                    if qid.is_dir() {
                        let extra = is_root.then(|| {
                            dirent(ProcFs::synth_qid(&Place::GprocDir), dt::DIR, GPROC_DIR)
                        });
                        list_dir(&abs, qid, extra)
                            .map(Contents::Dir)
                            .map_err(|e| vanished(e, &abs))
                    } else {
                        read_whole(&abs)
                            .map(|d| Contents::File(Bytes::from(d)))
                            .map_err(|e| vanished(e, &abs))
                    }
                })
                .await
            }
        }
    }

    async fn readlink(&self, _who: &Identity, node: &AgentNode) -> FsResult<String> {
        let Place::Real(p) = &node.place else {
            return Err(FsError::INVAL);
        };
        let abs = self.abs(p);
        let t = fs::read_link(&abs).map_err(|e| vanished(e, &abs))?;
        Ok(String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned())
    }
}

fn dirent(qid: Qid, ty: u8, name: &str) -> DirEntry {
    DirEntry {
        qid,
        offset: 0,
        ty,
        name: name.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Proof;

    fn root() -> Identity {
        Identity::lookup(0, Proof::Peer)
    }

    fn attach_req() -> AttachRequest {
        AttachRequest {
            aname: "/proc".into(),
            who: root(),
        }
    }

    async fn walk_path(fs: &ProcFs, path: &str) -> FsResult<AgentNode> {
        let (mut f, _) = fs.attach(&attach_req()).await?;
        for n in path.split('/').filter(|s| !s.is_empty()) {
            f = fs.walk(&root(), &f, n).await?.0;
        }
        Ok(f)
    }

    async fn open(fs: &ProcFs, f: &AgentNode) -> FsResult<Contents> {
        fs.open(&root(), f, OpenFlags::READ).await
    }

    async fn read_all(fs: &ProcFs, path: &str) -> FsResult<Vec<u8>> {
        let f = walk_path(fs, path).await?;
        match open(fs, &f).await? {
            Contents::File(b) => Ok(b.to_vec()),
            c => panic!("{path}: not a file: {c:?}"),
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("loadavg"), "0.1 0.2 0.3 1/2 3\n").unwrap();
        fs::create_dir(d.path().join("42")).unwrap();
        fs::write(d.path().join("42/status"), "Name:\tx\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("42/exe")).unwrap();
        std::os::unix::fs::symlink("42", d.path().join("self")).unwrap();
        fs::write(d.path().join("kmsg"), "secret").unwrap();
        d
    }

    #[tokio::test]
    async fn reads_whole_files_in_chunks_and_reports_length_zero() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        assert_eq!(read_all(&fs, "42/status").await.unwrap(), b"Name:\tx\n");
        let m = fs
            .getattr(&root(), &walk_path(&fs, "loadavg").await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            (m.size, m.qid.version, m.mode & s_if::FMT),
            (0, 0, s_if::REG)
        );
    }

    #[tokio::test]
    async fn snapshot_is_taken_at_open() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let f = walk_path(&fs, "loadavg").await.unwrap();
        let o = open(&fs, &f).await.unwrap();
        fs::write(d.path().join("loadavg"), "changed").unwrap();
        assert!(matches!(o, Contents::File(b) if &b[..] == b"0.1 0.2 0.3 1/2 3\n"));
    }

    #[tokio::test]
    async fn symlinks_are_links_never_followed() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let exe = walk_path(&fs, "42/exe").await.unwrap();
        assert!(exe.qid.is_symlink());
        assert_eq!(fs.readlink(&root(), &exe).await.unwrap(), "/etc/hostname");
        assert_eq!(open(&fs, &exe).await.unwrap_err().errno, errno::ELOOP);
        let m = fs.getattr(&root(), &exe).await.unwrap();
        assert_eq!(m.mode & s_if::FMT, s_if::LNK);
    }

    #[tokio::test]
    async fn read_only_and_denied_files() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let f = walk_path(&fs, "loadavg").await.unwrap();
        let w = OpenFlags {
            read: false,
            write: true,
            truncate: false,
        };
        assert_eq!(
            fs.open(&root(), &f, w).await.unwrap_err().errno,
            errno::EROFS
        );
        let k = walk_path(&fs, "kmsg").await.unwrap();
        assert_eq!(open(&fs, &k).await.unwrap_err().errno, errno::EACCES);
    }

    #[tokio::test]
    async fn attach_names_and_dotdot_at_root() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        for a in ["", "/proc", "/proc/"] {
            let req = AttachRequest {
                aname: a.into(),
                ..attach_req()
            };
            assert!(fs.attach(&req).await.is_ok(), "{a:?}");
        }
        let req = AttachRequest {
            aname: "/etc".into(),
            ..attach_req()
        };
        assert_eq!(fs.attach(&req).await.unwrap_err().errno, errno::ENOENT);
        let (top, rq) = fs.attach(&attach_req()).await.unwrap();
        let (up, uq) = fs.walk(&root(), &top, "..").await.unwrap();
        assert_eq!(uq, rq);
        assert_eq!(
            fs.walk(&root(), &up, "loadavg").await.unwrap().1,
            walk_path(&fs, "loadavg").await.unwrap().qid
        );
    }

    #[tokio::test]
    async fn root_listing_has_the_summary_dir_and_unique_qids() {
        let d = tree();
        let fs = ProcFs::new(d.path()).unwrap();
        let top = walk_path(&fs, "").await.unwrap();
        let Contents::Dir(all) = open(&fs, &top).await.unwrap() else {
            panic!("the root is a directory")
        };
        let names: Vec<_> = all.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(&names[..3], [".", "..", GPROC_DIR]);
        assert!(names.contains(&"42") && names.contains(&"self") && names.contains(&"loadavg"));
        let self_ent = all.iter().find(|e| e.name == "self").unwrap();
        assert_eq!(self_ent.ty, 10, "DT_LNK");
        let qids: std::collections::HashSet<_> = all[2..].iter().map(|e| e.qid.path).collect();
        assert_eq!(qids.len(), all.len() - 2, "qid.path unique per entry");
    }

    #[tokio::test]
    async fn summary_file_is_served_from_the_real_proc() {
        let fs = ProcFs::new("/proc").unwrap();
        let data = read_all(&fs, ".gproc/ps").await.unwrap();
        let s = crate::format::summary::parse(&data).unwrap();
        assert!(s.procs.iter().any(|p| p.pid == std::process::id() as i32));
    }

    #[tokio::test]
    async fn a_process_that_exits_gives_enoent() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fs = ProcFs::new("/proc").unwrap();
        let path = format!("{}/status", child.id());
        let f = walk_path(&fs, &path).await.unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(open(&fs, &f).await.unwrap_err().errno, errno::ENOENT);
        assert_eq!(
            walk_path(&fs, &path).await.unwrap_err().errno,
            errno::ENOENT
        );
    }
}

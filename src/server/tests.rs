//! Session tests: raw frames through an in-memory duplex pipe against a
//! small test filesystem, asserting the protocol rules the session
//! enforces before any filesystem sees a request.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::session::{SessionLimits, serve_connection};
use super::*;
use crate::proto::{self, *};

/// `/` holds `a` (file "hello"), `d/` (holding `b`), `slow` (a file whose
/// open waits for `release`), `lazy` (a file whose walk waits for it) and
/// `boom` (whose open panics); `shut`, walked to but not listed, is a file
/// whose open waits for `release` and then fails.
struct TestFs {
    release: Arc<Notify>,
}

#[derive(Clone, Debug)]
struct TFid {
    path: String,
}

fn q(path: &str) -> Qid {
    let ty = if path.is_empty() || path == "d" {
        qt::DIR
    } else {
        qt::FILE
    };
    Qid {
        ty,
        version: 0,
        path: path.len() as u64 + if path == "d/b" { 100 } else { 0 },
    }
}

impl Filesystem for TestFs {
    type Node = TFid;

    async fn attach(&self, req: &AttachRequest) -> FsResult<(TFid, Qid)> {
        if req.aname == "bad" {
            return Err(FsError::NOENT);
        }
        Ok((
            TFid {
                path: String::new(),
            },
            q(""),
        ))
    }

    async fn walk(&self, _who: &Identity, dir: &TFid, name: &str) -> FsResult<(TFid, Qid)> {
        let p = match (dir.path.as_str(), name) {
            (_, "..") => dir
                .path
                .rsplit_once('/')
                .map(|(a, _)| a.to_string())
                .unwrap_or_default(),
            ("", "a" | "d" | "slow" | "boom" | "fresh" | "shut") => name.to_string(),
            ("", "lazy") => {
                self.release.notified().await;
                name.to_string()
            }
            ("d", "b") => "d/b".to_string(),
            _ => return Err(FsError::NOENT),
        };
        Ok((TFid { path: p.clone() }, q(&p)))
    }

    /// The owner is whoever asks: shows which identity a call carried.
    async fn getattr(&self, who: &Identity, fid: &TFid) -> FsResult<Metadata> {
        let qid = q(&fid.path);
        let mode = if qid.is_dir() {
            s_if::DIR | 0o555
        } else {
            s_if::REG | 0o444
        };
        Ok(Metadata {
            qid,
            name: Some(fid.path.rsplit('/').next().unwrap_or("/").to_string()),
            mode,
            uid: Some(who.uid),
            nlink: Some(1),
            ..Metadata::default()
        })
    }

    async fn open(&self, _who: &Identity, fid: &TFid, _flags: OpenFlags) -> FsResult<Contents> {
        match fid.path.as_str() {
            "slow" => self.release.notified().await,
            "shut" => {
                self.release.notified().await;
                return Err(FsError::ACCES);
            }
            "boom" => panic!("test panic"),
            _ => {}
        }
        let names: &[&str] = match fid.path.as_str() {
            "" => &["a", "d", "slow", "boom"],
            "d" => &["b"],
            "a" => return Ok(Contents::File(Bytes::from_static(b"hello"))),
            "slow" => return Ok(Contents::File(Bytes::from_static(b"slow data"))),
            "lazy" => return Ok(Contents::File(Bytes::from_static(b"lazy data"))),
            "fresh" => {
                static OPENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = OPENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                return Ok(Contents::Fresh(Bytes::from(format!("open {n}"))));
            }
            _ => return Ok(Contents::File(Bytes::new())),
        };
        Ok(Contents::Dir(
            names
                .iter()
                .map(|n| DirEntry {
                    qid: q(n),
                    offset: 0,
                    ty: 8,
                    name: (*n).to_string(),
                })
                .collect(),
        ))
    }
}

struct Conn {
    io: DuplexStream,
    d: Dialect,
    release: Arc<Notify>,
}

fn start() -> Conn {
    start_with(limits())
}

/// Default limits, believing claims: the test peer has no credentials.
fn limits() -> SessionLimits {
    SessionLimits {
        access: AccessPolicy::believing_claims(),
        ..SessionLimits::default()
    }
}

fn start_with(limits: SessionLimits) -> Conn {
    let (a, b) = tokio::io::duplex(1 << 20);
    let release = Arc::new(Notify::new());
    let fs = Arc::new(TestFs {
        release: release.clone(),
    });
    let peer = Peer {
        addr: "test".into(),
        uid: None,
        gid: None,
    };
    tokio::spawn(serve_connection(
        fs,
        b,
        peer,
        limits,
        CancellationToken::new(),
    ));
    Conn {
        io: a,
        d: Dialect::P2000L,
        release,
    }
}

impl Conn {
    async fn send(&mut self, tag: u16, m: Tmessage) {
        let b = Frame { tag, msg: m }.to_bytes(self.d).unwrap();
        self.io.write_all(&b).await.unwrap();
    }

    async fn send_raw(&mut self, b: &[u8]) {
        self.io.write_all(b).await.unwrap();
    }

    /// The next reply, or None if the connection closed.
    async fn recv(&mut self) -> Option<Frame<Rmessage>> {
        let mut hdr = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), self.io.read_exact(&mut hdr))
            .await
            .expect("reply timeout")
            .ok()?;
        let n = u32::from_le_bytes(hdr) as usize;
        let mut buf = BytesMut::zeroed(n);
        buf[..4].copy_from_slice(&hdr);
        self.io.read_exact(&mut buf[4..]).await.ok()?;
        Some(Frame::decode(buf.freeze(), self.d).unwrap())
    }

    async fn rpc(&mut self, tag: u16, m: Tmessage) -> Rmessage {
        self.send(tag, m).await;
        let r = self.recv().await.expect("connection closed");
        assert_eq!(r.tag, tag);
        r.msg
    }

    async fn version(&mut self, v: &str) -> Rversion {
        match self
            .rpc(
                NOTAG,
                Tmessage::Version(Tversion {
                    msize: 65536,
                    version: v.into(),
                }),
            )
            .await
        {
            Rmessage::Version(r) => {
                if let Some(d) = Dialect::negotiate(&r.version) {
                    self.d = d;
                }
                r
            }
            m => panic!("{m:?}"),
        }
    }

    async fn attach(&mut self, fid: u32) -> Rmessage {
        self.rpc(
            1,
            Tmessage::Attach(Tattach {
                fid,
                afid: NOFID,
                // A known name: 9P2000 carries no n_uname.
                uname: "root".into(),
                aname: "".into(),
                n_uname: 0,
            }),
        )
        .await
    }

    async fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Rmessage {
        let wnames = names.iter().map(|s| s.to_string()).collect();
        self.rpc(
            2,
            Tmessage::Walk(Twalk {
                fid,
                newfid,
                wnames,
            }),
        )
        .await
    }
}

fn errno_of(m: &Rmessage) -> u32 {
    match m {
        Rmessage::Lerror(e) => e.ecode,
        Rmessage::Error(e) => e.errno,
        m => panic!("expected an error, got {m:?}"),
    }
}

#[tokio::test]
async fn version_is_negotiated_by_prefix_and_msize_capped() {
    let mut c = start_with(SessionLimits {
        max_msize: 8192,
        ..limits()
    });
    let r = c.version("9P2000.L.Google.7").await;
    assert_eq!((r.version.as_str(), r.msize), ("9P2000.L", 8192));
    let r = c.version("9P2000.u").await;
    assert_eq!(r.version, "9P2000.u");
    let r = c.version("9P2000").await;
    assert_eq!(r.version, "9P2000");
    let r = c.version("HTTP/1.1").await;
    assert_eq!(r.version, "unknown");
}

#[tokio::test]
async fn requests_before_version_are_refused_and_connection_survives() {
    let mut c = start();
    c.d = Dialect::P2000;
    let r = c.attach(0).await;
    assert!(matches!(r, Rmessage::Error(_)), "{r:?}");
    c.version("9P2000.L").await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
}

#[tokio::test]
async fn walk_rules() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    // `..` at the root stays at the root.
    match c.walk(0, 1, &[".."]).await {
        Rmessage::Walk(w) => assert_eq!(w.wqids, vec![q("")]),
        m => panic!("{m:?}"),
    }
    // First element fails: an error, newfid unbound.
    assert_eq!(errno_of(&c.walk(0, 2, &["nope"]).await), errno::ENOENT);
    assert_eq!(
        errno_of(&c.rpc(3, Tmessage::Clunk(Tclunk { fid: 2 })).await),
        errno::EBADF
    );
    // A later element fails: partial Rwalk, newfid unbound.
    match c.walk(0, 2, &["d", "nope"]).await {
        Rmessage::Walk(w) => assert_eq!(w.wqids.len(), 1),
        m => panic!("{m:?}"),
    }
    assert_eq!(
        errno_of(&c.rpc(3, Tmessage::Clunk(Tclunk { fid: 2 })).await),
        errno::EBADF
    );
    // Walking through a file stops there: partial walk.
    assert!(matches!(c.walk(0, 2, &["a", "x"]).await, Rmessage::Walk(w) if w.wqids.len() == 1));
    // Walking from a file as the first step is ENOTDIR.
    assert!(matches!(c.walk(0, 6, &["a"]).await, Rmessage::Walk(_)));
    assert_eq!(errno_of(&c.walk(6, 7, &["x"]).await), errno::ENOTDIR);
    // 17 names are refused.
    let names = ["d"; 17];
    assert_eq!(errno_of(&c.walk(0, 3, &names).await), errno::EINVAL);
    // newfid already in use.
    assert!(matches!(c.walk(0, 4, &["d"]).await, Rmessage::Walk(_)));
    assert_eq!(errno_of(&c.walk(0, 4, &["a"]).await), errno::EBADF);
    // Cloning with no names, and walking in place.
    assert!(matches!(c.walk(4, 5, &[]).await, Rmessage::Walk(w) if w.wqids.is_empty()));
    assert!(matches!(c.walk(5, 5, &["b"]).await, Rmessage::Walk(w) if w.wqids == vec![q("d/b")]));
}

/// A fresh file is taken again by a read at 0 after the first read, and
/// only then: the first read serves what the open took, reads past 0 the
/// same bytes as the read at 0 before them.
#[tokio::test]
async fn a_fresh_file_is_taken_again_by_a_read_at_zero() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    c.walk(0, 1, &["fresh"]).await;
    assert!(matches!(
        c.rpc(3, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 })).await,
        Rmessage::Lopen(_)
    ));
    let mut read = async |offset| match c
        .rpc(
            3,
            Tmessage::Read(Tread {
                fid: 1,
                offset,
                count: 100,
            }),
        )
        .await
    {
        Rmessage::Read(r) => String::from_utf8(r.data.to_vec()).unwrap(),
        m => panic!("{m:?}"),
    };
    let first = read(0).await;
    let n: u64 = first.strip_prefix("open ").unwrap().parse().unwrap();
    assert_eq!(
        read(5).await,
        n.to_string(),
        "a read past 0 keeps the bytes"
    );
    assert_eq!(read(0).await, format!("open {}", n + 1));
    assert_eq!(read(5).await, (n + 1).to_string());
    assert_eq!(read(0).await, format!("open {}", n + 2));
}

#[tokio::test]
async fn open_read_and_fid_rules() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    c.walk(0, 1, &["a"]).await;
    // Reading an unopened fid.
    let r = c
        .rpc(
            3,
            Tmessage::Read(Tread {
                fid: 1,
                offset: 0,
                count: 100,
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::EBADF);
    assert!(matches!(
        c.rpc(3, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 })).await,
        Rmessage::Lopen(_)
    ));
    // Opening twice.
    assert_eq!(
        errno_of(&c.rpc(3, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 })).await),
        errno::EBADF
    );
    match c
        .rpc(
            3,
            Tmessage::Read(Tread {
                fid: 1,
                offset: 1,
                count: 100,
            }),
        )
        .await
    {
        Rmessage::Read(r) => assert_eq!(&r.data[..], b"ello"),
        m => panic!("{m:?}"),
    }
    match c
        .rpc(
            3,
            Tmessage::Read(Tread {
                fid: 1,
                offset: 5,
                count: 100,
            }),
        )
        .await
    {
        Rmessage::Read(r) => assert!(r.data.is_empty(), "EOF is an empty Rread"),
        m => panic!("{m:?}"),
    }
    // Unknown fid; duplicate attach fid; clunk twice.
    assert_eq!(
        errno_of(
            &c.rpc(
                3,
                Tmessage::Getattr(Tgetattr {
                    fid: 99,
                    request_mask: 0x7ff
                })
            )
            .await
        ),
        errno::EBADF
    );
    assert_eq!(errno_of(&c.attach(0).await), errno::EBADF);
    assert!(matches!(
        c.rpc(3, Tmessage::Clunk(Tclunk { fid: 1 })).await,
        Rmessage::Clunk
    ));
    assert_eq!(
        errno_of(&c.rpc(3, Tmessage::Clunk(Tclunk { fid: 1 })).await),
        errno::EBADF
    );
    // Write-ish operations on a read-only tree.
    let r = c
        .rpc(
            3,
            Tmessage::Mkdir(Tmkdir {
                dfid: 0,
                name: "x".into(),
                mode: 0o755,
                gid: 0,
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::EROFS);
    // The ACL probe v9fs sends on every inode gets EOPNOTSUPP, never EIO.
    let r = c
        .rpc(
            3,
            Tmessage::Xattrwalk(Txattrwalk {
                fid: 0,
                newfid: 9,
                name: "system.posix_acl_access".into(),
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::EOPNOTSUPP);
    // Statfs answers V9FS_MAGIC with non-zero sizes.
    match c.rpc(3, Tmessage::Statfs(Tstatfs { fid: 0 })).await {
        Rmessage::Statfs(s) => {
            assert!(s.statfs.ty == V9FS_MAGIC && s.statfs.bsize > 0 && s.statfs.namelen > 0)
        }
        m => panic!("{m:?}"),
    }
}

#[tokio::test]
async fn errors_take_the_form_of_the_dialect() {
    for (v, d) in [
        ("9P2000.L", Dialect::P2000L),
        ("9P2000.u", Dialect::P2000u),
        ("9P2000", Dialect::P2000),
    ] {
        let mut c = start();
        c.version(v).await;
        c.attach(0).await;
        let r = c.walk(0, 1, &["nope"]).await;
        match (d, r) {
            (Dialect::P2000L, Rmessage::Lerror(e)) => assert_eq!(e.ecode, errno::ENOENT),
            (Dialect::P2000u, Rmessage::Error(e)) => {
                assert_eq!((e.ename.as_str(), e.errno), ("file does not exist", 2))
            }
            (Dialect::P2000, Rmessage::Error(e)) => assert_eq!(e.ename, "file does not exist"),
            (d, r) => panic!("{d}: {r:?}"),
        }
    }
}

#[tokio::test]
async fn readdir_cookies_resume_from_any_entry() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    c.walk(0, 1, &[]).await;
    c.rpc(3, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 })).await;
    let all = match c
        .rpc(
            3,
            Tmessage::Readdir(Treaddir {
                fid: 1,
                offset: 0,
                count: 8000,
            }),
        )
        .await
    {
        Rmessage::Readdir(r) => DirEntry::decode_all(r.data).unwrap(),
        m => panic!("{m:?}"),
    };
    assert_eq!(
        all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["a", "d", "slow", "boom"]
    );
    let rest = match c
        .rpc(
            3,
            Tmessage::Readdir(Treaddir {
                fid: 1,
                offset: all[1].offset,
                count: 8000,
            }),
        )
        .await
    {
        Rmessage::Readdir(r) => DirEntry::decode_all(r.data).unwrap(),
        m => panic!("{m:?}"),
    };
    assert_eq!(rest, all[2..].to_vec());
    // A small count returns whole entries only.
    match c
        .rpc(
            3,
            Tmessage::Readdir(Treaddir {
                fid: 1,
                offset: 0,
                count: 30,
            }),
        )
        .await
    {
        Rmessage::Readdir(r) => assert_eq!(DirEntry::decode_all(r.data).unwrap().len(), 1),
        m => panic!("{m:?}"),
    }
}

#[tokio::test]
async fn dir_read_in_9p2000_returns_whole_stat_records() {
    let mut c = start();
    c.version("9P2000").await;
    c.attach(0).await;
    c.walk(0, 1, &[]).await;
    c.rpc(
        3,
        Tmessage::Open(Topen {
            fid: 1,
            mode: om::READ,
        }),
    )
    .await;
    let mut names = Vec::new();
    let mut off = 0u64;
    loop {
        let r = c
            .rpc(
                3,
                Tmessage::Read(Tread {
                    fid: 1,
                    offset: off,
                    count: 80,
                }),
            )
            .await;
        let Rmessage::Read(r) = r else {
            panic!("{r:?}")
        };
        if r.data.is_empty() {
            break;
        }
        off += r.data.len() as u64;
        names.extend(
            Stat::decode_dir(Dialect::P2000, r.data)
                .unwrap()
                .into_iter()
                .map(|s| s.name),
        );
    }
    assert_eq!(names, ["a", "d", "slow", "boom"]);
    // An offset that is neither 0 nor the end of the previous read.
    let r = c
        .rpc(
            3,
            Tmessage::Read(Tread {
                fid: 1,
                offset: 3,
                count: 80,
            }),
        )
        .await;
    assert!(matches!(r, Rmessage::Error(_)));
}

#[tokio::test]
async fn flush_cancels_and_rflush_comes_after_no_reply() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    c.walk(0, 1, &["slow"]).await;
    c.send(10, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 }))
        .await;
    // A slow request does not block others on the same connection.
    assert!(matches!(c.walk(0, 2, &["a"]).await, Rmessage::Walk(_)));
    c.send(11, Tmessage::Flush(Tflush { oldtag: 10 })).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, r.msg), (11, Rmessage::Flush));
    // Releasing the slow open now must not produce a reply for tag 10,
    // and the fid was not opened.
    c.release.notify_waiters();
    let r = c
        .rpc(
            12,
            Tmessage::Read(Tread {
                fid: 1,
                offset: 0,
                count: 10,
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::EBADF, "the flushed open had no effect");
    // Flushing an unknown tag still gets Rflush.
    assert_eq!(
        c.rpc(13, Tmessage::Flush(Tflush { oldtag: 999 })).await,
        Rmessage::Flush
    );
}

/// A request naming the fid that a walk in flight creates waits for that
/// walk, so a client may send its getattr right behind the walk; behind a
/// walk that fails it finds no such fid. Other requests are not held up.
#[tokio::test]
async fn requests_pipelined_behind_a_walk_wait_for_its_fid() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    let getattr = |fid| {
        Tmessage::Getattr(Tgetattr {
            fid,
            request_mask: getattr::BASIC,
        })
    };
    let walk = |newfid, name: &str| {
        Tmessage::Walk(Twalk {
            fid: 0,
            newfid,
            wnames: vec![name.to_string()],
        })
    };
    c.send(10, walk(1, "lazy")).await;
    c.send(11, getattr(1)).await;
    c.send(12, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 }))
        .await;
    // The walk waits for `release`; a walk to another fid is answered.
    assert!(matches!(c.walk(0, 3, &["a"]).await, Rmessage::Walk(_)));
    c.release.notify_one();
    let mut replies = std::collections::HashMap::new();
    for _ in 0..3 {
        let r = c.recv().await.expect("a reply");
        replies.insert(r.tag, r.msg);
    }
    assert!(matches!(&replies[&10], Rmessage::Walk(w) if w.wqids.len() == 1));
    match &replies[&11] {
        Rmessage::Getattr(g) => assert_eq!(g.attr.qid, q("lazy")),
        m => panic!("the getattr waited for its fid: {m:?}"),
    }
    assert!(
        matches!(&replies[&12], Rmessage::Lopen(_)),
        "{:?}",
        replies[&12]
    );
    // Behind a walk that fails, the fid does not exist.
    c.send(20, walk(4, "nothing")).await;
    c.send(21, getattr(4)).await;
    let (a, b) = (c.recv().await.unwrap(), c.recv().await.unwrap());
    let (w, g) = if a.tag == 20 { (a, b) } else { (b, a) };
    assert_eq!(errno_of(&w.msg), errno::ENOENT);
    assert_eq!(errno_of(&g.msg), errno::EBADF);
}

/// A read sent right behind the open of its fid waits for that open, even
/// when the open does not finish at once or waits for the walk that
/// creates the fid: it reads what the open took. Behind an open that
/// fails it finds the fid not open. Other fids' requests are not held up.
#[tokio::test]
async fn a_read_pipelined_behind_an_open_waits_for_it() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    let lopen = |fid| Tmessage::Lopen(Tlopen { fid, flags: 0 });
    let read = |fid| {
        Tmessage::Read(Tread {
            fid,
            offset: 0,
            count: 100,
        })
    };
    let data = |m: &Rmessage| match m {
        Rmessage::Read(r) => r.data.clone(),
        m => panic!("the read waited for the open: {m:?}"),
    };
    // Replies to two requests sent together, by tag.
    async fn two(c: &mut Conn) -> std::collections::HashMap<u16, Rmessage> {
        let mut replies = std::collections::HashMap::new();
        for _ in 0..2 {
            let r = c.recv().await.expect("a reply");
            replies.insert(r.tag, r.msg);
        }
        replies
    }

    // An open that waits for `release`, a read right behind it.
    assert!(matches!(c.walk(0, 1, &["slow"]).await, Rmessage::Walk(_)));
    c.send(10, lopen(1)).await;
    c.send(11, read(1)).await;
    // Meanwhile, another fid's requests are answered.
    assert!(matches!(c.walk(0, 2, &["a"]).await, Rmessage::Walk(_)));
    assert!(matches!(c.rpc(3, lopen(2)).await, Rmessage::Lopen(_)));
    assert_eq!(data(&c.rpc(4, read(2)).await), &b"hello"[..]);
    c.release.notify_one();
    let replies = two(&mut c).await;
    assert!(matches!(&replies[&10], Rmessage::Lopen(_)), "{replies:?}");
    assert_eq!(data(&replies[&11]), &b"slow data"[..]);

    // Behind an open that fails, the fid is not open.
    assert!(matches!(c.walk(0, 5, &["shut"]).await, Rmessage::Walk(_)));
    c.send(20, lopen(5)).await;
    c.send(21, read(5)).await;
    assert!(matches!(c.walk(0, 6, &["a"]).await, Rmessage::Walk(_)));
    c.release.notify_one();
    let replies = two(&mut c).await;
    assert_eq!(errno_of(&replies[&20]), errno::EACCES);
    assert_eq!(errno_of(&replies[&21]), errno::EBADF);

    // Walk, open and read in one go: the open waits for the walk, the
    // read for the open.
    c.send(30, walk_to(0, 7, "lazy")).await;
    c.send(31, lopen(7)).await;
    c.send(32, read(7)).await;
    assert!(matches!(c.walk(0, 8, &["a"]).await, Rmessage::Walk(_)));
    c.release.notify_one();
    let mut replies = two(&mut c).await;
    let r = c.recv().await.expect("a reply");
    replies.insert(r.tag, r.msg);
    assert!(matches!(&replies[&30], Rmessage::Walk(w) if w.wqids.len() == 1));
    assert!(matches!(&replies[&31], Rmessage::Lopen(_)), "{replies:?}");
    assert_eq!(data(&replies[&32]), &b"lazy data"[..]);
}

fn walk_to(fid: u32, newfid: u32, name: &str) -> Tmessage {
    Tmessage::Walk(Twalk {
        fid,
        newfid,
        wnames: vec![name.to_string()],
    })
}

#[tokio::test]
async fn a_panicking_filesystem_answers_eio_and_keeps_serving() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    c.walk(0, 1, &["boom"]).await;
    assert_eq!(
        errno_of(&c.rpc(3, Tmessage::Lopen(Tlopen { fid: 1, flags: 0 })).await),
        errno::EIO
    );
    assert!(matches!(c.walk(0, 2, &["a"]).await, Rmessage::Walk(_)));
}

#[tokio::test]
async fn malformed_messages_error_only_that_request() {
    let mut c = start();
    c.version("9P2000.L").await;
    // Unknown type 200.
    c.send_raw(&[7, 0, 0, 0, 200, 5, 0]).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (5, errno::EOPNOTSUPP));
    // A truncated Tattach body.
    c.send_raw(&[9, 0, 0, 0, 104, 6, 0, 1, 0]).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (6, errno::EBADMSG));
    // A 9P2000-only message in .L.
    c.send_raw(&[12, 0, 0, 0, 112, 7, 0, 0, 0, 0, 0, 0]).await;
    assert_eq!(errno_of(&c.recv().await.unwrap().msg), errno::EOPNOTSUPP);
    assert!(
        matches!(c.attach(0).await, Rmessage::Attach(_)),
        "the connection still serves"
    );
}

#[tokio::test]
async fn oversized_or_undersized_frames_close_the_connection() {
    for raw in [&[0xff, 0xff, 0xff, 0xff, 100, 0, 0][..], &[3, 0, 0, 0][..]] {
        let mut c = start();
        c.version("9P2000.L").await;
        c.send_raw(raw).await;
        assert!(c.recv().await.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn half_a_frame_then_silence_is_closed_after_the_deadline() {
    let mut c = start_with(SessionLimits {
        partial_frame_timeout: Duration::from_secs(3),
        ..limits()
    });
    c.version("9P2000.L").await;
    c.send_raw(&[20, 0, 0, 0, 104]).await;
    tokio::time::advance(Duration::from_secs(7)).await;
    assert!(c.recv().await.is_none());
}

#[tokio::test]
async fn fid_limit_answers_emfile() {
    let mut c = start_with(SessionLimits {
        max_fids: 3,
        ..limits()
    });
    c.version("9P2000.L").await;
    c.attach(0).await;
    assert!(matches!(c.walk(0, 1, &[]).await, Rmessage::Walk(_)));
    assert!(matches!(c.walk(0, 2, &[]).await, Rmessage::Walk(_)));
    assert_eq!(errno_of(&c.walk(0, 3, &[]).await), errno::EMFILE);
}

#[tokio::test]
async fn version_resets_fids() {
    let mut c = start();
    c.version("9P2000.L").await;
    c.attach(0).await;
    c.version("9P2000.L").await;
    assert_eq!(errno_of(&c.walk(0, 1, &[]).await), errno::EBADF);
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
}

#[tokio::test]
async fn many_attaches_per_connection() {
    let mut c = start();
    c.version("9P2000.L").await;
    for fid in 0..10 {
        assert!(matches!(c.attach(fid).await, Rmessage::Attach(_)));
    }
}

#[test]
fn meta_converts_to_each_dialect() {
    let m = Metadata {
        qid: Qid {
            ty: qt::SYMLINK,
            version: 0,
            path: 5,
        },
        name: Some("exe".into()),
        mode: s_if::LNK | 0o777,
        uid: Some(7),
        ..Metadata::default()
    };
    let st = session::meta_to_stat(&m, Dialect::P2000u, "/bin/sh".into());
    assert_eq!(st.mode, proto::dm::SYMLINK | 0o777);
    assert_eq!(
        (st.uid.as_str(), st.n_uid, st.extension.as_str()),
        ("7", 7, "/bin/sh")
    );
    let st = session::meta_to_stat(&m, Dialect::P2000, String::new());
    assert_eq!(st.mode, 0o777, "9P2000 has no symlink bit");
    let a = session::meta_to_attr(&m);
    assert_eq!(
        (a.mode, a.qid.path, a.valid),
        (s_if::LNK | 0o777, 5, getattr::BASIC)
    );
}

/// Accepts credentials of the form `uid=N` or `uid=N to=NAME` (a
/// stand-in for munged), for the receiver "me".
struct FakeMunge;

impl crate::auth::Authenticator for FakeMunge {
    fn verify(&self, cred: &[u8]) -> Result<crate::auth::Credential, String> {
        let s = std::str::from_utf8(cred).map_err(|e| e.to_string())?;
        let (s, receiver) = match s.split_once(" to=") {
            Some((a, r)) => (a, Some(r.to_string())),
            None => (s, None),
        };
        let uid = s
            .strip_prefix("uid=")
            .and_then(|u| u.parse().ok())
            .ok_or("Invalid credential format")?;
        let c = crate::auth::Credential {
            uid,
            gid: uid,
            receiver,
        };
        crate::auth::check_receiver(c, "me")
    }
    fn name(&self) -> &'static str {
        "fake"
    }
}

fn auth_limits(required: bool) -> SessionLimits {
    SessionLimits {
        access: AccessPolicy {
            verifier: Some(Arc::new(FakeMunge)),
            believe_claims: !required,
            ..AccessPolicy::default()
        },
        ..SessionLimits::default()
    }
}

async fn auth_attach(c: &mut Conn, afid: u32, cred: &[&[u8]], n_uname: u32) -> Rmessage {
    let r = c
        .rpc(
            1,
            Tmessage::Auth(Tauth {
                afid,
                uname: "u".into(),
                aname: "".into(),
                n_uname,
            }),
        )
        .await;
    assert!(
        matches!(r, Rmessage::Auth(ref a) if a.aqid.ty == qt::AUTH),
        "{r:?}"
    );
    let mut off = 0;
    for piece in cred {
        let w = Twrite {
            fid: afid,
            offset: off,
            data: Bytes::copy_from_slice(piece),
        };
        assert!(matches!(
            c.rpc(2, Tmessage::Write(w)).await,
            Rmessage::Write(_)
        ));
        off += piece.len() as u64;
    }
    let a = Tattach {
        fid: 0,
        afid,
        uname: "u".into(),
        aname: "".into(),
        n_uname,
    };
    c.rpc(3, Tmessage::Attach(a)).await
}

#[tokio::test]
async fn auth_fid_credential_must_match_the_attaching_user() {
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    // Written in two pieces at consecutive offsets, like diod's clients.
    assert!(matches!(
        auth_attach(&mut c, 9, &[b"uid=", b"1000"], 1000).await,
        Rmessage::Attach(_)
    ));
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    assert_eq!(
        errno_of(&auth_attach(&mut c, 9, &[b"uid=1000"], 0).await),
        errno::EPERM,
        "claims root"
    );
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    assert_eq!(
        errno_of(&auth_attach(&mut c, 9, &[b"forged"], 1000).await),
        errno::EPERM
    );
    // No credential at all: refused when required, on a peer without
    // kernel credentials (TCP).
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    assert_eq!(errno_of(&c.attach(0).await), errno::EPERM);
    let mut c = start_with(auth_limits(false));
    c.version("9P2000.L").await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    // Out-of-order credential writes are refused.
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    c.rpc(
        1,
        Tmessage::Auth(Tauth {
            afid: 5,
            uname: "u".into(),
            aname: "".into(),
            n_uname: 1,
        }),
    )
    .await;
    let w = Twrite {
        fid: 5,
        offset: 3,
        data: Bytes::from_static(b"x"),
    };
    assert_eq!(errno_of(&c.rpc(2, Tmessage::Write(w)).await), errno::EIO);
}

/// Attaches fid `fid` as `n_uname` without a credential of its own.
async fn named_attach(c: &mut Conn, fid: u32, n_uname: u32) -> Rmessage {
    let a = Tattach {
        fid,
        afid: NOFID,
        uname: "".into(),
        aname: "".into(),
        n_uname,
    };
    c.rpc(4, Tmessage::Attach(a)).await
}

#[tokio::test]
async fn only_a_credential_addressed_here_lets_a_service_name_users() {
    // Root's credential made for this server: later attaches on the
    // connection may name users (the aggregator's per-user attaches).
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    let r = auth_attach(&mut c, 9, &[b"uid=0 to=me"], 0).await;
    assert!(matches!(r, Rmessage::Attach(_)), "{r:?}");
    let r = named_attach(&mut c, 1, 1000).await;
    assert!(matches!(r, Rmessage::Attach(_)), "{r:?}");
    // Addressed to another server: refused outright.
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    let r = auth_attach(&mut c, 9, &[b"uid=0 to=other"], 0).await;
    assert_eq!(errno_of(&r), errno::EPERM);
    // Without a receiver (diod's tools): root for that attach only.
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    let r = auth_attach(&mut c, 9, &[b"uid=0"], 0).await;
    assert!(matches!(r, Rmessage::Attach(_)), "{r:?}");
    assert_eq!(errno_of(&named_attach(&mut c, 1, 1000).await), errno::EPERM);
    // A user's own addressed credential proves only that user.
    let mut c = start_with(auth_limits(true));
    c.version("9P2000.L").await;
    let r = auth_attach(&mut c, 9, &[b"uid=1000 to=me"], 1000).await;
    assert!(matches!(r, Rmessage::Attach(_)), "{r:?}");
    assert_eq!(errno_of(&named_attach(&mut c, 1, 0).await), errno::EPERM);
    assert_eq!(errno_of(&named_attach(&mut c, 2, 1001).await), errno::EPERM);
}

#[tokio::test]
async fn tauth_without_an_authenticator_is_enoent_like_diod() {
    let mut c = start();
    c.version("9P2000.L").await;
    let r = c
        .rpc(
            1,
            Tmessage::Auth(Tauth {
                afid: 5,
                uname: "u".into(),
                aname: "".into(),
                n_uname: 1,
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::ENOENT);
}

#[tokio::test]
async fn the_attach_identity_goes_with_every_fid_walked_from_it() {
    let mut c = start();
    c.version("9P2000.L").await;
    let a = Tattach {
        fid: 0,
        afid: NOFID,
        uname: "u".into(),
        aname: "".into(),
        n_uname: 1000,
    };
    assert!(matches!(
        c.rpc(1, Tmessage::Attach(a)).await,
        Rmessage::Attach(_)
    ));
    assert!(matches!(c.walk(0, 1, &["d", "b"]).await, Rmessage::Walk(_)));
    assert!(matches!(c.walk(1, 2, &[]).await, Rmessage::Walk(_)));
    for fid in [0, 1, 2] {
        let r = c
            .rpc(
                3,
                Tmessage::Getattr(Tgetattr {
                    fid,
                    request_mask: getattr::BASIC,
                }),
            )
            .await;
        assert!(
            matches!(r, Rmessage::Getattr(ref g) if g.attr.uid == 1000),
            "{r:?}"
        );
    }
    // Closed by default: a peer without credentials cannot attach.
    let mut c = start_with(SessionLimits::default());
    c.version("9P2000.L").await;
    assert_eq!(errno_of(&c.attach(0).await), errno::EPERM);
}

impl Conn {
    /// Attaches `fid` as `uid`, believed (the test policy believes claims).
    async fn attach_as(&mut self, fid: u32, uid: u32) -> Rmessage {
        self.rpc(
            1,
            Tmessage::Attach(Tattach {
                fid,
                afid: NOFID,
                uname: String::new(),
                aname: "".into(),
                n_uname: uid,
            }),
        )
        .await
    }
}

/// Finding 8 on one connection that carries many users (the aggregator's
/// to an agent): one identity holding its share of fids and of requests
/// in flight gets EMFILE and EAGAIN; another identity's walks and
/// requests still go through.
#[tokio::test]
async fn one_identity_cannot_take_every_fid_or_request_of_a_connection() {
    let mut c = start_with(SessionLimits {
        max_fids: 16,
        max_fids_per_identity: 4,
        max_in_flight: 16,
        max_in_flight_per_identity: 2,
        ..limits()
    });
    c.version("9P2000.L").await;
    assert!(matches!(c.attach_as(0, 1001).await, Rmessage::Attach(_)));
    assert!(matches!(c.attach_as(100, 1002).await, Rmessage::Attach(_)));
    for fid in 1..4 {
        assert!(matches!(c.walk(0, fid, &["slow"]).await, Rmessage::Walk(_)));
    }
    assert_eq!(errno_of(&c.walk(0, 4, &[]).await), errno::EMFILE);
    for fid in 101..104 {
        assert!(matches!(c.walk(100, fid, &["a"]).await, Rmessage::Walk(_)));
    }
    // A clunk gives the fid back to its identity.
    c.rpc(3, Tmessage::Clunk(Tclunk { fid: 3 })).await;
    assert!(matches!(c.walk(0, 3, &["slow"]).await, Rmessage::Walk(_)));

    // Two slow opens are uid 1001's share of requests in flight.
    for (tag, fid) in [(10, 1), (11, 2)] {
        c.send(tag, Tmessage::Lopen(Tlopen { fid, flags: 0 })).await;
    }
    let getattr = |fid| {
        Tmessage::Getattr(Tgetattr {
            fid,
            request_mask: getattr::BASIC,
        })
    };
    c.send(12, getattr(0)).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (12, errno::EAGAIN));
    // uid 1002 is answered while uid 1001's requests still wait.
    c.send(13, getattr(100)).await;
    let r = c.recv().await.unwrap();
    assert!(
        r.tag == 13 && matches!(&r.msg, Rmessage::Getattr(g) if g.attr.uid == 1002),
        "{r:?}"
    );
    c.release.notify_waiters();
    let mut tags = vec![c.recv().await.unwrap().tag, c.recv().await.unwrap().tag];
    tags.sort();
    assert_eq!(tags, [10, 11]);
}

/// The service identity keeps its reserve: users together stop an eighth
/// short of the connection's fids.
#[tokio::test]
async fn the_service_identity_keeps_its_reserve_of_fids() {
    let mut c = start_with(SessionLimits {
        max_fids: 16,
        max_fids_per_identity: 15,
        ..limits()
    });
    c.version("9P2000.L").await;
    c.attach_as(0, 1001).await;
    for fid in 1..14 {
        assert!(matches!(c.walk(0, fid, &[]).await, Rmessage::Walk(_)));
    }
    assert_eq!(errno_of(&c.walk(0, 14, &[]).await), errno::EMFILE);
    assert_eq!(errno_of(&c.attach_as(50, 1002).await), errno::EMFILE);
    assert!(matches!(c.attach_as(60, 0).await, Rmessage::Attach(_)));
    assert!(matches!(c.walk(60, 61, &["a"]).await, Rmessage::Walk(_)));
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_does_not_attach_is_closed_at_the_deadline() {
    let limits = SessionLimits {
        attach_timeout: Duration::from_secs(5),
        ..limits()
    };
    let mut idle = start_with(limits.clone());
    idle.version("9P2000.L").await;
    let mut busy = start_with(limits);
    busy.version("9P2000.L").await;
    busy.attach(0).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(idle.recv().await.is_none(), "closed without an attach");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(matches!(busy.walk(0, 1, &["a"]).await, Rmessage::Walk(_)));
}

//! The 9P server against hostile clients, over real TCP on 127.0.0.1.
//!
//! Each test starts a [`Server`] serving this machine's `/proc` with a
//! [`ProcFs`] (small limits where the case needs them), opens one
//! well-behaved connection with the real client, then misbehaves on other
//! connections with raw bytes. After every case the well-behaved client
//! must still read files, and a fresh connection must still be served:
//! malformed input costs the request (an error reply for its tag) or the
//! connection that sent it, never the server.
//!
//! Every wait is bounded (`recv` gives up after 5 s), so a server that
//! hangs fails the test instead of hanging it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use gproc::client::{Client, ClientOptions, FidHandle};
use gproc::net::Address;
use gproc::proto::{
    self, Dialect, Frame, NOFID, NOTAG, Qid, Rmessage, Tmessage, Tversion, errno, ty,
};
use gproc::server::AccessPolicy;
use gproc::server::ServerConfig;
use gproc::server::session::SessionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::common::serve_proc;

/// How long any single reply may take before the test fails.
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// A server on 127.0.0.1:0, stopped when dropped.
struct TestServer {
    addr: String,
    shutdown: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A server on loopback. Every client here comes from 127.0.0.1, one
/// principal until it attaches: it may take every slot (these tests are
/// about the server-wide bounds; `fair` tests the shares).
async fn start(limits: SessionLimits, max_connections: usize) -> TestServer {
    let config = ServerConfig {
        limits,
        max_connections,
        max_connections_per_principal: Some(max_connections),
        ..ServerConfig::default()
    };
    let (bound, shutdown) = serve_proc(&Address::Tcp("127.0.0.1:0".into()), config).await;
    let Address::Tcp(addr) = bound else {
        unreachable!("a TCP listener has a TCP address")
    };
    TestServer { addr, shutdown }
}

/// The agent's limits without `--auth`: whoever connects, as whom they say.
fn agent_limits() -> SessionLimits {
    SessionLimits {
        access: AccessPolicy::believing_claims(),
        ..SessionLimits::default()
    }
}

fn small_limits() -> SessionLimits {
    SessionLimits {
        max_msize: 65536,
        max_fids: 64,
        max_in_flight: 16,
        partial_frame_timeout: Duration::from_millis(300),
        ..agent_limits()
    }
}

/// The well-behaved client: a real `Client` attached to the root.
async fn good_client(addr: &str) -> FidHandle {
    let c = Client::connect(
        &Address::Tcp(addr.to_string()),
        ClientOptions {
            request_timeout: REPLY_WAIT,
            connect_timeout: REPLY_WAIT,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("a well-behaved client connects");
    c.attach("root", "", Some(0))
        .await
        .expect("a well-behaved client attaches")
}

/// The server still serves: the long-lived client reads a file and lists
/// the root, and a brand-new connection does too.
async fn assert_serving(addr: &str, root: &FidHandle) {
    let load = root
        .read_all("loadavg")
        .await
        .expect("the well-behaved client still reads");
    assert!(!load.is_empty());
    let ents = root.read_dir("/").await.expect("and still lists");
    assert!(ents.iter().any(|e| e.name == "self"));
    let fresh = good_client(addr).await;
    assert!(!fresh.read_all("uptime").await.unwrap().is_empty());
}

/// A raw connection that sends whatever bytes it is told to.
struct Raw {
    s: TcpStream,
    d: Dialect,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).unwrap();
        Raw {
            s,
            d: Dialect::P2000L,
        }
    }

    /// Connected and `Tversion`ed in `d` with msize 65536.
    async fn ready(addr: &str, d: Dialect) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.d = d;
        let v = r
            .rpc(
                NOTAG,
                Tmessage::Version(Tversion {
                    msize: 65536,
                    version: d.version_string().into(),
                }),
            )
            .await;
        assert!(matches!(v, Rmessage::Version(_)), "{v:?}");
        r
    }

    async fn send_raw(&mut self, b: &[u8]) {
        // A server that already hung up may reset the connection: that is
        // the outcome some tests want, so write errors are not failures.
        let _ = self.s.write_all(b).await;
    }

    async fn send(&mut self, tag: u16, m: Tmessage) {
        let b = Frame { tag, msg: m }.to_bytes(self.d).unwrap();
        self.send_raw(&b).await;
    }

    /// The next reply; `None` when the server closed the connection.
    /// Panics after [`REPLY_WAIT`]: a server must answer or hang up.
    async fn recv(&mut self) -> Option<Frame<Rmessage>> {
        tokio::time::timeout(REPLY_WAIT, self.recv_untimed())
            .await
            .expect("the server neither answered nor closed the connection")
    }

    async fn recv_untimed(&mut self) -> Option<Frame<Rmessage>> {
        let mut hdr = [0u8; 4];
        self.s.read_exact(&mut hdr).await.ok()?;
        let n = u32::from_le_bytes(hdr) as usize;
        assert!((7..=65536).contains(&n), "reply size {n}");
        let mut buf = BytesMut::zeroed(n);
        buf[..4].copy_from_slice(&hdr);
        self.s.read_exact(&mut buf[4..]).await.ok()?;
        Some(Frame::decode(buf.freeze(), self.d).expect("the server sends valid replies"))
    }

    async fn rpc(&mut self, tag: u16, m: Tmessage) -> Rmessage {
        self.send(tag, m).await;
        let r = self.recv().await.expect("connection closed");
        assert_eq!(r.tag, tag);
        r.msg
    }

    /// Writes `out` (many frames) while reading replies, handing each to
    /// `on_reply` until it returns false. Reading while writing matters: a
    /// client that does not read stalls a server that writes.
    async fn burst(&mut self, out: BytesMut, mut on_reply: impl FnMut(Frame<Rmessage>) -> bool) {
        let d = self.d;
        let (mut rd, mut wr) = self.s.split();
        let write = async move { wr.write_all(&out).await.expect("the server reads it all") };
        let read = async move {
            loop {
                let mut hdr = [0u8; 4];
                tokio::time::timeout(REPLY_WAIT, rd.read_exact(&mut hdr))
                    .await
                    .expect("a reply within the deadline")
                    .expect("the connection stays open");
                let n = u32::from_le_bytes(hdr) as usize;
                let mut buf = BytesMut::zeroed(n);
                buf[..4].copy_from_slice(&hdr);
                rd.read_exact(&mut buf[4..]).await.unwrap();
                if !on_reply(Frame::decode(buf.freeze(), d).expect("a valid reply")) {
                    break;
                }
            }
        };
        tokio::join!(write, read);
    }

    /// Whether the server closes the connection (EOF or reset) without
    /// sending anything more.
    async fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 64];
        match tokio::time::timeout(REPLY_WAIT, self.s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => panic!("the server neither answered nor closed the connection"),
        }
    }

    async fn attach(&mut self, fid: u32) -> Rmessage {
        self.rpc(
            1,
            Tmessage::Attach(proto::Tattach {
                fid,
                afid: NOFID,
                uname: "root".into(),
                aname: "".into(),
                n_uname: 0,
            }),
        )
        .await
    }

    async fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Rmessage {
        self.rpc(
            2,
            Tmessage::Walk(proto::Twalk {
                fid,
                newfid,
                wnames: names.iter().map(|s| s.to_string()).collect(),
            }),
        )
        .await
    }

    async fn open(&mut self, fid: u32) -> Rmessage {
        let m = match self.d {
            Dialect::P2000L => Tmessage::Lopen(proto::Tlopen { fid, flags: 0 }),
            _ => Tmessage::Open(proto::Topen {
                fid,
                mode: proto::om::READ,
            }),
        };
        self.rpc(3, m).await
    }

    async fn read(&mut self, fid: u32, offset: u64, count: u32) -> Rmessage {
        self.rpc(4, Tmessage::Read(proto::Tread { fid, offset, count }))
            .await
    }
}

/// The errno of an error reply (any dialect); panics on a success.
fn errno_of(m: &Rmessage) -> u32 {
    match m {
        Rmessage::Lerror(e) => e.ecode,
        Rmessage::Error(e) if e.errno != 0 => e.errno,
        Rmessage::Error(e) => errno::from_string(&e.ename),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Sends a burst of `count` requests and counts the replies that `ok`
/// accepts; every other reply must be EMFILE.
async fn ok_or_emfile(
    c: &mut Raw,
    out: BytesMut,
    count: usize,
    ok: impl Fn(&Rmessage) -> bool,
) -> (usize, usize) {
    let (mut good, mut emfile, mut n) = (0, 0, 0);
    c.burst(out, |f| {
        if ok(&f.msg) {
            good += 1;
        } else {
            assert_eq!(errno_of(&f.msg), errno::EMFILE);
            emfile += 1;
        }
        n += 1;
        n < count
    })
    .await;
    (good, emfile)
}

fn wqids(m: &Rmessage) -> Vec<Qid> {
    match m {
        Rmessage::Walk(w) => w.wqids.clone(),
        other => panic!("expected Rwalk, got {other:?}"),
    }
}

/// A frame with a correct size field around `ty tag body`.
fn raw_frame(t: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(7 + body.len());
    b.extend_from_slice(&(7 + body.len() as u32).to_le_bytes());
    b.push(t);
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// A 9P string with arbitrary (possibly invalid UTF-8) bytes.
fn raw_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_fields_out_of_range_close_only_that_connection() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let cases: &[(&str, &[u8])] = &[
        (
            "4 GiB size field",
            &[0xff, 0xff, 0xff, 0xff, 100, 0xff, 0xff],
        ),
        (
            "size 65537 > msize",
            &[0x01, 0x00, 0x01, 0x00, 100, 0xff, 0xff],
        ),
        ("size 0", &[0, 0, 0, 0]),
        ("size 3", &[3, 0, 0, 0]),
        ("size 6", &[6, 0, 0, 0, 100, 0]),
    ];
    for (what, raw) in cases {
        // Before Tversion (the pre-negotiation limit applies) ...
        let mut c = Raw::connect(&srv.addr).await;
        c.send_raw(raw).await;
        assert!(c.closed_by_server().await, "{what} before Tversion");
        // ... and after it, in every dialect.
        for d in [Dialect::P2000, Dialect::P2000u, Dialect::P2000L] {
            let mut c = Raw::ready(&srv.addr, d).await;
            c.send_raw(raw).await;
            assert!(c.closed_by_server().await, "{what} in {d}");
        }
        assert_serving(&srv.addr, &root).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_frames_that_do_not_decode_fail_only_their_tag() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));

    // Unknown types, R-message types sent as requests, and 9P2000-only
    // requests in .L: EOPNOTSUPP for that tag.
    for (i, t) in [0u8, 6, 99, 101, 107, 200, 255, ty::TOPEN, ty::TSTAT]
        .into_iter()
        .enumerate()
    {
        let tag = 100 + i as u16;
        c.send_raw(&raw_frame(t, tag, &[1, 2, 3])).await;
        let r = c.recv().await.expect("an error reply, not a hang-up");
        assert_eq!(
            (r.tag, errno_of(&r.msg)),
            (tag, errno::EOPNOTSUPP),
            "type {t}"
        );
    }
    // A bare 7-byte header of a known type: truncated body.
    c.send_raw(&raw_frame(ty::TWALK, 7, &[])).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (7, errno::EBADMSG));
    // Trailing bytes after a valid Tclunk.
    c.send_raw(&raw_frame(ty::TCLUNK, 8, &[9, 0, 0, 0, 0xaa]))
        .await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (8, errno::EBADMSG));
    // A Twalk claiming 65535 names in a 17-byte frame.
    c.send_raw(&raw_frame(
        ty::TWALK,
        9,
        &[0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff],
    ))
    .await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (9, errno::EBADMSG));
    // A Twrite whose count claims 4 GiB.
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    body.extend_from_slice(b"abc");
    c.send_raw(&raw_frame(ty::TWRITE, 10, &body)).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (10, errno::EBADMSG));
    // A string length running past the frame (Tattach uname of 60000 bytes).
    let mut body = vec![5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    body.extend_from_slice(&60000u16.to_le_bytes());
    body.extend_from_slice(b"root");
    c.send_raw(&raw_frame(ty::TATTACH, 11, &body)).await;
    let r = c.recv().await.unwrap();
    assert_eq!((r.tag, errno_of(&r.msg)), (11, errno::EBADMSG));

    // The connection that sent all of that still works.
    assert_eq!(wqids(&c.walk(0, 1, &["self"]).await).len(), 1);
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_walk_names_cannot_leave_the_tree() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    for d in [Dialect::P2000, Dialect::P2000u, Dialect::P2000L] {
        let mut c = Raw::ready(&srv.addr, d).await;
        let Rmessage::Attach(a) = c.attach(0).await else {
            panic!("attach")
        };

        // Invalid UTF-8 in a walk name, and in the attach uname.
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        raw_str(&mut body, b"\xff\xfe..");
        c.send_raw(&raw_frame(ty::TWALK, 20, &body)).await;
        let r = c.recv().await.unwrap();
        assert_eq!((r.tag, errno_of(&r.msg)), (20, errno::EBADMSG), "{d}");
        let mut body = Vec::new();
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&NOFID.to_le_bytes());
        raw_str(&mut body, b"r\xc3\x28t");
        raw_str(&mut body, b"");
        if d != Dialect::P2000 {
            body.extend_from_slice(&0u32.to_le_bytes());
        }
        c.send_raw(&raw_frame(ty::TATTACH, 21, &body)).await;
        let r = c.recv().await.unwrap();
        assert_eq!((r.tag, errno_of(&r.msg)), (21, errno::EBADMSG), "{d}");

        // `/`, NUL and empty names are refused, never joined into a path.
        for name in ["../..", "/etc", "1/status", "sys/../..", "", "a\0b"] {
            let r = c.walk(0, 1, &[name]).await;
            assert_eq!(errno_of(&r), errno::ENOENT, "{d}: walk {name:?}");
        }
        // `..` at the root stays at the root, however many times.
        let q = wqids(&c.walk(0, 1, &["..", "..", ".."]).await);
        assert_eq!(q, vec![a.qid; 3], "{d}: .. at the root");
        // ... so /proc's neighbours are unreachable ("etc" is not in /proc).
        let q = wqids(&c.walk(0, 2, &["..", "..", "etc", "passwd"]).await);
        assert_eq!(q.len(), 2, "{d}: a partial walk, and fid 2 unbound");
        assert_eq!(errno_of(&c.read(2, 0, 100).await), errno::EBADF);
        // Symlinks out of the tree are not followed in any dialect
        // (`root` -> `/`, `cwd` -> wherever).
        for link in ["root", "cwd"] {
            let q = wqids(&c.walk(0, 3, &["self", link, "etc", "passwd"]).await);
            assert!(q.len() < 4, "{d}: walked through self/{link}: {q:?}");
        }
        // Opening a link is refused too (fd/N as root would hand out any
        // open file).
        let q = wqids(&c.walk(0, 4, &["1", "root"]).await);
        assert_eq!(q.len(), 2);
        assert_eq!(errno_of(&c.open(4).await), errno::ELOOP, "{d}");
    }
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_walks_fid_reuse_and_unopened_fids_are_errors() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));

    // 17 names (MAXWELEM is 16): an error, and newfid stays unbound.
    let names = vec!["."; 17];
    assert_eq!(errno_of(&c.walk(0, 1, &names).await), errno::EINVAL);
    assert_eq!(errno_of(&c.walk(1, 2, &[]).await), errno::EBADF);
    // 16 is fine.
    assert_eq!(wqids(&c.walk(0, 1, &vec!["."; 16]).await).len(), 16);
    // As many names as fit in msize (about 21000 of 1 byte): refused too.
    let many = vec!["."; 21000];
    assert_eq!(errno_of(&c.walk(0, 5, &many).await), errno::EINVAL);

    // Fid reuse: attach to a bound fid, walk to a bound newfid, NOFID.
    assert_eq!(errno_of(&c.attach(0).await), errno::EBADF);
    assert_eq!(errno_of(&c.walk(0, 1, &["self"]).await), errno::EBADF);
    assert_eq!(errno_of(&c.attach(NOFID).await), errno::EBADF);
    assert_eq!(errno_of(&c.walk(0, NOFID, &[]).await), errno::EBADF);
    // Unknown fids everywhere.
    for m in [
        Tmessage::Walk(proto::Twalk {
            fid: 77,
            newfid: 78,
            wnames: vec![],
        }),
        Tmessage::Lopen(proto::Tlopen { fid: 77, flags: 0 }),
        Tmessage::Getattr(proto::Tgetattr {
            fid: 77,
            request_mask: proto::getattr::ALL,
        }),
        Tmessage::Clunk(proto::Tclunk { fid: 77 }),
        Tmessage::Readlink(proto::Treadlink { fid: 77 }),
        Tmessage::Statfs(proto::Tstatfs { fid: 77 }),
    ] {
        assert_eq!(errno_of(&c.rpc(30, m.clone()).await), errno::EBADF, "{m:?}");
    }

    // Reading an unopened fid, a directory with Tread, a file with
    // Treaddir, writing, opening twice, walking an open fid in place.
    assert_eq!(wqids(&c.walk(0, 2, &["loadavg"]).await).len(), 1);
    assert_eq!(errno_of(&c.read(2, 0, 100).await), errno::EBADF);
    assert_eq!(errno_of(&c.read(1, 0, 100).await), errno::EBADF);
    assert!(matches!(c.open(1).await, Rmessage::Lopen(_)));
    assert_eq!(errno_of(&c.read(1, 0, 100).await), errno::EISDIR);
    assert!(matches!(c.open(2).await, Rmessage::Lopen(_)));
    assert_eq!(errno_of(&c.open(2).await), errno::EBADF);
    let r = c
        .rpc(
            31,
            Tmessage::Readdir(proto::Treaddir {
                fid: 2,
                offset: 0,
                count: 4096,
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::ENOTDIR);
    let r = c
        .rpc(
            32,
            Tmessage::Write(proto::Twrite {
                fid: 2,
                offset: 0,
                data: Bytes::from_static(b"x"),
            }),
        )
        .await;
    assert_eq!(errno_of(&r), errno::EBADF);
    assert_eq!(errno_of(&c.walk(2, 2, &[]).await), errno::EBADF);
    let r = c
        .rpc(
            33,
            Tmessage::Lopen(proto::Tlopen {
                fid: 0,
                flags: 0o1001, // O_WRONLY|O_TRUNC
            }),
        )
        .await;
    assert!(matches!(errno_of(&r), errno::EISDIR | errno::EROFS));
    // Extreme offsets and counts read nothing, or at most msize - 24.
    let Rmessage::Read(r) = c.read(2, u64::MAX, u32::MAX).await else {
        panic!("read at u64::MAX")
    };
    assert!(r.data.is_empty());
    let Rmessage::Read(r) = c.read(2, 0, u32::MAX).await else {
        panic!("read of u32::MAX bytes")
    };
    assert!(!r.data.is_empty() && r.data.len() <= 65536 - 24);
    let r = c
        .rpc(
            34,
            Tmessage::Readdir(proto::Treaddir {
                fid: 1,
                offset: u64::MAX,
                count: u32::MAX,
            }),
        )
        .await;
    assert!(
        matches!(r, Rmessage::Readdir(ref d) if d.data.is_empty()),
        "{r:?}"
    );
    // Clunk twice.
    assert!(matches!(
        c.rpc(35, Tmessage::Clunk(proto::Tclunk { fid: 2 })).await,
        Rmessage::Clunk
    ));
    assert_eq!(
        errno_of(&c.rpc(35, Tmessage::Clunk(proto::Tclunk { fid: 2 })).await),
        errno::EBADF
    );
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_abuse_is_answered() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::connect(&srv.addr).await;
    // Requests before Tversion: EPROTO, decoded as 9P2000.
    c.d = Dialect::P2000;
    let r = c.rpc(5, Tmessage::Clunk(proto::Tclunk { fid: 0 })).await;
    assert_eq!(errno_of(&r), errno::EPROTO);
    let r = c.rpc(6, Tmessage::Stat(proto::Tstat { fid: 0 })).await;
    assert_eq!(errno_of(&r), errno::EPROTO);
    // An msize below 4096 is refused (in the dialect asked for); an
    // unknown version is "unknown".
    c.d = Dialect::P2000L;
    let r = c
        .rpc(
            NOTAG,
            Tmessage::Version(Tversion {
                msize: 100,
                version: "9P2000.L".into(),
            }),
        )
        .await;
    assert!(
        matches!(r, Rmessage::Error(_) | Rmessage::Lerror(_)),
        "{r:?}"
    );
    let r = c
        .rpc(
            NOTAG,
            Tmessage::Version(Tversion {
                msize: 8192,
                version: "9P3000 or so".into(),
            }),
        )
        .await;
    let Rmessage::Version(v) = r else {
        panic!("{r:?}")
    };
    assert_eq!(v.version, "unknown");
    // A huge msize is capped at the server's.
    let Rmessage::Version(v) = c
        .rpc(
            NOTAG,
            Tmessage::Version(Tversion {
                msize: u32::MAX,
                version: "9P2000.L".into(),
            }),
        )
        .await
    else {
        panic!("version")
    };
    assert_eq!(v.msize, 65536);
    // Tversion again with fids bound resets them.
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    let Rmessage::Version(_) = c
        .rpc(
            NOTAG,
            Tmessage::Version(Tversion {
                msize: 8192,
                version: "9P2000.L".into(),
            }),
        )
        .await
    else {
        panic!("version")
    };
    assert_eq!(errno_of(&c.walk(0, 1, &[]).await), errno::EBADF);
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_frame_then_silence_is_closed_after_the_deadline() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    // Half a header, half a body, and a byte-at-a-time trickle that never
    // completes a frame in time: each is closed within two ticks of the
    // 300 ms timer, while the well-behaved client is served meanwhile.
    let mut stalled = Vec::new();
    for prefix in [&[20u8, 0][..], &[20, 0, 0, 0, 104, 1, 0, 0, 0][..]] {
        let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
        c.send_raw(prefix).await;
        stalled.push(c);
    }
    let started = Instant::now();
    assert_serving(&srv.addr, &root).await;
    let mut trickle = Raw::ready(&srv.addr, Dialect::P2000L).await;
    let mut frame = raw_frame(ty::TCLUNK, 1, &[0; 4]);
    frame.extend(raw_frame(ty::TCLUNK, 2, &[0; 200 - 7]));
    let mut closed = false;
    for b in frame {
        trickle.send_raw(&[b]).await;
        let mut buf = [0u8; 64];
        if let Ok(r) =
            tokio::time::timeout(Duration::from_millis(50), trickle.s.read(&mut buf)).await
        {
            match r {
                Ok(0) | Err(_) => {
                    closed = true;
                    break;
                }
                // The first, complete Tclunk is answered.
                Ok(_) => {}
            }
        }
    }
    assert!(closed, "a trickle that never completes its frame is closed");
    for mut c in stalled {
        assert!(c.closed_by_server().await);
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_fids_are_refused_with_emfile() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    // 5000 clones, pipelined: the first 63 bind (the attach holds one of
    // the 64), every other is EMFILE.
    let mut out = BytesMut::new();
    for newfid in 1..=5000u32 {
        Frame {
            tag: (newfid % 60000) as u16,
            msg: Tmessage::Walk(proto::Twalk {
                fid: 0,
                newfid,
                wnames: vec![],
            }),
        }
        .encode(Dialect::P2000L, &mut out)
        .unwrap();
    }
    let (ok, emfile) = ok_or_emfile(&mut c, out, 5000, |m| matches!(m, Rmessage::Walk(_))).await;
    assert_eq!((ok, emfile), (63, 5000 - 63));
    // Clunking one frees a slot.
    assert!(matches!(
        c.rpc(9, Tmessage::Clunk(proto::Tclunk { fid: 1 })).await,
        Rmessage::Clunk
    ));
    assert_eq!(wqids(&c.walk(0, 1, &[]).await).len(), 0);
    assert_eq!(errno_of(&c.walk(0, 6000, &[]).await), errno::EMFILE);
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_tags_in_flight_are_each_answered_once() {
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    // 19998 tags in one burst (16 may run at once): a getattr, a walk that
    // fails, and a Tflush of that walk, over and over.
    let mut out = BytesMut::new();
    let n: u16 = 19998;
    for tag in 0..n {
        let msg = match tag % 3 {
            0 => Tmessage::Getattr(proto::Tgetattr {
                fid: 0,
                request_mask: proto::getattr::BASIC,
            }),
            1 => Tmessage::Walk(proto::Twalk {
                fid: 0,
                newfid: 9,
                wnames: vec!["no-such-file".into()],
            }),
            _ => Tmessage::Flush(proto::Tflush { oldtag: tag - 1 }),
        };
        Frame { tag, msg }
            .encode(Dialect::P2000L, &mut out)
            .unwrap();
    }
    // A flushed walk may go unanswered, but if it is answered, that
    // reply comes before its Rflush (flush(5)); every getattr and every
    // Rflush arrives, each tag at most once. Once every Rflush and every
    // getattr is in, nothing more can come.
    let mut seen = vec![false; n as usize];
    let mut left = (0..n).filter(|t| t % 3 != 1).count();
    c.burst(out, |f| {
        let t = f.tag as usize;
        assert!(!seen[t], "tag {t} answered twice");
        seen[t] = true;
        match t % 3 {
            0 => assert!(matches!(f.msg, Rmessage::Getattr(_)), "{:?}", f.msg),
            1 => {
                assert!(!seen[t + 1], "reply to {t} after its Rflush");
                assert_eq!(errno_of(&f.msg), errno::ENOENT);
            }
            _ => assert!(matches!(f.msg, Rmessage::Flush), "{:?}", f.msg),
        }
        if t % 3 != 1 {
            left -= 1;
        }
        left > 0
    })
    .await;
    // A duplicate tag while the first is (possibly) still running is at
    // worst EBUSY for the second; the connection goes on.
    let dup = Frame {
        tag: 5,
        msg: Tmessage::Getattr(proto::Tgetattr {
            fid: 0,
            request_mask: proto::getattr::BASIC,
        }),
    }
    .to_bytes(Dialect::P2000L)
    .unwrap();
    let mut two = dup.to_vec();
    two.extend_from_slice(&dup);
    c.send_raw(&two).await;
    for _ in 0..2 {
        let r = c.recv().await.unwrap();
        assert_eq!(r.tag, 5);
        if !matches!(r.msg, Rmessage::Getattr(_)) {
            assert_eq!(errno_of(&r.msg), errno::EBUSY);
        }
    }
    assert_eq!(wqids(&c.walk(0, 1, &["self"]).await).len(), 1);
    assert_serving(&srv.addr, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_and_nothing_crashes() {
    let srv = start(small_limits(), 4).await;
    // The well-behaved client holds one of the four slots.
    let root = good_client(&srv.addr).await;
    // Three idle connections take the rest.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Raw::ready(&srv.addr, Dialect::P2000L).await);
    }
    // A fifth connects (the kernel's accept queue takes it) but is not
    // served while every slot is taken.
    let mut waiting = Raw::connect(&srv.addr).await;
    waiting
        .send(
            NOTAG,
            Tmessage::Version(Tversion {
                msize: 8192,
                version: "9P2000.L".into(),
            }),
        )
        .await;
    let mut b = [0u8; 4];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), waiting.s.read_exact(&mut b))
            .await
            .is_err(),
        "served past max_connections"
    );
    // The served client is not disturbed meanwhile.
    assert!(!root.read_all("loadavg").await.unwrap().is_empty());
    // One slot frees: the waiting connection is served.
    drop(idle.pop());
    tokio::time::timeout(REPLY_WAIT, waiting.s.read_exact(&mut b))
        .await
        .expect("served once a slot frees")
        .unwrap();
    drop(waiting);
    drop(idle);

    // 200 clients at once, each doing a whole session: four at a time,
    // all finish.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let addr = srv.addr.clone();
        tasks.spawn(async move {
            let mut c = Raw::ready(&addr, Dialect::P2000L).await;
            assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
            assert_eq!(wqids(&c.walk(0, 1, &["uptime"]).await).len(), 1);
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(r) = tasks.join_next().await {
            r.expect("a client task failed");
        }
    });
    // The long-lived client still holds its slot, so three remain.
    all.await.expect("200 sessions through 3 free slots");
    assert_serving(&srv.addr, &root).await;
}

/// A storm of every kind of hostile session, measured by what the server
/// holds (its gauges), not by this process's memory (noisy under a
/// parallel test run): while it lasts, no connection holds more fids or
/// queued replies than its limits allow, and afterwards everything the
/// storm held is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_holds_stays_bounded_through_a_storm() {
    let limits = small_limits();
    let gauges = limits.gauges.clone();
    let (max_fids, max_in_flight) = (limits.max_fids, limits.max_in_flight);
    let srv = start(limits, 64).await;
    let root = good_client(&srv.addr).await;
    let (fids0, conns0) = (gauges.fids.now(), gauges.connections.now());
    let frames0 = gauges.frames_read();
    for n in [8, 32, 32, 32, 32] {
        storm(&srv.addr, n).await;
        assert_serving(&srv.addr, &root).await;
    }
    // Every walk was read: 2,000 frames on each of 26 connections.
    assert!(gauges.frames_read() - frames0 >= 26 * 2000);
    let conns = gauges.connections.peak();
    // Fids are held by the walking connections (6 of a storm of 32, each
    // up to its limit), by requests running, and by the good client.
    assert!(
        gauges.fids.peak() <= max_fids * 6 + max_in_flight * conns + fids0,
        "{} fids held at once by {conns} connections",
        gauges.fids.peak()
    );
    assert!(
        gauges.queued_replies.peak() <= max_in_flight * conns,
        "{} replies queued at once by {conns} connections",
        gauges.queued_replies.peak()
    );
    // The storm's sessions end as their clients hang up: all they held
    // is given back.
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        while gauges.connections.now() > conns0 + 1 || gauges.fids.now() > fids0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "after the storm: {} connections (before: {conns0}), {} fids (before: {fids0})",
        gauges.connections.now(),
        gauges.fids.now()
    );
    assert_eq!(gauges.queued_replies.now(), 0);
    assert_serving(&srv.addr, &root).await;
}

/// `n` connections of each hostile kind at once.
async fn storm(addr: &str, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let addr = addr.to_string();
        tasks.spawn(async move {
            let mut c = Raw::ready(&addr, Dialect::P2000L).await;
            match i % 5 {
                0 => {
                    c.send_raw(&[0xff, 0xff, 0xff, 0xff, 100, 0, 0]).await;
                    assert!(c.closed_by_server().await);
                }
                1 => {
                    let mut g = vec![0u8; 4096];
                    for (j, b) in g.iter_mut().enumerate() {
                        *b = (j * 7 + i) as u8;
                    }
                    c.send_raw(&g).await;
                }
                2 => {
                    c.attach(0).await;
                    let mut out = BytesMut::new();
                    for f in 1..2000u32 {
                        Frame {
                            tag: f as u16,
                            msg: Tmessage::Walk(proto::Twalk {
                                fid: 0,
                                newfid: f,
                                wnames: vec!["sys".into(), "kernel".into()],
                            }),
                        }
                        .encode(Dialect::P2000L, &mut out)
                        .unwrap();
                    }
                    // Every walk is answered; past the fid limit with an
                    // error.
                    let (mut replies, mut walked) = (0, 0);
                    c.burst(out, |r| {
                        replies += 1;
                        walked +=
                            usize::from(matches!(&r.msg, Rmessage::Walk(w) if w.wqids.len() == 2));
                        replies < 1999
                    })
                    .await;
                    assert!(walked < 64, "{walked} fids walked past the limit of 64");
                }
                3 => {
                    let mut out = BytesMut::new();
                    for t in 0..5000u16 {
                        out.put_slice(&raw_frame(200, t, &[0; 16]));
                    }
                    c.send_raw(&out).await;
                }
                _ => {
                    c.send_raw(&[60, 0, 0, 0, 104, 1, 0]).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("storm task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_replies_is_not_read_either() {
    // Regression (issue 7): replies were queued without bound for a client
    // that sends requests and never reads: every Treaddir of /proc (23
    // bytes) queued a freshly packed reply of 8 KiB, so the server grew by
    // hundreds of MiB a second. Queued replies now count
    // against max_in_flight: once the socket buffers are full the server
    // stops reading that connection.
    //
    // Measured by what the flood got written, not by this process's RSS
    // (noisy under a parallel test run): requests the server did not read
    // can only sit in the client's send and the server's receive buffers,
    // whose kernel maxima bound them; the flood is twice that.
    let srv = start(small_limits(), 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    assert_eq!(wqids(&c.walk(0, 1, &[]).await).len(), 0);
    assert!(matches!(c.open(1).await, Rmessage::Lopen(_)));
    let max_of = |f: &str| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|t| t.split_whitespace().nth(2)?.parse::<u64>().ok())
            .unwrap_or(64 << 20)
    };
    let buffers = max_of("/proc/sys/net/ipv4/tcp_wmem") + max_of("/proc/sys/net/ipv4/tcp_rmem");
    // What the server may read: 16 requests in flight, and those whose
    // 8 KiB replies fit in the buffers the other way (23 bytes each).
    let may_read = 1 << 20;
    let mut frame = BytesMut::new();
    Frame {
        tag: 1,
        msg: Tmessage::Readdir(proto::Treaddir {
            fid: 1,
            offset: 0,
            count: 8192,
        }),
    }
    .encode(Dialect::P2000L, &mut frame)
    .unwrap();
    let frames = (2 * (buffers + may_read)).div_ceil(frame.len() as u64);
    let mut out = BytesMut::with_capacity((frames as usize) * frame.len());
    for i in 0..frames {
        // Tags cycle; the replies are never read, so they never clash.
        let tag = (i % 60000) as u16;
        out.extend_from_slice(&frame);
        let at = out.len() - frame.len() + 5;
        out[at..at + 2].copy_from_slice(&tag.to_le_bytes());
    }
    let (rd, mut wr) = c.s.into_split();
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood = tokio::spawn({
        let written = written.clone();
        async move {
            for chunk in out.chunks(64 << 10) {
                if wr.write_all(chunk).await.is_err() {
                    break;
                }
                written.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            wr
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = written.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        !flood.is_finished(),
        "the server read {frames} requests although nobody reads the replies"
    );
    assert!(
        got <= buffers + may_read + (64 << 10),
        "{got} bytes of requests written: more than the socket buffers ({buffers}) \
         and what the server may read ({may_read}) hold"
    );
    assert_serving(&srv.addr, &root).await;
    flood.abort();
    drop(rd);
}

/// Accepts any credential as uid 0; the test is about bookkeeping.
struct AnyCredential;

impl gproc::auth::Authenticator for AnyCredential {
    fn verify(&self, _cred: &[u8]) -> Result<gproc::auth::Credential, String> {
        Ok(gproc::auth::Credential {
            uid: 0,
            gid: 0,
            receiver: None,
        })
    }

    fn name(&self) -> &'static str {
        "any"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_fids_count_against_the_fid_limit() {
    // Regression (issue 7): with authentication configured, every Tauth
    // bound an auth fid that max_fids did not count, each able to hold a
    // 64 KiB credential: a client could allocate without bound.
    let srv = start(
        SessionLimits {
            access: AccessPolicy {
                verifier: Some(Arc::new(AnyCredential)),
                ..AccessPolicy::believing_claims()
            },
            ..small_limits()
        },
        64,
    )
    .await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    let mut out = BytesMut::new();
    for afid in 1..=5000u32 {
        Frame {
            tag: afid as u16,
            msg: Tmessage::Auth(proto::Tauth {
                afid,
                uname: "root".into(),
                aname: "".into(),
                n_uname: 0,
            }),
        }
        .encode(Dialect::P2000L, &mut out)
        .unwrap();
    }
    let (ok, emfile) = ok_or_emfile(&mut c, out, 5000, |m| matches!(m, Rmessage::Auth(_))).await;
    assert_eq!(
        (ok, emfile),
        (63, 5000 - 63),
        "the attach fid plus 63 afids"
    );
    // Clunking an auth fid frees its slot.
    assert!(matches!(
        c.rpc(9, Tmessage::Clunk(proto::Tclunk { fid: 1 })).await,
        Rmessage::Clunk
    ));
    assert!(matches!(
        c.rpc(
            9,
            Tmessage::Auth(proto::Tauth {
                afid: 1,
                uname: "root".into(),
                aname: "".into(),
                n_uname: 0,
            })
        )
        .await,
        Rmessage::Auth(_)
    ));
    assert_serving(&srv.addr, &root).await;
}

/// Every open snapshots its file whole until clunk, so the bytes one
/// connection holds are charged to a budget (`SessionLimits::
/// snapshot_bytes_per_connection`, 64 MiB by default, 16 MiB here; one
/// file of any size is allowed when nothing else is held). 50 opens of
/// `/proc/kallsyms` (5 MB here) used to hold 265 MB; now the opens past
/// the budget are `EMFILE`, clunking gives the bytes back, and other
/// connections are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_snapshots_are_bounded_per_connection() {
    let limits = SessionLimits {
        snapshot_bytes_per_connection: 16 << 20,
        ..agent_limits()
    };
    let held = limits.snapshot_bytes.clone();
    let srv = start(limits, 64).await;
    let root = good_client(&srv.addr).await;
    let mut c = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(c.attach(0).await, Rmessage::Attach(_)));
    let before = held.used();
    let (mut opened, mut refused) = (Vec::new(), 0);
    for f in 1..=50u32 {
        if wqids(&c.walk(0, f, &["kallsyms"]).await).len() != 1 {
            return; // no kallsyms here
        }
        match c.open(f).await {
            Rmessage::Lopen(_) => opened.push(f),
            e => {
                assert_eq!(errno_of(&e), errno::EMFILE, "{e:?}");
                refused += 1;
            }
        }
    }
    // What the server holds for them: the budget, or one file when one
    // file is more (`kallsyms` is read as the same user here).
    let one = std::fs::read("/proc/kallsyms").map_or(0, |b| b.len());
    let after = held.used() - before;
    assert!(
        after <= (16 << 20).max(one + one / 8),
        "50 opens of /proc/kallsyms hold {after} bytes of snapshots"
    );
    assert!(!opened.is_empty() && refused > 0, "{} opened", opened.len());
    // Another connection is not charged for this one's files.
    let mut other = Raw::ready(&srv.addr, Dialect::P2000L).await;
    assert!(matches!(other.attach(0).await, Rmessage::Attach(_)));
    assert_eq!(wqids(&other.walk(0, 1, &["kallsyms"]).await).len(), 1);
    assert!(matches!(other.open(1).await, Rmessage::Lopen(_)));
    assert_serving(&srv.addr, &root).await;
    // Clunking gives the bytes back: a refused file opens now.
    for f in &opened {
        assert!(matches!(
            c.rpc(5, Tmessage::Clunk(proto::Tclunk { fid: *f })).await,
            Rmessage::Clunk
        ));
    }
    // Only the other connection's file is held now.
    let left = held.used() - before;
    assert!(left <= one + one / 8, "{left} bytes held after the clunks");
    assert_eq!(wqids(&c.walk(0, 60, &["kallsyms"]).await).len(), 1);
    assert!(matches!(c.open(60).await, Rmessage::Lopen(_)));
}

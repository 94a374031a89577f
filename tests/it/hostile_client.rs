//! The 9P client against a hostile node: a fake server on 127.0.0.1 that
//! answers like a normal 9P2000.L/.u server except for the one reply a test
//! makes hostile (a 4 GiB size field, garbage, a wrong reply type, an
//! `Rread` larger than asked, truncated `Rreaddir` entries, stat records
//! whose sizes lie, an endless directory, replies for tags nobody used, a
//! hang-up in the middle of a frame).
//!
//! The client must return an error, never panic, never buffer past its
//! bounds (msize per frame, `max_read_bytes` per file or listing), and fail
//! every pending request at once when the connection dies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gproc::client::{Client, ClientError, ClientOptions, FidHandle, OpenMode};
use gproc::net::Address;
use gproc::proto::{
    self, Dialect, DirEntry, Frame, FrameCodec, NOTAG, Qid, Rmessage, Stat, Tmessage, errno, qt,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;

/// What the fake server does with one request.
enum Out {
    /// The normal reply.
    Normal,
    /// This reply, for the request's tag.
    Msg(Rmessage),
    /// These bytes, as they are.
    Bytes(Vec<u8>),
    /// These bytes, then hang up.
    Close(Vec<u8>),
    /// Nothing.
    Ignore,
}

/// What a hook knows about the connection.
struct Ctx {
    /// The dialect the fake negotiated.
    d: Dialect,
    /// The qid each fid stands for.
    fids: HashMap<u32, Qid>,
}

type Hook = Arc<dyn Fn(&Ctx, u16, &Tmessage) -> Out + Send + Sync>;

const DIR: Qid = Qid {
    ty: qt::DIR,
    version: 0,
    path: 1,
};
const FILE: Qid = Qid {
    ty: qt::FILE,
    version: 0,
    path: 2,
};

/// Starts a fake node; returns its address.
async fn fake(hook: impl Fn(&Ctx, u16, &Tmessage) -> Out + Send + Sync + 'static) -> Address {
    let hook: Hook = Arc::new(hook);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap().to_string());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_fake(s, hook.clone()));
        }
    });
    addr
}

async fn serve_fake(s: tokio::net::TcpStream, hook: Hook) {
    let (rd, mut wr) = s.into_split();
    let mut frames = FramedRead::new(rd, FrameCodec::new(1 << 20));
    let mut ctx = Ctx {
        d: Dialect::P2000L,
        fids: HashMap::new(),
    };
    while let Some(Ok(raw)) = frames.next().await {
        let Ok(f) = Frame::<Tmessage>::decode(raw, ctx.d) else {
            return;
        };
        if let Tmessage::Version(v) = &f.msg {
            ctx.d = Dialect::negotiate(&v.version).unwrap_or(Dialect::P2000);
        }
        let out = match hook(&ctx, f.tag, &f.msg) {
            Out::Normal => Out::Msg(normal_reply(&mut ctx, &f.msg)),
            Out::Msg(m) => {
                // A hostile reply still binds what a normal one would.
                let _ = normal_reply(&mut ctx, &f.msg);
                Out::Msg(m)
            }
            o => o,
        };
        let res = match out {
            Out::Msg(m) => {
                let b = Frame { tag: f.tag, msg: m }.to_bytes(ctx.d).unwrap();
                wr.write_all(&b).await
            }
            Out::Bytes(b) => wr.write_all(&b).await,
            Out::Close(b) => {
                let _ = wr.write_all(&b).await;
                return;
            }
            Out::Ignore | Out::Normal => Ok(()),
        };
        if res.is_err() {
            return;
        }
    }
}

/// What a plain read-only server answers: names starting with `f` are
/// files, everything else a directory; reads and listings are empty.
fn normal_reply(ctx: &mut Ctx, m: &Tmessage) -> Rmessage {
    let err = |e: u32, d: Dialect| match d {
        Dialect::P2000L => Rmessage::Lerror(proto::Rlerror { ecode: e }),
        _ => Rmessage::Error(proto::Rerror {
            ename: errno::to_string(e),
            errno: e,
        }),
    };
    let d = ctx.d;
    let qid_of = |ctx: &Ctx, fid: u32| ctx.fids.get(&fid).copied().unwrap_or(DIR);
    match m {
        Tmessage::Version(v) => Rmessage::Version(proto::Rversion {
            msize: v.msize.min(65536),
            version: d.version_string().into(),
        }),
        Tmessage::Attach(a) => {
            ctx.fids.insert(a.fid, DIR);
            Rmessage::Attach(proto::Rattach { qid: DIR })
        }
        Tmessage::Walk(w) => {
            let wqids: Vec<Qid> = w
                .wnames
                .iter()
                .map(|n| if n.starts_with('f') { FILE } else { DIR })
                .collect();
            let q = wqids.last().copied().unwrap_or(qid_of(ctx, w.fid));
            ctx.fids.insert(w.newfid, q);
            Rmessage::Walk(proto::Rwalk { wqids })
        }
        Tmessage::Lopen(o) => Rmessage::Lopen(proto::Rlopen {
            qid: qid_of(ctx, o.fid),
            iounit: 0,
        }),
        Tmessage::Open(o) => Rmessage::Open(proto::Ropen {
            qid: qid_of(ctx, o.fid),
            iounit: 0,
        }),
        Tmessage::Read(_) => Rmessage::Read(proto::Rread { data: Bytes::new() }),
        Tmessage::Readdir(_) => Rmessage::Readdir(proto::Rreaddir { data: Bytes::new() }),
        Tmessage::Getattr(g) => Rmessage::Getattr(proto::Rgetattr {
            attr: proto::Attr {
                valid: proto::getattr::BASIC,
                qid: qid_of(ctx, g.fid),
                mode: 0o40555,
                ..proto::Attr::default()
            },
        }),
        Tmessage::Stat(s) => Rmessage::Stat(proto::Rstat {
            stat: stat_record("x", qid_of(ctx, s.fid)),
        }),
        Tmessage::Clunk(c) => {
            ctx.fids.remove(&c.fid);
            Rmessage::Clunk
        }
        Tmessage::Flush(_) => Rmessage::Flush,
        _ => err(errno::EOPNOTSUPP, d),
    }
}

fn stat_record(name: &str, qid: Qid) -> Stat {
    Stat {
        qid,
        mode: if qid.is_dir() {
            proto::dm::DIR | 0o555
        } else {
            0o444
        },
        name: name.into(),
        uid: "root".into(),
        gid: "root".into(),
        muid: "root".into(),
        ..Stat::default()
    }
}

fn opts(d: Option<Dialect>) -> ClientOptions {
    ClientOptions {
        msize: 65536,
        dialect: d,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(30),
        max_read_bytes: 1 << 20,
        ..ClientOptions::default()
    }
}

async fn connect(addr: &Address, d: Option<Dialect>) -> Client {
    Client::connect(addr, opts(d)).await.expect("connect")
}

async fn attach_root(addr: &Address, d: Option<Dialect>) -> FidHandle {
    connect(addr, d)
        .await
        .attach("u", "", None)
        .await
        .expect("attach")
}

/// `type[1] tag[2] body` with a correct size field.
fn raw_frame(t: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(7 + body.len());
    b.extend_from_slice(&(7 + body.len() as u32).to_le_bytes());
    b.push(t);
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// The error must be the kind that ends the connection, and the client
/// must say it is closed afterwards.
fn assert_conn_error(e: &ClientError, c: &Client, what: &str) {
    assert!(
        e.is_connection_error(),
        "{what}: expected a connection error, got {e}"
    );
    assert!(c.is_closed(), "{what}: the connection must be closed");
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs `f` with a bound: a client that hangs fails the test.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: the client hung"))
}

#[tokio::test]
async fn hostile_version_replies_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "4 GiB size field",
            vec![0xff, 0xff, 0xff, 0xff, 101, 0xff, 0xff],
        ),
        ("size under 7", vec![3, 0, 0, 0, 101]),
        ("garbage", b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        (
            "msize 100",
            Frame {
                tag: NOTAG,
                msg: Rmessage::Version(proto::Rversion {
                    msize: 100,
                    version: "9P2000.L".into(),
                }),
            }
            .to_bytes(Dialect::P2000L)
            .unwrap()
            .to_vec(),
        ),
        (
            "a version we did not ask for",
            Frame {
                tag: NOTAG,
                msg: Rmessage::Version(proto::Rversion {
                    msize: 8192,
                    version: "9P2000.L".into(),
                }),
            }
            .to_bytes(Dialect::P2000L)
            .unwrap()
            .to_vec(),
        ),
        (
            "invalid UTF-8 version string",
            raw_frame(101, NOTAG, &[0, 32, 0, 0, 3, 0, 0xff, 0xfe, 0xfd]),
        ),
        ("half a frame, then hang up", vec![19, 0, 0, 0, 101, 0xff]),
    ];
    for (what, bytes) in cases {
        let close = what.contains("hang up");
        let addr = fake(move |_, _, m| match m {
            Tmessage::Version(_) if close => Out::Close(bytes.clone()),
            Tmessage::Version(_) => Out::Bytes(bytes.clone()),
            _ => Out::Normal,
        })
        .await;
        // Ask for 9P2000 so "9P2000.L" is a version we did not ask for.
        let r = bounded(what, Client::connect(&addr, opts(Some(Dialect::P2000)))).await;
        let e = r.expect_err(what);
        assert!(
            matches!(e, ClientError::Version { .. } | ClientError::Closed { .. }),
            "{what}: {e}"
        );
    }
    // A server that never answers Tversion: the connect timeout.
    let addr = fake(|_, _, m| match m {
        Tmessage::Version(_) => Out::Ignore,
        _ => Out::Normal,
    })
    .await;
    let started = Instant::now();
    let e = Client::connect(&addr, opts(None)).await.unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Builds the hostile reply for a request's tag.
type ReplyFn = Box<dyn Fn(u16) -> Out + Send + Sync>;

#[tokio::test]
async fn undecodable_or_unexpected_replies_close_the_connection() {
    // Each case answers a walk to "bad" with something hostile.
    let cases: Vec<(&str, ReplyFn)> = vec![
        (
            "4 GiB size field",
            Box::new(|_| Out::Bytes(vec![0xff, 0xff, 0xff, 0xff, 111, 0, 0])),
        ),
        (
            "size over msize",
            Box::new(|_| Out::Bytes(vec![0x01, 0x00, 0x01, 0x00, 111, 0, 0])),
        ),
        (
            "size under 7",
            Box::new(|_| Out::Bytes(vec![2, 0, 0, 0, 0, 0, 0])),
        ),
        (
            "garbage with a plausible size",
            Box::new(|tag| {
                let mut b = raw_frame(111, tag, &[0xff; 40]);
                b.extend_from_slice(&[0xaa; 64]);
                Out::Bytes(b)
            }),
        ),
        (
            "a wrong reply type (Rread to Twalk)",
            Box::new(|_| {
                Out::Msg(Rmessage::Read(proto::Rread {
                    data: Bytes::from_static(b"hello"),
                }))
            }),
        ),
        (
            "an unknown type",
            Box::new(|tag| Out::Bytes(raw_frame(250, tag, &[]))),
        ),
        (
            "an Rwalk with more qids than names",
            Box::new(|_| {
                Out::Msg(Rmessage::Walk(proto::Rwalk {
                    wqids: vec![DIR; 5],
                }))
            }),
        ),
        (
            "a reply for a tag nobody used",
            Box::new(|tag| {
                let mut b = Frame {
                    tag: tag.wrapping_add(1000),
                    msg: Rmessage::Walk(proto::Rwalk { wqids: vec![DIR] }),
                }
                .to_bytes(Dialect::P2000L)
                .unwrap()
                .to_vec();
                // ... and the right reply after it, too late.
                b.extend_from_slice(
                    &Frame {
                        tag,
                        msg: Rmessage::Walk(proto::Rwalk { wqids: vec![DIR] }),
                    }
                    .to_bytes(Dialect::P2000L)
                    .unwrap(),
                );
                Out::Bytes(b)
            }),
        ),
        (
            "a reply with trailing bytes",
            Box::new(|tag| {
                let mut body = 1u16.to_le_bytes().to_vec();
                body.extend_from_slice(&[0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
                body.push(0xee);
                Out::Bytes(raw_frame(111, tag, &body))
            }),
        ),
        (
            "half a frame, then hang up",
            Box::new(|tag| {
                let b = Frame {
                    tag,
                    msg: Rmessage::Walk(proto::Rwalk { wqids: vec![DIR] }),
                }
                .to_bytes(Dialect::P2000L)
                .unwrap();
                Out::Close(b[..b.len() / 2].to_vec())
            }),
        ),
    ];
    let before = rss_kib();
    for (what, reply) in cases {
        let reply = Arc::new(reply);
        let addr = fake(move |_, tag, m| match m {
            Tmessage::Walk(w) if w.wnames.first().is_some_and(|n| n == "bad") => reply(tag),
            _ => Out::Normal,
        })
        .await;
        let root = attach_root(&addr, None).await;
        let client = root.client().clone();
        let started = Instant::now();
        let e = bounded(what, root.walk("bad")).await.unwrap_err();
        assert_conn_error(&e, &client, what);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: the failure took {:?}",
            started.elapsed()
        );
        // Every later call fails at once with the same cause.
        let e2 = bounded(what, root.walk("ok")).await.unwrap_err();
        assert!(e2.is_connection_error(), "{what}: {e2}");
    }
    let after = rss_kib();
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn an_rread_larger_than_asked_is_a_protocol_error() {
    let addr = fake(|_, _, m| match m {
        Tmessage::Read(r) => Out::Msg(Rmessage::Read(proto::Rread {
            data: Bytes::from(vec![b'x'; r.count as usize + 1]),
        })),
        _ => Out::Normal,
    })
    .await;
    let root = attach_root(&addr, None).await;
    let mut f = root.walk("file").await.unwrap();
    f.open(OpenMode::Read).await.unwrap();
    let e = bounded("read_at", f.read_at(0, 10)).await.unwrap_err();
    assert!(matches!(e, ClientError::Protocol { .. }), "{e}");
    assert_conn_error(&e, root.client(), "Rread larger than asked");

    // An Rread whose count field claims more than the frame holds.
    let addr = fake(|_, tag, m| match m {
        Tmessage::Read(_) => {
            let mut body = 60000u32.to_le_bytes().to_vec();
            body.extend_from_slice(b"short");
            Out::Bytes(raw_frame(117, tag, &body))
        }
        _ => Out::Normal,
    })
    .await;
    let root = root_of(&addr).await;
    let e = bounded("read_all", root.read_all("file"))
        .await
        .unwrap_err();
    assert_conn_error(&e, root.client(), "Rread count past the frame");
}

async fn root_of(addr: &Address) -> FidHandle {
    attach_root(addr, None).await
}

/// Entries of an `Rreaddir` payload.
fn dirents(names: &[&str], first_cookie: u64) -> BytesMut {
    let mut b = BytesMut::new();
    for (i, n) in names.iter().enumerate() {
        DirEntry {
            qid: DIR,
            offset: first_cookie + i as u64 + 1,
            ty: 4,
            name: (*n).into(),
        }
        .encode_to(&mut b)
        .unwrap();
    }
    b
}

#[tokio::test]
async fn malformed_directory_entries_are_errors() {
    // Truncated in the middle of an entry, a name length past the end, an
    // entry with invalid UTF-8, and a cookie that never advances.
    let whole = dirents(&["a", "bb", "ccc"], 0);
    let mut bad_utf8 = dirents(&["a"], 0);
    let n = bad_utf8.len();
    bad_utf8[n - 1] = 0xff;
    let mut past_end = dirents(&["a"], 0).to_vec();
    let l = past_end.len();
    past_end[l - 3] = 0xff; // name length 255, one byte left
    let cases: Vec<(&str, Bytes)> = vec![
        (
            "truncated entry",
            whole.clone().freeze().slice(..whole.len() - 5),
        ),
        ("header only", whole.clone().freeze().slice(..10)),
        ("name length past the end", Bytes::from(past_end)),
        ("invalid UTF-8 name", bad_utf8.freeze()),
        ("a cookie that does not advance", {
            let mut b = BytesMut::new();
            DirEntry {
                qid: DIR,
                offset: 0,
                ty: 4,
                name: "loop".into(),
            }
            .encode_to(&mut b)
            .unwrap();
            b.freeze()
        }),
    ];
    for (what, payload) in cases {
        let addr = fake(move |_, _, m| match m {
            Tmessage::Readdir(_) => Out::Msg(Rmessage::Readdir(proto::Rreaddir {
                data: payload.clone(),
            })),
            _ => Out::Normal,
        })
        .await;
        let root = root_of(&addr).await;
        let e = bounded(what, root.read_dir("d")).await.unwrap_err();
        assert!(matches!(e, ClientError::Protocol { .. }), "{what}: {e}");
        // The entries were bad, not the framing: other requests still work.
        if !root.client().is_closed() {
            let _ = root.walk("d").await.expect("the connection still serves");
        }
    }
}

#[tokio::test]
async fn stat_records_whose_sizes_lie_are_errors() {
    for d in [Dialect::P2000, Dialect::P2000u] {
        let rec = {
            let mut b = BytesMut::new();
            stat_record("entry", DIR).encode_to(d, &mut b).unwrap();
            b
        };
        let mut lies: Vec<(&str, Vec<u8>)> = Vec::new();
        // The record's size[2] claims more than there is.
        let mut v = rec.to_vec();
        v[0] = v[0].wrapping_add(40);
        lies.push(("size past the end", v));
        // The record's size[2] claims less than its fixed fields.
        let mut v = rec.to_vec();
        v[0] = 10;
        v[1] = 0;
        lies.push(("size under the fixed fields", v));
        // A string length inside the record runs past the record.
        let mut v = rec.to_vec();
        v[2 + 2 + 4 + 13 + 4 + 4 + 4 + 8] = 0xf0; // name length
        lies.push(("name past the record", v));
        // Two records, the second cut short.
        let mut v = rec.to_vec();
        v.extend_from_slice(&rec[..20]);
        lies.push(("second record cut", v));
        for (what, payload) in lies {
            // As a directory read ...
            let p = Bytes::from(payload.clone());
            let sent = Arc::new(AtomicUsize::new(0));
            let s2 = sent.clone();
            let addr = fake(move |_, _, m| match m {
                Tmessage::Read(_) if s2.fetch_add(1, Ordering::SeqCst) == 0 => {
                    Out::Msg(Rmessage::Read(proto::Rread { data: p.clone() }))
                }
                _ => Out::Normal,
            })
            .await;
            let root = attach_root(&addr, Some(d)).await;
            let e = bounded(what, root.read_dir("d")).await.unwrap_err();
            assert!(matches!(e, ClientError::Protocol { .. }), "{d} {what}: {e}");

            // ... and as an Rstat, with the outer n[2] lying too.
            let payload2 = payload.clone();
            let addr = fake(move |_, tag, m| match m {
                Tmessage::Stat(_) => {
                    let mut body = (payload2.len() as u16 + 7).to_le_bytes().to_vec();
                    body.extend_from_slice(&payload2);
                    Out::Bytes(raw_frame(125, tag, &body))
                }
                _ => Out::Normal,
            })
            .await;
            let root = attach_root(&addr, Some(d)).await;
            let e = bounded(what, root.metadata("file")).await.unwrap_err();
            assert!(
                matches!(e, ClientError::Protocol { .. }),
                "{d} Rstat {what}: {e}"
            );
        }
    }
}

#[tokio::test]
async fn huge_listings_and_files_stop_at_max_read_bytes() {
    // An endless .L directory: every Treaddir gets a full reply with
    // cookies that advance.
    let addr = fake(|_, _, m| match m {
        Tmessage::Readdir(r) => {
            // About 14 KiB of entries per reply, cookies always advancing.
            let names: Vec<String> = (0..200)
                .map(|i| format!("n{i:05}-{}", "x".repeat(40)))
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            Out::Msg(Rmessage::Readdir(proto::Rreaddir {
                data: dirents(&refs, r.offset).freeze(),
            }))
        }
        Tmessage::Read(r) => Out::Msg(Rmessage::Read(proto::Rread {
            data: Bytes::from(vec![b'y'; r.count as usize]),
        })),
        _ => Out::Normal,
    })
    .await;
    let before = rss_kib();
    let root = root_of(&addr).await;
    let started = Instant::now();
    let e = bounded("endless readdir", root.read_dir("d"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::TooLarge { limit, .. } if limit == 1 << 20),
        "{e}"
    );
    // An endless file: read_all stops at the limit too.
    let e = bounded("endless file", root.read_all("file"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::TooLarge { .. }), "{e}");
    // And an explicit smaller limit is honoured.
    let e = bounded("limited", root.read_all_limited("file", 4096))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::TooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // These are per-request errors: the connection goes on.
    let _ = root.walk("d").await.expect("the connection still serves");
    assert!(rss_kib() < before + 64 * 1024);

    // The same in 9P2000: a directory read that never ends.
    let addr = fake(|ctx, _, m| match m {
        Tmessage::Read(r) => {
            let mut b = BytesMut::new();
            let mut i = 0;
            loop {
                let st = stat_record(&format!("e{i}"), DIR);
                if b.len() + st.size(ctx.d) > r.count as usize {
                    break;
                }
                st.encode_to(ctx.d, &mut b).unwrap();
                i += 1;
            }
            Out::Msg(Rmessage::Read(proto::Rread { data: b.freeze() }))
        }
        _ => Out::Normal,
    })
    .await;
    let root = attach_root(&addr, Some(Dialect::P2000)).await;
    let e = bounded("endless 9P2000 dir", root.read_dir("d"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::TooLarge { .. }), "{e}");
}

#[tokio::test]
async fn pending_requests_fail_at_once_when_the_connection_dies() {
    // The first two reads are never answered; the third gets half a reply
    // and the server hangs up. All three fail at once, long before the
    // 30 s request timeout.
    let reads = Arc::new(AtomicUsize::new(0));
    let r2 = reads.clone();
    let addr = fake(move |_, tag, m| match m {
        Tmessage::Read(_) => {
            if r2.fetch_add(1, Ordering::SeqCst) < 2 {
                Out::Ignore
            } else {
                let mut b = raw_frame(117, tag, &[100, 0, 0, 0]);
                b.extend_from_slice(&[b'z'; 30]);
                b[0] = 111; // size claims 111 bytes; 41 are sent
                Out::Close(b)
            }
        }
        _ => Out::Normal,
    })
    .await;
    let root = root_of(&addr).await;
    let mut f = root.walk("file").await.unwrap();
    f.open(OpenMode::Read).await.unwrap();
    let f = Arc::new(f);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3u64 {
        let f = f.clone();
        tasks.spawn(async move {
            if i == 2 {
                // Let the first two be in flight first.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            f.read_at(i * 10, 10).await
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = bounded("pending reads", tasks.join_next()).await {
        errors.push(r.unwrap().unwrap_err());
    }
    assert_eq!(errors.len(), 3);
    for e in &errors {
        assert!(matches!(e, ClientError::Closed { .. }), "{e}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "pending requests took {:?} to fail",
        started.elapsed()
    );
    assert!(root.client().is_closed());
    // Later calls fail at once too.
    let e = bounded("after death", root.walk("x")).await.unwrap_err();
    assert!(e.is_connection_error(), "{e}");
}

#[tokio::test]
async fn random_replies_never_panic_the_client() {
    // Deterministic pseudo-random bodies with valid headers for every
    // reply type, answered to a walk: an error every time, never a panic
    // or a hang.
    let seed = Arc::new(Mutex::new(0x9e37_79b9_7f4a_7c15u64));
    let next = move || {
        let mut s = seed.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    };
    let next = Arc::new(next);
    for t in (0u8..=255).step_by(3) {
        let n2 = next.clone();
        let addr = fake(move |_, tag, m| match m {
            Tmessage::Walk(w) if !w.wnames.is_empty() => {
                let len = (n2() % 64) as usize;
                let body: Vec<u8> = (0..len).map(|_| n2() as u8).collect();
                Out::Bytes(raw_frame(t, tag, &body))
            }
            _ => Out::Normal,
        })
        .await;
        let root = root_of(&addr).await;
        let r = bounded("random reply", root.walk("x")).await;
        // A random body can happen to be a valid Rwalk or an error.
        if let Err(e) = r {
            let _ = e.to_string();
        }
    }
}

#[tokio::test]
async fn files_read_ahead_are_byte_identical_through_short_reads() {
    // Large files are read with several reads in flight at offsets that
    // assume whole messages. A server may answer any read short (read(5));
    // the file must still come back exactly, whatever the size.
    let io = 65536 - proto::IOHDRSZ as usize;
    let sizes = [0, 1, io - 1, io, io + 1, 4 * io, 4 * io + 5, 9 * io + 7];
    for short_every in [0u64, 2, 3, 5] {
        for &size in &sizes {
            let content: Arc<Vec<u8>> = Arc::new((0..size).map(|i| (i * 31 % 251) as u8).collect());
            let c = content.clone();
            let reads = Arc::new(AtomicUsize::new(0));
            let r2 = reads.clone();
            let addr = fake(move |_, _, m| match m {
                Tmessage::Read(r) => {
                    r2.fetch_add(1, Ordering::SeqCst);
                    let start = (r.offset as usize).min(c.len());
                    let mut n = (r.count as usize).min(c.len() - start);
                    // Short at some offsets (a function of the offset, so
                    // the answer does not depend on the order of reads).
                    if short_every > 0 && (r.offset / 1000) % short_every == 0 && n > 1 {
                        n = n / 2 + 1;
                    }
                    Out::Msg(Rmessage::Read(proto::Rread {
                        data: Bytes::copy_from_slice(&c[start..start + n]),
                    }))
                }
                _ => Out::Normal,
            })
            .await;
            let root = root_of(&addr).await;
            let got = bounded("read ahead", root.read_all_limited("file", 1 << 30))
                .await
                .unwrap_or_else(|e| panic!("size {size}, short every {short_every}: {e}"));
            assert!(
                got[..] == content[..],
                "size {size}, short every {short_every}: {} bytes back, first difference at {:?}",
                got.len(),
                got.iter().zip(content.iter()).position(|(a, b)| a != b)
            );
            if size < io && short_every == 0 {
                // A small file is one read and the empty one after it.
                assert_eq!(reads.load(Ordering::SeqCst), if size == 0 { 1 } else { 2 });
            }
            // A file past the limit still stops at the limit.
            if size > 2 * io {
                let e = bounded("limited", root.read_all_limited("file", 2 * io as u64))
                    .await
                    .unwrap_err();
                assert!(matches!(e, ClientError::TooLarge { .. }), "{e}");
                let _ = root.walk("d").await.expect("the connection still serves");
            }
        }
    }
}

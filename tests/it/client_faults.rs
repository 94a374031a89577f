//! The client against servers that misbehave on purpose: silent, slow to
//! flush, hanging up mid-reply, sending garbage, unknown tags, oversized
//! frames, wrong reply types, odd version answers, and random bytes.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use gproc::client::{Client, ClientError, ClientOptions};
use gproc::net::Address;
use gproc::proto::{self, Dialect, Frame, FrameCodec, NOTAG, Qid, Rmessage, Tmessage, errno, qt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

/// How the fake server treats a `Twalk` to anything but `ok`.
#[derive(Clone)]
enum Mode {
    /// Never answers; answers Tflush with Rflush.
    Hang,
    /// Answers the walk only when flushed, before the Rflush (flush(5)
    /// allows it), so the client must clunk the fid the walk bound.
    LateReply,
    /// After three walks, sends half a reply and hangs up.
    CloseMidReply,
    /// Sends bytes that are no 9P message.
    Garbage,
    /// Answers with a tag nobody used.
    UnknownTag,
    /// Sends a frame header claiming 1 GiB.
    HugeSize,
    /// Answers a walk with an Rread.
    WrongType,
    /// Answers Tversion with this message (and nothing else).
    Version(Rmessage),
    /// Never answers Tversion.
    Mute,
}

fn dir_qid() -> Qid {
    Qid {
        ty: qt::DIR,
        version: 0,
        path: 1,
    }
}

fn frame(tag: u16, msg: Rmessage) -> Bytes {
    Frame { tag, msg }.to_bytes(Dialect::P2000L).unwrap()
}

/// Runs the fake server on one connection; every request it gets is
/// forwarded to `seen`.
async fn serve_fake<S>(sock: S, mode: Mode, seen: mpsc::UnboundedSender<Frame<Tmessage>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, mut wr) = tokio::io::split(sock);
    let mut frames = FramedRead::new(rd, FrameCodec::new(1 << 20));
    let mut hung: Vec<(u16, proto::Twalk)> = Vec::new();
    while let Some(Ok(f)) = frames.next().await {
        let Ok(f) = Frame::<Tmessage>::decode(f, Dialect::P2000L) else {
            return;
        };
        let _ = seen.send(f.clone());
        let tag = f.tag;
        let out: Bytes = match f.msg {
            Tmessage::Version(v) => match &mode {
                Mode::Version(m) => frame(NOTAG, m.clone()),
                Mode::Mute => continue,
                _ => frame(
                    NOTAG,
                    Rmessage::Version(proto::Rversion {
                        msize: v.msize.min(65536),
                        version: "9P2000.L".into(),
                    }),
                ),
            },
            Tmessage::Attach(_) => frame(tag, Rmessage::Attach(proto::Rattach { qid: dir_qid() })),
            Tmessage::Clunk(_) => frame(tag, Rmessage::Clunk),
            Tmessage::Flush(fl) => {
                let mut b = BytesMut::new();
                if let Mode::LateReply = mode
                    && let Some(i) = hung.iter().position(|(t, _)| *t == fl.oldtag)
                {
                    let (t, w) = hung.remove(i);
                    let wqids = w.wnames.iter().map(|_| dir_qid()).collect();
                    b.extend_from_slice(&frame(t, Rmessage::Walk(proto::Rwalk { wqids })));
                }
                b.extend_from_slice(&frame(tag, Rmessage::Flush));
                b.freeze()
            }
            Tmessage::Walk(w) if w.wnames == ["ok"] => frame(
                tag,
                Rmessage::Walk(proto::Rwalk {
                    wqids: vec![dir_qid()],
                }),
            ),
            Tmessage::Walk(w) => match &mode {
                Mode::Hang | Mode::LateReply => {
                    hung.push((tag, w));
                    continue;
                }
                Mode::CloseMidReply => {
                    hung.push((tag, w));
                    if hung.len() < 3 {
                        continue;
                    }
                    let full = frame(tag, Rmessage::Walk(proto::Rwalk { wqids: vec![] }));
                    let _ = wr.write_all(&full[..5]).await;
                    let _ = wr.flush().await;
                    return;
                }
                Mode::Garbage => {
                    let mut b = BytesMut::new();
                    b.put_u32_le(11);
                    b.put_u8(0xEE); // no such message type
                    b.put_u16_le(tag);
                    b.put_slice(b"junk");
                    b.freeze()
                }
                Mode::UnknownTag => frame(
                    tag ^ 0x4000,
                    Rmessage::Walk(proto::Rwalk {
                        wqids: vec![dir_qid()],
                    }),
                ),
                Mode::HugeSize => {
                    let mut b = BytesMut::new();
                    b.put_u32_le(1 << 30);
                    b.put_u8(111);
                    b.put_u16_le(tag);
                    b.freeze()
                }
                Mode::WrongType => frame(
                    tag,
                    Rmessage::Read(proto::Rread {
                        data: Bytes::from_static(b"x"),
                    }),
                ),
                Mode::Version(_) | Mode::Mute => continue,
            },
            _ => frame(tag, Rmessage::Lerror(proto::Rlerror { ecode: errno::EIO })),
        };
        if wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A fake server on 127.0.0.1 serving one connection.
async fn fake(mode: Mode) -> (Address, mpsc::UnboundedReceiver<Frame<Tmessage>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: Address = l.local_addr().unwrap().to_string().parse().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        if let Ok((s, _)) = l.accept().await {
            serve_fake(s, mode, tx).await;
        }
    });
    (addr, rx)
}

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
}

/// Waits (bounded) for the first request matching `f`.
async fn expect_seen<T>(
    rx: &mut mpsc::UnboundedReceiver<Frame<Tmessage>>,
    mut f: impl FnMut(&Frame<Tmessage>) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let m = rx.recv().await.expect("fake server ended");
            if let Some(t) = f(&m) {
                return t;
            }
        }
    })
    .await
    .expect("the fake server never saw the expected request")
}

#[tokio::test]
async fn timeout_sends_tflush_for_the_right_tag() {
    let (addr, mut seen) = fake(Mode::Hang).await;
    let c = Client::connect(&addr, opts()).await.unwrap();
    let root = c.attach("u", "", None).await.unwrap();
    let e = root.walk("slow").await.unwrap_err();
    assert!(matches!(e, ClientError::Timeout { op: "walk", .. }), "{e}");
    assert_eq!(e.errno(), errno::ETIMEDOUT);
    assert_eq!(
        e.to_string(),
        format!("{addr} /slow: walk timed out after 300ms")
    );
    let walk_tag = expect_seen(&mut seen, |f| match &f.msg {
        Tmessage::Walk(w) if w.wnames == ["slow"] => Some(f.tag),
        _ => None,
    })
    .await;
    let flushed = expect_seen(&mut seen, |f| match &f.msg {
        Tmessage::Flush(fl) => Some(fl.oldtag),
        _ => None,
    })
    .await;
    assert_eq!(flushed, walk_tag);
    // One slow request does not break the connection.
    assert!(!c.is_closed());
    // Flushed before it answered, the walk bound nothing: once Rflush is
    // in, its fid number is free again (and its tag too).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hung_fid = 1; // fid 0 is the attach
    let h = root.walk("ok").await.unwrap();
    assert_eq!(h.fid(), hung_fid);
}

#[tokio::test]
async fn close_fails_pending_requests() {
    let (addr, _seen) = fake(Mode::Hang).await;
    let mut o = opts();
    o.request_timeout = Duration::from_secs(3);
    let c = Client::connect(&addr, o).await.unwrap();
    let root = c.attach("u", "", None).await.unwrap();
    let c2 = c.clone();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c2.close();
    });
    let e = root.walk("slow").await.unwrap_err();
    assert!(matches!(e, ClientError::Closed { .. }), "{e}");
    assert!(e.to_string().contains("closed by the client"), "{e}");
    closer.await.unwrap();
}

#[tokio::test]
async fn dropped_request_is_flushed_and_a_late_fid_clunked() {
    let (addr, mut seen) = fake(Mode::LateReply).await;
    let c = Client::connect(&addr, opts()).await.unwrap();
    let root = c.attach("u", "", None).await.unwrap();
    // Cancel by dropping the future rather than by timeout.
    let r = tokio::time::timeout(Duration::from_millis(100), root.walk("late")).await;
    assert!(r.is_err());
    let newfid = expect_seen(&mut seen, |f| match &f.msg {
        Tmessage::Walk(w) if w.wnames == ["late"] => Some(w.newfid),
        _ => None,
    })
    .await;
    expect_seen(&mut seen, |f| {
        matches!(f.msg, Tmessage::Flush(_)).then_some(())
    })
    .await;
    // The reply arrived before Rflush and bound newfid: it must be clunked.
    let clunked = expect_seen(&mut seen, |f| match &f.msg {
        Tmessage::Clunk(cl) => Some(cl.fid),
        _ => None,
    })
    .await;
    assert_eq!(clunked, newfid);
    assert!(!c.is_closed());
    let _ = root.walk("ok").await.unwrap();
}

#[tokio::test]
async fn hangup_mid_reply_fails_every_pending_request() {
    let (addr, _seen) = fake(Mode::CloseMidReply).await;
    let mut o = opts();
    o.request_timeout = Duration::from_secs(3);
    let c = Client::connect(&addr, o).await.unwrap();
    let root = c.attach("u", "", None).await.unwrap();
    let (a, b, d) = tokio::join!(root.walk("a"), root.walk("b"), root.walk("c"));
    for r in [a, b, d] {
        let e = r.unwrap_err();
        assert!(matches!(e, ClientError::Closed { .. }), "{e}");
        assert!(e.to_string().starts_with(&addr.to_string()), "{e}");
        assert!(e.to_string().contains("middle of a message"), "{e}");
    }
    assert!(c.is_closed());
    // Later calls fail at once with the same error.
    let t = std::time::Instant::now();
    let e = root.walk("ok").await.unwrap_err();
    assert!(matches!(e, ClientError::Closed { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_millis(100));
    assert!(matches!(c.closed_error(), Some(ClientError::Closed { .. })));
}

async fn protocol_error_for(mode: Mode, needle: &str) {
    let (addr, _seen) = fake(mode).await;
    let mut o = opts();
    o.request_timeout = Duration::from_secs(3);
    let c = Client::connect(&addr, o).await.unwrap();
    let root = c.attach("u", "", None).await.unwrap();
    let e = root.walk("x").await.unwrap_err();
    assert!(matches!(e, ClientError::Protocol { .. }), "{e}");
    assert_eq!(e.errno(), errno::EPROTO);
    let s = e.to_string();
    assert!(s.starts_with(&format!("{addr}: protocol error")), "{s}");
    assert!(s.contains(needle), "{s}");
    assert!(c.is_closed());
    let again = root.walk("ok").await.unwrap_err();
    assert_eq!(again.to_string(), s);
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    protocol_error_for(Mode::Garbage, "undecodable").await;
}

#[tokio::test]
async fn unknown_tag_is_a_protocol_error() {
    protocol_error_for(Mode::UnknownTag, "no request uses").await;
}

#[tokio::test]
async fn oversized_frame_is_a_protocol_error() {
    protocol_error_for(Mode::HugeSize, "exceeds msize 65536").await;
}

#[tokio::test]
async fn wrong_reply_type_is_a_protocol_error() {
    protocol_error_for(
        Mode::WrongType,
        "reply of type 117 to a request of type 110",
    )
    .await;
}

async fn version_error(reply: Rmessage, dialect: Option<Dialect>) -> ClientError {
    let (addr, _seen) = fake(Mode::Version(reply)).await;
    let mut o = opts();
    o.dialect = dialect;
    let e = Client::connect(&addr, o).await.unwrap_err();
    assert!(e.to_string().starts_with(&addr.to_string()), "{e}");
    e
}

fn rversion(msize: u32, v: &str) -> Rmessage {
    Rmessage::Version(proto::Rversion {
        msize,
        version: v.into(),
    })
}

#[tokio::test]
async fn version_answers() {
    // diod answers versions it does not speak with Rlerror.
    let e = version_error(Rmessage::Lerror(proto::Rlerror { ecode: errno::EIO }), None).await;
    assert!(matches!(e, ClientError::Version { .. }), "{e}");
    assert!(e.to_string().contains("refused 9P2000.L: i/o error"), "{e}");
    let e = version_error(rversion(8192, "unknown"), None).await;
    assert!(matches!(e, ClientError::Version { .. }), "{e}");
    let e = version_error(rversion(8192, "styx"), None).await;
    assert!(matches!(e, ClientError::Version { .. }), "{e}");
    let e = version_error(rversion(512, "9P2000.L"), None).await;
    assert!(e.to_string().contains("msize 512"), "{e}");
    // A server may not answer higher than asked.
    let e = version_error(rversion(8192, "9P2000.L"), Some(Dialect::P2000)).await;
    assert!(matches!(e, ClientError::Version { .. }), "{e}");

    // A lower answer is accepted and used.
    let (addr, _seen) = fake(Mode::Version(rversion(8192, "9P2000.u"))).await;
    let c = Client::connect(&addr, opts()).await.unwrap();
    assert_eq!(c.dialect(), Dialect::P2000u);
    assert_eq!(c.msize(), 8192);

    // Silence is a timeout naming the step.
    let (addr, _seen) = fake(Mode::Mute).await;
    let e = Client::connect(&addr, opts()).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Timeout { op: "version", .. }),
        "{e}"
    );
}

/// Tiny deterministic generator, so a failure is reproducible by seed.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[tokio::test]
async fn random_bytes_never_panic() {
    for seed in 1..=300u64 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let (client_io, mut server_io) = tokio::io::duplex(1 << 16);
        let mut junk = BytesMut::new();
        junk.extend_from_slice(&frame(NOTAG, rversion(8192, "9P2000.L")));
        let n = (xorshift(&mut s) % 200) as usize;
        // Mostly plausible headers with small sizes, then random bodies.
        let size = 7 + (xorshift(&mut s) % 64) as u32;
        junk.put_u32_le(if seed % 5 == 0 {
            xorshift(&mut s) as u32
        } else {
            size
        });
        junk.put_u8([105, 111, 7, 117, 25, 41, 0xff][(seed % 7) as usize]);
        junk.put_u16_le((xorshift(&mut s) % 4) as u16);
        for _ in 0..n {
            junk.put_u8(xorshift(&mut s) as u8);
        }
        // The bytes, then EOF: the client must end with an error either way.
        let writer = tokio::spawn(async move {
            let _ = server_io.write_all(&junk).await;
        });
        if let Ok(c) = Client::handshake(client_io, format!("fuzz{seed}"), opts()).await {
            let r = c.attach("u", "", None).await;
            if let Err(e) = r {
                assert!(e.to_string().starts_with(&format!("fuzz{seed}")), "{e}");
            }
        }
        writer.await.unwrap();
    }
}

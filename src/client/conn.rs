//! The machinery of one 9P connection: version negotiation, tag and fid
//! allocation, the table of requests in flight, one reader task routing
//! replies by tag, one writer task batching requests, flush on
//! cancellation, and failing everything at once when the connection dies.
//!
//! All bookkeeping sits behind one `std::sync::Mutex` that is never held
//! across `.await`: every critical section is a few map operations and a
//! non-blocking channel send. The reader delivers replies under that lock
//! and a cancelled request gives up its tag under it, so "reply arrived"
//! and "caller gave up" can never both win.
//!
//! Tags and fids follow flush(5) and walk(5):
//! - a tag is never NOTAG, never one in flight, and never one whose
//!   `Tflush` is unanswered: it stays reserved until `Rflush`;
//! - a request dropped or timed out sends `Tflush(oldtag)`; if its reply
//!   still arrives and bound a new fid (walk, attach), that fid is clunked;
//! - a fid is never NOFID and is reused only after its `Rclunk` (or after a
//!   failed walk/attach, which bound nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ClientOptions;
use super::error::ClientError;
use crate::proto::{
    self, Dialect, Frame, MIN_MSIZE, Message, NOFID, NOTAG, Rmessage, Tmessage, errno, frame_size,
};
use crate::sys::{lock, write_all_vectored};

/// Read-buffer room while requests are in flight. With none in flight the
/// buffer is released, so an idle connection holds no read buffer at all.
const READ_BUF: usize = 4096;
/// Read-buffer room while many requests are in flight, so that one read
/// system call takes several replies.
const READ_BUF_BUSY: usize = 16 * 1024;
/// Requests in flight from which [`READ_BUF_BUSY`] is used.
const BUSY: usize = 4;

/// A fid that a request binds if it succeeds. The request owns it while in
/// flight: whoever learns the outcome last (caller, reader, or flush)
/// releases or clunks it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NewFid {
    /// The request binds no fid.
    None,
    /// `Twalk` to a fresh newfid: bound iff all `nwname` names were walked.
    Walk {
        /// The new fid.
        fid: u32,
        /// Names in the request.
        nwname: usize,
    },
    /// `Tattach`: bound on `Rattach`.
    Attach {
        /// The new fid.
        fid: u32,
    },
}

impl NewFid {
    fn fid(self) -> Option<u32> {
        match self {
            NewFid::None => None,
            NewFid::Walk { fid, .. } | NewFid::Attach { fid } => Some(fid),
        }
    }

    /// Whether `reply` bound the fid on the server.
    fn bound_by(self, reply: &Rmessage) -> bool {
        match (self, reply) {
            (NewFid::Walk { nwname, .. }, Rmessage::Walk(w)) => w.wqids.len() == nwname,
            (NewFid::Attach { .. }, Rmessage::Attach(_)) => true,
            _ => false,
        }
    }
}

/// What a tag in use is waiting for.
enum Pending {
    /// A caller awaits the reply to a request of type `expect`.
    Call {
        expect: u8,
        newfid: NewFid,
        tx: oneshot::Sender<Rmessage>,
    },
    /// The caller gave up and a `Tflush` is out. A late reply is cleaned up
    /// (its fid clunked); the tag stays reserved until `Rflush`.
    Abandoned { expect: u8, newfid: NewFid },
    /// Abandoned, and its reply came before the `Rflush`.
    Answered,
    /// Our `Tflush` for `oldtag`.
    Flush { oldtag: u16 },
    /// A `Tclunk` nobody waits for (a dropped handle); frees `fid` when
    /// answered.
    Clunk { fid: u32 },
}

/// Fid numbers: a counter plus a free list, so long-lived connections
/// reuse numbers instead of running through 2^32.
#[derive(Default)]
struct FidAlloc {
    next: u32,
    free: Vec<u32>,
}

impl FidAlloc {
    fn alloc(&mut self) -> Option<u32> {
        if let Some(f) = self.free.pop() {
            return Some(f);
        }
        if self.next == NOFID {
            return None;
        }
        let f = self.next;
        self.next += 1;
        Some(f)
    }

    fn release(&mut self, fid: u32) {
        self.free.push(fid);
    }
}

/// Bookkeeping behind the connection's mutex.
struct State {
    /// Tags in use and what each waits for.
    pending: HashMap<u16, Pending>,
    /// Where the tag search starts: tags cycle through the whole space so
    /// a late reply is less likely to meet a reused tag.
    next_tag: u16,
    fids: FidAlloc,
    /// Encoded frames waiting for the writer task, in order. A plain vector
    /// under the lock we hold anyway: no channel allocation per connection,
    /// and the writer takes everything queued as one batch.
    outq: Vec<Bytes>,
    /// Set once, by whatever killed the connection; every later call
    /// fails with it.
    closed: Option<ClientError>,
}

impl State {
    /// Queues a frame for the writer (which the caller then wakes).
    fn queue(&mut self, frame: Bytes) {
        self.outq.push(frame);
    }

    fn alloc_tag(&mut self) -> Option<u16> {
        for _ in 0..NOTAG {
            let t = self.next_tag;
            self.next_tag = if t >= NOTAG - 1 { 0 } else { t + 1 };
            if !self.pending.contains_key(&t) {
                return Some(t);
            }
        }
        None
    }
}

/// What the reader task, the writer task and the handles share.
pub(crate) struct Shared {
    /// The server's address, for every error message.
    pub(crate) server: String,
    /// The negotiated dialect.
    pub(crate) dialect: Dialect,
    /// The negotiated msize.
    pub(crate) msize: u32,
    /// Per-request limit.
    pub(crate) request_timeout: Duration,
    state: Mutex<State>,
    /// Wakes the writer task when `State::outq` gets frames.
    wake_writer: Notify,
    /// Bounds requests in flight; closed when the connection dies so that
    /// queued callers fail at once.
    permits: Semaphore,
    /// Stops the reader and writer tasks.
    cancel: CancellationToken,
    /// Replies received so far: lets the pool tell a server that answers
    /// nothing at all from one that is merely slow at one request.
    pub(crate) replies: std::sync::atomic::AtomicU64,
}

/// Negotiates the version on a fresh transport, then starts the reader and
/// writer tasks.
pub(crate) async fn start<T>(
    mut io: T,
    server: String,
    opts: &ClientOptions,
) -> Result<Arc<Shared>, ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (dialect, msize, leftover) =
        match tokio::time::timeout(opts.connect_timeout, negotiate(&mut io, &server, opts)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    server,
                    op: "version",
                    path: String::new(),
                    after: opts.connect_timeout,
                });
            }
        };
    let (rd, wr) = tokio::io::split(io);
    let shared = Arc::new(Shared {
        server,
        dialect,
        msize,
        request_timeout: opts.request_timeout,
        state: Mutex::new(State {
            pending: HashMap::new(),
            next_tag: 0,
            fids: FidAlloc::default(),
            outq: Vec::new(),
            closed: None,
        }),
        wake_writer: Notify::new(),
        permits: Semaphore::new(opts.max_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
        cancel: CancellationToken::new(),
        replies: std::sync::atomic::AtomicU64::new(0),
    });
    tokio::spawn(read_loop(shared.clone(), rd, leftover));
    tokio::spawn(write_loop(shared.clone(), wr));
    Ok(shared)
}

/// version(5): asks for 9P2000.L (or the forced dialect) and accepts what
/// the server answers if it is a dialect we asked for or a lower one.
async fn negotiate<T>(
    io: &mut T,
    server: &str,
    opts: &ClientOptions,
) -> Result<(Dialect, u32, BytesMut), ClientError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let want = opts.dialect.unwrap_or(Dialect::P2000L);
    let verr = |detail: String| ClientError::Version {
        server: server.to_string(),
        detail,
    };
    let req = Frame {
        tag: NOTAG,
        msg: Tmessage::Version(proto::Tversion {
            msize: opts.msize,
            version: want.version_string().to_string(),
        }),
    }
    .to_bytes(want)
    .map_err(|e| verr(format!("cannot encode Tversion: {e}")))?;
    io.write_all(&req)
        .await
        .map_err(|e| ClientError::io(server, e))?;
    io.flush().await.map_err(|e| ClientError::io(server, e))?;

    let mut buf = BytesMut::with_capacity(READ_BUF);
    let frame = loop {
        match frame_size(&buf, opts.msize.max(MIN_MSIZE)) {
            Ok(Some(n)) => break buf.split_to(n).freeze(),
            Ok(None) => {}
            Err(e) => return Err(verr(format!("bad reply to Tversion: {e}"))),
        }
        buf.reserve(READ_BUF);
        match io.read_buf(&mut buf).await {
            Ok(0) => {
                return Err(ClientError::Closed {
                    server: server.to_string(),
                    reason: "the server hung up during version negotiation".into(),
                });
            }
            Ok(_) => {}
            Err(e) => return Err(ClientError::io(server, e)),
        }
    };
    // .L decoding accepts Rversion, Rlerror and Rerror alike.
    let reply = Frame::<Rmessage>::decode(frame, Dialect::P2000L)
        .map_err(|e| verr(format!("undecodable reply to Tversion: {e}")))?;
    let rv = match reply.msg {
        Rmessage::Version(v) => v,
        // diod answers a version it does not speak with Rlerror(EIO), not
        // with "unknown".
        Rmessage::Lerror(e) => {
            return Err(verr(format!(
                "the server refused {want}: {}",
                errno::to_string(e.ecode)
            )));
        }
        Rmessage::Error(e) => {
            return Err(verr(format!("the server refused {want}: {}", e.ename)));
        }
        other => {
            return Err(verr(format!(
                "reply of type {} to Tversion",
                other.msg_type()
            )));
        }
    };
    if reply.tag != NOTAG {
        return Err(verr(format!("Rversion with tag {} (not NOTAG)", reply.tag)));
    }
    let got = match rv.version.as_str() {
        "unknown" => {
            return Err(verr(format!(
                "the server speaks none of the versions up to {want}"
            )));
        }
        v => Dialect::negotiate(v)
            .ok_or_else(|| verr(format!("the server answered unknown version {v:?}")))?,
    };
    // A server may answer a lower version than asked, never a higher one.
    let acceptable = match want {
        Dialect::P2000L => true,
        Dialect::P2000u => got != Dialect::P2000L,
        Dialect::P2000 => got == Dialect::P2000,
    };
    if !acceptable {
        return Err(verr(format!(
            "asked for {want}, the server answered {:?}",
            rv.version
        )));
    }
    let msize = rv.msize.min(opts.msize);
    if msize < MIN_MSIZE {
        return Err(verr(format!(
            "msize {} is below the minimum {MIN_MSIZE}",
            rv.msize
        )));
    }
    debug!(%server, dialect = %got, msize, "connected");
    Ok((got, msize, buf))
}

/// One request in flight. Dropping it before the reply arrives (a
/// cancelled future or a timeout) flushes the request.
struct Call<'a> {
    shared: &'a Shared,
    /// `None` until sent.
    tag: Option<u16>,
    rx: Option<oneshot::Receiver<Rmessage>>,
    newfid: NewFid,
    /// The reply (or the connection's death) was seen by the caller.
    done: bool,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match (self.tag, self.rx.as_mut()) {
            (Some(tag), Some(rx)) => self.shared.abandon(tag, rx, self.newfid),
            _ => self.shared.release_fid(self.newfid),
        }
    }
}

impl Shared {
    /// Whether the connection is dead.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// The error that killed the connection.
    pub(crate) fn closed_error(&self) -> ClientError {
        lock(&self.state)
            .closed
            .clone()
            .unwrap_or_else(|| ClientError::Closed {
                server: self.server.clone(),
                reason: "the connection is closed".into(),
            })
    }

    /// A fresh fid number.
    pub(crate) fn alloc_fid(&self) -> Result<u32, ClientError> {
        let mut st = lock(&self.state);
        if let Some(e) = &st.closed {
            return Err(e.clone());
        }
        st.fids.alloc().ok_or_else(|| ClientError::Invalid {
            server: self.server.clone(),
            path: String::new(),
            detail: "all 2^32-1 fids are in use".into(),
        })
    }

    /// Returns a clunked fid's number to the pool.
    pub(crate) fn release_fid_number(&self, fid: u32) {
        lock(&self.state).fids.release(fid);
    }

    fn release_fid(&self, newfid: NewFid) {
        if let Some(f) = newfid.fid() {
            lock(&self.state).fids.release(f);
        }
    }

    /// Kills the connection: records `err`, fails every request in flight
    /// (their senders are dropped, so each caller wakes and reads `err`)
    /// and stops the tasks. Only the first call has an effect.
    pub(crate) fn fail(&self, err: ClientError) {
        let pending = {
            let mut st = lock(&self.state);
            if st.closed.is_some() {
                return;
            }
            debug!(server = %self.server, "connection closed: {err}");
            st.closed = Some(err);
            st.outq = Vec::new();
            std::mem::take(&mut st.pending)
        };
        drop(pending);
        self.permits.close();
        self.cancel.cancel();
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            server: self.server.clone(),
            detail,
        }
    }

    /// Sends `msg` and waits for its reply, at most `request_timeout`.
    ///
    /// `newfid` is owned by the request from here on: when the reply does
    /// not bind it, or the request fails, it is released (or, after a
    /// cancellation, clunked if a late reply bound it).
    ///
    /// Error replies are turned into [`ClientError::Remote`] naming `op`
    /// and `path`.
    ///
    /// # Cancel safety
    /// Dropping the future flushes the request; its tag stays reserved
    /// until the server's `Rflush`.
    pub(crate) async fn rpc(
        &self,
        msg: Tmessage,
        newfid: NewFid,
        op: &'static str,
        path: &str,
    ) -> Result<Rmessage, ClientError> {
        match tokio::time::timeout(
            self.request_timeout,
            self.rpc_untimed(msg, newfid, op, path),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                server: self.server.clone(),
                op,
                path: path.to_string(),
                after: self.request_timeout,
            }),
        }
    }

    async fn rpc_untimed(
        &self,
        msg: Tmessage,
        newfid: NewFid,
        op: &'static str,
        path: &str,
    ) -> Result<Rmessage, ClientError> {
        let mut call = Call {
            shared: self,
            tag: None,
            rx: None,
            newfid,
            done: false,
        };
        let expect = msg.msg_type();
        // Most requests fit; a longer walk grows it once or twice.
        let mut buf = BytesMut::with_capacity(64);
        let invalid = |detail: String| ClientError::Invalid {
            server: self.server.clone(),
            path: path.to_string(),
            detail,
        };
        Frame { tag: 0, msg }
            .encode(self.dialect, &mut buf)
            .map_err(|e| invalid(format!("{op}: {e}")))?;
        if buf.len() > self.msize as usize {
            return Err(invalid(format!(
                "{op}: a {}-byte request exceeds msize {}",
                buf.len(),
                self.msize
            )));
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.closed_error())?;
        {
            let mut st = lock(&self.state);
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            let Some(tag) = st.alloc_tag() else {
                return Err(
                    self.protocol("no free tag: every tag is in flight or awaiting Rflush".into())
                );
            };
            buf[5..7].copy_from_slice(&tag.to_le_bytes());
            let (tx, rx) = oneshot::channel();
            st.pending.insert(tag, Pending::Call { expect, newfid, tx });
            // Unbounded: the in-flight permits bound it.
            st.queue(buf.freeze());
            call.tag = Some(tag);
            call.rx = Some(rx);
        }
        self.wake_writer.notify_one();
        let res = match call.rx.as_mut() {
            Some(rx) => rx.await,
            None => return Err(self.closed_error()),
        };
        call.done = true;
        let reply = match res {
            Ok(m) => m,
            Err(_) => {
                self.release_fid(newfid);
                return Err(self.closed_error());
            }
        };
        if !newfid.bound_by(&reply) {
            self.release_fid(newfid);
        }
        match reply {
            Rmessage::Lerror(e) => Err(ClientError::Remote {
                server: self.server.clone(),
                op,
                path: path.to_string(),
                errno: e.ecode,
                message: errno::to_string(e.ecode),
            }),
            Rmessage::Error(e) => Err(ClientError::Remote {
                server: self.server.clone(),
                op,
                path: path.to_string(),
                // .u sends an errno beside the string (when it has one);
                // plain 9P2000 only the string, which we map back.
                errno: if self.dialect == Dialect::P2000u {
                    errno::from_dotu(e.errno, &e.ename)
                } else {
                    errno::from_string(&e.ename)
                },
                message: e.ename,
            }),
            m => Ok(m),
        }
    }

    /// A request's caller gave up: flush it, unless its reply is already
    /// here, in which case undo what the reply did.
    fn abandon(&self, tag: u16, rx: &mut oneshot::Receiver<Rmessage>, newfid: NewFid) {
        let mut st = lock(&self.state);
        match rx.try_recv() {
            Ok(reply) => {
                // Delivered but never read; the tag is already free.
                self.settle_orphan(&mut st, newfid, &reply);
            }
            Err(oneshot::error::TryRecvError::Closed) => {
                // The connection died; nothing is bound anywhere.
                if let Some(f) = newfid.fid() {
                    st.fids.release(f);
                }
            }
            Err(oneshot::error::TryRecvError::Empty) => {
                let expect = match st.pending.get(&tag) {
                    Some(Pending::Call { expect, .. }) => *expect,
                    _ => return,
                };
                st.pending
                    .insert(tag, Pending::Abandoned { expect, newfid });
                let Some(ftag) = st.alloc_tag() else {
                    // The old tag stays reserved forever rather than risk
                    // a late reply meeting a reused tag.
                    warn!(server = %self.server, tag, "no free tag to flush a cancelled request");
                    return;
                };
                let frame = Frame {
                    tag: ftag,
                    msg: Tmessage::Flush(proto::Tflush { oldtag: tag }),
                }
                .to_bytes(self.dialect);
                if let Ok(frame) = frame {
                    st.pending.insert(ftag, Pending::Flush { oldtag: tag });
                    st.queue(frame);
                    self.wake_writer.notify_one();
                }
            }
        }
    }

    /// A reply nobody waits for: clunk the fid it bound, or release the
    /// fid number it did not bind.
    fn settle_orphan(&self, st: &mut State, newfid: NewFid, reply: &Rmessage) {
        let Some(fid) = newfid.fid() else { return };
        if newfid.bound_by(reply) {
            self.send_clunk(st, fid);
        } else {
            st.fids.release(fid);
        }
    }

    /// Clunks `fid` without waiting: the reader frees the number when the
    /// server answers.
    fn send_clunk(&self, st: &mut State, fid: u32) {
        if st.closed.is_some() {
            st.fids.release(fid);
            return;
        }
        let Some(tag) = st.alloc_tag() else {
            // Leak the number rather than reuse a fid the server still has.
            warn!(server = %self.server, fid, "no free tag to clunk a fid");
            return;
        };
        let frame = Frame {
            tag,
            msg: Tmessage::Clunk(proto::Tclunk { fid }),
        }
        .to_bytes(self.dialect);
        if let Ok(frame) = frame {
            st.pending.insert(tag, Pending::Clunk { fid });
            st.queue(frame);
            self.wake_writer.notify_one();
        }
    }

    /// Clunks `fid` in the background (a handle was dropped).
    pub(crate) fn clunk_detached(&self, fid: u32) {
        let mut st = lock(&self.state);
        self.send_clunk(&mut st, fid);
    }

    /// Routes one reply to whoever waits for its tag.
    fn handle_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        let f = Frame::<Rmessage>::decode(frame, self.dialect)
            .map_err(|e| self.protocol(format!("undecodable reply: {e}")))?;
        let (tag, msg) = (f.tag, f.msg);
        let is_error = matches!(msg, Rmessage::Error(_) | Rmessage::Lerror(_));
        let mut st = lock(&self.state);
        let Some(p) = st.pending.remove(&tag) else {
            return Err(self.protocol(format!(
                "reply of type {} for tag {tag}, which no request uses",
                msg.msg_type()
            )));
        };
        // A burst of requests grows the map; give the memory back once the
        // connection is idle again (thousands of idle connections in a pool).
        if st.pending.is_empty() && st.pending.capacity() > 256 {
            st.pending.shrink_to_fit();
        }
        let wrong = |expect: u8| {
            self.protocol(format!(
                "reply of type {} to a request of type {expect} (tag {tag})",
                msg.msg_type()
            ))
        };
        match p {
            Pending::Call { expect, newfid, tx } => {
                if !is_error && msg.msg_type() != expect + 1 {
                    return Err(wrong(expect));
                }
                if let Err(reply) = tx.send(msg) {
                    self.settle_orphan(&mut st, newfid, &reply);
                }
            }
            Pending::Abandoned { expect, newfid } => {
                if !is_error && msg.msg_type() != expect + 1 {
                    return Err(wrong(expect));
                }
                self.settle_orphan(&mut st, newfid, &msg);
                st.pending.insert(tag, Pending::Answered);
            }
            Pending::Answered => {
                return Err(
                    self.protocol(format!("second reply for tag {tag}, which awaits Rflush"))
                );
            }
            Pending::Flush { oldtag } => {
                // flush(5) allows only Rflush; an error is tolerated as
                // "nothing left to flush".
                if !is_error && !matches!(msg, Rmessage::Flush) {
                    return Err(wrong(proto::ty::TFLUSH));
                }
                match st.pending.remove(&oldtag) {
                    Some(Pending::Abandoned { newfid, .. }) => {
                        // Flushed before it answered: it bound nothing.
                        if let Some(f) = newfid.fid() {
                            st.fids.release(f);
                        }
                    }
                    Some(Pending::Answered) | None => {}
                    Some(other) => {
                        st.pending.insert(oldtag, other);
                    }
                }
            }
            Pending::Clunk { fid } => {
                if !is_error && !matches!(msg, Rmessage::Clunk) {
                    return Err(wrong(proto::ty::TCLUNK));
                }
                // clunk(5): the fid is gone after the reply, error or not.
                st.fids.release(fid);
            }
        }
        Ok(())
    }
}

/// Reads frames and routes them until the connection ends, then fails the
/// connection with the reason.
async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut rd: R, mut buf: BytesMut) {
    let err = loop {
        // Route every whole frame already buffered.
        let routed = loop {
            match frame_size(&buf, shared.msize) {
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    shared
                        .replies
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = shared.handle_frame(frame) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(shared.protocol(e.to_string())),
            }
        };
        if let Err(e) = routed {
            break e;
        }
        let pending = lock(&shared.state).pending.len();
        if buf.is_empty() && pending == 0 {
            // Idle: hold no buffer. The next read allocates a small one
            // (tokio's `read_buf` reserves 64 bytes), enough for a header.
            buf = BytesMut::new();
        } else {
            // Room for the rest of the frame being received (its size is
            // at most msize, checked above), or for a few replies.
            let want = crate::proto::declared_size(&buf)
                .map_or(0, |size| (size as usize).saturating_sub(buf.len()));
            let room = if pending >= BUSY {
                READ_BUF_BUSY
            } else {
                READ_BUF
            };
            buf.reserve(want.max(room.saturating_sub(buf.len())));
        }
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            _ = shared.cancel.cancelled() => return,
        };
        match n {
            Ok(0) => {
                break ClientError::Closed {
                    server: shared.server.clone(),
                    reason: if buf.is_empty() {
                        "the server hung up".into()
                    } else {
                        format!(
                            "the server hung up in the middle of a message ({} bytes of it received)",
                            buf.len()
                        )
                    },
                };
            }
            Ok(_) => {}
            Err(e) => break ClientError::io(&shared.server, e),
        }
    };
    shared.fail(err);
}

/// Writes queued frames: everything queued since the last write goes out
/// as one vectored write. Woken by a queued frame, the writer first yields
/// once, so that callers already running queue their requests too (one
/// system call for many requests, not one each: issue 13).
async fn write_loop<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) {
    let mut frames: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => break,
            _ = shared.wake_writer.notified() => {}
        }
        tokio::task::yield_now().await;
        // Swapped, so both vectors keep their room between batches.
        std::mem::swap(&mut lock(&shared.state).outq, &mut frames);
        if frames.is_empty() {
            continue;
        }
        let res = tokio::select! {
            r = async {
                write_all_vectored(&mut wr, &mut frames).await?;
                wr.flush().await
            } => r.map(|()| true),
            // A server that stopped reading must not pin the task.
            _ = shared.cancel.cancelled() => Ok(false),
        };
        frames.clear();
        match res {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                shared.fail(ClientError::io(&shared.server, e));
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_skip_notag_and_tags_in_use() {
        let mut st = State {
            pending: HashMap::new(),
            next_tag: NOTAG - 2,
            fids: FidAlloc::default(),
            outq: Vec::new(),
            closed: None,
        };
        st.pending.insert(0, Pending::Answered);
        assert_eq!(st.alloc_tag(), Some(NOTAG - 2));
        // NOTAG - 1 is next, then the counter wraps past NOTAG and skips 0.
        assert_eq!(st.alloc_tag(), Some(NOTAG - 1));
        assert_eq!(st.alloc_tag(), Some(1));
        for t in 0..NOTAG {
            st.pending.insert(t, Pending::Answered);
        }
        assert_eq!(st.alloc_tag(), None);
    }

    #[test]
    fn fids_are_reused_and_never_nofid() {
        let mut f = FidAlloc::default();
        assert_eq!(f.alloc(), Some(0));
        assert_eq!(f.alloc(), Some(1));
        f.release(0);
        assert_eq!(f.alloc(), Some(0));
        f.next = NOFID - 1;
        assert_eq!(f.alloc(), Some(NOFID - 1));
        assert_eq!(f.alloc(), None);
    }
}

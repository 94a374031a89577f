//! One 9P connection on the server side: version negotiation, the fid
//! table, tags and flush, walk semantics and dialect translation. The
//! protocol rules are checked here, once, before a [`Filesystem`] method is
//! called.
//!
//! Requests run concurrently: each is registered in the tag table under a
//! unique request id, polled once where it was read, and given a task of
//! its own only if it has to wait. A finished request *commits* under the
//! session lock: if its tag is still registered it is retired, its fid
//! effect applied and its reply queued, all at once; if `Tflush` or
//! `Tversion` removed it first, the result is dropped. So no reply is ever
//! sent after the `Rflush` that cancelled it, and a flushed `Twalk` never
//! binds its new fid (lib9p's ordering, `srv.c`).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::fair::{Principal, Share, Shares};
use super::gauges::{Gauges, Holding};
use super::snapshot::Snapshot;
use super::{
    AccessPolicy, AttachRequest, Claim, Filesystem, FsError, FsResult, Identity, OpenFlags, Peer,
    SnapshotBudget,
};
use crate::proto::{
    self, Attr, Dialect, Frame, FrameCodec, IOHDRSZ, MAXWELEM, Metadata, NOFID, Qid, Rmessage,
    Stat, Tmessage, epoch_parts, errno, parse_header, s_if,
};
use crate::sys::{lock, write_all_vectored};

/// Per-connection limits.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Largest msize offered in `Rversion`.
    pub max_msize: u32,
    /// Fids one connection may hold; more is answered with EMFILE.
    pub max_fids: usize,
    /// Fids one identity may hold on a connection (every user arrives on
    /// the aggregator's one connection to an agent); the identities that
    /// are not a service of [`AccessPolicy`] together stop an eighth short
    /// of `max_fids`, kept for the service.
    pub max_fids_per_identity: usize,
    /// Requests in flight per connection; beyond it the session stops
    /// reading (backpressure) instead of queueing without bound.
    pub max_in_flight: usize,
    /// Requests of one identity in flight on a connection; beyond it that
    /// identity's requests are answered EAGAIN at once (waiting would stop
    /// the connection for everyone). Non-service identities together stop
    /// an eighth short of `max_in_flight`.
    pub max_in_flight_per_identity: usize,
    /// How long a new connection may go without a successful `Tattach`
    /// before it is closed, so idle connections cannot hold slots.
    pub attach_timeout: Duration,
    /// How long half a frame may sit unfinished before the connection is
    /// closed (a client that sends part of a message and goes silent).
    pub partial_frame_timeout: Duration,
    /// Who may attach and as whom (closed by default: see
    /// [`AccessPolicy`]).
    pub access: AccessPolicy,
    /// Bytes the open files of one identity on one connection may hold
    /// (one file of any size is always allowed when it holds nothing else
    /// there).
    pub snapshot_bytes_per_connection: usize,
    /// Bytes the open files of every connection together may hold, with a
    /// share per identity and a reserve for the service identities: shared
    /// by every connection served with clones of these limits.
    pub snapshot_bytes: Arc<Shares>,
    /// What the sessions hold and have read, together: shared, like
    /// `snapshot_bytes`, by every connection served with clones of these
    /// limits.
    pub gauges: Arc<Gauges>,
}

/// Identities' share of a server's snapshot bytes by default: an eighth
/// of the total (128 MiB of 1 GiB, two of the largest files an agent
/// reads), with another eighth reserved for the service.
pub fn snapshot_shares(total: usize, per_identity: usize) -> Arc<Shares> {
    Shares::with_reserve(total, per_identity)
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_msize: 1 << 20,
            max_fids: 65536,
            max_fids_per_identity: 16384,
            max_in_flight: 1024,
            max_in_flight_per_identity: 128,
            attach_timeout: Duration::from_secs(10),
            partial_frame_timeout: Duration::from_secs(30),
            access: AccessPolicy::default(),
            snapshot_bytes_per_connection: 64 << 20,
            snapshot_bytes: snapshot_shares(1 << 30, 128 << 20),
            gauges: Arc::default(),
        }
    }
}

/// A fid's entry in the table.
struct FidEntry<S> {
    /// Where it is, in the filesystem's terms.
    node: S,
    /// Who it was attached as; inherited by every fid walked from it.
    who: Arc<Identity>,
    /// Its qid (the last one walked to).
    qid: Qid,
    /// Opened (and how), or only walked.
    opened: Option<OpenFlags>,
    /// What it holds once opened.
    snap: Option<Snapshot>,
    /// Position of a 9P2000/.u directory read: (next byte offset, cookie).
    /// A tokio mutex: held across the filesystem calls of one read, which
    /// serializes reads of one directory fid as the protocol requires.
    dir_cursor: tokio::sync::Mutex<(u64, u64)>,
    /// Its count in the server's fids.
    _counted: Holding,
}

impl<S> FidEntry<S> {
    /// A walked (unopened) fid.
    fn walked(node: S, who: Arc<Identity>, qid: Qid, gauges: &Arc<Gauges>) -> Arc<Self> {
        Arc::new(Self {
            node,
            who,
            qid,
            opened: None,
            snap: None,
            dir_cursor: tokio::sync::Mutex::new((0, 0)),
            _counted: gauges.fid(),
        })
    }
}

/// What a finished request does to the fid table when it commits.
enum Effect<S> {
    None,
    /// Bind a new fid (attach, walk to a different newfid).
    Insert(u32, Arc<FidEntry<S>>),
    /// Replace the fid's entry if it is still `old` (open, walk in place).
    Replace(u32, Arc<FidEntry<S>>, Arc<FidEntry<S>>),
}

/// Session state behind one short-held std mutex (never across `.await`).
struct State<S> {
    fids: HashMap<u32, Arc<FidEntry<S>>>,
    /// Each fid's charge to its identity's share of `max_fids`.
    fid_shares: HashMap<u32, Share>,
    /// A fid was bound once (the attach deadline is met).
    attached: bool,
    /// Auth fids and the credential written to each so far.
    afids: HashMap<u32, Arc<Mutex<Vec<u8>>>>,
    /// In-flight requests: tag -> (request id, abort handle once spawned).
    tags: HashMap<u16, (u64, Option<AbortHandle>)>,
    /// For each fid, the latest request in flight that changes it (a walk
    /// that creates it, an open that opens it) and did not finish when it
    /// came: a request naming the fid waits for the one here when it comes
    /// ([`FidChange::wait`]). At most one entry per request in flight.
    changing: HashMap<u32, Arc<FidChange>>,
    /// A service uid this connection proved with a verified credential:
    /// its later attaches may name users without credentials of their own
    /// (the aggregator's per-user attaches over TCP).
    proven_service: Option<u32>,
    /// Negotiated dialect; `None` before `Tversion`.
    dialect: Option<Dialect>,
    msize: u32,
    next_id: u64,
}

/// Read data at least this large is written from the snapshot it was
/// sliced from (a vectored write) instead of being copied into the
/// connection's buffer; smaller replies are cheaper copied.
const SHARED_MIN: usize = 8 * 1024;

/// Replies encoded and not yet written. Each request encodes its own reply
/// into the queue when it commits; the writer takes the whole queue and
/// writes it with one vectored write, so replies that finish together
/// leave together (one system call for many, not one each: issue 13).
///
/// Queued replies count against `max_in_flight` like running requests: a
/// client that sends requests and never reads the replies stops being
/// read, instead of having its replies queued without bound (issue 7,
/// tests/it/hostile_server.rs).
#[derive(Default)]
struct Outbox {
    queue: Mutex<Queue>,
    /// Replies queued or being written; changed under `queue`'s lock when
    /// queued, after the write when written.
    queued: AtomicUsize,
    /// Signalled when a reply is queued.
    ready: Notify,
    /// Signalled by the writer after each write.
    drained: Notify,
}

/// The bytes of the queued replies, in wire order.
#[derive(Default)]
struct Queue {
    /// Filled buffers, and read data shared with the snapshot it came from.
    segs: Vec<Bytes>,
    /// Where small replies are appended; moved to `segs` before shared
    /// data, and when the writer takes the queue.
    tail: BytesMut,
    /// Replies in `segs` and `tail`.
    replies: usize,
    /// The writer has stopped: later replies are dropped.
    closed: bool,
}

impl Queue {
    /// Encodes a reply; one that cannot be encoded or exceeds msize becomes
    /// an error reply, so the client always gets an answer for its tag.
    fn push(&mut self, tag: u16, msg: Rmessage, d: Dialect, msize: u32) {
        let start = self.tail.len();
        let fail = match (Frame { tag, msg }).encode_split(d, &mut self.tail, SHARED_MIN) {
            Err(e) => Some(FsError::new(errno::EIO).with(format!("reply does not encode: {e}"))),
            Ok(data)
                if self.tail.len() - start + data.as_ref().map_or(0, Bytes::len)
                    > msize as usize =>
            {
                self.tail.truncate(start);
                Some(FsError::new(errno::EMSGSIZE).with("reply larger than msize"))
            }
            Ok(data) => {
                if let Some(data) = data {
                    self.segs.push(self.tail.split().freeze());
                    self.segs.push(data);
                }
                None
            }
        };
        if let Some(e) = fail {
            warn!(tag, "{e}");
            let _ = Frame {
                tag,
                msg: error_reply(d, &e),
            }
            .encode(d, &mut self.tail);
        }
        self.replies += 1;
    }

    /// Moves everything queued into `out`; returns how many replies.
    fn take(&mut self, out: &mut Vec<Bytes>) -> usize {
        out.append(&mut self.segs);
        if !self.tail.is_empty() {
            out.push(self.tail.split().freeze());
        }
        std::mem::take(&mut self.replies)
    }
}

/// What a running request holds, given back when it ends or is aborted:
/// its identity's share before the connection's permit (fields drop in
/// order), so the request read next on a freed permit always finds the
/// share back too.
struct RequestSlot {
    _share: Option<Share>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

struct Shared<F: Filesystem> {
    fs: Arc<F>,
    peer: Arc<Peer>,
    limits: SessionLimits,
    /// Each identity's share of the snapshot bytes, by uid.
    budgets: Mutex<HashMap<u32, SnapshotBudget>>,
    /// Identities' shares of this connection's fids and requests.
    fid_shares: Arc<Shares>,
    request_shares: Arc<Shares>,
    /// The connection's slot in the server's per-principal shares, moved
    /// from the TCP address to the uid at the first attach.
    slot: Mutex<Option<Share>>,
    state: Mutex<State<F::Node>>,
    outbox: Arc<Outbox>,
}

/// Serves one connection until it closes, a framing error occurs, the
/// attach deadline passes without an attach, or `shutdown` fires.
pub async fn serve_connection<F, T>(
    fs: Arc<F>,
    io: T,
    peer: Peer,
    limits: SessionLimits,
    shutdown: CancellationToken,
) where
    F: Filesystem,
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_connection_in_slot(fs, io, peer, limits, shutdown, None).await;
}

/// [`serve_connection`] holding `slot`, the connection's charge to its
/// principal's share of the server's connections (released at close; a
/// TCP address's charge moves to the uid proven at the first attach).
pub(crate) async fn serve_connection_in_slot<F, T>(
    fs: Arc<F>,
    io: T,
    peer: Peer,
    limits: SessionLimits,
    shutdown: CancellationToken,
    slot: Option<Share>,
) where
    F: Filesystem,
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let _counted = limits.gauges.connection();
    let (rd, wr) = tokio::io::split(io);
    let conn_done = shutdown.child_token();
    let outbox = Arc::new(Outbox::default());
    let writer = tokio::spawn(write_loop(
        wr,
        outbox.clone(),
        limits.gauges.clone(),
        conn_done.clone(),
    ));
    let peer = Arc::new(peer);
    let shared = Arc::new(Shared {
        fs,
        peer: peer.clone(),
        state: Mutex::new(State {
            fids: HashMap::new(),
            fid_shares: HashMap::new(),
            attached: false,
            afids: HashMap::new(),
            tags: HashMap::new(),
            changing: HashMap::new(),
            proven_service: None,
            dialect: None,
            msize: limits.max_msize,
            next_id: 0,
        }),
        budgets: Mutex::new(HashMap::new()),
        fid_shares: Shares::with_reserve(limits.max_fids, limits.max_fids_per_identity),
        request_shares: Shares::with_reserve(
            limits.max_in_flight,
            limits.max_in_flight_per_identity,
        ),
        slot: Mutex::new(slot),
        limits: limits.clone(),
        outbox: outbox.clone(),
    });
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut frames = FramedRead::new(rd, FrameCodec::new(limits.max_msize));
    // A frame left half-sent across two ticks of the partial-frame timer
    // closes the connection. FramedRead::next is cancel-safe: bytes already
    // read stay buffered when the timer wins the select. One timer for the
    // connection, not one per frame (a timer entry per request was a
    // measurable share of a small read's cost).
    let mut stalled = false;
    let mut partial_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.partial_frame_timeout,
        limits.partial_frame_timeout,
    );
    partial_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let attach_by = tokio::time::sleep(limits.attach_timeout);
    tokio::pin!(attach_by);
    let mut attach_checked = false;
    'conn: loop {
        let next = loop {
            tokio::select! {
                f = frames.next() => break f,
                _ = conn_done.cancelled() => break 'conn,
                _ = &mut attach_by, if !attach_checked => {
                    if !lock(&shared.state).attached {
                        warn!(peer = %peer.addr, "closing connection: no attach within {:?}", limits.attach_timeout);
                        break 'conn;
                    }
                    attach_checked = true;
                }
                _ = partial_tick.tick() => {
                    if frames.read_buffer().is_empty() {
                        stalled = false;
                    } else if stalled {
                        warn!(peer = %peer.addr, "closing connection: partial frame unfinished for {:?}", limits.partial_frame_timeout);
                        break 'conn;
                    } else {
                        stalled = true;
                    }
                }
            }
        };
        stalled = false;
        let frame = match next {
            None => break,
            Some(Ok(f)) => {
                limits.gauges.read_frame();
                f
            }
            Some(Err(e)) => {
                // A client that exits with replies unread resets the
                // connection: routine, not worth a warning.
                match &e {
                    proto::FrameError::Io(io)
                        if io.kind() == std::io::ErrorKind::ConnectionReset =>
                    {
                        debug!(peer = %peer.addr, "connection reset by the client")
                    }
                    _ => warn!(peer = %peer.addr, "closing connection: {e}"),
                }
                break;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        while outbox.queued.load(Ordering::Acquire) >= limits.max_in_flight {
            let drained = outbox.drained.notified();
            if outbox.queued.load(Ordering::Acquire) < limits.max_in_flight {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = conn_done.cancelled() => break 'conn,
            }
        }
        if let Some(new_max) = shared.dispatch(frame, permit) {
            frames.decoder_mut().max_size = new_max;
        }
    }
    // Abort what is still running and release every fid.
    let fids = {
        let mut st = lock(&shared.state);
        for (_, (_, h)) in st.tags.drain() {
            if let Some(h) = h {
                h.abort();
            }
        }
        std::mem::take(&mut st.fids)
    };
    for (_, e) in fids {
        if let Ok(e) = Arc::try_unwrap(e) {
            shared.fs.clunk(&e.who, e.node).await;
        }
    }
    drop(shared);
    conn_done.cancel();
    let _ = writer.await;
    debug!(peer = %peer.addr, "connection closed");
}

/// Writes queued replies until the connection ends. Woken by a queued
/// reply, it first yields once, so that requests already running commit
/// their replies too, then writes everything queued in one vectored write
/// (flushing when no more replies are ready, as lib9p's writer does when
/// its queue is empty). On `done` it writes what is queued and stops.
async fn write_loop<W: AsyncWrite>(
    wr: W,
    outbox: Arc<Outbox>,
    gauges: Arc<Gauges>,
    done: CancellationToken,
) {
    let mut wr = Box::pin(wr);
    let mut segs: Vec<Bytes> = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = outbox.ready.notified() => false,
            _ = done.cancelled() => true,
        };
        if !stopping {
            tokio::task::yield_now().await;
        }
        let n = {
            let mut q = lock(&outbox.queue);
            q.closed |= stopping;
            q.take(&mut segs)
        };
        if let Err(e) = write_all_vectored(&mut wr, &mut segs).await {
            debug!("write failed, closing connection: {e}");
            done.cancel();
            break;
        }
        segs.clear();
        if wr.flush().await.is_err() {
            done.cancel();
            break;
        }
        outbox.queued.fetch_sub(n, Ordering::AcqRel);
        gauges.wrote_replies(n);
        outbox.drained.notify_waiters();
        if stopping {
            break;
        }
    }
    {
        let mut q = lock(&outbox.queue);
        *q = Queue {
            closed: true,
            ..Queue::default()
        };
        // Replies counted and never written (a failed write, replies
        // queued as it stopped): no more are counted once it is closed.
        gauges.wrote_replies(outbox.queued.swap(0, Ordering::AcqRel));
    }
    let _ = wr.shutdown().await;
}

/// The fid a request works on, for the requests a client may pipeline
/// behind the walk that creates it or the open that opens it.
fn fid_named(msg: &Tmessage) -> Option<u32> {
    use Tmessage as T;
    match msg {
        T::Walk(t) => Some(t.fid),
        T::Getattr(t) => Some(t.fid),
        T::Lopen(t) => Some(t.fid),
        T::Open(t) => Some(t.fid),
        T::Read(t) => Some(t.fid),
        T::Readdir(t) => Some(t.fid),
        T::Readlink(t) => Some(t.fid),
        T::Stat(t) => Some(t.fid),
        T::Statfs(t) => Some(t.fid),
        _ => None,
    }
}

/// The fid a request changes once it commits, for the requests that a
/// client may pipeline others behind: a walk to a new fid creates it, an
/// open opens it.
fn fid_changed(msg: &Tmessage) -> Option<u32> {
    use Tmessage as T;
    match msg {
        T::Walk(w) if w.newfid != w.fid => Some(w.newfid),
        T::Lopen(t) => Some(t.fid),
        T::Open(t) => Some(t.fid),
        _ => None,
    }
}

/// A request in flight that changes a fid, as the session's `changing`
/// map holds it. A request naming the fid that comes while it is the
/// latest one waits until it is `done`: committed (the fid table shows
/// its effect), failed, flushed, or its connection closed.
struct FidChange {
    /// Set under the session's lock, with the entry's removal.
    done: AtomicBool,
    notify: Notify,
}

impl FidChange {
    /// Waits until this change is done. Bounded by the request that made
    /// it: it commits, is flushed or its connection closes.
    async fn wait<F: Filesystem>(&self, shared: &Shared<F>) {
        loop {
            let woken;
            {
                let _st = lock(&shared.state);
                if self.done.load(Ordering::Relaxed) {
                    return;
                }
                // Made under the lock: the change's end, which takes the
                // lock to set `done`, cannot slip in before it.
                woken = self.notify.notified();
            }
            woken.await;
        }
    }
}

/// The guard of a [`FidChange`] in flight: dropped (its request committed,
/// was flushed, or its connection closed) it marks the change done, leaves
/// the map unless a later change to the fid replaced it there, and wakes
/// the requests waiting for it.
struct FidChangeInFlight<F: Filesystem> {
    shared: Arc<Shared<F>>,
    fid: u32,
    change: Arc<FidChange>,
}

impl<F: Filesystem> FidChangeInFlight<F> {
    /// Registers `msg`'s change to its fid as the latest. A walk to a
    /// fid that is bound or being created already is not registered (the
    /// client's error: the walk answers it); an open always is, after
    /// whatever it waits for itself.
    fn register(shared: &Arc<Shared<F>>, fid: u32, creates: bool) -> Option<Self> {
        let mut st = lock(&shared.state);
        if creates && (st.fids.contains_key(&fid) || st.changing.contains_key(&fid)) {
            return None;
        }
        let change = Arc::new(FidChange {
            done: AtomicBool::new(false),
            notify: Notify::new(),
        });
        st.changing.insert(fid, change.clone());
        Some(Self {
            shared: shared.clone(),
            fid,
            change,
        })
    }
}

impl<F: Filesystem> Drop for FidChangeInFlight<F> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        self.change.done.store(true, Ordering::Relaxed);
        if st
            .changing
            .get(&self.fid)
            .is_some_and(|c| Arc::ptr_eq(c, &self.change))
        {
            st.changing.remove(&self.fid);
        }
        drop(st);
        self.change.notify.notify_waiters();
    }
}

/// The error reply for a dialect: Rlerror in .L, Rerror with errno in .u,
/// Rerror string in 9P2000.
pub fn error_reply(d: Dialect, e: &FsError) -> Rmessage {
    match d {
        Dialect::P2000L => Rmessage::Lerror(proto::Rlerror { ecode: e.errno }),
        _ => Rmessage::Error(proto::Rerror {
            ename: errno::to_string(e.errno),
            errno: e.errno,
        }),
    }
}

type Reply<S> = (FsResult<Rmessage>, Effect<S>);

/// The kind of a request that reaches the filesystem, as
/// [`Filesystem::request_done`] names it: a small fixed set, so counters
/// keyed by it stay few.
pub fn op_name(msg: &Tmessage) -> &'static str {
    use Tmessage as T;
    match msg {
        T::Attach(_) | T::Auth(_) => "attach",
        T::Walk(_) => "walk",
        T::Open(_) | T::Lopen(_) => "open",
        T::Read(_) => "read",
        T::Readdir(_) => "readdir",
        T::Stat(_) | T::Getattr(_) => "getattr",
        T::Readlink(_) => "readlink",
        T::Statfs(_) => "statfs",
        T::Xattrwalk(_) => "xattrwalk",
        T::Write(_) => "write",
        _ => "other",
    }
}

impl<F: Filesystem> Shared<F> {
    /// Queues a reply for the writer (dropped once the writer stopped:
    /// the connection is closing).
    fn send(&self, tag: u16, msg: Rmessage, dialect: Dialect, msize: u32) {
        {
            let mut q = lock(&self.outbox.queue);
            if q.closed {
                return;
            }
            q.push(tag, msg, dialect, msize);
            // Under the lock, so the writer never subtracts a reply it
            // took before it was counted.
            self.outbox.queued.fetch_add(1, Ordering::AcqRel);
            self.limits.gauges.queue_reply();
        }
        self.outbox.ready.notify_one();
    }

    /// Handles one frame. Returns a new frame limit after `Tversion`.
    fn dispatch(
        self: &Arc<Self>,
        frame: Bytes,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<u32> {
        let (dialect, msize) = {
            let st = lock(&self.state);
            (st.dialect, st.msize)
        };
        // Before Tversion we decode as 9P2000 and answer in it.
        let d = dialect.unwrap_or(Dialect::P2000);
        let tag = match parse_header(&frame) {
            Ok(h) => h.tag,
            Err(_) => return None, // FrameCodec never yields < 7 bytes
        };
        let msg = match Frame::<Tmessage>::decode(frame, d) {
            Ok(f) => f.msg,
            Err(e) => {
                debug!(peer = %self.peer.addr, tag, "bad message: {e}");
                let err = match e {
                    proto::DecodeError::UnknownType { .. } => FsError::OPNOTSUPP,
                    _ => FsError::new(errno::EBADMSG),
                };
                self.send(tag, error_reply(d, &err), d, msize);
                return None;
            }
        };
        if let Tmessage::Version(v) = msg {
            return Some(self.version(tag, v));
        }
        let Some(d) = dialect else {
            let e = FsError::new(errno::EPROTO).with("request before Tversion");
            self.send(tag, error_reply(d, &e), d, msize);
            return None;
        };
        match msg {
            Tmessage::Flush(f) => {
                self.flush(tag, f.oldtag, d, msize);
                return None;
            }
            Tmessage::Clunk(c) => {
                let r = self.clunk(c.fid).map(|_| Rmessage::Clunk);
                self.reply_now(tag, r, d, msize);
                return None;
            }
            Tmessage::Remove(c) => {
                // remove(5): the fid is clunked even when the remove fails.
                let r = self.clunk(c.fid).and(Err(FsError::ROFS));
                self.reply_now(tag, r, d, msize);
                return None;
            }
            _ => {}
        }
        // One identity's requests may not take the whole connection.
        let share = match self.request_share(&msg) {
            Ok(s) => s,
            Err(e) => {
                debug!(peer = %self.peer.addr, tag, "{e}");
                self.send(tag, error_reply(d, &e), d, msize);
                return None;
            }
        };
        // Register the tag before spawning so that a fast request cannot
        // commit before it is known. A request naming a fid that a request
        // in flight changes waits for the latest such change there is now
        // (an open behind a walk waits for the walk, a read behind the
        // open for the open), never for one that comes after it.
        let (id, after) = {
            let mut st = lock(&self.state);
            if st.tags.contains_key(&tag) {
                drop(st);
                warn!(peer = %self.peer.addr, tag, "tag already in use");
                self.send(tag, error_reply(d, &FsError::new(errno::EBUSY)), d, msize);
                return None;
            }
            st.next_id += 1;
            let id = st.next_id;
            st.tags.insert(tag, (id, None));
            let after = fid_named(&msg).and_then(|fid| st.changing.get(&fid).cloned());
            (id, after)
        };
        let changes = fid_changed(&msg).map(|fid| (fid, matches!(msg, Tmessage::Walk(_))));
        let me = self.clone();
        let slot = RequestSlot {
            _share: share,
            _permit: permit,
        };
        let op = op_name(&msg);
        let mut request = Box::pin(async move {
            let started = tokio::time::Instant::now();
            let res = AssertUnwindSafe(me.handle(msg, after, d, msize))
                .catch_unwind()
                .await;
            let (r, eff) = res.unwrap_or_else(|_| {
                warn!("filesystem panicked while handling a request; answering EIO");
                (Err(FsError::IO), Effect::None)
            });
            me.fs.request_done(op, started.elapsed(), r.is_ok());
            me.commit(tag, id, r, eff, d, msize);
            drop(slot);
        });
        // Polled once here: a request that needs no waiting (most of an
        // agent's: a walk, a stat, a cached table) is answered without a
        // task of its own, so no task is made, scheduled, stolen by the
        // other worker (waking it) and dropped for it. One that waits is
        // spawned; its task polls it again at once, with its own waker,
        // so nothing registered with the no-op waker here is missed.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if request.as_mut().poll(&mut cx).is_ready() {
            return None;
        }
        // A walk to a new fid or an open that did not finish at once: a
        // request naming that fid that comes while it runs waits for it,
        // so a client may send its getattr or open right behind the walk,
        // and its first read right behind the open, instead of a round
        // trip later. Registered before the next frame is read; done once
        // the request committed (or was dropped: flushed, reset,
        // connection closed).
        let changing =
            changes.and_then(|(fid, creates)| FidChangeInFlight::register(self, fid, creates));
        let task = tokio::spawn(async move {
            request.await;
            drop(changing);
        });
        let mut st = lock(&self.state);
        if let Some((i, h)) = st.tags.get_mut(&tag)
            && *i == id
        {
            *h = Some(task.abort_handle());
        }
        None
    }

    /// Retires the tag, applies the fid effect and queues the reply, unless
    /// the request was flushed meanwhile.
    fn commit(
        &self,
        tag: u16,
        id: u64,
        r: FsResult<Rmessage>,
        eff: Effect<F::Node>,
        d: Dialect,
        msize: u32,
    ) {
        let mut st = lock(&self.state);
        match st.tags.get(&tag) {
            Some((i, _)) if *i == id => {
                st.tags.remove(&tag);
            }
            _ => return, // flushed or reset: no reply, no effect
        }
        let r = match (r, eff) {
            (Ok(m), Effect::Insert(fid, e)) => {
                if st.fids.contains_key(&fid) {
                    Err(FsError::new(errno::EBADF).with(format!("fid {fid} already in use")))
                } else if st.fids.len() + st.afids.len() >= self.limits.max_fids {
                    Err(FsError::new(errno::EMFILE).with("too many fids on this connection"))
                } else {
                    let who = Principal::Uid(e.who.uid);
                    match self.fid_shares.take(who, self.is_service(&e.who), 1) {
                        Ok(share) => {
                            st.fid_shares.insert(fid, share);
                            st.fids.insert(fid, e);
                            st.attached = true;
                            Ok(m)
                        }
                        Err(r) => Err(FsError::new(errno::EMFILE).with(format!(
                            "{} on this connection",
                            r.message(&who, "fids", |n| n.to_string(), "clunk some")
                        ))),
                    }
                }
            }
            (Ok(m), Effect::Replace(fid, old, new)) => {
                if st.fids.get(&fid).is_some_and(|cur| Arc::ptr_eq(cur, &old)) {
                    st.fids.insert(fid, new);
                    Ok(m)
                } else {
                    Err(FsError::new(errno::EBADF).with(format!("fid {fid} was clunked meanwhile")))
                }
            }
            (r, _) => r,
        };
        let msg = match r {
            Ok(m) => m,
            Err(e) => {
                debug!(tag, "error reply: {e}");
                error_reply(d, &e)
            }
        };
        // Queued under the lock: a Tflush that takes the lock next finds the
        // tag retired and its Rflush is queued after this reply.
        self.send(tag, msg, d, msize);
    }

    fn reply_now(&self, tag: u16, r: FsResult<Rmessage>, d: Dialect, msize: u32) {
        let msg = r.unwrap_or_else(|e| error_reply(d, &e));
        self.send(tag, msg, d, msize);
    }

    /// version(5): negotiates, and resets the session: every outstanding
    /// request is aborted and every fid clunked.
    fn version(&self, tag: u16, v: proto::Tversion) -> u32 {
        let negotiated = Dialect::negotiate(&v.version);
        let msize = v.msize.min(self.limits.max_msize);
        let old_fids = {
            let mut st = lock(&self.state);
            for (_, (_, h)) in st.tags.drain() {
                if let Some(h) = h {
                    h.abort();
                }
            }
            let fids = std::mem::take(&mut st.fids);
            st.fid_shares.clear();
            st.afids.clear();
            if msize < proto::MIN_MSIZE {
                st.dialect = None;
            } else {
                st.dialect = negotiated;
                st.msize = msize;
            }
            fids
        };
        let fs = self.fs.clone();
        tokio::spawn(async move {
            for (_, e) in old_fids {
                if let Ok(e) = Arc::try_unwrap(e) {
                    fs.clunk(&e.who, e.node).await;
                }
            }
        });
        let reply_d = negotiated.unwrap_or(Dialect::P2000);
        if msize < proto::MIN_MSIZE {
            let e = FsError::INVAL.with(format!("msize {} below {}", v.msize, proto::MIN_MSIZE));
            self.send(
                tag,
                error_reply(reply_d, &e),
                reply_d,
                self.limits.max_msize,
            );
            return self.limits.max_msize;
        }
        let version = negotiated
            .map(Dialect::version_string)
            .unwrap_or("unknown")
            .to_string();
        debug!(peer = %self.peer.addr, client = %v.version, %version, msize, "version");
        self.send(
            tag,
            Rmessage::Version(proto::Rversion { msize, version }),
            reply_d,
            msize,
        );
        msize
    }

    /// flush(5): cancels `oldtag` if it is still running; Rflush is queued
    /// after any reply the old request already committed.
    fn flush(&self, tag: u16, oldtag: u16, d: Dialect, msize: u32) {
        let mut st = lock(&self.state);
        if let Some((_, Some(h))) = st.tags.remove(&oldtag) {
            h.abort();
        }
        self.send(tag, Rmessage::Flush, d, msize);
    }

    fn is_afid(&self, fid: u32) -> bool {
        lock(&self.state).afids.contains_key(&fid)
    }

    /// Appends to an auth fid's credential; diod accepts pieces only at
    /// consecutive offsets, and so do we.
    fn write_credential(&self, afid: u32, offset: u64, data: &[u8]) -> FsResult<u32> {
        let buf = lock(&self.state)
            .afids
            .get(&afid)
            .cloned()
            .ok_or(FsError::BADF)?;
        let mut b = lock(&buf);
        if data.is_empty() || offset != b.len() as u64 || b.len() + data.len() > 64 * 1024 {
            return Err(FsError::IO.with("credential written out of order or too large"));
        }
        b.extend_from_slice(data);
        Ok(data.len() as u32)
    }

    /// Who is attaching, under the access policy: the auth fid's verified
    /// credential, whose uid must be the one the attach claims (diod's
    /// rule), else what the transport and the policy say (see
    /// [`AccessPolicy::resolve`]).
    async fn authenticate(&self, a: &proto::Tattach) -> FsResult<Identity> {
        let policy = &self.limits.access;
        let claim = Claim {
            uname: &a.uname,
            n_uname: a.n_uname,
        };
        let verified = match &policy.verifier {
            None if a.afid != NOFID => {
                return Err(FsError::BADF.with("no authentication fid exists"));
            }
            None => None,
            Some(_) if a.afid == NOFID => None,
            Some(v) => {
                let buf = lock(&self.state)
                    .afids
                    .get(&a.afid)
                    .cloned()
                    .ok_or(FsError::BADF)?;
                let cred = lock(&buf).clone();
                let v = v.clone();
                let res = tokio::task::spawn_blocking(move || v.verify(&cred))
                    .await
                    .map_err(|e| FsError::IO.with(e.to_string()))?;
                let c = res.map_err(|e| {
                    warn!(peer = %self.peer.addr, "credential refused: {e}");
                    FsError::new(errno::EPERM).with(e)
                })?;
                if claim.uid() != Some(c.uid) {
                    warn!(peer = %self.peer.addr, "credential of uid {} used to attach as {:?}", c.uid, a.uname);
                    return Err(FsError::new(errno::EPERM)
                        .with("credential does not match the attaching user"));
                }
                // Only a credential made for this server proves a service
                // for the connection's later attaches (see `crate::auth`).
                if c.receiver.is_some() && policy.service_uids.contains(&c.uid) {
                    lock(&self.state).proven_service = Some(c.uid);
                }
                Some(c.uid)
            }
        };
        let proven = lock(&self.state).proven_service;
        let id = policy.resolve(&self.peer, verified.or(proven), verified.is_none(), claim)?;
        self.claim_slot(&id)?;
        Ok(id)
    }

    /// Whether `who` is a service identity of the policy: it is not held
    /// to an identity's share, and the others leave it a reserve.
    fn is_service(&self, who: &Identity) -> bool {
        self.limits.access.service_uids.contains(&who.uid)
    }

    /// At a TCP connection's first attach, moves its slot from the peer's
    /// address to the proven principal (a service's credential, or the
    /// user): from then on it counts against that principal's share.
    ///
    /// # Errors
    /// EMFILE when the principal already holds its share of connections.
    fn claim_slot(&self, id: &Identity) -> FsResult<()> {
        let mut slot = lock(&self.slot);
        let Some(cur) = slot.take() else {
            return Ok(());
        };
        if !matches!(cur.principal(), Principal::Addr(_)) {
            *slot = Some(cur);
            return Ok(());
        }
        let p = id.principal();
        let service = self.limits.access.service_uids.contains(&p)
            && matches!(
                id.proof,
                super::Proof::Credential | super::Proof::NamedByService { .. }
            );
        match cur.rekey(Principal::Uid(p), service) {
            Ok(s) => {
                *slot = Some(s);
                Ok(())
            }
            Err((cur, r)) => {
                *slot = Some(cur);
                let why = r.message(
                    &Principal::Uid(p),
                    "connections",
                    |n| n.to_string(),
                    "close some",
                );
                warn!(peer = %self.peer.addr, "attach refused: {why} to this server");
                Err(FsError::new(errno::EMFILE).with(why))
            }
        }
    }

    /// The charge of a request to its identity's share of the
    /// connection's requests in flight; `None` for requests without a fid
    /// (version, auth, attach: bounded by the connection's own limit).
    ///
    /// # Errors
    /// EAGAIN when the identity has its share in flight.
    fn request_share(&self, msg: &Tmessage) -> FsResult<Option<Share>> {
        use Tmessage as T;
        let fid = match msg {
            T::Walk(m) => m.fid,
            T::Open(m) => m.fid,
            T::Lopen(m) => m.fid,
            T::Read(m) => m.fid,
            T::Readdir(m) => m.fid,
            T::Write(m) => m.fid,
            T::Getattr(m) => m.fid,
            T::Stat(m) => m.fid,
            T::Readlink(m) => m.fid,
            T::Statfs(m) => m.fid,
            _ => return Ok(None),
        };
        let Some(who) = lock(&self.state).fids.get(&fid).map(|e| e.who.clone()) else {
            return Ok(None); // answered EBADF by the request itself
        };
        let p = Principal::Uid(who.uid);
        self.request_shares
            .take(p, self.is_service(&who), 1)
            .map(Some)
            .map_err(|r| {
                FsError::new(errno::EAGAIN).with(format!(
                    "{} on this connection",
                    r.message(
                        &p,
                        "requests in flight",
                        |n| n.to_string(),
                        "wait for replies"
                    )
                ))
            })
    }

    /// `who`'s snapshot budget on this connection.
    fn budget(&self, who: &Identity) -> SnapshotBudget {
        lock(&self.budgets)
            .entry(who.uid)
            .or_insert_with(|| {
                SnapshotBudget::new(
                    self.limits.snapshot_bytes_per_connection,
                    self.limits.snapshot_bytes.clone(),
                    Principal::Uid(who.uid),
                    self.is_service(who),
                )
            })
            .clone()
    }

    fn clunk(&self, fid: u32) -> FsResult<()> {
        if lock(&self.state).afids.remove(&fid).is_some() {
            return Ok(());
        }
        let e = {
            let mut st = lock(&self.state);
            st.fid_shares.remove(&fid);
            st.fids.remove(&fid).ok_or(FsError::BADF)?
        };
        if let Ok(e) = Arc::try_unwrap(e) {
            let fs = self.fs.clone();
            tokio::spawn(async move { fs.clunk(&e.who, e.node).await });
        }
        Ok(())
    }

    fn fid(&self, fid: u32) -> FsResult<Arc<FidEntry<F::Node>>> {
        lock(&self.state)
            .fids
            .get(&fid)
            .cloned()
            .ok_or_else(|| FsError::BADF.with(format!("unknown fid {fid}")))
    }

    fn fid_free(&self, fid: u32) -> FsResult<()> {
        if fid == NOFID {
            return Err(FsError::BADF.with("NOFID cannot be bound"));
        }
        if lock(&self.state).fids.contains_key(&fid) {
            return Err(FsError::BADF.with(format!("fid {fid} already in use")));
        }
        Ok(())
    }

    fn opened(&self, fid: u32) -> FsResult<Arc<FidEntry<F::Node>>> {
        let e = self.fid(fid)?;
        if e.opened.is_none() {
            return Err(FsError::BADF.with(format!("fid {fid} is not open")));
        }
        Ok(e)
    }

    /// Answers a request, once the change to its fid in flight when it
    /// came (`after`) is done.
    async fn handle(
        &self,
        msg: Tmessage,
        after: Option<Arc<FidChange>>,
        d: Dialect,
        msize: u32,
    ) -> Reply<F::Node> {
        if let Some(change) = after {
            change.wait(self).await;
        }
        match self.handle_inner(msg, d, msize).await {
            Ok(r) => r,
            Err(e) => (Err(e), Effect::None),
        }
    }

    async fn handle_inner(
        &self,
        msg: Tmessage,
        d: Dialect,
        msize: u32,
    ) -> FsResult<Reply<F::Node>> {
        use Tmessage as T;
        let ok = |m: Rmessage| Ok((Ok(m), Effect::None));
        match msg {
            T::Auth(t) => {
                if self.limits.access.verifier.is_none() {
                    // No authentication configured: diod answers ENOENT here
                    // since 1.0.14 (errno 0 confused the kernel), and clients
                    // then attach with afid = NOFID.
                    return Err(FsError::NOENT.with("authentication not required"));
                }
                self.fid_free(t.afid)?;
                let mut st = lock(&self.state);
                if st.afids.contains_key(&t.afid) {
                    return Err(FsError::BADF.with(format!("fid {} already in use", t.afid)));
                }
                // Auth fids count against the fid limit like any other fid:
                // each can hold a credential of up to 64 KiB.
                if st.fids.len() + st.afids.len() >= self.limits.max_fids {
                    return Err(
                        FsError::new(errno::EMFILE).with("too many fids on this connection")
                    );
                }
                st.afids.insert(t.afid, Arc::new(Mutex::new(Vec::new())));
                let aqid = Qid {
                    ty: proto::qt::AUTH,
                    version: 0,
                    path: 0,
                };
                ok(Rmessage::Auth(proto::Rauth { aqid }))
            }
            T::Attach(a) => {
                let who = self.authenticate(&a).await?;
                self.fid_free(a.fid)?;
                let req = AttachRequest {
                    aname: a.aname,
                    who,
                };
                let (node, qid) = self.fs.attach(&req).await?;
                Ok((
                    Ok(Rmessage::Attach(proto::Rattach { qid })),
                    Effect::Insert(
                        a.fid,
                        FidEntry::walked(node, Arc::new(req.who), qid, &self.limits.gauges),
                    ),
                ))
            }
            T::Walk(w) => self.walk(w, d).await,
            T::Open(o) => self.open(o.fid, OpenFlags::from_9p(o.mode), d, msize).await,
            T::Lopen(o) => {
                self.open(o.fid, OpenFlags::from_linux(o.flags), d, msize)
                    .await
            }
            T::Read(r) => {
                let e = self.opened(r.fid)?;
                if !e.opened.is_some_and(|o| o.read) {
                    return Err(FsError::BADF.with("fid not open for reading"));
                }
                let count = r.count.min(msize - IOHDRSZ);
                if e.qid.is_dir() {
                    if d == Dialect::P2000L {
                        return Err(FsError::ISDIR);
                    }
                    let data = self.dir_read(&e, r.offset, count, d).await?;
                    return ok(Rmessage::Read(proto::Rread { data }));
                }
                let snap = e.snap.as_ref().ok_or(FsError::BADF)?;
                if snap.wants_fresh(r.offset) {
                    let flags = e.opened.unwrap_or(OpenFlags::READ);
                    let contents = self.fs.open(&e.who, &e.node, flags).await?;
                    snap.refresh(contents, &self.budget(&e.who))?;
                }
                let data = snap.read(r.offset, count)?;
                ok(Rmessage::Read(proto::Rread { data }))
            }
            T::Readdir(r) => {
                let e = self.opened(r.fid)?;
                if !e.qid.is_dir() {
                    return Err(FsError::NOTDIR);
                }
                let count = r.count.min(msize - IOHDRSZ);
                let ents = e.snap.as_ref().ok_or(FsError::BADF)?.entries(r.offset)?;
                let (rep, n) = proto::Rreaddir::pack(ents, count);
                if n == 0 && !ents.is_empty() {
                    // An empty reply means "end of directory": never send
                    // one when an entry exists but does not fit.
                    return Err(FsError::INVAL.with(format!(
                        "readdir count {count} too small for the next entry"
                    )));
                }
                ok(Rmessage::Readdir(rep))
            }
            T::Write(w) if self.is_afid(w.fid) => {
                let count = self.write_credential(w.fid, w.offset, &w.data)?;
                ok(Rmessage::Write(proto::Rwrite { count }))
            }
            T::Write(w) => {
                let e = self.opened(w.fid)?;
                if !e.opened.is_some_and(|o| o.write) {
                    return Err(FsError::BADF.with("fid not open for writing"));
                }
                let count = self.fs.write(&e.who, &e.node, w.offset, w.data).await?;
                ok(Rmessage::Write(proto::Rwrite { count }))
            }
            T::Getattr(g) => {
                let e = self.fid(g.fid)?;
                let m = self.fs.getattr(&e.who, &e.node).await?;
                ok(Rmessage::Getattr(proto::Rgetattr {
                    attr: meta_to_attr(&m),
                }))
            }
            T::Stat(s) => {
                let e = self.fid(s.fid)?;
                let stat = self.stat_of(&e.who, &e.node, d).await?;
                ok(Rmessage::Stat(proto::Rstat { stat }))
            }
            T::Readlink(r) => {
                let e = self.fid(r.fid)?;
                let target = self.fs.readlink(&e.who, &e.node).await?;
                ok(Rmessage::Readlink(proto::Rreadlink { target }))
            }
            T::Statfs(s) => {
                let e = self.fid(s.fid)?;
                let statfs = self.fs.statfs(&e.who, &e.node).await?;
                ok(Rmessage::Statfs(proto::Rstatfs { statfs }))
            }
            T::Xattrwalk(x) => {
                self.fid(x.fid)?;
                // Linux v9fs probes system.posix_acl_* on every inode under
                // access=client; ENODATA/EOPNOTSUPP mean "no ACL", any other
                // error fails the lookup with EIO (fs/9p/acl.c). diod
                // answers EOPNOTSUPP on /proc too.
                Err(FsError::OPNOTSUPP)
            }
            T::Fsync(f) => {
                self.fid(f.fid)?;
                ok(Rmessage::Fsync)
            }
            T::Lock(l) => {
                self.fid(l.fid)?;
                // Read-only tree: nothing to conflict with.
                ok(Rmessage::Lock(proto::Rlock { status: 0 }))
            }
            T::Getlock(g) => {
                self.fid(g.fid)?;
                ok(Rmessage::Getlock(proto::Rgetlock {
                    lock_type: 2, // F_UNLCK: no conflicting lock
                    start: g.start,
                    length: g.length,
                    proc_id: g.proc_id,
                    client_id: g.client_id,
                }))
            }
            T::Setattr(s) => {
                // A size of 0, with or without times: a shell's `>` on a
                // file that takes whole writes. Anything else is refused.
                const SIZE: u32 = 0x8;
                const TIMES: u32 = 0x10 | 0x20 | 0x40 | 0x80 | 0x100;
                let a = &s.attr;
                if a.valid & SIZE == 0 || a.size != 0 || a.valid & !(SIZE | TIMES) != 0 {
                    return Err(FsError::ROFS);
                }
                let e = self.fid(s.fid)?;
                self.fs.truncate(&e.who, &e.node).await?;
                ok(Rmessage::Setattr)
            }
            T::Create(_)
            | T::Wstat(_)
            | T::Lcreate(_)
            | T::Symlink(_)
            | T::Mknod(_)
            | T::Rename(_)
            | T::Xattrcreate(_)
            | T::Link(_)
            | T::Mkdir(_)
            | T::Renameat(_)
            | T::Unlinkat(_) => Err(FsError::ROFS),
            // Handled inline by dispatch.
            T::Version(_) | T::Flush(_) | T::Clunk(_) | T::Remove(_) => Err(FsError::INVAL),
        }
    }

    /// walk(5), written once for every filesystem: at most MAXWELEM names;
    /// an error on the first name is an error; a later failure is a partial
    /// Rwalk and newfid stays unbound; no names clones the fid.
    async fn walk(&self, w: proto::Twalk, d: Dialect) -> FsResult<Reply<F::Node>> {
        let e = self.fid(w.fid)?;
        // walk(5) forbids walking an open fid, but diod's clients (diodls -l)
        // walk entries from the opened directory fid and diod allows it, so
        // we do too when the walk binds a new fid; the new fid is unopened.
        if e.opened.is_some() && w.newfid == w.fid {
            return Err(FsError::BADF.with("cannot walk an open fid in place"));
        }
        if w.wnames.len() > MAXWELEM {
            return Err(FsError::INVAL.with(format!(
                "{} names in one walk (max {MAXWELEM})",
                w.wnames.len()
            )));
        }
        if w.newfid != w.fid {
            self.fid_free(w.newfid)?;
        }
        let who = &e.who;
        let mut cur = e.node.clone();
        let mut qid = e.qid;
        let mut wqids = Vec::with_capacity(w.wnames.len());
        for (i, name) in w.wnames.iter().enumerate() {
            let step = if !qid.is_dir() {
                Err(FsError::NOTDIR)
            } else if name.is_empty() || name.contains('/') || name.contains('\0') {
                Err(FsError::NOENT.with(format!("invalid name {name:?}")))
            } else if name == "." {
                Ok((cur.clone(), qid))
            } else {
                match self.fs.walk(who, &cur, name).await {
                    // 9P2000 has no symlinks, so its clients cannot follow
                    // /proc/self themselves: walking *through* a link
                    // follows it when it stays inside the tree.
                    Ok((s, q))
                        if d == Dialect::P2000 && q.is_symlink() && i + 1 < w.wnames.len() =>
                    {
                        self.follow_in_tree(who, &cur, s, q).await
                    }
                    r => r,
                }
            };
            match step {
                Ok((s, q)) => {
                    cur = s;
                    qid = q;
                    wqids.push(q);
                }
                Err(err) if i == 0 => return Err(err),
                Err(_) => break,
            }
        }
        let full = wqids.len() == w.wnames.len();
        let reply = Ok(Rmessage::Walk(proto::Rwalk { wqids }));
        if !full {
            return Ok((reply, Effect::None));
        }
        let entry = FidEntry::walked(cur, e.who.clone(), qid, &self.limits.gauges);
        let eff = if w.newfid == w.fid {
            Effect::Replace(w.fid, e, entry)
        } else {
            Effect::Insert(w.newfid, entry)
        };
        Ok((reply, eff))
    }

    /// Resolves a symlink whose target is a relative path of plain names
    /// (`self -> 1234`) by walking it from the link's directory; anything
    /// else (absolute, `..`, a loop) stays a link and the walk stops there.
    async fn follow_in_tree(
        &self,
        who: &Identity,
        dir: &F::Node,
        mut link: F::Node,
        mut qid: Qid,
    ) -> FsResult<(F::Node, Qid)> {
        for _ in 0..8 {
            if !qid.is_symlink() {
                break;
            }
            let target = self.fs.readlink(who, &link).await?;
            let names: Vec<&str> = target
                .split('/')
                .filter(|n| !n.is_empty() && *n != ".")
                .collect();
            if target.starts_with('/') || names.is_empty() || names.contains(&"..") {
                return Err(FsError::NOENT.with(format!("link to {target:?} leaves the tree")));
            }
            let mut cur = dir.clone();
            let mut q = qid;
            for n in names {
                (cur, q) = self.fs.walk(who, &cur, n).await?;
            }
            (link, qid) = (cur, q);
        }
        Ok((link, qid))
    }

    async fn open(
        &self,
        fid: u32,
        flags: OpenFlags,
        d: Dialect,
        msize: u32,
    ) -> FsResult<Reply<F::Node>> {
        let e = self.fid(fid)?;
        if e.opened.is_some() {
            return Err(FsError::BADF.with(format!("fid {fid} already open")));
        }
        if e.qid.is_dir() && flags.write {
            return Err(FsError::ISDIR);
        }
        let contents = self.fs.open(&e.who, &e.node, flags).await?;
        let snap = Snapshot::new(contents, &self.budget(&e.who))?;
        let qid = e.qid;
        let iounit = msize - IOHDRSZ;
        let entry = Arc::new(FidEntry {
            node: e.node.clone(),
            who: e.who.clone(),
            qid,
            opened: Some(flags),
            snap: Some(snap),
            dir_cursor: tokio::sync::Mutex::new((0, 0)),
            _counted: self.limits.gauges.fid(),
        });
        let reply = match d {
            Dialect::P2000L => Rmessage::Lopen(proto::Rlopen { qid, iounit }),
            _ => Rmessage::Open(proto::Ropen { qid, iounit }),
        };
        Ok((Ok(reply), Effect::Replace(fid, e, entry)))
    }

    /// A 9P2000/.u directory read: whole stat records, never split; the
    /// offset must be 0 or the end of the previous read (read(5)).
    async fn dir_read(
        &self,
        e: &FidEntry<F::Node>,
        offset: u64,
        count: u32,
        d: Dialect,
    ) -> FsResult<Bytes> {
        let mut cur = e.dir_cursor.lock().await;
        if offset == 0 {
            *cur = (0, 0);
        } else if offset != cur.0 {
            return Err(FsError::INVAL.with(format!(
                "directory read at offset {offset}, expected 0 or {}",
                cur.0
            )));
        }
        let ents = e.snap.as_ref().ok_or(FsError::BADF)?.entries(cur.1)?;
        let mut out = BytesMut::new();
        let mut cookie = cur.1;
        for ent in ents {
            if ent.name == "." || ent.name == ".." {
                cookie = ent.offset;
                continue;
            }
            let st = match self.fs.walk(&e.who, &e.node, &ent.name).await {
                Ok((child, _)) => match self.stat_of(&e.who, &child, d).await {
                    Ok(st) => st,
                    Err(_) => {
                        cookie = ent.offset;
                        continue; // vanished between open and stat
                    }
                },
                Err(_) => {
                    cookie = ent.offset;
                    continue;
                }
            };
            if out.len() + st.size(d) > count as usize {
                if out.is_empty() {
                    // read(5): an empty reply is the end of the directory,
                    // so a record that never fits is an error.
                    return Err(FsError::INVAL
                        .with(format!("read count {count} too small for a stat record")));
                }
                break;
            }
            st.encode_to(d, &mut out)
                .map_err(|err| FsError::IO.with(err.to_string()))?;
            cookie = ent.offset;
        }
        let data = out.freeze();
        *cur = (cur.0 + data.len() as u64, cookie);
        Ok(data)
    }

    async fn stat_of(&self, who: &Identity, node: &F::Node, d: Dialect) -> FsResult<Stat> {
        let m = self.fs.getattr(who, node).await?;
        let extension = if d == Dialect::P2000u && m.mode & s_if::FMT == s_if::LNK {
            self.fs.readlink(who, node).await.unwrap_or_default()
        } else {
            String::new()
        };
        Ok(meta_to_stat(&m, d, extension))
    }
}

/// `Rgetattr` from metadata. v9fs asks for BASIC; we fill all of it.
pub fn meta_to_attr(m: &Metadata) -> Attr {
    let (atime_sec, atime_nsec) = epoch_parts(m.atime);
    let (mtime_sec, mtime_nsec) = epoch_parts(m.mtime);
    let (ctime_sec, ctime_nsec) = epoch_parts(m.ctime.unwrap_or(m.mtime));
    Attr {
        valid: proto::getattr::BASIC,
        qid: m.qid,
        mode: m.mode,
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
        nlink: m.nlink.unwrap_or(1),
        rdev: m.rdev,
        size: m.size,
        blksize: 4096,
        blocks: 0,
        atime_sec,
        atime_nsec,
        mtime_sec,
        mtime_nsec,
        ctime_sec,
        ctime_nsec,
        ..Attr::default()
    }
}

/// A 9P2000/.u stat record from metadata.
pub fn meta_to_stat(m: &Metadata, d: Dialect, extension: String) -> Stat {
    use proto::dm;
    let mut mode = m.mode & 0o777;
    match m.mode & s_if::FMT {
        s_if::DIR => mode |= dm::DIR,
        s_if::LNK if d == Dialect::P2000u => mode |= dm::SYMLINK,
        s_if::CHR | s_if::BLK if d == Dialect::P2000u => mode |= dm::DEVICE,
        s_if::FIFO if d == Dialect::P2000u => mode |= dm::NAMEDPIPE,
        s_if::SOCK if d == Dialect::P2000u => mode |= dm::SOCKET,
        _ => {}
    }
    let (uid, gid) = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
    let uname = m.user.clone().unwrap_or_else(|| uid.to_string());
    let gname = m.group.clone().unwrap_or_else(|| gid.to_string());
    let secs = |t| epoch_parts(t).0.min(u32::MAX as u64) as u32;
    Stat {
        ty: 0,
        dev: 0,
        qid: m.qid,
        mode,
        atime: secs(m.atime),
        mtime: secs(m.mtime),
        length: if m.qid.is_dir() { 0 } else { m.size },
        name: m.name.clone().unwrap_or_default(),
        uid: uname.clone(),
        gid: gname,
        muid: uname,
        extension,
        n_uid: uid,
        n_gid: gid,
        n_muid: uid,
    }
}

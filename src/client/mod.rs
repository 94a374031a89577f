//! The 9P client: one async connection to a node ([`Client`]) and handles on
//! the server's files ([`FidHandle`]), with one dialect-neutral API over
//! 9P2000.L, 9P2000.u and 9P2000.
//!
//! Shared by the CLI (`gproc ls/cat/stat`) and the aggregator's node pool,
//! so a connection is cheap when idle: a reader task, a writer task and a
//! few small maps, about 2.5 KiB in all (measured with 3000 connections),
//! no read buffer and no threads. Requests on one connection run
//! concurrently, multiplexed by tag; the private `conn` module holds the
//! tag, fid and flush rules.
//!
//! ```no_run
//! # async fn f() -> Result<(), gproc::client::ClientError> {
//! use gproc::client::{Client, ClientOptions};
//! let addr = "127.0.0.1:5640".parse().unwrap();
//! let client = Client::connect(&addr, ClientOptions::default()).await?;
//! let root = client.attach("nobody", "", None).await?;
//! let loadavg = root.read_all("loadavg").await?;
//! let procs = root.read_dir("/").await?;
//! # Ok(()) }
//! ```
//!
//! Also here: the node [`pool`], its per-node [`health`] and the one
//! re-dialler ([`redial`]) that the pool, the mount and the benchmarks hold
//! their connections in.
//!
//! Depends on [`crate::proto`], [`crate::net`], [`crate::sys`] and
//! [`crate::auth`] (MUNGE credentials).

mod conn;
mod error;
pub mod health;
mod meta;
pub mod pool;
pub mod redial;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::Address;
use crate::proto::{
    self, Dialect, DirEntry, IOHDRSZ, MAXWELEM, NOFID, NONUNAME, Qid, Rmessage, Stat, Statfs,
    Tmessage, errno, getattr,
};
use conn::{NewFid, Shared};

/// Reads in flight while a file fills whole messages (see
/// [`FidHandle::read_to_end`]): enough to keep a loopback connection busy
/// at a 512 KiB msize, few enough that a table read does not crowd out the
/// connection's other requests.
pub const READ_AHEAD: usize = 4;

pub use error::ClientError;
pub use meta::{DirEntryInfo, FileKind, Metadata, s_if};

/// Result of client operations.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// How to connect and how long to wait.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Largest message we offer; the server may lower it. Reads move
    /// `msize - 24` bytes per round trip.
    pub msize: u32,
    /// Force a dialect; `None` asks for 9P2000.L and accepts a server that
    /// answers 9P2000.u or 9P2000.
    pub dialect: Option<Dialect>,
    /// Limit on TCP connect and, separately, on version negotiation.
    pub connect_timeout: Duration,
    /// Limit on each request; an expired request is flushed.
    pub request_timeout: Duration,
    /// Requests in flight at once on this connection; more wait their turn.
    pub max_in_flight: usize,
    /// Largest file or directory listing [`FidHandle::read_all`] and
    /// [`FidHandle::read_dir`] accept, so a node cannot make us buffer
    /// without bound (`/proc/kcore` claims to be the size of memory).
    pub max_read_bytes: u64,
    /// Authenticate with MUNGE when the server asks for it: like diod's
    /// tools, `attach` first sends `Tauth`; a server that answers `Rauth`
    /// gets a MUNGE credential of this process written to the auth fid,
    /// one that answers with an error needs no authentication.
    pub munge: bool,
    /// The receiver named in the credential's payload (a node's name), so
    /// it is good on that server only; `None` sends none (diod's tools).
    pub munge_receiver: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            msize: 1 << 20,
            dialect: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 128,
            max_read_bytes: 64 << 20,
            munge: true,
            munge_receiver: None,
        }
    }
}

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only.
    Read,
    /// Write only.
    Write,
    /// Read and write.
    ReadWrite,
}

impl OpenMode {
    /// Linux open flags for `Tlopen`.
    fn linux_flags(self) -> u32 {
        match self {
            OpenMode::Read => 0,
            OpenMode::Write => 1,
            OpenMode::ReadWrite => 2,
        }
    }

    /// 9P2000 mode for `Topen`.
    fn nine_mode(self) -> u8 {
        match self {
            OpenMode::Read => proto::om::READ,
            OpenMode::Write => proto::om::WRITE,
            OpenMode::ReadWrite => proto::om::RDWR,
        }
    }
}

/// Owns the connection's tasks: when the last [`Client`] clone and the last
/// [`FidHandle`] are gone, the connection is closed.
struct Conn {
    shared: Arc<Shared>,
    opts: ClientOptions,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.fail(ClientError::Closed {
            server: self.shared.server.clone(),
            reason: "closed by the client".into(),
        });
    }
}

/// One 9P connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.conn.shared.server)
            .field("dialect", &self.conn.shared.dialect)
            .field("msize", &self.conn.shared.msize)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Client {
    /// Connects to `addr` and negotiates the version.
    ///
    /// # Errors
    /// The connection cannot be made ([`ClientError::Io`],
    /// [`ClientError::Timeout`]) or the server speaks no dialect we do
    /// ([`ClientError::Version`]).
    pub async fn connect(addr: &Address, opts: ClientOptions) -> Result<Client> {
        let server = addr.to_string();
        let timeout = |op| ClientError::Timeout {
            server: server.clone(),
            op,
            path: String::new(),
            after: opts.connect_timeout,
        };
        match addr {
            Address::Tcp(a) => {
                let s = tokio::time::timeout(
                    opts.connect_timeout,
                    tokio::net::TcpStream::connect(a.as_str()),
                )
                .await
                .map_err(|_| timeout("connect"))?
                .map_err(|e| ClientError::io(&server, e))?;
                // Requests are small and latency-bound: no Nagle delay.
                let _ = s.set_nodelay(true);
                Self::handshake(s, server, opts).await
            }
            Address::Unix(p) => {
                let s =
                    tokio::time::timeout(opts.connect_timeout, tokio::net::UnixStream::connect(p))
                        .await
                        .map_err(|_| timeout("connect"))?
                        .map_err(|e| ClientError::io(&server, e))?;
                Self::handshake(s, server, opts).await
            }
            Address::Inherited(_) => Err(ClientError::io(
                &server,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "an inherited descriptor is a listening socket of a server: connect to host:port or unix:/path",
                ),
            )),
        }
    }

    /// Negotiates the version over an already connected transport (TCP,
    /// Unix, `tokio::io::duplex` in tests). `server` names it in errors.
    ///
    /// # Errors
    /// As [`connect`](Self::connect), after the transport is up.
    pub async fn handshake<T>(
        io: T,
        server: impl Into<String>,
        opts: ClientOptions,
    ) -> Result<Client>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = conn::start(io, server.into(), &opts).await?;
        Ok(Client {
            conn: Arc::new(Conn { shared, opts }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.conn.shared
    }

    /// The server's address as given.
    pub fn server(&self) -> &str {
        &self.conn.shared.server
    }

    /// The negotiated dialect.
    pub fn dialect(&self) -> Dialect {
        self.conn.shared.dialect
    }

    /// The negotiated msize.
    pub fn msize(&self) -> u32 {
        self.conn.shared.msize
    }

    /// The options the connection was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.conn.opts
    }

    /// Replies received on this connection so far (any tag, errors
    /// included).
    pub fn replies_received(&self) -> u64 {
        self.shared()
            .replies
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the connection is dead; every call then fails at once with
    /// [`closed_error`](Self::closed_error).
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// The error that closed the connection, if it is closed.
    pub fn closed_error(&self) -> Option<ClientError> {
        self.is_closed().then(|| self.shared().closed_error())
    }

    /// Closes the connection now: requests in flight fail with
    /// [`ClientError::Closed`].
    pub fn close(&self) {
        self.shared().fail(ClientError::Closed {
            server: self.server().to_string(),
            reason: "closed by the client".into(),
        });
    }

    /// Attaches to the tree `aname` as `uname` (and numeric `n_uname` in
    /// .u/.L; `None` sends "no number"). Our agent serves `""` and
    /// `"/proc"`; diod needs the exported path (`"/proc"`).
    ///
    /// # Errors
    /// The server refuses the attach, or the connection fails.
    pub async fn attach(
        &self,
        uname: &str,
        aname: &str,
        n_uname: Option<u32>,
    ) -> Result<FidHandle> {
        self.attach_as(uname, aname, n_uname, true).await
    }

    /// Attaches naming another user, with no credential of its own: for a
    /// service identity (the aggregator) whose connection already proved
    /// itself (a Unix peer, or a MUNGE credential at its first attach), so
    /// that the server acts as that user.
    ///
    /// # Errors
    /// The server refuses the attach, or the connection fails.
    pub async fn attach_named(&self, uname: &str, aname: &str, uid: u32) -> Result<FidHandle> {
        self.attach_as(uname, aname, Some(uid), false).await
    }

    async fn attach_as(
        &self,
        uname: &str,
        aname: &str,
        n_uname: Option<u32>,
        authenticate: bool,
    ) -> Result<FidHandle> {
        let path = if aname.is_empty() { "/" } else { aname };
        let afid = if authenticate {
            self.authenticate(uname, aname, n_uname, path).await?
        } else {
            None
        };
        let fid = match self.shared().alloc_fid() {
            Ok(f) => f,
            Err(e) => {
                self.forget_afid(afid, path).await;
                return Err(e);
            }
        };
        let reply = self
            .shared()
            .rpc(
                Tmessage::Attach(proto::Tattach {
                    fid,
                    afid: afid.unwrap_or(NOFID),
                    uname: uname.to_string(),
                    aname: aname.to_string(),
                    n_uname: n_uname.unwrap_or(NONUNAME),
                }),
                NewFid::Attach { fid },
                "attach",
                path,
            )
            .await;
        self.forget_afid(afid, path).await;
        let reply = reply?;
        let Rmessage::Attach(a) = reply else {
            return Err(self.unexpected("attach", path));
        };
        Ok(FidHandle {
            client: self.clone(),
            fid,
            qid: a.qid,
            path: "/".into(),
            iounit: None,
            live: true,
        })
    }

    /// `Tauth`, and when the server wants authentication, a MUNGE
    /// credential written to the auth fid. `None`: no authentication.
    async fn authenticate(
        &self,
        uname: &str,
        aname: &str,
        n_uname: Option<u32>,
        path: &str,
    ) -> Result<Option<u32>> {
        if !self.options().munge {
            return Ok(None);
        }
        let afid = self.shared().alloc_fid()?;
        let auth = Tmessage::Auth(proto::Tauth {
            afid,
            uname: uname.to_string(),
            aname: aname.to_string(),
            n_uname: n_uname.unwrap_or(NONUNAME),
        });
        match self.shared().rpc(auth, NewFid::None, "auth", path).await {
            Ok(Rmessage::Auth(_)) => {}
            Ok(_) => {
                self.shared().release_fid_number(afid);
                return Err(self.unexpected("auth", path));
            }
            // The usual answer of a server without authentication.
            Err(ClientError::Remote { .. }) => {
                self.shared().release_fid_number(afid);
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let receiver = self.options().munge_receiver.clone();
        let cred = match tokio::task::spawn_blocking(move || {
            crate::auth::munge_encode(receiver.as_deref())
        })
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.forget_afid(Some(afid), path).await;
                return Err(ClientError::Invalid {
                    server: self.server().to_string(),
                    path: path.to_string(),
                    detail: format!("the server asks for MUNGE authentication: {e}"),
                });
            }
            Err(e) => {
                self.forget_afid(Some(afid), path).await;
                return Err(ClientError::Invalid {
                    server: self.server().to_string(),
                    path: path.to_string(),
                    detail: e.to_string(),
                });
            }
        };
        let chunk = (self.msize() - IOHDRSZ) as usize;
        let mut offset = 0u64;
        for piece in cred.as_bytes().chunks(chunk.max(1)) {
            let w = Tmessage::Write(proto::Twrite {
                fid: afid,
                offset,
                data: Bytes::copy_from_slice(piece),
            });
            if let Err(e) = self.shared().rpc(w, NewFid::None, "auth", path).await {
                self.forget_afid(Some(afid), path).await;
                return Err(e);
            }
            offset += piece.len() as u64;
        }
        Ok(Some(afid))
    }

    /// Clunks an auth fid once the attach is done with it.
    async fn forget_afid(&self, afid: Option<u32>, path: &str) {
        let Some(fid) = afid else { return };
        let r = self
            .shared()
            .rpc(
                Tmessage::Clunk(proto::Tclunk { fid }),
                NewFid::None,
                "clunk",
                path,
            )
            .await;
        if matches!(r, Ok(_) | Err(ClientError::Remote { .. })) {
            self.shared().release_fid_number(fid);
        }
    }

    /// The reader checks reply types against requests, so this is only
    /// reached if that check has a hole; report it, never panic.
    fn unexpected(&self, op: &'static str, path: &str) -> ClientError {
        ClientError::Protocol {
            server: self.server().to_string(),
            detail: format!("unexpected reply to {op} {path}"),
        }
    }

    fn remote(&self, op: &'static str, path: &str, e: u32) -> ClientError {
        ClientError::Remote {
            server: self.server().to_string(),
            op,
            path: path.to_string(),
            errno: e,
            message: errno::to_string(e),
        }
    }
}

/// Splits a path into names: empty parts and `.` are dropped (`/1//status/`
/// is `1`, `status`); `..` is passed to the server.
fn split_path(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect()
}

/// The display path of `rel` below a handle at `base`: `/1` + `status` is
/// `/1/status`.
fn join_path(base: &str, names: &[&str]) -> String {
    let mut out = base.trim_end_matches('/').to_string();
    for n in names {
        out.push('/');
        out.push_str(n);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The request that opens `fid` in dialect `d`.
fn open_request(d: Dialect, fid: u32, mode: OpenMode) -> Tmessage {
    match d {
        Dialect::P2000L => Tmessage::Lopen(proto::Tlopen {
            fid,
            flags: mode.linux_flags(),
        }),
        _ => Tmessage::Open(proto::Topen {
            fid,
            mode: mode.nine_mode(),
        }),
    }
}

/// The request that reads `count` bytes at `offset` of `fid`.
fn read_request(fid: u32, offset: u64, count: u32) -> Tmessage {
    Tmessage::Read(proto::Tread { fid, offset, count })
}

/// A new fid's number while requests pipelined behind the walk that binds
/// it are in flight: given back only once all are answered, so no other
/// walk can bind the number meanwhile and have those requests reach its
/// file. Dropped armed (cancelled midway, or the walk's fate unknown), it
/// clunks the fid; the number is free again on the server's answer.
struct FidReserve<'a> {
    shared: &'a Shared,
    fid: u32,
    armed: bool,
}

impl FidReserve<'_> {
    /// Gives the number back: nothing binds it on the server.
    fn release(&mut self) {
        if self.armed {
            self.armed = false;
            self.shared.release_fid_number(self.fid);
        }
    }
}

impl Drop for FidReserve<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.clunk_detached(self.fid);
        }
    }
}

/// A fid on the server: a file walked to, possibly opened. Dropping the
/// handle clunks the fid in the background, so fids never leak; use
/// [`clunk`](Self::clunk) to wait for it.
#[must_use = "dropping the handle clunks the fid"]
pub struct FidHandle {
    client: Client,
    fid: u32,
    qid: Qid,
    /// Path from the attach root, for error messages.
    path: String,
    /// `Some` once opened (0 means "msize - 24").
    iounit: Option<u32>,
    /// False once clunked explicitly.
    live: bool,
}

impl std::fmt::Debug for FidHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FidHandle")
            .field("server", &self.client.server())
            .field("fid", &self.fid)
            .field("path", &self.path)
            .field("qid", &self.qid)
            .field("open", &self.iounit.is_some())
            .finish()
    }
}

impl Drop for FidHandle {
    fn drop(&mut self) {
        if self.live {
            self.client.shared().clunk_detached(self.fid);
        }
    }
}

impl FidHandle {
    /// The connection this fid belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether `other` is a fid of the same connection (a fid is only
    /// meaningful on the session that made it).
    pub fn same_connection(&self, other: &FidHandle) -> bool {
        Arc::ptr_eq(&self.client.conn, &other.client.conn)
    }

    /// The file's qid (the opened file's, once opened).
    pub fn qid(&self) -> Qid {
        self.qid
    }

    /// The path from the attach root (`/` for the root).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The fid number on the wire (for logs).
    pub fn fid(&self) -> u32 {
        self.fid
    }

    /// Whether [`open`](Self::open) succeeded.
    pub fn is_open(&self) -> bool {
        self.iounit.is_some()
    }

    fn shared(&self) -> &Shared {
        self.client.shared()
    }

    /// Bytes per read request: the server's iounit, at most `msize - 24`.
    fn io_size(&self) -> u32 {
        let max = self.shared().msize - IOHDRSZ;
        match self.iounit {
            Some(n) if n > 0 => n.min(max),
            _ => max,
        }
    }

    /// Walks `path` (relative; `/`-separated; empty clones this fid) to a
    /// new fid. Paths longer than 16 names take several `Twalk`s: the first
    /// to a new fid, the rest move that fid in place, so no intermediate
    /// fid is left behind.
    ///
    /// # Errors
    /// A name does not exist ([`ClientError::Remote`] with ENOENT, naming
    /// the full path), or the connection fails.
    ///
    /// # Cancel safety
    /// A cancelled walk is flushed and its fid clunked if it was bound.
    pub async fn walk(&self, path: &str) -> Result<FidHandle> {
        let names = split_path(path);
        let full = join_path(&self.path, &names);
        self.walk_names(&names, full).await
    }

    /// Walks this fid itself to `path` (`newfid == fid`): no new fid, so
    /// nothing is left to clunk where the old place is not needed again
    /// (a directory's fid moved on to the file looked up in it: one
    /// message less than a clone and its clunk). Consumed either way: on
    /// an error it is dropped, and so clunked.
    ///
    /// # Errors
    /// As [`walk`](Self::walk); an opened fid cannot be walked. A path of
    /// more than 16 names is walked to a new fid.
    pub async fn walk_into(mut self, path: &str) -> Result<FidHandle> {
        let names = split_path(path);
        if names.len() > MAXWELEM {
            return self.walk(path).await;
        }
        let full = join_path(&self.path, &names);
        let reply = self
            .shared()
            .rpc(
                Tmessage::Walk(proto::Twalk {
                    fid: self.fid,
                    newfid: self.fid,
                    wnames: names.iter().map(|s| s.to_string()).collect(),
                }),
                NewFid::None,
                "walk",
                &full,
            )
            .await?;
        match self.check_walk(reply, names.len(), &full)? {
            Walked::All(q) => {
                if let Some(q) = q {
                    self.qid = q;
                }
                self.path = full;
                Ok(self)
            }
            // The fid stayed where it was (walk(5)); dropped below.
            Walked::Partial(_) => Err(self.client.remote("walk", &full, errno::ENOENT)),
        }
    }

    /// Walks to `path` and asks its attributes in one round trip: the
    /// `Tgetattr` on the new fid leaves right behind the `Twalk`, without
    /// waiting for its reply. A server that takes a connection's requests
    /// in order (gproc's) answers both. One that does not may answer the
    /// early getattr with an error, and the attributes are then asked
    /// again after the walk. Never wrong: the new fid is bound by nothing
    /// before this walk (fids are reused only after their `Rclunk`), so the
    /// early getattr can fail but never describe another file.
    ///
    /// # Errors
    /// As [`walk`](Self::walk), then as [`getattr`](Self::getattr).
    pub async fn walk_getattr(&self, path: &str) -> Result<(FidHandle, Metadata)> {
        let names = split_path(path);
        let shared = self.shared();
        if shared.dialect != Dialect::P2000L || names.is_empty() || names.len() > MAXWELEM {
            let f = self.walk(path).await?;
            let m = f.getattr().await?;
            return Ok((f, m));
        }
        let full = join_path(&self.path, &names);
        let newfid = shared.alloc_fid()?;
        let walk = self.walk_rpc(newfid, &names, &full);
        let attr = shared.rpc(
            Tmessage::Getattr(proto::Tgetattr {
                fid: newfid,
                request_mask: getattr::BASIC,
            }),
            NewFid::None,
            "getattr",
            &full,
        );
        let (walked, attr) = futures::join!(walk, attr);
        let h = self
            .walked_to(walked?, names.len(), &names, newfid, full)
            .await?;
        let m = match attr {
            Ok(Rmessage::Getattr(r)) => Metadata::from_attr(&r.attr),
            _ => h.getattr().await?,
        };
        Ok((h, m))
    }

    /// The `Twalk` of `names` (at most [`MAXWELEM`]) from this fid to
    /// `newfid`.
    fn walk_rpc<'a>(
        &'a self,
        newfid: u32,
        names: &[&str],
        full: &'a str,
    ) -> impl Future<Output = Result<Rmessage>> + 'a {
        self.shared().rpc(
            Tmessage::Walk(proto::Twalk {
                fid: self.fid,
                newfid,
                wnames: names.iter().map(|s| s.to_string()).collect(),
            }),
            NewFid::Walk {
                fid: newfid,
                nwname: names.len(),
            },
            "walk",
            full,
        )
    }

    /// The handle of `newfid` from the reply to a walk of the first
    /// `asked` of `names`; a partial walk is the error of the name where
    /// it stopped.
    async fn walked_to(
        &self,
        reply: Rmessage,
        asked: usize,
        names: &[&str],
        newfid: u32,
        full: String,
    ) -> Result<FidHandle> {
        let qid = match self.check_walk(reply, asked, &full)? {
            Walked::All(q) => q,
            Walked::Partial(k) => return Err(self.why_not(names, k, &full).await),
        };
        Ok(FidHandle {
            client: self.client.clone(),
            fid: newfid,
            qid: qid.unwrap_or(self.qid),
            path: full,
            iounit: None,
            live: true,
        })
    }

    async fn walk_names(&self, names: &[&str], full: String) -> Result<FidHandle> {
        let shared = self.shared();
        let mut chunks = names.chunks(MAXWELEM);
        let first = chunks.next().unwrap_or(&[]);
        let newfid = shared.alloc_fid()?;
        let reply = self.walk_rpc(newfid, first, &full).await?;
        let mut h = self
            .walked_to(reply, first.len(), names, newfid, full)
            .await?;
        for (i, chunk) in chunks.enumerate() {
            // In place: newfid == fid moves the fid only if every name is
            // walked (walk(5)); on failure `h` is dropped and clunked.
            let reply = shared
                .rpc(
                    Tmessage::Walk(proto::Twalk {
                        fid: h.fid,
                        newfid: h.fid,
                        wnames: chunk.iter().map(|s| s.to_string()).collect(),
                    }),
                    NewFid::None,
                    "walk",
                    &h.path,
                )
                .await?;
            match self.check_walk(reply, chunk.len(), &h.path)? {
                Walked::All(Some(q)) => h.qid = q,
                Walked::All(None) => {}
                Walked::Partial(k) => {
                    let reached = (i + 1) * MAXWELEM + k;
                    return Err(self.why_not(names, reached, &h.path).await);
                }
            }
        }
        Ok(h)
    }

    /// Why a walk of `names` stopped after `reached` of them. A partial
    /// `Rwalk` says only that the next name failed, which Linux reports as
    /// ENOENT; but in a merged tree the reason is often the node behind
    /// it (down, timed out), so walk to where it stopped and try that one
    /// name alone: a failing first name gets the server's own error. Only
    /// failed walks pay for the two extra round trips.
    async fn why_not(&self, names: &[&str], reached: usize, full: &str) -> ClientError {
        let not_found = || self.client.remote("walk", full, errno::ENOENT);
        let Some(next) = names.get(reached) else {
            return not_found();
        };
        let base_path = join_path(&self.path, &names[..reached]);
        let base = match Box::pin(self.walk_names(&names[..reached], base_path)).await {
            Ok(h) => h,
            Err(e) => return e,
        };
        match Box::pin(base.walk_names(&[next], full.to_string())).await {
            // Gone, or there now: the first answer stands.
            Err(ClientError::Remote { errno: e, .. }) if e != errno::ENOENT => {
                self.client.remote("walk", full, e)
            }
            Err(e) if e.is_connection_error() => e,
            _ => not_found(),
        }
    }

    /// The last qid of a complete walk, or how far a partial one got.
    fn check_walk(&self, reply: Rmessage, asked: usize, path: &str) -> Result<Walked> {
        let Rmessage::Walk(w) = reply else {
            return Err(self.client.unexpected("walk", path));
        };
        if w.wqids.len() > asked {
            let e = ClientError::Protocol {
                server: self.client.server().to_string(),
                detail: format!("walk of {asked} names answered with {} qids", w.wqids.len()),
            };
            self.shared().fail(e.clone());
            return Err(e);
        }
        if w.wqids.len() < asked {
            return Ok(Walked::Partial(w.wqids.len()));
        }
        Ok(Walked::All(w.wqids.last().copied()))
    }

    /// Opens the fid (`Tlopen` in .L, `Topen` otherwise).
    ///
    /// # Errors
    /// The server refuses (permission, a symlink our agent will not
    /// follow, already open).
    pub async fn open(&mut self, mode: OpenMode) -> Result<()> {
        let msg = open_request(self.shared().dialect, self.fid, mode);
        let reply = self
            .shared()
            .rpc(msg, NewFid::None, "open", &self.path)
            .await?;
        self.take_open(reply)
    }

    /// Takes the reply to this fid's open.
    fn take_open(&mut self, reply: Rmessage) -> Result<()> {
        let (qid, iounit) = match reply {
            Rmessage::Lopen(r) => (r.qid, r.iounit),
            Rmessage::Open(r) => (r.qid, r.iounit),
            _ => return Err(self.client.unexpected("open", &self.path)),
        };
        self.qid = qid;
        self.iounit = Some(iounit);
        Ok(())
    }

    /// One read of at most `count` bytes (and at most one message) at
    /// `offset` of an opened file. Empty means end of file.
    ///
    /// # Errors
    /// The server fails the read, or sends more than asked (a protocol
    /// error that closes the connection).
    pub async fn read_at(&self, offset: u64, count: u32) -> Result<Bytes> {
        let count = count.min(self.io_size());
        let reply = self
            .shared()
            .rpc(
                read_request(self.fid, offset, count),
                NewFid::None,
                "read",
                &self.path,
            )
            .await?;
        self.take_read(reply, count)
    }

    /// Takes the reply to a read of `count` bytes of this fid.
    fn take_read(&self, reply: Rmessage, count: u32) -> Result<Bytes> {
        let Rmessage::Read(r) = reply else {
            return Err(self.client.unexpected("read", &self.path));
        };
        if r.data.len() > count as usize {
            let e = ClientError::Protocol {
                server: self.client.server().to_string(),
                detail: format!("read of {count} bytes answered with {} bytes", r.data.len()),
            };
            self.shared().fail(e.clone());
            return Err(e);
        }
        Ok(r.data)
    }

    /// One write of `data` (at most one message's worth) at `offset` of a
    /// file opened for writing; returns how many bytes the server took.
    ///
    /// # Errors
    /// The server refuses the write (a read-only tree, a `ctl` command it
    /// rejects, the kernel's EPERM), or claims more than was sent.
    pub async fn write_at(&self, offset: u64, data: &[u8]) -> Result<u32> {
        let n = data.len().min(self.io_size() as usize);
        let reply = self
            .shared()
            .rpc(
                Tmessage::Write(proto::Twrite {
                    fid: self.fid,
                    offset,
                    data: Bytes::copy_from_slice(&data[..n]),
                }),
                NewFid::None,
                "write",
                &self.path,
            )
            .await?;
        let Rmessage::Write(r) = reply else {
            return Err(self.client.unexpected("write", &self.path));
        };
        if r.count as usize > n {
            let e = ClientError::Protocol {
                server: self.client.server().to_string(),
                detail: format!("write of {n} bytes answered with count {}", r.count),
            };
            self.shared().fail(e.clone());
            return Err(e);
        }
        Ok(r.count)
    }

    /// Reads a file kept open from offset 0 again, for a file its server
    /// takes anew on a read at 0 and answers in full until its end (gproc's
    /// node summary where it says `fresh_at_zero`): a short read is the end,
    /// so a file that fits one read costs one message.
    ///
    /// # Errors
    /// More than `limit` bytes ([`ClientError::TooLarge`]), or a read fails.
    pub async fn reread(&self, limit: u64) -> Result<Bytes> {
        let io = self.io_size();
        let mut out = BytesMut::new();
        loop {
            let data = self.read_at(out.len() as u64, io).await?;
            if out.is_empty() && data.len() < io as usize && data.len() as u64 <= limit {
                // The common case: one read, no copy.
                return Ok(data);
            }
            out.extend_from_slice(&data);
            if out.len() as u64 > limit {
                return Err(self.too_large(limit));
            }
            if data.len() < io as usize {
                return Ok(out.freeze());
            }
        }
    }

    /// [`read_to_end`](Self::read_to_end) of a file on a server known to
    /// serve each open file as a snapshot taken at open (gproc's own): a
    /// read of a whole message that comes back short is the whole file,
    /// so the empty read that would say so is not sent (one round trip of
    /// the three a small file costs). gproc servers clamp a read to
    /// `msize - IOHDRSZ`, which is what is asked here.
    ///
    /// # Errors
    /// As [`read_to_end`](Self::read_to_end).
    pub async fn read_snapshot(&self, limit: u64) -> Result<Bytes> {
        let whole = self.snapshot_read_size();
        let b = self.read_at(0, whole).await?;
        self.snapshot_from(b, whole, limit).await
    }

    /// Opens the fid for reading and reads it as
    /// [`read_snapshot`](Self::read_snapshot) does, in one round trip for
    /// a file that fits a message: the first read, at offset 0, leaves
    /// right behind the open without waiting for its reply. For servers
    /// that take a connection's requests to one fid in order (gproc's,
    /// which a `snapshots` caller knows it talks to); one that does not
    /// may answer the early read with an error, and it is then read again
    /// after the open. Never wrong: the early read names this fid only,
    /// and no other open of it can come between.
    ///
    /// # Errors
    /// As [`open`](Self::open), then as [`read_snapshot`](Self::read_snapshot).
    pub async fn open_read_snapshot(&mut self, limit: u64) -> Result<Bytes> {
        let whole = self.snapshot_read_size();
        let shared = self.shared();
        let open = shared.rpc(
            open_request(shared.dialect, self.fid, OpenMode::Read),
            NewFid::None,
            "open",
            &self.path,
        );
        let read = shared.rpc(
            read_request(self.fid, 0, whole),
            NewFid::None,
            "read",
            &self.path,
        );
        let (opened, first) = futures::join!(open, read);
        self.take_open(opened?)?;
        self.early_snapshot(first, whole, limit).await
    }

    /// Walks to `path`, opens it for reading and reads it as
    /// [`read_snapshot`](Self::read_snapshot) does, all in one round trip
    /// for a file that fits a message: `Twalk`, `Tlopen` and the first
    /// `Tread` leave together (see [`walk_getattr`](Self::walk_getattr)
    /// and [`open_read_snapshot`](Self::open_read_snapshot), for servers
    /// that take them in order). The new fid's number is not reused before
    /// all three are answered, so the open and the read can fail but never
    /// reach another file. Returns the opened handle, the qid the walk
    /// reached and the contents.
    ///
    /// # Errors
    /// As [`walk`](Self::walk), [`open`](Self::open) and
    /// [`read_snapshot`](Self::read_snapshot).
    pub async fn walk_open_read_snapshot(
        &self,
        path: &str,
        limit: u64,
    ) -> Result<(FidHandle, Qid, Bytes)> {
        let names = split_path(path);
        if names.is_empty() || names.len() > MAXWELEM {
            let mut f = self.walk(path).await?;
            let walked = f.qid();
            let b = f.open_read_snapshot(limit).await?;
            return Ok((f, walked, b));
        }
        let shared = self.shared();
        let full = join_path(&self.path, &names);
        let whole = self.snapshot_read_size();
        let newfid = shared.alloc_fid()?;
        // Declared before the requests, so dropped after them: a batch
        // cancelled midway is flushed before the fid is clunked.
        let mut reserve = FidReserve {
            shared,
            fid: newfid,
            armed: true,
        };
        let walk = shared.rpc(
            Tmessage::Walk(proto::Twalk {
                fid: self.fid,
                newfid,
                wnames: names.iter().map(|s| s.to_string()).collect(),
            }),
            // Bound or not, the number is the reserve's to give back.
            NewFid::None,
            "walk",
            &full,
        );
        let open = shared.rpc(
            open_request(shared.dialect, newfid, OpenMode::Read),
            NewFid::None,
            "open",
            &full,
        );
        let read = shared.rpc(read_request(newfid, 0, whole), NewFid::None, "read", &full);
        let (walked, opened, first) = futures::join!(walk, open, read);
        // Every request naming the fid is answered now.
        let walked = match walked {
            Ok(r) => r,
            // The server answered: nothing bound.
            Err(e @ ClientError::Remote { .. }) => {
                reserve.release();
                return Err(e);
            }
            // Bound or not, not known: the reserve clunks it.
            Err(e) => return Err(e),
        };
        let bound = matches!(&walked, Rmessage::Walk(w) if w.wqids.len() == names.len());
        if bound {
            // The handle owns the fid from here.
            reserve.armed = false;
        } else {
            reserve.release();
        }
        let mut h = self
            .walked_to(walked, names.len(), &names, newfid, full)
            .await?;
        let walked = h.qid();
        h.take_open(opened?)?;
        let b = h.early_snapshot(first, whole, limit).await?;
        Ok((h, walked, b))
    }

    /// The snapshot of an opened fid whose first read (at offset 0, of
    /// `whole` bytes) was sent right behind its open and answered `first`:
    /// a server that took the read before the open answered it with an
    /// error, so it is read again.
    async fn early_snapshot(
        &self,
        first: Result<Rmessage>,
        whole: u32,
        limit: u64,
    ) -> Result<Bytes> {
        match first {
            Ok(r) => {
                let b = self.take_read(r, whole)?;
                self.snapshot_from(b, whole, limit).await
            }
            Err(ClientError::Remote { .. }) => self.read_snapshot(limit).await,
            Err(e) => Err(e),
        }
    }

    /// What [`read_snapshot`](Self::read_snapshot) asks in its first
    /// read: a whole message.
    fn snapshot_read_size(&self) -> u32 {
        self.client.msize().saturating_sub(IOHDRSZ)
    }

    /// The snapshot whose first read (at offset 0, of `whole` bytes) gave
    /// `b`: `b` itself if short, else read on.
    async fn snapshot_from(&self, b: Bytes, whole: u32, limit: u64) -> Result<Bytes> {
        if b.len() < whole as usize {
            if b.len() as u64 > limit {
                return Err(self.too_large(limit));
            }
            return Ok(b);
        }
        // A whole message: more may follow, read on from there.
        self.read_rest(b, limit).await
    }

    /// [`read_snapshot`](Self::read_snapshot) if the server is known to
    /// serve snapshots, else [`read_to_end`](Self::read_to_end).
    ///
    /// # Errors
    /// As [`read_to_end`](Self::read_to_end).
    pub async fn read_whole(&self, limit: u64, snapshots: bool) -> Result<Bytes> {
        if snapshots {
            self.read_snapshot(limit).await
        } else {
            self.read_to_end(limit).await
        }
    }

    /// Reads an opened file from offset 0 until an empty read (/proc files
    /// report size 0, so the size cannot be trusted).
    ///
    /// A file whose first read fills a whole message (a cluster table) is
    /// read with [`READ_AHEAD`] reads in flight at consecutive offsets, so
    /// the server sends one message while the client takes the previous
    /// one. A short read anywhere drops the reads made past it (their
    /// offsets assumed full messages) and goes on from where it ended, so
    /// the bytes are the same as one read after another.
    ///
    /// # Errors
    /// More than `limit` bytes ([`ClientError::TooLarge`]), or a read fails.
    pub async fn read_to_end(&self, limit: u64) -> Result<Bytes> {
        let first = self.read_at(0, self.io_size()).await?;
        self.read_rest(first, limit).await
    }

    /// The file whose first read (at offset 0) gave `first`, read on to
    /// its end as [`read_to_end`](Self::read_to_end) does.
    async fn read_rest(&self, first: Bytes, limit: u64) -> Result<Bytes> {
        let size = self.io_size();
        if first.is_empty() {
            return Ok(first);
        }
        if first.len() as u64 > limit {
            return Err(self.too_large(limit));
        }
        let mut total = first.len() as u64;
        let mut chunks: Vec<Bytes> = vec![first];
        // Whole messages so far: ask for the next ones together.
        let mut window = if total == u64::from(size) {
            READ_AHEAD
        } else {
            1
        };
        loop {
            let reads: futures::stream::FuturesOrdered<_> = (0..window)
                .map(|i| self.read_at(total + i as u64 * u64::from(size), size))
                .collect();
            let mut reads = std::pin::pin!(reads);
            let mut eof = false;
            let mut short = false;
            while let Some(r) = reads.next().await {
                let data = r?;
                if data.is_empty() {
                    eof = true;
                    break;
                }
                total += data.len() as u64;
                if total > limit {
                    return Err(self.too_large(limit));
                }
                short = data.len() < size as usize;
                chunks.push(data);
                if short {
                    break;
                }
            }
            // Reads past the end or past a short read are answered but
            // not used: their replies are taken rather than flushed.
            while reads.next().await.is_some() {}
            if eof {
                break;
            }
            window = if short { 1 } else { READ_AHEAD };
        }
        Ok(match chunks.len() {
            // The common case for /proc: one read, no copy.
            1 => chunks.pop().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(total as usize);
                for c in chunks {
                    out.extend_from_slice(&c);
                }
                out.freeze()
            }
        })
    }

    fn too_large(&self, limit: u64) -> ClientError {
        ClientError::TooLarge {
            server: self.client.server().to_string(),
            path: self.path.clone(),
            limit,
        }
    }

    /// Lists an opened directory: `Treaddir` with cookie resume in .L,
    /// stat-record reads in 9P2000/.u. `.` and `..` are left out (9P2000
    /// never has them; .L servers usually do).
    ///
    /// # Errors
    /// A read fails, the listing exceeds `limit` bytes, or the server's
    /// entries are malformed or never end.
    pub async fn list(&self, limit: u64) -> Result<Vec<DirEntryInfo>> {
        self.list_until(limit, false).await
    }

    /// [`list_snapshot`](Self::list_snapshot) if the server is known to
    /// serve snapshots, else [`list`](Self::list).
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn list_whole(&self, limit: u64, snapshots: bool) -> Result<Vec<DirEntryInfo>> {
        if snapshots {
            self.list_snapshot(limit).await
        } else {
            self.list(limit).await
        }
    }

    /// [`list`](Self::list) of a directory on a server known to answer
    /// each `Treaddir` with as many entries of an open-time snapshot as
    /// fit (gproc's own: `proto::Rreaddir::pack`): in .L, a reply with room
    /// left for one more entry of the longest name Linux allows is the
    /// end, and the empty `Treaddir` that would say so is not sent.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn list_snapshot(&self, limit: u64) -> Result<Vec<DirEntryInfo>> {
        self.list_until(limit, true).await
    }

    async fn list_until(&self, limit: u64, snapshot: bool) -> Result<Vec<DirEntryInfo>> {
        // qid, cookie, type, name length and a NAME_MAX name.
        const LONGEST_ENTRY: usize = 13 + 8 + 1 + 2 + 255;
        let mut out = Vec::new();
        let mut total: u64 = 0;
        let dialect = self.shared().dialect;
        // A 9P2000 read of a file returns its bytes, which would be parsed
        // as stat records; refuse up front (in .L the server says ENOTDIR).
        if dialect != Dialect::P2000L && !self.qid.is_dir() {
            return Err(self.client.remote("readdir", &self.path, errno::ENOTDIR));
        }
        let mut offset: u64 = 0;
        loop {
            let data = if dialect == Dialect::P2000L {
                let reply = self
                    .shared()
                    .rpc(
                        Tmessage::Readdir(proto::Treaddir {
                            fid: self.fid,
                            offset,
                            count: self.io_size(),
                        }),
                        NewFid::None,
                        "readdir",
                        &self.path,
                    )
                    .await?;
                let Rmessage::Readdir(r) = reply else {
                    return Err(self.client.unexpected("readdir", &self.path));
                };
                r.data
            } else {
                self.read_at(offset, self.io_size()).await?
            };
            if data.is_empty() {
                break;
            }
            let got = data.len();
            total += got as u64;
            if total > limit {
                return Err(self.too_large(limit));
            }
            let bad = |e: proto::DecodeError| ClientError::Protocol {
                server: self.client.server().to_string(),
                detail: format!("malformed directory entries in {}: {e}", self.path),
            };
            if dialect == Dialect::P2000L {
                let ents = DirEntry::decode_all(data).map_err(bad)?;
                let Some(last) = ents.last() else { break };
                // Cookies are opaque, but one that does not move would
                // have us read the same entries forever.
                if last.offset == offset {
                    return Err(ClientError::Protocol {
                        server: self.client.server().to_string(),
                        detail: format!("readdir cookie of {} did not advance", self.path),
                    });
                }
                offset = last.offset;
                out.extend(
                    ents.iter()
                        .filter(|e| e.name != "." && e.name != "..")
                        .map(DirEntryInfo::from_dirent),
                );
                if snapshot && got + LONGEST_ENTRY <= self.io_size() as usize {
                    break;
                }
            } else {
                // read(5): the next offset is the previous plus the bytes
                // returned.
                offset += data.len() as u64;
                let stats = Stat::decode_dir(dialect, data).map_err(bad)?;
                out.extend(
                    stats
                        .iter()
                        .filter(|s| s.name != "." && s.name != "..")
                        .map(DirEntryInfo::from_stat),
                );
            }
        }
        Ok(out)
    }

    /// This file's metadata (`Tgetattr` in .L, `Tstat` otherwise).
    ///
    /// # Errors
    /// The server fails the request.
    pub async fn getattr(&self) -> Result<Metadata> {
        if self.shared().dialect == Dialect::P2000L {
            let reply = self
                .shared()
                .rpc(
                    Tmessage::Getattr(proto::Tgetattr {
                        fid: self.fid,
                        request_mask: getattr::BASIC,
                    }),
                    NewFid::None,
                    "getattr",
                    &self.path,
                )
                .await?;
            let Rmessage::Getattr(r) = reply else {
                return Err(self.client.unexpected("getattr", &self.path));
            };
            Ok(Metadata::from_attr(&r.attr))
        } else {
            Ok(Metadata::from_stat(&self.stat_record().await?))
        }
    }

    async fn stat_record(&self) -> Result<Stat> {
        let reply = self
            .shared()
            .rpc(
                Tmessage::Stat(proto::Tstat { fid: self.fid }),
                NewFid::None,
                "stat",
                &self.path,
            )
            .await?;
        let Rmessage::Stat(r) = reply else {
            return Err(self.client.unexpected("stat", &self.path));
        };
        Ok(r.stat)
    }

    /// The target of this symlink (`Treadlink` in .L, the stat record's
    /// extension in .u); public as [`readlink("")`](Self::readlink).
    async fn link_target(&self) -> Result<String> {
        match self.shared().dialect {
            Dialect::P2000L => {
                let reply = self
                    .shared()
                    .rpc(
                        Tmessage::Readlink(proto::Treadlink { fid: self.fid }),
                        NewFid::None,
                        "readlink",
                        &self.path,
                    )
                    .await?;
                let Rmessage::Readlink(r) = reply else {
                    return Err(self.client.unexpected("readlink", &self.path));
                };
                Ok(r.target)
            }
            Dialect::P2000u => {
                let st = self.stat_record().await?;
                if st.mode & proto::dm::SYMLINK == 0 {
                    return Err(self.client.remote("readlink", &self.path, errno::EINVAL));
                }
                Ok(st.extension)
            }
            Dialect::P2000 => Err(ClientError::Unsupported {
                server: self.client.server().to_string(),
                op: "readlink",
                path: self.path.clone(),
                dialect: Dialect::P2000,
            }),
        }
    }

    /// File system statistics of the tree (9P2000.L only).
    ///
    /// # Errors
    /// 9P2000/.u servers have no statfs ([`ClientError::Unsupported`]).
    pub async fn statfs(&self) -> Result<Statfs> {
        if self.shared().dialect != Dialect::P2000L {
            return Err(ClientError::Unsupported {
                server: self.client.server().to_string(),
                op: "statfs",
                path: self.path.clone(),
                dialect: self.shared().dialect,
            });
        }
        let reply = self
            .shared()
            .rpc(
                Tmessage::Statfs(proto::Tstatfs { fid: self.fid }),
                NewFid::None,
                "statfs",
                &self.path,
            )
            .await?;
        let Rmessage::Statfs(r) = reply else {
            return Err(self.client.unexpected("statfs", &self.path));
        };
        Ok(r.statfs)
    }

    /// Clunks the fid and waits for the server's answer.
    ///
    /// # Errors
    /// The server fails the clunk; the fid is released either way.
    pub async fn clunk(mut self) -> Result<()> {
        self.live = false;
        let fid = self.fid;
        let shared = self.client.conn.shared.clone();
        let path = std::mem::take(&mut self.path);
        let r = shared
            .rpc(
                Tmessage::Clunk(proto::Tclunk { fid }),
                NewFid::None,
                "clunk",
                &path,
            )
            .await;
        match &r {
            // clunk(5): the fid is gone after any reply.
            Ok(_) | Err(ClientError::Remote { .. }) => shared.release_fid_number(fid),
            // No answer: the server may still hold it; never reuse it.
            Err(_) => {}
        }
        r.map(|_| ())
    }

    // ---- by path, relative to this handle ----

    /// Reads the whole file at `path`: walk, open, read until an empty
    /// read, clunk. At most [`ClientOptions::max_read_bytes`].
    ///
    /// # Errors
    /// Any step fails; the error names the server and the path.
    pub async fn read_all(&self, path: &str) -> Result<Bytes> {
        self.read_all_limited(path, self.client.options().max_read_bytes)
            .await
    }

    /// [`read_all`](Self::read_all) with an explicit byte cap.
    ///
    /// # Errors
    /// As `read_all`; more than `limit` bytes is [`ClientError::TooLarge`].
    pub async fn read_all_limited(&self, path: &str, limit: u64) -> Result<Bytes> {
        let mut f = self.walk(path).await?;
        f.open(OpenMode::Read).await?;
        f.read_to_end(limit).await
    }

    /// Lists the directory at `path` (see [`list`](Self::list)).
    ///
    /// # Errors
    /// Any step fails, or the listing exceeds
    /// [`ClientOptions::max_read_bytes`].
    pub async fn read_dir(&self, path: &str) -> Result<Vec<DirEntryInfo>> {
        let mut d = self.walk(path).await?;
        d.open(OpenMode::Read).await?;
        d.list(self.client.options().max_read_bytes).await
    }

    /// Metadata of the file at `path` (empty: this file).
    ///
    /// # Errors
    /// The walk or the getattr fails.
    pub async fn metadata(&self, path: &str) -> Result<Metadata> {
        if split_path(path).is_empty() {
            return self.getattr().await;
        }
        self.walk(path).await?.getattr().await
    }

    /// The target of the symlink at `path` (empty: this file).
    ///
    /// # Errors
    /// Not a symlink (EINVAL), or plain 9P2000, which has no symlinks
    /// ([`ClientError::Unsupported`]).
    pub async fn readlink(&self, path: &str) -> Result<String> {
        if split_path(path).is_empty() {
            return self.link_target().await;
        }
        self.walk(path).await?.link_target().await
    }
}

/// What one `Twalk` reached.
enum Walked {
    /// Every name; the last qid (none for a clone).
    All(Option<Qid>),
    /// Only this many names.
    Partial(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_join() {
        assert_eq!(split_path("/1//status/"), vec!["1", "status"]);
        assert_eq!(split_path("./a/./.."), vec!["a", ".."]);
        assert!(split_path("/").is_empty());
        assert_eq!(join_path("/", &["1", "status"]), "/1/status");
        assert_eq!(join_path("/1", &["status"]), "/1/status");
        assert_eq!(join_path("/", &[]), "/");
    }
}

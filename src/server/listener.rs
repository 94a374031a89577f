//! Accept loops on TCP and Unix sockets: a connection limit, the peer's
//! credentials on Unix sockets, and graceful shutdown.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::fair::{Principal, Shares};
use super::session::{SessionLimits, serve_connection_in_slot};
use super::{Filesystem, Peer};
use crate::net::Address;

/// Server-wide settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Per-connection limits.
    pub limits: SessionLimits,
    /// Connections served at once; further ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// Connections one principal may hold (a Unix peer's uid; a TCP peer's
    /// address until its first attach proves a uid); `None`: an eighth of
    /// `max_connections`. Principals other than the policy's service uids
    /// together stop an eighth short of `max_connections` (unless one
    /// principal may take them all). A connection past its share is
    /// answered with an error and closed.
    pub max_connections_per_principal: Option<usize>,
    /// Permissions of Unix sockets we create (0o666: access is decided per
    /// peer uid, not by the socket file).
    pub unix_mode: u32,
    /// TCP peers allowed to connect (empty: any). Unix socket peers are
    /// local and always accepted; the session decides what they see.
    pub allow: Vec<Cidr>,
}

/// An address block such as `10.0.0.0/8`, `127.0.0.1` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/BITS`.
    ///
    /// # Errors
    /// A message saying what was expected.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, b) = s.split_once('/').unwrap_or((s, ""));
        let net: std::net::IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: expected an IP address or ADDR/BITS"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = if b.is_empty() {
            max
        } else {
            b.parse().map_err(|_| format!("{s:?}: bad prefix length"))?
        };
        if bits > max {
            return Err(format!("{s:?}: prefix longer than {max} bits"));
        }
        Ok(Cidr { net, bits })
    }

    /// Whether `ip` is in the block (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (a, b, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - self.bits as u32;
        shift >= width || (a >> shift) == (b >> shift)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: SessionLimits::default(),
            max_connections: 4096,
            max_connections_per_principal: None,
            unix_mode: 0o666,
            allow: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The same config under another access policy.
    pub fn with_access(mut self, access: super::AccessPolicy) -> Self {
        self.limits.access = access;
        self
    }
}

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket, with its path when this server created it (then
    /// removed at shutdown; an inherited socket's path belongs to whoever
    /// made it).
    Unix(UnixListener, Option<std::path::PathBuf>),
}

impl Listener {
    /// Binds an address. A stale Unix socket file (nobody listening) is
    /// replaced; a live one is an error.
    ///
    /// # Errors
    /// The address cannot be bound; the message names it.
    pub async fn bind(addr: &Address, unix_mode: u32) -> io::Result<Self> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
        match addr {
            Address::Tcp(a) => Ok(Listener::Tcp(
                TcpListener::bind(a.as_str()).await.map_err(ctx)?,
            )),
            Address::Unix(p) => {
                if p.exists() {
                    if std::os::unix::net::UnixStream::connect(p).is_ok() {
                        return Err(ctx(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            "a server is already listening there",
                        )));
                    }
                    std::fs::remove_file(p).map_err(ctx)?;
                }
                if let Some(dir) = p.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(ctx)?;
                }
                let l = UnixListener::bind(p).map_err(ctx)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(unix_mode))
                    .map_err(ctx)?;
                Ok(Listener::Unix(l, Some(p.clone())))
            }
            Address::Inherited(fd) => inherit(*fd).map_err(ctx),
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> Address {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Address::Tcp(a.to_string()),
                Err(_) => Address::Tcp("?".into()),
            },
            Listener::Unix(l, p) => match p {
                Some(p) => Address::Unix(p.clone()),
                None => l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| Address::Unix(p.to_path_buf())))
                    .unwrap_or_else(|| Address::Unix("?".into())),
            },
        }
    }
}

/// Serves a [`Filesystem`] on any number of listeners.
pub struct Server<F: Filesystem> {
    fs: Arc<F>,
    config: ServerConfig,
}

impl<F: Filesystem> Server<F> {
    /// A server for `fs`.
    pub fn new(fs: Arc<F>, config: ServerConfig) -> Self {
        Self { fs, config }
    }

    /// Accepts on every listener until `shutdown` fires, then waits (up to
    /// 5 s) for open connections to finish their in-flight requests.
    pub async fn serve(&self, listeners: Vec<Listener>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let max = self.config.max_connections.max(1);
        let per = self
            .config
            .max_connections_per_principal
            .unwrap_or(max / 8)
            .max(1);
        let shares = Shares::for_connections(max, per);
        let mut conns = JoinSet::new();
        let mut accepts = JoinSet::new();
        for l in listeners {
            info!("serving 9P on {}", l.local_addr());
            let fs = self.fs.clone();
            let cfg = self.config.clone();
            let slots = slots.clone();
            let sd = shutdown.clone();
            let (ctx, mut crx) = tokio::sync::mpsc::unbounded_channel();
            let shares = shares.clone();
            accepts.spawn(accept_loop(l, fs, cfg, (slots, shares), sd, ctx));
            // Connection tasks are collected so shutdown can wait for them.
            let sd2 = shutdown.clone();
            conns.spawn(async move {
                let mut set = JoinSet::new();
                loop {
                    tokio::select! {
                        c = crx.recv() => match c {
                            Some(fut) => { set.spawn(fut); }
                            None => break,
                        },
                        Some(_) = set.join_next(), if !set.is_empty() => {}
                        _ = sd2.cancelled() => break,
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while set.join_next().await.is_some() {}
                })
                .await;
            });
        }
        while accepts.join_next().await.is_some() {}
        while conns.join_next().await.is_some() {}
    }
}

type ConnFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

async fn accept_loop<F: Filesystem>(
    l: Listener,
    fs: Arc<F>,
    cfg: ServerConfig,
    (slots, shares): (Arc<Semaphore>, Arc<Shares>),
    shutdown: CancellationToken,
    spawn: tokio::sync::mpsc::UnboundedSender<ConnFuture>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = accept(&l) => a,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((conn, peer)) => {
                backoff = Duration::from_millis(5);
                if let (Conn::Tcp(s), false) = (&conn, cfg.allow.is_empty()) {
                    let ip = s.peer_addr().map(|a| a.ip());
                    if !ip.is_ok_and(|ip| cfg.allow.iter().any(|c| c.contains(ip))) {
                        warn!(
                            "refusing connection from {}: not in the allowed addresses",
                            peer.addr
                        );
                        continue;
                    }
                }
                // The connection's charge to its principal's share.
                let (who, service) = match (&conn, peer.uid) {
                    (_, Some(uid)) => (
                        Principal::Uid(uid),
                        cfg.limits.access.service_uids.contains(&uid),
                    ),
                    (Conn::Tcp(s), None) => match s.peer_addr() {
                        Ok(a) => (Principal::Addr(a.ip()), false),
                        Err(_) => continue,
                    },
                    (Conn::Unix(_), None) => continue,
                };
                let slot = match shares.take(who, service, 1) {
                    Ok(s) => s,
                    Err(r) => {
                        let why = r.message(&who, "connections", |n| n.to_string(), "close some");
                        warn!(
                            "refusing connection from {}: {why} to this server",
                            peer.addr
                        );
                        refuse(conn);
                        continue;
                    }
                };
                let fs = fs.clone();
                let limits = cfg.limits.clone();
                let sd = shutdown.clone();
                let slot = Some(slot);
                let fut: ConnFuture = match conn {
                    Conn::Tcp(s) => {
                        let _ = s.set_nodelay(true);
                        Box::pin(async move {
                            serve_connection_in_slot(fs, s, peer, limits, sd, slot).await;
                            drop(permit);
                        })
                    }
                    Conn::Unix(s) => Box::pin(async move {
                        serve_connection_in_slot(fs, s, peer, limits, sd, slot).await;
                        drop(permit);
                    }),
                };
                if spawn.send(fut).is_err() {
                    break;
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(
                    "accept on {} failed: {e}; retrying in {backoff:?}",
                    l.local_addr()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    if let Listener::Unix(_, Some(p)) = &l {
        let _ = std::fs::remove_file(p);
    }
}

/// Takes over inherited descriptor `fd` as a listener, after checking that
/// it is a listening TCP or Unix socket (a wrong number must be an error,
/// not a server that never accepts) and that it was inherited: a
/// descriptor crosses `exec` only without close-on-exec, which every
/// descriptor this process opens has, and which is set here once taken;
/// so one of the process's own sockets, or one taken already, is refused
/// instead of being closed under its owner.
fn inherit(fd: i32) -> io::Result<Listener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let sockopt = |opt: libc::c_int| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`, an int;
        // an invalid or non-socket fd is reported as an error.
        let rc =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &mut len) };
        if rc == 0 {
            Ok(v)
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: F_GETFD reads the descriptor's flags; no memory is touched.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(bad(format!(
            "descriptor {fd} is not open: pass a listening socket as that descriptor"
        )));
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(bad(format!(
            "descriptor {fd} was not inherited (close-on-exec is set): it is already in use by this process"
        )));
    }
    let domain = sockopt(libc::SO_DOMAIN).map_err(|e| {
        bad(format!(
            "descriptor {fd} is not an inherited socket ({e}); pass a listening socket as that descriptor"
        ))
    })?;
    if sockopt(libc::SO_ACCEPTCONN)? == 0 {
        return Err(bad(format!(
            "descriptor {fd} is a socket but not listening"
        )));
    }
    // Taken: not passed on to children, and not taken twice.
    // SAFETY: F_SETFD on an open descriptor; no memory is touched.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: `fd` is an open socket (getsockopt succeeded) that nothing
    // else in this process owns: it was inherited (close-on-exec was
    // clear) and is marked taken above.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match domain {
        libc::AF_INET | libc::AF_INET6 => {
            let l = std::net::TcpListener::from(owned);
            l.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(l)?))
        }
        libc::AF_UNIX => {
            let l = std::os::unix::net::UnixListener::from(owned);
            l.set_nonblocking(true)?;
            Ok(Listener::Unix(UnixListener::from_std(l)?, None))
        }
        d => Err(bad(format!(
            "descriptor {fd} is a socket of address family {d}, not TCP or Unix"
        ))),
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Answers a connection past its principal's share with one error (the
/// reply to the `Tversion` every client sends first: EMFILE, "too many
/// open files", the remedy being to close some) and closes it, in a task
/// of its own so a client that does not read cannot stall accepting.
fn refuse(conn: Conn) {
    use crate::proto::{Dialect, Frame, NOTAG, Rerror, Rmessage, errno};
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::new();
    let msg = Rmessage::Error(Rerror {
        ename: errno::to_string(errno::EMFILE),
        errno: errno::EMFILE,
    });
    if (Frame { tag: NOTAG, msg })
        .encode(Dialect::P2000, &mut buf)
        .is_err()
    {
        return;
    }
    tokio::spawn(async move {
        // Read the Tversion first: closing with it unread would reset the
        // connection before the client reads the answer.
        async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
            mut s: S,
            buf: &[u8],
        ) {
            use tokio::io::AsyncReadExt;
            let mut first = [0u8; 512];
            let _ = s.read(&mut first).await;
            let _ = s.write_all(buf).await;
            let _ = s.shutdown().await;
        }
        let done = async {
            match conn {
                Conn::Tcp(s) => answer(s, &buf).await,
                Conn::Unix(s) => answer(s, &buf).await,
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
    });
}

async fn accept(l: &Listener) -> io::Result<(Conn, Peer)> {
    match l {
        Listener::Tcp(t) => {
            let (s, a) = t.accept().await?;
            Ok((
                Conn::Tcp(s),
                Peer {
                    addr: a.to_string(),
                    uid: None,
                    gid: None,
                },
            ))
        }
        Listener::Unix(u, _) => {
            let (s, _) = u.accept().await?;
            let cred = s.peer_cred()?;
            let peer = Peer {
                addr: format!(
                    "unix:pid={}",
                    cred.pid()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "?".into())
                ),
                uid: Some(cred.uid()),
                gid: Some(cred.gid()),
            };
            Ok((Conn::Unix(s), peer))
        }
    }
}

/// A token cancelled on SIGINT or SIGTERM, for daemons' graceful shutdown.
#[must_use = "the token is cancelled on SIGINT/SIGTERM; a server that does not watch it never stops"]
pub fn shutdown_on_signals() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let t = token.clone();
    // Installed here, before returning, not in the task: a signal that
    // arrives before the task first runs would otherwise kill the process
    // with the default action instead of shutting it down.
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return token;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => info!("SIGINT: shutting down"),
            _ = term.recv() => info!("SIGTERM: shutting down"),
        }
        t.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    /// `fd` as a child would receive it: close-on-exec clear.
    fn inherited(fd: i32) -> i32 {
        // SAFETY: F_SETFD on a descriptor the test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        fd
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(
            c.contains("10.1.2.3".parse().unwrap()) && !c.contains("10.2.0.1".parse().unwrap())
        );
        assert!(
            c.contains("::ffff:10.1.9.9".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.2".parse().unwrap())
        );
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("nope").is_err());
    }

    #[tokio::test]
    async fn an_inherited_listening_socket_serves_and_a_wrong_descriptor_is_refused() {
        // A test (or supervisor) binds port 0 and hands the socket over.
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_l.local_addr().unwrap().port();
        let fd = inherited(std_l.into_raw_fd());
        let l = Listener::bind(&Address::Inherited(fd), 0o600)
            .await
            .unwrap();
        assert_eq!(l.local_addr(), Address::Tcp(format!("127.0.0.1:{port}")));
        let Listener::Tcp(t) = &l else {
            panic!("not TCP")
        };
        let (c, a) = tokio::join!(
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
            t.accept()
        );
        assert!(c.is_ok() && a.is_ok());
        // The same descriptor twice is refused, not closed under the first.
        let again = Listener::bind(&Address::Inherited(fd), 0o600).await;
        assert!(again.is_err_and(|e| e.to_string().contains("already in use")));
        // So is a socket this process opened itself.
        let own = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = Listener::bind(&Address::Inherited(own.as_raw_fd()), 0o600).await;
        assert!(e.is_err_and(|e| e.to_string().contains("not inherited")));

        // Not a socket; a socket that does not listen: clear errors.
        let file = inherited(
            std::fs::File::open("/proc/self/status")
                .unwrap()
                .into_raw_fd(),
        );
        let e = Listener::bind(&Address::Inherited(file), 0o600).await;
        assert!(e.is_err_and(|e| e.to_string().contains("not an inherited socket")));
        let idle = inherited(
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .into_raw_fd(),
        );
        let e = Listener::bind(&Address::Inherited(idle), 0o600).await;
        assert!(e.is_err_and(|e| e.to_string().contains("not listening")));
        // SAFETY: both are ours and were not taken over.
        unsafe {
            libc::close(file);
            libc::close(idle);
        }
    }

    #[tokio::test]
    async fn an_inherited_unix_socket_keeps_its_path_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let fd = inherited(
            std::os::unix::net::UnixListener::bind(&path)
                .unwrap()
                .into_raw_fd(),
        );
        let l = Listener::bind(&Address::Inherited(fd), 0o600)
            .await
            .unwrap();
        assert_eq!(l.local_addr(), Address::Unix(path.clone()));
        assert!(matches!(l, Listener::Unix(_, None)));
    }
}

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

use super::session::{SessionLimits, serve_connection};
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
    /// Unix socket, with its path (removed at shutdown).
    Unix(UnixListener, std::path::PathBuf),
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
                Ok(Listener::Unix(l, p.clone()))
            }
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> Address {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => Address::Tcp(a.to_string()),
                Err(_) => Address::Tcp("?".into()),
            },
            Listener::Unix(_, p) => Address::Unix(p.clone()),
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
        let mut conns = JoinSet::new();
        let mut accepts = JoinSet::new();
        for l in listeners {
            info!("serving 9P on {}", l.local_addr());
            let fs = self.fs.clone();
            let cfg = self.config.clone();
            let slots = slots.clone();
            let sd = shutdown.clone();
            let (ctx, mut crx) = tokio::sync::mpsc::unbounded_channel();
            accepts.spawn(accept_loop(l, fs, cfg, slots, sd, ctx));
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
    slots: Arc<Semaphore>,
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
                let fs = fs.clone();
                let limits = cfg.limits.clone();
                let sd = shutdown.clone();
                let fut: ConnFuture = match conn {
                    Conn::Tcp(s) => {
                        let _ = s.set_nodelay(true);
                        Box::pin(async move {
                            serve_connection(fs, s, peer, limits, sd).await;
                            drop(permit);
                        })
                    }
                    Conn::Unix(s) => Box::pin(async move {
                        serve_connection(fs, s, peer, limits, sd).await;
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
    if let Listener::Unix(_, p) = &l {
        let _ = std::fs::remove_file(p);
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
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
}

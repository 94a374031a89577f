//! [`SimCluster`]: every simulated node as a real 9P server on its own
//! loopback address, with fault injection at the transport level.
//!
//! A node costs one listening socket and one accept task; each accepted
//! connection is served by [`serve_connection`], the agent's own session
//! code. Healthy, slow and huge nodes use it directly (slowness and the
//! huge file live in [`SimNodeFs`]). Hanging and garbage nodes put a small
//! frame-level proxy between the socket and the session; dying nodes drop
//! their listener and connections on a schedule and bind again later;
//! refusing nodes have no listener at all.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::model::{DieSchedule, GarbageKind, HangKind, Sim};
use super::{Fault, SimError, SimNodeFs, SimOptions};
use crate::net::Address;
use crate::server::Peer;
use crate::server::session::{SessionLimits, serve_connection};
use crate::sys::rng::Rng;

/// Pending connections per node listener.
const BACKLOG: u32 = 1024;

/// Ports tried per address when the base port is taken there.
const PORT_TRIES: u16 = 8;

/// Largest frame the fault proxy accepts from a client (the session's own
/// limit is checked behind it).
const MAX_FRAME: usize = (16 << 20) + 64;

/// One node as the outside sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its name (`sim0001`).
    pub name: String,
    /// Where it listens (or, for refusing nodes, where nothing does).
    pub addr: SocketAddr,
    /// What is wrong with it.
    pub fault: Fault,
    /// Whether it serves `/.gproc/ps`.
    pub has_summary: bool,
    /// Path of the huge file on huge nodes.
    pub huge_path: Option<String>,
    /// Flapping schedule of dying nodes.
    pub die: Option<DieSchedule>,
    /// How a hanging node hangs.
    pub hang: Option<HangKind>,
    /// How a garbage node breaks the protocol.
    pub garbage: Option<GarbageKind>,
}

impl NodeInfo {
    /// The address as the config and the client take it.
    pub fn address(&self) -> Address {
        Address::Tcp(self.addr.to_string())
    }
}

/// A running simulated cluster. Dropping it stops the nodes (without
/// waiting); [`shutdown`](Self::shutdown) stops them and waits.
#[must_use = "dropping the cluster shuts its nodes down"]
pub struct SimCluster {
    sim: Arc<Sim>,
    nodes: Vec<NodeInfo>,
    shutdown: CancellationToken,
    /// Every task holds a clone; `recv` returning `None` means all ended.
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
    /// Nodes that share 127.0.0.1 because per-node addresses were not
    /// available.
    single_address: bool,
    /// Set when the descriptor limit covers the listeners but not a
    /// connection to every node.
    fd_warning: Option<String>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("nodes", &self.nodes.len())
            .field("single_address", &self.single_address)
            .finish()
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    // A dying node binds its address again while old connections may sit
    // in TIME_WAIT.
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(BACKLOG)
}

/// The addresses of `n` nodes from `first`, skipping `.0` and `.255`.
fn addresses(first: Ipv4Addr, n: usize) -> Result<Vec<Ipv4Addr>, SimError> {
    let mut out = Vec::with_capacity(n);
    let mut a = u32::from(first);
    while out.len() < n {
        let last = a & 0xff;
        if last == 0 || last == 255 {
            a += 1;
            continue;
        }
        if a >> 24 != 127 {
            return Err(SimError::Addresses(format!(
                "{n} nodes from {first} run past 127.255.255.254: choose a lower first address"
            )));
        }
        out.push(Ipv4Addr::from(a));
        a += 1;
    }
    Ok(out)
}

impl SimCluster {
    /// Builds the model and starts every node.
    ///
    /// # Errors
    /// Bad options, too few file descriptors, or an address that cannot
    /// be bound.
    pub async fn start(opts: SimOptions) -> Result<Self, SimError> {
        Self::start_with_progress(opts, |_, _| {}).await
    }

    /// [`start`](Self::start), calling `progress(started, total)` as nodes
    /// come up (every 100 nodes and at the end).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with_progress(
        opts: SimOptions,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self, SimError> {
        opts.validate()?;
        let n = opts.nodes;
        // A listener and an accepted connection per node, plus room for
        // the runtime and a client or two in the same process. Without
        // room for the listeners nothing works; without room for every
        // connection, only an aggregator connecting to all nodes at once
        // runs short, so that is a warning.
        let listeners = n as u64 + 64;
        let wanted = 2 * n as u64 + 256;
        let fd_warning = match crate::sys::raise_nofile_limit(wanted) {
            Ok(_) => None,
            Err(e) => {
                crate::sys::raise_nofile_limit(listeners).map_err(|e| {
                    SimError::FdLimit(format!("cannot host {n} simulated nodes: {e}"))
                })?;
                let w = format!("not every simulated node can hold a connection at once: {e}");
                warn!("{w}");
                Some(w)
            }
        };
        let ips = addresses(opts.first_address, n)?;
        let base_port = opts.base_port;
        let sim = Arc::new(Sim::new(opts)?);
        let shutdown = CancellationToken::new();
        let (done_tx, done_rx) = mpsc::channel(1);
        // Like an agent without --auth: whoever connects, as whom they say.
        let limits = SessionLimits {
            access: crate::server::AccessPolicy::believing_claims(),
            ..SessionLimits::default()
        };
        let mut nodes = Vec::with_capacity(n);
        let mut single_address = false;
        for (i, &own_ip) in ips.iter().enumerate() {
            let fault = sim.fault(i);
            let (listener, addr) = loop {
                let ip = if single_address {
                    Ipv4Addr::LOCALHOST
                } else {
                    own_ip
                };
                let port = match (single_address, base_port) {
                    (_, 0) => 0,
                    (true, p) => u16::try_from(i)
                        .ok()
                        .and_then(|i| p.checked_add(i))
                        .unwrap_or(0),
                    (false, p) => p,
                };
                match bind_node(ip, port, fault == Fault::Refuse) {
                    Ok(x) => break x,
                    Err(e)
                        if i == 0
                            && !single_address
                            && e.kind() == io::ErrorKind::AddrNotAvailable =>
                    {
                        warn!(
                            "cannot bind {ip}: {e}; putting every node on 127.0.0.1 with its own port"
                        );
                        single_address = true;
                    }
                    Err(e) => {
                        return Err(SimError::Bind {
                            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
                            source: e,
                        });
                    }
                }
            };
            let fs = Arc::new(SimNodeFs::new(sim.clone(), i));
            let ctx = NodeTask {
                fs,
                limits: limits.clone(),
                shutdown: shutdown.clone(),
                done: done_tx.clone(),
            };
            let info = NodeInfo {
                name: sim.node_name(i),
                addr,
                fault,
                has_summary: sim.has_summary(i),
                huge_path: sim.huge_path(i),
                die: (fault == Fault::Die).then(|| sim.die_schedule(i)),
                hang: (fault == Fault::Hang).then(|| sim.hang_kind(i)),
                garbage: (fault == Fault::Garbage).then(|| sim.garbage_kind(i)),
            };
            if let Some(l) = listener {
                match fault {
                    Fault::Hang | Fault::Garbage => {
                        let kind = match (info.hang, info.garbage) {
                            (Some(h), _) => Transport::Hang(h),
                            (_, Some(g)) => Transport::Garbage(g),
                            _ => Transport::Hang(HangKind::Silent),
                        };
                        let seed = sim.options().seed ^ i as u64;
                        tokio::spawn(ctx.faulty(l, kind, seed));
                    }
                    Fault::Die => {
                        let sched = info.die.unwrap_or(DieSchedule {
                            first_down_after: Duration::from_secs(60),
                            down_for: Duration::from_secs(60),
                            up_for: Duration::from_secs(60),
                            permanent: false,
                        });
                        tokio::spawn(ctx.dying(l, addr, sched));
                    }
                    _ => {
                        tokio::spawn(ctx.plain(l));
                    }
                }
            }
            nodes.push(info);
            if (i + 1) % 100 == 0 || i + 1 == n {
                progress(i + 1, n);
                // Let the accept loops start (and a progress printer run).
                tokio::task::yield_now().await;
            }
        }
        Ok(SimCluster {
            sim,
            nodes,
            shutdown,
            done_tx: Some(done_tx),
            done_rx,
            single_address,
            fd_warning,
        })
    }

    /// The model behind the nodes.
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    /// Every node, in order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Whether nodes share 127.0.0.1 (ports differ) because per-node
    /// loopback addresses could not be bound.
    pub fn single_address(&self) -> bool {
        self.single_address
    }

    /// Why not every node can hold a connection at once (the file
    /// descriptor limit), if that is so.
    pub fn fd_warning(&self) -> Option<&str> {
        self.fd_warning.as_deref()
    }

    /// Processes on all nodes at this instant, faulty nodes included.
    pub fn total_processes(&self) -> usize {
        self.sim.total_processes()
    }

    /// Processes at this instant on the nodes that answer 9P (not hanging,
    /// garbage, refusing or dying ones): what an aggregator can see.
    pub fn reachable_processes(&self) -> usize {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.fault, Fault::None | Fault::Slow | Fault::Huge))
            .map(|(i, _)| self.sim.processes_on(i))
            .sum()
    }

    /// One line per fault kind: how many nodes and which.
    pub fn describe_faults(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in Fault::ALL {
            let names: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.fault == f)
                .map(|n| n.name.as_str())
                .collect();
            if !names.is_empty() {
                out.push(format!(
                    "{:<10} {:>6}  {}",
                    f.name(),
                    names.len(),
                    crate::config::hostlist::compress(names.iter().copied())
                ));
            }
        }
        let plain: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| !n.has_summary)
            .map(|n| n.name.as_str())
            .collect();
        if !plain.is_empty() {
            out.push(format!(
                "{:<10} {:>6}  {}",
                "no-summary",
                plain.len(),
                crate::config::hostlist::compress(plain.iter().copied())
            ));
        }
        out
    }

    /// The aggregator configuration for these nodes: one `[[nodes]]` table
    /// per node, since addresses are not derived from names. Loads with
    /// [`Config::from_str`](crate::config::Config::from_str); faulty nodes
    /// carry a comment saying what is wrong with them.
    pub fn config_toml(&self) -> String {
        let o = self.sim.options();
        let mut s = String::with_capacity(64 * self.nodes.len() + 512);
        let first = self.nodes.first().map_or("", |n| n.name.as_str());
        let last = self.nodes.last().map_or("", |n| n.name.as_str());
        let _ = writeln!(
            s,
            "# Aggregator configuration for a `gproc sim` cluster: {} nodes ({first}..{last}),\n\
             # {} processes per node, seed {}, churn {}/min.\n\
             # Node addresses are not derived from names, so each node has its own table.",
            self.nodes.len(),
            o.procs_per_node,
            o.seed,
            o.churn_per_min
        );
        for line in self.describe_faults() {
            let _ = writeln!(s, "#   {line}");
        }
        if o.control {
            let _ = writeln!(
                s,
                "# Every process has a ctl file: signals pass with [control] enabled = true."
            );
        }
        for n in &self.nodes {
            let _ = writeln!(s, "\n[[nodes]]");
            let _ = write!(s, "names = \"{}\"", n.name);
            match n.fault {
                Fault::None => {}
                Fault::Hang => {
                    let _ = write!(
                        s,
                        "  # fault: hang ({:?})",
                        n.hang.unwrap_or(HangKind::Silent)
                    );
                }
                Fault::Garbage => {
                    let _ = write!(
                        s,
                        "  # fault: garbage ({:?})",
                        n.garbage.unwrap_or(GarbageKind::Noise)
                    );
                }
                f => {
                    let _ = write!(s, "  # fault: {}", f.name());
                }
            }
            let _ = writeln!(s, "\naddress = \"{}\"", n.addr);
        }
        s
    }

    /// Stops every node and waits (up to 5 s) for their tasks to end.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.done_tx.take();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done_rx.recv()).await;
    }
}

/// Binds a node's listener (none for refusing nodes, which only need a
/// port nobody listens on). A base port already taken on that address
/// moves up to the next free one.
fn bind_node(
    ip: Ipv4Addr,
    port: u16,
    refuse: bool,
) -> io::Result<(Option<TcpListener>, SocketAddr)> {
    let mut last = None;
    for k in 0..if port == 0 { 1 } else { PORT_TRIES } {
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, port.saturating_add(k)));
        match bind(addr) {
            Ok(l) => {
                let addr = l.local_addr()?;
                if refuse {
                    return Ok((None, addr));
                }
                return Ok((Some(l), addr));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// What a faulty node's proxy does.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Hang(HangKind),
    Garbage(GarbageKind),
}

/// What every node task needs.
struct NodeTask {
    fs: Arc<SimNodeFs>,
    limits: SessionLimits,
    shutdown: CancellationToken,
    done: mpsc::Sender<()>,
}

fn peer_of(a: SocketAddr) -> Peer {
    Peer {
        addr: a.to_string(),
        uid: None,
        gid: None,
    }
}

/// Accepts the next connection; on an error (EMFILE) waits a little rather
/// than spinning.
async fn accept(l: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match l.accept().await {
        Ok((s, a)) => {
            let _ = s.set_nodelay(true);
            Some((s, a))
        }
        Err(e) => {
            debug!("accept on {:?}: {e}", l.local_addr());
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

impl NodeTask {
    /// A healthy (or slow, or huge) node.
    async fn plain(self, l: TcpListener) {
        loop {
            let accepted = tokio::select! {
                a = accept(&l) => a,
                _ = self.shutdown.cancelled() => break,
            };
            if let Some((s, a)) = accepted {
                self.spawn_session(s, a, self.shutdown.clone());
            }
        }
    }

    fn spawn_session(&self, s: TcpStream, a: SocketAddr, stop: CancellationToken) {
        let fs = self.fs.clone();
        let limits = self.limits.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            let io = SlowReplies {
                inner: s,
                fs: fs.clone(),
                sleep: None,
            };
            serve_connection(fs, io, peer_of(a), limits, stop).await;
            drop(done);
        });
    }

    /// A node whose listener and connections go away and come back.
    async fn dying(self, l: TcpListener, addr: SocketAddr, sched: DieSchedule) {
        let mut listener = Some(l);
        let mut down_at = tokio::time::Instant::now() + sched.first_down_after;
        loop {
            if let Some(l) = listener.take() {
                let up = self.shutdown.child_token();
                loop {
                    let accepted = tokio::select! {
                        a = accept(&l) => a,
                        _ = tokio::time::sleep_until(down_at) => break,
                        _ = self.shutdown.cancelled() => return,
                    };
                    if let Some((s, a)) = accepted {
                        self.spawn_session(s, a, up.clone());
                    }
                }
                // The node dies: its connections and its listener go.
                up.cancel();
                drop(l);
                debug!("{}: down", self.fs.hostname());
            }
            if sched.permanent {
                self.shutdown.cancelled().await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(sched.down_for) => {}
                _ = self.shutdown.cancelled() => return,
            }
            loop {
                match bind(addr) {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(e) => {
                        debug!("{}: cannot come back on {addr}: {e}", self.fs.hostname());
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                            _ = self.shutdown.cancelled() => return,
                        }
                    }
                }
            }
            debug!("{}: up", self.fs.hostname());
            down_at = tokio::time::Instant::now() + sched.up_for;
        }
    }

    /// A hanging or garbage node: each connection goes through a proxy.
    async fn faulty(self, l: TcpListener, kind: Transport, seed: u64) {
        let mut conn = 0u64;
        loop {
            let accepted = tokio::select! {
                a = accept(&l) => a,
                _ = self.shutdown.cancelled() => break,
            };
            let Some((s, a)) = accepted else { continue };
            conn += 1;
            let fs = self.fs.clone();
            let limits = self.limits.clone();
            let stop = self.shutdown.clone();
            let done = self.done.clone();
            tokio::spawn(async move {
                proxy(fs, s, a, limits, stop, kind, Rng::new(&[seed, conn])).await;
                drop(done);
            });
        }
    }
}

/// Reads one 9P frame (size, type, tag, body). `Ok(false)` at a clean end
/// of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut hdr = [0u8; 4];
    match r.read_exact(&mut hdr).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let size = crate::proto::check_size(u32::from_le_bytes(hdr), MAX_FRAME as u32)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    buf.clear();
    buf.extend_from_slice(&hdr);
    buf.resize(size, 0);
    r.read_exact(&mut buf[4..]).await?;
    Ok(true)
}

/// Message types of the handshake: Tversion, Tauth, Tattach.
fn is_handshake_request(ty: u8) -> bool {
    matches!(ty, 100 | 102 | 104)
}

/// Reply types no 9P dialect defines: a client must reject them.
const INVALID_TYPES: &[u8] = &[1, 3, 5, 0x81, 0xc1, 0xfb, 0xff];

/// A frame of the right size and tag but a random invalid type and body.
fn garble(frame: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[4] = rng.pick(INVALID_TYPES);
    for b in &mut out[7..] {
        *b = rng.next_u64() as u8;
    }
    out
}

/// A random frame answering a request with tag `tag`.
fn noise(tag: [u8; 2], rng: &mut Rng) -> Vec<u8> {
    let len = 7 + rng.range(8, 200) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(rng.pick(INVALID_TYPES));
    out.extend_from_slice(&tag);
    while out.len() < len {
        out.push(rng.next_u64() as u8);
    }
    out
}

/// Serves one connection of a hanging or garbage node: frames from the
/// client go to a real session over an in-memory pipe (or nowhere), and
/// its replies come back intact, corrupted, or not at all.
async fn proxy(
    fs: Arc<SimNodeFs>,
    sock: TcpStream,
    a: SocketAddr,
    limits: SessionLimits,
    stop: CancellationToken,
    kind: Transport,
    mut rng: Rng,
) {
    let (mut sr, mut sw) = sock.into_split();
    // No session at all: read forever, or answer every frame with noise.
    if let Transport::Hang(HangKind::Silent) | Transport::Garbage(GarbageKind::Noise) = kind {
        let mut buf = Vec::new();
        loop {
            let got = tokio::select! {
                r = read_frame(&mut sr, &mut buf) => r,
                _ = stop.cancelled() => return,
            };
            match got {
                Ok(true) => {
                    if let Transport::Garbage(_) = kind {
                        let tag = [buf[5], buf[6]];
                        if sw.write_all(&noise(tag, &mut rng)).await.is_err() {
                            return;
                        }
                    }
                }
                _ => return,
            }
        }
    }
    let (ours, theirs) = tokio::io::duplex(256 << 10);
    let session_stop = stop.child_token();
    let session = tokio::spawn(serve_connection(
        fs,
        theirs,
        peer_of(a),
        limits,
        session_stop.clone(),
    ));
    let (mut dr, mut dw) = tokio::io::split(ours);
    let handshake_over = AtomicBool::new(false);
    let upstream = async {
        let mut buf = Vec::new();
        while let Ok(true) = read_frame(&mut sr, &mut buf).await {
            if !is_handshake_request(buf[4]) {
                handshake_over.store(true, Ordering::Relaxed);
            }
            let swallow =
                matches!(kind, Transport::Hang(_)) && handshake_over.load(Ordering::Relaxed);
            if !swallow && dw.write_all(&buf).await.is_err() {
                break;
            }
        }
    };
    let downstream = async {
        let mut buf = Vec::new();
        while let Ok(true) = read_frame(&mut dr, &mut buf).await {
            let out = match kind {
                _ if !handshake_over.load(Ordering::Relaxed) => buf.clone(),
                Transport::Garbage(GarbageKind::Oversize) => {
                    let mut o = 0x7fff_fff0u32.to_le_bytes().to_vec();
                    o.extend_from_slice(&buf[4..]);
                    o
                }
                Transport::Garbage(_) => garble(&buf, &mut rng),
                Transport::Hang(_) => continue,
            };
            if sw.write_all(&out).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = stop.cancelled() => {}
    }
    session_stop.cancel();
    let _ = session.await;
}

/// A connection of a slow node: every reply is written after the node's
/// next delay (none on other nodes). Done on the transport because reads
/// of an open file are answered by the session from the open contents,
/// without a filesystem call to delay.
struct SlowReplies {
    inner: TcpStream,
    fs: Arc<SimNodeFs>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for SlowReplies {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SlowReplies {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        if self.sleep.is_none()
            && let Some(d) = self.fs.request_delay()
        {
            self.sleep = Some(Box::pin(tokio::time::sleep(d)));
        }
        if let Some(s) = self.sleep.as_mut() {
            std::task::ready!(s.as_mut().poll(cx));
        }
        let r = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_write(cx, buf));
        self.sleep = None;
        std::task::Poll::Ready(r)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

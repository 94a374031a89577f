//! The fan-out pool: one 9P connection per node, opened lazily or eagerly,
//! a global bound on requests in flight, a per-request deadline, and a
//! per-node state machine (idle, up, down with reconnect under capped
//! exponential backoff with jitter).
//!
//! Everything the aggregator asks of a node is path-based: an operation
//! walks from the node's attach root. So a reconnect needs no fid replay:
//! the next operation walks again on the new connection, and handles from
//! the old one fail cleanly with a "connection closed" error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::client::{Client, ClientError, ClientOptions, FidHandle};
use crate::net::Address;
use crate::proto::{Dialect, errno};

/// How to reach one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its name (its directory in the merged tree).
    pub name: String,
    /// Where to dial.
    pub address: Address,
    /// The export to attach.
    pub aname: String,
    /// User to attach as.
    pub uname: String,
    /// Numeric uid to attach as (.u/.L).
    pub uid: u32,
    /// Dialect to force; `None` negotiates.
    pub dialect: Option<Dialect>,
}

/// Pool-wide settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Requests to all nodes together.
    pub max_in_flight: usize,
    /// Requests to one node.
    pub max_in_flight_per_node: usize,
    /// Limit on one operation on one node (connect included).
    pub request_timeout: Duration,
    /// Limit on connect + version + attach.
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Connects in progress at once.
    pub connect_concurrency: usize,
    /// msize asked of nodes.
    pub msize: u32,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            max_in_flight_per_node: 16,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            connect_concurrency: 64,
            msize: 256 << 10,
        }
    }
}

/// Why an operation on a node failed.
#[derive(Debug, Clone, Error)]
pub enum PoolError {
    /// The node is down and its next reconnect attempt is not due yet.
    #[error("{node}: down ({reason}); next retry in {retry_in:?}")]
    Down {
        /// Node name.
        node: String,
        /// The error that took it down.
        reason: String,
        /// Time until the next connect attempt.
        retry_in: Duration,
    },
    /// The operation did not finish within its deadline.
    #[error("{node}: no answer within {after:?}")]
    Timeout {
        /// Node name.
        node: String,
        /// The deadline.
        after: Duration,
    },
    /// The node answered with an error or the connection failed.
    #[error("{node}: {source}")]
    Client {
        /// Node name.
        node: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// No such node in the pool.
    #[error("no node named {0:?}")]
    NoSuchNode(String),
}

impl PoolError {
    /// The errno to pass on to a 9P client of the aggregator.
    pub fn errno(&self) -> u32 {
        match self {
            PoolError::Down { .. } => errno::EHOSTDOWN,
            PoolError::Timeout { .. } => errno::ETIMEDOUT,
            PoolError::Client { source, .. } => source.errno(),
            PoolError::NoSuchNode(_) => errno::ENOENT,
        }
    }

    /// Whether the node answered (an error about the file, not the node).
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            PoolError::Client {
                source: ClientError::Remote { .. },
                ..
            }
        )
    }
}

/// A node's health as shown in `/nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Never contacted (lazy connect).
    Idle,
    /// Connected.
    Up,
    /// Unreachable; the reason.
    Down(String),
}

/// A snapshot of a node's status.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// Health.
    pub state: NodeState,
    /// Negotiated dialect while up.
    pub dialect: Option<Dialect>,
    /// Round trip of the last successful operation.
    pub rtt: Option<Duration>,
    /// Wall-clock time of the last successful operation.
    pub last_contact: Option<SystemTime>,
    /// The last error, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// Consecutive failures (connects that failed, requests that got no
    /// answer at all) since the last operation that succeeded; drives the
    /// reconnect backoff.
    pub failures: u32,
}

struct Health {
    status: NodeStatus,
    /// No connect attempt before this (backoff).
    retry_at: Option<Instant>,
}

/// One node of the pool.
pub struct Node {
    /// Stable index: part of the aggregator's qid paths, never reused.
    pub index: u32,
    /// How to reach it.
    pub spec: NodeSpec,
    /// The live connection and its attach root. A tokio mutex: held across
    /// the connect so concurrent first uses make one connection.
    conn: tokio::sync::Mutex<Option<Arc<FidHandle>>>,
    health: Mutex<Health>,
    per_node: Semaphore,
    /// A background reconnect is waiting for this node's retry time.
    reconnect_scheduled: AtomicBool,
}

impl Node {
    /// The current status.
    pub fn status(&self) -> NodeStatus {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone()
    }
}

/// The pool of node connections.
pub struct Pool {
    opts: PoolOptions,
    nodes: RwLock<Arc<Vec<Arc<Node>>>>,
    by_name: RwLock<Arc<HashMap<String, Arc<Node>>>>,
    global: Arc<Semaphore>,
    connects: Arc<Semaphore>,
    next_index: AtomicU64,
    /// Itself, for the background reconnect tasks (which end when the pool
    /// is dropped).
    me: Weak<Pool>,
}

impl Pool {
    /// A pool over `nodes` (nothing is connected yet).
    pub fn new(nodes: Vec<NodeSpec>, opts: PoolOptions) -> Arc<Self> {
        let pool = Arc::new_cyclic(|me| Self {
            global: Arc::new(Semaphore::new(opts.max_in_flight.max(1))),
            connects: Arc::new(Semaphore::new(opts.connect_concurrency.max(1))),
            opts,
            nodes: RwLock::new(Arc::new(Vec::new())),
            by_name: RwLock::new(Arc::new(HashMap::new())),
            next_index: AtomicU64::new(1),
            me: me.clone(),
        });
        pool.set_nodes(nodes);
        pool
    }

    /// The options in force.
    pub fn options(&self) -> &PoolOptions {
        &self.opts
    }

    /// Replaces the node table (config reload): nodes whose spec is
    /// unchanged keep their index and connection; removed ones are dropped
    /// (their connections close when the last operation ends); new and
    /// changed ones get fresh indices. Returns the indices removed.
    pub fn set_nodes(&self, specs: Vec<NodeSpec>) -> Vec<u32> {
        let old = self.by_name();
        let mut list = Vec::with_capacity(specs.len());
        let mut map = HashMap::with_capacity(specs.len());
        for spec in specs {
            let node = match old.get(&spec.name) {
                Some(n) if n.spec == spec => n.clone(),
                _ => Arc::new(Node {
                    index: self.next_index.fetch_add(1, Ordering::Relaxed) as u32,
                    spec: spec.clone(),
                    conn: tokio::sync::Mutex::new(None),
                    health: Mutex::new(Health {
                        status: NodeStatus {
                            state: NodeState::Idle,
                            dialect: None,
                            rtt: None,
                            last_contact: None,
                            last_error: None,
                            failures: 0,
                        },
                        retry_at: None,
                    }),
                    per_node: Semaphore::new(self.opts.max_in_flight_per_node.max(1)),
                    reconnect_scheduled: AtomicBool::new(false),
                }),
            };
            map.insert(spec.name.clone(), node.clone());
            list.push(node);
        }
        let removed = old
            .values()
            .filter(|n| map.get(&n.spec.name).is_none_or(|m| m.index != n.index))
            .map(|n| n.index)
            .collect();
        *self.nodes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
        *self.by_name.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        removed
    }

    /// Every node, in config order.
    pub fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn by_name(&self) -> Arc<HashMap<String, Arc<Node>>> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.by_name().get(name).cloned()
    }

    /// Connects every node now, `connect_concurrency` at a time, and
    /// reports progress every 10% on large pools.
    pub async fn connect_all(self: &Arc<Self>) {
        let nodes = self.nodes();
        let total = nodes.len();
        let mut tasks: FuturesUnordered<_> = nodes
            .iter()
            .map(|n| {
                let me = self.clone();
                let n = n.clone();
                async move { me.root(&n).await.is_ok() }
            })
            .collect();
        let (mut done, mut up) = (0usize, 0usize);
        let step = (total / 10).max(1);
        while let Some(ok) = tasks.next().await {
            done += 1;
            up += ok as usize;
            if total >= 100 && done % step == 0 {
                info!("connecting nodes: {done}/{total} done, {up} up");
            }
        }
        info!("connected {up} of {total} nodes");
    }

    /// The node's attach root, connecting if it was never connected. A
    /// node that is down fails at once: it is reconnected in the
    /// background ([`Self::schedule_reconnect`]), so no table or read waits
    /// for a connect to a node known to be down.
    async fn root(&self, node: &Arc<Node>) -> Result<Arc<FidHandle>, PoolError> {
        if let Some(e) = Self::down_error(node) {
            return Err(e);
        }
        self.connect(node).await
    }

    /// The error for a node that is down, with the time to its next
    /// reconnect attempt.
    fn down_error(node: &Node) -> Option<PoolError> {
        let h = node.health.lock().unwrap_or_else(|p| p.into_inner());
        let NodeState::Down(reason) = &h.status.state else {
            return None;
        };
        Some(PoolError::Down {
            node: node.spec.name.clone(),
            reason: reason.clone(),
            retry_in: h
                .retry_at
                .map(|at| at.saturating_duration_since(Instant::now()))
                .unwrap_or_default(),
        })
    }

    /// After a node went down, waits for its retry time and reconnects it
    /// (once per down period; a failed attempt schedules the next one).
    fn schedule_reconnect(&self, node: &Arc<Node>) {
        if node.reconnect_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, node) = (self.me.clone(), node.clone());
        tokio::spawn(async move {
            let at = node
                .health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retry_at;
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
            node.reconnect_scheduled.store(false, Ordering::Release);
            let Some(pool) = me.upgrade() else {
                return; // the pool is gone
            };
            // Removed or replaced by a reload: not ours to reconnect.
            if pool
                .node(&node.spec.name)
                .is_none_or(|n| n.index != node.index)
            {
                return;
            }
            if matches!(node.status().state, NodeState::Down(_)) {
                let _ = pool.connect(&node).await;
            }
        });
    }

    /// Returns the live connection, or connects now (the caller waits).
    async fn connect(&self, node: &Arc<Node>) -> Result<Arc<FidHandle>, PoolError> {
        if let Ok(slot) = node.conn.try_lock()
            && let Some(r) = slot.as_ref()
            && !r.client().is_closed()
        {
            return Ok(r.clone());
        }
        let Some(me) = self.me.upgrade() else {
            return Err(PoolError::Down {
                node: node.spec.name.clone(),
                reason: "pool shut down".into(),
                retry_in: Duration::ZERO,
            });
        };
        // In a task of its own: a caller that gives up (its request timed
        // out) must not cancel the attempt, whose outcome (up, or down with
        // a backoff) is what keeps the next callers from waiting too.
        let n = node.clone();
        match tokio::spawn(async move { me.connect_now(&n).await }).await {
            Ok(r) => r,
            Err(e) => Err(PoolError::Down {
                node: node.spec.name.clone(),
                reason: format!("connect task failed: {e}"),
                retry_in: Duration::ZERO,
            }),
        }
    }

    async fn connect_now(&self, node: &Arc<Node>) -> Result<Arc<FidHandle>, PoolError> {
        let mut slot = node.conn.lock().await;
        if let Some(r) = slot.as_ref() {
            if !r.client().is_closed() {
                return Ok(r.clone());
            }
            *slot = None;
        }
        // The attempt that held the lock before us may just have failed.
        if let Some(e) = Self::down_error(node)
            && let PoolError::Down { retry_in, .. } = &e
            && !retry_in.is_zero()
        {
            return Err(e);
        }
        let _permit = self.connects.acquire().await.map_err(|_| PoolError::Down {
            node: node.spec.name.clone(),
            reason: "pool shut down".into(),
            retry_in: Duration::ZERO,
        })?;
        let copts = ClientOptions {
            msize: self.opts.msize,
            dialect: node.spec.dialect,
            connect_timeout: self.opts.connect_timeout,
            request_timeout: self.opts.request_timeout,
            max_in_flight: self.opts.max_in_flight_per_node.max(1),
            ..ClientOptions::default()
        };
        let spec = &node.spec;
        let attempt = async {
            let c = Client::connect(&spec.address, copts).await?;
            let root = c.attach(&spec.uname, &spec.aname, Some(spec.uid)).await?;
            // One request past the attach: a node that attaches and then
            // answers nothing is caught here, in the background, instead
            // of by the next table that reads it.
            root.getattr().await?;
            Ok::<_, ClientError>(root)
        };
        let res = match tokio::time::timeout(self.opts.connect_timeout * 2, attempt).await {
            Ok(r) => r.map_err(|e| PoolError::Client {
                node: spec.name.clone(),
                source: e,
            }),
            Err(_) => Err(PoolError::Timeout {
                node: spec.name.clone(),
                after: self.opts.connect_timeout * 2,
            }),
        };
        match res {
            Ok(root) => {
                let root = Arc::new(root);
                let mut h = node.health.lock().unwrap_or_else(|p| p.into_inner());
                if h.status.state != NodeState::Up {
                    debug!(node = %spec.name, "node up");
                }
                h.status.state = NodeState::Up;
                h.status.dialect = Some(root.client().dialect());
                // `failures` is reset by the first operation that succeeds,
                // not by the connect: a node that accepts and then hangs
                // keeps backing off.
                h.retry_at = None;
                *slot = Some(root.clone());
                Ok(root)
            }
            Err(e) => {
                self.mark_down(node, &e);
                Err(e)
            }
        }
    }

    fn mark_down(&self, node: &Arc<Node>, e: &PoolError) {
        let mut h = node.health.lock().unwrap_or_else(|p| p.into_inner());
        h.status.failures = h.status.failures.saturating_add(1);
        let delay = backoff(
            self.opts.reconnect_min,
            self.opts.reconnect_max,
            h.status.failures,
            node.index,
        );
        h.retry_at = Some(Instant::now() + delay);
        let reason = match e {
            PoolError::Client { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        if h.status.state != NodeState::Down(reason.clone()) {
            warn!(node = %node.spec.name, "node down: {reason}; retry in {delay:?}");
        }
        h.status.last_error = Some(reason.clone());
        h.status.state = NodeState::Down(reason);
        drop(h);
        self.schedule_reconnect(node);
    }

    /// Runs `op` against `node`'s attach root under the global and per-node
    /// limits and the request deadline. A connection failure marks the
    /// node down (and drops the connection); an error answer does not.
    ///
    /// # Errors
    /// The node is down, slow, or answered with an error.
    pub async fn with_node<T, F, Fut>(&self, node: &Arc<Node>, op: F) -> Result<T, PoolError>
    where
        F: FnOnce(Arc<FidHandle>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let name = &node.spec.name;
        let deadline = self.opts.request_timeout;
        // The connection the request went out on, once it did, and how
        // many replies that connection had received then.
        let sent_on: std::sync::Mutex<Option<(Arc<FidHandle>, u64)>> = std::sync::Mutex::new(None);
        let work = async {
            let _g = self.global.acquire().await;
            let _n = node.per_node.acquire().await;
            let root = self.root(node).await?;
            let seen = root.client().replies_received();
            *sent_on.lock().unwrap_or_else(|p| p.into_inner()) = Some((root.clone(), seen));
            let started = Instant::now();
            let r = op(root.clone()).await;
            match &r {
                Ok(_) => {
                    let mut h = node.health.lock().unwrap_or_else(|p| p.into_inner());
                    h.status.rtt = Some(started.elapsed());
                    h.status.last_contact = Some(SystemTime::now());
                    h.status.failures = 0;
                }
                Err(e) if e.is_connection_error() => {
                    root.client().close();
                    let pe = PoolError::Client {
                        node: name.clone(),
                        source: e.clone(),
                    };
                    self.mark_down(node, &pe);
                }
                Err(_) => {
                    // The node answered: it is alive.
                    let mut h = node.health.lock().unwrap_or_else(|p| p.into_inner());
                    h.status.last_contact = Some(SystemTime::now());
                }
            }
            r.map_err(|e| PoolError::Client {
                node: name.clone(),
                source: e,
            })
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => {
                let e = PoolError::Timeout {
                    node: name.clone(),
                    after: deadline,
                };
                let sent = sent_on.lock().unwrap_or_else(|p| p.into_inner()).take();
                match sent {
                    // Sent, and not one reply came back on this node's
                    // connection for a whole request timeout: it hangs.
                    // Drop the connection (its other waiters fail now) and
                    // back off, so the next tables do not wait for it too.
                    Some((root, seen)) if root.client().replies_received() == seen => {
                        root.client().close();
                        self.mark_down(node, &e);
                    }
                    // Busy but answering, or never sent (the pool's own
                    // limits were full): not the node's fault.
                    _ => {
                        let mut h = node.health.lock().unwrap_or_else(|p| p.into_inner());
                        h.status.last_error = Some(format!("no answer within {deadline:?}"));
                    }
                }
                Err(e)
            }
        }
    }

    /// Runs `op` on every node of `nodes` concurrently and yields results
    /// as they arrive; a node not done by `deadline` yields a timeout, so
    /// one hung node never delays the rest past it.
    pub fn fan_out<'a, T, F, Fut>(
        &'a self,
        nodes: &[Arc<Node>],
        deadline: Duration,
        op: F,
    ) -> impl futures::Stream<Item = (Arc<Node>, Result<T, PoolError>)> + 'a
    where
        T: 'a,
        F: Fn(Arc<FidHandle>) -> Fut + Clone + 'a,
        Fut: std::future::Future<Output = Result<T, ClientError>> + 'a,
    {
        nodes
            .iter()
            .map(|n| {
                let n = n.clone();
                let op = op.clone();
                async move {
                    let r = match tokio::time::timeout(deadline, self.with_node(&n, op)).await {
                        Ok(r) => r,
                        Err(_) => Err(PoolError::Timeout {
                            node: n.spec.name.clone(),
                            after: deadline,
                        }),
                    };
                    (n, r)
                }
            })
            .collect::<FuturesUnordered<_>>()
    }
}

/// Reconnect delay after `failures` consecutive failures: exponential from
/// `min`, capped at `max`, with ±25% jitter derived from the node index and
/// the attempt so thousands of nodes lost together do not retry together.
pub fn backoff(min: Duration, max: Duration, failures: u32, seed: u32) -> Duration {
    let exp = min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max);
    // splitmix64: cheap, deterministic, well spread.
    let mut z = (seed as u64) << 32 | failures as u64;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let frac = (z % 1000) as f64 / 1000.0; // 0..1
    exp.mul_f64(0.75 + 0.5 * frac).min(max)
}

/// Raises the soft open-file limit as far as the hard limit allows and
/// checks that `needed` descriptors fit.
///
/// # Errors
/// The hard limit is below `needed`: the message says how many are needed
/// and how to raise the limit.
pub fn raise_nofile_limit(needed: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(format!(
                "getrlimit(RLIMIT_NOFILE): {}",
                std::io::Error::last_os_error()
            ));
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    if lim.rlim_cur < needed {
        return Err(format!(
            "{needed} file descriptors are needed (one per node plus clients) but the limit is {} \
             (hard {}); raise it with `ulimit -n` or LimitNOFILE= in the systemd unit",
            lim.rlim_cur, lim.rlim_max
        ));
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let d1 = backoff(min, max, 1, 7);
        assert!(
            d1 >= Duration::from_millis(750) && d1 <= Duration::from_millis(1250),
            "{d1:?}"
        );
        let d4 = backoff(min, max, 4, 7);
        assert!(
            d4 >= Duration::from_secs(6) && d4 <= Duration::from_secs(10),
            "{d4:?}"
        );
        assert!(backoff(min, max, 30, 7) <= max);
        let spread: std::collections::HashSet<_> =
            (0..100).map(|s| backoff(min, max, 3, s)).collect();
        assert!(spread.len() > 50, "jitter spreads nodes apart");
    }

    #[test]
    fn nofile_limit_is_raised_or_explained() {
        assert!(raise_nofile_limit(16).is_ok());
        let e = raise_nofile_limit(u64::MAX).unwrap_err();
        assert!(e.contains("ulimit"), "{e}");
    }
}

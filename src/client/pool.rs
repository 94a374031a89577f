//! The fan-out pool: one 9P connection per node, opened lazily or eagerly,
//! a global bound on requests in flight, a per-request deadline, and a
//! per-node [`Health`](super::health::Health) (idle, up, down with
//! reconnect under capped exponential backoff with jitter).
//!
//! Each node's connection is a [`Redialer`]: everything the aggregator asks
//! of a node is path-based (an operation walks from the node's attach
//! root), so a reconnect needs no fid replay.
//!
//! An operation runs as the pool's service identity (the node spec's user)
//! or on behalf of a [`User`]: then it starts from that user's own attach
//! root on the node's one connection, made at the user's first operation
//! and kept until the connection is replaced, so the node acts as that
//! user and its kernel decides what they may read.
//!
//! Fair shares (issue 12 item 8): one user's operations on a node may
//! hold at most `max_in_flight_per_user` of its `max_in_flight_per_node`
//! permits, and on all nodes together a quarter of `max_in_flight`; users
//! together hold at most three quarters of either bound, the last quarter
//! being the service identity's, so one user's slow or large reads cannot
//! stop other users' reads or the summary and table refresh. A user past
//! their share waits for their own earlier operations (within the request
//! deadline), holding no permit anyone else needs (the pool's share is
//! taken before the node's).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::info;

pub use super::health::{Backoff, NodeState, NodeStatus};
use super::redial::{DialError, RedialPolicy, Redialer, Target};
use super::{ClientError, ClientOptions, FidHandle};
use crate::net::Address;
use crate::proto::{Dialect, errno};
use crate::sys;

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
    /// Authenticate with MUNGE, naming the node as the credential's
    /// receiver; otherwise no credential is ever sent to it.
    pub munge: bool,
}

/// A user on whose behalf an operation runs: named in a `Tattach` on the
/// node's connection, which the node believes because the connection is
/// the service identity's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The uid (the same on every node: one user database).
    pub uid: u32,
    /// The name sent as `uname` (the uid in decimal when unknown).
    pub name: Arc<str>,
}

/// Most user attach roots kept per node connection; past it the oldest
/// are clunked (and made again when used).
const MAX_USER_ROOTS: usize = 512;

/// One bound's fair shares: each user's own semaphore (made while in
/// use) and the users' part of the bound, the rest being the service's.
struct UserShares {
    share: usize,
    users: Semaphore,
    own: std::sync::Mutex<HashMap<u32, Arc<Semaphore>>>,
}

impl UserShares {
    /// Shares of `bound`: `share` each, three quarters to users together.
    fn new(bound: usize, share: usize) -> Self {
        let bound = bound.max(1);
        Self {
            share: share.clamp(1, bound),
            users: Semaphore::new((bound - bound / 4).max(1)),
            own: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `uid`'s own share, then for the users' part.
    async fn acquire(&self, uid: u32) -> UserSlot<'_> {
        let sem = sys::lock(&self.own)
            .entry(uid)
            .or_insert_with(|| Arc::new(Semaphore::new(self.share)))
            .clone();
        let mut slot = UserSlot {
            shares: self,
            uid,
            sem,
            permits: None,
        };
        // Neither semaphore is ever closed.
        if let Ok(own) = slot.sem.clone().acquire_owned().await
            && let Ok(all) = self.users.acquire().await
        {
            slot.permits = Some((own, all));
        }
        slot
    }
}

/// A user's permits of one [`UserShares`]; the user's own semaphore is
/// forgotten when no operation of theirs holds or waits for it.
struct UserSlot<'a> {
    shares: &'a UserShares,
    uid: u32,
    sem: Arc<Semaphore>,
    permits: Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::SemaphorePermit<'a>,
    )>,
}

impl Drop for UserSlot<'_> {
    fn drop(&mut self) {
        self.permits = None;
        let mut m = sys::lock(&self.shares.own);
        // Only the map's and ours: nobody else uses it; forget it.
        if Arc::strong_count(&self.sem) == 2 {
            m.remove(&self.uid);
        }
    }
}

/// The user attach roots of one node connection.
#[derive(Default)]
struct UserRoots {
    /// The service root these were attached beside; a new connection
    /// starts afresh.
    service: Option<Arc<FidHandle>>,
    /// By uid, each made once however many operations ask at once.
    roots: HashMap<u32, Arc<tokio::sync::OnceCell<Arc<FidHandle>>>>,
    /// Uids in the order their roots were first asked for.
    order: std::collections::VecDeque<u32>,
}

/// Pool-wide settings. Their defaults are the `[pool]` section's
/// ([`crate::config::PoolConfig`]); `Default` is implemented in the
/// composition root, [`crate::aggregator`], from those.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Requests to all nodes together.
    pub max_in_flight: usize,
    /// Requests to one node.
    pub max_in_flight_per_node: usize,
    /// Requests of one user to one node (see the module docs).
    pub max_in_flight_per_user: usize,
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
}

/// One node of the pool.
pub struct Node {
    /// Stable index: part of the aggregator's qid paths, never reused.
    pub index: u32,
    /// How to reach it.
    pub spec: NodeSpec,
    /// The connection, its attach root and the node's health.
    dialer: Redialer,
    per_node: Semaphore,
    /// Users' shares of `per_node`.
    shares: UserShares,
    /// A background reconnect is waiting for this node's retry time.
    reconnect_scheduled: AtomicBool,
    /// Users' attach roots on the current connection.
    users: std::sync::Mutex<UserRoots>,
}

impl Node {
    /// The current status.
    pub fn status(&self) -> NodeStatus {
        self.dialer.health().status().clone()
    }
}

/// The pool of node connections.
pub struct Pool {
    opts: PoolOptions,
    nodes: RwLock<Arc<Vec<Arc<Node>>>>,
    by_name: RwLock<Arc<HashMap<String, Arc<Node>>>>,
    global: Arc<Semaphore>,
    /// Users' shares of `global`: a quarter of it each.
    shares: UserShares,
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
            shares: UserShares::new(opts.max_in_flight, opts.max_in_flight / 4),
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

    /// A node's re-dialler: its target and how it re-dials.
    fn dialer(&self, spec: &NodeSpec, index: u32) -> Redialer {
        let o = &self.opts;
        let target = Target {
            name: spec.name.clone(),
            addr: spec.address.clone(),
            aname: spec.aname.clone(),
            uname: spec.uname.clone(),
            uid: Some(spec.uid),
            opts: ClientOptions {
                msize: o.msize,
                dialect: spec.dialect,
                connect_timeout: o.connect_timeout,
                request_timeout: o.request_timeout,
                max_in_flight: o.max_in_flight_per_node.max(1),
                munge: spec.munge,
                munge_receiver: spec.munge.then(|| spec.name.clone()),
                ..ClientOptions::default()
            },
        };
        let policy = RedialPolicy {
            backoff: Backoff {
                min: o.reconnect_min,
                max: o.reconnect_max,
                jitter: true,
            },
            seed: index,
            attempt_timeout: Some(o.connect_timeout * 2),
            // A node that attaches and then answers nothing is caught in
            // the background instead of by the next table that reads it.
            probe: true,
        };
        Redialer::new(target, policy)
    }

    /// A fresh index from the same counter as the nodes' own, for what an
    /// aggregator numbers beside them (the nodes below a lower
    /// aggregator): unique with theirs, never reused.
    pub fn allocate_index(&self) -> u32 {
        self.next_index.fetch_add(1, Ordering::Relaxed) as u32
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
                _ => {
                    let index = self.next_index.fetch_add(1, Ordering::Relaxed) as u32;
                    Arc::new(Node {
                        index,
                        dialer: self.dialer(&spec, index),
                        spec: spec.clone(),
                        per_node: Semaphore::new(self.opts.max_in_flight_per_node.max(1)),
                        shares: UserShares::new(
                            self.opts.max_in_flight_per_node,
                            self.opts.max_in_flight_per_user,
                        ),
                        reconnect_scheduled: AtomicBool::new(false),
                        users: std::sync::Mutex::new(UserRoots::default()),
                    })
                }
            };
            map.insert(spec.name.clone(), node.clone());
            list.push(node);
        }
        let removed = old
            .values()
            .filter(|n| map.get(&n.spec.name).is_none_or(|m| m.index != n.index))
            .map(|n| n.index)
            .collect();
        *sys::write(&self.nodes) = Arc::new(list);
        *sys::write(&self.by_name) = Arc::new(map);
        removed
    }

    /// Requests to nodes in flight now, all users and the service
    /// together (for `/metrics`).
    pub fn in_flight(&self) -> usize {
        self.opts
            .max_in_flight
            .max(1)
            .saturating_sub(self.global.available_permits())
    }

    /// Every node, in config order.
    pub fn nodes(&self) -> Arc<Vec<Arc<Node>>> {
        sys::read(&self.nodes).clone()
    }

    fn by_name(&self) -> Arc<HashMap<String, Arc<Node>>> {
        sys::read(&self.by_name).clone()
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
        let h = node.dialer.health();
        let (reason, retry_in) = h.down(Instant::now())?;
        Some(PoolError::Down {
            node: node.spec.name.clone(),
            reason: reason.to_string(),
            retry_in,
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
            let at = node.dialer.health().retry_at();
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
        if let Some(s) = node.dialer.current() {
            return Ok(s.root);
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
        let name = node.spec.name.clone();
        match node.dialer.session(Some(&self.connects)).await {
            Ok(s) => Ok(s.root),
            // The attempt that held the dial before us may just have failed.
            Err(DialError::Backoff {
                reason, retry_in, ..
            }) => Err(PoolError::Down {
                node: name,
                reason,
                retry_in,
            }),
            Err(DialError::Failed(source)) => {
                self.schedule_reconnect(node);
                Err(PoolError::Client { node: name, source })
            }
            Err(DialError::TimedOut(after)) => {
                self.schedule_reconnect(node);
                Err(PoolError::Timeout { node: name, after })
            }
        }
    }

    /// The node failed under an operation: down, and reconnected later.
    fn mark_down(&self, node: &Arc<Node>, e: &PoolError) {
        let reason = match e {
            PoolError::Client { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        node.dialer.failed(reason);
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
        self.with_node_as(node, None, op).await
    }

    /// [`Self::with_node`] on behalf of `user` (`None`: the service
    /// identity): `op` gets that user's attach root, made on first use.
    ///
    /// # Errors
    /// The node is down, slow, refused the user's attach, or answered
    /// with an error.
    pub async fn with_node_as<T, F, Fut>(
        &self,
        node: &Arc<Node>,
        user: Option<&User>,
        op: F,
    ) -> Result<T, PoolError>
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
            // A user first waits for their own share of the node, then
            // for the users' part; only then for the shared permits.
            let _u = match user {
                Some(u) => Some((
                    self.shares.acquire(u.uid).await,
                    node.shares.acquire(u.uid).await,
                )),
                None => None,
            };
            let _g = self.global.acquire().await;
            let _n = node.per_node.acquire().await;
            let root = self.root(node).await?;
            let seen = root.client().replies_received();
            *sys::lock(&sent_on) = Some((root.clone(), seen));
            let started = Instant::now();
            let r = match user {
                None => op(root.clone()).await,
                Some(u) => match Self::user_root(node, &root, u).await {
                    Ok(ur) => op(ur).await,
                    Err(e) => Err(e),
                },
            };
            match &r {
                Ok(_) => node
                    .dialer
                    .health()
                    .succeeded(started.elapsed(), SystemTime::now()),
                Err(e) if e.is_connection_error() => {
                    root.client().close();
                    let pe = PoolError::Client {
                        node: name.clone(),
                        source: e.clone(),
                    };
                    self.mark_down(node, &pe);
                }
                // The node answered: it is alive.
                Err(_) => node.dialer.health().answered(SystemTime::now()),
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
                // Sent, and not one reply came back on this node's
                // connection for a whole request timeout: it hangs. Drop
                // the connection (its other waiters fail now) and back
                // off, so the next tables do not wait for it too. Busy but
                // answering, or never sent (the pool's own limits were
                // full), is not the node's fault.
                let silent = sys::lock(&sent_on)
                    .take()
                    .filter(|(root, seen)| root.client().replies_received() == *seen);
                if let Some((root, _)) = &silent {
                    root.client().close();
                }
                if node
                    .dialer
                    .timed_out(silent.is_some(), e.to_string(), deadline)
                {
                    self.schedule_reconnect(node);
                }
                Err(e)
            }
        }
    }

    /// `user`'s attach root beside the service `root` on the same
    /// connection: made once (concurrent first uses wait for one attach),
    /// forgotten when the connection is replaced. A refused attach is not
    /// kept, so the next operation asks again.
    async fn user_root(
        node: &Node,
        root: &Arc<FidHandle>,
        user: &User,
    ) -> Result<Arc<FidHandle>, ClientError> {
        let cell = {
            let mut u = sys::lock(&node.users);
            if !u.service.as_ref().is_some_and(|s| Arc::ptr_eq(s, root)) {
                *u = UserRoots {
                    service: Some(root.clone()),
                    ..UserRoots::default()
                };
            }
            if !u.roots.contains_key(&user.uid) {
                while u.roots.len() >= MAX_USER_ROOTS {
                    let Some(old) = u.order.pop_front() else {
                        break;
                    };
                    u.roots.remove(&old);
                }
                u.order.push_back(user.uid);
            }
            u.roots.entry(user.uid).or_default().clone()
        };
        let aname = node.spec.aname.clone();
        cell.get_or_try_init(|| async {
            root.client()
                .attach_named(&user.name, &aname, user.uid)
                .await
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Runs `op` on every node of `nodes` concurrently and yields each
    /// node's result as it arrives, `None` for a node not done by
    /// `deadline`, so one hung node never delays the rest past it. The
    /// cluster-wide fan-out: the tree's tables gather through it.
    ///
    /// One timer for the whole fan-out, not one per node: at 10,000 nodes
    /// a timer each was a tenth of a live refresh's CPU. At the deadline
    /// the work still going is dropped and each of its nodes yields `None`.
    pub fn fan_out_with<'a, T, F, Fut>(
        &'a self,
        nodes: &[Arc<Node>],
        deadline: Duration,
        op: F,
    ) -> impl futures::Stream<Item = (Arc<Node>, Option<T>)> + 'a
    where
        T: 'a,
        F: Fn(Arc<Node>) -> Fut + 'a,
        Fut: std::future::Future<Output = T> + 'a,
    {
        let mut running: FuturesUnordered<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let work = op(n.clone());
                async move { (i, work.await) }
            })
            .collect();
        let nodes = nodes.to_vec();
        let mut done = vec![false; nodes.len()];
        let mut timer = Box::pin(tokio::time::sleep(deadline));
        // Past the deadline: where the scan for nodes not done is.
        let mut expired: Option<usize> = None;
        futures::stream::poll_fn(move |cx| {
            use std::task::Poll;
            if expired.is_none() {
                match running.poll_next_unpin(cx) {
                    Poll::Ready(Some((i, t))) => {
                        done[i] = true;
                        return Poll::Ready(Some((nodes[i].clone(), Some(t))));
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                running = FuturesUnordered::new();
                expired = Some(0);
            }
            let at = expired.get_or_insert(0);
            while let Some(&d) = done.get(*at) {
                let i = *at;
                *at += 1;
                if !d {
                    return Poll::Ready(Some((nodes[i].clone(), None)));
                }
            }
            Poll::Ready(None)
        })
    }

    /// [`Self::fan_out_with`] for one operation on each node's attach root
    /// under [`Self::with_node`]; a node not done by `deadline` yields a
    /// timeout.
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
        self.fan_out_with(nodes, deadline, move |n| {
            let op = op.clone();
            async move { self.with_node(&n, op).await }
        })
        .map(move |(n, r)| {
            let r = r.unwrap_or_else(|| {
                Err(PoolError::Timeout {
                    node: n.spec.name.clone(),
                    after: deadline,
                })
            });
            (n, r)
        })
    }
}

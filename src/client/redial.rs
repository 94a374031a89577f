//! The one re-dialler: a connection to one 9P server, dialled and attached
//! on first use and again on the first use after it is lost, with the
//! server's [`Health`] deciding how long a failed dial is remembered
//! ([`Backoff`]). The node pool, `gproc mount`, `gproc top` and the load
//! benchmark all hold their connections in one.
//!
//! Its users keep no fid open between operations (every operation walks
//! from the attach root), so a re-dial needs nothing replayed: the next
//! walk simply starts from the new attach root, and handles from the old
//! connection fail cleanly with a "connection closed" error.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::health::{Backoff, Health};
use super::{Client, ClientError, ClientOptions, FidHandle};
use crate::net::Address;
use crate::sys;

/// Where and as whom to attach.
#[derive(Debug, Clone)]
pub struct Target {
    /// How the server is named in logs and in its health's errors (a node
    /// name, or the address).
    pub name: String,
    /// The server.
    pub addr: Address,
    /// The tree to attach (`""`, `/proc` for diod, `/NODE` on an
    /// aggregator).
    pub aname: String,
    /// The user name sent in `Tattach`.
    pub uname: String,
    /// The numeric user sent in `Tattach` (.u/.L).
    pub uid: Option<u32>,
    /// Connection options (timeouts, msize, byte caps).
    pub opts: ClientOptions,
}

/// How to re-dial.
#[derive(Debug, Clone, Copy)]
pub struct RedialPolicy {
    /// How long a failed dial is remembered: dials in that window fail at
    /// once with the same error instead of each waiting for a connect
    /// timeout against a server that is down.
    pub backoff: Backoff,
    /// Keys the backoff's jitter (a node index).
    pub seed: u32,
    /// Limit on one whole dial (connect, version, attach, probe).
    pub attempt_timeout: Option<Duration>,
    /// Send one request past the attach: a server that attaches and then
    /// answers nothing is caught by the dial, not by the next operation.
    pub probe: bool,
}

impl RedialPolicy {
    /// The same delay after every failed dial, no probe and no limit on a
    /// dial beyond the client's own timeouts: for one interactive user.
    pub const fn fixed(d: Duration) -> Self {
        RedialPolicy {
            backoff: Backoff::fixed(d),
            seed: 0,
            attempt_timeout: None,
            probe: false,
        }
    }
}

/// A live attach: the root fid and which dial it came from.
#[derive(Debug, Clone)]
pub struct Session {
    /// Counts dials, so a failure seen on an old session never tears down
    /// a newer one ([`Redialer::invalidate`]).
    pub generation: u64,
    /// The attach root.
    pub root: Arc<FidHandle>,
}

/// Why no session could be had.
#[derive(Debug, Clone)]
pub enum DialError {
    /// The last dial failed and the next is not due yet.
    Backoff {
        /// The health's reason for being down.
        reason: String,
        /// The last dial's error.
        last: ClientError,
        /// Time until the next dial may start.
        retry_in: Duration,
    },
    /// This dial failed (recorded in the health).
    Failed(ClientError),
    /// This dial did not finish within the policy's attempt timeout
    /// (recorded in the health).
    TimedOut(Duration),
}

impl DialError {
    /// The error as a client error (a timed-out dial as a `connect`
    /// timeout), for callers that report only those.
    pub fn into_client_error(self, target: &Target) -> ClientError {
        match self {
            DialError::Backoff { last, .. } => last,
            DialError::Failed(e) => e,
            DialError::TimedOut(after) => ClientError::Timeout {
                server: target.addr.to_string(),
                op: "connect",
                path: String::new(),
                after,
            },
        }
    }
}

/// The connection manager of one server.
pub struct Redialer {
    target: Target,
    policy: RedialPolicy,
    /// The current session; a std mutex because it is only read or
    /// replaced, never held across an await.
    current: Mutex<Option<Session>>,
    /// Serializes dials so that many operations noticing a dead connection
    /// at once make one new connection; holds the dial count and the last
    /// failed dial's error.
    dial: tokio::sync::Mutex<(u64, Option<ClientError>)>,
    health: Mutex<Health>,
}

impl Redialer {
    /// A re-dialler for `target`; nothing is dialled yet.
    pub fn new(target: Target, policy: RedialPolicy) -> Self {
        Redialer {
            health: Mutex::new(Health::new(policy.backoff, policy.seed)),
            target,
            policy,
            current: Mutex::new(None),
            dial: tokio::sync::Mutex::new((0, None)),
        }
    }

    /// Where it dials.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The server's health, to read or to record what operations saw.
    pub fn health(&self) -> MutexGuard<'_, Health> {
        sys::lock(&self.health)
    }

    /// The current session, if its connection is still open.
    pub fn current(&self) -> Option<Session> {
        sys::lock(&self.current)
            .as_ref()
            .filter(|s| !s.root.client().is_closed())
            .cloned()
    }

    /// The current session, or a new dial if there is none and the
    /// backoff allows one. `permits`, when given, bounds the dials in
    /// progress across many re-diallers (taken after the backoff check).
    ///
    /// # Errors
    /// The dial failed now, or failed recently and is not due again.
    pub async fn session(&self, permits: Option<&Semaphore>) -> Result<Session, DialError> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let mut d = self.dial.lock().await;
        // Someone else may have dialled while we waited for the lock.
        if let Some(s) = self.current() {
            return Ok(s);
        }
        if let Some((reason, retry_in)) = self.health().down(Instant::now())
            && !retry_in.is_zero()
        {
            let last = d.1.clone().unwrap_or_else(|| ClientError::Closed {
                server: self.target.addr.to_string(),
                reason: reason.to_string(),
            });
            return Err(DialError::Backoff {
                reason: reason.to_string(),
                last,
                retry_in,
            });
        }
        let _permit = match permits {
            Some(p) => Some(p.acquire().await.map_err(|_| {
                DialError::Failed(ClientError::Closed {
                    server: self.target.addr.to_string(),
                    reason: "shut down".into(),
                })
            })?),
            None => None,
        };
        let t = &self.target;
        let attempt = async {
            let c = Client::connect(&t.addr, t.opts.clone()).await?;
            let root = c.attach(&t.uname, &t.aname, t.uid).await?;
            if self.policy.probe {
                root.getattr().await?;
            }
            Ok::<_, ClientError>(root)
        };
        let res = match self.policy.attempt_timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(r) => r.map_err(DialError::Failed),
                Err(_) => Err(DialError::TimedOut(limit)),
            },
            None => attempt.await.map_err(DialError::Failed),
        };
        match res {
            Ok(root) => {
                d.0 += 1;
                d.1 = None;
                let was_down = self.health().connected(root.client().dialect());
                if was_down {
                    info!(peer = %t.name, "reconnected");
                } else {
                    debug!(peer = %t.name, "connected");
                }
                let s = Session {
                    generation: d.0,
                    root: Arc::new(root),
                };
                *sys::lock(&self.current) = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                let (reason, last) = match &e {
                    DialError::Failed(c) => (c.to_string(), c.clone()),
                    DialError::TimedOut(limit) => (
                        format!("{}: no answer within {limit:?}", t.name),
                        e.clone().into_client_error(t),
                    ),
                    DialError::Backoff { reason, last, .. } => (reason.clone(), last.clone()),
                };
                d.1 = Some(last);
                self.failed(reason);
                Err(e)
            }
        }
    }

    /// Records a failure of the server (a dial, or a connection lost or
    /// hung under an operation): it is down until its backoff passes.
    /// Returns the time until the next dial may start.
    pub fn failed(&self, reason: String) -> Duration {
        let f = self.health().failed(reason.clone(), Instant::now());
        if f.changed {
            warn!(peer = %self.target.name, "unreachable: {reason}; next dial in {:?}", f.retry_in);
        }
        f.retry_in
    }

    /// Records an operation that got no answer within `after`; `silent`:
    /// its connection received no reply at all meanwhile (see
    /// [`Health::timed_out`]). Returns whether the server went down.
    pub fn timed_out(&self, silent: bool, reason: String, after: Duration) -> bool {
        let f = self
            .health()
            .timed_out(silent, reason.clone(), after, Instant::now());
        if let Some(f) = f
            && f.changed
        {
            warn!(peer = %self.target.name, "unreachable: {reason}; next dial in {:?}", f.retry_in);
        }
        f.is_some()
    }

    /// Drops session `generation` (closing its connection) if it is still
    /// the current one.
    pub fn invalidate(&self, generation: u64) {
        let mut cur = sys::lock(&self.current);
        if cur.as_ref().is_some_and(|s| s.generation == generation)
            && let Some(s) = cur.take()
        {
            s.root.client().close();
        }
    }

    /// The attach root, dialling if there is no live connection.
    ///
    /// # Errors
    /// The dial or the attach fails (or failed within the backoff).
    pub async fn root(&self) -> Result<Arc<FidHandle>, ClientError> {
        self.session(None)
            .await
            .map(|s| s.root)
            .map_err(|e| e.into_client_error(&self.target))
    }

    /// Runs `op` on the attach root. If it fails because the connection
    /// is gone, dials again and runs it once more: for callers whose every
    /// operation is a read, so that repeating one is harmless.
    ///
    /// # Errors
    /// What `op` returns, or why the server cannot be reached.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<FidHandle>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let dial = || async {
            self.session(None)
                .await
                .map_err(|e| e.into_client_error(&self.target))
        };
        let s = dial().await?;
        match op(s.root.clone()).await {
            Err(e) if e.is_connection_error() => {
                debug!(peer = %self.target.name, "connection lost: {e}");
                self.invalidate(s.generation);
                let s = dial().await?;
                op(s.root).await
            }
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(addr: Address) -> Target {
        Target {
            name: addr.to_string(),
            addr,
            aname: String::new(),
            uname: "nobody".into(),
            uid: None,
            opts: ClientOptions {
                connect_timeout: Duration::from_millis(500),
                ..ClientOptions::default()
            },
        }
    }

    /// A loopback port with nothing listening (bound, then closed).
    fn dead_port() -> Address {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        Address::Tcp(a.to_string())
    }

    #[tokio::test]
    async fn a_refused_dial_is_remembered_for_the_backoff() {
        let r = Redialer::new(
            target(dead_port()),
            RedialPolicy {
                backoff: Backoff::fixed(Duration::from_secs(30)),
                seed: 0,
                attempt_timeout: None,
                probe: false,
            },
        );
        let first = r.session(None).await.unwrap_err();
        assert!(matches!(first, DialError::Failed(_)), "{first:?}");
        assert_eq!(r.health().status().failures, 1);
        let again = r.session(None).await.unwrap_err();
        let DialError::Backoff { last, retry_in, .. } = again else {
            panic!("{again:?}");
        };
        assert!(retry_in > Duration::from_secs(25), "{retry_in:?}");
        assert!(last.is_connection_error(), "{last}");
        assert_eq!(r.health().status().failures, 1, "no second dial");
        // `root` and `call` report the remembered error.
        assert!(r.root().await.unwrap_err().is_connection_error());
    }
}

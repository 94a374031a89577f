//! The mount's connection to the 9P server: dialled and attached on first
//! use, and again on the first operation after the connection is lost.
//!
//! The mount keeps no fid open between operations (inodes are paths, open
//! files and directories are snapshots), so a reconnect needs nothing
//! replayed: the next walk simply starts from the new attach root.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{Client, ClientError, ClientOptions, FidHandle};
use crate::net::Address;

/// How long a failed dial is remembered: operations in this window fail
/// at once with the same error instead of each waiting for a connect
/// timeout against a server that is down.
const REDIAL_BACKOFF: Duration = Duration::from_millis(500);

/// Where and as whom to attach.
#[derive(Debug, Clone)]
pub struct Target {
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

/// A live attach: the root fid and which dial it came from.
#[derive(Clone)]
struct Session {
    /// Counts dials, so a failure seen on an old session never tears down
    /// a newer one.
    generation: u64,
    root: Arc<FidHandle>,
}

/// The dialler's memory.
struct DialState {
    generation: u64,
    /// The last failed dial and its error, for [`REDIAL_BACKOFF`].
    failed: Option<(Instant, ClientError)>,
}

/// The connection manager.
pub struct Remote {
    target: Target,
    /// The current session; a std mutex because it is only read or
    /// replaced, never held across an await.
    current: Mutex<Option<Session>>,
    /// Serializes dials so that many operations noticing a dead
    /// connection at once make one new connection.
    dial: tokio::sync::Mutex<DialState>,
}

impl Remote {
    /// A manager for `target`; nothing is dialled yet.
    pub fn new(target: Target) -> Self {
        Remote {
            target,
            current: Mutex::new(None),
            dial: tokio::sync::Mutex::new(DialState {
                generation: 0,
                failed: None,
            }),
        }
    }

    /// The target's address, for messages.
    pub fn addr(&self) -> &Address {
        &self.target.addr
    }

    fn current(&self) -> Option<Session> {
        let cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        cur.as_ref()
            .filter(|s| !s.root.client().is_closed())
            .cloned()
    }

    /// The attach root, dialling if there is no live connection.
    ///
    /// # Errors
    /// The dial or the attach fails (or failed within the last
    /// [`REDIAL_BACKOFF`]).
    pub async fn root(&self) -> Result<Arc<FidHandle>, ClientError> {
        Ok(self.session().await?.root)
    }

    async fn session(&self) -> Result<Session, ClientError> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let mut d = self.dial.lock().await;
        // Someone else may have dialled while we waited for the lock.
        if let Some(s) = self.current() {
            return Ok(s);
        }
        if let Some((at, e)) = &d.failed
            && at.elapsed() < REDIAL_BACKOFF
        {
            return Err(e.clone());
        }
        let t = &self.target;
        let res = async {
            let c = Client::connect(&t.addr, t.opts.clone()).await?;
            c.attach(&t.uname, &t.aname, t.uid).await
        }
        .await;
        match res {
            Ok(root) => {
                d.generation += 1;
                d.failed = None;
                if d.generation > 1 {
                    tracing::info!(server = %t.addr, "reconnected and re-attached");
                }
                let s = Session {
                    generation: d.generation,
                    root: Arc::new(root),
                };
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                tracing::warn!(server = %t.addr, "cannot reach the server: {e}");
                d.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Drops session `generation` if it is still the current one.
    fn invalidate(&self, generation: u64) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().is_some_and(|s| s.generation == generation)
            && let Some(s) = cur.take()
        {
            s.root.client().close();
        }
    }

    /// Runs `op` on the attach root. If it fails because the connection
    /// is gone, dials again and runs it once more: every operation of the
    /// mount is a read, so repeating one is harmless.
    ///
    /// # Errors
    /// What `op` returns, or why the server cannot be reached.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<FidHandle>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let s = self.session().await?;
        match op(s.root.clone()).await {
            Err(e) if e.is_connection_error() => {
                tracing::debug!(server = %self.target.addr, "connection lost: {e}");
                self.invalidate(s.generation);
                let s = self.session().await?;
                op(s.root).await
            }
            r => r,
        }
    }
}

//! Summary reads that outlive the table that asked for them (issue 13
//! item 6). A cluster-wide table waits for each node only until its
//! deadline; a node's read that is still going then (a slow node, or this
//! aggregator busy parsing, as after a restart) is not dropped with the
//! table's build but runs on in a task of its own into the cache, so the
//! next table finds it done instead of starting it over.
//!
//! Bounded: at most one such read per pool node is in flight; a table
//! that asks for a node whose read is still going joins it instead of
//! starting another, so a dead or hung node holds one task, for as long
//! as the pool's own connect and request timeouts let its read last.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::server::{FsError, FsResult};
use crate::sys;

/// One node's read, joinable by every table that waits for it.
type Read<T> = Shared<BoxFuture<'static, FsResult<T>>>;

/// The reads in flight, by pool node index.
pub(super) struct LateReads<T: Clone + Send + Sync + 'static> {
    inflight: Arc<Mutex<HashMap<u32, Read<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for LateReads<T> {
    fn default() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> LateReads<T> {
    /// `node`'s read in flight, or `read` started in a task of its own
    /// (which finishes, and stores what it read, even if every waiter
    /// gives up). The task leaves the in-flight set when done.
    pub(super) fn run(
        &self,
        node: u32,
        read: impl Future<Output = FsResult<T>> + Send + 'static,
    ) -> impl Future<Output = FsResult<T>> + Send + 'static {
        let mut m = sys::lock(&self.inflight);
        if let Some(r) = m.get(&node) {
            return r.clone();
        }
        let set = self.inflight.clone();
        // Held until the entry is in place: the task's removal below
        // cannot come before its insertion.
        let task = tokio::spawn(async move {
            let r = read.await;
            sys::lock(&set).remove(&node);
            r
        });
        let r: Read<T> = async move {
            task.await
                .map_err(|e| FsError::IO.with(format!("reading a node's summary: {e}")))?
        }
        .boxed()
        .shared();
        m.insert(node, r.clone());
        r
    }

    /// Reads in flight now.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        sys::lock(&self.inflight).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_read_given_up_on_finishes_and_a_second_asker_joins_it() {
        let late: LateReads<u32> = LateReads::default();
        let started = Arc::new(AtomicU32::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let s = started.clone();
        let first = late.run(7, async move {
            s.fetch_add(1, Ordering::SeqCst);
            let _ = rx.await;
            let _ = done_tx.send(());
            Ok(42)
        });
        // The table gives up on it (its deadline).
        assert!(
            tokio::time::timeout(Duration::from_millis(20), first)
                .await
                .is_err()
        );
        assert_eq!(late.in_flight(), 1, "still going after the waiter left");
        // A second table joins it: no second read.
        let s = started.clone();
        let second = late.run(7, async move {
            s.fetch_add(1, Ordering::SeqCst);
            Ok(0)
        });
        let _ = tx.send(());
        assert_eq!(second.await.unwrap(), 42);
        let _ = done_rx.await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        // Done: out of the set, and the next read is a new one.
        while late.in_flight() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(late.run(7, async { Ok(5) }).await.unwrap(), 5);
    }
}

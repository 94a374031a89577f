//! Small helpers over the operating system and the standard library, so
//! each rule has one home: the user database ([`users`]), the open-file
//! limit ([`raise_nofile_limit`]), poison-tolerant locks ([`lock`],
//! [`read`], [`write()`]), the one pseudo-random generator ([`rng`]),
//! acting as another user on dedicated threads ([`creds`]), signalling
//! as another user ([`signal`]) and writing a list of buffers whole with
//! vectored writes ([`write_all_vectored`]).
//!
//! Depends on nothing else in the crate.

pub mod creds;
pub mod rng;
pub mod signal;
pub mod users;

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Nodes per runtime worker thread of a process that serves or simulates
/// many nodes. A 9P request is a chain of tiny tasks, and a multi-thread
/// runtime wakes an idle worker for each one made runnable: on a few
/// cores shared with other processes, those thread switches cost more
/// than the work (44% of an aggregator's CPU while browsing a 200-node
/// mount, BENCHMARKS.md). Parallelism pays only for fan-out work that
/// grows with the nodes, about 0.12 ms of CPU per node per cold table:
/// one worker per 4,000 nodes keeps each worker's share of a cold table
/// near half a second.
pub const NODES_PER_WORKER: usize = 4000;

/// Worker threads for `nodes` nodes: one per [`NODES_PER_WORKER`], at
/// least one, at most the cores this process may use.
pub fn workers_for_nodes(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    nodes.div_ceil(NODES_PER_WORKER).clamp(1, cores)
}

/// Locks `m`, even if a thread panicked while holding it.
///
/// Every lock in gproc guards state that each critical section leaves
/// consistent (maps, counters, status records), so a panic elsewhere must
/// not turn into a panic here.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `bufs` whole, in order, in as few vectored writes (`writev`) as
/// the transport takes: many 9P messages, or a header and the data it
/// precedes, leave in one system call without being copied together.
/// `bufs` are consumed as they are written (left empty on success).
///
/// # Errors
/// The transport fails, or takes no bytes (`WriteZero`).
pub async fn write_all_vectored<W>(wr: &mut W, bufs: &mut [bytes::Bytes]) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin + ?Sized,
{
    use bytes::Buf;
    /// Slices per system call (Linux's IOV_MAX is 1024).
    const MAX_SLICES: usize = 64;
    let mut i = 0;
    loop {
        while bufs.get(i).is_some_and(bytes::Bytes::is_empty) {
            i += 1;
        }
        if i >= bufs.len() {
            return Ok(());
        }
        let rest = &bufs[i..];
        // The slices are made inside each poll, on the stack, so the
        // future (kept in every connection's writer task) stays small.
        let mut n = std::future::poll_fn(|cx| {
            let mut slices = [std::io::IoSlice::new(&[]); MAX_SLICES];
            let k = rest.len().min(MAX_SLICES);
            for (slot, b) in slices.iter_mut().zip(rest) {
                *slot = std::io::IoSlice::new(b);
            }
            std::pin::Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..k])
        })
        .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(b) = bufs.get_mut(i) else { break };
            let step = n.min(b.len());
            b.advance(step);
            n -= step;
            if b.is_empty() {
                i += 1;
            }
        }
    }
}

/// Read-locks `l`, even if poisoned (see [`lock`]).
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks `l`, even if poisoned (see [`lock`]).
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// This machine's host name (`uname -n`): the name MUNGE credentials
/// addressed to it carry, unless configured otherwise.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Raises the soft open-file limit as far as the hard limit allows and
/// checks that `needed` descriptors fit; returns the limit now in force.
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
    fn one_worker_per_nodes_per_worker_within_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(workers_for_nodes(0), 1);
        assert_eq!(workers_for_nodes(NODES_PER_WORKER), 1);
        assert_eq!(workers_for_nodes(NODES_PER_WORKER + 1), 2.min(cores));
        assert_eq!(workers_for_nodes(usize::MAX), cores);
    }

    #[test]
    fn nofile_limit_is_raised_or_explained() {
        assert!(raise_nofile_limit(16).is_ok());
        let e = raise_nofile_limit(u64::MAX).unwrap_err();
        assert!(e.contains("ulimit"), "{e}");
    }

    #[test]
    fn locks_survive_poisoning() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = l2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 3));
    }
}

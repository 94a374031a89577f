//! Which process a node path names. A fid walked into `/<node>/<pid>` is
//! bound to the process that had that pid then (its start time, a
//! [`Pin`]): every later operation checks the process is still that one,
//! and on nodes that resolve `<pid>.<start>` names (our agent; see
//! [`summary::pinned_name`]) every read goes to that process or fails, so a
//! reused pid is ENOENT through every layer, never another process's data.
//!
//! What a process is (its uids for views, its start time) comes from the
//! node summary or, for a process newer than the cached summary, from the
//! node itself, so a new process is reachable by path at once. Names the
//! node said do not exist are remembered for a moment, so a client probing
//! names cannot turn each probe into a node round trip.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::pool::User;
use crate::format::summary;
use crate::proto::errno;
use crate::server::FsResult;
use crate::sys;

use super::Tree;
use super::members::Member;

/// How long a "does not exist" answer of a node is believed.
pub(super) const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// Most remembered negative answers; past it the oldest half is dropped.
const MAX_NEGATIVES: usize = 16384;

/// The process a fid's path names by its first component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pin {
    /// Its pid.
    pub(super) pid: i32,
    /// Its start time, clock ticks after the node's boot.
    pub(super) start: u64,
    /// The node resolves `<pid>.<start>`: reads name the process exactly.
    pub(super) by_name: bool,
}

/// What decides access to one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcId {
    /// Real uid.
    pub(super) ruid: u32,
    /// Effective uid.
    pub(super) euid: u32,
    /// The pin a walk to it takes.
    pub(super) pin: Pin,
}

/// Remembered "does not exist" answers, by (node, asker, path).
#[derive(Default)]
pub(super) struct Negatives {
    seen: HashMap<(u32, Option<u32>, String), Instant>,
}

impl Negatives {
    fn fresh(&mut self, key: &(u32, Option<u32>, String)) -> bool {
        match self.seen.get(key) {
            Some(t) if t.elapsed() < NEGATIVE_TTL => true,
            Some(_) => {
                self.seen.remove(key);
                false
            }
            None => false,
        }
    }

    fn insert(&mut self, key: (u32, Option<u32>, String)) {
        if self.seen.len() >= MAX_NEGATIVES {
            let now = Instant::now();
            self.seen
                .retain(|_, t| now.duration_since(*t) < NEGATIVE_TTL);
            if self.seen.len() >= MAX_NEGATIVES {
                self.seen.clear();
            }
        }
        self.seen.insert(key, Instant::now());
    }
}

/// `path` as sent to the node: its first component `<pid>` becomes
/// `<pid>.<start>` when the node resolves pinned names.
pub(super) fn wire_path(path: &str, pin: Option<Pin>) -> Cow<'_, str> {
    let Some(p) = pin.filter(|p| p.by_name) else {
        return Cow::Borrowed(path);
    };
    let rest = path.trim_start_matches('/');
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if first.parse::<i32>().ok() != Some(p.pid) {
        return Cow::Borrowed(path);
    }
    let mut out = format!("/{}", summary::pinned_name(p.pid, p.start));
    if !tail.is_empty() {
        out.push('/');
        out.push_str(tail);
    }
    Cow::Owned(out)
}

/// The real and effective uid in a `status` file's `Uid:` line.
fn status_uids(status: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(status).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some((ids.next()??, ids.next()??))
}

impl Tree {
    /// Whether the node said `path` does not exist for `user` within
    /// [`NEGATIVE_TTL`].
    pub(super) fn known_absent(&self, node: &Member, user: Option<&User>, path: &str) -> bool {
        let key = (node.index, user.map(|u| u.uid), path.to_string());
        sys::lock(&self.negatives).fresh(&key)
    }

    /// Remembers that the node said `path` does not exist for `user`.
    pub(super) fn note_absent(&self, node: &Member, user: Option<&User>, path: &str) {
        let key = (node.index, user.map(|u| u.uid), path.to_string());
        sys::lock(&self.negatives).insert(key);
    }

    /// Process `pid` of `node`: its summary row, else (a process newer
    /// than the cached summary) its `status` and `stat` read from the node
    /// as the service identity. `None`: it does not exist.
    ///
    /// # Errors
    /// The node cannot be read.
    pub(super) async fn proc_id(&self, node: &Member, pid: i32) -> FsResult<Option<ProcId>> {
        let s = self.node_summary(node).await?;
        if let Ok(i) = s.procs.binary_search_by_key(&pid, |p| p.pid) {
            let p = &s.procs[i];
            return Ok(Some(ProcId {
                ruid: p.ruid,
                euid: p.euid,
                pin: Pin {
                    pid,
                    start: p.start_ticks,
                    by_name: s.pinned_walk,
                },
            }));
        }
        let key = format!("/{pid}");
        if self.known_absent(node, None, &key) {
            return Ok(None);
        }
        let (status, stat) = (
            node.wire(&format!("/{pid}/status")).into_owned(),
            node.wire(&format!("/{pid}/stat")).into_owned(),
        );
        let read = self
            .pool
            .with_node(&node.via, |root| async move {
                let st = root.read_all(&status).await?;
                let sa = root.read_all(&stat).await?;
                Ok((st, sa))
            })
            .await;
        let (status, stat) = match read {
            Ok(v) => v,
            Err(e) if e.errno() == errno::ENOENT => {
                self.note_absent(node, None, &key);
                return Ok(None);
            }
            Err(e) => return Err(super::reads::pool_err(e)),
        };
        let (Some((ruid, euid)), Some(start)) =
            (status_uids(&status), summary::stat_start_ticks(&stat))
        else {
            return Ok(None);
        };
        Ok(Some(ProcId {
            ruid,
            euid,
            pin: Pin {
                pid,
                start,
                by_name: s.pinned_walk,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_paths_name_the_pinned_process() {
        let pin = Some(Pin {
            pid: 42,
            start: 777,
            by_name: true,
        });
        assert_eq!(wire_path("/42", pin), "/42.777");
        assert_eq!(wire_path("/42/task/43/stat", pin), "/42.777/task/43/stat");
        assert_eq!(wire_path("/420/stat", pin), "/420/stat");
        assert_eq!(wire_path("/loadavg", pin), "/loadavg");
        let plain = pin.map(|p| Pin {
            by_name: false,
            ..p
        });
        assert_eq!(wire_path("/42/stat", plain), "/42/stat");
        assert_eq!(wire_path("/42/stat", None), "/42/stat");
    }

    #[test]
    fn status_uid_lines() {
        let s = b"Name:\tsleep\nUid:\t1001\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(status_uids(s), Some((1001, 0)));
        assert_eq!(status_uids(b"Name:\tx\n"), None);
        assert_eq!(status_uids(b"Uid:\tx\ty\n"), None);
    }
}

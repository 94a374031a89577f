//! The connection `gproc mount` and `gproc top` hold to their server: one
//! [`Redialer`] with a fixed backoff, so both front ends re-dial the same
//! way whichever cargo features are built.

use std::time::Duration;

use gproc::client::redial::{RedialPolicy, Redialer, Target};

/// How long a failed dial is remembered: operations in this window fail
/// at once with the same error instead of each waiting for a connect
/// timeout against a server that is down.
pub const REDIAL_BACKOFF: Duration = Duration::from_millis(500);

/// The connection of a mount (or of `gproc top`) to its server: dialled
/// and attached on first use and again after it is lost. The mount keeps
/// no fid open between operations (inodes are paths, open files and
/// directories are snapshots), so a re-dial needs nothing replayed.
pub fn connection(target: Target) -> Redialer {
    Redialer::new(target, RedialPolicy::fixed(REDIAL_BACKOFF))
}

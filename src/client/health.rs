//! A peer's health as plain data: up, down until a retry time, consecutive
//! failures, the last error, and the capped exponential backoff between
//! dials. Every transition takes the current time as an argument, so the
//! state machine is tested with made-up instants and no sleeps; the
//! [`Redialer`](super::redial::Redialer) and the node pool drive it.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::proto::Dialect;
use crate::sys::rng;

/// The delay between failed dials: exponential from `min`, capped at
/// `max`, optionally with ±25% jitter so that thousands of peers lost
/// together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Spread each delay by ±25%, keyed by a seed and the attempt.
    pub jitter: bool,
}

impl Backoff {
    /// The same delay after every failure.
    pub const fn fixed(d: Duration) -> Self {
        Backoff {
            min: d,
            max: d,
            jitter: false,
        }
    }

    /// The delay after `failures` consecutive failures (1 for the first);
    /// `seed` (a node index) decorrelates the jitter of different peers.
    pub fn delay(&self, failures: u32, seed: u32) -> Duration {
        let exp = self
            .min
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.max);
        if !self.jitter {
            return exp;
        }
        let key = (u64::from(seed) << 32) | u64::from(failures);
        let z = rng::mix(key.wrapping_add(rng::GOLDEN));
        let frac = (z % 1000) as f64 / 1000.0; // 0..1
        exp.mul_f64(0.75 + 0.5 * frac).min(self.max)
    }
}

/// A peer's state as shown in `/nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Never contacted (lazy connect).
    Idle,
    /// Connected.
    Up,
    /// Unreachable; the reason.
    Down(String),
}

/// A snapshot of a peer's status.
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

/// What a failure did to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Time until the next dial may start.
    pub retry_in: Duration,
    /// The peer was not already down for the same reason (worth a log line).
    pub changed: bool,
}

/// The health state machine of one peer.
#[derive(Debug, Clone)]
pub struct Health {
    status: NodeStatus,
    /// No dial before this (backoff).
    retry_at: Option<Instant>,
    backoff: Backoff,
    seed: u32,
}

impl Health {
    /// A peer never contacted; `seed` keys its jitter.
    pub fn new(backoff: Backoff, seed: u32) -> Self {
        Health {
            status: NodeStatus {
                state: NodeState::Idle,
                dialect: None,
                rtt: None,
                last_contact: None,
                last_error: None,
                failures: 0,
            },
            retry_at: None,
            backoff,
            seed,
        }
    }

    /// The status.
    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// When the next dial may start, while backing off.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// If the peer is down: why, and the time from `now` until its next
    /// dial may start (zero once due).
    pub fn down(&self, now: Instant) -> Option<(&str, Duration)> {
        let NodeState::Down(reason) = &self.status.state else {
            return None;
        };
        let retry_in = self
            .retry_at
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or_default();
        Some((reason, retry_in))
    }

    /// A dial (connect and attach) succeeded. `failures` is reset by the
    /// first operation that succeeds, not here: a peer that accepts and
    /// then hangs keeps backing off. Returns whether it was down before.
    pub fn connected(&mut self, dialect: Dialect) -> bool {
        let was_down = matches!(self.status.state, NodeState::Down(_));
        self.status.state = NodeState::Up;
        self.status.dialect = Some(dialect);
        self.retry_at = None;
        was_down
    }

    /// A dial failed or the connection was lost: the peer is down until
    /// a backoff that grows with each consecutive failure.
    pub fn failed(&mut self, reason: String, now: Instant) -> Failure {
        self.status.failures = self.status.failures.saturating_add(1);
        let retry_in = self.backoff.delay(self.status.failures, self.seed);
        self.retry_at = Some(now + retry_in);
        let changed = self.status.state != NodeState::Down(reason.clone());
        self.status.last_error = Some(reason.clone());
        self.status.state = NodeState::Down(reason);
        Failure { retry_in, changed }
    }

    /// An operation succeeded after `rtt`: the failure count starts over.
    pub fn succeeded(&mut self, rtt: Duration, at: SystemTime) {
        self.status.rtt = Some(rtt);
        self.status.last_contact = Some(at);
        self.status.failures = 0;
    }

    /// The peer answered an operation with an error: it is alive.
    pub fn answered(&mut self, at: SystemTime) {
        self.status.last_contact = Some(at);
    }

    /// An operation got no answer within `after`. `silent` says whether
    /// the connection it went out on received no reply at all meanwhile:
    /// then the peer hangs and goes down (the caller drops the connection);
    /// otherwise it is busy, or the request never left our own queues, and
    /// only the error is noted. Returns the failure when it went down.
    pub fn timed_out(
        &mut self,
        silent: bool,
        reason: String,
        after: Duration,
        now: Instant,
    ) -> Option<Failure> {
        if silent {
            return Some(self.failed(reason, now));
        }
        self.status.last_error = Some(format!("no answer within {after:?}"));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn pool_backoff() -> Backoff {
        Backoff {
            min: S,
            max: 60 * S,
            jitter: true,
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = pool_backoff();
        let d1 = b.delay(1, 7);
        assert!(
            d1 >= Duration::from_millis(750) && d1 <= Duration::from_millis(1250),
            "{d1:?}"
        );
        let d4 = b.delay(4, 7);
        assert!(d4 >= 6 * S && d4 <= 10 * S, "{d4:?}");
        assert!(b.delay(30, 7) <= b.max);
        let spread: std::collections::HashSet<_> = (0..100).map(|s| b.delay(3, s)).collect();
        assert!(spread.len() > 50, "jitter spreads nodes apart");
        let f = Backoff::fixed(Duration::from_millis(500));
        assert_eq!(f.delay(1, 3), Duration::from_millis(500));
        assert_eq!(f.delay(9, 4), Duration::from_millis(500));
        let doubling = Backoff {
            min: Duration::from_millis(20),
            max: Duration::from_millis(500),
            jitter: false,
        };
        let seq: Vec<u128> = (1..=6).map(|k| doubling.delay(k, 0).as_millis()).collect();
        assert_eq!(seq, [20, 40, 80, 160, 320, 500]);
    }

    #[test]
    fn jitter_is_the_pools_historic_sequence() {
        // The values the pool's inline splitmix64 gave before it moved
        // here: reconnect timing is unchanged by the move.
        let b = pool_backoff();
        assert_eq!(b.delay(1, 0), S.mul_f64(0.75 + 0.5 * 0.465));
        assert_eq!(b.delay(2, 5), (2 * S).mul_f64(0.75 + 0.5 * 0.705));
        assert_eq!(b.delay(4, 7), (8 * S).mul_f64(0.75 + 0.5 * 0.752));
    }

    #[test]
    fn failure_backs_off_and_grows_and_success_resets() {
        let t0 = Instant::now();
        let mut h = Health::new(pool_backoff(), 3);
        assert_eq!(h.status().state, NodeState::Idle);
        assert!(h.down(t0).is_none());

        let f1 = h.failed("refused".into(), t0);
        assert!(f1.changed);
        assert_eq!(h.status().failures, 1);
        assert_eq!(h.retry_at(), Some(t0 + f1.retry_in));
        let f2 = h.failed("refused".into(), t0);
        assert!(!f2.changed, "same reason: no new log line");
        assert!(f2.retry_in > f1.retry_in, "{f2:?} after {f1:?}");
        let f3 = h.failed("reset".into(), t0);
        assert!(f3.changed);
        assert!(f3.retry_in > f2.retry_in);
        assert_eq!(h.status().last_error.as_deref(), Some("reset"));

        assert!(h.connected(Dialect::P2000L), "it was down");
        assert_eq!(h.status().state, NodeState::Up);
        assert_eq!(h.retry_at(), None);
        assert_eq!(h.status().failures, 3, "a connect alone does not reset");
        let at = SystemTime::UNIX_EPOCH + 1000 * S;
        h.succeeded(Duration::from_millis(3), at);
        assert_eq!(h.status().failures, 0);
        assert_eq!(h.status().last_contact, Some(at));
        assert_eq!(h.status().rtt, Some(Duration::from_millis(3)));
        assert_eq!(h.status().last_error.as_deref(), Some("reset"), "kept");
        let again = h.failed("refused".into(), t0);
        assert_eq!(again.retry_in, f1.retry_in, "backoff starts over");
    }

    #[test]
    fn a_down_node_fails_until_its_retry_time() {
        let t0 = Instant::now();
        let mut h = Health::new(pool_backoff(), 1);
        let f = h.failed("refused".into(), t0);
        let (reason, left) = h.down(t0).unwrap();
        assert_eq!((reason, left), ("refused", f.retry_in));
        let half = t0 + f.retry_in / 2;
        assert_eq!(h.down(half).unwrap().1, f.retry_in - f.retry_in / 2);
        assert_eq!(h.down(t0 + f.retry_in).unwrap().1, Duration::ZERO, "due");
        assert_eq!(h.down(t0 + 100 * S).unwrap().1, Duration::ZERO);
        assert!(h.connected(Dialect::P2000u));
        assert!(h.down(t0 + 100 * S).is_none());
    }

    #[test]
    fn a_request_timeout_marks_down_only_when_silent() {
        let t0 = Instant::now();
        let mut h = Health::new(pool_backoff(), 2);
        h.connected(Dialect::P2000L);
        let after = 5 * S;
        assert_eq!(h.timed_out(false, "n1: hung".into(), after, t0), None);
        assert_eq!(h.status().state, NodeState::Up, "busy but answering");
        assert_eq!(
            h.status().last_error.as_deref(),
            Some("no answer within 5s")
        );
        assert_eq!(h.status().failures, 0);
        let f = h.timed_out(true, "n1: hung".into(), after, t0).unwrap();
        assert_eq!(h.status().state, NodeState::Down("n1: hung".into()));
        assert_eq!(h.status().failures, 1);
        assert_eq!(h.down(t0).unwrap().1, f.retry_in);
    }

    #[test]
    fn error_answers_keep_the_node_up() {
        let mut h = Health::new(pool_backoff(), 2);
        h.connected(Dialect::P2000L);
        let at = SystemTime::UNIX_EPOCH + 5 * S;
        h.answered(at);
        assert_eq!(h.status().state, NodeState::Up);
        assert_eq!(h.status().last_contact, Some(at));
    }
}

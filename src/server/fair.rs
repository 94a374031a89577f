//! Fair shares of a server's shared bounds (issue 12 item 8).
//!
//! Every bound many principals share (connection slots, snapshot bytes,
//! fids and requests of a connection that carries many users, descriptors
//! the agent holds for walked fids) is a [`Shares`]: one principal may hold
//! at most `per_principal` of it, and the principals that are not a
//! service identity may together hold at most `total - reserve`, so the
//! service (the aggregator's own reads, which serve everyone's tables)
//! always finds room. Hitting a share fails only that principal's request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::sys::lock;

/// Who a share is charged to: a uid, or a TCP peer's address before the
/// connection has proven a uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A user (Unix peer, verified or named uid).
    Uid(u32),
    /// A TCP peer that has not attached yet.
    Addr(IpAddr),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Uid(u) => write!(f, "uid {u}"),
            Principal::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// A bound shared by principals, with a cap per principal and a part
/// reserved for service identities.
#[derive(Debug)]
pub struct Shares {
    total: usize,
    per_principal: usize,
    /// The share of a TCP address before its connections attach: larger,
    /// since every user of a login node arrives from its one address (and
    /// the attach deadline bounds how long a slot is held that way).
    per_address: usize,
    reserve: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<Principal, usize>,
    /// Held by principals that are not a service identity.
    users: usize,
    /// Held by everyone.
    all: usize,
}

/// Why a share was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The principal holds its whole share.
    Principal {
        /// What it holds.
        held: usize,
        /// Its share.
        limit: usize,
    },
    /// The users together hold all but the service's reserve, or the
    /// whole bound is in use.
    Shared {
        /// What is held.
        used: usize,
        /// The bound they hit.
        limit: usize,
    },
}

impl Refused {
    /// A message for logs: `"uid 1001: 64 MiB of open-file snapshots
    /// already held on this server (its share); close files"`, with `unit`
    /// formatting an amount.
    pub fn message(
        &self,
        who: &Principal,
        what: &str,
        unit: impl Fn(usize) -> String,
        remedy: &str,
    ) -> String {
        match *self {
            Refused::Principal { held, limit } => format!(
                "{who}: {} of {what} already held (its share is {}); {remedy}",
                unit(held),
                unit(limit)
            ),
            Refused::Shared { used, limit } => format!(
                "{who}: {what} of all users together at their bound ({} of {}); {remedy}",
                unit(used),
                unit(limit)
            ),
        }
    }
}

impl Shares {
    /// `total` shared, at most `per_principal` to one principal, and
    /// `reserve` kept for service identities.
    pub fn new(total: usize, per_principal: usize, reserve: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_principal: per_principal.min(total),
            per_address: per_principal.min(total),
            reserve: reserve.min(total),
            state: Mutex::new(State::default()),
        })
    }

    /// `total` with one principal's share `per_principal` and an eighth
    /// kept for the service; a share of at least `total` turns the shares
    /// off (one principal may take it all: no reserve either).
    pub fn with_reserve(total: usize, per_principal: usize) -> Arc<Self> {
        let reserve = if per_principal >= total { 0 } else { total / 8 };
        Self::new(total, per_principal, reserve)
    }

    /// [`Self::with_reserve`] where an address that has not attached yet
    /// may hold up to half the bound (at least `per_principal`): a login
    /// node's users connect from one address at once, and each
    /// connection's charge moves to its uid at attach.
    pub fn for_connections(total: usize, per_principal: usize) -> Arc<Self> {
        let s = Self::with_reserve(total, per_principal);
        let per_address = if per_principal >= total {
            total
        } else {
            per_principal.max(total / 2)
        };
        Arc::new(Self {
            total: s.total,
            per_principal: s.per_principal,
            per_address,
            reserve: s.reserve,
            state: Mutex::new(State::default()),
        })
    }

    /// The share of `who`.
    fn share_of(&self, who: &Principal) -> usize {
        match who {
            Principal::Addr(_) => self.per_address,
            Principal::Uid(_) => self.per_principal,
        }
    }

    /// The whole bound.
    pub fn total(&self) -> usize {
        self.total
    }

    /// One principal's share.
    pub fn per_principal(&self) -> usize {
        self.per_principal
    }

    /// What everyone holds now.
    pub fn used(&self) -> usize {
        lock(&self.state).all
    }

    /// What `who` holds now.
    pub fn held(&self, who: &Principal) -> usize {
        lock(&self.state).held.get(who).copied().unwrap_or(0)
    }

    /// Takes `n` for `who` if its share, the users' part (unless `service`)
    /// and the total allow. A service identity is bounded by the total
    /// only.
    ///
    /// # Errors
    /// [`Refused`] saying which bound was hit; nothing is taken.
    pub fn take(
        self: &Arc<Self>,
        who: Principal,
        service: bool,
        n: usize,
    ) -> Result<Share, Refused> {
        let mut st = lock(&self.state);
        let held = st.held.get(&who).copied().unwrap_or(0);
        let all = st.all.saturating_add(n);
        if all > self.total {
            return Err(Refused::Shared {
                used: st.all,
                limit: self.total,
            });
        }
        if !service {
            let cap = self.share_of(&who);
            if held.saturating_add(n) > cap {
                return Err(Refused::Principal { held, limit: cap });
            }
            let limit = self.total - self.reserve;
            if st.users.saturating_add(n) > limit {
                return Err(Refused::Shared {
                    used: st.users,
                    limit,
                });
            }
            st.users += n;
        }
        st.all = all;
        *st.held.entry(who).or_insert(0) += n;
        Ok(Share {
            shares: self.clone(),
            who,
            service,
            n,
        })
    }

    /// Moves `share` to `who` under one lock: the total is unchanged, so
    /// only `who`'s share and the users' part are checked.
    fn move_to(&self, share: &Share, who: Principal, service: bool) -> Result<(), Refused> {
        let mut st = lock(&self.state);
        let n = share.n;
        let held = st.held.get(&who).copied().unwrap_or(0);
        if !service {
            let cap = self.share_of(&who);
            if held.saturating_add(n) > cap {
                return Err(Refused::Principal { held, limit: cap });
            }
            let limit = self.total - self.reserve;
            let users = st.users.saturating_sub(if share.service { 0 } else { n });
            if users.saturating_add(n) > limit {
                return Err(Refused::Shared { used: users, limit });
            }
        }
        if !share.service {
            st.users = st.users.saturating_sub(n);
        }
        if !service {
            st.users += n;
        }
        if let Some(h) = st.held.get_mut(&share.who) {
            *h = h.saturating_sub(n);
            if *h == 0 {
                st.held.remove(&share.who);
            }
        }
        *st.held.entry(who).or_insert(0) += n;
        Ok(())
    }

    fn give(&self, who: &Principal, service: bool, n: usize) {
        let mut st = lock(&self.state);
        st.all = st.all.saturating_sub(n);
        if !service {
            st.users = st.users.saturating_sub(n);
        }
        if let Some(h) = st.held.get_mut(who) {
            *h = h.saturating_sub(n);
            if *h == 0 {
                st.held.remove(who);
            }
        }
    }
}

/// An amount taken from [`Shares`], given back when dropped.
#[derive(Debug)]
#[must_use = "dropping the share gives it back at once"]
pub struct Share {
    shares: Arc<Shares>,
    who: Principal,
    service: bool,
    n: usize,
}

impl Share {
    /// Whom it is charged to.
    pub fn principal(&self) -> Principal {
        self.who
    }

    /// The same amount charged to `who` instead (a TCP connection that
    /// proved its uid at attach).
    ///
    /// # Errors
    /// `who`'s share is full; this share is kept unchanged.
    pub fn rekey(mut self, who: Principal, service: bool) -> Result<Share, (Share, Refused)> {
        match self.shares.move_to(&self, who, service) {
            Ok(()) => {
                (self.who, self.service) = (who, service);
                Ok(self)
            }
            Err(r) => Err((self, r)),
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.shares.give(&self.who, self.service, self.n);
    }
}

/// `n` bytes in MiB or KiB, for messages.
pub fn bytes(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{} KiB", n.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_principal_takes_its_share_and_the_service_keeps_its_reserve() {
        let s = Shares::new(10, 4, 2);
        let (a, b, c) = (Principal::Uid(1), Principal::Uid(2), Principal::Uid(3));
        let a4 = s.take(a, false, 4).unwrap();
        assert_eq!(
            s.take(a, false, 1).unwrap_err(),
            Refused::Principal { held: 4, limit: 4 }
        );
        // Others still get theirs, up to the users' part (10 - 2).
        let b4 = s.take(b, false, 4).unwrap();
        assert_eq!(
            s.take(c, false, 1).unwrap_err(),
            Refused::Shared { used: 8, limit: 8 }
        );
        // The service has its reserve, then the total stops it too.
        let svc = s.take(Principal::Uid(0), true, 2).unwrap();
        assert!(s.take(Principal::Uid(0), true, 1).is_err());
        drop((a4, svc));
        assert_eq!((s.used(), s.held(&a)), (4, 0));
        let c1 = s.take(c, false, 1).unwrap();
        // Rekeying moves the charge, or keeps it when the target is full.
        let addr = Principal::Addr("127.0.0.1".parse().unwrap());
        let t = s.take(addr, false, 1).unwrap();
        let (t, r) = t.rekey(b, false).unwrap_err();
        assert_eq!(r, Refused::Principal { held: 4, limit: 4 });
        let t = t.rekey(c, false).unwrap();
        assert_eq!((s.held(&addr), s.held(&c), t.principal()), (0, 2, c));
        drop((b4, c1, t));
        assert_eq!(s.used(), 0);
        let m = Refused::Principal {
            held: 64 << 20,
            limit: 64 << 20,
        }
        .message(
            &Principal::Uid(1001),
            "open-file snapshots",
            bytes,
            "close files",
        );
        assert_eq!(
            m,
            "uid 1001: 64 MiB of open-file snapshots already held (its share is 64 MiB); close files"
        );
    }

    /// A login node's users connect from one address at once: before they
    /// attach, an address may hold half the connections, a uid an eighth.
    #[test]
    fn an_address_before_attach_may_hold_half_the_connections() {
        let s = Shares::for_connections(64, 8);
        let addr = Principal::Addr("10.0.0.9".parse().unwrap());
        let held: Vec<Share> = (0..32).map(|_| s.take(addr, false, 1).unwrap()).collect();
        assert_eq!(
            s.take(addr, false, 1).unwrap_err(),
            Refused::Principal {
                held: 32,
                limit: 32
            }
        );
        // At attach each moves to its uid, whose share is an eighth.
        let mut moved = held.into_iter();
        let mine: Vec<Share> = (0..8)
            .map(|_| {
                moved
                    .next()
                    .unwrap()
                    .rekey(Principal::Uid(7), false)
                    .unwrap()
            })
            .collect();
        let (_ninth, r) = moved
            .next()
            .unwrap()
            .rekey(Principal::Uid(7), false)
            .unwrap_err();
        assert_eq!(r, Refused::Principal { held: 8, limit: 8 });
        assert_eq!(s.held(&Principal::Uid(7)), mine.len());
    }
}

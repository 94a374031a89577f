//! Who is asking: one [`Identity`] per attach, resolved by the session
//! under one [`AccessPolicy`] before a filesystem sees the attach. The
//! filesystems receive the identity with every call and never see raw
//! claims (`uname`, `n_uname`) or transport details.

use std::sync::Arc;

use tracing::warn;

use super::{FsError, FsResult, Peer};
use crate::auth::Authenticator;
use crate::proto::{NONUNAME, errno};

/// How an [`Identity`] was established, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The Unix socket peer's own uid (`SO_PEERCRED`): unforgeable.
    Peer,
    /// A credential written to an auth fid and verified (MUNGE).
    Credential,
    /// Named in `Tattach` by a Unix peer that is a service identity of the
    /// policy (root: v9fs `access=client`, the aggregator).
    NamedByService {
        /// The service peer's uid.
        service: u32,
    },
    /// What the client said, believed because the policy says so
    /// (`auth = "none"` on a trusted network).
    Claim,
}

/// The user on whose behalf every operation of a fid runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The uid.
    pub uid: u32,
    /// Its name, when the user database knows it.
    pub name: Option<String>,
    /// Primary gid, when the user database knows the user.
    pub gid: Option<u32>,
    /// Primary and supplementary gids (`getgrouplist`), never what a client
    /// claims; empty for a user the database does not know.
    pub gids: Vec<u32>,
    /// How it was established.
    pub proof: Proof,
}

impl Identity {
    /// `uid` established by `proof`, with its name and groups from this
    /// machine's user database.
    pub fn lookup(uid: u32, proof: Proof) -> Identity {
        match crate::sys::users::passwd(uid) {
            Some((name, gid)) => Identity {
                uid,
                gids: crate::sys::users::group_list(&name, gid),
                name: Some(name),
                gid: Some(gid),
                proof,
            },
            None => Identity {
                uid,
                name: None,
                gid: None,
                gids: Vec::new(),
                proof,
            },
        }
    }

    /// The principal that proved itself: the service peer for a user it
    /// named, otherwise the user.
    pub fn principal(&self) -> u32 {
        match self.proof {
            Proof::NamedByService { service } => service,
            _ => self.uid,
        }
    }
}

/// Who may attach and as whom. The default is closed: an attach over a
/// transport without peer credentials (TCP) needs a verified credential,
/// and claims are not believed; root on a Unix socket may name the user.
#[derive(Clone)]
pub struct AccessPolicy {
    /// Verifies credentials written to auth fids (`Tauth`); `None` answers
    /// `Tauth` with an error, as servers without authentication do.
    pub verifier: Option<Arc<dyn Authenticator>>,
    /// Believe the user a TCP client names without a credential
    /// (`auth = "none"`, a trusted network).
    pub believe_claims: bool,
    /// Unix peers whose `Tattach` may name another user.
    pub service_uids: Vec<u32>,
    /// When set, only these principals (see [`Identity::principal`]) may
    /// attach (the agent's `--allow-user`).
    pub allow: Option<Vec<u32>>,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self {
            verifier: None,
            believe_claims: false,
            service_uids: vec![0],
            allow: None,
        }
    }
}

impl std::fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("verifier", &self.verifier.as_ref().map(|v| v.name()))
            .field("believe_claims", &self.believe_claims)
            .field("service_uids", &self.service_uids)
            .field("allow", &self.allow)
            .finish()
    }
}

/// What a `Tattach` says about its user.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// `uname`.
    pub uname: &'a str,
    /// `n_uname` (.u/.L); `NONUNAME` if none.
    pub n_uname: u32,
}

impl Claim<'_> {
    /// The claimed uid: `n_uname`, else `uname` looked up.
    pub fn uid(&self) -> Option<u32> {
        if self.n_uname != NONUNAME {
            return Some(self.n_uname);
        }
        crate::sys::users::uid_by_name(self.uname)
    }
}

impl AccessPolicy {
    /// Believes what TCP clients claim (`auth = "none"`): for trusted
    /// networks and tests.
    pub fn believing_claims() -> Self {
        Self {
            believe_claims: true,
            ..Self::default()
        }
    }

    /// The identity of an attach from `peer` claiming `claim`, with
    /// `verified` the uid of a verified credential: this attach's (already
    /// checked against the claim), or, with `earlier`, one the connection
    /// proved at an earlier attach, which lets a service uid name users.
    ///
    /// # Errors
    /// EPERM for an unauthenticated TCP attach under a closed policy or a
    /// principal outside the allow-list; EACCES for a believed claim that
    /// names no known user.
    pub fn resolve(
        &self,
        peer: &Peer,
        verified: Option<u32>,
        earlier: bool,
        claim: Claim<'_>,
    ) -> FsResult<Identity> {
        let id = match (verified, peer.uid) {
            (Some(s), _) if earlier && self.service_uids.contains(&s) => match claim.uid() {
                Some(u) if u != s => Identity::lookup(u, Proof::NamedByService { service: s }),
                _ => Identity::lookup(s, Proof::Credential),
            },
            (Some(uid), _) if earlier => {
                // Only a service's proof carries over to other attaches.
                if claim.uid() != Some(uid) {
                    return Err(FsError::new(errno::EPERM)
                        .with("credential does not match the attaching user"));
                }
                Identity::lookup(uid, Proof::Credential)
            }
            (Some(uid), _) => Identity::lookup(uid, Proof::Credential),
            (None, Some(p)) if self.service_uids.contains(&p) => match claim.uid() {
                Some(u) if u != p => Identity::lookup(u, Proof::NamedByService { service: p }),
                _ => Identity::lookup(p, Proof::Peer),
            },
            (None, Some(p)) => Identity::lookup(p, Proof::Peer),
            (None, None) if self.believe_claims => {
                let uid = claim.uid().ok_or_else(|| {
                    FsError::ACCES.with(format!(
                        "unknown user {:?} and no numeric uid in the attach",
                        claim.uname
                    ))
                })?;
                Identity::lookup(uid, Proof::Claim)
            }
            (None, None) => {
                let e = format!(
                    "{}: TCP attach without authentication refused (configure auth = \"munge\", or auth = \"none\" on a trusted network)",
                    peer.addr
                );
                warn!("{e}");
                return Err(FsError::new(errno::EPERM).with(e));
            }
        };
        if let Some(allow) = &self.allow
            && !allow.contains(&id.principal())
        {
            warn!(
                "{}: attach as {:?} (uid {}) refused: not an allowed user",
                peer.addr, claim.uname, id.uid
            );
            return Err(FsError::new(errno::EPERM).with("not an allowed user of this server"));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: Option<u32>) -> Peer {
        Peer {
            addr: "test".into(),
            uid,
            gid: uid,
        }
    }

    fn claim(n_uname: u32) -> Claim<'static> {
        Claim { uname: "", n_uname }
    }

    #[test]
    fn closed_by_default_and_proofs_are_recorded() {
        let p = AccessPolicy::default();
        let e = p.resolve(&peer(None), None, false, claim(0)).unwrap_err();
        assert_eq!(e.errno, errno::EPERM, "TCP without a credential");
        let id = p.resolve(&peer(None), Some(7), false, claim(7)).unwrap();
        assert_eq!((id.uid, id.proof), (7, Proof::Credential));
        // A Unix peer is itself, whatever it claims...
        let id = p.resolve(&peer(Some(1000)), None, false, claim(0)).unwrap();
        assert_eq!((id.uid, id.proof), (1000, Proof::Peer));
        // ...unless it is a service identity naming the user.
        let id = p.resolve(&peer(Some(0)), None, false, claim(1000)).unwrap();
        assert_eq!(
            (id.uid, id.proof, id.principal()),
            (1000, Proof::NamedByService { service: 0 }, 0)
        );
        let id = p
            .resolve(
                &peer(Some(0)),
                None,
                false,
                Claim {
                    uname: "no-such-user-gproc",
                    n_uname: NONUNAME,
                },
            )
            .unwrap();
        assert_eq!((id.uid, id.proof), (0, Proof::Peer));
    }

    #[test]
    fn believed_claims_and_allow_list() {
        let p = AccessPolicy::believing_claims();
        let id = p.resolve(&peer(None), None, false, claim(0)).unwrap();
        assert_eq!(
            (id.uid, id.proof, id.name.as_deref()),
            (0, Proof::Claim, Some("root"))
        );
        assert!(id.gids.contains(&0));
        let unknown = Claim {
            uname: "no-such-user-gproc",
            n_uname: NONUNAME,
        };
        assert_eq!(
            p.resolve(&peer(None), None, false, unknown)
                .unwrap_err()
                .errno,
            errno::EACCES
        );
        let p = AccessPolicy {
            allow: Some(vec![0]),
            ..AccessPolicy::default()
        };
        assert!(p.resolve(&peer(Some(0)), None, false, claim(1000)).is_ok());
        assert_eq!(
            p.resolve(&peer(Some(1000)), None, false, claim(1000))
                .unwrap_err()
                .errno,
            errno::EPERM
        );
        assert_eq!(
            p.resolve(&peer(None), Some(1000), false, claim(1000))
                .unwrap_err()
                .errno,
            errno::EPERM
        );
    }
}

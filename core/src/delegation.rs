//! Delegations: the proof a node shows for the stock client it signs envelopes for.
//!
//! A stock Yjs client cannot sign, so the room's node (a member with [`crate::FLAG_PROXY`])
//! signs its updates. A [`Delegation`] says for whom: the client's [`Grant`] and the grant's
//! invite key's signature over (room, grant), made by whoever held the invite link's secret
//! (the node gets the token from the client when it connects). An envelope that names a
//! delegation (`Envelope::via`, the grant's invite key) is judged by every replica under the
//! grant's role with no member key of its own, so a stock candidate's edit is a candidate's
//! edit everywhere, and `verify` shows "via node, as candidate". Nothing in a delegation lets
//! anyone admit a key or sign another update: it only names a grant whose secret was shown.

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result};
use crate::grant::{Grant, Invite, RoomId};
use crate::identity::{sha256, PeerKey};

const DOMAIN: &[u8] = b"arena/delegation/v1";
/// Longest encoded grant a delegation may carry.
const MAX_GRANT: usize = 256;

/// A stock client's grant, countersigned by its invite key: the node may sign envelopes
/// that name it (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    /// The stock client's grant.
    pub grant: Grant,
    /// The invite key's signature over (domain, room, grant hash).
    pub signature: [u8; 64],
}

fn signed_bytes(grant: &Grant) -> Vec<u8> {
    let mut w = Writer::with_capacity(DOMAIN.len() + 64);
    w.fixed(DOMAIN).fixed(&grant.room.0).fixed(&sha256(&[&grant.encode()]));
    w.finish()
}

impl Delegation {
    /// Signs the delegation for `invite` (a stock client's token, held by the node).
    pub fn sign(invite: &Invite) -> Self {
        let grant = invite.grant.clone();
        let signature = invite.sign_with_secret(&signed_bytes(&grant));
        Delegation { grant, signature }
    }

    /// The key envelopes name as their `via`: the grant's invite key.
    pub fn key(&self) -> PeerKey {
        self.grant.invite
    }

    /// Checks the grant (for `room`, not expired at `now_ms`, unix milliseconds, when given),
    /// that it is a writing role's and not a node's own grant, and the invite key's signature.
    pub fn verify(&self, room: &RoomId, now_ms: Option<u64>) -> Result<()> {
        self.grant.verify(room, now_ms)?;
        if !self.grant.role.may_write() {
            return Err(CoreError::NotAllowed(format!("a delegation for a {} grant", self.grant.role)));
        }
        if self.grant.is_proxy() {
            return Err(CoreError::NotAllowed("a delegation for a node's own grant".into()));
        }
        self.grant.invite.verify(&signed_bytes(&self.grant), &self.signature, "delegation")
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(&self.grant.encode()).fixed(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let grant = Grant::decode(r.bytes(MAX_GRANT)?)?;
        Ok(Delegation { grant, signature: r.fixed()? })
    }

    /// Binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(240);
        self.write(&mut w);
        w.finish()
    }

    /// Parses the binary form (the signatures are checked by [`Delegation::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "delegation");
        let d = Self::read(&mut r)?;
        r.finish()?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::Role;
    use crate::identity::Identity;

    #[test]
    fn signed_by_the_invite_key_only() {
        let key = Identity::from_passphrase("deleg room");
        let inv = Invite::issue(&key, Role::Candidate, 2_000_000_000, 0, 1);
        let d = Delegation::sign(&inv);
        d.verify(&key.public(), Some(1_700_000_000_000)).unwrap();
        assert_eq!(Delegation::decode(&d.encode()).unwrap(), d);
        // Another grant's secret cannot sign for this grant.
        let other = Invite::issue(&key, Role::Candidate, 2_000_000_000, 0, 2);
        let mut forged = Delegation::sign(&other);
        forged.grant = inv.grant.clone();
        assert!(forged.verify(&key.public(), None).is_err());
        // Expired, observer and node grants delegate nothing.
        assert!(d.verify(&key.public(), Some(2_000_000_001_000)).is_err());
        let obs = Invite::issue(&key, Role::Observer, 2_000_000_000, 0, 3);
        assert!(Delegation::sign(&obs).verify(&key.public(), None).is_err());
        let node = Invite::issue(&key, Role::Host, 2_000_000_000, crate::FLAG_PROXY, 4);
        assert!(Delegation::sign(&node).verify(&key.public(), None).is_err());
        assert!(d.verify(&Identity::from_passphrase("elsewhere").public(), None).is_err());
    }
}

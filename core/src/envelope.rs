//! Signed update envelopes: every update that crosses a network travels in one.
//!
//! `{room, author, seq, prev, session, update, signature}`. The signature covers the room, so
//! an envelope cannot be replayed into another room, and a digest of the update, so signing
//! and chaining cost the same for a keystroke and for a paste. `prev` is the hash of the
//! author's previous envelope (all zeros for seq 0): per author the envelopes form a hash
//! chain, and a recorded session is tamper-evident.
//!
//! An envelope a node signs for a stock client names the client's delegation (`via`, the
//! grant's invite key; see [`crate::Delegation`]): version 2, whose signature covers `via`
//! under its own domain. Version 1 (no `via`) decodes and verifies exactly as before.

use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::grant::RoomId;
use crate::identity::{sha256, Hash, Identity, PeerKey};

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"arena/envelope/v1";
/// An envelope with `via`.
const VERSION_VIA: u8 = 2;
const DOMAIN_VIA: &[u8] = b"arena/envelope/v2";
/// The largest update an envelope may carry (a big paste fits; a hostile peer cannot make us
/// allocate more).
pub const MAX_UPDATE: usize = 4 << 20;

/// A signed, chained yrs update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The room (signed, not sent: every transport is already scoped to a room).
    pub room: RoomId,
    /// Who wrote it.
    pub author: PeerKey,
    /// Position in the author's chain, from 0.
    pub seq: u64,
    /// Hash of the author's previous envelope; zeros for seq 0.
    pub prev: Hash,
    /// The author's replica session: the update may only create items under
    /// `author.client_id(session)` (proxies excepted, see [`crate::grant::FLAG_PROXY`]).
    pub session: u32,
    /// A yrs v1 update.
    pub update: Vec<u8>,
    /// For a node's envelope written by a stock client: the invite key of the client's
    /// [`crate::Delegation`]; its grant's role is what every replica holds the update to.
    pub via: Option<PeerKey>,
    /// The author's Ed25519 signature.
    pub signature: [u8; 64],
}

impl Envelope {
    /// Signs a new envelope.
    pub fn seal(room: RoomId, author: &Identity, seq: u64, prev: Hash, session: u32, update: Vec<u8>) -> Self {
        Self::seal_via(room, author, seq, prev, session, None, update)
    }

    /// Signs a new envelope naming the delegation `via` (a node signing for a stock client).
    pub fn seal_via(
        room: RoomId,
        author: &Identity,
        seq: u64,
        prev: Hash,
        session: u32,
        via: Option<PeerKey>,
        update: Vec<u8>,
    ) -> Self {
        let mut e = Envelope { room, author: author.public(), seq, prev, session, update, via, signature: [0; 64] };
        e.signature = author.sign(&e.signed_bytes());
        e
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let digest = sha256(&[&self.update]);
        let mut w = Writer::with_capacity(DOMAIN.len() + 32 * 5 + 16);
        w.fixed(if self.via.is_some() { DOMAIN_VIA } else { DOMAIN })
            .fixed(&self.room.0)
            .fixed(&self.author.0)
            .var(self.seq)
            .fixed(&self.prev)
            .var(u64::from(self.session))
            .fixed(&digest);
        if let Some(via) = &self.via {
            w.fixed(&via.0);
        }
        w.finish()
    }

    /// This envelope's hash: the next envelope of the author names it as `prev`.
    pub fn hash(&self) -> Hash {
        sha256(&[&self.signed_bytes(), &self.signature])
    }

    /// Checks the signature alone (see [`crate::Ledger`] for the full check).
    pub fn verify_signature(&self) -> Result<()> {
        self.author.verify(&self.signed_bytes(), &self.signature, "envelope")
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u8(if self.via.is_some() { VERSION_VIA } else { VERSION })
            .fixed(&self.author.0)
            .var(self.seq)
            .fixed(&self.prev)
            .var(u64::from(self.session))
            .bytes(&self.update);
        if let Some(via) = &self.via {
            w.fixed(&via.0);
        }
        w.fixed(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>, room: RoomId) -> Result<Self> {
        let version = r.u8()?;
        if version != VERSION && version != VERSION_VIA {
            return Err(r.err("unknown envelope version"));
        }
        Ok(Envelope {
            room,
            author: PeerKey(r.fixed()?),
            seq: r.var()?,
            prev: r.fixed()?,
            session: r.var_u32()?,
            update: r.bytes(MAX_UPDATE)?.to_vec(),
            via: if version == VERSION_VIA { Some(PeerKey(r.fixed()?)) } else { None },
            signature: r.fixed()?,
        })
    }

    /// Binary form (without the room).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.update.len() + 150);
        self.write(&mut w);
        w.finish()
    }

    /// Parses the binary form for `room`. Checks nothing but the shape.
    pub fn decode(bytes: &[u8], room: RoomId) -> Result<Self> {
        let mut r = Reader::new(bytes, "envelope");
        let e = Self::read(&mut r, room)?;
        r.finish()?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let room = Identity::from_passphrase("room").public();
        let alice = Identity::from_passphrase("alice");
        let e = Envelope::seal(room, &alice, 0, [0; 32], 1, vec![1, 2, 3]);
        let bytes = e.encode();
        let back = Envelope::decode(&bytes, room).unwrap();
        assert_eq!(back, e);
        back.verify_signature().unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            if let Ok(b) = Envelope::decode(&bad, room) {
                assert!(b.verify_signature().is_err(), "flipped byte {i} went unnoticed");
            }
        }
        for n in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..n], room).is_err());
        }
        let other_room = Identity::from_passphrase("other").public();
        assert!(Envelope::decode(&bytes, other_room).unwrap().verify_signature().is_err());
    }

    #[test]
    fn via_is_signed_and_v1_is_unchanged() {
        let room = Identity::from_passphrase("room").public();
        let node = Identity::from_passphrase("node");
        let via = Identity::from_passphrase("invite").public();
        let v1 = Envelope::seal(room, &node, 0, [0; 32], 1, vec![1, 2, 3]);
        // The v1 form, byte for byte: version 1, no via.
        let bytes = v1.encode();
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes.len(), 1 + 32 + 1 + 32 + 1 + 4 + 64);
        let e = Envelope::seal_via(room, &node, 0, [0; 32], 1, Some(via), vec![1, 2, 3]);
        let bytes = e.encode();
        assert_eq!(bytes[0], 2);
        let back = Envelope::decode(&bytes, room).unwrap();
        assert_eq!(back, e);
        back.verify_signature().unwrap();
        assert_ne!(e.hash(), v1.hash());
        // Dropping or swapping the via breaks the signature.
        let mut stripped = e.clone();
        stripped.via = None;
        assert!(stripped.verify_signature().is_err());
        let mut swapped = e.clone();
        swapped.via = Some(node.public());
        assert!(swapped.verify_signature().is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            if let Ok(b) = Envelope::decode(&bad, room) {
                assert!(b.verify_signature().is_err(), "flipped byte {i} went unnoticed");
            }
        }
    }
}

//! Revocation: a host (or the room's node) removes a member, or withdraws an invite, with a
//! signed record that every replica enforces.
//!
//! A revoked **member** keeps the envelopes it wrote before `from_seq` (they are history),
//! and every replica refuses its envelopes from `from_seq` on; it no longer counts in the
//! analyzer's consensus. A revoked **invite** (the grant's invite key) admits nobody new.
//! The record names `from_seq`, the member's chain position the revoker had seen, so every
//! replica cuts the member's chain at the same place, whatever else it had received.

use crate::codec::{Reader, Writer};
use crate::error::Result;
use crate::grant::RoomId;
use crate::identity::{Identity, PeerKey};

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"arena/revocation/v1";

/// A signed revocation of a member key or of an invite key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The room (signed, not sent).
    pub room: RoomId,
    /// The member key, or a grant's invite key.
    pub target: PeerKey,
    /// For a member: its envelopes from this seq on are refused.
    pub from_seq: u64,
    /// Who revoked: an admitted host, or the room's node.
    pub by: PeerKey,
    /// When, unix milliseconds (informational).
    pub at_ms: u64,
    /// `by`'s signature.
    pub signature: [u8; 64],
}

impl Revocation {
    /// Signs a revocation of `target` by `by`.
    pub fn sign(room: RoomId, by: &Identity, target: PeerKey, from_seq: u64, at_ms: u64) -> Self {
        let mut r = Revocation { room, target, from_seq, by: by.public(), at_ms, signature: [0; 64] };
        r.signature = by.sign(&r.signed_bytes());
        r
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.fixed(DOMAIN).fixed(&self.room.0).fixed(&self.target.0).var(self.from_seq).fixed(&self.by.0).var(self.at_ms);
        w.finish()
    }

    /// Checks the signature (who may revoke is the ledger's to say).
    pub fn verify_signature(&self) -> Result<()> {
        self.by.verify(&self.signed_bytes(), &self.signature, "revocation")
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u8(VERSION).fixed(&self.target.0).var(self.from_seq).fixed(&self.by.0).var(self.at_ms).fixed(&self.signature);
    }

    pub(crate) fn read(r: &mut Reader<'_>, room: RoomId) -> Result<Self> {
        if r.u8()? != VERSION {
            return Err(r.err("unknown revocation version"));
        }
        Ok(Revocation {
            room,
            target: PeerKey(r.fixed()?),
            from_seq: r.var()?,
            by: PeerKey(r.fixed()?),
            at_ms: r.var()?,
            signature: r.fixed()?,
        })
    }

    /// Binary form (without the room).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160);
        self.write(&mut w);
        w.finish()
    }

    /// Parses the binary form for `room`; checks nothing but the shape.
    pub fn decode(bytes: &[u8], room: RoomId) -> Result<Self> {
        let mut r = Reader::new(bytes, "revocation");
        let v = Self::read(&mut r, room)?;
        r.finish()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let room = Identity::from_passphrase("room").public();
        let host = Identity::from_passphrase("host");
        let r = Revocation::sign(room, &host, Identity::from_passphrase("cand").public(), 7, 1);
        let bytes = r.encode();
        let back = Revocation::decode(&bytes, room).unwrap();
        assert_eq!(back, r);
        back.verify_signature().unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            if let Ok(b) = Revocation::decode(&bad, room) {
                assert!(b.verify_signature().is_err(), "flipped byte {i} went unnoticed");
            }
        }
        let other = Identity::from_passphrase("other").public();
        assert!(Revocation::decode(&bytes, other).unwrap().verify_signature().is_err());
    }
}

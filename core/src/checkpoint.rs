//! Signed checkpoints: the full document state at a cut of the envelope log.
//!
//! A late joiner starts from a checkpoint signed by the host or by a proxy node, then
//! verifies only the envelopes after it. `heads` says, per author, how many envelopes the
//! state includes and the last one's hash, so the chains continue from it.

use crate::codec::{Reader, Writer};
use crate::error::{CoreError, Result};
use crate::grant::{Role, RoomId};
use crate::identity::{sha256, Identity, PeerKey};
use crate::ledger::{ChainHead, Ledger};

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"arena/checkpoint/v1";
/// Largest checkpoint state accepted from a peer.
pub(crate) const MAX_STATE: usize = 256 << 20;

/// The document state at a cut, signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The room.
    pub room: RoomId,
    /// Per author: envelopes included and the last one's hash. Sorted by author.
    pub heads: Vec<(PeerKey, ChainHead)>,
    /// `encode_state_as_update_v1` of the whole document.
    pub state: Vec<u8>,
    /// Its state vector (v1).
    pub state_vector: Vec<u8>,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Who signed it: the host or a proxy node.
    pub signer: PeerKey,
    /// Signature.
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Signs a checkpoint.
    pub fn seal(
        room: RoomId,
        mut heads: Vec<(PeerKey, ChainHead)>,
        state: Vec<u8>,
        state_vector: Vec<u8>,
        at_ms: u64,
        signer: &Identity,
    ) -> Self {
        heads.sort_by_key(|h| h.0);
        let mut c = Checkpoint { room, heads, state, state_vector, at_ms, signer: signer.public(), signature: [0; 64] };
        c.signature = signer.sign(&c.signed_bytes());
        c
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128 + self.heads.len() * 72);
        w.fixed(DOMAIN).fixed(&self.room.0).var(self.at_ms).fixed(&self.signer.0);
        w.fixed(&sha256(&[&self.state])).fixed(&sha256(&[&self.state_vector]));
        w.var(self.heads.len() as u64);
        for (k, h) in &self.heads {
            w.fixed(&k.0).var(h.next_seq).fixed(&h.last_hash);
        }
        w.finish()
    }

    /// Checks the signature and that the signer is the host or a proxy in `ledger`.
    pub fn verify(&self, ledger: &Ledger) -> Result<()> {
        if self.room != ledger.room() {
            return Err(CoreError::WrongRoom { expected: ledger.room().to_hex(), got: self.room.to_hex() });
        }
        let ok = ledger.member(&self.signer).is_some_and(|m| m.role == Role::Host || m.proxy);
        if !ok && self.signer != self.room {
            return Err(CoreError::NotAllowed(format!("checkpoint signer {} is neither host nor node", self.signer)));
        }
        self.signer.verify(&self.signed_bytes(), &self.signature, "checkpoint")
    }

    /// Binary form (without the room).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.state.len() + 256);
        w.u8(VERSION).var(self.at_ms).fixed(&self.signer.0).bytes(&self.state).bytes(&self.state_vector);
        w.var(self.heads.len() as u64);
        for (k, h) in &self.heads {
            w.fixed(&k.0).var(h.next_seq).fixed(&h.last_hash);
        }
        w.fixed(&self.signature);
        w.finish()
    }

    /// `at_ms` of an encoded checkpoint, read from its header without decoding (copying) the
    /// state, so listing a room's checkpoints stays cheap however many and large they are.
    /// The rest is checked when the checkpoint itself is read. (Only the sled store lists.)
    #[cfg(feature = "store")]
    pub(crate) fn peek_at_ms(bytes: &[u8]) -> Result<u64> {
        let mut r = Reader::new(bytes, "checkpoint");
        if r.u8()? != VERSION {
            return Err(r.err("unknown checkpoint version"));
        }
        r.var()
    }

    /// Parses the binary form for `room`.
    pub fn decode(bytes: &[u8], room: RoomId) -> Result<Self> {
        let mut r = Reader::new(bytes, "checkpoint");
        if r.u8()? != VERSION {
            return Err(r.err("unknown checkpoint version"));
        }
        let at_ms = r.var()?;
        let signer = PeerKey(r.fixed()?);
        let state = r.bytes(MAX_STATE)?.to_vec();
        let state_vector = r.bytes(MAX_STATE)?.to_vec();
        let n = r.count(65)?;
        let mut heads = Vec::with_capacity(n);
        for _ in 0..n {
            heads.push((PeerKey(r.fixed()?), ChainHead { next_seq: r.var()?, last_hash: r.fixed()? }));
        }
        let signature = r.fixed()?;
        r.finish()?;
        Ok(Checkpoint { room, heads, state, state_vector, at_ms, signer, signature })
    }
}

//! Room traffic on gossipsub, encrypted to the room's members.
//!
//! Gossipsub has no per-peer delivery: whoever subscribes to a topic receives what is
//! published on it, and every peer in the mesh forwards it. So instead of choosing who
//! receives a room's messages we make them unreadable to everyone but members: every
//! payload on a room's topics is sealed with XChaCha20-Poly1305 under a key derived
//! (HKDF-SHA256) from the room's read key, which only invite links carry
//! ([`arena_core::Invite::read_key`]) and only the room key can derive. A forwarding peer
//! that is not a member cannot read what it forwards either. The topic names, the rendezvous
//! namespace and the DHT key of a room are derived from the read key too, so none of them
//! names the room; a stranger who knows the room id cannot compute them.
//!
//! What a stranger subscribed to a room's (opaque) topic still sees: that the topic exists
//! and who is subscribed to it (gossipsub announces subscriptions to every connected peer),
//! each message's size, timing and publisher peer id (gossipsub signs every message with
//! its publisher's key: for an arena node that is its member key), and which of the two
//! topics (envelopes or presence) a message went to. Not the room id, not the text, names,
//! admissions, grants or member keys inside the messages.
//!
//! Sealed form: `0xA1` (version), a fresh random 24-byte nonce, then the ciphertext and its
//! 16-byte tag; the topic name is the associated data (a message moved to another topic
//! does not open).

use arena_core::ReadKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use libp2p::{gossipsub, kad, rendezvous};

use crate::error::{NodeError, Result};

/// First byte of a sealed message (never a `Wire` tag, so nobody mistakes one for the other).
pub const SEALED_V1: u8 = 0xA1;
/// Bytes a sealed message adds to its plaintext: version, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + 24 + 16;
const SALT: &[u8] = b"arena/read-key/hkdf/v1";

/// 32 bytes derived from the read key for `info`.
fn derive(read: &ReadKey, info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // Cannot fail: HKDF-SHA256 gives up to 255 × 32 bytes.
    let _ = Hkdf::<sha2_hkdf::Sha256>::new(Some(SALT), &read.0).expand(info, &mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The gossipsub topic of a room's envelopes (admissions, envelopes, fragments).
pub fn topic_for(read: &ReadKey) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/arena/t/{}", hex(&derive(read, b"arena/topic/envelopes/v1"))))
}

/// The gossipsub topic of a room's presence (y-protocols awareness updates).
pub fn presence_topic_for(read: &ReadKey) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/arena/t/{}", hex(&derive(read, b"arena/topic/presence/v1"))))
}

/// The rendezvous namespace of a room (9 + 64 characters, under the 255 allowed).
pub fn namespace_for(read: &ReadKey) -> rendezvous::Namespace {
    rendezvous::Namespace::new(format!("arena/ns/{}", hex(&derive(read, b"arena/rendezvous/v1"))))
        .unwrap_or_else(|_| rendezvous::Namespace::from_static("arena"))
}

/// The DHT key under which a room's peers announce themselves as providers.
pub fn provider_key(read: &ReadKey) -> kad::RecordKey {
    kad::RecordKey::new(&derive(read, b"arena/provider/v1"))
}

/// The cipher of one room's gossip.
#[derive(Clone)]
pub struct RoomCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for RoomCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomCipher(..)")
    }
}

impl RoomCipher {
    /// The cipher of the room whose read key is `read`.
    pub fn new(read: &ReadKey) -> Self {
        let key = derive(read, b"arena/gossip-key/xchacha20poly1305/v1");
        RoomCipher { aead: XChaCha20Poly1305::new(&key.into()) }
    }

    /// Seals `plaintext` for `topic` under a fresh random nonce.
    pub fn seal(&self, topic: &gossipsub::TopicHash, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce).map_err(|e| NodeError::Transport(format!("no randomness: {e}")))?;
        let sealed = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: topic.as_str().as_bytes() })
            .map_err(|_| NodeError::Transport("sealing a gossip message failed".into()))?;
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a message sealed for `topic`; `None` when it is not one of this room's (another
    /// key, another topic, altered, cut, or not sealed at all).
    pub fn open(&self, topic: &gossipsub::TopicHash, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != SEALED_V1 {
            return None;
        }
        let (nonce, ciphertext) = sealed[1..].split_at(24);
        self.aead.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: topic.as_str().as_bytes() }).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arena_core::Identity;

    #[test]
    fn names_do_not_name_the_room_and_seals_open_only_with_their_key_and_topic() {
        let room_key = Identity::from_passphrase("room");
        let (room, read) = (room_key.public(), ReadKey::derive(&room_key));
        let names = [
            topic_for(&read).to_string(),
            presence_topic_for(&read).to_string(),
            namespace_for(&read).to_string(),
            hex(provider_key(&read).as_ref()),
        ];
        for n in &names {
            assert!(!n.contains(&room.to_hex()), "{n}");
        }
        assert_ne!(names[0], names[1]);
        // Stable: every member computes the same names.
        assert_eq!(topic_for(&ReadKey::derive(&room_key)).to_string(), names[0]);
        let other = ReadKey::derive(&Identity::from_passphrase("other"));
        assert_ne!(topic_for(&other).to_string(), names[0]);

        let c = RoomCipher::new(&read);
        let t = topic_for(&read).hash();
        let sealed = c.seal(&t, b"the secret question").unwrap();
        assert_eq!(sealed.len(), SEAL_OVERHEAD + 19);
        assert_eq!(c.open(&t, &sealed).unwrap(), b"the secret question");
        // Fresh nonce each time.
        assert_ne!(c.seal(&t, b"the secret question").unwrap(), sealed);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        // Another room's key, another topic, a flipped bit, a cut: nothing.
        assert!(RoomCipher::new(&other).open(&t, &sealed).is_none());
        assert!(c.open(&presence_topic_for(&read).hash(), &sealed).is_none());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(c.open(&t, &flipped).is_none());
        assert!(c.open(&t, &sealed[..SEAL_OVERHEAD - 1]).is_none());
        assert!(c.open(&t, b"").is_none());
        assert!(c.open(&t, &[0u8; 64]).is_none());
    }
}

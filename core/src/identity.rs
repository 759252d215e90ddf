//! Ed25519 identities, public keys and the client ids a key owns.

use std::fmt;

#[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-fast-signing"))))]
use ed25519_dalek::Signer as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

// wasm32 builds (without `wasm-fast-signing`) sign without ed25519-dalek's static basepoint
// tables (`fixed_base`: 36 KiB less gzipped module); native tests compare the two.
#[cfg(any(test, all(target_arch = "wasm32", not(feature = "wasm-fast-signing"))))]
mod fixed_base;
mod zip215;

#[cfg(test)]
pub(crate) use zip215::{challenge, secret_scalar, sign_raw};
pub(crate) use zip215::{verify as verify_signature, verify_batch as verify_signatures, Key};
#[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-fast-signing"))))]
type SecretKey = ed25519_dalek::SigningKey;
#[cfg(all(target_arch = "wasm32", not(feature = "wasm-fast-signing")))]
type SecretKey = fixed_base::SecretKey;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A peer's (or a room's) Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerKey(pub [u8; 32]);

impl PeerKey {
    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let bytes = unhex(s).ok_or_else(|| CoreError::malformed("peer key", "not 64 hex digits"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CoreError::malformed("peer key", "not 32 bytes"))?;
        Ok(PeerKey(arr))
    }

    /// The curve point, checked. Fails for byte strings that are not a valid key.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| CoreError::malformed("peer key", "not a curve point"))
    }

    /// The key as the signature rule reads it; fails like [`PeerKey::verifying_key`].
    pub(crate) fn key(&self) -> Result<Key> {
        Key::decode(&self.0).ok_or_else(|| CoreError::malformed("peer key", "not a curve point"))
    }

    /// Checks `sig` over `msg` by this key, by the room's one signature rule (ZIP-215, the
    /// same verdict alone and in a batch: see `identity/zip215.rs`).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64], what: &'static str) -> Result<()> {
        let key = self.key()?;
        verify_signature(&key, msg, &Signature::from_bytes(sig)).then_some(()).ok_or(CoreError::BadSignature(what))
    }

    /// Refuses a key that is not the canonical encoding of a point of prime order: a
    /// small-order key (anyone can sign for it), one with a torsion part, a non-canonical
    /// encoding. No honest key is any of these; `what` names the key in the error.
    pub(crate) fn check_prime_order(&self, what: &str) -> Result<()> {
        if zip215::is_prime_order(&self.0) {
            Ok(())
        } else {
            Err(CoreError::NotAllowed(format!(
                "{what} {self} is not a key of prime order (small-order, torsion or non-canonical)"
            )))
        }
    }

    /// The yrs client id this key writes under in `session` (a counter the peer bumps each
    /// time it starts a fresh replica). 32 bits, like Yjs's own random client ids, so the id
    /// is exact in JavaScript.
    pub fn client_id(&self, session: u32) -> u64 {
        let h = sha256(&[b"arena/client-id/v1", &self.0, &session.to_le_bytes()]);
        u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({}…)", &self.to_hex()[..12])
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A peer's secret key. Its public half is the peer's identity everywhere.
#[derive(Clone)]
pub struct Identity {
    key: SecretKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl Identity {
    /// From 32 secret bytes (random bytes from the OS or `crypto.getRandomValues`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity { key: SecretKey::from_bytes(&seed) }
    }

    /// A deterministic identity from a passphrase: for tests, examples and benches only.
    /// Anyone who guesses the phrase has the key; production keys come from [`Self::from_seed`]
    /// with random bytes (arena-node's `load_or_create_identity` keeps them in a 0600 file).
    pub fn from_passphrase(phrase: &str) -> Self {
        Self::from_seed(sha256(&[b"arena/test-identity", phrase.as_bytes()]))
    }

    /// A second identity derived from this one's secret seed for `purpose` (the same seed
    /// and purpose always give the same key; nobody without the seed can compute it). The
    /// bootstrap node uses it only to carry over its libp2p replica's key in a data dir made
    /// before that key had a file of its own; new keys are random.
    pub fn derive(&self, purpose: &str) -> Self {
        // Byte for byte the derivation the node used before this function existed (its
        // keys, and so the replicas' author chains, stay the same across the upgrade).
        let phrase = format!("{purpose}/{}", PeerKey(self.seed()).to_hex());
        Self::from_seed(sha256(&[b"arena/test-identity", phrase.as_bytes()]))
    }

    /// The secret seed, to persist the identity.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PeerKey {
        PeerKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `msg` (Ed25519, RFC 8032: deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes().chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_identities_are_stable_and_distinct() {
        let node = Identity::from_seed([7; 32]);
        let a = node.derive("arena/bootstrap-p2p");
        assert_eq!(a.public(), node.derive("arena/bootstrap-p2p").public());
        assert_ne!(a.public(), node.derive("another purpose").public());
        assert_ne!(a.public(), Identity::from_seed([8; 32]).derive("arena/bootstrap-p2p").public());
        assert_ne!(a.public(), node.public());
        // The derivation the node used before `derive` existed: its replicas keep their keys.
        let before = Identity::from_passphrase(&format!("arena/bootstrap-p2p/{}", PeerKey(node.seed()).to_hex()));
        assert_eq!(a.public(), before.public());
    }

    #[test]
    fn sign_and_verify() {
        let id = Identity::from_passphrase("alice");
        let sig = id.sign(b"hello");
        id.public().verify(b"hello", &sig, "test").unwrap();
        assert!(id.public().verify(b"hellO", &sig, "test").is_err());
        let back = PeerKey::from_hex(&id.public().to_hex()).unwrap();
        assert_eq!(back, id.public());
        assert!(PeerKey::from_hex("zz").is_err());
    }

    #[test]
    fn client_ids_differ_per_session_and_key() {
        let a = Identity::from_passphrase("a").public();
        let b = Identity::from_passphrase("b").public();
        assert_ne!(a.client_id(0), a.client_id(1));
        assert_ne!(a.client_id(0), b.client_id(0));
        assert!(a.client_id(7) <= u64::from(u32::MAX));
    }
}

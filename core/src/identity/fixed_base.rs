//! Ed25519 for the WASM module without curve25519-dalek's static tables.
//!
//! curve25519-dalek's `precomputed-tables` are 38 KB of curve points that do not compress:
//! 30 KB of multiples of the base point B (`EdwardsPoint::mul_base`, what ed25519-dalek signs
//! with) and 7.5 KB of odd multiples (`vartime_double_scalar_mul_basepoint`, what it verifies
//! with). LTO keeps a table only while something calls its function, so here:
//! - signing builds the same radix-16 table at runtime, once, on the first key derivation
//!   (`EdwardsBasepointTable::create`, 30 KB of heap): as fast as the static table, and
//!   byte-identical to ed25519-dalek's RFC 8032 signatures (the tests compare the two);
//! - verifying (`zip215.rs`, the room's one signature rule) does its double multiplication
//!   with `vartime_multiscalar_mul` (runtime NAF tables for both points, as curve25519-dalek
//!   does without `precomputed-tables`), about 10% slower than with the static table; its
//!   batch check reads no static table either.

use std::sync::LazyLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::traits::BasepointTable as _;
use ed25519_dalek::Signature;
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// `s·B`, constant time in `s`, with the table built on first use.
fn mul_base(s: &Scalar) -> EdwardsPoint {
    static TABLE: LazyLock<Box<EdwardsBasepointTable>> =
        LazyLock::new(|| Box::new(EdwardsBasepointTable::create(&ED25519_BASEPOINT_POINT)));
    &**TABLE * s
}

fn scalar_from_hash(h: Sha512) -> Scalar {
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    let s = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    s
}

/// An Ed25519 secret key expanded as RFC 8032 section 5.1.5 does, with its public key: the
/// part of ed25519-dalek's `SigningKey` API that `Identity` uses.
#[derive(Clone)]
pub(crate) struct SecretKey {
    seed: [u8; 32],
    scalar: Scalar,
    prefix: [u8; 32],
    public: CompressedEdwardsY,
}

impl SecretKey {
    pub(crate) fn from_bytes(seed: &[u8; 32]) -> Self {
        let mut h = Sha512::digest(seed);
        let mut low = [0u8; 32];
        let mut prefix = [0u8; 32];
        low.copy_from_slice(&h[..32]);
        prefix.copy_from_slice(&h[32..]);
        h.zeroize();
        let scalar = Scalar::from_bytes_mod_order(clamp_integer(low));
        low.zeroize();
        let public = mul_base(&scalar).compress();
        SecretKey { seed: *seed, scalar, prefix, public }
    }

    pub(crate) fn to_bytes(&self) -> [u8; 32] {
        self.seed
    }

    pub(crate) fn verifying_key(&self) -> CompressedEdwardsY {
        self.public
    }

    /// RFC 8032 section 5.1.6: `r = H(prefix ‖ msg)`, `R = r·B`, `k = H(R ‖ A ‖ msg)`,
    /// `s = r + k·a`; the signature is `R ‖ s`.
    pub(crate) fn sign(&self, msg: &[u8]) -> Signature {
        let mut r = scalar_from_hash(Sha512::new().chain_update(self.prefix).chain_update(msg));
        let big_r = mul_base(&r).compress();
        let k = scalar_from_hash(
            Sha512::new().chain_update(big_r.as_bytes()).chain_update(self.public.as_bytes()).chain_update(msg),
        );
        let s = k * self.scalar + r;
        r.zeroize();
        Signature::from_components(big_r.to_bytes(), s.to_bytes())
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.seed.zeroize();
        self.scalar.zeroize();
        self.prefix.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};

    use super::*;
    use crate::identity::{sha256, unhex};

    #[test]
    fn mul_base_matches_dalek() {
        let l_minus_1 = Scalar::ZERO - Scalar::ONE;
        let mut scalars = vec![Scalar::ZERO, Scalar::ONE, l_minus_1, Scalar::from(8u8), Scalar::from(u64::MAX)];
        for i in 0u32..100 {
            scalars.push(Scalar::from_bytes_mod_order(sha256(&[b"mul_base", &i.to_le_bytes()])));
        }
        for s in &scalars {
            assert_eq!(mul_base(s).compress(), EdwardsPoint::mul_base(s).compress(), "{:?}", s.as_bytes());
        }
    }

    /// Keys and signatures byte-identical to ed25519-dalek's for many keys and messages,
    /// and ed25519-dalek verifies them.
    #[test]
    fn signatures_match_ed25519_dalek() {
        for i in 0u32..300 {
            let seed = sha256(&[b"seed", &i.to_le_bytes()]);
            let ours = SecretKey::from_bytes(&seed);
            let theirs = SigningKey::from_bytes(&seed);
            assert_eq!(ours.verifying_key().to_bytes(), theirs.verifying_key().to_bytes(), "key {i}");
            assert_eq!(ours.to_bytes(), seed);
            let long = vec![i as u8; (i as usize * 37) % 3000];
            for msg in [&b""[..], &b"a"[..], &seed[..], &long[..]] {
                let sig = ours.sign(msg);
                assert_eq!(sig.to_bytes(), theirs.sign(msg).to_bytes(), "key {i}, message of {} bytes", msg.len());
                theirs.verifying_key().verify(msg, &sig).unwrap();
            }
        }
    }

    /// RFC 8032 section 7.1, test 1.
    #[test]
    fn rfc8032_test_1() {
        let hex32 = |s: &str| -> [u8; 32] { unhex(s).unwrap().try_into().unwrap() };
        let key = SecretKey::from_bytes(&hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
        assert_eq!(
            key.verifying_key().to_bytes(),
            hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = unhex(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        )
        .unwrap();
        assert_eq!(key.sign(b"").to_vec(), sig);
    }
}

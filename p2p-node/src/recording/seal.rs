//! The recorder's seals: what each one says the recording holds, and what it signs.

use std::collections::BTreeMap;

use arena_core::{Envelope, Hash, PeerKey, RoomId};

const SEAL_DOMAIN: &[u8] = b"arena/recording-seal/v2";
/// Bytes of one author's line in a seal.
const AUTHOR_LEN: usize = 32 + 8 + 8 + 32;
/// Bytes of a seal's payload before its author lines (after the timestamp).
const FIXED_LEN: usize = 4 + 1 + 8 + 4;

/// One author's envelopes in the recording up to a seal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthorCount {
    /// The author.
    pub author: PeerKey,
    /// Envelopes of this author in the recording.
    pub envelopes: u64,
    /// The author's chain head: the next sequence number expected ...
    pub next_seq: u64,
    /// ... and the hash of its last envelope in the recording.
    #[serde(serialize_with = "hex32")]
    pub last_hash: Hash,
}

fn hex32<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&PeerKey(*h).to_hex())
}

/// A seal record: the recorder's signed statement about everything before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seal {
    /// When it was written (the recorder's latest receive time), unix milliseconds.
    pub at_ms: u64,
    /// Its number among the file's seals, from 1.
    pub number: u32,
    /// Whether the recorder closed the recording with it (a clean stop).
    pub closing: bool,
    /// Records before it in the file (its own index).
    pub records: u64,
    /// Every author's envelopes up to it, by key.
    pub authors: Vec<AuthorCount>,
    /// The recorder's signature over [`Seal::signed_bytes`].
    pub signature: [u8; 64],
}

impl Seal {
    /// What the recorder signs: the room, its own key, the record chain before the seal
    /// (which covers the header and every earlier record) and the seal's own statement.
    pub(crate) fn signed_bytes(&self, room: &RoomId, recorder: &PeerKey, chain: &[u8; 32]) -> Vec<u8> {
        let mut v = Vec::with_capacity(SEAL_DOMAIN.len() + 96 + 8 + FIXED_LEN + AUTHOR_LEN * self.authors.len());
        v.extend_from_slice(SEAL_DOMAIN);
        v.extend_from_slice(&room.0);
        v.extend_from_slice(&recorder.0);
        v.extend_from_slice(chain);
        v.extend_from_slice(&self.at_ms.to_be_bytes());
        self.write_statement(&mut v);
        v
    }

    fn write_statement(&self, v: &mut Vec<u8>) {
        v.extend_from_slice(&self.number.to_be_bytes());
        v.push(u8::from(self.closing));
        v.extend_from_slice(&self.records.to_be_bytes());
        v.extend_from_slice(&(self.authors.len() as u32).to_be_bytes());
        for a in &self.authors {
            v.extend_from_slice(&a.author.0);
            v.extend_from_slice(&a.envelopes.to_be_bytes());
            v.extend_from_slice(&a.next_seq.to_be_bytes());
            v.extend_from_slice(&a.last_hash);
        }
    }

    /// The record's body after its timestamp.
    pub(crate) fn encode_body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FIXED_LEN + AUTHOR_LEN * self.authors.len() + 64);
        self.write_statement(&mut v);
        v.extend_from_slice(&self.signature);
        v
    }

    /// Parses a seal's body (after its timestamp).
    pub(crate) fn decode_body(at_ms: u64, b: &[u8]) -> Result<Seal, String> {
        let short = || format!("seal of {} bytes is too short", b.len() + 8);
        let (fixed, rest) = b.split_at_checked(FIXED_LEN).ok_or_else(short)?;
        let number = u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
        let closing = match fixed[4] {
            0 => false,
            1 => true,
            x => return Err(format!("seal's closing flag is {x}")),
        };
        let records = u64_at(fixed, 5);
        let n = u32::from_be_bytes([fixed[13], fixed[14], fixed[15], fixed[16]]) as usize;
        if rest.len() != n.saturating_mul(AUTHOR_LEN).saturating_add(64) {
            return Err(format!("seal names {n} authors in {} bytes", rest.len()));
        }
        let (lines, sig) = rest.split_at(n * AUTHOR_LEN);
        let authors = lines
            .chunks_exact(AUTHOR_LEN)
            .map(|l| AuthorCount {
                author: PeerKey(fixed32(&l[..32])),
                envelopes: u64_at(l, 32),
                next_seq: u64_at(l, 40),
                last_hash: fixed32(&l[48..80]),
            })
            .collect();
        let mut signature = [0; 64];
        signature.copy_from_slice(sig);
        Ok(Seal { at_ms, number, closing, records, authors, signature })
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

fn fixed32(b: &[u8]) -> [u8; 32] {
    let mut x = [0; 32];
    x.copy_from_slice(b);
    x
}

/// What a recording holds so far: records, and per author its envelopes and chain head.
/// The recorder keeps one to write its seals; `verify` keeps one to check them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) records: u64,
    authors: BTreeMap<PeerKey, AuthorCount>,
}

impl Tally {
    /// Counts one record (any kind).
    pub(crate) fn record(&mut self) {
        self.records += 1;
    }

    /// Counts an envelope whose hash is `hash` (call [`Tally::record`] too).
    pub(crate) fn envelope(&mut self, env: &Envelope, hash: Hash) {
        let a = self.authors.entry(env.author).or_insert(AuthorCount {
            author: env.author,
            envelopes: 0,
            next_seq: 0,
            last_hash: [0; 32],
        });
        a.envelopes += 1;
        a.next_seq = env.seq + 1;
        a.last_hash = hash;
    }

    /// The per-author lines, by key.
    pub(crate) fn authors(&self) -> Vec<AuthorCount> {
        self.authors.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(authors: usize) -> Seal {
        Seal {
            at_ms: 7,
            number: 3,
            closing: true,
            records: 41,
            authors: (0..authors)
                .map(|i| AuthorCount {
                    author: PeerKey([i as u8; 32]),
                    envelopes: 10 + i as u64,
                    next_seq: 10 + i as u64,
                    last_hash: [0xa0 + i as u8; 32],
                })
                .collect(),
            signature: [9; 64],
        }
    }

    #[test]
    fn round_trips_and_refuses_every_truncation() {
        for n in [0, 1, 3] {
            let s = seal(n);
            let body = s.encode_body();
            assert_eq!(Seal::decode_body(7, &body), Ok(s.clone()));
            for cut in 0..body.len() {
                assert!(Seal::decode_body(7, &body[..cut]).is_err(), "{n} authors, cut at {cut}");
            }
            let mut longer = body.clone();
            longer.push(0);
            assert!(Seal::decode_body(7, &longer).is_err());
            let mut flag = body;
            flag[4] = 2;
            assert!(Seal::decode_body(7, &flag).is_err());
        }
        // An author count that would overflow is refused, not allocated.
        let mut huge = seal(0).encode_body();
        huge[13..17].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Seal::decode_body(7, &huge).is_err());
    }

    #[test]
    fn the_signature_covers_every_field() {
        let (room, rec, chain) = (PeerKey([1; 32]), PeerKey([2; 32]), [3; 32]);
        let base = seal(2).signed_bytes(&room, &rec, &chain);
        let mut variants = vec![
            Seal { at_ms: 8, ..seal(2) },
            Seal { number: 4, ..seal(2) },
            Seal { closing: false, ..seal(2) },
            Seal { records: 40, ..seal(2) },
            seal(1),
        ];
        let mut s = seal(2);
        s.authors[1].envelopes -= 1;
        variants.push(s);
        let mut s = seal(2);
        s.authors[0].last_hash[5] ^= 1;
        variants.push(s);
        for v in &variants {
            assert_ne!(v.signed_bytes(&room, &rec, &chain), base, "{v:?}");
        }
        assert_ne!(seal(2).signed_bytes(&rec, &rec, &chain), base);
        assert_ne!(seal(2).signed_bytes(&room, &room, &chain), base);
        assert_ne!(seal(2).signed_bytes(&room, &rec, &[4; 32]), base);
    }
}

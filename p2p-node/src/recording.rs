//! The recording file: an append-only, tamper-evident log of one room as a recorder saw it.
//!
//! ```text
//! header:  "ARENAREC" | version u8 = 2 | room id (32) | recorder key (32) | started_ms u64
//! record:  kind u8 | len u32 | payload (len bytes) | chain (32)
//!          chain_i = SHA-256(chain_{i-1} | kind | len | payload), chain_0 = SHA-256(header)
//! ```
//! Integers are big-endian. Every payload starts with a time, unix milliseconds (`u64`).
//! Kinds:
//! - 1 envelope: `received_ms | envelope` (arena-core's encoding; signed by its author,
//!   chained per author by `seq` and `prev`);
//! - 2 admission: `at_ms | admission` (a member's signed statement that it joined with a
//!   grant of the room key: public, see below);
//! - 3 awareness: `at_ms | JSON text` (cursors and presence, unsigned as in y-protocols);
//! - 5 seal: `at_ms | number u32 | closing u8 | records u64 | n u32 | n × (author (32) |
//!   envelopes u64 | next_seq u64 | last hash (32)) | signature (64)`.
//! - 6 revocation: `at_ms | revocation` (arena-core's encoding, without the room: a host's
//!   or the node's signed removal of a member or an invite; the member's envelopes from the
//!   seq it names on are refused by every replica, so a recording that holds one after it
//!   is broken there);
//! - 7 delegation: `at_ms | delegation` (a stock client's grant countersigned by its invite
//!   key, named by the `via` of the node's envelopes for that client: public);
//! - 8 media: `at_ms | JSON {"file", "bytes", "sha256"}` (a closed media file of the call
//!   in the directory's `media/`, see [`crate::media`]: the next seal covers its size and
//!   hash, and `verify` hashes the file again; a later record for the same file replaces
//!   an earlier one);
//!
//! A seal is the recorder's signed statement about everything before it: the recorder's
//! Ed25519 signature over `"arena/recording-seal/v2" | room | recorder key | chain before
//! the seal | at_ms | the seal's fields before the signature`. The chain covers the header
//! and every earlier record byte for byte; the fields say the same in terms a person can
//! check against other evidence: the seal's number (from 1), how many records come before
//! it, and per author (by key) how many envelopes the recording holds and where that
//! author's hash chain stands (next `seq`, hash of the last envelope). The recorder seals at
//! most once a second while it runs and writes a *closing* seal when it stops cleanly, so:
//! - a changed, dropped or inserted record, or a dropped author, breaks the next seal (the
//!   record chain itself is plain SHA-256: anyone can recompute it; only the recorder key
//!   can sign a seal over the new chain);
//! - a cut at any record boundary leaves a file that does not end with a closing seal, which
//!   [`crate::replay::verify`] reports as incomplete ("ends after seal N at <time>"), the
//!   same as a recorder that was killed;
//! - whoever holds the recorder key can rewrite and reseal anything, and anyone can write a
//!   whole file under a key of their own: that is why a reader pins the room and the
//!   recorder key it expects (`arena-node verify --room --recorder-key`).
//!
//! The file is meant to hold no secret. The recorder's own key stays in `identity.key`
//! beside the file in the recording directory (share `session.arena`, not the directory);
//! its invite token is never written, only the admission it signed with it. Admissions
//! are public statements once invites are key-bound (arena-core); until then an
//! admission carries its grant whole, which is an invite until it expires.
//!
//! Version 1 files (seals over the chain alone, no counts, no closing seal) are refused
//! with a message saying so.

mod seal;
mod store;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arena_core::{Admission, Envelope, PeerKey, Revocation, RoomId};
use sha2::{Digest, Sha256};

use crate::error::{NodeError, Result};

pub(crate) use seal::Tally;
pub use seal::{AuthorCount, Seal};
pub use store::RecordingStore;

const MAGIC: &[u8; 8] = b"ARENAREC";
/// The format written and read: 2 since seals commit to per-author counts and a recording
/// is closed by a closing seal.
pub const VERSION: u8 = 2;
const HEADER_LEN: usize = 8 + 1 + 32 + 32 + 8;
/// Largest record accepted (an envelope carries at most 4 MiB of update).
const MAX_RECORD: usize = (4 << 20) + 4096;

/// The file name of a recording inside a recorder's directory.
pub const RECORDING_FILE: &str = "session.arena";

/// Record kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An envelope and its receive time.
    Envelope = 1,
    /// A member's admission.
    Admission = 2,
    /// An awareness change (cursors, presence), as JSON.
    Awareness = 3,
    /// The recorder's signed statement about everything before it.
    Seal = 5,
    /// A signed revocation of a member or an invite.
    Revocation = 6,
    /// A stock client's delegation.
    Delegation = 7,
    /// A closed media file's size and hash.
    Media = 8,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Envelope,
            2 => Kind::Admission,
            3 => Kind::Awareness,
            5 => Kind::Seal,
            6 => Kind::Revocation,
            7 => Kind::Delegation,
            8 => Kind::Media,
            _ => return None,
        })
    }
}

/// The recording's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The room.
    pub room: RoomId,
    /// The recorder's key (signs the seals).
    pub recorder: PeerKey,
    /// When the recording started, unix milliseconds.
    pub started_ms: u64,
}

impl Header {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN);
        v.extend_from_slice(MAGIC);
        v.push(VERSION);
        v.extend_from_slice(&self.room.0);
        v.extend_from_slice(&self.recorder.0);
        v.extend_from_slice(&self.started_ms.to_be_bytes());
        v
    }

    fn decode(b: &[u8]) -> std::result::Result<Header, String> {
        let h = b.get(..HEADER_LEN).filter(|h| &h[..8] == MAGIC).ok_or("not an arena recording (bad header)")?;
        match h[8] {
            VERSION => {}
            1 => {
                return Err("recording format 1, written by an older arena-node: its seals do not say what \
                            the recording holds and it has no closing seal, so this arena-node cannot \
                            tell a cut or a dropped author; verify it with the arena-node that wrote it"
                    .into())
            }
            v => return Err(format!("recording format {v}: this arena-node reads format {VERSION} only")),
        }
        let key = |at: usize| {
            let mut k = [0; 32];
            k.copy_from_slice(&h[at..at + 32]);
            PeerKey(k)
        };
        let mut ms = [0; 8];
        ms.copy_from_slice(&h[73..81]);
        Ok(Header { room: key(9), recorder: key(41), started_ms: u64::from_be_bytes(ms) })
    }

    /// The chain before the first record.
    pub(crate) fn chain0(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }
}

pub(crate) fn chain_next(prev: &[u8; 32], kind: u8, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update([kind]);
    h.update((payload.len() as u32).to_be_bytes());
    h.update(payload);
    h.finalize().into()
}

/// One raw record as read from the file.
#[derive(Clone, Debug)]
pub struct RawRecord {
    /// Position among the records, from 0.
    pub index: usize,
    /// Byte offset of the record in the file.
    pub offset: usize,
    /// Its kind byte.
    pub kind: u8,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether the stored chain hash matches the recomputed one.
    pub chain_ok: bool,
    /// The recomputed chain hash after this record.
    pub chain: [u8; 32],
}

/// A decoded record.
#[derive(Clone, Debug)]
pub enum Record {
    /// An envelope received at `received_ms`.
    Envelope {
        /// Receive time, unix milliseconds.
        received_ms: u64,
        /// The envelope.
        envelope: Envelope,
    },
    /// An admission stored at `at_ms`.
    Admission {
        /// When the recorder stored it.
        at_ms: u64,
        /// The admission.
        admission: Admission,
    },
    /// An awareness change.
    Awareness {
        /// When it was seen.
        at_ms: u64,
        /// Client id → state (JSON), `null` when the client left.
        json: String,
    },
    /// A revocation stored at `at_ms`.
    Revocation {
        /// When the recorder stored it.
        at_ms: u64,
        /// The revocation.
        revocation: Revocation,
    },
    /// A seal.
    Seal(Seal),
    /// A media file of the call, closed at `at_ms`.
    Media {
        /// When the recorder hashed it.
        at_ms: u64,
        /// Its name, size and hash.
        file: crate::media::MediaFile,
    },
    /// A stock client's delegation stored at `at_ms`.
    Delegation {
        /// When the recorder stored it.
        at_ms: u64,
        /// The delegation.
        delegation: arena_core::Delegation,
    },
}

fn split_ms(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (ms, rest) = payload.split_at_checked(8)?;
    Some((u64::from_be_bytes(ms.try_into().ok()?), rest))
}

impl RawRecord {
    /// Decodes the payload.
    pub fn decode(&self, room: RoomId) -> std::result::Result<Record, String> {
        let (at_ms, rest) = split_ms(&self.payload).ok_or("payload shorter than its timestamp")?;
        match Kind::from_byte(self.kind) {
            Some(Kind::Envelope) => Envelope::decode(rest, room)
                .map(|envelope| Record::Envelope { received_ms: at_ms, envelope })
                .map_err(|e| e.to_string()),
            Some(Kind::Admission) => Admission::decode(rest)
                .map(|admission| Record::Admission { at_ms, admission })
                .map_err(|e| e.to_string()),
            Some(Kind::Awareness) => std::str::from_utf8(rest)
                .map(|s| Record::Awareness { at_ms, json: s.to_owned() })
                .map_err(|e| format!("awareness is not UTF-8: {e}")),
            Some(Kind::Revocation) => Revocation::decode(rest, room)
                .map(|revocation| Record::Revocation { at_ms, revocation })
                .map_err(|e| e.to_string()),
            Some(Kind::Seal) => Seal::decode_body(at_ms, rest).map(Record::Seal),
            Some(Kind::Delegation) => arena_core::Delegation::decode(rest)
                .map(|delegation| Record::Delegation { at_ms, delegation })
                .map_err(|e| e.to_string()),
            Some(Kind::Media) => crate::media::MediaFile::decode(rest).map(|file| Record::Media { at_ms, file }),
            None => Err(format!("unknown record kind {}", self.kind)),
        }
    }
}

/// A whole recording file, read but not yet verified.
#[derive(Clone, Debug)]
pub struct RecordingFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its header.
    pub header: Header,
    /// Every complete record.
    pub records: Vec<RawRecord>,
    /// Bytes after the last complete record (a write cut short by a crash), with its offset.
    pub torn_tail: Option<(usize, usize)>,
}

impl RecordingFile {
    /// Reads `path` (a recording file, or a recorder's directory holding one).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join(RECORDING_FILE);
        }
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| NodeError::io(&path, e))?;
        Self::parse(path, &bytes)
    }

    /// Parses the bytes of a recording file read from `path` (named in errors).
    pub fn parse(path: PathBuf, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| NodeError::Recording { path: path.display().to_string(), reason };
        let header = Header::decode(bytes).map_err(bad)?;
        let mut chain = header.chain0();
        let mut records = Vec::new();
        let mut pos = HEADER_LEN;
        let mut torn_tail = None;
        while pos < bytes.len() {
            let offset = pos;
            let Some(head) = bytes.get(pos..pos + 5) else {
                torn_tail = Some((offset, bytes.len() - offset));
                break;
            };
            let kind = head[0];
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > MAX_RECORD {
                return Err(bad(format!("record {} at byte {offset}: length {len} over the limit", records.len())));
            }
            let Some(payload) = bytes.get(pos + 5..pos + 5 + len) else {
                torn_tail = Some((offset, bytes.len() - offset));
                break;
            };
            let Some(stored) = bytes.get(pos + 5 + len..pos + 5 + len + 32) else {
                torn_tail = Some((offset, bytes.len() - offset));
                break;
            };
            let next = chain_next(&chain, kind, payload);
            records.push(RawRecord {
                index: records.len(),
                offset,
                kind,
                payload: payload.to_vec(),
                chain_ok: stored == next,
                chain: next,
            });
            chain = next;
            pos += 5 + len + 32;
        }
        Ok(RecordingFile { path, header, records, torn_tail })
    }

    /// Checks the signature of the seal at record `index` against the chain before it.
    pub fn seal_ok(&self, index: usize, seal: &Seal) -> bool {
        let before = match index.checked_sub(1).and_then(|i| self.records.get(i)) {
            Some(r) => r.chain,
            None => self.header.chain0(),
        };
        let signed = seal.signed_bytes(&self.header.room, &self.header.recorder, &before);
        self.header.recorder.verify(&signed, &seal.signature, "seal").is_ok()
    }
}

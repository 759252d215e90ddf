//! The recording file: an append-only, tamper-evident log of one room as a recorder saw it.
//!
//! ```text
//! header:  "ARENAREC" | version u8 | room id (32) | recorder key (32) | started_ms u64
//! record:  kind u8 | len u32 | payload (len bytes) | chain (32)
//!          chain_i = SHA-256(chain_{i-1} | kind | len | payload), chain_0 = SHA-256(header)
//! ```
//! Integers are big-endian. Kinds: 1 envelope (`received_ms u64 | envelope`), 2 admission
//! (`at_ms u64 | admission`), 3 awareness (`at_ms u64 | JSON text`), 5 seal (`at_ms u64 |
//! recorder's Ed25519 signature over the chain so far`), written at most once a second
//! and when the recording is closed.
//!
//! Envelopes and admissions carry their authors' signatures and hash chains; the record
//! chain and the seals cover everything else (receive times, awareness), so a flipped
//! byte anywhere in the file is found by [`crate::replay::verify`].

mod store;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use arena_core::{Admission, Envelope, PeerKey, RoomId};
use sha2::{Digest, Sha256};

use crate::error::{NodeError, Result};

pub use store::RecordingStore;

const MAGIC: &[u8; 8] = b"ARENAREC";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 32 + 32 + 8;
const SEAL_DOMAIN: &[u8] = b"arena/recording-seal/v1";
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
    /// The recorder's signature over everything before it.
    Seal = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Envelope,
            2 => Kind::Admission,
            3 => Kind::Awareness,
            5 => Kind::Seal,
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

    fn decode(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN || &b[..8] != MAGIC || b[8] != VERSION {
            return None;
        }
        Some(Header {
            room: PeerKey(b[9..41].try_into().ok()?),
            recorder: PeerKey(b[41..73].try_into().ok()?),
            started_ms: u64::from_be_bytes(b[73..81].try_into().ok()?),
        })
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

pub(crate) fn seal_bytes(room: &RoomId, chain: &[u8; 32], at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(SEAL_DOMAIN.len() + 72);
    v.extend_from_slice(SEAL_DOMAIN);
    v.extend_from_slice(&room.0);
    v.extend_from_slice(chain);
    v.extend_from_slice(&at_ms.to_be_bytes());
    v
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
    /// A seal.
    Seal {
        /// When it was written.
        at_ms: u64,
        /// The recorder's signature over the chain before it.
        signature: [u8; 64],
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
            Some(Kind::Seal) => {
                let signature: [u8; 64] = rest.try_into().map_err(|_| "seal is not 64 bytes".to_owned())?;
                Ok(Record::Seal { at_ms, signature })
            }
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
        let bad = |reason: String| NodeError::Recording { path: path.display().to_string(), reason };
        let header = Header::decode(&bytes).ok_or_else(|| bad("not an arena recording (bad header)".into()))?;
        let mut chain: [u8; 32] = Sha256::digest(&bytes[..HEADER_LEN]).into();
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

    /// Checks a seal record's signature against the chain before it.
    pub fn seal_ok(&self, index: usize, at_ms: u64, signature: &[u8; 64]) -> bool {
        let before = match index {
            0 => {
                let h: [u8; 32] = Sha256::digest(self.header.encode()).into();
                h
            }
            i => self.records[i - 1].chain,
        };
        self.header.recorder.verify(&seal_bytes(&self.header.room, &before, at_ms), signature, "seal").is_ok()
    }
}

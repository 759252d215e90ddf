//! The envelope protocol: live envelopes, admissions, catch-up and checkpoints, chunked to
//! fit a transport's message size (16 KiB for WebRTC data channels, 64 KiB for gossipsub).
//!
//! Catch-up: a peer sends [`Wire::Want`] with its envelope vector (per author, how many
//! envelopes it has: the envelope log's state vector); the other side answers with the
//! admissions and every envelope the first one lacks, never with an unsigned diff.

use std::collections::BTreeMap;

use crate::checkpoint::Checkpoint;
use crate::codec::{Reader, Writer};
use crate::delegation::Delegation;
use crate::envelope::{Envelope, MAX_UPDATE};
use crate::error::{CoreError, Result};
use crate::grant::{Admission, Grant, RoomId};
use crate::identity::PeerKey;
use crate::revocation::Revocation;

/// Chunk size for WebRTC data channels.
pub const DATA_CHANNEL_CHUNK: usize = 16 * 1024;
/// Chunk size for gossipsub and request-response.
pub const GOSSIP_CHUNK: usize = 64 * 1024;
/// Most authors a `Want` may list.
pub const MAX_AUTHORS: usize = 4096;
/// Largest message a reassembler accepts.
pub const MAX_MESSAGE: usize = crate::checkpoint::MAX_STATE + 4096;

const T_ENVELOPES: u8 = 0;
const T_ADMISSIONS: u8 = 1;
const T_WANT: u8 = 2;
const T_CHECKPOINT: u8 = 3;
const T_FRAGMENT: u8 = 4;
const T_PROXIED: u8 = 5;
const T_WANT_HISTORY: u8 = 6;
const T_HISTORY: u8 = 7;
const T_REVOCATIONS: u8 = 8;
const T_DELEGATIONS: u8 = 9;
/// Longest grant a [`Wire::Proxied`] may carry.
const MAX_GRANT: usize = 256;

/// A message of the envelope protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Envelopes, live or answering a `Want`, in an order the receiver can apply.
    Envelopes(Vec<Envelope>),
    /// Members' admissions (sent before their envelopes).
    Admissions(Vec<Admission>),
    /// "I have this many envelopes of each author; send me the rest." An empty vector asks
    /// for everything.
    Want(BTreeMap<PeerKey, u64>),
    /// A signed checkpoint for a late joiner.
    Checkpoint(Box<Checkpoint>),
    /// A stock Yjs client's update, relayed by a node that cannot sign for it (it holds no
    /// proxy grant for the room) to one that can, vouched for with the client's invite key
    /// ([`crate::Invite::vouch`]): the signer checks the voucher and holds the update to the
    /// grant's role. The client's token itself never leaves the node it connected to.
    Proxied {
        /// The client's grant (public).
        grant: Box<Grant>,
        /// Its y-protocols update (v1).
        update: Vec<u8>,
        /// The invite key's signature over the grant and the update.
        signature: [u8; 64],
        /// The invite key's delegation signature ([`Delegation`]), so that the signer's
        /// envelope names the client's grant (`via`).
        delegation: [u8; 64],
    },
    /// "Send me each listed author's envelopes just below this seq": a replica that started
    /// from a checkpoint fetching the history before it.
    WantHistory(BTreeMap<PeerKey, u64>),
    /// Old envelopes answering a `WantHistory` (sent in ascending seq; one message is
    /// checked as a whole, in any order). The receiver checks them against the hash chain
    /// it holds, down from the oldest envelope it has.
    History(Vec<Envelope>),
    /// Signed revocations of members or invites (sent with admissions on catch-up).
    Revocations(Vec<Revocation>),
    /// Stock clients' delegations (sent after admissions, before the envelopes that name
    /// them).
    Delegations(Vec<Delegation>),
}

impl Wire {
    /// Encodes one message (unchunked).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Wire::Envelopes(envs) => {
                w.u8(T_ENVELOPES).var(envs.len() as u64);
                for e in envs {
                    e.write(&mut w);
                }
            }
            Wire::Admissions(adms) => {
                w.u8(T_ADMISSIONS).var(adms.len() as u64);
                for a in adms {
                    a.write(&mut w);
                }
            }
            Wire::Revocations(revs) => {
                w.u8(T_REVOCATIONS).var(revs.len() as u64);
                for r in revs {
                    r.write(&mut w);
                }
            }
            Wire::Delegations(ds) => {
                w.u8(T_DELEGATIONS).var(ds.len() as u64);
                for d in ds {
                    d.write(&mut w);
                }
            }
            Wire::Want(heads) | Wire::WantHistory(heads) => {
                w.u8(if matches!(self, Wire::Want(_)) { T_WANT } else { T_WANT_HISTORY }).var(heads.len() as u64);
                for (k, n) in heads {
                    w.fixed(&k.0).var(*n);
                }
            }
            Wire::History(envs) => {
                w.u8(T_HISTORY).var(envs.len() as u64);
                for e in envs {
                    e.write(&mut w);
                }
            }
            Wire::Checkpoint(c) => {
                w.u8(T_CHECKPOINT).fixed(&c.encode());
            }
            Wire::Proxied { grant, update, signature, delegation } => {
                w.u8(T_PROXIED).bytes(&grant.encode()).bytes(update).fixed(signature).fixed(delegation);
            }
        }
        w.finish()
    }

    /// Decodes one message for `room`.
    pub fn decode(bytes: &[u8], room: RoomId) -> Result<Self> {
        let mut r = Reader::new(bytes, "envelope protocol message");
        let msg = match r.u8()? {
            t @ (T_ENVELOPES | T_HISTORY) => {
                let n = r.count(100)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(Envelope::read(&mut r, room)?);
                }
                if t == T_ENVELOPES {
                    Wire::Envelopes(v)
                } else {
                    Wire::History(v)
                }
            }
            T_ADMISSIONS => {
                let n = r.count(200)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(Admission::read(&mut r)?);
                }
                Wire::Admissions(v)
            }
            T_REVOCATIONS => {
                let n = r.count(130)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(Revocation::read(&mut r, room)?);
                }
                Wire::Revocations(v)
            }
            t @ (T_WANT | T_WANT_HISTORY) => {
                let n = r.count(33)?;
                if n > MAX_AUTHORS {
                    return Err(CoreError::TooLarge { what: "want", len: n, max: MAX_AUTHORS });
                }
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    m.insert(PeerKey(r.fixed()?), r.var()?);
                }
                if t == T_WANT {
                    Wire::Want(m)
                } else {
                    Wire::WantHistory(m)
                }
            }
            T_CHECKPOINT => {
                let rest = r.take(r.remaining())?;
                Wire::Checkpoint(Box::new(Checkpoint::decode(rest, room)?))
            }
            T_PROXIED => {
                let grant = Box::new(Grant::decode(r.bytes(MAX_GRANT)?)?);
                let update = r.bytes(MAX_UPDATE)?.to_vec();
                let signature = r.fixed()?;
                let delegation = r.fixed()?;
                Wire::Proxied { grant, update, signature, delegation }
            }
            T_DELEGATIONS => {
                let n = r.count(180)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(Delegation::read(&mut r)?);
                }
                Wire::Delegations(v)
            }
            t => return Err(r.err(&format!("unknown message type {t}"))),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Packs messages into chunks of at most `max` bytes: envelope and admission batches are
/// split between items; a single item too big for one chunk travels as fragments.
pub fn chunk(messages: &[Wire], max: usize) -> Vec<Vec<u8>> {
    let max = max.max(256);
    let mut out = Vec::new();
    let mut next_id: u32 = 0;
    let mut push = |bytes: Vec<u8>, out: &mut Vec<Vec<u8>>| {
        if bytes.len() <= max {
            out.push(bytes);
        } else {
            next_id = next_id.wrapping_add(1);
            out.extend(fragment(&bytes, max, next_id));
        }
    };
    for m in messages {
        match m {
            Wire::Envelopes(envs) => {
                let mut batch: Vec<Envelope> = Vec::new();
                let mut size = 8;
                for e in envs {
                    let len = e.update.len() + 150;
                    if !batch.is_empty() && size + len > max {
                        push(Wire::Envelopes(std::mem::take(&mut batch)).encode(), &mut out);
                        size = 8;
                    }
                    size += len;
                    batch.push(e.clone());
                }
                if !batch.is_empty() {
                    push(Wire::Envelopes(batch).encode(), &mut out);
                }
            }
            // A `History` is checked as one run, so it stays one message (fragmented when
            // big; its sender bounds it well below `MAX_MESSAGE`).
            other => push(other.encode(), &mut out),
        }
    }
    out
}

fn fragment(bytes: &[u8], max: usize, id: u32) -> Vec<Vec<u8>> {
    let body = max - 24;
    let count = bytes.len().div_ceil(body);
    bytes
        .chunks(body)
        .enumerate()
        .map(|(i, part)| {
            let mut w = Writer::with_capacity(part.len() + 24);
            w.u8(T_FRAGMENT).var(u64::from(id)).var(i as u64).var(count as u64).bytes(part);
            w.finish()
        })
        .collect()
}

/// Whether a chunk made by [`chunk`] is one fragment of a larger message (it cannot be
/// checked on its own; a relay that validates messages before forwarding them, like
/// gossipsub, has to treat it apart).
pub fn is_fragment(chunk: &[u8]) -> bool {
    chunk.first() == Some(&T_FRAGMENT)
}

/// Reassembles chunks from one link into messages. Holds at most one fragmented message at
/// a time and never more than [`MAX_MESSAGE`] bytes.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: Option<(u64, u64, Vec<u8>)>,
}

impl Reassembler {
    /// A fresh reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a fragmented message is in progress.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes of the message in progress held so far.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.2.len())
    }

    /// Feeds one chunk; returns a complete message when there is one.
    pub fn push(&mut self, chunk: &[u8], room: RoomId) -> Result<Option<Wire>> {
        if chunk.first() != Some(&T_FRAGMENT) {
            return Wire::decode(chunk, room).map(Some);
        }
        let mut r = Reader::new(chunk, "fragment");
        r.u8()?;
        let (id, index, count) = (r.var()?, r.var()?, r.var()?);
        let part = r.bytes(MAX_UPDATE)?;
        r.finish()?;
        if count == 0 || index >= count {
            return Err(CoreError::malformed("fragment", "index out of range"));
        }
        let mut buf = match self.partial.take() {
            Some((pid, next, buf)) if pid == id && next == index => buf,
            _ if index == 0 => Vec::new(),
            _ => return Err(CoreError::malformed("fragment", "out of order or missing its start")),
        };
        if buf.len() + part.len() > MAX_MESSAGE {
            return Err(CoreError::TooLarge {
                what: "reassembled message",
                len: buf.len() + part.len(),
                max: MAX_MESSAGE,
            });
        }
        buf.extend_from_slice(part);
        if index + 1 == count {
            Wire::decode(&buf, room).map(Some)
        } else {
            self.partial = Some((id, index + 1, buf));
            Ok(None)
        }
    }
}

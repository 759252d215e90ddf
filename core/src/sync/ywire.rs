//! y-protocols messages (y-websocket / y-webrtc), byte-compatible with the `y-protocols`
//! npm package, built on `yrs::sync`.
//!
//! A frame holds messages back to back. Unlike `yrs::sync::MessageReader`, [`decode_frame`]
//! treats a frame that ends in the middle of a message as an error, not as the end.
//!
//! Stock peers (y-websocket's client and server, y-webrtc) read only the FIRST message of a
//! frame and silently ignore the rest, so anything sent to them unprompted must be one
//! message per frame ([`YSession::start_frames`], [`update_frame`], [`awareness_frame`]).
//! A reply to a stock peer's frame holds one message, since their frames do.
//!
//! Client ids on the wire must be JavaScript-safe (below 2^53): lib0 refuses larger ones,
//! and `yrs::ClientID::new` debug-asserts on them, so [`decode_frame`] refuses them in
//! state vectors and awareness updates.

use std::collections::HashMap;

use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message, SyncMessage};
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{ClientID, ReadTxn, StateVector, Transact};

use crate::codec::Reader;
use crate::doc::RoomDoc;
use crate::error::{reasons, CoreError, Result};
use crate::sync::presence::{PresenceMap, MAX_PRESENCE_STATES};

pub use yrs::sync::{Message as YMessage, SyncMessage as YSyncMessage};

/// Our own message type inside a y-websocket frame: a chunk of the envelope protocol
/// ([`crate::sync::wire`]). Stock clients never receive it.
pub const MSG_ARENA: u8 = 100;
/// Largest frame accepted from a peer by default.
pub const MAX_FRAME: usize = 8 << 20;
/// Most messages accepted in one frame.
pub const MAX_MESSAGES: usize = 1024;

/// Decodes every message in a frame; any malformed or truncated message fails the frame.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Message>> {
    if frame.len() > MAX_FRAME {
        return Err(CoreError::TooLarge { what: "y-protocols frame", len: frame.len(), max: MAX_FRAME });
    }
    let mut r = Reader::new(frame, "y-protocols message");
    let mut out = Vec::new();
    while !r.is_empty() {
        if out.len() == MAX_MESSAGES {
            return Err(CoreError::TooLarge {
                what: "y-protocols messages in a frame",
                len: out.len() + 1,
                max: MAX_MESSAGES,
            });
        }
        out.push(read_message(&mut r)?);
    }
    Ok(out)
}

fn read_message(r: &mut Reader<'_>) -> Result<Message> {
    Ok(match r.var()? {
        0 => {
            let sub = r.var()?;
            let payload = r.bytes(MAX_FRAME)?;
            match sub {
                0 => Message::Sync(SyncMessage::SyncStep1(decode_state_vector(payload)?)),
                1 => Message::Sync(SyncMessage::SyncStep2(payload.to_vec())),
                2 => Message::Sync(SyncMessage::Update(payload.to_vec())),
                n => return Err(r.err(&format!("unknown sync message type {n}"))),
            }
        }
        1 => Message::Awareness(decode_awareness(r.bytes(MAX_FRAME)?)?),
        2 => match r.var()? {
            0 => Message::Auth(Some(r.str(MAX_FRAME)?.to_owned())),
            _ => Message::Auth(None),
        },
        3 => Message::AwarenessQuery,
        t if t == u64::from(MSG_ARENA) => Message::Custom(MSG_ARENA, r.bytes(MAX_FRAME)?.to_vec()),
        t => return Err(r.err(&format!("unknown message type {t}"))),
    })
}

/// Largest client id JavaScript (lib0) can carry: 2^53 - 1.
const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

fn read_client(r: &mut Reader<'_>) -> Result<ClientID> {
    let id = r.var()?;
    if id > MAX_CLIENT_ID {
        return Err(r.err(&format!("client id {id} is not below 2^53")));
    }
    Ok(ClientID::new(id))
}

/// A v1 state vector: varUint n, then n × (client, clock). Strict, unlike
/// `StateVector::decode_v1`: ids below 2^53, no trailing bytes.
fn decode_state_vector(payload: &[u8]) -> Result<StateVector> {
    let mut r = Reader::new(payload, "state vector");
    let n = r.count(2)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let client = read_client(&mut r)?;
        entries.push((client, r.var_u32()?));
    }
    r.finish()?;
    Ok(entries.into_iter().collect())
}

/// An awareness update: varUint n, then n × (client, clock, varString JSON). The JSON must
/// parse: stock peers `JSON.parse` every state and throw on garbage, so the room must not
/// accept (and forward) it.
fn decode_awareness(payload: &[u8]) -> Result<AwarenessUpdate> {
    let mut r = Reader::new(payload, "awareness update");
    let n = r.count(3)?;
    let mut clients = HashMap::with_capacity(n);
    for _ in 0..n {
        let client = read_client(&mut r)?;
        let clock = r.var_u32()?;
        let json = r.str(MAX_FRAME)?;
        serde_json::from_str::<serde::de::IgnoredAny>(json)
            .map_err(|e| CoreError::malformed("awareness state JSON", reasons::json(&e)))?;
        clients.insert(client, AwarenessUpdateEntry { clock, json: json.into() });
    }
    r.finish()?;
    Ok(AwarenessUpdate { clients })
}

/// Encodes messages back to back into one frame.
pub fn encode_frame(messages: &[Message]) -> Vec<u8> {
    let mut enc = EncoderV1::new();
    for m in messages {
        m.encode(&mut enc);
    }
    enc.to_vec()
}

/// What a received frame produced.
#[derive(Debug, Default)]
pub struct YOutcome {
    /// Frame to send back to the sender (empty: nothing). It holds one answer per message
    /// that needs one, so a stock peer's frame (always one message) gets a one-message reply.
    pub reply: Vec<u8>,
    /// Document updates (v1) the sender wants applied. The caller applies them through the
    /// room (which signs them when it acts as a proxy) and broadcasts them.
    pub updates: Vec<Vec<u8>>,
    /// Awareness update (v1) to forward to the room's other connections.
    pub awareness: Option<Vec<u8>>,
    /// Awareness client ids whose state the frame set (added or renewed): the ones the
    /// sender speaks for. An echo of another client's state (a stock client passes on what
    /// it heard, with the same clock) sets nothing and is not here; nor is a removal (a
    /// stock client passes on the ones its own timeout makes).
    pub presence_set: Vec<u64>,
    /// Chunks of our own envelope protocol ([`MSG_ARENA`]).
    pub arena: Vec<Vec<u8>>,
    /// Whether updates were refused because the connection is read-only.
    pub denied: bool,
}

/// One y-protocols connection to a room, sans-IO.
#[derive(Debug, Clone, Copy)]
pub struct YSession {
    read_only: bool,
}

impl YSession {
    /// A connection; `read_only` drops its updates and tells it so (observer tokens).
    pub fn new(read_only: bool) -> Self {
        YSession { read_only }
    }

    /// The frames to send first, in order, one message each: our sync step 1, then the
    /// room's awareness (when anyone is present). Use this for stock peers.
    pub fn start_frames(&self, doc: &RoomDoc, presence: &PresenceMap) -> Vec<Vec<u8>> {
        self.start_messages(doc, presence).iter().map(|m| encode_frame(std::slice::from_ref(m))).collect()
    }

    /// The same messages as [`YSession::start_frames`] back to back in ONE frame. Only for
    /// peers that read every message of a frame: a stock y-websocket / y-webrtc peer reads
    /// the sync step 1 and silently drops the awareness.
    pub fn start(&self, doc: &RoomDoc, presence: &PresenceMap) -> Vec<u8> {
        encode_frame(&self.start_messages(doc, presence))
    }

    fn start_messages(&self, doc: &RoomDoc, presence: &PresenceMap) -> Vec<Message> {
        let sv = doc.yrs().transact().state_vector();
        let mut msgs = vec![Message::Sync(SyncMessage::SyncStep1(sv))];
        let a = presence.full_update();
        if !a.clients.is_empty() {
            msgs.push(Message::Awareness(a));
        }
        msgs
    }

    /// Handles one frame from the peer at `now_ms`.
    pub fn receive(&self, doc: &RoomDoc, presence: &mut PresenceMap, frame: &[u8], now_ms: u64) -> Result<YOutcome> {
        self.handle(Some(doc), presence, decode_frame(frame)?, now_ms)
    }

    /// Handles a frame that needs no document (awareness only: what idle clients send to
    /// stay present); `None` when it does need one (then call [`YSession::receive`]). This
    /// lets a node keep serving presence while an idle room's document is not in memory.
    pub fn receive_presence(&self, presence: &mut PresenceMap, frame: &[u8], now_ms: u64) -> Result<Option<YOutcome>> {
        let msgs = decode_frame(frame)?;
        let doc_free =
            msgs.iter().all(|m| matches!(m, Message::Awareness(_) | Message::AwarenessQuery | Message::Auth(_)));
        if !doc_free {
            return Ok(None);
        }
        self.handle(None, presence, msgs, now_ms).map(Some)
    }

    fn handle(
        &self,
        doc: Option<&RoomDoc>,
        presence: &mut PresenceMap,
        msgs: Vec<Message>,
        now_ms: u64,
    ) -> Result<YOutcome> {
        let mut out = YOutcome::default();
        let mut replies = Vec::new();
        // A frame speaks for at most as many clients as a room holds (each message's entries
        // are one hash table already decoded; this bounds what applying them costs).
        let states: usize = msgs.iter().map(|m| if let Message::Awareness(u) = m { u.clients.len() } else { 0 }).sum();
        if states > MAX_PRESENCE_STATES {
            return Err(CoreError::malformed(
                "y-protocols message",
                format!("awareness for {states} clients in one frame (at most {MAX_PRESENCE_STATES})"),
            ));
        }
        // Every awareness entry of the frame, the last one per client winning.
        let mut forward = HashMap::new();
        let need_doc =
            || doc.ok_or_else(|| CoreError::malformed("y-protocols message", "sync message without a document"));
        for msg in msgs {
            match msg {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = need_doc()?.yrs().transact().encode_state_as_update_v1(&sv);
                    replies.push(Message::Sync(SyncMessage::SyncStep2(update)));
                }
                Message::Sync(SyncMessage::SyncStep2(u)) | Message::Sync(SyncMessage::Update(u)) => {
                    let doc = need_doc()?;
                    if self.read_only {
                        if !is_noop_update(doc, &u) && !out.denied {
                            out.denied = true;
                            replies.push(Message::Auth(Some("read-only: observers may not edit".into())));
                        }
                    } else {
                        crate::doc::decode_update(&u)?;
                        out.updates.push(u);
                    }
                }
                Message::Awareness(update) => {
                    let change = presence.apply(&update, now_ms);
                    out.presence_set.extend(change.added.iter().chain(&change.updated));
                    forward.extend(update.clients.into_iter().filter(|(k, _)| !change.refused.contains(&k.get())));
                }
                Message::AwarenessQuery => {
                    replies.push(Message::Awareness(presence.full_update()));
                }
                Message::Auth(_) => {}
                Message::Custom(MSG_ARENA, data) => out.arena.push(data),
                Message::Custom(tag, _) => {
                    return Err(CoreError::malformed("y-protocols message", format!("unknown type {tag}")))
                }
            }
        }
        if !forward.is_empty() {
            out.awareness = Some(AwarenessUpdate { clients: forward }.encode_v1());
        }
        out.reply = encode_frame(&replies);
        Ok(out)
    }
}

/// An update that would change nothing in `doc`: every struct it carries is already there
/// and every deletion already happened. A stock client's sync step 2 is one when it has no
/// local changes, even though it always carries the client's whole delete set.
/// (`Update::state_vector` is no test: it only counts clients whose structs start at clock
/// 0, so an edit by a client that wrote before would pass for "nothing".)
fn is_noop_update(doc: &RoomDoc, u: &[u8]) -> bool {
    let Ok(up) = crate::doc::decode_update(u) else { return false };
    let txn = doc.yrs().transact();
    let sv = txn.state_vector();
    let known = up.insertions(true).iter().all(|(client, ranges)| {
        let have = sv.get(client);
        ranges.iter().all(|r| r.end <= have)
    });
    known && (up.delete_set().is_empty() || up.delete_set().diff(&txn.snapshot().delete_set).is_empty())
}

/// A frame carrying one document update.
pub fn update_frame(update: &[u8]) -> Vec<u8> {
    encode_frame(&[Message::Sync(SyncMessage::Update(update.to_vec()))])
}

/// A frame carrying one awareness update (v1 bytes).
pub fn awareness_frame(update: &[u8]) -> Result<Vec<u8>> {
    Ok(encode_frame(&[Message::Awareness(decode_awareness(update)?)]))
}

/// A frame carrying one chunk of our envelope protocol.
pub fn arena_frame(chunk: &[u8]) -> Vec<u8> {
    encode_frame(&[Message::Custom(MSG_ARENA, chunk.to_vec())])
}

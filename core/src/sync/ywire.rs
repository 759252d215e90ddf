//! y-protocols messages (y-websocket / y-webrtc), byte-compatible with the `y-protocols`
//! npm package, built on `yrs::sync`.
//!
//! A frame holds messages back to back. Unlike `yrs::sync::MessageReader`, [`decode_frame`]
//! treats a frame that ends in the middle of a message as an error, not as the end.

use yrs::sync::{Awareness, AwarenessUpdate, Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::{Encode, Encoder, EncoderV1};
use yrs::{ReadTxn, StateVector, Transact};

use crate::codec::Reader;
use crate::doc::RoomDoc;
use crate::error::{CoreError, Result};

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
            return Err(CoreError::TooLarge { what: "y-protocols messages in a frame", len: out.len() + 1, max: MAX_MESSAGES });
        }
        out.push(read_message(&mut r)?);
    }
    Ok(out)
}

fn read_message(r: &mut Reader<'_>) -> Result<Message> {
    let bad = |what: &'static str, e: &dyn std::fmt::Display| CoreError::malformed(what, e);
    Ok(match r.var()? {
        0 => {
            let sub = r.var()?;
            let payload = r.bytes(MAX_FRAME)?;
            match sub {
                0 => Message::Sync(SyncMessage::SyncStep1(
                    StateVector::decode_v1(payload).map_err(|e| bad("state vector", &e))?,
                )),
                1 => Message::Sync(SyncMessage::SyncStep2(payload.to_vec())),
                2 => Message::Sync(SyncMessage::Update(payload.to_vec())),
                n => return Err(r.err(&format!("unknown sync message type {n}"))),
            }
        }
        1 => Message::Awareness(
            AwarenessUpdate::decode_v1(r.bytes(MAX_FRAME)?).map_err(|e| bad("awareness update", &e))?,
        ),
        2 => match r.var()? {
            0 => Message::Auth(Some(r.str(MAX_FRAME)?.to_owned())),
            _ => Message::Auth(None),
        },
        3 => Message::AwarenessQuery,
        t if t == u64::from(MSG_ARENA) => Message::Custom(MSG_ARENA, r.bytes(MAX_FRAME)?.to_vec()),
        t => return Err(r.err(&format!("unknown message type {t}"))),
    })
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
    /// Frame to send back to the sender (empty: nothing).
    pub reply: Vec<u8>,
    /// Document updates (v1) the sender wants applied. The caller applies them through the
    /// room (which signs them when it acts as a proxy) and broadcasts them.
    pub updates: Vec<Vec<u8>>,
    /// Awareness update (v1) to forward to the room's other connections.
    pub awareness: Option<Vec<u8>>,
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

    /// The first frame to send: our sync step 1 and the room's awareness.
    pub fn start(&self, doc: &RoomDoc, awareness: &Awareness) -> Vec<u8> {
        let sv = doc.yrs().transact().state_vector();
        let mut msgs = vec![Message::Sync(SyncMessage::SyncStep1(sv))];
        if let Ok(a) = awareness.update() {
            if !a.clients.is_empty() {
                msgs.push(Message::Awareness(a));
            }
        }
        encode_frame(&msgs)
    }

    /// Handles one frame from the peer.
    pub fn receive(&self, doc: &RoomDoc, awareness: &mut Awareness, frame: &[u8]) -> Result<YOutcome> {
        let mut out = YOutcome::default();
        let mut replies = Vec::new();
        for msg in decode_frame(frame)? {
            match msg {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let update = doc.yrs().transact().encode_state_as_update_v1(&sv);
                    replies.push(Message::Sync(SyncMessage::SyncStep2(update)));
                }
                Message::Sync(SyncMessage::SyncStep2(u)) | Message::Sync(SyncMessage::Update(u)) => {
                    if self.read_only {
                        if !is_noop_update(&u) && !out.denied {
                            out.denied = true;
                            replies.push(Message::Auth(Some("read-only: observers may not edit".into())));
                        }
                    } else {
                        yrs::Update::decode_v1(&u).map_err(|e| CoreError::malformed("update", e))?;
                        out.updates.push(u);
                    }
                }
                Message::Awareness(update) => {
                    let bytes = update.encode_v1();
                    awareness.apply_update(update).map_err(|e| CoreError::malformed("awareness", e))?;
                    out.awareness = Some(bytes);
                }
                Message::AwarenessQuery => {
                    if let Ok(a) = awareness.update() {
                        replies.push(Message::Awareness(a));
                    }
                }
                Message::Auth(_) => {}
                Message::Custom(MSG_ARENA, data) => out.arena.push(data),
                Message::Custom(tag, _) => {
                    return Err(CoreError::malformed("y-protocols message", format!("unknown type {tag}")))
                }
            }
        }
        out.reply = encode_frame(&replies);
        Ok(out)
    }
}

/// An update that carries nothing (stock clients send one in sync step 2 when they have no
/// local changes).
fn is_noop_update(u: &[u8]) -> bool {
    match yrs::Update::decode_v1(u) {
        Ok(up) => up.state_vector() == StateVector::default() && up.delete_set().is_empty(),
        Err(_) => false,
    }
}

/// A frame carrying one document update.
pub fn update_frame(update: &[u8]) -> Vec<u8> {
    encode_frame(&[Message::Sync(SyncMessage::Update(update.to_vec()))])
}

/// A frame carrying one awareness update (v1 bytes).
pub fn awareness_frame(update: &[u8]) -> Result<Vec<u8>> {
    let a = AwarenessUpdate::decode_v1(update).map_err(|e| CoreError::malformed("awareness", e))?;
    Ok(encode_frame(&[Message::Awareness(a)]))
}

/// A frame carrying one chunk of our envelope protocol.
pub fn arena_frame(chunk: &[u8]) -> Vec<u8> {
    encode_frame(&[Message::Custom(MSG_ARENA, chunk.to_vec())])
}

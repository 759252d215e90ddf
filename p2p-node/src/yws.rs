//! A peer attached to a bootstrap node's y-websocket endpoint (`/yws/{room}?token=T`),
//! speaking our envelope protocol inside y-protocols messages of type
//! [`arena_core::sync::ywire::MSG_ARENA`]: the node then sends it signed
//! envelopes, so authorship is checked end to end. Used when no libp2p peer is reachable.

use std::time::Duration;

use arena_core::sync::wire::{chunk, Reassembler, Wire, GOSSIP_CHUNK};
use arena_core::sync::ywire::{arena_frame, awareness_frame, decode_frame, MSG_ARENA};
use arena_core::{Envelope, RoomId};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::Message as YMessage;

use crate::error::{NodeError, Result};
use crate::node::{now_ms, NodeRoom};
use crate::store::NodeStore;

/// Own envelopes offered on connect.
const HELLO_ENVELOPES: u64 = 256;

/// What arrived on the socket, after the room handled it.
#[derive(Debug)]
pub enum YwsEvent {
    /// Envelopes applied (durable).
    Applied(Vec<Envelope>),
    /// An awareness change, as JSON `{client id: {clock, state}}`.
    Awareness(String),
    /// The node refused something of ours (e.g. an observer's edit).
    Denied(String),
}

/// One connection to `/yws/{room}`.
#[derive(Debug)]
pub struct YwsLink {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    link: Reassembler,
    room: RoomId,
    /// Flushes a sled-backed room (see [`YwsLink::with_group_commit`]).
    group: Option<crate::GroupCommit>,
}

fn remote(e: impl std::fmt::Display) -> NodeError {
    NodeError::Remote(format!("y-websocket: {e}"))
}

impl YwsLink {
    /// Connects to the bootstrap node at `base` (`http://host:port`).
    pub async fn connect(base: &str, room: RoomId, token: &str) -> Result<Self> {
        let (host, _) = crate::http::split_url(base)?;
        let url = format!("ws://{host}/yws/{}?token={token}", room.to_hex());
        let (ws, _) = tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| remote(format!("{url}: timed out")))?
            .map_err(|e| remote(format!("{url}: {e}")))?;
        Ok(YwsLink { ws, link: Reassembler::new(), room, group: None })
    }

    /// Flushes a room kept in sled through `group` (the database's group commit) instead of
    /// inline on the async worker.
    pub fn with_group_commit(mut self, group: Option<crate::GroupCommit>) -> Self {
        self.group = group;
        self
    }

    /// Sends envelope-protocol messages, chunked.
    pub async fn send(&mut self, msgs: &[Wire]) -> Result<()> {
        for c in chunk(msgs, GOSSIP_CHUNK) {
            self.ws.send(Message::Binary(arena_frame(&c).into())).await.map_err(remote)?;
        }
        Ok(())
    }

    /// Publishes this client's awareness state (presence, cursor) as y-protocols does:
    /// `clock` must grow with each change; `state` null says the client left.
    pub async fn send_awareness(&mut self, client: u64, clock: u32, state: &serde_json::Value) -> Result<()> {
        let frame = awareness_frame(&crate::presence::encode(client, clock, state))?;
        self.ws.send(Message::Binary(frame.into())).await.map_err(remote)
    }

    /// Announces `room`'s member (ours), offers our own latest envelopes (the node drops
    /// those it has; for older ones it sends a `Want`, answered by [`YwsLink::next`]) and
    /// asks for everything we lack.
    pub async fn hello(&mut self, room: &NodeRoom) -> Result<()> {
        let me = room.identity().public();
        let mut msgs = Vec::new();
        if let Some(m) = room.ledger().member(&me) {
            msgs.push(Wire::Admissions(vec![m.admission.clone()]));
        }
        let head = room.ledger().head(&me).next_seq;
        let ours = arena_core::Store::author_envelopes(
            room.store(),
            &me,
            head.saturating_sub(HELLO_ENVELOPES),
            HELLO_ENVELOPES as usize,
        )?;
        if !ours.is_empty() {
            msgs.push(Wire::Envelopes(ours));
        }
        msgs.push(room.want());
        self.send(&msgs).await
    }

    /// Waits for the next frame and hands it to `room`: envelopes are applied and flushed
    /// before they are reported, replies are sent, awareness goes to a recording. `None`
    /// when the socket closed.
    pub async fn next(&mut self, room: &mut NodeRoom) -> Result<Option<Vec<YwsEvent>>> {
        let msg = loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(remote(e)),
                Some(Ok(Message::Binary(b))) => break b,
                Some(Ok(Message::Close(c))) => {
                    return Err(remote(format!(
                        "closed by the node: {}",
                        c.map(|c| c.reason.to_string()).unwrap_or_default()
                    )))
                }
                Some(Ok(_)) => {}
            }
        };
        let now = now_ms();
        let mut events = Vec::new();
        let mut replies = Vec::new();
        for m in decode_frame(&msg)? {
            match m {
                YMessage::Custom(MSG_ARENA, data) => {
                    let Some(w) = self.link.push(&data, self.room)? else { continue };
                    let (r, receipt) = room.handle(w, now)?;
                    replies.extend(r);
                    let mut unknown = false;
                    for (author, e) in &receipt.rejected {
                        if room.ledger().member(author).is_none() {
                            // Its admission has not reached us: the answer to a `Want` has it.
                            unknown = true;
                        } else {
                            tracing::warn!(author = %author, error = %e, "refused an envelope from the node");
                        }
                    }
                    if unknown && !replies.iter().any(|w| matches!(w, Wire::Want(_))) {
                        replies.push(room.want());
                    }
                    if !receipt.applied.is_empty() {
                        events.push(YwsEvent::Applied(receipt.applied));
                    }
                }
                YMessage::Awareness(update) => {
                    let json = crate::presence::to_json(&update);
                    if let NodeStore::Recording(r) = room.store_mut() {
                        r.record_awareness(now, &json)?;
                    }
                    events.push(YwsEvent::Awareness(json));
                }
                YMessage::Auth(Some(reason)) => events.push(YwsEvent::Denied(reason)),
                _ => {}
            }
        }
        crate::commit::flush_room(room, self.group.as_ref()).await?;
        if !replies.is_empty() {
            self.send(&replies).await?;
        }
        Ok(Some(events))
    }

    /// Closes the socket.
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await.map_err(remote)
    }
}

//! A peer attached to a bootstrap node's y-websocket endpoint (`/yws/{room}?token=T`), used
//! when no libp2p peer is reachable: a tokio-tungstenite socket around arena-core's sans-IO
//! [`Client`] (what the WASM package runs in browsers). The client speaks the protocol: our
//! signed envelopes inside y-protocols messages of type
//! [`arena_core::sync::ywire::MSG_ARENA`] (so authorship is checked end to end), their
//! reassembly, catch-up (a `Want` when we lack something, also for an author whose
//! admission has not reached us), presence. This file adds what a native peer needs
//! around it: what a frame wrote is made durable (through the database's group commit for
//! a room kept in sled) before anything is reported or sent, and a recording keeps every
//! awareness update.

use std::time::Duration;

use arena_core::sync::client::Client;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{NodeError, Result};
use crate::node::{now_ms, NodeRoom};
use crate::store::NodeStore;

/// A replica of a room and its side of the `/yws` protocol, kept across connections.
pub type NodeClient = Client<NodeStore>;

/// The link number of the node's socket in [`Client::receive_on`].
const LINK: u32 = 0;

/// What arrived on the socket, after the client handled it and it was made durable.
#[derive(Debug)]
pub enum YwsEvent {
    /// How many envelopes were applied.
    Applied(usize),
    /// An awareness update, as JSON `{client id: {clock, state}}` (the recording's form).
    Awareness(String),
    /// The node refused something of ours (e.g. an observer's edit).
    Denied(String),
}

/// One connection to `/yws/{room}`. The room's replica is a [`NodeClient`] the caller keeps
/// (it outlives reconnections) and lends to each call; one client, one link at a time.
#[derive(Debug)]
pub struct YwsLink {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Flushes a sled-backed room (see [`YwsLink::with_group_commit`]).
    group: Option<crate::GroupCommit>,
}

fn remote(e: impl std::fmt::Display) -> NodeError {
    NodeError::Remote(format!("y-websocket: {e}"))
}

impl YwsLink {
    /// Connects to the bootstrap node at `base` (`http://host:port`).
    pub async fn connect(base: &str, room: arena_core::RoomId, token: &str) -> Result<Self> {
        let (host, _) = crate::http::split_url(base)?;
        let url = format!("ws://{host}/yws/{}?token={token}", room.to_hex());
        let (ws, _) = tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(url.as_str()))
            .await
            .map_err(|_| remote(format!("{url}: timed out")))?
            .map_err(|e| remote(format!("{url}: {e}")))?;
        Ok(YwsLink { ws, group: None })
    }

    /// Flushes a room kept in sled through `group` (the database's group commit) instead of
    /// inline on the async worker.
    pub fn with_group_commit(mut self, group: Option<crate::GroupCommit>) -> Self {
        self.group = group;
        self
    }

    /// Sends what a client sends when its socket opens ([`Client::open`]): our admission, a
    /// `Want` for what we lack, our newest envelope (a node that lacks older ones asks for
    /// them, and [`YwsLink::next`] answers from our log), our presence if we set one. Call
    /// it first on each new link; a half-received message of the previous link is dropped.
    pub async fn open(&mut self, client: &mut NodeClient) -> Result<()> {
        client.close_link(LINK);
        let frames = client.open(now_ms())?;
        self.flush(client.room_mut()).await?;
        self.send(frames).await
    }

    /// Sends our envelopes made since the last send (edits, votes through
    /// [`Client::room_mut`]), made durable first.
    pub async fn send_outgoing(&mut self, client: &mut NodeClient) -> Result<()> {
        let frames = client.outgoing()?;
        if frames.is_empty() {
            return Ok(());
        }
        self.flush(client.room_mut()).await?;
        self.send(frames).await
    }

    /// Sends frames as they are: presence ([`Client::set_presence`], [`Client::tick`],
    /// [`Client::clear_presence`]). Envelopes go through [`YwsLink::send_outgoing`].
    pub async fn send(&mut self, frames: Vec<Vec<u8>>) -> Result<()> {
        for f in frames {
            self.ws.send(Message::Binary(f.into())).await.map_err(remote)?;
        }
        Ok(())
    }

    /// Waits for the next frame and hands it to `client` (see [`YwsLink::handle`]). `None`
    /// when the socket closed. Cancel-safe only while it waits: to race the socket against
    /// something else (a timeout, `select!`), race [`YwsLink::recv`] and then handle the
    /// frame, or a frame's replies may be lost half sent.
    pub async fn next(&mut self, client: &mut NodeClient) -> Result<Option<Vec<YwsEvent>>> {
        match self.recv().await? {
            None => Ok(None),
            Some(frame) => self.handle(client, &frame).await.map(Some),
        }
    }

    /// Waits for the next binary frame; `None` when the socket closed. Cancel-safe:
    /// nothing is lost until a frame is returned.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(remote(e)),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b.into())),
                Some(Ok(Message::Close(c))) => {
                    return Err(remote(format!(
                        "closed by the node: {}",
                        c.map(|c| c.reason.to_string()).unwrap_or_default()
                    )))
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// Hands one frame to `client`: a recording keeps its awareness updates, then what it
    /// wrote is made durable, then the client's replies are sent and the events reported.
    pub async fn handle(&mut self, client: &mut NodeClient, frame: &[u8]) -> Result<Vec<YwsEvent>> {
        let now = now_ms();
        let inc = client.receive_on(LINK, frame, now)?;
        if inc.rejected > 0 {
            tracing::warn!(count = inc.rejected, "refused envelopes from the node");
        }
        let mut events = Vec::new();
        if inc.applied > 0 {
            events.push(YwsEvent::Applied(inc.applied));
        }
        for update in &inc.awareness {
            let json = crate::presence::to_json(update);
            if let NodeStore::Recording(r) = client.room_mut().store_mut() {
                r.record_awareness(now, &json)?;
            }
            events.push(YwsEvent::Awareness(json));
        }
        events.extend(inc.denied.into_iter().map(YwsEvent::Denied));
        self.flush(client.room_mut()).await?;
        self.send(inc.replies).await?;
        Ok(events)
    }

    async fn flush(&self, room: &mut NodeRoom) -> Result<()> {
        crate::commit::flush_room(room, self.group.as_ref()).await
    }

    /// Closes the socket.
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await.map_err(remote)
    }
}

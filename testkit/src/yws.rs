//! A native peer on a bootstrap node's `/yws/{room}` socket that signs its own envelopes:
//! arena-core's sans-IO [`Client`] (what the WASM package runs in browsers) over a
//! tokio-tungstenite socket. For tests that need a member who is neither a browser nor an
//! arena-node process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use arena_core::history::Splice;
use arena_core::sync::client::Client;
use arena_core::sync::wire::{chunk, Wire, GOSSIP_CHUNK};
use arena_core::sync::ywire::{arena_frame, awareness_frame};
use arena_core::{Identity, MemoryStore, PeerKey, Room, RoomConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::now_ms;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A member on `/yws`: joins with an invite token, types, reads what the node sends.
pub struct YwsPeer {
    client: Client<MemoryStore>,
    ws: Ws,
    /// Reasons the node refused something of ours (y-protocols permission-denied messages).
    pub denied: Vec<String>,
    /// Every peer's awareness state seen, JSON, by awareness client id.
    pub presence: BTreeMap<u64, String>,
}

impl std::fmt::Debug for YwsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YwsPeer").field("room", &self.client.room().id()).field("denied", &self.denied).finish()
    }
}

/// A y-protocols awareness frame for `client` with `state` (JSON) at `clock`.
pub fn awareness_msg(client: u64, clock: u32, state: &str) -> Result<Vec<u8>> {
    use yrs::updates::encoder::Encode;
    let mut clients = std::collections::HashMap::new();
    clients
        .insert(yrs::ClientID::new(client), yrs::sync::awareness::AwarenessUpdateEntry { clock, json: state.into() });
    let update = yrs::sync::AwarenessUpdate { clients }.encode_v1();
    Ok(awareness_frame(&update)?)
}

impl YwsPeer {
    /// Joins room `room` (hex) on the node at `addr` with invite `token`, as `name` (also its
    /// key's passphrase), and sends what a client sends when its socket opens.
    pub async fn connect(addr: SocketAddr, room: &str, token: &str, name: &str) -> Result<Self> {
        let id = PeerKey::from_hex(room)?;
        let now = now_ms();
        let replica =
            Room::open(id, Identity::from_passphrase(name), 0, MemoryStore::new(), RoomConfig::default(), now)?;
        let mut client = Client::new(replica, GOSSIP_CHUNK, now);
        client.join(token, name, now)?;
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/yws/{room}?token={token}")).await?;
        let mut peer = YwsPeer { client, ws, denied: Vec::new(), presence: BTreeMap::new() };
        let frames = peer.client.open(now_ms())?;
        peer.send_frames(frames).await?;
        Ok(peer)
    }

    /// The replica.
    pub fn room(&self) -> &Room<MemoryStore> {
        self.client.room()
    }

    /// The replica, to sign something of our own (send it with [`YwsPeer::send`]).
    pub fn room_mut(&mut self) -> &mut Room<MemoryStore> {
        self.client.room_mut()
    }

    async fn send_frames(&mut self, frames: Vec<Vec<u8>>) -> Result<()> {
        for f in frames {
            self.ws.send(Message::Binary(f.into())).await?;
        }
        Ok(())
    }

    /// Sends envelope-protocol messages as they are (chunked), e.g. a crafted one.
    pub async fn send(&mut self, msgs: Vec<Wire>) -> Result<()> {
        let frames = chunk(&msgs, GOSSIP_CHUNK).iter().map(|c| arena_frame(c)).collect();
        self.send_frames(frames).await
    }

    /// Sends an awareness update for `client` (any id: tests play other clients too).
    pub async fn send_presence(&mut self, client: u64, clock: u32, state: &str) -> Result<()> {
        let frame = awareness_msg(client, clock, state)?;
        self.send_frames(vec![frame]).await
    }

    /// Types `text` at `pos` (clamped to the end) as one envelope and sends it.
    pub async fn type_text(&mut self, pos: u32, text: &str) -> Result<()> {
        let pos = pos.min(self.client.room().doc().code_len());
        let frames = self.client.splice(&[Splice { pos, delete: 0, insert: text.to_owned() }], now_ms())?;
        self.send_frames(frames).await
    }

    /// Adds file `name` to the room with `text` (one envelope) and sends it.
    pub async fn add_file(&mut self, name: &str, text: &str) -> Result<()> {
        let now = now_ms();
        let mut done = Ok(());
        self.client.room_mut().edit(now, |e| {
            done = e.add_file(name, now).and_then(|_| e.splice_file(name, 0, 0, text));
        })?;
        done?;
        let frames = self.client.outgoing()?;
        self.send_frames(frames).await
    }

    /// Reads frames for up to `d`, handing each to the client and sending its replies. Fails
    /// when the socket ends, or when the client refuses an envelope from a known member
    /// (the node relays only envelopes every replica accepts).
    pub async fn pump(&mut self, d: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(()),
                Ok(None) => bail!("socket closed"),
                Ok(Some(m)) => m?,
            };
            let Message::Binary(b) = msg else { continue };
            let inc = self.client.receive(&b, now_ms())?;
            if inc.rejected > 0 {
                bail!("refused {} envelopes from the node", inc.rejected);
            }
            self.denied.extend(inc.denied);
            if inc.presence {
                self.presence = self.client.presence().into_iter().map(|p| (p.client_id, p.state)).collect();
            }
            self.send_frames(inc.replies).await?;
        }
    }

    /// The code as this replica has it.
    pub fn text(&self) -> String {
        self.client.room().doc().code()
    }

    /// Reads (and drops) what arrives until the node closes the socket, for up to `d`: the
    /// close frame's code and reason.
    pub async fn until_closed(&mut self, d: Duration) -> Result<(u16, String)> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("the socket is still open after {d:?}"),
                Ok(None) => bail!("the socket ended without a close frame"),
                Ok(Some(Ok(Message::Close(Some(f))))) => return Ok((u16::from(f.code), f.reason.to_string())),
                Ok(Some(Ok(Message::Close(None)))) => bail!("closed with no code"),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => bail!("socket error before a close frame: {e}"),
            }
        }
    }
}

//! The node: one actor owns the libp2p swarm and every joined room's replica; a cheap
//! cloneable [`NodeHandle`] talks to it over a bounded command channel (each command with a
//! oneshot reply) and hears from it on a bounded broadcast of [`NodeEvent`]s.
//!
//! Durability: whatever the actor applies (a local edit, a gossiped or caught-up envelope)
//! is flushed to the room's store before it is acknowledged: before the reply to a command,
//! before a gossip message is accepted (and so forwarded), before a sync answer leaves and
//! before the event is emitted. Several inputs that are ready together share one flush.

mod actor;
mod discovery;
mod fragments;
mod outbox;
mod rooms;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arena_core::sync::wire::Wire;
use arena_core::{Edit, Envelope, Identity, PeerKey, Revocation, Role, Room, RoomConfig, RoomId, SledDb};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::behaviour::{keypair_of, BehaviourConfig};
use crate::error::{NodeError, Result};
use crate::store::NodeStore;

pub use fragments::{FragmentLimits, FragmentStats};

/// A room replica as the node keeps it.
pub type NodeRoom = Room<NodeStore>;

const COMMAND_QUEUE: usize = 256;
const EVENT_QUEUE: usize = 4096;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's key: its libp2p identity and its envelope-signing key.
    pub identity: Identity,
    /// Addresses to listen on (`/ip4/127.0.0.1/tcp/0`, `/ip4/0.0.0.0/udp/0/quic-v1`, ...).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap nodes to dial (with their `/p2p/<peer id>`): rendezvous, kademlia, relay.
    pub bootstrap: Vec<Multiaddr>,
    /// Where rooms are kept (sled), and the read key of each room joined
    /// (`read-keys/<room>`, 0600, from its invite token: a restart rejoins without one);
    /// `None` keeps them in memory. A memory node should use a fresh identity each run: its
    /// envelope chains restart from zero.
    pub data_dir: Option<PathBuf>,
    /// Server roles (rendezvous, relay, kademlia server) and protocol timings.
    pub behaviour: BehaviourConfig,
    /// Period of anti-entropy: a catch-up request to every peer of every room.
    pub anti_entropy: Duration,
    /// Period of discovery (rendezvous and DHT lookups of every room).
    pub discovery: Duration,
    /// Report our listen addresses as external ones (needed to register at a rendezvous
    /// server; right on a LAN or loopback, where no NAT is in the way).
    pub announce_listen_addrs: bool,
    /// Listen through the bootstrap nodes that offer a relay (for peers behind NAT).
    pub use_relay: bool,
    /// Invalid messages from one peer before it is disconnected and banned.
    pub max_offences: u32,
    /// Offences from all the peer ids behind one remote IP before that IP is banned (every
    /// peer on it disconnected, new connections from it refused): peer ids cost nothing to
    /// make, addresses do. High enough for a NAT full of honest peers.
    pub max_offences_per_ip: u32,
    /// How long a banned peer stays banned.
    pub ban: Duration,
    /// Tunables of every room replica.
    pub room: RoomConfig,
    /// Most envelope bytes in one `/arena/sync/1` answer: a longer catch-up is paged (the
    /// answer says "more" and the requester asks again from where it got to). One envelope
    /// bigger than this still goes, alone; a late joiner's checkpoint is not cut either.
    pub max_answer_bytes: usize,
    /// Caps on gossip fragments being reassembled (only member publishers' are kept).
    pub fragments: FragmentLimits,
}

impl NodeConfig {
    /// Defaults for `identity`: in memory, no listen address, no bootstrap node.
    pub fn new(identity: Identity) -> Self {
        NodeConfig {
            identity,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            data_dir: None,
            behaviour: BehaviourConfig::default(),
            anti_entropy: Duration::from_secs(10),
            discovery: Duration::from_secs(30),
            announce_listen_addrs: true,
            use_relay: false,
            max_offences: 3,
            max_offences_per_ip: 30,
            ban: Duration::from_secs(600),
            room: RoomConfig { max_catch_up: 50_000, ..RoomConfig::default() },
            max_answer_bytes: 1 << 20,
            fragments: FragmentLimits::default(),
        }
    }
}

/// Loads the identity kept in `dir/identity.key` (hex seed), creating it on first use (the
/// directory 0700, the file 0600 from its creation: see [`crate::write_private_file`]).
pub fn load_or_create_identity(dir: &Path) -> Result<Identity> {
    crate::create_private_dir(dir).map_err(|e| NodeError::io(dir, e))?;
    let path = dir.join("identity.key");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let seed = PeerKey::from_hex(s.trim()).map_err(|_| NodeError::KeyFile {
                path: path.display().to_string(),
                reason: "not a 64-hex-digit key (remove it to make a new one)".into(),
            })?;
            Ok(Identity::from_seed(seed.0))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::from_seed(random_seed()?);
            crate::write_private_file(&path, PeerKey(id.seed()).to_hex().as_bytes())
                .map_err(|e| NodeError::io(&path, e))?;
            Ok(id)
        }
        Err(e) => Err(NodeError::io(&path, e)),
    }
}

/// 32 bytes from the OS.
pub fn random_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| NodeError::Transport(format!("no randomness: {e}")))?;
    Ok(seed)
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What joining a room needs.
#[derive(Clone, Debug)]
pub struct JoinSpec {
    /// The room.
    pub room: RoomId,
    /// An invite token (it carries the room's read key, which the room's gossip is sealed
    /// under); may be omitted when this replica was admitted before and the node keeps the
    /// read key in its data dir (a restart).
    pub token: Option<String>,
    /// Display name.
    pub name: String,
    /// Keep the room in this recording file instead of the node's store.
    pub recording: Option<PathBuf>,
}

/// A joined room, as reported by [`NodeHandle::join`].
#[derive(Clone, Debug)]
pub struct RoomInfo {
    /// The room.
    pub room: RoomId,
    /// Our role.
    pub role: Option<Role>,
    /// Entries in our log.
    pub log_len: u64,
}

/// What the node tells its subscribers. A subscriber that lags behind gets
/// `RecvError::Lagged` and should re-read what it needs through the handle.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NodeEvent {
    /// Listening on a new address.
    Listening {
        /// The address (with the real port).
        addr: Multiaddr,
    },
    /// A connection to a peer was established (its first).
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// Envelopes were applied to a room and are durable.
    Applied {
        /// The room.
        room: RoomId,
        /// The envelopes, in the order applied.
        envelopes: Vec<Envelope>,
        /// The peer that sent them; `None` for our own edits.
        from: Option<PeerId>,
    },
    /// A room started from a peer's signed checkpoint (a late joiner of a long room): its
    /// document jumped to the checkpoint's state, and later envelopes continue from there.
    CheckpointAdopted {
        /// The room.
        room: RoomId,
        /// The peer that sent it.
        from: PeerId,
    },
    /// Presence changed in a room (a y-protocols awareness update from a peer: names,
    /// cursors; a bootstrap node relays its browsers'). Recorders keep them.
    Presence {
        /// The room.
        room: RoomId,
        /// The awareness update, y-protocols encoded.
        update: Vec<u8>,
        /// The peer that published it (its gossipsub signature names it; a peer that only
        /// forwarded it is not reported).
        from: PeerId,
    },
    /// A member of a room we have not joined asked us for it: its catch-up request carried
    /// its own valid admission, bound to its peer id (a topic subscription or a request
    /// without that proof is not reported). A bootstrap node joins the rooms it hosts on
    /// demand.
    RoomWanted {
        /// The room.
        room: RoomId,
        /// The peer.
        from: PeerId,
    },
    /// A peer's revocations were applied to a room (a host removed a member, or withdrew
    /// an invite): only the ones new to us. A bootstrap node closes the revoked member's
    /// connections.
    Revoked {
        /// The room.
        room: RoomId,
        /// The revocations, as signed.
        revocations: Vec<Revocation>,
        /// The peer that sent them.
        from: PeerId,
    },
    /// A member was admitted to a room.
    Admitted {
        /// The room.
        room: RoomId,
        /// The member.
        member: PeerKey,
        /// Its role.
        role: Role,
        /// Its display name.
        name: String,
    },
    /// A peer sent something invalid (it is penalised).
    Offence {
        /// The peer.
        peer: PeerId,
        /// The room, when the message was for one.
        room: Option<RoomId>,
        /// What was wrong.
        reason: String,
        /// Its offences so far.
        count: u32,
    },
    /// A peer was disconnected and banned for its offences.
    Banned {
        /// The peer.
        peer: PeerId,
    },
    /// A room's store failed; nothing after this was acknowledged.
    StoreFailed {
        /// The room.
        room: RoomId,
        /// The error.
        error: String,
    },
}

/// A connected peer, as [`NodeHandle::stats`] sees it.
#[derive(Clone, Debug)]
pub struct PeerStats {
    /// Invalid messages it sent.
    pub offences: u32,
    /// Its gossipsub score (negative after invalid messages).
    pub score: Option<f64>,
}

/// A snapshot of the node.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// Connected peers.
    pub connected: Vec<PeerId>,
    /// Every peer that ever offended or is connected.
    pub peers: BTreeMap<PeerId, PeerStats>,
    /// Banned peers.
    pub banned: Vec<PeerId>,
    /// Banned remote IPs.
    pub banned_ips: Vec<std::net::IpAddr>,
    /// Per joined room.
    pub rooms: BTreeMap<RoomId, RoomStats>,
    /// Gossip fragments being reassembled.
    pub fragments: FragmentStats,
    /// `/arena/sync/1` requests refused because the requester did not prove membership.
    pub sync_refused: u64,
    /// Gossip messages on our rooms' topics that did not open under the room's read key
    /// (another room's key, altered, or not sealed): dropped, never forwarded.
    pub gossip_undecryptable: u64,
}

/// A joined room, as [`NodeHandle::stats`] sees it.
#[derive(Clone, Debug, Default)]
pub struct RoomStats {
    /// Entries in our log.
    pub log_len: u64,
    /// Peers known to be subscribed to the room's gossip topic.
    pub gossip_peers: Vec<PeerId>,
}

type RoomFn = Box<dyn FnOnce(&mut NodeRoom, u64) + Send>;

pub(crate) enum Command {
    Join(JoinSpec, oneshot::Sender<Result<RoomInfo>>),
    Leave(RoomId, oneshot::Sender<Result<()>>),
    /// Runs `f` on the room; new envelopes it wrote are flushed and published, then `done`.
    WithRoom {
        room: RoomId,
        f: RoomFn,
        done: oneshot::Sender<Result<()>>,
    },
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
    Partition(bool, oneshot::Sender<()>),
    SyncNow(oneshot::Sender<()>),
    Stats(oneshot::Sender<NodeStats>),
    PublishRaw {
        room: RoomId,
        data: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    /// Publishes a y-protocols awareness update on a room's presence topic.
    PublishPresence {
        room: RoomId,
        update: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    /// Applies messages from a local bridge (the bootstrap node's clients) and gossips what
    /// was new.
    Ingest {
        room: RoomId,
        msgs: Vec<Wire>,
        done: oneshot::Sender<Result<()>>,
    },
}

/// The handle to a running node: cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NodeEvent>,
    peer_id: PeerId,
    key: PeerKey,
}

impl NodeHandle {
    /// The node's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The node's arena key (author of its envelopes).
    pub fn key(&self) -> PeerKey {
        self.key
    }

    /// A new subscription to the node's events.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Joins (or reopens) a room.
    pub async fn join(&self, spec: JoinSpec) -> Result<RoomInfo> {
        self.call(|tx| Command::Join(spec, tx)).await?
    }

    /// Leaves a room (flushes and closes its store).
    pub async fn leave(&self, room: RoomId) -> Result<()> {
        self.call(|tx| Command::Leave(room, tx)).await?
    }

    /// Runs `f` on the room's replica inside the actor and returns its result. Envelopes `f`
    /// writes (edits, votes, versions, restores) are flushed and published before this
    /// returns. Keep `f` short (the node does nothing else meanwhile) and panic-free (a panic
    /// stops the node).
    pub async fn with_room<R: Send + 'static>(
        &self,
        room: RoomId,
        f: impl FnOnce(&mut NodeRoom, u64) -> R + Send + 'static,
    ) -> Result<R> {
        let (rtx, rrx) = oneshot::channel();
        let f: RoomFn = Box::new(move |r, now| {
            let _ = rtx.send(f(r, now));
        });
        self.call(|done| Command::WithRoom { room, f, done }).await??;
        rrx.await.map_err(|_| NodeError::Stopped)
    }

    /// One local edit as one signed envelope (None when nothing changed).
    pub async fn edit(
        &self,
        room: RoomId,
        f: impl FnOnce(&mut Edit<'_, '_>) + Send + 'static,
    ) -> Result<Option<Envelope>> {
        Ok(self.with_room(room, move |r, now| r.edit(now, f)).await??)
    }

    /// Replaces `delete` UTF-16 units at `pos` with `insert` in the code buffer.
    pub async fn splice(&self, room: RoomId, pos: u32, delete: u32, insert: &str) -> Result<Option<Envelope>> {
        let insert = insert.to_owned();
        self.edit(room, move |e| e.splice_code(pos, delete, &insert)).await
    }

    /// The code buffer.
    pub async fn code(&self, room: RoomId) -> Result<String> {
        self.with_room(room, |r, _| r.doc().code()).await
    }

    /// The canonical encoding of the room's state: equal on converged replicas.
    pub async fn canonical_state(&self, room: RoomId) -> Result<Vec<u8>> {
        self.with_room(room, |r, _| r.doc().canonical_state()).await
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.call(Command::ListenAddrs).await
    }

    /// Dials a peer (with or without `/p2p/<peer id>`).
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.call(|tx| Command::Dial(addr, tx)).await?
    }

    /// Cuts the node off (`true`: every connection closed, new ones refused, no requests
    /// sent) or lets it back (`false`; dial peers again to heal).
    pub async fn set_partitioned(&self, on: bool) -> Result<()> {
        self.call(|tx| Command::Partition(on, tx)).await
    }

    /// Runs an anti-entropy round now.
    pub async fn sync_now(&self) -> Result<()> {
        self.call(Command::SyncNow).await
    }

    /// Peers, offences, rooms.
    pub async fn stats(&self) -> Result<NodeStats> {
        self.call(Command::Stats).await
    }

    /// Applies envelope-protocol messages that arrived outside libp2p (the bootstrap node's
    /// WebSocket clients) to the room and gossips the admissions and envelopes that were new.
    /// They are reported as `Applied { from: None }`.
    pub async fn ingest(&self, room: RoomId, msgs: Vec<Wire>) -> Result<()> {
        self.call(|done| Command::Ingest { room, msgs, done }).await?
    }

    /// Publishes a y-protocols awareness update (presence: names, cursors) to the room's
    /// peers. Fails when we have not joined the room or the update does not decode.
    pub async fn publish_presence(&self, room: RoomId, update: Vec<u8>) -> Result<()> {
        self.call(|done| Command::PublishPresence { room, update, done }).await?
    }

    /// Publishes raw bytes on a room's topic, sealed under the room's read key but otherwise
    /// unchecked. For tests of misbehaving members.
    #[doc(hidden)]
    pub async fn publish_raw(&self, room: RoomId, data: Vec<u8>) -> Result<()> {
        self.call(|done| Command::PublishRaw { room, data, done }).await?
    }
}

/// A node ready to run.
#[allow(missing_debug_implementations)]
pub struct Node {
    actor: actor::Actor,
}

impl Node {
    /// Builds the swarm, starts listening and dials the bootstrap nodes; returns the node
    /// (to [`Node::run`]) and its handle. Must be called inside a tokio runtime.
    pub fn new(cfg: NodeConfig) -> Result<(Node, NodeHandle)> {
        let key = keypair_of(&cfg.identity);
        let peer_id = key.public().to_peer_id();
        let db = match &cfg.data_dir {
            Some(dir) => {
                crate::create_private_dir(dir).map_err(|e| NodeError::io(dir, e))?;
                Some(SledDb::open(dir.join("sled"))?)
            }
            None => None,
        };
        let swarm = crate::behaviour::build_swarm(key, &cfg.behaviour)?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let handle = NodeHandle { tx, events: events.clone(), peer_id, key: cfg.identity.public() };
        let actor = actor::Actor::new(cfg, swarm, db, rx, events)?;
        Ok((Node { actor }, handle))
    }

    /// Runs until `shutdown` is cancelled (or every handle is dropped); flushes every room
    /// on the way out.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        self.actor.run(shutdown).await
    }

    /// [`Node::new`] and [`Node::run`] on a spawned task.
    pub fn spawn(cfg: NodeConfig, shutdown: CancellationToken) -> Result<(NodeHandle, JoinHandle<Result<()>>)> {
        let (node, handle) = Node::new(cfg)?;
        let span = tracing::info_span!("node", peer = %handle.peer_id());
        let task = tokio::spawn(tracing::Instrument::instrument(node.run(shutdown), span));
        Ok((handle, task))
    }
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_identity_file_is_private_reused_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node");
        let first = load_or_create_identity(&data).unwrap();
        let path = data.join("identity.key");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create_identity(&data).unwrap().public(), first.public());
        assert_ne!(load_or_create_identity(&dir.path().join("other")).unwrap().public(), first.public());
        std::fs::write(&path, "garbage").unwrap();
        let err = load_or_create_identity(&data).unwrap_err();
        assert!(matches!(err, NodeError::KeyFile { .. }), "{err:?}");
        assert!(err.to_string().contains("identity.key"), "{err}");
    }
}

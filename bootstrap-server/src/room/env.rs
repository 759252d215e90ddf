//! What a room actor runs with: its [`Env`] (tunables, metrics, the group commit, an
//! optional network bridge, shutdown, and the node's loaded [`Rooms`]), shared by every room
//! of the node. The actor sees the libp2p side only through the [`Network`] trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arena_core::sync::wire::Wire;
use arena_core::{Identity, PeerKey, Room, RoomConfig, RoomId, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cmd::RoomCmd;
use crate::chan;
use crate::config::Config;
use crate::error::BootstrapError;
use crate::flush::Flusher;
use crate::live::{Live, CLOSE_DENIED};
use crate::metrics::Metrics;
use crate::ws::Deadlines;

/// A store a room actor can hold: any arena-core [`Store`] it can take to its task (sled on
/// the node, memory in tests).
pub(crate) trait RoomStore: Store + Send + 'static {}

impl<S: Store + Send + 'static> RoomStore for S {}

/// The room actor's tunables (from the node's [`Config`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tunables {
    /// Unload a room this long after its last connection left (`--room-idle-secs`).
    pub(crate) idle: Duration,
    /// Evict an untouched document after this long; zero: never (`--room-evict-secs`).
    pub(crate) evict: Duration,
    /// Sign stock clients' updates at most once per this (`--proxy-batch-ms`).
    pub(crate) proxy_batch: Duration,
    /// Send what needs no flush at most once per this (`--relay-batch-us`).
    pub(crate) relay_batch: Duration,
}

impl Tunables {
    pub(crate) fn from_config(cfg: &Config) -> Self {
        Tunables {
            idle: Duration::from_secs(cfg.room_idle_secs),
            evict: Duration::from_secs(cfg.room_evict_secs),
            proxy_batch: Duration::from_millis(cfg.proxy_batch_ms),
            relay_batch: Duration::from_micros(cfg.relay_batch_us),
        }
    }
}

/// The network side as a room sees it (the libp2p bridge implements it): what the room's
/// clients wrote goes out, and a freshly loaded room is joined there when it should be.
/// Never blocks: a full queue drops (the network catches up by anti-entropy).
pub(crate) trait Network: Send + Sync + fmt::Debug {
    /// Envelope-protocol messages a room applied from its clients.
    fn envelopes(&self, room: RoomId, msgs: Vec<Wire>);
    /// A client's awareness update (presence).
    fn presence(&self, room: RoomId, update: Vec<u8>);
    /// A room was just loaded into `actor`: join it on the network if the node should.
    /// `room_key` when this node hosts the room; else `token` (the first client's) admits it.
    fn room_loaded(
        self: Arc<Self>,
        room: RoomId,
        room_key: Option<Identity>,
        token: Option<&str>,
        actor: &chan::Sender<RoomCmd>,
    );
}

/// Opens a room's replica from its store (what a room actor holds; also how it reopens an
/// evicted document).
pub(crate) type Opener<S> = Box<dyn Fn(&RoomId) -> Result<Room<S>, BootstrapError> + Send + Sync>;

/// How the node's room actors open their rooms: the actor sends on every envelope sealed
/// from stock clients' updates, whichever call sealed them (`Room::take_sealed`), and makes
/// the periodic checkpoint itself, after sending what it relays (`checkpoint_if_due`).
pub(crate) fn room_config() -> RoomConfig {
    RoomConfig { collect_seals: true, deferred_checkpoints: true, ..RoomConfig::default() }
}

/// What every room actor of the node shares.
pub(crate) struct Env<S: RoomStore> {
    pub(crate) tunables: Tunables,
    pub(crate) metrics: Arc<Metrics>,
    /// The group commit: a room's writes are durable once it answers.
    pub(crate) flusher: Flusher,
    /// The libp2p side, once started (never, with `--no-p2p`).
    pub(crate) network: OnceLock<Arc<dyn Network>>,
    pub(crate) shutdown: CancellationToken,
    /// `/yws` and `/signal` connections by their invite's expiry.
    pub(crate) live: Arc<Live>,
    /// The loaded rooms (an actor leaves on stopping).
    pub(crate) rooms: Rooms,
    /// `/yws` connections' deadlines, and the wheel that wakes them.
    pub(crate) deadlines: Deadlines,
    /// A room is making its periodic checkpoint: one at a time on the whole node (see
    /// `RoomState::checkpoint_if_due`).
    pub(crate) checkpointing: AtomicBool,
    pub(crate) open: Opener<S>,
}

impl<S: RoomStore> fmt::Debug for Env<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("tunables", &self.tunables)
            .field("network", &self.network)
            .field("rooms", &self.rooms)
            .finish_non_exhaustive()
    }
}

impl<S: RoomStore> Env<S> {
    /// Hands what a room applied from its clients to the network, if there is one.
    pub(crate) fn to_network(&self, room: RoomId, msgs: Vec<Wire>) {
        if let Some(n) = self.network.get() {
            n.envelopes(room, msgs);
        }
    }

    /// Hands a client's awareness update to the network, if there is one.
    pub(crate) fn presence_to_network(&self, room: RoomId, update: Vec<u8>) {
        if let Some(n) = self.network.get() {
            n.presence(room, update);
        }
    }

    /// Closes every live connection of `room` that joined with the invite link `invite` (a
    /// revoked invite, or a revoked member's link); returns how many.
    pub(crate) fn close_link(&self, room: &RoomId, invite: &PeerKey, reason: &str) -> usize {
        self.live.close_link(room, invite, reason, &self.metrics, |room, conn, reason| {
            self.rooms.close_conn(room, conn, reason);
        })
    }
}

/// The node's loaded rooms: each one's actor queue, by room id.
#[derive(Debug, Default)]
pub(crate) struct Rooms(Mutex<HashMap<RoomId, chan::Sender<RoomCmd>>>);

impl Rooms {
    /// The room's actor, if it is loaded and running.
    pub(crate) fn get(&self, room: &RoomId) -> Option<chan::Sender<RoomCmd>> {
        let map = self.0.lock().ok()?;
        map.get(room).filter(|t| !t.is_closed()).cloned()
    }

    /// Every running room actor.
    pub(crate) fn all(&self) -> Vec<(RoomId, chan::Sender<RoomCmd>)> {
        match self.0.lock() {
            Ok(map) => map.iter().filter(|(_, t)| !t.is_closed()).map(|(k, t)| (*k, t.clone())).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The room's running actor, or the one `spawn` starts (under the map's lock: of two
    /// loads of a room, the first one stays). With the new actor's task; None if the lock is
    /// poisoned.
    pub(crate) fn get_or_spawn(
        &self,
        room: RoomId,
        spawn: impl FnOnce() -> (chan::Sender<RoomCmd>, JoinHandle<()>),
    ) -> Option<(chan::Sender<RoomCmd>, Option<JoinHandle<()>>)> {
        let mut map = self.0.lock().ok()?;
        if let Some(existing) = map.get(&room).filter(|t| !t.is_closed()) {
            return Some((existing.clone(), None));
        }
        let (tx, handle) = spawn();
        map.insert(room, tx.clone());
        Some((tx, Some(handle)))
    }

    /// A stopped room leaves the map.
    pub(crate) fn forget(&self, room: &RoomId) {
        if let Ok(mut map) = self.0.lock() {
            if map.get(room).is_some_and(|t| t.is_closed()) {
                map.remove(room);
            }
        }
    }

    /// Closes a `/yws` connection of `room` through its actor (its invite expired or was
    /// revoked).
    pub(crate) fn close_conn(&self, room: &RoomId, conn: u64, reason: &str) {
        let Some(actor) = self.get(room) else { return };
        let cmd = RoomCmd::Close { conn, code: CLOSE_DENIED, reason: reason.into() };
        if let Err(chan::TrySendError::Full(cmd)) = actor.try_send(cmd) {
            tokio::spawn(async move {
                let _ = actor.send(cmd).await;
            });
        }
    }
}

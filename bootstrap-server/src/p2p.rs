//! The node's libp2p side: an arena-node `Node` in server mode (rendezvous, relay, kademlia
//! server) built from the same `ArenaBehaviour` as every native peer, bridged to the room
//! actors. Envelopes the node's WebSocket clients write go out on the room's gossipsub
//! topic; envelopes from libp2p peers (native peers, other bootstrap nodes) come back into
//! the room actor and out to its clients. That is federation: several nodes, each with its
//! own clients, bridge every room over gossipsub.
//!
//! The libp2p replica of a room is a second replica in this process (its own sled under
//! `{data dir}/p2p`); the two exchange envelope vectors when it joins and then forward every
//! new envelope both ways. It exists only where the network needs it: for rooms hosted on
//! another node, on nodes that federate (`--peer`), and for a room a member asks for over
//! libp2p (a catch-up request carrying its own admission: `NodeEvent::RoomWanted`; a
//! stranger's request or a topic subscription loads nothing). A single node serving
//! browsers keeps one replica per room, not two.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use arena_core::sync::wire::Wire;
use arena_core::{Identity, Invite, PeerKey, Role, RoomId, FLAG_PROXY};
use arena_node::{JoinSpec, NodeConfig, NodeEvent, NodeHandle};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::chan;
use crate::clock::now_ms;
use crate::error::BootstrapError;
use crate::metrics::{inc, Metrics};
use crate::registry::Registry;
use crate::room::{Network, RoomCmd};

/// The running libp2p side, as the room actors see it (the [`Network`] they hand their
/// clients' envelopes and presence to).
#[derive(Debug)]
pub(crate) struct P2p {
    handle: NodeHandle,
    outbound: mpsc::Sender<(RoomId, Vec<Wire>)>,
    presence: mpsc::Sender<(RoomId, Vec<u8>)>,
    /// Rooms the libp2p side has joined (or is joining).
    joined: Mutex<HashSet<RoomId>>,
    /// This node federates (`--peer`): it joins every room it loads.
    federates: bool,
    metrics: Arc<Metrics>,
}

impl P2p {
    /// Whether the libp2p side has joined `room` (or is joining it).
    fn has(&self, room: &RoomId) -> bool {
        self.joined.lock().is_ok_and(|j| j.contains(room))
    }

    /// Whether the libp2p side should join a room as soon as it is loaded: when it is hosted
    /// elsewhere (the home node signs for our clients) or this node federates.
    fn join_eagerly(&self, hosted_here: bool) -> bool {
        !hosted_here || self.federates
    }
}

impl Network for P2p {
    /// Sends what a room actor applied from its clients to the network (never blocks).
    fn envelopes(&self, room: RoomId, msgs: Vec<Wire>) {
        if self.has(&room) && self.outbound.try_send((room, msgs)).is_err() {
            // Counted, not logged per message: under load this would flood the log.
            inc(&self.metrics.bridge_dropped, 1);
            debug!(room = %room, "libp2p bridge queue full; the network catches up by anti-entropy");
        }
    }

    /// Hands one of our clients' awareness updates to the libp2p side (dropped when its
    /// queue is full: presence is refreshed every few seconds).
    fn presence(&self, room: RoomId, update: Vec<u8>) {
        if self.has(&room) && self.presence.try_send((room, update)).is_err() {
            inc(&self.metrics.bridge_dropped, 1);
        }
    }

    fn room_loaded(
        self: Arc<Self>,
        room: RoomId,
        room_key: Option<Identity>,
        token: Option<&str>,
        actor: &chan::Sender<RoomCmd>,
    ) {
        if self.has(&room) || self.join_eagerly(room_key.is_some()) {
            tokio::spawn(attach(self, room, room_key, token.map(str::to_owned), actor.clone()));
        }
    }
}

/// The libp2p side once started: its tasks (awaited on shutdown), and its addresses (with
/// `/p2p/<peer id>`) for whoever started the node.
pub(crate) struct Started {
    pub(crate) p2p: Arc<P2p>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) addrs: Vec<String>,
}

/// The libp2p replica's key. It writes envelopes of its own (its admission, its participant
/// entry), so it must not share the room actor's author chain: it has a random key of its
/// own in `{data dir}/p2p/identity.key` (0600, made on first start, reused after).
///
/// A data dir from before that file (its replica's `sled` there, no key file) keeps the key
/// its replica has always signed with, derived from the node key: it is written to the key
/// file once, so the replica's author chains go on across the upgrade.
fn p2p_identity(dir: &std::path::Path, node: &Identity) -> Result<Identity, BootstrapError> {
    let path = dir.join("identity.key");
    if !path.exists() && dir.join("sled").exists() {
        let legacy = node.derive("arena/bootstrap-p2p");
        arena_node::write_private_file(&path, PeerKey(legacy.seed()).to_hex().as_bytes())
            .map_err(|source| BootstrapError::File { path: path.clone(), source })?;
        info!(key = %path.display(), "libp2p key written to its own file (kept from the node key)");
    }
    Ok(arena_node::load_or_create_identity(dir)?)
}

/// Starts the libp2p node and the bridge tasks, and makes it the room actors' network.
pub(crate) async fn start(registry: &Registry) -> Result<Started, BootstrapError> {
    let cfg = registry.cfg();
    let env = registry.env();
    let parse = |s: &String| s.parse().map_err(|e| BootstrapError::Config(format!("bad multiaddr {s:?}: {e}")));
    let p2p_identity = p2p_identity(&cfg.data_dir.join("p2p"), registry.identity())?;
    let mut ncfg = NodeConfig::new(p2p_identity);
    ncfg.listen = cfg.p2p_listen.iter().map(parse).collect::<Result<_, _>>()?;
    ncfg.bootstrap = cfg.peers.iter().map(parse).collect::<Result<_, _>>()?;
    ncfg.data_dir = Some(cfg.data_dir.join("p2p"));
    ncfg.behaviour = arena_node::behaviour::BehaviourConfig::server();
    ncfg.announce_listen_addrs = true;
    let shutdown = env.shutdown.clone();
    // The libp2p node runs on a thread of its own. Its actor used to fsync inline, and that on
    // one of the two shared runtime workers stalled every WebSocket room behind it (p99 26–41
    // ms at 400 edits/s; 5–7 ms on its own thread). Its flushes now go through the group
    // commit on the blocking pool (`arena_node::GroupCommit`, the rooms' flush path too), but
    // the swarm's own CPU work (noise, gossip, signatures) still competes with the rooms: the
    // thread stays until the throughput and idle commands show it can go.
    let (libp2p, handle) = arena_node::Node::new(ncfg)?;
    let (done_tx, task) = oneshot::channel::<Result<(), String>>();
    let stop = shutdown.clone();
    let span = tracing::info_span!("libp2p", peer = %handle.peer_id());
    std::thread::Builder::new()
        .name("arena-libp2p".into())
        .spawn(move || {
            let r = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => {
                    rt.block_on(tracing::Instrument::instrument(libp2p.run(stop), span)).map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("libp2p runtime: {e}")),
            };
            let _ = done_tx.send(r);
        })
        .map_err(|e| BootstrapError::Config(format!("libp2p thread: {e}")))?;
    let mut addrs = Vec::new();
    for _ in 0..100 {
        addrs = handle.listen_addrs().await.unwrap_or_default();
        if !addrs.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let peer = handle.peer_id();
    let addrs = addrs.iter().map(|a| format!("{a}/p2p/{peer}")).collect();
    info!(%peer, "libp2p node started");
    let (tx, mut rx) = mpsc::channel::<(RoomId, Vec<Wire>)>(4096);
    let (ptx, mut prx) = mpsc::channel::<(RoomId, Vec<u8>)>(1024);
    let p2p = Arc::new(P2p {
        handle: handle.clone(),
        outbound: tx,
        presence: ptx,
        joined: Mutex::default(),
        federates: !cfg.peers.is_empty(),
        metrics: env.metrics.clone(),
    });
    if env.network.set(p2p.clone()).is_err() {
        return Err(BootstrapError::Config("libp2p started twice".into()));
    }
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "libp2p node failed"),
            Err(_) => warn!("libp2p node thread ended without a result"),
        }
    }));
    // Our clients' envelopes → the network.
    let h = handle.clone();
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let (room, msgs) = tokio::select! {
                _ = stop.cancelled() => break,
                m = rx.recv() => match m { Some(m) => m, None => break },
            };
            if let Err(e) = h.ingest(room, msgs).await {
                debug!(room = %room, error = %e, "bridging to libp2p failed");
            }
        }
    }));
    // Our clients' presence → the network.
    let h = handle.clone();
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let (room, update) = tokio::select! {
                _ = stop.cancelled() => break,
                m = prx.recv() => match m { Some(m) => m, None => break },
            };
            if let Err(e) = h.publish_presence(room, update).await {
                debug!(room = %room, error = %e, "presence to libp2p");
            }
        }
    }));
    // The network's envelopes and presence → the room actors.
    let (registry, p2p2) = (registry.clone(), p2p.clone());
    let mut events = handle.subscribe();
    tasks.push(tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(NodeEvent::Applied { room, envelopes, from: Some(_) }) => {
                    if let Some(actor) = registry.loaded(&room) {
                        // The authors' admissions and the delegations stock clients' envelopes
                        // name, before the envelopes.
                        let (adms, dels) = handle
                            .with_room(room, |r, _| (r.ledger().admissions(), r.ledger().delegations()))
                            .await
                            .unwrap_or_default();
                        let msgs = vec![Wire::Admissions(adms), Wire::Delegations(dels), Wire::Envelopes(envelopes)];
                        let _ = actor.send(RoomCmd::Remote { msgs }).await;
                    }
                }
                // A host removed a member on another node (or a native peer): the room
                // applies the revocation and closes the member's connections here too.
                Ok(NodeEvent::Revoked { room, revocations, .. }) => {
                    if let Some(actor) = registry.loaded(&room) {
                        let _ = actor.send(RoomCmd::Remote { msgs: vec![Wire::Revocations(revocations)] }).await;
                    }
                }
                Ok(NodeEvent::RoomWanted { room, from }) => {
                    // Only rooms we host, and only for a member (the event is raised for a
                    // request that proves membership): a stranger cannot make us load rooms.
                    let hosted = registry.room_key(&room).ok().flatten();
                    let joined = p2p2.has(&room);
                    if let (Some(key), false) = (hosted, joined) {
                        debug!(room = %room, peer = %from, "a libp2p peer wants the room; joining");
                        match registry.actor(&room, None).await {
                            Ok(actor) => {
                                tokio::spawn(attach(p2p2.clone(), room, Some(key), None, actor));
                            }
                            Err(e) => warn!(room = %room, error = %e, "loading a room a peer asked for"),
                        }
                    }
                }
                Ok(NodeEvent::Presence { room, update, .. }) => {
                    if let Some(actor) = registry.loaded(&room) {
                        // Cosmetic and refreshed every few seconds: dropped when the room is busy.
                        let _ = actor.try_send(RoomCmd::RemotePresence { update });
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Missed events: resync every loaded room from the libp2p replica.
                    warn!(missed = n, "bridge lagged; resyncing rooms");
                    for (room, actor) in registry.env().rooms.all() {
                        if p2p2.has(&room) {
                            exchange(&handle, room, &actor).await;
                        }
                    }
                }
                Err(_) => break,
            }
        }
    }));
    Ok(Started { p2p, tasks, addrs })
}

/// The libp2p addresses (with `/p2p/<peer id>`), for `GET /api/peers`.
pub(crate) async fn addrs(p2p: Option<&P2p>) -> (Option<String>, Vec<String>) {
    let Some(p) = p2p else { return (None, Vec::new()) };
    let peer = p.handle.peer_id();
    let addrs = p.handle.listen_addrs().await.unwrap_or_default();
    (Some(peer.to_string()), addrs.iter().map(|a| format!("{a}/p2p/{peer}")).collect())
}

/// Joins a room on the libp2p side (once) and exchanges what each replica lacks.
/// `room_key` is the room's key when this node hosts the room (the libp2p replica then
/// holds a proxy grant like the room actor); otherwise `token` (the first client's) admits it.
/// Either token carries the room's read key, which the room's gossip is sealed under: a
/// node that does not host the room learns it from the first client token it checked (and
/// keeps it under `{data dir}/p2p/read-keys/` for its restarts).
async fn attach(
    p: Arc<P2p>,
    room: RoomId,
    room_key: Option<Identity>,
    token: Option<String>,
    actor: chan::Sender<RoomCmd>,
) {
    if !p.joined.lock().is_ok_and(|mut j| j.insert(room)) {
        // Joined already: just catch the two replicas up (a reloaded room).
        exchange(&p.handle, room, &actor).await;
        return;
    }
    let token = match room_key {
        Some(k) => Some(Invite::issue(&k, Role::Host, u64::MAX / 2, FLAG_PROXY, now_ms()).to_token()),
        None => token,
    };
    let spec = JoinSpec { room, token, name: "bootstrap node".into(), recording: None };
    if let Err(e) = p.handle.join(spec).await {
        warn!(room = %room, error = %e, "libp2p side could not join the room");
        if let Ok(mut j) = p.joined.lock() {
            j.remove(&room);
        }
        return;
    }
    inc(&p.metrics.libp2p_rooms, 1);
    exchange(&p.handle, room, &actor).await;
}

/// Both directions of catch-up between the room actor and the libp2p replica.
async fn exchange(handle: &NodeHandle, room: RoomId, actor: &chan::Sender<RoomCmd>) {
    let their: BTreeMap<PeerKey, u64> = handle.with_room(room, |r, _| r.envelope_vector()).await.unwrap_or_default();
    let (tx, rx) = oneshot::channel();
    if actor.send(RoomCmd::Answer { have: their, reply: tx }).await.is_err() {
        return;
    }
    if let Ok(msgs) = rx.await {
        let _ = handle.ingest(room, msgs).await;
    }
    let (tx, rx) = oneshot::channel();
    if actor.send(RoomCmd::Vector { reply: tx }).await.is_err() {
        return;
    }
    let Ok(ours) = rx.await else { return };
    if let Ok(Ok(msgs)) = handle.with_room(room, move |r, _| r.answer(&ours)).await {
        let _ = actor.send(RoomCmd::Remote { msgs }).await;
    }
}

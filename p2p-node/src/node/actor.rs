//! The event loop: `select!` (biased) on cancellation, commands, swarm events and timers;
//! after each batch of ready inputs, one commit (flush the dirty rooms, then release what
//! they acknowledge). Rooms in the node's sled database are flushed through the group commit
//! ([`crate::GroupCommit`], on the blocking pool: the loop awaits it, no worker thread
//! stalls in an fsync); a recording file flushes itself.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use arena_core::sync::wire::{chunk, Wire, GOSSIP_CHUNK};
use arena_core::{RoomId, SledDb, Store};
use futures::{FutureExt, StreamExt};
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub(super) use super::outbox::Outbox;
use super::{now_ms, Command, NodeConfig, NodeEvent, NodeRoom, NodeStats, PeerStats, RoomStats};
use crate::behaviour::{ArenaBehaviour, ArenaBehaviourEvent, RoomCipher, SyncResponse, SyncStatus};
use crate::error::{NodeError, Result};

/// Below this gossipsub score a peer's messages are ignored: it is banned too.
const GRAYLIST: f64 = -80.0;
/// Most remote IPs whose offences or bans are tracked.
const MAX_TRACKED_IPS: usize = 4096;
/// Inputs handled before one commit.
const BATCH: usize = 64;

/// One joined room.
pub(super) struct RoomState {
    pub(super) room: NodeRoom,
    pub(super) topic: gossipsub::IdentTopic,
    /// Its presence (awareness) topic.
    pub(super) presence_topic: gossipsub::IdentTopic,
    /// The room's read key (from the invite token we joined with, or kept from before).
    pub(super) read_key: arena_core::ReadKey,
    /// Seals and opens the room's gossip (keyed from `read_key`).
    pub(super) cipher: RoomCipher,
    /// Stock clients' updates waiting to be relayed for signing (no member peer yet, or
    /// a relay in flight): see [`Actor::pump_relay`].
    pub(super) unrelayed: Vec<Wire>,
    /// The relay requests in flight (one batch, to every member peer), the batch, and
    /// whether any of them was answered.
    pub(super) relaying: Vec<OutboundRequestId>,
    pub(super) relay_batch: Vec<Wire>,
    pub(super) relay_delivered: bool,
}

/// A gossip publisher not (yet) known as a member of a room: we asked `asked` to catch us
/// up; once it `answered` and the publisher is still unknown, its messages are rejected.
pub(super) struct Unproven {
    pub(super) asked: PeerId,
    pub(super) answered: bool,
}

pub(super) struct Actor {
    pub(super) cfg: NodeConfig,
    pub(super) swarm: Swarm<ArenaBehaviour>,
    pub(super) db: Option<SledDb>,
    /// The group commit over `db` (started with the loop, on its runtime).
    group: Option<crate::GroupCommit>,
    rx: mpsc::Receiver<Command>,
    events: broadcast::Sender<NodeEvent>,
    pub(super) rooms: HashMap<RoomId, RoomState>,
    pub(super) topics: HashMap<TopicHash, RoomId>,
    pub(super) out: Outbox,
    pub(super) offences: HashMap<PeerId, u32>,
    pub(super) banned: HashMap<PeerId, Instant>,
    pub(super) partitioned: bool,
    pub(super) inflight: HashMap<OutboundRequestId, (PeerId, RoomId)>,
    pub(super) inflight_keys: HashSet<(PeerId, RoomId)>,
    /// Peers asked for a room's missing history since we started (once each, so a replica
    /// restarted in the middle of its backfill resumes it, and a peer that lacks the history
    /// does not stop us asking the next one).
    pub(super) history_asked: HashSet<(PeerId, RoomId)>,
    pub(super) rendezvous_nodes: HashSet<PeerId>,
    /// Relay servers we know of, with our listener through each (`None`: not listening,
    /// e.g. our reservation was denied before the relay admitted us).
    pub(super) relays: HashMap<PeerId, Option<libp2p::core::transport::ListenerId>>,
    /// Members the relay serves, as last counted (see [`Actor::refresh_relay_members`]).
    pub(super) relay_member_count: (usize, usize, usize),
    pub(super) remote_addrs: HashMap<PeerId, Multiaddr>,
    /// The remote IP of each connected peer (its first connection's), for per-IP caps.
    pub(super) remote_ips: HashMap<PeerId, std::net::IpAddr>,
    /// Gossip fragments being reassembled (member publishers only, capped).
    pub(super) fragments: super::fragments::Fragments,
    /// Sync requests refused for want of a membership proof.
    pub(super) sync_refused: u64,
    /// Gossip messages on our rooms' topics that did not open under the room's read key.
    pub(super) undecryptable: u64,
    /// When we last announced our admission on each room's topic (at most once a second,
    /// however often peers subscribe).
    pub(super) announced: HashMap<RoomId, Instant>,
    /// Gossip publishers not known as members, per room (bounded).
    pub(super) unproven: HashMap<(PeerId, RoomId), Unproven>,
    /// Offences per remote IP (all its peer ids), and the IPs banned for them (bounded).
    pub(super) ip_offences: HashMap<std::net::IpAddr, u32>,
    pub(super) banned_ips: HashMap<std::net::IpAddr, Instant>,
    /// Our bootstrap nodes' peer ids (they may host our rooms: we ask them).
    pub(super) bootstrap_peers: HashSet<PeerId>,
    /// Sync requests per peer in the current second (flood control).
    pub(super) request_rate: HashMap<PeerId, (Instant, u32)>,
    listen_addrs: Vec<Multiaddr>,
}

impl Actor {
    pub(super) fn new(
        cfg: NodeConfig,
        mut swarm: Swarm<ArenaBehaviour>,
        db: Option<SledDb>,
        rx: mpsc::Receiver<Command>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Result<Self> {
        for addr in &cfg.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NodeError::BadAddress { addr: addr.to_string(), reason: e.to_string() })?;
        }
        let fragments = cfg.fragments;
        let mut actor = Actor {
            cfg,
            swarm,
            db,
            group: None,
            rx,
            events,
            rooms: HashMap::new(),
            topics: HashMap::new(),
            out: Outbox::default(),
            offences: HashMap::new(),
            banned: HashMap::new(),
            partitioned: false,
            inflight: HashMap::new(),
            inflight_keys: HashSet::new(),
            history_asked: HashSet::new(),
            rendezvous_nodes: HashSet::new(),
            relays: HashMap::new(),
            relay_member_count: (0, 0, 0),
            remote_addrs: HashMap::new(),
            remote_ips: HashMap::new(),
            fragments: super::fragments::Fragments::new(fragments),
            sync_refused: 0,
            undecryptable: 0,
            announced: HashMap::new(),
            unproven: HashMap::new(),
            bootstrap_peers: HashSet::new(),
            ip_offences: HashMap::new(),
            banned_ips: HashMap::new(),
            request_rate: HashMap::new(),
            listen_addrs: Vec::new(),
        };
        actor.dial_bootstrap();
        Ok(actor)
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        self.group = self.db.clone().map(|db| {
            crate::GroupCommit::spawn(move || db.flush().map_err(|e| e.to_string()), std::time::Duration::ZERO, |_| {})
        });
        let mut anti_entropy = tokio::time::interval(self.cfg.anti_entropy);
        let mut discovery = tokio::time::interval(self.cfg.discovery);
        anti_entropy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = self.rx.recv() => match cmd {
                    Some(c) => self.command(c),
                    None => break,
                },
                ev = self.swarm.select_next_some() => self.swarm_event(ev),
                _ = anti_entropy.tick() => self.anti_entropy(),
                _ = discovery.tick() => self.discover_all(),
            }
            // Group commit: take what else is ready, then flush once.
            for _ in 0..BATCH {
                if let Ok(c) = self.rx.try_recv() {
                    self.command(c);
                } else if let Some(Some(ev)) = self.swarm.next().now_or_never() {
                    self.swarm_event(ev);
                } else {
                    break;
                }
            }
            self.commit().await;
        }
        self.commit().await;
        for (id, r) in self.rooms.iter_mut() {
            if let Err(e) = r.room.flush() {
                warn!(room = %id, error = %e, "final flush failed");
            }
        }
        if let Some(db) = &self.db {
            db.flush()?;
        }
        info!("node stopped");
        Ok(())
    }

    /// Keeps the relay's member set current: every admitted, unrevoked member of a room we
    /// hold (recomputed only when the count of such members changed).
    pub(super) fn refresh_relay_members(&mut self) {
        if !self.cfg.behaviour.relay_server {
            return;
        }
        // Members are never removed from a ledger, nor revocations undone: rooms, members
        // and revoked members counted tell every change.
        let mut count = (self.rooms.len(), 0, 0);
        for s in self.rooms.values() {
            let ledger = s.room.ledger();
            for (k, _) in ledger.members() {
                count.1 += 1;
                count.2 += usize::from(ledger.is_revoked(k));
            }
        }
        if count == self.relay_member_count {
            return;
        }
        self.relay_member_count = count;
        let mut peers = HashSet::new();
        for s in self.rooms.values() {
            let ledger = s.room.ledger();
            peers.extend(
                ledger
                    .members()
                    .filter(|(k, _)| !ledger.is_revoked(k))
                    .filter_map(|(k, _)| crate::behaviour::peer_id_of(k)),
            );
        }
        self.cfg.behaviour.relay_members.set(peers);
    }

    /// Flushes every dirty room, then releases what waited for it.
    async fn commit(&mut self) {
        if !self.out.dirty.is_empty() {
            self.refresh_relay_members();
        }
        let mut failed = HashSet::new();
        let mut in_db = Vec::new();
        for id in std::mem::take(&mut self.out.dirty) {
            let Some(state) = self.rooms.get_mut(&id) else { continue };
            if self.group.is_some() && matches!(state.room.store(), crate::NodeStore::Sled(_)) {
                in_db.push(id);
            } else if let Err(e) = state.room.flush() {
                warn!(room = %id, error = %e, "flush failed: closing the room");
                failed.insert(id);
                let _ = self.events.send(NodeEvent::StoreFailed { room: id, error: e.to_string() });
            }
        }
        if let (Some(group), false) = (&self.group, in_db.is_empty()) {
            // One flush makes every room in the database durable.
            if let Err(e) = group.flush().await {
                for id in in_db {
                    warn!(room = %id, error = %e, "flush failed: closing the room");
                    failed.insert(id);
                    let _ = self.events.send(NodeEvent::StoreFailed { room: id, error: e.clone() });
                }
            }
        }
        for id in &failed {
            self.close_room(id);
        }
        let ok = |r: &Option<RoomId>| r.as_ref().is_none_or(|r| !failed.contains(r));
        let out = std::mem::take(&mut self.out);
        for (room, id, peer, acceptance) in out.validations {
            let acceptance = if ok(&room) { acceptance } else { MessageAcceptance::Ignore };
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &peer, acceptance);
        }
        for (room, msgs) in out.publish {
            if ok(&Some(room)) {
                self.publish(&room, &msgs);
            }
        }
        for (room, channel, resp) in out.responses {
            let resp = if ok(&room) {
                resp
            } else {
                SyncResponse { status: SyncStatus::Refused, more: false, frames: Vec::new() }
            };
            let _ = self.swarm.behaviour_mut().sync.send_response(channel, resp);
        }
        for (room, reply) in out.replies {
            match room {
                Some(r) if failed.contains(&r) => reply(Err(NodeError::Core(arena_core::CoreError::Store(format!(
                    "room {r}: flush failed, nothing acknowledged"
                ))))),
                _ => reply(Ok(())),
            }
        }
        for (room, e) in out.events {
            if ok(&room) {
                let _ = self.events.send(e);
            }
        }
    }

    /// Whether any connected peer is subscribed to `topic`. Gossipsub signs a message before
    /// it looks for peers, so publishing into an empty topic costs a signature for nothing
    /// (a bootstrap node's rooms mostly have no libp2p peers).
    pub(super) fn topic_has_peers(&self, topic: &gossipsub::TopicHash) -> bool {
        self.swarm.behaviour().gossipsub.all_peers().any(|(_, topics)| topics.contains(&topic))
    }

    /// Every connected peer subscribed to `topic`.
    pub(super) fn topic_peers(&self, topic: &gossipsub::TopicHash) -> Vec<PeerId> {
        self.swarm.behaviour().gossipsub.all_peers().filter(|(_, t)| t.contains(&topic)).map(|(p, _)| *p).collect()
    }

    /// Publishes `msgs` on the room's topic, each chunk sealed under the room's read key.
    pub(super) fn publish(&mut self, room: &RoomId, msgs: &[Wire]) {
        let Some(state) = self.rooms.get(room) else { return };
        let (topic, cipher) = (state.topic.clone(), state.cipher.clone());
        if !self.topic_has_peers(&topic.hash()) {
            // Nobody to tell: anti-entropy brings peers that subscribe later up to date.
            return;
        }
        for c in chunk(msgs, GOSSIP_CHUNK) {
            let sealed = match cipher.seal(&topic.hash(), &c) {
                Ok(s) => s,
                Err(e) => {
                    warn!(room = %room, error = %e, "sealing gossip");
                    return;
                }
            };
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic.clone(), sealed) {
                // No peer yet: anti-entropy delivers it.
                debug!(room = %room, error = %e, "gossip publish");
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join(spec, tx) => match self.join(spec) {
                Ok((id, info)) => self.out.reply(Some(id), tx, info),
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
            Command::Leave(id, tx) => {
                let r = match self.rooms.get_mut(&id) {
                    Some(s) => s.room.flush().map_err(NodeError::from),
                    None => Err(NodeError::NotJoined(id.to_hex())),
                };
                self.close_room(&id);
                let _ = tx.send(r);
            }
            Command::WithRoom { room, f, done } => self.with_room(room, f, done),
            Command::Ingest { room, msgs, done } => self.ingest(room, msgs, done),
            Command::ListenAddrs(tx) => {
                let _ = tx.send(self.listen_addrs.clone());
            }
            Command::Dial(addr, tx) => {
                let _ = tx.send(self.dial(addr));
            }
            Command::Partition(on, tx) => {
                self.partitioned = on;
                if on {
                    let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    for p in peers {
                        let _ = self.swarm.disconnect_peer_id(p);
                    }
                }
                let _ = tx.send(());
            }
            Command::SyncNow(tx) => {
                self.anti_entropy();
                let _ = tx.send(());
            }
            Command::Stats(tx) => {
                let _ = tx.send(self.stats());
            }
            Command::PublishPresence { room, update, done } => {
                let r = self.publish_presence(room, update);
                let _ = done.send(r);
            }
            Command::PublishRaw { room, data, done } => {
                let r = match self.rooms.get(&room) {
                    None => Err(NodeError::NotJoined(room.to_hex())),
                    Some(s) => {
                        let topic = s.topic.clone();
                        s.cipher.seal(&topic.hash(), &data).and_then(|sealed| {
                            self.swarm
                                .behaviour_mut()
                                .gossipsub
                                .publish(topic, sealed)
                                .map(|_| ())
                                .map_err(|e| NodeError::Transport(format!("publish: {e}")))
                        })
                    }
                };
                let _ = done.send(r);
            }
        }
    }

    fn with_room(&mut self, room: RoomId, f: super::RoomFn, done: oneshot::Sender<Result<()>>) {
        let me = self.cfg.identity.public();
        let Some(state) = self.rooms.get_mut(&room) else {
            let _ = done.send(Err(NodeError::NotJoined(room.to_hex())));
            return;
        };
        let before = state.room.ledger().head(&me).next_seq;
        f(&mut state.room, now_ms());
        let after = state.room.ledger().head(&me).next_seq;
        self.out.dirty.insert(room);
        if after > before {
            match state.room.store().author_envelopes(&me, before, (after - before) as usize) {
                Ok(envs) => {
                    self.out.publish.push((room, vec![Wire::Envelopes(envs.clone())]));
                    self.out.event(Some(room), NodeEvent::Applied { room, envelopes: envs, from: None });
                }
                Err(e) => warn!(room = %room, error = %e, "reading back our envelopes"),
            }
        }
        self.out.reply(Some(room), done, ());
    }

    fn ingest(&mut self, room: RoomId, msgs: Vec<Wire>, done: oneshot::Sender<Result<()>>) {
        let Some(state) = self.rooms.get_mut(&room) else {
            let _ = done.send(Err(NodeError::NotJoined(room.to_hex())));
            return;
        };
        let now = now_ms();
        let mut publish = Vec::new();
        let mut relay = Vec::new();
        let can_sign = state.room.can_proxy();
        for msg in msgs {
            if matches!(msg, Wire::Proxied { .. }) && !can_sign {
                // A stock client's update we cannot sign for: to the peers that can.
                relay.push(msg);
                continue;
            }
            // Admissions, revocations and delegations the room took go on to the peers as they came.
            let pass_on = match &msg {
                Wire::Admissions(_) | Wire::Revocations(_) | Wire::Delegations(_) => Some(msg.clone()),
                _ => None,
            };
            match state.room.handle(msg, now) {
                Ok((_, receipt)) => {
                    publish.extend(pass_on);
                    if !receipt.applied.is_empty() {
                        publish.push(Wire::Envelopes(receipt.applied.clone()));
                        self.out.event(Some(room), NodeEvent::Applied { room, envelopes: receipt.applied, from: None });
                    }
                }
                Err(e) => warn!(room = %room, error = %e, "bridged message refused"),
            }
        }
        self.out.dirty.insert(room);
        if !publish.is_empty() {
            self.out.publish.push((room, publish));
        }
        if !relay.is_empty() {
            self.relay_proxied(room, relay);
        }
        self.out.reply(Some(room), done, ());
    }

    pub(super) fn close_room(&mut self, id: &RoomId) {
        if let Some(state) = self.rooms.remove(id) {
            let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&state.topic);
            let _ = self.swarm.behaviour_mut().gossipsub.unsubscribe(&state.presence_topic);
            self.topics.remove(&state.topic.hash());
            self.topics.remove(&state.presence_topic.hash());
            self.swarm.behaviour_mut().kad.stop_providing(&crate::behaviour::provider_key(&state.read_key));
            self.announced.remove(id);
            self.fragments.forget_room(id);
        }
    }

    fn dial(&mut self, addr: Multiaddr) -> Result<()> {
        self.swarm
            .dial(addr.clone())
            .map_err(|e| NodeError::BadAddress { addr: addr.to_string(), reason: e.to_string() })
    }

    fn stats(&self) -> NodeStats {
        let gs = &self.swarm.behaviour().gossipsub;
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let mut peers = std::collections::BTreeMap::new();
        for p in connected.iter().chain(self.offences.keys()) {
            peers.insert(
                *p,
                PeerStats { offences: self.offences.get(p).copied().unwrap_or(0), score: gs.peer_score(p) },
            );
        }
        NodeStats {
            connected,
            peers,
            banned: self.banned.keys().copied().collect(),
            banned_ips: self.banned_ips.keys().copied().collect(),
            rooms: self
                .rooms
                .iter()
                .map(|(id, s)| {
                    let topic = s.topic.hash();
                    let gossip_peers = gs.all_peers().filter(|(_, t)| t.contains(&&topic)).map(|(p, _)| *p).collect();
                    (*id, RoomStats { log_len: s.room.store().log_len(), gossip_peers })
                })
                .collect(),
            fragments: self.fragments.stats(),
            sync_refused: self.sync_refused,
            gossip_undecryptable: self.undecryptable,
        }
    }

    pub(super) fn is_banned(&mut self, peer: &PeerId) -> bool {
        match self.banned.get(peer) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.banned.remove(peer);
                self.swarm.behaviour_mut().gossipsub.remove_blacklisted_peer(peer);
                false
            }
            None => false,
        }
    }

    /// Counts an offence against `peer` and lowers its score; past the limit it is
    /// disconnected and banned.
    pub(super) fn offence(&mut self, peer: PeerId, room: Option<RoomId>, reason: String) {
        let count = {
            let c = self.offences.entry(peer).or_default();
            *c += 1;
            *c
        };
        warn!(peer = %peer, room = ?room.map(|r| r.to_hex()), count, reason, "offence");
        self.swarm.behaviour_mut().gossipsub.set_application_score(&peer, -10.0 * f64::from(count));
        self.out.event(room, NodeEvent::Offence { peer, room, reason, count });
        let graylisted = self.swarm.behaviour().gossipsub.peer_score(&peer).is_some_and(|s| s < GRAYLIST);
        if let Some(ip) = self.remote_ips.get(&peer).copied() {
            self.ip_offence(ip);
        }
        if (count >= self.cfg.max_offences || graylisted) && !self.banned.contains_key(&peer) {
            self.banned.insert(peer, Instant::now() + self.cfg.ban);
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            self.out.event(None, NodeEvent::Banned { peer });
        }
    }

    /// Counts an offence against a remote IP; past the limit every peer on it is
    /// disconnected and new connections from it are refused for the ban's length.
    fn ip_offence(&mut self, ip: std::net::IpAddr) {
        if self.ip_offences.len() >= MAX_TRACKED_IPS && !self.ip_offences.contains_key(&ip) {
            self.ip_offences.clear();
        }
        let n = self.ip_offences.entry(ip).or_default();
        *n += 1;
        if *n < self.cfg.max_offences_per_ip {
            return;
        }
        self.ip_offences.remove(&ip);
        let now = Instant::now();
        if self.banned_ips.len() >= MAX_TRACKED_IPS {
            self.banned_ips.retain(|_, until| *until > now);
        }
        if self.banned_ips.len() < MAX_TRACKED_IPS {
            self.banned_ips.insert(ip, now + self.cfg.ban);
        }
        warn!(ip = %ip, "offences from too many peer ids on one IP: banned");
        let peers: Vec<PeerId> = self.remote_ips.iter().filter(|(_, i)| **i == ip).map(|(p, _)| *p).collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    fn ip_banned(&mut self, ip: &std::net::IpAddr) -> bool {
        match self.banned_ips.get(ip) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.banned_ips.remove(ip);
                false
            }
            None => false,
        }
    }

    fn swarm_event(&mut self, ev: SwarmEvent<ArenaBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(addr = %address, "listening");
                if self.cfg.announce_listen_addrs
                    && !address.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
                {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address.clone());
                self.out.event(None, NodeEvent::Listening { addr: address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.listen_addrs.retain(|a| a != &address),
            SwarmEvent::ListenerClosed { listener_id, reason, addresses } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                self.relay_listener_closed(listener_id, format!("{reason:?}"));
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                let ip = ip_of(endpoint.get_remote_address());
                if self.partitioned || self.is_banned(&peer_id) || ip.is_some_and(|ip| self.ip_banned(&ip)) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if endpoint.is_dialer() {
                    self.remote_addrs.insert(peer_id, endpoint.get_remote_address().clone());
                }
                if let Some(ip) = ip {
                    self.remote_ips.entry(peer_id).or_insert(ip);
                }
                if num_established.get() == 1 {
                    debug!(peer = %peer_id, "connected");
                    self.out.event(None, NodeEvent::PeerConnected { peer: peer_id });
                    let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
                    for r in rooms {
                        self.request_sync(peer_id, r);
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                debug!(peer = %peer_id, "disconnected");
                self.inflight_keys.retain(|(p, _)| p != &peer_id);
                self.request_rate.remove(&peer_id);
                self.remote_ips.remove(&peer_id);
                self.fragments.forget_peer(&peer_id);
                self.unproven.retain(|(publisher, _), p| *publisher != peer_id && p.asked != peer_id);
                self.out.event(None, NodeEvent::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::Behaviour(ev) => self.behaviour_event(ev),
            _ => {}
        }
    }

    fn behaviour_event(&mut self, ev: ArenaBehaviourEvent) {
        match ev {
            ArenaBehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                self.on_gossip(propagation_source, message_id, message);
            }
            ArenaBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic, .. }) => {
                // A subscription proves nothing (anyone who sees ours can copy it): we send
                // the peer no request (it names the room and carries our admission) until it
                // is a member. We announce our admission on the topic, sealed: a member
                // opens it, admits us and asks us for what it lacks, and its own
                // announcement does the same for us.
                if let Some(room) = self.topics.get(&topic).copied() {
                    if self.rooms.get(&room).is_some_and(|s| s.topic.hash() == topic) {
                        self.announce(room);
                    }
                    self.request_sync(peer_id, room);
                    self.relay_unrelayed(peer_id, room);
                }
            }
            ArenaBehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_sync_request(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    self.on_sync_response(peer, request_id, response)
                }
            },
            ArenaBehaviourEvent::Sync(request_response::Event::OutboundFailure { peer, request_id, error, .. }) => {
                debug!(peer = %peer, error = %error, "sync request failed");
                if let Some(key) = self.inflight.remove(&request_id) {
                    if self.relay_done(key.1, request_id, false) {
                        return;
                    }
                    self.inflight_keys.remove(&key);
                    self.proofs_settled(key.0, key.1);
                }
            }
            ArenaBehaviourEvent::Sync(request_response::Event::InboundFailure { peer, error, .. }) => {
                debug!(peer = %peer, error = %error, "sync request from peer failed");
                if let request_response::InboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.offence(peer, None, format!("malformed sync request: {e}"));
                    }
                }
            }
            ArenaBehaviourEvent::Identify(libp2p::identify::Event::Received { peer_id, info, .. }) => {
                self.on_identify(peer_id, info);
            }
            ArenaBehaviourEvent::Rendezvous(ev) => self.on_rendezvous(ev),
            ArenaBehaviourEvent::Kad(ev) => self.on_kad(ev),
            _ => {}
        }
    }

    fn anti_entropy(&mut self) {
        if self.partitioned {
            return;
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        let rooms: Vec<(RoomId, TopicHash)> = self.rooms.iter().map(|(id, s)| (*id, s.topic.hash())).collect();
        for (room, topic) in rooms {
            let mut peers: Vec<PeerId> = self
                .swarm
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&topic))
                .map(|(p, _)| *p)
                .collect();
            if peers.is_empty() {
                peers = connected.clone();
            }
            for p in peers {
                self.request_sync(p, room);
            }
            self.pump_relay(room);
        }
        let idle: Vec<PeerId> = self.relays.iter().filter(|(_, l)| l.is_none()).map(|(p, _)| *p).collect();
        for p in idle {
            self.listen_via_relay(p);
        }
    }
}

/// The IP address of a direct connection's remote end (`None` for a relayed one: its
/// address is the relay's).
fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    use libp2p::multiaddr::Protocol;
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

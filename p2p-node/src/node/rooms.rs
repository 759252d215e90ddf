//! Rooms inside the actor: joining, gossip validation, and `/arena/sync/1` catch-up.

use std::collections::BTreeMap;

use arena_core::sync::wire::{chunk, is_fragment, Reassembler, Wire, GOSSIP_CHUNK};
use arena_core::{Admission, CoreError, Invite, PeerKey, ReadKey, Room, RoomId, Store};
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::actor::{Actor, RoomState, Unproven};
use super::fragments::Dropped;
use super::{now_ms, JoinSpec, NodeEvent, RoomInfo};
use crate::behaviour::{
    peer_key, presence_topic_for, topic_for, topic_score_params, RoomCipher, SyncRequest, SyncResponse, SyncStatus,
};
use crate::error::{NodeError, Result};
use crate::recording::RecordingStore;
use crate::store::NodeStore;

/// Most relayed updates kept per room while no peer can sign them.
const MAX_UNRELAYED: usize = 1024;
/// Bytes of relayed updates sent in one request at most (a sync request may hold 4 MiB).
const RELAY_BATCH_BYTES: usize = 1 << 20;

/// Most publishers not (yet) known as members being waited on.
const MAX_UNPROVEN: usize = 4096;
/// Sync requests a peer may make per second (it has one in flight per room at a time).
const MAX_REQUESTS_PER_SEC: u32 = 200;
/// Envelope bytes per frame batch of a sync answer.
const ANSWER_BATCH: usize = 1 << 20;

impl Actor {
    pub(super) fn join(&mut self, spec: JoinSpec) -> Result<(RoomId, RoomInfo)> {
        let id = spec.room;
        if let Some(s) = self.rooms.get(&id) {
            return Ok((
                id,
                RoomInfo { room: id, role: s.room.role(), log_len: arena_core::Store::log_len(s.room.store()) },
            ));
        }
        let now = now_ms();
        let me = self.cfg.identity.clone();
        let store = match (&spec.recording, &self.db) {
            (Some(path), _) => NodeStore::Recording(Box::new(RecordingStore::open(path, id, me.clone(), now)?)),
            (None, Some(db)) => NodeStore::Sled(db.room(&id)?),
            (None, None) => NodeStore::Memory(arena_core::MemoryStore::new()),
        };
        let mut room = Room::open(id, me.clone(), 0, store, self.cfg.room.clone(), now)?;
        let read_key = self.read_key_for(&spec, room.role().is_some(), now)?;
        let mut announce = Vec::new();
        if room.role().is_none() {
            let token = spec
                .token
                .as_deref()
                .ok_or_else(|| NodeError::Core(CoreError::NotAllowed("joining needs an invite token".into())))?;
            let (adm, env) = room.join(token, &spec.name, now)?;
            announce.push(Wire::Admissions(vec![adm]));
            announce.extend(env.map(|e| Wire::Envelopes(vec![e])));
        } else if let Some(m) = room.ledger().member(&me.public()) {
            announce.push(Wire::Admissions(vec![m.admission.clone()]));
        }
        let topic = topic_for(&read_key);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&topic).map_err(|e| NodeError::Transport(format!("subscribe: {e}")))?;
        if let Err(e) = gs.set_topic_params(topic.clone(), topic_score_params()) {
            warn!(error = %e, "topic score params");
        }
        let info = RoomInfo { room: id, role: room.role(), log_len: arena_core::Store::log_len(room.store()) };
        info!(room = %id, role = ?info.role, log = info.log_len, "joined");
        let presence_topic = presence_topic_for(&read_key);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&presence_topic).map_err(|e| NodeError::Transport(format!("subscribe: {e}")))?;
        self.topics.insert(topic.hash(), id);
        self.topics.insert(presence_topic.hash(), id);
        let cipher = RoomCipher::new(&read_key);
        self.rooms.insert(
            id,
            RoomState {
                room,
                topic,
                presence_topic,
                read_key,
                cipher,
                unrelayed: Vec::new(),
                relaying: Vec::new(),
                relay_batch: Vec::new(),
                relay_delivered: false,
            },
        );
        self.out.dirty.insert(id);
        self.out.publish.push((id, announce));
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            self.request_sync(p, id);
        }
        self.discover_room(&id);
        Ok((id, info))
    }

    /// The read key of the room `spec` joins: from its token (kept in the data dir for a
    /// restart without one), else the one kept. A replica admitted before may come with a
    /// token that no longer checks (expired): the kept key serves then.
    fn read_key_for(&self, spec: &JoinSpec, admitted: bool, now: u64) -> Result<ReadKey> {
        let path = self.cfg.data_dir.as_ref().map(|d| d.join("read-keys").join(spec.room.to_hex()));
        if let Some(token) = spec.token.as_deref() {
            match Invite::from_token(token, &spec.room, now) {
                Ok(invite) => {
                    let key = invite.read_key();
                    if let Some(path) = &path {
                        let dir = path.parent().unwrap_or(path);
                        crate::create_private_dir(dir).map_err(|e| NodeError::io(dir, e))?;
                        crate::write_private_file(path, PeerKey(key.0).to_hex().as_bytes())
                            .map_err(|e| NodeError::io(path, e))?;
                    }
                    return Ok(key);
                }
                Err(e) if !admitted => return Err(e.into()),
                Err(e) => debug!(room = %spec.room, error = %e, "the token does not check; using the kept read key"),
            }
        }
        let no_key = || {
            NodeError::Core(CoreError::NotAllowed(
                "no read key for this room here: join with an invite token (it carries the key)".into(),
            ))
        };
        let Some(path) = path else { return Err(no_key()) };
        match std::fs::read_to_string(&path) {
            Ok(s) => PeerKey::from_hex(s.trim()).map(|k| ReadKey(k.0)).map_err(|_| NodeError::Recording {
                path: path.display().to_string(),
                reason: "not a 64-hex-digit read key".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(no_key()),
            Err(e) => Err(NodeError::io(&path, e)),
        }
    }

    /// Announces our admission on the room's topic (sealed: only members open it), at most
    /// once a second: a member that opens it admits us and asks us for what it lacks.
    pub(super) fn announce(&mut self, room: RoomId) {
        let now = std::time::Instant::now();
        if self.announced.get(&room).is_some_and(|t| now.duration_since(*t) < std::time::Duration::from_secs(1)) {
            return;
        }
        let Some(adm) = self.own_admission(&room) else { return };
        self.announced.insert(room, now);
        self.out.publish.push((room, vec![adm]));
    }

    /// A gossip message on one of our rooms' topics. It must open under the room's read key
    /// (see `behaviour/sealed.rs`); one that does not is dropped and counted, and is an
    /// offence of the peer that sent it only when that peer also published it: an arena
    /// node opens a message before it forwards it, and every holder of the read key opens
    /// the same messages, so a forwarded one that does not open was forwarded unchecked
    /// (by a peer that is not an arena member) and its signer is the one at fault, whom
    /// we may not be connected to. Only an admitted member's messages (its publisher,
    /// signed by gossipsub, is in the room's ledger) are then applied and forwarded; see
    /// [`Actor::not_a_member`] for the others.
    ///
    /// What a stranger subscribed to the room's topics still sees (gossipsub forwards to
    /// every subscriber; it cannot deliver to members only): the opaque topic names and
    /// who subscribes to them, each message's size, timing and publisher peer id (for an
    /// arena node, its member key). Not the room id, nor anything inside a message.
    pub(super) fn on_gossip(&mut self, source: PeerId, id: MessageId, mut msg: gossipsub::Message) {
        let Some(&room) = self.topics.get(&msg.topic) else {
            self.out.validate(None, id, source, MessageAcceptance::Ignore);
            return;
        };
        let publisher = msg.source.unwrap_or(source);
        let Some(opened) = self.rooms.get(&room).and_then(|s| s.cipher.open(&msg.topic, &msg.data)) else {
            self.undecryptable += 1;
            let verdict = if publisher == source {
                self.offence(source, Some(room), "gossip that does not open under the room's read key".into());
                MessageAcceptance::Reject
            } else {
                debug!(peer = %source, publisher = %publisher, room = %room, "forwarded gossip that does not open: dropped");
                MessageAcceptance::Ignore
            };
            self.out.validate(Some(room), id, source, verdict);
            return;
        };
        msg.data = opened;
        // Strict validation: every message is signed by its publisher.
        let member = self.is_member(&room, &publisher);
        if self.rooms.get(&room).is_some_and(|s| s.presence_topic.hash() == msg.topic) {
            // Blame goes to the peer that handed it over; the event names its author.
            let verdict = if member {
                self.on_presence(room, source, publisher, msg.data)
            } else {
                self.not_a_member(room, source, publisher, "presence")
            };
            self.out.validate(Some(room), id, source, verdict);
            return;
        }
        if is_fragment(&msg.data) {
            // A piece of a big message cannot be checked alone, so it is not forwarded;
            // peers further away get the envelope by catch-up.
            if !member {
                self.fragments.refused();
                let verdict = self.not_a_member(room, source, publisher, "fragment");
                self.out.validate(Some(room), id, source, verdict);
                return;
            }
            self.out.validate(Some(room), id, source, MessageAcceptance::Ignore);
            let ip = self.remote_ips.get(&source).copied();
            match self.fragments.push(room, publisher, ip, &msg.data) {
                Ok(Some(w)) => {
                    debug!(peer = %source, room = %room, "reassembled a fragmented gossip message");
                    self.apply(room, w, source);
                }
                Ok(None) => {}
                Err(Dropped::OverCap(cap)) => {
                    debug!(peer = %source, publisher = %publisher, room = %room, cap, "fragments over the cap dropped");
                }
                Err(Dropped::Malformed(e)) => debug!(peer = %source, room = %room, error = %e, "fragment dropped"),
            }
            return;
        }
        let verdict = match Wire::decode(&msg.data, room) {
            Ok(Wire::Admissions(adms)) if !member && !proves(&adms, &room, &publisher) => {
                self.not_a_member(room, source, publisher, "admissions")
            }
            // A member's admission (its first message) makes it one: ask it for what we lack.
            Ok(w @ Wire::Admissions(_)) => {
                let verdict = self.apply(room, w, source);
                if !member && self.is_member(&room, &publisher) {
                    self.request_sync(publisher, room);
                    self.relay_unrelayed(publisher, room);
                }
                verdict
            }
            Ok(Wire::Envelopes(_)) if !member => self.not_a_member(room, source, publisher, "envelopes"),
            Ok(w @ Wire::Envelopes(_)) => self.apply(room, w, source),
            // A host's removal of a member, live (the ledger checks who signed it).
            Ok(Wire::Revocations(_)) if !member => self.not_a_member(room, source, publisher, "revocations"),
            Ok(w @ Wire::Revocations(_)) => self.apply(room, w, source),
            Ok(_) => {
                self.offence(source, Some(room), "catch-up message on gossip".into());
                MessageAcceptance::Reject
            }
            Err(e) => {
                self.offence(source, Some(room), format!("undecodable gossip: {e}"));
                MessageAcceptance::Reject
            }
        };
        self.out.validate(Some(room), id, source, verdict);
    }

    /// Whether `peer`'s key is an admitted member of `room` in our ledger.
    pub(super) fn is_member(&self, room: &RoomId, peer: &PeerId) -> bool {
        let Some(key) = peer_key(peer) else { return false };
        self.rooms.get(room).is_some_and(|s| s.room.ledger().member(&key).is_some())
    }

    /// A room message whose publisher is not an admitted member in our ledger. It is never
    /// forwarded. It may be an honest member whose admission has not reached us yet (we
    /// joined after it announced itself, or its admission took another path): the first
    /// time, we ask the peer that sent it to catch us up and ignore the message. Once that
    /// peer has answered (or could not be asked) and the publisher is still no member, its
    /// messages are rejected, an offence of the peer that sent them (unless a member
    /// forwarded them: members validate before forwarding, so that is our ledger lagging).
    fn not_a_member(&mut self, room: RoomId, source: PeerId, publisher: PeerId, what: &str) -> MessageAcceptance {
        if self.unproven.len() >= MAX_UNPROVEN && !self.unproven.contains_key(&(publisher, room)) {
            self.unproven.retain(|_, p| !p.answered);
            if self.unproven.len() >= MAX_UNPROVEN {
                self.unproven.clear();
            }
        }
        match self.unproven.get(&(publisher, room)) {
            None => {
                let asked = self.request_sync(source, room);
                self.unproven.insert((publisher, room), Unproven { asked: source, answered: !asked });
                debug!(peer = %source, publisher = %publisher, room = %room, what, "message of an unknown publisher; catching up");
                MessageAcceptance::Ignore
            }
            Some(p) if !p.answered => MessageAcceptance::Ignore,
            Some(_) if source != publisher && self.is_member(&room, &source) => MessageAcceptance::Ignore,
            Some(_) => {
                self.offence(source, Some(room), format!("{what} of {publisher}, not a member of the room"));
                MessageAcceptance::Reject
            }
        }
    }

    /// A sync exchange with `peer` about `room` ended: publishers we were waiting to learn
    /// about from it are members now, or strangers.
    pub(super) fn proofs_settled(&mut self, peer: PeerId, room: RoomId) {
        let pending: Vec<PeerId> = self
            .unproven
            .iter()
            .filter(|((_, r), p)| *r == room && p.asked == peer && !p.answered)
            .map(|((publisher, _), _)| *publisher)
            .collect();
        for publisher in pending {
            if self.is_member(&room, &publisher) {
                self.unproven.remove(&(publisher, room));
            } else if let Some(p) = self.unproven.get_mut(&(publisher, room)) {
                p.answered = true;
            }
        }
    }

    /// A presence update from the network: checked for shape and size (it is unsigned, like
    /// y-protocols awareness), kept by a recorder, reported.
    fn on_presence(&mut self, room: RoomId, peer: PeerId, author: PeerId, data: Vec<u8>) -> MessageAcceptance {
        let update = match crate::presence::decode(&data) {
            Ok(u) => u,
            Err(e) => {
                self.offence(peer, Some(room), format!("bad presence update: {e}"));
                return MessageAcceptance::Reject;
            }
        };
        let Some(state) = self.rooms.get_mut(&room) else { return MessageAcceptance::Ignore };
        if let crate::store::NodeStore::Recording(r) = state.room.store_mut() {
            if let Err(e) = r.record_awareness(now_ms(), &crate::presence::to_json(&update)) {
                warn!(room = %room, error = %e, "recording presence");
            }
            self.out.dirty.insert(room);
        }
        self.out.event(Some(room), NodeEvent::Presence { room, update: data, from: author });
        MessageAcceptance::Accept
    }

    /// Publishes one of our (or our bridge's clients') awareness updates.
    pub(super) fn publish_presence(&mut self, room: RoomId, update: Vec<u8>) -> Result<()> {
        crate::presence::decode(&update)
            .map_err(|e| NodeError::Core(CoreError::Malformed { what: "awareness", reason: e }))?;
        let state = self.rooms.get(&room).ok_or_else(|| NodeError::NotJoined(room.to_hex()))?;
        let topic = state.presence_topic.clone();
        if !self.topic_has_peers(&topic.hash()) {
            return Ok(());
        }
        let sealed = state.cipher.seal(&topic.hash(), &update)?;
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, sealed) {
            // No peer subscribed yet: presence is refreshed every few seconds anyway.
            debug!(room = %room, error = %e, "presence publish");
        }
        Ok(())
    }

    /// Applies envelopes or admissions from `peer` to `room`; returns how gossipsub should
    /// treat the message that carried them. Invalid content is an offence of `peer`.
    pub(super) fn apply(&mut self, room: RoomId, wire: Wire, peer: PeerId) -> MessageAcceptance {
        let now = now_ms();
        let Some(state) = self.rooms.get_mut(&room) else { return MessageAcceptance::Ignore };
        match wire {
            Wire::Envelopes(envs) => {
                let receipt = match state.room.receive(envs, now) {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(room = %room, error = %e, "applying envelopes failed");
                        return MessageAcceptance::Ignore;
                    }
                };
                self.out.dirty.insert(room);
                let mut offences = Vec::new();
                let mut unknown = false;
                for (author, err) in &receipt.rejected {
                    if state.room.ledger().member(author).is_none() {
                        // Its admission has not reached us yet: not the sender's fault.
                        unknown = true;
                    } else {
                        offences.push(format!("envelope of {}: {err}", &author.to_hex()[..12]));
                    }
                }
                // Stock updates relayed to us may have waited for these.
                let signed = if receipt.applied.is_empty() || state.room.waiting_relayed() == 0 {
                    Vec::new()
                } else {
                    state.room.retry_relayed(now).unwrap_or_else(|e| {
                        warn!(room = %room, error = %e, "signing relayed updates");
                        Vec::new()
                    })
                };
                if !receipt.applied.is_empty() {
                    self.out.event(
                        Some(room),
                        NodeEvent::Applied { room, envelopes: receipt.applied.clone(), from: Some(peer) },
                    );
                }
                if !signed.is_empty() {
                    self.out.publish.push((room, vec![Wire::Envelopes(signed.clone())]));
                    self.out.event(Some(room), NodeEvent::Applied { room, envelopes: signed, from: Some(peer) });
                }
                if receipt.needs_catch_up || unknown {
                    self.request_sync(peer, room);
                }
                if !offences.is_empty() {
                    self.offence(peer, Some(room), offences.join("; "));
                    MessageAcceptance::Reject
                } else if !receipt.applied.is_empty() || receipt.duplicates > 0 {
                    MessageAcceptance::Accept
                } else {
                    MessageAcceptance::Ignore
                }
            }
            Wire::Admissions(adms) => {
                let mut bad = Vec::new();
                let mut new = Vec::new();
                for a in adms {
                    match state.room.admit(&a, None) {
                        Ok(true) => new.push(a),
                        Ok(false) => {}
                        Err(e) => bad.push(format!("admission of {}: {e}", &a.member.to_hex()[..12])),
                    }
                }
                if !new.is_empty() {
                    self.out.dirty.insert(room);
                }
                for a in new {
                    self.out.event(
                        Some(room),
                        NodeEvent::Admitted { room, member: a.member, role: a.grant.role, name: a.name.clone() },
                    );
                }
                if bad.is_empty() {
                    MessageAcceptance::Accept
                } else {
                    self.offence(peer, Some(room), bad.join("; "));
                    MessageAcceptance::Reject
                }
            }
            Wire::Revocations(revs) => {
                let mut bad = Vec::new();
                let mut new = Vec::new();
                for r in revs {
                    match state.room.apply_revocation(&r) {
                        Ok(true) => new.push(r),
                        Ok(false) => {}
                        Err(e) => bad.push(format!("revocation of {}: {e}", &r.target.to_hex()[..12])),
                    }
                }
                if !new.is_empty() {
                    self.out.dirty.insert(room);
                    self.out.event(Some(room), NodeEvent::Revoked { room, revocations: new, from: peer });
                }
                if bad.is_empty() {
                    MessageAcceptance::Accept
                } else {
                    self.offence(peer, Some(room), bad.join("; "));
                    MessageAcceptance::Reject
                }
            }
            Wire::Delegations(ds) => {
                let receipt = match state.room.handle(Wire::Delegations(ds), now) {
                    Ok((_, r)) => r,
                    Err(e) => {
                        warn!(room = %room, error = %e, "applying delegations failed");
                        return MessageAcceptance::Ignore;
                    }
                };
                self.out.dirty.insert(room);
                if !receipt.applied.is_empty() {
                    // Envelopes that waited for one of these delegations.
                    self.out.event(
                        Some(room),
                        NodeEvent::Applied { room, envelopes: receipt.applied.clone(), from: Some(peer) },
                    );
                }
                let bad: Vec<String> = receipt
                    .rejected
                    .iter()
                    .map(|(key, e)| format!("delegation or envelope {}: {e}", &key.to_hex()[..12]))
                    .collect();
                if bad.is_empty() {
                    MessageAcceptance::Accept
                } else {
                    self.offence(peer, Some(room), bad.join("; "));
                    MessageAcceptance::Reject
                }
            }
            Wire::Want(_) | Wire::Checkpoint(_) | Wire::Proxied { .. } | Wire::WantHistory(_) | Wire::History(_) => {
                MessageAcceptance::Ignore
            }
        }
    }

    /// A signed checkpoint in a sync answer: a late joiner starts from it. False when it was
    /// refused (forged, or we hold part of what it covers): the rest of that answer is
    /// dropped and the sender penalised.
    fn adopt(&mut self, room: RoomId, wire: Wire, peer: PeerId) -> bool {
        let now = now_ms();
        let Some(state) = self.rooms.get_mut(&room) else { return false };
        let before = state.room.store().checkpoints().map(|c| c.len()).unwrap_or(0);
        match state.room.handle(wire, now) {
            Ok((replies, receipt)) => {
                let adopted = state.room.store().checkpoints().map(|c| c.len()).unwrap_or(0) != before;
                // Then the history before the checkpoint, from the same peer.
                let history: Vec<Wire> = replies.into_iter().filter(|w| matches!(w, Wire::WantHistory(_))).collect();
                if !history.is_empty() {
                    self.history_asked.insert((peer, room));
                    self.send_sync(peer, room, history);
                }
                self.out.dirty.insert(room);
                if adopted {
                    debug!(peer = %peer, room = %room, "started from a checkpoint");
                    self.out.event(Some(room), NodeEvent::CheckpointAdopted { room, from: peer });
                }
                if !receipt.applied.is_empty() {
                    self.out
                        .event(Some(room), NodeEvent::Applied { room, envelopes: receipt.applied, from: Some(peer) });
                }
                true
            }
            Err(e) => {
                self.offence(peer, Some(room), format!("checkpoint refused: {e}"));
                false
            }
        }
    }

    /// Sends `msgs` to `peer` as one sync request (a [`Wire::WantHistory`], relayed stock
    /// updates) unless we are partitioned, it is banned or gone. Not counted as the one
    /// catch-up request in flight: it runs beside catch-up.
    fn send_sync(&mut self, peer: PeerId, room: RoomId, msgs: Vec<Wire>) {
        if self.partitioned || self.is_banned(&peer) || !self.swarm.is_connected(&peer) {
            return;
        }
        let msgs: Vec<Wire> = self.own_admission(&room).into_iter().chain(msgs).collect();
        let frames = chunk(&msgs, GOSSIP_CHUNK);
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, SyncRequest { room, frames });
        self.inflight.insert(id, (peer, room));
    }

    /// Old envelopes answering our `WantHistory`: checked by hash chain and logged; a
    /// broken chain is an offence of the sender. Asks on while history is missing.
    fn backfill(&mut self, room: RoomId, wire: Wire, peer: PeerId) {
        let now = now_ms();
        let Some(state) = self.rooms.get_mut(&room) else { return };
        match state.room.handle(wire, now) {
            Ok((replies, receipt)) => {
                self.out.dirty.insert(room);
                if !receipt.rejected.is_empty() {
                    let why: Vec<String> =
                        receipt.rejected.iter().map(|(a, e)| format!("history of {a}: {e}")).collect();
                    self.offence(peer, Some(room), why.join("; "));
                } else if !replies.is_empty() {
                    self.send_sync(peer, room, replies);
                }
            }
            Err(e) => warn!(room = %room, error = %e, "storing history failed"),
        }
    }

    /// Asks `peer` for what we lack in `room` (one request in flight per peer and room);
    /// true when a request is on its way. Our admission goes first (the peer serves only
    /// members). Only to a peer that has a part in the room: a known member or one of our
    /// bootstrap nodes (which may host it); never to a mere subscriber of the room's topic
    /// (anyone can subscribe to a topic it saw announced): a request names the room, our
    /// admission our key and name, and our envelope vector the authors.
    pub(super) fn request_sync(&mut self, peer: PeerId, room: RoomId) -> bool {
        if self.inflight_keys.contains(&(peer, room)) {
            return true;
        }
        if self.partitioned || self.is_banned(&peer) || !self.swarm.is_connected(&peer) || !self.may_ask(peer, room) {
            return false;
        }
        let Some(state) = self.rooms.get(&room) else { return false };
        let mut msgs = self.own_admission(&room).into_iter().collect::<Vec<_>>();
        msgs.push(state.room.want());
        // History before a checkpoint we started from that has not arrived yet (we were
        // stopped during the backfill, or the peer we asked lacked it): ask this peer once.
        let history = if self.history_asked.contains(&(peer, room)) {
            None
        } else {
            state.room.want_history().unwrap_or_else(|e| {
                warn!(room = %room, error = %e, "reading the history floor");
                None
            })
        };
        let frames = chunk(&msgs, GOSSIP_CHUNK);
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, SyncRequest { room, frames });
        self.inflight.insert(id, (peer, room));
        self.inflight_keys.insert((peer, room));
        if let Some(w) = history {
            self.history_asked.insert((peer, room));
            self.send_sync(peer, room, vec![w]);
        }
        true
    }

    /// Whether `peer` may be sent requests about `room` (see [`Actor::request_sync`]).
    fn may_ask(&self, peer: PeerId, room: RoomId) -> bool {
        self.is_member(&room, &peer) || self.bootstrap_peers.contains(&peer)
    }

    /// Our admission to `room`, as the proof of membership our requests start with.
    fn own_admission(&self, room: &RoomId) -> Option<Wire> {
        let me = self.cfg.identity.public();
        let state = self.rooms.get(room)?;
        state.room.ledger().member(&me).map(|m| Wire::Admissions(vec![m.admission.clone()]))
    }

    /// A `/arena/sync/1` request. Served only to a member: the requester's peer id (which
    /// noise authenticated) is the key of an admitted member of the room, or the request
    /// carries that key's admission (checked against our clock), which we then admit.
    /// Anyone else gets a bare refusal: no admissions, no envelopes, nothing applied or
    /// signed; and a request for a room we do not hold is reported (`RoomWanted`, on which
    /// a bootstrap node joins a room it hosts) only when it proves membership.
    pub(super) fn on_sync_request(&mut self, peer: PeerId, req: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        let room = req.room;
        let refuse = |status| SyncResponse { status, more: false, frames: Vec::new() };
        if self.flooding(peer) {
            self.out.responses.push((None, channel, refuse(SyncStatus::Refused)));
            return;
        }
        let mut link = Reassembler::new();
        let mut msgs = Vec::new();
        for f in &req.frames {
            match link.push(f, room) {
                Ok(None) => {}
                Ok(Some(Wire::Checkpoint(_) | Wire::History(_))) => {
                    self.offence(peer, Some(room), "checkpoint or history in a sync request".into());
                    self.out.responses.push((None, channel, refuse(SyncStatus::Refused)));
                    return;
                }
                Ok(Some(w)) => msgs.push(w),
                Err(e) => {
                    self.offence(peer, Some(room), format!("malformed sync request: {e}"));
                    self.out.responses.push((None, channel, refuse(SyncStatus::Refused)));
                    return;
                }
            }
        }
        let proof = msgs.iter().find_map(|w| match w {
            Wire::Admissions(adms) => proved_by(adms, &room, &peer).cloned(),
            _ => None,
        });
        if !self.rooms.contains_key(&room) {
            if proof.is_some() {
                self.out.event(None, NodeEvent::RoomWanted { room, from: peer });
            } else {
                self.sync_refused += 1;
                debug!(peer = %peer, room = %room, "sync request for a room we lack, without proof");
            }
            self.out.responses.push((None, channel, refuse(SyncStatus::UnknownRoom)));
            return;
        }
        if !self.is_member(&room, &peer) {
            let Some(adm) = proof else {
                self.sync_refused += 1;
                debug!(peer = %peer, room = %room, "sync request from a peer that is not a member: refused");
                self.out.responses.push((None, channel, refuse(SyncStatus::Refused)));
                return;
            };
            // Admitted now (with the rest of its admissions, below).
            self.apply(room, Wire::Admissions(vec![adm]), peer);
        }
        self.relay_unrelayed(peer, room);
        let mut want = None;
        let mut want_history = None;
        let mut unsigned = false;
        for msg in msgs {
            match msg {
                Wire::Want(have) => want = Some(have),
                Wire::WantHistory(below) => want_history = Some(below),
                Wire::Proxied { grant, update, signature, delegation } => {
                    let d = arena_core::Delegation { grant: *grant, signature: delegation };
                    unsigned |= !self.sign_relayed(room, peer, &d, &signature, &update)
                }
                w @ (Wire::Admissions(_) | Wire::Envelopes(_) | Wire::Revocations(_) | Wire::Delegations(_)) => {
                    self.apply(room, w, peer);
                }
                Wire::Checkpoint(_) | Wire::History(_) => {}
            }
        }
        // The requester holds envelopes we lack: ask it back (after answering).
        if want.as_ref().is_some_and(|have| self.rooms.get(&room).is_some_and(|s| s.room.lacks_from(have))) {
            self.request_sync(peer, room);
        }
        let resp = match (want, want_history) {
            (Some(have), _) => self.answer(&room, &have).unwrap_or_else(|e| {
                warn!(room = %room, error = %e, "answering a sync request");
                refuse(SyncStatus::Refused)
            }),
            (None, Some(below)) => self.answer_history(&room, &below).unwrap_or_else(|e| {
                warn!(room = %room, error = %e, "answering a history request");
                refuse(SyncStatus::Refused)
            }),
            (None, None) if unsigned => refuse(SyncStatus::Refused),
            (None, None) => SyncResponse { status: SyncStatus::Ok, more: false, frames: Vec::new() },
        };
        self.out.responses.push((Some(room), channel, resp));
    }

    /// A stock client's update relayed by a node that cannot sign for it: signed by us when
    /// we hold the room's proxy grant and the relay's voucher (signed by the client's invite
    /// key) checks out for a role that may write, then applied, reported and gossiped like
    /// our own. False when we did not sign it (not an offence: the relaying node asks every
    /// peer of the room, and only the room's home node signs).
    fn sign_relayed(
        &mut self,
        room: RoomId,
        peer: PeerId,
        delegation: &arena_core::Delegation,
        signature: &[u8; 64],
        update: &[u8],
    ) -> bool {
        let now = now_ms();
        let Some(state) = self.rooms.get_mut(&room) else { return false };
        // The envelope names the client's delegation: it goes out first, once, if new.
        let new = state.room.can_proxy() && state.room.delegate_live(delegation, now).unwrap_or(false);
        match state.room.proxy_for(&delegation.grant, signature, update, now) {
            Ok(envs) if envs.is_empty() => {
                if new {
                    self.out.dirty.insert(room);
                    self.out.publish.push((room, vec![Wire::Delegations(vec![delegation.clone()])]));
                }
                true
            }
            Ok(envs) => {
                self.out.dirty.insert(room);
                let mut msgs = Vec::new();
                if new {
                    msgs.push(Wire::Delegations(vec![delegation.clone()]));
                }
                msgs.push(Wire::Envelopes(envs.clone()));
                self.out.publish.push((room, msgs));
                self.out.event(Some(room), NodeEvent::Applied { room, envelopes: envs, from: Some(peer) });
                true
            }
            Err(e) => {
                debug!(peer = %peer, room = %room, error = %e, "relayed update not signed");
                false
            }
        }
    }

    /// A peer may now sign what waits to be relayed (it joined the room, or became a
    /// member): send it on.
    pub(super) fn relay_unrelayed(&mut self, _peer: PeerId, room: RoomId) {
        self.pump_relay(room);
    }

    /// Queues stock clients' updates we cannot sign for (the room's home node signs them;
    /// the envelopes come back over gossip) and sends them on (see [`Actor::pump_relay`]).
    /// Bounded: past [`MAX_UNRELAYED`] the oldest are dropped, loudly.
    pub(super) fn relay_proxied(&mut self, room: RoomId, msgs: Vec<Wire>) {
        let Some(state) = self.rooms.get_mut(&room) else { return };
        state.unrelayed.extend(msgs);
        if state.unrelayed.len() > MAX_UNRELAYED {
            let over = state.unrelayed.len() - MAX_UNRELAYED;
            state.unrelayed.drain(..over);
            warn!(room = %room, dropped = over, "no peer to sign relayed updates; dropped the oldest");
        }
        self.pump_relay(room);
    }

    /// Sends what waits to be relayed, as one request to every connected member of the
    /// room that subscribes to its topic (never to a mere subscriber: a voucher names a
    /// grant), unless a relay is in flight: one at a time per room, so that the home node
    /// receives a client's updates in order and a burst of keystrokes does not exhaust the
    /// peer's stream limit. A relay that no peer received goes back to the front of the
    /// queue (see [`Actor::relay_done`]); the anti-entropy tick tries again.
    pub(super) fn pump_relay(&mut self, room: RoomId) {
        if self.partitioned {
            return;
        }
        let Some(state) = self.rooms.get(&room) else { return };
        if state.unrelayed.is_empty() || !state.relaying.is_empty() {
            return;
        }
        let kept = state.unrelayed.len();
        let mut peers = self.topic_peers(&state.topic.hash());
        peers.retain(|p| self.is_member(&room, p) && self.swarm.is_connected(p));
        peers.retain(|p| !self.is_banned(p));
        if peers.is_empty() {
            debug!(room = %room, kept, "no peer to sign relayed updates yet; kept");
            return;
        }
        let Some(state) = self.rooms.get_mut(&room) else { return };
        // At most RELAY_BATCH_BYTES a request (one update at least), below the peer's limit.
        let mut bytes = 0;
        let n = state
            .unrelayed
            .iter()
            .take_while(|w| {
                bytes += w.encode().len();
                bytes <= RELAY_BATCH_BYTES
            })
            .count()
            .max(1);
        let batch: Vec<Wire> = state.unrelayed.drain(..n).collect();
        let msgs: Vec<Wire> = self.own_admission(&room).into_iter().chain(batch.iter().cloned()).collect();
        let frames = chunk(&msgs, GOSSIP_CHUNK);
        let mut ids = Vec::new();
        for p in peers {
            let id = self.swarm.behaviour_mut().sync.send_request(&p, SyncRequest { room, frames: frames.clone() });
            self.inflight.insert(id, (p, room));
            ids.push(id);
        }
        if let Some(state) = self.rooms.get_mut(&room) {
            state.relaying = ids;
            state.relay_batch = batch;
            state.relay_delivered = false;
        }
    }

    /// A relay request ended (`delivered`: the peer answered it). When the last of a
    /// batch's requests has ended and none was delivered, the batch goes back to the front
    /// of the queue; otherwise the next batch goes.
    pub(super) fn relay_done(&mut self, room: RoomId, id: OutboundRequestId, delivered: bool) -> bool {
        let Some(state) = self.rooms.get_mut(&room) else { return false };
        let Some(i) = state.relaying.iter().position(|r| *r == id) else { return false };
        state.relaying.swap_remove(i);
        state.relay_delivered |= delivered;
        if !state.relaying.is_empty() {
            return true;
        }
        let batch = std::mem::take(&mut state.relay_batch);
        if !state.relay_delivered {
            debug!(room = %room, updates = batch.len(), "relay not delivered; kept for the next try");
            let rest = std::mem::replace(&mut state.unrelayed, batch);
            state.unrelayed.extend(rest);
            return true;
        }
        self.pump_relay(room);
        true
    }

    /// Counts a sync request of `peer`; past [`MAX_REQUESTS_PER_SEC`] it is refused, and
    /// the first refusal of each second is an offence.
    fn flooding(&mut self, peer: PeerId) -> bool {
        let now = std::time::Instant::now();
        let e = self.request_rate.entry(peer).or_insert((now, 0));
        if now.duration_since(e.0) >= std::time::Duration::from_secs(1) {
            *e = (now, 0);
        }
        e.1 += 1;
        let n = e.1;
        if n == MAX_REQUESTS_PER_SEC + 1 {
            self.offence(peer, None, format!("more than {MAX_REQUESTS_PER_SEC} sync requests in a second"));
        }
        n > MAX_REQUESTS_PER_SEC
    }

    /// Admissions and the envelopes `have` lacks, in log order, cut at
    /// [`super::NodeConfig::max_answer_bytes`] (marked "more": the requester asks on).
    fn answer(&self, room: &RoomId, have: &BTreeMap<PeerKey, u64>) -> Result<SyncResponse> {
        let state = self.rooms.get(room).ok_or_else(|| NodeError::NotJoined(room.to_hex()))?;
        let mut frames = Vec::new();
        let mut more = false;
        for msg in state.room.answer(have)? {
            let Wire::Envelopes(envs) = msg else {
                frames.extend(chunk(&[msg], GOSSIP_CHUNK));
                continue;
            };
            more = envs.len() >= self.cfg.room.max_catch_up;
            let (mut total, mut size) = (0usize, 0usize);
            let mut batch = Vec::new();
            for e in envs {
                let len = e.update.len() + 160;
                // Cut in log order (so each author's run is a prefix); at least one goes.
                if total > 0 && total + len > self.cfg.max_answer_bytes {
                    more = true;
                    break;
                }
                total += len;
                size += len;
                batch.push(e);
                if size >= ANSWER_BATCH {
                    frames.extend(chunk(&[Wire::Envelopes(std::mem::take(&mut batch))], GOSSIP_CHUNK));
                    size = 0;
                }
            }
            if !batch.is_empty() {
                frames.extend(chunk(&[Wire::Envelopes(batch)], GOSSIP_CHUNK));
            }
        }
        Ok(SyncResponse { status: SyncStatus::Ok, more, frames })
    }

    /// The history a `WantHistory` asks for, cut at the byte budget (the requester asks on
    /// from where the answer ends).
    fn answer_history(&self, room: &RoomId, below: &BTreeMap<PeerKey, u64>) -> Result<SyncResponse> {
        let state = self.rooms.get(room).ok_or_else(|| NodeError::NotJoined(room.to_hex()))?;
        let mut frames = Vec::new();
        for msg in state.room.answer_history(below)? {
            let Wire::History(envs) = msg else { continue };
            // Each author's run must reach down from the seq asked for: cut from the bottom.
            let mut total = 0usize;
            let mut runs: BTreeMap<PeerKey, Vec<arena_core::Envelope>> = BTreeMap::new();
            for e in envs {
                runs.entry(e.author).or_default().push(e);
            }
            let mut keep = Vec::new();
            for (_, run) in runs {
                let mut taken = Vec::new();
                for e in run.into_iter().rev() {
                    let len = e.update.len() + 160;
                    if total > 0 && total + len > self.cfg.max_answer_bytes {
                        break;
                    }
                    total += len;
                    taken.push(e);
                }
                taken.reverse();
                keep.extend(taken);
            }
            for part in keep.chunks(ANSWER_BATCH / 256) {
                frames.extend(chunk(&[Wire::History(part.to_vec())], GOSSIP_CHUNK));
            }
        }
        Ok(SyncResponse { status: SyncStatus::Ok, more: false, frames })
    }

    pub(super) fn on_sync_response(&mut self, peer: PeerId, request_id: OutboundRequestId, resp: SyncResponse) {
        let Some((_, room)) = self.inflight.remove(&request_id) else { return };
        // A relay: delivered unless the peer lacks the room (its home node joins it on
        // that request, and the relay goes again).
        if self.relay_done(room, request_id, resp.status != SyncStatus::UnknownRoom) {
            self.answer_in(peer, room, resp);
            return;
        }
        self.inflight_keys.remove(&(peer, room));
        if resp.status == SyncStatus::Ok {
            // A relay that answers us holds us as a member now: it serves our reservation.
            self.listen_via_relay(peer);
        }
        self.answer_in(peer, room, resp);
        self.proofs_settled(peer, room);
        // Its answer may have made it a member: what waited for a member to sign it goes.
        self.relay_unrelayed(peer, room);
    }

    fn answer_in(&mut self, peer: PeerId, room: RoomId, resp: SyncResponse) {
        if resp.status != SyncStatus::Ok {
            debug!(peer = %peer, room = %room, status = ?resp.status, "sync refused");
            return;
        }
        let mut link = Reassembler::new();
        let mut history = Vec::new();
        for f in &resp.frames {
            match link.push(f, room) {
                Ok(None) => {}
                Ok(Some(
                    w @ (Wire::Admissions(_) | Wire::Envelopes(_) | Wire::Revocations(_) | Wire::Delegations(_)),
                )) => {
                    self.apply(room, w, peer);
                }
                Ok(Some(w @ Wire::Checkpoint(_))) => {
                    if !self.adopt(room, w, peer) {
                        return;
                    }
                }
                // Chunked into many messages: checked as one run, after the loop.
                Ok(Some(Wire::History(envs))) => history.extend(envs),
                Ok(Some(Wire::Want(_) | Wire::Proxied { .. } | Wire::WantHistory(_))) => {}
                Err(e) => {
                    self.offence(peer, Some(room), format!("malformed sync answer: {e}"));
                    return;
                }
            }
        }
        if !history.is_empty() {
            self.backfill(room, Wire::History(history), peer);
        }
        if resp.more {
            self.request_sync(peer, room);
        }
    }
}

/// The admission in `adms` that proves `peer` a member of `room`: its own (the key behind
/// its peer id), valid for the room and not expired by our clock.
fn proved_by<'a>(adms: &'a [Admission], room: &RoomId, peer: &PeerId) -> Option<&'a Admission> {
    let key = peer_key(peer)?;
    let now = now_ms();
    adms.iter().find(|a| a.member == key && a.verify(room, Some(now)).is_ok())
}

/// Whether `adms` holds `peer`'s own valid admission to `room`.
fn proves(adms: &[Admission], room: &RoomId, peer: &PeerId) -> bool {
    proved_by(adms, room, peer).is_some()
}

//! Rooms inside the actor: joining, gossip validation, and `/arena/sync/1` catch-up.

use std::collections::BTreeMap;

use arena_core::sync::wire::{chunk, is_fragment, Reassembler, Wire, GOSSIP_CHUNK};
use arena_core::{CoreError, PeerKey, Room, RoomId, Store};
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::actor::{Actor, RoomState};
use super::{now_ms, JoinSpec, NodeEvent, RoomInfo};
use crate::behaviour::{
    presence_topic_for, topic_for, topic_score_params, SyncRequest, SyncResponse, SyncStatus, MAX_RESPONSE,
};
use crate::error::{NodeError, Result};
use crate::recording::RecordingStore;
use crate::store::NodeStore;

/// Most relayed updates kept per room while no peer can sign them.
const MAX_UNRELAYED: usize = 1024;

/// Most publishers whose fragmented messages are being reassembled per room.
const MAX_LINKS: usize = 64;
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
        let topic = topic_for(&id);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&topic).map_err(|e| NodeError::Transport(format!("subscribe: {e}")))?;
        if let Err(e) = gs.set_topic_params(topic.clone(), topic_score_params()) {
            warn!(error = %e, "topic score params");
        }
        let info = RoomInfo { room: id, role: room.role(), log_len: arena_core::Store::log_len(room.store()) };
        info!(room = %id, role = ?info.role, log = info.log_len, "joined");
        let presence_topic = presence_topic_for(&id);
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        gs.subscribe(&presence_topic).map_err(|e| NodeError::Transport(format!("subscribe: {e}")))?;
        self.topics.insert(topic.hash(), id);
        self.topics.insert(presence_topic.hash(), id);
        self.rooms
            .insert(id, RoomState { room, topic, presence_topic, links: Default::default(), unrelayed: Vec::new() });
        self.out.dirty.insert(id);
        self.out.publish.push((id, announce));
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            self.request_sync(p, id);
        }
        self.discover_room(&id);
        Ok((id, info))
    }

    pub(super) fn on_gossip(&mut self, source: PeerId, id: MessageId, msg: gossipsub::Message) {
        let Some(&room) = self.topics.get(&msg.topic) else {
            self.out.validate(None, id, source, MessageAcceptance::Ignore);
            return;
        };
        if self.rooms.get(&room).is_some_and(|s| s.presence_topic.hash() == msg.topic) {
            // Blame goes to the peer that handed it over; the event names its author
            // (gossipsub signs every message, so `source` is checked).
            let author = msg.source.unwrap_or(source);
            let verdict = self.on_presence(room, source, author, msg.data);
            self.out.validate(Some(room), id, source, verdict);
            return;
        }
        if is_fragment(&msg.data) {
            // A piece of a big message cannot be checked alone, so it is not forwarded;
            // peers further away get the envelope by catch-up.
            self.out.validate(Some(room), id, source, MessageAcceptance::Ignore);
            let origin = msg.source.unwrap_or(source);
            let Some(state) = self.rooms.get_mut(&room) else { return };
            if state.links.len() >= MAX_LINKS && !state.links.contains_key(&origin) {
                state.links.clear();
            }
            match state.links.entry(origin).or_default().push(&msg.data, room) {
                Ok(Some(w)) => {
                    debug!(peer = %source, room = %room, "reassembled a fragmented gossip message");
                    self.apply(room, w, source);
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(peer = %source, error = %e, "fragment dropped");
                    state.links.remove(&origin);
                }
            }
            return;
        }
        let verdict = match Wire::decode(&msg.data, room) {
            Ok(w @ (Wire::Envelopes(_) | Wire::Admissions(_))) => self.apply(room, w, source),
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
        let topic = self.rooms.get(&room).ok_or_else(|| NodeError::NotJoined(room.to_hex()))?.presence_topic.clone();
        if !self.topic_has_peers(&topic.hash()) {
            return Ok(());
        }
        if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(topic, update) {
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
                if !receipt.applied.is_empty() {
                    self.out.event(
                        Some(room),
                        NodeEvent::Applied { room, envelopes: receipt.applied.clone(), from: Some(peer) },
                    );
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
                let now = now_ms();
                for a in adms {
                    match state.room.admit_live(&a, now) {
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
                let mut new = false;
                for r in revs {
                    match state.room.apply_revocation(&r) {
                        Ok(n) => new |= n,
                        Err(e) => bad.push(format!("revocation of {}: {e}", &r.target.to_hex()[..12])),
                    }
                }
                if new {
                    self.out.dirty.insert(room);
                }
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

    /// Asks `peer` for what we lack in `room` (one request in flight per peer and room).
    pub(super) fn request_sync(&mut self, peer: PeerId, room: RoomId) {
        if self.partitioned
            || self.is_banned(&peer)
            || !self.swarm.is_connected(&peer)
            || self.inflight_keys.contains(&(peer, room))
        {
            return;
        }
        let me = self.cfg.identity.public();
        let Some(state) = self.rooms.get(&room) else { return };
        let mut msgs = Vec::new();
        if let Some(m) = state.room.ledger().member(&me) {
            msgs.push(Wire::Admissions(vec![m.admission.clone()]));
        }
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
    }

    pub(super) fn on_sync_request(&mut self, peer: PeerId, req: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        let room = req.room;
        let refuse = |status| SyncResponse { status, more: false, frames: Vec::new() };
        if self.flooding(peer) {
            self.out.responses.push((None, channel, refuse(SyncStatus::Refused)));
            return;
        }
        if !self.rooms.contains_key(&room) {
            self.out.event(None, NodeEvent::RoomWanted { room, from: peer });
            self.out.responses.push((None, channel, refuse(SyncStatus::UnknownRoom)));
            return;
        }
        let mut link = Reassembler::new();
        let mut want = None;
        let mut want_history = None;
        let mut unsigned = false;
        for f in &req.frames {
            match link.push(f, room) {
                Ok(None) => {}
                Ok(Some(Wire::Want(have))) => want = Some(have),
                Ok(Some(Wire::WantHistory(below))) => want_history = Some(below),
                Ok(Some(Wire::Proxied { grant, update, signature })) => {
                    unsigned |= !self.sign_relayed(room, peer, &grant, &signature, &update)
                }
                Ok(Some(w @ (Wire::Admissions(_) | Wire::Envelopes(_) | Wire::Revocations(_)))) => {
                    self.apply(room, w, peer);
                }
                Ok(Some(Wire::Checkpoint(_) | Wire::History(_))) => {
                    self.offence(peer, Some(room), "checkpoint or history in a sync request".into());
                    self.out.responses.push((Some(room), channel, refuse(SyncStatus::Refused)));
                    return;
                }
                Err(e) => {
                    self.offence(peer, Some(room), format!("malformed sync request: {e}"));
                    self.out.responses.push((Some(room), channel, refuse(SyncStatus::Refused)));
                    return;
                }
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
        grant: &arena_core::Grant,
        signature: &[u8; 64],
        update: &[u8],
    ) -> bool {
        let now = now_ms();
        let Some(state) = self.rooms.get_mut(&room) else { return false };
        match state.room.proxy_for(grant, signature, update, now) {
            Ok(Some(env)) => {
                self.out.dirty.insert(room);
                self.out.publish.push((room, vec![Wire::Envelopes(vec![env.clone()])]));
                self.out.event(Some(room), NodeEvent::Applied { room, envelopes: vec![env], from: Some(peer) });
                true
            }
            Ok(None) => true,
            Err(e) => {
                debug!(peer = %peer, room = %room, error = %e, "relayed update not signed");
                false
            }
        }
    }

    /// Relays the updates kept while the room had no peer to `peer`, which just joined it.
    pub(super) fn relay_unrelayed(&mut self, peer: PeerId, room: RoomId) {
        let Some(state) = self.rooms.get_mut(&room) else { return };
        if state.unrelayed.is_empty() || self.partitioned {
            return;
        }
        let msgs = std::mem::take(&mut state.unrelayed);
        self.send_sync(peer, room, msgs);
    }

    /// Sends stock clients' updates we cannot sign for to every connected peer of the room
    /// (the room's home node signs them; the envelopes come back over gossip).
    pub(super) fn relay_proxied(&mut self, room: RoomId, msgs: Vec<Wire>) {
        let Some(state) = self.rooms.get(&room) else { return };
        let peers = self.topic_peers(&state.topic.hash());
        if peers.is_empty() {
            // Kept for the first peer that joins the room (a home node joins on demand).
            let Some(state) = self.rooms.get_mut(&room) else { return };
            state.unrelayed.extend(msgs);
            if state.unrelayed.len() > MAX_UNRELAYED {
                let over = state.unrelayed.len() - MAX_UNRELAYED;
                state.unrelayed.drain(..over);
                warn!(room = %room, dropped = over, "no peer to sign relayed updates; dropped the oldest");
            } else {
                debug!(room = %room, "no peer to sign relayed updates yet; kept");
            }
            return;
        }
        let frames = chunk(&msgs, GOSSIP_CHUNK);
        for p in peers {
            let id = self.swarm.behaviour_mut().sync.send_request(&p, SyncRequest { room, frames: frames.clone() });
            self.inflight.insert(id, (p, room));
        }
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

    /// Admissions and the envelopes `have` lacks, in log order, cut at the byte budget.
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
                if total + len > MAX_RESPONSE - (2 << 20) {
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
                    if total + len > MAX_RESPONSE - (2 << 20) {
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
        self.inflight_keys.remove(&(peer, room));
        if resp.status != SyncStatus::Ok {
            debug!(peer = %peer, room = %room, status = ?resp.status, "sync refused");
            return;
        }
        let mut link = Reassembler::new();
        let mut history = Vec::new();
        for f in &resp.frames {
            match link.push(f, room) {
                Ok(None) => {}
                Ok(Some(w @ (Wire::Admissions(_) | Wire::Envelopes(_) | Wire::Revocations(_)))) => {
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

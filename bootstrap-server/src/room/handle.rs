//! What a room actor does with each command: connections joining, their frames (y-protocols
//! for stock clients, our envelope protocol for our own), what comes from the network, and
//! the signing of stock clients' updates.

use arena_core::sync::wire::{chunk, Wire, GOSSIP_CHUNK};
use arena_core::sync::ywire::{arena_frame, awareness_frame, update_frame, YSession};
use arena_core::{Envelope, PeerKey, Role, Room};
use tracing::{debug, info, warn};

use super::cmd::{Attach, RoomCmd};
use super::env::RoomStore;
use super::state::{deliver, finish_closing, link_revoked, Conn, Inline, RoomState, REMOVED};
use crate::chan;
use crate::clock::now_ms;
use crate::conn::{FrameBytes, Outbound, CONN_QUEUE};
use crate::live::CLOSE_DENIED;
use crate::metrics::inc;

impl<S: RoomStore> RoomState<S> {
    pub(super) fn handle(&mut self, cmd: RoomCmd) {
        match cmd {
            // Taken by the actor before it gets here.
            RoomCmd::Shutdown => {}
            RoomCmd::Attach(a) => self.attach(*a),
            RoomCmd::Detach { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.drop_awareness(c.awareness_ids);
                }
            }
            RoomCmd::Close { conn, code, reason } => {
                if let Some(c) = self.conns.remove(&conn) {
                    debug!(conn, %reason, "closing");
                    deliver(&c, &mut self.inline, Outbound::Close(code, reason), true);
                    self.drop_awareness(c.awareness_ids);
                }
            }
            RoomCmd::Frame { conn, bytes } => self.frame(conn, &bytes),
            #[cfg(test)]
            RoomCmd::Subscribe { conn, role, tx, slot } => {
                let live = self.env.live.register_yws(conn, self.id, u64::MAX, [0; 16]);
                let c = Conn {
                    tx: Some(tx),
                    session: YSession::new(!role.may_write()),
                    awareness_ids: Vec::new(),
                    link: None,
                    arena: false,
                    role,
                    token: None,
                    via: None,
                    _live: live,
                    _slot: slot,
                };
                self.conns.insert(conn, c);
            }
            RoomCmd::Info { reply } => self.q().info_waiting.push(reply),
            RoomCmd::Remote { msgs } => self.remote(msgs),
            RoomCmd::RemotePresence { update } => self.remote_presence(update),
            RoomCmd::Answer { have, reply } => {
                let _ = reply.send(self.with_room(|_, r| r.answer(&have).unwrap_or_default()).unwrap_or_default());
            }
            RoomCmd::Vector { reply } => {
                let _ = reply.send(self.with_room(|_, r| r.envelope_vector()).unwrap_or_default());
            }
        }
    }

    /// A connection joins: its start frames (our sync step 1, the room's awareness; one
    /// message per frame, as stock y-websocket peers read only a frame's first message) are
    /// queued on its socket before anything else, then the room serves it inline or hands
    /// it to a session task.
    pub(super) fn attach(&mut self, a: Attach) {
        let Attach { conn, role, mut token, delegation, mut socket, limiter, queue, span, expiry, grant, invite, slot } =
            a;
        let observer = !role.may_write();
        let session = YSession::new(observer);
        // A link a host revoked (or that a removed member joined with) gets nothing more here.
        if self.with_room(|_, r| link_revoked(r.ledger(), &invite)) == Some(true) {
            debug!(conn, "refused: its link was revoked");
            let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
                "permission denied: {REMOVED}"
            )))]);
            socket.start_frame(2, deny.into());
            socket.start_close(CLOSE_DENIED, REMOVED);
            return finish_closing(&self.env.metrics, socket);
        }
        let mut via = None;
        let Some(start) = self.with_room(|h, r| {
            // The token is kept only to forward the client's updates to a home node
            // that signs them: not where we sign, nor for a client that cannot write.
            if r.can_proxy() || !role.may_write() {
                token = None;
            }
            if let Some(d) = delegation.filter(|_| r.can_proxy() && role.may_write()) {
                via = h.register_delegation(r, *d);
            }
            session.start_frames(r.doc(), &h.presence)
        }) else {
            socket.start_close(4400, "storage failure");
            return finish_closing(&self.env.metrics, socket);
        };
        for f in start {
            socket.start_frame(2, f.into());
        }
        let link = None;
        let live = self.env.live.register_yws(conn, self.id, expiry, grant);
        let mut c = Conn {
            tx: None,
            session,
            awareness_ids: Vec::new(),
            link,
            arena: false,
            role,
            token,
            via,
            _live: live,
            _slot: slot,
        };
        if self.inline.is_none() {
            drop(queue);
            debug!(conn, "attached inline");
            self.conns.insert(conn, c);
            self.inline = Some(Box::new(Inline { conn, socket, limiter, closing: false }));
            inc(&self.env.metrics.connections_inline, 1);
        } else {
            let (tx, rx) = chan::channel_weighed::<Outbound, FrameBytes>(CONN_QUEUE);
            c.tx = Some(tx);
            self.conns.insert(conn, c);
            super::session::spawn(self.env.clone(), socket, queue, rx, limiter, conn, span);
        }
    }

    /// Enters a writing stock client's delegation in the room; a new one goes to the
    /// connections that speak our protocol and to the network before any envelope names it.
    /// Returns its key (the `via` of the client's envelopes), None if the room refused it.
    pub(super) fn register_delegation(&mut self, room: &mut Room<S>, d: arena_core::Delegation) -> Option<PeerKey> {
        match room.delegate(&d, Some(now_ms() / 1000)) {
            Ok(new) => {
                if new {
                    let msg = Wire::Delegations(vec![d.clone()]);
                    self.env.to_network(self.id, vec![msg.clone()]);
                    self.send_signed(&[msg], None);
                }
                Some(d.key())
            }
            Err(e) => {
                warn!(error = %e, "a stock client's delegation was refused; its updates will be");
                None
            }
        }
    }

    pub(super) fn drop_awareness(&mut self, ids: Vec<u64>) {
        if ids.is_empty() {
            return;
        }
        let u = self.presence.remove(ids, now_ms());
        if u.clients.is_empty() {
            return;
        }
        let bytes = yrs::updates::encoder::Encode::encode_v1(&u);
        if let Ok(f) = awareness_frame(&bytes) {
            self.send(None, None, f);
        }
        self.env.presence_to_network(self.id, bytes);
    }

    pub(super) fn frame(&mut self, conn: u64, bytes: &[u8]) {
        let env = self.env.clone();
        let m = &env.metrics;
        inc(&m.bytes_in, bytes.len() as u64);
        let Some(c) = self.conns.get(&conn) else { return };
        let session = c.session;
        if c.role == Role::Observer && self.claims_anothers_presence(conn, bytes) {
            inc(&m.observer_writes_refused, 1);
            debug!(conn, "observer's presence under another connection's client id dropped");
            return;
        }
        let now = now_ms();
        // Presence (idle clients renew theirs every 15 s) is served without the document, so
        // it neither reopens an evicted one nor keeps one from being evicted. Frames that
        // start with a sync message go straight to the document (decoded once).
        let presence_first = matches!(bytes.first(), Some(1 | 3));
        let received = if self.room.is_none() || presence_first {
            session.receive_presence(&mut self.presence, bytes, now)
        } else {
            Ok(None)
        };
        let received = match received {
            Ok(Some(o)) => Ok(o),
            Ok(None) => match self.with_room(|h, r| session.receive(r.doc(), &mut h.presence, bytes, now)) {
                Some(r) => r,
                None => return,
            },
            Err(e) => Err(e),
        };
        let outcome = match received {
            Ok(o) => o,
            Err(e) => {
                // Malformed bytes close this connection only.
                inc(&m.frames_rejected, 1);
                debug!(conn, error = %e, "malformed frame");
                if let Some(c) = self.conns.remove(&conn) {
                    deliver(
                        &c,
                        &mut self.inline,
                        Outbound::Close(4400, format!("malformed message: {e}").into()),
                        false,
                    );
                    self.drop_awareness(c.awareness_ids);
                }
                return;
            }
        };
        if !outcome.reply.is_empty() {
            self.send(Some(conn), None, outcome.reply);
        }
        if outcome.denied {
            // An observer's update (YSession answers it with a read-only auth message).
            inc(&m.envelopes_rejected, 1);
            inc(&m.observer_writes_refused, 1);
        }
        if !outcome.updates.is_empty() {
            self.stock_updates(conn, outcome.updates, now);
        }
        if let Some(a) = outcome.awareness {
            if let Ok(upd) = <yrs::sync::AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&a) {
                if let Some(c) = self.conns.get_mut(&conn) {
                    for id in upd.clients.keys() {
                        if !c.awareness_ids.contains(&id.get()) {
                            c.awareness_ids.push(id.get());
                        }
                    }
                }
            }
            if let Ok(f) = awareness_frame(&a) {
                // Like the y-websocket server: to everyone, the sender included (keeps its
                // connection alive).
                self.send(None, None, f);
            }
            self.env.presence_to_network(self.id, a);
        }
        for chunk_bytes in outcome.arena {
            self.arena_chunk(conn, &chunk_bytes, now);
        }
    }

    /// Whether a frame sets presence under an awareness client id another connection of the
    /// room announced. Checked for observers: they may publish their own presence (the host
    /// sees who watches), not a fake name or cursor for someone else. (Decoding the frame
    /// twice costs little on what observers send: presence renewals.)
    pub(super) fn claims_anothers_presence(&self, conn: u64, bytes: &[u8]) -> bool {
        let Ok(msgs) = arena_core::sync::ywire::decode_frame(bytes) else { return false };
        msgs.iter().any(|m| match m {
            yrs::sync::Message::Awareness(u) => u
                .clients
                .keys()
                .any(|id| self.conns.iter().any(|(other, c)| *other != conn && c.awareness_ids.contains(&id.get()))),
            _ => false,
        })
    }

    pub(super) fn arena_chunk(&mut self, conn: u64, bytes: &[u8], now: u64) {
        let id = self.id;
        let msg = match self.conns.get_mut(&conn).map(|c| {
            c.arena = true;
            c.link.get_or_insert_with(Box::default).push(bytes, id)
        }) {
            Some(Ok(Some(msg))) => msg,
            Some(Ok(None)) | None => return,
            Some(Err(e)) => {
                inc(&self.env.metrics.frames_rejected, 1);
                if let Some(c) = self.conns.remove(&conn) {
                    let o = Outbound::Close(4400, format!("malformed envelope message: {e}").into());
                    deliver(&c, &mut self.inline, o, false);
                }
                return;
            }
        };
        // Observers are read-only on every transport: of our protocol they may ask for
        // envelopes (`Want`, `WantHistory`: what a reader needs), nothing else. Whatever else
        // they send is dropped, counted and logged, not answered: our own clients announce
        // their admission on every connect, observers' included, and an answer would show
        // them a refusal for it each time. (Their y-protocols updates are refused by their
        // read-only `YSession`, with an auth message.)
        let observer = self.conns.get(&conn).is_some_and(|c| c.role == Role::Observer);
        if observer && !matches!(msg, Wire::Want(_) | Wire::WantHistory(_)) {
            inc(&self.env.metrics.observer_writes_refused, 1);
            debug!(conn, kind = wire_kind(&msg), "observer's write ignored: observers are read-only");
            return;
        }
        self.with_room(|h, room| {
            // A join comes in here live: a member we do not know yet must hold a grant that
            // has not expired by our clock (`Room::admit_live`), whatever time its admission
            // claims. New members' admissions then go to the other connections that speak
            // our protocol, so they know the authors of the envelopes that follow.
            let (msg, admissions) = match msg {
                Wire::Admissions(adms) => {
                    let mut live = Vec::with_capacity(adms.len());
                    for a in adms {
                        match room.admit_live(&a, now) {
                            Ok(_) => live.push(a),
                            Err(e) => {
                                inc(&h.env.metrics.envelopes_rejected, 1);
                                debug!(conn, member = %a.member, error = %e, "admission refused");
                            }
                        }
                    }
                    (Wire::Admissions(live.clone()), Some(live))
                }
                m => (m, None),
            };
            h.arena_msg(room, conn, msg, admissions, observer, now)
        });
    }

    pub(super) fn arena_msg(
        &mut self,
        room: &mut Room<S>,
        conn: u64,
        msg: Wire,
        admissions: Option<Vec<arena_core::Admission>>,
        observer: bool,
        now: u64,
    ) {
        // A client that holds envelopes we lack (other authors' it got over a browser data
        // channel) is asked back for them; not an observer, whose envelopes we would drop.
        let ask_back = !observer && matches!(&msg, Wire::Want(have) if room.lacks_from(have));
        let revocations = match &msg {
            Wire::Revocations(r) => r.clone(),
            _ => Vec::new(),
        };
        let delegations = delegations_in(&msg);
        match room.handle(msg, now) {
            Ok((mut replies, receipt)) => {
                if ask_back {
                    replies.push(room.want());
                }
                inc(&self.env.metrics.envelopes_rejected, receipt.rejected.len() as u64);
                inc(&self.env.metrics.envelopes_in, receipt.applied.len() as u64);
                inc(&self.env.metrics.envelopes_held_back, receipt.buffered as u64);
                for r in chunk(&replies, GOSSIP_CHUNK) {
                    self.send_durable(Some(conn), arena_frame(&r));
                }
                let mut bridged = Vec::new();
                if let Some(a) = &admissions {
                    bridged.push(Wire::Admissions(a.clone()));
                }
                let delegations = known_delegations(room, delegations);
                if !delegations.is_empty() {
                    bridged.push(Wire::Delegations(delegations.clone()));
                    self.send_signed(&[Wire::Delegations(delegations)], Some(conn));
                }
                if !receipt.applied.is_empty() {
                    bridged.push(Wire::Envelopes(receipt.applied.clone()));
                }
                if !bridged.is_empty() {
                    self.env.to_network(self.id, bridged);
                }
                if let Some(adms) = admissions {
                    self.forward_admissions(room, adms, Some(conn));
                }
                for env in &receipt.applied {
                    self.broadcast_envelope(env, Some(conn));
                }
                self.enforce_revocations(room, revocations, Some(conn), true);
            }
            Err(e) => warn!(error = %e, "envelope message failed"),
        }
    }

    /// Revocations the ledger took: passed on (to our clients, and to the network when a
    /// client sent them), and the connections that joined with the revoked member's link
    /// (or the revoked invite) closed.
    pub(super) fn enforce_revocations(
        &mut self,
        room: &Room<S>,
        revs: Vec<arena_core::Revocation>,
        except: Option<u64>,
        to_network: bool,
    ) {
        let taken: Vec<_> = revs.into_iter().filter(|r| room.ledger().is_revoked(&r.target)).collect();
        if taken.is_empty() {
            return;
        }
        for r in &taken {
            let invite = room.ledger().member(&r.target).map_or(r.target, |m| m.admission.grant.invite);
            let n = self.env.close_link(&self.id, &invite, REMOVED);
            info!(room = %self.id, target = %r.target, closed = n, "revocation enforced");
        }
        if to_network {
            self.env.to_network(self.id, vec![Wire::Revocations(taken.clone())]);
        }
        self.send_signed(&[Wire::Revocations(taken)], except);
    }

    /// Sends the admissions the ledger accepted to the connections that speak our protocol
    /// (except `except`), so they know the authors of the envelopes that follow.
    pub(super) fn forward_admissions(&mut self, room: &Room<S>, adms: Vec<arena_core::Admission>, except: Option<u64>) {
        let known: Vec<_> = adms.into_iter().filter(|a| room.ledger().member(&a.member).is_some()).collect();
        if known.is_empty() {
            return;
        }
        self.send_signed(&[Wire::Admissions(known)], except);
    }

    /// Presence from libp2p (another node's browsers): kept, so awareness queries include
    /// it, and passed on to every connection. Not sent back to the network.
    pub(super) fn remote_presence(&mut self, update: Vec<u8>) {
        let Ok(u) = <yrs::sync::AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&update) else { return };
        if self.presence.apply(&u, now_ms()).is_empty() {
            return;
        }
        if let Ok(f) = awareness_frame(&update) {
            self.send(None, None, f);
        }
    }

    /// Applies what came from libp2p and passes it on to every connection.
    pub(super) fn remote(&mut self, msgs: Vec<Wire>) {
        self.with_room(|h, room| h.remote_in(room, msgs));
    }

    pub(super) fn remote_in(&mut self, room: &mut Room<S>, msgs: Vec<Wire>) {
        let now = now_ms();
        for msg in msgs {
            let adms = match &msg {
                Wire::Admissions(a) => Some(a.clone()),
                _ => None,
            };
            let revocations = match &msg {
                Wire::Revocations(r) => r.clone(),
                _ => Vec::new(),
            };
            let delegations = delegations_in(&msg);
            match room.handle(msg, now) {
                Ok((_, receipt)) => {
                    inc(&self.env.metrics.envelopes_in, receipt.applied.len() as u64);
                    inc(&self.env.metrics.envelopes_held_back, receipt.buffered as u64);
                    if let Some(a) = adms {
                        self.forward_admissions(room, a, None);
                    }
                    let delegations = known_delegations(room, delegations);
                    if !delegations.is_empty() {
                        self.send_signed(&[Wire::Delegations(delegations)], None);
                    }
                    for env in &receipt.applied {
                        self.broadcast_envelope(env, None);
                    }
                    self.enforce_revocations(room, revocations, None, false);
                }
                Err(e) => debug!(error = %e, "message from libp2p refused"),
            }
        }
    }

    /// A stock client's updates. Where we sign for the room, each is checked and applied to
    /// the document now and relayed to the other stock clients at once; the signature comes
    /// with the next [`RoomState::commit_proxied`] (one envelope for every update since the last,
    /// at most once per `--proxy-batch-ms`), and the connections that speak our protocol
    /// get that envelope. A refused update is answered with an auth message to its sender
    /// alone. In a federated room hosted elsewhere they wait for the commit, which sends
    /// them to the room's home node to sign.
    pub(super) fn stock_updates(&mut self, conn: u64, updates: Vec<Vec<u8>>, now: u64) {
        let hosted_elsewhere = self.env.network.get().is_some();
        let relayed = self.with_room(|h, room| {
            if !room.can_proxy() && hosted_elsewhere {
                return false;
            }
            let stock: Vec<u64> =
                h.conns.iter().filter(|(id, c)| !c.arena && **id != conn).map(|(id, _)| *id).collect();
            let via = h.conns.get(&conn).and_then(|c| c.via);
            for u in &updates {
                let Some(via) = via else {
                    h.refuse(conn, "this connection may not write (no delegation for its link)");
                    continue;
                };
                match room.proxy_deferred(u, &via, now) {
                    Ok(true) => {
                        inc(&h.env.metrics.envelopes_in, 1);
                        if !stock.is_empty() {
                            let frame = update_frame(u);
                            for id in &stock {
                                h.send(Some(*id), None, frame.clone());
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => h.refuse(conn, &e.to_string()),
                }
            }
            true
        });
        if relayed == Some(false) {
            self.q().proxied.extend(updates.into_iter().map(|u| (conn, u)));
        }
    }

    /// Signs the stock clients' updates applied since the last commit (one envelope, their
    /// merge, so the signature is paid per batch, not per keystroke) and sends the envelope
    /// on; in a federated room hosted elsewhere, sends the batch to the room's home node.
    pub(super) fn commit_proxied(&mut self, now: u64) {
        let batch = self.queued.as_mut().map(|q| std::mem::take(&mut q.proxied)).unwrap_or_default();
        if !batch.is_empty() {
            self.forward_proxied(batch);
        }
        if let Some(room) = self.room.as_mut() {
            if room.unsealed() > 0 {
                if let Err(e) = room.seal_pending(now) {
                    warn!(error = %e, "signing stock clients' updates failed; they stay pending");
                }
            }
        }
        self.send_sealed();
    }

    /// Sends on what the room sealed from stock clients' updates (by the commit, or by any
    /// call that sealed first): to the network and to the connections that speak our
    /// protocol (once durable).
    pub(super) fn send_sealed(&mut self) {
        let Some(room) = self.room.as_mut() else { return };
        let sealed = room.take_sealed();
        if sealed.is_empty() {
            return;
        }
        self.env.to_network(self.id, vec![Wire::Envelopes(sealed.clone())]);
        self.send_signed(&[Wire::Envelopes(sealed)], None);
    }

    /// A federated room hosted elsewhere: the room's home node signs for our stock clients.
    /// Each update goes with a voucher signed by the client's invite key (the home node
    /// checks it and holds the update to the grant's role); the token itself stays here.
    /// The envelopes come back over gossip.
    pub(super) fn forward_proxied(&mut self, batch: Vec<(u64, Vec<u8>)>) {
        let now_s = now_ms() / 1000;
        let msgs: Vec<Wire> = batch
            .into_iter()
            .filter_map(|(conn, update)| {
                let token = self.conns.get(&conn)?.token.as_deref()?;
                let invite = arena_core::Invite::from_token(token, &self.id, now_s).ok()?;
                let signature = invite.vouch(&update);
                let delegation = arena_core::Delegation::sign(&invite).signature;
                Some(Wire::Proxied { grant: Box::new(invite.grant), update, signature, delegation })
            })
            .collect();
        if !msgs.is_empty() {
            self.env.to_network(self.id, msgs);
        }
    }

    pub(super) fn refuse(&mut self, conn: u64, reason: &str) {
        inc(&self.env.metrics.envelopes_rejected, 1);
        debug!(conn, error = %reason, "update refused");
        let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
            "update refused: {reason}"
        )))]);
        self.send(Some(conn), None, deny);
    }

    /// Sends an applied envelope to every other connection: signed (as our own protocol)
    /// to connections that speak it, as a plain y-protocols update to stock clients.
    pub(super) fn broadcast_envelope(&mut self, env: &Envelope, except: Option<u64>) {
        inc(&self.env.metrics.envelopes_out, self.conns.len().saturating_sub(1) as u64);
        let plain = update_frame(&env.update);
        let stock: Vec<u64> =
            self.conns.iter().filter(|(id, c)| !c.arena && Some(**id) != except).map(|(id, _)| *id).collect();
        for id in stock {
            self.send(Some(id), None, plain.clone());
        }
        self.send_signed(&[Wire::Envelopes(vec![env.clone()])], except);
    }

    /// Sends envelope-protocol messages to every connection that speaks it (except `except`).
    pub(super) fn send_signed(&mut self, msgs: &[Wire], except: Option<u64>) {
        let targets: Vec<u64> =
            self.conns.iter().filter(|(id, c)| c.arena && Some(**id) != except).map(|(id, _)| *id).collect();
        if targets.is_empty() {
            return;
        }
        for f in chunk(msgs, GOSSIP_CHUNK) {
            let frame = arena_frame(&f);
            for id in &targets {
                self.send_durable(Some(*id), frame.clone());
            }
        }
    }
}

/// The delegations a message carries (a relayed update's included), to pass on once the
/// room took them.
pub(super) fn delegations_in(msg: &Wire) -> Vec<arena_core::Delegation> {
    match msg {
        Wire::Delegations(d) => d.clone(),
        Wire::Proxied { grant, delegation, .. } => {
            vec![arena_core::Delegation { grant: (**grant).clone(), signature: *delegation }]
        }
        _ => Vec::new(),
    }
}

/// Those of `ds` the room holds (it refused the others).
pub(super) fn known_delegations<S: RoomStore>(
    room: &Room<S>,
    ds: Vec<arena_core::Delegation>,
) -> Vec<arena_core::Delegation> {
    ds.into_iter().filter(|d| room.ledger().delegation(&d.key()) == Some(d)).collect()
}

/// A message's kind, for logs.
pub(super) fn wire_kind(w: &Wire) -> &'static str {
    match w {
        Wire::Envelopes(_) => "envelopes",
        Wire::Admissions(_) => "admissions",
        Wire::Checkpoint(_) => "checkpoint",
        Wire::History(_) => "history",
        Wire::Proxied { .. } => "proxied",
        _ => "other",
    }
}

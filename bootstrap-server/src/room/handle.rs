//! What a room actor does with each command: connections joining and leaving, and their
//! frames (y-protocols sync and presence here; our envelope protocol's messages go on to
//! `envelopes`, stock clients' updates to `stock`).

use arena_core::sync::wire::Wire;
use arena_core::sync::ywire::{awareness_frame, YSession};
use arena_core::{PeerKey, Role, Room};
use tracing::{debug, warn};

use super::cmd::{Attach, RoomCmd};
use super::env::RoomStore;
use super::state::{
    deliver, finish_closing, link_revoked, Conn, Inline, RoomState, MAX_PRESENCE_IDS_PER_CONNECTION, REMOVED,
};
use crate::chan;
use crate::clock::now_ms;
use crate::conn::{FrameBytes, Outbound, CONN_QUEUE};
use crate::live::CLOSE_DENIED;
use crate::metrics::inc;

impl<S: RoomStore> RoomState<S> {
    /// Handles one command; returns whether it may have changed what the room stores (the
    /// actor's next flush then covers it, and what waits for durability waits for that
    /// flush): false only for a frame that was presence alone (see [`RoomState::frame`]).
    pub(super) fn handle(&mut self, cmd: RoomCmd) -> bool {
        if let RoomCmd::Frame { conn, bytes } = cmd {
            return self.frame(conn, &bytes);
        }
        match cmd {
            // Taken by the actor before it gets here.
            RoomCmd::Shutdown | RoomCmd::Frame { .. } => {}
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
            RoomCmd::Run(w) => {
                let super::cmd::RunWrite { record, replace, version, reply } = *w;
                let _ = reply.send(self.write_run(&record, replace, version));
            }
            RoomCmd::Source { reply } => {
                let source = self
                    .wake()
                    .then(|| {
                        self.with_room(|_, r| super::cmd::Source {
                            code: r.doc().code(),
                            language: r.doc().meta().language,
                            files: r.doc().file_texts(),
                        })
                    })
                    .flatten();
                let _ = reply.send(source.ok_or_else(|| "the room's storage failed".to_owned()));
            }
            RoomCmd::Vector { reply } => {
                let _ = reply.send(self.with_room(|_, r| r.envelope_vector()).unwrap_or_default());
            }
            RoomCmd::AnalyzeCheck { invite, reply } => {
                let _ = reply.send(self.analyze_check(&invite));
            }
            RoomCmd::AnalyzeWrite { trigger, round, backend, findings, reply } => {
                let _ = reply.send(self.analyze_write(&trigger, round, &backend, findings));
            }
        }
        true
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
        match room.delegate(&d, Some(now_ms())) {
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

    /// A connection's frame. Returns whether it may have changed what the room stores:
    /// false for a frame that was presence alone (awareness, an awareness query: kept in
    /// memory, never stored) or that was dropped unread, so that an idle client's presence
    /// renewals ask for no flush.
    pub(super) fn frame(&mut self, conn: u64, bytes: &[u8]) -> bool {
        let env = self.env.clone();
        let m = &env.metrics;
        inc(&m.bytes_in, bytes.len() as u64);
        let Some(c) = self.conns.get(&conn) else { return false };
        let session = c.session;
        if c.role == Role::Observer && self.claims_anothers_presence(conn, bytes) {
            inc(&m.observer_writes_refused, 1);
            debug!(conn, "observer's presence under another connection's client id dropped");
            return false;
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
        let presence_alone = matches!(received, Ok(Some(_)));
        let received = match received {
            Ok(Some(o)) => Ok(o),
            Ok(None) => match self.with_room(|h, r| session.receive(r.doc(), &mut h.presence, bytes, now)) {
                Some(r) => r,
                None => return true,
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
                return true;
            }
        };
        if self.speaks_for_too_many(conn, &outcome.presence_set) {
            // Presence under made-up client ids would grow the room's map (bounded, but
            // then full for everyone else): the connection ends, its states go.
            inc(&m.frames_rejected, 1);
            debug!(conn, "presence for too many client ids on one connection");
            if let Some(c) = self.conns.remove(&conn) {
                let reason = format!("presence for more than {MAX_PRESENCE_IDS_PER_CONNECTION} client ids");
                deliver(&c, &mut self.inline, Outbound::Close(4400, reason.into()), false);
                self.drop_awareness(c.awareness_ids);
            }
            return false;
        }
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
        !presence_alone
    }

    /// Adds the awareness client ids a frame set to those `conn` speaks for (they go when it
    /// does); whether that makes more than [`MAX_PRESENCE_IDS_PER_CONNECTION`].
    fn speaks_for_too_many(&mut self, conn: u64, set: &[u64]) -> bool {
        if set.is_empty() {
            return false;
        }
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        for id in set {
            if !c.awareness_ids.contains(id) {
                c.awareness_ids.push(*id);
            }
        }
        c.awareness_ids.len() > MAX_PRESENCE_IDS_PER_CONNECTION
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
}

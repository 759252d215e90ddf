//! Our envelope protocol in a room actor: a client's messages (admissions, envelopes,
//! catch-up, revocations, delegations), what comes from the libp2p side, and signed
//! envelopes out to the connections that speak it.

use arena_core::sync::presence::MAX_PRESENCE_STATES;
use arena_core::sync::wire::{chunk, Wire, GOSSIP_CHUNK};
use arena_core::sync::ywire::{arena_frame, awareness_frame, update_frame};
use arena_core::{Envelope, Role, Room};
use tracing::{debug, info, warn};

use super::env::RoomStore;
use super::state::{deliver, RoomState, REMOVED};
use crate::clock::now_ms;
use crate::conn::Outbound;
use crate::metrics::inc;

impl<S: RoomStore> RoomState<S> {
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
    /// it, and what it changed is passed on to every connection. Not sent back to the
    /// network. Bounded as a connection's is: an update for more clients than a room holds
    /// is dropped whole, and states the room's map refused are not passed on.
    pub(super) fn remote_presence(&mut self, update: Vec<u8>) {
        let Ok(u) = <yrs::sync::AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&update) else { return };
        if u.clients.len() > MAX_PRESENCE_STATES {
            debug!(clients = u.clients.len(), "remote presence for more clients than a room holds dropped");
            return;
        }
        let change = self.presence.apply(&u, now_ms());
        if change.is_empty() {
            return;
        }
        let changed = yrs::updates::encoder::Encode::encode_v1(&self.presence.update_for(change.changed()));
        if let Ok(f) = awareness_frame(&changed) {
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

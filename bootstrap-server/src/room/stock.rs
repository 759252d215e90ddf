//! Stock y-websocket clients' updates in a room actor: checked against their link's role and
//! relayed at once, then signed on their behalf in one envelope per batch (or, in a room
//! hosted elsewhere, sent to the room's home node to sign).

use arena_core::sync::wire::Wire;
use arena_core::sync::ywire::update_frame;
use tracing::{debug, warn};

use super::env::RoomStore;
use super::state::RoomState;
use crate::clock::now_ms;
use crate::metrics::inc;

impl<S: RoomStore> RoomState<S> {
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
                if let Err(e) = crate::reclaim::documents(|| room.seal_pending(now)) {
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
        let now = now_ms();
        let msgs: Vec<Wire> = batch
            .into_iter()
            .filter_map(|(conn, update)| {
                let token = self.conns.get(&conn)?.token.as_deref()?;
                let invite = arena_core::Invite::from_token(token, &self.id, now).ok()?;
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
}

//! Finding the peers of a room: bootstrap nodes, rendezvous, the DHT, and relays.

use arena_core::RoomId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{identify, kad, rendezvous, Multiaddr, PeerId};
use tracing::{debug, info, warn};

use super::actor::Actor;
use crate::behaviour::{namespace_for, provider_key, KAD_PROTOCOL};

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

impl Actor {
    pub(super) fn dial_bootstrap(&mut self) {
        for addr in self.cfg.bootstrap.clone() {
            if let Some(peer) = peer_of(&addr) {
                self.bootstrap_peers.insert(peer);
                let bare: Multiaddr = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
                self.swarm.behaviour_mut().kad.add_address(&peer, bare);
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                warn!(addr = %addr, error = %e, "dialing bootstrap node");
            }
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == *self.swarm.local_peer_id()
            || self.partitioned
            || self.is_banned(&peer)
            || self.swarm.is_connected(&peer)
        {
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(addrs).condition(PeerCondition::DisconnectedAndNotDialing).build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(peer = %peer, error = %e, "dial");
        }
    }

    /// Announces and looks up one room everywhere we can.
    pub(super) fn discover_room(&mut self, room: &RoomId) {
        let Some(read_key) = self.rooms.get(room).map(|s| s.read_key) else { return };
        let key = provider_key(&read_key);
        let b = self.swarm.behaviour_mut();
        // With an empty routing table a DHT query can reach nobody, but it is kept (with its
        // buffers) until it times out, per room: on a bootstrap node with hundreds of rooms
        // and no DHT peers that was most of a loaded room's memory. `discover_all` runs
        // again periodically and provides once peers are known.
        if b.kad.kbuckets().any(|bucket| bucket.num_entries() > 0) {
            if let Err(e) = b.kad.start_providing(key.clone()) {
                debug!(error = %e, "kad provide");
            }
            b.kad.get_providers(key);
        }
        let ns = namespace_for(&read_key);
        for node in self.rendezvous_nodes.clone() {
            let b = self.swarm.behaviour_mut();
            if let Err(e) = b.rendezvous.register(ns.clone(), node, None) {
                debug!(error = %e, "rendezvous register");
            }
            b.rendezvous.discover(Some(ns.clone()), None, None, node);
        }
    }

    pub(super) fn discover_all(&mut self) {
        if self.partitioned {
            return;
        }
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for r in rooms {
            self.discover_room(&r);
        }
        if !self.cfg.bootstrap.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    pub(super) fn on_identify(&mut self, peer: PeerId, info: identify::Info) {
        let has = |name: &str| info.protocols.iter().any(|p| p.as_ref() == name);
        let mut rediscover = false;
        if has(KAD_PROTOCOL) {
            let kad = &mut self.swarm.behaviour_mut().kad;
            let was_empty = kad.kbuckets().all(|b| b.num_entries() == 0);
            for a in &info.listen_addrs {
                kad.add_address(&peer, a.clone());
            }
            // Our first DHT peer: provide and look up our rooms now (`discover_room` skips
            // the DHT while the routing table is empty).
            rediscover |= was_empty && kad.kbuckets().any(|b| b.num_entries() > 0);
        }
        if has(rendezvous::PROTOCOL_NAME.as_ref()) && self.rendezvous_nodes.insert(peer) {
            info!(peer = %peer, "rendezvous node");
            rediscover = true;
        }
        if rediscover {
            let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
            for r in rooms {
                self.discover_room(&r);
            }
        }
        if self.cfg.use_relay && has(libp2p::relay::HOP_PROTOCOL_NAME.as_ref()) && !self.relays.contains_key(&peer) {
            self.relays.insert(peer, None);
            self.listen_via_relay(peer);
        }
    }

    /// Listens through relay `peer` (a reservation) unless we already do. A relay serves
    /// only members of rooms it holds, so a reservation made before it admitted us is
    /// denied: the listener closes ([`Actor::relay_listener_closed`]) and we try again
    /// after it answers a sync request of ours, and on the anti-entropy tick.
    pub(super) fn listen_via_relay(&mut self, peer: PeerId) {
        if !matches!(self.relays.get(&peer), Some(None)) || !self.swarm.is_connected(&peer) {
            return;
        }
        let Some(addr) = self.remote_addrs.get(&peer).cloned() else { return };
        let bare: Multiaddr = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
        let circuit = bare.with(Protocol::P2p(peer)).with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                info!(relay = %peer, "listening through relay");
                self.relays.insert(peer, Some(id));
            }
            Err(e) => warn!(addr = %circuit, error = ?e, "relay listen"),
        }
    }

    /// A listener closed: when it was a relay's, we no longer listen through it.
    pub(super) fn relay_listener_closed(&mut self, id: libp2p::core::transport::ListenerId, reason: String) {
        if let Some((peer, slot)) = self.relays.iter_mut().find(|(_, l)| **l == Some(id)) {
            debug!(relay = %peer, reason, "no longer listening through relay");
            *slot = None;
        }
    }

    pub(super) fn on_rendezvous(&mut self, ev: rendezvous::client::Event) {
        match ev {
            rendezvous::client::Event::Discovered { registrations, .. } => {
                for reg in registrations {
                    let peer = reg.record.peer_id();
                    self.dial_peer(peer, reg.record.addresses().to_vec());
                }
            }
            rendezvous::client::Event::RegisterFailed { namespace, error, .. } => {
                debug!(namespace = %namespace, error = ?error, "rendezvous registration failed");
            }
            _ => {}
        }
    }

    pub(super) fn on_kad(&mut self, ev: kad::Event) {
        if let kad::Event::OutboundQueryProgressed {
            result: kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders { providers, .. })),
            ..
        } = ev
        {
            for p in providers {
                self.dial_peer(p, Vec::new());
            }
        }
    }
}

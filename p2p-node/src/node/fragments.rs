//! Gossip fragments being reassembled: only a member publisher's, at most one message per
//! publisher and room, and bounded three ways (per publisher, per remote IP, in all), so a
//! flood of valid-looking first fragments from many peer ids cannot grow the node's memory.
//! A fragmented message that would go over a cap is dropped; the envelope it carried comes
//! later by catch-up, whose answers are paged.

use std::collections::HashMap;
use std::net::IpAddr;

use arena_core::sync::wire::{Reassembler, Wire};
use arena_core::{CoreError, RoomId};
use libp2p::PeerId;

/// Caps on buffered fragment bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Bytes one publisher may have buffered (one message in progress per room).
    pub per_peer: usize,
    /// Bytes all publishers behind one remote IP may have buffered.
    pub per_ip: usize,
    /// Bytes buffered in all.
    pub total: usize,
}

impl Default for FragmentLimits {
    fn default() -> Self {
        // A paste of a few hundred KB crosses gossip whole; bigger ones come by catch-up.
        FragmentLimits { per_peer: 1 << 20, per_ip: 4 << 20, total: 16 << 20 }
    }
}

/// What the reassembly of fragments holds, as [`super::NodeHandle::stats`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentStats {
    /// Bytes buffered now.
    pub buffered: usize,
    /// The most bytes ever buffered at once.
    pub peak: usize,
    /// Fragments handled (buffered, completed or dropped), members' and others'.
    pub received: u64,
    /// Fragments dropped: from a non-member, over a cap, or malformed.
    pub dropped: u64,
}

/// Why a fragment was not kept.
#[derive(Debug)]
pub(super) enum Dropped {
    /// Over one of the caps (not the publisher's fault by itself).
    OverCap(&'static str),
    /// It does not fit the message in progress, or does not decode.
    Malformed(CoreError),
}

struct Link {
    reassembler: Reassembler,
    ip: Option<IpAddr>,
}

#[derive(Default)]
pub(super) struct Fragments {
    limits: FragmentLimits,
    links: HashMap<(RoomId, PeerId), Link>,
    per_peer: HashMap<PeerId, usize>,
    per_ip: HashMap<IpAddr, usize>,
    stats: FragmentStats,
}

impl Fragments {
    pub(super) fn new(limits: FragmentLimits) -> Self {
        Fragments { limits, ..Default::default() }
    }

    pub(super) fn stats(&self) -> FragmentStats {
        self.stats
    }

    /// Counts a fragment refused before buffering (its publisher is not a member).
    pub(super) fn refused(&mut self) {
        self.stats.received += 1;
        self.stats.dropped += 1;
    }

    /// Feeds a member publisher's fragment; a complete message when this was its last.
    pub(super) fn push(
        &mut self,
        room: RoomId,
        publisher: PeerId,
        ip: Option<IpAddr>,
        data: &[u8],
    ) -> std::result::Result<Option<Wire>, Dropped> {
        self.stats.received += 1;
        let key = (room, publisher);
        let held = self.links.get(&key).map_or(0, |l| l.reassembler.buffered());
        let peer_bytes = self.per_peer.get(&publisher).copied().unwrap_or(0);
        let ip_bytes = ip.and_then(|ip| self.per_ip.get(&ip)).copied().unwrap_or(0);
        let add = data.len();
        let over = if peer_bytes + add > self.limits.per_peer {
            Some("per peer")
        } else if ip_bytes + add > self.limits.per_ip {
            Some("per IP")
        } else if self.stats.buffered + add > self.limits.total {
            Some("in all")
        } else {
            None
        };
        if let Some(cap) = over {
            self.remove(&key);
            self.stats.dropped += 1;
            return Err(Dropped::OverCap(cap));
        }
        let link = self.links.entry(key).or_insert_with(|| Link { reassembler: Reassembler::new(), ip });
        let result = link.reassembler.push(data, room);
        let now = link.reassembler.buffered();
        let done = !link.reassembler.in_progress();
        // Account the change (a completed or failed message frees what it held).
        self.sub(publisher, ip, held);
        if done || result.is_err() {
            self.links.remove(&key);
        } else {
            self.add(publisher, ip, now);
        }
        match result {
            Ok(w) => Ok(w),
            Err(e) => {
                self.stats.dropped += 1;
                Err(Dropped::Malformed(e))
            }
        }
    }

    /// Forgets a publisher's messages in progress (it disconnected).
    pub(super) fn forget_peer(&mut self, peer: &PeerId) {
        let keys: Vec<(RoomId, PeerId)> = self.links.keys().filter(|(_, p)| p == peer).copied().collect();
        for k in keys {
            self.remove(&k);
        }
    }

    /// Forgets a room's messages in progress (we left it).
    pub(super) fn forget_room(&mut self, room: &RoomId) {
        let keys: Vec<(RoomId, PeerId)> = self.links.keys().filter(|(r, _)| r == room).copied().collect();
        for k in keys {
            self.remove(&k);
        }
    }

    fn remove(&mut self, key: &(RoomId, PeerId)) {
        if let Some(link) = self.links.remove(key) {
            self.sub(key.1, link.ip, link.reassembler.buffered());
        }
    }

    fn add(&mut self, peer: PeerId, ip: Option<IpAddr>, n: usize) {
        *self.per_peer.entry(peer).or_default() += n;
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_default() += n;
        }
        self.stats.buffered += n;
        self.stats.peak = self.stats.peak.max(self.stats.buffered);
    }

    fn sub(&mut self, peer: PeerId, ip: Option<IpAddr>, n: usize) {
        if let Some(v) = self.per_peer.get_mut(&peer) {
            *v = v.saturating_sub(n);
            if *v == 0 {
                self.per_peer.remove(&peer);
            }
        }
        if let Some(v) = ip.and_then(|ip| self.per_ip.get_mut(&ip)) {
            *v = v.saturating_sub(n);
            if *v == 0 {
                if let Some(ip) = ip {
                    self.per_ip.remove(&ip);
                }
            }
        }
        self.stats.buffered = self.stats.buffered.saturating_sub(n);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use arena_core::sync::wire::{chunk, GOSSIP_CHUNK};
    use arena_core::{Envelope, Identity};

    fn fragments(room: RoomId, n: usize) -> Vec<Vec<u8>> {
        let id = Identity::from_passphrase("frag");
        let env = Envelope::seal(room, &id, 0, Default::default(), 1, vec![5; n]);
        chunk(&[Wire::Envelopes(vec![env])], GOSSIP_CHUNK)
    }

    #[test]
    fn caps_hold_and_a_complete_message_frees_its_bytes() {
        let room = Identity::from_passphrase("room").public();
        let limits = FragmentLimits { per_peer: 3 * GOSSIP_CHUNK, per_ip: 5 * GOSSIP_CHUNK, total: 6 * GOSSIP_CHUNK };
        let mut f = Fragments::new(limits);
        let ip: IpAddr = [127, 0, 0, 1].into();
        // A message of 3 fragments from one peer completes; nothing stays buffered.
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let three = fragments(room, 2 * GOSSIP_CHUNK + 100);
        assert_eq!(three.len(), 3);
        assert!(f.push(room, a, Some(ip), &three[0]).unwrap().is_none());
        assert!(f.push(room, a, Some(ip), &three[1]).unwrap().is_none());
        assert!(matches!(f.push(room, a, Some(ip), &three[2]).unwrap(), Some(Wire::Envelopes(_))));
        assert_eq!(f.stats().buffered, 0);
        // Per peer: a 5-fragment message does not fit 3 chunks.
        let five = fragments(room, 4 * GOSSIP_CHUNK + 100);
        for frag in &five[..3] {
            f.push(room, a, Some(ip), frag).unwrap();
        }
        assert!(matches!(f.push(room, a, Some(ip), &five[3]), Err(Dropped::OverCap("per peer"))));
        assert_eq!(f.stats().buffered, 0);
        // Per IP: b and c behind one IP share 5 chunks.
        for frag in &five[..3] {
            f.push(room, b, Some(ip), frag).unwrap();
        }
        f.push(room, c, Some(ip), &five[0]).unwrap();
        f.push(room, c, Some(ip), &five[1]).unwrap();
        assert!(matches!(f.push(room, c, Some(ip), &five[2]), Err(Dropped::OverCap("per IP"))));
        assert!(f.stats().peak <= limits.per_ip);
        f.forget_peer(&b);
        assert_eq!(f.stats().buffered, 0);
    }
}

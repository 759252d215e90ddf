//! One fragment reassembler per link: fragments of large messages that come in interleaved
//! over several links (the node's socket and WebRTC data channels) do not mix.

use crate::error::Result;
use crate::grant::RoomId;
use crate::sync::wire::{is_fragment, Reassembler, Wire, MAX_MESSAGE};

/// Links with a fragmented message in progress at most; a further one drops the oldest.
pub const MAX_LINKS: usize = 16;

/// Per link, the reassembler of a fragmented message in progress (bounded in count and in
/// bytes: a link whose message takes more is dropped, oldest first).
#[derive(Debug, Default)]
pub(super) struct Links {
    /// (link, when its message started, in calls; its reassembler), at most
    /// [`MAX_LINKS`] + 1: a plain `Vec` is smaller in the WASM module than a map.
    partial: Vec<(u32, u64, Reassembler)>,
    calls: u64,
}

impl Links {
    pub(super) fn push(&mut self, link: u32, chunk: &[u8], room: RoomId) -> Result<Option<Wire>> {
        self.calls += 1;
        let (started, mut r) = match self.take(link) {
            Some(p) => p,
            None if !is_fragment(chunk) => return Wire::decode(chunk, room).map(Some),
            None => (self.calls, Reassembler::new()),
        };
        let out = r.push(chunk, room);
        if r.in_progress() {
            self.keep(link, started, r);
        }
        out
    }

    pub(super) fn close(&mut self, link: u32) {
        self.take(link);
    }

    fn take(&mut self, link: u32) -> Option<(u64, Reassembler)> {
        let i = self.partial.iter().position(|(l, _, _)| *l == link)?;
        let (_, started, r) = self.partial.swap_remove(i);
        Some((started, r))
    }

    fn keep(&mut self, link: u32, started: u64, r: Reassembler) {
        self.partial.push((link, started, r));
        let over = |p: &[(u32, u64, Reassembler)]| {
            p.len() > MAX_LINKS || p.iter().map(|(_, _, r)| r.buffered()).sum::<usize>() > MAX_MESSAGE
        };
        while over(&self.partial) {
            let Some(oldest) =
                self.partial.iter().filter(|(l, _, _)| *l != link).min_by_key(|(_, t, _)| *t).map(|(l, _, _)| *l)
            else {
                break;
            };
            self.take(oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::records::Meta;
    use crate::sync::wire::chunk;
    use crate::{Identity, MemoryStore, Room};

    /// Two messages, each in many fragments, both numbered from 1 (two senders).
    fn two_messages() -> (RoomId, Wire, Wire, Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let key = Identity::from_passphrase("links room");
        let mut room =
            Room::create(&key, Identity::from_passphrase("links host"), 0, MemoryStore::new(), Meta::default(), 1)
                .unwrap();
        let a = room.edit(2, |e| e.splice_code(0, 0, &"a".repeat(3000))).unwrap().unwrap();
        let b = room.edit(3, |e| e.splice_code(0, 0, &"b".repeat(2000))).unwrap().unwrap();
        let (wa, wb) = (Wire::Envelopes(vec![a]), Wire::Envelopes(vec![b]));
        let (fa, fb) = (chunk(std::slice::from_ref(&wa), 256), chunk(std::slice::from_ref(&wb), 256));
        assert!(fa.len() > 5 && fb.len() > 5 && fa.iter().chain(&fb).all(|c| is_fragment(c)));
        (room.id(), wa, wb, fa, fb)
    }

    #[test]
    fn interleaved_fragments_from_two_links_reassemble() {
        let (room, wa, wb, fa, fb) = two_messages();
        let mut links = Links::default();
        let mut got = Vec::new();
        let (mut ia, mut ib) = (fa.iter(), fb.iter());
        loop {
            let (x, y) = (ia.next(), ib.next());
            if x.is_none() && y.is_none() {
                break;
            }
            if let Some(c) = x {
                got.extend(links.push(1, c, room).unwrap().map(|w| (1, w)));
            }
            if let Some(c) = y {
                got.extend(links.push(7, c, room).unwrap().map(|w| (7, w)));
            }
            // A whole message on a third link in between does not disturb them.
            got.extend(links.push(0, &Wire::Want(BTreeMap::new()).encode(), room).unwrap().map(|w| (0, w)));
        }
        let mut messages: Vec<_> = got.into_iter().filter(|(l, _)| *l != 0).collect();
        messages.sort_by_key(|(l, _)| *l);
        assert_eq!(messages, vec![(1, wa), (7, wb)]);
        assert!(links.partial.is_empty(), "finished links hold nothing");
    }

    #[test]
    fn a_closed_link_forgets_its_half_message_and_the_count_is_bounded() {
        let (room, _, wb, fa, fb) = two_messages();
        let mut links = Links::default();
        links.push(3, &fa[0], room).unwrap();
        links.close(3);
        // The rest of the message on link 3 is out of order now: refused, not mixed up.
        assert!(links.push(3, &fa[1], room).is_err());
        assert!(links.partial.is_empty());
        // Many links half-way through: at most MAX_LINKS kept, the oldest dropped.
        for link in 0..(MAX_LINKS as u32 + 5) {
            links.push(100 + link, &fa[0], room).unwrap();
        }
        assert_eq!(links.partial.len(), MAX_LINKS);
        let holds = |link: u32| links.partial.iter().any(|(l, _, _)| *l == link);
        assert!(!holds(100) && holds(100 + MAX_LINKS as u32 + 4));
        let mut last = None;
        for c in &fb {
            last = links.push(5, c, room).unwrap();
        }
        assert_eq!(last, Some(wb));
    }
}

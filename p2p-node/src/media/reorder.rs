//! RTP sequence numbers and timestamps, unwrapped, and a small reorder buffer that hands
//! packets on in sequence order and says where packets are missing (a gap, never glued
//! over).

use std::collections::BTreeMap;

/// A sequence jump this large is not reordering: the sender restarted or is hostile. Both
/// are recorded as one gap.
const MAX_JUMP: u64 = 3000;

/// Extends 16-bit RTP sequence numbers to 64 bits, relative to the highest one seen.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeqUnwrap {
    highest: Option<u64>,
}

impl SeqUnwrap {
    pub(crate) fn unwrap(&mut self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            // Start well above 0 so a packet reordered before the first stays positive.
            let ext = (1u64 << 16) + u64::from(seq);
            self.highest = Some(ext);
            return ext;
        };
        let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
        let ext = (h as i64 + diff).max(0) as u64;
        if ext > h {
            self.highest = Some(ext);
        }
        ext
    }
}

/// Extends 32-bit RTP timestamps relative to the first one: media time in clock ticks
/// since the track's first packet (negative for a packet reordered before it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TsUnwrap {
    first: u32,
    last: i64,
}

impl TsUnwrap {
    pub(crate) fn new(first: u32) -> Self {
        TsUnwrap { first, last: 0 }
    }

    /// Ticks since the first packet's timestamp.
    pub(crate) fn unwrap(&mut self, ts: u32) -> i64 {
        let diff = i64::from(ts.wrapping_sub(self.first.wrapping_add(self.last as u32)) as i32);
        let t = self.last + diff;
        if t > self.last {
            self.last = t;
        }
        t
    }
}

/// What the buffer hands on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Out<P> {
    /// The next packet in sequence.
    Packet(u64, P),
    /// Sequence numbers `from..to` never came (in time).
    Lost { from: u64, to: u64 },
}

/// Holds packets that arrive ahead of a missing one, up to `window` of them; then the
/// missing ones count as lost.
#[derive(Debug)]
pub(crate) struct Reorder<P> {
    unwrap: SeqUnwrap,
    next: Option<u64>,
    buf: BTreeMap<u64, P>,
    window: usize,
    /// Packets that came after their place was passed (late or duplicated).
    pub(crate) late: u64,
}

impl<P> Reorder<P> {
    pub(crate) fn new(window: usize) -> Self {
        Reorder { unwrap: SeqUnwrap::default(), next: None, buf: BTreeMap::new(), window: window.max(1), late: 0 }
    }

    /// Takes one packet; returns what can be handed on now, in order.
    pub(crate) fn push(&mut self, seq: u16, p: P) -> Vec<Out<P>> {
        let ext = self.unwrap.unwrap(seq);
        let mut out = Vec::new();
        let next = *self.next.get_or_insert(ext);
        if ext < next || self.buf.contains_key(&ext) {
            self.late += 1;
            return out;
        }
        if ext - next > MAX_JUMP {
            self.drain(&mut out);
            let from = self.next.unwrap_or(ext);
            if ext > from {
                out.push(Out::Lost { from, to: ext });
            }
            self.next = Some(ext);
        }
        self.buf.insert(ext, p);
        self.emit(&mut out, false);
        out
    }

    /// Everything still held, with the gaps between.
    pub(crate) fn flush(&mut self) -> Vec<Out<P>> {
        let mut out = Vec::new();
        self.drain(&mut out);
        out
    }

    fn drain(&mut self, out: &mut Vec<Out<P>>) {
        self.emit(out, true);
    }

    fn emit(&mut self, out: &mut Vec<Out<P>>, all: bool) {
        loop {
            let Some(next) = self.next else { return };
            if let Some(p) = self.buf.remove(&next) {
                out.push(Out::Packet(next, p));
                self.next = Some(next + 1);
                continue;
            }
            let Some((&first, _)) = self.buf.first_key_value() else { return };
            if !all && self.buf.len() <= self.window {
                return;
            }
            out.push(Out::Lost { from: next, to: first });
            self.next = Some(first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(out: Vec<Out<u16>>) -> Vec<String> {
        out.into_iter()
            .map(|o| match o {
                Out::Packet(_, p) => p.to_string(),
                Out::Lost { from, to } => format!("lost{}", to - from),
            })
            .collect()
    }

    #[test]
    fn in_order_reordered_lost_wrapped_and_late() {
        let mut r = Reorder::new(3);
        let mut all = Vec::new();
        for s in [65533u16, 65534, 0, 65535, 1, 3, 4, 5, 6, 7, 2] {
            all.extend(seqs(r.push(s, s)));
        }
        all.extend(seqs(r.flush()));
        assert_eq!(all, ["65533", "65534", "65535", "0", "1", "lost1", "3", "4", "5", "6", "7"]);
        assert_eq!(r.late, 1);
    }

    #[test]
    fn a_huge_jump_is_one_gap() {
        let mut r = Reorder::new(8);
        let mut all = seqs(r.push(10, 10));
        all.extend(seqs(r.push(20000, 20000)));
        assert_eq!(all, ["10", "lost19989", "20000"]);
    }

    #[test]
    fn timestamps_unwrap_across_the_wrap() {
        let mut t = TsUnwrap::new(u32::MAX - 100);
        assert_eq!(t.unwrap(u32::MAX - 100), 0);
        assert_eq!(t.unwrap(859), 960);
        assert_eq!(t.unwrap(u32::MAX - 200), -100);
        assert_eq!(t.unwrap(1819), 1920);
    }
}

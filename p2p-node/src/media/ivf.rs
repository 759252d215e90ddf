//! VP8 frames out of RTP (RFC 7741), into an IVF file whose timestamps are the RTP time
//! since the track's first packet (timebase 1/90000), so a gap in the stream stays a gap
//! in the file.
//!
//! A frame with a packet missing is dropped, and so is every frame after it up to the next
//! keyframe (they would be decoded against a picture the decoder does not have): the file
//! holds only frames that decode cleanly, and the timeline says what was dropped.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;
use webrtc::rtp::packetizer::Depacketizer;

/// Largest frame assembled (a sender that never sets the marker bit is cut off here).
const MAX_FRAME: usize = 4 << 20;

/// One complete VP8 frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) ts: u32,
    pub(crate) data: Vec<u8>,
    pub(crate) key: bool,
}

/// Why packets did not become a frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Frames with a packet missing, or over the size limit, or not VP8.
    pub(crate) broken: u64,
    /// Whole frames dropped while waiting for a keyframe.
    pub(crate) waiting: u64,
}

/// Assembles VP8 frames from RTP packets handed on in sequence order.
#[derive(Debug, Default)]
pub(crate) struct Vp8Assembler {
    cur: Option<(u32, Vec<u8>, bool)>,
    need_key: bool,
    pub(crate) dropped: Dropped,
}

impl Vp8Assembler {
    pub(crate) fn new() -> Self {
        Vp8Assembler { need_key: true, ..Default::default() }
    }

    /// Whether it is waiting for a keyframe (ask the sender for one).
    pub(crate) fn needs_key(&self) -> bool {
        self.need_key
    }

    /// Packets were lost before this point: the frame being assembled is broken.
    pub(crate) fn lost(&mut self) {
        if let Some(c) = self.cur.as_mut() {
            c.2 = true;
        }
        self.need_key = true;
    }

    /// One packet (in order); a frame when it completes one.
    pub(crate) fn packet(&mut self, ts: u32, marker: bool, payload: &Bytes) -> Option<Frame> {
        let mut d = webrtc::rtp::codecs::vp8::Vp8Packet::default();
        let Ok(data) = d.depacketize(payload) else {
            self.lost();
            self.dropped.broken += 1;
            return None;
        };
        let start = d.s == 1 && d.pid == 0;
        if self.cur.as_ref().is_some_and(|c| c.0 != ts || start) {
            // The previous frame never saw its last packet.
            self.cur = None;
            self.dropped.broken += 1;
            self.need_key = true;
        }
        match self.cur.as_mut() {
            Some(c) => c.1.extend_from_slice(&data),
            None if start => self.cur = Some((ts, data.to_vec(), false)),
            None => return None,
        }
        if self.cur.as_ref().is_some_and(|c| c.1.len() > MAX_FRAME) {
            self.cur = None;
            self.dropped.broken += 1;
            self.need_key = true;
            return None;
        }
        if !marker {
            return None;
        }
        let (ts, data, broken) = self.cur.take()?;
        let key = data.first().is_some_and(|b| b & 1 == 0);
        if broken {
            self.dropped.broken += 1;
            return None;
        }
        if self.need_key && !key {
            self.dropped.waiting += 1;
            return None;
        }
        self.need_key = false;
        Some(Frame { ts, data, key })
    }
}

/// A keyframe's picture size (RFC 6386 §9.1).
pub(crate) fn keyframe_size(f: &[u8]) -> Option<(u16, u16)> {
    let s = f.get(3..10)?;
    (s[..3] == [0x9d, 0x01, 0x2a])
        .then(|| (u16::from_le_bytes([s[3], s[4]]) & 0x3fff, u16::from_le_bytes([s[5], s[6]]) & 0x3fff))
}

/// An IVF file of VP8 frames; the header (picture size, length) is completed at close.
/// The header's "length" field holds the duration in timebase ticks, as FFmpeg reads and
/// writes it (libvpx's tools call it the frame count and do not rely on it).
pub(crate) struct IvfWriter {
    out: BufWriter<File>,
    frames: u32,
    size: (u16, u16),
    last_pts: Option<u64>,
}

impl std::fmt::Debug for IvfWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvfWriter").field("frames", &self.frames).finish()
    }
}

impl IvfWriter {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let f = super::create_file(path)?;
        let mut w = IvfWriter { out: BufWriter::new(f), frames: 0, size: (0, 0), last_pts: None };
        let h = w.header();
        w.out.write_all(&h)?;
        Ok(w)
    }

    fn header(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(b"DKIF");
        h[6..8].copy_from_slice(&32u16.to_le_bytes());
        h[8..12].copy_from_slice(b"VP80");
        h[12..14].copy_from_slice(&self.size.0.to_le_bytes());
        h[14..16].copy_from_slice(&self.size.1.to_le_bytes());
        h[16..20].copy_from_slice(&90000u32.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h[24..28].copy_from_slice(&self.duration().to_le_bytes());
        h
    }

    /// Writes a frame at `pts` (90 kHz ticks since the track's first packet). Returns false
    /// for a frame that does not come after the previous one.
    pub(crate) fn write(&mut self, f: &Frame, pts: u64) -> std::io::Result<bool> {
        if self.last_pts.is_some_and(|l| pts <= l) {
            return Ok(false);
        }
        if f.key {
            if let Some(s) = keyframe_size(&f.data) {
                if self.size == (0, 0) {
                    self.size = s;
                }
            }
        }
        self.out.write_all(&(f.data.len() as u32).to_le_bytes())?;
        self.out.write_all(&pts.to_le_bytes())?;
        self.out.write_all(&f.data)?;
        self.frames += 1;
        self.last_pts = Some(pts);
        Ok(true)
    }

    /// The last frame's time plus the mean frame interval, in ticks.
    fn duration(&self) -> u32 {
        let last = self.last_pts.unwrap_or(0);
        let step = if self.frames > 1 { last / u64::from(self.frames - 1) } else { 0 };
        u32::try_from(last + step).unwrap_or(u32::MAX)
    }

    pub(crate) fn frames(&self) -> u32 {
        self.frames
    }

    pub(crate) fn close(mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let h = self.header();
        let f = self.out.get_mut();
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&h)?;
        f.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(start: bool, body: &[u8]) -> Bytes {
        let mut v = vec![if start { 0x10 } else { 0x00 }];
        v.extend_from_slice(body);
        Bytes::from(v)
    }

    #[test]
    fn frames_assemble_and_broken_ones_wait_for_a_keyframe() {
        let mut a = Vp8Assembler::new();
        // An inter frame before any keyframe is dropped.
        assert_eq!(a.packet(1, true, &pkt(true, &[1, 0, 0])), None);
        // A keyframe in two packets.
        assert_eq!(a.packet(2, false, &pkt(true, &[0, 1, 2])), None);
        let f = a.packet(2, true, &pkt(false, &[3, 4, 5]));
        assert_eq!(f, Some(Frame { ts: 2, data: vec![0, 1, 2, 3, 4, 5], key: true }));
        assert!(a.packet(3, true, &pkt(true, &[1, 9, 9])).is_some());
        // A loss in the middle of a frame drops it and the next inter frame.
        assert_eq!(a.packet(4, false, &pkt(true, &[1, 0, 0])), None);
        a.lost();
        assert_eq!(a.packet(4, true, &pkt(false, &[5, 5, 5])), None);
        assert_eq!(a.packet(5, true, &pkt(true, &[1, 0, 0])), None);
        assert!(a.needs_key());
        assert!(a.packet(6, true, &pkt(true, &[0, 0, 0])).is_some_and(|f| f.key));
        assert_eq!(a.dropped, Dropped { broken: 1, waiting: 2 });
        // A continuation without a start is ignored; garbage does not panic.
        assert_eq!(a.packet(7, true, &pkt(false, &[1, 1, 1])), None);
        assert_eq!(a.packet(8, true, &Bytes::from_static(&[0xff])), None);
    }

    #[test]
    fn keyframe_sizes() {
        let k = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        assert_eq!(keyframe_size(&k), Some((320, 240)));
        assert_eq!(keyframe_size(&k[..9]), None);
    }
}

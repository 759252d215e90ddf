//! An Ogg Opus file writer (RFC 7845) that keeps the RTP timeline: each packet's granule
//! position is its RTP time since the track's first packet (48 kHz, the Opus RTP clock)
//! plus its duration, so lost packets leave a hole in the granule positions instead of
//! being glued over. Pre-skip is 0: file time 0 is the first packet received.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// One Ogg page holds at most 255 lacing values; a packet of n bytes needs n / 255 + 1.
const MAX_PACKET: usize = 255 * 254 + 254;

pub(crate) struct OggOpusWriter {
    out: BufWriter<File>,
    serial: u32,
    page: u32,
    /// The last packet, written at the next one or at close (then flagged end of stream).
    pending: Option<(Vec<u8>, u64)>,
    /// Highest granule written, so positions never go back.
    granule: u64,
}

impl std::fmt::Debug for OggOpusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter").field("page", &self.page).field("granule", &self.granule).finish()
    }
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1); `None` for a
/// packet that is not Opus.
pub(crate) fn opus_samples(p: &[u8]) -> Option<u64> {
    let toc = *p.first()?;
    let config = toc >> 3;
    let frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u64 = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*p.get(1)? & 0x3f),
    };
    let n = frame * frames;
    // At most 120 ms per packet.
    (frames > 0 && n <= 5760).then_some(n)
}

impl OggOpusWriter {
    pub(crate) fn create(path: &Path, channels: u8, serial: u32) -> std::io::Result<Self> {
        let f = super::create_file(path)?;
        let mut w = OggOpusWriter { out: BufWriter::new(f), serial, page: 0, pending: None, granule: 0 };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1);
        head.push(channels.clamp(1, 2));
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
        head.extend_from_slice(&48000u32.to_le_bytes());
        head.extend_from_slice(&0u16.to_le_bytes()); // gain
        head.push(0); // mapping family 0
        w.page(&head, 2, 0)?;
        let vendor = b"arena-node";
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        w.page(&tags, 0, 0)?;
        Ok(w)
    }

    /// Writes one Opus packet that starts `at` samples after the track's first packet.
    /// Returns false (and writes nothing) for a packet that is not Opus or starts before
    /// the previous one ended.
    pub(crate) fn write(&mut self, packet: &[u8], at: u64) -> std::io::Result<bool> {
        let Some(n) = opus_samples(packet) else { return Ok(false) };
        if packet.len() > MAX_PACKET || at < self.granule {
            return Ok(false);
        }
        if let Some((p, g)) = self.pending.take() {
            self.page(&p, 0, g)?;
        }
        self.granule = at + n;
        self.pending = Some((packet.to_vec(), self.granule));
        Ok(true)
    }

    /// Media time written so far, in samples.
    #[cfg(test)]
    pub(crate) fn end(&self) -> u64 {
        self.granule
    }

    pub(crate) fn close(mut self) -> std::io::Result<()> {
        if let Some((p, g)) = self.pending.take() {
            self.page(&p, 4, g)?;
        }
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }

    fn page(&mut self, data: &[u8], flags: u8, granule: u64) -> std::io::Result<()> {
        let segments = data.len() / 255 + 1;
        let mut p = Vec::with_capacity(27 + segments + data.len());
        p.extend_from_slice(b"OggS");
        p.push(0);
        p.push(flags);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&self.serial.to_le_bytes());
        p.extend_from_slice(&self.page.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(segments as u8);
        p.extend(std::iter::repeat_n(255u8, segments - 1));
        p.push((data.len() % 255) as u8);
        p.extend_from_slice(data);
        let crc = crc32(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        self.page += 1;
        self.out.write_all(&p)
    }
}

/// Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, initial 0).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        assert_eq!(opus_samples(&[0xfc]), Some(960)); // CELT FB 20 ms, one frame
        assert_eq!(opus_samples(&[0x78 | 1]), Some(1920)); // SILK-hybrid 20 ms, two frames
        assert_eq!(opus_samples(&[0x03, 0x03]), Some(1440)); // SILK NB 10 ms, three frames
        assert_eq!(opus_samples(&[0x03]), None);
        assert_eq!(opus_samples(&[0x03, 0x3f]), None);
        assert_eq!(opus_samples(&[]), None);
    }

    #[test]
    fn crc_matches_a_known_page() {
        // CRC-32/CKSUM's check value without its final inversion (the reveng catalogue).
        assert_eq!(crc32(b"123456789"), 0x765e_7680 ^ 0xffff_ffff);
    }

    #[test]
    fn granules_keep_gaps_and_never_go_back() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.ogg");
        let mut w = OggOpusWriter::create(&path, 2, 7)?;
        assert!(w.write(&[0xfc, 1, 2], 0)?);
        assert!(w.write(&[0xfc, 1, 2], 960)?);
        assert!(w.write(&[0xfc, 1, 2], 4800)?);
        assert!(!w.write(&[0xfc, 1, 2], 960)?);
        assert!(!w.write(&[0x03], 9600)?);
        // The largest packet one page can hold, and one byte more.
        let mut big = vec![0xfc; MAX_PACKET];
        assert!(!w.write(&[&big[..], &[0]].concat(), 9600)?);
        big[1] = 1;
        assert!(w.write(&big, 9600)?);
        assert!(w.write(&[0xfc, 1, 2], 10560)?);
        assert_eq!(w.end(), 11520);
        w.close()?;
        let bytes = std::fs::read(&path)?;
        let pages: Vec<(u64, u8)> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == b"OggS")
            .map(|(i, _)| (u64::from_le_bytes(bytes[i + 6..i + 14].try_into().unwrap_or_default()), bytes[i + 26]))
            .collect();
        let granules: Vec<u64> = pages.iter().map(|p| p.0).collect();
        assert_eq!(granules, [0, 0, 960, 1920, 5760, 10560, 11520]);
        // The big packet fills its page's 255 lacing values.
        assert_eq!(pages[5].1, 255);
        Ok(())
    }
}

//! Client frames into messages (RFC 6455 §5): masked frames, fragmented messages, control
//! frames between fragments, close codes, UTF-8 checked text. Holds memory only while a
//! frame or a fragmented message is incomplete.

use std::collections::VecDeque;

use super::{Msg, WsError};
use crate::clock;

/// Decodes client frames into messages. Holds memory only while a frame or a fragmented
/// message is incomplete.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// The start of a frame whose end has not arrived.
    partial: Vec<u8>,
    /// A fragmented message being put together: its opcode and what came so far.
    /// Boxed: 8 bytes in every idle connection's task instead of 32.
    fragments: Option<Box<(u8, Vec<u8>)>>,
    /// 32 bits (messages are at most 4 GiB), beside `since` in what one `usize` took.
    max: u32,
    /// When (the clock's milliseconds, wrapping) the message in progress began or, with
    /// none in progress, when input last came: what the connection's deadlines count from.
    pub(super) since: u32,
}

/// One frame, unmasked.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl FrameReader {
    /// Messages (and frames) larger than `max` bytes are refused.
    pub(crate) fn new(max: usize) -> Self {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        FrameReader { partial: Vec::new(), fragments: None, max, since: clock::elapsed_ms() as u32 }
    }

    /// A message has begun and is not whole yet (a frame cut short, or a fragmented
    /// message not ended).
    pub(super) fn in_progress(&self) -> bool {
        !self.partial.is_empty() || self.fragments.is_some()
    }

    /// The client showed life: the idle clock restarts (a message in progress keeps its
    /// read deadline).
    pub(super) fn heard(&mut self) {
        if !self.in_progress() {
            self.since = clock::elapsed_ms() as u32;
        }
    }

    /// Decodes what `data` completes, appending the messages to `out`.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut VecDeque<Msg>) -> Result<(), WsError> {
        let before = self.in_progress();
        let ended = if self.partial.is_empty() {
            let (used, ended) = self.decode_all(data, out)?;
            if used < data.len() {
                self.partial = data[used..].to_vec();
            }
            ended
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let (used, ended) = self.decode_all(&buf, out)?;
            if used < buf.len() {
                if used > 0 {
                    buf.drain(..used);
                    buf.shrink_to_fit();
                }
                self.partial = buf;
            }
            ended
        };
        // The clock restarts unless the same message is still in progress: a client cannot
        // keep one open by trickling its bytes (nor a fragmented one by its control frames).
        if !before || ended || !self.in_progress() {
            self.since = clock::elapsed_ms() as u32;
        }
        Ok(())
    }

    /// Decodes every whole frame at the start of `buf`; returns how many bytes they took and
    /// whether a data message ended among them.
    fn decode_all(&mut self, buf: &[u8], out: &mut VecDeque<Msg>) -> Result<(usize, bool), WsError> {
        let (mut pos, mut ended) = (0, false);
        while let Some((frame, used)) = self.decode_frame(&buf[pos..])? {
            pos += used;
            if let Some(m) = self.message(frame)? {
                ended |= matches!(m, Msg::Binary(_) | Msg::Text(_));
                out.push_back(m);
            }
        }
        Ok((pos, ended))
    }

    /// One frame from the start of `buf`, or `None` if it has not all arrived. The header is
    /// checked as soon as it is complete, so an oversized frame is refused before its
    /// payload is waited for.
    fn decode_frame(&self, buf: &[u8]) -> Result<Option<(Frame, usize)>, WsError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(WsError::Protocol("unknown opcode"));
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    let len = u64::from_be_bytes(a);
                    if len >> 63 != 0 {
                        return Err(WsError::Protocol("frame length has its top bit set"));
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if opcode >= 8 && (!fin || len > 125) {
            return Err(WsError::Protocol("control frames must be whole and at most 125 bytes"));
        }
        // A continuation adds to the message so far; control frames between fragments don't.
        let so_far = match self.fragments.as_deref() {
            Some((_, f)) if opcode == 0 => f.len() as u64,
            _ => 0,
        };
        if len.saturating_add(so_far) > u64::from(self.max) {
            return Err(WsError::TooBig(len.saturating_add(so_far)));
        }
        let len = len as usize; // ≤ max, a u32
        let Some(mask) = buf.get(at..at + 4) else { return Ok(None) };
        let start = at + 4;
        let Some(body) = buf.get(start..start + len) else { return Ok(None) };
        let payload = body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
        Ok(Some((Frame { fin, opcode, payload }, start + len)))
    }

    /// What a frame adds up to (a message, or nothing yet).
    fn message(&mut self, f: Frame) -> Result<Option<Msg>, WsError> {
        match f.opcode {
            8 => Ok(Some(Msg::Close(close_payload(&f.payload)?))),
            9 => Ok(Some(Msg::Ping(f.payload))),
            10 => Ok(None),
            0 => {
                let Some((_, so_far)) = self.fragments.as_deref_mut() else {
                    return Err(WsError::Protocol("continuation frame without a message to continue"));
                };
                so_far.extend_from_slice(&f.payload);
                if !f.fin {
                    return Ok(None);
                }
                let Some((opcode, whole)) = self.fragments.take().map(|b| *b) else { return Ok(None) };
                data_message(opcode, whole).map(Some)
            }
            opcode => {
                if self.fragments.is_some() {
                    return Err(WsError::Protocol("new message before the fragmented one ended"));
                }
                if f.fin {
                    data_message(opcode, f.payload).map(Some)
                } else {
                    self.fragments = Some(Box::new((opcode, f.payload)));
                    Ok(None)
                }
            }
        }
    }
}

fn data_message(opcode: u8, payload: Vec<u8>) -> Result<Msg, WsError> {
    if opcode == 1 {
        String::from_utf8(payload).map(Msg::Text).map_err(|_| WsError::NotUtf8)
    } else {
        Ok(Msg::Binary(payload))
    }
}

fn close_payload(p: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match p {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            // §7.4 and IANA's registry since: codes a peer may send (1012 service restart,
            // 1013 try again later, 1014 bad gateway were added after the RFC).
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(WsError::Protocol("close code not allowed on the wire"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::NotUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
pub(super) mod tests {
    use super::*;

    /// A client frame: masked with `mask`.
    pub(crate) fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    fn decode(bytes: &[u8], max: usize) -> Result<Vec<Msg>, WsError> {
        let mut r = FrameReader::new(max);
        let mut out = VecDeque::new();
        r.feed(bytes, &mut out)?;
        Ok(out.into())
    }

    #[test]
    fn every_length_encoding_round_trips_split_at_every_byte() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let mut stream = Vec::new();
        let sizes = [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000];
        for &n in &sizes {
            stream.extend(frame(true, 2, &big[..n], [1, 2, 3, 4]));
        }
        stream.extend(frame(true, 1, "héllo".as_bytes(), [9, 8, 7, 6]));
        let want: Vec<Msg> =
            sizes.iter().map(|&n| Msg::Binary(big[..n].to_vec())).chain([Msg::Text("héllo".into())]).collect();
        assert_eq!(decode(&stream, 1 << 20).unwrap(), want);
        // Arriving in pieces of every size, the same messages, and nothing kept at the end.
        for step in [1usize, 2, 3, 7, 100, 4096] {
            let mut r = FrameReader::new(1 << 20);
            let mut out = VecDeque::new();
            for piece in stream.chunks(step) {
                r.feed(piece, &mut out).unwrap();
            }
            assert_eq!(Vec::from(out), want, "pieces of {step}");
            assert_eq!(r.partial.capacity(), 0, "no buffer kept once every frame is whole");
        }
    }

    /// What the deadlines count from: the start of the message in progress (bytes trickling
    /// in, or control frames between fragments, do not move it), else the last input.
    #[test]
    fn the_deadline_clock_runs_from_a_messages_first_byte_until_it_is_whole() {
        let mut r = FrameReader::new(1 << 10);
        let mut out = VecDeque::new();
        let stale = |r: &mut FrameReader| {
            r.since = r.since.wrapping_add(1 << 30);
            r.since
        };
        let f = frame(true, 2, &[9; 40], [1; 4]);
        let mark = stale(&mut r);
        r.feed(&f[..10], &mut out).unwrap();
        assert_ne!(r.since, mark, "a message began");
        let mark = stale(&mut r);
        for b in &f[10..f.len() - 1] {
            r.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(r.since, mark, "its bytes trickling in");
        r.feed(&f[f.len() - 1..], &mut out).unwrap();
        assert_ne!(r.since, mark, "it is whole");
        assert!(!r.in_progress());
        // A fragmented message: its first fragment starts the clock; a ping between its
        // fragments does not move it; the last ends it.
        r.feed(&frame(false, 2, b"ab", [2; 4]), &mut out).unwrap();
        assert!(r.in_progress());
        let mark = stale(&mut r);
        r.feed(&frame(true, 9, b"p", [3; 4]), &mut out).unwrap();
        r.feed(&frame(false, 0, b"cd", [3; 4]), &mut out).unwrap();
        assert_eq!(r.since, mark);
        // A message ends and the next begins in one read: the clock restarts for the next.
        let mut tail = frame(true, 0, b"e", [4; 4]);
        tail.extend_from_slice(&f[..5]);
        r.feed(&tail, &mut out).unwrap();
        assert!(r.in_progress());
        assert_ne!(r.since, mark);
        // Idle: any input (a pong) restarts it.
        let mut r = FrameReader::new(1 << 10);
        let mark = stale(&mut r);
        r.feed(&frame(true, 10, b"", [5; 4]), &mut out).unwrap();
        assert_ne!(r.since, mark);
    }

    #[test]
    fn fragments_make_one_message_with_control_frames_between_them() {
        let mut s = frame(false, 2, b"ab", [0; 4]);
        s.extend(frame(true, 9, b"p", [5; 4]));
        s.extend(frame(false, 0, b"cd", [7; 4]));
        s.extend(frame(true, 0, b"e", [3; 4]));
        assert_eq!(decode(&s, 100).unwrap(), vec![Msg::Ping(b"p".to_vec()), Msg::Binary(b"abcde".to_vec())]);
    }

    #[test]
    fn close_frames_carry_their_code_and_reason() {
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        assert_eq!(decode(&frame(true, 8, &p, [1; 4]), 100).unwrap(), vec![Msg::Close(Some((1000, "bye".into())))]);
        assert_eq!(decode(&frame(true, 8, &[], [1; 4]), 100).unwrap(), vec![Msg::Close(None)]);
        for code in [1012u16, 1013, 1014, 3000, 4999] {
            let got = decode(&frame(true, 8, &code.to_be_bytes(), [1; 4]), 100).unwrap();
            assert_eq!(got, vec![Msg::Close(Some((code, String::new())))]);
        }
        for code in [1004u16, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(decode(&frame(true, 8, &code.to_be_bytes(), [1; 4]), 100).is_err(), "{code}");
        }
    }

    #[test]
    fn protocol_violations_are_refused_with_the_right_code() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (
                {
                    let mut f = frame(true, 2, b"x", [1; 4]);
                    f[1] &= 0x7F;
                    f.drain(2..6);
                    f
                },
                1002,
            ), // unmasked
            (
                {
                    let mut f = frame(true, 2, b"x", [1; 4]);
                    f[0] |= 0x40;
                    f
                },
                1002,
            ), // RSV1
            (frame(true, 3, b"x", [1; 4]), 1002),      // unknown opcode
            (frame(false, 9, b"x", [1; 4]), 1002),     // fragmented ping
            (frame(true, 9, &[0; 126], [1; 4]), 1002), // long ping
            (frame(true, 0, b"x", [1; 4]), 1002),      // lone continuation
            (
                {
                    let mut f = frame(false, 2, b"x", [1; 4]);
                    f.extend(frame(true, 2, b"y", [1; 4]));
                    f
                },
                1002,
            ),
            (frame(true, 8, &[3], [1; 4]), 1002),                   // one-byte close
            (frame(true, 8, &1005u16.to_be_bytes(), [1; 4]), 1002), // reserved code
            (frame(true, 1, &[0xFF, 0xFE], [1; 4]), 1007),          // not UTF-8
            (
                {
                    let mut f = frame(false, 1, &[0xC3], [1; 4]);
                    f.extend(frame(true, 0, &[0x28], [1; 4]));
                    f
                },
                1007,
            ),
            (frame(true, 2, &[0; 101], [1; 4]), 1009), // over the limit
            (
                {
                    let mut f = frame(false, 2, &[0; 60], [1; 4]);
                    f.extend(frame(true, 0, &[0; 60], [1; 4]));
                    f
                },
                1009,
            ),
        ];
        for (i, (bytes, code)) in cases.iter().enumerate() {
            let e = decode(bytes, 100).expect_err(&format!("case {i} must be refused"));
            assert_eq!(e.close_code(), *code, "case {i}: {e}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        // Only the header of a 1 GiB frame: refused at once, not buffered while it "arrives".
        let mut h = vec![0x82, 0x80 | 127];
        h.extend_from_slice(&(1u64 << 30).to_be_bytes());
        assert!(matches!(decode(&h, 1 << 20), Err(WsError::TooBig(_))));
        let mut h = vec![0x82, 0x80 | 127];
        h.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(decode(&h, 1 << 20), Err(WsError::Protocol(_))));
    }

    #[test]
    fn an_idle_reader_is_small() {
        // It sits in every idle connection: `max` in 32 bits leaves room for `since`.
        assert_eq!(std::mem::size_of::<FrameReader>(), 40);
    }
}

//! The check behind the `ws_frame` fuzz target in `fuzz/` (cargo fuzz, libFuzzer), shared
//! with the corpus replay in `tests/fuzz_corpus.rs` (see arena-core's `fuzzing`). Not an API.

use std::collections::VecDeque;

use crate::ws::{FrameReader, Msg};

/// Message limits the target picks from.
const LIMITS: [usize; 4] = [0, 125, 1024, 1 << 20];

/// `data`: one byte that picks the message limit (low two bits) and a piece size of 1 to 16
/// bytes (high four), then what a client sends on `/yws`. Its frames decode into the same
/// messages, and then the same failure (close code and reason) or none, whether the bytes
/// come at once or piece by piece; no message is over the limit, and no control message
/// over 125 bytes.
pub fn ws_frame(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let max = LIMITS[usize::from(pick & 3)];
    let whole = read(max, std::iter::once(bytes));
    let pieces = read(max, bytes.chunks(usize::from(pick >> 4) + 1));
    assert!(whole == pieces, "at once {whole:?}, piece by piece {pieces:?}");
    for m in &whole.0 {
        let (len, limit) = match m {
            Msg::Binary(b) => (b.len(), max),
            Msg::Text(t) => (t.len(), max),
            Msg::Ping(p) => (p.len(), 125),
            Msg::Close(c) => (c.as_ref().map_or(0, |(_, r)| r.len() + 2), 125),
        };
        assert!(len <= limit, "a message of {len} bytes passed a limit of {limit}");
    }
}

/// The messages decoded, and the failure that ended the input (close code, reason).
fn read<'a>(max: usize, pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<Msg>, Option<(u16, String)>) {
    let mut r = FrameReader::new(max);
    let mut out = VecDeque::new();
    for p in pieces {
        if let Err(e) = r.feed(p, &mut out) {
            return (out.into(), Some((e.close_code(), e.to_string())));
        }
    }
    (out.into(), None)
}

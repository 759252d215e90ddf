//! Replays the `ws_frame` fuzzer's corpus (`fuzz/corpus/ws_frame/`) through the check the
//! target runs (`arena_bootstrap::fuzzing::ws_frame`), without nightly or libFuzzer; see
//! arena-core's `tests/fuzz_corpus.rs`.
#![allow(clippy::panic, reason = "tests fail loudly")]

use arena_bootstrap::fuzzing::ws_frame;
use arena_core::fuzzing;

#[test]
fn ws_frame_corpus() {
    if let Err(e) = fuzzing::replay("ws_frame", ws_frame) {
        panic!("{e}");
    }
}

/// A client frame: `fin`, `opcode`, `payload` masked with `mask`, its length in the form
/// `form` picks (0: shortest, 1: 16-bit, 2: 64-bit).
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], form: u8) -> Vec<u8> {
    let mut v = vec![u8::from(fin) << 7 | opcode];
    match (form, payload.len()) {
        (0, n) if n < 126 => v.push(0x80 | n as u8),
        (0 | 1, n) if n <= 0xFFFF => {
            v.push(0x80 | 126);
            v.extend((n as u16).to_be_bytes());
        }
        (_, n) => {
            v.push(0x80 | 127);
            v.extend((n as u64).to_be_bytes());
        }
    }
    v.extend(mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// A pick byte (limit, piece size), then frames.
fn seed(pick: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![pick];
    for f in frames {
        v.extend(f);
    }
    v
}

fn seeds() -> Vec<Vec<u8>> {
    let m = [0x12, 0x34, 0x56, 0x78];
    // y-websocket messages: sync step 1 (empty state vector), an update, awareness.
    let step1 = [0, 0, 1, 0];
    let update = [0, 2, 11, 1, 1, 5, 0, 4, 1, 4, b'c', b'o', b'd', b'e', 0];
    let awareness = b"\x01\x0c\x01\x07\x01\x07{\"a\":1}".to_vec();
    let big = vec![b'x'; 300];
    vec![
        seed(0x02, &[frame(true, 2, &step1, m, 0), frame(true, 2, &update, m, 0)]),
        seed(0x32, &[frame(true, 2, &awareness, m, 0), frame(true, 9, b"ping", m, 0)]),
        seed(0x03, &[frame(true, 1, "héllo 😀".as_bytes(), m, 0), frame(true, 2, &big, m, 1)]),
        seed(0xf3, &[frame(true, 2, b"long form", m, 2), frame(true, 1, b"", [0; 4], 0)]),
        // Fragments with a ping between them, then a close with a reason.
        seed(
            0x12,
            &[
                frame(false, 1, "ab".as_bytes(), m, 0),
                frame(true, 9, b"", m, 0),
                frame(false, 0, "cd".as_bytes(), m, 0),
                frame(true, 0, "é".as_bytes(), m, 0),
                frame(true, 8, b"\x03\xe8bye", m, 0),
            ],
        ),
        seed(0x02, &[frame(true, 10, b"pong", m, 0), frame(true, 8, b"", m, 0)]),
        // Refused: over the limit, unmasked, a one-byte close, invalid UTF-8, reserved bits.
        seed(0x01, &[frame(true, 2, &big, m, 1)]),
        seed(0x02, &[vec![0x82, 0x01, 0x00]]),
        seed(0x02, &[frame(true, 8, b"\x03", m, 0)]),
        seed(0x02, &[frame(true, 1, b"\xff\xfe", m, 0)]),
        seed(0x02, &[vec![0xc2, 0x80, 0, 0, 0, 0]]),
        // A frame cut short.
        seed(0x52, &[frame(true, 2, &big, m, 1)[..100].to_vec()]),
    ]
}

#[test]
fn seeds_pass() {
    for s in seeds() {
        ws_frame(&s);
    }
}

#[test]
#[ignore = "writes fuzz/corpus: run by scripts/fuzz.sh seed"]
fn write_seeds() -> std::io::Result<()> {
    fuzzing::write_seeds("ws_frame", &seeds())
}

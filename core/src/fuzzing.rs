//! The checks behind the fuzz targets in `fuzz/` (cargo fuzz, libFuzzer), shared with the
//! corpus replay in `tests/fuzz_corpus.rs`, so that `cargo test` replays every input the
//! fuzzers kept without nightly or libFuzzer. Each check takes the fuzzer's bytes and
//! returns, or panics: when a property fails, or when the code under test panics. Not an
//! API: hidden from the docs, and free to change with the targets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a harness: a broken fixture or a failed property is a panic for libFuzzer to catch"
)]

mod decoders;
mod fixture;
mod json;
mod seeds;
mod update_gate;

pub use decoders::{grant, wire};
pub use json::json;
pub use seeds::seeds;
pub use update_gate::update_gate;

/// The fuzzers' room, for the other crates' seeds: the room key, the room, its writers'
/// identities (host, candidate, node), every admission and the room's log.
pub fn fixture_room(
) -> (crate::Identity, crate::RoomId, Vec<crate::Identity>, Vec<crate::Admission>, Vec<crate::Envelope>) {
    let f = fixture::fixture();
    let writers = f.writers.iter().map(|w| w.id.clone()).collect();
    (f.room_key.clone(), f.room, writers, f.admissions.clone(), f.base.clone())
}

/// arena-core's targets by name, with their checks.
pub const TARGETS: &[(&str, fn(&[u8]))] =
    &[("update_gate", update_gate), ("wire", wire), ("grant", grant), ("json", json)];

/// Where target `target`'s corpus is kept: `fuzz/corpus/<target>` in this repository.
pub fn corpus_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

/// Where the inputs that crashed target `target` are kept, each fixed and with a
/// regression test: `fuzz/regressions/<target>` (apart from the corpus, which `cargo fuzz
/// cmin` renames and prunes).
pub fn regressions_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target)
}

/// Runs `check` on every input of `target`'s corpus and of its regressions, in name order.
/// `Err` names the inputs that fail (each panicked: its message is on stderr), or says the
/// corpus is missing or empty.
pub fn replay(target: &str, check: fn(&[u8])) -> Result<usize, String> {
    let dir = corpus_dir(target);
    let read = |e: std::io::Error| format!("{target}: reading {}: {e}", dir.display());
    let list = |d: &std::path::Path| {
        std::fs::read_dir(d).and_then(|d| d.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>())
    };
    let mut files = list(&dir).map_err(read)?;
    files.sort();
    let mut regressions = list(&regressions_dir(target)).unwrap_or_default();
    regressions.sort();
    files.extend(regressions);
    let mut failed = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).map_err(read)?;
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            failed.push(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
    }
    if files.is_empty() {
        return Err(format!("{target}: the corpus at {} is empty", dir.display()));
    }
    if !failed.is_empty() {
        return Err(format!("{target}: {} of {} inputs fail: {failed:?}", failed.len(), files.len()));
    }
    Ok(files.len())
}

/// Writes `seeds` into `target`'s corpus as `seed-00`, `seed-01`, …
pub fn write_seeds(target: &str, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir)?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), s)?;
    }
    Ok(())
}

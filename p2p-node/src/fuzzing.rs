//! The check behind the `recording` fuzz target in `fuzz/` (cargo fuzz, libFuzzer), shared
//! with the corpus replay in `tests/fuzz_corpus.rs` (see arena-core's `fuzzing`). Not an API.

use std::path::PathBuf;

use crate::recording::{Record, RecordingFile};
use crate::replay::{self, Pins};

/// `data` as a recording file: read, every record decoded and every seal checked, verified
/// (unpinned, and pinned to what its header says: the same verdict), replayed into a
/// timeline, rendered and exported. Nothing panics; a recording that verifies has every
/// record chained and replays.
pub fn recording(data: &[u8]) {
    let Ok(file) = RecordingFile::parse(PathBuf::from("fuzz.arena"), data) else { return };
    for r in &file.records {
        if let Ok(Record::Seal(seal)) = r.decode(file.header.room) {
            let _ = file.seal_ok(r.index, &seal);
        }
    }
    let report = replay::verify(&file, &Pins::default());
    let _ = (report.problem(), replay::unpinned_notice(&report));
    let pinned = replay::verify(&file, &Pins { room: Some(file.header.room), recorder: Some(file.header.recorder) });
    assert_eq!(pinned.first_break, report.first_break, "pinning the file's own header changed the verdict");
    let timeline = replay::timeline(&file);
    if report.ok() {
        assert!(file.records.iter().all(|r| r.chain_ok), "a recording that verifies has a broken chain");
        assert!(timeline.is_ok(), "a recording that verifies does not replay: {:?}", timeline.as_ref().err());
    }
    if let Ok(t) = timeline {
        let _ = (replay::render(&t), replay::export_json(&t), replay::export_html(&t), replay::replay_codes(&t));
    }
    let _ = replay::code_at(&file, None);
}

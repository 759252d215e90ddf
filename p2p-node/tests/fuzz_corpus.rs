//! Replays the `recording` fuzzer's corpus (`fuzz/corpus/recording/`) through the check the
//! target runs (`arena_node::fuzzing::recording`), without nightly or libFuzzer; see
//! arena-core's `tests/fuzz_corpus.rs`.
#![allow(clippy::panic, reason = "tests fail loudly")]

use anyhow::Result;
use arena_core::fuzzing;
use arena_core::{Delegation, Identity, Invite, Revocation, Role, Room, RoomConfig, Store};
use arena_node::fuzzing::recording;
use arena_node::recording::RecordingStore;

const T0: u64 = 1_700_000_000_000;

#[test]
fn recording_corpus() {
    if let Err(e) = fuzzing::replay("recording", recording) {
        panic!("{e}");
    }
}

/// Found by the `recording` fuzz target: the host's code insertion with its root renamed
/// `runs` made every `runs()` read quadratic (the timeline stalled past libFuzzer's 10 s).
/// The update gate now refuses a string outside `code`.
#[test]
fn a_string_in_runs_does_not_stall_the_timeline() {
    let name = "timeout-8265587c09b379203a7f2c76f23ba63b7b8a5a86";
    let input = std::fs::read(fuzzing::regressions_dir("recording").join(name)).expect("the input is kept");
    let start = std::time::Instant::now();
    recording(&input);
    let file = arena_node::recording::RecordingFile::parse("timeout".into(), &input).expect("it parses");
    assert!(arena_node::replay::timeline(&file).is_err(), "the string in runs was applied");
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "took {:?}", start.elapsed());
}

/// A recording of the fuzzers' room by an observer: admissions, the room's log in two
/// sealed parts, an awareness change, a delegation and a revocation; closed, or (`killed`)
/// flushed and left without its closing seal.
fn record(killed: bool) -> Result<Vec<u8>> {
    let (room_key, room, writers, admissions, base) = fuzzing::fixture_room();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.arena");
    let me = Identity::from_passphrase("fuzz/recorder");
    let store = RecordingStore::open(&path, room, me.clone(), T0)?;
    let mut rec = Room::open(room, me, 0, store, RoomConfig::default(), T0)?;
    rec.join(&Invite::issue(&room_key, Role::Observer, T0 / 1000 + 3600, 0, 99).to_token(), "recorder", T0)?;
    for a in &admissions {
        rec.admit(a, None)?;
    }
    let half = base.len() / 2;
    rec.receive(base[..half].to_vec(), T0 + 1)?;
    rec.store_mut().seal()?;
    rec.store_mut().record_awareness(T0 + 2, r#"{"7":{"user":{"name":"Ada"},"cursor":3}}"#)?;
    rec.delegate(&Delegation::sign(&Invite::issue(&room_key, Role::Candidate, T0 / 1000 + 3600, 0, 98)), None)?;
    rec.receive(base[half..].to_vec(), T0 + 3)?;
    rec.apply_revocation(&Revocation::sign(room, &writers[0], writers[1].public(), 1000, T0 + 4))?;
    if killed {
        rec.store_mut().flush()?;
        std::mem::forget(rec);
    } else {
        drop(rec);
    }
    Ok(std::fs::read(&path)?)
}

fn seeds() -> Result<Vec<Vec<u8>>> {
    let closed = record(false)?;
    let killed = record(true)?;
    let mut torn = closed.clone();
    torn.truncate(closed.len() - 40);
    let mut flipped = closed.clone();
    flipped[200] ^= 1;
    let mut v1 = closed[..81].to_vec();
    v1[8] = 1;
    Ok(vec![closed.clone(), killed, torn, flipped, closed[..81].to_vec(), v1])
}

#[test]
fn seeds_pass() -> Result<()> {
    let seeds = seeds()?;
    let file = arena_node::recording::RecordingFile::parse("seed".into(), &seeds[0])?;
    let report = arena_node::replay::verify(&file, &Default::default());
    anyhow::ensure!(report.ok(), "the closed recording does not verify: {:?}", report.problem());
    for s in &seeds {
        recording(s);
    }
    Ok(())
}

#[test]
#[ignore = "writes fuzz/corpus: run by scripts/fuzz.sh seed"]
fn write_seeds() -> Result<()> {
    Ok(fuzzing::write_seeds("recording", &seeds()?)?)
}

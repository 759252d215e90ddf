//! Replays the fuzzers' corpus (`fuzz/corpus/<target>/`) through the checks the fuzz targets
//! run (`arena_core::fuzzing`): a normal test, without nightly or libFuzzer. Every crash a
//! fuzzer found is in the corpus too, besides its regression test. `scripts/fuzz.sh` runs the
//! fuzzers themselves; `scripts/fuzz.sh seed` rewrites the seeds (`write_seeds` below).

#![allow(clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use arena_core::fuzzing::{self, TARGETS};

fn replay(target: &str) {
    let (_, check) = TARGETS.iter().find(|(name, _)| *name == target).expect("a target");
    if let Err(e) = fuzzing::replay(target, *check) {
        panic!("{e}");
    }
}

#[test]
fn update_gate_corpus() {
    replay("update_gate");
}

#[test]
fn wire_corpus() {
    replay("wire");
}

#[test]
fn grant_corpus() {
    replay("grant");
}

#[test]
fn json_corpus() {
    replay("json");
}

/// The seeds pass their checks: the fixture still builds and the harness does not refuse
/// everything.
#[test]
fn seeds_pass() {
    for (target, input) in fuzzing::seeds() {
        let (_, check) = TARGETS.iter().find(|(name, _)| *name == target).expect("a target");
        check(&input);
    }
}

#[test]
#[ignore = "writes fuzz/corpus: run by scripts/fuzz.sh seed"]
fn write_seeds() -> std::io::Result<()> {
    for (target, _) in TARGETS {
        let seeds: Vec<Vec<u8>> = fuzzing::seeds().into_iter().filter(|(t, _)| t == target).map(|(_, s)| s).collect();
        fuzzing::write_seeds(target, &seeds)?;
    }
    Ok(())
}

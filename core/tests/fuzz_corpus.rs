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

/// Every crash the fuzzers found, by name (in `fuzz/regressions/`), and what it was. Each
/// failed its check before its fix (see the commit that added it).
#[test]
fn crashes_found_by_the_fuzzers() {
    let crashes: &[(&str, &str, &str)] = &[
        ("json", "crash-7632e5b4c8d8b3199ea700637d3cacc74e5837f3", "Json::to_any counted an overridden duplicate key"),
        (
            "update_gate",
            "crash-239c17c542fa5149b4c430e1c95c8bfd81f61014",
            "the gate passed an Any string yrs cannot read",
        ),
        (
            "update_gate",
            "crash-277625726af0f0722ea179b0886ab28e99779677",
            "an unknown right origin left an item pending",
        ),
        ("update_gate", "crash-de43cac0f1583cc948081422160dca82f6b98051", "an empty struct left pending"),
        (
            "update_gate",
            "crash-728f9f034f59095c3e1a4aece25728c5ddac3e62",
            "unsorted deleted ranges, re-encoded past 2^31",
        ),
        (
            "update_gate",
            "crash-13c0d32799d0a4095f534d8185be89cb744ae3d2",
            "a node's envelope under the host's client id, accepted only batched",
        ),
    ];
    for (target, name, what) in crashes {
        let (_, check) = TARGETS.iter().find(|(t, _)| t == target).expect("a target");
        let input = std::fs::read(fuzzing::regressions_dir(target).join(name)).expect("the crash is kept");
        if std::panic::catch_unwind(|| check(&input)).is_err() {
            panic!("{target}/{name} fails again: {what}");
        }
    }
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

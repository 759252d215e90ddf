//! Criterion settings shared by the benches: few samples, short times, so the whole
//! `cargo bench -p arena-benches` fits in a few minutes on two cores. Every routine here is
//! a whole trace replay (milliseconds to seconds), so ten samples already say a lot; for
//! the careful side-by-side numbers run the `arena-compare` binary. Criterion's "Unable to
//! complete 10 samples in 2.0s" warnings are expected for the whole-trace routines: they run
//! 10 times regardless, which is the point of the short target.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use criterion::Criterion;

/// 10 samples, 0.5 s warm-up, 2 s measurement target (long routines run 10 times anyway).
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// `iters` runs of `routine`, each on a fresh input from `setup` (not timed); the input and
/// the output are dropped outside the timed region.
pub fn timed<I, O>(iters: u64, mut setup: impl FnMut() -> I, mut routine: impl FnMut(&mut I) -> O) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut input = setup();
        let t = Instant::now();
        let out = routine(&mut input);
        total += t.elapsed();
        drop(std::hint::black_box(out));
        drop(input);
    }
    total
}

/// Loads a trace or exits with a clear message (the benches need the trace files).
pub fn trace(name: &str) -> arena_benches::Trace {
    match arena_benches::load_trace(name) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot load trace {name}: {e:#}");
            std::process::exit(1);
        }
    }
}

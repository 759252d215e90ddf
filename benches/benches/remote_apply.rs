//! Remote path: what a replica does with the updates of a whole trace typed elsewhere.
//! Raw yrs decodes and applies the per-patch updates (one transaction each, and 1000 per
//! transaction); the room receives the signed envelopes from their wire bytes
//! (`Room::receive`: decode, check role/chain/client ids, batch-verify the signatures,
//! apply in one transaction, append to the log), in batches of 1000 (catch-up) and one by
//! one (live, the last 2,000 onto a replica already holding the rest); automerge applies
//! the changes 1000 per `apply_changes`. Throughput is in envelopes / updates / changes.
//!
//! Traces: rustcode for yrs and the room; automerge on sveltecomponent only (its batch
//! apply walks the whole text per call: ~2.7 s a pass on rustcode; see arena-compare).

// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common.rs"]
mod common;

use arena_benches::*;
use arena_core::MemoryStore;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};

const LIVE: usize = 2_000;

fn remote_apply(c: &mut Criterion) {
    let cast = Cast::default();
    for (name, with_room, with_automerge) in [("rustcode", true, false), ("sveltecomponent", false, true)] {
        let trace = common::trace(name);
        let mut g = c.benchmark_group(format!("remote_apply/{name}"));
        g.sampling_mode(SamplingMode::Flat);
        if with_room {
            let (_, _, updates) = yrs_local(&trace.patches, true);
            let (_, rec) = record(&cast, &trace.patches).expect("record");
            let wire = rec.wire();
            g.throughput(Throughput::Elements(updates.len() as u64));
            g.bench_function(BenchmarkId::new("raw_yrs", "apply/txn-each"), |b| {
                b.iter_custom(|n| common::timed(n, || (), |_| yrs_apply_each(&updates).expect("apply")))
            });
            g.bench_function(BenchmarkId::new("raw_yrs", "apply/1000-per-txn"), |b| {
                b.iter_custom(|n| common::timed(n, || (), |_| yrs_apply_batched(&updates, 1000).expect("apply")))
            });
            g.throughput(Throughput::Elements(wire.len() as u64));
            g.bench_function(BenchmarkId::new("arena", "Room::receive/batch-1000"), |b| {
                b.iter_custom(|n| {
                    common::timed(
                        n,
                        || arena_peer(&cast, rec.room, &rec.admissions, MemoryStore::new()).expect("peer"),
                        |peer| receive_into(peer, rec.room, &wire, 1000).expect("receive"),
                    )
                })
            });
            let split = wire.len() - LIVE;
            g.throughput(Throughput::Elements(LIVE as u64));
            g.bench_function(BenchmarkId::new("arena", format!("Room::receive/one-by-one-last-{LIVE}")), |b| {
                b.iter_custom(|n| {
                    common::timed(
                        n,
                        || {
                            let mut peer =
                                arena_peer(&cast, rec.room, &rec.admissions, MemoryStore::new()).expect("peer");
                            receive_into(&mut peer, rec.room, &wire[..split], 1000).expect("receive");
                            peer
                        },
                        |peer| receive_into(peer, rec.room, &wire[split..], 1).expect("receive"),
                    )
                })
            });
        }
        if with_automerge {
            let (mut doc, _) = automerge_local(&trace.patches).expect("automerge");
            let changes = automerge_changes(&mut doc);
            g.throughput(Throughput::Elements(changes.len() as u64));
            g.bench_function(BenchmarkId::new("automerge", "apply_changes/1000-per-call"), |b| {
                b.iter_custom(|n| common::timed(n, || (), |_| automerge_apply(&changes, 1000).expect("apply")))
            });
        }
        g.finish();
    }
}

criterion_group! { name = benches; config = common::config(); targets = remote_apply }
criterion_main!(benches);

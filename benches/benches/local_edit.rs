//! Local edits, one transaction per patch as an editor makes them: raw yrs (transaction
//! only, and transaction + `encode_update_v1` with the update dropped, as an editor that
//! sends it), `RoomDoc::edit` (the room document alone),
//! and `Room::edit` (edit + signed envelope + log append + checkpoints every 1000) on the
//! in-memory and the sled store; automerge (splice + commit per patch) where it is cheap
//! enough. Throughput is in patches.
//!
//! Traces: sveltecomponent (whole), rustcode (whole; automerge left out: ~6 s a pass),
//! and the first 20,000 patches of automerge-paper (the whole trace is ~17 s a pass for
//! automerge alone; `arena-compare` runs it whole).

// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common.rs"]
mod common;

use arena_benches::*;
use arena_core::{MemoryStore, RoomDoc, SledDb};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};

fn local_edit(c: &mut Criterion) {
    let cast = Cast::default();
    let paper = common::trace("automerge-paper").prefix(20_000);
    let cases = [(common::trace("sveltecomponent"), true), (common::trace("rustcode"), false), (paper, true)];
    for (trace, with_automerge) in &cases {
        let patches = &trace.patches;
        let mut g = c.benchmark_group(format!("local_edit/{}", trace.name));
        g.sampling_mode(SamplingMode::Flat).throughput(Throughput::Elements(patches.len() as u64));
        g.bench_function(BenchmarkId::new("raw_yrs", "txn"), |b| {
            b.iter_custom(|n| common::timed(n, || (), |_| yrs_local(patches, false)))
        });
        g.bench_function(BenchmarkId::new("raw_yrs", "txn+update"), |b| {
            b.iter_custom(|n| common::timed(n, || (), |_| yrs_local_send(patches)))
        });
        g.bench_function(BenchmarkId::new("arena", "RoomDoc::edit"), |b| {
            b.iter_custom(|n| {
                common::timed(
                    n,
                    || RoomDoc::new(7),
                    |d| {
                        for p in patches {
                            let _ = d.edit(|e| e.splice_code(p.pos, p.del, &p.ins));
                        }
                    },
                )
            })
        });
        g.bench_function(BenchmarkId::new("arena", "Room::edit/memory"), |b| {
            b.iter_custom(|n| {
                common::timed(
                    n,
                    || arena_room(&cast, MemoryStore::new()).expect("room"),
                    |room| arena_local(room, patches, T0 + 1, false).expect("edits"),
                )
            })
        });
        g.bench_function(BenchmarkId::new("arena", "Room::edit/sled"), |b| {
            b.iter_custom(|n| {
                common::timed(
                    n,
                    || {
                        let dir = tempfile::tempdir().expect("tempdir");
                        let db = SledDb::open(dir.path()).expect("sled");
                        let room = arena_room(&cast, db.room(&cast.room_key.public()).expect("store")).expect("room");
                        (room, db, dir)
                    },
                    |(room, _, _)| arena_local(room, patches, T0 + 1, false).expect("edits"),
                )
            })
        });
        if *with_automerge {
            g.bench_function(BenchmarkId::new("automerge", "splice+commit"), |b| {
                b.iter_custom(|n| common::timed(n, || (), |_| automerge_local(patches).expect("automerge")))
            });
        }
        g.finish();
    }
}

criterion_group! { name = benches; config = common::config(); targets = local_edit }
criterion_main!(benches);

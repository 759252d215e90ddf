//! History: cold load, time travel and checkpoint size on a long room.
//!
//! Setup (untimed, once): the automerge-paper trace (259,778 patches; another sequential
//! trace with `ARENA_BENCH_HISTORY_TRACE=rustcode`) is typed into a room on sled (one
//! envelope per patch, a checkpoint every 1000 envelopes, versions after 10%, 50% and 90%
//! of the patches), into raw yrs (snapshots at the same points) and into automerge (heads
//! at the same points). That takes about a minute.
//!
//! - `cold_load`: `Room::open` on the open `SledDb` (latest checkpoint + the log after it);
//!   the same from a closed database (`SledDb::open` first); raw yrs loading one v1 state;
//!   `AutoCommit::load` of automerge's `save()`.
//! - `time_travel`: `Room::code_at(Cut::Version)` / `Cut::LogIndex` at the three points and at
//!   the worst log cut (999 envelopes after a checkpoint, near the end); raw yrs
//!   `Text::diff_range(snapshot)`; automerge `text_at(heads)`.
//! - checkpoint sizes are printed (not timed).

// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common.rs"]
mod common;

use arena_benches::automerge::{AutoCommit, ReadDoc};
use arena_benches::*;
use arena_core::{Cut, Room, RoomConfig, SledDb, Store};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn history(c: &mut Criterion) {
    let name = std::env::var("ARENA_BENCH_HISTORY_TRACE").unwrap_or_else(|_| "automerge-paper".into());
    let trace = common::trace(&name);
    let n = trace.patches.len();
    let marks = [n / 10, n / 2, n * 9 / 10];
    let pct = |m: usize| format!("{}pct", (m * 100 + n / 2) / n);
    let cast = Cast::default();

    eprintln!("history setup: typing {name} ({n} patches) into a sled room, raw yrs and automerge…");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = SledDb::open(dir.path()).expect("sled");
    let room_id = cast.room_key.public();
    let mut room = arena_room(&cast, db.room(&room_id).expect("store")).expect("room");
    let versions = arena_local_with_versions(&mut room, &trace.patches, T0 + 1, &marks).expect("edits");
    room.flush().expect("flush");
    assert_eq!(room.doc().code(), trace.end);
    let (ydoc, ytext, _, snaps) = yrs_local_marked(&trace.patches, &marks);
    let (mut am, am_text, heads) = automerge_local_marked(&trace.patches, &marks).expect("automerge");
    let am_save = am.save();
    let arena_state = room.doc().encode_state();
    let yrs_v1 = yrs_state(&ydoc);
    let cps = room.store().checkpoints().expect("checkpoints");
    let log_len = room.store().log_len();
    println!(
        "checkpoint size after {name}: arena RoomDoc state {} B; raw yrs v1 {} B, v2 {} B; automerge save() {} B \
         ({} envelopes, {} checkpoints, sled dir {} B)",
        arena_state.len(),
        yrs_v1.len(),
        yrs_state_v2(&ydoc).len(),
        am_save.len(),
        log_len,
        cps.len(),
        dir_size(dir.path())
    );

    // ---- time travel (on the writer's replica)
    let mut g = c.benchmark_group(format!("time_travel/{name}"));
    for (i, (id, idx)) in versions.iter().enumerate() {
        let p = pct(marks[i]);
        let cut = Cut::Version(id.clone());
        assert_eq!(room.code_at(&cut).expect("code_at"), yrs_text_at(&ydoc, &ytext, &snaps[i]));
        g.bench_function(BenchmarkId::new("arena/Cut::Version", &p), |b| {
            b.iter(|| room.code_at(&cut).expect("code_at"))
        });
        let cut = Cut::LogIndex(*idx);
        g.bench_function(BenchmarkId::new("arena/Cut::LogIndex", &p), |b| {
            b.iter(|| room.code_at(&cut).expect("code_at"))
        });
        g.bench_function(BenchmarkId::new("raw_yrs/diff_range(snapshot)", &p), |b| {
            b.iter(|| yrs_text_at(&ydoc, &ytext, &snaps[i]))
        });
        g.bench_function(BenchmarkId::new("automerge/text_at(heads)", &p), |b| {
            b.iter(|| am.text_at(&am_text, &heads[i]).expect("text_at"))
        });
    }
    if let Some(&(a, b)) =
        cps.windows(2).map(|w| (w[0].0, w[1].0)).collect::<Vec<_>>().iter().max_by_key(|(a, b)| b - a)
    {
        let cut = Cut::LogIndex(b - 1);
        g.bench_function(BenchmarkId::new("arena/Cut::LogIndex", format!("worst-{}-after-{a}", b - 1 - a)), |bch| {
            bch.iter(|| room.code_at(&cut).expect("code_at"))
        });
    }
    g.finish();

    // ---- cold load
    let end = room.doc().code();
    drop(room);
    let cfg = RoomConfig::default();
    let mut g = c.benchmark_group(format!("cold_load/{name}"));
    g.bench_function("arena/Room::open(open SledDb)", |b| {
        b.iter_custom(|iters| {
            common::timed(
                iters,
                || Some(db.room(&room_id).expect("store")),
                |store| {
                    let store = store.take().expect("a store per iteration");
                    let r = Room::open(room_id, cast.host.clone(), 1, store, cfg.clone(), T0).expect("open");
                    debug_assert_eq!(r.doc().code(), end);
                    r
                },
            )
        })
    });
    g.bench_function("raw_yrs/load-v1-state", |b| b.iter(|| yrs_load(&yrs_v1).expect("load")));
    g.bench_function("automerge/AutoCommit::load", |b| b.iter(|| AutoCommit::load(&am_save).expect("load")));
    drop(db);
    g.bench_function("arena/SledDb::open+Room::open", |b| {
        b.iter(|| {
            let db = SledDb::open(dir.path()).expect("sled");
            let r = Room::open(room_id, cast.host.clone(), 1, db.room(&room_id).expect("store"), cfg.clone(), T0)
                .expect("open");
            (r, db)
        })
    });
    g.finish();
    let _ = am.get_heads();
}

criterion_group! { name = benches; config = common::config(); targets = history }
criterion_main!(benches);

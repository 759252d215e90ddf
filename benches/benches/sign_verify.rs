//! Signing and verification alone, per envelope, apart from the CRDT work: Ed25519 sign,
//! `Envelope::seal` (hash of the update + sign), single verification (with and without a
//! cached key), batch verification per envelope for several batch sizes, and the non-crypto
//! checks (`Ledger::check`). Envelopes are real ones: the first 4,096 of rustcode.

// A benchmark whose setup fails has nothing to measure: stop loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "common.rs"]
mod common;

use arena_benches::*;
use arena_core::{ChainHead, Checked, Envelope, Ledger};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn sign_verify(c: &mut Criterion) {
    let cast = Cast::default();
    let trace = common::trace("rustcode");
    let (_, rec) = record(&cast, &trace.patches[..4_095]).expect("record");
    let envs = &rec.envelopes;
    let mut ledger = Ledger::new(rec.room);
    for a in &rec.admissions {
        ledger.admit(a, None).expect("admit");
    }
    let expect = |e: &Envelope| Some(ChainHead { next_seq: e.seq, last_hash: e.prev });
    let checked: Vec<Checked> = envs.iter().map(|e| ledger.check(e, expect(e)).expect("check")).collect();
    let msgs: Vec<Vec<u8>> = envs.iter().map(Envelope::signed_bytes).collect();

    let mut g = c.benchmark_group("sign_verify");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % envs.len();
        i
    };
    g.bench_function("ed25519_sign", |b| b.iter(|| cast.host.sign(&msgs[next()])));
    g.bench_function("Envelope::seal", |b| {
        b.iter(|| {
            let e = &envs[next()];
            Envelope::seal(e.room, &cast.host, e.seq, e.prev, e.session, e.update.clone())
        })
    });
    g.bench_function("Envelope::verify_signature", |b| b.iter(|| envs[next()].verify_signature().is_ok()));
    g.bench_function("Ledger::verify_one", |b| {
        b.iter(|| {
            let k = next();
            ledger.verify_one(&envs[k], &checked[k]).is_ok()
        })
    });
    g.bench_function("Ledger::check", |b| {
        b.iter(|| {
            let e = &envs[next()];
            ledger.check(e, expect(e)).is_ok()
        })
    });
    g.bench_function("Envelope::hash", |b| b.iter(|| envs[next()].hash()));
    let refs: Vec<&Envelope> = envs.iter().collect();
    for size in [1usize, 16, 64, 256, 1024] {
        g.throughput(Throughput::Elements(size as u64));
        let mut start = 0usize;
        g.bench_with_input(BenchmarkId::new("Ledger::verify_batch", size), &size, |b, &size| {
            b.iter(|| {
                start = (start + size) % (envs.len() - size);
                ledger.verify_batch(&refs[start..start + size], &checked[start..start + size]).is_ok()
            })
        });
    }
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = sign_verify }
criterion_main!(benches);

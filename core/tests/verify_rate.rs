//! The remote path's signature work, measured, not asserted (speed is never a test verdict
//! here): envelopes per second a replica verifies and applies, batched and one by one.
//!
//! ```text
//! cargo test --release -p arena-core --test verify_rate -- --ignored --nocapture
//! ```
//!
//! Two writers (host and candidate) type 10,000 characters each, one envelope per
//! character; a fresh replica receives all 20,000. Reported per pass (median of five): the
//! ledger's signature checks alone (`Ledger::verify_one` on each, `Ledger::verify_batch` on
//! runs of 1000) and the whole remote path (`Room::receive`: decode, check, verify, apply)
//! in batches of 1000 and one envelope per call; and, for comparison, a torsion check of
//! each signature's R alone. Time is the test thread's CPU time where
//! Linux reports it (`/proc/thread-self/schedstat`), so builds on the shared cores do not
//! inflate it; wall-clock time otherwise.

mod support;

use std::time::Instant;

use anyhow::{ensure, Result};
use arena_core::sync::wire::Wire;
use arena_core::{ChainHead, Checked, Envelope, Identity, Invite, MemoryStore, Role, Room, RoomConfig};
use support::{party, Party, T0};

const PER_WRITER: usize = 10_000;
const PASSES: usize = 5;

/// Nanoseconds the calling thread has run (its CPU time), or wall-clock nanoseconds.
fn clock() -> u128 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u128>().ok())
        .unwrap_or_else(|| START.get_or_init(Instant::now).elapsed().as_nanos())
}

/// Median of `PASSES` runs of `f` (each after `setup`), in envelopes per second.
fn rate<T>(n: usize, mut setup: impl FnMut() -> Result<T>, mut f: impl FnMut(T) -> Result<()>) -> Result<f64> {
    let mut ns = Vec::with_capacity(PASSES);
    for _ in 0..PASSES {
        let input = setup()?;
        let t = clock();
        f(input)?;
        ns.push(clock() - t);
    }
    ns.sort_unstable();
    Ok(n as f64 / (ns[PASSES / 2] as f64 / 1e9))
}

/// A new observer of the room, knowing every admission and nothing else.
fn replica(p: &Party, i: u64) -> Result<Room<MemoryStore>> {
    let me = Identity::from_passphrase(&format!("rate/reader{i}"));
    let mut room = Room::open(p.rooms[0].id(), me, 0, MemoryStore::new(), RoomConfig::default(), T0)?;
    let token = Invite::issue(&p.room_key, Role::Observer, T0 / 1000 + 3600, 0, 100 + i).to_token();
    room.join(&token, "reader", T0)?;
    let admissions: Vec<_> = p.rooms.iter().flat_map(|r| r.ledger().admissions()).collect();
    room.handle(Wire::Admissions(admissions), T0)?;
    Ok(room)
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn remote_path_rate() -> Result<()> {
    let mut p = party("rate", &[Role::Candidate], T0)?;
    let mut envs: Vec<Envelope> = p.initial.drain(..).map(|(_, e)| e).collect();
    for i in 0..PER_WRITER {
        for w in 0..2 {
            let text = if w == 0 { "h" } else { "c" };
            let env = p.rooms[w].edit(T0 + i as u64, |e| e.splice_code(i as u32, 0, text))?;
            envs.extend(env);
        }
    }
    let n = envs.len();
    let mut next = 0;
    let mut fresh = || {
        next += 1;
        replica(&p, next)
    };

    let r = fresh()?;
    let ledger = r.ledger();
    let expect = |e: &Envelope| Some(ChainHead { next_seq: e.seq, last_hash: e.prev });
    let checked: Vec<Checked> = envs.iter().map(|e| ledger.check(e, expect(e))).collect::<arena_core::Result<_>>()?;
    let refs: Vec<&Envelope> = envs.iter().collect();
    let one = rate(
        n,
        || Ok(()),
        |()| {
            let ok = envs.iter().zip(&checked).filter(|(e, c)| ledger.verify_one(e, c).is_ok()).count();
            ensure!(ok == n, "{} of {n} signatures refused", n - ok);
            Ok(())
        },
    )?;
    let batch = rate(
        n,
        || Ok(()),
        |()| {
            for (e, c) in refs.chunks(1000).zip(checked.chunks(1000)) {
                ensure!(ledger.verify_batch(e, c).is_ok(), "a batch was refused");
            }
            Ok(())
        },
    )?;
    // What a batch that agrees with ed25519-dalek's `verify_strict` would add: a torsion
    // check of every signature's R (`docs/decisions/signature-rule.md`).
    let torsion = rate(
        n,
        || Ok(()),
        |()| {
            let free = envs
                .iter()
                .filter(|e| {
                    let r =
                        curve25519_dalek::edwards::CompressedEdwardsY(e.signature[..32].try_into().unwrap_or([0; 32]));
                    r.decompress().is_some_and(|r| r.is_torsion_free())
                })
                .count();
            ensure!(free == n, "{} R's with torsion", n - free);
            Ok(())
        },
    )?;
    let received = |batch: usize| {
        let envs = &envs;
        move |mut room: Room<MemoryStore>| {
            let mut applied = 0;
            for chunk in envs.chunks(batch) {
                let receipt = room.receive(chunk.to_vec(), T0 + 60_000)?;
                ensure!(receipt.rejected.is_empty(), "refused: {:?}", receipt.rejected);
                applied += receipt.applied.len();
            }
            ensure!(applied == n, "applied {applied} of {n}");
            Ok(())
        }
    };
    let receive_1000 = rate(n, &mut fresh, received(1000))?;
    let receive_1 = rate(n, &mut fresh, received(1))?;
    println!("{n} envelopes, median of {PASSES} passes, per second of the test thread's CPU:");
    println!("  Ledger::verify_one, each:            {one:>9.0}");
    println!("  Ledger::verify_batch, runs of 1000:  {batch:>9.0}");
    println!("  torsion check of R alone:            {torsion:>9.0}");
    println!("  Room::receive, batches of 1000:      {receive_1000:>9.0}");
    println!("  Room::receive, one envelope a call:  {receive_1:>9.0}");
    Ok(())
}

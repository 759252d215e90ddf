//! Two in-process replicas of one interview room, syncing through signed envelopes.
//!
//! The host creates a room, invites a candidate with a token, and both type concurrently.
//! Every edit travels as a signed envelope, encoded with the envelope protocol and chunked
//! for a 16 KiB data channel; the receiver verifies and applies it. They vote for the
//! analyzer, the host runs it, a version is saved and restored, and the host's history is
//! kept in sled and reloaded at the end.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use arena_core::records::{Meta, VersionCause};
use arena_core::sync::wire::{chunk, Reassembler, Wire, DATA_CHANNEL_CHUNK};
use arena_core::{Cut, Identity, Invite, MemoryStore, Role, Room, RoomConfig, SledDb, Store};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Sends `msgs` over a simulated data channel: encode, chunk, reassemble, handle.
fn deliver<S: Store>(msgs: Vec<Wire>, to: &mut Room<S>) -> Result<usize> {
    let mut link = Reassembler::new();
    let mut applied = 0;
    for frame in chunk(&msgs, DATA_CHANNEL_CHUNK) {
        if let Some(msg) = link.push(&frame, to.id())? {
            let (_, receipt) = to.handle(msg, now_ms())?;
            ensure!(receipt.rejected.is_empty(), "rejected: {:?}", receipt.rejected);
            applied += receipt.applied.len();
        }
    }
    Ok(applied)
}

fn main() -> Result<()> {
    let data_dir = std::env::args().nth(1).unwrap_or_else(|| "arena-data/two-replicas".into());
    let room_key = Identity::from_seed(rand_seed());
    let db = SledDb::open(&data_dir).with_context(|| format!("opening {data_dir}"))?;
    let meta = Meta { language: "python".into(), title: "Two sum".into(), ..Meta::default() };
    let host_id = Identity::from_seed(rand_seed());
    let mut host = Room::create(&room_key, host_id.clone(), 0, db.room(&room_key.public())?, meta, now_ms())?;
    println!("room {} created; host {}", host.id(), host_id.public());

    let token = Invite::issue(&room_key, Role::Candidate, now_ms() / 1000 + 3600, 0, 1).to_token();
    println!("candidate invite: /room/{}#token={token}", host.id());
    let mut cand = Room::open(
        host.id(),
        Identity::from_seed(rand_seed()),
        0,
        MemoryStore::new(),
        RoomConfig::default(),
        now_ms(),
    )?;
    let (admission, joined) = cand.join(&token, "Candidate", now_ms())?;
    host.admit(&admission, Some(now_ms()))?;
    // Catch-up: the candidate sends its envelope vector, the host answers with what it lacks.
    let Wire::Want(have) = cand.want() else { unreachable!("want() returns Want") };
    let n = deliver(host.answer(&have)?, &mut cand)?;
    println!("candidate caught up with {n} envelope(s)");
    deliver(vec![Wire::Envelopes(joined.into_iter().collect())], &mut host)?;

    // Concurrent typing: each side edits, then they exchange envelopes.
    let host_lines = ["def two_sum(nums, target):\n", "    seen = {}\n"];
    let cand_lines = ["# candidate notes: O(n) with a dict 🙂\n", "# edge case: no answer\n"];
    for (h, c) in host_lines.iter().zip(cand_lines) {
        let hl = host.doc().code_len();
        let he: Vec<_> = h
            .chars()
            .enumerate()
            .filter_map(|(i, ch)| {
                host.edit(now_ms(), |e| e.splice_code(hl + i as u32, 0, &ch.to_string())).ok().flatten()
            })
            .collect();
        let ce = cand.edit(now_ms(), |e| e.splice_code(0, 0, c))?.into_iter().collect();
        let a = deliver(vec![Wire::Envelopes(he)], &mut cand)?;
        let b = deliver(vec![Wire::Envelopes(ce)], &mut host)?;
        println!("exchanged {a} + {b} envelopes");
    }
    ensure!(host.doc().code() == cand.doc().code(), "replicas diverged");
    host.flush()?;

    // Votes for the analyzer live in the document; consensus needs host and candidate.
    let v1 = host.vote(true, now_ms())?.into_iter().collect();
    let v2 = cand.vote(true, now_ms())?.into_iter().collect();
    deliver(vec![Wire::Envelopes(v1)], &mut cand)?;
    deliver(vec![Wire::Envelopes(v2)], &mut host)?;
    println!("consensus: host sees {}, candidate sees {}", host.consensus().enabled(), cand.consensus().enabled());
    // Only the room's node (a bootstrap node, which these two replicas lack) writes the
    // analyzer's result; a replica asked to do it itself refuses.
    let me = host.identity().public();
    match host.complete_round(&me, "offline", vec!["loop body is missing".into()], now_ms()) {
        Err(e) => println!("analyzer: {e}"),
        Ok(_) => anyhow::bail!("a host wrote an analyzer result itself"),
    }

    // Versions: save, edit, restore.
    let v = host.create_version("before refactor", VersionCause::Manual, now_ms())?;
    let len = host.doc().code_len();
    let mut envs: Vec<_> =
        host.edit(now_ms(), |e| e.splice_code(0, len, "oops, everything deleted\n"))?.into_iter().collect();
    let (restore, rv) = host.restore(&v.id, now_ms())?;
    envs.extend(restore);
    let Wire::Want(have) = cand.want() else { unreachable!("want() returns Want") };
    deliver(host.answer(&have)?, &mut cand)?;
    println!("restored {} as {}; versions: {}", v.id, rv.id, host.doc().versions().len());
    ensure!(host.code_at(&Cut::Version(v.id.clone()))? == host.doc().code(), "restore did not bring the version back");
    ensure!(
        host.doc().code() == cand.doc().code(),
        "code diverged: {:?} vs {:?}",
        host.doc().code(),
        cand.doc().code()
    );
    ensure!(host.doc().canonical_state() == cand.doc().canonical_state(), "replicas diverged");
    host.flush()?;
    let final_code = host.doc().code();
    let id = host.id();
    drop(host);

    // Reload the host from sled: checkpoint + envelopes after it.
    let reopened = Room::open(id, host_id, 0, db.room(&id)?, RoomConfig::default(), now_ms())?;
    ensure!(reopened.doc().code() == final_code, "reload from sled differs");
    println!("reloaded from {data_dir}: {} log entries, code:\n{final_code}", reopened.store().log_len());
    println!("ok: both replicas converged ({})", reopened.state_digest());
    Ok(())
}

/// 32 random bytes from the OS.
fn rand_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).unwrap_or_else(|_| {
        let t = now_ms().to_le_bytes();
        seed[..8].copy_from_slice(&t);
    });
    seed
}

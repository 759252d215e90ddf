//! Every acknowledged envelope survives a kill -9.
//!
//! The test re-runs its own binary as a child writer: the child edits a room stored in
//! sled, flushes, and only then prints `ack <seq>` (that is what acknowledging means; see
//! the flush policy in `arena_core::store`). The parent SIGKILLs it at a random point,
//! reopens the data dir and checks that every acknowledged envelope is there, three times
//! over on the same directory.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use arena_core::records::Meta;
use arena_core::{Identity, Room, RoomConfig, SledDb, Store};

const CHILD_ENV: &str = "ARENA_DURABILITY_CHILD_DIR";

fn room_key() -> Identity {
    Identity::from_passphrase("durability room")
}

fn host() -> Identity {
    Identity::from_passphrase("durability host")
}

fn line(i: u64) -> String {
    format!("line {i}\n")
}

/// The child: writes forever, acknowledging after each flush.
fn child(dir: &str) -> Result<()> {
    let db = SledDb::open(dir)?;
    let store = db.room(&room_key().public())?;
    let cfg = RoomConfig { checkpoint_every: 50, ..RoomConfig::default() };
    let mut room = if store.log_len() == 0 {
        Room::create(&room_key(), host(), 0, store, Meta::default(), 1)?
    } else {
        Room::open(room_key().public(), host(), 0, store, cfg, 1)?
    };
    room.flush()?;
    let out = std::io::stdout();
    let mut out = out.lock();
    loop {
        let seq = room.ledger().head(&host().public()).next_seq;
        let len = room.doc().code_len();
        room.edit(seq, |e| e.splice_code(len, 0, &line(seq)))?;
        // Group commit: flush every few edits, then acknowledge all of them.
        if seq % 3 == 0 {
            room.flush()?;
            writeln!(out, "ack {seq}")?;
            out.flush()?;
        }
    }
}

#[test]
fn child_writer() -> Result<()> {
    // Only does something when started by `kill_9_loses_no_acknowledged_envelope`.
    match std::env::var(CHILD_ENV) {
        Ok(dir) => child(&dir),
        Err(_) => Ok(()),
    }
}

#[test]
fn kill_9_loses_no_acknowledged_envelope() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut last_acked = 0u64;
    for (round, kill_after) in [(0, 40u64), (1, 7), (2, 75)].into_iter() {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning the child writer")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut acks = 0;
        for l in BufReader::new(stdout).lines() {
            let l = l?;
            if let Some(seq) = l.strip_prefix("ack ") {
                last_acked = seq.trim().parse()?;
                acks += 1;
                if acks == kill_after {
                    break;
                }
            }
        }
        if acks < kill_after {
            let status = child.wait()?;
            bail!("round {round}: child stopped after {acks} acks ({status})");
        }
        child.kill()?; // SIGKILL
        child.wait()?;

        let db = SledDb::open(dir.path())?;
        let store = db.room(&room_key().public())?;
        let room = Room::open(room_key().public(), host(), 0, store, RoomConfig::default(), 1)?;
        let have = room.ledger().head(&host().public()).next_seq;
        assert!(have > last_acked, "round {round}: acknowledged seq {last_acked} lost (have {have} envelopes)");
        let code = room.doc().code();
        let expected: String = (1..=last_acked).map(line).collect();
        assert!(code.starts_with(&expected), "round {round}: acknowledged text lost");
        drop(room);
        drop(db);
    }
    Ok(())
}

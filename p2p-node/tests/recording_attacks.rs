//! Attacks on a recording, as whoever holds the file could make them: cut it at a record
//! boundary, drop a record or a whole author (re-chaining the unkeyed record hashes), reseal
//! it with a key of their own, pass off another room's recording; and `replay`/`export` of a
//! tampered file. Each is checked through the `arena-node` binary, as an auditor runs it.
//!
//! The recordings are made in-process (host, candidate and an operator's observer as
//! `Room`s, the recorder a `Room` over a `RecordingStore`), so where the seals fall is fixed
//! by the test, not by the clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use arena_core::sync::wire::Wire;
use arena_core::{Admission, Envelope, Identity, MemoryStore, PeerKey, Role, Room, RoomConfig};
use arena_node::recording::{Kind, RawRecord, Record, RecordingFile, RecordingStore};
use sha2::{Digest, Sha256};
use support::TestRoom;

const BIN: &str = env!("CARGO_BIN_EXE_arena-node");

type Member = Room<MemoryStore>;
type Recorder = Room<RecordingStore>;

/// Runs `arena-node args…`: whether it succeeded, and its stdout and stderr together.
fn arena(args: &[&str]) -> Result<(bool, String)> {
    let out = std::process::Command::new(BIN).args(args).env("RUST_LOG", "warn").output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// A member joined with a fresh invite: its replica, its admission and (when it may write)
/// its participant entry's envelope.
fn member(
    room: &TestRoom,
    seed: &str,
    role: Role,
    nonce: u64,
    name: &str,
    t: u64,
) -> Result<(Member, Admission, Option<Envelope>)> {
    let mut m = Room::open(room.id, Identity::from_passphrase(seed), 0, MemoryStore::new(), RoomConfig::default(), t)?;
    let (adm, env) = m.join(&room.token(role, nonce), name, t)?;
    Ok((m, adm, env))
}

/// A recording made by [`record`].
struct Recorded {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    path: PathBuf,
    room: TestRoom,
    recorder: PeerKey,
    cand: PeerKey,
    /// An observer of the room who also holds a copy of the file (and a key of its own).
    operator: Identity,
}

impl Recorded {
    fn path(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }
    fn room_hex(&self) -> String {
        self.room.id.to_hex()
    }
    fn recorder_hex(&self) -> String {
        self.recorder.to_hex()
    }
    /// Writes `bytes` next to the recording as `name` and returns its path.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<String> {
        let p = self.dir.join(name);
        std::fs::write(&p, bytes)?;
        Ok(p.to_str().context("path")?.to_owned())
    }
}

/// Hands `env` to `others` and the recorder, which must apply it.
fn deliver(env: Option<Envelope>, others: &mut [&mut Member], rec: &mut Recorder, t: u64) -> Result<()> {
    let env = env.context("the edit made no envelope")?;
    for o in others.iter_mut() {
        o.receive(vec![env.clone()], t)?;
    }
    let receipt = rec.receive(vec![env], t)?;
    ensure!(receipt.applied.len() == 1, "the recorder did not apply it: {receipt:?}");
    Ok(())
}

/// The host joins and types, the recorder seals (seal 1); the candidate joins and types, a
/// cursor moves, the host types, the recorder seals (seal 2); both type once more (the
/// candidate writes 3 envelopes, the host 4); then the recorder closes the recording, or
/// (`killed`) stops after a flush without closing it.
fn record(name: &str, killed: bool) -> Result<Recorded> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().to_path_buf();
    let path = dir.join("session.arena");
    let room = TestRoom::new(name);
    let t0 = arena_node::now_ms();
    let (mut host, ha, hp) = member(&room, &format!("{name}-host"), Role::Host, 1, "Host", t0)?;
    let (mut cand, ca, cp) = member(&room, &format!("{name}-cand"), Role::Candidate, 2, "Cand", t0)?;
    let (_op, oa, _) = member(&room, &format!("{name}-operator"), Role::Observer, 3, "Operator", t0)?;
    let rec_key = Identity::from_passphrase(&format!("{name}-recorder"));
    let store = RecordingStore::open(&path, room.id, rec_key.clone(), t0)?;
    let mut rec: Recorder = Room::open(room.id, rec_key.clone(), 0, store, RoomConfig::default(), t0)?;
    rec.join(&room.token(Role::Observer, 4), "recorder", t0)?;
    for a in [&ha, &ca, &oa] {
        rec.admit(a, None)?;
        host.admit(a, None)?;
        cand.admit(a, None)?;
    }
    deliver(hp, &mut [&mut cand], &mut rec, t0 + 1)?;
    let h0 = host.edit(t0 + 1, |e| e.splice_code(0, 0, "def add(a, b):\n"))?;
    deliver(h0, &mut [&mut cand], &mut rec, t0 + 1)?;
    rec.store_mut().seal()?;
    deliver(cp, &mut [&mut host], &mut rec, t0 + 2)?;
    let c0 = cand.edit(t0 + 2, |e| e.splice_code(1000, 0, "    return a + b\n"))?;
    deliver(c0, &mut [&mut host], &mut rec, t0 + 2)?;
    rec.store_mut().record_awareness(t0 + 3, r#"{"7":{"user":"Host","cursor":3}}"#)?;
    let h1 = host.edit(t0 + 4, |e| e.splice_code(1000, 0, "print(add(1, 2))\n"))?;
    deliver(h1, &mut [&mut cand], &mut rec, t0 + 4)?;
    rec.store_mut().seal()?;
    let c1 = cand.edit(t0 + 5, |e| e.splice_code(1000, 0, "# candidate done\n"))?;
    deliver(c1, &mut [&mut host], &mut rec, t0 + 5)?;
    let h2 = host.edit(t0 + 6, |e| e.splice_code(1000, 0, "# host checked\n"))?;
    deliver(h2, &mut [&mut cand], &mut rec, t0 + 6)?;
    if killed {
        arena_core::Store::flush(rec.store_mut())?;
        // SIGKILL: nothing of the shutdown path runs.
        std::mem::forget(rec);
    } else {
        drop(rec);
    }
    Ok(Recorded {
        _dir: tmp,
        dir,
        path,
        room,
        recorder: rec_key.public(),
        cand: cand.identity().public(),
        operator: Identity::from_passphrase(&format!("{name}-operator")),
    })
}

/// The record chain, recomputed: it is plain SHA-256, so anyone can.
fn chain_next(prev: &[u8; 32], r: &RawRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update([r.kind]);
    h.update((r.payload.len() as u32).to_be_bytes());
    h.update(&r.payload);
    h.finalize().into()
}

/// The recording with only the records `keep` accepts, re-chained.
fn rewrite(path: &Path, keep: impl Fn(&RawRecord) -> bool) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    let file = RecordingFile::read(path)?;
    let header = &bytes[..file.records.first().context("no records")?.offset];
    let mut chain: [u8; 32] = Sha256::digest(header).into();
    let mut out = header.to_vec();
    for r in file.records.iter().filter(|r| keep(r)) {
        chain = chain_next(&chain, r);
        out.push(r.kind);
        out.extend_from_slice(&(r.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&r.payload);
        out.extend_from_slice(&chain);
    }
    Ok(out)
}

fn is_seal(r: &RawRecord) -> bool {
    r.kind == Kind::Seal as u8
}

fn author_of(r: &RawRecord, rec: &Recorded) -> Option<PeerKey> {
    match r.decode(rec.room.id) {
        Ok(Record::Envelope { envelope, .. }) => Some(envelope.author),
        _ => None,
    }
}

#[test]
fn a_complete_recording_verifies_and_says_what_it_trusted() -> Result<()> {
    let rec = record("attack-ok", false)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&rec.path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new recording is its owner's only");
    }
    let (ok, out) = arena(&["verify", rec.path(), "--room", &rec.room_hex(), "--recorder-key", &rec.recorder_hex()])?;
    assert!(ok, "{out}");
    assert!(!out.contains("UNPINNED"), "{out}");
    // The closing seal's per-author counts are in the report.
    assert!(out.contains("Cand (candidate)") && out.contains("3 envelopes"), "{out}");
    let (ok, out) = arena(&["verify", rec.path()])?;
    assert!(ok, "{out}");
    assert!(out.contains("UNPINNED") && out.contains(&rec.recorder_hex()) && out.contains(&rec.room_hex()), "{out}");
    Ok(())
}

/// A cut at any record boundary (the tail dropped, a seal at the end or not) fails, pinned
/// or not: only the recorder's closing seal says the recording is whole.
#[test]
fn a_recording_cut_at_any_record_boundary_fails() -> Result<()> {
    let rec = record("attack-cut", false)?;
    let bytes = std::fs::read(&rec.path)?;
    let file = RecordingFile::read(&rec.path)?;
    for r in &file.records {
        let cut = rec.write("cut.arena", &bytes[..r.offset])?;
        let (ok, out) = arena(&["verify", &cut])?;
        assert!(!ok, "cut before record {} (byte {}) passed:\n{out}", r.index, r.offset);
        assert!(out.contains("incomplete"), "cut before record {}: {out}", r.index);
    }
    Ok(())
}

/// Dropping any one record, or every envelope of one author, and re-chaining: the seals
/// after it no longer verify; dropped with them, the recording ends without its closing seal.
#[test]
fn a_dropped_record_or_author_fails() -> Result<()> {
    let rec = record("attack-drop", false)?;
    let file = RecordingFile::read(&rec.path)?;
    let mut attacks: Vec<(String, Vec<usize>)> = Vec::new();
    for r in file.records.iter().filter(|r| !is_seal(r)) {
        attacks.push((format!("record {}", r.index), vec![r.index]));
    }
    let cand: Vec<usize> =
        file.records.iter().filter(|r| author_of(r, &rec) == Some(rec.cand)).map(|r| r.index).collect();
    assert_eq!(cand.len(), 3, "the candidate wrote three envelopes");
    attacks.push(("the candidate".into(), cand));
    for (what, dropped) in attacks {
        let first = dropped[0];
        let kept_seals = rewrite(&rec.path, |r| !dropped.contains(&r.index))?;
        let gone = |r: &RawRecord| dropped.contains(&r.index) || (is_seal(r) && r.index > first);
        let no_later_seals = rewrite(&rec.path, |r| !gone(r))?;
        for (how, bytes) in [("seals kept", kept_seals), ("later seals dropped", no_later_seals)] {
            let p = rec.write("dropped.arena", &bytes)?;
            let (ok, out) = arena(&["verify", &p])?;
            assert!(!ok, "dropping {what} ({how}) passed:\n{out}");
        }
    }
    // Accepting an incomplete recording vouches only for what the last seal covers: the
    // candidate dropped after seal 1 leaves a recording that ends after seal 1, and replay
    // shows nothing after it.
    let seal1 = file.records.iter().find(|r| is_seal(r)).context("a seal")?.index;
    let bytes = rewrite(&rec.path, |r| author_of(r, &rec) != Some(rec.cand) && !(is_seal(r) && r.index > seal1))?;
    let p = rec.write("no-cand.arena", &bytes)?;
    let (ok, out) = arena(&["verify", &p, "--allow-incomplete"])?;
    assert!(ok, "{out}");
    assert!(out.contains("incomplete: ends after seal 1"), "{out}");
    let (ok, out) = arena(&["replay", &p, "--allow-incomplete"])?;
    assert!(ok, "{out}");
    assert!(out.contains("def add") && !out.contains("print(add"), "replay showed unsealed records:\n{out}");
    Ok(())
}

/// An operator who has the file and a key of its own (an admitted observer) drops the
/// candidate and records the rest again under its key: it passes unpinned (the limit of an
/// unpinned verify, which says so) and fails with the recorder's key pinned.
#[test]
fn a_resealed_recording_fails_with_the_recorder_key_pinned() -> Result<()> {
    let rec = record("attack-reseal", false)?;
    let file = RecordingFile::read(&rec.path)?;
    let forged = rec.dir.join("forged.arena");
    {
        let t0 = file.header.started_ms;
        let mut out = RecordingStore::open(&forged, rec.room.id, rec.operator.clone(), t0)?;
        for r in &file.records {
            match r.decode(rec.room.id).map_err(anyhow::Error::msg)? {
                Record::Admission { admission, .. } => arena_core::Store::put_admission(&mut out, &admission)?,
                Record::Envelope { envelope, received_ms } if envelope.author != rec.cand => {
                    arena_core::Store::append(&mut out, &envelope, received_ms)?;
                }
                Record::Awareness { at_ms, json } => out.record_awareness(at_ms, &json)?,
                Record::Revocation { revocation, .. } => arena_core::Store::put_revocation(&mut out, &revocation)?,
                Record::Delegation { delegation, .. } => arena_core::Store::put_delegation(&mut out, &delegation)?,
                Record::Media { at_ms, file } => out.record_media(at_ms, &file)?,
                Record::Seal { .. } => out.seal()?,
                Record::Envelope { .. } => {}
            }
        }
    }
    let forged = forged.to_str().context("path")?;
    let (ok, out) = arena(&["verify", forged])?;
    assert!(ok, "an unpinned verify cannot tell (and must say so):\n{out}");
    assert!(out.contains("UNPINNED") && out.contains(&rec.operator.public().to_hex()), "{out}");
    let (ok, out) = arena(&["verify", forged, "--room", &rec.room_hex(), "--recorder-key", &rec.recorder_hex()])?;
    assert!(!ok, "the resealed recording passed with the recorder key pinned:\n{out}");
    assert!(out.contains("not the pinned recorder key"), "{out}");
    for cmd in ["replay", "export"] {
        let (ok, out) = arena(&[cmd, forged, "--recorder-key", &rec.recorder_hex()])?;
        assert!(!ok && out.contains("not the pinned recorder key"), "{cmd}: {out}");
    }
    Ok(())
}

#[test]
fn a_recording_of_another_room_fails_with_the_room_pinned() -> Result<()> {
    let ours = record("attack-room-ours", false)?;
    let other = record("attack-room-other", false)?;
    let (ok, out) = arena(&["verify", other.path(), "--room", &ours.room_hex()])?;
    assert!(!ok, "{out}");
    assert!(out.contains("not the pinned room") && out.contains(&other.room_hex()), "{out}");
    Ok(())
}

/// The recorder was killed (no closing seal): reported as incomplete with its last seal; a
/// failure unless `--allow-incomplete`.
#[test]
fn a_killed_recorder_leaves_an_incomplete_recording() -> Result<()> {
    let rec = record("attack-killed", true)?;
    let (ok, out) = arena(&["verify", rec.path(), "--room", &rec.room_hex(), "--recorder-key", &rec.recorder_hex()])?;
    assert!(!ok, "{out}");
    assert!(out.contains("incomplete: ends after seal"), "{out}");
    let pins = ["--room", &rec.room_hex(), "--recorder-key", &rec.recorder_hex(), "--allow-incomplete"];
    let (ok, out) = arena(&[&["verify", rec.path()][..], &pins].concat())?;
    assert!(ok, "{out}");
    assert!(out.contains("incomplete: ends after seal"), "{out}");
    Ok(())
}

/// Format 1 files (seals without counts, no closing seal) are refused, saying why.
#[test]
fn a_format_1_recording_is_refused_with_a_clear_message() -> Result<()> {
    let rec = record("attack-v1", false)?;
    let mut bytes = std::fs::read(&rec.path)?;
    bytes[8] = 1;
    let old = rec.write("v1.arena", &bytes)?;
    for cmd in ["verify", "replay", "export"] {
        let (ok, out) = arena(&[cmd, &old])?;
        assert!(!ok && out.contains("recording format 1"), "{cmd}: {out}");
    }
    Ok(())
}

/// A recorder restarted into the same file after a kill goes on with it and closes it.
#[test]
fn a_restarted_recorder_completes_the_recording() -> Result<()> {
    let rec = record("attack-restart", true)?;
    let key = Identity::from_passphrase("attack-restart-recorder");
    let mut store = RecordingStore::open(&rec.path, rec.room.id, key, arena_node::now_ms())?;
    store.record_awareness(arena_node::now_ms(), r#"{"7":null}"#)?;
    drop(store);
    let (ok, out) = arena(&["verify", rec.path(), "--room", &rec.room_hex(), "--recorder-key", &rec.recorder_hex()])?;
    assert!(ok && out.contains("closing seal"), "{out}");
    Ok(())
}

#[test]
fn replay_and_export_refuse_a_tampered_recording() -> Result<()> {
    let rec = record("attack-replay", false)?;
    let file = RecordingFile::read(&rec.path)?;
    // A flipped byte in the candidate's last envelope (its signature) ...
    let last = file.records.iter().rfind(|r| author_of(r, &rec) == Some(rec.cand)).context("cand")?;
    let mut bytes = std::fs::read(&rec.path)?;
    bytes[last.offset + 5 + last.payload.len() - 1] ^= 1;
    let flipped = rec.write("flipped.arena", &bytes)?;
    // ... and the candidate dropped with every seal after its first envelope.
    let first = file.records.iter().find(|r| author_of(r, &rec) == Some(rec.cand)).context("cand")?.index;
    let dropped = rewrite(&rec.path, |r| author_of(r, &rec) != Some(rec.cand) && !(is_seal(r) && r.index > first))?;
    let dropped = rec.write("dropped.arena", &dropped)?;
    for tampered in [&flipped, &dropped] {
        let cmds: [&[&str]; 4] =
            [&["replay"], &["replay", "--at", "end"], &["export", "--format", "json"], &["export", "--format", "html"]];
        for cmd in cmds {
            let args = |extra: &[&'static str]| [cmd, &[tampered.as_str()], extra].concat();
            let (ok, out) = arena(&args(&[]))?;
            assert!(!ok, "{cmd:?} {tampered} went ahead:\n{out}");
            assert!(out.contains("does not verify") && out.contains("--unverified"), "{cmd:?}: {out}");
            let (ok, out) = arena(&args(&["--unverified"]))?;
            assert!(ok, "{cmd:?} --unverified: {out}");
            assert!(out.contains("UNVERIFIED"), "{cmd:?} --unverified says nothing:\n{out}");
            if cmd[0] == "export" {
                // The export itself says so, not only the terminal (stdout is first in `out`).
                let exported = out.split("arena-node: UNVERIFIED").next().unwrap_or_default();
                assert!(exported.contains("UNVERIFIED"), "{cmd:?}: the export does not carry the warning");
            }
        }
    }
    // The untampered one replays with no warning but the unpinned notice.
    let (ok, out) = arena(&["replay", rec.path(), "--room", &rec.room_hex(), "--recorder-key", &rec.recorder_hex()])?;
    assert!(ok && !out.contains("UNVERIFIED") && !out.contains("UNPINNED"), "{out}");
    Ok(())
}

/// The recorder's secret key is not in the file (a guard: it stays in `identity.key`; the
/// grants inside admissions are the test below).
#[test]
fn the_recording_does_not_hold_the_recorders_key() -> Result<()> {
    let rec = record("attack-secrets", false)?;
    let bytes = std::fs::read(&rec.path)?;
    let seed = Identity::from_passphrase("attack-secrets-recorder").seed();
    assert!(!bytes.windows(32).any(|w| w == seed), "the recorder's secret key is in the file");
    Ok(())
}

/// Nothing in a recording lets its reader join the room: admissions are public statements;
/// an admission's grant must not be usable as an invite by another key.
#[test]
fn the_recording_holds_no_usable_invite() -> Result<()> {
    let rec = record("attack-grant", false)?;
    let file = RecordingFile::read(&rec.path)?;
    let now = arena_node::now_ms();
    let mut admissions = 0;
    for r in &file.records {
        if let Ok(Record::Admission { admission, .. }) = r.decode(rec.room.id) {
            admissions += 1;
            // A stranger re-uses the grant with a key of its own: the invite signature would
            // need the invite link's secret, which no record holds.
            let stranger = Identity::from_passphrase("stranger");
            let guess = arena_core::Invite::bound(&stranger, stranger.clone(), admission.grant.role, u64::MAX, 0, 0);
            let mut forged = arena_core::Admission::sign(&stranger, &guess, "stranger", now);
            forged.grant = admission.grant.clone();
            let mut spliced = admission.clone();
            spliced.member = stranger.public();
            for bad in [forged, spliced] {
                let mut ledger = arena_core::Ledger::new(rec.room.id);
                assert!(
                    ledger.admit(&bad, None).is_err(),
                    "{}'s admission let a stranger join as {}",
                    admission.name,
                    admission.grant.role
                );
            }
        }
    }
    assert_eq!(admissions, 4);
    Ok(())
}

/// The host removes the candidate mid-interview; the candidate, unaware, types on. The
/// recording holds the revocation: the recorder refuses the later envelope, and still does
/// after a restart on the file; and a recording that holds it after the revocation anyway
/// (a recorder that let it in and sealed over it) fails `verify`, which names the removal.
#[test]
fn a_removed_members_later_envelopes_are_flagged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("session.arena");
    let p = path.to_str().context("path")?;
    let room = TestRoom::new("attack-revoked");
    let t0 = arena_node::now_ms();
    let (mut host, ha, hp) = member(&room, "revoked-host", Role::Host, 1, "Host", t0)?;
    let (mut cand, ca, cp) = member(&room, "revoked-cand", Role::Candidate, 2, "Cand", t0)?;
    let rec_key = Identity::from_passphrase("revoked-recorder");
    let open = |t: u64| -> Result<Recorder> {
        let store = RecordingStore::open(&path, room.id, rec_key.clone(), t)?;
        Ok(Room::open(room.id, rec_key.clone(), 0, store, RoomConfig::default(), t)?)
    };
    let mut rec = open(t0)?;
    rec.join(&room.token(Role::Observer, 4), "recorder", t0)?;
    for a in [&ha, &ca] {
        rec.admit(a, None)?;
        host.admit(a, None)?;
        cand.admit(a, None)?;
    }
    deliver(hp, &mut [&mut cand], &mut rec, t0 + 1)?;
    deliver(cp, &mut [&mut host], &mut rec, t0 + 1)?;
    let c0 = cand.edit(t0 + 2, |e| e.splice_code(0, 0, "cand before\n"))?;
    deliver(c0, &mut [&mut host], &mut rec, t0 + 2)?;

    let Wire::Revocations(revs) = host.revoke(cand.identity().public(), t0 + 3)? else {
        anyhow::bail!("revoke made no revocation");
    };
    for r in &revs {
        ensure!(rec.apply_revocation(r)?, "the recorder did not take the revocation");
    }
    let late = cand.edit(t0 + 4, |e| e.splice_code(1000, 0, "cand after removal\n"))?.context("no envelope")?;
    ensure!(
        rec.receive(vec![late.clone()], t0 + 4)?.applied.is_empty(),
        "the recorder applied a removed member's edit"
    );
    drop(rec);
    let pins = ["--room".to_owned(), room.id.to_hex(), "--recorder-key".to_owned(), rec_key.public().to_hex()];
    let verify =
        |file: &str| arena(&[&["verify", file][..], &pins.iter().map(String::as_str).collect::<Vec<_>>()].concat());
    let (ok, out) = verify(p)?;
    assert!(ok, "{out}");
    let file = RecordingFile::read(&path)?;
    let kinds: Vec<u8> = file.records.iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&(Kind::Revocation as u8)), "no revocation record: {kinds:?}");

    // Restarted on the file: the revocation is still known.
    let mut rec = open(t0 + 5)?;
    ensure!(
        rec.receive(vec![late.clone()], t0 + 5)?.applied.is_empty(),
        "the restarted recorder forgot the revocation and applied the removed member's edit"
    );
    // A recorder that lets it in anyway, and seals over it.
    arena_core::Store::append(rec.store_mut(), &late, t0 + 6)?;
    drop(rec);
    let (ok, out) = verify(p)?;
    assert!(!ok, "a removed member's envelope after the revocation passed:\n{out}");
    assert!(out.contains("was removed from the room"), "{out}");
    Ok(())
}

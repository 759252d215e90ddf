//! The trust model, attacked: forged votes, observers writing, replays, broken hash chains,
//! items under someone else's client id, a candidate triggering the analyzer, expired
//! invites, tampered checkpoints; and restore, which must never destroy history.
//! Every refusal must leave the replica exactly as it was.

mod support;

use anyhow::{ensure, Context, Result};
use arena_core::records::{VersionCause, VoteRecord};
use arena_core::sync::wire::Wire;
use arena_core::vote::sign_vote;
use arena_core::{
    Checkpoint, CoreError, Cut, Envelope, Identity, Invite, MemoryStore, Role, Room, RoomConfig, RoomDoc, Store,
};
use yrs::updates::decoder::Decode;

use support::{fingerprint, Fingerprint, Party, T0};

use support::{full_room as room, CAND, HOST, NODE, OBS};

/// The replica's state, log length and checkpoints: what a refusal must not touch.
type Snapshot = (Fingerprint, u64, Vec<(u64, u64)>);

fn snapshot(r: &Room<MemoryStore>) -> Result<Snapshot> {
    Ok((fingerprint(r), r.store().log_len(), r.store().checkpoints()?))
}

/// An update that writes `text` into the code buffer under yrs client id `client`.
fn update_under(client: u64, text: &str) -> Vec<u8> {
    let doc = RoomDoc::new(client);
    doc.edit(|e| e.splice_code(0, 0, text)).1
}

/// Delivers `env` to every other replica of the party.
fn spread(p: &mut Party, from: usize, env: &Envelope) -> Result<()> {
    for (i, r) in p.rooms.iter_mut().enumerate() {
        if i != from {
            let rc = r.receive(vec![env.clone()], T0 + 10)?;
            ensure!(
                rc.rejected.is_empty() && rc.applied.contains(env),
                "honest envelope refused by {i}: {:?}",
                rc.rejected
            );
        }
    }
    Ok(())
}

/// The candidate writes `vote` under `voter` (its own edit, signed and chained: only the vote
/// inside is forged) and everyone receives it. Under another member's key the candidate's
/// own replica refuses to sign it (the write rules), and that is all.
fn plant_vote(p: &mut Party, voter: &str, vote: &VoteRecord) -> Result<()> {
    let own = p.rooms[CAND].identity().public().to_hex() == voter;
    match p.rooms[CAND].edit(T0 + 5, |e| e.set_vote(voter, vote)) {
        Ok(env) => {
            ensure!(own, "the candidate's replica signed a vote under {voter}");
            spread(p, CAND, &env.context("the vote changed nothing")?)
        }
        Err(CoreError::NotAllowed(_)) if !own => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Consensus must not hold and the host's trigger must be refused without touching the room.
fn assert_no_consensus(p: &mut Party, what: &str) -> Result<()> {
    let c = p.rooms[HOST].consensus();
    ensure!(!c.enabled(), "{what}: consensus reached");
    ensure!(!c.satisfied.contains(&Role::Candidate), "{what}: counted for the candidate");
    let host = p.rooms[HOST].identity().public();
    let before = snapshot(&p.rooms[NODE])?;
    let r = p.rooms[NODE].complete_round(&host, "offline", vec!["x".into()], T0 + 20);
    ensure!(matches!(r, Err(CoreError::Consensus(_))), "{what}: trigger gave {r:?}");
    ensure!(snapshot(&p.rooms[NODE])? == before, "{what}: a refused trigger changed the room");
    Ok(())
}

#[test]
fn forged_votes_do_not_count() -> Result<()> {
    let mut p = room("forged-votes")?;
    let id = p.room_key.public();
    let cand = p.rooms[CAND].identity().clone();
    let cand_hex = cand.public().to_hex();
    let host_env = p.rooms[HOST].vote(true, T0 + 1)?.context("host vote")?;
    spread(&mut p, HOST, &host_env)?;
    ensure!(p.rooms[HOST].consensus().satisfied == vec![Role::Host], "the host's own vote did not count");

    // A bad signature (one bit flipped).
    let mut bad = sign_vote(&id, &cand, 0, true);
    let flipped = if bad.signature.starts_with('0') { '1' } else { '0' };
    bad.signature.replace_range(0..1, &flipped.to_string());
    plant_vote(&mut p, &cand_hex, &bad)?;
    assert_no_consensus(&mut p, "bad signature")?;
    ensure!(p.rooms[HOST].consensus().rejected.contains(&cand_hex), "bad signature not reported");

    // Signed by someone who was never admitted, under its own key.
    let mallory = Identity::from_passphrase("mallory");
    plant_vote(&mut p, &mallory.public().to_hex(), &sign_vote(&id, &mallory, 0, true))?;
    assert_no_consensus(&mut p, "non-member")?;
    ensure!(
        p.rooms[HOST].doc().votes().iter().all(|(k, _)| *k != mallory.public().to_hex()),
        "a vote under another key"
    );

    // The candidate's real signature, but for the next round.
    plant_vote(&mut p, &cand_hex, &sign_vote(&id, &cand, 1, true))?;
    assert_no_consensus(&mut p, "wrong round")?;

    // The candidate's real signature, for another room.
    let elsewhere = Identity::from_passphrase("another room").public();
    plant_vote(&mut p, &cand_hex, &sign_vote(&elsewhere, &cand, 0, true))?;
    assert_no_consensus(&mut p, "wrong room")?;

    // The observer's genuine vote: observers do not vote.
    let obs = p.rooms[OBS].identity().clone();
    plant_vote(&mut p, &obs.public().to_hex(), &sign_vote(&id, &obs, 0, true))?;
    assert_no_consensus(&mut p, "observer")?;

    // A member's valid vote filed under another member's key.
    let host_id = p.rooms[HOST].identity().clone();
    plant_vote(&mut p, &cand_hex, &sign_vote(&id, &host_id, 0, true))?;
    assert_no_consensus(&mut p, "vote under another key")?;

    // Control: the candidate's own vote through the API counts, and the host may trigger.
    let env = p.rooms[CAND].vote(true, T0 + 30)?.context("candidate vote")?;
    spread(&mut p, CAND, &env)?;
    ensure!(p.rooms[HOST].consensus().enabled(), "a genuine vote did not count");
    let host = p.rooms[HOST].identity().public();
    p.rooms[NODE].complete_round(&host, "offline", vec!["ok".into()], T0 + 31)?;
    ensure!(p.rooms[NODE].doc().analysis().len() == 1, "no analysis written");
    Ok(())
}

#[test]
fn observer_envelopes_are_rejected() -> Result<()> {
    let mut p = room("observer")?;
    let obs = p.rooms[OBS].identity().clone();
    // Through the API: refused before anything is signed.
    let before = snapshot(&p.rooms[OBS])?;
    let r = p.rooms[OBS].edit(T0 + 1, |e| e.splice_code(0, 0, "sneaky"));
    ensure!(matches!(r, Err(CoreError::NotAllowed(_))), "observer edit gave {r:?}");
    ensure!(snapshot(&p.rooms[OBS])? == before, "a refused observer edit changed its replica");

    // Hand-made and correctly signed: the receivers refuse it.
    let update = update_under(obs.public().client_id(0), "sneaky");
    let env = Envelope::seal(p.rooms[HOST].id(), &obs, 0, [0; 32], 0, update);
    for i in [HOST, CAND] {
        let before = snapshot(&p.rooms[i])?;
        let (_, rc) = p.rooms[i].handle(Wire::Envelopes(vec![env.clone()]), T0 + 2)?;
        ensure!(rc.applied.is_empty(), "replica {i} applied an observer's envelope");
        ensure!(
            matches!(rc.rejected.as_slice(), [(k, CoreError::NotAllowed(_))] if *k == obs.public()),
            "replica {i}: {:?}",
            rc.rejected
        );
        ensure!(snapshot(&p.rooms[i])? == before, "replica {i} changed");
        ensure!(!p.rooms[i].doc().code().contains("sneaky"), "observer text visible on {i}");
    }
    Ok(())
}

#[test]
fn replayed_envelopes_are_duplicates() -> Result<()> {
    let mut p = room("replay")?;
    let env = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, "once"))?.context("edit")?;
    let rc = p.rooms[HOST].receive(vec![env.clone()], T0 + 2)?;
    ensure!(rc.applied.len() == 1, "first delivery not applied");
    let before = snapshot(&p.rooms[HOST])?;
    for batch in [vec![env.clone()], vec![env.clone(), env.clone()]] {
        let n = batch.len();
        let rc = p.rooms[HOST].receive(batch, T0 + 3)?;
        ensure!(rc.duplicates == n && rc.applied.is_empty() && rc.rejected.is_empty(), "replay: {rc:?}");
        ensure!(snapshot(&p.rooms[HOST])? == before, "a replay changed the room");
    }
    // Replayed back to its author.
    let before = snapshot(&p.rooms[CAND])?;
    let rc = p.rooms[CAND].receive(vec![env], T0 + 4)?;
    ensure!(rc.duplicates == 1 && rc.applied.is_empty(), "own replay: {rc:?}");
    ensure!(snapshot(&p.rooms[CAND])? == before, "an own replay changed the room");
    ensure!(p.rooms[HOST].doc().code() == "once", "text applied twice?");
    Ok(())
}

#[test]
fn equivocation_is_detected() -> Result<()> {
    // The candidate signs two different envelopes at the same seq (a forked history).
    let mut p = room("fork")?;
    let cand = Identity::from_passphrase("fork/member0");
    let a = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, "left"))?.context("edit")?;
    let b = Envelope::seal(
        a.room,
        &cand,
        a.seq,
        a.prev,
        a.session,
        update_under(cand.public().client_id(a.session), "right"),
    );
    ensure!(b.author == a.author, "test identity mismatch: support names identities differently");
    let rc = p.rooms[HOST].receive(vec![a.clone()], T0 + 2)?;
    ensure!(rc.applied.len() == 1, "first history not applied");
    let before = snapshot(&p.rooms[HOST])?;
    let rc = p.rooms[HOST].receive(vec![b], T0 + 3)?;
    ensure!(rc.duplicates == 0 && rc.applied.is_empty(), "fork taken for a duplicate: {rc:?}");
    ensure!(
        matches!(&rc.rejected[..], [(k, CoreError::NotAllowed(m))] if *k == a.author && m.contains("equivocation")),
        "fork not reported: {:?}",
        rc.rejected
    );
    ensure!(snapshot(&p.rooms[HOST])? == before, "the fork changed the room");
    Ok(())
}

#[test]
fn broken_hash_chains_are_rejected() -> Result<()> {
    let mut p = room("chain")?;
    let cand = p.rooms[CAND].identity().clone();
    let e1 = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, "one "))?.context("edit 1")?;
    let e2 = p.rooms[CAND].edit(T0 + 2, |e| e.splice_code(4, 0, "two"))?.context("edit 2")?;
    p.rooms[HOST].receive(vec![e1.clone()], T0 + 3)?;
    let before = snapshot(&p.rooms[HOST])?;

    // Correctly signed by the author, but naming the wrong predecessor (a forked chain).
    let forked = Envelope::seal(e2.room, &cand, e2.seq, [7; 32], e2.session, e2.update.clone());
    // The genuine envelope with `prev` altered after signing.
    let mut altered = e2.clone();
    altered.prev = e2.hash();
    // A second envelope with the same seq as e1 but another update: a rewrite of history.
    let rewrite =
        Envelope::seal(e1.room, &cand, e1.seq, e1.prev, e1.session, update_under(cand.public().client_id(0), "evil"));
    for (what, env) in [("forked", &forked), ("altered", &altered)] {
        let rc = p.rooms[HOST].receive(vec![env.clone()], T0 + 4)?;
        ensure!(
            rc.applied.is_empty() && matches!(rc.rejected.as_slice(), [(_, CoreError::BrokenChain { .. })]),
            "{what}: {:?}",
            rc.rejected
        );
        ensure!(snapshot(&p.rooms[HOST])? == before, "{what} changed the room");
    }
    // (Counted as a duplicate: the receiver does not compare it with the envelope it holds.)
    let rc = p.rooms[HOST].receive(vec![rewrite], T0 + 5)?;
    ensure!(rc.applied.is_empty(), "rewritten history accepted: {rc:?}");
    ensure!(snapshot(&p.rooms[HOST])? == before, "rewritten history changed the room");

    // A fresh replica that never saw e1 cannot be fed a fake first link either.
    let fake_first = Envelope::seal(e1.room, &cand, 0, [1; 32], e1.session, e1.update.clone());
    let mut fresh = Room::open(
        p.rooms[HOST].id(),
        Identity::from_passphrase("fresh"),
        0,
        MemoryStore::new(),
        RoomConfig::default(),
        T0,
    )?;
    fresh.handle(Wire::Admissions(p.rooms[HOST].ledger().admissions()), T0)?;
    let rc = fresh.receive(vec![fake_first], T0 + 6)?;
    ensure!(
        matches!(rc.rejected.as_slice(), [(_, CoreError::BrokenChain { .. })]),
        "fake first link: {:?}",
        rc.rejected
    );

    // Control: the genuine successor is accepted.
    let rc = p.rooms[HOST].receive(vec![e2], T0 + 7)?;
    ensure!(rc.applied.len() == 1 && rc.rejected.is_empty(), "genuine successor refused: {:?}", rc.rejected);
    ensure!(p.rooms[HOST].doc().code() == "one two", "wrong text {:?}", p.rooms[HOST].doc().code());
    Ok(())
}

#[test]
fn bad_signatures_are_rejected_without_blocking_others() -> Result<()> {
    let mut p = room("signatures")?;
    let good_host = p.rooms[HOST].edit(T0 + 1, |e| e.splice_code(0, 0, "host "))?.context("host edit")?;
    let mut forged = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, "cand"))?.context("cand edit")?;
    forged.signature[5] ^= 1;
    let before = snapshot(&p.rooms[OBS])?;
    let rc = p.rooms[OBS].receive(vec![forged.clone(), good_host], T0 + 2)?;
    ensure!(rc.applied.len() == 1 && rc.applied[0].author == p.rooms[HOST].identity().public(), "{rc:?}");
    ensure!(matches!(rc.rejected.as_slice(), [(_, CoreError::BadSignature(_))]), "{:?}", rc.rejected);
    ensure!(p.rooms[OBS].doc().code() == "host ", "forged text visible: {:?}", p.rooms[OBS].doc().code());
    ensure!(snapshot(&p.rooms[OBS])?.1 == before.1 + 1, "log grew by more than the good envelope");
    // A signature over another room's envelope.
    let elsewhere = Identity::from_passphrase("elsewhere").public();
    let moved = Envelope::decode(&forged.encode(), elsewhere)?;
    let rc = p.rooms[HOST].receive(vec![moved], T0 + 3)?;
    ensure!(!rc.rejected.is_empty() && rc.applied.is_empty(), "an envelope of another room: {rc:?}");
    Ok(())
}

#[test]
fn foreign_client_ids_are_rejected() -> Result<()> {
    let mut p = room("foreign")?;
    let cand = p.rooms[CAND].identity().clone();
    let host_client = p.rooms[HOST].identity().public().client_id(0);
    let id = p.rooms[HOST].id();
    let before = snapshot(&p.rooms[HOST])?;
    let cases = [
        ("the host's client id", host_client, 0u32),
        ("an unowned client id", 12_345, 0),
        // Items under the candidate's session-0 id, in an envelope claiming session 9.
        ("another session's client id", cand.public().client_id(0), 9),
    ];
    for (what, client, session) in cases {
        let env = Envelope::seal(
            id,
            &cand,
            1,
            p.rooms[CAND].ledger().head(&cand.public()).last_hash,
            session,
            update_under(client, "mine"),
        );
        let rc = p.rooms[HOST].receive(vec![env], T0 + 1)?;
        ensure!(
            matches!(rc.rejected.as_slice(), [(_, CoreError::ForeignClientId { client: c })] if *c == client),
            "{what}: {:?}",
            rc.rejected
        );
        ensure!(rc.applied.is_empty() && snapshot(&p.rooms[HOST])? == before, "{what} changed the room");
    }
    // Control: the candidate's genuine next envelope passes.
    let env = p.rooms[CAND].edit(T0 + 2, |e| e.splice_code(0, 0, "mine"))?.context("edit")?;
    let rc = p.rooms[HOST].receive(vec![env], T0 + 2)?;
    ensure!(rc.applied.len() == 1, "own client id refused: {:?}", rc.rejected);
    Ok(())
}

#[test]
fn only_the_host_completes_a_round() -> Result<()> {
    let mut p = room("trigger")?;
    for i in [HOST, CAND] {
        let env = p.rooms[i].vote(true, T0 + 1)?.context("vote")?;
        spread(&mut p, i, &env)?;
    }
    ensure!(p.rooms[CAND].consensus().enabled(), "the candidate's replica should see consensus");
    let key = |i: usize| p.rooms[i].identity().public();
    let (host, cand, obs) = (key(HOST), key(CAND), key(OBS));
    let before = snapshot(&p.rooms[NODE])?;
    for (who, trigger) in [("candidate", cand), ("observer", obs)] {
        let r = p.rooms[NODE].complete_round(&trigger, "offline", vec!["x".into()], T0 + 2);
        ensure!(matches!(r, Err(CoreError::NotAllowed(_))), "{who} trigger gave {r:?}");
    }
    ensure!(snapshot(&p.rooms[NODE])? == before, "a refused trigger changed the room");
    // Only the node writes results: not the host itself.
    let r = p.rooms[HOST].complete_round(&host, "offline", vec!["x".into()], T0 + 2);
    ensure!(matches!(r, Err(CoreError::NotAllowed(_))), "the host wrote a result itself: {r:?}");
    // Control.
    let env = p.rooms[NODE].complete_round(&host, "offline", vec!["ok".into()], T0 + 3)?.context("host trigger")?;
    ensure!(p.rooms[NODE].analyzer_round() == 1, "round did not advance");
    spread(&mut p, NODE, &env)?;
    ensure!(!p.rooms[CAND].consensus().enabled(), "consensus carried into the next round");
    Ok(())
}

#[test]
fn expired_tokens_cannot_join() -> Result<()> {
    let room_key = Identity::from_passphrase("expired/room");
    let host = Room::create(
        &room_key,
        Identity::from_passphrase("expired/host"),
        0,
        MemoryStore::new(),
        Default::default(),
        T0,
    )?;
    let now_s = T0 / 1000;
    let token = Invite::issue(&room_key, Role::Candidate, now_s - 1, 0, 1).to_token();
    let mut late =
        Room::open(host.id(), Identity::from_passphrase("late"), 0, MemoryStore::new(), RoomConfig::default(), T0)?;
    let r = late.join(&token, "Late", T0);
    ensure!(matches!(r, Err(CoreError::Expired { .. })), "expired token gave {r:?}");
    ensure!(
        late.role().is_none() && late.store().log_len() == 0 && late.store().admissions()?.is_empty(),
        "a failed join left traces"
    );
    // A grant that expires exactly now is still good; one second later it is not.
    let edge = Invite::issue(&room_key, Role::Candidate, now_s, 0, 2).to_token();
    ensure!(Invite::from_token(&edge, &host.id(), now_s * 1000 + 999).is_ok(), "grant refused at its expiry second");
    ensure!(
        matches!(Invite::from_token(&edge, &host.id(), (now_s + 1) * 1000), Err(CoreError::Expired { .. })),
        "expired grant accepted"
    );
    // An admission signed after its grant expired is refused even when replaying a log.
    let stale = arena_core::Admission::sign(
        &Identity::from_passphrase("stale"),
        &arena_core::Invite::issue(&room_key, Role::Candidate, now_s - 1, 0, 3),
        "Stale",
        T0,
    );
    let mut host = host;
    ensure!(matches!(host.admit(&stale, None), Err(CoreError::Expired { .. })), "stale admission accepted");
    // A token for another room.
    let other = Invite::issue(&Identity::from_passphrase("other room"), Role::Host, now_s + 60, 0, 4).to_token();
    ensure!(late.join(&other, "Wrong", T0).is_err() && late.role().is_none(), "token of another room accepted");
    Ok(())
}

#[test]
fn tampered_checkpoints_are_refused() -> Result<()> {
    let mut p = room("checkpoint")?;
    p.rooms[HOST].edit(T0 + 1, |e| e.splice_code(0, 0, "def f():\n    return 42\n"))?;
    let cp = p.rooms[HOST].checkpoint(T0 + 2)?;
    let fresh = || -> Result<Room<MemoryStore>> {
        let mut r = Room::open(
            p.rooms[HOST].id(),
            Identity::from_passphrase("late joiner"),
            0,
            MemoryStore::new(),
            RoomConfig::default(),
            T0,
        )?;
        r.handle(Wire::Admissions(p.rooms[HOST].ledger().admissions()), T0)?;
        Ok(r)
    };
    let host_key = p.rooms[HOST].identity().public();
    let cand = p.rooms[CAND].identity().clone();
    let mut tampered: Vec<(&str, Checkpoint)> = Vec::new();
    let mut c = cp.clone();
    let mid = c.state.len() / 2;
    c.state[mid] ^= 0x20;
    tampered.push(("state byte", c));
    let mut c = cp.clone();
    c.state.truncate(c.state.len() - 1);
    tampered.push(("state truncated", c));
    let mut c = cp.clone();
    c.heads[0].1.next_seq += 1;
    tampered.push(("head seq", c));
    let mut c = cp.clone();
    c.heads[0].1.last_hash[0] ^= 1;
    tampered.push(("head hash", c));
    let mut c = cp.clone();
    c.heads.pop();
    tampered.push(("head dropped", c));
    let mut c = cp.clone();
    c.at_ms += 1;
    tampered.push(("time", c));
    let mut c = cp.clone();
    c.signer = cand.public();
    tampered.push(("signer swapped", c));
    // Validly signed, by a member who is not the host.
    tampered.push((
        "signed by the candidate",
        Checkpoint::seal(cp.room, cp.heads.clone(), cp.state.clone(), cp.state_vector.clone(), cp.at_ms, &cand),
    ));
    // Validly signed by the host, for another room.
    let elsewhere = Identity::from_passphrase("elsewhere").public();
    tampered.push((
        "another room",
        Checkpoint::seal(
            elsewhere,
            cp.heads.clone(),
            cp.state.clone(),
            cp.state_vector.clone(),
            cp.at_ms,
            p.rooms[HOST].identity(),
        ),
    ));
    for (what, bad) in &tampered {
        let mut r = fresh()?;
        let before = snapshot(&r)?;
        ensure!(r.adopt_checkpoint(bad).is_err(), "{what}: tampered checkpoint adopted");
        ensure!(snapshot(&r)? == before, "{what}: a refused checkpoint changed the replica");
        // And over the wire (encode, decode, handle).
        let wire = Wire::decode(&Wire::Checkpoint(Box::new(bad.clone())).encode(), r.id())?;
        ensure!(r.handle(wire, T0 + 3).is_err(), "{what}: adopted over the wire");
        ensure!(snapshot(&r)? == before, "{what}: a refused checkpoint changed the replica");
    }
    // Control: the genuine one is adopted, and later envelopes continue its chains.
    let mut r = fresh()?;
    r.adopt_checkpoint(&cp)?;
    ensure!(r.doc().code() == p.rooms[HOST].doc().code(), "genuine checkpoint lost the text");
    ensure!(cp.signer == host_key, "checkpoint signer is not the host");
    let env = p.rooms[HOST].edit(T0 + 4, |e| e.splice_code(0, 0, "# after\n"))?.context("edit")?;
    let rc = r.receive(vec![env], T0 + 5)?;
    ensure!(rc.applied.len() == 1, "chain did not continue after the checkpoint: {:?}", rc.rejected);
    ensure!(r.doc().code() == p.rooms[HOST].doc().code(), "texts differ after the checkpoint");
    Ok(())
}

#[test]
fn restore_keeps_history() -> Result<()> {
    let mut p = room("restore")?;
    let v1_text = "def add(a, b):\n    return a + b\n";
    let e = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, v1_text))?.context("edit")?;
    spread(&mut p, CAND, &e)?;
    let v1 = p.rooms[HOST].create_version("first", VersionCause::Manual, T0 + 2)?;
    let after_v1 = p.rooms[HOST].store().log_len();
    let e = p.rooms[CAND].edit(T0 + 3, |e| e.splice_code(19, 12, "return a - b  # 😀 bug"))?.context("edit")?;
    spread(&mut p, CAND, &e)?;
    let broken = p.rooms[HOST].doc().code();
    ensure!(broken != v1_text, "the second edit changed nothing");
    let before_restore = p.rooms[HOST].store().log_len();
    let versions_before = p.rooms[HOST].doc().versions().len();

    let (env, meta) = p.rooms[HOST].restore(&v1.id, T0 + 4)?;
    ensure!(env.is_some(), "restore wrote nothing");
    ensure!(p.rooms[HOST].doc().code() == v1_text, "restore did not bring back v1: {:?}", p.rooms[HOST].doc().code());
    let versions = p.rooms[HOST].doc().versions();
    ensure!(versions.len() == versions_before + 1, "restore did not add a version");
    ensure!(meta.cause == VersionCause::Restore && versions.last() == Some(&meta), "restore version wrong: {meta:?}");
    ensure!(versions.iter().any(|v| v.id == v1.id), "v1 vanished");
    // Nothing was rewritten: the log only grew, v1 and the pre-restore text still reconstruct.
    ensure!(p.rooms[HOST].store().log_len() > before_restore, "the log did not grow");
    ensure!(p.rooms[HOST].code_at(&Cut::Version(v1.id.clone()))? == v1_text, "v1 no longer reconstructs");
    ensure!(p.rooms[HOST].code_at(&Cut::LogIndex(before_restore))? == broken, "pre-restore text lost");
    ensure!(p.rooms[HOST].code_at(&Cut::LogIndex(after_v1))? == v1_text, "text at v1's log position lost");
    let diff = p.rooms[HOST].diff(&Cut::LogIndex(before_restore), &Cut::End)?;
    ensure!(
        diff.iter().any(|l| matches!(l, arena_core::history::DiffLine::Removed(_))),
        "diff to the restore is empty"
    );

    // Another replica sees the same history after catching up.
    let Wire::Want(have) = p.rooms[CAND].want() else { anyhow::bail!("want") };
    for m in p.rooms[HOST].answer(&have)? {
        p.rooms[CAND].handle(m, T0 + 5)?;
    }
    ensure!(p.rooms[CAND].doc().code() == v1_text, "candidate did not get the restore");
    ensure!(p.rooms[CAND].code_at(&Cut::Version(v1.id.clone()))? == v1_text, "v1 differs on the candidate");
    ensure!(
        p.rooms[CAND].code_at(&Cut::Version(meta.id.clone()))? == v1_text,
        "restore version differs on the candidate"
    );
    Ok(())
}

#[test]
fn forged_early_envelopes_are_not_buffered() -> Result<()> {
    let mut p = room("early")?;
    let e1 = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, "one "))?.context("edit 1")?;
    let e2 = p.rooms[CAND].edit(T0 + 2, |e| e.splice_code(4, 0, "two"))?.context("edit 2")?;
    // Claims the candidate's key, one ahead of the host's chain, signature forged: it must not
    // take a buffer slot (anyone could fill the buffer with big ones) nor trigger a catch-up.
    let mut forged = e2.clone();
    forged.update = update_under(p.rooms[CAND].identity().public().client_id(0), &"x".repeat(10_000));
    let before = snapshot(&p.rooms[HOST])?;
    let rc = p.rooms[HOST].receive(vec![forged], T0 + 3)?;
    ensure!(matches!(rc.rejected.as_slice(), [(_, CoreError::BadSignature(_))]), "{:?}", rc.rejected);
    ensure!(rc.buffered == 0 && !rc.needs_catch_up && p.rooms[HOST].pending() == 0, "forged envelope buffered: {rc:?}");
    ensure!(snapshot(&p.rooms[HOST])? == before, "a forged early envelope changed the room");
    // Control: the genuine early one is buffered, then applied when its predecessor arrives.
    let rc = p.rooms[HOST].receive(vec![e2], T0 + 4)?;
    ensure!(rc.buffered == 1 && rc.needs_catch_up && p.rooms[HOST].pending() == 1, "genuine early envelope: {rc:?}");
    let rc = p.rooms[HOST].receive(vec![e1], T0 + 5)?;
    ensure!(rc.applied.len() == 2 && p.rooms[HOST].pending() == 0, "buffered envelope not applied: {rc:?}");
    ensure!(p.rooms[HOST].doc().code() == "one two", "wrong text {:?}", p.rooms[HOST].doc().code());
    Ok(())
}

/// A member deletes ids the host has not written yet (no honest peer can): yrs keeps that
/// deletion pending. The host's next characters must then vanish on the host as everywhere
/// else, not stay visible only there.
#[test]
fn deleting_future_ids_still_converges() -> Result<()> {
    let mut p = room("future-delete")?;
    let host_client = p.rooms[HOST].identity().public().client_id(0);
    let sv = yrs::StateVector::decode_v1(&p.rooms[HOST].doc().state_vector()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let next = u64::from(sv.get(&yrs::ClientID::new(host_client)));
    let var = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    // No structs; delete set: host client, one range [next, next + 1).
    let mut update = vec![0, 1];
    var(&mut update, host_client);
    update.push(1);
    var(&mut update, next);
    update.push(1);
    let cand = p.rooms[CAND].identity().clone();
    let head = p.rooms[HOST].ledger().head(&cand.public());
    let env = Envelope::seal(p.rooms[HOST].id(), &cand, head.next_seq, head.last_hash, 0, update);
    // Nobody holds that id yet: every replica holds the deletion back (unapplied, asking for
    // catch-up) until the host's item arrives, instead of applying it unchecked.
    for (i, r) in p.rooms.iter_mut().enumerate().filter(|(i, _)| *i != CAND) {
        let rc = r.receive(vec![env.clone()], T0 + 1)?;
        ensure!(rc.applied.is_empty() && rc.buffered == 1 && rc.needs_catch_up, "replica {i}: {rc:?}");
    }
    let typed = p.rooms[HOST].edit(T0 + 1, |e| e.splice_code(0, 0, "ok"))?.context("edit")?;
    spread(&mut p, HOST, &typed)?;
    let host_code = p.rooms[HOST].doc().code();
    ensure!(host_code == "k", "the host sees {host_code:?}");
    // (The candidate's own replica never applied its hand-made update.)
    let obs = &p.rooms[OBS];
    ensure!(obs.doc().code() == host_code, "the observer sees {:?}", obs.doc().code());
    ensure!(obs.doc().canonical_state() == p.rooms[HOST].doc().canonical_state(), "observer and host differ");
    Ok(())
}

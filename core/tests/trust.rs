//! The trust model as an attacker tries it (issue #21): a leaked grant re-used by another
//! key, members writing what their role may not (`analysis`, `runs`, `meta`, another
//! member's vote or participant entry, by an explicit parent or by an origin next to
//! someone else's item, or by deleting it), the host removing the candidate from the
//! consensus rule, a replayed withdrawn vote, an expired invite with a back-dated admission.
//! Each attack ran against e41a290's code first and succeeded there; here every replica
//! refuses it and stays as it was.

mod support;

use anyhow::{ensure, Context, Result};
use arena_core::records::{AnalysisRecord, Meta, Participant, RunRecord, RunStatus};
use arena_core::sync::wire::Wire;
use arena_core::vote::sign_vote;
use arena_core::{Admission, CoreError, Envelope, Identity, Invite, MemoryStore, Role, Room, RoomDoc};
use yrs::{Array, ReadTxn, Transact};

use support::{fingerprint, Party, T0};

use support::{full_room as room, CAND, HOST, NODE, OBS};

/// An envelope by replica `who`'s key carrying `edit` made on a copy of its document: what a
/// modified client would send (its own replica's rules are bypassed).
fn forged_edit(p: &Party, who: usize, edit: impl FnOnce(&yrs::Doc)) -> Result<Envelope> {
    let r = &p.rooms[who];
    let me = r.identity().clone();
    let copy = RoomDoc::new(me.public().client_id(0));
    copy.apply_v1(&r.doc().encode_state())?;
    let before = copy.raw_yrs_doc().transact().state_vector();
    edit(copy.raw_yrs_doc());
    let update = copy.raw_yrs_doc().transact().encode_state_as_update_v1(&before);
    let head = r.ledger().head(&me.public());
    Ok(Envelope::seal(r.id(), &me, head.next_seq, head.last_hash, 0, update))
}

/// Every replica but the author's refuses `env` and stays exactly as it was.
fn refused_everywhere(p: &mut Party, from: usize, env: &Envelope, what: &str) -> Result<()> {
    for (i, r) in p.rooms.iter_mut().enumerate().filter(|(i, _)| *i != from) {
        let before = fingerprint(r);
        let rc = r.receive(vec![env.clone()], T0 + 10)?;
        ensure!(rc.applied.is_empty(), "{what}: applied by replica {i}");
        // A root the schema does not name is refused by the update gate, before the write
        // rules: as malformed.
        let refused = match rc.rejected.first() {
            Some((_, CoreError::NotAllowed(_))) => true,
            Some((_, CoreError::Malformed { reason, .. })) => reason.contains("not in the room's schema"),
            _ => false,
        };
        ensure!(refused, "{what}: replica {i} did not refuse it: {rc:?}");
        ensure!(fingerprint(r) == before, "{what}: the refusal changed replica {i}");
    }
    Ok(())
}

fn rec(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn analysis(round: u64, finding: &str) -> AnalysisRecord {
    AnalysisRecord { round, backend: "offline".into(), findings: vec![finding.into()], created_at: T0 }
}

#[test]
fn a_leaked_grant_admits_nobody_else() -> Result<()> {
    let mut p = room("leak")?;
    // The observer holds every admission, the host's and the node's included.
    let seen = p.rooms[OBS].ledger().admissions();
    let mallory = Identity::from_passphrase("mallory");
    for adm in seen.iter().filter(|a| a.grant.role == Role::Host) {
        // The grant re-used with a key of Mallory's own as the "invite secret": the room
        // key's signature holds, the invite signature cannot.
        let guess = Invite::bound(&mallory, mallory.clone(), Role::Host, u64::MAX, 0, 0);
        let mut forged = Admission::sign(&mallory, &guess, "m", T0 + 1);
        forged.grant = adm.grant.clone();
        // ... or the genuine invite signature of the admission she saw, over another key.
        let mut spliced = adm.clone();
        spliced.member = mallory.public();
        for bad in [forged, spliced] {
            let (_, rc) = p.rooms[HOST].handle(Wire::Admissions(vec![bad]), T0 + 1)?;
            ensure!(rc.rejected.len() == 1, "a forged admission went unreported");
            ensure!(p.rooms[HOST].ledger().member(&mallory.public()).is_none(), "mallory admitted as host");
        }
    }
    // An envelope from her is from a stranger.
    let env = Envelope::seal(p.rooms[HOST].id(), &mallory, 0, [0; 32], 0, {
        let d = RoomDoc::new(mallory.public().client_id(0));
        d.edit(|e| e.splice_code(0, 0, "pwned")).1
    });
    refused_everywhere(&mut p, usize::MAX, &env, "a stranger's edit")?;
    // The token she would need is not in anything a peer sends: an admission carries the
    // grant and signatures, never the invite's secret.
    let host_token = Invite::issue(&p.room_key, Role::Host, T0 / 1000 + 365 * 86_400, 0, T0).to_token();
    // The invite secret's characters (the last 43 are the read key's).
    let secret_part = &host_token[host_token.len() - 85..host_token.len() - 45];
    for a in &seen {
        let bytes = Wire::Admissions(vec![a.clone()]).encode();
        ensure!(!String::from_utf8_lossy(&bytes).contains(secret_part), "a token travels in an admission");
    }
    Ok(())
}

#[test]
fn members_write_only_what_their_role_may() -> Result<()> {
    let mut p = room("roles")?;
    let host_hex = p.rooms[HOST].identity().public().to_hex();
    let cand_hex = p.rooms[CAND].identity().public().to_hex();
    // The node's genuine analysis, for the attacks that go next to it.
    let host_key = p.rooms[HOST].identity().public();
    for who in [HOST, CAND] {
        let env = p.rooms[who].vote(true, T0 + 1)?.context("vote")?;
        for r in p.rooms.iter_mut() {
            r.receive(vec![env.clone()], T0 + 1)?;
        }
    }
    let genuine =
        p.rooms[NODE].complete_round(&host_key, "offline", vec!["fine".into()], T0 + 2)?.context("analysis")?;
    for r in p.rooms.iter_mut() {
        r.receive(vec![genuine.clone()], T0 + 2)?;
    }
    let run = RunRecord {
        id: "r1".into(),
        by: cand_hex.clone(),
        language: "python".into(),
        status: RunStatus::Finished,
        stdout: "all tests passed".into(),
        stderr: String::new(),
        exit_code: Some(0),
        cpu_ms: 1,
        wall_ms: 1,
        at: T0,
    };
    let cases: Vec<(&str, usize, Envelope)> = vec![
        (
            "a candidate's analysis",
            CAND,
            forged_edit(&p, CAND, |d| {
                let a = d.get_or_insert_array("analysis");
                a.push_back(&mut d.transact_mut(), rec(&analysis(1, "hire")));
            })?,
        ),
        (
            "the host's analysis",
            HOST,
            forged_edit(&p, HOST, |d| {
                let a = d.get_or_insert_array("analysis");
                a.push_back(&mut d.transact_mut(), rec(&analysis(1, "reject")));
            })?,
        ),
        // Inserted after the node's item: no parent in the struct, only an origin.
        (
            "a candidate's analysis next to the node's",
            CAND,
            forged_edit(&p, CAND, |d| {
                let a = d.get_or_insert_array("analysis");
                a.insert(&mut d.transact_mut(), 1, rec(&analysis(0, "hire")));
            })?,
        ),
        (
            "a candidate deleting the node's analysis",
            CAND,
            forged_edit(&p, CAND, |d| {
                let a = d.get_or_insert_array("analysis");
                a.remove(&mut d.transact_mut(), 0);
            })?,
        ),
        (
            "a candidate's passing run",
            CAND,
            forged_edit(&p, CAND, |d| {
                let r = d.get_or_insert_array("runs");
                r.push_back(&mut d.transact_mut(), rec(&run));
            })?,
        ),
        (
            "a candidate's meta",
            CAND,
            forged_edit(&p, CAND, |d| {
                let m = d.get_or_insert_map("meta");
                yrs::Map::insert(&m, &mut d.transact_mut(), "question", "an easier one");
            })?,
        ),
        (
            "a candidate's vote under the host's key",
            CAND,
            forged_edit(&p, CAND, |d| {
                let v = d.get_or_insert_map("votes");
                let vote = sign_vote(&p.room_key.public(), p.rooms[CAND].identity(), 1, false);
                yrs::Map::insert(&v, &mut d.transact_mut(), host_hex.as_str(), rec(&vote));
            })?,
        ),
        (
            "a candidate rewriting the host's participant entry",
            CAND,
            forged_edit(&p, CAND, |d| {
                let m = d.get_or_insert_map("participants");
                let fake =
                    Participant { name: "x".into(), role: Role::Observer, public_key: host_hex.clone(), joined_at: 0 };
                yrs::Map::insert(&m, &mut d.transact_mut(), host_hex.as_str(), rec(&fake));
            })?,
        ),
        (
            "a root outside the schema",
            HOST,
            forged_edit(&p, HOST, |d| {
                let t = d.get_or_insert_text("notes");
                yrs::Text::insert(&t, &mut d.transact_mut(), 0, "x");
            })?,
        ),
    ];
    for (what, who, env) in &cases {
        refused_everywhere(&mut p, *who, env, what)?;
    }
    // An observer writes nothing, not even its own participant entry.
    let obs_hex = p.rooms[OBS].identity().public().to_hex();
    let obs_entry = forged_edit(&p, OBS, |d| {
        let m = d.get_or_insert_map("participants");
        let me = Participant { name: "o".into(), role: Role::Observer, public_key: obs_hex.clone(), joined_at: 0 };
        yrs::Map::insert(&m, &mut d.transact_mut(), obs_hex.as_str(), rec(&me));
    })?;
    for (i, r) in p.rooms.iter_mut().enumerate().filter(|(i, _)| *i != OBS) {
        let rc = r.receive(vec![obs_entry.clone()], T0 + 10)?;
        ensure!(rc.applied.is_empty() && !rc.rejected.is_empty(), "replica {i} took an observer's write");
    }
    // Their own replicas refuse to sign the same through the API, and stay usable.
    let r = p.rooms[CAND].edit(T0 + 11, |e| e.push_analysis(&analysis(1, "hire")));
    ensure!(matches!(r, Err(CoreError::NotAllowed(_))), "the candidate's replica signed an analysis: {r:?}");
    // Control: what each may write is applied everywhere.
    let mine = p.rooms[CAND].edit(T0 + 12, |e| e.splice_code(0, 0, "def f(): pass\n"))?.context("code")?;
    let meta =
        p.rooms[HOST].edit(T0 + 12, |e| e.set_meta("question", &serde_json::json!("two sum")))?.context("meta")?;
    for (from, env) in [(CAND, mine), (HOST, meta)] {
        for (i, r) in p.rooms.iter_mut().enumerate().filter(|(i, _)| *i != from) {
            let rc = r.receive(vec![env.clone()], T0 + 13)?;
            ensure!(rc.applied.len() == 1 && rc.rejected.is_empty(), "replica {i} refused an honest edit: {rc:?}");
        }
    }
    Ok(())
}

#[test]
fn the_host_cannot_drop_the_candidate_from_the_consensus() -> Result<()> {
    let mut p = room("threshold")?;
    // The old rule read `analyzerThreshold` from `meta`, which the host writes.
    let meta = Meta { analyzer_threshold: vec![Role::Host], ..p.rooms[HOST].doc().meta() };
    let env = p.rooms[HOST].edit(T0 + 2, |e| e.set_meta_record(&meta))?.context("meta")?;
    let vote = p.rooms[HOST].vote(true, T0 + 3)?.context("vote")?;
    p.rooms[NODE].receive(vec![env, vote], T0 + 4)?;
    let c = p.rooms[NODE].consensus();
    ensure!(!c.enabled(), "consensus without the candidate");
    ensure!(c.required == vec![Role::Host, Role::Candidate], "required {:?}", c.required);
    let host = p.rooms[HOST].identity().public();
    let r = p.rooms[NODE].complete_round(&host, "offline", vec![], T0 + 5);
    ensure!(matches!(r, Err(CoreError::Consensus(_))), "the node ran the analyzer: {r:?}");
    // A second candidate must vote too.
    let late = Invite::issue(&p.room_key, Role::Candidate, T0 / 1000 + 60, 0, 77);
    let two = Admission::sign(&Identity::from_passphrase("second candidate"), &late, "B", T0 + 6);
    p.rooms[NODE].handle(Wire::Admissions(vec![two]), T0 + 6)?;
    let cand_vote = p.rooms[CAND].vote(true, T0 + 7)?.context("vote")?;
    p.rooms[NODE].receive(vec![cand_vote], T0 + 7)?;
    let c = p.rooms[NODE].consensus();
    ensure!(!c.enabled() && c.missing.len() == 1, "one candidate's vote enabled it: {c:?}");
    Ok(())
}

#[test]
fn a_withdrawn_vote_cannot_be_replayed() -> Result<()> {
    let mut p = room("replay-vote")?;
    let yes = p.rooms[CAND].vote(true, T0 + 2)?.context("yes")?;
    let old = p.rooms[CAND].doc().votes();
    let no = p.rooms[CAND].vote(false, T0 + 3)?.context("no")?;
    for i in [HOST, OBS, NODE] {
        p.rooms[i].receive(vec![yes.clone(), no.clone()], T0 + 4)?;
    }
    let (voter, rec) = old.into_iter().next().context("a vote")?;
    // The host's replica refuses to write it ...
    let r = p.rooms[HOST].edit(T0 + 5, |e| e.set_vote(&voter, &rec));
    ensure!(matches!(r, Err(CoreError::NotAllowed(_))), "the host's replica wrote the candidate's vote: {r:?}");
    // ... and a modified host's envelope carrying it is refused everywhere.
    let mut p2 = room("replay-vote-2")?;
    let yes = p2.rooms[CAND].vote(true, T0 + 2)?.context("yes")?;
    let old = p2.rooms[CAND].doc().votes();
    let no = p2.rooms[CAND].vote(false, T0 + 3)?.context("no")?;
    for i in [HOST, OBS, NODE] {
        p2.rooms[i].receive(vec![yes.clone(), no.clone()], T0 + 4)?;
    }
    let (voter, rec) = old.into_iter().next().context("a vote")?;
    let rec = serde_json::to_string(&rec)?;
    let env = forged_edit(&p2, HOST, |d| {
        let v = d.get_or_insert_map("votes");
        yrs::Map::insert(&v, &mut d.transact_mut(), voter.as_str(), rec);
    })?;
    refused_everywhere(&mut p2, HOST, &env, "a replayed vote")?;
    let host_vote = p2.rooms[HOST].vote(true, T0 + 6)?.context("host vote")?;
    p2.rooms[NODE].receive(vec![host_vote], T0 + 6)?;
    ensure!(!p2.rooms[NODE].consensus().enabled(), "the withdrawn vote counts");
    Ok(())
}

#[test]
fn an_expired_invite_cannot_join_a_live_room() -> Result<()> {
    let mut p = room("expired")?;
    let now_s = T0 / 1000;
    let skew = arena_core::CLOCK_SKEW_MS / 1000;
    // Expired an hour ago; its holder signs an admission dated two hours ago.
    let stale = Invite::issue(&p.room_key, Role::Candidate, now_s - 3600, 0, 99);
    let late = Identity::from_passphrase("late");
    let backdated = Admission::sign(&late, &stale, "late", (now_s - 7200) * 1000);
    // Where a join comes in live (the node's /yws and libp2p entry points), the receiver's
    // clock decides, whatever time the admission claims.
    for (i, r) in p.rooms.iter_mut().enumerate() {
        let got = r.admit_live(&backdated, T0 + 1);
        ensure!(matches!(got, Err(CoreError::Expired { .. })), "replica {i}: {got:?}");
        ensure!(r.ledger().member(&late.public()).is_none(), "replica {i} admitted an expired invite");
    }
    // Within the stated clock skew it is still good (a peer whose clock is a little behind).
    let edge = Invite::issue(&p.room_key, Role::Candidate, now_s - skew + 1, 0, 100);
    let ok = Admission::sign(&late, &edge, "late", (now_s - skew) * 1000);
    ensure!(p.rooms[HOST].admit_live(&ok, T0 + 1).is_ok(), "an admission within the skew was refused");
    // A member who joined in time stands in history: a late joiner, days after the link
    // expired, takes its admission (and so its envelopes) on catch-up.
    let mut fresh = Room::open(
        p.rooms[HOST].id(),
        Identity::from_passphrase("reader"),
        0,
        MemoryStore::new(),
        Default::default(),
        T0 + 10 * 86_400_000,
    )?;
    let (_, rc) = fresh.handle(Wire::Admissions(p.rooms[HOST].ledger().admissions()), T0 + 10 * 86_400_000)?;
    ensure!(rc.rejected.is_empty(), "a late joiner refused members who joined in time: {rc:?}");
    Ok(())
}

#[test]
fn a_revoked_member_is_cut_off_everywhere() -> Result<()> {
    let mut p = room("revoke")?;
    let cand = p.rooms[CAND].identity().public();
    let before = p.rooms[CAND].edit(T0 + 1, |e| e.splice_code(0, 0, "a"))?.context("edit")?;
    for i in [HOST, OBS, NODE] {
        p.rooms[i].receive(vec![before.clone()], T0 + 1)?;
    }
    // Only a host (or the node) may revoke; the candidate and the observer may not.
    let host_key = p.rooms[HOST].identity().public();
    for who in [CAND, OBS] {
        let r = p.rooms[who].revoke(host_key, T0 + 2);
        ensure!(matches!(r, Err(CoreError::NotAllowed(_))), "replica {who} revoked the host: {r:?}");
    }
    let msg = p.rooms[HOST].revoke(cand, T0 + 2)?;
    // Its later envelopes are refused by every replica that got the record, whichever
    // order the rest arrives in; what it wrote before stays.
    let after = p.rooms[CAND].edit(T0 + 3, |e| e.splice_code(1, 0, "b"))?.context("edit")?;
    for i in [OBS, NODE] {
        let (_, rc) = p.rooms[i].handle(msg.clone(), T0 + 4)?;
        ensure!(rc.rejected.is_empty(), "replica {i} refused the revocation: {rc:?}");
    }
    for i in [HOST, OBS, NODE] {
        let rc = p.rooms[i].receive(vec![after.clone()], T0 + 5)?;
        ensure!(rc.applied.is_empty() && !rc.rejected.is_empty(), "replica {i} applied a revoked member's edit");
        ensure!(p.rooms[i].doc().code() == "a", "replica {i} lost what the member wrote before");
    }
    // It no longer counts for the analyzer, and a late joiner learns of it on catch-up.
    let host_vote = p.rooms[HOST].vote(true, T0 + 6)?.context("vote")?;
    p.rooms[NODE].receive(vec![host_vote], T0 + 6)?;
    ensure!(p.rooms[NODE].consensus().enabled(), "a removed candidate still blocks the analyzer");
    let mut late = Room::open(
        p.rooms[HOST].id(),
        Identity::from_passphrase("late"),
        0,
        MemoryStore::new(),
        Default::default(),
        T0,
    )?;
    let arena_core::sync::wire::Wire::Want(have) = late.want() else { unreachable!() };
    for m in p.rooms[HOST].answer(&have)? {
        late.handle(m, T0 + 7)?;
    }
    ensure!(late.ledger().is_revoked(&cand), "a late joiner missed the revocation");
    ensure!(late.receive(vec![after], T0 + 8)?.applied.is_empty(), "the late joiner applied it");
    // Nor can it come back under the same key; a withdrawn invite admits nobody.
    let inv = Invite::issue(&p.room_key, Role::Candidate, T0 / 1000 + 60, 0, 5);
    let again = Admission::sign(p.rooms[CAND].identity(), &inv, "again", T0 + 9);
    let (_, rc) = p.rooms[HOST].handle(Wire::Admissions(vec![again]), T0 + 9)?;
    ensure!(!rc.rejected.is_empty(), "a removed member came back");
    let msg = p.rooms[HOST].revoke(inv.grant.invite, T0 + 10)?;
    p.rooms[NODE].handle(msg, T0 + 10)?;
    let someone = Admission::sign(&Identity::from_passphrase("someone"), &inv, "s", T0 + 11);
    let (_, rc) = p.rooms[NODE].handle(Wire::Admissions(vec![someone]), T0 + 11)?;
    ensure!(!rc.rejected.is_empty(), "a withdrawn invite admitted someone");
    // The record survives a reopen of a sled store.
    let dir = tempfile::tempdir()?;
    let db = arena_core::SledDb::open(dir.path())?;
    let mut host = Room::create(
        &p.room_key,
        Identity::from_passphrase("sled host"),
        0,
        db.room(&p.rooms[HOST].id())?,
        Meta::default(),
        T0,
    )?;
    host.handle(Wire::Admissions(p.rooms[HOST].ledger().admissions()), T0)?;
    host.revoke(cand, T0 + 12)?;
    host.flush()?;
    drop(host);
    let reopened = Room::open(
        p.rooms[HOST].id(),
        Identity::from_passphrase("sled host"),
        0,
        db.room(&p.rooms[HOST].id())?,
        Default::default(),
        T0,
    )?;
    ensure!(reopened.ledger().is_revoked(&cand), "the revocation was lost on reopen");
    Ok(())
}

//! Honest attribution (issue #21 item 5): a node's envelope for a stock client names the
//! client's delegation (`via`), and every replica, not only the node, holds it to that
//! grant's role. Tried as an attacker: a node writing `meta` or `analysis` "via" a stock
//! candidate, a via naming an unknown or forged delegation, a non-node member using via, a
//! delegation from another room or with its grant altered, one for an observer's grant, a
//! second grant under a known invite key, a delegation replayed after its invite was
//! revoked (and the node asked to sign for the revoked link).
//! The first ran against main's code (8ce3a32) as the equivalent there (a node envelope
//! carrying a stock candidate's update that writes `meta`) and was accepted: "replica 0
//! applied the stock candidate's meta write the node signed".

mod support;

use anyhow::{ensure, Context, Result};
use arena_core::sync::wire::Wire;
use arena_core::{CoreError, Delegation, Envelope, Identity, Invite, PeerKey, Role, RoomDoc};
use yrs::{Array, Map, ReadTxn, Text, Transact};

use support::{fingerprint, full_room, sync_all, Party, CAND, HOST, NODE, OBS, T0};

/// A stock client's invite for the party's room.
fn stock_invite(p: &Party, role: Role, nonce: u64) -> Invite {
    Invite::issue(&p.room_key, role, T0 / 1000 + 3600, 0, nonce)
}

/// Registers `inv`'s delegation at the node and hands it to every replica.
fn delegate(p: &mut Party, inv: &Invite) -> Result<Delegation> {
    let d = Delegation::sign(inv);
    ensure!(p.rooms[NODE].delegate(&d, Some(T0))?, "the delegation was not new");
    for (i, r) in p.rooms.iter_mut().enumerate().filter(|(i, _)| *i != NODE) {
        let (_, rc) = r.handle(Wire::Delegations(vec![d.clone()]), T0 + 1)?;
        ensure!(rc.rejected.is_empty(), "replica {i} refused the delegation: {:?}", rc.rejected);
    }
    Ok(d)
}

/// An update a stock client (client id `client`) makes on a copy of `who`'s document.
fn stock_update(p: &Party, who: usize, client: u64, edit: impl FnOnce(&yrs::Doc)) -> Result<Vec<u8>> {
    let copy = RoomDoc::new(client);
    copy.apply_v1(&p.rooms[who].doc().encode_state())?;
    let before = copy.raw_yrs_doc().transact().state_vector();
    edit(copy.raw_yrs_doc());
    let update = copy.raw_yrs_doc().transact().encode_state_as_update_v1(&before);
    Ok(update)
}

/// `who`'s next envelope carrying `update`, naming `via`, signed with its key: what a
/// modified node (or member) would send.
fn forged(p: &Party, who: usize, via: Option<PeerKey>, update: Vec<u8>) -> Envelope {
    let r = &p.rooms[who];
    let me = r.identity().clone();
    let head = r.ledger().head(&me.public());
    Envelope::seal_via(r.id(), &me, head.next_seq, head.last_hash, 0, via, update)
}

fn type_code(text: &str) -> impl FnOnce(&yrs::Doc) + '_ {
    move |d| {
        let code = d.get_or_insert_text("code");
        let mut t = d.transact_mut();
        code.push(&mut t, text);
    }
}

/// Every replica but `from` refuses `env` (NotAllowed) and stays as it was.
fn refused_everywhere(p: &mut Party, from: usize, env: &Envelope, what: &str) -> Result<()> {
    for (i, r) in p.rooms.iter_mut().enumerate().filter(|(i, _)| *i != from) {
        let before = fingerprint(r);
        let rc = r.receive(vec![env.clone()], T0 + 10)?;
        ensure!(rc.applied.is_empty(), "{what}: applied by replica {i}");
        ensure!(
            matches!(rc.rejected.first(), Some((_, CoreError::NotAllowed(_)))),
            "{what}: replica {i} did not refuse it: {rc:?}"
        );
        ensure!(fingerprint(r) == before, "{what}: the refusal changed replica {i}");
    }
    Ok(())
}

#[test]
fn a_node_writes_for_a_stock_candidate_only_what_a_candidate_may() -> Result<()> {
    let mut p = full_room("via-rules")?;
    let cand = stock_invite(&p, Role::Candidate, 100);
    let d = delegate(&mut p, &cand)?;
    // The honest path: the node signs the stock candidate's code edit naming its grant.
    let update = stock_update(&p, NODE, 5_000, type_code("x = 1"))?;
    let env = p.rooms[NODE].proxy_update(&update, &d.key(), T0 + 2)?.context("nothing sealed")?;
    ensure!(env.via == Some(d.key()), "the envelope does not name the delegation");
    for i in [HOST, CAND, OBS] {
        let rc = p.rooms[i].receive(vec![env.clone()], T0 + 3)?;
        ensure!(rc.applied.len() == 1, "replica {i} did not apply the stock candidate's edit: {rc:?}");
        ensure!(p.rooms[i].doc().code().contains("x = 1"), "replica {i} lacks the edit");
    }
    // The node refuses to sign meta for it itself ...
    let meta = stock_update(&p, NODE, 5_001, |d| {
        let m = d.get_or_insert_map("meta");
        let mut t = d.transact_mut();
        m.insert(&mut t, "title", "mine now");
    })?;
    ensure!(p.rooms[NODE].proxy_update(&meta, &d.key(), T0 + 4).is_err(), "the node signed meta for a candidate");
    // ... and a node that signs it anyway is refused by every other replica.
    let env = forged(&p, NODE, Some(d.key()), meta);
    refused_everywhere(&mut p, NODE, &env, "meta via a candidate")?;
    let analysis = stock_update(&p, NODE, 5_002, |d| {
        let a = d.get_or_insert_array("analysis");
        let mut t = d.transact_mut();
        a.push_back(&mut t, "{\"round\":1,\"findings\":[\"fake\"]}");
    })?;
    let env = forged(&p, NODE, Some(d.key()), analysis);
    refused_everywhere(&mut p, NODE, &env, "analysis via a candidate")?;
    Ok(())
}

#[test]
fn a_via_naming_an_unknown_or_forged_delegation_is_never_applied() -> Result<()> {
    let mut p = full_room("via-unknown")?;
    let cand = stock_invite(&p, Role::Candidate, 200);
    let d = Delegation::sign(&cand);
    // The node registers it; the others have not heard of it yet.
    ensure!(p.rooms[NODE].delegate(&d, Some(T0))?);
    let update = stock_update(&p, NODE, 6_000, type_code("y"))?;
    let env = p.rooms[NODE].proxy_update(&update, &d.key(), T0 + 2)?.context("nothing sealed")?;
    let before = fingerprint(&p.rooms[HOST]);
    let rc = p.rooms[HOST].receive(vec![env.clone()], T0 + 3)?;
    // It waits like an envelope whose predecessor is missing: unapplied, and a catch-up
    // is asked for (an honest node's delegation may arrive second).
    ensure!(rc.applied.is_empty() && rc.needs_catch_up, "an envelope via an unknown delegation: {rc:?}");
    ensure!(fingerprint(&p.rooms[HOST]) == before, "it changed the replica");
    // A forged delegation for that grant (signed by another invite's secret) is refused,
    // and the envelope still waits.
    let mut fake = Delegation::sign(&stock_invite(&p, Role::Candidate, 201));
    fake.grant = cand.grant.clone();
    let (_, rc) = p.rooms[HOST].handle(Wire::Delegations(vec![fake]), T0 + 4)?;
    ensure!(rc.rejected.len() == 1, "a forged delegation was accepted");
    ensure!(fingerprint(&p.rooms[HOST]) == before, "a forged delegation released the envelope");
    // Delegations for an observer's or a node's grant are refused too.
    let obs = Delegation::sign(&stock_invite(&p, Role::Observer, 202));
    let node = Delegation::sign(&Invite::issue(&p.room_key, Role::Host, T0 / 1000 + 3600, arena_core::FLAG_PROXY, 203));
    let (_, rc) = p.rooms[HOST].handle(Wire::Delegations(vec![obs, node]), T0 + 4)?;
    ensure!(rc.rejected.len() == 2, "an observer's or a node's delegation was accepted: {rc:?}");
    // A via that names a key with no delegation at all waits the same way (and never
    // applies: nobody can produce one).
    let stranger = Identity::from_passphrase("no such invite").public();
    let env2 = forged(&p, NODE, Some(stranger), stock_update(&p, NODE, 6_001, type_code("z"))?);
    let rc = p.rooms[CAND].receive(vec![env2], T0 + 5)?;
    ensure!(rc.applied.is_empty(), "an envelope via a made-up key was applied");
    // The real delegation releases the honest envelope.
    let (_, rc) = p.rooms[HOST].handle(Wire::Delegations(vec![d]), T0 + 6)?;
    ensure!(rc.rejected.is_empty(), "{rc:?}");
    ensure!(p.rooms[HOST].doc().code().contains('y'), "the envelope stayed held back after its delegation arrived");
    ensure!(p.rooms[HOST].pending() == 0, "something still waits");
    Ok(())
}

#[test]
fn only_a_node_may_sign_via_a_delegation() -> Result<()> {
    let mut p = full_room("via-member")?;
    let cand = stock_invite(&p, Role::Candidate, 300);
    let d = delegate(&mut p, &cand)?;
    // The host and the candidate are members but not nodes: they may not speak for a stock
    // client, not even in a way the rules would allow.
    for who in [HOST, CAND] {
        let update = stock_update(&p, who, 7_000 + who as u64, type_code("w"))?;
        let env = forged(&p, who, Some(d.key()), update);
        refused_everywhere(&mut p, who, &env, "via by a member who is not a node")?;
    }
    Ok(())
}

#[test]
fn a_revoked_invite_delegates_nothing_new() -> Result<()> {
    let mut p = full_room("via-revoked")?;
    let cand = stock_invite(&p, Role::Candidate, 400);
    let wire = p.rooms[HOST].revoke(cand.grant.invite, T0 + 1)?;
    for r in p.rooms.iter_mut().skip(1) {
        r.handle(wire.clone(), T0 + 1)?;
    }
    let d = Delegation::sign(&cand);
    ensure!(p.rooms[NODE].delegate(&d, Some(T0)).is_err(), "the node took a revoked invite's delegation");
    let (_, rc) = p.rooms[HOST].handle(Wire::Delegations(vec![d]), T0 + 2)?;
    ensure!(rc.rejected.len() == 1, "a revoked invite's delegation was accepted");
    Ok(())
}

#[test]
fn deferred_stock_updates_are_sealed_in_runs_of_one_via_in_order() -> Result<()> {
    let mut p = full_room("via-runs")?;
    let (a, b) = (stock_invite(&p, Role::Candidate, 500), stock_invite(&p, Role::Host, 501));
    let (da, db) = (delegate(&mut p, &a)?, delegate(&mut p, &b)?);
    p.rooms[NODE].config_mut().collect_seals = true;
    // a, a, b, a: the second b builds on a's text (a later update may depend on an
    // earlier one of another client), so order is kept and runs are not merged across.
    let steps = [(&da, 8_000, "a1"), (&da, 8_000, "a2"), (&db, 8_001, "b1"), (&da, 8_000, "a3")];
    for (d, client, text) in steps {
        let u = stock_update(&p, NODE, client, type_code(text))?;
        ensure!(p.rooms[NODE].proxy_deferred(&u, &d.key(), T0 + 2)?);
    }
    p.rooms[NODE].seal_pending(T0 + 3)?;
    let sealed = p.rooms[NODE].take_sealed();
    let vias: Vec<_> = sealed.iter().map(|e| e.via).collect();
    ensure!(vias == vec![Some(da.key()), Some(db.key()), Some(da.key())], "runs: {vias:?}");
    // Every replica applies them, each under its own grant, and a late catch-up (the
    // delegations come with the answer) converges too.
    for i in [HOST, CAND, OBS] {
        let rc = p.rooms[i].receive(sealed.clone(), T0 + 4)?;
        ensure!(rc.applied.len() == 3 && rc.rejected.is_empty(), "replica {i}: {rc:?}");
    }
    let late = Identity::from_passphrase("via-runs/late");
    let mut room = arena_core::Room::open(
        p.rooms[HOST].id(),
        late,
        0,
        arena_core::MemoryStore::new(),
        arena_core::RoomConfig::default(),
        T0,
    )?;
    let Wire::Want(have) = room.want() else { anyhow::bail!("not a want") };
    for msg in p.rooms[NODE].answer(&have)? {
        let (_, rc) = room.handle(msg, T0 + 5)?;
        ensure!(rc.rejected.is_empty(), "the late joiner refused: {:?}", rc.rejected);
    }
    ensure!(room.doc().code() == p.rooms[NODE].doc().code(), "the late joiner differs");
    ensure!(room.ledger().delegations().len() == 2, "the late joiner lacks the delegations");
    sync_all(&mut p.rooms, T0 + 6)?;
    Ok(())
}

/// A fresh replica of the party's room (a late joiner), holding nothing yet.
fn fresh(p: &Party, name: &str) -> Result<arena_core::Room<arena_core::MemoryStore>> {
    Ok(arena_core::Room::open(
        p.rooms[HOST].id(),
        Identity::from_passphrase(name),
        0,
        arena_core::MemoryStore::new(),
        arena_core::RoomConfig::default(),
        T0,
    )?)
}

/// What `store` holds, in a new store (as a restarted replica would read it back: the
/// order `Room::open` takes admissions, delegations and revocations in is its own).
fn reopen_copy(store: &arena_core::MemoryStore) -> Result<arena_core::MemoryStore> {
    use arena_core::Store;
    let mut copy = arena_core::MemoryStore::new();
    for e in store.log_range(0, u64::MAX)? {
        copy.append(&e.envelope, e.received_ms)?;
    }
    for r in store.revocations()? {
        copy.put_revocation(&r)?;
    }
    for d in store.delegations()? {
        copy.put_delegation(&d)?;
    }
    for a in store.admissions()? {
        copy.put_admission(&a)?;
    }
    Ok(copy)
}

/// An update to `meta` (the host's and the node's to write, never a candidate's).
fn meta_update(p: &Party, client: u64, title: &str) -> Result<Vec<u8>> {
    stock_update(p, NODE, client, |d| {
        let m = d.get_or_insert_map("meta");
        let mut t = d.transact_mut();
        m.insert(&mut t, "title", title);
    })
}

fn title(r: &arena_core::Room<arena_core::MemoryStore>) -> Option<String> {
    let doc = r.doc().raw_yrs_doc();
    let meta = doc.get_or_insert_map("meta");
    let t = doc.transact();
    meta.get(&t, "title").map(|v| v.to_string(&t))
}

#[test]
fn a_delegation_from_another_room_or_with_an_altered_grant_is_refused() -> Result<()> {
    let mut p = full_room("via-elsewhere")?;
    // Genuine in its own room, so only the room differs.
    let other = Identity::from_passphrase("via-elsewhere/another room");
    let foreign = Delegation::sign(&Invite::issue(&other, Role::Candidate, T0 / 1000 + 3600, 0, 600));
    foreign.verify(&other.public(), Some(T0))?;
    ensure!(p.rooms[NODE].delegate(&foreign, Some(T0)).is_err(), "the node took another room's delegation");
    // A real one of this room with its grant altered: a host's role, a later expiry.
    let cand = stock_invite(&p, Role::Candidate, 601);
    let mut promoted = Delegation::sign(&cand);
    promoted.grant.role = Role::Host;
    let mut extended = Delegation::sign(&cand);
    extended.grant.expiry += 86_400;
    for (i, r) in p.rooms.iter_mut().enumerate() {
        let msg = Wire::Delegations(vec![foreign.clone(), promoted.clone(), extended.clone()]);
        let (_, rc) = r.handle(msg, T0 + 1)?;
        ensure!(rc.rejected.len() == 3, "replica {i} took some of them: {:?}", rc.rejected);
        ensure!(matches!(rc.rejected[0].1, CoreError::WrongRoom { .. }), "replica {i}: {:?}", rc.rejected[0]);
        ensure!(r.ledger().delegations().is_empty(), "replica {i} holds a delegation");
    }
    // The node names the foreign delegation on a `meta` write (which the node itself may
    // make): no replica applies it, as the node's own write or otherwise; it waits.
    let update = meta_update(&p, 6_100, "taken over")?;
    let env = forged(&p, NODE, Some(foreign.key()), update.clone());
    for i in [HOST, CAND, OBS] {
        let rc = p.rooms[i].receive(vec![env.clone()], T0 + 2)?;
        ensure!(rc.applied.is_empty() && p.rooms[i].pending() == 1, "replica {i}: {rc:?}");
        ensure!(title(&p.rooms[i]).as_deref() != Some("taken over"), "replica {i} applied it");
    }
    // Still waiting after every honest replica answered every other's catch-up (none holds
    // a delegation for that key to give).
    let node = p.rooms.pop().context("no node")?;
    sync_all(&mut p.rooms, T0 + 3)?;
    for (i, r) in p.rooms.iter().enumerate() {
        ensure!(title(r).as_deref() != Some("taken over") && r.pending() == 1, "replica {i} let it through");
    }
    p.rooms.push(node);
    // Control: the same write without `via` is the node's own and applies, so the `via`
    // alone held it back.
    let own = forged(&p, NODE, None, update);
    let rc = p.rooms[HOST].receive(vec![own], T0 + 4)?;
    ensure!(rc.applied.len() == 1 && title(&p.rooms[HOST]).as_deref() == Some("taken over"), "{rc:?}");
    Ok(())
}

#[test]
fn a_via_to_an_observer_grant_is_never_applied() -> Result<()> {
    let mut p = full_room("via-observer")?;
    let obs = stock_invite(&p, Role::Observer, 650);
    let d = Delegation::sign(&obs);
    ensure!(p.rooms[NODE].delegate(&d, Some(T0)).is_err(), "the node took an observer's delegation");
    let update = stock_update(&p, NODE, 6_200, type_code("o"))?;
    ensure!(p.rooms[NODE].proxy_update(&update, &d.key(), T0 + 1).is_err(), "the node signed via an observer");
    // Not even a code edit (which a node may write) passes under the observer's key.
    let env = forged(&p, NODE, Some(d.key()), stock_update(&p, NODE, 6_201, type_code("o"))?);
    for i in [HOST, CAND, OBS] {
        let (_, rc) = p.rooms[i].handle(Wire::Delegations(vec![d.clone()]), T0 + 2)?;
        ensure!(rc.rejected.len() == 1, "replica {i} took an observer's delegation");
        let rc = p.rooms[i].receive(vec![env.clone()], T0 + 2)?;
        ensure!(rc.applied.is_empty() && !p.rooms[i].doc().code().contains('o'), "replica {i}: {rc:?}");
    }
    Ok(())
}

#[test]
fn an_invite_key_delegates_one_grant() -> Result<()> {
    let mut p = full_room("via-twice")?;
    // The room key's holder binds one invite key to two grants; the second may not change
    // the role the first one's envelopes are judged under.
    let secret = Identity::from_passphrase("via-twice/secret");
    let cand = Invite::bound(&p.room_key, secret.clone(), Role::Candidate, T0 / 1000 + 3600, 0, 660);
    let host = Invite::bound(&p.room_key, secret, Role::Host, T0 / 1000 + 3600, 0, 661);
    let d = delegate(&mut p, &cand)?;
    let second = Delegation::sign(&host);
    second.verify(&p.rooms[HOST].id(), Some(T0))?;
    ensure!(p.rooms[NODE].delegate(&second, Some(T0)).is_err(), "the node swapped the grant");
    for i in [HOST, CAND, OBS] {
        let (_, rc) = p.rooms[i].handle(Wire::Delegations(vec![second.clone()]), T0 + 1)?;
        ensure!(rc.rejected.len() == 1, "replica {i} took a second grant for the key");
        ensure!(p.rooms[i].ledger().delegation(&d.key()) == Some(&d), "replica {i} replaced the delegation");
    }
    let env = forged(&p, NODE, Some(d.key()), meta_update(&p, 6_300, "via the second grant")?);
    refused_everywhere(&mut p, NODE, &env, "meta under a swapped grant")
}

#[test]
fn after_a_revocation_the_node_signs_nothing_more_and_the_history_before_it_stands() -> Result<()> {
    let mut p = full_room("via-revoke-after")?;
    let cand = stock_invite(&p, Role::Candidate, 700);
    let d = delegate(&mut p, &cand)?;
    let before = stock_update(&p, NODE, 9_000, type_code("before"))?;
    let env = p.rooms[NODE].proxy_update(&before, &d.key(), T0 + 2)?.context("nothing sealed")?;
    for i in [HOST, CAND, OBS] {
        ensure!(p.rooms[i].receive(vec![env.clone()], T0 + 2)?.applied.len() == 1, "replica {i}");
    }
    // The host withdraws the stock candidate's link.
    let revocation = p.rooms[HOST].revoke(cand.grant.invite, T0 + 3)?;
    for i in [CAND, OBS, NODE] {
        let (_, rc) = p.rooms[i].handle(revocation.clone(), T0 + 3)?;
        ensure!(rc.rejected.is_empty() && p.rooms[i].ledger().is_revoked(&d.key()), "replica {i}: {rc:?}");
    }
    // The node signs nothing more for it: not at once, not deferred, not relayed by another
    // node (with the delegation in the message), and the document stays as it was.
    let after = stock_update(&p, NODE, 9_000, type_code(" after"))?;
    let node_before = fingerprint(&p.rooms[NODE]);
    let node = &mut p.rooms[NODE];
    ensure!(matches!(node.proxy_update(&after, &d.key(), T0 + 4), Err(CoreError::NotAllowed(_))));
    ensure!(matches!(node.proxy_deferred(&after, &d.key(), T0 + 4), Err(CoreError::NotAllowed(_))));
    let relayed = Wire::Proxied {
        grant: Box::new(cand.grant.clone()),
        signature: cand.vouch(&after),
        update: after.clone(),
        delegation: d.signature,
    };
    ensure!(node.handle(relayed, T0 + 4).is_err(), "the node signed a relayed update of a revoked link");
    node.seal_pending(T0 + 5)?;
    ensure!(fingerprint(node) == node_before, "the revoked link's update changed the node");
    // Replaying the delegation: nothing new where it is known ...
    for (i, r) in p.rooms.iter_mut().enumerate() {
        let (_, rc) = r.handle(Wire::Delegations(vec![d.clone()]), T0 + 6)?;
        ensure!(rc.rejected.is_empty() && rc.applied.is_empty(), "replica {i}: {rc:?}");
    }
    ensure!(p.rooms[NODE].proxy_update(&after, &d.key(), T0 + 6).is_err(), "the replay re-enabled the node");
    // ... refused by a replica that heard of the revocation first ...
    let mut told = fresh(&p, "via-revoke-after/told")?;
    told.handle(Wire::Admissions(p.rooms[HOST].ledger().admissions()), T0 + 6)?;
    told.handle(revocation, T0 + 6)?;
    let (_, rc) = told.handle(Wire::Delegations(vec![d.clone()]), T0 + 6)?;
    ensure!(rc.rejected.len() == 1 && told.ledger().delegation(&d.key()).is_none(), "{rc:?}");
    // ... while a late joiner's catch-up sends it before the revocation: the stock
    // candidate's edit from before the revocation stands there, and after a reopen.
    let mut late = fresh(&p, "via-revoke-after/late")?;
    let Wire::Want(have) = late.want() else { anyhow::bail!("not a want") };
    for msg in p.rooms[HOST].answer(&have)? {
        let (_, rc) = late.handle(msg, T0 + 7)?;
        ensure!(rc.rejected.is_empty(), "the late joiner refused: {:?}", rc.rejected);
    }
    ensure!(late.doc().code() == p.rooms[HOST].doc().code() && late.doc().code().contains("before"));
    ensure!(late.ledger().is_revoked(&d.key()) && late.ledger().delegation(&d.key()).is_some());
    let reopened = arena_core::Room::open(
        late.id(),
        Identity::from_passphrase("via-revoke-after/late"),
        0,
        reopen_copy(late.store())?,
        arena_core::RoomConfig::default(),
        T0 + 8,
    )?;
    ensure!(reopened.doc().code() == late.doc().code(), "the reopened replica differs");
    ensure!(reopened.ledger().delegation(&d.key()).is_some(), "the reopened replica lost the delegation");
    Ok(())
}

#[test]
fn a_late_joiner_takes_the_delegation_of_a_link_that_expired_since() -> Result<()> {
    let mut p = full_room("via-expired")?;
    let short = Invite::issue(&p.room_key, Role::Candidate, T0 / 1000 + 60, 0, 800);
    let d = delegate(&mut p, &short)?;
    let update = stock_update(&p, NODE, 9_100, type_code("in time"))?;
    p.rooms[NODE].proxy_update(&update, &d.key(), T0 + 2)?.context("nothing sealed")?;
    // A day later the link is dead for anything live: the node takes no new delegation of
    // an expired grant ...
    let day = T0 + 86_400_000;
    let stale = Delegation::sign(&Invite::issue(&p.room_key, Role::Candidate, T0 / 1000 + 60, 0, 801));
    ensure!(matches!(p.rooms[NODE].delegate(&stale, Some(day)), Err(CoreError::Expired { .. })));
    // ... but history keeps what was written in time: a late joiner takes the delegation
    // and the stock candidate's edit on catch-up.
    let mut late = fresh(&p, "via-expired/late")?;
    let Wire::Want(have) = late.want() else { anyhow::bail!("not a want") };
    for msg in p.rooms[NODE].answer(&have)? {
        let (_, rc) = late.handle(msg, day)?;
        ensure!(rc.rejected.is_empty(), "the late joiner refused: {:?}", rc.rejected);
    }
    ensure!(late.doc().code().contains("in time") && late.pending() == 0, "the late joiner lacks the edit");
    Ok(())
}

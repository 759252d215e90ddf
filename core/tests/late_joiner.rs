//! A late joiner of a long room starts from the host's signed checkpoint: it gets the
//! checkpoint plus the envelopes after it (not the whole log), converges, then fetches the
//! history before the checkpoint (checked by hash chain) so that old versions rebuild too,
//! reopens from its own store and answers a third peer. Tampered history is refused.

use anyhow::{ensure, Context, Result};
use arena_core::records::{Meta, VersionCause};
use arena_core::sync::wire::Wire;
use arena_core::{CoreError, Cut, Identity, Invite, Role, Room, RoomConfig, SledDb, Store};

const T0: u64 = 1_700_000_000_000;

fn room_key() -> Identity {
    Identity::from_passphrase("late joiner room")
}

/// Hands `msgs` to `to`, then the replies back, and so on, in the order sent, until
/// neither side has anything more to say. Returns every message `to` got.
fn converse<A: Store, B: Store>(to: &mut Room<A>, from: &mut Room<B>, msgs: Vec<Wire>, now: u64) -> Result<Vec<Wire>> {
    let mut got = Vec::new();
    let mut to_a: std::collections::VecDeque<Wire> = msgs.into();
    let mut to_b = std::collections::VecDeque::new();
    for _ in 0..100 {
        if to_a.is_empty() && to_b.is_empty() {
            return Ok(got);
        }
        while let Some(m) = to_a.pop_front() {
            got.push(m.clone());
            let (replies, r) = to.handle(m, now)?;
            ensure!(r.rejected.is_empty(), "rejected: {:?}", r.rejected);
            to_b.extend(replies);
        }
        while let Some(m) = to_b.pop_front() {
            let (replies, r) = from.handle(m, now)?;
            ensure!(r.rejected.is_empty(), "rejected: {:?}", r.rejected);
            to_a.extend(replies);
        }
    }
    anyhow::bail!("the conversation does not end")
}

/// What a joiner's `Want` was answered with: (checkpoint sent, envelopes sent).
fn answered(seen: &[Wire]) -> (bool, usize) {
    let cp = seen.iter().any(|w| matches!(w, Wire::Checkpoint(_)));
    let envs = seen.iter().map(|w| if let Wire::Envelopes(e) = w { e.len() } else { 0 }).sum();
    (cp, envs)
}

#[test]
fn late_joiner_starts_from_the_hosts_checkpoint() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = SledDb::open(dir.path().join("host"))?;
    let mut host = Room::create(
        &room_key(),
        Identity::from_passphrase("host"),
        0,
        db.room(&room_key().public())?,
        Meta::default(),
        T0,
    )?;
    host.edit(T0 + 1, |e| e.splice_code(0, 0, "def f():\n"))?;
    let early = host.create_version("early", VersionCause::Manual, T0 + 2)?;
    // A long session: well past the checkpoint-join threshold.
    let n = RoomConfig::default().checkpoint_join_min + 1500;
    for i in 0..n {
        let len = host.doc().code_len();
        let text = if i % 40 == 39 { "\n".to_owned() } else { ((b'a' + (i % 26) as u8) as char).to_string() };
        host.edit(T0 + 10 + i, |e| e.splice_code(len, 0, &text))?;
    }
    let late_version = host.create_version("late", VersionCause::Manual, T0 + 10 + n)?;
    host.edit(T0 + 11 + n, |e| e.splice_code(0, 0, "# after the version\n"))?;
    host.flush()?;
    let host_log = host.store().log_len();

    // The candidate joins (its own join envelope is in its log) and asks for the rest.
    let token = Invite::issue(&room_key(), Role::Candidate, T0 / 1000 + 3600, 0, T0).to_token();
    let jdb = SledDb::open(dir.path().join("joiner"))?;
    let joiner_key = Identity::from_passphrase("joiner");
    let mut joiner = Room::open(
        room_key().public(),
        joiner_key.clone(),
        1,
        jdb.room(&room_key().public())?,
        RoomConfig::default(),
        T0,
    )?;
    let (adm, _) = joiner.join(&token, "joiner", T0 + 20 + n)?;
    // The host hears the joiner's admission; the joiner asks for what it lacks.
    host.handle(Wire::Admissions(vec![adm]), T0 + 21 + n)?;
    let (answer, _) = host.handle(joiner.want(), T0 + 22 + n)?;
    let (cp, envs) = answered(&answer);
    ensure!(cp, "a late joiner's Want was not answered with a checkpoint");
    ensure!((envs as u64) < 1000, "the answer carried {envs} envelopes of a {host_log}-entry log");
    let seen = converse(&mut joiner, &mut host, answer, T0 + 23 + n)?;
    ensure!(joiner.doc().code() == host.doc().code(), "the late joiner's code differs from the host's");
    // After the checkpoint, the history before it came (as `History`, not as envelopes to
    // apply): the joiner's log holds every envelope of the host.
    ensure!(seen.iter().any(|w| matches!(w, Wire::History(_))), "no history was fetched");
    let hk = host.identity().public();
    let host_head = host.ledger().head(&hk);
    ensure!(joiner.ledger().head(&hk) == host_head, "host chain head differs");
    ensure!(joiner.store().log_len() == host_log + 1, "the joiner logged {} entries", joiner.store().log_len());
    ensure!(joiner.history_floor(&hk)? == 0, "history still missing");
    let held = joiner.store().author_envelopes(&hk, 0, usize::MAX)?;
    ensure!(held.len() as u64 == host_head.next_seq, "the joiner holds {} host envelopes", held.len());
    ensure!(held.iter().enumerate().all(|(i, e)| e.seq == i as u64), "host envelopes out of order");
    ensure!(joiner.want_history()?.is_none(), "the joiner still wants history");

    // Its own join envelope reaches the host; both end in the same state.
    let hello = vec![host.want()];
    converse(&mut joiner, &mut host, hello, T0 + 25 + n)?;
    ensure!(host.state_digest() == joiner.state_digest(), "host and joiner did not converge");
    let jk = joiner.identity().public().to_hex();
    ensure!(host.doc().participants().iter().any(|(k, _)| *k == jk), "the host does not list the joiner");

    // The joiner edits; the host applies it (the chains continue across the checkpoint).
    let env = joiner.edit(T0 + 27 + n, |e| e.splice_code(0, 0, "# joiner\n"))?.context("edit")?;
    let r = host.receive(vec![env], T0 + 28 + n)?;
    ensure!(r.applied.len() == 1, "host refused the joiner's edit: {:?}", r.rejected);
    ensure!(host.state_digest() == joiner.state_digest());

    // A version made after the checkpoint rebuilds identically; one before it is refused
    // with a clear error instead of a wrong text.
    ensure!(
        joiner.code_at(&Cut::Version(late_version.id.clone()))?
            == host.code_at(&Cut::Version(late_version.id.clone()))?,
        "a version after the checkpoint rebuilt differently"
    );
    // With the history fetched, one before it rebuilds identically as well.
    let early_cut = Cut::Version(early.id.clone());
    ensure!(joiner.code_at(&early_cut)? == host.code_at(&early_cut)?, "the early version rebuilt differently");
    ensure!(joiner.code_at(&early_cut)? == "def f():\n", "the early version is {:?}", joiner.code_at(&early_cut)?);
    ensure!(
        joiner.doc_at(&early_cut)?.canonical_state() == host.doc_at(&early_cut)?.canonical_state(),
        "the early version's document differs"
    );

    // Reopened from its own store, the joiner has the same state.
    joiner.flush()?;
    let digest = joiner.state_digest();
    let code = joiner.doc().code();
    drop(joiner);
    let joiner =
        Room::open(room_key().public(), joiner_key, 1, jdb.room(&room_key().public())?, RoomConfig::default(), T0)?;
    ensure!(joiner.doc().code() == code, "reopened joiner lost text");
    ensure!(joiner.state_digest() == digest, "reopened joiner differs");
    ensure!(joiner.ledger().head(&hk) == host_head, "reopening moved the host's chain head");
    ensure!(joiner.code_at(&early_cut)? == "def f():\n", "the reopened joiner lost the early version");
    // It can still edit, and the host takes the edit.
    let mut joiner = joiner;
    let env = joiner.edit(T0 + 29 + n, |e| e.splice_code(0, 0, "# reopened\n"))?.context("edit")?;
    let r = host.receive(vec![env], T0 + 29 + n)?;
    ensure!(r.applied.len() == 1, "host refused the reopened joiner's edit: {:?}", r.rejected);
    ensure!(host.state_digest() == joiner.state_digest(), "host and reopened joiner differ");
    let digest = joiner.state_digest();
    // A re-sent old envelope is a duplicate, not a fork.
    let old = joiner.store().author_envelopes(&hk, 1, 1)?;
    let r = joiner.receive(old, T0 + 29 + n)?;
    ensure!(r.duplicates == 1 && r.rejected.is_empty(), "an old envelope again: {r:?}");

    // A third peer with nothing asks the joiner, which passes on the host's checkpoint.
    let mut third = Room::open(
        room_key().public(),
        Identity::from_passphrase("third"),
        2,
        arena_core::MemoryStore::new(),
        RoomConfig::default(),
        T0,
    )?;
    let (answer, _) = joiner.handle(third.want(), T0 + 30 + n)?;
    ensure!(answered(&answer).0, "the joiner did not pass on the checkpoint");
    for m in answer {
        third.handle(m, T0 + 31 + n)?;
    }
    ensure!(third.state_digest() == digest, "a peer that caught up from the joiner differs");
    Ok(())
}

/// A peer that holds envelopes we lack (another author's, relayed to it over a link we never
/// saw, such as a browser data channel) is seen by `lacks_from` when it asks us for ours;
/// a `Want` back brings them to us.
#[test]
fn a_peer_holding_more_is_asked_back() -> Result<()> {
    let mut node = Room::create(
        &room_key(),
        Identity::from_passphrase("node"),
        0,
        arena_core::MemoryStore::new(),
        Meta::default(),
        T0,
    )?;
    let token = Invite::issue(&room_key(), Role::Candidate, T0 / 1000 + 3600, 0, T0).to_token();
    let open = |name: &str| {
        Room::open(
            room_key().public(),
            Identity::from_passphrase(name),
            1,
            arena_core::MemoryStore::new(),
            RoomConfig::default(),
            T0,
        )
    };
    let (mut a, mut b) = (open("a")?, open("b")?);
    let (adm_a, _) = a.join(&token, "a", T0 + 1)?;
    let (adm_b, _) = b.join(&token, "b", T0 + 1)?;
    // A and B meet directly (the node never hears from B).
    let hello_b = vec![Wire::Admissions(vec![adm_b]), b.want()];
    converse(&mut a, &mut b, hello_b, T0 + 2)?;
    let hello_a = vec![Wire::Admissions(vec![adm_a.clone()]), a.want()];
    converse(&mut b, &mut a, hello_a, T0 + 2)?;
    b.edit(T0 + 3, |e| e.splice_code(0, 0, "from b over the mesh\n"))?;
    let w = a.want();
    converse(&mut b, &mut a, vec![w], T0 + 4)?;
    ensure!(a.doc().code() == b.doc().code() && a.doc().code().contains("from b"), "a and b did not meet");
    // A connects to the node: it asks for what it lacks; the node sees A holds more and
    // asks back (as the bootstrap node's hub does).
    node.handle(Wire::Admissions(vec![adm_a]), T0 + 5)?;
    let have = a.envelope_vector();
    ensure!(node.lacks_from(&have), "the node does not see that A holds more");
    let (mut replies, _) = node.handle(Wire::Want(have), T0 + 5)?;
    replies.push(node.want());
    converse(&mut a, &mut node, replies, T0 + 6)?;
    ensure!(node.doc().code().contains("from b over the mesh"), "b's edit never reached the node");
    ensure!(node.state_digest() == a.state_digest(), "node and a differ");
    Ok(())
}

/// History offered to a replica that started from a checkpoint is checked by hash chain:
/// a tampered envelope or a wrong seq is refused and nothing of it is stored; the genuine
/// history is logged (not applied); a repeated answer is harmless.
#[test]
fn tampered_history_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = SledDb::open(dir.path().join("host"))?;
    let host_key = Identity::from_passphrase("host");
    let mut host = Room::create(&room_key(), host_key.clone(), 0, db.room(&room_key().public())?, Meta::default(), T0)?;
    host.edit(T0 + 1, |e| e.splice_code(0, 0, "def f():\n"))?;
    let early = host.create_version("early", VersionCause::Manual, T0 + 2)?;
    for i in 0..300 {
        let len = host.doc().code_len();
        host.edit(T0 + 10 + i, |e| e.splice_code(len, 0, "x"))?;
    }
    host.flush()?;
    drop(host);
    // Reopened with a low threshold, so that a joiner starts from a checkpoint.
    let cfg = RoomConfig { checkpoint_join_min: 50, ..RoomConfig::default() };
    let mut host = Room::open(room_key().public(), host_key, 0, db.room(&room_key().public())?, cfg.clone(), T0 + 400)?;
    host.checkpoint(T0 + 400)?;
    let hk = host.identity().public();

    let mut joiner = Room::open(
        room_key().public(),
        Identity::from_passphrase("joiner"),
        1,
        arena_core::MemoryStore::new(),
        cfg,
        T0,
    )?;
    let token = Invite::issue(&room_key(), Role::Candidate, T0 / 1000 + 3600, 0, T0).to_token();
    let (adm, _) = joiner.join(&token, "joiner", T0 + 401)?;
    host.handle(Wire::Admissions(vec![adm]), T0 + 401)?;
    let (answer, _) = host.handle(joiner.want(), T0 + 402)?;
    ensure!(answered(&answer).0, "no checkpoint in the answer");
    let mut want_history = None;
    for m in answer {
        let (replies, r) = joiner.handle(m, T0 + 403)?;
        ensure!(r.rejected.is_empty(), "rejected: {:?}", r.rejected);
        want_history = want_history.or(replies.into_iter().find(|w| matches!(w, Wire::WantHistory(_))));
    }
    let want_history = want_history.context("adopting the checkpoint asked for no history")?;
    let floor = joiner.history_floor(&hk)?;
    ensure!(floor == host.ledger().head(&hk).next_seq && floor > 300, "floor {floor}");
    ensure!(matches!(joiner.code_at(&Cut::Version(early.id.clone())), Err(CoreError::NotFound(_))));
    let (answer, _) = host.handle(want_history, T0 + 404)?;
    let Some(Wire::History(envs)) = answer.into_iter().next() else { anyhow::bail!("no history answer") };
    ensure!(envs.len() as u64 == floor, "the history answer has {} envelopes", envs.len());
    let log_len = joiner.store().log_len();
    let heads = joiner.envelope_vector();

    // One flipped byte in the newest (first checked) envelope.
    let mut bad = envs.clone();
    if let Some(e) = bad.last_mut() {
        if let Some(b) = e.update.last_mut() {
            *b ^= 1;
        }
    }
    // A wrong seq: the newest envelope missing, so the run starts one too low.
    let mut short = envs.clone();
    short.pop();
    for msg in [bad, short] {
        let (replies, r) = joiner.handle(Wire::History(msg), T0 + 405)?;
        ensure!(r.rejected.len() == 1, "tampered history accepted: {:?}", r.rejected);
        ensure!(replies.is_empty(), "tampered history was answered");
        ensure!(joiner.store().log_len() == log_len, "tampered history was stored");
        ensure!(joiner.history_floor(&hk)? == floor, "the floor moved");
    }
    // A tampered envelope further down: the verified ones above it are kept, not it.
    let mut mid = envs.clone();
    if let Some(b) = mid[100].update.last_mut() {
        *b ^= 1;
    }
    let (_, r) = joiner.handle(Wire::History(mid), T0 + 406)?;
    ensure!(r.rejected.len() == 1, "tampered history accepted: {:?}", r.rejected);
    ensure!(joiner.history_floor(&hk)? == 101, "floor after a partly good answer: {}", joiner.history_floor(&hk)?);

    // The genuine history: the rest is stored, the state and heads stay.
    let digest = joiner.state_digest();
    // Over a data channel: it stays one message (fragments), checked as one run.
    let mut link = arena_core::sync::wire::Reassembler::new();
    let mut got = Vec::new();
    for c in arena_core::sync::wire::chunk(&[Wire::History(envs.clone())], arena_core::sync::wire::DATA_CHANNEL_CHUNK) {
        got.extend(link.push(&c, joiner.id())?);
    }
    ensure!(got == vec![Wire::History(envs.clone())], "history did not travel as one message");
    let (replies, r) = joiner.handle(Wire::History(envs.clone()), T0 + 407)?;
    ensure!(r.rejected.is_empty() && replies.is_empty(), "genuine history: {:?}", r.rejected);
    ensure!(joiner.history_floor(&hk)? == 0, "history still missing");
    ensure!(joiner.store().log_len() == log_len + floor, "log {}", joiner.store().log_len());
    ensure!(joiner.envelope_vector() == heads, "the chain heads moved");
    ensure!(joiner.state_digest() == digest, "the state changed");
    let cut = Cut::Version(early.id.clone());
    ensure!(joiner.code_at(&cut)? == host.code_at(&cut)?, "the early version rebuilt differently");
    // Again: harmless.
    let (replies, r) = joiner.handle(Wire::History(envs), T0 + 408)?;
    ensure!(r.rejected.is_empty() && replies.is_empty() && r.duplicates as u64 == floor, "duplicate: {r:?}");
    ensure!(joiner.store().log_len() == log_len + floor, "a duplicate history was stored");
    // The wire format round-trips.
    let w = Wire::WantHistory([(hk, 5)].into_iter().collect());
    ensure!(Wire::decode(&w.encode(), joiner.id())? == w);
    let h = Wire::History(joiner.store().author_envelopes(&hk, 0, 3)?);
    ensure!(Wire::decode(&h.encode(), joiner.id())? == h);
    Ok(())
}

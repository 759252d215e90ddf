//! `update_gate`: the strict update gate, then what yrs does with what it lets through, on a
//! populated document and on replicas of the room that get the same signed update in
//! different orders.

use yrs::updates::decoder::Decode;
use yrs::Update;

use super::fixture::{fixture, T0};
use crate::doc::strict::scan_update;
use crate::doc::{check_update, decode_update, RoomDoc};
use crate::store::MemoryStore;
use crate::{Envelope, Receipt, Room};

/// `data`: one byte that picks the signer (host, candidate, node), then a v1 update.
///
/// - The gate and its scan agree; what the gate refuses `decode_update` refuses, and what it
///   passes yrs decodes.
/// - On the populated document the update applies whole, or is refused and changes nothing;
///   a document that took it still reads, and its state passes the gate and loads again.
/// - As the signer's next envelope, on three replicas (A: holds the room's log, gets the
///   envelope alone; B: gets the envelope first, then the log; C: the log and the envelope
///   in one batch): all three apply it, or all three refuse it or hold it back; none leaves
///   anything pending in yrs, and all three end with the same code and byte-identical canonical state.
pub fn update_gate(data: &[u8]) {
    let Some((&who, update)) = data.split_first() else { return };
    let gate = check_update(update);
    assert_eq!(gate.is_ok(), scan_update(update).is_ok(), "check and scan disagree");
    if gate.is_err() {
        assert!(decode_update(update).is_err(), "decode_update passed what the gate refused");
        return;
    }
    if let Err(e) = Update::decode_v1(update) {
        panic!("the gate passed bytes yrs cannot decode: {e}");
    }
    on_a_document(update);
    on_replicas(who, update);
}

fn on_a_document(update: &[u8]) {
    let f = fixture();
    let doc = RoomDoc::new(1);
    doc.apply_v1(&f.state).expect("the fixture's state loads");
    let before = doc.encode_state();
    if doc.apply_v1(update).is_err() {
        assert!(doc.encode_state() == before, "a refused update changed the document");
        return;
    }
    reads(&doc);
    // Its own state passes the gate and loads into a fresh document. (That the copy shows
    // the same text is asserted for replicas in `on_replicas`: this document applies the
    // update without the room's write rules, which refuse crossed origins.)
    let state = doc.encode_state();
    if let Err(e) = check_update(&state) {
        panic!("the document's own state fails the gate: {e}");
    }
    let copy = RoomDoc::new(2);
    if let Err(e) = copy.apply_v1(&state) {
        panic!("the document's own state does not load: {e}");
    }
    if !doc.has_pending() {
        assert_eq!(copy.state_vector(), doc.state_vector(), "the loaded state holds other structs");
    }
    reads(&copy);
}

/// Every typed read of the document (they parse what members wrote).
fn reads(doc: &RoomDoc) {
    let _ = (doc.code(), doc.code_len(), doc.meta(), doc.participants(), doc.votes());
    let _ = (doc.analysis(), doc.runs(), doc.versions(), doc.canonical_state());
}

fn applied(receipts: &[&Receipt], env: &Envelope) -> bool {
    receipts.iter().any(|r| r.applied.contains(env))
}

fn on_replicas(who: u8, update: &[u8]) {
    let f = fixture();
    let w = &f.writers[usize::from(who) % f.writers.len()];
    let env = Envelope::seal(f.room, &w.id, w.head.next_seq, w.head.last_hash, 0, update.to_vec());
    let now = T0 + 100;
    let receive = |r: &mut Room<MemoryStore>, envs: Vec<Envelope>| match r.receive(envs, now) {
        Ok(receipt) => receipt,
        Err(e) => panic!("receive failed (not a refusal: the replica is in an unknown state): {e}"),
    };
    let mut a = f.populated_replica("fuzz/a").expect("replica a");
    let before = a.doc().encode_state();
    let ra = receive(&mut a, vec![env.clone()]);
    let mut b = f.empty_replica("fuzz/b").expect("replica b");
    let rb1 = receive(&mut b, vec![env.clone()]);
    let rb2 = receive(&mut b, f.base.clone());
    let mut c = f.empty_replica("fuzz/c").expect("replica c");
    let mut batch = f.base.clone();
    batch.push(env.clone());
    let rc = receive(&mut c, batch);
    let (in_a, in_b, in_c) = (applied(&[&ra], &env), applied(&[&rb1, &rb2], &env), applied(&[&rc], &env));
    assert!(in_a == in_b && in_b == in_c, "applied on A {in_a}, B {in_b}, C {in_c}");
    if !in_a {
        assert!(a.doc().encode_state() == before, "a refused envelope changed the document");
    }
    for (name, r) in [("A", &a), ("B", &b), ("C", &c)] {
        assert!(!r.doc().has_pending(), "replica {name} left an update pending in yrs");
    }
    // An envelope that builds on structs nobody wrote waits on every replica alike.
    assert!(a.pending() == b.pending() && b.pending() == c.pending(), "replicas hold different envelopes back");
    let code = a.doc().code();
    assert_eq!(b.doc().code(), code, "B shows other code than A");
    assert_eq!(c.doc().code(), code, "C shows other code than A");
    let canonical = a.doc().canonical_state();
    assert!(b.doc().canonical_state() == canonical, "B's canonical state differs from A's");
    assert!(c.doc().canonical_state() == canonical, "C's canonical state differs from A's");
    // What the room let through integrates the same from its own state (crossed origins,
    // which would not, are refused by the write rules).
    let copy = RoomDoc::new(3);
    copy.apply_v1(&a.doc().encode_state()).expect("A's state loads");
    assert_eq!(copy.code(), code, "A's own state, loaded, shows other code");
    reads(a.doc());
}

//! `wire` and `grant`: the decoders of everything a peer sends, and what a replica does with
//! what they accept.

use super::fixture::{fixture, T0};
use crate::doc::RoomDoc;
use crate::sync::presence::PresenceMap;
use crate::sync::wire::{Reassembler, Wire, MAX_MESSAGE};
use crate::sync::ywire::{self, YSession};
use crate::{Admission, Checkpoint, Delegation, Envelope, Grant, Identity, Invite, Ledger, Revocation};

/// What each decoder accepts encodes back to itself, and nothing panics.
/// - `Wire::decode`, then the message handled by a replica that holds the room's log;
/// - `Envelope::decode`, its hash and signature check;
/// - `ywire::decode_frame`, then the frame through a y-protocols session on the populated
///   document;
/// - a `Reassembler` fed `data` as chunks of `u16` (big-endian) length and bytes, holding at
///   most `MAX_MESSAGE` bytes.
pub fn wire(data: &[u8]) {
    let f = fixture();
    if let Ok(w) = Wire::decode(data, f.room) {
        assert_eq!(Wire::decode(&w.encode(), f.room).ok().as_ref(), Some(&w), "Wire does not round-trip");
        let mut r = f.populated_replica("fuzz/wire").expect("a replica");
        let _ = r.handle(w, T0 + 100);
    }
    if let Ok(e) = Envelope::decode(data, f.room) {
        assert_eq!(Envelope::decode(&e.encode(), f.room).ok().as_ref(), Some(&e), "Envelope does not round-trip");
        let _ = (e.hash(), e.verify_signature());
    }
    if let Ok(msgs) = ywire::decode_frame(data) {
        let again = ywire::decode_frame(&ywire::encode_frame(&msgs)).ok();
        assert_eq!(again.as_ref(), Some(&msgs), "the frame does not round-trip");
        let doc = RoomDoc::new(9);
        doc.apply_v1(&f.state).expect("the fixture's state loads");
        let _ = YSession::new(false).receive(&doc, &mut PresenceMap::new(3), data, T0);
    }
    let mut re = Reassembler::new();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (chunk, more) = tail.split_at(n);
        if let Ok(Some(w)) = re.push(chunk, f.room) {
            assert_eq!(
                Wire::decode(&w.encode(), f.room).ok().as_ref(),
                Some(&w),
                "reassembled Wire does not round-trip"
            );
        }
        assert!(re.buffered() <= MAX_MESSAGE, "the reassembler holds {} bytes", re.buffered());
        rest = more;
    }
}

/// The trust records' decoders: what each accepts encodes back to itself, verifies (or
/// not) without panicking, and goes into a ledger without panicking. `data` goes to every
/// one (and, as text, to `Invite::from_token`).
pub fn grant(data: &[u8]) {
    let f = fixture();
    let room = f.room;
    let now_ms = T0;
    if let Ok(g) = Grant::decode(data) {
        assert_eq!(Grant::decode(&g.encode()).ok().as_ref(), Some(&g), "Grant does not round-trip");
        let _ = (g.verify(&room, None), g.verify(&room, Some(now_ms)), g.label(), g.is_proxy());
    }
    if let Ok(a) = Admission::decode(data) {
        assert_eq!(Admission::decode(&a.encode()).ok().as_ref(), Some(&a), "Admission does not round-trip");
        if a.verify(&room, None).is_ok() {
            let _ = Ledger::new(room).admit(&a, Some(now_ms));
        }
    }
    if let Ok(token) = std::str::from_utf8(data) {
        if let Ok(invite) = Invite::from_token(token, &room, now_ms) {
            let again = Invite::from_token(&invite.to_token(), &room, now_ms);
            assert!(again.is_ok_and(|i| i.grant == invite.grant), "Invite does not round-trip");
            let signature = invite.vouch(data);
            assert!(invite.grant.check_vouch(&room, data, &signature, now_ms).is_ok(), "its own voucher fails");
            let adm = Admission::sign(&Identity::from_passphrase("fuzz/joiner"), &invite, "joiner", T0);
            assert!(adm.verify(&room, Some(now_ms)).is_ok(), "an admission signed with it fails");
            let _ = Delegation::sign(&invite).verify(&room, Some(now_ms));
        }
    }
    if let Ok(c) = Checkpoint::decode(data, room) {
        assert_eq!(Checkpoint::decode(&c.encode(), room).ok().as_ref(), Some(&c), "Checkpoint does not round-trip");
        let mut r = f.empty_replica("fuzz/joiner").expect("a replica");
        if c.verify(r.ledger()).is_ok() {
            let _ = r.handle(Wire::Checkpoint(Box::new(c)), T0 + 100);
            let _ = (r.doc().code(), r.doc().canonical_state());
        }
    }
    if let Ok(v) = Revocation::decode(data, room) {
        assert_eq!(Revocation::decode(&v.encode(), room).ok().as_ref(), Some(&v), "Revocation does not round-trip");
        let mut r = f.populated_replica("fuzz/revoker").expect("a replica");
        let _ = r.apply_revocation(&v);
    }
    if let Ok(d) = Delegation::decode(data) {
        assert_eq!(Delegation::decode(&d.encode()).ok().as_ref(), Some(&d), "Delegation does not round-trip");
        let _ = (d.key(), d.verify(&room, None));
        let _ = Ledger::new(room).delegate(&d, Some(now_ms));
    }
}

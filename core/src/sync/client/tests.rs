//! The client against a stand-in for the node's hub: convergence, offline edits, deferred
//! edits, per-link fragments, presence.

use super::*;
use crate::records::Meta;
use crate::sync::wire::{chunk, Reassembler, GOSSIP_CHUNK};
use crate::sync::ywire::YSession;
use crate::{Identity, Invite, MemoryStore, RoomConfig};

/// A stand-in for the node's hub: one room, relaying envelopes between clients the way
/// the bootstrap node does for connections that speak our protocol.
struct Hub {
    room: Room<MemoryStore>,
    links: Vec<Reassembler>,
}

impl Hub {
    fn deliver(&mut self, from: usize, frame: &[u8]) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        for m in decode_frame(frame).unwrap() {
            match m {
                Message::Custom(MSG_ARENA, data) => {
                    let Some(w) = self.links[from].push(&data, self.room.id()).unwrap() else { continue };
                    let (replies, receipt) = self.room.handle(w, 0).unwrap();
                    for c in chunk(&replies, GOSSIP_CHUNK) {
                        out.push((from, arena_frame(&c)));
                    }
                    if !receipt.applied.is_empty() {
                        for c in chunk(&[Wire::Envelopes(receipt.applied)], GOSSIP_CHUNK) {
                            for to in (0..self.links.len()).filter(|t| *t != from) {
                                out.push((to, arena_frame(&c)));
                            }
                        }
                    }
                }
                Message::Awareness(_) => {
                    for to in 0..self.links.len() {
                        out.push((to, frame.to_vec()));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn setup() -> (Hub, String) {
    let room_key = Identity::from_passphrase("room");
    let hub_room =
        Room::create(&room_key, Identity::from_passphrase("node"), 0, MemoryStore::new(), Meta::default(), 1_000)
            .unwrap();
    let token = Invite::issue(&room_key, Role::Candidate, 1_000_000, 0, 1).to_token();
    (Hub { room: hub_room, links: vec![Reassembler::new(), Reassembler::new()] }, token)
}

fn client(hub: &Hub, name: &str, token: &str) -> Client<MemoryStore> {
    let room =
        Room::open(hub.room.id(), Identity::from_passphrase(name), 0, MemoryStore::new(), RoomConfig::default(), 2_000)
            .unwrap();
    let mut c = Client::new(room, GOSSIP_CHUNK, 2_000);
    c.join(token, name, 2_000).unwrap();
    c
}

/// Delivers frames until nothing moves; `online[i]` false drops what client i sends or gets.
fn pump(
    hub: &mut Hub,
    clients: &mut [Client<MemoryStore>],
    mut queue: Vec<(usize, Vec<u8>)>,
    online: &[bool],
) -> Vec<Vec<Splice>> {
    let mut changes = vec![Vec::new(); clients.len()];
    while let Some((i, f)) = queue.pop() {
        if !online[i] {
            continue;
        }
        for (to, g) in hub.deliver(i, &f) {
            if !online[to] {
                continue;
            }
            let inc = clients[to].receive(&g, 3_000).unwrap();
            assert_eq!(inc.rejected, 0);
            changes[to].extend(inc.changes);
            queue.extend(inc.replies.into_iter().map(|r| (to, r)));
        }
    }
    changes
}

#[test]
fn two_clients_converge_through_a_relay_and_merge_offline_edits() {
    let (mut hub, token) = setup();
    let mut cs = vec![client(&hub, "ada", &token), client(&hub, "bob", &token)];
    let opens: Vec<_> = (0..2).flat_map(|i| cs[i].open(2_000).unwrap().into_iter().map(move |f| (i, f))).collect();
    pump(&mut hub, &mut cs, opens, &[true, true]);
    let f = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "hello\n".into() }], 2_100).unwrap();
    let got = pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, true]);
    assert_eq!(cs[1].room().doc().code(), "hello\n");
    assert_eq!(got[1], vec![Splice { pos: 0, delete: 0, insert: "hello\n".into() }]);

    // Bob goes offline and types; Ada types meanwhile.
    let f = cs[1].splice(&[Splice { pos: 6, delete: 0, insert: "offline\n".into() }], 2_200).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (1, f)).collect(), &[true, false]);
    let f = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "// ada\n".into() }], 2_300).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, false]);
    assert_eq!(cs[0].room().doc().code(), "// ada\nhello\n");

    // Bob reconnects: both sides catch up.
    let f = cs[1].open(2_400).unwrap();
    let got = pump(&mut hub, &mut cs, f.into_iter().map(|f| (1, f)).collect(), &[true, true]);
    assert_eq!(cs[0].room().doc().code(), "// ada\nhello\noffline\n");
    assert_eq!(cs[1].room().doc().code(), cs[0].room().doc().code());
    assert!(!got[1].is_empty() && !got[0].is_empty());
}

#[test]
fn deferred_splices_seal_into_one_frame_and_are_not_reported_back() {
    let (mut hub, token) = setup();
    let mut cs = vec![client(&hub, "ada", &token), client(&hub, "bob", &token)];
    let opens: Vec<_> = (0..2).flat_map(|i| cs[i].open(2_000).unwrap().into_iter().map(move |f| (i, f))).collect();
    pump(&mut hub, &mut cs, opens, &[true, true]);
    let before = cs[0].room().store().log_len();
    for (i, ch) in "abc".chars().enumerate() {
        cs[0].splice_deferred(&[Splice { pos: i as u32, delete: 0, insert: ch.into() }], 2_100).unwrap();
    }
    assert_eq!(cs[0].room().doc().code(), "abc");
    assert!(cs[0].take_changes().is_empty(), "the editor's own changes are not reported back");
    let f = cs[0].seal(2_200).unwrap();
    assert_eq!((f.len(), cs[0].room().store().log_len()), (1, before + 1));
    assert!(cs[0].seal(2_300).unwrap().is_empty());
    let got = pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, true]);
    assert_eq!(got[1], vec![Splice { pos: 0, delete: 0, insert: "abc".into() }]);
    // A restore is a local edit the editor has not seen: reported.
    let v = cs[0].room_mut().create_version("abc", crate::records::VersionCause::Manual, 2_400).unwrap();
    cs[0].splice_deferred(&[Splice { pos: 3, delete: 0, insert: "d".into() }], 2_500).unwrap();
    cs[0].room_mut().restore(&v.id, 2_600).unwrap();
    assert_eq!(cs[0].take_changes(), vec![Splice { pos: 3, delete: 1, insert: String::new() }]);
    // Receiving seals first; the envelope goes back on the link it came from.
    cs[1].splice_deferred(&[Splice { pos: 0, delete: 0, insert: "!".into() }], 2_700).unwrap();
    let f = cs[0].outgoing().unwrap();
    let mut queue: Vec<(usize, Vec<u8>)> = f.into_iter().map(|f| (0, f)).collect();
    let mut sealed = false;
    while let Some((i, f)) = queue.pop() {
        for (to, g) in hub.deliver(i, &f) {
            let inc = cs[to].receive(&g, 3_000).unwrap();
            sealed |= to == 1 && !inc.replies.is_empty();
            queue.extend(inc.replies.into_iter().map(|r| (to, r)));
        }
    }
    assert!(sealed && cs[1].room().unsealed() == 0);
    assert_eq!(cs[0].room().doc().code(), "!abc");
    assert_eq!(cs[1].room().doc().code(), "!abc");
}

#[test]
fn fragments_interleaved_on_two_links_reassemble() {
    let (mut hub, token) = setup();
    let mut cs = vec![client(&hub, "ada", &token), client(&hub, "bob", &token)];
    let opens: Vec<_> = (0..2).flat_map(|i| cs[i].open(2_000).unwrap().into_iter().map(move |f| (i, f))).collect();
    pump(&mut hub, &mut cs, opens, &[true, true]);
    let a = hub.room.edit(2_100, |e| e.splice_code(0, 0, &"a".repeat(5000))).unwrap().unwrap();
    let b = hub.room.edit(2_200, |e| e.splice_code(0, 0, &"b".repeat(4000))).unwrap().unwrap();
    let frames = |env| chunk(&[Wire::Envelopes(vec![env])], 512).iter().map(|c| arena_frame(c)).collect::<Vec<_>>();
    let (fa, fb) = (frames(a), frames(b));
    let mut applied = 0;
    for i in 0..fa.len().max(fb.len()) {
        for (link, f) in [(1, fa.get(i)), (2, fb.get(i))] {
            if let Some(f) = f {
                let inc = cs[0].receive_on(link, f, 2_300).unwrap();
                assert_eq!(inc.rejected, 0);
                applied += inc.applied;
            }
        }
    }
    assert_eq!(applied, 2);
    assert_eq!(cs[0].room().doc().code(), hub.room.doc().code());
    // Closing a link mid-message drops its half: the rest is refused, nothing applied.
    let c = hub.room.edit(2_400, |e| e.splice_code(0, 0, &"c".repeat(3000))).unwrap().unwrap();
    let fc = frames(c);
    cs[0].receive_on(3, &fc[0], 2_500).unwrap();
    cs[0].close_link(3);
    assert!(cs[0].receive_on(3, &fc[1], 2_500).is_err());
}

#[test]
fn presence_carries_names_and_cursors() {
    let (mut hub, token) = setup();
    let mut cs = vec![client(&hub, "ada", &token), client(&hub, "bob", &token)];
    let opens: Vec<_> = (0..2).flat_map(|i| cs[i].open(2_000).unwrap().into_iter().map(move |f| (i, f))).collect();
    pump(&mut hub, &mut cs, opens, &[true, true]);
    let f = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "abcdef".into() }], 2_100).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, true]);
    let f = cs[1].set_presence("Bob", "#ff0000", Some((2, 4)), 2_200).unwrap();
    // The update comes out as it came in (a recorder keeps it), and again when it changes
    // nothing (a repeat).
    for repeat in [false, true] {
        let inc = cs[0].receive(&f, 2_200).unwrap();
        assert_eq!(inc.presence, !repeat);
        assert_eq!(inc.awareness.len(), 1);
        let (id, entry) = inc.awareness[0].clients.iter().next().unwrap();
        assert_eq!(Some(id.get()), cs[1].presence().iter().find(|p| p.local).map(|p| p.client_id));
        assert!(entry.json.contains("\"name\":\"Bob\""), "{}", entry.json);
    }
    pump(&mut hub, &mut cs, vec![(1, f)], &[true, true]);
    let f = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "XY".into() }], 2_300).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, true]);
    let p = cs[0].presence();
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].name.as_str(), p[0].anchor, p[0].head, p[0].local), ("Bob", Some(4), Some(6), false));
    // Not renewed for the timeout: dropped.
    let (_, dropped) = cs[0].tick(3_000 + PRESENCE_TIMEOUT_MS).unwrap();
    assert!(dropped && cs[0].presence().is_empty());
    // A stock y-protocols session reads the awareness frame.
    let mut aw = crate::sync::presence::PresenceMap::new(0);
    let f = cs[1].set_presence("Bob", "#ff0000", None, 40_000).unwrap();
    YSession::new(false).receive(hub.room.doc(), &mut aw, &f, 40_000).unwrap();
    assert_eq!(aw.len(), 1);
    // So does the document-free path an idle room uses.
    let mut idle = crate::sync::presence::PresenceMap::new(0);
    assert!(YSession::new(false).receive_presence(&mut idle, &f, 40_000).unwrap().is_some());
    let (bob, json, _) = aw.present().next().unwrap();
    assert_eq!(idle.state(bob), Some(json));
    let step1 =
        crate::sync::ywire::encode_frame(&[Message::Sync(yrs::sync::SyncMessage::SyncStep1(Default::default()))]);
    assert!(YSession::new(false).receive_presence(&mut idle, &step1, 40_000).unwrap().is_none(), "sync needs the doc");
}

/// The awareness state is the JSON serde_json wrote for it, byte for byte.
#[test]
fn presence_state_as_serde_json_wrote_it() {
    let doc = crate::doc::RoomDoc::new(5);
    doc.edit(|e| e.splice_code(0, 0, "abc"));
    for (name, color) in [("Bob", "#ff0000"), ("Ada \"the\" \\ é\n二", ""), ("", "\u{1}")] {
        for selection in [None, Some((1, 3)), Some((3, 0))] {
            let cursor =
                selection.and_then(|(a, h)| Some((doc.code_position(a, false)?, doc.code_position(h, false)?)));
            let value = |rel: &String| serde_json::from_str::<serde_json::Value>(rel).unwrap();
            let old = serde_json::json!({
                "user": { "name": name, "color": color },
                "cursor": cursor.as_ref().map(|(a, h)| serde_json::json!({ "anchor": value(a), "head": value(h) })),
            });
            assert_eq!(super::presence_state(name, color, cursor.as_ref()), serde_json::to_string(&old).unwrap());
        }
    }
}

#[test]
fn a_new_revocation_is_reported_once() {
    let (mut hub, token) = setup();
    let host_token = Invite::issue(&Identity::from_passphrase("room"), Role::Host, 1_000_000, 0, 2).to_token();
    let mut cs = vec![client(&hub, "host", &host_token), client(&hub, "cand", &token)];
    let opens: Vec<_> = (0..2).flat_map(|i| cs[i].open(2_000).unwrap().into_iter().map(move |f| (i, f))).collect();
    pump(&mut hub, &mut cs, opens, &[true, true]);
    let f = cs[1].open(2_050).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (1, f)).collect(), &[true, true]);
    let cand = cs[1].room().identity().public();
    assert!(cs[0].room().ledger().member(&cand).is_some(), "the host never saw the candidate");
    let frames = cs[0].revoke(cand, 2_100).unwrap();
    // An edit frame reports nothing revoked; the revocation does, once.
    let edit = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "x".into() }], 2_150).unwrap();
    let mut seen = Vec::new();
    for f in edit.iter().chain(&frames).chain(&frames) {
        seen.push(cs[1].receive(f, 2_200).unwrap().revoked);
    }
    assert_eq!(seen.iter().filter(|r| **r).count(), 1, "{seen:?}");
    assert!(cs[1].room().ledger().is_revoked(&cand));
}

/// Presence states are parsed once per change, not on every `presence()` call (issue #22:
/// each call parsed every state again). Seen parsing on every call before.
#[test]
fn presence_parses_each_state_once_per_change() {
    let parses = || crate::json::PARSES.with(std::cell::Cell::get);
    let (mut hub, token) = setup();
    let mut cs = vec![client(&hub, "ada", &token), client(&hub, "bob", &token)];
    let opens: Vec<_> = (0..2).flat_map(|i| cs[i].open(2_000).unwrap().into_iter().map(move |f| (i, f))).collect();
    pump(&mut hub, &mut cs, opens, &[true, true]);
    let f = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "abcdef".into() }], 2_100).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, true]);
    let f = cs[1].set_presence("Bob", "#ff0000", Some((2, 4)), 2_200).unwrap();
    // The update comes out as it came in (a recorder keeps it), and again when it changes
    // nothing (a repeat).
    for repeat in [false, true] {
        let inc = cs[0].receive(&f, 2_200).unwrap();
        assert_eq!(inc.presence, !repeat);
        assert_eq!(inc.awareness.len(), 1);
        let (id, entry) = inc.awareness[0].clients.iter().next().unwrap();
        assert_eq!(Some(id.get()), cs[1].presence().iter().find(|p| p.local).map(|p| p.client_id));
        assert!(entry.json.contains("\"name\":\"Bob\""), "{}", entry.json);
    }
    pump(&mut hub, &mut cs, vec![(1, f)], &[true, true]);
    let f = cs[0].set_presence("Ada", "#00ff00", None, 2_200).unwrap();
    pump(&mut hub, &mut cs, vec![(0, f)], &[true, true]);
    let start = parses();
    for _ in 0..10 {
        let p = cs[0].presence();
        let mut names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["Ada", "Bob"]);
    }
    assert_eq!(parses() - start, 2, "two states, each parsed once over ten calls");
    // Bob moves his cursor: his state alone is parsed again, once. Cursors still resolve
    // against the current text.
    let f = cs[1].set_presence("Bob", "#ff0000", Some((1, 1)), 2_300).unwrap();
    pump(&mut hub, &mut cs, vec![(1, f)], &[true, true]);
    let f = cs[0].splice(&[Splice { pos: 0, delete: 0, insert: "XY".into() }], 2_400).unwrap();
    pump(&mut hub, &mut cs, f.into_iter().map(|f| (0, f)).collect(), &[true, true]);
    let start = parses();
    for _ in 0..10 {
        let bob = cs[0].presence().into_iter().find(|p| p.name == "Bob").unwrap();
        assert_eq!((bob.anchor, bob.head), (Some(3), Some(3)));
    }
    assert_eq!(parses() - start, 1);
    // Bob renews the same state (every half timeout): Ada parses nothing.
    let (renew, _) = cs[1].tick(2_300 + PRESENCE_TIMEOUT_MS / 2).unwrap();
    assert!(renew.is_some());
    pump(&mut hub, &mut cs, renew.into_iter().map(|f| (1, f)).collect(), &[true, true]);
    let start = parses();
    assert_eq!(cs[0].presence().len(), 2);
    assert_eq!(parses() - start, 0, "a renewal with the same state was parsed again");
}

//! Seed inputs for arena-core's fuzz targets, made from real encodings of the fixture room.

use std::collections::BTreeMap;

use super::fixture::{build, fixture, T0};
use crate::doc::RoomDoc;
use crate::records::{AnalysisRecord, Participant, RunRecord, RunStatus, VersionCause, VersionMeta};
use crate::sync::presence::PresenceMap;
use crate::sync::wire::{chunk, Wire};
use crate::sync::ywire::{self, YMessage, YSyncMessage};
use crate::vote::sign_vote;
use crate::{Admission, Delegation, Edit, Envelope, Identity, Invite, Revocation, Role, Store};

/// Seeds per target: `(target, input)`, several per target.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    out.extend(update_gate().into_iter().map(|s| ("update_gate", s)));
    out.extend(wire().into_iter().map(|s| ("wire", s)));
    out.extend(grant().into_iter().map(|s| ("grant", s)));
    out.extend(json().into_iter().map(|s| ("json", s.into_bytes())));
    out
}

/// Writer `who`'s next update on the populated document, made by `f`, behind its byte.
fn edit(who: u8, f: impl FnOnce(&mut Edit<'_, '_>)) -> Vec<u8> {
    let fx = fixture();
    let w = &fx.writers[usize::from(who)];
    let doc = RoomDoc::new(w.id.public().client_id(0));
    doc.apply_v1(&fx.state).expect("the fixture's state loads");
    let mut out = vec![who];
    out.extend(doc.edit(f).1);
    out
}

fn update_gate() -> Vec<Vec<u8>> {
    let fx = fixture();
    let (host, cand, node) = (0u8, 1u8, 2u8);
    let key = |who: u8| fx.writers[usize::from(who)].id.public().to_hex();
    let run = RunRecord {
        id: "run-2".into(),
        by: key(cand),
        language: "rust".into(),
        status: RunStatus::TimedOut,
        stdout: String::new(),
        stderr: "timeout".into(),
        exit_code: None,
        cpu_ms: 1000,
        wall_ms: 2000,
        at: T0 + 20,
    };
    let version = VersionMeta {
        id: "v2".into(),
        label: "second".into(),
        cause: VersionCause::Run,
        at: T0 + 21,
        by: key(host),
        state_vector: "00".into(),
        heads: BTreeMap::from([(key(host), 3)]),
    };
    let vote = sign_vote(&fx.room, &fx.writers[usize::from(cand)].id, 1, false);
    let me = Participant { name: "Ada L.".into(), role: Role::Candidate, public_key: key(cand), joined_at: T0 };
    let mut seeds = vec![
        edit(cand, |e| e.splice_code(0, 0, "# ✓ 😀\n")),
        edit(cand, |e| e.splice_code(10, 0, "x")),
        edit(cand, |e| {
            let n = e.code().encode_utf16().count() as u32;
            e.splice_code(n, 0, "\nprint(sum(1, 2))")
        }),
        edit(cand, |e| e.splice_code(2, 9, "")),
        edit(cand, |e| e.splice_code(4, 3, "plus")),
        edit(cand, |e| e.set_participant(&key(cand), &me)),
        edit(cand, |e| e.set_vote(&key(cand), &vote)),
        edit(host, |e| e.set_meta("title", &serde_json::json!("Sums"))),
        edit(host, |e| e.set_meta("notes", &serde_json::json!({"a": [1, -2, 2.5, null, true, "x"]}))),
        edit(host, |e| {
            let n = e.code().encode_utf16().count() as u32;
            e.splice_code(0, n, "")
        }),
        edit(host, |e| e.clear_votes()),
        edit(host, |e| e.push_version(&version)),
        edit(node, |e| e.push_run(&run)),
        edit(node, |e| {
            e.push_analysis(&AnalysisRecord {
                round: 1,
                backend: "offline".into(),
                findings: vec!["ok".into()],
                created_at: T0 + 22,
            })
        }),
        // Refused by the write rules: the candidate writes `meta`, the host a run.
        edit(cand, |e| e.set_meta("title", &serde_json::json!("mine"))),
        edit(host, |e| e.push_run(&run)),
    ];
    // Refused by the gate: a subdocument, the i64::MIN varint, a nested type at a root.
    seeds.push(vec![1, 1, 1, 5, 0, 9, 1, 4, b'r', b'u', b'n', b's', 4, b'g', b'u', b'i', b'd', 118, 0, 0]);
    let mut min = vec![0, 1, 1, 5, 0, 0x28, 1, 4, b'm', b'e', b't', b'a', 1, b'k', 1, 125];
    min.extend([0xc0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0]);
    seeds.push(min);
    seeds.push(vec![0, 1, 1, 5, 0, 0x27, 1, 4, b'm', b'e', b't', b'a', 5, b'n', b'o', b't', b'e', b's', 2, 0]);
    seeds
}

fn wire() -> Vec<Vec<u8>> {
    let fx = fixture();
    let (_, mut rooms) = build().expect("the fixture builds");
    let host = &mut rooms[0];
    let mut wires: Vec<Wire> = host.answer(&Default::default()).expect("an answer");
    wires.push(host.want());
    let env = fx.base.last().cloned().expect("a base log");
    wires.push(Wire::Envelopes(vec![env.clone()]));
    wires.push(Wire::History(fx.base[..2].to_vec()));
    wires.push(Wire::WantHistory(BTreeMap::from([(env.author, env.seq)])));
    let cp = host.checkpoint(T0 + 30).expect("a checkpoint");
    wires.push(Wire::Checkpoint(Box::new(cp.clone())));
    let stock = Invite::issue(&fx.room_key, Role::Candidate, T0 / 1000 + 3600, 0, 7);
    let update = edit(1, |e| e.splice_code(0, 0, "stock"))[1..].to_vec();
    wires.push(Wire::Proxied {
        grant: Box::new(stock.grant.clone()),
        signature: stock.vouch(&update),
        delegation: Delegation::sign(&stock).signature,
        update: update.clone(),
    });
    wires.push(Wire::Delegations(vec![Delegation::sign(&stock)]));
    wires.push(Wire::Revocations(vec![Revocation::sign(
        fx.room,
        &fx.writers[0].id,
        fx.writers[1].id.public(),
        fx.writers[1].head.next_seq,
        T0 + 31,
    )]));
    let mut seeds: Vec<Vec<u8>> = wires.iter().map(Wire::encode).collect();
    seeds.push(env.encode());
    // y-protocols frames.
    let doc = host.doc();
    let sv = yrs::ReadTxn::state_vector(&yrs::Transact::transact(doc.yrs()));
    let mut presence = PresenceMap::new(77);
    let aw = presence.set_local(r##"{"user":{"name":"Zoë","color":"#ff0"},"cursor":{"anchor":3}}"##, 1);
    seeds.push(ywire::encode_frame(&[YMessage::Sync(YSyncMessage::SyncStep1(sv))]));
    seeds.push(ywire::encode_frame(&[YMessage::Sync(YSyncMessage::SyncStep2(fx.state.clone()))]));
    seeds.push(ywire::update_frame(&update));
    seeds.push(ywire::encode_frame(&[YMessage::Awareness(aw), YMessage::AwarenessQuery]));
    seeds.push(ywire::encode_frame(&[
        YMessage::Auth(Some("denied".into())),
        YMessage::Sync(YSyncMessage::Update(update)),
    ]));
    seeds.push(ywire::arena_frame(&seeds[0]));
    // A checkpoint in fragments, each behind its u16 length (the reassembler's input).
    let mut fragments = Vec::new();
    for c in chunk(&[Wire::Checkpoint(Box::new(cp))], 200) {
        fragments.extend((c.len() as u16).to_be_bytes());
        fragments.extend(c);
    }
    seeds.push(fragments);
    seeds
}

fn grant() -> Vec<Vec<u8>> {
    let fx = fixture();
    let (_, mut rooms) = build().expect("the fixture builds");
    let invite = Invite::issue(&fx.room_key, Role::Observer, T0 / 1000 + 3600, 0, 9);
    let bound = Invite::bound(&fx.room_key, Identity::from_passphrase("fuzz/bound"), Role::Host, T0 / 1000 + 60, 1, 3);
    let adm = Admission::sign(&Identity::from_passphrase("fuzz/someone"), &invite, "Someone", T0);
    let revocation = Revocation::sign(fx.room, &fx.writers[0].id, fx.writers[1].id.public(), 2, T0 + 40);
    let cp = rooms[0].checkpoint(T0 + 41).expect("a checkpoint");
    let mut seeds = vec![
        invite.grant.encode(),
        bound.grant.encode(),
        adm.encode(),
        invite.to_token().into_bytes(),
        bound.to_token().into_bytes(),
        cp.encode(),
        revocation.encode(),
        Delegation::sign(&invite).encode(),
    ];
    seeds.extend(fx.admissions.iter().map(Admission::encode));
    let store = rooms[0].store();
    if let Some(&(idx, _)) = store.checkpoints().expect("checkpoints").first() {
        seeds.extend(store.checkpoint(idx).ok().flatten().map(|c| c.encode()));
    }
    seeds.push(Envelope::encode(&fx.base[0]));
    seeds
}

fn json() -> Vec<String> {
    let fx = fixture();
    let doc = RoomDoc::new(5);
    doc.apply_v1(&fx.state).expect("the fixture's state loads");
    let mut texts: Vec<String> = vec![
        serde_json::to_string(&doc.meta()).unwrap_or_default(),
        serde_json::to_string(&doc.participants()).unwrap_or_default(),
        serde_json::to_string(&doc.votes()).unwrap_or_default(),
        serde_json::to_string(&doc.runs()).unwrap_or_default(),
        serde_json::to_string(&doc.versions()).unwrap_or_default(),
        serde_json::to_string(&doc.analysis()).unwrap_or_default(),
    ];
    texts.extend(
        [
            r##"{"user":{"name":"Zoë","color":"#ff0"},"cursor":{"anchor":3,"head":{"type":"x","tname":"code","item":null}}}"##,
            r#"[0, -0, 7, -7, 18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]"#,
            "[2.5, 1e300, 1E2, -1.5e-3, 0.1, 1.7976931348623157e308, 4.9e-324, 1e-400, 1e22, 123456789012345678901234567890]",
            r#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 é""#,
            r#"{"k":1,"k":2,"":[{},[]]}"#,
            " [ true , false , null ] ",
            "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]",
            r#""\ud800\u0041""#,
            "01",
            "[1,]",
        ]
        .map(str::to_owned),
    );
    texts
}

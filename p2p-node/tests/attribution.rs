//! `verify`, `replay` and `export` show a node's envelopes for a stock client as "via node,
//! as candidate": the recording holds the client's delegation before the envelopes that
//! name it, and keeps it when the client's link is revoked later (kind 7 before kind 6).

use anyhow::{ensure, Context, Result};
use arena_core::{Admission, Delegation, Identity, Invite, Role, Room, RoomConfig, FLAG_PROXY};
use arena_node::recording::{Kind, RecordingFile, RecordingStore};
use arena_node::replay::{timeline, verify, Pins};
use yrs::{Text, Transact};

const T0: u64 = 1_700_000_000_000;

#[test]
fn verify_and_export_show_via_node_as_candidate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("session.arena");
    let room_key = Identity::from_passphrase("attribution room");
    let node = Identity::from_passphrase("attribution node");
    {
        let store = RecordingStore::open(&path, room_key.public(), node.clone(), T0)?;
        let mut room = Room::open(room_key.public(), node.clone(), 0, store, RoomConfig::default(), T0)?;
        let own = Invite::bound(&room_key, node.clone(), Role::Host, T0 / 1000 + 3600, FLAG_PROXY, 0);
        room.admit(&Admission::sign(&node, &own, "node", T0), Some(T0))?;
        let cand = Invite::issue(&room_key, Role::Candidate, T0 / 1000 + 3600, 0, 1);
        let d = Delegation::sign(&cand);
        room.delegate(&d, Some(T0))?;
        let doc = yrs::Doc::with_client_id(31_337);
        let code = doc.get_or_insert_text("code");
        let update = {
            let mut t = doc.transact_mut();
            code.insert(&mut t, 0, "typed by a stock candidate");
            t.encode_update_v1()
        };
        room.proxy_update(&update, &d.key(), T0 + 1)?.context("nothing sealed")?;
        // The node withdraws the link afterwards: what was signed before stays attributed.
        room.revoke(d.key(), T0 + 2)?;
        room.store_mut().close()?;
    }
    let file = RecordingFile::read(&path)?;
    let kinds: Vec<u8> = file.records.iter().map(|r| r.kind).collect();
    let at = |k: Kind| kinds.iter().position(|x| *x == k as u8);
    ensure!(Kind::Delegation as u8 == 7 && Kind::Revocation as u8 == 6, "record kinds moved");
    ensure!(at(Kind::Delegation) < at(Kind::Revocation) && at(Kind::Revocation).is_some(), "kinds: {kinds:?}");
    // Reopened on the file, the room knows both: the delegation, and that it is revoked.
    {
        let store = RecordingStore::open(&path, room_key.public(), node.clone(), T0 + 3)?;
        let room = Room::open(room_key.public(), node.clone(), 0, store, RoomConfig::default(), T0 + 3)?;
        let cand = Invite::issue(&room_key, Role::Candidate, T0 / 1000 + 3600, 0, 1).grant.invite;
        ensure!(room.ledger().delegation(&cand).is_some() && room.ledger().is_revoked(&cand), "reopen lost them");
        ensure!(room.doc().code() == "typed by a stock candidate", "{:?}", room.doc().code());
    }
    let file = RecordingFile::read(&path)?;
    let rep = verify(&file, &Pins::default());
    ensure!(rep.ok(), "verify failed: {:?}", rep.problem());
    ensure!(rep.delegations == 1, "delegations checked: {}", rep.delegations);
    let w = rep.stock.values().next().context("no stock writer in the report")?;
    ensure!(w.role == Role::Candidate && w.node == node.public() && w.envelopes == 1, "{w:?}");
    let t = timeline(&file)?;
    let step = t.steps.iter().find(|s| s.via.is_some()).context("no step via the node")?;
    let via = step.via.as_deref().unwrap_or_default();
    ensure!(via.starts_with("via node, as candidate"), "{via}");
    ensure!(step.name.starts_with("candidate ") && step.name.ends_with("via node"), "{}", step.name);
    ensure!(arena_node::replay::export_json(&t).contains("via node, as candidate"), "export lacks the attribution");
    Ok(())
}

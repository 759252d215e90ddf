//! `Wire::Proxied`: a stock client's update relayed by a node without a proxy grant to one
//! with it, vouched for by the client's invite key. The signer checks the voucher and the
//! grant's role; the token never leaves the node the client connected to.

use anyhow::{ensure, Result};
use arena_core::records::Meta;
use arena_core::sync::wire::Wire;
use arena_core::{Admission, Delegation, Identity, Invite, MemoryStore, Role, Room, RoomConfig, Store, FLAG_PROXY};
use yrs::updates::encoder::Encode;
use yrs::{GetString, Text, Transact};

const T0: u64 = 1_700_000_000_000;

fn key() -> Identity {
    Identity::from_passphrase("proxied room")
}

/// A stock client's update: "hello" in `code` under a random client id.
fn stock_update(text: &str) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(987_654);
    let code = doc.get_or_insert_text("code");
    let mut txn = doc.transact_mut();
    code.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

#[test]
fn a_relayed_update_is_signed_only_by_a_proxy_and_only_under_a_writer_token() -> Result<()> {
    // The home node: host and proxy grant, like the bootstrap node's room replica.
    let mut home = Room::open(
        key().public(),
        Identity::from_passphrase("home"),
        0,
        MemoryStore::new(),
        RoomConfig::default(),
        T0,
    )?;
    let invite = Invite::issue(&key(), Role::Host, T0 / 1000 + 3600, FLAG_PROXY, T0);
    home.admit(&Admission::sign(home.identity(), &invite, "node", T0), Some(T0 / 1000))?;
    // A plain member without a proxy grant (the other node's replica).
    let mut other =
        Room::create(&key(), Identity::from_passphrase("other"), 0, MemoryStore::new(), Meta::default(), T0)?;

    let writer = Invite::issue(&key(), Role::Candidate, T0 / 1000 + 3600, 0, T0);
    let observer = Invite::issue(&key(), Role::Observer, T0 / 1000 + 3600, 0, T0);
    let expired = Invite::issue(&key(), Role::Candidate, T0 / 1000 - 1, 0, T0);
    let elsewhere = Invite::issue(&Identity::from_passphrase("another room"), Role::Host, T0 / 1000 + 3600, 0, T0);
    let vouched = |inv: &Invite, update: Vec<u8>| Wire::Proxied {
        grant: Box::new(inv.grant.clone()),
        signature: inv.vouch(&update),
        update,
        delegation: Delegation::sign(inv).signature,
    };

    // On the wire and back; the token (its secret) is not in it.
    let msg = vouched(&writer, stock_update("hello"));
    let bytes = msg.encode();
    let back = Wire::decode(&bytes, home.id())?;
    ensure!(back == msg, "Proxied does not round-trip");
    let token = writer.to_token();
    // The invite secret's characters (the last 43 are the read key's).
    let secret_b64 = &token[token.len() - 85..token.len() - 45];
    ensure!(!String::from_utf8_lossy(&bytes).contains(secret_b64), "the token travels");
    for cut in 1..bytes.len() {
        ensure!(Wire::decode(&bytes[..cut], home.id()).is_err(), "a truncated Proxied decoded at {cut}");
    }

    // Refusals leave the replica untouched.
    for (what, inv) in [("observer", &observer), ("expired", &expired), ("another room", &elsewhere)] {
        let before = home.state_digest();
        let r = home.handle(vouched(inv, stock_update("nope")), T0 + 1);
        ensure!(r.is_err(), "{what} grant: relayed update signed");
        ensure!(home.state_digest() == before, "{what} grant: the refusal changed the replica");
    }
    // A voucher for another update, and a grant with a voucher by a key that is not its invite key.
    let Wire::Proxied { grant, signature, delegation, .. } = vouched(&writer, stock_update("other")) else {
        unreachable!()
    };
    let swapped = Wire::Proxied { grant: grant.clone(), signature, update: stock_update("hello"), delegation };
    ensure!(home.handle(swapped, T0 + 1).is_err(), "a voucher for another update signed");
    let Wire::Proxied { signature, .. } = vouched(&observer, stock_update("hello")) else { unreachable!() };
    let forged = Wire::Proxied { grant, signature, update: stock_update("hello"), delegation };
    ensure!(home.handle(forged, T0 + 1).is_err(), "a voucher by another invite key signed");
    // A writer's grant, an update outside its role's rules (a candidate writing `analysis`).
    let analysis = {
        let doc = yrs::Doc::with_client_id(987_655);
        let arr = doc.get_or_insert_array("analysis");
        let mut txn = doc.transact_mut();
        yrs::Array::push_back(&arr, &mut txn, "hire them");
        txn.encode_update_v1()
    };
    ensure!(home.handle(vouched(&writer, analysis), T0 + 1).is_err(), "a stock candidate wrote analysis");
    ensure!(other.handle(msg.clone(), T0 + 1).is_err(), "a replica without a proxy grant signed");

    // The genuine one: signed by the home node, in an envelope others accept.
    let (_, receipt) = home.handle(msg, T0 + 2)?;
    ensure!(receipt.applied.len() == 1, "no envelope");
    ensure!(home.doc().code() == "hello", "home code {:?}", home.doc().code());
    other.handle(Wire::Admissions(home.ledger().admissions()), T0 + 3)?;
    other.handle(Wire::Delegations(home.ledger().delegations()), T0 + 3)?;
    ensure!(receipt.applied[0].via == Some(writer.grant.invite), "the envelope does not name the writer's grant");
    let r = other.receive(receipt.applied, T0 + 3)?;
    ensure!(r.applied.len() == 1 && r.rejected.is_empty(), "{:?}", r.rejected);
    let text = other.doc().yrs().get_or_insert_text("code");
    ensure!(text.get_string(&other.doc().yrs().transact()).contains("hello"), "other replica lacks it");
    Ok(())
}

/// A stock update under client id `client`, typed at position 0.
fn stock_update_as(client: u64, text: &str) -> Vec<u8> {
    let doc = yrs::Doc::with_client_id(client);
    let code = doc.get_or_insert_text("code");
    let mut txn = doc.transact_mut();
    code.insert(&mut txn, 0, text);
    txn.encode_update_v1()
}

#[test]
fn deferred_stock_updates_apply_now_and_are_signed_together_later() -> Result<()> {
    let cfg = RoomConfig { collect_seals: true, ..RoomConfig::default() };
    let mut home = Room::open(key().public(), Identity::from_passphrase("home"), 0, MemoryStore::new(), cfg, T0)?;
    let invite = Invite::issue(&key(), Role::Host, T0 / 1000 + 3600, FLAG_PROXY, T0);
    home.admit(&Admission::sign(home.identity(), &invite, "node", T0), Some(T0 / 1000))?;
    let mut peer = Room::create(&key(), Identity::from_passphrase("peer"), 0, MemoryStore::new(), Meta::default(), T0)?;
    peer.handle(Wire::Admissions(home.ledger().admissions()), T0)?;
    home.handle(Wire::Admissions(peer.ledger().admissions()), T0)?;
    let created = peer.store().author_envelopes(&peer.identity().public(), 0, usize::MAX)?;
    ensure!(home.receive(created, T0)?.rejected.is_empty());
    let logged = home.store().log_len();
    let stock = Delegation::sign(&Invite::issue(&key(), Role::Candidate, T0 / 1000 + 3600, 0, 7));
    home.delegate(&stock, Some(T0 / 1000))?;
    peer.delegate(&stock, None)?;
    let via = &stock.key();

    // Applied at once, nothing signed or logged yet.
    ensure!(home.proxy_deferred(&stock_update_as(11, "a"), via, T0 + 1)?);
    ensure!(home.proxy_deferred(&stock_update_as(12, "b"), via, T0 + 1)?);
    ensure!(home.doc().code().len() == 2 && home.store().log_len() == logged && home.unsealed() == 2);
    // An empty update holds nothing to relay; garbage is an error that changes nothing.
    ensure!(!home.proxy_deferred(&yrs::Update::new().encode_v1(), via, T0 + 1)?);
    let before = home.state_digest();
    ensure!(home.proxy_deferred(&[0xff, 0x01, 0x02], via, T0 + 1).is_err());
    ensure!(home.state_digest() == before && home.unsealed() == 2);

    // One envelope for both, which the peer accepts.
    let env = home.seal_pending(T0 + 2)?.ok_or_else(|| anyhow::anyhow!("nothing sealed"))?;
    ensure!(home.store().log_len() == logged + 1);
    ensure!(home.take_sealed() == vec![env.clone()], "the seal is kept for the caller");
    ensure!(home.take_sealed().is_empty());
    let r = peer.receive(vec![env], T0 + 3)?;
    ensure!(r.applied.len() == 1 && r.rejected.is_empty(), "{:?}", r.rejected);
    ensure!(peer.doc().code() == home.doc().code());

    // A client id another author owns is refused before anything changes: the peer's own.
    let peers = peer.doc().client_id();
    let before = home.state_digest();
    ensure!(home.proxy_deferred(&stock_update_as(peers, "x"), via, T0 + 4).is_err(), "a foreign client id passed");
    ensure!(home.state_digest() == before && home.unsealed() == 0);

    // A seal made by another call (receiving seals first) is kept for the caller too.
    ensure!(home.proxy_deferred(&stock_update_as(13, "c"), via, T0 + 5)?);
    let theirs = peer.edit(T0 + 5, |e| e.splice_code(0, 0, "p"))?.ok_or_else(|| anyhow::anyhow!("no edit"))?;
    home.receive(vec![theirs], T0 + 6)?;
    let sealed = home.take_sealed();
    ensure!(sealed.len() == 1 && home.unsealed() == 0, "receive sealed first: {}", sealed.len());
    let r = peer.receive(sealed, T0 + 7)?;
    ensure!(r.applied.len() == 1 && r.rejected.is_empty(), "{:?}", r.rejected);
    ensure!(peer.doc().code() == home.doc().code(), "{:?} vs {:?}", peer.doc().code(), home.doc().code());

    // Without a proxy grant nothing is applied.
    let before = peer.state_digest();
    ensure!(peer.proxy_deferred(&stock_update_as(14, "d"), via, T0 + 8).is_err());
    ensure!(peer.state_digest() == before);
    Ok(())
}

//! `Wire::Proxied`: a stock client's update relayed by a node without a proxy grant to one
//! with it, vouched for by the client's invite key. The signer checks the voucher and the
//! grant's role; the token never leaves the node the client connected to.

use anyhow::{ensure, Result};
use arena_core::records::Meta;
use arena_core::sync::wire::Wire;
use arena_core::{Admission, Delegation, Identity, Invite, MemoryStore, Role, Room, RoomConfig, Store, FLAG_PROXY};
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, Text, Transact};

const T0: u64 = 1_700_000_000_000;

fn key() -> Identity {
    Identity::from_passphrase("proxied room")
}

/// The home node's replica: host and proxy grant, like the bootstrap node's.
fn home_node() -> Result<Room<MemoryStore>> {
    let mut home = Room::open(
        key().public(),
        Identity::from_passphrase("home"),
        0,
        MemoryStore::new(),
        RoomConfig::default(),
        T0,
    )?;
    let invite = Invite::issue(&key(), Role::Host, T0 / 1000 + 3600, FLAG_PROXY, T0);
    home.admit(&Admission::sign(home.identity(), &invite, "node", T0), Some(T0))?;
    Ok(home)
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
    let mut home = home_node()?;
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
    let text = other.doc().raw_yrs_doc().get_or_insert_text("code");
    ensure!(text.get_string(&other.doc().raw_yrs_doc().transact()).contains("hello"), "other replica lacks it");
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
    home.admit(&Admission::sign(home.identity(), &invite, "node", T0), Some(T0))?;
    let mut peer = Room::create(&key(), Identity::from_passphrase("peer"), 0, MemoryStore::new(), Meta::default(), T0)?;
    peer.handle(Wire::Admissions(home.ledger().admissions()), T0)?;
    home.handle(Wire::Admissions(peer.ledger().admissions()), T0)?;
    let created = peer.store().author_envelopes(&peer.identity().public(), 0, usize::MAX)?;
    ensure!(home.receive(created, T0)?.rejected.is_empty());
    let logged = home.store().log_len();
    let stock = Delegation::sign(&Invite::issue(&key(), Role::Candidate, T0 / 1000 + 3600, 0, 7));
    home.delegate(&stock, Some(T0))?;
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

/// Relays are requests of their own and may arrive out of order: an update that builds on
/// one not here yet waits (nothing applied, nothing signed) and is signed right after it.
/// What waits is bounded, and a waiting update by a refused grant is never signed.
#[test]
fn relayed_updates_that_arrive_out_of_order_are_signed_in_order() -> Result<()> {
    let mut home = home_node()?;
    let writer = Invite::issue(&key(), Role::Candidate, T0 / 1000 + 3600, 0, T0);
    let observer = Invite::issue(&key(), Role::Observer, T0 / 1000 + 3600, 0, T0);
    // One stock client types "ab", then "c" after it, then deletes "a".
    let doc = yrs::Doc::with_client_id(555_001);
    let code = doc.get_or_insert_text("code");
    let step = |f: &dyn Fn(&mut yrs::TransactionMut)| {
        let mut txn = doc.transact_mut();
        f(&mut txn);
        txn.encode_update_v1()
    };
    let steps =
        [step(&|x| code.insert(x, 0, "ab")), step(&|x| code.insert(x, 2, "c")), step(&|x| code.remove_range(x, 0, 1))];
    let vouched = |inv: &Invite, update: &[u8]| Wire::Proxied {
        grant: Box::new(inv.grant.clone()),
        signature: inv.vouch(update),
        update: update.to_vec(),
        delegation: Delegation::sign(inv).signature,
    };
    let log0 = home.store().log_len();
    // The last two first: they wait, and change nothing.
    for u in [&steps[2], &steps[1]] {
        let before = home.state_digest();
        let (_, r) = home.handle(vouched(&writer, u), T0 + 1)?;
        ensure!(r.applied.is_empty(), "an update building on missing content was signed");
        ensure!(home.state_digest() == before, "a waiting update changed the document");
    }
    ensure!(home.waiting_relayed() == 2, "{} waiting", home.waiting_relayed());
    ensure!(home.store().log_len() == log0, "a waiting update was logged");
    // The first arrives: all three are signed, in order, in three envelopes.
    let (_, r) = home.handle(vouched(&writer, &steps[0]), T0 + 2)?;
    ensure!(r.applied.len() == 3, "{} envelopes signed", r.applied.len());
    ensure!(home.doc().code() == "bc", "code {:?}", home.doc().code());
    ensure!(home.waiting_relayed() == 0, "{} still waiting", home.waiting_relayed());
    let seqs: Vec<u64> = r.applied.iter().map(|e| e.seq).collect();
    ensure!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "not in chain order: {seqs:?}");

    // An observer's update never waits: it is refused outright.
    let other = yrs::Doc::with_client_id(555_002);
    let t = other.get_or_insert_text("code");
    yrs::Text::insert(&t, &mut other.transact_mut(), 0, "x");
    let sv = other.transact().state_vector();
    yrs::Text::insert(&t, &mut other.transact_mut(), 1, "y");
    let later = other.transact().encode_state_as_update_v1(&sv);
    ensure!(home.handle(vouched(&observer, &later), T0 + 3).is_err(), "an observer's relayed update was kept");
    ensure!(home.waiting_relayed() == 0, "an observer's update waits");

    // Bounded: a flood of updates that build on nothing we hold keeps at most the cap.
    for i in 0..1500u64 {
        let d = yrs::Doc::with_client_id(600_000 + i);
        let t = d.get_or_insert_text("code");
        Text::insert(&t, &mut d.transact_mut(), 0, "x");
        let sv = d.transact().state_vector();
        Text::insert(&t, &mut d.transact_mut(), 1, "y");
        let u = d.transact().encode_state_as_update_v1(&sv);
        home.handle(vouched(&writer, &u), T0 + 4)?;
    }
    ensure!(home.waiting_relayed() <= 1024, "{} waiting: unbounded", home.waiting_relayed());
    ensure!(home.doc().code() == "bc", "the flood changed the document: {:?}", home.doc().code());
    Ok(())
}

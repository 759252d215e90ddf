//! `Wire::Proxied`: a stock client's update relayed by a node without a proxy grant to one
//! with it. The signer checks the client's token itself; a relay grants nothing.

use anyhow::{ensure, Result};
use arena_core::records::Meta;
use arena_core::sync::wire::Wire;
use arena_core::{Admission, Grant, Identity, MemoryStore, Role, Room, RoomConfig, FLAG_PROXY};
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
    let grant = Grant::issue(&key(), Role::Host, T0 / 1000 + 3600, FLAG_PROXY, T0);
    home.admit(&Admission::sign(home.identity(), grant, "node", T0), Some(T0 / 1000))?;
    // A plain member without a proxy grant (the other node's replica).
    let mut other =
        Room::create(&key(), Identity::from_passphrase("other"), 0, MemoryStore::new(), Meta::default(), T0)?;

    let writer = Grant::issue(&key(), Role::Candidate, T0 / 1000 + 3600, 0, T0).to_token();
    let observer = Grant::issue(&key(), Role::Observer, T0 / 1000 + 3600, 0, T0).to_token();
    let expired = Grant::issue(&key(), Role::Candidate, T0 / 1000 - 1, 0, T0).to_token();
    let elsewhere =
        Grant::issue(&Identity::from_passphrase("another room"), Role::Host, T0 / 1000 + 3600, 0, T0).to_token();

    // On the wire and back.
    let msg = Wire::Proxied { token: writer.clone(), update: stock_update("hello") };
    let back = Wire::decode(&msg.encode(), home.id())?;
    ensure!(back == msg, "Proxied does not round-trip");
    // Oversized tokens and truncated frames are errors, not panics.
    let long = Wire::Proxied { token: "x".repeat(600), update: vec![0] }.encode();
    ensure!(Wire::decode(&long, home.id()).is_err(), "an oversized token decoded");
    let full = msg.encode();
    for cut in 1..full.len() {
        ensure!(Wire::decode(&full[..cut], home.id()).is_err(), "a truncated Proxied decoded at {cut}");
    }

    // Refusals leave the replica untouched.
    for (what, token) in [("observer", &observer), ("expired", &expired), ("another room", &elsewhere)] {
        let before = home.state_digest();
        let r = home.handle(Wire::Proxied { token: token.clone(), update: stock_update("nope") }, T0 + 1);
        ensure!(r.is_err(), "{what} token: relayed update signed");
        ensure!(home.state_digest() == before, "{what} token: the refusal changed the replica");
    }
    ensure!(other.handle(msg.clone(), T0 + 1).is_err(), "a replica without a proxy grant signed");

    // The genuine one: signed by the home node, in an envelope others accept.
    let (_, receipt) = home.handle(msg, T0 + 2)?;
    ensure!(receipt.applied.len() == 1, "no envelope");
    ensure!(home.doc().code() == "hello", "home code {:?}", home.doc().code());
    other.handle(Wire::Admissions(home.ledger().admissions()), T0 + 3)?;
    let r = other.receive(receipt.applied, T0 + 3)?;
    ensure!(r.applied.len() == 1 && r.rejected.is_empty(), "{:?}", r.rejected);
    let text = other.doc().yrs().get_or_insert_text("code");
    ensure!(text.get_string(&other.doc().yrs().transact()).contains("hello"), "other replica lacks it");
    Ok(())
}

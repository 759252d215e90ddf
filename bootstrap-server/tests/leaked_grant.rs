//! The trust model over `/yws`, end to end (issue #21): a member of the room re-uses the
//! host's grant, which it received in the host's admission, to make its own key a host;
//! and writes what its role may not. The node and every other client refuse both.
//! On e41a290 the node admitted the forged host and applied its edits.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use arena_core::sync::wire::Wire;
use arena_core::{Admission, Envelope, Identity, Invite, Role, RoomDoc};
use support::{create_room, now_ms, ArenaPeer, Server};

const PUMP: Duration = Duration::from_millis(400);

/// An envelope by `peer`'s key whose update `edit` makes on a copy of its document: what a
/// modified client sends (its own replica would refuse to sign it).
fn forged(peer: &ArenaPeer, edit: impl FnOnce(&yrs::Doc)) -> Result<Envelope> {
    use yrs::{ReadTxn, Transact};
    let r = peer.room();
    let me = r.identity().clone();
    let copy = RoomDoc::new(me.public().client_id(0));
    copy.apply_v1(&r.doc().encode_state())?;
    let before = copy.raw_yrs_doc().transact().state_vector();
    edit(copy.raw_yrs_doc());
    let update = copy.raw_yrs_doc().transact().encode_state_as_update_v1(&before);
    let head = r.ledger().head(&me.public());
    Ok(Envelope::seal(r.id(), &me, head.next_seq, head.last_hash, 0, update))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_become_host_or_write_host_only_roots() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let mut host = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    host.pump(PUMP).await?;
    host.type_text(0, "def f():\n    return 1\n").await?;
    let mut mallory = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "mallory").await?;
    mallory.pump(PUMP).await?;
    ensure!(mallory.text().contains("return 1"), "the candidate did not catch up: {:?}", mallory.text());

    // Every admission reached the candidate, the host's with its grant.
    let host_key = host.room().identity().public();
    let host_adm = mallory
        .room()
        .ledger()
        .admissions()
        .into_iter()
        .find(|a| a.member == host_key)
        .context("the host's admission")?;
    // A key of Mallory's own, presented with the host's grant: the invite signature cannot
    // be made without the host link's secret.
    let mallory2 = Identity::from_passphrase("mallory's second key");
    let guess = Invite::bound(&mallory2, mallory2.clone(), Role::Host, u64::MAX, 0, 0);
    let mut as_host = Admission::sign(&mallory2, &guess, "host", now_ms());
    as_host.grant = host_adm.grant.clone();
    let mut spliced = host_adm.clone();
    spliced.member = mallory2.public();
    let doc = RoomDoc::new(mallory2.public().client_id(0));
    let (_, update) = doc.edit(|e| e.set_meta("question", &serde_json::json!("pwned by the second key")));
    let as_host_env = Envelope::seal(mallory.room().id(), &mallory2, 0, [0; 32], 0, update);
    // Her admitted key writing host-only roots and someone else's vote.
    let meta = forged(&mallory, |d| {
        let m = d.get_or_insert_map("meta");
        yrs::Map::insert(&m, &mut yrs::Transact::transact_mut(d), "question", "an easier one");
    })?;
    mallory.send(vec![Wire::Admissions(vec![as_host, spliced]), Wire::Envelopes(vec![as_host_env])]).await?;
    mallory.send(vec![Wire::Envelopes(vec![meta])]).await?;
    let analysis = {
        // Chained after the refused one? No: a refused envelope leaves the chain head, so
        // this one reuses its seq and is judged on its own.
        forged(&mallory, |d| {
            let a = d.get_or_insert_array("analysis");
            yrs::Array::push_back(&a, &mut yrs::Transact::transact_mut(d), "{\"round\":0,\"findings\":[\"hire\"]}");
        })?
    };
    mallory.send(vec![Wire::Envelopes(vec![analysis])]).await?;
    mallory.pump(PUMP).await?;
    host.pump(PUMP).await?;

    // Nothing of it reached the host's replica, nor a client that joins afterwards.
    let mut late = ArenaPeer::connect(server.addr, &room.room, &room.observer, "late observer").await?;
    late.pump(PUMP).await?;
    for (who, peer) in [("host", &host), ("late observer", &late)] {
        let r = peer.room();
        ensure!(r.ledger().member(&mallory2.public()).is_none(), "{who}: the second key was admitted");
        ensure!(r.doc().meta().question.is_empty(), "{who}: meta.question = {:?}", r.doc().meta().question);
        ensure!(r.doc().analysis().is_empty(), "{who}: a candidate's analysis arrived");
        ensure!(r.doc().code().contains("return 1"), "{who}: lost the code: {:?}", r.doc().code());
    }
    // The node counted what it refused.
    let rejected = metric(server.addr, "arena_envelopes_rejected_total").await?;
    ensure!(rejected >= 2, "the node rejected {rejected} envelopes");
    // An envelope from ahead of her chain is held back (bounded, and counted), not applied.
    let ahead = {
        let me = mallory.room().identity().clone();
        let head = mallory.room().ledger().head(&me.public());
        let doc = RoomDoc::new(me.public().client_id(0));
        let (_, update) = doc.edit(|e| e.splice_code(0, 0, "from the future"));
        Envelope::seal(mallory.room().id(), &me, head.next_seq + 5, [9; 32], 0, update)
    };
    mallory.send(vec![Wire::Envelopes(vec![ahead])]).await?;
    host.pump(PUMP).await?;
    let held = metric(server.addr, "arena_envelopes_held_back_total").await?;
    ensure!(held >= 1, "the node held back {held} envelopes");
    ensure!(!host.text().contains("from the future"), "an envelope from ahead of its chain was applied");
    // Control: the candidate's own code edits still go through.
    mallory.type_text(0, "# hi\n").await?;
    host.pump(PUMP).await?;
    ensure!(host.text().starts_with("# hi"), "an honest edit was lost: {:?}", host.text());
    server.stop().await?;
    Ok(())
}

/// A counter from the node's `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> Result<u64> {
    let (_, metrics) = support::http(addr, "GET", "/metrics", "").await?;
    Ok(metrics
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0))
}

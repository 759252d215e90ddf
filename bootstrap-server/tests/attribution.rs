//! Honest attribution end to end (issue #21 item 5): stock y-websocket clients (raw
//! y-protocols frames) type through `/yws`; a native peer receives the node's envelopes for
//! them, each naming the writer's own grant (`via`: the invite key of the client's link),
//! and holds them to that grant's role itself.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use arena_core::sync::ywire::encode_frame;
use arena_core::{Invite, PeerKey};
use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMsg, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Text, Transact};

const T: Duration = Duration::from_secs(60);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A stock client: a y-websocket connection that sends one update typing `text` under
/// client id `client`.
async fn stock_types(addr: std::net::SocketAddr, room: &str, token: &str, client: u64, text: &str) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/yws/{room}?token={token}")).await?;
    let doc = yrs::Doc::with_client_id(client);
    let code = doc.get_or_insert_text("code");
    let update = {
        let mut t = doc.transact_mut();
        code.insert(&mut t, 0, text);
        t.encode_update_v1()
    };
    ws.send(Message::Binary(encode_frame(&[YMsg::Sync(SyncMessage::Update(update))]).into())).await?;
    Ok(ws)
}

/// The `via` of the envelope in `peer`'s log that created client `client`'s first item.
fn via_of(peer: &ArenaPeer, client: u64) -> Result<Option<Option<PeerKey>>> {
    use arena_core::Store;
    for e in peer.room().store().log_range(0, u64::MAX)? {
        let u = yrs::Update::decode_v1(&e.envelope.update)?;
        if u.insertions(true).client_ids().any(|c| c.get() == client) {
            return Ok(Some(e.envelope.via));
        }
    }
    Ok(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_edits_reach_a_native_peer_each_under_its_own_grant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let id = PeerKey::from_hex(&room.room)?;
    let grant_key = |token: &str| Invite::from_token(token, &id, now_ms()).map(|i| i.grant.invite);
    let (cand_key, host_key) = (grant_key(&room.candidate)?, grant_key(&room.host)?);

    let mut native = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "native").await?;
    native.pump(Duration::from_millis(100)).await?;
    // Two stock clients with different links type: the candidate's and the host's.
    let mut a = stock_types(server.addr, &room.room, &room.candidate, 111_111, "[cand]").await?;
    let mut b = stock_types(server.addr, &room.room, &room.host, 222_222, "[host]").await?;
    let deadline = tokio::time::Instant::now() + T;
    while !(native.text().contains("[cand]") && native.text().contains("[host]")) {
        ensure!(tokio::time::Instant::now() < deadline, "the native peer never got both: {:?}", native.text());
        native.pump(Duration::from_millis(50)).await?;
    }
    ensure!(native.denied.is_empty(), "{:?}", native.denied);
    let cand = via_of(&native, 111_111)?.context("no envelope for the candidate's edit")?;
    let host = via_of(&native, 222_222)?.context("no envelope for the host's edit")?;
    ensure!(cand == Some(cand_key), "the candidate's edit is attributed to {cand:?}, not its grant {cand_key}");
    ensure!(host == Some(host_key), "the host's edit is attributed to {host:?}, not its grant {host_key}");
    // The native peer knows both delegations, with their roles.
    let ledger = native.room().ledger();
    let role = |k: &PeerKey| ledger.delegation(k).map(|d| d.grant.role);
    ensure!(role(&cand_key) == Some(arena_core::Role::Candidate), "candidate delegation: {:?}", role(&cand_key));
    ensure!(role(&host_key) == Some(arena_core::Role::Host), "host delegation: {:?}", role(&host_key));
    drop((a.close(None).await, b.close(None).await));
    server.stop().await?;
    Ok(())
}

/// Reads a raw connection until the node closes it: the close code and reason.
async fn closed(ws: &mut Ws, d: Duration) -> Result<(u16, String)> {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + d;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => anyhow::bail!("the socket is still open after {d:?}"),
            Ok(None) => anyhow::bail!("the socket ended without a close frame"),
            Ok(Some(Ok(Message::Close(Some(f))))) => return Ok((u16::from(f.code), f.reason.to_string())),
            Ok(Some(Ok(Message::Close(None)))) => anyhow::bail!("closed with no code"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => anyhow::bail!("socket error before a close frame: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_stops_signing_for_a_stock_client_whose_link_was_revoked() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let id = PeerKey::from_hex(&room.room)?;
    let cand_key = Invite::from_token(&room.candidate, &id, now_ms())?.grant.invite;
    let mut host = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    host.pump(Duration::from_millis(100)).await?;
    let mut stock = stock_types(server.addr, &room.room, &room.candidate, 333_333, "[before]").await?;
    let deadline = tokio::time::Instant::now() + T;
    while !host.text().contains("[before]") {
        ensure!(tokio::time::Instant::now() < deadline, "the host never got the stock edit: {:?}", host.text());
        host.pump(Duration::from_millis(50)).await?;
    }
    ensure!(via_of(&host, 333_333)? == Some(Some(cand_key)), "the stock edit does not name the candidate's grant");
    // The host withdraws the candidate's link: the node closes the stock client ...
    let revocation = host.room_mut().revoke(cand_key, now_ms())?;
    host.send(vec![revocation]).await?;
    let (code, reason) = closed(&mut stock, T).await?;
    ensure!(code == 4403 && reason.contains("removed"), "closed with {code} {reason:?}");
    // ... and refuses the link when it comes back, before signing anything it sends.
    let mut again = stock_types(server.addr, &room.room, &room.candidate, 333_334, "[after]").await?;
    let (code, reason) = closed(&mut again, T).await?;
    ensure!(code == 4403 && reason.contains("removed"), "the revoked link came back: {code} {reason:?}");
    // Whatever reached the host since: the edit after the revocation is not among it, and
    // a late joiner of the node's room holds the edit from before but not the one after.
    host.pump(Duration::from_millis(200)).await?;
    ensure!(!host.text().contains("[after]") && via_of(&host, 333_334)?.is_none(), "{:?}", host.text());
    let mut late = ArenaPeer::connect(server.addr, &room.room, &room.host, "late").await?;
    let deadline = tokio::time::Instant::now() + T;
    while !late.text().contains("[before]") {
        ensure!(tokio::time::Instant::now() < deadline, "the late joiner never caught up: {:?}", late.text());
        late.pump(Duration::from_millis(50)).await?;
    }
    ensure!(late.room().ledger().is_revoked(&cand_key), "the late joiner lacks the revocation");
    ensure!(!late.text().contains("[after]"), "the node signed for the revoked link: {:?}", late.text());
    server.stop().await?;
    Ok(())
}

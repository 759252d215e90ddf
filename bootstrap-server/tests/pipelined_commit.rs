//! The room's group commit is pipelined: stock y-websocket clients get each other's edits
//! as soon as the node has signed them, without waiting for sled's flush. Here every flush
//! after the first is held back for ten minutes (`--commit-interval-ms`); the edits must
//! still go through, one after the other. Nor do they wait for the node's signature: with
//! stock updates signed at most once per ten minutes (`--proxy-batch-ms`) they still go
//! through, and the node signs what it holds when it stops.

mod support;

use std::time::Duration;

use anyhow::{bail, Result};
use arena_core::sync::ywire::decode_frame;
use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMsg, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, Text, Transact};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads until an update that brings `marker` into `doc` arrives.
async fn until_text(ws: &mut Ws, doc: &yrs::Doc, marker: &str) -> Result<()> {
    let text = doc.get_or_insert_text("code");
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Err(_) => bail!("{marker:?} did not arrive (is the relay waiting for the held-back flush?)"),
            Ok(None) => bail!("connection closed"),
            Ok(Some(m)) => m?,
        };
        let Message::Binary(b) = msg else { continue };
        for m in decode_frame(&b)? {
            if let YMsg::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) = m {
                doc.transact_mut().apply_update(yrs::Update::decode_v1(&u)?)?;
            }
        }
        if text.get_string(&doc.transact()).contains(marker) {
            return Ok(());
        }
    }
}

/// Connects a reader that asks for the room's state (sync step 1), as y-websocket clients
/// do: an edit made before the node attached it still reaches it, in the answer.
async fn connect_reader(url: String) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let step1 = YMsg::Sync(SyncMessage::SyncStep1(yrs::StateVector::default())).encode_v1();
    ws.send(Message::Binary(step1.into())).await?;
    Ok(ws)
}

/// The writer types five markers, each once the reader has the one before.
async fn type_five(writer: &mut Ws, reader: &mut Ws, wdoc: &yrs::Doc, rdoc: &yrs::Doc) -> Result<()> {
    let wtext = wdoc.get_or_insert_text("code");
    for i in 0..5 {
        let marker = format!("<edit {i}>");
        let update = {
            let mut txn = wdoc.transact_mut();
            let end = wtext.len(&txn);
            wtext.insert(&mut txn, end, &marker);
            txn.encode_update_v1()
        };
        writer.send(Message::Binary(YMsg::Sync(SyncMessage::Update(update)).encode_v1().into())).await?;
        until_text(reader, rdoc, &marker).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_edits_do_not_wait_for_the_signature() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.proxy_batch_ms = 600_000;
    let server = Server::start_with(cfg.clone()).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let url = |a: std::net::SocketAddr, token: &str| format!("ws://{a}/yws/{}?token={token}", room.room);
    let (mut writer, _) = tokio_tungstenite::connect_async(url(a, &room.candidate)).await?;
    let mut reader = connect_reader(url(a, &room.host)).await?;
    let (wdoc, rdoc) = (yrs::Doc::with_client_id(11), yrs::Doc::with_client_id(12));
    type_five(&mut writer, &mut reader, &wdoc, &rdoc).await?;
    drop((writer, reader));
    // Stopping signs and stores what was still unsigned: a new node on the same data dir
    // serves every edit.
    server.stop().await?;
    // The stopped node's last tasks let go of sled's lock just after `run` returns.
    let sled_dir = dir.path().join("sled");
    for _ in 0..100 {
        if arena_core::SledDb::open(&sled_dir).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = Server::start_with(cfg).await?;
    let mut late = connect_reader(url(server.addr, &room.host)).await?;
    let ldoc = yrs::Doc::with_client_id(13);
    until_text(&mut late, &ldoc, "<edit 4>").await?;
    let writer_clock = wdoc.transact().state_vector().get(&yrs::block::ClientID::new(11));
    assert_eq!(
        ldoc.transact().state_vector().get(&yrs::block::ClientID::new(11)),
        writer_clock,
        "the new node lacks some of the writer's edits"
    );
    drop(late);
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_edits_do_not_wait_for_the_flush() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.commit_interval_ms = 600_000;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let url = |token: &str| format!("ws://{a}/yws/{}?token={token}", room.room);
    let (mut writer, _) = tokio_tungstenite::connect_async(url(&room.candidate)).await?;
    let mut reader = connect_reader(url(&room.host)).await?;
    let (wdoc, rdoc) = (yrs::Doc::with_client_id(11), yrs::Doc::with_client_id(12));
    let wtext = wdoc.get_or_insert_text("code");
    for i in 0..5 {
        let marker = format!("<edit {i}>");
        let update = {
            let mut txn = wdoc.transact_mut();
            let end = wtext.len(&txn);
            wtext.insert(&mut txn, end, &marker);
            txn.encode_update_v1()
        };
        writer.send(Message::Binary(YMsg::Sync(SyncMessage::Update(update)).encode_v1().into())).await?;
        until_text(&mut reader, &rdoc, &marker).await?;
    }
    assert_eq!(
        rdoc.get_or_insert_text("code").get_string(&rdoc.transact()),
        wtext.get_string(&wdoc.transact()),
        "the reader's copy matches the writer's"
    );
    // The reader also holds the room's own records (its sync step 2 brought them).
    let writer_id = yrs::block::ClientID::new(11);
    assert_eq!(rdoc.transact().state_vector().get(&writer_id), wdoc.transact().state_vector().get(&writer_id));
    drop((writer, reader));
    server.stop().await?;
    Ok(())
}

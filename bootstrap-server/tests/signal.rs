//! `/signal` speaks the y-webrtc signaling protocol: fan-out with `clients`, ping/pong,
//! unsubscribe, token enforcement on room topics, limits.

mod support;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, token: Option<&str>) -> Result<Ws> {
    let url = match token {
        Some(t) => format!("ws://{addr}/signal?token={t}"),
        None => format!("ws://{addr}/signal"),
    };
    Ok(tokio_tungstenite::connect_async(url).await?.0)
}

async fn send(ws: &mut Ws, v: Value) -> Result<()> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

/// The next JSON text message.
async fn recv(ws: &mut Ws) -> Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.context("timed out")? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("error: {e}"),
            None => bail!("ended"),
        }
    }
}

/// Subscribes and waits until the server has processed it (a ping after it is answered).
async fn subscribe(ws: &mut Ws, topics: &[&str]) -> Result<Vec<Value>> {
    send(ws, json!({"type": "subscribe", "topics": topics})).await?;
    send(ws, json!({"type": "ping"})).await?;
    let mut errors = Vec::new();
    loop {
        let v = recv(ws).await?;
        if v["type"] == "pong" {
            return Ok(errors);
        }
        errors.push(v);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_ping_unsubscribe_and_tokens() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;

    // Plain topics need no token; publish reaches every subscriber, the sender included.
    let mut a = connect(server.addr, None).await?;
    let mut b = connect(server.addr, None).await?;
    assert!(subscribe(&mut a, &["lobby", "other"]).await?.is_empty());
    assert!(subscribe(&mut b, &["lobby", "other"]).await?.is_empty());
    send(&mut a, json!({"type": "publish", "topic": "lobby", "data": {"sdp": "x"}})).await?;
    for ws in [&mut a, &mut b] {
        let v = recv(ws).await?;
        assert_eq!(v["type"], "publish");
        assert_eq!(v["topic"], "lobby");
        assert_eq!(v["data"]["sdp"], "x");
        assert_eq!(v["clients"], 2);
    }

    // After b unsubscribes, it gets the next "other" message but not the "lobby" one sent first.
    send(&mut b, json!({"type": "unsubscribe", "topics": ["lobby"]})).await?;
    send(&mut b, json!({"type": "ping"})).await?;
    assert_eq!(recv(&mut b).await?["type"], "pong");
    send(&mut a, json!({"type": "publish", "topic": "lobby", "data": 1})).await?;
    send(&mut a, json!({"type": "publish", "topic": "other", "data": 2})).await?;
    let v = recv(&mut b).await?;
    assert_eq!((v["topic"].as_str(), v["data"].as_i64()), (Some("other"), Some(2)), "{v}");
    assert_eq!(recv(&mut a).await?["clients"], 1);

    // Room topics need a token for that room.
    let mut anon = connect(server.addr, None).await?;
    let errs = subscribe(&mut anon, &[&room.room]).await?;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0]["reason"].as_str().unwrap_or("").contains("token"), "{errs:?}");
    let mut bad = connect(server.addr, Some("garbage")).await?;
    let errs = subscribe(&mut bad, &[&room.room]).await?;
    assert!(errs[0]["reason"].as_str().unwrap_or("").contains("invalid token"), "{errs:?}");
    // A token of another room does not open this one.
    let other = create_room(server.addr).await?;
    let mut wrong = connect(server.addr, Some(&other.candidate)).await?;
    assert_eq!(subscribe(&mut wrong, &[&room.room]).await?.len(), 1);
    // Publishing into a room topic without the token is refused too.
    send(&mut anon, json!({"type": "publish", "topic": room.room, "data": 1})).await?;
    assert_eq!(recv(&mut anon).await?["type"], "error");

    let mut good = connect(server.addr, Some(&room.candidate)).await?;
    let mut good2 = connect(server.addr, Some(&room.host)).await?;
    assert!(subscribe(&mut good, &[&room.room]).await?.is_empty());
    assert!(subscribe(&mut good2, &[&room.room]).await?.is_empty());
    send(&mut good, json!({"type": "publish", "topic": room.room, "data": "offer"})).await?;
    let v = recv(&mut good2).await?;
    assert_eq!((v["data"].as_str(), v["clients"].as_i64()), (Some("offer"), Some(2)));
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_garbage() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let mut ws = connect(server.addr, None).await?;
    // Garbage JSON and unknown types get an error; the connection stays usable.
    ws.send(Message::Text("{not json".into())).await?;
    assert_eq!(recv(&mut ws).await?["type"], "error");
    send(&mut ws, json!({"type": "launch-missiles"})).await?;
    assert_eq!(recv(&mut ws).await?["type"], "error");
    send(&mut ws, json!({"type": "publish"})).await?;
    assert_eq!(recv(&mut ws).await?["type"], "error");
    // At most 32 topics per connection.
    let topics: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let errs = subscribe(&mut ws, &refs).await?;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0]["topic"], "t32");
    // Oversized messages close the connection.
    let big = "x".repeat(128 * 1024);
    let _ = send(&mut ws, json!({"type": "publish", "topic": "t1", "data": big})).await;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break true,
            Some(Ok(_)) => continue,
        }
    };
    assert!(closed);
    // Binary frames are not signaling.
    let mut ws2 = connect(server.addr, None).await?;
    ws2.send(Message::Binary(vec![1, 2, 3].into())).await?;
    match tokio::time::timeout(Duration::from_secs(10), ws2.next()).await? {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1003),
        other => bail!("expected a close, got {other:?}"),
    }
    // The server still answers.
    let mut ws3 = connect(server.addr, None).await?;
    send(&mut ws3, json!({"type": "ping"})).await?;
    assert_eq!(recv(&mut ws3).await?["type"], "pong");
    server.stop().await?;
    Ok(())
}

/// A link the host revoked opens no room topic on a new `/signal` connection (open ones are
/// closed by the revocation itself), nor does the link a removed member joined with; the
/// host's link still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_link_is_refused_at_connect() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let mut host = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    let cand = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "cand").await?;
    host.pump(Duration::from_millis(200)).await?;
    let mut before = connect(server.addr, Some(&room.candidate)).await?;
    assert!(subscribe(&mut before, &[&room.room]).await?.is_empty(), "the candidate's link did not open the room");
    // The host removes the candidate (its member key): the link it joined with goes too.
    let revocation = host.room_mut().revoke(cand.room().identity().public(), now_ms())?;
    host.send(vec![revocation]).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut ws = connect(server.addr, Some(&room.candidate)).await?;
        let errs = subscribe(&mut ws, &[&room.room]).await?;
        if errs.len() == 1 {
            let reason = errs[0]["reason"].as_str().unwrap_or("");
            assert!(reason.contains("revoked"), "{errs:?}");
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the removed member's link still opens the room");
        host.pump(Duration::from_millis(50)).await?;
    }
    let mut ws = connect(server.addr, Some(&room.host)).await?;
    assert!(subscribe(&mut ws, &[&room.room]).await?.is_empty(), "the host's link was refused too");
    server.stop().await?;
    Ok(())
}

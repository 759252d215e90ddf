//! Bad input at every HTTP and WebSocket entry point gets a clear error, never a crash,
//! and only the offending connection suffers.

#[path = "support.rs"]
mod support;

use std::time::Duration;

use anyhow::{bail, Result};
use arena_core::sync::ywire::decode_frame;
use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMsg, SyncMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_clear() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let a = server.addr;
    let (s, b) = http(a, "POST", "/api/rooms", "{bad").await?;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("invalid JSON"), "{b}");
    let (s, b) = http(a, "POST", "/api/rooms", r#"{"tilte":"typo"}"#).await?;
    assert_eq!(s, 400, "{b}");
    let long = format!(r#"{{"title":"{}"}}"#, "x".repeat(300));
    assert_eq!(http(a, "POST", "/api/rooms", &long).await?.0, 400);
    assert_eq!(http(a, "POST", "/api/rooms", &"x".repeat(100 * 1024)).await?.0, 413);
    assert_eq!(http(a, "POST", "/api/rooms", "").await?.0, 201);

    let room = create_room(a).await?;
    let other = create_room(a).await?;
    assert_eq!(http(a, "GET", "/api/rooms/zzzz?token=x", "").await?.0, 404);
    // A well-formed id of a room hosted elsewhere may exist in the federation: the token
    // decides (missing: 401, not for that room: 403).
    assert_eq!(http(a, "GET", &format!("/api/rooms/{}", "ab".repeat(32)), "").await?.0, 401);
    assert_eq!(http(a, "GET", &format!("/api/rooms/{}?token={}", "ab".repeat(32), room.host), "").await?.0, 403);
    let (s, b) = http(a, "GET", &format!("/api/rooms/{}", room.room), "").await?;
    assert_eq!(s, 401, "{b}");
    assert_eq!(http(a, "GET", &format!("/api/rooms/{}?token=nope", room.room), "").await?.0, 403);
    assert_eq!(http(a, "GET", &format!("/api/rooms/{}?token={}", room.room, other.host), "").await?.0, 403);
    assert_eq!(http(a, "GET", &format!("/api/rooms/{}?token={}", room.room, room.observer), "").await?.0, 200);
    let (s, b) = http(a, "GET", "/no/such/thing", "").await?;
    assert_eq!(s, 404);
    assert!(b.contains("error"));
    assert_eq!(http(a, "GET", "/health", "").await?.0, 200);
    let (s, b) = http(a, "GET", "/api/ice", "").await?;
    assert_eq!(s, 200);
    assert!(b.contains("iceServers"));
    server.stop().await?;
    Ok(())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads until the server closes; returns the close code and any auth-denied reason seen.
async fn until_closed(ws: &mut Ws) -> Result<(Option<u16>, Option<String>)> {
    let mut denied = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Binary(b))) => {
                for m in decode_frame(&b)? {
                    if let YMsg::Auth(Some(r)) = m {
                        denied = Some(r);
                    }
                }
            }
            Some(Ok(Message::Close(f))) => return Ok((f.map(|f| u16::from(f.code)), denied)),
            None | Some(Err(_)) => return Ok((None, denied)),
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for the first sync step 1 from the server (the connection works).
async fn synced(ws: &mut Ws) -> Result<()> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Binary(b))) => {
                if decode_frame(&b)?
                    .iter()
                    .any(|m| matches!(m, YMsg::Sync(SyncMessage::SyncStep1(_)) | YMsg::Sync(SyncMessage::SyncStep2(_))))
                {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            other => bail!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yws_refuses_and_isolates_bad_connections() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    // Low enough that 5000 messages trip it however slowly this machine sends them.
    cfg.rate_limit = 20;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let url = |token: &str| format!("ws://{a}/yws/{}?token={token}", room.room);

    // Unknown room and bad tokens: a permission-denied message, then a close.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/yws/{}?token=x", "cd".repeat(32))).await?;
    let (code, denied) = until_closed(&mut ws).await?;
    assert_eq!(code, Some(4403));
    assert!(denied.unwrap_or_default().contains("invalid token"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url("garbage")).await?;
    let (code, denied) = until_closed(&mut ws).await?;
    assert_eq!(code, Some(4403));
    assert!(denied.unwrap_or_default().contains("invalid token"));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/yws/{}", room.room)).await?;
    assert_eq!(until_closed(&mut ws).await?.0, Some(4403));

    // A good connection stays up while bad ones are closed.
    let (mut good, _) = tokio_tungstenite::connect_async(url(&room.host)).await?;
    synced(&mut good).await?;
    for garbage in [vec![0u8, 9, 9, 9], vec![0xff; 20], vec![0, 1, 200, 200, 200, 1], vec![100, 5, 1, 2]] {
        let (mut bad, _) = tokio_tungstenite::connect_async(url(&room.candidate)).await?;
        bad.send(Message::Binary(garbage.clone().into())).await?;
        let (code, _) = until_closed(&mut bad).await?;
        assert_eq!(code, Some(4400), "garbage {garbage:?}");
    }
    let (mut text, _) = tokio_tungstenite::connect_async(url(&room.candidate)).await?;
    text.send(Message::Text("hello".into())).await?;
    assert_eq!(until_closed(&mut text).await?.0, Some(1003));

    // Flooding trips the rate limit (20/s sustained, bursts of 80).
    let (mut flood, _) = tokio_tungstenite::connect_async(url(&room.candidate)).await?;
    let mut closed = false;
    for _ in 0..5000 {
        if flood.send(Message::Binary(vec![3u8].into())).await.is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        let (code, _) = until_closed(&mut flood).await?;
        // The close frame may be lost to a reset while we are still writing.
        assert!(matches!(code, Some(4429) | None), "{code:?}");
    }
    let (_, metrics) = http(a, "GET", "/metrics", "").await?;
    let limited: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("arena_rate_limited_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(limited >= 1, "{metrics}");

    // The good connection still works: ask for awareness, get an answer.
    good.send(Message::Binary(vec![3u8].into())).await?;
    let got = loop {
        match tokio::time::timeout(Duration::from_secs(10), good.next()).await? {
            Some(Ok(Message::Binary(b))) if decode_frame(&b)?.iter().any(|m| matches!(m, YMsg::Awareness(_))) => {
                break true
            }
            Some(Ok(_)) => continue,
            other => bail!("good connection broke: {other:?}"),
        }
    };
    assert!(got);
    server.stop().await?;
    Ok(())
}

//! Bad input at every HTTP and WebSocket entry point gets a clear error, never a crash,
//! and only the offending connection suffers.

mod support;

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
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
    assert!(gauge(a, "rate_limited_total").await? >= 1, "no connection was rate limited");

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

/// A WebSocket handshake by hand; returns the socket and the response head.
async fn raw_upgrade(a: std::net::SocketAddr, path: &str, extra: &str) -> Result<(tokio::net::TcpStream, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(a).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await?? == 0 {
            break;
        }
        head.push(b[0]);
    }
    Ok((s, String::from_utf8_lossy(&head).into_owned()))
}

/// Server frames until the server closes the socket: (opcode, payload) each.
async fn server_frames(s: &mut tokio::net::TcpStream) -> Result<Vec<(u8, Vec<u8>)>> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await??;
    let mut frames = Vec::new();
    let mut p = 0;
    while p + 2 <= all.len() {
        let (op, len7) = (all[p] & 0x0F, (all[p + 1] & 0x7F) as usize);
        assert_eq!(all[p + 1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match len7 {
            126 => (u16::from_be_bytes([all[p + 2], all[p + 3]]) as usize, p + 4),
            127 => bail!("unexpected 64-bit length from the server"),
            n => (n, p + 2),
        };
        frames.push((op, all[at..at + len].to_vec()));
        p = at + len;
    }
    Ok(frames)
}

fn close_code(frames: &[(u8, Vec<u8>)]) -> Option<u16> {
    frames.iter().find(|(op, _)| *op == 8).and_then(|(_, p)| p.get(..2)).map(|c| u16::from_be_bytes([c[0], c[1]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yws_refuses_broken_websocket_frames_and_handshakes() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let path = format!("/yws/{}?token={}", room.room, room.candidate);
    let ok_headers = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    // Handshakes that are not WebSocket version 13 with a key.
    let (_, head) = raw_upgrade(a, &path, "Sec-WebSocket-Version: 13\r\n").await?;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let (_, head) =
        raw_upgrade(a, &path, "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n").await?;
    assert!(
        head.starts_with("HTTP/1.1 426") && head.to_ascii_lowercase().contains("sec-websocket-version: 13"),
        "{head}"
    );

    // The RFC 6455 example key gets the RFC's accept value.
    let (mut s, head) = raw_upgrade(a, &path, ok_headers).await?;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // A ping in pieces gets its pong; a close gets its code echoed, then the socket closes.
    let ping = [0x89u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    for b in ping {
        s.write_all(&[b]).await?;
        s.flush().await?;
    }
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).await?;
    let frames = server_frames(&mut s).await?;
    assert!(frames.contains(&(10, b"hi".to_vec())), "{frames:?}");
    assert_eq!(close_code(&frames), Some(1000), "{frames:?}");

    // An unmasked client frame: protocol error.
    let (mut s, _) = raw_upgrade(a, &path, ok_headers).await?;
    s.write_all(&[0x82, 0x01, 0x00]).await?;
    assert_eq!(close_code(&server_frames(&mut s).await?), Some(1002));
    // A header announcing 1 GiB: refused at once, before any payload.
    let (mut s, _) = raw_upgrade(a, &path, ok_headers).await?;
    let mut h = vec![0x82, 0xFF];
    h.extend_from_slice(&(1u64 << 30).to_be_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&h).await?;
    assert_eq!(close_code(&server_frames(&mut s).await?), Some(1009));
    // Invalid UTF-8 text: 1007.
    let (mut s, _) = raw_upgrade(a, &path, ok_headers).await?;
    s.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xFF, 0xFE]).await?;
    assert_eq!(close_code(&server_frames(&mut s).await?), Some(1007));
    // Half a frame, then the client vanishes: nothing to answer, nothing breaks.
    let (mut s, _) = raw_upgrade(a, &path, ok_headers).await?;
    s.write_all(&[0x82, 0xFE, 0x10]).await?;
    drop(s);

    // The node is fine: a stock client still syncs.
    let (mut good, _) = tokio_tungstenite::connect_async(format!("ws://{a}{path}")).await?;
    synced(&mut good).await?;
    // Shutting down tells connected clients why (1001, going away).
    let stopping = tokio::spawn(server.stop());
    assert_eq!(until_closed(&mut good).await?.0, Some(1001));
    stopping.await??;
    Ok(())
}

/// A client that stops reading is cut off once its queue is full (it would resync on
/// reconnect) instead of being buffered for without bound; the others carry on. The room's
/// first connection is served by the room's own task, the others by tasks of their own:
/// both ways are tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_the_others_carry_on() -> Result<()> {
    slow_reader_is_dropped(true).await.context("the slow client served by the room's task")?;
    slow_reader_is_dropped(false).await.context("the slow client served by a task of its own")
}

/// Polls a gauge until it reads `want` (10 s at most).
async fn gauge_reaches(a: std::net::SocketAddr, name: &str, want: u64) -> Result<()> {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while gauge(a, name).await? != want {
        if tokio::time::Instant::now() > until {
            bail!("{name} never read {want} (reads {})", gauge(a, name).await?);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn slow_reader_is_dropped(slow_first: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.rate_limit = 1_000_000;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let path = format!("/yws/{}?token={}", room.room, room.candidate);
    let headers = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let mut fast = None;
    if !slow_first {
        fast = Some(tokio_tungstenite::connect_async(format!("ws://{a}{path}")).await?.0);
        gauge_reaches(a, "connections_inline", 1).await?;
    }
    let (slow, head) = raw_upgrade(a, &path, headers).await?;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    gauge_reaches(a, "connections_active", 1 + u64::from(!slow_first)).await?;
    assert_eq!(gauge(a, "connections_inline").await?, 1, "the room serves one connection itself");
    let fast = match fast {
        Some(f) => f,
        None => tokio_tungstenite::connect_async(format!("ws://{a}{path}")).await?.0,
    };
    let (mut sink, mut stream) = fast.split();
    // The fast client reads everything (the room echoes awareness to its sender too).
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Binary(_)) {
                n += 1;
                let _ = seen_tx.send(n);
            }
        }
    });
    let pad = "x".repeat(16_000);
    let mut dropped = 0;
    let base = *seen.borrow();
    for clock in 1..=4000u32 {
        sink.send(Message::Binary(awareness_msg(7, clock, &format!("{{\"pad\":\"{pad}\"}}"))?.into())).await?;
        // The fast client reads what it is sent before it sends more (one that floods
        // faster than it reads is a slow consumer too, and is dropped like one).
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|n| *n >= base + u64::from(clock))).await??;
        if clock % 100 == 0 {
            dropped = gauge(a, "frames_dropped_slow_total").await?;
            if dropped > 0 {
                break;
            }
        }
    }
    assert!(dropped >= 1, "the client that never reads was not dropped");
    // The fast one still gets what it sends (awareness comes back to the sender).
    let before = *seen.borrow();
    sink.send(Message::Binary(awareness_msg(7, 5000, "{\"name\":\"still here\"}")?.into())).await?;
    tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|n| *n > before)).await??;
    // The dropped client, once it reads, finds what the kernel buffered, then why it was
    // dropped (its close reason overtook the frames queued for it), then the end.
    let mut slow = slow;
    let frames = server_frames(&mut slow).await?;
    let (op, payload) = frames.last().cloned().unwrap_or_default();
    assert_eq!(op, 8, "the last frame is a close");
    assert_eq!(payload.get(..2), Some(&4400u16.to_be_bytes()[..]));
    assert!(String::from_utf8_lossy(&payload).contains("too slow"), "{payload:?}");
    drop(slow);
    let _ = sink.close().await;
    let _ = reader.await;
    // Both gone: no connection is left counted, inline or not.
    gauge_reaches(a, "connections_active", 0).await?;
    gauge_reaches(a, "connections_inline", 0).await?;
    server.stop().await?;
    Ok(())
}

//! The edges of `/yws` and `/signal` connections: deadlines (a client that stops in the
//! middle of a message, one that goes silent and answers no ping), caps per invite link,
//! the handshake's key, and the close codes a client may send.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A WebSocket handshake by hand with `key`; returns the socket, the status and the
/// response's head and body (the body only when the upgrade was refused).
async fn raw_upgrade(a: SocketAddr, path: &str, key: &str) -> Result<(TcpStream, u16, String)> {
    let mut s = TcpStream::connect(a).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {a}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await?? == 0 {
            bail!("the server closed during the handshake: {}", String::from_utf8_lossy(&head));
        }
        head.push(b[0]);
    }
    let mut text = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = text.get(9..12).context("no status")?.parse()?;
    if status != 101 {
        let len = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body)).await??;
        text.push_str(&String::from_utf8_lossy(&body));
    }
    Ok((s, status, text))
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut v = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => v.push(0x80 | n as u8),
        n => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

/// The server's frames until it closes the socket (10 s at most): (opcode, payload) each.
async fn frames_until_closed(s: &mut TcpStream) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .context("the server did not close the connection within 10 s")??;
    parse_frames(&all)
}

/// Server frames (unmasked) back into (opcode, payload).
fn parse_frames(all: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let mut p = 0;
    while p + 2 <= all.len() {
        let (op, len7) = (all[p] & 0x0F, usize::from(all[p + 1] & 0x7F));
        let (len, at) = match len7 {
            126 => (usize::from(u16::from_be_bytes([all[p + 2], all[p + 3]])), p + 4),
            127 => bail!("unexpected 64-bit length from the server"),
            n => (n, p + 2),
        };
        frames.push((op, all.get(at..at + len).context("a frame cut short")?.to_vec()));
        p = at + len;
    }
    Ok(frames)
}

/// The close frame's code and reason.
fn close_of(frames: &[(u8, Vec<u8>)]) -> Option<(u16, String)> {
    let (_, p) = frames.iter().find(|(op, _)| *op == 8)?;
    let code = u16::from_be_bytes([*p.first()?, *p.get(1)?]);
    Some((code, String::from_utf8_lossy(&p[2..]).into_owned()))
}

/// Polls a gauge until it reads `want` (10 s at most).
async fn gauge_reaches(a: SocketAddr, name: &str, want: u64) -> Result<()> {
    wait_for(Duration::from_secs(10), "the gauge reaches its value", || async {
        Ok((gauge(a, name).await? == want).then_some(()))
    })
    .await
    .with_context(|| format!("{name} never read {want}"))
}

/// A y-protocols sync step 1 with an empty state vector: the room answers with a step 2
/// (which it sends no other time: its start frames are a step 1).
const SYNC_STEP_1: [u8; 4] = [0, 0, 1, 0];

fn is_step_2(b: &[u8]) -> bool {
    b.starts_with(&[0, 1])
}

/// The connection answers: a sync step 1 gets its step 2.
async fn answers(ws: &mut Ws) -> Result<()> {
    ws.send(Message::Binary(SYNC_STEP_1.to_vec().into())).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Binary(b))) if is_step_2(&b) => return Ok(()),
            Some(Ok(_)) => {}
            other => bail!("the connection ended: {other:?}"),
        }
    }
}

/// Deadlines far away, but for the ones a test sets.
fn config(dir: &std::path::Path) -> arena_bootstrap::Config {
    let mut cfg = arena_bootstrap::Config::for_tests(dir);
    cfg.ws_ping_ms = 600_000;
    cfg.ws_idle_timeout_ms = 1_200_000;
    cfg.ws_read_timeout_ms = 600_000;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sec_websocket_key_that_is_not_16_bytes_of_base64_is_refused_with_400() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let yws = format!("/yws/{}?token={}", room.room, room.candidate);
    for path in [yws.as_str(), "/signal"] {
        for key in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25jZQ",   // 16 bytes without the padding
            "AAAAAAAAAAAAAAAAAAAA",     // 15 bytes
            "AAAAAAAAAAAAAAAAAAAAAAA=", // 17 bytes
            "AAAAAAAAAAAAAAAAAAAAAAAA", // 18 bytes
            "!!!!!!!!!!!!!!!!!!!!!!==",
        ] {
            let (_, status, text) = raw_upgrade(a, path, key).await?;
            ensure!(status == 400, "{path} with key {key:?}: {text}");
            ensure!(text.contains("Sec-WebSocket-Key"), "{path} with key {key:?}: {text}");
        }
        let (_, status, text) = raw_upgrade(a, path, "AAAAAAAAAAAAAAAAAAAAAA==").await?;
        ensure!(status == 101, "{path}: a 16-byte key: {text}");
    }
    server.stop().await
}

/// 1012 (service restart), 1013 (try again later) and 1014 (bad gateway) are close codes a
/// peer may send (IANA's registry, after RFC 6455's list); 1015 and 1004 are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_1012_to_1014_are_echoed_and_reserved_ones_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let path = format!("/yws/{}?token={}", room.room, room.candidate);
    for (sent, want) in [(1012u16, 1012u16), (1013, 1013), (1014, 1014), (1015, 1002), (1004, 1002)] {
        let (mut s, status, _) = raw_upgrade(a, &path, KEY).await?;
        ensure!(status == 101);
        s.write_all(&client_frame(8, &sent.to_be_bytes())).await?;
        let frames = frames_until_closed(&mut s).await?;
        let code = close_of(&frames).map(|(c, _)| c);
        ensure!(code == Some(want), "a close with {sent} was answered with {code:?}");
    }
    server.stop().await
}

/// A client that stops in the middle of a frame (its first 100 bytes of 1,000 sent) is
/// dropped once the read deadline passes, with a close frame that says why; so is one that
/// trickles a frame's bytes slower than the deadline allows for the whole frame, although
/// bytes keep coming. Tried on the room's own connection and on a session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_mid_frame_is_dropped_after_the_read_deadline() -> Result<()> {
    for (inline, trickle) in [(true, false), (false, false), (true, true)] {
        stalled_mid_frame(inline, trickle).await.with_context(|| format!("inline {inline}, trickle {trickle}"))?;
    }
    Ok(())
}

async fn stalled_mid_frame(inline: bool, trickle: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.ws_read_timeout_ms = 300;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let path = format!("/yws/{}?token={}", room.room, room.candidate);
    let mut good = None;
    if !inline {
        good = Some(tokio_tungstenite::connect_async(format!("ws://{a}{path}")).await?.0);
        gauge_reaches(a, "connections_inline", 1).await?;
    }
    let (mut s, status, _) = raw_upgrade(a, &path, KEY).await?;
    ensure!(status == 101);
    gauge_reaches(a, "connections_active", 1 + u64::from(!inline)).await?;
    let frame = client_frame(2, &[0u8; 1000]);
    let (mut rd, mut wr) = s.split();
    // Until the server ends the connection. A client still trickling bytes when the server
    // closes makes the server's kernel answer them with a reset, which can reach us before
    // the close frame does: then what was read before the reset counts.
    let reading = async {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut reset = false;
        let read = async {
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => return anyhow::Ok(()),
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        reset = true;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .context("the server did not close the connection within 10 s")??;
        anyhow::Ok((all, reset))
    };
    let writing = async {
        if trickle {
            // A byte every 50 ms: never 300 ms without one, never the whole frame.
            for b in &frame[..frame.len() - 1] {
                if wr.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            wr.write_all(&frame[..100]).await?;
        }
        anyhow::Ok(())
    };
    // (The writes may fail once the server has dropped the connection.)
    let (read, _) = tokio::join!(reading, writing);
    let (all, reset) = read?;
    let frames = parse_frames(&all)?;
    match close_of(&frames) {
        Some((code, reason)) => ensure!(code == 4408 && reason.contains("whole"), "closed with {code} {reason:?}"),
        // Reset before the close frame arrived: the node's count below says why it closed.
        None => ensure!(reset, "the connection ended without a close frame"),
    }
    gauge_reaches(a, "connections_active", u64::from(!inline)).await?;
    ensure!(gauge(a, "connections_timed_out_total").await? == 1);
    if let Some(mut good) = good {
        answers(&mut good).await.context("the other connection")?;
    }
    server.stop().await
}

/// A client that says nothing gets pings; one that answers them stays, one that does not
/// (a half-open connection looks the same: nothing comes back) is dropped once nothing has
/// come from it for the idle deadline. `/yws` (served from a session task and by the room's
/// own task), and `/signal` the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_pinged_and_dropped_when_it_does_not_answer() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.ws_ping_ms = 200;
    cfg.ws_idle_timeout_ms = 2_000;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let path = format!("/yws/{}?token={}", room.room, room.candidate);

    // The client that answers (tungstenite answers pings while it reads), connected first.
    let (answering, _) = tokio_tungstenite::connect_async(format!("ws://{a}{path}")).await?;
    let (mut sink, mut stream) = answering.split();
    let (pings_tx, pings) = tokio::sync::watch::channel(0u32);
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Ping(_) => {
                    n += 1;
                    let _ = pings_tx.send(n);
                }
                Message::Binary(b) if is_step_2(&b) => {
                    // The answer to its sync step 1: a million, to tell it apart.
                    let _ = pings_tx.send(1_000_000);
                }
                _ => {}
            }
        }
    });
    // Silent on the answering client's room (a session task), alone in a room of its own
    // (the room's inline connection), and on /signal.
    let other = create_room(a).await?;
    let alone = format!("/yws/{}?token={}", other.room, other.candidate);
    for path in [path.as_str(), alone.as_str(), "/signal"] {
        let (mut silent, status, _) = raw_upgrade(a, path, KEY).await?;
        ensure!(status == 101);
        let frames = frames_until_closed(&mut silent).await.with_context(|| format!("the silent client on {path}"))?;
        ensure!(frames.iter().any(|(op, _)| *op == 9), "{path}: no ping before the close: {frames:?}");
        let (code, reason) = close_of(&frames).with_context(|| format!("{path}: no close frame"))?;
        ensure!(code == 4408 && reason.contains("ping"), "{path}: closed with {code} {reason:?}");
    }
    ensure!(gauge(a, "connections_timed_out_total").await? == 3);
    ensure!(gauge(a, "ws_pings_total").await? >= 4);
    // The answering client has been there through two idle deadlines and is still served.
    ensure!(*pings.borrow() >= 1, "the answering client got no ping");
    ensure!(gauge(a, "connections_active").await? == 1, "the answering client was dropped");
    sink.send(Message::Binary(SYNC_STEP_1.to_vec().into())).await?;
    let mut pings = pings;
    tokio::time::timeout(Duration::from_secs(10), pings.wait_for(|n| *n == 1_000_000)).await??;
    let _ = sink.close().await;
    let _ = reader.await;
    server.stop().await
}

/// With at most 2 connections per invite link, a third with the same link is refused with a
/// clear error (`/yws`: 429 before the upgrade; `/signal`: an error for the room topic),
/// another link is not, and a place comes back when a connection leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_connection_with_one_invite_link_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.yws_max_per_token = 2;
    cfg.signal_max_per_token = 2;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let room = create_room(a).await?;
    let url = |token: &str| format!("ws://{a}/yws/{}?token={token}", room.room);
    let path = format!("/yws/{}?token={}", room.room, room.candidate);

    let mut first = tokio_tungstenite::connect_async(url(&room.candidate)).await?.0;
    let mut second = tokio_tungstenite::connect_async(url(&room.candidate)).await?.0;
    let (_, status, text) = raw_upgrade(a, &path, KEY).await?;
    ensure!(status == 429 && text.contains("at most 2 y-websocket connections per invite link"), "{text}");
    let mut host = tokio_tungstenite::connect_async(url(&room.host)).await?.0;
    answers(&mut host).await?;
    answers(&mut second).await?;
    first.close(None).await?;
    while first.next().await.is_some() {}
    wait_for(Duration::from_secs(10), "a slot frees for a new upgrade", || async {
        let (_, status, _) = raw_upgrade(a, &path, KEY).await?;
        Ok((status == 101).then_some(()))
    })
    .await
    .context("the place of the connection that left")?;

    let signal = || async {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{a}/signal?token={}", room.candidate)).await?;
        anyhow::Ok(ws)
    };
    let (mut s1, mut s2, mut s3) = (signal().await?, signal().await?, signal().await?);
    ensure!(subscribe(&mut s1, &[&room.room]).await?.is_empty());
    ensure!(subscribe(&mut s2, &[&room.room]).await?.is_empty());
    let errs = subscribe(&mut s3, &[&room.room, "lobby"]).await?;
    ensure!(errs.len() == 1, "{errs:?}");
    ensure!(errs[0]["topic"] == room.room.as_str(), "{errs:?}");
    let reason = errs[0]["reason"].as_str().unwrap_or_default();
    ensure!(reason.contains("at most 2 signaling connections per invite link"), "{reason}");
    let mut h = tokio_tungstenite::connect_async(format!("ws://{a}/signal?token={}", room.host)).await?.0;
    ensure!(subscribe(&mut h, &[&room.room]).await?.is_empty(), "another link was refused");
    server.stop().await
}

/// Subscribes and waits until the server has processed it (a ping after it is answered);
/// returns the errors it got.
async fn subscribe(ws: &mut Ws, topics: &[&str]) -> Result<Vec<Value>> {
    ws.send(Message::Text(json!({"type": "subscribe", "topics": topics}).to_string().into())).await?;
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await?;
    let mut errors = Vec::new();
    loop {
        let v: Value = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t)?,
            Some(Ok(_)) => continue,
            other => bail!("the connection ended: {other:?}"),
        };
        if v["type"] == "pong" {
            return Ok(errors);
        }
        errors.push(v);
    }
}

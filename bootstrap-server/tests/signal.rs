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

/// Sends a ping and returns what `ws` got before its pong (the server handles a connection's
/// messages in order, so everything caused by what was sent before is in the list).
async fn until_pong(ws: &mut Ws) -> Result<Vec<Value>> {
    send(ws, json!({"type": "ping"})).await?;
    let mut got = Vec::new();
    loop {
        let v = recv(ws).await?;
        if v["type"] == "pong" {
            return Ok(got);
        }
        got.push(v);
    }
}

/// Subscribes and waits until the server has processed it; returns the errors.
async fn subscribe(ws: &mut Ws, topics: &[&str]) -> Result<Vec<Value>> {
    send(ws, json!({"type": "subscribe", "topics": topics})).await?;
    until_pong(ws).await
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

/// Publishes `data` on `topic` from `ws`; returns what came back before the pong (errors,
/// and the publish itself when `ws` is among the recipients).
async fn publish(ws: &mut Ws, topic: &str, data: Value) -> Result<Vec<Value>> {
    send(ws, json!({"type": "publish", "topic": topic, "data": data})).await?;
    until_pong(ws).await
}

/// Everything `ws` has been sent until now.
async fn drain(ws: &mut Ws) -> Result<Vec<Value>> {
    until_pong(ws).await
}

/// The call (docs/call.md): offers, answers and ICE go to their one recipient; the node
/// stamps the role on a hello; observers receive the call but never offer media, and never
/// see the others' addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_is_addressed_and_observers_only_receive() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let r = room.room.as_str();
    let mut host = connect(server.addr, Some(&room.host)).await?;
    let mut cand = connect(server.addr, Some(&room.candidate)).await?;
    let mut obs = connect(server.addr, Some(&room.observer)).await?;
    for ws in [&mut host, &mut cand, &mut obs] {
        assert!(subscribe(ws, &[r]).await?.is_empty());
    }

    // A candidate claiming to be the host in its hello is stamped as what its invite says.
    assert!(publish(&mut cand, r, json!({"type": "arena-call-hello", "from": "c", "role": "host", "media": true}))
        .await?
        .iter()
        .all(|v| v["type"] == "publish"));
    for ws in [&mut host, &mut obs] {
        let got = drain(ws).await?;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["data"]["role"], "candidate", "{got:?}");
        assert_eq!(got[0]["data"]["media"], true);
    }
    // The observer's hello: role observer, media false whatever it says.
    let echo =
        publish(&mut obs, r, json!({"type": "arena-call-hello", "from": "o", "role": "host", "media": true})).await?;
    assert!(echo.iter().all(|v| v["type"] == "publish"), "{echo:?}");
    let got = drain(&mut host).await?;
    assert_eq!((got[0]["data"]["role"].as_str(), got[0]["data"]["media"].as_bool()), (Some("observer"), Some(false)));
    drain(&mut cand).await?;
    assert!(publish(&mut host, r, json!({"type": "arena-call-hello", "from": "h", "media": true, "to": "c"}))
        .await?
        .is_empty());
    assert_eq!(drain(&mut cand).await?.len(), 1);
    assert!(drain(&mut obs).await?.is_empty(), "a hello addressed to c reached the observer");

    // An offer from the host to the candidate reaches the candidate alone.
    let offer = json!({"type": "arena-call-offer", "from": "h", "to": "c", "sdp": "v=0 host-offer"});
    assert!(publish(&mut host, r, offer).await?.is_empty(), "the offer came back to its sender");
    let got = drain(&mut cand).await?;
    assert_eq!((got.len(), got[0]["data"]["sdp"].as_str()), (1, Some("v=0 host-offer")), "{got:?}");
    assert!(drain(&mut obs).await?.is_empty(), "the observer saw the host's offer to the candidate");
    // An offer to the observer reaches it (it receives the call)...
    let offer = json!({"type": "arena-call-offer", "from": "h", "to": "o", "sdp": "v=0 sendonly"});
    assert!(publish(&mut host, r, offer).await?.is_empty());
    let got = drain(&mut obs).await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(drain(&mut cand).await?.is_empty());
    // ...and it may answer and send candidates to the host, addressed.
    for data in [
        json!({"type": "arena-call-answer", "from": "o", "to": "h", "sdp": "v=0 recvonly"}),
        json!({"type": "arena-call-ice", "from": "o", "to": "h", "candidate": null}),
    ] {
        assert!(publish(&mut obs, r, data).await?.is_empty());
    }
    assert_eq!(drain(&mut host).await?.len(), 2);
    assert!(drain(&mut cand).await?.is_empty());

    // Refused: an observer's offer (it would send media), an addressed message without a `to`,
    // an unknown call type, and a plain (non-call) publish from the observer.
    let refused = [
        (true, json!({"type": "arena-call-offer", "from": "o", "to": "h", "sdp": "v=0"}), "never offer media"),
        (false, json!({"type": "arena-call-offer", "from": "c", "sdp": "v=0"}), "`to`"),
        (false, json!({"type": "arena-call-ice", "to": "h", "candidate": null}), "`from`"),
        (false, json!({"type": "arena-call-dial", "from": "c"}), "unknown call message"),
    ];
    for (by_observer, data, why) in refused {
        let ws = if by_observer { &mut obs } else { &mut cand };
        let got = publish(ws, r, data.clone()).await?;
        assert_eq!(got.len(), 1, "{data}: {got:?}");
        assert_eq!(got[0]["type"], "error", "{data}: {got:?}");
        assert!(got[0]["reason"].as_str().unwrap_or("").contains(why), "{data}: {got:?}");
        assert!(got[0].get("topic").is_none(), "a call refusal must not read as a refused token: {got:?}");
    }
    let got = publish(&mut obs, r, json!({"type": "arena-offer", "from": "o", "sdp": "v=0"})).await?;
    assert_eq!((got[0]["type"].as_str(), got[0]["topic"].as_str()), (Some("error"), Some(r)), "{got:?}");
    // The observer may not speak for another `from` either.
    let got = publish(&mut obs, r, json!({"type": "arena-call-answer", "from": "c", "to": "h", "sdp": "x"})).await?;
    assert_eq!(got[0]["type"], "error", "{got:?}");
    for ws in [&mut host, &mut cand] {
        assert!(drain(ws).await?.is_empty(), "a refused call message was forwarded");
    }
    // A message to someone who is not there goes nowhere (and is not an error).
    assert!(publish(&mut cand, r, json!({"type": "arena-call-ice", "from": "c", "to": "gone", "candidate": null}))
        .await?
        .is_empty());
    for ws in [&mut host, &mut obs] {
        assert!(drain(ws).await?.is_empty());
    }
    // A bye is a broadcast the observer sees.
    publish(&mut cand, r, json!({"type": "arena-call-bye", "from": "c"})).await?;
    assert_eq!(drain(&mut obs).await?[0]["data"]["type"], "arena-call-bye");
    server.stop().await?;
    Ok(())
}

/// `/api/ice`: a member gets a TURN credential minted for its room (the TURN REST API
/// convention, checked here the way coturn checks it); a stranger gets no TURN server, and a
/// wrong token is refused rather than silently answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_mints_turn_credentials_for_members_only() -> Result<()> {
    use base64::Engine as _;
    use hmac_sha1::Mac as _;
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.ice_servers = vec!["stun:stun.example.org:3478".into()];
    cfg.turn.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
    cfg.turn.turn_secret = Some("a-turn-secret-of-some-length".parse().map_err(anyhow::Error::msg)?);
    cfg.turn.turn_ttl_s = 600;
    let server = Server::start_with(cfg).await?;
    let room = create_room(server.addr).await?;

    let (status, body) = http(server.addr, "GET", "/api/ice", "").await?;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    assert_eq!(v["iceServers"].as_array().map(Vec::len), Some(1), "a stranger got TURN: {v}");
    assert_eq!(v["iceServers"][0]["urls"], "stun:stun.example.org:3478");

    for token in [&room.candidate, &room.observer] {
        let (status, body) =
            http(server.addr, "GET", &format!("/api/ice?room={}&token={token}", room.room), "").await?;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body)?;
        let turn = &v["iceServers"][1];
        assert_eq!(turn["urls"][0], "turn:127.0.0.1:3478?transport=udp", "{v}");
        let user = turn["username"].as_str().context("username")?;
        let (expiry, label) = user.split_once(':').context("expiry:label")?;
        let expiry: u64 = expiry.parse()?;
        let now = arena_testkit::now_ms() / 1000;
        assert!((now + 590..=now + 610).contains(&expiry), "expiry {expiry}, now {now}");
        assert!(label.starts_with(&room.room[..16]), "{label}");
        let mut mac = hmac_sha1::Hmac::<sha1::Sha1>::new_from_slice(b"a-turn-secret-of-some-length")?;
        mac.update(user.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(turn["credential"], want.as_str());
    }
    let (status, body) = http(server.addr, "GET", &format!("/api/ice?room={}&token=garbage", room.room), "").await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(server.addr, "GET", &format!("/api/ice?room={}", room.room), "").await?;
    assert_eq!(status, 400, "{body}");
    server.stop().await?;
    Ok(())
}

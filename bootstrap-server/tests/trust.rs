//! Issue 21, the node's side, tried as an attacker would over real sockets: observers are
//! read-only on `/yws` (item 6); `/signal` binds `from` to its connection, lets only writers
//! publish, keeps ICE and SDP from observers and caps connections (item 10); the rooms API
//! wants an operator token off loopback, JSON bodies and a per-IP rate, and secrets at rest
//! are private (item 9); a connection ends when its invite expires (item 4).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arena_core::sync::wire::{chunk, Wire, GOSSIP_CHUNK};
use arena_core::sync::ywire::{arena_frame, decode_frame, encode_frame};
use arena_core::{Identity, MemoryStore, PeerKey, Room, RoomConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{GetString, ReadTxn, StateVector, Text, Transact};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

// ---- item 6: observers are read-only on /yws ---------------------------------------------

async fn send_bin(ws: &mut Ws, frame: Vec<u8>) -> Result<()> {
    ws.send(Message::Binary(frame.into())).await?;
    Ok(())
}

/// Reads y-protocols frames until one holds a sync step 2; returns it and the auth
/// (permission denied) reasons seen on the way.
async fn until_step2(ws: &mut Ws) -> Result<(Vec<u8>, Vec<String>)> {
    let mut denied = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.context("no sync step 2")?;
        let bytes = match msg {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?} (auth messages: {denied:?})"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("socket error: {e}"),
            None => bail!("socket ended"),
        };
        for m in decode_frame(&bytes)? {
            match m {
                YMessage::Sync(SyncMessage::SyncStep2(u)) => return Ok((u, denied)),
                YMessage::Auth(Some(reason)) => denied.push(reason),
                _ => {}
            }
        }
    }
}

/// The `code` text of a document update.
fn code_of(update: &[u8]) -> Result<String> {
    let doc = yrs::Doc::new();
    let code = doc.get_or_insert_text("code");
    doc.transact_mut().apply_update(yrs::Update::decode_v1(update)?)?;
    let txn = doc.transact();
    Ok(code.get_string(&txn))
}

/// An observer's `/yws` socket sends what a writer would: our envelope protocol (an
/// admission made from a grant it can read off the room, and an edit signed under it) and a
/// plain y-protocols update. The node's replica, read back through the same socket's sync
/// step 1 (handled after them, in order), has neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_cannot_write_through_yws() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let url = format!("ws://{}/yws/{}?token={}", server.addr, room.room, room.observer);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;

    // Type 100: an admission bound to the attacker's key with the host's grant (every peer
    // receives the host's admission today; here the attacker simply holds its token), and an
    // envelope signed under it.
    let id = PeerKey::from_hex(&room.room)?;
    let mut forged =
        Room::open(id, Identity::from_passphrase("mallory"), 0, MemoryStore::new(), RoomConfig::default(), now_ms())?;
    let (adm, joined) = forged.join(&room.host, "mallory", now_ms())?;
    let mut envs: Vec<_> = joined.into_iter().collect();
    envs.extend(forged.edit(now_ms(), |e| e.splice_code(0, 0, "PWNED "))?);
    assert!(!envs.is_empty(), "the forged replica made no envelope");
    for c in chunk(&[Wire::Admissions(vec![adm]), Wire::Envelopes(envs)], GOSSIP_CHUNK) {
        send_bin(&mut ws, arena_frame(&c)).await?;
    }
    // Type 0 / 2: a y-protocols update inserting into `code`.
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("code");
    text.insert(&mut doc.transact_mut(), 0, "OBSERVED ");
    let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
    send_bin(&mut ws, encode_frame(&[YMessage::Sync(SyncMessage::Update(update))])).await?;
    // An observer may still publish its own presence (the host sees who is watching).
    send_bin(&mut ws, awareness_msg(4242, 1, r#"{"user":{"name":"observer"}}"#)?).await?;
    // The barrier: the node's whole document, as it answers our sync step 1.
    send_bin(&mut ws, encode_frame(&[YMessage::Sync(SyncMessage::SyncStep1(StateVector::default()))])).await?;
    let (state, denied) = until_step2(&mut ws).await?;
    let code = code_of(&state)?;
    assert!(!code.contains("PWNED"), "the observer's envelope was applied: code = {code:?}");
    assert!(!code.contains("OBSERVED"), "the observer's update was applied: code = {code:?}");
    assert!(denied.iter().any(|d| d.contains("read-only")), "no read-only answer: {denied:?}");
    assert!(gauge(server.addr, "observer_writes_refused_total").await? >= 1, "refusals not counted");
    // Its presence went through: an awareness query answers with it.
    send_bin(&mut ws, encode_frame(&[YMessage::AwarenessQuery])).await?;
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            let Message::Binary(b) = m else { continue };
            for msg in decode_frame(&b)? {
                if let YMessage::Awareness(u) = msg {
                    if u.clients.keys().any(|k| k.get() == 4242) {
                        return Ok::<_, anyhow::Error>(true);
                    }
                }
            }
        }
        Ok(false)
    })
    .await??;
    assert!(seen, "the observer's presence was dropped");
    server.stop().await?;
    Ok(())
}

/// The awareness states an awareness query on `ws` answers with (client id → JSON): the
/// first awareness message of two clients or more (relays of one client's update hold one).
async fn presence_of(ws: &mut Ws) -> Result<std::collections::HashMap<u64, String>> {
    send_bin(ws, encode_frame(&[YMessage::AwarenessQuery])).await?;
    tokio::time::timeout(WAIT, async {
        while let Some(m) = ws.next().await {
            let Message::Binary(b) = m? else { continue };
            for msg in decode_frame(&b)? {
                match msg {
                    YMessage::Awareness(u) if u.clients.len() > 1 => {
                        return Ok(u.clients.into_iter().map(|(k, v)| (k.get(), v.json.to_string())).collect())
                    }
                    _ => {}
                }
            }
        }
        bail!("socket ended")
    })
    .await
    .context("no awareness answer with two clients")?
}

/// A node with a new room whose host is connected on `/yws` and present as awareness client
/// 777 (handled by the node: it answered the sync step 1 sent after the awareness).
async fn room_with_host_present(dir: &std::path::Path) -> Result<(Server, CreatedRoom, Ws)> {
    let server = Server::start(dir).await?;
    let room = create_room(server.addr).await?;
    let url = format!("ws://{}/yws/{}?token={}", server.addr, room.room, room.host);
    let (mut host, _) = tokio_tungstenite::connect_async(url).await?;
    send_bin(&mut host, awareness_msg(777, 1, r#"{"user":{"name":"Host"}}"#)?).await?;
    send_bin(&mut host, encode_frame(&[YMessage::Sync(SyncMessage::SyncStep1(StateVector::default()))])).await?;
    until_step2(&mut host).await?;
    Ok((server, room, host))
}

/// An observer publishes its own presence, not someone else's: a state under the host's
/// awareness client id (a fake name, a fake cursor) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_cannot_speak_for_anothers_presence() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, room, _host) = room_with_host_present(dir.path()).await?;
    let yws = |token: &str| format!("ws://{}/yws/{}?token={token}", server.addr, room.room);
    let (mut obs, _) = tokio_tungstenite::connect_async(yws(&room.observer)).await?;
    send_bin(&mut obs, awareness_msg(777, 9, r#"{"user":{"name":"Not the host"}}"#)?).await?;
    send_bin(&mut obs, awareness_msg(4343, 1, r#"{"user":{"name":"Observer"}}"#)?).await?;
    let seen = presence_of(&mut obs).await?;
    assert!(seen.get(&777).is_some_and(|s| s.contains("\"Host\"")), "the host's presence was replaced: {seen:?}");
    assert!(
        seen.get(&4343).is_some_and(|s| s.contains("Observer")),
        "the observer's own presence was dropped: {seen:?}"
    );
    server.stop().await?;
    Ok(())
}

/// An awareness frame setting `ids`' states (clock 1, a name each).
fn awareness_for(ids: impl IntoIterator<Item = u64>) -> Result<Vec<u8>> {
    use yrs::updates::encoder::Encode;
    let clients = ids
        .into_iter()
        .map(|id| {
            let json = format!(r#"{{"user":{{"name":"fake{id}"}}}}"#);
            (yrs::ClientID::new(id), yrs::sync::awareness::AwarenessUpdateEntry { clock: 1, json: json.into() })
        })
        .collect();
    Ok(arena_core::sync::ywire::awareness_frame(&yrs::sync::AwarenessUpdate { clients }.encode_v1())?)
}

/// A member (here the candidate) cannot grow the room's presence without end under made-up
/// awareness client ids: a frame for more clients than a room holds is refused as malformed,
/// and a connection that speaks for more than 8 ids is closed and its states go. The host's
/// and an observer's presence stay, and nobody is sent the made-up ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_under_made_up_client_ids_is_bounded() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, room, mut host) = room_with_host_present(dir.path()).await?;
    let yws = |token: &str| format!("ws://{}/yws/{}?token={token}", server.addr, room.room);
    let rejected_before = gauge(server.addr, "frames_rejected_total").await?;

    // One frame for 300 clients: malformed, the connection ends, nothing is kept.
    let (mut flood, _) = tokio_tungstenite::connect_async(yws(&room.candidate)).await?;
    send_bin(&mut flood, awareness_for(10_000..10_300)?).await?;
    let (code, reason) = closed(&mut flood).await?;
    assert_eq!(code, 4400, "{reason}");
    assert!(reason.contains("awareness for 300 clients"), "{reason}");

    // Eight ids are taken; the ninth, in a later frame, ends the connection.
    let (mut many, _) = tokio_tungstenite::connect_async(yws(&room.candidate)).await?;
    send_bin(&mut many, awareness_for(20_000..20_008)?).await?;
    // Another client passes on the removal of all eight (what a stock client's own timeout
    // does, with the same clocks) and of the host's own state is not touched: removals
    // speak for nobody, so it stays open with its own state.
    let (mut passer, _) = tokio_tungstenite::connect_async(yws(&room.candidate)).await?;
    send_bin(&mut passer, awareness_msg(30_000, 1, r#"{"user":{"name":"Passer"}}"#)?).await?;
    send_bin(&mut passer, {
        use yrs::updates::encoder::Encode;
        let clients = (20_000..20_008)
            .map(|id| {
                (yrs::ClientID::new(id), yrs::sync::awareness::AwarenessUpdateEntry { clock: 1, json: "null".into() })
            })
            .collect();
        arena_core::sync::ywire::awareness_frame(&yrs::sync::AwarenessUpdate { clients }.encode_v1())?
    })
    .await?;
    // The room's answer to its awareness query once the removals are in: its own state and
    // the host's, none of the eight.
    send_bin(&mut passer, encode_frame(&[YMessage::AwarenessQuery])).await?;
    tokio::time::timeout(WAIT, async {
        while let Some(m) = passer.next().await {
            let b = match m? {
                Message::Binary(b) => b,
                Message::Close(f) => bail!("the client passing on removals was closed: {f:?}"),
                _ => continue,
            };
            for msg in decode_frame(&b)? {
                if let YMessage::Awareness(u) = msg {
                    let ids: Vec<u64> = u.clients.keys().map(|k| k.get()).collect();
                    if ids.contains(&30_000)
                        && ids.contains(&777)
                        && !ids.iter().any(|id| (20_000..20_008).contains(id))
                    {
                        return Ok(());
                    }
                }
            }
        }
        bail!("the client passing on removals was closed")
    })
    .await
    .context("no awareness answer without the removed eight")??;
    send_bin(&mut many, awareness_for([20_008])?).await?;
    let (code, reason) = closed(&mut many).await?;
    assert_eq!(code, 4400, "{reason}");
    assert!(reason.contains("more than 8 client ids"), "{reason}");
    assert!(gauge(server.addr, "frames_rejected_total").await? >= rejected_before + 2, "refusals not counted");

    // What the room holds now: the host and an observer, none of the made-up states.
    let (mut obs, _) = tokio_tungstenite::connect_async(yws(&room.observer)).await?;
    send_bin(&mut obs, awareness_msg(4343, 1, r#"{"user":{"name":"Observer"}}"#)?).await?;
    // (The room's first awareness message to it, sent as it connected, is from before its own
    // state: read on to the answer that has it.)
    let mut seen = presence_of(&mut obs).await?;
    while !seen.contains_key(&4343) {
        seen = presence_of(&mut obs).await.context("no awareness answer with the observer's own state")?;
    }
    assert!(seen.get(&777).is_some_and(|s| s.contains("Host")), "the host's presence went: {seen:?}");
    let made_up = |id: &u64| (10_000..10_300).contains(id) || (20_000..=20_008).contains(id);
    let fake: Vec<_> = seen.iter().filter(|(id, s)| made_up(id) && s.as_str() != "null").collect();
    assert!(fake.is_empty(), "made-up states kept: {fake:?}");
    // The host was sent none of the states the node refused (the 300), nor the ninth (only
    // its removal, with the other eight's, when the connection ended).
    let mut heard = std::collections::HashSet::new();
    send_bin(&mut host, encode_frame(&[YMessage::Sync(SyncMessage::SyncStep1(StateVector::default()))])).await?;
    tokio::time::timeout(WAIT, async {
        while let Some(m) = host.next().await {
            let Message::Binary(b) = m? else { continue };
            for msg in decode_frame(&b)? {
                match msg {
                    YMessage::Awareness(u) => {
                        heard.extend(u.clients.iter().filter(|(_, e)| &*e.json != "null").map(|(k, _)| k.get()))
                    }
                    YMessage::Sync(SyncMessage::SyncStep2(_)) => return Ok(()),
                    _ => {}
                }
            }
        }
        bail!("socket ended")
    })
    .await??;
    assert!(!heard.iter().any(|id| (10_000..10_300).contains(id)), "the refused frame reached the host: {heard:?}");
    assert!(!heard.contains(&20_008), "the ninth id's state reached the host");
    assert!(heard.contains(&20_000), "the eight taken states were not passed on: {heard:?}");
    server.stop().await?;
    Ok(())
}

// ---- item 10: /signal -------------------------------------------------------------------

async fn signal(addr: SocketAddr, token: &str) -> Result<Ws> {
    Ok(tokio_tungstenite::connect_async(format!("ws://{addr}/signal?token={token}")).await?.0)
}

async fn send(ws: &mut Ws, v: Value) -> Result<()> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

async fn recv(ws: &mut Ws) -> Result<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.context("timed out")? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("error: {e}"),
            None => bail!("ended"),
        }
    }
}

/// Sends `v`, then a ping; returns what came before the pong (the node handled `v` by then,
/// and has queued its fan-out to every subscriber).
async fn send_sync(ws: &mut Ws, v: Value) -> Result<Vec<Value>> {
    send(ws, v).await?;
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

/// Reads publishes until one whose data has `type` and `from`; returns the ones before it.
async fn until_marker(ws: &mut Ws, from: &str) -> Result<Vec<Value>> {
    let mut before = Vec::new();
    loop {
        let v = recv(ws).await?;
        if v["data"]["type"] == "arena-announce" && v["data"]["from"] == from {
            return Ok(before);
        }
        before.push(v);
    }
}

fn publish(topic: &str, data: Value) -> Value {
    json!({"type": "publish", "topic": topic, "data": data})
}

const VICTIM: &str = "11111111111111111111111111111111";
const MALLORY: &str = "22222222222222222222222222222222";
const HOST: &str = "33333333333333333333333333333333";
const OBSERVER: &str = "44444444444444444444444444444444";

/// Another connection publishes `arena-bye` (and an offer) under the victim's `from`: the
/// third peer never gets it as coming from the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_from_on_signal_is_not_delivered() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let t = room.room.as_str();
    let mut victim = signal(server.addr, &room.candidate).await?;
    let mut host = signal(server.addr, &room.host).await?;
    // Another member (a connection of the same invite may take its own `from` over).
    let mut mallory = signal(server.addr, &room.host).await?;
    for ws in [&mut victim, &mut host, &mut mallory] {
        assert!(send_sync(ws, json!({"type": "subscribe", "topics": [t]})).await?.is_empty());
    }
    send_sync(&mut victim, publish(t, json!({"type": "arena-announce", "from": VICTIM, "peers": []}))).await?;
    assert!(until_marker(&mut host, VICTIM).await?.is_empty());

    let answers = send_sync(&mut mallory, publish(t, json!({"type": "arena-bye", "from": VICTIM}))).await?;
    send_sync(&mut mallory, publish(t, json!({"type": "arena-announce", "from": MALLORY, "peers": []}))).await?;
    let before = until_marker(&mut host, MALLORY).await?;
    let forged: Vec<_> = before.iter().filter(|v| v["data"]["from"] == VICTIM).collect();
    assert!(forged.is_empty(), "delivered as coming from the victim: {forged:?}");
    assert!(answers.iter().any(|v| v["type"] == "error"), "the forger was not told: {answers:?}");
    // The victim itself still publishes under its id.
    send_sync(&mut victim, publish(t, json!({"type": "arena-announce", "from": VICTIM, "peers": []}))).await?;
    assert!(until_marker(&mut host, VICTIM).await?.is_empty());
    // And so does its next connection (its invite), before the node has seen the old one go.
    let mut again = signal(server.addr, &room.candidate).await?;
    assert!(send_sync(&mut again, json!({"type": "subscribe", "topics": [t]})).await?.is_empty());
    let answers = send_sync(&mut again, publish(t, json!({"type": "arena-announce", "from": VICTIM}))).await?;
    assert!(answers.iter().all(|v| v["type"] != "error"), "{answers:?}");
    assert!(until_marker(&mut host, VICTIM).await?.is_empty());
    // Mallory's own id is its own: the victim's old socket cannot use it.
    let answers = send_sync(&mut victim, publish(t, json!({"type": "arena-bye", "from": MALLORY}))).await?;
    assert!(answers.iter().any(|v| v["type"] == "error"), "{answers:?}");
    server.stop().await?;
    Ok(())
}

/// An observer subscribes and hears who is there, but may not publish, and never sees an
/// offer, an answer or an ICE candidate (they carry the others' IP addresses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_on_signal_may_not_publish_and_sees_no_ice() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let t = room.room.as_str();
    let mut host = signal(server.addr, &room.host).await?;
    let mut cand = signal(server.addr, &room.candidate).await?;
    let mut obs = signal(server.addr, &room.observer).await?;
    for ws in [&mut host, &mut cand, &mut obs] {
        let errs = send_sync(ws, json!({"type": "subscribe", "topics": [t]})).await?;
        assert!(errs.is_empty(), "{errs:?}");
    }
    // The observer publishes: refused, and the host never gets it.
    let answers =
        send_sync(&mut obs, publish(t, json!({"type": "arena-announce", "from": OBSERVER, "peers": []}))).await?;
    send_sync(&mut cand, publish(t, json!({"type": "arena-announce", "from": VICTIM, "peers": []}))).await?;
    let before = until_marker(&mut host, VICTIM).await?;
    assert!(before.iter().all(|v| v["data"]["from"] != OBSERVER), "an observer's publish was delivered: {before:?}");
    assert!(answers.iter().any(|v| v["type"] == "error"), "the observer was not told: {answers:?}");

    // The candidate offers to the host and sends a candidate; then announces.
    let ice = "candidate:1 1 udp 2122260223 192.0.2.7 54321 typ host";
    let sdp = format!("v=0\r\no=- 1 2 IN IP4 192.0.2.7\r\na={ice}\r\n");
    send(
        &mut cand,
        publish(t, json!({"type": "arena-offer", "from": VICTIM, "to": HOST, "conn": "0123456789abcdef", "sdp": sdp})),
    )
    .await?;
    let cand_msg = json!({"candidate": ice, "sdpMid": "0", "sdpMLineIndex": 0});
    send(
        &mut cand,
        publish(
            t,
            json!({"type": "arena-ice", "from": VICTIM, "to": HOST, "conn": "0123456789abcdef", "candidate": cand_msg}),
        ),
    )
    .await?;
    send(&mut cand, publish(t, json!({"type": "arena-announce", "from": VICTIM, "peers": [HOST]}))).await?;
    // The host gets all three (the first announce is the marker it read above).
    let to_host = until_marker(&mut host, VICTIM).await?;
    assert_eq!(to_host.len(), 2, "{to_host:?}");
    // The observer gets the announces, nothing carrying an address.
    let first = until_marker(&mut obs, VICTIM).await?;
    let second = until_marker(&mut obs, VICTIM).await?;
    let leaked: Vec<_> = first.iter().chain(&second).filter(|v| v.to_string().contains("192.0.2.7")).collect();
    assert!(leaked.is_empty(), "the observer got ICE/SDP: {leaked:?}");
    server.stop().await?;
    Ok(())
}

/// Opens a `/signal` socket from `from_ip`; the HTTP status when the node refuses it.
async fn signal_from(addr: SocketAddr, from_ip: [u8; 4]) -> Result<std::result::Result<Ws, u16>> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((from_ip, 0)))?;
    let stream = sock.connect(addr).await?;
    let url = format!("ws://{addr}/signal");
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(Err(resp.status().as_u16())),
        Err(e) => Err(e.into()),
    }
}

/// One IP opens connections until refused: it gets exactly the per-IP cap; another IP gets
/// the rest of the global cap; a closed connection frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_connections_are_capped_per_ip_and_in_total() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.signal_max_per_ip = 3;
    cfg.signal_max_connections = 4;
    let server = Server::start_with(cfg).await?;
    let mut open = Vec::new();
    let refused = loop {
        match signal_from(server.addr, [127, 0, 0, 1]).await? {
            Ok(ws) => open.push(ws),
            Err(status) => break status,
        }
        if open.len() > 10 {
            bail!("{} connections from one IP, none refused", open.len());
        }
    };
    assert_eq!((open.len(), refused), (3, 429));
    let other = signal_from(server.addr, [127, 0, 0, 2]).await?.map_err(|s| anyhow::anyhow!("refused: {s}"))?;
    match signal_from(server.addr, [127, 0, 0, 2]).await? {
        Ok(_) => bail!("a fifth connection was accepted over the global cap of 4"),
        Err(status) => assert_eq!(status, 503),
    }
    // A connection that closes gives its place back.
    drop(open.pop());
    let again =
        wait_for(WAIT, "/signal accepts again", || async { Ok(signal_from(server.addr, [127, 0, 0, 1]).await?.ok()) })
            .await?;
    drop((again, other, open));
    server.stop().await?;
    Ok(())
}

/// A `/yws` connection to `room` with `token` from `from_ip`: the socket, or the HTTP status
/// that refused the upgrade.
async fn yws_from(addr: SocketAddr, room: &str, token: &str, from_ip: [u8; 4]) -> Result<std::result::Result<Ws, u16>> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((from_ip, 0)))?;
    let stream = sock.connect(addr).await?;
    let url = format!("ws://{addr}/yws/{room}?token={token}");
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(Err(resp.status().as_u16())),
        Err(e) => Err(e.into()),
    }
}

/// The same on `/yws`: one IP opening valid connections gets exactly the per-IP cap (429
/// before the upgrade), another IP the rest of the global cap (503), and a closed connection
/// frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yws_connections_are_capped_per_ip_and_in_total() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.yws_max_per_ip = 3;
    cfg.yws_max_connections = 4;
    let server = Server::start_with(cfg).await?;
    let room = create_room(server.addr).await?;
    let (r, t) = (room.room.as_str(), room.observer.as_str());
    let mut open = Vec::new();
    let refused = loop {
        match yws_from(server.addr, r, t, [127, 0, 0, 1]).await? {
            Ok(ws) => open.push(ws),
            Err(status) => break status,
        }
        if open.len() > 10 {
            bail!("{} /yws connections from one IP, none refused", open.len());
        }
    };
    assert_eq!((open.len(), refused), (3, 429));
    let other = yws_from(server.addr, r, t, [127, 0, 0, 2]).await?.map_err(|s| anyhow::anyhow!("refused: {s}"))?;
    match yws_from(server.addr, r, t, [127, 0, 0, 2]).await? {
        Ok(_) => bail!("a fifth /yws connection was accepted over the global cap of 4"),
        Err(status) => assert_eq!(status, 503),
    }
    // A connection that closes gives its place back.
    drop(open.pop());
    let again =
        wait_for(WAIT, "/yws accepts again", || async { Ok(yws_from(server.addr, r, t, [127, 0, 0, 1]).await?.ok()) })
            .await?;
    drop((again, other, open));
    server.stop().await?;
    Ok(())
}

// ---- item 9: the rooms API and secrets at rest -------------------------------------------

/// A raw HTTP/1.1 request with the given extra header lines; returns (status, body).
async fn http_with(addr: SocketAddr, path: &str, headers: &[&str], body: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.split(' ').nth(1).context("no status")?.parse()?;
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

/// A node listening on every interface: creating a room needs the operator token, a JSON
/// body, and stays under the per-IP rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_rooms_off_loopback_needs_the_operator_token_json_and_a_rate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.http_addr = SocketAddr::from(([0, 0, 0, 0], 0));
    cfg.admin_token = Some("operator-secret-0123456789".parse().map_err(anyhow::Error::msg)?);
    cfg.room_create_per_minute = 6;
    let server = Server::start_with(cfg).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let json_ct = "Content-Type: application/json";
    let body = r#"{"title":"t"}"#;

    let (status, text) = http_with(addr, "/api/rooms", &[json_ct], body).await?;
    assert_eq!(status, 401, "no token: {text}");
    let (status, text) =
        http_with(addr, "/api/rooms", &[json_ct, "Authorization: Bearer operator-secret-0123456788"], body).await?;
    assert_eq!(status, 401, "wrong token: {text}");
    let good = "Authorization: Bearer operator-secret-0123456789";
    let form = "Content-Type: application/x-www-form-urlencoded";
    let (status, text) = http_with(addr, "/api/rooms", &[form, good], "title=t").await?;
    assert_eq!(status, 415, "form body: {text}");
    let (status, text) = http_with(addr, "/api/rooms", &[json_ct, good], body).await?;
    assert_eq!(status, 201, "good request: {text}");
    // The rest of the minute's allowance, then 429.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (status, _) = http_with(addr, "/api/rooms", &[json_ct, good], body).await?;
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "never rate-limited: {statuses:?}");
    server.stop().await?;
    Ok(())
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(p).with_context(|| p.display().to_string())?.permissions().mode() & 0o777)
}

/// The data dir is the node's alone (created 0700, tightened when looser), and its key file
/// is 0600 with no temporary file left beside it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_the_node_key_are_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose)?;
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755))?;
    let fresh = dir.path().join("fresh");
    for data in [&loose, &fresh] {
        let server = Server::start(data).await?;
        create_room(server.addr).await?;
        server.stop().await?;
        assert_eq!(format!("{:o}", mode(data)?), "700", "{}", data.display());
        assert_eq!(format!("{:o}", mode(&data.join("node.key"))?), "600");
        let names: Vec<_> = std::fs::read_dir(data)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // sled, arena-node's own data (its libp2p side) and the user directory, private too.
        assert!(
            names.iter().all(|n| ["node.key", "sled", "p2p", "users"].contains(&n.as_str())),
            "left in the data dir: {names:?}"
        );
        for sub in ["p2p", "users"] {
            if names.iter().any(|n| n == sub) {
                assert_eq!(format!("{:o}", mode(&data.join(sub))?), "700", "{sub}");
            }
        }
    }
    Ok(())
}

/// The node's libp2p key is a random key in its own file (`p2p/identity.key`, 0600), made on
/// first start and the same after a restart; a data dir from before that file keeps the key
/// its libp2p replica signed with; a corrupt key file stops the node with an error naming it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_libp2p_key_is_a_private_file_kept_across_restarts() -> Result<()> {
    // Starts the node on `data` and stops it at once. `run` can return while the previous
    // run's sled is still being released (its lock held for a moment): that one error is
    // retried, until a deadline; every other error is the answer.
    async fn run_once(data: &std::path::Path) -> std::result::Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let cfg = arena_bootstrap::Config::for_tests(data);
            let listener = tokio::net::TcpListener::bind(cfg.http_addr).await.map_err(|e| e.to_string())?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            shutdown.cancel();
            match arena_bootstrap::run(cfg, listener, shutdown).await.map_err(|e| e.to_string()) {
                Err(e) if e.contains("could not acquire lock") && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                r => return r,
            }
        }
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let key = data.join("p2p").join("identity.key");
    run_once(&data).await.map_err(anyhow::Error::msg)?;
    assert_eq!(format!("{:o}", mode(&key)?), "600");
    let first = std::fs::read_to_string(&key)?;
    let node_key = std::fs::read_to_string(data.join("node.key"))?;
    assert_ne!(first.trim(), node_key.trim());
    run_once(&data).await.map_err(anyhow::Error::msg)?;
    assert_eq!(std::fs::read_to_string(&key)?, first, "a restart made a new libp2p key");

    // A data dir from before the key file: its replica's key is derived from the node key.
    std::fs::remove_file(&key)?;
    run_once(&data).await.map_err(anyhow::Error::msg)?;
    let node = Identity::from_seed(PeerKey::from_hex(node_key.trim())?.0);
    assert_eq!(std::fs::read_to_string(&key)?.trim(), PeerKey(node.derive("arena/bootstrap-p2p").seed()).to_hex());
    assert_eq!(format!("{:o}", mode(&key)?), "600");

    std::fs::write(&key, "not a key")?;
    let err = run_once(&data).await.err().context("a corrupt libp2p key file was accepted")?;
    assert!(err.contains("identity.key") && err.contains("64-hex-digit"), "{err}");
    std::fs::write(data.join("node.key"), "zz")?;
    let err = run_once(&data).await.err().context("a corrupt node key file was accepted")?;
    assert!(err.contains("node.key") && err.contains("64-hex-digit"), "{err}");
    Ok(())
}

// ---- item 4, the node's side: expiry ends live connections -------------------------------

/// Waits for the socket's close frame; returns its code and reason.
async fn closed(ws: &mut Ws) -> Result<(u16, String)> {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return Ok((u16::from(f.code), f.reason.to_string())),
                Some(Ok(Message::Close(None))) | None => bail!("closed without a reason"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("socket error: {e}"),
            }
        }
    })
    .await
    .context("the connection outlived its invite")?
}

/// Invites that expire a few seconds after they are made: `/yws` and `/signal` connections
/// made with them are closed by the node once they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_end_when_their_invite_expires() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let (status, body) = http(server.addr, "POST", "/api/rooms", r#"{"title":"short","ttlSecs":6}"#).await?;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    let (room, token) = (v["room"].as_str().context("room")?, v["tokens"]["candidate"].as_str().context("token")?);
    let (mut yws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/yws/{room}?token={token}", server.addr)).await?;
    let mut sig = signal(server.addr, token).await?;
    let errs = send_sync(&mut sig, json!({"type": "subscribe", "topics": [room]})).await?;
    assert!(errs.is_empty(), "{errs:?}");
    let (code, reason) = closed(&mut yws).await?;
    assert!(reason.contains("expired"), "/yws closed with {code} {reason:?}");
    let (code, reason) = closed(&mut sig).await?;
    assert!(reason.contains("expired"), "/signal closed with {code} {reason:?}");
    server.stop().await?;
    Ok(())
}

//! Federation: two bootstrap nodes bridge a room over libp2p gossipsub. A client on each
//! node edits; both converge. One node is stopped and restarted on its data dir; they
//! converge again.

mod support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use support::*;

const T: Duration = Duration::from_secs(60);

async fn multiaddr(addr: std::net::SocketAddr) -> Result<String> {
    let (_, body) = http(addr, "GET", "/api/peers", "").await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok(v["multiaddrs"][0].as_str().context("no multiaddr")?.to_owned())
}

async fn converge(peers: &mut [&mut ArenaPeer], marks: &[String]) -> Result<String> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        for p in peers.iter_mut() {
            p.pump(Duration::from_millis(30)).await?;
        }
        let texts: Vec<String> = peers.iter().map(|p| p.text()).collect();
        if marks.iter().all(|m| texts.iter().all(|t| t.contains(m.as_str()))) {
            ensure!(texts.windows(2).all(|w| w[0] == w[1]), "same marks, different texts: {texts:?}");
            return Ok(texts[0].clone());
        }
        ensure!(tokio::time::Instant::now() < deadline, "no convergence: {texts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_bridge_a_room_and_survive_a_restart() -> Result<()> {
    let d1 = tempfile::tempdir()?;
    let d2 = tempfile::tempdir()?;
    let n1 = Server::start(d1.path()).await?;
    let peer1 = multiaddr(n1.addr).await?;
    let cfg2 = |dir: &std::path::Path| {
        let mut c = arena_bootstrap::Config::for_tests(dir);
        c.peers = vec![peer1.clone()];
        c
    };
    let n2 = Server::start_with(cfg2(d2.path())).await?;

    // The room lives on node 1; node 2 serves it because the token checks out against the
    // room id (the room key) and it federates.
    let room = create_room(n1.addr).await?;
    let mut a = ArenaPeer::connect(n1.addr, &room.room, &room.host, "alice").await?;
    let mut b = ArenaPeer::connect(n2.addr, &room.room, &room.candidate, "bob").await?;
    let mut marks = Vec::new();
    for i in 0..5 {
        let (ma, mb) = (format!("[a{i}]"), format!("[b{i}]"));
        a.type_text(0, &ma).await?;
        b.type_text(u32::MAX, &mb).await?;
        marks.extend([ma, mb]);
        a.pump(Duration::from_millis(10)).await?;
        b.pump(Duration::from_millis(10)).await?;
    }
    converge(&mut [&mut a, &mut b], &marks).await?;

    // Presence crosses too: Alice's cursor on node 1 reaches Bob on node 2 (over libp2p).
    let state = r#"{"user":{"name":"alice"},"cursor":{"anchor":1,"head":4}}"#;
    let deadline = tokio::time::Instant::now() + T;
    for clock in 1.. {
        a.send_presence(4242, clock, state).await?;
        a.pump(Duration::from_millis(20)).await?;
        b.pump(Duration::from_millis(200)).await?;
        if b.presence.get(&4242).is_some_and(|s| s.contains("\"anchor\":1")) {
            break;
        }
        ensure!(tokio::time::Instant::now() < deadline, "alice's presence never reached node 2: {:?}", b.presence);
    }

    // Node 2 goes away; Alice keeps typing; node 2 comes back on its data dir and a new
    // client there gets everything.
    drop(b);
    n2.stop().await?;
    for i in 5..8 {
        let m = format!("[a{i}]");
        a.type_text(0, &m).await?;
        marks.push(m);
    }
    a.pump(Duration::from_millis(50)).await?;
    let n2 = Server::start_with(cfg2(d2.path())).await?;
    let mut c = ArenaPeer::connect(n2.addr, &room.room, &room.candidate, "carol").await?;
    c.type_text(0, "[c0]").await?;
    marks.push("[c0]".into());
    let text = converge(&mut [&mut a, &mut c], &marks).await?;
    ensure!(text.contains("[b4]") && text.contains("[a7]"));
    n2.stop().await?;
    n1.stop().await?;
    Ok(())
}

/// Stock Yjs clients (yjs + y-websocket from npm) write on a node that does not host the
/// room: that node holds no proxy grant, so it relays their updates with their tokens to the
/// room's home node, which checks the tokens and signs; everyone converges, the observer's
/// edit is refused on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_write_through_a_node_that_does_not_host_the_room() -> Result<()> {
    use serde_json::json;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if js_dir().is_err() {
        eprintln!("SKIPPED: npm packages missing (bash scripts/npm-install.sh)");
        anyhow::bail!("npm packages missing: run `bash scripts/npm-install.sh`");
    }
    let d1 = tempfile::tempdir()?;
    let d2 = tempfile::tempdir()?;
    let n1 = Server::start(d1.path()).await?;
    let peer1 = multiaddr(n1.addr).await?;
    let mut c2 = arena_bootstrap::Config::for_tests(d2.path());
    c2.peers = vec![peer1];
    let n2 = Server::start_with(c2).await?;
    let room = create_room(n1.addr).await?;
    // A native peer on node 1 and two stock clients on node 2 (neither hosts a grant there).
    let mut native = ArenaPeer::connect(n1.addr, &room.room, &room.host, "native").await?;
    native.pump(Duration::from_millis(200)).await?;
    let marks: Vec<String> = (0..6).map(|i| format!("[S{i}]")).collect();
    let more: Vec<String> = (0..6).map(|i| format!("[T{i}]")).collect();
    let all: Vec<String> = marks.iter().chain(&more).cloned().chain(["[N]".to_owned()]).collect();
    let url = format!("ws://{}/yws", n2.addr);
    let mut s = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.candidate, "name": "S", "inserts": marks, "expect": all, "timeoutMs": 50000}),
    )?;
    let mut t = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.host, "name": "T", "inserts": more, "expect": all, "timeoutMs": 50000}),
    )?;
    native.type_text(0, "[N]").await?;
    let fs = s.event("final", T).await?;
    let ft = t.event("final", T).await?;
    let deadline = tokio::time::Instant::now() + T;
    while !all.iter().all(|m| native.text().contains(m.as_str())) {
        ensure!(tokio::time::Instant::now() < deadline, "node 1 never got node 2's stock edits: {}", native.text());
        native.pump(Duration::from_millis(100)).await?;
    }
    let (ts, tt) = (fs["text"].as_str().context("s")?, ft["text"].as_str().context("t")?);
    ensure!(ts == tt && tt == native.text(), "texts differ:\n{ts}\n{tt}\n{}", native.text());
    ensure!(native.denied.is_empty(), "{:?}", native.denied);
    // An observer's token does not become writable by relaying.
    let mut obs = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.observer, "name": "O", "inserts": ["[OBSERVER]"], "expect": [], "waitDenied": true, "timeoutMs": 50000}),
    )?;
    obs.event("denied", T).await?;
    native.pump(Duration::from_millis(500)).await?;
    ensure!(!native.text().contains("[OBSERVER]"), "an observer's edit was signed");
    n2.stop().await?;
    n1.stop().await?;
    Ok(())
}

/// A single node serving browsers keeps one replica per room: its libp2p side joins a room
/// only when a libp2p peer asks for it. A native peer that arrives later gets the room from
/// the node, and what it types reaches the node's WebSocket clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_libp2p_side_joins_a_hosted_room_when_a_native_peer_asks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Server::start(dir.path()).await?;
    let room = create_room(node.addr).await?;
    let mut web = ArenaPeer::connect(node.addr, &room.room, &room.host, "web").await?;
    web.type_text(0, "[W]").await?;
    web.pump(Duration::from_millis(300)).await?;
    ensure!(gauge(node.addr, "libp2p_rooms").await? == 0, "joined on libp2p with no libp2p peer");

    let mut cfg = arena_node::NodeConfig::new(arena_core::Identity::from_passphrase("native-late"));
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    cfg.bootstrap = vec![multiaddr(node.addr).await?.parse()?];
    let stop = tokio_util::sync::CancellationToken::new();
    let (native, task) = arena_node::Node::spawn(cfg, stop.clone())?;
    let id = arena_core::PeerKey::from_hex(&room.room)?;
    native
        .join(arena_node::JoinSpec {
            room: id,
            token: Some(room.candidate.clone()),
            name: "native".into(),
            recording: None,
        })
        .await?;
    let deadline = tokio::time::Instant::now() + T;
    while !native.code(id).await?.contains("[W]") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the native peer never got the room: {:?}",
            native.code(id).await?
        );
        web.pump(Duration::from_millis(50)).await?;
    }
    ensure!(gauge(node.addr, "libp2p_rooms").await? == 1);
    native.splice(id, 0, 0, "[N]").await?;
    let deadline = tokio::time::Instant::now() + T;
    while !web.text().contains("[N]") {
        ensure!(tokio::time::Instant::now() < deadline, "the web client never got the native edit: {:?}", web.text());
        web.pump(Duration::from_millis(50)).await?;
    }
    ensure!(web.text() == native.code(id).await?, "texts differ");
    stop.cancel();
    let _ = task.await;
    node.stop().await?;
    Ok(())
}

/// The host on node 1 removes the candidate, who is connected to node 2: the revocation
/// crosses libp2p, node 2's room applies it and closes the candidate's connection (4403);
/// the candidate's link no longer gets in there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_from_another_node_closes_the_member_here() -> Result<()> {
    let d1 = tempfile::tempdir()?;
    let d2 = tempfile::tempdir()?;
    let n1 = Server::start(d1.path()).await?;
    let mut c2 = arena_bootstrap::Config::for_tests(d2.path());
    c2.peers = vec![multiaddr(n1.addr).await?];
    let n2 = Server::start_with(c2).await?;
    let room = create_room(n1.addr).await?;
    let mut a = ArenaPeer::connect(n1.addr, &room.room, &room.host, "alice").await?;
    let mut b = ArenaPeer::connect(n2.addr, &room.room, &room.candidate, "bob").await?;
    a.type_text(0, "[a]").await?;
    b.type_text(u32::MAX, "[b]").await?;
    converge(&mut [&mut a, &mut b], &["[a]".into(), "[b]".into()]).await?;

    let bob = arena_core::Identity::from_passphrase("bob").public();
    let revocation = a.room_mut().revoke(bob, now_ms())?;
    a.send(vec![revocation]).await?;
    let (code, reason) = b.until_closed(T).await?;
    ensure!(code == 4403, "closed with {code} {reason:?}");
    ensure!(reason.contains("removed"), "{reason:?}");
    n2.stop().await?;
    n1.stop().await?;
    Ok(())
}

/// A stranger's `/arena/sync/1` request for the room on the node that hosts it, from a bare
/// libp2p swarm with no invite.
async fn stranger_asks(addr: &str, room: arena_core::RoomId) -> Result<arena_node::behaviour::SyncResponse> {
    use arena_node::behaviour::{build_swarm, keypair_of, ArenaBehaviourEvent, BehaviourConfig, SyncRequest};
    use futures::StreamExt;
    use libp2p::request_response::{Event, Message};
    use libp2p::swarm::SwarmEvent;
    let id = arena_core::Identity::from_seed(arena_node::random_seed()?);
    let mut swarm = build_swarm(keypair_of(&id), &BehaviourConfig::default())?;
    let addr: libp2p::Multiaddr = addr.parse()?;
    let Some(libp2p::multiaddr::Protocol::P2p(host)) = addr.iter().last() else { anyhow::bail!("no /p2p in {addr}") };
    swarm.dial(addr)?;
    let want = arena_core::sync::wire::chunk(
        &[arena_core::sync::wire::Wire::Want(Default::default())],
        arena_core::sync::wire::GOSSIP_CHUNK,
    );
    let ask = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == host => {
                    swarm.behaviour_mut().sync.send_request(&host, SyncRequest { room, frames: want.clone() });
                }
                SwarmEvent::Behaviour(ArenaBehaviourEvent::Sync(Event::Message {
                    message: Message::Response { response, .. },
                    ..
                })) => return Ok(response),
                SwarmEvent::Behaviour(ArenaBehaviourEvent::Sync(Event::OutboundFailure { error, .. })) => {
                    anyhow::bail!("sync request failed: {error}")
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(T, ask).await?
}

/// A stranger (no invite) asks the home node for a room over libp2p: it gets nothing, and
/// the node does not load the room for it. A member (a native arena-node with the
/// candidate's invite) asking the same way makes the node join and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_make_a_node_load_a_room_or_read_it() -> Result<()> {
    let d1 = tempfile::tempdir()?;
    let n1 = Server::start(d1.path()).await?;
    let peer1 = multiaddr(n1.addr).await?;
    let secret = create_room(n1.addr).await?;
    let other = create_room(n1.addr).await?;
    let mut a = ArenaPeer::connect(n1.addr, &secret.room, &secret.host, "alice").await?;
    a.type_text(0, "[the secret question]").await?;
    a.pump(Duration::from_millis(100)).await?;
    let secret_id = arena_core::RoomId::from_hex(&secret.room)?;

    let resp = stranger_asks(&peer1, secret_id).await?;
    ensure!(resp.frames.is_empty(), "a stranger got {} frames ({:?})", resp.frames.len(), resp.status);
    ensure!(resp.status != arena_node::behaviour::SyncStatus::Ok);

    // A member of the other room, as a native peer, is served: the node joins that room.
    let mut cfg = arena_node::NodeConfig::new(arena_core::Identity::from_seed(arena_node::random_seed()?));
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    cfg.bootstrap = vec![peer1.parse()?];
    let stop = tokio_util::sync::CancellationToken::new();
    let (member, task) = arena_node::Node::spawn(cfg, stop.clone())?;
    let other_id = arena_core::RoomId::from_hex(&other.room)?;
    member
        .join(arena_node::JoinSpec {
            room: other_id,
            token: Some(other.candidate.clone()),
            name: "m".into(),
            recording: None,
        })
        .await?;
    wait_for(T, "the other node learns the proxy grant", || async {
        let proxies = member.with_room(other_id, |r, _| r.ledger().members().filter(|(_, m)| m.proxy).count()).await?;
        Ok((proxies > 0).then_some(()))
    })
    .await
    .context("the member never heard from the home node")?;
    ensure!(gauge(n1.addr, "libp2p_rooms").await? == 1, "the node joined a room on the stranger's word");
    // Asked again (the node has had every chance to load it): still nothing.
    let resp = stranger_asks(&peer1, secret_id).await?;
    ensure!(resp.frames.is_empty(), "a stranger got {} frames ({:?})", resp.frames.len(), resp.status);
    ensure!(gauge(n1.addr, "libp2p_rooms").await? == 1);
    stop.cancel();
    let _ = task.await;
    n1.stop().await?;
    Ok(())
}

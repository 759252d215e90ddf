//! Federation: two bootstrap nodes bridge a room over libp2p gossipsub. A client on each
//! node edits; both converge. One node is stopped and restarted on its data dir; they
//! converge again.

#[path = "support.rs"]
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

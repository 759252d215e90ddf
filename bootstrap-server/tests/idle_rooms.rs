//! Rooms without connections are unloaded after `--room-idle-secs` and reloaded from sled
//! on demand, so memory stays bounded by the active rooms.

#[path = "support.rs"]
mod support;

use std::time::Duration;

use anyhow::Result;
use support::*;

async fn gauge(addr: std::net::SocketAddr, name: &str) -> Result<u64> {
    let (_, body) = http(addr, "GET", "/metrics", "").await?;
    let line = body.lines().find(|l| l.starts_with(&format!("arena_{name} "))).unwrap_or_default();
    Ok(line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_unload_and_reload() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.room_idle_secs = 1;
    let server = Server::start_with(cfg).await?;
    let room = create_room(server.addr).await?;
    let mut peer = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    peer.type_text(0, "print(42)\n").await?;
    // The node has it once its info reports the length (answered after a flush).
    let path = format!("/api/rooms/{}?token={}", room.room, room.host);
    wait_for(Duration::from_secs(20), || async {
        let (_, b) = http(server.addr, "GET", &path, "").await?;
        let v: serde_json::Value = serde_json::from_str(&b)?;
        Ok((v["codeLength"].as_u64() == Some(10)).then_some(()))
    })
    .await?;
    assert_eq!(gauge(server.addr, "rooms_loaded").await?, 1);
    drop(peer);
    wait_for(Duration::from_secs(20), || async { Ok((gauge(server.addr, "rooms_loaded").await? == 0).then_some(())) })
        .await?;

    // A new connection reloads it from sled with everything in it.
    let mut late = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "late").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while late.text() != "print(42)\n" {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "late joiner got {:?}", late.text());
        late.pump(Duration::from_millis(50)).await?;
    }
    assert_eq!(gauge(server.addr, "rooms_loaded").await?, 1);
    server.stop().await?;
    Ok(())
}

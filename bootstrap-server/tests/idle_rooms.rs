//! Rooms without connections are unloaded after `--room-idle-secs` and reloaded from sled
//! on demand, so memory stays bounded by the active rooms.

mod support;

use std::time::Duration;

use anyhow::Result;
use support::*;

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
    wait_for(Duration::from_secs(20), "the room reports codeLength 10", || async {
        let (_, b) = http(server.addr, "GET", &path, "").await?;
        let v: serde_json::Value = serde_json::from_str(&b)?;
        Ok((v["codeLength"].as_u64() == Some(10)).then_some(()))
    })
    .await?;
    assert_eq!(gauge(server.addr, "rooms_loaded").await?, 1);
    // The edit was made durable by the group commit, and /metrics says so.
    let (flushes, commits) =
        (gauge(server.addr, "store_flushes_total").await?, gauge(server.addr, "store_commits_total").await?);
    assert!(flushes >= 1, "{flushes} flushes");
    assert!(commits >= flushes, "{commits} commits for {flushes} flushes: each flush answers at least one");
    assert!(gauge(server.addr, "store_flush_us_total").await? > 0);
    drop(peer);
    wait_for(Duration::from_secs(20), "rooms_loaded back to 0", || async {
        Ok((gauge(server.addr, "rooms_loaded").await? == 0).then_some(()))
    })
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

/// A room whose clients stay connected but stop editing drops its document from memory
/// after `--room-evict-secs`; presence goes on without it (it does not bring the document
/// back), and the next edit reopens it from sled with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_documents_are_evicted_and_reopened_while_clients_stay() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.room_evict_secs = 1;
    let server = Server::start_with(cfg).await?;
    let room = create_room(server.addr).await?;
    let mut host = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    let mut cand = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "cand").await?;
    host.type_text(0, "def f():\n").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cand.text() != "def f():\n" {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "candidate got {:?}", cand.text());
        cand.pump(Duration::from_millis(50)).await?;
        host.pump(Duration::from_millis(10)).await?;
    }
    // Idle: the document goes, the room (its connections) stays.
    wait_for(Duration::from_secs(20), "the document evicted", || async {
        Ok((gauge(server.addr, "documents_loaded").await? == 0).then_some(()))
    })
    .await?;
    assert_eq!(gauge(server.addr, "rooms_loaded").await?, 1);
    // Presence still flows, served without the document.
    let state = r##"{"user":{"name":"host","color":"#123456"},"cursor":null}"##;
    for clock in 1..=3 {
        host.send_presence(4242, clock, state).await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cand.presence.get(&4242).map(String::as_str) != Some(state) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "presence never reached the candidate");
        cand.pump(Duration::from_millis(50)).await?;
    }
    assert_eq!(gauge(server.addr, "documents_loaded").await?, 0, "presence reopened the document");
    assert_eq!(gauge(server.addr, "documents_reloaded_total").await?, 0);
    // An edit reopens it; both sides converge on everything.
    host.type_text(9, "    return 1\n").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cand.text() != "def f():\n    return 1\n" {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "candidate got {:?}", cand.text());
        cand.pump(Duration::from_millis(50)).await?;
        host.pump(Duration::from_millis(10)).await?;
    }
    assert_eq!(gauge(server.addr, "documents_reloaded_total").await?, 1);
    // A newcomer while it sleeps again gets the whole document (its join reopens it).
    wait_for(Duration::from_secs(20), "the document evicted again", || async {
        Ok((gauge(server.addr, "documents_loaded").await? == 0).then_some(()))
    })
    .await?;
    let mut late = ArenaPeer::connect(server.addr, &room.room, &room.observer, "late").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while late.text() != "def f():\n    return 1\n" {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "late joiner got {:?}", late.text());
        late.pump(Duration::from_millis(50)).await?;
    }
    server.stop().await?;
    Ok(())
}

/// The room actor makes the periodic checkpoint itself, after the edits it relays (one
/// room at a time on the node); the document evicted and reopened from sled (from that
/// checkpoint and the log after it) holds every edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_room_checkpoints_and_reopens_from_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = arena_bootstrap::Config::for_tests(dir.path());
    cfg.room_evict_secs = 1;
    let server = Server::start_with(cfg).await?;
    let room = create_room(server.addr).await?;
    let mut host = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    assert_eq!(gauge(server.addr, "checkpoints_total").await?, 0);
    // More envelopes than a checkpoint's entry count (1,000) on a small state.
    let mut expected = String::new();
    for i in 0..1100u32 {
        let line = format!("{i}\n");
        host.type_text(expected.len() as u32, &line).await?;
        expected.push_str(&line);
        if i % 100 == 0 {
            host.pump(Duration::from_millis(5)).await?;
        }
    }
    wait_for(Duration::from_secs(30), "a checkpoint written", || async {
        Ok((gauge(server.addr, "checkpoints_total").await? >= 1).then_some(()))
    })
    .await?;
    assert!(gauge(server.addr, "checkpoint_us_total").await? > 0);
    // Evicted, then reopened by a newcomer: from the checkpoint, with everything.
    wait_for(Duration::from_secs(20), "the document evicted after the checkpoint", || async {
        Ok((gauge(server.addr, "documents_loaded").await? == 0).then_some(()))
    })
    .await?;
    let mut late = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "late").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while late.text() != expected {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "late joiner has {} of {} bytes",
            late.text().len(),
            expected.len()
        );
        late.pump(Duration::from_millis(50)).await?;
        host.pump(Duration::from_millis(1)).await?;
    }
    assert_eq!(gauge(server.addr, "documents_reloaded_total").await?, 1);
    server.stop().await?;
    Ok(())
}

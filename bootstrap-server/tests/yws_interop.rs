//! Real `yjs` + `y-websocket` clients (npm, run by node) and a native arena peer edit one
//! room concurrently through `/yws`; an observer's edits are refused; after kill -9 and a
//! restart on the same data dir a new client receives the whole document.

mod support;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_clients_and_native_peer_converge_and_observer_is_read_only() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let url = format!("ws://{}/yws", server.addr);

    let a_marks: Vec<String> = (0..8).map(|i| format!("[A{i}]")).collect();
    let b_marks: Vec<String> = (0..8).map(|i| format!("[B{i}😀]")).collect();
    let n_marks: Vec<String> = (0..8).map(|i| format!("[N{i}]")).collect();
    let all: Vec<String> = a_marks.iter().chain(&b_marks).chain(&n_marks).cloned().collect();

    let mut native = ArenaPeer::connect(server.addr, &room.room, &room.candidate, "native").await?;
    native.pump(Duration::from_millis(200)).await?;
    let mut a = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.host, "name": "A", "inserts": a_marks, "expect": all, "timeoutMs": 50000}),
    )?;
    let mut b = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.candidate, "name": "B", "inserts": b_marks, "expect": all, "timeoutMs": 50000}),
    )?;
    let mut obs = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.observer, "name": "O", "inserts": ["[OBSERVER]"], "expect": [], "waitDenied": true, "timeoutMs": 50000}),
    )?;

    for (i, m) in n_marks.iter().enumerate() {
        let at = if i % 2 == 0 { 0 } else { u32::MAX };
        native.type_text(at, m).await?;
        native.pump(Duration::from_millis(10)).await?;
    }
    let denied = obs.event("denied", T).await?;
    assert!(denied["reason"].as_str().unwrap_or("").contains("read-only"), "{denied}");

    let fa = a.event("final", T).await?;
    let fb = b.event("final", T).await?;
    let deadline = tokio::time::Instant::now() + T;
    while !all.iter().all(|m| native.text().contains(m.as_str())) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "native peer never converged: {}", native.text());
        native.pump(Duration::from_millis(100)).await?;
    }
    let (ta, tb, tn) = (fa["text"].as_str().context("a")?, fb["text"].as_str().context("b")?, native.text());
    assert_eq!(ta, tb);
    assert_eq!(ta, tn);
    assert!(!ta.contains("[OBSERVER]"), "observer edit leaked into the room");

    // The node's own view, from the API.
    let (status, body) =
        http(server.addr, "GET", &format!("/api/rooms/{}?token={}", room.room, room.observer), "").await?;
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(info["codeLength"].as_u64(), Some(ta.encode_utf16().count() as u64));
    assert_eq!(info["yourRole"], "observer");
    let (_, metrics) = http(server.addr, "GET", "/metrics", "").await?;
    assert!(metrics.contains("arena_envelopes_rejected_total"), "{metrics}");
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keeps_the_document() -> Result<()> {
    js_dir()?;
    let dir = tempfile::tempdir()?;
    let start = |dir: std::path::PathBuf| async move {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_arena-bootstrap"))
            .args(["--http-addr", "127.0.0.1:0", "--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
            .arg(&dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let line = tokio::time::timeout(T, lines.next_line()).await??.context("no output")?;
        let addr: std::net::SocketAddr = line.strip_prefix("listening on http://").context("first line")?.parse()?;
        anyhow::Ok((child, addr))
    };
    let (mut child, addr) = start(dir.path().to_path_buf()).await?;
    let room = create_room(addr).await?;
    let marks: Vec<String> = (0..20).map(|i| format!("<{i}>")).collect();
    let url = format!("ws://{addr}/yws");
    let mut a = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.host, "name": "A", "inserts": marks, "expect": marks, "timeoutMs": 50000}),
    )?;
    let fa = a.event("final", T).await?;
    let text = fa["text"].as_str().context("text")?.to_owned();
    // Acknowledged: the node reports the full length (it answers after its flush).
    let want = text.encode_utf16().count() as u64;
    let path = format!("/api/rooms/{}?token={}", room.room, room.host);
    wait_for(T, "the node holds the whole text", || async {
        let (_, body) = http(addr, "GET", &path, "").await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok((v["codeLength"].as_u64() == Some(want)).then_some(()))
    })
    .await?;
    child.kill().await?; // SIGKILL

    let (_child2, addr2) = start(dir.path().to_path_buf()).await?;
    let mut late = JsClient::spawn(
        json!({"url": format!("ws://{addr2}/yws"), "room": room.room, "token": room.candidate, "name": "late", "inserts": [], "expect": marks, "timeoutMs": 50000}),
    )?;
    let fl = late.event("final", T).await?;
    assert_eq!(fl["text"].as_str(), Some(text.as_str()));
    Ok(())
}

/// A stock Yjs client adds a file the way the room's schema has it (`files` map entry, text
/// root `files/<name>`): a native peer reads it through the typed accessors. One with a bad
/// name is refused by the node and reaches nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_client_adds_a_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let url = format!("ws://{}/yws", server.addr);
    let mut native = ArenaPeer::connect(server.addr, &room.room, &room.host, "native").await?;
    native.pump(Duration::from_millis(200)).await?;
    let mut bad = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.candidate, "name": "B", "files": {"../evil.py": "x"}, "timeoutMs": 50000}),
    )?;
    bad.event("inserted", T).await?;
    let mut a = JsClient::spawn(
        json!({"url": url, "room": room.room, "token": room.candidate, "name": "A", "files": {"helper.py": "def f():\n    return 1\n"}, "timeoutMs": 50000}),
    )?;
    a.event("final", T).await?;
    let deadline = tokio::time::Instant::now() + T;
    while native.room().doc().file("helper.py").is_none() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the file never arrived: {:?}",
            native.room().doc().files()
        );
        native.pump(Duration::from_millis(100)).await?;
    }
    assert_eq!(native.room().doc().file("helper.py").as_deref(), Some("def f():\n    return 1\n"));
    // Nothing of the bad name anywhere in the document: no root, no entry.
    let doc = native.room().doc().raw_yrs_doc();
    let txn = yrs::Transact::transact(doc);
    let roots: Vec<String> = yrs::ReadTxn::root_refs(&txn).map(|(n, _)| n.to_owned()).collect();
    assert!(!roots.iter().any(|r| r.contains("evil")), "{roots:?}");
    let files = yrs::ReadTxn::get_map(&txn, "files").context("the files map")?;
    assert_eq!(yrs::Map::keys(&files, &txn).collect::<Vec<_>>(), ["helper.py"], "the bad name reached the room");
    server.stop().await?;
    Ok(())
}

/// `arena-node join` over `/yws` is present in the room (its name in the awareness every
/// member sees, renewed) and says it left when it stops, as it does over libp2p.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_peer_joined_over_yws_is_present_and_leaves() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let room = create_room(server.addr).await?;
    let opts = arena_node::cli::PeerOptions {
        room: arena_core::PeerKey::from_hex(&room.room)?,
        token: room.candidate.clone(),
        bootstrap: vec![arena_node::http::BootstrapAddr::Http(format!("http://{}", server.addr))],
        listen: Vec::new(),
        name: "native-joiner".into(),
        relay: false,
        via: arena_node::cli::Via::Yws,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let joined = tokio::spawn(async move { arena_node::cli::join(opts, None, s).await });
    let mut host = ArenaPeer::connect(server.addr, &room.room, &room.host, "host").await?;
    let present = |p: &ArenaPeer| p.presence.values().any(|s| s.contains("native-joiner"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !present(&host) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no presence of the native peer: {:?}", host.presence);
        host.pump(Duration::from_millis(100)).await?;
    }
    stop.cancel();
    joined.await??;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while present(&host) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the native peer stays present: {:?}", host.presence);
        host.pump(Duration::from_millis(100)).await?;
    }
    server.stop().await
}

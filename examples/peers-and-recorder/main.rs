//! Two native peers and a headless recorder against a bootstrap node.
//!
//! Starts an in-process `arena-bootstrap` on 127.0.0.1 (or uses the one given as the first
//! argument, `http://host:port`), creates a room through its HTTP API, and runs a host and
//! a candidate that type concurrently, plus a recorder with the observer token. Each of
//! them asks the bootstrap node for its libp2p addresses (`GET /api/peers`): when it lists
//! some, they meet over libp2p; otherwise they attach through its y-websocket endpoint,
//! speaking our signed-envelope protocol inside it. At the end the recording is verified
//! and exported as JSON and as a self-contained HTML player.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arena_core::sync::wire::GOSSIP_CHUNK;
use arena_core::{Identity, MemoryStore, PeerKey, Room, RoomConfig, RoomId};
use arena_node::cli::{PeerOptions, Via};
use arena_node::http::{bootstrap_peers, request, BootstrapAddr};
use arena_node::yws::{NodeClient, YwsLink};
use arena_node::{now_ms, random_seed, JoinSpec, Node, NodeConfig, NodeStore};
use tokio_util::sync::CancellationToken;

struct Invite {
    room: RoomId,
    host: String,
    candidate: String,
    observer: String,
}

async fn create_room(base: &str) -> Result<Invite> {
    let (status, body) =
        request("POST", &format!("{base}/api/rooms"), r#"{"title":"Two sum","language":"python"}"#).await?;
    if status != 201 {
        bail!("creating a room: HTTP {status}: {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let t = |r: &str| v["tokens"][r].as_str().map(str::to_owned).context("token");
    Ok(Invite {
        room: PeerKey::from_hex(v["room"].as_str().context("room")?)?,
        host: t("host")?,
        candidate: t("candidate")?,
        observer: t("observer")?,
    })
}

/// One typist: types `lines` (one envelope per line, at human speed), then keeps
/// listening for `linger`, and returns the code it ends with.
async fn typist(
    base: String,
    room: RoomId,
    token: String,
    name: &'static str,
    lines: Vec<&'static str>,
) -> Result<String> {
    let identity = Identity::from_seed(random_seed()?);
    let libp2p = bootstrap_peers(&base).await.map(|p| p.multiaddrs).unwrap_or_default();
    let linger = Duration::from_secs(2);
    if !libp2p.is_empty() {
        let mut cfg = NodeConfig::new(identity);
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        cfg.bootstrap = libp2p;
        let shutdown = CancellationToken::new();
        let (node, task) = Node::spawn(cfg, shutdown.clone())?;
        node.join(JoinSpec { room, token: Some(token), name: name.into(), recording: None }).await?;
        for l in lines {
            let end = node.with_room(room, |r, _| r.doc().code_len()).await?;
            node.splice(room, end, 0, l).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tokio::time::sleep(linger).await;
        let code = node.code(room).await?;
        shutdown.cancel();
        task.await??;
        return Ok(code);
    }
    let replica =
        Room::open(room, identity, 0, NodeStore::Memory(MemoryStore::new()), RoomConfig::default(), now_ms())?;
    let mut client = NodeClient::new(replica, GOSSIP_CHUNK, now_ms());
    client.join(&token, name, now_ms())?;
    let mut link = YwsLink::connect(&base, room, &token).await?;
    link.open(&mut client).await?;
    for l in lines {
        let end = client.room().doc().code_len();
        client.room_mut().edit(now_ms(), |e| e.splice_code(end, 0, l))?;
        link.send_outgoing(&mut client).await?;
        pump(&mut link, &mut client, Duration::from_millis(150)).await?;
    }
    pump(&mut link, &mut client, linger).await?;
    link.close().await?;
    Ok(client.room().doc().code())
}

/// Applies what arrives on `link` for `d` (only the wait times out: a frame that arrived is
/// handled whole, its replies sent).
async fn pump(link: &mut YwsLink, client: &mut NodeClient, d: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(frame) = tokio::time::timeout_at(deadline, link.recv()).await {
        let Some(frame) = frame? else { break };
        link.handle(client, &frame).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("warn")).init();
    let work = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let (base, server) = match std::env::args().nth(1) {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let cfg = arena_bootstrap::Config::for_tests(work.path().join("bootstrap"));
            let listener = tokio::net::TcpListener::bind(cfg.http_addr).await?;
            let base = format!("http://{}", listener.local_addr()?);
            let s = shutdown.clone();
            (base, Some(tokio::spawn(async move { arena_bootstrap::run(cfg, listener, s).await })))
        }
    };
    let invite = create_room(&base).await?;
    println!("room {} on {base}", invite.room);

    // The recorder: read-only, everything into out/session.arena.
    let out = PathBuf::from(std::env::var("ARENA_OUT").unwrap_or_else(|_| "arena-data/recording".into()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = PeerOptions {
        room: invite.room,
        token: invite.observer.clone(),
        bootstrap: vec![base.parse::<BootstrapAddr>()?],
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        name: "recorder".into(),
        relay: false,
        via: Via::Auto,
    };
    let stop_recorder = CancellationToken::new();
    let recorder = {
        let (out, stop) = (out.clone(), stop_recorder.clone());
        tokio::spawn(async move { arena_node::cli::record(opts, &out, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let host = tokio::spawn(typist(
        base.clone(),
        invite.room,
        invite.host,
        "Host",
        vec!["def two_sum(nums, target):\n", "    seen = {}\n"],
    ));
    let cand = tokio::spawn(typist(
        base.clone(),
        invite.room,
        invite.candidate,
        "Candidate",
        vec!["# candidate's notes\n", "# O(n) with a hash map\n", "# done\n"],
    ));
    let (host_code, cand_code) = (host.await??, cand.await??);
    println!("--- host ---\n{host_code}--- candidate ---\n{cand_code}");
    if host_code != cand_code {
        bail!("the peers did not converge");
    }
    stop_recorder.cancel();
    recorder.await??;

    // The recorder's key is in its directory: this example is both recorder and auditor.
    let pins = arena_node::replay::Pins {
        room: Some(invite.room),
        recorder: Some(arena_node::load_or_create_identity(&out)?.public()),
    };
    let (report, ok) = arena_node::cli::verify(&out, &pins, false)?;
    println!("{report}");
    let trust = arena_node::replay::Trust { pins, ..Default::default() };
    let json = arena_node::cli::export(&out, arena_node::cli::Format::Json, &trust)?;
    let html = arena_node::cli::export(&out, arena_node::cli::Format::Html, &trust)?;
    std::fs::write(out.join("session.json"), json)?;
    std::fs::write(out.join("session.html"), html)?;
    let recorded = arena_node::cli::replay(&out, Some("end"), &trust)?;
    println!("recorded code at the end matches the peers: {}", recorded == host_code);
    println!("open {} for the player", out.join("session.html").display());
    shutdown.cancel();
    if let Some(s) = server {
        s.await??;
    }
    if !ok || recorded != host_code {
        bail!("the recording does not match");
    }
    Ok(())
}

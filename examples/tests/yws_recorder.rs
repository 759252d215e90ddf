//! The recorder attached through a real `arena-bootstrap`'s `/yws` endpoint (the path used
//! while the bootstrap node lists no libp2p address): two peers type and show presence,
//! the recording holds every envelope and awareness change, verifies, and replays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{bail, Context, Result};
use arena_core::sync::wire::Wire;
use arena_core::{Identity, MemoryStore, PeerKey, Room, RoomConfig, RoomId};
use arena_node::cli::{PeerOptions, Via};
use arena_node::http::request;
use arena_node::recording::RecordingFile;
use arena_node::replay::{timeline, verify, Pins, Trust};
use arena_node::yws::YwsLink;
use arena_node::{now_ms, NodeRoom, NodeStore};
use tokio_util::sync::CancellationToken;

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not met in time");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct YwsPeer {
    room: NodeRoom,
    link: YwsLink,
}

impl YwsPeer {
    async fn connect(base: &str, room: RoomId, token: &str, name: &str) -> Result<Self> {
        let store = NodeStore::Memory(MemoryStore::new());
        let mut r = Room::open(room, Identity::from_passphrase(name), 0, store, RoomConfig::default(), now_ms())?;
        r.join(token, name, now_ms())?;
        let mut link = YwsLink::connect(base, room, token).await?;
        link.hello(&r).await?;
        Ok(YwsPeer { room: r, link })
    }

    async fn type_at_end(&mut self, text: &str) -> Result<()> {
        let end = self.room.doc().code_len();
        if let Some(env) = self.room.edit(now_ms(), |e| e.splice_code(end, 0, text))? {
            self.link.send(&[Wire::Envelopes(vec![env])]).await?;
        }
        Ok(())
    }

    /// Applies what arrives until `code` is what the peer has.
    async fn until(&mut self, code: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.room.doc().code() != code {
            match tokio::time::timeout_at(deadline, self.link.next(&mut self.room)).await {
                Err(_) => bail!("never saw {code:?}; have {:?}", self.room.doc().code()),
                Ok(r) => {
                    r?.context("socket closed")?;
                }
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_through_the_bootstrap_nodes_y_websocket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let cfg = arena_bootstrap::Config::for_tests(dir.path().join("bootstrap"));
    let listener = tokio::net::TcpListener::bind(cfg.http_addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(arena_bootstrap::run(cfg, listener, shutdown.clone()));

    let (status, body) = request("POST", &format!("{base}/api/rooms"), "{}").await?;
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let room = PeerKey::from_hex(v["room"].as_str().context("room")?)?;
    let token = |r: &str| v["tokens"][r].as_str().map(str::to_owned).context("token");

    let out = dir.path().join("rec");
    let opts = PeerOptions {
        room,
        token: token("observer")?,
        bootstrap: vec![base.parse()?],
        listen: Vec::new(),
        name: "recorder".into(),
        relay: false,
        via: Via::Yws,
    };
    let stop = CancellationToken::new();
    let recorder = {
        let (out, stop) = (out.clone(), stop.clone());
        tokio::spawn(async move { arena_node::cli::record(opts, &out, stop).await })
    };
    wait_for("recorder attached", || async { Ok(out.join("session.arena").exists().then_some(())) }).await?;

    let mut host = YwsPeer::connect(&base, room, &token("host")?, "Host").await?;
    let mut cand = YwsPeer::connect(&base, room, &token("candidate")?, "Cand").await?;
    host.type_at_end("def f():\n").await?;
    cand.until("def f():\n").await?;
    cand.type_at_end("    return 1\n").await?;
    host.until("def f():\n    return 1\n").await?;
    host.link.send_awareness(7, 1, &serde_json::json!({"user": "Host", "cursor": 9})).await?;
    host.type_at_end("f()\n").await?;
    let code = "def f():\n    return 1\nf()\n";
    cand.until(code).await?;

    // The recording gets there too (it is flushed before anything is reported).
    wait_for("recorded", || async {
        let f = match RecordingFile::read(&out) {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        let t = timeline(&f)?;
        Ok((t.final_code == code && !t.awareness.is_empty()).then_some(()))
    })
    .await?;
    stop.cancel();
    recorder.await??;

    let file = RecordingFile::read(&out)?;
    let report = verify(&file, &Pins { room: Some(room), recorder: None });
    assert!(report.ok(), "{report:?}");
    let t = timeline(&file)?;
    assert_eq!(t.final_code, code);
    assert!(t.awareness.iter().any(|(_, a)| a.to_string().contains("cursor")), "{:?}", t.awareness);
    assert!(t.members.iter().any(|m| m.name == "Host") && t.members.iter().any(|m| m.name == "Cand"));
    assert_eq!(arena_node::cli::replay(&out, Some("end"), &Trust::default())?, code);

    shutdown.cancel();
    server.await??;
    Ok(())
}

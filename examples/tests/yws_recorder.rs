//! The recorder attached through a real `arena-bootstrap`'s `/yws` endpoint (the path used
//! while the bootstrap node lists no libp2p address): two peers type and show presence,
//! the recording holds every envelope and awareness change, verifies, and replays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{bail, Context, Result};
use arena_core::sync::wire::GOSSIP_CHUNK;
use arena_core::{Identity, MemoryStore, PeerKey, Room, RoomConfig, RoomId};
use arena_node::cli::{PeerOptions, Via};
use arena_node::http::request;
use arena_node::recording::RecordingFile;
use arena_node::replay::{timeline, verify, Pins, Trust};
use arena_node::yws::{NodeClient, YwsLink};
use arena_node::{now_ms, NodeStore};
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

/// A member over `/yws`: its replica (arena-core's `Client`) and the link.
struct YwsPeer {
    client: NodeClient,
    link: YwsLink,
}

impl YwsPeer {
    /// A member that has joined with `token` but is not connected yet.
    fn offline(room: RoomId, token: &str, name: &str) -> Result<NodeClient> {
        let store = NodeStore::Memory(MemoryStore::new());
        let r = Room::open(room, Identity::from_passphrase(name), 0, store, RoomConfig::default(), now_ms())?;
        let mut client = NodeClient::new(r, GOSSIP_CHUNK, now_ms());
        client.join(token, name, now_ms())?;
        Ok(client)
    }

    async fn attach(base: &str, token: &str, mut client: NodeClient) -> Result<Self> {
        let mut link = YwsLink::connect(base, client.room().id(), token).await?;
        link.open(&mut client).await?;
        Ok(YwsPeer { client, link })
    }

    async fn connect(base: &str, room: RoomId, token: &str, name: &str) -> Result<Self> {
        Self::attach(base, token, Self::offline(room, token, name)?).await
    }

    async fn type_at_end(&mut self, text: &str) -> Result<()> {
        type_offline(&mut self.client, text)?;
        Ok(self.link.send_outgoing(&mut self.client).await?)
    }

    /// Applies what arrives until `code` is what the peer has.
    async fn until(&mut self, code: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.client.room().doc().code() != code {
            match tokio::time::timeout_at(deadline, self.link.recv()).await {
                Err(_) => bail!("never saw {code:?}; have {:?}", self.client.room().doc().code()),
                Ok(frame) => {
                    let frame = frame?.context("socket closed")?;
                    self.link.handle(&mut self.client, &frame).await?;
                }
            }
        }
        Ok(())
    }

    /// Handles what arrives (answers the node's requests) until the socket closes.
    async fn serve(&mut self) -> Result<()> {
        while self.link.next(&mut self.client).await?.is_some() {}
        bail!("socket closed")
    }

    /// Envelopes in this replica, by every author.
    fn envelopes(&self) -> u64 {
        self.client.room().ledger().heads().map(|(_, h)| h.next_seq).sum()
    }
}

/// Appends `text` to the code as one envelope, sent by nobody yet.
fn type_offline(client: &mut NodeClient, text: &str) -> Result<()> {
    let end = client.room().doc().code_len();
    client.room_mut().edit(now_ms(), |e| e.splice_code(end, 0, text))?.context("an envelope")?;
    Ok(())
}

struct Server {
    base: String,
    room: RoomId,
    tokens: serde_json::Value,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), arena_bootstrap::BootstrapError>>,
}

impl Server {
    async fn start(dir: &std::path::Path) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let cfg = arena_bootstrap::Config::for_tests(dir.join("bootstrap"));
        let listener = tokio::net::TcpListener::bind(cfg.http_addr).await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(arena_bootstrap::run(cfg, listener, shutdown.clone()));
        let (status, body) = request("POST", &format!("{base}/api/rooms"), "{}").await?;
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let room = PeerKey::from_hex(v["room"].as_str().context("room")?)?;
        Ok(Server { base, room, tokens: v["tokens"].clone(), shutdown, task })
    }

    fn token(&self, role: &str) -> Result<String> {
        self.tokens[role].as_str().map(str::to_owned).context("token")
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_through_the_bootstrap_nodes_y_websocket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let (base, room) = (server.base.clone(), server.room);

    let out = dir.path().join("rec");
    let opts = PeerOptions {
        room,
        token: server.token("observer")?,
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

    let mut host = YwsPeer::connect(&base, room, &server.token("host")?, "Host").await?;
    let mut cand = YwsPeer::connect(&base, room, &server.token("candidate")?, "Cand").await?;
    host.type_at_end("def f():\n").await?;
    cand.until("def f():\n").await?;
    cand.type_at_end("    return 1\n").await?;
    host.until("def f():\n    return 1\n").await?;
    let frame = host.client.set_presence("Host", "#ff0000", Some((9, 9)), now_ms())?;
    host.link.send(vec![frame]).await?;
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
    // Every envelope of the room, the node's included.
    assert_eq!(report.envelopes as u64, host.envelopes(), "{report:?}");
    assert_eq!(cand.envelopes(), host.envelopes());
    let t = timeline(&file)?;
    assert_eq!(t.final_code, code);
    // The host's awareness state as the client sent it: its name and a cursor.
    let host_state = t
        .awareness
        .iter()
        .filter_map(|(_, a)| a.as_object())
        .flat_map(|o| o.values())
        .map(|e| &e["state"])
        .find(|s| s["user"]["name"] == "Host")
        .with_context(|| format!("no awareness of the host in {:?}", t.awareness))?;
    assert!(host_state["cursor"]["anchor"].is_object(), "{host_state}");
    assert!(t.members.iter().any(|m| m.name == "Host") && t.members.iter().any(|m| m.name == "Cand"));
    assert_eq!(arena_node::cli::replay(&out, Some("end"), &Trust::default())?, code);

    server.stop().await
}

/// Edits made before connecting reach the room: the hello carries only the newest envelope,
/// the node asks for the older ones (`Want`) and the link answers from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_reach_the_room_through_the_nodes_want() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let (base, room) = (server.base.clone(), server.room);
    let mut host = YwsPeer::connect(&base, room, &server.token("host")?, "Host").await?;
    host.type_at_end("# host\n").await?;

    let cand_token = server.token("candidate")?;
    let mut offline = YwsPeer::offline(room, &cand_token, "Cand")?;
    let lines = ["a = 1\n", "b = 2\n", "c = 3\n"];
    for l in lines {
        type_offline(&mut offline, l)?;
    }
    let mut cand = YwsPeer::attach(&base, &cand_token, offline).await?;
    let code = format!("# host\n{}", lines.concat());
    // The host's replica gets all three of the candidate's envelopes, the first two only
    // because the candidate's link answers the node meanwhile.
    tokio::select! {
        r = host.until(&code) => r?,
        r = cand.serve() => r?,
    }
    cand.until(&code).await?;
    assert_eq!(host.envelopes(), cand.envelopes());
    server.stop().await
}

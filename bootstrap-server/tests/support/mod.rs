//! Test helpers: an in-process node on port 0, a tiny HTTP client, node.js clients.
#![allow(dead_code, unused_imports, unreachable_pub, missing_debug_implementations)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(data_dir: &Path) -> Result<Self> {
        Self::start_with(arena_bootstrap::Config::for_tests(data_dir)).await
    }

    pub async fn start_with(cfg: arena_bootstrap::Config) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(cfg.http_addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = arena_bootstrap::run(cfg, listener, s).await {
                eprintln!("server failed: {e}");
            }
        });
        Ok(Server { addr, shutdown, task })
    }

    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await?;
        Ok(())
    }
}

/// The value of the node's metric `arena_{name}` (0 when absent).
pub async fn gauge(addr: std::net::SocketAddr, name: &str) -> Result<u64> {
    let (_, body) = http(addr, "GET", "/metrics", "").await?;
    let line = body.lines().find(|l| l.starts_with(&format!("arena_{name} "))).unwrap_or_default();
    Ok(line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0))
}

/// A y-protocols awareness message (one frame) for `client` with `state` (JSON) at `clock`.
pub fn awareness_msg(client: u64, clock: u32, state: &str) -> Result<Vec<u8>> {
    use yrs::updates::encoder::Encode;
    let mut clients = std::collections::HashMap::new();
    clients
        .insert(yrs::ClientID::new(client), yrs::sync::awareness::AwarenessUpdateEntry { clock, json: state.into() });
    let update = yrs::sync::AwarenessUpdate { clients }.encode_v1();
    Ok(arena_core::sync::ywire::awareness_frame(&update)?)
}

/// Minimal HTTP/1.1 request; returns (status, body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.split(' ').nth(1).context("no status")?.parse()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    // Chunked bodies: good enough to strip the chunk-size lines for JSON.
    let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body.lines().filter(|l| !l.chars().all(|c| c.is_ascii_hexdigit()) || l.is_empty()).collect::<Vec<_>>().join("")
    } else {
        body
    };
    Ok((status, body))
}

pub struct CreatedRoom {
    pub room: String,
    pub host: String,
    pub candidate: String,
    pub observer: String,
}

pub async fn create_room(addr: std::net::SocketAddr) -> Result<CreatedRoom> {
    let (status, body) = http(addr, "POST", "/api/rooms", r#"{"title":"test","language":"python"}"#).await?;
    if status != 201 {
        bail!("create room: {status} {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("body {body:?}"))?;
    let t = |r: &str| v["tokens"][r].as_str().map(str::to_owned).context("token");
    Ok(CreatedRoom {
        room: v["room"].as_str().context("room")?.to_owned(),
        host: t("host")?,
        candidate: t("candidate")?,
        observer: t("observer")?,
    })
}

pub fn js_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js"));
    // The repository's one npm workspace installs at the root (scripts/npm-install.sh).
    if !dir.join("../../../node_modules/y-websocket").exists() {
        bail!("npm packages missing: run `bash scripts/npm-install.sh` (scripts/test.sh does)");
    }
    Ok(dir)
}

/// A running node.js Yjs client; its JSON event lines.
pub struct JsClient {
    pub child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl JsClient {
    pub fn spawn(opts: serde_json::Value) -> Result<Self> {
        let dir = js_dir()?;
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("yclient.mjs"))
            .arg(opts.to_string())
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node")?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(JsClient { child, lines: BufReader::new(stdout).lines() })
    }

    /// The next event with this name (others are skipped), within `timeout`.
    pub async fn event(&mut self, name: &str, timeout: Duration) -> Result<serde_json::Value> {
        tokio::time::timeout(timeout, async {
            while let Some(line) = self.lines.next_line().await? {
                let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("line {line:?}"))?;
                if v["event"] == name {
                    return Ok(v);
                }
                if v["event"] == "timeout" {
                    bail!("client timed out waiting; its text: {}", v["text"]);
                }
            }
            bail!("client exited before {name}")
        })
        .await
        .with_context(|| format!("waiting for {name}"))?
    }
}

pub use arena_testkit::{now_ms, wait_for};

/// A native arena peer speaking our envelope protocol over `/yws` (MSG_ARENA messages).
pub struct ArenaPeer {
    pub room: arena_core::Room<arena_core::MemoryStore>,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    link: arena_core::sync::wire::Reassembler,
    pub denied: Vec<String>,
    /// Awareness states seen: client id → JSON state.
    pub presence: std::collections::BTreeMap<u64, String>,
}

impl ArenaPeer {
    pub async fn connect(addr: std::net::SocketAddr, room: &str, token: &str, name: &str) -> Result<Self> {
        use arena_core::{Identity, MemoryStore, PeerKey, Room, RoomConfig};
        let id = PeerKey::from_hex(room)?;
        let mut r =
            Room::open(id, Identity::from_passphrase(name), 0, MemoryStore::new(), RoomConfig::default(), now_ms())?;
        let (adm, env) = r.join(token, name, now_ms())?;
        let url = format!("ws://{addr}/yws/{room}?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let mut peer =
            ArenaPeer { room: r, ws, link: Default::default(), denied: Vec::new(), presence: Default::default() };
        let mut msgs = vec![arena_core::sync::wire::Wire::Admissions(vec![adm]), peer.room.want()];
        msgs.extend(env.map(|e| arena_core::sync::wire::Wire::Envelopes(vec![e])));
        peer.send(msgs).await?;
        Ok(peer)
    }

    pub async fn send(&mut self, msgs: Vec<arena_core::sync::wire::Wire>) -> Result<()> {
        use futures_util::SinkExt;
        for c in arena_core::sync::wire::chunk(&msgs, arena_core::sync::wire::GOSSIP_CHUNK) {
            let frame = arena_core::sync::ywire::arena_frame(&c);
            self.ws.send(tokio_tungstenite::tungstenite::Message::Binary(frame.into())).await?;
        }
        Ok(())
    }

    /// Sends a y-protocols awareness update for `client` with `state` (JSON).
    pub async fn send_presence(&mut self, client: u64, clock: u32, state: &str) -> Result<()> {
        use futures_util::SinkExt;
        let frame = awareness_msg(client, clock, state)?;
        self.ws.send(tokio_tungstenite::tungstenite::Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// Types `text` at the end of the buffer as one envelope and sends it.
    pub async fn type_text(&mut self, pos: u32, text: &str) -> Result<()> {
        let len = self.room.doc().code_len();
        if let Some(e) = self.room.edit(now_ms(), |e| e.splice_code(pos.min(len), 0, text))? {
            self.send(vec![arena_core::sync::wire::Wire::Envelopes(vec![e])]).await?;
        }
        Ok(())
    }

    /// Reads frames for up to `d`, applying what arrives.
    pub async fn pump(&mut self, d: Duration) -> Result<()> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(()),
                Ok(None) => bail!("socket closed"),
                Ok(Some(m)) => m?,
            };
            let tokio_tungstenite::tungstenite::Message::Binary(b) = msg else { continue };
            for m in arena_core::sync::ywire::decode_frame(&b)? {
                match m {
                    yrs::sync::Message::Custom(arena_core::sync::ywire::MSG_ARENA, data) => {
                        if let Some(w) = self.link.push(&data, self.room.id())? {
                            let (mut replies, r) = self.room.handle(w, now_ms())?;
                            // Like arena-core's Client: envelopes of an author whose admission
                            // has not reached us yet (it raced our join) make us ask for what
                            // we lack; anything else refused is a bug.
                            let ledger = self.room.ledger();
                            let (unknown, bad): (Vec<_>, Vec<_>) =
                                r.rejected.iter().partition(|(author, _)| ledger.member(author).is_none());
                            if !bad.is_empty() {
                                bail!("peer rejected envelopes from the node: {bad:?}");
                            }
                            if !unknown.is_empty() {
                                replies.push(self.room.want());
                            }
                            if !replies.is_empty() {
                                self.send(replies).await?;
                            }
                        }
                    }
                    yrs::sync::Message::Auth(Some(reason)) => self.denied.push(reason),
                    yrs::sync::Message::Awareness(u) => {
                        for (id, e) in u.clients {
                            self.presence.insert(id.get(), e.json.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    pub fn text(&self) -> String {
        self.room.doc().code()
    }

    /// Reads (and drops) what arrives until the node closes the socket, for up to `d`:
    /// the close frame's code and reason.
    pub async fn until_closed(&mut self, d: Duration) -> Result<(u16, String)> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("the socket is still open after {d:?}"),
                Ok(None) => bail!("the socket ended without a close frame"),
                Ok(Some(Ok(Message::Close(Some(f))))) => return Ok((u16::from(f.code), f.reason.to_string())),
                Ok(Some(Ok(Message::Close(None)))) => bail!("closed with no code"),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => bail!("socket error before a close frame: {e}"),
            }
        }
    }
}

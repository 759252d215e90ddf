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

/// Minimal HTTP/1.1 request; returns (status, body).
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    http_with(addr, method, path, &format!("Host: {addr}\r\nContent-Type: application/json\r\n"), body).await
}

/// A request with `headers` as given (each ending in CRLF; `Host` included), then
/// `Content-Length`; returns (status, body).
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// The test kit's member on `/yws` (arena-core's own client over a socket).
pub use arena_testkit::yws::{awareness_msg, YwsPeer as ArenaPeer};

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{} {cmd}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

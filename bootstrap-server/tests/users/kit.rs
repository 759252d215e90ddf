//! tests/users.rs's helpers: signed Clerk webhooks, operator requests, and a local HTTP
//! server standing in for an outbound webhook's receiver.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use arena_bootstrap::users::svix;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::http_with;

/// Svix's published test secret (the node's Clerk secret in these tests).
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// A second secret (rotation; the outbound webhooks' secret).
pub const OTHER: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const TOKEN: &str = "operator-token-0123456789";

/// A node config with the Clerk secret, the operator token, fast retries, no libp2p.
pub fn cfg(dir: &std::path::Path) -> Result<arena_bootstrap::Config> {
    let mut c = arena_bootstrap::Config::for_tests(dir);
    c.no_p2p = true;
    c.admin_token = Some(TOKEN.parse().map_err(anyhow::Error::msg)?);
    c.users.clerk_webhook_secrets = vec![SECRET.parse().map_err(anyhow::Error::msg)?];
    c.users.user_job_backoff_ms = 20;
    Ok(c)
}

pub fn now_secs() -> i64 {
    i64::try_from(arena_testkit::now_ms() / 1000).unwrap_or_default()
}

/// Headers of a webhook signed with `secrets` (one `v1` entry each) at `ts`.
pub fn signed(addr: SocketAddr, id: &str, ts: i64, body: &str, secrets: &[&str]) -> Result<String> {
    let mut entries = Vec::new();
    for s in secrets {
        let secret: svix::Secret = s.parse().map_err(anyhow::Error::msg)?;
        entries.push(svix::sign(&secret, id, ts, body.as_bytes()));
    }
    Ok(format!(
        "Host: {addr}\r\nContent-Type: application/json\r\nsvix-id: {id}\r\nsvix-timestamp: {ts}\r\nsvix-signature: {}\r\n",
        entries.join(" ")
    ))
}

/// Posts a webhook signed now with [`SECRET`]; (status, JSON body).
pub async fn webhook(addr: SocketAddr, id: &str, body: &str) -> Result<(u16, Value)> {
    let (status, text) =
        http_with(addr, "POST", "/webhooks/clerk", &signed(addr, id, now_secs(), body, &[SECRET])?, body).await?;
    Ok((status, serde_json::from_str(&text).with_context(|| format!("answer {text:?}"))?))
}

/// A request with the operator token; (status, JSON body).
pub async fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, Value)> {
    let headers = format!("Host: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n");
    let (status, text) = http_with(addr, method, path, &headers, body).await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// A Clerk user event's body.
pub fn user_event(kind: &str, id: &str, first: &str, last: &str, updated_at: u64) -> String {
    let data = if kind == "user.deleted" {
        json!({ "id": id, "deleted": true, "object": "user" })
    } else {
        json!({
            "id": id, "object": "user", "first_name": first, "last_name": last, "username": null,
            "image_url": format!("https://img.example.org/{id}.png"),
            "primary_email_address_id": "idn_1",
            "email_addresses": [{ "id": "idn_1", "email_address": format!("{id}@example.org") }],
            "updated_at": updated_at,
        })
    };
    json!({ "object": "event", "type": kind, "data": data, "timestamp": updated_at }).to_string()
}

/// How the receiver answers a request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// A request the receiver got.
#[derive(Clone, Debug)]
pub struct Got {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A local HTTP server answering from a script (then `fallback`).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<(VecDeque<Reply>, Reply)>>,
}

impl Receiver {
    pub async fn start(script: Vec<Reply>, fallback: Reply) -> Result<Self> {
        Self::start_on("127.0.0.1:0", script, fallback).await
    }

    pub async fn start_on(addr: &str, script: Vec<Reply>, fallback: Reply) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let r = Receiver {
            addr: listener.local_addr()?,
            got: Arc::default(),
            script: Arc::new(Mutex::new((script.into(), fallback))),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(me.clone().serve(sock));
            }
        });
        Ok(r)
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<Got> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    async fn serve(self, mut sock: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, len) = loop {
            let Ok(n) = sock.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                buf.drain(..end + 4);
                break (head, len);
            }
        };
        while buf.len() < len {
            let Ok(n) = sock.read(&mut chunk).await else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let reply = match self.script.lock() {
            Ok(mut s) => {
                let fallback = s.1;
                s.0.pop_front().unwrap_or(fallback)
            }
            Err(_) => Reply::Status(500),
        };
        if let Ok(mut g) = self.got.lock() {
            g.push(Got { headers, body: String::from_utf8_lossy(&buf).into_owned() });
        }
        match reply {
            Reply::Hang => std::future::pending::<()>().await,
            Reply::Status(code) => {
                let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        }
    }
}

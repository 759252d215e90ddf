//! A minimal HTTP/1.1 client for the bootstrap node's JSON API (plain `http://` only), and
//! the `--bootstrap` address forms the CLI accepts.

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{NodeError, Result};

/// Largest response body read.
const MAX_BODY: usize = 4 << 20;

/// `host:port` and path of an `http://` URL.
pub(crate) fn split_url(url: &str) -> Result<(String, String)> {
    let bad = |reason: &str| NodeError::BadAddress { addr: url.to_owned(), reason: reason.to_owned() };
    let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let host = if host.contains(':') && !host.ends_with(']') { host.to_owned() } else { format!("{host}:80") };
    Ok((host, path.to_owned()))
}

/// Sends one request; returns the status and the body.
pub async fn request(method: &str, url: &str, body: &str) -> Result<(u16, String)> {
    let (host, path) = split_url(url)?;
    let remote = |e: std::io::Error| NodeError::Remote(format!("{url}: {e}"));
    let mut s = TcpStream::connect(&host).await.map_err(remote)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(remote)?;
    let mut buf = Vec::new();
    (&mut s).take(MAX_BODY as u64 + 64 * 1024).read_to_end(&mut buf).await.map_err(remote)?;
    parse_response(&buf).ok_or_else(|| NodeError::Remote(format!("{url}: malformed HTTP response")))
}

fn parse_response(buf: &[u8]) -> Option<(u16, String)> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let raw = &buf[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&raw[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if out.len() + size > MAX_BODY {
            return None;
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// What the bootstrap node says about its libp2p side (`GET /api/peers`).
#[derive(Clone, Debug, Default)]
pub struct BootstrapPeers {
    /// Its libp2p peer id, once it runs a libp2p node.
    pub peer_id: Option<String>,
    /// Its multiaddrs, each ending in `/p2p/<peer id>`.
    pub multiaddrs: Vec<Multiaddr>,
}

/// Asks a bootstrap node (its HTTP base URL) for its libp2p addresses.
pub async fn bootstrap_peers(base: &str) -> Result<BootstrapPeers> {
    let url = format!("{}/api/peers", base.trim_end_matches('/'));
    let (status, body) = request("GET", &url, "").await?;
    if status != 200 {
        return Err(NodeError::Remote(format!("{url}: HTTP {status}: {body}")));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| NodeError::Remote(format!("{url}: {e}")))?;
    let peer_id = v["peerId"].as_str().map(str::to_owned);
    let pid = peer_id.as_deref().and_then(|p| p.parse::<libp2p::PeerId>().ok());
    let multiaddrs = v["multiaddrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse::<Multiaddr>().ok())
        .map(|a| match (pid, a.iter().any(|p| matches!(p, Protocol::P2p(_)))) {
            (Some(pid), false) => a.with(Protocol::P2p(pid)),
            _ => a,
        })
        .collect();
    Ok(BootstrapPeers { peer_id, multiaddrs })
}

/// A `--bootstrap` value: the bootstrap node's HTTP URL or a libp2p multiaddr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootstrapAddr {
    /// `http://host:port`.
    Http(String),
    /// A multiaddr (with `/p2p/<peer id>` for discovery through it).
    Multiaddr(Multiaddr),
}

impl std::str::FromStr for BootstrapAddr {
    type Err = NodeError;
    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with("http://") {
            split_url(s)?;
            Ok(BootstrapAddr::Http(s.trim_end_matches('/').to_owned()))
        } else if s.starts_with("https://") {
            Err(NodeError::BadAddress {
                addr: s.into(),
                reason: "https is not supported; use http:// or a multiaddr".into(),
            })
        } else {
            s.parse::<Multiaddr>()
                .map(BootstrapAddr::Multiaddr)
                .map_err(|e| NodeError::BadAddress { addr: s.into(), reason: e.to_string() })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses() {
        assert_eq!(split_url("http://127.0.0.1:8080/api").unwrap(), ("127.0.0.1:8080".into(), "/api".into()));
        assert_eq!(split_url("http://example.org").unwrap(), ("example.org:80".into(), "/".into()));
        assert!(split_url("ftp://x").is_err());
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r, (200, "{\"a\":1}".into()));
        assert_eq!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap(), (404, "nope".into()));
        assert!(parse_response(b"garbage").is_none());
        assert!(matches!("http://h:1".parse::<BootstrapAddr>().unwrap(), BootstrapAddr::Http(_)));
        assert!(matches!("/ip4/127.0.0.1/tcp/1".parse::<BootstrapAddr>().unwrap(), BootstrapAddr::Multiaddr(_)));
        assert!("https://h".parse::<BootstrapAddr>().is_err());
    }
}

//! The HTTP/1.1 upgrade to a WebSocket (RFC 6455 §4.2), as an axum extractor.

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::WebSocket;

/// The extractor for a WebSocket upgrade request (RFC 6455 §4.2.1); refuses anything else
/// with 400 (426 for a wrong version, with the version we speak).
#[derive(Debug)]
pub(crate) struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let bad = |why: &'static str| (StatusCode::BAD_REQUEST, why).into_response();
        if parts.method != Method::GET {
            return Err((StatusCode::METHOD_NOT_ALLOWED, "a WebSocket upgrade is a GET").into_response());
        }
        let h = &parts.headers;
        if !has_token(h, header::CONNECTION, "upgrade") || !has_token(h, header::UPGRADE, "websocket") {
            return Err(bad("expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)"));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err((
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "WebSocket version 13 only",
            )
                .into_response());
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else { return Err(bad("Sec-WebSocket-Key is missing")) };
        if !valid_key(key) {
            return Err(bad(BAD_KEY));
        }
        let accept = accept_key(key.as_bytes());
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(bad("this connection cannot be upgraded"));
        };
        Ok(Upgrade { accept, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and runs `serve` on the connection once hyper hands it over.
    pub(crate) fn on_upgrade<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => serve(WebSocket::new(TokioIo::new(io), max_message)).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response()
    }
}

/// Whether a comma-separated header has `token` (case-insensitive), as `Connection:
/// keep-alive, Upgrade` does.
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Why a handshake whose key fails [`valid_key`] is refused.
pub(crate) const BAD_KEY: &str = "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)";

/// Whether a `Sec-WebSocket-Key` is what §4.2.1 asks for: 16 bytes in (padded) base64.
pub(crate) fn valid_key(key: &HeaderValue) -> bool {
    use base64::Engine as _;
    let mut raw = [0u8; 18];
    let key = key.as_bytes();
    key.len() == 24 && matches!(base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw), Ok(16))
}

/// `Sec-WebSocket-Accept` for a client's key (§4.2.2).
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let b64 = base64::engine::general_purpose::STANDARD.encode(h.finalize());
    // Base64 is always a valid header value.
    HeaderValue::from_str(&b64).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_gets_the_rfc_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_key_is_16_bytes_of_padded_base64() {
        let ok = |k: &str| valid_key(&HeaderValue::from_str(k).unwrap());
        assert!(ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(ok("AAAAAAAAAAAAAAAAAAAAAA=="));
        for bad in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",
            "AAAAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
            "!!!!!!!!!!!!!!!!!!!!!!==",
            "AAAAAAAAAAAAAAAAAAAAAA==AAAA",
            "AAAAAAAAAAAAAAAAAAAAAB==",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
    }
}

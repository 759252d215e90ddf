//! The HTTP API.

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::error::AppError;
use crate::hub::HubCmd;
use crate::node::{AuthError, Node};
use crate::{signal, yws};

pub(crate) fn router(node: Node) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/rooms", post(create_room))
        .route("/api/rooms/{room}", get(room_info))
        .route("/api/ice", get(ice))
        .route("/api/peers", get(peers))
        .route("/yws/{room}", get(yws::upgrade))
        .route("/signal", get(signal::upgrade));
    r = match node.cfg().static_dir.clone() {
        Some(dir) => r.fallback(move |uri: axum::http::Uri| serve_static(dir.clone(), uri)),
        None => r.route("/", get(index)).fallback(not_found),
    };
    r.layer(DefaultBodyLimit::max(64 * 1024)).with_state(node)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(node): State<Node>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics().render()).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoom {
    #[serde(default)]
    title: String,
    #[serde(default)]
    language: String,
    /// Invites valid for this many seconds (at most, and by default, `--token-ttl-hours`).
    #[serde(default, rename = "ttlSecs")]
    ttl_secs: Option<u64>,
}

async fn create_room(State(node): State<Node>, body: axum::body::Bytes) -> Result<Response, AppError> {
    let req: CreateRoom = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRoom::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    if req.title.len() > 200 || req.language.len() > 40 {
        return Err(AppError::BadRequest("title (≤ 200 bytes) or language (≤ 40 bytes) too long".into()));
    }
    let language = if req.language.is_empty() { "python".to_owned() } else { req.language };
    let max_ttl = node.cfg().token_ttl_hours.saturating_mul(3600);
    let ttl = req.ttl_secs.map_or(max_ttl, |t| t.min(max_ttl));
    let node2 = node.clone();
    let created = tokio::task::spawn_blocking(move || node2.create_room(&req.title, &language, ttl))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::from)?;
    tracing::info!(room = %created.room, "room created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) fn auth_error(e: AuthError) -> AppError {
    match e {
        AuthError::UnknownRoom => AppError::NotFound(e.message()),
        AuthError::MissingToken => AppError::Unauthorized(e.message()),
        AuthError::BadToken(_) => AppError::Forbidden(e.message()),
        AuthError::Internal(m) => AppError::Internal(m),
    }
}

fn bearer(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| q.get("token").cloned())
}

async fn room_info(
    State(node): State<Node>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    let token = bearer(&headers, &q);
    let (id, grant) = node.authorize(&room, token.as_deref()).map_err(auth_error)?;
    let hub = node.hub(&id, token.as_deref()).await?;
    let (tx, rx) = oneshot::channel();
    hub.send(HubCmd::Info { reply: tx }).await.map_err(|_| AppError::Internal("room actor stopped".into()))?;
    let mut info = rx.await.map_err(|_| AppError::Internal("room actor stopped".into()))?;
    info["yourRole"] = serde_json::json!(grant.role);
    Ok(Json(info))
}

async fn ice(State(node): State<Node>) -> Json<serde_json::Value> {
    let servers: Vec<_> = node
        .cfg()
        .ice_servers
        .iter()
        .map(|s| {
            // turn:user:pass@host:port → {urls, username, credential}
            match s.split_once('@') {
                Some((cred, host)) if s.starts_with("turn") => {
                    let (scheme, rest) = cred.split_once(':').unwrap_or((cred, ""));
                    let (user, pass) = rest.split_once(':').unwrap_or((rest, ""));
                    serde_json::json!({ "urls": format!("{scheme}:{host}"), "username": user, "credential": pass })
                }
                _ => serde_json::json!({ "urls": s }),
            }
        })
        .collect();
    Json(serde_json::json!({ "iceServers": servers }))
}

async fn peers(State(node): State<Node>) -> Json<serde_json::Value> {
    let (peer_id, multiaddrs) = crate::p2p::addrs(&node).await;
    Json(serde_json::json!({
        "nodeKey": node.public_key().to_hex(),
        "peerId": peer_id,
        "multiaddrs": multiaddrs,
    }))
}

async fn index(State(node): State<Node>) -> Html<String> {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>InterviewArena bootstrap node</title>\
<h1>InterviewArena bootstrap node</h1><p>node key <code>{}</code>, {} room(s). The web room is not built yet; the API:</p><ul>\
<li><code>GET /health</code></li><li><code>GET /metrics</code> (Prometheus)</li>\
<li><code>POST /api/rooms</code> {{title, language}} → room id and invite tokens</li>\
<li><code>GET /api/rooms/{{room}}?token=T</code></li><li><code>GET /api/ice</code></li><li><code>GET /api/peers</code></li>\
<li><code>/yws/{{room}}?token=T</code>: y-websocket</li><li><code>/signal?token=T</code>: y-webrtc signaling</li></ul>",
        node.public_key(),
        node.room_count()
    ))
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn serve_static(dir: std::path::PathBuf, uri: axum::http::Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    // `/room/{id}` is the SPA's room route.
    let rel = if path.is_empty() || path.starts_with("room/") { "index.html" } else { path };
    if rel.split('/').any(|seg| seg == ".." || seg.starts_with('.')) {
        return AppError::BadRequest("bad path".into()).into_response();
    }
    let full = dir.join(rel);
    match tokio::fs::read(&full).await {
        Ok(bytes) => {
            let ct = match full.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") | Some("mjs") => "text/javascript",
                Some("wasm") => "application/wasm",
                Some("css") => "text/css",
                Some("json") => "application/json",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            ([(header::CONTENT_TYPE, ct)], bytes).into_response()
        }
        Err(_) => AppError::NotFound(format!("{rel} not found")).into_response(),
    }
}

//! The HTTP API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::error::AppError;
use crate::limit::PerIp;
use crate::p2p::P2p;
use crate::registry::{AuthError, Registry};
use crate::room::RoomCmd;
use crate::runs::{RunBody, Runs};
use crate::{signal, yws};

/// The API handlers' state.
#[derive(Clone, Debug)]
struct Api {
    registry: Registry,
    /// The libp2p side, for `GET /api/peers` (None with `--no-p2p`).
    p2p: Option<Arc<P2p>>,
    /// `POST /api/rooms` per client IP.
    room_rate: Arc<PerIp>,
    /// Runs in rooms (`POST /api/rooms/{room}/runs`).
    runs: Arc<Runs>,
    /// User sync: `POST /api/rooms` ties rooms to directory users.
    users: Arc<crate::users::Users>,
}

/// Every route of the node: the API, `/yws`, `/signal`, and the web room's files.
pub(crate) fn router(
    registry: Registry,
    p2p: Option<Arc<P2p>>,
    exec: Option<Arc<dyn crate::exec::Executor>>,
    users: Arc<crate::users::Users>,
) -> Router {
    let room_rate = Arc::new(PerIp::per_minute(registry.cfg().room_create_per_minute));
    let token = registry.cfg().admin_token.as_ref().map(|t| t.expose().to_owned());
    let token_for_ai = token.clone();
    let access = crate::exec::Access { token, loopback_only: loopback_only(&registry) };
    let maxima = crate::exec::maxima(&registry.cfg().exec);
    let exec_routes = crate::exec::routes(exec.clone(), access.clone(), maxima);
    let runs = Arc::new(Runs::new(exec.clone(), maxima));
    let mut r = Router::new()
        .route("/health", get(move |headers: HeaderMap| health(exec.clone(), access.clone(), headers)))
        .merge(exec_routes)
        .merge(crate::ai::routes(&registry.cfg().ai, token_for_ai, loopback_only(&registry)))
        .merge(crate::analyze::routes(registry.clone(), &registry.cfg().ai))
        .merge(crate::users::routes(users.clone()))
        .route("/metrics", get(metrics))
        .route("/api/rooms", post(create_room))
        .route("/api/rooms/{room}", get(room_info))
        .route("/api/rooms/{room}/runs", post(run_in_room))
        .route("/api/ice", get(ice))
        .route("/api/peers", get(peers));
    r = match registry.cfg().static_dir.clone() {
        Some(dir) => r.fallback(move |uri: axum::http::Uri| serve_static(dir.clone(), uri)),
        None => r.route("/", get(index)).fallback(not_found),
    };
    r.with_state(Api { registry: registry.clone(), p2p, room_rate, runs, users })
        .merge(yws::routes(registry.clone()))
        .merge(signal::routes(registry))
        .layer(DefaultBodyLimit::max(64 * 1024))
}

/// `/health`: the executor's details other than host paths and URLs, which only the
/// operator sees (under `exec.operator`).
async fn health(
    exec: Option<Arc<dyn crate::exec::Executor>>,
    access: crate::exec::Access,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let mut exec = exec.map_or_else(|| serde_json::json!({ "backend": "off" }), |e| e.describe());
    if !access.is_operator(&headers) {
        if let Some(o) = exec.as_object_mut() {
            o.remove("operator");
        }
    }
    Json(serde_json::json!({ "status": "ok", "exec": exec }))
}

async fn metrics(State(api): State<Api>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], api.registry.metrics().render()).into_response()
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
    /// Directory users (Clerk ids) holding the host and candidate invites: the node then
    /// serves their signed profiles to the room (src/users).
    #[serde(default)]
    host_user: Option<String>,
    #[serde(default)]
    candidate_user: Option<String>,
}

/// Who may create rooms: the per-IP rate first (so guessing the operator token is slow too),
/// then the operator token (always when one is set; without one, only a node that listens on
/// loopback alone, behind no public URL, creates rooms), then a JSON content type, which a cross-site form cannot
/// send without the browser asking first (CORS), and this node answers no such question.
fn may_create_room(api: &Api, peer: SocketAddr, headers: &HeaderMap) -> Result<(), AppError> {
    let cfg = api.registry.cfg();
    if !api.room_rate.allow(peer.ip()) {
        let n = cfg.room_create_per_minute;
        return Err(AppError::TooManyRequests(format!("at most {n} rooms a minute from one address; wait a little")));
    }
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (cfg.admin_token.as_ref().map(crate::config::AdminToken::expose), sent) {
        (Some(want), Some(got)) if bool::from(want.as_bytes().ct_eq(got.as_bytes())) => {}
        (Some(_), Some(_)) => return Err(AppError::Unauthorized("wrong operator token".into())),
        (Some(_), None) => {
            return Err(AppError::Unauthorized(
                "creating rooms needs the operator token (Authorization: Bearer ...)".into(),
            ))
        }
        (None, _) if loopback_only(&api.registry) => {}
        (None, _) => {
            return Err(AppError::Unauthorized(
                "this node creates rooms only with an operator token: start it with --admin-token".into(),
            ))
        }
    }
    if !is_json(headers) {
        return Err(AppError::UnsupportedMediaType("send the body as JSON (Content-Type: application/json)".into()));
    }
    Ok(())
}

/// Whether only this machine can reach the node: it listens on loopback, and its public URL
/// (when set: a reverse proxy in front of a loopback node sets one) names loopback too.
fn loopback_only(node: &Registry) -> bool {
    node.cfg().http_addr.ip().is_loopback() && node.cfg().public_url.as_deref().is_none_or(url_host_is_loopback)
}

/// Whether a URL's host is `localhost` or a loopback address.
fn url_host_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn create_room(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let node = &api.registry;
    if let Err(e) = may_create_room(&api, peer, &headers) {
        crate::metrics::inc(&node.metrics().api_refused, 1);
        return Err(e);
    }
    let req: CreateRoom = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRoom::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    if req.title.len() > 200 || req.language.len() > 40 {
        return Err(AppError::BadRequest("title (≤ 200 bytes) or language (≤ 40 bytes) too long".into()));
    }
    let (host_user, candidate_user) = (req.host_user.clone(), req.candidate_user.clone());
    let bind =
        |room: Option<&str>| crate::users::bind_room(&api.users, room, host_user.as_deref(), candidate_user.as_deref());
    bind(None).map_err(AppError::BadRequest)?;
    let language = if req.language.is_empty() { "python".to_owned() } else { req.language };
    let max_ttl = node.cfg().token_ttl_hours.saturating_mul(3600);
    let ttl = req.ttl_secs.map_or(max_ttl, |t| t.min(max_ttl));
    let node2 = node.clone();
    let created = tokio::task::spawn_blocking(move || node2.create_room(&req.title, &language, ttl))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::from)?;
    tracing::info!(room = %created.room, "room created");
    let users = bind(Some(&created.room)).map_err(AppError::Internal)?;
    let mut answer = serde_json::json!(created);
    if !users.is_null() {
        answer["users"] = users;
    }
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub(crate) fn auth_error(e: AuthError) -> AppError {
    match e {
        AuthError::UnknownRoom => AppError::NotFound(e.message()),
        AuthError::MissingToken => AppError::Unauthorized(e.message()),
        AuthError::BadToken(_) | AuthError::Revoked => AppError::Forbidden(e.message()),
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
    State(Api { registry: node, .. }): State<Api>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    let token = bearer(&headers, &q);
    let (id, grant) = node.authorize(&room, token.as_deref()).map_err(auth_error)?;
    let actor = node.actor(&id, token.as_deref()).await?;
    let (tx, rx) = oneshot::channel();
    actor.send(RoomCmd::Info { reply: tx }).await.map_err(|_| AppError::Internal("room actor stopped".into()))?;
    let mut info = rx.await.map_err(|_| AppError::Internal("room actor stopped".into()))?;
    info["yourRole"] = serde_json::json!(grant.role);
    Ok(Json(info))
}

/// `POST /api/rooms/{room}/runs`: runs the room's code for its host or candidate (their
/// invite token), streaming the run into the room's `runs`; answers the final record.
async fn run_in_room(
    State(api): State<Api>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    let node = &api.registry;
    let token = bearer(&headers, &q);
    let (id, grant) = node.authorize_unrevoked(&room, token.as_deref()).map_err(auth_error)?;
    if !matches!(grant.role, arena_core::Role::Host | arena_core::Role::Candidate) {
        return Err(AppError::Forbidden(format!("a {} may not run code in the room", grant.role)));
    }
    // A cross-site form cannot send JSON without the browser asking first (CORS).
    if !is_json(&headers) {
        return Err(AppError::UnsupportedMediaType("send the body as JSON (Content-Type: application/json)".into()));
    }
    let req: RunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let token = token.unwrap_or_default();
    let answer = api.runs.run(node, id, token, grant.invite.to_hex(), req).await?;
    Ok(Json(answer))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// `GET /api/ice[?room=R&token=T]`: the `RTCConfiguration.iceServers` to use. With a room
/// member's token (any role: observers and recorders receive the call) and TURN configured,
/// it also lists the TURN servers with a credential minted for that member (src/turn.rs);
/// a stranger gets the STUN and static servers only, so the node is no open relay.
async fn ice(
    State(api): State<Api>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AppError> {
    let cfg = api.registry.cfg();
    let mut servers: Vec<_> = cfg
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
    let token = bearer(&headers, &q);
    if let (Some(room), Some(_)) = (q.get("room"), token.as_deref()) {
        let (id, grant) = api.registry.authorize_unrevoked(room, token.as_deref()).map_err(auth_error)?;
        let label = format!("{}-{}-{}", &id.to_hex()[..16], grant.role, &grant.invite.to_hex()[..8]);
        if let Some(c) = cfg.turn.enabled().then(|| cfg.turn.mint(&label, crate::clock::now_ms() / 1000)).flatten() {
            servers.push(
                serde_json::json!({ "urls": cfg.turn.turn_urls, "username": c.username, "credential": c.credential }),
            );
        }
    } else if q.contains_key("room") || token.is_some() {
        return Err(AppError::BadRequest("give both `room` and the member's `token` (or neither)".into()));
    }
    Ok(Json(serde_json::json!({ "iceServers": servers })))
}

async fn peers(State(api): State<Api>) -> Json<serde_json::Value> {
    let (peer_id, multiaddrs) = crate::p2p::addrs(api.p2p.as_deref()).await;
    Json(serde_json::json!({
        "nodeKey": api.registry.public_key().to_hex(),
        "peerId": peer_id,
        "multiaddrs": multiaddrs,
    }))
}

async fn index(State(Api { registry: node, .. }): State<Api>) -> Html<String> {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>InterviewArena bootstrap node</title>\
<h1>InterviewArena bootstrap node</h1><p>node key <code>{}</code>, {} room(s). The web room is not built yet; the API:</p><ul>\
<li><code>GET /health</code></li><li><code>GET /metrics</code> (Prometheus)</li>\
<li><code>POST /api/rooms</code> JSON {{title, language, ttlSecs}} → room id and invite tokens (the operator token as <code>Authorization: Bearer</code> unless the node is loopback-only)</li>\
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

#[cfg(test)]
mod tests {
    use super::url_host_is_loopback;

    #[test]
    fn public_urls_on_loopback_and_beyond() {
        for url in ["http://127.0.0.1:8080", "http://localhost/", "https://[::1]:8443/x", "http://127.0.0.2"] {
            assert!(url_host_is_loopback(url), "{url}");
        }
        for url in
            ["https://arena.example.org", "http://10.0.0.5:8080", "http://127.0.0.1.example.org", "http://[::]:80"]
        {
            assert!(!url_host_is_loopback(url), "{url}");
        }
    }
}

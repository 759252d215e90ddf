//! The user sync's HTTP side: Clerk's webhook, the operator's endpoints (operator token
//! required, always), the room members' profiles, and the hook of `POST /api/rooms`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::clock::now_ms;
use crate::registry::AuthError;
use crate::users::clerk::{self, Change, Event, User};
use crate::users::svix::{self, SvixError};
use crate::users::{reconcile, sinks, Users};

/// Largest reconcile body (an export of some 100,000 users).
const MAX_RECONCILE: usize = 64 << 20;

/// The routes; `users` is their state.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(users: Arc<Users>) -> Router<S> {
    Router::new()
        .route("/webhooks/clerk", post(clerk_webhook))
        .route("/api/admin/jobs", get(jobs))
        .route("/api/admin/jobs/retry", post(retry))
        .route("/api/admin/users/reconcile", post(reconcile_users))
        .route("/api/users/{id}", get(user))
        .route("/api/rooms/{room}/profiles", get(room_profiles))
        .with_state(users)
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "user sync");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// `POST /webhooks/clerk`: verified, parsed, its jobs enqueued and made durable, then 200.
async fn clerk_webhook(State(users): State<Arc<Users>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if users.secrets.is_empty() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "no webhook secret configured (--clerk-webhook-secret)");
    }
    let h = match svix::Headers::read(|name| headers.get(name).and_then(|v| v.to_str().ok())) {
        Ok(h) => h,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
    if let Err(e) = svix::verify(&users.secrets, &h, &body, now) {
        let status = match e {
            SvixError::MissingHeader(_) | SvixError::BadId | SvixError::BadTimestamp | SvixError::NoSignature => {
                StatusCode::BAD_REQUEST
            }
            SvixError::TooOld(_) | SvixError::TooNew(_) | SvixError::Mismatch => StatusCode::UNAUTHORIZED,
        };
        tracing::warn!(id = %h.id, error = %e, "clerk webhook refused");
        return refuse(status, e.to_string());
    }
    let event = match clerk::parse_event(&body) {
        Ok(e) => e,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let (kind, jobs) = match &event {
        Event::User(kind, change) => (kind.clone(), sinks::jobs_for(kind, change, &users.urls, true)),
        Event::Other(kind) => (kind.clone(), Vec::new()),
    };
    let fresh = match users.queue.enqueue(h.id, &jobs, now_ms()) {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    if let Err(e) = users.flusher.flush().await {
        return internal(e);
    }
    if !fresh {
        return Json(json!({ "duplicate": true, "id": h.id })).into_response();
    }
    users.wake_workers();
    tracing::debug!(id = %h.id, %kind, jobs = jobs.len(), "clerk webhook queued");
    match event {
        Event::User(..) => Json(json!({ "queued": jobs.len(), "id": h.id })).into_response(),
        Event::Other(kind) => Json(json!({ "ignored": kind, "id": h.id })).into_response(),
    }
}

/// The operator token, checked in constant time; a node without one refuses. The refusal,
/// if any.
fn not_operator(users: &Users, headers: &HeaderMap) -> Option<Response> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (users.registry.cfg().admin_token.as_ref().map(crate::config::AdminToken::expose), sent) {
        (Some(want), Some(got)) if bool::from(want.as_bytes().ct_eq(got.as_bytes())) => None,
        (Some(_), Some(_)) => Some(refuse(StatusCode::UNAUTHORIZED, "wrong operator token")),
        (Some(_), None) => {
            Some(refuse(StatusCode::UNAUTHORIZED, "needs the operator token (Authorization: Bearer ...)"))
        }
        (None, _) => Some(refuse(
            StatusCode::UNAUTHORIZED,
            "this node has no operator token: start it with --admin-token to use the user endpoints",
        )),
    }
}

/// `GET /api/admin/jobs`: counts, the dead-letter list, the recent job log.
async fn jobs(State(users): State<Arc<Users>>, headers: HeaderMap) -> Response {
    if let Some(r) = not_operator(&users, &headers) {
        return r;
    }
    match users.queue.status() {
        Ok(s) => Json(s).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    /// One dead job; all of them without.
    #[serde(default)]
    id: Option<u64>,
}

/// `POST /api/admin/jobs/retry` `{"id": N}` or `{}`: dead jobs back in the queue.
async fn retry(State(users): State<Arc<Users>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(r) = not_operator(&users, &headers) {
        return r;
    }
    let req: Retry = if body.iter().all(u8::is_ascii_whitespace) {
        Retry::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
        }
    };
    match users.queue.retry_dead(req.id, now_ms()) {
        Ok(n) => {
            users.wake_workers();
            Json(json!({ "retried": n })).into_response()
        }
        Err(e) => internal(e),
    }
}

/// `GET /api/users/{id}`: the directory entry, and the rooms the user is in.
async fn user(State(users): State<Arc<Users>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = not_operator(&users, &headers) {
        return r;
    }
    if !clerk::valid_id(&id) {
        return refuse(StatusCode::BAD_REQUEST, "not a user id");
    }
    match (users.directory.get(&id), users.profiles.rooms_of(&id)) {
        (Ok(Some(u)), Ok(rooms)) => {
            let rooms: Vec<Value> =
                rooms.into_iter().map(|(room, role)| json!({ "room": room, "role": role })).collect();
            let mut v = json!(u);
            v["rooms"] = json!(rooms);
            Json(v).into_response()
        }
        (Ok(None), _) => refuse(StatusCode::NOT_FOUND, "no such user in the directory"),
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

/// `POST /api/admin/users/reconcile` `{"users": [User], "keepMissing": bool}` (what the CLI
/// sends): jobs that bring the directory in line with the list.
/// The token is checked before the body (up to 64 MiB) is read.
async fn reconcile_users(State(users): State<Arc<Users>>, request: axum::extract::Request) -> Response {
    if let Some(r) = not_operator(&users, request.headers()) {
        return r;
    }
    let body = match axum::body::to_bytes(request.into_body(), MAX_RECONCILE).await {
        Ok(b) => b,
        Err(e) => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {MAX_RECONCILE} bytes or cut short: {e}"))
        }
    };
    let req: reconcile::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    if let Some(bad) = req.users.iter().find(|u| !clerk::valid_id(&u.id)) {
        return refuse(StatusCode::BAD_REQUEST, format!("not a user id: {:?}", bad.id));
    }
    let current = match users.directory.all() {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let plan = reconcile::plan(&current, &req.users, req.keep_missing);
    let at = now_ms();
    let mut queued = 0;
    for (n, change) in plan.changes.iter().enumerate() {
        let kind = match change {
            Change::Upsert(_) => "user.updated",
            Change::Delete(_) => "user.deleted",
        };
        // Reconciling is the node's own business: no outbound webhooks.
        let jobs = sinks::jobs_for(kind, change, &[], false);
        match users.queue.enqueue(&format!("reconcile:{at}:{n}"), &jobs, at) {
            Ok(_) => queued += jobs.len(),
            Err(e) => return internal(e),
        }
    }
    if let Err(e) = users.flusher.flush().await {
        return internal(e);
    }
    users.wake_workers();
    tracing::info!(upserts = plan.upserts, deletes = plan.deletes, unchanged = plan.unchanged, "users reconciled");
    Json(json!({ "upserts": plan.upserts, "deletes": plan.deletes, "unchanged": plan.unchanged, "jobs": queued }))
        .into_response()
}

/// `GET /api/rooms/{room}/profiles?token=T`: the node's signed records of the room's
/// directory users, for its members (any role).
async fn room_profiles(
    State(users): State<Arc<Users>>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| q.get("token").cloned());
    let id = match users.registry.authorize_unrevoked(&room, token.as_deref()) {
        Ok((id, _)) => id,
        Err(e) => {
            let status = match e {
                AuthError::UnknownRoom => StatusCode::NOT_FOUND,
                AuthError::MissingToken => StatusCode::UNAUTHORIZED,
                AuthError::BadToken(_) | AuthError::Revoked => StatusCode::FORBIDDEN,
                AuthError::Internal(m) => return internal(m),
            };
            return refuse(status, e.message());
        }
    };
    match users.profiles.list(&id.to_hex()) {
        Ok(list) => Json(json!({ "profiles": list, "nodeKey": users.identity.public().to_hex() })).into_response(),
        Err(e) => internal(e),
    }
}

/// `POST /api/rooms`'s hook: ties the room's host and candidate to directory users (ids
/// checked first: call before creating the room, then with `room` after), and writes their
/// records at once when the directory has them. Returns role → user for the answer.
pub(crate) fn bind_room(
    users: &Users,
    room: Option<&str>,
    host: Option<&str>,
    candidate: Option<&str>,
) -> Result<Value, String> {
    let pairs: Vec<(&str, &str)> =
        [("host", host), ("candidate", candidate)].into_iter().filter_map(|(r, u)| u.map(|u| (r, u))).collect();
    for (role, u) in &pairs {
        if !clerk::valid_id(u) {
            return Err(format!("{role}_user is not a user id (1 to 128 printable ASCII characters, no `/`)"));
        }
    }
    if host.is_some() && host == candidate {
        return Err("host_user and candidate_user are the same user".into());
    }
    let Some(room) = room else { return Ok(Value::Null) };
    let mut named = serde_json::Map::new();
    for (role, u) in pairs {
        users.profiles.bind(room, role, u).map_err(|e| e.to_string())?;
        let known: Option<User> = users.directory.get(u).map_err(|e| e.to_string())?;
        if let Some(user) = known {
            let rec = crate::users::profiles::sign(&users.identity, room, role, &user, now_ms());
            users.profiles.put(room, u, &rec).map_err(|e| e.to_string())?;
        }
        named.insert(role.to_owned(), json!(u));
    }
    Ok(Value::Object(named))
}

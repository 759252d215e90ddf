//! `POST /api/rooms/{room}/analyze`: the consensus-gated code analyzer.
//!
//! Only a host's invite token asks; the room's actor checks the current round's signed votes
//! under the room's rule (arena-core's [`arena_core::Consensus`]) and hands out the code; the
//! analyzer ([`crate::ai::Ai::analyze_code`]) runs here, outside the actor; the actor checks
//! the votes again and writes the result into the room's `analysis` root as the node, which
//! starts the next round. One analysis per room at a time (a flood of requests gets 429).
//!
//! arena-core's `AnalysisRecord` keeps `findings` as strings: each is one JSON object, the
//! first `{"kind":"summary","summary","language","model"}`, then one
//! `{"kind":"finding","rule","severity","lineStart","lineEnd","message"}` per finding.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::ai::{Ai, AiConfig, CodeAnalysis};
use crate::registry::{AuthError, Registry};
use crate::room::{AnalyzeRefusal, RoomCmd};

#[derive(Debug)]
struct AnalyzeState {
    registry: Registry,
    ai: Ai,
    /// Rooms whose analysis is running.
    running: Mutex<HashSet<arena_core::RoomId>>,
}

/// The route, with its own state.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(registry: Registry, cfg: &AiConfig) -> Router<S> {
    let state = Arc::new(AnalyzeState { registry, ai: Ai::new(cfg), running: Mutex::new(HashSet::new()) });
    Router::new().route("/api/rooms/{room}/analyze", post(analyze)).with_state(state)
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    (status, Json(json!({ "error": msg }))).into_response()
}

fn refusal(r: AnalyzeRefusal) -> Response {
    match r {
        AnalyzeRefusal::NotHost(m) => refuse(StatusCode::FORBIDDEN, m),
        AnalyzeRefusal::NoConsensus(m) => refuse(StatusCode::CONFLICT, m),
        AnalyzeRefusal::Internal(m) => {
            tracing::error!(error = %m, "analysis failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Frees a room's "running" mark however the request ends.
struct Running<'a>(&'a AnalyzeState, arena_core::RoomId);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.running.lock() {
            set.remove(&self.1);
        }
    }
}

/// The analysis as stored in the document's `findings` strings.
fn findings_of(a: &CodeAnalysis, model: &str) -> Vec<String> {
    let mut out = vec![json!({
        "kind": "summary",
        "summary": a.report.summary,
        "language": a.report.language,
        "model": model,
    })
    .to_string()];
    out.extend(a.report.findings.iter().map(|f| {
        json!({
            "kind": "finding",
            "rule": f.rule,
            "severity": f.severity,
            "lineStart": f.line_start,
            "lineEnd": f.line_end,
            "message": f.message,
        })
        .to_string()
    }));
    out
}

/// The model's name in a backend string (`llm (<model>)`), else empty (offline).
fn model_of(backend: &str) -> String {
    backend.strip_prefix("llm (").and_then(|r| r.strip_suffix(')')).unwrap_or_default().to_owned()
}

async fn analyze(
    State(st): State<Arc<AnalyzeState>>,
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
    let (id, grant) = match st.registry.authorize_unrevoked(&room, token.as_deref()) {
        Ok(v) => v,
        Err(e @ AuthError::UnknownRoom) => return refuse(StatusCode::NOT_FOUND, e.message()),
        Err(e @ AuthError::MissingToken) => return refuse(StatusCode::UNAUTHORIZED, e.message()),
        Err(e @ (AuthError::BadToken(_) | AuthError::Revoked)) => return refuse(StatusCode::FORBIDDEN, e.message()),
        Err(AuthError::Internal(m)) => return refusal(AnalyzeRefusal::Internal(m)),
    };
    if grant.role != arena_core::Role::Host {
        return refuse(StatusCode::FORBIDDEN, "only the host may trigger the analyzer");
    }
    let fresh = st.running.lock().map(|mut s| s.insert(id)).unwrap_or(false);
    if !fresh {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "an analysis of this room is already running");
    }
    let _running = Running(&st, id);
    let actor = match st.registry.actor(&id, token.as_deref()).await {
        Ok(a) => a,
        Err(e) => return crate::error::AppError::from(e).into_response(),
    };
    let gone = || refusal(AnalyzeRefusal::Internal("room actor stopped".into()));
    let (tx, rx) = oneshot::channel();
    if actor.send(RoomCmd::AnalyzeCheck { invite: grant.invite, reply: tx }).await.is_err() {
        return gone();
    }
    let ticket = match rx.await {
        Ok(Ok(t)) => t,
        Ok(Err(r)) => return refusal(r),
        Err(_) => return gone(),
    };
    let analysis = match st.ai.analyze_code(&ticket.language, &ticket.code).await {
        Ok(a) => a,
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, format!("the analyzer cannot read this code: {e}")),
    };
    let model = model_of(&analysis.backend);
    let findings = findings_of(&analysis, &model);
    let (tx, rx) = oneshot::channel();
    let cmd = RoomCmd::AnalyzeWrite {
        trigger: ticket.trigger,
        round: ticket.round,
        backend: analysis.backend.clone(),
        findings,
        reply: tx,
    };
    if actor.send(cmd).await.is_err() {
        return gone();
    }
    match rx.await {
        Ok(Ok(())) => {}
        Ok(Err(r)) => return refusal(r),
        Err(_) => return gone(),
    }
    let body: Value = json!({
        "round": ticket.round,
        "nextRound": ticket.round + 1,
        "backend": analysis.backend,
        "model": model,
        "language": analysis.report.language,
        "summary": analysis.report.summary,
        "findings": analysis.report.findings.iter().map(|f| json!({
            "rule": f.rule, "severity": f.severity, "lineStart": f.line_start, "lineEnd": f.line_end, "message": f.message,
        })).collect::<Vec<_>>(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

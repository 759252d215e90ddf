//! `POST /api/resume/analyze`: a resume (PDF or text) and a job description, as multipart
//! or JSON, in; the analysis out.
//!
//! Who may ask: the analysis costs CPU (PDF parsing) and, with a model configured, the
//! operator's tokens, so it is guarded as `POST /api/rooms` is: the per-IP rate first, then
//! the operator token (always when one is set; without one only a loopback-only node
//! serves it), unless `--ai-public` opens it on purpose. Bodies over `--resume-max-bytes`
//! are refused before they are read whole, and at most [`MAX_BUSY`] analyses run at once.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::pdf::{self, PdfError, PdfLimits};
use super::resume::ResumeError;
use super::{Ai, AiConfig};
use crate::limit::PerIp;

/// Analyses running at once on the node; more are answered 503.
const MAX_BUSY: usize = 4;
/// The longest job description read (bytes).
const MAX_JD: usize = 64 * 1024;

#[derive(Debug)]
struct AiState {
    ai: Ai,
    rate: PerIp,
    busy: Semaphore,
    max_bytes: usize,
    per_minute: u32,
    /// `Some(token)`: wanted; `None` with `open`: anyone.
    token: Option<String>,
    open: bool,
}

/// The routes, with their own state, for the node's router: `token` is the operator token
/// (`--admin-token`), `loopback_only` whether only this machine can reach the node (as
/// `POST /api/rooms` decides both).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    cfg: &AiConfig,
    token: Option<String>,
    loopback_only: bool,
) -> Router<S> {
    let state = Arc::new(AiState {
        ai: Ai::new(cfg),
        rate: PerIp::per_minute(cfg.ai_per_minute),
        busy: Semaphore::new(MAX_BUSY),
        max_bytes: cfg.resume_max_bytes,
        per_minute: cfg.ai_per_minute,
        open: cfg.ai_public || (loopback_only && token.is_none()),
        token,
    });
    Router::new()
        .route("/api/resume/analyze", post(analyze))
        // Our own limit, answered as JSON (the node's 64 KiB default would cut uploads).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    let msg = msg.into();
    (status, Json(serde_json::json!({ "error": msg, "message": msg }))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBody {
    resume: String,
    job_description: String,
}

async fn analyze(State(st): State<Arc<AiState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    if let Err((status, msg)) = admit(&st, peer, req.headers()) {
        return refuse(status, msg);
    }
    let too_big = || refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("the request is over {} bytes", st.max_bytes));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > st.max_bytes) {
        return too_big();
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, st.max_bytes).await {
        Ok(b) => b,
        Err(_) => return too_big(),
    };
    let (resume, jd) = match content_type.as_str() {
        "application/json" => match serde_json::from_slice::<JsonBody>(&bytes) {
            Ok(b) => (Upload::Text(b.resume), b.job_description),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
        },
        "multipart/form-data" => {
            let req = Request::from_parts(parts, Body::from(bytes));
            match read_multipart(req).await {
                Ok(v) => v,
                Err(r) => return r,
            }
        }
        _ => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send multipart/form-data (resume, job_description) or JSON {\"resume\", \"job_description\"}",
            )
        }
    };
    if jd.len() > MAX_JD {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("the job description is over {MAX_JD} bytes"));
    }
    let Ok(_permit) = st.busy.try_acquire() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the analyzer is busy; try again shortly");
    };
    let text = match resume {
        Upload::Text(t) => t,
        Upload::Pdf(bytes) => {
            let limits = PdfLimits { max_bytes: st.max_bytes, ..PdfLimits::default() };
            match tokio::task::spawn_blocking(move || pdf::extract_text(&bytes, limits)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e @ PdfError::TooLarge(..))) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
                Ok(Err(e @ (PdfError::Busy | PdfError::TimedOut))) => {
                    return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                }
                Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
                Err(e) => {
                    tracing::error!(error = %e, "PDF task failed");
                    return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
                }
            }
        }
    };
    match st.ai.analyze_resume(&text, &jd).await {
        Ok(report) => Json(report).into_response(),
        Err(e @ (ResumeError::EmptyResume | ResumeError::EmptyJob)) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "resume analysis failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

enum Upload {
    Text(String),
    Pdf(Vec<u8>),
}

/// Rate first (so guessing the token is slow too), then the token unless open.
fn admit(st: &AiState, peer: SocketAddr, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    if !st.rate.allow(peer.ip()) {
        let n = st.per_minute;
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {n} analyses a minute from one address; wait a little"),
        ));
    }
    if st.open {
        return Ok(());
    }
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (st.token.as_deref(), sent) {
        (Some(want), Some(got)) if bool::from(want.as_bytes().ct_eq(got.as_bytes())) => Ok(()),
        (Some(_), Some(_)) => Err((StatusCode::UNAUTHORIZED, "wrong operator token".into())),
        (Some(_), None) => Err((
            StatusCode::UNAUTHORIZED,
            "resume analysis needs the operator token (Authorization: Bearer ...)".into(),
        )),
        (None, _) => Err((
            StatusCode::UNAUTHORIZED,
            "this node analyzes resumes only with an operator token (--admin-token) or with --ai-public".into(),
        )),
    }
}

async fn read_multipart(req: Request) -> Result<(Upload, String), Response> {
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, m);
    let mut mp = Multipart::from_request(req, &()).await.map_err(|e| bad(format!("invalid multipart body: {e}")))?;
    let (mut resume, mut jd) = (None, None);
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("invalid multipart body: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let data = field.bytes().await.map_err(|e| bad(format!("invalid multipart field {name:?}: {e}")))?;
        match name.as_str() {
            "resume" if pdf::is_pdf(&data) => resume = Some(Upload::Pdf(data.to_vec())),
            "resume" => match String::from_utf8(data.to_vec()) {
                Ok(t) => resume = Some(Upload::Text(t)),
                Err(_) => return Err(bad("the resume is neither a PDF nor UTF-8 text".into())),
            },
            "job_description" => match String::from_utf8(data.to_vec()) {
                Ok(t) => jd = Some(t),
                Err(_) => return Err(bad("the job description is not UTF-8 text".into())),
            },
            other => return Err(bad(format!("unknown field {other:?} (expected resume and job_description)"))),
        }
    }
    match (resume, jd) {
        (Some(r), Some(j)) => Ok((r, j)),
        (None, _) => Err(bad("the resume field is missing".into())),
        (_, None) => Err(bad("the job_description field is missing".into())),
    }
}

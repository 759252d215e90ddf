//! The Piston v2 API served by the node: `GET /api/v2/runtimes`, `POST /api/v2/execute`,
//! with Piston's JSON, so existing Piston clients work against it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::types::{ExecError, ExecOutcome, ExecRequest, Executor, Limits, SourceFile, StageOutcome, Status};

/// Largest request body (sources, stdin).
const MAX_BODY: usize = 1 << 20;

/// Who may use the endpoints.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    /// The operator token, required whenever set.
    pub(crate) token: Option<String>,
    /// Whether only this machine reaches the node (then no token is needed when none is set).
    pub(crate) loopback_only: bool,
}

#[derive(Clone, Debug)]
struct ApiState {
    exec: Option<Arc<dyn Executor>>,
    access: Access,
    max: Maxima,
}

/// The node's maxima, which are also the defaults (as in Piston).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Maxima {
    pub(crate) run_timeout: Duration,
    pub(crate) compile_timeout: Duration,
    pub(crate) memory: u64,
}

/// The routes, with their own state; merge them into the node's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(
    exec: Option<Arc<dyn Executor>>,
    access: Access,
    max: Maxima,
) -> Router<S> {
    Router::new()
        .route("/api/v2/runtimes", get(runtimes))
        .route("/api/v2/execute", post(execute))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ApiState { exec, access, max })
}

/// An error in Piston's shape: `{"message": ...}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "message": self.1 }))).into_response()
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        let status = match &e {
            ExecError::UnknownRuntime { .. } | ExecError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ExecError::Busy { .. } | ExecError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // Piston's own 400 passes through as it said it (its clients read `message`).
            ExecError::Upstream { status: 400, message } => return ApiError(StatusCode::BAD_REQUEST, message.clone()),
            ExecError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ExecError::Io(e) => {
                tracing::error!(error = %e, "code execution failed");
                return ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into());
            }
        };
        ApiError(status, e.to_string())
    }
}

impl Access {
    /// Whether the request comes from the operator (as code execution requires).
    pub(crate) fn is_operator(&self, headers: &HeaderMap) -> bool {
        allowed(self, headers).is_ok()
    }
}

/// The operator token when one is set; only loopback clients of a loopback node otherwise.
/// A browser page elsewhere cannot use a loopback node: its requests fail the JSON content
/// type (POST) or the Host check (DNS rebinding).
fn allowed(access: &Access, headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (access.token.as_deref(), sent) {
        (Some(want), Some(got)) if bool::from(want.as_bytes().ct_eq(got.as_bytes())) => Ok(()),
        (Some(_), Some(_)) => Err(ApiError(StatusCode::UNAUTHORIZED, "wrong operator token".into())),
        (Some(_), None) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "code execution needs the operator token (Authorization: Bearer ...)".into(),
        )),
        (None, _) if access.loopback_only => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if host_is_loopback(host) {
                Ok(())
            } else {
                Err(ApiError(StatusCode::FORBIDDEN, format!("Host {host:?} is not this machine's loopback")))
            }
        }
        (None, _) => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this node runs code only with an operator token: start it with --admin-token".into(),
        )),
    }
}

/// Whether a `Host` header names `localhost` or a loopback address (with any port).
fn host_is_loopback(host: &str) -> bool {
    let host = match host.trim().strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.trim().split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn executor(s: &ApiState) -> Result<&Arc<dyn Executor>, ApiError> {
    s.exec.as_ref().ok_or_else(|| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "code execution is off on this node (--exec-backend off)".into())
    })
}

async fn runtimes(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    allowed(&s.access, &headers)?;
    Ok(Json(executor(&s)?.runtimes().await?).into_response())
}

/// Piston's execute request.
#[derive(Debug, Deserialize)]
struct PistonRequest {
    language: String,
    #[serde(default)]
    version: Option<String>,
    files: Vec<PistonFile>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    compile_timeout: Option<f64>,
    #[serde(default)]
    run_timeout: Option<f64>,
    #[serde(default)]
    compile_memory_limit: Option<f64>,
    #[serde(default)]
    run_memory_limit: Option<f64>,
    // Newer Piston's CPU-time limits: accepted; the wall-clock limit bounds CPU time here.
    #[serde(default)]
    #[allow(dead_code)]
    compile_cpu_time: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    run_cpu_time: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct PistonFile {
    #[serde(default)]
    name: Option<String>,
    content: String,
    #[serde(default)]
    encoding: Option<String>,
}

/// A timeout in ms: absent is the maximum; otherwise a number in 0..=max.
fn timeout(what: &str, v: Option<f64>, max: Duration) -> Result<Duration, ApiError> {
    let Some(ms) = v else { return Ok(max) };
    if !ms.is_finite() || ms < 0.0 {
        return Err(bad(format!("{what} must be a number of milliseconds, 0 or more")));
    }
    if ms > max.as_millis() as f64 {
        return Err(bad(format!("{what} cannot exceed the configured maximum of {} ms", max.as_millis())));
    }
    Ok(Duration::from_millis(ms as u64).max(Duration::from_millis(1)))
}

/// A memory limit in bytes: absent or -1 is the maximum; otherwise a number in 0..=max.
fn memory(what: &str, v: Option<f64>, max: u64) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(-1.0) => Ok(None),
        Some(b) if !b.is_finite() || b < 0.0 => Err(bad(format!("{what} must be a number of bytes, or -1"))),
        Some(b) if b > max as f64 => Err(bad(format!("{what} cannot exceed the configured maximum of {max} bytes"))),
        Some(b) => Ok(Some(b as u64)),
    }
}

fn bad(m: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m)
}

fn decode(i: usize, f: PistonFile) -> Result<SourceFile, ApiError> {
    use base64::Engine;
    let content = match f.encoding.as_deref().unwrap_or("utf8") {
        "utf8" | "utf-8" => f.content.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(f.content.trim())
            .map_err(|e| bad(format!("files[{i}].content is not base64: {e}")))?,
        "hex" => hex(&f.content).ok_or_else(|| bad(format!("files[{i}].content is not hex")))?,
        other => return Err(bad(format!("files[{i}].encoding {other:?}: one of utf8, base64, hex"))),
    };
    Ok(SourceFile { name: f.name, content })
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

async fn execute(State(s): State<ApiState>, headers: HeaderMap, body: axum::body::Bytes) -> Result<Response, ApiError> {
    allowed(&s.access, &headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON (Content-Type: application/json)".into(),
        ));
    }
    let exec = executor(&s)?.clone();
    let req: PistonRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("invalid request body: {e}")))?;
    if req.language.trim().is_empty() {
        return Err(bad("language is required".into()));
    }
    let limits = Limits {
        compile_timeout: timeout("compile_timeout", req.compile_timeout, s.max.compile_timeout)?,
        run_timeout: timeout("run_timeout", req.run_timeout, s.max.run_timeout)?,
        compile_memory: memory("compile_memory_limit", req.compile_memory_limit, s.max.memory)?,
        run_memory: memory("run_memory_limit", req.run_memory_limit, s.max.memory)?,
    };
    let files = req.files.into_iter().enumerate().map(|(i, f)| decode(i, f)).collect::<Result<Vec<_>, _>>()?;
    let out = exec
        .execute(ExecRequest {
            language: req.language,
            version: req.version.unwrap_or_else(|| "*".into()),
            files,
            stdin: req.stdin.unwrap_or_default().into_bytes(),
            args: req.args.unwrap_or_default(),
            limits,
        })
        .await?;
    Ok(Json(PistonResponse::from(out)).into_response())
}

/// Piston's execute response.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PistonResponse {
    pub(crate) language: String,
    pub(crate) version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run: Option<PistonStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) compile: Option<PistonStage>,
}

/// One stage in Piston's shape, plus whether each stream was truncated.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PistonStage {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) output: String,
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) status: Option<Status>,
    /// Milliseconds.
    #[serde(default)]
    pub(crate) cpu_time: Option<u64>,
    /// Milliseconds.
    #[serde(default)]
    pub(crate) wall_time: Option<u64>,
    /// Bytes.
    #[serde(default)]
    pub(crate) memory: Option<u64>,
    #[serde(default)]
    pub(crate) stdout_truncated: bool,
    #[serde(default)]
    pub(crate) stderr_truncated: bool,
}

impl From<StageOutcome> for PistonStage {
    fn from(o: StageOutcome) -> Self {
        PistonStage {
            stdout: o.stdout,
            stderr: o.stderr,
            output: o.output,
            code: o.code,
            signal: o.signal,
            message: o.message,
            status: o.status,
            cpu_time: Some(o.cpu_time.as_millis() as u64),
            wall_time: Some(o.wall_time.as_millis() as u64),
            memory: o.memory,
            stdout_truncated: o.stdout_truncated,
            stderr_truncated: o.stderr_truncated,
        }
    }
}

impl From<PistonStage> for StageOutcome {
    fn from(p: PistonStage) -> Self {
        StageOutcome {
            stdout: p.stdout,
            stderr: p.stderr,
            output: p.output,
            code: p.code,
            signal: p.signal,
            status: p.status,
            message: p.message,
            cpu_time: Duration::from_millis(p.cpu_time.unwrap_or(0)),
            wall_time: Duration::from_millis(p.wall_time.unwrap_or(0)),
            memory: p.memory,
            stdout_truncated: p.stdout_truncated,
            stderr_truncated: p.stderr_truncated,
        }
    }
}

impl From<ExecOutcome> for PistonResponse {
    fn from(o: ExecOutcome) -> Self {
        PistonResponse {
            language: o.language,
            version: o.version,
            run: o.run.map(PistonStage::from),
            compile: o.compile.map(PistonStage::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_is_loopback;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:9", "[::1]:8080", "[::1]"] {
            assert!(host_is_loopback(h), "{h}");
        }
        for h in ["", "evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.0.0.1:80", "[::]:80"] {
            assert!(!host_is_loopback(h), "{h}");
        }
    }
}

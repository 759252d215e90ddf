//! The `piston` backend: forwards runs to a Piston v2 API (for operators who run Piston).

use std::time::Duration;

use super::api::{PistonResponse, PistonStage};
use super::types::{BoxFuture, ExecError, ExecOutcome, ExecRequest, Executor, Runtime, StageOutcome};

/// A client of a Piston v2 API.
#[derive(Debug, Clone)]
pub struct PistonExecutor {
    http: reqwest::Client,
    base: String,
}

impl PistonExecutor {
    /// A client of the Piston API at `base` (`http://host:2000`; `/api/v2` is added unless
    /// the URL already ends with it).
    pub fn new(base: &str) -> Result<Self, ExecError> {
        let base = base.trim().trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ExecError::Unavailable(format!("--piston-url {base:?}: an http:// or https:// URL is needed")));
        }
        let base = if base.ends_with("/api/v2") { base.to_owned() } else { format!("{base}/api/v2") };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ExecError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(PistonExecutor { http, base })
    }

    async fn get_runtimes(&self) -> Result<Vec<Runtime>, ExecError> {
        let resp = self
            .http
            .get(format!("{}/runtimes", self.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(unreachable)?;
        let resp = check(resp).await?;
        resp.json().await.map_err(|e| ExecError::Unavailable(format!("piston's runtimes: {e}")))
    }

    async fn post_execute(&self, req: ExecRequest) -> Result<ExecOutcome, ExecError> {
        use base64::Engine;
        let files: Vec<serde_json::Value> = req
            .files
            .iter()
            .map(|f| {
                let mut v = match std::str::from_utf8(&f.content) {
                    Ok(text) => serde_json::json!({ "content": text }),
                    Err(_) => serde_json::json!({
                        "content": base64::engine::general_purpose::STANDARD.encode(&f.content),
                        "encoding": "base64",
                    }),
                };
                if let Some(name) = &f.name {
                    v["name"] = serde_json::json!(name);
                }
                v
            })
            .collect();
        let ms = |d: Duration| d.as_millis() as u64;
        let mem = |m: Option<u64>| m.map_or(serde_json::json!(-1), |b| serde_json::json!(b));
        let body = serde_json::json!({
            "language": req.language,
            "version": req.version,
            "files": files,
            "stdin": String::from_utf8_lossy(&req.stdin),
            "args": req.args,
            "compile_timeout": ms(req.limits.compile_timeout),
            "run_timeout": ms(req.limits.run_timeout),
            "compile_memory_limit": mem(req.limits.compile_memory),
            "run_memory_limit": mem(req.limits.run_memory),
        });
        // The whole exchange may take both stages' time, plus Piston's own queue.
        let budget = req.limits.compile_timeout + req.limits.run_timeout + Duration::from_secs(60);
        let resp = self
            .http
            .post(format!("{}/execute", self.base))
            .json(&body)
            .timeout(budget)
            .send()
            .await
            .map_err(unreachable)?;
        let resp = check(resp).await?;
        let p: PistonResponse = resp
            .json()
            .await
            .map_err(|e| ExecError::Unavailable(format!("piston's answer is not Piston's JSON: {e}")))?;
        Ok(ExecOutcome {
            language: p.language,
            version: p.version,
            compile: p.compile.map(stage),
            run: p.run.map(stage),
        })
    }
}

/// A stage as Piston reported it; an old Piston without `status` gets one from the code.
fn stage(p: PistonStage) -> StageOutcome {
    let mut o = StageOutcome::from(p);
    if o.status.is_none() {
        if o.signal.is_some() {
            o.status = Some(super::types::Status::Signal);
        } else if o.code.is_some_and(|c| c != 0) {
            o.status = Some(super::types::Status::RuntimeError);
        }
    }
    o
}

fn unreachable(e: reqwest::Error) -> ExecError {
    if e.is_timeout() {
        ExecError::Unavailable(format!("piston did not answer in time: {e}"))
    } else {
        ExecError::Unavailable(format!("piston is unreachable: {e}"))
    }
}

/// Passes a success on; turns an error answer into `Upstream` with Piston's `message`.
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ExecError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect());
    Err(ExecError::Upstream { status: status.as_u16(), message })
}

impl Executor for PistonExecutor {
    fn runtimes(&self) -> BoxFuture<'_, Result<Vec<Runtime>, ExecError>> {
        Box::pin(self.get_runtimes())
    }

    fn execute(&self, req: ExecRequest) -> BoxFuture<'_, Result<ExecOutcome, ExecError>> {
        Box::pin(self.post_execute(req))
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "backend": "piston", "operator": { "url": self.base } })
    }
}

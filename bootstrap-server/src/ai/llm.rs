//! An OpenAI-compatible chat-completions client (Groq, OpenAI, Ollama, llama.cpp's server,
//! vLLM): structured output through `response_format` (`json_schema`, or `json_object` when
//! the server refuses schemas), optional SSE streaming, retries with backoff that honour
//! `retry-after` and `x-ratelimit-reset-*` on 429 and 5xx, one retry on invalid JSON
//! (Groq's `json_validate_failed`), connect and total timeouts, and strict parsing of the
//! answer into the caller's type.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::AiConfig;

/// The largest answer read (bytes).
const MAX_ANSWER: usize = 512 * 1024;

/// Why the model gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Could not connect, or the connection failed.
    #[error("the model server is unreachable ({0})")]
    Unreachable(String),
    /// The whole exchange took longer than `--llm-timeout-ms`.
    #[error("the model did not answer in time")]
    Timeout,
    /// Still rate-limited after the retries (or the wait it asked for is too long).
    #[error("rate-limited by the model server (HTTP 429)")]
    RateLimited,
    /// An HTTP error that retrying does not fix.
    #[error("the model server answered HTTP {0}: {1}")]
    Status(u16, String),
    /// The answer was not the JSON asked for, twice.
    #[error("the model's answer is not valid: {0}")]
    InvalidAnswer(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Schema,
    Object,
}

/// A configured client.
#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<String>,
    retries: u32,
    total: Duration,
    stream: bool,
}

/// Whether a URL's host is `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).ok().is_some_and(|u| {
        let host = u.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

impl LlmClient {
    /// The client `cfg` describes, or why there is none: no API key for a remote server
    /// (`ARENA_LLM_API_KEY` or `GROQ_API_KEY`), or no base URL.
    pub fn from_config(cfg: &AiConfig) -> Result<LlmClient, String> {
        let key = ["ARENA_LLM_API_KEY", "GROQ_API_KEY"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|k| !k.trim().is_empty()))
            .map(|k| k.trim().to_owned());
        Self::with_key(cfg, key)
    }

    /// As [`from_config`](Self::from_config), with the key given.
    pub fn with_key(cfg: &AiConfig, key: Option<String>) -> Result<LlmClient, String> {
        let base = cfg.llm_base_url.trim().trim_end_matches('/');
        if base.is_empty() || base.eq_ignore_ascii_case("off") {
            return Err("no model configured".into());
        }
        if reqwest::Url::parse(base).is_err() {
            return Err(format!("--llm-base-url {base:?} is not a URL"));
        }
        if key.is_none() && !is_loopback(base) {
            return Err("no API key (set ARENA_LLM_API_KEY or GROQ_API_KEY)".into());
        }
        let total = Duration::from_millis(cfg.llm_timeout_ms.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(cfg.llm_connect_timeout_ms.max(1)))
            .timeout(total)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(LlmClient {
            http,
            url: format!("{base}/chat/completions"),
            model: cfg.llm_model.clone(),
            key,
            retries: cfg.llm_retries,
            total,
            stream: cfg.llm_stream,
        })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Asks the model; its answer must be JSON that `T` (deny_unknown_fields) accepts and
    /// `check` passes. Gives up at `--llm-timeout-ms` after the first byte sent.
    pub async fn complete_json<T: DeserializeOwned>(
        &self,
        system: &str,
        user: &str,
        schema_name: &str,
        schema: &Value,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> Result<T, LlmError> {
        let deadline = Instant::now() + self.total;
        match tokio::time::timeout_at(deadline, self.exchange(system, user, schema_name, schema, &check, deadline))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(LlmError::Timeout),
        }
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        system: &str,
        user: &str,
        schema_name: &str,
        schema: &Value,
        check: &impl Fn(&T) -> Result<(), String>,
        deadline: Instant,
    ) -> Result<T, LlmError> {
        let mut format = Format::Schema;
        let mut stream = self.stream;
        let mut json_retry_left = true;
        let mut attempt = 0u32;
        loop {
            let body = self.body(system, user, schema_name, schema, format, stream);
            let mut req = self.http.post(&self.url).json(&body);
            if let Some(k) = &self.key {
                req = req.bearer_auth(k);
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    LlmError::Timeout
                } else {
                    LlmError::Unreachable(e.without_url().to_string())
                }
            })?;
            let status = resp.status();
            if status.is_success() {
                let content = if stream { read_sse(resp).await? } else { read_completion(resp).await? };
                match parse::<T>(&content).and_then(|v| check(&v).map(|()| v)) {
                    Ok(v) => return Ok(v),
                    Err(e) if json_retry_left => {
                        tracing::debug!(error = %e, "model answer invalid; asking once more");
                        json_retry_left = false;
                        continue;
                    }
                    Err(e) => return Err(LlmError::InvalidAnswer(e)),
                }
            }
            let headers = resp.headers().clone();
            let text = read_capped(resp).await.unwrap_or_default();
            let message = error_message(&text);
            match status {
                StatusCode::TOO_MANY_REQUESTS => {}
                s if s.is_server_error() => {}
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                    let l = text.to_lowercase();
                    if l.contains("json_validate_failed") && json_retry_left {
                        json_retry_left = false;
                        continue;
                    }
                    if format == Format::Schema && (l.contains("response_format") || l.contains("json_schema")) {
                        tracing::debug!(%message, "the server refuses json_schema; json_object instead");
                        format = Format::Object;
                        continue;
                    }
                    if stream && l.contains("stream") {
                        stream = false;
                        continue;
                    }
                    return Err(LlmError::Status(status.as_u16(), message));
                }
                s => return Err(LlmError::Status(s.as_u16(), message)),
            }
            // 429 or 5xx: wait as asked, or back off.
            if attempt >= self.retries {
                return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                    LlmError::RateLimited
                } else {
                    LlmError::Status(status.as_u16(), message)
                });
            }
            let wait = wait_hint(&headers).unwrap_or_else(|| Duration::from_millis(250 << attempt.min(6)));
            if Instant::now() + wait >= deadline {
                return Err(if status == StatusCode::TOO_MANY_REQUESTS {
                    LlmError::RateLimited
                } else {
                    LlmError::Timeout
                });
            }
            tracing::debug!(status = status.as_u16(), wait_ms = wait.as_millis() as u64, "model server busy; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn body(&self, system: &str, user: &str, name: &str, schema: &Value, format: Format, stream: bool) -> Value {
        let response_format = match format {
            Format::Schema => {
                json!({"type": "json_schema", "json_schema": {"name": name, "strict": true, "schema": schema}})
            }
            // json_object wants the word JSON in the messages (Groq refuses otherwise) and
            // does not carry the schema: put it in the prompt.
            Format::Object => json!({"type": "json_object"}),
        };
        let system = match format {
            Format::Schema => system.to_owned(),
            Format::Object => {
                format!("{system}\n\nAnswer with one JSON object that follows this JSON Schema exactly:\n{schema}")
            }
        };
        json!({
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "response_format": response_format,
            "stream": stream,
        })
    }
}

/// The content of a chat completion's first choice.
async fn read_completion(resp: reqwest::Response) -> Result<String, LlmError> {
    #[derive(Deserialize)]
    struct Completion {
        choices: Vec<Choice>,
    }
    #[derive(Deserialize)]
    struct Choice {
        message: Message,
        #[serde(default)]
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct Message {
        #[serde(default)]
        content: Option<String>,
    }
    let text = read_capped(resp).await?;
    let c: Completion =
        serde_json::from_str(&text).map_err(|e| LlmError::InvalidAnswer(format!("not a chat completion: {e}")))?;
    let choice = c.choices.into_iter().next().ok_or_else(|| LlmError::InvalidAnswer("no choices".into()))?;
    if choice.finish_reason.as_deref() == Some("length") {
        tracing::debug!("the model's answer was cut at its length limit");
    }
    Ok(choice.message.content.unwrap_or_default())
}

/// Reads a body up to [`MAX_ANSWER`] bytes.
async fn read_capped(mut resp: reqwest::Response) -> Result<String, LlmError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_ANSWER {
            return Err(LlmError::InvalidAnswer("answer too long".into()));
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn transport(e: reqwest::Error) -> LlmError {
    if e.is_timeout() {
        LlmError::Timeout
    } else {
        LlmError::Unreachable(e.without_url().to_string())
    }
}

/// The content of a streamed completion: `data: {chunk}` events, each with
/// `choices[0].delta.content`, until `data: [DONE]`.
async fn read_sse(mut resp: reqwest::Response) -> Result<String, LlmError> {
    let mut pending: Vec<u8> = Vec::new();
    let mut content = String::new();
    loop {
        let Some(chunk) = resp.chunk().await.map_err(transport)? else {
            // The stream ended without [DONE]: take what came if it is whole.
            return Ok(content);
        };
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim_start();
            if data == "[DONE]" {
                return Ok(content);
            }
            let v: Value =
                serde_json::from_str(data).map_err(|e| LlmError::InvalidAnswer(format!("bad stream event: {e}")))?;
            if let Some(err) = v.get("error") {
                return Err(LlmError::Status(200, error_message(&err.to_string())));
            }
            if let Some(piece) = v.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                content.push_str(piece);
            }
        }
        if content.len() + pending.len() > MAX_ANSWER {
            return Err(LlmError::InvalidAnswer("answer too long".into()));
        }
    }
}

/// The answer as `T`: one JSON object, possibly in a Markdown fence.
fn parse<T: DeserializeOwned>(content: &str) -> Result<T, String> {
    let t = content.trim();
    let t = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")).map_or(t, |r| r.trim_end_matches("```")).trim();
    serde_json::from_str(t).map_err(|e| e.to_string())
}

/// The `error.message` of an OpenAI-style error body, else the body, shortened.
fn error_message(body: &str) -> String {
    let m = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    m.chars().take(300).collect()
}

/// How long the server asks us to wait: `retry-after` (seconds), else the reset time of
/// whichever `x-ratelimit-remaining-*` is exhausted (`x-ratelimit-reset-requests: 2m59.56s`,
/// `x-ratelimit-reset-tokens: 7.66s`), else none.
pub(crate) fn wait_hint(h: &HeaderMap) -> Option<Duration> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(secs) = get("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(secs.clamp(0.0, 3600.0)));
    }
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 3600.0)));
    }
    ["requests", "tokens"]
        .iter()
        .filter(|k| get(&format!("x-ratelimit-remaining-{k}")).is_none_or(|r| r == "0"))
        .filter_map(|k| get(&format!("x-ratelimit-reset-{k}")).and_then(parse_duration))
        .max()
}

/// `2m59.56s`, `7.66s`, `120ms`, `1h2m`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some(Duration::from_secs_f64(secs.clamp(0.0, 3600.0)));
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if c == 'h' {
            (3600.0, 1)
        } else if c == 'm' {
            (60.0, 1)
        } else if c == 's' {
            (1.0, 1)
        } else {
            return None;
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        rest = &rest[len..];
    }
    num.is_empty().then(|| Duration::from_secs_f64(total.clamp(0.0, 3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_headers() {
        assert_eq!(parse_duration("2m59.56s"), Some(Duration::from_secs_f64(179.56)));
        assert_eq!(parse_duration("7.66s"), Some(Duration::from_secs_f64(7.66)));
        assert_eq!(parse_duration("120ms"), Some(Duration::from_millis(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("soon"), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "10".parse().unwrap_or_else(|_| unreachable!()));
        h.insert("x-ratelimit-reset-requests", "2m".parse().unwrap_or_else(|_| unreachable!()));
        h.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap_or_else(|_| unreachable!()));
        h.insert("x-ratelimit-reset-tokens", "1.5s".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(wait_hint(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-after", "2".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(2)));
        assert!(is_loopback("http://127.0.0.1:11434/v1") && is_loopback("http://localhost:8080/v1"));
        assert!(!is_loopback("https://api.groq.com/openai/v1"));
    }
}

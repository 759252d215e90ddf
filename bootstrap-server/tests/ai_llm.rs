//! The LLM client against a local server that answers as Groq's OpenAI-compatible chat
//! completions do, byte for byte (bodies and headers as the API sends them): a normal
//! answer, a streamed one, 429 with retry-after, 400 json_validate_failed, a schema
//! refusal, a server that never answers, 500s, and invalid JSON.

#![allow(clippy::panic, reason = "tests fail loudly")]

use std::sync::{Arc, Mutex};

use arena_bootstrap::ai::llm::LlmClient;
use arena_bootstrap::ai::{Ai, AiConfig};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

const RESUME: &str = "Dana Reyes\n- Led the migration of 40 services to k8s, cutting deploy time by 80%.\n- Built a Rust ingestion pipeline on Kafka.\n";
const JD: &str = "Requirements:\n- Must know Kubernetes\n- Terraform required\n";

/// What the model says: a valid analysis, as the content string.
fn analysis() -> String {
    serde_json::json!({
        "score": 81,
        "matched_skills": [{"skill": "Kubernetes", "importance": "required", "evidence": "Led the migration of 40 services to k8s, cutting deploy time by 80%."}],
        "skill_gaps": [{"skill": "Terraform", "importance": "required"}],
        "questions": [
            {"question": "Tell me about the k8s migration.", "targets": "resume: \"Led the migration of 40 services to k8s, cutting deploy time by 80%.\"", "why": "Required skill."},
            {"question": "How would you learn Terraform?", "targets": "gap: Terraform (required)", "why": "Required and missing."},
            {"question": "Tell me about the Kafka pipeline.", "targets": "resume: \"Built a Rust ingestion pipeline on Kafka.\"", "why": "Scale."}
        ]
    })
    .to_string()
}

fn completion(content: &str) -> String {
    let c = serde_json::to_string(content).unwrap_or_default();
    format!(
        r#"{{"id":"chatcmpl-f51b2cd2-bef7-417e-964e-a08f0b513c22","object":"chat.completion","created":1730241104,"model":"llama-3.3-70b-versatile","choices":[{{"index":0,"message":{{"role":"assistant","content":{c}}},"logprobs":null,"finish_reason":"stop"}}],"usage":{{"queue_time":0.037493756,"prompt_tokens":412,"prompt_time":0.000680594,"completion_tokens":218,"completion_time":0.463333333,"total_tokens":630,"total_time":0.464013927}},"system_fingerprint":"fp_179b0f92c9","x_groq":{{"id":"req_01jbd6g2qdfw2adyrt2az8hz4w"}}}}"#
    )
}

fn sse(content: &str) -> String {
    let head = r#"{"id":"chatcmpl-2b3c","object":"chat.completion.chunk","created":1730241104,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_179b0f92c9","choices":["#;
    let mut out = format!("data: {head}{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}],\"x_groq\":{{\"id\":\"req_01jbd6g2qdfw2adyrt2az8hz4w\"}}}}\n\n");
    let chars: Vec<char> = content.chars().collect();
    for piece in chars.chunks(17) {
        let p = serde_json::to_string(&piece.iter().collect::<String>()).unwrap_or_default();
        out.push_str(&format!(
            "data: {head}{{\"index\":0,\"delta\":{{\"content\":{p}}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    out.push_str(&format!("data: {head}{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"x_groq\":{{\"id\":\"req_01jbd6g2qdfw2adyrt2az8hz4w\",\"usage\":{{\"queue_time\":0.02,\"prompt_tokens\":412,\"prompt_time\":0.0007,\"completion_tokens\":218,\"completion_time\":0.46,\"total_tokens\":630,\"total_time\":0.46}}}}}}\n\n"));
    out.push_str("data: [DONE]\n\n");
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Normal,
    Stream,
    RateLimitedOnce,
    JsonValidateFailedOnce,
    RefusesSchemas,
    Hangs,
    AlwaysFails,
    Garbage,
    Code,
    CodeOutOfRange,
}

/// The model's findings about `CODE`, one at `line`.
fn code_answer(line: u32) -> String {
    serde_json::json!({
        "summary": "Correct for non-empty input; divides by zero on an empty list.",
        "findings": [
            {"rule": "division-by-zero", "severity": "error", "line_start": line, "line_end": line, "message": "len(xs) is 0 for an empty list."},
            {"rule": "naming", "severity": "info", "line_start": 1, "line_end": 1, "message": "`avg` would read better."}
        ]
    })
    .to_string()
}

const CODE: &str = "def average(xs):\n    return sum(xs) / len(xs)\n";

#[derive(Clone)]
struct Mock {
    scenario: Scenario,
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

async fn chat(State(m): State<Mock>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let n = {
        let mut seen = m.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push((headers, body.clone()));
        seen.len()
    };
    let json = |s: StatusCode, b: String| (s, [("content-type", "application/json")], b).into_response();
    let ok = || json(StatusCode::OK, completion(&analysis()));
    match m.scenario {
        Scenario::Normal => ok(),
        Scenario::Stream => {
            assert_eq!(body["stream"], true);
            (StatusCode::OK, [("content-type", "text/event-stream"), ("cache-control", "no-cache")], sse(&analysis()))
                .into_response()
        }
        Scenario::RateLimitedOnce if n == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json"),
                ("retry-after", "0"),
                ("x-ratelimit-limit-requests", "14400"),
                ("x-ratelimit-remaining-requests", "14370"),
                ("x-ratelimit-reset-requests", "2m59.56s"),
                ("x-ratelimit-limit-tokens", "6000"),
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "7.66s"),
            ],
            r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01` on tokens per minute (TPM): Limit 6000, Used 6412, Requested 630. Please try again in 7.66s.","type":"tokens","code":"rate_limit_exceeded"}}"#,
        )
            .into_response(),
        Scenario::JsonValidateFailedOnce if n == 1 => json(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"message":"Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for more details.","type":"invalid_request_error","code":"json_validate_failed","failed_generation":"{\"score\": 81, \"matched_skills\": ["}}"#.into(),
        ),
        Scenario::RefusesSchemas if body["response_format"]["type"] == "json_schema" => json(
            StatusCode::BAD_REQUEST,
            r#"{"error":{"message":"response_format` json_schema is not supported with this model","type":"invalid_request_error","param":"response_format"}}"#.into(),
        ),
        Scenario::Hangs => {
            std::future::pending::<()>().await;
            ok()
        }
        Scenario::AlwaysFails => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":{"message":"Internal Server Error","type":"internal_server_error"}}"#.into(),
        ),
        Scenario::Garbage => json(StatusCode::OK, completion("Sure! Here is the analysis: score 81, very good.")),
        Scenario::Code => json(StatusCode::OK, completion(&code_answer(2))),
        Scenario::CodeOutOfRange => json(StatusCode::OK, completion(&code_answer(99))),
        _ => ok(),
    }
}

async fn mock(scenario: Scenario) -> (String, Mock) {
    let m = Mock { scenario, seen: Arc::new(Mutex::new(Vec::new())) };
    let app = Router::new().route("/openai/v1/chat/completions", post(chat)).with_state(m.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/openai/v1"), m)
}

fn cfg(base: &str) -> AiConfig {
    AiConfig {
        llm_base_url: base.into(),
        llm_model: "llama-3.3-70b-versatile".into(),
        llm_timeout_ms: 10_000,
        llm_connect_timeout_ms: 2_000,
        llm_retries: 2,
        llm_stream: false,
        resume_max_bytes: 1 << 20,
        ai_per_minute: 10,
        ai_public: false,
    }
}

async fn run(
    scenario: Scenario,
    tweak: impl Fn(&mut AiConfig),
) -> (arena_bootstrap::ai::ResumeReport, Vec<(HeaderMap, Value)>) {
    let (base, m) = mock(scenario).await;
    let mut c = cfg(&base);
    tweak(&mut c);
    let ai = Ai::with_llm(LlmClient::with_key(&c, Some("gsk_test_key".into())));
    let report = ai.analyze_resume(RESUME, JD).await.unwrap_or_else(|e| panic!("{e}"));
    let seen = m.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (report, seen)
}

#[tokio::test]
async fn a_normal_answer() {
    let (r, seen) = run(Scenario::Normal, |_| {}).await;
    assert_eq!(r.backend, "llm (llama-3.3-70b-versatile)");
    assert_eq!(r.analysis.score, 81);
    assert_eq!(r.analysis.questions.len(), 3);
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer gsk_test_key"));
    assert_eq!(body["model"], "llama-3.3-70b-versatile");
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(body["messages"][1]["content"].as_str().is_some_and(|c| c.contains("k8s")));
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["strict"], true);
    assert_eq!(body["response_format"]["json_schema"]["schema"]["additionalProperties"], false);
    assert_eq!(body["stream"], false);
}

#[tokio::test]
async fn a_streamed_answer() {
    let (r, seen) = run(Scenario::Stream, |c| c.llm_stream = true).await;
    assert_eq!(r.backend, "llm (llama-3.3-70b-versatile)");
    assert_eq!(r.analysis.skill_gaps[0].skill, "Terraform");
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn rate_limited_then_answered() {
    let (r, seen) = run(Scenario::RateLimitedOnce, |_| {}).await;
    assert_eq!(r.backend, "llm (llama-3.3-70b-versatile)");
    assert_eq!(seen.len(), 2);
    // With no retries left, a 429 is a fallback that says so.
    let (r, seen) = run(Scenario::RateLimitedOnce, |c| c.llm_retries = 0).await;
    assert_eq!(seen.len(), 1);
    assert!(r.backend.starts_with("offline (fallback: rate-limited"), "{}", r.backend);
    assert_eq!(r.analysis.questions.len(), 3);
}

#[tokio::test]
async fn json_validate_failed_is_retried_once() {
    let (r, seen) = run(Scenario::JsonValidateFailedOnce, |_| {}).await;
    assert_eq!(r.backend, "llm (llama-3.3-70b-versatile)");
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn a_schema_refusal_falls_back_to_json_object() {
    let (r, seen) = run(Scenario::RefusesSchemas, |_| {}).await;
    assert_eq!(r.backend, "llm (llama-3.3-70b-versatile)");
    assert_eq!(seen.len(), 2);
    let second = &seen[1].1;
    assert_eq!(second["response_format"], serde_json::json!({"type": "json_object"}));
    // json_object needs the word JSON in the messages; the schema travels in the prompt.
    let system = second["messages"][0]["content"].as_str().unwrap_or_default();
    assert!(system.contains("JSON") && system.contains("\"matched_skills\""), "{system}");
}

#[tokio::test]
async fn a_server_that_never_answers_means_the_offline_analyzer() {
    let (r, _) = run(Scenario::Hangs, |c| c.llm_timeout_ms = 300).await;
    assert_eq!(r.backend, "offline (fallback: the model did not answer in time)");
    assert!(r.analysis.skill_gaps.iter().any(|g| g.skill == "Terraform"));
}

#[tokio::test]
async fn server_errors_and_garbage_mean_the_offline_analyzer() {
    let (r, seen) = run(Scenario::AlwaysFails, |c| c.llm_retries = 1).await;
    assert!(r.backend.starts_with("offline (fallback: the model server answered HTTP 500"), "{}", r.backend);
    assert_eq!(seen.len(), 2);
    let (r, seen) = run(Scenario::Garbage, |_| {}).await;
    assert!(r.backend.starts_with("offline (fallback: the model's answer is not valid"), "{}", r.backend);
    assert_eq!(seen.len(), 2, "one retry on invalid JSON");
}

#[tokio::test]
async fn unconfigured_and_unreachable() {
    // No key, remote URL: not configured, offline without a fallback note.
    let ai = Ai::with_llm(LlmClient::with_key(&cfg("https://api.groq.com/openai/v1"), None));
    let r = ai.analyze_resume(RESUME, JD).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.backend, "offline");
    // Nothing listening: a fallback naming the reason.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}"))
    };
    let ai = Ai::with_llm(LlmClient::with_key(&cfg(&format!("http://{dead}/v1")), None));
    let r = ai.analyze_resume(RESUME, JD).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(r.backend.starts_with("offline (fallback: the model server is unreachable"), "{}", r.backend);
}

#[tokio::test]
async fn code_analysis_by_the_model_and_its_fallback() {
    let (base, m) = mock(Scenario::Code).await;
    let ai = Ai::with_llm(LlmClient::with_key(&cfg(&base), Some("gsk_test_key".into())));
    let r = ai.analyze_code("python", CODE).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.backend, "llm (llama-3.3-70b-versatile)");
    assert_eq!(r.report.findings.len(), 2);
    assert_eq!(r.report.findings[0].line_start, 1, "sorted by line");
    assert_eq!(r.report.functions.len(), 1, "metrics from the offline parse");
    let seen = m.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let user = seen[0].1["messages"][1]["content"].as_str().unwrap_or_default().to_owned();
    assert!(user.contains("   2|     return sum(xs) / len(xs)") && user.contains("empty-input"), "{user}");
    // Findings outside the code: asked once more, then the offline analyzer.
    let (base, m) = mock(Scenario::CodeOutOfRange).await;
    let ai = Ai::with_llm(LlmClient::with_key(&cfg(&base), Some("gsk_test_key".into())));
    let r = ai.analyze_code("python", CODE).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.backend, "offline (fallback: the model's answer is not valid: lines 99-99 outside the code's 1-2)");
    assert!(r.report.findings.iter().any(|f| f.rule == "empty-input"), "{:#?}", r.report.findings);
    assert_eq!(m.seen.lock().unwrap_or_else(|e| e.into_inner()).len(), 2);
    // Offline, and code that is not analyzable at all.
    let ai = Ai::with_llm(Err("off".into()));
    assert_eq!(ai.analyze_code("python", CODE).await.map(|r| r.backend).ok().as_deref(), Some("offline"));
    assert!(ai.analyze_code("cobol", CODE).await.is_err());
}

//! The AI analyzers' model path (issue #25: "the LLM path adds no more than the model's own
//! latency plus 5 ms"). A local stand-in for an OpenAI-compatible server answers
//! `POST /chat/completions` after a fixed model latency, plain JSON or an SSE stream; the
//! node's analyzer (`arena_bootstrap::ai::Ai`, the same code `/api/resume/analyze` and
//! `/api/rooms/{room}/analyze` call) asks it for a resume analysis and a code analysis. The
//! overhead of one call is its wall time at the analyzer minus the time the stand-in spent
//! on the request (from its first byte read to its last byte written): the request's
//! building and the answer's parsing and checking, HTTP on loopback, and anything the
//! analyzer does in series with the model.
//!
//! `cargo build --release -p arena-benches --bin ai-llm-bench && target/release/ai-llm-bench [--calls N] [--latency-ms L]`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use arena_bootstrap::ai::llm::LlmClient;
use arena_bootstrap::ai::{Ai, AiConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESUME: &str = "Dana Reyes\nSenior Backend Engineer\n\nExperience\n- Led the migration of 40 services to Kubernetes.\n\
- Built a Rust ingestion pipeline on Kafka.\n- Tuned PostgreSQL query plans for billing.\n\nSkills\nRust, Go, PostgreSQL, Kafka, Kubernetes\n";
const JD: &str = "Staff Backend Engineer\nRequirements:\n- Must have Kubernetes and PostgreSQL\n- Strong Rust or Go\n\
- Terraform is required\nNice to have:\n- Kafka\n";
const CODE: &str =
    "def average(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n";

/// What the stand-in model answers (the content, a JSON document the analyzer validates).
fn resume_answer() -> String {
    serde_json::json!({
        "score": 72,
        "matched_skills": [
            {"skill": "Kubernetes", "importance": "required", "evidence": "- Led the migration of 40 services to Kubernetes."},
            {"skill": "PostgreSQL", "importance": "required", "evidence": "- Tuned PostgreSQL query plans for billing."}
        ],
        "skill_gaps": [{"skill": "Terraform", "importance": "required"}],
        "questions": [
            {"question": "Tell me about the Kubernetes migration.", "targets": "resume: \"Led the migration of 40 services to Kubernetes\"", "why": "It is the largest claim."},
            {"question": "How would you learn Terraform on the job?", "targets": "gap: Terraform (required)", "why": "The job requires it."},
            {"question": "Describe a hard query plan you fixed.", "targets": "resume: \"Tuned PostgreSQL query plans\"", "why": "Billing latency matters here."}
        ]
    })
    .to_string()
}

fn code_answer() -> String {
    serde_json::json!({
        "summary": "Averages a list; divides by zero on an empty list.",
        "findings": [{"rule": "empty-input", "severity": "warning", "line_start": 5, "line_end": 5, "message": "len(xs) is 0 for an empty list."}]
    })
    .to_string()
}

/// The stand-in server's state: its model latency, and the time it spent on each request.
#[derive(Debug)]
struct StandIn {
    latency: Duration,
    served: Mutex<Vec<Duration>>,
}

/// Reads one HTTP/1.1 request (headers, then `content-length` bytes); `None` at a clean EOF.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<(Instant, Vec<u8>)>> {
    let mut started = None;
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        started.get_or_insert_with(Instant::now);
        buf.extend_from_slice(&chunk[..n]);
    };
    let started = started.unwrap_or_else(Instant::now);
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 16 * 1024];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            bail!("the client closed mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok(Some((started, body)))
}

/// The chat completion for `content`: one JSON body, or an SSE stream of small deltas ending
/// in `data: [DONE]`, as OpenAI-compatible servers send them.
fn response(content: &str, stream: bool) -> Vec<u8> {
    if !stream {
        let body = serde_json::json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "stand-in",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        })
        .to_string();
        let head =
            format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
        return [head.into_bytes(), body.into_bytes()].concat();
    }
    let mut events = String::new();
    let chars: Vec<char> = content.chars().collect();
    for piece in chars.chunks(24) {
        let delta: String = piece.iter().collect();
        let ev = serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "stand-in",
            "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": null}]});
        events.push_str(&format!("data: {ev}\n\n"));
    }
    events.push_str("data: [DONE]\n\n");
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n", events.len());
    [head.into_bytes(), events.into_bytes()].concat()
}

async fn serve(state: Arc<StandIn>, mut sock: TcpStream) -> Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = Vec::new();
    while let Some((started, body)) = read_request(&mut sock, &mut buf).await? {
        let req: serde_json::Value = serde_json::from_slice(&body).context("request body")?;
        let stream = req["stream"].as_bool().unwrap_or(false);
        let system = req["messages"][0]["content"].as_str().unwrap_or_default();
        let content = if system.contains("resume") { resume_answer() } else { code_answer() };
        tokio::time::sleep(state.latency).await;
        sock.write_all(&response(&content, stream)).await?;
        sock.flush().await?;
        if let Ok(mut s) = state.served.lock() {
            s.push(started.elapsed());
        }
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (p50, p99, max) of `v` in ms.
fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize).copied().unwrap_or(0.0);
    (at(0.5), at(0.99), at(1.0))
}

fn arg(name: &str, default: u64) -> Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).context("a value")?.parse().with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!(
            "ai-llm-bench [--calls N (200)] [--latency-ms L (50)]: the analyzers' overhead over a local model stand-in"
        );
        return Ok(());
    }
    let calls = arg("--calls", 200)? as usize;
    let latency = Duration::from_millis(arg("--latency-ms", 50)?);
    println!("# ai-llm-bench: {calls} calls per case, stand-in model latency {} ms", latency.as_millis());
    println!("| case | wall p50 | overhead p50 | overhead p99 | overhead max |");
    println!("|---|---|---|---|---|");
    for stream in [false, true] {
        for what in ["resume", "code"] {
            let state = Arc::new(StandIn { latency, served: Mutex::default() });
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let st = state.clone();
            let server = tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    let st = st.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(st, sock).await {
                            eprintln!("stand-in: {e:#}");
                        }
                    });
                }
            });
            let cfg = AiConfig {
                llm_base_url: format!("http://{addr}/v1"),
                llm_model: "stand-in".into(),
                llm_timeout_ms: 10_000,
                llm_connect_timeout_ms: 1_000,
                llm_retries: 0,
                llm_stream: stream,
                resume_max_bytes: 1 << 20,
                ai_per_minute: 0,
                ai_public: false,
            };
            let ai = Ai::with_llm(LlmClient::with_key(&cfg, None));
            let mut walls = Vec::with_capacity(calls);
            // One warm-up call: the connection pool, the lazily built taxonomy and grammars.
            for i in 0..=calls {
                let t = Instant::now();
                let backend = match what {
                    "resume" => ai.analyze_resume(RESUME, JD).await?.backend,
                    _ => ai.analyze_code("python", CODE).await?.backend,
                };
                let wall = t.elapsed();
                if !backend.starts_with("llm") {
                    bail!("the model path was not taken: {backend}");
                }
                if i > 0 {
                    walls.push(wall);
                }
            }
            server.abort();
            let served: Vec<Duration> = state.served.lock().map(|s| s.clone()).unwrap_or_default();
            if served.len() != calls + 1 {
                bail!("{} requests served for {} calls: a retry happened", served.len(), calls + 1);
            }
            let over: Vec<f64> = walls.iter().zip(&served[1..]).map(|(w, s)| ms(*w) - ms(*s)).collect();
            let (wall_p50, _, _) = stats(walls.iter().map(|w| ms(*w)).collect());
            let (p50, p99, max) = stats(over);
            let mode = if stream { "SSE" } else { "JSON" };
            println!("| {what}, {mode} | {wall_p50:.2} ms | {p50:.2} ms | {p99:.2} ms | {max:.2} ms |");
        }
    }
    Ok(())
}

//! `POST /api/resume/analyze` on a real node (127.0.0.1, port 0): JSON and multipart (text
//! and a PDF written in the test), bad input, who may ask (as `POST /api/rooms`), the rate
//! and size limits, and the fallback marked in the answer.

mod support;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use arena_bootstrap::{AdminToken, Config};
use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RESUME: &str = "Dana Reyes\n- Led the migration of 40 services from VMs to k8s, cutting deploy time from 45 to 6 minutes.\n- Designed Postgres schemas; reduced p99 latency by 35%.\n- Built a Rust ingestion pipeline on Kafka.\n";
const JD: &str =
    "Requirements:\n- Must have Kubernetes and PostgreSQL\n- Terraform is required\nNice to have:\n- GraphQL\n";

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::for_tests(dir);
    cfg.no_p2p = true;
    cfg.ai.llm_base_url = "off".into();
    cfg
}

/// A raw HTTP/1.1 POST: (status, body).
async fn post(
    addr: SocketAddr,
    content_type: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Result<(u16, serde_json::Value)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /api/resume/analyze HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    // The node may answer (413) before reading all of a large body; that is fine.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.split(' ').nth(1).context("no status")?.parse()?;
    let raw = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    let json_start = raw.find('{').unwrap_or(0);
    let json_end = raw.rfind('}').map_or(raw.len(), |i| i + 1);
    let v = serde_json::from_str(&raw[json_start..json_end.max(json_start)]).unwrap_or(serde_json::Value::Null);
    Ok((status, v))
}

async fn post_json(addr: SocketAddr, auth: Option<&str>, body: &serde_json::Value) -> Result<(u16, serde_json::Value)> {
    post(addr, "application/json", auth, body.to_string().as_bytes()).await
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----arena-test-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A one-page PDF (Helvetica) with `content` as its content stream.
fn pdf(content: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R /Resources << /Font << /F1 4 0 R >> >> >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len() + 1),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 6\n0000000000 65535 f \n");
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(format!("trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes());
    out
}

fn text_pdf(text: &str) -> Vec<u8> {
    let mut c = String::from("BT /F1 11 Tf 72 720 Td 14 TL\n");
    for l in text.lines() {
        c.push_str(&format!("({}) Tj T*\n", l.replace('(', "\\(").replace(')', "\\)")));
    }
    c.push_str("ET");
    pdf(&c)
}

fn assert_report(v: &serde_json::Value) {
    assert!(v["score"].as_u64().is_some_and(|s| s <= 100), "{v}");
    assert_eq!(v["questions"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(v["matched_skills"].as_array().is_some_and(|m| m.iter().any(|s| s["skill"] == "Kubernetes")), "{v}");
    assert!(v["skill_gaps"].as_array().is_some_and(|m| m.iter().any(|s| s["skill"] == "Terraform")), "{v}");
}

#[tokio::test]
async fn json_text_and_pdf() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_with(config(dir.path())).await?;
    let (status, v) =
        post_json(server.addr, None, &serde_json::json!({"resume": RESUME, "job_description": JD})).await?;
    assert_eq!(status, 200, "{v}");
    assert_report(&v);
    assert_eq!(v["backend"], "offline");

    let (ct, body) =
        multipart(&[("resume", Some("cv.txt"), RESUME.as_bytes()), ("job_description", None, JD.as_bytes())]);
    let (status, v2) = post(server.addr, &ct, None, &body).await?;
    assert_eq!(status, 200, "{v2}");
    assert_eq!(v2, v, "the same text gives the same answer");

    // Over the rest of the API's 64 KiB, under --resume-max-bytes: taken.
    let long = format!("{RESUME}{}", "- Maintained internal tooling for the platform team.\n".repeat(2_000));
    assert!(long.len() > 100_000);
    let (status, v3) =
        post_json(server.addr, None, &serde_json::json!({"resume": long, "job_description": JD})).await?;
    assert_eq!(status, 200, "{v3}");

    let (ct, body) =
        multipart(&[("resume", Some("cv.pdf"), &text_pdf(RESUME)), ("job_description", None, JD.as_bytes())]);
    let (status, v) = post(server.addr, &ct, None, &body).await?;
    assert_eq!(status, 200, "{v}");
    assert_report(&v);
    server.stop().await
}

#[tokio::test]
async fn bad_input_is_refused_clearly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.ai.resume_max_bytes = 16 * 1024;
    let server = Server::start_with(cfg).await?;
    let a = server.addr;
    let msg = |v: &serde_json::Value| v["message"].as_str().unwrap_or_default().to_owned();

    let (s, v) = post_json(a, None, &serde_json::json!({"resume": "  ", "job_description": JD})).await?;
    assert_eq!((s, msg(&v).as_str()), (400, "the resume is empty"));
    let (s, v) = post_json(a, None, &serde_json::json!({"resume": RESUME, "job_description": ""})).await?;
    assert_eq!((s, msg(&v).as_str()), (400, "the job description is empty"));
    let (s, v) = post_json(a, None, &serde_json::json!({"resume": RESUME})).await?;
    assert_eq!(s, 400, "{v}");
    let (s, v) =
        post_json(a, None, &serde_json::json!({"resume": RESUME, "job_description": JD, "admin": true})).await?;
    assert!(s == 400 && msg(&v).contains("unknown field"), "{v}");
    let (s, v) = post(a, "text/plain", None, RESUME.as_bytes()).await?;
    assert_eq!(s, 415, "{v}");

    // Over --resume-max-bytes: 413, as JSON, before the body is read whole.
    let big = serde_json::json!({"resume": "x".repeat(40_000), "job_description": JD});
    let (s, v) = post_json(a, None, &big).await?;
    assert!(s == 413 && msg(&v).contains("over 16384 bytes"), "{s} {v}");

    let (ct, body) = multipart(&[
        ("resume", Some("scan.pdf"), &pdf("0 0 1 rg 72 72 200 200 re f")),
        ("job_description", None, JD.as_bytes()),
    ]);
    let (s, v) = post(a, &ct, None, &body).await?;
    assert!(s == 400 && msg(&v).contains("no text found"), "{v}");
    let (ct, body) =
        multipart(&[("resume", Some("x.bin"), &[0xff, 0xfe, 0x00, 0x9c]), ("job_description", None, JD.as_bytes())]);
    let (s, v) = post(a, &ct, None, &body).await?;
    assert!(s == 400 && msg(&v).contains("neither a PDF nor UTF-8"), "{v}");
    let (ct, body) = multipart(&[("resume", Some("cv.pdf"), b"%PDF-1.7 garbage garbage")]);
    let (s, v) = post(a, &ct, None, &body).await?;
    assert_eq!(s, 400, "{v}");
    let (s, v) = post(a, "multipart/form-data; boundary=nope", None, b"not multipart at all").await?;
    assert_eq!(s, 400, "{v}");
    server.stop().await
}

#[tokio::test]
async fn a_public_node_wants_the_operator_token_and_limits_the_rate() -> Result<()> {
    let body = serde_json::json!({"resume": RESUME, "job_description": JD});
    // Public, no operator token: nobody may (the node's LLM key and CPU are the operator's).
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    cfg.public_url = Some("https://arena.example.org".into());
    let server = Server::start_with(cfg.clone()).await?;
    let (s, v) = post_json(server.addr, None, &body).await?;
    assert!(s == 401 && v["message"].as_str().is_some_and(|m| m.contains("--ai-public")), "{v}");
    server.stop().await?;

    // With an operator token: only with it.
    let dir = tempfile::tempdir()?;
    let mut cfg2 = config(dir.path());
    cfg2.public_url = cfg.public_url.clone();
    let token = "0123456789abcdef0123";
    cfg2.admin_token = Some(token.parse::<AdminToken>().map_err(anyhow::Error::msg)?);
    cfg2.ai.ai_per_minute = 3;
    let server = Server::start_with(cfg2).await?;
    assert_eq!(post_json(server.addr, None, &body).await?.0, 401);
    assert_eq!(post_json(server.addr, Some("wrong-token-wrong-token"), &body).await?.0, 401);
    assert_eq!(post_json(server.addr, Some(token), &body).await?.0, 200);
    // Three a minute from one address, the refused ones included: the fourth is 429.
    let (s, v) = post_json(server.addr, Some(token), &body).await?;
    assert!(s == 429 && v["message"].as_str().is_some_and(|m| m.contains("at most 3")), "{s} {v}");
    server.stop().await?;

    // --ai-public opens it on purpose.
    let dir = tempfile::tempdir()?;
    let mut cfg3 = config(dir.path());
    cfg3.public_url = cfg.public_url.clone();
    cfg3.ai.ai_public = true;
    let server = Server::start_with(cfg3).await?;
    assert_eq!(post_json(server.addr, None, &body).await?.0, 200);
    server.stop().await
}

#[tokio::test]
async fn a_failing_model_is_marked_in_the_answer() -> Result<()> {
    use axum::routing::post as route_post;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        route_post(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":{"message":"Service Unavailable","type":"internal_server_error"}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let llm = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let mut cfg = config(dir.path());
    // A loopback model server needs no key (Ollama, llama.cpp).
    cfg.ai.llm_base_url = format!("http://{llm}/v1");
    cfg.ai.llm_retries = 0;
    let server = Server::start_with(cfg).await?;
    let (s, v) = post_json(server.addr, None, &serde_json::json!({"resume": RESUME, "job_description": JD})).await?;
    assert_eq!(s, 200, "{v}");
    assert_report(&v);
    assert_eq!(v["backend"], "offline (fallback: the model server answered HTTP 503: Service Unavailable)");
    server.stop().await
}

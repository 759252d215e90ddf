//! AI analyzers: an offline code analyzer (tree-sitter), an offline resume analyzer (a
//! skills taxonomy and BM25), PDF text extraction, and an OpenAI-compatible chat-completions
//! client that answers instead of the offline analyzers when a model is configured, with the
//! offline analyzers as its fallback. `POST /api/resume/analyze` serves the resume analyzer
//! ([`routes`]); `arena-bootstrap resume RESUME JD` runs it from the command line ([`cli`]).

mod api;
pub mod cli;
pub mod code;
pub mod llm;
pub mod pdf;
pub mod resume;

pub(crate) use api::routes;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use code::{CodeError, CodeReport, Finding};
use llm::LlmClient;
use resume::{ResumeAnalysis, ResumeError};

/// The analyzers' settings (flattened into the node's [`Config`](crate::Config)).
#[derive(Clone, Debug, clap::Args)]
pub struct AiConfig {
    /// OpenAI-compatible API base URL for the analyzers' model (Groq by default; OpenAI,
    /// Ollama's `http://127.0.0.1:11434/v1`, llama.cpp's server, vLLM), or `off`. The key
    /// comes from `ARENA_LLM_API_KEY` (or `GROQ_API_KEY`); without one only a loopback URL
    /// is used, and the offline analyzers answer otherwise.
    #[arg(long, env = "ARENA_LLM_BASE_URL", default_value = "https://api.groq.com/openai/v1")]
    pub llm_base_url: String,

    /// The model asked (its name at the server).
    #[arg(long, env = "ARENA_LLM_MODEL", default_value = "llama-3.3-70b-versatile")]
    pub llm_model: String,

    /// The model's whole answer, retries included, within this many milliseconds; else the
    /// offline analyzer answers.
    #[arg(long, env = "ARENA_LLM_TIMEOUT_MS", default_value_t = 15_000)]
    pub llm_timeout_ms: u64,

    /// Connecting to the model server within this many milliseconds.
    #[arg(long, env = "ARENA_LLM_CONNECT_TIMEOUT_MS", default_value_t = 3_000)]
    pub llm_connect_timeout_ms: u64,

    /// Retries after HTTP 429 or 5xx (waiting as `retry-after` or `x-ratelimit-reset-*` ask).
    #[arg(long, env = "ARENA_LLM_RETRIES", default_value_t = 2)]
    pub llm_retries: u32,

    /// Ask for the answer as an SSE stream (`stream: true`).
    #[arg(long, env = "ARENA_LLM_STREAM", value_parser = clap::builder::FalseyValueParser::new())]
    pub llm_stream: bool,

    /// Largest `POST /api/resume/analyze` body, in bytes (a PDF upload included); larger
    /// ones are answered 413.
    #[arg(long, env = "ARENA_RESUME_MAX_BYTES", default_value_t = 2 << 20)]
    pub resume_max_bytes: usize,

    /// Most resume analyses one client IP address may ask for per minute.
    #[arg(long, env = "ARENA_AI_PER_MINUTE", default_value_t = 10)]
    pub ai_per_minute: u32,

    /// Serve `POST /api/resume/analyze` to anyone, also on a public node (which otherwise
    /// wants the operator token, as `POST /api/rooms` does). Rate limits still apply.
    #[arg(long, env = "ARENA_AI_PUBLIC", value_parser = clap::builder::FalseyValueParser::new())]
    pub ai_public: bool,
}

/// A resume analysis and who made it.
#[derive(Clone, Debug, Serialize)]
pub struct ResumeReport {
    /// The analysis.
    #[serde(flatten)]
    pub analysis: ResumeAnalysis,
    /// `offline`, `llm (<model>)` or `offline (fallback: <reason>)`.
    pub backend: String,
}

/// The analyzers: the model when one is configured, the offline ones otherwise and when it
/// fails.
#[derive(Debug)]
pub struct Ai {
    llm: Result<LlmClient, String>,
}

/// Resume and JD text sent to the model at most (characters).
const LLM_RESUME_CHARS: usize = 24_000;
const LLM_JD_CHARS: usize = 12_000;

const RESUME_PROMPT: &str = "You help an interviewer prepare. Compare the candidate's resume with the job description and answer in JSON. \
score: 0-100, how well the resume matches the job. matched_skills: skills the job asks for that the resume shows, each with importance \
(\"required\" when the job says must/required, \"nice-to-have\" for bonus/preferred/plus, else \"expected\") and evidence: one resume line quoted verbatim. \
skill_gaps: skills the job asks for that the resume does not show, with importance. questions: exactly three STAR behavioral questions; \
each targets either a resume claim (targets: resume: \"<the claim quoted verbatim>\") or a gap (targets: gap: <skill> (<importance>)), \
with why: one sentence on why it is worth asking. Do not invent experience the resume does not state.";

impl Ai {
    /// From the node's settings; the model's key from the environment.
    pub fn new(cfg: &AiConfig) -> Ai {
        let llm = LlmClient::from_config(cfg);
        match &llm {
            Ok(c) => tracing::info!(model = c.model(), "AI analyzers: model configured, offline fallback"),
            Err(why) => tracing::info!(reason = %why, "AI analyzers: offline"),
        }
        Ai { llm }
    }

    /// With a given client (or the reason there is none).
    pub fn with_llm(llm: Result<LlmClient, String>) -> Ai {
        Ai { llm }
    }

    /// Analyzes a resume against a job description: the model's answer when it gives a
    /// valid one, else the offline analyzer's, marked as a fallback.
    ///
    /// The offline analysis runs beside the model's (it is only the fallback), so the model
    /// path costs the model's latency and the HTTP exchange, not both analyses in a row
    /// (measured by `benches/src/bin/ai-llm-bench.rs`).
    pub async fn analyze_resume(&self, resume: &str, jd: &str) -> Result<ResumeReport, ResumeError> {
        if resume.trim().is_empty() {
            return Err(ResumeError::EmptyResume);
        }
        if jd.trim().is_empty() {
            return Err(ResumeError::EmptyJob);
        }
        let (r, j) = (resume.to_owned(), jd.to_owned());
        let offline = tokio::task::spawn_blocking(move || resume::analyze(&r, &j));
        let offline = async { offline.await.unwrap_or(Err(ResumeError::Failed)) };
        let client = match &self.llm {
            Ok(c) => c,
            Err(_) => return Ok(ResumeReport { analysis: offline.await?, backend: "offline".into() }),
        };
        let user = format!(
            "RESUME:\n{}\n\nJOB DESCRIPTION:\n{}",
            resume.chars().take(LLM_RESUME_CHARS).collect::<String>(),
            jd.chars().take(LLM_JD_CHARS).collect::<String>()
        );
        let check = |a: &ResumeAnalysis| {
            if a.score > 100 {
                return Err(format!("score {} over 100", a.score));
            }
            if a.questions.len() != 3 {
                return Err(format!("{} questions, not 3", a.questions.len()));
            }
            if a.questions.iter().any(|q| q.question.trim().is_empty() || q.targets.trim().is_empty()) {
                return Err("an empty question".into());
            }
            Ok(())
        };
        match client.complete_json(RESUME_PROMPT, &user, "resume_analysis", &resume_schema(), check).await {
            Ok(analysis) => Ok(ResumeReport { analysis, backend: format!("llm ({})", client.model()) }),
            Err(e) => {
                tracing::warn!(error = %e, "model failed; offline resume analyzer answers");
                Ok(ResumeReport { analysis: offline.await?, backend: format!("offline (fallback: {e})") })
            }
        }
    }
}

/// The JSON Schema of [`ResumeAnalysis`], in the subset strict structured output accepts
/// (every property required, no additional ones, no min/max keywords).
pub fn resume_schema() -> Value {
    let importance = json!({"type": "string", "enum": ["required", "expected", "nice-to-have"]});
    let obj = |props: Value, req: &[&str]| json!({"type": "object", "properties": props, "required": req, "additionalProperties": false});
    obj(
        json!({
            "score": {"type": "integer"},
            "matched_skills": {"type": "array", "items": obj(json!({"skill": {"type": "string"}, "importance": importance, "evidence": {"type": "string"}}), &["skill", "importance", "evidence"])},
            "skill_gaps": {"type": "array", "items": obj(json!({"skill": {"type": "string"}, "importance": importance}), &["skill", "importance"])},
            "questions": {"type": "array", "items": obj(json!({"question": {"type": "string"}, "targets": {"type": "string"}, "why": {"type": "string"}}), &["question", "targets", "why"])},
        }),
        &["score", "matched_skills", "skill_gaps", "questions"],
    )
}

/// A code analysis and who made it.
#[derive(Clone, Debug, Serialize)]
pub struct CodeAnalysis {
    /// The analysis; `functions` always come from the offline parse.
    #[serde(flatten)]
    pub report: CodeReport,
    /// `offline`, `llm (<model>)` or `offline (fallback: <reason>)`.
    pub backend: String,
}

/// What the model is asked for about code.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeAnswer {
    summary: String,
    findings: Vec<Finding>,
}

const CODE_PROMPT: &str = "You review code written during a live coding interview. Answer in JSON: summary, one paragraph \
on correctness, complexity and style; findings, each with rule (a short kebab-case id such as off-by-one, unused-variable, \
quadratic-loop), severity (info, warning or error), line_start and line_end (1-based line numbers as shown), and message \
(one sentence). Report real problems only; do not rewrite the code or give the full solution.";

/// The JSON Schema of the model's answer about code.
fn code_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "findings": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "rule": {"type": "string"},
                    "severity": {"type": "string", "enum": ["info", "warning", "error"]},
                    "line_start": {"type": "integer"},
                    "line_end": {"type": "integer"},
                    "message": {"type": "string"}
                },
                "required": ["rule", "severity", "line_start", "line_end", "message"],
                "additionalProperties": false
            }}
        },
        "required": ["summary", "findings"],
        "additionalProperties": false
    })
}

impl Ai {
    /// Analyzes code: the model's findings and summary when it gives valid ones (line
    /// ranges inside the code), else the offline analyzer's, marked as a fallback. The
    /// offline findings go to the model as hints; the per-function metrics are always the
    /// offline parse's.
    pub async fn analyze_code(&self, language: &str, source: &str) -> Result<CodeAnalysis, CodeError> {
        let (l, s) = (language.to_owned(), source.to_owned());
        let offline = tokio::task::spawn_blocking(move || code::analyze(&l, &s))
            .await
            .unwrap_or_else(|e| Err(CodeError::Parser(e.to_string())))?;
        let client = match &self.llm {
            Ok(c) => c,
            Err(_) => return Ok(CodeAnalysis { report: offline, backend: "offline".into() }),
        };
        let n_lines = source.lines().count().max(1) as u32;
        let numbered: String = source.lines().enumerate().map(|(i, l)| format!("{:>4}| {l}\n", i + 1)).collect();
        let hints: String = offline
            .findings
            .iter()
            .map(|f| format!("- line {}-{} {} ({:?}): {}\n", f.line_start, f.line_end, f.rule, f.severity, f.message))
            .collect();
        let user = format!(
            "LANGUAGE: {}\n\nCODE:\n{numbered}\nAN OFFLINE ANALYZER FOUND (check them, keep the real ones):\n{}",
            offline.language,
            if hints.is_empty() { "nothing\n".to_owned() } else { hints }
        );
        let check = |a: &CodeAnswer| {
            if a.summary.trim().is_empty() {
                return Err("an empty summary".to_owned());
            }
            match a.findings.iter().find(|f| f.line_start < 1 || f.line_end < f.line_start || f.line_end > n_lines) {
                Some(f) => Err(format!("lines {}-{} outside the code's 1-{n_lines}", f.line_start, f.line_end)),
                None => Ok(()),
            }
        };
        match client.complete_json(CODE_PROMPT, &user, "code_analysis", &code_schema(), check).await {
            Ok(mut a) => {
                a.findings.sort_by(|x, y| {
                    (x.line_start, x.line_end, &x.rule, &x.message).cmp(&(
                        y.line_start,
                        y.line_end,
                        &y.rule,
                        &y.message,
                    ))
                });
                let report = CodeReport { summary: a.summary, findings: a.findings, ..offline };
                Ok(CodeAnalysis { report, backend: format!("llm ({})", client.model()) })
            }
            Err(e) => {
                tracing::warn!(error = %e, "model failed; offline code analyzer answers");
                Ok(CodeAnalysis { report: offline, backend: format!("offline (fallback: {e})") })
            }
        }
    }
}

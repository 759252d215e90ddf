//! `arena-bootstrap resume RESUME JD`: the resume analyzer on two files, a report or JSON
//! on stdout.

use std::path::PathBuf;

use super::pdf::{self, PdfLimits};
use super::{Ai, AiConfig, ResumeReport};

/// Analyze a resume (PDF or text file) against a job description (text file).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "arena-bootstrap resume")]
pub struct ResumeCmd {
    /// The resume: a PDF or a UTF-8 text file.
    pub resume: PathBuf,
    /// The job description: a UTF-8 text file.
    pub job_description: PathBuf,
    /// Print the analysis as JSON (as `POST /api/resume/analyze` answers).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ai: AiConfig,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A text file is not UTF-8.
    #[error("{0} is neither a PDF nor UTF-8 text")]
    NotText(PathBuf),
    /// The PDF gave no text.
    #[error("{0}: {1}")]
    Pdf(PathBuf, pdf::PdfError),
    /// The analyzer refused the input.
    #[error(transparent)]
    Resume(#[from] super::resume::ResumeError),
}

/// Runs the command; returns what to print.
pub async fn run(cmd: &ResumeCmd) -> Result<String, CliError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| CliError::Read(p.clone(), e));
    let bytes = read(&cmd.resume)?;
    let resume = if pdf::is_pdf(&bytes) {
        let limits = PdfLimits { max_bytes: cmd.ai.resume_max_bytes.max(64 << 20), ..PdfLimits::default() };
        let path = cmd.resume.clone();
        tokio::task::spawn_blocking(move || pdf::extract_text(&bytes, limits))
            .await
            .unwrap_or(Err(pdf::PdfError::Corrupt("the reader failed".into())))
            .map_err(|e| CliError::Pdf(path, e))?
    } else {
        String::from_utf8(bytes).map_err(|_| CliError::NotText(cmd.resume.clone()))?
    };
    let jd =
        String::from_utf8(read(&cmd.job_description)?).map_err(|_| CliError::NotText(cmd.job_description.clone()))?;
    let report = Ai::new(&cmd.ai).analyze_resume(&resume, &jd).await?;
    Ok(if cmd.json { serde_json::to_string_pretty(&report).unwrap_or_default() } else { readable(&report) })
}

/// A report for a person.
pub fn readable(r: &ResumeReport) -> String {
    let a = &r.analysis;
    let word = |i: super::resume::Importance| {
        serde_json::to_value(i).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    };
    let mut s = format!("Match score: {}/100   (backend: {})\n\n", a.score, r.backend);
    s.push_str("Matched skills:\n");
    if a.matched_skills.is_empty() {
        s.push_str("  (none)\n");
    }
    for m in &a.matched_skills {
        s.push_str(&format!("  + {} ({}): \"{}\"\n", m.skill, word(m.importance), m.evidence));
    }
    s.push_str("\nSkill gaps:\n");
    if a.skill_gaps.is_empty() {
        s.push_str("  (none)\n");
    }
    for g in &a.skill_gaps {
        s.push_str(&format!("  - {} ({})\n", g.skill, word(g.importance)));
    }
    s.push_str("\nBehavioral questions (STAR):\n");
    for (i, q) in a.questions.iter().enumerate() {
        s.push_str(&format!("  {}. {}\n     targets: {}\n     why: {}\n", i + 1, q.question, q.targets, q.why));
    }
    s
}

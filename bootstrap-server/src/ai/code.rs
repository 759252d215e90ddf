//! The offline code analyzer: tree-sitter parses the code, a handful of language-neutral
//! rules walk the tree (node kinds differ per grammar; the rules know each grammar's names)
//! and report findings with line ranges and a severity, plus per-function metrics and a
//! one-paragraph summary. Deterministic: the same code gives the same report.

mod rules;
mod syntax;

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser};

pub use syntax::Lang;

/// The largest source the analyzer reads (bytes); longer code is refused.
pub const MAX_CODE_BYTES: usize = 512 * 1024;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; style or a hint.
    Info,
    /// Likely a bug or a maintainability problem.
    Warning,
    /// Wrong code: it cannot work as written.
    Error,
}

/// One finding: a rule, where (1-based, inclusive lines), how serious, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// The rule's id, e.g. `unused-variable`.
    pub rule: String,
    /// How serious.
    pub severity: Severity,
    /// First line (1-based).
    pub line_start: u32,
    /// Last line (1-based, inclusive).
    pub line_end: u32,
    /// What is wrong, for a person.
    pub message: String,
}

/// Metrics of one function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionStats {
    /// Its name (`<anonymous>` for lambdas and closures not bound to a name).
    pub name: String,
    /// First line.
    pub line_start: u32,
    /// Last line.
    pub line_end: u32,
    /// McCabe's cyclomatic complexity: 1 + decision points.
    pub complexity: u32,
    /// Deepest nesting of control structures inside it.
    pub max_nesting: u32,
}

/// What the analyzer says about a piece of code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeReport {
    /// The language it was parsed as.
    pub language: String,
    /// One paragraph for a person.
    pub summary: String,
    /// Sorted by line, then rule.
    pub findings: Vec<Finding>,
    /// In source order.
    pub functions: Vec<FunctionStats>,
}

/// Why code could not be analyzed at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    /// No grammar for this language.
    #[error("unsupported language {0:?} (supported: python, javascript, typescript, c, cpp, java, rust, go)")]
    UnsupportedLanguage(String),
    /// Over [`MAX_CODE_BYTES`].
    #[error("code too long ({0} bytes; at most {MAX_CODE_BYTES})")]
    TooLong(usize),
    /// tree-sitter gave up (it does not for valid grammars; kept as an error, not a panic).
    #[error("the parser could not run: {0}")]
    Parser(String),
}

/// Analyzes `code` written in `language` (a name such as `python`, `js`, `c++`).
pub fn analyze(language: &str, code: &str) -> Result<CodeReport, CodeError> {
    let lang = Lang::from_name(language).ok_or_else(|| CodeError::UnsupportedLanguage(language.to_owned()))?;
    analyze_lang(lang, code)
}

/// Analyzes `code` as `lang`.
pub fn analyze_lang(lang: Lang, code: &str) -> Result<CodeReport, CodeError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(CodeError::TooLong(code.len()));
    }
    let mut parser = Parser::new();
    parser.set_language(&lang.grammar()).map_err(|e| CodeError::Parser(e.to_string()))?;
    let tree = parser.parse(code, None).ok_or_else(|| CodeError::Parser("no tree".into()))?;
    let root = tree.root_node();
    let src = code.as_bytes();
    let mut findings = Vec::new();
    if root.has_error() {
        if let Some(bad) = first_error(root) {
            let (a, b) = lines(bad);
            let what = if bad.is_missing() { format!("missing `{}`", bad.kind()) } else { "unexpected input".into() };
            findings.push(Finding {
                rule: "syntax-error".into(),
                severity: Severity::Error,
                line_start: a,
                line_end: b.max(a),
                message: format!("syntax error at line {a}: {what}; the findings below come from a partial parse"),
            });
        }
    }
    let functions = rules::run(lang, root, src, &mut findings);
    findings.sort_by(|x, y| {
        (x.line_start, x.line_end, &x.rule, &x.message).cmp(&(y.line_start, y.line_end, &y.rule, &y.message))
    });
    findings.dedup();
    let summary = summarize(lang, code, &findings, &functions);
    Ok(CodeReport { language: lang.name().to_owned(), summary, findings, functions })
}

/// The first ERROR or MISSING node in source order.
fn first_error(root: Node<'_>) -> Option<Node<'_>> {
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        if n.is_error() || n.is_missing() {
            return Some(n);
        }
        if n.has_error() {
            let mut c = n.walk();
            let kids: Vec<_> = n.children(&mut c).collect();
            stack.extend(kids.into_iter().rev());
        }
    }
    None
}

/// A node's 1-based line range.
pub(crate) fn lines(n: Node<'_>) -> (u32, u32) {
    let start = n.start_position().row as u32 + 1;
    let end_pos = n.end_position();
    let mut end = end_pos.row as u32 + 1;
    if end_pos.column == 0 && end > start {
        end -= 1;
    }
    (start, end)
}

fn summarize(lang: Lang, code: &str, findings: &[Finding], functions: &[FunctionStats]) -> String {
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    let (e, w, i) = (count(Severity::Error), count(Severity::Warning), count(Severity::Info));
    let n_lines = code.lines().count();
    let mut s = format!(
        "{} lines of {} with {} function{}.",
        n_lines,
        lang.display(),
        functions.len(),
        if functions.len() == 1 { "" } else { "s" }
    );
    if let Some(worst) = functions.iter().max_by(|a, b| {
        (a.complexity, a.max_nesting, std::cmp::Reverse(a.line_start)).cmp(&(
            b.complexity,
            b.max_nesting,
            std::cmp::Reverse(b.line_start),
        ))
    }) {
        s.push_str(&format!(
            " The most complex is `{}` (cyclomatic complexity {}, nesting depth {}).",
            worst.name, worst.complexity, worst.max_nesting
        ));
    }
    if findings.is_empty() {
        s.push_str(" No problems found by the offline rules.");
    } else {
        s.push_str(&format!(" {e} error(s), {w} warning(s), {i} note(s)"));
        let mut rules: Vec<&str> =
            findings.iter().filter(|f| f.severity != Severity::Info).map(|f| f.rule.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        if rules.is_empty() {
            s.push('.');
        } else {
            s.push_str(&format!(": {}.", rules.join(", ")));
        }
        if let Some(first) = findings.iter().find(|f| f.severity == Severity::Error) {
            s.push_str(&format!(" Start with line {}: {}", first.line_start, first.message));
            if !s.ends_with('.') {
                s.push('.');
            }
        }
    }
    s
}

//! The offline resume analyzer: the skills a job description asks for (weighted by its
//! wording: "must", "required" against "nice to have", "bonus", "preferred"), which of
//! them the resume shows, a 0–100 match score (weighted skill coverage and BM25 of the
//! JD's skills and words over the resume's lines), and three STAR behavioral questions,
//! each tied to a quoted resume claim or a named gap. Deterministic.

mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use text::{segments, skills_in, taxonomy, terms, Bm25};

/// How much the job description wants a skill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Importance {
    /// Listed under "nice to have", "bonus", "preferred", "a plus".
    NiceToHave,
    /// Mentioned without a word either way.
    Expected,
    /// "must", "required", "essential".
    Required,
}

impl Importance {
    fn weight(self) -> f64 {
        match self {
            Importance::NiceToHave => 0.5,
            Importance::Expected => 1.0,
            Importance::Required => 2.0,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Importance::NiceToHave => "nice to have",
            Importance::Expected => "expected",
            Importance::Required => "required",
        }
    }
}

/// A skill the job wants and the resume shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillMatch {
    /// The skill's name in the taxonomy.
    pub skill: String,
    /// How much the job wants it.
    pub importance: Importance,
    /// The resume line that shows it.
    pub evidence: String,
}

/// A skill the job wants that the resume does not show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillGap {
    /// The skill's name in the taxonomy.
    pub skill: String,
    /// How much the job wants it.
    pub importance: Importance,
}

/// A STAR behavioral question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// What to ask.
    pub question: String,
    /// What it probes: `resume: "<the claim, quoted>"` or `gap: <skill> (<importance>)`.
    pub targets: String,
    /// Why it is worth asking.
    pub why: String,
}

/// The analysis of a resume against a job description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeAnalysis {
    /// 0–100.
    pub score: u8,
    /// Most wanted first.
    pub matched_skills: Vec<SkillMatch>,
    /// Most wanted first.
    pub skill_gaps: Vec<SkillGap>,
    /// Exactly three.
    pub questions: Vec<Question>,
}

/// Input the analyzer refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResumeError {
    /// No text in the resume.
    #[error("the resume is empty")]
    EmptyResume,
    /// No text in the job description.
    #[error("the job description is empty")]
    EmptyJob,
    /// The analyzer itself failed (a bug: it is logged).
    #[error("the analyzer failed")]
    Failed,
}

const REQUIRED_CUES: &[&str] = &[
    "must",
    "required",
    "requirement",
    "requirements",
    "essential",
    "mandatory",
    "need",
    "needs",
    "minimum",
    "qualifications",
    "you have",
    "you bring",
    "proficien",
    "erforderlich",
    "voraussetzung",
    "muss",
    "requis",
    "obligatoire",
    "exigé",
    "requisito",
    "imprescindible",
    "obligatorio",
    "necesario",
];
const NICE_CUES: &[&str] = &[
    "nice to have",
    "nice-to-have",
    "bonus",
    "preferred",
    "a plus",
    "is a plus",
    "are a plus",
    "ideally",
    "desirable",
    "optional",
    "advantage",
    "wünschenswert",
    "von vorteil",
    "un plus",
    "souhaité",
    "apprécié",
    "deseable",
    "valorable",
    "se valora",
    "plus:",
];

fn cue(s: &str) -> Option<Importance> {
    let l = s.to_lowercase();
    let has = |cues: &[&str]| cues.iter().any(|c| l.contains(c));
    if has(NICE_CUES) {
        Some(Importance::NiceToHave)
    } else if has(REQUIRED_CUES) {
        Some(Importance::Required)
    } else {
        None
    }
}

/// The skills a job description names, each at the importance of its strongest mention. A
/// heading line ("Nice to have:") sets the importance of the lines under it.
fn wanted(jd: &str) -> BTreeMap<usize, (Importance, usize)> {
    let mut out: BTreeMap<usize, (Importance, usize)> = BTreeMap::new();
    let mut section: Option<Importance> = None;
    for line in jd.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let found = skills_in(t);
        let bullet = t.starts_with(['-', '*', '•', '·', '–']);
        let heading = found.is_empty()
            && (t.ends_with(':') || t.starts_with('#') || (t.len() < 40 && !bullet && cue(t).is_some()));
        if heading {
            section = cue(t);
            continue;
        }
        for seg in segments(t) {
            let imp = cue(&seg).or(section).unwrap_or(Importance::Expected);
            for s in skills_in(&seg) {
                let pos = out.len();
                let e = out.entry(s).or_insert((imp, pos));
                e.0 = e.0.max(imp);
            }
        }
    }
    out
}

/// Analyzes `resume` against `jd` offline.
pub fn analyze(resume: &str, jd: &str) -> Result<ResumeAnalysis, ResumeError> {
    if resume.trim().is_empty() {
        return Err(ResumeError::EmptyResume);
    }
    if jd.trim().is_empty() {
        return Err(ResumeError::EmptyJob);
    }
    let tax = taxonomy();
    let wanted = wanted(jd);
    let want: BTreeMap<usize, Importance> = wanted.iter().map(|(s, (i, _))| (*s, *i)).collect();
    let pos =
        |name: &str| tax.skills.iter().position(|s| s.name == name).and_then(|i| wanted.get(&i)).map_or(0, |w| w.1);
    let claims = segments(resume);
    let claim_skills: Vec<_> = claims.iter().map(|c| skills_in(c)).collect();

    let mut matched = Vec::new();
    let mut gaps = Vec::new();
    for (&s, &imp) in &want {
        match claim_skills.iter().position(|cs| cs.contains(&s)) {
            Some(i) => matched.push(SkillMatch {
                skill: tax.skills[s].name.clone(),
                importance: imp,
                evidence: claims[i].clone(),
            }),
            None => gaps.push((s, SkillGap { skill: tax.skills[s].name.clone(), importance: imp })),
        }
    }
    // Most wanted first; then in the JD's order.
    matched.sort_by(|a, b| b.importance.cmp(&a.importance).then_with(|| pos(&a.skill).cmp(&pos(&b.skill))));
    gaps.sort_by(|a, b| b.1.importance.cmp(&a.1.importance).then_with(|| pos(&a.1.skill).cmp(&pos(&b.1.skill))));

    let score = score(&want, &claims, &claim_skills, jd);
    let questions = questions(&want, &claims, &claim_skills, &gaps);
    Ok(ResumeAnalysis {
        score,
        matched_skills: matched,
        skill_gaps: gaps.into_iter().map(|g| g.1).collect(),
        questions,
    })
}

/// 70% weighted skill coverage, 30% BM25 of the JD's skills and words over the resume's
/// lines, normalised by what a line holding each term once would score. With no known
/// skill in the JD, BM25 alone.
fn score(want: &BTreeMap<usize, Importance>, claims: &[String], claim_skills: &[Vec<usize>], jd: &str) -> u8 {
    let total: f64 = want.values().map(|i| i.weight()).sum();
    let covered: f64 =
        want.iter().filter(|(s, _)| claim_skills.iter().any(|cs| cs.contains(s))).map(|(_, i)| i.weight()).sum();
    // Documents: the resume's lines, each with its skills as `skill:<n>` terms.
    let docs: Vec<Vec<String>> = claims
        .iter()
        .zip(claim_skills)
        .map(|(c, cs)| terms(c).into_iter().chain(cs.iter().map(|s| format!("skill:{s}"))).collect())
        .collect();
    let bm = Bm25::new(&docs);
    let mut query: BTreeMap<String, f64> = BTreeMap::new();
    for (s, i) in want {
        query.insert(format!("skill:{s}"), 2.0 * i.weight());
    }
    let mut freq: BTreeMap<String, usize> = BTreeMap::new();
    for t in terms(jd) {
        *freq.entry(t).or_insert(0) += 1;
    }
    let mut words: Vec<(String, usize)> = freq.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (w, _) in words.into_iter().take(40) {
        query.entry(w).or_insert(1.0);
    }
    let (mut got, mut ideal) = (0.0, 0.0);
    for (t, w) in &query {
        let best = (0..bm.len()).map(|d| bm.score(t, d)).fold(0.0, f64::max);
        got += w * best;
        ideal += w * bm.idf(t);
    }
    let text = if ideal > 0.0 { (got / ideal).min(1.0) } else { 0.0 };
    let s = if total > 0.0 { 0.7 * covered / total + 0.3 * text } else { text };
    (s * 100.0).round().clamp(0.0, 100.0) as u8
}

const ACTION: &[&str] = &[
    "led",
    "built",
    "designed",
    "launched",
    "reduced",
    "improved",
    "migrated",
    "owned",
    "created",
    "developed",
    "scaled",
    "shipped",
    "implemented",
    "architected",
    "mentored",
    "managed",
    "automated",
    "introduced",
    "drove",
    "delivered",
    "cut",
    "increased",
    "rewrote",
    "optimized",
    "optimised",
];
const PEOPLE: &[&str] =
    &["led", "mentored", "managed", "coordinated", "coached", "hired", "team", "stakeholder", "cross-functional"];

/// A list of keywords ("Skills: Rust, Go, Kafka, Docker"), not a claim.
fn is_list(c: &str) -> bool {
    let parts = c.split([',', '|', '/']).count();
    parts >= 4 && c.split_whitespace().count() < parts * 3
}

fn questions(
    want: &BTreeMap<usize, Importance>,
    claims: &[String],
    claim_skills: &[Vec<usize>],
    gaps: &[(usize, SkillGap)],
) -> Vec<Question> {
    let tax = taxonomy();
    // Claims worth asking about: something done, ideally with numbers and the JD's skills.
    let mut ranked: Vec<(i64, usize)> = claims
        .iter()
        .enumerate()
        .filter(|(_, c)| c.split_whitespace().count() >= 5 && !is_list(c))
        .map(|(i, c)| {
            let l = c.to_lowercase();
            let first = l.split_whitespace().next().unwrap_or_default();
            let skill_w: f64 = claim_skills[i].iter().filter_map(|s| want.get(s)).map(|imp| imp.weight()).sum();
            let score = (skill_w * 30.0) as i64
                + if c.chars().any(|ch| ch.is_ascii_digit()) { 20 } else { 0 }
                + if ACTION.contains(&first) { 15 } else { 0 }
                + if PEOPLE.iter().any(|p| l.contains(p)) { 5 } else { 0 };
            (score, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let claim_q = |i: usize| {
        let c = &claims[i];
        let skills: Vec<&str> =
            claim_skills[i].iter().filter(|s| want.contains_key(s)).map(|s| tax.skills[*s].name.as_str()).collect();
        let people = PEOPLE.iter().any(|p| c.to_lowercase().contains(p));
        let question = if people {
            format!("Your resume says: \"{c}\". Tell me about that: what was the situation, what were you responsible for, how did you bring the people involved along, and what was the result?")
        } else {
            format!("Your resume says: \"{c}\". Walk me through it: the situation, your task, what you did yourself (not the team), and the measurable result.")
        };
        let why = match (skills.is_empty(), c.chars().any(|ch| ch.is_ascii_digit())) {
            (false, true) => format!("It is the resume's evidence for {} which the job asks for, and its numbers are worth checking.", skills.join(", ")),
            (false, false) => format!("It is the resume's evidence for {} which the job asks for; the answer shows depth beyond the keyword.", skills.join(", ")),
            (true, true) => "A concrete, measurable claim: the answer shows whether the candidate drove the result and how it was measured.".to_owned(),
            (true, false) => "One of the resume's main claims: the answer shows the candidate's own part in it.".to_owned(),
        };
        Question { question, targets: format!("resume: \"{c}\""), why }
    };
    let gap_q = |g: &SkillGap, s: usize| {
        let near: Vec<&str> = claim_skills
            .iter()
            .flatten()
            .filter(|k| tax.skills[**k].category == tax.skills[s].category && **k != s)
            .map(|k| tax.skills[*k].name.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .take(2)
            .collect();
        let bridge =
            if near.is_empty() { String::new() } else { format!(" (you list {}, which is close)", near.join(" and ")) };
        Question {
            question: format!("The role needs {}{bridge}, which your resume does not mention. Tell me about a time you had to become productive quickly with an unfamiliar technology: the situation, what you had to deliver, how you learned it, and how it turned out.", g.skill),
            targets: format!("gap: {} ({})", g.skill, g.importance.word()),
            why: format!("The job description calls {} {}, and nothing in the resume shows it; how the candidate learns is the next best evidence.", g.skill, g.importance.word()),
        }
    };
    let mut qs = Vec::new();
    let mut claims_iter = ranked.iter().map(|(_, i)| *i);
    if let Some(i) = claims_iter.next() {
        qs.push(claim_q(i));
    }
    if let Some((s, g)) = gaps.first() {
        qs.push(gap_q(g, *s));
    }
    for i in claims_iter.by_ref() {
        if qs.len() >= 3 {
            break;
        }
        qs.push(claim_q(i));
    }
    for (s, g) in gaps.iter().skip(1) {
        if qs.len() >= 3 {
            break;
        }
        qs.push(gap_q(g, *s));
    }
    // A resume of one short line and a JD with no known skill: ask about the line itself.
    let mut k = 0;
    while qs.len() < 3 && k < claims.len() {
        let c = &claims[k];
        if !qs.iter().any(|q| q.targets.contains(c.as_str())) {
            qs.push(claim_q(k));
        }
        k += 1;
    }
    while qs.len() < 3 {
        let c = claims.first().cloned().unwrap_or_default();
        qs.push(Question {
            question: format!("Pick the piece of work you are proudest of (your resume mentions \"{c}\"): the situation, your task, your actions and the result."),
            targets: format!("resume: \"{c}\""),
            why: "The resume gives little detail; an open STAR question lets the candidate supply the evidence.".into(),
        });
    }
    qs
}

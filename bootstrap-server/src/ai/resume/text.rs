//! Text for the resume analyzer: segments (lines, bullets, sentences), tokens, the skills
//! taxonomy (`data/skills.json`) and BM25.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaxonomyFile {
    #[allow(dead_code)]
    version: u32,
    skills: Vec<Skill>,
}

/// One skill of the taxonomy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Skill {
    pub(crate) name: String,
    pub(crate) category: String,
    /// Matched case-insensitively, as whole tokens (`k8s`, `machine learning`).
    aliases: Vec<String>,
    /// Matched only as written (`Go`, `C`, `R`: words or letters otherwise).
    #[serde(default)]
    exact: Vec<String>,
}

/// The taxonomy with an index from each alias's first token.
#[derive(Debug)]
pub(crate) struct Taxonomy {
    pub(crate) skills: Vec<Skill>,
    /// first token (lowercased unless exact) → (alias tokens, exact, skill index)
    index: HashMap<String, Vec<(Vec<String>, bool, usize)>>,
}

pub(crate) const SKILLS_JSON: &str = include_str!("../../../data/skills.json");

/// The shipped taxonomy, parsed once.
pub(crate) fn taxonomy() -> &'static Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(|| {
        let skills = match serde_json::from_str::<TaxonomyFile>(SKILLS_JSON) {
            Ok(f) => f.skills,
            Err(e) => {
                tracing::error!(error = %e, "data/skills.json does not parse; no skills known");
                Vec::new()
            }
        };
        let mut index: HashMap<String, Vec<(Vec<String>, bool, usize)>> = HashMap::new();
        for (i, s) in skills.iter().enumerate() {
            let names = std::iter::once((s.name.to_lowercase(), false))
                .chain(s.aliases.iter().map(|a| (a.to_lowercase(), false)))
                .chain(s.exact.iter().map(|a| (a.clone(), true)));
            for (alias, exact) in names {
                // `Go` and `C` as names: only as written.
                if !exact && s.exact.iter().any(|e| e.to_lowercase() == alias) {
                    continue;
                }
                let toks: Vec<String> = tokens(&alias).into_iter().map(|t| t.text).collect();
                let Some(first) = toks.first().cloned() else { continue };
                let key = if exact { first } else { first.to_lowercase() };
                index.entry(key).or_default().push((toks, exact, i));
            }
        }
        for v in index.values_mut() {
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.2.cmp(&b.2)));
            v.dedup();
        }
        Taxonomy { skills, index }
    })
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) text: String,
}

/// Tokens: runs of letters, digits and `+#./-` inside a word (`C++`, `C#`, `Node.js`,
/// `CI/CD`, `scikit-learn`); a trailing `.`, `/` or `-` is punctuation.
pub(crate) fn tokens(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, out: &mut Vec<Token>| {
        let t = cur.trim_end_matches(['.', '/', '-']).trim_start_matches(['/', '-']);
        if !t.is_empty() && t != "." {
            out.push(Token { text: t.to_owned() });
        }
        cur.clear();
    };
    for c in s.chars() {
        if c.is_alphanumeric() || matches!(c, '+' | '#' | '.' | '/' | '-' | '_') {
            cur.push(c);
        } else {
            flush(&mut cur, &mut out);
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// The skills mentioned in `s`, by taxonomy index in order of first mention, longest alias
/// first at each position.
pub(crate) fn skills_in(s: &str) -> Vec<usize> {
    let tax = taxonomy();
    let toks = tokens(s);
    let lower: Vec<String> = toks.iter().map(|t| t.text.to_lowercase()).collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let mut step = 1;
        let cands = tax.index.get(&toks[i].text).into_iter().chain(tax.index.get(&lower[i]));
        'c: for list in cands {
            for (alias, exact, skill) in list {
                let n = alias.len();
                if i + n > toks.len() {
                    continue;
                }
                let hit = (0..n).all(|k| if *exact { toks[i + k].text == alias[k] } else { lower[i + k] == alias[k] });
                if hit {
                    if !found.contains(skill) {
                        found.push(*skill);
                    }
                    step = n;
                    break 'c;
                }
            }
        }
        i += step;
    }
    found
}

/// Lines, bullets and sentences: what a resume claims one at a time.
pub(crate) fn segments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in s.lines() {
        let line = line.trim().trim_start_matches(['-', '*', '•', '·', '–', '—', '▪', '◦', '>', '|']).trim();
        if line.is_empty() {
            continue;
        }
        // A paragraph: its sentences.
        let mut start = 0;
        let bytes: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, c)) in bytes.iter().enumerate() {
            let next_space = bytes.get(k + 1).is_some_and(|(_, n)| n.is_whitespace());
            if matches!(c, '.' | '!' | '?') && next_space && i + 1 - start > 25 {
                out.push(line[start..=i].trim().to_owned());
                start = i + 1;
            }
        }
        let rest = line[start..].trim();
        if !rest.is_empty() {
            out.push(rest.to_owned());
        }
    }
    out
}

const STOP: &[&str] = &[
    "the",
    "and",
    "for",
    "with",
    "you",
    "your",
    "our",
    "are",
    "will",
    "who",
    "has",
    "have",
    "this",
    "that",
    "from",
    "into",
    "such",
    "etc",
    "was",
    "were",
    "can",
    "all",
    "any",
    "not",
    "but",
    "about",
    "more",
    "than",
    "their",
    "them",
    "they",
    "its",
    "also",
    "other",
    "able",
    "well",
    "using",
    "use",
    "work",
    "working",
    "years",
    "year",
    "experience",
    "team",
    "role",
    "job",
    "must",
    "required",
    "requirements",
    "nice",
    "have",
    "bonus",
    "preferred",
    "plus",
    "strong",
    "skills",
    "ability",
    "including",
    "les",
    "des",
    "une",
    "und",
    "der",
    "die",
    "das",
    "mit",
    "für",
    "los",
    "las",
    "con",
    "para",
    "por",
    "del",
    "que",
];

/// Content words, lowercased and lightly stemmed (`services` → `service`), for BM25.
pub(crate) fn terms(s: &str) -> Vec<String> {
    tokens(s)
        .into_iter()
        .map(|t| t.text.to_lowercase())
        .filter(|t| t.chars().count() >= 3 && !t.chars().all(|c| c.is_ascii_digit()) && !STOP.contains(&t.as_str()))
        .map(|t| stem(&t))
        .collect()
}

fn stem(t: &str) -> String {
    for suf in ["ing", "ed", "es", "s"] {
        if let Some(r) = t.strip_suffix(suf) {
            if r.chars().count() >= 4 && !t.ends_with("ss") {
                return r.to_owned();
            }
        }
    }
    t.to_owned()
}

/// BM25 over a small corpus of documents (each a bag of terms).
#[derive(Debug)]
pub(crate) struct Bm25 {
    docs: Vec<BTreeMap<String, f64>>,
    lens: Vec<f64>,
    avgdl: f64,
    df: BTreeMap<String, f64>,
}

impl Bm25 {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;

    pub(crate) fn new(docs: &[Vec<String>]) -> Bm25 {
        let mut df = BTreeMap::new();
        let mut tfs = Vec::new();
        for d in docs {
            let mut tf: BTreeMap<String, f64> = BTreeMap::new();
            for t in d {
                *tf.entry(t.clone()).or_insert(0.0) += 1.0;
            }
            for t in tf.keys() {
                *df.entry(t.clone()).or_insert(0.0) += 1.0;
            }
            tfs.push(tf);
        }
        let lens: Vec<f64> = docs.iter().map(|d| d.len() as f64).collect();
        let avgdl = (lens.iter().sum::<f64>() / lens.len().max(1) as f64).max(1.0);
        Bm25 { docs: tfs, lens, avgdl, df }
    }

    pub(crate) fn idf(&self, t: &str) -> f64 {
        let n = self.docs.len() as f64;
        let df = self.df.get(t).copied().unwrap_or(0.0);
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// The term's BM25 weight in document `d`.
    pub(crate) fn score(&self, t: &str, d: usize) -> f64 {
        let tf = self.docs[d].get(t).copied().unwrap_or(0.0);
        if tf == 0.0 {
            return 0.0;
        }
        let norm = 1.0 - Self::B + Self::B * self.lens[d] / self.avgdl;
        self.idf(t) * tf * (Self::K1 + 1.0) / (tf + Self::K1 * norm)
    }

    pub(crate) fn len(&self) -> usize {
        self.docs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_taxonomy_parses_and_aliases_resolve() {
        let t = taxonomy();
        assert!(t.skills.len() >= 150, "{}", t.skills.len());
        let names = |s: &str| skills_in(s).into_iter().map(|i| t.skills[i].name.clone()).collect::<Vec<_>>();
        assert_eq!(names("Ran k8s clusters"), ["Kubernetes"]);
        assert_eq!(names("Postgres and JS."), ["PostgreSQL", "JavaScript"]);
        assert_eq!(names("We go to Go meetups"), ["Go"]);
        assert_eq!(names("C++, C# and C."), ["C++", "C#", "C"]);
        assert_eq!(names("machine learning with scikit-learn"), ["Machine Learning", "scikit-learn"]);
        assert_eq!(names("built CI/CD on GitHub Actions"), ["CI/CD", "GitHub Actions"]);
    }
}

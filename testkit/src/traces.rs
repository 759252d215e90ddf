//! The real editing traces (`editing-traces` by Joseph Gentle and the Automerge authors,
//! CC-BY 4.0; see `shared/data/traces/README.md`): where they are, loading a sequential
//! trace with its code-point positions converted to UTF-16 units, and the raw format for
//! the concurrent one.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// The sequential traces, smallest first.
pub const SEQUENTIAL: &[&str] = &["sveltecomponent", "rustcode", "automerge-paper"];

/// Where the traces are: `$ARENA_TRACES_DIR` or the workspace's `../shared/data/traces`.
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("ARENA_TRACES_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        // This crate sits one level below the workspace, which sits beside `shared/`.
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/traces")),
    }
}

/// One splice in UTF-16 units: delete `del` units at `pos`, then insert `ins` there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    /// Position in UTF-16 code units.
    pub pos: u32,
    /// UTF-16 code units to delete.
    pub del: u32,
    /// Text to insert.
    pub ins: String,
}

/// A sequential editing trace with its patches converted to UTF-16 units.
#[derive(Clone, Debug)]
pub struct Trace {
    /// File stem, e.g. `automerge-paper`.
    pub name: String,
    /// The document before the first patch.
    pub start: String,
    /// The document after the last patch.
    pub end: String,
    /// Every patch in order (transactions flattened: one patch = one edit).
    pub patches: Vec<Patch>,
    /// Transactions in the file (some hold several patches).
    pub txns: usize,
}

impl Trace {
    /// The first `n` patches as a trace of their own (its `end` is unknown: empty).
    pub fn prefix(&self, n: usize) -> Trace {
        let n = n.min(self.patches.len());
        Trace {
            name: format!("{}[..{n}]", self.name),
            start: self.start.clone(),
            end: if n == self.patches.len() { self.end.clone() } else { String::new() },
            patches: self.patches[..n].to_vec(),
            txns: 0,
        }
    }

    /// Whether this is a whole trace (so its end content is known).
    pub fn is_complete(&self) -> bool {
        !self.end.is_empty() || self.patches.is_empty()
    }

    /// Total inserted UTF-16 units (a size hint).
    pub fn inserted_units(&self) -> usize {
        self.patches.iter().map(|p| p.ins.encode_utf16().count()).sum()
    }
}

#[derive(Deserialize)]
struct RawTrace {
    #[serde(rename = "startContent", default)]
    start: String,
    #[serde(rename = "endContent")]
    end: String,
    txns: Vec<RawTxn>,
    #[serde(default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawTxn {
    patches: Vec<(usize, usize, String)>,
}

/// The path of trace file `file` (e.g. `rustcode.json.gz`), or None after a loud
/// `SKIPPED` note on stderr when it is not there: tests that need a trace pass without it.
pub fn find(file: &str) -> Option<PathBuf> {
    let path = traces_dir().join(file);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIPPED: trace not found at {} (set ARENA_TRACES_DIR)", path.display());
        None
    }
}

/// A trace file as it is: `startContent`, `endContent`, and transactions of code-point
/// patches, each with its `parents` and `agent` in a concurrent trace.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawFile {
    /// `"concurrent"` for a trace with parents; absent for sequential ones.
    #[serde(default)]
    pub kind: Option<String>,
    /// The document before the first transaction.
    #[serde(default)]
    pub start_content: String,
    /// The document after the last transaction.
    pub end_content: String,
    /// Agents of a concurrent trace.
    #[serde(default)]
    pub num_agents: usize,
    /// Every transaction in order.
    pub txns: Vec<RawFileTxn>,
}

/// One transaction of a [`RawFile`].
#[derive(Clone, Debug, Deserialize)]
pub struct RawFileTxn {
    /// Indices of the transactions this one follows (concurrent traces).
    #[serde(default)]
    pub parents: Vec<usize>,
    /// The agent that made it (concurrent traces).
    #[serde(default)]
    pub agent: usize,
    /// `[pos, delCount, insText]`, in Unicode code points.
    pub patches: Vec<(usize, usize, String)>,
}

/// Reads a `.json.gz` trace file as it is.
pub fn read_raw(path: &Path) -> Result<RawFile> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
    serde_json::from_reader(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
        .with_context(|| format!("cannot parse trace {}", path.display()))
}

/// Loads `<traces_dir>/<name>.json.gz` (a sequential trace) and converts its positions.
pub fn load_trace(name: &str) -> Result<Trace> {
    load_trace_from(&traces_dir(), name)
}

/// Loads `<dir>/<name>.json.gz`.
pub fn load_trace_from(dir: &Path, name: &str) -> Result<Trace> {
    let path = dir.join(format!("{name}.json.gz"));
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open trace {} (set ARENA_TRACES_DIR)", path.display()))?;
    let raw: RawTrace = serde_json::from_reader(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
        .with_context(|| format!("cannot parse trace {}", path.display()))?;
    if raw.kind.as_deref() == Some("concurrent") {
        bail!("{} is a concurrent trace; these helpers replay sequential ones", path.display());
    }
    let mut conv = Utf16Converter::new(&raw.start);
    let mut patches = Vec::with_capacity(raw.txns.iter().map(|t| t.patches.len()).sum());
    for txn in &raw.txns {
        for (pos, del, ins) in &txn.patches {
            patches.push(conv.convert(*pos, *del, ins)?);
        }
    }
    Ok(Trace { name: name.to_owned(), start: raw.start, end: raw.end, patches, txns: raw.txns.len() })
}

/// Converts code-point splices into UTF-16 splices while replaying them.
///
/// It only tracks where the characters outside the BMP (two UTF-16 units each) are, so a
/// splice costs O(number of such characters) and pure-BMP documents cost nothing.
#[derive(Clone, Debug, Default)]
pub struct Utf16Converter {
    /// Sorted code-point indices of astral characters in the current document.
    astral: Vec<usize>,
    /// Current length in code points.
    len: usize,
}

impl Utf16Converter {
    /// A converter for a document starting as `start`.
    pub fn new(start: &str) -> Self {
        let mut c = Utf16Converter::default();
        for (i, ch) in start.chars().enumerate() {
            if ch.len_utf16() == 2 {
                c.astral.push(i);
            }
            c.len = i + 1;
        }
        c
    }

    /// Current length in code points.
    pub fn len_chars(&self) -> usize {
        self.len
    }

    /// Whether the document is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn astral_before(&self, pos: usize) -> usize {
        self.astral.partition_point(|&i| i < pos)
    }

    /// Converts `[pos, del, ins]` (code points) to UTF-16 units and applies it.
    pub fn convert(&mut self, pos: usize, del: usize, ins: &str) -> Result<Patch> {
        ensure!(pos + del <= self.len, "patch [{pos}, {del}] past the end ({} chars)", self.len);
        let a = self.astral_before(pos);
        let b = self.astral_before(pos + del);
        let pos16 = pos + a;
        let del16 = del + (b - a);
        // Remove the deleted astral chars, shift the ones after by the net length change.
        let n_ins = ins.chars().count();
        let mut tail: Vec<usize> = self.astral.drain(a..).skip(b - a).map(|i| i - del + n_ins).collect();
        self.astral.extend(ins.chars().enumerate().filter(|(_, c)| c.len_utf16() == 2).map(|(i, _)| pos + i));
        self.astral.append(&mut tail);
        self.len = self.len - del + n_ins;
        Ok(Patch {
            pos: u32::try_from(pos16).context("position over u32")?,
            del: u32::try_from(del16).context("delete count over u32")?,
            ins: ins.to_owned(),
        })
    }
}

/// UTF-16 units in the first `chars` code points of `s`.
pub fn char_to_utf16(s: &str, chars: usize) -> usize {
    s.chars().take(chars).map(char::len_utf16).sum()
}

/// Applies UTF-16 patches to a string the slow, obvious way (for checking small cases).
pub fn apply_utf16(start: &str, patches: &[Patch]) -> String {
    let mut units: Vec<u16> = start.encode_utf16().collect();
    for p in patches {
        let pos = p.pos as usize;
        units.splice(pos..pos + p.del as usize, p.ins.encode_utf16());
    }
    String::from_utf16_lossy(&units)
}

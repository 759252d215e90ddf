//! Reading a recording back: the session as a timeline of steps (who typed what, votes,
//! runs, versions), the code at any instant, exports (JSON, a self-contained HTML player)
//! and [`verify`], the full audit. [`read_verified`] is the gate `replay` and `export` go
//! through: it verifies first and refuses what does not pass.

mod export;
mod verify;

use std::collections::{BTreeMap, HashMap};

use arena_core::history::{minimal_edits, Splice};
use arena_core::{PeerKey, Role, RoomDoc, RoomId};
use serde::Serialize;

pub use export::{export_html, export_html_with_media, export_json, CallMedia};
pub use verify::{verify, Break, LastSeal, Pins, StockWriter, VerifyReport};

use crate::error::{NodeError, Result};
use crate::recording::{Record, RecordingFile};

/// What a reader of a recording trusts and accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// The room and recorder key expected.
    pub pins: Pins,
    /// Accept a recording without its closing seal, up to its last seal.
    pub allow_incomplete: bool,
    /// Go on with a recording that does not verify (with a warning).
    pub unverified: bool,
}

/// The unpinned notice: which of the room and the recorder key a verify trusted because
/// the file names them. `None` when both were pinned, or the header did not match a pin.
pub fn unpinned_notice(rep: &VerifyReport) -> Option<String> {
    if rep.first_break.as_ref().is_some_and(|b| b.record.is_none()) {
        return None;
    }
    let (room, key) = (rep.room, rep.recorder);
    match (rep.room_pinned, rep.recorder_pinned) {
        (true, true) => None,
        (false, false) => Some(format!(
            "UNPINNED: trusted room {room} and recorder key {key} because the file names them: anyone who can \
             write a file can make one that passes. Pin both: --room {room} --recorder-key {key}"
        )),
        (true, false) => Some(format!(
            "UNPINNED recorder key: trusted {key} because the file names it: anyone with a key of their own \
             (whoever writes the file) can make a recording of this room that passes. Pin it: --recorder-key {key}"
        )),
        (false, true) => Some(format!(
            "UNPINNED room: trusted room {room} because the file names it (the recorder may have recorded \
             other rooms). Pin it: --room {room}"
        )),
    }
}

/// Reads and verifies `path` for `replay` or `export`. A recording that passes is returned
/// (an incomplete one accepted with `allow_incomplete` only up to its last seal: the
/// records after it are not vouched for). One that does not pass is refused, or with
/// `unverified` returned whole. The second value holds the warnings to show the reader.
pub fn read_verified(path: &std::path::Path, trust: &Trust) -> Result<(RecordingFile, Vec<String>)> {
    let mut file = RecordingFile::read(path)?;
    let rep = verify(&file, &trust.pins);
    let mut warnings = Vec::new();
    match rep.problem() {
        None => {}
        Some(_) if rep.passes(trust.allow_incomplete) => {
            let sealed = rep.last_seal.as_ref().map_or(0, |l| l.records);
            warnings.push(format!(
                "INCOMPLETE: {}; showing the {sealed} record(s) up to the last seal only",
                rep.incomplete()
            ));
            file.records.truncate(sealed);
            file.torn_tail = None;
        }
        Some(problem) if trust.unverified => {
            warnings.push(format!(
                "UNVERIFIED: {} does not verify ({problem}); going on because of --unverified: none of what \
                 follows is evidence",
                file.path.display()
            ));
        }
        Some(problem) => {
            return Err(NodeError::Recording {
                path: file.path.display().to_string(),
                reason: format!(
                    "does not verify: {problem}. `arena-node verify` gives the report; --unverified reads it anyway"
                ),
            })
        }
    }
    warnings.extend(unpinned_notice(&rep));
    Ok((file, warnings))
}

/// A member of the recorded room.
#[derive(Clone, Debug, Serialize)]
pub struct MemberInfo {
    /// Public key, hex.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// One splice of the code, in UTF-16 units (what JavaScript strings index).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SpliceJson {
    /// Position.
    pub pos: u32,
    /// Units deleted.
    pub delete: u32,
    /// Text inserted.
    pub insert: String,
}

impl From<Splice> for SpliceJson {
    fn from(s: Splice) -> Self {
        SpliceJson { pos: s.pos, delete: s.delete, insert: s.insert }
    }
}

/// One recorded envelope and what it changed.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Position in the recorded log (envelopes only), from 0.
    pub index: usize,
    /// When the recorder received it, unix milliseconds.
    pub at: u64,
    /// Author key, hex.
    pub author: String,
    /// Author's display name; for a node's envelope written by a stock client, "<role>
    /// <grant> via <node>".
    pub name: String,
    /// For a node's envelope written by a stock client: "via node, as <role>" and the grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Author's envelope sequence number.
    pub seq: u64,
    /// The edits to the code, applied in order, that this step made.
    pub splices: Vec<SpliceJson>,
    /// Other things that happened: votes, runs, versions, analyses, participants.
    pub events: Vec<String>,
    /// The whole code after this step, every [`KEYFRAME_EVERY`] steps (to seek fast).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Steps between two full copies of the code in a timeline.
pub const KEYFRAME_EVERY: usize = 64;

/// A recorded session, step by step.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    /// Room id, hex.
    pub room: String,
    /// When the recording started.
    pub started: u64,
    /// Members, by key.
    pub members: Vec<MemberInfo>,
    /// Every envelope, in the order received.
    pub steps: Vec<Step>,
    /// Awareness changes (cursors, presence): time and JSON.
    pub awareness: Vec<(u64, serde_json::Value)>,
    /// Runs at the end of the session.
    pub runs: serde_json::Value,
    /// Versions at the end of the session.
    pub versions: serde_json::Value,
    /// The code at the end.
    pub final_code: String,
    /// The call's media files the recording vouches for (in the directory's `media/`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<crate::media::MediaFile>,
    /// What the reader was warned of when it was read (unpinned, incomplete, unverified);
    /// empty when it verified with the room and the recorder key pinned. Exports carry it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

fn short(key: &PeerKey) -> String {
    key.to_hex()[..8].to_owned()
}

/// The document's records the timeline watches, to say what a step changed.
struct Watched {
    votes: Vec<(String, arena_core::records::VoteRecord)>,
    runs: usize,
    versions: usize,
    analysis: usize,
    participants: usize,
}

impl Watched {
    fn of(doc: &RoomDoc) -> Self {
        Watched {
            votes: doc.votes(),
            runs: doc.runs().len(),
            versions: doc.versions().len(),
            analysis: doc.analysis().len(),
            participants: doc.participants().len(),
        }
    }
}

fn describe(doc: &RoomDoc, before: &Watched, after: &Watched, names: &HashMap<String, String>) -> Vec<String> {
    let mut ev = Vec::new();
    let name = |k: &str| names.get(k).cloned().unwrap_or_else(|| k.chars().take(8).collect());
    for (voter, v) in &after.votes {
        if !before.votes.iter().any(|(k, old)| k == voter && old == v) {
            ev.push(format!(
                "{} voted {} the analyzer (round {})",
                name(voter),
                if v.enabled { "for" } else { "against" },
                v.round
            ));
        }
    }
    if after.votes.is_empty() && !before.votes.is_empty() {
        ev.push("votes reset".into());
    }
    for r in doc.runs().iter().skip(before.runs) {
        ev.push(format!("run {} ({}): {:?}, exit {:?}", r.id, r.language, r.status, r.exit_code));
    }
    for v in doc.versions().iter().skip(before.versions) {
        ev.push(format!("version {} \"{}\" ({:?}) by {}", v.id, v.label, v.cause, name(&v.by)));
    }
    for a in doc.analysis().iter().skip(before.analysis) {
        ev.push(format!("analysis round {} by {}: {} finding(s)", a.round, a.backend, a.findings.len()));
    }
    if after.participants > before.participants {
        ev.push("a participant joined".into());
    }
    ev
}

/// Builds the timeline of a recording (decoding only: run [`verify`] for the audit).
pub fn timeline(file: &RecordingFile) -> Result<Timeline> {
    let room: RoomId = file.header.room;
    let bad = |i: usize, e: String| NodeError::Recording {
        path: file.path.display().to_string(),
        reason: format!("record {i}: {e}"),
    };
    let doc = RoomDoc::new(0);
    let mut media = Vec::new();
    let mut members: BTreeMap<PeerKey, MemberInfo> = BTreeMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut delegations: HashMap<PeerKey, arena_core::Delegation> = HashMap::new();
    let mut steps = Vec::new();
    let mut awareness = Vec::new();
    let mut code = String::new();
    let mut watched = Watched::of(&doc);
    for r in &file.records {
        match r.decode(room).map_err(|e| bad(r.index, e))? {
            Record::Admission { admission, .. } => {
                let info = MemberInfo {
                    key: admission.member.to_hex(),
                    name: admission.name.clone(),
                    role: admission.grant.role,
                };
                names.insert(info.key.clone(), info.name.clone());
                members.insert(admission.member, info);
            }
            Record::Envelope { received_ms, envelope } => {
                doc.apply_v1(&envelope.update).map_err(|e| bad(r.index, e.to_string()))?;
                let now = doc.code();
                let splices = if now == code {
                    Vec::new()
                } else {
                    minimal_edits(&code, &now).into_iter().map(Into::into).collect()
                };
                let after = Watched::of(&doc);
                let events = describe(&doc, &watched, &after, &names);
                watched = after;
                code = now;
                let index = steps.len();
                let key = envelope.author.to_hex();
                let node = names.get(&key).cloned().unwrap_or_else(|| short(&envelope.author));
                let via = envelope.via.map(|v| match delegations.get(&v) {
                    Some(d) => (format!("via node, as {} (grant {})", d.grant.role, d.grant.label()), {
                        format!("{} {} via {node}", d.grant.role, d.grant.label())
                    }),
                    None => (format!("via node, for unknown grant {}", short(&v)), format!("? via {node}")),
                });
                let (via, name) = match via {
                    Some((v, n)) => (Some(v), n),
                    None => (None, node),
                };
                steps.push(Step {
                    index,
                    at: received_ms,
                    name,
                    via,
                    author: key,
                    seq: envelope.seq,
                    splices,
                    events,
                    code: (index % KEYFRAME_EVERY == 0).then(|| code.clone()),
                });
            }
            Record::Delegation { delegation, .. } => {
                delegations.insert(delegation.key(), delegation);
            }
            Record::Awareness { at_ms, json } => {
                awareness.push((at_ms, serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json))));
            }
            Record::Media { file, .. } => {
                media.retain(|m: &crate::media::MediaFile| m.file != file.file);
                media.push(file);
            }
            Record::Seal(_) | Record::Revocation { .. } => {}
        }
    }
    Ok(Timeline {
        room: room.to_hex(),
        started: file.header.started_ms,
        members: members.into_values().collect(),
        steps,
        awareness,
        runs: serde_json::to_value(doc.runs()).unwrap_or_default(),
        versions: serde_json::to_value(doc.versions()).unwrap_or_default(),
        final_code: code,
        media,
        warnings: Vec::new(),
    })
}

/// The code as the recorder had it at `at` (unix milliseconds; `None`: the end).
pub fn code_at(file: &RecordingFile, at: Option<u64>) -> Result<String> {
    let doc = RoomDoc::new(0);
    for r in &file.records {
        let rec = r.decode(file.header.room).map_err(|e| NodeError::Recording {
            path: file.path.display().to_string(),
            reason: format!("record {}: {e}", r.index),
        })?;
        if let Record::Envelope { received_ms, envelope } = rec {
            if at.is_some_and(|t| received_ms > t) {
                break;
            }
            doc.apply_v1(&envelope.update)?;
        }
    }
    Ok(doc.code())
}

/// Parses a `--at` value: an RFC 3339 time, unix milliseconds, or `end`.
pub fn parse_at(s: &str) -> Result<Option<u64>> {
    if s == "end" {
        return Ok(None);
    }
    crate::time::parse_ms(s).map(Some).ok_or_else(|| NodeError::BadAddress {
        addr: s.into(),
        reason: "not an RFC 3339 time, unix milliseconds or `end`".into(),
    })
}

/// The session as text, step by step.
pub fn render(t: &Timeline) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "room {} recorded from {}", t.room, crate::time::format_ms(t.started));
    for m in &t.members {
        let _ = writeln!(out, "  member {} ({}) {}", m.name, m.role, &m.key[..16]);
    }
    for s in &t.steps {
        let when = crate::time::format_ms(s.at);
        for sp in &s.splices {
            let what = match (sp.delete, sp.insert.is_empty()) {
                (0, false) => format!("typed {:?} at {}", sp.insert, sp.pos),
                (d, true) => format!("deleted {d} at {}", sp.pos),
                (d, false) => format!("replaced {d} at {} with {:?}", sp.pos, sp.insert),
            };
            let _ = writeln!(out, "[{when}] {}: {what}", s.name);
        }
        for e in &s.events {
            let _ = writeln!(out, "[{when}] {}: {e}", s.name);
        }
    }
    let _ = writeln!(out, "--- code at the end ---\n{}", t.final_code);
    out
}

/// Reconstructs the code after each step from a timeline's splices and keyframes (what
/// the HTML player does): `result[i]` is the code after step `i`.
pub fn replay_codes(t: &Timeline) -> Vec<String> {
    let mut units: Vec<u16> = Vec::new();
    let mut out = Vec::with_capacity(t.steps.len());
    for s in &t.steps {
        for sp in &s.splices {
            let pos = (sp.pos as usize).min(units.len());
            let end = (pos + sp.delete as usize).min(units.len());
            units.splice(pos..end, sp.insert.encode_utf16());
        }
        out.push(String::from_utf16_lossy(&units));
    }
    out
}

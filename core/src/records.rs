//! The records stored in the room document's maps and arrays. Field names are camelCase
//! in the document, so a stock Yjs client reads them as plain JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grant::Role;

mod from_json;
pub(crate) use from_json::FromJson;

/// `meta`: room-wide settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    /// Programming language of the buffer (e.g. "python").
    pub language: String,
    /// Room title.
    pub title: String,
    /// The interview question.
    pub question: String,
    /// Legacy (documents before the consensus rule was fixed by the room): ignored by
    /// [`crate::vote::Consensus`]; kept so older documents read back whole.
    pub analyzer_threshold: Vec<Role>,
    /// Legacy, ignored: the round is [`crate::Room::analyzer_round`].
    pub analyzer_round: u64,
    /// Creation time, unix milliseconds.
    pub created_at: u64,
}

/// `participants[peer hex]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Display name.
    pub name: String,
    /// Role in the room.
    pub role: Role,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Unix milliseconds.
    pub joined_at: u64,
}

/// `votes[peer hex]`: a signed vote (see [`crate::vote`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoteRecord {
    /// The analyzer round.
    pub round: u64,
    /// For or against.
    pub enabled: bool,
    /// Ed25519 signature, hex.
    pub signature: String,
}

/// One entry of `analysis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRecord {
    /// The round it answers.
    pub round: u64,
    /// Which analyzer produced it ("offline", "groq", ...).
    pub backend: String,
    /// Free-form findings.
    pub findings: Vec<String>,
    /// Unix milliseconds.
    pub created_at: u64,
}

/// Status of a code run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still running: the record holds output that arrived since the run's previous
    /// `running` record (the final record replaces them all).
    Running,
    /// Exited (any exit code).
    Finished,
    /// Killed by the wall-clock or CPU limit.
    TimedOut,
    /// Could not start (unknown language, sandbox failure).
    Failed,
}

/// One entry of `runs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// Who asked for it (peer hex).
    pub by: String,
    /// Language.
    pub language: String,
    /// Outcome.
    pub status: RunStatus,
    /// Captured stdout (possibly truncated).
    pub stdout: String,
    /// Captured stderr (possibly truncated).
    pub stderr: String,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// CPU milliseconds.
    pub cpu_ms: u64,
    /// Wall-clock milliseconds.
    pub wall_ms: u64,
    /// Unix milliseconds.
    pub at: u64,
}

/// Why a version was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionCause {
    /// A successful run.
    Run,
    /// A restore of an older version.
    Restore,
    /// Someone saved it by hand.
    Manual,
}

/// `files[name]`: an extra file of the room (its text is the root `files/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Unix milliseconds.
    pub created_at: u64,
}

/// One entry of `versions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionMeta {
    /// Version id (unique in the room).
    pub id: String,
    /// Human label.
    pub label: String,
    /// Why it was made.
    pub cause: VersionCause,
    /// Unix milliseconds.
    pub at: u64,
    /// Author (peer hex).
    pub by: String,
    /// The yrs state vector at the version, hex of its v1 encoding.
    pub state_vector: String,
    /// The exact cut: author (hex) → number of that author's envelopes included. Together
    /// with the envelope log this reconstructs the version on any replica.
    pub heads: BTreeMap<String, u64>,
}

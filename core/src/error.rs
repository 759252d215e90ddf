//! The crate's error type.

use thiserror::Error;

pub(crate) mod reasons;

/// Everything that can go wrong in arena-core. Input from a peer, a file or a user that is
/// malformed, forged or not allowed always ends up here as a value, never as a panic.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// Bytes that do not decode: truncated, garbage, or an unknown version/tag.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A message larger than the configured limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A signature that does not verify.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// A grant or token past its expiry.
    #[error("grant expired at {expiry} (now {now})")]
    Expired {
        /// Expiry, unix seconds.
        expiry: u64,
        /// The time the check ran, unix seconds.
        now: u64,
    },
    /// Something addressed to another room.
    #[error("wrong room: expected {expected}, got {got}")]
    WrongRoom {
        /// The room we are in.
        expected: String,
        /// The room the message names.
        got: String,
    },
    /// The author is not allowed to do this (unknown author, observer writing, non-host trigger).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// An envelope whose update creates items under a client id the author does not own.
    #[error("author wrote under client id {client} which it does not own")]
    ForeignClientId {
        /// The offending client id.
        client: u64,
    },
    /// An envelope already seen (same author and sequence number): a replay.
    #[error("replayed envelope: author {author} seq {seq} already applied")]
    Replayed {
        /// Author, hex.
        author: String,
        /// Sequence number.
        seq: u64,
    },
    /// An envelope whose `prev` hash does not match the author's chain.
    #[error("broken hash chain for author {author} at seq {seq}")]
    BrokenChain {
        /// Author, hex.
        author: String,
        /// Sequence number.
        seq: u64,
    },
    /// An envelope that arrived before its predecessors and could not be buffered.
    #[error("gap in author {author}'s chain: expected seq {expected}, got {got}")]
    Gap {
        /// Author, hex.
        author: String,
        /// The next sequence number we can apply.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// The CRDT refused an update.
    #[error("update rejected by the document: {0}")]
    Update(#[from] yrs::error::UpdateError),
    /// Consensus rules (votes, rounds) were not met.
    #[error("consensus: {0}")]
    Consensus(String),
    /// A file name the room does not take (see [`crate::check_file_name`]).
    #[error("bad file name {name}: {reason}")]
    FileName {
        /// The name as the message shows it: quoted, cut to 64 characters, anything but
        /// printable ASCII as `?`.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A version or point in time that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store holds something this code did not write (a dangling index, a truncated
    /// entry) or cannot do what was asked; the message names the file or tree where it can.
    #[error("store: {0}")]
    Store(String),
    /// The storage engine (sled, a recording file) failed.
    #[error("store: {context}: {source}")]
    Storage {
        /// The file, and the tree or record, where it failed.
        context: String,
        /// The engine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        CoreError::Malformed { what, reason: reason.to_string() }
    }
}

//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong in arena-node's library API.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// arena-core refused something (a bad token, a forged envelope, a store failure).
    #[error(transparent)]
    Core(#[from] arena_core::CoreError),
    /// Building the libp2p swarm or listening failed.
    #[error("libp2p: {0}")]
    Transport(String),
    /// A multiaddr or URL that does not parse or says nothing we can dial.
    #[error("bad address {addr:?}: {reason}")]
    BadAddress {
        /// What was given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// A command for a room this node has not joined.
    #[error("room {0} is not joined on this node")]
    NotJoined(String),
    /// The node stopped (shut down or crashed) before answering.
    #[error("the node has stopped")]
    Stopped,
    /// A file could not be read or written; the message names it.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A key file that exists but does not hold a key (edited, truncated, or not ours).
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A recording that does not decode or does not verify.
    #[error("recording {path}: {reason}")]
    Recording {
        /// The recording file.
        path: String,
        /// What is wrong, with the record number and byte offset where known.
        reason: String,
    },
    /// A remote service (the bootstrap node's HTTP API or its y-websocket endpoint) failed.
    #[error("{0}")]
    Remote(String),
}

impl NodeError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        NodeError::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

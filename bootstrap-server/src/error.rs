//! Errors: the crate's `BootstrapError`, and `AppError` for HTTP answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;

/// What can go wrong in the bootstrap node: the error of arena-bootstrap's library API
/// (`run`, `Registry`).
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// From arena-core (store, decoding, trust checks).
    #[error(transparent)]
    Core(#[from] arena_core::CoreError),
    /// From arena-node: the node's libp2p side failed to start.
    #[error("libp2p node: {0}")]
    Node(#[from] arena_node::NodeError),
    /// Socket or file I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A file or directory of the data dir that could not be read, written or made.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key file that exists but does not hold a key.
    #[error("{} is not a 64-hex-digit key (remove it to make a new one, or restore it)", path.display())]
    BadKeyFile {
        /// The key file.
        path: std::path::PathBuf,
    },
    /// A room's record in the store that does not decode (or could not be encoded).
    #[error("room record {room}: {source}")]
    RoomRecord {
        /// The room, hex.
        room: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The OS gave no random bytes (for a key). (getrandom's error implements
    /// `std::error::Error` only with its `std` feature, so it is the payload, not a source.)
    #[error("no randomness from the OS: {0}")]
    Randomness(getrandom::Error),
    /// The room is not known to this node.
    #[error("unknown room {0}")]
    UnknownRoom(String),
    /// A configuration value that does not parse or cannot be used.
    #[error("configuration: {0}")]
    Config(String),
    /// The room's actor stopped (node shutting down).
    #[error("room {0} is unavailable")]
    RoomGone(String),
}

/// An HTTP error: client errors say what was wrong; server errors are logged and answered
/// generically.
#[derive(Debug)]
pub(crate) enum AppError {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    UnsupportedMediaType(String),
    TooManyRequests(String),
    /// 503: a service the request needs is off or busy (the message says which).
    Unavailable(String),
    Internal(String),
}

impl From<BootstrapError> for AppError {
    fn from(e: BootstrapError) -> Self {
        match e {
            BootstrapError::UnknownRoom(r) => AppError::NotFound(format!("unknown room {r}")),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            AppError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            AppError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            AppError::TooManyRequests(m) => (StatusCode::TOO_MANY_REQUESTS, m),
            AppError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            AppError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_owned())
            }
        };
        (status, Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

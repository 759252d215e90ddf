//! Errors: the crate's `NodeError`, and `AppError` for HTTP answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use thiserror::Error;

/// What can go wrong in the bootstrap node.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// From arena-core (store, decoding, trust checks).
    #[error(transparent)]
    Core(#[from] arena_core::CoreError),
    /// Socket or file I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
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

//! arena-bootstrap: InterviewArena's self-hosted bootstrap node.
//!
//! One binary, embedded defaults: it creates rooms and invite tokens (`POST /api/rooms`),
//! serves stock Yjs clients over the y-websocket protocol (`/yws/{room}`) as a full,
//! persisting peer that signs their updates on their behalf, and runs a y-webrtc
//! compatible signaling server (`/signal`). History lives in sled under `--data-dir`.
//!
//! Servers take an already-bound listener and a shutdown token, so tests bind port 0:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cfg = arena_bootstrap::Config::for_tests("/tmp/arena-demo");
//! let listener = tokio::net::TcpListener::bind(cfg.http_addr).await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! arena_bootstrap::run(cfg, listener, shutdown).await?;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod http;
mod hub;
mod limit;
mod metrics;
mod node;
mod signal;
mod yws;

pub use config::Config;
pub use error::BootstrapError;
pub use metrics::Metrics;
pub use node::Node;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the node on `listener` until `shutdown` is cancelled; then closes connections,
/// flushes every room and returns.
pub async fn run(cfg: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), BootstrapError> {
    let addr = listener.local_addr()?;
    let public_url = cfg.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let node = Node::open(cfg, public_url.trim_end_matches('/').to_owned(), shutdown.clone())?;
    println!("listening on http://{addr}");
    tracing::info!(node = %node.public_key(), data_dir = %node.cfg().data_dir.display(), "bootstrap node started");
    let app = http::router(node.clone());
    let stop = shutdown.clone();
    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
    shutdown.cancel();
    node.join_all().await;
    tracing::info!("stopped; sled flushed");
    Ok(())
}

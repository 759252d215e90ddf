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

pub mod ai;
mod chan;
mod clock;
mod config;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod limit;
mod live;
pub mod metrics;
mod node;
mod p2p;
mod signal;
mod ws;
mod yws;

pub use config::{AdminToken, Config};
pub use error::BootstrapError;
pub use metrics::Metrics;
pub use node::Node;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A line on stdout for whoever started us (scripts parse it); a closed stdout is not an
/// error worth dying for.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Serves the node on `listener` until `shutdown` is cancelled; then closes connections,
/// flushes every room and returns.
pub async fn run(mut cfg: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), BootstrapError> {
    let addr = listener.local_addr()?;
    // The address actually bound (port 0 resolved): whether it is loopback decides who may
    // create rooms without the operator token.
    cfg.http_addr = addr;
    let public_url = cfg.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let node = Node::open(cfg, public_url.trim_end_matches('/').to_owned(), shutdown.clone())?;
    say(&format!("listening on http://{addr}"));
    tracing::info!(node = %node.public_key(), data_dir = %node.cfg().data_dir.display(), "bootstrap node started");
    let p2p_tasks = if node.cfg().no_p2p { Vec::new() } else { p2p::start(&node).await? };
    let expiry = tokio::spawn(live::run(node.clone(), shutdown.clone()));
    let deadlines = tokio::spawn({
        let (node, stop) = (node.clone(), shutdown.clone());
        async move { node.inner.deadlines.run(stop).await }
    });
    let app = http::router(node.clone());
    let stopper = {
        let (node, stop) = (node.clone(), shutdown.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            node.stop_rooms().await;
        })
    };
    let stop = shutdown.clone();
    // TCP_NODELAY on every accepted connection: the traffic is small interactive frames, and
    // with Nagle's algorithm a second small write to a client waits for the ACK of the first,
    // which the client may delay until it sends something itself. (Node's `ws`, under
    // y-websocket and Hocuspocus, sets it too, as browsers do for their WebSockets.)
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    // With each connection's peer address, for the per-IP limits.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;
    shutdown.cancel();
    let _ = stopper.await;
    node.join_all().await;
    let _ = expiry.await;
    let _ = deadlines.await;
    for t in p2p_tasks {
        let _ = t.await;
    }
    tracing::info!("stopped; sled flushed");
    Ok(())
}

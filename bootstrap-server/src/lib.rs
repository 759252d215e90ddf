//! arena-bootstrap: InterviewArena's self-hosted bootstrap node.
//!
//! One binary, embedded defaults: it creates rooms and invite tokens (`POST /api/rooms`),
//! serves stock Yjs clients over the y-websocket protocol (`/yws/{room}`) as a full,
//! persisting peer that signs their updates on their behalf, and runs a y-webrtc
//! compatible signaling server (`/signal`). History lives in sled under `--data-dir`.
//!
//! Layers, each module importing only those below it (checked by `tests/layering.rs`; see
//! `docs/decisions/001-bootstrap-layers.md`):
//!
//! - leaves: `config`, `error`, `metrics`, `clock`, `chan` (bounded queues), `limit` (rate
//!   limiter and caps), `ws` (our WebSocket server side), `conn` (a `/yws` connection's
//!   id, outbound frames and per-message handling), `live` (live connections by expiry),
//!   `flush` (the group commit); `exec` (code execution: the sandbox, the Piston backend,
//!   the Piston v2 API's handlers; it imports nothing of the crate);
//! - `room`: the room actor (commands, environment, state, loop, session tasks);
//! - `registry`: rooms hosted and loaded, room creation, authorization;
//! - `p2p`: the libp2p side and its bridge to the room actors;
//! - `users`: user sync (Clerk's webhooks, the durable job queue, the directory, profiles);
//! - `yws`, `signal`, `http`: the handlers; `server`: [`run`].
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
mod analyze;
mod chan;
mod clock;
mod config;
mod conn;
mod error;
pub mod exec;
mod flush;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod limit;
mod live;
pub mod metrics;
mod p2p;
pub mod reclaim;
mod registry;
mod room;
mod runs;
mod server;
mod signal;
mod turn;
pub mod users;
mod ws;
mod yws;

pub use config::{AdminToken, Config, UsersConfig, WebhookSecret};
pub use error::BootstrapError;
pub use metrics::Metrics;
pub use registry::Registry;
pub use server::run;
pub use turn::{TurnConfig, TurnSecret};

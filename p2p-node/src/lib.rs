//! arena-node: InterviewArena's native peer.
//!
//! - [`Node`] / [`NodeHandle`]: one actor owns the libp2p swarm and the replicas of the
//!   rooms it joined (sled in a data dir, or memory); the handle sends it commands over a
//!   bounded channel and hears [`NodeEvent`]s. Live envelopes travel on a gossipsub topic
//!   per room, every message validated by the room's ledger before it is forwarded;
//!   `/arena/sync/1` catches up by envelope vector on connect and periodically.
//! - [`behaviour`]: the [`behaviour::ArenaBehaviour`] and the protocol names, shared with
//!   the bootstrap node (which runs it in server mode).
//! - [`recording`], [`replay`]: the headless recorder's tamper-evident file, and replaying,
//!   exporting (JSON, a self-contained HTML player) and verifying it.
//! - [`media`]: the recorder in the room's call (receive-only WebRTC): audio and video
//!   files beside the recording, their timeline, their hashes in the recording's seals.
//! - [`yws`]: a peer that speaks our envelope protocol through a bootstrap node's
//!   y-websocket endpoint (when no libp2p peer is reachable): arena-core's sans-IO
//!   `Client` over a tokio-tungstenite socket, durable before it reports or answers.
//! - [`GroupCommit`]: the one flush path (sled's fsync on the blocking pool, shared by
//!   everyone who asked meanwhile), used by the node's actor and by the bootstrap node.
//! - [`cli`]: what the `arena-node` subcommands (join, record, replay, export, verify) do;
//!   [`http`]: the minimal client for the bootstrap node's JSON API.
//!
//! No feature flags. A node without a data dir keeps rooms in memory and should use a
//! fresh key each run (its envelope chains restart from zero).
//!
//! ```no_run
//! use arena_node::{JoinSpec, Node, NodeConfig};
//! # async fn demo(room: arena_core::RoomId, token: String) -> arena_node::Result<()> {
//! let mut cfg = NodeConfig::new(arena_core::Identity::from_seed(arena_node::random_seed()?));
//! cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr")];
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let (node, task) = Node::spawn(cfg, shutdown.clone())?;
//! node.join(JoinSpec { room, token: Some(token), name: "Ada".into(), recording: None }).await?;
//! node.splice(room, 0, 0, "print('hi')").await?;
//! shutdown.cancel();
//! let _ = task.await;
//! # Ok(()) }
//! ```

pub mod behaviour;
pub mod cli;
mod commit;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod media;
mod node;
mod presence;
pub mod recording;
pub mod replay;
mod secret;
mod store;
mod time;
pub mod yws;

pub use commit::{FlushReport, GroupCommit};
pub use error::{NodeError, Result};
pub use node::{
    load_or_create_identity, now_ms, random_seed, FragmentLimits, FragmentStats, JoinSpec, Node, NodeConfig, NodeEvent,
    NodeHandle, NodeRoom, NodeStats, PeerStats, RoomInfo, RoomStats,
};
pub use secret::{create_private_dir, write_private_file};
pub use store::NodeStore;

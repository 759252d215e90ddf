//! One actor per loaded room: it owns the `Room` (document, ledger, sled store) and the
//! room's awareness, and fans frames out to the room's connections. It serves its first
//! connection itself (`state::Inline`); the others are session tasks that talk to it through a
//! bounded channel. It never shares the document.
//!
//! Group commit: the actor drains every queued command and applies it; stock clients'
//! updates are signed into the log as one envelope per batch (at most one per
//! `--proxy-batch-ms`) and relayed to the room's other stock clients at once; one sled flush
//! covers whatever was written meanwhile, and only then do the signed envelopes go to the
//! clients that speak our protocol, and info requests get their answer. So a signed
//! envelope anyone holds, and every state the API reports, is durable; a y-websocket
//! client (whose protocol has no acknowledgement) may see a peer's edit a flush earlier,
//! and after a crash in that window the editors' own copies bring it back on reconnect.
//!
//! Idle documents leave memory: when nobody has touched a room's document for
//! `--room-evict-secs`, the actor drops its `Room` (everything is in sled) and keeps only
//! the connections and their presence, which it goes on serving (idle clients renew their
//! awareness every 15 s). The next frame that needs the document reopens it from sled.
//!
//! The actor knows neither the registry nor the HTTP layer: it runs with an [`Env`] (its
//! tunables, metrics, the group commit, the optional network bridge, shutdown) and a
//! [`Room`](arena_core::Room) on any [`RoomStore`](env::RoomStore), so a test runs one on a
//! `MemoryStore` with no socket.
//!
//! - [`cmd`]: what it is told ([`RoomCmd`], [`Attach`]);
//! - [`env`](mod@env): what it runs with ([`Env`], [`Network`], [`Rooms`]);
//! - `state`: its connections and queues; `handle`: what it does with each command and
//!   frame, `envelopes` with our envelope protocol's messages, `stock` with stock clients'
//!   updates, `runs` with the records of code runs the node writes;
//! - `actor`: its loop (a hand-written future), group commit, checkpoints, stopping;
//! - `session`: a connection served from a task of its own.

mod actor;
mod analyze;
pub(crate) mod cmd;
pub(crate) mod env;
mod envelopes;
mod handle;
mod runs;
mod session;
mod state;
mod stock;

pub(crate) use actor::spawn;
pub(crate) use analyze::{AnalyzeRefusal, AnalyzeTicket};
pub(crate) use cmd::{Attach, RoomCmd, RunWrite, Source};
pub(crate) use env::{room_config, Env, Network, Opener, Rooms, Tunables};

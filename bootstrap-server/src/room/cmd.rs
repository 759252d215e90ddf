//! What a room actor is told: [`RoomCmd`], and the connection that joins ([`Attach`]).

use std::collections::BTreeMap;

use arena_core::sync::wire::Wire;
use arena_core::{PeerKey, Role};
use tokio::sync::oneshot;

use crate::chan;
use crate::limit::{RateLimiter, Slot};
use crate::live::GrantId;
use crate::ws::WebSocket;

/// A connection joining a room: the room sends it its start frames, then serves it in its
/// own task if it has no inline connection yet (see `state::Inline`), else hands it to a
/// session task of its own (`session::Session`).
#[derive(Debug)]
pub(crate) struct Attach {
    pub(crate) conn: u64,
    pub(crate) role: Role,
    /// Its invite token (relayed with its updates when another node must sign them; the
    /// room drops it where it signs itself).
    pub(crate) token: Option<Box<str>>,
    /// A writing client's delegation (its grant, countersigned with its token's invite
    /// key): where we sign for the room, its updates go in envelopes that name it.
    pub(crate) delegation: Option<Box<arena_core::Delegation>>,
    pub(crate) socket: WebSocket,
    pub(crate) limiter: RateLimiter,
    /// The room's queue, for a session task of its own (dropped if served inline).
    pub(crate) queue: chan::Sender<RoomCmd>,
    /// The connection's span, for that task.
    pub(crate) span: tracing::Span,
    /// Its invite's expiry (unix seconds) and which grant it is: the room enters it in the
    /// node's live connections (closed at expiry, or when its link is revoked).
    pub(crate) expiry: u64,
    pub(crate) grant: GrantId,
    /// Its invite's key: refused when a host revoked it or removed a member who joined with it.
    pub(crate) invite: PeerKey,
    /// Its place under `--yws-max-per-ip` / `--yws-max-connections`, held while it is in the room.
    pub(crate) slot: Slot,
}

/// A run record for the room to write (a [`RoomCmd::Run`]).
#[derive(Debug)]
pub(crate) struct RunWrite {
    pub(crate) record: arena_core::records::RunRecord,
    pub(crate) replace: bool,
    pub(crate) version: Option<String>,
    pub(crate) reply: oneshot::Sender<Result<Option<String>, String>>,
}

/// Commands to a room actor.
#[derive(Debug)]
pub(crate) enum RoomCmd {
    /// Boxed: the largest command, and every room's queue is sized by its largest.
    Attach(Box<Attach>),
    Frame {
        conn: u64,
        bytes: Vec<u8>,
    },
    Detach {
        conn: u64,
    },
    /// Close a connection (its invite expired or was revoked).
    Close {
        conn: u64,
        code: u16,
        reason: Box<str>,
    },
    Info {
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// Messages from the libp2p side (other nodes, native peers).
    Remote {
        msgs: Vec<Wire>,
    },
    /// Presence from the libp2p side (a y-protocols awareness update).
    RemotePresence {
        update: Vec<u8>,
    },
    /// What a replica with envelope vector `have` lacks (for the libp2p side).
    Answer {
        have: BTreeMap<PeerKey, u64>,
        reply: oneshot::Sender<Vec<Wire>>,
    },
    /// Write a run's record, signed by the node (see `runs`): with `replace`, it replaces
    /// the run's earlier records; with `version`, a version of that label follows it. The
    /// reply is the version's id, or why nothing was written.
    Run(Box<RunWrite>),
    /// The room's code, language and extra files (what a run runs).
    Source {
        reply: oneshot::Sender<Result<Source, String>>,
    },
    /// Our envelope vector.
    Vector {
        reply: oneshot::Sender<BTreeMap<PeerKey, u64>>,
    },
    /// A connection with no socket: what the room sends it goes to `tx` (for the actor's
    /// unit tests).
    #[cfg(test)]
    Subscribe {
        conn: u64,
        role: Role,
        tx: chan::Sender<crate::conn::Outbound, crate::conn::FrameBytes>,
        slot: Slot,
    },
    /// The node is stopping (rooms keep no shutdown watch of their own: the registry tells each loaded room).
    Shutdown,
    /// May the host who joined with invite key `invite` run the analyzer now (see `analyze`)?
    AnalyzeCheck {
        invite: PeerKey,
        reply: oneshot::Sender<Result<super::AnalyzeTicket, super::AnalyzeRefusal>>,
    },
    /// The analyzer's result for `round`, to write as the node (the votes checked again).
    AnalyzeWrite {
        trigger: PeerKey,
        round: u64,
        backend: String,
        findings: Vec<String>,
        reply: oneshot::Sender<Result<(), super::AnalyzeRefusal>>,
    },
}

/// What a run in a room runs.
#[derive(Debug)]
pub(crate) struct Source {
    /// The main file's text (the `code` buffer).
    pub(crate) code: String,
    /// The room's language.
    pub(crate) language: String,
    /// The extra files, (name, text), sorted by name.
    pub(crate) files: Vec<(String, String)>,
}

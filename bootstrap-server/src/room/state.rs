//! A room actor's state: its connections, what it has queued for them, and the document
//! (held while in use, reopened through the environment after eviction).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arena_core::sync::presence::PresenceMap;
use arena_core::sync::wire::Reassembler;
use arena_core::sync::ywire::YSession;
use arena_core::{Role, Room, RoomId};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::env::{Env, RoomStore};
use crate::chan;
use crate::clock::Stamp;
use crate::conn::{FrameBytes, Outbound, CONN_QUEUE, CONN_QUEUE_BYTES};
use crate::limit::RateLimiter;
use crate::metrics::{dec, inc, Metrics};
use crate::ws::WebSocket;

/// Most awareness client ids one connection may set presence for. A stock client has one
/// (its document's); a reconnecting one is a new connection.
pub(super) const MAX_PRESENCE_IDS_PER_CONNECTION: usize = 8;

pub(super) struct Conn {
    /// Its session task's queue; None for the room's [`Inline`] connection.
    pub(super) tx: Option<chan::Sender<Outbound, FrameBytes>>,
    pub(super) session: YSession,
    /// The awareness client ids whose state it set (usually one; a Vec holds it in 8 bytes
    /// where a set takes 4 buckets): removed when it leaves. At most
    /// [`MAX_PRESENCE_IDS_PER_CONNECTION`]; echoes of others' states and removals count for
    /// nobody.
    pub(super) awareness_ids: Vec<u64>,
    /// Made at its first message of our protocol (stock clients never send one): 8 bytes
    /// in every idle stock client's entry instead of 40.
    pub(super) link: Option<Box<Reassembler>>,
    /// Speaks our envelope protocol (sent a `MSG_ARENA` message): gets signed envelopes.
    pub(super) arena: bool,
    /// Its token's role: a stock client's updates are held to that role's write rules, and
    /// an observer may only ask (`Want`, `WantHistory`) of our envelope protocol; see
    /// [`RoomState::arena_chunk`].
    pub(super) role: Role,
    pub(super) token: Option<Box<str>>,
    /// The invite key of its delegation, registered in the room: the `via` of the
    /// envelopes we sign for it (None: not a writing stock client, or not signed here).
    pub(super) via: Option<arena_core::PeerKey>,
    /// Leaves the node's live connections when the connection leaves the room.
    pub(super) _live: crate::live::LiveGuard,
    /// Gives its place under the `/yws` caps back when the connection leaves the room.
    pub(super) _slot: crate::limit::Slot,
}

/// A room's connections: a few per room (two people, an observer, a recorder), so a Vec
/// searched by id; a `HashMap` would hold 4 buckets of `Conn` for a room's one idle client.
#[derive(Default)]
pub(super) struct ConnMap(Vec<(u64, Conn)>);

impl ConnMap {
    pub(super) fn insert(&mut self, id: u64, c: Conn) {
        self.remove(&id);
        if self.0.len() == self.0.capacity() {
            // Grow by half, not to 4 at the first push as Vec does.
            self.0.reserve_exact((self.0.len() / 2).max(1));
        }
        self.0.push((id, c));
    }
    pub(super) fn get(&self, id: &u64) -> Option<&Conn> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }
    pub(super) fn get_mut(&mut self, id: &u64) -> Option<&mut Conn> {
        self.0.iter_mut().find(|(i, _)| i == id).map(|(_, c)| c)
    }
    pub(super) fn remove(&mut self, id: &u64) -> Option<Conn> {
        let at = self.0.iter().position(|(i, _)| i == id)?;
        let (_, c) = self.0.swap_remove(at);
        if self.0.len() <= self.0.capacity() / 4 {
            self.0.shrink_to_fit();
        }
        Some(c)
    }
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (u64, Conn)> {
        std::mem::take(&mut self.0).into_iter()
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &Conn)> {
        self.0.iter().map(|(i, c)| (i, c))
    }
    pub(super) fn values(&self) -> impl Iterator<Item = &Conn> {
        self.0.iter().map(|(_, c)| c)
    }
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A frame for `to` (None: every connection) except `except`.
pub(super) type Frame = (Option<u64>, Option<u64>, Vec<u8>);

pub(super) struct RoomState<S: RoomStore> {
    pub(super) env: Arc<Env<S>>,
    pub(super) id: RoomId,
    /// None while the room is idle (its document evicted; reopened from sled on demand).
    /// Boxed: an idle room's actor keeps 8 bytes here, not the whole `Room`.
    pub(super) room: Option<Box<Room<S>>>,
    /// When something last needed the document.
    pub(super) used: Stamp,
    pub(super) presence: PresenceMap,
    pub(super) conns: ConnMap,
    /// What the room has to send, sign or answer; None while it has nothing (see [`RoomState::q`]).
    pub(super) queued: Option<Box<Queued>>,
    /// When the room last sent what needs no flush (see `--relay-batch-us`).
    pub(super) last_dispatch: Option<Stamp>,
    /// A checkpoint came due while another room's was running: try again then.
    pub(super) checkpoint_retry: Option<Stamp>,
    /// The connection this room serves in its own task.
    pub(super) inline: Option<Box<Inline>>,
    // The actor's own state. Here, not in the `Actor` future, and its instants in 8 bytes: the
    // room's task is then 16 bytes of future in tokio's smallest task cell (128 bytes
    // instead of 256), and this struct is 256 bytes.
    /// The room's tracing span, entered while the actor runs.
    pub(super) span: tracing::Span,
    pub(super) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) flushing: Option<Box<InFlight>>,
    /// Commands taken since the last flush started: when the first was, how many, and
    /// whether any of them may have changed what the room stores (false while they were
    /// all presence: then no flush is asked for them). 16 bytes, the `bool`'s spare values
    /// holding the `Option`'s tag.
    pub(super) unflushed: Option<(Stamp, u32, bool)>,
    /// When stock clients' updates were last signed (they are signed at most once per
    /// `--proxy-batch-ms`).
    pub(super) last_commit: Option<Stamp>,
    /// Since when the room has had no connection (unloaded after `--room-idle-secs`).
    pub(super) idle_since: Option<Stamp>,
}

/// What a room holds only while it has work in hand. Boxed and dropped once all of it is
/// empty: an idle room's `RoomState` then keeps 8 bytes for it instead of four empty `Vec`s (96),
/// which puts the `RoomState` in the allocator's 192-byte class instead of its 320-byte one.
#[derive(Default)]
pub(super) struct Queued {
    /// Frames to send now: to `Some(conn)` or everyone, except a connection.
    pub(super) out: Vec<Frame>,
    /// Frames that wait for the next flush (signed envelopes and our protocol's replies:
    /// whoever gets those may count on them being durable).
    pub(super) durable: Vec<Frame>,
    /// Info requests answered after the next flush (so they report durable state).
    pub(super) info_waiting: Vec<oneshot::Sender<serde_json::Value>>,
    /// Updates from stock clients in this batch, signed as one envelope by [`RoomState::commit_proxied`].
    pub(super) proxied: Vec<(u64, Vec<u8>)>,
}

impl Queued {
    pub(super) fn is_empty(&self) -> bool {
        self.out.is_empty() && self.durable.is_empty() && self.info_waiting.is_empty() && self.proxied.is_empty()
    }
}

/// One connection per room (the first to join while there is none) is served by the room's
/// actor itself instead of a session task of its own: its socket is read and written here,
/// its frames go straight to `RoomState::frame` and what the room sends it straight into its
/// write queue. An idle room with one client (the common case: an interview's candidate
/// between sessions, a recorder) then costs one task and one queue, not two of each
/// (measured in the README: 2.8 -> 2.1-2.3 KiB per idle room). The limits are a session's:
/// [`CONN_QUEUE`] frames / [`CONN_QUEUE_BYTES`] not yet written and the client is dropped
/// as too slow; while a frame is half written its frames are not read (backpressure).
pub(super) struct Inline {
    pub(super) conn: u64,
    pub(super) socket: WebSocket,
    pub(super) limiter: RateLimiter,
    /// A close frame is queued: the connection ends once it is written.
    pub(super) closing: bool,
}

impl Inline {
    pub(super) fn close(&mut self, code: u16, reason: &str) {
        if !self.closing {
            self.socket.start_close(code, reason);
            self.closing = true;
        }
    }

    /// Queues what the room sends it; false when it is too slow (the caller drops it).
    pub(super) fn deliver(&mut self, o: Outbound) -> bool {
        if self.closing {
            return true;
        }
        match o {
            Outbound::Binary(b) => {
                let n = self.socket.queued_out();
                // The bytes are counted every 64 frames (counting walks the queue).
                if n >= CONN_QUEUE || (n % 64 == 63 && self.socket.queued_out_bytes() + b.len() > CONN_QUEUE_BYTES) {
                    return false;
                }
                self.socket.start_frame(2, b);
            }
            Outbound::Close(code, reason) => self.close(code, &reason),
        }
        true
    }
}

/// Sends `o` to connection `c` (its session's queue, or the inline socket); false when it
/// is too slow to take it. `last`: its close reason overtakes what it has not read.
pub(super) fn deliver(c: &Conn, inline: &mut Option<Box<Inline>>, o: Outbound, last: bool) -> bool {
    match (&c.tx, inline.as_mut()) {
        (Some(tx), _) if last => tx.send_last(o).is_ok(),
        (Some(tx), _) => tx.try_send(o).is_ok(),
        (None, Some(i)) => {
            if last {
                i.socket.discard_unstarted();
            }
            i.deliver(o)
        }
        (None, None) => false,
    }
}

/// Why a revoked member's connections are closed (the web room shows it).
pub(super) const REMOVED: &str = "removed from the room by the host";

/// Whether the invite whose key is `invite` was revoked, or a member who joined with it was
/// removed (the node closes every connection of that link, and lets none in again).
pub(super) fn link_revoked(ledger: &arena_core::Ledger, invite: &arena_core::PeerKey) -> bool {
    ledger.is_revoked(invite)
        || ledger.members().any(|(key, m)| m.admission.grant.invite == *invite && ledger.is_revoked(key))
}

/// Writes a connection's last frames (its close) in a task of its own, for at most 5 s
/// (the room that held it is stopping, or never let it in).
pub(super) fn finish_closing(metrics: &Arc<Metrics>, mut socket: WebSocket) {
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), std::future::poll_fn(|cx| socket.poll_write_out(cx))).await;
        dec(&metrics.connections_active);
    });
}

impl<S: RoomStore> RoomState<S> {
    /// Drops the idle room's document (it is all in sled); connections and presence stay.
    /// Not while it holds envelopes waiting for their predecessors (those live in memory),
    /// nor updates not yet signed: the actor calls this only when everything the room
    /// logged is durable (no flush in flight or owed), so eviction needs no flush of its
    /// own (a blocking fsync per room on the runtime's threads, thousands of them when the
    /// rooms of a busy hour go idle together).
    pub(super) fn evict(&mut self) {
        let unsigned = self.has_proxied() || self.room.as_ref().is_some_and(|r| r.unsealed() > 0);
        if unsigned || self.room.as_ref().is_some_and(|r| r.pending() > 0) {
            self.used = Stamp::now();
            return;
        }
        if let Some(room) = self.room.take() {
            drop(room);
            dec(&self.env.metrics.docs_loaded);
            crate::reclaim::released();
            debug!("document idle, evicted from memory");
        }
    }

    /// Makes sure the document is in memory (reopening it from sled); false if it cannot
    /// be opened (then every connection is told and closed).
    pub(super) fn wake(&mut self) -> bool {
        self.used = Stamp::now();
        if self.room.is_some() {
            return true;
        }
        match crate::reclaim::documents(|| (self.env.open)(&self.id)) {
            Ok(r) => {
                debug!("document reopened from sled");
                inc(&self.env.metrics.docs_loaded, 1);
                inc(&self.env.metrics.docs_reloaded, 1);
                self.room = Some(Box::new(r));
                true
            }
            Err(e) => {
                warn!(error = %e, "reopening the room failed; closing its connections");
                for (_, c) in self.conns.drain() {
                    deliver(&c, &mut self.inline, Outbound::Close(4400, format!("storage failure: {e}").into()), false);
                }
                false
            }
        }
    }

    /// What the room has in hand, made when it first has something.
    pub(super) fn q(&mut self) -> &mut Queued {
        self.queued.get_or_insert_with(Box::default)
    }

    pub(super) fn has_out(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| !q.out.is_empty())
    }

    pub(super) fn has_proxied(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| !q.proxied.is_empty())
    }

    /// Gives back what [`Self::q`] made once the room has nothing in hand.
    pub(super) fn settle(&mut self) {
        if self.queued.as_ref().is_some_and(|q| q.is_empty()) {
            self.queued = None;
        }
    }

    /// Queues `bytes` for `to` (None: everyone) except `except`.
    pub(super) fn send(&mut self, to: Option<u64>, except: Option<u64>, bytes: Vec<u8>) {
        self.q().out.push((to, except, bytes));
    }

    /// Queues `bytes` for `to` once what the room has written so far is durable.
    pub(super) fn send_durable(&mut self, to: Option<u64>, bytes: Vec<u8>) {
        self.q().durable.push((to, None, bytes));
    }

    pub(super) fn dispatch(&mut self) {
        if !self.has_out() {
            return;
        }
        let env = self.env.clone();
        let m = &env.metrics;
        let mut slow = Vec::new();
        // Taken, not drained: an idle room keeps no capacity from its last burst.
        let out = self.queued.as_mut().map(|q| std::mem::take(&mut q.out)).unwrap_or_default();
        for (to, except, bytes) in out {
            let bytes = bytes::Bytes::from(bytes);
            for (id, c) in self.conns.iter() {
                if to.is_some_and(|t| t != *id) || except == Some(*id) {
                    continue;
                }
                inc(&m.bytes_out, bytes.len() as u64);
                if !deliver(c, &mut self.inline, Outbound::Binary(bytes.clone()), false) {
                    slow.push(*id);
                }
            }
        }
        for id in slow {
            if let Some(c) = self.conns.remove(&id) {
                inc(&m.frames_dropped_slow, 1);
                // What it has not read yet is lost anyway; its close reason overtakes it.
                deliver(&c, &mut self.inline, Outbound::Close(4400, "too slow: reconnect to resync".into()), true);
            }
        }
    }

    /// Runs `f` with the document in memory (reopened from sled if it was evicted). Never
    /// nested: the room is out of `self` while `f` runs.
    pub(super) fn with_room<T>(&mut self, f: impl FnOnce(&mut Self, &mut Room<S>) -> T) -> Option<T> {
        if !self.wake() {
            return None;
        }
        let mut room = self.room.take()?;
        let out = crate::reclaim::documents(|| f(self, &mut room));
        debug_assert!(self.room.is_none(), "with_room nested");
        self.room = Some(room);
        Some(out)
    }

    pub(super) fn info(&mut self) -> serde_json::Value {
        let conns = self.conns.len();
        self.with_room(|_, room| Self::room_info(room, conns))
            .unwrap_or_else(|| serde_json::json!({"error": "storage failure"}))
    }

    pub(super) fn room_info(room: &Room<S>, connections: usize) -> serde_json::Value {
        let doc = room.doc();
        let members: Vec<_> = room
            .ledger()
            .members()
            .map(|(k, m)| serde_json::json!({ "key": k.to_hex(), "name": m.name, "role": m.role, "proxy": m.proxy }))
            .collect();
        let c = room.consensus();
        serde_json::json!({
            "room": room.id().to_hex(),
            "meta": doc.meta(),
            "participants": doc.participants().into_iter().map(|(k, p)| serde_json::json!({"key": k, "participant": p})).collect::<Vec<_>>(),
            "members": members,
            "versions": doc.versions(),
            "runs": doc.runs().len(),
            "connections": connections,
            "codeLength": doc.code_len(),
            "files": doc.files(),
            "consensus": { "round": c.round, "enabled": c.enabled(), "satisfied": c.satisfied, "required": c.required },
        })
    }
}

pub(super) type Flush = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A group commit in flight: the flush, and what waits for it to be durable.
pub(super) struct InFlight {
    pub(super) flush: Flush,
    /// When its first command was taken, and how many commands it covers.
    pub(super) started: Instant,
    pub(super) n: u64,
    /// Frames sent once the flush is done (signed envelopes and replies of our protocol).
    pub(super) frames: Vec<Frame>,
    /// Info requests, answered with the state as it was when the flush started.
    pub(super) info: Option<(serde_json::Value, Vec<oneshot::Sender<serde_json::Value>>)>,
}

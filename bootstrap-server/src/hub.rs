//! One actor per loaded room: it owns the `Room` (document, ledger, sled store) and the
//! room's awareness, and fans frames out to the room's connections. It serves its first
//! connection itself ([`Inline`]); the others are session tasks that talk to it through a
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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arena_core::sync::presence::PresenceMap;
use arena_core::sync::wire::{chunk, Reassembler, Wire, GOSSIP_CHUNK};
use arena_core::sync::ywire::{arena_frame, awareness_frame, update_frame, YSession};
use arena_core::{Envelope, PeerKey, Role, Room, RoomId, SledStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::chan;
use crate::clock::Stamp;
use crate::limit::RateLimiter;
use crate::metrics::{dec, inc};
use crate::node::{now_ms, Node};
use crate::ws::WebSocket;
use crate::yws::Incoming;

/// Frames, and their bytes, queued per connection before it counts as too slow and is
/// dropped (it reconnects and resyncs). Frames are small (a keystroke's update is ~30
/// bytes) and shared by every recipient, so the count allows a client that falls behind
/// for a moment on a busy machine (4,096 frames: ~1 s of a busy room) without keeping
/// megabytes for it; the bytes bound what large frames a slow client can pin.
pub(crate) const CONN_QUEUE: usize = 4096;
pub(crate) const CONN_QUEUE_BYTES: usize = 4 << 20;
const HUB_QUEUE: usize = 1024;
/// How soon a room whose checkpoint found another room's running tries again.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(20);

/// What [`Hub::checkpoint_if_due`] did.
enum Checkpointed {
    /// Wrote one: a flush is owed.
    Wrote,
    /// Due, but another room's is running.
    Busy,
    No,
}

/// What a connection receives.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Shared by every recipient of the frame (a reference count, not a copy each).
    Binary(bytes::Bytes),
    /// A close code and reason. Boxed `str` (not `String`): the enum then fits in `Bytes`'s
    /// 32 bytes.
    Close(u16, Box<str>),
}

/// A connection's outbound queue weighs its frames by their bytes, at most
/// [`CONN_QUEUE_BYTES`] together.
pub(crate) struct FrameBytes;

impl chan::Weigh<Outbound> for FrameBytes {
    const MAX_BYTES: usize = CONN_QUEUE_BYTES;
    fn weigh(frame: &Outbound) -> usize {
        match frame {
            Outbound::Binary(b) => b.len(),
            Outbound::Close(_, r) => r.len(),
        }
    }
}

/// A connection joining a room: the room sends it its start frames, then serves it in its
/// own task if it has no inline connection yet (see [`Inline`]), else hands it to a
/// [`crate::yws::Session`] of its own.
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
    pub(crate) hub: chan::Sender<HubCmd>,
    /// The connection's span, for that task.
    pub(crate) span: tracing::Span,
    /// Its invite's expiry (unix seconds) and which grant it is: the room enters it in the
    /// node's live connections (closed at expiry, or by `Node::close_grant`).
    pub(crate) expiry: u64,
    pub(crate) grant: crate::live::GrantId,
    /// Its invite's key: refused when a host revoked it or removed a member who joined with it.
    pub(crate) invite: arena_core::PeerKey,
    /// Its place under `--yws-max-per-ip` / `--yws-max-connections`, held while it is in the room.
    pub(crate) slot: crate::limit::Slot,
}

/// Commands to a room actor.
#[derive(Debug)]
pub(crate) enum HubCmd {
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
        have: std::collections::BTreeMap<arena_core::PeerKey, u64>,
        reply: oneshot::Sender<Vec<Wire>>,
    },
    /// Our envelope vector.
    Vector {
        reply: oneshot::Sender<std::collections::BTreeMap<arena_core::PeerKey, u64>>,
    },
    /// The node is stopping (rooms keep no shutdown watch of their own: see [`Node::stop_rooms`]).
    Shutdown,
}

struct Conn {
    /// Its session task's queue; None for the room's [`Inline`] connection.
    tx: Option<chan::Sender<Outbound, FrameBytes>>,
    session: YSession,
    /// The awareness client ids it announced (usually one; a Vec holds it in 8 bytes where a
    /// set takes 4 buckets).
    awareness_ids: Vec<u64>,
    /// Made at its first message of our protocol (stock clients never send one): 8 bytes
    /// in every idle stock client's entry instead of 40.
    link: Option<Box<Reassembler>>,
    /// Speaks our envelope protocol (sent a `MSG_ARENA` message): gets signed envelopes.
    arena: bool,
    /// Its token's role: a stock client's updates are held to that role's write rules, and
    /// an observer may only ask (`Want`, `WantHistory`) of our envelope protocol; see
    /// [`Hub::arena_chunk`].
    role: Role,
    token: Option<Box<str>>,
    /// The invite key of its delegation, registered in the room: the `via` of the
    /// envelopes we sign for it (None: not a writing stock client, or not signed here).
    via: Option<arena_core::PeerKey>,
    /// Leaves the node's live connections when the connection leaves the room.
    _live: crate::live::LiveGuard,
    /// Gives its place under the `/yws` caps back when the connection leaves the room.
    _slot: crate::limit::Slot,
}

/// A room's connections: a few per room (two people, an observer, a recorder), so a Vec
/// searched by id; a `HashMap` would hold 4 buckets of `Conn` for a room's one idle client.
#[derive(Default)]
struct ConnMap(Vec<(u64, Conn)>);

impl ConnMap {
    fn insert(&mut self, id: u64, c: Conn) {
        self.remove(&id);
        if self.0.len() == self.0.capacity() {
            // Grow by half, not to 4 at the first push as Vec does.
            self.0.reserve_exact((self.0.len() / 2).max(1));
        }
        self.0.push((id, c));
    }
    fn get(&self, id: &u64) -> Option<&Conn> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, c)| c)
    }
    fn get_mut(&mut self, id: &u64) -> Option<&mut Conn> {
        self.0.iter_mut().find(|(i, _)| i == id).map(|(_, c)| c)
    }
    fn remove(&mut self, id: &u64) -> Option<Conn> {
        let at = self.0.iter().position(|(i, _)| i == id)?;
        let (_, c) = self.0.swap_remove(at);
        if self.0.len() <= self.0.capacity() / 4 {
            self.0.shrink_to_fit();
        }
        Some(c)
    }
    fn drain(&mut self) -> impl Iterator<Item = (u64, Conn)> {
        std::mem::take(&mut self.0).into_iter()
    }
    fn iter(&self) -> impl Iterator<Item = (&u64, &Conn)> {
        self.0.iter().map(|(i, c)| (i, c))
    }
    fn values(&self) -> impl Iterator<Item = &Conn> {
        self.0.iter().map(|(_, c)| c)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A frame for `to` (None: every connection) except `except`.
type Frame = (Option<u64>, Option<u64>, Vec<u8>);

struct Hub {
    node: Node,
    id: RoomId,
    /// None while the room is idle (its document evicted; reopened from sled on demand).
    /// Boxed: an idle room's actor keeps 8 bytes here, not the whole `Room`.
    room: Option<Box<Room<SledStore>>>,
    /// When something last needed the document.
    used: Stamp,
    presence: PresenceMap,
    conns: ConnMap,
    /// What the room has to send, sign or answer; None while it has nothing (see [`Hub::q`]).
    queued: Option<Box<Queued>>,
    /// When the room last sent what needs no flush (see `--relay-batch-us`).
    last_dispatch: Option<Stamp>,
    /// A checkpoint came due while another room's was running: try again then.
    checkpoint_retry: Option<Stamp>,
    /// The connection this room serves in its own task.
    inline: Option<Box<Inline>>,
    // The actor's own state. Here, not in [`Actor`], and its instants in 8 bytes: the
    // room's task is then 16 bytes of future in tokio's smallest task cell (128 bytes
    // instead of 256), and this struct is 256 bytes.
    /// The room's tracing span, entered while the actor runs.
    span: tracing::Span,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    flushing: Option<Box<InFlight>>,
    /// Commands taken since the last flush started: when the first was, how many.
    unflushed: Option<(Stamp, u64)>,
    /// When stock clients' updates were last signed (they are signed at most once per
    /// `--proxy-batch-ms`).
    last_commit: Option<Stamp>,
    /// Since when the room has had no connection (unloaded after `--room-idle-secs`).
    idle_since: Option<Stamp>,
}

/// What a room holds only while it has work in hand. Boxed and dropped once all of it is
/// empty: an idle room's `Hub` then keeps 8 bytes for it instead of four empty `Vec`s (96),
/// which puts the `Hub` in the allocator's 192-byte class instead of its 320-byte one.
#[derive(Default)]
struct Queued {
    /// Frames to send now: to `Some(conn)` or everyone, except a connection.
    out: Vec<Frame>,
    /// Frames that wait for the next flush (signed envelopes and our protocol's replies:
    /// whoever gets those may count on them being durable).
    durable: Vec<Frame>,
    /// Info requests answered after the next flush (so they report durable state).
    info_waiting: Vec<oneshot::Sender<serde_json::Value>>,
    /// Updates from stock clients in this batch, signed as one envelope by [`Hub::commit_proxied`].
    proxied: Vec<(u64, Vec<u8>)>,
}

impl Queued {
    fn is_empty(&self) -> bool {
        self.out.is_empty() && self.durable.is_empty() && self.info_waiting.is_empty() && self.proxied.is_empty()
    }
}

/// One connection per room (the first to join while there is none) is served by the room's
/// actor itself instead of a session task of its own: its socket is read and written here,
/// its frames go straight to [`Hub::frame`] and what the room sends it straight into its
/// write queue. An idle room with one client (the common case: an interview's candidate
/// between sessions, a recorder) then costs one task and one queue, not two of each
/// (measured in the README: 2.8 -> 2.1-2.3 KiB per idle room). The limits are a session's:
/// [`CONN_QUEUE`] frames / [`CONN_QUEUE_BYTES`] not yet written and the client is dropped
/// as too slow; while a frame is half written its frames are not read (backpressure).
struct Inline {
    conn: u64,
    socket: WebSocket,
    limiter: RateLimiter,
    /// A close frame is queued: the connection ends once it is written.
    closing: bool,
}

impl Inline {
    fn close(&mut self, code: u16, reason: &str) {
        if !self.closing {
            self.socket.start_close(code, reason);
            self.closing = true;
        }
    }

    /// Queues what the room sends it; false when it is too slow (the caller drops it).
    fn deliver(&mut self, o: Outbound) -> bool {
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
fn deliver(c: &Conn, inline: &mut Option<Box<Inline>>, o: Outbound, last: bool) -> bool {
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
const REMOVED: &str = "removed from the room by the host";

/// Whether the invite whose key is `invite` was revoked, or a member who joined with it was
/// removed (the node closes every connection of that link, and lets none in again).
fn link_revoked(ledger: &arena_core::Ledger, invite: &arena_core::PeerKey) -> bool {
    ledger.is_revoked(invite)
        || ledger.members().any(|(key, m)| m.admission.grant.invite == *invite && ledger.is_revoked(key))
}

/// Writes a connection's last frames (its close) in a task of its own, for at most 5 s
/// (the room that held it is stopping, or never let it in).
fn finish_closing(node: &Node, mut socket: WebSocket) {
    let node = node.clone();
    tokio::spawn(async move {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), std::future::poll_fn(|cx| socket.poll_write_out(cx))).await;
        dec(&node.inner.metrics.connections_active);
    });
}

pub(crate) fn spawn(node: Node, room: Room<SledStore>) -> (chan::Sender<HubCmd>, JoinHandle<()>) {
    let (tx, rx) = chan::channel(HUB_QUEUE);
    inc(&node.inner.metrics.rooms_loaded, 1);
    inc(&node.inner.metrics.docs_loaded, 1);
    let id = room.id();
    let span = tracing::info_span!("room", room = %&id.to_hex()[..12]);
    span.in_scope(|| info!("room loaded ({} log entries)", arena_core::Store::log_len(room.store())));
    // Boxed: the actor's task then holds a pointer to it, and an evicted room's document
    // slot is 8 bytes.
    let hub = Box::new(Hub {
        node,
        id,
        room: Some(Box::new(room)),
        used: Stamp::now(),
        presence: PresenceMap::new(0),
        conns: ConnMap::default(),
        queued: None,
        last_dispatch: None,
        checkpoint_retry: None,
        inline: None,
        span,
        sleep: None,
        flushing: None,
        unflushed: None,
        last_commit: None,
        idle_since: Some(Stamp::now()),
    });
    let handle = tokio::spawn(Actor { hub: Some(hub), rx });
    (tx, handle)
}

type Flush = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A group commit in flight: the flush, and what waits for it to be durable.
struct InFlight {
    flush: Flush,
    /// When its first command was taken, and how many commands it covers.
    started: Instant,
    n: u64,
    /// Frames sent once the flush is done (signed envelopes and replies of our protocol).
    frames: Vec<Frame>,
    /// Info requests, answered with the state as it was when the flush started.
    info: Option<(serde_json::Value, Vec<oneshot::Sender<serde_json::Value>>)>,
}

/// A room's actor as a hand-written future: an idle room's task is these few words (the
/// `async` loop it replaces kept ~420 bytes of `select!` branches, a timer and the flush's
/// state side by side). The timer is allocated only while a deadline is armed (an idle room
/// whose document is evicted and that has a client needs none), the flush only while one is
/// in flight. Its state lives in the boxed [`Hub`]; the future itself is two pointers.
///
/// Pipelined: commands are taken and applied while a flush is in flight, and what stock
/// clients get goes out as soon as it is signed; only what waits for durability (signed
/// envelopes, info answers) waits for the flush. A sled flush that stalls (tens of
/// milliseconds on a busy disk) then delays the room's history, not its editors.
struct Actor {
    /// None once the room has stopped.
    hub: Option<Box<Hub>>,
    rx: chan::Receiver<HubCmd>,
}

impl Future for Actor {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(hub) = this.hub.as_mut() else {
            return Poll::Ready(());
        };
        // The room's span is entered for the poll, as `tracing::Instrument` would (taken out
        // of the hub meanwhile: the guard borrows it).
        let span = std::mem::replace(&mut hub.span, tracing::Span::none());
        let entered = span.enter();
        let done = hub.step(&mut this.rx, cx).is_ready();
        if done {
            hub.stop(&mut this.rx);
        }
        drop(entered);
        if done {
            this.hub = None;
            return Poll::Ready(());
        }
        hub.span = span;
        Poll::Pending
    }
}

impl Hub {
    /// The actor's loop: runs until the room stops (`Ready`).
    fn step(&mut self, rx: &mut chan::Receiver<HubCmd>, cx: &mut Context<'_>) -> Poll<()> {
        let cfg = self.node.cfg();
        let (idle, evict) = (Duration::from_secs(cfg.room_idle_secs), Duration::from_secs(cfg.room_evict_secs));
        let spacing = Duration::from_millis(cfg.proxy_batch_ms);
        let relay = Duration::from_micros(cfg.relay_batch_us);
        loop {
            if self.node.inner.shutdown.is_cancelled() {
                return Poll::Ready(());
            }
            let mut progress = false;
            // Commands were taken: once they are sent on, let the connections' tasks run
            // (and drain what the room just queued for them) before the next batch.
            let mut yield_after = false;
            // The flush in flight: once durable, what waited for it goes out.
            let flushed = match self.flushing.as_mut().map(|f| f.flush.as_mut().poll(cx)) {
                Some(Poll::Ready(res)) => self.flushing.take().map(|f| (res, f)),
                _ => None,
            };
            if let Some((res, f)) = flushed {
                if let Err(e) = res {
                    warn!(error = %e, "flush failed; closing connections");
                    for c in self.conns.values() {
                        deliver(c, &mut self.inline, Outbound::Close(4400, "storage failure".into()), false);
                    }
                    return Poll::Ready(());
                }
                self.after_flush(*f);
                progress = true;
            }
            // Commands, also while a flush is in flight.
            match rx.poll_recv(cx) {
                Poll::Ready(None) | Poll::Ready(Some(HubCmd::Shutdown)) => return Poll::Ready(()),
                Poll::Ready(Some(cmd)) => {
                    let first = Stamp::now();
                    self.handle(cmd);
                    let mut taken = 1;
                    while taken < 256 {
                        match rx.try_recv() {
                            Ok(HubCmd::Shutdown) => return Poll::Ready(()),
                            Ok(c) => self.handle(c),
                            Err(_) => break,
                        }
                        taken += 1;
                    }
                    let (_, n) = self.unflushed.get_or_insert((first, 0));
                    *n += taken;
                    yield_after = true;
                }
                Poll::Pending => {}
            }
            // The inline connection's frames, as commands (at most a batch's worth per pass).
            let (taken, moved) = self.poll_inline(cx, 256);
            if taken > 0 {
                let (_, n) = self.unflushed.get_or_insert((Stamp::now(), 0));
                *n += taken;
                yield_after = true;
            }
            progress |= moved;
            // Stock clients' updates: signed as one envelope, at most once per `spacing`.
            let now = Instant::now();
            let waiting = self.has_proxied() || self.room.as_ref().is_some_and(|r| r.unsealed() > 0);
            let commit_at = waiting.then(|| self.last_commit.map_or(now, |t| t.instant() + spacing));
            if commit_at.is_some_and(|at| at <= now) {
                self.commit_proxied(now_ms());
                self.last_commit = Some(now.into());
                self.unflushed.get_or_insert((now.into(), 0));
            }
            // Envelopes some other call sealed first go out with the next flush; what needs
            // no flush goes out now, or with what follows it if the room sent less than
            // `relay` ago.
            self.send_sealed();
            let mut relay_at = self.has_out().then(|| self.last_dispatch.map_or(now, |t| t.instant() + relay));
            if relay_at.is_some_and(|at| at <= now) {
                self.dispatch();
                self.last_dispatch = Some(now.into());
                relay_at = None;
            }
            // A checkpoint after what this pass took has gone out (the room's clients do
            // not wait for it) and before the flush that makes it durable.
            self.checkpoint_retry = None;
            match self.checkpoint_if_due() {
                Checkpointed::Wrote => {
                    self.unflushed.get_or_insert((Stamp::now(), 0));
                }
                Checkpointed::Busy => self.checkpoint_retry = Some((now + CHECKPOINT_RETRY).into()),
                Checkpointed::No => {}
            }
            // One flush at a time; what was written meanwhile gets the next.
            if self.flushing.is_none() {
                if let Some((started, n)) = self.unflushed.take() {
                    let node = self.node.clone();
                    let (frames, waiting) = match self.queued.as_mut() {
                        Some(q) => (std::mem::take(&mut q.durable), std::mem::take(&mut q.info_waiting)),
                        None => Default::default(),
                    };
                    let info = (!waiting.is_empty()).then(|| (self.info(), waiting));
                    self.flushing = Some(Box::new(InFlight {
                        flush: Box::pin(async move { node.flush().await }),
                        started: started.instant(),
                        n,
                        frames,
                        info,
                    }));
                    progress = true;
                }
            }
            // What this pass queued for the inline connection goes out now.
            progress |= self.write_inline(cx);
            if yield_after {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if progress {
                continue;
            }
            self.settle();
            self.idle_since = if self.conns.is_empty() { self.idle_since.or(Some(Stamp::now())) } else { None };
            // Nothing to do: wait for the next deadline (if any).
            let deadline = self.idle_since.filter(|_| self.flushing.is_none()).map(|t| t.instant() + idle);
            let durable = self.flushing.is_none() && self.unflushed.is_none() && commit_at.is_none();
            let evict_at = (self.room.is_some() && !evict.is_zero() && durable).then(|| self.used.instant() + evict);
            let later = earliest(evict_at, self.checkpoint_retry.map(Stamp::instant));
            let Some(at) = earliest(earliest(deadline, later), earliest(commit_at, relay_at)) else {
                self.sleep = None;
                return Poll::Pending;
            };
            let sleep = match self.sleep.as_mut() {
                Some(s) => {
                    if s.deadline() != at.into() {
                        s.as_mut().reset(at.into());
                    }
                    s
                }
                None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at.into()))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                debug!("idle, unloading");
                return Poll::Ready(());
            }
            if evict_at.is_some_and(|e| now >= e) {
                self.evict();
            }
        }
    }
}

impl Hub {
    /// After a batch is durable: send what waited for it, answer info requests, count.
    fn after_flush(&mut self, f: InFlight) {
        let InFlight { started, n, frames, info, .. } = f;
        if !frames.is_empty() {
            self.q().out.extend(frames);
        }
        self.dispatch();
        if let Some((info, waiting)) = info {
            for r in waiting {
                let _ = r.send(info.clone());
            }
        }
        let m = &self.node.inner.metrics;
        inc(&m.apply_us_sum, started.elapsed().as_micros() as u64);
        inc(&m.apply_count, n);
    }

    /// The room stops: flush, tell the connections, leave the node's map.
    fn stop(&mut self, rx: &mut chan::Receiver<HubCmd>) {
        rx.close();
        // Stock clients' updates of a batch cut short are still signed and stored.
        self.commit_proxied(now_ms());
        if let Some(mut r) = self.room.take() {
            let _ = r.flush();
            dec(&self.node.inner.metrics.docs_loaded);
        }
        let shutting_down = self.node.inner.shutdown.is_cancelled();
        let (code, reason) = if shutting_down { (1001, "server shutting down") } else { (4400, "room unloaded") };
        for c in self.conns.values() {
            // Connections have no shutdown watch of their own (one waiter less per idle
            // client): the room tells them.
            if let Some(tx) = &c.tx {
                let _ = tx.try_send(Outbound::Close(code, reason.into()));
            }
        }
        // The inline connection's close frame is written by a task of its own.
        if let Some(mut i) = self.inline.take() {
            i.close(code, reason);
            dec(&self.node.inner.metrics.connections_inline);
            finish_closing(&self.node, i.socket);
        }
        // Connections that were joining hold their sockets in the queue: they are told too
        // (the queue is closed, so no more come; a later sender gets its socket back).
        while let Ok(cmd) = rx.try_recv() {
            if let HubCmd::Attach(a) = cmd {
                let mut socket = a.socket;
                socket.start_close(code, reason);
                finish_closing(&self.node, socket);
            }
        }
        dec(&self.node.inner.metrics.rooms_loaded);
        self.node.forget_room(&self.id);
        info!("room unloaded");
    }

    /// Drops the idle room's document (it is all in sled); connections and presence stay.
    /// Not while it holds envelopes waiting for their predecessors (those live in memory),
    /// nor updates not yet signed: the actor calls this only when everything the room
    /// logged is durable (no flush in flight or owed), so eviction needs no flush of its
    /// own (a blocking fsync per room on the runtime's threads, thousands of them when the
    /// rooms of a busy hour go idle together).
    fn evict(&mut self) {
        let unsigned = self.has_proxied() || self.room.as_ref().is_some_and(|r| r.unsealed() > 0);
        if unsigned || self.room.as_ref().is_some_and(|r| r.pending() > 0) {
            self.used = Stamp::now();
            return;
        }
        if self.room.take().is_some() {
            dec(&self.node.inner.metrics.docs_loaded);
            debug!("document idle, evicted from memory");
        }
    }

    /// The periodic checkpoint, when due (the room defers it: see
    /// [`arena_core::RoomConfig::deferred_checkpoints`]). It encodes, signs and stores the
    /// whole state, ~10–50 ms for a state of a few MB, while the room's clients wait. Rooms
    /// typed into at the same pace come due together, and twenty such checkpoints at once
    /// on two cores made each take ~10× longer and stalled every room for up to a second
    /// (the throughput command's failed steps at ~150,000 edits/s, one burst each). So the
    /// node makes one at a time, on a multi-threaded runtime in `block_in_place` (the other
    /// rooms and connections on this worker move to another thread meanwhile). A room that
    /// finds another one's running tries again [`CHECKPOINT_RETRY`] later (it may have gone
    /// quiet: no next pass would come).
    fn checkpoint_if_due(&mut self) -> Checkpointed {
        use std::sync::atomic::Ordering;
        let now = now_ms();
        let Some(room) = self.room.as_ref() else { return Checkpointed::No };
        if !room.checkpoint_due(now) {
            return Checkpointed::No;
        }
        let gate = &self.node.inner.checkpointing;
        if gate.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Checkpointed::Busy;
        }
        // Released however this ends (a panic in the checkpoint would otherwise stop every
        // room's checkpoints for good).
        struct Release(Node);
        impl Drop for Release {
            fn drop(&mut self) {
                self.0.inner.checkpointing.store(false, Ordering::Release);
            }
        }
        let _release = Release(self.node.clone());
        // What the room gathered to relay goes out first.
        if self.has_out() {
            self.dispatch();
        }
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let started = Instant::now();
        let res = match self.room.as_mut() {
            Some(room) if multi => tokio::task::block_in_place(|| room.checkpoint_if_due(now)),
            Some(room) => room.checkpoint_if_due(now),
            None => Ok(None),
        };
        match res {
            Ok(Some(_)) => {
                let m = &self.node.inner.metrics;
                inc(&m.checkpoints, 1);
                inc(&m.checkpoint_us, started.elapsed().as_micros() as u64);
                Checkpointed::Wrote
            }
            Ok(None) => Checkpointed::No,
            Err(e) => {
                warn!(error = %e, "checkpoint failed; the log still holds everything");
                Checkpointed::No
            }
        }
    }

    /// Makes sure the document is in memory (reopening it from sled); false if it cannot
    /// be opened (then every connection is told and closed).
    fn wake(&mut self) -> bool {
        self.used = Stamp::now();
        if self.room.is_some() {
            return true;
        }
        let inner = &self.node.inner;
        match self.node.open_room(&self.id) {
            Ok(r) => {
                debug!("document reopened from sled");
                inc(&inner.metrics.docs_loaded, 1);
                inc(&inner.metrics.docs_reloaded, 1);
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
    fn q(&mut self) -> &mut Queued {
        self.queued.get_or_insert_with(Box::default)
    }

    fn has_out(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| !q.out.is_empty())
    }

    fn has_proxied(&self) -> bool {
        self.queued.as_ref().is_some_and(|q| !q.proxied.is_empty())
    }

    /// Gives back what [`Self::q`] made once the room has nothing in hand.
    fn settle(&mut self) {
        if self.queued.as_ref().is_some_and(|q| q.is_empty()) {
            self.queued = None;
        }
    }

    /// Queues `bytes` for `to` (None: everyone) except `except`.
    fn send(&mut self, to: Option<u64>, except: Option<u64>, bytes: Vec<u8>) {
        self.q().out.push((to, except, bytes));
    }

    /// Queues `bytes` for `to` once what the room has written so far is durable.
    fn send_durable(&mut self, to: Option<u64>, bytes: Vec<u8>) {
        self.q().durable.push((to, None, bytes));
    }

    fn dispatch(&mut self) {
        if !self.has_out() {
            return;
        }
        let node = self.node.clone();
        let m = &node.inner.metrics;
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

    fn handle(&mut self, cmd: HubCmd) {
        match cmd {
            // Taken by the actor before it gets here.
            HubCmd::Shutdown => {}
            HubCmd::Attach(a) => self.attach(*a),
            HubCmd::Detach { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.drop_awareness(c.awareness_ids);
                }
            }
            HubCmd::Close { conn, code, reason } => {
                if let Some(c) = self.conns.remove(&conn) {
                    debug!(conn, %reason, "closing");
                    deliver(&c, &mut self.inline, Outbound::Close(code, reason), true);
                    self.drop_awareness(c.awareness_ids);
                }
            }
            HubCmd::Frame { conn, bytes } => self.frame(conn, &bytes),
            HubCmd::Info { reply } => self.q().info_waiting.push(reply),
            HubCmd::Remote { msgs } => self.remote(msgs),
            HubCmd::RemotePresence { update } => self.remote_presence(update),
            HubCmd::Answer { have, reply } => {
                let _ = reply.send(self.with_room(|_, r| r.answer(&have).unwrap_or_default()).unwrap_or_default());
            }
            HubCmd::Vector { reply } => {
                let _ = reply.send(self.with_room(|_, r| r.envelope_vector()).unwrap_or_default());
            }
        }
    }

    /// A connection joins: its start frames (our sync step 1, the room's awareness; one
    /// message per frame, as stock y-websocket peers read only a frame's first message) are
    /// queued on its socket before anything else, then the room serves it inline or hands
    /// it to a session task.
    fn attach(&mut self, a: Attach) {
        let Attach { conn, role, mut token, delegation, mut socket, limiter, hub, span, expiry, grant, invite, slot } =
            a;
        let observer = !role.may_write();
        let session = YSession::new(observer);
        // A link a host revoked (or that a removed member joined with) gets nothing more here.
        if self.with_room(|_, r| link_revoked(r.ledger(), &invite)) == Some(true) {
            debug!(conn, "refused: its link was revoked");
            let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
                "permission denied: {REMOVED}"
            )))]);
            socket.start_frame(2, deny.into());
            socket.start_close(crate::live::CLOSE_DENIED, REMOVED);
            return finish_closing(&self.node, socket);
        }
        let mut via = None;
        let Some(start) = self.with_room(|h, r| {
            // The token is kept only to forward the client's updates to a home node
            // that signs them: not where we sign, nor for a client that cannot write.
            if r.can_proxy() || !role.may_write() {
                token = None;
            }
            if let Some(d) = delegation.filter(|_| r.can_proxy() && role.may_write()) {
                via = h.register_delegation(r, *d);
            }
            session.start_frames(r.doc(), &h.presence)
        }) else {
            socket.start_close(4400, "storage failure");
            return finish_closing(&self.node, socket);
        };
        for f in start {
            socket.start_frame(2, f.into());
        }
        let link = None;
        let live = self.node.inner.live.register_yws(conn, self.id, expiry, grant);
        let mut c = Conn {
            tx: None,
            session,
            awareness_ids: Vec::new(),
            link,
            arena: false,
            role,
            token,
            via,
            _live: live,
            _slot: slot,
        };
        if self.inline.is_none() {
            drop(hub);
            debug!(conn, "attached inline");
            self.conns.insert(conn, c);
            self.inline = Some(Box::new(Inline { conn, socket, limiter, closing: false }));
            inc(&self.node.inner.metrics.connections_inline, 1);
        } else {
            let (tx, rx) = chan::channel_weighed::<Outbound, FrameBytes>(CONN_QUEUE);
            c.tx = Some(tx);
            self.conns.insert(conn, c);
            crate::yws::spawn_session(self.node.clone(), socket, hub, rx, limiter, conn, span);
        }
    }

    /// Enters a writing stock client's delegation in the room; a new one goes to the
    /// connections that speak our protocol and to the network before any envelope names it.
    /// Returns its key (the `via` of the client's envelopes), None if the room refused it.
    fn register_delegation(&mut self, room: &mut Room<SledStore>, d: arena_core::Delegation) -> Option<PeerKey> {
        match room.delegate(&d, Some(now_ms() / 1000)) {
            Ok(new) => {
                if new {
                    let msg = Wire::Delegations(vec![d.clone()]);
                    crate::p2p::to_network(&self.node, self.id, vec![msg.clone()]);
                    self.send_signed(&[msg], None);
                }
                Some(d.key())
            }
            Err(e) => {
                warn!(error = %e, "a stock client's delegation was refused; its updates will be");
                None
            }
        }
    }

    /// Serves the inline connection: writes what is queued for it, then reads and handles
    /// up to `budget` of its frames. Returns how many frames it handled and whether anything
    /// happened (progress: the caller loops); reading stops while a write is pending.
    fn poll_inline(&mut self, cx: &mut Context<'_>, budget: u64) -> (u64, bool) {
        let mut taken = 0;
        let mut progress = false;
        while taken < budget {
            match self.flush_inline(cx) {
                Poll::Pending => break,
                Poll::Ready(true) => return (taken, true),
                Poll::Ready(false) => {}
            }
            let Some(i) = self.inline.as_mut() else { break };
            let msg = match i.socket.poll_recv(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.end_inline();
                    return (taken, true);
                }
                Poll::Ready(Some(m)) => m,
            };
            progress = true;
            match crate::yws::incoming(&mut i.socket, &mut i.limiter, &self.node, msg) {
                Incoming::Frame(bytes) => {
                    let conn = i.conn;
                    self.frame(conn, &bytes);
                    taken += 1;
                }
                Incoming::Close(code, reason) => i.close(code, &reason),
                Incoming::Answered => {}
            }
        }
        // Its deadlines once it has read what there was (which may have begun a message),
        // also while a write is pending; a ping goes out with the pass's other writes.
        if let Some(i) = self.inline.as_mut() {
            if crate::yws::keep_deadlines(&mut i.socket, &self.node, cx).is_none() {
                self.end_inline();
                return (taken, true);
            }
        }
        (taken, progress)
    }

    /// Writes what is queued for the inline connection: `Ready(true)` when that ended it
    /// (its close written, or the write failed), `Ready(false)` when all is out (or there is
    /// no inline connection), `Pending` while the socket takes no more.
    fn flush_inline(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let Some(i) = self.inline.as_mut() else { return Poll::Ready(false) };
        match i.socket.poll_write_out(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !i.closing => Poll::Ready(false),
            Poll::Ready(_) => {
                self.end_inline();
                Poll::Ready(true)
            }
        }
    }

    /// Writes what the room queued for the inline connection since it was last polled;
    /// true when that ended the connection.
    fn write_inline(&mut self, cx: &mut Context<'_>) -> bool {
        matches!(self.flush_inline(cx), Poll::Ready(true))
    }

    /// The inline connection is gone: it leaves the room (a session task's end sends the
    /// room a `Detach` for the same).
    fn end_inline(&mut self) {
        let Some(i) = self.inline.take() else { return };
        if let Some(c) = self.conns.remove(&i.conn) {
            self.drop_awareness(c.awareness_ids);
        }
        dec(&self.node.inner.metrics.connections_active);
        dec(&self.node.inner.metrics.connections_inline);
        debug!(conn = i.conn, "detached");
    }

    fn drop_awareness(&mut self, ids: Vec<u64>) {
        if ids.is_empty() {
            return;
        }
        let u = self.presence.remove(ids, now_ms());
        if u.clients.is_empty() {
            return;
        }
        let bytes = yrs::updates::encoder::Encode::encode_v1(&u);
        if let Ok(f) = awareness_frame(&bytes) {
            self.send(None, None, f);
        }
        crate::p2p::presence_to_network(&self.node, self.id, bytes);
    }

    fn frame(&mut self, conn: u64, bytes: &[u8]) {
        let node = self.node.clone();
        let m = &node.inner.metrics;
        inc(&m.bytes_in, bytes.len() as u64);
        let Some(c) = self.conns.get(&conn) else { return };
        let session = c.session;
        if c.role == Role::Observer && self.claims_anothers_presence(conn, bytes) {
            inc(&m.observer_writes_refused, 1);
            debug!(conn, "observer's presence under another connection's client id dropped");
            return;
        }
        let now = now_ms();
        // Presence (idle clients renew theirs every 15 s) is served without the document, so
        // it neither reopens an evicted one nor keeps one from being evicted. Frames that
        // start with a sync message go straight to the document (decoded once).
        let presence_first = matches!(bytes.first(), Some(1 | 3));
        let received = if self.room.is_none() || presence_first {
            session.receive_presence(&mut self.presence, bytes, now)
        } else {
            Ok(None)
        };
        let received = match received {
            Ok(Some(o)) => Ok(o),
            Ok(None) => match self.with_room(|h, r| session.receive(r.doc(), &mut h.presence, bytes, now)) {
                Some(r) => r,
                None => return,
            },
            Err(e) => Err(e),
        };
        let outcome = match received {
            Ok(o) => o,
            Err(e) => {
                // Malformed bytes close this connection only.
                inc(&m.frames_rejected, 1);
                debug!(conn, error = %e, "malformed frame");
                if let Some(c) = self.conns.remove(&conn) {
                    deliver(
                        &c,
                        &mut self.inline,
                        Outbound::Close(4400, format!("malformed message: {e}").into()),
                        false,
                    );
                    self.drop_awareness(c.awareness_ids);
                }
                return;
            }
        };
        if !outcome.reply.is_empty() {
            self.send(Some(conn), None, outcome.reply);
        }
        if outcome.denied {
            // An observer's update (YSession answers it with a read-only auth message).
            inc(&m.envelopes_rejected, 1);
            inc(&m.observer_writes_refused, 1);
        }
        if !outcome.updates.is_empty() {
            self.stock_updates(conn, outcome.updates, now);
        }
        if let Some(a) = outcome.awareness {
            if let Ok(upd) = <yrs::sync::AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&a) {
                if let Some(c) = self.conns.get_mut(&conn) {
                    for id in upd.clients.keys() {
                        if !c.awareness_ids.contains(&id.get()) {
                            c.awareness_ids.push(id.get());
                        }
                    }
                }
            }
            if let Ok(f) = awareness_frame(&a) {
                // Like the y-websocket server: to everyone, the sender included (keeps its
                // connection alive).
                self.send(None, None, f);
            }
            crate::p2p::presence_to_network(&self.node, self.id, a);
        }
        for chunk_bytes in outcome.arena {
            self.arena_chunk(conn, &chunk_bytes, now);
        }
    }

    /// Whether a frame sets presence under an awareness client id another connection of the
    /// room announced. Checked for observers: they may publish their own presence (the host
    /// sees who watches), not a fake name or cursor for someone else. (Decoding the frame
    /// twice costs little on what observers send: presence renewals.)
    fn claims_anothers_presence(&self, conn: u64, bytes: &[u8]) -> bool {
        let Ok(msgs) = arena_core::sync::ywire::decode_frame(bytes) else { return false };
        msgs.iter().any(|m| match m {
            yrs::sync::Message::Awareness(u) => u
                .clients
                .keys()
                .any(|id| self.conns.iter().any(|(other, c)| *other != conn && c.awareness_ids.contains(&id.get()))),
            _ => false,
        })
    }

    fn arena_chunk(&mut self, conn: u64, bytes: &[u8], now: u64) {
        let id = self.id;
        let msg = match self.conns.get_mut(&conn).map(|c| {
            c.arena = true;
            c.link.get_or_insert_with(Box::default).push(bytes, id)
        }) {
            Some(Ok(Some(msg))) => msg,
            Some(Ok(None)) | None => return,
            Some(Err(e)) => {
                inc(&self.node.inner.metrics.frames_rejected, 1);
                if let Some(c) = self.conns.remove(&conn) {
                    let o = Outbound::Close(4400, format!("malformed envelope message: {e}").into());
                    deliver(&c, &mut self.inline, o, false);
                }
                return;
            }
        };
        // Observers are read-only on every transport: of our protocol they may ask for
        // envelopes (`Want`, `WantHistory`: what a reader needs), nothing else. Whatever else
        // they send is dropped, counted and logged, not answered: our own clients announce
        // their admission on every connect, observers' included, and an answer would show
        // them a refusal for it each time. (Their y-protocols updates are refused by their
        // read-only `YSession`, with an auth message.)
        let observer = self.conns.get(&conn).is_some_and(|c| c.role == Role::Observer);
        if observer && !matches!(msg, Wire::Want(_) | Wire::WantHistory(_)) {
            inc(&self.node.inner.metrics.observer_writes_refused, 1);
            debug!(conn, kind = wire_kind(&msg), "observer's write ignored: observers are read-only");
            return;
        }
        self.with_room(|h, room| {
            // A join comes in here live: a member we do not know yet must hold a grant that
            // has not expired by our clock (`Room::admit_live`), whatever time its admission
            // claims. New members' admissions then go to the other connections that speak
            // our protocol, so they know the authors of the envelopes that follow.
            let (msg, admissions) = match msg {
                Wire::Admissions(adms) => {
                    let mut live = Vec::with_capacity(adms.len());
                    for a in adms {
                        match room.admit_live(&a, now) {
                            Ok(_) => live.push(a),
                            Err(e) => {
                                inc(&h.node.inner.metrics.envelopes_rejected, 1);
                                debug!(conn, member = %a.member, error = %e, "admission refused");
                            }
                        }
                    }
                    (Wire::Admissions(live.clone()), Some(live))
                }
                m => (m, None),
            };
            h.arena_msg(room, conn, msg, admissions, observer, now)
        });
    }

    fn arena_msg(
        &mut self,
        room: &mut Room<SledStore>,
        conn: u64,
        msg: Wire,
        admissions: Option<Vec<arena_core::Admission>>,
        observer: bool,
        now: u64,
    ) {
        // A client that holds envelopes we lack (other authors' it got over a browser data
        // channel) is asked back for them; not an observer, whose envelopes we would drop.
        let ask_back = !observer && matches!(&msg, Wire::Want(have) if room.lacks_from(have));
        let revocations = match &msg {
            Wire::Revocations(r) => r.clone(),
            _ => Vec::new(),
        };
        let delegations = delegations_in(&msg);
        match room.handle(msg, now) {
            Ok((mut replies, receipt)) => {
                if ask_back {
                    replies.push(room.want());
                }
                inc(&self.node.inner.metrics.envelopes_rejected, receipt.rejected.len() as u64);
                inc(&self.node.inner.metrics.envelopes_in, receipt.applied.len() as u64);
                inc(&self.node.inner.metrics.envelopes_held_back, receipt.buffered as u64);
                for r in chunk(&replies, GOSSIP_CHUNK) {
                    self.send_durable(Some(conn), arena_frame(&r));
                }
                let mut bridged = Vec::new();
                if let Some(a) = &admissions {
                    bridged.push(Wire::Admissions(a.clone()));
                }
                let delegations = known_delegations(room, delegations);
                if !delegations.is_empty() {
                    bridged.push(Wire::Delegations(delegations.clone()));
                    self.send_signed(&[Wire::Delegations(delegations)], Some(conn));
                }
                if !receipt.applied.is_empty() {
                    bridged.push(Wire::Envelopes(receipt.applied.clone()));
                }
                if !bridged.is_empty() {
                    crate::p2p::to_network(&self.node, self.id, bridged);
                }
                if let Some(adms) = admissions {
                    self.forward_admissions(room, adms, Some(conn));
                }
                for env in &receipt.applied {
                    self.broadcast_envelope(env, Some(conn));
                }
                self.enforce_revocations(room, revocations, Some(conn), true);
            }
            Err(e) => warn!(error = %e, "envelope message failed"),
        }
    }

    /// Revocations the ledger took: passed on (to our clients, and to the network when a
    /// client sent them), and the connections that joined with the revoked member's link
    /// (or the revoked invite) closed.
    fn enforce_revocations(
        &mut self,
        room: &Room<SledStore>,
        revs: Vec<arena_core::Revocation>,
        except: Option<u64>,
        to_network: bool,
    ) {
        let taken: Vec<_> = revs.into_iter().filter(|r| room.ledger().is_revoked(&r.target)).collect();
        if taken.is_empty() {
            return;
        }
        for r in &taken {
            let invite = room.ledger().member(&r.target).map_or(r.target, |m| m.admission.grant.invite);
            let n = self.node.close_invite(&self.id, &invite, REMOVED);
            info!(room = %self.id, target = %r.target, closed = n, "revocation enforced");
        }
        if to_network {
            crate::p2p::to_network(&self.node, self.id, vec![Wire::Revocations(taken.clone())]);
        }
        self.send_signed(&[Wire::Revocations(taken)], except);
    }

    /// Sends the admissions the ledger accepted to the connections that speak our protocol
    /// (except `except`), so they know the authors of the envelopes that follow.
    fn forward_admissions(&mut self, room: &Room<SledStore>, adms: Vec<arena_core::Admission>, except: Option<u64>) {
        let known: Vec<_> = adms.into_iter().filter(|a| room.ledger().member(&a.member).is_some()).collect();
        if known.is_empty() {
            return;
        }
        self.send_signed(&[Wire::Admissions(known)], except);
    }

    /// Presence from libp2p (another node's browsers): kept, so awareness queries include
    /// it, and passed on to every connection. Not sent back to the network.
    fn remote_presence(&mut self, update: Vec<u8>) {
        let Ok(u) = <yrs::sync::AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&update) else { return };
        if self.presence.apply(&u, now_ms()).is_empty() {
            return;
        }
        if let Ok(f) = awareness_frame(&update) {
            self.send(None, None, f);
        }
    }

    /// Applies what came from libp2p and passes it on to every connection.
    fn remote(&mut self, msgs: Vec<Wire>) {
        self.with_room(|h, room| h.remote_in(room, msgs));
    }

    fn remote_in(&mut self, room: &mut Room<SledStore>, msgs: Vec<Wire>) {
        let now = now_ms();
        for msg in msgs {
            let adms = match &msg {
                Wire::Admissions(a) => Some(a.clone()),
                _ => None,
            };
            let revocations = match &msg {
                Wire::Revocations(r) => r.clone(),
                _ => Vec::new(),
            };
            let delegations = delegations_in(&msg);
            match room.handle(msg, now) {
                Ok((_, receipt)) => {
                    inc(&self.node.inner.metrics.envelopes_in, receipt.applied.len() as u64);
                    inc(&self.node.inner.metrics.envelopes_held_back, receipt.buffered as u64);
                    if let Some(a) = adms {
                        self.forward_admissions(room, a, None);
                    }
                    let delegations = known_delegations(room, delegations);
                    if !delegations.is_empty() {
                        self.send_signed(&[Wire::Delegations(delegations)], None);
                    }
                    for env in &receipt.applied {
                        self.broadcast_envelope(env, None);
                    }
                    self.enforce_revocations(room, revocations, None, false);
                }
                Err(e) => debug!(error = %e, "message from libp2p refused"),
            }
        }
    }

    /// A stock client's updates. Where we sign for the room, each is checked and applied to
    /// the document now and relayed to the other stock clients at once; the signature comes
    /// with the next [`Hub::commit_proxied`] (one envelope for every update since the last,
    /// at most once per `--proxy-batch-ms`), and the connections that speak our protocol
    /// get that envelope. A refused update is answered with an auth message to its sender
    /// alone. In a federated room hosted elsewhere they wait for the commit, which sends
    /// them to the room's home node to sign.
    fn stock_updates(&mut self, conn: u64, updates: Vec<Vec<u8>>, now: u64) {
        let hosted_elsewhere = self.node.inner.p2p.get().is_some();
        let relayed = self.with_room(|h, room| {
            if !room.can_proxy() && hosted_elsewhere {
                return false;
            }
            let stock: Vec<u64> =
                h.conns.iter().filter(|(id, c)| !c.arena && **id != conn).map(|(id, _)| *id).collect();
            let via = h.conns.get(&conn).and_then(|c| c.via);
            for u in &updates {
                let Some(via) = via else {
                    h.refuse(conn, "this connection may not write (no delegation for its link)");
                    continue;
                };
                match room.proxy_deferred(u, &via, now) {
                    Ok(true) => {
                        inc(&h.node.inner.metrics.envelopes_in, 1);
                        if !stock.is_empty() {
                            let frame = update_frame(u);
                            for id in &stock {
                                h.send(Some(*id), None, frame.clone());
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => h.refuse(conn, &e.to_string()),
                }
            }
            true
        });
        if relayed == Some(false) {
            self.q().proxied.extend(updates.into_iter().map(|u| (conn, u)));
        }
    }

    /// Signs the stock clients' updates applied since the last commit (one envelope, their
    /// merge, so the signature is paid per batch, not per keystroke) and sends the envelope
    /// on; in a federated room hosted elsewhere, sends the batch to the room's home node.
    fn commit_proxied(&mut self, now: u64) {
        let batch = self.queued.as_mut().map(|q| std::mem::take(&mut q.proxied)).unwrap_or_default();
        if !batch.is_empty() {
            self.forward_proxied(batch);
        }
        if let Some(room) = self.room.as_mut() {
            if room.unsealed() > 0 {
                if let Err(e) = room.seal_pending(now) {
                    warn!(error = %e, "signing stock clients' updates failed; they stay pending");
                }
            }
        }
        self.send_sealed();
    }

    /// Sends on what the room sealed from stock clients' updates (by the commit, or by any
    /// call that sealed first): to the network and to the connections that speak our
    /// protocol (once durable).
    fn send_sealed(&mut self) {
        let Some(room) = self.room.as_mut() else { return };
        let sealed = room.take_sealed();
        if sealed.is_empty() {
            return;
        }
        crate::p2p::to_network(&self.node, self.id, vec![Wire::Envelopes(sealed.clone())]);
        self.send_signed(&[Wire::Envelopes(sealed)], None);
    }

    /// A federated room hosted elsewhere: the room's home node signs for our stock clients.
    /// Each update goes with a voucher signed by the client's invite key (the home node
    /// checks it and holds the update to the grant's role); the token itself stays here.
    /// The envelopes come back over gossip.
    fn forward_proxied(&mut self, batch: Vec<(u64, Vec<u8>)>) {
        let now_s = crate::node::now_ms() / 1000;
        let msgs: Vec<Wire> = batch
            .into_iter()
            .filter_map(|(conn, update)| {
                let token = self.conns.get(&conn)?.token.as_deref()?;
                let invite = arena_core::Invite::from_token(token, &self.id, now_s).ok()?;
                let signature = invite.vouch(&update);
                let delegation = arena_core::Delegation::sign(&invite).signature;
                Some(Wire::Proxied { grant: Box::new(invite.grant), update, signature, delegation })
            })
            .collect();
        if !msgs.is_empty() {
            crate::p2p::to_network(&self.node, self.id, msgs);
        }
    }

    fn refuse(&mut self, conn: u64, reason: &str) {
        inc(&self.node.inner.metrics.envelopes_rejected, 1);
        debug!(conn, error = %reason, "update refused");
        let deny = arena_core::sync::ywire::encode_frame(&[yrs::sync::Message::Auth(Some(format!(
            "update refused: {reason}"
        )))]);
        self.send(Some(conn), None, deny);
    }

    /// Sends an applied envelope to every other connection: signed (as our own protocol)
    /// to connections that speak it, as a plain y-protocols update to stock clients.
    fn broadcast_envelope(&mut self, env: &Envelope, except: Option<u64>) {
        inc(&self.node.inner.metrics.envelopes_out, self.conns.len().saturating_sub(1) as u64);
        let plain = update_frame(&env.update);
        let stock: Vec<u64> =
            self.conns.iter().filter(|(id, c)| !c.arena && Some(**id) != except).map(|(id, _)| *id).collect();
        for id in stock {
            self.send(Some(id), None, plain.clone());
        }
        self.send_signed(&[Wire::Envelopes(vec![env.clone()])], except);
    }

    /// Sends envelope-protocol messages to every connection that speaks it (except `except`).
    fn send_signed(&mut self, msgs: &[Wire], except: Option<u64>) {
        let targets: Vec<u64> =
            self.conns.iter().filter(|(id, c)| c.arena && Some(**id) != except).map(|(id, _)| *id).collect();
        if targets.is_empty() {
            return;
        }
        for f in chunk(msgs, GOSSIP_CHUNK) {
            let frame = arena_frame(&f);
            for id in &targets {
                self.send_durable(Some(*id), frame.clone());
            }
        }
    }

    /// Runs `f` with the document in memory (reopened from sled if it was evicted). Never
    /// nested: the room is out of `self` while `f` runs.
    fn with_room<T>(&mut self, f: impl FnOnce(&mut Self, &mut Room<SledStore>) -> T) -> Option<T> {
        if !self.wake() {
            return None;
        }
        let mut room = self.room.take()?;
        let out = f(self, &mut room);
        debug_assert!(self.room.is_none(), "with_room nested");
        self.room = Some(room);
        Some(out)
    }

    fn info(&mut self) -> serde_json::Value {
        let conns = self.conns.len();
        self.with_room(|_, room| Self::room_info(room, conns))
            .unwrap_or_else(|| serde_json::json!({"error": "storage failure"}))
    }

    fn room_info(room: &Room<SledStore>, connections: usize) -> serde_json::Value {
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
            "consensus": { "round": c.round, "enabled": c.enabled(), "satisfied": c.satisfied, "required": c.required },
        })
    }
}

/// The delegations a message carries (a relayed update's included), to pass on once the
/// room took them.
fn delegations_in(msg: &Wire) -> Vec<arena_core::Delegation> {
    match msg {
        Wire::Delegations(d) => d.clone(),
        Wire::Proxied { grant, delegation, .. } => {
            vec![arena_core::Delegation { grant: (**grant).clone(), signature: *delegation }]
        }
        _ => Vec::new(),
    }
}

/// Those of `ds` the room holds (it refused the others).
fn known_delegations(room: &Room<SledStore>, ds: Vec<arena_core::Delegation>) -> Vec<arena_core::Delegation> {
    ds.into_iter().filter(|d| room.ledger().delegation(&d.key()) == Some(d)).collect()
}

/// A message's kind, for logs.
fn wire_kind(w: &Wire) -> &'static str {
    match w {
        Wire::Envelopes(_) => "envelopes",
        Wire::Admissions(_) => "admissions",
        Wire::Checkpoint(_) => "checkpoint",
        Wire::History(_) => "history",
        Wire::Proxied { .. } => "proxied",
        _ => "other",
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use std::sync::atomic::Ordering;

    use arena_core::RoomConfig;

    use super::*;

    #[test]
    fn an_idle_rooms_task_and_state_fit_small_allocations() {
        // tokio's task cell (128-byte aligned on x86-64) is 128 bytes when the future is at
        // most 24 (header 32, scheduler and id 16, the stage's tag 8, trailer 48), 256 when
        // it is more; the hub's box is in the allocator's 256-byte class.
        assert!(std::mem::size_of::<Actor>() <= 24, "Actor is {} bytes", std::mem::size_of::<Actor>());
        assert!(std::mem::size_of::<Hub>() <= 256, "Hub is {} bytes", std::mem::size_of::<Hub>());
        // The inline connection's box, in the allocator's 192-byte class (its deadlines
        // live in what was padding of its WebSocket: see `ws::deadline`).
        assert!(std::mem::size_of::<Inline>() <= 192, "Inline is {} bytes", std::mem::size_of::<Inline>());
    }

    /// A room whose checkpoint came due while another room's was running tries again by
    /// itself: with no command after that (a room gone quiet) nothing else would wake it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_that_found_the_gate_taken_is_made_once_it_is_free_with_no_more_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::open(
            crate::Config::for_tests(dir.path()),
            "http://127.0.0.1:0".into(),
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let created = node.create_room("gate", "python", 3600).unwrap();
        let id = arena_core::PeerKey::from_hex(&created.room).unwrap();
        // The room as the node opens it, checkpointing every 3 entries, with 4 new ones:
        // due at the actor's first pass.
        let cfg = RoomConfig { checkpoint_every: 3, ..crate::node::room_config() };
        let mut room =
            Room::open(id, node.inner.identity.clone(), 0, node.inner.db.room(&id).unwrap(), cfg, now_ms()).unwrap();
        for i in 0..4 {
            room.edit(now_ms(), |e| e.splice_code(i, 0, "x")).unwrap();
        }
        assert!(room.checkpoint_due(now_ms()), "the test's premise: a checkpoint is due");
        let checkpoints = || node.metrics().checkpoints.load(Ordering::Relaxed);

        // Another room's checkpoint is running.
        node.inner.checkpointing.store(true, Ordering::Release);
        let (tx, handle) = spawn(node.clone(), room);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(checkpoints(), 0, "made while the gate was taken");

        // It is done; nothing is sent to the room.
        node.inner.checkpointing.store(false, Ordering::Release);
        let until = Instant::now() + Duration::from_secs(10);
        while checkpoints() == 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(checkpoints(), 1, "the room did not try again once the gate was free");
        assert!(!node.inner.checkpointing.load(Ordering::Acquire), "the gate was given back");

        tx.send(HubCmd::Shutdown).await.unwrap();
        handle.await.unwrap();
    }

    /// A connection upgraded by hyper over an in-memory pipe, as the node gets them: the
    /// client's end (past the 101 answer) and the server's socket.
    async fn upgraded_pair() -> (tokio::io::DuplexStream, WebSocket) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (got, upgraded) = oneshot::channel();
        let got = std::sync::Mutex::new(Some(got));
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let on = hyper::upgrade::on(&mut req);
            let got = got.lock().unwrap().take();
            tokio::spawn(async move {
                if let (Ok(io), Some(got)) = (on.await, got) {
                    let _ = got.send(io);
                }
            });
            let mut res = hyper::Response::new(axum::body::Body::empty());
            *res.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            res.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("upgrade"));
            res.headers_mut().insert(hyper::header::UPGRADE, hyper::header::HeaderValue::from_static("websocket"));
            async move { Ok::<_, std::convert::Infallible>(res) }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), service)
                .with_upgrades(),
        );
        client
            .write_all(b"GET /yws/x HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        // The 101 head, up to its blank line.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(client.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        let io = upgraded.await.unwrap();
        (client, WebSocket::new(hyper_util::rt::TokioIo::new(io), 1 << 20))
    }

    /// A connection still waiting in a room's queue to join when the room stops is told
    /// (a close frame, "room unloaded") and leaves the connection count, not dropped in
    /// silence with the queue. On a current-thread runtime the room runs only when the test
    /// waits, so its queue holds the shutdown and then the join when it first looks.
    #[tokio::test]
    async fn a_join_still_queued_when_the_room_stops_is_closed_and_uncounted() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let node = Node::open(
            crate::Config::for_tests(dir.path()),
            "http://127.0.0.1:0".into(),
            tokio_util::sync::CancellationToken::new(),
        )
        .unwrap();
        let created = node.create_room("queued join", "python", 3600).unwrap();
        let id = arena_core::PeerKey::from_hex(&created.room).unwrap();
        let room = node.open_room(&id).unwrap();
        let (tx, handle) = spawn(node.clone(), room);
        let (mut client, socket) = upgraded_pair().await;
        // As `yws::serve` counts it before it asks to join.
        let active = || node.metrics().connections_active.load(std::sync::atomic::Ordering::Relaxed);
        inc(&node.inner.metrics.connections_active, 1);
        assert_eq!(active(), 1);
        tx.try_send(HubCmd::Shutdown).unwrap();
        let (_, grant) = node.authorize(&created.room, Some(&created.tokens["candidate"])).unwrap();
        let attach = Attach {
            conn: 1,
            role: Role::Candidate,
            token: None,
            delegation: None,
            socket,
            limiter: RateLimiter::new(100),
            hub: tx.clone(),
            span: tracing::Span::none(),
            expiry: grant.expiry,
            grant: crate::live::grant_id(&grant),
            invite: grant.invite,
            slot: node.inner.yws_caps.acquire(std::net::Ipv4Addr::LOCALHOST.into()).unwrap(),
        };
        tx.try_send(HubCmd::Attach(Box::new(attach))).unwrap();
        handle.await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got)).await.unwrap().unwrap();
        // One frame: a close (opcode 8) with code 4400 and its reason; no start frames.
        assert_eq!(got.first(), Some(&0x88), "{got:?}");
        assert_eq!(got.get(2..4), Some(&4400u16.to_be_bytes()[..]), "{got:?}");
        assert!(String::from_utf8_lossy(&got[4..]).contains("room unloaded"), "{got:?}");
        let until = Instant::now() + Duration::from_secs(10);
        while active() != 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(active(), 0, "the connection is still counted");
    }
}

//! A room actor's loop: the future that runs it, its group commit, its checkpoints, its
//! inline connection, and how it stops.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arena_core::sync::presence::PresenceMap;
use arena_core::Room;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::cmd::RoomCmd;
use super::env::{Env, RoomStore};
use super::state::{deliver, finish_closing, ConnMap, InFlight, RoomState};
use crate::chan;
use crate::clock::{now_ms, Stamp};
use crate::conn::{incoming, keep_deadlines, Incoming, Outbound};
use crate::metrics::{dec, inc};

const ROOM_QUEUE: usize = 1024;
/// How soon a room whose checkpoint found another room's running tries again.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(20);

/// What [`RoomState::checkpoint_if_due`] did.
enum Checkpointed {
    /// Wrote one: a flush is owed.
    Wrote,
    /// Due, but another room's is running.
    Busy,
    No,
}

/// Starts a room's actor on `room`; returns its queue and its task.
pub(crate) fn spawn<S: RoomStore>(env: Arc<Env<S>>, room: Room<S>) -> (chan::Sender<RoomCmd>, JoinHandle<()>) {
    let (tx, rx) = chan::channel(ROOM_QUEUE);
    inc(&env.metrics.rooms_loaded, 1);
    inc(&env.metrics.docs_loaded, 1);
    let id = room.id();
    let span = tracing::info_span!("room", room = %&id.to_hex()[..12]);
    span.in_scope(|| info!("room loaded ({} log entries)", arena_core::Store::log_len(room.store())));
    // Boxed: the actor's task then holds a pointer to it, and an evicted room's document
    // slot is 8 bytes.
    let state = Box::new(RoomState {
        env,
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
    let handle = tokio::spawn(Actor { state: Some(state), rx });
    (tx, handle)
}

/// A room's actor as a hand-written future: an idle room's task is these few words (the
/// `async` loop it replaces kept ~420 bytes of `select!` branches, a timer and the flush's
/// state side by side). The timer is allocated only while a deadline is armed (an idle room
/// whose document is evicted and that has a client needs none), the flush only while one is
/// in flight. Its state lives in the boxed [`RoomState`]; the future itself is two pointers.
///
/// Pipelined: commands are taken and applied while a flush is in flight, and what stock
/// clients get goes out as soon as it is signed; only what waits for durability (signed
/// envelopes, info answers) waits for the flush. A sled flush that stalls (tens of
/// milliseconds on a busy disk) then delays the room's history, not its editors.
struct Actor<S: RoomStore> {
    /// None once the room has stopped.
    state: Option<Box<RoomState<S>>>,
    rx: chan::Receiver<RoomCmd>,
}

impl<S: RoomStore> Future for Actor<S> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(state) = this.state.as_mut() else {
            return Poll::Ready(());
        };
        // The room's span is entered for the poll, as `tracing::Instrument` would (taken out
        // of the state meanwhile: the guard borrows it).
        let span = std::mem::replace(&mut state.span, tracing::Span::none());
        let entered = span.enter();
        let done = state.step(&mut this.rx, cx).is_ready();
        if done {
            state.stop(&mut this.rx);
        }
        drop(entered);
        if done {
            this.state = None;
            return Poll::Ready(());
        }
        state.span = span;
        Poll::Pending
    }
}

impl<S: RoomStore> RoomState<S> {
    /// The actor's loop: runs until the room stops (`Ready`).
    fn step(&mut self, rx: &mut chan::Receiver<RoomCmd>, cx: &mut Context<'_>) -> Poll<()> {
        let t = &self.env.tunables;
        let (idle, evict, spacing, relay) = (t.idle, t.evict, t.proxy_batch, t.relay_batch);
        loop {
            if self.env.shutdown.is_cancelled() {
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
                Poll::Ready(None) | Poll::Ready(Some(RoomCmd::Shutdown)) => return Poll::Ready(()),
                Poll::Ready(Some(cmd)) => {
                    let first = Stamp::now();
                    let mut stores = self.handle(cmd);
                    let mut taken = 1;
                    while taken < 256 {
                        match rx.try_recv() {
                            Ok(RoomCmd::Shutdown) => return Poll::Ready(()),
                            Ok(c) => stores |= self.handle(c),
                            Err(_) => break,
                        }
                        taken += 1;
                    }
                    self.taken(first, taken, stores);
                    yield_after = true;
                }
                Poll::Pending => {}
            }
            // The inline connection's frames, as commands (at most a batch's worth per pass).
            let (taken, stores, moved) = self.poll_inline(cx, 256);
            if taken > 0 {
                self.taken(Stamp::now(), u32::try_from(taken).unwrap_or(u32::MAX), stores);
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
                self.taken(now.into(), 0, true);
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
                Checkpointed::Wrote => self.taken(Stamp::now(), 0, true),
                Checkpointed::Busy => self.checkpoint_retry = Some((now + CHECKPOINT_RETRY).into()),
                Checkpointed::No => {}
            }
            // One flush at a time; what was written meanwhile gets the next.
            if self.flushing.is_none() {
                if let Some((started, n, false)) = self.unflushed {
                    // Only presence since the last flush: nothing of it is stored, so
                    // nothing waits for a flush (an idle stock client's awareness renewal,
                    // every 15 s, would otherwise cost an fsync request and a trip through
                    // the blocking pool).
                    self.unflushed = None;
                    self.presence_only(started, n);
                } else if let Some((started, n, _)) = self.unflushed.take() {
                    let flusher = self.env.flusher.clone();
                    let (frames, waiting) = match self.queued.as_mut() {
                        Some(q) => (std::mem::take(&mut q.durable), std::mem::take(&mut q.info_waiting)),
                        None => Default::default(),
                    };
                    let info = (!waiting.is_empty()).then(|| (self.info(), waiting));
                    self.flushing = Some(Box::new(InFlight {
                        flush: Box::pin(async move { flusher.flush().await }),
                        started: started.instant(),
                        n: u64::from(n),
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

impl<S: RoomStore> RoomState<S> {
    /// After a batch is durable: send what waited for it, answer info requests, count.
    /// Notes `n` commands or frames taken at `first` (the first of them) for the next flush;
    /// `stores`: whether any of them may have changed what the room stores.
    fn taken(&mut self, first: Stamp, n: u32, stores: bool) {
        let (_, taken, any) = self.unflushed.get_or_insert((first, 0, false));
        *taken = taken.saturating_add(n);
        *any |= stores;
    }

    /// Commands that were all presence, counted as handled with no flush.
    fn presence_only(&mut self, started: Stamp, n: u32) {
        let m = &self.env.metrics;
        inc(&m.apply_us_sum, started.instant().elapsed().as_micros() as u64);
        inc(&m.apply_count, u64::from(n));
    }

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
        let m = &self.env.metrics;
        inc(&m.apply_us_sum, started.elapsed().as_micros() as u64);
        inc(&m.apply_count, n);
    }

    /// The room stops: flush, tell the connections, leave the node's map.
    fn stop(&mut self, rx: &mut chan::Receiver<RoomCmd>) {
        rx.close();
        // Stock clients' updates of a batch cut short are still signed and stored.
        self.commit_proxied(now_ms());
        if let Some(mut r) = self.room.take() {
            let _ = r.flush();
            dec(&self.env.metrics.docs_loaded);
        }
        let shutting_down = self.env.shutdown.is_cancelled();
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
            dec(&self.env.metrics.connections_inline);
            finish_closing(&self.env.metrics, i.socket);
        }
        // Connections that were joining hold their sockets in the queue: they are told too
        // (the queue is closed, so no more come; a later sender gets its socket back).
        while let Ok(cmd) = rx.try_recv() {
            if let RoomCmd::Attach(a) = cmd {
                let mut socket = a.socket;
                socket.start_close(code, reason);
                finish_closing(&self.env.metrics, socket);
            }
        }
        dec(&self.env.metrics.rooms_loaded);
        crate::reclaim::released();
        self.env.rooms.forget(&self.id);
        info!("room unloaded");
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
        let gate = &self.env.checkpointing;
        if gate.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Checkpointed::Busy;
        }
        // Released however this ends (a panic in the checkpoint would otherwise stop every
        // room's checkpoints for good).
        struct Release<S: RoomStore>(Arc<Env<S>>);
        impl<S: RoomStore> Drop for Release<S> {
            fn drop(&mut self) {
                self.0.checkpointing.store(false, Ordering::Release);
            }
        }
        let _release = Release(self.env.clone());
        // What the room gathered to relay goes out first.
        if self.has_out() {
            self.dispatch();
        }
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let started = Instant::now();
        let res = match self.room.as_mut() {
            Some(room) if multi => {
                tokio::task::block_in_place(|| crate::reclaim::documents(|| room.checkpoint_if_due(now)))
            }
            Some(room) => crate::reclaim::documents(|| room.checkpoint_if_due(now)),
            None => Ok(None),
        };
        match res {
            Ok(Some(_)) => {
                let m = &self.env.metrics;
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

    /// Serves the inline connection: writes what is queued for it, then reads and handles
    /// up to `budget` of its frames. Returns how many frames it handled, whether any of them
    /// may have changed what the room stores (see [`RoomState::frame`]), and whether anything
    /// happened (progress: the caller loops); reading stops while a write is pending.
    fn poll_inline(&mut self, cx: &mut Context<'_>, budget: u64) -> (u64, bool, bool) {
        let mut taken = 0;
        let mut stores = false;
        let mut progress = false;
        while taken < budget {
            match self.flush_inline(cx) {
                Poll::Pending => break,
                Poll::Ready(true) => return (taken, stores, true),
                Poll::Ready(false) => {}
            }
            let Some(i) = self.inline.as_mut() else { break };
            let msg = match i.socket.poll_recv(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.end_inline();
                    return (taken, stores, true);
                }
                Poll::Ready(Some(m)) => m,
            };
            progress = true;
            match incoming(&mut i.socket, &mut i.limiter, &self.env.metrics, msg) {
                Incoming::Frame(bytes) => {
                    let conn = i.conn;
                    stores |= self.frame(conn, &bytes);
                    taken += 1;
                }
                Incoming::Close(code, reason) => i.close(code, &reason),
                Incoming::Answered => {}
            }
        }
        // Its deadlines once it has read what there was (which may have begun a message),
        // also while a write is pending; a ping goes out with the pass's other writes.
        if let Some(i) = self.inline.as_mut() {
            if keep_deadlines(&mut i.socket, &self.env.metrics, &self.env.deadlines, cx).is_none() {
                self.end_inline();
                return (taken, stores, true);
            }
        }
        (taken, stores, progress)
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
        dec(&self.env.metrics.connections_active);
        dec(&self.env.metrics.connections_inline);
        debug!(conn = i.conn, "detached");
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
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    use arena_core::sync::wire::{chunk, Wire, GOSSIP_CHUNK};
    use arena_core::sync::ywire::{arena_frame, update_frame};
    use arena_core::{
        Admission, Identity, Invite, MemoryStore, Role, RoomConfig, RoomId, SledDb, SledStore, FLAG_PROXY,
    };
    use tokio::sync::oneshot;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::conn::FrameBytes;
    use crate::limit::{ConnCaps, RateLimiter};
    use crate::metrics::Metrics;
    use crate::room::{room_config, Attach, Opener, Rooms, Tunables};
    use crate::ws::{Deadlines, WebSocket};

    /// An environment for room actors, as the registry makes it, with no network: `flush`
    /// for the group commit, `open` to reopen an evicted room.
    fn env<S: RoomStore>(
        flush: impl Fn() -> Result<(), String> + Clone + Send + 'static,
        open: Opener<S>,
    ) -> Arc<Env<S>> {
        let cfg = crate::Config::for_tests("unused");
        let metrics = Arc::new(Metrics::default());
        Arc::new(Env {
            tunables: Tunables::from_config(&cfg),
            flusher: crate::flush::spawn(flush, metrics.clone(), Duration::from_millis(cfg.commit_interval_ms)),
            metrics,
            network: OnceLock::new(),
            shutdown: CancellationToken::new(),
            live: Arc::default(),
            rooms: Rooms::default(),
            deadlines: Deadlines::new(cfg.ws_ping_ms, cfg.ws_idle_timeout_ms, cfg.ws_read_timeout_ms),
            checkpointing: AtomicBool::new(false),
            open,
        })
    }

    /// An environment on a sled database in `dir`, as the registry's: returns it, the
    /// database and the node's identity.
    fn sled_env(dir: &std::path::Path) -> (Arc<Env<SledStore>>, SledDb, Identity) {
        let db = SledDb::open(dir).unwrap();
        let node = Identity::from_seed([2; 32]);
        let open: Opener<SledStore> = {
            let (db, node) = (db.clone(), node.clone());
            Box::new(move |id| Ok(Room::open(*id, node.clone(), 0, db.room(id)?, room_config(), now_ms())?))
        };
        let flushed = db.clone();
        (env(move || flushed.flush().map_err(|e| e.to_string()), open), db, node)
    }

    /// A room as the registry creates it: a fresh room key (returned), the node admitted as
    /// proxy host.
    fn created_room<S: RoomStore>(
        node: &Identity,
        store: impl FnOnce(&RoomId) -> S,
        cfg: RoomConfig,
    ) -> (Identity, Room<S>) {
        let room_key = Identity::from_seed([1; 32]);
        let id = room_key.public();
        let now = now_ms();
        let mut room = Room::open(id, node.clone(), 0, store(&id), cfg, now).unwrap();
        let invite = Invite::bound(&room_key, node.clone(), Role::Host, u64::MAX / 2, FLAG_PROXY, now);
        room.admit(&Admission::sign(node, &invite, "bootstrap node", now), None).unwrap();
        (room_key, room)
    }

    fn slot() -> crate::limit::Slot {
        Arc::new(ConnCaps::new(64, 32, 20_000)).acquire(std::net::Ipv4Addr::LOCALHOST.into()).unwrap()
    }

    #[test]
    fn an_idle_rooms_task_and_state_fit_small_allocations() {
        // tokio's task cell (128-byte aligned on x86-64) is 128 bytes when the future is at
        // most 24 (header 32, scheduler and id 16, the stage's tag 8, trailer 48), 256 when
        // it is more; the state's box is in the allocator's 256-byte class.
        let (actor, state) = (std::mem::size_of::<Actor<SledStore>>(), std::mem::size_of::<RoomState<SledStore>>());
        assert!(actor <= 24, "Actor is {actor} bytes");
        assert!(state <= 256, "RoomState is {state} bytes");
        // The inline connection's box, in the allocator's 192-byte class (its deadlines
        // live in what was padding of its WebSocket: see `ws::deadline`).
        let inline = std::mem::size_of::<crate::room::state::Inline>();
        assert!(inline <= 192, "Inline is {inline} bytes");
    }

    /// A room whose checkpoint came due while another room's was running tries again by
    /// itself: with no command after that (a room gone quiet) nothing else would wake it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_that_found_the_gate_taken_is_made_once_it_is_free_with_no_more_traffic() {
        let dir = tempfile::tempdir().unwrap();
        let (env, db, node) = sled_env(dir.path());
        // The room as the node opens it, checkpointing every 3 entries, with 4 new ones:
        // due at the actor's first pass.
        let cfg = RoomConfig { checkpoint_every: 3, ..room_config() };
        let (_, mut room) = created_room(&node, |id| db.room(id).unwrap(), cfg);
        for i in 0..4 {
            room.edit(now_ms(), |e| e.splice_code(i, 0, "x")).unwrap();
        }
        assert!(room.checkpoint_due(now_ms()), "the test's premise: a checkpoint is due");
        let checkpoints = || env.metrics.checkpoints.load(Ordering::Relaxed);

        // Another room's checkpoint is running.
        env.checkpointing.store(true, Ordering::Release);
        let (tx, handle) = spawn(env.clone(), room);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(checkpoints(), 0, "made while the gate was taken");

        // It is done; nothing is sent to the room.
        env.checkpointing.store(false, Ordering::Release);
        let until = Instant::now() + Duration::from_secs(10);
        while checkpoints() == 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(checkpoints(), 1, "the room did not try again once the gate was free");
        assert!(!env.checkpointing.load(Ordering::Acquire), "the gate was given back");

        tx.send(RoomCmd::Shutdown).await.unwrap();
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
        let (env, db, node) = sled_env(dir.path());
        let (room_key, room) = created_room(&node, |id| db.room(id).unwrap(), room_config());
        let (tx, handle) = spawn(env.clone(), room);
        let (mut client, socket) = upgraded_pair().await;
        // As `yws::serve` counts it before it asks to join.
        let active = || env.metrics.connections_active.load(Ordering::Relaxed);
        inc(&env.metrics.connections_active, 1);
        assert_eq!(active(), 1);
        tx.try_send(RoomCmd::Shutdown).unwrap();
        let grant = Invite::issue(&room_key, Role::Candidate, now_ms() / 1000 + 3600, 0, 1).grant;
        let attach = Attach {
            conn: 1,
            role: Role::Candidate,
            token: None,
            delegation: None,
            socket,
            limiter: RateLimiter::new(100),
            queue: tx.clone(),
            span: tracing::Span::none(),
            expiry: grant.expiry,
            grant: crate::live::grant_id(&grant),
            invite: grant.invite,
            slot: slot(),
        };
        tx.try_send(RoomCmd::Attach(Box::new(attach))).unwrap();
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

    /// A room actor on a `MemoryStore`, with no socket and no network: a member's signed
    /// edit (its admission, then the envelope, in our protocol's frames) is checked, applied,
    /// committed to the room's log and relayed to the room's other connections: at once as a
    /// plain update to a stock client, signed and after the group commit to a client of our
    /// protocol.
    #[tokio::test]
    async fn a_room_on_a_memory_store_commits_a_members_signed_edit_and_relays_it() {
        let no_reopen: Opener<MemoryStore> = Box::new(|id| Err(crate::BootstrapError::UnknownRoom(id.to_hex())));
        let env = env(|| Ok(()), no_reopen);
        let node = Identity::from_seed([2; 32]);
        let (room_key, room) = created_room(&node, |_| MemoryStore::new(), room_config());
        let id = room.id();
        let (tx, handle) = spawn(env.clone(), room);

        // The candidate, and its own replica, where it types.
        let now = now_ms();
        let member = Identity::from_seed([3; 32]);
        let invite = Invite::issue(&room_key, Role::Candidate, now / 1000 + 3600, 0, 1);
        let admission = Admission::sign(&member, &invite, "candidate", now);
        let mut mine = Room::open(id, member.clone(), 0, MemoryStore::new(), RoomConfig::default(), now).unwrap();
        mine.admit(&admission, None).unwrap();
        let envelope = mine.edit(now, |e| e.splice_code(0, 0, "x")).unwrap().expect("an envelope for the edit");

        // Two connections without sockets: the candidate's, and a stock client's.
        let (member_tx, _member_rx) = chan::channel_weighed::<Outbound, FrameBytes>(16);
        let (stock_tx, mut stock_rx) = chan::channel_weighed::<Outbound, FrameBytes>(16);
        tx.send(RoomCmd::Subscribe { conn: 1, role: Role::Candidate, tx: member_tx, slot: slot() }).await.unwrap();
        tx.send(RoomCmd::Subscribe { conn: 2, role: Role::Candidate, tx: stock_tx, slot: slot() }).await.unwrap();
        // And an observer that speaks our protocol (its first message, a catch-up request,
        // says so): it gets signed envelopes, once durable.
        let (signed_tx, mut signed_rx) = chan::channel_weighed::<Outbound, FrameBytes>(64);
        tx.send(RoomCmd::Subscribe { conn: 3, role: Role::Observer, tx: signed_tx, slot: slot() }).await.unwrap();
        for c in chunk(&[Wire::Want(Default::default())], GOSSIP_CHUNK) {
            tx.send(RoomCmd::Frame { conn: 3, bytes: arena_frame(&c) }).await.unwrap();
        }
        let msgs = [Wire::Admissions(vec![admission]), Wire::Envelopes(vec![envelope.clone()])];
        for c in chunk(&msgs, GOSSIP_CHUNK) {
            tx.send(RoomCmd::Frame { conn: 1, bytes: arena_frame(&c) }).await.unwrap();
        }

        // The stock client gets the edit as a plain y-protocols update.
        let got = tokio::time::timeout(Duration::from_secs(10), stock_rx.recv()).await.unwrap();
        let want = update_frame(&envelope.update);
        assert!(matches!(&got, Some(Outbound::Binary(b)) if b[..] == want[..]), "the stock client got {got:?}");
        // Committed: the room's log holds the member's envelope, and the room's state (as
        // reported after the flush) has the text.
        let (reply, vector) = oneshot::channel();
        tx.send(RoomCmd::Vector { reply }).await.unwrap();
        assert_eq!(vector.await.unwrap().get(&member.public()), Some(&1));
        let (reply, info) = oneshot::channel();
        tx.send(RoomCmd::Info { reply }).await.unwrap();
        let info = info.await.unwrap();
        assert_eq!(info["codeLength"], 1, "{info}");
        assert_eq!(env.metrics.envelopes_in.load(Ordering::Relaxed), 1);
        assert!(env.metrics.store_commits.load(Ordering::Relaxed) >= 1, "no group commit");
        // The observer of our protocol gets the member's envelope as it was signed.
        let signed: Vec<Vec<u8>> =
            chunk(&[Wire::Envelopes(vec![envelope])], GOSSIP_CHUNK).iter().map(|c| arena_frame(c)).collect();
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(o) = signed_rx.recv().await {
                if matches!(&o, Outbound::Binary(b) if signed.iter().any(|f| f[..] == b[..])) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "the signed envelope did not reach the observer");

        tx.send(RoomCmd::Shutdown).await.unwrap();
        handle.await.unwrap();
    }

    /// An idle stock client's presence renewals (awareness, every 15 s) are served and echoed
    /// but ask for no flush: nothing of them is stored. A command that may store (here an
    /// info request, which waits for durability) still gets one. Before, each renewal cost
    /// a group-commit request and a trip through the blocking pool, and 2,000 idle rooms'
    /// renewals kept the node's RSS growing (`benches/results/2026-12-07-stock-idle-2.md`).
    #[tokio::test]
    async fn presence_alone_asks_for_no_flush_and_a_command_that_may_store_does() {
        use std::sync::atomic::AtomicUsize;
        use yrs::updates::encoder::Encode;
        let no_reopen: Opener<MemoryStore> = Box::new(|id| Err(crate::BootstrapError::UnknownRoom(id.to_hex())));
        let flushes = Arc::new(AtomicUsize::new(0));
        let counted = flushes.clone();
        let env = env(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
            no_reopen,
        );
        let node = Identity::from_seed([2; 32]);
        let (_, room) = created_room(&node, |_| MemoryStore::new(), room_config());
        let (tx, handle) = spawn(env.clone(), room);
        let (stock_tx, mut stock_rx) = chan::channel_weighed::<Outbound, FrameBytes>(64);
        tx.send(RoomCmd::Subscribe { conn: 2, role: Role::Candidate, tx: stock_tx, slot: slot() }).await.unwrap();
        let info = || async {
            let (reply, info) = oneshot::channel();
            tx.send(RoomCmd::Info { reply }).await.unwrap();
            info.await.unwrap()
        };
        info().await;
        let before = flushes.load(Ordering::SeqCst);

        // Five renewals of the client's presence, each echoed to it (as y-websocket's server does).
        let mut presence = PresenceMap::new(77);
        for i in 0..5 {
            let update = presence.set_local(&format!(r#"{{"user":{{"name":"c{i}"}}}}"#), now_ms()).encode_v1();
            let frame = arena_core::sync::ywire::awareness_frame(&update).unwrap();
            tx.send(RoomCmd::Frame { conn: 2, bytes: frame.clone() }).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(o) = stock_rx.recv().await {
                    if matches!(&o, Outbound::Binary(b) if b[..] == frame[..]) {
                        return true;
                    }
                }
                false
            })
            .await;
            assert_eq!(echoed, Ok(true), "renewal {i} was not echoed");
        }
        // The info request is answered after one flush of its own: none is left over from
        // the renewals for it to wait behind.
        info().await;
        assert_eq!(flushes.load(Ordering::SeqCst), before + 1, "presence asked for flushes");
        assert!(env.metrics.apply_count.load(Ordering::Relaxed) >= 5, "the renewals are not counted as handled");

        tx.send(RoomCmd::Shutdown).await.unwrap();
        handle.await.unwrap();
    }

    /// Presence a hostile node sends over libp2p is bounded as a connection's is: an update
    /// for more clients than a room holds is dropped whole; with the room's map full, a new
    /// client's state is neither kept nor passed on, while a renewal of a known one is.
    #[tokio::test]
    async fn a_nodes_presence_is_bounded_and_only_what_it_changed_is_passed_on() {
        use arena_core::sync::presence::MAX_PRESENCE_STATES;
        use yrs::sync::awareness::AwarenessUpdateEntry;
        use yrs::sync::{AwarenessUpdate, Message};
        use yrs::updates::encoder::Encode;
        let update = |ids: std::ops::Range<u64>, clock: u32| {
            let clients =
                ids.map(|id| (yrs::ClientID::new(id), AwarenessUpdateEntry { clock, json: "{}".into() })).collect();
            AwarenessUpdate { clients }.encode_v1()
        };
        let no_reopen: Opener<MemoryStore> = Box::new(|id| Err(crate::BootstrapError::UnknownRoom(id.to_hex())));
        let env = env(|| Ok(()), no_reopen);
        let node = Identity::from_seed([2; 32]);
        let (_, room) = created_room(&node, |_| MemoryStore::new(), room_config());
        let (tx, handle) = spawn(env.clone(), room);
        let (stock_tx, mut stock_rx) = chan::channel_weighed::<Outbound, FrameBytes>(1024);
        tx.send(RoomCmd::Subscribe { conn: 2, role: Role::Candidate, tx: stock_tx, slot: slot() }).await.unwrap();
        let max = MAX_PRESENCE_STATES as u64;
        // What the client is sent up to the answer of an info request (a barrier): the
        // awareness client ids it hears of.
        let heard = |stock_rx: &mut chan::Receiver<Outbound, FrameBytes>| {
            let mut ids = Vec::new();
            while let Ok(o) = stock_rx.try_recv() {
                let Outbound::Binary(b) = o else { continue };
                for m in arena_core::sync::ywire::decode_frame(&b).unwrap() {
                    if let Message::Awareness(u) = m {
                        ids.extend(u.clients.keys().map(|k| k.get()));
                    }
                }
            }
            ids.sort_unstable();
            ids
        };
        let barrier = || async {
            let (reply, info) = oneshot::channel();
            tx.send(RoomCmd::Info { reply }).await.unwrap();
            info.await.unwrap();
        };
        barrier().await;
        heard(&mut stock_rx);

        tx.send(RoomCmd::RemotePresence { update: update(1000..1000 + max + 1, 1) }).await.unwrap();
        barrier().await;
        assert!(heard(&mut stock_rx).is_empty(), "an oversized update was passed on");

        tx.send(RoomCmd::RemotePresence { update: update(1000..1000 + max, 1) }).await.unwrap();
        barrier().await;
        assert_eq!(heard(&mut stock_rx).len(), MAX_PRESENCE_STATES);

        // Full: a renewal of 1000 and a newcomer 5000 in one update; only 1000 goes on.
        let mut mixed = update(1000..1001, 2);
        mixed = {
            let mut u = <AwarenessUpdate as yrs::updates::decoder::Decode>::decode_v1(&mixed).unwrap();
            u.clients.insert(yrs::ClientID::new(5000), AwarenessUpdateEntry { clock: 1, json: "{}".into() });
            u.encode_v1()
        };
        tx.send(RoomCmd::RemotePresence { update: mixed }).await.unwrap();
        barrier().await;
        assert_eq!(heard(&mut stock_rx), vec![1000]);

        tx.send(RoomCmd::Shutdown).await.unwrap();
        handle.await.unwrap();
    }

    /// A run's records, written by the node: the live ones go to a stock client as they are
    /// written, the final one replaces them and a version follows; a room the node does not
    /// sign for refuses them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_node_writes_a_runs_records_and_its_version_and_only_where_it_signs() {
        use arena_core::records::{RunRecord, RunStatus};
        let no_reopen =
            || -> Opener<MemoryStore> { Box::new(|id| Err(crate::BootstrapError::UnknownRoom(id.to_hex()))) };
        let proxying = env(|| Ok(()), no_reopen());
        let node = Identity::from_seed([2; 32]);
        let (_room_key, room) = created_room(&node, |_| MemoryStore::new(), room_config());
        let (tx, handle) = spawn(proxying.clone(), room);
        let (stock_tx, mut stock_rx) = chan::channel_weighed::<Outbound, FrameBytes>(64);
        tx.send(RoomCmd::Subscribe { conn: 1, role: Role::Candidate, tx: stock_tx, slot: slot() }).await.unwrap();
        let record = |status, out: &str| RunRecord {
            id: "run-1".into(),
            by: "k".into(),
            language: "python".into(),
            status,
            stdout: out.into(),
            stderr: String::new(),
            exit_code: (status == RunStatus::Finished).then_some(0),
            cpu_ms: 0,
            wall_ms: 0,
            at: 1,
        };
        let write = |record: RunRecord, replace: bool, version: Option<String>| {
            let tx = tx.clone();
            async move {
                let (reply, rx) = oneshot::channel();
                tx.send(RoomCmd::Run(Box::new(super::super::RunWrite { record, replace, version, reply })))
                    .await
                    .unwrap();
                rx.await.unwrap()
            }
        };
        assert_eq!(write(record(RunStatus::Running, "a"), false, None).await, Ok(None));
        let got = tokio::time::timeout(Duration::from_secs(10), stock_rx.recv()).await.unwrap();
        assert!(matches!(got, Some(Outbound::Binary(_))), "the stock client got {got:?}");
        assert_eq!(write(record(RunStatus::Running, "b"), false, None).await, Ok(None));
        let version = write(record(RunStatus::Finished, "ab"), true, Some("run run-1".into())).await.unwrap();
        let (reply, info) = oneshot::channel();
        tx.send(RoomCmd::Info { reply }).await.unwrap();
        let info = info.await.unwrap();
        assert_eq!(info["runs"], 1, "{info}");
        assert_eq!(info["versions"][0]["id"].as_str(), version.as_deref(), "{info}");
        assert_eq!(info["versions"][0]["cause"], "run", "{info}");
        tx.send(RoomCmd::Shutdown).await.unwrap();
        handle.await.unwrap();

        // The node admitted without the proxy flag: it does not sign for the room.
        let room_key = Identity::from_seed([5; 32]);
        let now = now_ms();
        let mut room = Room::open(room_key.public(), node.clone(), 0, MemoryStore::new(), room_config(), now).unwrap();
        let invite = Invite::bound(&room_key, node.clone(), Role::Host, u64::MAX / 2, 0, now);
        room.admit(&Admission::sign(&node, &invite, "a host", now), None).unwrap();
        let (tx, handle) = spawn(env(|| Ok(()), no_reopen()), room);
        let (reply, rx) = oneshot::channel();
        let w =
            super::super::RunWrite { record: record(RunStatus::Running, "a"), replace: false, version: None, reply };
        tx.send(RoomCmd::Run(Box::new(w))).await.unwrap();
        assert!(rx.await.unwrap().is_err_and(|e| e.contains("does not sign")));
        tx.send(RoomCmd::Shutdown).await.unwrap();
        handle.await.unwrap();
    }
}

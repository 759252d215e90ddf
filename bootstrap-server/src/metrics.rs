//! Counters served at `/metrics` in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes live on the heap, kept by [`Counting`] when the binary is built with the
/// `heap-stats` feature (0 otherwise).
pub static HEAP_LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// A global allocator that counts the bytes live in [`HEAP_LIVE_BYTES`] (the `heap-stats`
/// feature installs it around mimalloc in `arena-bootstrap`).
#[derive(Debug)]
pub struct Counting<A>(pub A);

// SAFETY: every call is passed to the inner allocator unchanged; only a counter is updated.
// (`allow`: a GlobalAlloc impl is unsafe by definition.)
#[allow(unsafe_code)]
unsafe impl<A: std::alloc::GlobalAlloc> std::alloc::GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            HEAP_LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP_LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP_LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_LIVE_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
            HEAP_LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

/// The node's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_active: AtomicU64,
    pub(crate) connections_inline: AtomicU64,
    pub(crate) rooms_loaded: AtomicU64,
    pub(crate) docs_loaded: AtomicU64,
    pub(crate) docs_reloaded: AtomicU64,
    pub(crate) libp2p_rooms: AtomicU64,
    pub(crate) envelopes_in: AtomicU64,
    pub(crate) envelopes_out: AtomicU64,
    pub(crate) envelopes_rejected: AtomicU64,
    pub(crate) envelopes_held_back: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) frames_dropped_slow: AtomicU64,
    pub(crate) frames_rejected: AtomicU64,
    pub(crate) apply_us_sum: AtomicU64,
    pub(crate) apply_count: AtomicU64,
    pub(crate) signal_messages: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) bridge_dropped: AtomicU64,
    pub(crate) store_flushes: AtomicU64,
    pub(crate) store_flush_us: AtomicU64,
    pub(crate) store_commits: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) checkpoint_us: AtomicU64,
    pub(crate) observer_writes_refused: AtomicU64,
    pub(crate) signal_refused: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) connections_expired: AtomicU64,
    pub(crate) connections_timed_out: AtomicU64,
    pub(crate) ws_pings: AtomicU64,
    pub(crate) api_refused: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

impl Metrics {
    /// Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut put = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                s,
                "# HELP arena_{name} {help}\n# TYPE arena_{name} {kind}\narena_{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        put("connections_total", "counter", "WebSocket connections accepted.", &self.connections_total);
        put("connections_active", "gauge", "WebSocket connections open now.", &self.connections_active);
        put(
            "connections_inline",
            "gauge",
            "y-websocket connections served by their room's own task (one per room at most).",
            &self.connections_inline,
        );
        put("rooms_loaded", "gauge", "Rooms with an actor (connections or recent use).", &self.rooms_loaded);
        put("documents_loaded", "gauge", "Room documents held in memory (idle ones are evicted).", &self.docs_loaded);
        put("documents_reloaded_total", "counter", "Evicted room documents reopened from sled.", &self.docs_reloaded);
        put("libp2p_rooms", "gauge", "Rooms the libp2p side has joined.", &self.libp2p_rooms);
        put("envelopes_in_total", "counter", "Envelopes applied from clients and peers.", &self.envelopes_in);
        put("envelopes_out_total", "counter", "Envelopes and updates sent to connections.", &self.envelopes_out);
        put("envelopes_rejected_total", "counter", "Envelopes or updates refused.", &self.envelopes_rejected);
        put(
            "envelopes_held_back_total",
            "counter",
            "Envelopes held back until what they build on arrives (a room keeps at most RoomConfig::max_pending, 4096).",
            &self.envelopes_held_back,
        );
        put("bytes_in_total", "counter", "WebSocket payload bytes received.", &self.bytes_in);
        put("bytes_out_total", "counter", "WebSocket payload bytes sent.", &self.bytes_out);
        put(
            "frames_dropped_slow_total",
            "counter",
            "Connections dropped for being too slow (they resync).",
            &self.frames_dropped_slow,
        );
        put(
            "frames_rejected_total",
            "counter",
            "Malformed frames (their connection was closed).",
            &self.frames_rejected,
        );
        put(
            "apply_seconds_sum_us",
            "counter",
            "Microseconds spent handling frames in room actors.",
            &self.apply_us_sum,
        );
        put("apply_count", "counter", "Frames handled by room actors.", &self.apply_count);
        put(
            "store_flushes_total",
            "counter",
            "sled flushes (write out and fsync) run by the group commit.",
            &self.store_flushes,
        );
        put("store_flush_us_total", "counter", "Microseconds spent in those flushes.", &self.store_flush_us);
        put(
            "checkpoints_total",
            "counter",
            "Periodic checkpoints made by room actors (whole state encoded, signed, stored).",
            &self.checkpoints,
        );
        put("checkpoint_us_total", "counter", "Microseconds spent making them.", &self.checkpoint_us);
        put(
            "store_commits_total",
            "counter",
            "Room batches made durable (several rooms' batches share one flush).",
            &self.store_commits,
        );
        put("rate_limited_total", "counter", "Connections closed for exceeding the message rate.", &self.rate_limited);
        put(
            "bridge_dropped_total",
            "counter",
            "Envelope batches not handed to libp2p at once (queue full; anti-entropy catches up).",
            &self.bridge_dropped,
        );
        put("signal_messages_total", "counter", "Signaling messages handled.", &self.signal_messages);
        put(
            "observer_writes_refused_total",
            "counter",
            "Writes from observers dropped: envelope-protocol writes and updates on /yws, publishes on /signal.",
            &self.observer_writes_refused,
        );
        put(
            "signal_refused_total",
            "counter",
            "Signaling publishes refused: a `from` bound to another connection, or changed mid-connection.",
            &self.signal_refused,
        );
        put(
            "connections_refused_total",
            "counter",
            "/yws and /signal connections refused at a cap: per IP, per invite link or the node's.",
            &self.connections_refused,
        );
        put(
            "connections_expired_total",
            "counter",
            "/yws and /signal connections closed because their invite expired (or was revoked).",
            &self.connections_expired,
        );
        put(
            "connections_timed_out_total",
            "counter",
            "/yws and /signal connections dropped at a deadline: a message not whole in time, or nothing (not even a pong) for the idle timeout.",
            &self.connections_timed_out,
        );
        put("ws_pings_total", "counter", "WebSocket pings sent to quiet /yws and /signal clients.", &self.ws_pings);
        put(
            "api_refused_total",
            "counter",
            "POST /api/rooms requests refused (no or wrong operator token, not JSON, over the rate).",
            &self.api_refused,
        );
        if cfg!(feature = "heap-stats") {
            put("heap_live_bytes", "gauge", "Bytes live on the heap (built with heap-stats).", &HEAP_LIVE_BYTES);
            #[cfg(all(feature = "heap-stats", feature = "mimalloc"))]
            s.push_str(&crate::reclaim::heap_report());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};

    #[test]
    #[allow(unsafe_code)] // calling the allocator directly
    fn counting_tracks_alloc_realloc_and_free() -> Result<(), std::alloc::LayoutError> {
        let a = Counting(System);
        let before = HEAP_LIVE_BYTES.load(Ordering::Relaxed);
        let layout = Layout::from_size_align(1000, 8)?;
        // SAFETY: a non-zero layout; the pointer goes back with the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(HEAP_LIVE_BYTES.load(Ordering::Relaxed), before + 1000);
            let q = a.realloc(p, layout, 3000);
            assert!(!q.is_null());
            assert_eq!(HEAP_LIVE_BYTES.load(Ordering::Relaxed), before + 3000);
            a.dealloc(q, Layout::from_size_align(3000, 8)?);
            let z = a.alloc_zeroed(layout);
            assert!(!z.is_null() && *z == 0);
            assert_eq!(HEAP_LIVE_BYTES.load(Ordering::Relaxed), before + 1000);
            a.dealloc(z, layout);
        }
        assert_eq!(HEAP_LIVE_BYTES.load(Ordering::Relaxed), before);
        Ok(())
    }
}

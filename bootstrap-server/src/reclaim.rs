//! Giving memory back to the OS once rooms go idle.
//!
//! When a room's document is evicted (or the room unloaded), what it freed does not leave
//! the process's RSS by itself, for two reasons measured with stock clients
//! (`benches/js/stock-idle.mjs`, `docs/decisions/004-idle-memory-stock-clients.md`):
//! - sled retires its 512 KiB write buffers (and old pages) through crossbeam-epoch: each is
//!   dropped only once the thread that retired it flushes its garbage bag or fills it (64
//!   items), and an idle node's threads do neither: ~15–30 MB stayed after a burst of typing;
//! - mimalloc frees a block that another thread freed (a document is built on whichever
//!   runtime threads ran its actor) only when the page's own thread next allocates from that
//!   page, and an idle node's threads hardly allocate.
//!
//! So every runtime thread, as it goes idle ([`on_park`], installed by the binary with
//! tokio's `on_thread_park`), checks whether rooms were evicted or unloaded since it last
//! looked, at most once a second; if so it flushes its crossbeam-epoch garbage (collecting
//! what every thread retired before) and runs the allocator's own collection. The
//! blocking-pool thread that runs sled's flush does the first part after it ([`after_flush`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Room documents evicted and rooms unloaded so far: moves whenever the node frees a lot of
/// memory at once.
pub(crate) static RELEASES: AtomicU64 = AtomicU64::new(0);

/// How often one thread reclaims at most.
const EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// (the [`RELEASES`] this thread last reclaimed after, when).
    static SEEN: Cell<(u64, Option<Instant>)> = const { Cell::new((0, None)) };
}

/// Counts a release (a document evicted, a room unloaded).
pub(crate) fn released() {
    RELEASES.fetch_add(1, Ordering::Relaxed);
}

/// For a runtime thread about to park: if rooms released memory since this thread last
/// reclaimed (and that was at least a second ago), flushes its crossbeam-epoch garbage and
/// calls `collect` (the allocator's collection: `mi_collect(true)`, `malloc_trim(0)`).
/// Returns whether it reclaimed. Cheap otherwise: an atomic load and a thread-local read.
pub fn on_park(collect: impl FnOnce()) -> bool {
    if !due() {
        return false;
    }
    flush_retired();
    collect();
    true
}

/// For the blocking-pool thread that just ran sled's flush (sled seals and retires its
/// write buffers there too): the same, without the allocator's collection.
pub(crate) fn after_flush() {
    if due() {
        flush_retired();
    }
}

/// Whether this thread should reclaim now (and, if so, notes that it did).
fn due() -> bool {
    SEEN.with(|seen| should_reclaim(seen, RELEASES.load(Ordering::Relaxed), Instant::now()))
}

/// The rule: `releases` moved since `seen`, and `seen` is at least [`EVERY`] old.
fn should_reclaim(seen: &Cell<(u64, Option<Instant>)>, releases: u64, now: Instant) -> bool {
    let (last, at) = seen.get();
    if releases == last || at.is_some_and(|t| now.saturating_duration_since(t) < EVERY) {
        return false;
    }
    seen.set((releases, Some(now)));
    true
}

/// Moves this thread's retired items to crossbeam-epoch's global queue and collects what
/// every thread retired that no reader still pins. An item goes two epochs after it was
/// retired, and each flush advances the epoch at most once (when no thread is pinned in an
/// older one): three flushes free what was retired before the first.
fn flush_retired() {
    for _ in 0..3 {
        crossbeam_epoch::pin().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_reclaims_once_per_release_and_at_most_once_a_second() {
        let seen = Cell::new((0, None));
        let t0 = Instant::now();
        assert!(!should_reclaim(&seen, 0, t0), "nothing released yet");
        assert!(should_reclaim(&seen, 1, t0), "a release not seen yet");
        assert!(!should_reclaim(&seen, 1, t0 + 2 * EVERY), "nothing released since");
        assert!(!should_reclaim(&seen, 2, t0 + EVERY / 2), "released, but within the second");
        assert!(should_reclaim(&seen, 2, t0 + EVERY), "released, and the second passed");
        assert_eq!(seen.get(), (2, Some(t0 + EVERY)));
    }

    #[test]
    fn retired_items_are_dropped_once_a_parked_thread_reclaims() {
        use std::sync::Arc;
        // What sled does with an old write buffer: retire it through crossbeam-epoch.
        let buf = Arc::new([0u8; 64]);
        let weak = Arc::downgrade(&buf);
        crossbeam_epoch::pin().defer(move || drop(buf));
        assert!(weak.upgrade().is_some(), "retired, not dropped: the bag holds it");
        // One reclaim drops it unless another thread of the test binary (a test using sled)
        // is pinned in an older epoch meanwhile: then a later one does.
        let dropped = (0..1000).any(|_| {
            released();
            SEEN.with(|s| s.set((s.get().0, None)));
            assert!(on_park(|| {}));
            std::thread::yield_now();
            weak.upgrade().is_none()
        });
        assert!(dropped, "the retired item was never dropped");
    }
}

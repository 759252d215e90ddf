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
//!
//! Large zeroed blocks (sled's page tables and histograms, which it touches a little at a
//! time) come straight from the OS ([`LargeFromOs`], the binary's allocator around mimalloc),
//! so that only the pages in use are resident.
//!
//! And room documents allocate in a heap of their own ([`documents`], [`SeparateHeaps`];
//! `reclaim/heaps.rs`): an evicted document's pages then hold less that outlives it.

mod heaps;

pub use heaps::*;

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

/// Zeroed allocations this large or larger come straight from the OS (see [`LargeFromOs`]).
pub const LARGE: usize = 256 * 1024;

/// How many OS-backed blocks [`LargeFromOs`] keeps track of at once (more fall back to the
/// inner allocator): sled's tables, a few per database.
const SLOTS: usize = 64;

/// The smallest page size Linux uses; `mmap` returns memory aligned to it.
const PAGE: usize = 4096;

/// A global allocator that takes *zeroed* allocations of [`LARGE`] bytes or more straight
/// from the OS (`mmap`, whose pages are zero and resident only once touched) and passes
/// everything else to the inner allocator.
///
/// Why: sled allocates its page tables and its metrics' histograms zeroed, tens of MiB of
/// which it touches a little at a time. From mimalloc, a zeroed block made of memory it had
/// used before is cleared with `memset`, so wholly resident; from the OS only what sled
/// touches is (decision record 004). Plain large allocations stay with mimalloc: sending them
/// to the OS too read one throughput step lower (page faults on every fresh block).
///
/// Which blocks are the OS's is kept in a small table of addresses (`SLOTS` of them), so
/// `dealloc` and `realloc` send each block back to where it came from whatever its layout.
#[derive(Debug)]
pub struct LargeFromOs<A> {
    inner: A,
    mapped: [std::sync::atomic::AtomicUsize; SLOTS],
}

impl<A> LargeFromOs<A> {
    /// `inner` for everything but large zeroed blocks.
    pub const fn new(inner: A) -> Self {
        LargeFromOs { inner, mapped: [const { std::sync::atomic::AtomicUsize::new(0) }; SLOTS] }
    }

    /// Notes `p` as a block of ours; false if the table is full.
    fn claim(&self, p: *mut u8) -> bool {
        self.mapped.iter().any(|s| s.compare_exchange(0, p as usize, Ordering::AcqRel, Ordering::Relaxed).is_ok())
    }

    /// Whether `p` is a block of ours (and, with `take`, forgets it).
    fn ours(&self, p: *mut u8, take: bool) -> bool {
        let p = p as usize;
        self.mapped.iter().any(|s| {
            if take {
                s.compare_exchange(p, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            } else {
                s.load(Ordering::Acquire) == p
            }
        })
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod os {
    /// `len` bytes of zeroed memory from the OS, or null.
    pub(super) fn map(len: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing; no
        // existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    /// Gives back a mapping made by [`map`] with the same `len`.
    ///
    /// # Safety
    /// `p` came from `map(len)` and is not used afterwards.
    pub(super) unsafe fn unmap(p: *mut u8, len: usize) {
        // SAFETY: the caller's contract: `p..p+len` is one mapping of ours.
        let rc = unsafe { libc::munmap(p.cast(), len) };
        debug_assert_eq!(rc, 0, "munmap of our own mapping failed");
    }
}

/// Elsewhere no block comes from the OS: [`LargeFromOs`] passes everything on.
#[cfg(not(target_os = "linux"))]
mod os {
    pub(super) fn map(_len: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    /// Never called: nothing was mapped.
    pub(super) unsafe fn unmap(_p: *mut u8, _len: usize) {}
}

// SAFETY: a block is the OS's (one whole mapping: page-aligned, zeroed) only if its address is
// in `mapped`, put there before it was handed out and taken out before it is unmapped; every
// other block is the inner allocator's, and each call sends a block back to where it came
// from. (`allow`: a GlobalAlloc impl is unsafe by definition.)
#[allow(unsafe_code)]
unsafe impl<A: std::alloc::GlobalAlloc> std::alloc::GlobalAlloc for LargeFromOs<A> {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on.
        unsafe { self.inner.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() >= LARGE && layout.align() <= PAGE {
            let p = os::map(layout.size());
            if !p.is_null() {
                if self.claim(p) {
                    return p;
                }
                // SAFETY: just mapped with this length, never handed out.
                unsafe { os::unmap(p, layout.size()) };
            }
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { self.inner.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if layout.size() >= LARGE && self.ours(ptr, true) {
            // SAFETY: ours: mapped with this length (the caller's layout is the one it was
            // allocated with), and no longer in the table.
            unsafe { os::unmap(ptr, layout.size()) };
            return;
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if !(layout.size() >= LARGE && self.ours(ptr, false)) {
            // SAFETY: the caller's contract is passed on.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // One of ours resized: a block from the inner allocator, the bytes that fit, ours
        // unmapped (and kept if the new block cannot be had).
        // SAFETY: the old layout's alignment with a non-zero size that does not overflow
        // when rounded (the caller's contract).
        let new = unsafe { std::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size.
        let q = unsafe { self.inner.alloc(new) };
        if !q.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size)) };
            // SAFETY: `ptr` was allocated with `layout` by this allocator.
            unsafe { self.dealloc(ptr, layout) };
        }
        q
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// Whether `p..p+len` lies in one mapping of this process (from /proc/self/maps).
    #[cfg(target_os = "linux")]
    fn is_mapped(p: *const u8, len: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let (start, end) = (p as usize, p as usize + len.next_multiple_of(PAGE));
        maps.lines().any(|l| {
            let (a, b) = l.split(' ').next().unwrap().split_once('-').unwrap();
            let (a, b) = (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap());
            a <= start && end <= b
        })
    }

    /// An inner allocator that counts the blocks it handed out and has not had back.
    #[derive(Default)]
    struct Inner(std::sync::atomic::AtomicIsize);
    // SAFETY: passes everything to System.
    #[allow(unsafe_code)]
    unsafe impl std::alloc::GlobalAlloc for Inner {
        unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
            self.0.fetch_add(1, Ordering::Relaxed);
            // SAFETY: the caller's contract is passed on.
            unsafe { std::alloc::System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
            self.0.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: the caller's contract is passed on.
            unsafe { std::alloc::System.dealloc(p, l) }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code)]
    fn large_zeroed_blocks_come_from_the_os_and_everything_else_from_the_inner_allocator() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = LargeFromOs::new(Inner::default());
        let inner = |a: &LargeFromOs<Inner>| a.inner.0.load(Ordering::Relaxed);
        // (size, align, zeroed, from the OS)
        for (size, align, zeroed, os) in [
            (100, 8, true, false),
            (LARGE - 1, 8, true, false),
            (LARGE, 8, false, false),
            (LARGE, 2 * PAGE, true, false),
            (LARGE, PAGE, true, true),
            (3 * LARGE + 5, 8, true, true),
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero size, freed with its layout; read only while allocated.
            unsafe {
                let p = if zeroed { a.alloc_zeroed(l) } else { a.alloc(l) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                assert_eq!(inner(&a), if os { 0 } else { 1 }, "{size} bytes aligned {align}, zeroed {zeroed}");
                assert_eq!(a.ours(p, false), os);
                if os {
                    assert!(is_mapped(p, size), "{size} bytes: not mapped");
                }
                if zeroed {
                    assert!((0..size).all(|i| *p.add(i) == 0), "{size} bytes: not zeroed");
                }
                std::ptr::write_bytes(p, 7, size);
                a.dealloc(p, l);
                assert_eq!(inner(&a), 0);
                assert!(!a.ours(p, false), "forgotten once freed");
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code)]
    fn a_block_of_the_os_keeps_its_bytes_when_resized_and_goes_back_whole() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = LargeFromOs::new(Inner::default());
        for to in [16, LARGE - 1, LARGE, 2 * LARGE + 3] {
            let l = Layout::from_size_align(LARGE + 100, 8).unwrap();
            // SAFETY: non-zero sizes; every block is freed with the layout it has.
            unsafe {
                let p = a.alloc_zeroed(l);
                assert!(a.ours(p, false));
                (0..l.size()).for_each(|i| *p.add(i) = (i % 251) as u8);
                let q = a.realloc(p, l, to);
                assert!(!q.is_null());
                assert!((0..to.min(l.size())).all(|i| *q.add(i) == (i % 251) as u8), "-> {to}: bytes lost");
                assert!(!a.ours(p, false) && !a.ours(q, false), "-> {to}: the new block is the inner allocator's");
                assert_eq!(a.inner.0.load(Ordering::Relaxed), 1);
                a.dealloc(q, Layout::from_size_align(to, 8).unwrap());
                assert_eq!(a.inner.0.load(Ordering::Relaxed), 0);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code)]
    fn with_the_table_full_large_zeroed_blocks_fall_back_to_the_inner_allocator() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = LargeFromOs::new(Inner::default());
        let l = Layout::from_size_align(LARGE, 8).unwrap();
        // SAFETY: non-zero sizes, each freed once with its layout.
        unsafe {
            let ours: Vec<_> = (0..SLOTS).map(|_| a.alloc_zeroed(l)).collect();
            assert!(ours.iter().all(|&p| a.ours(p, false)));
            let extra = a.alloc_zeroed(l);
            assert!(!a.ours(extra, false));
            assert_eq!(a.inner.0.load(Ordering::Relaxed), 1, "the 65th from the inner allocator");
            assert!((0..LARGE).all(|i| *extra.add(i) == 0));
            a.dealloc(extra, l);
            for p in ours {
                a.dealloc(p, l);
            }
            assert_eq!(a.inner.0.load(Ordering::Relaxed), 0);
            assert!(a.mapped.iter().all(|s| s.load(Ordering::Relaxed) == 0), "every slot free again");
        }
    }

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

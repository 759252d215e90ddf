//! Room documents in a heap of their own.
//!
//! A room's document is built, grown and dropped as a whole (loaded when a client needs it,
//! evicted once it is idle), while what an idle room keeps (its connection, its presence,
//! its actor) is allocated at the same time and lives on. In one heap the two share pages,
//! and the pages an evicted document leaves stay resident for the few live blocks between
//! them (decision record 004, round 4). So the work on a document runs [`within`] the
//! documents' heap ([`documents`]: opening it, `with_room`, signing stock clients' updates,
//! the checkpoint, building a new room), and everything else allocates in the main heap. With
//! mimalloc ([`SeparateHeaps`], the binary's allocator) that is a heap of its own; with any
//! other allocator [`within`] only runs its closure.
//!
//! The store's calls made from a document's work (sled's cache, its copy-on-write leaves)
//! land in the documents' heap too. A third heap for them was measured and not taken: it
//! lowered the stock-client figure further but raised the loadgen idle command's by 40 %
//! (sled's churn leaves holes in a heap of its own that nothing else fills).
//!
//! The choice is the thread's (a thread-local), so a scope never spans an `.await`: every
//! [`within`] here wraps synchronous code.

use std::cell::Cell;

/// The heaps allocations are sorted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Heap {
    /// Everything not inside [`within`]: connections, presence, the room actors.
    Main = 0,
    /// Room documents and the work on them: gone once the document is evicted.
    Documents = 1,
}

thread_local! {
    /// The heap this thread's allocations go to now (a [`Heap`] as its index).
    static CURRENT: Cell<u8> = const { Cell::new(Heap::Main as u8) };
}

/// Runs `f` with this thread's allocations in `heap`, then goes back to the heap it was in
/// (also when `f` panics).
pub fn within<T>(heap: Heap, f: impl FnOnce() -> T) -> T {
    struct Restore(u8);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.try_with(|c| c.replace(heap as u8)).unwrap_or(Heap::Main as u8));
    f()
}

/// [`within`] the documents' heap: for code that builds, changes, reads or checkpoints a
/// room's document.
pub fn documents<T>(f: impl FnOnce() -> T) -> T {
    within(Heap::Documents, f)
}

/// The heap this thread allocates in now.
pub fn current() -> Heap {
    match CURRENT.try_with(Cell::get).unwrap_or(0) {
        1 => Heap::Documents,
        _ => Heap::Main,
    }
}

#[cfg(all(feature = "mimalloc", feature = "heap-stats"))]
pub use mi::heap_report;
#[cfg(feature = "mimalloc")]
pub use mi::{collect_heaps, SeparateHeaps};

#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
mod mi {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicPtr, Ordering};

    use libmimalloc_sys::{
        mi_free, mi_heap_collect, mi_heap_malloc_aligned, mi_heap_new, mi_heap_realloc_aligned, mi_heap_t,
        mi_heap_zalloc_aligned,
    };

    use super::Heap;

    /// The heaps other than the main one, by [`Heap`] index (null until first needed, or if
    /// mimalloc could not make one: then their blocks go to the main heap).
    static HEAPS: [AtomicPtr<mi_heap_t>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];

    /// mimalloc's heap for `heap` (made on first use); null for the main heap.
    fn heap_for(heap: Heap) -> *mut mi_heap_t {
        if heap == Heap::Main {
            return std::ptr::null_mut();
        }
        let slot = &HEAPS[heap as usize];
        let h = slot.load(Ordering::Acquire);
        if !h.is_null() {
            return h;
        }
        // SAFETY: takes no argument; mimalloc allocates the heap's own state itself (not
        // through this allocator). A v3 heap may be used from any thread.
        let new = unsafe { mi_heap_new() };
        match slot.compare_exchange(std::ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => new,
            // Another thread made one first: ours stays empty (mimalloc keeps it).
            Err(theirs) => theirs,
        }
    }

    /// Collects the freed pages of the heaps other than the main one (`mi_collect` does the
    /// main one); for the runtime's park hook.
    pub fn collect_heaps() {
        for slot in &HEAPS[1..] {
            let h = slot.load(Ordering::Acquire);
            if !h.is_null() {
                // SAFETY: a heap made by mi_heap_new and never deleted; any thread may collect.
                unsafe { mi_heap_collect(h, true) };
            }
        }
    }

    /// mimalloc, with what is allocated [`within`](super::within) the documents' heap in a
    /// heap of its own.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct SeparateHeaps;

    /// A block from `f` on this thread's current heap other than the main one, or from
    /// mimalloc's main heap with `main`.
    #[inline]
    fn route(f: impl FnOnce(*mut mi_heap_t) -> *mut u8, main: impl FnOnce() -> *mut u8) -> *mut u8 {
        let heap = super::current();
        if heap != Heap::Main {
            let h = heap_for(heap);
            if !h.is_null() {
                return f(h);
            }
        }
        main()
    }

    // SAFETY: every block comes from mimalloc (one of its heaps), and mimalloc frees and
    // resizes any of its blocks whatever heap it came from (`mi_free` finds the page's heap).
    unsafe impl GlobalAlloc for SeparateHeaps {
        #[inline]
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY (both): a non-zero size and a power-of-two alignment (Layout's and the
            // caller's contract).
            route(
                |h| unsafe { mi_heap_malloc_aligned(h, l.size(), l.align()) }.cast(),
                || unsafe { mimalloc::MiMalloc.alloc(l) },
            )
        }
        #[inline]
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            // SAFETY (both): as in `alloc`.
            route(
                |h| unsafe { mi_heap_zalloc_aligned(h, l.size(), l.align()) }.cast(),
                || unsafe { mimalloc::MiMalloc.alloc_zeroed(l) },
            )
        }
        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, _l: Layout) {
            // SAFETY: a block of mimalloc's (the caller's contract), whichever heap.
            unsafe { mi_free(ptr.cast()) }
        }
        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
            // SAFETY (both): a live block of mimalloc's and a non-zero new size (the caller's
            // contract); a block that moves goes to the heap of the code resizing it.
            route(
                |h| unsafe { mi_heap_realloc_aligned(h, ptr.cast(), new_size, l.align()) }.cast(),
                || unsafe { mimalloc::MiMalloc.realloc(ptr, l, new_size) },
            )
        }
    }

    extern "C" {
        /// mimalloc v3: the heap a block belongs to.
        #[cfg(test)]
        fn mi_heap_of(p: *const std::ffi::c_void) -> *mut mi_heap_t;
        /// mimalloc v3: the process's main heap.
        #[cfg(feature = "heap-stats")]
        fn mi_heap_main() -> *mut mi_heap_t;
        /// mimalloc v3: like `mi_heap_visit_blocks`, for the pages of threads that ended.
        #[cfg(feature = "heap-stats")]
        fn mi_heap_visit_abandoned_blocks(
            heap: *mut mi_heap_t,
            visit_blocks: bool,
            visitor: libmimalloc_sys::mi_block_visit_fun,
            arg: *mut std::ffi::c_void,
        ) -> bool;
    }

    /// Which of our heaps a block of mimalloc's is in.
    #[cfg(test)]
    pub(super) fn heap_of(p: *const u8) -> Heap {
        // SAFETY: a live block of mimalloc's (the tests' own).
        let h = unsafe { mi_heap_of(p.cast()) };
        if h == HEAPS[Heap::Documents as usize].load(Ordering::Acquire) {
            Heap::Documents
        } else {
            Heap::Main
        }
    }

    /// Per heap (main, documents) and block size: pages, bytes committed, bytes in
    /// live blocks, as `#` lines for `/metrics` (heap-stats builds): where resident memory
    /// holds no live data.
    #[cfg(feature = "heap-stats")]
    pub fn heap_report() -> String {
        use std::collections::BTreeMap;
        use std::fmt::Write;
        type Sizes = BTreeMap<usize, (u64, u64, u64)>;
        unsafe extern "C" fn visit(
            _h: *const mi_heap_t,
            area: *const libmimalloc_sys::mi_heap_area_t,
            _block: *mut std::ffi::c_void,
            _size: usize,
            arg: *mut std::ffi::c_void,
        ) -> bool {
            // SAFETY: mimalloc passes a valid area; `arg` is the map below, alive for the call.
            let (a, sizes) = unsafe { (&*area, &mut *arg.cast::<Sizes>()) };
            let e = sizes.entry(a.block_size).or_default();
            e.0 += 1;
            e.1 += a.committed as u64;
            // v3 counts `used` in blocks.
            e.2 += (a.used * a.block_size) as u64;
            true
        }
        let mut out = String::new();
        // SAFETY: mi_heap_main takes nothing.
        let main = unsafe { mi_heap_main() };
        for (name, h) in [("main", main), ("documents", HEAPS[Heap::Documents as usize].load(Ordering::Acquire))] {
            if h.is_null() {
                continue;
            }
            let mut sizes = Sizes::new();
            let arg = (&mut sizes as *mut Sizes).cast();
            // SAFETY: a live heap, a visitor of the right type, `arg` the map above.
            unsafe {
                libmimalloc_sys::mi_heap_visit_blocks(h, false, Some(visit), arg);
                mi_heap_visit_abandoned_blocks(h, false, Some(visit), arg);
            }
            let (p, c, u) = sizes.values().fold((0, 0, 0), |t, v| (t.0 + v.0, t.1 + v.1, t.2 + v.2));
            let _ = writeln!(out, "# heap {name}: pages {p} committed {c} live {u}");
            for (size, (p, c, u)) in sizes {
                let _ = writeln!(out, "# heap {name} block {size}: pages {p} committed {c} live {u}");
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn within_sets_the_heap_for_its_closure_and_restores_the_one_before_also_on_panic() {
        assert_eq!(current(), Heap::Main);
        documents(|| {
            assert_eq!(current(), Heap::Documents);
            within(Heap::Main, || assert_eq!(current(), Heap::Main));
            assert_eq!(current(), Heap::Documents, "a nested scope gives back the outer heap");
            let caught = std::panic::catch_unwind(|| within(Heap::Main, || panic!("in the main heap")));
            assert!(caught.is_err());
            assert_eq!(current(), Heap::Documents, "a panic inside gives back the outer heap too");
        });
        assert_eq!(current(), Heap::Main);
        // Another thread starts in the main heap whatever this one is in.
        assert_eq!(documents(|| std::thread::spawn(current).join().unwrap()), Heap::Main);
    }

    #[cfg(feature = "mimalloc")]
    #[test]
    #[allow(unsafe_code)] // calling the allocator directly
    fn blocks_go_to_the_heap_of_their_scope_and_any_heap_frees_or_resizes_them() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = SeparateHeaps;
        let small = Layout::from_size_align(48, 8).unwrap();
        let aligned = Layout::from_size_align(200, 64).unwrap();
        // SAFETY (all below): non-zero layouts; each block is freed once with its layout.
        unsafe {
            let main = a.alloc(small);
            let doc = documents(|| a.alloc(small));
            let zeroed = documents(|| a.alloc_zeroed(aligned));
            assert_eq!(mi::heap_of(main), Heap::Main);
            assert_eq!(mi::heap_of(doc), Heap::Documents);
            assert_eq!(mi::heap_of(zeroed), Heap::Documents);
            assert_eq!(zeroed as usize % 64, 0, "alignment kept");
            assert!(std::slice::from_raw_parts(zeroed, 200).iter().all(|&b| b == 0), "zeroed");
            // A resize that moves the block puts it in the heap of the code resizing it,
            // bytes kept.
            doc.write_bytes(7, 48);
            let grown = a.realloc(doc, small, 4096);
            assert_eq!(mi::heap_of(grown), Heap::Main);
            assert!(std::slice::from_raw_parts(grown, 48).iter().all(|&b| b == 7));
            let regrown = documents(|| a.realloc(main, small, 8192));
            assert_eq!(mi::heap_of(regrown), Heap::Documents);
            // Freed from any scope, and from another thread.
            documents(|| a.dealloc(grown, Layout::from_size_align(4096, 8).unwrap()));
            a.dealloc(regrown, Layout::from_size_align(8192, 8).unwrap());
            let zeroed = zeroed as usize;
            std::thread::spawn(move || a.dealloc(zeroed as *mut u8, aligned)).join().unwrap();
            collect_heaps();
        }
    }
}

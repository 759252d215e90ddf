//! What `RoomDoc::meta()` allocates when a host stored a large binary value in `meta`
//! (issue #22): bounded, whatever the value's size. Before, every field was converted, a
//! buffer as one JSON value per byte: ~128 MiB for a 4 MiB buffer on every call.
//!
//! This binary counts allocations with a global allocator of its own, per thread, so tests
//! running beside each other do not count each other's.
#![allow(unsafe_code)] // The counting allocator (`GlobalAlloc` is an unsafe trait).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use arena_core::RoomDoc;
use yrs::{Any, Map, Transact, WriteTxn};

struct Counting;

thread_local! {
    /// Bytes allocated on this thread while counting, or `None` when not counting.
    static COUNTED: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: every call goes to `System` unchanged; counting touches a const-initialised
// thread-local `Cell` only (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTED.try_with(|c| c.set(c.get().map(|n| n + layout.size())));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNTED.try_with(|c| c.set(c.get().map(|n| n + new_size)));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result and the bytes it allocated on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (T, usize) {
    COUNTED.with(|c| c.set(Some(0)));
    let out = f();
    let n = COUNTED.with(|c| c.replace(None)).unwrap_or(0);
    (out, n)
}

#[test]
fn a_large_binary_meta_value_costs_meta_little() {
    let doc = RoomDoc::new(1);
    doc.edit(|e| {
        e.set_meta("language", &serde_json::json!("python"));
        e.set_meta("title", &serde_json::json!("Two sums"));
    });
    let (before, small) = counted(|| doc.meta());
    assert_eq!((before.language.as_str(), before.title.as_str()), ("python", "Two sums"));
    {
        let mut txn = doc.raw_yrs_doc().transact_mut();
        let meta = txn.get_or_insert_map("meta");
        meta.insert(&mut txn, "blob", Any::Buffer(vec![7u8; 4 << 20].into()));
    }
    // A key `Meta` does not read: not converted at all.
    let (meta, bytes) = counted(|| doc.meta());
    assert_eq!(meta, before);
    assert!(bytes < 1 << 20, "meta() allocated {bytes} bytes (without the buffer: {small})");
    // A key it reads, holding the buffer: refused before anything is allocated for it; the
    // record then reads as defaults, as for any value of the wrong type.
    {
        let mut txn = doc.raw_yrs_doc().transact_mut();
        let meta = txn.get_or_insert_map("meta");
        meta.insert(&mut txn, "question", Any::Buffer(vec![7u8; 4 << 20].into()));
    }
    let (meta, bytes) = counted(|| doc.meta());
    assert_eq!(meta, arena_core::records::Meta::default());
    assert!(bytes < 1 << 20, "meta() allocated {bytes} bytes");
}

//! A global allocator for benches: the system allocator, counting allocations and bytes while
//! counting is switched on.
//!
//! The root crate forbids `unsafe` code, and a `GlobalAlloc` cannot be written without it, so
//! the allocator lives in this crate of its own, used by the benches only. Switched off (the
//! default), each call costs one relaxed load more than the system allocator, so timings are
//! not disturbed; switched on, each call adds two relaxed increments. Threads can be excluded
//! (an in-process server's), so a figure counts the client's work alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The system allocator, counting while [`set_counting`] is on.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

static ON: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counter values at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Allocations (a reallocation counts as one).
    pub allocs: u64,
    /// Bytes allocated (a reallocation counts its new size).
    pub bytes: u64,
    /// Deallocations (a reallocation counts as one).
    pub frees: u64,
    /// Bytes deallocated (a reallocation counts its old size).
    pub freed_bytes: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    #[must_use]
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            allocs: self.allocs - earlier.allocs,
            bytes: self.bytes - earlier.bytes,
            frees: self.frees - earlier.frees,
            freed_bytes: self.freed_bytes - earlier.freed_bytes,
        }
    }

    /// Bytes still held: allocated minus freed (negative when more was freed).
    #[must_use]
    pub fn net_bytes(self) -> i64 {
        // Two's complement: the difference of two counters far below 2^63 apart.
        self.bytes.wrapping_sub(self.freed_bytes) as i64
    }
}

thread_local! {
    // Const-initialized and without a destructor: reading it never allocates.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

/// Switch counting on or off (for every thread not excluded).
pub fn set_counting(on: bool) {
    ON.store(on, Relaxed);
}

/// Never count what the calling thread allocates (e.g. the threads of an in-process server,
/// whose work is not the client's). Call it from `on_thread_start`.
pub fn exclude_this_thread() {
    EXCLUDED.with(|e| e.set(true));
}

#[inline]
fn counting() -> bool {
    ON.load(Relaxed) && !EXCLUDED.with(Cell::get)
}

/// The counters now.
pub fn counts() -> Counts {
    Counts {
        allocs: ALLOCS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
        frees: FREES.load(Relaxed),
        freed_bytes: FREED_BYTES.load(Relaxed),
    }
}

#[inline]
fn on_alloc(size: usize) {
    if counting() {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
    }
}

#[inline]
fn on_free(size: usize) {
    if counting() {
        FREES.fetch_add(1, Relaxed);
        FREED_BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract `System` fulfils is the one the caller gets; the counters do not touch memory.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

//! Allocations per operation, for benches (`#[path = "support/alloc.rs"] mod alloc;`).
//!
//! Installs the counting global allocator of `benches/support/count-alloc` (off by default, so
//! timings are not disturbed) and runs a measured closure `n` times between two counter reads.
//! Every figure is printed on one line to standard error, in one format that
//! `benches/report.sh` reads:
//!
//! ```text
//! allocs agent/access_token_hit: 8.00 allocs/op, 412 B/op
//! ```
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;

use count_alloc::{counts, set_counting, CountingAlloc, Counts};

/// Never count what the calling thread allocates (for `on_thread_start` of a server's runtime).
pub fn exclude_this_thread() {
    count_alloc::exclude_this_thread();
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations and bytes per operation.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerOp {
    pub allocs: f64,
    pub bytes: f64,
}

impl PerOp {
    pub fn of(c: Counts, n: u64) -> PerOp {
        let n = n.max(1) as f64;
        PerOp {
            allocs: c.allocs as f64 / n,
            bytes: c.bytes as f64 / n,
        }
    }

    /// `self` minus `floor` (what an operation adds to another).
    pub fn minus(self, floor: PerOp) -> PerOp {
        PerOp {
            allocs: self.allocs - floor.allocs,
            bytes: self.bytes - floor.bytes,
        }
    }
}

/// The counts of everything allocated (on any thread) while `f` runs.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    let before = counts();
    set_counting(true);
    let r = f();
    set_counting(false);
    (r, counts().since(before))
}

/// As [`measure`], for a future (polled by the caller's runtime).
pub async fn measure_async<F: Future>(f: F) -> (F::Output, Counts) {
    let before = counts();
    set_counting(true);
    let r = f.await;
    set_counting(false);
    (r, counts().since(before))
}

/// Print `allocs <name>: <a> allocs/op, <b> B/op`.
pub fn print(name: &str, per_op: PerOp) {
    eprintln!(
        "allocs {name}: {:.2} allocs/op, {:.0} B/op",
        per_op.allocs, per_op.bytes
    );
}

/// Run `f` `n` times while counting, print the figure per call and return it.
pub fn per_op<R>(name: &str, n: u64, mut f: impl FnMut() -> R) -> PerOp {
    // Once before counting: lazily built state is not a per-call cost.
    black_box(f());
    let ((), c) = measure(|| {
        for _ in 0..n {
            black_box(f());
        }
    });
    let p = PerOp::of(c, n);
    print(name, p);
    p
}

/// Run the async operation `f` `n` times while counting and return the figure per call
/// (without printing it); run it inside the bench's runtime.
pub async fn count_per_op_async<F, Fut>(n: u64, mut f: F) -> PerOp
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    black_box(f().await);
    let ((), c) = measure_async(async {
        for _ in 0..n {
            black_box(f().await);
        }
    })
    .await;
    PerOp::of(c, n)
}

/// As [`per_op`], for an async operation; run it inside the bench's runtime.
pub async fn per_op_async<F, Fut>(name: &str, n: u64, f: F) -> PerOp
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    let p = count_per_op_async(n, f).await;
    print(name, p);
    p
}

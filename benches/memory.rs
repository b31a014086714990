//! Memory per registered resource, measured with a counting global allocator.
//!
//! For each size, registers the lab (10 resources per agent, so 100,000 resources come from
//! 10,000 agents) and prints the heap the engine holds per resource: just registered, then
//! with half of them allocated. "Asked" counts the bytes the engine asked for (spare capacity
//! of its vectors and tables included); "with malloc" adds what glibc's allocator makes of each
//! block (an 8-byte header, rounded up to 16 bytes, at least 32), an estimate of the real
//! footprint. The target is at most 1 KiB per registered resource.
//!
//! Then the diverse lab (`testkit::labs::diverse`, where nearly every resource is its own shape):
//! the heap per resource with 100,000 registered, and again after each tenth of a stream of
//! `DIVERSE_REQUESTS` (default 1,000,000) distinct requests, each allocated and released, with
//! the ratio of the last figure to the first: whatever the engine keeps per request shape, or
//! per ended allocation beyond its bounded history, shows as growth (the history of ended
//! allocations fills up over the first 10,000 requests, so small runs do grow), and the growth
//! per usage record kept (an upper bound of a record's share: whatever else the requests left
//! counts too). Run with
//! `cargo bench -p allocate-benches --bench memory`, or with `DIVERSE_REQUESTS=2000` (say)
//! for a quick run on a slow engine.

use allocate_benches::{env_count, SIZES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use testkit::labs::{
    allocate, diverse_engine, fill, lab_engine, release, DiverseRequests, RESOURCES_PER_AGENT,
};

/// The system allocator, counting the bytes currently allocated, as asked and as glibc's
/// chunks would hold them.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_CHUNK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The size of the glibc chunk that holds a block of `size` bytes (blocks above the mmap
/// threshold are rounded to pages instead, which the estimate ignores: there are few of them).
fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn count(asked: usize, add: bool) {
    if add {
        LIVE_BYTES.fetch_add(asked, Ordering::Relaxed);
        LIVE_CHUNK_BYTES.fetch_add(chunk(asked), Ordering::Relaxed);
    } else {
        LIVE_BYTES.fetch_sub(asked, Ordering::Relaxed);
        LIVE_CHUNK_BYTES.fetch_sub(chunk(asked), Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on unchanged to the system allocator, which upholds the
// `GlobalAlloc` contract; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `System.alloc` shares.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), true);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: `p` was allocated by this allocator with `layout`, as the caller guarantees.
        unsafe { System.dealloc(p, layout) };
        count(layout.size(), false);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, which `System.realloc` shares.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            count(layout.size(), false);
            count(new_size, true);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes currently allocated: as asked, and with glibc's chunk overhead.
fn live() -> (usize, usize) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_CHUNK_BYTES.load(Ordering::Relaxed),
    )
}

/// Resources of the diverse lab measured.
const DIVERSE: usize = 100_000;

/// The diverse lab's heap per resource: registered, then along a stream of distinct requests.
fn diverse() {
    let total = env_count("DIVERSE_REQUESTS", 1_000_000);
    let n = DIVERSE;
    let (bytes, blocks) = live();
    let per_resource = || ((live().0 - bytes) / n, (live().1 - blocks) / n);
    let mut engine = diverse_engine(n);
    let registered = per_resource();
    println!(
        "memory_diverse/{n} ({} agents), bytes per resource: registered {} asked, {} with malloc",
        n.div_ceil(RESOURCES_PER_AGENT),
        registered.0,
        registered.1,
    );
    let mut requests = DiverseRequests::new(n, 2);
    let mut done = 0;
    let mut tenths = Vec::with_capacity(10);
    for tenth in 1..=10 {
        let until = total * tenth / 10;
        for r in requests.by_ref().take(until - done) {
            let (id, _) = allocate(&mut engine, r).expect("its resource is free");
            release(&mut engine, id);
        }
        done = until;
        let now = per_resource();
        println!(
            "memory_diverse/{n} after {done} requests ({}%), bytes per resource: {} asked, {} \
             with malloc",
            tenth * 10,
            now.0,
            now.1,
        );
        tenths.push(now);
    }
    let (first, last) = (tenths[0], tenths[9]);
    println!(
        "memory_diverse/{n}: last tenth / first tenth: x{:.3} asked, x{:.3} with malloc",
        last.0 as f64 / first.0 as f64,
        last.1 as f64 / first.1 as f64,
    );
    let records = engine.usage_records().max(1);
    let per_record = |now: usize, then: usize| now.saturating_sub(then) * n / records;
    println!(
        "memory_diverse/{n}: {records} usage records kept; growth since registered per record \
         (records and all else the requests left): {} asked, {} with malloc",
        per_record(last.0, registered.0),
        per_record(last.1, registered.1),
    );
    drop(engine);
}

fn main() {
    println!("heap per registered resource (target: at most 1024 bytes)");
    for n in SIZES {
        let (bytes, blocks) = live();
        let mut engine = lab_engine(n);
        let registered = (live().0 - bytes, live().1 - blocks);
        fill(&mut engine, n / 2);
        let half = (live().0 - bytes, live().1 - blocks);
        println!(
            "memory/{n} ({} agents), bytes per resource: registered {} asked, {} with malloc; \
             half allocated {} asked, {} with malloc",
            n.div_ceil(RESOURCES_PER_AGENT),
            registered.0 / n,
            registered.1 / n,
            half.0 / n,
            half.1 / n,
        );
        drop(engine);
    }
    diverse();
}

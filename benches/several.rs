//! Several resources at once (`count`, API.md "Several resources at once") on the diverse lab
//! of issue #18, half allocated by diverse requests (`testkit::labs::half_allocated_diverse`).
//!
//! At each size N:
//! - `several/N`: one never-seen diverse request asking for `count: 8` with
//!   `allocation_timeout_seconds: 0` (ready at once, static connections, or refused at once),
//!   matched and committed, timed up to its first output; the release that keeps the state
//!   steady is not timed. How many of the timed requests were ready, and the mean time of
//!   those and of the refused ones, is printed after criterion's line.
//!
//! Run with `cargo bench -p allocate-benches --bench several -- 'several/100000$'`.

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate_benches::{timed_answer, SIZES};
use allocate_core::{Engine, Requirements};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use testkit::labs::{half_allocated_diverse, DiverseRequests};

/// The seed of the timed requests' stream.
const TIMED: u64 = 4;

/// How many resources each timed request asks for together.
const COUNT: u32 = 8;

/// The diverse stream, each request asking for [`COUNT`] resources, now or never.
fn requests(n: usize) -> impl Iterator<Item = Requirements> {
    DiverseRequests::new(n, TIMED).map(|mut r| {
        r.count = COUNT;
        r.allocation_timeout_seconds = 0;
        r
    })
}

fn bench_several(c: &mut Criterion) {
    for n in SIZES {
        let mut engine: Option<Engine> = None;
        // Requests and time, those that were ready and those refused.
        let mut tally = [(0u64, Duration::ZERO); 2];
        let mut group = c.benchmark_group("several");
        group.throughput(Throughput::Elements(1));
        let mut stream = requests(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let engine = engine.get_or_insert_with(|| half_allocated_diverse(n).0);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for r in stream.by_ref().take(iters as usize) {
                    let (took, got) = timed_answer(engine, r);
                    total += took;
                    let (count, time) = &mut tally[usize::from(got)];
                    *count += 1;
                    *time += took;
                }
                total
            });
        });
        group.finish();
        let [(refused, refused_time), (ready, ready_time)] = tally;
        let mean_us = |time: Duration, count: u64| time.as_secs_f64() * 1e6 / count.max(1) as f64;
        if ready + refused > 0 {
            println!(
                "several/{n}: {ready} of {} requests for {COUNT} were ready (mean {:.0} µs), \
                 {refused} refused at once (mean {:.0} µs)",
                ready + refused,
                mean_us(ready_time, ready),
                mean_us(refused_time, refused),
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = allocate_benches::criterion();
    targets = bench_several
}
criterion_main!(benches);

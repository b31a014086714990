//! "Why not" (`Engine::explain`) on the diverse lab of issue #18, half allocated by diverse
//! requests (`testkit::labs::half_allocated_diverse`).
//!
//! At each size N:
//! - `explain/N`: one request's explanation (a dry run over every registered resource), the
//!   requests drawn from the diverse stream and one in four bent so that nothing matches (a
//!   GPU model nobody has, as a typo would ask); criterion's mean;
//! - then the same stream timed call by call: how many, and p50, p99 and max in µs
//!   (`EXPLAIN_SAMPLES` calls, default 2,000).
//!
//! Run with `cargo bench -p allocate-benches --bench explain -- 'explain/100000$'`.

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate_benches::{env_count, SIZES};
use allocate_core::{Engine, GpuRequirement, Requirements};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
use testkit::labs::{half_allocated_diverse, DiverseRequests};

/// The seed of the timed requests' stream.
const TIMED: u64 = 3;

/// The diverse stream, one request in four asking for a GPU model that no resource has.
fn requests(n: usize) -> impl Iterator<Item = Requirements> {
    DiverseRequests::new(n, TIMED)
        .enumerate()
        .map(|(i, mut r)| {
            if i % 4 == 0 {
                r.gpu = Some(GpuRequirement {
                    label: Some("RTX 2090".into()),
                    min_memory_gb: 0,
                    count: 1,
                });
            }
            r
        })
}

/// How long one explanation takes.
fn timed_explain(engine: &Engine, r: &Requirements) -> Duration {
    let start = Instant::now();
    let explanation = engine.explain(r).expect("a valid request");
    let took = start.elapsed();
    black_box(explanation);
    took
}

fn bench_explain(c: &mut Criterion) {
    for n in SIZES {
        // Built only when this size's benchmark runs (a filter such as 'explain/100000$').
        if !selected(&format!("explain/{n}")) {
            continue;
        }
        let engine = half_allocated_diverse(n).0;
        let mut group = c.benchmark_group("explain");
        group.throughput(Throughput::Elements(1));
        let mut stream = requests(n);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                stream
                    .by_ref()
                    .take(iters as usize)
                    .map(|r| timed_explain(&engine, &r))
                    .sum()
            });
        });
        group.finish();
        percentiles(&engine, n);
    }
}

/// Whether criterion's filter (the first free argument, taken as a plain text with an optional
/// `$` at its end) selects the benchmark `name`; no filter selects all.
fn selected(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|filter| match filter.strip_suffix('$') {
            Some(tail) => name.ends_with(tail),
            None => name.contains(&filter),
        })
}

/// Times `EXPLAIN_SAMPLES` explanations one by one; prints p50, p99 and max.
fn percentiles(engine: &Engine, n: usize) {
    let samples = env_count("EXPLAIN_SAMPLES", 2_000);
    let mut times: Vec<Duration> = requests(n)
        .take(samples)
        .map(|r| timed_explain(engine, &r))
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "explain/{n}: {} calls, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        times.len(),
        us(at(0.5)),
        us(at(0.99)),
        us(at(1.0))
    );
}

criterion_group! {
    name = benches;
    config = allocate_benches::criterion();
    targets = bench_explain
}
criterion_main!(benches);

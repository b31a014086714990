//! Matching and committing an allocation, against a plain linear scan of the same inventory.
//!
//! At each size the lab is first half allocated by the harness's own mix of needs. Then:
//! - `allocate/N`: one request from the mix, matched and committed (ready at once: static
//!   connections); only the request is timed, not the release that keeps the state steady;
//! - `allocate_release/N`: a request and its release, as throughput;
//! - `linear_scan/N`: the same match and commit by scanning every resource, the baseline.
//!   Before timing, the scan is checked to pick the same resource as the engine for every
//!   need of the mix.

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate_benches::{timed_pick, timed_request, SIZES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use testkit::labs::{allocate, half_allocated_catalogue, release, request_mix};

fn bench_allocate(c: &mut Criterion) {
    let mix = request_mix();
    for n in SIZES {
        let (mut engine, mut scan) = half_allocated_catalogue(n);

        let mut group = c.benchmark_group("allocate");
        group.throughput(Throughput::Elements(1));
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let r = mix[next % mix.len()].clone();
                        next += 1;
                        timed_request(&mut engine, r)
                    })
                    .sum()
            });
        });
        group.finish();

        let mut group = c.benchmark_group("allocate_release");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let r = mix[next % mix.len()].clone();
                next += 1;
                if let Some((id, _)) = allocate(&mut engine, r) {
                    release(&mut engine, id);
                }
            });
        });
        group.finish();

        let mut group = c.benchmark_group("linear_scan");
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let r = &mix[next % mix.len()];
                        next += 1;
                        timed_pick(&mut scan, r)
                    })
                    .sum()
            });
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = allocate_benches::criterion();
    targets = bench_allocate
}
criterion_main!(benches);

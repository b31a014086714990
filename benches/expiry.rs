//! Expiring leases: every resource of the lab is held, with lease ends spread over two hours;
//! `expire/N` times one `handle_timeout` past them all, which ends all N leases, frees the
//! resources and tells each client (the outputs are drained in the timed part, as a shell
//! must route them).

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate_benches::SIZES;
use allocate_core::{Engine, Output, Requirements, SeededIds};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use testkit::labs::{allocate, lab_engine, T0};

/// A lab whose every resource is held by a lease ending within two hours after the first.
fn all_leased(n: usize) -> Engine {
    let mut engine = lab_engine(n);
    for i in 0..n {
        let mut r = Requirements::for_user("ci-runner-7");
        r.allocation_timeout_seconds = 0;
        r.expires = Some(T0.as_secs() + 3_600 + (i as u64 % 7_200));
        allocate(&mut engine, r).expect("a free resource is left");
    }
    engine
}

/// Fires every lease end; returns how many allocations expired.
fn expire_all(engine: &mut Engine) -> usize {
    engine.handle_timeout(T0.add_secs(4 * 3_600));
    let mut expired = 0;
    while let Some(o) = engine.poll_output() {
        expired += usize::from(matches!(o, Output::Expired { .. }));
    }
    expired
}

fn bench_expiry(c: &mut Criterion) {
    let mut group = c.benchmark_group("expire");
    group.sample_size(10);
    for n in SIZES {
        let snapshot = all_leased(n).snapshot();
        let restored = || {
            Engine::restore(&snapshot, Box::new(SeededIds::new(2)))
                .expect("an engine's snapshot restores")
        };
        assert_eq!(expire_all(&mut restored()), n, "every lease expires");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                restored,
                |mut engine| {
                    expire_all(&mut engine);
                    engine
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = allocate_benches::criterion();
    targets = bench_expiry
}
criterion_main!(benches);

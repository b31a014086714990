//! Draining the queue: every resource is held and 1,000 requests from the harness's mix wait
//! (each placement moves the rest up, and each is told its new position); then allocations
//! are released in order, the held ones and then those served from the queue, as users finish,
//! until every waiting request has been served. `queue_drain/N` times the drain; its
//! throughput is in requests served.

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate_benches::SIZES;
use allocate_core::{Engine, Output, SeededIds, Snapshot};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use testkit::labs::{fill, lab_engine, request_mix, T0};
use uuid::Uuid;

/// Requests waiting when the drain starts.
const WAITING: usize = 1_000;

/// A full lab with `WAITING` requests queued, cycling through the needs of the mix that at
/// least one in twenty resources satisfies (so that the drain can serve them all); returns
/// the held allocations in order.
fn full_with_queue(n: usize) -> (Engine, Vec<Uuid>) {
    let mut engine = lab_engine(n);
    let held = fill(&mut engine, n);
    let mix = request_mix();
    let mut waiting = 0;
    for i in 0.. {
        let mut r = mix[i % mix.len()].clone();
        r.allocation_timeout_seconds = 3_600;
        let id = engine.request(T0, r).expect("a valid request");
        let mut matching = 0;
        while let Some(o) = engine.poll_output() {
            if let Output::Queued {
                allocation_id,
                matching_resources,
                ..
            } = o
            {
                if allocation_id == id {
                    matching = matching_resources;
                }
            }
        }
        if matching < (n / 20) as u64 {
            engine.client_gone(T0, id).expect("a known request");
            continue;
        }
        waiting += 1;
        if waiting == WAITING {
            break;
        }
    }
    while engine.poll_output().is_some() {}
    (engine, held)
}

/// Releases allocations in order (the held ones, then those served from the queue, as users
/// finish) until `WAITING` requests have become ready.
fn drain(engine: &mut Engine, held: &[Uuid]) {
    let mut to_release: VecDeque<Uuid> = held.iter().copied().collect();
    let mut served = 0;
    // Bound: every release frees a resource; far fewer than this serve the whole queue.
    for _ in 0..10 * (held.len() + WAITING) {
        let Some(id) = to_release.pop_front() else {
            break;
        };
        engine.release(T0, id).expect("a live allocation");
        while let Some(o) = engine.poll_output() {
            if let Output::Ready { allocation_id, .. } = o {
                served += 1;
                to_release.push_back(allocation_id);
            }
        }
        if served == WAITING {
            return;
        }
    }
    panic!("only {served} of {WAITING} waiting requests were served");
}

fn bench_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_drain");
    group.sample_size(10);
    group.throughput(Throughput::Elements(WAITING as u64));
    for n in SIZES {
        let (engine, held) = full_with_queue(n);
        // The engine is rebuilt from a snapshot for each drain, outside the timed part.
        let snapshot = engine.snapshot();
        drop(engine);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || restored(&snapshot),
                |mut engine| {
                    drain(&mut engine, &held);
                    engine
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

/// The engine a snapshot describes.
fn restored(snapshot: &Snapshot) -> Engine {
    Engine::restore(snapshot, Box::new(SeededIds::new(2))).expect("an engine's snapshot restores")
}

criterion_group! {
    name = benches;
    config = allocate_benches::criterion();
    targets = bench_queue
}
criterion_main!(benches);

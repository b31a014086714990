//! Matching on the diverse lab of issue #18 (`testkit::labs::diverse`): nearly every resource is its
//! own shape and nearly every request is new, so little is shared between resources or
//! between requests.
//!
//! At each size N:
//! - `diverse_best_fit/N`: the lab half allocated by diverse requests; one never-seen request,
//!   matched and committed (ready at once: static connections), timed up to its first output;
//!   the release that keeps the state steady is not timed. Before timing, the engine is checked
//!   to pick exactly what the linear scan picks, request by request, for 300 other requests;
//! - `diverse_linear_scan/N`: the same requests, in the same order, matched and committed by
//!   scanning every resource, the baseline;
//! - `diverse_exhaust/N`: a fresh lab of N free resources, then N requests, the ith derived from
//!   resource `perm[i]` of a random permutation, each asked once in turn, nothing released; the
//!   stream is timed as a whole (throughput in requests; how many were satisfied is printed,
//!   with the requests per second of the thread's CPU time, which other work on a shared
//!   machine leaves alone).
//!   `DIVERSE_EXHAUST_REQUESTS` cuts the stream to its first requests, for slow engines;
//! - `register/N`: registering N diverse resources from N / 10 agents into a fresh engine
//!   (throughput in resources; the resources per second of CPU time are printed too);
//! - `first_request/N`: the first request after those N registrations, which lays the index
//!   out (the median CPU time is printed too).
//!
//! A size's lab is built only when one of its benchmarks runs, so that a filter such as
//! `'/1000$'` skips the set-up of the larger ones. Latency percentiles are in
//! `percentiles`.

#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

use allocate_benches::{cpu_timed, env_count, per_cpu_second, timed_pick, timed_request, SIZES};
use allocate_core::{Engine, Requirements};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use testkit::labs::{
    allocate, diverse_engine, diverse_resources, engine_with, half_allocated_diverse, lab_agents,
    DiverseRequests,
};
use testkit::reference::LinearScan;
use testkit::rng::Rng;

/// The seed of the timed requests' stream.
const TIMED: u64 = 2;

fn bench_diverse(c: &mut Criterion) {
    for n in SIZES {
        best_fit(c, n);
        exhaust(c, n);
        register(c, n);
        first_request(c, n);
    }
}

/// `diverse_best_fit/N` and `diverse_linear_scan/N`.
fn best_fit(c: &mut Criterion, n: usize) {
    let mut lab: Option<(Engine, LinearScan)> = None;

    let mut group = c.benchmark_group("diverse_best_fit");
    group.throughput(Throughput::Elements(1));
    let mut requests = DiverseRequests::new(n, TIMED);
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        let (engine, _) = lab.get_or_insert_with(|| half_allocated_diverse(n));
        b.iter_custom(|iters| {
            requests
                .by_ref()
                .take(iters as usize)
                .map(|r| timed_request(engine, r))
                .sum()
        });
    });
    group.finish();

    let mut group = c.benchmark_group("diverse_linear_scan");
    group.throughput(Throughput::Elements(1));
    let mut requests = DiverseRequests::new(n, TIMED);
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        let (_, scan) = lab.get_or_insert_with(|| half_allocated_diverse(n));
        b.iter_custom(|iters| {
            requests
                .by_ref()
                .take(iters as usize)
                .map(|r| timed_pick(scan, &r))
                .sum()
        });
    });
    group.finish();
}

/// `diverse_exhaust/N`.
fn exhaust(c: &mut Criterion, n: usize) {
    let asked = env_count("DIVERSE_EXHAUST_REQUESTS", n).min(n);
    let mut requests: Option<Vec<Requirements>> = None;
    let mut satisfied = None;
    let mut cpu = Vec::new();
    let mut group = c.benchmark_group("diverse_exhaust");
    group.sample_size(10);
    group.throughput(Throughput::Elements(asked as u64));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        let requests = requests.get_or_insert_with(|| exhaust_requests(n, asked));
        b.iter_batched(
            || (diverse_engine(n), requests.clone()),
            |(mut engine, requests)| {
                let got = cpu_timed(&mut cpu, || {
                    requests
                        .into_iter()
                        .filter_map(|r| allocate(&mut engine, r))
                        .count()
                });
                satisfied = Some(got);
                engine
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
    if let Some(got) = satisfied {
        println!(
            "diverse_exhaust/{n}: {got} of {asked} requests satisfied; requests: {}",
            per_cpu_second(asked, &mut cpu)
        );
    }
}

/// The first `count` of `n` requests, the ith derived from resource `perm[i]` of a random
/// permutation of the lab.
fn exhaust_requests(n: usize, count: usize) -> Vec<Requirements> {
    let mut perm: Vec<usize> = (0..n).collect();
    Rng::new(TIMED).shuffle(&mut perm);
    let mut requests = DiverseRequests::new(n, TIMED);
    perm[..count]
        .iter()
        .map(|&i| requests.for_resource(i))
        .collect()
}

/// `register/N`.
fn register(c: &mut Criterion, n: usize) {
    let mut cpu = Vec::new();
    let mut group = c.benchmark_group("register");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_batched(
            || lab_agents(n, diverse_resources).collect::<Vec<_>>(),
            |agents| cpu_timed(&mut cpu, || engine_with(agents)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
    if !cpu.is_empty() {
        println!("register/{n}: resources: {}", per_cpu_second(n, &mut cpu));
    }
}

/// `first_request/N`.
fn first_request(c: &mut Criterion, n: usize) {
    let mut cpu = Vec::new();
    let request = DiverseRequests::new(n, TIMED).for_resource(0);
    let mut group = c.benchmark_group("first_request");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(n), |b| {
        b.iter_batched(
            || diverse_engine(n),
            |mut engine| {
                cpu_timed(&mut cpu, || allocate(&mut engine, request.clone()));
                engine
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
    cpu.sort_unstable();
    if let Some(median) = cpu.get(cpu.len() / 2) {
        println!(
            "first_request/{n}: {:.2} ms of CPU time (median of {} runs)",
            median.as_secs_f64() * 1e3,
            cpu.len()
        );
    }
}

criterion_group! {
    name = benches;
    config = allocate_benches::criterion();
    targets = bench_diverse
}
criterion_main!(benches);

//! Latency percentiles, which criterion does not report, on both labs.
//!
//! At each size N, each lab is half allocated and checked against the linear scan (as for
//! `allocate/N` and `diverse_best_fit/N`); then requests are timed one by one, the engine's
//! request up to its first output with the release untimed, and then the linear scan on the
//! same requests in the same order. Prints p50, p99 and max in µs for each:
//! - `catalogue`: the harness's 56 needs in turn, over and over (`request_mix`);
//! - `diverse`: never-seen requests, each derived from a random resource (`DiverseRequests`).
//!
//! Environment: `PERCENTILES_SAMPLES` requests per lab, size and matcher (default 20,000), cut
//! short after `PERCENTILES_SECONDS` of timing each (default 20); `PERCENTILES_SIZES`, the
//! sizes, comma separated (default 1000,10000,100000). Run with
//! `cargo bench -p allocate-benches --bench percentiles`.

use allocate_benches::{env_count, env_counts, timed_pick, timed_request, SIZES};
use allocate_core::{Engine, Requirements};
use std::time::{Duration, Instant};
use testkit::labs::{
    half_allocated_catalogue, half_allocated_diverse, request_mix, DiverseRequests,
};
use testkit::reference::LinearScan;

/// The seed of the timed diverse requests' stream (as in `diverse_best_fit`).
const TIMED: u64 = 2;

/// How many requests to time and for how long at most.
#[derive(Clone, Copy)]
struct Budget {
    samples: usize,
    limit: Duration,
}

/// Times each of `requests` (up to the budget) with `time`; prints how many, and their p50,
/// p99 and max.
fn report(
    name: &str,
    budget: Budget,
    requests: impl Iterator<Item = Requirements>,
    mut time: impl FnMut(Requirements) -> Duration,
) {
    let start = Instant::now();
    let mut times = Vec::with_capacity(budget.samples);
    for r in requests.take(budget.samples.max(1)) {
        times.push(time(r));
        if start.elapsed() >= budget.limit {
            break;
        }
    }
    times.sort_unstable();
    // The nearest rank: the smallest time at least `p` percent of the requests took no longer than.
    let at = |p: usize| times[(times.len() * p).div_ceil(100).max(1) - 1].as_secs_f64() * 1e6;
    println!(
        "percentiles/{name}: {} requests, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        times.len(),
        at(50),
        at(99),
        at(100),
    );
}

/// Reports the engine, then the linear scan, on the same requests.
fn both(
    lab: &str,
    n: usize,
    budget: Budget,
    (mut engine, mut scan): (Engine, LinearScan),
    requests: impl Iterator<Item = Requirements> + Clone,
) {
    report(
        &format!("{lab}/{n} engine"),
        budget,
        requests.clone(),
        |r| timed_request(&mut engine, r),
    );
    report(&format!("{lab}/{n} linear_scan"), budget, requests, |r| {
        timed_pick(&mut scan, &r)
    });
}

fn main() {
    let budget = Budget {
        samples: env_count("PERCENTILES_SAMPLES", 20_000),
        limit: Duration::from_secs(env_count("PERCENTILES_SECONDS", 20) as u64),
    };
    for n in env_counts("PERCENTILES_SIZES", &SIZES) {
        let mix = request_mix().into_iter().cycle();
        both("catalogue", n, budget, half_allocated_catalogue(n), mix);
        let fresh = DiverseRequests::new(n, TIMED);
        both("diverse", n, budget, half_allocated_diverse(n), fresh);
    }
}

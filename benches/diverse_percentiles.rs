//! Latency percentiles on the diverse lab, which criterion does not report.
//!
//! At each size N, the lab is half allocated and checked against the linear scan as for
//! `diverse_best_fit/N`; then never-seen requests are timed one by one, as there: the engine's
//! request up to its first output, the release untimed; then the linear scan on the same
//! requests in the same order. Prints p50, p99 and max in µs for each.
//!
//! Environment: `DIVERSE_SAMPLES` requests per size and matcher (default 20,000), cut short
//! after `DIVERSE_SECONDS` of timing each (default 20); `DIVERSE_SIZES`, the sizes, comma
//! separated (default 1000,10000,100000). Run with
//! `cargo bench -p allocate-benches --bench diverse_percentiles`.

use allocate_benches::{env_count, half_allocated_diverse, timed_request, DiverseRequests, SIZES};
use allocate_core::Requirements;
use std::time::{Duration, Instant};

/// The seed of the timed requests' stream.
const TIMED: u64 = 2;

/// The sizes to run, from `DIVERSE_SIZES`.
fn sizes() -> Vec<usize> {
    match std::env::var("DIVERSE_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("DIVERSE_SIZES={v} is not a list of sizes"))
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

/// Times up to `samples` fresh requests for a lab of `n` with `time`, stopping after `limit`;
/// prints how many, and their p50, p99 and max.
fn report(
    name: &str,
    n: usize,
    samples: usize,
    limit: Duration,
    mut time: impl FnMut(Requirements) -> Duration,
) {
    let start = Instant::now();
    let mut times = Vec::with_capacity(samples);
    for r in DiverseRequests::new(n, TIMED).take(samples.max(1)) {
        times.push(time(r));
        if start.elapsed() >= limit {
            break;
        }
    }
    times.sort_unstable();
    // The nearest rank: the smallest time at least `p` percent of the requests took no longer than.
    let at = |p: usize| times[(times.len() * p).div_ceil(100).max(1) - 1].as_secs_f64() * 1e6;
    println!(
        "diverse_percentiles/{n} {name}: {} requests, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        times.len(),
        at(50),
        at(99),
        at(100),
    );
}

fn main() {
    let samples = env_count("DIVERSE_SAMPLES", 20_000);
    let limit = Duration::from_secs(env_count("DIVERSE_SECONDS", 20) as u64);
    for n in sizes() {
        let (mut engine, mut scan) = half_allocated_diverse(n);
        report("engine", n, samples, limit, |r| {
            timed_request(&mut engine, r)
        });
        report("linear_scan", n, samples, limit, |r| scan.timed_pick(&r));
    }
}

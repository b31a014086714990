//! What only the benchmarks use: the sizes they run at, criterion's settings, counts from the
//! environment, the timed steps and CPU time. The labs, their request streams and the linear scan baseline come from
//! `testkit` (`testkit::labs`, `testkit::reference::LinearScan`).

use allocate_core::{Engine, Output, Requirements};
use criterion::Criterion;
use std::hint::black_box;
use std::time::{Duration, Instant};
use testkit::labs::{release, T0};
use testkit::reference::LinearScan;

/// The inventory sizes every benchmark runs at.
pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// Criterion with the settings every criterion benchmark here runs with: a second of warm-up
/// and three of measurement per benchmark.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The count in environment variable `name` (underscores allowed, as in `1_000`), or
/// `default` when it is unset.
pub fn env_count(name: &str, default: usize) -> usize {
    env_counts(name, &[default])[0]
}

/// The comma-separated counts in environment variable `name` (underscores allowed), or
/// `default` when it is unset.
pub fn env_counts(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a list of counts"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// Times one request up to its first output (the answer a client waits for); then, untimed,
/// releases what it got and drains the outputs, so the engine is as it was.
pub fn timed_request(engine: &mut Engine, r: Requirements) -> Duration {
    timed_answer(engine, r).0
}

/// [`timed_request`], also saying whether the first output was `ready`.
pub fn timed_answer(engine: &mut Engine, r: Requirements) -> (Duration, bool) {
    let start = Instant::now();
    let id = engine.request(T0, r).expect("a valid request");
    let ready = matches!(engine.poll_output(), Some(Output::Ready { .. }));
    let timed = start.elapsed();
    if ready {
        release(engine, id);
    }
    while engine.poll_output().is_some() {}
    (timed, ready)
}

/// Times one match by the linear scan and its commit (the pick marked taken); then, untimed,
/// frees the pick again, so the scan is as it was.
pub fn timed_pick(scan: &mut LinearScan, req: &Requirements) -> Duration {
    let start = Instant::now();
    let pick = black_box(scan.best_free(req));
    if let Some(i) = pick {
        scan.set_free(i, false);
    }
    let timed = start.elapsed();
    if let Some(i) = pick {
        scan.set_free(i, true);
    }
    timed
}

/// The CPU time the calling thread has used: unlike the wall clock, it leaves out the time
/// other processes on a shared machine hold the cores.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Runs `f`, adding the CPU time it took to `times`.
pub fn cpu_timed<R>(times: &mut Vec<Duration>, f: impl FnOnce() -> R) -> R {
    let start = thread_cpu_time();
    let r = f();
    times.push(thread_cpu_time() - start);
    r
}

/// `count` per CPU second at the median of `times`, and how many runs those are, for a line
/// printed after criterion's (its warm-up runs included).
pub fn per_cpu_second(count: usize, times: &mut [Duration]) -> String {
    times.sort_unstable();
    let Some(median) = times.get(times.len() / 2) else {
        return "no runs".to_owned();
    };
    format!(
        "{:.0} per CPU second (median of {} runs)",
        count as f64 / median.as_secs_f64(),
        times.len()
    )
}

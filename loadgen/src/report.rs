//! What the scenarios measured, and the summary tables printed at the end.

use crate::server::{machine_busy_time, own_cpu_time, Server};
use crate::users::Run;
use std::fmt::Write as _;
use std::time::Duration;

/// Percentiles of a set of latency samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// Median, in microseconds.
    pub p50_us: u32,
    /// 99th percentile, in microseconds.
    pub p99_us: u32,
    /// Largest, in microseconds.
    pub max_us: u32,
}

impl Latency {
    /// The percentiles of `samples` (nearest rank); all zero when there are none.
    pub fn of(samples: &mut [u32]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Latency {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: samples[samples.len() - 1],
        }
    }
}

/// One measured phase of a scenario.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// The scenario and phase, such as `queued/with 10000 waiting`.
    pub name: String,
    /// Cycles (or hand-offs) completed.
    pub cycles: u64,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Time to ready (hand-off latency for hand-offs).
    pub latency: Latency,
    /// Server CPU time during the phase.
    pub server_cpu: Duration,
    /// Load generator CPU time during the phase.
    pub loadgen_cpu: Duration,
    /// The server's peak RSS at the end of the phase, in KiB.
    pub peak_rss_kib: u64,
    /// CPU time of other processes on the machine during the phase (noise in the numbers).
    pub others_cpu: Duration,
}

impl Phase {
    /// Completed cycles per second.
    pub fn rate(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The share of the machine's cores that other processes used during the phase.
    pub fn others_share(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.others_cpu.as_secs_f64() / (self.elapsed.as_secs_f64().max(1e-9) * cores as f64)
    }
}

/// A target of the issue and whether it was met.
#[derive(Clone, Debug)]
pub struct Check {
    /// What is measured.
    pub what: String,
    /// The target, in words.
    pub target: String,
    /// What was measured, in words.
    pub measured: String,
    /// Whether the target was met.
    pub pass: bool,
}

/// Everything the run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Measured phases, in order.
    pub phases: Vec<Phase>,
    /// Targets checked.
    pub checks: Vec<Check>,
    /// Remarks (skipped scenarios, extra measurements).
    pub notes: Vec<String>,
    /// Failures, one line per kind, prefixed with the scenario.
    pub failures: Vec<String>,
    /// Number of failures.
    pub errors: u64,
}

impl Report {
    /// Adds a check.
    pub fn check(&mut self, what: &str, target: &str, measured: String, pass: bool) {
        self.checks.push(Check {
            what: what.to_owned(),
            target: target.to_owned(),
            measured,
            pass,
        });
    }

    /// The summary tables as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<34} {:>8} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>7}",
            "phase",
            "cycles",
            "cycles/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "srv us/cy",
            "gen us/cy",
            "RSS MiB",
            "others"
        );
        for p in &self.phases {
            let per_cycle = |d: Duration| d.as_secs_f64() * 1e6 / (p.cycles.max(1) as f64);
            let _ = writeln!(
                out,
                "{:<34} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>10.0} {:>10.0} {:>9.1} {:>6.0}%",
                p.name,
                p.cycles,
                p.rate(),
                ms(p.latency.p50_us),
                ms(p.latency.p99_us),
                ms(p.latency.max_us),
                per_cycle(p.server_cpu),
                per_cycle(p.loadgen_cpu),
                p.peak_rss_kib as f64 / 1024.0,
                p.others_share() * 100.0,
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<48} {:<14} {:<22} result",
            "target", "goal", "measured"
        );
        for c in &self.checks {
            let result = if c.pass { "PASS" } else { "MISS" };
            let _ = writeln!(
                out,
                "{:<48} {:<14} {:<22} {result}",
                c.what, c.target, c.measured
            );
        }
        let result = if self.errors == 0 { "PASS" } else { "MISS" };
        let _ = writeln!(
            out,
            "{:<48} {:<14} {:<22} {result}",
            "errors", "0", self.errors
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for failure in &self.failures {
            let _ = writeln!(out, "failure: {failure}");
        }
        out
    }
}

/// CPU time used so far by the server, the load generator and the whole machine.
pub struct CpuTimes {
    /// The server's.
    pub server: Duration,
    /// This process's.
    pub own: Duration,
    /// The whole machine's busy time.
    pub machine: Duration,
}

impl CpuTimes {
    /// The times now.
    pub fn now(server: &Server) -> CpuTimes {
        CpuTimes {
            server: server.cpu_time(),
            own: own_cpu_time(),
            machine: machine_busy_time(),
        }
    }
}

/// The phase `name` of `run`, with the CPU times since `before`.
pub fn phase(server: &Server, name: String, mut run: Run, before: CpuTimes) -> Phase {
    let after = CpuTimes::now(server);
    let server_cpu = after.server.saturating_sub(before.server);
    let loadgen_cpu = after.own.saturating_sub(before.own);
    let machine = after.machine.saturating_sub(before.machine);
    Phase {
        name,
        cycles: run.cycles,
        elapsed: run.elapsed,
        latency: Latency::of(&mut run.samples_us),
        server_cpu,
        loadgen_cpu,
        peak_rss_kib: server.peak_rss_kib(),
        others_cpu: machine.saturating_sub(server_cpu + loadgen_cpu),
    }
}

/// Microseconds as milliseconds.
pub fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (50, 99, 100));
        assert_eq!(Latency::of(&mut []).max_us, 0);
        assert_eq!(Latency::of(&mut [7]).p99_us, 7);
    }
}

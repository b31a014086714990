//! `GET /metrics` in the Prometheus text format, from the engine's [`Stats`] and what the
//! engine task observes (time to ready, connected clients).

use allocate_core::{AllocationState, ResourceState, Stats};
use std::fmt::Write;

/// Upper bounds (seconds) of the time-to-ready histogram's buckets.
const READY_BUCKETS_SECS: [f64; 12] = [
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// What the engine task counts itself.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Allocations that became ready.
    ready_total: u64,
    /// Per bucket of [`READY_BUCKETS_SECS`], how many took at most that long (not cumulative).
    ready_buckets: [u64; READY_BUCKETS_SECS.len()],
    /// Sum of the times to ready, in milliseconds.
    ready_ms_sum: u64,
}

impl Metrics {
    /// Records an allocation that became ready `ms` milliseconds after it was requested.
    pub fn observe_ready(&mut self, ms: u64) {
        self.ready_total += 1;
        self.ready_ms_sum = self.ready_ms_sum.saturating_add(ms);
        let secs = ms as f64 / 1000.0;
        if let Some(i) = READY_BUCKETS_SECS.iter().position(|le| secs <= *le) {
            self.ready_buckets[i] += 1;
        }
    }

    /// The whole exposition, given the engine's counts and the number of client sockets.
    pub fn render(&self, stats: &Stats, clients_connected: usize) -> String {
        let mut out = String::new();
        let resources = ResourceState::ALL
            .iter()
            .zip(stats.resources_by_state)
            .map(|(s, n)| (format!("state=\"{}\"", s.as_str()), n));
        family(
            &mut out,
            "allocate_resources",
            "gauge",
            "Registered resources by state.",
            resources,
        );
        let live = [
            ("queued", stats.queued),
            ("provisioning", stats.provisioning),
            ("ready", stats.ready),
        ];
        let live = live.map(|(s, n)| (format!("state=\"{s}\""), n));
        family(
            &mut out,
            "allocate_allocations",
            "gauge",
            "Live allocations by state.",
            live,
        );
        let one = |n| [(String::new(), n)];
        family(
            &mut out,
            "allocate_queue_length",
            "gauge",
            "Requests waiting in the queue.",
            one(stats.queued),
        );
        let ended = AllocationState::ENDED
            .iter()
            .zip(stats.ended_by_state)
            .map(|(s, n)| (format!("outcome=\"{}\"", s.as_str()), n));
        family(
            &mut out,
            "allocate_allocations_ended_total",
            "counter",
            "Allocations that ended, by outcome.",
            ended,
        );
        family(
            &mut out,
            "allocate_allocations_ready_total",
            "counter",
            "Allocations that became ready.",
            one(self.ready_total),
        );
        self.render_ready_histogram(&mut out);
        family(
            &mut out,
            "allocate_agents_connected",
            "gauge",
            "Agents with an open socket.",
            one(stats.agents_online),
        );
        family(
            &mut out,
            "allocate_clients_connected",
            "gauge",
            "Client sockets on /allocate/ waiting on or holding an allocation.",
            one(clients_connected as u64),
        );
        out
    }

    fn render_ready_histogram(&self, out: &mut String) {
        let name = "allocate_time_to_ready_seconds";
        let _ = writeln!(out, "# HELP {name} Time from request to ready.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, n) in READY_BUCKETS_SECS.iter().zip(self.ready_buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.ready_total);
        let _ = writeln!(out, "{name}_sum {}", self.ready_ms_sum as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count {}", self.ready_total);
    }
}

/// Appends the connection families to an exposition: `open` connections now, and those
/// refused with `503` since start, by the cap that refused them (`total`, `peer`).
pub fn render_connections(out: &mut String, open: u64, refused_total: u64, refused_peer: u64) {
    family(
        out,
        "allocate_connections_open",
        "gauge",
        "Open connections (HTTP and websockets).",
        [(String::new(), open)],
    );
    let refused = [("total", refused_total), ("peer", refused_peer)]
        .map(|(cap, n)| (format!("cap=\"{cap}\""), n));
    family(
        out,
        "allocate_connections_refused_total",
        "counter",
        "Connections answered 503 and closed because a cap was reached.",
        refused,
    );
}

/// Writes one metric family: its help, type and one sample per `(labels, value)`.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_and_a_cumulative_histogram() {
        let mut m = Metrics::default();
        m.observe_ready(3);
        m.observe_ready(700);
        m.observe_ready(4_000_000);
        let stats = Stats {
            resources_by_state: [2, 1, 0, 0, 0],
            queued: 4,
            agents_online: 1,
            ended_by_state: [5, 0, 1, 0],
            ..Stats::default()
        };
        let mut text = m.render(&stats, 3);
        render_connections(&mut text, 9, 2, 5);
        for line in [
            "allocate_resources{state=\"free\"} 2",
            "allocate_queue_length 4",
            "allocate_allocations{state=\"queued\"} 4",
            "allocate_allocations_ended_total{outcome=\"released\"} 5",
            "allocate_allocations_ended_total{outcome=\"timed_out\"} 1",
            "# TYPE allocate_time_to_ready_seconds histogram",
            "allocate_time_to_ready_seconds_bucket{le=\"0.005\"} 1",
            "allocate_time_to_ready_seconds_bucket{le=\"1\"} 2",
            "allocate_time_to_ready_seconds_bucket{le=\"1800\"} 2",
            "allocate_time_to_ready_seconds_bucket{le=\"+Inf\"} 3",
            "allocate_time_to_ready_seconds_count 3",
            "allocate_agents_connected 1",
            "allocate_clients_connected 3",
            "allocate_connections_open 9",
            "allocate_connections_refused_total{cap=\"total\"} 2",
            "allocate_connections_refused_total{cap=\"peer\"} 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}

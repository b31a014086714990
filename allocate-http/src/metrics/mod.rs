//! `GET /metrics` in the Prometheus text format: from the engine's [`Stats`] and what the
//! engine task observes ([`Metrics`]: time to ready, queue wait), from what every thread
//! observes ([`ServerMetrics`]: HTTP requests, journal commits, the role on a shared store
//! and a standby's lag: [`Replication`]), and of the process itself.
//! Formatted by hand: a handful of families, each written by [`family`] or
//! [`histogram_family`].

mod histogram;
#[cfg(target_os = "linux")]
mod process;
mod replication;

pub use histogram::Histogram;
pub use replication::Replication;

use allocate_core::{AllocationState, ResourceState, Stats};
use histogram::histogram_family;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a request left the queue, as `allocate_queue_wait_seconds` labels it.
const QUEUE_OUTCOMES: [AllocationState; 4] = [
    AllocationState::Ready,
    AllocationState::TimedOut,
    AllocationState::Cancelled,
    AllocationState::Released,
];

/// What the engine task counts itself.
#[derive(Debug)]
pub struct Metrics {
    /// Time from request to ready.
    ready: Histogram,
    /// Time from request to leaving the queue, per outcome of [`QUEUE_OUTCOMES`].
    queue_wait: [Histogram; QUEUE_OUTCOMES.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ready: Histogram::new(Histogram::WAIT_BUCKETS_SECS),
            queue_wait: QUEUE_OUTCOMES.map(|_| Histogram::new(Histogram::WAIT_BUCKETS_SECS)),
        }
    }
}

impl Metrics {
    /// Records an allocation that became ready `ms` milliseconds after it was requested.
    pub fn observe_ready(&mut self, ms: u64) {
        self.ready.observe(Duration::from_millis(ms));
        self.observe_left_queue(AllocationState::Ready, ms);
    }

    /// Records a request that stopped waiting `ms` milliseconds after it was made, in state
    /// `outcome` (ready, or ended without a lease); other states are not counted.
    pub fn observe_left_queue(&mut self, outcome: AllocationState, ms: u64) {
        if let Some(i) = QUEUE_OUTCOMES.iter().position(|s| *s == outcome) {
            self.queue_wait[i].observe(Duration::from_millis(ms));
        }
    }

    /// The engine's families, given its counts and the number of client sockets.
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
            one(self.ready.count()),
        );
        histogram_family(
            &mut out,
            "allocate_time_to_ready_seconds",
            "Time from request to ready.",
            [(String::new(), &self.ready)],
        );
        let waits = QUEUE_OUTCOMES
            .iter()
            .zip(&self.queue_wait)
            .map(|(s, h)| (format!("outcome=\"{}\"", s.as_str()), h));
        histogram_family(
            &mut out,
            "allocate_queue_wait_seconds",
            "Time from request to ready, or to leaving the queue without a lease, by outcome.",
            waits,
        );
        render_failures(&mut out, stats);
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
}

/// The failure counters by agent (only agents that failed at least once).
fn render_failures(out: &mut String, stats: &Stats) {
    let by_agent = |pick: fn(&allocate_core::AgentFailures) -> u64| {
        stats
            .failures_by_agent
            .iter()
            .map(move |(agent, f)| (format!("agent_id=\"{agent}\""), pick(f)))
            .filter(|(_, n)| *n > 0)
    };
    family(
        out,
        "allocate_provision_failures_total",
        "counter",
        "Provisions that an agent answered with a failure or did not answer in time, by agent.",
        by_agent(|f| f.provision),
    );
    family(
        out,
        "allocate_release_failures_total",
        "counter",
        "Releases that an agent did not acknowledge in time, by agent.",
        by_agent(|f| f.release),
    );
}

/// One HTTP series: method, route template and status.
type HttpKey = (&'static str, String, u16);

/// What any thread observes: HTTP requests (the router's middleware) and journal commits
/// (the writer thread). Shared behind an [`Arc`].
#[derive(Debug)]
pub struct ServerMetrics {
    /// Per method, route template and status. Bounded: the routes are the router's, methods
    /// outside the standard ones count as `OTHER`, and statuses are three digits.
    http: Mutex<BTreeMap<HttpKey, Histogram>>,
    /// How long each group commit of the journal took (none in memory).
    journal_commit: Option<Arc<Histogram>>,
    /// The role and lag on a PostgreSQL store (none on a data directory or in memory).
    replication: Option<Arc<Replication>>,
}

/// The route label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

impl ServerMetrics {
    /// Metrics of a server whose journal observes its commits into `journal_commit`, and
    /// whose role on a shared store is in `replication`.
    pub fn new(
        journal_commit: Option<Arc<Histogram>>,
        replication: Option<Arc<Replication>>,
    ) -> ServerMetrics {
        ServerMetrics {
            http: Mutex::default(),
            journal_commit,
            replication,
        }
    }

    /// Records an HTTP request to `route` (the router's template, such as
    /// `/allocate/{id}`, or [`UNMATCHED_ROUTE`]) answered with `status` after `took`.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = STANDARD_METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("OTHER");
        let Ok(mut http) = self.http.lock() else {
            return;
        };
        http.entry((method, route.to_owned(), status))
            .or_insert_with(|| Histogram::new(Histogram::SERVE_BUCKETS_SECS))
            .observe(took);
    }

    /// Appends the HTTP, journal, replication, build and process families.
    pub fn render(&self, out: &mut String) {
        if let Ok(http) = self.http.lock() {
            let labels = |(method, route, status): &HttpKey| {
                format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"")
            };
            family(
                out,
                "allocate_http_requests_total",
                "counter",
                "HTTP requests answered, by method, route template and status.",
                http.iter().map(|(k, h)| (labels(k), h.count())),
            );
            histogram_family(
                out,
                "allocate_http_request_duration_seconds",
                "Time from a request to its answer's head, by method, route template and status.",
                http.iter().map(|(k, h)| (labels(k), h)),
            );
        }
        if let Some(commits) = &self.journal_commit {
            histogram_family(
                out,
                "allocate_journal_commit_seconds",
                "Time each group commit of the journal took (one sync, or one transaction).",
                [(String::new(), &**commits)],
            );
        }
        if let Some(replication) = &self.replication {
            replication.render(out);
        }
        let version = env!("CARGO_PKG_VERSION");
        family(
            out,
            "allocate_build_info",
            "gauge",
            "Always 1; the server's version in a label.",
            [(format!("version=\"{version}\""), 1)],
        );
        #[cfg(target_os = "linux")]
        render_process(out);
    }
}

/// The methods counted under their own name.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The `process_*` families, named as Prometheus' client libraries name them.
#[cfg(target_os = "linux")]
fn render_process(out: &mut String) {
    let Some(p) = process::read() else {
        return;
    };
    let gauges: [(&str, &str, &str, f64); 5] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds as f64,
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            p.max_fds as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(out, name, kind, help, [(String::new(), value)]);
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
fn family<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, V)>,
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
        m.observe_left_queue(AllocationState::Cancelled, 20);
        m.observe_left_queue(AllocationState::Expired, 20);
        let agent = uuid::Uuid::from_u128(7);
        let failures = allocate_core::AgentFailures {
            provision: 2,
            release: 0,
        };
        let stats = Stats {
            resources_by_state: [2, 1, 0, 0, 0, 0],
            queued: 4,
            agents_online: 1,
            ended_by_state: [5, 0, 1, 0],
            failures_by_agent: [(agent, failures)].into(),
            ..Stats::default()
        };
        let mut text = m.render(&stats, 3);
        render_connections(&mut text, 9, 2, 5);
        let server = ServerMetrics::new(
            Some(Arc::new(Histogram::new(Histogram::SERVE_BUCKETS_SECS))),
            Some(Arc::default()),
        );
        server.observe_request("GET", "/allocate/{id}", 404, Duration::from_micros(300));
        server.observe_request("BREW", UNMATCHED_ROUTE, 405, Duration::from_micros(300));
        server.render(&mut text);
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
            "allocate_queue_wait_seconds_count{outcome=\"ready\"} 3",
            "allocate_queue_wait_seconds_count{outcome=\"cancelled\"} 1",
            "allocate_queue_wait_seconds_count{outcome=\"timed_out\"} 0",
            "allocate_provision_failures_total{agent_id=\"00000000-0000-0000-0000-000000000007\"} 2",
            "# TYPE allocate_release_failures_total counter",
            "allocate_http_requests_total{method=\"GET\",route=\"/allocate/{id}\",status=\"404\"} 1",
            "allocate_http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"405\"} 1",
            "allocate_http_request_duration_seconds_bucket{method=\"GET\",route=\"/allocate/{id}\",status=\"404\",le=\"0.0005\"} 1",
            "allocate_journal_commit_seconds_count 0",
            "allocate_role{role=\"standby\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let build = format!(
            "allocate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == build), "{text}");
    }
}

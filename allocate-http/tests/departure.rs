//! Many waiting clients leaving the queue at once, against the real binary with its journal:
//! the server's CPU time for it stays in proportion to the work (not quadratic), its memory
//! near the figure before they left, and a client that stays hears its latest position, not
//! one message per client that left before it.
//!
//! `ALLOCATE_DEPARTURE_WAITERS` sets how many leave (default 3,000; the load generator's
//! `departure` scenario measures 10,000 with a release build, see BENCHMARKS.md).

mod common;

use common::{recv_status, resource, send, Ws, STEP};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::connect_async;

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_allocate-http");

/// How long the queue may take to empty, or to fill, at most.
const SETTLE_MAX: Duration = Duration::from_secs(120);

/// Clients connecting at once while the queue fills.
const CONNECTS_AT_ONCE: usize = 64;

/// The server binary on a loopback port with a journal in a scratch folder; killed, and the
/// folder removed, on drop.
struct Binary {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Binary {
    fn spawn() -> Binary {
        let dir = tempfile::tempdir().expect("scratch dir");
        let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let mut command = Command::new(SERVER_BIN);
        testkit::env::without_allocate_vars(&mut command);
        let data = dir.path().join("data");
        let child = command
            .current_dir(dir.path())
            .args(["--listen", &addr.to_string(), "--log-level", "warn"])
            .args(["--idle-timeout-ms", "600000", "--data-dir"])
            .arg(&data)
            // Every waiting client connects from 127.0.0.1: lift the per-address cap.
            .args(["--connections-per-peer-max", "1048576"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start allocate-http");
        Binary {
            child,
            addr,
            _dir: dir,
        }
    }

    fn proc_file(&self, name: &str) -> String {
        let path = format!("/proc/{}/{name}", self.child.id());
        std::fs::read_to_string(path).expect("the server's /proc entry")
    }

    /// A `kB` field of `/proc/PID/status`, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = self.proc_file("status");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .expect("the field");
        line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("a number of kB")
    }

    /// User and system CPU time so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = self.proc_file("stat");
        let (_, rest) = stat.rsplit_once(')').expect("the command name ends");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| fields[i].parse::<u64>().expect("ticks");
        tick(11) + tick(12)
    }

    async fn ws(&self, path: &str) -> Ws {
        let url = format!("ws://{}{path}", self.addr);
        tokio::time::timeout(STEP, connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket connect")
            .0
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("http://{}{path}", self.addr);
        tokio::time::timeout(STEP, reqwest::get(url))
            .await
            .expect("an answer in time")
            .expect("an HTTP answer")
    }

    /// `allocate_queue_length` from `/metrics`.
    async fn queue_length(&self) -> u64 {
        let text = self.get("/metrics").await.text().await.expect("metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("allocate_queue_length "))
            .and_then(|v| v.trim().parse().ok())
            .expect("allocate_queue_length in /metrics")
    }

    /// Waits until the queue holds `want` requests.
    async fn wait_queue_length(&self, want: u64) {
        let deadline = Instant::now() + SETTLE_MAX;
        while self.queue_length().await != want {
            assert!(Instant::now() < deadline, "the queue never held {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + STEP;
        loop {
            let url = format!("http://{}/healthz", self.addr);
            if reqwest::get(url).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "the server never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scarce(username: &str) -> Value {
    json!({"requirements": {"tags": ["scarce"], "username": username,
                            "allocation_timeout_seconds": 3600}})
}

/// Opens a client that asks for the scarce resource and is told `queued`.
async fn waiter(server: &Binary) -> Ws {
    let mut ws = server.ws("/allocate/").await;
    send(&mut ws, scarce("waiter")).await;
    recv_status(&mut ws, "queued").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_waiting_clients_leave_at_once_cheaply() {
    let count: usize = std::env::var("ALLOCATE_DEPARTURE_WAITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let server = Binary::spawn();
    server.wait_healthy().await;
    let mut agent = server.ws("/agent/").await;
    let registration = json!({"agent_id": uuid::Uuid::new_v4().to_string(),
                              "resources": [resource(&["scarce"], 1, Some("h"))]});
    send(&mut agent, registration).await;
    common::recv(&mut agent).await;
    let mut holder = server.ws("/allocate/").await;
    // The holder keeps its allocation (and its socket) until the end.
    send(&mut holder, scarce("holder")).await;
    recv_status(&mut holder, "ready").await;

    let ticks_before_queueing = server.cpu_ticks();
    let leaving: Vec<Ws> = futures_util::stream::iter(0..count)
        .map(|_| waiter(&server))
        .buffer_unordered(CONNECTS_AT_ONCE)
        .collect()
        .await;
    let mut survivor = server.ws("/allocate/").await;
    send(&mut survivor, scarce("survivor")).await;
    let first = recv_status(&mut survivor, "queued").await;
    assert_eq!(first["position"], count + 1);
    server.wait_queue_length(count as u64 + 1).await;
    let queueing_ticks = server.cpu_ticks() - ticks_before_queueing;

    let (ticks, rss) = (server.cpu_ticks(), server.status_kib("VmRSS:"));
    let t0 = Instant::now();
    drop(leaving);
    let mut heard = 0;
    loop {
        let data = recv_status(&mut survivor, "queued").await;
        heard += 1;
        if data["position"] == 1 {
            break;
        }
        assert!(t0.elapsed() < SETTLE_MAX, "the survivor never moved to 1");
    }
    server.wait_queue_length(1).await;
    let departure_ticks = server.cpu_ticks() - ticks;
    let peak = server.status_kib("VmHWM:");
    let grew_kib = peak.saturating_sub(rss);
    eprintln!(
        "{count} left in {:?}: server CPU {departure_ticks} ticks (queueing them: \
         {queueing_ticks}), RSS {rss} KiB before, peak {peak} KiB; the survivor heard \
         {heard} positions",
        t0.elapsed()
    );
    // One message per client that left would be `count`; one per batch or journal sync is
    // what coalescing leaves.
    assert!(heard <= count / 4, "the survivor heard {heard} positions");
    // Leaving costs about as much as queueing did (linear), not a multiple of it.
    assert!(
        departure_ticks <= queueing_ticks.max(100),
        "leaving took {departure_ticks} ticks of CPU, queueing {queueing_ticks}"
    );
    // Superseded positions are neither kept nor sent: memory stays near where it was.
    assert!(grew_kib <= 32 * 1024, "peak RSS grew by {grew_kib} KiB");

    // The queue still counts right for whoever comes next.
    let mut follow_up = server.ws("/allocate/").await;
    send(&mut follow_up, scarce("late")).await;
    let late = recv_status(&mut follow_up, "queued").await;
    assert_eq!(late["position"], 2);
}

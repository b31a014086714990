//! Allocations per second with the journal against `--in-memory`, in one run, under 64
//! concurrent clients on loopback: each client opens `/allocate/`, waits for `ready`, frees
//! the allocation with `DELETE`, and starts over; an allocation counts when its `DELETE`
//! is answered. The two modes take turns, round after round, and each round pair gives a
//! ratio, so that load from outside the benchmark that comes and goes weighs on both. The
//! run fails when the median ratio is below one half.
//!
//! `cargo bench -p allocate-http --bench durability`; `ALLOCATE_BENCH_CLIENTS` (64),
//! `ALLOCATE_BENCH_SECS` (3 per round) and `ALLOCATE_BENCH_ROUNDS` (7) change the load. The
//! journal goes to a temporary directory in `ALLOCATE_BENCH_DIR`, by default under cargo's
//! target directory (a real disk rather than a tmpfs, where a sync costs nothing).

use allocate_http::{run, JournalConfig, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The throughput the journal must keep, as a share of in-memory.
const KEEP_AT_LEAST: f64 = 0.5;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one round measured.
#[derive(Clone, Copy, Debug)]
struct Round {
    per_sec: f64,
    ready_p50_ms: f64,
    ready_p99_ms: f64,
}

fn main() -> ExitCode {
    let clients = setting("ALLOCATE_BENCH_CLIENTS", 64);
    let secs = setting("ALLOCATE_BENCH_SECS", 3);
    let rounds = setting("ALLOCATE_BENCH_ROUNDS", 7).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let base = std::env::var_os("ALLOCATE_BENCH_DIR").map_or_else(
        || env!("CARGO_TARGET_TMPDIR").into(),
        std::path::PathBuf::from,
    );
    let scratch = tempfile::tempdir_in(base).expect("temp dir");
    let (mut memory, mut journal, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let config = ServerConfig {
            journal: Some(JournalConfig::new(
                scratch.path().join(format!("data-{round}")),
            )),
            ..ServerConfig::default()
        };
        // Which mode goes first alternates, so that neither always gets the warmer machine.
        let (m, j) = if round % 2 == 0 {
            let m = runtime.block_on(measure(ServerConfig::default(), clients, secs));
            (m, runtime.block_on(measure(config, clients, secs)))
        } else {
            let j = runtime.block_on(measure(config, clients, secs));
            (
                runtime.block_on(measure(ServerConfig::default(), clients, secs)),
                j,
            )
        };
        println!(
            "  round {round}: in-memory {:>6.0}/s, journal {:>6.0}/s ({:.0}%)",
            m.per_sec,
            j.per_sec,
            100.0 * j.per_sec / m.per_sec
        );
        ratios.push(j.per_sec / m.per_sec);
        memory.push(m);
        journal.push(j);
    }
    let (memory, journal) = (median(memory), median(journal));
    println!("allocate/{clients} clients, {secs} s x {rounds} rounds (medians):");
    for (name, r) in [("in-memory", memory), ("journal", journal)] {
        println!(
            "  {name:<10} {:>8.0} allocations/s   ready p50 {:>6.2} ms   p99 {:>6.2} ms",
            r.per_sec, r.ready_p50_ms, r.ready_p99_ms
        );
    }
    ratios.sort_by(f64::total_cmp);
    let kept = ratios[ratios.len() / 2];
    println!(
        "  the journal keeps {:.0}% of the in-memory throughput (median of the rounds' ratios; \
         at least {:.0}% required)",
        kept * 100.0,
        KEEP_AT_LEAST * 100.0
    );
    if kept >= KEEP_AT_LEAST {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn median(mut rounds: Vec<Round>) -> Round {
    rounds.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
    rounds[rounds.len() / 2]
}

/// Time under load before counting starts (connections, caches, the first snapshot).
const WARMUP: Duration = Duration::from_millis(500);

/// Runs one server with `config`, loads it for `WARMUP` and then `secs`, stops it.
async fn measure(config: ServerConfig, clients: u64, secs: u64) -> Round {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, config, async move {
        let _ = stopped.await;
    }));
    let agent = register_agent(addr, clients as usize * 2).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(addr, format!("bench-{c}"), stop.clone())))
        .collect();
    tokio::time::sleep(WARMUP).await;
    let (from, until) = (Instant::now(), Instant::now() + Duration::from_secs(secs));
    tokio::time::sleep_until(until.into()).await;
    stop.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    for task in tasks {
        let done = task.await.expect("client task");
        latencies.extend(
            done.into_iter()
                .filter(|&(at, _)| at >= from && at <= until)
                .map(|(_, ms)| ms),
        );
    }
    let elapsed = until.duration_since(from).as_secs_f64();
    drop(agent);
    let _ = stop_server.send(());
    server.await.expect("server task").expect("server result");
    latencies.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Round {
        per_sec: latencies.len() as f64 / elapsed,
        ready_p50_ms: at(0.5),
        ready_p99_ms: at(0.99),
    }
}

/// An agent with `n` static machines; the socket is read until the server closes it.
async fn register_agent(addr: SocketAddr, n: usize) -> tokio::task::JoinHandle<()> {
    let (mut ws, _) = connect_async(format!("ws://{addr}/agent/"))
        .await
        .expect("agent connects");
    let machines: Vec<Value> = (0..n)
        .map(|i| {
            json!({"labels": ["bench"], "cpu_count": 8, "memory_gb": 32, "gpu": [], "type": "VM",
                   "connection": {"host": format!("10.1.{}.{}", i / 250, i % 250),
                                  "username": "lab", "password": "pw"}})
        })
        .collect();
    let hello = json!({"agent_id": uuid::Uuid::new_v4(), "resources": machines});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .expect("register");
    ws.next()
        .await
        .expect("a reply")
        .expect("the registration reply");
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// Allocates, waits for `ready`, deletes, and again, until `stop`; returns when each
/// allocation completed (its `DELETE` answered) and its time to `ready` in milliseconds.
async fn client(addr: SocketAddr, user: String, stop: Arc<AtomicBool>) -> Vec<(Instant, f64)> {
    let http = reqwest::Client::new();
    let request = json!({"requirements": {"tags": ["bench"], "username": user,
                         "allocation_timeout_seconds": 30}})
    .to_string();
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        let (mut ws, _) = connect_async(format!("ws://{addr}/allocate/"))
            .await
            .expect("client connects");
        ws.send(Message::Text(request.clone().into()))
            .await
            .expect("request");
        let id = loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("the allocation socket ended before ready");
            };
            let msg: Value = serde_json::from_str(&text).expect("JSON");
            if msg["data"]["status"] == "ready" {
                break msg["data"]["allocation_id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
            }
        };
        let ready_ms = asked.elapsed().as_secs_f64() * 1000.0;
        let status = http
            .delete(format!("http://{addr}/allocate/{id}"))
            .send()
            .await
            .expect("DELETE")
            .status();
        assert_eq!(status.as_u16(), 200);
        latencies.push((Instant::now(), ready_ms));
        let _ = ws.close(None).await;
    }
    latencies
}

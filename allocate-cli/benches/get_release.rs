//! `allocate get` then `allocate release`, two processes per cycle, against a free machine on
//! a real server on loopback (testkit's), registered by an agent over a real socket: what a
//! developer's script pays per machine. Compare with labgrid-client reserve/acquire/release
//! (0.9 cycles/s measured for issue 13).
//!
//! Times each cycle after a few untimed ones and prints cycles per second and the p50, p99
//! and max of a cycle. Environment: `CLI_CYCLES` (default 1,000), cut short after
//! `CLI_SECONDS` (default 20). Run with `cargo bench -p allocate-cli`.

#[path = "../tests/common/mod.rs"]
mod common;

use allocate_client::{Client, ClientOptions};
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::server::Server;

/// Cycles run before timing starts (page cache, the server's first sockets).
const WARM_UP: usize = 5;

fn allocate(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_allocate"))
        .args(args)
        .env("ALLOCATE_URL", url)
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("allocate-bench-none"),
        )
        .env("USER", "bench")
        .output()
        .expect("allocate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One `get` and its `release`.
fn cycle(url: &str) {
    let id = allocate(url, &["get", "-q", "--tags", "bench", "--wait", "0"]);
    allocate(url, &["release", &id]);
}

/// The environment variable `name` as a number, else `default`.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let cycles = env_number("CLI_CYCLES", 1_000).max(1) as usize;
    let limit = Duration::from_secs(env_number("CLI_SECONDS", 20));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (server, _agent) = runtime.block_on(async {
        let server = Server::start().await;
        let client = Client::new(&server.url(), ClientOptions::default()).expect("client");
        let agent = common::register_machine(&client, 0xb, "bench", "bench-1").await;
        (server, agent)
    });
    let url = server.url();
    (0..WARM_UP).for_each(|_| cycle(&url));
    let start = Instant::now();
    let mut times = Vec::with_capacity(cycles);
    while times.len() < cycles && start.elapsed() < limit {
        let began = Instant::now();
        cycle(&url);
        times.push(began.elapsed());
    }
    let elapsed = start.elapsed();
    times.sort_unstable();
    // The nearest rank: the smallest time at least `p` percent of the cycles took no longer than.
    let at = |p: usize| times[(times.len() * p).div_ceil(100).max(1) - 1].as_secs_f64() * 1e3;
    println!(
        "cli/get_release: {} cycles in {:.1} s, {:.0} cycles/s; a cycle p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        elapsed.as_secs_f64(),
        times.len() as f64 / elapsed.as_secs_f64(),
        at(50),
        at(99),
        at(100),
    );
}

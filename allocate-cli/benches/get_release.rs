//! `allocate get` then `allocate release`, two processes per cycle, against a free machine on
//! a real server on loopback (testkit's), registered by an agent over a real socket: what a
//! developer's script pays per machine. Compare with labgrid-client reserve/acquire/release
//! (0.9 cycles/s measured for issue 13).
#![allow(
    missing_docs,
    reason = "criterion_group! writes a public function that takes no doc comment"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use allocate_client::{Client, ClientOptions};
use criterion::{criterion_group, criterion_main, Criterion};
use std::process::Command;
use testkit::server::Server;

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

fn get_release(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (server, _agent) = runtime.block_on(async {
        let server = Server::start().await;
        let client = Client::new(&server.url(), ClientOptions::default()).expect("client");
        let agent = common::register_machine(&client, 0xb, "bench", "bench-1").await;
        (server, agent)
    });
    let url = server.url();
    let mut group = c.benchmark_group("cli");
    group.sample_size(20);
    group.bench_function("get_release/1", |b| {
        b.iter(|| {
            let id = allocate(&url, &["get", "-q", "--tags", "bench", "--wait", "0"]);
            allocate(&url, &["release", &id]);
        })
    });
    group.finish();
}

criterion_group!(benches, get_release);
criterion_main!(benches);

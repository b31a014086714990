//! `allocate-loadgen`: measures the whole allocate service over loopback, from a client
//! opening a websocket to holding a ready machine.
//!
//! It starts `allocate-http` as a separate process (so that its peak RSS and CPU time can be
//! read from `/proc`), connects simulated agents holding varied resources, and runs simulated
//! users that loop: open `WEBSOCKET /allocate/`, send requirements, wait for `ready`,
//! `DELETE /allocate/{id}`, see `released` and the close. Every phase is bounded by a count
//! and a time, and everything stops by itself. See `BENCHMARKS.md` for the results.

mod failover;
mod failure;
mod fleet;
mod http;
mod report;
mod scenarios;
mod server;
mod users;
mod ws;

use clap::Parser;
use report::Report;
use scenarios::{Scenario, Settings};
use server::Launch;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use users::Bounds;

/// Flags of `allocate-loadgen`.
#[derive(Debug, Parser)]
#[command(
    name = "allocate-loadgen",
    version,
    about = "Load generator for allocate-http"
)]
struct Args {
    /// Scenarios to run, comma-separated; `main` runs them all.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "main")]
    scenario: Vec<Scenario>,
    /// The server binary, started once per scenario on a free loopback port.
    #[arg(long, default_value = "target/release/allocate-http")]
    server_bin: PathBuf,
    /// The server's `--log-level`.
    #[arg(long, default_value = "info")]
    server_log_level: String,
    /// Append the server's log (stderr) to this file; discarded when not given.
    #[arg(long)]
    server_log: Option<PathBuf>,
    /// A further argument for the server (repeatable), such as `--server-arg=--ping-interval-ms=2000`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Agents (scenarios cycles, provision, queued, journal).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Resources those agents hold in all.
    #[arg(long, default_value_t = 1000)]
    resources: usize,
    /// Concurrent users, each looping over allocation cycles.
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// Cycles (or hand-offs) each measured phase starts at most.
    #[arg(long, default_value_t = 1_000_000)]
    max_cycles: u64,
    /// Seconds each measured phase runs at most.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Seconds of unmeasured cycling before a measured phase.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Cycles per second of the paced phase of `cycles`, where time to ready is checked.
    #[arg(long, default_value_t = 5000.0)]
    paced_rate: f64,
    /// Client pairs taking turns in the `handoff` scenario.
    #[arg(long, default_value_t = 16)]
    pairs: usize,
    /// Clients waiting in the queue in the `queued` and `departure` scenarios.
    #[arg(long, default_value_t = 10_000)]
    waiters: usize,
    /// Agents in the `scale` scenario.
    #[arg(long, default_value_t = 10_000)]
    scale_agents: usize,
    /// Resources per agent in the `scale` scenario.
    #[arg(long, default_value_t = 10)]
    scale_resources_per_agent: usize,
    /// Timed `GET /inventory/` requests in the `scale` scenario.
    #[arg(long, default_value_t = 5)]
    inventory_gets: usize,
    /// A PostgreSQL URL (`postgres://...`, a database of its own): the `journal` scenario then
    /// also runs with `--store` on it and compares it with the journal in `--data-dir`, and
    /// the `failover` scenario runs two replicas on it.
    #[arg(long)]
    store: Option<String>,
    /// Failovers of the `failover` scenario (`kill -9` and `SIGSTOP` of the leader in turn).
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    /// Exit with status 1 when a target is missed, not only on errors.
    #[arg(long)]
    strict: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let files = raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("allocate-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("allocate-loadgen: open files limit {files} (the server inherits it)");
    let needed = (args.scale_agents.max(args.waiters + args.agents) + args.users + 256) as u64;
    if files < needed {
        println!(
            "allocate-loadgen: warning: the largest scenario needs about {needed} open files; \
             raise `ulimit -n` (hard limit) or lower --scale-agents / --waiters"
        );
    }
    let report = runtime.block_on(run(&args));
    print!("\n{}", report.render());
    let missed = report.checks.iter().any(|c| !c.pass);
    if report.errors > 0 || (args.strict && missed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(args: &Args) -> Report {
    let mut report = Report::default();
    let workdir = std::env::temp_dir().join(format!("allocate-loadgen-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&workdir) {
        report.errors += 1;
        report.failures.push(format!("{}: {e}", workdir.display()));
        return report;
    }
    let launch = Launch {
        bin: args.server_bin.clone(),
        log_level: args.server_log_level.clone(),
        log: args.server_log.clone(),
        args: args.server_args.clone(),
        workdir: workdir.clone(),
        has_journal: false,
        has_in_memory: false,
        has_peer_cap: false,
    };
    let launch = match launch.detect().await {
        Ok(launch) => launch,
        Err(f) => {
            report.errors += 1;
            report.failures.push(f.to_string());
            return report;
        }
    };
    let settings = Settings {
        agents: args.agents,
        resources: args.resources,
        users: args.users,
        bounds: Bounds {
            count: args.max_cycles,
            time: Duration::from_secs_f64(args.secs.max(0.0)),
        },
        warmup: Duration::from_secs_f64(args.warmup_secs.max(0.0)),
        paced_rate: args.paced_rate,
        pairs: args.pairs,
        waiters: args.waiters,
        scale_agents: args.scale_agents,
        scale_resources_per_agent: args.scale_resources_per_agent,
        inventory_gets: args.inventory_gets,
        store: args.store.clone(),
        failovers: args.failovers,
    };
    let mut scenarios: Vec<Scenario> = Vec::new();
    for &s in &args.scenario {
        if s == Scenario::Main {
            scenarios.extend([
                Scenario::Cycles,
                Scenario::Provision,
                Scenario::Handoff,
                Scenario::Queued,
                Scenario::Scale,
                Scenario::Journal,
                Scenario::Departure,
                Scenario::Quotas,
                Scenario::Failover,
            ]);
        } else {
            scenarios.push(s);
        }
    }
    for scenario in scenarios {
        println!("allocate-loadgen: running {scenario:?}");
        scenarios::run(scenario, &launch, &settings, &mut report).await;
    }
    let _ = std::fs::remove_dir_all(&workdir);
    report
}

/// Raises this process's open files limit to its hard limit (10,000 agents are 10,000
/// sockets); returns the limit in force.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

//! The scenarios: each starts its own server, measures, checks its targets and stops it.

use crate::failover;
use crate::failure::{Failure, Tally};
use crate::fleet::{self, AgentPlan, Fleet, Provisioning};
use crate::http::HttpConn;
use crate::report::{ms, phase, CpuTimes, Phase, Report};
use crate::server::{Journal, Launch, Server};
use crate::users::{self, Bounds, Holder, Pace, Waiters};
use allocate_core::wire::{policy_json, Envelope};
use allocate_core::{Group, Policy, QuotaLimits};
use clap::ValueEnum;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The longest the queue may take to empty after its clients left, at most.
const DEPARTURE_WAIT: Duration = Duration::from_secs(120);

/// How often `/healthz` is probed while the queue empties.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// The longest a `GET /inventory/` may take before it counts as a failure.
const GET_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a scenario may take beyond four times its phases (starting servers, connecting
/// agents and waiting clients, closing them).
const SCENARIO_SLACK: Duration = Duration::from_secs(180);

/// Time the `failover` scenario may take per failover, at most.
const FAILOVER_SLACK: Duration = Duration::from_secs(90);

/// Fleet numbers, so that agent ids of different roles never collide.
const FLEET_CATALOG: u32 = 1;
const FLEET_SPECIAL: u32 = 2;

/// Users named in the `quotas` scenario's policy file, in groups of [`POLICY_GROUP_SIZE`].
const POLICY_USERS: usize = 1_000;
const POLICY_GROUP_SIZE: usize = 100;

/// A scenario to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Users cycling against agents with static connection details.
    Cycles,
    /// The same, with agents answering provision and release round trips.
    Provision,
    /// Queue hand-off: DELETE of the holder to `ready` of the waiting client.
    Handoff,
    /// Cycles with and without many clients waiting in the queue.
    Queued,
    /// Many agents and resources: server memory, `GET /inventory/`, cycles at that size.
    Scale,
    /// Cycles with the journal off and on (skipped when the server has no journal flag).
    Journal,
    /// Many waiting clients leaving the queue at once, with the journal on: the server's CPU
    /// time and memory for it, and how long `/healthz` waits meanwhile.
    Departure,
    /// Cycles without quotas, then with a policy file (`--policy-file`) of 1,000 users.
    Quotas,
    /// Two replicas on the `--store` database under load: the standby's replication lag,
    /// then the leader killed or paused `--failovers` times, each timed to the first `ready`
    /// from the new leader (skipped without `--store`).
    Failover,
    /// All of the above.
    Main,
}

/// The sizes and bounds the scenarios use.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Agents of the catalog fleet.
    pub agents: usize,
    /// Resources they hold in all.
    pub resources: usize,
    /// Concurrent cycling users.
    pub users: usize,
    /// Bounds of each measured phase.
    pub bounds: Bounds,
    /// Unmeasured cycling before each measured phase.
    pub warmup: Duration,
    /// The load (cycles per second) at which the `cycles` scenario checks time to ready.
    pub paced_rate: f64,
    /// Hand-off pairs.
    pub pairs: usize,
    /// Clients waiting in the queue in the `queued` scenario.
    pub waiters: usize,
    /// Agents in the `scale` scenario.
    pub scale_agents: usize,
    /// Resources per agent in the `scale` scenario.
    pub scale_resources_per_agent: usize,
    /// `GET /inventory/` requests timed in the `scale` scenario.
    pub inventory_gets: usize,
    /// A PostgreSQL URL: the `journal` scenario also runs with `--store` on it, and the
    /// `failover` scenario needs it.
    pub store: Option<String>,
    /// Failovers of the `failover` scenario.
    pub failovers: usize,
}

/// Runs one scenario and adds what it measured to `report`. A scenario that overruns its
/// bounds by far is abandoned (its server is killed) and counted as a failure.
pub async fn run(scenario: Scenario, launch: &Launch, s: &Settings, report: &mut Report) {
    let failures = Arc::new(Tally::default());
    let name = format!("{scenario:?}").to_lowercase();
    let mut limit = s.bounds.time.mul_f64(4.0) + s.warmup.mul_f64(4.0) + SCENARIO_SLACK;
    if scenario == Scenario::Failover {
        limit += FAILOVER_SLACK * u32::try_from(s.failovers).unwrap_or(u32::MAX);
    }
    let outcome = tokio::time::timeout(limit, one(scenario, launch, s, &failures, report))
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                "timeout",
                format!("{name} ran past {limit:?}"),
            ))
        });
    if let Err(f) = outcome {
        failures.record(&f);
    }
    report.errors += failures.total();
    let lines = failures.lines();
    report
        .failures
        .extend(lines.into_iter().map(|l| format!("{name}: {l}")));
}

async fn one(
    scenario: Scenario,
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    match scenario {
        Scenario::Cycles => cycles(launch, s, Provisioning::Static, failures, report).await,
        Scenario::Provision => cycles(launch, s, Provisioning::RoundTrip, failures, report).await,
        Scenario::Handoff => handoff(launch, s, failures, report).await,
        Scenario::Queued => queued(launch, s, failures, report).await,
        Scenario::Scale => scale(launch, s, failures, report).await,
        Scenario::Journal => journal(launch, s, failures, report).await,
        Scenario::Departure => departure(launch, s, failures, report).await,
        Scenario::Quotas => quotas(launch, s, failures, report).await,
        Scenario::Failover => failover(launch, s, failures, report).await,
        Scenario::Main => Ok(()),
    }
}

/// The requirements of the clients that wait in the `queued` scenario.
fn scarce_request(username: &str) -> String {
    let requirements =
        json!({"tags": ["scarce"], "username": username, "allocation_timeout_seconds": 3600});
    json!({ "requirements": requirements }).to_string()
}

/// An agent with one resource per label, each with static connection details.
fn special_agent(index: usize, labels: impl IntoIterator<Item = String>) -> AgentPlan {
    let resources = labels
        .into_iter()
        .map(|label| {
            json!({"labels": [label], "cpu_count": 1, "memory_gb": 1, "gpu": [], "type": "device",
                   "connection": fleet::static_connection(index)})
        })
        .collect();
    AgentPlan {
        agent_id: fleet::agent_id(FLEET_SPECIAL, index),
        resources,
    }
}

/// Measures one phase of cycles (after an unmeasured warm-up when `warmup` is set).
async fn measure(
    server: &Server,
    name: String,
    users: usize,
    bounds: Bounds,
    warmup: Option<Duration>,
    failures: &Arc<Tally>,
) -> Phase {
    measure_paced(server, name, users, bounds, Pace::Flat, warmup, failures).await
}

/// [`measure`] at a given pace.
async fn measure_paced(
    server: &Server,
    name: String,
    users: usize,
    bounds: Bounds,
    pace: Pace,
    warmup: Option<Duration>,
    failures: &Arc<Tally>,
) -> Phase {
    if let Some(time) = warmup {
        let warm = Bounds {
            count: u64::MAX,
            time,
        };
        users::cycles(server.addr, users, warm, pace, failures).await;
    }
    let before = CpuTimes::now(server);
    let run = users::cycles(server.addr, users, bounds, pace, failures).await;
    let p = phase(server, name, run, before);
    println!(
        "  {}: {} cycles, {:.0}/s, time to ready p99 {:.2} ms",
        p.name,
        p.cycles,
        p.rate(),
        ms(p.latency.p99_us)
    );
    p
}

async fn cycles(
    launch: &Launch,
    s: &Settings,
    provisioning: Provisioning,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let server = launch.start(Journal::Off).await?;
    let plans = fleet::catalog(FLEET_CATALOG, s.agents, s.resources, provisioning);
    let fleet = Fleet::start(server.addr, plans, failures).await?;
    let label = match provisioning {
        Provisioning::Static => "cycles",
        Provisioning::RoundTrip => "provision",
    };
    let name = format!("{label}/{}u {}a {}r", s.users, s.agents, s.resources);
    let p = measure(&server, name, s.users, s.bounds, Some(s.warmup), failures).await;
    if provisioning == Provisioning::Static {
        report.check(
            &format!("cycles/s, {} users, static", s.users),
            ">= 5000",
            format!("{:.0}", p.rate()),
            p.rate() >= 5000.0,
        );
        report.phases.push(p);
        let name = format!("{label}/{}u paced {:.0}/s", s.users, s.paced_rate);
        let pace = Pace::Rate(s.paced_rate);
        let p = measure_paced(&server, name, s.users, s.bounds, pace, None, failures).await;
        report.check(
            &format!("time-to-ready p99 at {:.0}/s, {} users", p.rate(), s.users),
            "<= 10 ms",
            format!("{:.2} ms", ms(p.latency.p99_us)),
            ms(p.latency.p99_us) <= 10.0 && p.rate() >= 0.95 * s.paced_rate,
        );
        report.phases.push(p);
    } else {
        report.phases.push(p);
    }
    fleet.stop().await;
    server.stop().await;
    Ok(())
}

async fn handoff(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let server = launch.start(Journal::Off).await?;
    let labels = (0..s.pairs).map(|p| format!("handoff-{p}"));
    let fleet = Fleet::start(server.addr, vec![special_agent(0, labels)], failures).await?;
    let before = CpuTimes::now(&server);
    let run = users::handoffs(server.addr, s.pairs, s.bounds, failures).await;
    let p = phase(&server, format!("handoff/{} pairs", s.pairs), run, before);
    report.check(
        "hand-off DELETE -> ready p99, static",
        "<= 10 ms",
        format!("{:.2} ms", ms(p.latency.p99_us)),
        ms(p.latency.p99_us) <= 10.0,
    );
    report.phases.push(p);
    fleet.stop().await;
    server.stop().await;
    Ok(())
}

async fn queued(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let server = launch.start(Journal::Off).await?;
    let mut plans = fleet::catalog(FLEET_CATALOG, s.agents, s.resources, Provisioning::Static);
    plans.push(special_agent(0, ["scarce".to_owned()]));
    let fleet = Fleet::start(server.addr, plans, failures).await?;
    let holder = Holder::take(server.addr, scarce_request("holder")).await?;
    let base = format!("queued/{}u, none waiting", s.users);
    let baseline = measure(&server, base, s.users, s.bounds, Some(s.warmup), failures).await;
    let t0 = Instant::now();
    let waiters =
        Waiters::start(server.addr, s.waiters, scarce_request("waiter"), failures).await?;
    report.notes.push(format!(
        "queued: {} clients queued in {:.1} s",
        s.waiters,
        t0.elapsed().as_secs_f64()
    ));
    let name = format!("queued/{}u, {} waiting", s.users, s.waiters);
    let loaded = measure(&server, name, s.users, s.bounds, None, failures).await;
    let slowdown = baseline.rate() / loaded.rate().max(1e-9);
    report.check(
        &format!("slowdown of cycles with {} waiting", s.waiters),
        "<= 2x",
        format!("{slowdown:.2}x"),
        slowdown <= 2.0,
    );
    report.phases.push(baseline);
    report.phases.push(loaded);
    let t0 = Instant::now();
    waiters.stop().await;
    report.notes.push(format!(
        "queued: {} waiting clients closed at once, done in {:.1} s",
        s.waiters,
        t0.elapsed().as_secs_f64()
    ));
    holder.release(server.addr).await?;
    fleet.stop().await;
    server.stop().await;
    Ok(())
}

async fn scale(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let server = launch.start(Journal::Off).await?;
    let resources = s.scale_agents * s.scale_resources_per_agent;
    let t0 = Instant::now();
    let plans = fleet::catalog(
        FLEET_CATALOG,
        s.scale_agents,
        resources,
        Provisioning::Static,
    );
    let fleet = Fleet::start(server.addr, plans, failures).await?;
    report.notes.push(format!(
        "scale: {} agents registered {resources} resources in {:.1} s; server RSS then {:.1} MiB",
        s.scale_agents,
        t0.elapsed().as_secs_f64(),
        server.peak_rss_kib() as f64 / 1024.0
    ));
    let gets = time_inventory(server.addr, resources, s.inventory_gets).await?;
    let each: Vec<String> = gets
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect();
    report.notes.push(format!(
        "scale: GET /inventory/ took {} ms; server RSS then {:.1} MiB",
        each.join(", "),
        server.peak_rss_kib() as f64 / 1024.0
    ));
    let name = format!("scale/{}u {}a {resources}r", s.users, s.scale_agents);
    let p = measure(&server, name, s.users, s.bounds, Some(s.warmup), failures).await;
    let worst = gets.iter().copied().max().unwrap_or_default();
    report.check(
        &format!("GET /inventory/ with {resources} resources"),
        "<= 200 ms",
        format!(
            "{:.0} ms (worst of {})",
            worst.as_secs_f64() * 1e3,
            gets.len()
        ),
        worst <= Duration::from_millis(200),
    );
    let rss_mib = p.peak_rss_kib as f64 / 1024.0;
    report.check(
        &format!("server peak RSS, {} agents", s.scale_agents),
        "<= 300 MiB",
        format!("{rss_mib:.1} MiB"),
        rss_mib <= 300.0,
    );
    report.phases.push(p);
    fleet.stop().await;
    server.stop().await;
    Ok(())
}

/// Times `count` `GET /inventory/` requests; the first answer must list `resources` entries.
async fn time_inventory(
    addr: SocketAddr,
    resources: usize,
    count: usize,
) -> Result<Vec<Duration>, Failure> {
    let mut conn = HttpConn::connect(addr).await?;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let t0 = Instant::now();
        let response = tokio::time::timeout(GET_TIMEOUT, conn.request("GET", "/inventory/"))
            .await
            .unwrap_or_else(|_| Err(Failure::new("timeout", "GET /inventory/ took > 30 s")))?;
        times.push(t0.elapsed());
        if response.status != 200 {
            return Err(Failure::new(
                "inventory",
                format!("status {}", response.status),
            ));
        }
        if i + 1 == count {
            let text =
                std::str::from_utf8(&response.body).map_err(|e| Failure::new("inventory", e))?;
            let data = Envelope::parse(text)
                .map_err(|e| Failure::new("inventory", e))?
                .into_result()
                .map_err(|r| Failure::new("inventory", r.message))?;
            let listed = data.as_array().map_or(0, Vec::len);
            if listed != resources {
                return Err(Failure::new(
                    "inventory",
                    format!("listed {listed} of {resources} resources"),
                ));
            }
        }
    }
    Ok(times)
}

async fn journal(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    if !launch.has_journal {
        report.notes.push(
            "journal: skipped, this allocate-http has no --data-dir flag (no journal yet)".into(),
        );
        return Ok(());
    }
    let dir = launch.workdir.join("journal");
    let mut journals = vec![Journal::Off, Journal::Dir(&dir)];
    journals.extend(s.store.as_deref().map(Journal::Store));
    let mut rates = Vec::new();
    for journal in journals {
        let _ = std::fs::remove_dir_all(&dir);
        let label = match journal {
            Journal::Off => "off",
            Journal::Dir(_) => "on",
            Journal::Store(_) => "in PostgreSQL",
        };
        let name = format!("journal {label}/{}u static", s.users);
        let p = static_phase(launch, journal, name, s, failures).await?;
        rates.push(p.rate());
        report.phases.push(p);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let ratio = rates[1] / rates[0].max(1e-9);
    report.check(
        "cycles/s with the journal on vs off",
        ">= 0.50",
        format!("{ratio:.2}"),
        ratio >= 0.5,
    );
    if let Some(&store) = rates.get(2) {
        let ratio = store / rates[1].max(1e-9);
        report.check(
            "cycles/s with the PostgreSQL store vs the journal in --data-dir",
            ">= 0.50",
            format!("{ratio:.2}"),
            ratio >= 0.5,
        );
    }
    Ok(())
}

/// One measured phase on a fresh server from `launch` (journaling into `journal`): the
/// catalog fleet with static machines, `s.users` users cycling after the warm-up.
async fn static_phase(
    launch: &Launch,
    journal: Journal<'_>,
    name: String,
    s: &Settings,
    failures: &Arc<Tally>,
) -> Result<Phase, Failure> {
    let server = launch.start(journal).await?;
    let plans = fleet::catalog(FLEET_CATALOG, s.agents, s.resources, Provisioning::Static);
    let fleet = Fleet::start(server.addr, plans, failures).await?;
    let p = measure(&server, name, s.users, s.bounds, Some(s.warmup), failures).await;
    fleet.stop().await;
    server.stop().await;
    Ok(p)
}

/// Cycles in memory without a policy, then with a policy file of [`POLICY_USERS`] users (among
/// them the cycling users) in groups, every limit set and none reached: what quota
/// bookkeeping costs a cycle.
async fn quotas(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let path = launch.workdir.join("policy.json");
    std::fs::write(&path, policy_json(&policy(POLICY_USERS)))
        .map_err(|e| Failure::new("policy", format!("{}: {e}", path.display())))?;
    let mut with_policy = launch.clone();
    with_policy.args.push("--policy-file".to_owned());
    with_policy.args.push(path.display().to_string());
    let mut rates = Vec::new();
    for (label, launch) in [("none", launch), ("1000 users", &with_policy)] {
        let name = format!("quotas {label}/{}u static", s.users);
        let p = static_phase(launch, Journal::Off, name, s, failures).await?;
        rates.push(p.rate());
        report.phases.push(p);
    }
    let ratio = rates[1] / rates[0].max(1e-9);
    report.check(
        "cycles/s with a 1,000-user policy vs none",
        ">= 0.90",
        format!("{ratio:.2}"),
        ratio >= 0.9,
    );
    Ok(())
}

/// A policy naming `users` users (`load-0` on, as the cycling users are named) with limits
/// of their own, in groups with limits, and a default: generous enough that a cycling user,
/// who holds one allocation at a time, never waits for its quota.
fn policy(users: usize) -> Policy {
    let own = QuotaLimits {
        allocations_max: Some(2),
        resources_max: Some(2),
        gpus_max: Some(64),
        lease_secs_max: Some(86_400),
    };
    let name = |u: usize| format!("load-{u}");
    let groups = (0..users)
        .step_by(POLICY_GROUP_SIZE)
        .map(|first| {
            let group = Group {
                members: (first..(first + POLICY_GROUP_SIZE).min(users))
                    .map(name)
                    .collect(),
                limits: QuotaLimits {
                    allocations_max: Some(4),
                    ..QuotaLimits::default()
                },
            };
            (format!("group-{}", first / POLICY_GROUP_SIZE), group)
        })
        .collect();
    Policy {
        default: QuotaLimits {
            allocations_max: Some(1),
            ..QuotaLimits::default()
        },
        groups,
        users: (0..users).map(|u| (name(u), own)).collect(),
    }
}

async fn failover(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let Some(store) = s.store.as_deref() else {
        report
            .notes
            .push("failover: skipped, it needs --store postgres://... (two replicas on it)".into());
        return Ok(());
    };
    let plan = failover::Plan {
        store,
        agents: s.agents,
        resources: s.resources,
        users: s.users,
        warmup: s.warmup,
        window: s.bounds.time,
        failovers: s.failovers,
    };
    failover::run(launch, plan, failures, report).await
}

async fn departure(
    launch: &Launch,
    s: &Settings,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let dir = launch.workdir.join("departure");
    let _ = std::fs::remove_dir_all(&dir);
    let journal = if launch.has_journal {
        Journal::Dir(&dir)
    } else {
        Journal::Off
    };
    let server = launch.start(journal).await?;
    let plans = vec![special_agent(0, ["scarce".to_owned()])];
    let fleet = Fleet::start(server.addr, plans, failures).await?;
    let holder = Holder::take(server.addr, scarce_request("holder")).await?;
    let waiters =
        Waiters::start(server.addr, s.waiters, scarce_request("waiter"), failures).await?;
    wait_queue_length(server.addr, s.waiters as u64).await?;
    let (cpu0, rss0, peak0) = (server.cpu_time(), server.rss_kib(), server.peak_rss_kib());
    let t0 = Instant::now();
    let (_, healthz) = tokio::join!(waiters.stop(), probe_healthz(server.addr, t0));
    wait_queue_length(server.addr, 0).await?;
    let emptied = t0.elapsed();
    let cpu = server.cpu_time().saturating_sub(cpu0);
    let (rss, peak) = (server.rss_kib(), server.peak_rss_kib());
    let mib = |kib: u64| kib as f64 / 1024.0;
    report.notes.push(format!(
        "departure: {} waiting clients left at once (journal {}): queue empty after {:.2} s, \
         server CPU {:.2} s, RSS {:.1} -> {:.1} MiB (peak {:.1} -> {:.1} MiB), /healthz worst {:.0} ms",
        s.waiters,
        if launch.has_journal { "on" } else { "off" },
        emptied.as_secs_f64(),
        cpu.as_secs_f64(),
        mib(rss0),
        mib(rss),
        mib(peak0),
        mib(peak),
        healthz.as_secs_f64() * 1e3,
    ));
    report.check(
        &format!("server CPU while {} waiting clients leave", s.waiters),
        "<= 1 s",
        format!("{:.2} s", cpu.as_secs_f64()),
        cpu <= Duration::from_secs(1),
    );
    let grew = peak.saturating_sub(peak0.max(rss0));
    report.check(
        &format!(
            "server peak RSS growth while {} waiting clients leave",
            s.waiters
        ),
        "<= 8 MiB",
        format!("{:.1} MiB", mib(grew)),
        grew <= 8 * 1024,
    );
    holder.release(server.addr).await?;
    fleet.stop().await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `allocate_queue_length` as `/metrics` says it now.
async fn queue_length(addr: SocketAddr) -> Result<Option<u64>, Failure> {
    let mut conn = HttpConn::connect(addr).await?;
    let response = conn.request("GET", "/metrics").await?;
    let text = String::from_utf8_lossy(&response.body);
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("allocate_queue_length "))
        .and_then(|v| v.trim().parse::<u64>().ok()))
}

/// Waits until the queue holds `want` requests.
async fn wait_queue_length(addr: SocketAddr, want: u64) -> Result<(), Failure> {
    let deadline = Instant::now() + DEPARTURE_WAIT;
    loop {
        let length = queue_length(addr).await?;
        if length == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::new(
                "departure",
                format!("queue length {length:?}, not {want}, after {DEPARTURE_WAIT:?}"),
            ));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Probes `/healthz` until the queue is empty; returns the longest answer.
async fn probe_healthz(addr: SocketAddr, t0: Instant) -> Duration {
    let mut worst = Duration::ZERO;
    while t0.elapsed() < DEPARTURE_WAIT {
        let start = Instant::now();
        let answered = async {
            let mut conn = HttpConn::connect(addr).await?;
            conn.request("GET", "/healthz").await
        };
        let healthy = tokio::time::timeout(DEPARTURE_WAIT, answered)
            .await
            .is_ok_and(|r| r.is_ok_and(|r| r.status == 200));
        worst = worst.max(start.elapsed());
        if !healthy || matches!(queue_length(addr).await, Ok(Some(0))) {
            return worst;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    worst
}

//! The `failover` scenario: two replicas of the server on one PostgreSQL store, agents and
//! cycling users that know both addresses, the standby's replication lag under load, then the
//! leader killed (`kill -9`) or paused (`SIGSTOP`) again and again, each takeover timed to the
//! first `ready` a client gets from the new leader.

use crate::failure::{Failure, Tally};
use crate::fleet::{self, AgentPlan};
use crate::http::HttpConn;
use crate::report::{phase, CpuTimes, Latency, Report};
use crate::server::{Journal, Launch, Server};
use crate::users::{self, Run};
use crate::ws::{self, Ws};
use rustix::process::Signal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

/// The pause after a failed attempt of an agent or a user, before it tries the other replica.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How long a user's attempt (connect to `ready`) or an agent's registration may take before
/// it tries the other replica: a paused leader accepts connections and never answers.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the end of a cycle (DELETE, `released`, the close) may take.
const TAIL_TIMEOUT: Duration = Duration::from_secs(5);

/// The servers' `--ping-interval-ms` in this scenario (unless given), so that agents notice a
/// paused leader by its silence.
const PING_INTERVAL_MS: &str = "250";

/// An agent's socket silent this long (no message, no ping) is a lost connection.
const AGENT_IDLE: Duration = Duration::from_millis(1500);

/// How often the standby's `/metrics` is read for its lag.
const LAG_EVERY: Duration = Duration::from_millis(100);

/// How often the standby's `/healthz` is probed during a failover.
const HEALTHZ_EVERY: Duration = Duration::from_millis(20);

/// The longest a takeover may take, to the first `ready` from the new leader.
const TAKEOVER_WAIT: Duration = Duration::from_secs(30);

/// After the first `ready` from the new leader, failed attempts still count as the failover's
/// (cycles begun on the old leader end by then) for this long.
const SETTLE: Duration = Duration::from_secs(2);

/// Steady load between a fresh standby following and the next failover.
const BETWEEN: Duration = Duration::from_secs(1);

/// How long a fresh standby has to follow the journal (show the leader's epoch).
const FOLLOW_WAIT: Duration = Duration::from_secs(20);

/// How long a paused leader, continued after the takeover, has to exit.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// How long the release of an interrupted cycle's allocation is retried on both replicas.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// How long agents have to register at the start.
const REGISTER_WAIT: Duration = Duration::from_secs(60);

/// What the load generator's clients share with the scenario.
struct Shared {
    /// The replicas' addresses: a fresh standby takes the slot of the leader it replaced.
    replicas: RwLock<[SocketAddr; 2]>,
    /// Set while a failover is under way: failed attempts are then its interruptions.
    disrupted: AtomicBool,
    /// Failed attempts while no failover was under way.
    errors: Arc<Tally>,
    /// Failed attempts during failovers (refused, `503 not_leader`, timeouts).
    interruptions: Tally,
    /// Readies seen, and the one awaited.
    readies: Mutex<Readies>,
    /// Wakes the scenario when the awaited `ready` came.
    readied: Notify,
}

/// Readies seen by the users.
#[derive(Default)]
struct Readies {
    /// Time to ready of each cycle since the scenario last took them, in microseconds.
    samples_us: Vec<u32>,
    /// The replica whose first `ready` is awaited.
    awaited: Option<SocketAddr>,
    /// When it came.
    first: Option<Instant>,
}

impl Shared {
    fn addr(&self, slot: usize) -> SocketAddr {
        self.replicas.read().unwrap_or_else(|e| e.into_inner())[slot]
    }

    fn set_addr(&self, slot: usize, addr: SocketAddr) {
        self.replicas.write().unwrap_or_else(|e| e.into_inner())[slot] = addr;
    }

    fn readies(&self) -> std::sync::MutexGuard<'_, Readies> {
        self.readies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a failed attempt as an error, or as an interruption during a failover.
    fn failed(&self, failure: &Failure) {
        if self.disrupted.load(Ordering::SeqCst) {
            self.interruptions.record(failure);
        } else {
            self.errors.record(failure);
        }
    }

    /// A user got `ready` from `addr` after `ttr`.
    fn ready(&self, addr: SocketAddr, ttr: Duration) {
        let mut readies = self.readies();
        readies.samples_us.push(users::micros(ttr));
        if readies.awaited == Some(addr) && readies.first.is_none() {
            readies.first = Some(Instant::now());
            self.readied.notify_one();
        }
    }

    /// Takes the time-to-ready samples gathered since the last call.
    fn take_samples(&self) -> Vec<u32> {
        std::mem::take(&mut self.readies().samples_us)
    }

    /// A failover begins: failures are interruptions, and the first `ready` of `addr` is awaited.
    fn await_ready(&self, addr: SocketAddr) {
        self.disrupted.store(true, Ordering::SeqCst);
        let mut readies = self.readies();
        readies.awaited = Some(addr);
        readies.first = None;
    }

    /// When the awaited `ready` came, waiting for it until `deadline`.
    async fn first_ready(&self, deadline: Instant) -> Option<Instant> {
        loop {
            if let Some(first) = self.readies().first {
                return Some(first);
            }
            if timeout_at(deadline, self.readied.notified())
                .await
                .is_none()
            {
                return self.readies().first;
            }
        }
    }
}

/// `future`, unless `deadline` comes first.
async fn timeout_at<F: std::future::Future>(deadline: Instant, future: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, future).await.ok()
}

/// The replication lag a standby reports in `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Lag {
    /// `allocate_replication_lag_records`.
    records: u64,
    /// `allocate_replication_lag_seconds`.
    seconds: f64,
    /// `allocate_store_epoch`.
    epoch: u64,
}

impl Lag {
    /// The lag in a `/metrics` text; `None` when a family is missing.
    fn parse(text: &str) -> Option<Lag> {
        let value = |name: &str| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?;
                let rest = rest.strip_prefix("{}").unwrap_or(rest);
                rest.strip_prefix(' ').map(str::trim)
            })
        };
        Some(Lag {
            records: value("allocate_replication_lag_records")?.parse().ok()?,
            seconds: value("allocate_replication_lag_seconds")?.parse().ok()?,
            epoch: value("allocate_store_epoch")?.parse().ok()?,
        })
    }

    /// Reads it from the server at `addr`.
    async fn read(addr: SocketAddr) -> Result<Lag, Failure> {
        let read = async {
            let mut conn = HttpConn::connect(addr).await?;
            conn.request("GET", "/metrics").await
        };
        let response = timeout(ATTEMPT_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(Failure::new("lag", "GET /metrics took > 1 s")))?;
        Lag::parse(&String::from_utf8_lossy(&response.body))
            .ok_or_else(|| Failure::new("lag", "no replication families in /metrics"))
    }
}

/// What kind of failure a takeover follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// `kill -9` of the leader.
    Kill,
    /// `SIGSTOP` of the leader, `SIGCONT` after the takeover.
    Pause,
}

/// The sizes and bounds of the scenario.
#[derive(Clone, Copy, Debug)]
pub struct Plan<'a> {
    /// The PostgreSQL URL both replicas use.
    pub store: &'a str,
    /// Agents of the catalog fleet.
    pub agents: usize,
    /// Resources they hold in all.
    pub resources: usize,
    /// Concurrent cycling users.
    pub users: usize,
    /// Unmeasured cycling before the steady phase.
    pub warmup: Duration,
    /// How long the steady phase samples the standby's lag.
    pub window: Duration,
    /// Failovers, `kill -9` and `SIGSTOP` in turn.
    pub failovers: usize,
}

/// Runs the scenario.
pub async fn run(
    launch: &Launch,
    s: Plan<'_>,
    failures: &Arc<Tally>,
    report: &mut Report,
) -> Result<(), Failure> {
    let store = s.store;
    let mut launch = launch.clone();
    if !launch
        .args
        .iter()
        .any(|a| a.starts_with("--ping-interval-ms"))
    {
        launch
            .args
            .push(format!("--ping-interval-ms={PING_INTERVAL_MS}"));
    }
    let leader = launch.start(Journal::Store(store)).await?;
    let standby = launch.start_standby(store).await?;
    let shared = Arc::new(Shared {
        replicas: RwLock::new([leader.addr, standby.addr]),
        disrupted: AtomicBool::new(false),
        errors: failures.clone(),
        interruptions: Tally::default(),
        readies: Mutex::default(),
        readied: Notify::new(),
    });
    let mut run = Replicas {
        launch,
        store,
        servers: [Some(leader), Some(standby)],
        lead: 0,
        shared: shared.clone(),
    };
    run.wait_following().await?;
    // Users stop first: a cycle needs its agent.
    let (stop_agents, agents_stopping) = watch::channel(false);
    let (stop_users, users_stopping) = watch::channel(false);
    let plans = fleet::catalog(1, s.agents, s.resources, fleet::Provisioning::Static);
    let mut agents = start_agents(&shared, plans, &agents_stopping).await?;
    let mut clients = JoinSet::new();
    for u in 0..s.users {
        let request = fleet::request(u % fleet::KIND_COUNT, &format!("failover-{u}"), 600);
        clients.spawn(user(shared.clone(), request, users_stopping.clone()));
    }
    let outcome = run.measure(s, report).await;
    let _ = stop_users.send(true);
    while clients.join_next().await.is_some() {}
    let _ = stop_agents.send(true);
    while agents.join_next().await.is_some() {}
    run.stop().await;
    let interrupted = shared.interruptions.lines();
    if !interrupted.is_empty() {
        report.notes.push(format!(
            "failover: {} failed attempts of clients during the failovers (not errors): {}",
            shared.interruptions.total(),
            interrupted.join("; ")
        ));
    }
    outcome
}

/// The two replicas the scenario started, and which leads.
struct Replicas<'a> {
    launch: Launch,
    store: &'a str,
    /// By slot; `None` only while a failover replaces one.
    servers: [Option<Server>; 2],
    /// The leader's slot.
    lead: usize,
    shared: Arc<Shared>,
}

impl Replicas<'_> {
    /// The server in `slot`.
    fn server(&self, slot: usize) -> Result<&Server, Failure> {
        self.servers[slot]
            .as_ref()
            .ok_or_else(|| Failure::new("failover", format!("no server in slot {slot}")))
    }

    /// Waits until the standby shows the leader's epoch (it has followed the journal).
    async fn wait_following(&self) -> Result<(), Failure> {
        let standby = self.server(1 - self.lead)?.addr;
        let leader = Lag::read(self.server(self.lead)?.addr).await?;
        let deadline = Instant::now() + FOLLOW_WAIT;
        loop {
            let lag = Lag::read(standby).await?;
            if lag.epoch >= leader.epoch && lag.epoch > 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Failure::new(
                    "failover",
                    format!(
                        "the standby showed epoch {} after {FOLLOW_WAIT:?}",
                        lag.epoch
                    ),
                ));
            }
            sleep(LAG_EVERY).await;
        }
    }

    /// The steady phase with the standby's lag, then the failovers.
    async fn measure(&mut self, s: Plan<'_>, report: &mut Report) -> Result<(), Failure> {
        sleep(s.warmup).await;
        let leader = self.server(self.lead)?;
        self.shared.take_samples();
        let before = CpuTimes::now(leader);
        let start = Instant::now();
        let lags = sample_lag(self.server(1 - self.lead)?.addr, s.window).await?;
        let samples_us = self.shared.take_samples();
        let steady = Run {
            cycles: samples_us.len() as u64,
            elapsed: start.elapsed(),
            samples_us,
        };
        let name = format!("failover/{}u, standby following", s.users);
        report.phases.push(phase(leader, name, steady, before));
        report_lag(&lags, report);
        let mut times: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        for i in 0..s.failovers {
            let fault = if i % 2 == 1 {
                Fault::Pause
            } else {
                Fault::Kill
            };
            let (healthy, took) = self.fail_over(fault).await?;
            report.notes.push(format!(
                "failover {}: {} to the new leader's /healthz 200 {:.0} ms, to its first ready {:.0} ms",
                i + 1,
                fault_name(fault),
                healthy.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e3
            ));
            times[usize::from(fault == Fault::Pause)].push(users::micros(took));
            sleep(BETWEEN).await;
        }
        let [mut kills, mut pauses] = times;
        check_takeovers(report, Fault::Kill, &mut kills, 2.0);
        if !pauses.is_empty() {
            check_takeovers(report, Fault::Pause, &mut pauses, 5.0);
        }
        Ok(())
    }

    /// One failover: the leader killed or paused, the time to the first `ready` from the
    /// standby, the old leader gone, a fresh standby in its slot.
    /// Returns the times from the fault to the new leader's `/healthz` `200` and to the first
    /// `ready`.
    async fn fail_over(&mut self, fault: Fault) -> Result<(Duration, Duration), Failure> {
        let next = 1 - self.lead;
        let old = self.servers[self.lead]
            .take()
            .ok_or_else(|| Failure::new("failover", "no leader"))?;
        self.shared.await_ready(self.server(next)?.addr);
        let t0 = Instant::now();
        let old = match fault {
            Fault::Kill => {
                old.kill().await;
                None
            }
            Fault::Pause => {
                old.signal(Signal::STOP);
                Some(old)
            }
        };
        let new_leader = self.server(next)?.addr;
        let (first, healthy) = tokio::join!(
            self.shared.first_ready(t0 + TAKEOVER_WAIT),
            healthy_at(new_leader, t0 + TAKEOVER_WAIT)
        );
        if let Some(old) = old {
            old.signal(Signal::CONT);
            match old.exit_within(EXIT_WAIT).await {
                Some(status) if status.code() == Some(1) => {}
                other => self.shared.errors.record(&Failure::new(
                    "failover",
                    format!("the paused leader, continued, ended with {other:?}, not status 1"),
                )),
            }
        }
        let took = first.map(|f| f.duration_since(t0)).ok_or_else(|| {
            Failure::new(
                "failover",
                format!(
                    "no ready from the standby within {TAKEOVER_WAIT:?} after the {}",
                    fault_name(fault)
                ),
            )
        })?;
        let healthy = healthy.map_or(took, |h| h.duration_since(t0));
        sleep(SETTLE).await;
        self.shared.disrupted.store(false, Ordering::SeqCst);
        let fresh = self.launch.start_standby(self.store).await?;
        self.shared.set_addr(self.lead, fresh.addr);
        self.servers[self.lead] = Some(fresh);
        self.lead = next;
        self.wait_following().await?;
        Ok((healthy, took))
    }

    /// Stops both servers (SIGTERM, then SIGKILL if they linger).
    async fn stop(&mut self) {
        for server in self.servers.iter_mut().filter_map(Option::take) {
            server.stop().await;
        }
    }
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Kill => "kill -9",
        Fault::Pause => "SIGSTOP",
    }
}

/// Checks the p99 of takeover times against `target_secs`.
fn check_takeovers(report: &mut Report, fault: Fault, times: &mut [u32], target_secs: f64) {
    let count = times.len();
    let l = Latency::of(times);
    let secs = |us: u32| f64::from(us) / 1e6;
    report.notes.push(format!(
        "failover: {} to first ready over {count} takeovers: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        fault_name(fault),
        secs(l.p50_us),
        secs(l.p99_us),
        secs(l.max_us)
    ));
    report.check(
        &format!("{} to first ready p99", fault_name(fault)),
        &format!("<= {target_secs:.0} s"),
        format!("{:.2} s (n={count})", secs(l.p99_us)),
        count > 0 && secs(l.p99_us) <= target_secs,
    );
}

/// When the server at `addr` first answers `/healthz` with `200` (probed every
/// [`HEALTHZ_EVERY`]), until `deadline`.
async fn healthy_at(addr: SocketAddr, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        let probe = async {
            let mut conn = HttpConn::connect(addr).await?;
            conn.request("GET", "/healthz").await
        };
        if let Ok(Ok(response)) = timeout(ATTEMPT_TIMEOUT, probe).await {
            if response.status == 200 {
                return Some(Instant::now());
            }
        }
        sleep(HEALTHZ_EVERY).await;
    }
    None
}

/// Reads the standby's lag every [`LAG_EVERY`] for `window`.
async fn sample_lag(addr: SocketAddr, window: Duration) -> Result<Vec<Lag>, Failure> {
    let mut lags = Vec::new();
    let mut every = tokio::time::interval(LAG_EVERY);
    let end = Instant::now() + window;
    while Instant::now() < end {
        every.tick().await;
        lags.push(Lag::read(addr).await?);
    }
    Ok(lags)
}

/// Adds the lag's percentiles to the report.
fn report_lag(lags: &[Lag], report: &mut Report) {
    let mut records: Vec<u32> = lags
        .iter()
        .map(|l| u32::try_from(l.records).unwrap_or(u32::MAX))
        .collect();
    let l = Latency::of(&mut records);
    report.check(
        "standby replication lag, records p50/p99/max",
        "(reported)",
        format!("{} / {} / {}", l.p50_us, l.p99_us, l.max_us),
        true,
    );
    let worst = lags.iter().map(|l| l.seconds).fold(0.0, f64::max);
    report.check(
        "standby replication lag, seconds max",
        "(reported)",
        format!("{worst:.3} s ({} samples)", lags.len()),
        true,
    );
}

/// Starts the agents on the leader (slot 0); returns once every one has registered.
async fn start_agents(
    shared: &Arc<Shared>,
    plans: Vec<AgentPlan>,
    stopping: &watch::Receiver<bool>,
) -> Result<JoinSet<()>, Failure> {
    let planned = plans.len();
    let (registered_tx, mut registered) = tokio::sync::mpsc::channel(planned.max(1));
    let mut tasks = JoinSet::new();
    for plan in plans {
        let (shared, stopping, registered_tx) =
            (shared.clone(), stopping.clone(), registered_tx.clone());
        tasks.spawn(agent(shared, plan, stopping, registered_tx));
    }
    drop(registered_tx);
    let mut count = 0;
    let deadline = Instant::now() + REGISTER_WAIT;
    while count < planned {
        match timeout_at(deadline, registered.recv()).await {
            Some(Some(())) => count += 1,
            _ => break,
        }
    }
    if count < planned {
        return Err(Failure::new(
            "agent_register",
            format!("only {count} of {planned} agents registered"),
        ));
    }
    Ok(tasks)
}

/// An agent that registers with whichever replica takes it and moves to the other when its
/// connection is lost (closed, or silent for [`AGENT_IDLE`]).
async fn agent(
    shared: Arc<Shared>,
    plan: AgentPlan,
    mut stopping: watch::Receiver<bool>,
    registered: tokio::sync::mpsc::Sender<()>,
) {
    let mut slot = 0;
    while !*stopping.borrow() {
        let addr = shared.addr(slot);
        let failure = match timeout(ATTEMPT_TIMEOUT, fleet::register(addr, &plan)).await {
            Ok(Ok(mut socket)) => {
                let _ = registered.try_send(());
                match serve(&mut socket, &plan.agent_id, &mut stopping).await {
                    None => return,
                    Some(f) => f,
                }
            }
            Ok(Err(f)) => f,
            Err(_) => Failure::new("agent_register", "no answer within 1 s"),
        };
        shared.failed(&failure);
        slot = 1 - slot;
        sleep(RETRY_PAUSE).await;
    }
}

/// Answers provisions and releases; `None` when told to stop, else why the connection is lost.
async fn serve(
    socket: &mut Ws,
    agent_id: &str,
    stopping: &mut watch::Receiver<bool>,
) -> Option<Failure> {
    loop {
        let message = tokio::select! {
            () = fleet::stopped(stopping) => {
                ws::close(socket).await;
                return None;
            }
            message = ws::next_order_within(socket, AGENT_IDLE) => message,
        };
        let answer = match message {
            Ok(Some(envelope)) => fleet::answer(&envelope, agent_id),
            Ok(None) => Err(Failure::new("agent_closed", "the server closed an agent")),
            Err(f) => Err(f),
        };
        let sent = match answer {
            Ok(text) => ws::send(socket, text).await,
            Err(f) => Err(f),
        };
        if let Err(f) = sent {
            return Some(f);
        }
    }
}

/// A user cycling on whichever replica serves it: a failed attempt moves it to the other.
async fn user(shared: Arc<Shared>, request: String, stopping: watch::Receiver<bool>) {
    let mut slot = 0;
    let mut http: Option<HttpConn> = None;
    while !*stopping.borrow() {
        let addr = shared.addr(slot);
        let attempt = timeout(ATTEMPT_TIMEOUT, open_ready(addr, &request)).await;
        let failure = match attempt {
            Ok(Ok((mut socket, id, ttr))) => {
                shared.ready(addr, ttr);
                let tail = timeout(TAIL_TIMEOUT, finish(addr, &mut http, &mut socket, &id)).await;
                match tail {
                    Ok(Ok(())) => continue,
                    Ok(Err(f)) => {
                        release_anywhere(&shared, &id).await;
                        f
                    }
                    Err(_) => {
                        release_anywhere(&shared, &id).await;
                        Failure::new("timeout", "the end of a cycle took > 5 s")
                    }
                }
            }
            Ok(Err(f)) => f,
            Err(_) => Failure::new("timeout", "no ready within 1 s"),
        };
        shared.failed(&failure);
        http = None;
        slot = 1 - slot;
        sleep(RETRY_PAUSE).await;
    }
}

/// Opens `/allocate/` on `addr`, asks, waits for `ready`; the socket, the allocation and the
/// time to ready.
async fn open_ready(addr: SocketAddr, request: &str) -> Result<(Ws, String, Duration), Failure> {
    let t0 = Instant::now();
    let mut socket = ws::connect(addr, "/allocate/").await?;
    ws::send(&mut socket, request.to_owned()).await?;
    let id = users::wait_ready(&mut socket).await?;
    Ok((socket, id, t0.elapsed()))
}

/// DELETE of the allocation, then `released` and the close.
async fn finish(
    addr: SocketAddr,
    http: &mut Option<HttpConn>,
    socket: &mut Ws,
    id: &str,
) -> Result<(), Failure> {
    users::delete(addr, http, id).await?;
    users::expect_released(socket).await
}

/// Releases an interrupted cycle's allocation on whichever replica answers (any answer but a
/// `5xx` settles it), so that a takeover does not keep it held.
async fn release_anywhere(shared: &Shared, id: &str) {
    let deadline = Instant::now() + RELEASE_WAIT;
    let mut slot = 0;
    while Instant::now() < deadline {
        let addr = shared.addr(slot);
        let delete = async {
            let mut conn = HttpConn::connect(addr).await?;
            conn.request("DELETE", &format!("/allocate/{id}")).await
        };
        if let Ok(Ok(response)) = timeout(ATTEMPT_TIMEOUT, delete).await {
            if response.status < 500 {
                return;
            }
        }
        slot = 1 - slot;
        sleep(RETRY_PAUSE).await;
    }
    shared.failed(&Failure::new(
        "release",
        format!("allocation {id} not released on either replica within {RELEASE_WAIT:?}"),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_read_from_metrics() {
        let text = "# TYPE allocate_replication_lag_records gauge\n\
                    allocate_replication_lag_records 12\n\
                    allocate_replication_lag_seconds 0.150\n\
                    allocate_store_epoch{} 3\n";
        let lag = Lag::parse(text).unwrap();
        assert_eq!((lag.records, lag.epoch), (12, 3));
        assert!((lag.seconds - 0.15).abs() < 1e-9);
        assert_eq!(Lag::parse("allocate_store_epoch 3\n"), None);
    }
}

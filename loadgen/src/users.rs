//! Simulated users: the allocation cycle (open, ask, wait for `ready`, DELETE, see the close),
//! queue hand-offs between two clients, and clients that only wait.

use crate::failure::{Failure, Tally};
use crate::fleet;
use crate::http::HttpConn;
use crate::ws::{self, Ws};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant};

/// The longest one cycle or hand-off may take before it counts as a failure.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request may wait in the queue (longer than any phase).
const WAIT_SECS: u64 = 600;

/// Waiting clients connecting at once.
const CONNECTS_AT_ONCE: usize = 128;

/// What a run of cycles measured.
#[derive(Debug, Default)]
pub struct Run {
    /// Completed cycles.
    pub cycles: u64,
    /// From the first start to the last finish.
    pub elapsed: Duration,
    /// Time to ready (or hand-off latency) of each completed cycle, in microseconds.
    pub samples_us: Vec<u32>,
}

/// The bounds of a run: it stops at whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Cycles to start at most.
    pub count: u64,
    /// Time after which no cycle starts.
    pub time: Duration,
}

/// How fast users start cycles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each user starts its next cycle as soon as the last one ends.
    Flat,
    /// All users together start about this many cycles per second; a user that falls
    /// behind its schedule starts at once but never bursts to catch up.
    Rate(f64),
}

/// Shared by the tasks of a run: who may start another cycle.
struct Gate {
    deadline: Instant,
    started: AtomicU64,
    count: u64,
}

impl Gate {
    fn new(bounds: Bounds) -> Gate {
        Gate {
            deadline: Instant::now() + bounds.time,
            started: AtomicU64::new(0),
            count: bounds.count,
        }
    }

    fn next(&self) -> bool {
        Instant::now() < self.deadline && self.started.fetch_add(1, Ordering::Relaxed) < self.count
    }
}

/// `users` users, user `u` asking for catalog kind `u % KIND_COUNT`, cycling until the bounds.
pub async fn cycles(
    addr: SocketAddr,
    users: usize,
    bounds: Bounds,
    pace: Pace,
    failures: &Arc<Tally>,
) -> Run {
    let gate = Arc::new(Gate::new(bounds));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for u in 0..users {
        let (gate, failures) = (gate.clone(), failures.clone());
        let request = fleet::request(u % fleet::KIND_COUNT, &format!("load-{u}"), WAIT_SECS);
        // Paced users start their cycles evenly spread over one interval.
        let every = match pace {
            Pace::Flat => None,
            Pace::Rate(rate) => Some(Duration::from_secs_f64(users as f64 / rate.max(1e-3))),
        };
        let mut next = start + every.map_or(Duration::ZERO, |e| e.mul_f64(u as f64 / users as f64));
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut http: Option<HttpConn> = None;
            loop {
                if let Some(every) = every {
                    tokio::time::sleep_until(next).await;
                    next = (next + every).max(Instant::now());
                }
                if !gate.next() {
                    break;
                }
                let outcome = timeout(CYCLE_TIMEOUT, cycle(addr, &mut http, &request)).await;
                match outcome.unwrap_or_else(|_| Err(Failure::new("timeout", "cycle took > 10 s")))
                {
                    Ok(ttr) => samples.push(micros(ttr)),
                    Err(f) => {
                        failures.record(&f);
                        http = None;
                    }
                }
            }
            samples
        });
    }
    collect(tasks, start).await
}

/// One cycle; returns the time from opening the socket to `ready`.
async fn cycle(
    addr: SocketAddr,
    http: &mut Option<HttpConn>,
    request: &str,
) -> Result<Duration, Failure> {
    let t0 = Instant::now();
    let mut socket = ws::connect(addr, "/allocate/").await?;
    ws::send(&mut socket, request.to_owned()).await?;
    let id = wait_ready(&mut socket).await?;
    let ttr = t0.elapsed();
    delete(addr, http, &id).await?;
    expect_released(&mut socket).await?;
    Ok(ttr)
}

/// Reads past `queued` messages to `ready`; returns the allocation id.
pub async fn wait_ready(socket: &mut Ws) -> Result<String, Failure> {
    loop {
        let envelope = ws::expect(socket).await?;
        match ws::state(&envelope) {
            "queued" => {}
            "ready" => return ws::allocation_id(&envelope).map(|id| id.to_string()),
            _ => {
                return Err(Failure::new(
                    "unexpected_message",
                    format!("waiting for ready, got {envelope:?}"),
                ))
            }
        }
    }
}

/// After a DELETE: `released`, then the server closes the socket.
pub async fn expect_released(socket: &mut Ws) -> Result<(), Failure> {
    let envelope = ws::expect(socket).await?;
    if ws::state(&envelope) != "released" {
        return Err(Failure::new(
            "unexpected_message",
            format!("waiting for released, got {envelope:?}"),
        ));
    }
    ws::finish(socket).await
}

/// `DELETE /allocate/{id}` on the user's keep-alive connection (opened when missing).
pub async fn delete(
    addr: SocketAddr,
    http: &mut Option<HttpConn>,
    id: &str,
) -> Result<(), Failure> {
    let conn = match http {
        Some(conn) => conn,
        None => http.insert(HttpConn::connect(addr).await?),
    };
    let response = conn.request("DELETE", &format!("/allocate/{id}")).await?;
    if response.status != 200 {
        return Err(Failure::new(
            "delete",
            format!(
                "status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
        ));
    }
    Ok(())
}

/// `pairs` pairs of clients taking turns on one resource each (tag `handoff-{p}`): the holder
/// is deleted while the other waits, and the sample is DELETE sent to `ready` received.
pub async fn handoffs(
    addr: SocketAddr,
    pairs: usize,
    bounds: Bounds,
    failures: &Arc<Tally>,
) -> Run {
    let gate = Arc::new(Gate::new(bounds));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for p in 0..pairs {
        let (gate, failures) = (gate.clone(), failures.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            if let Err(f) = pair(addr, p, &gate, &mut samples).await {
                failures.record(&f);
            }
            samples
        });
    }
    collect(tasks, start).await
}

/// The request of hand-off pair `p`.
fn handoff_request(p: usize) -> String {
    let requirements = serde_json::json!({
        "tags": [format!("handoff-{p}")],
        "username": format!("handoff-{p}"),
        "allocation_timeout_seconds": WAIT_SECS,
    });
    serde_json::json!({ "requirements": requirements }).to_string()
}

async fn pair(
    addr: SocketAddr,
    p: usize,
    gate: &Gate,
    samples: &mut Vec<u32>,
) -> Result<(), Failure> {
    let request = handoff_request(p);
    let mut http = Some(HttpConn::connect(addr).await?);
    let mut holder = ws::connect(addr, "/allocate/").await?;
    ws::send(&mut holder, request.clone()).await?;
    let mut holder_id = wait_ready(&mut holder).await?;
    while gate.next() {
        let turn = timeout(
            CYCLE_TIMEOUT,
            handoff(addr, &mut http, &request, &mut holder, &holder_id),
        );
        let (waiter, waiter_id, latency) = turn
            .await
            .unwrap_or_else(|_| Err(Failure::new("timeout", "hand-off took > 10 s")))?;
        samples.push(micros(latency));
        (holder, holder_id) = (waiter, waiter_id);
    }
    delete(addr, &mut http, &holder_id).await?;
    expect_released(&mut holder).await
}

/// One hand-off: a new client queues, the holder is deleted, the new client gets `ready`.
async fn handoff(
    addr: SocketAddr,
    http: &mut Option<HttpConn>,
    request: &str,
    holder: &mut Ws,
    holder_id: &str,
) -> Result<(Ws, String, Duration), Failure> {
    let mut waiter = ws::connect(addr, "/allocate/").await?;
    ws::send(&mut waiter, request.to_owned()).await?;
    let first = ws::expect(&mut waiter).await?;
    if ws::state(&first) != "queued" {
        return Err(Failure::new(
            "unexpected_message",
            format!("the second client of a pair got {first:?}"),
        ));
    }
    let t0 = Instant::now();
    let ready = async {
        let id = wait_ready(&mut waiter).await?;
        Ok::<_, Failure>((id, t0.elapsed()))
    };
    let (deleted, ready, released) = tokio::join!(
        delete(addr, http, holder_id),
        ready,
        expect_released(holder)
    );
    deleted?;
    released?;
    let (id, latency) = ready?;
    Ok((waiter, id, latency))
}

/// Clients that wait in the queue until stopped; dropping it (or [`Waiters::stop`]) ends them.
#[derive(Debug)]
pub struct Waiters {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Waiters {
    /// Opens `count` clients sending `request` and returns once each has been told `queued`.
    pub async fn start(
        addr: SocketAddr,
        count: usize,
        request: String,
        failures: &Arc<Tally>,
    ) -> Result<Waiters, Failure> {
        let (stop, stopping) = watch::channel(false);
        let (queued_tx, mut queued) = tokio::sync::mpsc::channel(count.max(1));
        let gate = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
        let mut tasks = JoinSet::new();
        for _ in 0..count {
            let (gate, mut stopping, failures) = (gate.clone(), stopping.clone(), failures.clone());
            let (request, queued_tx) = (request.clone(), queued_tx.clone());
            tasks.spawn(async move {
                let opened = {
                    let _permit = gate.acquire().await;
                    timeout(CYCLE_TIMEOUT, open_waiting(addr, request)).await
                };
                let mut socket = match opened {
                    Ok(Ok(socket)) => socket,
                    Ok(Err(f)) => return failures.record(&f),
                    Err(_) => {
                        return failures.record(&Failure::new("timeout", "queueing took > 10 s"))
                    }
                };
                let _ = queued_tx.send(()).await;
                loop {
                    let message = tokio::select! {
                        () = fleet::stopped(&mut stopping) => return ws::close(&mut socket).await,
                        message = ws::next(&mut socket) => message,
                    };
                    let failure = match message {
                        Ok(Some(e)) if ws::state(&e) == "queued" => continue,
                        _ if *stopping.borrow() => return,
                        Ok(Some(e)) => Failure::new(
                            "unexpected_message",
                            format!("a waiting client got {e:?}"),
                        ),
                        Ok(None) => Failure::new("ws_closed", "the server closed a waiting client"),
                        Err(f) => f,
                    };
                    return failures.record(&failure);
                }
            });
        }
        drop(queued_tx);
        let mut waiting = 0;
        while waiting < count && queued.recv().await.is_some() {
            waiting += 1;
        }
        if waiting < count {
            return Err(Failure::new(
                "waiters",
                format!("only {waiting} of {count} clients were queued"),
            ));
        }
        Ok(Waiters { stop, tasks })
    }

    /// Closes every waiting client (which cancels its request) and waits for them to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn open_waiting(addr: SocketAddr, request: String) -> Result<Ws, Failure> {
    let mut socket = ws::connect(addr, "/allocate/").await?;
    ws::send(&mut socket, request).await?;
    let first = ws::expect(&mut socket).await?;
    if ws::state(&first) != "queued" {
        return Err(Failure::new(
            "unexpected_message",
            format!("a client meant to wait got {first:?}"),
        ));
    }
    Ok(socket)
}

/// Holds one allocation until [`Holder::release`]; a task keeps reading its socket meanwhile,
/// so that it answers the server's pings.
#[derive(Debug)]
pub struct Holder {
    id: String,
    reader: JoinHandle<Result<(), Failure>>,
}

impl Holder {
    /// Allocates with `request` and waits for `ready`.
    pub async fn take(addr: SocketAddr, request: String) -> Result<Holder, Failure> {
        let taken = timeout(CYCLE_TIMEOUT, async {
            let mut socket = ws::connect(addr, "/allocate/").await?;
            ws::send(&mut socket, request).await?;
            let id = wait_ready(&mut socket).await?;
            Ok::<_, Failure>((socket, id))
        });
        let (mut socket, id) = taken
            .await
            .unwrap_or_else(|_| Err(Failure::new("timeout", "no ready within 10 s")))?;
        let reader = tokio::spawn(async move { expect_released(&mut socket).await });
        Ok(Holder { id, reader })
    }

    /// Deletes the allocation and sees the socket get `released` and close.
    pub async fn release(self, addr: SocketAddr) -> Result<(), Failure> {
        delete(addr, &mut None, &self.id).await?;
        match timeout(CYCLE_TIMEOUT, self.reader).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(Failure::new("holder", e)),
            Err(_) => Err(Failure::new("timeout", "no released after the DELETE")),
        }
    }
}

async fn collect(mut tasks: JoinSet<Vec<u32>>, start: Instant) -> Run {
    let mut run = Run::default();
    while let Some(done) = tasks.join_next().await {
        run.samples_us.extend(done.unwrap_or_default());
    }
    run.elapsed = start.elapsed();
    run.cycles = run.samples_us.len() as u64;
    run
}

/// A duration in microseconds, saturating.
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

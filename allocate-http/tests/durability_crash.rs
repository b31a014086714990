//! `kill -9` at random moments under load, restart, repeat: every allocation a client saw
//! `ready` and did not release is still there with the same resource and expiry, every
//! release answered 200 stays released, no resource is held twice, resources wait `offline`
//! for their agent, and the server always comes back.
//!
//! Snapshots are taken every few records, so that kills also land in the middle of one.
//! The same runs with the journal in PostgreSQL (`--store`, a cluster of the test's own), and
//! there with a standby waiting, which takes over from each killed leader (a new standby
//! waits for the next kill). In that run every other leader is paused (SIGSTOP) instead, past
//! its session timeout: the standby takes over, and the old leader, continued, must exit
//! without having appended a record after the takeover. Each prints the times from `kill -9`
//! (or SIGSTOP) to the first `ready` that a client saw from the next server.
//! A failing run prints its seed; `ALLOCATE_TEST_SEED=<seed>` repeats its choices.

mod durability_support;

use durability_support::{
    appended_since, launch_store, start_ok, start_store_ok, unix_now, Launched, Rng, ServerProc,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::postgres::Cluster;
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// Kill-and-restart cycles.
const CYCLES: usize = 20;
/// Kill-and-restart cycles with the PostgreSQL store.
const PG_CYCLES: usize = 8;
/// Kill-or-pause-and-takeover cycles with a standby waiting.
const TAKEOVER_CYCLES: usize = 6;
/// Concurrent clients.
const WORKERS: u64 = 6;
/// Static machines of the one agent.
const RESOURCES: usize = 8;
/// Allocations kept across a kill, at most (so that the machines never all stay taken).
const KEPT_MAX: usize = 2;
/// Flags of every start: a snapshot (and a new journal file) every few allocations.
const FLAGS: &[&str] = &["--snapshot-every-records", "25"];
/// The bound on any one network step.
const STEP: Duration = Duration::from_secs(5);
/// Flags of the takeover run: PostgreSQL ends a paused leader's session after 3 s.
const TAKEOVER_FLAGS: &[&str] = &[
    "--snapshot-every-records",
    "25",
    "--store-session-timeout-secs",
    "3",
];
/// How long a continued old leader may take to exit.
const EXIT_MAX: Duration = Duration::from_secs(10);
/// The log line of a standby.
const STANDBY: &str = "standby: another allocate-http is the writer";

/// What a client saw ready: where, how to log in, and until when.
#[derive(Clone, Debug, PartialEq)]
struct Lease {
    inventory_id: String,
    connection: Value,
    expires: u64,
}

/// What the clients know, across restarts.
#[derive(Debug, Default)]
struct Model {
    /// Seen `ready`, not released.
    held: HashMap<String, Lease>,
    /// Released with a 200.
    released: HashSet<String>,
    /// A release was sent but its answer never came (the server died): either outcome is fine.
    unsure: HashMap<String, Lease>,
    /// Held allocations waiting for a client to release them.
    to_release: Vec<String>,
    /// Allocations seen `ready` in all.
    ready_seen: usize,
    /// Releases answered 200 in all.
    released_seen: usize,
    /// What must never happen, as seen by the clients.
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Model>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_loses_nothing_a_client_saw() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let data = scratch.path().join("data");
    kill_9_cycles(CYCLES, || start_ok(&data, FLAGS), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_with_the_postgres_store_loses_nothing_a_client_saw() {
    let cluster = testkit::postgres::Cluster::start();
    let url = cluster.url();
    kill_9_cycles(PG_CYCLES, || start_store_ok(&url, FLAGS), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_or_pause_of_the_leader_with_a_standby_loses_nothing_a_client_saw() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let standby: Mutex<Option<Launched>> = Mutex::new(None);
    let start = || {
        // The standby takes over from the killed or paused leader (the first time, a writer
        // starts); a new one waits for the next kill.
        let waiting = standby.lock().expect("standby").take();
        let leader = match waiting {
            Some(next) => next.running(),
            None => start_store_ok(&url, TAKEOVER_FLAGS),
        };
        let next = launch_store(&url, TAKEOVER_FLAGS);
        assert!(
            next.wait_for_line(STANDBY, STEP).is_some(),
            "a standby waits:\n{}",
            next.log()
        );
        *standby.lock().expect("standby") = Some(next);
        leader
    };
    kill_9_cycles(TAKEOVER_CYCLES, start, Some(&cluster)).await;
}

/// A leader paused with SIGSTOP, and the record its epoch had reached then.
struct Paused {
    server: ServerProc,
    epoch: String,
}

impl Paused {
    /// Pauses `server`, the leader on `cluster`.
    fn pause(server: ServerProc, cluster: &Cluster) -> Paused {
        let epoch = cluster.sql("SELECT epoch FROM allocate_leader");
        server.signal("STOP");
        Paused { server, epoch }
    }

    /// Once another leader serves: continued, the old one exits (1) and its epoch has no
    /// record after the one the new leader took over from.
    fn continue_and_check(mut self, cluster: &Cluster) {
        let taken_at = cluster.sql("SELECT last_seq FROM allocate_leader");
        assert_ne!(
            cluster.sql("SELECT epoch FROM allocate_leader"),
            self.epoch,
            "a new leader took over"
        );
        self.server.signal("CONT");
        let exited = self.server.wait_exit(EXIT_MAX);
        let log = self.server.kill9();
        assert_eq!(exited, Some(1), "the continued old leader exits:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
        let late = appended_since(cluster, &self.epoch, &taken_at);
        assert_eq!(late, "0", "the paused leader appended after the takeover");
    }
}

/// `cycles` times: a server from `start`, clients and an agent on it, `kill -9` at a random
/// moment (with `pauses`, the PostgreSQL store's cluster, every other cycle pauses the
/// leader instead and checks it once the next one serves); then checks what the last start
/// recovered.
async fn kill_9_cycles(cycles: usize, start: impl Fn() -> ServerProc, pauses: Option<&Cluster>) {
    let seed = Rng::seed();
    println!("seed {seed} (ALLOCATE_TEST_SEED={seed} repeats this run)");
    let mut rng = Rng::new(seed);
    let model: Shared = Arc::default();
    let agent_id = uuid::Uuid::new_v4().to_string();
    let mut inventory: Option<Vec<String>> = None;
    let mut killed_at: Option<(Instant, bool)> = None;
    let (mut first_ready_ms, mut after_pause_ms) = (Vec::new(), Vec::new());
    let mut paused: Option<Paused> = None;
    for cycle in 0..cycles {
        let ready_before = model.lock().expect("model").ready_seen;
        let server = start();
        if let (Some(old), Some(cluster)) = (paused.take(), pauses) {
            old.continue_and_check(cluster);
        }
        check_recovered(&server, &model).await;
        let (agent, ids) = connect_agent(&server, &agent_id).await;
        assert_eq!(
            inventory.get_or_insert_with(|| ids.clone()),
            &ids,
            "stable ids"
        );
        settle(&server, &model).await;
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let rng = Rng::new(rng.next());
                let user = format!("user-{w}");
                tokio::spawn(worker(server.addr, model.clone(), stop.clone(), rng, user))
            })
            .collect();
        if let Some((killed, was_pause)) = killed_at {
            let ms = first_ready(&model, ready_before, killed).await.as_millis();
            if was_pause {
                &mut after_pause_ms
            } else {
                &mut first_ready_ms
            }
            .push(ms);
        }
        tokio::time::sleep(Duration::from_millis(rng.between(30, 300))).await;
        let pause = pauses.filter(|_| cycle % 2 == 1);
        killed_at = Some((Instant::now(), pause.is_some()));
        let log = match pause {
            Some(cluster) => {
                paused = Some(Paused::pause(server, cluster));
                String::new()
            }
            None => server.kill9(),
        };
        stop.store(true, Ordering::SeqCst);
        stop_workers(workers, paused.is_some()).await;
        agent.abort();
        assert!(!log.contains("panicked"), "cycle {cycle}:\n{log}");
        let m = model.lock().expect("model");
        assert!(m.violations.is_empty(), "cycle {cycle}: {:?}", m.violations);
    }
    let server = start();
    if let (Some(old), Some(cluster)) = (paused.take(), pauses) {
        old.continue_and_check(cluster);
    }
    check_recovered(&server, &model).await;
    let m = model.lock().expect("model");
    println!(
        "{} allocations seen ready, {} released, {} held at the end",
        m.ready_seen,
        m.released_seen,
        m.held.len()
    );
    first_ready_ms.sort_unstable();
    println!("kill -9 to the first ready from the next server (ms, sorted): {first_ready_ms:?}");
    if pauses.is_some() {
        after_pause_ms.sort_unstable();
        println!(
            "SIGSTOP to the first ready from the next server (ms, sorted): {after_pause_ms:?}"
        );
    }
    assert!(
        m.ready_seen >= cycles && m.released_seen >= cycles / 2,
        "the load did too little to prove anything: {m:?}"
    );
}

/// Waits for the clients to stop after a kill; after a pause, stops them at once: a request
/// to the paused leader would hang until its timeout, and what they leave unsure the next
/// cycle settles.
async fn stop_workers(workers: Vec<tokio::task::JoinHandle<()>>, paused: bool) {
    for w in workers {
        if paused {
            w.abort();
            continue;
        }
        timeout(STEP * 2, w)
            .await
            .expect("a client stops after the kill")
            .expect("client task");
    }
}

/// Waits until the clients have seen more than `before` allocations `ready`; the time since
/// `killed`.
async fn first_ready(model: &Shared, before: usize, killed: Instant) -> Duration {
    let deadline = Instant::now() + STEP * 2;
    while model.lock().expect("model").ready_seen <= before {
        assert!(Instant::now() < deadline, "no allocation is served");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.elapsed()
}

/// Right after a restart, before the agent is back: the model's promises hold.
async fn check_recovered(server: &ServerProc, model: &Shared) {
    let all = server.get("/allocate/").await;
    let by_id: HashMap<&str, &Value> = all
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| (a["allocation_id"].as_str().expect("id"), a))
        .collect();
    check_model(&model.lock().expect("model"), &by_id);
    check_holders(&by_id);
    for r in server.get("/inventory/").await.as_array().expect("a list") {
        assert_eq!(r["state"], "offline", "until its agent reconnects: {r}");
    }
}

/// Held allocations are there, unchanged; releases answered 200 stayed released.
fn check_model(m: &Model, by_id: &HashMap<&str, &Value>) {
    for (id, lease) in &m.held {
        let a = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} was seen ready and not released, and is gone"));
        assert_eq!(a["state"], "ready", "{a}");
        assert_lease(a, lease);
    }
    for id in &m.released {
        let a = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} was released and is forgotten"));
        assert_eq!(a["state"], "released", "a 200 release is durable: {a}");
    }
    for (id, lease) in &m.unsure {
        let Some(a) = by_id.get(id.as_str()) else {
            panic!("{id} was seen ready and is forgotten");
        };
        match a["state"].as_str() {
            Some("released") => {}
            Some("ready") => assert_lease(a, lease),
            _ => panic!("{id} was held or released, not {a}"),
        }
    }
}

fn assert_lease(a: &Value, lease: &Lease) {
    assert_eq!(a["inventory_id"], lease.inventory_id.as_str(), "{a}");
    assert_eq!(a["connection"], lease.connection, "{a}");
    assert_eq!(a["expires"], lease.expires, "{a}");
}

/// No resource is held twice, and no request waits for a client that is gone.
fn check_holders(by_id: &HashMap<&str, &Value>) {
    let mut holding = HashSet::new();
    for a in by_id.values() {
        let state = a["state"].as_str().expect("state");
        assert!(
            !matches!(state, "queued" | "provisioning"),
            "a waiting request outlived its client: {a}"
        );
        if state == "ready" {
            let resource = a["inventory_id"].as_str().expect("resource");
            assert!(holding.insert(resource), "{resource} is held twice");
        }
    }
}

/// The agent (static machines) connects and registers; a task keeps its socket read.
async fn connect_agent(
    server: &ServerProc,
    agent_id: &str,
) -> (tokio::task::JoinHandle<()>, Vec<String>) {
    let (mut ws, _) = timeout(STEP, connect_async(server.ws_url("/agent/")))
        .await
        .expect("bounded")
        .expect("agent connects");
    let resources: Vec<Value> = (0..RESOURCES)
        .map(|i| {
            json!({"labels": ["x"], "cpu_count": 4, "memory_gb": 8, "gpu": [], "type": "VM",
                   "connection": {"host": format!("10.0.0.{i}"), "username": "lab", "password": "pw"}})
        })
        .collect();
    let hello = json!({"agent_id": agent_id, "resources": resources});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .expect("register");
    let reply = loop {
        match timeout(STEP, ws.next()).await.expect("bounded") {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(_)) => continue,
            other => panic!("no registration reply: {other:?}"),
        }
    };
    let reply: Value = serde_json::from_str(&reply).expect("JSON");
    let ids = reply["data"]["inventory_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("registration refused: {reply}"))
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    (reader, ids)
}

/// With the agent back: machines are allocated exactly when a ready allocation holds them.
/// Then the model catches up: unsure releases are resolved, and allocations nobody saw ready
/// (the server died between writing and telling) are released by the test, as an admin would.
async fn settle(server: &ServerProc, model: &Shared) {
    let all = server.get("/allocate/").await;
    let ready: HashMap<String, String> = all
        .as_array()
        .expect("a list")
        .iter()
        .filter(|a| a["state"] == "ready")
        .map(|a| {
            let id = a["allocation_id"].as_str().expect("id").to_owned();
            (id, a["inventory_id"].as_str().expect("resource").to_owned())
        })
        .collect();
    let held: HashSet<&String> = ready.values().collect();
    for r in server.get("/inventory/").await.as_array().expect("a list") {
        let id = r["inventory_id"].as_str().expect("id").to_owned();
        let expected = if held.contains(&id) {
            "allocated"
        } else {
            "free"
        };
        assert_eq!(r["state"], expected, "{r}");
    }
    let mut stray = Vec::new();
    {
        let mut m = model.lock().expect("model");
        let unsure: Vec<(String, Lease)> = m.unsure.drain().collect();
        for (id, lease) in unsure {
            if ready.contains_key(&id) {
                m.held.insert(id, lease);
            } else {
                m.released.insert(id);
            }
        }
        for id in ready.keys() {
            if !m.held.contains_key(id) {
                stray.push(id.clone());
            }
        }
        m.to_release = m.held.keys().cloned().collect();
    }
    for id in stray {
        let status = server
            .delete(&format!("/allocate/{id}"))
            .await
            .expect("DELETE");
        assert_eq!(status, 200);
        model.lock().expect("model").released.insert(id);
    }
}

/// One client: allocates (keeping a few across kills) and releases, until told to stop.
async fn worker(
    addr: SocketAddr,
    model: Shared,
    stop: Arc<AtomicBool>,
    mut rng: Rng,
    user: String,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("http client");
    let mut mine: Option<String> = None;
    while !stop.load(Ordering::SeqCst) {
        let claimed = mine
            .take()
            .or_else(|| model.lock().expect("model").to_release.pop());
        if let Some(id) = claimed {
            if release(&http, addr, &model, id).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        }
        match allocate(addr, &user).await {
            Ok(Some((id, lease))) => {
                let mut m = model.lock().expect("model");
                m.ready_seen += 1;
                m.held.insert(id.clone(), lease);
                let kept = m.held.len() - m.to_release.len();
                if kept > KEPT_MAX || !rng.one_in(4) {
                    mine = Some(id);
                }
            }
            Ok(None) => {}
            Err(()) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Releases a held allocation; `Err` when the server did not answer.
async fn release(
    http: &reqwest::Client,
    addr: SocketAddr,
    model: &Shared,
    id: String,
) -> Result<(), ()> {
    {
        let mut m = model.lock().expect("model");
        let Some(lease) = m.held.remove(&id) else {
            return Ok(());
        };
        m.unsure.insert(id.clone(), lease);
    }
    let answer = http
        .delete(format!("http://{addr}/allocate/{id}"))
        .send()
        .await;
    let mut m = model.lock().expect("model");
    match answer.map(|r| r.status().as_u16()) {
        Ok(200) => {
            m.unsure.remove(&id);
            m.released.insert(id);
            m.released_seen += 1;
            Ok(())
        }
        Ok(404) => {
            m.violations
                .push(format!("{id}, held, was unknown to DELETE"));
            Ok(())
        }
        Ok(_) | Err(_) => Err(()),
    }
}

/// One allocation: `Some` when it became ready, `None` when refused (nothing free in time),
/// `Err` when the server went away.
async fn allocate(addr: SocketAddr, user: &str) -> Result<Option<(String, Lease)>, ()> {
    let (mut ws, _) = timeout(STEP, connect_async(format!("ws://{addr}/allocate/")))
        .await
        .map_err(drop)?
        .map_err(drop)?;
    let request = json!({"requirements": {"tags": ["x"], "username": user,
        "allocation_timeout_seconds": 1, "expires": unix_now() + 3600}});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .map_err(drop)?;
    let outcome = loop {
        let Ok(Some(Ok(message))) = timeout(STEP, ws.next()).await else {
            return Err(());
        };
        let Message::Text(text) = message else {
            continue;
        };
        let msg: Value = serde_json::from_str(&text).expect("JSON");
        if msg["status"] != 200 {
            break None;
        }
        let data = &msg["data"];
        if data["status"] == "ready" {
            let id = data["allocation_id"].as_str().expect("id").to_owned();
            let lease = Lease {
                inventory_id: data["inventory_id"].as_str().expect("resource").to_owned(),
                connection: data["connection"].clone(),
                expires: data["expires"].as_u64().expect("expires"),
            };
            break Some((id, lease));
        }
    };
    let _ = ws.close(None).await;
    Ok(outcome)
}

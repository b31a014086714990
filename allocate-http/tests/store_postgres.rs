//! The journal in PostgreSQL (`--store`), against a cluster of the test's own: one writer at
//! a time, fenced by its epoch; a standby answers `503 not_leader` and takes over when the
//! writer's session ends; a restart of PostgreSQL stops the writer, and the next start has
//! everything.
//! (`durability_crash` runs its `kill -9` cycles on this store too.)

mod durability_support;

use durability_support::{launch_store, start_store_ok, unix_now, Launched, ServerProc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::postgres::Cluster;
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The bound on any one network step.
const STEP: Duration = Duration::from_secs(5);
/// How long a fenced or cut off writer may take to stop (its heartbeat runs every second).
const STOP_MAX: Duration = Duration::from_secs(10);
/// The log line of a standby.
const STANDBY: &str = "standby: another allocate-http is the writer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_writer_never_appends_after_a_takeover_and_stops_serving() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let Pair {
        mut first,
        agent,
        held,
        standby,
        epoch: old_epoch,
    } = writer_and_standby(&cluster).await;

    // A takeover that the lock did not prevent: the epoch moves on under the first writer.
    let taken_at = cluster.sql("UPDATE allocate_leader SET epoch = epoch + 1 RETURNING last_seq");
    let late = allocate(&first).await;
    assert!(
        late.is_none(),
        "nothing is ready after the takeover: {late:?}"
    );
    assert_eq!(first.wait_exit(STOP_MAX), Some(1), "{}", first.log());
    assert!(
        first.log().contains("must not write again"),
        "{}",
        first.log()
    );
    assert_eq!(
        appended_since(&cluster, &old_epoch, &taken_at),
        "0",
        "the fenced writer appended after the takeover"
    );
    agent.abort();

    // Its session ended with it: the standby takes over, with the allocation.
    let second = standby.running();
    assert_same(&find(&second, &held).await, &held);

    // A writer whose session the database ends (a cut network, a pause past
    // idle_session_timeout) stops too, and the next standby takes over.
    let mut second = second;
    let third = launch_store(&url, &[]);
    assert!(
        third.wait_for_line(STANDBY, STEP).is_some(),
        "{}",
        third.log()
    );
    let ended = cluster.sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted",
    );
    assert_eq!(ended, "1", "one session holds the writer's lock");
    assert_eq!(second.wait_exit(STOP_MAX), Some(1), "{}", second.log());
    let third = third.running();
    assert_same(&find(&third, &held).await, &held);
    let epochs = cluster.sql("SELECT epoch FROM allocate_leader");
    assert_eq!(epochs, "4", "three writers and one forced takeover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_answers_not_leader_naming_the_leader_then_serves_on_the_same_address() {
    let cluster = Cluster::start();
    let url = cluster.url();
    let leader_url = "http://leader.lab:8080";
    let leader = start_store_ok(&url, &["--advertise-url", leader_url]);
    let standby = launch_store(&url, &[]);
    let line = standby
        .wait_for_line("listening as a standby", STEP)
        .unwrap_or_else(|| panic!("a standby listens:\n{}", standby.log()));
    let (_, addr) = line.split_once("address=").expect("an address");
    let addr = addr.trim().to_owned();
    let http = reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("http client");
    for path in ["/healthz", "/inventory/", "/allocate/"] {
        let deadline = tokio::time::Instant::now() + STEP;
        let body = loop {
            let resp = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect("the standby answers");
            assert_eq!(resp.status().as_u16(), 503, "GET {path}");
            let body: Value = resp.json().await.expect("JSON");
            // The standby reads the leader's URL every 200 ms.
            if !body["error"]["leader"].is_null() || tokio::time::Instant::now() > deadline {
                break body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(body["status"], 503, "{body}");
        assert_eq!(body["error"]["code"], "not_leader", "{body}");
        assert_eq!(body["error"]["leader"], leader_url, "{body}");
        assert_eq!(body["error"]["role"], "standby", "{body}");
    }
    drop(leader.kill9());
    let server = standby.running();
    assert_eq!(server.addr.to_string(), addr, "the same address");
    assert_eq!(server.get("/healthz").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_writer_loses_its_session_to_a_standby_and_never_writes_again() {
    let cluster = Cluster::start();
    let mut pair = writer_and_standby(&cluster).await;
    pair.first.signal("STOP");
    // PostgreSQL ends the silent session after idle_session_timeout (10 s).
    let second = pair.standby.running();
    let taken_at = cluster.sql("SELECT last_seq FROM allocate_leader");
    assert_same(&find(&second, &pair.held).await, &pair.held);
    pair.first.signal("CONT");
    let exited = pair.first.wait_exit(STOP_MAX);
    assert_eq!(exited, Some(1), "{}", pair.first.log());
    pair.agent.abort();
    assert_eq!(
        appended_since(&cluster, &pair.epoch, &taken_at),
        "0",
        "the paused writer appended after the takeover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_postgres_stops_the_writer_and_the_next_start_loses_nothing() {
    let mut cluster = Cluster::start();
    let url = cluster.url();
    // A snapshot after every record: usage must be in the stored snapshot.
    let mut server = start_store_ok(&url, &["--snapshot-every-records", "1"]);
    let agent = connect_agent(&server).await;
    let held = allocate(&server).await.expect("ready");
    let ended = allocate(&server).await.expect("ready");
    let ended = ended["allocation_id"].as_str().expect("id");
    let deleted = server.delete(&format!("/allocate/{ended}")).await;
    assert_eq!(deleted.expect("DELETE"), 200);
    agent.abort();
    cluster.restart();
    assert_eq!(
        server.wait_exit(STOP_MAX),
        Some(1),
        "the writer lost its session:\n{}",
        server.log()
    );
    let server = start_store_ok(&url, &[]);
    assert_same(&find(&server, &held).await, &held);
    // The ended allocation's usage is in the store too: two allocations of `u`.
    let usage = server.get("/usage?by=user").await;
    assert_eq!(usage[0]["key"], "u", "{usage}");
    assert_eq!(usage[0]["allocations"], 2, "{usage}");
}

/// A writer with an agent and a `ready` allocation, and a second server waiting as a standby.
struct Pair {
    first: ServerProc,
    agent: tokio::task::JoinHandle<()>,
    held: Value,
    standby: Launched,
    /// The writer's epoch.
    epoch: String,
}

/// Starts a [`Pair`] on `cluster`.
async fn writer_and_standby(cluster: &Cluster) -> Pair {
    let url = &cluster.url();
    let first = start_store_ok(url, &[]);
    let agent = connect_agent(&first).await;
    let held = allocate(&first).await.expect("ready on the first writer");
    let standby = launch_store(url, &[]);
    assert!(
        standby.wait_for_line(STANDBY, STEP).is_some(),
        "a second server waits:\n{}",
        standby.log()
    );
    Pair {
        first,
        agent,
        held,
        standby,
        epoch: cluster.sql("SELECT epoch FROM allocate_leader"),
    }
}

/// How many records of `epoch` the journal table holds after record `seq`.
fn appended_since(cluster: &Cluster, epoch: &str, seq: &str) -> String {
    cluster.sql(&format!(
        "SELECT count(*) FROM allocate_journal WHERE epoch = {epoch} AND seq > {seq}"
    ))
}

/// The allocation `held` as `server` has it now.
async fn find(server: &ServerProc, held: &Value) -> Value {
    let id = held["allocation_id"].as_str().expect("id");
    server.get(&format!("/allocate/{id}")).await
}

/// Still ready, on the same resource, with the same connection and expiry.
fn assert_same(now: &Value, held: &Value) {
    assert_eq!(now["state"], "ready", "{now}");
    for field in ["inventory_id", "connection", "expires"] {
        assert_eq!(now[field], held[field], "{field}: {now} against {held}");
    }
}

/// An agent with two static machines; a task keeps its socket read.
async fn connect_agent(server: &ServerProc) -> tokio::task::JoinHandle<()> {
    let (mut ws, _) = timeout(STEP, connect_async(server.ws_url("/agent/")))
        .await
        .expect("bounded")
        .expect("agent connects");
    let resources: Vec<Value> = (0..2)
        .map(|i| {
            json!({"labels": ["x"], "cpu_count": 4, "memory_gb": 8, "gpu": [], "type": "VM",
                   "connection": {"host": format!("10.0.0.{i}"), "username": "lab", "password": "pw"}})
        })
        .collect();
    let hello = json!({"agent_id": uuid::Uuid::new_v4(), "resources": resources});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .expect("register");
    let reply = timeout(STEP, ws.next()).await.expect("bounded");
    assert!(matches!(reply, Some(Ok(Message::Text(_)))), "{reply:?}");
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// One allocation: its `ready` data, or `None` when anything else came (or nothing).
async fn allocate(server: &ServerProc) -> Option<Value> {
    let (mut ws, _) = timeout(STEP, connect_async(server.ws_url("/allocate/")))
        .await
        .ok()?
        .ok()?;
    let request = json!({"requirements": {"tags": ["x"], "username": "u",
        "allocation_timeout_seconds": 2, "expires": unix_now() + 3600}});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .ok()?;
    loop {
        let Ok(Some(Ok(message))) = timeout(STEP, ws.next()).await else {
            return None;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let msg: Value = serde_json::from_str(&text).expect("JSON");
        if msg["status"] != 200 {
            return None;
        }
        if msg["data"]["status"] == "ready" {
            return Some(msg["data"].clone());
        }
    }
}

//! The journal in PostgreSQL (`--store`), against a cluster of the test's own: one writer at
//! a time, fenced by its epoch; a standby answers `503 not_leader`, follows the journal and
//! takes over when the writer's session ends, replaying only what it had not applied; both
//! roles serve `/metrics` (role, leader changes, a standby's lag); a restart of PostgreSQL
//! stops the writer, and the next start has everything, also under a client's load; a
//! writer cut off from PostgreSQL (a proxy between them) steps down within its session
//! timeout and a standby takes over; `POST /admin/backup` of a writer on the store restores
//! into a data directory.
//! (`durability_crash` runs its `kill -9` cycles on this store too.)

mod common;
mod durability_support;
mod proxy;

use common::{backup_file_name, promtool_check};
use durability_support::{
    appended_since, free_port, launch_store, launch_store_at, start_ok, start_store_ok, unix_now,
    Launched, ServerProc,
};
use futures_util::{SinkExt, StreamExt};
use proxy::Proxy;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::postgres::Cluster;
use tokio::io::AsyncReadExt;
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
    } = writer_and_standby(&cluster, &[]).await;

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
    let standby = launch_store(&url, &["--header-read-timeout-ms", "300"]);
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
    // A standby serves connections as the leader does: one that sends nothing is closed
    // after the header-read timeout.
    let mut silent = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 256];
    let read = timeout(STEP, silent.read(&mut buf)).await;
    assert!(read.is_ok(), "the standby keeps a silent connection open");
    drop(leader.kill9());
    let server = standby.running();
    assert_eq!(server.addr.to_string(), addr, "the same address");
    assert_eq!(server.get("/healthz").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_writer_loses_its_session_to_a_standby_and_never_writes_again() {
    let cluster = Cluster::start();
    let mut pair = writer_and_standby(&cluster, &["--store-session-timeout-secs", "3"]).await;
    let paused = std::time::Instant::now();
    pair.first.signal("STOP");
    // PostgreSQL ends the silent session after idle_session_timeout (3 s here).
    let second = pair.standby.running();
    let taken_at = cluster.sql("SELECT last_seq FROM allocate_leader");
    assert_same(&find(&second, &pair.held).await, &pair.held);
    eprintln!(
        "paused leader: {} ms from SIGSTOP of the leader to the standby serving the allocation",
        paused.elapsed().as_millis()
    );
    pair.first.signal("CONT");
    // Continued, the old writer shows nothing new: what it would commit is refused.
    let late = allocate(&pair.first).await;
    assert!(late.is_none(), "the old writer served {late:?}");
    let exited = pair.first.wait_exit(STOP_MAX);
    assert_eq!(exited, Some(1), "{}", pair.first.log());
    assert_same(&find(&second, &pair.held).await, &pair.held);
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

/// A backup of a writer on the store is the same snapshot file as from a data directory: a
/// server started on a directory holding only it has the lease and the ended allocation's
/// usage as they were at the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_writer_on_the_store_restores_into_a_data_directory() {
    let cluster = Cluster::start();
    let server = start_store_ok(&cluster.url(), &[]);
    let agent = connect_agent(&server).await;
    let held = allocate(&server).await.expect("ready");
    let ended = allocate(&server).await.expect("ready");
    let ended = ended["allocation_id"].as_str().expect("id");
    assert_eq!(
        server
            .delete(&format!("/allocate/{ended}"))
            .await
            .expect("DELETE"),
        200
    );
    let response = timeout(
        STEP,
        reqwest::Client::new()
            .post(server.url("/admin/backup"))
            .send(),
    )
    .await
    .expect("in time")
    .expect("backup");
    assert_eq!(response.status(), 200);
    let name = backup_file_name(&response);
    let backup = response.bytes().await.expect("backup bytes");
    agent.abort();
    drop(server.kill9());

    let scratch = tempfile::tempdir().expect("temp dir");
    let data = scratch.path().join("restored");
    std::fs::create_dir(&data).expect("restored dir");
    std::fs::write(data.join(&name), &backup).expect("write the backup");
    let restored = start_ok(&data, &[]);
    assert_same(&find(&restored, &held).await, &held);
    let usage = restored.get("/usage?by=user").await;
    assert_eq!(usage[0]["allocations"], 2, "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_postgres_under_load_loses_nothing_a_client_saw() {
    let mut cluster = Cluster::start();
    let url = cluster.url();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut leader = launch_store_at(&url, &listen, &[]).running();
    let agent = connect_agent(&leader).await;
    let held = allocate(&leader).await.expect("ready");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(client_loop(leader.addr, stop.clone(), seen.clone()));
    served_more(&seen, 3).await;

    cluster.restart();
    // The writer's session is gone: it stops serving and exits, never to write again.
    assert_eq!(
        leader.wait_exit(STOP_MAX),
        Some(1),
        "the writer lost its session:\n{}",
        leader.log()
    );
    agent.abort();
    let failed = seen.lock().expect("lock").failed;
    // Its supervisor (systemd's Restart=on-failure) starts it again on the same address;
    // the loop, which never stopped, is served again once an agent is back.
    let leader = launch_store_at(&url, &listen, &[]).running();
    let agent = connect_agent(&leader).await;
    served_more(&seen, 3).await;
    stop.store(true, Ordering::Relaxed);
    timeout(STEP * 2, load)
        .await
        .expect("the loop ends")
        .expect("the loop");
    agent.abort();

    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    assert!(
        failed > 0,
        "the loop was not served while the store restarted"
    );
    assert_same(&find(&leader, &held).await, &held);
    for (ready, released) in &seen.ready {
        let now = find(&leader, ready).await;
        match (now["state"].as_str(), released) {
            (Some("released"), _) => {}
            (Some("ready"), false) => assert_same(&now, ready),
            _ => panic!("seen ready (released: {released}), now {now}"),
        }
    }
    eprintln!(
        "postgres restart under load: {} allocations seen ready, {} requests not served",
        seen.ready.len(),
        failed
    );
}

/// What [`client_loop`] saw: each allocation served `ready` and whether its release was
/// answered 200, and how many of its requests were not served.
#[derive(Default)]
struct Seen {
    ready: Vec<(Value, bool)>,
    failed: usize,
}

/// Allocates and releases on `addr` until `stop`, pausing 50 ms after a failure.
async fn client_loop(addr: SocketAddr, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let http = reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("http client");
    while !stop.load(Ordering::Relaxed) {
        let Some(ready) = allocate_at(&format!("ws://{addr}/allocate/")).await else {
            seen.lock().expect("lock").failed += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let id = ready["allocation_id"].as_str().expect("id");
        let released = http
            .delete(format!("http://{addr}/allocate/{id}"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        seen.lock().expect("lock").ready.push((ready, released));
    }
}

/// Waits until the loop has seen `more` allocations `ready` than now.
async fn served_more(seen: &Mutex<Seen>, more: usize) {
    let target = seen.lock().expect("lock").ready.len() + more;
    let deadline = tokio::time::Instant::now() + STEP * 2;
    while seen.lock().expect("lock").ready.len() < target {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loop is not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cut_off_from_postgres_steps_down_and_never_writes_again() {
    let cluster = Cluster::start();
    let (proxy, mut pair) = writer_behind_proxy(&cluster).await;

    let cut_at = std::time::Instant::now();
    proxy.cut();
    // Within its session timeout (3 s): it stops serving and exits.
    assert_eq!(
        pair.first.wait_exit(Duration::from_secs(3)),
        Some(1),
        "{}",
        pair.first.log()
    );
    let stepped_down = cut_at.elapsed();
    pair.agent.abort();
    let second = pair.standby.running();
    let taken_at = cluster.sql("SELECT last_seq FROM allocate_leader");
    assert_same(&find(&second, &pair.held).await, &pair.held);
    eprintln!(
        "network cut: the writer stopped {} ms after the cut, the standby served the \
         allocation after {} ms",
        stepped_down.as_millis(),
        cut_at.elapsed().as_millis()
    );

    // The network back, the old writer started again by its supervisor waits as a standby;
    // the new writer serves, and nothing of the old epoch was appended after the takeover.
    proxy.restore();
    let again = launch_store(&cluster.url_via(proxy.addr.port()), &[]);
    assert!(
        again.wait_for_line(STANDBY, STEP).is_some(),
        "{}",
        again.log()
    );
    let agent = connect_agent(&second).await;
    assert!(allocate(&second).await.is_some(), "the new writer serves");
    agent.abort();
    assert_eq!(
        appended_since(&cluster, &pair.epoch, &taken_at),
        "0",
        "the cut off writer appended after the takeover"
    );
    let now: u64 = parse(&cluster.sql("SELECT epoch FROM allocate_leader"));
    assert_eq!(now, parse(&pair.epoch) + 1, "one takeover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_behind_a_silent_network_steps_down_after_its_session_timeout() {
    let cluster = Cluster::start();
    let (proxy, mut pair) = writer_behind_proxy(&cluster).await;

    // Nothing forwarded, nothing closed: the writer's next statement never returns.
    let stalled_at = std::time::Instant::now();
    proxy.stall();
    let second = pair.standby.running();
    let taken_at = cluster.sql("SELECT last_seq FROM allocate_leader");
    assert_same(&find(&second, &pair.held).await, &pair.held);
    let served = stalled_at.elapsed();
    // Its watchdog gives up on the call after the session timeout (3 s): it stops.
    assert_eq!(pair.first.wait_exit(STEP), Some(1), "{}", pair.first.log());
    let stopped = stalled_at.elapsed();
    assert!(
        pair.first.log().contains("past the session timeout"),
        "{}",
        pair.first.log()
    );
    eprintln!(
        "silent network: the standby served the allocation {} ms after the stall, the old \
         writer stopped after {} ms",
        served.as_millis(),
        stopped.as_millis()
    );
    pair.agent.abort();
    assert_eq!(
        appended_since(&cluster, &pair.epoch, &taken_at),
        "0",
        "the stalled writer appended after the takeover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_the_journal_and_replays_only_the_tail_at_takeover() {
    let cluster = Cluster::start();
    let takeover = follow_then_take_over(&cluster, &[]).await;
    assert_eq!(takeover.replayed, takeover.last - takeover.followed);
    assert!(takeover.replayed >= 6, "two records per toggle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_reloads_the_snapshot_when_the_journal_was_compacted_past_it() {
    let cluster = Cluster::start();
    let takeover = follow_then_take_over(&cluster, &["--snapshot-every-records", "4"]).await;
    let snapshot: u64 = parse(&cluster.sql("SELECT seq FROM allocate_snapshot"));
    // The new writer's own snapshot follows the last record of the old one.
    assert_eq!(snapshot, takeover.last);
    assert!(
        takeover.replayed < takeover.last - takeover.followed,
        "the tail was compacted: {takeover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_takeover_replays_the_tail_where_a_cold_start_replays_the_journal() {
    const TOGGLES: usize = 250;
    let cluster = Cluster::start();
    let pair = writer_and_standby(&cluster, &[]).await;
    let resource = free_resource(&pair.first).await;
    toggle_maintenance(&pair.first, &resource, TOGGLES).await;
    caught_up(&cluster, &standby_address(&pair.standby)).await;
    drop(pair.first.kill9());
    let line = pair
        .standby
        .wait_for_line("this server is the writer of the store", STEP)
        .unwrap_or_else(|| panic!("the standby takes over:\n{}", pair.standby.log()));
    let second = pair.standby.running();
    let warm = (field(&line, "replayed"), field(&line, "takeover_ms"));
    // The same journal again, after the second writer's snapshot, for a server that did not
    // follow it.
    toggle_maintenance(&second, &resource, TOGGLES).await;
    drop(second.kill9());
    // What a server that did not follow must replay: the records after the last snapshot
    // (all of the toggles, unless the second writer's snapshot landed among them).
    let tail: u64 = parse(&cluster.sql(
        "SELECT count(*) FROM allocate_journal WHERE seq > (SELECT seq FROM allocate_snapshot)",
    ));
    // Free first: a server that found the lock held would follow as a standby, warm.
    wait_for_lock_free(&cluster).await;
    let cold = launch_store(&cluster.url(), &[]);
    let line = cold
        .wait_for_line("this server is the writer of the store", STEP)
        .unwrap_or_else(|| panic!("a new server starts:\n{}", cold.log()));
    let cold = (field(&line, "replayed"), field(&line, "takeover_ms"));
    eprintln!(
        "takeover after {} records ({tail} after the last snapshot): warm standby replayed {} in {} ms, cold start replayed {} in {} ms",
        TOGGLES * 2,
        warm.0,
        warm.1,
        cold.0,
        cold.1
    );
    assert!(
        warm.0 < 10,
        "the standby had followed the journal: {warm:?}"
    );
    assert!(
        cold.0 >= tail,
        "{cold:?}, {tail} records after the snapshot"
    );
    pair.agent.abort();
}

/// What a standby's takeover logged, and the last record of the old writer.
#[derive(Debug)]
struct Takeover {
    followed: u64,
    replayed: u64,
    last: u64,
}

/// A writer (with `extra` flags) and a standby that follows its journal; the standby is
/// paused while the writer commits a tail of records, then the writer is killed and the
/// standby continued: it takes over, with the allocation and the resource's last state.
async fn follow_then_take_over(cluster: &Cluster, extra: &[&str]) -> Takeover {
    let pair = writer_and_standby(cluster, extra).await;
    let resource = free_resource(&pair.first).await;
    toggle_maintenance(&pair.first, &resource, 10).await;
    let addr = standby_address(&pair.standby);
    let followed = caught_up(cluster, &addr).await;
    let text = scrape(&format!("http://{addr}/metrics")).await;
    assert_eq!(sample(&text, "allocate_role{role=\"standby\"}"), "1");
    assert_eq!(sample(&text, "allocate_store_epoch"), pair.epoch);
    assert_eq!(sample(&text, "allocate_leader_changes_total"), "0");
    pair.standby.signal("STOP");
    toggle_maintenance(&pair.first, &resource, 3).await;
    let last: u64 = parse(&cluster.sql("SELECT last_seq FROM allocate_leader"));
    drop(pair.first.kill9());
    // Free before the standby runs again, so that its first try of the lock takes it
    // (rather than it catching up on the tail first, as it would while the lock is held).
    wait_for_lock_free(cluster).await;
    let continued = std::time::Instant::now();
    pair.standby.signal("CONT");
    let line = pair
        .standby
        .wait_for_line("this server is the writer of the store", STEP)
        .unwrap_or_else(|| panic!("the standby takes over:\n{}", pair.standby.log()));
    assert_eq!(field(&line, "followed"), followed, "{line}");
    let second = pair.standby.running();
    assert_same(&find(&second, &pair.held).await, &pair.held);
    eprintln!(
        "warm takeover: {} ms from SIGCONT of the standby to it serving the allocation ({line})",
        continued.elapsed().as_millis()
    );
    let text = scrape(&second.url("/metrics")).await;
    assert_eq!(sample(&text, "allocate_role{role=\"leader\"}"), "1");
    assert_eq!(sample(&text, "allocate_leader_changes_total"), "1");
    assert_eq!(sample(&text, "allocate_replication_lag_records"), "0");
    assert!(
        text.contains("allocate_journal_commit_seconds_count"),
        "{text}"
    );
    // Out of maintenance, as the last record left it; offline until its agent reconnects.
    let inventory = second.get(&format!("/inventory/{resource}")).await;
    assert_eq!(inventory[0]["state"], "offline", "{inventory}");
    pair.agent.abort();
    Takeover {
        followed,
        replayed: field(&line, "replayed"),
        last,
    }
}

/// Waits until the standby (serving at `addr`) has applied every record committed so far,
/// as its `/metrics` says; returns the last one.
async fn caught_up(cluster: &Cluster, addr: &str) -> u64 {
    let last = parse(&cluster.sql("SELECT last_seq FROM allocate_leader"));
    let asked = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let text = scrape(&format!("http://{addr}/metrics")).await;
        // Caught up at a catch-up that began after `last` was committed.
        let lag: f64 = parse_as(sample(&text, "allocate_replication_lag_seconds"));
        if sample(&text, "allocate_replication_lag_records") == "0"
            && lag < asked.elapsed().as_secs_f64()
        {
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby did not catch up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url`: a `/metrics` exposition, which must pass `promtool check metrics`.
async fn scrape(url: &str) -> String {
    let resp = reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("http client")
        .get(url)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    let text = resp.text().await.expect("a body");
    promtool_check(&text);
    text
}

/// The value of the sample `name` (with its labels) in an exposition.
fn sample<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Where a standby listens, from its log.
fn standby_address(standby: &Launched) -> String {
    let log = standby.log();
    let line = log
        .lines()
        .find(|l| l.contains("listening as a standby"))
        .unwrap_or_else(|| panic!("a standby listens:\n{log}"));
    let (_, addr) = line.split_once("address=").expect("an address");
    addr.trim().to_owned()
}

/// Waits until no session holds the writer's lock.
async fn wait_for_lock_free(cluster: &Cluster) {
    let deadline = tokio::time::Instant::now() + STEP;
    while cluster.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")
        != "0"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer's lock stays held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The id of a resource of `server` that is free.
async fn free_resource(server: &ServerProc) -> String {
    let inventory = server.get("/inventory/").await;
    let free = inventory
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["state"] == "free")
        .unwrap_or_else(|| panic!("a free resource: {inventory}"));
    free["inventory_id"].as_str().expect("an id").to_owned()
}

/// Puts `resource` into maintenance and takes it out again, `times` times (two records each).
async fn toggle_maintenance(server: &ServerProc, resource: &str, times: usize) {
    let http = reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("http client");
    for i in 0..times * 2 {
        let status = http
            .patch(server.url(&format!("/inventory/{resource}")))
            .json(&json!({"maintenance": i % 2 == 0}))
            .send()
            .await
            .expect("PATCH")
            .status();
        assert_eq!(status.as_u16(), 200, "PATCH /inventory/{resource}");
    }
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> u64 {
    let (_, rest) = line
        .split_once(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    parse(rest.split_whitespace().next().unwrap_or_default())
}

/// A number the test read.
fn parse(text: &str) -> u64 {
    parse_as(text)
}

/// A number of type `T` the test read.
fn parse_as<T: std::str::FromStr<Err: std::fmt::Display>>(text: &str) -> T {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a number: {e}"))
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

/// Starts a [`Pair`] on `cluster`, the writer with `extra` flags.
async fn writer_and_standby(cluster: &Cluster, extra: &[&str]) -> Pair {
    writer_at_and_standby(cluster, &cluster.url(), extra).await
}

/// A proxy to `cluster`, and a [`Pair`] whose writer (with a session timeout of 3 s) reaches
/// `cluster` through it, the standby directly.
async fn writer_behind_proxy(cluster: &Cluster) -> (Proxy, Pair) {
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], cluster.port()))).await;
    let via = cluster.url_via(proxy.addr.port());
    let pair = writer_at_and_standby(cluster, &via, &["--store-session-timeout-secs", "3"]).await;
    (proxy, pair)
}

/// Starts a [`Pair`] on `cluster`: the writer connecting to `writer_url` (a proxy's, to
/// `cluster`) with `extra` flags, the standby directly.
async fn writer_at_and_standby(cluster: &Cluster, writer_url: &str, extra: &[&str]) -> Pair {
    let first = start_store_ok(writer_url, extra);
    let agent = connect_agent(&first).await;
    let held = allocate(&first).await.expect("ready on the first writer");
    let standby = launch_store(&cluster.url(), &[]);
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

/// One allocation on `server`: its `ready` data, or `None` when anything else came.
async fn allocate(server: &ServerProc) -> Option<Value> {
    allocate_at(&server.ws_url("/allocate/")).await
}

/// One allocation through the websocket `url`: its `ready` data, or `None` when anything
/// else came (or nothing).
async fn allocate_at(url: &str) -> Option<Value> {
    let (mut ws, _) = timeout(STEP, connect_async(url)).await.ok()?.ok()?;
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

//! The allocation lifecycle over real sockets: provisioning, queueing, timeouts, expiry,
//! agents coming and going, releases and shutdown.

mod common;

use allocate_http::{JournalConfig, ServerConfig};
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn register_allocate_ready_delete_release_free() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["nvidia"], 12, None)]).await;
    let entry = server.resource(&ids[0]).await;
    assert_eq!(entry["state"], "free");
    assert_eq!(entry["agent_id"], agent.id.as_str());
    assert!(
        entry.get("connection").is_none(),
        "inventory never shows credentials"
    );

    let mut client = allocate(
        &server,
        json!({"tags": ["nvidia"], "username": "ci-runner-7"}),
    )
    .await;
    let provision = agent.expect("provision").await;
    assert_eq!(provision["inventory_id"], ids[0].as_str());
    assert_eq!(provision["username"], "ci-runner-7");
    agent
        .provisioned(&provision["allocation_id"], "10.0.0.7")
        .await;
    let ready = recv_status(&mut client, "ready").await;
    assert_eq!(ready["allocation_id"], provision["allocation_id"]);
    assert_eq!(ready["inventory_id"], ids[0].as_str());
    assert_eq!(ready["connection"]["host"], "10.0.0.7");
    // The default lease counts from `ready` (API.md, "Lease length"), which comes after the
    // order: its end is the one the agent was told, or a second later.
    let told = provision["expires"].as_u64().expect("expires");
    let effective = ready["expires"].as_u64().expect("expires");
    assert!((told..=told + 1).contains(&effective), "{told} {effective}");
    let id = ready["allocation_id"].as_str().expect("id").to_owned();

    let info = server.get(&format!("/allocate/{id}")).await;
    assert_eq!(info["state"], "ready");
    assert_eq!(info["username"], "ci-runner-7");
    assert_eq!(info["inventory_id"], ids[0].as_str());
    let all = server.get("/allocate").await;
    assert!(all
        .as_array()
        .expect("list")
        .iter()
        .any(|a| a["allocation_id"] == id.as_str()));
    assert_eq!(server.resource(&ids[0]).await["state"], "allocated");

    let deleted = server
        .call("DELETE", &format!("/allocate/{id}/"), None)
        .await;
    assert_eq!(
        deleted,
        (200, json!({"status": 200, "data": "deleted allocation"}))
    );
    recv_status(&mut client, "released").await;
    expect_close(&mut client, 1000).await;

    let release = agent.expect("release").await;
    assert_eq!(release["allocation_id"], id.as_str());
    assert_eq!(
        server.resource(&ids[0]).await["state"],
        "allocated",
        "free only after the ack"
    );
    agent.released(&release["allocation_id"]).await;
    server.wait_state(&ids[0], "free").await;
    let again = server
        .call("DELETE", &format!("/allocate/{id}"), None)
        .await;
    assert_eq!(again.0, 404);
    assert_eq!(again.1["error"]["code"], "not_found");
    server.stop().await;
}

#[tokio::test]
async fn more_requests_than_resources_wait_in_order_with_positions() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent
        .register(vec![resource(&["gpu"], 4, Some("10.0.0.1"))])
        .await;
    let want = json!({"tags": ["gpu"], "username": "a"});
    let mut a = allocate(&server, want.clone()).await;
    let ready_a = recv_status(&mut a, "ready").await;
    assert_eq!(ready_a["connection"]["password"], "hunter2");
    let mut b = allocate(&server, want.clone()).await;
    let queued_b = recv_status(&mut b, "queued").await;
    assert_eq!(queued_b["position"], 1);
    assert_eq!(queued_b["matching_resources"], 1);
    assert_eq!(queued_b["eta"], ready_a["expires"]);
    let mut c = allocate(&server, want.clone()).await;
    let queued_c = recv_status(&mut c, "queued").await;
    assert_eq!(queued_c["position"], 2);

    let a_id = ready_a["allocation_id"].as_str().expect("id");
    assert_eq!(
        server
            .call("DELETE", &format!("/allocate/{a_id}"), None)
            .await
            .0,
        200
    );
    recv_status(&mut a, "released").await;
    let ready_b = recv_status(&mut b, "ready").await;
    assert_eq!(ready_b["inventory_id"], ids[0].as_str());
    assert_eq!(recv_status(&mut c, "queued").await["position"], 1);

    // A queued client that leaves cancels its request.
    let c_id = queued_c["allocation_id"].as_str().expect("id");
    c.close(None).await.expect("close");
    bounded(async {
        while server.get(&format!("/allocate/{c_id}")).await["state"] != "cancelled" {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn nothing_free_in_time_is_408() {
    let server = Server::start().await;
    let mut now = allocate(
        &server,
        json!({"tags": ["none"], "username": "u", "allocation_timeout_seconds": 0}),
    )
    .await;
    let message = recv_error(&mut now, 408, "allocation_timeout").await;
    assert!(message.contains("allocation_timeout_seconds"), "{message}");
    expect_close(&mut now, 1000).await;

    let mut later = allocate(
        &server,
        json!({"tags": ["none"], "username": "u", "allocation_timeout_seconds": 1}),
    )
    .await;
    let queued = recv_status(&mut later, "queued").await;
    assert_eq!(queued["matching_resources"], 0);
    assert_eq!(queued["eta"], Value::Null);
    recv_error(&mut later, 408, "allocation_timeout").await;
    expect_close(&mut later, 1000).await;
    let id = queued["allocation_id"].as_str().expect("id");
    assert_eq!(
        server.get(&format!("/allocate/{id}")).await["state"],
        "timed_out"
    );
    server.stop().await;
}

#[tokio::test]
async fn leases_expire_and_can_be_moved() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut client = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let ready = recv_status(&mut client, "ready").await;
    let id = ready["allocation_id"].as_str().expect("id");
    assert!(
        ready["expires"].as_u64().expect("expires") > unix_now() + 3000,
        "default lease"
    );

    let soon = unix_now() + 2;
    let (status, patched) = server
        .call(
            "PATCH",
            &format!("/allocate/{id}"),
            Some(json!({"expires": soon})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"]["expires"], soon);
    assert_eq!(patched["data"]["state"], "ready");
    recv_status(&mut client, "expired").await;
    expect_close(&mut client, 1000).await;
    server.wait_state(&ids[0], "free").await;
    assert_eq!(
        server.get(&format!("/allocate/{id}")).await["state"],
        "expired"
    );
    server.stop().await;
}

#[tokio::test]
async fn agent_offline_and_back_online_and_a_newer_socket_takes_over() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut client = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    recv_status(&mut client, "ready").await;

    agent.ws.close(None).await.expect("close");
    recv_status(&mut client, "offline").await;
    server.wait_state(&ids[0], "offline").await;

    let mut back = Agent::connect_as(&server, &agent.id).await;
    assert_eq!(
        back.register(vec![resource(&["x"], 1, Some("h"))]).await,
        ids,
        "stable ids"
    );
    recv_status(&mut client, "online").await;
    assert_eq!(server.resource(&ids[0]).await["state"], "allocated");

    // A second socket for the same agent replaces the first, whose close changes nothing.
    let mut newer = Agent::connect_as(&server, &agent.id).await;
    assert_eq!(
        newer.register(vec![resource(&["x"], 1, Some("h"))]).await,
        ids
    );
    expect_close(&mut back.ws, 1000).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(server.resource(&ids[0]).await["state"], "allocated");

    // Re-registration on the same socket replaces the list and is answered the same way.
    let more = newer
        .register(vec![
            resource(&["x"], 1, Some("h")),
            resource(&["y"], 2, Some("h2")),
        ])
        .await;
    assert_eq!(more[0], ids[0]);
    assert_eq!(
        server
            .get("/inventory/")
            .await
            .as_array()
            .expect("list")
            .len(),
        2
    );
    server.stop().await;
}

/// [`test_config`] with provisions and releases that do not time out within a test.
fn patient() -> ServerConfig {
    let mut config = test_config();
    config.engine.provision_timeout_ms = 10_000;
    config.engine.release_timeout_ms = 10_000;
    config
}

#[tokio::test]
async fn racing_sockets_of_one_agent_settle_on_the_last_and_get_the_orders_in_flight() {
    let server = Server::with(patient()).await;
    let spec = || vec![resource(&["x"], 1, None)];
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(spec()).await;
    let mut client = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let provision = agent.expect("provision").await;
    let allocation_id = provision["allocation_id"].clone();

    // Sockets of the agent keep taking over from each other: each is sent the provision
    // again, each older one is closed, and none of it takes the machine out of service.
    for _ in 0..4 {
        let mut newer = Agent::connect_as(&server, &agent.id).await;
        assert_eq!(newer.register(spec()).await, ids);
        assert_eq!(newer.expect("provision").await, provision);
        expect_close(&mut agent.ws, 1000).await;
        agent = newer;
    }
    assert_eq!(server.resource(&ids[0]).await["state"], "allocated");
    agent.provisioned(&allocation_id, "h").await;
    recv_status(&mut client, "ready").await;

    // The same with a release in flight.
    let path = format!("/allocate/{}", allocation_id.as_str().expect("id"));
    assert_eq!(server.call("DELETE", &path, None).await.0, 200);
    let release = agent.expect("release").await;
    for _ in 0..2 {
        let mut newer = Agent::connect_as(&server, &agent.id).await;
        newer.register(spec()).await;
        assert_eq!(newer.expect("release").await, release);
        expect_close(&mut agent.ws, 1000).await;
        agent = newer;
    }
    agent.released(&allocation_id).await;
    server.wait_state(&ids[0], "free").await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_leaving_while_provisioning_cancels_it_and_the_machine_returns() {
    let server = Server::with(patient()).await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, None)]).await;
    let mut leaver = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let provision = agent.expect("provision").await;
    let allocation_id = provision["allocation_id"].clone();
    leaver.close(None).await.expect("close");
    let release = agent.expect("release").await;
    assert_eq!(release["allocation_id"], allocation_id);
    let path = format!("/allocate/{}", allocation_id.as_str().expect("id"));
    assert_eq!(server.get(&path).await["state"], "cancelled");
    // The provision's late answer changes nothing and is not refused.
    agent.provisioned(&allocation_id, "h").await;
    agent.released(&allocation_id).await;
    server.wait_state(&ids[0], "free").await;
    let mut next = allocate(&server, json!({"tags": ["x"], "username": "v"})).await;
    // The next message is the next order: no error envelope for the late answer.
    let order = agent.expect("provision").await;
    agent.provisioned(&order["allocation_id"], "h").await;
    recv_status(&mut next, "ready").await;
    server.stop().await;
}

#[tokio::test]
async fn failed_and_unanswered_provisions_requeue_the_request() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent
        .register(vec![resource(&["x"], 1, None), resource(&["x"], 2, None)])
        .await;
    let mut client = allocate(
        &server,
        json!({"tags": ["x"], "username": "u", "allocation_timeout_seconds": 2}),
    )
    .await;

    let first = agent.expect("provision").await;
    assert_eq!(
        first["inventory_id"],
        ids[0].as_str(),
        "best fit: fewer CPUs"
    );
    send(
        &mut agent.ws,
        json!({"allocation_id": first["allocation_id"], "error": "disk full"}),
    )
    .await;
    let second = agent.expect("provision").await;
    assert_eq!(second["inventory_id"], ids[1].as_str());
    assert_eq!(
        second["allocation_id"], first["allocation_id"],
        "same request, back in front"
    );
    let broken = server.wait_state(&ids[0], "error").await;
    assert!(broken["reason"]
        .as_str()
        .expect("reason")
        .contains("disk full"));

    // No answer at all: the resource goes to error and the request waits again, then times out.
    let queued = recv_status(&mut client, "queued").await;
    assert_eq!(queued["position"], 1);
    let silent = server.wait_state(&ids[1], "error").await;
    assert!(silent["reason"]
        .as_str()
        .expect("reason")
        .contains("did not answer"));
    recv_error(&mut client, 408, "allocation_timeout").await;

    // Clearing maintenance also clears the error.
    let (status, body) = server
        .call(
            "PATCH",
            &format!("/inventory/{}", ids[0]),
            Some(json!({"maintenance": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["state"], "free");
    server.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_release_puts_the_resource_in_error() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, None)]).await;
    let mut client = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let provision = agent.expect("provision").await;
    agent.provisioned(&provision["allocation_id"], "h").await;
    recv_status(&mut client, "ready").await;
    let id = provision["allocation_id"].as_str().expect("id");
    assert_eq!(
        server
            .call("DELETE", &format!("/allocate/{id}"), None)
            .await
            .0,
        200
    );
    agent.expect("release").await;
    let entry = server.wait_state(&ids[0], "error").await;
    assert!(entry["reason"]
        .as_str()
        .expect("reason")
        .contains("release"));
    server.stop().await;
}

#[tokio::test]
async fn release_on_disconnect_ends_the_lease_and_plain_disconnect_keeps_it() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent
        .register(vec![
            resource(&["x"], 1, Some("a")),
            resource(&["x"], 1, Some("b")),
        ])
        .await;
    let mut keep = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let kept = recv_status(&mut keep, "ready").await;
    let mut leaver = allocate(
        &server,
        json!({"tags": ["x"], "username": "u", "release_on_disconnect": true}),
    )
    .await;
    let dropped = recv_status(&mut leaver, "ready").await;
    keep.close(None).await.expect("close");
    leaver.close(None).await.expect("close");
    let freed = dropped["inventory_id"].as_str().expect("id");
    server.wait_state(freed, "free").await;
    let dropped_id = dropped["allocation_id"].as_str().expect("id");
    assert_eq!(
        server.get(&format!("/allocate/{dropped_id}")).await["state"],
        "released"
    );
    let kept_id = kept["allocation_id"].as_str().expect("id");
    assert_eq!(
        server.get(&format!("/allocate/{kept_id}")).await["state"],
        "ready"
    );
    assert!(ids.contains(&freed.to_owned()));
    server.stop().await;
}

#[tokio::test]
async fn maintenance_takes_a_resource_out_and_filters_show_it() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent
        .register(vec![
            resource(&["nvidia", "cuda"], 1, Some("a")),
            resource(&["amd"], 1, Some("b")),
        ])
        .await;
    let (status, body) = server
        .call(
            "PATCH",
            &format!("/inventory/{}/", ids[1]),
            Some(json!({"maintenance": true, "reason": "fan broken"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["state"], "maintenance");
    assert_eq!(body["data"]["reason"], "fan broken");

    let cuda = server.get("/inventory/?tags=nvidia,cuda").await;
    assert_eq!(cuda.as_array().expect("list").len(), 1);
    assert_eq!(cuda[0]["inventory_id"], ids[0].as_str());
    let free = server.get("/inventory?state=free").await;
    assert_eq!(free.as_array().expect("list").len(), 1);
    let out = server.get("/inventory/?state=maintenance&tags=amd").await;
    assert_eq!(out[0]["inventory_id"], ids[1].as_str());

    let mut client = allocate(
        &server,
        json!({"tags": ["amd"], "username": "u", "allocation_timeout_seconds": 0}),
    )
    .await;
    recv_error(&mut client, 408, "allocation_timeout").await;
    server.stop().await;
}

#[tokio::test]
async fn a_silent_agent_is_dropped_by_the_keepalive() {
    let server = Server::with(ServerConfig {
        idle_timeout: std::time::Duration::from_millis(600),
        ..test_config()
    })
    .await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    // The agent stops reading, so it answers no pings: the server notices within the idle limit.
    let entry = server.wait_state(&ids[0], "offline").await;
    assert_eq!(entry["inventory_id"], ids[0].as_str());
    drop(agent);
    server.stop().await;
}

/// The families that follow behaviour: a request counts under its route's template and
/// status, a journal commit is timed, a failed provision counts against its agent, a wait
/// that ends is observed by outcome; the whole scrape passes `promtool check metrics`.
#[tokio::test]
async fn metrics_follow_requests_commits_failures_and_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::with(ServerConfig {
        journal: Some(JournalConfig::new(dir.path().join("data"))),
        ..test_config()
    })
    .await;
    let inventory = r#"allocate_http_requests_total{method="GET",route="/inventory",status="200"}"#;
    let unknown =
        r#"allocate_http_requests_total{method="GET",route="/allocate/{id}",status="404"}"#;
    let commits = "allocate_journal_commit_seconds_count";
    let before = server.metric(commits).await.expect("commits counted");
    assert_eq!(server.metric(inventory).await, None);
    server.get("/inventory/").await;
    server.get("/inventory").await;
    let (status, _) = server
        .call("GET", &format!("/allocate/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        server.metric(inventory).await,
        Some(2.0),
        "both slashes, one series"
    );
    assert_eq!(
        server.metric(unknown).await,
        Some(1.0),
        "the template, not the id"
    );
    let (status, _) = server.call("GET", "/no/such/path", None).await;
    assert_eq!(status, 404);
    let unmatched = r#"allocate_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(
        server.metric(unmatched).await,
        Some(1.0),
        "one series for every path"
    );

    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 1, None)]).await;
    let failures = format!(
        "allocate_provision_failures_total{{agent_id=\"{}\"}}",
        agent.id
    );
    assert_eq!(server.metric(&failures).await, None);
    assert!(server.metric(commits).await.expect("commits") > before);
    let mut client = allocate(
        &server,
        json!({"tags": ["x"], "username": "u", "allocation_timeout_seconds": 1}),
    )
    .await;
    let provision = agent.expect("provision").await;
    let failed = json!({"allocation_id": provision["allocation_id"], "error": "disk full"});
    send(&mut agent.ws, failed).await;
    // Back in the queue, with nothing else to have, until its wait ends.
    assert_eq!(recv_status(&mut client, "queued").await["position"], 1);
    recv_error(&mut client, 408, "allocation_timeout").await;
    assert_eq!(server.metric(&failures).await, Some(1.0));
    let timed_out = r#"allocate_queue_wait_seconds_count{outcome="timed_out"}"#;
    assert_eq!(server.metric(timed_out).await, Some(1.0));

    let text = server.metrics().await;
    for family in [
        "allocate_build_info{version=",
        "allocate_http_request_duration_seconds_bucket{method=\"GET\",route=\"/inventory\",status=\"200\",le=",
        "allocate_journal_commit_seconds_bucket{le=",
        "allocate_queue_wait_seconds_bucket{outcome=\"ready\",le=",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.lines().any(|l| l.starts_with(family)), "no {family} in\n{text}");
    }
    promtool_check(&text);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn health_metrics_and_index() {
    let server = Server::start().await;
    assert_eq!(server.get("/healthz").await, "ok");
    assert_eq!(server.get("/healthz/").await, "ok");
    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut client = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    recv_status(&mut client, "ready").await;
    let mut late = allocate(
        &server,
        json!({"tags": ["x"], "username": "u", "allocation_timeout_seconds": 0}),
    )
    .await;
    recv_error(&mut late, 408, "allocation_timeout").await;

    let resp = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let text = resp.text().await.expect("text");
    for line in [
        "allocate_resources{state=\"allocated\"} 1",
        "allocate_queue_length 0",
        "allocate_allocations_ended_total{outcome=\"timed_out\"} 1",
        "allocate_allocations_ready_total 1",
        "allocate_time_to_ready_seconds_count 1",
        "allocate_agents_connected 1",
        "allocate_clients_connected 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let index = server
        .http
        .get(server.url("/"))
        .send()
        .await
        .expect("index");
    assert_eq!(index.status(), 200);
    assert!(index
        .text()
        .await
        .expect("html")
        .contains("<h1>allocate</h1>"));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_waiting_clients_503_and_closes_every_socket() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut holder = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    recv_status(&mut holder, "ready").await;
    let mut waiting = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    recv_status(&mut waiting, "queued").await;
    let mut idle = server.ws("/allocate/").await;
    let addr = server.addr;

    let stopping = tokio::spawn(server.stop());
    recv_error(&mut waiting, 503, "shutting_down").await;
    expect_close(&mut waiting, 1001).await;
    expect_close(&mut holder, 1001).await;
    expect_close(&mut agent.ws, 1001).await;
    recv_error(&mut idle, 503, "shutting_down").await;
    expect_close(&mut idle, 1001).await;
    bounded(stopping).await.expect("stop");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn duration_seconds_counts_from_ready_and_excludes_expires() {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    agent.register(vec![resource(&["x"], 1, Some("h"))]).await;
    let mut holder = allocate(&server, json!({"tags": ["x"], "username": "a"})).await;
    let held = recv_status(&mut holder, "ready").await;
    let mut waiter = allocate(
        &server,
        json!({"tags": ["x"], "username": "b", "duration_seconds": 600}),
    )
    .await;
    recv_status(&mut waiter, "queued").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let released_at = unix_now();
    let id = held["allocation_id"].as_str().expect("id");
    let (status, _) = server
        .call("DELETE", &format!("/allocate/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let ready = recv_status(&mut waiter, "ready").await;
    let expires = ready["expires"].as_u64().expect("expires");
    assert!(
        (released_at + 600..=released_at + 601).contains(&expires),
        "600 s from ready ({released_at}), got {expires}"
    );

    let mut both = allocate(
        &server,
        json!({"username": "c", "duration_seconds": 60, "expires": unix_now() + 60}),
    )
    .await;
    let message = recv_error(&mut both, 400, "invalid_request").await;
    assert!(
        message.contains("requirements.duration_seconds"),
        "{message}"
    );
}

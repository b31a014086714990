//! `GET /usage` against the binary: resource- and GPU-seconds per user, label or resource,
//! kept across a restart (in the journal's snapshot), dropped past `--usage-retention-days`,
//! and a query that names its bad field.

mod common;
mod durability_support;

use common::{bounded, recv_status, resource, send, Ws};
use durability_support::{start_ok, ServerProc};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::connect_async;

async fn ws(server: &ServerProc, path: &str) -> Ws {
    bounded(connect_async(server.ws_url(path)))
        .await
        .expect("websocket connect")
        .0
}

/// Allocates one machine tagged `tag` for `user`; the socket and the allocation's id.
async fn ready(server: &ServerProc, user: &str, tag: &str) -> (Ws, String) {
    let mut client = ws(server, "/allocate/").await;
    let requirements = json!({"username": user, "tags": [tag], "allocation_timeout_seconds": 0});
    send(&mut client, json!({ "requirements": requirements })).await;
    let id = recv_status(&mut client, "ready").await["allocation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    (client, id)
}

/// `key: (allocations, resource_seconds, gpu_seconds)` of `GET path`.
async fn usage(server: &ServerProc, path: &str) -> Vec<(String, u64, u64, u64)> {
    let rows = server.get(path).await;
    let number = |row: &Value, field: &str| row[field].as_u64().expect("a count");
    rows.as_array()
        .expect("a list")
        .iter()
        .map(|row| {
            (
                row["key"].as_str().expect("key").to_owned(),
                number(row, "allocations"),
                number(row, "resource_seconds"),
                number(row, "gpu_seconds"),
            )
        })
        .collect()
}

fn restart(server: ServerProc, dir: &Path, extra: &[&str]) -> ServerProc {
    let mut server = server;
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.log()
    );
    start_ok(dir, extra)
}

#[tokio::test]
async fn usage_is_summed_per_group_and_survives_a_restart_until_its_retention_ends() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("data");
    // A snapshot after every record: the usage must be in the snapshot, not only the journal.
    let server = start_ok(&dir, &["--snapshot-every-records", "1"]);
    let mut agent = ws(&server, "/agent/").await;
    let machines = [
        resource(&["x", "gpu"], 8, Some("10.0.0.1")),
        resource(&["x"], 4, Some("10.0.0.2")),
    ];
    let hello = json!({"agent_id": uuid::Uuid::new_v4(), "resources": machines});
    send(&mut agent, hello).await;
    recv_status(&mut agent, "ok").await;
    let (_alice, alice) = ready(&server, "alice", "gpu").await;
    let (_bob, _) = ready(&server, "bob", "x").await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let deleted = server.delete(&format!("/allocate/{alice}")).await;
    assert_eq!(deleted.expect("DELETE"), 200);

    let by_user = usage(&server, "/usage?by=user").await;
    assert_eq!(by_user.len(), 2, "{by_user:?}");
    for (key, allocations, resource_seconds, gpu_seconds) in &by_user {
        assert_eq!(*allocations, 1, "{key}");
        assert!(
            (2..10).contains(resource_seconds),
            "{key}: {resource_seconds}"
        );
        assert_eq!(gpu_seconds, resource_seconds, "{key}: one GPU each");
    }
    let labels: Vec<String> = usage(&server, "/usage?by=label")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(labels, ["x", "gpu"], "both count under x");
    let long_ago = usage(&server, "/usage?from=1000&to=2000&by=resource").await;
    assert!(long_ago.is_empty(), "{long_ago:?}");

    for (query, names) in [
        ("from=yesterday", "from must be unix seconds"),
        ("to=1.5", "to must be unix seconds"),
        ("by=team", "by must be one of user, label, resource"),
        ("from=20&to=10", "to (10) must not be before from (20)"),
        ("user=alice", "unknown query parameter `user`"),
    ] {
        let resp = reqwest::get(server.url(&format!("/usage?{query}")))
            .await
            .expect("GET /usage");
        assert_eq!(resp.status().as_u16(), 400, "{query}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(names), "{query}: {message}");
    }

    // Alice's ended allocation is still there after a restart, as it was.
    let before = usage(&server, "/usage?by=resource").await;
    drop(agent);
    let server = restart(server, &dir, &[]);
    let after = usage(&server, "/usage?by=user").await;
    let alice_after = after
        .iter()
        .find(|r| r.0 == "alice")
        .expect("alice's usage");
    let alice_before = by_user
        .iter()
        .find(|r| r.0 == "alice")
        .expect("alice's usage");
    assert_eq!(alice_after, alice_before);
    assert_eq!(before.len(), 2);

    // With no retention, what ended is dropped; bob's lease, still held, still counts.
    let server = restart(server, &dir, &["--usage-retention-days", "0"]);
    let kept: Vec<String> = usage(&server, "/usage")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(kept, ["bob"]);
}

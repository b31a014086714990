//! Restarts of an in-process server with a journal: what survives, what the restart ends,
//! and what the agent is told when it comes back.

mod common;

use allocate_http::{run, JournalConfig, ServerConfig};
use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn with_journal(dir: &Path) -> ServerConfig {
    ServerConfig {
        journal: Some(JournalConfig::new(dir.join("data"))),
        ..test_config()
    }
}

#[tokio::test]
async fn a_restart_keeps_leases_and_ends_those_that_ran_out_while_it_was_down() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let server = Server::with(with_journal(scratch.path())).await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent
        .register(vec![resource(&["x"], 4, None), resource(&["x"], 4, None)])
        .await;

    // One lease ends a second from now, one in an hour; both are provisioned by the agent.
    let short_end = unix_now() + 2;
    let mut leases = Vec::new();
    for (user, expires) in [("short", short_end), ("long", unix_now() + 3600)] {
        let mut client = allocate(
            &server,
            json!({"tags": ["x"], "username": user, "expires": expires}),
        )
        .await;
        let provision = agent.expect("provision").await;
        agent
            .provisioned(&provision["allocation_id"], &format!("{user}.lab"))
            .await;
        let ready = recv_status(&mut client, "ready").await;
        leases.push((ready, client));
    }
    // A request still waiting when the server stops.
    let mut waiting = allocate(&server, json!({"tags": ["x"], "username": "waiter"})).await;
    let waiter = recv_status(&mut waiting, "queued").await["allocation_id"].clone();
    server.stop().await;

    // Down past the short lease's end.
    let down_until = std::time::UNIX_EPOCH + Duration::from_secs(short_end);
    while std::time::SystemTime::now() < down_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let server = Server::with(with_journal(scratch.path())).await;
    let [(short, _), (long, _)] = &leases[..] else {
        unreachable!("two leases")
    };
    let info = server
        .get(&format!(
            "/allocate/{}",
            long["allocation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(info["state"], "ready");
    assert_eq!(info["inventory_id"], long["inventory_id"]);
    assert_eq!(info["expires"], long["expires"]);
    assert_eq!(info["connection"], long["connection"]);
    let info = server
        .get(&format!(
            "/allocate/{}",
            short["allocation_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        info["state"], "expired",
        "it ended while the server was down"
    );
    let info = server
        .get(&format!("/allocate/{}", waiter.as_str().unwrap()))
        .await;
    assert_eq!(
        info["state"], "cancelled",
        "its client left with the old server"
    );
    for id in &ids {
        assert_eq!(server.resource(id).await["state"], "offline");
    }

    // The agent returns: it is asked to clean up after the lease that ended meanwhile.
    let mut agent = Agent::connect_as(&server, &agent.id).await;
    let again = agent
        .register(vec![resource(&["x"], 4, None), resource(&["x"], 4, None)])
        .await;
    assert_eq!(again, ids, "same resources, same ids");
    let release = agent.expect("release").await;
    assert_eq!(release["allocation_id"], short["allocation_id"]);
    assert_eq!(release["inventory_id"], short["inventory_id"]);
    agent.released(&release["allocation_id"]).await;
    let short_resource = short["inventory_id"].as_str().unwrap();
    server.wait_state(short_resource, "free").await;
    let long_resource = long["inventory_id"].as_str().unwrap();
    assert_eq!(server.resource(long_resource).await["state"], "allocated");
    server.stop().await;
}

#[tokio::test]
async fn a_release_answered_200_before_a_restart_stays_done() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let server = Server::with(with_journal(scratch.path())).await;
    let mut agent = Agent::connect(&server).await;
    let ids = agent.register(vec![resource(&["x"], 4, Some("h"))]).await;
    let mut client = allocate(&server, json!({"tags": ["x"], "username": "u"})).await;
    let ready = recv_status(&mut client, "ready").await;
    let id = ready["allocation_id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call("DELETE", &format!("/allocate/{id}"), None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;

    let server = Server::with(with_journal(scratch.path())).await;
    assert_eq!(
        server.get(&format!("/allocate/{id}")).await["state"],
        "released"
    );
    let mut agent = Agent::connect_as(&server, &agent.id).await;
    agent.register(vec![resource(&["x"], 4, Some("h"))]).await;
    server.wait_state(&ids[0], "free").await;
    server.stop().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_journal_that_cannot_be_written_stops_the_server() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("data");
    // A snapshot after every record; the journal file that follows the first one is a disk
    // that is always full.
    let config = ServerConfig {
        journal: Some(JournalConfig {
            snapshot_every_records: 1,
            ..JournalConfig::new(&dir)
        }),
        ..test_config()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(run(listener, config, std::future::pending()));
    bounded(async {
        while !dir.join("journal-00000000000000000001.log").exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    std::os::unix::fs::symlink("/dev/full", dir.join("journal-00000000000000000002.log"))
        .expect("symlink");
    let (mut agent, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/agent/"))
        .await
        .expect("connect");
    let hello =
        json!({"agent_id": uuid::Uuid::new_v4(), "resources": [resource(&["x"], 4, Some("h"))]});
    send(&mut agent, hello).await;
    let reply = recv(&mut agent).await;
    assert_eq!(
        reply["data"]["status"], "ok",
        "record 1 is on disk: {reply}"
    );
    let ended = bounded(server).await.expect("server task");
    let error = ended.expect_err("the server stops on its own").to_string();
    assert!(
        error.contains("journal-00000000000000000002.log"),
        "the error names the file: {error}"
    );
    assert!(
        matches!(receive(&mut agent).await, Received::Closed(_)),
        "sockets are closed"
    );
}

/// `POST /admin/backup` while the server runs, then a fresh server on a directory holding
/// only that file: the leases, their credentials and the inventory are as they were at the
/// backup (not after it); the waiting request is known and cancelled, as after any restart.
#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_a_fresh_data_directory() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let server = Server::with(with_journal(scratch.path())).await;
    let mut agent = Agent::connect(&server).await;
    let machines = || {
        vec![
            resource(&["x"], 4, None),
            resource(&["y"], 2, Some("y.lab")),
        ]
    };
    let ids = agent.register(machines()).await;
    let mut holder = allocate(&server, json!({"tags": ["x"], "username": "holder"})).await;
    let provision = agent.expect("provision").await;
    agent
        .provisioned(&provision["allocation_id"], "x.lab")
        .await;
    let lease = recv_status(&mut holder, "ready").await;
    let mut other = allocate(&server, json!({"tags": ["y"], "username": "other"})).await;
    let other = recv_status(&mut other, "ready").await;
    let mut waiting = allocate(&server, json!({"tags": ["x"], "username": "waiter"})).await;
    let waiter = recv_status(&mut waiting, "queued").await["allocation_id"].clone();

    let response = bounded(server.http.post(server.url("/admin/backup")).send())
        .await
        .expect("backup");
    assert_eq!(response.status(), 200);
    let name = backup_file_name(&response);
    assert!(
        name.starts_with("snapshot-") && name.ends_with(".snap"),
        "{name}"
    );
    let backup = bounded(response.bytes()).await.expect("backup bytes");
    // After the backup: a release that the backup does not hold.
    let other_id = other["allocation_id"].as_str().expect("id");
    let (status, _) = server
        .call("DELETE", &format!("/allocate/{other_id}"), None)
        .await;
    assert_eq!(status, 200);
    server.stop().await;

    let restored = scratch.path().join("restored");
    std::fs::create_dir(&restored).expect("restored dir");
    std::fs::write(restored.join(&name), &backup).expect("write the backup");
    let server = Server::with(ServerConfig {
        journal: Some(JournalConfig::new(&restored)),
        ..test_config()
    })
    .await;
    for ready in [&lease, &other] {
        let id = ready["allocation_id"].as_str().expect("id");
        let info = server.get(&format!("/allocate/{id}")).await;
        assert_eq!(info["state"], "ready", "{info}");
        assert_eq!(info["inventory_id"], ready["inventory_id"]);
        assert_eq!(info["expires"], ready["expires"]);
        assert_eq!(info["connection"], ready["connection"]);
    }
    let info = server
        .get(&format!("/allocate/{}", waiter.as_str().expect("id")))
        .await;
    assert_eq!(info["state"], "cancelled", "{info}");
    for id in &ids {
        assert_eq!(server.resource(id).await["state"], "offline");
    }
    let mut agent = Agent::connect_as(&server, &agent.id).await;
    assert_eq!(
        agent.register(machines()).await,
        ids,
        "same resources, same ids"
    );
    server.wait_state(&ids[1], "allocated").await;
    drop(holder);
    server.stop().await;
}

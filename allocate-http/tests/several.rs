//! Several resources at once (`count`, API.md "Several resources at once") over real sockets:
//! provisioned in parallel, `ready` once with every resource, a failure releasing the others.

mod common;

use common::*;
use serde_json::{json, Value};

/// A server with `n` agents, each with one resource tagged `x` that it provisions.
async fn lab(n: usize) -> (Server, Vec<Agent>, Vec<String>) {
    let server = Server::start().await;
    let (mut agents, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut agent = Agent::connect(&server).await;
        ids.extend(agent.register(vec![resource(&["x"], 4, None)]).await);
        agents.push(agent);
    }
    (server, agents, ids)
}

fn two(wait_secs: u64) -> Value {
    json!({"tags": ["x"], "username": "ci", "count": 2, "allocation_timeout_seconds": wait_secs})
}

#[tokio::test]
async fn two_resources_are_provisioned_in_parallel_and_ready_together() {
    let (server, mut agents, ids) = lab(2).await;
    let mut client = allocate(&server, two(30)).await;
    let first = agents[0].expect("provision").await;
    let second = agents[1].expect("provision").await;
    assert_eq!(first["allocation_id"], second["allocation_id"]);
    assert_eq!(
        [&first["inventory_id"], &second["inventory_id"]],
        [ids[0].as_str(), ids[1].as_str()]
    );
    let id = first["allocation_id"].clone();
    agents[1].provisioned(&id, "10.0.0.2").await;
    let info = server
        .get(&format!("/allocate/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(info["state"], "provisioning", "not ready before both are");
    agents[0].provisioned(&id, "10.0.0.1").await;
    let ready = recv_status(&mut client, "ready").await;
    assert_eq!(ready["inventory_id"], ids[0].as_str());
    assert_eq!(ready["connection"]["host"], "10.0.0.1");
    let resources = ready["resources"].as_array().expect("resources");
    let hosts: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| {
            let id = r["inventory_id"].as_str().unwrap();
            (id, r["connection"]["host"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        hosts,
        [(ids[0].as_str(), "10.0.0.1"), (ids[1].as_str(), "10.0.0.2")]
    );
    let info = server
        .get(&format!("/allocate/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(info["inventory_ids"], json!(ids));
    assert_eq!(info["inventory_id"], ids[0].as_str());

    let path = format!("/allocate/{}", id.as_str().unwrap());
    assert_eq!(server.call("DELETE", &path, None).await.0, 200);
    recv_status(&mut client, "released").await;
    for (agent, inventory_id) in agents.iter_mut().zip(&ids) {
        let release = agent.expect("release").await;
        assert_eq!(release["inventory_id"], inventory_id.as_str());
        agent.released(&id).await;
        server.wait_state(inventory_id, "free").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_failed_provision_releases_the_other_and_the_request_waits_in_front() {
    let (server, mut agents, ids) = lab(2).await;
    let mut client = allocate(&server, two(30)).await;
    let order = agents[0].expect("provision").await;
    agents[1].expect("provision").await;
    let id = order["allocation_id"].clone();
    agents[1].provisioned(&id, "10.0.0.2").await;
    send(
        &mut agents[0].ws,
        json!({"allocation_id": id, "error": "disk full"}),
    )
    .await;
    let release = agents[1].expect("release").await;
    assert_eq!(
        release["inventory_id"],
        ids[1].as_str(),
        "the other is cleaned up"
    );
    agents[1].released(&id).await;
    let broken = server.wait_state(&ids[0], "error").await;
    assert_eq!(broken["reason"], "provisioning failed: disk full");
    // Free again, and held for the request, the front of the queue.
    server.wait_state(&ids[1], "reserved").await;
    let queued = recv_status(&mut client, "queued").await;
    assert_eq!(queued["position"], 1);
    let info = server
        .get(&format!("/allocate/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(info["state"], "queued");
    assert_eq!(info["inventory_ids"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_resource_held_for_a_waiting_request_for_several_shows_reserved() {
    let (server, mut agents, ids) = lab(2).await;
    let single = json!({"tags": ["x"], "username": "one", "allocation_timeout_seconds": 30});
    let mut first = allocate(&server, single).await;
    let order = agents[0].expect("provision").await;
    agents[0]
        .provisioned(&order["allocation_id"], "10.0.0.1")
        .await;
    recv_status(&mut first, "ready").await;
    let mut big = allocate(&server, two(30)).await;
    recv_status(&mut big, "queued").await;
    let listed = server.get("/inventory/").await;
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["inventory_id"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (ids[0].as_str(), "allocated"),
            (ids[1].as_str(), "reserved")
        ]
    );
    let reserved = server.get("/inventory/?state=reserved").await;
    assert_eq!(reserved[0]["inventory_id"], ids[1].as_str());
    let free = server.get("/inventory/?state=free").await;
    assert_eq!(free, json!([]), "a reserved resource is not free");
    // A later request for one, whose lease may outlast the first one's, waits.
    let later = json!({"tags": ["x"], "username": "two", "allocation_timeout_seconds": 30});
    let mut later = allocate(&server, later).await;
    recv_status(&mut later, "queued").await;
    server.stop().await;
}

#[tokio::test]
async fn a_count_out_of_its_limits_is_refused_naming_it() {
    let server = Server::start().await;
    let mut client = allocate(&server, json!({"username": "ci", "count": 65})).await;
    let message = recv_error(&mut client, 400, "invalid_request").await;
    assert!(message.contains("requirements.count"), "{message}");
    server.stop().await;
}

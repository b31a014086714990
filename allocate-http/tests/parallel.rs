//! Many clients at once: a resource is never held by two of them.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENTS: usize = 40;
const RESOURCES: usize = 8;

#[tokio::test]
async fn forty_parallel_allocations_never_share_a_resource() {
    let server = Arc::new(Server::start().await);
    let mut agent = Agent::connect(&server).await;
    let resources = (0..RESOURCES as u64)
        .map(|cpu| resource(&["x"], cpu, None))
        .collect();
    let ids = agent.register(resources).await;

    // The agent answers every provision and release, as a real one would.
    let answering = tokio::spawn(async move {
        let (mut provisions, mut releases) = (0, 0);
        while releases < CLIENTS {
            let msg = recv(&mut agent.ws).await;
            let data = &msg["data"];
            match data["action"].as_str() {
                Some("provision") => {
                    provisions += 1;
                    agent.provisioned(&data["allocation_id"], "h").await;
                }
                Some("release") => {
                    releases += 1;
                    agent.released(&data["allocation_id"]).await;
                }
                _ => panic!("unexpected message to the agent: {msg}"),
            }
        }
        (provisions, agent)
    });

    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let clients = (0..CLIENTS).map(|i| {
        let (server, held) = (server.clone(), held.clone());
        tokio::spawn(async move {
            let want = json!({"tags": ["x"], "username": format!("user-{i}"), "allocation_timeout_seconds": 30});
            let mut ws = allocate(&server, want).await;
            let ready = loop {
                let data = recv(&mut ws).await["data"].clone();
                match data["status"].as_str() {
                    Some("queued") => continue,
                    Some("ready") => break data,
                    _ => panic!("unexpected message to client {i}: {data}"),
                }
            };
            let inventory_id = ready["inventory_id"].as_str().expect("id").to_owned();
            assert!(
                held.lock().expect("lock").insert(inventory_id.clone()),
                "resource {inventory_id} handed out twice"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            held.lock().expect("lock").remove(&inventory_id);
            let id = ready["allocation_id"].as_str().expect("id");
            let (status, _) = server.call("DELETE", &format!("/allocate/{id}"), None).await;
            assert_eq!(status, 200);
            recv_status(&mut ws, "released").await;
            inventory_id
        })
    });
    let clients: Vec<_> = clients.collect();
    let mut used = HashSet::new();
    for client in clients {
        let inventory_id = tokio::time::timeout(STEP * 4, client)
            .await
            .expect("client finished in time")
            .expect("client task");
        used.insert(inventory_id);
    }
    let (provisions, _agent) = tokio::time::timeout(STEP, answering)
        .await
        .expect("agent finished in time")
        .expect("agent task");
    assert_eq!(provisions, CLIENTS);
    assert!(used.iter().all(|u| ids.contains(u)));
    for id in &ids {
        server.wait_state(id, "free").await;
    }
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    let released = format!("allocate_allocations_ended_total{{outcome=\"released\"}} {CLIENTS}");
    assert!(text.lines().any(|l| l == released), "{text}");
    let all: Value = server.get("/allocate/").await;
    assert_eq!(all.as_array().expect("list").len(), CLIENTS);
}

//! `WEBSOCKET /allocate/{id}` over real sockets: a follower gets the allocation's current
//! state first, then the same events as the socket that created it, and its leaving changes
//! nothing (API.md, "Following an allocation"). Who may follow is in `auth.rs`.

mod common;

use common::*;
use serde_json::{json, Value};

/// The id in a client event's `data`.
fn id_of(data: &Value) -> String {
    data["allocation_id"]
        .as_str()
        .expect("allocation_id")
        .to_owned()
}

/// Frees an allocation with `DELETE /allocate/{id}`.
async fn delete(server: &Server, id: &str) {
    let (status, body) = server
        .call("DELETE", &format!("/allocate/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// An agent with one static machine tagged `gpu`.
async fn one_machine(server: &Server) -> Agent {
    let mut agent = Agent::connect(server).await;
    agent
        .register(vec![resource(&["gpu"], 4, Some("10.0.0.1"))])
        .await;
    agent
}

#[tokio::test]
async fn a_follower_of_a_queued_request_sees_its_position_then_ready() {
    let server = Server::start().await;
    let _agent = one_machine(&server).await;
    let want = json!({"tags": ["gpu"], "username": "a"});
    let mut first = allocate(&server, want.clone()).await;
    let ready_first = recv_status(&mut first, "ready").await;
    let mut waiting = allocate(&server, want).await;
    let queued = recv_status(&mut waiting, "queued").await;
    let id = id_of(&queued);

    let mut follower = server.ws(&format!("/allocate/{id}")).await;
    let now = recv_status(&mut follower, "queued").await;
    assert_eq!(
        now, queued,
        "the current state, as the creating socket saw it"
    );

    delete(&server, &id_of(&ready_first)).await;
    let ready = recv_status(&mut waiting, "ready").await;
    assert_eq!(recv_status(&mut follower, "ready").await, ready);

    // The follower leaves: the allocation stays, and its creator still hears the end.
    follower.close(None).await.expect("close");
    assert_eq!(
        server.get(&format!("/allocate/{id}")).await["state"],
        "ready"
    );
    delete(&server, &id).await;
    recv_status(&mut waiting, "released").await;
    expect_close(&mut waiting, 1000).await;
    server.stop().await;
}

#[tokio::test]
async fn two_followers_of_a_ready_allocation_hear_it_end_and_close() {
    let server = Server::start().await;
    let _agent = one_machine(&server).await;
    let mut client = allocate(&server, json!({"tags": ["gpu"], "username": "a"})).await;
    let ready = recv_status(&mut client, "ready").await;
    let id = id_of(&ready);
    assert!(ready["connection"]["host"].is_string() && ready["expires"].is_u64());

    let mut one = server.ws(&format!("/allocate/{id}/")).await;
    let mut two = server.ws(&format!("/allocate/{id}")).await;
    assert_eq!(recv_status(&mut one, "ready").await, ready);
    assert_eq!(recv_status(&mut two, "ready").await, ready);

    delete(&server, &id).await;
    for ws in [&mut client, &mut one, &mut two] {
        assert_eq!(
            recv_status(ws, "released").await["allocation_id"],
            id.as_str()
        );
        expect_close(ws, 1000).await;
    }
    // Ended: not found, then close.
    let mut late = server.ws(&format!("/allocate/{id}")).await;
    recv_error(&mut late, 404, "not_found").await;
    expect_close(&mut late, 1008).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_id_is_not_found_then_closed() {
    let server = Server::start().await;
    let mut ws = server
        .ws(&format!("/allocate/{}", uuid::Uuid::new_v4()))
        .await;
    let message = recv_error(&mut ws, 404, "not_found").await;
    assert!(message.contains("allocation"), "{message}");
    expect_close(&mut ws, 1008).await;
    server.stop().await;
}

#[tokio::test]
async fn when_the_creator_leaves_a_waiting_request_its_followers_hear_released() {
    let server = Server::start().await;
    let mut creator = allocate(&server, json!({"tags": ["none"], "username": "a"})).await;
    let queued = recv_status(&mut creator, "queued").await;
    let id = id_of(&queued);
    let mut follower = server.ws(&format!("/allocate/{id}")).await;
    assert_eq!(recv_status(&mut follower, "queued").await, queued);

    creator.close(None).await.expect("close");
    assert_eq!(
        recv_status(&mut follower, "released").await["allocation_id"],
        id.as_str()
    );
    expect_close(&mut follower, 1000).await;
    assert_eq!(
        server.get(&format!("/allocate/{id}")).await["state"],
        "cancelled"
    );
    server.stop().await;
}

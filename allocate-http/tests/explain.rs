//! "Why not" over real HTTP and websockets (API.md): `POST /match`, `GET /allocate/{id}/explain`,
//! and the `explain` of a hopeless request's first `queued` message and of its `408`.

mod common;

use common::*;
use serde_json::{json, Value};

const TYPO: &str = "0 of 4 registered resources have a GPU whose label contains \"RTX 2090\"; GPU labels seen: GeForce RTX 2080";

/// A server with one agent of four static machines (each with a GeForce RTX 2080).
async fn lab() -> (Server, Agent) {
    let server = Server::start().await;
    let mut agent = Agent::connect(&server).await;
    let machines = (0..4)
        .map(|i| resource(&["nvidia"], 4 + i, Some(&format!("10.0.0.{i}"))))
        .collect();
    agent.register(machines).await;
    (server, agent)
}

/// `POST /match` (with or without the trailing slash) with this body.
async fn dry_run(server: &Server, path: &str, body: Value) -> (u16, Value) {
    server.call("POST", path, Some(body)).await
}

#[tokio::test]
async fn a_typo_in_the_gpu_label_is_named_by_match() {
    let (server, _agent) = lab().await;
    for path in ["/match", "/match/"] {
        let (status, body) = dry_run(
            &server,
            path,
            json!({"requirements": {"gpu": {"label": "RTX 2090"}}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["data"],
            json!({"matching_resources": 0, "free": 0, "explain": [
                {"reason": "gpu_label", "count": 4, "message": TYPO}
            ]})
        );
    }
    let mut held = allocate(&server, json!({"username": "u", "min_cpu_count": 7})).await;
    recv_status(&mut held, "ready").await;
    let (status, body) = dry_run(
        &server,
        "/match",
        json!({"requirements": {"username": "alice", "tags": ["nvidia"], "min_cpu_count": 5}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["matching_resources"], 3);
    assert_eq!(body["data"]["free"], 2);
    let explain = &body["data"]["explain"];
    assert_eq!(explain[0]["reason"], "min_cpu_count", "{body}");
    assert_eq!(explain[0]["count"], 1);
    assert_eq!(explain[1]["reason"], "allocated");
    assert_eq!(
        explain[1]["message"],
        "1 of 3 matching resources are allocated"
    );
    let inventory = server.get("/inventory/?state=free").await;
    assert_eq!(
        inventory.as_array().map(Vec::len),
        Some(3),
        "a dry run allocates nothing"
    );
}

#[tokio::test]
async fn match_refuses_what_allocate_refuses_naming_the_field() {
    let (server, _agent) = lab().await;
    for (body, names) in [
        (json!({"requirements": {"tag": ["nvidia"]}}), "`tag`"),
        (
            json!({"requirements": {"min_cpu_count": 1.5}}),
            "requirements.min_cpu_count",
        ),
        (
            json!({"requirements": {"gpu": {"count": 0}}}),
            "requirements.gpu.count",
        ),
        (
            json!({"requirements": {"tags": [""]}}),
            "requirements.tags[0]",
        ),
        (json!({"requirement": {}}), "`requirement`"),
        (json!({}), "requirements"),
    ] {
        let (status, reply) = dry_run(&server, "/match", body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_request");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{body}: {message}");
    }
    let (status, reply) = server.call("GET", "/match", None).await;
    assert_eq!(status, 405, "{reply}");
}

#[tokio::test]
async fn a_hopeless_request_says_why_first_and_in_its_408() {
    let (server, _agent) = lab().await;
    let mut ws = allocate(
        &server,
        json!({"username": "u", "gpu": {"label": "RTX 2090"}, "allocation_timeout_seconds": 1}),
    )
    .await;
    let queued = recv_status(&mut ws, "queued").await;
    assert_eq!(queued["matching_resources"], 0);
    let finding = json!({"reason": "gpu_label", "count": 4, "message": TYPO});
    assert_eq!(queued["explain"], json!([finding]));
    let id = queued["allocation_id"].as_str().expect("id").to_owned();
    let explained = server.get(&format!("/allocate/{id}/explain")).await;
    assert_eq!(explained["explain"], json!([finding]));
    assert_eq!(explained["matching_resources"], 0);
    let timed_out = recv(&mut ws).await;
    assert_eq!(timed_out["status"], 408, "{timed_out}");
    assert_eq!(timed_out["error"]["code"], "allocation_timeout");
    assert_eq!(
        timed_out["error"]["message"],
        format!("allocation {id}: no registered resource could ever satisfy it: {TYPO}")
    );
    assert_eq!(timed_out["error"]["explain"], json!([finding]));
    let (status, gone) = server
        .call("GET", &format!("/allocate/{id}/explain"), None)
        .await;
    assert_eq!(status, 404, "an ended request: {gone}");
}

#[tokio::test]
async fn a_request_that_only_waits_carries_no_explain_and_ids_are_checked() {
    let (server, _agent) = lab().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut ws = allocate(&server, json!({"username": "u"})).await;
        recv_status(&mut ws, "ready").await;
        held.push(ws);
    }
    let mut ws = allocate(
        &server,
        json!({"username": "u", "allocation_timeout_seconds": 30}),
    )
    .await;
    let queued = recv_status(&mut ws, "queued").await;
    assert_eq!(queued["matching_resources"], 4);
    assert!(queued.get("explain").is_none(), "{queued}");
    let id = queued["allocation_id"].as_str().expect("id");
    let explained = server.get(&format!("/allocate/{id}/explain/")).await;
    assert_eq!(
        explained,
        json!({"matching_resources": 4, "free": 0, "explain": [
            {"reason": "allocated", "count": 4, "message": "4 of 4 matching resources are allocated"}
        ]})
    );
    let (status, body) = server
        .call("GET", "/allocate/not-a-uuid/explain", None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let unknown = "8a526e72-bcde-45e6-8a5f-f598b350f093";
    let (status, body) = server
        .call("GET", &format!("/allocate/{unknown}/explain"), None)
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
}

#[tokio::test]
async fn more_than_can_match_and_a_user_at_a_limit_are_findings() {
    let dir = std::env::temp_dir().join(format!("allocate-explain-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&dir).expect("temp dir");
    let path = dir.join("policy.json");
    let policy = json!({"users": {"ann": {"allocations_max": 1}}});
    std::fs::write(&path, policy.to_string()).expect("policy file");
    let mut config = test_config();
    config.quotas = Some(allocate_http::PolicyFile::load(&path).expect("policy"));
    let server = Server::with(config).await;
    std::fs::remove_dir_all(&dir).expect("cleanup");
    let mut agent = Agent::connect(&server).await;
    let machines = (0..4)
        .map(|i| resource(&["nvidia"], 4, Some(&format!("10.0.0.{i}"))))
        .collect();
    agent.register(machines).await;

    // `count`: five together where four match.
    let too_few = json!({"reason": "count", "count": 4, "message":
        "4 of 4 registered resources satisfy every requirement, fewer than the 5 the request asks for together"});
    let (status, body) = dry_run(&server, "/match", json!({"requirements": {"count": 5}})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"matching_resources": 4, "free": 4, "explain": [too_few]})
    );
    let mut five = allocate(
        &server,
        json!({"username": "bob", "count": 5, "allocation_timeout_seconds": 1}),
    )
    .await;
    let queued = recv_status(&mut five, "queued").await;
    assert_eq!(queued["explain"], json!([too_few]), "{queued}");
    let id = queued["allocation_id"].as_str().expect("id").to_owned();
    let explained = server.get(&format!("/allocate/{id}/explain")).await;
    assert_eq!(explained["explain"], json!([too_few]));
    let timed_out = recv(&mut five).await;
    assert_eq!(timed_out["status"], 408, "{timed_out}");
    assert_eq!(
        timed_out["error"]["message"],
        format!(
            "allocation {id}: too few registered resources could ever satisfy it: {}",
            too_few["message"].as_str().expect("a sentence")
        )
    );

    // `quota`: ann holds her one allocation; the free machines are not hers to take.
    let mut first = allocate(&server, json!({"username": "ann"})).await;
    recv_status(&mut first, "ready").await;
    let mut second = allocate(&server, json!({"username": "ann"})).await;
    let queued = recv_status(&mut second, "queued").await;
    assert_eq!(queued["reason"], "quota", "{queued}");
    assert!(queued.get("explain").is_none(), "it only waits: {queued}");
    let at_limit = json!({"reason": "quota", "count": 3, "message":
        "3 of 4 matching resources are free but would put ann over the limit of concurrent allocations (1)"});
    let id = queued["allocation_id"].as_str().expect("id").to_owned();
    let explained = server.get(&format!("/allocate/{id}/explain")).await;
    assert_eq!(explained["free"], 0, "{explained}");
    assert_eq!(explained["explain"][0], at_limit, "{explained}");
    assert_eq!(
        explained["explain"][1]["reason"], "allocated",
        "{explained}"
    );
    let (_, body) = dry_run(
        &server,
        "/match",
        json!({"requirements": {"username": "ann"}}),
    )
    .await;
    assert_eq!(body["data"], explained, "a dry run as ann");
    let (_, body) = dry_run(
        &server,
        "/match",
        json!({"requirements": {"username": "bob"}}),
    )
    .await;
    assert_eq!(body["data"]["free"], 3, "bob is not held: {body}");
}

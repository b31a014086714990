//! Quotas through the `allocate-http` binary: a policy file (`--policy-file`), requests over a
//! limit waiting with `"reason": "quota"` over real websockets, impossible ones refused, a bad
//! file refused at start, and the file read again on SIGHUP (a bad one keeps the policy before);
//! a group's limit applying to a user whose token (`--tokens-file`, `groups=`) names the group;
//! a waiting request that a tighter policy could never fit refused on SIGHUP, as a new one is.

mod common;
mod process;

use common::{expect_close, recv, recv_error, recv_status, resource, send, ws_at, Ws};
use process::{Proc, TokensFile};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// An agent registered with `machines` static machines labelled `x`, presenting `token`.
async fn agent_with(addr: SocketAddr, token: Option<&str>, machines: usize) -> Ws {
    let mut agent = ws_at(addr, "/agent/", token).await;
    let machines: Vec<Value> = (0..machines)
        .map(|i| resource(&["x"], 4, Some(&format!("10.0.0.{i}"))))
        .collect();
    send(
        &mut agent,
        json!({"agent_id": uuid::Uuid::new_v4(), "resources": machines}),
    )
    .await;
    recv_status(&mut agent, "ok").await;
    agent
}

/// A client on `/allocate/` (with a bearer token if given) that has sent `requirements`.
async fn allocate(addr: SocketAddr, token: Option<&str>, requirements: Value) -> Ws {
    let mut client = ws_at(addr, "/allocate/", token).await;
    send(&mut client, json!({ "requirements": requirements })).await;
    client
}

#[tokio::test]
async fn over_quota_waits_others_pass_and_sighup_loosens_the_limit() {
    // The policy file is any private file: the tokens file's harness holds it.
    let file = TokensFile::new("{\"default\": {\n  \"gpus_max\": -1}}", 0o600);
    let start = || {
        Proc::spawn_env(
            &["--listen", "127.0.0.1:0", "--in-memory"],
            &[("ALLOCATE_POLICY_FILE", file.arg())],
        )
    };
    let (status, log) = start().exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("line 2, field default.gpus_max"), "{log}");
    let policy = json!({"default": {"allocations_max": 1, "resources_max": 2}});
    file.write(&policy.to_string(), 0o600);
    let mut server = start();
    let addr = server.address();
    let _agent = agent_with(addr, None, 3).await;

    let mut first = allocate(addr, None, json!({"username": "alice"})).await;
    recv_status(&mut first, "ready").await;
    let mut second = allocate(addr, None, json!({"username": "alice"})).await;
    let queued = recv_status(&mut second, "queued").await;
    assert_eq!(queued["reason"], "quota", "{queued}");
    assert_eq!(queued["limit"], "concurrent allocations", "{queued}");
    let mut bob = allocate(addr, None, json!({"username": "bob"})).await;
    recv_status(&mut bob, "ready").await;

    let mut many = allocate(addr, None, json!({"username": "carol", "count": 3})).await;
    let message = recv_error(&mut many, 403, "quota_exceeded").await;
    assert!(message.contains("resources held"), "{message}");

    file.write("{\"default\": {\"allocations_max\": \"two\"}}", 0o600);
    server.signal("HUP");
    let line = server.wait_for("keeping the policy loaded before");
    assert!(line.contains("default.allocations_max"), "{line}");
    file.write(
        &json!({"default": {"allocations_max": 2}}).to_string(),
        0o600,
    );
    server.signal("HUP");
    server.wait_for("policy file reloaded");
    let ready = recv(&mut second).await;
    assert_eq!(ready["data"]["status"], "ready", "{ready}");
    server.kill();
}

#[tokio::test]
async fn a_group_limit_applies_to_users_whose_token_names_the_group() {
    const AGENT: &str = "agent-token-0123456789";
    const ANN: &str = "ann-token-0123456789";
    const BOB: &str = "bob-token-0123456789";
    let tokens =
        |ann_groups: &str| format!("{AGENT} agent\n{ANN} user ann {ann_groups}\n{BOB} user bob\n");
    let tokens_file = TokensFile::new(&tokens("groups=students,typo"), 0o600);
    // The policy file lists no member: ann is a student by her token alone.
    let policy = json!({"groups": {"students": {"limits": {"allocations_max": 1}}}});
    let policy_file = TokensFile::new(&policy.to_string(), 0o600);
    let mut server = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--in-memory",
        "--tokens-file",
        tokens_file.arg(),
        "--policy-file",
        policy_file.arg(),
    ]);
    let addr = server.address();
    let _agent = agent_with(addr, Some(AGENT), 4).await;

    let mut first = allocate(addr, Some(ANN), json!({"username": "ann"})).await;
    recv_status(&mut first, "ready").await;
    let mut second = allocate(addr, Some(ANN), json!({"username": "ann"})).await;
    let queued = recv_status(&mut second, "queued").await;
    assert_eq!(queued["reason"], "quota", "{queued}");
    assert_eq!(queued["limit"], "concurrent allocations", "{queued}");
    // bob's token names no group: the group's limit is not his.
    let mut bob = allocate(addr, Some(BOB), json!({"username": "bob"})).await;
    recv_status(&mut bob, "ready").await;
    let mut again = allocate(addr, Some(BOB), json!({"username": "bob"})).await;
    recv_status(&mut again, "ready").await;

    // A reload of the tokens file that takes ann out of the group lets her waiting request in.
    tokens_file.write(&tokens(""), 0o600);
    server.signal("HUP");
    server.wait_for("tokens file reloaded");
    let ready = recv(&mut second).await;
    assert_eq!(ready["data"]["status"], "ready", "{ready}");
    let log = server.kill();
    let warned = log
        .lines()
        .find(|l| l.contains("names a group that the policy file does not define"))
        .unwrap_or_else(|| panic!("no warning in the log:\n{log}"));
    assert!(warned.contains("typo"), "{warned}");
}

#[tokio::test]
async fn a_waiting_request_that_a_tighter_policy_could_never_fit_is_refused_on_sighup() {
    let file = TokensFile::new(
        &json!({"default": {"allocations_max": 4}}).to_string(),
        0o600,
    );
    let mut server = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--in-memory",
        "--policy-file",
        file.arg(),
    ]);
    let addr = server.address();
    let _agent = agent_with(addr, None, 2).await;
    let holder = json!({"username": "bob", "count": 2, "release_on_disconnect": true});
    let mut holder = allocate(addr, None, holder).await;
    recv_status(&mut holder, "ready").await;
    let mut four = allocate(addr, None, json!({"username": "alice", "count": 4})).await;
    recv_status(&mut four, "queued").await;
    let mut two = allocate(addr, None, json!({"username": "alice", "count": 2})).await;
    recv_status(&mut two, "queued").await;

    let tighter = json!({"default": {"allocations_max": 4, "resources_max": 2}});
    file.write(&tighter.to_string(), 0o600);
    server.signal("HUP");
    server.wait_for("policy file reloaded");
    let message = recv_error(&mut four, 403, "quota_exceeded").await;
    assert!(
        message.contains("at most 2 (resources held), the request needs 4"),
        "{message}"
    );
    expect_close(&mut four, 1000).await;
    // Worded as the refusal of the same request made now.
    let mut again = allocate(addr, None, json!({"username": "alice", "count": 4})).await;
    let refused = recv_error(&mut again, 403, "quota_exceeded").await;
    assert!(message.ends_with(&refused), "{message} / {refused}");

    // One that could still fit keeps waiting, and is served once bob's machines are free.
    drop(holder);
    let ready = loop {
        let msg = recv(&mut two).await;
        if msg["data"]["status"] != "queued" {
            break msg;
        }
    };
    assert_eq!(ready["data"]["status"], "ready", "{ready}");
    server.kill();
}

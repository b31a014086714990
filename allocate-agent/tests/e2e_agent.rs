//! End to end: the real `allocate-agent` binary, as a child process, against the real server
//! running in this process on 127.0.0.1:0. GPU detection runs a stand-in `nvidia-smi` (first on
//! the agent's `PATH`, printing a recorded output); provision and release run shell scripts
//! that leave marks in a scratch directory. Every agent is killed when its guard drops.

// The `allocate-agent` process, its scratch directory, and a client that keeps reading.
#[path = "support/agent_proc.rs"]
mod agent_proc;
// The in-process server and its websocket helpers: the server's own test harness, one copy in
// allocate-http's tests, read from there.
#[path = "../../allocate-http/tests/common/mod.rs"]
mod common;

use agent_proc::{requirements, sh_quote, AgentProc, Client, Scratch};
use allocate_http::ServerConfig;
use common::{Received, Server, STEP};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::time::timeout;

/// The longest a whole test may take.
const TEST: Duration = Duration::from_secs(30);

/// The recorded output the stand-in `nvidia-smi` prints.
const RTX_2080: &str = include_str!("fixtures/nvidia-smi/one-gpu-rtx-2080.csv");

/// Provision: records the order, prints a connection for the user.
const PROVISION: &str = r#"#!/bin/sh
set -eu
printf '%s user=%s\n' "$ALLOCATE_ALLOCATION_ID" "$ALLOCATE_USERNAME" >> "$E2E_MARKS/provisioned"
printf '{"host": "%s", "username": "u-%s", "password": "one-time-%s"}\n' \
    "$ALLOCATE_HOST" "$ALLOCATE_USERNAME" "$ALLOCATE_INVENTORY_ID"
"#;

/// Release: records the order (the user is known only to the agent that provisioned).
const RELEASE: &str = r#"#!/bin/sh
set -eu
printf '%s user=%s\n' "$ALLOCATE_ALLOCATION_ID" "${ALLOCATE_USERNAME:-}" >> "$E2E_MARKS/released"
"#;

async fn e2e(test: impl Future<Output = ()>) {
    timeout(TEST, test)
        .await
        .unwrap_or_else(|_| panic!("the test took longer than {TEST:?}"));
}

/// A stand-in `nvidia-smi` in `<scratch>/bin` that prints `output` for the agent's query.
fn fake_nvidia_smi(scratch: &Scratch, output: &str) {
    let body = format!(
        "#!/bin/sh\n\
         [ \"$*\" = '--query-gpu=name,memory.total --format=csv,noheader,nounits' ] || \
         {{ echo \"nvidia-smi stand-in: unexpected arguments: $*\" >&2; exit 2; }}\n\
         cat <<'EOF'\n{output}EOF\n"
    );
    scratch.executable("bin/nvidia-smi", &body);
}

/// The provision and release scripts, as `--provision-command` and `--release-command`.
fn command_flags(scratch: &Scratch) -> Vec<String> {
    let provision = scratch.executable("provision", PROVISION);
    let release = scratch.executable("release", RELEASE);
    vec![
        "--provision-command".into(),
        sh_quote(&provision),
        "--release-command".into(),
        sh_quote(&release),
    ]
}

fn str_of(value: &Value) -> &str {
    value.as_str().expect("a string")
}

async fn delete(server: &Server, allocation_id: &str) {
    let deleted = server
        .call("DELETE", &format!("/allocate/{allocation_id}"), None)
        .await;
    assert_eq!(
        deleted,
        (200, json!({"status": 200, "data": "deleted allocation"}))
    );
}

#[tokio::test]
async fn commands_and_a_detected_gpu_from_registration_to_release() {
    e2e(async {
        let server = Server::start().await;
        let scratch = Scratch::new("commands");
        fake_nvidia_smi(&scratch, RTX_2080);
        let path = format!(
            "{}:{}",
            scratch.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let marks = scratch.path.display().to_string();
        let agent_id = uuid::Uuid::new_v4().to_string();
        let mut args = vec![
            "--agent-id",
            &agent_id,
            "--label",
            "nvidia",
            "--label",
            "cuda",
            "--type",
            "workstation",
            "--host",
            "gpu-07.lab",
        ];
        let commands = command_flags(&scratch);
        args.extend(commands.iter().map(String::as_str));
        let mut agent = AgentProc::spawn(
            &server,
            &scratch,
            "agent.log",
            &args,
            &[("PATH", &path), ("E2E_MARKS", &marks)],
        );

        // Registered from flags and detection: the GPU comes from the stand-in nvidia-smi.
        let entry = agent.wait_resource(&server, &agent_id, "free").await;
        let inventory_id = str_of(&entry["inventory_id"]).to_owned();
        assert_eq!(entry["labels"], json!(["nvidia", "cuda"]), "{entry}");
        assert_eq!(
            entry["gpu"],
            json!([{"label": "NVIDIA GeForce RTX 2080", "memory_gb": 8}]),
            "{entry}"
        );
        assert_eq!(entry["type"], "workstation", "{entry}");
        assert!(
            entry["cpu_count"].as_u64().expect("cpu_count") >= 1,
            "{entry}"
        );
        assert!(
            entry["memory_gb"].as_u64().expect("memory_gb") >= 1,
            "{entry}"
        );
        assert!(entry.get("connection").is_none(), "{entry}");
        let filtered = server.get("/inventory/?tags=nvidia,cuda&state=free").await;
        assert_eq!(filtered, json!([entry]));

        // A GPU it does not have: nothing, straight away.
        let mut none = Client::open(
            &server,
            requirements(
                "ci-runner-7",
                json!({"gpu": {"label": "h100"}, "allocation_timeout_seconds": 0}),
            ),
        )
        .await;
        match none.next_within(STEP).await {
            Received::Json(msg) => {
                assert_eq!(msg["status"], 408, "{msg}");
                assert_eq!(msg["error"]["code"], "allocation_timeout", "{msg}");
            }
            Received::Closed(code) => panic!("closed ({code:?}) instead of 408"),
        }

        // The one it has, by part of its name: the provision script's connection comes back.
        let mut client = Client::open(
            &server,
            requirements(
                "ci-runner-7",
                json!({"tags": ["nvidia"], "gpu": {"label": "rtx 2080"}}),
            ),
        )
        .await;
        let ready = client.status("ready").await;
        let allocation_id = str_of(&ready["allocation_id"]).to_owned();
        assert_eq!(ready["inventory_id"], inventory_id.as_str());
        assert_eq!(
            ready["connection"],
            json!({"host": "gpu-07.lab", "username": "u-ci-runner-7",
                   "password": format!("one-time-{inventory_id}")})
        );
        assert_eq!(
            scratch.lines("provisioned"),
            [format!("{allocation_id} user=ci-runner-7")]
        );
        assert_eq!(server.resource(&inventory_id).await["state"], "allocated");
        assert_eq!(
            server.get(&format!("/allocate/{allocation_id}")).await["state"],
            "ready"
        );

        // DELETE: the client hears `released`, the release script runs, the machine is free.
        delete(&server, &allocation_id).await;
        client.status("released").await;
        client.closed(1000).await;
        server.wait_state(&inventory_id, "free").await;
        assert_eq!(
            scratch.lines("released"),
            [format!("{allocation_id} user=ci-runner-7")],
            "free only once the release command has run"
        );

        // SIGTERM: a clean exit, and no password in its logs.
        agent.signal("TERM");
        let status = agent.exited(STEP).await;
        assert!(status.success(), "{status}; log:\n{}", agent.log());
        assert!(!agent.log().contains("one-time-"), "{}", agent.log());
        server.wait_state(&inventory_id, "offline").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_static_connection_needs_no_round_trip() {
    e2e(async {
        let server = Server::start().await;
        let scratch = Scratch::new("static");
        let agent_id = uuid::Uuid::new_v4().to_string();
        let mut agent = AgentProc::spawn(
            &server,
            &scratch,
            "agent.log",
            &[
                "--agent-id",
                &agent_id,
                "--label",
                "lab",
                "--type",
                "device",
                "--host",
                "console-3.lab",
                "--cpu-count",
                "4",
                "--memory-gb",
                "16",
                "--gpu",
                "NVIDIA GeForce RTX 2080:8",
                "--static-username",
                "lab",
                "--static-host",
                "10.0.0.7",
            ],
            &[("ALLOCATE_AGENT_STATIC_PASSWORD", "s3cret-static")],
        );
        let entry = agent.wait_resource(&server, &agent_id, "free").await;
        let inventory_id = str_of(&entry["inventory_id"]).to_owned();
        assert_eq!(
            entry,
            json!({"inventory_id": inventory_id, "labels": ["lab"], "cpu_count": 4,
                   "memory_gb": 16, "gpu": [{"label": "NVIDIA GeForce RTX 2080", "memory_gb": 8}],
                   "type": "device", "agent_id": agent_id, "state": "free"})
        );
        let (_, inventory) = server.call("GET", "/inventory/", None).await;
        assert!(!inventory.to_string().contains("s3cret"), "{inventory}");

        let mut client = Client::open(
            &server,
            requirements(
                "ci-runner-7",
                json!({"tags": ["lab"], "gpu": {"label": "2080"}}),
            ),
        )
        .await;
        let ready = client.status("ready").await;
        assert_eq!(ready["inventory_id"], inventory_id.as_str());
        assert_eq!(
            ready["connection"],
            json!({"host": "10.0.0.7", "username": "lab", "password": "s3cret-static"})
        );
        let allocation_id = str_of(&ready["allocation_id"]).to_owned();
        delete(&server, &allocation_id).await;
        client.status("released").await;
        client.closed(1000).await;
        server.wait_state(&inventory_id, "free").await;

        agent.signal("TERM");
        let status = agent.exited(STEP).await;
        assert!(status.success(), "{status}; log:\n{}", agent.log());
        assert!(!agent.log().contains("s3cret"), "{}", agent.log());
        server.stop().await;
    })
    .await;
}

/// Short keepalive settings, so that a vanished agent is noticed quickly.
fn short_idle(idle_timeout: Duration) -> ServerConfig {
    ServerConfig {
        ping_interval: Duration::from_millis(100),
        idle_timeout,
        ..common::test_config()
    }
}

/// Scheduling slack on top of the idle timeout (the keepalive is checked each ping interval).
const SLACK: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_killed_agent_goes_offline_and_its_restart_brings_the_resource_back() {
    e2e(async {
        let idle_timeout = Duration::from_secs(2);
        let server = Server::with(short_idle(idle_timeout)).await;
        let scratch = Scratch::new("restart");
        let marks = scratch.path.display().to_string();
        let agent_id = uuid::Uuid::new_v4().to_string();
        let mut args = vec![
            "--agent-id",
            &agent_id,
            "--label",
            "lab",
            "--no-gpu",
            "--cpu-count",
            "2",
            "--memory-gb",
            "4",
            "--host",
            "box-c.lab",
        ];
        let commands = command_flags(&scratch);
        args.extend(commands.iter().map(String::as_str));
        let envs = [("E2E_MARKS", marks.as_str())];
        let mut first = AgentProc::spawn(&server, &scratch, "agent-1.log", &args, &envs);
        let entry = first.wait_resource(&server, &agent_id, "free").await;
        let inventory_id = str_of(&entry["inventory_id"]).to_owned();

        let mut client = Client::open(
            &server,
            requirements("ci-runner-7", json!({"tags": ["lab"]})),
        )
        .await;
        let ready = client.status("ready").await;
        let allocation_id = str_of(&ready["allocation_id"]).to_owned();

        // SIGKILL: no close frame; the server notices within its idle timeout.
        first.kill();
        client.status_within("offline", idle_timeout + SLACK).await;
        server.wait_state(&inventory_id, "offline").await;
        assert_eq!(
            server.get(&format!("/allocate/{allocation_id}")).await["state"],
            "ready",
            "the lease outlives its agent"
        );

        // The same agent id again: the same resource, back online, still allocated.
        let mut second = AgentProc::spawn(&server, &scratch, "agent-2.log", &args, &envs);
        client.status("online").await;
        let back = second.wait_resource(&server, &agent_id, "allocated").await;
        assert_eq!(back["inventory_id"], inventory_id.as_str());
        let inventory = server.get("/inventory/").await;
        assert_eq!(inventory.as_array().expect("list").len(), 1, "{inventory}");

        // The new process answers the release, although another one provisioned.
        delete(&server, &allocation_id).await;
        client.status("released").await;
        server.wait_state(&inventory_id, "free").await;
        assert_eq!(
            scratch.lines("released"),
            [format!("{allocation_id} user=")]
        );
        second.signal("TERM");
        let status = second.exited(STEP).await;
        assert!(status.success(), "{status}; log:\n{}", second.log());
        server.stop().await;
    })
    .await;
}

/// The flags of a small machine labelled `lab` with a static connection, as `agent_id`.
fn small_static_machine(agent_id: &str) -> Vec<&str> {
    vec![
        "--agent-id",
        agent_id,
        "--label",
        "lab",
        "--no-gpu",
        "--cpu-count",
        "1",
        "--memory-gb",
        "1",
        "--static-username",
        "lab",
        "--static-password",
        "pw",
        "--static-host",
        "10.0.0.9",
    ]
}

#[tokio::test]
async fn a_frozen_agent_is_dropped_by_the_idle_timeout_and_comes_back_when_it_thaws() {
    e2e(async {
        let idle_timeout = Duration::from_secs(1);
        let server = Server::with(short_idle(idle_timeout)).await;
        let scratch = Scratch::new("frozen");
        let agent_id = uuid::Uuid::new_v4().to_string();
        let mut agent = AgentProc::spawn(
            &server,
            &scratch,
            "agent.log",
            &small_static_machine(&agent_id),
            &[],
        );
        let entry = agent.wait_resource(&server, &agent_id, "free").await;
        let inventory_id = str_of(&entry["inventory_id"]).to_owned();
        let mut client = Client::open(
            &server,
            requirements("ci-runner-7", json!({"tags": ["lab"]})),
        )
        .await;
        client.status("ready").await;

        // SIGSTOP keeps its socket open but silent: only the keepalive can notice.
        agent.signal("STOP");
        client.status_within("offline", idle_timeout + SLACK).await;
        assert_eq!(server.resource(&inventory_id).await["state"], "offline");

        // SIGCONT: it finds its socket closed, reconnects and registers again.
        agent.signal("CONT");
        client.status("online").await;
        agent.wait_resource(&server, &agent_id, "allocated").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wss_through_a_tls_front_with_a_private_ca() {
    e2e(async {
        let server = Server::start().await;
        let front = testkit::server::TlsFront::start(server.addr).await;
        let url = format!("wss://localhost:{}/agent/", front.addr.port());
        let scratch = Scratch::new("wss");
        let args = small_static_machine;

        // Without the CA the front's certificate is not trusted: the agent keeps trying.
        let untrusting = "0f1e2d3c-4b5a-4697-8877-665544332211";
        let mut refused =
            AgentProc::spawn_for(&url, &scratch, "refused.log", &args(untrusting), &[]);

        // With it, the agent registers through the front.
        let trusting = "00112233-4455-4677-8899-aabbccddeeff";
        let ca_file = front.ca_file.display().to_string();
        let mut agent = AgentProc::spawn_for(
            &url,
            &scratch,
            "agent.log",
            &args(trusting),
            &[("ALLOCATE_AGENT_CA_FILE", &ca_file)],
        );
        agent.wait_resource(&server, trusting, "free").await;
        refused.wait_log("reconnecting").await;
        let inventory = server.get("/inventory/").await;
        assert_eq!(inventory.as_array().expect("list").len(), 1, "{inventory}");

        agent.signal("TERM");
        let status = agent.exited(STEP).await;
        assert!(status.success(), "{status}; log:\n{}", agent.log());
        server.stop().await;
    })
    .await;
}

//! A network blip under the real `allocate-agent` binary: its socket to the server dies on the
//! agent's side only (a loopback proxy drops it and keeps the server's side open, as a lost
//! route would), the agent reconnects at once and its new socket takes over the same
//! `agent_id` while the server still holds the old one. The order in flight (a provision, then
//! a release) is sent again on the new socket, the agent answers it there once, and the blip
//! costs nothing: no `error`, no 408, each script run once.

// The `allocate-agent` process, its scratch directory, and a client that keeps reading
// (e2e_agent uses the rest of it).
#[path = "support/agent_proc.rs"]
#[allow(dead_code)]
mod agent_proc;
// The in-process server and its websocket helpers, read from allocate-http's tests.
#[path = "../../allocate-http/tests/common/mod.rs"]
mod common;

use agent_proc::{requirements, sh_quote, AgentProc, Client, Scratch};
use common::{Server, STEP};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// The longest the whole test may take.
const TEST: Duration = Duration::from_secs(30);

/// Provision: records that it started, waits (at most 10 s) for the test's go, then prints a
/// connection.
const PROVISION: &str = r#"#!/bin/sh
set -eu
printf '%s\n' "$ALLOCATE_ALLOCATION_ID" >> "$E2E_MARKS/provisioned"
i=0
while [ ! -e "$E2E_MARKS/go-provision" ]; do i=$((i + 1)); [ "$i" -lt 200 ]; sleep 0.05; done
printf '{"host": "%s", "username": "u", "password": "p"}\n' "$ALLOCATE_HOST"
"#;

/// Release: records that it started and waits (at most 10 s) for the test's go.
const RELEASE: &str = r#"#!/bin/sh
set -eu
printf '%s\n' "$ALLOCATE_ALLOCATION_ID" >> "$E2E_MARKS/released"
i=0
while [ ! -e "$E2E_MARKS/go-release" ]; do i=$((i + 1)); [ "$i" -lt 200 ]; sleep 0.05; done
"#;

/// A loopback TCP proxy in front of the server whose [`Blip::cut`] drops the agent's side of
/// the newest connection and keeps the server's side open and silent. Its tasks (and the
/// sockets they hold) end when it drops.
struct Blip {
    addr: SocketAddr,
    cut: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Blip {
    async fn start(upstream: SocketAddr) -> Blip {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("proxy address");
        let cut = Arc::new(Mutex::new(None));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (cuts, spawned) = (cut.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (tx, rx) = oneshot::channel();
                *cuts.lock().expect("cut") = Some(tx);
                let task = tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = rx => {
                            drop(down);
                            // The server's side stays open, unread, until the proxy drops.
                            std::future::pending::<()>().await;
                        }
                    }
                });
                spawned.lock().expect("tasks").push(task);
            }
        });
        tasks.lock().expect("tasks").push(accept);
        Blip { addr, cut, tasks }
    }

    /// Drops the agent's side of the newest connection.
    fn cut(&self) {
        let cut = self.cut.lock().expect("cut").take().expect("a connection");
        let _ = cut.send(());
    }
}

impl Drop for Blip {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }
}

/// Waits until `check` holds, for at most [`STEP`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many registrations the server accepted from the agent, by its log.
fn registrations(agent: &AgentProc) -> usize {
    agent
        .log()
        .lines()
        .filter(|l| l.contains("registered") && l.contains("inventory_ids"))
        .count()
}

#[tokio::test]
async fn a_blip_mid_provision_and_mid_release_costs_nothing() {
    let test = async {
        let mut config = common::test_config();
        config.engine.provision_timeout_ms = 20_000;
        config.engine.release_timeout_ms = 20_000;
        let server = Server::with(config).await;
        let blip = Blip::start(server.addr).await;
        let scratch = Scratch::new("takeover");
        let marks = scratch.path.display().to_string();
        let provision = sh_quote(&scratch.executable("provision", PROVISION));
        let release = sh_quote(&scratch.executable("release", RELEASE));
        let agent_id = uuid::Uuid::new_v4().to_string();
        let args = [
            "--agent-id",
            &agent_id,
            "--label",
            "lab",
            "--no-gpu",
            "--cpu-count",
            "1",
            "--memory-gb",
            "1",
            "--host",
            "box-t.lab",
            "--provision-command",
            &provision,
            "--release-command",
            &release,
        ];
        let url = format!("ws://{}/agent/", blip.addr);
        let envs = [("E2E_MARKS", marks.as_str())];
        let mut agent = AgentProc::spawn_for(&url, &scratch, "agent.log", &args, &envs);
        let entry = agent.wait_resource(&server, &agent_id, "free").await;
        let inventory_id = entry["inventory_id"].as_str().expect("id").to_owned();
        until("registered once", || registrations(&agent) == 1).await;

        // Mid-provision: the script runs when the agent's socket dies.
        let mut client = Client::open(&server, requirements("ci", json!({"tags": ["lab"]}))).await;
        until("the provision started", || {
            scratch.lines("provisioned").len() == 1
        })
        .await;
        blip.cut();
        until("registered again", || registrations(&agent) == 2).await;
        std::fs::write(scratch.join("go-provision"), "").expect("go");
        let ready = client.status("ready").await;
        assert_eq!(ready["connection"]["host"], "box-t.lab", "{ready}");
        let allocation_id = ready["allocation_id"].as_str().expect("id").to_owned();
        assert_eq!(
            scratch.lines("provisioned"),
            std::slice::from_ref(&allocation_id)
        );
        assert_eq!(server.resource(&inventory_id).await["state"], "allocated");

        // Mid-release: the same again.
        let deleted = server
            .call("DELETE", &format!("/allocate/{allocation_id}"), None)
            .await;
        assert_eq!(deleted.0, 200, "{deleted:?}");
        client.status("released").await;
        until("the release started", || {
            scratch.lines("released").len() == 1
        })
        .await;
        blip.cut();
        until("registered a third time", || registrations(&agent) == 3).await;
        std::fs::write(scratch.join("go-release"), "").expect("go");
        server.wait_state(&inventory_id, "free").await;
        assert_eq!(scratch.lines("released"), [allocation_id]);
        let log = agent.log();
        assert!(!log.contains("refused"), "{log}");

        agent.signal("TERM");
        let status = agent.exited(STEP).await;
        assert!(status.success(), "{status}; log:\n{}", agent.log());
        server.stop().await;
    };
    timeout(TEST, test)
        .await
        .unwrap_or_else(|_| panic!("the test took longer than {TEST:?}"));
}

//! Failover with real processes: two `allocate-http` replicas on one throwaway PostgreSQL, the
//! reference agent in a process of its own and a client, both given both URLs. The leader is
//! killed with SIGKILL; the standby takes over, the agent registers with it by itself, and the
//! client's `ready` allocation is still there (same resource, credentials and expiry), is
//! followed again, and is released; a new request through the client is served.
//!
//! Prints the failover time: from the kill to the agent's resource being back online on the
//! new leader. `cargo test -p allocate-http --test failover -- --nocapture` shows it.

mod durability_support;

use allocate_client::{
    Client, ClientEvent, ClientOptions, InventoryFilter, Requirements, ResourceState,
};
use clap::Parser;
use durability_support::{free_port, launch_store_at};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::postgres::Cluster;
use tokio::time::timeout;
use uuid::Uuid;

/// The variable that makes this test binary the agent (see [`agent_process`]): the agent's
/// arguments, one per line.
const AGENT_ARGS: &str = "ALLOCATE_FAILOVER_TEST_AGENT_ARGS";
/// The agent's id.
const AGENT: Uuid = Uuid::from_u128(0xfa11);
/// The label of its resource.
const LABEL: &str = "failover";
/// The bound on any one step.
const STEP: Duration = Duration::from_secs(10);
/// The bound on the whole takeover (the kill to the resource online again).
const TAKEOVER_MAX: Duration = Duration::from_secs(30);
/// The standby's log line.
const STANDBY: &str = "listening as a standby";

/// Not a test: the entry of the agent's process. Run by [`AgentProc::spawn`] as this binary
/// with [`AGENT_ARGS`] set, it is `allocate-agent` with those arguments (the reference agent's
/// own command line and run loop); without the variable it does nothing.
#[test]
fn agent_process() {
    let Ok(args) = std::env::var(AGENT_ARGS) else {
        return;
    };
    let cli =
        allocate_agent::Cli::parse_from(std::iter::once("allocate-agent").chain(args.lines()));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime
        .block_on(allocate_agent::run(cli, std::future::pending()))
        .expect("the agent runs");
}

/// The agent's process; killed by its PID and reaped on drop.
struct AgentProc(Child);

impl AgentProc {
    /// Starts the agent with `servers` (its `--server` list) and a static connection.
    fn spawn(servers: &str) -> AgentProc {
        let agent_id = AGENT.to_string();
        let args = [
            "--server",
            servers,
            "--agent-id",
            &agent_id,
            "--label",
            LABEL,
            "--cpu-count",
            "4",
            "--memory-gb",
            "8",
            "--no-gpu",
            "--static-host",
            "10.0.0.7",
            "--static-username",
            "lab",
            "--static-password",
            "pw-7",
            "--reconnect-min-ms",
            "100",
            "--reconnect-max-ms",
            "1000",
        ];
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args(["agent_process", "--exact", "--nocapture"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        testkit::env::without_allocate_vars(&mut command);
        command.env(AGENT_ARGS, args.join("\n"));
        AgentProc(command.spawn().expect("start the agent"))
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `f`, failing the test if it takes longer than [`STEP`].
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    timeout(STEP, f)
        .await
        .expect("a step of the test took too long")
}

/// Waits until the agent's resource is in `state` on whichever server leads; its id.
async fn resource_in(client: &Client, state: ResourceState, within: Duration) -> Uuid {
    let deadline = Instant::now() + within;
    loop {
        let entries = client.inventory(&InventoryFilter::default()).await;
        let found = entries
            .iter()
            .flatten()
            .find(|e| e.agent_id == AGENT && e.state == state);
        if let Some(entry) = found {
            return entry.inventory_id;
        }
        assert!(
            Instant::now() < deadline,
            "the resource is not {state:?} within {within:?}: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn requirements() -> Requirements {
    let mut r = Requirements::for_user("ci");
    r.tags = vec![LABEL.to_owned()];
    r.allocation_timeout_seconds = 10;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_and_agent_and_client_follow_it() {
    let cluster = Cluster::start();
    let store = cluster.url();
    let (port_a, port_b) = (free_port(), free_port());
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let leader = launch_store_at(
        &store,
        &format!("127.0.0.1:{port_a}"),
        &["--advertise-url", &url_a],
    )
    .running();
    let standby = launch_store_at(
        &store,
        &format!("127.0.0.1:{port_b}"),
        &["--advertise-url", &url_b],
    );
    assert!(
        standby.wait_for_line(STANDBY, STEP).is_some(),
        "{}",
        standby.log()
    );

    // The agent and the client know both; the client tries the standby first.
    let _agent = AgentProc::spawn(&format!("ws://127.0.0.1:{port_a}/agent/,{url_b}"));
    let client = Client::with_urls([&url_b, &url_a], ClientOptions::default()).expect("client");
    let inventory_id = resource_in(&client, ResourceState::Free, STEP).await;
    assert_eq!(client.url(), url_a, "the standby named the leader");
    let held = bounded(client.allocate(&requirements()))
        .await
        .expect("allocate");
    let lease = bounded(held.wait_ready()).await.expect("ready");
    assert_eq!(lease.inventory_id, inventory_id);
    assert_eq!(lease.connection.password.as_deref(), Some("pw-7"));

    let killed_at = Instant::now();
    leader.signal("KILL");
    let new_leader = standby.running();
    assert_eq!(new_leader.addr.port(), port_b);
    resource_in(&client, ResourceState::Allocated, TAKEOVER_MAX).await;
    let failover = killed_at.elapsed();
    println!(
        "failover: {} ms from kill -9 of the leader to the agent's resource online on the new leader",
        failover.as_millis()
    );
    assert_eq!(client.url(), url_b);
    assert_eq!(new_leader.get("/healthz").await, "ok", "the standby leads");

    // The allocation, unchanged, on the new leader.
    let info = bounded(client.allocation(lease.allocation_id))
        .await
        .expect("the allocation");
    assert_eq!(info.state.as_str(), "ready");
    assert_eq!(
        (info.inventory_id, info.expires),
        (Some(lease.inventory_id), lease.expires)
    );
    assert_eq!(info.connection.as_deref(), Some(&lease.connection));
    // The request's own socket follows it again there (which first says `ready` again), and
    // so does a new follower.
    let mut readies = 0;
    while readies < 2 {
        match bounded(held.next_event()).await.expect("an event") {
            Some(ClientEvent::Ready { .. }) => readies += 1,
            Some(_) => {}
            None => panic!("the request's socket ended: {:?}", held.state()),
        }
    }
    assert_eq!(held.state().lease(), Some(&lease));
    let followed = bounded(client.follow(lease.allocation_id))
        .await
        .expect("follow");
    assert_eq!(
        bounded(followed.wait_ready()).await.expect("followed"),
        lease
    );

    bounded(held.release()).await.expect("release");
    loop {
        match bounded(followed.next_event()).await.expect("an event") {
            Some(ClientEvent::Released { .. }) => break,
            Some(_) => {}
            None => panic!("the follower ended without `released`"),
        }
    }
    let again = bounded(client.allocate(&requirements()))
        .await
        .expect("a new request");
    let second = bounded(again.wait_ready()).await.expect("ready again");
    assert_eq!(second.inventory_id, inventory_id);
    assert_ne!(second.allocation_id, lease.allocation_id);
}

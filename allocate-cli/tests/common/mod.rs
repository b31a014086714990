//! What the tests and the benchmark share: a machine registered by an agent over a real socket.
//! (The benchmark includes this file by path.)

use allocate_client::{AgentOptions, AgentSession, Client, Connection, ResourceSpec};
use allocate_core::Gpu;
use uuid::Uuid;

/// Registers one machine labelled `label` with a static connection to `host` (user `dev`,
/// password `pw`), 8 CPUs, 32 GB and an RTX 2080, as agent `agent`; keep the session alive.
pub async fn register_machine(
    client: &Client,
    agent: u128,
    label: &str,
    host: &str,
) -> AgentSession {
    let machine = ResourceSpec {
        inventory_id: None,
        labels: vec![label.into()],
        cpu_count: 8,
        memory_gb: 32,
        gpu: vec![Gpu {
            label: "NVIDIA GeForce RTX 2080".into(),
            memory_gb: 8,
        }],
        kind: "server-onsite".into(),
        connection: Some(std::sync::Arc::new(Connection {
            host: host.into(),
            username: "dev".into(),
            password: Some("pw".into()),
            port: None,
        })),
    };
    AgentSession::connect(
        client,
        Uuid::from_u128(agent),
        vec![machine],
        AgentOptions::default(),
    )
    .await
    .expect("agent")
}

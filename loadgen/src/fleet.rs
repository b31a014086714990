//! Simulated agents: a catalog of varied machines, and one task per agent that registers its
//! resources and answers provisions and releases at once.

use crate::failure::{Failure, Tally};
use crate::ws::{self, Ws};
use allocate_core::wire::{AgentMessage, Envelope, ServerMessage};
use allocate_core::{Connection, ProvisionResult};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Agents connecting at once (the rest wait), so the server's accept backlog never overflows.
const CONNECTS_AT_ONCE: usize = 128;

/// How long an agent has to get its registration accepted.
const REGISTER_WAIT: Duration = Duration::from_secs(60);

/// One kind of machine in the catalog, and what a user who wants it asks for.
struct Kind {
    labels: &'static [&'static str],
    gpus: &'static [(&'static str, u32)],
    kind: &'static str,
    cpu_count: u32,
    memory_gb: u32,
    /// The requirements (without username and timeout) that select this kind only.
    wants: fn() -> Value,
}

/// The catalog: labels, GPUs and types vary; each kind's `wants` matches no other kind.
const KINDS: [Kind; 8] = [
    Kind {
        labels: &["nvidia", "cuda"],
        gpus: &[("NVIDIA GeForce RTX 2080", 8)],
        kind: "server-onsite",
        cpu_count: 12,
        memory_gb: 32,
        wants: || json!({"tags": ["nvidia"], "gpu": {"label": "RTX 2080"}}),
    },
    Kind {
        labels: &["nvidia", "cuda", "datacenter"],
        gpus: &[("NVIDIA A100", 80); 4],
        kind: "server-onsite",
        cpu_count: 64,
        memory_gb: 512,
        wants: || json!({"tags": ["datacenter"], "gpu": {"label": "a100", "min_memory_gb": 40, "count": 2}}),
    },
    Kind {
        labels: &["nvidia", "cuda", "cloud"],
        gpus: &[("Tesla T4", 16)],
        kind: "VM",
        cpu_count: 8,
        memory_gb: 32,
        wants: || json!({"tags": ["cloud"], "type": "VM"}),
    },
    Kind {
        labels: &["amd", "rocm"],
        gpus: &[("Radeon Pro W6800", 32)],
        kind: "server-onsite",
        cpu_count: 16,
        memory_gb: 64,
        wants: || json!({"tags": ["rocm"], "min_cpu_count": 8}),
    },
    Kind {
        labels: &["x86", "linux"],
        gpus: &[],
        kind: "VM",
        cpu_count: 4,
        memory_gb: 16,
        wants: || json!({"tags": ["x86"], "exclude_tags": ["highmem"], "type": "VM"}),
    },
    Kind {
        labels: &["arm", "jetson"],
        gpus: &[("Jetson Orin", 8)],
        kind: "device",
        cpu_count: 12,
        memory_gb: 32,
        wants: || json!({"tags": ["jetson"], "type": "device"}),
    },
    Kind {
        labels: &["fpga", "xilinx"],
        gpus: &[],
        kind: "device",
        cpu_count: 4,
        memory_gb: 8,
        wants: || json!({"tags": ["fpga"]}),
    },
    Kind {
        labels: &["x86", "linux", "highmem"],
        gpus: &[],
        kind: "server-onsite",
        cpu_count: 96,
        memory_gb: 768,
        wants: || json!({"tags": ["highmem"], "min_memory_gb": 256}),
    },
];

/// Number of kinds in the catalog: users are spread over them.
pub const KIND_COUNT: usize = KINDS.len();

/// Zones: a label that makes otherwise equal machines distinct shapes, as racks do in a lab.
const ZONES: usize = 8;

/// How resources answer provisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioning {
    /// Registered with static connection details: no round trip to the agent.
    Static,
    /// The agent answers every provision and release itself, at once.
    RoundTrip,
}

/// A request (`{"requirements": ...}`) for a machine of catalog kind `kind`.
pub fn request(kind: usize, username: &str, wait_secs: u64) -> String {
    let mut wants = (KINDS[kind % KIND_COUNT].wants)();
    wants["username"] = json!(username);
    wants["allocation_timeout_seconds"] = json!(wait_secs);
    json!({ "requirements": wants }).to_string()
}

/// Resource `i` of catalog agent `agent`: kinds rotate within an agent and across agents.
fn resource(agent: usize, i: usize, provisioning: Provisioning) -> Value {
    let kind = &KINDS[(agent + i) % KIND_COUNT];
    let mut labels: Vec<String> = kind.labels.iter().map(|l| (*l).to_owned()).collect();
    labels.push(format!("zone-{}", agent % ZONES));
    let gpu: Vec<Value> = kind
        .gpus
        .iter()
        .map(|(label, memory_gb)| json!({"label": label, "memory_gb": memory_gb}))
        .collect();
    let larger = 1 + (agent / ZONES) % 2;
    let mut spec = json!({
        "labels": labels,
        "cpu_count": kind.cpu_count * larger as u32,
        "memory_gb": kind.memory_gb,
        "gpu": gpu,
        "type": kind.kind,
    });
    if provisioning == Provisioning::Static {
        spec["connection"] = static_connection(agent);
    }
    spec
}

/// The (never contacted) login the server hands out for a static resource of `agent`.
pub fn static_connection(agent: usize) -> Value {
    json!({"host": "127.0.0.1", "username": format!("lab-{agent}"), "password": "not-a-secret"})
}

/// An agent's id: distinct per `fleet` and index, stable across runs.
pub fn agent_id(fleet: u32, index: usize) -> String {
    format!("{fleet:08x}-0000-4000-8000-{index:012x}")
}

/// One agent to start: its id and resource list.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    /// The agent's id.
    pub agent_id: String,
    /// Its resources, as registered.
    pub resources: Vec<Value>,
}

/// `agents` catalog agents sharing `resources` resources (spread as evenly as possible).
pub fn catalog(fleet: u32, agents: usize, resources: usize, p: Provisioning) -> Vec<AgentPlan> {
    let agents = agents.max(1);
    (0..agents)
        .map(|a| {
            let count = resources / agents + usize::from(a < resources % agents);
            AgentPlan {
                agent_id: agent_id(fleet, a),
                resources: (0..count).map(|i| resource(a, i, p)).collect(),
            }
        })
        .collect()
}

/// Running agents; dropping it (or [`Fleet::stop`]) ends them.
#[derive(Debug)]
pub struct Fleet {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Connects and registers every planned agent; returns once all are registered.
    pub async fn start(
        addr: SocketAddr,
        plans: Vec<AgentPlan>,
        failures: &Arc<Tally>,
    ) -> Result<Fleet, Failure> {
        let (stop, stopping) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
        let mut tasks = JoinSet::new();
        let (registered_tx, mut registered) = tokio::sync::mpsc::channel(plans.len().max(1));
        let planned = plans.len();
        for plan in plans {
            let (gate, stopping) = (gate.clone(), stopping.clone());
            let (failures, registered_tx) = (failures.clone(), registered_tx.clone());
            tasks.spawn(async move {
                let connected = {
                    let _permit = gate.acquire().await;
                    timeout(REGISTER_WAIT, register(addr, &plan)).await
                };
                let mut socket = match connected {
                    Ok(Ok(ws)) => ws,
                    Ok(Err(f)) => return failures.record(&f),
                    Err(_) => {
                        let f = Failure::new("agent_register", "registration took too long");
                        return failures.record(&f);
                    }
                };
                let _ = registered_tx.send(()).await;
                serve(&mut socket, &plan.agent_id, stopping, &failures).await;
            });
        }
        drop(registered_tx);
        let mut count = 0;
        while count < planned && registered.recv().await.is_some() {
            count += 1;
        }
        if count < planned {
            return Err(Failure::new(
                "agent_register",
                format!("only {count} of {planned} agents registered"),
            ));
        }
        Ok(Fleet { stop, tasks })
    }

    /// Closes every agent's socket and waits for the agents to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Connects an agent and has its registration accepted.
pub async fn register(addr: SocketAddr, plan: &AgentPlan) -> Result<Ws, Failure> {
    let mut socket = ws::connect(addr, "/agent/").await?;
    let registration = json!({"agent_id": plan.agent_id, "resources": plan.resources});
    ws::send(&mut socket, registration.to_string()).await?;
    let reply = ws::next_order(&mut socket)
        .await?
        .ok_or_else(|| Failure::new("ws_closed", "the server closed the socket early"))?;
    let ids = match &reply {
        Envelope::Ok(ServerMessage::Registered { inventory_ids }) => inventory_ids.len(),
        _ => 0,
    };
    if ids != plan.resources.len() {
        return Err(Failure::new(
            "agent_register",
            format!("registration refused: {reply:?}"),
        ));
    }
    Ok(socket)
}

/// Completes once `stop` says true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Answers provisions and releases until told to stop or the server closes the socket.
async fn serve(socket: &mut Ws, agent_id: &str, mut stop: watch::Receiver<bool>, failures: &Tally) {
    loop {
        let message = tokio::select! {
            () = stopped(&mut stop) => return ws::close(socket).await,
            message = ws::next_order(socket) => message,
        };
        let stopping = *stop.borrow();
        let answer = match message {
            Ok(Some(envelope)) => answer(&envelope, agent_id),
            Ok(None) if stopping => return,
            Ok(None) => Err(Failure::new("agent_closed", "the server closed an agent")),
            Err(_) if stopping => return,
            Err(f) => Err(f),
        };
        let result = match answer {
            Ok(text) => ws::send(socket, text).await,
            Err(f) => Err(f),
        };
        if let Err(f) = result {
            if !*stop.borrow() {
                failures.record(&f);
            }
            return;
        }
    }
}

/// The answer to a provision or release.
pub fn answer(message: &Envelope<ServerMessage>, agent_id: &str) -> Result<String, Failure> {
    let answer = match message {
        Envelope::Ok(ServerMessage::Provision(order)) => AgentMessage::Provisioned {
            allocation_id: order.allocation_id,
            result: ProvisionResult::Connection(Connection {
                host: "127.0.0.1".into(),
                username: order.username.clone(),
                password: Some("not-a-secret".into()),
                port: None,
            }),
        },
        Envelope::Ok(ServerMessage::Release(order)) => AgentMessage::Released {
            allocation_id: order.allocation_id,
        },
        other => {
            return Err(Failure::new(
                "agent_message",
                format!("agent {agent_id} got {other:?}"),
            ))
        }
    };
    Ok(answer.to_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_request_and_resources_vary() {
        for k in 0..KIND_COUNT {
            let r: Value = serde_json::from_str(&request(k, "u", 5)).unwrap();
            assert_eq!(r["requirements"]["username"], "u");
        }
        let a = resource(0, 0, Provisioning::Static);
        let b = resource(9, 7, Provisioning::RoundTrip);
        assert_eq!(a["labels"], json!(["nvidia", "cuda", "zone-0"]));
        assert_eq!(b["labels"], json!(["nvidia", "cuda", "zone-1"]));
        assert_eq!(b["cpu_count"], 24);
        assert!(a.get("connection").is_some() && b.get("connection").is_none());
        let plans = catalog(1, 3, 10, Provisioning::Static);
        let sizes: Vec<usize> = plans.iter().map(|p| p.resources.len()).collect();
        assert_eq!(sizes, [4, 3, 3]);
    }
}

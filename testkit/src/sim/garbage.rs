//! Inputs the engine must refuse, or take without harm: unknown ids, wrong agents, broken
//! limits, and valid but absurd numbers.

use super::{overlong, Garbage, Sim};
use allocate_core::{
    Connection, Error, Gpu, GpuRequirement, ProvisionResult, Requirements, ResourceSpec, Timestamp,
};
use uuid::Uuid;

impl Sim {
    /// Sends one piece of garbage; asserts it is refused unless it is merely absurd.
    pub(super) fn garbage(&mut self, g: &Garbage, t: Timestamp) -> Result<(), Error> {
        let got = match g {
            Garbage::UnknownAllocation { input } => {
                let id = Uuid::from_u128(0xDEAD_0000 + u128::from(*input));
                let agent = self.agents[0].id;
                match input % 5 {
                    0 => self.engine.release(t, id),
                    1 => self.engine.client_gone(t, id),
                    2 => self.engine.set_expires(t, id, t.as_secs() + 60).map(drop),
                    3 => self
                        .engine
                        .provisioned(t, agent, id, ProvisionResult::Failed("?".into())),
                    _ => self.engine.release_acknowledged(t, agent, id),
                }
            }
            Garbage::WrongAgent { pick, ack } => {
                let list = if *ack {
                    &self.releases
                } else {
                    &self.provisions
                };
                let Some((agent, id)) = Self::pick(list, *pick) else {
                    return Ok(());
                };
                // Neither the agent asked, nor one holding it now (it may have moved), nor one
                // owing a release of it.
                let ids: Vec<Uuid> = self.agents.iter().map(|a| a.id).collect();
                let Some(other) = ids
                    .into_iter()
                    .find(|&a| a != agent && !self.holds_on(id, a) && !self.owes_release(id, a))
                else {
                    return Ok(());
                };
                if *ack {
                    self.engine.release_acknowledged(t, other, id)
                } else {
                    let result = ProvisionResult::Failed("not mine".into());
                    self.engine.provisioned(t, other, id, result)
                }
            }
            Garbage::OversizedConnection { pick } => {
                let Some((agent, id)) = Self::pick(&self.provisions, *pick) else {
                    return Ok(());
                };
                let connection = Connection {
                    host: overlong(),
                    username: "lab".into(),
                    password: Some("pw".into()),
                    port: None,
                };
                self.engine
                    .provisioned(t, agent, id, ProvisionResult::Connection(connection))
            }
            Garbage::BadRequest { rule } => {
                let mut r = Requirements::for_user("u");
                match rule % 8 {
                    0 => r.username = String::new(),
                    1 => r.username = "   ".into(),
                    2 => r.allocation_timeout_seconds = u64::MAX,
                    3 => r.expires = Some(0),
                    4 => r.tags = vec![String::new()],
                    5 => r.tags = (0..65).map(|i| format!("t{i}")).collect(),
                    6 => {
                        r.gpu = Some(GpuRequirement {
                            label: None,
                            min_memory_gb: 0,
                            count: if rule % 16 < 8 { 0 } else { u32::MAX },
                        })
                    }
                    _ => r.kind = Some(overlong()),
                }
                self.engine.request(t, r).map(drop)
            }
            Garbage::AbsurdRequest { rule } => {
                let mut r = Requirements::for_user("absurd");
                r.allocation_timeout_seconds = 1;
                match rule % 3 {
                    0 => r.min_cpu_count = Some(u64::MAX),
                    1 => {
                        r.gpu = Some(GpuRequirement {
                            label: Some("RTX".into()),
                            min_memory_gb: u64::MAX,
                            count: 64,
                        })
                    }
                    _ => r.min_memory_gb = Some(u64::MAX),
                }
                let got = self.engine.request(t, r);
                if let Ok(id) = got {
                    self.requests.push(id);
                }
                return got.map(drop);
            }
            Garbage::BadRegistration { agent, rule } => {
                let a = self.agent(*agent);
                let mut list = self.agents[a].resources.clone();
                if list.is_empty() {
                    list.push(ResourceSpec {
                        inventory_id: None,
                        labels: vec!["x".into()],
                        cpu_count: 1,
                        memory_gb: 1,
                        gpu: vec![],
                        kind: "VM".into(),
                        connection: None,
                    });
                }
                let others: Vec<Uuid> = self
                    .engine
                    .inventory()
                    .filter(|r| r.agent_id != self.agents[a].id)
                    .map(|r| r.inventory_id)
                    .collect();
                match rule % 6 {
                    0 => list[0].labels.push(String::new()),
                    1 => list[0].labels = (0..65).map(|i| format!("l{i}")).collect(),
                    2 => list[0].kind = overlong(),
                    3 => {
                        list[0].inventory_id = Some(Uuid::from_u128(0xD0B1E));
                        list.push(list[0].clone());
                    }
                    4 => match others.first() {
                        Some(&theirs) => list[0].inventory_id = Some(theirs),
                        None => {
                            list[0].gpu = vec![
                                Gpu {
                                    label: "g".into(),
                                    memory_gb: 1
                                };
                                65
                            ]
                        }
                    },
                    _ => {
                        let connection = Connection {
                            host: "h".into(),
                            username: "u".into(),
                            password: Some(overlong()),
                            port: None,
                        };
                        list[0].connection = Some(connection.into());
                    }
                }
                self.register(a, list, t)
            }
            Garbage::AbsurdRegistration { agent } => {
                let huge = ResourceSpec {
                    inventory_id: None,
                    labels: vec!["nvidia".into(), "huge".into()],
                    cpu_count: u64::MAX,
                    memory_gb: u64::MAX,
                    gpu: vec![
                        Gpu {
                            label: "NVIDIA GeForce RTX 4090".into(),
                            memory_gb: u64::MAX,
                        };
                        2
                    ],
                    kind: "VM".into(),
                    connection: None,
                };
                let mut list = self.agents[self.agent(*agent)].resources.clone();
                list.push(huge);
                return self.register(*agent, list, t);
            }
            Garbage::UnknownAgent => self.engine.disconnect_agent(t, Uuid::from_u128(0xBAD)),
            Garbage::BadMaintenance { pick, long_reason } => {
                let ids: Vec<Uuid> = self.engine.inventory().map(|r| r.inventory_id).collect();
                match (Self::pick(&ids, *pick), long_reason) {
                    (Some(id), true) => self.engine.set_maintenance(t, id, Some(overlong())),
                    _ => self.engine.set_maintenance(t, Uuid::from_u128(0xBAD), None),
                }
            }
            Garbage::WildExpires { pick, which } => {
                let Some(id) = Self::pick(&self.requests, *pick) else {
                    return Ok(());
                };
                let value = match which % 3 {
                    0 => 0,
                    1 => u64::MAX,
                    _ => t.as_secs(),
                };
                let got = self.engine.set_expires(t, id, value).map(drop);
                if value != u64::MAX {
                    assert!(got.is_err(), "expires {value} is not in the future");
                }
                return got;
            }
        };
        assert!(got.is_err(), "garbage {g:?} is refused");
        got
    }
}

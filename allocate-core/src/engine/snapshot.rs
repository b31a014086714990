//! The whole state as plain data, and an engine rebuilt from it.

use super::{Allocation, Engine, Timer};
use crate::config::Config;
use crate::criteria::Criteria;
use crate::error::{Error, Result};
use crate::ids::IdSource;
use crate::model::{Connection, HeldResource, Requirements, ResourceSpec};
use crate::quota::Quotas;
use crate::stored::{self, StoredError, SCHEMA};
use crate::time::Timestamp;
use crate::usage::Usage;
use crate::view::AllocationState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// Everything the engine knows, in a canonical order: equal states give equal snapshots.
///
/// Take it after draining [`Engine::poll_output`]: outputs not yet drained are not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The version of its format ([`SCHEMA`] when taken; 1 when read from before
    /// versions were written).
    #[serde(default = "crate::stored::unversioned")]
    pub schema: u32,
    /// The settings.
    pub config: Config,
    /// The latest time the engine was given.
    pub now: Timestamp,
    /// The last arrival/registration order number handed out.
    pub next_seq: u64,
    /// Agents by id, each with its resources in its registration order.
    pub agents: Vec<AgentSnapshot>,
    /// Live allocations by arrival, then remembered ended ones, oldest end first.
    pub allocations: Vec<AllocationSnapshot>,
    /// The usage of ended allocations within the retention period, oldest end first (from
    /// version 2; none before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<Usage>,
    /// The quotas in force (absent when none, and in snapshots from before quotas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<crate::quota::Policy>,
}

/// An agent and its resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSnapshot {
    /// The agent.
    pub agent_id: Uuid,
    /// Whether its socket is open.
    pub online: bool,
    /// Its resources.
    pub resources: Vec<ResourceSnapshot>,
}

/// A resource and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSnapshot {
    /// What was registered, with its `inventory_id`.
    pub spec: ResourceSpec,
    /// Registration order.
    pub seq: u64,
    /// The allocation holding it.
    pub occupant: Option<Uuid>,
    /// Waiting for the agent to acknowledge a release.
    pub releasing: bool,
    /// That release follows an abandoned provision of `occupant`, which did not end
    /// (absent in snapshots written before it was kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    /// When that wait gives up.
    pub release_deadline: Option<Timestamp>,
    /// Why it is in error.
    pub error: Option<String>,
    /// Why it is in maintenance.
    pub maintenance: Option<String>,
    /// Left its agent's list while held.
    pub retiring: bool,
}

/// An allocation and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationSnapshot {
    /// Its id.
    pub allocation_id: Uuid,
    /// What was asked.
    pub requirements: Requirements,
    /// Arrival order.
    pub seq: u64,
    /// When it was asked.
    pub created: Timestamp,
    /// The effective lease end.
    pub expires: Timestamp,
    /// The lease length counted from `ready`, while not ready yet (absent in snapshots written
    /// before leases could count from `ready`: those restore with their absolute `expires`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_secs: Option<u64>,
    /// When waiting gives up.
    pub wait_until: Timestamp,
    /// Where it stands.
    pub state: AllocationState,
    /// The resource it holds or held.
    pub inventory_id: Option<Uuid>,
    /// Its connection details once ready (for several resources, once known).
    pub connection: Option<Arc<Connection>>,
    /// When it became ready (from version 2; before, a ready allocation's usage counts from
    /// its creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// The other resources of a request for several (`count`); absent for one (and in
    /// snapshots of format version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<HeldResource>,
    /// Its pending deadline.
    pub deadline: Option<Timestamp>,
    /// The queue position it was last told, while queued.
    pub position: Option<u32>,
}

fn corrupt(what: String) -> Error {
    Error::invalid(format!("snapshot is inconsistent: {what}"))
}

/// Resources and allocations draw their order numbers from one counter: each is unique, and
/// none is beyond it (or a later one would be given twice, and the inventory index would lose
/// a resource).
fn check_seqs(snapshot: &Snapshot) -> Result<()> {
    let resources = snapshot.agents.iter().flat_map(|a| &a.resources);
    let seqs = resources
        .map(|r| r.seq)
        .chain(snapshot.allocations.iter().map(|a| a.seq));
    let mut seen = BTreeSet::new();
    for seq in seqs {
        if seq > snapshot.next_seq {
            return Err(corrupt(format!(
                "seq {seq} is beyond next_seq {}",
                snapshot.next_seq
            )));
        }
        if !seen.insert(seq) {
            return Err(corrupt(format!("seq {seq} appears twice")));
        }
    }
    Ok(())
}

impl Engine {
    /// The whole state as plain data.
    pub fn snapshot(&self) -> Snapshot {
        let agents = self
            .inventory
            .agent_ids()
            .into_iter()
            .map(|agent_id| {
                let agent = self
                    .inventory
                    .agent(&agent_id)
                    .expect("listed agent exists");
                let resources = agent
                    .slots
                    .iter()
                    .map(|&s| {
                        let r = self.inventory.get(s);
                        ResourceSnapshot {
                            spec: ResourceSpec::clone(&r.spec),
                            seq: r.seq,
                            occupant: r.occupant,
                            releasing: r.releasing,
                            abandoned: r.abandoned,
                            release_deadline: r.release_deadline,
                            error: r.error.as_deref().map(str::to_owned),
                            maintenance: r.maintenance.as_deref().map(str::to_owned),
                            retiring: r.retiring,
                        }
                    })
                    .collect();
                AgentSnapshot {
                    agent_id,
                    online: agent.online,
                    resources,
                }
            })
            .collect();
        let allocations = self
            .remembered()
            .map(|a| AllocationSnapshot {
                allocation_id: a.id,
                requirements: a.requirements.clone(),
                seq: a.seq,
                created: a.created,
                expires: a.expires,
                lease_secs: a.lease_secs,
                wait_until: a.wait_until,
                state: a.state,
                inventory_id: a.inventory_id,
                connection: a.connection.clone(),
                ready_at: a.ready_at,
                others: a.others.clone(),
                deadline: a.deadline,
                position: self
                    .queue
                    .position_sent(a.seq)
                    .filter(|_| a.state == AllocationState::Queued),
            })
            .collect();
        Snapshot {
            schema: SCHEMA,
            config: self.config.clone(),
            now: self.now,
            next_seq: self.next_seq,
            agents,
            allocations,
            usage: self.usage.to_usage(),
            quotas: self.quotas().cloned(),
        }
    }

    /// An engine in the state `snapshot` describes, drawing new ids from `ids`.
    pub fn restore(snapshot: &Snapshot, ids: Box<dyn IdSource>) -> Result<Engine> {
        let mut engine = Engine::new(snapshot.config.clone(), ids);
        engine.now = snapshot.now;
        engine.next_seq = snapshot.next_seq;
        for agent in &snapshot.agents {
            engine.restore_agent(agent)?;
        }
        for a in &snapshot.allocations {
            engine.restore_allocation(a)?;
        }
        engine.usage = super::usage::UsageLog::restore(&snapshot.usage, &engine.inventory);
        engine.quotas = snapshot.quotas.clone().map(|p| Box::new(Quotas::new(p)));
        engine.count_holdings();
        check_seqs(snapshot)?;
        for agent in &snapshot.agents {
            for r in &agent.resources {
                engine.check_occupant(r)?;
            }
        }
        // Derived, as the engine that took the snapshot had it after its last input.
        engine.front = engine.front();
        Ok(engine)
    }

    fn restore_agent(&mut self, agent: &AgentSnapshot) -> Result<()> {
        if self.inventory.agent(&agent.agent_id).is_some() {
            return Err(corrupt(format!("agent {} appears twice", agent.agent_id)));
        }
        let mut slots = Vec::with_capacity(agent.resources.len());
        for r in &agent.resources {
            let id = r
                .spec
                .inventory_id
                .ok_or_else(|| corrupt("a resource has no inventory_id".into()))?;
            if self.inventory.slot_of(&id).is_some() {
                return Err(corrupt(format!("resource {id} appears twice")));
            }
            let slot = self
                .inventory
                .add(id, agent.agent_id, r.seq, r.spec.clone());
            let res = self.inventory.get_mut(slot);
            res.online = agent.online;
            res.occupant = r.occupant;
            res.releasing = r.releasing;
            res.abandoned = r.abandoned;
            res.release_deadline = r.release_deadline;
            res.error = r.error.as_deref().map(Box::from);
            res.maintenance = r.maintenance.as_deref().map(Box::from);
            res.retiring = r.retiring;
            if let Some(t) = r.release_deadline {
                self.timers.insert((t, Timer::Release(id)));
            }
            match (r.releasing, r.occupant) {
                (true, Some(occupant)) if r.abandoned => {
                    self.abandoned
                        .entry(occupant)
                        .or_default()
                        .push(agent.agent_id);
                }
                (true, Some(occupant)) => {
                    self.releases.entry(occupant).or_default().push(id);
                }
                _ => {}
            }
            self.inventory.settle(slot);
            slots.push(slot);
        }
        self.inventory
            .set_agent(agent.agent_id, agent.online, slots);
        Ok(())
    }

    fn restore_allocation(&mut self, s: &AllocationSnapshot) -> Result<()> {
        let id = s.allocation_id;
        let criteria = Criteria::of(&s.requirements);
        if self.allocations.contains_key(&id) {
            return Err(corrupt(format!("allocation {id} appears twice")));
        }
        let holds = matches!(
            s.state,
            AllocationState::Provisioning | AllocationState::Ready
        );
        if s.others.len() >= s.requirements.count as usize {
            return Err(corrupt(format!(
                "allocation {id} holds more resources than it asked for"
            )));
        }
        if holds {
            let first = s
                .inventory_id
                .ok_or_else(|| corrupt(format!("allocation {id} holds an unknown resource")))?;
            let others = s.others.iter().map(|h| h.inventory_id);
            for inventory_id in std::iter::once(first).chain(others) {
                self.restore_holding(id, inventory_id, s)?;
            }
        }
        match s.state {
            AllocationState::Queued => {
                self.queue
                    .push(s.seq, id, &criteria, s.position.unwrap_or(0))
            }
            state if state.is_terminal() => self.ended.push_back(id),
            _ => {}
        }
        if let Some(t) = s.deadline {
            self.timers.insert((t, Timer::Allocation(id)));
        }
        self.allocations.insert(
            id,
            Box::new(Allocation {
                id,
                requirements: s.requirements.clone(),
                criteria,
                seq: s.seq,
                created: s.created,
                expires: s.expires,
                lease_secs: s.lease_secs,
                wait_until: s.wait_until,
                state: s.state,
                inventory_id: s.inventory_id,
                connection: s.connection.clone(),
                ready_at: s.ready_at,
                others: s.others.clone(),
                deadline: s.deadline,
            }),
        );
        Ok(())
    }

    /// Checks that `inventory_id`, held by allocation `id`, names it; a ready one's lease is
    /// restored.
    fn restore_holding(
        &mut self,
        id: Uuid,
        inventory_id: Uuid,
        s: &AllocationSnapshot,
    ) -> Result<()> {
        let slot = self
            .inventory
            .slot_of(&inventory_id)
            .ok_or_else(|| corrupt(format!("allocation {id} holds an unknown resource")))?;
        if self.inventory.get(slot).occupant != Some(id) {
            return Err(corrupt(format!(
                "allocation {id} holds a resource that does not name it"
            )));
        }
        if s.state == AllocationState::Ready {
            self.inventory.set_lease(slot, Some(s.expires));
        }
        Ok(())
    }

    fn check_occupant(&self, r: &ResourceSnapshot) -> Result<()> {
        let Some(occupant) = r.occupant else {
            return Ok(());
        };
        let known = self.allocations.get(&occupant);
        let consistent = if r.abandoned {
            // Its provision was abandoned; it may wait, hold another resource, or be over.
            r.releasing
        } else if r.releasing {
            known.is_none_or(|a| a.state.is_terminal())
        } else {
            known.is_some_and(|a| {
                matches!(
                    a.state,
                    AllocationState::Provisioning | AllocationState::Ready
                )
            })
        };
        if consistent {
            Ok(())
        } else {
            Err(corrupt(format!(
                "a resource names allocation {occupant} in the wrong state"
            )))
        }
    }
}

impl Snapshot {
    /// The stored form: JSON with the format version.
    pub fn to_stored(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// Reads a stored snapshot of any version up to [`SCHEMA`].
    pub fn from_stored(bytes: &[u8]) -> Result<Snapshot, StoredError> {
        let snapshot: Snapshot = stored::read(bytes, "snapshot")?;
        if snapshot.schema > SCHEMA {
            return Err(StoredError::Newer {
                found: snapshot.schema,
            });
        }
        Ok(Snapshot {
            schema: SCHEMA,
            ..snapshot
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SeededIds;
    use serde_json::json;

    /// Two agents with one resource each, and one allocation waiting.
    fn snapshot() -> Snapshot {
        let mut e = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
        let now = Timestamp::from_secs(1_700_000_000);
        for agent in 1..=2 {
            let spec = ResourceSpec {
                inventory_id: None,
                labels: vec![],
                cpu_count: agent,
                memory_gb: 1,
                gpu: vec![],
                kind: "VM".into(),
                connection: None,
            };
            e.register_agent(now, Uuid::from_u128(agent.into()), vec![spec])
                .unwrap();
        }
        let mut wants = Requirements::for_user("u");
        wants.min_cpu_count = Some(3);
        e.request(now, wants).unwrap();
        e.snapshot()
    }

    fn refusal(snapshot: &Snapshot) -> String {
        Engine::restore(snapshot, Box::new(SeededIds::new(0)))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_snapshot_restores() {
        let snap = snapshot();
        let e = Engine::restore(&snap, Box::new(SeededIds::new(0))).unwrap();
        assert_eq!(e.snapshot(), snap);
    }

    // Found by the fuzz target snapshot_restore: the second entry replaced the first agent's
    // list, and its resources were left in the inventory, in no agent's list.
    #[test]
    fn an_agent_listed_twice_is_refused() {
        let mut snap = snapshot();
        snap.agents[1].agent_id = snap.agents[0].agent_id;
        let err = refusal(&snap);
        assert!(err.ends_with("appears twice"), "{err}");
        assert!(err.contains(&format!("agent {}", snap.agents[0].agent_id)));
    }

    // Found by the fuzz target snapshot_restore: two resources with one registration order
    // restored, and the inventory listing showed only one of them.
    #[test]
    fn order_numbers_are_unique_and_within_next_seq() {
        let mut snap = snapshot();
        snap.agents[1].resources[0].seq = snap.agents[0].resources[0].seq;
        let err = refusal(&snap);
        assert!(err.ends_with("appears twice"), "{err}");
        let mut snap = snapshot();
        snap.allocations[0].seq = snap.agents[0].resources[0].seq;
        assert!(refusal(&snap).ends_with("appears twice"));
        let mut snap = snapshot();
        snap.next_seq -= 1;
        assert!(refusal(&snap).contains("is beyond next_seq"));
    }

    #[test]
    fn snapshots_carry_their_version_and_read_back() {
        let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(3)));
        let now = Timestamp::from_secs(1_700_000_000);
        engine.request(now, Requirements::for_user("u")).unwrap();
        let snapshot = engine.snapshot();
        assert_eq!(snapshot.schema, SCHEMA);
        let stored = snapshot.to_stored().unwrap();
        assert_eq!(Snapshot::from_stored(stored.as_bytes()).unwrap(), snapshot);
        let mut value: serde_json::Value = serde_json::from_str(&stored).unwrap();
        value.as_object_mut().unwrap().remove("schema");
        let unversioned = Snapshot::from_stored(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(
            unversioned, snapshot,
            "read as version 1, held as this build's"
        );
        value["schema"] = json!(SCHEMA + 1);
        value["quotas"] = json!({});
        let err = Snapshot::from_stored(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, StoredError::Newer { .. }), "{err}");
    }
}

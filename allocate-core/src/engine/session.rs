//! Agent sessions: the rules of an agent's connection, decided here so that every shell
//! (HTTP, C, Python) applies the same ones. A connection ([`SessionId`], numbered by the
//! shell) starts with a registration, names the same `agent_id` in every later
//! registration, and a newer connection of that agent takes over from it: the older one's
//! messages are refused from then on and its closing changes nothing, and the orders in
//! flight on the agent's resources (unanswered provisions, unacknowledged releases) are sent
//! again, to the newer one, so a network blip costs nothing. Answers count whatever
//! connection of the agent's carried the order.
//!
//! Sessions are connections, not lab state: they are neither recorded nor snapshotted
//! (after a restart every agent reconnects).

use super::Engine;
use crate::error::{Result, SessionError};
use crate::model::ResourceSpec;
use crate::record::ProvisionResult;
use crate::time::Timestamp;
use uuid::Uuid;

/// One agent connection, as the shell numbers it; unique among the connections it has open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What a registration on a connection did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The agent the connection speaks for.
    pub agent_id: Uuid,
    /// The ids of its resources, in the order it listed them.
    pub inventory_ids: Vec<Uuid>,
    /// The agent's earlier connection this one took over from, if any: the shell closes it.
    pub replaced: Option<SessionId>,
}

impl Engine {
    /// A registration on `session`: the connection's first message, or a later one that
    /// names the same `agent_id` and replaces the agent's resource list. A first
    /// registration takes over from the agent's earlier connection, if any.
    pub fn session_register(
        &mut self,
        now: Timestamp,
        session: SessionId,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
    ) -> Result<Registered> {
        if self.sessions.contains_key(&session) {
            let registered = self.session_agent(session)?;
            if registered != agent_id {
                return Err(SessionError::OtherAgent {
                    named: agent_id,
                    registered,
                }
                .into());
            }
        }
        let inventory_ids = self.register_agent(now, agent_id, resources)?;
        let replaced = match self.sessions.insert(session, agent_id) {
            Some(_) => None, // a later registration: the connection already speaks for it
            None => self
                .agent_sessions
                .insert(agent_id, session)
                .filter(|&old| old != session),
        };
        if replaced.is_some() {
            self.resend_orders(agent_id);
        }
        Ok(Registered {
            agent_id,
            inventory_ids,
            replaced,
        })
    }

    /// An agent's answer to a provision on `session`.
    pub fn session_provisioned(
        &mut self,
        now: Timestamp,
        session: SessionId,
        allocation_id: Uuid,
        result: ProvisionResult,
    ) -> Result<()> {
        let agent_id = self.session_agent(session)?;
        self.provisioned(now, agent_id, allocation_id, result)
    }

    /// An agent's acknowledgement of a release on `session`.
    pub fn session_released(
        &mut self,
        now: Timestamp,
        session: SessionId,
        allocation_id: Uuid,
    ) -> Result<()> {
        let agent_id = self.session_agent(session)?;
        self.release_acknowledged(now, agent_id, allocation_id)
    }

    /// `session` closed. When it still spoke for its agent, the agent is disconnected (its
    /// resources go offline) and its id is returned; a replaced or unregistered connection
    /// changes nothing.
    pub fn session_closed(&mut self, now: Timestamp, session: SessionId) -> Result<Option<Uuid>> {
        let Some(agent_id) = self.sessions.remove(&session) else {
            return Ok(None);
        };
        if self.agent_sessions.get(&agent_id) != Some(&session) {
            return Ok(None);
        }
        self.agent_sessions.remove(&agent_id);
        self.disconnect_agent(now, agent_id)?;
        Ok(Some(agent_id))
    }

    /// The agent `session` speaks for, if it registered and was not replaced since.
    fn session_agent(&self, session: SessionId) -> Result<Uuid, SessionError> {
        let agent_id = *self
            .sessions
            .get(&session)
            .ok_or(SessionError::NotRegistered)?;
        if self.agent_sessions.get(&agent_id) != Some(&session) {
            return Err(SessionError::Replaced { agent_id });
        }
        Ok(agent_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SeededIds;
    use crate::model::test_spec;
    use crate::{Config, Error, ErrorCode, Output, Requirements, ResourceState};

    const AGENT: Uuid = Uuid::from_u128(1);

    fn now() -> Timestamp {
        Timestamp::from_secs(1_700_000_000)
    }

    fn engine() -> Engine {
        Engine::new(Config::default(), Box::new(SeededIds::new(7)))
    }

    fn machine() -> Vec<ResourceSpec> {
        vec![test_spec(&["x"], 1, 1, &[], "VM")]
    }

    fn state_of_only_resource(engine: &Engine) -> ResourceState {
        engine.inventory().next().expect("one resource").state
    }

    #[test]
    fn the_first_message_must_be_a_registration() {
        let mut engine = engine();
        let s = SessionId(1);
        let id = Uuid::from_u128(9);
        let err = engine.session_released(now(), s, id).unwrap_err();
        assert_eq!(err, Error::Session(SessionError::NotRegistered));
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(
            err.to_string(),
            "the first message must be a registration: {\"agent_id\", \"resources\"}"
        );
        let failed = ProvisionResult::Failed("no".into());
        assert!(matches!(
            engine.session_provisioned(now(), s, id, failed),
            Err(Error::Session(SessionError::NotRegistered))
        ));
        let registered = engine.session_register(now(), s, AGENT, machine()).unwrap();
        assert_eq!(registered.agent_id, AGENT);
        assert_eq!(registered.inventory_ids.len(), 1);
        assert_eq!(registered.replaced, None);
    }

    #[test]
    fn a_refused_first_registration_opens_no_session() {
        let mut engine = engine();
        let s = SessionId(1);
        let mut bad = machine();
        bad.push(bad[0].clone());
        bad[1].inventory_id = Some(Uuid::from_u128(5));
        bad[0].inventory_id = Some(Uuid::from_u128(5));
        assert!(engine.session_register(now(), s, AGENT, bad).is_err());
        assert_eq!(engine.session_closed(now(), s), Ok(None));
        assert!(matches!(
            engine.session_released(now(), s, Uuid::from_u128(9)),
            Err(Error::Session(SessionError::NotRegistered))
        ));
    }

    #[test]
    fn later_registrations_name_the_same_agent() {
        let mut engine = engine();
        let s = SessionId(1);
        engine.session_register(now(), s, AGENT, machine()).unwrap();
        let other = Uuid::from_u128(2);
        let err = engine
            .session_register(now(), s, other, machine())
            .unwrap_err();
        assert_eq!(
            err,
            Error::Session(SessionError::OtherAgent {
                named: other,
                registered: AGENT
            })
        );
        assert_eq!(err.code(), ErrorCode::InvalidRequest);
        assert_eq!(
            err.to_string(),
            format!("agent_id {other} differs from {AGENT}, which registered on this socket")
        );
        assert_eq!(engine.resource_count(), 1, "the refusal changed nothing");
        let again = engine.session_register(now(), s, AGENT, machine()).unwrap();
        assert_eq!(again.replaced, None);
    }

    #[test]
    fn a_newer_connection_takes_over_and_the_older_one_closing_changes_nothing() {
        let mut engine = engine();
        let (old, new) = (SessionId(1), SessionId(2));
        engine
            .session_register(now(), old, AGENT, machine())
            .unwrap();
        let taken = engine
            .session_register(now(), new, AGENT, machine())
            .unwrap();
        assert_eq!(taken.replaced, Some(old));

        let err = engine
            .session_released(now(), old, Uuid::from_u128(9))
            .unwrap_err();
        assert_eq!(
            err,
            Error::Session(SessionError::Replaced { agent_id: AGENT })
        );
        assert_eq!(err.code(), ErrorCode::Conflict);
        assert!(matches!(
            engine.session_register(now(), old, AGENT, machine()),
            Err(Error::Session(SessionError::Replaced { .. }))
        ));

        assert_eq!(engine.session_closed(now(), old), Ok(None));
        assert_eq!(state_of_only_resource(&engine), ResourceState::Free);
        assert_eq!(engine.session_closed(now(), new), Ok(Some(AGENT)));
        assert_eq!(state_of_only_resource(&engine), ResourceState::Offline);
        assert_eq!(engine.session_closed(now(), new), Ok(None), "closing twice");
    }

    #[test]
    fn a_takeover_resends_the_orders_in_flight_and_answers_count_on_the_new_connection() {
        let mut engine = engine();
        let (old, new) = (SessionId(1), SessionId(2));
        let two = vec![machine()[0].clone(), machine()[0].clone()];
        engine.session_register(now(), old, AGENT, two).unwrap();
        let provisioning = engine.request(now(), Requirements::for_user("p")).unwrap();
        let releasing = engine.request(now(), Requirements::for_user("r")).unwrap();
        let first: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
        let ok = ProvisionResult::Connection(crate::model::Connection {
            host: "h".into(),
            username: "u".into(),
            password: None,
            port: None,
        });
        engine
            .session_provisioned(now(), old, releasing, ok.clone())
            .unwrap();
        engine.release(now(), releasing).unwrap();
        let release: Vec<Output> = std::iter::from_fn(|| engine.poll_output())
            .filter(|o| matches!(o, Output::Release { .. }))
            .collect();
        assert_eq!(release.len(), 1);

        // A blip: the agent's new connection takes over before the old one is seen closing.
        let later = now().add_secs(1);
        let taken = engine
            .session_register(later, new, AGENT, machine())
            .unwrap();
        assert_eq!(taken.replaced, Some(old));
        let resent: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
        let provision = first
            .iter()
            .find(|o| matches!(o, Output::Provision { allocation_id, .. } if *allocation_id == provisioning))
            .expect("the first provision");
        assert_eq!(resent, vec![provision.clone(), release[0].clone()]);

        engine.session_closed(later, old).unwrap();
        engine
            .session_provisioned(later, new, provisioning, ok)
            .unwrap();
        engine.session_released(later, new, releasing).unwrap();
        std::iter::from_fn(|| engine.poll_output()).for_each(drop);
        let state = engine.allocation(&provisioning).unwrap().state;
        assert_eq!(state, crate::AllocationState::Ready);
        let states: Vec<ResourceState> = engine.inventory().map(|e| e.state).collect();
        assert!(!states.contains(&ResourceState::Error), "{states:?}");
        assert_eq!(
            engine
                .session_register(later, SessionId(3), AGENT, machine())
                .unwrap()
                .replaced,
            Some(new)
        );
        let again: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
        assert!(again.is_empty(), "nothing in flight: {again:?}");
    }

    #[test]
    fn answers_on_a_session_reach_the_engine_as_that_agent() {
        let mut engine = engine();
        let s = SessionId(3);
        engine.session_register(now(), s, AGENT, machine()).unwrap();
        let id = engine.request(now(), Requirements::for_user("u")).unwrap();
        while engine.poll_output().is_some() {}
        let failed = ProvisionResult::Failed("disk full".into());
        engine.session_provisioned(now(), s, id, failed).unwrap();
        assert_eq!(state_of_only_resource(&engine), ResourceState::Error);
    }

    #[test]
    fn shutting_down_forgets_every_session() {
        let mut engine = engine();
        let s = SessionId(1);
        engine.session_register(now(), s, AGENT, machine()).unwrap();
        engine.shut_down();
        assert_eq!(engine.session_closed(now(), s), Ok(None));
        assert_eq!(state_of_only_resource(&engine), ResourceState::Free);
    }
}

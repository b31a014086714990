//! Shutting down: which inputs the engine refuses once the server stops, and which clients
//! are told so. The shells only carry the answer.

use super::Engine;
use crate::record::Input;
use crate::view::AllocationState;
use uuid::Uuid;

impl Engine {
    /// The server is stopping: from now on the engine refuses new work with
    /// [`crate::Error::ShuttingDown`] (requests, registrations, releases, lease and
    /// maintenance changes) and forgets every agent connection, so that closing them later
    /// changes nothing. Answers from agents and clients leaving are still taken.
    ///
    /// Returns, in arrival order, the allocations whose clients still wait for `ready`
    /// (`queued` or `provisioning`): each is to be answered `ShuttingDown`. Nothing is
    /// recorded: a restarted engine is not shutting down, and a journal replay settles the
    /// waiting requests (their clients are gone). Calling it again returns them again.
    pub fn shut_down(&mut self) -> Vec<Uuid> {
        self.shutting_down = true;
        self.sessions.clear();
        self.agent_sessions.clear();
        let mut waiting: Vec<(u64, Uuid)> = self
            .allocations
            .values()
            .filter(|a| {
                matches!(
                    a.state,
                    AllocationState::Queued | AllocationState::Provisioning
                )
            })
            .map(|a| (a.seq, a.id))
            .collect();
        waiting.sort_unstable();
        waiting.into_iter().map(|(_, id)| id).collect()
    }

    /// Whether [`Engine::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }
}

/// Whether `input` starts new work, which the engine refuses while shutting down; the world
/// reporting what happened (agents answering, sockets closing, time passing) is still taken.
pub(super) fn is_new_work(input: &Input) -> bool {
    match input {
        Input::Register { .. }
        | Input::Request { .. }
        | Input::Release { .. }
        | Input::SetExpires { .. }
        | Input::SetMaintenance { .. } => true,
        Input::Disconnect { .. }
        | Input::Provisioned { .. }
        | Input::ReleaseAcknowledged { .. }
        | Input::ClientGone { .. }
        | Input::SetQuotas { .. }
        | Input::Tick => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::ids::SeededIds;
    use crate::model::test_spec;
    use crate::{AllocationState, Config, Engine, Error, ErrorCode, Requirements, Timestamp};
    use uuid::Uuid;

    #[test]
    fn shutting_down_refuses_new_work_and_names_the_waiting_clients() {
        let now = Timestamp::from_secs(1_700_000_000);
        let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
        let agent = Uuid::from_u128(1);
        let spec = test_spec(&["x"], 1, 1, &[], "VM");
        let ids = engine
            .register_agent(now, agent, vec![spec.clone()])
            .unwrap();
        let provisioning = engine.request(now, Requirements::for_user("u")).unwrap();
        let queued = engine.request(now, Requirements::for_user("u")).unwrap();
        assert_eq!(
            engine.allocation(&provisioning).unwrap().state,
            AllocationState::Provisioning
        );

        assert_eq!(engine.shut_down(), vec![provisioning, queued]);
        assert!(engine.is_shutting_down());
        let refused = [
            engine.request(now, Requirements::for_user("u")).map(drop),
            engine.register_agent(now, agent, vec![spec]).map(drop),
            engine.release(now, queued),
            engine.set_expires(now, queued, 1_800_000_000).map(drop),
            engine.set_maintenance(now, ids[0], Some("fan".into())),
        ];
        for result in refused {
            let err = result.unwrap_err();
            assert_eq!(err, Error::ShuttingDown);
            assert_eq!(err.code(), ErrorCode::ShuttingDown);
            assert_eq!(err.to_string(), "the server is shutting down");
        }
        // What the world reports is still taken.
        engine.client_gone(now, queued).unwrap();
        assert_eq!(
            engine.allocation(&queued).unwrap().state,
            AllocationState::Cancelled
        );
        assert_eq!(engine.shut_down(), vec![provisioning]);
    }
}

//! The driver's own rules: slow sockets are dropped, never waited for; a newer agent socket
//! takes over; shutdown closes every socket and the engine refuses new work.

use super::*;
use crate::auth::tokens::Role;
use crate::clock::RandomIds;
use crate::journal::tests::machine;
use allocate_core::{AllocationState, Config, ErrorCode, ResourceState, SessionError};
use futures_util::FutureExt;

fn in_memory() -> Driver {
    Driver::new(Engine::new(Config::default(), Box::new(RandomIds)), None)
}

/// Registers agent `agent_id` on a new socket; returns the socket's outbox.
fn connect(driver: &mut Driver, agent_id: u128, host: Option<&str>) -> Outbox {
    let (agent, outbox) = Peer::new(8);
    let message = register(Uuid::from_u128(agent_id), host);
    driver
        .agent_message(agent.id(), Some(agent), message)
        .unwrap();
    outbox
}

fn register(agent_id: Uuid, host: Option<&str>) -> AgentMessage {
    AgentMessage::Register {
        agent_id,
        resources: vec![machine(host)],
    }
}

#[test]
fn a_client_that_falls_behind_is_dropped_and_counts_as_gone() {
    let mut driver = in_memory();
    let (peer, mut outbox) = Peer::new(1);
    let mut wants = Requirements::for_user("u");
    wants.release_on_disconnect = true;
    let id = driver.request(peer, wants).unwrap();
    driver.route(); // `queued` fills the queue of one
    assert!(driver.sockets.has_client(&id));
    let _agent_outbox = connect(&mut driver, 1, Some("h"));
    driver.route(); // `ready` does not fit: the client is dropped, never waited for
    assert!(outbox.killed().now_or_never().is_some());
    assert!(!driver.sockets.has_client(&id));
    let info = driver.engine.allocation(&id).unwrap();
    assert_eq!(
        info.state,
        AllocationState::Released,
        "release_on_disconnect applied"
    );
    assert!(matches!(outbox.try_next(), Some(Frame::Text(t)) if t.contains("queued")));
}

#[test]
fn an_agent_that_falls_behind_is_dropped_and_goes_offline() {
    let mut driver = in_memory();
    let agent_id = Uuid::from_u128(1);
    let (agent, agent_outbox) = Peer::new(1);
    driver
        .agent_message(agent.id(), Some(agent), register(agent_id, None))
        .unwrap(); // the reply fills it
    let (client, _client_outbox) = Peer::new(8);
    let id = driver.request(client, Requirements::for_user("u")).unwrap();
    driver.route(); // the provision does not fit
    assert!(agent_outbox.killed().now_or_never().is_some());
    assert!(!driver.sockets.has_agent(&agent_id));
    let entry = driver.engine.inventory().next().unwrap();
    assert_eq!(entry.state, ResourceState::Offline);
    let info = driver.engine.allocation(&id).unwrap();
    assert_eq!(info.state, AllocationState::Queued, "back in the queue");
}

#[test]
fn a_newer_agent_socket_replaces_the_older_whose_close_changes_nothing() {
    let mut driver = in_memory();
    let agent_id = Uuid::from_u128(1);
    let (old, mut old_outbox) = Peer::new(8);
    let old_id = old.id();
    driver
        .agent_message(old_id, Some(old), register(agent_id, Some("h")))
        .unwrap();
    let (new, _new_outbox) = Peer::new(8);
    driver
        .agent_message(new.id(), Some(new), register(agent_id, Some("h")))
        .unwrap();
    assert!(matches!(old_outbox.try_next(), Some(Frame::Text(_))));
    assert!(matches!(
        old_outbox.try_next(),
        Some(Frame::Close(CLOSE_NORMAL, _))
    ));
    let late = AgentMessage::Released {
        allocation_id: Uuid::from_u128(9),
    };
    assert_eq!(
        driver.agent_message(old_id, None, late),
        Err(Error::Session(SessionError::Replaced { agent_id }))
    );
    driver.agent_gone(old_id);
    let entry = driver.engine.inventory().next().unwrap();
    assert_eq!(entry.state, ResourceState::Free);
    assert!(driver.sockets.has_agent(&agent_id));
}

#[test]
fn shutdown_answers_waiting_clients_503_and_refuses_new_work() {
    let mut driver = in_memory();
    let _agent_outbox = connect(&mut driver, 1, Some("h"));
    let (holder, mut holder_outbox) = Peer::new(8);
    let held = driver.request(holder, Requirements::for_user("u")).unwrap();
    let (peer, mut outbox) = Peer::new(8);
    let waiting = driver.request(peer, Requirements::for_user("u")).unwrap();
    driver.route();
    driver.shutdown();

    let frames: Vec<Frame> = std::iter::from_fn(|| outbox.try_next()).collect();
    assert!(matches!(&frames[..],
        [Frame::Text(q), Frame::Text(e), Frame::Close(CLOSE_GOING_AWAY, _)]
            if q.contains("queued") && e.contains("shutting_down") && e.contains("503")));
    let frames: Vec<Frame> = std::iter::from_fn(|| holder_outbox.try_next()).collect();
    assert!(matches!(&frames[..],
        [Frame::Text(r), Frame::Close(CLOSE_GOING_AWAY, _)] if r.contains("ready")));

    // Every way to change something gets the engine's answer, DELETE and PATCH included.
    let caller = Caller::Bearer(Role::Admin(None));
    let (late, _) = Peer::new(8);
    let inventory_id = driver.engine.inventory().next().unwrap().inventory_id;
    let refused = [
        driver
            .request(late.clone(), Requirements::for_user("u"))
            .map(drop),
        driver.release(&caller, waiting),
        driver.release(&caller, held),
        driver.set_expires(&caller, held, 4_000_000_000).map(drop),
        driver
            .set_maintenance(inventory_id, Some("fan".into()))
            .map(drop),
        driver
            .agent_message(
                late.id(),
                Some(late),
                register(Uuid::from_u128(2), Some("h")),
            )
            .map(drop),
    ];
    for result in refused {
        let err = result.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ShuttingDown, "{err}");
        assert_eq!(err.to_string(), "the server is shutting down");
    }
}

#[tokio::test]
async fn handles_get_the_shutdown_answer_for_delete_and_patch() {
    let engine = Engine::new(Config::default(), Box::new(RandomIds));
    let (driver, _task) = spawn(engine, None);
    let (peer, _outbox) = Peer::new(8);
    let id = driver
        .request(peer, Requirements::for_user("u"))
        .await
        .unwrap();
    driver.shutdown().await.unwrap();
    let caller = Caller::Anyone;
    let delete = driver.release(caller.clone(), id).await.unwrap_err();
    let patch = driver
        .set_expires(caller, id, 4_000_000_000)
        .await
        .unwrap_err();
    for err in [delete, patch] {
        assert!(
            matches!(err, DriverError::Refused(Error::ShuttingDown)),
            "{err:?}"
        );
    }
    let info = driver.read(move |e| e.allocation(&id)).await.unwrap();
    assert_eq!(info.unwrap().state, AllocationState::Queued, "unchanged");
}

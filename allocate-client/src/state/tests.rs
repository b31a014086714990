//! The state machine alone, fed the messages the server writes.

use super::*;
use allocate_core::AllocationState as InfoState;
use std::sync::Arc;

const ID: Uuid = Uuid::from_u128(7);
const RESOURCE: Uuid = Uuid::from_u128(8);

fn queued(position: u32) -> ClientEvent {
    ClientEvent::Queued {
        allocation_id: ID,
        position,
        matching_resources: 3,
        eta: Some(100),
        explain: None,
        quota: None,
    }
}

fn ready() -> ClientEvent {
    ClientEvent::Ready {
        allocation_id: ID,
        inventory_id: RESOURCE,
        connection: Arc::new(Connection {
            host: "10.0.0.1".into(),
            username: "ci".into(),
            password: Some("pw".into()),
            port: None,
        }),
        expires: 200,
        resources: vec![],
    }
}

/// Applies the event as the socket task does: through its text.
fn receive(
    state: &mut AllocationState,
    envelope: Envelope<ClientEvent>,
) -> Result<ClientEvent, AllocationError> {
    state.receive(ClientEvent::parse(&envelope.to_text()).unwrap())
}

#[test]
fn the_quota_limit_holding_a_request_back_is_kept_from_the_last_queued() {
    let mut s = AllocationState::new();
    s.apply(&queued(2)).unwrap();
    assert_eq!(s.quota(), None);
    let mut held = queued(1);
    if let ClientEvent::Queued { quota, .. } = &mut held {
        *quota = Some(QuotaLimit::Gpus);
    }
    s.apply(&held).unwrap();
    assert_eq!((s.position(), s.quota()), (Some(1), Some(QuotaLimit::Gpus)));
}

#[test]
fn queued_ready_offline_online_expired() {
    let mut s = AllocationState::new();
    assert_eq!((s.phase(), s.allocation_id()), (Phase::Requested, None));
    receive(&mut s, Envelope::Ok(queued(2))).unwrap();
    assert_eq!(s.phase(), Phase::Queued);
    assert_eq!((s.allocation_id(), s.position()), (Some(ID), Some(2)));
    assert_eq!((s.matching_resources(), s.eta()), (Some(3), Some(100)));
    s.apply(&queued(1)).unwrap();
    assert_eq!(s.position(), Some(1));
    s.apply(&ready()).unwrap();
    assert_eq!(s.phase(), Phase::Ready);
    assert_eq!(s.position(), None);
    let lease = s.lease().unwrap();
    assert_eq!((lease.inventory_id, lease.expires), (RESOURCE, 200));
    assert_eq!(lease.connection.host, "10.0.0.1");
    // A late `queued` changes nothing once ready.
    s.apply(&queued(5)).unwrap();
    assert_eq!(s.phase(), Phase::Ready);
    s.apply(&ClientEvent::Offline { allocation_id: ID })
        .unwrap();
    assert_eq!(s.phase(), Phase::Offline);
    assert!(s.phase().is_held());
    s.apply(&ClientEvent::Online { allocation_id: ID }).unwrap();
    assert_eq!(s.phase(), Phase::Ready);
    s.apply(&ClientEvent::Expired { allocation_id: ID })
        .unwrap();
    assert_eq!(s.phase(), Phase::Expired);
    assert!(s.phase().has_ended());
    // The server's close after the final event is expected.
    assert_eq!(
        s.socket_ended(SocketEnd::Closed {
            code: 1000,
            reason: String::new()
        }),
        None
    );
    assert!(!s.socket_open());
    assert_eq!(s.failure(), None);
    // Nothing moves an ended allocation.
    s.apply(&ready()).unwrap();
    assert_eq!(s.phase(), Phase::Expired);
}

#[test]
fn released_during_the_lease_ends_it_and_extension_moves_expires() {
    let mut s = AllocationState::new();
    s.apply(&ready()).unwrap();
    let mut info = AllocationInfo {
        allocation_id: ID,
        inventory_id: Some(RESOURCE),
        inventory_ids: vec![RESOURCE],
        username: "ci".into(),
        state: InfoState::Ready,
        created: 1,
        expires: 500,
        connection: None,
        position: None,
        created_at: allocate_core::Timestamp::default(),
    };
    s.extended(&info);
    assert_eq!(s.lease().unwrap().expires, 500);
    info.allocation_id = Uuid::from_u128(99);
    info.expires = 900;
    s.extended(&info);
    assert_eq!(
        s.lease().unwrap().expires,
        500,
        "another allocation's answer is ignored"
    );
    s.apply(&ClientEvent::Released { allocation_id: ID })
        .unwrap();
    assert_eq!((s.phase(), s.failure()), (Phase::Released, None));
}

#[test]
fn refusals_are_typed_and_408_is_a_timeout() {
    let mut s = AllocationState::new();
    s.apply(&queued(1)).unwrap();
    let timeout = Refusal::new(ErrorCode::AllocationTimeout, "nothing became free");
    let err = receive(&mut s, Envelope::Refused(timeout.clone())).unwrap_err();
    assert_eq!(err, AllocationError::TimedOut(timeout));
    assert_eq!(
        (s.phase(), err.code()),
        (Phase::TimedOut, "allocation_timeout")
    );
    assert_eq!(s.failure(), Some(&err));
    assert_eq!(
        s.socket_ended(SocketEnd::Ended),
        None,
        "the close after a refusal is expected"
    );

    let mut s = AllocationState::new();
    let bad = Refusal::new(ErrorCode::InvalidRequest, "username is required");
    let err = receive(&mut s, Envelope::Refused(bad)).unwrap_err();
    assert!(matches!(&err, AllocationError::Refused(r) if r.status == 400));
    assert_eq!(s.phase(), Phase::Failed);
    assert_eq!(
        err.refusal().map(|r| r.code.as_str()),
        Some("invalid_request")
    );
}

#[test]
fn losing_the_socket_before_ready_fails_and_during_the_lease_keeps_it() {
    let end = SocketEnd::Failed("reset".into());
    let mut s = AllocationState::new();
    s.apply(&queued(1)).unwrap();
    let err = s.socket_ended(end.clone()).unwrap();
    assert_eq!(err, AllocationError::LostBeforeReady(end.clone()));
    assert_eq!(s.phase(), Phase::Failed);
    assert_eq!(s.socket_ended(end.clone()), None, "reported once");

    let mut s = AllocationState::new();
    s.apply(&ready()).unwrap();
    let err = s.socket_ended(end.clone()).unwrap();
    assert_eq!(err, AllocationError::LostDuringLease(end));
    assert_eq!((s.phase(), s.failure()), (Phase::Ready, None));
}

#[test]
fn released_before_ready_is_a_failure() {
    let mut s = AllocationState::new();
    s.apply(&queued(1)).unwrap();
    let err = s
        .apply(&ClientEvent::Released { allocation_id: ID })
        .unwrap_err();
    assert_eq!(err, AllocationError::ReleasedBeforeReady);
    assert_eq!(s.phase(), Phase::Released);
    assert_eq!(s.failure(), Some(&err));
}

//! The HTTP calls and the `/allocate/` socket against a real server.

mod common;

use allocate_client::{
    AgentOptions, AgentSession, AllocationError, ClientEvent, Error, InventoryFilter, Phase,
    Requirements, ResourceState, UsageBy, UsageQuery,
};
use common::{bounded, resource, unix_now, ClientOf, Server};
use uuid::Uuid;

fn requirements(tags: &[&str], timeout_secs: u64) -> Requirements {
    let mut r = Requirements::for_user("ci");
    r.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    r.allocation_timeout_seconds = timeout_secs;
    r
}

#[tokio::test]
async fn allocate_queued_ready_extend_release() {
    let server = Server::start().await;
    let client = server.client();
    let agent = bounded(AgentSession::connect(
        &client,
        Uuid::from_u128(1),
        vec![resource(&["nvidia"], Some("10.0.0.1"))],
        AgentOptions::default(),
    ))
    .await
    .unwrap();
    assert_eq!(agent.inventory_ids().len(), 1);

    let first = bounded(client.allocate(&requirements(&["nvidia"], 30)))
        .await
        .unwrap();
    let lease = bounded(first.wait_ready()).await.unwrap();
    assert_eq!(lease.connection.host, "10.0.0.1");
    assert_eq!(lease.inventory_id, agent.inventory_ids()[0]);
    assert!(matches!(
        bounded(first.next_event()).await.unwrap(),
        Some(ClientEvent::Ready { .. })
    ));

    // The only resource is held: the second request waits.
    let second = bounded(client.allocate(&requirements(&["nvidia"], 30)))
        .await
        .unwrap();
    let Some(ClientEvent::Queued {
        position,
        matching_resources,
        ..
    }) = bounded(second.next_event()).await.unwrap()
    else {
        panic!("not queued")
    };
    assert_eq!((position, matching_resources), (1, 1));
    assert_eq!(second.state().phase(), Phase::Queued);
    assert_eq!(second.state().position(), Some(1));

    // Releasing the first ends it (`released`, then the server's close) and serves the second.
    bounded(first.release()).await.unwrap();
    assert!(matches!(
        bounded(first.next_event()).await.unwrap(),
        Some(ClientEvent::Released { .. })
    ));
    assert!(bounded(first.next_event()).await.unwrap().is_none());
    assert_eq!(first.state().phase(), Phase::Released);

    let lease = bounded(second.wait_ready()).await.unwrap();
    let expires = lease.expires + 600;
    let info = bounded(second.extend(expires)).await.unwrap();
    assert_eq!(info.expires, expires);
    assert_eq!(second.state().lease().unwrap().expires, expires);
    let shown = bounded(client.allocation(lease.allocation_id))
        .await
        .unwrap();
    assert_eq!((shown.expires, shown.state.as_str()), (expires, "ready"));
    let mine = bounded(client.allocations()).await.unwrap();
    assert!(mine.iter().any(|a| a.allocation_id == lease.allocation_id));

    bounded(second.release()).await.unwrap();
    loop {
        match bounded(second.next_event()).await.unwrap() {
            Some(ClientEvent::Released { .. }) => {}
            Some(other) => assert!(matches!(
                other,
                ClientEvent::Queued { .. } | ClientEvent::Ready { .. }
            )),
            None => break,
        }
    }
    assert_eq!(second.state().phase(), Phase::Released);
    let err = bounded(client.release(lease.allocation_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");

    // Both leases were held: `GET /usage` sums them per user and per resource.
    let by_user = bounded(client.usage(&UsageQuery::default())).await.unwrap();
    assert_eq!(by_user.len(), 1);
    assert_eq!((by_user[0].key.as_str(), by_user[0].allocations), ("ci", 2));
    let query = UsageQuery {
        from: Some(unix_now() - 3600),
        to: None,
        by: UsageBy::Resource,
    };
    let by_resource = bounded(client.usage(&query)).await.unwrap();
    assert_eq!(by_resource[0].key, agent.inventory_ids()[0].to_string());
    let query = UsageQuery {
        from: Some(2),
        to: Some(1),
        ..query
    };
    let err = bounded(client.usage(&query)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

#[tokio::test]
async fn timeouts_and_bad_requests_are_typed_refusals() {
    let server = Server::start().await;
    let client = server.client();

    // Nothing is registered: with no wait, 408 at once.
    let request = bounded(client.allocate(&requirements(&["none"], 0)))
        .await
        .unwrap();
    let err = bounded(request.next_event()).await.unwrap_err();
    let Error::Allocation(AllocationError::TimedOut(refusal)) = &err else {
        panic!("not a timeout: {err}")
    };
    assert_eq!((refusal.status, err.code()), (408, "allocation_timeout"));
    assert!(bounded(request.next_event()).await.unwrap().is_none());
    assert_eq!(request.state().phase(), Phase::TimedOut);
    let again = bounded(request.wait_ready()).await.unwrap_err();
    assert_eq!(again.code(), "allocation_timeout");

    // A wait of one second runs out too.
    let request = bounded(client.allocate(&requirements(&["none"], 1)))
        .await
        .unwrap();
    let err = bounded(request.wait_ready()).await.unwrap_err();
    assert_eq!(err.code(), "allocation_timeout");

    // An `expires` in the past is refused, naming the field.
    let mut past = requirements(&[], 0);
    past.expires = Some(unix_now() - 10);
    let request = bounded(client.allocate(&past)).await.unwrap();
    let err = bounded(request.wait_ready()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    assert!(err.to_string().contains("expires"), "{err}");
    assert_eq!(request.state().phase(), Phase::Failed);
}

#[tokio::test]
async fn inventory_filters_resources_and_maintenance() {
    let server = Server::start().await;
    let client = server.client();
    let agent = bounded(AgentSession::connect(
        &client,
        Uuid::from_u128(2),
        vec![
            resource(&["nvidia"], Some("10.0.0.1")),
            resource(&["nvidia", "cuda"], Some("10.0.0.2")),
        ],
        AgentOptions::default(),
    ))
    .await
    .unwrap();
    let [plain, cuda] = agent.inventory_ids() else {
        panic!("two ids")
    };

    let all = bounded(client.inventory(&InventoryFilter::default()))
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let filter = |tags: &[&str], state| InventoryFilter {
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        state,
    };
    let tagged = bounded(client.inventory(&filter(&["nvidia", "cuda"], None)))
        .await
        .unwrap();
    assert_eq!(
        tagged.iter().map(|e| e.inventory_id).collect::<Vec<_>>(),
        [*cuda]
    );

    let held = bounded(client.allocate(&requirements(&["cuda"], 5)))
        .await
        .unwrap();
    bounded(held.wait_ready()).await.unwrap();
    let allocated = bounded(client.inventory(&filter(&[], Some(ResourceState::Allocated))))
        .await
        .unwrap();
    assert_eq!(
        allocated.iter().map(|e| e.inventory_id).collect::<Vec<_>>(),
        [*cuda]
    );
    let free = bounded(client.inventory(&filter(&["nvidia"], Some(ResourceState::Free))))
        .await
        .unwrap();
    assert_eq!(
        free.iter().map(|e| e.inventory_id).collect::<Vec<_>>(),
        [*plain]
    );

    let one = bounded(client.resource(*plain)).await.unwrap();
    assert_eq!(one.labels, ["nvidia"]);
    let missing = bounded(client.resource(Uuid::from_u128(99)))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), "not_found");
    assert_eq!(missing.refusal().map(|r| r.status), Some(404));

    let entry = bounded(client.set_maintenance(*plain, Some("fan broken")))
        .await
        .unwrap();
    assert_eq!(
        (entry.state, entry.reason.as_deref()),
        (ResourceState::Maintenance, Some("fan broken"))
    );
    let entry = bounded(client.set_maintenance(*plain, None)).await.unwrap();
    assert_eq!(entry.state, ResourceState::Free);
    bounded(client.health()).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client =
        allocate_client::Client::new(&format!("http://{addr}"), Default::default()).unwrap();
    let err = bounded(client.inventory(&InventoryFilter::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "connection", "{err}");
    let err = bounded(client.allocate(&requirements(&[], 0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "connection", "{err}");
    // Started in the background, the failure to connect is the allocation's.
    let request = client.start_allocate((&requirements(&[], 0)).into());
    let err = bounded(request.wait_ready()).await.unwrap_err();
    assert_eq!(err.code(), "lost", "{err}");
    assert_eq!(request.state().phase(), Phase::Failed);
    assert!(bounded(request.next_event()).await.is_err());
}

#[tokio::test]
async fn a_request_started_in_the_background_is_served_and_changes_wake() {
    let server = Server::start().await;
    let client = server.client();
    let _agent = bounded(AgentSession::connect(
        &client,
        Uuid::from_u128(3),
        vec![resource(&[], Some("10.0.0.9"))],
        AgentOptions::default(),
    ))
    .await
    .unwrap();
    let mut fields = serde_json::Map::new();
    fields.insert("username".into(), "ci".into());
    let request = client.start_allocate(allocate_client::AllocateRequest::from_json(fields));
    while !request.state().phase().is_held() {
        bounded(request.changed()).await;
    }
    assert_eq!(request.state().lease().unwrap().connection.host, "10.0.0.9");
    // A field the server does not know is refused by the server, naming it.
    let mut fields = serde_json::Map::new();
    fields.insert("username".into(), "ci".into());
    fields.insert("tag".into(), "x".into());
    let request = client.start_allocate(allocate_client::AllocateRequest::from_json(fields));
    let err = bounded(request.wait_ready()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    assert!(err.to_string().contains("tag"), "{err}");
}

#[tokio::test]
async fn following_an_allocation_sees_its_state_then_its_events() {
    let server = Server::start().await;
    let client = server.client();
    let _agent = bounded(AgentSession::connect(
        &client,
        Uuid::from_u128(4),
        vec![resource(&["nvidia"], Some("10.0.0.1"))],
        AgentOptions::default(),
    ))
    .await
    .unwrap();
    let first = bounded(client.allocate(&requirements(&["nvidia"], 30)))
        .await
        .unwrap();
    let lease = bounded(first.wait_ready()).await.unwrap();
    let second = bounded(client.allocate(&requirements(&["nvidia"], 30)))
        .await
        .unwrap();
    let Some(ClientEvent::Queued { allocation_id, .. }) =
        bounded(second.next_event()).await.unwrap()
    else {
        panic!("not queued")
    };

    let ready = bounded(client.follow(lease.allocation_id)).await.unwrap();
    assert_eq!(bounded(ready.wait_ready()).await.unwrap(), lease);
    let queued = bounded(client.follow(allocation_id)).await.unwrap();
    assert!(matches!(
        bounded(queued.next_event()).await.unwrap(),
        Some(ClientEvent::Queued { position: 1, .. })
    ));
    assert_eq!(queued.state().position(), Some(1));

    bounded(first.release()).await.unwrap();
    assert!(matches!(
        bounded(ready.next_event()).await.unwrap(),
        Some(ClientEvent::Ready { .. })
    ));
    assert!(matches!(
        bounded(ready.next_event()).await.unwrap(),
        Some(ClientEvent::Released { .. })
    ));
    assert!(bounded(ready.next_event()).await.unwrap().is_none());
    let served = bounded(queued.wait_ready()).await.unwrap();
    assert_eq!(served, bounded(second.wait_ready()).await.unwrap());
    drop(queued);
    assert_eq!(
        second.state().phase(),
        Phase::Ready,
        "following changes nothing"
    );

    let gone = bounded(client.follow(lease.allocation_id)).await.unwrap();
    let err = bounded(gone.next_event()).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{err}");
}

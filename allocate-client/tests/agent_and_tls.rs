//! The agent session (orders, answers, reconnect) and TLS against a real server.

mod common;

use allocate_client::{
    AgentEvent, AgentOptions, AgentSession, Client, ClientOptions, Error, InventoryFilter, Order,
    ProvisionResult, Requirements, SocketEnd,
};
use common::{bounded, connection, resource, ClientOf, Server};
use std::path::Path;
use std::time::Duration;
use testkit::server::TlsFront;
use testkit::tls::TestCa;
use uuid::Uuid;

const AGENT: Uuid = Uuid::from_u128(0xa);

fn quick() -> AgentOptions {
    AgentOptions {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(200),
        jitter_seed: Some(1),
        ..AgentOptions::default()
    }
}

/// The next order of `session`, skipping other events.
async fn next_order(session: &mut AgentSession) -> Order {
    loop {
        match bounded(session.next_event()).await {
            Some(AgentEvent::Order(order)) => return order,
            Some(other) => eprintln!("agent event: {other:?}"),
            None => panic!("the session ended"),
        }
    }
}

#[tokio::test]
async fn an_agent_provisions_releases_and_reconnects_after_being_dropped() {
    let server = Server::start().await;
    let client = server.client();
    let mut agent = bounded(AgentSession::connect(
        &client,
        AGENT,
        vec![resource(&["gpu"], None)],
        quick(),
    ))
    .await
    .unwrap();
    let handle = agent.handle().clone();

    // A provision order, answered with connection details, makes the user's request ready.
    let request = bounded(client.allocate(&Requirements::for_user("ci")))
        .await
        .unwrap();
    let order = next_order(&mut agent).await;
    let Order::Provision {
        order: provision,
        connection: 1,
    } = &order
    else {
        panic!("not a provision on the first connection: {order:?}")
    };
    assert_eq!(provision.username, "ci");
    bounded(handle.provisioned(&order, ProvisionResult::Connection(connection("10.1.1.1"))))
        .await
        .unwrap();
    let lease = bounded(request.wait_ready()).await.unwrap();
    assert_eq!(lease.connection.host, "10.1.1.1");

    // Releasing sends a release order; the resource is free after the acknowledgement.
    bounded(request.release()).await.unwrap();
    let order = next_order(&mut agent).await;
    assert!(matches!(order, Order::Release { .. }), "{order:?}");
    assert_eq!(order.allocation_id(), lease.allocation_id);
    bounded(handle.released(&order)).await.unwrap();
    let free = InventoryFilter {
        state: Some(allocate_client::ResourceState::Free),
        ..InventoryFilter::default()
    };
    while bounded(client.inventory(&free)).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A newer socket of the same agent makes the server drop this one; the session reports
    // it, waits its backoff, and registers again (replacing the newer one in turn).
    let once = AgentOptions {
        reconnect: false,
        ..quick()
    };
    let mut newer = bounded(AgentSession::connect(
        &client,
        AGENT,
        vec![resource(&["gpu"], None)],
        once,
    ))
    .await
    .unwrap();
    let mut saw_drop = false;
    loop {
        match bounded(agent.next_event()).await.expect("session alive") {
            AgentEvent::Disconnected { error, retry_in } => {
                assert!(retry_in.is_some());
                assert!(
                    matches!(
                        &error,
                        Error::Closed {
                            end: SocketEnd::Closed { code: 1000, .. },
                            ..
                        }
                    ),
                    "{error}"
                );
                saw_drop = true;
            }
            AgentEvent::Registered {
                connection,
                inventory_ids,
            } => {
                assert!(saw_drop);
                assert_eq!(connection, 2);
                assert_eq!(inventory_ids, agent.inventory_ids());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The newer session, which does not reconnect, ends.
    match bounded(newer.next_event()).await {
        Some(AgentEvent::Disconnected { retry_in: None, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(bounded(newer.next_event()).await.is_none());

    // Orders come on the new connection, and answers there count.
    let request = bounded(client.allocate(&Requirements::for_user("ci")))
        .await
        .unwrap();
    let order = next_order(&mut agent).await;
    assert_eq!(order.connection(), 2);
    bounded(handle.provisioned(&order, ProvisionResult::Connection(connection("10.2.2.2"))))
        .await
        .unwrap();
    assert_eq!(
        bounded(request.wait_ready()).await.unwrap().connection.host,
        "10.2.2.2"
    );

    // An idle connection is kept: the server's pings and the pongs to ours count as life.
    let mut idle = bounded(AgentSession::connect(
        &client,
        Uuid::from_u128(0xb),
        vec![],
        AgentOptions {
            ping_interval: Duration::from_millis(50),
            ..quick()
        },
    ))
    .await
    .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(600), idle.next_event()).await;
    assert!(quiet.is_err(), "an idle agent was disconnected: {quiet:?}");

    // A new resource list on the same socket.
    let ids = bounded(handle.register(
        AGENT,
        vec![resource(&["gpu"], None), resource(&["cpu"], Some("h"))],
    ))
    .await
    .unwrap();
    assert_eq!(ids.len(), 2);
    handle.stop().await;
}

#[tokio::test]
async fn a_refused_registration_is_an_error() {
    let server = Server::start().await;
    let mut bad = resource(&["gpu"], None);
    bad.labels = vec![String::new()];
    let err = bounded(AgentSession::connect(
        &server.client(),
        AGENT,
        vec![bad],
        quick(),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code(), "invalid_request", "{err}");
}

#[tokio::test]
async fn https_and_wss_through_a_tls_proxy() {
    let server = Server::start().await;
    let front = TlsFront::start(server.addr).await;
    let url = format!("https://localhost:{}", front.addr.port());
    allocates_over_tls(&url, &front.ca_file).await;
}

#[tokio::test]
async fn https_and_wss_served_by_the_server_itself() {
    let ca = TestCa::new();
    let issued = ca.issue("server");
    let server = Server::start_tls(&issued).await;
    let url = format!("https://localhost:{}", server.addr.port());
    allocates_over_tls(&url, &ca.ca_file).await;
}

/// At `url` (https, a certificate from the CA in `ca_file`): a client without the CA fails;
/// with it, an agent registers over wss and a user is served.
async fn allocates_over_tls(url: &str, ca_file: &Path) {
    // Without the CA the server's certificate is not trusted.
    let untrusting = Client::new(url, ClientOptions::default()).expect("a client");
    let err = bounded(untrusting.health())
        .await
        .expect_err("an untrusted certificate");
    assert_eq!(err.code(), "connection", "{err}");

    let options = ClientOptions {
        ca_file: Some(ca_file.to_owned()),
        ..ClientOptions::default()
    };
    let client = Client::new(url, options).expect("a client");
    bounded(client.health()).await.expect("healthy over TLS");
    // wss: an agent registers and a user is served, both over TLS.
    let agent = bounded(AgentSession::connect(
        &client,
        AGENT,
        vec![resource(&["gpu"], Some("10.3.3.3"))],
        quick(),
    ))
    .await
    .expect("over TLS");
    assert_eq!(agent.inventory_ids().len(), 1);
    let request = bounded(client.allocate(&Requirements::for_user("ci")))
        .await
        .expect("over TLS");
    assert_eq!(
        bounded(request.wait_ready())
            .await
            .expect("over TLS")
            .connection
            .host,
        "10.3.3.3"
    );
    assert_eq!(
        bounded(client.inventory(&InventoryFilter::default()))
            .await
            .expect("over TLS")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_started_session_retries_its_first_connection_too() {
    // A server that is not there: the first attempt is a disconnection, retried.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = Client::new(&format!("ws://127.0.0.1:{port}"), ClientOptions::default()).unwrap();
    let mut waiting = AgentSession::start(&down, AGENT, vec![resource(&["gpu"], None)], quick());
    assert!(waiting.inventory_ids().is_empty());
    for _ in 0..2 {
        match bounded(waiting.next_event()).await {
            Some(AgentEvent::Disconnected {
                error,
                retry_in: Some(_),
            }) => assert_eq!(error.code(), "connection", "{error}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    bounded(waiting.handle().stop()).await;

    // A refused first registration is retried as well, not returned.
    let server = Server::start().await;
    let mut bad = resource(&["gpu"], None);
    bad.labels = vec![String::new()];
    let mut refused = AgentSession::start(&server.client(), AGENT, vec![bad], quick());
    match bounded(refused.next_event()).await {
        Some(AgentEvent::Disconnected {
            error,
            retry_in: Some(_),
        }) => assert_eq!(error.code(), "invalid_request", "{error}"),
        other => panic!("unexpected {other:?}"),
    }
    bounded(refused.handle().stop()).await;

    // An accepted one is an event, on connection 1.
    let mut agent = AgentSession::start(
        &server.client(),
        AGENT,
        vec![resource(&["gpu"], None)],
        quick(),
    );
    match bounded(agent.next_event()).await {
        Some(AgentEvent::Registered {
            inventory_ids,
            connection: 1,
        }) => assert_eq!(inventory_ids.len(), 1),
        other => panic!("unexpected {other:?}"),
    }
    bounded(agent.handle().stop()).await;
    assert!(bounded(agent.next_event()).await.is_none());
}

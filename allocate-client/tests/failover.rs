//! A client of several servers: it moves past a dead server and a standby to the leader, and
//! never sends twice what a leader may have carried out.

mod common;

use allocate_client::{AgentSession, Client, ClientOptions, Error, InventoryFilter};
use common::{bounded, resource, ClientOf, Server};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

/// A server that reads each request's head and then answers `answer` (a whole HTTP
/// response), or closes the connection without answering when `None`.
async fn fake(answer: Option<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if let Some(answer) = answer {
                    let _ = stream.write_all(answer.as_bytes()).await;
                }
            });
        }
    });
    url
}

/// A standby that names `leader`.
async fn standby(leader: &str) -> String {
    let body = format!(
        r#"{{"error":{{"code":"not_leader","leader":"{leader}","message":"this server is a standby","role":"standby"}},"status":503}}"#
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    fake(Some(response)).await
}

/// A URL where nothing listens.
async fn dead() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    format!("http://{}", listener.local_addr().expect("address"))
}

/// An agent of one resource with a static connection, registered through `client`.
async fn static_agent(client: &Client) -> AgentSession {
    let resources = vec![resource(&["a"], Some("10.0.0.1"))];
    let connecting =
        AgentSession::connect(client, Uuid::from_u128(1), resources, Default::default());
    bounded(connecting).await.expect("the agent registers")
}

fn quick() -> ClientOptions {
    let mut options = ClientOptions::default();
    options.failover.backoff_min = Duration::from_millis(10);
    options.failover.backoff_max = Duration::from_millis(50);
    options
}

#[tokio::test]
async fn calls_and_sockets_move_past_a_dead_server_and_a_standby_to_the_leader() {
    let leader = Server::start().await;
    let urls = [dead().await, standby(&leader.url()).await, leader.url()];
    let client = Client::with_urls(&urls, quick()).unwrap();
    assert!(bounded(client.inventory(&InventoryFilter::default()))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(client.url(), leader.url());

    // A leader that only the standby names is learned, for calls and websockets alike.
    let client = Client::new(&standby(&leader.url()).await, quick()).unwrap();
    let agent = static_agent(&client).await;
    assert_eq!(agent.inventory_ids().len(), 1);
    assert_eq!(client.url(), leader.url());
    assert_eq!(client.urls().len(), 2);
}

#[tokio::test]
async fn one_server_down_is_an_error_at_once_and_every_server_down_after_the_deadline() {
    let mut options = quick();
    options.failover.deadline = Duration::from_millis(300);
    let only = Client::new(&dead().await, options.clone()).unwrap();
    let err = bounded(only.health()).await.unwrap_err();
    assert_eq!(err.code(), "connection", "{err}");

    let both = Client::with_urls([dead().await, dead().await], options).unwrap();
    let started = std::time::Instant::now();
    let err = bounded(both.health()).await.unwrap_err();
    assert_eq!(err.code(), "connection", "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "gave up too soon"
    );
}

#[tokio::test]
async fn a_delete_whose_connection_failed_after_sending_is_not_sent_again() {
    let leader = Server::start().await;
    let silent = fake(None).await;
    let client = Client::with_urls([silent.as_str(), &leader.url()], quick()).unwrap();
    let _agent = static_agent(&leader.client()).await;
    let mut requirements = allocate_client::Requirements::for_user("ci");
    requirements.allocation_timeout_seconds = 5;
    let held = bounded(leader.client().allocate(&requirements))
        .await
        .unwrap();
    let lease = bounded(held.wait_ready()).await.unwrap();

    // The DELETE reached a server that may have carried it out: not sent to the next one.
    let err = bounded(client.release(lease.allocation_id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { .. }), "{err}");
    // A GET is idempotent: it moves on, and shows the allocation still held.
    let shown = bounded(client.allocation(lease.allocation_id))
        .await
        .unwrap();
    assert_eq!(shown.state.as_str(), "ready");
    assert_eq!(client.url(), leader.url());
}

/// A TCP relay to `backend` on a port of its own, until [`Relay::cut`] drops every
/// connection and stops listening (as a server killed with SIGKILL would).
struct Relay {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(backend: std::net::SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { url, task }
    }

    /// Drops the listener and every connection (the join set goes with the task).
    fn cut(&self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_ready_allocation_whose_socket_is_lost_is_followed_again_on_the_next_server() {
    let leader = Server::start().await;
    let _agent = static_agent(&leader.client()).await;
    let relay = Relay::start(leader.addr).await;
    let client = Client::with_urls([relay.url.as_str(), &leader.url()], quick()).unwrap();
    let mut requirements = allocate_client::Requirements::for_user("ci");
    requirements.allocation_timeout_seconds = 5;
    let held = bounded(client.allocate(&requirements)).await.unwrap();
    let lease = bounded(held.wait_ready()).await.unwrap();
    assert!(matches!(
        bounded(held.next_event()).await.unwrap(),
        Some(allocate_client::ClientEvent::Ready { .. })
    ));

    relay.cut();
    // Followed again on the other server, which first says where the allocation stands.
    let again = bounded(held.next_event()).await.unwrap();
    let Some(allocate_client::ClientEvent::Ready { allocation_id, .. }) = again else {
        panic!("not ready again: {again:?}");
    };
    assert_eq!(allocation_id, lease.allocation_id);
    assert_eq!(bounded(held.wait_ready()).await.unwrap(), lease);
    assert_eq!(client.url(), leader.url());

    // And it still ends as the contract says: released, then closed.
    bounded(held.release()).await.unwrap();
    assert!(matches!(
        bounded(held.next_event()).await.unwrap(),
        Some(allocate_client::ClientEvent::Released { .. })
    ));
    assert!(bounded(held.next_event()).await.unwrap().is_none());
}

#[tokio::test]
async fn an_agent_whose_socket_is_lost_registers_again_with_the_next_server() {
    let leader = Server::start().await;
    let relay = Relay::start(leader.addr).await;
    let client = Client::with_urls([relay.url.as_str(), &leader.url()], quick()).unwrap();
    let options = allocate_client::AgentOptions {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(100),
        jitter_seed: Some(1),
        ..Default::default()
    };
    let resources = vec![resource(&["a"], Some("10.0.0.1"))];
    let mut agent = AgentSession::start(&client, Uuid::from_u128(7), resources, options);
    let first = registered(&mut agent).await;
    relay.cut();
    assert_eq!(registered(&mut agent).await, first);
    assert_eq!(client.url(), leader.url());
    let entry = bounded(leader.client().resource(first[0])).await.unwrap();
    assert_eq!(entry.state, allocate_client::ResourceState::Free);
}

/// The inventory ids of `agent`'s next registration, skipping disconnections.
async fn registered(agent: &mut AgentSession) -> Vec<Uuid> {
    loop {
        match bounded(agent.next_event()).await {
            Some(allocate_client::AgentEvent::Registered { inventory_ids, .. }) => {
                return inventory_ids
            }
            Some(allocate_client::AgentEvent::Disconnected { .. }) => {}
            other => panic!("unexpected agent event: {other:?}"),
        }
    }
}

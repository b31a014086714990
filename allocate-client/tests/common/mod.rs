//! A real server on 127.0.0.1:0 (testkit's, feature `server`, which also has the TLS front
//! with a private CA) and small builders.
#![allow(dead_code)] // each test binary uses its own subset

use allocate_client::{Client, ClientOptions, Connection, ResourceSpec};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// `f`, failing the test if it takes longer than [`STEP`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .expect("a step of the test took too long")
}

pub use testkit::server::Server;

/// A client of a test server over plain HTTP.
pub trait ClientOf {
    /// The client.
    fn client(&self) -> Client;
}

impl ClientOf for Server {
    fn client(&self) -> Client {
        Client::new(&self.url(), ClientOptions::default()).expect("client")
    }
}

/// A resource with `labels`; with `host`, a static connection (no provision round trip).
pub fn resource(labels: &[&str], host: Option<&str>) -> ResourceSpec {
    ResourceSpec {
        inventory_id: None,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        cpu_count: 4,
        memory_gb: 16,
        gpu: vec![],
        kind: "VM".into(),
        connection: host.map(|h| connection(h).into()),
    }
}

/// Connection details for `host`.
pub fn connection(host: &str) -> Connection {
    Connection {
        host: host.into(),
        username: "u".into(),
        password: Some("p".into()),
        port: None,
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

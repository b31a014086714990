//! The access log: one line per HTTP request when its answer is out, and one per websocket
//! when it closes, each with a request id that the answer also carries in `x-request-id`.
//! Rejected requests say their error code. Every line is at `info`.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::info;
use uuid::Uuid;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The middleware around every route: gives the request an id, returns it in
/// `x-request-id`, and logs the request once its answer's head is ready, or, for a websocket,
/// notes it for the line logged when the socket closes.
pub async fn log_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = Uuid::new_v4().simple().to_string();
    let connection = req.extensions().get::<ConnectionInfo>().cloned();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let extensions = response.extensions_mut();
    let entry = Entry {
        id,
        method,
        path,
        peer: connection.as_ref().map(|c| c.peer),
        caller: extensions.remove::<CallerName>().map(|c| c.0),
        error: extensions.remove::<Rejected>().map(|r| r.0),
        status: response.status().as_u16(),
        started,
    };
    match connection {
        Some(c) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            c.upgrade.upgraded(entry)
        }
        _ => entry.log_request(),
    }
    response
}

/// What the access log says of one request.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The request id, also in the answer's `x-request-id`.
    pub id: String,
    /// The method.
    pub method: String,
    /// The path, without the query (which may hold filters, never secrets, but is long).
    pub path: String,
    /// The peer's address, where the connection is known.
    pub peer: Option<SocketAddr>,
    /// Who the token makes the caller (`user alice`), when one authenticated.
    pub caller: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// The contract's error code of a rejected request.
    pub error: Option<String>,
    /// When the request arrived.
    pub started: Instant,
}

impl Entry {
    /// Logs the line of an HTTP request answered now.
    pub fn log_request(&self) {
        self.log("request");
    }

    /// Logs `kind`'s line, its duration counted until now.
    fn log(&self, kind: &'static str) {
        // Milliseconds with a fraction: most answers take well under one.
        let duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        info!(
            target: "allocate_http::access",
            request_id = %self.id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            duration_ms,
            peer = self.peer.map(tracing::field::display),
            caller = self.caller.as_deref(),
            error = self.error.as_deref(),
            "{kind}"
        );
    }
}

/// One connection's websocket, if a request upgraded it: its line is logged when the last
/// holder (the connection's stream, which the websocket keeps) drops it. Shared by the
/// connection and each of its requests.
#[derive(Debug, Default)]
pub struct Upgrade {
    entry: Mutex<Option<Entry>>,
}

impl Upgrade {
    /// A slot for a connection.
    pub fn new() -> Arc<Upgrade> {
        Arc::default()
    }

    /// Notes that the request of `entry` upgraded the connection to a websocket.
    pub fn upgraded(&self, entry: Entry) {
        if let Ok(mut slot) = self.entry.lock() {
            *slot = Some(entry);
        }
    }
}

/// The websocket's line, its duration from the upgrade request to its close.
impl Drop for Upgrade {
    fn drop(&mut self) {
        let entry = self.entry.get_mut().ok().and_then(Option::take);
        if let Some(entry) = entry {
            entry.log("websocket");
        }
    }
}

/// The connection's peer and upgrade slot, in every request's extensions.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Where an upgrade is noted.
    pub upgrade: Arc<Upgrade>,
}

/// The error code of a rejected request, put in its answer's extensions for the log.
#[derive(Clone, Debug)]
pub struct Rejected(pub String);

/// Who the token made the caller, put in the answer's extensions for the log.
#[derive(Clone, Debug)]
pub struct CallerName(pub String);

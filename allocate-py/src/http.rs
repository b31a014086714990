//! Talking to a server: its base URL, the contract's envelopes over HTTP, and websocket upgrades
//! with the bearer token.

use crate::errors;
use allocate_core::wire::{Envelope, Refusal};
use allocate_core::ErrorCode;
use futures_util::StreamExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use reqwest::Url;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Largest websocket message either way (the contract's limit).
const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// How long opening a websocket (TCP and the upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client websocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The exception for a refusal of the server.
pub fn refused(refusal: Refusal) -> PyErr {
    errors::from_code(&refusal.code, refusal.message)
}

pub use allocate_client::chain;

/// The exception for an error of the client crate: the server's refusal as its class, a bad
/// URL or token as `ValueError`, anything on the way as `ConnectionLost`.
pub fn client_error(error: allocate_client::Error) -> PyErr {
    use allocate_client::Error;
    match error {
        Error::Refused { refusal, .. } => refused(refusal),
        Error::Allocation(e) => allocation_error(e),
        Error::Url { .. } | Error::Token | Error::CaFile { .. } => {
            PyValueError::new_err(error.to_string())
        }
        Error::Unreadable { .. } => errors::AllocateError::new_err(chain(&error)),
        other => errors::lost(chain(&other)),
    }
}

/// The exception for an allocation request that failed.
pub fn allocation_error(error: allocate_client::AllocationError) -> PyErr {
    use allocate_client::AllocationError as E;
    match error {
        E::TimedOut(refusal) | E::Refused(refusal) => refused(refusal),
        E::ReleasedBeforeReady => errors::AllocateError::new_err(
            "the request was released (deleted) before it became ready",
        ),
        E::LostBeforeReady(_) | E::LostDuringLease(_) => errors::lost(error.to_string()),
        E::Unreadable(_) | E::Ended(_) => errors::AllocateError::new_err(error.to_string()),
        E::NoIdYet => pyo3::exceptions::PyRuntimeError::new_err(
            "the server has not answered this request yet",
        ),
    }
}

/// A server's websocket endpoints, for the agent (which is not yet on `allocate-client`):
/// its base URL and the token to send.
#[derive(Debug)]
pub struct Endpoint {
    base: Url,
    token: Option<String>,
}

impl Endpoint {
    /// An endpoint for a server's base URL (`http://host:port`, optionally with a path prefix).
    pub fn new(url: &str, token: Option<String>) -> PyResult<Self> {
        let mut base =
            Url::parse(url).map_err(|e| PyValueError::new_err(format!("url {url:?}: {e}")))?;
        match base.scheme() {
            "http" => {}
            "ws" => base
                .set_scheme("http")
                .map_err(|()| PyValueError::new_err(format!("url {url:?}: bad scheme")))?,
            "https" | "wss" => {
                return Err(PyValueError::new_err(format!(
                    "url {url:?}: this build of allocate speaks plain http only; put a TLS \
                     terminating proxy on this machine's loopback in front of it"
                )))
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "url {url:?}: the scheme must be http, not {other}"
                )))
            }
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if let Some(t) = &token {
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                PyValueError::new_err("the token contains characters an HTTP header cannot carry")
            })?;
        }
        Ok(Endpoint { base, token })
    }

    /// The base URL, as given (normalised).
    pub fn url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of `path` (relative to the base URL) with `query` pairs.
    pub fn join(&self, path: &str, query: &[(&str, &str)]) -> PyResult<Url> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| PyValueError::new_err(format!("path {path:?}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Opens a websocket to `path` (the token goes in the upgrade request).
    pub async fn connect(&self, path: &str) -> PyResult<Socket> {
        let mut url = self.join(path, &[])?;
        url.set_scheme("ws")
            .map_err(|()| PyValueError::new_err("cannot make a ws:// URL"))?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| PyValueError::new_err(format!("websocket URL {url}: {e}")))?;
        if let Some(t) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| PyValueError::new_err("the token cannot be sent in a header"))?;
            request.headers_mut().insert("authorization", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MESSAGE_BYTES_MAX))
            .max_frame_size(Some(MESSAGE_BYTES_MAX));
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => Err(errors::lost(format!(
                "{url}: could not connect within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                Err(refused_upgrade(&url, *response))
            }
            Ok(Err(e)) => Err(errors::lost(format!("{url}: {}", chain(&e)))),
            Ok(Ok((socket, _response))) => Ok(socket),
        }
    }
}

/// The error for an upgrade the server answered with an HTTP error (401, 403, ...): the
/// envelope's when the body came with the headers, else the class of the status's error code.
fn refused_upgrade(
    url: &Url,
    response: tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>,
) -> PyErr {
    let status = response.status();
    let body = response.into_body().unwrap_or_default();
    let envelope = std::str::from_utf8(&body).map(Envelope::parse);
    if let Ok(Ok(Envelope::Refused(refusal))) = envelope {
        return refused(refusal);
    }
    let message = format!("{url}: upgrade refused with {status}");
    match ErrorCode::ALL
        .into_iter()
        .find(|c| c.http_status() == status.as_u16())
    {
        Some(code) => errors::from_error_code(code, message),
        None => errors::lost(message),
    }
}

/// The next text message of `socket`, skipping pings and pongs (tungstenite answers pings);
/// `Err` says why the socket closed or failed; `None` once the stream has ended.
pub async fn next_text(socket: &mut Socket) -> Option<Result<String, String>> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return Some(Ok(text.to_string())),
            Ok(Message::Close(frame)) => {
                return Some(Err(match frame {
                    Some(f) => {
                        format!("the server closed the connection ({} {})", f.code, f.reason)
                    }
                    None => "the server closed the connection".to_owned(),
                }))
            }
            Ok(_) => {}
            Err(e) => return Some(Err(format!("the connection failed: {}", chain(&e)))),
        }
    }
}

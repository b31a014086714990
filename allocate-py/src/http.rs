//! Talking to a server: its base URL, the contract's envelopes over HTTP, and websocket upgrades
//! with the bearer token.

use crate::errors;
use allocate_core::ErrorCode;
use futures_util::StreamExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value;
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

/// The failure envelope's `error`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// The contract's error code.
    pub code: String,
    /// The server's sentence.
    pub message: String,
}

/// A contract envelope: `{"status", "data"}` or `{"status", "error"}` (the status is not read:
/// the error code says more).
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// The value of a success.
    #[serde(default)]
    pub data: Option<Value>,
    /// The reason of a failure.
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

impl Envelope {
    /// Reads an envelope from a message's text; `what` names the message in errors.
    pub fn parse(text: &str, what: &str) -> PyResult<Self> {
        serde_json::from_str(text).map_err(|e| {
            let shown: String = text.chars().take(200).collect();
            errors::AllocateError::new_err(format!(
                "{what} is not the contract's envelope ({e}): {shown:?}"
            ))
        })
    }

    /// The `data` of a success, or the error of a failure as its exception.
    pub fn into_data(self) -> PyResult<Value> {
        match (self.error, self.data) {
            (Some(e), _) => Err(errors::from_code(&e.code, e.message)),
            (None, Some(data)) => Ok(data),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// `error` and every source under it, joined with `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// A server: its base URL, the token to send, and an HTTP client.
#[derive(Debug)]
pub struct Endpoint {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
    http_timeout: Duration,
}

impl Endpoint {
    /// An endpoint for a server's base URL (`http://host:port`, optionally with a path prefix).
    pub fn new(url: &str, token: Option<String>, http_timeout: Duration) -> PyResult<Self> {
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
        // No proxy: websockets do not go through one either, so both reach the same server.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(http_timeout)
            .build()
            .map_err(|e| errors::lost(format!("cannot start an HTTP client: {}", chain(&e))))?;
        Ok(Endpoint {
            base,
            token,
            http,
            http_timeout,
        })
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

    /// Calls `method url` with an optional JSON body; returns the envelope's `data`, or raises
    /// the envelope's error.
    pub async fn call(&self, method: Method, url: Url, body: Option<Value>) -> PyResult<Value> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| {
            if e.is_timeout() {
                errors::lost(format!(
                    "{method} {url}: no answer within {} s",
                    self.http_timeout.as_secs_f64()
                ))
            } else {
                errors::lost(format!("{method} {url}: {}", chain(&e)))
            }
        };
        let response = request.send().await.map_err(unreachable)?;
        let text = response.text().await.map_err(unreachable)?;
        Envelope::parse(&text, &format!("the answer to {method} {url}"))?.into_data()
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
    if let Ok(Envelope {
        error: Some(error), ..
    }) = serde_json::from_slice::<Envelope>(&body)
    {
        return errors::from_code(&error.code, error.message);
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

//! What can go wrong talking to a server: one enum for the crate, each variant naming the URL,
//! file or message concerned.

use crate::socket::SocketEnd;
use crate::state::AllocationError;
use allocate_core::wire::{Refusal, WireError};
use std::path::PathBuf;

/// Why a call of this crate failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL cannot be used (bad syntax or a scheme other than http(s)/ws(s)).
    #[error("server URL {url:?} is not usable: {why}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The bearer token has characters that an HTTP header cannot carry.
    #[error("the token contains characters that an HTTP header cannot carry")]
    Token,
    /// The extra CA file could not be read or holds no usable certificate.
    #[error("CA file {path}: {why}")]
    CaFile {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// TLS (rustls) or the HTTP client could not be set up.
    #[error("cannot set up the client: {0}")]
    Setup(String),
    /// An HTTP call failed before an answer came (connection refused, TLS, reset, timeout).
    #[error("{what}: {source}")]
    Http {
        /// The call, such as `GET http://host/inventory/`.
        what: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Opening a websocket failed (connection, TLS, handshake).
    #[error("{what}: {source}")]
    WebSocket {
        /// The socket, such as `websocket ws://host/allocate/`.
        what: String,
        /// The websocket library's error.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A websocket ended (closed by the server, dropped, failed, or silent).
    #[error("{what}: {end}")]
    Closed {
        /// The socket.
        what: String,
        /// How it ended.
        end: SocketEnd,
    },
    /// Something took longer than its bound.
    #[error("{what}: no answer within {secs} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound, in seconds.
        secs: f64,
    },
    /// The server answered with an error envelope (or refused a websocket upgrade).
    #[error("{what}: refused with {} {}: {}", refusal.status, refusal.code, refusal.message)]
    Refused {
        /// The call or socket.
        what: String,
        /// The server's status, code and sentence (boxed: it is the largest variant).
        refusal: Box<Refusal>,
    },
    /// The server's answer is not one of the contract's messages.
    #[error("{what}: {source}")]
    Unreadable {
        /// The call or socket.
        what: String,
        /// What is wrong with the answer.
        #[source]
        source: WireError,
    },
    /// The allocation request failed or its socket ended (see [`AllocationError`]).
    #[error(transparent)]
    Allocation(#[from] AllocationError),
    /// The agent session has stopped: nothing more can be sent on it.
    #[error("the agent session has stopped")]
    AgentStopped,
}

impl Error {
    /// The server's refusal, when the server refused (its `code` is the contract's).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { refusal, .. } => Some(refusal.as_ref()),
            Error::Allocation(e) => e.refusal(),
            _ => None,
        }
    }

    /// A stable name for the kind of failure: the contract's code (`not_found`,
    /// `allocation_timeout`, ...) for a refusal, else one of `url`, `token`, `ca_file`,
    /// `setup`, `connection`, `timeout`, `unreadable`, `lost`, `agent_stopped`.
    pub fn code(&self) -> &str {
        match self {
            Error::Url { .. } => "url",
            Error::Token => "token",
            Error::CaFile { .. } => "ca_file",
            Error::Setup(_) => "setup",
            Error::Http { source, .. } if source.is_timeout() => "timeout",
            Error::Http { .. } | Error::WebSocket { .. } => "connection",
            Error::Timeout { .. } => "timeout",
            Error::Closed { .. } => "lost",
            Error::Refused { refusal, .. } => &refusal.code,
            Error::Unreadable { .. } => "unreadable",
            Error::Allocation(e) => e.code(),
            Error::AgentStopped => "agent_stopped",
        }
    }
}

//! The engine's errors and the contract's table of error codes.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Every error code of the contract, with its HTTP status. One table for every shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A malformed or out-of-range message or field (400).
    InvalidRequest,
    /// No or an unknown bearer token (401).
    Unauthorized,
    /// The caller may not do this (403).
    Forbidden,
    /// An unknown or already ended id (404).
    NotFound,
    /// Nothing became free before the request's wait ended (408).
    AllocationTimeout,
    /// The request conflicts with the current state, such as an id another agent owns (409).
    Conflict,
    /// A server fault; details are logged, not shown (500).
    Internal,
    /// The server is stopping (503).
    ShuttingDown,
    /// The server holds as many connections as it allows, in all or from this address (503).
    Overloaded,
    /// This server is a standby: another one leads (503; the envelope names the leader).
    NotLeader,
    /// The request could never fit its user's quota; the message names the limit (403).
    QuotaExceeded,
}

impl ErrorCode {
    /// Every code, in a fixed order (for tables in other languages).
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::AllocationTimeout,
        ErrorCode::Conflict,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::Overloaded,
        ErrorCode::NotLeader,
        ErrorCode::QuotaExceeded,
    ];

    /// The snake_case string that appears in `error.code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AllocationTimeout => "allocation_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }

    /// The HTTP status (and envelope `status`) that goes with the code.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::QuotaExceeded => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AllocationTimeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::Internal => 500,
            ErrorCode::ShuttingDown | ErrorCode::Overloaded | ErrorCode::NotLeader => 503,
        }
    }
}

/// Why the engine refused an input. A refused input changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Error {
    /// A message or field is malformed or outside the limits; the text names the field.
    #[error("{0}")]
    Invalid(String),
    /// The named object does not exist (or has already ended).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked up, such as `allocation`.
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The caller is not the one allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The input is well formed but clashes with the current state.
    #[error("{0}")]
    Conflict(String),
    /// An agent connection's message breaks the session rules (see [`SessionError`]).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The engine is shutting down and takes no new work ([`crate::Engine::shut_down`]).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The request could never fit its user's quota (API.md, "Quotas and order").
    #[error(transparent)]
    QuotaExceeded(#[from] crate::quota::QuotaExceeded),
}

impl Error {
    /// The contract's code for this error.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid(_) => ErrorCode::InvalidRequest,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Session(e) => e.code(),
            Error::ShuttingDown => ErrorCode::ShuttingDown,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

/// Why a message on an agent's connection was refused by the session rules: a connection
/// starts with a registration, names one agent throughout, and a newer connection of that
/// agent takes over from it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The connection's first message was not a registration.
    #[error("the first message must be a registration: {{\"agent_id\", \"resources\"}}")]
    NotRegistered,
    /// A later registration names another `agent_id` than the connection's first one.
    #[error("agent_id {named} differs from {registered}, which registered on this socket")]
    OtherAgent {
        /// The `agent_id` the message named.
        named: Uuid,
        /// The `agent_id` the connection registered first.
        registered: Uuid,
    },
    /// A newer connection of the same agent took over from this one.
    #[error("this socket of agent {agent_id} was replaced by a newer one")]
    Replaced {
        /// The agent whose newer connection took over.
        agent_id: Uuid,
    },
}

impl SessionError {
    /// The contract's code: 400 for a message the connection may not send, 409 when the
    /// connection was replaced.
    pub const fn code(&self) -> ErrorCode {
        match self {
            SessionError::NotRegistered | SessionError::OtherAgent { .. } => {
                ErrorCode::InvalidRequest
            }
            SessionError::Replaced { .. } => ErrorCode::Conflict,
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!((400..600).contains(&code.http_status()));
        }
        assert_eq!(
            Error::not_found("allocation", "x").to_string(),
            "allocation x not found"
        );
        assert_eq!(Error::invalid("bad").code().http_status(), 400);
    }
}

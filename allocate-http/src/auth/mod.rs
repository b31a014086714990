//! Who may do what: bearer tokens from a tokens file ([`tokens`]), checked by a middleware on
//! every route but `/`, `/healthz` and `/metrics`, and the role checks the handlers make.
//!
//! The rules (`docs/security.md` has the table):
//! - `agent`: serves `/agent/`, only for its bound `agent_id` when it has one;
//! - `user`: allocates only as its username, and sees, extends and frees only allocations
//!   whose `username` is that;
//! - `admin`: everything. With no tokens configured the server runs open and every caller is
//!   treated as an admin ([`Caller::Anyone`]).
//!
//! Every role may read the inventory (it holds no credentials). A refusal is logged with
//! the caller's role and name, never with a token.

pub mod tokens;

use crate::error::ApiError;
use crate::server::AppState;
use allocate_core::AllocationInfo;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt;
use thiserror::Error;
use tokens::Role;
use uuid::Uuid;

/// The websocket subprotocol the server selects when a browser sends its token as another
/// offered subprotocol, `bearer.<token>` (browsers cannot set headers on a websocket).
pub const SUBPROTOCOL: &str = "allocate";

/// Prefix of the offered subprotocol that carries a token.
const SUBPROTOCOL_TOKEN_PREFIX: &str = "bearer.";

/// Why a request was not authenticated (401). No variant holds the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Unauthorized {
    /// No `Authorization` header (nor, on a websocket upgrade, a `bearer.` subprotocol).
    #[error("this endpoint needs a bearer token: send the header `Authorization: Bearer <token>`")]
    Missing,
    /// An `Authorization` header of another scheme, or not text.
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    /// A token the tokens file does not hold.
    #[error("the bearer token is not valid")]
    Unknown,
}

impl Unauthorized {
    /// The `WWW-Authenticate` value for the 401 (RFC 6750's `invalid_token` for a bad token).
    pub fn challenge(self) -> &'static str {
        match self {
            Unauthorized::Missing => "Bearer realm=\"allocate\"",
            Unauthorized::Malformed | Unauthorized::Unknown => {
                "Bearer realm=\"allocate\", error=\"invalid_token\""
            }
        }
    }
}

/// Who made a request: the role of its token, or anyone when the server runs open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No tokens are configured: the server runs open and allows everything.
    Anyone,
    /// The bearer of a token with this role.
    Bearer(Role),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Anyone => f.write_str("anyone (the server runs open)"),
            Caller::Bearer(Role::Admin(None)) => f.write_str("admin"),
            Caller::Bearer(Role::Admin(Some(name))) => write!(f, "admin {name}"),
            Caller::Bearer(Role::User(name)) => write!(f, "user {name}"),
            Caller::Bearer(Role::Agent(None)) => f.write_str("agent"),
            Caller::Bearer(Role::Agent(Some(id))) => write!(f, "agent {id}"),
        }
    }
}

impl Caller {
    fn is_admin(&self) -> bool {
        matches!(self, Caller::Anyone | Caller::Bearer(Role::Admin(_)))
    }

    /// A 403 for this caller, logged with who it is.
    fn forbid(&self, message: String) -> ApiError {
        tracing::info!(caller = %self, "forbidden: {message}");
        ApiError::forbidden(message)
    }

    /// Admins only (`PATCH /inventory/{id}`).
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(self.forbid(format!("{what} needs an admin token")))
        }
    }

    /// Users and admins: opening or listing allocations.
    pub fn require_allocator(&self, what: &str) -> Result<(), ApiError> {
        match self {
            Caller::Bearer(Role::Agent(_)) => Err(self.forbid(format!(
                "{what} needs a user or admin token, not an agent token"
            ))),
            _ => Ok(()),
        }
    }

    /// Agents and admins: `/agent/`.
    pub fn require_agent(&self) -> Result<(), ApiError> {
        match self {
            Caller::Bearer(Role::User(_)) => {
                Err(self
                    .forbid("/agent/ needs an agent or admin token, not a user token".to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// A user requests allocations only as its own username.
    pub fn check_username(&self, username: &str) -> Result<(), ApiError> {
        match self {
            Caller::Bearer(Role::User(own)) if own != username => Err(self.forbid(format!(
                "requirements.username {username:?} is not {own:?}, the username of this token"
            ))),
            _ => self.require_allocator("/allocate/"),
        }
    }

    /// An agent token bound to an `agent_id` registers only that agent.
    pub fn check_agent_id(&self, agent_id: Uuid) -> Result<(), ApiError> {
        match self {
            Caller::Bearer(Role::Agent(Some(own))) if *own != agent_id => Err(self.forbid(
                format!("agent_id {agent_id} is not {own}, the agent this token is bound to"),
            )),
            _ => self.require_agent(),
        }
    }

    /// Whether this caller may see (and so extend or free) an allocation of `username`.
    pub fn sees(&self, username: &str) -> bool {
        match self {
            Caller::Bearer(Role::User(own)) => own == username,
            other => other.is_admin(),
        }
    }

    /// The owner of an allocation, or an admin: who may see, extend or free it.
    pub fn check_owner(&self, info: &AllocationInfo) -> Result<(), ApiError> {
        self.require_allocator("/allocate/{id}")?;
        if self.sees(&info.username) {
            Ok(())
        } else {
            Err(self.forbid(format!(
                "allocation {} belongs to another user",
                info.allocation_id
            )))
        }
    }
}

/// The middleware of every guarded route: finds the caller or answers 401.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    match identify(&app, req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            tracing::info!(path = req.uri().path(), "unauthorized: {e}");
            ApiError::Unauthorized(e).into_response()
        }
    }
}

/// The caller that these headers show.
fn identify(app: &AppState, headers: &HeaderMap) -> Result<Caller, Unauthorized> {
    let Some(table) = app.config.tokens.table() else {
        return Ok(Caller::Anyone);
    };
    let token = bearer_token(headers)?;
    table
        .role_of(token)
        .map(|role| Caller::Bearer(role.clone()))
        .ok_or(Unauthorized::Unknown)
}

/// The token of `Authorization: Bearer <token>`, else, on a websocket upgrade, of an offered
/// `bearer.<token>` subprotocol.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Unauthorized> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| Unauthorized::Malformed)?;
        let (scheme, token) = value
            .trim()
            .split_once(char::is_whitespace)
            .ok_or(Unauthorized::Malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Unauthorized::Malformed);
        }
        return Ok(token);
    }
    if !headers.contains_key(UPGRADE) {
        return Err(Unauthorized::Missing);
    }
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(SUBPROTOCOL_TOKEN_PREFIX))
        .filter(|token| !token.is_empty())
        .ok_or(Unauthorized::Missing)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Internal(
                "a guarded handler on a route without authentication",
            ))
    }
}

#[cfg(test)]
mod tests;

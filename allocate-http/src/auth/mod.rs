//! Who may do what, as pure rules over plain data (no HTTP types): bearer tokens from a
//! tokens file ([`tokens`]), who a token makes the caller ([`identify`]), and the role checks
//! that handlers and the driver make. The routes' middleware finds the token in the request.
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

use allocate_core::{AllocationInfo, Error};
use std::fmt;
use thiserror::Error;
use tokens::{Credential, Role, Tokens};
use uuid::Uuid;

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
    /// A reload of the tokens file took away (or changed the role of) the token that opened
    /// a socket.
    #[error("the bearer token that opened this socket was revoked")]
    Revoked,
}

impl Unauthorized {
    /// The `WWW-Authenticate` value for the 401 (RFC 6750's `invalid_token` for a bad token).
    pub fn challenge(self) -> &'static str {
        match self {
            Unauthorized::Missing => "Bearer realm=\"allocate\"",
            Unauthorized::Malformed | Unauthorized::Unknown | Unauthorized::Revoked => {
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
    fn forbid(&self, message: String) -> Error {
        tracing::info!(caller = %self, "forbidden: {message}");
        Error::Forbidden(message)
    }

    /// Admins only (`PATCH /inventory/{id}`).
    pub fn require_admin(&self, what: &str) -> Result<(), Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(self.forbid(format!("{what} needs an admin token")))
        }
    }

    /// Users and admins: opening or listing allocations.
    pub fn require_allocator(&self, what: &str) -> Result<(), Error> {
        match self {
            Caller::Bearer(Role::Agent(_)) => Err(self.forbid(format!(
                "{what} needs a user or admin token, not an agent token"
            ))),
            _ => Ok(()),
        }
    }

    /// Agents and admins: `/agent/`.
    pub fn require_agent(&self) -> Result<(), Error> {
        match self {
            Caller::Bearer(Role::User(_)) => {
                Err(self
                    .forbid("/agent/ needs an agent or admin token, not a user token".to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Whose usage this caller sees (`GET /usage`): everyone's (`None`) for an admin, its
    /// own for a user; an agent none.
    pub fn usage_scope(&self) -> Result<Option<&str>, Error> {
        match self {
            Caller::Bearer(Role::User(own)) => Ok(Some(own)),
            Caller::Bearer(Role::Agent(_)) => Err(self
                .forbid("GET /usage needs a user or admin token, not an agent token".to_owned())),
            _ => Ok(None),
        }
    }

    /// A user requests allocations only as its own username.
    pub fn check_username(&self, username: &str) -> Result<(), Error> {
        match self {
            Caller::Bearer(Role::User(own)) if own != username => Err(self.forbid(format!(
                "requirements.username {username:?} is not {own:?}, the username of this token"
            ))),
            _ => self.require_allocator("/allocate/"),
        }
    }

    /// An agent token bound to an `agent_id` registers only that agent.
    pub fn check_agent_id(&self, agent_id: Uuid) -> Result<(), Error> {
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
    pub fn check_owner(&self, info: &AllocationInfo) -> Result<(), Error> {
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

/// The caller a request makes with the token it presented (`presented`: the token, or why
/// none was found): anyone when no tokens are configured, else the role of a known token,
/// with the token as a [`Credential`] (for the sockets it opens).
pub fn identify(
    tokens: &Tokens,
    presented: Result<&str, Unauthorized>,
) -> Result<(Caller, Option<Credential>), Unauthorized> {
    let Some(table) = tokens.table() else {
        return Ok((Caller::Anyone, None));
    };
    let credential = table
        .credential_of(presented?)
        .ok_or(Unauthorized::Unknown)?;
    Ok((Caller::Bearer(credential.role().clone()), Some(credential)))
}

#[cfg(test)]
mod tests;

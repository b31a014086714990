//! The one error type of the HTTP layer, rendered as the contract's failure envelope.

use crate::access::Rejected;
use crate::auth::Unauthorized;
use crate::driver::DriverError;
use allocate_core::wire::{Envelope, Refusal};
use allocate_core::ErrorCode;
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Why a request (HTTP or websocket) failed.
#[derive(Debug, Error)]
pub enum ApiError {
    /// Refused by the engine or by one of the core's parsers; carries the contract's code.
    #[error(transparent)]
    Core(#[from] allocate_core::Error),
    /// No valid bearer token (401); the response carries a `WWW-Authenticate` challenge.
    #[error(transparent)]
    Unauthorized(#[from] Unauthorized),
    /// No endpoint has this path.
    #[error("no endpoint at {0}")]
    NoRoute(String),
    /// The endpoint exists but does not take this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The path asked for.
        path: String,
    },
    /// This server is a standby of a PostgreSQL store: another one leads (503 `not_leader`).
    #[error("this server is a standby; the leader is {}", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// The URL the leader advertises, when it does.
        leader: Option<String>,
    },
    /// A fault of ours; the cause is logged, not shown.
    #[error("internal error")]
    Internal(&'static str),
}

impl ApiError {
    /// A malformed or out-of-range request (400 `invalid_request`).
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Core(allocate_core::Error::Invalid(message.into()))
    }

    /// The HTTP status, which the envelope repeats.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            other => StatusCode::from_u16(other.code().map_or(500, ErrorCode::http_status))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The contract's code; `None` for 405, which the table has no code for.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            ApiError::Core(e) => e.code(),
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::NoRoute(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => return None,
            ApiError::NotLeader { .. } => ErrorCode::NotLeader,
            ApiError::Internal(_) => ErrorCode::Internal,
        })
    }

    /// The failure half of the envelope: status, code and sentence.
    pub fn refusal(&self) -> Refusal {
        match self.code() {
            Some(code) => Refusal::new(code, self.to_string()),
            None => Refusal {
                status: self.status().as_u16(),
                code: "method_not_allowed".to_owned(),
                message: self.to_string(),
                explain: None,
                leader: None,
            },
        }
    }

    /// The failure envelope `{"status", "error": {"code", "message"}}` as text; a
    /// `not_leader` error also names the `leader` (or `null`) and this server's `role`.
    pub fn envelope_text(&self) -> String {
        let envelope = Envelope::<()>::Refused(self.refusal());
        let ApiError::NotLeader { leader } = self else {
            return envelope.to_text();
        };
        let mut value = serde_json::to_value(&envelope).unwrap_or_default();
        if let Some(error) = value.get_mut("error").and_then(|e| e.as_object_mut()) {
            error.insert("leader".to_owned(), leader.clone().into());
            error.insert("role".to_owned(), "standby".into());
        }
        value.to_string()
    }
}

impl From<DriverError> for ApiError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Refused(e) => ApiError::Core(e),
            DriverError::Stopped => ApiError::Core(allocate_core::Error::ShuttingDown),
            DriverError::Lost => ApiError::Internal("the engine task stopped during a call"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause, "internal error");
        }
        let body = self.envelope_text();
        let mut response =
            (self.status(), [(CONTENT_TYPE, "application/json")], body).into_response();
        response
            .extensions_mut()
            .insert(Rejected(self.refusal().code));
        if let ApiError::Unauthorized(reason) = &self {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(reason.challenge()),
            );
        }
        response
    }
}

/// The answer for a path no route has.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// The answer for a known path with a method it does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_renders_its_status_in_the_envelope() {
        let cases = [
            (
                ApiError::invalid("expires must be an integer"),
                400,
                "invalid_request",
            ),
            (ApiError::NoRoute("/nope".into()), 404, "not_found"),
            (
                ApiError::MethodNotAllowed {
                    method: Method::PUT,
                    path: "/healthz".into(),
                },
                405,
                "method_not_allowed",
            ),
            (
                allocate_core::Error::ShuttingDown.into(),
                503,
                "shutting_down",
            ),
            (DriverError::Stopped.into(), 503, "shutting_down"),
            (Unauthorized::Missing.into(), 401, "unauthorized"),
            (
                allocate_core::Error::Forbidden("needs an admin token".into()).into(),
                403,
                "forbidden",
            ),
            (ApiError::Internal("engine task stopped"), 500, "internal"),
            (ApiError::NotLeader { leader: None }, 503, "not_leader"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status);
            let refusal = err.refusal();
            assert_eq!(refusal.status, status);
            assert_eq!(refusal.code, code);
            assert!(err.envelope_text().contains(&format!(r#""code":"{code}""#)));
        }
        assert_eq!(
            ApiError::Internal("secret cause").refusal().message,
            "internal error"
        );
    }

    #[test]
    fn not_leader_names_the_leader_and_the_role() {
        let leader = Some("http://a.lab:8080".to_owned());
        let text = ApiError::NotLeader { leader }.envelope_text();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["status"], 503);
        assert_eq!(value["error"]["code"], "not_leader");
        assert_eq!(value["error"]["leader"], "http://a.lab:8080");
        assert_eq!(value["error"]["role"], "standby");
    }

    #[test]
    fn a_401_challenges_for_a_bearer_token() {
        let response = ApiError::Unauthorized(Unauthorized::Unknown).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer ") && challenge.contains("invalid_token"));
        let forbidden =
            ApiError::from(allocate_core::Error::Forbidden("no".into())).into_response();
        assert!(!forbidden.headers().contains_key(WWW_AUTHENTICATE));
    }
}

//! Authentication at the edge: the middleware of every guarded route finds the bearer token
//! in the request's headers and asks [`crate::auth`] who that makes the caller, and the
//! extractor hands that [`Caller`] to handlers (and, with tokens, the token's
//! [`Credential`](crate::auth::tokens::Credential), to the sockets it opens).

use crate::access::CallerName;
use crate::auth::{self, Caller, Unauthorized};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The websocket subprotocol the server selects when a browser sends its token as another
/// offered subprotocol, `bearer.<token>` (browsers cannot set headers on a websocket).
pub const SUBPROTOCOL: &str = "allocate";

/// Prefix of the offered subprotocol that carries a token.
const SUBPROTOCOL_TOKEN_PREFIX: &str = "bearer.";

/// The middleware of every guarded route: finds the caller or answers 401.
pub async fn authenticate(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    match auth::identify(&app.shared.config.tokens, bearer_token(req.headers())) {
        Ok((caller, credential)) => {
            let name = matches!(caller, Caller::Bearer(_)).then(|| CallerName(caller.to_string()));
            req.extensions_mut().insert(caller);
            if let Some(credential) = credential {
                req.extensions_mut().insert(credential);
            }
            let mut response = next.run(req).await;
            if let Some(name) = name {
                response.extensions_mut().insert(name);
            }
            response
        }
        Err(e) => {
            tracing::info!(path = req.uri().path(), "unauthorized: {e}");
            ApiError::Unauthorized(e).into_response()
        }
    }
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
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_token_comes_from_the_header_or_an_offered_subprotocol() {
        let token =
            |pairs: &[(&'static str, &str)]| bearer_token(&headers(pairs)).map(str::to_owned);
        assert_eq!(token(&[("authorization", "Bearer abc")]), Ok("abc".into()));
        assert_eq!(
            token(&[("authorization", "bearer  abc ")]),
            Ok("abc".into())
        );
        assert_eq!(token(&[("authorization", "Bearer\tabc")]), Ok("abc".into()));
        assert_eq!(token(&[]), Err(Unauthorized::Missing));
        assert_eq!(
            token(&[("authorization", "Basic YWxhZGRpbg==")]),
            Err(Unauthorized::Malformed)
        );
        assert_eq!(
            token(&[("authorization", "Bearer")]),
            Err(Unauthorized::Malformed)
        );
        assert_eq!(
            token(&[("authorization", "Bearer ")]),
            Err(Unauthorized::Malformed)
        );
        assert_eq!(
            token(&[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "allocate, bearer.abc")
            ]),
            Ok("abc".into())
        );
        assert_eq!(
            token(&[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "allocate"),
                ("sec-websocket-protocol", "bearer.xyz")
            ]),
            Ok("xyz".into())
        );
        assert_eq!(
            token(&[
                ("upgrade", "websocket"),
                ("sec-websocket-protocol", "allocate, bearer.")
            ]),
            Err(Unauthorized::Missing)
        );
        assert_eq!(
            token(&[
                ("authorization", "Bearer h"),
                ("sec-websocket-protocol", "bearer.s")
            ]),
            Ok("h".into()),
            "the header wins"
        );
        assert_eq!(
            token(&[("sec-websocket-protocol", "bearer.abc")]),
            Err(Unauthorized::Missing),
            "only on a websocket upgrade"
        );
    }
}

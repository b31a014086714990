//! Request extractors whose rejections are our envelope, never axum's plain text.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;

/// A JSON request body as text, for the core's strict parsers: the content type must be
/// `application/json` and the body at most the configured message size.
#[derive(Debug)]
pub struct JsonText(pub String);

impl FromRequest<AppState> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::invalid(format!(
                "content-type must be application/json, got {}",
                content_type.map_or("none".to_owned(), |c| format!("{c:?}"))
            )));
        }
        let limit = state.shared.config.message_bytes_max;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::invalid(format!(
                    "the body could not be read or is larger than {limit} bytes"
                ))
            })?;
        String::from_utf8(bytes.into())
            .map(JsonText)
            .map_err(|_| ApiError::invalid("the body is not valid UTF-8"))
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The single `{id}` segment of a path, not yet checked to be a UUID.
#[derive(Debug)]
pub struct IdSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdSegment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| IdSegment(s))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// A query string's decoded `name=value` pairs, in order.
#[derive(Debug)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| QueryPairs(pairs))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

impl QueryPairs {
    /// The pairs as borrowed strings.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}

//! `GET /usage`: resource-seconds and GPU-seconds per user, label or resource over a window
//! (API.md, "Usage"); an admin sees everyone's, a user only their own.

use super::extract::QueryPairs;
use super::ok;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use allocate_core::UsageQuery;
use axum::extract::State;
use axum::response::Response;

/// `GET /usage?from=&to=&by=`.
pub(super) async fn summary(
    State(app): State<AppState>,
    caller: Caller,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let username = caller.usage_scope()?.map(str::to_owned);
    let query = UsageQuery::from_query(query.iter())?;
    ok(app.shared.driver.usage(query, username).await?)
}

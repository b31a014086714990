//! "Why not" (API.md): `POST /match`, a dry run of requirements, and
//! `GET /allocate/{id}/explain`, the same answer for a live request.

use super::extract::{IdSegment, JsonText};
use super::ok;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use allocate_core::parse_uuid;
use allocate_core::wire::explain::parse_match_request;
use axum::extract::State;
use axum::response::Response;

/// `POST /match`: how many registered resources match the requirements, how many are free,
/// and why the others are not (users and admins; nothing is allocated).
pub(super) async fn dry_run(
    State(app): State<AppState>,
    caller: Caller,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    caller.require_allocator("/match")?;
    let requirements = parse_match_request(&body, &app.shared.config.engine.limits)?;
    ok(app.shared.driver.explain(requirements).await?)
}

/// `GET /allocate/{id}/explain`: the same for a live request of the caller's (any, for an
/// admin).
pub(super) async fn allocation(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    ok(app.shared.driver.explain_allocation(caller, id).await?)
}

//! `/inventory/`: listing and reading resources, and an admin's maintenance switch.

use super::extract::{IdSegment, JsonText, QueryPairs};
use super::{json_response, ok, ok_bytes, OnePass};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use allocate_core::{parse_maintenance_patch, parse_uuid, InventoryFilter};
use axum::extract::State;
use axum::response::Response;
use std::cell::Cell;

/// Room reserved per resource when writing the inventory (a typical entry is ~270 bytes), so
/// that tens of MB are not copied again at every doubling of the buffer.
const INVENTORY_ENTRY_BYTES: usize = 384;

/// `GET /inventory/`, filtered by the query.
pub(super) async fn list(
    State(app): State<AppState>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let filter = InventoryFilter::from_query(query.iter(), &app.shared.config.engine.limits)?;
    // Written on the driver task from borrowed entries: copying 100,000 entries out first
    // took as long as writing them, and held them all in memory besides the text.
    let body = app
        .shared
        .driver
        .inventory(filter, |entries, count| {
            ok_bytes(
                OnePass(Cell::new(Some(entries))),
                count * INVENTORY_ENTRY_BYTES,
            )
        })
        .await??;
    Ok(json_response(body))
}

/// `GET /inventory/{id}`.
pub(super) async fn get_one(
    State(app): State<AppState>,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "inventory_id")?;
    let entry = app.shared.driver.resource(id).await?;
    ok([entry])
}

/// `PATCH /inventory/{id}`: maintenance on or off, for admins.
pub(super) async fn patch(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    caller.require_admin("PATCH /inventory/{id}")?;
    let id = parse_uuid(&id, "inventory_id")?;
    let reason = parse_maintenance_patch(&body, &app.shared.config.engine.limits)?;
    let entry = app.shared.driver.set_maintenance(id, reason).await?;
    let state = entry.state.as_str();
    tracing::info!(inventory_id = %id, state, by = %caller, "maintenance changed");
    ok(entry)
}

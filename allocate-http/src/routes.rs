//! The HTTP endpoints of the contract, each a thin call into the engine task.

use crate::error::{self, ApiError};
use crate::extract::{IdSegment, JsonText, QueryPairs};
use crate::server::AppState;
use crate::{ws_agent, ws_client};
use allocate_core::{
    ok_envelope, parse_expires_patch, parse_maintenance_patch, parse_uuid, InventoryFilter,
};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, UPGRADE};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;
use uuid::Uuid;

/// Every route, each with and without its trailing slash, and envelope fallbacks.
pub fn router(state: AppState) -> Router {
    let routes: [(&str, MethodRouter<AppState>); 7] = [
        ("/healthz", get(healthz)),
        ("/metrics", get(metrics)),
        ("/inventory", get(list_inventory)),
        ("/inventory/{id}", get(get_resource).patch(patch_resource)),
        ("/allocate", get(allocate_socket_or_list)),
        (
            "/allocate/{id}",
            get(get_allocation)
                .delete(delete_allocation)
                .patch(patch_allocation),
        ),
        ("/agent", get(agent_socket)),
    ];
    let mut router = Router::new().route("/", get(index));
    for (path, method_router) in routes {
        router = router
            .route(path, method_router.clone())
            .route(&format!("{path}/"), method_router);
    }
    router
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route)
        .with_state(state)
}

/// `{"status": 200, "data": data}` as a JSON response.
fn ok(data: impl Serialize) -> Result<Response, ApiError> {
    let data = serde_json::to_value(data).map_err(|_| ApiError::Internal("serializing a reply"))?;
    Ok(Json(ok_envelope(data)).into_response())
}

fn not_found(kind: &'static str, id: Uuid) -> ApiError {
    allocate_core::Error::NotFound {
        kind,
        id: id.to_string(),
    }
    .into()
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

async fn healthz(State(app): State<AppState>) -> Result<Response, ApiError> {
    app.engine.call(|_| ()).await?;
    ok("ok")
}

async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
    let text = app.engine.call(|s| s.render_metrics()).await?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

async fn list_inventory(
    State(app): State<AppState>,
    query: QueryPairs,
) -> Result<Response, ApiError> {
    let filter = InventoryFilter::from_query(query.iter(), &app.config.engine.limits)?;
    let entries = app
        .engine
        .call(move |s| {
            s.engine()
                .inventory()
                .filter(|e| filter.matches(e))
                .collect::<Vec<_>>()
        })
        .await?;
    ok(entries)
}

async fn get_resource(
    State(app): State<AppState>,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "inventory_id")?;
    let entry = app.engine.call(move |s| s.engine().resource(&id)).await?;
    ok([entry.ok_or_else(|| not_found("resource", id))?])
}

async fn patch_resource(
    State(app): State<AppState>,
    IdSegment(id): IdSegment,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "inventory_id")?;
    let reason = parse_maintenance_patch(&body, &app.config.engine.limits)?;
    let entry = app
        .engine
        .call(move |s| {
            let engine = s.engine_mut();
            engine.set_maintenance(crate::clock::now(), id, reason)?;
            engine
                .resource(&id)
                .ok_or_else(|| not_found("resource", id))
        })
        .await??;
    tracing::info!(inventory_id = %id, state = entry.state.as_str(), "maintenance changed");
    ok(entry)
}

/// `GET /allocate/`: a websocket upgrade opens an allocation; a plain GET lists them.
async fn allocate_socket_or_list(
    State(app): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if !headers.contains_key(UPGRADE) {
        let all = app.engine.call(|s| s.engine().allocations()).await?;
        return ok(all);
    }
    let upgrade = upgrade.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(sized(upgrade, &app).on_upgrade(move |ws| ws_client::serve(ws, app)))
}

async fn agent_socket(
    State(app): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::invalid(format!(
            "/agent/ is a websocket endpoint: {}",
            e.body_text()
        ))
    })?;
    Ok(sized(upgrade, &app).on_upgrade(move |ws| ws_agent::serve(ws, app)))
}

/// Applies the message size limit: a larger message closes the socket with 1009.
fn sized(upgrade: WebSocketUpgrade, app: &AppState) -> WebSocketUpgrade {
    let max = app.config.message_bytes_max;
    upgrade.max_message_size(max).max_frame_size(max)
}

async fn get_allocation(
    State(app): State<AppState>,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let info = app.engine.call(move |s| s.engine().allocation(&id)).await?;
    ok(info.ok_or_else(|| not_found("allocation", id))?)
}

async fn delete_allocation(
    State(app): State<AppState>,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    app.engine
        .call(move |s| s.engine_mut().release(crate::clock::now(), id))
        .await??;
    tracing::info!(allocation_id = %id, "allocation deleted");
    ok("deleted allocation")
}

async fn patch_allocation(
    State(app): State<AppState>,
    IdSegment(id): IdSegment,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let expires = parse_expires_patch(&body, &app.config.engine.limits)?;
    let info = app
        .engine
        .call(move |s| {
            let engine = s.engine_mut();
            engine.set_expires(crate::clock::now(), id, expires)?;
            engine
                .allocation(&id)
                .ok_or_else(|| not_found("allocation", id))
        })
        .await??;
    tracing::info!(allocation_id = %id, expires = info.expires, "lease changed");
    ok(info)
}

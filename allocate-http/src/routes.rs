//! The HTTP endpoints of the contract, each a thin call into the engine task. Every route
//! but `/` (and the dashboard's files), `/healthz` and `/metrics` passes
//! [`auth::authenticate`] first; handlers check the caller's role (see [`crate::auth`]).

use crate::auth::{self, Caller};
use crate::error::{self, ApiError};
use crate::extract::{IdSegment, JsonText, QueryPairs};
use crate::server::AppState;
use crate::{dashboard, ws_agent, ws_client};
use allocate_core::wire::Envelope;
use allocate_core::{
    parse_expires_patch, parse_maintenance_patch, parse_uuid, AllocationInfo, Engine,
    InventoryFilter,
};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, UPGRADE};
use axum::http::HeaderMap;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use serde::{Serialize, Serializer};
use std::cell::Cell;
use uuid::Uuid;

/// Every route, each with and without its trailing slash, and envelope fallbacks.
pub fn router(state: AppState) -> Router {
    let guarded: [(&str, MethodRouter<AppState>); 6] = [
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
        ("/dashboard/feed", get(dashboard::feed)),
    ];
    // Open: no credentials or usernames in their answers (the dashboard's data needs a token).
    let open: [(&str, MethodRouter<AppState>); 2] =
        [("/healthz", get(healthz)), ("/metrics", get(metrics))];
    let authenticate = middleware::from_fn_with_state(state.clone(), auth::authenticate);
    let router = with_slashes(Router::new(), guarded)
        .route_layer(authenticate)
        .merge(dashboard::page_routes());
    with_slashes(router, open)
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route)
        .with_state(state)
}

/// Adds each route with and without its trailing slash.
fn with_slashes<const N: usize>(
    mut router: Router<AppState>,
    routes: [(&str, MethodRouter<AppState>); N],
) -> Router<AppState> {
    for (path, method_router) in routes {
        router = router
            .route(path, method_router.clone())
            .route(&format!("{path}/"), method_router);
    }
    router
}

/// `{"status": 200, "data": data}` as a JSON response.
///
/// Serialized straight to bytes: going through a `serde_json::Value` tree first made
/// `GET /inventory/` of 100,000 resources take seconds and hundreds of MiB.
fn ok(data: impl Serialize) -> Result<Response, ApiError> {
    Ok(json_response(ok_bytes(data, 256)?))
}

/// The bytes of `{"status": 200, "data": data}`, in a buffer that starts with `capacity` bytes.
fn ok_bytes(data: impl Serialize, capacity: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(capacity);
    Envelope::Ok(data)
        .write(&mut out)
        .map_err(|_| ApiError::Internal("serializing a reply"))?;
    Ok(out)
}

/// Room reserved per resource when writing the inventory (a typical entry is ~270 bytes), so
/// that tens of MB are not copied again at every doubling of the buffer.
const INVENTORY_ENTRY_BYTES: usize = 384;

fn json_response(body: Vec<u8>) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// Serializes what an iterator yields as a JSON array, without collecting it first.
struct OnePass<I>(Cell<Option<I>>);

impl<I: Iterator<Item: Serialize>> Serialize for OnePass<I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.take().into_iter().flatten())
    }
}

fn not_found(kind: &'static str, id: Uuid) -> ApiError {
    allocate_core::Error::NotFound {
        kind,
        id: id.to_string(),
    }
    .into()
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
    // Written on the engine task from borrowed entries: copying 100,000 entries out first
    // took as long as writing them, and held them all in memory besides the text.
    let body = app
        .engine
        .call(move |s| {
            let capacity = s.engine().resource_count() * INVENTORY_ENTRY_BYTES;
            let entries = s.engine_mut().inventory_filtered(&filter);
            ok_bytes(OnePass(Cell::new(Some(entries))), capacity)
        })
        .await??;
    Ok(json_response(body))
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
    caller: Caller,
    IdSegment(id): IdSegment,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    caller.require_admin("PATCH /inventory/{id}")?;
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
    let state = entry.state.as_str();
    tracing::info!(inventory_id = %id, state, by = %caller, "maintenance changed");
    ok(entry)
}

/// `GET /allocate/`: a websocket upgrade opens an allocation; a plain GET lists the
/// caller's allocations (every one for an admin).
async fn allocate_socket_or_list(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require_allocator("/allocate/")?;
    if !headers.contains_key(UPGRADE) {
        let mine = app
            .engine
            .call(move |s| {
                let mut all = s.engine().allocations();
                all.retain(|a| caller.sees(&a.username));
                all
            })
            .await?;
        return ok(mine);
    }
    let upgrade = upgrade.map_err(|e| ApiError::invalid(e.body_text()))?;
    Ok(sized(upgrade, &app).on_upgrade(move |ws| ws_client::serve(ws, app, caller)))
}

async fn agent_socket(
    State(app): State<AppState>,
    caller: Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require_agent()?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::invalid(format!(
            "/agent/ is a websocket endpoint: {}",
            e.body_text()
        ))
    })?;
    Ok(sized(upgrade, &app).on_upgrade(move |ws| ws_agent::serve(ws, app, caller)))
}

/// Read buffer of each websocket. tungstenite's default (128 KiB) is zeroed before every
/// read, which cost a fifth of the server's CPU in the allocation cycle, and is resident
/// memory per socket (1.3 GB for 10,000 agents). Our messages are small; a larger one is
/// still read whole, in more steps.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// Applies the message size limit (a larger message closes the socket with 1009), and
/// selects our subprotocol when a browser offered its token as another.
fn sized(upgrade: WebSocketUpgrade, app: &AppState) -> WebSocketUpgrade {
    let max = app.config.message_bytes_max;
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .protocols([auth::SUBPROTOCOL])
}

/// The allocation `id` if `caller` owns it or is an admin: 403 for an agent, 404 when
/// unknown, 403 when another user's.
fn owned(engine: &Engine, caller: &Caller, id: Uuid) -> Result<AllocationInfo, ApiError> {
    caller.require_allocator("/allocate/{id}")?;
    let info = engine
        .allocation(&id)
        .ok_or_else(|| not_found("allocation", id))?;
    caller.check_owner(&info)?;
    Ok(info)
}

async fn get_allocation(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let info = app
        .engine
        .call(move |s| owned(s.engine(), &caller, id))
        .await??;
    ok(info)
}

async fn delete_allocation(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let by = caller.to_string();
    app.engine
        .call(move |s| {
            owned(s.engine(), &caller, id)?;
            s.engine_mut().release(crate::clock::now(), id)?;
            Ok::<_, ApiError>(())
        })
        .await??;
    tracing::info!(allocation_id = %id, by, "allocation deleted");
    ok("deleted allocation")
}

async fn patch_allocation(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let expires = parse_expires_patch(&body, &app.config.engine.limits)?;
    let by = caller.to_string();
    let info = app
        .engine
        .call(move |s| {
            owned(s.engine(), &caller, id)?;
            let engine = s.engine_mut();
            engine.set_expires(crate::clock::now(), id, expires)?;
            engine
                .allocation(&id)
                .ok_or_else(|| not_found("allocation", id))
        })
        .await??;
    tracing::info!(allocation_id = %id, expires = info.expires, by, "lease changed");
    ok(info)
}

//! The HTTP endpoints of the contract, each a thin call into the driver. Every route but
//! `/` (and the dashboard's files), `/healthz` and `/metrics` passes
//! [`authn::authenticate`] first; handlers check the caller's role (see [`crate::auth`]).
//!
//! Submodules: [`authn`] and [`extract`] (what handlers take from a request), then the
//! handlers ([`inventory`], [`allocations`], [`explain`], [`dashboard`], [`admin`], [`usage`]) and the page's files
//! ([`assets`]).

mod admin;
mod allocations;
mod assets;
mod authn;
mod dashboard;
mod explain;
mod extract;
mod inventory;
mod usage;

use crate::access;
use crate::connections::Gate;
use crate::error::{self, ApiError};
use crate::metrics::{self, ServerMetrics};
use crate::state::{AppState, StandbyState};
use allocate_core::wire::Envelope;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde::{Serialize, Serializer};
use std::cell::Cell;
use std::time::Instant;

/// Every route, each with and without its trailing slash, and envelope fallbacks.
pub fn router(state: AppState) -> Router {
    let guarded: [(&str, MethodRouter<AppState>); 11] = [
        ("/inventory", get(inventory::list)),
        (
            "/inventory/{id}",
            get(inventory::get_one).patch(inventory::patch),
        ),
        ("/allocate", get(allocations::socket_or_list)),
        (
            "/allocate/{id}",
            get(allocations::get_one)
                .delete(allocations::delete)
                .patch(allocations::patch),
        ),
        ("/allocate/{id}/explain", get(explain::allocation)),
        ("/match", post(explain::dry_run)),
        ("/agent", get(allocations::agent_socket)),
        ("/dashboard/feed", get(dashboard::feed)),
        ("/dashboard/history", get(dashboard::history)),
        ("/admin/backup", post(admin::backup)),
        ("/usage", get(usage::summary)),
    ];
    // Open: no credentials or usernames in their answers (the dashboard's data needs a token).
    let open: [(&str, MethodRouter<AppState>); 2] =
        [("/healthz", get(healthz)), ("/metrics", get(metrics))];
    let authenticate = middleware::from_fn_with_state(state.clone(), authn::authenticate);
    let router = with_slashes(Router::new(), guarded)
        .route_layer(authenticate)
        .merge(assets::page_routes());
    with_slashes(router, open)
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn(access::log_requests))
        .with_state(state)
}

/// What a standby serves while it waits to lead: `503 not_leader` naming the leader's
/// advertised URL, to every request (`/healthz` and websocket upgrades included) but
/// `GET /metrics`.
pub fn standby_router(state: StandbyState) -> Router {
    let router = Router::new().fallback(not_leader);
    with_slashes(router, [("/metrics", get(standby_metrics))])
        .layer(middleware::from_fn(access::log_requests))
        .with_state(state)
}

/// The standby's answer.
async fn not_leader(State(standby): State<StandbyState>) -> ApiError {
    ApiError::NotLeader {
        leader: standby.leader.borrow().clone(),
    }
}

/// `GET /metrics` of a standby: its connections, role and lag, build and process.
async fn standby_metrics(State(standby): State<StandbyState>) -> Response {
    let mut text = String::new();
    exposition(&mut text, &standby.connections, &standby.metrics)
}

/// Adds each route with and without its trailing slash.
fn with_slashes<S: Clone + Send + Sync + 'static, const N: usize>(
    mut router: Router<S>,
    routes: [(&str, MethodRouter<S>); N],
) -> Router<S> {
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

/// A `200` with a JSON body.
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

/// `GET /healthz`: `ok` once the driver answers.
async fn healthz(State(app): State<AppState>) -> Result<Response, ApiError> {
    app.shared.driver.ping().await?;
    ok("ok")
}

/// Counts every request by its route's template (`/allocate/{id}`, never the raw path, so
/// that the series are bounded), method and status, and how long its answer's head took.
async fn count_requests(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route =
        req.extensions()
            .get::<MatchedPath>()
            .map_or(metrics::UNMATCHED_ROUTE.to_owned(), |path| {
                // Each route is served with and without its trailing slash: one series for both.
                let path = path.as_str();
                path.strip_suffix('/')
                    .filter(|p| !p.is_empty())
                    .unwrap_or(path)
                    .to_owned()
            });
    let response = next.run(req).await;
    let status = response.status().as_u16();
    app.metrics
        .observe_request(method.as_str(), &route, status, started.elapsed());
    response
}

/// `GET /metrics`: the Prometheus exposition.
async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
    let mut text = app.shared.driver.metrics().await?;
    Ok(exposition(&mut text, &app.connections, &app.metrics))
}

/// `text`, then the connection families of `connections` and those of `server`, as the
/// answer to `GET /metrics`.
fn exposition(text: &mut String, connections: &Gate, server: &ServerMetrics) -> Response {
    let counts = connections.counts();
    metrics::render_connections(text, counts.open, counts.refused_total, counts.refused_peer);
    server.render(text);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        std::mem::take(text),
    )
        .into_response()
}

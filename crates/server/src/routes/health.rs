//! `GET /health`: the process and every engine loop are alive. `GET /ready`: at least one model
//! is loaded and warmed up (it answered a request at load), and the server is not draining.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok`, `ready`, or why not (`engine stopped`, `draining`, `no model loaded`).
    status: &'static str,
    /// The models whose engine stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    models: Vec<String>,
}

fn status(code: StatusCode, status: &'static str) -> (StatusCode, Json<Status>) {
    (code, Json(Status { status, models: Vec::new() }))
}

#[utoipa::path(get, path = "/health", operation_id = "getHealth", tag = "operations", security(()),
    responses((status = 200, description = "The process and every engine are alive.", body = Status), (status = 503, description = "An engine stopped.", body = Status)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Status>) {
    let dead: Vec<String> = state.models.all().iter().filter(|m| m.engine.handle().is_some_and(|h| !h.is_alive())).map(|m| m.id()).collect();
    if dead.is_empty() {
        status(StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Status { status: "engine stopped", models: dead }))
    }
}

/// Prometheus text exposition of every engine's and request's metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition (needs a key when the server runs with `--metrics-require-key`).", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> (StatusCode, [(axum::http::HeaderName, &'static str); 1], String) {
    let content_type = [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    match &state.metrics {
        Some(handle) => (StatusCode::OK, content_type, handle.render()),
        None => (StatusCode::NOT_FOUND, content_type, "metrics are not enabled in this process\n".into()),
    }
}

#[utoipa::path(get, path = "/ready", operation_id = "getReady", tag = "operations", security(()),
    responses((status = 200, description = "A model is loaded and warmed up, and the server is not draining.", body = Status), (status = 503, description = "Not ready: draining or no model.", body = Status)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Status>) {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        status(StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if state.models.is_empty() {
        status(StatusCode::SERVICE_UNAVAILABLE, "no model loaded")
    } else {
        status(StatusCode::OK, "ready")
    }
}

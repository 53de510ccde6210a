//! `GET /health`: the process and every engine loop are alive. `GET /ready`: at least one model
//! is loaded and warmed up (it answered a request at load), and the server is not draining.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let dead: Vec<String> = state.models.all().iter().filter(|m| m.engine.handle().is_some_and(|h| !h.is_alive())).map(|m| m.id()).collect();
    if dead.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "engine stopped", "models": dead})))
    }
}

/// Prometheus text exposition of every engine's and request's metrics.
pub async fn metrics(State(state): State<AppState>) -> (StatusCode, [(axum::http::HeaderName, &'static str); 1], String) {
    let content_type = [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    match &state.metrics {
        Some(handle) => (StatusCode::OK, content_type, handle.render()),
        None => (StatusCode::NOT_FOUND, content_type, "metrics are not enabled in this process\n".into()),
    }
}

pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})))
    } else if state.models.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "no model loaded"})))
    } else {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    }
}

//! HTTP handlers and the router that maps paths to them. Each handler parses at the boundary
//! (JSON → validated request → token ids), talks to an engine through its handle, and answers
//! errors in OpenAI's shape.

pub mod batches;
pub mod chat;
pub mod completions;
pub mod files;
pub mod generation;
pub mod health;
pub mod json_body;
pub mod messages;
pub mod models;
pub mod responses;
pub mod routing;
pub mod tokenize;
pub mod ui;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::AppState;
use crate::auth::{require_key, AuthPolicy, Scope};
use crate::openai::error::ApiError;

/// Largest request body accepted (prompts of a full context fit easily).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The OpenAI-compatible API (and health, metrics, tokenize) over the served models.
pub fn router(state: AppState) -> Router {
    let mut open_paths = vec!["/", "/health", "/ready"];
    if !state.metrics_require_key {
        open_paths.push("/metrics");
    }
    let policy = AuthPolicy { keys: state.keys.clone(), scope: Scope::Inference, open_paths };
    let max_file_bytes = state.batches.as_ref().map_or(MAX_BODY_BYTES, |b| b.max_file_bytes);
    let router = Router::new()
        .route("/", get(ui::index))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get_one))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/responses/{id}", get(responses::get_one).delete(responses::delete))
        .route("/v1/files", get(files::list).post(files::upload).layer(DefaultBodyLimit::max(max_file_bytes)))
        .route("/v1/files/{id}", get(files::get_one).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/batches", get(batches::list).post(batches::create))
        .route("/v1/batches/{id}", get(batches::get_one))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(routing::tag_model_version))
        .layer(axum::middleware::from_fn_with_state(policy, require_key))
        .with_state(state.clone());
    // Batch lines run through this same router.
    if let Some(batches) = &state.batches {
        batches.set_router(router.clone());
    }
    router
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self, self.to_json())
    }
}

/// An error's status (and `Retry-After`) with `body`, the error in the endpoint's own shape.
pub fn error_response(e: &ApiError, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = e.retry_after_secs {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

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
use axum::{Extension, Json, Router};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{require_key, AuthPolicy, Scope};
use crate::openai::error::ApiError;
use crate::openapi::{Document, PublicApi};

/// Largest request body accepted (prompts of a full context fit easily).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The OpenAI-compatible API (and health, metrics, tokenize) over the served models, with its
/// OpenAPI document at `/openapi.json` (built from the same route annotations).
pub fn router(state: AppState) -> Router {
    let (router, doc) = routes(&state).split_for_parts();
    router_with_document(state, router, Document::new(doc))
}

/// Every public route; each `routes!` entry takes its path and method from the handler's
/// `#[utoipa::path]`.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let max_file_bytes = state.batches.as_ref().map_or(MAX_BODY_BYTES, |b| b.max_file_bytes);
    let (schemas, paths, files) = routes!(files::list, files::upload);
    let files = (schemas, paths, files.layer(DefaultBodyLimit::max(max_file_bytes)));
    OpenApiRouter::with_openapi(PublicApi::openapi())
        .routes(routes!(ui::index))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .routes(routes!(crate::openapi::public_document))
        .routes(routes!(models::list))
        .routes(routes!(models::get_one))
        .routes(routes!(tokenize::tokenize))
        .routes(routes!(tokenize::detokenize))
        .routes(routes!(completions::completions))
        .routes(routes!(chat::chat_completions))
        .routes(routes!(responses::create))
        .routes(routes!(messages::messages))
        .routes(routes!(responses::get_one, responses::delete))
        .routes(files)
        .routes(routes!(files::get_one, files::delete))
        .routes(routes!(files::content))
        .routes(routes!(batches::list, batches::create))
        .routes(routes!(batches::get_one))
        .routes(routes!(batches::cancel))
}

fn router_with_document(state: AppState, router: Router<AppState>, doc: Document) -> Router {
    let mut open_paths = vec!["/", "/health", "/ready", "/openapi.json"];
    if !state.metrics_require_key {
        open_paths.push("/metrics");
    }
    let policy = AuthPolicy { keys: state.keys.clone(), scope: Scope::Inference, open_paths };
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(routing::tag_model_version))
        .layer(axum::middleware::from_fn_with_state(policy, require_key))
        .layer(Extension(doc))
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

//! `/v1/batches`: create over an uploaded file, retrieve, list and cancel, in OpenAI's shapes.
//! The work itself is `batch::runner`'s.

use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::files::{batch_api, caller};
use super::json_body::JsonBody;
use crate::app::AppState;
use crate::auth::KeyName;
use crate::batch::{runner, Batch, ENDPOINTS};
use crate::openai::error::ApiError;
use crate::openai::types::ListPage;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// An uploaded file with purpose `batch`.
    input_file_id: String,
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/responses` or `/v1/messages`.
    endpoint: String,
    /// `24h`.
    completion_window: String,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[utoipa::path(post, path = "/v1/batches", operation_id = "createBatch", tag = "batch", request_body = CreateBatch, responses((status = 200, description = "The batch, validating.", body = Batch)))]
pub async fn create(State(state): State<AppState>, key: Option<Extension<KeyName>>, JsonBody(req): JsonBody<CreateBatch>) -> Result<Json<Batch>, ApiError> {
    let api = batch_api(&state)?;
    if !ENDPOINTS.contains(&req.endpoint.as_str()) {
        return Err(ApiError::invalid("endpoint", format!("endpoint must be one of {}", ENDPOINTS.join(", "))));
    }
    if req.completion_window != "24h" {
        return Err(ApiError::invalid("completion_window", "completion_window must be \"24h\""));
    }
    let input = api.files.get(&req.input_file_id, caller(&key)).ok_or_else(|| ApiError::invalid("input_file_id", format!("no file {:?}", req.input_file_id)))?;
    if input.purpose != "batch" {
        return Err(ApiError::invalid("input_file_id", "the input file's purpose must be \"batch\""));
    }
    let stored = runner::new_batch(&api, &input.id, &req.endpoint, &req.completion_window, req.metadata, caller(&key).map(str::to_string));
    let batch = stored.batch.clone();
    api.insert(stored).map_err(|e| ApiError::internal(format!("cannot store the batch: {e}")))?;
    runner::start(state.clone(), api, batch.id.clone());
    Ok(Json(batch))
}

fn no_batch(id: &str) -> ApiError {
    ApiError::new(404, "invalid_request_error", format!("No such Batch object: {id}")).with_param("id")
}

#[utoipa::path(get, path = "/v1/batches/{id}", operation_id = "retrieveBatch", tag = "batch", params(("id" = String, Path, description = "The batch's id.")),
    responses((status = 200, description = "The batch, with its progress.", body = Batch)))]
pub async fn get_one(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<Batch>, ApiError> {
    let stored = batch_api(&state)?.get(&id).filter(|s| s.owner.as_deref() == caller(&key)).ok_or_else(|| no_batch(&id))?;
    Ok(Json(stored.batch))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The id of the batch to list after (the previous page's `last_id`).
    after: Option<String>,
    /// Page size, 1 to 100 (default 20).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/batches", operation_id = "listBatches", tag = "batch", params(ListQuery), responses((status = 200, description = "A page of the caller's batches, oldest first.", body = ListPage<Batch>)))]
pub async fn list(State(state): State<AppState>, key: Option<Extension<KeyName>>, Query(q): Query<ListQuery>) -> Result<Json<ListPage<Batch>>, ApiError> {
    let all = batch_api(&state)?.list(caller(&key));
    let start = q.after.as_ref().and_then(|a| all.iter().position(|b| b.id == *a).map(|i| i + 1)).unwrap_or(0);
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let page: Vec<Batch> = all.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < all.len();
    Ok(Json(ListPage::new(page, |b| &b.id, has_more)))
}

/// Stops starting new lines; those running finish, and the batch ends `cancelled` with their
/// results in its output.
#[utoipa::path(post, path = "/v1/batches/{id}/cancel", operation_id = "cancelBatch", tag = "batch", params(("id" = String, Path, description = "The batch's id.")),
    responses((status = 200, description = "The batch, cancelling.", body = Batch)))]
pub async fn cancel(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<Batch>, ApiError> {
    let api = batch_api(&state)?;
    let stored = api.get(&id).filter(|s| s.owner.as_deref() == caller(&key)).ok_or_else(|| no_batch(&id))?;
    if stored.is_finished() {
        return Err(ApiError::new(409, "invalid_request_error", format!("the batch is already {}", stored.batch.status)).with_param("id"));
    }
    let now = crate::openai::unix_time();
    let stored = api.update(&id, |s| {
        s.batch.status = "cancelling".into();
        s.batch.cancelling_at = Some(now);
    });
    Ok(Json(stored.ok_or_else(|| no_batch(&id))?.batch))
}

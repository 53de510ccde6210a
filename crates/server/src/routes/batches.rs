//! `/v1/batches`: create over an uploaded file, retrieve, list and cancel, in OpenAI's shapes.
//! The work itself is `batch::runner`'s.

use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::files::{batch_api, caller};
use super::json_body::JsonBody;
use crate::app::AppState;
use crate::auth::KeyName;
use crate::batch::{runner, Batch, ENDPOINTS};
use crate::openai::error::ApiError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    metadata: Option<Value>,
}

fn json_of(batch: &Batch) -> Json<Value> {
    Json(serde_json::to_value(batch).unwrap_or_default())
}

pub async fn create(State(state): State<AppState>, key: Option<Extension<KeyName>>, JsonBody(req): JsonBody<CreateBatch>) -> Result<Json<Value>, ApiError> {
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
    Ok(json_of(&batch))
}

fn no_batch(id: &str) -> ApiError {
    ApiError::new(404, "invalid_request_error", format!("No such Batch object: {id}")).with_param("id")
}

pub async fn get_one(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let stored = batch_api(&state)?.get(&id).filter(|s| s.owner.as_deref() == caller(&key)).ok_or_else(|| no_batch(&id))?;
    Ok(json_of(&stored.batch))
}

#[derive(Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list(State(state): State<AppState>, key: Option<Extension<KeyName>>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let all = batch_api(&state)?.list(caller(&key));
    let start = q.after.as_ref().and_then(|a| all.iter().position(|b| b.id == *a).map(|i| i + 1)).unwrap_or(0);
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let page: Vec<&Batch> = all.iter().skip(start).take(limit).collect();
    let has_more = start + page.len() < all.len();
    Ok(Json(json!({"object": "list", "data": page, "first_id": page.first().map(|b| &b.id), "last_id": page.last().map(|b| &b.id), "has_more": has_more})))
}

/// Stops starting new lines; those running finish, and the batch ends `cancelled` with their
/// results in its output.
pub async fn cancel(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
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
    Ok(json_of(&stored.ok_or_else(|| no_batch(&id))?.batch))
}

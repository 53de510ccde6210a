//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::app::{AppState, ServedModel};
use crate::openai::error::ApiError;

fn model_object(m: &ServedModel) -> Value {
    json!({"id": m.name, "object": "model", "created": m.created, "owned_by": "rill", "max_model_len": m.max_model_len})
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let mut data: Vec<Value> = state.models.iter().map(|m| model_object(&m)).collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Json(json!({"object": "list", "data": data}))
}

pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let m = state.models.get(&id).ok_or_else(|| ApiError::not_found_model(&id))?;
    Ok(Json(model_object(&m)))
}

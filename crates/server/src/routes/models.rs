//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape: every name and alias a request
//! may ask for (and, by id, a pinned `name@version`).

use axum::extract::{Path, State};
use axum::Json;

use crate::app::{AppState, ServedModel};
use crate::openai::error::ApiError;
use crate::openai::types::{ModelList, ModelObject};

fn model_object(id: String, m: &ServedModel) -> ModelObject {
    ModelObject::new(id, m.created, "rill".into(), Some(m.max_model_len))
}

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let mut data: Vec<ModelObject> = state.models.listed().into_iter().map(|(id, m)| model_object(id, &m)).collect();
    data.sort_by(|a, b| a.id.cmp(&b.id));
    Json(ModelList::new(data))
}

pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ModelObject>, ApiError> {
    let m = state.models.route(Some(&id)).ok_or_else(|| ApiError::not_found_model(&id))?;
    Ok(Json(model_object(id, &m)))
}

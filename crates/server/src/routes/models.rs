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

#[utoipa::path(get, path = "/v1/models", operation_id = "listModels", tag = "inference", responses((status = 200, description = "Every model name and alias requests may name.", body = ModelList)))]
pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let mut data: Vec<ModelObject> = state.models.listed().into_iter().map(|(id, m)| model_object(id, &m)).collect();
    data.sort_by(|a, b| a.id.cmp(&b.id));
    Json(ModelList::new(data))
}

#[utoipa::path(get, path = "/v1/models/{id}", operation_id = "retrieveModel", tag = "inference", params(("id" = String, Path, description = "A model name, alias or `name@version`.")),
    responses((status = 200, description = "The model.", body = ModelObject)))]
pub async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ModelObject>, ApiError> {
    let m = state.models.route(Some(&id)).ok_or_else(|| ApiError::not_found_model(&id))?;
    Ok(Json(model_object(id, &m)))
}

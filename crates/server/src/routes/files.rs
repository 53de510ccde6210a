//! `/v1/files`: upload (multipart, `purpose=batch`), list, retrieve, content and delete, in
//! OpenAI's shapes.

use axum::extract::{Multipart, Path, Query, State};
use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::KeyName;
use crate::batch::SharedBatchApi;
use crate::openai::error::ApiError;

/// The batch API of this server, or the 404 of a server run without one.
pub fn batch_api(state: &AppState) -> Result<SharedBatchApi, ApiError> {
    state.batches.clone().ok_or_else(|| ApiError::not_found("the Batch API is not enabled on this server"))
}

/// The key a request came with (files and batches belong to it); `None` on an open server.
pub fn caller(key: &Option<Extension<KeyName>>) -> Option<&str> {
    key.as_ref().map(|Extension(k)| k.0.as_str())
}

pub async fn upload(State(state): State<AppState>, key: Option<Extension<KeyName>>, mut form: Multipart) -> Result<Json<Value>, ApiError> {
    let api = batch_api(&state)?;
    let (mut purpose, mut file) = (None, None);
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE { ApiError::too_large() } else { ApiError::invalid("file", e.body_text()) }
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("purpose") => purpose = Some(field.text().await.map_err(bad)?),
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.jsonl").to_string();
                file = Some((name, field.bytes().await.map_err(bad)?));
            }
            _ => {}
        }
    }
    let purpose = purpose.ok_or_else(|| ApiError::invalid("purpose", "purpose is required"))?;
    if purpose != "batch" {
        return Err(ApiError::invalid("purpose", format!("purpose {purpose:?} is not supported: this server takes \"batch\" files")));
    }
    let (name, bytes) = file.ok_or_else(|| ApiError::invalid("file", "file is required"))?;
    let created = api.files.create(&name, &purpose, &bytes, caller(&key)).map_err(|e| ApiError::internal(format!("cannot store the file: {e}")))?;
    Ok(Json(serde_json::to_value(created).unwrap_or_default()))
}

#[derive(Deserialize)]
pub struct ListQuery {
    purpose: Option<String>,
}

pub async fn list(State(state): State<AppState>, key: Option<Extension<KeyName>>, Query(q): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let api = batch_api(&state)?;
    let data: Vec<_> = api.files.list(caller(&key)).into_iter().filter(|f| q.purpose.as_ref().is_none_or(|p| *p == f.purpose)).collect();
    Ok(Json(json!({"object": "list", "data": data, "has_more": false})))
}

fn no_file(id: &str) -> ApiError {
    ApiError::new(404, "invalid_request_error", format!("No such File object: {id}")).with_param("id")
}

pub async fn get_one(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let file = batch_api(&state)?.files.get(&id, caller(&key)).ok_or_else(|| no_file(&id))?;
    Ok(Json(serde_json::to_value(file).unwrap_or_default()))
}

pub async fn content(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let bytes = batch_api(&state)?.files.content(&id, caller(&key)).ok_or_else(|| no_file(&id))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

pub async fn delete(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if !batch_api(&state)?.files.delete(&id, caller(&key)) {
        return Err(no_file(&id));
    }
    Ok(Json(json!({"id": id, "object": "file", "deleted": true})))
}

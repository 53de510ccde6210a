//! `/v1/files`: upload (multipart, `purpose=batch`), list, retrieve, content and delete, in
//! OpenAI's shapes.

use axum::extract::{Multipart, Path, Query, State};
use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::KeyName;
use crate::batch::files::FileObject;
use crate::batch::SharedBatchApi;
use crate::openai::error::ApiError;
use crate::openai::types::ListPage;

/// The batch API of this server, or the 404 of a server run without one.
pub fn batch_api(state: &AppState) -> Result<SharedBatchApi, ApiError> {
    state.batches.clone().ok_or_else(|| ApiError::not_found("the Batch API is not enabled on this server"))
}

/// The key a request came with (files and batches belong to it); `None` on an open server.
pub fn caller(key: &Option<Extension<KeyName>>) -> Option<&str> {
    key.as_ref().map(|Extension(k)| k.0.as_str())
}

/// The multipart form `POST /v1/files` reads.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the form for the OpenAPI document; `upload` reads its fields one by one.
pub struct FileUpload {
    /// `batch`.
    purpose: String,
    /// JSONL: one request per line.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
}

#[utoipa::path(post, path = "/v1/files", operation_id = "createFile", tag = "batch", request_body(content = FileUpload, content_type = "multipart/form-data"),
    responses((status = 200, description = "The stored file.", body = FileObject)))]
pub async fn upload(State(state): State<AppState>, key: Option<Extension<KeyName>>, mut form: Multipart) -> Result<Json<FileObject>, ApiError> {
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
    Ok(Json(created))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only files with this purpose.
    purpose: Option<String>,
}

#[utoipa::path(get, path = "/v1/files", operation_id = "listFiles", tag = "batch", params(ListQuery), responses((status = 200, description = "The caller's files.", body = ListPage<FileObject>)))]
pub async fn list(State(state): State<AppState>, key: Option<Extension<KeyName>>, Query(q): Query<ListQuery>) -> Result<Json<ListPage<FileObject>>, ApiError> {
    let api = batch_api(&state)?;
    let data: Vec<_> = api.files.list(caller(&key)).into_iter().filter(|f| q.purpose.as_ref().is_none_or(|p| *p == f.purpose)).collect();
    Ok(Json(ListPage::new(data, |f| &f.id, false)))
}

fn no_file(id: &str) -> ApiError {
    ApiError::new(404, "invalid_request_error", format!("No such File object: {id}")).with_param("id")
}

#[utoipa::path(get, path = "/v1/files/{id}", operation_id = "retrieveFile", tag = "batch", params(("id" = String, Path, description = "The file's id.")),
    responses((status = 200, description = "The file.", body = FileObject)))]
pub async fn get_one(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<FileObject>, ApiError> {
    Ok(Json(batch_api(&state)?.files.get(&id, caller(&key)).ok_or_else(|| no_file(&id))?))
}

#[utoipa::path(get, path = "/v1/files/{id}/content", operation_id = "downloadFile", tag = "batch", params(("id" = String, Path, description = "The file's id.")),
    responses((status = 200, description = "The file's bytes (a batch's output: one JSON result per line).", content(("application/octet-stream")))))]
pub async fn content(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let bytes = batch_api(&state)?.files.content(&id, caller(&key)).ok_or_else(|| no_file(&id))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct FileDeleted {
    id: String,
    /// Always `file`.
    object: &'static str,
    deleted: bool,
}

#[utoipa::path(delete, path = "/v1/files/{id}", operation_id = "deleteFile", tag = "batch", params(("id" = String, Path, description = "The file's id.")),
    responses((status = 200, description = "The file is gone.", body = FileDeleted)))]
pub async fn delete(State(state): State<AppState>, key: Option<Extension<KeyName>>, Path(id): Path<String>) -> Result<Json<FileDeleted>, ApiError> {
    if !batch_api(&state)?.files.delete(&id, caller(&key)) {
        return Err(no_file(&id));
    }
    Ok(Json(FileDeleted { id, object: "file", deleted: true }))
}

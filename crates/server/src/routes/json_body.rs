//! A JSON body extractor whose rejections are OpenAI-shaped errors: malformed JSON and wrong
//! types are 400s naming what was wrong, a body over the limit is 413, a missing JSON content
//! type is 415 — never axum's plain-text defaults.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::openai::error::ApiError;

pub struct JsonBody<T>(pub T);

/// How long a client has to send the whole body (at most `MAX_BODY_BYTES`): a body trickled in
/// or never finished does not hold a connection and a task forever.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match tokio::time::timeout(BODY_TIMEOUT, axum::Json::<T>::from_request(req, state)).await {
            Ok(Ok(axum::Json(v))) => Ok(JsonBody(v)),
            Ok(Err(rejection)) => Err(rejection_error(rejection)),
            Err(_) => Err(ApiError::new(408, "invalid_request_error", format!("The request body did not arrive within {} seconds.", BODY_TIMEOUT.as_secs())).with_code("timeout")),
        }
    }
}

fn rejection_error(r: JsonRejection) -> ApiError {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::unsupported_media(),
        _ => ApiError::invalid_body(&r.body_text()),
    }
}

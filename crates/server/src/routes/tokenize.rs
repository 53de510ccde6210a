//! `POST /tokenize` and `POST /detokenize` (vLLM's shapes), so clients can count tokens with the
//! server's own tokenizer.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use super::routing::{model_named, VersionTag};
use crate::openai::error::ApiError;
use crate::routes::json_body::JsonBody;

#[derive(Deserialize, ToSchema)]
pub struct TokenizeRequest {
    model: Option<String>,
    prompt: String,
    /// Add the tokenizer's BOS (and similar) tokens, as a completion prompt would (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    add_special_tokens: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TokenizeResponse {
    tokens: Vec<u32>,
    count: usize,
    max_model_len: usize,
}

#[derive(Deserialize, ToSchema)]
pub struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct DetokenizeResponse {
    prompt: String,
}

fn yes() -> bool {
    true
}

#[utoipa::path(post, path = "/tokenize", operation_id = "tokenize", tag = "inference", request_body = TokenizeRequest, responses((status = 200, description = "The prompt's token ids under the model's tokenizer.", body = TokenizeResponse)))]
pub async fn tokenize(State(state): State<AppState>, tag: VersionTag, JsonBody(req): JsonBody<TokenizeRequest>) -> Result<Json<TokenizeResponse>, ApiError> {
    let m = model_named(&state, &tag, req.model.as_deref())?;
    let tokens = m.tokenizer.encode(&req.prompt, req.add_special_tokens).map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
    Ok(Json(TokenizeResponse { count: tokens.len(), tokens, max_model_len: m.max_model_len }))
}

#[utoipa::path(post, path = "/detokenize", operation_id = "detokenize", tag = "inference", request_body = DetokenizeRequest, responses((status = 200, description = "The text of the token ids.", body = DetokenizeResponse)))]
pub async fn detokenize(State(state): State<AppState>, tag: VersionTag, JsonBody(req): JsonBody<DetokenizeRequest>) -> Result<Json<DetokenizeResponse>, ApiError> {
    let m = model_named(&state, &tag, req.model.as_deref())?;
    if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= m.vocab_size) {
        return Err(ApiError::invalid("tokens", format!("token id {bad} is outside the vocabulary of {}", m.vocab_size)));
    }
    Ok(Json(DetokenizeResponse { prompt: m.tokenizer.decode(&req.tokens, false) }))
}

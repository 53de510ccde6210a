//! `POST /tokenize` and `POST /detokenize` (vLLM's shapes), so clients can count tokens with the
//! server's own tokenizer.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use super::routing::{model_named, VersionTag};
use crate::openai::error::ApiError;
use crate::routes::json_body::JsonBody;

#[derive(Deserialize)]
pub struct TokenizeRequest {
    model: Option<String>,
    prompt: String,
    #[serde(default = "yes")]
    add_special_tokens: bool,
}

#[derive(Deserialize)]
pub struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

fn yes() -> bool {
    true
}

pub async fn tokenize(State(state): State<AppState>, tag: VersionTag, JsonBody(req): JsonBody<TokenizeRequest>) -> Result<Json<Value>, ApiError> {
    let m = model_named(&state, &tag, req.model.as_deref())?;
    let tokens = m.tokenizer.encode(&req.prompt, req.add_special_tokens).map_err(|e| ApiError::invalid("prompt", e.to_string()))?;
    Ok(Json(json!({"tokens": tokens, "count": tokens.len(), "max_model_len": m.max_model_len})))
}

pub async fn detokenize(State(state): State<AppState>, tag: VersionTag, JsonBody(req): JsonBody<DetokenizeRequest>) -> Result<Json<Value>, ApiError> {
    let m = model_named(&state, &tag, req.model.as_deref())?;
    if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= m.vocab_size) {
        return Err(ApiError::invalid("tokens", format!("token id {bad} is outside the vocabulary of {}", m.vocab_size)));
    }
    Ok(Json(json!({"prompt": m.tokenizer.decode(&req.tokens, false)})))
}

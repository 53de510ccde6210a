//! A request's `model` to the loaded model that answers it, and the `x-rill-model-version`
//! header that tells the client which version did (streams included: headers go first).

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::app::{AppState, ServedModel};
use crate::engine_slot::InFlight;
use crate::openai::error::ApiError;

pub const VERSION_HEADER: &str = "x-rill-model-version";

/// Where a handler leaves the version it routed to, for the response header.
#[derive(Clone, Default)]
pub struct VersionTag(Arc<OnceLock<String>>);

/// Gives each request a [`VersionTag`] and turns what the handler put there into the header.
pub async fn tag_model_version(mut req: Request, next: Next) -> Response {
    let tag = VersionTag::default();
    req.extensions_mut().insert(tag.clone());
    let mut resp = next.run(req).await;
    if let Some(v) = tag.0.get().and_then(|v| HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert(VERSION_HEADER, v);
    }
    resp
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for VersionTag {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<VersionTag, Self::Rejection> {
        Ok(parts.extensions.get::<VersionTag>().cloned().unwrap_or_default())
    }
}

/// The model routed to, awake, and the name the response's `model` echoes (what the client
/// asked for). It holds the request's place, which keeps the engine awake.
pub struct Routed {
    pub model: Arc<ServedModel>,
    pub echo: String,
    pub handle: rill_engine::EngineHandle,
    pub place: InFlight,
}

impl Deref for Routed {
    type Target = ServedModel;

    fn deref(&self) -> &ServedModel {
        &self.model
    }
}

/// The model that answers `asked`, its version noted for the response header. A model whose
/// engine sleeps is started first (the request waits).
pub async fn model_for(state: &AppState, tag: &VersionTag, asked: Option<&str>) -> Result<Routed, ApiError> {
    let model = model_named(state, tag, asked)?;
    let echo = asked.filter(|a| !a.is_empty()).map_or_else(|| model.name.clone(), str::to_string);
    let place = model.engine.enter();
    let handle = model.engine.wake().await.map_err(|e| ApiError::unavailable(format!("model {}: {e}", model.id())))?;
    Ok(Routed { model, echo, handle, place })
}

/// The model that answers `asked`, asleep or not (for what needs only its tokenizer).
pub fn model_named(state: &AppState, tag: &VersionTag, asked: Option<&str>) -> Result<Arc<ServedModel>, ApiError> {
    let model = state.model(asked).ok_or_else(|| ApiError::not_found_model(asked.unwrap_or("")))?;
    let _ = tag.0.set(model.version.clone());
    Ok(model)
}

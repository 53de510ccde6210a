//! Errors in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with the same
//! statuses: the API's one error type (`ApiError`) rendered for this endpoint.

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::openai::error::ApiError;

/// The body of an error response on the Messages API (Anthropic's shape).
#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorResponse<'a> {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub error: AnthropicErrorObject<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorObject<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub message: &'a str,
}

#[derive(Debug)]
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> AnthropicError {
        AnthropicError(e)
    }
}

impl AnthropicError {
    /// Anthropic's error types by status.
    fn kind(&self) -> &'static str {
        match self.0.status {
            400 | 405 | 415 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The body; also the `data` of a stream's `error` event. Anthropic's errors have no
    /// `param`: the field at fault leads the message.
    pub fn to_json(&self) -> Value {
        let message = match &self.0.param {
            Some(p) => format!("{p}: {}", self.0.message),
            None => self.0.message.clone(),
        };
        let error = AnthropicErrorObject { kind: self.kind(), message: &message };
        serde_json::to_value(AnthropicErrorResponse { kind: "error", error }).unwrap_or_default()
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        crate::routes::error_response(&self.0, self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_to_anthropic_types_and_the_param_leads() {
        let e = AnthropicError(ApiError::invalid("max_tokens", "max_tokens is required"));
        assert_eq!(e.to_json(), json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: max_tokens is required"}}));
        assert_eq!(AnthropicError(ApiError::not_found_model("x")).kind(), "not_found_error");
        assert_eq!(AnthropicError(ApiError::overloaded(1)).kind(), "overloaded_error");
    }
}

//! `ApiError`: the one error every HTTP handler answers with, in OpenAI's body shape
//! `{"error":{"message","type","param","code"}}` (`param` and `code` are `null` when absent, as
//! OpenAI sends them, because SDKs read those keys unconditionally).
//!
//! Types follow what OpenAI itself returns rather than inventing new ones: every client-side
//! failure is `invalid_request_error` (an unknown model is a 404 of that type with code
//! `model_not_found`), server-side ones are `server_error`. SDKs pick their exception class from
//! the HTTP status, so the status carries the distinction.

#[cfg(test)]
use serde::de::DeserializeOwned;
#[cfg(test)]
use serde_json::{json, Map};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

pub const INVALID_REQUEST: &str = "invalid_request_error";
pub const SERVER_ERROR: &str = "server_error";

/// The body of every error response (OpenAI's shape).
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    /// `invalid_request_error` or `server_error`; the HTTP status says which kind of failure.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The request field at fault, or `null`.
    #[schema(required)]
    pub param: Option<&'a str>,
    /// A machine-readable reason (`model_not_found`, `context_length_exceeded`), or `null`.
    #[schema(required)]
    pub code: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    pub message: String,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// The request field at fault (`temperature`, `messages[2].content`), when there is one.
    pub param: Option<String>,
    /// A machine-readable reason (`context_length_exceeded`, `model_not_found`).
    pub code: Option<String>,
    /// For 503s: the `Retry-After` header the HTTP layer should send.
    pub retry_after_secs: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after_secs: None }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> ApiError {
        self.code = Some(code.into());
        self
    }

    /// 400 for a request field that is present but wrong (or required and missing).
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(400, INVALID_REQUEST, message).with_param(param)
    }

    /// 400 `context_length_exceeded`, worded like OpenAI's. `max_tokens` is what was asked
    /// for; `None` means the prompt alone leaves no room for a single generated token.
    pub fn context_length_exceeded(max_model_len: usize, prompt_tokens: usize, max_tokens: Option<usize>) -> ApiError {
        let message = match max_tokens {
            Some(m) => format!(
                "This model's maximum context length is {max_model_len} tokens. However, you requested {} tokens \
                 ({prompt_tokens} in the prompt, {m} for the completion). Please reduce the length of the prompt \
                 or the completion.",
                prompt_tokens.saturating_add(m)
            ),
            None => format!(
                "This model's maximum context length is {max_model_len} tokens. However, the prompt has \
                 {prompt_tokens} tokens, leaving no room for the completion. Please reduce the length of the prompt."
            ),
        };
        ApiError::new(400, INVALID_REQUEST, message).with_code("context_length_exceeded")
    }

    /// 404 for a model name that is not served (OpenAI's exact type and code).
    pub fn not_found_model(name: impl Into<String>) -> ApiError {
        let name = name.into();
        ApiError::new(404, INVALID_REQUEST, format!("The model `{name}` does not exist."))
            .with_param("model")
            .with_code("model_not_found")
    }

    /// 404 for anything else (an unknown route).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, INVALID_REQUEST, message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, INVALID_REQUEST, "Method not allowed for this endpoint.")
    }

    pub fn unsupported_media() -> ApiError {
        ApiError::new(415, INVALID_REQUEST, "Expected a request with `Content-Type: application/json`.")
            .with_code("unsupported_media_type")
    }

    pub fn too_large() -> ApiError {
        ApiError::new(413, INVALID_REQUEST, "The request body is too large.").with_code("request_too_large")
    }

    /// 503 with `Retry-After`: the server is at capacity, the request was not started.
    pub fn overloaded(retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(503, SERVER_ERROR, "The server is overloaded; please retry later.")
            .with_code("overloaded");
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 503: the model cannot run right now (its engine could not be started again).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, SERVER_ERROR, message).with_code("model_unavailable")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, SERVER_ERROR, message).with_code("internal_error")
    }

    /// The OpenAI error body. Also the payload of the SSE error event.
    pub fn to_json(&self) -> Value {
        let error = ErrorObject { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code.as_deref() };
        serde_json::to_value(ErrorResponse { error }).unwrap_or_default()
    }

    /// 400 from a serde_json error while deserializing a request. `path` names the field when
    /// the caller knows it; otherwise a field named in serde's own message (`missing field
    /// `model``) is used. Test-only, with `parse_json`.
    #[cfg(test)]
    pub fn from_json_error(err: &serde_json::Error, path: Option<&str>) -> ApiError {
        let detail = err.to_string();
        let param = path.map(str::to_owned).or_else(|| backticked_field(&detail));
        let message = match path {
            Some(p) => format!("Invalid request body: {p}: {detail}"),
            None => format!("Invalid request body: {detail}"),
        };
        ApiError { param, ..ApiError::new(400, INVALID_REQUEST, message) }
    }

    /// 400 from the text of a JSON body rejection as axum's `Json` extractor words it
    /// (`Failed to deserialize the JSON body into the target type: messages[0].content: invalid
    /// type: ...`): the `serde_path_to_error` path before the first `": "` becomes `param`.
    pub fn invalid_body(text: &str) -> ApiError {
        const PREFIXES: [&str; 2] =
            ["Failed to deserialize the JSON body into the target type: ", "Failed to parse the request body as JSON: "];
        let rest = PREFIXES.iter().find_map(|p| text.strip_prefix(p)).unwrap_or(text);
        let param = match rest.split_once(": ") {
            Some((path, _)) if looks_like_path(path) => Some(path.to_owned()),
            _ => backticked_field(rest),
        };
        ApiError { param, ..ApiError::new(400, INVALID_REQUEST, format!("Invalid request body: {rest}")) }
    }
}

/// Why the engine refused or failed a request, as the client sees it: the one place engine
/// errors become HTTP errors.
impl From<rill_engine::EngineError> for ApiError {
    fn from(e: rill_engine::EngineError) -> ApiError {
        use rill_engine::{AdmissionError, EngineError};
        match e {
            EngineError::PromptTooLong { prompt, max_model_len } => ApiError::context_length_exceeded(max_model_len, prompt, None),
            EngineError::Admission(AdmissionError::NeverFits { prompt, max_new, .. }) => {
                ApiError::new(400, INVALID_REQUEST, format!("The request needs room for {prompt} prompt and {max_new} completion tokens, more than this server's KV cache holds. Please reduce `max_tokens` or the prompt."))
                    .with_param("max_tokens")
                    .with_code("context_length_exceeded")
            }
            EngineError::ShutDown => ApiError::new(503, SERVER_ERROR, "The model is shutting down; please retry.").with_code("unavailable"),
            e @ EngineError::DeadlineExceeded { .. } => ApiError::new(408, INVALID_REQUEST, format!("Request timed out: {e}.")).with_code("timeout"),
            e @ (EngineError::Admission(_) | EngineError::Execution(_)) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<rill_engine::SamplingError> for ApiError {
    fn from(e: rill_engine::SamplingError) -> ApiError {
        ApiError::invalid(e.param(), e.to_string())
    }
}

/// `messages[0].content`, `temperature`: field names, dots and indices, no spaces.
fn looks_like_path(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]-?".contains(c))
}

/// The field serde names in `missing field `model`` or `duplicate field `n``.
fn backticked_field(message: &str) -> Option<String> {
    let rest = ["missing field `", "duplicate field `"].iter().find_map(|p| message.find(p).map(|i| &message[i + p.len()..]))?;
    rest.split_once('`').map(|(field, _)| field.to_owned())
}

/// Parses a request body. Request types have every top-level field optional, so one field
/// alone always deserializes unless its value is wrong: that is how the field at fault is found
/// (down to an array element, `messages[3]`) without a path-tracking deserializer. serde's
/// own messages for values read from a `Value` do not name the field. The server parses bodies
/// with `routes::json_body::JsonBody`; the unit tests parse with this, without a server.
#[cfg(test)]
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::from_json_error(&e, None))?;
    let Value::Object(fields) = &value else {
        return Err(ApiError::new(400, INVALID_REQUEST, "The request body must be a JSON object."));
    };
    T::deserialize(&value).map_err(|e| ApiError::from_json_error(&e, locate::<T>(fields).as_deref()))
}

/// The first top-level field (or element of an array field) that fails on its own.
#[cfg(test)]
fn locate<T: DeserializeOwned>(fields: &Map<String, Value>) -> Option<String> {
    let fails = |key: &str, v: &Value| T::deserialize(&json!({ key: v })).is_err();
    let (key, value) = fields.iter().find(|(k, v)| fails(k, v))?;
    if let Value::Array(items) = value {
        // Only a field that takes arrays at all (an empty one parses) has a faulty element.
        let element = if fails(key, &json!([])) { None } else { items.iter().position(|item| fails(key, &json!([item]))) };
        if let Some(i) = element {
            return Some(format!("{key}[{i}]"));
        }
    }
    Some(key.clone())
}

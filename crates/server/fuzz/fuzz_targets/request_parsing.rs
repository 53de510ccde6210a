//! Arbitrary bytes as the body of every endpoint: JSON parsing into the request types, then
//! validation (chat, completions), the Responses and Messages conversions, and the path
//! normalization the key check relies on. Nothing may panic; a request either validates or is an
//! error naming a field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_server::openai::types::{ChatCompletionRequest, CompletionRequest};
use rill_server::openai::validate::{validate_chat, validate_completion, ModelLimits};

const LIMITS: ModelLimits = ModelLimits { vocab_size: 49_152, max_model_len: 8192, max_n: 16 };

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CompletionRequest>(data) {
        let _ = validate_completion(req, &LIMITS);
    }
    if let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(data) {
        if let Ok(mut v) = validate_chat(req, &LIMITS) {
            let _ = v.fit_context(100, 8192);
        }
    }
    if let Ok(req) = serde_json::from_slice::<rill_server::responses::types::CreateResponse>(data) {
        if let Ok(chat) = rill_server::responses::input::to_chat(&req) {
            let _ = validate_chat(chat, &LIMITS).map_err(rill_server::responses::input::responses_param);
        }
    }
    if let Ok(req) = serde_json::from_slice::<rill_server::anthropic::types::MessagesRequest>(data) {
        if let Ok(chat) = rill_server::anthropic::convert::to_chat(&req) {
            let _ = validate_chat(chat, &LIMITS).map_err(rill_server::anthropic::convert::messages_param);
        }
    }
    if let Ok(path) = std::str::from_utf8(data) {
        let normal = rill_server::auth::normalize_path(path);
        assert!(normal.starts_with('/') && !normal.contains("//"), "{path:?} normalized to {normal:?}");
        assert!(!normal.split('/').any(|seg| seg == "." || seg == ".."), "{path:?} normalized to {normal:?}");
    }
});

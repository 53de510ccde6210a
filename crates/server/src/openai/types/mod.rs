//! The OpenAI wire format for `/v1/completions`, `/v1/chat/completions` and `/v1/models`.
//!
//! Requests: every top-level field is an `Option`, so a missing required field (`model`,
//! `prompt`, `messages`) becomes a 400 from validation naming it, `null` means "default" (SDKs
//! send it), and `parse_json` can find a badly typed field by deserializing it alone. Unknown
//! fields are ignored, as OpenAI and vLLM do. Fields that are not OpenAI's (`top_k`, `min_p`,
//! `repetition_penalty`, `min_tokens`, `ignore_eos`, `stop_token_ids`) are vLLM's extensions.
//!
//! Responses are serialize-only and keep OpenAI's nulls (`logprobs: null`,
//! `finish_reason: null` in chunks) because clients index those keys directly.

mod request;
mod response;
mod schema;

pub use request::*;
pub use response::*;

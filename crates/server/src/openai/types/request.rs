//! Request bodies of `/v1/completions` and `/v1/chat/completions`.

use std::collections::HashMap;

use serde::de::{DeserializeOwned, Error as _};
use utoipa::ToSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct CompletionRequest {
    pub model: Option<String>,
    /// Required (a 400 names it when missing).
    #[schema(required = true, value_type = Prompt)]
    pub prompt: Option<Prompt>,
    pub max_tokens: Option<usize>,
    #[serde(flatten)]
    pub generation: GenerationFields,
    /// Completions' own shape: how many alternatives per token (0..=5), not a flag.
    pub logprobs: Option<usize>,
    pub echo: Option<bool>,
    /// Not supported; parsed so that asking for it is an error, not silently ignored.
    pub suffix: Option<String>,
    /// Supported only as equal to `n` (no server-side reranking).
    pub best_of: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    /// Required (a 400 names it when missing).
    #[schema(required = true, value_type = Vec<ChatMessage>)]
    pub messages: Option<Vec<ChatMessage>>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`, which wins when both are set.
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    #[serde(flatten)]
    pub generation: GenerationFields,
    /// Chat's own shape: a flag, with the count in `top_logprobs` (0..=20).
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<usize>,
    /// Function definitions, kept as sent: the chat template renders them.
    pub tools: Option<Vec<Value>>,
    /// `"none"`, `"auto"`, `"required"` or a named function.
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    /// vLLM's extension: variables for the chat template (e.g. `{"enable_thinking": false}`).
    #[schema(value_type = Option<Object>)]
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// The sampling, stopping and streaming fields every generation endpoint shares, spelled the
/// same in each (flattened into the request).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct GenerationFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub n: Option<usize>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Token id (as a string: JSON keys are strings) → bias in [-100, 100].
    pub logit_bias: Option<HashMap<String, f32>>,
    pub seed: Option<i64>,
    pub ignore_eos: Option<bool>,
    pub user: Option<String>,
    pub min_tokens: Option<usize>,
    pub stop_token_ids: Option<Vec<u32>>,
    /// Seconds the request may take in all (queue, prefill, decode); past it, a 408 `timeout`
    /// (or, streaming, an error event). The `x-request-timeout` header does the same.
    pub timeout: Option<f64>,
    /// vLLM's constrained-decoding extension (one of `json`, `regex`, `grammar`, `choice`,
    /// `json_object`), and its older spellings below.
    pub structured_outputs: Option<StructuredOutputs>,
    pub guided_json: Option<Value>,
    pub guided_regex: Option<String>,
    pub guided_grammar: Option<String>,
    pub guided_choice: Option<Vec<String>>,
    /// rill's extension: speculate by n-gram lookup for this request (`true`) or not (`false`);
    /// absent: the model's `--speculation`. The output is the same either way.
    pub speculative: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct StructuredOutputs {
    pub json: Option<Value>,
    pub regex: Option<String>,
    /// A Lark grammar (llguidance's dialect, which takes most of Lark's syntax plus `%json`).
    pub grammar: Option<String>,
    pub choice: Option<Vec<String>>,
    pub json_object: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// `response_format`: `text`, `json_object`, or `json_schema` with its schema.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    pub json_schema: Option<JsonSchemaFormat>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    pub description: Option<String>,
    pub schema: Option<serde_json::Value>,
    /// Always honoured: the output is held to the schema whether or not `strict` is set.
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub role: String,
    /// `null` is allowed for assistant turns (OpenAI sends it with tool calls).
    pub content: Option<MessageContent>,
    pub name: Option<String>,
    /// The calls an assistant turn made (sent back by agents with the results).
    pub tool_calls: Option<Vec<RequestToolCall>>,
    /// On a `tool` turn: the call this is the result of.
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct RequestToolCall {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: Option<RequestFunctionCall>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct RequestFunctionCall {
    pub name: Option<String>,
    /// OpenAI sends a JSON string; an object is accepted too.
    pub arguments: Option<Value>,
}

/// `"text"` or `[{"type": "text", "text": "..."}, ...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part; only `type: "text"` is supported, others are rejected by validation.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// The completions `prompt`: a string, token ids, or a batch of either. Batches are parsed so
/// that validation can say they are unsupported (one prompt per request) rather than a type error.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatch(Vec<Vec<u32>>),
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}


/// The value as `T`, if it has that shape.
fn as_shape<T: DeserializeOwned>(v: &Value) -> Option<T> {
    T::deserialize(v).ok()
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Prompt, D::Error> {
        let v = Value::deserialize(d)?;
        if let Value::String(s) = v {
            return Ok(Prompt::Text(s));
        }
        (as_shape(&v).map(Prompt::Texts))
            .or_else(|| as_shape(&v).map(Prompt::Tokens))
            .or_else(|| as_shape(&v).map(Prompt::TokenBatch))
            .ok_or_else(|| D::Error::custom("expected a string, an array of strings or an array of token ids"))
    }
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Stop, D::Error> {
        let v = Value::deserialize(d)?;
        if let Value::String(s) = v {
            return Ok(Stop::One(s));
        }
        as_shape(&v).map(Stop::Many).ok_or_else(|| D::Error::custom("expected a string or an array of strings"))
    }
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MessageContent, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(MessageContent::Text(s)),
            v @ Value::Array(_) => Vec::<ContentPart>::deserialize(&v)
                .map(MessageContent::Parts)
                .map_err(|e| D::Error::custom(format!("invalid content part: {e}"))),
            _ => Err(D::Error::custom("content: expected a string or an array of content parts")),
        }
    }
}

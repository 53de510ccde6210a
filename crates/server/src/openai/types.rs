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

use std::collections::HashMap;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
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

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
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
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
}

/// The sampling, stopping and streaming fields every generation endpoint shares, spelled the
/// same in each (flattened into the request).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StructuredOutputs {
    pub json: Option<Value>,
    pub regex: Option<String>,
    /// A Lark grammar (llguidance's dialect, which takes most of Lark's syntax plus `%json`).
    pub grammar: Option<String>,
    pub choice: Option<Vec<String>>,
    pub json_object: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
}

/// `response_format`: `text`, `json_object`, or `json_schema` with its schema.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResponseFormat {
    #[serde(rename = "type")]
    pub kind: String,
    pub json_schema: Option<JsonSchemaFormat>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    pub description: Option<String>,
    pub schema: Option<serde_json::Value>,
    /// Always honoured: the output is held to the schema whether or not `strict` is set.
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestToolCall {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: Option<RequestFunctionCall>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

// ---- responses ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Usage {
        let total_tokens = prompt_tokens + completion_tokens;
        Usage { prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: None }
    }

    /// From the engine's count, reporting prefix-cache hits as OpenAI's `cached_tokens`.
    pub fn from_engine(u: &rill_engine::Usage) -> Usage {
        let details = PromptTokensDetails { cached_tokens: u.cached_tokens };
        Usage { prompt_tokens_details: Some(details), ..Usage::new(u.prompt_tokens, u.completion_tokens) }
    }
}

/// The envelope every response and stream chunk shares: `id`, `object`, `created`, `model`, the
/// choices, and `usage` (`U` is `Usage` where it is always sent, `Option<Usage>` where only the
/// last chunk of a stream with `include_usage` carries it). The choice type names the object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(bound(serialize = "C: Serialize, U: Serialize + UsageField"))]
pub struct Envelope<C, U> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<C>,
    #[serde(skip_serializing_if = "UsageField::is_absent")]
    pub usage: U,
}

/// A choice type, and the `object` of the envelope that carries it.
pub trait EnvelopeChoice {
    const OBJECT: &'static str;
}

/// `usage` as an envelope holds it: always there, or only in some chunks.
pub trait UsageField {
    fn is_absent(&self) -> bool;
}

impl UsageField for Usage {
    fn is_absent(&self) -> bool {
        false
    }
}

impl UsageField for Option<Usage> {
    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

impl<C: EnvelopeChoice, U> Envelope<C, U> {
    pub fn new(id: String, created: u64, model: String, choices: Vec<C>, usage: U) -> Self {
        Envelope { id, object: C::OBJECT, created, model, choices, usage }
    }
}

/// `text_completion`: the whole response, and also each streamed chunk (same object type in
/// OpenAI's API).
pub type CompletionResponse = Envelope<CompletionChoice, Option<Usage>>;

impl EnvelopeChoice for CompletionChoice {
    const OBJECT: &'static str = "text_completion";
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    /// `"stop"`, `"length"` or `"abort"`; `null` in chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// Completions logprobs: parallel arrays, one entry per generated token.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<TopLogprobs>>,
    /// Character offset of each token in the returned text (the prompt included when echoed).
    pub text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    pub fn push(&mut self, token: String, logprob: f32, top: TopLogprobs, text_offset: usize) {
        self.tokens.push(token);
        self.token_logprobs.push(Some(logprob));
        self.top_logprobs.push(Some(top));
        self.text_offset.push(text_offset);
    }
}

/// `{token: logprob}` in the order given (most likely first), as a JSON object. Tokens that
/// decode to the same text keep the first (likeliest) entry: a JSON object has unique keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopLogprobs(Vec<(String, f32)>);

impl TopLogprobs {
    pub fn new(pairs: impl IntoIterator<Item = (String, f32)>) -> TopLogprobs {
        let mut out: Vec<(String, f32)> = Vec::new();
        for (token, logprob) in pairs {
            if !out.iter().any(|(t, _)| *t == token) {
                out.push((token, logprob));
            }
        }
        TopLogprobs(out)
    }
}

impl Serialize for TopLogprobs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(t, l)| (t, l)))
    }
}

pub type ChatCompletionResponse = Envelope<ChatChoice, Usage>;

impl EnvelopeChoice for ChatChoice {
    const OBJECT: &'static str = "chat.completion";
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    /// `null` when the turn is only tool calls (as OpenAI).
    pub content: Option<String>,
    /// A thinking model's `<think>` span (vLLM's and llama.cpp's field name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallObject>,
}

impl AssistantMessage {
    pub fn new(content: String) -> AssistantMessage {
        AssistantMessage { role: "assistant", content: Some(content), reasoning_content: None, tool_calls: Vec::new() }
    }
}

/// A call in a response: `{"id", "type": "function", "function": {"name", "arguments"}}`, the
/// arguments a JSON string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// One streamed piece of a call: the first carries `id`, `type` and the name, later ones
/// argument text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCallDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `chat.completion.chunk`. The first chunk of each choice carries `delta.role`; the last has
/// an empty delta and the `finish_reason`; with `include_usage` a final chunk has no choices
/// and the usage.
pub type ChatCompletionChunk = Envelope<ChatChunkChoice, Option<Usage>>;

impl EnvelopeChoice for ChatChunkChoice {
    const OBJECT: &'static str = "chat.completion.chunk";
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: ChatDelta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's raw bytes: a token can be part of a UTF-8 character, which `token` (lossy
    /// text) cannot show.
    pub bytes: Option<Vec<u8>>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
}

impl ChatTopLogprob {
    /// From a token's bytes (`Tokenizer::token_to_piece`).
    pub fn from_piece(piece: &[u8], logprob: f32) -> ChatTopLogprob {
        ChatTopLogprob { token: String::from_utf8_lossy(piece).into_owned(), logprob, bytes: Some(piece.to_vec()) }
    }
}

impl ChatTokenLogprob {
    pub fn from_piece(piece: &[u8], logprob: f32, top_logprobs: Vec<ChatTopLogprob>) -> ChatTokenLogprob {
        let ChatTopLogprob { token, logprob, bytes } = ChatTopLogprob::from_piece(piece, logprob);
        ChatTokenLogprob { token, logprob, bytes, top_logprobs }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

impl ModelList {
    pub fn new(data: Vec<ModelObject>) -> ModelList {
        ModelList { object: "list", data }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
    /// vLLM's extension: the context length clients may plan against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<usize>,
}

impl ModelObject {
    pub fn new(id: String, created: u64, owned_by: String, max_model_len: Option<usize>) -> ModelObject {
        ModelObject { id, object: "model", created, owned_by, max_model_len }
    }
}

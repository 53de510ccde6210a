//! Response bodies and stream chunks of `/v1/completions`, `/v1/chat/completions` and
//! `/v1/models`.

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
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
    /// The envelope's name in the OpenAPI document (OpenAI's own document's name).
    const SCHEMA_NAME: &'static str;
}

/// `usage` as an envelope holds it: always there, or only in some chunks.
pub trait UsageField {
    /// Every envelope of this kind has `usage`.
    const ALWAYS: bool;
    fn is_absent(&self) -> bool;
}

impl UsageField for Usage {
    const ALWAYS: bool = true;
    fn is_absent(&self) -> bool {
        false
    }
}

impl UsageField for Option<Usage> {
    const ALWAYS: bool = false;
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
    const SCHEMA_NAME: &'static str = "CreateCompletionResponse";
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    /// `"stop"`, `"length"` or `"abort"`; `null` in chunks before the last.
    pub finish_reason: Option<&'static str>,
}

/// Completions logprobs: parallel arrays, one entry per generated token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
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
    const SCHEMA_NAME: &'static str = "CreateChatCompletionResponse";
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ToolCallObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// One streamed piece of a call: the first carries `id`, `type` and the name, later ones
/// argument text.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
    const SCHEMA_NAME: &'static str = "CreateChatCompletionStreamResponse";
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChatChunkChoice {
    pub index: usize,
    pub delta: ChatDelta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    /// The token's raw bytes: a token can be part of a UTF-8 character, which `token` (lossy
    /// text) cannot show.
    pub bytes: Option<Vec<u8>>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

/// A page of a list endpoint (`/v1/files`, `/v1/batches`): ids of its first and last items, and
/// whether more follow.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ListPage<T> {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl<T> ListPage<T> {
    pub fn new(data: Vec<T>, id: impl Fn(&T) -> &str, has_more: bool) -> ListPage<T> {
        let first_id = data.first().map(|t| id(t).to_string());
        let last_id = data.last().map(|t| id(t).to_string());
        ListPage { object: "list", data, first_id, last_id, has_more }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

impl ModelList {
    pub fn new(data: Vec<ModelObject>) -> ModelList {
        ModelList { object: "list", data }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

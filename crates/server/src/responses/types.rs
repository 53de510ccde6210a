//! The Responses wire format: the request, the response object and its output items. Requests
//! keep unknown fields out of the way (ignored, as OpenAI's other endpoints here); what rill
//! cannot honour (non-function tools, non-text input parts) is a 400 from `input`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct CreateResponse {
    pub model: Option<String>,
    pub input: Option<Input>,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub text: Option<TextConfig>,
    pub max_output_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stream: Option<bool>,
    /// Keep the response for `GET` and `previous_response_id` (OpenAI's default: true).
    pub store: Option<bool>,
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub user: Option<String>,
    /// Not OpenAI's on this endpoint, but honoured like chat's (reproducible sampling).
    pub seed: Option<i64>,
}

/// `input`: a string (one user message) or a list of items.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[schema(as = ResponseInput)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ResponseTextConfig)]
pub struct TextConfig {
    pub format: Option<TextFormat>,
}

/// `text.format`: `text`, `json_object`, or `json_schema` with the schema beside the type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ResponseTextFormat)]
pub struct TextFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The response object, as returned, streamed in `response.*` events and stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: &'static str,
    pub completed_at: Option<u64>,
    pub error: Option<Value>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<usize>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub text: TextConfig,
    pub tool_choice: Value,
    pub tools: Vec<Value>,
    pub truncation: &'static str,
    pub usage: Option<ResponseUsage>,
    pub metadata: serde_json::Map<String, Value>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ResponseIncompleteDetails)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct ResponseUsage {
    pub input_tokens: usize,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: usize,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct InputTokensDetails {
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: usize,
}

impl ResponseUsage {
    pub fn from_engine(u: &rill_engine::Usage) -> ResponseUsage {
        ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens: u.cached_tokens },
            output_tokens: u.completion_tokens,
            // Reasoning is not counted apart: its tokens are in `output_tokens`.
            output_tokens_details: OutputTokensDetails { reasoning_tokens: 0 },
            total_tokens: u.prompt_tokens + u.completion_tokens,
        }
    }
}

/// One item of `output`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Reasoning { id: String, summary: Vec<Value>, content: Vec<ReasoningText>, status: &'static str },
    Message { id: String, status: &'static str, role: &'static str, content: Vec<OutputText> },
    FunctionCall { id: String, call_id: String, name: String, arguments: String, status: &'static str },
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    pub annotations: Vec<Value>,
    pub logprobs: Vec<Value>,
}

impl OutputText {
    pub fn new(text: String) -> OutputText {
        OutputText { kind: "output_text", text, annotations: Vec::new(), logprobs: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReasoningText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl OutputItem {
    pub fn id(&self) -> &str {
        match self {
            OutputItem::Reasoning { id, .. } | OutputItem::Message { id, .. } | OutputItem::FunctionCall { id, .. } => id,
        }
    }

    fn set_status(&mut self, s: &'static str) {
        match self {
            OutputItem::Reasoning { status, .. } | OutputItem::Message { status, .. } | OutputItem::FunctionCall { status, .. } => *status = s,
        }
    }

    pub fn with_status(mut self, s: &'static str) -> OutputItem {
        self.set_status(s);
        self
    }
}

/// A streamed event: its type and fields (`sequence_number` is added when sent).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ResponseStreamEvent)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "response.created")]
    Created { response: ResponseObject },
    #[serde(rename = "response.in_progress")]
    InProgress { response: ResponseObject },
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: usize, item: OutputItem },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: usize, item: OutputItem },
    #[serde(rename = "response.content_part.added")]
    PartAdded { item_id: String, output_index: usize, content_index: usize, part: OutputText },
    #[serde(rename = "response.content_part.done")]
    PartDone { item_id: String, output_index: usize, content_index: usize, part: OutputText },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { item_id: String, output_index: usize, content_index: usize, delta: String, logprobs: Vec<Value> },
    #[serde(rename = "response.output_text.done")]
    TextDone { item_id: String, output_index: usize, content_index: usize, text: String, logprobs: Vec<Value> },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningDelta { item_id: String, output_index: usize, content_index: usize, delta: String },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningDone { item_id: String, output_index: usize, content_index: usize, text: String },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { item_id: String, output_index: usize, delta: String },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone { item_id: String, output_index: usize, name: String, arguments: String },
    #[serde(rename = "response.completed")]
    Completed { response: ResponseObject },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: ResponseObject },
    #[serde(rename = "error")]
    Error { code: Option<String>, message: String, param: Option<String> },
}

impl StreamEvent {
    /// The SSE `event:` name (the same as `type`).
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Created { .. } => "response.created",
            StreamEvent::InProgress { .. } => "response.in_progress",
            StreamEvent::ItemAdded { .. } => "response.output_item.added",
            StreamEvent::ItemDone { .. } => "response.output_item.done",
            StreamEvent::PartAdded { .. } => "response.content_part.added",
            StreamEvent::PartDone { .. } => "response.content_part.done",
            StreamEvent::TextDelta { .. } => "response.output_text.delta",
            StreamEvent::TextDone { .. } => "response.output_text.done",
            StreamEvent::ReasoningDelta { .. } => "response.reasoning_text.delta",
            StreamEvent::ReasoningDone { .. } => "response.reasoning_text.done",
            StreamEvent::ArgumentsDelta { .. } => "response.function_call_arguments.delta",
            StreamEvent::ArgumentsDone { .. } => "response.function_call_arguments.done",
            StreamEvent::Completed { .. } => "response.completed",
            StreamEvent::Incomplete { .. } => "response.incomplete",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// `DELETE /v1/responses/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ResponseDeleted)]
pub struct Deleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

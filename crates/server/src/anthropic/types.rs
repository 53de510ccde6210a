//! The Messages wire format. Content is a string or a list of blocks; blocks are kept as JSON
//! and read by `convert`, which names the block at fault in its errors.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct MessagesRequest {
    pub model: Option<String>,
    /// Required by Anthropic's API (a 400 when missing).
    #[schema(required = true, value_type = usize)]
    pub max_tokens: Option<usize>,
    pub system: Option<Content>,
    #[schema(required = true, value_type = Vec<Message>)]
    pub messages: Option<Vec<Message>>,
    pub stop_sequences: Option<Vec<String>>,
    pub stream: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    /// `{"type": "enabled" | "disabled"}`: passed to the template as `enable_thinking`.
    pub thinking: Option<Value>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[schema(as = AnthropicMessage)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[schema(as = AnthropicContent)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

/// A block of the assistant's reply.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = AnthropicContentBlock)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Thinking { thinking: String, signature: String },
    Text { text: String },
    ToolUse { id: String, name: String, input: Value },
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MessageResponse {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence` or `tool_use`; `null` in `message_start`.
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct MessageUsage {
    pub input_tokens: usize,
    pub output_tokens: usize,
    pub cache_read_input_tokens: usize,
    pub cache_creation_input_tokens: usize,
}

impl MessageUsage {
    pub fn from_engine(u: &rill_engine::Usage) -> MessageUsage {
        MessageUsage { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens, cache_read_input_tokens: u.cached_tokens, cache_creation_input_tokens: 0 }
    }
}

/// A streamed event (`type` is also the SSE event name).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = MessageStreamEvent)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart { message: MessageResponse },
    Ping,
    ContentBlockStart { index: usize, content_block: ContentBlock },
    ContentBlockDelta { index: usize, delta: BlockDelta },
    ContentBlockStop { index: usize },
    MessageDelta { delta: StopDelta, usage: OutputUsage },
    MessageStop,
}

impl StreamEvent {
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = AnthropicBlockDelta)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta { text: String },
    ThinkingDelta { thinking: String },
    InputJsonDelta { partial_json: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = AnthropicStopDelta)]
pub struct StopDelta {
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[schema(as = AnthropicOutputUsage)]
pub struct OutputUsage {
    pub output_tokens: usize,
}

//! Anthropic's Messages API (`/v1/messages`), which Claude Code-style agents speak: a request
//! (system, messages of content blocks, tools with `input_schema`) becomes a chat conversation
//! (`convert`), runs through the chat path, and the assistant turn comes back as content blocks
//! (`blocks`: thinking, text, tool_use), streamed as Anthropic's events. Errors are Anthropic's
//! shape (`error`).

pub mod blocks;
pub mod convert;
pub mod error;
pub mod types;

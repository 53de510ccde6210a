//! OpenAI's Responses API (`/v1/responses`), which Codex-style agents speak: a request of input
//! items (messages, function calls and their outputs) becomes a chat conversation
//! (`input`), runs through the chat path (template, tools, grammar, reasoning split), and its
//! output becomes typed output items, streamed as OpenAI's semantic events (`output`). Responses
//! with `store` are kept in memory, bounded, for `previous_response_id` chaining and
//! `GET`/`DELETE` (`store`).

pub mod input;
pub mod output;
pub mod store;
pub mod types;

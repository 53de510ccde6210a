//! What goes into the engine and what comes back out, per request.

use crate::{EngineError, SamplingParams};

pub type RequestId = u64;

/// A tokenized, validated request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Lower runs first among waiting requests (as vLLM); 0 by default.
    pub priority: i32,
    /// Whose request this is, when several clients compete (`None`: one shared tenant).
    pub tenant: Option<Tenant>,
}

/// A client of the engine (an API key). When tenants compete for steps, the scheduler admits
/// waiting requests in proportion to their weights (fair queueing) rather than first come, first
/// served, so one tenant's burst cannot hold another's requests in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: std::sync::Arc<str>,
    /// Relative share; at least 1.
    pub weight: u32,
}

/// One sampled token with its log-probability and the alternatives asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub token: u32,
    /// Present when the request asked for logprobs.
    pub logprob: Option<f32>,
    pub top_logprobs: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence or stop token.
    Stop,
    /// `max_tokens` or the context length.
    Length,
    /// `abort(id)` or the receiver was dropped.
    Abort,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Sampled tokens, including a final stop token (which is not streamed).
    pub completion_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

/// The per-request stream. Each choice `index` (`0..n`) gets its `Token`s then exactly one
/// `Finished`; a `Failed` ends the whole request. The stream closes after the last choice ends.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Token { index: usize, token: SampledToken },
    Finished { index: usize, reason: FinishReason, usage: Usage },
    Failed(EngineError),
}

//! Running one validated request on a model's engine, for both endpoints: submit, then either
//! collect every choice (non-streaming) or turn updates into SSE events as they come. Dropping
//! the future or the SSE body (a client disconnect) drops the engine stream, which aborts the
//! request and frees its KV blocks at the engine's next step.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::{Stream, StreamExt};
use rill_engine::{Constraint, GenerateRequest, RequestStream, SampledToken, SamplingParams};
use rill_model::grammar::{GrammarConstraint, GrammarSpec};
use serde::Serialize;

use crate::app::ServedModel;
use crate::routes::routing::Routed;
use crate::choices::{ChoiceUpdate, Choices};
use crate::key_limits::KeyCharge;
use crate::openai::error::ApiError;

/// Seconds between SSE keep-alive comments while a request waits or runs.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A response id like OpenAI's (`cmpl-…`, `chatcmpl-…`), unique within this process.
pub fn response_id(prefix: &str) -> String {
    format!("{prefix}-{:x}{:06x}", crate::openai::unix_time(), NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// An id in the `prefix_…` form of OpenAI's newer objects (`call_…`, `resp_…`, `msg_…`).
pub fn item_id(prefix: &str) -> String {
    response_id(prefix).replacen('-', "_", 1)
}

pub struct Running {
    pub stream: RequestStream,
    pub choices: Choices,
    /// When the request must have finished (queue, prefill and decode).
    pub deadline: Option<Deadline>,
}

/// A request's deadline: the time it must end by, and the budget it was given (for the error).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    pub budget: Duration,
}

impl Deadline {
    /// `budget` from `start`.
    pub fn after(start: tokio::time::Instant, budget: Duration) -> Deadline {
        Deadline { at: start + budget, budget }
    }

    /// The earlier of two.
    pub fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// When a request arrived, and the deadline the `x-request-timeout` header or the server's
/// default gives it (a bad header is the route's 400, in its API's shape).
pub struct Arrival {
    pub at: tokio::time::Instant,
    pub deadline: Result<Option<Deadline>, ApiError>,
    /// The key the request came with, to charge its tokens to (and whose concurrency place it
    /// holds until its output ends).
    pub charge: Option<KeyCharge>,
    /// The engine priority: interactive requests 0, batch lines after them.
    pub priority: i32,
}

/// What a submitted request carries besides its prompt and parameters.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    pub deadline: Option<Deadline>,
    pub charge: Option<KeyCharge>,
    pub priority: i32,
}

impl Arrival {
    /// The run context, the deadline taking the request body's own `timeout` into account.
    pub fn context(&self, timeout: Option<Duration>) -> Result<RunContext, ApiError> {
        let deadline = Deadline::earliest(self.deadline.clone()?, timeout.map(|t| Deadline::after(self.at, t)));
        Ok(RunContext { deadline, charge: self.charge.clone(), priority: self.priority })
    }
}

pub const TIMEOUT_HEADER: &str = "x-request-timeout";

impl axum::extract::FromRequestParts<crate::app::AppState> for Arrival {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &crate::app::AppState) -> Result<Arrival, Infallible> {
        let at = tokio::time::Instant::now();
        let header = parts.headers.get(TIMEOUT_HEADER).map(|v| {
            let seconds: f64 = v.to_str().ok().and_then(|s| s.trim().parse().ok()).unwrap_or(f64::NAN);
            crate::openai::validate::parse_timeout(seconds).map_err(|m| ApiError::invalid(TIMEOUT_HEADER, m))
        });
        let deadline = header.transpose().map(|h| Deadline::earliest(h.map(|b| Deadline::after(at, b)), state.request_timeout.map(|b| Deadline::after(at, b))));
        let priority = if parts.extensions.get::<crate::batch::BatchLine>().is_some() { crate::batch::BATCH_PRIORITY } else { 0 };
        Ok(Arrival { at, deadline, charge: parts.extensions.get::<KeyCharge>().cloned(), priority })
    }
}

impl Running {
    /// The next engine event (see [`next_event`]).
    pub async fn next_event(&mut self) -> Option<rill_engine::StreamEvent> {
        next_event(&mut self.stream, self.deadline).await
    }
}

/// The next engine event of `stream`; past the deadline, a `DeadlineExceeded` failure, after
/// which the caller drops the stream (which aborts the request and frees its KV blocks).
pub async fn next_event(stream: &mut RequestStream, deadline: Option<Deadline>) -> Option<rill_engine::StreamEvent> {
    let Some(deadline) = deadline else { return stream.recv().await };
    match tokio::time::timeout_at(deadline.at, stream.recv()).await {
        Ok(event) => event,
        Err(_) => Some(rill_engine::StreamEvent::Failed(rill_engine::EngineError::DeadlineExceeded { seconds: deadline.budget.as_secs_f64() })),
    }
}

/// Seconds a client is told to wait when the queue is full.
const RETRY_AFTER_SECS: u64 = 1;

pub fn submit(model: &Routed, prompt: Vec<u32>, params: SamplingParams, stop: &[String], ctx: &RunContext) -> Result<Running, ApiError> {
    let ticket = QueueTicket::take(&model.queued, model.max_queue).ok_or_else(|| ApiError::overloaded(RETRY_AFTER_SECS))?;
    let n = params.n.max(1);
    let choices = Choices::new(model, model.place.clone(), n, stop, prompt.len(), ticket, ctx.charge.clone());
    // A version whose logprobs a rollback rule compares computes them for every request, and
    // every version for a sample of requests (drift); the response shows them only where the
    // client asked.
    let mut params = params;
    if params.logprobs.is_none() && model.monitor.wants_logprobs() {
        params.logprobs = Some(0);
    }
    let deadline = ctx.deadline;
    let tenant = ctx.charge.as_ref().map(|c| c.account.tenant());
    let stream = model.handle.submit(GenerateRequest { prompt, params, priority: ctx.priority, tenant }).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Running { stream, choices, deadline })
}

/// A place in a model's queue, from submit until the request's first event (or its end).
#[derive(Debug)]
pub struct QueueTicket(Arc<AtomicUsize>);

impl QueueTicket {
    /// A place if fewer than `max` requests wait.
    pub fn take(queued: &Arc<AtomicUsize>, max: usize) -> Option<QueueTicket> {
        queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| (q < max).then_some(q + 1)).ok()?;
        Some(QueueTicket(queued.clone()))
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every choice's text, finish reason and tokens, once all have finished.
pub struct Collected {
    pub texts: Vec<String>,
    pub finish_reasons: Vec<&'static str>,
    pub tokens: Vec<Vec<SampledToken>>,
    /// The stop string that ended each choice, if one did.
    pub stop_sequences: Vec<Option<String>>,
    pub usage: rill_engine::Usage,
}

pub async fn collect(mut run: Running, n: usize) -> Result<Collected, ApiError> {
    let mut out = Collected { texts: vec![String::new(); n], finish_reasons: vec!["abort"; n], tokens: vec![Vec::new(); n], stop_sequences: vec![None; n], usage: Default::default() };
    while !run.choices.all_done() {
        let Some(event) = run.next_event().await else { break };
        for update in run.choices.on_event(event) {
            match update {
                ChoiceUpdate::Text { index, text, tokens } => {
                    out.texts[index].push_str(&text);
                    out.tokens[index].extend(tokens);
                }
                ChoiceUpdate::Finished { index, reason } => out.finish_reasons[index] = reason,
                ChoiceUpdate::Failed(e) => return Err(e.into()),
            }
        }
    }
    out.usage = run.choices.usage();
    out.stop_sequences = (0..n).map(|i| run.choices.stop_sequence(i).map(str::to_string)).collect();
    Ok(out)
}

/// One streamed message: a JSON chunk, or an error (sent as `data: {"error":…}` then `[DONE]`).
pub enum Chunk<T> {
    Data(T),
    Error(ApiError),
}

/// An event's JSON, with U+2028 and U+2029 escaped: JSON allows them raw, but clients that split
/// lines the way JavaScript does (`httpx`'s `aiter_lines`) would cut the event there.
pub fn sse_json(value: &impl Serialize) -> String {
    match serde_json::to_string(value) {
        Ok(json) => json.replace('\u{2028}', "\\u2028").replace('\u{2029}', "\\u2029"),
        Err(e) => serde_json::json!({"error": {"message": e.to_string()}}).to_string(),
    }
}

/// An SSE response from a stream of chunks, ending with `data: [DONE]`.
pub fn sse<T: Serialize + Send + 'static>(chunks: impl Stream<Item = Chunk<T>> + Send + 'static) -> Response {
    let events = async_stream::stream! {
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let json = match chunk {
                Chunk::Data(d) => sse_json(&d),
                Chunk::Error(e) => sse_json(&e.to_json()),
            };
            yield Ok::<Event, Infallible>(Event::default().data(json));
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response()
}


/// Compiles a request's grammar with the model's compiler: a bad schema or regex is a 400 naming
/// `param` and saying what is wrong.
pub fn compile_grammar(model: &ServedModel, spec: &GrammarSpec, param: &'static str) -> Result<Constraint, ApiError> {
    let grammars = model.grammars().map_err(|e| ApiError::invalid(param, e))?;
    let compiled = grammars.compile(spec).map_err(|e| ApiError::invalid(param, e.to_string()))?;
    Ok(Constraint(Arc::new(GrammarConstraint::new(compiled))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_separators_are_escaped_in_sse_json() {
        let json = super::sse_json(&serde_json::json!({"text": "a\u{2028}b\u{2029}c"}));
        assert_eq!(json, r#"{"text":"a\u2028b\u2029c"}"#);
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["text"], "a\u{2028}b\u{2029}c");
    }
}

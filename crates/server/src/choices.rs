//! Turning one request's engine events into per-choice text: incremental detokenization (never
//! half a UTF-8 character), stop strings held back until resolved and never returned, and the
//! finish reason of each choice. Shared by the streaming and non-streaming paths, so streamed
//! text concatenated equals the non-streamed text.

use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, histogram, Histogram};

use rill_engine::{FinishReason, SampledToken, StreamEvent, Usage};
use rill_model::tokenizer::{IncrementalDecoder, Tokenizer};

use crate::app::ServedModel;
use crate::engine_slot::InFlight;
use crate::openai::stop::StopMatcher;
use crate::registry::monitor::{Outcome, VersionMonitor, MAX_GAPS_PER_REQUEST};
use crate::registry::usage::UsageLedger;

/// What one engine event means for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceUpdate {
    /// New text for choice `index`, with the tokens that produced it (for logprobs).
    Text { index: usize, text: String, tokens: Vec<SampledToken> },
    Finished { index: usize, reason: &'static str },
    Failed(rill_engine::EngineError),
}

struct Choice {
    decoder: IncrementalDecoder<Arc<Tokenizer>>,
    stop: StopMatcher,
    done: bool,
    completion_tokens: usize,
}

pub struct Choices {
    choices: Vec<Choice>,
    /// The request's place in the queue, given back at its first event.
    ticket: Option<crate::routes::generation::QueueTicket>,
    /// The key to charge the request's tokens to when it ends (its place is held until then).
    charge: Option<crate::key_limits::KeyCharge>,
    /// Where the request's usage is counted, under its model, version and key.
    ledger: Arc<UsageLedger>,
    /// The request's place, which keeps its model's engine awake until the output ends.
    _place: InFlight,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    metrics: RequestMetrics,
}

pub const TTFT_SECONDS: &str = "rill_request_ttft_seconds";
pub const INTER_TOKEN_SECONDS: &str = "rill_request_inter_token_seconds";
pub const E2E_SECONDS: &str = "rill_request_e2e_seconds";
pub const PROMPT_TOKENS: &str = "rill_prompt_tokens_total";
pub const GENERATION_TOKENS: &str = "rill_generation_tokens_total";
pub const REQUESTS: &str = "rill_requests_total";
/// Per request, by model and version: the distributions drift is measured on.
pub const PROMPT_TOKENS_PER_REQUEST: &str = "rill_request_prompt_tokens";
pub const COMPLETION_TOKENS_PER_REQUEST: &str = "rill_request_completion_tokens";
pub const MEAN_LOGPROB: &str = "rill_request_mean_logprob_nats";

/// Latency and outcome of one request, recorded as its events pass (per token: one histogram
/// sample) and once when it ends — or, for a client that left, when dropped: into the metrics,
/// and into its model version's monitor.
struct RequestMetrics {
    model: String,
    version: String,
    monitor: Arc<VersionMonitor>,
    /// What the monitor gets when the request ends.
    outcome_so_far: Outcome,
    /// Registered once per request, so the per-token path is one sample, no lookup.
    ttft: Histogram,
    inter_token: Histogram,
    started: Instant,
    last_token: Option<Instant>,
    outcome: Option<&'static str>,
    generated: u64,
    prompt_tokens: u64,
}

impl RequestMetrics {
    fn token(&mut self, logprob: Option<f32>) {
        let now = Instant::now();
        let seen = &mut self.outcome_so_far;
        match self.last_token {
            None => {
                let ttft = (now - self.started).as_secs_f64();
                self.ttft.record(ttft);
                seen.ttft_ms = Some((ttft * 1e3) as f32);
            }
            Some(last) => {
                let gap = (now - last).as_secs_f64();
                self.inter_token.record(gap);
                if seen.gaps_ms.len() < MAX_GAPS_PER_REQUEST {
                    seen.gaps_ms.push((gap * 1e3) as f32);
                }
            }
        }
        if let Some(lp) = logprob.filter(|lp| lp.is_finite()) {
            seen.logprob_sum += lp as f64;
            seen.logprob_tokens += 1;
        }
        self.last_token = Some(now);
        self.generated += 1;
    }

    fn end(&mut self, outcome: &'static str) {
        if self.outcome.is_none() {
            self.outcome = Some(outcome);
            let mut seen = std::mem::take(&mut self.outcome_so_far);
            seen.error = outcome == "error";
            seen.finish = outcome;
            seen.prompt_tokens = self.prompt_tokens as usize;
            seen.completion_tokens = self.generated as usize;
            let labels = [("model", self.model.clone()), ("version", self.version.clone())];
            histogram!(PROMPT_TOKENS_PER_REQUEST, &labels).record(self.prompt_tokens as f64);
            histogram!(COMPLETION_TOKENS_PER_REQUEST, &labels).record(self.generated as f64);
            if seen.logprob_tokens > 0 {
                histogram!(MEAN_LOGPROB, &labels).record(seen.logprob_sum / seen.logprob_tokens as f64);
            }
            self.monitor.record(seen);
            let m = self.model.clone();
            histogram!(E2E_SECONDS, "model" => m.clone()).record(self.started.elapsed().as_secs_f64());
            counter!(PROMPT_TOKENS, "model" => m.clone()).increment(self.prompt_tokens);
            counter!(GENERATION_TOKENS, "model" => m.clone()).increment(self.generated);
            counter!(REQUESTS, "model" => m, "outcome" => outcome).increment(1);
        }
    }
}

impl Drop for RequestMetrics {
    fn drop(&mut self) {
        self.end("abort");
    }
}

impl Drop for Choices {
    /// The request is over (finished, failed or left): it is counted, and its key charged,
    /// for what it used.
    fn drop(&mut self) {
        let u = self.usage();
        let key = self.charge.as_ref().map(|c| c.account.name.as_str());
        self.ledger.record(&self.metrics.model, &self.metrics.version, key, &u);
        if let Some(charge) = self.charge.take() {
            charge.tokens(u.prompt_tokens, u.completion_tokens);
        }
    }
}

pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Abort => "abort",
    }
}

impl Choices {
    pub fn new(model: &ServedModel, place: InFlight, n: usize, stops: &[String], prompt_tokens: usize, ticket: crate::routes::generation::QueueTicket, charge: Option<crate::key_limits::KeyCharge>) -> Choices {
        let tokenizer = &model.tokenizer;
        let choices = (0..n)
            .map(|_| Choice { decoder: IncrementalDecoder::continuing(tokenizer.clone(), true), stop: StopMatcher::new(stops.to_vec()), done: false, completion_tokens: 0 })
            .collect();
        let metrics = RequestMetrics {
            model: model.name.clone(),
            version: model.version.clone(),
            monitor: model.monitor.clone(),
            outcome_so_far: Outcome::default(),
            ttft: histogram!(TTFT_SECONDS, "model" => model.name.clone()),
            inter_token: histogram!(INTER_TOKEN_SECONDS, "model" => model.name.clone()),
            started: Instant::now(),
            last_token: None,
            outcome: None,
            generated: 0,
            prompt_tokens: prompt_tokens as u64,
        };
        Choices { choices, ticket: Some(ticket), charge, ledger: model.usage.clone(), _place: place, prompt_tokens, cached_tokens: 0, metrics }
    }

    /// The stop string that ended choice `index`, if one did.
    pub fn stop_sequence(&self, index: usize) -> Option<&str> {
        self.choices.get(index).and_then(|c| c.stop.matched())
    }

    pub fn all_done(&self) -> bool {
        self.choices.iter().all(|c| c.done)
    }

    pub fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_tokens, completion_tokens: self.choices.iter().map(|c| c.completion_tokens).sum(), cached_tokens: self.cached_tokens }
    }

    /// The request's outcome is the last choice's finish reason.
    fn end_if_done(&mut self, reason: &'static str) {
        if self.all_done() {
            self.metrics.end(reason);
        }
    }

    pub fn on_event(&mut self, event: StreamEvent) -> Vec<ChoiceUpdate> {
        self.ticket = None;
        match event {
            StreamEvent::Token { index, token } => {
                let Some(c) = self.choices.get_mut(index).filter(|c| !c.done) else { return vec![] };
                c.completion_tokens += 1;
                self.metrics.token(token.logprob);
                let piece = c.decoder.push(token.token);
                let out = c.stop.push(&piece);
                let mut updates = vec![ChoiceUpdate::Text { index, text: out.emit, tokens: vec![token] }];
                if out.stopped {
                    c.done = true;
                    updates.push(ChoiceUpdate::Finished { index, reason: "stop" });
                    self.end_if_done("stop");
                }
                updates
            }
            StreamEvent::Finished { index, reason, usage } => {
                self.cached_tokens = self.cached_tokens.max(usage.cached_tokens);
                let Some(c) = self.choices.get_mut(index).filter(|c| !c.done) else { return vec![] };
                c.done = true;
                // The engine counts a final stop token that was not streamed.
                c.completion_tokens = c.completion_tokens.max(usage.completion_tokens);
                let rest = c.decoder.flush();
                let out = c.stop.push(&rest);
                let mut text = out.emit;
                let reason = if out.stopped {
                    "stop"
                } else {
                    text.push_str(&c.stop.finish());
                    finish_reason(reason)
                };
                self.end_if_done(reason);
                vec![ChoiceUpdate::Text { index, text, tokens: vec![] }, ChoiceUpdate::Finished { index, reason }]
            }
            StreamEvent::Failed(message) => {
                self.choices.iter_mut().for_each(|c| c.done = true);
                self.metrics.end("error");
                vec![ChoiceUpdate::Failed(message)]
            }
        }
    }
}

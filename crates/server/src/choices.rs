//! Turning one request's engine events into per-choice text: incremental detokenization (never
//! half a UTF-8 character), stop strings held back until resolved and never returned, and the
//! finish reason of each choice. Shared by the streaming and non-streaming paths, so streamed
//! text concatenated equals the non-streamed text.

use std::sync::Arc;

use rill_engine::{FinishReason, SampledToken, StreamEvent, Usage};
use rill_model::tokenizer::{IncrementalDecoder, Tokenizer};

use crate::openai::stop::StopMatcher;

/// What one engine event means for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceUpdate {
    /// New text for choice `index`, with the tokens that produced it (for logprobs).
    Text { index: usize, text: String, tokens: Vec<SampledToken> },
    Finished { index: usize, reason: &'static str },
    Failed(String),
}

struct Choice {
    decoder: IncrementalDecoder<Arc<Tokenizer>>,
    stop: StopMatcher,
    done: bool,
    completion_tokens: usize,
}

pub struct Choices {
    choices: Vec<Choice>,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
}

pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Abort => "abort",
    }
}

impl Choices {
    pub fn new(n: usize, tokenizer: &Arc<Tokenizer>, stops: &[String], prompt_tokens: usize) -> Choices {
        let choices = (0..n)
            .map(|_| Choice { decoder: IncrementalDecoder::new(tokenizer.clone(), true), stop: StopMatcher::new(stops.to_vec()), done: false, completion_tokens: 0 })
            .collect();
        Choices { choices, prompt_tokens, cached_tokens: 0 }
    }

    pub fn all_done(&self) -> bool {
        self.choices.iter().all(|c| c.done)
    }

    pub fn usage(&self) -> Usage {
        Usage { prompt_tokens: self.prompt_tokens, completion_tokens: self.choices.iter().map(|c| c.completion_tokens).sum(), cached_tokens: self.cached_tokens }
    }

    pub fn on_event(&mut self, event: StreamEvent) -> Vec<ChoiceUpdate> {
        match event {
            StreamEvent::Token { index, token } => {
                let Some(c) = self.choices.get_mut(index).filter(|c| !c.done) else { return vec![] };
                c.completion_tokens += 1;
                let piece = c.decoder.push(token.token);
                let out = c.stop.push(&piece);
                let mut updates = vec![ChoiceUpdate::Text { index, text: out.emit, tokens: vec![token] }];
                if out.stopped {
                    c.done = true;
                    updates.push(ChoiceUpdate::Finished { index, reason: "stop" });
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
                vec![ChoiceUpdate::Text { index, text, tokens: vec![] }, ChoiceUpdate::Finished { index, reason }]
            }
            StreamEvent::Failed(message) => {
                self.choices.iter_mut().for_each(|c| c.done = true);
                vec![ChoiceUpdate::Failed(message)]
            }
        }
    }
}

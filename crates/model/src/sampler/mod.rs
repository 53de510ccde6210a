//! Choosing the next token from one row of logits, for one choice of one request.
//!
//! A chain of logits processors (`processors.rs`: `logit_bias`, penalties, the `min_tokens`
//! mask, the allowed-token mask) followed by the one truncate-and-draw rule every sampling path
//! shares (`rill_backend::draw`: temperature, top-k, top-p, min-p, the draw). Each `Sampler`
//! owns its random stream (`ChaCha8Rng` from the choice's seed, see `rill_engine::choice_seed`),
//! which supplies one uniform per non-greedy token, and its processors' state; so a request's
//! tokens depend on neither the batch nor the path: a row whose processors are inactive
//! ([`Sampler::device_eligible`]) gets the same token from `Backend::sample` on the device as
//! from [`Sampler::sample`] on the host, with or without `logprobs`.
//!
//! Log-probabilities are those of the model's raw distribution (`log_softmax` of the logits as
//! given, before any of the above: OpenAI's and vLLM's default), for the chosen token and the
//! `logprobs` most likely alternatives.
//!
//! Per token the sampler allocates nothing but the returned alternatives (empty unless asked
//! for). Parameters are expected to be validated (`SamplingParams::validate`), but out-of-range
//! ones never panic: they are clamped or treated as off.

mod logprobs;
mod penalties;
mod processors;
#[cfg(test)]
mod tests;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_backend::{draw_token, DrawParams, DrawScratch, BELOW_ONE};
pub use rill_engine::GREEDY_TEMPERATURE;
use rill_engine::{ConstraintState, SampledToken, SamplingParams};

pub use logprobs::{logprob, top_logprobs};
pub use processors::AllowedTokens;
use processors::Processors;

pub struct Sampler {
    /// The rule's parameters for this request; `uniform` is drawn per token.
    rule: DrawParams,
    processors: Processors,
    logprobs: Option<usize>,
    /// Tokens sampled so far.
    generated: usize,
    rng: ChaCha8Rng,
    /// `[vocab]` logits after the processors.
    work: Vec<f32>,
    scratch: DrawScratch,
    /// Where the output stands in the request's grammar, if it has one.
    constraint: Option<Box<dyn ConstraintState>>,
}

impl Sampler {
    /// A sampler for one choice: `seed` is that choice's seed (`rill_engine::choice_seed` of the
    /// request's seed, or of a random one when the request gave none). `prompt_tokens` feed the
    /// repetition penalty; `eos_token_ids` are masked with the stop ids until `min_tokens`.
    pub fn new(params: &SamplingParams, seed: u64, prompt_tokens: &[u32], eos_token_ids: &[u32]) -> Sampler {
        let rule = if params.is_greedy() || params.top_k == 1 {
            DrawParams::GREEDY
        } else {
            DrawParams {
                temperature: params.temperature,
                top_k: u32::try_from(params.top_k.max(0)).unwrap_or(0),
                // NaN means off.
                top_p: if params.top_p < 1.0 { params.top_p } else { 1.0 },
                min_p: if params.min_p > 0.0 { params.min_p.min(1.0) } else { 0.0 },
                uniform: 0.0,
            }
        };
        Sampler {
            rule,
            processors: Processors::new(params, prompt_tokens, eos_token_ids),
            logprobs: params.logprobs,
            generated: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            work: Vec::new(),
            scratch: DrawScratch::default(),
            constraint: params.constraint.as_ref().map(|c| c.0.start()),
        }
    }

    /// Chooses the next token from `logits` (`[vocab]`, the model's raw output for this
    /// sequence) and records it: the processors of later calls count it. Call it exactly once
    /// per generated token.
    pub fn sample(&mut self, logits: &[f32]) -> SampledToken {
        if let Some(c) = &mut self.constraint {
            match c.allowed() {
                Ok(allowed) => self.processors.allowed_mut().allow_only(&allowed),
                Err(e) => self.drop_constraint(&e),
            }
        }
        let rule = self.next_rule();
        let token = if self.processors.is_active() {
            // [vocab] logits through the chain; NaN counts as impossible.
            self.work.clear();
            self.work.extend(logits.iter().map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }));
            self.processors.apply(&mut self.work);
            if self.work.iter().all(|&l| l == f32::NEG_INFINITY) {
                // Nothing is possible after the chain: fall back to the raw distribution.
                draw_token(logits, &rule, &mut self.scratch)
            } else {
                draw_token(&self.work, &rule, &mut self.scratch)
            }
        } else {
            draw_token(logits, &rule, &mut self.scratch)
        };
        let (logprob, top_logprobs) = match self.logprobs {
            Some(k) => {
                let (chosen, top) = logprobs::chosen_and_top(logits, token, k);
                (Some(chosen), top)
            }
            None => (None, Vec::new()),
        };
        self.processors.record(token);
        if let Some(Err(e)) = self.constraint.as_mut().map(|c| c.accept(token)) {
            self.drop_constraint(&e);
        }
        SampledToken { token, logprob, top_logprobs }
    }

    /// A grammar that failed mid-output (an llguidance error, never expected) no longer masks.
    fn drop_constraint(&mut self, why: &str) {
        tracing::warn!("constrained decoding stopped: {why}");
        self.constraint = None;
        self.processors.allowed_mut().allow_all();
    }

    /// Whether the next token can be chosen by `Backend::sample` from the raw logits: no
    /// processor would change them and no log-probabilities are wanted.
    pub fn device_eligible(&self) -> bool {
        self.logprobs.is_none() && !self.processors.is_active() && self.constraint.is_none()
    }

    /// The rule's parameters for `Backend::sample` to choose this sequence's next token, or
    /// `None` when it must be sampled on the host ([`Sampler::device_eligible`]). `Some` counts
    /// as that token's `sample` call: it draws the same uniform from this sampler's seeded
    /// stream that `sample` would have drawn, so either path gives the same token.
    pub fn device_params(&mut self) -> Option<DrawParams> {
        if !self.device_eligible() {
            return None;
        }
        // No processor is active, so none has anything to count.
        Some(self.next_rule())
    }

    /// The sequence's per-step allowed-token mask (structured outputs fill it).
    pub fn allowed_tokens(&mut self) -> &mut AllowedTokens {
        self.processors.allowed_mut()
    }

    /// Tokens sampled so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// This token's rule parameters: one uniform from the seeded stream unless greedy (an f64
    /// draw just under 1 must not round up to 1 in f32).
    fn next_rule(&mut self) -> DrawParams {
        self.generated += 1;
        let mut rule = self.rule;
        if !rule.is_greedy() {
            rule.uniform = (self.rng.random::<f64>() as f32).min(BELOW_ONE);
        }
        rule
    }
}

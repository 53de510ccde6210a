//! Choosing the next token from one row of logits, for one choice of one request.
//!
//! Each `Sampler` owns its random stream (`ChaCha8Rng` from the choice's seed, see
//! `rill_engine::choice_seed`) and its penalty state, so a request's tokens never depend on what
//! else is in the batch. The pipeline is vLLM's order:
//!
//! `logit_bias` → penalties (repetition over prompt + output, presence/frequency over output) →
//! `min_tokens` (EOS and stop ids masked) → greedy argmax if `temperature` ≈ 0, else
//! temperature → top-k → top-p → min-p → draw.
//!
//! Log-probabilities are those of the model's raw distribution (`log_softmax` of the logits as
//! given, before any of the above: OpenAI's and vLLM's default), for the chosen token and the
//! `logprobs` most likely alternatives.
//!
//! Per token the sampler allocates nothing but the returned alternatives (`Sampled::top`, empty
//! unless asked for): the modified logits, the candidate ids and the penalty counts live in
//! buffers sized once to the vocabulary. Parameters are expected to be validated
//! (`SamplingParams::validate`), but out-of-range ones never panic: they are clamped or treated
//! as off.

mod logprobs;
mod penalties;
mod truncation;
#[cfg(test)]
mod tests;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_backend::DeviceSampling;
pub use rill_engine::GREEDY_TEMPERATURE;
use rill_engine::SamplingParams;

pub use logprobs::{argmax, logprob, top_logprobs};
use penalties::Penalties;
use truncation::Truncation;

/// One chosen token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// `log softmax(raw logits)[token]`; `None` unless the request asked for `logprobs`.
    pub logprob: Option<f32>,
    /// The `logprobs` most likely tokens of the raw distribution, most likely first.
    pub top: Vec<(u32, f32)>,
}

pub struct Sampler {
    greedy: bool,
    temperature: f32,
    filters: Truncation,
    logit_bias: Vec<(u32, f32)>,
    penalties: Option<Penalties>,
    /// Tokens masked while fewer than `min_tokens` have been generated: the stop ids, and EOS
    /// unless `ignore_eos`.
    min_tokens: usize,
    suppressed: Vec<u32>,
    logprobs: Option<usize>,
    /// Tokens sampled so far.
    generated: usize,
    rng: ChaCha8Rng,
    /// `[vocab]` logits after bias and penalties, then the unnormalized probabilities.
    work: Vec<f32>,
    /// `[vocab]` candidate sort keys for top-k / top-p / min-p.
    keys: Vec<u64>,
}

impl Sampler {
    /// A sampler for one choice: `seed` is that choice's seed (`rill_engine::choice_seed` of the
    /// request's seed, or of a random one when the request gave none). `prompt_tokens` feed the
    /// repetition penalty; `eos_token_ids` are masked with the stop ids until `min_tokens`.
    pub fn new(params: &SamplingParams, seed: u64, prompt_tokens: &[u32], eos_token_ids: &[u32]) -> Sampler {
        let mut suppressed = Vec::new();
        if params.min_tokens > 0 {
            suppressed.extend_from_slice(&params.stop_token_ids);
            if !params.ignore_eos {
                suppressed.extend_from_slice(eos_token_ids);
            }
        }
        let logit_bias = params.logit_bias.iter().copied().filter(|(_, b)| b.is_finite()).collect();
        Sampler {
            greedy: params.is_greedy() || params.top_k == 1,
            temperature: params.temperature,
            filters: Truncation {
                top_k: params.top_k.max(0) as usize,
                // NaN means off.
                top_p: if params.top_p < 1.0 { params.top_p } else { 1.0 },
                min_p: if params.min_p > 0.0 { params.min_p.min(1.0) } else { 0.0 },
            },
            logit_bias,
            penalties: Penalties::new(params, prompt_tokens),
            min_tokens: params.min_tokens,
            suppressed,
            logprobs: params.logprobs,
            generated: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            work: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Chooses the next token from `logits` (`[vocab]`, the model's raw output for this
    /// sequence) and records it: the penalties and `min_tokens` of later calls count it. Call it
    /// exactly once per generated token.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        let token = self.choose(logits);
        let (logprob, top) = match self.logprobs {
            Some(k) => {
                let (chosen, top) = logprobs::chosen_and_top(logits, token, k);
                (Some(chosen), top)
            }
            None => (None, Vec::new()),
        };
        self.generated += 1;
        if let Some(penalties) = &mut self.penalties {
            penalties.record(token);
        }
        Sampled { token, logprob, top }
    }

    /// Whether the next token can be chosen by `Backend::sample` exactly as this request asks:
    /// no log-probabilities, `logit_bias`, penalties, `min_p`, nor `min_tokens` masking left.
    /// (The device's draw maps the uniform to tokens in index order, so a seeded request's
    /// tokens there are reproducible but differ from the host path's; see `DeviceSampling`.)
    pub fn device_eligible(&self) -> bool {
        let suppress = self.generated < self.min_tokens && !self.suppressed.is_empty();
        self.logprobs.is_none() && self.logit_bias.is_empty() && self.penalties.is_none() && !suppress && self.filters.min_p == 0.0
    }

    /// The parameters for `Backend::sample` to choose this sequence's next token, or `None`
    /// when it must be sampled on the host ([`Sampler::device_eligible`]). `Some` counts as
    /// that token's `sample` call: it draws the uniform from this sampler's own seeded stream
    /// (one `f64`, as the host path draws, none when greedy) and counts the token as generated.
    pub fn device_params(&mut self) -> Option<DeviceSampling> {
        if !self.device_eligible() {
            return None;
        }
        self.generated += 1;
        if self.greedy {
            return Some(DeviceSampling::GREEDY);
        }
        // The largest f32 below 1: an f64 draw just under 1 must not round up to it.
        let uniform = (self.rng.random::<f64>() as f32).min(f32::from_bits(0x3F7F_FFFF));
        let top_k = u32::try_from(self.filters.top_k).unwrap_or(u32::MAX);
        Some(DeviceSampling { temperature: self.temperature, top_k, top_p: self.filters.top_p, uniform })
    }

    /// Tokens sampled so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    fn choose(&mut self, logits: &[f32]) -> u32 {
        let suppress = self.generated < self.min_tokens && !self.suppressed.is_empty();
        if self.greedy && !suppress && self.logit_bias.is_empty() && self.penalties.is_none() {
            return argmax(logits);
        }

        // [vocab] logits; NaN counts as impossible.
        let work = &mut self.work;
        work.clear();
        work.extend(logits.iter().map(|&l| if l.is_nan() { f32::NEG_INFINITY } else { l }));
        for &(t, bias) in &self.logit_bias {
            if let Some(l) = work.get_mut(t as usize) {
                *l += bias;
            }
        }
        if let Some(penalties) = &mut self.penalties {
            penalties.reserve_vocab(work.len());
            penalties.apply(work);
        }
        if suppress {
            for &t in &self.suppressed {
                if let Some(l) = work.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if self.greedy {
            return argmax(work);
        }

        let max = work.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Nothing is possible after masking: fall back to the raw distribution's best.
            return argmax(logits);
        }
        // [vocab] exp((l - max) / T), the softmax numerators (the most likely token gets 1).
        if max == f32::INFINITY {
            // Infinitely likely tokens share all the mass.
            work.iter_mut().for_each(|l| *l = if *l == f32::INFINITY { 1.0 } else { 0.0 });
        } else {
            let inv_t = 1.0 / self.temperature;
            work.iter_mut().for_each(|l| *l = ((*l - max) * inv_t).exp());
        }
        let u = self.rng.random::<f64>();
        truncation::sample(work, &mut self.keys, self.filters, u)
    }
}

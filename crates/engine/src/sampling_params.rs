//! `SamplingParams`: how one request wants its tokens chosen, as plain data. The server parses
//! the OpenAI fields into it and calls `validate` (so a bad value becomes a 400 naming the
//! parameter); the engine carries it with each sequence; the model crate's `Sampler` applies it.
//!
//! Defaults follow OpenAI's API: `temperature` 1.0 (sampling, not greedy), `top_p` 1.0, no
//! penalties, one choice. Ranges follow vLLM where OpenAI has none (`top_k`, `min_p`,
//! `repetition_penalty`, `min_tokens`). `temperature` has no upper bound here (vLLM's rule); the
//! OpenAI-compatible server caps it at 2 as OpenAI does.

/// Temperatures at or below this are greedy (argmax), as vLLM's `_SAMPLING_EPS`.
pub const GREEDY_TEMPERATURE: f32 = 1e-5;
/// Most alternatives `logprobs` may ask for per token (OpenAI's `top_logprobs` limit).
pub const MAX_LOGPROBS: usize = 20;
/// Most choices one request may ask for (OpenAI's limit on `n`).
pub const MAX_N: usize = 128;
/// `logit_bias` values are clamped by OpenAI to this magnitude; we reject beyond it.
pub const MAX_LOGIT_BIAS: f32 = 100.0;
/// `presence_penalty` and `frequency_penalty` lie in `[-MAX_PENALTY, MAX_PENALTY]`.
pub const MAX_PENALTY: f32 = 2.0;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Number of choices (independent completions) for the prompt; at least 1.
    pub n: usize,
    /// Softmax temperature; at or below `GREEDY_TEMPERATURE` the most likely token is taken.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 or -1 disables.
    pub top_k: i32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; in (0, 1].
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; in [0, 1], 0 disables.
    pub min_p: f32,
    /// Subtracted once from the logit of every token that already appears in the output.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it appears in the output.
    pub frequency_penalty: f32,
    /// Over prompt and output tokens: positive logits are divided by it, negative ones
    /// multiplied (HF/vLLM). Greater than 0; 1 disables.
    pub repetition_penalty: f32,
    /// `(token id, bias)` added to the logits before anything else; bias in [-100, 100].
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed for this request's random stream. `None`: the engine draws one.
    pub seed: Option<u64>,
    /// Most tokens to generate per choice. `None`: until a stop or the context is full.
    pub max_tokens: Option<usize>,
    /// Tokens generated before EOS and `stop_token_ids` are allowed (they are masked until then).
    pub min_tokens: usize,
    /// Token ids that end a choice, besides the model's EOS.
    pub stop_token_ids: Vec<u32>,
    /// Keep generating through the model's EOS token(s).
    pub ignore_eos: bool,
    /// Report each chosen token's log-probability and this many most likely alternatives
    /// (0..=`MAX_LOGPROBS`). `None`: no log-probabilities.
    pub logprobs: Option<usize>,
    /// Holds the output to a grammar (structured outputs, forced tool calls).
    pub constraint: Option<crate::Constraint>,
    /// Speculate by n-gram lookup (`crate::speculation`); `None`: the model's default. The
    /// tokens are the same either way; only the speed differs.
    pub speculative: Option<bool>,
}

impl Default for SamplingParams {
    fn default() -> SamplingParams {
        SamplingParams {
            n: 1,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: Vec::new(),
            seed: None,
            max_tokens: None,
            min_tokens: 0,
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            logprobs: None,
            constraint: None,
            speculative: None,
        }
    }
}

/// A sampling parameter out of its range. `param()` is the request field to report (the
/// OpenAI error body's `param`); the message names it too.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("{param} must be {expected}, got {got}")]
    OutOfRange { param: &'static str, expected: &'static str, got: String },
    #[error("{param} contains token id {token}, outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfVocab { param: &'static str, token: u32, vocab_size: usize },
    #[error("min_tokens ({min_tokens}) must not exceed max_tokens ({max_tokens})")]
    MinTokensAboveMax { min_tokens: usize, max_tokens: usize },
}

impl SamplingError {
    /// The request field at fault.
    pub fn param(&self) -> &'static str {
        match self {
            SamplingError::OutOfRange { param, .. } | SamplingError::TokenOutOfVocab { param, .. } => param,
            SamplingError::MinTokensAboveMax { .. } => "min_tokens",
        }
    }
}

fn out_of_range(param: &'static str, expected: &'static str, got: impl ToString) -> SamplingError {
    SamplingError::OutOfRange { param, expected, got: got.to_string() }
}

/// `Err` naming `param` unless `ok` (written so that NaN fails every range check).
fn check(ok: bool, param: &'static str, expected: &'static str, got: impl ToString) -> Result<(), SamplingError> {
    if ok {
        Ok(())
    } else {
        Err(out_of_range(param, expected, got))
    }
}

impl SamplingParams {
    /// Greedy decoding: the temperature is (about) zero (or, unvalidated, negative or NaN).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= GREEDY_TEMPERATURE || self.temperature.is_nan()
    }

    /// Checks every field against its range, for a model with `vocab_size` tokens. The first
    /// field out of range is reported.
    pub fn validate(&self, vocab_size: usize) -> Result<(), SamplingError> {
        check((1..=MAX_N).contains(&self.n), "n", "between 1 and 128", self.n)?;
        let t = self.temperature;
        check(t >= 0.0 && t.is_finite(), "temperature", "non-negative and finite", t)?;
        check(self.top_k >= -1, "top_k", "-1 or 0 (disabled) or at least 1", self.top_k)?;
        let p = self.top_p;
        check(p > 0.0 && p <= 1.0, "top_p", "in (0, 1]", p)?;
        check((0.0..=1.0).contains(&self.min_p), "min_p", "in [0, 1]", self.min_p)?;
        let penalty = -MAX_PENALTY..=MAX_PENALTY;
        check(penalty.contains(&self.presence_penalty), "presence_penalty", "in [-2, 2]", self.presence_penalty)?;
        check(penalty.contains(&self.frequency_penalty), "frequency_penalty", "in [-2, 2]", self.frequency_penalty)?;
        let r = self.repetition_penalty;
        check(r > 0.0 && r.is_finite(), "repetition_penalty", "greater than 0 and finite", r)?;
        for &(token, bias) in &self.logit_bias {
            if token as usize >= vocab_size {
                return Err(SamplingError::TokenOutOfVocab { param: "logit_bias", token, vocab_size });
            }
            check((-MAX_LOGIT_BIAS..=MAX_LOGIT_BIAS).contains(&bias), "logit_bias", "in [-100, 100]", bias)?;
        }
        if let Some(max_tokens) = self.max_tokens {
            check(max_tokens >= 1, "max_tokens", "at least 1", max_tokens)?;
            if self.min_tokens > max_tokens {
                return Err(SamplingError::MinTokensAboveMax { min_tokens: self.min_tokens, max_tokens });
            }
        }
        if let Some(&token) = self.stop_token_ids.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(SamplingError::TokenOutOfVocab { param: "stop_token_ids", token, vocab_size });
        }
        if let Some(k) = self.logprobs {
            check(k <= MAX_LOGPROBS, "logprobs", "between 0 and 20", k)?;
        }
        Ok(())
    }
}

/// The seed of choice `choice` of a request seeded with `seed`: choice 0 keeps `seed` (so `n = 1`
/// and the first of `n > 1` choices agree); the others get well-mixed seeds (splitmix64), so the
/// choices differ yet are reproducible and never depend on the batch they run in.
pub fn choice_seed(seed: u64, choice: usize) -> u64 {
    if choice == 0 {
        return seed;
    }
    splitmix64(seed ^ splitmix64(choice as u64))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: usize = 1000;

    fn param_of(p: SamplingParams) -> &'static str {
        p.validate(VOCAB).expect_err("should be rejected").param()
    }

    #[test]
    fn defaults_are_valid_and_follow_openai() {
        let p = SamplingParams::default();
        assert_eq!(p.validate(VOCAB), Ok(()));
        assert_eq!((p.temperature, p.top_p, p.n), (1.0, 1.0, 1));
        assert!(!p.is_greedy());
        assert!(SamplingParams { temperature: 0.0, ..p }.is_greedy());
    }

    #[test]
    fn range_edges_that_are_allowed() {
        let ok = [
            SamplingParams { temperature: 0.0, ..Default::default() },
            SamplingParams { temperature: 5.0, ..Default::default() },
            SamplingParams { top_k: -1, ..Default::default() },
            SamplingParams { top_k: 5000, ..Default::default() },
            SamplingParams { top_p: 1e-6, ..Default::default() },
            SamplingParams { min_p: 1.0, ..Default::default() },
            SamplingParams { presence_penalty: -2.0, frequency_penalty: 2.0, ..Default::default() },
            SamplingParams { repetition_penalty: 0.01, ..Default::default() },
            SamplingParams { logit_bias: vec![(999, -100.0), (0, 100.0)], ..Default::default() },
            SamplingParams { n: MAX_N, ..Default::default() },
            SamplingParams { max_tokens: Some(4), min_tokens: 4, ..Default::default() },
            SamplingParams { stop_token_ids: vec![999], ..Default::default() },
            SamplingParams { logprobs: Some(0), ..Default::default() },
            SamplingParams { logprobs: Some(20), ..Default::default() },
        ];
        for p in ok {
            assert_eq!(p.validate(VOCAB), Ok(()), "{p:?}");
        }
    }

    #[test]
    fn each_out_of_range_field_is_named() {
        let d = SamplingParams::default;
        let cases = [
            (SamplingParams { n: 0, ..d() }, "n"),
            (SamplingParams { n: MAX_N + 1, ..d() }, "n"),
            (SamplingParams { temperature: -0.1, ..d() }, "temperature"),
            (SamplingParams { temperature: f32::NAN, ..d() }, "temperature"),
            (SamplingParams { temperature: f32::INFINITY, ..d() }, "temperature"),
            (SamplingParams { top_k: -2, ..d() }, "top_k"),
            (SamplingParams { top_p: 0.0, ..d() }, "top_p"),
            (SamplingParams { top_p: 1.01, ..d() }, "top_p"),
            (SamplingParams { top_p: f32::NAN, ..d() }, "top_p"),
            (SamplingParams { min_p: -0.1, ..d() }, "min_p"),
            (SamplingParams { min_p: 1.5, ..d() }, "min_p"),
            (SamplingParams { presence_penalty: 2.5, ..d() }, "presence_penalty"),
            (SamplingParams { frequency_penalty: -2.5, ..d() }, "frequency_penalty"),
            (SamplingParams { frequency_penalty: f32::NAN, ..d() }, "frequency_penalty"),
            (SamplingParams { repetition_penalty: 0.0, ..d() }, "repetition_penalty"),
            (SamplingParams { repetition_penalty: f32::INFINITY, ..d() }, "repetition_penalty"),
            (SamplingParams { logit_bias: vec![(1000, 1.0)], ..d() }, "logit_bias"),
            (SamplingParams { logit_bias: vec![(1, 100.5)], ..d() }, "logit_bias"),
            (SamplingParams { logit_bias: vec![(1, f32::NAN)], ..d() }, "logit_bias"),
            (SamplingParams { max_tokens: Some(0), ..d() }, "max_tokens"),
            (SamplingParams { max_tokens: Some(3), min_tokens: 4, ..d() }, "min_tokens"),
            (SamplingParams { stop_token_ids: vec![5, 1000], ..d() }, "stop_token_ids"),
            (SamplingParams { logprobs: Some(21), ..d() }, "logprobs"),
        ];
        for (p, param) in cases {
            assert_eq!(param_of(p), param);
        }
    }

    #[test]
    fn messages_name_the_parameter_and_the_value() {
        let err = SamplingParams { top_p: 1.5, ..Default::default() }.validate(VOCAB).unwrap_err();
        assert_eq!(err.to_string(), "top_p must be in (0, 1], got 1.5");
        let err = SamplingParams { logit_bias: vec![(4000, 1.0)], ..Default::default() }.validate(VOCAB).unwrap_err();
        assert_eq!(err.to_string(), "logit_bias contains token id 4000, outside the vocabulary of 1000 tokens");
        let err = SamplingParams { max_tokens: Some(2), min_tokens: 3, ..Default::default() }.validate(VOCAB).unwrap_err();
        assert_eq!(err.to_string(), "min_tokens (3) must not exceed max_tokens (2)");
    }

    #[test]
    fn choice_seeds_are_distinct_and_stable() {
        assert_eq!(choice_seed(42, 0), 42);
        let seeds: Vec<u64> = (0..64).map(|i| choice_seed(42, i)).collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
        assert_eq!(seeds, (0..64).map(|i| choice_seed(42, i)).collect::<Vec<_>>());
        // Unlike `seed + i`, neighbouring seeds do not share choices.
        assert_ne!(choice_seed(42, 1), choice_seed(43, 0));
    }
}

//! The executor: what the engine thread drives each step. The model crate implements it over a
//! backend; tests implement it with a fake. Sampling lives behind it because logits never need
//! to leave the device; the engine keeps each sequence's sampler state (`SeqState`) and hands it
//! back every step, so sampling is per sequence and never depends on batch composition.

use crate::{ExecuteError, ForwardBatch, SampledToken, SamplingParams};

pub trait Executor: Send + 'static {
    /// Per-sequence sampling state (seeded RNG, penalty counts).
    type SeqState: Send;

    /// State for a new sequence with `prompt`, seeded with `seed`.
    fn start_sequence(&mut self, params: &SamplingParams, seed: u64, prompt: &[u32]) -> Self::SeqState;

    /// Runs one step and samples one token per entry of `batch.logits_rows`, using
    /// `samplers[i]` for row `i`.
    fn execute(&mut self, batch: &ForwardBatch, samplers: &mut [&mut Self::SeqState]) -> Result<Vec<SampledToken>, ExecuteError>;

    /// Tokens that end generation unless `ignore_eos`.
    fn eos_token_ids(&self) -> &[u32];

    /// Longest sequence (prompt + generated) the model accepts.
    fn max_model_len(&self) -> usize;
}

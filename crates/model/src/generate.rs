//! Running one sequence through a `Transformer` without the engine: the `rill generate` path and
//! the golden tests. The sequence owns the whole KV cache (block `i` holds positions
//! `i * block_size ..`); the prompt is prefilled in chunks of the step capacity.

use std::time::{Duration, Instant};

use rill_backend::Backend;
use rill_engine::{ForwardBatch, SamplingParams};

use crate::forward::{ForwardError, Transformer};
use crate::sampler::Sampler;

#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: usize,
    pub temperature: f32,
    pub seed: u64,
    /// Token ids that end generation (not emitted).
    pub stop_tokens: Vec<u32>,
    /// Top log-probabilities recorded per generated token (0: none).
    pub top_logprobs: usize,
}

/// One generated token with its log-probability and the alternatives asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
    /// True when a stop token ended generation (rather than `max_tokens` or the context).
    pub stopped: bool,
}

impl GenerationStats {
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_time.as_secs_f64().max(1e-9)
    }

    /// Decode rate over the tokens after the first (the first comes out of the prefill).
    pub fn decode_tokens_per_sec(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("prompt of {prompt} tokens leaves no room in a {capacity}-token context")]
    PromptTooLong { prompt: usize, capacity: usize },
    #[error(transparent)]
    Forward(#[from] ForwardError),
}

/// Generates up to `params.max_tokens` tokens after `prompt`, calling `on_token` for each as it
/// is produced. Stops early at a stop token or when the context (model or KV cache) is full.
pub fn generate<B: Backend>(
    model: &mut Transformer<B>,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_token: impl FnMut(&GeneratedToken),
) -> Result<GenerationStats, GenerateError> {
    let layout = model.kv_layout();
    let capacity = (layout.num_blocks * layout.block_size).min(model.config().context_length);
    if prompt.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if prompt.len() >= capacity {
        return Err(GenerateError::PromptTooLong { prompt: prompt.len(), capacity });
    }
    let blocks: Vec<u32> = (0..layout.num_blocks as u32).collect();
    let mut batch = ForwardBatch::new(layout.block_size, layout.num_blocks);
    // The chosen token's logprob is always reported (the golden tests compare it). Stop tokens
    // are handled below; without `min_tokens` the sampler needs no EOS ids.
    let sampling = SamplingParams { temperature: params.temperature, logprobs: Some(params.top_logprobs), ..SamplingParams::default() };
    let mut sampler = Sampler::new(&sampling, params.seed, prompt, &[]);
    let mut stats = GenerationStats { prompt_tokens: prompt.len(), ..Default::default() };
    let chunk = model.capacity().max_tokens;

    // Prefill in chunks; only the last chunk asks for logits.
    let started = Instant::now();
    let mut done = 0;
    let mut logits_of_last = Vec::new();
    while done < prompt.len() {
        let end = (done + chunk).min(prompt.len());
        batch.clear();
        let needed = end.div_ceil(layout.block_size);
        batch.push_sequence(&prompt[done..end], done, &blocks[..needed], end == prompt.len()).expect("blocks cover the prompt");
        let logits = model.forward(&batch)?;
        if end == prompt.len() {
            logits_of_last = logits.to_vec();
        }
        done = end;
    }
    stats.prefill_time = started.elapsed();

    let started = Instant::now();
    let mut logits = logits_of_last;
    for pos in prompt.len()..prompt.len() + params.max_tokens {
        let sampled = sampler.sample(&logits);
        let id = sampled.token;
        if params.stop_tokens.contains(&id) {
            stats.stopped = true;
            break;
        }
        let logprob = sampled.logprob.expect("logprobs are requested");
        on_token(&GeneratedToken { id, logprob, top: sampled.top_logprobs });
        stats.generated_tokens += 1;
        if pos + 1 >= capacity || stats.generated_tokens == params.max_tokens {
            break;
        }
        batch.clear();
        batch.push_sequence(&[id], pos, &blocks[..(pos + 1).div_ceil(layout.block_size)], true).expect("blocks cover the context");
        logits.copy_from_slice(model.forward(&batch)?);
    }
    stats.decode_time = started.elapsed();
    Ok(stats)
}

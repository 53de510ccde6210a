//! `ModelRunner`: the engine's `Executor` for a real model — a `Transformer` on some backend plus
//! a per-sequence `Sampler`. Only the rows that sample produce logits, and each row is sampled by
//! its own sequence's seeded sampler, so a sequence's tokens do not depend on its batch.

use rill_backend::Backend;
use rill_engine::{Engine, Executor, ForwardBatch, SampledToken, SamplingParams, SchedulerConfig};

use crate::forward::Transformer;
use crate::sampler::Sampler;

pub struct ModelRunner<B: Backend> {
    transformer: Transformer<B>,
    eos_token_ids: Vec<u32>,
}

impl<B: Backend> ModelRunner<B> {
    pub fn new(transformer: Transformer<B>, eos_token_ids: Vec<u32>) -> Self {
        ModelRunner { transformer, eos_token_ids }
    }

    /// The scheduler limits that match this runner's KV cache and step buffers.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        let (kv, cap) = (self.transformer.kv_layout(), self.transformer.capacity());
        SchedulerConfig { max_num_batched_tokens: cap.max_tokens, max_num_seqs: cap.max_seqs, block_size: kv.block_size, num_blocks: kv.num_blocks }
    }

    /// Starts an engine thread that owns this runner; metrics are labelled `model`. Each engine
    /// owns its block manager, so prefix-cache hashes of different models never meet (salt 0).
    pub fn start(self, model: &str) -> Engine {
        let cfg = self.scheduler_config();
        Engine::start(self, cfg, 0, model)
    }
}

impl<B: Backend> Executor for ModelRunner<B> {
    type SeqState = Sampler;

    fn start_sequence(&mut self, params: &SamplingParams, seed: u64, prompt: &[u32]) -> Sampler {
        Sampler::new(params, seed, prompt, &self.eos_token_ids)
    }

    fn execute(&mut self, batch: &ForwardBatch, samplers: &mut [&mut Sampler]) -> Result<Vec<SampledToken>, String> {
        let vocab = self.transformer.config().vocab_size;
        let logits = self.transformer.forward(batch).map_err(|e| e.to_string())?;
        Ok(samplers
            .iter_mut()
            .zip(logits.chunks_exact(vocab))
            .map(|(sampler, row)| {
                let s = sampler.sample(row);
                SampledToken { token: s.token, logprob: s.logprob, top_logprobs: s.top }
            })
            .collect())
    }

    fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    fn max_model_len(&self) -> usize {
        self.transformer.config().context_length
    }
}

//! `ModelRunner`: the engine's `Executor` for a real model — a `Transformer` on some backend plus
//! a per-sequence `Sampler`. Only the rows that sample produce logits, and each row is sampled by
//! its own sequence's seeded sampler, so a sequence's tokens do not depend on its batch.
//!
//! On a backend that samples on the device (a GPU), every row whose logits processors are all
//! inactive and that wants no logprobs (`Sampler::device_eligible`) is sampled there: a step of
//! only such rows reads back just the token ids; a mixed step reads the logits back for the host
//! sampler's rows and samples the others on the device from the logits still there. Both paths
//! run the one rule of `rill_backend::draw` with the sequence's own uniforms, so a sequence's
//! tokens depend neither on its path nor on what shares its step.
//!
//! A step that verifies proposed tokens (`rill_engine::speculation`) samples on the host, row by
//! row, each sequence's rows in order while they confirm its proposals (`ForwardBatch::verify`).

use rill_backend::{Backend, DrawParams};
use rill_engine::{Engine, ExecuteError, Executor, ForwardBatch, SampledToken, SamplingParams, SchedulerConfig, SpeculationConfig};

use crate::forward::{ForwardError, Transformer};
use crate::sampler::Sampler;

pub struct ModelRunner<B: Backend> {
    transformer: Transformer<B>,
    eos_token_ids: Vec<u32>,
    /// Sample eligible steps with `Backend::sample` (default: `samples_on_device()`).
    device_sampling: bool,
    /// Per-row parameters of a device-sampled step (rows the host samples carry GREEDY, unused), reused.
    device_params: Vec<DrawParams>,
    /// Rows of the step sampled on the host, reused.
    host_rows: Vec<bool>,
    speculation: SpeculationConfig,
}

impl<B: Backend> ModelRunner<B> {
    pub fn new(transformer: Transformer<B>, eos_token_ids: Vec<u32>) -> Self {
        let device_sampling = transformer.backend().samples_on_device();
        ModelRunner { transformer, eos_token_ids, device_sampling, device_params: Vec::new(), host_rows: Vec::new(), speculation: SpeculationConfig::default() }
    }

    /// Sets how the engine this runner starts speculates.
    pub fn with_speculation(mut self, speculation: SpeculationConfig) -> Self {
        self.speculation = speculation;
        self
    }

    /// Whether eligible steps are sampled by the backend instead of on the host.
    pub fn device_sampling(&self) -> bool {
        self.device_sampling
    }

    /// Overrides [`ModelRunner::device_sampling`]: tests run the device path on the CPU, whose
    /// `sample` is the kernel's twin.
    pub fn set_device_sampling(&mut self, on: bool) {
        self.device_sampling = on;
    }

    /// The scheduler limits that match this runner's KV cache and step buffers.
    pub fn scheduler_config(&self) -> SchedulerConfig {
        let (kv, cap) = (self.transformer.kv_layout(), self.transformer.capacity());
        let cfg = self.transformer.config();
        // Blocks behind the window are handed back only when no layer reads past it.
        let kv_window = (cfg.sliding_window > 0 && cfg.layer_kinds.iter().all(|k| k.sliding)).then_some(cfg.sliding_window);
        SchedulerConfig { max_num_batched_tokens: cap.max_tokens, max_num_seqs: cap.max_seqs, block_size: kv.block_size, num_blocks: kv.num_blocks, kv_window, speculation: self.speculation }
    }

    /// Starts an engine thread that owns this runner; metrics are labelled `model`. Each engine
    /// owns its block manager, so prefix-cache hashes of different models never meet (salt 0).
    pub fn start(self, model: &str) -> Engine {
        let cfg = self.scheduler_config();
        Engine::start(self, cfg, 0, model)
    }
}

impl<B: Backend> ModelRunner<B> {
    /// A step with at least one row the device samples (see the module docs).
    fn execute_on_device(&mut self, batch: &ForwardBatch, samplers: &mut [&mut Sampler]) -> Result<Vec<SampledToken>, ForwardError> {
        let device_token = |token| SampledToken { token, logprob: None, top_logprobs: Vec::new() };
        self.device_params.clear();
        self.host_rows.clear();
        for s in samplers.iter_mut() {
            // Draws the uniform and counts the token for device rows; host rows get theirs below.
            let p = s.device_params();
            self.host_rows.push(p.is_none());
            self.device_params.push(p.unwrap_or(DrawParams::GREEDY));
        }
        if !self.host_rows.contains(&true) {
            let tokens = self.transformer.forward_sample(batch, &self.device_params)?;
            return Ok(tokens.iter().map(|&t| device_token(t)).collect());
        }
        let vocab = self.transformer.config().vocab_size;
        let logits = self.transformer.forward(batch)?;
        let mut out: Vec<SampledToken> = samplers
            .iter_mut()
            .zip(logits.chunks_exact(vocab))
            .zip(&self.host_rows)
            .map(|((sampler, row), &host)| {
                if host {
                    sampler.sample(row)
                } else {
                    device_token(0)
                }
            })
            .collect();
        let tokens = self.transformer.sample_logits(&self.device_params)?;
        for ((o, &t), &host) in out.iter_mut().zip(tokens).zip(&self.host_rows) {
            if !host {
                o.token = t;
            }
        }
        Ok(out)
    }
}

impl<B: Backend> Executor for ModelRunner<B> {
    type SeqState = Sampler;

    fn start_sequence(&mut self, params: &SamplingParams, seed: u64, prompt: &[u32]) -> Sampler {
        Sampler::new(params, seed, prompt, &self.eos_token_ids)
    }

    fn execute(&mut self, batch: &ForwardBatch, samplers: &mut [&mut Sampler]) -> Result<Vec<SampledToken>, ExecuteError> {
        let verifies = batch.drafts.iter().any(|&d| d > 0);
        if self.device_sampling && !verifies && samplers.iter().any(|s| s.device_eligible()) {
            return self.execute_on_device(batch, samplers).map_err(ExecuteError::new);
        }
        let vocab = self.transformer.config().vocab_size;
        let logits = self.transformer.forward(batch).map_err(ExecuteError::new)?;
        Ok(batch.verify(|seq, row| samplers[seq].sample(&logits[row * vocab..(row + 1) * vocab])))
    }

    fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    fn max_model_len(&self) -> usize {
        self.transformer.config().context_length
    }
}

#[cfg(test)]
mod tests {
    use rill_backend::{DType, KvDType, KvLayout};
    use rill_backend_cpu::CpuBackend;

    use super::*;
    use crate::dummy::DummyWeights;
    use crate::forward::StepCapacity;
    use crate::hf::HfConfig;
    use crate::weights::ModelWeights;

    const BLOCK: usize = 16;
    const TABLE: usize = 4;

    /// A two-layer model of random weights (the same for every call) on the CPU.
    fn tiny() -> Transformer<CpuBackend> {
        let text = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300}"#;
        let cfg = HfConfig::parse(text).unwrap().to_model_config("tiny").unwrap();
        let backend = CpuBackend::new(1).unwrap();
        let weights = ModelWeights::load_from(&DummyWeights::new(cfg.clone(), DType::F32, 3).unwrap(), &cfg, &backend, &mut |_, _| {}).unwrap();
        let kv = KvLayout { layers: cfg.layers, num_blocks: 4 * TABLE, block_size: BLOCK, kv_heads: cfg.kv_heads, head_dim: cfg.head_dim, dtype: KvDType::F32 };
        Transformer::new(backend, cfg, weights, kv, StepCapacity { max_tokens: 64, max_seqs: 4 }).unwrap()
    }

    const PROMPT: [u32; 5] = [1, 72, 101, 108, 108];

    /// Generates `steps` tokens of one sequence, choosing each with `choose(batch)`.
    fn generate(steps: usize, mut choose: impl FnMut(&ForwardBatch) -> u32) -> Vec<u32> {
        let table: Vec<u32> = (0..TABLE as u32).collect();
        let (mut tokens, mut start) = (PROMPT.to_vec(), 0);
        for _ in 0..steps {
            let mut batch = ForwardBatch::new(BLOCK, TABLE);
            batch.push_sequence(&tokens[start..], start, &table, true).unwrap();
            start = tokens.len();
            tokens.push(choose(&batch));
        }
        tokens.split_off(PROMPT.len())
    }

    fn runner_tokens(runner: &mut ModelRunner<CpuBackend>, params: &SamplingParams, steps: usize) -> Vec<u32> {
        let mut sampler = runner.start_sequence(params, 42, &PROMPT);
        generate(steps, |b| runner.execute(b, &mut [&mut sampler]).unwrap()[0].token)
    }

    fn truncated() -> SamplingParams {
        SamplingParams { temperature: 1.3, top_k: 40, top_p: 0.8, ..SamplingParams::default() }
    }

    #[test]
    fn the_cpu_backend_samples_on_the_host() {
        let mut runner = ModelRunner::new(tiny(), vec![]);
        assert!(!runner.transformer.backend().samples_on_device());
        assert!(!runner.device_sampling());
        let got = runner_tokens(&mut runner, &truncated(), 24);
        // The host sampler on the logits, step by step.
        let mut model = tiny();
        let mut sampler = Sampler::new(&truncated(), 42, &PROMPT, &[]);
        let want = generate(24, |b| sampler.sample(model.forward(b).unwrap()).token);
        assert_eq!(got, want);
        // Which is what the device path gives: one rule, the same uniforms.
        assert_eq!(got, device_twin_tokens(&truncated(), 24));
    }

    /// `forward` + the CPU twin of `Backend::sample`, with a sampler's own draws.
    fn device_twin_tokens(params: &SamplingParams, steps: usize) -> Vec<u32> {
        let mut model = tiny();
        let vocab = model.config().vocab_size;
        let mut sampler = Sampler::new(params, 42, &PROMPT, &[]);
        generate(steps, |b| {
            let p = sampler.device_params().expect("eligible");
            let logits = model.forward(b).unwrap().to_vec();
            let mut out = vec![0u32; 1];
            model.backend().sample(&logits, 1, vocab, &[p], &mut out).unwrap();
            out[0]
        })
    }

    #[test]
    fn the_device_path_runs_the_backend_sampler() {
        let mut runner = ModelRunner::new(tiny(), vec![]);
        runner.set_device_sampling(true);
        let got = runner_tokens(&mut runner, &truncated(), 24);
        assert_eq!(got, device_twin_tokens(&truncated(), 24));
        // Seeded: the same again.
        assert_eq!(runner_tokens(&mut runner, &truncated(), 24), got);

        // Greedy: the device path and the host path agree exactly.
        let greedy = SamplingParams { temperature: 0.0, ..SamplingParams::default() };
        let device = runner_tokens(&mut runner, &greedy, 16);
        let mut host = ModelRunner::new(tiny(), vec![]);
        assert_eq!(device, runner_tokens(&mut host, &greedy, 16));

        // A request the device cannot serve exactly still goes through the host sampler.
        let with_logprobs = SamplingParams { logprobs: Some(2), ..truncated() };
        let mut sampler = runner.start_sequence(&with_logprobs, 42, &PROMPT);
        let mut batch = ForwardBatch::new(BLOCK, TABLE);
        batch.push_sequence(&PROMPT, 0, &(0..TABLE as u32).collect::<Vec<_>>(), true).unwrap();
        let out = runner.execute(&batch, &mut [&mut sampler]).unwrap();
        assert!(out[0].logprob.is_some() && out[0].top_logprobs.len() == 2);
    }

    /// Two sequences stepped together, each with its own blocks.
    fn generate_pair(runner: &mut ModelRunner<CpuBackend>, a: &SamplingParams, b: &SamplingParams, steps: usize) -> (Vec<u32>, Vec<SampledToken>) {
        let mut samplers = [runner.start_sequence(a, 42, &PROMPT), runner.start_sequence(b, 7, &PROMPT)];
        let tables: [Vec<u32>; 2] = [(0..TABLE as u32).collect(), (TABLE as u32..2 * TABLE as u32).collect()];
        let (mut seqs, mut start) = ([PROMPT.to_vec(), PROMPT.to_vec()], 0);
        let (mut a_tokens, mut b_out) = (Vec::new(), Vec::new());
        for _ in 0..steps {
            let mut batch = ForwardBatch::new(BLOCK, TABLE);
            for (seq, table) in seqs.iter().zip(&tables) {
                batch.push_sequence(&seq[start..], start, table, true).unwrap();
            }
            start = seqs[0].len();
            let [sa, sb] = &mut samplers;
            let out = runner.execute(&batch, &mut [sa, sb]).unwrap();
            seqs[0].push(out[0].token);
            seqs[1].push(out[1].token);
            a_tokens.push(out[0].token);
            b_out.push(out[1].clone());
        }
        (a_tokens, b_out)
    }

    #[test]
    fn a_mixed_step_samples_device_rows_on_the_device() {
        // A sequence's tokens do not depend on whether a host-only request shares its steps.
        let mut runner = ModelRunner::new(tiny(), vec![]);
        runner.set_device_sampling(true);
        let with_logprobs = SamplingParams { logprobs: Some(1), ..truncated() };
        let (a_mixed, b_mixed) = generate_pair(&mut runner, &truncated(), &with_logprobs, 16);
        assert_eq!(a_mixed, device_twin_tokens(&truncated(), 16));
        assert!(b_mixed.iter().all(|t| t.logprob.is_some() && t.top_logprobs.len() == 1));
        // And the host-only request gets what the host path gives it.
        let mut host = ModelRunner::new(tiny(), vec![]);
        let (_, b_host) = generate_pair(&mut host, &truncated(), &with_logprobs, 16);
        assert_eq!(b_mixed, b_host);
    }

    #[test]
    fn forward_sample_on_a_padded_decode_step() {
        let mut model = tiny();
        model.set_padded_decode(true);
        let vocab = model.config().vocab_size;
        let tables: Vec<Vec<u32>> = (0..3).map(|s| vec![4 * s, 4 * s + 1]).collect();
        let mut prefill = ForwardBatch::new(BLOCK, TABLE);
        for (s, t) in tables.iter().enumerate() {
            prefill.push_sequence(&PROMPT[..2 + s], 0, t, true).unwrap();
        }
        let params = [DrawParams::GREEDY, DrawParams { temperature: 0.9, top_k: 20, top_p: 0.9, min_p: 0.0, uniform: 0.37 }, DrawParams { temperature: 2.0, top_k: 0, top_p: 1.0, min_p: 0.05, uniform: 0.81 }];
        let first = model.forward_sample(&prefill, &params).unwrap().to_vec();
        // Three decode tokens pad to a bucket of 4; only the three real rows are sampled.
        let mut decode = ForwardBatch::new(BLOCK, TABLE);
        for (s, (t, &tok)) in tables.iter().zip(&first).enumerate() {
            decode.push_sequence(&[tok], 2 + s, t, true).unwrap();
        }
        let mut again = tiny();
        again.forward(&prefill).unwrap();
        let logits = again.forward(&decode).unwrap().to_vec();
        let mut want = vec![0u32; 3];
        again.backend().sample(&logits, 3, vocab, &params, &mut want).unwrap();
        assert_eq!(model.forward_sample(&decode, &params).unwrap(), want);
        assert!(matches!(model.forward_sample(&decode, &params[..2]), Err(crate::forward::ForwardError::SamplingParams { params: 2, rows: 3 })));
    }
}

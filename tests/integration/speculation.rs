//! N-gram speculation on the default model: the same tokens (greedy and seeded sampling, with
//! logprobs) with speculation on and off, in fewer engine steps on text that repeats its prompt.
//! Equality holds because verification samples each row as a decode step would, and the forward
//! pass is batch-invariant: a row's logits do not depend on the rows computed beside it.

use rill_engine::{GenerateRequest, SampledToken, SamplingParams, SpeculationConfig};
use rill_model::loader::{load, KvBudget, LoadOptions};
use rill_model::runner::ModelRunner;

use crate::common::default_model;

const TEXT: &str = "The committee met on Tuesday to review the budget. The committee agreed that the budget \
    for the library would stay the same, and that the budget for the park would grow by ten percent.";

/// Generates from `prompt` with `params` on an engine that speculates (or not) by default;
/// returns the tokens and the engine's step count.
fn run(speculate: bool, prompt: &[u32], params: &SamplingParams) -> (Vec<SampledToken>, u64) {
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(4096), ..LoadOptions::default() };
    let model = load(&rill::testing::default_model_path(), rill_backend_cpu::CpuBackend::new(0).expect("thread pool"), &opts, &mut |_, _| {}).expect("default model loads");
    let speculation = SpeculationConfig { default_on: speculate, ..SpeculationConfig::default() };
    let engine = ModelRunner::new(model.transformer, model.tokenizer.eos_token_ids().to_vec()).with_speculation(speculation).start("speculation");
    let request = GenerateRequest { prompt: prompt.to_vec(), params: params.clone(), priority: 0, tenant: None };
    let handle = engine.handle();
    let tokens = handle.submit(request).expect("the engine runs").collect(|_, _| {}).expect("generation succeeds").remove(0).tokens;
    // The step that ended the request is counted once the thread is joined.
    engine.shutdown();
    (tokens, handle.stats().steps.load(std::sync::atomic::Ordering::Relaxed))
}

fn prompt() -> Vec<u32> {
    let model = default_model();
    let text = format!("{TEXT}\n\nThe same text again, word for word:\n\n{TEXT}");
    // Ends inside the repeated text, so its continuation is in the prompt.
    let cut = text.len() - 60;
    model.tokenizer.encode(&text[..cut], true).expect("tokenizes")
}

#[test]
fn greedy_tokens_and_logprobs_are_the_same_with_speculation_in_fewer_steps() {
    let prompt = prompt();
    let params = SamplingParams { temperature: 0.0, max_tokens: Some(40), ignore_eos: true, logprobs: Some(2), ..SamplingParams::default() };
    let (plain, plain_steps) = run(false, &prompt, &params);
    let (spec, spec_steps) = run(true, &prompt, &params);
    assert_eq!(spec, plain, "tokens, logprobs and alternatives");
    assert!(spec_steps * 3 < plain_steps * 2, "{spec_steps} steps with speculation, {plain_steps} without");
}

#[test]
fn seeded_sampling_is_the_same_with_speculation() {
    let prompt = prompt();
    for seed in [1, 2, 3] {
        let params = SamplingParams { temperature: 0.8, top_p: 0.95, seed: Some(seed), max_tokens: Some(32), ignore_eos: true, presence_penalty: 0.3, ..SamplingParams::default() };
        let (plain, _) = run(false, &prompt, &params);
        let (spec, _) = run(true, &prompt, &params);
        assert_eq!(spec, plain, "seed {seed}");
    }
}

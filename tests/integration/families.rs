//! Every model family on a tiny model of its own (`tests/fixtures/models/`: random weights from a
//! `transformers` config, converted by llama.cpp's `convert_hf_to_gguf.py`, quantized by its
//! `llama-quantize`; `scripts/make-tiny-models.sh`) against llama.cpp's greedy output on the same
//! file (`tests/golden/families/`, `scripts/gen-family-golden.sh`). The Hugging Face directories
//! (`tests/fixtures/hf/`, as `transformers` saved them, in bf16; `scripts/make-hf-fixture.sh`) go
//! through rill's own loader and are held to llama.cpp's output on the f16 GGUF its converter made
//! of them: one per family (Llama 3's q/k permutation and rope scaling, Qwen3's q/k norms, SmolLM3's
//! rope-less layers and tied embeddings, Gemma's norm offset and layer pattern, Phi-3's fused
//! matrices and LongRoPE factors, all read from `config.json`). Not Mistral's: llama.cpp's
//! converter drops its `sliding_window`, so llama.cpp is no reference for the directory rill (and
//! `transformers`) run with the window.
//!
//! The rule is the default model's golden rule: token ids equal for the recorded prompts, or
//! parting only at a near-tie (each side's token in the other's top 5), and logprobs within a
//! tolerance taken from llama.cpp's own noise: the recording keeps only prompts whose greedy path
//! llama.cpp's flash attention on and off agree on, and notes how far the two moved the logprobs
//! (`reference_self_noise_nats`). rill follows llama.cpp's flash-attention path op by op, so it
//! must be no further from the reference than llama.cpp is from itself, plus `FLOOR_NATS` for
//! the rounding both sides leave (sums in another order, `tanhf` vs a vector `tanh`).

use rill_backend::AttentionArithmetic;
use rill_model::loader::{load, KvBudget, LoadOptions};
use rill_model::Architecture;

use crate::common;
use crate::golden::{compare, Fixture};

const COMPARED_TOKENS: usize = 16;
pub const FLOOR_NATS: f32 = 0.01;

fn fixtures() -> Vec<(String, Fixture)> {
    let dir = rill::testing::repo_root().join("tests/golden/families");
    let mut names: Vec<String> = std::fs::read_dir(&dir).expect("tests/golden/families").map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), crate::golden::load_json(&format!("families/{n}")))).collect()
}

#[test]
fn every_family_matches_llama_cpp_on_its_tiny_model() {
    let mut covered = Vec::new();
    let (mut report, mut failures) = (Vec::new(), Vec::new());
    for (name, fixture) in fixtures() {
        let path = rill::testing::repo_root().join("tests/fixtures").join(&fixture.model);
        // llama.cpp's arithmetic: the rule below is that of a twin, not of an approximation.
        let opts = LoadOptions { kv_budget: KvBudget::Tokens(4096), attention: AttentionArithmetic::Ggml, ..LoadOptions::default() };
        let model = load(&path, rill_backend_cpu::CpuBackend::new(2).unwrap(), &opts, &mut |_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        covered.push(model.transformer.config().arch);
        let engine = common::engine_of(model.transformer, model.tokenizer.eos_token_ids(), &name);
        for case in &fixture.cases {
            let c = compare(&engine, case, COMPARED_TOKENS);
            let tolerance = case.reference_self_noise_nats + FLOOR_NATS;
            report.push(format!("{name} {}: {}/{} tokens, max |Δlogprob| {:.4} (llama.cpp's own noise {:.4})", case.name, c.matched, c.compared, c.max_logprob_diff, case.reference_self_noise_nats));
            failures.extend((!c.near_tie).then(|| format!("{name} {}: diverged at token {} outside each other's top 5", case.name, c.matched)));
            failures.extend((c.max_logprob_diff > tolerance).then(|| format!("{name} {}: logprob differs by {} nats (tolerance {tolerance})", case.name, c.max_logprob_diff)));
        }
    }
    eprintln!("family results:\n  {}", report.join("\n  "));
    assert!(failures.is_empty(), "{failures:#?}");
    let missing: Vec<&str> = Architecture::ALL.iter().filter(|a| !covered.contains(a) && **a != Architecture::Qwen2).map(|a| a.name()).collect();
    assert!(missing.is_empty(), "no tiny model for {missing:?}");
}

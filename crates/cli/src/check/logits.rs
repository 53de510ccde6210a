//! Logits of every prompt position against a file written by another implementation (HF
//! `transformers` in `scripts/gpu-check.sh`), as relative L2 error and argmax agreement.

use std::path::Path;

use rill_backend::conformance::rel_err;
use rill_backend::Backend;
use rill_engine::ForwardBatch;
use rill_model::Transformer;
use serde::Deserialize;

/// ‖rill − reference‖ / ‖reference‖ over all logits of a prompt. The reference runs in f32;
/// rill's GPU path rounds activations to bf16 in prompt-sized matmuls and keeps K/V in f16.
pub const LOGITS_REL_TOLERANCE: f64 = 2e-2;
/// Share of positions whose argmax must agree (near-ties may flip).
pub const ARGMAX_AGREEMENT: f64 = 0.9;

#[derive(Deserialize)]
struct ReferenceLogits {
    prompts: Vec<Vec<u32>>,
    /// `[prompt][position][vocab]`
    logits: Vec<Vec<Vec<f32>>>,
}

/// Number of prompts that failed.
pub fn check_file<B: Backend>(model: &mut Transformer<B>, path: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let reference: ReferenceLogits = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if reference.prompts.len() != reference.logits.len() {
        return Err(format!("{}: {} prompts but {} logit sets", path.display(), reference.prompts.len(), reference.logits.len()).into());
    }
    let mut failures = 0;
    for (i, (prompt, want)) in reference.prompts.iter().zip(&reference.logits).enumerate() {
        let got = all_position_logits(model, prompt)?;
        let vocab = model.config().vocab_size;
        let want: Vec<f32> = want.iter().flat_map(|row| row.iter().copied()).collect();
        if want.len() != got.len() {
            return Err(format!("prompt {i}: reference has {} logits, rill {} ({} positions x vocab {vocab})", want.len(), got.len(), prompt.len()).into());
        }
        let err = rel_err(&want, &got);
        let agree = want.chunks_exact(vocab).zip(got.chunks_exact(vocab)).filter(|(w, g)| argmax(w) == argmax(g)).count();
        let share = agree as f64 / prompt.len() as f64;
        let passed = err <= LOGITS_REL_TOLERANCE && share >= ARGMAX_AGREEMENT;
        println!(
            "{} logits prompt {i} ({} tokens): rel err {err:.2e} (tolerance {LOGITS_REL_TOLERANCE:.0e}), argmax agrees at {agree}/{}",
            if passed { "ok  " } else { "FAIL" },
            prompt.len(),
            prompt.len()
        );
        failures += !passed as usize;
    }
    Ok(failures)
}

/// One forward pass of `prompt` from position 0 with logits for every position.
fn all_position_logits<B: Backend>(model: &mut Transformer<B>, prompt: &[u32]) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let (layout, cap) = (model.kv_layout(), model.capacity());
    if prompt.is_empty() || prompt.len() > cap.max_seqs.min(cap.max_tokens) {
        return Err(format!("reference prompts must have 1..={} tokens (logit rows per step)", cap.max_seqs.min(cap.max_tokens)).into());
    }
    let blocks: Vec<u32> = (0..prompt.len().div_ceil(layout.block_size) as u32).collect();
    let mut batch = ForwardBatch::new(layout.block_size, blocks.len());
    batch.push_sequence(prompt, 0, &blocks, false)?;
    batch.logits_rows = (0..prompt.len() as u32).collect();
    Ok(model.forward(&batch)?.to_vec())
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

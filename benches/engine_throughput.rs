//! Aggregate generation throughput of the engine on the default model at 1, 4, 16 and 64
//! concurrent sequences (128-token prompts, 128 new tokens each), printed as a table.
//!
//! `cargo bench --bench engine_throughput` (the real model is fetched by
//! `scripts/fetch-model.sh`). Under `cargo test` it only checks that it starts.

use std::time::Instant;

use rill_backend_cpu::CpuBackend;
use rill_engine::{GenerateRequest, SamplingParams, StreamEvent};
use rill_model::forward::StepCapacity;
use rill_model::loader::{load, KvBudget, LoadOptions};
use rill_model::runner::ModelRunner;

const PROMPT_TOKENS: usize = 128;
const NEW_TOKENS: usize = 128;
const LEVELS: [usize; 4] = [1, 4, 16, 64];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine_throughput: run with `cargo bench --bench engine_throughput`");
        return;
    }
    println!("| concurrent | generated tokens | seconds | aggregate tok/s | per-stream tok/s |");
    println!("|---:|---:|---:|---:|---:|");
    for level in LEVELS {
        let opts = LoadOptions {
            kv_budget: KvBudget::Tokens(level * (PROMPT_TOKENS + NEW_TOKENS) + 64),
            capacity: StepCapacity { max_tokens: 512, max_seqs: level.max(1) },
            ..LoadOptions::default()
        };
        let model = load(&rill::testing::default_model_path(), CpuBackend::new(0).unwrap(), &opts, &mut |_, _| {}).unwrap();
        let vocab = model.tokenizer.vocab_size() as u32;
        let engine = ModelRunner::new(model.transformer, vec![]).start("default");
        let h = engine.handle();
        let params = SamplingParams { temperature: 0.0, max_tokens: Some(NEW_TOKENS), ignore_eos: true, ..SamplingParams::default() };
        let started = Instant::now();
        let mut streams: Vec<_> = (0..level)
            .map(|i| {
                // Distinct prompts, so the prefix cache does not shortcut the prefill.
                let prompt = (0..PROMPT_TOKENS).map(|t| ((t * 7919 + i * 104_729) as u32 % (vocab - 300)) + 200).collect();
                h.submit(GenerateRequest { prompt, params: params.clone(), priority: 0, tenant: None }).unwrap()
            })
            .collect();
        let mut generated = 0;
        for s in &mut streams {
            while let Some(ev) = s.blocking_recv() {
                match ev {
                    StreamEvent::Token { .. } => generated += 1,
                    StreamEvent::Failed(e) => panic!("{e}"),
                    StreamEvent::Finished { .. } => break,
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!("| {level} | {generated} | {secs:.2} | {:.1} | {:.1} |", generated as f64 / secs, generated as f64 / secs / level as f64);
        engine.shutdown();
    }
}

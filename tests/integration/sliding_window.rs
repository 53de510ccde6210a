//! A model whose every layer slides (Mistral's `sliding_window`): the engine hands back the KV
//! blocks behind each sequence's window as it grows, and that changes no token against the same
//! model keeping every block.

use rill_backend::DType;
use rill_backend_cpu::CpuBackend;
use rill_engine::{Engine, GenerateRequest, SamplingParams, SchedulerConfig};
use rill_model::loader::{load_source, KvBudget, LoadOptions};
use rill_model::runner::ModelRunner;
use rill_model::ModelSource;

const WINDOW: usize = 32;

fn runner() -> ModelRunner<CpuBackend> {
    let config = rill::testing::repo_root().join("tests/fixtures/configs/tiny-mistral-sliding.json");
    let source = ModelSource::Dummy { config, dtype: DType::Q8_0, seed: 7 };
    let opts = LoadOptions { kv_budget: KvBudget::Tokens(2048), ..LoadOptions::default() };
    let model = load_source(&source, CpuBackend::new(2).unwrap(), &opts, &mut |_, _| {}).expect("dummy model loads");
    assert_eq!(model.transformer.config().sliding_window, WINDOW);
    ModelRunner::new(model.transformer, model.tokenizer.eos_token_ids().to_vec())
}

fn generate(engine: &Engine, prompts: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    let params = SamplingParams { temperature: 0.0, max_tokens: Some(n), ignore_eos: true, ..SamplingParams::default() };
    let streams: Vec<_> = prompts.iter().map(|p| engine.handle().submit(GenerateRequest { prompt: p.clone(), params: params.clone(), priority: 0, tenant: None }).unwrap()).collect();
    streams.into_iter().map(|s| s.collect(|_, _| {}).unwrap().remove(0).tokens.iter().map(|t| t.token).collect()).collect()
}

#[test]
fn handing_back_blocks_behind_the_window_changes_no_token() {
    let releasing = runner();
    assert_eq!(releasing.scheduler_config().kv_window, Some(WINDOW));
    let releasing = releasing.start("window");
    let keeping = runner();
    let cfg = SchedulerConfig { kv_window: None, ..keeping.scheduler_config() };
    let keeping = Engine::start(keeping, cfg, 0, "no-release");
    // Two sequences sharing a prompt prefix (a prefix-cache hit on blocks one of them hands back)
    // and one of its own, each far past the window.
    let shared: Vec<u32> = (0..40).map(|i| 3 + i * 5 % 250).collect();
    let mut other = shared.clone();
    other.extend([9, 8, 7]);
    let prompts = vec![shared, other, (0..20).map(|i| 100 + i).collect()];
    let (a, b) = (generate(&releasing, &prompts, 200), generate(&keeping, &prompts, 200));
    assert_eq!(a, b);
    assert!(a.iter().all(|t| t.len() == 200));
    let distinct: std::collections::BTreeSet<u32> = a[0].iter().copied().collect();
    assert!(distinct.len() > 3, "degenerate output: {:?}", a[0]);
}

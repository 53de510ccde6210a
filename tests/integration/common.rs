//! Loading the default model once per test, and the shared fixtures.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use rill_backend_cpu::CpuBackend;
use rill_model::loader::{load, KvBudget, LoadOptions, LoadedModel};

/// Default options with room for one full context.
pub fn default_options() -> LoadOptions {
    LoadOptions { kv_budget: KvBudget::Tokens(8192), ..LoadOptions::default() }
}

/// The default model on the CPU backend with default options and room for one full context.
pub fn default_model() -> LoadedModel<CpuBackend> {
    default_model_with(&default_options())
}

/// The default model on the reference (float matmul) CPU backend: the one exact math checks.
pub fn default_model_reference() -> LoadedModel<CpuBackend> {
    load(&rill::testing::default_model_path(), CpuBackend::reference(0).expect("thread pool"), &default_options(), &mut |_, _| {}).expect("default model loads")
}

pub fn default_model_with(opts: &LoadOptions) -> LoadedModel<CpuBackend> {
    let backend = CpuBackend::new(0).expect("thread pool");
    load(&rill::testing::default_model_path(), backend, opts, &mut |_, _| {}).expect("default model loads")
}

/// The default model behind an engine thread; also returns the tokenizer.
pub fn default_engine(opts: &LoadOptions) -> (rill_engine::Engine, rill_model::tokenizer::Tokenizer) {
    let model = default_model_with(opts);
    (engine_of(model.transformer, model.tokenizer.eos_token_ids(), "default"), model.tokenizer)
}

/// A transformer behind an engine thread: tests generate through the path users get.
pub fn engine_of<B: rill_backend::Backend>(transformer: rill_model::Transformer<B>, eos_token_ids: &[u32], name: &str) -> rill_engine::Engine {
    rill_model::runner::ModelRunner::new(transformer, eos_token_ids.to_vec()).start(name)
}

/// `n` greedy tokens of `prompt` through `engine` (end-of-sequence does not stop them), each
/// with its logprob and `top` alternatives.
pub fn greedy_tokens(engine: &rill_engine::Engine, prompt: &[u32], n: usize, top: usize) -> Vec<rill_engine::SampledToken> {
    let params = rill_engine::SamplingParams { temperature: 0.0, max_tokens: Some(n), ignore_eos: true, logprobs: Some(top), ..Default::default() };
    let stream = engine.handle().submit(rill_engine::GenerateRequest { prompt: prompt.to_vec(), params, priority: 0, tenant: None }).expect("the engine runs");
    stream.collect(|_, _| {}).expect("generation succeeds").remove(0).tokens
}

/// A JSON file under `tests/fixtures`, parsed.
pub fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = rill::testing::repo_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixtures recorded from llama.cpp: `{"cases": [...]}`.
#[derive(Deserialize)]
pub struct Cases<T> {
    pub cases: Vec<T>,
}

/// The raw prompts of `prompts.json` (the golden recording takes its prompts from there too).
pub fn prompts() -> Vec<String> {
    #[derive(Deserialize)]
    struct Prompts {
        raw: Vec<String>,
    }
    fixture::<Prompts>("prompts.json").raw
}

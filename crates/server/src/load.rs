//! From a model path and plain settings to a running model: the source read as `load_format`
//! says, the backend `device` names, KV pool sizing, a progress bar for slow loads, and the
//! engine thread. The command line (`rill serve`, `rill generate`, ...) and the admin API both
//! load through here.

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rill_backend::{Backend, DType};
use rill_engine::Engine;
use rill_model::chat_template::ChatTemplate;
use rill_model::runner::ModelRunner;
use rill_model::tokenizer::Tokenizer;

use crate::device::{with_backend, BackendJob, Device};
use rill_model::loader::{load_source, LoadOptions, LoadedModel};
use rill_model::source::{LoadFormat, ModelSource};

/// Everything that decides how a model is loaded and run, besides its path.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Where the model runs.
    pub device: Device,
    /// CPU worker threads, the calling thread included (0: one per physical core).
    pub threads: usize,
    /// KV cache size and element type, step capacity.
    pub options: LoadOptions,
    /// How to read the path (a dummy model's path is its config).
    pub load_format: LoadFormat,
    /// Element type of a dummy model's matrices.
    pub dummy_dtype: DType,
    /// Seed of a dummy model's weights.
    pub dummy_seed: u64,
}

impl Default for LoadSettings {
    /// The command line's defaults.
    fn default() -> LoadSettings {
        LoadSettings {
            device: Device::Cpu,
            threads: 0,
            options: LoadOptions::default(),
            load_format: LoadFormat::Auto,
            dummy_dtype: DType::BF16,
            dummy_seed: 0,
        }
    }
}

impl LoadSettings {
    /// What `path` names under `load_format` (with `dummy`, the path is the config).
    pub fn model_source(&self, path: &Path) -> ModelSource {
        ModelSource::from_format(self.load_format, path, self.dummy_dtype, self.dummy_seed)
    }

    /// Loads `path` on `backend`, with a progress bar when loading takes over a second.
    pub fn load_on<B: Backend>(&self, path: &Path, backend: B) -> Result<LoadedModel<B>, Box<dyn std::error::Error>> {
        let source = self.model_source(path);
        let started = Instant::now();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} tensors").expect("static template").progress_chars("=> "));
        bar.set_message(source.describe());
        let mut progress = |done: usize, total: usize| {
            if bar.is_hidden() && started.elapsed() > PROGRESS_DELAY {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        };
        let model = load_source(&source, backend, &self.options, &mut progress);
        bar.finish_and_clear();
        Ok(model?)
    }
}

/// Work on a model loaded on whichever backend `device` selects.
pub trait LoadedJob {
    type Output;
    fn run<B: Backend>(self, model: LoadedModel<B>) -> Self::Output;
}

impl LoadSettings {
    /// Loads `path` on `device` and runs `job` on it.
    pub fn with_loaded<J: LoadedJob>(&self, path: &Path, job: J) -> Result<J::Output, Box<dyn std::error::Error>> {
        struct Load<'a, J> {
            settings: &'a LoadSettings,
            path: &'a Path,
            job: J,
        }
        impl<J: LoadedJob> BackendJob for Load<'_, J> {
            type Output = Result<J::Output, Box<dyn std::error::Error>>;
            fn run<B: Backend>(self, backend: B) -> Self::Output {
                Ok(self.job.run(self.settings.load_on(self.path, backend)?))
            }
        }
        with_backend(&self.device, self.threads, Load { settings: self, path, job })?
    }

    /// Loads `path` on `device` and starts its engine thread (metrics labelled `name`).
    pub fn start_engine(&self, path: &Path, name: &str) -> Result<StartedModel, Box<dyn std::error::Error>> {
        struct Start<'a>(&'a str, rill_engine::SpeculationConfig);
        impl LoadedJob for Start<'_> {
            type Output = StartedModel;
            fn run<B: Backend>(self, model: LoadedModel<B>) -> StartedModel {
                let LoadedModel { transformer, tokenizer, chat_template } = model;
                let (max_model_len, kv) = (transformer.config().context_length, transformer.kv_layout());
                let engine = ModelRunner::new(transformer, tokenizer.eos_token_ids().to_vec()).with_speculation(self.1).start(self.0);
                StartedModel { engine, tokenizer, chat_template, max_model_len, kv_cache_tokens: kv.num_blocks * kv.block_size, kv_cache_bytes: kv.total_bytes() }
            }
        }
        self.with_loaded(path, Start(name, self.options.speculation))
    }
}

/// A model behind its engine thread, whatever backend it runs on.
pub struct StartedModel {
    pub engine: Engine,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub max_model_len: usize,
    pub kv_cache_tokens: usize,
    pub kv_cache_bytes: usize,
}

/// Loading faster than this shows no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);

/// The cheap part of loading `source`, done before answering a load request: a GGUF header
/// parsed, a config read. What it finds wrong is the caller's error, not the server's.
pub fn check_source(source: &ModelSource) -> Result<(), String> {
    let config = |path: &Path| rill_model::hf::read_config(path, "").map(drop).map_err(|e| e.to_string());
    match source {
        ModelSource::Gguf(path) => rill_model::gguf::GgufFile::open(path).map(drop).map_err(|e| e.to_string()),
        ModelSource::HfDir(dir) => config(&dir.join(rill_model::hf::CONFIG_FILE)),
        ModelSource::Dummy { config: path, .. } => config(path),
    }
}

/// Bytes of the files `source` reads its weights from (a dummy model has none).
pub fn source_bytes(source: &ModelSource) -> u64 {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    match source {
        ModelSource::Gguf(path) => len(path),
        ModelSource::HfDir(dir) => std::fs::read_dir(dir).map_or(0, |entries| entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "safetensors")).map(|p| len(&p)).sum()),
        ModelSource::Dummy { .. } => 0,
    }
}

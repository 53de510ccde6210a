//! Command-line options shared by the commands that load a model, and how they become
//! `LoadOptions` (KV pool sizing included).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rill_backend::{Backend, DType, KvDType};
use rill_backend_cpu::CpuBackend;
use rill_engine::Engine;
use rill_model::chat_template::ChatTemplate;
use rill_model::runner::ModelRunner;
use rill_model::tokenizer::Tokenizer;

use crate::device::{with_backend, BackendJob, Device};
use rill_model::forward::StepCapacity;
use rill_model::loader::{load_source, KvBudget, LoadOptions, LoadedModel};
use rill_model::source::{LoadFormat, ModelSource};

/// Engine and loading options shared by every command that runs a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Where the model runs: cpu, cuda (GPU 0) or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// CPU worker threads, the calling thread included (0: one per physical core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// KV cache size in tokens (default: sized from available memory).
    #[arg(long, conflicts_with = "kv_cache_bytes")]
    pub kv_cache_tokens: Option<usize>,
    /// KV cache size in bytes (default: sized from available memory).
    #[arg(long)]
    pub kv_cache_bytes: Option<usize>,
    /// KV cache element type.
    #[arg(long, value_enum, default_value_t = KvDTypeArg::F16)]
    pub kv_dtype: KvDTypeArg,
    /// Most tokens computed in one engine step.
    #[arg(long, default_value_t = 512)]
    pub max_num_batched_tokens: usize,
    /// Most sequences in one engine step.
    #[arg(long, default_value_t = 64)]
    pub max_num_seqs: usize,
    /// How to read the model path: auto (a directory with config.json is a Hugging Face
    /// model, anything else GGUF), gguf, hf, or dummy (the path is a config.json-style file;
    /// weights are seeded random, the tokenizer byte-level).
    #[arg(long, value_parser = <LoadFormat as std::str::FromStr>::from_str, default_value = "auto")]
    pub load_format: LoadFormat,
    /// Element type of a dummy model's matrices: f32, f16, bf16, q4_0, q4_1, q8_0, q4_k or q6_k.
    #[arg(long, value_parser = rill_model::dummy::parse_dtype, default_value = "bf16")]
    pub dummy_dtype: DType,
    /// Seed of a dummy model's weights.
    #[arg(long, default_value_t = 0)]
    pub dummy_seed: u64,
}

impl Default for ModelArgs {
    /// The command-line defaults.
    fn default() -> ModelArgs {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: ModelArgs,
        }
        <Defaults as clap::Parser>::parse_from(["rill"]).args
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDTypeArg {
    F16,
    F32,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        let kv_budget = match (self.kv_cache_tokens, self.kv_cache_bytes) {
            (Some(t), _) => KvBudget::Tokens(t),
            (None, Some(b)) => KvBudget::Bytes(b),
            (None, None) => KvBudget::Auto,
        };
        LoadOptions {
            kv_budget,
            kv_dtype: match self.kv_dtype {
                KvDTypeArg::F16 => KvDType::F16,
                KvDTypeArg::F32 => KvDType::F32,
            },
            capacity: StepCapacity { max_tokens: self.max_num_batched_tokens, max_seqs: self.max_num_seqs },
            ..LoadOptions::default()
        }
    }

    /// What `--model PATH` names under `--load-format` (with `dummy`, PATH is the config).
    pub fn model_source(&self, path: &Path) -> ModelSource {
        ModelSource::from_format(self.load_format, path, self.dummy_dtype, self.dummy_seed)
    }

    /// Loads `path` on the CPU, with a progress bar when loading takes over a second.
    pub fn load(&self, path: &Path) -> Result<LoadedModel<CpuBackend>, Box<dyn std::error::Error>> {
        self.load_on(path, CpuBackend::new(self.threads)?)
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
        let model = load_source(&source, backend, &self.load_options(), &mut progress);
        bar.finish_and_clear();
        Ok(model?)
    }
}

/// Work on a model loaded on whichever backend `--device` selects.
pub trait LoadedJob {
    type Output;
    fn run<B: Backend>(self, model: LoadedModel<B>) -> Self::Output;
}

impl ModelArgs {
    /// Loads `path` on `--device` and runs `job` on it.
    pub fn with_loaded<J: LoadedJob>(&self, path: &Path, job: J) -> Result<J::Output, Box<dyn std::error::Error>> {
        struct Load<'a, J> {
            args: &'a ModelArgs,
            path: &'a Path,
            job: J,
        }
        impl<J: LoadedJob> BackendJob for Load<'_, J> {
            type Output = Result<J::Output, Box<dyn std::error::Error>>;
            fn run<B: Backend>(self, backend: B) -> Self::Output {
                Ok(self.job.run(self.args.load_on(self.path, backend)?))
            }
        }
        with_backend(&self.device, self.threads, Load { args: self, path, job })?
    }

    /// Loads `path` on `--device` and starts its engine thread (metrics labelled `name`).
    pub fn start_engine(&self, path: &Path, name: &str) -> Result<StartedModel, Box<dyn std::error::Error>> {
        struct Start<'a>(&'a str);
        impl LoadedJob for Start<'_> {
            type Output = StartedModel;
            fn run<B: Backend>(self, model: LoadedModel<B>) -> StartedModel {
                let LoadedModel { transformer, tokenizer, chat_template } = model;
                let (max_model_len, kv) = (transformer.config().context_length, transformer.kv_layout());
                let engine = ModelRunner::new(transformer, tokenizer.eos_token_ids().to_vec()).start(self.0);
                StartedModel { engine, tokenizer, chat_template, max_model_len, kv_cache_tokens: kv.num_blocks * kv.block_size, kv_cache_bytes: kv.total_bytes() }
            }
        }
        self.with_loaded(path, Start(name))
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

//! Command-line options shared by the commands that load a model, and how they become
//! `LoadOptions` (KV pool sizing included).

use std::path::Path;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rill_backend::KvDType;
use rill_backend_cpu::CpuBackend;
use rill_model::forward::StepCapacity;
use rill_model::loader::{load, KvBudget, LoadOptions, LoadedModel};

/// Engine and loading options shared by every command that runs a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Worker threads, the calling thread included (0: one per physical core).
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

    /// Loads `path` on the CPU, with a progress bar when loading takes over a second.
    pub fn load(&self, path: &Path) -> Result<LoadedModel<CpuBackend>, Box<dyn std::error::Error>> {
        let backend = CpuBackend::new(self.threads)?;
        let started = Instant::now();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} tensors").expect("static template").progress_chars("=> "));
        bar.set_message(path.display().to_string());
        let mut progress = |done: usize, total: usize| {
            if bar.is_hidden() && started.elapsed() > PROGRESS_DELAY {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        };
        let model = load(path, backend, &self.load_options(), &mut progress);
        bar.finish_and_clear();
        Ok(model?)
    }
}

/// Loading faster than this shows no progress bar.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);

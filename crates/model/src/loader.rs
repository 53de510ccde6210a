//! Opening a model (GGUF file, Hugging Face directory or dummy config) into everything needed
//! to serve it: config, tokenizer, chat template, weights on a backend, KV cache, step buffers.

use std::path::Path;

use rill_backend::{AttentionArithmetic, Backend, BackendError, KvDType, KvLayout};

use crate::chat_template::{ChatTemplate, ChatTemplateError};
use crate::config::{Architecture, ConfigError, ModelConfig};
use crate::family::chat_format::{self, ChatFormat};
use crate::dummy::{self, DummyWeights};
use crate::forward::{StepCapacity, Transformer};
use crate::gguf::{GgufError, GgufFile};
use crate::hf::{self, HfError, HfModel};
use crate::source::ModelSource;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::weights::{ModelWeights, WeightsError};

/// How much KV cache to allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvBudget {
    Tokens(usize),
    Bytes(usize),
    /// A fifth of the backend's free memory (4 GiB assumed where it cannot tell), at most
    /// `AUTO_KV_MAX_BYTES`.
    Auto,
}

/// The most memory `KvBudget::Auto` takes.
pub const AUTO_KV_MAX_BYTES: usize = 2 << 30;

impl KvBudget {
    /// Tokens of cache for a model whose KV takes `bytes_per_token`, before clamping, on a
    /// backend with `free` bytes of memory.
    pub fn tokens(self, bytes_per_token: usize, free: Option<usize>) -> usize {
        match self {
            KvBudget::Tokens(t) => t,
            KvBudget::Bytes(b) => b / bytes_per_token.max(1),
            KvBudget::Auto => (free.unwrap_or(4 << 30) / 5).min(AUTO_KV_MAX_BYTES) / bytes_per_token.max(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// KV cache to allocate, rounded up to whole blocks, at least one block and at most the
    /// model's context length times `max_seqs`.
    pub kv_budget: KvBudget,
    pub block_size: usize,
    pub kv_dtype: KvDType,
    pub capacity: StepCapacity,
    /// A chat template (Jinja source) to use instead of the file's (`--chat-template`).
    pub chat_template: Option<String>,
    /// Speculative decoding by n-gram lookup (`--speculation`, `--num-speculative-tokens`).
    pub speculation: rill_engine::SpeculationConfig,
    /// The attention arithmetic (`--attention`): fast, or llama.cpp's bit for bit.
    pub attention: AttentionArithmetic,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            kv_budget: KvBudget::Auto,
            block_size: 16,
            kv_dtype: KvDType::F16,
            capacity: StepCapacity { max_tokens: 512, max_seqs: 64 },
            chat_template: None,
            speculation: rill_engine::SpeculationConfig::default(),
            attention: AttentionArithmetic::Fast,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)] Gguf(#[from] GgufError),
    #[error(transparent)] Hf(#[from] HfError),
    #[error(transparent)] Config(#[from] ConfigError),
    #[error(transparent)] Tokenizer(#[from] TokenizerError),
    #[error(transparent)] ChatTemplate(#[from] ChatTemplateError),
    #[error(transparent)] Weights(#[from] WeightsError),
    #[error("cannot allocate model buffers: {0}")]
    Backend(#[from] BackendError),
    #[error("invalid load options: {0}")]
    Options(String),
    #[error("the KV cache would take {needed_mib} MiB but only {free_mib} MiB of {backend} memory are free: ask for fewer tokens (kv_cache_tokens) or free memory")]
    DoesNotFit { needed_mib: usize, free_mib: usize, backend: &'static str },
    #[error("dummy model: {0}")]
    Dummy(String),
}

pub struct LoadedModel<B: Backend> {
    pub transformer: Transformer<B>,
    pub tokenizer: Tokenizer,
    /// `None` when the file carries no chat template.
    pub chat_template: Option<ChatTemplate>,
}

/// Loads `path` onto `backend` (a GGUF file, or a Hugging Face directory: see
/// [`ModelSource::detect`]); `progress(done, total)` is called as tensors load.
pub fn load<B: Backend>(path: &Path, backend: B, opts: &LoadOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<LoadedModel<B>, LoadError> {
    load_source(&ModelSource::detect(path), backend, opts, progress)
}

/// Loads `source` onto `backend`; `progress(done, total)` is called as tensors load.
pub fn load_source<B: Backend>(source: &ModelSource, backend: B, opts: &LoadOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<LoadedModel<B>, LoadError> {
    for (name, value) in [("block_size", opts.block_size), ("max_num_batched_tokens", opts.capacity.max_tokens), ("max_num_seqs", opts.capacity.max_seqs)] {
        if value == 0 {
            return Err(LoadError::Options(format!("{name} must be at least 1")));
        }
    }
    let (cfg, weights, tokenizer, chat_template) = match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let cfg = ModelConfig::from_gguf(&file)?;
            let tokenizer = Tokenizer::from_gguf(&file)?;
            let chat_template = match file.get_str("tokenizer.chat_template")? {
                Some(_) => Some(ChatTemplate::from_gguf(&file)?),
                None => None,
            };
            let weights = ModelWeights::load(&file, &cfg, &backend, progress)?;
            (cfg, weights, tokenizer, chat_template)
        }
        ModelSource::HfDir(dir) => {
            let HfModel { config, tokenizer, chat_template, tensors } = HfModel::open(dir)?;
            let weights = ModelWeights::load_from(&tensors, &config, &backend, progress)?;
            (config, weights, tokenizer, chat_template)
        }
        ModelSource::Dummy { config, dtype, seed } => {
            let name = config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let (_, cfg) = hf::read_config(config, &name)?;
            let tokenizer = dummy::byte_tokenizer(cfg.vocab_size)?;
            let source = DummyWeights::new(cfg.clone(), *dtype, *seed).map_err(LoadError::Dummy)?;
            let weights = ModelWeights::load_from(&source, &cfg, &backend, progress)?;
            (cfg, weights, tokenizer, None)
        }
    };
    let dummy = matches!(source, ModelSource::Dummy { .. });
    let chat_template = choose_chat_template(opts.chat_template.as_deref(), chat_template, dummy, cfg.arch, &tokenizer)?;
    let transformer = assemble(backend, cfg, weights, opts)?;
    Ok(LoadedModel { transformer, tokenizer, chat_template })
}

/// The template chat requests render with: the one the operator gave, else the file's, else the
/// family's known format (llama.cpp's ChatML where the vocabulary lacks the family's markers).
/// A dummy model (a byte tokenizer) has none.
fn choose_chat_template(operator: Option<&str>, file: Option<ChatTemplate>, dummy: bool, arch: Architecture, tokenizer: &Tokenizer) -> Result<Option<ChatTemplate>, LoadError> {
    if let Some(source) = operator {
        return Ok(Some(chat_format::compile_template(source, tokenizer)?));
    }
    if file.is_some() || dummy {
        return Ok(file);
    }
    let format = ChatFormat::for_model(arch, tokenizer);
    tracing::info!(format = format.name, "the model file carries no chat template; chat requests use the {} format", format.name);
    Ok(Some(format.compile(tokenizer)?))
}

/// Sizes the KV cache for `opts` and builds the transformer around the loaded weights.
fn assemble<B: Backend>(backend: B, cfg: ModelConfig, weights: ModelWeights<B>, opts: &LoadOptions) -> Result<Transformer<B>, LoadError> {
    let bytes_per_token = 2 * cfg.layers * cfg.kv_dim() * opts.kv_dtype.bytes();
    let free = backend.free_memory_bytes();
    let tokens = opts.kv_budget.tokens(bytes_per_token, free).clamp(opts.block_size, cfg.context_length * opts.capacity.max_seqs);
    let kv = KvLayout {
        layers: cfg.layers,
        num_blocks: tokens.div_ceil(opts.block_size),
        block_size: opts.block_size,
        kv_heads: cfg.kv_heads,
        head_dim: cfg.head_dim,
        dtype: opts.kv_dtype,
    };
    // Reserving more than is free would "succeed" (the pages are touched later) and then swap or
    // be killed under load: refuse now. The weights are resident already, so they are counted.
    if let Some(free) = free {
        if kv.total_bytes() > free {
            return Err(LoadError::DoesNotFit { needed_mib: kv.total_bytes() >> 20, free_mib: free >> 20, backend: backend.name() });
        }
    }
    let mut transformer = Transformer::new(backend, cfg, weights, kv, opts.capacity)?;
    transformer.set_attention_arithmetic(opts.attention);
    Ok(transformer)
}

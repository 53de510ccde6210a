//! Hugging Face model directories: `config.json`, safetensors weights (one file or shards),
//! `tokenizer.json` + `tokenizer_config.json`, optional `generation_config.json`.
//!
//! Weights are memory-mapped and handed to the backend in place (F32, F16 or BF16). Hugging
//! Face checkpoints keep q/k rows in their original order and rotate with `rotate_half`, i.e.
//! NeoX pairs `(i, i + dim/2)`; llama.cpp's converter permutes those rows so GGUF Llama can use
//! adjacent pairs. So every model loaded from here uses NeoX rotary (`rope_neox`), Llama
//! included, and no rows are permuted at load.

pub mod config;
pub mod export;
pub mod safetensors;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use crate::chat_template::{ChatTemplate, ChatTemplateError};
use crate::config::{ConfigError, ModelConfig};
use crate::tokenizer::{Tokenizer, TokenizerError};

pub use self::config::HfConfig;
pub use self::safetensors::SafetensorsSet;

pub const CONFIG_FILE: &str = "config.json";

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Json { path: PathBuf, message: String },
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Safetensors { path: PathBuf, message: String },
    #[error("{}: no model.safetensors or model.safetensors.index.json", dir.display())]
    NoWeights { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Config { path: PathBuf, source: ConfigError },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
}

/// Everything in a model directory except the weights on a backend.
pub struct HfModel {
    pub config: ModelConfig,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub tensors: SafetensorsSet,
}

impl HfModel {
    /// Opens `dir`: parses every file and maps the weights (loaded onto a backend later).
    pub fn open(dir: &Path) -> Result<HfModel, HfError> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (hf_config, config) = read_config(&dir.join(CONFIG_FILE), &name)?;
        let (tokenizer, chat_template) = tokenizer::load(dir, &hf_config)?;
        if tokenizer.vocab_size() > config.vocab_size {
            tracing::warn!(tokenizer = tokenizer.vocab_size(), model = config.vocab_size, "the tokenizer knows more tokens than the model embeds");
        }
        let tensors = SafetensorsSet::open_dir(dir)?.with_post_norms(config.block().post_norms);
        Ok(HfModel { config, tokenizer, chat_template, tensors })
    }
}

/// Reads a `config.json` into both its raw form and the model shape; `name` names the model
/// when the config does not.
pub fn read_config(path: &Path, name: &str) -> Result<(HfConfig, ModelConfig), HfError> {
    let text = read_text(path)?;
    let config_err = |source| HfError::Config { path: path.to_path_buf(), source };
    let hf = HfConfig::parse(&text).map_err(config_err)?;
    let cfg = hf.to_model_config(name).map_err(config_err)?;
    Ok((hf, cfg))
}

/// Model JSON files are small; anything past this is not one.
const MAX_JSON_BYTES: u64 = 256 << 20;

pub(crate) fn read_text(path: &Path) -> Result<String, HfError> {
    let io = |source| HfError::Io { path: path.to_path_buf(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_JSON_BYTES {
        return Err(HfError::Json { path: path.to_path_buf(), message: format!("{len} bytes is too large") });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// `Ok(None)` when `path` does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, HfError> {
    if path.exists() { read_text(path).map(Some) } else { Ok(None) }
}

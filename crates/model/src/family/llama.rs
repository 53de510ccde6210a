//! Llama (1-3, Mistral, SmolLM 1/2) and SmolLM3, whose block is Llama's.

use super::keys::GgufKeys;
use crate::config::{ConfigError, ModelConfig};
use crate::hf::config::HfConfig;

/// A sliding window on every layer where the file states one. llama.cpp's converter writes
/// none for Mistral, so its GGUFs attend to the whole context, as llama.cpp does.
pub(super) fn gguf(k: &GgufKeys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    if let Some(window) = k.usize("attention.sliding_window")?.filter(|&w| w > 0) {
        cfg.set_sliding(window, |_| true)?;
    }
    Ok(())
}

/// Mistral v0.1's `sliding_window` (MistralConfig applies it unless `use_sliding_window` is
/// false); a window as long as the context changes nothing.
pub(super) fn hf(c: &HfConfig, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    if c.attention_bias == Some(true) {
        return Err(ConfigError::Invalid("attention_bias = true is not supported for Llama/Mistral".into()));
    }
    if c.use_sliding_window.unwrap_or(true) {
        if let Some(window) = c.sliding_window.filter(|&w| w > 0 && w < cfg.context_length) {
            cfg.set_sliding(window, |_| true)?;
        }
    }
    Ok(())
}

/// SmolLM3 skips rotary on every fourth layer (3, 7, 11, ...). llama.cpp fixes the pattern in
/// code (its GGUFs carry none), so rill does too.
pub(super) fn smollm3(cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    for (il, kind) in cfg.layer_kinds.iter_mut().enumerate() {
        kind.rope = (il + 1) % NO_ROPE_INTERVAL != 0;
    }
    Ok(())
}

const NO_ROPE_INTERVAL: usize = 4;

/// SmolLM3 from `config.json`: `no_rope_layers` (1 = rotary) where given, else every
/// `no_rope_layer_interval`-th layer without; tied embeddings unless it says otherwise.
pub(super) fn smollm3_hf(c: &HfConfig, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    // `SmolLM3Config` ties the embeddings by default, and `save_pretrained` omits defaults.
    cfg.tied_embeddings = c.tie_word_embeddings.unwrap_or(true);
    let layers = cfg.layers;
    match &c.no_rope_layers {
        Some(flags) if flags.len() == layers => cfg.layer_kinds.iter_mut().zip(flags).for_each(|(k, &f)| k.rope = f != 0),
        Some(flags) => return Err(ConfigError::Invalid(format!("no_rope_layers has {} entries for {layers} layers", flags.len()))),
        None => {
            let interval = c.no_rope_layer_interval.unwrap_or(NO_ROPE_INTERVAL).max(1);
            cfg.layer_kinds.iter_mut().enumerate().for_each(|(il, k)| k.rope = (il + 1) % interval != 0);
        }
    }
    Ok(())
}

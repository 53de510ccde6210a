//! Gemma 2 and Gemma 3: embeddings scaled by √hidden, a pre-scaled query, sliding-window layers
//! with their own rotary base, soft caps. Each hyperparameter as llama.cpp reads it from a GGUF
//! (`src/models/gemma2.cpp`, `gemma3.cpp`), or as `transformers` defines it in `config.json`.

use super::keys::{GgufKeys, Pattern};
use crate::config::{ConfigError, ModelConfig, SlidingRope};
use crate::hf::config::HfConfig;

/// llama.cpp picks the query scale by model size, not from the file: the 27B models (46 Gemma 2
/// layers, 62 Gemma 3 layers) scale by `1/√(hidden/heads)`, the others by `1/√head_dim`
/// (`query_pre_attn_scalar` in `config.json` says the same for every released model).
fn gguf_query_scale(cfg: &ModelConfig, layers_27b: usize) -> f32 {
    let d = if cfg.layers == layers_27b { cfg.hidden / cfg.heads } else { cfg.head_dim };
    1.0 / (d as f32).sqrt()
}

/// What both Gemmas share: the embedding scale and the Gemma norms' offset (in the block).
fn common(cfg: &mut ModelConfig) {
    cfg.embed_scale = (cfg.hidden as f32).sqrt();
}

pub(super) fn gemma2_gguf(k: &GgufKeys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    common(cfg);
    // Gemma 2 always multiplies by the embedding (an `output.weight` is not used).
    cfg.tied_embeddings = true;
    let window = k.usize("attention.sliding_window")?.unwrap_or(4096);
    let sliding = k.pattern("attention.sliding_window_pattern", cfg.layers)?.unwrap_or(Pattern::Period(2)).sliding(cfg.layers);
    cfg.set_sliding(window, |il| sliding[il])?;
    // The sliding layers' rotary defaults to the global one.
    let base = k.f32("rope.freq_base_swa")?.unwrap_or(cfg.rope_base);
    cfg.rope_sliding = Some(SlidingRope { base, freq_scale: cfg.rope_scaling.freq_scale() });
    cfg.attn_softcap = k.f32("attn_logit_softcapping")?.unwrap_or(50.0);
    cfg.final_softcap = k.f32("final_logit_softcapping")?.unwrap_or(30.0);
    cfg.query_scale = Some(gguf_query_scale(cfg, 46));
    Ok(())
}

pub(super) fn gemma3_gguf(k: &GgufKeys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    common(cfg);
    // Without a window every layer is global, with the global rotary.
    if let Some(window) = k.usize("attention.sliding_window")?.filter(|&w| w > 0) {
        let sliding = k.pattern("attention.sliding_window_pattern", cfg.layers)?.unwrap_or(Pattern::Period(6)).sliding(cfg.layers);
        cfg.set_sliding(window, |il| sliding[il])?;
        // Sliding layers: their own base (10 000 unless stated), never the global scaling.
        cfg.rope_sliding = Some(SlidingRope { base: k.f32("rope.freq_base_swa")?.unwrap_or(10_000.0), freq_scale: 1.0 });
    }
    cfg.final_softcap = k.f32("final_logit_softcapping")?.unwrap_or(0.0);
    cfg.query_scale = Some(gguf_query_scale(cfg, 62));
    Ok(())
}

/// `layer_types` (newer configs) or a period.
fn hf_sliding(c: &HfConfig, layers: usize, period: usize) -> Result<Vec<bool>, ConfigError> {
    match &c.layer_types {
        Some(types) if types.len() == layers => Ok(types.iter().map(|t| t == "sliding_attention").collect()),
        Some(types) => Err(ConfigError::Invalid(format!("layer_types has {} entries for {layers} layers", types.len()))),
        None => Ok(Pattern::Period(c.sliding_window_pattern.unwrap_or(period)).sliding(layers)),
    }
}

fn hf_query_scale(c: &HfConfig, cfg: &ModelConfig) -> f32 {
    1.0 / (c.query_pre_attn_scalar.unwrap_or(cfg.head_dim as f64) as f32).sqrt()
}

pub(super) fn gemma2_hf(c: &HfConfig, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    common(cfg);
    cfg.tied_embeddings = true;
    let sliding = hf_sliding(c, cfg.layers, 2)?;
    cfg.set_sliding(c.sliding_window.unwrap_or(4096), |il| sliding[il])?;
    cfg.rope_sliding = Some(SlidingRope { base: cfg.rope_base, freq_scale: cfg.rope_scaling.freq_scale() });
    cfg.attn_softcap = c.attn_logit_softcapping.unwrap_or(50.0) as f32;
    cfg.final_softcap = c.final_logit_softcapping.unwrap_or(30.0) as f32;
    cfg.query_scale = Some(hf_query_scale(c, cfg));
    Ok(())
}

pub(super) fn gemma3_hf(c: &HfConfig, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    common(cfg);
    cfg.tied_embeddings = c.tie_word_embeddings.unwrap_or(true);
    let sliding = hf_sliding(c, cfg.layers, 6)?;
    cfg.set_sliding(c.sliding_window.unwrap_or(4096), |il| sliding[il])?;
    cfg.rope_sliding = Some(SlidingRope { base: c.rope_local_base_freq.unwrap_or(10_000.0) as f32, freq_scale: 1.0 });
    if c.attn_logit_softcapping.is_some_and(|v| v > 0.0) {
        return Err(ConfigError::Invalid("Gemma 3 with attn_logit_softcapping is not supported (llama.cpp has none)".into()));
    }
    cfg.final_softcap = c.final_logit_softcapping.unwrap_or(0.0) as f32;
    cfg.query_scale = Some(hf_query_scale(c, cfg));
    Ok(())
}

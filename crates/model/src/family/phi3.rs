//! Phi-3 and Phi-4: fused q/k/v and gate‖up matrices (a block variant), a query scaled by
//! `1/√head_dim` before attention (as llama.cpp's graph does), partial rotary, and LongRoPE: per-pair frequency factors, a long set when the context outgrows the original one
//! and a short set otherwise, and a magnitude correction on cos and sin.

use super::keys::GgufKeys;
use crate::config::{ConfigError, ModelConfig, RopeScaling};
use crate::hf::config::HfConfig;

fn query_scale(cfg: &ModelConfig) -> f32 {
    1.0 / (cfg.head_dim as f32).sqrt()
}

/// llama.cpp's choice, made once for the context (not per position as `transformers` does): the
/// long factors when a sequence may outgrow the original context.
fn use_long(cfg: &ModelConfig, original_context: usize) -> bool {
    cfg.context_length > original_context
}

/// The factors are the `rope_factors_long` / `rope_factors_short` tensors (loaded with the
/// weights); the magnitude is `rope.scaling.attn_factor`. Phi-3's sliding window is ignored,
/// as llama.cpp does.
pub(super) fn gguf(k: &GgufKeys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    cfg.query_scale = Some(query_scale(cfg));
    let has_factors = k.file.tensor_info("rope_factors_long.weight").is_some() || k.file.tensor_info("rope_factors_short.weight").is_some();
    if has_factors {
        let original_context = k.usize("rope.scaling.original_context_length")?.unwrap_or(cfg.context_length);
        let attn_factor = k.f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
        cfg.rope_scaling = RopeScaling::LongRope { long: use_long(cfg, original_context), attn_factor, factors: None };
    }
    Ok(())
}

/// `rope_scaling: {"type": "longrope" | "su", "long_factor": [...], "short_factor": [...]}`,
/// the magnitude computed as llama.cpp's converter does: `√(1 + ln s / ln original)` with
/// `s = max_position_embeddings / original_max_position_embeddings`.
pub(super) fn hf(c: &HfConfig, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    cfg.query_scale = Some(query_scale(cfg));
    if let Some(p) = c.partial_rotary_factor {
        cfg.rope_dim = ((p * cfg.hidden as f64) as usize / cfg.heads) & !1;
    }
    let Some(scaling) = c.rope_scaling.as_ref().filter(|v| !v.is_null()) else { return Ok(()) };
    let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
    if !matches!(kind, "longrope" | "su") {
        return Err(ConfigError::Invalid(format!("Phi-3 rope_scaling type {kind:?} is not supported (longrope)")));
    }
    let original = c.original_max_position_embeddings.ok_or(ConfigError::MissingHfField("original_max_position_embeddings"))?;
    let long = use_long(cfg, original);
    let key = if long { "long_factor" } else { "short_factor" };
    let factors: Vec<f32> = scaling
        .get(key)
        .and_then(|v| v.as_array())
        .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect())
        .ok_or_else(|| ConfigError::Invalid(format!("rope_scaling.{key} is not a list of numbers")))?;
    if factors.len() != cfg.rope_dim / 2 {
        return Err(ConfigError::Invalid(format!("rope_scaling.{key} has {} factors for {} rotary pairs", factors.len(), cfg.rope_dim / 2)));
    }
    let s = cfg.context_length as f64 / original as f64;
    let attn_factor = if s > 1.0 { (1.0 + s.ln() / (original as f64).ln()).sqrt() } else { 1.0 } as f32;
    cfg.rope_scaling = RopeScaling::LongRope { long, attn_factor, factors: Some(factors) };
    Ok(())
}

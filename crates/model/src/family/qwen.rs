//! Qwen2 and Qwen3 (Qwen3's q/k norms are a block variant; its keys are the shared ones), and
//! their mixture-of-experts versions.

use crate::config::{ConfigError, ModelConfig};
use crate::family::GgufKeys;
use crate::hf::config::HfConfig;

/// Qwen3-MoE: the shared expert keys (`expert_count`, ...) with normalized routing weights.
pub(super) fn qwen3moe_gguf(cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    cfg.experts.as_ref().map(|_| ()).ok_or_else(|| ConfigError::Missing("qwen3moe.expert_count".into()))
}

/// Qwen2-MoE: routing weights used as the softmax gives them, and a shared expert of
/// `expert_shared_feed_forward_length` (else the dense width), as llama.cpp reads it.
pub(super) fn qwen2moe_gguf(k: &GgufKeys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    let shared = k.usize("expert_shared_feed_forward_length")?.filter(|&f| f > 0).unwrap_or(cfg.ffn_hidden);
    let e = cfg.experts.as_mut().ok_or_else(|| ConfigError::Missing("qwen2moe.expert_count".into()))?;
    e.route.normalize = false;
    e.shared_ffn = shared;
    Ok(())
}

/// Qwen2's `use_sliding_window` (off in every released model) is ignored, as llama.cpp does.
pub(super) fn qwen2_hf(c: &HfConfig, _cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    if c.use_sliding_window == Some(true) {
        tracing::warn!("use_sliding_window is ignored for Qwen2 (as llama.cpp does): attention spans the whole context");
    }
    Ok(())
}

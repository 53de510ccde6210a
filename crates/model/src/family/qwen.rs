//! Qwen2 and Qwen3 (Qwen3's q/k norms are a block variant; its keys are the shared ones).

use crate::config::{ConfigError, ModelConfig};
use crate::hf::config::HfConfig;

/// Qwen2's `use_sliding_window` (off in every released model) is ignored, as llama.cpp does.
pub(super) fn qwen2_hf(c: &HfConfig, _cfg: &mut ModelConfig) -> Result<(), ConfigError> {
    if c.use_sliding_window == Some(true) {
        tracing::warn!("use_sliding_window is ignored for Qwen2 (as llama.cpp does): attention spans the whole context");
    }
    Ok(())
}

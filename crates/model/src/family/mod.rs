//! The model families rill runs, each described in one place. A family is an [`Architecture`]:
//! its names (GGUF's `general.architecture`, Hugging Face's `architectures`), the variant of the
//! transformer block it uses ([`Block`], read by the forward pass, which has no per-family
//! branches), and the hyperparameters only it has, read from either kind of file by its own
//! module (`gemma`, `phi3`, ...). What every family shares (sizes, heads, rotary base) is read
//! by `config` and `hf::config`.

pub mod chat_format;
mod gemma;
mod keys;
mod llama;
mod phi3;
mod qwen;

use rill_backend::Activation;

use crate::config::{ConfigError, ModelConfig};
use crate::hf::config::HfConfig;
pub use keys::GgufKeys;

/// Architectures the forward pass implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// Llama 1-3, Mistral, SmolLM 1/2: RMSNorm, GQA, SwiGLU, rotary.
    Llama,
    /// Qwen2: the Llama block with q/k/v biases and NeoX rotary.
    Qwen2,
    /// Qwen3: q/k RMSNorm per head before rotary.
    Qwen3,
    /// Gemma 2: embeddings ×√d, post-attention and post-FFN norms, GeGLU, soft caps, sliding
    /// window on every other layer.
    Gemma2,
    /// Gemma 3: Gemma 2's block with q/k norms, five sliding layers for each global one, their
    /// own rotary base, no soft caps.
    Gemma3,
    /// Phi-3 / Phi-4: fused qkv and gate‖up matrices, LongRoPE.
    Phi3,
    /// SmolLM3: the Llama block with rotary skipped on every fourth layer.
    SmolLm3,
    /// Qwen3-MoE: Qwen3's attention, a routed mixture of experts (normalized top-k) for the FFN.
    Qwen3Moe,
    /// Qwen2-MoE: Qwen2's attention, routed experts (top-k not normalized) plus a shared expert
    /// behind a sigmoid gate.
    Qwen2Moe,
}

/// The block variants a family uses, beyond the Llama block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Block {
    /// GGUF rotates NeoX pairs `(i, i + d/2)`; false: adjacent pairs (llama.cpp's converter
    /// permutes Llama-style q/k rows). Hugging Face checkpoints always rotate NeoX pairs.
    pub gguf_rope_neox: bool,
    /// RMSNorm of every query and key head before rotary.
    pub qk_norm: bool,
    /// RMSNorm of the attention and feed-forward outputs before each residual add.
    pub post_norms: bool,
    pub activation: Activation,
    /// One `attn_qkv` matrix (q, k, v rows in turn) and an `ffn_up` holding gate then up rows.
    pub fused: bool,
    /// q/k/v biases, where the file has them.
    pub qkv_bias: bool,
    /// Added to every Hugging Face norm weight: Gemma multiplies by `1 + w` (llama.cpp's
    /// converter bakes the 1 into the GGUF).
    pub hf_norm_offset: f32,
}

const LLAMA_BLOCK: Block = Block {
    gguf_rope_neox: false,
    qk_norm: false,
    post_norms: false,
    activation: Activation::Silu,
    fused: false,
    qkv_bias: false,
    hf_norm_offset: 0.0,
};

impl Architecture {
    pub const ALL: [Architecture; 9] = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma2,
        Architecture::Gemma3,
        Architecture::Phi3,
        Architecture::SmolLm3,
        Architecture::Qwen3Moe,
        Architecture::Qwen2Moe,
    ];

    /// GGUF's `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma2 => "gemma2",
            Architecture::Gemma3 => "gemma3",
            Architecture::Phi3 => "phi3",
            Architecture::SmolLm3 => "smollm3",
            Architecture::Qwen3Moe => "qwen3moe",
            Architecture::Qwen2Moe => "qwen2moe",
        }
    }

    /// Hugging Face's `architectures[0]` values and `model_type`s for this family.
    pub fn hf_names(self) -> &'static [&'static str] {
        match self {
            Architecture::Llama => &["LlamaForCausalLM", "MistralForCausalLM", "llama", "mistral"],
            Architecture::Qwen2 => &["Qwen2ForCausalLM", "qwen2"],
            Architecture::Qwen3 => &["Qwen3ForCausalLM", "qwen3"],
            Architecture::Gemma2 => &["Gemma2ForCausalLM", "gemma2"],
            Architecture::Gemma3 => &["Gemma3ForCausalLM", "gemma3_text"],
            Architecture::Phi3 => &["Phi3ForCausalLM", "phi3"],
            Architecture::SmolLm3 => &["SmolLM3ForCausalLM", "smollm3"],
            // Mixture-of-experts checkpoints load from GGUF only (so far).
            Architecture::Qwen3Moe | Architecture::Qwen2Moe => &[],
        }
    }

    pub fn from_name(name: &str) -> Option<Architecture> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn from_hf_name(name: &str) -> Option<Architecture> {
        Self::ALL.into_iter().find(|a| a.hf_names().contains(&name))
    }

    /// The GGUF names, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Architecture::name).join(", ")
    }

    /// The Hugging Face class names, for error messages.
    pub fn hf_class_names() -> String {
        Self::ALL.iter().flat_map(|a| a.hf_names().iter().filter(|n| n.ends_with("ForCausalLM"))).copied().collect::<Vec<_>>().join(", ")
    }

    pub fn block(self) -> Block {
        let gemma = Block { gguf_rope_neox: true, post_norms: true, activation: Activation::GeluTanh, hf_norm_offset: 1.0, ..LLAMA_BLOCK };
        match self {
            Architecture::Llama | Architecture::SmolLm3 => LLAMA_BLOCK,
            Architecture::Qwen2 | Architecture::Qwen2Moe => Block { gguf_rope_neox: true, qkv_bias: true, ..LLAMA_BLOCK },
            Architecture::Qwen3 | Architecture::Qwen3Moe => Block { gguf_rope_neox: true, qk_norm: true, ..LLAMA_BLOCK },
            Architecture::Gemma2 => gemma,
            Architecture::Gemma3 => Block { qk_norm: true, ..gemma },
            Architecture::Phi3 => Block { gguf_rope_neox: true, fused: true, ..LLAMA_BLOCK },
        }
    }

    /// Sets what only this family has from its GGUF keys (the shared shape is already in `cfg`).
    pub(crate) fn read_gguf(self, k: &GgufKeys<'_>, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
        match self {
            Architecture::Llama => llama::gguf(k, cfg),
            Architecture::SmolLm3 => llama::smollm3(cfg),
            Architecture::Qwen2 | Architecture::Qwen3 => Ok(()),
            Architecture::Qwen3Moe => qwen::qwen3moe_gguf(cfg),
            Architecture::Qwen2Moe => qwen::qwen2moe_gguf(k, cfg),
            Architecture::Gemma2 => gemma::gemma2_gguf(k, cfg),
            Architecture::Gemma3 => gemma::gemma3_gguf(k, cfg),
            Architecture::Phi3 => phi3::gguf(k, cfg),
        }
    }

    /// Sets what only this family has from its Hugging Face `config.json`.
    pub(crate) fn read_hf(self, c: &HfConfig, cfg: &mut ModelConfig) -> Result<(), ConfigError> {
        match self {
            Architecture::Llama => llama::hf(c, cfg),
            Architecture::SmolLm3 => llama::smollm3_hf(c, cfg),
            Architecture::Qwen2 => qwen::qwen2_hf(c, cfg),
            Architecture::Qwen3 => Ok(()),
            Architecture::Qwen3Moe | Architecture::Qwen2Moe => Err(ConfigError::Invalid(format!("{} loads from GGUF only", self.name()))),
            Architecture::Gemma2 => gemma::gemma2_hf(c, cfg),
            Architecture::Gemma3 => gemma::gemma3_hf(c, cfg),
            Architecture::Phi3 => phi3::hf(c, cfg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Architecture::ALL {
            assert_eq!(Architecture::from_name(a.name()), Some(a));
            for n in a.hf_names() {
                assert_eq!(Architecture::from_hf_name(n), Some(a));
            }
        }
        assert_eq!(Architecture::from_name("mamba"), None);
        assert!(Architecture::names().contains("gemma3") && Architecture::hf_class_names().contains("Phi3ForCausalLM"));
    }
}

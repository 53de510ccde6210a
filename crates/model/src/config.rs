//! The model's shape, read from GGUF metadata. Only what the forward pass needs, validated once
//! here so the hot path can trust it.

use rill_backend::RopeParams;

use crate::gguf::{GgufError, GgufFile};

/// Architectures the forward pass implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3, Mistral, SmolLM: RMSNorm, GQA, SwiGLU, rotary (GGUF's permuted "normal" form).
    Llama,
    /// Qwen2: the Llama block with q/k/v biases and NeoX rotary.
    Qwen2,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// How positions are scaled before the rotary angles are taken.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear { factor: f32 },
    /// Llama 3: per-frequency factors from the `rope_freqs.weight` tensor (applied at load).
    FrequencyFactors,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub name: String,
    pub layers: usize,
    pub hidden: usize,
    pub ffn_hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    pub rope_dim: usize,
    pub rope_scaling: RopeScaling,
    /// The output projection reuses the token embedding (no `output.weight` tensor).
    pub tied_embeddings: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported model architecture {0:?} (rill runs: llama, qwen2)")]
    UnsupportedArchitecture(String),
    #[error("GGUF metadata lacks {0}")]
    Missing(String),
    #[error("invalid model config: {0}")]
    Invalid(String),
}

/// Largest head dimension the kernels accept.
pub const MAX_HEAD_DIM: usize = 256;

impl ModelConfig {
    pub fn from_gguf(f: &GgufFile) -> Result<ModelConfig, ConfigError> {
        let arch_name = f.get_str("general.architecture")?.ok_or_else(|| ConfigError::Missing("general.architecture".into()))?;
        let arch = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => return Err(ConfigError::UnsupportedArchitecture(other.to_string())),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let required = |k: &str| -> Result<usize, ConfigError> {
            let v = f.get_u64(&key(k))?.ok_or_else(|| ConfigError::Missing(key(k)))?;
            usize::try_from(v).map_err(|_| ConfigError::Invalid(format!("{} = {v}", key(k))))
        };
        let optional = |k: &str| -> Result<Option<usize>, ConfigError> {
            Ok(f.get_u64(&key(k))?.map(|v| v as usize))
        };

        let hidden = required("embedding_length")?;
        let heads = required("attention.head_count")?;
        let kv_heads = optional("attention.head_count_kv")?.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(ConfigError::Invalid(format!("{heads} attention heads over {kv_heads} KV heads")));
        }
        let head_dim = match optional("attention.key_length")? {
            Some(d) => d,
            None if hidden % heads == 0 => hidden / heads,
            None => return Err(ConfigError::Invalid(format!("hidden size {hidden} not divisible by {heads} heads"))),
        };
        if let Some(v) = optional("attention.value_length")? {
            if v != head_dim {
                return Err(ConfigError::Invalid(format!("value head dim {v} differs from key head dim {head_dim}")));
            }
        }
        if head_dim == 0 || head_dim > MAX_HEAD_DIM || head_dim % 2 != 0 {
            return Err(ConfigError::Invalid(format!("head dim {head_dim} (even, at most {MAX_HEAD_DIM})")));
        }
        let rope_dim = optional("rope.dimension_count")?.unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(ConfigError::Invalid(format!("rope dimension {rope_dim} with head dim {head_dim}")));
        }
        let vocab_size = match optional("vocab_size")? {
            Some(v) => v,
            None => f.get_array("tokenizer.ggml.tokens")?.map(|a| a.len()).ok_or_else(|| ConfigError::Missing(key("vocab_size")))?,
        };
        let rope_scaling = match f.get_str(&key("rope.scaling.type"))? {
            None | Some("none") => {
                if f.tensor_info("rope_freqs.weight").is_some() { RopeScaling::FrequencyFactors } else { RopeScaling::None }
            }
            Some("linear") => {
                let factor = f.get_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0) as f32;
                if !(factor.is_finite() && factor > 0.0) {
                    return Err(ConfigError::Invalid(format!("rope scaling factor {factor}")));
                }
                RopeScaling::Linear { factor }
            }
            Some(other) => return Err(ConfigError::Invalid(format!("rope scaling {other:?} is not supported (none, linear)"))),
        };
        let norm_eps = f.get_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5) as f32;
        let rope_base = f.get_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32;
        let sane = rope_base.is_finite() && rope_base > 1.0 && norm_eps.is_finite() && norm_eps >= 0.0;
        if !sane {
            return Err(ConfigError::Invalid(format!("rope base {rope_base}, norm eps {norm_eps}")));
        }
        let cfg = ModelConfig {
            arch,
            name: f.get_str("general.name")?.unwrap_or(arch_name).to_string(),
            layers: required("block_count")?,
            hidden,
            ffn_hidden: required("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            vocab_size,
            context_length: required("context_length")?,
            norm_eps,
            rope_base,
            rope_dim,
            rope_scaling,
            tied_embeddings: f.tensor_info("output.weight").is_none(),
        };
        if cfg.layers == 0 || cfg.ffn_hidden == 0 || cfg.vocab_size == 0 || cfg.context_length == 0 {
            return Err(ConfigError::Invalid(format!("{cfg:?}")));
        }
        Ok(cfg)
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Rotary parameters; `freq_factors` are Llama 3's per-frequency divisors when present.
    pub fn rope_params(&self, freq_factors: Option<&[f32]>) -> RopeParams {
        let pairs = self.rope_dim / 2;
        let position_scale = match self.rope_scaling {
            RopeScaling::Linear { factor } => 1.0 / factor,
            _ => 1.0,
        };
        let inv_freq = (0..pairs)
            .map(|i| {
                let base = self.rope_base.powf(-2.0 * i as f32 / self.rope_dim as f32);
                let factor = freq_factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
                base * position_scale / factor
            })
            .collect();
        RopeParams { rot_dim: self.rope_dim, inv_freq, neox: self.arch == Architecture::Qwen2 }
    }
}

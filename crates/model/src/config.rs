//! The model's shape, read from GGUF metadata (here) or a Hugging Face `config.json`
//! (`hf::config`). Only what the forward pass needs, validated once so the hot path can trust it.

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
    /// Llama 3 as a Hugging Face config states it: the same per-frequency factors, computed
    /// from these parameters (as llama.cpp's converter computes `rope_freqs.weight`).
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_context: usize },
}

impl RopeScaling {
    /// Llama 3's per-frequency divisors for `inv_freq[i] = base^(-2i/rot_dim)`, `None` for the
    /// other scalings. Wavelengths shorter than `original_context / high_freq_factor` keep
    /// their frequency, longer than `original_context / low_freq_factor` are divided by
    /// `factor`, and the band between is interpolated smoothly.
    pub fn llama3_factors(&self, rope_base: f32, rope_dim: usize) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context } = *self else {
            return None;
        };
        let old = original_context as f32;
        let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
        let factors = (0..rope_dim / 2)
            .map(|i| {
                let freq = 1.0 / rope_base.powf(2.0 * i as f32 / rope_dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect();
        Some(factors)
    }
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
    /// NeoX rotary pairs `(i, i + rot_dim/2)` instead of GGUF Llama's `(2i, 2i+1)`: Qwen2, and
    /// every Hugging Face checkpoint (llama.cpp's converter permutes q/k rows for the latter).
    pub rope_neox: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported model architecture {0:?} (rill runs: llama, qwen2)")]
    UnsupportedArchitecture(String),
    #[error("unsupported model architecture {0:?} (rill runs: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)")]
    UnsupportedHfArchitecture(String),
    #[error("GGUF metadata lacks {0}")]
    Missing(String),
    #[error("config.json lacks {0}")]
    MissingHfField(&'static str),
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
        let rope_dim = optional("rope.dimension_count")?.unwrap_or(head_dim);
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
            rope_neox: arch == Architecture::Qwen2,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checks every source of a config shares: heads divide evenly, head and rotary dims
    /// the kernels accept, nothing empty, finite rope base and norm epsilon.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (heads, kv_heads, head_dim, rope_dim) = (self.heads, self.kv_heads, self.head_dim, self.rope_dim);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(ConfigError::Invalid(format!("{heads} attention heads over {kv_heads} KV heads")));
        }
        if head_dim == 0 || head_dim > MAX_HEAD_DIM || head_dim % 2 != 0 {
            return Err(ConfigError::Invalid(format!("head dim {head_dim} (even, at most {MAX_HEAD_DIM})")));
        }
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(ConfigError::Invalid(format!("rope dimension {rope_dim} with head dim {head_dim}")));
        }
        let sane = self.rope_base.is_finite() && self.rope_base > 1.0 && self.norm_eps.is_finite() && self.norm_eps >= 0.0;
        if !sane {
            return Err(ConfigError::Invalid(format!("rope base {}, norm eps {}", self.rope_base, self.norm_eps)));
        }
        if self.layers == 0 || self.hidden == 0 || self.ffn_hidden == 0 || self.vocab_size == 0 || self.context_length == 0 {
            return Err(ConfigError::Invalid(format!("{self:?}")));
        }
        if self.vocab_size > u32::MAX as usize {
            return Err(ConfigError::Invalid(format!("vocabulary of {} tokens", self.vocab_size)));
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Rotary parameters; `freq_factors` are Llama 3's per-frequency divisors when present
    /// (GGUF's `rope_freqs.weight`; `RopeScaling::Llama3` computes its own).
    pub fn rope_params(&self, freq_factors: Option<&[f32]>) -> RopeParams {
        let computed = self.rope_scaling.llama3_factors(self.rope_base, self.rope_dim);
        let freq_factors = computed.as_deref().or(freq_factors);
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
        RopeParams { rot_dim: self.rope_dim, inv_freq, neox: self.rope_neox }
    }
}

//! The model's shape, read from GGUF metadata (here) or a Hugging Face `config.json`
//! (`hf::config`). Only what the forward pass needs, validated once so the hot path can trust it.

use rill_backend::{AttentionArithmetic, AttentionParams, ExpertRoute, RopeParams};

pub use crate::family::Architecture;
use crate::family::{Block, GgufKeys};
use crate::gguf::{GgufError, GgufFile};

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
    /// Phi-3's LongRoPE: per-pair factors (the long set when the context outgrows the original
    /// one, else the short set: `factors` from `config.json`, or `None` for a GGUF's
    /// `rope_factors_long`/`_short` tensors) and a magnitude on cos and sin.
    LongRope { long: bool, attn_factor: f32, factors: Option<Vec<f32>> },
}

impl RopeScaling {
    /// The linear position scale, `1 / factor` (1 for the other scalings).
    pub fn freq_scale(&self) -> f32 {
        match self {
            RopeScaling::Linear { factor } => 1.0 / factor,
            _ => 1.0,
        }
    }

    /// The name of the GGUF tensor holding this scaling's per-pair factors, if it has one.
    pub fn factors_tensor(&self) -> Option<&'static str> {
        match self {
            RopeScaling::FrequencyFactors => Some("rope_freqs.weight"),
            RopeScaling::LongRope { long: true, factors: None, .. } => Some("rope_factors_long.weight"),
            RopeScaling::LongRope { long: false, factors: None, .. } => Some("rope_factors_short.weight"),
            _ => None,
        }
    }

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

/// One layer's attention: whether it slides (reads only the last `sliding_window` keys, rotated
/// by the sliding layers' rotary) and whether it rotates at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerKind {
    pub sliding: bool,
    pub rope: bool,
}

/// The sliding layers' own rotary (Gemma).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingRope {
    pub base: f32,
    pub freq_scale: f32,
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
    /// NeoX rotary pairs `(i, i + rot_dim/2)` instead of GGUF Llama's `(2i, 2i+1)`: Qwen, Gemma,
    /// Phi-3, and every Hugging Face checkpoint (llama.cpp's converter permutes q/k rows for
    /// Llama-style ones).
    pub rope_neox: bool,
    /// Per layer.
    pub layer_kinds: Vec<LayerKind>,
    /// Keys a sliding layer reads; 0 when no layer slides.
    pub sliding_window: usize,
    /// The sliding layers' rotary where it differs from the global one.
    pub rope_sliding: Option<SlidingRope>,
    /// The query is multiplied by this before attention, which then scales by 1 (Gemma);
    /// `None`: attention scales by `1/√head_dim`.
    pub query_scale: Option<f32>,
    /// Gemma 2's attention soft cap; 0: none.
    pub attn_softcap: f32,
    /// Gemma's final logit soft cap; 0: none.
    pub final_softcap: f32,
    /// Embedding rows are multiplied by this (Gemma: √hidden); 1: not scaled.
    pub embed_scale: f32,
    /// Every layer's feed-forward block is a mixture of experts (Mixtral, Qwen3-MoE, Qwen2-MoE).
    pub experts: Option<Experts>,
}

/// A mixture-of-experts feed-forward block: a router picks `route.used` of `route.experts`
/// gated FFNs of `ffn_hidden` per token; Qwen2-MoE adds a shared expert of `shared_ffn` (0: none)
/// behind a sigmoid gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Experts {
    pub route: ExpertRoute,
    pub ffn_hidden: usize,
    pub shared_ffn: usize,
}

impl Experts {
    /// The experts a GGUF declares (`{arch}.expert_count` > 0), `None` for a dense model.
    /// Routing weights are normalized (Mixtral, Qwen3-MoE) unless a family says otherwise.
    fn from_gguf(k: &GgufKeys<'_>, ffn_hidden: usize) -> Result<Option<Experts>, ConfigError> {
        let Some(count) = k.usize("expert_count")?.filter(|&c| c > 0) else { return Ok(None) };
        let used = k.required("expert_used_count")?;
        let scale = k.f32("expert_weights_scale")?.filter(|&s| s != 0.0).unwrap_or(1.0);
        let route = ExpertRoute { experts: count, used, normalize: true, scale };
        let ffn = k.usize("expert_feed_forward_length")?.filter(|&f| f > 0).unwrap_or(ffn_hidden);
        Ok(Some(Experts { route, ffn_hidden: ffn, shared_ffn: 0 }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported model architecture {0:?} (rill runs: {names})", names = Architecture::names())]
    UnsupportedArchitecture(String),
    #[error("unsupported model architecture {0:?} (rill runs: {names})", names = Architecture::hf_class_names())]
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
        let arch = Architecture::from_name(arch_name).ok_or_else(|| ConfigError::UnsupportedArchitecture(arch_name.to_string()))?;
        let k = GgufKeys::new(f, arch_name);
        let hidden = k.required("embedding_length")?;
        let heads = k.required("attention.head_count")?;
        let kv_heads = k.usize("attention.head_count_kv")?.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(ConfigError::Invalid(format!("{heads} attention heads over {kv_heads} KV heads")));
        }
        let head_dim = match k.usize("attention.key_length")? {
            Some(d) => d,
            None if hidden % heads == 0 => hidden / heads,
            None => return Err(ConfigError::Invalid(format!("hidden size {hidden} not divisible by {heads} heads"))),
        };
        if let Some(v) = k.usize("attention.value_length")? {
            if v != head_dim {
                return Err(ConfigError::Invalid(format!("value head dim {v} differs from key head dim {head_dim}")));
            }
        }
        let vocab_size = match k.usize("vocab_size")? {
            Some(v) => v,
            None => f.get_array("tokenizer.ggml.tokens")?.map(|a| a.len()).ok_or_else(|| ConfigError::Missing(format!("{arch_name}.vocab_size")))?,
        };
        let rope_scaling = match k.str("rope.scaling.type")? {
            None | Some("none") => {
                if f.tensor_info("rope_freqs.weight").is_some() { RopeScaling::FrequencyFactors } else { RopeScaling::None }
            }
            Some("linear") => match k.f32("rope.scaling.factor")? {
                None => RopeScaling::None,
                Some(factor) if factor.is_finite() && factor > 0.0 => RopeScaling::Linear { factor },
                Some(factor) => return Err(ConfigError::Invalid(format!("rope scaling factor {factor}"))),
            },
            Some(other) => return Err(ConfigError::Invalid(format!("rope scaling {other:?} is not supported (none, linear)"))),
        };
        let layers = k.required("block_count")?;
        let mut cfg = ModelConfig {
            name: f.get_str("general.name")?.unwrap_or(arch_name).to_string(),
            layers,
            hidden,
            ffn_hidden: k.required("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            vocab_size,
            context_length: k.required("context_length")?,
            norm_eps: k.f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            rope_base: k.f32("rope.freq_base")?.unwrap_or(10_000.0),
            rope_dim: k.usize("rope.dimension_count")?.unwrap_or(head_dim),
            rope_scaling,
            tied_embeddings: f.tensor_info("output.weight").is_none(),
            rope_neox: arch.block().gguf_rope_neox,
            ..ModelConfig::plain(arch, layers)
        };
        cfg.experts = Experts::from_gguf(&k, cfg.ffn_hidden)?;
        arch.read_gguf(&k, &mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config of `arch` with `layers` plain layers (rotary, no window) and every size zero:
    /// the base the readers fill in.
    pub fn plain(arch: Architecture, layers: usize) -> ModelConfig {
        ModelConfig {
            arch,
            name: String::new(),
            layers,
            hidden: 0,
            ffn_hidden: 0,
            heads: 0,
            kv_heads: 0,
            head_dim: 0,
            vocab_size: 0,
            context_length: 0,
            norm_eps: 1e-5,
            rope_base: 10_000.0,
            rope_dim: 0,
            rope_scaling: RopeScaling::None,
            tied_embeddings: false,
            rope_neox: true,
            layer_kinds: vec![LayerKind { sliding: false, rope: true }; layers],
            sliding_window: 0,
            rope_sliding: None,
            query_scale: None,
            attn_softcap: 0.0,
            final_softcap: 0.0,
            embed_scale: 1.0,
            experts: None,
        }
    }

    /// The block variants of the family.
    pub fn block(&self) -> Block {
        self.arch.block()
    }

    /// Slides the layers `sliding(il)` picks over windows of `window` keys.
    pub fn set_sliding(&mut self, window: usize, sliding: impl Fn(usize) -> bool) -> Result<(), ConfigError> {
        if window == 0 || window > u32::MAX as usize {
            return Err(ConfigError::Invalid(format!("sliding window of {window} keys")));
        }
        self.sliding_window = window;
        for (il, kind) in self.layer_kinds.iter_mut().enumerate() {
            kind.sliding = sliding(il);
        }
        Ok(())
    }

    /// How layer `il` forms and masks its attention scores.
    pub fn attention_params(&self, il: usize) -> AttentionParams {
        let window = if self.layer_kinds[il].sliding { self.sliding_window as u32 } else { 0 };
        let scale = if self.query_scale.is_some() { 1.0 } else { 1.0 / (self.head_dim as f32).sqrt() };
        AttentionParams { scale, softcap: self.attn_softcap, window, arithmetic: AttentionArithmetic::default() }
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
        if self.layer_kinds.len() != self.layers {
            return Err(ConfigError::Invalid(format!("{} layer kinds for {} layers", self.layer_kinds.len(), self.layers)));
        }
        if let Some(e) = &self.experts {
            let r = &e.route;
            if r.used == 0 || r.used > r.experts || e.ffn_hidden == 0 || !r.scale.is_finite() {
                return Err(ConfigError::Invalid(format!("{} of {} experts of {} ({:?})", r.used, r.experts, e.ffn_hidden, r)));
            }
        }
        let caps = [self.attn_softcap, self.final_softcap, self.embed_scale, self.query_scale.unwrap_or(1.0)];
        if caps.iter().any(|c| !c.is_finite() || *c < 0.0) {
            return Err(ConfigError::Invalid(format!("soft caps and scales {caps:?}")));
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// The rotary of the global layers (`sliding = false`) or the sliding ones; `file_factors`
    /// are the per-pair factors the weights carry (GGUF's `rope_freqs`, `rope_factors_*`).
    pub fn rope_params(&self, sliding: bool, file_factors: Option<&[f32]>) -> RopeParams {
        let rope = RopeParams::new(self.rope_dim, self.rope_base, self.rope_neox);
        if let (true, Some(s)) = (sliding, self.rope_sliding) {
            return RopeParams { freq_scale: s.freq_scale, ..RopeParams::new(self.rope_dim, s.base, self.rope_neox) };
        }
        let computed = self.rope_scaling.llama3_factors(self.rope_base, self.rope_dim);
        let freq_factors = match &self.rope_scaling {
            RopeScaling::LongRope { factors: Some(f), .. } => Some(f.clone()),
            _ => computed.or_else(|| file_factors.map(<[f32]>::to_vec)),
        };
        let mscale = match self.rope_scaling {
            RopeScaling::LongRope { attn_factor, .. } => attn_factor,
            _ => 1.0,
        };
        RopeParams { freq_scale: self.rope_scaling.freq_scale(), freq_factors: freq_factors.unwrap_or_default(), mscale, ..rope }
    }
}

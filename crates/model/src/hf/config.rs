//! The JSON files of a Hugging Face model directory, parsed into plain structs: `config.json`
//! (→ [`ModelConfig`]), `tokenizer_config.json` and `generation_config.json`.
//!
//! Missing optional fields take `transformers`' defaults for `LlamaConfig` (which the other
//! families share where it matters to us); what only a family has is read by its module in
//! `family`. Fields the forward pass cannot honour (MLP biases, unknown rope scalings) are
//! errors rather than silently wrong output.

use serde::Deserialize;
use serde_json::Value;

use crate::config::{Architecture, ConfigError, ModelConfig, RopeScaling};

/// `config.json`, the fields rill reads. Everything is optional here so that a missing field
/// is reported by name (`ConfigError::MissingHfField`) rather than as a serde error.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HfConfig {
    pub architectures: Option<Vec<String>>,
    pub model_type: Option<String>,
    #[serde(rename = "_name_or_path")]
    pub name_or_path: Option<String>,
    pub hidden_size: Option<usize>,
    pub intermediate_size: Option<usize>,
    pub num_hidden_layers: Option<usize>,
    pub num_attention_heads: Option<usize>,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<Value>,
    /// transformers ≥ 5 writes `rope_theta` and the scaling here (`{"rope_type", "rope_theta",
    /// "factor", ...}`) instead of the two fields above.
    pub rope_parameters: Option<Value>,
    pub max_position_embeddings: Option<usize>,
    pub vocab_size: Option<usize>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub sliding_window: Option<usize>,
    pub use_sliding_window: Option<bool>,
    /// Gemma: every `sliding_window_pattern`-th layer is global (older configs), or one
    /// `"sliding_attention"` / `"full_attention"` per layer (newer ones).
    pub sliding_window_pattern: Option<usize>,
    pub layer_types: Option<Vec<String>>,
    /// Gemma 3: the sliding layers' rotary base.
    pub rope_local_base_freq: Option<f64>,
    /// Gemma: the query is scaled by `query_pre_attn_scalar^-1/2`.
    pub query_pre_attn_scalar: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    /// Phi-3: rotary on this fraction of each head; LongRoPE's original context.
    pub partial_rotary_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
    /// SmolLM3: per layer, 1 = rotary, 0 = none; or every `no_rope_layer_interval`-th without.
    pub no_rope_layers: Option<Vec<u8>>,
    pub no_rope_layer_interval: Option<usize>,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
}

/// A token id field that may be one id or a list (`eos_token_id: [128001, 128009]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }

    pub fn first(&self) -> Option<u32> {
        self.to_vec().first().copied()
    }
}

/// Defaults of `transformers.LlamaConfig` for the fields a checkpoint may leave out.
const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_MAX_POSITIONS: usize = 2048;
/// llama.cpp's converter defaults for a `llama3` rope scaling that omits parameters.
const LLAMA3_DEFAULTS: (f64, f64, f64, usize) = (8.0, 1.0, 4.0, 8192);

impl HfConfig {
    pub fn parse(text: &str) -> Result<HfConfig, ConfigError> {
        serde_json::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The architecture, from `architectures[0]` or else `model_type`.
    pub fn architecture(&self) -> Result<Architecture, ConfigError> {
        let name = match (&self.architectures, &self.model_type) {
            (Some(a), _) if !a.is_empty() => a[0].as_str(),
            (_, Some(t)) => t.as_str(),
            _ => return Err(ConfigError::MissingHfField("architectures")),
        };
        Architecture::from_hf_name(name).ok_or_else(|| ConfigError::UnsupportedHfArchitecture(name.to_string()))
    }

    /// The model shape; `name` is used when the config names no model.
    pub fn to_model_config(&self, name: &str) -> Result<ModelConfig, ConfigError> {
        let arch = self.architecture()?;
        let req = |v: Option<usize>, field: &'static str| v.ok_or(ConfigError::MissingHfField(field));
        let hidden = req(self.hidden_size, "hidden_size")?;
        let heads = req(self.num_attention_heads, "num_attention_heads")?;
        let kv_heads = self.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(ConfigError::Invalid(format!("{heads} attention heads over {kv_heads} KV heads")));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if hidden % heads == 0 => hidden / heads,
            None => return Err(ConfigError::Invalid(format!("hidden size {hidden} not divisible by {heads} heads"))),
        };
        if self.mlp_bias == Some(true) {
            return Err(ConfigError::Invalid("mlp_bias = true is not supported".into()));
        }
        let params = self.rope_parameters.as_ref().filter(|v| v.is_object());
        let params_theta = params.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64);
        let rope_base = self.rope_theta.or(params_theta).unwrap_or(DEFAULT_ROPE_THETA) as f32;
        // Phi-3's LongRoPE is its family's to read.
        let rope_scaling = match (&self.rope_scaling, params) {
            _ if arch == Architecture::Phi3 => RopeScaling::None,
            (Some(v), _) if !v.is_null() => parse_rope_scaling(Some(v))?,
            (_, Some(p)) => parse_rope_scaling(Some(p))?,
            _ => RopeScaling::None,
        };
        let layers = req(self.num_hidden_layers, "num_hidden_layers")?;
        let mut cfg = ModelConfig {
            name: self.name_or_path.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| name.to_string()),
            hidden,
            ffn_hidden: req(self.intermediate_size, "intermediate_size")?,
            heads,
            kv_heads,
            head_dim,
            vocab_size: req(self.vocab_size, "vocab_size")?,
            context_length: self.max_position_embeddings.unwrap_or(DEFAULT_MAX_POSITIONS),
            norm_eps: self.rms_norm_eps.unwrap_or(DEFAULT_RMS_NORM_EPS) as f32,
            rope_base,
            rope_dim: head_dim,
            rope_scaling,
            tied_embeddings: self.tie_word_embeddings.unwrap_or(false),
            // Hugging Face checkpoints rotate with `rotate_half`: pairs (i, i + dim/2).
            rope_neox: true,
            ..ModelConfig::plain(arch, layers)
        };
        arch.read_hf(self, &mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `rope_scaling`: absent, `null` or `default` → none; `linear`; `llama3`. The type is under
/// `rope_type` (current) or `type` (older checkpoints).
pub fn parse_rope_scaling(v: Option<&Value>) -> Result<RopeScaling, ConfigError> {
    let Some(obj) = v.filter(|v| !v.is_null()) else { return Ok(RopeScaling::None) };
    let obj = obj.as_object().ok_or_else(|| ConfigError::Invalid(format!("rope_scaling is not an object: {obj}")))?;
    let kind = obj.get("rope_type").or_else(|| obj.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |key: &str, default: f64| -> Result<f64, ConfigError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| ConfigError::Invalid(format!("rope_scaling.{key} = {v}"))),
        }
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor", 1.0)? as f32 }),
        "llama3" => {
            let (f, lo, hi, ctx) = LLAMA3_DEFAULTS;
            let (factor, low, high) = (num("factor", f)?, num("low_freq_factor", lo)?, num("high_freq_factor", hi)?);
            if high <= low {
                return Err(ConfigError::Invalid(format!("rope_scaling: high_freq_factor {high} <= low_freq_factor {low}")));
            }
            let original = num("original_max_position_embeddings", ctx as f64)?;
            Ok(RopeScaling::Llama3 {
                factor: factor as f32,
                low_freq_factor: low as f32,
                high_freq_factor: high as f32,
                original_context: original as usize,
            })
        }
        other => Err(ConfigError::Invalid(format!("rope_scaling type {other:?} is not supported (default, linear, llama3)"))),
    }
}

/// `tokenizer_config.json`, the fields rill reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenizerConfig {
    pub chat_template: Option<ChatTemplateField>,
    pub bos_token: Option<TokenText>,
    pub eos_token: Option<TokenText>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
}

/// A special token as a string or as an `AddedToken` object (`{"content": "<s>", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TokenText {
    Text(String),
    Object { content: String },
}

impl TokenText {
    pub fn as_str(&self) -> &str {
        match self {
            TokenText::Text(s) | TokenText::Object { content: s } => s,
        }
    }
}

/// One template, or named templates (`[{"name": "default", "template": ...}, {"name":
/// "tool_use", ...}]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ChatTemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NamedTemplate {
    pub name: String,
    pub template: String,
}

impl TokenizerConfig {
    pub fn parse(text: &str) -> Result<TokenizerConfig, String> {
        serde_json::from_str(text).map_err(|e| format!("tokenizer_config.json: {e}"))
    }

    /// The chat template: the only one, or the one named `default`.
    pub fn chat_template(&self) -> Option<&str> {
        match self.chat_template.as_ref()? {
            ChatTemplateField::One(t) => Some(t),
            ChatTemplateField::Named(list) => list.iter().find(|t| t.name == "default").map(|t| t.template.as_str()),
        }
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_ref().map(TokenText::as_str)
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_ref().map(TokenText::as_str)
    }
}

/// `generation_config.json`: the ids that end generation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationConfig {
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
}

impl GenerationConfig {
    pub fn parse(text: &str) -> Result<GenerationConfig, String> {
        serde_json::from_str(text).map_err(|e| format!("generation_config.json: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA3_8B: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
        "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
        "intermediate_size": 14336, "max_position_embeddings": 8192, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 500000.0,
        "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0",
        "use_cache": true, "vocab_size": 128256
    }"#;

    #[test]
    fn llama3_8b_config() {
        let cfg = HfConfig::parse(LLAMA3_8B).unwrap().to_model_config("x").unwrap();
        assert_eq!(cfg.arch, Architecture::Llama);
        assert_eq!((cfg.hidden, cfg.ffn_hidden, cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim), (4096, 14336, 32, 32, 8, 128));
        assert_eq!((cfg.vocab_size, cfg.context_length, cfg.rope_dim), (128256, 8192, 128));
        assert_eq!((cfg.rope_base, cfg.norm_eps), (500000.0, 1e-5));
        assert_eq!(cfg.rope_scaling, RopeScaling::None);
        assert!(!cfg.tied_embeddings && cfg.rope_neox);
        assert_eq!(cfg.name, "x");
    }

    #[test]
    fn qwen2_tied_with_sliding_window_off() {
        let text = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "sliding_window": 32768, "max_window_layers": 21,
            "use_sliding_window": false, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
            "tie_word_embeddings": true, "vocab_size": 151936, "eos_token_id": 151643}"#;
        let hf = HfConfig::parse(text).unwrap();
        let cfg = hf.to_model_config("qwen").unwrap();
        assert_eq!(cfg.arch, Architecture::Qwen2);
        assert_eq!((cfg.head_dim, cfg.context_length), (64, 32768));
        assert!(cfg.tied_embeddings && cfg.rope_neox);
        assert_eq!(hf.eos_token_id, Some(TokenIds::One(151643)));
    }

    #[test]
    fn mistral_maps_to_llama_and_its_window_slides_every_layer() {
        let text = r#"{"architectures": ["MistralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "max_position_embeddings": 32768, "sliding_window": 4096, "vocab_size": 32000}"#;
        let cfg = HfConfig::parse(text).unwrap().to_model_config("m").unwrap();
        assert_eq!(cfg.arch, Architecture::Llama);
        assert_eq!((cfg.context_length, cfg.sliding_window), (32768, 4096));
        assert!(cfg.layer_kinds.iter().all(|k| k.sliding && k.rope));
        assert_eq!(cfg.attention_params(0).window, 4096);
    }

    #[test]
    fn transformers_5_rope_parameters() {
        let v5 = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 512,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;
        let cfg = HfConfig::parse(v5).unwrap().to_model_config("t").unwrap();
        assert_eq!(cfg.rope_base, 500000.0);
        assert!(matches!(cfg.rope_scaling, RopeScaling::Llama3 { .. }), "{:?}", cfg.rope_scaling);
        let plain = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 512, "rope_parameters": {"rope_type": "default", "rope_theta": 20000.0}}"#;
        let cfg = HfConfig::parse(plain).unwrap().to_model_config("t").unwrap();
        assert_eq!((cfg.rope_base, &cfg.rope_scaling), (20000.0, &RopeScaling::None));
    }

    #[test]
    fn missing_fields_default_or_are_named() {
        let text = r#"{"model_type": "llama", "hidden_size": 256, "intermediate_size": 768,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300}"#;
        let cfg = HfConfig::parse(text).unwrap().to_model_config("tiny").unwrap();
        assert_eq!((cfg.kv_heads, cfg.head_dim, cfg.context_length), (4, 64, DEFAULT_MAX_POSITIONS));
        assert_eq!((cfg.norm_eps, cfg.rope_base), (1e-6, 10_000.0));
        assert!(!cfg.tied_embeddings);
        let no_vocab = r#"{"model_type": "llama", "hidden_size": 256, "intermediate_size": 768,
            "num_hidden_layers": 2, "num_attention_heads": 4}"#;
        match HfConfig::parse(no_vocab).unwrap().to_model_config("t") {
            Err(ConfigError::MissingHfField("vocab_size")) => {}
            other => panic!("{other:?}"),
        }
        assert!(HfConfig::parse(r#"{"hidden_size": -1}"#).is_err());
        let explicit_head_dim = r#"{"model_type": "llama", "hidden_size": 256, "head_dim": 64, "intermediate_size": 768,
            "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 300}"#;
        let cfg = HfConfig::parse(explicit_head_dim).unwrap().to_model_config("t").unwrap();
        assert_eq!((cfg.q_dim(), cfg.kv_dim()), (512, 128));
    }

    #[test]
    fn unknown_architecture_is_named() {
        let text = r#"{"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 256}"#;
        let err = HfConfig::parse(text).unwrap().to_model_config("x").unwrap_err();
        assert!(matches!(&err, ConfigError::UnsupportedHfArchitecture(a) if a == "GPTNeoXForCausalLM"), "{err}");
        assert!(err.to_string().contains("GPTNeoXForCausalLM"));
        assert!(HfConfig::parse("{}").unwrap().architecture().is_err());
    }

    #[test]
    fn rope_scaling_variants() {
        let parse = |s: &str| parse_rope_scaling(Some(&serde_json::from_str::<Value>(s).unwrap()));
        assert_eq!(parse("null").unwrap(), RopeScaling::None);
        assert_eq!(parse(r#"{"rope_type": "default"}"#).unwrap(), RopeScaling::None);
        assert_eq!(parse(r#"{"type": "linear", "factor": 4.0}"#).unwrap(), RopeScaling::Linear { factor: 4.0 });
        let llama31 = parse(r#"{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}"#)
        .unwrap();
        assert_eq!(llama31, RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_context: 8192 });
        assert!(parse(r#"{"rope_type": "yarn", "factor": 4.0}"#).is_err());
        assert!(parse(r#"{"rope_type": "linear", "factor": -1}"#).is_err());
        assert!(parse(r#"[1, 2]"#).is_err());

        // The factors llama.cpp's converter writes for Llama 3.1 (rope_theta 500000, head 128):
        // high frequencies untouched, low ones divided by 8, a smooth band between.
        let f = llama31.llama3_factors(500_000.0, 128).unwrap();
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]), "{f:?}");
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0));
        let cfg = HfConfig {
            rope_scaling: Some(serde_json::from_str(r#"{"rope_type": "llama3", "factor": 8.0}"#).unwrap()),
            ..HfConfig::parse(LLAMA3_8B).unwrap()
        };
        let cfg = cfg.to_model_config("x").unwrap();
        let rope = cfg.rope_params(false, None);
        assert!(rope.neox);
        assert_eq!((rope.freq_factors[0], rope.freq_factors[63]), (1.0, 8.0));
        assert_eq!(rope.theta_scale, 500_000f32.powf(-2.0 / 128.0));
    }

    #[test]
    fn tokenizer_config_variants() {
        let plain = TokenizerConfig::parse(r#"{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true,
            "chat_template": "{{ x }}"}"#)
        .unwrap();
        assert_eq!((plain.bos_token(), plain.eos_token(), plain.add_bos_token), (Some("<s>"), Some("</s>"), Some(true)));
        assert_eq!(plain.chat_template(), Some("{{ x }}"));

        let objects = TokenizerConfig::parse(r#"{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
            "eos_token": {"content": "</s>", "special": true}, "unk_token": null,
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#)
        .unwrap();
        assert_eq!((objects.bos_token(), objects.eos_token()), (Some("<s>"), Some("</s>")));
        assert_eq!(objects.chat_template(), Some("D"));
        assert_eq!(objects.add_bos_token, None);

        let none = TokenizerConfig::parse(r#"{"bos_token": null, "chat_template": [{"name": "rag", "template": "R"}]}"#).unwrap();
        assert_eq!((none.bos_token(), none.chat_template()), (None, None));
        assert!(TokenizerConfig::parse(r#"{"bos_token": 5}"#).is_err());

        let gen = GenerationConfig::parse(r#"{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}"#).unwrap();
        assert_eq!(gen.eos_token_id.unwrap().to_vec(), vec![128001, 128008, 128009]);
        assert_eq!(gen.bos_token_id.and_then(|b| b.first()), Some(128000));
    }
}

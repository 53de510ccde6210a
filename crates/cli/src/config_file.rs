//! `rill serve --config FILE`: the same settings as the command-line flags, in TOML, with
//! per-model engine overrides. See `configs/rill.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::options::{KvDTypeArg, ModelArgs, SpeculationArg};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub admin_port: Option<u16>,
    pub models_root: Option<PathBuf>,
    pub max_queue: Option<usize>,
    pub max_stored_responses: Option<usize>,
    pub api_keys_file: Option<PathBuf>,
    pub admin_host: Option<String>,
    pub metrics_require_key: Option<bool>,
    pub request_timeout: Option<f64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub header_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub drain_timeout: Option<u64>,
    /// Seconds idle before a model's weights and KV pool are freed (default for every model).
    pub keep_alive: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub allow_eviction: Option<bool>,
    pub max_batch_file_bytes: Option<usize>,
    pub batch_concurrency: Option<usize>,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
}

/// Engine options; every field mirrors the flag of the same name.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub threads: Option<usize>,
    pub kv_cache_tokens: Option<usize>,
    pub kv_cache_bytes: Option<usize>,
    pub kv_dtype: Option<String>,
    pub max_num_batched_tokens: Option<usize>,
    pub max_num_seqs: Option<usize>,
    /// `"off"` or `"ngram"`.
    pub speculation: Option<String>,
    pub num_speculative_tokens: Option<u16>,
    /// `"fast"` or `"ggml"`.
    pub attention: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    /// Several entries may share a name with different versions (`chat@v1`, `chat@v2`).
    pub version: Option<String>,
    pub keep_alive: Option<u64>,
    /// Never evicted to make room for another model (with `allow_eviction`).
    pub pinned: Option<bool>,
    pub path: PathBuf,
    /// Overrides of `[engine]` for this model.
    #[serde(flatten)]
    pub engine: EngineConfig,
}

impl ModelEntry {
    /// `name` or `name@version`.
    pub fn id(&self) -> String {
        match &self.version {
            Some(v) => format!("{}@{v}", self.name),
            None => self.name.clone(),
        }
    }
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<ConfigFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg: ConfigFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if cfg.models.is_empty() {
            return Err(format!("{}: no [[models]] entries", path.display()));
        }
        Ok(cfg)
    }
}

impl EngineConfig {
    /// `base` with this config's values applied on top.
    pub fn apply(&self, base: &ModelArgs) -> Result<ModelArgs, String> {
        let mut a = base.clone();
        a.threads = self.threads.unwrap_or(a.threads);
        if self.kv_cache_tokens.is_some() || self.kv_cache_bytes.is_some() {
            a.kv_cache_tokens = self.kv_cache_tokens;
            a.kv_cache_bytes = if self.kv_cache_tokens.is_some() { None } else { self.kv_cache_bytes };
        }
        a.kv_dtype = match self.kv_dtype.as_deref() {
            None => a.kv_dtype,
            Some("f16") => KvDTypeArg::F16,
            Some("f32") => KvDTypeArg::F32,
            Some(other) => return Err(format!("kv_dtype must be \"f16\" or \"f32\", got {other:?}")),
        };
        a.max_num_batched_tokens = self.max_num_batched_tokens.unwrap_or(a.max_num_batched_tokens);
        a.max_num_seqs = self.max_num_seqs.unwrap_or(a.max_num_seqs);
        a.speculation = match self.speculation.as_deref() {
            None => a.speculation,
            Some("off") => SpeculationArg::Off,
            Some("ngram") => SpeculationArg::Ngram,
            Some(other) => return Err(format!("speculation must be \"off\" or \"ngram\", got {other:?}")),
        };
        match self.num_speculative_tokens {
            Some(n @ 1..=16) => a.num_speculative_tokens = n,
            Some(n) => return Err(format!("num_speculative_tokens must be 1 to 16, got {n}")),
            None => {}
        }
        if let Some(attention) = &self.attention {
            a.attention = attention.parse()?;
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ModelArgs {
        ModelArgs::default()
    }

    #[test]
    fn the_shipped_example_parses_and_overrides_apply() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/rill.toml");
        let cfg = ConfigFile::read(&path).unwrap();
        assert_eq!(cfg.port, Some(8080));
        let engine = cfg.engine.apply(&defaults()).unwrap();
        let model = cfg.models[0].engine.apply(&engine).unwrap();
        assert_eq!(model.kv_cache_tokens, Some(16384));
        assert_eq!(cfg.models[0].name, "smollm2");
    }

    #[test]
    fn entries_with_a_version_name_that_version() {
        let cfg: ConfigFile = toml::from_str("[[models]]\nname='chat'\npath='a'\n[[models]]\nname='chat'\nversion='v2'\npath='b'").unwrap();
        assert_eq!(cfg.models.iter().map(ModelEntry::id).collect::<Vec<_>>(), ["chat", "chat@v2"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(toml::from_str::<ConfigFile>("prot = 1\n[[models]]\nname='a'\npath='b'").is_err());
        let e = EngineConfig { kv_dtype: Some("f8".into()), ..Default::default() };
        assert!(e.apply(&defaults()).is_err());
    }
}

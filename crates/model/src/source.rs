//! Where a model comes from: a GGUF file, a Hugging Face directory, or a config to fill with
//! random weights. `loader::load_source` takes any of them to the same `LoadedModel`.

use std::path::{Path, PathBuf};

use rill_backend::DType;

use crate::hf::CONFIG_FILE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A `.gguf` file.
    Gguf(PathBuf),
    /// A Hugging Face model directory (config.json, safetensors, tokenizer.json).
    HfDir(PathBuf),
    /// A Hugging Face `config.json`-style file, with seeded random weights in `dtype`.
    Dummy { config: PathBuf, dtype: DType, seed: u64 },
}

/// How `--model PATH` is to be read (`--load-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadFormat {
    /// A directory holding `config.json` is a Hugging Face model, anything else GGUF.
    #[default]
    Auto,
    Gguf,
    Hf,
    /// PATH is a config JSON; the weights are random.
    Dummy,
}

impl LoadFormat {
    pub const NAMES: [&'static str; 4] = ["auto", "gguf", "hf", "dummy"];

    pub fn name(self) -> &'static str {
        match self {
            LoadFormat::Auto => "auto",
            LoadFormat::Gguf => "gguf",
            LoadFormat::Hf => "hf",
            LoadFormat::Dummy => "dummy",
        }
    }
}

impl std::str::FromStr for LoadFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LoadFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(LoadFormat::Auto),
            "gguf" => Ok(LoadFormat::Gguf),
            "hf" | "safetensors" => Ok(LoadFormat::Hf),
            "dummy" => Ok(LoadFormat::Dummy),
            _ => Err(format!("unknown load format {s:?} (one of: {})", LoadFormat::NAMES.join(", "))),
        }
    }
}

impl ModelSource {
    /// A directory with a `config.json` is a Hugging Face model; anything else is taken for a
    /// GGUF file (whose reader reports what is wrong with it).
    pub fn detect(path: &Path) -> ModelSource {
        if path.is_dir() && path.join(CONFIG_FILE).is_file() {
            ModelSource::HfDir(path.to_path_buf())
        } else {
            ModelSource::Gguf(path.to_path_buf())
        }
    }

    /// `path` read as `format`; `dtype` and `seed` only matter for dummy weights.
    pub fn from_format(format: LoadFormat, path: &Path, dtype: DType, seed: u64) -> ModelSource {
        match format {
            LoadFormat::Auto => ModelSource::detect(path),
            LoadFormat::Gguf => ModelSource::Gguf(path.to_path_buf()),
            LoadFormat::Hf => ModelSource::HfDir(path.to_path_buf()),
            LoadFormat::Dummy => ModelSource::Dummy { config: path.to_path_buf(), dtype, seed },
        }
    }

    /// The file or directory named on the command line.
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p,
            ModelSource::Dummy { config, .. } => config,
        }
    }

    /// For messages: `gguf:PATH`, `hf:DIR`, `dummy:CONFIG (bf16, seed 0)`.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Gguf(p) => format!("gguf:{}", p.display()),
            ModelSource::HfDir(p) => format!("hf:{}", p.display()),
            ModelSource::Dummy { config, dtype, seed } => {
                format!("dummy:{} ({}, seed {seed})", config.display(), dtype.name().to_ascii_lowercase())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_detection_looks_for_config_json() {
        for name in LoadFormat::NAMES {
            assert_eq!(name.parse::<LoadFormat>().unwrap().name(), name);
        }
        assert!("onnx".parse::<LoadFormat>().is_err());
        let dir = std::env::temp_dir().join(format!("rill-source-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ModelSource::detect(&dir), ModelSource::Gguf(dir.clone()));
        std::fs::write(dir.join(CONFIG_FILE), "{}").unwrap();
        assert_eq!(ModelSource::detect(&dir), ModelSource::HfDir(dir.clone()));
        assert_eq!(ModelSource::detect(&dir.join(CONFIG_FILE)), ModelSource::Gguf(dir.join(CONFIG_FILE)));
        std::fs::remove_dir_all(&dir).unwrap();
        let d = ModelSource::from_format(LoadFormat::Dummy, Path::new("c.json"), DType::Q4K, 3);
        assert_eq!(d, ModelSource::Dummy { config: "c.json".into(), dtype: DType::Q4K, seed: 3 });
        assert_eq!(d.describe(), "dummy:c.json (q4_k, seed 3)");
        assert_eq!(d.path(), Path::new("c.json"));
    }
}

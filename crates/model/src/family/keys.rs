//! A GGUF file's hyperparameters under its architecture's prefix (`gemma3.attention.…`).

use crate::config::ConfigError;
use crate::gguf::{GgufFile, MetaValue};

pub struct GgufKeys<'a> {
    pub file: &'a GgufFile,
    arch: &'a str,
}

/// A per-layer pattern key: one flag per layer, or a period.
pub enum Pattern {
    PerLayer(Vec<bool>),
    Period(usize),
}

impl<'a> GgufKeys<'a> {
    pub fn new(file: &'a GgufFile, arch: &'a str) -> GgufKeys<'a> {
        GgufKeys { file, arch }
    }

    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    pub fn usize(&self, k: &str) -> Result<Option<usize>, ConfigError> {
        match self.file.get_u64(&self.key(k))? {
            None => Ok(None),
            Some(v) => usize::try_from(v).map(Some).map_err(|_| ConfigError::Invalid(format!("{} = {v}", self.key(k)))),
        }
    }

    pub fn required(&self, k: &str) -> Result<usize, ConfigError> {
        self.usize(k)?.ok_or_else(|| ConfigError::Missing(self.key(k)))
    }

    pub fn f32(&self, k: &str) -> Result<Option<f32>, ConfigError> {
        Ok(self.file.get_f64(&self.key(k))?.map(|v| v as f32))
    }

    pub fn str(&self, k: &str) -> Result<Option<&'a str>, ConfigError> {
        Ok(self.file.get_str(&self.key(k))?)
    }

    /// `k` as llama.cpp's `load_swa_pattern` reads it: an array of per-layer flags (bool or
    /// integer, non-zero = set), or a scalar period.
    pub fn pattern(&self, k: &str, layers: usize) -> Result<Option<Pattern>, ConfigError> {
        let key = self.key(k);
        match self.file.get(&key) {
            None => Ok(None),
            Some(MetaValue::Array(items)) => {
                let flags: Option<Vec<bool>> = items.iter().map(|v| if let MetaValue::Bool(b) = v { Some(*b) } else { v.as_u64().map(|n| n != 0) }).collect();
                match flags {
                    Some(f) if f.len() == layers => Ok(Some(Pattern::PerLayer(f))),
                    _ => Err(ConfigError::Invalid(format!("{key}: expected {layers} per-layer flags"))),
                }
            }
            Some(v) => v.as_u64().map(|p| Some(Pattern::Period(p as usize))).ok_or_else(|| ConfigError::Invalid(format!("{key}: expected flags or a period"))),
        }
    }
}

impl Pattern {
    /// Which layers slide: llama.cpp's `il % period < period - 1` (the last of each period is
    /// global; period 0: every layer slides).
    pub fn sliding(&self, layers: usize) -> Vec<bool> {
        match self {
            Pattern::PerLayer(f) => f.clone(),
            Pattern::Period(0) => vec![true; layers],
            Pattern::Period(p) => (0..layers).map(|il| il % p < p - 1).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_leave_the_last_layer_of_each_global() {
        assert_eq!(Pattern::Period(2).sliding(5), [true, false, true, false, true]);
        assert_eq!(Pattern::Period(6).sliding(7), [true, true, true, true, true, false, true]);
        assert_eq!(Pattern::Period(0).sliding(2), [true, true]);
        assert_eq!(Pattern::Period(1).sliding(2), [false, false]);
    }
}

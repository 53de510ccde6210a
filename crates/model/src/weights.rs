//! Loading a Llama-family model's tensors from GGUF into a backend, by ggml's tensor names.
//! Matrices stay in the file's dtype (and, on the CPU, in the mmap); small vectors (norms,
//! biases) are converted to f32.

use rill_backend::{quant, Backend, BackendError, MatrixSource};

use crate::config::{Architecture, ModelConfig};
use crate::gguf::{GgufError, GgufFile, TensorInfo};

pub struct LayerWeights<B: Backend> {
    pub attn_norm: B::Buffer,
    pub wq: B::Matrix,
    pub wk: B::Matrix,
    pub wv: B::Matrix,
    /// q/k/v biases (Qwen2).
    pub bq: Option<B::Buffer>,
    pub bk: Option<B::Buffer>,
    pub bv: Option<B::Buffer>,
    pub wo: B::Matrix,
    pub ffn_norm: B::Buffer,
    pub w_gate: B::Matrix,
    pub w_up: B::Matrix,
    pub w_down: B::Matrix,
}

pub struct ModelWeights<B: Backend> {
    pub token_embd: B::Matrix,
    pub layers: Vec<LayerWeights<B>>,
    pub output_norm: B::Buffer,
    /// `None` when the embedding is tied: the output projection is `token_embd`.
    pub output: Option<B::Matrix>,
    /// Llama 3 rope frequency factors.
    pub rope_freqs: Option<Vec<f32>>,
}

impl<B: Backend> ModelWeights<B> {
    pub fn output_matrix(&self) -> &B::Matrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("model file lacks tensor {0:?}")]
    Missing(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    Shape { name: String, found: Vec<u64>, expected: Vec<u64> },
    #[error("tensor {name:?}: {source}")]
    Backend { name: String, source: BackendError },
    #[error("tensor {name:?}: {problem}")]
    Convert { name: String, problem: String },
}

struct Loader<'a, B: Backend> {
    file: &'a GgufFile,
    backend: &'a B,
    /// Called after each tensor with (loaded, total) for progress reporting.
    progress: &'a mut dyn FnMut(usize, usize),
    loaded: usize,
    total: usize,
}

impl<B: Backend> Loader<'_, B> {
    fn info(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo, WeightsError> {
        let info = self.file.tensor_info(name).ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        let expected: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
        if info.shape != expected {
            return Err(WeightsError::Shape { name: name.into(), found: info.shape.clone(), expected });
        }
        Ok(info)
    }

    fn tick(&mut self) {
        self.loaded += 1;
        (self.progress)(self.loaded, self.total);
    }

    /// A `[rows, cols]` matrix (ggml shape `[cols, rows]`).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<B::Matrix, WeightsError> {
        let info = self.info(name, &[cols, rows])?;
        let source = MatrixSource { name: name.into(), dtype: info.dtype, rows, cols, bytes: self.file.tensor_data(info) };
        let m = self.backend.upload_matrix(source).map_err(|source| WeightsError::Backend { name: name.into(), source })?;
        self.tick();
        Ok(m)
    }

    fn host_vector(&self, name: &str, len: usize) -> Result<Vec<f32>, WeightsError> {
        let info = self.info(name, &[len])?;
        let mut out = vec![0.0; len];
        quant::dequantize_row(info.dtype, &self.file.tensor_data(info), &mut out)
            .map_err(|e| WeightsError::Convert { name: name.into(), problem: e.to_string() })?;
        Ok(out)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<B::Buffer, WeightsError> {
        let host = self.host_vector(name, len)?;
        let backend_err = |source| WeightsError::Backend { name: name.into(), source };
        let mut buf = self.backend.alloc(len).map_err(backend_err)?;
        self.backend.write(&mut buf, &host).map_err(backend_err)?;
        self.tick();
        Ok(buf)
    }

    fn optional_vector(&mut self, name: &str, len: usize) -> Result<Option<B::Buffer>, WeightsError> {
        match self.file.tensor_info(name) {
            Some(_) => self.vector(name, len).map(Some),
            None => Ok(None),
        }
    }
}

impl<B: Backend> ModelWeights<B> {
    pub fn load(file: &GgufFile, cfg: &ModelConfig, backend: &B, progress: &mut dyn FnMut(usize, usize)) -> Result<Self, WeightsError> {
        let total = file.tensors().len();
        let mut l = Loader { file, backend, progress, loaded: 0, total };
        let (d, q, kv, ff) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden);
        let token_embd = l.matrix("token_embd.weight", cfg.vocab_size, d)?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            let biased = cfg.arch == Architecture::Qwen2;
            let bias = |l: &mut Loader<'_, B>, s: &str, len| if biased { l.optional_vector(&n(s), len) } else { Ok(None) };
            layers.push(LayerWeights {
                attn_norm: l.vector(&n("attn_norm.weight"), d)?,
                wq: l.matrix(&n("attn_q.weight"), q, d)?,
                wk: l.matrix(&n("attn_k.weight"), kv, d)?,
                wv: l.matrix(&n("attn_v.weight"), kv, d)?,
                bq: bias(&mut l, "attn_q.bias", q)?,
                bk: bias(&mut l, "attn_k.bias", kv)?,
                bv: bias(&mut l, "attn_v.bias", kv)?,
                wo: l.matrix(&n("attn_output.weight"), d, q)?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), d)?,
                w_gate: l.matrix(&n("ffn_gate.weight"), ff, d)?,
                w_up: l.matrix(&n("ffn_up.weight"), ff, d)?,
                w_down: l.matrix(&n("ffn_down.weight"), d, ff)?,
            });
        }
        let output_norm = l.vector("output_norm.weight", d)?;
        let output = if cfg.tied_embeddings { None } else { Some(l.matrix("output.weight", cfg.vocab_size, d)?) };
        let rope_freqs = match file.tensor_info("rope_freqs.weight") {
            Some(_) => Some(l.host_vector("rope_freqs.weight", cfg.rope_dim / 2)?),
            None => None,
        };
        Ok(ModelWeights { token_embd, layers, output_norm, output, rope_freqs })
    }
}

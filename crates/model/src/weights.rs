//! Loading a Llama-family model's tensors into a backend. The loader asks a [`TensorSource`]
//! for each weight by its role ([`Weight`]); a source maps roles to its own names (ggml's for
//! GGUF, Hugging Face's for safetensors, none for dummy weights) and checks shapes and types in
//! its own conventions. Matrices stay in the source's dtype (and, on the CPU, in the mmap);
//! small vectors (norms, biases) are converted to f32.

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
    /// Llama 3 rope frequency factors (GGUF's `rope_freqs.weight`).
    pub rope_freqs: Option<Vec<f32>>,
    /// What the matrices every step multiplies (all layers' and the output projection) hold.
    pub step_matrices: MatrixSize,
}

/// Bytes and elements of a set of weight matrices (for bandwidth and FLOP accounting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatrixSize {
    pub bytes: usize,
    pub elements: usize,
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
    #[error("tensor {name:?} has element type {found}; supported: {supported}")]
    DType { name: String, found: String, supported: &'static str },
    #[error("tensor {name:?}: {source}")]
    Backend { name: String, source: BackendError },
    #[error("tensor {name:?}: {problem}")]
    Convert { name: String, problem: String },
}

/// What a weight is for, independent of how a file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weight {
    TokenEmbd,
    OutputNorm,
    /// The output projection (absent when tied to the embedding).
    Output,
    Layer(usize, LayerWeight),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerWeight {
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

impl LayerWeight {
    pub const ALL: [LayerWeight; 12] = [
        LayerWeight::AttnNorm,
        LayerWeight::Q,
        LayerWeight::K,
        LayerWeight::V,
        LayerWeight::QBias,
        LayerWeight::KBias,
        LayerWeight::VBias,
        LayerWeight::O,
        LayerWeight::FfnNorm,
        LayerWeight::Gate,
        LayerWeight::Up,
        LayerWeight::Down,
    ];

    /// The name within a layer in GGUF (`blk.N.`) and in Hugging Face checkpoints
    /// (`model.layers.N.`).
    fn names(self) -> (&'static str, &'static str) {
        match self {
            LayerWeight::AttnNorm => ("attn_norm.weight", "input_layernorm.weight"),
            LayerWeight::Q => ("attn_q.weight", "self_attn.q_proj.weight"),
            LayerWeight::K => ("attn_k.weight", "self_attn.k_proj.weight"),
            LayerWeight::V => ("attn_v.weight", "self_attn.v_proj.weight"),
            LayerWeight::QBias => ("attn_q.bias", "self_attn.q_proj.bias"),
            LayerWeight::KBias => ("attn_k.bias", "self_attn.k_proj.bias"),
            LayerWeight::VBias => ("attn_v.bias", "self_attn.v_proj.bias"),
            LayerWeight::O => ("attn_output.weight", "self_attn.o_proj.weight"),
            LayerWeight::FfnNorm => ("ffn_norm.weight", "post_attention_layernorm.weight"),
            LayerWeight::Gate => ("ffn_gate.weight", "mlp.gate_proj.weight"),
            LayerWeight::Up => ("ffn_up.weight", "mlp.up_proj.weight"),
            LayerWeight::Down => ("ffn_down.weight", "mlp.down_proj.weight"),
        }
    }
}

impl Weight {
    /// ggml's tensor name, as in GGUF files.
    pub fn gguf_name(self) -> String {
        match self {
            Weight::TokenEmbd => "token_embd.weight".into(),
            Weight::OutputNorm => "output_norm.weight".into(),
            Weight::Output => "output.weight".into(),
            Weight::Layer(i, w) => format!("blk.{i}.{}", w.names().0),
        }
    }

    /// The Hugging Face `transformers` name (Llama, Mistral, Qwen2).
    pub fn hf_name(self) -> String {
        match self {
            Weight::TokenEmbd => "model.embed_tokens.weight".into(),
            Weight::OutputNorm => "model.norm.weight".into(),
            Weight::Output => "lm_head.weight".into(),
            Weight::Layer(i, w) => format!("model.layers.{i}.{}", w.names().1),
        }
    }

    /// Whether this weight is a matrix (rather than a vector).
    pub fn is_matrix(self) -> bool {
        match self {
            Weight::TokenEmbd | Weight::Output => true,
            Weight::OutputNorm => false,
            Weight::Layer(_, w) => matches!(
                w,
                LayerWeight::Q | LayerWeight::K | LayerWeight::V | LayerWeight::O | LayerWeight::Gate | LayerWeight::Up | LayerWeight::Down
            ),
        }
    }

    /// `(rows, cols)` of a matrix, or `(len, 1)` of a vector, for `cfg`.
    pub fn dims(self, cfg: &ModelConfig) -> (usize, usize) {
        let (d, q, kv, ff, vocab) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden, cfg.vocab_size);
        match self {
            Weight::TokenEmbd | Weight::Output => (vocab, d),
            Weight::OutputNorm => (d, 1),
            Weight::Layer(_, w) => match w {
                LayerWeight::AttnNorm | LayerWeight::FfnNorm => (d, 1),
                LayerWeight::Q => (q, d),
                LayerWeight::K | LayerWeight::V => (kv, d),
                LayerWeight::QBias => (q, 1),
                LayerWeight::KBias | LayerWeight::VBias => (kv, 1),
                LayerWeight::O => (d, q),
                LayerWeight::Gate | LayerWeight::Up => (ff, d),
                LayerWeight::Down => (d, ff),
            },
        }
    }

    /// Every weight `cfg` may load, in load order; biases and the output projection are
    /// optional (see [`TensorSource::contains`]).
    pub fn all(cfg: &ModelConfig) -> Vec<Weight> {
        let mut out = vec![Weight::TokenEmbd];
        for i in 0..cfg.layers {
            out.extend(LayerWeight::ALL.iter().map(|&w| Weight::Layer(i, w)));
        }
        out.push(Weight::OutputNorm);
        out.push(Weight::Output);
        out
    }
}

/// Where weights come from: a GGUF file, safetensors shards, or a random generator.
pub trait TensorSource {
    /// The name the source uses for `w`, for messages.
    fn name(&self, w: Weight) -> String;
    /// Whether the source holds `w` (asked only for optional weights: biases, output).
    fn contains(&self, w: Weight) -> bool;
    /// `w` as `rows` outputs of `cols` inputs, shape and type checked.
    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<MatrixSource, WeightsError>;
    /// `w` as `len` f32 values.
    fn vector(&self, w: Weight, len: usize) -> Result<Vec<f32>, WeightsError>;
    /// Per-frequency rope factors stored with the weights (GGUF's `rope_freqs.weight`).
    fn rope_freqs(&self, _len: usize) -> Result<Option<Vec<f32>>, WeightsError> {
        Ok(None)
    }
}

/// GGUF tensors by ggml name; matrices are `[cols, rows]` in ggml's order.
pub struct GgufTensors<'a>(pub &'a GgufFile);

impl GgufTensors<'_> {
    fn info(&self, name: &str, expected: &[usize]) -> Result<&TensorInfo, WeightsError> {
        let info = self.0.tensor_info(name).ok_or_else(|| WeightsError::Missing(name.to_string()))?;
        let expected: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
        if info.shape != expected {
            return Err(WeightsError::Shape { name: name.into(), found: info.shape.clone(), expected });
        }
        Ok(info)
    }

    fn host_vector(&self, name: &str, len: usize) -> Result<Vec<f32>, WeightsError> {
        let info = self.info(name, &[len])?;
        let mut out = vec![0.0; len];
        quant::dequantize_row(info.dtype, &self.0.tensor_data(info), &mut out)
            .map_err(|e| WeightsError::Convert { name: name.into(), problem: e.to_string() })?;
        Ok(out)
    }
}

impl TensorSource for GgufTensors<'_> {
    fn name(&self, w: Weight) -> String {
        w.gguf_name()
    }

    fn contains(&self, w: Weight) -> bool {
        self.0.tensor_info(&w.gguf_name()).is_some()
    }

    fn matrix(&self, w: Weight, rows: usize, cols: usize) -> Result<MatrixSource, WeightsError> {
        let name = w.gguf_name();
        let info = self.info(&name, &[cols, rows])?;
        Ok(MatrixSource { dtype: info.dtype, rows, cols, bytes: self.0.tensor_data(info), name })
    }

    fn vector(&self, w: Weight, len: usize) -> Result<Vec<f32>, WeightsError> {
        self.host_vector(&w.gguf_name(), len)
    }

    fn rope_freqs(&self, len: usize) -> Result<Option<Vec<f32>>, WeightsError> {
        match self.0.tensor_info("rope_freqs.weight") {
            Some(_) => self.host_vector("rope_freqs.weight", len).map(Some),
            None => Ok(None),
        }
    }
}

struct Loader<'a, B: Backend, S: TensorSource + ?Sized> {
    source: &'a S,
    backend: &'a B,
    cfg: &'a ModelConfig,
    /// Called after each tensor with (loaded, total) for progress reporting.
    progress: &'a mut dyn FnMut(usize, usize),
    loaded: usize,
    total: usize,
    /// Sizes of the matrices loaded so far, the token embedding apart.
    step_matrices: MatrixSize,
    token_embd: MatrixSize,
}

impl<B: Backend, S: TensorSource + ?Sized> Loader<'_, B, S> {
    fn tick(&mut self) {
        self.loaded += 1;
        (self.progress)(self.loaded, self.total);
    }

    fn matrix(&mut self, w: Weight) -> Result<B::Matrix, WeightsError> {
        let (rows, cols) = w.dims(self.cfg);
        let source = self.source.matrix(w, rows, cols)?;
        let size = MatrixSize { bytes: source.bytes.len(), elements: rows * cols };
        let sum = if w == Weight::TokenEmbd { &mut self.token_embd } else { &mut self.step_matrices };
        sum.bytes += size.bytes;
        sum.elements += size.elements;
        let name = source.name.clone();
        let m = self.backend.upload_matrix(source).map_err(|source| WeightsError::Backend { name, source })?;
        self.tick();
        Ok(m)
    }

    fn vector(&mut self, w: Weight) -> Result<B::Buffer, WeightsError> {
        let (len, _) = w.dims(self.cfg);
        let host = self.source.vector(w, len)?;
        let backend_err = |source| WeightsError::Backend { name: self.source.name(w), source };
        let mut buf = self.backend.alloc(len).map_err(backend_err)?;
        self.backend.write(&mut buf, &host).map_err(backend_err)?;
        self.tick();
        Ok(buf)
    }

    /// q/k/v biases: only Qwen2 has them, and only when the source does.
    fn bias(&mut self, w: Weight) -> Result<Option<B::Buffer>, WeightsError> {
        if self.cfg.arch == Architecture::Qwen2 && self.source.contains(w) {
            self.vector(w).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl<B: Backend> ModelWeights<B> {
    /// Loads a GGUF file's weights.
    pub fn load(file: &GgufFile, cfg: &ModelConfig, backend: &B, progress: &mut dyn FnMut(usize, usize)) -> Result<Self, WeightsError> {
        Self::load_from(&GgufTensors(file), cfg, backend, progress)
    }

    /// Loads every weight `cfg` needs from `source`; the output projection is loaded unless
    /// `cfg.tied_embeddings`.
    pub fn load_from<S: TensorSource + ?Sized>(source: &S, cfg: &ModelConfig, backend: &B, progress: &mut dyn FnMut(usize, usize)) -> Result<Self, WeightsError> {
        let total = Weight::all(cfg)
            .into_iter()
            .filter(|&w| match w {
                Weight::Output => !cfg.tied_embeddings,
                Weight::Layer(_, LayerWeight::QBias | LayerWeight::KBias | LayerWeight::VBias) => cfg.arch == Architecture::Qwen2 && source.contains(w),
                _ => true,
            })
            .count();
        let mut l = Loader { source, backend, cfg, progress, loaded: 0, total, step_matrices: MatrixSize::default(), token_embd: MatrixSize::default() };
        let token_embd = l.matrix(Weight::TokenEmbd)?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let w = |lw| Weight::Layer(i, lw);
            layers.push(LayerWeights {
                attn_norm: l.vector(w(LayerWeight::AttnNorm))?,
                wq: l.matrix(w(LayerWeight::Q))?,
                wk: l.matrix(w(LayerWeight::K))?,
                wv: l.matrix(w(LayerWeight::V))?,
                bq: l.bias(w(LayerWeight::QBias))?,
                bk: l.bias(w(LayerWeight::KBias))?,
                bv: l.bias(w(LayerWeight::VBias))?,
                wo: l.matrix(w(LayerWeight::O))?,
                ffn_norm: l.vector(w(LayerWeight::FfnNorm))?,
                w_gate: l.matrix(w(LayerWeight::Gate))?,
                w_up: l.matrix(w(LayerWeight::Up))?,
                w_down: l.matrix(w(LayerWeight::Down))?,
            });
        }
        let output_norm = l.vector(Weight::OutputNorm)?;
        let output = if cfg.tied_embeddings { None } else { Some(l.matrix(Weight::Output)?) };
        let rope_freqs = source.rope_freqs(cfg.rope_dim / 2)?;
        let mut step_matrices = l.step_matrices;
        if cfg.tied_embeddings {
            step_matrices.bytes += l.token_embd.bytes;
            step_matrices.elements += l.token_embd.elements;
        }
        Ok(ModelWeights { token_embd, layers, output_norm, output, rope_freqs, step_matrices })
    }
}

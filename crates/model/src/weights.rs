//! Loading a Llama-family model's tensors into a backend. The loader asks a [`TensorSource`]
//! for each weight by its role ([`Weight`]); a source maps roles to its own names (ggml's for
//! GGUF, Hugging Face's for safetensors, none for dummy weights) and checks shapes and types in
//! its own conventions. Matrices stay in the source's dtype (and, on the CPU, in the mmap);
//! small vectors (norms, biases) are converted to f32.

use rill_backend::{quant, Backend, BackendError, MatrixSource};

use crate::config::ModelConfig;
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
    /// Per-head q/k RMSNorm weights, `[head_dim]` (Qwen3, Gemma 3).
    pub q_norm: Option<B::Buffer>,
    pub k_norm: Option<B::Buffer>,
    pub wo: B::Matrix,
    /// Norm of the attention output before the residual add (Gemma).
    pub post_attn_norm: Option<B::Buffer>,
    pub ffn_norm: B::Buffer,
    pub ffn: FeedForward<B>,
    /// Norm of the feed-forward output before the residual add (Gemma).
    pub post_ffn_norm: Option<B::Buffer>,
}

/// A layer's feed-forward block: one gated FFN, or a mixture of experts.
pub enum FeedForward<B: Backend> {
    Dense { gate: B::Matrix, up: B::Matrix, down: B::Matrix },
    Experts(Box<ExpertWeights<B>>),
}

pub struct ExpertWeights<B: Backend> {
    /// `[experts, hidden]`: one logit per expert.
    pub router: B::Matrix,
    /// Per expert, in the file's order.
    pub gate: Vec<B::Matrix>,
    pub up: Vec<B::Matrix>,
    pub down: Vec<B::Matrix>,
    /// Qwen2-MoE's shared expert: its gate `[1, hidden]` and its FFN.
    pub shared: Option<SharedExpert<B>>,
}

pub struct SharedExpert<B: Backend> {
    pub gate_inp: B::Matrix,
    pub gate: B::Matrix,
    pub up: B::Matrix,
    pub down: B::Matrix,
}

pub struct ModelWeights<B: Backend> {
    pub token_embd: B::Matrix,
    pub layers: Vec<LayerWeights<B>>,
    pub output_norm: B::Buffer,
    /// `None` when the embedding is tied: the output projection is `token_embd`.
    pub output: Option<B::Matrix>,
    /// Per-pair rotary factors stored with the weights (GGUF's `rope_freqs.weight`, Phi-3's
    /// `rope_factors_long/short.weight`).
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

/// Declares the per-layer weights with their names in GGUF (`blk.N.`) and in Hugging Face
/// checkpoints (`model.layers.N.`), in load order: one table, so a weight's names live in one
/// line.
macro_rules! layer_weights {
    ($($(#[$doc:meta])* $variant:ident => $gguf:literal, $hf:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum LayerWeight {
            $($(#[$doc])* $variant,)*
        }

        impl LayerWeight {
            pub const ALL: &[LayerWeight] = &[$(LayerWeight::$variant),*];

            fn table(self) -> (&'static str, &'static str) {
                match self {
                    $(LayerWeight::$variant => ($gguf, $hf),)*
                }
            }
        }
    };
}

layer_weights! {
    AttnNorm => "attn_norm.weight", "input_layernorm.weight";
    Q => "attn_q.weight", "self_attn.q_proj.weight";
    K => "attn_k.weight", "self_attn.k_proj.weight";
    V => "attn_v.weight", "self_attn.v_proj.weight";
    QBias => "attn_q.bias", "self_attn.q_proj.bias";
    KBias => "attn_k.bias", "self_attn.k_proj.bias";
    VBias => "attn_v.bias", "self_attn.v_proj.bias";
    O => "attn_output.weight", "self_attn.o_proj.weight";
    FfnNorm => "ffn_norm.weight", "post_attention_layernorm.weight";
    Gate => "ffn_gate.weight", "mlp.gate_proj.weight";
    Up => "ffn_up.weight", "mlp.up_proj.weight";
    Down => "ffn_down.weight", "mlp.down_proj.weight";
    QNorm => "attn_q_norm.weight", "self_attn.q_norm.weight";
    KNorm => "attn_k_norm.weight", "self_attn.k_norm.weight";
    PostAttnNorm => "post_attention_norm.weight", "post_attention_layernorm.weight";
    PostFfnNorm => "post_ffw_norm.weight", "post_feedforward_layernorm.weight";
    /// Phi-3: q, k and v rows in one matrix.
    Qkv => "attn_qkv.weight", "self_attn.qkv_proj.weight";
    /// Phi-3: gate rows then up rows in one matrix.
    GateUp => "ffn_up.weight", "mlp.gate_up_proj.weight";
    /// Mixture of experts: the router, `[experts, hidden]`.
    Router => "ffn_gate_inp.weight", "mlp.gate.weight";
    /// Every expert's matrix stacked, `[experts, rows, cols]`.
    GateExps => "ffn_gate_exps.weight", "mlp.experts.gate_proj.weight";
    UpExps => "ffn_up_exps.weight", "mlp.experts.up_proj.weight";
    DownExps => "ffn_down_exps.weight", "mlp.experts.down_proj.weight";
    /// Qwen2-MoE's shared expert: its gate's weights (`[hidden]`) and its FFN.
    SharedRouter => "ffn_gate_inp_shexp.weight", "mlp.shared_expert_gate.weight";
    SharedGate => "ffn_gate_shexp.weight", "mlp.shared_expert.gate_proj.weight";
    SharedUp => "ffn_up_shexp.weight", "mlp.shared_expert.up_proj.weight";
    SharedDown => "ffn_down_shexp.weight", "mlp.shared_expert.down_proj.weight";
}

impl LayerWeight {
    /// The name within a layer in GGUF and in Hugging Face checkpoints. Gemma's checkpoints
    /// call the pre-FFN norm what the others call the post-attention one (`post_norms`: the
    /// family has both).
    fn names(self, post_norms: bool) -> (&'static str, &'static str) {
        match self {
            LayerWeight::FfnNorm if post_norms => ("ffn_norm.weight", "pre_feedforward_layernorm.weight"),
            w => w.table(),
        }
    }

    /// A norm weight (Gemma's Hugging Face checkpoints store them offset by -1).
    pub fn is_norm(self) -> bool {
        matches!(self, LayerWeight::AttnNorm | LayerWeight::FfnNorm | LayerWeight::QNorm | LayerWeight::KNorm | LayerWeight::PostAttnNorm | LayerWeight::PostFfnNorm)
    }
}

impl Weight {
    /// ggml's tensor name, as in GGUF files.
    pub fn gguf_name(self) -> String {
        match self {
            Weight::TokenEmbd => "token_embd.weight".into(),
            Weight::OutputNorm => "output_norm.weight".into(),
            Weight::Output => "output.weight".into(),
            Weight::Layer(i, w) => format!("blk.{i}.{}", w.names(false).0),
        }
    }

    /// The Hugging Face `transformers` name, in a family with or without post-norms.
    pub fn hf_name(self, post_norms: bool) -> String {
        match self {
            Weight::TokenEmbd => "model.embed_tokens.weight".into(),
            Weight::OutputNorm => "model.norm.weight".into(),
            Weight::Output => "lm_head.weight".into(),
            Weight::Layer(i, w) => format!("model.layers.{i}.{}", w.names(post_norms).1),
        }
    }

    /// A norm weight.
    pub fn is_norm(self) -> bool {
        match self {
            Weight::OutputNorm => true,
            Weight::Layer(_, w) => w.is_norm(),
            _ => false,
        }
    }

    /// Whether this weight is a matrix (rather than a vector).
    pub fn is_matrix(self) -> bool {
        match self {
            Weight::TokenEmbd | Weight::Output => true,
            Weight::OutputNorm => false,
            Weight::Layer(_, w) => {
                use LayerWeight as L;
                let experts = matches!(w, L::Router | L::GateExps | L::UpExps | L::DownExps | L::SharedRouter | L::SharedGate | L::SharedUp | L::SharedDown);
                experts || matches!(w, L::Q | L::K | L::V | L::O | L::Gate | L::Up | L::Down | L::Qkv | L::GateUp)
            }
        }
    }

    /// `(rows, cols)` of a matrix (of one expert's, for the stacked expert weights), or
    /// `(len, 1)` of a vector, for `cfg`.
    pub fn dims(self, cfg: &ModelConfig) -> (usize, usize) {
        let (d, q, kv, ff, vocab, hd) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden, cfg.vocab_size, cfg.head_dim);
        let (experts, ff_e, ff_s) = cfg.experts.as_ref().map_or((0, 0, 0), |e| (e.route.experts, e.ffn_hidden, e.shared_ffn));
        match self {
            Weight::TokenEmbd | Weight::Output => (vocab, d),
            Weight::OutputNorm => (d, 1),
            Weight::Layer(_, w) => match w {
                LayerWeight::AttnNorm | LayerWeight::FfnNorm | LayerWeight::PostAttnNorm | LayerWeight::PostFfnNorm => (d, 1),
                LayerWeight::QNorm | LayerWeight::KNorm => (hd, 1),
                LayerWeight::Q => (q, d),
                LayerWeight::K | LayerWeight::V => (kv, d),
                LayerWeight::Qkv => (q + 2 * kv, d),
                LayerWeight::QBias => (q, 1),
                LayerWeight::KBias | LayerWeight::VBias => (kv, 1),
                LayerWeight::O => (d, q),
                LayerWeight::Gate | LayerWeight::Up => (ff, d),
                LayerWeight::GateUp => (2 * ff, d),
                LayerWeight::Down => (d, ff),
                LayerWeight::Router => (experts, d),
                LayerWeight::GateExps | LayerWeight::UpExps => (ff_e, d),
                LayerWeight::DownExps => (d, ff_e),
                LayerWeight::SharedRouter => (1, d),
                LayerWeight::SharedGate | LayerWeight::SharedUp => (ff_s, d),
                LayerWeight::SharedDown => (d, ff_s),
            },
        }
    }

    /// Every weight `cfg` loads, in load order; biases and the output projection are loaded
    /// where the source has them (see [`TensorSource::contains`]).
    pub fn all(cfg: &ModelConfig) -> Vec<Weight> {
        let mut out = vec![Weight::TokenEmbd];
        for i in 0..cfg.layers {
            out.extend(LayerWeight::ALL.iter().filter(|&&w| layer_has(cfg, w)).map(|&w| Weight::Layer(i, w)));
        }
        out.push(Weight::OutputNorm);
        if !cfg.tied_embeddings {
            out.push(Weight::Output);
        }
        out
    }
}

/// Whether a weight the family may have is loaded from `source`: biases only where it holds them.
fn in_source<S: TensorSource + ?Sized>(source: &S, w: Weight) -> bool {
    !matches!(w, Weight::Layer(_, LayerWeight::QBias | LayerWeight::KBias | LayerWeight::VBias)) || source.contains(w)
}

/// Whether the layers of `cfg`'s family have weight `w` (biases only where the file does too).
fn layer_has(cfg: &ModelConfig, w: LayerWeight) -> bool {
    let b = cfg.block();
    let (dense, shared) = (cfg.experts.is_none(), cfg.experts.as_ref().is_some_and(|e| e.shared_ffn > 0));
    match w {
        LayerWeight::Q | LayerWeight::K | LayerWeight::V => !b.fused,
        LayerWeight::Gate | LayerWeight::Up => !b.fused && dense,
        LayerWeight::Qkv | LayerWeight::GateUp => b.fused,
        LayerWeight::Down => dense,
        LayerWeight::Router | LayerWeight::GateExps | LayerWeight::UpExps | LayerWeight::DownExps => !dense,
        LayerWeight::SharedRouter | LayerWeight::SharedGate | LayerWeight::SharedUp | LayerWeight::SharedDown => shared,
        LayerWeight::QBias | LayerWeight::KBias | LayerWeight::VBias => b.qkv_bias,
        LayerWeight::QNorm | LayerWeight::KNorm => b.qk_norm,
        LayerWeight::PostAttnNorm | LayerWeight::PostFfnNorm => b.post_norms,
        LayerWeight::AttnNorm | LayerWeight::O | LayerWeight::FfnNorm => true,
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
    /// `count` matrices of `rows` × `cols` stored as one tensor (a mixture's experts), as one
    /// matrix of `count · rows` rows.
    fn stacked(&self, w: Weight, count: usize, rows: usize, cols: usize) -> Result<MatrixSource, WeightsError> {
        let _ = (count, rows, cols);
        Err(WeightsError::Convert { name: self.name(w), problem: "stacked expert tensors are read from GGUF files only".into() })
    }
    /// Per-pair rotary factors stored as the tensor `name` (GGUF's `rope_freqs.weight`,
    /// `rope_factors_long.weight`, ...).
    fn rope_factors(&self, _name: &str, _len: usize) -> Result<Option<Vec<f32>>, WeightsError> {
        Ok(None)
    }
    /// Whether norm weights are stored as checkpoints store them, without the offset some
    /// families add (`Block::hf_norm_offset`; llama.cpp's converter bakes it into GGUFs).
    fn norms_without_offset(&self) -> bool {
        false
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
        // A one-row matrix may be stored as a vector (Qwen2-MoE's shared expert gate).
        let one_row = rows == 1 && self.0.tensor_info(&name).is_some_and(|i| i.shape.len() == 1);
        let info = if one_row { self.info(&name, &[cols])? } else { self.info(&name, &[cols, rows])? };
        Ok(MatrixSource { dtype: info.dtype, rows, cols, bytes: self.0.tensor_data(info), name })
    }

    fn stacked(&self, w: Weight, count: usize, rows: usize, cols: usize) -> Result<MatrixSource, WeightsError> {
        let name = w.gguf_name();
        let info = self.info(&name, &[cols, rows, count])?;
        Ok(MatrixSource { dtype: info.dtype, rows: count * rows, cols, bytes: self.0.tensor_data(info), name })
    }

    fn vector(&self, w: Weight, len: usize) -> Result<Vec<f32>, WeightsError> {
        self.host_vector(&w.gguf_name(), len)
    }

    fn rope_factors(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, WeightsError> {
        match self.0.tensor_info(name) {
            Some(_) => self.host_vector(name, len).map(Some),
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

    /// A fused matrix cut into its parts of `rows[i]` rows each.
    fn split_matrix<const N: usize>(&mut self, w: Weight, rows: [usize; N]) -> Result<[B::Matrix; N], WeightsError> {
        let (total, cols) = w.dims(self.cfg);
        let source = self.source.matrix(w, total, cols)?;
        self.step_matrices.bytes += source.bytes.len();
        self.step_matrices.elements += total * cols;
        let parts = self.cut(source, &rows)?;
        self.tick();
        Ok(parts.try_into().unwrap_or_else(|_| unreachable!("N parts")))
    }

    /// A mixture's stacked expert matrices, one per expert. A step reads `used` of `experts`
    /// per token, which is what the step's sizes count.
    fn experts(&mut self, w: Weight) -> Result<Vec<B::Matrix>, WeightsError> {
        let (rows, cols) = w.dims(self.cfg);
        let route = &self.cfg.experts.as_ref().expect("expert weights only for mixtures").route;
        let source = self.source.stacked(w, route.experts, rows, cols)?;
        self.step_matrices.bytes += source.bytes.len() / route.experts * route.used;
        self.step_matrices.elements += rows * cols * route.used;
        let parts = self.cut(source, &vec![rows; route.experts])?;
        self.tick();
        Ok(parts)
    }

    /// `source` cut into parts of `rows[i]` rows each (rows of every type are whole blocks, so
    /// each part is a byte range of the file), uploaded.
    fn cut(&mut self, source: MatrixSource, rows: &[usize]) -> Result<Vec<B::Matrix>, WeightsError> {
        let cols = source.cols;
        let convert = |problem: String| WeightsError::Convert { name: source.name.clone(), problem };
        let row_bytes = source.dtype.row_bytes(cols).ok_or_else(|| convert(format!("{cols} columns are not whole {} blocks", source.dtype)))?;
        let mut parts = Vec::with_capacity(rows.len());
        let mut first = 0;
        for &r in rows {
            let bytes = source.bytes.slice(first * row_bytes, r * row_bytes).ok_or_else(|| convert(format!("rows {first}..{}", first + r)))?;
            let name = format!("{}[{first}..{}]", source.name, first + r);
            let part = MatrixSource { name: name.clone(), dtype: source.dtype, rows: r, cols, bytes };
            parts.push(self.backend.upload_matrix(part).map_err(|source| WeightsError::Backend { name, source })?);
            first += r;
        }
        Ok(parts)
    }

    fn vector(&mut self, w: Weight) -> Result<B::Buffer, WeightsError> {
        let (len, _) = w.dims(self.cfg);
        let mut host = self.source.vector(w, len)?;
        if w.is_norm() && self.source.norms_without_offset() {
            let offset = self.cfg.block().hf_norm_offset;
            host.iter_mut().for_each(|v| *v += offset);
        }
        let backend_err = |source| WeightsError::Backend { name: self.source.name(w), source };
        let mut buf = self.backend.alloc(len).map_err(backend_err)?;
        self.backend.write(&mut buf, &host).map_err(backend_err)?;
        self.tick();
        Ok(buf)
    }

    /// A weight the family may have, loaded where it does (and for biases, where the source
    /// does too).
    fn optional(&mut self, w: Weight) -> Result<Option<B::Buffer>, WeightsError> {
        let Weight::Layer(_, lw) = w else { unreachable!("layer weights only") };
        if layer_has(self.cfg, lw) && in_source(self.source, w) { self.vector(w).map(Some) } else { Ok(None) }
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
            .filter(|&w| in_source(source, w))
            .count();
        let mut l = Loader { source, backend, cfg, progress, loaded: 0, total, step_matrices: MatrixSize::default(), token_embd: MatrixSize::default() };
        let token_embd = l.matrix(Weight::TokenEmbd)?;
        let (q, kv, ff) = (cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden);
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let w = |lw| Weight::Layer(i, lw);
            let attn_norm = l.vector(w(LayerWeight::AttnNorm))?;
            let [wq, wk, wv] = if cfg.block().fused {
                l.split_matrix(w(LayerWeight::Qkv), [q, kv, kv])?
            } else {
                [l.matrix(w(LayerWeight::Q))?, l.matrix(w(LayerWeight::K))?, l.matrix(w(LayerWeight::V))?]
            };
            let (bq, bk, bv) = (l.optional(w(LayerWeight::QBias))?, l.optional(w(LayerWeight::KBias))?, l.optional(w(LayerWeight::VBias))?);
            let (q_norm, k_norm) = (l.optional(w(LayerWeight::QNorm))?, l.optional(w(LayerWeight::KNorm))?);
            let wo = l.matrix(w(LayerWeight::O))?;
            let post_attn_norm = l.optional(w(LayerWeight::PostAttnNorm))?;
            let ffn_norm = l.vector(w(LayerWeight::FfnNorm))?;
            let ffn = match &cfg.experts {
                Some(e) => {
                    let router = l.matrix(w(LayerWeight::Router))?;
                    let (gate, up, down) = (l.experts(w(LayerWeight::GateExps))?, l.experts(w(LayerWeight::UpExps))?, l.experts(w(LayerWeight::DownExps))?);
                    let shared = match e.shared_ffn {
                        0 => None,
                        _ => Some(SharedExpert {
                            gate_inp: l.matrix(w(LayerWeight::SharedRouter))?,
                            gate: l.matrix(w(LayerWeight::SharedGate))?,
                            up: l.matrix(w(LayerWeight::SharedUp))?,
                            down: l.matrix(w(LayerWeight::SharedDown))?,
                        }),
                    };
                    FeedForward::Experts(Box::new(ExpertWeights { router, gate, up, down, shared }))
                }
                None => {
                    let [gate, up] = if cfg.block().fused {
                        l.split_matrix(w(LayerWeight::GateUp), [ff, ff])?
                    } else {
                        [l.matrix(w(LayerWeight::Gate))?, l.matrix(w(LayerWeight::Up))?]
                    };
                    FeedForward::Dense { gate, up, down: l.matrix(w(LayerWeight::Down))? }
                }
            };
            let post_ffn_norm = l.optional(w(LayerWeight::PostFfnNorm))?;
            layers.push(LayerWeights { attn_norm, wq, wk, wv, bq, bk, bv, q_norm, k_norm, wo, post_attn_norm, ffn_norm, ffn, post_ffn_norm });
        }
        let output_norm = l.vector(Weight::OutputNorm)?;
        let output = if cfg.tied_embeddings { None } else { Some(l.matrix(Weight::Output)?) };
        let rope_freqs = match cfg.rope_scaling.factors_tensor() {
            Some(name) => source.rope_factors(name, cfg.rope_dim / 2)?,
            None => None,
        };
        let mut step_matrices = l.step_matrices;
        if cfg.tied_embeddings {
            step_matrices.bytes += l.token_embd.bytes;
            step_matrices.elements += l.token_embd.elements;
        }
        Ok(ModelWeights { token_embd, layers, output_norm, output, rope_freqs, step_matrices })
    }
}

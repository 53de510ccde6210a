//! The `Backend` trait: buffers plus the dozen kernels a Llama-family forward pass needs. The
//! forward pass is written once against it; the CPU backend implements it with plain reference
//! code (the oracle) and faster backends must match that within named tolerances.
//!
//! Conventions: matrices are row-major; a weight `Matrix` has `rows` outputs of `cols` inputs
//! (ggml's `[cols, rows]`), so `matmul` computes `out[r, o] = Σ_k x[r, k] · w[o, k]`. Every op
//! takes explicit row counts so buffers can be allocated once for the largest step and reused.

use crate::{Activation, AttentionParams, BackendError, BackendResult, DType, DrawParams, ExpertRoute, SharedBytes};

/// A weight matrix as stored in the model file, before it is handed to a backend.
#[derive(Debug, Clone)]
pub struct MatrixSource {
    pub name: String,
    pub dtype: DType,
    /// Output features.
    pub rows: usize,
    /// Input features (the contiguous dimension).
    pub cols: usize,
    pub bytes: SharedBytes,
}

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDType {
    #[default]
    F16,
    F32,
}

impl KvDType {
    pub fn bytes(self) -> usize {
        match self {
            KvDType::F16 => 2,
            KvDType::F32 => 4,
        }
    }
}

/// Shape of the paged KV cache: per layer, K and V each `[num_blocks, block_size, kv_heads,
/// head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub layers: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub dtype: KvDType,
}

impl KvLayout {
    /// Elements of K (or V) per layer.
    pub fn layer_elems(&self) -> usize {
        self.num_blocks * self.block_size * self.kv_heads * self.head_dim
    }

    /// Total bytes for K and V over all layers.
    pub fn total_bytes(&self) -> usize {
        2 * self.layers * self.layer_elems() * self.dtype.bytes()
    }
}

/// Rotary position embedding parameters, as ggml states them (`ggml_rope_ext` without YaRN).
/// Pair `i` of a head at position `p` turns by `freq_scale · (θᵢ / factorᵢ)`, where
/// `θ₀ = p` and `θᵢ₊₁ = θᵢ · theta_scale` multiplied up in f32 (not `p · theta_scaleⁱ`: the
/// CPU twin does it to match llama.cpp bit for bit, so every backend must); cos and sin are
/// then multiplied by `mscale`.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeParams {
    /// Leading dimensions of each head that rotate (the rest pass through).
    pub rot_dim: usize,
    /// `base^(-2 / rot_dim)`.
    pub theta_scale: f32,
    /// Linear position scaling, `1 / factor` (1: none).
    pub freq_scale: f32,
    /// Per-pair divisors of the angle (Llama 3's `rope_freqs`, LongRoPE's factors), `rot_dim / 2`
    /// of them; empty: none.
    pub freq_factors: Vec<f32>,
    /// NeoX style rotates pairs `(i, i + rot_dim/2)`; normal (GGUF Llama) rotates `(2i, 2i+1)`.
    pub neox: bool,
    /// Multiplies both `cos` and `sin` (llama.cpp's `attn_factor`: LongRoPE's magnitude
    /// correction); 1 for plain rotary.
    pub mscale: f32,
}

impl RopeParams {
    /// Plain rotary of `rot_dim` dimensions at `base`.
    pub fn new(rot_dim: usize, base: f32, neox: bool) -> RopeParams {
        let theta_scale = base.powf(-2.0 / rot_dim as f32);
        RopeParams { rot_dim, theta_scale, freq_scale: 1.0, freq_factors: Vec::new(), neox, mscale: 1.0 }
    }

    /// `(cos, sin)` of every pair at position `pos` into `cos[..rot_dim / 2]`, `sin[..]`, ggml's
    /// operations in ggml's order.
    pub fn cos_sin(&self, pos: u32, cos: &mut [f32], sin: &mut [f32]) {
        let mut theta = pos as f32;
        for i in 0..self.rot_dim / 2 {
            let factor = self.freq_factors.get(i).copied().unwrap_or(1.0);
            let (s, c) = (self.freq_scale * (theta / factor)).sin_cos();
            (cos[i], sin[i]) = (c * self.mscale, s * self.mscale);
            theta *= self.theta_scale;
        }
    }

    /// Whether the parameters are usable: whole pairs, one factor per pair (or none), finite.
    pub fn check(&self, head_dim: usize) -> Result<(), String> {
        let pairs = self.rot_dim / 2;
        let finite = self.theta_scale.is_finite() && self.freq_scale.is_finite() && self.mscale.is_finite();
        if self.rot_dim > head_dim || !self.rot_dim.is_multiple_of(2) || !(self.freq_factors.is_empty() || self.freq_factors.len() == pairs) || !finite {
            return Err(format!("rot_dim {} with head_dim {head_dim}, {} frequency factors, {self:?}", self.rot_dim, self.freq_factors.len()));
        }
        Ok(())
    }
}

/// Per-step batch indices on the device. Tokens of one sequence are contiguous and in position
/// order; every token attends to positions `0..=positions[t]` of its own sequence.
pub struct AttentionBatch<'a, B: Backend + ?Sized> {
    pub num_tokens: usize,
    pub num_seqs: usize,
    /// `[num_tokens]` position of each token in its sequence.
    pub positions: &'a B::Indices,
    /// `[num_tokens]` index of each token's sequence in this batch.
    pub token_seq: &'a B::Indices,
    /// `[num_tokens]` KV slot (`block * block_size + offset`) each token's K/V is written to.
    pub slots: &'a B::Indices,
    /// `[num_seqs, max_blocks_per_seq]` physical block ids of each sequence.
    pub block_tables: &'a B::Indices,
    pub max_blocks_per_seq: usize,
}

pub trait Backend: Send + 'static {
    /// `f32` activations.
    type Buffer: Send;
    /// `u32` indices: token ids, positions, slots, block tables.
    type Indices: Send;
    /// A weight matrix in its stored dtype.
    type Matrix: Send + Sync;
    /// The paged KV cache of every layer.
    type KvCache: Send;

    fn name(&self) -> &'static str;

    /// Bytes free for new allocations in the memory this backend allocates from (the host's
    /// available memory, a GPU's free device memory), where it can tell: loads check that a KV
    /// pool fits before reserving it.
    fn free_memory_bytes(&self) -> Option<usize> {
        None
    }

    // Memory.
    fn alloc(&self, len: usize) -> BackendResult<Self::Buffer>;
    fn alloc_indices(&self, len: usize) -> BackendResult<Self::Indices>;
    /// Writes `src` at the start of `dst`.
    fn write(&self, dst: &mut Self::Buffer, src: &[f32]) -> BackendResult<()>;
    fn write_indices(&self, dst: &mut Self::Indices, src: &[u32]) -> BackendResult<()>;
    /// Reads the first `dst.len()` elements of `src`.
    fn read(&self, src: &Self::Buffer, dst: &mut [f32]) -> BackendResult<()>;
    fn upload_matrix(&self, source: MatrixSource) -> BackendResult<Self::Matrix>;
    fn alloc_kv_cache(&self, layout: KvLayout) -> BackendResult<Self::KvCache>;

    // Kernels.
    /// `out[t] = table[tokens[t]]` (dequantized): `[n, table.cols]`.
    fn embed(&self, table: &Self::Matrix, tokens: &Self::Indices, n: usize, out: &mut Self::Buffer) -> BackendResult<()>;
    /// `out[r] = x[r] / rms(x[r]) · weight` over `rows` rows of `dim`.
    fn rms_norm(&self, x: &Self::Buffer, weight: &Self::Buffer, eps: f32, rows: usize, dim: usize, out: &mut Self::Buffer) -> BackendResult<()>;
    /// `out[rows, w.rows] = x[rows, w.cols] · wᵀ`.
    fn matmul(&self, x: &Self::Buffer, w: &Self::Matrix, rows: usize, out: &mut Self::Buffer) -> BackendResult<()>;
    /// `out_j = x · w_jᵀ` for several matrices of the same width reading the same input (q/k/v,
    /// gate/up), so a backend can prepare the input once and run them as one launch.
    fn matmul_many(&self, x: &Self::Buffer, rows: usize, jobs: &mut [(&Self::Matrix, &mut Self::Buffer)]) -> BackendResult<()> {
        jobs.iter_mut().try_for_each(|(w, out)| self.matmul(x, w, rows, out))
    }
    /// `x[r] += bias` over `rows` rows of `dim`.
    fn add_bias(&self, x: &mut Self::Buffer, bias: &Self::Buffer, rows: usize, dim: usize) -> BackendResult<()>;
    /// Rotates each of `heads` heads of `head_dim` in `x: [rows, heads, head_dim]` in place.
    fn rope(&self, x: &mut Self::Buffer, positions: &Self::Indices, rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()>;
    /// Stores `k, v: [n, kv_heads, head_dim]` of `layer` at `slots[t]`.
    fn write_kv(&self, cache: &mut Self::KvCache, layer: usize, k: &Self::Buffer, v: &Self::Buffer, slots: &Self::Indices, n: usize) -> BackendResult<()>;
    /// Causal attention of `q: [num_tokens, heads, head_dim]` over each token's sequence in the
    /// paged cache (positions `params.first_position(pos)..=pos`), grouped-query aware, scores
    /// formed by `params`: `out: [num_tokens, heads, head_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attention(&self, cache: &Self::KvCache, layer: usize, q: &Self::Buffer, heads: usize, params: &AttentionParams, batch: &AttentionBatch<'_, Self>, out: &mut Self::Buffer) -> BackendResult<()>;
    /// `out = act(gate) · up` elementwise over `len` (the gated feed-forward).
    fn glu(&self, act: Activation, gate: &Self::Buffer, up: &Self::Buffer, len: usize, out: &mut Self::Buffer) -> BackendResult<()>;
    /// `x += y` elementwise over `len` (the residual stream).
    fn add(&self, x: &mut Self::Buffer, y: &Self::Buffer, len: usize) -> BackendResult<()>;
    /// `x *= factor` elementwise over `len` (Gemma's embedding scale, a query pre-scale).
    fn scale(&self, x: &mut Self::Buffer, factor: f32, len: usize) -> BackendResult<()>;
    /// `x = cap · tanh(x · (1 / cap))` elementwise over `len` (Gemma 2's final logit soft cap).
    fn softcap(&self, x: &mut Self::Buffer, cap: f32, len: usize) -> BackendResult<()>;
    /// Whether this backend can record a step's kernels once and replay them (CUDA graphs). The
    /// forward pass then records decode steps per padded batch size, with every launch argument
    /// fixed for that size, and only uploads indices before each replay.
    fn graphs_supported(&self) -> bool {
        false
    }
    /// Starts recording the kernels issued from now on under `key`, instead of running them.
    fn begin_capture(&self, key: u64) -> BackendResult<()> {
        let _ = key;
        Err(BackendError::Unsupported { backend: self.name(), what: "graph capture".into() })
    }
    /// Stops the recording started by `begin_capture(key)` and keeps it for `replay(key)`.
    fn end_capture(&self, key: u64) -> BackendResult<()> {
        let _ = key;
        Err(BackendError::Unsupported { backend: self.name(), what: "graph capture".into() })
    }
    /// Runs the recording kept under `key`; `Ok(false)` when there is none.
    fn replay(&self, key: u64) -> BackendResult<bool> {
        let _ = key;
        Ok(false)
    }
    /// Whether `sample` is worth using instead of reading the logits back (a GPU: yes, only the
    /// token ids then cross to the host; the CPU: no, its host sampler does more).
    fn samples_on_device(&self) -> bool {
        false
    }
    /// One token per row of `logits: [rows, vocab]` into `out[0..rows]`, chosen by `params[row]`
    /// by the one rule of [`crate::draw`]. Not recordable into a graph (the parameters are copied in).
    fn sample(&self, logits: &Self::Buffer, rows: usize, vocab: usize, params: &[DrawParams], out: &mut Self::Indices) -> BackendResult<()> {
        let _ = (logits, rows, vocab, params, out);
        Err(BackendError::Unsupported { backend: self.name(), what: "sampling".into() })
    }
    /// Reads the first `dst.len()` indices of `src` (waits for the device).
    fn read_indices(&self, src: &Self::Indices, dst: &mut [u32]) -> BackendResult<()>;

    // Mixture of experts (llama.cpp's `build_moe_ffn`), for backends where [`Backend::runs_experts`].
    /// Whether this backend implements the three expert kernels below.
    fn runs_experts(&self) -> bool {
        false
    }
    /// Routing: per row of `logits: [rows, experts]`, softmax (ggml's `soft_max`), the `used`
    /// largest probabilities in descending order (ties to the lower expert), divided by their sum
    /// when `route.normalize` (the sum clamped below at 2⁻¹⁴ as llama.cpp does), times
    /// `route.scale`: expert ids into `ids` and weights into `weights`, both `[rows, used]`.
    fn route_experts(&self, logits: &Self::Buffer, rows: usize, route: &ExpertRoute, ids: &mut Self::Indices, weights: &mut Self::Buffer) -> BackendResult<()> {
        let _ = (logits, rows, route, ids, weights);
        Err(BackendError::Unsupported { backend: self.name(), what: "mixture-of-experts routing".into() })
    }
    /// `out[s] = x[r(s)] · experts[ids[s]]ᵀ` for every slot `s < rows · used` (ggml's
    /// `mul_mat_id`): `r(s) = s / used` when `x` holds one row per token, `s` when it holds one
    /// per slot (`x_per_slot`). Each slot's row is what `matmul` gives that row alone.
    #[allow(clippy::too_many_arguments)]
    fn matmul_experts(&self, x: &Self::Buffer, x_per_slot: bool, rows: usize, used: usize, ids: &Self::Indices, experts: &[Self::Matrix], out: &mut Self::Buffer) -> BackendResult<()> {
        let _ = (x, x_per_slot, rows, used, ids, experts, out);
        Err(BackendError::Unsupported { backend: self.name(), what: "mixture-of-experts matmul".into() })
    }
    /// `out[r] = Σⱼ y[r·used + j] · weights[r·used + j]` over `dim`, each product rounded and
    /// the slots added in order (ggml multiplies, then adds the slot views one by one).
    fn combine_experts(&self, y: &Self::Buffer, weights: &Self::Buffer, rows: usize, used: usize, dim: usize, out: &mut Self::Buffer) -> BackendResult<()> {
        let _ = (y, weights, rows, used, dim, out);
        Err(BackendError::Unsupported { backend: self.name(), what: "mixture-of-experts combine".into() })
    }
    /// The shared expert's gate (Qwen2-MoE): `x[r] += y[r] · σ(gate[r])` over `dim`, with σ
    /// as llama.cpp forms it, `silu(g) / g`.
    fn add_gated(&self, x: &mut Self::Buffer, y: &Self::Buffer, gate: &Self::Buffer, rows: usize, dim: usize) -> BackendResult<()> {
        let _ = (x, y, gate, rows, dim);
        Err(BackendError::Unsupported { backend: self.name(), what: "shared-expert gate".into() })
    }
    /// `out[i] = x[rows[i]]` for `n` rows of `dim`.
    fn gather_rows(&self, x: &Self::Buffer, rows: &Self::Indices, n: usize, dim: usize, out: &mut Self::Buffer) -> BackendResult<()>;
}

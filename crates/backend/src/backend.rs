//! The `Backend` trait: buffers plus the dozen kernels a Llama-family forward pass needs. The
//! forward pass is written once against it; the CPU backend implements it with plain reference
//! code (the oracle) and faster backends must match that within named tolerances.
//!
//! Conventions: matrices are row-major; a weight `Matrix` has `rows` outputs of `cols` inputs
//! (ggml's `[cols, rows]`), so `matmul` computes `out[r, o] = Σ_k x[r, k] · w[o, k]`. Every op
//! takes explicit row counts so buffers can be allocated once for the largest step and reused.

use crate::{BackendError, BackendResult, DType, DrawParams, SharedBytes};

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

/// Rotary position embedding parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeParams {
    /// Leading dimensions of each head that rotate (the rest pass through).
    pub rot_dim: usize,
    /// `inv_freq[i] = 1 / (base^(2i / rot_dim) · factor_i)` for `i < rot_dim / 2`, with position
    /// scaling (linear, llama3 frequency factors) already folded in.
    pub inv_freq: Vec<f32>,
    /// NeoX style rotates pairs `(i, i + rot_dim/2)`; normal (GGUF Llama) rotates `(2i, 2i+1)`.
    pub neox: bool,
}

impl RopeParams {
    /// `Some(r)` when the first `rot_dim / 2` frequencies are `[1, r, r², …]` (within float
    /// rounding: `r` is `base^(-2/d)`, the table's entries `base^(-2i/d)` computed directly).
    /// Kernels then build the angles as ggml does, `p·r·r·…·r` multiplied up in f32, rather than
    /// `p·inv_freq[i]`: the CPU twin does it to match llama.cpp bit for bit, so every backend must.
    pub fn geometric_ratio(&self) -> Option<f32> {
        let inv_freq = &self.inv_freq[..(self.rot_dim / 2).min(self.inv_freq.len())];
        if inv_freq.len() < 2 || inv_freq[0] != 1.0 {
            return None;
        }
        let r = inv_freq[1];
        let mut p = 1.0f32;
        for &f in inv_freq {
            if (f - p).abs() > 1e-4 * p {
                return None;
            }
            p *= r;
        }
        Some(r)
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
    fn embed(
        &self,
        table: &Self::Matrix,
        tokens: &Self::Indices,
        n: usize,
        out: &mut Self::Buffer,
    ) -> BackendResult<()>;
    /// `out[r] = x[r] / rms(x[r]) · weight` over `rows` rows of `dim`.
    fn rms_norm(
        &self,
        x: &Self::Buffer,
        weight: &Self::Buffer,
        eps: f32,
        rows: usize,
        dim: usize,
        out: &mut Self::Buffer,
    ) -> BackendResult<()>;
    /// `out[rows, w.rows] = x[rows, w.cols] · wᵀ`.
    fn matmul(
        &self,
        x: &Self::Buffer,
        w: &Self::Matrix,
        rows: usize,
        out: &mut Self::Buffer,
    ) -> BackendResult<()>;
    /// `out_j = x · w_jᵀ` for several matrices of the same width reading the same input (q/k/v,
    /// gate/up), so a backend can prepare the input once and run them as one launch.
    fn matmul_many(
        &self,
        x: &Self::Buffer,
        rows: usize,
        jobs: &mut [(&Self::Matrix, &mut Self::Buffer)],
    ) -> BackendResult<()> {
        jobs.iter_mut()
            .try_for_each(|(w, out)| self.matmul(x, w, rows, out))
    }
    /// `x[r] += bias` over `rows` rows of `dim`.
    fn add_bias(
        &self,
        x: &mut Self::Buffer,
        bias: &Self::Buffer,
        rows: usize,
        dim: usize,
    ) -> BackendResult<()>;
    /// Rotates each of `heads` heads of `head_dim` in `x: [rows, heads, head_dim]` in place.
    fn rope(
        &self,
        x: &mut Self::Buffer,
        positions: &Self::Indices,
        rows: usize,
        heads: usize,
        head_dim: usize,
        rope: &RopeParams,
    ) -> BackendResult<()>;
    /// Stores `k, v: [n, kv_heads, head_dim]` of `layer` at `slots[t]`.
    fn write_kv(
        &self,
        cache: &mut Self::KvCache,
        layer: usize,
        k: &Self::Buffer,
        v: &Self::Buffer,
        slots: &Self::Indices,
        n: usize,
    ) -> BackendResult<()>;
    /// Causal attention of `q: [num_tokens, heads, head_dim]` over each token's sequence in the
    /// paged cache (positions `0..=pos`), grouped-query aware: `out: [num_tokens, heads, head_dim]`.
    fn attention(
        &self,
        cache: &Self::KvCache,
        layer: usize,
        q: &Self::Buffer,
        heads: usize,
        batch: &AttentionBatch<'_, Self>,
        out: &mut Self::Buffer,
    ) -> BackendResult<()>;
    /// `out = silu(gate) · up` elementwise over `len`.
    fn silu_mul(
        &self,
        gate: &Self::Buffer,
        up: &Self::Buffer,
        len: usize,
        out: &mut Self::Buffer,
    ) -> BackendResult<()>;
    /// `x += y` elementwise over `len` (the residual stream).
    fn add(&self, x: &mut Self::Buffer, y: &Self::Buffer, len: usize) -> BackendResult<()>;
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
    fn sample(
        &self,
        logits: &Self::Buffer,
        rows: usize,
        vocab: usize,
        params: &[DrawParams],
        out: &mut Self::Indices,
    ) -> BackendResult<()> {
        let _ = (logits, rows, vocab, params, out);
        Err(BackendError::Unsupported { backend: self.name(), what: "sampling".into() })
    }
    /// Reads the first `dst.len()` indices of `src` (waits for the device).
    fn read_indices(&self, src: &Self::Indices, dst: &mut [u32]) -> BackendResult<()>;
    /// `out[i] = x[rows[i]]` for `n` rows of `dim`.
    fn gather_rows(
        &self,
        x: &Self::Buffer,
        rows: &Self::Indices,
        n: usize,
        dim: usize,
        out: &mut Self::Buffer,
    ) -> BackendResult<()>;
}

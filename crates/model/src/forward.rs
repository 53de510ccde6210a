//! The Llama-family forward pass, written once over `Backend`, on a ragged batch: any mix of
//! sequences and positions in one call (prompt chunks and decode tokens alike), K/V stored in a
//! paged cache through block tables, logits computed only for the rows that sample.
//!
//! Every buffer is allocated once, for the largest step (`StepCapacity`); a step allocates
//! nothing on the backend.

use rill_backend::{AttentionBatch, Backend, BackendError, KvLayout, RopeParams};
use rill_engine::ForwardBatch;

use crate::config::ModelConfig;
use crate::weights::ModelWeights;

/// The most work one `forward` call may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCapacity {
    /// Tokens per step (the scheduler's token budget).
    pub max_tokens: usize,
    /// Sequences per step.
    pub max_seqs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("batch of {tokens} tokens / {seqs} sequences / {logits} logit rows exceeds the step capacity {cap:?}")]
    TooLarge { tokens: usize, seqs: usize, logits: usize, cap: StepCapacity },
    #[error("token id {0} is outside the vocabulary")]
    BadToken(u32),
    #[error("block table needs {need} blocks per sequence; the cache has {have} blocks")]
    BlockTable { need: usize, have: usize },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Activation buffers, sized for `StepCapacity`. Shapes in comments use `T` = max tokens,
/// `S` = max sequences.
struct Activations<B: Backend> {
    hidden: B::Buffer,  // [T, d] the residual stream
    normed: B::Buffer,  // [T, d]
    q: B::Buffer,       // [T, heads * head_dim]
    k: B::Buffer,       // [T, kv_heads * head_dim]
    v: B::Buffer,       // [T, kv_heads * head_dim]
    attn: B::Buffer,    // [T, heads * head_dim]
    proj: B::Buffer,    // [T, d] output of attn_output / ffn_down
    gate: B::Buffer,    // [T, ffn]
    up: B::Buffer,      // [T, ffn]
    act: B::Buffer,     // [T, ffn]
    sel: B::Buffer,     // [S, d] hidden rows that sample
    sel_norm: B::Buffer, // [S, d]
    logits: B::Buffer,  // [S, vocab]
    tokens: B::Indices,    // [T]
    positions: B::Indices, // [T]
    token_seq: B::Indices, // [T]
    slots: B::Indices,     // [T]
    block_tables: B::Indices, // [S, max_blocks_per_seq]
    logits_rows: B::Indices,  // [S]
}

pub struct Transformer<B: Backend> {
    backend: B,
    cfg: ModelConfig,
    weights: ModelWeights<B>,
    rope: RopeParams,
    kv: B::KvCache,
    kv_layout: KvLayout,
    cap: StepCapacity,
    act: Activations<B>,
    host_logits: Vec<f32>, // [S, vocab]
}

impl<B: Backend> Transformer<B> {
    pub fn new(backend: B, cfg: ModelConfig, weights: ModelWeights<B>, kv_layout: KvLayout, cap: StepCapacity) -> Result<Self, BackendError> {
        let (t, s) = (cap.max_tokens, cap.max_seqs);
        let (d, qd, kvd, ff, vocab) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden, cfg.vocab_size);
        let b = &backend;
        let act = Activations {
            hidden: b.alloc(t * d)?,
            normed: b.alloc(t * d)?,
            q: b.alloc(t * qd)?,
            k: b.alloc(t * kvd)?,
            v: b.alloc(t * kvd)?,
            attn: b.alloc(t * qd)?,
            proj: b.alloc(t * d)?,
            gate: b.alloc(t * ff)?,
            up: b.alloc(t * ff)?,
            act: b.alloc(t * ff)?,
            sel: b.alloc(s * d)?,
            sel_norm: b.alloc(s * d)?,
            logits: b.alloc(s * vocab)?,
            tokens: b.alloc_indices(t)?,
            positions: b.alloc_indices(t)?,
            token_seq: b.alloc_indices(t)?,
            slots: b.alloc_indices(t)?,
            block_tables: b.alloc_indices(s * kv_layout.num_blocks)?,
            logits_rows: b.alloc_indices(s)?,
        };
        let kv = b.alloc_kv_cache(kv_layout)?;
        let rope = cfg.rope_params(weights.rope_freqs.as_deref());
        let host_logits = vec![0.0; s * vocab];
        Ok(Transformer { backend, cfg, weights, rope, kv, kv_layout, cap, act, host_logits })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn kv_layout(&self) -> KvLayout {
        self.kv_layout
    }

    pub fn capacity(&self) -> StepCapacity {
        self.cap
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs one step. Returns the logits of `batch.logits_rows`, `[rows, vocab]`, row-major.
    pub fn forward(&mut self, batch: &ForwardBatch) -> Result<&[f32], ForwardError> {
        let n = batch.num_tokens();
        let n_logits = batch.logits_rows.len();
        if n > self.cap.max_tokens || batch.num_seqs > self.cap.max_seqs || n_logits > self.cap.max_seqs {
            return Err(ForwardError::TooLarge { tokens: n, seqs: batch.num_seqs, logits: n_logits, cap: self.cap });
        }
        if batch.max_blocks_per_seq > self.kv_layout.num_blocks {
            return Err(ForwardError::BlockTable { need: batch.max_blocks_per_seq, have: self.kv_layout.num_blocks });
        }
        if let Some(&bad) = batch.token_ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ForwardError::BadToken(bad));
        }
        if n == 0 {
            return Ok(&[]);
        }
        self.upload_indices(batch)?;
        let (b, w, a, cfg) = (&self.backend, &self.weights, &mut self.act, &self.cfg);
        let (d, qd, kvd, ff) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden);
        let attn_batch = AttentionBatch {
            num_tokens: n,
            num_seqs: batch.num_seqs,
            positions: &a.positions,
            token_seq: &a.token_seq,
            slots: &a.slots,
            block_tables: &a.block_tables,
            max_blocks_per_seq: batch.max_blocks_per_seq,
        };

        b.embed(&w.token_embd, &a.tokens, n, &mut a.hidden)?;
        for (i, l) in w.layers.iter().enumerate() {
            // Attention block.
            b.rms_norm(&a.hidden, &l.attn_norm, cfg.norm_eps, n, d, &mut a.normed)?;
            b.matmul_many(&a.normed, n, &mut [(&l.wq, &mut a.q), (&l.wk, &mut a.k), (&l.wv, &mut a.v)])?;
            if let (Some(bq), Some(bk), Some(bv)) = (&l.bq, &l.bk, &l.bv) {
                b.add_bias(&mut a.q, bq, n, qd)?;
                b.add_bias(&mut a.k, bk, n, kvd)?;
                b.add_bias(&mut a.v, bv, n, kvd)?;
            }
            b.rope(&mut a.q, attn_batch.positions, n, cfg.heads, cfg.head_dim, &self.rope)?;
            b.rope(&mut a.k, attn_batch.positions, n, cfg.kv_heads, cfg.head_dim, &self.rope)?;
            b.write_kv(&mut self.kv, i, &a.k, &a.v, attn_batch.slots, n)?;
            b.attention(&self.kv, i, &a.q, cfg.heads, &attn_batch, &mut a.attn)?;
            b.matmul(&a.attn, &l.wo, n, &mut a.proj)?;
            b.add(&mut a.hidden, &a.proj, n * d)?;
            // Feed-forward block (SwiGLU).
            b.rms_norm(&a.hidden, &l.ffn_norm, cfg.norm_eps, n, d, &mut a.normed)?;
            b.matmul_many(&a.normed, n, &mut [(&l.w_gate, &mut a.gate), (&l.w_up, &mut a.up)])?;
            b.silu_mul(&a.gate, &a.up, n * ff, &mut a.act)?;
            b.matmul(&a.act, &l.w_down, n, &mut a.proj)?;
            b.add(&mut a.hidden, &a.proj, n * d)?;
        }
        if n_logits == 0 {
            return Ok(&[]);
        }
        // Only rows that sample go through the final norm and the (large) output projection.
        b.gather_rows(&a.hidden, &a.logits_rows, n_logits, d, &mut a.sel)?;
        b.rms_norm(&a.sel, &w.output_norm, cfg.norm_eps, n_logits, d, &mut a.sel_norm)?;
        b.matmul(&a.sel_norm, w.output_matrix(), n_logits, &mut a.logits)?;
        let out = &mut self.host_logits[..n_logits * cfg.vocab_size];
        b.read(&a.logits, out)?;
        Ok(out)
    }

    fn upload_indices(&mut self, batch: &ForwardBatch) -> Result<(), BackendError> {
        let (b, a) = (&self.backend, &mut self.act);
        b.write_indices(&mut a.tokens, &batch.token_ids)?;
        b.write_indices(&mut a.positions, &batch.positions)?;
        b.write_indices(&mut a.token_seq, &batch.token_seq)?;
        b.write_indices(&mut a.slots, &batch.slots)?;
        b.write_indices(&mut a.block_tables, &batch.block_tables)?;
        b.write_indices(&mut a.logits_rows, &batch.logits_rows)?;
        Ok(())
    }
}

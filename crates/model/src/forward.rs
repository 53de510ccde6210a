//! The forward pass, written once over `Backend` for every family: the Llama block with the
//! variants a family's `Block` and config turn on (q/k norms, post-norms, GeGLU, sliding
//! windows, soft caps, scaled embeddings), no branch on the family itself. It runs on a ragged
//! batch: any mix of sequences and positions in one call (prompt chunks and decode tokens
//! alike), K/V stored in a paged cache through block tables, logits computed only for the rows
//! that sample.
//!
//! Every buffer is allocated once, for the largest step (`StepCapacity`); a step allocates
//! nothing on the backend.

use rill_backend::{AttentionArithmetic, AttentionBatch, AttentionParams, Backend, BackendError, DrawParams, KvLayout, RopeParams};
use rill_engine::ForwardBatch;

use crate::config::ModelConfig;
use crate::weights::{ExpertWeights, FeedForward, ModelWeights};

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
    #[error("{params} sampling parameters for {rows} logit rows")]
    SamplingParams { params: usize, rows: usize },
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
    /// q and k before their per-head norms, for families that have them.
    qk_raw: Option<(B::Buffer, B::Buffer)>,
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
    sampled: B::Indices,      // [S] token ids chosen by `Backend::sample`
    /// A mixture of experts' buffers (`K` = experts per token, `E` = experts).
    experts: Option<ExpertBuffers<B>>,
}

struct ExpertBuffers<B: Backend> {
    logits: B::Buffer,   // [T, E] the router's
    ids: B::Indices,     // [T, K] chosen experts
    weights: B::Buffer,  // [T, K] their weights
    gate: B::Buffer,     // [T·K, expert ffn]
    up: B::Buffer,       // [T·K, expert ffn]
    act: B::Buffer,      // [T·K, expert ffn]
    out: B::Buffer,      // [T·K, d] each slot's expert output
    /// Qwen2-MoE's shared expert: gate logit [T], FFN [T, shared ffn] ×3, output [T, d].
    shared: Option<[B::Buffer; 5]>,
}

impl<B: Backend> ExpertBuffers<B> {
    fn new(b: &B, cfg: &ModelConfig, t: usize) -> Result<Option<Self>, BackendError> {
        let Some(e) = &cfg.experts else { return Ok(None) };
        if !b.runs_experts() {
            return Err(BackendError::Unsupported { backend: b.name(), what: format!("mixture-of-experts models ({})", cfg.arch.name()) });
        }
        let (k, ff, d, slots) = (e.route.used, e.ffn_hidden, cfg.hidden, t * e.route.used);
        let shared = match e.shared_ffn {
            0 => None,
            s => Some([b.alloc(t)?, b.alloc(t * s)?, b.alloc(t * s)?, b.alloc(t * s)?, b.alloc(t * d)?]),
        };
        Ok(Some(ExpertBuffers {
            logits: b.alloc(t * e.route.experts)?,
            ids: b.alloc_indices(t * k)?,
            weights: b.alloc(t * k)?,
            gate: b.alloc(slots * ff)?,
            up: b.alloc(slots * ff)?,
            act: b.alloc(slots * ff)?,
            out: b.alloc(slots * d)?,
            shared,
        }))
    }
}

pub struct Transformer<B: Backend> {
    backend: B,
    cfg: ModelConfig,
    weights: ModelWeights<B>,
    /// The global layers' rotary, then the sliding layers'.
    ropes: [RopeParams; 2],
    /// Per layer.
    attention: Vec<AttentionParams>,
    kv: B::KvCache,
    kv_layout: KvLayout,
    cap: StepCapacity,
    act: Activations<B>,
    host_logits: Vec<f32>, // [S, vocab]
    host_sampled: Vec<u32>, // [S]
    /// Logits rows the last step left in `act.logits` (what `sample_logits` samples).
    last_logits_rows: usize,
    /// Decode steps are recorded once per padded batch size and replayed (backends with
    /// graphs; `RILL_GRAPHS=0` turns it off).
    graphs: bool,
    /// Decode steps run padded to a bucket size: always with graphs, on request without (tests).
    pad_decode: bool,
    /// The padded copy of a decode batch that a recorded step runs on.
    padded: ForwardBatch,
}

/// Padded batch sizes that decode steps are recorded for.
const GRAPH_BUCKETS: [usize; 12] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256];

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
            qk_raw: if cfg.block().qk_norm { Some((b.alloc(t * qd)?, b.alloc(t * kvd)?)) } else { None },
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
            sampled: b.alloc_indices(s)?,
            experts: ExpertBuffers::new(b, &cfg, t)?,
        };
        // A mixture's expert matmul reads the routing back to the host, which a recorded step cannot.
        let graphs = backend.graphs_supported() && cfg.experts.is_none() && std::env::var("RILL_GRAPHS").as_deref() != Ok("0");
        // One extra block past those the scheduler hands out takes the K/V of the padding rows
        // of a padded decode step.
        let kv = b.alloc_kv_cache(KvLayout { num_blocks: kv_layout.num_blocks + 1, ..kv_layout })?;
        let ropes = [false, true].map(|sliding| cfg.rope_params(sliding, weights.rope_freqs.as_deref()));
        let attention = (0..cfg.layers).map(|il| cfg.attention_params(il)).collect();
        let (host_logits, host_sampled) = (vec![0.0; s * vocab], vec![0; s]);
        let padded = ForwardBatch::default();
        Ok(Transformer { backend, cfg, weights, ropes, attention, kv, kv_layout, cap, act, host_logits, host_sampled, last_logits_rows: 0, graphs, pad_decode: graphs, padded })
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

    /// Bytes of weights one step reads (every layer's matrices and the output projection).
    pub fn decode_weight_bytes(&self) -> usize {
        self.weights.step_matrices.bytes
    }

    /// Weights one token is multiplied by (a token costs twice this in FLOPs, before attention).
    pub fn decode_weight_elements(&self) -> usize {
        self.weights.step_matrices.elements
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs one step. Returns the logits of `batch.logits_rows`, `[rows, vocab]`, row-major.
    pub fn forward(&mut self, batch: &ForwardBatch) -> Result<&[f32], ForwardError> {
        let n_logits = self.step(batch)?;
        if n_logits == 0 {
            return Ok(&[]);
        }
        let out = &mut self.host_logits[..n_logits * self.cfg.vocab_size];
        self.backend.read(&self.act.logits, out)?;
        Ok(out)
    }

    /// Runs one step like [`Transformer::forward`], then chooses one token per logits row on the
    /// backend (`Backend::sample`, `params[i]` for row `i`) and reads back only the token ids.
    /// The sampling runs after a recorded step's replay, outside any capture.
    pub fn forward_sample(&mut self, batch: &ForwardBatch, params: &[DrawParams]) -> Result<&[u32], ForwardError> {
        let rows = batch.logits_rows.len();
        if params.len() != rows {
            return Err(ForwardError::SamplingParams { params: params.len(), rows });
        }
        self.step(batch)?;
        self.sample_logits(params)
    }

    /// Chooses one token per logits row of the last step (`forward` or `forward_sample`) on the
    /// backend, from the logits still there: a step can read its logits back for some rows and
    /// sample the others on the device.
    pub fn sample_logits(&mut self, params: &[DrawParams]) -> Result<&[u32], ForwardError> {
        let rows = self.last_logits_rows;
        if params.len() != rows {
            return Err(ForwardError::SamplingParams { params: params.len(), rows });
        }
        if rows == 0 {
            return Ok(&[]);
        }
        let (b, a) = (&self.backend, &mut self.act);
        b.sample(&a.logits, rows, self.cfg.vocab_size, params, &mut a.sampled)?;
        let out = &mut self.host_sampled[..rows];
        b.read_indices(&a.sampled, out)?;
        Ok(out)
    }

    /// Checks the batch and issues the step's kernels (recorded and replayed for a padded
    /// decode step), leaving the logits of `batch.logits_rows` in the first rows of
    /// `act.logits`; returns how many rows that is.
    fn step(&mut self, batch: &ForwardBatch) -> Result<usize, ForwardError> {
        self.last_logits_rows = 0;
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
            return Ok(0);
        }
        if let Some(bucket) = self.graph_bucket(batch) {
            self.pad_decode_batch(batch, bucket);
            let padded = std::mem::take(&mut self.padded);
            let uploaded = self.upload_indices(&padded);
            let (key, width) = (bucket as u64 | (padded.max_blocks_per_seq as u64) << 32, padded.max_blocks_per_seq);
            self.padded = padded;
            uploaded?;
            if !self.graphs {
                self.run_layers(bucket, bucket, bucket, width)?;
            } else if !self.backend.replay(key)? {
                self.backend.begin_capture(key)?;
                let recorded = self.run_layers(bucket, bucket, bucket, width);
                self.backend.end_capture(key)?;
                recorded?;
                if !self.backend.replay(key)? {
                    return Err(BackendError::Device("a recorded step could not be replayed".into()).into());
                }
            }
        } else {
            self.upload_indices(batch)?;
            self.run_layers(n, batch.num_seqs, n_logits, batch.max_blocks_per_seq)?;
        }
        self.last_logits_rows = n_logits;
        Ok(n_logits)
    }

    /// The arithmetic every layer's attention runs in (`--attention`).
    pub fn set_attention_arithmetic(&mut self, arithmetic: AttentionArithmetic) {
        self.attention.iter_mut().for_each(|p| p.arithmetic = arithmetic);
    }

    /// Runs decode steps padded to bucket sizes even without graphs, so tests can check on the
    /// CPU that padding rows change nothing.
    pub fn set_padded_decode(&mut self, on: bool) {
        self.pad_decode = on || self.graphs;
    }

    /// The padded batch size a decode step is recorded at, if this step can be: every sequence
    /// computes one token and samples it.
    fn graph_bucket(&self, batch: &ForwardBatch) -> Option<usize> {
        let n = batch.num_tokens();
        if !self.pad_decode || n != batch.num_seqs || batch.logits_rows.len() != n || batch.logits_rows.iter().enumerate().any(|(i, &r)| r as usize != i) {
            return None;
        }
        GRAPH_BUCKETS.iter().copied().find(|&b| b >= n).filter(|&b| b <= self.cap.max_seqs && b <= self.cap.max_tokens)
    }

    /// Copies a decode batch into `self.padded` with `bucket - n` padding rows: token 0 at
    /// position 0 of its own one-block sequence, whose K/V lands in the spare block.
    fn pad_decode_batch(&mut self, batch: &ForwardBatch, bucket: usize) {
        let p = &mut self.padded;
        let (n, width, spare) = (batch.num_tokens(), batch.max_blocks_per_seq, self.kv_layout.num_blocks as u32);
        p.clone_from(batch);
        p.token_ids.resize(bucket, 0);
        p.positions.resize(bucket, 0);
        p.token_seq.extend(n as u32..bucket as u32);
        p.slots.resize(bucket, spare * batch.block_size as u32);
        p.block_tables.resize(bucket * width, spare);
        p.logits_rows.extend(n as u32..bucket as u32);
        p.num_seqs = bucket;
    }

    /// Issues every kernel of one step on the uploaded indices; nothing here waits for the
    /// device, so a step can be recorded.
    fn run_layers(&mut self, n: usize, num_seqs: usize, n_logits: usize, max_blocks_per_seq: usize) -> Result<(), ForwardError> {
        let (b, w, a, cfg) = (&self.backend, &self.weights, &mut self.act, &self.cfg);
        let (d, qd, kvd, ff) = (cfg.hidden, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_hidden);
        let attn_batch = AttentionBatch {
            num_tokens: n,
            num_seqs,
            positions: &a.positions,
            token_seq: &a.token_seq,
            slots: &a.slots,
            block_tables: &a.block_tables,
            max_blocks_per_seq,
        };
        b.embed(&w.token_embd, &a.tokens, n, &mut a.hidden)?;
        if cfg.embed_scale != 1.0 {
            b.scale(&mut a.hidden, cfg.embed_scale, n * d)?;
        }
        let activation = cfg.block().activation;
        for (i, l) in w.layers.iter().enumerate() {
            let kind = cfg.layer_kinds[i];
            // Attention block.
            b.rms_norm(&a.hidden, &l.attn_norm, cfg.norm_eps, n, d, &mut a.normed)?;
            // Families with per-head q/k norms project into side buffers, normed into q and k.
            let (q_out, k_out) = match &mut a.qk_raw {
                Some((q_raw, k_raw)) => (q_raw, k_raw),
                None => (&mut a.q, &mut a.k),
            };
            b.matmul_many(&a.normed, n, &mut [(&l.wq, &mut *q_out), (&l.wk, &mut *k_out), (&l.wv, &mut a.v)])?;
            if let (Some(bq), Some(bk), Some(bv)) = (&l.bq, &l.bk, &l.bv) {
                b.add_bias(q_out, bq, n, qd)?;
                b.add_bias(k_out, bk, n, kvd)?;
                b.add_bias(&mut a.v, bv, n, kvd)?;
            }
            if let (Some((q_raw, k_raw)), Some(qn), Some(kn)) = (&a.qk_raw, &l.q_norm, &l.k_norm) {
                b.rms_norm(q_raw, qn, cfg.norm_eps, n * cfg.heads, cfg.head_dim, &mut a.q)?;
                b.rms_norm(k_raw, kn, cfg.norm_eps, n * cfg.kv_heads, cfg.head_dim, &mut a.k)?;
            }
            if kind.rope {
                let rope = &self.ropes[kind.sliding as usize];
                b.rope(&mut a.q, attn_batch.positions, n, cfg.heads, cfg.head_dim, rope)?;
                b.rope(&mut a.k, attn_batch.positions, n, cfg.kv_heads, cfg.head_dim, rope)?;
            }
            if let Some(qs) = cfg.query_scale {
                b.scale(&mut a.q, qs, n * qd)?;
            }
            b.write_kv(&mut self.kv, i, &a.k, &a.v, attn_batch.slots, n)?;
            b.attention(&self.kv, i, &a.q, cfg.heads, &self.attention[i], &attn_batch, &mut a.attn)?;
            b.matmul(&a.attn, &l.wo, n, &mut a.proj)?;
            residual(b, &mut a.hidden, &a.proj, l.post_attn_norm.as_ref(), cfg.norm_eps, n, d, &mut a.normed)?;
            // Feed-forward block (gated: SwiGLU or GeGLU).
            b.rms_norm(&a.hidden, &l.ffn_norm, cfg.norm_eps, n, d, &mut a.normed)?;
            match &l.ffn {
                FeedForward::Dense { gate, up, down } => {
                    b.matmul_many(&a.normed, n, &mut [(gate, &mut a.gate), (up, &mut a.up)])?;
                    b.glu(activation, &a.gate, &a.up, n * ff, &mut a.act)?;
                    b.matmul(&a.act, down, n, &mut a.proj)?;
                }
                FeedForward::Experts(x) => {
                    let eb = a.experts.as_mut().expect("expert buffers for a mixture");
                    mixture(b, cfg, x, eb, &a.normed, n, &mut a.proj)?;
                }
            }
            residual(b, &mut a.hidden, &a.proj, l.post_ffn_norm.as_ref(), cfg.norm_eps, n, d, &mut a.normed)?;
        }
        if n_logits == 0 {
            return Ok(());
        }
        // Only rows that sample go through the final norm and the (large) output projection.
        b.gather_rows(&a.hidden, &a.logits_rows, n_logits, d, &mut a.sel)?;
        b.rms_norm(&a.sel, &w.output_norm, cfg.norm_eps, n_logits, d, &mut a.sel_norm)?;
        b.matmul(&a.sel_norm, w.output_matrix(), n_logits, &mut a.logits)?;
        if cfg.final_softcap > 0.0 {
            b.softcap(&mut a.logits, cfg.final_softcap, n_logits * cfg.vocab_size)?;
        }
        Ok(())
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

/// A mixture-of-experts block as llama.cpp's `build_moe_ffn` runs it: router logits, the chosen
/// experts and their weights, each slot's gated FFN (the slots of one expert as one matmul), the
/// weighted sum of the slots, then Qwen2-MoE's shared expert behind its sigmoid gate.
fn mixture<B: Backend>(b: &B, cfg: &ModelConfig, x: &ExpertWeights<B>, eb: &mut ExpertBuffers<B>, normed: &B::Buffer, n: usize, out: &mut B::Buffer) -> Result<(), BackendError> {
    let e = cfg.experts.as_ref().expect("a mixture's config");
    let (k, activation) = (e.route.used, cfg.block().activation);
    b.matmul(normed, &x.router, n, &mut eb.logits)?;
    b.route_experts(&eb.logits, n, &e.route, &mut eb.ids, &mut eb.weights)?;
    b.matmul_experts(normed, false, n, k, &eb.ids, &x.gate, &mut eb.gate)?;
    b.matmul_experts(normed, false, n, k, &eb.ids, &x.up, &mut eb.up)?;
    b.glu(activation, &eb.gate, &eb.up, n * k * e.ffn_hidden, &mut eb.act)?;
    b.matmul_experts(&eb.act, true, n, k, &eb.ids, &x.down, &mut eb.out)?;
    b.combine_experts(&eb.out, &eb.weights, n, k, cfg.hidden, out)?;
    if let (Some(sh), Some([logit, gate, up, act, y])) = (&x.shared, &mut eb.shared) {
        b.matmul(normed, &sh.gate_inp, n, logit)?;
        b.matmul_many(normed, n, &mut [(&sh.gate, gate), (&sh.up, up)])?;
        b.glu(activation, gate, up, n * e.shared_ffn, act)?;
        b.matmul(act, &sh.down, n, y)?;
        b.add_gated(out, y, logit, n, cfg.hidden)?;
    }
    Ok(())
}

/// `hidden += out`, or `hidden += rms_norm(out) · post_norm` where the family norms a block's
/// output before adding it (Gemma); `scratch` takes the normed rows.
#[allow(clippy::too_many_arguments)]
fn residual<B: Backend>(b: &B, hidden: &mut B::Buffer, out: &B::Buffer, post_norm: Option<&B::Buffer>, eps: f32, n: usize, d: usize, scratch: &mut B::Buffer) -> Result<(), BackendError> {
    match post_norm {
        Some(w) => {
            b.rms_norm(out, w, eps, n, d, scratch)?;
            b.add(hidden, scratch, n * d)
        }
        None => b.add(hidden, out, n * d),
    }
}

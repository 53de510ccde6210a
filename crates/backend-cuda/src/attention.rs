//! Paged attention (`kernels/attention.cu`): which kernels run and how the context is split.
//!
//! The plan is a pure function of the call's sizes (never of positions or block tables), so a
//! decode step records into a CUDA graph and replays with new indices:
//! - every token goes to the split-context decode kernel, unless the batch has more tokens than
//!   sequences (some sequence brings a prompt chunk): then tokens whose sequence has several
//!   tokens go to the flash-style prefill kernel and the rest to decode, each kernel telling its
//!   own tokens apart on the device (`classify`);
//! - the number of splits grows until the grid fills the GPU, bounded by the context the block
//!   tables can address (`max_blocks_per_seq * block_size`) and by the partials scratch;
//! - head sizes without specialized kernels use the one-warp-per-head generic kernel.

use rill_backend::{AttentionBatch, AttentionParams, BackendError, BackendResult, KvDType};

use crate::args::{self, AttnArgs};
use crate::memory::{addr, check_len, to_i32, CudaBuffer, CudaKvCache, PARTIAL_ROWS};
use crate::module::{ATTN_HEAD_DIMS, DECODE_GROUPS};
use crate::CudaBackend;

/// Shortest context slice one decode CTA takes when splitting.
const MIN_SPLIT_LEN: usize = 256;
/// Split lengths are multiples of this.
const SPLIT_ALIGN: usize = 64;
/// Decode CTAs wanted per SM before splitting stops.
const CTAS_PER_SM: usize = 4;
/// Largest head size any kernel takes.
pub const MAX_HEAD_DIM: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnPlan {
    /// Index into `ATTN_HEAD_DIMS`, or `None` for the generic kernel.
    pub hd_index: Option<usize>,
    /// Index into `DECODE_GROUPS` (query heads per decode CTA).
    pub group_index: usize,
    pub head_chunks: usize,
    pub splits: usize,
    pub split_len: usize,
    /// Whether the prefill kernel runs too (and both classify tokens).
    pub prefill: bool,
    /// Tokens per prefill CTA.
    pub tq: usize,
}

/// `partial_rows`: rows of split partials available (0: no splitting).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    num_tokens: usize,
    num_seqs: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    max_blocks: usize,
    sms: usize,
    partial_rows: usize,
) -> AttnPlan {
    let group = heads / kv_heads.max(1);
    let hd_index = ATTN_HEAD_DIMS.iter().position(|&h| h == head_dim);
    let group_index = DECODE_GROUPS.iter().position(|&g| g >= group.min(8)).unwrap_or(DECODE_GROUPS.len() - 1);
    let head_chunks = group.div_ceil(DECODE_GROUPS[group_index]).max(1);
    let ctx = (max_blocks * block_size).max(1);
    let mut splits = 1;
    if hd_index.is_some() && num_tokens > 0 {
        let ctas = num_tokens * kv_heads * head_chunks;
        let want = (CTAS_PER_SM * sms.max(1)).div_ceil(ctas.max(1));
        let by_len = ctx.div_ceil(MIN_SPLIT_LEN);
        let by_scratch = partial_rows / (num_tokens * heads).max(1);
        splits = want.min(by_len).min(by_scratch).max(1);
    }
    let split_len = ctx.div_ceil(splits).next_multiple_of(SPLIT_ALIGN);
    let splits = ctx.div_ceil(split_len);
    let prefill = hd_index.is_some() && num_tokens > num_seqs && group >= 1 && group <= args::prefill_rows(head_dim);
    let tq = if prefill { args::prefill_rows(head_dim) / group } else { 1 };
    AttnPlan { hd_index, group_index, head_chunks, splits, split_len, prefill, tq }
}

impl CudaBackend {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn paged_attention(
        &self,
        cache: &CudaKvCache,
        layer: usize,
        q: &CudaBuffer,
        heads: usize,
        params: &AttentionParams,
        batch: &AttentionBatch<'_, Self>,
        out: &mut CudaBuffer,
    ) -> BackendResult<()> {
        let l = cache.layout;
        let (hd, kv_heads, n) = (l.head_dim, l.kv_heads, batch.num_tokens);
        if hd == 0 || kv_heads == 0 || heads == 0 || !heads.is_multiple_of(kv_heads) || layer >= l.layers {
            let detail = format!("{heads} heads over {kv_heads} KV heads of dim {hd}, layer {layer}");
            return Err(BackendError::Shape { op: "attention", detail });
        }
        if hd > MAX_HEAD_DIM {
            return Err(BackendError::Unsupported { backend: "cuda", what: format!("attention with head_dim {hd} (at most {MAX_HEAD_DIM})") });
        }
        check_len("attention", "q", q.len, n * heads * hd)?;
        check_len("attention", "out", out.len, n * heads * hd)?;
        check_len("attention", "positions", batch.positions.len, n)?;
        check_len("attention", "token_seq", batch.token_seq.len, n)?;
        check_len("attention", "block_tables", batch.block_tables.len, batch.num_seqs * batch.max_blocks_per_seq)?;
        if n == 0 {
            return Ok(());
        }
        if batch.num_seqs == 0 || batch.max_blocks_per_seq == 0 {
            return Err(BackendError::Shape { op: "attention", detail: format!("{n} tokens but no sequences or empty block tables") });
        }
        to_i32("attention", "q elements", n * heads * hd)?;
        to_i32("attention", "cache slots", l.num_blocks * l.block_size * kv_heads)?;

        let st = self.state.borrow();
        let sc = &st.scratch;
        let partial_rows = if sc.part_acc.is_some() && sc.part_head_dim >= hd { PARTIAL_ROWS } else { 0 };
        let p = plan(n, batch.num_seqs, heads, kv_heads, hd, l.block_size, batch.max_blocks_per_seq, self.dev.info.multiprocessors, partial_rows);
        let s = &self.dev.stream;
        let kv = (l.dtype == KvDType::F32) as usize;
        let a = AttnArgs {
            q: addr(&q.data, s),
            out: addr(&out.data, s),
            k_cache: addr(&cache.k[layer], s),
            v_cache: addr(&cache.v[layer], s),
            positions: addr(&batch.positions.data, s),
            token_seq: addr(&batch.token_seq.data, s),
            block_tables: addr(&batch.block_tables.data, s),
            part_acc: sc.part_acc.as_ref().map_or(0, |b| addr(b, s)),
            part_ml: sc.part_ml.as_ref().map_or(0, |b| addr(b, s)),
            num_tokens: to_i32("attention", "tokens", n)?,
            num_seqs: to_i32("attention", "sequences", batch.num_seqs)?,
            heads: heads as i32,
            kv_heads: kv_heads as i32,
            group: (heads / kv_heads) as i32,
            head_dim: hd as i32,
            block_size: to_i32("attention", "block_size", l.block_size)?,
            max_blocks: to_i32("attention", "max_blocks_per_seq", batch.max_blocks_per_seq)?,
            num_blocks: to_i32("attention", "num_blocks", l.num_blocks)?,
            split_len: to_i32("attention", "split length", p.split_len)?,
            splits: p.splits as i32,
            head_chunks: p.head_chunks as i32,
            classify: p.prefill as i32,
            tq: p.tq as i32,
            // A capped score is c · tanh(q·k · scale / c): the kernels pre-scale the query by scale / c.
            scale: if params.softcap > 0.0 { params.scale / params.softcap } else { params.scale },
            softcap: params.softcap,
            window: i32::try_from(params.window).map_err(|_| BackendError::Shape { op: "attention", detail: format!("window {}", params.window) })?,
            pad: 0,
        };
        let k = &self.dev.kernels;
        let (n32, heads32) = (n as u32, heads as u32);
        let Some(hdi) = p.hd_index else {
            return self.dev.launch(&k.generic[kv], (n32, heads32, 1), 32, 0, &a, "attention");
        };
        let grid_y = u32::try_from(kv_heads * p.head_chunks).map_err(|_| BackendError::Shape { op: "attention", detail: "too many heads".into() })?;
        if grid_y > 65_535 || p.splits > 65_535 || heads > 65_535 {
            return Err(BackendError::Shape { op: "attention", detail: format!("{heads} heads / {} splits exceed the grid", p.splits) });
        }
        self.dev.launch(&k.decode[kv][hdi][p.group_index], (n32, grid_y, p.splits as u32), args::ATT_THREADS, 0, &a, "attention")?;
        if p.splits > 1 {
            let threads = (hd.min(256) as u32).next_multiple_of(32);
            self.dev.launch(&k.merge, (n32, heads32, 1), threads, 0, &a, "attention")?;
        }
        if p.prefill {
            let ctas = n.div_ceil(p.tq) as u32;
            let smem = args::prefill_smem_bytes(hd) as u32;
            self.dev.launch(&k.prefill[kv][hdi], (ctas, kv_heads as u32, 1), args::ATT_THREADS, smem, &a, "attention")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_splits_fill_the_gpu_and_respect_the_scratch() {
        // Batch 1, 8 KV heads of a 32-head model, 4096 positions addressable, 132 SMs.
        let p = plan(1, 1, 32, 8, 128, 16, 256, 132, PARTIAL_ROWS);
        assert_eq!((p.hd_index, p.group_index, p.head_chunks), (Some(1), 2, 1));
        assert_eq!(p.splits, 16);
        assert_eq!(p.split_len, 256);
        assert!(!p.prefill);
        // Many decode tokens: no split needed.
        let p = plan(256, 256, 32, 8, 128, 16, 256, 132, PARTIAL_ROWS);
        assert_eq!(p.splits, 1);
        // No scratch: never split.
        assert_eq!(plan(1, 1, 32, 8, 128, 16, 256, 132, 0).splits, 1);
        // The scratch bounds tokens * heads * splits.
        for n in [1, 3, 17, 100, 1000] {
            let p = plan(n, n, 32, 4, 64, 16, 4096, 132, PARTIAL_ROWS);
            assert!(p.splits == 1 || n * 32 * p.splits <= PARTIAL_ROWS, "{n}: {p:?}");
            assert!(p.splits * p.split_len >= 4096 * 16, "splits cover the context");
            assert_eq!(p.split_len % SPLIT_ALIGN, 0);
        }
    }

    #[test]
    fn splits_cover_every_position_and_none_is_empty_at_the_end() {
        for (mb, bs) in [(1, 16), (3, 16), (7, 32), (256, 16), (1000, 16)] {
            let p = plan(1, 1, 8, 8, 64, bs, mb, 132, PARTIAL_ROWS);
            let ctx = mb * bs;
            assert!(p.splits * p.split_len >= ctx && (p.splits - 1) * p.split_len < ctx, "{mb}x{bs}: {p:?}");
        }
    }

    #[test]
    fn groups_map_to_decode_variants_and_chunks() {
        assert_eq!(plan(1, 1, 32, 32, 64, 16, 8, 132, 0).group_index, 0);
        assert_eq!(plan(1, 1, 14, 2, 64, 16, 8, 132, 0).group_index, 3); // group 7 -> G = 8
        let p = plan(1, 1, 64, 2, 128, 16, 8, 132, 0); // group 32 -> 4 chunks of 8
        assert_eq!((p.group_index, p.head_chunks), (3, 4));
        assert_eq!(plan(1, 1, 8, 8, 80, 16, 8, 132, PARTIAL_ROWS).hd_index, None, "head_dim 80 is generic");
        assert_eq!(plan(1, 1, 8, 8, 80, 16, 8, 132, PARTIAL_ROWS).splits, 1);
    }

    #[test]
    fn prefill_runs_only_when_a_sequence_brings_several_tokens() {
        let p = plan(512, 1, 32, 8, 128, 16, 64, 132, PARTIAL_ROWS);
        assert!(p.prefill);
        assert_eq!(p.tq, 16); // 64 query rows / group 4
        assert!(!plan(8, 8, 32, 8, 128, 16, 64, 132, PARTIAL_ROWS).prefill);
        let p = plan(40, 3, 9, 3, 256, 16, 64, 132, PARTIAL_ROWS);
        assert!(p.prefill && p.tq == 10); // 32 rows / group 3
        assert!(!plan(40, 3, 128, 1, 64, 16, 64, 132, PARTIAL_ROWS).prefill, "group above the tile");
    }
}

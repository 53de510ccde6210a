//! Causal paged attention, reference version. Each (token, head) pair is one task: it walks its
//! sequence's block table over positions `0..=pos` with an online softmax (running max and sum),
//! so it needs no score buffer and allocates nothing.

use rayon::prelude::*;
use rill_backend::{AttentionBatch, BackendError, BackendResult};

use crate::kv_cache::{CpuKvCache, KvElem, KvStore, LayerKv};
use crate::{check_len, CpuBackend};

/// Largest head dimension the stack accumulator holds.
pub const MAX_HEAD_DIM: usize = 512;

pub fn paged_attention(
    cache: &CpuKvCache,
    layer: usize,
    q: &[f32],
    heads: usize,
    batch: &AttentionBatch<'_, CpuBackend>,
    out: &mut [f32],
) -> BackendResult<()> {
    let l = &cache.layout;
    let (hd, kv_heads, n) = (l.head_dim, l.kv_heads, batch.num_tokens);
    if hd > MAX_HEAD_DIM || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || layer >= l.layers {
        let detail = format!("{heads} heads over {kv_heads} KV heads of dim {hd}, layer {layer}");
        return Err(BackendError::Shape { op: "attention", detail });
    }
    check_len("attention", "q", q.len(), n * heads * hd)?;
    check_len("attention", "out", out.len(), n * heads * hd)?;
    check_len("attention", "positions", batch.positions.len(), n)?;
    check_len("attention", "token_seq", batch.token_seq.len(), n)?;
    check_len("attention", "block_tables", batch.block_tables.len(), batch.num_seqs * batch.max_blocks_per_seq)?;
    // Validate every index up front so the parallel loop below cannot go out of bounds.
    for t in 0..n {
        let (seq, pos) = (batch.token_seq[t] as usize, batch.positions[t] as usize);
        let blocks_needed = pos / l.block_size + 1;
        if seq >= batch.num_seqs || blocks_needed > batch.max_blocks_per_seq {
            let detail = format!("token {t}: sequence {seq} of {}, position {pos}", batch.num_seqs);
            return Err(BackendError::Shape { op: "attention", detail });
        }
        let table = &batch.block_tables[seq * batch.max_blocks_per_seq..][..blocks_needed];
        if let Some(b) = table.iter().find(|&&b| b as usize >= l.num_blocks) {
            return Err(BackendError::Shape { op: "attention", detail: format!("block {b} of {}", l.num_blocks) });
        }
    }
    match &cache.store {
        KvStore::F16(layers) => run(&layers[layer], cache, q, heads, batch, out),
        KvStore::F32(layers) => run(&layers[layer], cache, q, heads, batch, out),
    }
    Ok(())
}

fn run<T: KvElem>(kv: &LayerKv<T>, cache: &CpuKvCache, q: &[f32], heads: usize, batch: &AttentionBatch<'_, CpuBackend>, out: &mut [f32]) {
    let l = &cache.layout;
    let hd = l.head_dim;
    let group = heads / l.kv_heads;
    let kv_row = l.kv_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let n = batch.num_tokens;
    out[..n * heads * hd].par_chunks_mut(hd).enumerate().for_each(|(task, o)| {
        let (t, h) = (task / heads, task % heads);
        let seq = batch.token_seq[t] as usize;
        let pos = batch.positions[t] as usize;
        let table = &batch.block_tables[seq * batch.max_blocks_per_seq..];
        let qh = &q[(t * heads + h) * hd..][..hd];
        let kv_off = (h / group) * hd;
        let mut acc = [0f32; MAX_HEAD_DIM];
        let acc = &mut acc[..hd];
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
        for p in 0..=pos {
            let slot = table[p / l.block_size] as usize * l.block_size + p % l.block_size;
            let base = slot * kv_row + kv_off;
            let k = &kv.k[base..base + hd];
            let s = qh.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() * scale;
            if s > max {
                let correction = (max - s).exp();
                sum *= correction;
                acc.iter_mut().for_each(|a| *a *= correction);
                max = s;
            }
            let w = (s - max).exp();
            sum += w;
            let v = &kv.v[base..base + hd];
            acc.iter_mut().zip(v).for_each(|(a, b)| *a += w * b.to_f32());
        }
        o.iter_mut().zip(acc.iter()).for_each(|(o, a)| *o = a / sum);
    });
}

//! The attention checks: a shuffled paged cache, batches of mixed prefill chunks and decode
//! tokens, under each family's way of forming scores.

use super::{tolerance, Check, Harness};
use crate::{AttentionBatch, AttentionParams, Backend, BackendResult, KvDType, KvLayout};

/// `causal`, or what differs from it.
fn describe(p: &AttentionParams) -> String {
    let mut parts = vec![format!("scale {:.3}", p.scale)];
    if p.softcap > 0.0 {
        parts.push(format!("softcap {}", p.softcap));
    }
    if p.window > 0 {
        parts.push(format!("window {}", p.window));
    }
    parts.join(" ")
}

impl<R: Backend, C: Backend> Harness<'_, R, C> {
    /// Sequences of several lengths in a shuffled paged cache, written with `write_kv`, then
    /// three attention batches: mixed prefill chunks and decode tokens, decode only, and one
    /// long prefill chunk.
    pub(super) fn attention(&mut self, kv_dtype: KvDType, head_dim: usize, params: AttentionParams) {
        let (kv_heads, heads, block_size, layer) = (2, 8, 16, 1);
        let lens = [1usize, 17, 300, 1100];
        let max_blocks = lens.iter().map(|l| l.div_ceil(block_size)).max().unwrap_or(1);
        let layout = KvLayout { layers: 2, num_blocks: 160, block_size, kv_heads, head_dim, dtype: kv_dtype };
        // Shuffled physical blocks, handed out to the sequences in turn.
        let mut free: Vec<u32> = (0..layout.num_blocks as u32).collect();
        for i in (1..free.len()).rev() {
            free.swap(i, self.rng.below(i + 1));
        }
        let mut tables = vec![0u32; lens.len() * max_blocks];
        let mut next = free.into_iter();
        for (s, &len) in lens.iter().enumerate() {
            for b in 0..len.div_ceil(block_size) {
                tables[s * max_blocks + b] = next.next().expect("enough blocks");
            }
        }
        let slot = |s: usize, pos: usize| tables[s * max_blocks + pos / block_size] * block_size as u32 + (pos % block_size) as u32;
        let batches: [Vec<(usize, std::ops::Range<usize>)>; 3] = [
            vec![(0, 0..1), (1, 10..17), (2, 299..300), (3, 1000..1100)],
            lens.iter().enumerate().map(|(s, &l)| (s, l - 1..l)).collect(),
            vec![(3, 0..512)],
        ];
        let kvd = kv_heads * head_dim;
        let case = |name: &str| format!("{name} {kv_dtype:?} kv, head_dim {head_dim}, {}", describe(&params));
        let names = ["mixed", "decode", "prefill 512"];
        let setup = (|| -> BackendResult<_> {
            let (mut cr, mut cc) = (self.r.alloc_kv_cache(layout)?, self.c.alloc_kv_cache(layout)?);
            let all: Vec<(usize, usize)> = lens.iter().enumerate().flat_map(|(s, &l)| (0..l).map(move |p| (s, p))).collect();
            let slots: Vec<u32> = all.iter().map(|&(s, p)| slot(s, p)).collect();
            let (k, v) = (self.random(all.len() * kvd, 2.0)?, self.random(all.len() * kvd, 2.0)?);
            let (sr, sc) = self.indices(&slots)?;
            for l in 0..layout.layers {
                self.r.write_kv(&mut cr, l, &k.r, &v.r, &sr, all.len())?;
                self.c.write_kv(&mut cc, l, &k.c, &v.c, &sc, all.len())?;
            }
            Ok((cr, cc))
        })();
        let (cache_r, cache_c) = match setup {
            Ok(caches) => caches,
            Err(e) => {
                self.checks.push(Check { op: "write_kv", case: case("setup"), rel_err: f64::INFINITY, tolerance: tolerance::ATTENTION, error: Some(e.to_string()) });
                return;
            }
        };
        for (batch, name) in batches.iter().zip(names) {
            self.check("attention", case(name), tolerance::ATTENTION, |h| {
                let (mut positions, mut token_seq, mut slots, mut seq_tables) = (vec![], vec![], vec![], vec![]);
                for (i, (s, range)) in batch.iter().enumerate() {
                    for p in range.clone() {
                        positions.push(p as u32);
                        token_seq.push(i as u32);
                        slots.push(slot(*s, p));
                    }
                    seq_tables.extend_from_slice(&tables[s * max_blocks..(s + 1) * max_blocks]);
                }
                let n = positions.len();
                let q = h.random(n * heads * head_dim, 2.0)?;
                let (pos, seqs, sl, tb) = (h.indices(&positions)?, h.indices(&token_seq)?, h.indices(&slots)?, h.indices(&seq_tables)?);
                let mut out = h.poisoned(n * heads * head_dim)?;
                let rb = AttentionBatch { num_tokens: n, num_seqs: batch.len(), positions: &pos.0, token_seq: &seqs.0, slots: &sl.0, block_tables: &tb.0, max_blocks_per_seq: max_blocks };
                h.r.attention(&cache_r, layer, &q.r, heads, &params, &rb, &mut out.r)?;
                let cb = AttentionBatch { num_tokens: n, num_seqs: batch.len(), positions: &pos.1, token_seq: &seqs.1, slots: &sl.1, block_tables: &tb.1, max_blocks_per_seq: max_blocks };
                h.c.attention(&cache_c, layer, &q.c, heads, &params, &cb, &mut out.c)?;
                Ok(out)
            });
        }
    }
}

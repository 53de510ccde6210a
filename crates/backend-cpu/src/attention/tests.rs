use super::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_backend::{KvDType, KvLayout};


/// A cache whose every slot holds random K/V, a shuffled block table per sequence.
struct Fixture {
    cache: CpuKvCache,
    tables: Vec<u32>,
    max_blocks: usize,
    seqs: usize,
}

fn fixture(rng: &mut ChaCha8Rng, dtype: KvDType, kv_heads: usize, head_dim: usize, seqs: usize, max_ctx: usize) -> Fixture {
    let block_size = 16;
    let max_blocks = max_ctx.div_ceil(block_size);
    let num_blocks = seqs * max_blocks + 3;
    let layout = KvLayout { layers: 2, num_blocks, block_size, kv_heads, head_dim, dtype };
    let mut cache = CpuKvCache::new(layout).unwrap();
    let slots = num_blocks * block_size;
    let row = kv_heads * head_dim;
    for layer in 0..2 {
        let k: Vec<f32> = (0..slots * row).map(|_| rng.random_range(-1.0..1.0)).collect();
        let v: Vec<f32> = (0..slots * row).map(|_| rng.random_range(-1.0..1.0)).collect();
        let all: Vec<u32> = (0..slots as u32).collect();
        cache.write(layer, &k, &v, &all, slots).unwrap();
    }
    let mut blocks: Vec<u32> = (0..num_blocks as u32).collect();
    blocks.shuffle(rng);
    let tables = blocks[..seqs * max_blocks].to_vec();
    Fixture { cache, tables, max_blocks, seqs }
}

/// Runs attention for `(seq, pos)` tokens with `q`.
fn run(isa: SimdIsa, pool: &WorkerPool, f: &Fixture, tokens: &[(u32, u32)], q: &[f32], heads: usize, params: &AttentionParams) -> Vec<f32> {
    let positions: Vec<u32> = tokens.iter().map(|t| t.1).collect();
    let token_seq: Vec<u32> = tokens.iter().map(|t| t.0).collect();
    let slots = vec![0u32; tokens.len()];
    let batch = AttentionBatch::<CpuBackend> {
        num_tokens: tokens.len(),
        num_seqs: f.seqs,
        positions: &positions,
        token_seq: &token_seq,
        slots: &slots,
        block_tables: &f.tables,
        max_blocks_per_seq: f.max_blocks,
    };
    let mut out = vec![f32::NAN; tokens.len() * heads * f.cache.layout.head_dim];
    paged_attention(isa, pool, &f.cache, 1, q, heads, params, &batch, &mut out).unwrap();
    out
}

fn random_q(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// SIMD vs reference: the same arithmetic (ggml's), so the same bits.
#[test]
fn simd_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let pools = [WorkerPool::new(1).unwrap(), WorkerPool::new(3).unwrap()];
    let isas = SimdIsa::available();
    assert!(isas.contains(&SimdIsa::Portable));
    for dtype in [KvDType::F16, KvDType::F32] {
        for head_dim in [8, 24, 64, 72, 128, 256] {
            for (heads, kv_heads) in [(1, 1), (4, 4), (9, 3), (8, 1), (6, 2), (16, 8)] {
                let max_ctx = 600;
                let f = fixture(&mut rng, dtype, kv_heads, head_dim, 3, max_ctx);
                // Decode tokens across block and chunk boundaries, then a causal prefill
                // chunk of sequence 2 crossing position 256.
                let mut tokens: Vec<(u32, u32)> = [0, 15, 16, 17, 255, 256, 257, 599].iter().map(|&p| (p % 2, p)).collect();
                tokens.extend((240..270).map(|p| (2, p)));
                let causal = AttentionParams::causal(head_dim);
                // Gemma 2's scores (soft-capped, a window inside the first chunk) and a window
                // starting mid-block.
                let variants = [(1.0, causal), (8.0, causal), (8.0, AttentionParams { scale: 1.0, softcap: 30.0, window: 100 }), (1.0, AttentionParams { window: 17, ..causal })];
                for (q_scale, params) in variants {
                    let q = random_q(&mut rng, tokens.len() * heads * head_dim, q_scale);
                    let want = run(SimdIsa::Reference, &pools[0], &f, &tokens, &q, heads, &params);
                    for &isa in &isas[1..] {
                        for pool in &pools {
                            let got = run(isa, pool, &f, &tokens, &q, heads, &params);
                            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                                assert!(
                                    g.to_bits() == w.to_bits(),
                                    "{isa:?} {dtype:?} hd {head_dim} {heads}/{kv_heads} heads, {} threads, q×{q_scale}, {params:?}: \
                                     element {i} (token {:?}) {g} vs {w}",
                                    pool.threads(),
                                    tokens[i / (heads * head_dim)]
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One (token, head) of ggml's one-chunk flash attention written out plainly: f16 query,
/// `ggml_vec_dot_f16`'s order, `expf` (glibc's, which the kernel clones), an f16 value
/// accumulator, `acc · (1/S)`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn follows_ggml_flash_attention() {
    use half::f16;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (hd, pos) = (64, 40);
    let f = fixture(&mut rng, KvDType::F16, 1, hd, 1, 64);
    let q = random_q(&mut rng, hd, 2.0);
    let pool = WorkerPool::new(1).unwrap();
    let (k, v) = match &f.cache.store {
        KvStore::F16(layers) => (&layers[1].k, &layers[1].v),
        KvStore::F32(_) => unreachable!(),
    };
    let q16: Vec<f32> = q.iter().map(|x| f16::from_f32(*x).to_f32()).collect();
    let (mut m, mut s_sum, mut acc) = (f32::NEG_INFINITY, 0f32, vec![f16::ZERO; hd]);
    for p in 0..=pos {
        let slot = f.tables[p / 16] as usize * 16 + p % 16;
        let (kr, vr) = (&k[slot * hd..][..hd], &v[slot * hd..][..hd]);
        // ggml_vec_dot_f16, AVX-512: 4 × 16 lanes, (a₀+a₂)+(a₁+a₃), then reduce_add.
        let prod: Vec<f32> = (0..hd).map(|i| q16[i] * kr[i].to_f32()).collect();
        let x: Vec<f32> = (0..16).map(|l| (prod[l] + prod[32 + l]) + (prod[16 + l] + prod[48 + l])).collect();
        let h: Vec<f32> = (0..8).map(|l| x[l + 8] + x[l]).collect();
        let t: Vec<f32> = (0..4).map(|l| h[l + 4] + h[l]).collect();
        let s = ((t[2] + t[0]) + (t[3] + t[1])) * (1.0 / 8.0);
        let (mut ms, mut vs) = (1.0f32, 1.0f32);
        if s > m {
            ms = (m - s).exp();
            m = s;
            acc.iter_mut().for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
        } else {
            vs = (s - m).exp();
        }
        acc.iter_mut().zip(vr).for_each(|(a, v)| *a = f16::from_f32(v.to_f32().mul_add(vs, a.to_f32())));
        s_sum = s_sum.mul_add(ms, vs);
    }
    let want: Vec<f32> = acc.iter().map(|a| a.to_f32() * (1.0 / s_sum)).collect();
    for &isa in SimdIsa::available() {
        let got = run(isa, &pool, &f, &[(0, pos as u32)], &q, 1, &AttentionParams::causal(hd));
        assert_eq!(got, want, "{isa:?}");
    }
}

/// A token's output is bit-identical alone or in a batch, with any thread count (chunks as
/// tasks or chunks in order), in decode or inside a prefill chunk, with or without a sliding
/// window (which skips whole chunks).
#[test]
fn batch_invariant_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (heads, kv_heads, hd) = (9, 3, 64);
    let f = fixture(&mut rng, KvDType::F16, kv_heads, hd, 4, 1100);
    let tokens: Vec<(u32, u32)> = (0..40).map(|i| (i % 4, [3u32, 255, 256, 700, 1099][i as usize % 5].saturating_sub(i / 5))).collect();
    let q = random_q(&mut rng, tokens.len() * heads * hd, 2.0);
    let pools = [WorkerPool::new(1).unwrap(), WorkerPool::new(2).unwrap(), WorkerPool::new(5).unwrap()];
    for params in [AttentionParams::causal(hd), AttentionParams { window: 300, ..AttentionParams::causal(hd) }] {
        for &isa in SimdIsa::available() {
            let batched = run(isa, &pools[0], &f, &tokens, &q, heads, &params);
            for pool in &pools {
                assert_eq!(run(isa, pool, &f, &tokens, &q, heads, &params), batched, "{isa:?} {} threads, batch, {params:?}", pool.threads());
                for (i, &tok) in tokens.iter().enumerate().step_by(7) {
                    let span = heads * hd;
                    let alone = run(isa, pool, &f, &[tok], &q[i * span..(i + 1) * span], heads, &params);
                    assert_eq!(alone, batched[i * span..(i + 1) * span], "{isa:?} {} threads, token {i} alone, {params:?}", pool.threads());
                }
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let f = fixture(&mut rng, KvDType::F16, 2, 8, 1, 32);
    let pool = WorkerPool::new(2).unwrap();
    let (positions, token_seq, slots) = (vec![40u32], vec![0u32], vec![0u32]);
    let batch = AttentionBatch::<CpuBackend> {
        num_tokens: 1,
        num_seqs: 1,
        positions: &positions,
        token_seq: &token_seq,
        slots: &slots,
        block_tables: &f.tables,
        max_blocks_per_seq: f.max_blocks,
    };
    let mut out = vec![0.0; 4 * 8];
    assert!(paged_attention(SimdIsa::selected(), &pool, &f.cache, 1, &[0.0; 32], 4, &AttentionParams::causal(8), &batch, &mut out).is_err(), "position past the table");
    assert!(paged_attention(SimdIsa::selected(), &pool, &f.cache, 1, &[0.0; 24], 3, &AttentionParams::causal(8), &batch, &mut out).is_err(), "3 heads over 2 KV heads");
}

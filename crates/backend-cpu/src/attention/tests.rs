use super::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_backend::{AttentionArithmetic, KvDType, KvLayout};


/// A cache whose every slot holds random K/V, a shuffled block table per sequence.
struct Fixture {
    cache: CpuKvCache,
    tables: Vec<u32>,
    max_blocks: usize,
    seqs: usize,
}

fn fixture(rng: &mut ChaCha8Rng, dtype: KvDType, kv_heads: usize, head_dim: usize, seqs: usize, max_ctx: usize) -> Fixture {
    fixture_in_blocks_of(16, rng, dtype, kv_heads, head_dim, seqs, max_ctx)
}

fn fixture_in_blocks_of(block_size: usize, rng: &mut ChaCha8Rng, dtype: KvDType, kv_heads: usize, head_dim: usize, seqs: usize, max_ctx: usize) -> Fixture {
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

/// `params` with ggml's arithmetic.
fn ggml(params: AttentionParams) -> AttentionParams {
    AttentionParams { arithmetic: AttentionArithmetic::Ggml, ..params }
}

/// ggml's arithmetic: SIMD vs reference compute the same operations, so the same bits.
#[test]
fn ggml_simd_matches_reference() {
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
                let variants = [(1.0, causal), (8.0, causal), (8.0, AttentionParams { scale: 1.0, softcap: 30.0, window: 100, ..causal }), (1.0, AttentionParams { window: 17, ..causal })];
                for (q_scale, params) in variants {
                    let params = ggml(params);
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
        let got = run(isa, &pool, &f, &[(0, pos as u32)], &q, 1, &ggml(AttentionParams::causal(hd)));
        assert_eq!(got, want, "{isa:?}");
    }
}

/// A token's output is bit-identical alone or in a batch, with any thread count (chunks as
/// tasks or chunks in order), in decode or inside a prefill chunk, with or without a sliding
/// window (which skips whole chunks), in both arithmetics.
#[test]
fn batch_invariant_bit_for_bit() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (heads, kv_heads, hd) = (9, 3, 64);
    let f = fixture(&mut rng, KvDType::F16, kv_heads, hd, 4, 1100);
    let tokens: Vec<(u32, u32)> = (0..40).map(|i| (i % 4, [3u32, 255, 256, 700, 1099][i as usize % 5].saturating_sub(i / 5))).collect();
    let q = random_q(&mut rng, tokens.len() * heads * hd, 2.0);
    let pools = [WorkerPool::new(1).unwrap(), WorkerPool::new(2).unwrap(), WorkerPool::new(5).unwrap()];
    let causal = AttentionParams::causal(hd);
    for params in [causal, AttentionParams { window: 300, ..causal }, ggml(causal), ggml(AttentionParams { window: 300, ..causal })] {
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

/// Attention in float64 from the cache's values and the unrounded query: the exact math both
/// arithmetics approximate.
fn exact(f: &Fixture, tokens: &[(u32, u32)], q: &[f32], heads: usize, params: &AttentionParams) -> Vec<f64> {
    let l = &f.cache.layout;
    let (hd, group) = (l.head_dim, heads / l.kv_heads);
    let kv_row = l.kv_heads * hd;
    let (k, v): (Vec<f64>, Vec<f64>) = match &f.cache.store {
        KvStore::F16(layers) => (layers[1].k.iter().map(|x| x.to_f64()).collect(), layers[1].v.iter().map(|x| x.to_f64()).collect()),
        KvStore::F32(layers) => (layers[1].k.iter().map(|&x| x as f64).collect(), layers[1].v.iter().map(|&x| x as f64).collect()),
    };
    let mut out = vec![0f64; tokens.len() * heads * hd];
    for (t, &(seq, pos)) in tokens.iter().enumerate() {
        let table = &f.tables[seq as usize * f.max_blocks..];
        for h in 0..heads {
            let qh: Vec<f64> = q[(t * heads + h) * hd..][..hd].iter().map(|&x| x as f64).collect();
            let rows: Vec<usize> = (params.first_position(pos as usize)..=pos as usize)
                .map(|p| (table[p / l.block_size] as usize * l.block_size + p % l.block_size) * kv_row + (h / group) * hd)
                .collect();
            let scores: Vec<f64> = rows
                .iter()
                .map(|&r| {
                    let s = qh.iter().zip(&k[r..r + hd]).map(|(a, b)| a * b).sum::<f64>() * params.scale as f64;
                    if params.softcap > 0.0 { params.softcap as f64 * (s / params.softcap as f64).tanh() } else { s }
                })
                .collect();
            let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
            let total: f64 = weights.iter().sum();
            let o = &mut out[(t * heads + h) * hd..][..hd];
            for (&r, w) in rows.iter().zip(&weights) {
                o.iter_mut().zip(&v[r..r + hd]).for_each(|(o, v)| *o += w / total * v);
            }
        }
    }
    out
}

fn max_error(got: &[f32], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(&g, w)| (g as f64 - w).abs()).fold(0.0, f64::max)
}

/// The fast arithmetic against float64 math, on every ISA, over short and long contexts (the
/// outputs are averages of values in [-1, 1]): within 5e-6 everywhere, and against an f16 cache
/// closer than ggml's arithmetic (f16 query and accumulator) in every case.
#[test]
fn fast_is_closer_to_exact_math_than_ggml() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let pool = WorkerPool::new(2).unwrap();
    for (dtype, head_dim, heads, kv_heads) in [(KvDType::F16, 64, 9, 3), (KvDType::F16, 128, 8, 2), (KvDType::F32, 64, 4, 4), (KvDType::F16, 72, 2, 1), (KvDType::F16, 256, 4, 2)] {
        let f = fixture(&mut rng, dtype, kv_heads, head_dim, 2, 3000);
        let mut tokens: Vec<(u32, u32)> = [0, 5, 255, 256, 1000, 2999].iter().map(|&p| (p % 2, p)).collect();
        tokens.extend((1500..1520).map(|p| (1, p)));
        let causal = AttentionParams::causal(head_dim);
        for (q_scale, params) in [(1.0, causal), (6.0, causal), (4.0, AttentionParams { scale: 1.0, softcap: 30.0, window: 700, ..causal })] {
            let q = random_q(&mut rng, tokens.len() * heads * head_dim, q_scale);
            let want = exact(&f, &tokens, &q, heads, &params);
            let ggml_error = max_error(&run(SimdIsa::selected(), &pool, &f, &tokens, &q, heads, &ggml(params)), &want);
            for &isa in SimdIsa::available() {
                let fast_error = max_error(&run(isa, &pool, &f, &tokens, &q, heads, &params), &want);
                let case = format!("{isa:?} {dtype:?} hd {head_dim} {heads}/{kv_heads} heads, q×{q_scale}, {params:?}");
                eprintln!("{case}: fast {fast_error:.2e}, ggml {ggml_error:.2e}");
                assert!(fast_error < 5e-6, "{case}: fast arithmetic off by {fast_error:e}");
                if dtype == KvDType::F16 {
                    assert!(fast_error < ggml_error, "{case}: fast {fast_error:e} vs ggml {ggml_error:e}");
                }
            }
        }
    }
}

/// A sequence whose last position fills its block table exactly (no spare entry past it), in
/// decode and in a prefill block, in both arithmetics and every ISA.
#[test]
fn a_full_block_table_is_read_to_its_end() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let (heads, hd) = (4, 64);
    let f = fixture(&mut rng, KvDType::F16, 2, hd, 1, 64);
    let pool = WorkerPool::new(2).unwrap();
    let tokens: Vec<(u32, u32)> = (56..64).map(|p| (0, p)).collect();
    let q = random_q(&mut rng, tokens.len() * heads * hd, 1.0);
    for params in [AttentionParams::causal(hd), ggml(AttentionParams::causal(hd))] {
        let want = exact(&f, &tokens, &q, heads, &params);
        for &isa in SimdIsa::available() {
            let span = heads * hd;
            let last = run(isa, &pool, &f, &tokens[7..], &q[7 * span..], heads, &params);
            let block = run(isa, &pool, &f, &tokens, &q, heads, &params);
            assert!(max_error(&block, &want) < 5e-3, "{isa:?} {params:?}");
            assert_eq!(last, block[7 * span..], "{isa:?} {params:?}: decode vs prefill block");
        }
    }
}

/// Under a sliding window the engine hands back the blocks behind it (their table entries no
/// longer name a block): neither arithmetic reads them, even where a 16-key tile starts before
/// the window (blocks of 4 positions here).
#[test]
fn released_blocks_behind_a_window_are_not_read() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let (heads, hd, window) = (2, 64, 10);
    let mut f = fixture_in_blocks_of(4, &mut rng, KvDType::F16, 1, hd, 1, 64);
    let tokens: Vec<(u32, u32)> = (46..54).map(|p| (0, p)).collect();
    // The window of position 46 starts at 37, in block 9 (its tile at 32, in block 8): blocks
    // 0..9 are released.
    f.tables[..9].fill(u32::MAX);
    let q = random_q(&mut rng, tokens.len() * heads * hd, 1.0);
    let pool = WorkerPool::new(2).unwrap();
    let windowed = AttentionParams { window, ..AttentionParams::causal(hd) };
    for params in [windowed, ggml(windowed)] {
        let want = exact(&f, &tokens, &q, heads, &params);
        for &isa in SimdIsa::available() {
            assert!(max_error(&run(isa, &pool, &f, &tokens, &q, heads, &params), &want) < 5e-3, "{isa:?} {params:?}");
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

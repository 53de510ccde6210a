//! Parity: every kernel on every instruction set this CPU has, against the portable integer
//! kernel (the same bits: every kernel follows ggml's order of float operations) and against the
//! float reference `quant::dot_row` (within the error the 8-bit activations are allowed).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rill_backend::{quant, DType};

use super::*;

const DTYPES: [DType; 12] =
    [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::IQ4NL, DType::Q2K, DType::Q3K, DType::Q4K, DType::Q5K, DType::Q6K, DType::IQ4XS];

struct Case {
    dtype: DType,
    w: Vec<u8>,
    w_f32: Vec<f32>,
    x: Vec<f32>,
    w_rows: usize,
    rows: usize,
}

fn case(rng: &mut ChaCha8Rng, dtype: DType, w_rows: usize, rows: usize, cols: usize) -> Case {
    let row_bytes = dtype.row_bytes(cols).unwrap();
    let mut w = vec![0u8; w_rows * row_bytes];
    let mut w_f32 = vec![0f32; w_rows * cols];
    for i in 0..w_rows {
        // Per-row scale and a mean offset so the mins of Q4_1/Q5_1/K-quants matter.
        let scale = rng.random_range(0.01f32..2.0);
        let mean = rng.random_range(-0.5f32..0.5) * scale;
        let src: Vec<f32> = (0..cols).map(|_| mean + scale * rng.random_range(-1.0f32..1.0)).collect();
        let wr = &mut w[i * row_bytes..(i + 1) * row_bytes];
        quant::quantize_row(dtype, &src, wr).unwrap();
        quant::dequantize_row(dtype, wr, &mut w_f32[i * cols..(i + 1) * cols]).unwrap();
    }
    // Activations with outliers, as real hidden states have.
    let x = (0..rows * cols)
        .map(|_| {
            let v = rng.random_range(-1.0f32..1.0);
            if rng.random_range(0..50) == 0 { v * 20.0 } else { v }
        })
        .collect();
    Case { dtype, w, w_f32, x, w_rows, rows }
}

/// Runs the tile into a NaN-poisoned buffer with a stride and offset, returning `[rows][w_rows]`.
fn run(isa: QuantIsa, c: &Case, acts: &Q8Activations) -> Vec<Vec<f32>> {
    let (offset, stride) = (3, c.w_rows + 5);
    let mut out = vec![f32::NAN; offset + c.rows * stride];
    // SAFETY: `isa` is available, `w` holds `w_rows` rows, every index written is in `out`.
    unsafe {
        if interleaves(isa, c.dtype) {
            let w = InterleavedQ4K::new(&c.w, c.w_rows, acts.cols());
            tile_interleaved(isa, w.groups(0, c.w_rows), c.w_rows, acts, out.as_mut_ptr().add(offset), stride);
        } else {
            tile(isa, c.dtype, &c.w, c.w_rows, acts, out.as_mut_ptr().add(offset), stride);
        }
    }
    (0..c.rows).map(|r| out[offset + r * stride..offset + r * stride + c.w_rows].to_vec()).collect()
}

#[test]
#[allow(clippy::needless_range_loop)] // [r][i] indexes three tables at once
fn every_kernel_matches_the_portable_kernel_and_the_float_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut acts = Q8Activations::default();
    let mut checked = 0;
    for dtype in DTYPES {
        let block = dtype.block_len();
        // Odd block counts (a lone last block), one block, and the default model's widths.
        let widths: Vec<usize> = if block == 32 { vec![32, 96, 576, 1536] } else { vec![256, 768] };
        for cols in widths {
            for (w_rows, rows) in [(1, 1), (4, 1), (5, 3), (9, 7), (16, 4), (3, 2), (2, 5), (7, 4), (6, 13), (16, 64), (5, 6), (4, 8)] {
                let c = case(&mut rng, dtype, w_rows, rows, cols);
                acts.quantize(&c.x, rows, cols);
                let portable = run(QuantIsa::Portable, &c, &acts);
                for r in 0..rows {
                    let xr = &c.x[r * cols..(r + 1) * cols];
                    for i in 0..w_rows {
                        let wr = &c.w_f32[i * cols..(i + 1) * cols];
                        let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                        // Each activation moves by at most half its block's step: amax/254 for
                        // the 32-element blocks (plus the f16 rounding of the step over up to 127
                        // steps), amax/254 of the whole super-block for the k-quants' activations.
                        let (act_block, slack) = if block == 32 { (QK, 1.0 / 254.0 + 1.0 / 2048.0) } else { (block, 1.0 / 254.0 * (1.0 + 1e-5)) };
                        let bound: f64 = wr
                            .chunks(act_block)
                            .zip(xr.chunks(act_block))
                            .map(|(wb, xb)| {
                                let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
                                wb.iter().map(|v| v.abs() as f64).sum::<f64>() * amax * slack
                            })
                            .sum::<f64>()
                            + 1e-4;
                        let got = portable[r][i] as f64;
                        assert!((got - exact).abs() <= bound, "{dtype} {cols} row {r} out {i}: {got} vs {exact} (bound {bound})");
                    }
                }
                for isa in QuantIsa::available() {
                    let got = run(isa, &c, &acts);
                    for r in 0..rows {
                        for i in 0..w_rows {
                            let (a, b) = (got[r][i], portable[r][i]);
                            // ggml's order of float operations on every ISA: the same bits.
                            assert_eq!(a.to_bits(), b.to_bits(), "{} {dtype} {cols}x{w_rows}x{rows} [{r}][{i}]: {a} vs {b}", isa.name());
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn selected_isa_is_available() {
    assert!(QuantIsa::available().contains(&QuantIsa::selected()));
}

/// A row's result must not depend on which other rows share the call (batch invariance): the
/// many-row paths (weights unpacked once per call, or once per four rows) and the one-row path
/// give the same bits.
#[test]
fn each_row_is_bit_identical_alone_and_in_a_batch() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (mut batch, mut alone) = (Q8Activations::default(), Q8Activations::default());
    for dtype in DTYPES {
        let cols = if dtype.block_len() == 32 { 96 * 6 + 32 } else { 512 };
        let c = case(&mut rng, dtype, 9, 11, cols);
        batch.quantize(&c.x, 11, cols);
        for isa in QuantIsa::available() {
            let together = run(isa, &c, &batch);
            for (r, together_r) in together.iter().enumerate() {
                alone.quantize(&c.x[r * cols..(r + 1) * cols], 1, cols);
                let single = Case { dtype, w: c.w.clone(), w_f32: vec![], x: c.x[r * cols..(r + 1) * cols].to_vec(), w_rows: c.w_rows, rows: 1 };
                let one = run(isa, &single, &alone);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one[0]), bits(together_r), "{} {dtype} row {r}", isa.name());
            }
        }
    }
}

/// ggml's `ggml_vec_dot_q4_1_q8_1` on a hand-made block: lanes of 4 products, one fma per block
/// and lane, `summs` fused, `hsum_float_8` at the end. Spelled out independently of the kernels.
#[test]
fn q4_1_follows_ggml_order_of_operations() {
    use half::f16;
    use rill_backend::quant::BlockQ4_1;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let cols = 3 * QK;
    let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let blocks: Vec<BlockQ4_1> = (0..3)
        .map(|_| BlockQ4_1 {
            d: f16::from_f32(rng.random_range(0.001f32..0.1)),
            m: f16::from_f32(rng.random_range(-0.5f32..0.5)),
            qs: std::array::from_fn(|_| rng.random()),
        })
        .collect();
    let w: Vec<u8> = bytemuck::cast_slice(&blocks).to_vec();
    let mut acts = Q8Activations::default();
    acts.quantize(&x, 1, cols);
    let xr = acts.row(0);
    let (mut acc, mut summs) = ([0f32; 8], 0f32);
    for (b, blk) in blocks.iter().enumerate() {
        let q = |e: usize| (if e < 16 { blk.qs[e] & 15 } else { blk.qs[e - 16] >> 4 }) as i32;
        let d = blk.d.to_f32() * xr.d[b];
        for (j, a) in acc.iter_mut().enumerate() {
            let lane: i32 = (4 * j..4 * j + 4).map(|e| q(e) * xr.qs[b * QK + e] as i32).sum();
            *a = d.mul_add(lane as f32, *a);
        }
        summs = blk.m.to_f32().mul_add(xr.s[b], summs);
    }
    let t: [f32; 4] = std::array::from_fn(|k| acc[k + 4] + acc[k]);
    let want = ((t[0] + t[2]) + (t[1] + t[3])) + summs;
    for isa in QuantIsa::available() {
        let c = Case { dtype: DType::Q4_1, w: w.clone(), w_f32: vec![], x: x.clone(), w_rows: 1, rows: 1 };
        assert_eq!(run(isa, &c, &acts)[0][0].to_bits(), want.to_bits(), "{}", isa.name());
    }
}

/// ggml's `ggml_vec_dot_q5_0_q8_0` and `ggml_vec_dot_q5_1_q8_1` on hand-made blocks (random
/// fifth bits): Q5_0's codes less 16, Q5_1's offsets as Q4_1's, otherwise the same order.
#[test]
fn q5_follows_ggml_order_of_operations() {
    use half::f16;
    use rill_backend::quant::{BlockQ5_0, BlockQ5_1};
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let cols = 5 * QK;
    let x: Vec<f32> = (0..cols).map(|_| rng.random_range(-3.0f32..3.0)).collect();
    let mut acts = Q8Activations::default();
    acts.quantize(&x, 1, cols);
    let xr = acts.row(0);
    // (d, m, qh, qs) per block; Q5_0 ignores m.
    let raw: Vec<(f16, f16, [u8; 4], [u8; 16])> = (0..5)
        .map(|_| (f16::from_f32(rng.random_range(0.001f32..0.1)), f16::from_f32(rng.random_range(-0.5f32..0.5)), rng.random(), rng.random()))
        .collect();
    let want = |bias: i32, with_min: bool| {
        let (mut acc, mut summs) = ([0f32; 8], 0f32);
        for (b, (d, m, qh, qs)) in raw.iter().enumerate() {
            let h = u32::from_le_bytes(*qh);
            let q = |e: usize| (if e < 16 { qs[e] & 15 } else { qs[e - 16] >> 4 }) as i32 + 16 * ((h >> e) & 1) as i32 - bias;
            let dd = d.to_f32() * xr.d[b];
            for (j, a) in acc.iter_mut().enumerate() {
                let lane: i32 = (4 * j..4 * j + 4).map(|e| q(e) * xr.qs[b * QK + e] as i32).sum();
                *a = dd.mul_add(lane as f32, *a);
            }
            summs = m.to_f32().mul_add(xr.s[b], summs);
        }
        let t: [f32; 4] = std::array::from_fn(|k| acc[k + 4] + acc[k]);
        let sum = (t[0] + t[2]) + (t[1] + t[3]);
        if with_min { sum + summs } else { sum }
    };
    let q5_0: Vec<BlockQ5_0> = raw.iter().map(|&(d, _, qh, qs)| BlockQ5_0 { d, qh, qs }).collect();
    let q5_1: Vec<BlockQ5_1> = raw.iter().map(|&(d, m, qh, qs)| BlockQ5_1 { d, m, qh, qs }).collect();
    let cases = [(DType::Q5_0, bytemuck::cast_slice(&q5_0).to_vec(), want(16, false)), (DType::Q5_1, bytemuck::cast_slice(&q5_1).to_vec(), want(0, true))];
    for (dtype, w, want) in cases {
        for isa in QuantIsa::available() {
            let c = Case { dtype, w: w.clone(), w_f32: vec![], x: x.clone(), w_rows: 1, rows: 1 };
            assert_eq!(run(isa, &c, &acts)[0][0].to_bits(), want.to_bits(), "{} {dtype}", isa.name());
        }
    }
}

/// Q5_0 and Q5_1 against ggml itself: these bits are what llama.cpp's `quantize_row_q5_*_ref`,
/// x86 `quantize_row_q8_*` and `ggml_vec_dot_q5_*_q8_*` give for the inputs below (llama.cpp
/// 11434's `ggml-quants.c` and `ggml-cpu/arch/x86/quants.c`, gcc -O2 -march=native on an AVX-512
/// VNNI CPU), for 4 activation rows × 2 weight rows. Every kernel, fed the rows together (the
/// AVX-512 quad path) or one at a time, must give them.
#[test]
fn q5_dots_equal_ggml_bits() {
    const C: usize = 96;
    let w: Vec<f32> = (0..2 * C).map(|i| ((i * 7919 % 2003) as i32 - 1001) as f32 * 0.00137 + (i / C) as f32 * 0.25).collect();
    let x: Vec<f32> = (0..4 * C).map(|i| ((i * 104729 % 1999) as i32 - 999) as f32 * 0.003).collect();
    let ggml: [(DType, [u32; 8]); 2] = [
        (DType::Q5_0, [0x41d711c4, 0xc17c8c53, 0xc10082fd, 0x41c1b9ce, 0x419cf291, 0xc17d3f67, 0xc0d4925e, 0x41818b32]),
        (DType::Q5_1, [0x41d4ff55, 0xc174c24e, 0xc0fc17aa, 0x41c25473, 0x419c7949, 0xc173b9d5, 0xc0cd5a8a, 0x418211da]),
    ];
    for (dtype, want) in ggml {
        let mut q = vec![0u8; 2 * dtype.row_bytes(C).unwrap()];
        quant::quantize_row(dtype, &w, &mut q).unwrap();
        assert_dots_are(dtype, &q, &x, C, &want);
    }
}

/// Every kernel gives `want` (`[activation row][weight row]` bits) for the weight rows `w`
/// against the 4 activation rows `x` (`cols` wide), fed together and one at a time.
fn assert_dots_are(dtype: DType, w: &[u8], x: &[f32], cols: usize, want: &[u32]) {
    let w_rows = want.len() / 4;
    let (mut all, mut one) = (Q8Activations::default(), Q8Activations::default());
    all.quantize(x, 4, cols);
    for isa in QuantIsa::available() {
        let c = Case { dtype, w: w.to_vec(), w_f32: vec![], x: x.to_vec(), w_rows, rows: 4 };
        let together: Vec<u32> = run(isa, &c, &all).concat().iter().map(|v| v.to_bits()).collect();
        assert_eq!(together, want, "{} {dtype}, 4 rows", isa.name());
        for r in 0..4 {
            let xr = &x[r * cols..(r + 1) * cols];
            one.quantize(xr, 1, cols);
            let c = Case { dtype, w: w.to_vec(), w_f32: vec![], x: xr.to_vec(), w_rows, rows: 1 };
            let alone: Vec<u32> = run(isa, &c, &one)[0].iter().map(|v| v.to_bits()).collect();
            assert_eq!(alone, want[w_rows * r..w_rows * (r + 1)], "{} {dtype}, row {r} alone", isa.name());
        }
    }
}

/// LCG-made blocks as `scripts/ggml-kquant-dots.c` makes them: `rows` rows of `per_row`
/// `size`-byte blocks from `seed`, with small f16 scales patched in at `d_off` (and `dmin_off`).
fn lcg_blocks(seed: u64, rows: usize, per_row: usize, size: usize, d_off: usize, dmin_off: Option<usize>) -> Vec<u8> {
    let mut state = seed;
    let mut w = vec![0u8; rows * per_row * size];
    for (n, blk) in w.chunks_exact_mut(size).enumerate() {
        let (r, b) = ((n / per_row) as u16, (n % per_row) as u16);
        for byte in blk.iter_mut() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *byte = (state >> 33) as u8;
        }
        blk[d_off..d_off + 2].copy_from_slice(&(0x2000 + r * 7 + b * 3).to_le_bytes());
        if let Some(o) = dmin_off {
            blk[o..o + 2].copy_from_slice(&(0x1C00 + r * 5 + b).to_le_bytes());
        }
    }
    w
}

/// The activations the ggml tests use: 4 rows of `cols` (512, or 480 for IQ4_NL).
fn ggml_test_activations(cols: usize) -> Vec<f32> {
    (0..4 * cols).map(|i| ((i * 7919 % 2003) as i32 - 1001) as f32 * 0.00137).collect()
}

/// Q5_K and Q6_K against ggml itself: these bits are what llama.cpp's x86 `quantize_row_q8_K`
/// and `ggml_vec_dot_q{5,6}_K_q8_K` give (llama.cpp 11434's `ggml-cpu/arch/x86/quants.c`, its
/// CMake build on an AVX-512 VNNI CPU, called through `libggml-cpu` after `ggml_cpu_init`;
/// `scripts/ggml-kquant-dots.c` prints them) for LCG-made blocks and 4 activation rows × 2 weight
/// rows of 512. Every kernel, fed the rows together or one at a time, must give them.
#[test]
fn k_quant_dots_equal_ggml_bits() {
    let ggml = [
        (DType::Q5K, 176, 0, Some(2), 12346, [0x41f1d4ce, 0x411a8bb4, 0xc1e1c1ea, 0xc10444c4, 0xc2371c70, 0xc2f53ae7, 0x419040d1, 0x42179cfa]),
        (DType::Q6K, 210, 208, None, 12347, [0xc3874e51, 0xc2e5eeb8, 0x41b8c1e8, 0xc30c421e, 0x439f11ac, 0x43d638e7, 0x42b3d5a4, 0xc3106fde]),
    ];
    for (dtype, size, d_off, dmin_off, seed, bits) in ggml {
        assert_dots_are(dtype, &lcg_blocks(seed, 2, 2, size, d_off, dmin_off), &ggml_test_activations(512), 512, &bits);
    }
}

/// Q2_K, Q3_K and IQ4_XS against ggml's x86 `ggml_vec_dot_{q2_K,q3_K,iq4_xs}_q8_K` as for the
/// other k-quants above, and IQ4_NL against `quantize_row_q8_0` and `ggml_vec_dot_iq4_nl_q8_0`
/// on rows of 15 blocks (an odd count, so ggml's scalar tail block is in the bits too); all
/// printed by `scripts/ggml-kquant-dots.c`.
#[test]
fn low_bit_dots_equal_ggml_bits() {
    let ggml = [
        (DType::Q2K, 84, 80, Some(82), 12348, [0x3f759caf, 0x3fa84606, 0x3f8782e8, 0x40054d43, 0xbdfb9ad8, 0x3f62f726, 0xc0301558, 0xbfd24c50]),
        (DType::Q3K, 110, 108, None, 12349, [0xc078d6fe, 0x40040a32, 0x3faf59b6, 0x4096b1f6, 0xbde495c0, 0x4074fc47, 0x3fade74a, 0xc027bb88]),
        (DType::IQ4XS, 136, 0, None, 12350, [0x41c8a6b8, 0x4088af70, 0x43729aca, 0xc190e4e2, 0x4317f516, 0x434fe036, 0xc2e01a9f, 0xc285a914]),
    ];
    for (dtype, size, d_off, dmin_off, seed, bits) in ggml {
        assert_dots_are(dtype, &lcg_blocks(seed, 2, 2, size, d_off, dmin_off), &ggml_test_activations(512), 512, &bits);
    }
    let iq4_nl = [0xc07a8e3b, 0x3d894080, 0xc02f33b2, 0xc03e689e, 0x406882d9, 0xc16fb5ee, 0xc03b664e, 0x4020abb2];
    assert_dots_are(DType::IQ4NL, &lcg_blocks(12351, 2, 15, 18, 0, None), &ggml_test_activations(480), 480, &iq4_nl);
}

/// Q4_K against what llama.cpp runs for it on x86: rows repacked 8 at a time and
/// `ggml_gemm_q4_K_8x8_q8_K` (its AVX-512 path) against `ggml_quantize_mat_q8_K_4x8`'s
/// activations (`scripts/ggml-kquant-dots.c`), 4 activation rows × 16 weight rows of 512. Every
/// kernel, the 16-lane interleaved ones and the portable one, fed the rows together or one at a
/// time, must give these bits.
#[test]
fn q4_k_equals_ggml_repacked_gemm_bits() {
    #[rustfmt::skip]
    let bits = [
        0x41c0a3a8, 0xc0be1e86, 0x403dc61b, 0xc1083322, 0xc179218c, 0x41cd4b7b, 0x41f6c36e, 0x426dfd5b, 0x415d8186, 0x41d78adf, 0x3fe76272, 0x40d9f821, 0xc1b00b8f, 0x41d080ab, 0xc023f5f1, 0xc1c92671,
        0x41be95de, 0x407c64ee, 0x3f5cc778, 0x4132d634, 0x4113d7a6, 0xc1266044, 0x41e1c251, 0x41e248df, 0xc1b10280, 0xc27329e5, 0xc1741ab4, 0xc1a44f13, 0x410036da, 0xc1e0ccb4, 0x414fc450, 0x4263292f,
        0xc172cf0f, 0x4077f852, 0x41aca258, 0x4135fc38, 0x41f224d3, 0xc195a880, 0xc21228e0, 0xc18a25ca, 0x4250aaaa, 0xc2555606, 0xc1187c5a, 0xc1edf3f1, 0x404fbf76, 0xc1e17514, 0xc19de754, 0x41a7a0f2,
        0xc23ed348, 0x418fbbd5, 0xc1f41762, 0x4110e973, 0xc1ae5cb0, 0xc0f56099, 0xc1fd272f, 0xc27ed9c0, 0xc28b86a0, 0x42362e04, 0x420a7aa9, 0x40f989c3, 0xc189d50f, 0xc1287ccb, 0x4139020c, 0xc210a81a,
    ];
    assert_dots_are(DType::Q4K, &lcg_blocks(12345, 16, 2, 144, 0, Some(2)), &ggml_test_activations(512), 512, &bits);
}

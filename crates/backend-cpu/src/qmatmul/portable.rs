//! The portable integer kernels: one weight row against one quantized activation row, block by
//! block, in plain Rust. They define what every SIMD kernel must compute and they run wherever no
//! SIMD kernel exists.
//!
//! Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 add their float terms exactly as ggml's x86
//! `ggml_vec_dot_*_q8_*` do (llama.cpp's CPU numerics, which the golden test compares against):
//! per block, 8 lanes of 4-product integer sums, each lane `acc = fma(d_w·d_x, lane, acc)`; the
//! offsets of Q4_1 and Q5_1 in a separate scalar `summs = fma(m, s, summs)`; the row's sum `hsum8(acc) + summs` with ggml's
//! `hsum_float_8` tree. The SIMD kernels compute the same bits. Q5_K and Q6_K follow ggml's
//! `ggml_vec_dot_q{5,6}_K_q8_K` the same way; Q4_K follows the repacked GEMM llama.cpp runs for it
//! on x86 (see its twin below). Q2_K, Q3_K and IQ4_XS follow `ggml_vec_dot_{q2_K,q3_K,iq4_xs}_q8_K`
//! (`dot_row_k`), IQ4_NL `ggml_vec_dot_iq4_nl_q8_0` (`dot_row_iq4_nl`: two accumulators, even and
//! odd blocks, and a scalar tail block).

use rill_backend::quant::{
    five_bit_codes, iq4_codes, iq4xs_scale, scales_mins_k4, scales_q3k, three_bit_codes, two_bit_codes, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, QuantBlock, KVALUES_IQ4NL, QK_K,
};
use rill_backend::DType;

use super::activations::{Q8Row, QK};
use super::activations_k::Q8KRow;

/// `Σ w·x` for a whole row of `dtype` weights; `dtype` must be one of [`super::is_integer_dtype`].
pub fn dot_row(dtype: DType, w: &[u8], x: Q8Row<'_>) -> f32 {
    match dtype {
        DType::Q4_0 => ggml_blocks::<BlockQ4_0>(w, x, false, lanes_q4_0),
        DType::Q4_1 => ggml_blocks::<BlockQ4_1>(w, x, true, lanes_q4_1),
        DType::Q5_0 => ggml_blocks::<BlockQ5_0>(w, x, false, lanes_q5_0),
        DType::Q5_1 => ggml_blocks::<BlockQ5_1>(w, x, true, lanes_q5_1),
        DType::Q8_0 => ggml_blocks::<BlockQ8_0>(w, x, false, lanes_q8_0),
        DType::IQ4NL => dot_row_iq4_nl(w, x),
        other => unreachable!("{other} has no integer kernel"),
    }
}

/// Nibbles in element order: byte `j` holds element `j` (low) and `j + 16` (high).
#[inline(always)]
fn nibbles(qs: &[u8; 16]) -> [u8; QK] {
    std::array::from_fn(|i| if i < 16 { qs[i] & 0x0F } else { qs[i - 16] >> 4 })
}

/// What one 32-element block contributes in ggml's order: its weight scale `d`, its min `m`
/// (Q4_1, Q5_1; 0 otherwise) and the 8 lane sums `Σ_{t<4} w[4j+t]·x[4j+t]` of its integer codes.
type Lanes = (f32, f32, [i32; 8]);

/// ggml's `hsum_float_8`: `(a₀+a₄ + a₂+a₆) + (a₁+a₅ + a₃+a₇)`.
#[inline(always)]
pub fn hsum8(a: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|k| a[k + 4] + a[k]);
    (t[0] + t[2]) + (t[1] + t[3])
}

/// A whole row of 32-element blocks, accumulated as ggml's x86 kernels do (module docs).
#[inline(always)]
fn ggml_blocks<B: QuantBlock>(w: &[u8], x: Q8Row<'_>, has_min: bool, lanes: impl Fn(&B, &[i8]) -> Lanes) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    let mut block = |i: usize, b: &B| {
        let (d, m, l) = lanes(b, &x.qs[i * QK..(i + 1) * QK]);
        let dd = d * x.d[i];
        for (a, &v) in acc.iter_mut().zip(&l) {
            *a = dd.mul_add(v as f32, *a);
        }
        summs = m.mul_add(x.s[i], summs);
    };
    match rill_backend::quant::try_view_blocks::<B>(w) {
        Some(blocks) => blocks.iter().enumerate().for_each(|(i, b)| block(i, b)),
        None => w.chunks_exact(size_of::<B>()).enumerate().for_each(|(i, bytes)| block(i, &bytemuck::pod_read_unaligned::<B>(bytes))),
    }
    if has_min {
        hsum8(&acc) + summs
    } else {
        hsum8(&acc)
    }
}

/// Lane sums of 4 products each, over weights `q` (already as signed values) and codes `x`.
#[inline(always)]
fn lane_sums(q: impl Fn(usize) -> i32, x: &[i8]) -> [i32; 8] {
    std::array::from_fn(|j| (4 * j..4 * j + 4).map(|e| q(e) * x[e] as i32).sum())
}

fn lanes_q4_0(b: &BlockQ4_0, x: &[i8]) -> Lanes {
    let q = nibbles(&b.qs);
    (b.d.to_f32(), 0.0, lane_sums(|e| q[e] as i32 - 8, x))
}

fn lanes_q4_1(b: &BlockQ4_1, x: &[i8]) -> Lanes {
    let q = nibbles(&b.qs);
    (b.d.to_f32(), b.m.to_f32(), lane_sums(|e| q[e] as i32, x))
}

fn lanes_q5_0(b: &BlockQ5_0, x: &[i8]) -> Lanes {
    let q = five_bit_codes(b.qh, &b.qs);
    (b.d.to_f32(), 0.0, lane_sums(|e| q[e] as i32 - 16, x))
}

fn lanes_q5_1(b: &BlockQ5_1, x: &[i8]) -> Lanes {
    let q = five_bit_codes(b.qh, &b.qs);
    (b.d.to_f32(), b.m.to_f32(), lane_sums(|e| q[e] as i32, x))
}

fn lanes_q8_0(b: &BlockQ8_0, x: &[i8]) -> Lanes {
    (b.d.to_f32(), 0.0, lane_sums(|e| b.qs[e] as i32, x))
}

/// IQ4_NL's codebook values of a block in element order.
#[inline(always)]
pub fn iq4_values(qs: &[u8; 16]) -> [i8; QK] {
    iq4_codes(qs).map(|c| KVALUES_IQ4NL[c as usize])
}

/// IQ4_NL as ggml's x86 `ggml_vec_dot_iq4_nl_q8_0`: blocks in pairs, the even block's 8 lanes
/// into one accumulator and the odd block's into another (`fma(d_x·d_w, lane, acc)`), the row
/// `hsum8(acc₀ + acc₁)`; an odd last block adds `d·Σ` to that as a scalar multiply and add.
fn dot_row_iq4_nl(w: &[u8], x: Q8Row<'_>) -> f32 {
    let nb = x.d.len();
    let mut acc = [[0f32; 8]; 2];
    let block = |ib: usize| -> BlockIQ4NL { bytemuck::pod_read_unaligned(&w[ib * size_of::<BlockIQ4NL>()..(ib + 1) * size_of::<BlockIQ4NL>()]) };
    for ib in 0..nb & !1 {
        let b = block(ib);
        let q = iq4_values(&b.qs);
        let lanes = lane_sums(|e| q[e] as i32, &x.qs[ib * QK..(ib + 1) * QK]);
        let d = x.d[ib] * b.d.to_f32();
        for (a, &v) in acc[ib % 2].iter_mut().zip(&lanes) {
            *a = d.mul_add(v as f32, *a);
        }
    }
    let sum: [f32; 8] = std::array::from_fn(|l| acc[0][l] + acc[1][l]);
    let mut sumf = hsum8(&sum);
    if nb % 2 == 1 {
        let b = block(nb - 1);
        let q = iq4_values(&b.qs);
        let sumi: i32 = q.iter().zip(&x.qs[(nb - 1) * QK..]).map(|(&a, &b)| a as i32 * b as i32).sum();
        sumf += x.d[nb - 1] * b.d.to_f32() * sumi as f32;
    }
    sumf
}

/// The k-quants against ggml's `block_q8_K` rows, in the order of ggml's x86 (AVX2)
/// `ggml_vec_dot_q{4,5,6}_K_q8_K`: per super-block, 8 integer lanes (lane `l` sums, over the
/// eight 32-element chunks, the chunk's bytes `4l..4l+4` times their sub-block scale), one
/// `acc[l] = fma(d_w·d_x, lane, acc[l])`, and `hsum8(acc)` at the end; the mins of Q4_K and
/// Q5_K come from the activations' 16-element sums, Q6_K's `−32` offset likewise.
pub fn dot_row_k(dtype: DType, w: &[u8], x: Q8KRow<'_>) -> f32 {
    match dtype {
        DType::Q4K => dot_row_q4_k(w, x),
        DType::Q5K => k_blocks::<BlockQ5K>(w, x, dot_q5_k),
        DType::Q6K => k_blocks::<BlockQ6K>(w, x, dot_q6_k),
        DType::Q2K => k_blocks::<BlockQ2K>(w, x, dot_q2_k),
        DType::Q3K => k_blocks::<BlockQ3K>(w, x, dot_q3_k),
        DType::IQ4XS => k_blocks::<BlockIQ4XS>(w, x, dot_iq4_xs),
        other => unreachable!("{other} is not a k-quant"),
    }
}

/// What a super-block adds to a row: 8 lanes of `acc` and, for Q5_K, the min terms.
#[derive(Default)]
struct KAcc {
    acc: [f32; 8],
    /// Q5_K: ggml's scalar `summs`.
    mins: f32,
}

#[inline(always)]
fn k_blocks<B: QuantBlock>(w: &[u8], x: Q8KRow<'_>, dot: impl Fn(&B, Q8KRow<'_>, &mut KAcc)) -> f32 {
    let mut a = KAcc::default();
    match rill_backend::quant::try_view_blocks::<B>(w) {
        Some(blocks) => blocks.iter().enumerate().for_each(|(i, b)| dot(b, x.super_block(i), &mut a)),
        None => w.chunks_exact(size_of::<B>()).enumerate().for_each(|(i, bytes)| dot(&bytemuck::pod_read_unaligned::<B>(bytes), x.super_block(i), &mut a)),
    }
    hsum8(&a.acc) + a.mins
}

/// Lane `l` of a super-block: `Σ_k scale(k, l) · Σ_{t<4} code[32k + 4l + t] · x[32k + 4l + t]`.
/// Each chunk's 8 lane products come first (a shape the compiler vectorizes), then the scales.
#[inline(always)]
fn k_lanes<T: Copy + Into<i32>>(codes: &[T; QK_K], x: &[i8], scale: impl Fn(usize, usize) -> i32) -> [i32; 8] {
    let mut lanes = [0i32; 8];
    for (k, (c, xq)) in codes.chunks_exact(32).zip(x.chunks_exact(32)).enumerate() {
        let mut products = [0i32; 32];
        for (p, (&a, &b)) in products.iter_mut().zip(c.iter().zip(xq)) {
            *p = a.into() * b as i32;
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += scale(k, l) * products[4 * l..4 * l + 4].iter().sum::<i32>();
        }
    }
    lanes
}

/// Q5_K after its codes are in element order: the scale of chunk `k` is `sc[k]`.
#[inline(always)]
fn dot_k_sub_blocks(d: f32, dmin: f32, scales: &[u8; 12], codes: &[u8; QK_K], x: Q8KRow<'_>, a: &mut KAcc) {
    let sm = scales_mins_k4(scales);
    let (d, dmin) = (x.d[0] * d, -x.d[0] * dmin);
    let lanes = k_lanes(codes, x.qs, |k, _| sm[k] as i32);
    for (acc, lane) in a.acc.iter_mut().zip(lanes) {
        *acc = d.mul_add(lane as f32, *acc);
    }
    let s = x.sums32;
    let pairs: [i32; 4] = std::array::from_fn(|i| sm[8 + 2 * i] as i32 * s[2 * i] as i32 + sm[8 + 2 * i + 1] as i32 * s[2 * i + 1] as i32);
    a.mins = dmin.mul_add(((pairs[0] + pairs[1]) + (pairs[2] + pairs[3])) as f32, a.mins);
}

/// Q4_K in the order of llama.cpp's x86 repacked Q4_K GEMM (`ggml_gemm_q4_K_8x8_q8_K`): per
/// pair of sub-blocks `p`, `acc = fma(sc₂ₚ·dot₂ₚ + sc₂ₚ₊₁·dot₂ₚ₊₁, d·d_x, acc)` and
/// `mins = fma(m₂ₚ·Σx₂ₚ + m₂ₚ₊₁·Σx₂ₚ₊₁, dmin·d_x, mins)`; the row is `acc − mins`. Every term
/// belongs to one output, so the 16-lane interleaved kernels (`super::q4k_interleaved`) give the
/// same bits.
fn dot_row_q4_k(w: &[u8], x: Q8KRow<'_>) -> f32 {
    let (mut acc, mut mins) = (0f32, 0f32);
    for (b, bytes) in w.chunks_exact(size_of::<BlockQ4K>()).enumerate() {
        let blk: BlockQ4K = bytemuck::pod_read_unaligned(bytes);
        let xb = x.super_block(b);
        let sm = scales_mins_k4(&blk.scales);
        let (d, dmin) = (blk.d.to_f32() * xb.d[0], blk.dmin.to_f32() * xb.d[0]);
        for p in 0..4 {
            let (qs, xq) = (&blk.qs[32 * p..32 * p + 32], &xb.qs[64 * p..64 * p + 64]);
            let lo: i32 = qs.iter().zip(&xq[..32]).map(|(&q, &v)| (q & 0x0F) as i32 * v as i32).sum();
            let hi: i32 = qs.iter().zip(&xq[32..]).map(|(&q, &v)| (q >> 4) as i32 * v as i32).sum();
            let sum = sm[2 * p] as i32 * lo + sm[2 * p + 1] as i32 * hi;
            let min = sm[8 + 2 * p] as i32 * xb.sums32[2 * p] as i32 + sm[9 + 2 * p] as i32 * xb.sums32[2 * p + 1] as i32;
            acc = (sum as f32).mul_add(d, acc);
            mins = (min as f32).mul_add(dmin, mins);
        }
    }
    acc - mins
}

fn dot_q5_k(b: &BlockQ5K, x: Q8KRow<'_>, a: &mut KAcc) {
    let mut codes = [0u8; QK_K];
    for (p, qs) in b.qs.chunks_exact(32).enumerate() {
        for (l, &q) in qs.iter().enumerate() {
            let h = b.qh[l] >> (2 * p);
            codes[64 * p + l] = (q & 0x0F) | ((h & 1) << 4);
            codes[64 * p + 32 + l] = (q >> 4) | ((h & 2) << 3);
        }
    }
    dot_k_sub_blocks(b.d.to_f32(), b.dmin.to_f32(), &b.scales, &codes, x, a)
}

/// Q6_K: 16-element sub-blocks `d·sc[j]·(q − 32)`; lane `l` of chunk `k` lies in sub-block
/// `2k + l/4`. The unsigned codes are dotted and `32·Σ sc·Σx` taken off per lane afterwards.
fn dot_q6_k(b: &BlockQ6K, x: Q8KRow<'_>, a: &mut KAcc) {
    let mut codes = [0u8; QK_K];
    for h in 0..2 {
        let (ql, qh, y) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32], &mut codes[128 * h..128 * h + 128]);
        for l in 0..32 {
            y[l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
            y[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    let lanes = k_lanes(&codes, x.qs, |k, l| b.scales[2 * k + l / 4] as i32);
    let d = x.d[0] * b.d.to_f32();
    for (l, (acc, lane)) in a.acc.iter_mut().zip(lanes).enumerate() {
        let offset = 32 * (x.bsums[2 * l] as i32 * b.scales[2 * l] as i32 + x.bsums[2 * l + 1] as i32 * b.scales[2 * l + 1] as i32);
        *acc = d.mul_add((lane - offset) as f32, *acc);
    }
}

/// Q2_K (`ggml_vec_dot_q2_K_q8_K`): the mins first, lane `l` taking sub-blocks `2l` and `2l + 1`
/// (`fma(−d_x·dmin, m₂ₗ·Σx₂ₗ + m₂ₗ₊₁·Σx₂ₗ₊₁, acc)`), then the codes as Q6_K's, lane `l` of
/// chunk `k` in sub-block `2k + l/4` (`fma(d_x·d, lane, acc)`).
fn dot_q2_k(b: &BlockQ2K, x: Q8KRow<'_>, a: &mut KAcc) {
    let (d, dmin) = (x.d[0] * b.d.to_f32(), -x.d[0] * b.dmin.to_f32());
    for (l, acc) in a.acc.iter_mut().enumerate() {
        let mins = (b.scales[2 * l] >> 4) as i32 * x.bsums[2 * l] as i32 + (b.scales[2 * l + 1] >> 4) as i32 * x.bsums[2 * l + 1] as i32;
        *acc = dmin.mul_add(mins as f32, *acc);
    }
    let lanes = k_lanes(&two_bit_codes(&b.qs), x.qs, |k, l| (b.scales[2 * k + l / 4] & 0x0F) as i32);
    for (acc, lane) in a.acc.iter_mut().zip(lanes) {
        *acc = d.mul_add(lane as f32, *acc);
    }
}

/// Q3_K (`ggml_vec_dot_q3_K_q8_K`): signed codes `q − 4`, sub-blocks of 16 as Q2_K's.
fn dot_q3_k(b: &BlockQ3K, x: Q8KRow<'_>, a: &mut KAcc) {
    let codes = three_bit_codes(b).map(|c| c as i8 - 4);
    let scales = scales_q3k(&b.scales);
    let lanes = k_lanes(&codes, x.qs, |k, l| scales[2 * k + l / 4] as i32);
    let d = x.d[0] * b.d.to_f32();
    for (acc, lane) in a.acc.iter_mut().zip(lanes) {
        *acc = d.mul_add(lane as f32, *acc);
    }
}

/// IQ4_XS (`ggml_vec_dot_iq4_xs_q8_K`): codebook values, chunk `k` is sub-block `k` with its
/// 6-bit scale less 32.
fn dot_iq4_xs(b: &BlockIQ4XS, x: Q8KRow<'_>, a: &mut KAcc) {
    let mut values = [0i8; QK_K];
    for (v, qs) in values.chunks_exact_mut(QK).zip(b.qs.chunks_exact(16)) {
        v.copy_from_slice(&iq4_values(qs.try_into().expect("16 bytes")));
    }
    let lanes = k_lanes(&values, x.qs, |k, _| iq4xs_scale(b, k));
    let d = b.d.to_f32() * x.d[0];
    for (acc, lane) in a.acc.iter_mut().zip(lanes) {
        *acc = d.mul_add(lane as f32, *acc);
    }
}

//! The portable integer kernels: one weight row against one quantized activation row, block by
//! block, in plain Rust. They define what every SIMD kernel must compute and they run wherever no
//! SIMD kernel exists.
//!
//! Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 add their float terms exactly as ggml's x86
//! `ggml_vec_dot_*_q8_*` do (llama.cpp's CPU numerics, which the golden test compares against):
//! per block, 8 lanes of 4-product integer sums, each lane `acc = fma(d_w·d_x, lane, acc)`; the
//! offsets of Q4_1 and Q5_1 in a separate scalar `summs = fma(m, s, summs)`; the row's sum `hsum8(acc) + summs` with ggml's
//! `hsum_float_8` tree. The SIMD kernels compute the same bits. The k-quants sum their
//! sub-block terms in order (SIMD twins differ only in the order of float additions).

use rill_backend::quant::{five_bit_codes, scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, QuantBlock, QK_K};
use rill_backend::DType;

use super::activations::{Q8Row, QK};

/// `Σ w·x` for a whole row of `dtype` weights; `dtype` must be one of [`super::is_integer_dtype`].
pub fn dot_row(dtype: DType, w: &[u8], x: Q8Row<'_>) -> f32 {
    match dtype {
        DType::Q4_0 => ggml_blocks::<BlockQ4_0>(w, x, false, lanes_q4_0),
        DType::Q4_1 => ggml_blocks::<BlockQ4_1>(w, x, true, lanes_q4_1),
        DType::Q5_0 => ggml_blocks::<BlockQ5_0>(w, x, false, lanes_q5_0),
        DType::Q5_1 => ggml_blocks::<BlockQ5_1>(w, x, true, lanes_q5_1),
        DType::Q8_0 => ggml_blocks::<BlockQ8_0>(w, x, false, lanes_q8_0),
        DType::Q4K => sum_blocks::<BlockQ4K>(w, x, dot_q4_k),
        DType::Q5K => sum_blocks::<BlockQ5K>(w, x, dot_q5_k),
        DType::Q6K => sum_blocks::<BlockQ6K>(w, x, dot_q6_k),
        other => unreachable!("{other} has no integer kernel"),
    }
}

/// Calls `dot` for each weight block with the activation blocks it covers (`B::LEN / QK` of
/// them, starting at block `b`), viewing the weights in place when aligned.
#[inline(always)]
fn sum_blocks<B: QuantBlock>(w: &[u8], x: Q8Row<'_>, dot: impl Fn(&B, Q8Row<'_>) -> f32) -> f32 {
    let per = B::LEN / QK;
    let sub = |i: usize| Q8Row { qs: &x.qs[i * B::LEN..(i + 1) * B::LEN], d: &x.d[i * per..(i + 1) * per], s: &x.s[i * per..(i + 1) * per] };
    match rill_backend::quant::try_view_blocks::<B>(w) {
        Some(blocks) => blocks.iter().enumerate().map(|(i, b)| dot(b, sub(i))).sum(),
        None => w
            .chunks_exact(size_of::<B>())
            .enumerate()
            .map(|(i, bytes)| dot(&bytemuck::pod_read_unaligned::<B>(bytes), sub(i)))
            .sum(),
    }
}

/// `Σ q·x` over 32 unsigned codes.
#[inline(always)]
fn idot(q: &[u8], x: &[i8]) -> i32 {
    q.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum()
}

#[inline(always)]
fn isum(x: &[i8]) -> i32 {
    x.iter().map(|&v| v as i32).sum()
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

/// Q4_K and Q5_K: sub-block `j` is `d·sc[j]·q − dmin·m[j]`, so its dot is
/// `d·sc[j]·dₓ·Σq·x − dmin·m[j]·dₓ·Σx`.
#[inline(always)]
fn dot_k_sub_blocks(d: f32, dmin: f32, scales: &[u8; 12], codes: &[u8; QK_K], x: Q8Row<'_>) -> f32 {
    let mut acc = 0.0f32;
    for j in 0..QK_K / QK {
        let (sc, m) = scale_min_k4(j, scales);
        let xq = &x.qs[j * QK..(j + 1) * QK];
        let q = idot(&codes[j * QK..(j + 1) * QK], xq);
        acc += x.d[j] * (d * sc as f32 * q as f32 - dmin * m as f32 * isum(xq) as f32);
    }
    acc
}

fn dot_q4_k(b: &BlockQ4K, x: Q8Row<'_>) -> f32 {
    let mut codes = [0u8; QK_K];
    for (p, qs) in b.qs.chunks_exact(32).enumerate() {
        for (l, &q) in qs.iter().enumerate() {
            codes[64 * p + l] = q & 0x0F;
            codes[64 * p + 32 + l] = q >> 4;
        }
    }
    dot_k_sub_blocks(b.d.to_f32(), b.dmin.to_f32(), &b.scales, &codes, x)
}

fn dot_q5_k(b: &BlockQ5K, x: Q8Row<'_>) -> f32 {
    let mut codes = [0u8; QK_K];
    for (p, qs) in b.qs.chunks_exact(32).enumerate() {
        for (l, &q) in qs.iter().enumerate() {
            let h = b.qh[l] >> (2 * p);
            codes[64 * p + l] = (q & 0x0F) | ((h & 1) << 4);
            codes[64 * p + 32 + l] = (q >> 4) | ((h & 2) << 3);
        }
    }
    dot_k_sub_blocks(b.d.to_f32(), b.dmin.to_f32(), &b.scales, &codes, x)
}

/// Q6_K: 16-element sub-blocks `d·sc[j]·(q − 32)`; two of them share one activation block.
fn dot_q6_k(b: &BlockQ6K, x: Q8Row<'_>) -> f32 {
    let mut codes = [0i8; QK_K];
    for h in 0..2 {
        let (ql, qh, y) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32], &mut codes[128 * h..128 * h + 128]);
        for l in 0..32 {
            y[l] = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    let mut acc = 0.0f32;
    for j in 0..QK_K / QK {
        let half = |i: usize| -> i32 {
            let (q, xq) = (&codes[16 * i..16 * i + 16], &x.qs[16 * i..16 * i + 16]);
            b.scales[i] as i32 * q.iter().zip(xq).map(|(&a, &c)| a as i32 * c as i32).sum::<i32>()
        };
        acc += x.d[j] * (half(2 * j) + half(2 * j + 1)) as f32;
    }
    b.d.to_f32() * acc
}

//! The portable integer kernels: one weight row against one quantized activation row, block by
//! block, in plain Rust. They define what every SIMD kernel must compute (integer sums per block
//! are exact, so a SIMD twin differs only in the order its float terms are added) and they run
//! wherever no SIMD kernel exists.

use rill_backend::quant::{scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ6K, BlockQ8_0, QuantBlock, QK_K};
use rill_backend::DType;

use super::activations::{Q8Row, QK};

/// `Σ w·x` for a whole row of `dtype` weights; `dtype` must be one of [`super::is_integer_dtype`].
pub fn dot_row(dtype: DType, w: &[u8], x: Q8Row<'_>) -> f32 {
    match dtype {
        DType::Q4_0 => sum_blocks::<BlockQ4_0>(w, x, dot_q4_0),
        DType::Q4_1 => sum_blocks::<BlockQ4_1>(w, x, dot_q4_1),
        DType::Q8_0 => sum_blocks::<BlockQ8_0>(w, x, dot_q8_0),
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

fn dot_q4_0(b: &BlockQ4_0, x: Q8Row<'_>) -> f32 {
    let sum = idot(&nibbles(&b.qs), x.qs) - 8 * isum(x.qs);
    b.d.to_f32() * x.d[0] * sum as f32
}

fn dot_q4_1(b: &BlockQ4_1, x: Q8Row<'_>) -> f32 {
    b.d.to_f32() * x.d[0] * idot(&nibbles(&b.qs), x.qs) as f32 + b.m.to_f32() * x.s[0]
}

fn dot_q8_0(b: &BlockQ8_0, x: Q8Row<'_>) -> f32 {
    let sum: i32 = b.qs.iter().zip(x.qs).map(|(&a, &c)| a as i32 * c as i32).sum();
    b.d.to_f32() * x.d[0] * sum as f32
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

//! AVX-512 VNNI kernels for the k-quants Q4_K and Q6_K (the formats of the common `Q4_K_M`
//! files): each 256-weight super-block is unpacked 64 codes at a time into element order, so a
//! 64-byte chunk of the activation row lines up with it, and `vpdpbusd` dots them. Sub-block
//! scales are applied per 32-bit lane (a lane holds four products of one sub-block).
//!
//! Q4_K: `w = d·sc·q − dmin·m` per 32 weights: the min term uses `Σx` per lane, itself a
//! `vpdpbusd` against ones. Q6_K: `w = d·sc·(q − 32)` per 16 weights: integer `Σq·x − 32·Σx`
//! times the integer scale, then one float multiply. One weight row at a time against up to
//! four activation rows; every (weight row, activation row) sees the same operations whatever
//! the number of rows, so results never depend on the batch.

use std::arch::x86_64::*;

use rill_backend::quant::{scale_min_k4, BlockQ4K, BlockQ6K, QK_K};
use rill_backend::DType;

use super::activations::{Q8Activations, Q8Row, QK};
use super::f16_to_f32;

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4K | DType::Q6K)
}

/// As [`super::avx512::tile`], for Q4_K and Q6_K.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/DQ/VL/VNNI and F16C; `w` holds `w_rows` rows of `dtype`
/// with `acts.cols()` elements each; `out` is valid for every index written.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let row_bytes = dtype.row_bytes(acts.cols()).expect("whole super-blocks, checked at upload");
    for i in 0..w_rows {
        let row = w.as_ptr().add(i * row_bytes);
        let mut r = 0;
        while r < acts.rows() {
            let nr = (acts.rows() - r).min(4);
            let o = out.add(r * stride + i);
            match (dtype, nr) {
                (DType::Q4K, 4) => row_q4k::<4>(row, acts, r, o, stride),
                (DType::Q4K, 3) => row_q4k::<3>(row, acts, r, o, stride),
                (DType::Q4K, 2) => row_q4k::<2>(row, acts, r, o, stride),
                (DType::Q4K, _) => row_q4k::<1>(row, acts, r, o, stride),
                (_, 4) => row_q6k::<4>(row, acts, r, o, stride),
                (_, 3) => row_q6k::<3>(row, acts, r, o, stride),
                (_, 2) => row_q6k::<2>(row, acts, r, o, stride),
                _ => row_q6k::<1>(row, acts, r, o, stride),
            }
            r += nr;
        }
    }
}

/// `[a ×8, b ×8]`.
#[inline(always)]
unsafe fn halves(a: f32, b: f32) -> __m512 {
    _mm512_insertf32x8::<1>(_mm512_set1_ps(a), _mm256_set1_ps(b))
}

/// Activation blocks `b` and `b + 1` of `x`: codes, `[d_b ×8, d_b+1 ×8]`, and per-lane `Σx`.
#[inline(always)]
unsafe fn act_pair(x: &Q8Row<'_>, b: usize) -> (__m512i, __m512, __m512i) {
    let q = _mm512_loadu_si512(x.qs.as_ptr().add(b * QK).cast());
    let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), q);
    (q, halves(x.d[b], x.d[b + 1]), sums)
}

#[inline(always)]
unsafe fn row_q4k<const NR: usize>(row: *const u8, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8Row<'_>; NR] = std::array::from_fn(|j| acts.row(r0 + j));
    let mut acc = [_mm512_setzero_ps(); NR];
    let mask = _mm256_set1_epi8(0x0F);
    for sb in 0..acts.cols() / QK_K {
        let blk: BlockQ4K = row.add(sb * size_of::<BlockQ4K>()).cast::<BlockQ4K>().read_unaligned();
        let (d, dmin) = (f16_to_f32(blk.d.to_bits()), f16_to_f32(blk.dmin.to_bits()));
        for p in 0..4 {
            let v = _mm256_loadu_si256(blk.qs.as_ptr().add(32 * p).cast());
            let lo = _mm256_and_si256(v, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
            let codes = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            let ((sc0, m0), (sc1, m1)) = (scale_min_k4(2 * p, &blk.scales), scale_min_k4(2 * p + 1, &blk.scales));
            let scale = halves(d * sc0 as f32, d * sc1 as f32);
            let min = halves(dmin * m0 as f32, dmin * m1 as f32);
            for j in 0..NR {
                let (x, xd, sums) = act_pair(&xs[j], sb * 8 + 2 * p);
                let dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, x));
                acc[j] = _mm512_fmadd_ps(dot, _mm512_mul_ps(scale, xd), acc[j]);
                acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(min, xd), acc[j]);
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        *out.add(j * stride) = _mm512_reduce_add_ps(*a);
    }
}

#[inline(always)]
unsafe fn row_q6k<const NR: usize>(row: *const u8, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8Row<'_>; NR] = std::array::from_fn(|j| acts.row(r0 + j));
    let mut acc = [_mm512_setzero_ps(); NR];
    let (low4, top2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    for sb in 0..acts.cols() / QK_K {
        let blk: BlockQ6K = row.add(sb * size_of::<BlockQ6K>()).cast::<BlockQ6K>().read_unaligned();
        let d = f16_to_f32(blk.d.to_bits());
        let scales = _mm512_cvtepi8_epi32(_mm_loadu_si128(blk.scales.as_ptr().cast()));
        for h in 0..2 {
            let a = _mm256_loadu_si256(blk.ql.as_ptr().add(64 * h).cast());
            let b = _mm256_loadu_si256(blk.ql.as_ptr().add(64 * h + 32).cast());
            let hb = _mm256_loadu_si256(blk.qh.as_ptr().add(32 * h).cast());
            // Codes 0..63 in element order (see `quant::q6k`): two chunks of 64.
            let e0 = _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_and_si256(_mm256_slli_epi16::<4>(hb), top2));
            let e1 = _mm256_or_si256(_mm256_and_si256(b, low4), _mm256_and_si256(_mm256_slli_epi16::<2>(hb), top2));
            let e2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(a), low4), _mm256_and_si256(hb, top2));
            let e3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b), low4), _mm256_and_si256(_mm256_srli_epi16::<2>(hb), top2));
            let chunks = [
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(e0), e1),
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(e2), e3),
            ];
            for (c, codes) in chunks.into_iter().enumerate() {
                // Sixteen-weight sub-blocks 8h + 4c .. +4, four lanes each.
                let first = (8 * h + 4 * c) as i32;
                let idx = _mm512_set_epi32(
                    first + 3, first + 3, first + 3, first + 3, first + 2, first + 2, first + 2, first + 2,
                    first + 1, first + 1, first + 1, first + 1, first, first, first, first,
                );
                let sc = _mm512_permutexvar_epi32(idx, scales);
                for j in 0..NR {
                    let (x, xd, sums) = act_pair(&xs[j], sb * 8 + 4 * h + 2 * c);
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, x);
                    let centered = _mm512_sub_epi32(dot, _mm512_slli_epi32::<5>(sums));
                    let scaled = _mm512_cvtepi32_ps(_mm512_mullo_epi32(centered, sc));
                    acc[j] = _mm512_fmadd_ps(scaled, _mm512_mul_ps(_mm512_set1_ps(d), xd), acc[j]);
                }
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        *out.add(j * stride) = _mm512_reduce_add_ps(*a);
    }
}

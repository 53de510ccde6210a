//! AVX2 kernels for Q5_K and Q6_K (Q4_K: [`super::avx2_q4k`]) against ggml's `block_q8_K` activations, for
//! x86 CPUs without AVX-512 VNNI: ggml's own AVX2 `ggml_vec_dot_q*_K_q8_K` (32 codes per
//! register, `vpmaddubsw` into pairs, `vpmaddwd` by the sub-block scale into 8 lanes), so the
//! results have the bits of [`super::portable::dot_row_k`]. One weight row at a time against up
//! to four activation rows, sharing the unpacked codes; each row sees the same operations
//! whatever the batch.

use std::arch::x86_64::*;
use std::mem::offset_of;

use rill_backend::quant::{scales_mins_k4, BlockQ5K, BlockQ6K, QK_K};
use rill_backend::DType;

use super::activations::Q8Activations;
use super::activations_k::Q8KRow;
use super::f16_to_f32;
use super::x86::{hsum8, prefetch, q5k_codes, q6k_codes, PREFETCH_ROWS};

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q5K | DType::Q6K)
}

/// As [`super::avx512_kquants::tile`], for AVX2 machines.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; the other conditions are those of the AVX-512 tile.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let row_bytes = dtype.row_bytes(acts.cols()).expect("whole super-blocks, checked at upload");
    for i in 0..w_rows {
        let row = w.as_ptr().add(i * row_bytes);
        prefetch(row.wrapping_add(PREFETCH_ROWS * row_bytes), row_bytes);
        let mut r = 0;
        while r < acts.rows() {
            let nr = (acts.rows() - r).min(4);
            let o = out.add(r * stride + i);
            match nr {
                4 => row_dot::<4>(dtype, row, acts, r, o, stride),
                3 => row_dot::<3>(dtype, row, acts, r, o, stride),
                2 => row_dot::<2>(dtype, row, acts, r, o, stride),
                _ => row_dot::<1>(dtype, row, acts, r, o, stride),
            }
            r += nr;
        }
    }
}

#[inline(always)]
unsafe fn row_dot<const NR: usize>(dtype: DType, row: *const u8, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8KRow<'_>; NR] = acts.super_block_rows(r0);
    let sums = match dtype {
        DType::Q5K => row_q5k::<NR>(row, &xs, acts.cols() / QK_K),
        _ => row_q6k::<NR>(row, &xs, acts.cols() / QK_K),
    };
    for (j, v) in sums.into_iter().enumerate() {
        *out.add(j * stride) = v;
    }
}

#[inline(always)]
unsafe fn row_q5k<const NR: usize>(row: *const u8, xs: &[Q8KRow<'_>; NR], blocks: usize) -> [f32; NR] {
    let mut acc = [_mm256_setzero_ps(); NR];
    let mut summs = [0f32; NR];
    for sb in 0..blocks {
        // Blocks may be unaligned: fields are read through raw pointers, never references.
        let blk = row.add(sb * size_of::<BlockQ5K>());
        let d = f16_to_f32(blk.add(offset_of!(BlockQ5K, d)).cast::<u16>().read_unaligned());
        let dmin = f16_to_f32(blk.add(offset_of!(BlockQ5K, dmin)).cast::<u16>().read_unaligned());
        let sm = scales_mins_k4(&*blk.add(offset_of!(BlockQ5K, scales)).cast::<[u8; 12]>());
        let mins8 = _mm256_extracti128_si256::<1>(_mm256_cvtepu8_epi16(_mm_loadu_si128(sm.as_ptr().cast())));
        let mut sumi = [_mm256_setzero_si256(); NR];
        for j in 0..4 {
            let (scale_lo, scale_hi) = (_mm256_set1_epi16(sm[2 * j] as i16), _mm256_set1_epi16(sm[2 * j + 1] as i16));
            let (lo, hi) = q5k_codes(blk, j);
            for r in 0..NR {
                let x = xs[r].qs.as_ptr().add(sb * QK_K + 64 * j);
                let p_lo = _mm256_madd_epi16(scale_lo, _mm256_maddubs_epi16(lo, _mm256_loadu_si256(x.cast())));
                let p_hi = _mm256_madd_epi16(scale_hi, _mm256_maddubs_epi16(hi, _mm256_loadu_si256(x.add(32).cast())));
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_lo, p_hi));
            }
        }
        for r in 0..NR {
            let xd = xs[r].d[sb];
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xd * d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            let prod = _mm_madd_epi16(mins8, _mm_loadu_si128(xs[r].sums32.as_ptr().add(sb * 8).cast()));
            let h = _mm_hadd_epi32(_mm_hadd_epi32(prod, _mm_setzero_si128()), _mm_setzero_si128());
            summs[r] = (-xd * dmin).mul_add(_mm_cvtsi128_si32(h) as f32, summs[r]);
        }
    }
    let mut sums = summs;
    for (sum, acc) in sums.iter_mut().zip(acc) {
        *sum += hsum8(acc);
    }
    sums
}

#[inline(always)]
unsafe fn row_q6k<const NR: usize>(row: *const u8, xs: &[Q8KRow<'_>; NR], blocks: usize) -> [f32; NR] {
    let mut acc = [_mm256_setzero_ps(); NR];
    for sb in 0..blocks {
        let blk = row.add(sb * size_of::<BlockQ6K>());
        let d = f16_to_f32(blk.add(offset_of!(BlockQ6K, d)).cast::<u16>().read_unaligned());
        let scales = blk.add(offset_of!(BlockQ6K, scales)).cast::<i8>();
        let mut sumi = [_mm256_setzero_si256(); NR];
        for h in 0..2 {
            let codes = q6k_codes(blk, h);
            for (c, codes) in codes.into_iter().enumerate() {
                // Chunk k = 4h + c: 16-bit lanes 0..8 take sub-block 2k's scale, 8..16 sub-block 2k + 1's.
                let k = 4 * h + c;
                let scale = _mm256_set_m128i(_mm_set1_epi16(*scales.add(2 * k + 1) as i16), _mm_set1_epi16(*scales.add(2 * k) as i16));
                for r in 0..NR {
                    let x = _mm256_loadu_si256(xs[r].qs.as_ptr().add(sb * QK_K + 128 * h + 32 * c).cast());
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(scale, _mm256_maddubs_epi16(codes, x)));
                }
            }
        }
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(scales.cast()));
        for r in 0..NR {
            let bsums = _mm256_loadu_si256(xs[r].bsums.as_ptr().add(sb * 16).cast());
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, scales16));
            let lanes = _mm256_sub_epi32(sumi[r], offset);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xs[r].d[sb] * d), _mm256_cvtepi32_ps(lanes), acc[r]);
        }
    }
    let mut sums = [0f32; NR];
    for (sum, acc) in sums.iter_mut().zip(acc) {
        *sum = hsum8(acc);
    }
    sums
}

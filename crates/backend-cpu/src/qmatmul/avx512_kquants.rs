//! AVX-512 VNNI kernels for the k-quants (Q4_K, Q5_K, Q6_K) against ggml's `block_q8_K`
//! activations. A super-block's 256 codes are unpacked 64 at a time into element order, so they
//! line up with 64 activation bytes; `vpmaddubsw` multiplies them into pairs and `vpdpwssd`
//! multiplies the pairs by their sub-block scales and accumulates, all in integers. The float
//! work is one multiply-add per super-block.
//!
//! The integer lanes are ggml's AVX2 lanes (a 512-bit register holds two of its 256-bit chunks,
//! folded together at the end of the super-block), and the float operations are its operations
//! in its order, so every result has the bits of [`super::portable::dot_row_k`] and of
//! llama.cpp's `ggml_vec_dot_q*_K_q8_K`. One weight row at a time against up to four activation
//! rows; each (weight row, activation row) sees the same operations whatever the batch.

use std::arch::x86_64::*;
use std::mem::offset_of;

use rill_backend::quant::{scales_mins_k4, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use rill_backend::DType;

use super::activations::Q8Activations;
use super::activations_k::Q8KRow;
use super::f16_to_f32;

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4K | DType::Q5K | DType::Q6K)
}

/// As [`super::avx512::tile`], for the k-quants.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/DQ/VL/VNNI and F16C; `w` holds `w_rows` rows of `dtype`
/// with `acts.cols()` elements each; `acts` holds super-blocks; `out` is valid for every index
/// written.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let row_bytes = dtype.row_bytes(acts.cols()).expect("whole super-blocks, checked at upload");
    for i in 0..w_rows {
        let row = w.as_ptr().add(i * row_bytes);
        prefetch_row(row.wrapping_add(PREFETCH_ROWS * row_bytes), row_bytes);
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

/// How far ahead (in weight rows) the weights are prefetched: they stream from DRAM once per
/// token, and asking a few KiB ahead hides the latency the hardware prefetcher leaves (the same
/// distance as the 32-element kernels').
const PREFETCH_ROWS: usize = 8;

/// Asks for every cache line of the row at `p` (a prefetch never faults, so the row may lie past
/// the matrix).
#[inline(always)]
unsafe fn prefetch_row(p: *const u8, row_bytes: usize) {
    for line in (0..row_bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
    }
}

#[inline(always)]
unsafe fn row_dot<const NR: usize>(dtype: DType, row: *const u8, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8KRow<'_>; NR] = std::array::from_fn(|j| acts.super_block_row(r0 + j));
    let sums = match dtype {
        DType::Q4K => row_q45k::<NR, false>(row, &xs, acts.cols() / QK_K),
        DType::Q5K => row_q45k::<NR, true>(row, &xs, acts.cols() / QK_K),
        _ => row_q6k::<NR>(row, &xs, acts.cols() / QK_K),
    };
    for (j, v) in sums.into_iter().enumerate() {
        *out.add(j * stride) = v;
    }
}

/// Byte shuffles, per 64-code chunk `j` of Q4_K/Q5_K, that spread 16-bit scale `2j` over the low
/// 256 bits and scale `2j + 1` over the high 256 bits (bytes `4j..` of each 128-bit copy of the
/// eight scales).
const PICK_Q4K: [[u8; 64]; 4] = {
    let mut t = [[0u8; 64]; 4];
    let mut j = 0;
    while j < 4 {
        let mut i = 0;
        while i < 64 {
            let first = if i < 32 { 4 * j } else { 4 * j + 2 };
            t[j][i] = (first + i % 2) as u8;
            i += 1;
        }
        j += 1;
    }
    t
};

/// 16-bit lane indices, per 64-code chunk `k` of Q6_K: lanes `8t..8t + 8` take the scale of
/// sub-block `4k + t`.
const PICK_Q6K: [[u16; 32]; 4] = {
    let mut t = [[0u16; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            t[k][i] = (4 * k + i / 8) as u16;
            i += 1;
        }
        k += 1;
    }
    t
};

/// ggml's `hsum_float_8`.
#[inline(always)]
unsafe fn hsum8(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// ggml's 4-lane sum of `acc_m`: `(a₀ + a₂) + (a₁ + a₃)`.
#[inline(always)]
unsafe fn hsum4(x: __m128) -> f32 {
    let r = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)))
}

/// A super-block's 16 integer lanes folded into ggml's 8 (lane `l` with lane `l + 8`).
#[inline(always)]
unsafe fn fold(v: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
}

/// `[lo | hi]`.
#[inline(always)]
unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Q4_K (`FIVE = false`) and Q5_K: chunk `j` of 64 codes holds sub-blocks `2j` (low nibbles)
/// and `2j + 1` (high nibbles, plus for Q5_K the fifth bits `2j`, `2j + 1` of `qh`).
#[inline(always)]
unsafe fn row_q45k<const NR: usize, const FIVE: bool>(row: *const u8, xs: &[Q8KRow<'_>; NR], blocks: usize) -> [f32; NR] {
    let mut acc = [_mm256_setzero_ps(); NR];
    let mut acc_m = [_mm_setzero_ps(); NR];
    let mut summs = [0f32; NR];
    let low4 = _mm256_set1_epi8(0x0F);
    for sb in 0..blocks {
        // Q4_K and Q5_K share the header (d, dmin, scales); Q5_K's `qh` sits before its `qs`.
        // Blocks may be unaligned: fields are read through raw pointers, never references.
        let (blk, qh, qs) = if FIVE {
            let blk = row.add(sb * size_of::<BlockQ5K>());
            (blk, blk.add(offset_of!(BlockQ5K, qh)), blk.add(offset_of!(BlockQ5K, qs)))
        } else {
            let blk = row.add(sb * size_of::<BlockQ4K>());
            (blk, std::ptr::null(), blk.add(offset_of!(BlockQ4K, qs)))
        };
        let d = f16_to_f32(blk.add(offset_of!(BlockQ4K, d)).cast::<u16>().read_unaligned());
        let dmin = f16_to_f32(blk.add(offset_of!(BlockQ4K, dmin)).cast::<u16>().read_unaligned());
        let scales = &*blk.add(offset_of!(BlockQ4K, scales)).cast::<[u8; 12]>();
        let sm = _mm256_cvtepu8_epi16(_mm_loadu_si128(scales_mins_k4(scales).as_ptr().cast()));
        let (scales8, mins8) = (_mm256_castsi256_si128(sm), _mm256_extracti128_si256::<1>(sm));
        let scales4 = _mm512_broadcast_i32x4(scales8);
        let hbits = if FIVE { _mm256_loadu_si256(qh.cast()) } else { _mm256_setzero_si256() };
        let mut sumi = [_mm512_setzero_si512(); NR];
        for (j, pick) in PICK_Q4K.iter().enumerate() {
            let pick = _mm512_loadu_si512(pick.as_ptr().cast());
            let scale = _mm512_shuffle_epi8(scales4, pick);
            let v = _mm256_loadu_si256(qs.add(32 * j).cast());
            let mut lo = _mm256_and_si256(v, low4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low4);
            if FIVE {
                lo = _mm256_add_epi8(lo, fifth_bits(hbits, 2 * j as i32));
                hi = _mm256_add_epi8(hi, fifth_bits(hbits, 2 * j as i32 + 1));
            }
            let codes = join(lo, hi);
            for r in 0..NR {
                let x = _mm512_loadu_si512(xs[r].qs.as_ptr().add(sb * QK_K + 64 * j).cast());
                sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(codes, x), scale);
            }
        }
        for r in 0..NR {
            let xd = xs[r].d[sb];
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xd * d), _mm256_cvtepi32_ps(fold(sumi[r])), acc[r]);
            let bsums = _mm256_loadu_si256(xs[r].bsums.as_ptr().add(sb * 16).cast());
            let sums32 = _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256::<1>(bsums));
            let prod = _mm_madd_epi16(mins8, sums32);
            let neg_dmin = -xd * dmin;
            if FIVE {
                let h = _mm_hadd_epi32(_mm_hadd_epi32(prod, _mm_setzero_si128()), _mm_setzero_si128());
                summs[r] = neg_dmin.mul_add(_mm_cvtsi128_si32(h) as f32, summs[r]);
            } else {
                acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(neg_dmin), _mm_cvtepi32_ps(prod), acc_m[r]);
            }
        }
    }
    std::array::from_fn(|r| hsum8(acc[r]) + hsum4(acc_m[r]) + summs[r])
}

/// Q5_K's fifth bit `bit` of every `qh` byte, moved to bit 4.
#[inline(always)]
unsafe fn fifth_bits(hbits: __m256i, bit: i32) -> __m256i {
    let m = _mm256_and_si256(hbits, _mm256_set1_epi8(1 << bit));
    _mm256_slli_epi16::<4>(_mm256_srl_epi16(m, _mm_cvtsi32_si128(bit)))
}

/// Q6_K: the codes of half `h` come in two 64-code chunks (elements `128h..+64`, `128h+64..+64`),
/// each spanning four 16-element sub-blocks; `32·Σ sc·Σx` is taken off per lane at the end.
#[inline(always)]
unsafe fn row_q6k<const NR: usize>(row: *const u8, xs: &[Q8KRow<'_>; NR], blocks: usize) -> [f32; NR] {
    let mut acc = [_mm256_setzero_ps(); NR];
    let low4 = _mm256_set1_epi8(0x0F);
    for sb in 0..blocks {
        let blk = row.add(sb * size_of::<BlockQ6K>());
        let (ql, qh) = (blk.add(offset_of!(BlockQ6K, ql)), blk.add(offset_of!(BlockQ6K, qh)));
        let d = f16_to_f32(blk.add(offset_of!(BlockQ6K, d)).cast::<u16>().read_unaligned());
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(offset_of!(BlockQ6K, scales)).cast()));
        let scales_wide = _mm512_castsi256_si512(scales16);
        let mut sumi = [_mm512_setzero_si512(); NR];
        for h in 0..2 {
            let a = _mm256_loadu_si256(ql.add(64 * h).cast());
            let b = _mm256_loadu_si256(ql.add(64 * h + 32).cast());
            let hb = _mm256_loadu_si256(qh.add(32 * h).cast());
            let q0 = _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_slli_epi16::<4>(_mm256_and_si256(hb, _mm256_set1_epi8(3))));
            let q1 = _mm256_or_si256(_mm256_and_si256(b, low4), _mm256_slli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(12))));
            let q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(a), low4), _mm256_and_si256(hb, _mm256_set1_epi8(48)));
            let q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b), low4), _mm256_srli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(-64))));
            for (c, codes) in [join(q0, q1), join(q2, q3)].into_iter().enumerate() {
                let idx = _mm512_loadu_si512(PICK_Q6K[2 * h + c].as_ptr().cast());
                let scale = _mm512_permutexvar_epi16(idx, scales_wide);
                for r in 0..NR {
                    let x = _mm512_loadu_si512(xs[r].qs.as_ptr().add(sb * QK_K + 128 * h + 64 * c).cast());
                    sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(codes, x), scale);
                }
            }
        }
        for r in 0..NR {
            let bsums = _mm256_loadu_si256(xs[r].bsums.as_ptr().add(sb * 16).cast());
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, scales16));
            let lanes = _mm256_sub_epi32(fold(sumi[r]), offset);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xs[r].d[sb] * d), _mm256_cvtepi32_ps(lanes), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum8(acc[r]))
}

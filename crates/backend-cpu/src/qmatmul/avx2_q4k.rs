//! AVX2 kernel for interleaved Q4_K ([`super::q4k_interleaved`]): a group's 16 rows in two
//! halves of 8 lanes. Without VNNI, `vpmaddubsw` makes pairs of products that add up in 16 bits
//! over a whole sub-block (at most 8 · 2 · 15 · 128 < 2¹⁵), and one `vpmaddwd` with the scale
//! (in both halves of each lane) turns them into `scale · dot`. The float steps are the portable
//! twin's.

use std::arch::x86_64::*;

use rill_backend::quant::QK_K;

use super::activations::Q8Activations;
use super::activations_k::Q8KRow;
use super::q4k_interleaved::{BLOCK_BYTES, DMIN_AT, D_AT, LANES, MINS_AT, SCALES_AT};

/// Lanes of a 256-bit register: half a group.
const HALF: usize = LANES / 2;

/// As [`super::avx512_q4k::tile`].
///
/// # Safety
/// The CPU must support AVX2 and FMA; otherwise as [`super::avx512_q4k::tile`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK_K;
    for g in 0..w_rows.div_ceil(LANES) {
        let group = w.as_ptr().add(g * blocks * BLOCK_BYTES);
        for h in 0..2 {
            let lanes = (w_rows - g * LANES).saturating_sub(h * HALF).min(HALF);
            if lanes == 0 {
                break;
            }
            let o = out.add(g * LANES + h * HALF);
            for r in (0..acts.rows()).step_by(2) {
                match (acts.rows() - r).min(2) {
                    2 => half_rows::<2>(group, h, blocks, acts, r, o.add(r * stride), stride, lanes),
                    _ => half_rows::<1>(group, h, blocks, acts, r, o.add(r * stride), stride, lanes),
                }
            }
        }
    }
}

/// Half `h` of one group against activation rows `r0..r0 + NR`; the first `lanes` outputs stored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn half_rows<const NR: usize>(group: *const u8, h: usize, blocks: usize, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize, lanes: usize) {
    let xs: [Q8KRow<'_>; NR] = acts.super_block_rows(r0);
    let low4 = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); NR];
    let mut mins = [_mm256_setzero_ps(); NR];
    for b in 0..blocks {
        let blk = group.add(b * BLOCK_BYTES);
        let d = _mm256_load_ps(blk.add(D_AT + 4 * HALF * h).cast());
        let dmin = _mm256_load_ps(blk.add(DMIN_AT + 4 * HALF * h).cast());
        for p in 0..4 {
            let mut lo = [_mm256_setzero_si256(); NR];
            let mut hi = [_mm256_setzero_si256(); NR];
            for k in 0..8 {
                let v = _mm256_load_si256(blk.add(512 * p + 64 * k + 32 * h).cast());
                let (wl, wh) = (_mm256_and_si256(v, low4), _mm256_and_si256(_mm256_srli_epi16::<4>(v), low4));
                for r in 0..NR {
                    let x = xs[r].qs.as_ptr().add(b * QK_K + 64 * p + 4 * k);
                    lo[r] = _mm256_add_epi16(lo[r], _mm256_maddubs_epi16(wl, _mm256_set1_epi32(x.cast::<i32>().read_unaligned())));
                    hi[r] = _mm256_add_epi16(hi[r], _mm256_maddubs_epi16(wh, _mm256_set1_epi32(x.add(32).cast::<i32>().read_unaligned())));
                }
            }
            let s_lo = scale_pairs(blk.add(SCALES_AT + 2 * LANES * p + HALF * h));
            let s_hi = scale_pairs(blk.add(SCALES_AT + 2 * LANES * p + LANES + HALF * h));
            let m = _mm256_cvtepu8_epi16(_mm_load_si128(blk.add(MINS_AT + 2 * LANES * p + 2 * HALF * h).cast()));
            for r in 0..NR {
                let xd = _mm256_set1_ps(xs[r].d[b]);
                let sum = _mm256_add_epi32(_mm256_madd_epi16(lo[r], s_lo), _mm256_madd_epi16(hi[r], s_hi));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(d, xd), acc[r]);
                let sums32 = _mm256_set1_epi32(xs[r].sums32.as_ptr().add(8 * b + 2 * p).cast::<i32>().read_unaligned());
                mins[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(m, sums32)), _mm256_mul_ps(dmin, xd), mins[r]);
            }
        }
    }
    for r in 0..NR {
        let v = _mm256_sub_ps(acc[r], mins[r]);
        if lanes == HALF {
            _mm256_storeu_ps(out.add(r * stride), v);
        } else {
            let mut tmp = [0f32; HALF];
            _mm256_storeu_ps(tmp.as_mut_ptr(), v);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out.add(r * stride), lanes);
        }
    }
}

/// Eight lanes' 8-bit scales at `p`, each in both 16-bit halves of its lane.
#[inline(always)]
unsafe fn scale_pairs(p: *const u8) -> __m256i {
    let s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast()));
    _mm256_or_si256(s, _mm256_slli_epi32::<16>(s))
}

//! AVX-512 VNNI kernel for interleaved Q4_K ([`super::q4k_interleaved`]): a register's 16
//! lanes are 16 weight rows. Per four codes, one `vpdpbusd` of the rows' nibbles against the four
//! activation bytes broadcast; per sub-block pair, the two sums times their scales, one float
//! multiply-add for the codes and one for the mins, in the order of the portable twin.

use std::arch::x86_64::*;

use rill_backend::quant::QK_K;

use super::activations::Q8Activations;
use super::activations_k::Q8KRow;
use super::q4k_interleaved::{BLOCK_BYTES, DMIN_AT, D_AT, LANES, MINS_AT, SCALES_AT};

/// `out[r·stride + i] = Σ w[i]·x[r]` for the `w_rows` rows whose groups are `w`, every row of
/// `acts`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI; `w` holds `w_rows.div_ceil(16)` groups of
/// `acts.cols() / 256` blocks (64-byte aligned); `acts` holds super-blocks; `out` is valid for
/// every index written.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
pub unsafe fn tile(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK_K;
    for g in 0..w_rows.div_ceil(LANES) {
        let lanes = (w_rows - g * LANES).min(LANES);
        let mask: __mmask16 = if lanes == LANES { !0 } else { (1 << lanes) - 1 };
        let group = w.as_ptr().add(g * blocks * BLOCK_BYTES);
        let o = out.add(g * LANES);
        for r in (0..acts.rows()).step_by(4) {
            match (acts.rows() - r).min(4) {
                4 => group_rows::<4>(group, blocks, acts, r, o.add(r * stride), stride, mask),
                3 => group_rows::<3>(group, blocks, acts, r, o.add(r * stride), stride, mask),
                2 => group_rows::<2>(group, blocks, acts, r, o.add(r * stride), stride, mask),
                _ => group_rows::<1>(group, blocks, acts, r, o.add(r * stride), stride, mask),
            }
        }
    }
}

/// One group against activation rows `r0..r0 + NR`.
#[inline(always)]
unsafe fn group_rows<const NR: usize>(group: *const u8, blocks: usize, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize, mask: __mmask16) {
    let xs: [Q8KRow<'_>; NR] = acts.super_block_rows(r0);
    let low4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); NR];
    let mut mins = [_mm512_setzero_ps(); NR];
    for b in 0..blocks {
        let blk = group.add(b * BLOCK_BYTES);
        let d = _mm512_load_ps(blk.add(D_AT).cast());
        let dmin = _mm512_load_ps(blk.add(DMIN_AT).cast());
        for p in 0..4 {
            let mut lo = [_mm512_setzero_si512(); NR];
            let mut hi = [_mm512_setzero_si512(); NR];
            for k in 0..8 {
                let v = _mm512_load_si512(blk.add(512 * p + 64 * k).cast());
                let (wl, wh) = (_mm512_and_si512(v, low4), _mm512_and_si512(_mm512_srli_epi16::<4>(v), low4));
                for r in 0..NR {
                    let x = xs[r].qs.as_ptr().add(b * QK_K + 64 * p + 4 * k);
                    lo[r] = _mm512_dpbusd_epi32(lo[r], wl, _mm512_set1_epi32(x.cast::<i32>().read_unaligned()));
                    hi[r] = _mm512_dpbusd_epi32(hi[r], wh, _mm512_set1_epi32(x.add(32).cast::<i32>().read_unaligned()));
                }
            }
            let s_lo = _mm512_cvtepu8_epi32(_mm_load_si128(blk.add(SCALES_AT + 2 * LANES * p).cast()));
            let s_hi = _mm512_cvtepu8_epi32(_mm_load_si128(blk.add(SCALES_AT + 2 * LANES * p + LANES).cast()));
            let m = _mm512_cvtepu8_epi16(_mm256_load_si256(blk.add(MINS_AT + 2 * LANES * p).cast()));
            for r in 0..NR {
                let xd = _mm512_set1_ps(xs[r].d[b]);
                let sum = _mm512_add_epi32(_mm512_mullo_epi32(lo[r], s_lo), _mm512_mullo_epi32(hi[r], s_hi));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(d, xd), acc[r]);
                let sums32 = _mm512_set1_epi32(xs[r].sums32.as_ptr().add(8 * b + 2 * p).cast::<i32>().read_unaligned());
                mins[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(m, sums32)), _mm512_mul_ps(dmin, xd), mins[r]);
            }
        }
    }
    for r in 0..NR {
        _mm512_mask_storeu_ps(out.add(r * stride), mask, _mm512_sub_ps(acc[r], mins[r]));
    }
}

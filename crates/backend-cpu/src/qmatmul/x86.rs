//! Pieces the x86 kernels share: ggml's horizontal sums, the weight prefetch, IQ4_NL's scalar
//! tail block, and the k-quant Q5_K/Q6_K code unpacking (256-bit, so the AVX2 and AVX-512 kernels unpack alike). Everything is
//! `#[inline(always)]`, so it compiles inside each kernel's `#[target_feature]` function.

use std::arch::x86_64::*;
use std::mem::offset_of;

use rill_backend::quant::{BlockIQ4NL, BlockQ5K, BlockQ6K, QK};

use super::Q8Row;

/// ggml's `hsum_float_8`: `((a₀+a₄) + (a₂+a₆)) + ((a₁+a₅) + (a₃+a₇))`.
#[inline(always)]
pub unsafe fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
    hsum4(s)
}

/// The tail of [`hsum8`]: `(a₀ + a₂) + (a₁ + a₃)`.
#[inline(always)]
unsafe fn hsum4(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// How far ahead (in weight rows) the streaming kernels prefetch: weights stream from DRAM once
/// per token, and asking a few KiB ahead hides the latency the hardware prefetcher leaves
/// (farther was worse).
pub const PREFETCH_ROWS: usize = 8;

/// Asks for every cache line of the `bytes` at `p` (a prefetch never faults, so they may lie
/// past the matrix).
#[inline(always)]
pub unsafe fn prefetch(p: *const u8, bytes: usize) {
    for line in (0..bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
    }
}

/// Q5_K: the 64 codes of chunk `j` of the block at `blk`, in element order: the low nibbles of
/// `qs[32j..32j + 32]` (sub-block `2j`) and their high nibbles (sub-block `2j + 1`), each with
/// its fifth bit (bits `2j` and `2j + 1` of `qh`).
#[inline(always)]
pub unsafe fn q5k_codes(blk: *const u8, j: usize) -> (__m256i, __m256i) {
    let low4 = _mm256_set1_epi8(0x0F);
    let v = _mm256_loadu_si256(blk.add(offset_of!(BlockQ5K, qs) + 32 * j).cast());
    let hbits = _mm256_loadu_si256(blk.add(offset_of!(BlockQ5K, qh)).cast());
    let lo = _mm256_and_si256(v, low4);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low4);
    (_mm256_add_epi8(lo, fifth_bits(hbits, 2 * j as i32)), _mm256_add_epi8(hi, fifth_bits(hbits, 2 * j as i32 + 1)))
}

/// Q5_K's fifth bit `bit` of every `qh` byte, moved to bit 4.
#[inline(always)]
unsafe fn fifth_bits(hbits: __m256i, bit: i32) -> __m256i {
    let m = _mm256_and_si256(hbits, _mm256_set1_epi8(1 << bit));
    _mm256_slli_epi16::<4>(_mm256_srl_epi16(m, _mm_cvtsi32_si128(bit)))
}

/// Q6_K: the 128 codes (0..63) of half `h` of the block at `blk`, 32 at a time in element order
/// (elements `128h + 32c..`), as ggml's x86 kernels assemble them from `ql` and `qh`.
#[inline(always)]
pub unsafe fn q6k_codes(blk: *const u8, h: usize) -> [__m256i; 4] {
    let (ql, qh) = (blk.add(offset_of!(BlockQ6K, ql) + 64 * h), blk.add(offset_of!(BlockQ6K, qh) + 32 * h));
    let low4 = _mm256_set1_epi8(0x0F);
    let a = _mm256_loadu_si256(ql.cast());
    let b = _mm256_loadu_si256(ql.add(32).cast());
    let hb = _mm256_loadu_si256(qh.cast());
    [
        _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_slli_epi16::<4>(_mm256_and_si256(hb, _mm256_set1_epi8(3)))),
        _mm256_or_si256(_mm256_and_si256(b, low4), _mm256_slli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(12)))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(a), low4), _mm256_and_si256(hb, _mm256_set1_epi8(48))),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(b), low4), _mm256_srli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(-64)))),
    ]
}

/// ggml's scalar tail for an odd last IQ4_NL block: `d_x·d_w · Σ` (multiplied, then added by
/// the caller; ggml's compiled tail does not fuse them).
#[inline(always)]
pub unsafe fn iq4_nl_tail(blk: *const u8, x: &Q8Row<'_>, ib: usize) -> f32 {
    let b: BlockIQ4NL = blk.cast::<BlockIQ4NL>().read_unaligned();
    let q = super::portable::iq4_values(&b.qs);
    let sumi: i32 = q.iter().zip(&x.qs[ib * QK..(ib + 1) * QK]).map(|(&a, &b)| a as i32 * b as i32).sum();
    x.d[ib] * super::f16_to_f32(b.d.to_bits()) * sumi as f32
}

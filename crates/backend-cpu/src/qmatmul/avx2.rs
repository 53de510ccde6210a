//! AVX2 kernels for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights, for x86 CPUs without AVX-512 VNNI: one
//! 32-element block per 256-bit register, the integer dot as `vpmaddubsw` + `vpmaddwd`
//! (unsigned × signed bytes into 16-bit pairs, then into 32-bit lanes), 4 weight rows per
//! activation row so each activation block is loaded once for four rows.
//!
//! The float arithmetic is the portable kernel's (ggml's own x86 kernel), bit for bit.
//!
//! `vpmaddubsw` saturates at ±32767, so signed weights (Q4_0 and Q5_0 after subtracting 8 or 16,
//! Q8_0) use ggml's sign trick: `|w|` (unsigned, ≤ 128) times `x` with `w`'s sign, at most 2·128·127.

use std::arch::x86_64::*;

use rill_backend::DType;

use super::activations::{Q8Activations, Q8Row, QK};
use super::x86::hsum8;

const MR: usize = 4;

trait BlockFormat {
    const BLOCK_BYTES: usize;
    const HAS_MIN: bool;
    /// `Σ w·x` per 32-bit lane (eight lanes of four products) for the block at `p`.
    unsafe fn dot(p: *const u8, x: __m256i) -> __m256i;
    /// `(d, m)` of the block at `p` (`m` = 0 without a min).
    unsafe fn scales(p: *const u8) -> (f32, f32);
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    super::f16_to_f32(p.cast::<u16>().read_unaligned())
}

/// 32 nibbles in element order: the low nibbles of the 16 bytes, then the high ones.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let v = _mm_loadu_si128(p.cast());
    let mask = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(v), mask), _mm_and_si128(v, mask))
}

/// The fifth bits of a Q5 block's 32 codes from its `qh` word at `p` (bit `e` for element `e`), as
/// `0x10` in byte `e` where set: ggml's `bytes_from_bits_32`, masked to the bit.
#[inline(always)]
unsafe fn fifth_bits(p: *const u8) -> __m256i {
    // Byte e takes byte e / 8 of the word, then keeps bit e % 8 of it.
    let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(p.cast::<i32>().read_unaligned()), _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0));
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10))
}

#[inline(always)]
unsafe fn dot_unsigned(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn dot_signed(w: __m256i, x: __m256i) -> __m256i {
    dot_unsigned(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

struct Q4_0;
impl BlockFormat for Q4_0 {
    const BLOCK_BYTES: usize = 18;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn dot(p: *const u8, x: __m256i) -> __m256i {
        dot_signed(_mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)), x)
    }
    #[inline(always)]
    unsafe fn scales(p: *const u8) -> (f32, f32) {
        (f16_at(p), 0.0)
    }
}

struct Q4_1;
impl BlockFormat for Q4_1 {
    const BLOCK_BYTES: usize = 20;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn dot(p: *const u8, x: __m256i) -> __m256i {
        dot_unsigned(nibbles(p.add(4)), x)
    }
    #[inline(always)]
    unsafe fn scales(p: *const u8) -> (f32, f32) {
        (f16_at(p), f16_at(p.add(2)))
    }
}

struct Q5_0;
impl BlockFormat for Q5_0 {
    const BLOCK_BYTES: usize = 22;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn dot(p: *const u8, x: __m256i) -> __m256i {
        let codes = _mm256_or_si256(nibbles(p.add(6)), fifth_bits(p.add(2)));
        dot_signed(_mm256_sub_epi8(codes, _mm256_set1_epi8(16)), x)
    }
    #[inline(always)]
    unsafe fn scales(p: *const u8) -> (f32, f32) {
        (f16_at(p), 0.0)
    }
}

struct Q5_1;
impl BlockFormat for Q5_1 {
    const BLOCK_BYTES: usize = 24;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn dot(p: *const u8, x: __m256i) -> __m256i {
        dot_unsigned(_mm256_or_si256(nibbles(p.add(8)), fifth_bits(p.add(4))), x)
    }
    #[inline(always)]
    unsafe fn scales(p: *const u8) -> (f32, f32) {
        (f16_at(p), f16_at(p.add(2)))
    }
}

struct Q8_0;
impl BlockFormat for Q8_0 {
    const BLOCK_BYTES: usize = 34;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn dot(p: *const u8, x: __m256i) -> __m256i {
        dot_signed(_mm256_loadu_si256(p.add(2).cast()), x)
    }
    #[inline(always)]
    unsafe fn scales(p: *const u8) -> (f32, f32) {
        (f16_at(p), 0.0)
    }
}

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0)
}

/// As [`super::avx512::tile`], for AVX2 machines.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; the other conditions are those of the AVX-512 tile.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    match dtype {
        DType::Q4_0 => tile_format::<Q4_0>(w, w_rows, acts, out, stride),
        DType::Q4_1 => tile_format::<Q4_1>(w, w_rows, acts, out, stride),
        DType::Q5_0 => tile_format::<Q5_0>(w, w_rows, acts, out, stride),
        DType::Q5_1 => tile_format::<Q5_1>(w, w_rows, acts, out, stride),
        DType::Q8_0 => tile_format::<Q8_0>(w, w_rows, acts, out, stride),
        other => unreachable!("no AVX2 kernel for {other}"),
    }
}

#[inline(always)]
unsafe fn tile_format<F: BlockFormat>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let row_bytes = acts.cols() / QK * F::BLOCK_BYTES;
    debug_assert!(w.len() >= w_rows * row_bytes);
    let mut i = 0;
    while i < w_rows {
        let wp = w.as_ptr().add(i * row_bytes);
        for r in 0..acts.rows() {
            if w_rows - i >= MR {
                micro::<F, MR>(wp, row_bytes, acts.row(r), out.add(r * stride + i));
            } else {
                micro::<F, 1>(wp, row_bytes, acts.row(r), out.add(r * stride + i));
            }
        }
        i += if w_rows - i >= MR { MR } else { 1 };
    }
}

#[inline(always)]
unsafe fn micro<F: BlockFormat, const ROWS: usize>(w: *const u8, row_bytes: usize, x: Q8Row<'_>, out: *mut f32) {
    let mut acc = [_mm256_setzero_ps(); ROWS];
    let mut mins = [0.0f32; ROWS];
    for b in 0..x.d.len() {
        let xq = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK).cast());
        let (xd, xs) = (x.d[b], x.s[b]);
        for i in 0..ROWS {
            let p = w.add(i * row_bytes + b * F::BLOCK_BYTES);
            let (d, m) = F::scales(p);
            let dot = _mm256_cvtepi32_ps(F::dot(p, xq));
            acc[i] = _mm256_fmadd_ps(dot, _mm256_set1_ps(d * xd), acc[i]);
            if F::HAS_MIN {
                mins[i] = m.mul_add(xs, mins[i]);
            }
        }
    }
    for i in 0..ROWS {
        *out.add(i) = if F::HAS_MIN { hsum8(acc[i]) + mins[i] } else { hsum8(acc[i]) };
    }
}

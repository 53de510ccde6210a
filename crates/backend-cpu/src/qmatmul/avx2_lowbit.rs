//! AVX2 kernels for the low-bit formats (Q2_K, Q3_K and IQ4_XS against `block_q8_K`, IQ4_NL
//! against Q8_0), for x86 CPUs without AVX-512 VNNI: ggml's own AVX2 `ggml_vec_dot_*` (32
//! weights per register as signed values, `vpsignb` moving their signs onto the activations,
//! `vpmaddubsw` into pairs, `vpmaddwd` by the sub-block scale into 8 lanes), so the results
//! have the bits of [`super::portable`]. One weight row at a time against up to four activation
//! rows, sharing the unpacked weights; each row sees the same operations whatever the batch.

use std::arch::x86_64::*;
use std::mem::offset_of;

use rill_backend::quant::{iq4xs_scale, scales_q3k, BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, KVALUES_IQ4NL, QK, QK_K};
use rill_backend::DType;

use super::activations::{Q8Activations, Q8Row};
use super::activations_k::Q8KRow;
use super::f16_to_f32;
use super::x86::{hsum8, iq4_nl_tail, prefetch, PREFETCH_ROWS};

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q2K | DType::Q3K | DType::IQ4XS | DType::IQ4NL)
}

/// As [`super::avx512_lowbit::tile`], for AVX2 machines.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; the other conditions are those of the AVX-512 tile.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let (row_bytes, super_blocks) = (dtype.row_bytes(acts.cols()).expect("whole blocks, checked at upload"), dtype != DType::IQ4NL);
    debug_assert!(w.len() >= w_rows * row_bytes);
    for i in 0..w_rows {
        let row = w.as_ptr().add(i * row_bytes);
        prefetch(row.wrapping_add(PREFETCH_ROWS * row_bytes), row_bytes);
        let mut r = 0;
        while r < acts.rows() {
            let o = out.add(r * stride + i);
            let nr = (acts.rows() - r).min(4);
            match (dtype, nr) {
                (DType::Q2K, 4) => row_dot::<Q2, 4>(row, acts, r, o, stride),
                (DType::Q2K, 3) => row_dot::<Q2, 3>(row, acts, r, o, stride),
                (DType::Q2K, 2) => row_dot::<Q2, 2>(row, acts, r, o, stride),
                (DType::Q2K, _) => row_dot::<Q2, 1>(row, acts, r, o, stride),
                (DType::Q3K, 4) => row_dot::<Q3, 4>(row, acts, r, o, stride),
                (DType::Q3K, 3) => row_dot::<Q3, 3>(row, acts, r, o, stride),
                (DType::Q3K, 2) => row_dot::<Q3, 2>(row, acts, r, o, stride),
                (DType::Q3K, _) => row_dot::<Q3, 1>(row, acts, r, o, stride),
                (_, 4) if super_blocks => row_dot::<IQ4XS, 4>(row, acts, r, o, stride),
                (_, 3) if super_blocks => row_dot::<IQ4XS, 3>(row, acts, r, o, stride),
                (_, 2) if super_blocks => row_dot::<IQ4XS, 2>(row, acts, r, o, stride),
                (_, _) if super_blocks => row_dot::<IQ4XS, 1>(row, acts, r, o, stride),
                (_, 4) => iq4_nl_rows::<4>(row, acts, r, o, stride),
                (_, 3) => iq4_nl_rows::<3>(row, acts, r, o, stride),
                (_, 2) => iq4_nl_rows::<2>(row, acts, r, o, stride),
                (_, _) => iq4_nl_rows::<1>(row, acts, r, o, stride),
            }
            r += nr;
        }
    }
}

/// A super-block ready for the dot: chunk `k` is elements `32k..32k + 32` as signed values
/// (and their magnitudes), with per 16-bit pair the scale of its sub-block.
struct Unpacked {
    values: [__m256i; 8],
    mags: [__m256i; 8],
    scales: [__m256i; 8],
    /// Q2_K: the sixteen 4-bit mins (16-bit). Others: unused.
    mins: __m256i,
    d: f32,
    dmin: f32,
}

trait Kind {
    const BLOCK_BYTES: usize;
    /// Whether any weight is negative (Q2_K's codes are not: it skips `vpsignb`).
    const SIGNED: bool;
    unsafe fn unpack(blk: *const u8) -> Unpacked;
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256);
}

struct Q2;
struct Q3;
struct IQ4XS;

/// Chunk `k`'s pair scales for 16-element sub-blocks: pairs 0..8 sub-block `2k`, 8..16 `2k + 1`.
#[inline(always)]
unsafe fn pair_scales(lo: i16, hi: i16) -> __m256i {
    _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
}

/// The 2-bit codes of chunk `k` of a Q2_K/Q3_K `qs`: half `k / 4`'s 32 bytes shifted by `2(k % 4)`.
#[inline(always)]
unsafe fn two_bit_chunk(qs: *const u8, k: usize) -> __m256i {
    let v = _mm256_loadu_si256(qs.add(32 * (k / 4)).cast());
    _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * (k % 4) as i32)), _mm256_set1_epi8(3))
}

const ZERO: Unpacked = Unpacked {
    values: [unsafe { std::mem::zeroed() }; 8],
    mags: [unsafe { std::mem::zeroed() }; 8],
    scales: [unsafe { std::mem::zeroed() }; 8],
    mins: unsafe { std::mem::zeroed() },
    d: 0.0,
    dmin: 0.0,
};

impl Kind for Q2 {
    const BLOCK_BYTES: usize = size_of::<BlockQ2K>();
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // Blocks may be unaligned: fields are read through raw pointers, never references.
        let d = f16_to_f32(blk.add(offset_of!(BlockQ2K, d)).cast::<u16>().read_unaligned());
        let dmin = f16_to_f32(blk.add(offset_of!(BlockQ2K, dmin)).cast::<u16>().read_unaligned());
        let sc = &*blk.add(offset_of!(BlockQ2K, scales)).cast::<[u8; 16]>();
        let sm = _mm_loadu_si128(sc.as_ptr().cast());
        let mut u = Unpacked { mins: _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sm), _mm_set1_epi8(0x0F))), d, dmin, ..ZERO };
        for k in 0..8 {
            u.mags[k] = two_bit_chunk(blk.add(offset_of!(BlockQ2K, qs)), k);
            u.scales[k] = pair_scales((sc[2 * k] & 0x0F) as i16, (sc[2 * k + 1] & 0x0F) as i16);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256) {
        let prod = _mm256_madd_epi16(u.mins, _mm256_loadu_si256(x.bsums.as_ptr().add(sb * 16).cast()));
        let xd = x.d[sb];
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(-xd * u.dmin), _mm256_cvtepi32_ps(prod), *acc);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(xd * u.d), _mm256_cvtepi32_ps(sumi), *acc);
    }
}

impl Kind for Q3 {
    const BLOCK_BYTES: usize = size_of::<BlockQ3K>();
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        let d = f16_to_f32(blk.add(offset_of!(BlockQ3K, d)).cast::<u16>().read_unaligned());
        let scales = scales_q3k(&*blk.add(offset_of!(BlockQ3K, scales)).cast::<[u8; 12]>());
        let hbits = _mm256_loadu_si256(blk.add(offset_of!(BlockQ3K, hmask)).cast());
        let mut u = Unpacked { d, ..ZERO };
        for k in 0..8 {
            // Chunk k's third bits are bit k of the 32 hmask bytes: q − 4 is `low − 4` where
            // it is clear.
            let low = two_bit_chunk(blk.add(offset_of!(BlockQ3K, qs)), k);
            let bit = _mm256_set1_epi8((1u8 << k) as i8);
            let clear = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), _mm256_setzero_si256());
            u.values[k] = _mm256_sub_epi8(low, _mm256_and_si256(clear, _mm256_set1_epi8(4)));
            u.mags[k] = _mm256_sign_epi8(u.values[k], u.values[k]);
            u.scales[k] = pair_scales(scales[2 * k] as i16, scales[2 * k + 1] as i16);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256) {
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d[sb] * u.d), _mm256_cvtepi32_ps(sumi), *acc);
    }
}

/// The codebook values of an IQ4 16-byte code run at `p` (16 low nibbles, then 16 high), in
/// element order.
#[inline(always)]
unsafe fn iq4_values(p: *const u8) -> __m256i {
    let book = _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast());
    let v = _mm_loadu_si128(p.cast());
    let m4 = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(_mm_shuffle_epi8(book, _mm_and_si128(_mm_srli_epi16::<4>(v), m4)), _mm_shuffle_epi8(book, _mm_and_si128(v, m4)))
}

impl Kind for IQ4XS {
    const BLOCK_BYTES: usize = size_of::<BlockIQ4XS>();
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        let b: BlockIQ4XS = blk.cast::<BlockIQ4XS>().read_unaligned();
        let mut u = Unpacked { d: f16_to_f32(b.d.to_bits()), ..ZERO };
        for k in 0..8 {
            u.values[k] = iq4_values(blk.add(offset_of!(BlockIQ4XS, qs) + 16 * k));
            u.mags[k] = _mm256_sign_epi8(u.values[k], u.values[k]);
            u.scales[k] = _mm256_set1_epi16(iq4xs_scale(&b, k) as i16);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256) {
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(u.d * x.d[sb]), _mm256_cvtepi32_ps(sumi), *acc);
    }
}

#[inline(always)]
unsafe fn row_dot<K: Kind, const NR: usize>(row: *const u8, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8KRow<'_>; NR] = acts.super_block_rows(r0);
    let mut acc = [_mm256_setzero_ps(); NR];
    for sb in 0..acts.cols() / QK_K {
        let u = K::unpack(row.add(sb * K::BLOCK_BYTES));
        let mut sumi = [_mm256_setzero_si256(); NR];
        for k in 0..8 {
            for r in 0..NR {
                let mut x = _mm256_loadu_si256(xs[r].qs.as_ptr().add(sb * QK_K + 32 * k).cast());
                if K::SIGNED {
                    x = _mm256_sign_epi8(x, u.values[k]);
                }
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(u.mags[k], x), u.scales[k]));
            }
        }
        for r in 0..NR {
            K::finish(&u, sumi[r], &xs[r], sb, &mut acc[r]);
        }
    }
    for (r, &a) in acc.iter().enumerate() {
        *out.add(r * stride) = hsum8(a);
    }
}

/// IQ4_NL as ggml's AVX2 `ggml_vec_dot_iq4_nl_q8_0`: even blocks into one accumulator, odd
/// blocks into another, `hsum8` of their sum, and an odd last block as a scalar tail.
#[inline(always)]
unsafe fn iq4_nl_rows<const NR: usize>(row: *const u8, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    const BYTES: usize = size_of::<BlockIQ4NL>();
    let blocks = acts.cols() / QK;
    let xs: [Q8Row<'_>; NR] = acts.rows_from(r0);
    let mut acc = [[_mm256_setzero_ps(); 2]; NR];
    for ib in 0..blocks & !1 {
        let blk = row.add(ib * BYTES);
        let v = iq4_values(blk.add(offset_of!(BlockIQ4NL, qs)));
        let mag = _mm256_sign_epi8(v, v);
        let wd = f16_to_f32(blk.cast::<u16>().read_unaligned());
        for r in 0..NR {
            let x = _mm256_sign_epi8(_mm256_loadu_si256(xs[r].qs.as_ptr().add(ib * QK).cast()), v);
            let lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(mag, x), _mm256_set1_epi16(1));
            acc[r][ib % 2] = _mm256_fmadd_ps(_mm256_set1_ps(xs[r].d[ib] * wd), _mm256_cvtepi32_ps(lanes), acc[r][ib % 2]);
        }
    }
    for r in 0..NR {
        let mut sumf = hsum8(_mm256_add_ps(acc[r][0], acc[r][1]));
        if blocks % 2 == 1 {
            sumf += iq4_nl_tail(row.add((blocks - 1) * BYTES), &xs[r], blocks - 1);
        }
        *out.add(r * stride) = sumf;
    }
}

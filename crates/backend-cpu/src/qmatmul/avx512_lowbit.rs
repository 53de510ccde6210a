//! AVX-512 VNNI kernels for the low-bit formats: Q2_K, Q3_K and IQ4_XS against ggml's
//! `block_q8_K` activations, IQ4_NL against Q8_0.
//!
//! Every weight is turned into its signed integer value (Q3_K's `q − 4`, the IQ4 codebook's
//! level) 64 at a time in element order, kept as a magnitude and a sign mask: the activations
//! are negated where the weight is negative (ggml's AVX2 sign trick, with a mask since AVX-512
//! has no `vpsignb`; activation codes are never −128, see `activations_k`), so `vpmaddubsw`
//! multiplies unsigned by signed bytes without saturating. For the super-block formats
//! `vpdpwssd` then multiplies the 16-bit pairs by their sub-block scale and accumulates, all in
//! integers; IQ4_NL's blocks have no sub-scale and take `vpdpbusd` directly.
//!
//! The integer lanes are ggml's AVX2 lanes (a 512-bit register holds two of its 256-bit chunks,
//! folded at the end of the super-block) and the float operations are its operations in its
//! order, so every result has the bits of [`super::portable`] and of llama.cpp's
//! `ggml_vec_dot_*`. A weight super-block is unpacked once per four activation rows at decode,
//! and once per call for a batch (eight weight rows at a time into a per-thread buffer, then every
//! group of four activation rows against them); each (weight row, activation row) sees the same
//! operations whatever the batch.

use std::arch::x86_64::*;
use std::cell::RefCell;
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

/// As [`super::avx512::tile`], for the low-bit formats.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/DQ/VL/VNNI and F16C; `w` holds `w_rows` rows of `dtype`
/// with `acts.cols()` elements each; `acts` holds the format [`super::Formats::of`] asks for;
/// `out` is valid for every index written.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    match dtype {
        DType::Q2K => tile_kind::<Q2>(w, w_rows, acts, out, stride),
        DType::Q3K => tile_kind::<Q3>(w, w_rows, acts, out, stride),
        DType::IQ4XS => tile_kind::<IQ4XS>(w, w_rows, acts, out, stride),
        _ => tile_iq4_nl(w, w_rows, acts, out, stride),
    }
}

/// A super-block ready for the dot: chunk `j` covers elements `64j..64j + 64`, as magnitudes,
/// a mask of the negative ones, and per 16-bit pair the scale of its sub-block.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Unpacked {
    mags: [__m512i; 4],
    negative: [__mmask64; 4],
    scales: [__m512i; 4],
    /// Q2_K: the sixteen 4-bit mins (16-bit). Others: unused.
    mins: __m256i,
    d: f32,
    dmin: f32,
}

/// A super-block format: how its blocks unpack and how a super-block's sums end.
trait Kind {
    const BLOCK_BYTES: usize;
    /// Whether any weight is negative (Q2_K's codes are not: it skips the negation).
    const SIGNED: bool;
    /// # Safety
    /// `blk` points at a whole (possibly unaligned) block; AVX-512 BW and F16C.
    unsafe fn unpack(blk: *const u8) -> Unpacked;
    /// Adds the super-block's integer lanes `sumi` (folded to ggml's 8) against super-block
    /// `sb` of activation row `x` into `acc`.
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256);
}

struct Q2;
struct Q3;
struct IQ4XS;

/// 16-bit lane indices: pair `p` of a 64-element chunk lies in 16-element sub-block `p / 8`;
/// chunk `j` adds `4j`.
const PICK16: [u16; 32] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];

/// Each chunk's 16-bit pair scales from sixteen 16-element sub-block scales (16-bit, in `all`).
#[inline(always)]
unsafe fn pick16(all: __m256i, scales: &mut [__m512i; 4]) {
    let pick = _mm512_loadu_si512(PICK16.as_ptr().cast());
    let wide = _mm512_castsi256_si512(all);
    for (j, s) in scales.iter_mut().enumerate() {
        *s = _mm512_permutexvar_epi16(_mm512_add_epi16(pick, _mm512_set1_epi16(4 * j as i16)), wide);
    }
}

/// The 2-bit codes of 64-element chunk `j` of a Q2_K/Q3_K `qs` at `qs`, in element order: half
/// `j / 2`'s 32 bytes shifted by `4(j % 2)` (elements `64j..+32`) and `4(j % 2) + 2` (the next 32).
#[inline(always)]
unsafe fn two_bit_chunk(qs: *const u8, j: usize) -> __m512i {
    let v = _mm256_loadu_si256(qs.add(32 * (j / 2)).cast());
    let m3 = _mm256_set1_epi8(3);
    let (lo, hi) = if j.is_multiple_of(2) {
        (_mm256_and_si256(v, m3), _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3))
    } else {
        (_mm256_and_si256(_mm256_srli_epi16::<4>(v), m3), _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3))
    };
    join(lo, hi)
}

impl Kind for Q2 {
    const BLOCK_BYTES: usize = size_of::<BlockQ2K>();
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // Blocks may be unaligned: fields are read through raw pointers, never references.
        let d = f16_to_f32(blk.add(offset_of!(BlockQ2K, d)).cast::<u16>().read_unaligned());
        let dmin = f16_to_f32(blk.add(offset_of!(BlockQ2K, dmin)).cast::<u16>().read_unaligned());
        let sm = _mm_loadu_si128(blk.add(offset_of!(BlockQ2K, scales)).cast());
        let m4 = _mm_set1_epi8(0x0F);
        let mut u = Unpacked { mins: _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sm), m4)), d, dmin, ..ZERO };
        pick16(_mm256_cvtepu8_epi16(_mm_and_si128(sm, m4)), &mut u.scales);
        for j in 0..4 {
            u.mags[j] = two_bit_chunk(blk.add(offset_of!(BlockQ2K, qs)), j);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256) {
        // ggml adds the mins first: fma(−d_x·dmin, m₂ₗ·Σx₂ₗ + m₂ₗ₊₁·Σx₂ₗ₊₁, acc).
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
        let mut u = Unpacked { d, ..ZERO };
        pick16(_mm256_cvtepi8_epi16(_mm_loadu_si128(scales.as_ptr().cast())), &mut u.scales);
        // Element e's third bit is bit e / 32 of hmask byte e % 32: chunk j's halves read bits
        // 2j and 2j + 1 of the same 32 bytes.
        let hbits = _mm256_loadu_si256(blk.add(offset_of!(BlockQ3K, hmask)).cast());
        let wide = join(hbits, hbits);
        for j in 0..4 {
            let low = two_bit_chunk(blk.add(offset_of!(BlockQ3K, qs)), j);
            let bit = _mm512_inserti64x4::<1>(_mm512_set1_epi8((1u8 << (2 * j)) as i8), _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8));
            let high = _mm512_test_epi8_mask(wide, bit);
            // q − 4 is `low` where the bit is set and `low − 4` (negative) where it is not.
            u.negative[j] = !high;
            u.mags[j] = _mm512_mask_sub_epi8(low, !high, _mm512_set1_epi8(4), low);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256) {
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d[sb] * u.d), _mm256_cvtepi32_ps(sumi), *acc);
    }
}

/// IQ4's codebook in every 128-bit lane, for `vpshufb`.
#[inline(always)]
unsafe fn codebook() -> __m512i {
    _mm512_broadcast_i32x4(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()))
}

/// The codebook values of two 16-byte IQ4 code runs at `a` and `b` (each: 16 low nibbles, then
/// 16 high), in element order: a's 32, then b's.
#[inline(always)]
unsafe fn iq4_values_pair(a: *const u8, b: *const u8, book: __m512i) -> __m512i {
    let v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(a.cast())), _mm_loadu_si128(b.cast()));
    let mask = _mm256_set1_epi8(0x0F);
    let (lo, hi) = (_mm256_and_si256(v, mask), _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask));
    // [lo_a lo_b hi_a hi_b] in 128-bit lanes → [lo_a hi_a lo_b hi_b].
    let z = join(lo, hi);
    _mm512_shuffle_epi8(book, _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z))
}

impl Kind for IQ4XS {
    const BLOCK_BYTES: usize = size_of::<BlockIQ4XS>();
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        let b: BlockIQ4XS = blk.cast::<BlockIQ4XS>().read_unaligned();
        let mut u = Unpacked { d: f16_to_f32(b.d.to_bits()), ..ZERO };
        let book = codebook();
        let qs = blk.add(offset_of!(BlockIQ4XS, qs));
        for j in 0..4 {
            let v = iq4_values_pair(qs.add(32 * j), qs.add(32 * j + 16), book);
            u.negative[j] = _mm512_movepi8_mask(v);
            u.mags[j] = _mm512_abs_epi8(v);
            // Pairs 0..16 are sub-block 2j, 16..32 sub-block 2j + 1.
            u.scales[j] = _mm512_mask_blend_epi16(0xFFFF_0000, _mm512_set1_epi16(iq4xs_scale(&b, 2 * j) as i16), _mm512_set1_epi16(iq4xs_scale(&b, 2 * j + 1) as i16));
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256) {
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(u.d * x.d[sb]), _mm256_cvtepi32_ps(sumi), *acc);
    }
}

const ZERO: Unpacked = Unpacked {
    mags: [unsafe { std::mem::zeroed() }; 4],
    negative: [0; 4],
    scales: [unsafe { std::mem::zeroed() }; 4],
    mins: unsafe { std::mem::zeroed() },
    d: 0.0,
    dmin: 0.0,
};

/// Activation rows from which a call unpacks its weight rows once into [`UNPACKED`] (below, a
/// super-block is unpacked once per four activation rows).
const UNPACK_FROM_ROWS: usize = 8;
/// Weight rows unpacked at a time (their super-blocks stay in L1/L2 while the activation rows
/// pass).
const UNPACK_ROWS: usize = 8;

thread_local! {
    /// The unpacked super-blocks of up to [`UNPACK_ROWS`] weight rows, grown once and reused.
    static UNPACKED: RefCell<Vec<Unpacked>> = const { RefCell::new(Vec::new()) };
}

#[inline(always)]
unsafe fn tile_kind<K: Kind>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK_K;
    let row_bytes = blocks * K::BLOCK_BYTES;
    debug_assert!(w.len() >= w_rows * row_bytes);
    let rows = acts.rows();
    if rows >= UNPACK_FROM_ROWS {
        // The buffer is taken out of the thread-local and put back, so the work runs in this
        // function (a closure would be compiled without its target features). Grown only.
        let mut buf = UNPACKED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if buf.len() < UNPACK_ROWS * blocks {
            buf.resize(UNPACK_ROWS * blocks, ZERO);
        }
        for i0 in (0..w_rows).step_by(UNPACK_ROWS) {
            let n = UNPACK_ROWS.min(w_rows - i0);
            for (k, row) in buf[..n * blocks].chunks_exact_mut(blocks).enumerate() {
                let wp = w.as_ptr().add((i0 + k) * row_bytes);
                for (sb, u) in row.iter_mut().enumerate() {
                    *u = K::unpack(wp.add(sb * K::BLOCK_BYTES));
                }
            }
            for r in (0..rows).step_by(4) {
                for (k, row) in buf[..n * blocks].chunks_exact(blocks).enumerate() {
                    dot_up_to_4::<K>(Source::Unpacked(row), acts, r, out.add(r * stride + i0 + k), stride);
                }
            }
        }
        UNPACKED.with(|b| *b.borrow_mut() = buf);
        return;
    }
    for i in 0..w_rows {
        let wp = w.as_ptr().add(i * row_bytes);
        prefetch(wp.wrapping_add(PREFETCH_ROWS * row_bytes), row_bytes);
        for r in (0..rows).step_by(4) {
            dot_up_to_4::<K>(Source::Packed(wp), acts, r, out.add(r * stride + i), stride);
        }
    }
}

/// Where a weight row's super-blocks come from (an enum, not a closure: closures are compiled
/// without the caller's target features).
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The row in the file's layout, unpacked as it is read.
    Packed(*const u8),
    /// Unpacked beforehand.
    Unpacked(&'a [Unpacked]),
}

/// [`dot_rows`] for activation rows `r0..` up to four (fewer at the end).
#[inline(always)]
unsafe fn dot_up_to_4<K: Kind>(src: Source<'_>, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    match (acts.rows() - r0).min(4) {
        4 => dot_rows::<K, 4>(src, acts, r0, out, stride),
        3 => dot_rows::<K, 3>(src, acts, r0, out, stride),
        2 => dot_rows::<K, 2>(src, acts, r0, out, stride),
        _ => dot_rows::<K, 1>(src, acts, r0, out, stride),
    }
}

/// One weight row against activation rows `r0..r0 + NR`, into `out` (`stride` apart).
#[inline(always)]
unsafe fn dot_rows<K: Kind, const NR: usize>(src: Source<'_>, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8KRow<'_>; NR] = acts.super_block_rows(r0);
    let mut acc = [_mm256_setzero_ps(); NR];
    for sb in 0..acts.cols() / QK_K {
        let u = match src {
            Source::Packed(p) => K::unpack(p.add(sb * K::BLOCK_BYTES)),
            Source::Unpacked(row) => row[sb],
        };
        let mut sumi = [_mm512_setzero_si512(); NR];
        for j in 0..4 {
            for r in 0..NR {
                let mut x = _mm512_loadu_si512(xs[r].qs.as_ptr().add(sb * QK_K + 64 * j).cast());
                if K::SIGNED {
                    x = _mm512_mask_sub_epi8(x, u.negative[j], _mm512_setzero_si512(), x);
                }
                sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(u.mags[j], x), u.scales[j]);
            }
        }
        for r in 0..NR {
            K::finish(&u, fold(sumi[r]), &xs[r], sb, &mut acc[r]);
        }
    }
    for (r, &a) in acc.iter().enumerate() {
        *out.add(r * stride) = hsum8(a);
    }
}

thread_local! {
    /// IQ4_NL's unpacked block pairs of up to [`UNPACK_ROWS`] weight rows, grown once and reused.
    static UNPACKED_NL: RefCell<Vec<NlPair>> = const { RefCell::new(Vec::new()) };
}

/// Two IQ4_NL blocks ready for the dot: their 64 levels as magnitudes and a mask of the negative
/// ones, and their scales as `[d_a ×8, d_b ×8]`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct NlPair {
    mags: __m512i,
    negative: __mmask64,
    d: __m512,
}

/// Blocks `ib` and `ib + 1` of the IQ4_NL row at `row`.
#[inline(always)]
unsafe fn unpack_nl_pair(row: *const u8, ib: usize, book: __m512i) -> NlPair {
    const BYTES: usize = size_of::<BlockIQ4NL>();
    let (a, b) = (row.add(ib * BYTES), row.add((ib + 1) * BYTES));
    let v = iq4_values_pair(a.add(offset_of!(BlockIQ4NL, qs)), b.add(offset_of!(BlockIQ4NL, qs)), book);
    NlPair { mags: _mm512_abs_epi8(v), negative: _mm512_movepi8_mask(v), d: f16_pair(a, b) }
}

/// IQ4_NL against Q8_0, as ggml's `ggml_vec_dot_iq4_nl_q8_0`: blocks in pairs (one 512-bit
/// register: the even block's 8 lanes low, the odd block's high, which are ggml's two
/// accumulators), `hsum8` of the two accumulators' sum, and an odd last block as a scalar tail.
/// Unpacked as the super-block formats are: per four activation rows, or once per call.
#[inline(always)]
unsafe fn tile_iq4_nl(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK;
    let row_bytes = blocks * size_of::<BlockIQ4NL>();
    debug_assert!(w.len() >= w_rows * row_bytes);
    let rows = acts.rows();
    if rows >= UNPACK_FROM_ROWS {
        // As `tile_kind`: each group of weight rows is unpacked once for every activation row.
        let pairs = blocks / 2;
        let book = codebook();
        let mut buf = UNPACKED_NL.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if buf.len() < UNPACK_ROWS * pairs {
            buf.resize(UNPACK_ROWS * pairs, NlPair { mags: _mm512_setzero_si512(), negative: 0, d: _mm512_setzero_ps() });
        }
        for i0 in (0..w_rows).step_by(UNPACK_ROWS) {
            let n = UNPACK_ROWS.min(w_rows - i0);
            for k in 0..n {
                let wp = w.as_ptr().add((i0 + k) * row_bytes);
                for (p, u) in buf[k * pairs..(k + 1) * pairs].iter_mut().enumerate() {
                    *u = unpack_nl_pair(wp, 2 * p, book);
                }
            }
            for r in (0..rows).step_by(4) {
                for k in 0..n {
                    let src = NlSource { row: w.as_ptr().add((i0 + k) * row_bytes), unpacked: Some(&buf[k * pairs..(k + 1) * pairs]) };
                    iq4_nl_up_to_4(src, acts, r, out.add(r * stride + i0 + k), stride);
                }
            }
        }
        UNPACKED_NL.with(|b| *b.borrow_mut() = buf);
        return;
    }
    for i in 0..w_rows {
        let wp = w.as_ptr().add(i * row_bytes);
        prefetch(wp.wrapping_add(PREFETCH_ROWS * row_bytes), row_bytes);
        for r in (0..rows).step_by(4) {
            iq4_nl_up_to_4(NlSource { row: wp, unpacked: None }, acts, r, out.add(r * stride + i), stride);
        }
    }
}

/// An IQ4_NL weight row, and its block pairs when unpacked beforehand (the odd last block is
/// always read from the row).
#[derive(Clone, Copy)]
struct NlSource<'a> {
    row: *const u8,
    unpacked: Option<&'a [NlPair]>,
}

#[inline(always)]
unsafe fn iq4_nl_up_to_4(src: NlSource<'_>, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    match (acts.rows() - r0).min(4) {
        4 => iq4_nl_rows::<4>(src, acts, r0, out, stride),
        3 => iq4_nl_rows::<3>(src, acts, r0, out, stride),
        2 => iq4_nl_rows::<2>(src, acts, r0, out, stride),
        _ => iq4_nl_rows::<1>(src, acts, r0, out, stride),
    }
}

/// One IQ4_NL weight row against activation rows `r0..r0 + NR`, into `out` (`stride` apart).
#[inline(always)]
unsafe fn iq4_nl_rows<const NR: usize>(src: NlSource<'_>, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK;
    let xs: [Q8Row<'_>; NR] = acts.rows_from(r0);
    let book = codebook();
    let mut acc = [_mm512_setzero_ps(); NR];
    for p in 0..blocks / 2 {
        let ib = 2 * p;
        let u = match src.unpacked {
            Some(pairs) => pairs[p],
            None => unpack_nl_pair(src.row, ib, book),
        };
        for r in 0..NR {
            let x = _mm512_loadu_si512(xs[r].qs.as_ptr().add(ib * QK).cast());
            let x = _mm512_mask_sub_epi8(x, u.negative, _mm512_setzero_si512(), x);
            let lanes = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.mags, x);
            // [d_x·d_w ×8] per block: ggml's `d_y · d_x`, one rounding.
            let xd = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(xs[r].d[ib]), _mm512_set1_ps(xs[r].d[ib + 1]));
            acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(xd, u.d), _mm512_cvtepi32_ps(lanes), acc[r]);
        }
    }
    for r in 0..NR {
        let sum = _mm256_add_ps(_mm512_castps512_ps256(acc[r]), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[r]))));
        let mut sumf = hsum8(sum);
        if blocks % 2 == 1 {
            sumf += iq4_nl_tail(src.row.add((blocks - 1) * size_of::<BlockIQ4NL>()), &xs[r], blocks - 1);
        }
        *out.add(r * stride) = sumf;
    }
}

/// The `f16` scales (first field) of the blocks at `a` and `b` as `[d_a ×8, d_b ×8]`.
#[inline(always)]
unsafe fn f16_pair(a: *const u8, b: *const u8) -> __m512 {
    let bits = a.cast::<u16>().read_unaligned() as u32 | (b.cast::<u16>().read_unaligned() as u32) << 16;
    let two = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(two))
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

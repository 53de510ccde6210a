//! AVX-512 VNNI kernels for Q4_0, Q4_1 and Q8_0 weights: two 32-element blocks per 512-bit
//! register, `vpdpbusd` for the integer dot (unsigned weight codes × signed activation codes),
//! and a register tile of up to 4 weight rows × 3 activation rows so each unpacked weight pair
//! is used for several activation rows and each activation pair for several weight rows.
//!
//! Lanes 0..8 of every vector belong to the first block of a pair and lanes 8..16 to the second,
//! so per-block scales are applied lane-wise and the row's sum is one horizontal add at the end.
//! An odd last block goes through the portable kernel.

use std::arch::x86_64::*;
use std::cell::RefCell;

use rill_backend::DType;

use super::activations::{Q8Activations, Q8Row, QK};
use super::portable;

/// How a weight format turns a pair of consecutive blocks into vectors.
trait PairFormat {
    const DTYPE: DType;
    const BLOCK_BYTES: usize;
    /// Subtracted per element in integer: weights are stored as `code − OFFSET` (Q4_0: 8;
    /// Q8_0: 128 after flipping the sign bit to make the codes unsigned); 0 for none.
    const OFFSET: u8;
    /// Whether blocks carry an additive min after `d` (`w = d·q + m`, Q4_1).
    const HAS_MIN: bool;
    /// The 64 unsigned codes of blocks `p` and `p + 1` in element order.
    unsafe fn codes(p: *const u8) -> __m512i;
    /// Lane-wise block scales `[d₀ ×8, d₁ ×8]` (every format's `d` is its first field).
    #[inline(always)]
    unsafe fn scales(p: *const u8) -> __m512 {
        f16_pair_lanes(p, p.add(Self::BLOCK_BYTES))
    }
}

#[inline(always)]
unsafe fn nibble_pair(a: *const u8, b: *const u8) -> __m512i {
    let v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(a.cast())), _mm_loadu_si128(b.cast()));
    let mask = _mm256_set1_epi8(0x0F);
    let lo = _mm256_and_si256(v, mask);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
    // [lo₀ lo₁ hi₀ hi₁] in 128-bit lanes → [lo₀ hi₀ lo₁ hi₁]: block 0's 32 codes, then block 1's.
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z)
}

/// Two f16 values at `a` and `b` as `[a ×8, b ×8]`.
#[inline(always)]
unsafe fn f16_pair_lanes(a: *const u8, b: *const u8) -> __m512 {
    let bits = a.cast::<u16>().read_unaligned() as u32 | (b.cast::<u16>().read_unaligned() as u32) << 16;
    let two = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm512_permutexvar_ps(pair_index(), _mm512_castps128_ps512(two))
}

/// Lane `l` takes element `l / 8`.
#[inline(always)]
unsafe fn pair_index() -> __m512i {
    _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
}

struct Q4_0;
impl PairFormat for Q4_0 {
    const DTYPE: DType = DType::Q4_0;
    const BLOCK_BYTES: usize = 18;
    const OFFSET: u8 = 8;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m512i {
        nibble_pair(p.add(2), p.add(Self::BLOCK_BYTES + 2))
    }
}

struct Q4_1;
impl PairFormat for Q4_1 {
    const DTYPE: DType = DType::Q4_1;
    const BLOCK_BYTES: usize = 20;
    const OFFSET: u8 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m512i {
        nibble_pair(p.add(4), p.add(Self::BLOCK_BYTES + 4))
    }
}

struct Q8_0;
impl PairFormat for Q8_0 {
    const DTYPE: DType = DType::Q8_0;
    const BLOCK_BYTES: usize = 34;
    const OFFSET: u8 = 128;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn codes(p: *const u8) -> __m512i {
        let a = _mm256_loadu_si256(p.add(2).cast());
        let b = _mm256_loadu_si256(p.add(Self::BLOCK_BYTES + 2).cast());
        // Flipping the sign bit maps i8 `w` to u8 `w + 128`.
        _mm512_xor_si512(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b), _mm512_set1_epi8(-128))
    }
}

/// Lanes `0..n` of a 16-lane chunk (all of them from 16 on).
#[inline(always)]
fn chunk_mask(n: usize) -> __mmask16 {
    if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 }
}

/// The mins (the f16 two bytes into each block) of blocks `c..c + 16` of the row at `row`.
#[inline(always)]
unsafe fn gather_mins<F: PairFormat>(row: *const u8, c: usize, mask: __mmask16) -> __m512 {
    let lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let offsets = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(c as i32)), _mm512_set1_epi32(F::BLOCK_BYTES as i32));
    // Each 32-bit read starts at the min and stays inside its block (it reads 2 bytes of codes).
    let words = _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), mask, offsets, row.add(2).cast());
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words))
}

/// One activation pair of each of NR rows, as both tile kernels consume it.
struct ActPair<const NR: usize> {
    codes: [__m512i; NR],
    scales: [__m512; NR],
    /// OFFSET · Σx per lane: what offset weight codes added to each lane's dot.
    correction: [__m512i; NR],
}

#[inline(always)]
unsafe fn act_pair<F: PairFormat, const NR: usize>(xs: &[Q8Row<'_>; NR], p: usize) -> ActPair<NR> {
    // Plain loops, not closures: a closure is compiled without the caller's target features.
    let mut x = ActPair { codes: [_mm512_setzero_si512(); NR], scales: [_mm512_setzero_ps(); NR], correction: [_mm512_setzero_si512(); NR] };
    for (j, row) in xs.iter().enumerate() {
        x.codes[j] = _mm512_loadu_si512(row.qs.as_ptr().add(64 * p).cast());
        let d2 = _mm_castsi128_ps(_mm_loadl_epi64(row.d.as_ptr().add(2 * p).cast()));
        x.scales[j] = _mm512_permutexvar_ps(pair_index(), _mm512_castps128_ps512(d2));
        if F::OFFSET != 0 {
            x.correction[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(F::OFFSET as i8), x.codes[j]);
        }
    }
    x
}

/// `acc[j] += Σ lanes (q·x[j] − correction) · wd · xd[j]` for one weight pair: the same operations,
/// in the same order, on both paths.
#[inline(always)]
unsafe fn accumulate<F: PairFormat, const NR: usize>(acc: &mut [__m512; NR], q: __m512i, wd: __m512, x: &ActPair<NR>) {
    for (j, a) in acc.iter_mut().enumerate() {
        let mut dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x.codes[j]);
        if F::OFFSET != 0 {
            dot = _mm512_sub_epi32(dot, x.correction[j]);
        }
        *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd, x.scales[j]), *a);
    }
}

/// Where [`add_mins`] finds weight row `i`'s mins.
#[derive(Clone, Copy)]
enum Mins {
    /// Still in the blocks of rows `row_bytes` apart (gathered).
    InBlocks { first_row: *const u8, row_bytes: usize },
    /// Unpacked as floats, `blocks` per row.
    Unpacked { mins: *const f32, blocks: usize },
    /// Copied out as raw f16 bits, `stride` per row.
    Raw { mins: *const u16, stride: usize },
}

/// How far ahead (in weight rows) the streaming kernel prefetches.
const PREFETCH_ROWS: usize = 8;

/// Blocks per row whose mins the streaming kernel collects on its stack (rows of 16k elements).
const STACK_BLOCKS: usize = 512;

/// `acc[i][j] += Σ_b m[i][b]·s[j][b]` over the paired blocks, 16 blocks per step: Q4_1's offsets,
/// added after the pairs in the same order by both paths so a row's result never depends on
/// how many rows share the call.
#[inline(always)]
unsafe fn add_mins<F: PairFormat, const ROWS: usize, const NR: usize>(
    acc: &mut [[__m512; NR]; ROWS],
    xs: &[Q8Row<'_>; NR],
    pairs: usize,
    source: Mins,
) {
    for c in (0..2 * pairs).step_by(16) {
        let mask = chunk_mask(2 * pairs - c);
        let mut s = [_mm512_setzero_ps(); NR];
        for (s, row) in s.iter_mut().zip(xs) {
            *s = _mm512_maskz_loadu_ps(mask, row.s.as_ptr().add(c));
        }
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let m = match source {
                Mins::InBlocks { first_row, row_bytes } => gather_mins::<F>(first_row.add(i * row_bytes), c, mask),
                Mins::Unpacked { mins, blocks } => _mm512_maskz_loadu_ps(mask, mins.add(i * blocks + c)),
                Mins::Raw { mins, stride } => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, mins.add(i * stride + c).cast())),
            };
            for j in 0..NR {
                acc_i[j] = _mm512_fmadd_ps(m, s[j], acc_i[j]);
            }
        }
    }
}

/// Whether this module has a kernel for `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q8_0)
}

/// `out[r·stride + i] = w[i] · x[r]` for the `w_rows` weight rows at `w` and every activation row.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI and F16C; `w` holds `w_rows` rows of `dtype` with
/// `acts.cols()` elements each; `out` is valid for every index written.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    match dtype {
        DType::Q4_0 => tile_format::<Q4_0>(w, w_rows, acts, out, stride),
        DType::Q4_1 => tile_format::<Q4_1>(w, w_rows, acts, out, stride),
        DType::Q8_0 => tile_format::<Q8_0>(w, w_rows, acts, out, stride),
        other => unreachable!("no AVX-512 kernel for {other}"),
    }
}

/// Activation rows from which weights are unpacked once per tile rather than per row group.
const UNPACK_FROM_ROWS: usize = 4;

#[inline(always)]
unsafe fn tile_format<F: PairFormat>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK;
    let row_bytes = blocks * F::BLOCK_BYTES;
    debug_assert!(w.len() >= w_rows * row_bytes);
    if acts.rows() >= UNPACK_FROM_ROWS {
        tile_unpacked::<F>(w, w_rows, acts, out, stride);
    } else {
        tile_streaming::<F>(w, w_rows, acts, out, stride);
    }
    if !blocks.is_multiple_of(2) {
        // The odd last block of every row, added to what the tiles wrote.
        let last = (blocks - 1) * F::BLOCK_BYTES;
        for i in 0..w_rows {
            let wb = &w[i * row_bytes + last..(i + 1) * row_bytes];
            for r in 0..acts.rows() {
                let x = acts.row(r);
                let xb = Q8Row { qs: &x.qs[(blocks - 1) * QK..], d: &x.d[blocks - 1..], s: &x.s[blocks - 1..] };
                *out.add(r * stride + i) += portable::dot_row(F::DTYPE, wb, xb);
            }
        }
    }
}

/// Few activation rows (decode): weights are unpacked in registers as they stream past.
#[inline(always)]
unsafe fn tile_streaming<F: PairFormat>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let row_bytes = acts.cols() / QK * F::BLOCK_BYTES;
    let mut i = 0;
    while i < w_rows {
        let mr = if w_rows - i >= 4 { 4 } else { 1 };
        let mut r = 0;
        while r < acts.rows() {
            let nr = (acts.rows() - r).min(3);
            let wp = w.as_ptr().add(i * row_bytes);
            match (mr, nr) {
                (4, 3) => micro::<F, 4, 3>(wp, row_bytes, acts, r, out, stride, i),
                (4, 2) => micro::<F, 4, 2>(wp, row_bytes, acts, r, out, stride, i),
                (4, _) => micro::<F, 4, 1>(wp, row_bytes, acts, r, out, stride, i),
                (_, 3) => micro::<F, 1, 3>(wp, row_bytes, acts, r, out, stride, i),
                (_, 2) => micro::<F, 1, 2>(wp, row_bytes, acts, r, out, stride, i),
                _ => micro::<F, 1, 1>(wp, row_bytes, acts, r, out, stride, i),
            }
            r += nr;
        }
        i += mr;
    }
}

/// Weight rows unpacked to the vectors the kernel consumes: codes and lane scales per pair,
/// and the rows' block mins as plain floats.
#[derive(Default)]
struct Unpacked {
    codes: Vec<__m512i>,
    scales: Vec<__m512>,
    mins: Vec<f32>,
}

thread_local! {
    static UNPACKED: RefCell<Unpacked> = RefCell::new(Unpacked::default());
}

/// Rows of weights unpacked together: the register tile's height.
const MR: usize = 4;

/// Many activation rows (prefill, large batches): each group of [`MR`] weight rows is unpacked
/// once into per-thread scratch (a few KiB, stays in L1) and every activation row group runs
/// against the unpacked vectors, so the inner loop is load, `vpdpbusd`, convert, scale. Q4_1's
/// mins are added 16 blocks at a time into the same accumulators after the pairs.
#[inline(always)]
unsafe fn tile_unpacked<F: PairFormat>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    // The closure is compiled without the target features, so it only hands the scratch over.
    UNPACKED.with(|un| unpacked_body::<F>(&mut un.borrow_mut(), w, w_rows, acts, out, stride));
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpacked_body<F: PairFormat>(un: &mut Unpacked, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK;
    let pairs = blocks / 2;
    let row_bytes = blocks * F::BLOCK_BYTES;
    {
        un.codes.resize(MR * pairs, _mm512_setzero_si512());
        un.scales.resize(MR * pairs, _mm512_setzero_ps());
        un.mins.resize(MR * blocks, 0.0);
        let mut i0 = 0;
        while i0 < w_rows {
            let mr = if w_rows - i0 >= MR { MR } else { 1 };
            for i in 0..mr {
                let row = w.as_ptr().add((i0 + i) * row_bytes);
                for p in 0..pairs {
                    let wp = row.add(2 * p * F::BLOCK_BYTES);
                    un.codes[i * pairs + p] = F::codes(wp);
                    un.scales[i * pairs + p] = F::scales(wp);
                }
                if F::HAS_MIN {
                    for c in (0..2 * pairs).step_by(16) {
                        let mask = chunk_mask(2 * pairs - c);
                        _mm512_mask_storeu_ps(un.mins.as_mut_ptr().add(i * blocks + c), mask, gather_mins::<F>(row, c, mask));
                    }
                }
            }
            let (codes, scales, mins) = (un.codes.as_ptr(), un.scales.as_ptr(), un.mins.as_ptr());
            let mut r = 0;
            while r < acts.rows() {
                let nr = (acts.rows() - r).min(if F::OFFSET == 0 { 4 } else { 3 });
                match (mr, nr) {
                    (MR, 4) => micro_unpacked::<F, MR, 4>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    (MR, 3) => micro_unpacked::<F, MR, 3>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    (MR, 2) => micro_unpacked::<F, MR, 2>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    (MR, _) => micro_unpacked::<F, MR, 1>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    (_, 4) => micro_unpacked::<F, 1, 4>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    (_, 3) => micro_unpacked::<F, 1, 3>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    (_, 2) => micro_unpacked::<F, 1, 2>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                    _ => micro_unpacked::<F, 1, 1>(codes, scales, mins, pairs, acts, r, out, stride, i0),
                }
                r += nr;
            }
            i0 += mr;
        }
    }
}

/// MR unpacked weight rows (`pairs` vectors apart) × NR activation rows, all pairs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_unpacked<F: PairFormat, const ROWS: usize, const NR: usize>(
    codes: *const __m512i,
    scales: *const __m512,
    mins: *const f32,
    pairs: usize,
    acts: &Q8Activations,
    r0: usize,
    out: *mut f32,
    stride: usize,
    i0: usize,
) {
    let xs: [Q8Row<'_>; NR] = std::array::from_fn(|j| acts.row(r0 + j));
    let mut acc = [[_mm512_setzero_ps(); NR]; ROWS];
    for p in 0..pairs {
        let x = act_pair::<F, NR>(&xs, p);
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let q = *codes.add(i * pairs + p);
            let wd = *scales.add(i * pairs + p);
            accumulate::<F, NR>(acc_i, q, wd, &x);
        }
    }
    if F::HAS_MIN {
        let blocks = acts.cols() / QK;
        add_mins::<F, ROWS, NR>(&mut acc, &xs, pairs, Mins::Unpacked { mins, blocks });
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (j, a) in acc_i.iter().enumerate() {
            *out.add((r0 + j) * stride + i0 + i) = _mm512_reduce_add_ps(*a);
        }
    }
}

/// MR weight rows (from `w`, `row_bytes` apart) × NR activation rows (from `r0`), all pairs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<F: PairFormat, const MR: usize, const NR: usize>(
    w: *const u8,
    row_bytes: usize,
    acts: &Q8Activations,
    r0: usize,
    out: *mut f32,
    stride: usize,
    i0: usize,
) {
    let pairs = acts.cols() / QK / 2;
    let xs: [Q8Row<'_>; NR] = std::array::from_fn(|j| acts.row(r0 + j));
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    // Q4_1's mins, collected raw while the pairs stream past (rows up to STACK_BLOCKS blocks).
    let mut raw_mins = [std::mem::MaybeUninit::<u16>::uninit(); 4 * STACK_BLOCKS];
    let collect_mins = F::HAS_MIN && 2 * pairs <= STACK_BLOCKS;
    for p in 0..pairs {
        let x = act_pair::<F, NR>(&xs, p);
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let wp = w.add(i * row_bytes + 2 * p * F::BLOCK_BYTES);
            // Weights stream from DRAM once per token: ask for the rows PREFETCH_ROWS ahead
            // (the same offset, a few KiB on) while this pair computes.
            _mm_prefetch::<_MM_HINT_T0>(wp.add(PREFETCH_ROWS * row_bytes).cast());
            let q = F::codes(wp);
            if collect_mins {
                let slot = raw_mins.as_mut_ptr().add(i * STACK_BLOCKS + 2 * p).cast::<u16>();
                *slot = wp.add(2).cast::<u16>().read_unaligned();
                *slot.add(1) = wp.add(F::BLOCK_BYTES + 2).cast::<u16>().read_unaligned();
            }
            let wd = F::scales(wp);
            accumulate::<F, NR>(acc_i, q, wd, &x);
        }
    }
    if F::HAS_MIN {
        let source = if collect_mins {
            Mins::Raw { mins: raw_mins.as_ptr().cast(), stride: STACK_BLOCKS }
        } else {
            Mins::InBlocks { first_row: w, row_bytes }
        };
        add_mins::<F, MR, NR>(&mut acc, &xs, pairs, source);
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (j, a) in acc_i.iter().enumerate() {
            *out.add((r0 + j) * stride + i0 + i) = _mm512_reduce_add_ps(*a);
        }
    }
}

//! AVX-512 VNNI kernels for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights, `vpdpbusd` for the integer dot
//! (unsigned weight codes × signed activation codes, 4 products per 32-bit lane), two paths:
//!
//! - 1–6 activation rows (decode, small batches, a sequence verifying speculated tokens): weights
//!   streamed in place, one 32-element block of two weight rows per 512-bit register (lanes 0..8
//!   the first row, 8..16 the second), a register tile of 4 weight rows × the activation rows
//!   (`micro`). Unpacking a block costs more than one row's dot with it, so every row the pass
//!   takes is nearly free: 4–6 rows in one pass cost 0.6–0.7× what the quads below cost them.
//! - 7 or more: each group of 4 weight rows is unpacked once and meets the activation rows in
//!   quads, two activation rows per register (`quad_body`, `quad_micro`).
//!
//! The float arithmetic is the portable kernel's (ggml's x86 `ggml_vec_dot_*`), bit for bit: each
//! (weight row, activation row)'s 8 lanes take one `fma(d_w·d_x, lane, acc)` per block in block
//! order, Q4_1's and Q5_1's offsets a scalar `fma(m, s, summs)` chain per output (side by side in a
//! register), and the output is `hsum_float_8` of its 8 lanes plus `summs`.

use std::arch::x86_64::*;
use std::cell::RefCell;

use rill_backend::DType;

use super::activations::{Q8Activations, Q8Row, QK};
use super::x86::{hsum8, PREFETCH_ROWS};

/// How a weight format turns one block of each of two rows into vectors.
trait BlockFormat {
    const BLOCK_BYTES: usize;
    /// Subtracted per element in integer: weights are stored as `code − OFFSET` (Q4_0: 8;
    /// Q5_0: 16; Q8_0: 128 after flipping the sign bit to make the codes unsigned); 0 for none.
    const OFFSET: u8;
    /// Whether blocks carry an additive min after `d` (`w = d·q + m`, Q4_1 and Q5_1).
    const HAS_MIN: bool;
    /// The 32 unsigned codes of the block at `a` (lanes 0..8) and of the block at `b` (8..16),
    /// each in element order.
    unsafe fn codes(a: *const u8, b: *const u8) -> __m512i;
    /// Lane-wise block scales `[d_a ×8, d_b ×8]` (every format's `d` is its first field), and
    /// with a min (which follows `d`) `[d_a, m_a, d_b, m_b]` as floats.
    #[inline(always)]
    unsafe fn scales(a: *const u8, b: *const u8) -> (__m512, __m128) {
        if Self::HAS_MIN {
            let bits = a.cast::<u32>().read_unaligned() as i64 | (b.cast::<u32>().read_unaligned() as i64) << 32;
            let dm = _mm_cvtph_ps(_mm_cvtsi64_si128(bits));
            (_mm512_permutexvar_ps(_mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(dm)), dm)
        } else {
            (f16_pair_lanes(a, b), _mm_setzero_ps())
        }
    }
}

#[inline(always)]
unsafe fn nibble_pair(a: *const u8, b: *const u8) -> __m512i {
    let v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(_mm_loadu_si128(a.cast())), _mm_loadu_si128(b.cast()));
    let mask = _mm256_set1_epi8(0x0F);
    let lo = _mm256_and_si256(v, mask);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
    // [lo_a lo_b hi_a hi_b] in 128-bit lanes → [lo_a hi_a lo_b hi_b]: a's 32 codes, then b's.
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z)
}

/// `nibble_pair` of two Q5 blocks with each code's fifth bit from the blocks' `qh` words at `ha`
/// and `hb` (bit `e` for element `e`): one bit per byte of the 64 codes, so one masked add.
#[inline(always)]
unsafe fn five_bit_pair(a: *const u8, b: *const u8, ha: *const u8, hb: *const u8) -> __m512i {
    let codes = nibble_pair(a, b);
    let bits = ha.cast::<u32>().read_unaligned() as u64 | (hb.cast::<u32>().read_unaligned() as u64) << 32;
    _mm512_mask_add_epi8(codes, bits, codes, _mm512_set1_epi8(16))
}

/// Two f16 values at `a` and `b` as `[a ×8, b ×8]`.
#[inline(always)]
unsafe fn f16_pair_lanes(a: *const u8, b: *const u8) -> __m512 {
    let bits = a.cast::<u16>().read_unaligned() as u32 | (b.cast::<u16>().read_unaligned() as u32) << 16;
    let two = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(two))
}

struct Q4_0;
impl BlockFormat for Q4_0 {
    const BLOCK_BYTES: usize = 18;
    const OFFSET: u8 = 8;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn codes(a: *const u8, b: *const u8) -> __m512i {
        nibble_pair(a.add(2), b.add(2))
    }
}

struct Q4_1;
impl BlockFormat for Q4_1 {
    const BLOCK_BYTES: usize = 20;
    const OFFSET: u8 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn codes(a: *const u8, b: *const u8) -> __m512i {
        nibble_pair(a.add(4), b.add(4))
    }
}

struct Q5_0;
impl BlockFormat for Q5_0 {
    const BLOCK_BYTES: usize = 22;
    const OFFSET: u8 = 16;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn codes(a: *const u8, b: *const u8) -> __m512i {
        five_bit_pair(a.add(6), b.add(6), a.add(2), b.add(2))
    }
}

struct Q5_1;
impl BlockFormat for Q5_1 {
    const BLOCK_BYTES: usize = 24;
    const OFFSET: u8 = 0;
    const HAS_MIN: bool = true;
    #[inline(always)]
    unsafe fn codes(a: *const u8, b: *const u8) -> __m512i {
        five_bit_pair(a.add(8), b.add(8), a.add(4), b.add(4))
    }
}

struct Q8_0;
impl BlockFormat for Q8_0 {
    const BLOCK_BYTES: usize = 34;
    const OFFSET: u8 = 128;
    const HAS_MIN: bool = false;
    #[inline(always)]
    unsafe fn codes(a: *const u8, b: *const u8) -> __m512i {
        let lo = _mm256_loadu_si256(a.add(2).cast());
        let hi = _mm256_loadu_si256(b.add(2).cast());
        // Flipping the sign bit maps i8 `w` to u8 `w + 128`.
        _mm512_xor_si512(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi), _mm512_set1_epi8(-128))
    }
}

/// A group of up to 4 weight rows read in place; a group of fewer rows repeats its last row.
struct Streaming<F> {
    rows: [*const u8; 4],
    row_bytes: usize,
    _format: std::marker::PhantomData<F>,
}


impl<F: BlockFormat> Streaming<F> {
    #[inline(always)]
    unsafe fn new(w: *const u8, row_bytes: usize, rows: usize) -> Self {
        let mut ptrs = [w; 4];
        for (i, p) in ptrs.iter_mut().enumerate() {
            *p = w.add(i.min(rows - 1) * row_bytes);
        }
        Streaming { rows: ptrs, row_bytes, _format: std::marker::PhantomData }
    }

    /// Codes and lane scales of rows `2k` and `2k + 1` at block `b`, and what
    /// [`BlockFormat::scales`] gave besides (their mins, for Q4_1 and Q5_1).
    #[inline(always)]
    unsafe fn pair(&self, k: usize, b: usize) -> (__m512i, __m512, __m128) {
        let (a, c) = (self.rows[2 * k].add(b * F::BLOCK_BYTES), self.rows[2 * k + 1].add(b * F::BLOCK_BYTES));
        let (d, dm) = F::scales(a, c);
        (F::codes(a, c), d, dm)
    }

    /// Called once per block before its pairs.
    #[inline(always)]
    unsafe fn prefetch(&self, b: usize) {
        // Weights stream from DRAM once per token: ask for the rows PREFETCH_ROWS ahead (the
        // same offset, a few KiB on), one line of each row per 64 bytes of blocks.
        if b.is_multiple_of((64 / F::BLOCK_BYTES).max(1)) {
            for r in self.rows {
                _mm_prefetch::<_MM_HINT_T0>(r.add(PREFETCH_ROWS * self.row_bytes + b * F::BLOCK_BYTES).cast());
            }
        }
    }

    /// The mins of the group's 4 rows (Q4_1, Q5_1), from what `pair` gave besides for pairs 0 and 1.
    #[inline(always)]
    unsafe fn mins(dm0: __m128, dm1: __m128) -> __m128 {
        // [d₀ m₀ d₁ m₁] and [d₂ m₂ d₃ m₃] → [m₀ m₁ m₂ m₃].
        _mm_shuffle_ps::<0b11_01_11_01>(dm0, dm1)
    }
}

/// 1.5·2²³: for an integer `|v| < 2²²`, the f32 whose bits are `MAGIC_BITS + v` is exactly
/// `MAGIC + v`, so `(MAGIC_BITS + v as bits) − MAGIC` is `v as f32` exactly, computed by an integer
/// add folded into `vpdpbusd`'s accumulator and a float subtract, off the multiply pipes a
/// `vcvtdq2ps` would share with `vpdpbusd` and the fma; the offset correction folds into the
/// same start value. A lane's dot (4 products of a code ≤ 255 and |x| ≤ 128, less the
/// correction) stays below 2¹⁸ in magnitude.
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;

/// One group of [`MR`] weight rows unpacked for the many-rows kernel, per block: each row's
/// codes with every 4-code group doubled (`w[0..4] w[0..4] w[4..8] w[4..8] …`, to meet a
/// `Q8Quad` pair), and the rows' scales and mins as `[v₀ ×4, v₁ ×4, v₂ ×4, v₃ ×4]`.
#[derive(Default)]
struct Unpacked {
    codes: Vec<__m512i>,
    scales: Vec<__m512>,
    mins: Vec<__m512>,
    /// One quad's block scales `d_w(i)·d_x(j)` (lane 4i + j) per block, made before its dots.
    products: Vec<__m512>,
}

thread_local! {
    static UNPACKED: RefCell<Unpacked> = RefCell::new(Unpacked::default());
}

/// Whether this module has a kernel for `dtype`.
pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0)
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
        DType::Q5_0 => tile_format::<Q5_0>(w, w_rows, acts, out, stride),
        DType::Q5_1 => tile_format::<Q5_1>(w, w_rows, acts, out, stride),
        DType::Q8_0 => tile_format::<Q8_0>(w, w_rows, acts, out, stride),
        other => unreachable!("no AVX-512 kernel for {other}"),
    }
}

/// Rows of weights handled together: the register tile's height.
const MR: usize = 4;

/// Most activation rows the streaming kernel takes in one pass over the weights.
const MICRO_MAX_ROWS: usize = 6;

#[inline(always)]
unsafe fn tile_format<F: BlockFormat>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let row_bytes = acts.cols() / QK * F::BLOCK_BYTES;
    debug_assert!(w.len() >= w_rows * row_bytes);
    if acts.quads() > 0 {
        UNPACKED.with(|un| quad_body::<F>(&mut un.borrow_mut(), w, w_rows, acts, out, stride));
        return;
    }
    let mut i = 0;
    while i < w_rows {
        let mr = (w_rows - i).min(MR);
        let src = Streaming::<F>::new(w.as_ptr().add(i * row_bytes), row_bytes, mr);
        let mut r = 0;
        while r < acts.rows() {
            let nr = (acts.rows() - r).min(MICRO_MAX_ROWS);
            match nr {
                6 => micro::<F, 6>(&src, mr, acts, r, out, stride, i),
                5 => micro::<F, 5>(&src, mr, acts, r, out, stride, i),
                4 => micro::<F, 4>(&src, mr, acts, r, out, stride, i),
                3 => micro::<F, 3>(&src, mr, acts, r, out, stride, i),
                2 => micro::<F, 2>(&src, mr, acts, r, out, stride, i),
                _ => micro::<F, 1>(&src, mr, acts, r, out, stride, i),
            }
            r += nr;
        }
        i += mr;
    }
}

/// Many activation rows (prefill, large batches; `QUAD_FROM_ROWS` or more): each group of
/// [`MR`] weight rows is unpacked once into per-thread scratch (a few KiB, stays in L1), then
/// runs against every `Q8Quad` of activation rows.
///
/// Why quads: the float work per block is one `fma(d_w·d_x, lane, acc)` per weight row and
/// activation row, and `d_w·d_x` takes one 16-lane multiply for all 4 × 4 pairs of the block
/// (each row's two values then broadcast to the even and odd lanes by a load), where a register
/// holding two weight rows against one activation row would spend a whole multiply on two
/// products.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn quad_body<F: BlockFormat>(un: &mut Unpacked, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK;
    let row_bytes = blocks * F::BLOCK_BYTES;
    un.codes.resize(MR * blocks, _mm512_setzero_si512());
    un.scales.resize(blocks, _mm512_setzero_ps());
    un.mins.resize(blocks, _mm512_setzero_ps());
    un.products.resize(blocks, _mm512_setzero_ps());
    // Each 32-bit lane g of a row's 8 becomes lanes 2g and 2g + 1 (the low row, the high row).
    let doubled = [_mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0), _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8)];
    let quads = acts.quads();
    let mut i = 0;
    while i < w_rows {
        let mr = (w_rows - i).min(MR);
        let stream = Streaming::<F>::new(w.as_ptr().add(i * row_bytes), row_bytes, mr);
        for b in 0..blocks {
            let mut dm = [_mm_setzero_ps(); 2];
            let mut d = [_mm512_setzero_ps(); 2];
            for k in 0..2 {
                let (q, dk, raw) = stream.pair(k, b);
                // `q` holds row 2k's codes in its low and row 2k + 1's in its high 256 bits.
                un.codes[MR * b + 2 * k] = _mm512_permutexvar_epi32(doubled[0], q);
                un.codes[MR * b + 2 * k + 1] = _mm512_permutexvar_epi32(doubled[1], q);
                d[k] = dk;
                dm[k] = raw;
            }
            // [d₀ ×8, d₁ ×8] and [d₂ ×8, d₃ ×8] → [d₀ ×4, d₁ ×4, d₂ ×4, d₃ ×4].
            un.scales[b] = _mm512_shuffle_f32x4::<0b10_00_10_00>(d[0], d[1]);
            if F::HAS_MIN {
                let m = Streaming::<F>::mins(dm[0], dm[1]);
                un.mins[b] = _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_castps128_ps512(m));
            }
        }
        for q in 0..quads {
            quad_micro::<F>(&un.codes, &un.scales, &un.mins, &mut un.products, mr, acts, q, out, stride, i);
        }
        i += mr;
    }
}

/// The group's `mr` (≤ 4) unpacked weight rows × the 4 activation rows of quad `q`, every block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn quad_micro<F: BlockFormat>(
    codes: &[__m512i],
    scales: &[__m512],
    mins: &[__m512],
    products: &mut [__m512],
    mr: usize,
    acts: &Q8Activations,
    q: usize,
    out: *mut f32,
    stride: usize,
    i0: usize,
) {
    let blocks = acts.cols() / QK;
    let x = acts.quad(q);
    // products[b] lane 4i + j = d_w(i) · d_x(j): ggml's `d0 · d1`, one rounding. Made in a pass
    // of their own so the loop below broadcasts each pair from memory (a load) rather than by a
    // shuffle, which would compete with `vpdpbusd` and the fma for a vector pipe.
    for (b, p) in products.iter_mut().enumerate().take(blocks) {
        *p = _mm512_mul_ps(scales[b], _mm512_broadcast_f32x4(_mm_loadu_ps(x.d.as_ptr().add(4 * b))));
    }
    let products = products.as_ptr().cast::<f64>();
    // Rows 2 and 3 only when the group has them (a group of 1..3 rows repeats its last row).
    let live = if mr > 2 { 4 } else { 2 };
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut summs = _mm512_setzero_ps();
    for b in 0..blocks {
        let xq = [_mm512_loadu_si512(x.pairs[0].as_ptr().add(b * 2 * QK).cast()), _mm512_loadu_si512(x.pairs[1].as_ptr().add(b * 2 * QK).cast())];
        // Each dot starts from MAGIC (minus the offset correction), so its float value is one
        // `vsubps` away; see [`MAGIC`].
        let mut start = [_mm512_set1_epi32(MAGIC_BITS); 2];
        if F::OFFSET != 0 {
            for (k, start) in start.iter_mut().enumerate() {
                *start = _mm512_sub_epi32(*start, _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(F::OFFSET as i8), xq[k]));
            }
        }
        if F::HAS_MIN {
            summs = _mm512_fmadd_ps(mins[b], _mm512_broadcast_f32x4(_mm_loadu_ps(x.s.as_ptr().add(4 * b))), summs);
        }
        for (r, acc_r) in acc.iter_mut().enumerate().take(live) {
            let codes = codes[MR * b + r];
            for k in 0..2 {
                let dot = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_dpbusd_epi32(start[k], codes, xq[k])), _mm512_set1_ps(MAGIC));
                // [d_w(r)·d_x(2k), d_w(r)·d_x(2k + 1)] in the even and odd lanes.
                let d = _mm512_castpd_ps(_mm512_set1_pd(*products.add(8 * b + 2 * r + k)));
                acc_r[k] = _mm512_fmadd_ps(d, dot, acc_r[k]);
            }
        }
    }
    let mut m = [0f32; 16];
    _mm512_storeu_ps(m.as_mut_ptr(), summs);
    // Even lanes to the low 256 bits, odd lanes to the high, each in order.
    let split = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
    let real = acts.rows() - 4 * q;
    for (r, acc_r) in acc.iter().enumerate().take(mr) {
        for (k, &a) in acc_r.iter().enumerate() {
            let lanes = _mm512_permutexvar_ps(split, a);
            let halves = [_mm512_castps512_ps256(lanes), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(lanes)))];
            for (h, &half) in halves.iter().enumerate() {
                let j = 2 * k + h;
                if j < real {
                    let sum = hsum8(half);
                    *out.add((4 * q + j) * stride + i0 + r) = if F::HAS_MIN { sum + m[4 * r + j] } else { sum };
                }
            }
        }
    }
}

/// The group's `mr` (≤ 4) weight rows × NR activation rows from `r0`, every block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<F: BlockFormat, const NR: usize>(
    src: &Streaming<F>,
    mr: usize,
    acts: &Q8Activations,
    r0: usize,
    out: *mut f32,
    stride: usize,
    i0: usize,
) {
    let blocks = acts.cols() / QK;
    let xs: [Q8Row<'_>; NR] = acts.rows_from(r0);
    // Rows 2 and 3 only when the group has them (a group of 1..3 rows repeats its last row).
    let pairs = if mr > 2 { 2 } else { 1 };
    let mut acc = [[_mm512_setzero_ps(); NR]; 2];
    let mut summs = [_mm_setzero_ps(); NR];
    for b in 0..blocks {
        let mut xq = [_mm512_setzero_si512(); NR];
        // Each dot starts from MAGIC less the offset correction (see [`MAGIC`]).
        let mut start = [_mm512_set1_epi32(MAGIC_BITS); NR];
        let mut xd = [_mm512_setzero_ps(); NR];
        // Plain loops, not closures: a closure is compiled without the caller's target features.
        for j in 0..NR {
            xq[j] = _mm512_broadcast_i64x4(_mm256_loadu_si256(xs[j].qs.as_ptr().add(b * QK).cast()));
            xd[j] = _mm512_set1_ps(*xs[j].d.get_unchecked(b));
            if F::OFFSET != 0 {
                start[j] = _mm512_sub_epi32(start[j], _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(F::OFFSET as i8), xq[j]));
            }
        }
        src.prefetch(b);
        let mut dm = [_mm_setzero_ps(); 2];
        for (k, acc_k) in acc.iter_mut().enumerate().take(pairs) {
            let (q, wd, raw) = src.pair(k, b);
            dm[k] = raw;
            for j in 0..NR {
                let dot = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_dpbusd_epi32(start[j], q, xq[j])), _mm512_set1_ps(MAGIC));
                acc_k[j] = _mm512_fmadd_ps(_mm512_mul_ps(wd, xd[j]), dot, acc_k[j]);
            }
        }
        if F::HAS_MIN {
            let m = Streaming::<F>::mins(dm[0], if pairs > 1 { dm[1] } else { dm[0] });
            for j in 0..NR {
                summs[j] = _mm_fmadd_ps(m, _mm_set1_ps(*xs[j].s.get_unchecked(b)), summs[j]);
            }
        }
    }
    for j in 0..NR {
        let mut sums = [0f32; 4];
        for k in 0..pairs {
            sums[2 * k] = hsum8(_mm512_castps512_ps256(acc[k][j]));
            sums[2 * k + 1] = hsum8(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc[k][j]))));
        }
        let mut m = [0f32; 4];
        _mm_storeu_ps(m.as_mut_ptr(), summs[j]);
        for i in 0..mr {
            *out.add((r0 + j) * stride + i0 + i) = if F::HAS_MIN { sums[i] + m[i] } else { sums[i] };
        }
    }
}

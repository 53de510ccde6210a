//! Activations quantized to 8 bits once per matmul, so every weight block is dotted in integers.
//!
//! The format is ggml's Q8_0/Q8_1 pulled apart into arrays: per 32-element block a scale
//! `d = amax / 127` (rounded to f16, as ggml stores it), the codes `q = round(x · 127 / amax)`
//! (ties to even, as ggml's AVX quantizer), and `s = d · Σq` (rounded to f16: ggml's Q8_1 sum,
//! which folds the per-block offset of Q4_1 and Q5_1 into one multiply). Codes stay contiguous per row so a
//! SIMD kernel loads two blocks' codes (64 bytes) at once.

use half::f16;
use rill_backend::quant::QK_K;
use rill_backend::DType;

use super::activations_k::{Q8KActivations, Q8KRow};
use crate::pool::DisjointPtr;
use crate::WorkerPool;

/// Elements per activation block: the block length of Q4_0/Q4_1/Q8_0 and the sub-block length
/// of the k-quants.
pub const QK: usize = 32;

#[derive(Default)]
pub struct Q8Activations {
    rows: usize,
    cols: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    /// The same rows regrouped for the AVX-512 many-rows kernel (see [`Q8Quad`]); empty when
    /// that kernel cannot run or there are fewer than [`QUAD_FROM_ROWS`] rows.
    paired: Vec<i8>,
    quad_d: Vec<f32>,
    quad_s: Vec<f32>,
    /// The same rows as ggml's `block_q8_K`, for k-quant weights; built only when asked for.
    super_blocks: Q8KActivations,
}

/// Which activation formats a matmul's weights read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Formats {
    /// 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL).
    pub blocks: bool,
    /// 256-element super-blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS).
    pub super_blocks: bool,
}

impl Formats {
    /// What `dtype` weights read on the integer path (nothing for float weights): ggml's
    /// `vec_dot_type` for the type (`type_traits_cpu`), Q8_K for the k-quants and IQ4_XS, Q8_0
    /// (Q8_1 for the offset formats) for the rest.
    pub fn of(dtype: DType) -> Formats {
        match dtype {
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K | DType::IQ4XS => Formats { blocks: false, super_blocks: true },
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 | DType::IQ4NL => Formats { blocks: true, super_blocks: false },
            _ => Formats::default(),
        }
    }

    pub fn union(self, other: Formats) -> Formats {
        Formats { blocks: self.blocks || other.blocks, super_blocks: self.super_blocks || other.super_blocks }
    }
}

/// Four activation rows regrouped so that one 512-bit register holds a block of two rows: per
/// 32-element block, `pairs[k]` (k = 0, 1) holds rows `2k` and `2k + 1` of the quad with their
/// codes interleaved in groups of 4 (`x₀[0..4] x₁[0..4] x₀[4..8] x₁[4..8] …`, 64 bytes), so a
/// `vpdpbusd` against a weight block whose 4-code groups are doubled gives row `2k`'s 8 ggml
/// lanes in the even and row `2k + 1`'s in the odd 32-bit lanes; `d` and `s` hold the four rows'
/// scales and sums side by side (`[d₀ d₁ d₂ d₃]` per block). A quad past the last row repeats it.
#[derive(Clone, Copy)]
pub struct Q8Quad<'a> {
    pub pairs: [&'a [i8]; 2],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

/// Rows from which [`Q8Activations`] also builds the quads (the AVX-512 kernel's threshold).
pub const QUAD_FROM_ROWS: usize = 7;

/// One quantized row: `cols` codes and `cols / QK` scales and sums.
#[derive(Clone, Copy)]
pub struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

impl Q8Activations {
    /// Quantizes `rows` rows of `cols` values (a multiple of [`QK`]) into every format their
    /// width allows; buffers grow once and are reused, so a steady state allocates nothing.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) {
        self.quantize_blocks(x, rows, cols);
        if cols.is_multiple_of(QK_K) {
            self.super_blocks.quantize_on(None, x, rows, cols);
        }
    }

    /// Quantizes into `formats` only, splitting the rows across `pool` (in tasks of
    /// [`ROWS_PER_TASK`]) when there are enough; every block is quantized by the same code, so
    /// the result is identical. Super-blocks need `cols` to be a multiple of 256.
    pub fn quantize_on(&mut self, pool: &WorkerPool, x: &[f32], rows: usize, cols: usize, formats: Formats) {
        if formats.super_blocks {
            self.super_blocks.quantize_on(Some(pool), x, rows, cols);
        }
        if !formats.blocks {
            // Keep the shape current, so `rows()`/`cols()` describe what was quantized last.
            (self.rows, self.cols) = (rows, cols);
            return;
        }
        if rows < 2 * ROWS_PER_TASK || pool.threads() == 1 {
            return self.quantize_blocks(x, rows, cols);
        }
        self.resize(x, rows, cols);
        let bpr = cols / QK;
        let (qs, d, s) = (RowChunks::new(&mut self.qs, cols), RowChunks::new(&mut self.d, bpr), RowChunks::new(&mut self.s, bpr));
        for_row_tasks(pool, rows, &|lo, hi| {
            // SAFETY: the tasks' row ranges are disjoint and inside the buffers resized above.
            unsafe { quantize_rows(&x[lo * cols..hi * cols], qs.rows(lo, hi), d.rows(lo, hi), s.rows(lo, hi)) };
        });
        self.build_quads(Some(pool));
    }

    fn quantize_blocks(&mut self, x: &[f32], rows: usize, cols: usize) {
        self.resize(x, rows, cols);
        quantize_rows(&x[..rows * cols], &mut self.qs, &mut self.d, &mut self.s);
        self.build_quads(None);
    }

    /// Fills `paired`, `quad_d` and `quad_s` from the quantized rows when the many-rows kernel
    /// can use them (on `pool` in tasks of [`ROWS_PER_TASK`] rows when given).
    fn build_quads(&mut self, pool: Option<&WorkerPool>) {
        let quads = self.quads();
        if quads == 0 {
            return;
        }
        let (cols, bpr, rows) = (self.cols, self.cols / QK, self.rows);
        self.paired.resize(quads * 4 * cols, 0);
        self.quad_d.resize(quads * 4 * bpr, 0.0);
        self.quad_s.resize(quads * 4 * bpr, 0.0);
        let (qs, d, s) = (&self.qs[..], &self.d[..], &self.s[..]);
        // One "row" of these buffers is a quad.
        let (paired, qd, qsum) = (RowChunks::new(&mut self.paired, 4 * cols), RowChunks::new(&mut self.quad_d, 4 * bpr), RowChunks::new(&mut self.quad_s, 4 * bpr));
        let per_task = ROWS_PER_TASK / 4;
        let task = |t: usize| {
            for q in t * per_task..((t + 1) * per_task).min(quads) {
                let row = |j: usize| (4 * q + j).min(rows - 1);
                // SAFETY: quad `q` is inside the buffers resized above; tasks cover disjoint quads.
                let (pq, dq, sq) = unsafe { (paired.rows(q, q + 1), qd.rows(q, q + 1), qsum.rows(q, q + 1)) };
                for k in 0..2 {
                    let (a, b) = (&qs[row(2 * k) * cols..][..cols], &qs[row(2 * k + 1) * cols..][..cols]);
                    let dst = &mut pq[k * 2 * cols..(k + 1) * 2 * cols];
                    for (g, out) in dst.chunks_exact_mut(8).enumerate() {
                        out[..4].copy_from_slice(&a[4 * g..4 * g + 4]);
                        out[4..].copy_from_slice(&b[4 * g..4 * g + 4]);
                    }
                }
                for b in 0..bpr {
                    for j in 0..4 {
                        dq[4 * b + j] = d[row(j) * bpr + b];
                        sq[4 * b + j] = s[row(j) * bpr + b];
                    }
                }
            }
        };
        let tasks = quads.div_ceil(per_task);
        match pool {
            Some(pool) if tasks > 1 && pool.threads() > 1 => pool.for_each(tasks, &task),
            _ => (0..tasks).for_each(task),
        }
    }

    /// How many quads [`Q8Activations::quad`] has: 0 below [`QUAD_FROM_ROWS`] rows or without
    /// the AVX-512 VNNI kernels.
    pub fn quads(&self) -> usize {
        if self.rows >= QUAD_FROM_ROWS && quads_wanted() {
            self.rows.div_ceil(4)
        } else {
            0
        }
    }

    /// Rows `4q..4q + 4` (the last row repeated past the end), regrouped; `q < self.quads()`.
    pub fn quad(&self, q: usize) -> Q8Quad<'_> {
        let (c, b) = (self.cols, self.cols / QK);
        let p = &self.paired[q * 4 * c..(q + 1) * 4 * c];
        Q8Quad { pairs: [&p[..2 * c], &p[2 * c..]], d: &self.quad_d[q * 4 * b..(q + 1) * 4 * b], s: &self.quad_s[q * 4 * b..(q + 1) * 4 * b] }
    }

    fn resize(&mut self, x: &[f32], rows: usize, cols: usize) {
        debug_assert!(cols.is_multiple_of(QK) && x.len() >= rows * cols);
        let blocks = rows * cols / QK;
        self.rows = rows;
        self.cols = cols;
        self.qs.resize(rows * cols, 0);
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r` as ggml's `block_q8_K`s; only after a call that quantized super-blocks.
    #[inline(always)]
    pub fn super_block_row(&self, r: usize) -> Q8KRow<'_> {
        debug_assert!(self.super_blocks.rows() == self.rows && self.super_blocks.cols() == self.cols, "super-blocks not quantized for this call");
        self.super_blocks.row(r)
    }

    /// Rows `r0..r0 + N` as [`Self::super_block_row`]s. No closure (`array::from_fn`): a kernel
    /// calls this, and a closure would be compiled, and called, without its target features.
    #[inline(always)]
    pub fn super_block_rows<const N: usize>(&self, r0: usize) -> [Q8KRow<'_>; N] {
        let mut rows = [self.super_block_row(r0); N];
        for (j, row) in rows.iter_mut().enumerate().skip(1) {
            *row = self.super_block_row(r0 + j);
        }
        rows
    }

    /// Rows `r0..r0 + N` as [`Self::row`]s (as [`Self::super_block_rows`]).
    #[inline(always)]
    pub fn rows_from<const N: usize>(&self, r0: usize) -> [Q8Row<'_>; N] {
        let mut rows = [self.row(r0); N];
        for (j, row) in rows.iter_mut().enumerate().skip(1) {
            *row = self.row(r0 + j);
        }
        rows
    }

    /// Row `r` in 32-element blocks; only after a call that quantized blocks.
    #[inline(always)]
    pub fn row(&self, r: usize) -> Q8Row<'_> {
        let (c, b) = (self.cols, self.cols / QK);
        Q8Row { qs: &self.qs[r * c..(r + 1) * c], d: &self.d[r * b..(r + 1) * b], s: &self.s[r * b..(r + 1) * b] }
    }
}

/// Rows quantized per parallel task (a multiple of 4: a task builds whole quads).
pub(super) const ROWS_PER_TASK: usize = 16;

/// Runs `f(lo, hi)` for the rows `0..rows` in tasks of [`ROWS_PER_TASK`] on `pool`.
pub(super) fn for_row_tasks(pool: &WorkerPool, rows: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    pool.for_each(rows.div_ceil(ROWS_PER_TASK), &|task| f(task * ROWS_PER_TASK, ((task + 1) * ROWS_PER_TASK).min(rows)));
}

/// A row-major buffer that pool tasks fill a range of rows each (`per_row` elements a row).
pub(super) struct RowChunks<T> {
    base: DisjointPtr<T>,
    len: usize,
    per_row: usize,
}

impl<T> RowChunks<T> {
    pub(super) fn new(buf: &mut [T], per_row: usize) -> Self {
        RowChunks { base: DisjointPtr(buf.as_mut_ptr()), len: buf.len(), per_row }
    }

    /// Rows `lo..hi`.
    ///
    /// # Safety
    /// No other live slice covers these rows (each task takes its own), and the buffer given to
    /// [`RowChunks::new`] outlives the result.
    #[allow(clippy::mut_from_ref)] // disjoint ranges per task: the point of the type
    pub(super) unsafe fn rows(&self, lo: usize, hi: usize) -> &mut [T] {
        assert!(lo <= hi && hi * self.per_row <= self.len, "rows {lo}..{hi} outside the buffer");
        std::slice::from_raw_parts_mut(self.base.get().add(lo * self.per_row), (hi - lo) * self.per_row)
    }
}

/// Whether this CPU runs the AVX-512 VNNI kernels, the quads' only reader.
fn quads_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| crate::isa::cpu().avx512_vnni())
}

fn quantize_rows(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu().avx512_bw() {
        // SAFETY: the CPU supports AVX-512 F and BW, checked just above.
        return unsafe { quantize_blocks_avx512(x, qs, d, s) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu().avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { quantize_blocks_avx2(x, qs, d, s) };
    }
    quantize_blocks(x, qs, d, s);
}

/// Explicit AVX-512: the same arithmetic as [`quantize_block`] (the same `amax`, `127 / amax`,
/// ties-to-even rounding, which is the default MXCSR mode), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_blocks_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    use std::arch::x86_64::*;
    let blocks = x.len() / QK;
    debug_assert!(qs.len() >= blocks * QK && d.len() >= blocks && s.len() >= blocks);
    for b in 0..blocks {
        let lo = _mm512_loadu_ps(x.as_ptr().add(b * QK));
        let hi = _mm512_loadu_ps(x.as_ptr().add(b * QK + 16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        let id = _mm512_set1_ps(if amax > 0.0 { 127.0 / amax } else { 0.0 });
        let qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, id));
        let qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, id));
        _mm_storeu_si128(qs.as_mut_ptr().add(b * QK).cast(), _mm512_cvtepi32_epi8(qlo));
        _mm_storeu_si128(qs.as_mut_ptr().add(b * QK + 16).cast(), _mm512_cvtepi32_epi8(qhi));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
        let step = amax / 127.0;
        d[b] = round_f16(step);
        s[b] = round_f16(step * sum as f32);
    }
}

/// The same code compiled for AVX2, where rounding is one instruction instead of a libm call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_blocks_avx2(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quantize_blocks(x, qs, d, s)
}

#[inline(always)]
fn quantize_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let chunks = x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK));
    for ((xb, qb), (d, s)) in chunks.zip(d.iter_mut().zip(s.iter_mut())) {
        (*d, *s) = quantize_block(xb.try_into().expect("QK chunk"), qb.try_into().expect("QK chunk"));
    }
}

/// One block: returns `(d, s)` and writes the codes. Written so the compiler vectorizes it.
#[inline(always)]
fn quantize_block(x: &[f32; QK], q: &mut [i8; QK]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (qi, &xi) in q.iter_mut().zip(x) {
        let v = (xi * id).round_ties_even() as i32;
        *qi = v as i8;
        sum += v;
    }
    (round_f16(d), round_f16(d * sum as f32))
}

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_scales_and_sums() {
        let mut x = [0.0f32; QK];
        x[0] = 1.27;
        x[1] = -0.635;
        x[2] = 0.005; // 0.5 of a step: ties to even, 0
        x[3] = 0.015; // 1.5 steps: 2
        let mut a = Q8Activations::default();
        a.quantize(&x, 1, QK);
        let r = a.row(0);
        assert_eq!(&r.qs[..4], &[127, -64, 0, 2]);
        assert_eq!(r.d[0], f16::from_f32(0.01).to_f32());
        assert_eq!(r.s[0], f16::from_f32(0.01 * 65.0).to_f32());
    }

    #[test]
    fn parallel_quantization_is_identical() {
        let x: Vec<f32> = (0..100 * 64).map(|i| ((i * 7919 % 1009) as f32 - 500.0) * 0.01).collect();
        let (mut a, mut b) = (Q8Activations::default(), Q8Activations::default());
        a.quantize(&x, 100, 64);
        b.quantize_on(&WorkerPool::new(3).unwrap(), &x, 100, 64, Formats { blocks: true, super_blocks: false });
        assert_eq!((&a.qs, &a.d, &a.s), (&b.qs, &b.d, &b.s));
    }

    /// Every dispatch target gives the portable code's bits.
    #[test]
    fn simd_quantization_equals_portable() {
        let x: Vec<f32> = (0..64 * 96).map(|i| (((i * 7919) % 2003) as f32 - 1001.0) * 0.0137 * if i % 97 == 0 { 30.0 } else { 1.0 }).collect();
        let (mut a, mut b) = (Q8Activations::default(), Q8Activations::default());
        a.resize(&x, 64, 96);
        quantize_blocks(&x, &mut a.qs, &mut a.d, &mut a.s);
        b.quantize(&x, 64, 96);
        assert_eq!((&a.qs, &a.d, &a.s), (&b.qs, &b.d, &b.s));
    }

    #[test]
    fn zero_block_is_all_zero() {
        let mut a = Q8Activations::default();
        a.quantize(&[0.0; 64], 2, QK);
        assert!(a.row(1).qs.iter().all(|&q| q == 0));
        assert_eq!((a.row(1).d[0], a.row(1).s[0]), (0.0, 0.0));
    }

    #[test]
    fn reconstruction_error_is_half_a_step() {
        let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let mut a = Q8Activations::default();
        a.quantize(&x, 2, 128);
        for r in 0..2 {
            let row = a.row(r);
            for (i, &v) in x[r * 128..(r + 1) * 128].iter().enumerate() {
                let d = row.d[i / QK];
                // Half a step, plus the f16 rounding of the scale over up to 127 steps.
                assert!((row.qs[i] as f32 * d - v).abs() <= 0.5 * d + 127.0 * d * 1e-3, "{i}");
            }
        }
    }
}

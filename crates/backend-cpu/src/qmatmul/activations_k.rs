//! Activations quantized for the k-quant weights (Q4_K, Q5_K, Q6_K): ggml's `block_q8_K`, one
//! f32 scale per 256-element super-block and the sums of every 16 codes. With a single scale per
//! super-block a weight super-block's sub-block dots add up in integers, and the float work is one
//! multiply-add per super-block: the reason ggml pairs the k-quants with this format.
//!
//! Beside ggml's sums per 16 codes (`bsums`, which Q6_K reads) each row keeps the sums per 32
//! (`sums32`, what ggml's Q4_K/Q5_K kernels make of `bsums` with one `hadd` per dot), so a
//! kernel reads them instead of recomputing them for every weight row.
//!
//! The numerics are ggml's `quantize_row_q8_K_ref` (what llama.cpp's x86 CPU backend runs): `max`
//! is the first element of largest magnitude, `iscale = −127 / max`, `q = min(127,
//! round_ties_even(iscale·x))`, `d = 1 / iscale`.

use rill_backend::quant::QK_K;

use super::activations::{for_row_tasks, RowChunks, ROWS_PER_TASK};
use crate::WorkerPool;

/// Codes summed per entry of `bsums` (ggml's `QK_K / 16`).
pub const BSUM_LEN: usize = 16;

#[derive(Default)]
pub struct Q8KActivations {
    rows: usize,
    cols: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i16>,
    sums32: Vec<i16>,
}

/// One row: `cols` codes, a scale per 256 and a sum per 16 and per 32 codes.
#[derive(Clone, Copy)]
pub struct Q8KRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub bsums: &'a [i16],
    pub sums32: &'a [i16],
}

impl Q8KRow<'_> {
    /// Super-block `b` alone.
    #[inline]
    pub fn super_block(&self, b: usize) -> Q8KRow<'_> {
        let per = QK_K / BSUM_LEN;
        Q8KRow {
            qs: &self.qs[b * QK_K..(b + 1) * QK_K],
            d: &self.d[b..b + 1],
            bsums: &self.bsums[b * per..(b + 1) * per],
            sums32: &self.sums32[b * per / 2..(b + 1) * per / 2],
        }
    }
}

impl Q8KActivations {
    /// Quantizes `rows` rows of `cols` values (a multiple of 256), on `pool` when there are many
    /// rows; every super-block is quantized by the same code, so the split never shows.
    pub fn quantize_on(&mut self, pool: Option<&WorkerPool>, x: &[f32], rows: usize, cols: usize) {
        debug_assert!(cols.is_multiple_of(QK_K) && x.len() >= rows * cols);
        let blocks = rows * cols / QK_K;
        (self.rows, self.cols) = (rows, cols);
        self.qs.resize(rows * cols, 0);
        self.d.resize(blocks, 0.0);
        self.bsums.resize(blocks * QK_K / BSUM_LEN, 0);
        self.sums32.resize(blocks * QK_K / 32, 0);
        let pool = pool.filter(|p| p.threads() > 1 && rows >= 2 * ROWS_PER_TASK);
        let Some(pool) = pool else {
            return quantize_rows(&x[..rows * cols], &mut self.qs, &mut self.d, &mut self.bsums, &mut self.sums32);
        };
        let (bpr, spr) = (cols / QK_K, cols / BSUM_LEN);
        let qs = RowChunks::new(&mut self.qs, cols);
        let (d, bs, s32) = (RowChunks::new(&mut self.d, bpr), RowChunks::new(&mut self.bsums, spr), RowChunks::new(&mut self.sums32, spr / 2));
        for_row_tasks(pool, rows, &|lo, hi| {
            // SAFETY: the tasks' row ranges are disjoint and inside the buffers resized above.
            unsafe { quantize_rows(&x[lo * cols..hi * cols], qs.rows(lo, hi), d.rows(lo, hi), bs.rows(lo, hi), s32.rows(lo, hi)) };
        });
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    #[inline(always)]
    pub fn row(&self, r: usize) -> Q8KRow<'_> {
        let (c, b, s) = (self.cols, self.cols / QK_K, self.cols / BSUM_LEN);
        Q8KRow {
            qs: &self.qs[r * c..(r + 1) * c],
            d: &self.d[r * b..(r + 1) * b],
            bsums: &self.bsums[r * s..(r + 1) * s],
            sums32: &self.sums32[r * s / 2..(r + 1) * s / 2],
        }
    }
}

fn quantize_rows(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16], sums32: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu().avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { quantize_rows_avx2(x, qs, d, bsums, sums32) };
    }
    quantize_super_blocks(x, qs, d, bsums, sums32);
}

/// The same code compiled for AVX2, where rounding is one instruction instead of a libm call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_rows_avx2(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16], sums32: &mut [i16]) {
    quantize_super_blocks(x, qs, d, bsums, sums32)
}

#[inline(always)]
fn quantize_super_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16], sums32: &mut [i16]) {
    let sums = bsums.chunks_exact_mut(QK_K / BSUM_LEN).zip(sums32.chunks_exact_mut(QK_K / 32));
    let blocks = x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).zip(d.iter_mut().zip(sums));
    for ((xb, qb), (d, (b16, b32))) in blocks {
        *d = quantize_super_block(xb.try_into().expect("QK_K chunk"), qb.try_into().expect("QK_K chunk"));
        for (sum, q) in b16.iter_mut().zip(qb.chunks_exact(BSUM_LEN)) {
            *sum = q.iter().map(|&v| v as i16).sum();
        }
        // Each at most 32·127 in magnitude, so an `i16`.
        for (sum, pair) in b32.iter_mut().zip(b16.chunks_exact(2)) {
            *sum = pair[0] + pair[1];
        }
    }
}

/// One super-block: writes the codes and returns `d`. Written so the compiler vectorizes the
/// magnitude scan and the rounding.
#[inline(always)]
fn quantize_super_block(x: &[f32; QK_K], q: &mut [i8; QK_K]) -> f32 {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    // ggml keeps the first element of largest magnitude, with its sign.
    let max = *x.iter().find(|v| v.abs() == amax).expect("amax is some element's magnitude");
    let iscale = -127.0 / max;
    for (qi, &xi) in q.iter_mut().zip(x) {
        *qi = ((iscale * xi).round_ties_even() as i32).min(127) as i8;
    }
    1.0 / iscale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's `quantize_row_q8_K_ref` spelled out: the sign of `max` flips the codes' sign.
    #[test]
    fn codes_scale_and_sums_follow_ggml() {
        let mut x = [0.0f32; QK_K];
        x[0] = 50.0;
        x[1] = -127.0; // the largest magnitude, negative: iscale = 1
        x[2] = 0.5; // ties to even: 0
        x[3] = 1.5; // 2
        x[17] = 127.0; // as large, but later: not `max`
        let mut a = Q8KActivations::default();
        a.quantize_on(None, &x, 1, QK_K);
        let r = a.row(0);
        assert_eq!(&r.qs[..4], &[50, -127, 0, 2]);
        assert_eq!(r.qs[17], 127);
        assert_eq!(r.d[0], 1.0);
        assert_eq!((r.bsums[0], r.bsums[1]), (50 - 127 + 2, 127));
        assert_eq!(r.sums32[0], 50 - 127 + 2 + 127);
    }

    #[test]
    fn zero_block_is_all_zero_and_parallel_is_identical() {
        let mut x: Vec<f32> = (0..64 * 512).map(|i| ((i * 7919 % 1009) as f32 - 500.0) * 0.01).collect();
        x[512..768].fill(0.0);
        let (mut a, mut b) = (Q8KActivations::default(), Q8KActivations::default());
        a.quantize_on(None, &x, 64, 512);
        b.quantize_on(Some(&WorkerPool::new(3).unwrap()), &x, 64, 512);
        assert_eq!((&a.qs, &a.d, &a.bsums, &a.sums32), (&b.qs, &b.d, &b.bsums, &b.sums32));
        let r = a.row(1);
        assert_eq!(r.d[0], 0.0);
        assert!(r.qs[..QK_K].iter().all(|&q| q == 0) && r.bsums[..16].iter().all(|&s| s == 0));
    }

    #[test]
    fn reconstruction_error_is_half_a_step() {
        let x: Vec<f32> = (0..1024).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013 * if i % 97 == 0 { 9.0 } else { 1.0 }).collect();
        let mut a = Q8KActivations::default();
        a.quantize_on(None, &x, 2, 512);
        for r in 0..2 {
            let row = a.row(r);
            for (i, &v) in x[r * 512..(r + 1) * 512].iter().enumerate() {
                let d = row.d[i / QK_K].abs();
                assert!((row.qs[i] as f32 * row.d[i / QK_K] - v).abs() <= 0.5 * d * (1.0 + 1e-5), "{i}");
            }
        }
    }
}

//! Weight matrices on the CPU and the reference matmul. A matrix is a view into the model file's
//! mmap (no copy). The matmul splits output rows across the pool in tiles; each tile of weight
//! rows is dequantized once into a per-thread scratch and reused for every activation row of the
//! batch, so prefill pays the dequantization once per step, not once per token.

use std::cell::RefCell;

use rayon::prelude::*;
use rill_backend::{quant, BackendError, BackendResult, DType, MatrixSource};

use crate::check_len;

/// Output rows per parallel task: enough work to amortize scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

thread_local! {
    /// One tile of dequantized weight rows per worker thread, grown once and reused.
    static ROW_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

pub struct CpuMatrix {
    source: MatrixSource,
    row_bytes: usize,
}

impl CpuMatrix {
    pub fn new(source: MatrixSource) -> BackendResult<CpuMatrix> {
        if !quant::is_supported(source.dtype) {
            return Err(BackendError::Unsupported { backend: "cpu", what: format!("{} weights ({})", source.dtype, source.name) });
        }
        let row_bytes = source.dtype.row_bytes(source.cols).ok_or_else(|| BackendError::Shape {
            op: "upload_matrix",
            detail: format!("{}: {} columns are not whole {} blocks", source.name, source.cols, source.dtype),
        })?;
        if source.bytes.len() != row_bytes * source.rows {
            let detail = format!("{}: {} bytes for {}x{} {}", source.name, source.bytes.len(), source.rows, source.cols, source.dtype);
            return Err(BackendError::Shape { op: "upload_matrix", detail });
        }
        Ok(CpuMatrix { source, row_bytes })
    }

    pub fn rows(&self) -> usize {
        self.source.rows
    }

    pub fn cols(&self) -> usize {
        self.source.cols
    }

    pub fn dtype(&self) -> DType {
        self.source.dtype
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.source.bytes[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        // Lengths were checked in `new`, so this cannot fail.
        quant::dequantize_row(self.source.dtype, self.row(r), out).expect("row length checked at upload");
    }

    /// `out[t] = self[tokens[t]]`: the embedding lookup.
    pub fn gather(&self, tokens: &[u32], n: usize, out: &mut [f32]) -> BackendResult<()> {
        let cols = self.cols();
        check_len("embed", "tokens", tokens.len(), n)?;
        check_len("embed", "out", out.len(), n * cols)?;
        for (t, &tok) in tokens[..n].iter().enumerate() {
            if tok as usize >= self.rows() {
                return Err(BackendError::Shape { op: "embed", detail: format!("token {tok} of {}", self.rows()) });
            }
            self.dequantize_row(tok as usize, &mut out[t * cols..(t + 1) * cols]);
        }
        Ok(())
    }

    /// `out[rows, self.rows] = x[rows, self.cols] · selfᵀ`.
    pub fn matmul(&self, x: &[f32], rows: usize, out: &mut [f32]) -> BackendResult<()> {
        let (m, k) = (self.rows(), self.cols());
        check_len("matmul", "x", x.len(), rows * k)?;
        check_len("matmul", "out", out.len(), rows * m)?;
        let out_ptr = SyncPtr(out.as_mut_ptr());
        (0..m.div_ceil(ROWS_PER_TASK)).into_par_iter().for_each(|task| {
            let out_ptr = &out_ptr;
            ROW_SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let lo = task * ROWS_PER_TASK;
                let hi = (lo + ROWS_PER_TASK).min(m);
                // Dequantize this task's weight rows once ([hi - lo, k], small enough for L1/L2),
                // then stream every activation row past them: each x row is read once per task.
                scratch.resize(ROWS_PER_TASK * k, 0.0);
                for o in lo..hi {
                    self.dequantize_row(o, &mut scratch[(o - lo) * k..(o - lo + 1) * k]);
                }
                for r in 0..rows {
                    let xr = &x[r * k..(r + 1) * k];
                    for o in lo..hi {
                        let v = dot(&scratch[(o - lo) * k..(o - lo + 1) * k], xr);
                        // SAFETY: `r * m + o < rows * m <= out.len()` (checked above), and each
                        // output column `o` belongs to exactly one task, so writes never alias.
                        unsafe { *out_ptr.0.add(r * m + o) = v };
                    }
                }
            });
        });
        Ok(())
    }
}

struct SyncPtr(*mut f32);
// SAFETY: tasks write disjoint elements through the pointer (see `matmul`).
unsafe impl Sync for SyncPtr {}

/// `Σ a[i]·b[i]`, on the widest instruction set this CPU has (checked once, cached by std).
/// Every row of a batch goes through the same path, so results never depend on the batch.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    // The same code, compiled for 256-bit vectors.
    dot_portable(a, b)
}

/// The reference: shaped so the compiler vectorizes it, with 32 independent accumulators so
/// the additions do not wait on each other.
#[inline(always)]
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 32;
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_backend::SharedBytes;

    fn f32_matrix(rows: usize, cols: usize, values: &[f32]) -> CpuMatrix {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let source = MatrixSource { name: "w".into(), dtype: DType::F32, rows, cols, bytes: SharedBytes::from_vec(bytes) };
        CpuMatrix::new(source).unwrap()
    }

    #[test]
    fn matmul_known_answer() {
        // w = [[1, 2], [3, 4], [5, 6]] (3 outputs of 2 inputs); x = [[1, 1], [0, 2]]
        let w = f32_matrix(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut out = vec![0.0; 6];
        w.matmul(&[1.0, 1.0, 0.0, 2.0], 2, &mut out).unwrap();
        assert_eq!(out, vec![3.0, 7.0, 11.0, 4.0, 8.0, 12.0]);
    }

    #[test]
    fn gather_rows_and_rejects_bad_token() {
        let w = f32_matrix(2, 2, &[1.0, 2.0, 3.0, 4.0]);
        let mut out = vec![0.0; 4];
        w.gather(&[1, 0], 2, &mut out).unwrap();
        assert_eq!(out, vec![3.0, 4.0, 1.0, 2.0]);
        assert!(w.gather(&[2], 1, &mut out).is_err());
    }

    #[test]
    fn dot_matches_naive_on_odd_lengths() {
        for len in [0, 1, 31, 37, 576, 1000] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| 1.0 - (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            // Relative to the sum of magnitudes: f32 accumulation over `len` terms.
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum::<f64>().max(1.0);
            for (name, got) in [("dispatched", dot(&a, &b)), ("portable", dot_portable(&a, &b))] {
                assert!(((got as f64 - naive) / scale).abs() < 1e-6, "{name} len {len}: {got} vs {naive}");
            }
        }
    }
}

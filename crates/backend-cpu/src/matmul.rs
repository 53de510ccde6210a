//! Weight matrices on the CPU and the matmul. A matrix is a view into the model file's mmap (no
//! copy). Quantized weights take the integer path ([`crate::qmatmul`]): the activations are
//! quantized to 8 bits once per call and each task's weight rows are dotted against every
//! activation row by the widest kernel this CPU has. Float weights (F32/F16/BF16) are
//! dequantized a tile of rows at a time into per-thread scratch and dotted in `f32`.
//!
//! Work is split across the pool by output rows (at decode one contiguous range of each matrix per
//! thread, see [`STREAMING_ROWS`]); several matrices that read the same input
//! (q/k/v, gate/up) run in one call, so the input is quantized once and the pool wakes once.

use std::cell::RefCell;
use std::sync::OnceLock;

use rill_backend::{quant, BackendError, BackendResult, DType, MatrixSource};

use crate::pool::DisjointPtr;
use crate::isa::QuantIsa;
use crate::qmatmul::{self, Formats, InterleavedQ4K, Q8Activations};
use crate::{check_len, WorkerPool};

/// Output rows per parallel task of a batched matmul: enough work to amortize claiming it, small
/// enough to balance; also the tile of float weight rows dequantized at a time.
const ROWS_PER_TASK: usize = 16;
// Task ranges start at multiples of the task size, so they start on interleaved groups.
const _: () = assert!(ROWS_PER_TASK.is_multiple_of(qmatmul::INTERLEAVED_ROWS));
/// Activation rows up to which a matmul is bound by streaming its weights from memory (decode
/// steps of a few sequences). Then each thread gets one contiguous range of every matrix, one long
/// stream the hardware prefetcher follows: 16-row tasks claimed in turn by the threads made each
/// stream jump every few KiB and cost a third of decode speed.
const STREAMING_ROWS: usize = 8;

/// Output rows per task for a matrix of `w_rows` rows multiplied with `rows` activation rows.
fn rows_per_task(w_rows: usize, rows: usize, threads: usize) -> usize {
    if rows <= STREAMING_ROWS {
        w_rows.div_ceil(threads).next_multiple_of(ROWS_PER_TASK)
    } else {
        ROWS_PER_TASK
    }
}
/// Matrices one [`matmul_many`] call can take (q, k and v is the most the model asks).
pub const MAX_MATRICES: usize = 4;

thread_local! {
    /// One tile of dequantized float weight rows per worker thread, grown once and reused.
    static ROW_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The calling thread's quantized activations, grown once and reused.
    static ACTIVATIONS: RefCell<Q8Activations> = RefCell::new(Q8Activations::default());
}

/// How quantized weights are multiplied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulMode {
    /// Activations quantized to 8 bits, integer dots (ggml's numerics): the fast path.
    #[default]
    Integer,
    /// Weights dequantized and dotted in `f32`: the oracle exact-math references test against.
    Float,
}

pub struct CpuMatrix {
    source: MatrixSource,
    row_bytes: usize,
    /// The rows rearranged for this CPU's kernel where it wants them ([`qmatmul::interleaves`]),
    /// made by the first integer matmul (an embedding table only gathered never needs it).
    interleaved: OnceLock<Option<InterleavedQ4K>>,
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
        Ok(CpuMatrix { source, row_bytes, interleaved: OnceLock::new() })
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

    fn rows_bytes(&self, lo: usize, hi: usize) -> &[u8] {
        &self.source.bytes[lo * self.row_bytes..hi * self.row_bytes]
    }

    fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        // Lengths were checked in `new`, so this cannot fail.
        quant::dequantize_row(self.source.dtype, self.row(r), out).expect("row length checked at upload");
    }

    fn is_integer(&self) -> bool {
        qmatmul::is_integer_dtype(self.source.dtype)
    }

    /// The interleaved copy `isa` multiplies, made on first use; `None` where `isa` reads the
    /// file's layout.
    fn interleaved(&self, isa: QuantIsa) -> Option<&InterleavedQ4K> {
        let make = || qmatmul::interleaves(isa, self.dtype()).then(|| InterleavedQ4K::new(&self.source.bytes, self.rows(), self.cols()));
        self.interleaved.get_or_init(make).as_ref()
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
    pub fn matmul(&self, pool: &WorkerPool, mode: MatmulMode, x: &[f32], rows: usize, out: &mut [f32]) -> BackendResult<()> {
        matmul_many(pool, mode, x, rows, &mut [(self, out)])
    }

    /// Output rows `lo..hi` for every activation row, into `out` (`stride` = `self.rows()`).
    #[allow(clippy::too_many_arguments)]
    fn run_task(&self, mode: MatmulMode, isa: QuantIsa, acts: &Q8Activations, x: &[f32], rows: usize, lo: usize, hi: usize, out: *mut f32) {
        let m = self.rows();
        if self.is_integer() && mode == MatmulMode::Integer {
            // SAFETY: `isa` comes from `QuantIsa::selected`; the slices hold rows lo..hi (`lo` is a
            // multiple of the task size, 16); the caller guarantees `out` covers `rows * m` and
            // that only this task writes columns lo..hi.
            unsafe {
                match self.interleaved(isa) {
                    Some(w) => qmatmul::tile_interleaved(isa, w.groups(lo, hi), hi - lo, acts, out.add(lo), m),
                    None => qmatmul::tile(isa, self.dtype(), self.rows_bytes(lo, hi), hi - lo, acts, out.add(lo), m),
                }
            }
            return;
        }
        let k = self.cols();
        ROW_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.resize(ROWS_PER_TASK * k, 0.0);
            for tile_lo in (lo..hi).step_by(ROWS_PER_TASK) {
                // Dequantize a tile of weight rows once ([ROWS_PER_TASK, k], small enough for
                // L1/L2), then stream every activation row past them.
                let tile_hi = (tile_lo + ROWS_PER_TASK).min(hi);
                for o in tile_lo..tile_hi {
                    self.dequantize_row(o, &mut scratch[(o - tile_lo) * k..(o - tile_lo + 1) * k]);
                }
                for r in 0..rows {
                    let xr = &x[r * k..(r + 1) * k];
                    for o in tile_lo..tile_hi {
                        let v = dot(&scratch[(o - tile_lo) * k..(o - tile_lo + 1) * k], xr);
                        // SAFETY: as above: in bounds, and column `o` belongs to this task alone.
                        unsafe { *out.add(r * m + o) = v };
                    }
                }
            }
        });
    }
}

/// `outs[j] = x · matrix[j]ᵀ` for up to [`MAX_MATRICES`] matrices of the same width: `x` is
/// quantized once (when any matrix is quantized) and all their row tasks share one pool call.
pub fn matmul_many<O: AsMut<[f32]>>(pool: &WorkerPool, mode: MatmulMode, x: &[f32], rows: usize, jobs: &mut [(&CpuMatrix, O)]) -> BackendResult<()> {
    if jobs.len() > MAX_MATRICES {
        for chunk in jobs.chunks_mut(MAX_MATRICES) {
            matmul_many(pool, mode, x, rows, chunk)?;
        }
        return Ok(());
    }
    let Some(k) = jobs.first().map(|(w, _)| w.cols()) else { return Ok(()) };
    check_len("matmul", "x", x.len(), rows * k)?;
    // Task ranges per matrix: matrix j owns tasks ends[j-1]..ends[j], of per_task[j] rows each.
    let mut ends = [0usize; MAX_MATRICES];
    let mut per_task = [ROWS_PER_TASK; MAX_MATRICES];
    let mut outs = [DisjointPtr(std::ptr::null_mut()); MAX_MATRICES];
    let mut total = 0;
    for (j, (w, out)) in jobs.iter_mut().enumerate() {
        if w.cols() != k {
            return Err(BackendError::Shape { op: "matmul", detail: format!("matrices of {} and {} columns share an input", k, w.cols()) });
        }
        let out = out.as_mut();
        check_len("matmul", "out", out.len(), rows * w.rows())?;
        per_task[j] = rows_per_task(w.rows(), rows, pool.threads());
        total += w.rows().div_ceil(per_task[j]);
        ends[j] = total;
        outs[j] = DisjointPtr(out.as_mut_ptr());
    }
    let formats = match mode {
        MatmulMode::Integer => jobs.iter().fold(Formats::default(), |f, (w, _)| f.union(Formats::of(w.dtype()))),
        MatmulMode::Float => Formats::default(),
    };
    ACTIVATIONS.with(|acts| {
        let mut acts = acts.borrow_mut();
        if formats != Formats::default() {
            acts.quantize_on(pool, x, rows, k, formats);
        }
        let acts = &*acts;
        let isa = QuantIsa::selected();
        if mode == MatmulMode::Integer {
            // Made here, once, rather than by the first task to reach each matrix.
            jobs.iter().for_each(|(w, _)| _ = w.interleaved(isa));
        }
        let matrices: [Option<&CpuMatrix>; MAX_MATRICES] = std::array::from_fn(|j| jobs.get(j).map(|(w, _)| *w));
        pool.for_each(total, &|task| {
            let j = ends.iter().position(|&e| task < e).expect("task below the last end");
            let w = matrices[j].expect("a matrix per task range");
            let first = if j == 0 { 0 } else { ends[j - 1] };
            let lo = (task - first) * per_task[j];
            let hi = (lo + per_task[j]).min(w.rows());
            w.run_task(mode, isa, acts, x, rows, lo, hi, outs[j].get());
        });
    });
    Ok(())
}

/// One matrix of [`matmul_grouped`] with its own input rows and output.
pub struct Group<'a> {
    pub w: &'a CpuMatrix,
    pub x: &'a [f32],
    pub rows: usize,
    pub out: &'a mut [f32],
}

thread_local! {
    /// [`matmul_grouped`]'s quantized inputs, one per group, grown once and reused.
    static GROUP_ACTIVATIONS: RefCell<Vec<Q8Activations>> = const { RefCell::new(Vec::new()) };
}

/// `group.out = group.x · group.wᵀ` for matrices that each have their own input (a mixture's
/// experts and the tokens routed to each): every input is quantized once and all the groups'
/// row tasks share one pool call, so a step's many small expert matmuls wake the pool once. Each
/// group's rows are what [`CpuMatrix::matmul`] gives them.
pub fn matmul_grouped(pool: &WorkerPool, mode: MatmulMode, groups: &mut [Group<'_>]) -> BackendResult<()> {
    let mut ends = Vec::with_capacity(groups.len());
    let mut per_task = Vec::with_capacity(groups.len());
    let mut total = 0;
    for g in groups.iter() {
        let k = g.w.cols();
        check_len("matmul", "x", g.x.len(), g.rows * k)?;
        check_len("matmul", "out", g.out.len(), g.rows * g.w.rows())?;
        per_task.push(rows_per_task(g.w.rows(), g.rows, pool.threads()));
        total += g.w.rows().div_ceil(per_task[per_task.len() - 1]);
        ends.push(total);
    }
    let isa = QuantIsa::selected();
    let mut acts = GROUP_ACTIVATIONS.with(|a| std::mem::take(&mut *a.borrow_mut()));
    if acts.len() < groups.len() {
        acts.resize_with(groups.len(), Q8Activations::default);
    }
    for (g, a) in groups.iter().zip(acts.iter_mut()) {
        let formats = if mode == MatmulMode::Integer { Formats::of(g.w.dtype()) } else { Formats::default() };
        if formats != Formats::default() {
            a.quantize_on(pool, g.x, g.rows, g.w.cols(), formats);
        }
        if mode == MatmulMode::Integer {
            _ = g.w.interleaved(isa);
        }
    }
    let jobs: Vec<(&CpuMatrix, &[f32], usize, DisjointPtr<f32>)> = groups.iter_mut().map(|g| (g.w, g.x, g.rows, DisjointPtr(g.out.as_mut_ptr()))).collect();
    let acts_ref = &acts;
    pool.for_each(total, &|task| {
        let j = ends.partition_point(|&e| e <= task);
        let (w, x, rows, out) = &jobs[j];
        let first = if j == 0 { 0 } else { ends[j - 1] };
        let lo = (task - first) * per_task[j];
        let hi = (lo + per_task[j]).min(w.rows());
        w.run_task(mode, isa, &acts_ref[j], x, *rows, lo, hi, out.get());
    });
    GROUP_ACTIVATIONS.with(|a| *a.borrow_mut() = acts);
    Ok(())
}

/// `Σ a[i]·b[i]`, on the widest instruction set this CPU has (`crate::isa`).
/// Every row of a batch goes through the same path, so results never depend on the batch.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu().avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
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

    fn matrix(dtype: DType, rows: usize, cols: usize, values: &[f32]) -> CpuMatrix {
        let mut bytes = vec![0u8; dtype.row_bytes(cols).unwrap() * rows];
        let rb = dtype.row_bytes(cols).unwrap();
        for r in 0..rows {
            quant::quantize_row(dtype, &values[r * cols..(r + 1) * cols], &mut bytes[r * rb..(r + 1) * rb]).unwrap();
        }
        let source = MatrixSource { name: "w".into(), dtype, rows, cols, bytes: SharedBytes::from_vec(bytes) };
        CpuMatrix::new(source).unwrap()
    }

    #[test]
    fn matmul_known_answer() {
        // w = [[1, 2], [3, 4], [5, 6]] (3 outputs of 2 inputs); x = [[1, 1], [0, 2]]
        let w = matrix(DType::F32, 3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let mut out = vec![0.0; 6];
        let pool = WorkerPool::new(2).unwrap();
        w.matmul(&pool, MatmulMode::Integer, &[1.0, 1.0, 0.0, 2.0], 2, &mut out).unwrap();
        assert_eq!(out, vec![3.0, 7.0, 11.0, 4.0, 8.0, 12.0]);
    }

    /// Mixed float and quantized matrices in one call, more rows than one task, several
    /// activation rows: each output equals that matrix multiplied alone on one thread.
    #[test]
    fn matmul_many_equals_separate_matmuls() {
        let (k, rows) = (64, 5);
        let values = |n: usize, seed: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect() };
        let a = matrix(DType::Q4_1, 40, k, &values(40 * k, 0.1));
        let b = matrix(DType::F16, 17, k, &values(17 * k, 0.2));
        let c = matrix(DType::Q8_0, 33, k, &values(33 * k, 0.3));
        let x = values(rows * k, 0.4);
        let pool = WorkerPool::new(2).unwrap();
        let one = WorkerPool::new(1).unwrap();
        let (mut oa, mut ob, mut oc) = (vec![f32::NAN; rows * 40], vec![f32::NAN; rows * 17], vec![f32::NAN; rows * 33]);
        matmul_many(&pool, MatmulMode::Integer, &x, rows, &mut [(&a, &mut oa), (&b, &mut ob), (&c, &mut oc)]).unwrap();
        for (w, got) in [(&a, &oa), (&b, &ob), (&c, &oc)] {
            let mut alone = vec![f32::NAN; rows * w.rows()];
            w.matmul(&one, MatmulMode::Integer, &x, rows, &mut alone).unwrap();
            assert_eq!(got, &alone);
        }
    }

    /// Float mode dequantizes: it equals the reference `dot_row` of each weight row.
    #[test]
    fn float_mode_is_the_float_reference() {
        let k = 64;
        let values: Vec<f32> = (0..8 * k).map(|i| (i as f32 * 0.31).cos()).collect();
        let w = matrix(DType::Q4_1, 8, k, &values);
        let x: Vec<f32> = (0..k).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut out = vec![f32::NAN; 8];
        w.matmul(&WorkerPool::new(2).unwrap(), MatmulMode::Float, &x, 1, &mut out).unwrap();
        for (o, got) in out.iter().enumerate() {
            let want = quant::dot_row(DType::Q4_1, w.row(o), &x).unwrap();
            assert!((got - want).abs() < 1e-4, "{o}: {got} vs {want}");
        }
    }

    #[test]
    fn matmul_rejects_mismatched_widths_and_short_buffers() {
        let pool = WorkerPool::new(1).unwrap();
        let a = matrix(DType::F32, 2, 32, &[0.5; 64]);
        let b = matrix(DType::F32, 2, 64, &[0.5; 128]);
        let (mut oa, mut ob) = (vec![0.0; 2], vec![0.0; 2]);
        assert!(matmul_many(&pool, MatmulMode::Integer, &[0.0; 64], 1, &mut [(&a, &mut oa), (&b, &mut ob)]).is_err());
        assert!(a.matmul(&pool, MatmulMode::Integer, &[0.0; 31], 1, &mut oa).is_err());
        assert!(a.matmul(&pool, MatmulMode::Integer, &[0.0; 32], 1, &mut [0.0; 1]).is_err());
    }

    #[test]
    fn gather_rows_and_rejects_bad_token() {
        let w = matrix(DType::F32, 2, 2, &[1.0, 2.0, 3.0, 4.0]);
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

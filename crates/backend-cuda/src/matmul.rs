//! `matmul`, `matmul_many` and `embed`.
//!
//! Up to [`GEMV_CHUNKED_MAX_ROWS`] input rows (decode) `quant_gemv.cu` multiplies straight from
//! the packed layout in f32, 8 input rows per launch (so the weights are read once per 8 rows);
//! matrices of one type sharing an input (q/k/v, gate/up) go in one launch. Larger batches are
//! compute-bound and go to cuBLAS: activations are
//! rounded to bf16 once, each weight chunk is dequantized to bf16 scratch and multiplied with
//! `cublasGemmEx` (bf16 x bf16 -> f32, f32 compute); BF16 weights are used in place and F32
//! weights with `cublasSgemm` on the f32 activations.

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use rill_backend::{BackendError, BackendResult};

use crate::args::{self, ConvertArgs, DequantArgs, EmbedArgs, GemvArgs, GemvJob, PackedMatrixArg};
use crate::memory::{addr, check_len, gemm_chunk_rows, to_i32, CudaBuffer, CudaIndices, CudaMatrix};
use crate::packed::Fmt;
use crate::CudaBackend;

/// Up to this many input rows the GEMV runs (8 rows per launch): it reads the weights once per
/// 8 rows in f32, while the cuBLAS path rewrites all of them as bf16 first, which costs more
/// than ~4 weight reads. (A first estimate for H200; worth measuring.)
pub const GEMV_CHUNKED_MAX_ROWS: usize = 32;

/// One cuBLAS call in column-major terms.
///
/// Row-major `out[M, N]` (M input rows, N weight rows, row stride `ldo`) is, read column-major,
/// the matrix `outᵀ` (N x M, leading dimension `ldo`). So we compute `outᵀ = W · xᵀ`:
/// - `W` is stored row-major `[N, K]` (row stride `ldw`), i.e. column-major `K x N` = `Wᵀ`;
///   with `transa = T`, `op(A) = W` is `N x K`, `lda = ldw`.
/// - `x` is stored row-major `[M, K]` (row stride K), i.e. column-major `K x M` = `xᵀ` already;
///   `transb = N`, `op(B) = xᵀ` is `K x M`, `ldb = K`.
/// - `C = op(A) op(B)` is `N x M` column-major with `ldc = ldo`: element (o, r) lands at
///   `out[r * ldo + o]`, the row-major `out[r, o]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub transa: bool,
    pub transb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

/// The cuBLAS shape for `out[r, o] = Σ_k x[r, k] w[o, k]` with `x_rows` input rows, `w_rows`
/// weight rows (one chunk), `k` inputs, weight rows `ldw` apart and output rows `ldo` apart.
pub fn gemm_shape(x_rows: usize, w_rows: usize, k: usize, ldw: usize, ldo: usize) -> GemmShape {
    GemmShape { transa: true, transb: false, m: w_rows, n: x_rows, k, lda: ldw, ldb: k, ldc: ldo }
}

impl CudaBackend {
    pub(crate) fn matmul_jobs(&self, x: &CudaBuffer, rows: usize, jobs: &mut [(&CudaMatrix, &mut CudaBuffer)]) -> BackendResult<()> {
        let Some(k) = jobs.first().map(|(w, _)| w.cols()) else { return Ok(()) };
        check_len("matmul", "x", x.len, rows * k)?;
        for (w, out) in jobs.iter() {
            if w.cols() != k {
                return Err(BackendError::Shape { op: "matmul", detail: format!("matrices of {k} and {} columns share an input", w.cols()) });
            }
            check_len("matmul", "out", out.len, rows * w.rows())?;
            to_i32("matmul", "rows", rows * w.rows().max(1))?;
        }
        if rows == 0 || jobs.iter().all(|(w, _)| w.rows() == 0) {
            return Ok(());
        }
        if k == 0 {
            // Empty sums (cuBLAS rejects a zero leading dimension).
            for (w, out) in jobs.iter_mut() {
                let n = rows * w.rows();
                if n > 0 {
                    let mut view = out.data.slice_mut(..n);
                    self.dev.stream.memset_zeros(&mut view).map_err(|e| BackendError::Device(format!("matmul: {e}")))?;
                }
            }
            return Ok(());
        }
        if rows <= GEMV_CHUNKED_MAX_ROWS {
            // Consecutive matrices of one type share a launch; more than 8 rows go 8 at a time.
            let mut i = 0;
            while i < jobs.len() {
                let fmt = jobs[i].0.layout.fmt;
                let mut j = i + 1;
                while j < jobs.len() && j - i < args::GEMV_MAX_JOBS && jobs[j].0.layout.fmt == fmt {
                    j += 1;
                }
                for r0 in (0..rows).step_by(args::GEMV_MAX_ROWS) {
                    self.gemv(x, r0, (rows - r0).min(args::GEMV_MAX_ROWS), &mut jobs[i..j])?;
                }
                i = j;
            }
            return Ok(());
        }
        if jobs.iter().any(|(w, _)| w.layout.fmt != Fmt::F32) {
            self.activations_to_bf16(x, rows * k)?;
        }
        for (w, out) in jobs.iter_mut() {
            self.gemm(x, rows, w, out)?;
        }
        Ok(())
    }

    /// Input rows `r0 .. r0 + rows` (at most 8) of every job, one launch.
    fn gemv(&self, x: &CudaBuffer, r0: usize, rows: usize, jobs: &mut [(&CudaMatrix, &mut CudaBuffer)]) -> BackendResult<()> {
        let s = &self.dev.stream;
        let fmt = jobs[0].0.layout.fmt;
        let per_cta = args::gemv_rows_per_cta(fmt, rows);
        let f32_bytes = std::mem::size_of::<f32>();
        let x_addr = addr(&x.data, s) + (r0 * jobs[0].0.cols() * f32_bytes) as u64;
        let mut a = GemvArgs { x: x_addr, njobs: jobs.len() as i32, ..Default::default() };
        let mut ctas = 0usize;
        for (slot, (w, out)) in a.jobs.iter_mut().zip(jobs.iter()) {
            let out_addr = addr(&out.data, s) + (r0 * w.rows() * f32_bytes) as u64;
            *slot = GemvJob { w: PackedMatrixArg::new(addr(&w.data, s), &w.layout), out: out_addr, cta_begin: to_i32("matmul", "CTAs", ctas)?, pad: 0 };
            ctas += w.rows().div_ceil(per_cta);
        }
        let grid = u32::try_from(ctas).map_err(|_| BackendError::Shape { op: "matmul", detail: format!("{ctas} CTAs") })?;
        let f = &self.dev.kernels.gemv[fmt as usize][rows - 1];
        self.dev.launch(f, (grid, 1, 1), args::GEMV_THREADS, 0, &a, "matmul")
    }

    /// `x[..n]` as bf16 into the activation scratch (sized by `alloc` after the largest buffer).
    fn activations_to_bf16(&self, x: &CudaBuffer, n: usize) -> BackendResult<()> {
        let st = self.state.borrow();
        let s = &self.dev.stream;
        let dst = st.scratch.act_bf16.as_ref().filter(|d| d.len() >= n).ok_or_else(|| {
            BackendError::Device(format!("matmul: bf16 activation scratch is smaller than {n} elements (buffers come from this backend's alloc)"))
        })?;
        let a = ConvertArgs { x: addr(&x.data, s), out: addr(dst, s), n: n as i64 };
        self.dev.launch(&self.dev.kernels.f32_to_bf16, (args::ew_blocks(n), 1, 1), args::DQ_THREADS, 0, &a, "matmul")
    }

    fn gemm(&self, x: &CudaBuffer, rows: usize, w: &CudaMatrix, out: &mut CudaBuffer) -> BackendResult<()> {
        let l = &w.layout;
        let s = &self.dev.stream;
        let (w_addr, x_addr, out_addr) = (addr(&w.data, s), addr(&x.data, s), addr(&out.data, s));
        let st = self.state.borrow();
        match l.fmt {
            Fmt::F32 => self.cublas(Fmt::F32, gemm_shape(rows, l.rows, l.cols, l.cols_padded(), l.rows), w_addr, x_addr, out_addr),
            Fmt::BF16 => {
                let xb = addr(st.scratch.act_bf16.as_ref().expect("converted above"), s);
                self.cublas(Fmt::BF16, gemm_shape(rows, l.rows, l.cols, l.cols_padded(), l.rows), w_addr, xb, out_addr)
            }
            fmt => {
                let xb = addr(st.scratch.act_bf16.as_ref().expect("converted above"), s);
                let chunk = gemm_chunk_rows(l);
                let wb = st.scratch.w_bf16.as_ref().filter(|b| b.len() >= chunk * l.cols_padded()).ok_or_else(|| {
                    BackendError::Device(format!("matmul: weight scratch too small for {} (matrices come from this backend's upload_matrix)", w.name))
                })?;
                let wb = addr(wb, s);
                let units = l.units;
                let mut o0 = 0;
                while o0 < l.rows {
                    let nc = chunk.min(l.rows - o0);
                    let a = DequantArgs {
                        w: PackedMatrixArg::new(w_addr, l),
                        out: wb,
                        row0: o0 as i32,
                        nrows: nc as i32,
                        ld: l.cols_padded() as i32,
                        pad: 0,
                    };
                    let blocks = u32::try_from((nc * units).div_ceil(args::DQ_THREADS as usize))
                        .map_err(|_| BackendError::Shape { op: "matmul", detail: "dequantization grid too large".into() })?;
                    self.dev.launch(&self.dev.kernels.dequant[fmt as usize], (blocks, 1, 1), args::DQ_THREADS, 0, &a, "matmul")?;
                    let out_chunk = out_addr + (o0 * std::mem::size_of::<f32>()) as u64;
                    self.cublas(Fmt::BF16, gemm_shape(rows, nc, l.cols, l.cols_padded(), l.rows), wb, xb, out_chunk)?;
                    o0 += nc;
                }
                Ok(())
            }
        }
    }

    /// `C = op(A) op(B)` on the stream: f32 (`Sgemm`) or bf16 inputs with f32 output and compute.
    fn cublas(&self, inputs: Fmt, g: GemmShape, a: u64, b: u64, c: u64) -> BackendResult<()> {
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let i = |v: usize| to_i32("matmul", "GEMM size", v);
        let (m, n, k, lda, ldb, ldc) = (i(g.m)?, i(g.n)?, i(g.k)?, i(g.lda)?, i(g.ldb)?, i(g.ldc)?);
        let (alpha, beta) = (1.0f32, 0.0f32);
        let handle = *self.dev.blas.handle();
        self.dev.ctx.bind_to_thread().map_err(|e| BackendError::Device(format!("matmul: {e}")))?;
        // SAFETY: the addresses are live device allocations of the sizes the shape implies
        // (checked by the callers), alpha/beta are host scalars read during the call, and the
        // handle's stream is this backend's stream.
        let r = unsafe {
            match inputs {
                Fmt::F32 => cudarc::cublas::result::sgemm(
                    handle, op(g.transa), op(g.transb), m, n, k, &alpha, a as *const f32, lda, b as *const f32, ldb, &beta, c as *mut f32, ldc,
                ),
                _ => cudarc::cublas::result::gemm_ex(
                    handle,
                    op(g.transa),
                    op(g.transb),
                    m,
                    n,
                    k,
                    &alpha as *const f32 as *const _,
                    a as *const _,
                    cudaDataType::CUDA_R_16BF,
                    lda,
                    b as *const _,
                    cudaDataType::CUDA_R_16BF,
                    ldb,
                    &beta as *const f32 as *const _,
                    c as *mut _,
                    cudaDataType::CUDA_R_32F,
                    ldc,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                ),
            }
        };
        r.map_err(|e| BackendError::Device(format!("matmul: cuBLAS GEMM {m}x{n}x{k}: {e:?}")))
    }

    pub(crate) fn embed_rows(&self, table: &CudaMatrix, tokens: &CudaIndices, n: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        let l = &table.layout;
        check_len("embed", "tokens", tokens.len, n)?;
        check_len("embed", "out", out.len, n * l.cols)?;
        if n == 0 || l.cols == 0 {
            return Ok(());
        }
        let s = &self.dev.stream;
        let a = EmbedArgs {
            w: PackedMatrixArg::new(addr(&table.data, s), l),
            tokens: addr(&tokens.data, s),
            out: addr(&out.data, s),
            n: to_i32("embed", "tokens", n)?,
            pad: 0,
        };
        let blocks = u32::try_from((n * l.units).div_ceil(args::DQ_THREADS as usize))
            .map_err(|_| BackendError::Shape { op: "embed", detail: "grid too large".into() })?;
        self.dev.launch(&self.dev.kernels.embed[l.fmt as usize], (blocks, 1, 1), args::DQ_THREADS, 0, &a, "embed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BLAS `C = op(A) op(B)`, column-major, exactly as cuBLAS defines it.
    #[allow(clippy::too_many_arguments)]
    fn reference_gemm(g: GemmShape, a: &[f32], b: &[f32], c: &mut [f32]) {
        for j in 0..g.n {
            for i in 0..g.m {
                let mut acc = 0.0;
                for p in 0..g.k {
                    let av = if g.transa { a[p + i * g.lda] } else { a[i + p * g.lda] };
                    let bv = if g.transb { b[j + p * g.ldb] } else { b[p + j * g.ldb] };
                    acc += av * bv;
                }
                c[i + j * g.ldc] = acc;
            }
        }
    }

    #[test]
    fn gemm_shape_computes_the_row_major_matmul_in_chunks() {
        let (m_rows, n_rows, k, ldw) = (5, 7, 6, 8); // weight rows padded to 8 columns
        let x: Vec<f32> = (0..m_rows * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n_rows * ldw).map(|i| if i % ldw < k { (i as f32 * 0.11).cos() } else { 99.0 }).collect();
        let mut want = vec![0f32; m_rows * n_rows];
        for r in 0..m_rows {
            for o in 0..n_rows {
                want[r * n_rows + o] = (0..k).map(|p| x[r * k + p] * w[o * ldw + p]).sum();
            }
        }
        let mut got = vec![f32::NAN; m_rows * n_rows];
        for (o0, nc) in [(0, 3), (3, 3), (6, 1)] {
            let g = gemm_shape(m_rows, nc, k, ldw, n_rows);
            assert!(g.lda >= g.k && g.ldb >= g.k && g.ldc >= g.m, "cuBLAS leading-dimension rules");
            reference_gemm(g, &w[o0 * ldw..], &x, &mut got[o0..]);
        }
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }
}

//! The CPU backend. Every kernel here is plain reference code first: it is the oracle that SIMD
//! and CUDA kernels are tested against. Work is split across a `WorkerPool` by output rows (matmul)
//! or by (token, head) (attention); no kernel allocates per token.

mod attention;
mod elementwise;
mod experts;
mod gelu;
mod isa;
mod kv_cache;
mod matmul;
mod pool;
pub mod qmatmul;
mod sample;
mod simd;

use std::sync::Mutex;

use rill_backend::{
    Activation, AttentionBatch, AttentionParams, Backend, BackendError, BackendResult, DrawParams, ExpertRoute, KvLayout, MatrixSource, RopeParams,
};

pub use kv_cache::CpuKvCache;
pub use matmul::{CpuMatrix, MatmulMode};
pub use pool::WorkerPool;

pub struct CpuBackend {
    pool: WorkerPool,
    matmul_mode: MatmulMode,
    /// The expert matmul's gathered rows, grown once and reused.
    expert_scratch: Mutex<experts::ExpertScratch>,
}

impl CpuBackend {
    /// A backend on `threads` threads, counting the caller (0: one per physical core).
    pub fn new(threads: usize) -> BackendResult<CpuBackend> {
        let pool = WorkerPool::new(threads)
            .map_err(|e| BackendError::Device(format!("cannot start CPU thread pool: {e}")))?;
        // `RILL_CPU_ISA=reference` runs every kernel's reference twin, the matmul's included.
        let reference = isa::request() == isa::Request::Reference;
        let matmul_mode = if reference { MatmulMode::Float } else { MatmulMode::Integer };
        Ok(CpuBackend { pool, matmul_mode, expert_scratch: Mutex::default() })
    }

    /// The oracle: as [`CpuBackend::new`], but quantized weights are dequantized and multiplied
    /// in `f32` instead of against 8-bit activations, for tests against exact math.
    pub fn reference(threads: usize) -> BackendResult<CpuBackend> {
        Ok(CpuBackend { matmul_mode: MatmulMode::Float, ..CpuBackend::new(threads)? })
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }
}

pub(crate) fn check_len(op: &'static str, what: &str, have: usize, need: usize) -> BackendResult<()> {
    if have < need {
        return Err(BackendError::Shape { op, detail: format!("{what} holds {have} elements, needs {need}") });
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;
    type Indices = Vec<u32>;
    type Matrix = CpuMatrix;
    type KvCache = CpuKvCache;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn free_memory_bytes(&self) -> Option<usize> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: usize = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    }

    fn alloc(&self, len: usize) -> BackendResult<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn alloc_indices(&self, len: usize) -> BackendResult<Vec<u32>> {
        Ok(vec![0; len])
    }

    fn write(&self, dst: &mut Vec<f32>, src: &[f32]) -> BackendResult<()> {
        check_len("write", "destination", dst.len(), src.len())?;
        dst[..src.len()].copy_from_slice(src);
        Ok(())
    }

    fn write_indices(&self, dst: &mut Vec<u32>, src: &[u32]) -> BackendResult<()> {
        check_len("write_indices", "destination", dst.len(), src.len())?;
        dst[..src.len()].copy_from_slice(src);
        Ok(())
    }

    fn read(&self, src: &Vec<f32>, dst: &mut [f32]) -> BackendResult<()> {
        check_len("read", "source", src.len(), dst.len())?;
        dst.copy_from_slice(&src[..dst.len()]);
        Ok(())
    }

    fn upload_matrix(&self, source: MatrixSource) -> BackendResult<CpuMatrix> {
        CpuMatrix::new(source)
    }

    fn alloc_kv_cache(&self, layout: KvLayout) -> BackendResult<CpuKvCache> {
        CpuKvCache::new(layout)
    }

    fn embed(&self, table: &CpuMatrix, tokens: &Vec<u32>, n: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        table.gather(&tokens[..n.min(tokens.len())], n, out)
    }

    fn rms_norm(&self, x: &Vec<f32>, weight: &Vec<f32>, eps: f32, rows: usize, dim: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        elementwise::rms_norm(&self.pool, x, weight, eps, rows, dim, out)
    }

    fn matmul(&self, x: &Vec<f32>, w: &CpuMatrix, rows: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        w.matmul(&self.pool, self.matmul_mode, x, rows, out)
    }

    fn matmul_many(&self, x: &Vec<f32>, rows: usize, jobs: &mut [(&CpuMatrix, &mut Vec<f32>)]) -> BackendResult<()> {
        matmul::matmul_many(&self.pool, self.matmul_mode, x, rows, jobs)
    }

    fn add_bias(&self, x: &mut Vec<f32>, bias: &Vec<f32>, rows: usize, dim: usize) -> BackendResult<()> {
        elementwise::add_bias(x, bias, rows, dim)
    }

    fn rope(&self, x: &mut Vec<f32>, positions: &Vec<u32>, rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()> {
        elementwise::rope(x, positions, rows, heads, head_dim, rope)
    }

    fn write_kv(&self, cache: &mut CpuKvCache, layer: usize, k: &Vec<f32>, v: &Vec<f32>, slots: &Vec<u32>, n: usize) -> BackendResult<()> {
        cache.write(layer, k, v, slots, n)
    }

    fn attention(&self, cache: &CpuKvCache, layer: usize, q: &Vec<f32>, heads: usize, params: &AttentionParams, batch: &AttentionBatch<'_, Self>, out: &mut Vec<f32>) -> BackendResult<()> {
        attention::paged_attention(isa::SimdIsa::selected(), &self.pool, cache, layer, q, heads, params, batch, out)
    }

    fn glu(&self, act: Activation, gate: &Vec<f32>, up: &Vec<f32>, len: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        match act {
            Activation::Silu => elementwise::silu_mul(gate, up, len, out),
            Activation::GeluTanh => gelu::gelu_mul(gate, up, len, out),
        }
    }

    fn scale(&self, x: &mut Vec<f32>, factor: f32, len: usize) -> BackendResult<()> {
        elementwise::scale(x, factor, len)
    }

    fn softcap(&self, x: &mut Vec<f32>, cap: f32, len: usize) -> BackendResult<()> {
        elementwise::softcap(x, cap, len)
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>, len: usize) -> BackendResult<()> {
        check_len("add", "x", x.len(), len)?;
        check_len("add", "y", y.len(), len)?;
        x[..len].iter_mut().zip(&y[..len]).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn sample(&self, logits: &Vec<f32>, rows: usize, vocab: usize, params: &[DrawParams], out: &mut Vec<u32>) -> BackendResult<()> {
        sample::sample_rows(logits, rows, vocab, params, out)
    }

    fn read_indices(&self, src: &Vec<u32>, dst: &mut [u32]) -> BackendResult<()> {
        check_len("read_indices", "source", src.len(), dst.len())?;
        dst.copy_from_slice(&src[..dst.len()]);
        Ok(())
    }

    fn runs_experts(&self) -> bool {
        true
    }

    fn route_experts(&self, logits: &Vec<f32>, rows: usize, route: &ExpertRoute, ids: &mut Vec<u32>, weights: &mut Vec<f32>) -> BackendResult<()> {
        experts::route(logits, rows, route, ids, weights)
    }

    fn matmul_experts(&self, x: &Vec<f32>, x_per_slot: bool, rows: usize, used: usize, ids: &Vec<u32>, experts: &[CpuMatrix], out: &mut Vec<f32>) -> BackendResult<()> {
        let mut scratch = self.expert_scratch.lock().unwrap_or_else(|p| p.into_inner());
        experts::matmul_experts(&self.pool, self.matmul_mode, &mut scratch, x, x_per_slot, rows, used, ids, experts, out)
    }

    fn combine_experts(&self, y: &Vec<f32>, weights: &Vec<f32>, rows: usize, used: usize, dim: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        experts::combine(y, weights, rows, used, dim, out)
    }

    fn add_gated(&self, x: &mut Vec<f32>, y: &Vec<f32>, gate: &Vec<f32>, rows: usize, dim: usize) -> BackendResult<()> {
        experts::add_gated(x, y, gate, rows, dim)
    }

    fn gather_rows(&self, x: &Vec<f32>, rows: &Vec<u32>, n: usize, dim: usize, out: &mut Vec<f32>) -> BackendResult<()> {
        check_len("gather_rows", "rows", rows.len(), n)?;
        check_len("gather_rows", "out", out.len(), n * dim)?;
        for (i, &r) in rows[..n].iter().enumerate() {
            let r = r as usize;
            check_len("gather_rows", "x", x.len(), (r + 1) * dim)?;
            out[i * dim..(i + 1) * dim].copy_from_slice(&x[r * dim..(r + 1) * dim]);
        }
        Ok(())
    }
}

//! The CUDA backend: the `Backend` kernels on an NVIDIA GPU, with our own kernels
//! (`kernels/*.cu`, compiled by build.rs and embedded) and cuBLAS for large GEMMs.
//!
//! Why it looks the way it does:
//! - **Decode is bandwidth-bound**, so batches of up to 32 rows multiply straight from the
//!   quantized weights in f32 (`quant_gemv.cu`, 8 rows per launch), after one repacking at upload
//!   that makes every weight load 16 bytes wide (`packed.rs`). Larger batches are compute-bound
//!   and go to cuBLAS on bf16 (weights dequantized chunk by chunk into scratch).
//! - **Every op is graph-capturable** (but `sample`, which uploads its parameters and runs after
//!   a step's replay): launch shapes depend only on sizes, index data (positions, slots, block
//!   tables) is read on the device, and ops neither allocate, copy nor synchronize.
//!   Scratch grows only in `alloc` / `upload_matrix` / `alloc_kv_cache` (`memory.rs`), and the
//!   forward pass can record a decode step once and replay it (`graph.rs`).
//! - **The CPU backend is the oracle**: each kernel names its CPU twin and keeps its roundings
//!   where that is cheap (embedding rows are bit-identical; GEMV ~1e-5, cuBLAS bf16 ~1e-2
//!   relative; attention ~1e-5, the elementwise ops ~1e-6).
//! - **No GPU, no crash**: [`probe`] and [`CudaBackend::new`] return errors naming what is
//!   missing (driver, device, cuBLAS) instead of letting a dlopen failure panic.

mod args;
mod attention;
mod device;
mod elementwise;
mod experts;
mod graph;
mod matmul;
mod memory;
mod module;
pub mod packed;
mod sample;

use std::cell::RefCell;
use std::collections::HashMap;

use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig, PushKernelArg};
use rill_backend::{
    Activation, AttentionBatch, AttentionParams, Backend, BackendError, BackendResult, DrawParams, ExpertRoute, KvDType, KvLayout, MatrixSource, RopeParams,
};

pub use attention::{plan as attention_plan, AttnPlan};
pub use device::{probe, CudaDeviceInfo};
pub use matmul::{gemm_shape, GemmShape};
pub use memory::{CudaBuffer, CudaIndices, CudaKvCache, CudaMatrix};

use device::Device;
use memory::{alloc, alloc_zeros, check_len, ensure, Scratch};
use packed::{Fmt, PackedLayout};

pub struct CudaBackend {
    // `state` first: fields drop in declaration order, and its graphs and scratch use the
    // device's context, modules and cuBLAS workspace (see `Drop`, which empties it anyway).
    state: RefCell<State>,
    dev: Device,
}

impl Drop for CudaBackend {
    /// Graphs and buffers go while the device they use is still there. cudarc destroys graphs and
    /// frees buffers without making the context current, so bind it on whichever thread drops the
    /// backend; end a capture left open (an op panicked mid-step) so the stream can be waited on;
    /// then wait for a replay that may still be running before destroying its graph.
    fn drop(&mut self) {
        let st = self.state.get_mut();
        let _ = self.dev.ctx.bind_to_thread();
        if st.capturing.take().is_some() {
            drop(self.dev.stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0)));
        }
        let _ = self.dev.stream.synchronize();
        st.graphs.clear();
        drop(std::mem::take(st));
    }
}

/// What ops share and mutate through `&self`.
#[derive(Default)]
pub(crate) struct State {
    scratch: Scratch,
    graphs: HashMap<u64, graph::Graph>,
    capturing: Option<u64>,
    /// An op failed during the capture in progress.
    capture_failed: bool,
    /// `sample`'s parameters on the device (never captured, so growing it drops no graph) and
    /// their host staging copy.
    sample_params: Option<cudarc::driver::CudaSlice<args::SampleRow>>,
    sample_host: Vec<args::SampleRow>,
    /// The expert matmul's staging (taken out while it runs).
    experts: experts::ExpertStage,
}

impl CudaBackend {
    /// Opens CUDA device `ordinal` (after [`probe`]), loads the kernels and cuBLAS.
    pub fn new(ordinal: usize) -> Result<CudaBackend, BackendError> {
        let info = probe(ordinal).map_err(BackendError::Device)?;
        let dev = Device::open(info).map_err(BackendError::Device)?;
        let sample_params = Some(alloc::<args::SampleRow>(&dev.stream, args::SAMPLE_PARAM_ROWS, "sampling parameters")?);
        let state = State { sample_params, sample_host: Vec::with_capacity(args::SAMPLE_PARAM_ROWS), ..State::default() };
        Ok(CudaBackend { dev, state: RefCell::new(state) })
    }

    pub fn info(&self) -> &CudaDeviceInfo {
        &self.dev.info
    }

    /// Waits for all queued work; reports errors of kernels that already ran.
    pub fn synchronize(&self) -> BackendResult<()> {
        self.dev.stream.synchronize().map_err(|e| BackendError::Device(format!("synchronize: {e}")))?;
        self.dev.ctx.check_err().map_err(|e| BackendError::Device(format!("deferred CUDA error: {e}")))
    }

    /// Passes an op's result on; a failure during a capture marks the capture failed.
    fn op<T>(&self, r: BackendResult<T>) -> BackendResult<T> {
        if r.is_err() {
            self.fail_capture();
        }
        r
    }

    /// Allocation and host copies cannot be recorded into a graph.
    fn not_capturing(&self, op: &'static str) -> BackendResult<()> {
        if self.capturing() {
            self.fail_capture();
            return Err(BackendError::Device(format!("{op} is not allowed while capturing a CUDA graph")));
        }
        Ok(())
    }

    /// Copies `src` into the first `src.len()` of the `len` elements in `dst`.
    fn upload<T: DeviceRepr>(&self, op: &'static str, src: &[T], dst: &mut cudarc::driver::CudaSlice<T>, len: usize) -> BackendResult<()> {
        self.not_capturing(op)?;
        check_len(op, "destination", len, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice_mut(..src.len());
        self.dev.stream.memcpy_htod(src, &mut view).map_err(|e| BackendError::Device(format!("{op}: {e}")))
    }

    /// Copies the first `dst.len()` of the `len` elements in `src` to the host. The copy is
    /// asynchronous with respect to the kernels before it: waits for all of them (which also
    /// surfaces any error they hit).
    fn download<T: DeviceRepr>(&self, op: &'static str, src: &cudarc::driver::CudaSlice<T>, len: usize, dst: &mut [T]) -> BackendResult<()> {
        self.not_capturing(op)?;
        check_len(op, "source", len, dst.len())?;
        if !dst.is_empty() {
            let view = src.slice(..dst.len());
            self.dev.stream.memcpy_dtoh(&view, dst).map_err(|e| BackendError::Device(format!("{op}: {e}")))?;
        }
        self.synchronize()
    }

    /// Grows one scratch buffer; moving it invalidates every recorded graph.
    fn grow<T: DeviceRepr>(&self, pick: impl FnOnce(&mut Scratch) -> &mut Option<cudarc::driver::CudaSlice<T>>, need: usize, what: &str) -> BackendResult<()> {
        let mut st = self.state.borrow_mut();
        if ensure(&self.dev.stream, pick(&mut st.scratch), need, what)? {
            self.drop_graphs(&mut st);
        }
        Ok(())
    }
}

impl Device {
    /// One launch on the stream, its error named after the op.
    pub(crate) fn launch<A: DeviceRepr>(&self, f: &CudaFunction, grid: (u32, u32, u32), block: u32, smem: u32, args: &A, op: &'static str) -> BackendResult<()> {
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (block, 1, 1), shared_mem_bytes: smem };
        let mut b = self.stream.launch_builder(f);
        b.arg(args);
        // SAFETY: `args` is the `#[repr(C)]` mirror of the kernel's one parameter (sizes checked
        // against the PTX in tests); every address in it is a live allocation of this context
        // sized for the op's checked lengths.
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| BackendError::Device(format!("{op}: kernel launch failed: {e}")))
    }
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer;
    type Indices = CudaIndices;
    type Matrix = CudaMatrix;
    type KvCache = CudaKvCache;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn free_memory_bytes(&self) -> Option<usize> {
        self.dev.ctx.bind_to_thread().ok()?;
        cudarc::driver::result::mem_get_info().ok().map(|(free, _total)| free)
    }

    fn alloc(&self, len: usize) -> BackendResult<CudaBuffer> {
        self.not_capturing("alloc")?;
        let data = alloc_zeros::<f32>(&self.dev.stream, len, "a buffer")?;
        // The GEMM path rounds a whole input buffer to bf16; size that copy after the largest.
        self.grow(|s| &mut s.act_bf16, len, "bf16 activation scratch")?;
        Ok(CudaBuffer { data, len })
    }

    fn alloc_indices(&self, len: usize) -> BackendResult<CudaIndices> {
        self.not_capturing("alloc_indices")?;
        Ok(CudaIndices { data: alloc_zeros::<u32>(&self.dev.stream, len, "indices")?, len })
    }

    fn write(&self, dst: &mut CudaBuffer, src: &[f32]) -> BackendResult<()> {
        self.upload("write", src, &mut dst.data, dst.len)
    }

    fn write_indices(&self, dst: &mut CudaIndices, src: &[u32]) -> BackendResult<()> {
        self.upload("write_indices", src, &mut dst.data, dst.len)
    }

    fn read(&self, src: &CudaBuffer, dst: &mut [f32]) -> BackendResult<()> {
        self.download("read", &src.data, src.len, dst)
    }

    fn upload_matrix(&self, source: MatrixSource) -> BackendResult<CudaMatrix> {
        self.not_capturing("upload_matrix")?;
        let MatrixSource { name, dtype, rows, cols, bytes } = source;
        if Fmt::of(dtype).is_none() {
            return Err(BackendError::Unsupported { backend: "cuda", what: format!("{dtype} weights ({name})") });
        }
        let row_bytes = dtype.row_bytes(cols).ok_or_else(|| BackendError::Shape {
            op: "upload_matrix",
            detail: format!("{name}: {cols} columns are not whole {dtype} blocks"),
        })?;
        if bytes.len() != row_bytes * rows {
            let detail = format!("{name}: {} bytes for {rows}x{cols} {dtype}", bytes.len());
            return Err(BackendError::Shape { op: "upload_matrix", detail });
        }
        let layout = PackedLayout::new(dtype, rows, cols)
            .filter(|l| i32::try_from(l.rows).is_ok() && i32::try_from(l.q_stride).is_ok() && i32::try_from(l.units * 32).is_ok())
            .ok_or_else(|| BackendError::Shape { op: "upload_matrix", detail: format!("{name}: {rows}x{cols} {dtype} is too large") })?;
        let packed = packed::pack(&layout, &bytes);
        let mut data = alloc::<u8>(&self.dev.stream, packed.len(), &name)?;
        if !packed.is_empty() {
            let mut view = data.slice_mut(..packed.len());
            self.dev.stream.memcpy_htod(&packed, &mut view).map_err(|e| BackendError::Device(format!("upload_matrix {name}: {e}")))?;
        }
        // The cuBLAS path dequantizes this matrix a chunk of rows at a time (BF16 and F32 are
        // multiplied in place).
        if !matches!(layout.fmt, Fmt::F32 | Fmt::BF16) && rows > 0 {
            self.grow(|s| &mut s.w_bf16, memory::gemm_chunk_rows(&layout) * layout.cols_padded(), "dequantized weight scratch")?;
        }
        Ok(CudaMatrix { name, layout, data })
    }

    fn alloc_kv_cache(&self, layout: KvLayout) -> BackendResult<CudaKvCache> {
        self.not_capturing("alloc_kv_cache")?;
        let bytes = layout.layer_elems() * layout.dtype.bytes();
        let mut k = Vec::with_capacity(layout.layers);
        let mut v = Vec::with_capacity(layout.layers);
        for _ in 0..layout.layers {
            // Zeroed, as the CPU cache starts.
            k.push(alloc_zeros::<u8>(&self.dev.stream, bytes, "the KV cache")?);
            v.push(alloc_zeros::<u8>(&self.dev.stream, bytes, "the KV cache")?);
        }
        if layout.head_dim <= attention::MAX_HEAD_DIM && layout.head_dim > 0 {
            let hd = layout.head_dim.max(self.state.borrow().scratch.part_head_dim);
            self.grow(|s| &mut s.part_acc, memory::PARTIAL_ROWS * hd, "attention partials")?;
            self.grow(|s| &mut s.part_ml, memory::PARTIAL_ROWS * 2, "attention partials")?;
            self.state.borrow_mut().scratch.part_head_dim = hd;
        }
        Ok(CudaKvCache { layout, k, v })
    }

    fn embed(&self, table: &CudaMatrix, tokens: &CudaIndices, n: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.embed_rows(table, tokens, n, out))
    }

    fn rms_norm(&self, x: &CudaBuffer, weight: &CudaBuffer, eps: f32, rows: usize, dim: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.rms_norm_rows(x, weight, eps, rows, dim, out))
    }

    fn matmul(&self, x: &CudaBuffer, w: &CudaMatrix, rows: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.matmul_jobs(x, rows, &mut [(w, out)]))
    }

    fn matmul_many(&self, x: &CudaBuffer, rows: usize, jobs: &mut [(&CudaMatrix, &mut CudaBuffer)]) -> BackendResult<()> {
        self.op(self.matmul_jobs(x, rows, jobs))
    }

    fn add_bias(&self, x: &mut CudaBuffer, bias: &CudaBuffer, rows: usize, dim: usize) -> BackendResult<()> {
        self.op(self.add_bias_rows(x, bias, rows, dim))
    }

    fn rope(&self, x: &mut CudaBuffer, positions: &CudaIndices, rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()> {
        self.op(self.rope_rows(x, positions, rows, heads, head_dim, rope))
    }

    fn write_kv(&self, cache: &mut CudaKvCache, layer: usize, k: &CudaBuffer, v: &CudaBuffer, slots: &CudaIndices, n: usize) -> BackendResult<()> {
        self.op(self.store_kv(cache, layer, k, v, slots, n))
    }

    fn attention(&self, cache: &CudaKvCache, layer: usize, q: &CudaBuffer, heads: usize, params: &AttentionParams, batch: &AttentionBatch<'_, Self>, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.paged_attention(cache, layer, q, heads, params, batch, out))
    }

    fn glu(&self, act: Activation, gate: &CudaBuffer, up: &CudaBuffer, len: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.glu_elems(act, gate, up, len, out))
    }

    fn scale(&self, x: &mut CudaBuffer, factor: f32, len: usize) -> BackendResult<()> {
        self.op(self.scale_elems(x, factor, len, false))
    }

    fn softcap(&self, x: &mut CudaBuffer, cap: f32, len: usize) -> BackendResult<()> {
        self.op(self.scale_elems(x, cap, len, true))
    }

    fn add(&self, x: &mut CudaBuffer, y: &CudaBuffer, len: usize) -> BackendResult<()> {
        self.op(self.add_elems(x, y, len))
    }

    fn graphs_supported(&self) -> bool {
        true
    }

    fn begin_capture(&self, key: u64) -> BackendResult<()> {
        self.capture_begin(key)
    }

    fn end_capture(&self, key: u64) -> BackendResult<()> {
        self.capture_end(key)
    }

    fn replay(&self, key: u64) -> BackendResult<bool> {
        self.graph_replay(key)
    }

    fn gather_rows(&self, x: &CudaBuffer, rows: &CudaIndices, n: usize, dim: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.gather(x, rows, n, dim, out))
    }

    fn samples_on_device(&self) -> bool {
        true
    }

    fn sample(&self, logits: &CudaBuffer, rows: usize, vocab: usize, params: &[DrawParams], out: &mut CudaIndices) -> BackendResult<()> {
        self.op(self.sample_rows(logits, rows, vocab, params, out))
    }

    fn read_indices(&self, src: &CudaIndices, dst: &mut [u32]) -> BackendResult<()> {
        self.download("read_indices", &src.data, src.len, dst)
    }

    fn runs_experts(&self) -> bool {
        true
    }

    fn route_experts(&self, logits: &CudaBuffer, rows: usize, route: &ExpertRoute, ids: &mut CudaIndices, weights: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.route_rows(logits, rows, route, ids, weights))
    }

    fn matmul_experts(&self, x: &CudaBuffer, x_per_slot: bool, rows: usize, used: usize, ids: &CudaIndices, experts: &[CudaMatrix], out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.expert_matmul(x, x_per_slot, rows, used, ids, experts, out))
    }

    fn combine_experts(&self, y: &CudaBuffer, weights: &CudaBuffer, rows: usize, used: usize, dim: usize, out: &mut CudaBuffer) -> BackendResult<()> {
        self.op(self.combine_rows(y, weights, rows, used, dim, out))
    }

    fn add_gated(&self, x: &mut CudaBuffer, y: &CudaBuffer, gate: &CudaBuffer, rows: usize, dim: usize) -> BackendResult<()> {
        self.op(self.gated_add(x, y, gate, rows, dim))
    }
}

// The kernels only support the KV element types the trait has; keep the match exhaustive.
const _: fn(KvDType) = |d| match d {
    KvDType::F16 | KvDType::F32 => {}
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_without_a_gpu_says_what_is_missing_and_does_not_panic() {
        match probe(0) {
            Ok(info) => println!("found {info:?}; the no-GPU checks do not apply"),
            Err(msg) => {
                assert!(!msg.is_empty());
                let lower = msg.to_lowercase();
                assert!(
                    lower.contains("driver") || lower.contains("device") || lower.contains("cublas"),
                    "message names what is missing: {msg}"
                );
            }
        }
        // Out-of-range ordinals are errors on every machine.
        assert!(probe(usize::MAX / 2).is_err());
    }

    #[test]
    fn new_without_a_gpu_is_an_error_not_a_panic() {
        if probe(0).is_ok() {
            println!("skipped: a CUDA device is present (tests/gpu.rs covers it)");
            return;
        }
        match CudaBackend::new(0) {
            Ok(_) => panic!("a backend without a device"),
            Err(BackendError::Device(msg)) => assert!(msg.to_lowercase().contains("driver") || msg.contains("device"), "{msg}"),
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }

    #[test]
    fn backend_types_are_send_and_matrices_sync() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<CudaBackend>();
        send::<CudaBuffer>();
        send::<CudaKvCache>();
        sync::<CudaMatrix>();
    }

    #[test]
    fn gemv_rows_limit_matches_the_trait_conventions() {
        // Block sizes the packed layout relies on, from rill_backend's one table.
        use rill_backend::DType;
        assert_eq!(DType::Q4_0.block_len(), 32);
        assert_eq!(DType::Q6K.block_len(), 256);
        assert_eq!(DType::Q6K.block_bytes(), packed::Q6K_PACKED_BYTES + 2);
        for f in Fmt::ALL {
            assert_eq!(packed::UNIT % f.dtype().block_len().min(32), 0);
            assert!(args::gemv_rows_per_cta(f, 1) >= 16);
        }
    }
}

//! Device memory: the backend's buffer types and the scratch space kernels share.
//!
//! Kernel ops never allocate (a CUDA graph replays fixed addresses, and allocation is not
//! capturable). Scratch therefore grows only in the calls that allocate anyway: `alloc` sizes the
//! bf16 copy of GEMM activations after the largest buffer, `upload_matrix` the dequantized weight
//! chunk, `alloc_kv_cache` the attention split partials. Growing scratch moves it, so it drops
//! every recorded graph (they would point at the old memory); during a capture it is refused.

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr};
use rill_backend::{BackendError, BackendResult, KvLayout};

use crate::packed::PackedLayout;

/// `f32` activations on the device.
pub struct CudaBuffer {
    pub(crate) data: CudaSlice<f32>,
    pub(crate) len: usize,
}

/// `u32` indices on the device.
pub struct CudaIndices {
    pub(crate) data: CudaSlice<u32>,
    pub(crate) len: usize,
}

/// A weight matrix in the packed layout of [`crate::packed`].
pub struct CudaMatrix {
    pub(crate) name: String,
    pub(crate) layout: PackedLayout,
    pub(crate) data: CudaSlice<u8>,
}

/// Per layer, K and V each `[num_blocks * block_size, kv_heads, head_dim]` of f16 or f32.
pub struct CudaKvCache {
    pub(crate) layout: KvLayout,
    pub(crate) k: Vec<CudaSlice<u8>>,
    pub(crate) v: Vec<CudaSlice<u8>>,
}

impl CudaBuffer {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl CudaIndices {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl CudaMatrix {
    pub fn rows(&self) -> usize {
        self.layout.rows
    }
    pub fn cols(&self) -> usize {
        self.layout.cols
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl CudaKvCache {
    pub fn layout(&self) -> KvLayout {
        self.layout
    }
}

/// The device address of a slice (event tracking is off, so this records nothing).
pub(crate) fn addr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    s.device_ptr(stream).0
}

/// Allocates `len` (at least one) elements; CUDA rejects empty allocations on some drivers.
pub(crate) fn alloc<T: DeviceRepr>(stream: &std::sync::Arc<CudaStream>, len: usize, what: &str) -> BackendResult<CudaSlice<T>> {
    // SAFETY: the memory is written before it is read (buffers) or only ever written by kernels
    // first (scratch); callers zero what must start zeroed.
    unsafe { stream.alloc::<T>(len.max(1)) }.map_err(|e| oom(len * std::mem::size_of::<T>(), what, e))
}

pub(crate) fn alloc_zeros<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &std::sync::Arc<CudaStream>,
    len: usize,
    what: &str,
) -> BackendResult<CudaSlice<T>> {
    stream.alloc_zeros::<T>(len.max(1)).map_err(|e| oom(len * std::mem::size_of::<T>(), what, e))
}

fn oom(bytes: usize, what: &str, e: cudarc::driver::DriverError) -> BackendError {
    if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        BackendError::OutOfMemory { bytes, what: what.to_string() }
    } else {
        BackendError::Device(format!("allocating {bytes} bytes for {what}: {e}"))
    }
}

/// Split partials of decode attention: rows of (token, head, split).
pub const PARTIAL_ROWS: usize = 32 * 1024;
/// Elements of one dequantized weight chunk for the cuBLAS path (64 MiB of bf16).
pub const WEIGHT_CHUNK_ELEMS: usize = 32 << 20;

/// Weight rows dequantized per cuBLAS call: all of them when they fit the chunk, else a
/// multiple of 128 rows (whole tensor-core tiles).
pub fn gemm_chunk_rows(l: &PackedLayout) -> usize {
    let per = (WEIGHT_CHUNK_ELEMS / l.cols_padded().max(1)).max(1);
    if per >= l.rows {
        l.rows
    } else if per >= 128 {
        per / 128 * 128
    } else {
        per
    }
}

/// Scratch shared by the kernel ops; see the module docs for when each part grows.
#[derive(Default)]
pub(crate) struct Scratch {
    /// bf16 copy of GEMM activations, as long as the largest `Buffer`.
    pub act_bf16: Option<CudaSlice<u16>>,
    /// One dequantized weight chunk, `[chunk rows, cols_padded]` bf16.
    pub w_bf16: Option<CudaSlice<u16>>,
    /// Attention split partials: `[PARTIAL_ROWS, head_dim]` acc and `[PARTIAL_ROWS, 2]` (max, sum).
    pub part_acc: Option<CudaSlice<f32>>,
    pub part_ml: Option<CudaSlice<f32>>,
    /// Head size the partials were sized for (rows of `part_acc` are this long).
    pub part_head_dim: usize,
}

/// Grows `slot` to at least `need` elements; `Ok(true)` when it moved.
pub(crate) fn ensure<T: DeviceRepr>(
    stream: &std::sync::Arc<CudaStream>,
    slot: &mut Option<CudaSlice<T>>,
    need: usize,
    what: &str,
) -> BackendResult<bool> {
    if slot.as_ref().is_some_and(|s| s.len() >= need) {
        return Ok(false);
    }
    // Free the old one first so peak memory is the new size only.
    *slot = None;
    *slot = Some(alloc::<T>(stream, need, what)?);
    Ok(true)
}

pub(crate) fn check_len(op: &'static str, what: &str, have: usize, need: usize) -> BackendResult<()> {
    if have < need {
        return Err(BackendError::Shape { op, detail: format!("{what} holds {have} elements, needs {need}") });
    }
    Ok(())
}

/// Sizes a kernel argument must fit in (`int32_t` in the kernels).
pub(crate) fn to_i32(op: &'static str, what: &str, v: usize) -> BackendResult<i32> {
    i32::try_from(v).map_err(|_| BackendError::Shape { op, detail: format!("{what} = {v} exceeds the kernels' 32-bit sizes") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_backend::DType;

    #[test]
    fn gemm_chunks_are_whole_tiles_and_bounded() {
        let small = PackedLayout::new(DType::Q4_0, 4096, 4096).unwrap();
        assert_eq!(gemm_chunk_rows(&small), 4096);
        let head = PackedLayout::new(DType::Q8_0, 128_256, 4096).unwrap();
        let c = gemm_chunk_rows(&head);
        assert_eq!(c % 128, 0);
        assert!(c * head.cols_padded() <= WEIGHT_CHUNK_ELEMS && c >= 4096);
        let wide = PackedLayout::new(DType::F16, 10, 40_000_000).unwrap();
        assert_eq!(gemm_chunk_rows(&wide), 1);
    }
}

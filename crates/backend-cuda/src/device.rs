//! Finding a GPU without crashing when there is none, and the context every op runs in.
//!
//! cudarc loads libcuda and libcublas with dlopen on first use and *panics* when they are
//! missing, so [`probe`] checks for both libraries first and runs every driver call under
//! `catch_unwind` as a second guard: a machine without a GPU gets an `Err` that says what is
//! missing. Everything runs on one non-blocking stream (graph capture needs one that is not the
//! legacy default stream) with cudarc's per-buffer event tracking off: with a single stream it
//! only adds event records, and events recorded outside a capture cannot be waited on inside it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{result, CudaContext, CudaSlice, CudaStream};

use crate::module::Kernels;

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CudaDeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_memory_bytes: usize,
    pub multiprocessors: usize,
}

/// cuBLAS's workspace, set explicitly so its kernels never allocate (which would break capture).
/// 32 MiB is NVIDIA's recommendation for Hopper.
const CUBLAS_WORKSPACE_BYTES: usize = 32 << 20;

/// Runs `f`, turning a panic inside cudarc into an error message.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(format!("{what}: {msg}"))
        }
    }
}

/// Describes CUDA device `ordinal`. Never panics: `Err` says what is missing (the driver
/// library, any device, this ordinal, cuBLAS).
pub fn probe(ordinal: usize) -> Result<CudaDeviceInfo, String> {
    // SAFETY: only tries to dlopen the driver library under its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("no CUDA driver: libcuda.so (the NVIDIA driver library) could not be loaded; \
                    this machine has no NVIDIA driver, or its folder is not on LD_LIBRARY_PATH"
            .into());
    }
    guarded("probing the CUDA driver", || {
        result::init().map_err(|e| format!("the CUDA driver failed to initialize: {e}"))?;
        let count = result::device::get_count().map_err(|e| format!("counting CUDA devices: {e}"))?;
        if count <= 0 {
            return Err("no CUDA device: the driver reports none".into());
        }
        if ordinal >= count as usize {
            return Err(format!("CUDA device {ordinal} does not exist: the driver reports {count} device(s)"));
        }
        // SAFETY: only tries to dlopen cuBLAS.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err("cuBLAS not found: libcublas.so.13 could not be loaded; install the CUDA 13 \
                        cuBLAS library (e.g. pip install nvidia-cublas) and put its lib folder on LD_LIBRARY_PATH"
                .into());
        }
        let dev = result::device::get(ordinal as i32).map_err(|e| format!("CUDA device {ordinal}: {e}"))?;
        let attr = |a: CUdevice_attribute| {
            // SAFETY: `dev` is a valid device handle from the driver.
            unsafe { result::device::get_attribute(dev, a) }.map_err(|e| format!("CUDA device {ordinal} attribute {a:?}: {e}"))
        };
        let major = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        let sms = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        // SAFETY: as above.
        let total = unsafe { result::device::total_mem(dev) }.map_err(|e| format!("CUDA device {ordinal} memory: {e}"))?;
        let name = result::device::get_name(dev).map_err(|e| format!("CUDA device {ordinal} name: {e}"))?;
        Ok(CudaDeviceInfo {
            ordinal,
            name,
            compute_capability: (major, minor),
            total_memory_bytes: total,
            multiprocessors: sms.max(0) as usize,
        })
    })
}

/// The context, its one stream, cuBLAS and the loaded kernels.
pub(crate) struct Device {
    pub info: CudaDeviceInfo,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub kernels: Kernels,
    _blas_workspace: CudaSlice<u8>,
}

impl Device {
    pub fn open(info: CudaDeviceInfo) -> Result<Device, String> {
        guarded("opening the CUDA device", || {
            let e = |what: &str| {
                let what = what.to_string();
                move |err: cudarc::driver::DriverError| format!("{what}: {err}")
            };
            let ctx = CudaContext::new(info.ordinal).map_err(e("creating a CUDA context"))?;
            // SAFETY: before any buffer exists; all work is on the one stream below, so there
            // is no cross-stream use for the events to order.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(e("creating a CUDA stream"))?;
            let kernels = Kernels::load(&ctx, info.compute_capability)?;
            let blas = CudaBlas::new(stream.clone()).map_err(|err| format!("creating a cuBLAS handle: {err:?}"))?;
            // SAFETY: allocation of plain bytes that cuBLAS alone uses.
            let workspace = unsafe { stream.alloc::<u8>(CUBLAS_WORKSPACE_BYTES) }.map_err(e("allocating the cuBLAS workspace"))?;
            let ptr = crate::memory::addr(&workspace, &stream);
            ctx.bind_to_thread().map_err(e("binding the CUDA context"))?;
            // SAFETY: the handle is valid and the workspace outlives it (both live in `Device`,
            // the handle is dropped first as it is declared first).
            unsafe { cudarc::cublas::sys::cublasSetWorkspace_v2(*blas.handle(), ptr as *mut std::ffi::c_void, CUBLAS_WORKSPACE_BYTES) }
                .result()
                .map_err(|err| format!("setting the cuBLAS workspace: {err:?}"))?;
            warm_up_cublas(&ctx, &stream, &blas)?;
            Ok(Device { info, ctx, stream, blas, kernels, _blas_workspace: workspace })
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // The fields drop after this: cuBLAS's handle and the modules need the context current
        // on whichever thread drops the backend (cudarc panics if destroying the handle fails).
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
    }
}

/// One tiny f32 and one bf16 GEMM, so cuBLAS finishes its lazy initialization now and never
/// inside a graph capture.
fn warm_up_cublas(ctx: &Arc<CudaContext>, stream: &Arc<CudaStream>, blas: &CudaBlas) -> Result<(), String> {
    use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
    const N: i32 = 16;
    let e = |err: cudarc::driver::DriverError| format!("cuBLAS warm-up: {err}");
    let f = stream.alloc_zeros::<f32>((N * N) as usize * 3).map_err(e)?;
    let h = stream.alloc_zeros::<u16>((N * N) as usize * 2).map_err(e)?;
    let (fp, hp) = (crate::memory::addr(&f, stream), crate::memory::addr(&h, stream));
    let (alpha, beta) = (1.0f32, 0.0f32);
    let (t, n) = (cublasOperation_t::CUBLAS_OP_T, cublasOperation_t::CUBLAS_OP_N);
    let c = fp + 2 * (N * N) as u64 * 4;
    ctx.bind_to_thread().map_err(e)?;
    // SAFETY: all pointers are live allocations of at least N x N elements.
    unsafe {
        cudarc::cublas::result::sgemm(*blas.handle(), t, n, N, N, N, &alpha, fp as *const f32, N, (fp + (N * N) as u64 * 4) as *const f32, N, &beta, c as *mut f32, N)
            .map_err(|err| format!("cuBLAS warm-up (f32): {err:?}"))?;
        cudarc::cublas::result::gemm_ex(
            *blas.handle(), t, n, N, N, N,
            &alpha as *const f32 as *const _, hp as *const _, cudaDataType::CUDA_R_16BF, N,
            (hp + (N * N) as u64 * 2) as *const _, cudaDataType::CUDA_R_16BF, N,
            &beta as *const f32 as *const _, c as *mut _, cudaDataType::CUDA_R_32F, N,
            cublasComputeType_t::CUBLAS_COMPUTE_32F, cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
        .map_err(|err| format!("cuBLAS warm-up (bf16): {err:?}"))?;
    }
    stream.synchronize().map_err(e)
}

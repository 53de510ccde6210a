//! The portable `Simd`: fixed 8-wide arrays, for any CPU.

use half::f16;

use super::{expf_ggml_scalar, expf_glibc, ggml_dot_row, Simd};

/// Fixed 8-wide arrays; the compiler vectorizes what it can for the baseline target.
#[derive(Clone, Copy)]
pub struct Portable;

impl Simd for Portable {
    const LANES: usize = 8;
    const NATIVE_F16: bool = false;
    type V = [f32; 8];
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable elements.
        unsafe { (p as *const [f32; 8]).read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable elements.
        let h = unsafe { (p as *const [f16; 8]).read_unaligned() };
        h.map(f16::to_f32)
    }
    #[inline(always)]
    unsafe fn convert_f16(src: &[f16], dst: &mut [f32]) {
        // `half` picks F16C (or NEON) at run time for whole slices.
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable elements.
        unsafe { (p as *mut [f32; 8]).write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn div(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] / b[i])
    }
    #[inline(always)]
    unsafe fn max(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i].max(b[i]))
    }
    #[inline(always)]
    unsafe fn reduce_max(v: [f32; 8]) -> f32 {
        v.into_iter().fold(f32::NEG_INFINITY, f32::max)
    }
    #[inline(always)]
    unsafe fn reduce_add(v: [f32; 8]) -> f32 {
        super::tree8(&v)
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        // Fused, as on every other ISA (a libm call on x86 without FMA: this path is a fallback).
        std::array::from_fn(|i| a[i].mul_add(b[i], c[i]))
    }
    #[inline(always)]
    unsafe fn round_f16(v: [f32; 8]) -> [f32; 8] {
        v.map(|x| f16::from_f32(x).to_f32())
    }
    #[inline(always)]
    unsafe fn expf_ggml(x: [f32; 8]) -> [f32; 8] {
        x.map(expf_ggml_scalar)
    }
    #[inline(always)]
    unsafe fn expf_glibc(x: [f32; 8]) -> [f32; 8] {
        x.map(expf_glibc)
    }
    #[inline(always)]
    unsafe fn ggml_dot16(q: *const f32, rows: *const f32, stride: usize, steps: usize, out: *mut f32) {
        // SAFETY: the caller guarantees 16 rows of `64 · steps` readable elements, `stride`
        // apart, `64 · steps` of `q` and 16 writable outputs.
        unsafe {
            let q = std::slice::from_raw_parts(q, 64 * steps);
            for r in 0..16 {
                let k = std::slice::from_raw_parts(rows.add(r * stride), 64 * steps);
                *out.add(r) = ggml_dot_row(q, k, steps);
            }
        }
    }
}

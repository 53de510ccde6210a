//! Just enough of a vector abstraction for the kernels in this crate. Every method is
//! `unsafe` (the CPU must support the ISA; pointers must cover `LANES` elements) and
//! `#[inline(always)]`, so generic kernels compile to the ISA of the `#[target_feature]`
//! function they are instantiated in. Used by attention and the elementwise kernels.

use half::f16;

pub trait Simd: Copy {
    const LANES: usize;
    /// `load_f16` is one hardware conversion (else prefer `convert_f16` on whole rows).
    const NATIVE_F16: bool;
    type V: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn load_f16(p: *const f16) -> Self::V;
    /// `dst = src` as f32 (equal lengths).
    #[inline(always)]
    unsafe fn convert_f16(src: &[f16], dst: &mut [f32]) {
        let full = src.len() / Self::LANES * Self::LANES;
        // SAFETY: `i + LANES <= full <= len` elements are read and written.
        unsafe {
            let mut i = 0;
            while i < full {
                Self::store(dst.as_mut_ptr().add(i), Self::load_f16(src.as_ptr().add(i)));
                i += Self::LANES;
            }
        }
        for (d, s) in dst[full..].iter_mut().zip(&src[full..]) {
            *d = s.to_f32();
        }
    }
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn hsum(v: Self::V) -> f32;
    /// Lane `r` of the result is the sum of the lanes of `v[r]`, for `r < LANES` (the rest of
    /// `v` is ignored).
    unsafe fn transpose_sum(v: &[Self::V; 16]) -> Self::V;
    /// `e^x`, relative error a few ulp; inputs below -87.3 give about 1e-38 rather than 0,
    /// inputs above 88.3 are clamped.
    unsafe fn exp(x: Self::V) -> Self::V;
}

// Cephes-style expf: x = n·ln2 + r, |r| <= ln2/2, e^r by a degree-6 polynomial.
pub const EXP_LO: f32 = -87.336_55;
pub const EXP_HI: f32 = 88.376_26;
pub const LOG2E: f32 = std::f32::consts::LOG2_E;
pub const LN2_HI: f32 = 0.693_359_4;
pub const LN2_LO: f32 = -2.121_944_4e-4;
pub const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

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
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        // Not `mul_add`: without hardware FMA that is a slow libm call.
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn hsum(v: [f32; 8]) -> f32 {
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }
    #[inline(always)]
    unsafe fn transpose_sum(v: &[[f32; 8]; 16]) -> [f32; 8] {
        // SAFETY: no requirement.
        std::array::from_fn(|r| unsafe { Self::hsum(v[r]) })
    }
    #[inline(always)]
    unsafe fn exp(x: [f32; 8]) -> [f32; 8] {
        x.map(|x| x.clamp(EXP_LO, EXP_HI).exp())
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// AVX-512F: 16 lanes.
    #[derive(Clone, Copy)]
    pub struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        const NATIVE_F16: bool = true;
        type V = __m512;
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load_f16(p: *const f16) -> __m512 {
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn div(a: __m512, b: __m512) -> __m512 {
            _mm512_div_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn hsum(v: __m512) -> f32 {
            unsafe {
                let lo = _mm512_castps512_ps256(v);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
                Avx2::hsum(_mm256_add_ps(lo, hi))
            }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn transpose_sum(v: &[__m512; 16]) -> __m512 {
            // Pairs of rows: per 128-bit block, 2 partial sums of each row.
            let s: [__m512; 8] = std::array::from_fn(|i| {
                let (a, b) = (v[2 * i], v[2 * i + 1]);
                _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
            });
            // Quads: per 128-bit block k, one partial sum of each of 4 rows.
            let t: [__m512; 4] = std::array::from_fn(|i| {
                let (a, b) = (s[2 * i], s[2 * i + 1]);
                _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(a, b), _mm512_shuffle_ps::<0b11_10_11_10>(a, b))
            });
            // Sum across 128-bit blocks: block m of the result holds rows 4m..4m+4.
            let u01 = _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(t[0], t[1]), _mm512_shuffle_f32x4::<0b11_01_11_01>(t[0], t[1]));
            let u23 = _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(t[2], t[3]), _mm512_shuffle_f32x4::<0b11_01_11_01>(t[2], t[3]));
            _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(u01, u23), _mm512_shuffle_f32x4::<0b11_01_11_01>(u01, u23))
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn exp(x: __m512) -> __m512 {
            let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(EXP_LO)), _mm512_set1_ps(EXP_HI));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)));
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
            let mut p = _mm512_set1_ps(P[0]);
            for c in &P[1..] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
            }
            let y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
            let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
            _mm512_mul_ps(y, _mm512_castsi512_ps(e))
        }
    }

    /// AVX2 + FMA + F16C: 8 lanes.
    #[derive(Clone, Copy)]
    pub struct Avx2;

    impl Simd for Avx2 {
        const LANES: usize = 8;
        const NATIVE_F16: bool = true;
        type V = __m256;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load_f16(p: *const f16) -> __m256 {
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            _mm256_div_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn transpose_sum(v: &[__m256; 16]) -> __m256 {
            let s: [__m256; 4] = std::array::from_fn(|i| {
                let (a, b) = (v[2 * i], v[2 * i + 1]);
                _mm256_add_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b))
            });
            let t: [__m256; 2] = std::array::from_fn(|i| {
                let (a, b) = (s[2 * i], s[2 * i + 1]);
                _mm256_add_ps(_mm256_shuffle_ps::<0b01_00_01_00>(a, b), _mm256_shuffle_ps::<0b11_10_11_10>(a, b))
            });
            _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(t[0], t[1]), _mm256_permute2f128_ps::<0x31>(t[0], t[1]))
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn exp(x: __m256) -> __m256 {
            let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)));
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
            let mut p = _mm256_set1_ps(P[0]);
            for c in &P[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
            }
            let y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
            let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
            _mm256_mul_ps(y, _mm256_castsi256_ps(e))
        }
    }
}

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
    /// Each lane rounded to the nearest f16 (ties to even) and back.
    unsafe fn round_f16(v: Self::V) -> Self::V;
    /// ggml's `ggml_v_expf` (its AVX-512 formula, which llama.cpp runs on the CPUs rill
    /// compares against), bit for bit on every ISA: `2^n · p(b)` with `n = round(x·log2 e)`,
    /// `b = x − n·ln 2` and a degree-5 polynomial; 0 below about -103.9, inf above about 88.7.
    unsafe fn expf_ggml(x: Self::V) -> Self::V;
    /// [`expf_glibc`] on every lane.
    unsafe fn expf_glibc(x: Self::V) -> Self::V;
    /// ggml's `ggml_vec_dot_f16` (AVX-512 build) for 16 rows at once: `out[r] = Σ q·rows[r]`
    /// over `64 · steps` elements, with its exact order of operations: per 64 elements, four
    /// 16-lane accumulators `fma(q, k, acc)`; then `acc₀+acc₂`, `acc₁+acc₃`, their sum, and
    /// `_mm512_reduce_add_ps`'s tree (halves, quarters, then `(l₀+l₂) + (l₁+l₃)`). `rows` are
    /// `stride` apart; `q` and rows hold f16 values (so the products are exact).
    unsafe fn ggml_dot16(q: *const f32, rows: *const f32, stride: usize, steps: usize, out: *mut f32);
}

/// glibc's `expf` (the `__expf_fma` variant x86-64 glibc runs on CPUs with FMA, as in 2.36;
/// llama.cpp's flash attention calls it per position), bit for bit: `x·32/ln 2 = k + r` in f64,
/// `2^(k/32)` from a 32-entry table, a cubic in `r`, rounded to f32 once. Arguments beyond about
/// ±88 take glibc's special cases (inf, 0, and 2^-149 just above its underflow threshold).
#[inline(always)]
pub fn expf_glibc(x: f32) -> f32 {
    let bits = x.to_bits();
    if (bits >> 20) & 0x7ff > 0x42a {
        if let Some(special) = expf_glibc_special(x) {
            return special;
        }
    }
    let xd = x as f64;
    let z = EXPF_INV_LN2_N.mul_add(xd, EXPF_SHIFT);
    let ki = z.to_bits();
    let kd = z - EXPF_SHIFT;
    let r = EXPF_INV_LN2_N.mul_add(xd, -kd);
    let s = f64::from_bits(EXPF_TAB[(ki & 31) as usize].wrapping_add(ki << 47));
    let p = EXPF_C[0].mul_add(r, EXPF_C[1]);
    let y = r.mul_add(EXPF_C[2], 1.0);
    (p.mul_add(r * r, y) * s) as f32
}

/// Overwrites `out[i]` (a vector path's `expf(xs[i])`) where glibc takes its special path.
#[inline(always)]
fn patch_expf_specials(out: &mut [f32], xs: &[f32]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        if let Some(special) = expf_glibc_special(x) {
            *o = special;
        }
    }
}

/// glibc's `expf` for `|x|` past about 80: `None` where its main path applies after all.
#[inline(always)]
fn expf_glibc_special(x: f32) -> Option<f32> {
    if x == f32::NEG_INFINITY {
        Some(0.0)
    } else if x.is_nan() || x == f32::INFINITY {
        Some(x + x)
    } else if x > EXPF_OVERFLOW {
        Some(f32::INFINITY)
    } else if x < EXPF_UNDERFLOW {
        Some(0.0)
    } else if x < EXPF_MAY_UNDERFLOW {
        Some(f32::from_bits(1))
    } else {
        None
    }
}

/// `32/ln 2`, `0x1.8p52` and the cubic's coefficients of glibc's `__exp2f_data`.
const EXPF_INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652B_82FE);
const EXPF_SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
const EXPF_C: [f64; 3] = [f64::from_bits(0x3EBC_6AF8_4B91_2394), f64::from_bits(0x3F2E_BFCE_50FA_C4F3), f64::from_bits(0x3F96_2E42_FF0C_52D6)];
/// `log(0x1p128)`, `log(0x1p-150)`, `log(0x1p-149)` as glibc rounds them.
const EXPF_OVERFLOW: f32 = f32::from_bits(0x42B1_7217);
const EXPF_UNDERFLOW: f32 = f32::from_bits(0xC2CF_F1B4);
const EXPF_MAY_UNDERFLOW: f32 = f32::from_bits(0xC2CE_8ECF);
/// `bits(2^(i/32)) − (i << 47)`.
const EXPF_TAB: [u64; 32] = [
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
];

/// ggml's `ggml_v_expf` on one lane (see [`Simd::expf_ggml`]); `fma` is `mul_add`.
#[inline(always)]
pub fn expf_ggml_scalar(x: f32) -> f32 {
    let r = f32::from_bits(0x4B40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3FB8_AA3B), r); // log2(e) = 0x1.715476p+0
    let n = z - r;
    let b = (-n).mul_add(f32::from_bits(0x35BF_BE8E), (-n).mul_add(f32::from_bits(0x3F31_7200), x)); // 0x1.7f7d1cp-20, 0x1.62e4p-1
    let u = b * b;
    let j = (EXP_C[0].mul_add(b, EXP_C[1]).mul_add(u, EXP_C[2].mul_add(b, EXP_C[3]))).mul_add(u, EXP_C[4].mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    scale_pow2(j, n as i32)
}

/// `j · 2^n` rounded once, as `vscalefps` does, for `|n| <= 192` and `j` in [0.5, 2].
#[inline(always)]
pub fn scale_pow2(j: f32, n: i32) -> f32 {
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    if (-126..=127).contains(&n) {
        j * pow2(n)
    } else {
        // Two steps, the first exact: j · 2^(n/2) stays a normal number.
        j * pow2(n / 2) * pow2(n - n / 2)
    }
}

/// ggml's `ggml_v_expf` polynomial coefficients: 0x1.0e4020p-7, 0x1.573e2ep-5, 0x1.555e66p-3,
/// 0x1.fffdb6p-2, 0x1.ffffecp-1.
pub const EXP_C: [f32; 5] = [
    f32::from_bits(0x3C07_2010),
    f32::from_bits(0x3D2B_9F17),
    f32::from_bits(0x3E2A_AF33),
    f32::from_bits(0x3EFF_FEDB),
    f32::from_bits(0x3F7F_FFF6),
];

/// ggml's `hsum_float_8` tree: `(a₀+a₄ + a₂+a₆) + (a₁+a₅ + a₃+a₇)`.
#[inline(always)]
pub fn tree8(a: &[f32; 8]) -> f32 {
    let t: [f32; 4] = std::array::from_fn(|k| a[k + 4] + a[k]);
    (t[2] + t[0]) + (t[3] + t[1])
}

/// [`Simd::ggml_dot16`] for one row, lane by lane.
#[inline(always)]
pub fn ggml_dot_row(q: &[f32], k: &[f32], steps: usize) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    for st in 0..steps {
        for (j, a) in acc.iter_mut().enumerate() {
            for (l, a) in a.iter_mut().enumerate() {
                let e = 64 * st + 16 * j + l;
                *a = if st == 0 { q[e] * k[e] } else { q[e].mul_add(k[e], *a) };
            }
        }
    }
    let x0: [f32; 16] = std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
    tree8(&std::array::from_fn(|l| x0[l + 8] + x0[l]))
}

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
        unsafe fn round_f16(v: __m512) -> __m512 {
            _mm512_cvtph_ps(_mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v))
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn expf_ggml(x: __m512) -> __m512 {
            // ggml's `ggml_v_expf` for AVX-512, instruction for instruction.
            let r = _mm512_set1_ps(f32::from_bits(0x4B40_0000));
            let z = _mm512_fmadd_ps(x, _mm512_set1_ps(f32::from_bits(0x3FB8_AA3B)), r);
            let n = _mm512_sub_ps(z, r);
            let b = _mm512_fnmadd_ps(n, _mm512_set1_ps(f32::from_bits(0x35BF_BE8E)), _mm512_fnmadd_ps(n, _mm512_set1_ps(f32::from_bits(0x3F31_7200)), x));
            let d = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
            let u = _mm512_mul_ps(b, b);
            // Macros, not closures: a closure is compiled without the caller's target features.
            macro_rules! c {
                ($i:expr) => {
                    _mm512_set1_ps(EXP_C[$i])
                };
            }
            let j = _mm512_fmadd_ps(
                _mm512_fmadd_ps(_mm512_fmadd_ps(c!(0), b, c!(1)), u, _mm512_fmadd_ps(c!(2), b, c!(3))),
                u,
                _mm512_fmadd_ps(c!(4), b, _mm512_set1_ps(1.0)),
            );
            let res = _mm512_scalef_ps(j, n);
            if d == 0 {
                return res;
            }
            let alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps()), _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
            _mm512_mask_blend_ps(d, res, alt)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn expf_glibc(x: __m512) -> __m512 {
            // SAFETY: the table holds 32 entries; AVX-512F is enabled.
            unsafe {
                let tab = EXPF_TAB.as_ptr().cast::<__m512i>();
                let t = [_mm512_loadu_si512(tab.cast()), _mm512_loadu_si512(tab.add(1).cast()), _mm512_loadu_si512(tab.add(2).cast()), _mm512_loadu_si512(tab.add(3).cast())];
                let (inv, shift) = (_mm512_set1_pd(EXPF_INV_LN2_N), _mm512_set1_pd(EXPF_SHIFT));
                let mut y = [_mm256_setzero_ps(); 2];
                for (h, y) in y.iter_mut().enumerate() {
                    let xh = if h == 0 { _mm512_castps512_ps256(x) } else { _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))) };
                    let xd = _mm512_cvtps_pd(xh);
                    let z = _mm512_fmadd_pd(inv, xd, shift);
                    let ki = _mm512_castpd_si512(z);
                    let r = _mm512_fmsub_pd(inv, xd, _mm512_sub_pd(z, shift));
                    let lo = _mm512_permutex2var_epi64(t[0], ki, t[1]);
                    let hi = _mm512_permutex2var_epi64(t[2], ki, t[3]);
                    let e = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
                    let s = _mm512_castsi512_pd(_mm512_add_epi64(e, _mm512_slli_epi64::<47>(ki)));
                    let p = _mm512_fmadd_pd(_mm512_set1_pd(EXPF_C[0]), r, _mm512_set1_pd(EXPF_C[1]));
                    let q = _mm512_fmadd_pd(r, _mm512_set1_pd(EXPF_C[2]), _mm512_set1_pd(1.0));
                    *y = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_fmadd_pd(p, _mm512_mul_pd(r, r), q), s));
                }
                let y = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castpd256_pd512(_mm256_castps_pd(y[0])), _mm256_castps_pd(y[1])));
                // glibc's special cases (all past |x| = 88).
                let big = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(_mm512_abs_ps(x), _mm512_set1_ps(88.0));
                if big == 0 {
                    return y;
                }
                let mut out = [0f32; 16];
                let mut xs = [0f32; 16];
                _mm512_storeu_ps(out.as_mut_ptr(), y);
                _mm512_storeu_ps(xs.as_mut_ptr(), x);
                patch_expf_specials(&mut out, &xs);
                _mm512_loadu_ps(out.as_ptr())
            }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn ggml_dot16(q: *const f32, rows: *const f32, stride: usize, steps: usize, out: *mut f32) {
            // SAFETY: the trait's contract.
            unsafe {
                let mut h = [_mm256_setzero_ps(); 16];
                for (r, h) in h.iter_mut().enumerate() {
                    let k = rows.add(r * stride);
                    let mut acc = [_mm512_setzero_ps(); 4];
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_mul_ps(_mm512_loadu_ps(q.add(16 * j)), _mm512_loadu_ps(k.add(16 * j)));
                    }
                    for st in 1..steps {
                        for (j, a) in acc.iter_mut().enumerate() {
                            let e = 64 * st + 16 * j;
                            *a = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(e)), _mm512_loadu_ps(k.add(e)), *a);
                        }
                    }
                    let x0 = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
                    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x0)));
                    *h = _mm256_add_ps(hi, _mm512_castps512_ps256(x0));
                }
                _mm256_storeu_ps(out, tree8_rows(&h[..8]));
                _mm256_storeu_ps(out.add(8), tree8_rows(&h[8..]));
            }
        }
    }

    /// [`super::tree8`] of 8 rows at once: lane `r` of the result is `tree8(h[r])`, with the
    /// same additions (transposed with shuffles).
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn tree8_rows(h: &[__m256]) -> __m256 {
        // Macros, not closures: a closure is compiled without the caller's target features.
        // t = h[4..8] + h[0..4]: two rows per vector.
        macro_rules! t {
            ($a:expr, $b:expr) => {
                _mm256_add_ps(_mm256_permute2f128_ps::<0x31>($a, $b), _mm256_permute2f128_ps::<0x20>($a, $b))
            };
        }
        let (t01, t23, t45, t67) = (t!(h[0], h[1]), t!(h[2], h[3]), t!(h[4], h[5]), t!(h[6], h[7]));
        // u = (t₂+t₀, t₃+t₁): per 128-bit half, rows (0, 2) / (1, 3).
        macro_rules! u {
            ($a:expr, $b:expr) => {
                _mm256_add_ps(_mm256_shuffle_ps::<0b11_10_11_10>($a, $b), _mm256_shuffle_ps::<0b01_00_01_00>($a, $b))
            };
        }
        let (u0123, u4567) = (u!(t01, t23), u!(t45, t67));
        // s = u₀ + u₁: rows [0, 2, 4, 6 | 1, 3, 5, 7].
        let s = _mm256_add_ps(_mm256_shuffle_ps::<0b10_00_10_00>(u0123, u4567), _mm256_shuffle_ps::<0b11_01_11_01>(u0123, u4567));
        _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
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
        unsafe fn round_f16(v: __m256) -> __m256 {
            _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn expf_ggml(x: __m256) -> __m256 {
            // The AVX-512 formula; `vscalefps` as two exact-then-rounded multiplies.
            let r = _mm256_set1_ps(f32::from_bits(0x4B40_0000));
            let z = _mm256_fmadd_ps(x, _mm256_set1_ps(f32::from_bits(0x3FB8_AA3B)), r);
            let n = _mm256_sub_ps(z, r);
            let b = _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x35BF_BE8E)), _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x3F31_7200)), x));
            let u = _mm256_mul_ps(b, b);
            macro_rules! c {
                ($i:expr) => {
                    _mm256_set1_ps(EXP_C[$i])
                };
            }
            let j = _mm256_fmadd_ps(
                _mm256_fmadd_ps(_mm256_fmadd_ps(c!(0), b, c!(1)), u, _mm256_fmadd_ps(c!(2), b, c!(3))),
                u,
                _mm256_fmadd_ps(c!(4), b, _mm256_set1_ps(1.0)),
            );
            let ni = _mm256_cvtps_epi32(n);
            let n1 = _mm256_srai_epi32::<1>(ni);
            let n2 = _mm256_sub_epi32(ni, n1);
            let one = _mm256_set1_epi32(127);
            let (p1, p2) = (_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, one)), _mm256_slli_epi32::<23>(_mm256_add_epi32(n2, one)));
            let res = _mm256_mul_ps(_mm256_mul_ps(j, _mm256_castsi256_ps(p1)), _mm256_castsi256_ps(p2));
            let big = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_andnot_ps(_mm256_set1_ps(-0.0), n), _mm256_set1_ps(192.0));
            if _mm256_movemask_ps(big) == 0 {
                return res;
            }
            let alt = _mm256_blendv_ps(_mm256_set1_ps(f32::INFINITY), _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps()));
            _mm256_blendv_ps(res, alt, big)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn expf_glibc(x: __m256) -> __m256 {
            // SAFETY: the gather indices are below 32, the table's length.
            unsafe {
                let (inv, shift) = (_mm256_set1_pd(EXPF_INV_LN2_N), _mm256_set1_pd(EXPF_SHIFT));
                let mut y = [_mm_setzero_ps(); 2];
                for (h, y) in y.iter_mut().enumerate() {
                    let xh = if h == 0 { _mm256_castps256_ps128(x) } else { _mm256_extractf128_ps::<1>(x) };
                    let xd = _mm256_cvtps_pd(xh);
                    let z = _mm256_fmadd_pd(inv, xd, shift);
                    let ki = _mm256_castpd_si256(z);
                    let r = _mm256_fmsub_pd(inv, xd, _mm256_sub_pd(z, shift));
                    let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
                    let e = _mm256_i64gather_epi64::<8>(EXPF_TAB.as_ptr().cast(), idx);
                    let s = _mm256_castsi256_pd(_mm256_add_epi64(e, _mm256_slli_epi64::<47>(ki)));
                    let p = _mm256_fmadd_pd(_mm256_set1_pd(EXPF_C[0]), r, _mm256_set1_pd(EXPF_C[1]));
                    let q = _mm256_fmadd_pd(r, _mm256_set1_pd(EXPF_C[2]), _mm256_set1_pd(1.0));
                    *y = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_fmadd_pd(p, _mm256_mul_pd(r, r), q), s));
                }
                let y = _mm256_set_m128(y[1], y[0]);
                let big = _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_andnot_ps(_mm256_set1_ps(-0.0), x), _mm256_set1_ps(88.0));
                if _mm256_movemask_ps(big) == 0 {
                    return y;
                }
                let mut out = [0f32; 8];
                let mut xs = [0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), y);
                _mm256_storeu_ps(xs.as_mut_ptr(), x);
                patch_expf_specials(&mut out, &xs);
                _mm256_loadu_ps(out.as_ptr())
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn ggml_dot16(q: *const f32, rows: *const f32, stride: usize, steps: usize, out: *mut f32) {
            // SAFETY: the trait's contract.
            unsafe {
                let mut h = [_mm256_setzero_ps(); 16];
                for (r, h) in h.iter_mut().enumerate() {
                    let k = rows.add(r * stride);
                    // ggml's four 16-lane accumulators, each as (low, high) halves.
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_mul_ps(_mm256_loadu_ps(q.add(8 * c)), _mm256_loadu_ps(k.add(8 * c)));
                    }
                    for st in 1..steps {
                        for (c, a) in acc.iter_mut().enumerate() {
                            let e = 64 * st + 8 * c;
                            *a = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(e)), _mm256_loadu_ps(k.add(e)), *a);
                        }
                    }
                    let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
                    let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
                    *h = _mm256_add_ps(hi, lo);
                }
                _mm256_storeu_ps(out, tree8_rows(&h[..8]));
                _mm256_storeu_ps(out.add(8), tree8_rows(&h[8..]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::SimdIsa;

    /// Runs `f` with the `Simd` of every ISA this CPU has.
    fn each_isa(mut f: impl FnMut(&str, &dyn Fn(&[f32]) -> Vec<f32>, &dyn Fn(&[f32], &[f32], usize) -> Vec<f32>)) {
        fn expf<S: Simd>(x: &[f32]) -> Vec<f32> {
            let mut out = vec![0f32; x.len()];
            for (i, c) in x.chunks(S::LANES).enumerate() {
                let mut buf = [0f32; 16];
                buf[..c.len()].copy_from_slice(c);
                // SAFETY: callers check the ISA; `buf` holds 16 >= LANES elements.
                unsafe { S::store(buf.as_mut_ptr(), S::expf_ggml(S::load(buf.as_ptr()))) };
                out[i * S::LANES..i * S::LANES + c.len()].copy_from_slice(&buf[..c.len()]);
            }
            out
        }
        fn dot16<S: Simd>(q: &[f32], rows: &[f32], steps: usize) -> Vec<f32> {
            let mut out = vec![0f32; 16];
            // SAFETY: callers check the ISA; 16 rows of 64·steps and the query are there.
            unsafe { S::ggml_dot16(q.as_ptr(), rows.as_ptr(), 64 * steps, steps, out.as_mut_ptr()) };
            out
        }
        f("portable", &|x| expf::<Portable>(x), &|q, r, s| dot16::<Portable>(q, r, s));
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn expf2(x: &[f32]) -> Vec<f32> {
                expf::<Avx2>(x)
            }
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn dot2(q: &[f32], r: &[f32], s: usize) -> Vec<f32> {
                dot16::<Avx2>(q, r, s)
            }
            #[target_feature(enable = "avx512f")]
            unsafe fn expf512(x: &[f32]) -> Vec<f32> {
                expf::<Avx512>(x)
            }
            #[target_feature(enable = "avx512f")]
            unsafe fn dot512(q: &[f32], r: &[f32], s: usize) -> Vec<f32> {
                dot16::<Avx512>(q, r, s)
            }
            if SimdIsa::available().contains(&SimdIsa::Avx2) {
                // SAFETY: supported, checked just above.
                f("avx2", &|x| unsafe { expf2(x) }, &|q, r, s| unsafe { dot2(q, r, s) });
            }
            if SimdIsa::available().contains(&SimdIsa::Avx512) {
                // SAFETY: supported, checked just above.
                f("avx512", &|x| unsafe { expf512(x) }, &|q, r, s| unsafe { dot512(q, r, s) });
            }
        }
    }

    #[test]
    fn expf_ggml_is_the_same_on_every_isa_and_close_to_expf() {
        let mut x: Vec<f32> = (-2100..=900).map(|i| i as f32 * 0.1 + 0.013).collect();
        x.extend([0.0, -0.0, 1e-8, -1e-8, 88.7, 88.8, -103.0, -104.0, -120.0, -1e30, 1e30, f32::INFINITY, f32::NEG_INFINITY]);
        let want: Vec<f32> = x.iter().map(|&v| expf_ggml_scalar(v)).collect();
        for (i, &v) in x.iter().enumerate() {
            let e = v.exp();
            if e.is_normal() && e < 1e38 {
                assert!((want[i] - e).abs() <= 4e-7 * e, "{v}: {} vs {e}", want[i]);
            }
        }
        assert_eq!((want[x.len() - 2], want[x.len() - 1]), (f32::INFINITY, 0.0));
        each_isa(|name, expf, _| {
            let got = expf(&x);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{name}: expf({}) {g} vs {w}", x[i]);
            }
        });
    }

    /// The clone against glibc's own `expf` (what `f32::exp` calls on GNU/Linux), and every
    /// ISA's vector version against the scalar one.
    #[test]
    fn expf_glibc_matches_glibc_and_every_isa() {
        let mut x: Vec<f32> = (0..2_000_000).map(|i| -110.0 + 200.0 * (i as f32 / 2_000_000.0)).collect();
        // Dense near the thresholds and around 0, and the special values.
        for c in [-103.972_08f32, -103.278_92, 88.722_83, -87.336_55, 1.0, -1e-6] {
            let b = c.to_bits();
            x.extend((0..2000u32).map(|i| f32::from_bits(b - 1000 + i)));
        }
        x.extend([f32::NEG_INFINITY, f32::INFINITY, -0.0, 1e-30, -1e-30, f32::MIN_POSITIVE]);
        let want: Vec<f32> = x.iter().map(|&v| expf_glibc(v)).collect();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        for (i, &v) in x.iter().enumerate() {
            assert_eq!(want[i].to_bits(), v.exp().to_bits(), "expf({v:e})");
        }
        each_isa_glibc(|name, f| {
            let got = f(&x);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{name}: expf({:e})", x[i]);
            }
        });
    }

    /// Runs `f` with [`Simd::expf_glibc`] of every ISA this CPU has.
    fn each_isa_glibc(mut f: impl FnMut(&str, &dyn Fn(&[f32]) -> Vec<f32>)) {
        fn run<S: Simd>(x: &[f32]) -> Vec<f32> {
            let mut out = vec![0f32; x.len()];
            for (i, c) in x.chunks(S::LANES).enumerate() {
                let mut buf = [0f32; 16];
                buf[..c.len()].copy_from_slice(c);
                // SAFETY: callers check the ISA; `buf` holds 16 >= LANES elements.
                unsafe { S::store(buf.as_mut_ptr(), S::expf_glibc(S::load(buf.as_ptr()))) };
                out[i * S::LANES..i * S::LANES + c.len()].copy_from_slice(&buf[..c.len()]);
            }
            out
        }
        f("portable", &|x| run::<Portable>(x));
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn run2(x: &[f32]) -> Vec<f32> {
                run::<Avx2>(x)
            }
            #[target_feature(enable = "avx512f")]
            unsafe fn run512(x: &[f32]) -> Vec<f32> {
                run::<Avx512>(x)
            }
            if SimdIsa::available().contains(&SimdIsa::Avx2) {
                // SAFETY: supported, checked just above.
                f("avx2", &|x| unsafe { run2(x) });
            }
            if SimdIsa::available().contains(&SimdIsa::Avx512) {
                // SAFETY: supported, checked just above.
                f("avx512", &|x| unsafe { run512(x) });
            }
        }
    }

    #[test]
    fn ggml_dot16_is_the_same_on_every_isa() {
        let f16_value = |i: usize| f16::from_f32(((i * 7919 % 2003) as f32 - 1001.0) * 0.0031).to_f32();
        for steps in [1, 2, 4] {
            let n = 64 * steps;
            let q: Vec<f32> = (0..n).map(|i| f16_value(i * 13 + 5)).collect();
            let rows: Vec<f32> = (0..16 * n).map(f16_value).collect();
            let want: Vec<f32> = (0..16).map(|r| ggml_dot_row(&q, &rows[r * n..(r + 1) * n], steps)).collect();
            each_isa(|name, _, dot| {
                let got = dot(&q, &rows, steps);
                assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{name} steps {steps}");
            });
        }
    }
}

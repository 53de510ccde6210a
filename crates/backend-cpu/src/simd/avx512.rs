//! The AVX-512F `Simd`.

use std::arch::x86_64::*;

use half::f16;

use super::avx2::tree8_rows;
use super::*;

/// AVX-512F: 16 lanes.
#[derive(Clone, Copy)]
pub struct Avx512;

impl Simd for Avx512 {
    const LANES: usize = 16;
    const NATIVE_F16: bool = true;
    type V = __m512;
    one_intrinsic_ops!("avx512f", __m512, splat: _mm512_set1_ps, load: _mm512_loadu_ps, store: _mm512_storeu_ps, add: _mm512_add_ps, sub: _mm512_sub_ps, mul: _mm512_mul_ps, div: _mm512_div_ps, fma: _mm512_fmadd_ps);
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load_f16(p: *const f16) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        _mm512_max_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce_max(v: __m512) -> f32 {
        _mm512_reduce_max_ps(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn reduce_add(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose16(rows: *const f32, stride: usize, cols: usize, out: *mut f32) {
        // SAFETY: the trait's contract: 16 rows of `cols` (a multiple of 16) elements.
        unsafe {
            for c0 in (0..cols).step_by(16) {
                // One quad of rows at a time (few registers live): u[4i + k] holds, in each
                // 128-bit lane L, column 4L + k of rows 4i..4i+4. Loops, not closures: a closure
                // is compiled without the caller's target features.
                let mut u = [_mm512_setzero_ps(); 16];
                for i in 0..4 {
                    let r0 = _mm512_loadu_ps(rows.add(4 * i * stride + c0));
                    let r1 = _mm512_loadu_ps(rows.add((4 * i + 1) * stride + c0));
                    let r2 = _mm512_loadu_ps(rows.add((4 * i + 2) * stride + c0));
                    let r3 = _mm512_loadu_ps(rows.add((4 * i + 3) * stride + c0));
                    let (t0, t1) = (_mm512_castps_pd(_mm512_unpacklo_ps(r0, r1)), _mm512_castps_pd(_mm512_unpackhi_ps(r0, r1)));
                    let (t2, t3) = (_mm512_castps_pd(_mm512_unpacklo_ps(r2, r3)), _mm512_castps_pd(_mm512_unpackhi_ps(r2, r3)));
                    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
                    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
                    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
                    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
                }
                // Then the 128-bit lanes of the four row quads gathered per column.
                for k in 0..4 {
                    let (v0, v1) = (_mm512_shuffle_f32x4::<0x88>(u[k], u[4 + k]), _mm512_shuffle_f32x4::<0xdd>(u[k], u[4 + k]));
                    let (w0, w1) = (_mm512_shuffle_f32x4::<0x88>(u[8 + k], u[12 + k]), _mm512_shuffle_f32x4::<0xdd>(u[8 + k], u[12 + k]));
                    let o = out.add((c0 + k) * 16);
                    _mm512_storeu_ps(o, _mm512_shuffle_f32x4::<0x88>(v0, w0));
                    _mm512_storeu_ps(o.add(4 * 16), _mm512_shuffle_f32x4::<0x88>(v1, w1));
                    _mm512_storeu_ps(o.add(8 * 16), _mm512_shuffle_f32x4::<0xdd>(v0, w0));
                    _mm512_storeu_ps(o.add(12 * 16), _mm512_shuffle_f32x4::<0xdd>(v1, w1));
                }
            }
        }
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
            patch_expf_specials::<Avx512>(y, x)
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
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn ggml_dot16x2(q: [*const f32; 2], rows: *const f32, stride: usize, steps: usize, out: [*mut f32; 2]) {
        // SAFETY: the trait's contract.
        unsafe {
            match steps {
                1 => dot16x2::<1>(q, rows, stride, out),
                2 => dot16x2::<2>(q, rows, stride, out),
                4 => dot16x2::<4>(q, rows, stride, out),
                _ => {
                    Self::ggml_dot16(q[0], rows, stride, steps, out[0]);
                    Self::ggml_dot16(q[1], rows, stride, steps, out[1]);
                }
            }
        }
    }
}

/// [`Simd::ggml_dot16x2`] over `64 · STEPS` elements: each row is loaded once for both queries
/// (at 512 bits a load per product was what bounded [`Simd::ggml_dot16`]), and with the step
/// count known the query rows can stay in registers.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dot16x2<const STEPS: usize>(q: [*const f32; 2], rows: *const f32, stride: usize, out: [*mut f32; 2]) {
    // SAFETY: the trait's contract.
    unsafe {
        let mut h = [[_mm256_setzero_ps(); 16]; 2];
        for r in 0..16 {
            let k = rows.add(r * stride);
            let mut acc = [[_mm512_setzero_ps(); 4]; 2];
            for j in 0..4 {
                let kv = _mm512_loadu_ps(k.add(16 * j));
                for (a, q) in acc.iter_mut().zip(q) {
                    a[j] = _mm512_mul_ps(_mm512_loadu_ps(q.add(16 * j)), kv);
                }
            }
            for st in 1..STEPS {
                for j in 0..4 {
                    let e = 64 * st + 16 * j;
                    let kv = _mm512_loadu_ps(k.add(e));
                    for (a, q) in acc.iter_mut().zip(q) {
                        a[j] = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(e)), kv, a[j]);
                    }
                }
            }
            for (h, a) in h.iter_mut().zip(&acc) {
                let x0 = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x0)));
                h[r] = _mm256_add_ps(hi, _mm512_castps512_ps256(x0));
            }
        }
        for (h, out) in h.iter().zip(out) {
            _mm256_storeu_ps(out, tree8_rows(&h[..8]));
            _mm256_storeu_ps(out.add(8), tree8_rows(&h[8..]));
        }
    }
}

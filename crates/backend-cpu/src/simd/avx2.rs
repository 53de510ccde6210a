//! The AVX2 + FMA + F16C `Simd`, and the 8-row `hsum` both x86 versions share.

use std::arch::x86_64::*;

use half::f16;

use super::*;

/// AVX2 + FMA + F16C: 8 lanes.
#[derive(Clone, Copy)]
pub struct Avx2;

impl Simd for Avx2 {
    const LANES: usize = 8;
    const NATIVE_F16: bool = true;
    type V = __m256;
    one_intrinsic_ops!("avx2,fma,f16c", __m256, splat: _mm256_set1_ps, load: _mm256_loadu_ps, store: _mm256_storeu_ps, add: _mm256_add_ps, sub: _mm256_sub_ps, mul: _mm256_mul_ps, div: _mm256_div_ps, fma: _mm256_fmadd_ps);
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce_max(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce_add(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn transpose16(rows: *const f32, stride: usize, cols: usize, out: *mut f32) {
        // SAFETY: the trait's contract: 16 rows of `cols` (a multiple of 8) elements.
        unsafe {
            for c0 in (0..cols).step_by(8) {
                for r0 in [0, 8] {
                    // Loops, not closures: a closure is compiled without the caller's target
                    // features.
                    let mut r = [_mm256_setzero_ps(); 8];
                    for (i, r) in r.iter_mut().enumerate() {
                        *r = _mm256_loadu_ps(rows.add((r0 + i) * stride + c0));
                    }
                    let mut t = [_mm256_setzero_ps(); 8];
                    for i in 0..4 {
                        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
                    }
                    // u[4q + k]: column k (and k + 4 in the high half) of rows 4q..4q+4.
                    let mut u = [_mm256_setzero_ps(); 8];
                    for q in 0..2 {
                        let (a, b, c, d) = (t[4 * q], t[4 * q + 2], t[4 * q + 1], t[4 * q + 3]);
                        u[4 * q] = _mm256_shuffle_ps::<0x44>(a, b);
                        u[4 * q + 1] = _mm256_shuffle_ps::<0xEE>(a, b);
                        u[4 * q + 2] = _mm256_shuffle_ps::<0x44>(c, d);
                        u[4 * q + 3] = _mm256_shuffle_ps::<0xEE>(c, d);
                    }
                    for k in 0..4 {
                        let o = out.add((c0 + k) * 16 + r0);
                        _mm256_storeu_ps(o, _mm256_permute2f128_ps::<0x20>(u[k], u[4 + k]));
                        _mm256_storeu_ps(o.add(4 * 16), _mm256_permute2f128_ps::<0x31>(u[k], u[4 + k]));
                    }
                }
            }
        }
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
            patch_expf_specials::<Avx2>(y, x)
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

/// [`super::tree8`] of 8 rows at once: lane `r` of the result is `tree8(h[r])`, with the
/// same additions (transposed with shuffles).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn tree8_rows(h: &[__m256]) -> __m256 {
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

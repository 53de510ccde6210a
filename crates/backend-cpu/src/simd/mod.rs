//! Just enough of a vector abstraction for the kernels in this crate. Every method is
//! `unsafe` (the CPU must support the ISA; pointers must cover `LANES` elements) and
//! `#[inline(always)]`, so generic kernels compile to the ISA of the `#[target_feature]`
//! function they are instantiated in. Used by attention and the elementwise kernels.
//!
//! One file per ISA (`portable.rs`, `avx2.rs`, `avx512.rs`); here the trait and the scalar
//! functions every implementation must reproduce bit for bit (the twins the tests compare with).

use half::f16;

/// The `Simd` methods that are one intrinsic each, for the x86 vector type `$v` compiled with
/// `#[target_feature(enable = $features)]`: the AVX2 and AVX-512 versions differ only in the
/// intrinsics' names.
#[cfg(target_arch = "x86_64")]
macro_rules! one_intrinsic_ops {
    ($features:literal, $v:ty, splat: $splat:ident, load: $load:ident, store: $store:ident, add: $add:ident, sub: $sub:ident, mul: $mul:ident, div: $div:ident, fma: $fma:ident) => {
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn splat(x: f32) -> $v {
            $splat(x)
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn load(p: *const f32) -> $v {
            // SAFETY: the caller guarantees `LANES` readable elements.
            unsafe { $load(p) }
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn store(p: *mut f32, v: $v) {
            // SAFETY: the caller guarantees `LANES` writable elements.
            unsafe { $store(p, v) }
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn add(a: $v, b: $v) -> $v {
            $add(a, b)
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn sub(a: $v, b: $v) -> $v {
            $sub(a, b)
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn mul(a: $v, b: $v) -> $v {
            $mul(a, b)
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn div(a: $v, b: $v) -> $v {
            $div(a, b)
        }
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn fma(a: $v, b: $v, c: $v) -> $v {
            $fma(a, b, c)
        }
    };
}

mod portable;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

pub use portable::Portable;
#[cfg(target_arch = "x86_64")]
pub use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub use avx512::Avx512;

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
    /// Lane-wise maximum.
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// The largest lane.
    unsafe fn reduce_max(v: Self::V) -> f32;
    /// The sum of the lanes, always added in the same order.
    unsafe fn reduce_add(v: Self::V) -> f32;
    /// Transposes 16 rows of `cols` elements (`stride` apart; `cols` a multiple of `LANES`)
    /// into `out[c * 16 + r]`: a tile of keys laid out so that one vector holds one element of
    /// 16 keys.
    #[inline(always)]
    unsafe fn transpose16(rows: *const f32, stride: usize, cols: usize, out: *mut f32) {
        // SAFETY: the caller guarantees 16 rows of `cols` readable and `16 * cols` writable
        // elements.
        unsafe {
            for r in 0..16 {
                for c in 0..cols {
                    *out.add(c * 16 + r) = *rows.add(r * stride + c);
                }
            }
        }
    }
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
    /// [`Simd::ggml_dot16`] for two query rows against the same 16 rows (each result with the
    /// same bits): a kernel may load each row once for both.
    unsafe fn ggml_dot16x2(q: [*const f32; 2], rows: *const f32, stride: usize, steps: usize, out: [*mut f32; 2]) {
        // SAFETY: the trait's contract.
        unsafe {
            Self::ggml_dot16(q[0], rows, stride, steps, out[0]);
            Self::ggml_dot16(q[1], rows, stride, steps, out[1]);
        }
    }
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

/// `y`, a vector path's `expf(x)`, with glibc's special cases put in the lanes where it takes
/// them: the rare slow path (some `|x|` past 88), lane by lane.
///
/// # Safety
/// The CPU supports `S`.
#[inline(always)]
unsafe fn patch_expf_specials<S: Simd>(y: S::V, x: S::V) -> S::V {
    let (mut out, mut xs) = ([0f32; 16], [0f32; 16]);
    // SAFETY: both buffers hold 16 >= LANES elements.
    unsafe {
        S::store(out.as_mut_ptr(), y);
        S::store(xs.as_mut_ptr(), x);
    }
    for (o, &x) in out.iter_mut().zip(&xs).take(S::LANES) {
        if let Some(special) = expf_glibc_special(x) {
            *o = special;
        }
    }
    // SAFETY: as above.
    unsafe { S::load(out.as_ptr()) }
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

#[cfg(test)]
mod tests;

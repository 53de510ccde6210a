//! Every ISA's vector functions against the scalar twins, bit for bit.

use super::*;
use crate::isa::SimdIsa;

/// `S::expf_glibc` (`GLIBC`) or `S::expf_ggml` of every element, a vector at a time.
fn expf_lanes<S: Simd, const GLIBC: bool>(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, c) in x.chunks(S::LANES).enumerate() {
        let mut buf = [0f32; 16];
        buf[..c.len()].copy_from_slice(c);
        // SAFETY: callers check the ISA; `buf` holds 16 >= LANES elements.
        unsafe {
            let v = S::load(buf.as_ptr());
            S::store(buf.as_mut_ptr(), if GLIBC { S::expf_glibc(v) } else { S::expf_ggml(v) });
        }
        out[i * S::LANES..i * S::LANES + c.len()].copy_from_slice(&buf[..c.len()]);
    }
    out
}

/// Runs `f` with the `Simd` of every ISA this CPU has.
fn each_isa(mut f: impl FnMut(&str, &dyn Fn(&[f32]) -> Vec<f32>, &dyn Fn(&[f32], &[f32], usize) -> Vec<f32>)) {
    fn expf<S: Simd>(x: &[f32]) -> Vec<f32> {
        expf_lanes::<S, false>(x)
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
        expf_lanes::<S, true>(x)
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

/// `S::transpose16`, `reduce_add`, `reduce_max` and `max` on every ISA against plain loops.
#[test]
fn transpose_and_reductions_match_plain_loops() {
    fn check<S: Simd>(isa: &str) {
        let cols = 64;
        let stride = cols + 16;
        let rows: Vec<f32> = (0..16 * stride).map(|i| i as f32 * 0.5 - 300.0).collect();
        let mut out = vec![f32::NAN; 16 * cols];
        // SAFETY: callers check the ISA; 16 rows of `cols` (a multiple of every LANES) exist.
        unsafe { S::transpose16(rows.as_ptr(), stride, cols, out.as_mut_ptr()) };
        for r in 0..16 {
            for c in 0..cols {
                assert_eq!(out[c * 16 + r], rows[r * stride + c], "{isa}: row {r} column {c}");
            }
        }
        let x: Vec<f32> = (0..16).map(|i| ((i * 7) % 11) as f32 - 4.5).collect();
        let y: Vec<f32> = (0..16).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        // SAFETY: as above; 16 >= LANES elements.
        let (sum, top, both) = unsafe {
            let (a, b) = (S::load(x.as_ptr()), S::load(y.as_ptr()));
            let mut both = [0f32; 16];
            S::store(both.as_mut_ptr(), S::max(a, b));
            (S::reduce_add(a), S::reduce_max(a), both)
        };
        let lanes = &x[..S::LANES];
        assert_eq!(sum, lanes.iter().sum::<f32>(), "{isa}: sum (exact for these small integers and halves)");
        assert_eq!(top, lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), "{isa}: max");
        for i in 0..S::LANES {
            assert_eq!(both[i], x[i].max(y[i]), "{isa}: lane {i}");
        }
    }
    check::<Portable>("portable");
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2() {
            check::<Avx2>("avx2")
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512() {
            check::<Avx512>("avx512")
        }
        let isas = SimdIsa::available();
        if isas.contains(&SimdIsa::Avx2) {
            // SAFETY: the CPU has the features.
            unsafe { avx2() };
        }
        if isas.contains(&SimdIsa::Avx512) {
            // SAFETY: as above.
            unsafe { avx512() };
        }
    }
}

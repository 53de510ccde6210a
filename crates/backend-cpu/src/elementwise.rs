//! Row-wise and elementwise kernels: RMSNorm, bias, RoPE, SiLU·up.
//!
//! RMSNorm and SiLU·up have a scalar reference twin and SIMD versions (the `Simd` trait, the
//! `SimdIsa` attention uses). Bias and RoPE are plain loops: bias vectorizes on its own and
//! RoPE's cost is its `sin_cos` per position and pair.
//!
//! All of them compute ggml's CPU arithmetic bit for bit (llama.cpp is rill's reference): RMSNorm
//! sums squares in `f64`, SiLU uses ggml's vector `expf`, RoPE multiplies its angles up and fuses
//! the rotation's first products (see each function).

use rill_backend::{BackendError, BackendResult, RopeParams};

use crate::simd::{expf_ggml_scalar, Portable, Simd};
use crate::isa::SimdIsa;
use crate::{check_len, WorkerPool};

/// Most rotary pairs per head we keep on the stack (head_dim ≤ 512).
const MAX_ROPE_PAIRS: usize = 256;

/// Rows of RMSNorm per pool task (about 16K elements).
const RMS_TASK_ELEMS: usize = 16 * 1024;

pub fn rms_norm(pool: &WorkerPool, x: &[f32], weight: &[f32], eps: f32, rows: usize, dim: usize, out: &mut [f32]) -> BackendResult<()> {
    rms_norm_with(SimdIsa::selected(), pool, x, weight, eps, rows, dim, out)
}

/// `rms_norm` on a chosen implementation. Every row goes through the same code, so a row's result
/// does not depend on the batch around it.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_with(isa: SimdIsa, pool: &WorkerPool, x: &[f32], weight: &[f32], eps: f32, rows: usize, dim: usize, out: &mut [f32]) -> BackendResult<()> {
    check_len("rms_norm", "x", x.len(), rows * dim)?;
    check_len("rms_norm", "out", out.len(), rows * dim)?;
    check_len("rms_norm", "weight", weight.len(), dim)?;
    if rows == 0 || dim == 0 {
        return Ok(());
    }
    assert!(SimdIsa::available().contains(&isa), "{isa:?} is not supported on this CPU");
    let rows_per_task = (RMS_TASK_ELEMS / dim).max(1);
    let weight = &weight[..dim];
    pool.for_each_chunk_mut(&mut out[..rows * dim], rows_per_task * dim, &|task, o| {
        let first = task * rows_per_task;
        for (r, o) in o.chunks_exact_mut(dim).enumerate() {
            let xr = &x[(first + r) * dim..(first + r + 1) * dim];
            match isa {
                SimdIsa::Reference => rms_norm_row_reference(xr, weight, eps, o),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the ISA is supported (asserted above); the slices have equal lengths.
                SimdIsa::Avx512 => unsafe { x86::rms_norm_avx512(xr, weight, eps, o) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                SimdIsa::Avx2 => unsafe { x86::rms_norm_avx2(xr, weight, eps, o) },
                // SAFETY: the slices have equal lengths; no CPU feature needed.
                _ => unsafe { rms_norm_row::<Portable>(xr, weight, eps, o) },
            }
        }
    });
    Ok(())
}

/// ggml's `1/√(mean(x²) + eps)`: the squares (rounded to f32) summed one by one in `f64`
/// (`ggml_float`), the mean rounded to f32. A sequential sum, so every ISA gets the same bits.
#[inline(always)]
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum = x.iter().fold(0f64, |s, v| s + (v * v) as f64);
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// The oracle: `(x · scale) · w`, as ggml's RMS_NORM then MUL.
fn rms_norm_row_reference(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// # Safety
/// `S` is supported by the CPU; `x`, `weight` and `out` have the same length.
#[inline(always)]
unsafe fn rms_norm_row<S: Simd>(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let (n, l) = (x.len(), S::LANES);
    let full = n / l * l;
    let scale = rms_scale(x, eps);
    // SAFETY: every vector access is below `full <= n`.
    unsafe {
        let (xp, wp, op) = (x.as_ptr(), weight.as_ptr(), out.as_mut_ptr());
        let vs = S::splat(scale);
        let mut i = 0;
        while i < full {
            S::store(op.add(i), S::mul(S::mul(S::load(xp.add(i)), vs), S::load(wp.add(i))));
            i += l;
        }
        for j in full..n {
            out[j] = x[j] * scale * weight[j];
        }
    }
}

pub fn add_bias(x: &mut [f32], bias: &[f32], rows: usize, dim: usize) -> BackendResult<()> {
    check_len("add_bias", "x", x.len(), rows * dim)?;
    check_len("add_bias", "bias", bias.len(), dim)?;
    for row in x[..rows * dim].chunks_mut(dim) {
        row.iter_mut().zip(&bias[..dim]).for_each(|(a, b)| *a += b);
    }
    Ok(())
}

/// RoPE with ggml's arithmetic (`ggml_rope_cache_init`, `rotate_pairs`): the angles of
/// [`RopeParams::cos_sin`] (multiplied up in f32, divided by the pair's factor, scaled), and the
/// rotation with its first product fused, `x₀·cos − x₁·sin` as `fma(x₀, cos, −x₁·sin)` and
/// `x₀·sin + x₁·cos` as `fma(x₀, sin, x₁·cos)`.
pub fn rope(x: &mut [f32], positions: &[u32], rows: usize, heads: usize, head_dim: usize, rope: &RopeParams) -> BackendResult<()> {
    check_len("rope", "x", x.len(), rows * heads * head_dim)?;
    check_len("rope", "positions", positions.len(), rows)?;
    rope.check(head_dim).map_err(|detail| BackendError::Shape { op: "rope", detail })?;
    if rope.rot_dim / 2 > MAX_ROPE_PAIRS {
        return Err(BackendError::Shape { op: "rope", detail: format!("rot_dim {} over {}", rope.rot_dim, 2 * MAX_ROPE_PAIRS) });
    }
    let x = &mut x[..rows * heads * head_dim];
    #[cfg(target_arch = "x86_64")]
    if crate::isa::cpu().fma {
        // SAFETY: the CPU supports FMA, checked just above.
        unsafe { rope_rows_fma(x, positions, heads, head_dim, rope) };
        return Ok(());
    }
    rope_rows(x, positions, heads, head_dim, rope);
    Ok(())
}

/// [`rope_rows`] compiled with hardware FMA (else `mul_add` is a libm call).
///
/// # Safety
/// The CPU supports FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn rope_rows_fma(x: &mut [f32], positions: &[u32], heads: usize, head_dim: usize, rope: &RopeParams) {
    rope_rows(x, positions, heads, head_dim, rope)
}

/// The rows of [`rope`], its arguments checked.
#[inline(always)]
fn rope_rows(x: &mut [f32], positions: &[u32], heads: usize, head_dim: usize, rope: &RopeParams) {
    let pairs = rope.rot_dim / 2;
    for (row, &pos) in x.chunks_mut(heads * head_dim).zip(positions) {
        // The angles depend only on the position: compute them once for all heads.
        let mut cos = [0f32; MAX_ROPE_PAIRS];
        let mut sin = [0f32; MAX_ROPE_PAIRS];
        rope.cos_sin(pos, &mut cos, &mut sin);
        for head in row.chunks_mut(head_dim) {
            for i in 0..pairs {
                let (a, b) = if rope.neox { (i, i + pairs) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0.mul_add(cos[i], -(x1 * sin[i]));
                head[b] = x0.mul_add(sin[i], x1 * cos[i]);
            }
        }
    }
}

/// ggml's `scale`: `x *= factor`.
pub fn scale(x: &mut [f32], factor: f32, len: usize) -> BackendResult<()> {
    check_len("scale", "x", x.len(), len)?;
    x[..len].iter_mut().for_each(|v| *v *= factor);
    Ok(())
}

/// Gemma's final soft cap as llama.cpp builds it: `scale(1/c)`, `tanh`, `scale(c)`.
pub fn softcap(x: &mut [f32], cap: f32, len: usize) -> BackendResult<()> {
    check_len("softcap", "x", x.len(), len)?;
    let inv = 1.0 / cap;
    x[..len].iter_mut().for_each(|v| *v = (*v * inv).tanh() * cap);
    Ok(())
}

pub fn silu_mul(gate: &[f32], up: &[f32], len: usize, out: &mut [f32]) -> BackendResult<()> {
    silu_mul_with(SimdIsa::selected(), gate, up, len, out)
}

/// `silu_mul` on a chosen implementation: `out = gate / (1 + e^-gate) * up`.
pub fn silu_mul_with(isa: SimdIsa, gate: &[f32], up: &[f32], len: usize, out: &mut [f32]) -> BackendResult<()> {
    check_len("silu_mul", "gate", gate.len(), len)?;
    check_len("silu_mul", "up", up.len(), len)?;
    check_len("silu_mul", "out", out.len(), len)?;
    assert!(SimdIsa::available().contains(&isa), "{isa:?} is not supported on this CPU");
    let (gate, up, out) = (&gate[..len], &up[..len], &mut out[..len]);
    match isa {
        SimdIsa::Reference => silu_mul_reference(gate, up, out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the ISA is supported (asserted above); the slices have equal lengths.
        SimdIsa::Avx512 => unsafe { x86::silu_mul_avx512(gate, up, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdIsa::Avx2 => unsafe { x86::silu_mul_avx2(gate, up, out) },
        // SAFETY: the slices have equal lengths; no CPU feature needed.
        _ => unsafe { silu_mul_simd::<Portable>(gate, up, out) },
    }
    Ok(())
}

/// The oracle: ggml's SwiGLU, `x / (1 + e^−x) · g` with its vector `expf` ([`expf_ggml_scalar`]).
fn silu_mul_reference(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + expf_ggml_scalar(0.0 - g)) * u;
    }
}

/// # Safety
/// `S` is supported by the CPU; the slices have the same length.
#[inline(always)]
unsafe fn silu_mul_simd<S: Simd>(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let (n, l) = (gate.len(), S::LANES);
    let full = n / l * l;
    #[inline(always)]
    unsafe fn step<S: Simd>(g: *const f32, u: *const f32, o: *mut f32) {
        // SAFETY: the caller passes LANES readable/writable elements.
        unsafe {
            let g = S::load(g);
            let silu = S::div(g, S::add(S::splat(1.0), S::expf_ggml(S::sub(S::splat(0.0), g))));
            S::store(o, S::mul(silu, S::load(u)));
        }
    }
    let mut i = 0;
    while i < full {
        // SAFETY: `i + LANES <= full <= n`.
        unsafe { step::<S>(gate.as_ptr().add(i), up.as_ptr().add(i), out.as_mut_ptr().add(i)) };
        i += l;
    }
    // The tail through the same vector code (zero-padded), so an element's result never depends
    // on where the slice ends.
    if full < n {
        let (mut g, mut u, mut o) = ([0f32; 16], [0f32; 16], [0f32; 16]);
        g[..n - full].copy_from_slice(&gate[full..]);
        u[..n - full].copy_from_slice(&up[full..]);
        // SAFETY: the buffers hold 16 >= LANES elements.
        unsafe { step::<S>(g.as_ptr(), u.as_ptr(), o.as_mut_ptr()) };
        out[full..].copy_from_slice(&o[..n - full]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The generic row kernels instantiated with each x86 feature set enabled.
    use crate::simd::{Avx2, Avx512};

    /// # Safety
    /// The CPU supports AVX-512F; equal lengths.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rms_norm_avx512(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { super::rms_norm_row::<Avx512>(x, w, eps, out) }
    }
    /// # Safety
    /// The CPU supports AVX2 and FMA; equal lengths.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rms_norm_avx2(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { super::rms_norm_row::<Avx2>(x, w, eps, out) }
    }
    /// # Safety
    /// The CPU supports AVX-512F; equal lengths.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_mul_avx512(g: &[f32], u: &[f32], out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { super::silu_mul_simd::<Avx512>(g, u, out) }
    }
    /// # Safety
    /// The CPU supports AVX2 and FMA; equal lengths.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn silu_mul_avx2(g: &[f32], u: &[f32], out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { super::silu_mul_simd::<Avx2>(g, u, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_known_answer() {
        let x = [3.0, 4.0];
        let mut out = [0.0; 2];
        rms_norm(&WorkerPool::new(1).unwrap(), &x, &[1.0, 2.0], 0.0, 1, 2, &mut out).unwrap();
        let rms = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / rms).abs() < 1e-6 && (out[1] - 8.0 / rms).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        // base 1: every pair turns one radian per position.
        let rope = RopeParams::new(2, 1.0, false);
        let mut x = vec![1.0, 0.0, 1.0, 0.0];
        super::rope(&mut x, &[0, 1], 2, 1, 2, &rope).unwrap();
        assert_eq!(&x[..2], &[1.0, 0.0], "position 0 is the identity");
        assert!((x[2] - 1f32.cos()).abs() < 1e-6 && (x[3] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn neox_pairs_halves() {
        let rope = RopeParams { freq_factors: vec![1.0, f32::INFINITY], ..RopeParams::new(4, 1.0, true) };
        let mut x = vec![1.0, 5.0, 0.0, 7.0];
        super::rope(&mut x, &[1], 1, 1, 4, &rope).unwrap();
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!((x[1], x[3]), (5.0, 7.0), "an infinite factor leaves the pair alone");
    }

    /// SIMD vs reference: the same arithmetic (ggml's), so the same bits.
    fn close(got: &[f32], want: &[f32], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
        }
    }

    /// ggml's RMS_NORM: squares summed in f64, one at a time.
    #[test]
    fn rms_norm_sums_in_f64() {
        let x: Vec<f32> = (0..576).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37 + 1e-3 * i as f32).collect();
        let mut sum = 0f64;
        for v in &x {
            sum += (v * v) as f64;
        }
        let scale = 1.0f32 / ((sum / 576.0) as f32 + 1e-5).sqrt();
        let mut out = vec![0.0; 576];
        rms_norm(&WorkerPool::new(1).unwrap(), &x, &[1.0; 576], 1e-5, 1, 576, &mut out).unwrap();
        for (o, v) in out.iter().zip(&x) {
            assert_eq!(o.to_bits(), (v * scale).to_bits());
        }
    }

    /// ggml's angles for a plain frequency series: `p·r·r·…` multiplied up in f32, and the
    /// rotation `fma(x₀, cos, −x₁·sin)`, `fma(x₀, sin, x₁·cos)`.
    #[test]
    fn rope_multiplies_angles_up_as_ggml() {
        let (d, base) = (64usize, 100000f32);
        let rope = RopeParams::new(d, base, false);
        let x0: Vec<f32> = (0..d).map(|i| (i as f32 * 0.731).sin() * 3.0).collect();
        for pos in [0u32, 1, 7, 100, 4000] {
            let mut x = x0.clone();
            super::rope(&mut x, &[pos], 1, 1, d, &rope).unwrap();
            let r = base.powf(-2.0 / d as f32);
            let mut theta = pos as f32;
            for i in 0..d / 2 {
                let (s, c) = (theta.sin(), theta.cos());
                let (a, b) = (x0[2 * i], x0[2 * i + 1]);
                assert_eq!(x[2 * i].to_bits(), a.mul_add(c, -(b * s)).to_bits(), "pos {pos} pair {i}");
                assert_eq!(x[2 * i + 1].to_bits(), a.mul_add(s, b * c).to_bits(), "pos {pos} pair {i}");
                theta *= r;
            }
        }
    }

    /// Llama 3 / LongRoPE factors, linear scaling and LongRoPE's magnitude, in ggml's order:
    /// `θ / factor`, then `· freq_scale`, then cos and sin `· mscale`.
    #[test]
    fn rope_factors_and_scales_as_ggml() {
        let d = 8;
        let rope = RopeParams { freq_scale: 0.25, freq_factors: vec![1.0, 2.5, 7.0, 40.0], mscale: 1.19, ..RopeParams::new(d, 10_000.0, true) };
        let x0: Vec<f32> = (0..d).map(|i| 1.0 + i as f32).collect();
        let mut x = x0.clone();
        super::rope(&mut x, &[123], 1, 1, d, &rope).unwrap();
        let mut theta = 123f32;
        for i in 0..d / 2 {
            let angle = 0.25 * (theta / rope.freq_factors[i]);
            let (s, c) = (angle.sin() * 1.19, angle.cos() * 1.19);
            let (a, b) = (x0[i], x0[i + d / 2]);
            assert_eq!(x[i].to_bits(), a.mul_add(c, -(b * s)).to_bits(), "pair {i}");
            assert_eq!(x[i + d / 2].to_bits(), a.mul_add(s, b * c).to_bits(), "pair {i}");
            theta *= rope.theta_scale;
        }
    }

    #[test]
    fn simd_matches_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pool = WorkerPool::new(3).unwrap();
        for dim in [1, 7, 8, 16, 33, 64, 576, 1000] {
            let rows = 37;
            let x: Vec<f32> = (0..rows * dim).map(|_| rng.random_range(-4.0..4.0)).collect();
            let w: Vec<f32> = (0..dim).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mut want = vec![0.0; rows * dim];
            rms_norm_with(SimdIsa::Reference, &pool, &x, &w, 1e-5, rows, dim, &mut want).unwrap();
            let mut gate = x.clone();
            gate[0] = 100.0;
            gate[rows * dim - 1] = -100.0;
            let mut silu_want = vec![0.0; rows * dim];
            silu_mul_with(SimdIsa::Reference, &gate, &x, rows * dim, &mut silu_want).unwrap();
            for &isa in SimdIsa::available() {
                let mut got = vec![0.0; rows * dim];
                rms_norm_with(isa, &pool, &x, &w, 1e-5, rows, dim, &mut got).unwrap();
                close(&got, &want, &format!("rms_norm {isa:?} dim {dim}"));
                // One row alone gives the same bits as inside the batch.
                let mut alone = vec![0.0; dim];
                rms_norm_with(isa, &pool, &x[5 * dim..6 * dim], &w, 1e-5, 1, dim, &mut alone).unwrap();
                assert_eq!(alone, got[5 * dim..6 * dim], "rms_norm {isa:?} dim {dim} batch invariance");
                silu_mul_with(isa, &gate, &x, rows * dim, &mut got).unwrap();
                close(&got, &silu_want, &format!("silu_mul {isa:?} len {}", rows * dim));
                let mut part = vec![0.0; dim];
                silu_mul_with(isa, &gate[5 * dim..], &x[5 * dim..], dim, &mut part).unwrap();
                assert_eq!(part, got[5 * dim..6 * dim], "silu_mul {isa:?} dim {dim} batch invariance");
            }
        }
    }

    #[test]
    fn short_buffers_are_errors() {
        let mut out = [0.0; 1];
        assert!(silu_mul(&[1.0], &[1.0], 2, &mut out).is_err());
    }
}

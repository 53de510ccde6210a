//! ggml's scale searches for the low-bit k-quants (`make_qkx2_quants` for Q2_K, `make_q3_quants`
//! for Q3_K, from `ggml-quants.c`), transcribed operation for operation.
//!
//! They exist so that Q2_K and Q3_K rows quantized here are byte for byte what
//! `quantize_row_q{2,3}_K_ref` (and `llama-quantize` without an importance matrix) writes:
//! unlike the covering scheme of `kquants`, these search a few candidate scales and keep the one
//! with the least (weighted) error, and every float expression keeps ggml's evaluation order
//! (`libggml-base` is built without FMA, so nothing is fused; Rust never fuses either).

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is all zero.
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: adding 1.5·2²³ leaves the rounded integer (ties to even) in the low
/// mantissa bits. For `|v| > 2²²` (ggml only asserts against it) this gives the same garbage
/// as ggml, which the callers then clamp.
#[inline]
pub(super) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// `make_qkx2_quants`: codes `0..=nmax` into `l` for `x` (at most 32 values) with a min, trying
/// `nstep + 1` scales around `nmax / (max - min)` and keeping the least `weights`-weighted error
/// (absolute with `use_mad`, squared otherwise). Returns `(scale, -min)`.
#[allow(clippy::too_many_arguments)] // ggml's signature, kept so the transcription is checkable
pub(super) fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], l: &mut [u8], rmin: f32, rdelta: f32, nstep: i32, use_mad: bool) -> (f32, f32) {
    let n = x.len();
    debug_assert!(n <= 32 && weights.len() == n && l.len() == n);
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let error = |scale: f32, min: f32, codes: &[u8]| {
        let mut e = 0.0f32;
        for i in 0..n {
            let diff = scale * codes[i] as f32 + min - x[i];
            e += weights[i] * if use_mad { diff.abs() } else { diff * diff };
        }
        e
    };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    for i in 0..n {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
    }
    let mut best_error = error(scale, min, l);
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let cur_error = error(this_scale, this_min, &laux[..n]);
            if cur_error < best_error {
                l.copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `make_q3_quants` with `do_rmse`: symmetric codes `-nmax..nmax` for `x`, then up to five
/// passes moving single codes while that lowers the `x²`-weighted error; `l` gets the codes
/// plus `nmax` (so `0..2·nmax`) and the least-squares scale is returned.
pub(super) fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (c, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *c = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (c, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let old = *c as f32;
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *c as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *c = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for c in l.iter_mut() {
        *c += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!([0.5, 1.5, 2.5, -0.5, -1.5, 3.49, -3.51].map(nearest_int), [0, 2, 2, 0, -2, 3, -4]);
    }

    /// Four levels over `0..=3`: a ramp that hits them exactly keeps scale 1 and min 0.
    #[test]
    fn qkx2_finds_an_exact_grid() {
        let x: [f32; 16] = std::array::from_fn(|i| (i % 4) as f32);
        let w = x.map(f32::abs);
        let mut l = [0u8; 16];
        let (scale, min) = make_qkx2_quants(3, &x, &w, &mut l, -0.5, 0.1, 15, true);
        assert_eq!((scale, min), (1.0, 0.0));
        assert_eq!(l, std::array::from_fn(|i| (i % 4) as u8));
    }

    /// Levels `-4..=3` times 0.5: the codes are found exactly and so is the scale (its sign set
    /// by the largest magnitude, here -2, at code 0 after the offset).
    #[test]
    fn q3_finds_an_exact_grid() {
        let x: [f32; 16] = std::array::from_fn(|i| ((i % 8) as f32 - 4.0) * 0.5);
        let mut l = [0i8; 16];
        let scale = make_q3_quants(4, &x, &mut l);
        assert_eq!(scale, 0.5);
        assert_eq!(l, std::array::from_fn(|i| (i % 8) as i8));
    }
}

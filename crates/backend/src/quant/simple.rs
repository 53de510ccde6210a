//! The 32-weight formats: Q4_0, Q4_1, Q8_0 and Q8_1.
//!
//! Both directions mirror ggml's `dequantize_row_*` and `quantize_row_*_ref` operation for
//! operation (the same `f32` scale before it is rounded to `f16`, the same truncating casts), so
//! a model file quantized here matches one quantized by ggml's reference path. The only
//! departure is clamping the 4-bit codes to `0..=15` where ggml relies on the value already
//! being in range: that differs only where C would be undefined (infinite inverse scales).

use half::f16;

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

const HALF: usize = QK / 2;

/// `1/d`, or 0 for an all-zero block so every code comes out as the zero point.
pub(super) fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// C's `(int8_t)v` (truncation toward zero) followed by ggml's `MIN(15, ...)`.
fn nibble(v: f32) -> u8 {
    (v as i8).clamp(0, 15) as u8
}

impl QuantBlock for BlockQ4_0 {
    const DTYPE: DType = DType::Q4_0;
    const LEN: usize = QK;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = block_out(out);
        let d = self.d.to_f32();
        let (lo, hi) = out.split_at_mut(HALF);
        for ((&q, a), b) in self.qs.iter().zip(lo).zip(hi) {
            *a = ((q & 0x0F) as i32 - 8) as f32 * d;
            *b = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }

    /// `d = max / -8` with `max` the value of largest magnitude (first one on ties), so that
    /// value maps exactly onto code 0 and the opposite extreme clamps to code 15.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = block_in(x);
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = inverse(d);
        let mut qs = [0u8; HALF];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = nibble(x[j] * id + 8.5) | (nibble(x[j + HALF] * id + 8.5) << 4);
        }
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
}

impl QuantBlock for BlockQ4_1 {
    const DTYPE: DType = DType::Q4_1;
    const LEN: usize = QK;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = block_out(out);
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let (lo, hi) = out.split_at_mut(HALF);
        for ((&q, a), b) in self.qs.iter().zip(lo).zip(hi) {
            *a = (q & 0x0F) as f32 * d + m;
            *b = (q >> 4) as f32 * d + m;
        }
    }

    /// 15 equal steps from the block's min to its max.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = block_in(x);
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let mut qs = [0u8; HALF];
        for (j, q) in qs.iter_mut().enumerate() {
            let lo = nibble((x[j] - min) * id + 0.5);
            let hi = nibble((x[j + HALF] - min) * id + 0.5);
            *q = lo | (hi << 4);
        }
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs,
        }
    }
}

/// ggml's Q8 quantizer: `d = amax / 127`, codes `roundf(x / d)` (half away from zero, which
/// is what Rust's `round` does too). Returns the unrounded `d` that the codes were made with.
fn quantize_q8(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    (d, qs)
}

fn dequantize_q8(d: f16, qs: &[i8; QK], out: &mut [f32]) {
    let out: &mut [f32; QK] = block_out(out);
    let d = d.to_f32();
    for (y, &q) in out.iter_mut().zip(qs) {
        *y = q as f32 * d;
    }
}

impl QuantBlock for BlockQ8_0 {
    const DTYPE: DType = DType::Q8_0;
    const LEN: usize = QK;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_q8(self.d, &self.qs, out);
    }

    fn quantize(x: &[f32]) -> Self {
        let (d, qs) = quantize_q8(block_in(x));
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
}

impl QuantBlock for BlockQ8_1 {
    const DTYPE: DType = DType::Q8_1;
    const LEN: usize = QK;

    /// `s` only serves dot products against offset formats; the weights are `d * q` alone.
    fn dequantize(&self, out: &mut [f32]) {
        dequantize_q8(self.d, &self.qs, out);
    }

    fn quantize(x: &[f32]) -> Self {
        let (d, qs) = quantize_q8(block_in(x));
        let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
        BlockQ8_1 {
            d: f16::from_f32(d),
            s: f16::from_f32(sum as f32 * d),
            qs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{amax, assert_round_trip, f16_slack, min_max, stress_rows};
    use super::*;

    /// Q4_0 is off by at most one full step, `amax / 8`: ggml's `d = max / -8` puts `max` on
    /// code 0, and the opposite extreme (code 16) clamps to 15.
    const Q4_0_MAX_ERR_REL: f32 = 1.0 / 8.0;
    /// Q4_1 rounds to the nearest of 16 levels spanning the block: half a step of `range / 15`.
    const Q4_1_MAX_ERR_REL: f32 = 0.5 / 15.0;
    /// Q8_0 / Q8_1 round to the nearest of 255 levels: half a step of `amax / 127`.
    const Q8_MAX_ERR_REL: f32 = 0.5 / 127.0;

    fn block_bytes<B: QuantBlock>(b: &B) -> Vec<u8> {
        bytemuck::bytes_of(b).to_vec()
    }

    fn dequant<B: QuantBlock>(b: &B) -> [f32; QK] {
        let mut y = [0.0f32; QK];
        b.dequantize(&mut y);
        y
    }

    /// Element `j` in the low nibble of byte `j`, element `j + 16` in its high nibble.
    fn counting_nibbles() -> [u8; HALF] {
        std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4))
    }

    #[test]
    fn q4_1_known_block() {
        let b = BlockQ4_1 {
            d: f16::from_f32(0.5),
            m: f16::from_f32(-1.0),
            qs: counting_nibbles(),
        };
        let y = dequant(&b);
        for j in 0..HALF {
            assert_eq!(y[j], 0.5 * j as f32 - 1.0);
            assert_eq!(y[j + HALF], 0.5 * (15 - j) as f32 - 1.0);
        }
        assert_eq!((y[0], y[15], y[16], y[31]), (-1.0, 6.5, 6.5, -1.0));
        // And ggml's reference quantizer lands exactly back on that block.
        assert_eq!(block_bytes(&BlockQ4_1::quantize(&y)), block_bytes(&b));
    }

    #[test]
    fn q4_0_known_block() {
        let b = BlockQ4_0 {
            d: f16::from_f32(0.25),
            qs: counting_nibbles(),
        };
        let y = dequant(&b);
        assert_eq!(
            (y[0], y[8], y[15], y[16], y[31]),
            (-2.0, 0.0, 1.75, 1.75, -2.0)
        );
    }

    /// x = j - 16: `max` is -16 (element 0), so `d = 2` and code = trunc(j / 2 + 0.5), with
    /// element 31 (code 16) clamped to 15.
    #[test]
    fn q4_0_reference_quantizer() {
        let x: [f32; QK] = std::array::from_fn(|j| j as f32 - 16.0);
        let b = BlockQ4_0::quantize(&x);
        assert_eq!(b.d.to_f32(), 2.0);
        let code = |j: usize| (j as u8).div_ceil(2).min(15);
        let want: [u8; HALF] = std::array::from_fn(|j| code(j) | (code(j + HALF) << 4));
        assert_eq!(b.qs, want);
        assert_eq!(dequant(&b)[31], 14.0, "clamped one step short of 15");
    }

    /// x = j - 16: `d = 16 / 127`, so codes are round((j - 16) * 7.9375).
    #[test]
    fn q8_reference_quantizer() {
        let x: [f32; QK] = std::array::from_fn(|j| j as f32 - 16.0);
        let b = BlockQ8_0::quantize(&x);
        assert_eq!(b.d, f16::from_f32(16.0 / 127.0));
        assert_eq!(
            (b.qs[0], b.qs[16], b.qs[17], b.qs[20], b.qs[31]),
            (-127, 0, 8, 32, 119)
        );
        let b1 = BlockQ8_1::quantize(&x);
        assert_eq!((b1.d, b1.qs), (b.d, b.qs));
        let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
        assert_eq!(b1.s, f16::from_f32(sum as f32 * 16.0 / 127.0));
        assert_eq!(dequant(&b), dequant(&b1));
    }

    /// With `amax = 127`, `d = 1` and exact halves show `roundf`'s ties away from zero.
    #[test]
    fn q8_rounds_ties_away_from_zero() {
        let mut x = [0.0f32; QK];
        x[..5].copy_from_slice(&[127.0, 0.5, -0.5, 2.5, -2.5]);
        let b = BlockQ8_0::quantize(&x);
        assert_eq!(b.d.to_f32(), 1.0);
        assert_eq!(b.qs[..5], [127, 1, -1, 3, -3]);
    }

    #[test]
    fn q8_0_known_block() {
        let b = BlockQ8_0 {
            d: f16::from_f32(0.5),
            qs: std::array::from_fn(|j| j as i8 - 16),
        };
        let y = dequant(&b);
        assert_eq!((y[0], y[16], y[31]), (-8.0, 0.0, 7.5));
    }

    #[test]
    fn zero_block_stays_zero() {
        let x = [0.0f32; QK];
        assert_eq!(dequant(&BlockQ4_0::quantize(&x)), x);
        assert_eq!(dequant(&BlockQ4_1::quantize(&x)), x);
        assert_eq!(dequant(&BlockQ8_0::quantize(&x)), x);
        assert_eq!(dequant(&BlockQ8_1::quantize(&x)), x);
    }

    #[test]
    fn round_trips_within_tolerance() {
        for x in stress_rows(5, 8 * QK) {
            assert_round_trip(DType::Q4_0, &x, |b| {
                amax(b) * Q4_0_MAX_ERR_REL + f16_slack(b, 8.0)
            });
            assert_round_trip(DType::Q4_1, &x, |b| {
                let (lo, hi) = min_max(b);
                // Both d and m are f16: m's rounding counts once more.
                (hi - lo) * Q4_1_MAX_ERR_REL + f16_slack(b, 15.0) + f16_slack(b, 1.0)
            });
            for dtype in [DType::Q8_0, DType::Q8_1] {
                assert_round_trip(dtype, &x, |b| {
                    amax(b) * Q8_MAX_ERR_REL + f16_slack(b, 127.0)
                });
            }
        }
    }
}

//! The 5-bit 32-weight formats: Q5_0 and Q5_1, Q4_0 and Q4_1 with a fifth bit per weight kept
//! apart in a 32-bit `qh` (bit `j` for element `j`).
//!
//! As in `simple`, both directions mirror ggml's `dequantize_row_q5_*` and
//! `quantize_row_q5_*_ref` operation for operation (the `f32` scale before its rounding to `f16`,
//! the truncating casts). Codes are clamped to `0..=31`, which ggml does for Q5_0 and leaves to
//! the value being in range for Q5_1: they differ only where C would be undefined.

use half::f16;

use super::blocks::{BlockQ5_0, BlockQ5_1, QK};
use super::simple::inverse;
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

const HALF: usize = QK / 2;

/// The 32 five-bit codes of a block in element order: nibble `j` of `qs` (low nibbles first)
/// with bit `j` of `qh` above it.
pub fn five_bit_codes(qh: [u8; 4], qs: &[u8; HALF]) -> [u8; QK] {
    let h = u32::from_le_bytes(qh);
    std::array::from_fn(|e| {
        let low = if e < HALF {
            qs[e] & 0x0F
        } else {
            qs[e - HALF] >> 4
        };
        low | (((h >> e) & 1) as u8) << 4
    })
}

/// C's `(int8_t)v` (truncation toward zero), then ggml's `MIN(31, ...)`.
fn code(v: f32) -> u8 {
    (v as i8).clamp(0, 31) as u8
}

/// Codes back into ggml's split: low nibbles in `qs`, fifth bits in `qh`.
fn pack(codes: &[u8; QK]) -> ([u8; 4], [u8; HALF]) {
    let qs = std::array::from_fn(|j| (codes[j] & 0x0F) | (codes[j + HALF] & 0x0F) << 4);
    let qh = codes
        .iter()
        .enumerate()
        .fold(0u32, |h, (e, &c)| h | u32::from(c >> 4) << e);
    (qh.to_le_bytes(), qs)
}

impl QuantBlock for BlockQ5_0 {
    const DTYPE: DType = DType::Q5_0;
    const LEN: usize = QK;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = block_out(out);
        let d = self.d.to_f32();
        for (y, &q) in out.iter_mut().zip(&five_bit_codes(self.qh, &self.qs)) {
            *y = (q as i32 - 16) as f32 * d;
        }
    }

    /// `d = max / -16` with `max` the value of largest magnitude (first one on ties), so that
    /// value maps exactly onto code 0 and the opposite extreme clamps to code 31.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = block_in(x);
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = inverse(d);
        let (qh, qs) = pack(&std::array::from_fn(|j| code(x[j] * id + 16.5)));
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh,
            qs,
        }
    }
}

impl QuantBlock for BlockQ5_1 {
    const DTYPE: DType = DType::Q5_1;
    const LEN: usize = QK;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = block_out(out);
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for (y, &q) in out.iter_mut().zip(&five_bit_codes(self.qh, &self.qs)) {
            *y = q as f32 * d + m;
        }
    }

    /// 31 equal steps from the block's min to its max.
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
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let (qh, qs) = pack(&std::array::from_fn(|j| code((x[j] - min) * id + 0.5)));
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh,
            qs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{amax, assert_round_trip, f16_slack, min_max, stress_rows};
    use super::*;

    /// Q5_0 is off by at most one full step, `amax / 16`: ggml's `d = max / -16` puts `max` on
    /// code 0, and the opposite extreme (code 32) clamps to 31.
    const Q5_0_MAX_ERR_REL: f32 = 1.0 / 16.0;
    /// Q5_1 rounds to the nearest of 32 levels spanning the block: half a step of `range / 31`.
    const Q5_1_MAX_ERR_REL: f32 = 0.5 / 31.0;

    fn dequant<B: QuantBlock>(b: &B) -> [f32; QK] {
        let mut y = [0.0f32; QK];
        b.dequantize(&mut y);
        y
    }

    /// Codes 0..32 in element order: nibble `j & 15`, fifth bit set from element 16 on, so `qh`
    /// is `0xFFFF0000` and every byte of `qs` is `j | j << 4`.
    fn counting_block() -> ([u8; 4], [u8; HALF]) {
        (
            0xFFFF_0000u32.to_le_bytes(),
            std::array::from_fn(|j| j as u8 | (j as u8) << 4),
        )
    }

    #[test]
    fn codes_take_the_fifth_bit_of_their_element() {
        let (qh, qs) = counting_block();
        assert_eq!(five_bit_codes(qh, &qs), std::array::from_fn(|e| e as u8));
        // One bit at a time lands on one element only.
        for e in 0..QK {
            let codes = five_bit_codes((1u32 << e).to_le_bytes(), &[0; HALF]);
            assert_eq!(
                codes,
                std::array::from_fn(|i| if i == e { 16 } else { 0 }),
                "bit {e}"
            );
        }
        let codes: [u8; QK] = std::array::from_fn(|e| (e as u8 * 7) % 32);
        let (qh, qs) = pack(&codes);
        assert_eq!(five_bit_codes(qh, &qs), codes);
    }

    #[test]
    fn q5_0_known_block() {
        let (qh, qs) = counting_block();
        let b = BlockQ5_0 {
            d: f16::from_f32(0.25),
            qh,
            qs,
        };
        let y = dequant(&b);
        assert_eq!((y[0], y[15], y[16], y[31]), (-4.0, -0.25, 0.0, 3.75));
    }

    #[test]
    fn q5_1_known_block() {
        let (qh, qs) = counting_block();
        let b = BlockQ5_1 {
            d: f16::from_f32(0.5),
            m: f16::from_f32(-1.0),
            qh,
            qs,
        };
        let y = dequant(&b);
        assert_eq!(y, std::array::from_fn(|e| 0.5 * e as f32 - 1.0));
        // ggml's reference quantizer lands exactly back on that block.
        assert_eq!(
            bytemuck::bytes_of(&BlockQ5_1::quantize(&y)),
            bytemuck::bytes_of(&b)
        );
    }

    /// x = 2j - 32: `max` is -32 (element 0), so `d = 2` and code = trunc(j + 0.5) = j, with
    /// the ramp's far end one step short of the +32 that code 32 would take.
    #[test]
    fn q5_0_reference_quantizer() {
        let x: [f32; QK] = std::array::from_fn(|j| 2.0 * j as f32 - 32.0);
        let b = BlockQ5_0::quantize(&x);
        assert_eq!(b.d.to_f32(), 2.0);
        assert_eq!(
            five_bit_codes(b.qh, &b.qs),
            std::array::from_fn(|j| j as u8)
        );
        assert_eq!(dequant(&b), x);
        let codes = |y: &[f32; QK]| {
            let b = BlockQ5_0::quantize(y);
            five_bit_codes(b.qh, &b.qs)
        };
        let mut y = x;
        // +32 would be code 32: clamped to 31.
        y[5] = 32.0;
        // `(int8_t)(v + 16.5)` rounds ties up, not away from zero: -2.5 steps is code 14.
        y[7] = -5.0;
        assert_eq!((codes(&y)[5], codes(&y)[7]), (31, 14));
    }

    #[test]
    fn zero_block_stays_zero() {
        let x = [0.0f32; QK];
        assert_eq!(dequant(&BlockQ5_0::quantize(&x)), x);
        assert_eq!(dequant(&BlockQ5_1::quantize(&x)), x);
    }

    #[test]
    fn round_trips_within_tolerance() {
        for x in stress_rows(6, 8 * QK) {
            assert_round_trip(DType::Q5_0, &x, |b| {
                amax(b) * Q5_0_MAX_ERR_REL + f16_slack(b, 16.0)
            });
            assert_round_trip(DType::Q5_1, &x, |b| {
                let (lo, hi) = min_max(b);
                // Both d and m are f16: m's rounding counts once more.
                (hi - lo) * Q5_1_MAX_ERR_REL + f16_slack(b, 31.0) + f16_slack(b, 1.0)
            });
        }
    }
}

//! Q2_K: 256-weight super-blocks of sixteen 16-weight sub-blocks, `w = d·sc[j]·q − dmin·m[j]`
//! with 2-bit `q` and 4-bit `sc`/`m` (2.625 bits per weight).
//!
//! Both directions are ggml's (`dequantize_row_q2_K`, `quantize_row_q2_K_ref`) operation for
//! operation, so a row quantized here has the bytes `llama-quantize` writes without an
//! importance matrix; the per-sub-block scale and min come from ggml's `make_qkx2_quants`
//! search (see `scale_search`).

use half::f16;

use super::blocks::{BlockQ2K, QK_K};
use super::scale_search::{make_qkx2_quants, nearest_int};
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

/// Sub-blocks per super-block.
const SUBS: usize = QK_K / 16;

/// ggml's `q4scale`: sub-block scales and mins are stored as 4-bit multiples of the largest /15.
const Q4SCALE: f32 = 15.0;

/// The 2-bit codes of a Q2_K or Q3_K `qs` in element order: byte `l` of the 32 bytes of half `h`
/// holds elements `128h + 32s + l` in bits `2s..2s + 2`.
pub fn two_bit_codes(qs: &[u8; QK_K / 4]) -> [u8; QK_K] {
    std::array::from_fn(|e| {
        let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
        (qs[32 * h + l] >> (2 * s)) & 3
    })
}

/// Inverse of [`two_bit_codes`] (codes must be `0..=3`).
pub(super) fn pack_two_bit_codes(codes: &[u8; QK_K]) -> [u8; QK_K / 4] {
    std::array::from_fn(|i| {
        let (h, l) = (i / 32, i % 32);
        (0..4).fold(0u8, |b, s| b | codes[128 * h + 32 * s + l] << (2 * s))
    })
}

impl QuantBlock for BlockQ2K {
    const DTYPE: DType = DType::Q2K;
    const LEN: usize = QK_K;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK_K] = block_out(out);
        let (d, min) = (self.d.to_f32(), self.dmin.to_f32());
        let codes = two_bit_codes(&self.qs);
        for ((y, q), &sc) in out.chunks_exact_mut(16).zip(codes.chunks_exact(16)).zip(&self.scales) {
            let (dl, ml) = (d * (sc & 0x0F) as f32, min * (sc >> 4) as f32);
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32 - ml;
            }
        }
    }

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = block_in(x);
        let mut codes = [0u8; QK_K];
        let (mut scales, mut mins) = ([0.0f32; SUBS], [0.0f32; SUBS]);
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for (j, (xs, l)) in x.chunks_exact(16).zip(codes.chunks_exact_mut(16)).enumerate() {
            let weights: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
            (scales[j], mins[j]) = make_qkx2_quants(3, xs, &weights, l, -0.5, 0.1, 15, true);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        // `as u8` truncates as C's conversion to `uint8_t` does.
        let mut packed = [0u8; SUBS];
        let mut d = f16::ZERO;
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (p, &s) in packed.iter_mut().zip(&scales) {
                *p = nearest_int(iscale * s) as u8;
            }
            d = f16::from_f32(max_scale / Q4SCALE);
        }
        let mut dmin = f16::ZERO;
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (p, &m) in packed.iter_mut().zip(&mins) {
                *p |= (nearest_int(iscale * m) << 4) as u8;
            }
            dmin = f16::from_f32(max_min / Q4SCALE);
        }
        // Codes again against the scales as stored; a sub-block whose scale rounded to zero
        // keeps the search's codes, as in ggml.
        for ((xs, l), &sc) in x.chunks_exact(16).zip(codes.chunks_exact_mut(16)).zip(&packed) {
            let d = d.to_f32() * (sc & 0x0F) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin.to_f32() * (sc >> 4) as f32;
            for (c, &v) in l.iter_mut().zip(xs) {
                *c = nearest_int((v + dm) / d).clamp(0, 3) as u8;
            }
        }
        BlockQ2K { scales: packed, qs: pack_two_bit_codes(&codes), d, dmin }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_round_trip, stress_rows};
    use super::*;

    #[test]
    fn codes_follow_ggml_bit_order() {
        let codes: [u8; QK_K] = std::array::from_fn(|e| ((e * 7 + e / 64) % 4) as u8);
        assert_eq!(two_bit_codes(&pack_two_bit_codes(&codes)), codes);
        // Element 32 is byte 0's bits 2..4; element 128 is byte 32's bits 0..2.
        let mut qs = [0u8; QK_K / 4];
        qs[0] = 0b0000_1100;
        qs[32] = 0b0000_0010;
        let c = two_bit_codes(&qs);
        assert_eq!((c[0], c[32], c[128], c[160]), (0, 3, 2, 0));
    }

    #[test]
    fn known_block() {
        let b = BlockQ2K {
            scales: std::array::from_fn(|j| (j as u8 % 16) | ((15 - j as u8) << 4)),
            qs: pack_two_bit_codes(&std::array::from_fn(|e| (e % 4) as u8)),
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
        };
        let mut y = [0.0f32; QK_K];
        b.dequantize(&mut y);
        // Element 17: sub-block 1 (sc 1, m 14), code 1 → 0.5·1·1 − 0.25·14.
        assert_eq!((y[0], y[17], y[255]), (-0.25 * 15.0, 0.5 - 3.5, 0.5 * 15.0 * 3.0 - 0.0));
    }

    /// Two bits leave a quarter of a sub-block's range per step, and the 4-bit scales and mins
    /// (of the super-block's largest /15) can cost up to another step: bound the error by
    /// half the super-block's range.
    #[test]
    fn round_trips_within_tolerance() {
        for x in stress_rows(8, 2 * QK_K) {
            assert_round_trip(DType::Q2K, &x, |b| {
                let (lo, hi) = b.iter().fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                0.5 * (hi - lo) + 1e-6
            });
        }
    }
}

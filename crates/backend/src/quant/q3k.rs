//! Q3_K: 256-weight super-blocks of sixteen 16-weight sub-blocks, `w = d·(sc[j] − 32)·(q − 4)`
//! with 3-bit `q` and 6-bit `sc` (3.4375 bits per weight).
//!
//! Both directions are ggml's (`dequantize_row_q3_K`, `quantize_row_q3_K_ref`) operation for
//! operation, so a row quantized here has the bytes `llama-quantize` writes without an
//! importance matrix; each sub-block's scale comes from ggml's `make_q3_quants` search (see
//! `scale_search`).

use half::f16;

use super::blocks::{BlockQ3K, K_SCALE_SIZE, QK_K};
use super::q2k::{pack_two_bit_codes, two_bit_codes};
use super::scale_search::{make_q3_quants, nearest_int};
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

/// Sub-blocks per super-block.
const SUBS: usize = QK_K / 16;

/// The sixteen 6-bit sub-block scales less 32, unpacked as ggml does (its `aux` words): scale
/// `j` has its low nibble in byte `j` (`j < 8`, low nibble) or `j − 8` (high nibble), and its
/// top 2 bits in bits `2(j / 4)..` of byte `8 + j % 4`.
#[inline(always)]
pub fn scales_q3k(q: &[u8; K_SCALE_SIZE]) -> [i8; SUBS] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let words = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    std::array::from_fn(|j| (words[j / 4].to_le_bytes()[j % 4] as i8) - 32)
}

/// The 3-bit codes (`0..=7`, 4 meaning zero) in element order: [`two_bit_codes`] plus 4 where
/// the element's `hmask` bit is set.
pub fn three_bit_codes(b: &BlockQ3K) -> [u8; QK_K] {
    let low = two_bit_codes(&b.qs);
    std::array::from_fn(|e| low[e] | (((b.hmask[e % 32] >> (e / 32)) & 1) << 2))
}

impl QuantBlock for BlockQ3K {
    const DTYPE: DType = DType::Q3K;
    const LEN: usize = QK_K;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK_K] = block_out(out);
        let d_all = self.d.to_f32();
        let codes = three_bit_codes(self);
        for ((y, q), &sc) in out.chunks_exact_mut(16).zip(codes.chunks_exact(16)).zip(&scales_q3k(&self.scales)) {
            let dl = d_all * sc as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * (q as i32 - 4) as f32;
            }
        }
    }

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = block_in(x);
        let mut codes = [0i8; QK_K];
        let mut scales = [0.0f32; SUBS];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for (j, (xs, l)) in x.chunks_exact(16).zip(codes.chunks_exact_mut(16)).enumerate() {
            scales[j] = make_q3_quants(4, xs, l);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        let mut packed = [0u8; K_SCALE_SIZE];
        let mut d = f16::ZERO;
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &s) in scales.iter().enumerate() {
                // ggml stores `nearest_int` in an `int8_t` (truncating), then clamps.
                let l = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    packed[j] = l & 0x0F;
                } else {
                    packed[j - 8] |= (l & 0x0F) << 4;
                }
                packed[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
            }
            d = f16::from_f32(1.0 / iscale);
        }
        // Codes again against the scales as stored; a sub-block whose scale is zero keeps the
        // search's codes, as in ggml.
        for ((xs, l), &sc) in x.chunks_exact(16).zip(codes.chunks_exact_mut(16)).zip(&scales_q3k(&packed)) {
            let d = d.to_f32() * sc as f32;
            if d == 0.0 {
                continue;
            }
            for (c, &v) in l.iter_mut().zip(xs) {
                *c = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
            }
        }
        let mut hmask = [0u8; QK_K / 8];
        let mut low = [0u8; QK_K];
        for (e, (&c, lo)) in codes.iter().zip(low.iter_mut()).enumerate() {
            if c > 3 {
                hmask[e % 32] |= 1 << (e / 32);
            }
            *lo = (c as u8) & 3;
        }
        BlockQ3K { hmask, qs: pack_two_bit_codes(&low), scales: packed, d }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{amax, assert_round_trip, stress_rows};
    use super::*;

    #[test]
    fn scales_unpack_as_ggml_packs_them() {
        // Scale j = 2j + 1 (all six bits used), packed as quantize_row_q3_K_ref packs them.
        let want: [u8; SUBS] = std::array::from_fn(|j| (4 * j as u8 + 1) % 64);
        let mut q = [0u8; K_SCALE_SIZE];
        for (j, &l) in want.iter().enumerate() {
            if j < 8 {
                q[j] = l & 0x0F;
            } else {
                q[j - 8] |= (l & 0x0F) << 4;
            }
            q[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
        }
        assert_eq!(scales_q3k(&q), want.map(|l| l as i8 - 32));
    }

    #[test]
    fn known_block() {
        let mut b = BlockQ3K {
            hmask: [0; 32],
            qs: pack_two_bit_codes(&std::array::from_fn(|e| (e % 4) as u8)),
            scales: [0; K_SCALE_SIZE],
            d: f16::from_f32(0.5),
        };
        // Every scale 33 (low nibbles 1, top bits 2): sc − 32 = 1.
        b.scales[..8].fill(0x11);
        b.scales[8..].fill(0b1010_1010);
        b.hmask[1] = 1; // element 1's third bit
        let mut y = [0.0f32; QK_K];
        b.dequantize(&mut y);
        assert_eq!(scales_q3k(&b.scales), [1; SUBS]);
        assert_eq!((y[0], y[1], y[2], y[33]), (-2.0, 0.5 * (1.0 + 4.0 - 4.0), -1.0, -1.5));
    }

    /// Eight levels from −4 to 3 steps: the step is found from the sub-block's largest value,
    /// and the 6-bit scale of the super-block's largest /32 costs at most a half step more.
    #[test]
    fn round_trips_within_tolerance() {
        for x in stress_rows(9, 2 * QK_K) {
            assert_round_trip(DType::Q3K, &x, |b| amax(b) * 0.5 + 1e-6);
        }
    }
}

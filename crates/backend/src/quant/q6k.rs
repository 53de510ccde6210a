//! Q6_K: 256-weight super-blocks of sixteen 16-weight sub-blocks with signed 8-bit scales,
//! `w = d * scales[j] * (q - 32)` for 6-bit `q`.
//!
//! The bit layout works in two halves of 128 weights. Within half `h`, for `l < 32`, weights
//! `l`, `l + 32`, `l + 64`, `l + 96` take their low 4 bits from the low nibble of `ql[l]`, the
//! low nibble of `ql[l + 32]`, the high nibble of `ql[l]` and the high nibble of `ql[l + 32]`
//! (of that half's 64 `ql` bytes), and their top 2 bits from bits 0-1, 2-3, 4-5, 6-7 of
//! `qh[l]` (of its 32 `qh` bytes). Dequantization is ggml's `dequantize_row_q6_K`; the
//! quantizer, like the other k-quants here, is a simple covering scheme rather than ggml's
//! `make_qx_quants` search (see `kquants`): symmetric per-sub-block steps of `amax / 31`,
//! scales rounded up so nothing clips.

use super::blocks::{BlockQ6K, QK_K};
use super::kquants::{code_up, f16_up};
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

/// Sub-blocks per super-block, and weights per sub-block.
const SUBS: usize = QK_K / 16;

impl QuantBlock for BlockQ6K {
    const DTYPE: DType = DType::Q6K;
    const LEN: usize = QK_K;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK_K] = block_out(out);
        let d = self.d.to_f32();
        let halves = out
            .chunks_exact_mut(128)
            .zip(self.ql.chunks_exact(64))
            .zip(self.qh.chunks_exact(32))
            .zip(self.scales.chunks_exact(8));
        for (((y, ql), qh), sc) in halves {
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = block_in(x);
        // 31 steps each way (code 0, i.e. -32, stays unused) keep the scales non-negative.
        let step: [f32; SUBS] = std::array::from_fn(|j| {
            x[16 * j..16 * j + 16]
                .iter()
                .fold(0.0f32, |a, v| a.max(v.abs()))
                / 31.0
        });
        let d = f16_up(step.iter().fold(0.0f32, |a, &v| a.max(v)) / 127.0);
        let scales: [i8; SUBS] = step.map(|s| code_up(s, d.to_f32(), 127) as i8);

        // Codes 0..=63 (32 is zero), in weight order.
        let mut codes = [32u8; QK_K];
        for ((sub, out), &sc) in x
            .chunks_exact(16)
            .zip(codes.chunks_exact_mut(16))
            .zip(&scales)
        {
            let step = d.to_f32() * sc as f32;
            if step > 0.0 {
                for (&v, c) in sub.iter().zip(out) {
                    *c = ((v / step).round_ties_even().clamp(-32.0, 31.0) + 32.0) as u8;
                }
            }
        }

        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        let halves = codes
            .chunks_exact(128)
            .zip(ql.chunks_exact_mut(64))
            .zip(qh.chunks_exact_mut(32));
        for ((c, ql), qh) in halves {
            for l in 0..32 {
                let (c1, c2, c3, c4) = (c[l], c[l + 32], c[l + 64], c[l + 96]);
                ql[l] = (c1 & 0x0F) | ((c3 & 0x0F) << 4);
                ql[l + 32] = (c2 & 0x0F) | ((c4 & 0x0F) << 4);
                qh[l] = (c1 >> 4) | ((c2 >> 4) << 2) | ((c3 >> 4) << 4) | ((c4 >> 4) << 6);
            }
        }
        BlockQ6K { ql, qh, scales, d }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{amax, assert_round_trip, f16_slack, stress_rows};
    use super::*;
    use half::f16;

    /// Half a step of `amax / 31`, widened by up to 1/127 for rounding the 8-bit scale up.
    const Q6_K_MAX_ERR_REL: f32 = 0.5 / 31.0 * (128.0 / 127.0);

    fn dequant(b: &BlockQ6K) -> Vec<f32> {
        let mut y = vec![0.0f32; QK_K];
        b.dequantize(&mut y);
        y
    }

    /// d = 0.5, scales (k + 1) with alternating sign, `ql[i] = i`, `qh[i] = i`; each expected
    /// value is decoded by hand from the layout in the module docs.
    #[test]
    fn known_block() {
        let b = BlockQ6K {
            ql: std::array::from_fn(|i| i as u8),
            qh: std::array::from_fn(|i| i as u8),
            scales: std::array::from_fn(|k| {
                if k % 2 == 0 {
                    k as i8 + 1
                } else {
                    -(k as i8 + 1)
                }
            }),
            d: f16::from_f32(0.5),
        };
        let y = dequant(&b);
        let cases = [
            (0, -16.0),    // ql[0] lo 0, qh[0] bits 0-1 = 0: q -32, sc 1
            (37, -16.5),   // ql[37] lo 5, qh[5] bits 2-3 = 1: q 21 - 32, sc[2] = 3
            (84, 45.0),    // ql[20] hi 1, qh[20] bits 4-5 = 1: q 17 - 32, sc[5] = -6
            (127, 116.0),  // ql[63] hi 3, qh[31] bits 6-7 = 0: q 3 - 32, sc[7] = -8
            (128, -144.0), // second half: ql[64] lo 0, qh[32] bits 0-1 = 0, sc[8] = 9
            (195, 26.0),   // ql[67] hi 4, qh[35] bits 4-5 = 2: q 36 - 32, sc[12] = 13
            (241, 200.0),  // ql[113] hi 7, qh[49] bits 6-7 = 0: q 7 - 32, sc[15] = -16
        ];
        for (e, want) in cases {
            assert_eq!(y[e], want, "element {e}");
        }
    }

    #[test]
    fn quantizer_packs_codes_where_the_dequantizer_reads_them() {
        // One distinct value per weight, so any misplaced code shows as a large error.
        let x: Vec<f32> = (0..QK_K)
            .map(|i| (i as f32 * 0.37).sin() * (1 + i % 7) as f32)
            .collect();
        let b = BlockQ6K::quantize(&x);
        let y = dequant(&b);
        for (e, (a, r)) in x.iter().zip(&y).enumerate() {
            let step = b.d.to_f32() * b.scales[e / 16] as f32;
            assert!(
                (a - r).abs() <= 0.5 * step * (1.0 + 1e-5),
                "element {e}: {a} -> {r}"
            );
        }
    }

    #[test]
    fn zero_block_stays_zero() {
        let b = BlockQ6K::quantize(&[0.0; QK_K]);
        assert_eq!(b.d, f16::ZERO);
        assert!(dequant(&b).iter().all(|&v| v == 0.0));
        assert!(dequant(&bytemuck::Zeroable::zeroed())
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn round_trips_within_tolerance() {
        // `d` is rounded up to f16: for tiny blocks that can add one subnormal spacing.
        for x in stress_rows(19, 3 * QK_K) {
            assert_round_trip(DType::Q6K, &x, |b| {
                amax(b) * Q6_K_MAX_ERR_REL + f16_slack(b, 1.0)
            });
        }
    }
}

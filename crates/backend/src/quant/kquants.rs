//! Q4_K and Q5_K: 256-weight super-blocks of eight 32-weight sub-blocks, each with its own
//! 6-bit scale and min, `w = d * sc[j] * q - dmin * m[j]`.
//!
//! Dequantization is ggml's `dequantize_row_q4_K` / `_q5_K` expression for expression. The
//! quantizer is deliberately simpler than ggml's `make_qkx2_quants` search (which only shaves
//! error): each sub-block's min and step are chosen to cover its whole range, rounded *up* to
//! the 6-bit and `f16` grids so no weight ever clips, and then every weight is rounded to the
//! nearest level of the step and offset the dequantizer will actually use. That bounds the
//! error of each weight by half its own sub-block's step.

use half::f16;

use super::blocks::{BlockQ4K, BlockQ5K, K_SCALE_SIZE, QK_K};
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

/// Sub-blocks per super-block.
const SUBS: usize = QK_K / 32;

/// Sub-block `j`'s 6-bit (scale, min) from the packed 12 bytes, as ggml's `get_scale_min_k4`:
/// bytes 0..4 hold scales 0..4 and bytes 4..8 mins 0..4 in their low 6 bits; scales and mins
/// 4..8 keep their low nibbles in bytes 8..12 and their top 2 bits in the spare top bits of
/// bytes 0..4 and 4..8 respectively.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc, m)
    }
}

/// All eight (scale, min) pairs at once, unpacked as ggml's x86 k-quant dot products do (its
/// `utmp` words): bytes 0..8 are the scales, bytes 8..16 the mins, each equal to
/// [`scale_min_k4`]'s.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8; K_SCALE_SIZE]) -> [u8; 16] {
    const LOW6: u32 = 0x3f3f3f3f;
    const LOW4: u32 = 0x0f0f0f0f;
    const LOW2: u32 = 0x03030303;
    let word = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let scales_lo = u0 & LOW6;
    let scales_hi = (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4);
    let mins_lo = u1 & LOW6;
    let mins_hi = ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4);
    let mut out = [0u8; 16];
    for (i, w) in [scales_lo, scales_hi, mins_lo, mins_hi].into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Inverse of [`scale_min_k4`] for all eight sub-blocks; values above 63 lose their top bits.
pub fn pack_scale_min_k4(sc: &[u8; SUBS], m: &[u8; SUBS]) -> [u8; K_SCALE_SIZE] {
    let mut q = [0u8; K_SCALE_SIZE];
    for j in 0..4 {
        q[j] = sc[j] & 63;
        q[j + 4] = m[j] & 63;
    }
    for j in 4..SUBS {
        q[j + 4] = (sc[j] & 0x0F) | ((m[j] & 0x0F) << 4);
        q[j - 4] |= ((sc[j] >> 4) & 3) << 6;
        q[j] |= ((m[j] >> 4) & 3) << 6;
    }
    q
}

/// Each sub-block's `(d * sc, dmin * m)`, computed exactly as the dequantizer does.
fn step_and_offset(d: f16, dmin: f16, scales: &[u8; K_SCALE_SIZE]) -> [(f32, f32); SUBS] {
    let (d, dmin) = (d.to_f32(), dmin.to_f32());
    std::array::from_fn(|j| {
        let (sc, m) = scale_min_k4(j, scales);
        (d * sc as f32, dmin * m as f32)
    })
}

/// The smallest `f16` not below `v` (finite, `>= 0`): a super-block scale rounded this way
/// still covers every sub-block scale it was computed from.
pub(super) fn f16_up(v: f32) -> f16 {
    let h = f16::from_f32(v);
    if h.to_f32() < v {
        f16::from_bits(h.to_bits() + 1)
    } else {
        h
    }
}

/// `ceil(v / unit)` capped at `max`: the smallest code whose `code * unit` covers `v`.
pub(super) fn code_up(v: f32, unit: f32, max: u8) -> u8 {
    if unit > 0.0 {
        (v / unit).ceil().min(f32::from(max)) as u8
    } else {
        0
    }
}

/// The header (d, dmin, packed scales) and per-weight codes `0..=nmax` of a super-block.
struct ScaleMin {
    d: f16,
    dmin: f16,
    scales: [u8; K_SCALE_SIZE],
    codes: [u8; QK_K],
}

fn quantize_scale_min(x: &[f32; QK_K], nmax: u8) -> ScaleMin {
    // Offsets: the stored min can only subtract, so (as in ggml) a sub-block that is all
    // positive gets offset 0 and its levels start at zero.
    let mut offset = [0.0f32; SUBS];
    let mut top = [0.0f32; SUBS];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let lo = sub.iter().fold(f32::INFINITY, |a, &v| a.min(v));
        offset[j] = (-lo).max(0.0);
        top[j] = sub.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    }
    let dmin = f16_up(offset.iter().fold(0.0f32, |a, &v| a.max(v)) / 63.0);
    let m: [u8; SUBS] = offset.map(|o| code_up(o, dmin.to_f32(), 63));
    // Steps: `nmax` of them must reach from the stored (rounded-up) offset to the top.
    let step: [f32; SUBS] =
        std::array::from_fn(|j| (top[j] + dmin.to_f32() * m[j] as f32).max(0.0) / f32::from(nmax));
    let d = f16_up(step.iter().fold(0.0f32, |a, &v| a.max(v)) / 63.0);
    let sc: [u8; SUBS] = step.map(|s| code_up(s, d.to_f32(), 63));
    let scales = pack_scale_min_k4(&sc, &m);

    let mut codes = [0u8; QK_K];
    let params = step_and_offset(d, dmin, &scales);
    for ((sub, out), &(step, off)) in x
        .chunks_exact(32)
        .zip(codes.chunks_exact_mut(32))
        .zip(&params)
    {
        for (&v, c) in sub.iter().zip(out) {
            if step > 0.0 {
                // Ties to even, as ggml's `nearest_int`.
                *c = ((v + off) / step)
                    .round_ties_even()
                    .clamp(0.0, f32::from(nmax)) as u8;
            }
        }
    }
    ScaleMin {
        d,
        dmin,
        scales,
        codes,
    }
}

/// Q4_K and Q5_K weights: 64-element chunks whose low nibbles are sub-block `2p` and high
/// nibbles sub-block `2p + 1`, each `d1 * q - m1`; Q5_K's fifth bit of chunk `p` is bit `2p`
/// (low) and `2p + 1` (high) of `qh[l]`.
fn dequantize_scale_min(d: f16, dmin: f16, scales: &[u8; 12], qs: &[u8; QK_K / 2], qh: Option<&[u8; 32]>, out: &mut [f32; QK_K]) {
    let params = step_and_offset(d, dmin, scales);
    let chunks = qs.chunks_exact(32).zip(out.chunks_exact_mut(64)).zip(params.chunks_exact(2));
    for (pair, ((ql, y), p)) in chunks.enumerate() {
        let ((d1, m1), (d2, m2)) = (p[0], p[1]);
        let (lo, hi) = y.split_at_mut(32);
        for (l, ((&q, a), b)) in ql.iter().zip(lo).zip(hi).enumerate() {
            let h = qh.map_or(0, |qh| qh[l] >> (2 * pair));
            let q1 = (q & 0x0F) | (h & 1) << 4;
            let q2 = (q >> 4) | (h & 2) << 3;
            *a = d1 * q1 as f32 - m1;
            *b = d2 * q2 as f32 - m2;
        }
    }
}

impl QuantBlock for BlockQ4K {
    const DTYPE: DType = DType::Q4K;
    const LEN: usize = QK_K;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_scale_min(self.d, self.dmin, &self.scales, &self.qs, None, block_out(out));
    }

    fn quantize(x: &[f32]) -> Self {
        let ScaleMin {
            d,
            dmin,
            scales,
            codes,
        } = quantize_scale_min(block_in(x), 15);
        let mut qs = [0u8; QK_K / 2];
        for (q, l) in qs.chunks_exact_mut(32).zip(codes.chunks_exact(64)) {
            for (i, q) in q.iter_mut().enumerate() {
                *q = l[i] | (l[i + 32] << 4);
            }
        }
        BlockQ4K {
            d,
            dmin,
            scales,
            qs,
        }
    }
}

impl QuantBlock for BlockQ5K {
    const DTYPE: DType = DType::Q5K;
    const LEN: usize = QK_K;

    fn dequantize(&self, out: &mut [f32]) {
        dequantize_scale_min(self.d, self.dmin, &self.scales, &self.qs, Some(&self.qh), block_out(out));
    }

    fn quantize(x: &[f32]) -> Self {
        let ScaleMin {
            d,
            dmin,
            scales,
            codes,
        } = quantize_scale_min(block_in(x), 31);
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for (pair, (q, l)) in qs
            .chunks_exact_mut(32)
            .zip(codes.chunks_exact(64))
            .enumerate()
        {
            for (i, (q, h)) in q.iter_mut().zip(&mut qh).enumerate() {
                let (l1, l2) = (l[i], l[i + 32]);
                *q = (l1 & 0x0F) | ((l2 & 0x0F) << 4);
                *h |= ((l1 >> 4) << (2 * pair)) | ((l2 >> 4) << (2 * pair + 1));
            }
        }
        BlockQ5K {
            d,
            dmin,
            scales,
            qh,
            qs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_round_trip, f16_slack, min_max, stress_rows};
    use super::*;

    /// Half a step, where a step spans the super-block's range (zero included, since mins only
    /// subtract) in 15 levels, widened twice by up to 1/63 for rounding the 6-bit min and
    /// scale codes up.
    const Q4_K_MAX_ERR_REL: f32 = 0.5 / 15.0 * (64.0 / 63.0) * (64.0 / 63.0);
    /// As [`Q4_K_MAX_ERR_REL`] with 31 levels.
    const Q5_K_MAX_ERR_REL: f32 = 0.5 / 31.0 * (64.0 / 63.0) * (64.0 / 63.0);

    /// (sc, m) per sub-block, decoded by hand from [`SCALES`] following ggml's bit layout.
    const SCALES: [u8; 12] = [
        0x81, 0x02, 0x03, 0xC4, 0x05, 0x46, 0x07, 0x08, 0x21, 0x43, 0x65, 0x87,
    ];
    const DECODED: [(u8, u8); 8] = [
        (1, 5),
        (2, 6),
        (3, 7),
        (4, 8),
        (33, 2),
        (3, 20),
        (5, 6),
        (55, 8),
    ];

    fn dequant<B: QuantBlock>(b: &B) -> Vec<f32> {
        let mut y = vec![0.0f32; QK_K];
        b.dequantize(&mut y);
        y
    }

    #[test]
    fn scale_min_known_bytes() {
        for (j, want) in DECODED.iter().enumerate() {
            assert_eq!(scale_min_k4(j, &SCALES), *want, "sub-block {j}");
        }
        let (sc, m): (Vec<u8>, Vec<u8>) = DECODED.iter().copied().unzip();
        assert_eq!(
            pack_scale_min_k4(&sc.try_into().unwrap(), &m.try_into().unwrap()),
            SCALES
        );
    }

    #[test]
    fn all_scales_and_mins_at_once_equal_one_at_a_time() {
        let all = scales_mins_k4(&SCALES);
        for (j, want) in DECODED.iter().enumerate() {
            assert_eq!((all[j], all[8 + j]), *want, "sub-block {j}");
        }
        for seed in 0..64u32 {
            let q: [u8; 12] = std::array::from_fn(|i| (seed.wrapping_mul(2654435761).rotate_left(i as u32 * 5) >> 7) as u8);
            let all = scales_mins_k4(&q);
            for j in 0..SUBS {
                assert_eq!((all[j], all[8 + j]), scale_min_k4(j, &q), "seed {seed} sub-block {j}");
            }
        }
    }

    #[test]
    fn scale_min_pack_round_trips_every_value() {
        for j in 0..SUBS {
            for v in 0..64u8 {
                let sc: [u8; SUBS] =
                    std::array::from_fn(|i| if i == j { v } else { (i as u8 * 9) % 64 });
                let m: [u8; SUBS] =
                    std::array::from_fn(|i| if i == j { 63 - v } else { (i as u8 * 13) % 64 });
                let packed = pack_scale_min_k4(&sc, &m);
                for i in 0..SUBS {
                    assert_eq!(scale_min_k4(i, &packed), (sc[i], m[i]), "j={j} v={v} i={i}");
                }
            }
        }
    }

    /// d = 0.5, dmin = 0.25; byte `i` of qs is `i % 16` low and `15 - i % 16` high.
    #[test]
    fn q4_k_known_block() {
        let qs = std::array::from_fn(|i| (i % 16) as u8 | ((15 - (i % 16) as u8) << 4));
        let b = BlockQ4K {
            d: f16::from_f32(0.5),
            dmin: f16::from_f32(0.25),
            scales: SCALES,
            qs,
        };
        let y = dequant(&b);
        // Element 0: sub 0, low nibble 0. 32: sub 1, high nibble of byte 0 = 15.
        // 135: sub 4 (sc 33, m 2), low nibble of byte 71 = 7. 229: sub 7, high of byte 101 = 10.
        assert_eq!([y[0], y[32], y[135], y[229]], [-1.25, 13.5, 115.0, 273.0]);
        for (e, &v) in y.iter().enumerate() {
            let (pair, l, high) = (e / 64, e % 32, e % 64 >= 32);
            let byte = qs[32 * pair + l];
            let (sc, m) = DECODED[2 * pair + high as usize];
            let q = if high { byte >> 4 } else { byte & 0x0F };
            assert_eq!(
                v,
                0.5 * sc as f32 * q as f32 - 0.25 * m as f32,
                "element {e}"
            );
        }
    }

    /// d = 1, dmin = 0.5, byte `i` of qs is `i`, every qh byte 0b1010_0101: the fifth bit is
    /// set for the low half of pairs 0 and 1 and the high half of pairs 2 and 3.
    #[test]
    fn q5_k_known_block() {
        let b = BlockQ5K {
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(0.5),
            scales: SCALES,
            qh: [0xA5; 32],
            qs: std::array::from_fn(|i| i as u8),
        };
        let y = dequant(&b);
        // 0: 1*(0+16) - 0.5*5. 35: 2*0 - 0.5*6. 170: sub 5, 3*(4+16) - 0.5*20.
        // 193: sub 6, 5*1 - 0.5*6. 255: sub 7, 55*(7+16) - 0.5*8.
        assert_eq!(
            [y[0], y[35], y[170], y[193], y[255]],
            [13.5, -3.0, 50.0, 2.0, 1261.0]
        );
    }

    #[test]
    fn zero_and_constant_blocks() {
        for c in [0.0f32, 1.5, -2.25] {
            let x = [c; QK_K];
            assert!(dequant(&BlockQ4K::quantize(&x))
                .iter()
                .all(|&v| (v - c).abs() <= c.abs() / 32.0));
            assert!(dequant(&BlockQ5K::quantize(&x))
                .iter()
                .all(|&v| (v - c).abs() <= c.abs() / 64.0));
        }
        assert!(dequant(&BlockQ4K::quantize(&[0.0; QK_K]))
            .iter()
            .all(|&v| v == 0.0));
    }

    /// The quantizer's invariant: nothing clips, so each weight is within half of its own
    /// sub-block's step (plus `f32` rounding of the division).
    #[test]
    fn every_weight_within_half_its_sub_block_step() {
        for x in stress_rows(17, QK_K) {
            let x: &[f32; QK_K] = x.as_slice().try_into().unwrap();
            for (nmax, y) in [
                (15, dequant(&BlockQ4K::quantize(x))),
                (31, dequant(&BlockQ5K::quantize(x))),
            ] {
                let s = quantize_scale_min(x, nmax);
                let params = step_and_offset(s.d, s.dmin, &s.scales);
                for (e, (a, b)) in x.iter().zip(&y).enumerate() {
                    let step = params[e / 32].0;
                    assert!(
                        (a - b).abs() <= 0.5 * step * (1.0 + 1e-5) + 1e-6 * a.abs(),
                        "nmax {nmax} e {e}: {a} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn round_trips_within_tolerance() {
        let range = |b: &[f32]| {
            let (lo, hi) = min_max(b);
            hi.max(0.0) - lo.min(0.0)
        };
        // Scales are rounded up to f16, so beyond f32 noise their rounding only costs (for tiny
        // blocks) a subnormal f16 spacing or two on the step: hence the small `f16_slack`.
        for x in stress_rows(13, 3 * QK_K) {
            assert_round_trip(DType::Q4K, &x, |b| {
                range(b) * Q4_K_MAX_ERR_REL + f16_slack(b, 2.0)
            });
            assert_round_trip(DType::Q5K, &x, |b| {
                range(b) * Q5_K_MAX_ERR_REL + f16_slack(b, 2.0)
            });
        }
    }
}

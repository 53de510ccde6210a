//! IQ4_NL and IQ4_XS: 4-bit codes into a fixed non-linear codebook ([`KVALUES_IQ4NL`], denser
//! near zero, where trained weights are), scaled per 32 weights: IQ4_NL by an `f16` per block
//! (4.5 bits per weight), IQ4_XS by a 6-bit scale per sub-block of a 256-weight super-block
//! (4.25 bits per weight).
//!
//! Both directions are ggml's: `dequantize_row_iq4_{nl,xs}`, and `quantize_row_iq4_nl_impl` as
//! `quantize_row_iq4_nl_ref` (no scale search) and `quantize_row_iq4_xs_ref` (a search over 15
//! candidate scales per sub-block) call it, operation for operation. One deliberate departure:
//! ggml leaves the codes of an all-zero IQ4_NL block as whatever its scratch array held from
//! the block before (or uninitialized); here they are the codes of the value nearest zero, as
//! IQ4_XS's second pass would choose. Either way the block decodes to zeros.

use half::f16;

use super::blocks::{BlockIQ4NL, BlockIQ4XS, KVALUES_IQ4NL, QK, QK_K};
use super::scale_search::{nearest_int, GROUP_MAX_EPS};
use super::{block_in, block_out, QuantBlock};
use crate::dtype::DType;

/// ggml's `best_index_int8` over the codebook: the index of the level nearest `x` (the upper
/// one on a tie), by bisection.
fn best_index(x: f32) -> u8 {
    let v = |i: usize| KVALUES_IQ4NL[i] as f32;
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0, 15);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - v(mu - 1) < v(mu) - x {
        mu as u8 - 1
    } else {
        mu as u8
    }
}

/// Codes of the 16 bytes of a 32-weight sub-block in element order (low nibbles, then high).
#[inline(always)]
pub fn iq4_codes(qs: &[u8; QK / 2]) -> [u8; QK] {
    std::array::from_fn(|i| if i < 16 { qs[i] & 0x0F } else { qs[i - 16] >> 4 })
}

/// IQ4_XS sub-block `ib`'s 6-bit scale less 32.
#[inline(always)]
pub fn iq4xs_scale(b: &BlockIQ4XS, ib: usize) -> i32 {
    let ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) as u16 | ((b.scales_h >> (2 * ib)) & 3) << 4;
    ls as i32 - 32
}

/// What `quantize_row_iq4_nl_impl` writes for `x` (32 weights per sub-block, one or eight
/// sub-blocks) without importance weights: the `f16` scale, the packed codes and (with eight
/// sub-blocks) the 6-bit sub-block scales. `ntry` is ggml's: −1 for IQ4_NL's reference, 7 for
/// IQ4_XS.
struct Quantized {
    d: f16,
    qs: [u8; QK_K / 2],
    scales_h: u16,
    scales_l: [u8; QK_K / 64],
}

fn quantize_impl(x: &[f32], ntry: i32) -> Quantized {
    let subs = x.len() / QK;
    let mut codes = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / QK];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    let v0 = KVALUES_IQ4NL[0] as f32;
    for (ib, (xb, lb)) in x.chunks_exact(QK).zip(codes.chunks_exact_mut(QK)).enumerate() {
        let weight: [f32; QK] = std::array::from_fn(|j| xb[j] * xb[j]);
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            lb.fill(best_index(0.0));
            continue;
        }
        // Σ w·q·x and Σ w·q² for the codes a scale `1/id` gives, storing them when asked.
        let sums = |id: f32, mut store: Option<&mut [u8]>| {
            let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
            for j in 0..QK {
                let l = best_index(id * xb[j]);
                if let Some(lb) = store.as_deref_mut() {
                    lb[j] = l;
                }
                let q = KVALUES_IQ4NL[l as usize] as f32;
                sumqx += weight[j] * q * xb[j];
                sumq2 += weight[j] * q * q;
            }
            (sumqx, sumq2)
        };
        let d = if ntry > 0 { -max / v0 } else { max / v0 };
        let (sumqx, sumq2) = sums(1.0 / d, Some(lb));
        let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for itry in -ntry..=ntry {
            let id = (itry + KVALUES_IQ4NL[0] as i32) as f32 / max;
            let (sumqx, sumq2) = sums(id, None);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let mut q = Quantized { d: f16::ZERO, qs: [0; QK_K / 2], scales_h: 0, scales_l: [0; QK_K / 64] };
    if subs > 1 {
        // Sub-block scales as 6-bit multiples of the super-block's, and every code again
        // against the scale as stored (in f32: ggml uses `d`, not its f16 rounding, here).
        let d = -max_scale / 32.0;
        q.d = f16::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (ib, (xb, lb)) in x.chunks_exact(QK).zip(codes.chunks_exact_mut(QK)).enumerate() {
            let l = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for (c, &v) in lb.iter_mut().zip(xb) {
                *c = best_index(idl * v);
            }
            let l = (l + 32) as u8;
            q.scales_l[ib / 2] |= (l & 0x0F) << (4 * (ib % 2));
            q.scales_h |= u16::from(l >> 4) << (2 * (ib % 8));
        }
    } else {
        q.d = f16::from_f32(scales[0]);
        if ntry > 0 {
            let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
            for (c, &v) in codes.iter_mut().zip(x) {
                *c = best_index(id * v);
            }
        }
    }
    for (qs, l) in q.qs.chunks_exact_mut(16).zip(codes.chunks_exact(QK)).take(subs) {
        for (j, b) in qs.iter_mut().enumerate() {
            *b = l[j] | l[j + 16] << 4;
        }
    }
    q
}

impl QuantBlock for BlockIQ4NL {
    const DTYPE: DType = DType::IQ4NL;
    const LEN: usize = QK;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = block_out(out);
        let d = self.d.to_f32();
        for (y, &c) in out.iter_mut().zip(&iq4_codes(&self.qs)) {
            *y = d * KVALUES_IQ4NL[c as usize] as f32;
        }
    }

    fn quantize(x: &[f32]) -> Self {
        let q = quantize_impl(block_in::<QK>(x), -1);
        BlockIQ4NL { d: q.d, qs: q.qs[..QK / 2].try_into().expect("one block of codes") }
    }
}

impl QuantBlock for BlockIQ4XS {
    const DTYPE: DType = DType::IQ4XS;
    const LEN: usize = QK_K;

    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK_K] = block_out(out);
        let d = self.d.to_f32();
        for (ib, (y, qs)) in out.chunks_exact_mut(QK).zip(self.qs.chunks_exact(QK / 2)).enumerate() {
            let dl = d * iq4xs_scale(self, ib) as f32;
            for (y, &c) in y.iter_mut().zip(&iq4_codes(qs.try_into().expect("16 bytes"))) {
                *y = dl * KVALUES_IQ4NL[c as usize] as f32;
            }
        }
    }

    fn quantize(x: &[f32]) -> Self {
        let q = quantize_impl(block_in::<QK_K>(x), 7);
        BlockIQ4XS { d: q.d, scales_h: q.scales_h, scales_l: q.scales_l, qs: q.qs }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{amax, assert_round_trip, stress_rows};
    use super::*;

    #[test]
    fn best_index_picks_the_nearest_level() {
        assert_eq!([-200.0, -127.0, -115.6, -115.4, 0.0, -4.5, -4.6, 112.9, 1e9].map(best_index), [0, 0, 0, 1, 8, 8, 7, 15, 15]);
        assert_eq!(best_index(f32::NAN), 15, "as ggml's bisection ends on NaN");
    }

    #[test]
    fn known_blocks() {
        let nl = BlockIQ4NL { d: f16::from_f32(0.5), qs: std::array::from_fn(|j| j as u8 | (15 - j as u8) << 4) };
        let mut y = [0.0f32; QK];
        nl.dequantize(&mut y);
        assert_eq!((y[0], y[8], y[15], y[16], y[31]), (-63.5, 0.5, 56.5, 56.5, -63.5));

        let mut xs = BlockIQ4XS { d: f16::from_f32(0.25), scales_h: 0, scales_l: [0; 4], qs: [0x98; QK_K / 2] };
        // Sub-block 3: ls = 0x5 | 0b10 << 4 = 37, so 5 steps; sub-block 0: ls 0, so −32 steps.
        xs.scales_l[1] = 0x50;
        xs.scales_h = 0b10 << 6;
        let mut y = [0.0f32; QK_K];
        xs.dequantize(&mut y);
        assert_eq!((iq4xs_scale(&xs, 3), iq4xs_scale(&xs, 0)), (5, -32));
        // Code 8 (level 1) in the low nibbles, 9 (level 13) in the high.
        assert_eq!((y[96], y[96 + 16], y[0]), (0.25 * 5.0, 0.25 * 5.0 * 13.0, 0.25 * -32.0));
    }

    /// The levels reach 127 steps one way and only 113 the other, so a weight of the opposite
    /// sign to the block's largest can clip by 14 steps of `amax / 127` (the widest gap, 89 →
    /// 113, costs 12), plus what the least-squares refit of the scale and its `f16` rounding move,
    /// and for IQ4_XS the 6-bit sub-block scales (a half step of the largest /32).
    #[test]
    fn round_trips_within_tolerance() {
        for x in stress_rows(10, 2 * QK_K) {
            for b in x.chunks(QK) {
                assert_round_trip(DType::IQ4NL, b, |b| amax(b) * (16.0 / 127.0) + 1e-6);
            }
            assert_round_trip(DType::IQ4XS, &x, |b| amax(b) * (16.0 / 127.0 + 1.0 / 32.0) + 1e-6);
        }
    }
}

//! Test helpers shared by the quant tests: a seeded generator (tiny xorshift, so the data is
//! the same on every machine and no dev-dependency is needed), the rows the quantizers are
//! exercised on, and a round-trip checker with per-block tolerances.

use super::{dequantize_row, quantize_row};
use crate::dtype::DType;

/// Relative precision of `f16` (10 fraction bits, round to nearest: half an ulp is 2^-11),
/// doubled for slack. Block scales are stored as `f16`, so every bound allows this much of
/// the block's magnitude on top of the quantization step.
pub const F16_REL_EPS: f32 = 1.0 / 1024.0;
/// Below 2^-14 `f16` is subnormal with a fixed spacing of 2^-24, so a tiny block scale is off
/// by up to half of that absolutely, and a weight by that times its code.
pub const F16_ABS_EPS: f32 = 1.0 / 33_554_432.0;

/// What storing a block's scales as `f16` may add to a weight's error, for codes up to
/// `max_code` in magnitude.
pub fn f16_slack(block: &[f32], max_code: f32) -> f32 {
    amax(block) * F16_REL_EPS + max_code * F16_ABS_EPS
}

/// xorshift64*: plenty for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    pub fn row(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Rows of `n` weights meant to break quantizers: symmetric, one-signed (k-quant mins clamp at
/// zero), large and tiny magnitudes, sparse outliers, and all-zero and constant stretches.
pub fn stress_rows(seed: u64, n: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    let mut rows = vec![
        rng.row(n, -1.0, 1.0),
        rng.row(n, 0.5, 3.0),
        rng.row(n, -7.0, -0.25),
        rng.row(n, -300.0, 200.0),
        rng.row(n, -1e-3, 1e-3),
    ];
    let mut outliers = rng.row(n, -0.1, 0.1);
    for (i, v) in outliers.iter_mut().enumerate() {
        if rng.uniform(0.0, 1.0) < 1.0 / 29.0 {
            *v = if i % 2 == 0 { 8.0 } else { -5.0 };
        }
    }
    rows.push(outliers);
    let mut flat = rng.row(n, -1.0, 1.0);
    let third = n / 3;
    flat[..third].fill(0.0);
    flat[third..2 * third].fill(-0.75);
    rows.push(flat);
    rows
}

/// Storage with `u64` alignment, viewed as bytes by the tests that need a known alignment.
pub fn aligned_buf(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

/// Smallest and largest value of a slice.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

pub fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Quantize and dequantize `x` through the public row API and assert every weight of each
/// block is within `allowed(block)` of the original.
pub fn assert_round_trip(dtype: DType, x: &[f32], allowed: impl Fn(&[f32]) -> f32) {
    let mut q = vec![0u8; dtype.row_bytes(x.len()).unwrap()];
    quantize_row(dtype, x, &mut q).unwrap();
    let mut y = vec![0.0f32; x.len()];
    dequantize_row(dtype, &q, &mut y).unwrap();
    let bl = dtype.block_len();
    for (b, (xs, ys)) in x.chunks(bl).zip(y.chunks(bl)).enumerate() {
        let limit = allowed(xs);
        for (i, (a, r)) in xs.iter().zip(ys).enumerate() {
            let err = (a - r).abs();
            assert!(
                err <= limit,
                "{dtype} block {b} elem {i}: {a} -> {r}, err {err} > {limit}"
            );
        }
    }
}

//! The unquantized types, F32, F16 and BF16, as rows of little-endian bytes.
//!
//! Reading through `from_le_bytes` needs no alignment and compiles to plain loads; `half`
//! converts with round-to-nearest-even and keeps NaNs NaN, as ggml's `GGML_FP32_TO_FP16` /
//! `GGML_FP32_TO_BF16` do.

use half::{bf16, f16};

pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst) {
        *y = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst) {
        *y = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

pub fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f16::from_f32(x).to_le_bytes());
    }
}

pub fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (&x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&bf16::from_f32(x).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_round_trip, stress_rows};
    use super::super::{dequantize_row, quantize_row};
    use crate::dtype::DType;

    /// F16 keeps 11 significant bits: round to nearest is off by at most 2^-11 relative.
    const F16_MAX_ERR_REL: f32 = 1.0 / 2048.0;
    /// Below 2^-14 F16 goes subnormal with a fixed spacing of 2^-24: half of that absolute.
    const F16_MAX_ERR_ABS: f32 = 1.0 / 33_554_432.0;
    /// BF16 keeps 8 significant bits: at most 2^-8 relative.
    const BF16_MAX_ERR_REL: f32 = 1.0 / 256.0;

    #[test]
    fn known_bytes() {
        let x = [1.0f32, -2.0, 0.5, 0.0];
        let cases: [(DType, &[u8]); 3] = [
            (
                DType::F16,
                &[0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0x00, 0x00],
            ),
            (
                DType::BF16,
                &[0x80, 0x3F, 0x00, 0xC0, 0x00, 0x3F, 0x00, 0x00],
            ),
            (
                DType::F32,
                &[0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0, 0, 0, 0, 0x3F, 0, 0, 0, 0],
            ),
        ];
        for (dtype, bytes) in cases {
            let mut q = vec![0u8; bytes.len()];
            quantize_row(dtype, &x, &mut q).unwrap();
            assert_eq!(q, bytes, "{dtype}");
            let mut y = [9.0f32; 4];
            dequantize_row(dtype, bytes, &mut y).unwrap();
            assert_eq!(y, x, "{dtype}");
        }
    }

    /// BF16's ulp at 1 is 2^-7: 1 + 2^-8 + 2^-9 rounds up, 1 + 2^-8 is a tie that goes to the
    /// even 1.0, and 1 + 3 * 2^-8 a tie that goes up to the even 1 + 2^-6.
    #[test]
    fn bf16_rounds_to_nearest_even() {
        let x = [
            1.0 + 1.0 / 256.0 + 1.0 / 512.0,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
        ];
        let mut q = [0u8; 6];
        quantize_row(DType::BF16, &x, &mut q).unwrap();
        assert_eq!(q, [0x81, 0x3F, 0x80, 0x3F, 0x82, 0x3F]);
    }

    #[test]
    fn round_trips() {
        for x in stress_rows(3, 300) {
            assert_round_trip(DType::F32, &x, |_| 0.0);
            assert_round_trip(DType::F16, &x, |b| {
                b[0].abs() * F16_MAX_ERR_REL + F16_MAX_ERR_ABS
            });
            assert_round_trip(DType::BF16, &x, |b| b[0].abs() * BF16_MAX_ERR_REL);
        }
    }

    #[test]
    fn nan_stays_nan() {
        for dtype in [DType::F16, DType::BF16] {
            let mut q = [0u8; 2];
            quantize_row(dtype, &[f32::NAN], &mut q).unwrap();
            let mut y = [0.0f32];
            dequantize_row(dtype, &q, &mut y).unwrap();
            assert!(y[0].is_nan(), "{dtype}");
        }
    }
}

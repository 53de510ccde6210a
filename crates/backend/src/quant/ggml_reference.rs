//! Q2_K, Q3_K, IQ4_NL and IQ4_XS against ggml itself: the hashes below are what llama.cpp's
//! `quantize_row_*_ref` and `dequantize_row_*` (libggml-base of llama.cpp 11434) write for inputs
//! both sides compute identically; `scripts/ggml-lowbit-quants.c` prints them. Equal hashes mean
//! equal bytes: a row quantized here is the row ggml (and `llama-quantize` without an importance
//! matrix) writes, and a row decodes to ggml's floats bit for bit.

use super::{dequantize_row, quantize_row, QK_K};
use crate::dtype::DType;

/// Weights per recorded row: two super-blocks.
const N: usize = 2 * QK_K;

/// FNV-1a 64, the script's hash.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}


/// The script's row `r` (see its `row`): symmetric; all positive; sparse outliers; tiny; a zero
/// 16-weight sub-block and a constant run; a zero super-block.
fn row(r: usize) -> Vec<f32> {
    (0..N)
        .map(|i| {
            let mut v = (((i * 7919 + r * 104_729) % 2003) as i32 - 1001) as f32 * 0.00137;
            match r {
                1 => v += 1.5,
                2 if i % 37 == 0 => v *= 20.0,
                3 => v *= 1e-4,
                4 if (48..64).contains(&i) => v = 0.0,
                4 if (100..110).contains(&i) => v = 0.75,
                5 if i >= 256 => v = 0.0,
                _ => {}
            }
            v
        })
        .collect()
}

/// The script's dequantization input: 1024 weights of LCG bytes with every block's `f16` scale
/// patched at `d_off` (`0x2000 + 7b`, negative in odd blocks) and its min at `dmin_off`.
fn lcg_blocks(seed: u64, dtype: DType, d_off: usize, dmin_off: Option<usize>) -> Vec<u8> {
    let mut state = seed;
    let mut w = vec![0u8; dtype.row_bytes(2 * N).unwrap()];
    for (b, blk) in w.chunks_exact_mut(dtype.block_bytes()).enumerate() {
        for byte in blk.iter_mut() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *byte = (state >> 33) as u8;
        }
        let d = if b % 2 == 1 { 0xA000u16 } else { 0x2000 } + 7 * b as u16;
        blk[d_off..d_off + 2].copy_from_slice(&d.to_le_bytes());
        if let Some(o) = dmin_off {
            blk[o..o + 2].copy_from_slice(&(0x1C00 + 5 * b as u16).to_le_bytes());
        }
    }
    w
}

/// What the script printed for one type: (type, LCG seed, d offset, dmin offset, quantized-row
/// hashes, dequantization hash).
type Recorded = (DType, u64, usize, Option<usize>, &'static [u64], u64);

#[rustfmt::skip]
const GGML: [Recorded; 4] = [
    (DType::Q2K, 777, 80, Some(82), &[0x8735d81f437f6549, 0xa84b6e31e96a1214, 0x5d805439e0bad704, 0x0e6cd25a50d1c62e, 0xa5319386fff08bbf, 0x0d581dec8b683ff7], 0xc1ec01dea3e72b75),
    (DType::Q3K, 778, 108, None, &[0x5bc0903f7a19f2a6, 0xa82a794c015646f3, 0x6a125553e4810202, 0x32c4d04e1850dad7, 0xb584f9085617e9a8, 0x212bc398d3eb851e], 0x005c1e1e0563796e),
    (DType::IQ4NL, 779, 0, None, &[0x334fd365cf39e553, 0x6c2d7d9111b2bfef, 0x47c3f5f0963d8abb, 0xb441f8021f0e0a77, 0x405121b9ec5bca9d], 0x06b6ead2cc23ce55),
    (DType::IQ4XS, 780, 0, None, &[0x7f24b2ac73a8522c, 0x5375b5de062e1e1e, 0x4a693caa5d57654e, 0x12fba367823867e2, 0x6c5874132fe31e73, 0xb775937bc8711076], 0x90d0749610abee83),
];

#[test]
fn quantized_rows_equal_ggml_bytes() {
    for (dtype, _, _, _, rows, _) in GGML {
        for (r, &want) in rows.iter().enumerate() {
            let mut q = vec![0u8; dtype.row_bytes(N).unwrap()];
            quantize_row(dtype, &row(r), &mut q).unwrap();
            assert_eq!(fnv(&q), want, "{dtype} row {r}");
        }
    }
}

#[test]
fn dequantized_rows_equal_ggml_bits() {
    for (dtype, seed, d_off, dmin_off, _, want) in GGML {
        let w = lcg_blocks(seed, dtype, d_off, dmin_off);
        let mut y = vec![0.0f32; 2 * N];
        dequantize_row(dtype, &w, &mut y).unwrap();
        assert_eq!(fnv(bytemuck::cast_slice(&y)), want, "{dtype}");
    }
}

/// An all-zero IQ4_NL block (which the script leaves out: ggml writes stale codes there)
/// decodes to zeros, and so does a zero super-block of the others (IQ4_XS's to −0: ggml's
/// super-block scale is `−max / 32`, and −0 for a zero block).
#[test]
fn zero_blocks_decode_to_positive_zero() {
    for dtype in [DType::Q2K, DType::Q3K, DType::IQ4NL, DType::IQ4XS] {
        let mut q = vec![0u8; dtype.row_bytes(QK_K).unwrap()];
        quantize_row(dtype, &[0.0; QK_K], &mut q).unwrap();
        let mut y = vec![1.0f32; QK_K];
        dequantize_row(dtype, &q, &mut y).unwrap();
        assert!(y.iter().all(|v| v.to_bits() == 0 || dtype == DType::IQ4XS && v.to_bits() == 0x8000_0000), "{dtype}: {:?}", &y[..4]);
    }
}

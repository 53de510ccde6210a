//! ggml's quantized block layouts with plain reference code: row (de)quantization and a row dot
//! product for every type a GGUF weight we load can have.
//!
//! This is the oracle that optimized kernels are tested against and the fallback a CPU matmul
//! can always run, so it favors obviously-matching-ggml over fast: straightforward loops over
//! blocks, no allocation, no unsafe. Dequantization follows ggml's `dequantize_row_*`
//! expression by expression; the Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q8_1, Q2_K/Q3_K and IQ4_NL/IQ4_XS
//! quantizers follow `quantize_row_*_ref` (byte for byte, tested against ggml's own output),
//! while the Q4_K/Q5_K/Q6_K quantizers use a simpler scale search than ggml (see `kquants`),
//! which is a valid encoding of the same format, only with a little more error.
//!
//! Rows are byte slices exactly `dtype.row_bytes(elements)` long. They need no alignment: a
//! row that can be viewed in place as `&[Block]` is, and a misaligned one (a `Vec<u8>` in a
//! test, say) is read block by block with an unaligned copy instead.

mod blocks;
mod float;
#[cfg(test)]
mod ggml_reference;
mod iq4;
mod kquants;
mod q2k;
mod q3k;
mod q5;
mod q6k;
mod scale_search;
mod simple;
#[cfg(test)]
mod testutil;

pub use blocks::{
    BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8_0, BlockQ8_1,
    KVALUES_IQ4NL, K_SCALE_SIZE, QK, QK_K,
};
pub use iq4::{iq4_codes, iq4xs_scale};
pub use q2k::two_bit_codes;
pub use q3k::{scales_q3k, three_bit_codes};
pub use kquants::{pack_scale_min_k4, scale_min_k4, scales_mins_k4};
pub use q5::five_bit_codes;

use crate::dtype::DType;

/// Why a row could not be (de)quantized. Every check happens before any output is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("no reference (de)quantization for {0}")]
    Unsupported(DType),
    #[error("{elements} elements are not a whole number of {dtype} blocks of {block_len}")]
    PartialBlock {
        dtype: DType,
        elements: usize,
        block_len: usize,
    },
    #[error("{elements} {dtype} elements take {expected} bytes, got {bytes}")]
    LengthMismatch {
        dtype: DType,
        elements: usize,
        bytes: usize,
        expected: usize,
    },
}

/// One quantized block: how many weights it holds and how to turn it into and out of `f32`.
///
/// Implemented by the block structs so kernels can use the per-block reference directly.
/// The slices passed must be exactly [`QuantBlock::LEN`] long; anything else panics (the row
/// functions below check lengths up front, so they never do).
pub trait QuantBlock: bytemuck::Pod {
    const DTYPE: DType;
    /// Weights per block, `DTYPE.block_len()`.
    const LEN: usize;
    fn dequantize(&self, out: &mut [f32]);
    fn quantize(x: &[f32]) -> Self;
}

/// Whether this module can (de)quantize `dtype`.
pub fn is_supported(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32
            | DType::F16
            | DType::BF16
            | DType::Q8_0
            | DType::Q8_1
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q4K
            | DType::Q5K
            | DType::Q6K
            | DType::Q2K
            | DType::Q3K
            | DType::IQ4NL
            | DType::IQ4XS
    )
}

/// Decode a row of `dst.len()` weights from `src`, which must be exactly
/// `dtype.row_bytes(dst.len())` bytes.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_lengths(dtype, dst.len(), src.len())?;
    dequantize_checked(dtype, src, dst)
}

/// `sum_i dequantize(src)[i] * x[i]` without materializing the row: each chunk of
/// [`DOT_CHUNK`] weights is decoded into a stack buffer and dotted in `f32`; chunk sums are
/// added in `f64` so long rows do not lose the small terms.
pub fn dot_row(dtype: DType, src: &[u8], x: &[f32]) -> Result<f32, QuantError> {
    check_lengths(dtype, x.len(), src.len())?;
    let chunk_bytes = expected_bytes(dtype, DOT_CHUNK)?;
    let mut buf = [0.0f32; DOT_CHUNK];
    let mut acc = 0.0f64;
    for (xs, bytes) in x.chunks(DOT_CHUNK).zip(src.chunks(chunk_bytes)) {
        // Every chunk, the last included, is a whole number of blocks: DOT_CHUNK is a multiple
        // of every block length and the row as a whole was checked.
        let w = &mut buf[..xs.len()];
        dequantize_checked(dtype, bytes, w)?;
        acc += f64::from(dot_f32(w, xs));
    }
    Ok(acc as f32)
}

/// Encode `src` into `dst`, which must be exactly `dtype.row_bytes(src.len())` bytes.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_lengths(dtype, src.len(), dst.len())?;
    match dtype {
        DType::F32 => float::quantize_f32(src, dst),
        DType::F16 => float::quantize_f16(src, dst),
        DType::BF16 => float::quantize_bf16(src, dst),
        DType::Q4_0 => quantize_blocks::<BlockQ4_0>(src, dst),
        DType::Q4_1 => quantize_blocks::<BlockQ4_1>(src, dst),
        DType::Q5_0 => quantize_blocks::<BlockQ5_0>(src, dst),
        DType::Q5_1 => quantize_blocks::<BlockQ5_1>(src, dst),
        DType::Q8_0 => quantize_blocks::<BlockQ8_0>(src, dst),
        DType::Q8_1 => quantize_blocks::<BlockQ8_1>(src, dst),
        DType::Q4K => quantize_blocks::<BlockQ4K>(src, dst),
        DType::Q5K => quantize_blocks::<BlockQ5K>(src, dst),
        DType::Q6K => quantize_blocks::<BlockQ6K>(src, dst),
        DType::Q2K => quantize_blocks::<BlockQ2K>(src, dst),
        DType::Q3K => quantize_blocks::<BlockQ3K>(src, dst),
        DType::IQ4NL => quantize_blocks::<BlockIQ4NL>(src, dst),
        DType::IQ4XS => quantize_blocks::<BlockIQ4XS>(src, dst),
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

/// `src` as blocks in place, or `None` when it is misaligned for `B` or not a whole number of
/// blocks. GGUF data is 32-byte aligned, so weights from a model file always view.
pub fn try_view_blocks<B: QuantBlock>(src: &[u8]) -> Option<&[B]> {
    bytemuck::try_cast_slice(src).ok()
}

/// Weights decoded at a time by [`dot_row`]: one k-quant super-block, eight 32-blocks, and
/// small enough (1 KiB) to live on the stack.
pub const DOT_CHUNK: usize = QK_K;

fn expected_bytes(dtype: DType, elements: usize) -> Result<usize, QuantError> {
    // `row_bytes` is also `None` on overflow, which no in-memory `f32` slice can reach: the
    // largest block costs under 2 bytes per weight against the 4 an `f32` already takes.
    dtype.row_bytes(elements).ok_or(QuantError::PartialBlock {
        dtype,
        elements,
        block_len: dtype.block_len(),
    })
}

fn check_lengths(dtype: DType, elements: usize, bytes: usize) -> Result<(), QuantError> {
    if !is_supported(dtype) {
        return Err(QuantError::Unsupported(dtype));
    }
    let expected = expected_bytes(dtype, elements)?;
    if bytes != expected {
        return Err(QuantError::LengthMismatch {
            dtype,
            elements,
            bytes,
            expected,
        });
    }
    Ok(())
}

/// Dispatch once lengths are known to match.
fn dequantize_checked(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    match dtype {
        DType::F32 => float::dequantize_f32(src, dst),
        DType::F16 => float::dequantize_f16(src, dst),
        DType::BF16 => float::dequantize_bf16(src, dst),
        DType::Q4_0 => dequantize_blocks::<BlockQ4_0>(src, dst),
        DType::Q4_1 => dequantize_blocks::<BlockQ4_1>(src, dst),
        DType::Q5_0 => dequantize_blocks::<BlockQ5_0>(src, dst),
        DType::Q5_1 => dequantize_blocks::<BlockQ5_1>(src, dst),
        DType::Q8_0 => dequantize_blocks::<BlockQ8_0>(src, dst),
        DType::Q8_1 => dequantize_blocks::<BlockQ8_1>(src, dst),
        DType::Q4K => dequantize_blocks::<BlockQ4K>(src, dst),
        DType::Q5K => dequantize_blocks::<BlockQ5K>(src, dst),
        DType::Q6K => dequantize_blocks::<BlockQ6K>(src, dst),
        DType::Q2K => dequantize_blocks::<BlockQ2K>(src, dst),
        DType::Q3K => dequantize_blocks::<BlockQ3K>(src, dst),
        DType::IQ4NL => dequantize_blocks::<BlockIQ4NL>(src, dst),
        DType::IQ4XS => dequantize_blocks::<BlockIQ4XS>(src, dst),
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

fn dequantize_blocks<B: QuantBlock>(src: &[u8], dst: &mut [f32]) {
    let outs = dst.chunks_exact_mut(B::LEN);
    match try_view_blocks::<B>(src) {
        Some(blocks) => blocks
            .iter()
            .zip(outs)
            .for_each(|(b, out)| b.dequantize(out)),
        None => src
            .chunks_exact(std::mem::size_of::<B>())
            .zip(outs)
            .for_each(|(bytes, out)| bytemuck::pod_read_unaligned::<B>(bytes).dequantize(out)),
    }
}

fn quantize_blocks<B: QuantBlock>(src: &[f32], dst: &mut [u8]) {
    // Byte copies need no alignment and quantizing is off the hot path.
    let outs = dst.chunks_exact_mut(std::mem::size_of::<B>());
    for (x, out) in src.chunks_exact(B::LEN).zip(outs) {
        out.copy_from_slice(bytemuck::bytes_of(&B::quantize(x)));
    }
}

/// Eight independent accumulators so the loop vectorizes without `-ffast-math` reassociation.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A block's worth of a slice as a fixed-size array, so the per-block code indexes without
/// bounds checks. Panics on a wrong length, which the row functions rule out beforehand.
pub(crate) fn block_out<const N: usize>(out: &mut [f32]) -> &mut [f32; N] {
    out.try_into().expect("output slice is not one block long")
}

/// See [`block_out`].
pub(crate) fn block_in<const N: usize>(x: &[f32]) -> &[f32; N] {
    x.try_into().expect("input slice is not one block long")
}

#[cfg(test)]
mod tests {
    use super::testutil::{aligned_buf, Rng};
    use super::*;

    const SUPPORTED: [DType; 16] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q8_1,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
        DType::Q2K,
        DType::Q3K,
        DType::IQ4NL,
        DType::IQ4XS,
    ];

    /// Rows of several whole blocks plus, for 32-blocks, a length that leaves a short last
    /// chunk in `dot_row`.
    fn lengths(dtype: DType) -> Vec<usize> {
        let bl = dtype.block_len();
        vec![0, bl, 3 * QK_K, QK_K + 3 * bl.max(32)]
    }

    #[test]
    fn supported_set() {
        for t in SUPPORTED {
            assert!(is_supported(t), "{t}");
        }
        for t in [DType::Q8K, DType::I32] {
            assert!(!is_supported(t), "{t}");
        }
    }

    #[test]
    fn dot_row_equals_dot_of_dequantized_row() {
        let mut rng = Rng::new(7);
        for dtype in SUPPORTED {
            for n in lengths(dtype) {
                let w = rng.row(n, -2.0, 2.0);
                let x = rng.row(n, -1.0, 1.0);
                let mut q = vec![0u8; dtype.row_bytes(n).unwrap()];
                quantize_row(dtype, &w, &mut q).unwrap();
                let mut deq = vec![0.0f32; n];
                dequantize_row(dtype, &q, &mut deq).unwrap();
                let want: f64 = deq
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let scale: f64 = deq
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| f64::from((a * b).abs()))
                    .sum();
                let got = f64::from(dot_row(dtype, &q, &x).unwrap());
                assert!(
                    (got - want).abs() <= 1e-5 * scale + 1e-30,
                    "{dtype} n={n}: {got} vs {want}"
                );
            }
        }
    }

    /// Test buffers are not 2-byte aligned in general; both paths must decode identically.
    #[test]
    fn misaligned_rows_decode_like_aligned_ones() {
        let mut rng = Rng::new(11);
        for dtype in SUPPORTED {
            let n = 2 * QK_K;
            let bytes = dtype.row_bytes(n).unwrap();
            let w = rng.row(n, -3.0, 1.0);
            let mut store = aligned_buf(bytes + 1);
            let aligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut store)[..bytes + 1];
            quantize_row(dtype, &w, &mut aligned[..bytes]).unwrap();
            let mut a = vec![0.0f32; n];
            dequantize_row(dtype, &aligned[..bytes], &mut a).unwrap();
            let dot_a = dot_row(dtype, &aligned[..bytes], &w).unwrap();

            aligned.copy_within(0..bytes, 1);
            let shifted = &aligned[1..];
            let mut b = vec![0.0f32; n];
            dequantize_row(dtype, shifted, &mut b).unwrap();
            assert_eq!(a, b, "{dtype}");
            assert_eq!(dot_a, dot_row(dtype, shifted, &w).unwrap(), "{dtype}");
        }
    }

    #[test]
    fn view_blocks_only_when_aligned() {
        let store = aligned_buf(2 * 210 + 1);
        let bytes = bytemuck::cast_slice::<u64, u8>(&store);
        assert_eq!(
            try_view_blocks::<BlockQ6K>(&bytes[..420]).map(<[_]>::len),
            Some(2)
        );
        assert!(
            try_view_blocks::<BlockQ6K>(&bytes[1..421]).is_none(),
            "misaligned"
        );
        assert!(
            try_view_blocks::<BlockQ6K>(&bytes[..419]).is_none(),
            "partial block"
        );
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0.0f32; 64];
        assert_eq!(
            dequantize_row(DType::Q4_1, &[0; 39], &mut out),
            Err(QuantError::LengthMismatch {
                dtype: DType::Q4_1,
                elements: 64,
                bytes: 39,
                expected: 40
            })
        );
        assert_eq!(
            dequantize_row(DType::Q4K, &[0; 144], &mut out),
            Err(QuantError::PartialBlock {
                dtype: DType::Q4K,
                elements: 64,
                block_len: 256
            })
        );
        assert!(matches!(
            dequantize_row(DType::Q8_0, &[0; 34], &mut out[..33]),
            Err(QuantError::PartialBlock { .. })
        ));
        assert!(matches!(
            dot_row(DType::F16, &[0; 127], &out),
            Err(QuantError::LengthMismatch { .. })
        ));
        assert!(matches!(
            dot_row(DType::Q6K, &[0; 210], &out),
            Err(QuantError::PartialBlock { .. })
        ));
        let mut bytes = [0u8; 40];
        assert!(matches!(
            quantize_row(DType::Q8_0, &out, &mut bytes),
            Err(QuantError::LengthMismatch { .. })
        ));
        assert!(matches!(
            quantize_row(DType::BF16, &out[..20], &mut bytes),
            Ok(())
        ));
    }

    #[test]
    fn unsupported_types_are_errors() {
        let mut out = [0.0f32; 32];
        for t in [DType::Q8K, DType::I8, DType::F64] {
            let bytes = vec![0u8; t.row_bytes(256).unwrap()];
            assert_eq!(
                dequantize_row(t, &bytes, &mut out),
                Err(QuantError::Unsupported(t))
            );
            assert_eq!(dot_row(t, &bytes, &out), Err(QuantError::Unsupported(t)));
            assert_eq!(
                quantize_row(t, &out, &mut [0u8; 4]),
                Err(QuantError::Unsupported(t))
            );
        }
        let msg = QuantError::Unsupported(DType::Q8K).to_string();
        assert!(msg.contains("Q8_K"), "{msg}");
    }

    #[test]
    fn dot_f32_handles_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![2.0f32; 19];
        assert_eq!(dot_f32(&a, &b), 2.0 * (0..19).sum::<i32>() as f32);
        assert_eq!(dot_f32(&[], &[]), 0.0);
    }
}

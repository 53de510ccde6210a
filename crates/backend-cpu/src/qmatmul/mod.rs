//! Quantized matmul: activations are quantized to 8 bits once per call ([`Q8Activations`]) and
//! every weight block is dotted against them in integers, on the widest kernel this CPU has.
//! This is how ggml runs quantized weights on a CPU, and the int8 activations are part of the
//! numerics: results match a float reference only within the activations' rounding (see the
//! parity tests). The 32-element formats read [`Q8Row`]s (ggml's Q8_0/Q8_1), the k-quants
//! [`Q8KRow`]s (ggml's Q8_K: one scale per 256, so a super-block's sub-blocks add up in
//! integers). Every kernel adds its float terms in the order of the x86 kernel llama.cpp runs for
//! that type (`ggml_vec_dot_*`, or for Q4_K its repacked GEMM; see `portable`), so all of them
//! give llama.cpp's bits.
//!
//! Kernels, chosen at runtime: AVX-512 VNNI and AVX2 for every integer type (Q4_K on rows
//! interleaved 16 at a time, [`InterleavedQ4K`], as llama.cpp repacks it on x86; the low-bit
//! Q2_K, Q3_K, IQ4_NL and IQ4_XS in `avx512_lowbit`/`avx2_lowbit`), and portable integer code
//! that defines them and runs everywhere else.
//! `crate::isa` picks the set (`QuantIsa::selected`), which `RILL_CPU_ISA` can narrow, for tests
//! and benchmarks (`reference` makes `CpuBackend::new` multiply in f32, see `MatmulMode`).

mod activations;
mod activations_k;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_kquants;
#[cfg(target_arch = "x86_64")]
mod avx2_lowbit;
#[cfg(target_arch = "x86_64")]
mod avx2_q4k;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod avx512_kquants;
#[cfg(target_arch = "x86_64")]
mod avx512_lowbit;
#[cfg(target_arch = "x86_64")]
mod avx512_q4k;
mod portable;
mod q4k_interleaved;
#[cfg(target_arch = "x86_64")]
mod x86;

use rill_backend::DType;

pub use activations::{Formats, Q8Activations, Q8Row, QK};
pub use activations_k::{Q8KActivations, Q8KRow};
pub use q4k_interleaved::{InterleavedQ4K, LANES as INTERLEAVED_ROWS};
/// The kernel sets, chosen in `crate::isa`; `qmatmul::Isa` in the public API (the benches).
pub use crate::isa::QuantIsa as Isa;
use crate::isa::QuantIsa;

/// Whether `dtype` weights take the integer path.
pub fn is_integer_dtype(dtype: DType) -> bool {
    Formats::of(dtype) != Formats::default()
}

/// One f16 to f32 by F16C, for the x86 kernels (the `half` crate's conversion would not inline
/// into their target features).
///
/// # Safety
/// The CPU supports F16C.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn f16_to_f32(bits: u16) -> f32 {
    use std::arch::x86_64::*;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Whether `isa` multiplies `dtype` weights rearranged as an [`InterleavedQ4K`] (with
/// [`tile_interleaved`]) rather than in the file's layout (with [`tile`]). Both give the same bits.
pub fn interleaves(isa: QuantIsa, dtype: DType) -> bool {
    cfg!(target_arch = "x86_64") && dtype == DType::Q4K && isa >= QuantIsa::Avx2
}

/// [`tile`] for the rows of an [`InterleavedQ4K`]: `w` is [`InterleavedQ4K::groups`] of
/// `w_rows` rows.
///
/// # Safety
/// As [`tile`], and [`interleaves`]`(isa, Q4K)`.
pub unsafe fn tile_interleaved(isa: QuantIsa, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == QuantIsa::Avx512Vnni {
            return avx512_q4k::tile(w, w_rows, acts, out, stride);
        }
        if isa >= QuantIsa::Avx2 {
            return avx2_q4k::tile(w, w_rows, acts, out, stride);
        }
    }
    unreachable!("{} does not interleave Q4_K ({w_rows} rows, {} bytes, {}, {out:?}, {stride})", isa.name(), w.len(), acts.rows());
}

/// `out[r·stride + i] = Σ w[i]·x[r]` for the `w_rows` rows of `dtype` weights in `w` (each
/// `acts.cols()` long) and every row of `acts`. Q4_K on an ISA that [`interleaves`] it runs the
/// portable kernel here: production calls [`tile_interleaved`].
///
/// # Safety
/// `isa` must be in [`QuantIsa::available`]; `w` holds at least `w_rows` whole rows; `out` is valid
/// for writes at `r·stride + i` for every `r < acts.rows()`, `i < w_rows`, and nothing else
/// accesses those elements during the call.
pub unsafe fn tile(isa: QuantIsa, dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == QuantIsa::Avx512Vnni && avx512::supports(dtype) {
            return avx512::tile(dtype, w, w_rows, acts, out, stride);
        }
        if isa == QuantIsa::Avx512Vnni && avx512_kquants::supports(dtype) {
            return avx512_kquants::tile(dtype, w, w_rows, acts, out, stride);
        }
        if isa == QuantIsa::Avx512Vnni && avx512_lowbit::supports(dtype) {
            return avx512_lowbit::tile(dtype, w, w_rows, acts, out, stride);
        }
        if isa >= QuantIsa::Avx2 && avx2::supports(dtype) {
            return avx2::tile(dtype, w, w_rows, acts, out, stride);
        }
        if isa >= QuantIsa::Avx2 && avx2_kquants::supports(dtype) {
            return avx2_kquants::tile(dtype, w, w_rows, acts, out, stride);
        }
        if isa >= QuantIsa::Avx2 && avx2_lowbit::supports(dtype) {
            return avx2_lowbit::tile(dtype, w, w_rows, acts, out, stride);
        }
    }
    let _ = isa;
    let row_bytes = dtype.row_bytes(acts.cols()).expect("whole blocks, checked at upload");
    for i in 0..w_rows {
        let wr = &w[i * row_bytes..(i + 1) * row_bytes];
        for r in 0..acts.rows() {
            *out.add(r * stride + i) = match Formats::of(dtype).super_blocks {
                true => portable::dot_row_k(dtype, wr, acts.super_block_row(r)),
                false => portable::dot_row(dtype, wr, acts.row(r)),
            };
        }
    }
}

#[cfg(test)]
mod tests;

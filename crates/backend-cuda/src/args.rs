//! Every kernel takes one `#[repr(C)]` struct by value; these mirror the `*Args` structs in
//! `kernels/*.cu` field for field. The `.cu` files `static_assert` their sizes and a test here
//! reads each kernel's parameter size out of the embedded PTX, so a field added on one side only
//! fails the build or the tests instead of corrupting a launch. Device pointers are plain `u64`.
//!
//! The launch-shape constants the kernels are compiled with (rows per CTA, shared memory) are
//! mirrored here too, next to the struct they go with.

use cudarc::driver::DeviceRepr;

use crate::packed::{Fmt, PackedLayout};

/// `PackedMatrix` in common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PackedMatrixArg {
    pub q: u64,
    pub s: u64,
    pub rows: i32,
    pub cols: i32,
    pub units: i32,
    pub q_stride: i32,
    pub s_stride: i32,
    pub pad: i32,
}

impl PackedMatrixArg {
    /// `base` is the matrix allocation; the scales plane follows the quants plane.
    pub fn new(base: u64, l: &PackedLayout) -> PackedMatrixArg {
        PackedMatrixArg {
            q: base,
            s: base + l.s_offset as u64,
            rows: l.rows as i32,
            cols: l.cols as i32,
            units: l.units as i32,
            q_stride: l.q_stride as i32,
            s_stride: l.s_stride as i32,
            pad: 0,
        }
    }
}

// ---- quant_gemv.cu -----------------------------------------------------------------------------
pub const GEMV_THREADS: u32 = 256;
pub const GEMV_WARPS: usize = 8;
pub const GEMV_MAX_JOBS: usize = 4;
/// Input rows the GEMV kernels take; larger batches go through cuBLAS.
pub const GEMV_MAX_ROWS: usize = 8;

/// `gemv_w`: output rows per warp for a weight type and input row count.
pub fn gemv_rows_per_warp(fmt: Fmt, rows: usize) -> usize {
    if rows <= 2 || fmt.is_float() {
        2
    } else {
        4
    }
}

pub fn gemv_rows_per_cta(fmt: Fmt, rows: usize) -> usize {
    GEMV_WARPS * gemv_rows_per_warp(fmt, rows)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GemvJob {
    pub w: PackedMatrixArg,
    pub out: u64,
    pub cta_begin: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GemvArgs {
    pub jobs: [GemvJob; GEMV_MAX_JOBS],
    pub x: u64,
    pub njobs: i32,
    pub pad: i32,
}

// ---- dequant.cu --------------------------------------------------------------------------------
pub const DQ_THREADS: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DequantArgs {
    pub w: PackedMatrixArg,
    pub out: u64,
    pub row0: i32,
    pub nrows: i32,
    pub ld: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbedArgs {
    pub w: PackedMatrixArg,
    pub tokens: u64,
    pub out: u64,
    pub n: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvertArgs {
    pub x: u64,
    pub out: u64,
    pub n: i64,
}

// ---- elementwise.cu ----------------------------------------------------------------------------
pub const EW_THREADS: u32 = 256;
/// Grid cap of the grid-stride kernels.
pub const EW_MAX_BLOCKS: usize = 8192;
pub const MAX_ROPE_PAIRS: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RmsNormArgs {
    pub x: u64,
    pub weight: u64,
    pub out: u64,
    pub rows: i32,
    pub dim: i32,
    pub eps: f32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RopeArgs {
    pub x: u64,
    pub positions: u64,
    pub rows: i32,
    pub heads: i32,
    pub head_dim: i32,
    pub pairs: i32,
    pub neox: i32,
    pub theta_scale: f32,
    pub freq_scale: f32,
    pub mscale: f32,
    pub has_factors: i32,
    pub pad: i32,
    pub factors: [f32; MAX_ROPE_PAIRS],
}

/// `out = act(gate) · up` (silu_mul, gelu_mul).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GluArgs {
    pub gate: u64,
    pub up: u64,
    pub out: u64,
    pub n: i64,
}

/// `x *= factor` (scale), `x = factor · tanh(x / factor)` (softcap).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScaleArgs {
    pub x: u64,
    pub n: i64,
    pub factor: f32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AddArgs {
    pub x: u64,
    pub y: u64,
    pub n: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AddBiasArgs {
    pub x: u64,
    pub bias: u64,
    pub n: i64,
    pub dim: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GatherArgs {
    pub x: u64,
    pub rows: u64,
    pub out: u64,
    pub x_rows: i64,
    pub n: i32,
    pub dim: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteArgs {
    pub logits: u64,
    pub ids: u64,
    pub weights: u64,
    pub rows: i32,
    pub experts: i32,
    pub used: i32,
    pub normalize: i32,
    pub scale: f32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CombineArgs {
    pub y: u64,
    pub weights: u64,
    pub out: u64,
    pub n: i64,
    pub used: i32,
    pub dim: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GatedAddArgs {
    pub x: u64,
    pub y: u64,
    pub gate: u64,
    pub n: i64,
    pub dim: i32,
    pub pad: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScatterArgs {
    pub src: u64,
    pub rows: u64,
    pub out: u64,
    pub out_rows: i64,
    pub n: i32,
    pub dim: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteKvArgs {
    pub k: u64,
    pub v: u64,
    pub slots: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub num_slots: i64,
    pub n: i32,
    pub row: i32,
    pub f16: i32,
    pub pad: i32,
}

// ---- attention.cu ------------------------------------------------------------------------------
pub const ATT_THREADS: u32 = 128;
/// Key/value positions per prefill tile.
pub const PF_TK: usize = 32;

/// Query rows of one prefill CTA (`pf_rows`).
pub fn prefill_rows(head_dim: usize) -> usize {
    16 * if head_dim <= 128 { 4 } else { 2 }
}

/// Dynamic shared memory of `attn_prefill_*_hd<head_dim>` (`pf_smem_floats` * 4).
pub fn prefill_smem_bytes(head_dim: usize) -> usize {
    let (rows, qs) = (prefill_rows(head_dim), head_dim + 4);
    4 * (rows * qs + PF_TK * qs + PF_TK * head_dim + rows * (PF_TK + 1))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AttnArgs {
    pub q: u64,
    pub out: u64,
    pub k_cache: u64,
    pub v_cache: u64,
    pub positions: u64,
    pub token_seq: u64,
    pub block_tables: u64,
    pub part_acc: u64,
    pub part_ml: u64,
    pub num_tokens: i32,
    pub num_seqs: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub group: i32,
    pub head_dim: i32,
    pub block_size: i32,
    pub max_blocks: i32,
    pub num_blocks: i32,
    pub split_len: i32,
    pub splits: i32,
    pub head_chunks: i32,
    pub classify: i32,
    pub tq: i32,
    /// Multiplies the query: the layer's scale, divided by the soft cap where there is one.
    pub scale: f32,
    /// 0: none.
    pub softcap: f32,
    /// Sliding window in keys; 0: none.
    pub window: i32,
    pub pad: i32,
}

// ---- sample.cu ---------------------------------------------------------------------------------
pub const SAMPLE_THREADS: u32 = 1024;
/// Rows of parameters the sample kernel's upload buffer holds from the start (it grows on demand).
pub const SAMPLE_PARAM_ROWS: usize = 1024;

/// `rill_backend::DrawParams` as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleRow {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub uniform: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleArgs {
    pub logits: u64,
    pub params: u64,
    pub out: u64,
    pub rows: i32,
    pub vocab: i32,
}

// SAFETY: plain `#[repr(C)]` data (integers, floats, device addresses) laid out as the C structs
// the kernels declare; cudarc copies the bytes into the launch.
unsafe impl DeviceRepr for GemvArgs {}
unsafe impl DeviceRepr for DequantArgs {}
unsafe impl DeviceRepr for EmbedArgs {}
unsafe impl DeviceRepr for ConvertArgs {}
unsafe impl DeviceRepr for RmsNormArgs {}
unsafe impl DeviceRepr for RopeArgs {}
unsafe impl DeviceRepr for GluArgs {}
unsafe impl DeviceRepr for ScaleArgs {}
unsafe impl DeviceRepr for AddArgs {}
unsafe impl DeviceRepr for AddBiasArgs {}
unsafe impl DeviceRepr for GatherArgs {}
unsafe impl DeviceRepr for RouteArgs {}
unsafe impl DeviceRepr for CombineArgs {}
unsafe impl DeviceRepr for GatedAddArgs {}
unsafe impl DeviceRepr for ScatterArgs {}
unsafe impl DeviceRepr for WriteKvArgs {}
unsafe impl DeviceRepr for AttnArgs {}
unsafe impl DeviceRepr for SampleRow {}
unsafe impl DeviceRepr for SampleArgs {}

/// Blocks for a grid-stride kernel over `n` elements.
pub fn ew_blocks(n: usize) -> u32 {
    n.div_ceil(EW_THREADS as usize).clamp(1, EW_MAX_BLOCKS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn sizes_match_the_static_asserts_in_the_kernels() {
        assert_eq!(size_of::<PackedMatrixArg>(), 40);
        assert_eq!(size_of::<GemvJob>(), 56);
        assert_eq!(size_of::<GemvArgs>(), 240);
        assert_eq!(size_of::<DequantArgs>(), 64);
        assert_eq!(size_of::<EmbedArgs>(), 64);
        assert_eq!(size_of::<ConvertArgs>(), 24);
        assert_eq!(size_of::<RmsNormArgs>(), 40);
        assert_eq!(size_of::<RopeArgs>(), 1080);
        assert_eq!(size_of::<GluArgs>(), 32);
        assert_eq!(size_of::<ScaleArgs>(), 24);
        assert_eq!(size_of::<AddArgs>(), 24);
        assert_eq!(size_of::<AddBiasArgs>(), 32);
        assert_eq!(size_of::<GatherArgs>(), 40);
        assert_eq!(size_of::<RouteArgs>(), 48);
        assert_eq!(size_of::<CombineArgs>(), 40);
        assert_eq!(size_of::<GatedAddArgs>(), 40);
        assert_eq!(size_of::<ScatterArgs>(), 40);
        assert_eq!(size_of::<WriteKvArgs>(), 64);
        assert_eq!(size_of::<AttnArgs>(), 144);
        assert_eq!(size_of::<SampleRow>(), 20);
        assert_eq!(size_of::<SampleArgs>(), 32);
    }

    /// Every field offset of the C structs (printed by abi/offsets.cu at build time) equals the
    /// Rust mirror's, and every listed struct has the same size.
    #[test]
    fn field_offsets_match_the_kernels() {
        use std::mem::offset_of;
        macro_rules! layout {
            ($($s:ident { $($f:ident),* })*) => {
                vec![$((stringify!($s).to_string(), size_of::<$s>()), $((format!("{}.{}", stringify!($s), stringify!($f)), offset_of!($s, $f))),*,)*]
            };
        }
        type PackedMatrix = PackedMatrixArg;
        let rust: Vec<(String, usize)> = layout! {
            PackedMatrix { q, s, rows, cols, units, q_stride, s_stride }
            GemvJob { w, out, cta_begin }
            GemvArgs { jobs, x, njobs }
            DequantArgs { w, out, row0, nrows, ld }
            EmbedArgs { w, tokens, out, n }
            ConvertArgs { x, out, n }
            RmsNormArgs { x, weight, out, rows, dim, eps }
            RopeArgs { x, positions, rows, heads, head_dim, pairs, neox, theta_scale, freq_scale, mscale, has_factors, factors }
            GluArgs { gate, up, out, n }
            ScaleArgs { x, n, factor }
            AddArgs { x, y, n }
            AddBiasArgs { x, bias, n, dim }
            GatherArgs { x, rows, out, x_rows, n, dim }
            RouteArgs { logits, ids, weights, rows, experts, used, normalize, scale }
            CombineArgs { y, weights, out, n, used, dim }
            GatedAddArgs { x, y, gate, n, dim }
            ScatterArgs { src, rows, out, out_rows, n, dim }
            WriteKvArgs { k, v, slots, k_cache, v_cache, num_slots, n, row, f16 }
            AttnArgs { q, out, k_cache, v_cache, positions, token_seq, block_tables, part_acc, part_ml, num_tokens,
                num_seqs, heads, kv_heads, group, head_dim, block_size, max_blocks, num_blocks, split_len, splits,
                head_chunks, classify, tq, scale, softcap, window }
            SampleRow { temperature, top_k, top_p, min_p, uniform }
            SampleArgs { logits, params, out, rows, vocab }
        };
        let c = include_str!(concat!(env!("OUT_DIR"), "/abi_offsets.txt"));
        if c.is_empty() {
            println!("skipped: build.rs could not build the offsets program (see its cargo warning)");
            return;
        }
        let c: Vec<(String, usize)> = c
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(' ').expect("'name value'");
                (k.to_string(), v.parse().expect("a number"))
            })
            .collect();
        assert_eq!(c, rust, "kernel argument layouts (C, then Rust)");
    }

    #[test]
    fn prefill_shared_memory_fits_an_sm90_block() {
        assert_eq!(prefill_smem_bytes(64), 42752);
        for hd in [64, 128, 256] {
            assert!(prefill_smem_bytes(hd) + 1152 <= 227 * 1024, "hd {hd}");
        }
    }
}

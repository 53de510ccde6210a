//! Q4_K weights rearranged for the x86 kernels: 16 rows interleaved, so one 512-bit register
//! holds four consecutive codes of each of 16 rows and its 16 integer lanes are 16 outputs. A
//! `vpdpbusd` against four activation bytes broadcast to every lane then advances 16 dots at
//! once and no horizontal sums are left at the end (the per-row layout spends about half its
//! time folding lanes and finishing each super-block per output). llama.cpp does the same on x86
//! (`block_q4_Kx8`, made at load); this copy is made on a matrix's first integer matmul, so an
//! embedding table that is only ever gathered is never copied.
//!
//! The numerics are those of llama.cpp's x86 repacked Q4_K GEMM (`ggml_gemm_q4_K_8x8_q8_K`, what
//! it runs for Q4_K prompts): per pair of sub-blocks, `acc = fma(Σ scale·dot, d_w·d_x, acc)` and
//! `mins = fma(Σ min·Σx, dmin_w·d_x, mins)`, the row's result `acc − mins`
//! (`super::portable`'s Q4_K twin reads the file's layout and gives the same bits). Every term
//! belongs to one (weight row, activation row), so decode and prefill agree bit for bit.
//!
//! Layout, per group of 16 rows and super-block ([`BLOCK_BYTES`], 64-byte aligned): the codes
//! as `[pair 4][k 8][row 16][4 bytes]` (byte `t` of `[p][k][row]` is the file's `qs[32p + 4k + t]`:
//! low nibble element `64p + 4k + t`, high nibble element `64p + 32 + 4k + t`), the scales as
//! `[sub-block 8][row 16]`, the mins as `[pair 4][row 16][2]`, then `d` and `dmin` as `[row 16]`
//! f32. Rows past the matrix (the last group of a matrix whose rows are not a multiple of 16) are
//! zero and never written out.

use rill_backend::quant::{scales_mins_k4, BlockQ4K, QK_K};

/// Weight rows per interleaved group: the 32-bit lanes of a 512-bit register.
pub const LANES: usize = 16;
/// Where the parts of a (group, super-block) begin, in bytes.
pub const SCALES_AT: usize = 4 * 8 * LANES * 4;
pub const MINS_AT: usize = SCALES_AT + 8 * LANES;
pub const D_AT: usize = MINS_AT + 4 * LANES * 2;
pub const DMIN_AT: usize = D_AT + 4 * LANES;
/// One (group, super-block).
pub const BLOCK_BYTES: usize = DMIN_AT + 4 * LANES;

/// A 64-byte line, so every part of a block is aligned for its loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

const _: () = assert!(BLOCK_BYTES.is_multiple_of(64));

pub struct InterleavedQ4K {
    lines: Vec<Line>,
    rows: usize,
    blocks: usize,
}

impl InterleavedQ4K {
    /// Rearranges `rows` Q4_K rows of `cols` elements (`w` in the file's layout).
    pub fn new(w: &[u8], rows: usize, cols: usize) -> InterleavedQ4K {
        let blocks = cols / QK_K;
        let row_bytes = blocks * size_of::<BlockQ4K>();
        assert!(cols.is_multiple_of(QK_K) && w.len() >= rows * row_bytes, "{rows}x{cols} Q4_K in {} bytes", w.len());
        let groups = rows.div_ceil(LANES);
        let mut lines = vec![Line([0; 64]); groups * blocks * BLOCK_BYTES / 64];
        // SAFETY: `Line` is 64 plain bytes; the slice covers exactly the vector's memory.
        let bytes = unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * 64) };
        for (gb, dst) in bytes.chunks_exact_mut(BLOCK_BYTES).enumerate() {
            let (g, b) = (gb / blocks, gb % blocks);
            for lane in 0..LANES.min(rows - g * LANES) {
                let at = (g * LANES + lane) * row_bytes + b * size_of::<BlockQ4K>();
                let blk: BlockQ4K = bytemuck::pod_read_unaligned(&w[at..at + size_of::<BlockQ4K>()]);
                interleave_block(&blk, lane, dst);
            }
        }
        InterleavedQ4K { lines, rows, blocks }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The groups holding rows `lo..hi` (`lo` a multiple of [`LANES`]), `blocks` per group.
    pub fn groups(&self, lo: usize, hi: usize) -> &[u8] {
        debug_assert!(lo.is_multiple_of(LANES) && lo < hi && hi <= self.rows);
        let group_lines = self.blocks * BLOCK_BYTES / 64;
        let lines = &self.lines[lo / LANES * group_lines..hi.div_ceil(LANES) * group_lines];
        // SAFETY: `Line` is 64 plain bytes.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<u8>(), lines.len() * 64) }
    }
}

/// Writes one row's super-block into lane `lane` of `dst` (a group's super-block).
fn interleave_block(blk: &BlockQ4K, lane: usize, dst: &mut [u8]) {
    for p in 0..4 {
        for k in 0..8 {
            let at = 512 * p + 64 * k + 4 * lane;
            dst[at..at + 4].copy_from_slice(&blk.qs[32 * p + 4 * k..32 * p + 4 * k + 4]);
        }
    }
    let sm = scales_mins_k4(&blk.scales);
    for s in 0..8 {
        dst[SCALES_AT + LANES * s + lane] = sm[s];
    }
    for p in 0..4 {
        let at = MINS_AT + 2 * LANES * p + 2 * lane;
        dst[at..at + 2].copy_from_slice(&sm[8 + 2 * p..8 + 2 * p + 2]);
    }
    dst[D_AT + 4 * lane..D_AT + 4 * lane + 4].copy_from_slice(&blk.d.to_f32().to_le_bytes());
    dst[DMIN_AT + 4 * lane..DMIN_AT + 4 * lane + 4].copy_from_slice(&blk.dmin.to_f32().to_le_bytes());
}

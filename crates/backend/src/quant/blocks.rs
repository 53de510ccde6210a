//! The quantized block structs, byte for byte as ggml lays them out (`ggml-common.h`).
//!
//! GGUF tensor data is a plain array of these blocks, so a weight row can be viewed in place as
//! `&[Block]` (see [`super::try_view_blocks`]). Field order and sizes are what make that sound,
//! hence a compile-time assert per struct tying it to [`crate::DType::block_bytes`]; `Pod` (derived,
//! which also proves there is no padding) is what makes the cast itself safe.
//!
//! Multi-byte fields (`f16`) are read in native byte order while GGUF is little-endian, so these
//! layouts are only valid on little-endian targets; the assert below keeps a big-endian build
//! from silently reading garbage.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements per block of the "simple" formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1); ggml's `QK4_0` etc.
pub const QK: usize = 32;
/// Elements per super-block of the k-quants; ggml's `QK_K`.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K / Q5_K; ggml's `K_SCALE_SIZE`.
pub const K_SCALE_SIZE: usize = 12;

const _: () = assert!(
    cfg!(target_endian = "little"),
    "quant blocks read GGUF's little-endian f16 fields natively"
);

/// 32 weights `w = d * (q - 8)` with 4-bit `q`. Byte `j` of `qs` holds element `j` in its low
/// nibble and element `j + 16` in its high nibble.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// 32 weights `w = d * q + m` with 4-bit `q`; nibble order as in [`BlockQ4_0`].
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// 32 weights `w = d * (q - 16)` with 5-bit `q`: its low 4 bits in `qs` (nibble order as in
/// [`BlockQ4_0`]), its fifth bit for element `j` in bit `j` of `qh` read as a little-endian `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// 32 weights `w = d * q + m` with 5-bit `q`, bits as in [`BlockQ5_0`].
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// 32 weights `w = d * q` with signed 8-bit `q`.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// Q8_0 plus `s = d * sum(qs)`: ggml quantizes activations to this to dot them against Q4_1-like
/// weights, where the precomputed sum folds the weights' `m` offset in one multiply.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: f16,
    pub s: f16,
    pub qs: [i8; QK],
}

/// 256 weights in 8 sub-blocks of 32: `w = d * sc[j] * q - dmin * m[j]`, 4-bit `q`, 6-bit
/// `sc`/`m` packed into `scales` (see `kquants::scale_min_k4`). Each 32 bytes of `qs` hold two
/// sub-blocks: the first in the low nibbles, the second in the high nibbles.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// As [`BlockQ4K`] with 5-bit `q`: the fifth bit of element `l` of sub-block pair `p` (elements
/// `64p + l` and `64p + 32 + l`) is bit `2p` resp. `2p + 1` of `qh[l]`.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 256 weights in 16 sub-blocks of 16: `w = d * scales[j] * (q - 32)` with 6-bit `q` split into
/// 4 low bits (`ql`) and 2 high bits (`qh`); the super-block scale sits last.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// 256 weights in 16 sub-blocks of 16: `w = d * sc[j] * q - dmin * m[j]` with 2-bit `q`;
/// `scales[j]` holds `sc[j]` in its low and `m[j]` in its high nibble. Byte `l` of each 32 bytes
/// of `qs` holds elements `l`, `l + 32`, `l + 64`, `l + 96` of that 128-element half, two bits
/// each from the lowest.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// 256 weights in 16 sub-blocks of 16: `w = d * (sc[j] - 32) * (q - 4)` with 3-bit `q`: its two
/// low bits in `qs` (as in [`BlockQ2K`]) and its third in `hmask` (bit `e / 32` of byte `e % 32`
/// for element `e`; a set bit means `q >= 4`); the 6-bit `sc` packed into 12 bytes (see
/// `q3k::scales_q3k`).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; K_SCALE_SIZE],
    pub d: f16,
}

/// 32 weights `w = d * KVALUES_IQ4NL[q]` with 4-bit `q` (nibble order as in [`BlockQ4_0`]): a
/// non-linear codebook instead of evenly spaced levels.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIQ4NL {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// 256 weights in 8 sub-blocks of 32: `w = d * (ls[j] - 32) * KVALUES_IQ4NL[q]`, each 6-bit `ls`
/// split into a nibble in `scales_l` (sub-block `2i` low, `2i + 1` high) and 2 bits in
/// `scales_h` (bits `2j..2j + 2`); each 16 bytes of `qs` one sub-block as in [`BlockIQ4NL`].
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIQ4XS {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

/// IQ4_NL's and IQ4_XS's 16 levels (ggml's `kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

// Sizes must equal ggml's, or every offset into a GGUF tensor would be wrong. `DType::block_bytes`
// is not a `const fn`, so the literals are checked here and against the table in the tests below.
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);
const _: () = assert!(std::mem::size_of::<BlockIQ4NL>() == 18);
const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use std::mem::{align_of, offset_of, size_of};

    #[test]
    fn sizes_match_dtype_table() {
        assert_eq!(size_of::<BlockQ4_0>(), DType::Q4_0.block_bytes());
        assert_eq!(size_of::<BlockQ4_1>(), DType::Q4_1.block_bytes());
        assert_eq!(size_of::<BlockQ5_0>(), DType::Q5_0.block_bytes());
        assert_eq!(size_of::<BlockQ5_1>(), DType::Q5_1.block_bytes());
        assert_eq!(size_of::<BlockQ8_0>(), DType::Q8_0.block_bytes());
        assert_eq!(size_of::<BlockQ8_1>(), DType::Q8_1.block_bytes());
        assert_eq!(size_of::<BlockQ4K>(), DType::Q4K.block_bytes());
        assert_eq!(size_of::<BlockQ5K>(), DType::Q5K.block_bytes());
        assert_eq!(size_of::<BlockQ6K>(), DType::Q6K.block_bytes());
        assert_eq!(size_of::<BlockQ2K>(), DType::Q2K.block_bytes());
        assert_eq!(size_of::<BlockQ3K>(), DType::Q3K.block_bytes());
        assert_eq!(size_of::<BlockIQ4NL>(), DType::IQ4NL.block_bytes());
        assert_eq!(size_of::<BlockIQ4XS>(), DType::IQ4XS.block_bytes());
        assert_eq!(DType::Q4_0.block_len(), QK);
        assert_eq!(DType::Q6K.block_len(), QK_K);
    }

    /// GGUF aligns tensor data to 32 bytes and every block size above is even, so a 2-byte
    /// alignment requirement is what lets weights be viewed in place.
    #[test]
    fn blocks_need_only_f16_alignment() {
        assert_eq!(align_of::<BlockQ4_0>(), 2);
        assert_eq!(align_of::<BlockQ5_0>(), 2);
        assert_eq!(align_of::<BlockQ5_1>(), 2);
        assert_eq!(align_of::<BlockQ8_1>(), 2);
        assert_eq!(align_of::<BlockQ4K>(), 2);
        assert_eq!(align_of::<BlockQ6K>(), 2);
        assert_eq!(align_of::<BlockQ2K>(), 2);
        assert_eq!(align_of::<BlockQ3K>(), 2);
        assert_eq!(align_of::<BlockIQ4NL>(), 2);
        assert_eq!(align_of::<BlockIQ4XS>(), 2);
    }

    #[test]
    fn field_offsets_match_ggml() {
        assert_eq!(offset_of!(BlockQ4_1, m), 2);
        assert_eq!(offset_of!(BlockQ4_1, qs), 4);
        assert_eq!(offset_of!(BlockQ5_0, qh), 2);
        assert_eq!(offset_of!(BlockQ5_0, qs), 6);
        assert_eq!(offset_of!(BlockQ5_1, m), 2);
        assert_eq!(offset_of!(BlockQ5_1, qh), 4);
        assert_eq!(offset_of!(BlockQ5_1, qs), 8);
        assert_eq!(offset_of!(BlockQ8_1, qs), 4);
        assert_eq!(offset_of!(BlockQ4K, scales), 4);
        assert_eq!(offset_of!(BlockQ4K, qs), 16);
        assert_eq!(offset_of!(BlockQ5K, qh), 16);
        assert_eq!(offset_of!(BlockQ5K, qs), 48);
        assert_eq!(offset_of!(BlockQ6K, qh), 128);
        assert_eq!(offset_of!(BlockQ6K, scales), 192);
        assert_eq!(offset_of!(BlockQ6K, d), 208);
        assert_eq!((offset_of!(BlockQ2K, qs), offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)), (16, 80, 82));
        assert_eq!((offset_of!(BlockQ3K, qs), offset_of!(BlockQ3K, scales), offset_of!(BlockQ3K, d)), (32, 96, 108));
        assert_eq!(offset_of!(BlockIQ4NL, qs), 2);
        assert_eq!((offset_of!(BlockIQ4XS, scales_h), offset_of!(BlockIQ4XS, scales_l), offset_of!(BlockIQ4XS, qs)), (2, 4, 8));
    }
}

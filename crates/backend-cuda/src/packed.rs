//! The device layout of a weight matrix, written once at upload.
//!
//! ggml blocks are 18, 20, 22, 24, 34 or 210 bytes, so most of them cannot be read with the 16-byte
//! loads a bandwidth-bound GEMV needs. `upload_matrix` therefore splits each row into a "quants"
//! plane (16-byte aligned rows of codes) and a "scales" plane (the f16 `d`, `m`), and pads float
//! rows to whole 32-element units. Q5_0/Q5_1 keep their codes' fifth bits after the row's 4-bit
//! codes, one word per block, with the bits transposed ([`transpose_qh`]) so a kernel takes four
//! of them with one shift and one mask. Q4_K and Q5_K blocks (144 and 176 bytes) are already aligned and stay
//! as they are; Q6_K, Q2_K and Q3_K keep their blocks but move the f16 scales to the scales plane
//! (Q3_K padded to 112 bytes); IQ4_NL is laid out as Q4_0, and IQ4_XS keeps its 128 bytes of
//! codes per block with its 8-byte header in the scales plane. The layout is described in `kernels/common.cuh` and read by `kernels/packed.cuh`;
//! [`decode_unit`] is the Rust twin of that reader, tested here against
//! `rill_backend::quant::dequantize_row`, so the unit mapping the kernels rely on is checked on
//! any machine.

use rill_backend::DType;

/// Weight types the kernels read, numbered as `FMT_*` in `kernels/common.cuh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fmt {
    F32 = 0,
    F16 = 1,
    BF16 = 2,
    Q4_0 = 3,
    Q4_1 = 4,
    Q8_0 = 5,
    Q4K = 6,
    Q5K = 7,
    Q6K = 8,
    Q5_0 = 9,
    Q5_1 = 10,
    Q2K = 11,
    Q3K = 12,
    IQ4NL = 13,
    IQ4XS = 14,
}

impl Fmt {
    pub const ALL: [Fmt; 15] = [
        Fmt::F32,
        Fmt::F16,
        Fmt::BF16,
        Fmt::Q4_0,
        Fmt::Q4_1,
        Fmt::Q8_0,
        Fmt::Q4K,
        Fmt::Q5K,
        Fmt::Q6K,
        Fmt::Q5_0,
        Fmt::Q5_1,
        Fmt::Q2K,
        Fmt::Q3K,
        Fmt::IQ4NL,
        Fmt::IQ4XS,
    ];

    pub fn of(dtype: DType) -> Option<Fmt> {
        Some(match dtype {
            DType::F32 => Fmt::F32,
            DType::F16 => Fmt::F16,
            DType::BF16 => Fmt::BF16,
            DType::Q4_0 => Fmt::Q4_0,
            DType::Q4_1 => Fmt::Q4_1,
            DType::Q5_0 => Fmt::Q5_0,
            DType::Q5_1 => Fmt::Q5_1,
            DType::Q8_0 => Fmt::Q8_0,
            DType::Q4K => Fmt::Q4K,
            DType::Q5K => Fmt::Q5K,
            DType::Q6K => Fmt::Q6K,
            DType::Q2K => Fmt::Q2K,
            DType::Q3K => Fmt::Q3K,
            DType::IQ4NL => Fmt::IQ4NL,
            DType::IQ4XS => Fmt::IQ4XS,
            _ => return None,
        })
    }

    pub fn dtype(self) -> DType {
        match self {
            Fmt::F32 => DType::F32,
            Fmt::F16 => DType::F16,
            Fmt::BF16 => DType::BF16,
            Fmt::Q4_0 => DType::Q4_0,
            Fmt::Q4_1 => DType::Q4_1,
            Fmt::Q5_0 => DType::Q5_0,
            Fmt::Q5_1 => DType::Q5_1,
            Fmt::Q8_0 => DType::Q8_0,
            Fmt::Q4K => DType::Q4K,
            Fmt::Q5K => DType::Q5K,
            Fmt::Q6K => DType::Q6K,
            Fmt::Q2K => DType::Q2K,
            Fmt::Q3K => DType::Q3K,
            Fmt::IQ4NL => DType::IQ4NL,
            Fmt::IQ4XS => DType::IQ4XS,
        }
    }

    /// The kernel name suffix (`gemv_<suffix>_r1`, `embed_<suffix>`, ...).
    pub fn suffix(self) -> &'static str {
        match self {
            Fmt::F32 => "f32",
            Fmt::F16 => "f16",
            Fmt::BF16 => "bf16",
            Fmt::Q4_0 => "q4_0",
            Fmt::Q4_1 => "q4_1",
            Fmt::Q5_0 => "q5_0",
            Fmt::Q5_1 => "q5_1",
            Fmt::Q8_0 => "q8_0",
            Fmt::Q4K => "q4_k",
            Fmt::Q5K => "q5_k",
            Fmt::Q6K => "q6_k",
            Fmt::Q2K => "q2_k",
            Fmt::Q3K => "q3_k",
            Fmt::IQ4NL => "iq4_nl",
            Fmt::IQ4XS => "iq4_xs",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Fmt::F32 | Fmt::F16 | Fmt::BF16)
    }
}

/// Weights per unit, the granule every kernel reads.
pub const UNIT: usize = 32;
/// Bytes of a packed Q6_K block (ql, qh, scales; `d` moves to the scales plane).
pub const Q6K_PACKED_BYTES: usize = 208;
/// Bytes of a packed Q2_K block (scales, qs; `d` and `dmin` move to the scales plane).
pub const Q2K_PACKED_BYTES: usize = 80;
/// Bytes of a packed Q3_K block: hmask, qs, scales (108 bytes; `d` moves to the scales plane)
/// and 4 zero bytes, so every block stays 16-byte aligned.
pub const Q3K_PACKED_BYTES: usize = 112;
/// Bytes of an IQ4_XS block's header (d, scales_h, scales_l), kept in the scales plane.
const IQ4XS_HEADER: usize = 8;
/// The scales plane starts on this boundary.
const PLANE_ALIGN: usize = 256;

/// Where a packed matrix keeps its planes (all sizes in bytes unless named otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedLayout {
    pub fmt: Fmt,
    pub rows: usize,
    /// Input features, unpadded.
    pub cols: usize,
    /// 32-weight units per row: `cols` rounded up to 32, over 32.
    pub units: usize,
    pub q_stride: usize,
    pub s_stride: usize,
    pub s_offset: usize,
    pub total_bytes: usize,
}

impl PackedLayout {
    /// `None` when the type is not one the kernels read or `cols` is not whole blocks.
    pub fn new(dtype: DType, rows: usize, cols: usize) -> Option<PackedLayout> {
        let fmt = Fmt::of(dtype)?;
        if !cols.is_multiple_of(dtype.block_len()) {
            return None;
        }
        let units = cols.div_ceil(UNIT);
        let blocks = cols / dtype.block_len();
        let (q_stride, s_stride) = match fmt {
            Fmt::F32 => (units * 128, 0),
            Fmt::F16 | Fmt::BF16 => (units * 64, 0),
            Fmt::Q4_0 => (units * 16, units * 2),
            Fmt::Q4_1 => (units * 16, units * 4),
            // 16 bytes of codes and a word of fifth bits per block.
            Fmt::Q5_0 => ((units * 20).next_multiple_of(16), units * 2),
            Fmt::Q5_1 => ((units * 20).next_multiple_of(16), units * 4),
            Fmt::Q8_0 => (units * 32, units * 2),
            Fmt::Q4K => (blocks * 144, 0),
            Fmt::Q5K => (blocks * 176, 0),
            Fmt::Q6K => (blocks * Q6K_PACKED_BYTES, blocks * 2),
            Fmt::Q2K => (blocks * Q2K_PACKED_BYTES, blocks * 4),
            Fmt::Q3K => (blocks * Q3K_PACKED_BYTES, blocks * 2),
            Fmt::IQ4NL => (units * 16, units * 2),
            Fmt::IQ4XS => (blocks * 128, blocks * IQ4XS_HEADER),
        };
        let s_offset = rows.checked_mul(q_stride)?.checked_next_multiple_of(PLANE_ALIGN)?;
        let total_bytes = s_offset.checked_add(rows.checked_mul(s_stride)?)?;
        Some(PackedLayout { fmt, rows, cols, units, q_stride, s_stride, s_offset, total_bytes })
    }

    pub fn cols_padded(&self) -> usize {
        self.units * UNIT
    }
}

/// Rewrites `src` (`rows` ggml rows, already checked to be `rows * row_bytes` long) into the
/// packed layout.
pub fn pack(l: &PackedLayout, src: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; l.total_bytes];
    if l.rows == 0 {
        return out;
    }
    let row_bytes = src.len() / l.rows;
    let (qp, sp) = out.split_at_mut(l.s_offset);
    for r in 0..l.rows {
        let s = &src[r * row_bytes..(r + 1) * row_bytes];
        let q = &mut qp[r * l.q_stride..(r + 1) * l.q_stride];
        let sc = &mut sp[r * l.s_stride..(r + 1) * l.s_stride];
        match l.fmt {
            Fmt::F32 | Fmt::F16 | Fmt::BF16 | Fmt::Q4K | Fmt::Q5K => q[..row_bytes].copy_from_slice(s),
            Fmt::Q4_0 | Fmt::IQ4NL => split_blocks(s, 18, 2, 16, q, sc),
            Fmt::IQ4XS => split_blocks(s, 136, IQ4XS_HEADER, 128, q, sc),
            Fmt::Q2K => split_tail(s, 84, Q2K_PACKED_BYTES, Q2K_PACKED_BYTES, q, sc),
            Fmt::Q3K => split_tail(s, 110, 108, Q3K_PACKED_BYTES, q, sc),
            Fmt::Q4_1 => split_blocks(s, 20, 4, 16, q, sc),
            Fmt::Q8_0 => split_blocks(s, 34, 2, 32, q, sc),
            Fmt::Q5_0 => split_q5_blocks(s, 22, 2, l.units, q, sc),
            Fmt::Q5_1 => split_q5_blocks(s, 24, 4, l.units, q, sc),
            Fmt::Q6K => split_tail(s, 210, Q6K_PACKED_BYTES, Q6K_PACKED_BYTES, q, sc),
        }
    }
    out
}

/// Blocks of `block` bytes whose first `head` bytes are scales and the rest `body` bytes of codes.
fn split_blocks(src: &[u8], block: usize, head: usize, body: usize, q: &mut [u8], s: &mut [u8]) {
    for (b, blk) in src.chunks_exact(block).enumerate() {
        s[b * head..(b + 1) * head].copy_from_slice(&blk[..head]);
        q[b * body..(b + 1) * body].copy_from_slice(&blk[head..]);
    }
}

/// Blocks of `block` bytes whose first `body` bytes are codes (copied `stride` bytes apart, the
/// gap left zero) and the rest scales.
fn split_tail(src: &[u8], block: usize, body: usize, stride: usize, q: &mut [u8], s: &mut [u8]) {
    let head = block - body;
    for (b, blk) in src.chunks_exact(block).enumerate() {
        q[b * stride..b * stride + body].copy_from_slice(&blk[..body]);
        s[b * head..(b + 1) * head].copy_from_slice(&blk[body..]);
    }
}

/// Q5 blocks of `block` bytes: `head` bytes of scales, the `qh` word, 16 bytes of codes. The codes
/// go where Q4's would, the transposed `qh` words after all `blocks` of them.
fn split_q5_blocks(src: &[u8], block: usize, head: usize, blocks: usize, q: &mut [u8], s: &mut [u8]) {
    let (codes, fifth) = q.split_at_mut(16 * blocks);
    for (b, blk) in src.chunks_exact(block).enumerate() {
        s[b * head..(b + 1) * head].copy_from_slice(&blk[..head]);
        let qh = u32::from_le_bytes(blk[head..head + 4].try_into().expect("4 bytes"));
        fifth[4 * b..4 * b + 4].copy_from_slice(&transpose_qh(qh).to_le_bytes());
        codes[16 * b..16 * (b + 1)].copy_from_slice(&blk[head + 4..]);
    }
}

/// ggml's fifth bits (bit `e` for element `e`) with bit `4m + k` moved to `8k + m`: word `i` of
/// run `r` (elements `16r + 4i + k`, one per byte `k`) then finds its four bits at `4r + i` of
/// each byte, the positions `NibbleBlocks::decode` in packed.cuh shifts down.
pub fn transpose_qh(qh: u32) -> u32 {
    (0..32).fold(0, |t, e| t | ((qh >> e) & 1) << (8 * (e % 4) + e / 4))
}

/// The first column of unit `u`'s two 16-column runs (`Fmt::runs` in packed.cuh).
pub fn runs(fmt: Fmt, u: usize) -> (usize, usize) {
    let (sb, j) = (u / 8, u % 8);
    match fmt {
        Fmt::Q4K | Fmt::Q5K | Fmt::Q2K | Fmt::Q3K => {
            let x0 = 256 * sb + 64 * (j / 2) + 16 * (j % 2);
            (x0, x0 + 32)
        }
        Fmt::Q6K => {
            let x0 = 256 * sb + 128 * (j / 4) + 16 * (j % 4);
            (x0, x0 + 64)
        }
        _ => (32 * u, 32 * u + 16),
    }
}

/// The Rust twin of `Fmt<FMT>::decode` + `unit_weight` in packed.cuh: the 32 weights of unit `u`
/// of `row` (first run, then second run), computed with the same operations in the same order.
pub fn decode_unit(l: &PackedLayout, data: &[u8], row: usize, u: usize) -> [f32; 32] {
    let q = &data[row * l.q_stride..(row + 1) * l.q_stride];
    let s = &data[l.s_offset + row * l.s_stride..l.s_offset + (row + 1) * l.s_stride];
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    let weight = |s: f32, q: f32, o: f32| if o == 0.0 { s * q } else { s * q + o };
    let mut w = [0f32; 32];
    let (j, sb) = (u % 8, u / 8);
    match l.fmt {
        Fmt::F32 => (0..32).for_each(|i| w[i] = f32::from_le_bytes(q[128 * u + 4 * i..][..4].try_into().unwrap())),
        Fmt::F16 => (0..32).for_each(|i| w[i] = f16(&q[64 * u + 2 * i..])),
        Fmt::BF16 => (0..32).for_each(|i| w[i] = half::bf16::from_le_bytes([q[64 * u + 2 * i], q[64 * u + 2 * i + 1]]).to_f32()),
        Fmt::Q4_0 | Fmt::Q4_1 | Fmt::Q5_0 | Fmt::Q5_1 => {
            let min = matches!(l.fmt, Fmt::Q4_1 | Fmt::Q5_1);
            let fifth = matches!(l.fmt, Fmt::Q5_0 | Fmt::Q5_1);
            let (d, m) = if min { (f16(&s[4 * u..]), f16(&s[4 * u + 2..])) } else { (f16(&s[2 * u..]), 0.0) };
            let bias = if min { 0.0 } else if fifth { 16.0 } else { 8.0 };
            let qh = if fifth { u32::from_le_bytes(q[16 * l.units + 4 * u..][..4].try_into().unwrap()) } else { 0 };
            for run in 0..2 {
                for i in 0..16 {
                    let b = q[16 * u + i];
                    let hi = ((qh >> (8 * (i % 4) + 4 * run + i / 4)) & 1) << 4;
                    let nibble = if run == 0 { b & 15 } else { b >> 4 };
                    let code = nibble | hi as u8;
                    w[16 * run + i] = weight(d, code as f32 - bias, m);
                }
            }
        }
        Fmt::IQ4NL | Fmt::IQ4XS => {
            let d = if l.fmt == Fmt::IQ4NL {
                f16(&s[2 * u..])
            } else {
                let hdr = &s[IQ4XS_HEADER * sb..IQ4XS_HEADER * (sb + 1)];
                let ls = ((hdr[4 + j / 2] >> (4 * (j % 2))) & 15) as u16 | ((u16::from_le_bytes([hdr[2], hdr[3]]) >> (2 * j)) & 3) << 4;
                f16(hdr) * (ls as i32 - 32) as f32
            };
            for run in 0..2 {
                for i in 0..4 {
                    let word = u32::from_le_bytes(q[16 * u + 4 * i..][..4].try_into().unwrap());
                    let codes = if run == 0 { word & 0x0F0F_0F0F } else { (word >> 4) & 0x0F0F_0F0F };
                    for (k, level) in (iq4_levels(codes) ^ 0x8080_8080).to_le_bytes().into_iter().enumerate() {
                        w[16 * run + 4 * i + k] = weight(d, level as f32 - 128.0, 0.0);
                    }
                }
            }
        }
        Fmt::Q2K | Fmt::Q3K => {
            let (h, p, t) = (j / 4, (j / 2) % 2, j % 2);
            let sub = 8 * h + 4 * p + t;
            if l.fmt == Fmt::Q2K {
                let blk = &q[sb * Q2K_PACKED_BYTES..(sb + 1) * Q2K_PACKED_BYTES];
                let (d, dmin) = (f16(&s[4 * sb..]), f16(&s[4 * sb + 2..]));
                for run in 0..2 {
                    let sc = blk[sub + 2 * run];
                    let (sa, o) = (d * (sc & 15) as f32, -(dmin * (sc >> 4) as f32));
                    for i in 0..16 {
                        let code = (blk[16 + 32 * h + 16 * t + i] >> (4 * p + 2 * run)) & 3;
                        w[16 * run + i] = weight(sa, code as f32, o);
                    }
                }
            } else {
                let blk = &q[sb * Q3K_PACKED_BYTES..(sb + 1) * Q3K_PACKED_BYTES];
                let d = f16(&s[2 * sb..]);
                let scales: &[u8; 12] = blk[96..108].try_into().unwrap();
                for run in 0..2 {
                    let sc = rill_backend::quant::scales_q3k(scales)[sub + 2 * run];
                    let hbit = 4 * h + 2 * p + run;
                    for i in 0..16 {
                        let low = (blk[32 + 32 * h + 16 * t + i] >> (4 * p + 2 * run)) & 3;
                        let code = low | ((blk[16 * t + i] >> hbit) & 1) << 2;
                        w[16 * run + i] = weight(d * sc as f32, code as f32 - 4.0, 0.0);
                    }
                }
            }
        }
        Fmt::Q8_0 => {
            let d = f16(&s[2 * u..]);
            (0..32).for_each(|i| w[i] = weight(d, q[32 * u + i] as i8 as f32, 0.0));
        }
        Fmt::Q4K | Fmt::Q5K => {
            let bb = if l.fmt == Fmt::Q4K { 144 } else { 176 };
            let blk = &q[sb * bb..(sb + 1) * bb];
            let (p, h) = (j / 2, j % 2);
            let (d, dmin) = (f16(&blk[0..]), f16(&blk[2..]));
            let scales: &[u8; 12] = blk[4..16].try_into().unwrap();
            let qs_off = if l.fmt == Fmt::Q4K { 16 } else { 48 };
            for run in 0..2 {
                let (sc, m) = rill_backend::quant::scale_min_k4(2 * p + run, scales);
                let (s, o) = (d * sc as f32, -(dmin * m as f32));
                for i in 0..16 {
                    let b = blk[qs_off + 32 * p + 16 * h + i];
                    let mut code = if run == 0 { b & 15 } else { b >> 4 };
                    if l.fmt == Fmt::Q5K {
                        code |= ((blk[16 + 16 * h + i] >> (2 * p + run)) & 1) << 4;
                    }
                    w[16 * run + i] = weight(s, code as f32, o);
                }
            }
        }
        Fmt::Q6K => {
            let blk = &q[sb * Q6K_PACKED_BYTES..(sb + 1) * Q6K_PACKED_BYTES];
            let (n, g) = (j / 4, j % 4);
            let d = f16(&s[2 * sb..]);
            for run in 0..2 {
                let sc = blk[192 + 8 * n + g + 4 * run] as i8;
                let shift = 2 * (g / 2) + 4 * run;
                for i in 0..16 {
                    let lo = blk[64 * n + 16 * g + i];
                    let nib = if run == 0 { lo & 15 } else { lo >> 4 };
                    let code = nib | (((blk[128 + 32 * n + 16 * (g % 2) + i] >> shift) & 3) << 4);
                    w[16 * run + i] = weight(d * sc as f32, code as f32 - 32.0, 0.0);
                }
            }
        }
    }
    w
}

/// `__byte_perm(x, y, s)` with selector nibbles below 8 (`prmt.b32` copying bytes).
fn byte_perm(x: u32, y: u32, s: u32) -> u32 {
    let bytes = (x as u64 | (y as u64) << 32).to_le_bytes();
    u32::from_le_bytes(std::array::from_fn(|n| bytes[((s >> (4 * n)) & 7) as usize]))
}

/// The twin of `iq4_levels` in packed.cuh: four IQ4 codes (one per byte) to their levels as
/// signed bytes, by the same byte permutes of the codebook words.
pub fn iq4_levels(codes: u32) -> u32 {
    const T: [u32; 4] = [0xBFAD_9881, 0xF6EA_DDCF, 0x2619_0D01, 0x7159_4535];
    let sel = (codes & 0x7) | ((codes >> 4) & 0x70) | ((codes >> 8) & 0x700) | ((codes >> 12) & 0x7000);
    let (lo, hi) = (byte_perm(T[0], T[1], sel), byte_perm(T[2], T[3], sel));
    let upper = ((codes >> 3) & 0x0101_0101) * 0xFF;
    (lo & !upper) | (hi & upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_backend::quant;

    /// The codebook words in packed.cuh hold ggml's levels, and every code finds its own.
    #[test]
    fn iq4_levels_are_the_codebook() {
        let header = include_str!("../../../kernels/packed.cuh");
        let words: Vec<u32> = (0..4).map(|i| u32::from_le_bytes(std::array::from_fn(|k| quant::KVALUES_IQ4NL[4 * i + k] as u8))).collect();
        for (i, w) in words.iter().enumerate() {
            assert!(header.contains(&format!("#define IQ4_T{i} 0x{w:08X}u")), "IQ4_T{i} = {w:#010x}");
        }
        for c in 0..16u32 {
            let levels = iq4_levels(c | (15 - c) << 8 | (c ^ 5) << 16 | (c ^ 10) << 24).to_le_bytes();
            assert_eq!(levels.map(|b| b as i8), [c, 15 - c, c ^ 5, c ^ 10].map(|k| quant::KVALUES_IQ4NL[k as usize]), "code {c}");
        }
    }

    fn rng_row(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// A matrix of `rows` x `cols` random weights in `dtype`, as ggml bytes.
    fn matrix(dtype: DType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let rb = dtype.row_bytes(cols).unwrap();
        let mut bytes = vec![0u8; rows * rb];
        for r in 0..rows {
            let w = rng_row(&mut s, cols);
            quant::quantize_row(dtype, &w, &mut bytes[r * rb..(r + 1) * rb]).unwrap();
        }
        bytes
    }

    #[test]
    fn decoding_packed_units_equals_the_reference_dequantizer_bit_for_bit() {
        for fmt in Fmt::ALL {
            let dtype = fmt.dtype();
            let cols_list: &[usize] = if fmt.is_float() { &[32, 33, 100, 512] } else if dtype.block_len() == 256 { &[256, 768] } else { &[32, 96, 512] };
            for &cols in cols_list {
                let rows = 5;
                let src = matrix(dtype, rows, cols, 7 + cols as u64);
                let l = PackedLayout::new(dtype, rows, cols).unwrap();
                assert_eq!(l.q_stride % 16, 0, "{fmt:?}: quants rows must stay 16-byte aligned");
                let packed = pack(&l, &src);
                let rb = dtype.row_bytes(cols).unwrap();
                for r in 0..rows {
                    let mut want = vec![0f32; cols];
                    quant::dequantize_row(dtype, &src[r * rb..(r + 1) * rb], &mut want).unwrap();
                    let mut got = vec![f32::NAN; l.cols_padded()];
                    for u in 0..l.units {
                        let w = decode_unit(&l, &packed, r, u);
                        let (x0, x1) = runs(fmt, u);
                        got[x0..x0 + 16].copy_from_slice(&w[..16]);
                        got[x1..x1 + 16].copy_from_slice(&w[16..]);
                    }
                    assert!(got[cols..].iter().all(|&v| v == 0.0), "{fmt:?}: padding must decode to zero");
                    for (c, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(g == w, "{fmt:?} cols {cols} row {r} col {c}: {g} vs {w}");
                    }
                }
            }
        }
    }

    /// Kernel tables are built in `ALL`'s order and indexed by `Fmt as usize`; the ids are the
    /// `FMT_*` numbers of common.cuh.
    #[test]
    fn ids_index_all_and_match_the_kernels() {
        let header = include_str!("../../../kernels/common.cuh");
        for (i, fmt) in Fmt::ALL.into_iter().enumerate() {
            assert_eq!(fmt as usize, i, "{fmt:?}");
            assert_eq!(Fmt::of(fmt.dtype()), Some(fmt));
            let define = format!("#define FMT_{} {i}\n", fmt.suffix().to_uppercase());
            assert!(header.contains(&define), "common.cuh lacks {define:?}");
        }
    }

    #[test]
    fn every_unit_covers_distinct_columns() {
        for fmt in Fmt::ALL {
            let mut seen = vec![false; 512];
            for u in 0..16 {
                let (x0, x1) = runs(fmt, u);
                for x in (x0..x0 + 16).chain(x1..x1 + 16) {
                    assert!(!seen[x], "{fmt:?}: column {x} twice");
                    seen[x] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "{fmt:?}");
        }
    }

    /// `swz` in quant_gemv.cu.
    fn swz(f4: usize) -> usize {
        f4 ^ (((f4 >> 3) & 7) ^ ((f4 >> 4) & 3))
    }

    /// Eight consecutive lanes read float4 `c` of their unit's runs at once; those reads must land
    /// in eight different 4-bank groups, for every format's unit mapping.
    #[test]
    fn staged_activation_reads_are_bank_conflict_free() {
        for group in 0..64 {
            let mut seen = [false; 8];
            for i in 0..8 {
                let s = swz(8 * group + i);
                assert_eq!(s / 8, group, "swizzle stays inside its 8-float4 group");
                seen[s % 8] = true;
            }
            assert!(seen.iter().all(|&s| s));
        }
        for fmt in Fmt::ALL {
            for first in (0..64).step_by(8) {
                for run in 0..2 {
                    for c in 0..4 {
                        let mut banks = [false; 8];
                        for lane in 0..8 {
                            let (x0, x1) = runs(fmt, first + lane);
                            let x = if run == 0 { x0 } else { x1 };
                            let b = swz(x / 4 + c) % 8;
                            assert!(!banks[b], "{fmt:?} units {first}.. run {run} float4 {c}: conflict");
                            banks[b] = true;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn layouts_refuse_partial_blocks_and_other_types() {
        assert!(PackedLayout::new(DType::Q4_0, 2, 48).is_none());
        assert!(PackedLayout::new(DType::Q6K, 2, 128).is_none());
        assert!(PackedLayout::new(DType::Q5_1, 2, 48).is_none());
        assert!(PackedLayout::new(DType::Q8K, 2, 256).is_none());
        assert!(PackedLayout::new(DType::IQ4XS, 2, 128).is_none());
        let l = PackedLayout::new(DType::Q3K, 2, 512).unwrap();
        assert_eq!((l.q_stride, l.s_stride, l.s_offset), (224, 4, 512));
        let l = PackedLayout::new(DType::IQ4XS, 1, 256).unwrap();
        assert_eq!((l.q_stride, l.s_stride), (128, 8));
        let l = PackedLayout::new(DType::F16, 3, 33).unwrap();
        assert_eq!((l.units, l.q_stride, l.cols_padded()), (2, 128, 64));
        let l = PackedLayout::new(DType::Q6K, 4, 512).unwrap();
        assert_eq!((l.q_stride, l.s_stride, l.s_offset), (416, 4, 1792));
        assert_eq!(l.total_bytes, 1792 + 16);
        // 3 blocks: 48 bytes of codes and 12 of fifth bits, padded to 64.
        let l = PackedLayout::new(DType::Q5_0, 2, 96).unwrap();
        assert_eq!((l.q_stride, l.s_stride, l.s_offset), (64, 6, 256));
    }

    /// Each byte `k` of the transposed word holds elements `4m + k` at bit `m`, so the kernel's
    /// `(t >> (4r + i)) & 0x01010101` is elements `16r + 4i .. 16r + 4i + 4`, one per byte.
    #[test]
    fn transposed_fifth_bits_serve_one_word_of_codes_per_shift() {
        for e in 0..32 {
            let t = transpose_qh(1 << e);
            assert_eq!(t.count_ones(), 1, "element {e}");
            let (run, i, k) = (e / 16, (e % 16) / 4, e % 4);
            assert_eq!((t >> (4 * run + i)) & 0x0101_0101, 1 << (8 * k), "element {e}");
        }
        assert_eq!(transpose_qh(u32::MAX), u32::MAX);
    }
}

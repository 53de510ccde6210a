//! AVX-512 VNNI kernels for Q5_K and Q6_K (Q4_K: [`super::avx512_q4k`]) against ggml's `block_q8_K`
//! activations. A super-block's 256 codes are unpacked 64 at a time into element order, so they
//! line up with 64 activation bytes; `vpmaddubsw` multiplies them into pairs and `vpdpwssd`
//! multiplies the pairs by their sub-block scales and accumulates, all in integers. The float
//! work is one multiply-add per super-block.
//!
//! The integer lanes are ggml's AVX2 lanes (a 512-bit register holds two of its 256-bit chunks,
//! folded together at the end of the super-block), and the float operations are its operations
//! in its order, so every result has the bits of [`super::portable::dot_row_k`] and of
//! llama.cpp's `ggml_vec_dot_q*_K_q8_K`. A weight super-block is unpacked ([`Unpacked`]: codes,
//! scale vectors, header) once per four activation rows at decode, and once per call for a batch
//! (eight weight rows at a time into a per-thread buffer, then every group of four activation
//! rows against them). Each (weight row, activation row) sees the same operations whatever the
//! batch.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::mem::offset_of;

use rill_backend::quant::{scales_mins_k4, BlockQ5K, BlockQ6K, QK_K};
use rill_backend::DType;

use super::activations::Q8Activations;
use super::activations_k::Q8KRow;
use super::f16_to_f32;
use super::x86::{hsum8, prefetch, q5k_codes, q6k_codes, PREFETCH_ROWS};

pub fn supports(dtype: DType) -> bool {
    matches!(dtype, DType::Q5K | DType::Q6K)
}

/// As [`super::avx512::tile`], for the k-quants.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/DQ/VL/VNNI and F16C; `w` holds `w_rows` rows of `dtype`
/// with `acts.cols()` elements each; `acts` holds super-blocks; `out` is valid for every index
/// written.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile(dtype: DType, w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    match dtype {
        DType::Q5K => tile_kind::<Q5>(w, w_rows, acts, out, stride),
        _ => tile_kind::<Q6>(w, w_rows, acts, out, stride),
    }
}

/// Activation rows from which a call unpacks its weight rows once into [`UNPACKED`].
const UNPACK_FROM_ROWS: usize = 8;
/// Weight rows unpacked at a time (their super-blocks stay in L1/L2 while the activation rows
/// pass).
const UNPACK_ROWS: usize = 8;

thread_local! {
    /// The unpacked super-blocks of up to [`UNPACK_ROWS`] weight rows, grown once and reused.
    static UNPACKED: RefCell<Vec<Unpacked>> = const { RefCell::new(Vec::new()) };
}

#[inline(always)]
unsafe fn tile_kind<K: Kind>(w: &[u8], w_rows: usize, acts: &Q8Activations, out: *mut f32, stride: usize) {
    let blocks = acts.cols() / QK_K;
    let row_bytes = blocks * K::BLOCK_BYTES;
    let rows = acts.rows();
    if rows >= UNPACK_FROM_ROWS {
        // The buffer is taken out of the thread-local and put back, so the work runs in this
        // function (a closure would be compiled without its target features).
        let mut buf = UNPACKED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        // Grown only: matrices of different widths alternate, and shrinking would make the next
        // wider call fill it again.
        if buf.len() < UNPACK_ROWS * blocks {
            buf.resize(UNPACK_ROWS * blocks, Unpacked::ZERO);
        }
        for i0 in (0..w_rows).step_by(UNPACK_ROWS) {
            let n = UNPACK_ROWS.min(w_rows - i0);
            for (k, row) in buf[..n * blocks].chunks_exact_mut(blocks).enumerate() {
                let wp = w.as_ptr().add((i0 + k) * row_bytes);
                for (sb, u) in row.iter_mut().enumerate() {
                    *u = K::unpack(wp.add(sb * K::BLOCK_BYTES));
                }
            }
            for r in (0..rows).step_by(4) {
                for (k, row) in buf[..n * blocks].chunks_exact(blocks).enumerate() {
                    dot_up_to_4::<K>(Source::Unpacked(row), acts, r, out.add(r * stride + i0 + k), stride);
                }
            }
        }
        UNPACKED.with(|b| *b.borrow_mut() = buf);
        return;
    }
    for i in 0..w_rows {
        let wp = w.as_ptr().add(i * row_bytes);
        prefetch(wp.wrapping_add(PREFETCH_ROWS * row_bytes), row_bytes);
        for r in (0..rows).step_by(4) {
            dot_up_to_4::<K>(Source::Packed(wp), acts, r, out.add(r * stride + i), stride);
        }
    }
}

/// [`dot_rows`] for activation rows `r0..` up to four (fewer at the end).
#[inline(always)]
unsafe fn dot_up_to_4<K: Kind>(src: Source<'_>, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    match (acts.rows() - r0).min(4) {
        4 => dot_rows::<K, 4>(src, acts, r0, out, stride),
        3 => dot_rows::<K, 3>(src, acts, r0, out, stride),
        2 => dot_rows::<K, 2>(src, acts, r0, out, stride),
        _ => dot_rows::<K, 1>(src, acts, r0, out, stride),
    }
}

/// A weight super-block ready for the dot: chunk `j` covers elements `64j..64j + 64` (codes in
/// element order, and per 16-bit pair the scale of its sub-block), plus what the end of the
/// super-block needs.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Unpacked {
    codes: [__m512i; 4],
    scales: [__m512i; 4],
    /// Q5_K: the eight mins (16-bit). Q6_K: unused.
    mins: __m128i,
    /// Q6_K: the sixteen scales (16-bit), for the `−32` offset. Q5_K: unused.
    scales16: __m256i,
    d: f32,
    dmin: f32,
}

impl Unpacked {
    const ZERO: Unpacked = Unpacked { codes: [unsafe { std::mem::zeroed() }; 4], scales: [unsafe { std::mem::zeroed() }; 4], mins: unsafe { std::mem::zeroed() }, scales16: unsafe { std::mem::zeroed() }, d: 0.0, dmin: 0.0 };
}

/// A k-quant format: how its super-blocks unpack and how a super-block's sums end.
trait Kind {
    const BLOCK_BYTES: usize;
    /// # Safety
    /// `blk` points at a whole (possibly unaligned) block; AVX-512 BW and F16C.
    unsafe fn unpack(blk: *const u8) -> Unpacked;
    /// Adds the super-block's integer lanes `sumi` (already folded to ggml's 8) against
    /// super-block `sb` of activation row `x` into `acc` (and the mins into `summs`).
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256, summs: &mut f32);
}

struct Q5;
struct Q6;

/// Q5_K: chunk `j` holds sub-blocks `2j` (low nibbles) and `2j + 1` (high nibbles), each with
/// its fifth bits from `qh`; the mins go to ggml's scalar `summs`.
impl Kind for Q5 {
    const BLOCK_BYTES: usize = size_of::<BlockQ5K>();
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        // Blocks may be unaligned: fields are read through raw pointers, never references.
        let d = f16_to_f32(blk.add(offset_of!(BlockQ5K, d)).cast::<u16>().read_unaligned());
        let dmin = f16_to_f32(blk.add(offset_of!(BlockQ5K, dmin)).cast::<u16>().read_unaligned());
        let sm = _mm256_cvtepu8_epi16(_mm_loadu_si128(scales_mins_k4(&*blk.add(offset_of!(BlockQ5K, scales)).cast::<[u8; 12]>()).as_ptr().cast()));
        let scales4 = _mm512_broadcast_i32x4(_mm256_castsi256_si128(sm));
        let mut u = Unpacked { mins: _mm256_extracti128_si256::<1>(sm), d, dmin, ..Unpacked::ZERO };
        let pick = _mm512_loadu_si512(PICK_Q5K.as_ptr().cast());
        for j in 0..4 {
            u.scales[j] = _mm512_shuffle_epi8(scales4, _mm512_add_epi8(pick, _mm512_set1_epi8(4 * j as i8)));
            let (lo, hi) = q5k_codes(blk, j);
            u.codes[j] = join(lo, hi);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256, summs: &mut f32) {
        let xd = x.d[sb];
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(xd * u.d), _mm256_cvtepi32_ps(sumi), *acc);
        let prod = _mm_madd_epi16(u.mins, _mm_loadu_si128(x.sums32.as_ptr().add(sb * 8).cast()));
        let h = _mm_hadd_epi32(_mm_hadd_epi32(prod, _mm_setzero_si128()), _mm_setzero_si128());
        *summs = (-xd * u.dmin).mul_add(_mm_cvtsi128_si32(h) as f32, *summs);
    }
}

/// Q6_K: half `h` of the codes comes in chunks `2h` (elements `128h..+64`) and `2h + 1`
/// (`128h+64..+64`), each spanning four 16-element sub-blocks; `32·Σ sc·Σx` is taken off per
/// lane at the end.
impl Kind for Q6 {
    const BLOCK_BYTES: usize = size_of::<BlockQ6K>();
    #[inline(always)]
    unsafe fn unpack(blk: *const u8) -> Unpacked {
        let d = f16_to_f32(blk.add(offset_of!(BlockQ6K, d)).cast::<u16>().read_unaligned());
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(offset_of!(BlockQ6K, scales)).cast()));
        let scales_wide = _mm512_castsi256_si512(scales16);
        let mut u = Unpacked { scales16, d, ..Unpacked::ZERO };
        for h in 0..2 {
            let [q0, q1, q2, q3] = q6k_codes(blk, h);
            u.codes[2 * h] = join(q0, q1);
            u.codes[2 * h + 1] = join(q2, q3);
        }
        let pick = _mm512_loadu_si512(PICK_Q6K.as_ptr().cast());
        for j in 0..4 {
            u.scales[j] = _mm512_permutexvar_epi16(_mm512_add_epi16(pick, _mm512_set1_epi16(4 * j as i16)), scales_wide);
        }
        u
    }
    #[inline(always)]
    unsafe fn finish(u: &Unpacked, sumi: __m256i, x: &Q8KRow<'_>, sb: usize, acc: &mut __m256, _: &mut f32) {
        let bsums = _mm256_loadu_si256(x.bsums.as_ptr().add(sb * 16).cast());
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bsums, u.scales16));
        let lanes = _mm256_sub_epi32(sumi, offset);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(x.d[sb] * u.d), _mm256_cvtepi32_ps(lanes), *acc);
    }
}

/// Where a weight row's super-blocks come from (an enum, not a closure: closures are compiled
/// without the caller's target features).
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The row in the file's layout, unpacked as it is read.
    Packed(*const u8),
    /// Unpacked beforehand.
    Unpacked(&'a [Unpacked]),
}

/// One weight row against activation rows `r0..r0 + NR`, into `out` (`stride` apart).
#[inline(always)]
unsafe fn dot_rows<K: Kind, const NR: usize>(src: Source<'_>, acts: &Q8Activations, r0: usize, out: *mut f32, stride: usize) {
    let xs: [Q8KRow<'_>; NR] = acts.super_block_rows(r0);
    let mut acc = [_mm256_setzero_ps(); NR];
    let mut summs = [0f32; NR];
    for sb in 0..acts.cols() / QK_K {
        let u = match src {
            Source::Packed(p) => K::unpack(p.add(sb * K::BLOCK_BYTES)),
            Source::Unpacked(row) => row[sb],
        };
        let mut sumi = [_mm512_setzero_si512(); NR];
        for j in 0..4 {
            for r in 0..NR {
                let x = _mm512_loadu_si512(xs[r].qs.as_ptr().add(sb * QK_K + 64 * j).cast());
                sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(u.codes[j], x), u.scales[j]);
            }
        }
        for r in 0..NR {
            K::finish(&u, fold(sumi[r]), &xs[r], sb, &mut acc[r], &mut summs[r]);
        }
    }
    for r in 0..NR {
        *out.add(r * stride) = hsum8(acc[r]) + summs[r];
    }
}

/// The byte shuffle that spreads 16-bit scale 0 over the low 256 bits and scale 1 over the high
/// 256 bits (of each 128-bit copy of the eight scales); chunk `j` of Q5_K adds `4j` to
/// every byte (scales `2j`, `2j + 1`).
const PICK_Q5K: [u8; 64] = [
    0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, //
    2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
];

/// 16-bit lane indices for Q6_K: lanes `8t..8t + 8` take sub-block `t`'s scale; chunk `k` adds
/// `4k` to every index (sub-blocks `4k..4k + 4`).
const PICK_Q6K: [u16; 32] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];

/// A super-block's 16 integer lanes folded into ggml's 8 (lane `l` with lane `l + 8`).
#[inline(always)]
unsafe fn fold(v: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
}

/// `[lo | hi]`.
#[inline(always)]
unsafe fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}


// Readers of the packed matrix layout (see common.cuh): one `Fmt<FMT>` per weight type, used by
// the GEMV (quant_gemv.cu), the bf16 dequantizer and the embedding gather (dequant.cu), so all
// three decode a weight the same way.
//
// Each `Fmt` has
//   Raw                       the bytes of one unit of one row, loaded with 16-byte loads;
//   load(m, row, u)           reads them (every address is 16-byte aligned by construction);
//   runs(u, x0, x1)           the first column of the unit's two 16-column runs;
//   decode<RUN>(raw, u, q, s, o)  the run's 16 codes as exact floats `q` and its affine map:
//                             weight = s * q + o.
// The unit -> (block, sub-block) mapping is the one the Rust twin in
// crates/backend-cuda/src/packed.rs tests against `rill_backend::quant::dequantize_row`.
#pragma once

#include "common.cuh"

template <int FMT>
struct Fmt;

__device__ __forceinline__ const uint8_t* q_row(const PackedMatrix& m, int row) {
    return m.q + static_cast<size_t>(row) * static_cast<size_t>(m.q_stride);
}
__device__ __forceinline__ const uint8_t* s_row(const PackedMatrix& m, int row) {
    return m.s + static_cast<size_t>(row) * static_cast<size_t>(m.s_stride);
}
__device__ __forceinline__ uint4 ld16(const uint8_t* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

// Nibbles of a word: the low ones for run 0, the high ones for run 1 (ggml's element order).
template <int RUN>
__device__ __forceinline__ uint32_t nibbles(uint32_t w) {
    return RUN == 0 ? (w & 0x0F0F0F0Fu) : ((w >> 4) & 0x0F0F0F0Fu);
}

// Formats whose unit is one 32-element block, run 0 its first 16 elements.
struct Blocks32 {
    static __device__ __forceinline__ void runs(int u, int& x0, int& x1) { x0 = 32 * u; x1 = x0 + 16; }
};

// 16 bytes of nibble codes per block, byte j = elements j (low) and j + 16 (high), and one scale
// word of type `S` per block in the scales plane.
template <typename S>
struct NibbleBlocks : Blocks32 {
    struct Raw { uint4 qs; uint32_t sc; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        Raw r;
        r.qs = ld16(q_row(m, row) + 16 * u);
        r.sc = __ldg(reinterpret_cast<const S*>(s_row(m, row)) + u);
        return r;
    }
};

// ---- Q4_0: w = d (q - 8), d an f16.
template <>
struct Fmt<FMT_Q4_0> : NibbleBlocks<unsigned short> {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(nibbles<RUN>(word_of(r.qs, i)), 8.0f, q + 4 * i);
        s = f16_bits_to_f32(r.sc);
        o = 0.0f;
    }
};

// ---- Q4_1: w = d q + m; the scales plane holds (d, m) as one word.
template <>
struct Fmt<FMT_Q4_1> : NibbleBlocks<unsigned int> {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(nibbles<RUN>(word_of(r.qs, i)), 0.0f, q + 4 * i);
        s = f16_bits_to_f32(r.sc);
        o = f16_bits_to_f32(r.sc >> 16);
    }
};

// As NibbleBlocks, with the codes' fifth bits (Q5_0, Q5_1) after the row's 16-byte codes, one
// word per block, transposed at upload (packed.rs) so that bit 8k + 4 RUN + i is element
// 16 RUN + 4i + k: each word of a run's codes takes its four bits with one shift and mask.
template <typename S>
struct FiveBitBlocks : NibbleBlocks<S> {
    struct Raw : NibbleBlocks<S>::Raw { uint32_t qh; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        Raw r;
        static_cast<typename NibbleBlocks<S>::Raw&>(r) = NibbleBlocks<S>::load(m, row, u);
        r.qh = __ldg(reinterpret_cast<const unsigned int*>(q_row(m, row) + 16 * m.units) + u);
        return r;
    }
    // The run's 16 five-bit codes less `bias`, as exact floats.
    template <int RUN>
    static __device__ __forceinline__ void codes(const Raw& r, float bias, float* q) {
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(nibbles<RUN>(word_of(r.qs, i)) | ((r.qh >> (4 * RUN + i)) & 0x01010101u) << 4, bias, q + 4 * i);
    }
};

// ---- Q5_0: w = d (q - 16), d an f16.
template <>
struct Fmt<FMT_Q5_0> : FiveBitBlocks<unsigned short> {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
        codes<RUN>(r, 16.0f, q);
        s = f16_bits_to_f32(r.sc);
        o = 0.0f;
    }
};

// ---- Q5_1: w = d q + m; the scales plane holds (d, m) as one word.
template <>
struct Fmt<FMT_Q5_1> : FiveBitBlocks<unsigned int> {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
        codes<RUN>(r, 0.0f, q);
        s = f16_bits_to_f32(r.sc);
        o = f16_bits_to_f32(r.sc >> 16);
    }
};

// ---- Q8_0: 32 bytes of signed qs per block (run 0 = bytes 0..15); w = d q.
template <>
struct Fmt<FMT_Q8_0> : Blocks32 {
    struct Raw { uint4 a, b; uint32_t d; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        Raw r;
        const uint8_t* p = q_row(m, row) + 32 * u;
        r.a = ld16(p);
        r.b = ld16(p + 16);
        r.d = __ldg(reinterpret_cast<const unsigned short*>(s_row(m, row)) + u);
        return r;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
        const uint4 v = RUN == 0 ? r.a : r.b;
        // Flipping the sign bit turns the two's-complement byte q into q + 128 (0..255).
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(word_of(v, i) ^ 0x80808080u, 128.0f, q + 4 * i);
        s = f16_bits_to_f32(r.d);
        o = 0.0f;
    }
};

// ---- Float rows, 32 elements per unit, zero-padded to whole units.
// F16 and BF16 load a unit the same way (64 bytes, four 16-byte loads); only decoding differs.
struct HalfRows : Blocks32 {
    struct Raw { uint4 v[4]; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        Raw r;
        const uint8_t* p = q_row(m, row) + 64 * u;
#pragma unroll
        for (int i = 0; i < 4; ++i) r.v[i] = ld16(p + 16 * i);
        return r;
    }
};

template <>
struct Fmt<FMT_F16> : HalfRows {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t w = word_of(r.v[2 * RUN + i / 4], i % 4);
            q[2 * i] = f16_bits_to_f32(w);
            q[2 * i + 1] = f16_bits_to_f32(w >> 16);
        }
        s = 1.0f;
        o = 0.0f;
    }
};

template <>
struct Fmt<FMT_BF16> : HalfRows {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t w = word_of(r.v[2 * RUN + i / 4], i % 4);
            q[2 * i] = bf16_bits_to_f32(w & 0xFFFFu);
            q[2 * i + 1] = __uint_as_float(w & 0xFFFF0000u);
        }
        s = 1.0f;
        o = 0.0f;
    }
};

template <>
struct Fmt<FMT_F32> : Blocks32 {
    struct Raw { uint4 v[8]; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        Raw r;
        const uint8_t* p = q_row(m, row) + 128 * u;
#pragma unroll
        for (int i = 0; i < 8; ++i) r.v[i] = ld16(p + 16 * i);
        return r;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
#pragma unroll
        for (int i = 0; i < 16; ++i) q[i] = __uint_as_float(word_of(r.v[4 * RUN + i / 4], i % 4));
        s = 1.0f;
        o = 0.0f;
    }
};

// The affine map of sub-block `sub` of a Q4_K/Q5_K super-block from its 16-byte header
// (d, dmin, 12 bytes of 6-bit scales and mins). ggml: d1 = d * sc, m1 = dmin * m, w = d1 * q - m1
// (same roundings as the CPU twin).
__device__ __forceinline__ void k_scale_min(const uint4& hdr, int sub, float& s, float& o) {
    int sc, mn;
    scale_min_k4(sub, hdr.y, hdr.z, hdr.w, sc, mn);
    s = __fmul_rn(f16_bits_to_f32(hdr.x), static_cast<float>(sc));
    o = -__fmul_rn(f16_bits_to_f32(hdr.x >> 16), static_cast<float>(mn));
}

// ---- Q4_K: raw ggml blocks. Unit j = u % 8 of super-block u / 8 is p = j / 2 (the 32-byte qs
// chunk), h = j % 2 (its half): 16 bytes whose low nibbles are elements 64p + 16h + (0..16) of
// sub-block 2p and whose high nibbles are elements 64p + 32 + 16h + (0..16) of sub-block 2p + 1.
template <>
struct Fmt<FMT_Q4_K> {
    struct Raw { uint4 hdr; uint4 qs; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        const uint8_t* blk = q_row(m, row) + static_cast<size_t>(u >> 3) * sizeof(block_q4_K);
        const int j = u & 7, p = j >> 1, h = j & 1;
        Raw r;
        r.hdr = ld16(blk);
        r.qs = ld16(blk + offsetof(block_q4_K, qs) + 32 * p + 16 * h);
        return r;
    }
    static __device__ __forceinline__ void runs(int u, int& x0, int& x1) {
        const int j = u & 7, p = j >> 1, h = j & 1;
        x0 = 256 * (u >> 3) + 64 * p + 16 * h;
        x1 = x0 + 32;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int u, float* q, float& s, float& o) {
        const int p = (u & 7) >> 1;
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(nibbles<RUN>(word_of(r.qs, i)), 0.0f, q + 4 * i);
        k_scale_min(r.hdr, 2 * p + RUN, s, o);
    }
};

// ---- Q5_K: as Q4_K plus a fifth bit: qh byte 16h + l holds bit 2p (low run) and 2p + 1 (high).
template <>
struct Fmt<FMT_Q5_K> {
    struct Raw { uint4 hdr; uint4 qh; uint4 qs; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        const uint8_t* blk = q_row(m, row) + static_cast<size_t>(u >> 3) * sizeof(block_q5_K);
        const int j = u & 7, p = j >> 1, h = j & 1;
        Raw r;
        r.hdr = ld16(blk);
        r.qh = ld16(blk + offsetof(block_q5_K, qh) + 16 * h);
        r.qs = ld16(blk + offsetof(block_q5_K, qs) + 32 * p + 16 * h);
        return r;
    }
    static __device__ __forceinline__ void runs(int u, int& x0, int& x1) { Fmt<FMT_Q4_K>::runs(u, x0, x1); }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int u, float* q, float& s, float& o) {
        const int p = (u & 7) >> 1;
        const int shift = 2 * p + RUN;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t hi = ((word_of(r.qh, i) >> shift) & 0x01010101u) << 4;
            bytes4(nibbles<RUN>(word_of(r.qs, i)) | hi, 0.0f, q + 4 * i);
        }
        k_scale_min(r.hdr, 2 * p + RUN, s, o);
    }
};

// ---- Q6_K: packed ql|qh|scales (208 bytes) + f16 d in the scales plane. Unit j = u % 8 is
// n = j / 4 (the 128-element half), g = j % 4: ql bytes 64n + 16g .. +16, whose low nibbles are
// elements 128n + 16g + (0..16) (scale 8n + g) and high nibbles the same + 64 (scale 8n + g + 4);
// the two high bits come from qh bytes 32n + 16(g % 2) .., shifted by 2 (g / 2) (+ 4 for high).
template <>
struct Fmt<FMT_Q6_K> {
    struct Raw { uint4 ql; uint4 qh; int32_t sca; int32_t scb; uint32_t d; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        const uint8_t* blk = q_row(m, row) + static_cast<size_t>(u >> 3) * Q6K_PACKED_BYTES;
        const int j = u & 7, n = j >> 2, g = j & 3;
        const signed char* sc = reinterpret_cast<const signed char*>(blk + offsetof(block_q6_K, scales));
        Raw r;
        r.ql = ld16(blk + 64 * n + 16 * g);
        r.qh = ld16(blk + offsetof(block_q6_K, qh) + 32 * n + 16 * (g & 1));
        r.sca = __ldg(sc + 8 * n + g);
        r.scb = __ldg(sc + 8 * n + g + 4);
        r.d = __ldg(reinterpret_cast<const unsigned short*>(s_row(m, row)) + (u >> 3));
        return r;
    }
    static __device__ __forceinline__ void runs(int u, int& x0, int& x1) {
        const int j = u & 7, n = j >> 2, g = j & 3;
        x0 = 256 * (u >> 3) + 128 * n + 16 * g;
        x1 = x0 + 64;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int u, float* q, float& s, float& o) {
        const int g = u & 3;
        const int shift = 2 * (g >> 1) + 4 * RUN;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t hi = ((word_of(r.qh, i) >> shift) & 0x03030303u) << 4;
            bytes4(nibbles<RUN>(word_of(r.ql, i)) | hi, 32.0f, q + 4 * i);
        }
        // ggml: d * sc * q, left to right.
        s = __fmul_rn(f16_bits_to_f32(r.d), static_cast<float>(RUN == 0 ? r.sca : r.scb));
        o = 0.0f;
    }
};

// ---- IQ4 (IQ4_NL, IQ4_XS): 4-bit codes into ggml's `kvalues_iq4nl`, here as four words of
// signed bytes. Four codes (one per byte, 0..15) become their levels with two byte permutes (the
// selector's low 3 bits of each code; bit 3 of a selector nibble would sign-replicate, so it is
// masked) and a per-byte choice between them by the code's bit 3.
#define IQ4_T0 0xBFAD9881u  // -127 -104 -83 -65
#define IQ4_T1 0xF6EADDCFu  //  -49  -35 -22 -10
#define IQ4_T2 0x26190D01u  //    1   13  25  38
#define IQ4_T3 0x71594535u  //   53   69  89 113
__device__ __forceinline__ uint32_t iq4_levels(uint32_t codes) {
    const uint32_t sel = (codes & 0x7u) | ((codes >> 4) & 0x70u) | ((codes >> 8) & 0x700u) | ((codes >> 12) & 0x7000u);
    const uint32_t lo = __byte_perm(IQ4_T0, IQ4_T1, sel), hi = __byte_perm(IQ4_T2, IQ4_T3, sel);
    const uint32_t upper = ((codes >> 3) & 0x01010101u) * 0xFFu;
    return (lo & ~upper) | (hi & upper);
}
// A run's 16 levels (signed bytes, flipped to `level + 128` and biased back) as exact floats.
template <int RUN>
__device__ __forceinline__ void iq4_run(const uint4& qs, float* q) {
#pragma unroll
    for (int i = 0; i < 4; ++i) bytes4(iq4_levels(nibbles<RUN>(word_of(qs, i))) ^ 0x80808080u, 128.0f, q + 4 * i);
}

// ---- IQ4_NL: laid out as Q4_0; w = d level.
template <>
struct Fmt<FMT_IQ4_NL> : NibbleBlocks<unsigned short> {
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float& s, float& o) {
        iq4_run<RUN>(r.qs, q);
        s = f16_bits_to_f32(r.sc);
        o = 0.0f;
    }
};

// ---- IQ4_XS: unit u is sub-block u % 8 of super-block u / 8 (16 bytes of codes, laid out as
// IQ4_NL's), whose 8-byte header (d, scales_h, scales_l) is in the scales plane. ggml: dl = d *
// (ls - 32), w = dl * level.
template <>
struct Fmt<FMT_IQ4_XS> : Blocks32 {
    struct Raw { uint4 qs; uint2 hdr; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        Raw r;
        r.qs = ld16(q_row(m, row) + 16 * u);
        r.hdr = __ldg(reinterpret_cast<const uint2*>(s_row(m, row)) + (u >> 3));
        return r;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int u, float* q, float& s, float& o) {
        iq4_run<RUN>(r.qs, q);
        const int j = u & 7;
        const int ls = ((r.hdr.y >> (4 * j)) & 0xF) | (((r.hdr.x >> (16 + 2 * j)) & 3) << 4);
        s = __fmul_rn(f16_bits_to_f32(r.hdr.x), static_cast<float>(ls - 32));
        o = 0.0f;
    }
};

// Q2_K and Q3_K units: unit j = u % 8 of super-block u / 8 is h = j / 4 (the 128-element half),
// p = (j / 2) % 2, t = j % 2: qs bytes 32h + 16t .. +16, whose bit pairs 2p (run 0) and 2p + 1
// (run 1) hold elements 128h + 64p + 16t + (0..16) and the same + 32, of 16-element sub-blocks
// 8h + 4p + t and 8h + 4p + t + 2. The same columns as Q4_K's units.
struct TwoBitUnits {
    static __device__ __forceinline__ void runs(int u, int& x0, int& x1) { Fmt<FMT_Q4_K>::runs(u, x0, x1); }
    static __device__ __forceinline__ int sub0(int u) {
        const int j = u & 7;
        return 8 * (j >> 2) + 4 * ((j >> 1) & 1) + (j & 1);
    }
    static __device__ __forceinline__ int qs_offset(int u) {
        const int j = u & 7;
        return 32 * (j >> 2) + 16 * (j & 1);
    }
    // Bits 2p + RUN of each byte's pairs: the run's 2-bit codes, one per byte.
    template <int RUN>
    static __device__ __forceinline__ uint32_t low_bits(const uint4& qs, int u, int i) {
        return (word_of(qs, i) >> (4 * ((u >> 1) & 1) + 2 * RUN)) & 0x03030303u;
    }
};

// ---- Q2_K: packed scales|qs (80 bytes) + f16 d, dmin in the scales plane. ggml: dl = d * (sc &
// 15), ml = dmin * (sc >> 4), w = dl * q - ml.
template <>
struct Fmt<FMT_Q2_K> : TwoBitUnits {
    struct Raw { uint4 qs; uint32_t sc; uint32_t dm; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        const uint8_t* blk = q_row(m, row) + static_cast<size_t>(u >> 3) * Q2K_PACKED_BYTES;
        const int sub = sub0(u);
        Raw r;
        r.qs = ld16(blk + offsetof(block_q2_K, qs) + qs_offset(u));
        r.sc = __ldg(blk + sub) | static_cast<uint32_t>(__ldg(blk + sub + 2)) << 8;
        r.dm = __ldg(reinterpret_cast<const unsigned int*>(s_row(m, row)) + (u >> 3));
        return r;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int u, float* q, float& s, float& o) {
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(low_bits<RUN>(r.qs, u, i), 0.0f, q + 4 * i);
        const uint32_t sc = (r.sc >> (8 * RUN)) & 0xFFu;
        s = __fmul_rn(f16_bits_to_f32(r.dm), static_cast<float>(sc & 0xF));
        o = -__fmul_rn(f16_bits_to_f32(r.dm >> 16), static_cast<float>(sc >> 4));
    }
};

// ggml's 6-bit Q3_K scale of sub-block j (0..15), less 32, from the 12 packed bytes at `sc`.
__device__ __forceinline__ int q3k_scale(const uint8_t* sc, int j) {
    const int low = j < 8 ? (__ldg(sc + j) & 0xF) : (__ldg(sc + j - 8) >> 4);
    const int high = (__ldg(sc + 8 + (j & 3)) >> (2 * (j >> 2))) & 3;
    return (low | (high << 4)) - 32;
}

// ---- Q3_K: packed hmask|qs|scales (+4 zero bytes, 112) + f16 d in the scales plane. Element
// e's third bit is bit e / 32 of hmask byte e % 32: for this unit bytes 16t .. +16, bit 4h + 2p
// + RUN. ggml: dl = d * (sc - 32), w = dl * (q - 4).
template <>
struct Fmt<FMT_Q3_K> : TwoBitUnits {
    struct Raw { uint4 qs; uint4 hm; int32_t sca; int32_t scb; uint32_t d; };
    static __device__ __forceinline__ Raw load(const PackedMatrix& m, int row, int u) {
        const uint8_t* blk = q_row(m, row) + static_cast<size_t>(u >> 3) * Q3K_PACKED_BYTES;
        const int sub = sub0(u);
        Raw r;
        r.qs = ld16(blk + offsetof(block_q3_K, qs) + qs_offset(u));
        r.hm = ld16(blk + 16 * (u & 1));
        r.sca = q3k_scale(blk + offsetof(block_q3_K, scales), sub);
        r.scb = q3k_scale(blk + offsetof(block_q3_K, scales), sub + 2);
        r.d = __ldg(reinterpret_cast<const unsigned short*>(s_row(m, row)) + (u >> 3));
        return r;
    }
    template <int RUN>
    static __device__ __forceinline__ void decode(const Raw& r, int u, float* q, float& s, float& o) {
        const int hbit = 4 * ((u & 7) >> 2) + 2 * ((u >> 1) & 1) + RUN;
#pragma unroll
        for (int i = 0; i < 4; ++i) bytes4(low_bits<RUN>(r.qs, u, i) | ((word_of(r.hm, i) >> hbit) & 0x01010101u) << 2, 4.0f, q + 4 * i);
        s = __fmul_rn(f16_bits_to_f32(r.d), static_cast<float>(RUN == 0 ? r.sca : r.scb));
        o = 0.0f;
    }
};

// A weight exactly as the CPU's reference dequantizer computes it (`s * q + o`, two roundings,
// no FMA contraction, and no `+ 0.0` that would turn -0.0 into +0.0).
__device__ __forceinline__ float unit_weight(float s, float q, float o) {
    const float w = __fmul_rn(s, q);
    return o == 0.0f ? w : __fadd_rn(w, o);
}

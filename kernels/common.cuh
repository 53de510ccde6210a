// Shared by every kernel family: the ggml block layouts (mirrors of the Rust `#[repr(C)]` structs in
// crates/backend/src/quant/blocks.rs, which stay the single source of truth), the packed device
// layout `upload_matrix` turns them into (crates/backend-cuda/src/packed.rs), the by-value argument
// structs (mirrored by `#[repr(C)]` structs in crates/backend-cuda/src/args.rs; a Rust test
// compares their sizes with the `.param` sizes in the PTX) and small device helpers.
//
// Every kernel takes exactly one argument: its `*Args` struct by value. Launch shapes depend only
// on those arguments' sizes, never on index data (positions, slots, block tables are read on the
// device), so any launch may be recorded into a CUDA graph.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------------------------------------
// ggml blocks, byte for byte. f16 fields are raw bits (uint16_t) so the structs stay plain data.
// ---------------------------------------------------------------------------------------------
#define QK 32
#define QK_K 256
#define K_SCALE_SIZE 12

struct block_q4_0 { uint16_t d; uint8_t qs[QK / 2]; };
struct block_q4_1 { uint16_t d; uint16_t m; uint8_t qs[QK / 2]; };
struct block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; };
struct block_q5_1 { uint16_t d; uint16_t m; uint8_t qh[4]; uint8_t qs[QK / 2]; };
struct block_q8_0 { uint16_t d; int8_t qs[QK]; };
struct block_iq4_nl { uint16_t d; uint8_t qs[QK / 2]; };
struct block_q8_1 { uint16_t d; uint16_t s; int8_t qs[QK]; };
struct block_q4_K { uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; };
struct block_q5_K {
    uint16_t d; uint16_t dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2];
};
struct block_q6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
struct block_q2_K { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d; uint16_t dmin; };
struct block_q3_K { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[K_SCALE_SIZE]; uint16_t d; };
struct block_iq4_xs { uint16_t d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; };

static_assert(sizeof(block_q4_0) == 18, "Q4_0 block size");
static_assert(sizeof(block_q4_1) == 20, "Q4_1 block size");
static_assert(sizeof(block_q5_0) == 22, "Q5_0 block size");
static_assert(sizeof(block_q5_1) == 24, "Q5_1 block size");
static_assert(sizeof(block_q8_0) == 34, "Q8_0 block size");
static_assert(sizeof(block_q8_1) == 36, "Q8_1 block size");
static_assert(sizeof(block_q4_K) == 144, "Q4_K block size");
static_assert(sizeof(block_q5_K) == 176, "Q5_K block size");
static_assert(sizeof(block_q6_K) == 210, "Q6_K block size");
static_assert(sizeof(block_q2_K) == 84, "Q2_K block size");
static_assert(sizeof(block_q3_K) == 110, "Q3_K block size");
static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL block size");
static_assert(sizeof(block_iq4_xs) == 136, "IQ4_XS block size");
static_assert(offsetof(block_q2_K, qs) == 16 && offsetof(block_q2_K, d) == 80, "Q2_K.qs, Q2_K.d");
static_assert(offsetof(block_q3_K, qs) == 32 && offsetof(block_q3_K, scales) == 96 && offsetof(block_q3_K, d) == 108, "Q3_K fields");
static_assert(offsetof(block_iq4_xs, scales_l) == 4 && offsetof(block_iq4_xs, qs) == 8, "IQ4_XS fields");
static_assert(offsetof(block_q4_1, m) == 2, "Q4_1.m");
static_assert(offsetof(block_q4_1, qs) == 4, "Q4_1.qs");
static_assert(offsetof(block_q5_0, qh) == 2, "Q5_0.qh");
static_assert(offsetof(block_q5_0, qs) == 6, "Q5_0.qs");
static_assert(offsetof(block_q5_1, m) == 2, "Q5_1.m");
static_assert(offsetof(block_q5_1, qh) == 4, "Q5_1.qh");
static_assert(offsetof(block_q5_1, qs) == 8, "Q5_1.qs");
static_assert(offsetof(block_q8_1, qs) == 4, "Q8_1.qs");
static_assert(offsetof(block_q4_K, scales) == 4, "Q4_K.scales");
static_assert(offsetof(block_q4_K, qs) == 16, "Q4_K.qs");
static_assert(offsetof(block_q5_K, qh) == 16, "Q5_K.qh");
static_assert(offsetof(block_q5_K, qs) == 48, "Q5_K.qs");
static_assert(offsetof(block_q6_K, qh) == 128, "Q6_K.qh");
static_assert(offsetof(block_q6_K, scales) == 192, "Q6_K.scales");
static_assert(offsetof(block_q6_K, d) == 208, "Q6_K.d");

// ---------------------------------------------------------------------------------------------
// Packed device layout (crates/backend-cuda/src/packed.rs writes it; keep the two in step).
//
// A matrix is a "quants" plane, `rows` rows of `q_stride` bytes (a multiple of 16, so every
// row is 16-byte aligned), then a "scales" plane at byte `s_offset`, rows of `s_stride` bytes:
//   F32/F16/BF16  rows zero-padded to a multiple of 32 elements; no scales plane.
//   Q4_0 / Q4_1   16 bytes of `qs` per block; scales plane: f16 `d` (Q4_0) or f16 pair d,m (Q4_1).
//   Q5_0 / Q5_1   as Q4_0 / Q4_1, and after a row's `qs` one 32-bit word of fifth bits per block,
//                 transposed so bit 8k + m holds element 4m + k (ggml's bit 4m + k).
//   Q8_0          32 bytes of `qs` per block; scales plane: f16 `d`.
//   Q4_K / Q5_K   the ggml blocks unchanged (144 and 176 bytes are multiples of 16).
//   Q6_K          ql|qh|scales (208 bytes) per block; scales plane: f16 `d`.
//   Q2_K          scales|qs (80 bytes) per block; scales plane: f16 pair d,dmin.
//   Q3_K          hmask|qs|scales (108 bytes) and 4 zero bytes per block; scales plane: f16 `d`.
//   IQ4_NL        as Q4_0 (16 bytes of codes per block; scales plane: f16 `d`).
//   IQ4_XS        qs (128 bytes) per block; scales plane: d|scales_h|scales_l (8 bytes).
// Every matrix is read in "units" of 32 weights: unit `u` of a row covers two runs of 16
// consecutive columns, `x0 .. x0+16` and `x1 .. x1+16`, and decodes to
//   w = sa * q + oa   (first run),   w = sb * q + ob   (second run)
// with integer-valued `q` (exact in f32). `units = cols_padded / 32` for every type.
// ---------------------------------------------------------------------------------------------
#define FMT_F32 0
#define FMT_F16 1
#define FMT_BF16 2
#define FMT_Q4_0 3
#define FMT_Q4_1 4
#define FMT_Q8_0 5
#define FMT_Q4_K 6
#define FMT_Q5_K 7
#define FMT_Q6_K 8
#define FMT_Q5_0 9
#define FMT_Q5_1 10
#define FMT_Q2_K 11
#define FMT_Q3_K 12
#define FMT_IQ4_NL 13
#define FMT_IQ4_XS 14

#define Q6K_PACKED_BYTES 208
static_assert(Q6K_PACKED_BYTES == sizeof(block_q6_K) - 2, "Q6_K packs everything but d");
#define Q2K_PACKED_BYTES 80
static_assert(Q2K_PACKED_BYTES == offsetof(block_q2_K, d), "Q2_K packs everything but d, dmin");
#define Q3K_PACKED_BYTES 112
static_assert(Q3K_PACKED_BYTES == offsetof(block_q3_K, d) + 4, "Q3_K packs everything but d, padded to 16");

struct PackedMatrix {
    const uint8_t* q;  // quants plane (row r at q + r * q_stride)
    const uint8_t* s;  // scales plane (row r at s + r * s_stride); unused for some types
    int32_t rows;      // output features
    int32_t cols;      // input features (unpadded)
    int32_t units;     // 32-weight units per row (padded cols / 32)
    int32_t q_stride;  // bytes per row of the quants plane
    int32_t s_stride;  // bytes per row of the scales plane
    int32_t pad_;
};
static_assert(sizeof(PackedMatrix) == 40, "PackedMatrix is mirrored in args.rs");

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float f16_bits_to_f32(uint32_t bits) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xFFFFu)));
}

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t bits) { return __uint_as_float(bits << 16); }

// Byte `k` (0..3) of `w` as an exact float: 0x4B0000bb is 2^23 + bb, and subtracting 2^23 is
// exact. One PRMT plus one FADD per weight, the cheapest exact conversion (I2F runs at quarter
// rate on sm_90).
template <int K>
__device__ __forceinline__ float byte_as_float(uint32_t w, float bias) {
    return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | K)) - (8388608.0f + bias);
}

// Four bytes of `w` into q[0..4), each minus `bias`.
__device__ __forceinline__ void bytes4(uint32_t w, float bias, float* q) {
    q[0] = byte_as_float<0>(w, bias);
    q[1] = byte_as_float<1>(w, bias);
    q[2] = byte_as_float<2>(w, bias);
    q[3] = byte_as_float<3>(w, bias);
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// ggml's get_scale_min_k4: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes,
// given as three little-endian words.
__device__ __forceinline__ void scale_min_k4(int j, uint32_t s0, uint32_t s1, uint32_t s2, int& sc, int& m) {
    auto byte = [&](int i) -> int {
        uint32_t w = i < 4 ? s0 : i < 8 ? s1 : s2;
        return static_cast<int>((w >> (8 * (i & 3))) & 0xFFu);
    };
    if (j < 4) {
        sc = byte(j) & 63;
        m = byte(j + 4) & 63;
    } else {
        sc = (byte(j + 4) & 0x0F) | ((byte(j - 4) >> 6) << 4);
        m = (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    return v;
}

// e^(a - b) that is 0 when `a` is -inf (an empty softmax state), never NaN.
__device__ __forceinline__ float exp_diff(float a, float b) { return a == -INFINITY ? 0.0f : expf(a - b); }

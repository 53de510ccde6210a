// Whole-row decoding of packed matrices:
//   dequant_bf16_<type>  rows [row0, row0 + nrows) -> bf16 [nrows, ld] scratch for the cuBLAS
//                        GEMM path (more than 8 input rows); padded columns become 0.
//   embed_<type>         out[t] = w[tokens[t]] in f32: the embedding lookup.
//   f32_to_bf16          the GEMM path's activations.
// CPU twins: `rill_backend::quant::dequantize_row` (embed matches it bit for bit: packed.cuh's
// `unit_weight` keeps the CPU's roundings; the bf16 outputs are that value rounded to nearest
// even), `CpuMatrix::gather` for embed.
//
// Launch: one thread per (row, 32-weight unit), 256 threads per block,
// grid.x = ceil(nrows * units / 256) (dequant) or ceil(n * units / 256) (embed);
// f32_to_bf16: grid-stride over n, grid.x = min(ceil(n / 256), 8192).
#include "args.cuh"
#include "common.cuh"
#include "packed.cuh"

#define DQ_THREADS 256

__device__ __forceinline__ uint16_t to_bf16(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// This thread's (row, unit) of `rows` rows of `units` units; false past the end.
__device__ __forceinline__ bool row_unit(long long rows, int units, int& row, int& u) {
    const long long idx = static_cast<long long>(blockIdx.x) * DQ_THREADS + threadIdx.x;
    if (idx >= rows * units) return false;
    row = static_cast<int>(idx / units);
    u = static_cast<int>(idx % units);
    return true;
}

// Calls put(column, weight) for the 32 weights of unit `u`, both runs.
template <typename F, typename Put>
__device__ __forceinline__ void for_each_weight(const typename F::Raw& raw, int u, Put put) {
    int x0, x1;
    F::runs(u, x0, x1);
    float q[16], s, o;
    F::template decode<0>(raw, u, q, s, o);
#pragma unroll
    for (int i = 0; i < 16; ++i) put(x0 + i, unit_weight(s, q[i], o));
    F::template decode<1>(raw, u, q, s, o);
#pragma unroll
    for (int i = 0; i < 16; ++i) put(x1 + i, unit_weight(s, q[i], o));
}

template <int FMT>
__device__ __forceinline__ void dequant_bf16(const DequantArgs& a) {
    using F = Fmt<FMT>;
    int r, u;
    if (!row_unit(a.nrows, a.w.units, r, u)) return;
    uint16_t* dst = a.out + static_cast<size_t>(r) * a.ld;
    for_each_weight<F>(F::load(a.w, a.row0 + r, u), u, [&](int x, float w) { dst[x] = to_bf16(w); });
}

template <int FMT>
__device__ __forceinline__ void embed(const EmbedArgs& a) {
    using F = Fmt<FMT>;
    int t, u;
    if (!row_unit(a.n, a.w.units, t, u)) return;
    const uint32_t tok = __ldg(a.tokens + t);
    int x0, x1;
    F::runs(u, x0, x1);
    float* dst = a.out + static_cast<size_t>(t) * a.w.cols;
    if (tok >= static_cast<uint32_t>(a.w.rows)) {
        // The CPU rejects such a token; a kernel cannot, so its row reads as zeros. (The model
        // checks token ids before the step.)
        for (int i = 0; i < 16; ++i) {
            if (x0 + i < a.w.cols) dst[x0 + i] = 0.0f;
            if (x1 + i < a.w.cols) dst[x1 + i] = 0.0f;
        }
        return;
    }
    for_each_weight<F>(F::load(a.w, static_cast<int>(tok), u), u, [&](int x, float w) {
        if (x < a.w.cols) dst[x] = w;
    });
}

#define DQ_KERNELS(name, FMT)                                                                        \
    extern "C" __global__ void __launch_bounds__(DQ_THREADS) dequant_bf16_##name(const DequantArgs a) { \
        dequant_bf16<FMT>(a);                                                                        \
    }                                                                                                \
    extern "C" __global__ void __launch_bounds__(DQ_THREADS) embed_##name(const EmbedArgs a) { embed<FMT>(a); }

DQ_KERNELS(f32, FMT_F32)
DQ_KERNELS(f16, FMT_F16)
DQ_KERNELS(bf16, FMT_BF16)
DQ_KERNELS(q4_0, FMT_Q4_0)
DQ_KERNELS(q4_1, FMT_Q4_1)
DQ_KERNELS(q5_0, FMT_Q5_0)
DQ_KERNELS(q5_1, FMT_Q5_1)
DQ_KERNELS(q8_0, FMT_Q8_0)
DQ_KERNELS(q4_k, FMT_Q4_K)
DQ_KERNELS(q5_k, FMT_Q5_K)
DQ_KERNELS(q6_k, FMT_Q6_K)
DQ_KERNELS(q2_k, FMT_Q2_K)
DQ_KERNELS(q3_k, FMT_Q3_K)
DQ_KERNELS(iq4_nl, FMT_IQ4_NL)
DQ_KERNELS(iq4_xs, FMT_IQ4_XS)

extern "C" __global__ void __launch_bounds__(DQ_THREADS) f32_to_bf16(const ConvertArgs a) {
    for (long long i = static_cast<long long>(blockIdx.x) * DQ_THREADS + threadIdx.x; i < a.n;
         i += static_cast<long long>(gridDim.x) * DQ_THREADS)
        a.out[i] = to_bf16(a.x[i]);
}

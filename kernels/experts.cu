// Mixture-of-experts kernels. CPU twins: crates/backend-cpu/src/experts.rs (route, combine,
// add_gated). The expert matmul itself is the ordinary GEMV/GEMM over each expert's gathered rows
// (crates/backend-cuda/src/experts.rs), with `scatter_rows` putting each slot's row back.
//
// Launch shapes:
//   route_experts   one thread per row, block 256 (a row's softmax and top-k are O(k · experts)).
//   the rest        grid-stride loops, block 256, grid.x = min(ceil(n / 256), 8192).
#include "args.cuh"
#include "common.cuh"

#define EW_THREADS 256

#define GRID_STRIDE(i, n)                                                                       \
    for (long long i = static_cast<long long>(blockIdx.x) * EW_THREADS + threadIdx.x; i < (n); \
         i += static_cast<long long>(gridDim.x) * EW_THREADS)

// Softmax over the row's logits (max subtracted, e^x summed, times the rounded inverse), then the
// `used` largest probabilities in descending order, equal ones to the lower expert; divided by
// their sum (clamped at 2^-14) when normalizing; times `scale` unless it is 0 or 1.
extern "C" __global__ void __launch_bounds__(EW_THREADS) route_experts(const RouteArgs a) {
    const int r = blockIdx.x * EW_THREADS + threadIdx.x;
    if (r >= a.rows) return;
    const float* x = a.logits + static_cast<size_t>(r) * a.experts;
    float mx = -INFINITY;
    for (int e = 0; e < a.experts; ++e) mx = fmaxf(mx, x[e]);
    float sum = 0.0f;
    for (int e = 0; e < a.experts; ++e) sum = __fadd_rn(sum, expf(__fsub_rn(x[e], mx)));
    const float inv = __fdiv_rn(1.0f, sum);
    uint32_t* ids = a.ids + static_cast<size_t>(r) * a.used;
    float* w = a.weights + static_cast<size_t>(r) * a.used;
    float prev = INFINITY, chosen = 0.0f;
    int prev_e = -1;
    for (int j = 0; j < a.used; ++j) {
        float best = -1.0f;
        int best_e = 0;
        for (int e = 0; e < a.experts; ++e) {
            const float p = __fmul_rn(expf(__fsub_rn(x[e], mx)), inv);
            const bool after = p < prev || (p == prev && e > prev_e);
            if (after && p > best) best = p, best_e = e;
        }
        ids[j] = static_cast<uint32_t>(best_e);
        w[j] = best;
        chosen = __fadd_rn(chosen, best);
        prev = best, prev_e = best_e;
    }
    const float total = fmaxf(chosen, 6.103515625e-5f);
    for (int j = 0; j < a.used; ++j) {
        float v = a.normalize ? __fdiv_rn(w[j], total) : w[j];
        if (a.scale != 0.0f && a.scale != 1.0f) v = __fmul_rn(v, a.scale);
        w[j] = v;
    }
}

// out[r] = Σ_j y[r, j] · w[r, j], each product rounded, the slots added in order.
extern "C" __global__ void __launch_bounds__(EW_THREADS) combine_experts(const CombineArgs a) {
    GRID_STRIDE(i, a.n) {
        const long long r = i / a.dim, c = i - r * a.dim;
        const float* y = a.y + r * a.used * a.dim + c;
        const float* w = a.weights + r * a.used;
        float acc = __fmul_rn(y[0], w[0]);
        for (int j = 1; j < a.used; ++j) acc = __fadd_rn(acc, __fmul_rn(y[static_cast<long long>(j) * a.dim], w[j]));
        a.out[i] = acc;
    }
}

// x[r] += y[r] · σ(g), σ(g) = silu(g) / g = (g / (1 + e^−g)) / g as llama.cpp forms it.
extern "C" __global__ void __launch_bounds__(EW_THREADS) add_gated(const GatedAddArgs a) {
    GRID_STRIDE(i, a.n) {
        const float g = a.gate[i / a.dim];
        const float sigmoid = __fdiv_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), g);
        a.x[i] = __fadd_rn(a.x[i], __fmul_rn(a.y[i], sigmoid));
    }
}

// out[rows[i]] = src[i]: an expert's output rows back to their slots.
extern "C" __global__ void __launch_bounds__(EW_THREADS) scatter_rows(const ScatterArgs a) {
    const long long n = static_cast<long long>(a.n) * a.dim;
    GRID_STRIDE(i, n) {
        const long long k = i / a.dim, c = i - k * a.dim;
        const uint32_t row = a.rows[k];
        if (row < a.out_rows) a.out[static_cast<long long>(row) * a.dim + c] = a.src[i];
    }
}

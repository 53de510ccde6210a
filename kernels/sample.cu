// Sampling on the device: one token id per row of logits, so only ids cross to the host. The
// rule is the one truncate-and-draw of crates/backend/src/draw/ (`rill_backend::draw_token`),
// which every sampling path runs and which reproduces this kernel's arithmetic order (every sum
// below is f32, in the order of this 1024-thread block, see draw/block_order.rs), so the two
// agree bit for bit except where expf and the host's exp differ by an ulp.
//
// Launch shape: grid.x = rows, block 1024 (one block per row). Per row, passes over the logits
// (each recomputes the weights w = exp((l - max) / T) instead of storing them: no scratch):
//   max (block reduction); greedy: the first index holding it (block min) and done;
//   top-k: the k-th largest weight by bisection on its f32 bits (31 block-wide counts);
//   top-p: the cut by bisection on the bits too (31 block-wide sums of the kept mass);
//   min-p: the cut raised to min_p (the most likely weight is 1), one more sum when it moves;
//   draw: a tiled prefix scan in index order, stopping at the first tile where the running sum
//   passes u * mass (block min of the candidate index).
// Every branch that reaches a __syncthreads depends only on block-uniform values (parameters or
// block reductions, which every thread computes identically).
#include <limits.h>

#include "args.cuh"
#include "common.cuh"

#define SAMPLE_THREADS 1024
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define FULL_MASK 0xFFFFFFFFu
// Exclusive upper end of the bisections: +inf's bits (weights are finite and non-negative, so
// their bit patterns order like their values).
#define INF_BITS 0x7F800000u
// The largest float below 1.
#define BELOW_ONE_BITS 0x3F7FFFFFu

__device__ __forceinline__ float clean(float x) { return isnan(x) ? -INFINITY : x; }

// Block reductions. Each starts with a barrier (the shared slots may still be read by the
// previous reduction) and ends with every warp folding the same 32 partials the same way, so
// every thread holds the identical result. The float sum is common.cuh's xor butterfly, twice:
// the CPU twin's `block_sum`.
template <typename T, typename WarpOp>
__device__ __forceinline__ T block_reduce(T v, T* sh, WarpOp warp) {
    v = warp(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    return warp(sh[threadIdx.x & 31]);
}

__device__ __forceinline__ float block_sum(float v, float* sh) {
    return block_reduce(v, sh, [](float x) { return warp_sum(x); });
}

__device__ __forceinline__ float block_max(float v, float* sh) {
    return block_reduce(v, sh, [](float x) { return warp_max(x); });
}

__device__ __forceinline__ int block_min(int v, int* sh) {
    return block_reduce(v, sh, [](int x) { return __reduce_min_sync(FULL_MASK, x); });
}

__device__ __forceinline__ int block_max_int(int v, int* sh) {
    return block_reduce(v, sh, [](int x) { return __reduce_max_sync(FULL_MASK, x); });
}

__device__ __forceinline__ unsigned block_count(unsigned v, int* sh) {
    return block_reduce(v, reinterpret_cast<unsigned*>(sh), [](unsigned x) { return __reduce_add_sync(FULL_MASK, x); });
}

// Inclusive scan across a warp: at offset o, lane l >= o adds lane l - o's previous value (the
// CPU twin's `warp_inclusive_scan`).
__device__ __forceinline__ float warp_inclusive_scan(float x) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(FULL_MASK, x, o);
        if (lane >= o) x = __fadd_rn(y, x);
    }
    return x;
}

// A row's weights: w[i] = exp((l[i] - m) * inv_t), 0 for -inf (and NaN); with m = +inf, 1 for
// the +inf logits and 0 for the rest.
struct Weights {
    const float* l;
    float m;
    float inv_t;
    __device__ __forceinline__ float operator()(int i) const {
        const float x = clean(__ldg(l + i));
        if (m == INFINITY) return x == INFINITY ? 1.0f : 0.0f;
        if (x == -INFINITY) return 0.0f;
        return expf(__fmul_rn(__fsub_rn(x, m), inv_t));
    }
};

// Mass of the weights whose bits are >= t, in the twin's `block_sum` order.
__device__ __forceinline__ float kept_mass(const Weights& w, int vocab, uint32_t t, float* sh) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
        const float wi = w(i);
        if (__float_as_uint(wi) >= t) s = __fadd_rn(s, wi);
    }
    return block_sum(s, sh);
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_rows(const SampleArgs a) {
    __shared__ float sh_f[32];
    __shared__ int sh_i[32];
    __shared__ float sh_warp[SAMPLE_WARPS];  // warp totals of a scan tile
    __shared__ float sh_scan[SAMPLE_WARPS];  // their inclusive scan

    const int vocab = a.vocab;
    const int tid = threadIdx.x;
    const float* l = a.logits + static_cast<size_t>(blockIdx.x) * vocab;
    const SampleRow p = a.params[blockIdx.x];
    uint32_t* out = a.out + blockIdx.x;

    float m = -INFINITY;
    for (int i = tid; i < vocab; i += SAMPLE_THREADS) m = fmaxf(m, clean(__ldg(l + i)));
    m = block_max(m, sh_f);
    if (m == -INFINITY) {
        if (tid == 0) *out = 0;
        return;
    }
    const float inv_t = __fdiv_rn(1.0f, p.temperature);
    if (!(p.temperature > 0.0f) || isinf(inv_t) || isnan(inv_t) || p.top_k == 1) {
        int first = INT_MAX;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) {
            if (clean(__ldg(l + i)) == m) {
                first = i;
                break;
            }
        }
        first = block_min(first, sh_i);
        if (tid == 0) *out = static_cast<uint32_t>(first);
        return;
    }
    const Weights w{l, m, inv_t};

    // Top-k: the largest bit pattern with at least k weights at or above it (the k-th largest).
    uint32_t t = 0;
    if (p.top_k > 1 && p.top_k < static_cast<uint32_t>(vocab)) {
        uint32_t lo = 0, hi = INF_BITS;
        while (hi - lo > 1) {
            const uint32_t mid = lo + (hi - lo) / 2;
            unsigned c = 0;
            for (int i = tid; i < vocab; i += SAMPLE_THREADS) c += __float_as_uint(w(i)) >= mid ? 1u : 0u;
            if (block_count(c, sh_i) >= p.top_k) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t = lo;
    }
    float mass = kept_mass(w, vocab, t, sh_f);
    // Top-p: the largest cut whose kept mass is positive and reaches top_p of top-k's.
    if (p.top_p < 1.0f) {
        const float goal = __fmul_rn(p.top_p, mass);
        uint32_t lo = t, hi = INF_BITS;
        while (hi - lo > 1) {
            const uint32_t mid = lo + (hi - lo) / 2;
            const float s = kept_mass(w, vocab, mid, sh_f);
            if (s > 0.0f && s >= goal) {
                lo = mid;
                mass = s;
            } else {
                hi = mid;
            }
        }
        t = lo;
    }
    // Min-p: weights below min_p of the most likely one's (which is 1) are dropped.
    if (p.min_p > 0.0f) {
        const uint32_t min_p_bits = __float_as_uint(fminf(p.min_p, 1.0f));
        if (min_p_bits > t) {
            t = min_p_bits;
            mass = kept_mass(w, vocab, t, sh_f);
        }
    }

    // Draw: the first kept token, in index order, whose running sum exceeds u * mass.
    const float u = isnan(p.uniform) ? 0.0f : fminf(fmaxf(p.uniform, 0.0f), __uint_as_float(BELOW_ONE_BITS));
    const float target = __fmul_rn(u, mass);
    const int lane = tid & 31, warp = tid >> 5;
    float carry = 0.0f;
    int last = -1;
    int chosen = INT_MAX;
    for (int base = 0; base < vocab; base += SAMPLE_THREADS) {
        const int i = base + tid;
        float x = 0.0f;
        bool kept = false;
        if (i < vocab) {
            const float wi = w(i);
            kept = wi > 0.0f && __float_as_uint(wi) >= t;
            if (kept) {
                x = wi;
                last = i;
            }
        }
        x = warp_inclusive_scan(x);
        __syncthreads();  // the previous tile is done with sh_warp / sh_scan
        if (lane == 31) sh_warp[warp] = x;
        __syncthreads();
        if (warp == 0) sh_scan[lane] = warp_inclusive_scan(sh_warp[lane]);
        __syncthreads();
        const float offset = warp == 0 ? 0.0f : sh_scan[warp - 1];
        const float prefix = __fadd_rn(carry, __fadd_rn(offset, x));
        const int hit = block_min(kept && prefix > target ? i : INT_MAX, sh_i);
        if (hit != INT_MAX) {
            chosen = hit;
            break;
        }
        carry = __fadd_rn(carry, sh_scan[SAMPLE_WARPS - 1]);
    }
    if (chosen == INT_MAX) chosen = block_max_int(last, sh_i);  // rounding left no hit
    if (tid == 0) *out = static_cast<uint32_t>(chosen < 0 ? 0 : chosen);
}

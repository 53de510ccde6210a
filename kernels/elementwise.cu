// The small per-element kernels of the forward pass. CPU twins: crates/backend-cpu/src/
// elementwise.rs (rms_norm, rope, silu_mul, add_bias, scale, softcap), gelu.rs (gelu_mul), kv_cache.rs (write_kv) and lib.rs (add,
// gather_rows). Each keeps the CPU's expression order and roundings (explicit __fmul_rn/__fadd_rn
// where nvcc would otherwise contract into an FMA); only rms_norm's sum of squares is summed in a
// different order (~1e-6 relative), and sinf/cosf/expf may differ from the host libm by an ulp.
//
// Launch shapes:
//   rms_norm      grid.x = rows, block 256 (one block per row, f32 block reduction).
//   rope          grid.x = rows, block 256 (cos/sin of the row's position once, in shared memory).
//   the rest      grid-stride loops, block 256, grid.x = min(ceil(n / 256), 8192).
#include "args.cuh"
#include "common.cuh"

#define EW_THREADS 256

#define GRID_STRIDE(i, n)                                                                       \
    for (long long i = static_cast<long long>(blockIdx.x) * EW_THREADS + threadIdx.x; i < (n); \
         i += static_cast<long long>(gridDim.x) * EW_THREADS)

extern "C" __global__ void __launch_bounds__(EW_THREADS) rms_norm(const RmsNormArgs a) {
    __shared__ float partial[EW_THREADS / 32];
    const float* x = a.x + static_cast<size_t>(blockIdx.x) * a.dim;
    float* out = a.out + static_cast<size_t>(blockIdx.x) * a.dim;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < a.dim; i += EW_THREADS) sum = fmaf(x[i], x[i], sum);
    sum = warp_sum(sum);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < EW_THREADS / 32; ++w) total += partial[w];
    // CPU: 1 / sqrt(sum / n + eps), then x * scale * weight left to right.
    const float scale = 1.0f / sqrtf(total / static_cast<float>(a.dim) + a.eps);
    for (int i = threadIdx.x; i < a.dim; i += EW_THREADS) out[i] = __fmul_rn(__fmul_rn(x[i], scale), a.weight[i]);
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) rope(const RopeArgs a) {
    __shared__ float cs[MAX_ROPE_PAIRS], sn[MAX_ROPE_PAIRS];
    const float pos = static_cast<float>(__ldg(a.positions + blockIdx.x));
    for (int i = threadIdx.x; i < a.pairs; i += EW_THREADS) {
        // ggml's rope cache (and the CPU twin, RopeParams::cos_sin): theta starts at p and is
        // multiplied by theta_scale once per pair, rounding each time (p·r^i would differ in the
        // last bits); then divided by the pair's factor and scaled.
        float theta = pos;
        for (int k = 0; k < i; ++k) theta = __fmul_rn(theta, a.theta_scale);
        const float angle = __fmul_rn(a.freq_scale, a.has_factors ? __fdiv_rn(theta, a.factors[i]) : theta);
        float s, c;
        sincosf(angle, &s, &c);
        cs[i] = __fmul_rn(c, a.mscale);
        sn[i] = __fmul_rn(s, a.mscale);
    }
    __syncthreads();
    float* row = a.x + static_cast<size_t>(blockIdx.x) * a.heads * a.head_dim;
    for (int idx = threadIdx.x; idx < a.heads * a.pairs; idx += EW_THREADS) {
        const int h = idx / a.pairs, i = idx - h * a.pairs;
        float* head = row + h * a.head_dim;
        const int ia = a.neox ? i : 2 * i;
        const int ib = a.neox ? i + a.pairs : 2 * i + 1;
        const float x0 = head[ia], x1 = head[ib];
        // As the CPU (ggml's rotate_pairs): the first product fused, x0·c − x1·s = fma(x0, c, −x1·s).
        head[ia] = fmaf(x0, cs[i], -__fmul_rn(x1, sn[i]));
        head[ib] = fmaf(x0, sn[i], __fmul_rn(x1, cs[i]));
    }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) silu_mul(const GluArgs a) {
    GRID_STRIDE(i, a.n) {
        const float g = a.gate[i];
        // CPU: g / (1 + exp(-g)) * up.
        a.out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), a.up[i]);
    }
}

// GeGLU as ggml's CUDA computes it (the exact tanh formula; the CPU looks GELU up in ggml's f16
// table, so the two agree to f16 rounding).
extern "C" __global__ void __launch_bounds__(EW_THREADS) gelu_mul(const GluArgs a) {
    GRID_STRIDE(i, a.n) {
        const float x = a.gate[i];
        const float inner = 0.7978845608f * x * (1.0f + 0.044715f * x * x);
        a.out[i] = 0.5f * x * (1.0f + tanhf(inner)) * a.up[i];
    }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) scale(const ScaleArgs a) {
    GRID_STRIDE(i, a.n) { a.x[i] = __fmul_rn(a.x[i], a.factor); }
}

// CPU: x · (1 / c), tanh, · c.
extern "C" __global__ void __launch_bounds__(EW_THREADS) softcap(const ScaleArgs a) {
    const float inv = 1.0f / a.factor;
    GRID_STRIDE(i, a.n) { a.x[i] = __fmul_rn(tanhf(__fmul_rn(a.x[i], inv)), a.factor); }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) add(const AddArgs a) {
    GRID_STRIDE(i, a.n) { a.x[i] = __fadd_rn(a.x[i], a.y[i]); }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) add_bias(const AddBiasArgs a) {
    GRID_STRIDE(i, a.n) { a.x[i] = __fadd_rn(a.x[i], a.bias[i % a.dim]); }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) gather_rows(const GatherArgs a) {
    const long long total = static_cast<long long>(a.n) * a.dim;
    GRID_STRIDE(i, total) {
        const long long t = i / a.dim, d = i - t * a.dim;
        const uint32_t r = __ldg(a.rows + t);
        // The CPU rejects a row past the end; a kernel cannot, so that row reads as zeros.
        a.out[i] = r < a.x_rows ? a.x[static_cast<long long>(r) * a.dim + d] : 0.0f;
    }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) write_kv(const WriteKvArgs a) {
    const long long total = static_cast<long long>(a.n) * a.row;
    GRID_STRIDE(i, total) {
        const long long t = i / a.row, e = i - t * a.row;
        const uint32_t slot = __ldg(a.slots + t);
        if (slot >= a.num_slots) continue;  // the CPU rejects it; here it is dropped
        const long long dst = static_cast<long long>(slot) * a.row + e;
        if (a.f16) {
            // Round to nearest even, as half::f16::from_f32.
            static_cast<__half*>(a.k_cache)[dst] = __float2half_rn(a.k[i]);
            static_cast<__half*>(a.v_cache)[dst] = __float2half_rn(a.v[i]);
        } else {
            static_cast<float*>(a.k_cache)[dst] = a.k[i];
            static_cast<float*>(a.v_cache)[dst] = a.v[i];
        }
    }
}

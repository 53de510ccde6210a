// Decode-size matmul: out[r, o] = sum_k x[r, k] * w[o, k] for R = 1..8 input rows, straight from
// the packed weights (no dequantized copy), in f32.
//
// CPU twin: crates/backend-cpu/src/matmul.rs in `MatmulMode::Float` (`CpuBackend::reference`):
// dequantized weights dotted with f32 activations. Expected agreement ~1e-5 relative to
// sum_k |w x| (only the summation order differs).
//
// Launch: grid.x = sum over jobs of ceil(rows_j / ROWS_PER_CTA), block = 256 threads (8 warps),
// ROWS_PER_CTA = 8 * W. Up to 4 matrices of the same type and width share one launch
// (q/k/v, gate/up); CTA ranges per job are given by `cta_begin`.
//
// Each warp owns W consecutive output rows and walks their 32-weight units with its lanes: one
// unit of each of the W rows per lane per step, 16-byte coalesced loads (a warp reads 512
// contiguous bytes of every row), U units per lane in flight. Activations are staged per K chunk
// in shared memory (swizzled so the lanes' 16-float runs hit distinct banks) together with the
// sum of every 16-float run, which the affine weight offsets (Q4_1, Q5_1, k-quants) multiply. Each
// loaded x value serves W weight rows. Codes are turned into exact floats (common.cuh), dotted
// with x in f32, and scaled once per run: acc += s * sum(q x) + o * sum(x).
#include "args.cuh"
#include "common.cuh"
#include "packed.cuh"

#define GEMV_THREADS 256
#define GEMV_WARPS 8

// Output rows per warp: more rows share each x load, fewer CTAs. Float rows stay at 2 (their raw
// units are large). Mirrored by `gemv_rows_per_warp` in args.rs.
__host__ __device__ constexpr int gemv_w(int fmt, int r) {
    return (r <= 2 || fmt == FMT_F32 || fmt == FMT_F16 || fmt == FMT_BF16) ? 2 : 4;
}
// K chunk staged at once: R * KC floats = 32 KiB of shared memory, a multiple of 256 columns.
__host__ __device__ constexpr int gemv_kc(int r) {
    return r == 1 ? 8192 : r == 2 ? 4096 : r == 3 ? 2560 : r == 4 ? 2048 : r == 5 ? 1536 : r == 6 ? 1280 : 1024;
}
// Units each lane loads before computing (memory-level parallelism vs registers: the float
// types' units are 64-128 bytes, so past 2 input rows one at a time keeps them spill-free; Q5 at
// 4 takes ~160 registers for one input row, one CTA per SM, where 2 takes 75).
__host__ __device__ constexpr int gemv_unroll(int fmt, int w, int r) {
    return w == 4 ? 1
         : (fmt == FMT_Q4_0 || fmt == FMT_Q4_1) ? 4
         : (fmt == FMT_F32 || ((fmt == FMT_F16 || fmt == FMT_BF16) && r > 2)) ? 1
         : 2;
}

// float4 index within a row's staged chunk -> its slot. XOR-ing the low 3 bits with bits 3..5 and
// 4..5 spreads the float4 reads of 8 consecutive lanes over all 32 banks for every unit mapping
// in packed.cuh (tested in packed.rs). Chunks start at multiples of 256 columns, so the swizzle
// of a column does not depend on the chunk.
__device__ __forceinline__ int swz(int f4) { return f4 ^ (((f4 >> 3) & 7) ^ ((f4 >> 4) & 3)); }

template <int R, int KC>
__device__ __forceinline__ void stage_x(const float* __restrict__ x, int cols, int k0, int kc, float4* xs, float* ss) {
    const int runs = kc / 16;
    const bool vec = (cols & 3) == 0;
    for (int idx = threadIdx.x; idx < R * runs; idx += GEMV_THREADS) {
        const int r = idx / runs, run = idx - r * runs;
        const int k = k0 + run * 16;
        const float* src = x + static_cast<size_t>(r) * cols + k;
        float v[16];
        if (vec && k + 16 <= cols) {
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const float4 t = __ldg(reinterpret_cast<const float4*>(src) + c);
                v[4 * c] = t.x; v[4 * c + 1] = t.y; v[4 * c + 2] = t.z; v[4 * c + 3] = t.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < 16; ++i) v[i] = (k + i < cols) ? __ldg(src + i) : 0.0f;
        }
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; ++i) sum += v[i];
#pragma unroll
        for (int c = 0; c < 4; ++c)
            xs[r * (KC / 4) + swz(run * 4 + c)] = make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]);
        ss[r * (KC / 16) + run] = sum;
    }
}

// One run (16 columns starting at chunk offset `xoff`) of one unit for the warp's W rows.
template <int FMT, int R, int W, int KC, int RUN>
__device__ __forceinline__ void run_dot(const typename Fmt<FMT>::Raw (&raw)[W], int u, int xoff, const float4* xs,
                                        const float* ss, float (&acc)[R][W]) {
    float q[W][16], s[W], o[W];
#pragma unroll
    for (int wi = 0; wi < W; ++wi) Fmt<FMT>::template decode<RUN>(raw[wi], u, q[wi], s[wi], o[wi]);
    const int f4 = xoff >> 2;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        float p[W];
#pragma unroll
        for (int wi = 0; wi < W; ++wi) p[wi] = 0.0f;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const float4 xv = xs[r * (KC / 4) + swz(f4 + c)];
#pragma unroll
            for (int wi = 0; wi < W; ++wi) {
                p[wi] = fmaf(q[wi][4 * c], xv.x, p[wi]);
                p[wi] = fmaf(q[wi][4 * c + 1], xv.y, p[wi]);
                p[wi] = fmaf(q[wi][4 * c + 2], xv.z, p[wi]);
                p[wi] = fmaf(q[wi][4 * c + 3], xv.w, p[wi]);
            }
        }
        const float sx = ss[r * (KC / 16) + (xoff >> 4)];
#pragma unroll
        for (int wi = 0; wi < W; ++wi) acc[r][wi] += s[wi] * p[wi] + o[wi] * sx;
    }
}

// Units u, u + 32, ... (U of them) of the warp's W rows; units past the chunk or rows past the
// matrix read as zeros (never used).
template <typename F, int U, int W>
__device__ __forceinline__ void load_units(const PackedMatrix& w, int row0, int u, int ue, typename F::Raw (&raw)[U][W]) {
#pragma unroll
    for (int i = 0; i < U; ++i)
#pragma unroll
        for (int wi = 0; wi < W; ++wi) {
            if (u + 32 * i < ue && row0 + wi < w.rows) raw[i][wi] = F::load(w, row0 + wi, u + 32 * i);
            else raw[i][wi] = typename F::Raw{};
        }
}

template <int FMT, int R>
__device__ __forceinline__ void gemv(const GemvArgs& a) {
    using F = Fmt<FMT>;
    constexpr int W = gemv_w(FMT, R);
    constexpr int KC = gemv_kc(R);
    constexpr int U = gemv_unroll(FMT, W, R);
    __shared__ __align__(16) float4 xs[R * KC / 4];  // [R][KC] swizzled
    __shared__ float ss[R * KC / 16];                 // [R][KC / 16] run sums

    // This CTA's job (constant indices only, so the parameter struct is never copied to the stack).
    PackedMatrix w = a.jobs[0].w;
    float* out = a.jobs[0].out;
    int begin = a.jobs[0].cta_begin;
#pragma unroll
    for (int j = 1; j < GEMV_MAX_JOBS; ++j) {
        if (j < a.njobs && static_cast<int>(blockIdx.x) >= a.jobs[j].cta_begin) {
            w = a.jobs[j].w;
            out = a.jobs[j].out;
            begin = a.jobs[j].cta_begin;
        }
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (static_cast<int>(blockIdx.x) - begin) * (GEMV_WARPS * W) + warp * W;

    float acc[R][W];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int wi = 0; wi < W; ++wi) acc[r][wi] = 0.0f;

    const int kp = w.units * 32;
    for (int k0 = 0; k0 < kp; k0 += KC) {
        const int kc = min(KC, kp - k0);
        const int ub = k0 / 32, ue = ub + kc / 32;
        int u = ub + lane;
        // With 1-2 input rows the first weights are requested before the activations are staged,
        // so their latency overlaps the staging (for rows up to 32 * 32 * U wide that is every
        // weight load). With more rows the registers are needed elsewhere (ptxas would spill).
        constexpr bool EARLY = R <= 2;
        typename F::Raw raw[U][W];
        if (EARLY) load_units<F, U, W>(w, row0, u, ue, raw);
        __syncthreads();  // the previous chunk's readers are done
        stage_x<R, KC>(a.x, w.cols, k0, kc, xs, ss);
        __syncthreads();
        while (u < ue) {
            if (!EARLY) load_units<F, U, W>(w, row0, u, ue, raw);
#pragma unroll
            for (int i = 0; i < U; ++i) {
                const int uu = u + 32 * i;
                if (uu < ue) {
                    int x0, x1;
                    F::runs(uu, x0, x1);
                    run_dot<FMT, R, W, KC, 0>(raw[i], uu, x0 - k0, xs, ss, acc);
                    run_dot<FMT, R, W, KC, 1>(raw[i], uu, x1 - k0, xs, ss, acc);
                }
            }
            u += 32 * U;
            if (EARLY && u < ue) load_units<F, U, W>(w, row0, u, ue, raw);
        }
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int wi = 0; wi < W; ++wi) {
            const float v = warp_sum(acc[r][wi]);
            if (lane == 0 && row0 + wi < w.rows) out[static_cast<size_t>(r) * w.rows + row0 + wi] = v;
        }
}

#define GEMV_KERNEL(name, FMT, R)                                                        \
    extern "C" __global__ void __launch_bounds__(GEMV_THREADS) gemv_##name##_r##R(const GemvArgs a) { \
        gemv<FMT, R>(a);                                                                 \
    }
#define GEMV_ALL_R(name, FMT)                                                             \
    GEMV_KERNEL(name, FMT, 1) GEMV_KERNEL(name, FMT, 2) GEMV_KERNEL(name, FMT, 3) GEMV_KERNEL(name, FMT, 4) \
    GEMV_KERNEL(name, FMT, 5) GEMV_KERNEL(name, FMT, 6) GEMV_KERNEL(name, FMT, 7) GEMV_KERNEL(name, FMT, 8)

GEMV_ALL_R(f32, FMT_F32)
GEMV_ALL_R(f16, FMT_F16)
GEMV_ALL_R(bf16, FMT_BF16)
GEMV_ALL_R(q4_0, FMT_Q4_0)
GEMV_ALL_R(q4_1, FMT_Q4_1)
GEMV_ALL_R(q5_0, FMT_Q5_0)
GEMV_ALL_R(q5_1, FMT_Q5_1)
GEMV_ALL_R(q8_0, FMT_Q8_0)
GEMV_ALL_R(q4_k, FMT_Q4_K)
GEMV_ALL_R(q5_k, FMT_Q5_K)
GEMV_ALL_R(q6_k, FMT_Q6_K)
GEMV_ALL_R(q2_k, FMT_Q2_K)
GEMV_ALL_R(q3_k, FMT_Q3_K)
GEMV_ALL_R(iq4_nl, FMT_IQ4_NL)
GEMV_ALL_R(iq4_xs, FMT_IQ4_XS)

// Causal paged attention: q [n, heads, hd] against each token's own sequence in the KV cache
// (positions first..=pos through its block table, first = 0 or the start of a sliding window of
// `window` keys), grouped-query aware, out [n, heads, hd]. Scores are q·k · scale, or with a soft
// cap c, c · tanh(q·k · scale / c) (the query is pre-multiplied by scale / c on the host's word).
// CPU twin: crates/backend-cpu/src/attention/ (against an f16 cache the query is rounded to f16
// first). Expected agreement ~1e-5 relative (summation order and expf/tanhf ulps).
//
// Kernels (every grid depends only on sizes; positions, sequences and block tables are read here):
//   attn_decode_<kv>_hd<HD>_g<G>   grid (n, kv_heads * head_chunks, splits), 128 threads.
//       One CTA = one token x up to G query heads of one KV head x one split of the context.
//       Lane groups of HD/8 lanes each own a K/V row (8 elements per lane, 16-byte loads) and keep
//       their own online-softmax state; the CTA merges its groups in shared memory and writes
//       either the output (splits == 1) or a partial (max, sum, unnormalized acc) per split. A
//       split that starts past the token's position writes an empty partial (-inf, 0, 0).
//   attn_merge                     grid (n, heads), min(hd, 256) threads: combines the splits.
//   attn_prefill_<kv>_hd<HD>       grid (ceil(n / tq), kv_heads), 128 threads, dynamic smem.
//       Flash attention on CUDA cores for tq consecutive tokens x the whole GQA group (tq * group
//       <= 64 query rows, 32 for hd 256): K/V tiles of 32 positions staged in shared memory and
//       reused by every query row, online softmax, causal mask by position. Tokens of several
//       sequences in one tile are handled one sequence run at a time (rows of other runs masked).
//   attn_generic_<kv>              grid (n, heads), 32 threads: any head_dim <= 256, one warp per
//       (token, head), a position at a time. The fallback for unusual head sizes.
// With `classify` set (mixed batches), tokens whose sequence has several tokens in the batch go to
// the prefill kernel and the others to decode/merge; each kernel skips the other's tokens.
#include "args.cuh"
#include "common.cuh"

#define ATT_THREADS 128
#define ATT_WARPS 4
#define PF_TK 32
#define PF_MAX_ROWS 64

template <typename KV> __device__ __forceinline__ float round_q(float v);
template <> __device__ __forceinline__ float round_q<__half>(float v) { return __half2float(__float2half_rn(v)); }
template <> __device__ __forceinline__ float round_q<float>(float v) { return v; }

__device__ __forceinline__ void load8(const __half* p, float* f) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t w = word_of(v, i);
        f[2 * i] = f16_bits_to_f32(w);
        f[2 * i + 1] = f16_bits_to_f32(w >> 16);
    }
}
__device__ __forceinline__ void load8(const float* p, float* f) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
    f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

// The 8-element chunk `chunk` of one K row and one V row at cache offset `off`; zeros for a slot
// past the end (off < 0).
template <typename KV>
__device__ __forceinline__ void load_kv8(const KV* kc, const KV* vc, long long off, int chunk, float* kf, float* vf) {
    if (off >= 0) {
        load8(kc + off + 8 * chunk, kf);
        load8(vc + off + 8 * chunk, vf);
    } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) kf[i] = vf[i] = 0.0f;
    }
}

// Whether token t's sequence has other tokens in this batch (they are contiguous).
__device__ __forceinline__ bool multi_token(const AttnArgs& a, int t) {
    const uint32_t s = __ldg(a.token_seq + t);
    return (t > 0 && __ldg(a.token_seq + t - 1) == s) || (t + 1 < a.num_tokens && __ldg(a.token_seq + t + 1) == s);
}

// Whether token t's sequence and position lie inside the block tables (the CPU returns an error
// otherwise; here the token's output is zero).
// The first position the query at `pos` reads: 0, or the start of its sliding window.
__device__ __forceinline__ int first_pos(const AttnArgs& a, uint32_t pos) {
    return a.window > 0 ? max(0, static_cast<int>(pos) + 1 - a.window) : 0;
}

// A score of the pre-scaled query, soft-capped where the layer caps.
__device__ __forceinline__ float cap_score(const AttnArgs& a, float s) { return a.softcap > 0.0f ? a.softcap * tanhf(s) : s; }

__device__ __forceinline__ bool token_ok(const AttnArgs& a, uint32_t seq, uint32_t pos) {
    return seq < static_cast<uint32_t>(a.num_seqs) && pos / static_cast<uint32_t>(a.block_size) < static_cast<uint32_t>(a.max_blocks);
}

// Cache element offset of position p's row for KV head kvh, or -1 when its block id is invalid.
__device__ __forceinline__ long long kv_offset(const AttnArgs& a, const uint32_t* table, int p, int kvh) {
    const uint32_t blk = __ldg(table + p / a.block_size);
    if (blk >= static_cast<uint32_t>(a.num_blocks)) return -1;
    const long long slot = static_cast<long long>(blk) * a.block_size + p % a.block_size;
    return (slot * a.kv_heads + kvh) * a.head_dim;
}

// ------------------------------------------------------------------------------------------------
template <int HD, int G, typename KV>
__device__ __forceinline__ void attn_decode(const AttnArgs& a) {
    constexpr int LPR = HD / 8;          // lanes per K/V row
    constexpr int RPW = 32 / LPR;        // rows per warp and step
    constexpr int SLOTS = ATT_WARPS * RPW;
    __shared__ __align__(16) float q_s[G][HD];
    __shared__ float m_s[SLOTS][G], l_s[SLOTS][G];
    __shared__ __align__(16) float acc_s[SLOTS][G][HD];

    const int t = blockIdx.x;
    const int kvh = blockIdx.y / a.head_chunks, g0 = (blockIdx.y % a.head_chunks) * G;
    const int gcount = min(G, a.group - g0);
    const int split = blockIdx.z;
    if (a.classify && multi_token(a, t)) return;  // the prefill kernel owns it (uniform per CTA)
    const uint32_t pos = __ldg(a.positions + t), seq = __ldg(a.token_seq + t);
    const int split_start = split * a.split_len;
    const int start = max(split_start, first_pos(a, pos));
    const int end = token_ok(a, seq, pos) ? max(start, static_cast<int>(min(static_cast<long long>(split_start) + a.split_len,
                                                                            static_cast<long long>(pos) + 1)))
                                          : start;

    for (int i = threadIdx.x; i < G * HD; i += ATT_THREADS) {
        const int g = i / HD, d = i % HD;
        float v = 0.0f;
        if (g < gcount) v = round_q<KV>(a.q[(static_cast<size_t>(t) * a.heads + kvh * a.group + g0 + g) * HD + d]) * a.scale;
        q_s[g][d] = v;
    }
    __syncthreads();

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int slot = warp * RPW + lane / LPR, sub = lane % LPR;
    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] = 0.0f;
    }
    const uint32_t* table = a.block_tables + static_cast<size_t>(min(seq, static_cast<uint32_t>(a.num_seqs - 1))) * a.max_blocks;
    const KV* kc = static_cast<const KV*>(a.k_cache);
    const KV* vc = static_cast<const KV*>(a.v_cache);
    // Whole warps step together (the score reduction shuffles across the warp); lanes whose row is
    // past the end just contribute nothing.
    for (int pbase = start + warp * RPW; pbase < end; pbase += SLOTS) {
        const int p = pbase + lane / LPR;
        long long off = p < end ? kv_offset(a, table, p, kvh) : -1;
        float kf[8], vf[8];
        load_kv8(kc, vc, off, sub, kf, vf);
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float4 qa = *reinterpret_cast<const float4*>(&q_s[g][8 * sub]);
            const float4 qb = *reinterpret_cast<const float4*>(&q_s[g][8 * sub + 4]);
            float s = qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] +
                      qb.z * kf[6] + qb.w * kf[7];
#pragma unroll
            for (int o = LPR / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
            s = cap_score(a, s);
            if (off >= 0 && g < gcount) {
                const float mn = fmaxf(m[g], s);
                const float corr = exp_diff(m[g], mn);
                const float pw = expf(s - mn);
                l[g] = l[g] * corr + pw;
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[g][i] = fmaf(pw, vf[i], acc[g][i] * corr);
                m[g] = mn;
            }
        }
    }

#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc_s[slot][g][8 * sub + i] = acc[g][i];
        if (sub == 0) {
            m_s[slot][g] = m[g];
            l_s[slot][g] = l[g];
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < gcount * HD; i += ATT_THREADS) {
        const int g = i / HD, d = i % HD;
        float mx = -INFINITY;
#pragma unroll
        for (int s = 0; s < SLOTS; ++s) mx = fmaxf(mx, m_s[s][g]);
        float L = 0.0f, A = 0.0f;
#pragma unroll
        for (int s = 0; s < SLOTS; ++s) {
            const float w = exp_diff(m_s[s][g], mx);
            L = fmaf(l_s[s][g], w, L);
            A = fmaf(acc_s[s][g][d], w, A);
        }
        const size_t th = static_cast<size_t>(t) * a.heads + kvh * a.group + g0 + g;
        if (a.splits == 1) {
            a.out[th * HD + d] = L > 0.0f ? A / L : 0.0f;
        } else {
            const size_t pi = th * a.splits + split;
            a.part_acc[pi * HD + d] = A;
            if (d == 0) {
                a.part_ml[2 * pi] = mx;
                a.part_ml[2 * pi + 1] = L;
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) attn_merge(const AttnArgs a) {
    const int t = blockIdx.x, h = blockIdx.y;
    if (a.classify && multi_token(a, t)) return;
    const size_t th = static_cast<size_t>(t) * a.heads + h;
    const float* ml = a.part_ml + th * a.splits * 2;
    float mx = -INFINITY;
    for (int s = 0; s < a.splits; ++s) mx = fmaxf(mx, ml[2 * s]);
    for (int d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
        float L = 0.0f, A = 0.0f;
        for (int s = 0; s < a.splits; ++s) {
            const float w = exp_diff(ml[2 * s], mx);  // empty splits (-inf) weigh nothing
            L = fmaf(ml[2 * s + 1], w, L);
            A = fmaf(a.part_acc[(th * a.splits + s) * a.head_dim + d], w, A);
        }
        a.out[th * a.head_dim + d] = L > 0.0f ? A / L : 0.0f;
    }
}

// ------------------------------------------------------------------------------------------------
__host__ __device__ constexpr int pf_rpt(int hd) { return hd <= 128 ? 4 : 2; }   // query rows per thread
__host__ __device__ constexpr int pf_rows(int hd) { return 16 * pf_rpt(hd); }   // query rows per CTA
__host__ __device__ constexpr int pf_qs(int hd) { return hd + 4; }              // padded row stride
// Dynamic shared memory of attn_prefill (mirrored by `prefill_smem_bytes` in args.rs).
__host__ __device__ constexpr int pf_smem_floats(int hd) {
    return pf_rows(hd) * pf_qs(hd) + PF_TK * pf_qs(hd) + PF_TK * hd + pf_rows(hd) * (PF_TK + 1);
}

template <int HD, typename KV>
__device__ __forceinline__ void attn_prefill(const AttnArgs& a) {
    constexpr int RPT = pf_rpt(HD), QROWS = pf_rows(HD), QS = pf_qs(HD), TK = PF_TK, PS = TK + 1;
    constexpr int OC = HD / 32;  // float4 output chunks per thread and row
    extern __shared__ float4 smem4[];
    float* q_s = reinterpret_cast<float*>(smem4);  // [QROWS][QS]
    float* k_s = q_s + QROWS * QS;                  // [TK][QS]
    float* v_s = k_s + TK * QS;                     // [TK][HD]
    float* p_s = v_s + TK * HD;                     // [QROWS][PS]
    __shared__ uint32_t tok_seq[PF_MAX_ROWS], tok_pos[PF_MAX_ROWS];
    __shared__ int tok_first[PF_MAX_ROWS];
    __shared__ int tok_own[PF_MAX_ROWS], tok_go[PF_MAX_ROWS], kv_ok[TK];

    const int tq = a.tq, group = a.group;
    const int t0 = blockIdx.x * tq, kvh = blockIdx.y;
    const int nt = min(tq, a.num_tokens - t0);
    const int nrows = nt * group;
    for (int i = threadIdx.x; i < nt; i += ATT_THREADS) {
        const int t = t0 + i;
        const uint32_t seq = __ldg(a.token_seq + t), pos = __ldg(a.positions + t);
        const bool own = !a.classify || multi_token(a, t);
        tok_seq[i] = seq;
        tok_pos[i] = pos;
        tok_first[i] = first_pos(a, pos);
        tok_own[i] = own;
        tok_go[i] = own && token_ok(a, seq, pos);
    }
    for (int i = threadIdx.x; i < QROWS * HD; i += ATT_THREADS) {
        const int r = i / HD, d = i % HD;
        float v = 0.0f;
        if (r < nrows) {
            const int h = kvh * group + r % group;
            v = round_q<KV>(a.q[(static_cast<size_t>(t0 + r / group) * a.heads + h) * HD + d]) * a.scale;
        }
        q_s[r * QS + d] = v;
    }

    // Thread (ty, tx): query rows ty + 16 i, key columns tx + 8 j, output float4s 8 e + tx.
    const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
    float o[RPT][OC][4], m[RPT], l[RPT];
#pragma unroll
    for (int i = 0; i < RPT; ++i) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < OC; ++e) o[i][e][0] = o[i][e][1] = o[i][e][2] = o[i][e][3] = 0.0f;
    }
    const KV* kc = static_cast<const KV*>(a.k_cache);
    const KV* vc = static_cast<const KV*>(a.v_cache);
    __syncthreads();

    // One run of equal sequences at a time (normally the whole tile is one run).
    for (int seg = 0; seg < nt;) {
        int seg_end = seg + 1;
        while (seg_end < nt && tok_seq[seg_end] == tok_seq[seg]) ++seg_end;
        // Keys needed: from the first position any valid token of the run reads (a sliding window
        // starts past 0) up to the last (invalid tokens stay masked).
        int kv_len = 0, kv_first = 0x7FFFFFFF;
        for (int i = seg; i < seg_end; ++i)
            if (tok_go[i]) {
                kv_len = max(kv_len, static_cast<int>(tok_pos[i]) + 1);
                kv_first = min(kv_first, tok_first[i]);
            }
        if (kv_len > 0) {
            const uint32_t* table = a.block_tables + static_cast<size_t>(tok_seq[seg]) * a.max_blocks;
            for (int kt0 = kv_first / TK * TK; kt0 < kv_len; kt0 += TK) {
                __syncthreads();  // the previous tile is consumed
                for (int i = threadIdx.x; i < TK * (HD / 8); i += ATT_THREADS) {
                    const int c = i / (HD / 8), ch = i % (HD / 8);
                    const int p = kt0 + c;
                    const long long off = p < kv_len ? kv_offset(a, table, p, kvh) : -1;
                    float kf[8], vf[8];
                    load_kv8(kc, vc, off, ch, kf, vf);
                    if (ch == 0) kv_ok[c] = off >= 0;
                    float4* kd = reinterpret_cast<float4*>(k_s + c * QS + 8 * ch);
                    float4* vd = reinterpret_cast<float4*>(v_s + c * HD + 8 * ch);
                    kd[0] = make_float4(kf[0], kf[1], kf[2], kf[3]);
                    kd[1] = make_float4(kf[4], kf[5], kf[6], kf[7]);
                    vd[0] = make_float4(vf[0], vf[1], vf[2], vf[3]);
                    vd[1] = make_float4(vf[4], vf[5], vf[6], vf[7]);
                }
                __syncthreads();

                float s[RPT][TK / 8];
#pragma unroll
                for (int i = 0; i < RPT; ++i)
#pragma unroll
                    for (int j = 0; j < TK / 8; ++j) s[i][j] = 0.0f;
#pragma unroll 4
                for (int d = 0; d < HD; d += 4) {
                    float4 qv[RPT], kv[TK / 8];
#pragma unroll
                    for (int i = 0; i < RPT; ++i) qv[i] = *reinterpret_cast<const float4*>(q_s + (ty + 16 * i) * QS + d);
#pragma unroll
                    for (int j = 0; j < TK / 8; ++j) kv[j] = *reinterpret_cast<const float4*>(k_s + (tx + 8 * j) * QS + d);
#pragma unroll
                    for (int i = 0; i < RPT; ++i)
#pragma unroll
                        for (int j = 0; j < TK / 8; ++j)
                            s[i][j] += qv[i].x * kv[j].x + qv[i].y * kv[j].y + qv[i].z * kv[j].z + qv[i].w * kv[j].w;
                }

#pragma unroll
                for (int i = 0; i < RPT; ++i) {
                    const int r = ty + 16 * i, tl = r / group;
                    const bool row_on = r < nrows && tl >= seg && tl < seg_end && tok_go[tl];
                    const int rpos = row_on ? static_cast<int>(tok_pos[tl]) : -1;
                    const int rfirst = row_on ? tok_first[tl] : 0;
                    float mx = -INFINITY;
#pragma unroll
                    for (int j = 0; j < TK / 8; ++j) {
                        const int c = tx + 8 * j, p = kt0 + c;
                        const bool on = row_on && p >= rfirst && p <= rpos && kv_ok[c];
                        s[i][j] = on ? cap_score(a, s[i][j]) : -INFINITY;
                        mx = fmaxf(mx, s[i][j]);
                    }
                    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 2));
                    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 4));
                    const float mn = fmaxf(m[i], mx);
                    float corr = 1.0f, rs = 0.0f;
                    if (mn != -INFINITY) corr = exp_diff(m[i], mn);
#pragma unroll
                    for (int j = 0; j < TK / 8; ++j) {
                        const float pw = s[i][j] == -INFINITY ? 0.0f : expf(s[i][j] - mn);
                        rs += pw;
                        p_s[r * PS + tx + 8 * j] = pw;
                    }
                    rs += __shfl_xor_sync(0xFFFFFFFFu, rs, 1);
                    rs += __shfl_xor_sync(0xFFFFFFFFu, rs, 2);
                    rs += __shfl_xor_sync(0xFFFFFFFFu, rs, 4);
                    l[i] = l[i] * corr + rs;
                    m[i] = mn;
#pragma unroll
                    for (int e = 0; e < OC; ++e)
#pragma unroll
                        for (int c = 0; c < 4; ++c) o[i][e][c] *= corr;
                }
                __syncthreads();

#pragma unroll 4
                for (int c = 0; c < TK; ++c) {
                    float pv[RPT];
#pragma unroll
                    for (int i = 0; i < RPT; ++i) pv[i] = p_s[(ty + 16 * i) * PS + c];
#pragma unroll
                    for (int e = 0; e < OC; ++e) {
                        const float4 vv = *reinterpret_cast<const float4*>(v_s + c * HD + 32 * e + 4 * tx);
#pragma unroll
                        for (int i = 0; i < RPT; ++i) {
                            o[i][e][0] = fmaf(pv[i], vv.x, o[i][e][0]);
                            o[i][e][1] = fmaf(pv[i], vv.y, o[i][e][1]);
                            o[i][e][2] = fmaf(pv[i], vv.z, o[i][e][2]);
                            o[i][e][3] = fmaf(pv[i], vv.w, o[i][e][3]);
                        }
                    }
                }
            }
        }
        seg = seg_end;
    }

#pragma unroll
    for (int i = 0; i < RPT; ++i) {
        const int r = ty + 16 * i;
        if (r >= nrows || !tok_own[r / group]) continue;
        const int h = kvh * group + r % group;
        const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        float* dst = a.out + (static_cast<size_t>(t0 + r / group) * a.heads + h) * HD;
#pragma unroll
        for (int e = 0; e < OC; ++e)
            *reinterpret_cast<float4*>(dst + 32 * e + 4 * tx) =
                make_float4(o[i][e][0] * inv, o[i][e][1] * inv, o[i][e][2] * inv, o[i][e][3] * inv);
    }
}

// ------------------------------------------------------------------------------------------------
template <typename KV>
__device__ __forceinline__ void attn_generic(const AttnArgs& a) {
    constexpr int PER_LANE = 8;  // head_dim <= 256
    const int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    if (a.classify && multi_token(a, t)) return;
    const int hd = a.head_dim, kvh = h / a.group;
    const uint32_t pos = __ldg(a.positions + t), seq = __ldg(a.token_seq + t);
    const int end = token_ok(a, seq, pos) ? static_cast<int>(pos) + 1 : 0;
    float q[PER_LANE], acc[PER_LANE];
    const float* qp = a.q + (static_cast<size_t>(t) * a.heads + h) * hd;
#pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + 32 * i;
        q[i] = d < hd ? round_q<KV>(qp[d]) * a.scale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const uint32_t* table = a.block_tables + static_cast<size_t>(min(seq, static_cast<uint32_t>(a.num_seqs - 1))) * a.max_blocks;
    const KV* kc = static_cast<const KV*>(a.k_cache);
    const KV* vc = static_cast<const KV*>(a.v_cache);
    for (int p = first_pos(a, pos); p < end; ++p) {  // uniform across the warp
        const long long off = kv_offset(a, table, p, kvh);
        if (off < 0) continue;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < PER_LANE; ++i) {
            const int d = lane + 32 * i;
            if (d < hd) s = fmaf(q[i], static_cast<float>(kc[off + d]), s);
        }
        s = cap_score(a, warp_sum(s));
        const float mn = fmaxf(m, s);
        const float corr = exp_diff(m, mn), pw = expf(s - mn);
        l = l * corr + pw;
#pragma unroll
        for (int i = 0; i < PER_LANE; ++i) {
            const int d = lane + 32 * i;
            if (d < hd) acc[i] = fmaf(pw, static_cast<float>(vc[off + d]), acc[i] * corr);
        }
        m = mn;
    }
    float* dst = a.out + (static_cast<size_t>(t) * a.heads + h) * hd;
#pragma unroll
    for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) dst[d] = l > 0.0f ? acc[i] / l : 0.0f;
    }
}

// (128, 4): without a register target ptxas spilled a few bytes in one instantiation.
#define DECODE_KERNEL(kvname, KV, HD, G)                                                                  \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS, 4) attn_decode_##kvname##_hd##HD##_g##G(const AttnArgs a) { \
        attn_decode<HD, G, KV>(a);                                                                        \
    }
#define DECODE_ALL_G(kvname, KV, HD) \
    DECODE_KERNEL(kvname, KV, HD, 1) DECODE_KERNEL(kvname, KV, HD, 2) DECODE_KERNEL(kvname, KV, HD, 4) DECODE_KERNEL(kvname, KV, HD, 8)
#define PREFILL_KERNEL(kvname, KV, HD)                                                                    \
    extern "C" __global__ void __launch_bounds__(ATT_THREADS) attn_prefill_##kvname##_hd##HD(const AttnArgs a) { \
        attn_prefill<HD, KV>(a);                                                                          \
    }
#define ATTN_FAMILY(kvname, KV)                                                                           \
    DECODE_ALL_G(kvname, KV, 64) DECODE_ALL_G(kvname, KV, 128) DECODE_ALL_G(kvname, KV, 256)              \
    PREFILL_KERNEL(kvname, KV, 64) PREFILL_KERNEL(kvname, KV, 128) PREFILL_KERNEL(kvname, KV, 256)        \
    extern "C" __global__ void __launch_bounds__(32) attn_generic_##kvname(const AttnArgs a) { attn_generic<KV>(a); }

ATTN_FAMILY(f16, __half)
ATTN_FAMILY(f32, float)

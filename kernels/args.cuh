// The one by-value argument of every kernel, mirrored field for field by the `#[repr(C)]` structs
// in crates/backend-cuda/src/args.rs. Sizes are asserted here; build.rs also compiles
// crates/backend-cuda/abi/offsets.cu (a host program printing every field's offset) and a Rust
// test compares those offsets with `offset_of!`, so a reordered or retyped field fails the tests.
#pragma once

#include "common.cuh"

#define GEMV_MAX_JOBS 4
#define MAX_ROPE_PAIRS 256

// quant_gemv.cu
struct GemvJob {
    PackedMatrix w;
    float* out;          // [R, w.rows]
    int32_t cta_begin;   // first CTA of this job
    int32_t pad_;
};
struct GemvArgs {
    GemvJob jobs[GEMV_MAX_JOBS];
    const float* x;      // [R, cols]
    int32_t njobs;
    int32_t pad_;
};

// dequant.cu
struct DequantArgs {
    PackedMatrix w;
    uint16_t* out;   // bf16 [nrows, ld]
    int32_t row0;
    int32_t nrows;
    int32_t ld;      // elements per output row (the padded width)
    int32_t pad_;
};
struct EmbedArgs {
    PackedMatrix w;
    const uint32_t* tokens;  // [n]
    float* out;              // [n, w.cols]
    int32_t n;
    int32_t pad_;
};
struct ConvertArgs {
    const float* x;
    uint16_t* out;
    int64_t n;
};

// elementwise.cu
struct RmsNormArgs {
    const float* x;       // [rows, dim]
    const float* weight;  // [dim]
    float* out;           // [rows, dim]
    int32_t rows;
    int32_t dim;
    float eps;
    int32_t pad_;
};
struct RopeArgs {
    float* x;                  // [rows, heads, head_dim], rotated in place
    const uint32_t* positions; // [rows]
    int32_t rows;
    int32_t heads;
    int32_t head_dim;
    int32_t pairs;             // rot_dim / 2
    int32_t neox;
    // rill_backend::RopeParams: angle_i = freq_scale · (θ_i / factor_i), θ multiplied up by
    // theta_scale per pair as ggml does; cos and sin times mscale.
    float theta_scale;
    float freq_scale;
    float mscale;
    int32_t has_factors;
    int32_t pad_;
    // The factors travel by value: nothing to upload or keep on the device, and a captured
    // graph holds its own copy.
    float factors[MAX_ROPE_PAIRS];
};
struct GluArgs { const float* gate; const float* up; float* out; int64_t n; };
struct ScaleArgs { float* x; int64_t n; float factor; int32_t pad_; };
struct AddArgs { float* x; const float* y; int64_t n; };
struct AddBiasArgs { float* x; const float* bias; int64_t n; int32_t dim; int32_t pad_; };
struct GatherArgs {
    const float* x;        // [x_rows, dim]
    const uint32_t* rows;  // [n]
    float* out;            // [n, dim]
    int64_t x_rows;
    int32_t n;
    int32_t dim;
};
// Mixture of experts (experts.cu).
struct RouteArgs {
    const float* logits;  // [rows, experts]
    uint32_t* ids;        // [rows, used]
    float* weights;       // [rows, used]
    int32_t rows;
    int32_t experts;
    int32_t used;
    int32_t normalize;
    float scale;
    int32_t pad_;
};
struct CombineArgs {
    const float* y;        // [rows, used, dim]
    const float* weights;  // [rows, used]
    float* out;            // [rows, dim]
    int64_t n;             // rows * dim
    int32_t used;
    int32_t dim;
};
struct GatedAddArgs {
    float* x;           // [rows, dim]
    const float* y;     // [rows, dim]
    const float* gate;  // [rows]
    int64_t n;          // rows * dim
    int32_t dim;
    int32_t pad_;
};
struct ScatterArgs {
    const float* src;      // [n, dim]
    const uint32_t* rows;  // [n]
    float* out;            // [out_rows, dim]
    int64_t out_rows;
    int32_t n;
    int32_t dim;
};
struct WriteKvArgs {
    const float* k;         // [n, row]
    const float* v;         // [n, row]
    const uint32_t* slots;  // [n]
    void* k_cache;          // [num_slots, row] of f16 or f32
    void* v_cache;
    int64_t num_slots;
    int32_t n;
    int32_t row;            // kv_heads * head_dim
    int32_t f16;            // element type of the cache
    int32_t pad_;
};

// attention.cu
struct AttnArgs {
    const float* q;                // [n, heads, hd]
    float* out;                    // [n, heads, hd]
    const void* k_cache;           // this layer's K: [num_blocks * block_size, kv_heads, hd]
    const void* v_cache;
    const uint32_t* positions;     // [n]
    const uint32_t* token_seq;     // [n]
    const uint32_t* block_tables;  // [num_seqs, max_blocks]
    float* part_acc;               // [n, heads, splits, hd]
    float* part_ml;                // [n, heads, splits, 2]
    int32_t num_tokens;
    int32_t num_seqs;
    int32_t heads;
    int32_t kv_heads;
    int32_t group;                 // heads / kv_heads
    int32_t head_dim;
    int32_t block_size;
    int32_t max_blocks;            // block table row length
    int32_t num_blocks;            // blocks in the cache
    int32_t split_len;             // positions per split (decode)
    int32_t splits;
    int32_t head_chunks;           // ceil(group / G) (decode)
    int32_t classify;
    int32_t tq;                    // tokens per CTA (prefill)
    float scale;                   // multiplies the query: the layer's scale, / softcap when capped
    float softcap;                 // 0: none
    int32_t window;                // sliding window in keys; 0: none
    int32_t pad_;
};

// sample.cu
struct SampleRow {            // rill_backend::DrawParams, one per row
    float temperature;
    uint32_t top_k;
    float top_p;
    float min_p;
    float uniform;
};
struct SampleArgs {
    const float* logits;      // [rows, vocab]
    const SampleRow* params;  // [rows]
    uint32_t* out;            // [rows]
    int32_t rows;
    int32_t vocab;
};

static_assert(sizeof(GemvJob) == 56, "mirrored in args.rs");
static_assert(sizeof(GemvArgs) == 240, "mirrored in args.rs");
static_assert(sizeof(DequantArgs) == 64, "mirrored in args.rs");
static_assert(sizeof(EmbedArgs) == 64, "mirrored in args.rs");
static_assert(sizeof(ConvertArgs) == 24, "mirrored in args.rs");
static_assert(sizeof(RmsNormArgs) == 40, "mirrored in args.rs");
static_assert(sizeof(RopeArgs) == 1080, "mirrored in args.rs");
static_assert(sizeof(GluArgs) == 32, "mirrored in args.rs");
static_assert(sizeof(ScaleArgs) == 24, "mirrored in args.rs");
static_assert(sizeof(AddArgs) == 24, "mirrored in args.rs");
static_assert(sizeof(AddBiasArgs) == 32, "mirrored in args.rs");
static_assert(sizeof(GatherArgs) == 40, "mirrored in args.rs");
static_assert(sizeof(RouteArgs) == 48, "mirrored in args.rs");
static_assert(sizeof(CombineArgs) == 40, "mirrored in args.rs");
static_assert(sizeof(GatedAddArgs) == 40, "mirrored in args.rs");
static_assert(sizeof(ScatterArgs) == 40, "mirrored in args.rs");
static_assert(sizeof(WriteKvArgs) == 64, "mirrored in args.rs");
static_assert(sizeof(AttnArgs) == 144, "mirrored in args.rs");
static_assert(sizeof(SampleRow) == 20, "mirrored in args.rs");
static_assert(sizeof(SampleArgs) == 32, "mirrored in args.rs");

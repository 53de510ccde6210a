// Host program (built and run by build.rs, no GPU needed): prints the size of every kernel
// argument struct and the offset of every field, as "Struct.field offset". A Rust test
// (args.rs) compares each line with `size_of` / `offset_of!` of the `#[repr(C)]` mirror.
#include <cstddef>
#include <cstdio>

#include "args.cuh"

#define SIZE(S) std::printf(#S " %zu\n", sizeof(S));
#define F(S, f) std::printf(#S "." #f " %zu\n", offsetof(S, f));

int main() {
    SIZE(PackedMatrix) F(PackedMatrix, q) F(PackedMatrix, s) F(PackedMatrix, rows) F(PackedMatrix, cols)
    F(PackedMatrix, units) F(PackedMatrix, q_stride) F(PackedMatrix, s_stride)
    SIZE(GemvJob) F(GemvJob, w) F(GemvJob, out) F(GemvJob, cta_begin)
    SIZE(GemvArgs) F(GemvArgs, jobs) F(GemvArgs, x) F(GemvArgs, njobs)
    SIZE(DequantArgs) F(DequantArgs, w) F(DequantArgs, out) F(DequantArgs, row0) F(DequantArgs, nrows) F(DequantArgs, ld)
    SIZE(EmbedArgs) F(EmbedArgs, w) F(EmbedArgs, tokens) F(EmbedArgs, out) F(EmbedArgs, n)
    SIZE(ConvertArgs) F(ConvertArgs, x) F(ConvertArgs, out) F(ConvertArgs, n)
    SIZE(RmsNormArgs) F(RmsNormArgs, x) F(RmsNormArgs, weight) F(RmsNormArgs, out) F(RmsNormArgs, rows)
    F(RmsNormArgs, dim) F(RmsNormArgs, eps)
    SIZE(RopeArgs) F(RopeArgs, x) F(RopeArgs, positions) F(RopeArgs, rows) F(RopeArgs, heads) F(RopeArgs, head_dim)
    F(RopeArgs, pairs) F(RopeArgs, neox) F(RopeArgs, theta_scale) F(RopeArgs, freq_scale) F(RopeArgs, mscale)
    F(RopeArgs, has_factors) F(RopeArgs, factors)
    SIZE(GluArgs) F(GluArgs, gate) F(GluArgs, up) F(GluArgs, out) F(GluArgs, n)
    SIZE(ScaleArgs) F(ScaleArgs, x) F(ScaleArgs, n) F(ScaleArgs, factor)
    SIZE(AddArgs) F(AddArgs, x) F(AddArgs, y) F(AddArgs, n)
    SIZE(AddBiasArgs) F(AddBiasArgs, x) F(AddBiasArgs, bias) F(AddBiasArgs, n) F(AddBiasArgs, dim)
    SIZE(GatherArgs) F(GatherArgs, x) F(GatherArgs, rows) F(GatherArgs, out) F(GatherArgs, x_rows) F(GatherArgs, n)
    F(GatherArgs, dim)
    SIZE(RouteArgs) F(RouteArgs, logits) F(RouteArgs, ids) F(RouteArgs, weights) F(RouteArgs, rows) F(RouteArgs, experts)
    F(RouteArgs, used) F(RouteArgs, normalize) F(RouteArgs, scale)
    SIZE(CombineArgs) F(CombineArgs, y) F(CombineArgs, weights) F(CombineArgs, out) F(CombineArgs, n) F(CombineArgs, used)
    F(CombineArgs, dim)
    SIZE(GatedAddArgs) F(GatedAddArgs, x) F(GatedAddArgs, y) F(GatedAddArgs, gate) F(GatedAddArgs, n) F(GatedAddArgs, dim)
    SIZE(ScatterArgs) F(ScatterArgs, src) F(ScatterArgs, rows) F(ScatterArgs, out) F(ScatterArgs, out_rows) F(ScatterArgs, n)
    F(ScatterArgs, dim)
    SIZE(WriteKvArgs) F(WriteKvArgs, k) F(WriteKvArgs, v) F(WriteKvArgs, slots) F(WriteKvArgs, k_cache)
    F(WriteKvArgs, v_cache) F(WriteKvArgs, num_slots) F(WriteKvArgs, n) F(WriteKvArgs, row) F(WriteKvArgs, f16)
    SIZE(AttnArgs) F(AttnArgs, q) F(AttnArgs, out) F(AttnArgs, k_cache) F(AttnArgs, v_cache) F(AttnArgs, positions)
    F(AttnArgs, token_seq) F(AttnArgs, block_tables) F(AttnArgs, part_acc) F(AttnArgs, part_ml)
    F(AttnArgs, num_tokens) F(AttnArgs, num_seqs) F(AttnArgs, heads) F(AttnArgs, kv_heads) F(AttnArgs, group)
    F(AttnArgs, head_dim) F(AttnArgs, block_size) F(AttnArgs, max_blocks) F(AttnArgs, num_blocks)
    F(AttnArgs, split_len) F(AttnArgs, splits) F(AttnArgs, head_chunks) F(AttnArgs, classify) F(AttnArgs, tq)
    F(AttnArgs, scale) F(AttnArgs, softcap) F(AttnArgs, window)
    SIZE(SampleRow) F(SampleRow, temperature) F(SampleRow, top_k) F(SampleRow, top_p) F(SampleRow, min_p) F(SampleRow, uniform)
    SIZE(SampleArgs) F(SampleArgs, logits) F(SampleArgs, params) F(SampleArgs, out) F(SampleArgs, rows)
    F(SampleArgs, vocab)
    return 0;
}

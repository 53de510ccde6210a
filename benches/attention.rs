//! CPU paged attention at decode and prefill shapes (SmolLM2-135M's 9 query / 3 KV heads of 64,
//! and a Qwen3's 16 / 8 heads of 128 for long prompts; f16 KV cache), through the backend's own entry point: the instruction set is the one the
//! backend selects (`RILL_CPU_ISA=portable|avx2|avx512|reference` to compare others).
//!
//! `cargo bench --bench attention` (all threads; `RILL_BENCH_THREADS=1` for one core).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rill_backend::{AttentionArithmetic, AttentionBatch, AttentionParams, Backend, KvDType, KvLayout};
use rill_backend_cpu::{CpuBackend, CpuKvCache};

const BLOCK: usize = 16;

/// Query heads, KV heads, head dimension.
#[derive(Clone, Copy)]
struct Shape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

const SMOLLM2: Shape = Shape { heads: 9, kv_heads: 3, head_dim: 64 };
const QWEN3: Shape = Shape { heads: 16, kv_heads: 8, head_dim: 128 };

/// A one-layer cache holding `seqs` sequences of `ctx` positions of varied K/V, each sequence's
/// blocks interleaved with the others' (as a busy server's are).
struct Fixture {
    backend: CpuBackend,
    cache: CpuKvCache,
    tables: Vec<u32>,
    blocks_per_seq: usize,
    seqs: usize,
    shape: Shape,
}

fn fixture(shape: Shape, seqs: usize, ctx: usize) -> Fixture {
    let threads = std::env::var("RILL_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let backend = CpuBackend::new(threads).unwrap();
    let blocks_per_seq = ctx.div_ceil(BLOCK);
    let num_blocks = seqs * blocks_per_seq;
    let layout = KvLayout { layers: 1, num_blocks, block_size: BLOCK, kv_heads: shape.kv_heads, head_dim: shape.head_dim, dtype: KvDType::F16 };
    let mut cache = backend.alloc_kv_cache(layout).unwrap();
    let (slots, row) = (num_blocks * BLOCK, shape.kv_heads * shape.head_dim);
    let k: Vec<f32> = (0..slots * row).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 2.0).collect();
    let v: Vec<f32> = (0..slots * row).map(|i| ((i * 31 % 977) as f32 / 977.0 - 0.5) * 2.0).collect();
    let all: Vec<u32> = (0..slots as u32).collect();
    backend.write_kv(&mut cache, 0, &k, &v, &all, slots).unwrap();
    // Sequence s owns blocks s, s + seqs, s + 2 seqs, ...
    let tables = (0..seqs).flat_map(|s| (0..blocks_per_seq).map(move |b| (b * seqs + s) as u32)).collect();
    Fixture { backend, cache, tables, blocks_per_seq, seqs, shape }
}

/// Attention for `tokens` = (sequence, position) pairs.
fn attend(f: &Fixture, tokens: &[(u32, u32)], params: &AttentionParams, q: &Vec<f32>, out: &mut Vec<f32>) {
    let (token_seq, positions): (Vec<u32>, Vec<u32>) = tokens.iter().copied().unzip();
    let (num_tokens, slots) = (tokens.len(), vec![0u32; tokens.len()]);
    let (block_tables, max_blocks_per_seq) = (&f.tables, f.blocks_per_seq);
    let batch = AttentionBatch::<CpuBackend> { num_tokens, num_seqs: f.seqs, positions: &positions, token_seq: &token_seq, slots: &slots, block_tables, max_blocks_per_seq };
    f.backend.attention(&f.cache, 0, q, f.shape.heads, params, &batch, out).unwrap();
}

fn attention(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    let causal = AttentionParams::causal(SMOLLM2.head_dim);
    // A sliding window reads only its last keys however long the context.
    let sliding = AttentionParams { window: 512, ..causal };
    let causal128 = AttentionParams::causal(QWEN3.head_dim);
    // (label, sequences, context, prefill tokens at the end of the context; 0 = one decode token
    // per sequence, attention)
    let cases = [
        ("decode", SMOLLM2, 1, 1024, 0, causal),
        ("decode", SMOLLM2, 1, 4096, 0, causal),
        ("decode", SMOLLM2, 8, 1024, 0, causal),
        ("prefill", SMOLLM2, 1, 512, 512, causal),
        ("decode window 512", SMOLLM2, 1, 4096, 0, sliding),
        ("prefill 16x128", QWEN3, 1, 1024, 1024, causal128),
    ];
    // Each case in both arithmetics: the fast default and ggml's bit-exact one.
    let arithmetics = [("fast", AttentionArithmetic::Fast), ("ggml", AttentionArithmetic::Ggml)];
    for ((label, shape, seqs, ctx, prefill, params), (name, arithmetic)) in cases.into_iter().flat_map(|c| arithmetics.map(|a| (c, a))) {
        let params = AttentionParams { arithmetic, ..params };
        let f = fixture(shape, seqs, ctx);
        let tokens: Vec<(u32, u32)> = if prefill > 0 {
            (0..prefill).map(|p| (0, (ctx - prefill + p) as u32)).collect()
        } else {
            (0..seqs).map(|s| (s as u32, ctx as u32 - 1)).collect()
        };
        let q: Vec<f32> = (0..tokens.len() * shape.heads * shape.head_dim).map(|i| ((i * 17 % 101) as f32 / 101.0 - 0.5) * 2.0).collect();
        let mut out = vec![0.0; q.len()];
        // Key positions read: the unit of work.
        let keys: u64 = tokens.iter().map(|t| (t.1 as usize + 1 - params.first_position(t.1 as usize)) as u64).sum();
        g.throughput(Throughput::Elements(keys));
        let id = BenchmarkId::new(format!("{label} {name}"), format!("{seqs} seq x ctx {ctx}{}", if prefill > 0 { format!(", {prefill} tokens") } else { String::new() }));
        g.bench_function(id, |b| b.iter(|| attend(&f, &tokens, &params, &q, &mut out)));
    }
    g.finish();
}

criterion_group!(benches, attention);
criterion_main!(benches);

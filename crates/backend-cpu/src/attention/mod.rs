//! Causal paged attention over the f16/f32 KV cache, in one of two arithmetics
//! (`AttentionParams::arithmetic`, `--attention`):
//!
//! - **fast** (the default, `fast.rs`): flash attention by tiles of `TILE` keys, f32 throughout.
//!   Per tile every query row of a task takes its scores from one transposed K tile, one softmax
//!   step (tile maximum, one rescale, a vector `exp`) and the weighted V rows. Against float64
//!   math it is within ~2e-6 on values in [-1, 1] (the tests measure it), about a thousand times
//!   closer than ggml's arithmetic, whose f16 query and accumulator cost ~1e-3.
//! - **ggml** (`ggml.rs`): llama.cpp's CPU flash attention (`ggml_compute_forward_flash_attn_ext_f16`,
//!   its one-chunk path: decode, and prompts under 64 tokens), reproduced bit for bit so that
//!   rill's logprobs equal llama.cpp's: the query rounded to f16; each score `q·k` by
//!   `ggml_vec_dot_f16`'s order of operations (`Simd::ggml_dot16`) times `1/√d`; then per
//!   position in order an online softmax with `expf`, whose value accumulator is **f16**: on a
//!   new maximum `acc = f16(acc · e^(M−s))`, then `acc = f16(fma(v, e^(s−M), acc))` and
//!   `S = fma(S, ms, vs)`; the output `acc · (1/S)`. `expf` is glibc's, cloned bit for bit
//!   (`simd::expf_glibc`) so it vectorizes. Against an f32 cache nothing is rounded to f16. Its
//!   scalar twin `reference` is the oracle the SIMD versions equal bit for bit.
//!
//! Both run in the same tiled driver (`kernel.rs`), compiled three times through the
//! `simd::Simd` trait: AVX-512F, AVX2+FMA+F16C, and a portable version (fixed 8-wide arrays the
//! compiler vectorizes as it can). One task is a KV head and a block of up to `QUERY_TILE`
//! tokens; it serves the whole GQA group of query heads sharing that KV head, and consecutive
//! tokens of one sequence (a prompt) share every tile, so each K and V row is read and
//! converted from f16 once per group and token block.
//!
//! Batch invariance. Positions are cut into fixed chunks of `CHUNK` (chunk `c` covers
//! `c*CHUNK..(c+1)*CHUNK`); each chunk yields a partial `(max, sum, acc)` that is merged into the
//! running state in chunk order with the same arithmetic however the work is scheduled. With few
//! (token, KV head) pairs (decode of a few sequences over long contexts) the chunks run as
//! separate tasks and their partials are merged afterwards; otherwise each task runs its chunks
//! in order. Inside a chunk each token takes its own keys in a fixed order (ggml: one by one;
//! fast: by tiles aligned to absolute positions, other keys masked). Both give bit-identical
//! results, so a token's output depends only on its query, its KV and its position: not on the
//! batch around it, the thread count, or whether it came in a prefill chunk or a decode step.
//! In ggml's arithmetic, up to `CHUNK` positions rill computes exactly what llama.cpp computes
//! with one thread; past that, llama.cpp's own result depends on its thread count and rill's on
//! the fixed chunks, and chunks after the first keep their value accumulator in f32.
//!
//! The implementation is `SimdIsa::selected()` (`crate::isa`: the widest this CPU has, or the
//! one `RILL_CPU_ISA` asks for; `reference` runs the scalar twin of ggml's arithmetic, and the
//! portable kernel for the fast one).

use std::cell::RefCell;

use rill_backend::{AttentionArithmetic, AttentionBatch, AttentionParams, BackendError, BackendResult};

use crate::kv_cache::{CpuKvCache, KvElem, KvStore, LayerKv};
use crate::simd::{expf_glibc, ggml_dot_row};
use crate::pool::DisjointPtr;
use crate::isa::SimdIsa;
use crate::{check_len, CpuBackend, WorkerPool};

/// Largest head dimension the reference kernel's stack accumulator holds.
pub const MAX_HEAD_DIM: usize = 512;
/// KV rows per tile (scores computed together, one softmax rescale).
const TILE: usize = 16;
/// Positions per chunk: the unit of the split over the context (see the module docs). Changing it
/// changes results in the last bits, never their batch invariance.
const CHUNK: usize = 256;
/// Tokens per task outside the split-chunk path: a run of them from one sequence converts each
/// K and V tile once for all.
const QUERY_TILE: usize = 8;
/// Below this many (token, KV head) pairs per thread, chunks become tasks of their own.
const SPLIT_BELOW_TASKS_PER_THREAD: usize = 4;

/// Paged attention on a chosen implementation (which must be in `SimdIsa::available()`; the
/// backend passes `SimdIsa::selected()`, tests every available one).
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    isa: SimdIsa,
    pool: &WorkerPool,
    cache: &CpuKvCache,
    layer: usize,
    q: &[f32],
    heads: usize,
    params: &AttentionParams,
    batch: &AttentionBatch<'_, CpuBackend>,
    out: &mut [f32],
) -> BackendResult<()> {
    assert!(SimdIsa::available().contains(&isa), "{isa:?} is not supported on this CPU");
    let l = &cache.layout;
    let (hd, kv_heads, n) = (l.head_dim, l.kv_heads, batch.num_tokens);
    if hd == 0 || hd > MAX_HEAD_DIM || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || layer >= l.layers {
        let detail = format!("{heads} heads over {kv_heads} KV heads of dim {hd}, layer {layer}");
        return Err(BackendError::Shape { op: "attention", detail });
    }
    check_len("attention", "q", q.len(), n * heads * hd)?;
    check_len("attention", "out", out.len(), n * heads * hd)?;
    check_len("attention", "positions", batch.positions.len(), n)?;
    check_len("attention", "token_seq", batch.token_seq.len(), n)?;
    check_len("attention", "block_tables", batch.block_tables.len(), batch.num_seqs * batch.max_blocks_per_seq)?;
    // Validate every index up front so the parallel loops below cannot go out of bounds.
    for t in 0..n {
        let (seq, pos) = (batch.token_seq[t] as usize, batch.positions[t] as usize);
        let blocks_needed = pos / l.block_size + 1;
        if seq >= batch.num_seqs || blocks_needed > batch.max_blocks_per_seq {
            let detail = format!("token {t}: sequence {seq} of {}, position {pos}", batch.num_seqs);
            return Err(BackendError::Shape { op: "attention", detail });
        }
        let first_block = params.first_position(pos) / l.block_size;
        let table = &batch.block_tables[seq * batch.max_blocks_per_seq..][first_block..blocks_needed];
        if let Some(b) = table.iter().find(|&&b| b as usize >= l.num_blocks) {
            return Err(BackendError::Shape { op: "attention", detail: format!("block {b} of {}", l.num_blocks) });
        }
    }
    let out = &mut out[..n * heads * hd];
    match &cache.store {
        KvStore::F16(layers) => dispatch(isa, pool, &layers[layer], cache, q, heads, params, batch, out),
        KvStore::F32(layers) => dispatch(isa, pool, &layers[layer], cache, q, heads, params, batch, out),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn dispatch<T: KvElem>(isa: SimdIsa, pool: &WorkerPool, kv: &LayerKv<T>, cache: &CpuKvCache, q: &[f32], heads: usize, params: &AttentionParams, batch: &AttentionBatch<'_, CpuBackend>, out: &mut [f32]) {
    let l = &cache.layout;
    if isa == SimdIsa::Reference && params.arithmetic == AttentionArithmetic::Ggml {
        return reference(pool, kv, cache, q, heads, params, batch, out);
    }
    let group = heads / l.kv_heads;
    let lanes = match isa {
        SimdIsa::Avx512 => 16,
        _ => 8,
    };
    let job = Job {
        k: &kv.k,
        v: &kv.v,
        q,
        positions: batch.positions,
        token_seq: batch.token_seq,
        block_tables: batch.block_tables,
        max_blocks: batch.max_blocks_per_seq,
        block_size: l.block_size,
        kv_heads: l.kv_heads,
        heads,
        group,
        hd: l.head_dim,
        hdp: l.head_dim.next_multiple_of(lanes),
        params: *params,
    };
    let n = batch.num_tokens;
    let pairs = n * l.kv_heads;
    let max_chunks = batch.positions[..n].iter().map(|&p| p as usize / CHUNK + 1).max().unwrap_or(0);
    let span = group * job.hd; // one task's outputs: the group's heads, contiguous
    if max_chunks > 1 && pairs < SPLIT_BELOW_TASKS_PER_THREAD * pool.threads() {
        // Chunks as tasks: partials into the caller's scratch, then merged per pair.
        let part_len = job.partial_len();
        PARTIALS.with(|p| {
            let mut parts = p.borrow_mut();
            let need = pairs * max_chunks * part_len;
            if parts.len() < need {
                parts.resize(need, 0.0);
            }
            let parts_ptr = DisjointPtr(parts.as_mut_ptr());
            pool.for_each(pairs * max_chunks, &|task| {
                let (pair, c) = (task / max_chunks, task % max_chunks);
                let t = pair / job.kv_heads;
                if !job.chunks(t).contains(&c) {
                    return;
                }
                // SAFETY: each task owns the distinct partial slot `task`, inside `need`.
                let part = unsafe { std::slice::from_raw_parts_mut(parts_ptr.get().add(task * part_len), part_len) };
                with_scratch(|s| run_op(isa, &job, Op::Chunk { pair, chunk: c, part }, s));
            });
            let parts = &*parts;
            pool.for_each_chunk_mut(out, span, &|pair, o| {
                let chunks = job.chunks(pair / job.kv_heads);
                let base = pair * max_chunks * part_len;
                let parts = &parts[base + chunks.start * part_len..base + chunks.end * part_len];
                with_scratch(|s| run_op(isa, &job, Op::Merge { parts, out: o }, s));
            });
        });
    } else {
        // A task is a KV head and a block of up to QUERY_TILE tokens: consecutive tokens of a
        // sequence (a prompt) share the conversion of every K and V tile. Blocks shrink when
        // there are too few tasks for the threads, and are single tokens when every sequence
        // has one (decode), where nothing is shared.
        let per_block = if n > batch.num_seqs { (pairs / (SPLIT_BELOW_TASKS_PER_THREAD * pool.threads())).clamp(1, QUERY_TILE) } else { 1 };
        let out = DisjointPtr(out.as_mut_ptr());
        pool.for_each(n.div_ceil(per_block) * l.kv_heads, &|task| {
            let (block, kvh) = (task / l.kv_heads, task % l.kv_heads);
            let tokens = block * per_block..((block + 1) * per_block).min(n);
            with_scratch(|s| run_op(isa, &job, Op::Tokens { tokens, kvh, out: out.get() }, s))
        });
    }
}

/// Everything a task reads.
struct Job<'a, T> {
    /// `[slots, kv_heads, head_dim]`.
    k: &'a [T],
    v: &'a [T],
    /// `[tokens, heads, head_dim]`.
    q: &'a [f32],
    positions: &'a [u32],
    token_seq: &'a [u32],
    block_tables: &'a [u32],
    max_blocks: usize,
    block_size: usize,
    kv_heads: usize,
    heads: usize,
    /// Query heads per KV head.
    group: usize,
    hd: usize,
    /// `hd` rounded up to the vector width; buffers are zero-padded to it.
    hdp: usize,
    params: AttentionParams,
}

impl<T> Job<'_, T> {
    /// The chunks token `t` reads: those holding its window of positions.
    fn chunks(&self, t: usize) -> std::ops::Range<usize> {
        let pos = self.positions[t] as usize;
        self.params.first_position(pos) / CHUNK..pos / CHUNK + 1
    }

    /// A partial result: `[group]` max, `[group]` sum, `[group, hdp]` acc.
    fn partial_len(&self) -> usize {
        self.group * (self.hdp + 2)
    }
}

thread_local! {
    /// Per-thread working buffers (grown once, reused by every call on the thread).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The calling thread's partial results when chunks run as separate tasks.
    static PARTIALS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}


/// Runs `f` on this thread's scratch buffer.
fn with_scratch(f: impl FnOnce(&mut Vec<f32>)) {
    SCRATCH.with(|s| f(&mut s.borrow_mut()));
}

/// The working buffers of one task, carved out of the thread's scratch.
struct Bufs<'s> {
    /// `[QUERY_TILE, group, hdp]` query rows.
    q: &'s mut [f32],
    /// `[TILE, hdp]` converted K (then V) rows.
    rows: &'s mut [f32],
    /// `[hdp, TILE]` the K rows transposed (the fast arithmetic).
    kt: &'s mut [f32],
    /// `[QUERY_TILE, group, TILE]` scores, then weights.
    s: &'s mut [f32],
    /// `[QUERY_TILE, group]` each query row's accumulator factor for the tile (fast).
    alpha: &'s mut [f32],
    /// The running state of each token's pair (sequential chunks): `QUERY_TILE` partials.
    run: &'s mut [f32],
    /// One chunk's partial per token.
    part: &'s mut [f32],
}

fn bufs<'s, T>(job: &Job<'_, T>, scratch: &'s mut Vec<f32>) -> Bufs<'s> {
    let (g, hdp, pl, qt) = (job.group, job.hdp, job.partial_len(), QUERY_TILE);
    let need = qt * g * hdp + 2 * TILE * hdp + qt * g * TILE + qt * g + 2 * qt * pl;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (q, rest) = scratch[..need].split_at_mut(qt * g * hdp);
    let (rows, rest) = rest.split_at_mut(TILE * hdp);
    let (kt, rest) = rest.split_at_mut(TILE * hdp);
    let (s, rest) = rest.split_at_mut(qt * g * TILE);
    let (alpha, rest) = rest.split_at_mut(qt * g);
    let (run, part) = rest.split_at_mut(qt * pl);
    Bufs { q, rows, kt, s, alpha, run, part }
}

/// What one task does.
enum Op<'a> {
    /// Up to [`QUERY_TILE`] tokens with KV head `kvh`: all chunks of each (token, KV head) pair
    /// in order, then its outputs into the whole call's `out` (`[tokens, heads, hd]`), where no
    /// other task writes them.
    Tokens { tokens: std::ops::Range<usize>, kvh: usize, out: *mut f32 },
    /// One chunk of a pair, into its partial slot.
    Chunk { pair: usize, chunk: usize, part: &'a mut [f32] },
    /// Merges a pair's chunk partials in order, then writes its outputs.
    Merge { parts: &'a [f32], out: &'a mut [f32] },
}

/// Runs `op` on `isa`, specialized for the common row widths (vectors per row).
fn run_op<T: KvElem>(isa: SimdIsa, job: &Job<'_, T>, op: Op<'_>, scratch: &mut Vec<f32>) {
    let b = bufs(job, scratch);
    macro_rules! by_width {
        ($lanes:expr, $($f:tt)+) => {
            // SAFETY: `paged_attention` asserted the ISA is supported by this CPU and
            // validated the job's indices; NC (when not 0) equals hdp / LANES.
            unsafe {
                match job.hdp / $lanes {
                    2 => $($f)+::<T, 2>(job, op, b),
                    4 => $($f)+::<T, 4>(job, op, b),
                    8 => $($f)+::<T, 8>(job, op, b),
                    16 => $($f)+::<T, 16>(job, op, b),
                    _ => $($f)+::<T, 0>(job, op, b),
                }
            }
        };
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        SimdIsa::Avx512 => by_width!(16, x86::run_avx512),
        #[cfg(target_arch = "x86_64")]
        SimdIsa::Avx2 => by_width!(8, x86::run_avx2),
        _ => by_width!(8, run_portable),
    }
}

/// # Safety
/// `kernel::run`'s contract.
unsafe fn run_portable<T: KvElem, const NC: usize>(job: &Job<'_, T>, op: Op<'_>, b: Bufs<'_>) {
    // SAFETY: forwarded contract; the portable implementation needs no CPU feature.
    unsafe { kernel::run::<crate::simd::Portable, T, NC>(job, op, b) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The kernel instantiated with each x86 feature set enabled, so the `#[inline(always)]`
    //! generic code and the intrinsics inside it compile to that ISA.
    use crate::simd::{Avx2, Avx512};
    use super::{kernel, Bufs, Job, Op};
    use crate::kv_cache::KvElem;

    /// # Safety
    /// The CPU supports AVX-512F; `kernel::run`'s contract.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn run_avx512<T: KvElem, const NC: usize>(job: &Job<'_, T>, op: Op<'_>, b: Bufs<'_>) {
        // SAFETY: forwarded contract.
        unsafe { kernel::run::<Avx512, T, NC>(job, op, b) }
    }

    /// # Safety
    /// The CPU supports AVX2, FMA and F16C; `kernel::run`'s contract.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn run_avx2<T: KvElem, const NC: usize>(job: &Job<'_, T>, op: Op<'_>, b: Bufs<'_>) {
        // SAFETY: forwarded contract.
        unsafe { kernel::run::<Avx2, T, NC>(job, op, b) }
    }
}

mod fast;
mod ggml;
mod kernel;

/// ggml's `ggml_vec_dot_f16` for any length: [`ggml_dot_row`] over the leading multiple of 64
/// elements, then the rest added one by one in `f64` (ggml's `ggml_float`), rounded to `f32` once.
pub(crate) fn ggml_dot(q: &[f32], k: &[f32]) -> f32 {
    let np = q.len() / 64 * 64;
    let mut sum = if np > 0 { ggml_dot_row(&q[..np], &k[..np], np / 64) as f64 } else { 0.0 };
    for (a, b) in q[np..].iter().zip(&k[np..]) {
        sum += (a * b) as f64;
    }
    sum as f32
}

/// The oracle: one (token, head) pair per task, plain scalar code with the kernel's arithmetic
/// (ggml's, see the module docs): per chunk a sequential online softmax, chunks merged in order.
#[allow(clippy::too_many_arguments)]
fn reference<T: KvElem>(pool: &WorkerPool, kv: &LayerKv<T>, cache: &CpuKvCache, q: &[f32], heads: usize, params: &AttentionParams, batch: &AttentionBatch<'_, CpuBackend>, out: &mut [f32]) {
    let l = &cache.layout;
    let hd = l.head_dim;
    let group = heads / l.kv_heads;
    let kv_row = l.kv_heads * hd;
    let round = |x: f32| if T::IS_F16 { half::f16::from_f32(x).to_f32() } else { x };
    // The value accumulator: f16 in the first chunk against an f16 cache (module docs).
    let round_acc = |x: f32, chunk: usize| if chunk == 0 { round(x) } else { x };
    let exp_diff = |a: f32, b: f32| if a == f32::NEG_INFINITY { 0.0 } else { expf_glibc(a - b) };
    pool.for_each_chunk_mut(out, hd, &|task, o| {
        let (t, h) = (task / heads, task % heads);
        let seq = batch.token_seq[t] as usize;
        let pos = batch.positions[t] as usize;
        let table = &batch.block_tables[seq * batch.max_blocks_per_seq..];
        // Against an f16 cache the query is rounded to f16, as ggml converts it to the K type.
        let mut q16 = [0f32; MAX_HEAD_DIM];
        let qh = &mut q16[..hd];
        qh.copy_from_slice(&q[(t * heads + h) * hd..][..hd]);
        qh.iter_mut().for_each(|v| *v = round(*v));
        let qh = &*qh;
        let kv_off = (h / group) * hd;
        let (mut k, mut v) = ([0f32; MAX_HEAD_DIM], [0f32; MAX_HEAD_DIM]);
        // The running state over chunks, and one chunk's partial.
        let (mut run_m, mut run_l, mut run_acc) = (f32::NEG_INFINITY, 0f32, [0f32; MAX_HEAD_DIM]);
        let first = params.first_position(pos);
        for chunk in first / CHUNK..pos / CHUNK + 1 {
            let (mut m, mut sum, mut acc) = (f32::NEG_INFINITY, 0f32, [0f32; MAX_HEAD_DIM]);
            for p in (chunk * CHUNK).max(first)..((chunk + 1) * CHUNK).min(pos + 1) {
                let slot = table[p / l.block_size] as usize * l.block_size + p % l.block_size;
                let base = slot * kv_row + kv_off;
                k[..hd].iter_mut().zip(&kv.k[base..base + hd]).for_each(|(d, s)| *d = s.to_f32());
                v[..hd].iter_mut().zip(&kv.v[base..base + hd]).for_each(|(d, s)| *d = s.to_f32());
                let s = params.apply(ggml_dot(qh, &k[..hd]));
                let (ms, vs) = if s > m {
                    let ms = expf_glibc(m - s);
                    m = s;
                    acc[..hd].iter_mut().for_each(|a| *a = round_acc(*a * ms, chunk));
                    (ms, 1.0)
                } else {
                    (1.0, expf_glibc(s - m))
                };
                acc[..hd].iter_mut().zip(&v[..hd]).for_each(|(a, v)| *a = round_acc(v.mul_add(vs, *a), chunk));
                sum = sum.mul_add(ms, vs);
            }
            let new_max = run_m.max(m);
            let (cr, cp) = (exp_diff(run_m, new_max), exp_diff(m, new_max));
            run_l = run_l * cr + sum * cp;
            run_acc[..hd].iter_mut().zip(&acc[..hd]).for_each(|(r, a)| *r = a.mul_add(cp, *r * cr));
            run_m = new_max;
        }
        let inv = if run_l == 0.0 { 0.0 } else { 1.0 / run_l };
        o.iter_mut().zip(&run_acc[..hd]).for_each(|(o, a)| *o = a * inv);
    });
}

#[cfg(test)]
mod tests;

//! Causal paged attention over the f16/f32 KV cache.
//!
//! The arithmetic is llama.cpp's CPU flash attention (`ggml_compute_forward_flash_attn_ext_f16`,
//! its one-chunk path: decode, and prompts under 64 tokens), reproduced bit for bit so that
//! rill's logprobs track llama.cpp's: the query rounded to f16; each score `q·k` by
//! `ggml_vec_dot_f16`'s order of operations (`Simd::ggml_dot16`) times `1/√d`; then per
//! position in order an online softmax with `expf`, whose value accumulator is **f16**: on a new
//! maximum `acc = f16(acc · e^(M−s))`, then `acc = f16(fma(v, e^(s−M), acc))` and
//! `S = fma(S, ms, vs)`; the output `acc · (1/S)`. `expf` is glibc's, cloned bit for bit
//! (`simd::expf_glibc`) so it vectorizes. Against an f32 cache nothing is rounded to f16.
//!
//! Two implementations share the input validation:
//!
//! - `reference`: the oracle. One (token, head) pair at a time walks its sequence's block table
//!   over positions `0..=pos`, in plain scalar code.
//! - the tiled kernel, compiled three times through the `simd::Simd` trait: AVX-512F,
//!   AVX2+FMA+F16C, and a portable version (fixed 8-wide arrays the compiler vectorizes as it can).
//!   One task is one (token, KV head) pair and serves the whole GQA group of query heads sharing
//!   that KV head, so each K and V row is read and converted from f16 once per group. Rows go in
//!   tiles of `TILE`: K rows are converted into a small f32 buffer, the scores of the whole tile
//!   are computed, then the V rows are accumulated one by one. It computes the reference's bits.
//!
//! Batch invariance. Positions are cut into fixed chunks of `CHUNK` (chunk `c` covers
//! `c*CHUNK..(c+1)*CHUNK`); each chunk yields a partial `(max, sum, acc)` that is merged into the
//! running state in chunk order with the same arithmetic however the work is scheduled. With few
//! (token, KV head) pairs (decode of a few sequences over long contexts) the chunks run as
//! separate tasks and their partials are merged afterwards; otherwise each task runs its chunks
//! in order. Both give bit-identical results, so a token's output depends only on its query, its
//! KV and its position: not on the batch around it, the thread count, or whether it came in a
//! prefill chunk or a decode step. So up to `CHUNK` positions rill computes exactly what
//! llama.cpp computes with one thread; past that, llama.cpp's own result depends on its thread
//! count and rill's on the fixed chunks, and chunks after the first keep their value accumulator
//! in f32 (more accurate, and without the f16 round trip per row that makes the first chunk
//! about 1.4× as costly).
//!
//! ISA selection: the best the CPU supports (`is_x86_feature_detected!`), or `RILL_CPU_ISA`
//! (`reference`, `portable`, `avx2`, `avx512`) to ask for a lower one.

use std::cell::RefCell;
use std::sync::OnceLock;

use rill_backend::{AttentionBatch, BackendError, BackendResult};

use crate::kv_cache::{CpuKvCache, KvElem, KvStore, LayerKv};
use crate::simd::{expf_glibc, ggml_dot_row};
use crate::pool::DisjointPtr;
use crate::{check_len, CpuBackend, IsaRequest, WorkerPool};

/// Largest head dimension the reference kernel's stack accumulator holds.
pub const MAX_HEAD_DIM: usize = 512;
/// KV rows per tile (scores computed together, one softmax rescale).
const TILE: usize = 16;
/// Positions per chunk: the unit of the split over the context (see the module docs). Changing it
/// changes results in the last bits, never their batch invariance.
const CHUNK: usize = 256;
/// Below this many (token, KV head) pairs per thread, chunks become tasks of their own.
const SPLIT_BELOW_TASKS_PER_THREAD: usize = 4;

/// Which attention implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Reference,
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// Every implementation this CPU can run, reference first.
    pub fn supported() -> &'static [Isa] {
        static SUPPORTED: OnceLock<Vec<Isa>> = OnceLock::new();
        SUPPORTED.get_or_init(|| {
            #[allow(unused_mut)] // nothing is added off x86_64
            let mut v = vec![Isa::Reference, Isa::Portable];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
                {
                    v.push(Isa::Avx2);
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    v.push(Isa::Avx512);
                }
            }
            v
        })
    }

    /// The best supported implementation, or the one `RILL_CPU_ISA` names if it is supported.
    pub fn detected() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let supported = Isa::supported();
            let best = *supported.last().expect("reference is always supported");
            let wanted = match crate::isa_request() {
                IsaRequest::Reference => Isa::Reference,
                IsaRequest::Portable => Isa::Portable,
                IsaRequest::Avx2 => Isa::Avx2,
                IsaRequest::Avx512 => Isa::Avx512,
                IsaRequest::Best => best,
            };
            if supported.contains(&wanted) {
                wanted
            } else {
                best
            }
        })
    }
}

pub fn paged_attention(
    pool: &WorkerPool,
    cache: &CpuKvCache,
    layer: usize,
    q: &[f32],
    heads: usize,
    batch: &AttentionBatch<'_, CpuBackend>,
    out: &mut [f32],
) -> BackendResult<()> {
    paged_attention_with(Isa::detected(), pool, cache, layer, q, heads, batch, out)
}

/// `paged_attention` on a chosen implementation (which must be in `Isa::supported()`).
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_with(
    isa: Isa,
    pool: &WorkerPool,
    cache: &CpuKvCache,
    layer: usize,
    q: &[f32],
    heads: usize,
    batch: &AttentionBatch<'_, CpuBackend>,
    out: &mut [f32],
) -> BackendResult<()> {
    assert!(Isa::supported().contains(&isa), "{isa:?} is not supported on this CPU");
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
        let table = &batch.block_tables[seq * batch.max_blocks_per_seq..][..blocks_needed];
        if let Some(b) = table.iter().find(|&&b| b as usize >= l.num_blocks) {
            return Err(BackendError::Shape { op: "attention", detail: format!("block {b} of {}", l.num_blocks) });
        }
    }
    let out = &mut out[..n * heads * hd];
    match &cache.store {
        KvStore::F16(layers) => dispatch(isa, pool, &layers[layer], cache, q, heads, batch, out),
        KvStore::F32(layers) => dispatch(isa, pool, &layers[layer], cache, q, heads, batch, out),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn dispatch<T: KvElem>(isa: Isa, pool: &WorkerPool, kv: &LayerKv<T>, cache: &CpuKvCache, q: &[f32], heads: usize, batch: &AttentionBatch<'_, CpuBackend>, out: &mut [f32]) {
    let l = &cache.layout;
    if isa == Isa::Reference {
        return reference(pool, kv, cache, q, heads, batch, out);
    }
    let group = heads / l.kv_heads;
    let lanes = match isa {
        Isa::Avx512 => 16,
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
        scale: 1.0 / (l.head_dim as f32).sqrt(),
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
                if c * CHUNK > job.positions[t] as usize {
                    return;
                }
                // SAFETY: each task owns the distinct partial slot `task`, inside `need`.
                let part = unsafe { std::slice::from_raw_parts_mut(parts_ptr.get().add(task * part_len), part_len) };
                with_scratch(|s| run_op(isa, &job, Op::Chunk { pair, chunk: c, part }, s));
            });
            let parts = &*parts;
            pool.for_each_chunk_mut(out, span, &|pair, o| {
                let t = pair / job.kv_heads;
                let chunks = job.positions[t] as usize / CHUNK + 1;
                let base = pair * max_chunks * part_len;
                with_scratch(|s| run_op(isa, &job, Op::Merge { parts: &parts[base..base + chunks * part_len], out: o }, s));
            });
        });
    } else {
        pool.for_each_chunk_mut(out, span, &|pair, out| with_scratch(|s| run_op(isa, &job, Op::Pair { pair, out }, s)));
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
    scale: f32,
}

impl<T> Job<'_, T> {
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
    /// `[group, hdp]` query rows, pre-scaled by `1/sqrt(hd)`.
    q: &'s mut [f32],
    /// `[TILE, hdp]` converted K (then V) rows.
    rows: &'s mut [f32],
    /// `[group, TILE]` scores, then weights.
    s: &'s mut [f32],
    /// The running state of the pair (sequential chunks): a partial.
    run: &'s mut [f32],
    /// One chunk's partial.
    part: &'s mut [f32],
}

fn bufs<'s, T>(job: &Job<'_, T>, scratch: &'s mut Vec<f32>) -> Bufs<'s> {
    let (g, hdp, pl) = (job.group, job.hdp, job.partial_len());
    let need = g * hdp + TILE * hdp + g * TILE + 2 * pl;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (q, rest) = scratch[..need].split_at_mut(g * hdp);
    let (rows, rest) = rest.split_at_mut(TILE * hdp);
    let (s, rest) = rest.split_at_mut(g * TILE);
    let (run, part) = rest.split_at_mut(pl);
    Bufs { q, rows, s, run, part }
}

/// What one task does.
enum Op<'a> {
    /// All chunks of a (token, KV head) pair in order, then its outputs.
    Pair { pair: usize, out: &'a mut [f32] },
    /// One chunk of a pair, into its partial slot.
    Chunk { pair: usize, chunk: usize, part: &'a mut [f32] },
    /// Merges a pair's chunk partials in order, then writes its outputs.
    Merge { parts: &'a [f32], out: &'a mut [f32] },
}

/// Runs `op` on `isa`, specialized for the common row widths (vectors per row).
fn run_op<T: KvElem>(isa: Isa, job: &Job<'_, T>, op: Op<'_>, scratch: &mut Vec<f32>) {
    let b = bufs(job, scratch);
    macro_rules! by_width {
        ($lanes:expr, $($f:tt)+) => {
            // SAFETY: `paged_attention_with` asserted the ISA is supported by this CPU and
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
        Isa::Avx512 => by_width!(16, x86::run_avx512),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => by_width!(8, x86::run_avx2),
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

mod kernel {
    //! The tiled kernel, generic over the vector ISA `S` and the row width `NC` (vectors per
    //! padded row; 0: read it from the job). Everything is `#[inline(always)]` so it compiles
    //! inside the `#[target_feature]` entry points, with the row loops unrolled when `NC` is
    //! known.
    //!
    //! Safety contract of every function: `S` is supported by the CPU, the `Job`'s indices were
    //! validated by `paged_attention_with` (block ids, positions, buffer lengths), and `NC` is 0
    //! or `hdp / LANES`.
    use crate::simd::{expf_glibc, Simd};
    use super::{ggml_dot, Bufs, Job, Op, CHUNK, TILE};
    use crate::kv_cache::KvElem;

    /// `exp(a - b)`, with `exp(-inf - b) = 0` even for `b = -inf` (an empty state).
    #[inline(always)]
    fn exp_diff(a: f32, b: f32) -> f32 {
        if a == f32::NEG_INFINITY {
            0.0
        } else {
            expf_glibc(a - b)
        }
    }

    /// Vectors per padded row.
    #[inline(always)]
    fn width<S: Simd, const NC: usize>(hdp: usize) -> usize {
        if NC > 0 {
            NC
        } else {
            hdp / S::LANES
        }
    }

    /// Converts `src[..hd]` into `dst[..hd]` (f32); `dst[hd..]` stays as it is (zero padding).
    #[inline(always)]
    unsafe fn load_row<S: Simd, T: KvElem, const NC: usize>(src: &[T], dst: &mut [f32]) {
        let hd = src.len();
        if T::IS_F16 && S::NATIVE_F16 && NC > 0 && hd == NC * S::LANES {
            // SAFETY: `T::IS_F16` says the element type is exactly `f16`; `NC * LANES` elements
            // are read from `src` and written to `dst` (which holds at least `hd`).
            unsafe {
                let (s, d) = (src.as_ptr() as *const half::f16, dst.as_mut_ptr());
                for c in 0..NC {
                    S::store(d.add(c * S::LANES), S::load_f16(s.add(c * S::LANES)));
                }
            }
        } else if T::IS_F16 {
            // SAFETY: `T::IS_F16` says the element type is exactly `f16`.
            let src = unsafe { std::slice::from_raw_parts(src.as_ptr() as *const half::f16, hd) };
            // SAFETY: the function's contract (the CPU supports `S`).
            unsafe { S::convert_f16(src, &mut dst[..hd]) };
        } else {
            dst[..hd].iter_mut().zip(src).for_each(|(d, s)| *d = s.to_f32());
        }
    }

    /// The (token, KV head) of `pair` and its token's position.
    #[inline(always)]
    fn token_of<T>(job: &Job<'_, T>, pair: usize) -> (usize, usize, usize) {
        let (t, kvh) = (pair / job.kv_heads, pair % job.kv_heads);
        (t, kvh, job.positions[t] as usize)
    }

    /// Loads the group's query rows into `q` (zero-padded). Against an f16 cache the query is
    /// rounded to f16 first, as ggml converts it to the K type before its dot.
    #[inline(always)]
    unsafe fn load_q<S: Simd, T: KvElem>(job: &Job<'_, T>, t: usize, kvh: usize, q: &mut [f32]) {
        let (hd, hdp) = (job.hd, job.hdp);
        for h in 0..job.group {
            let src = &job.q[(t * job.heads + kvh * job.group + h) * hd..][..hd];
            let dst = &mut q[h * hdp..(h + 1) * hdp];
            dst[..hd].copy_from_slice(src);
            dst[hd..].fill(0.0);
            if T::IS_F16 {
                for c in dst.chunks_exact_mut(S::LANES) {
                    // SAFETY: `c` holds LANES elements (hdp is a multiple of LANES).
                    unsafe { S::store(c.as_mut_ptr(), S::round_f16(S::load(c.as_ptr()))) };
                }
            }
        }
    }

    /// One chunk's partial `(max, sum, acc)` of the pair whose query rows are in `b.q`, with
    /// ggml's arithmetic (see the module docs): scores by [`Simd::ggml_dot16`] then `· scale`;
    /// per row in order `ms = e^(M−s)` on a new maximum (the accumulator scaled and rounded),
    /// else `vs = e^(s−M)`; `acc = round(fma(v, vs, acc))`; `S = fma(S, ms, vs)`.
    #[inline(always)]
    unsafe fn chunk_partial<S: Simd, T: KvElem, const NC: usize>(job: &Job<'_, T>, t: usize, kvh: usize, chunk: usize, b: &mut Bufs<'_>, part: &mut [f32]) {
        let (g, hd, hdp) = (job.group, job.hd, job.hdp);
        let pos = job.positions[t] as usize;
        let seq = job.token_seq[t] as usize;
        let table = &job.block_tables[seq * job.max_blocks..][..job.max_blocks];
        let kv_row = job.kv_heads * hd;
        let (m, rest) = part.split_at_mut(g);
        let (l, acc) = rest.split_at_mut(g);
        m.fill(f32::NEG_INFINITY);
        l.fill(0.0);
        acc.fill(0.0);
        for row in b.rows.chunks_exact_mut(hdp) {
            row[hd..].fill(0.0);
        }
        let (start, end) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(pos + 1));
        let f16_acc = T::IS_F16 && chunk == 0;
        let mut base = [0usize; TILE];
        let (mut blk, mut off) = (start / job.block_size, start % job.block_size);
        let mut p0 = start;
        while p0 < end {
            let nr = TILE.min(end - p0);
            for base in &mut base[..nr] {
                *base = (table[blk] as usize * job.block_size + off) * kv_row + kvh * hd;
                off += 1;
                if off == job.block_size {
                    (blk, off) = (blk + 1, 0);
                }
            }
            // Scores of the tile's rows for every head of the group. Rows past `nr` hold stale
            // (finite) data; their scores are computed and ignored.
            for (&base, row) in base[..nr].iter().zip(b.rows.chunks_exact_mut(hdp)) {
                // SAFETY: the function's contract.
                unsafe { load_row::<S, T, NC>(&job.k[base..base + hd], row) };
            }
            for h in 0..g {
                let qh = &b.q[h * hdp..h * hdp + hd];
                let s = &mut b.s[h * TILE..(h + 1) * TILE];
                if hd.is_multiple_of(64) {
                    // SAFETY: `q` holds g * hdp and `rows` TILE * hdp elements, hd <= hdp;
                    // `s` holds TILE = 16 elements.
                    unsafe { S::ggml_dot16(qh.as_ptr(), b.rows.as_ptr(), hdp, hd / 64, s.as_mut_ptr()) };
                } else {
                    for (r, s) in s[..nr].iter_mut().enumerate() {
                        *s = ggml_dot(qh, &b.rows[r * hdp..r * hdp + hd]);
                    }
                }
                s[..nr].iter_mut().for_each(|s| *s *= job.scale);
            }
            for (&base, row) in base[..nr].iter().zip(b.rows.chunks_exact_mut(hdp)) {
                // SAFETY: the function's contract.
                unsafe { load_row::<S, T, NC>(&job.v[base..base + hd], row) };
            }
            // The online softmax, one row at a time in position order: first each row's
            // factors (`ms` rescales the accumulator on a new maximum, `vs` weighs the row),
            // then the value rows.
            let (mut ms, mut vs) = ([[1f32; TILE]; MAX_GROUP_IN_REGISTERS], [[1f32; TILE]; MAX_GROUP_IN_REGISTERS]);
            for h in 0..g {
                let (ms, vs) = (&mut ms[h % MAX_GROUP_IN_REGISTERS], &mut vs[h % MAX_GROUP_IN_REGISTERS]);
                // SAFETY: the module's contract.
                unsafe { softmax_factors::<S>(&b.s[h * TILE..(h + 1) * TILE], nr, &mut m[h], &mut l[h], ms, vs) };
                if g > MAX_GROUP_IN_REGISTERS || NC == 0 || NC > 4 {
                    let a = acc.as_mut_ptr().add(h * hdp);
                    // SAFETY: `acc` holds g * hdp, `rows` TILE * hdp elements; `nc` vectors
                    // of LANES make up hdp.
                    unsafe {
                        if f16_acc {
                            accumulate_v::<S, NC, true>(a, b.rows.as_ptr(), hdp, nr, ms, vs)
                        } else {
                            accumulate_v::<S, NC, false>(a, b.rows.as_ptr(), hdp, nr, ms, vs)
                        }
                    };
                }
            }
            if g <= MAX_GROUP_IN_REGISTERS && NC > 0 && NC <= 4 {
                // SAFETY: as above.
                unsafe {
                    if f16_acc {
                        accumulate_v_group::<S, NC, true>(acc.as_mut_ptr(), b.rows.as_ptr(), hdp, g, nr, &ms, &vs)
                    } else {
                        accumulate_v_group::<S, NC, false>(acc.as_mut_ptr(), b.rows.as_ptr(), hdp, g, nr, &ms, &vs)
                    }
                };
            }
            p0 += nr;
        }
    }

    /// `acc = round(acc · ms[r])` where `ms[r] != 1`, then `acc = round(fma(v[r], vs[r], acc))`,
    /// for the `nr` value rows at `rows` (`hdp` apart) in order; `round` to f16 when `F16`
    /// (ggml's f16 accumulator: the first chunk against an f16 cache). Up to 8 vectors stay in
    /// registers over the rows.
    #[inline(always)]
    unsafe fn accumulate_v<S: Simd, const NC: usize, const F16: bool>(ap: *mut f32, rows: *const f32, hdp: usize, nr: usize, ms: &[f32; TILE], vs: &[f32; TILE]) {
        let lanes = S::LANES;
        if NC > 0 && NC <= 8 {
            let mut av = [S::splat(0.0); 8];
            for (c, a) in av.iter_mut().enumerate().take(NC) {
                *a = S::load(ap.add(c * lanes));
            }
            for r in 0..nr {
                if ms[r] != 1.0 {
                    let vms = S::splat(ms[r]);
                    for a in av.iter_mut().take(NC) {
                        *a = round::<S, F16>(S::mul(*a, vms));
                    }
                }
                let (vvs, v) = (S::splat(vs[r]), rows.add(r * hdp));
                for (c, a) in av.iter_mut().enumerate().take(NC) {
                    *a = round::<S, F16>(S::fma(S::load(v.add(c * lanes)), vvs, *a));
                }
            }
            for (c, a) in av.iter().enumerate().take(NC) {
                S::store(ap.add(c * lanes), *a);
            }
        } else {
            let nc = width::<S, NC>(hdp);
            for r in 0..nr {
                for c in 0..nc {
                    let mut a = S::load(ap.add(c * lanes));
                    if ms[r] != 1.0 {
                        a = round::<S, F16>(S::mul(a, S::splat(ms[r])));
                    }
                    a = round::<S, F16>(S::fma(S::load(rows.add(r * hdp + c * lanes)), S::splat(vs[r]), a));
                    S::store(ap.add(c * lanes), a);
                }
            }
        }
    }

    /// One head's online-softmax factors for the tile's `nr` scores `s`, in position order as
    /// ggml: on a new maximum `ms = e^(M−s)` (and `vs = 1`), else `vs = e^(s−M)` (and `ms = 1`);
    /// `S = fma(S, ms, vs)`. The maxima are a scan; the `expf`s are one vector call.
    #[inline(always)]
    unsafe fn softmax_factors<S: Simd>(s: &[f32], nr: usize, m: &mut f32, l: &mut f32, ms: &mut [f32; TILE], vs: &mut [f32; TILE]) {
        let mut arg = [0f32; TILE];
        let mut new_max = [false; TILE];
        let mut mh = *m;
        for r in 0..nr {
            if s[r] > mh {
                (arg[r], new_max[r]) = (mh - s[r], true);
                mh = s[r];
            } else {
                arg[r] = s[r] - mh;
            }
        }
        *m = mh;
        let mut e = [0f32; TILE];
        let mut i = 0;
        while i < TILE {
            // SAFETY: TILE is a multiple of LANES.
            unsafe { S::store(e.as_mut_ptr().add(i), S::expf_glibc(S::load(arg.as_ptr().add(i)))) };
            i += S::LANES;
        }
        let mut lh = *l;
        for r in 0..nr {
            (ms[r], vs[r]) = if new_max[r] { (e[r], 1.0) } else { (1.0, e[r]) };
            lh = lh.mul_add(ms[r], vs[r]);
        }
        *l = lh;
    }

    /// Heads whose accumulators [`accumulate_v_group`] keeps in registers (with up to 4 vectors
    /// each).
    pub(super) const MAX_GROUP_IN_REGISTERS: usize = 4;

    /// [`accumulate_v`] for the group's `g` heads at once (`acc` rows `hdp` apart), the heads
    /// interleaved per value row so their dependency chains overlap; NC is 1..=4.
    #[inline(always)]
    unsafe fn accumulate_v_group<S: Simd, const NC: usize, const F16: bool>(
        acc: *mut f32,
        rows: *const f32,
        hdp: usize,
        g: usize,
        nr: usize,
        ms: &[[f32; TILE]; MAX_GROUP_IN_REGISTERS],
        vs: &[[f32; TILE]; MAX_GROUP_IN_REGISTERS],
    ) {
        let lanes = S::LANES;
        let mut av = [[S::splat(0.0); 4]; MAX_GROUP_IN_REGISTERS];
        for (h, a) in av.iter_mut().enumerate().take(g) {
            for (c, a) in a.iter_mut().enumerate().take(NC) {
                *a = S::load(acc.add(h * hdp + c * lanes));
            }
        }
        for r in 0..nr {
            let v = rows.add(r * hdp);
            let mut vr = [S::splat(0.0); 4];
            for (c, x) in vr.iter_mut().enumerate().take(NC) {
                *x = S::load(v.add(c * lanes));
            }
            for (h, a) in av.iter_mut().enumerate().take(g) {
                if ms[h][r] != 1.0 {
                    let vms = S::splat(ms[h][r]);
                    for a in a.iter_mut().take(NC) {
                        *a = round::<S, F16>(S::mul(*a, vms));
                    }
                }
                let vvs = S::splat(vs[h][r]);
                for (a, x) in a.iter_mut().zip(&vr).take(NC) {
                    *a = round::<S, F16>(S::fma(*x, vvs, *a));
                }
            }
        }
        for (h, a) in av.iter().enumerate().take(g) {
            for (c, a) in a.iter().enumerate().take(NC) {
                S::store(acc.add(h * hdp + c * lanes), *a);
            }
        }
    }

    /// Rounded to f16 against an f16 cache (a function, not a closure: closures are compiled
    /// without the caller's target features).
    #[inline(always)]
    unsafe fn round<S: Simd, const F16: bool>(x: S::V) -> S::V {
        if F16 {
            S::round_f16(x)
        } else {
            x
        }
    }

    /// Merges partial `part` into the running state `run` (both `[g] max, [g] sum, [g, hdp]`).
    #[inline(always)]
    unsafe fn merge<S: Simd, const NC: usize>(g: usize, hdp: usize, run: &mut [f32], part: &[f32]) {
        let nc = width::<S, NC>(hdp);
        let (rm, rest) = run.split_at_mut(g);
        let (rl, ra) = rest.split_at_mut(g);
        let (pm, rest) = part.split_at(g);
        let (pl, pa) = rest.split_at(g);
        for h in 0..g {
            let new_max = rm[h].max(pm[h]);
            let (cr, cp) = (exp_diff(rm[h], new_max), exp_diff(pm[h], new_max));
            rl[h] = rl[h] * cr + pl[h] * cp;
            // SAFETY: both accumulators hold g * hdp elements.
            unsafe {
                let (d, s) = (ra.as_mut_ptr().add(h * hdp), pa.as_ptr().add(h * hdp));
                let (va, vb) = (S::splat(cr), S::splat(cp));
                for i in 0..nc {
                    let x = S::mul(S::load(d.add(i * S::LANES)), va);
                    S::store(d.add(i * S::LANES), S::fma(S::load(s.add(i * S::LANES)), vb, x));
                }
            }
            rm[h] = new_max;
        }
    }

    #[inline(always)]
    fn reset(g: usize, run: &mut [f32]) {
        run[..g].fill(f32::NEG_INFINITY);
        run[g..].fill(0.0);
    }

    /// `out[h] = acc[h] · (1 / sum[h])` for the group's heads (ggml multiplies by the inverse).
    #[inline(always)]
    fn finish(g: usize, hd: usize, hdp: usize, run: &[f32], out: &mut [f32]) {
        let (l, acc) = (&run[g..2 * g], &run[2 * g..]);
        for h in 0..g {
            let inv = if l[h] == 0.0 { 0.0 } else { 1.0 / l[h] };
            for (o, a) in out[h * hd..(h + 1) * hd].iter_mut().zip(&acc[h * hdp..]) {
                *o = a * inv;
            }
        }
    }

    #[inline(always)]
    pub unsafe fn run<S: Simd, T: KvElem, const NC: usize>(job: &Job<'_, T>, op: Op<'_>, mut b: Bufs<'_>) {
        let (g, hdp) = (job.group, job.hdp);
        match op {
            Op::Pair { pair, out } => {
                let (t, kvh, pos) = token_of(job, pair);
                load_q::<S, T>(job, t, kvh, b.q);
                let run = std::mem::take(&mut b.run);
                let part = std::mem::take(&mut b.part);
                reset(g, run);
                for chunk in 0..pos / CHUNK + 1 {
                    // SAFETY: the module's contract.
                    unsafe {
                        chunk_partial::<S, T, NC>(job, t, kvh, chunk, &mut b, part);
                        merge::<S, NC>(g, hdp, run, part);
                    }
                }
                finish(g, job.hd, hdp, run, out);
            }
            Op::Chunk { pair, chunk, part } => {
                let (t, kvh, _) = token_of(job, pair);
                load_q::<S, T>(job, t, kvh, b.q);
                // SAFETY: the module's contract.
                unsafe { chunk_partial::<S, T, NC>(job, t, kvh, chunk, &mut b, part) };
            }
            Op::Merge { parts, out } => {
                reset(g, b.run);
                for part in parts.chunks_exact(job.partial_len()) {
                    // SAFETY: the module's contract.
                    unsafe { merge::<S, NC>(g, hdp, b.run, part) };
                }
                finish(g, job.hd, hdp, b.run, out);
            }
        }
    }
}

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
fn reference<T: KvElem>(pool: &WorkerPool, kv: &LayerKv<T>, cache: &CpuKvCache, q: &[f32], heads: usize, batch: &AttentionBatch<'_, CpuBackend>, out: &mut [f32]) {
    let l = &cache.layout;
    let hd = l.head_dim;
    let group = heads / l.kv_heads;
    let kv_row = l.kv_heads * hd;
    let scale = 1.0 / (hd as f32).sqrt();
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
        for chunk in 0..pos / CHUNK + 1 {
            let (mut m, mut sum, mut acc) = (f32::NEG_INFINITY, 0f32, [0f32; MAX_HEAD_DIM]);
            for p in chunk * CHUNK..((chunk + 1) * CHUNK).min(pos + 1) {
                let slot = table[p / l.block_size] as usize * l.block_size + p % l.block_size;
                let base = slot * kv_row + kv_off;
                k[..hd].iter_mut().zip(&kv.k[base..base + hd]).for_each(|(d, s)| *d = s.to_f32());
                v[..hd].iter_mut().zip(&kv.v[base..base + hd]).for_each(|(d, s)| *d = s.to_f32());
                let s = ggml_dot(qh, &k[..hd]) * scale;
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
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rill_backend::{KvDType, KvLayout};


    /// A cache whose every slot holds random K/V, a shuffled block table per sequence.
    struct Fixture {
        cache: CpuKvCache,
        tables: Vec<u32>,
        max_blocks: usize,
        seqs: usize,
    }

    fn fixture(rng: &mut ChaCha8Rng, dtype: KvDType, kv_heads: usize, head_dim: usize, seqs: usize, max_ctx: usize) -> Fixture {
        let block_size = 16;
        let max_blocks = max_ctx.div_ceil(block_size);
        let num_blocks = seqs * max_blocks + 3;
        let layout = KvLayout { layers: 2, num_blocks, block_size, kv_heads, head_dim, dtype };
        let mut cache = CpuKvCache::new(layout).unwrap();
        let slots = num_blocks * block_size;
        let row = kv_heads * head_dim;
        for layer in 0..2 {
            let k: Vec<f32> = (0..slots * row).map(|_| rng.random_range(-1.0..1.0)).collect();
            let v: Vec<f32> = (0..slots * row).map(|_| rng.random_range(-1.0..1.0)).collect();
            let all: Vec<u32> = (0..slots as u32).collect();
            cache.write(layer, &k, &v, &all, slots).unwrap();
        }
        let mut blocks: Vec<u32> = (0..num_blocks as u32).collect();
        blocks.shuffle(rng);
        let tables = blocks[..seqs * max_blocks].to_vec();
        Fixture { cache, tables, max_blocks, seqs }
    }

    /// Runs attention for `(seq, pos)` tokens with `q`.
    fn run(isa: Isa, pool: &WorkerPool, f: &Fixture, tokens: &[(u32, u32)], q: &[f32], heads: usize) -> Vec<f32> {
        let positions: Vec<u32> = tokens.iter().map(|t| t.1).collect();
        let token_seq: Vec<u32> = tokens.iter().map(|t| t.0).collect();
        let slots = vec![0u32; tokens.len()];
        let batch = AttentionBatch::<CpuBackend> {
            num_tokens: tokens.len(),
            num_seqs: f.seqs,
            positions: &positions,
            token_seq: &token_seq,
            slots: &slots,
            block_tables: &f.tables,
            max_blocks_per_seq: f.max_blocks,
        };
        let mut out = vec![f32::NAN; tokens.len() * heads * f.cache.layout.head_dim];
        paged_attention_with(isa, pool, &f.cache, 1, q, heads, &batch, &mut out).unwrap();
        out
    }

    fn random_q(rng: &mut ChaCha8Rng, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-scale..scale)).collect()
    }

    /// SIMD vs reference: the same arithmetic (ggml's), so the same bits.
    #[test]
    fn simd_matches_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let pools = [WorkerPool::new(1).unwrap(), WorkerPool::new(3).unwrap()];
        let isas = Isa::supported();
        assert!(isas.contains(&Isa::Portable));
        for dtype in [KvDType::F16, KvDType::F32] {
            for head_dim in [8, 24, 64, 72, 128] {
                for (heads, kv_heads) in [(1, 1), (4, 4), (9, 3), (8, 1), (6, 2)] {
                    let max_ctx = 600;
                    let f = fixture(&mut rng, dtype, kv_heads, head_dim, 3, max_ctx);
                    // Decode tokens across block and chunk boundaries, then a causal prefill
                    // chunk of sequence 2 crossing position 256.
                    let mut tokens: Vec<(u32, u32)> = [0, 15, 16, 17, 255, 256, 257, 599].iter().map(|&p| (p % 2, p)).collect();
                    tokens.extend((240..270).map(|p| (2, p)));
                    for q_scale in [1.0, 8.0] {
                        let q = random_q(&mut rng, tokens.len() * heads * head_dim, q_scale);
                        let want = run(Isa::Reference, &pools[0], &f, &tokens, &q, heads);
                        for &isa in &isas[1..] {
                            for pool in &pools {
                                let got = run(isa, pool, &f, &tokens, &q, heads);
                                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                                    assert!(
                                        g.to_bits() == w.to_bits(),
                                        "{isa:?} {dtype:?} hd {head_dim} {heads}/{kv_heads} heads, {} threads, q×{q_scale}: \
                                         element {i} (token {:?}) {g} vs {w}",
                                        pool.threads(),
                                        tokens[i / (heads * head_dim)]
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// One (token, head) of ggml's one-chunk flash attention written out plainly: f16 query,
    /// `ggml_vec_dot_f16`'s order, `expf` (glibc's, which the kernel clones), an f16 value
    /// accumulator, `acc · (1/S)`.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn follows_ggml_flash_attention() {
        use half::f16;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (hd, pos) = (64, 40);
        let f = fixture(&mut rng, KvDType::F16, 1, hd, 1, 64);
        let q = random_q(&mut rng, hd, 2.0);
        let pool = WorkerPool::new(1).unwrap();
        let (k, v) = match &f.cache.store {
            KvStore::F16(layers) => (&layers[1].k, &layers[1].v),
            KvStore::F32(_) => unreachable!(),
        };
        let q16: Vec<f32> = q.iter().map(|x| f16::from_f32(*x).to_f32()).collect();
        let (mut m, mut s_sum, mut acc) = (f32::NEG_INFINITY, 0f32, vec![f16::ZERO; hd]);
        for p in 0..=pos {
            let slot = f.tables[p / 16] as usize * 16 + p % 16;
            let (kr, vr) = (&k[slot * hd..][..hd], &v[slot * hd..][..hd]);
            // ggml_vec_dot_f16, AVX-512: 4 × 16 lanes, (a₀+a₂)+(a₁+a₃), then reduce_add.
            let prod: Vec<f32> = (0..hd).map(|i| q16[i] * kr[i].to_f32()).collect();
            let x: Vec<f32> = (0..16).map(|l| (prod[l] + prod[32 + l]) + (prod[16 + l] + prod[48 + l])).collect();
            let h: Vec<f32> = (0..8).map(|l| x[l + 8] + x[l]).collect();
            let t: Vec<f32> = (0..4).map(|l| h[l + 4] + h[l]).collect();
            let s = ((t[2] + t[0]) + (t[3] + t[1])) * (1.0 / 8.0);
            let (mut ms, mut vs) = (1.0f32, 1.0f32);
            if s > m {
                ms = (m - s).exp();
                m = s;
                acc.iter_mut().for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
            } else {
                vs = (s - m).exp();
            }
            acc.iter_mut().zip(vr).for_each(|(a, v)| *a = f16::from_f32(v.to_f32().mul_add(vs, a.to_f32())));
            s_sum = s_sum.mul_add(ms, vs);
        }
        let want: Vec<f32> = acc.iter().map(|a| a.to_f32() * (1.0 / s_sum)).collect();
        for &isa in Isa::supported() {
            let got = run(isa, &pool, &f, &[(0, pos as u32)], &q, 1);
            assert_eq!(got, want, "{isa:?}");
        }
    }

    /// A token's output is bit-identical alone or in a batch, with any thread count (chunks as
    /// tasks or chunks in order), in decode or inside a prefill chunk.
    #[test]
    fn batch_invariant_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (heads, kv_heads, hd) = (9, 3, 64);
        let f = fixture(&mut rng, KvDType::F16, kv_heads, hd, 4, 1100);
        let tokens: Vec<(u32, u32)> = (0..40).map(|i| (i % 4, [3u32, 255, 256, 700, 1099][i as usize % 5].saturating_sub(i / 5))).collect();
        let q = random_q(&mut rng, tokens.len() * heads * hd, 2.0);
        let pools = [WorkerPool::new(1).unwrap(), WorkerPool::new(2).unwrap(), WorkerPool::new(5).unwrap()];
        for &isa in Isa::supported() {
            let batched = run(isa, &pools[0], &f, &tokens, &q, heads);
            for pool in &pools {
                assert_eq!(run(isa, pool, &f, &tokens, &q, heads), batched, "{isa:?} {} threads, batch", pool.threads());
                for (i, &tok) in tokens.iter().enumerate().step_by(7) {
                    let span = heads * hd;
                    let alone = run(isa, pool, &f, &[tok], &q[i * span..(i + 1) * span], heads);
                    assert_eq!(alone, batched[i * span..(i + 1) * span], "{isa:?} {} threads, token {i} alone", pool.threads());
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let f = fixture(&mut rng, KvDType::F16, 2, 8, 1, 32);
        let pool = WorkerPool::new(2).unwrap();
        let (positions, token_seq, slots) = (vec![40u32], vec![0u32], vec![0u32]);
        let batch = AttentionBatch::<CpuBackend> {
            num_tokens: 1,
            num_seqs: 1,
            positions: &positions,
            token_seq: &token_seq,
            slots: &slots,
            block_tables: &f.tables,
            max_blocks_per_seq: f.max_blocks,
        };
        let mut out = vec![0.0; 4 * 8];
        assert!(paged_attention(&pool, &f.cache, 1, &[0.0; 32], 4, &batch, &mut out).is_err(), "position past the table");
        assert!(paged_attention(&pool, &f.cache, 1, &[0.0; 24], 3, &batch, &mut out).is_err(), "3 heads over 2 KV heads");
    }

    /// Decode attention timing (for information):
    /// `cargo test -p rill-backend-cpu --release attention_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn attention_timing() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (heads, kv_heads, hd) = (9, 3, 64);
        let cores = crate::pool::physical_cores();
        for threads in [1, cores] {
            let pool = WorkerPool::new(threads).unwrap();
            for (ctx, seqs, prefill) in [(1024, 1, 0), (4096, 1, 0), (1024, 8, 0), (512, 1, 512)] {
                let f = fixture(&mut rng, KvDType::F16, kv_heads, hd, seqs, ctx);
                let tokens: Vec<(u32, u32)> = if prefill > 0 {
                    (0..prefill).map(|p| (0, (ctx - prefill + p) as u32)).collect()
                } else {
                    (0..seqs).map(|s| (s as u32, ctx as u32 - 1)).collect()
                };
                let q = random_q(&mut rng, tokens.len() * heads * hd, 1.0);
                let mut line = format!("{threads} threads, f16 KV, {heads}/{kv_heads} heads, hd {hd}, ");
                line += &if prefill > 0 { format!("prefill {prefill} tokens at ctx {ctx}:") } else { format!("decode {seqs} seq at ctx {ctx}:") };
                let only = std::env::var("RILL_TIMING_ISA").ok();
                for isa in Isa::supported().iter().copied().filter(|i| only.as_ref().is_none_or(|o| format!("{i:?}").eq_ignore_ascii_case(o))) {
                    let work = tokens.iter().map(|t| t.1 as usize + 1).sum::<usize>();
                    let iters = (2_000_000 / work / if isa == Isa::Reference { 20 } else { 1 }).max(2);
                    let mut best = f64::MAX;
                    for _ in 0..5 {
                        let t = std::time::Instant::now();
                        for _ in 0..iters {
                            std::hint::black_box(run(isa, &pool, &f, &tokens, &q, heads));
                        }
                        best = best.min(t.elapsed().as_secs_f64() / iters as f64);
                    }
                    line += &format!(" {isa:?} {:.1} us", best * 1e6);
                }
                println!("{line}");
            }
        }
    }
}

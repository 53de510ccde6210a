//! The tiled kernel's driver and the row helpers both arithmetics share (`fast`, `ggml`), generic
//! over the vector ISA `S` and the row width `NC` (vectors per padded row; 0: read it from the
//! job). Everything is `#[inline(always)]` so it compiles
//! inside the `#[target_feature]` entry points, with the row loops unrolled when `NC` is
//! known.
//!
//! Safety contract of every function: `S` is supported by the CPU, the `Job`'s indices were
//! validated by `paged_attention` (block ids, positions, buffer lengths), and `NC` is 0
//! or `hdp / LANES`.

use rill_backend::AttentionArithmetic;

use crate::simd::{expf_glibc, Simd};
use super::{fast, ggml, Bufs, Job, Op, CHUNK, QUERY_TILE};
use crate::kv_cache::KvElem;

/// `exp(a - b)`, with `exp(-inf - b) = 0` even for `b = -inf` (an empty state).
#[inline(always)]
pub(super) fn exp_diff(a: f32, b: f32) -> f32 {
    if a == f32::NEG_INFINITY {
        0.0
    } else {
        expf_glibc(a - b)
    }
}

/// Vectors per padded row.
#[inline(always)]
pub(super) fn width<S: Simd, const NC: usize>(hdp: usize) -> usize {
    if NC > 0 {
        NC
    } else {
        hdp / S::LANES
    }
}

/// Converts `src[..hd]` into `dst[..hd]` (f32); `dst[hd..]` stays as it is (zero padding).
#[inline(always)]
pub(super) unsafe fn load_row<S: Simd, T: KvElem, const NC: usize>(src: &[T], dst: &mut [f32]) {
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

/// Loads the group's query rows into `q` (zero-padded). With ggml's arithmetic against an f16
/// cache the query is rounded to f16 first, as ggml converts it to the K type before its dot.
#[inline(always)]
unsafe fn load_q<S: Simd, T: KvElem>(job: &Job<'_, T>, t: usize, kvh: usize, q: &mut [f32]) {
    let (hd, hdp) = (job.hd, job.hdp);
    for h in 0..job.group {
        let src = &job.q[(t * job.heads + kvh * job.group + h) * hd..][..hd];
        let dst = &mut q[h * hdp..(h + 1) * hdp];
        dst[..hd].copy_from_slice(src);
        dst[hd..].fill(0.0);
        if T::IS_F16 && job.params.arithmetic == AttentionArithmetic::Ggml {
            for c in dst.chunks_exact_mut(S::LANES) {
                // SAFETY: `c` holds LANES elements (hdp is a multiple of LANES).
                unsafe { S::store(c.as_mut_ptr(), S::round_f16(S::load(c.as_ptr()))) };
            }
        }
    }
}

/// What both arithmetics do first in a chunk: each token's partial in `parts` reset to empty,
/// the staging rows' padding zeroed, and each token's keys in the chunk (`ranges[j]` for `ts[j]`)
/// with their union `start..end` (empty when no token reads the chunk).
#[inline(always)]
pub(super) fn begin_chunk<T>(job: &Job<'_, T>, ts: &[usize], chunk: usize, rows: &mut [f32], parts: &mut [f32]) -> ([(usize, usize); QUERY_TILE], usize, usize) {
    let (g, pl) = (job.group, job.partial_len());
    let mut ranges = [(0usize, 0usize); QUERY_TILE];
    let (mut start, mut end) = (usize::MAX, 0);
    for (j, &t) in ts.iter().enumerate() {
        reset(g, &mut parts[j * pl..(j + 1) * pl]);
        let pos = job.positions[t] as usize;
        ranges[j] = ((chunk * CHUNK).max(job.params.first_position(pos)), ((chunk + 1) * CHUNK).min(pos + 1));
        if ranges[j].0 < ranges[j].1 {
            (start, end) = (start.min(ranges[j].0), end.max(ranges[j].1));
        }
    }
    for row in rows.chunks_exact_mut(job.hdp) {
        row[job.hd..].fill(0.0);
    }
    (ranges, start, end)
}

/// Fills `dst` with the element offsets of consecutive positions' rows for the KV head at
/// `head_off`, from the block-table cursor `(block, offset)`, which it advances.
#[inline(always)]
pub(super) fn tile_bases(table: &[u32], block_size: usize, kv_row: usize, head_off: usize, cursor: &mut (usize, usize), dst: &mut [usize]) {
    let (blk, off) = cursor;
    if !dst.is_empty() && *off + dst.len() < block_size {
        // Inside one block: consecutive slots.
        let first = (table[*blk] as usize * block_size + *off) * kv_row + head_off;
        for (i, d) in dst.iter_mut().enumerate() {
            *d = first + i * kv_row;
        }
        *off += dst.len();
        return;
    }
    for d in dst {
        *d = (table[*blk] as usize * block_size + *off) * kv_row + head_off;
        *off += 1;
        if *off == block_size {
            (*blk, *off) = (*blk + 1, 0);
        }
    }
}

/// Asks for the cache lines of `row` ahead of use.
#[inline(always)]
pub(super) fn prefetch_row<T>(row: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = row.as_ptr().cast::<i8>();
        for line in (0..std::mem::size_of_val(row)).step_by(64) {
            // SAFETY: a prefetch never faults, and the address is inside `row`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
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

/// One chunk's partials for the tokens `ts`, in the job's arithmetic.
#[inline(always)]
unsafe fn chunk_partial<S: Simd, T: KvElem, const NC: usize>(job: &Job<'_, T>, ts: &[usize], kvh: usize, chunk: usize, b: &mut Bufs<'_>, parts: &mut [f32]) {
    // SAFETY: the module's contract.
    unsafe {
        match job.params.arithmetic {
            AttentionArithmetic::Fast => fast::chunk_partial::<S, T, NC>(job, ts, kvh, chunk, b, parts),
            AttentionArithmetic::Ggml => ggml::chunk_partial::<S, T, NC>(job, ts, kvh, chunk, b, parts),
        }
    }
}

#[inline(always)]
pub unsafe fn run<S: Simd, T: KvElem, const NC: usize>(job: &Job<'_, T>, op: Op<'_>, mut b: Bufs<'_>) {
    let (g, hdp, pl) = (job.group, job.hdp, job.partial_len());
    match op {
        Op::Tokens { tokens, kvh, out } => {
            let span = g * job.hd;
            // Runs of consecutive tokens of one sequence share each K/V tile.
            let mut t0 = tokens.start;
            while t0 < tokens.end {
                let mut t1 = t0 + 1;
                while t1 < tokens.end && t1 - t0 < QUERY_TILE && job.token_seq[t1] == job.token_seq[t0] {
                    t1 += 1;
                }
                let ts: [usize; QUERY_TILE] = std::array::from_fn(|j| t0 + j);
                let ts = &ts[..t1 - t0];
                for (j, &t) in ts.iter().enumerate() {
                    load_q::<S, T>(job, t, kvh, &mut b.q[j * g * hdp..(j + 1) * g * hdp]);
                }
                b.run[..ts.len() * pl].chunks_exact_mut(pl).for_each(|r| reset(g, r));
                let part = std::mem::take(&mut b.part);
                let chunks = ts.iter().map(|&t| job.chunks(t)).reduce(|a, c| a.start.min(c.start)..a.end.max(c.end)).unwrap_or_default();
                for chunk in chunks {
                    // SAFETY: the module's contract.
                    unsafe { chunk_partial::<S, T, NC>(job, ts, kvh, chunk, &mut b, &mut part[..ts.len() * pl]) };
                    for (j, &t) in ts.iter().enumerate() {
                        if job.chunks(t).contains(&chunk) {
                            // SAFETY: as above.
                            unsafe { merge::<S, NC>(g, hdp, &mut b.run[j * pl..(j + 1) * pl], &part[j * pl..(j + 1) * pl]) };
                        }
                    }
                }
                b.part = part;
                for (j, &t) in ts.iter().enumerate() {
                    // SAFETY: the (token, KV head) pair's outputs lie inside the call's `out`,
                    // and only this task writes them (the `Op::Tokens` contract).
                    let o = unsafe { std::slice::from_raw_parts_mut(out.add((t * job.kv_heads + kvh) * span), span) };
                    finish(g, job.hd, hdp, &b.run[j * pl..(j + 1) * pl], o);
                }
                t0 = t1;
            }
        }
        Op::Chunk { pair, chunk, part } => {
            let (t, kvh, _) = token_of(job, pair);
            load_q::<S, T>(job, t, kvh, b.q);
            // SAFETY: the module's contract.
            unsafe { chunk_partial::<S, T, NC>(job, &[t], kvh, chunk, &mut b, part) };
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

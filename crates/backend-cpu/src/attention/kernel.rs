//! The tiled kernel, generic over the vector ISA `S` and the row width `NC` (vectors per
//! padded row; 0: read it from the job). Everything is `#[inline(always)]` so it compiles
//! inside the `#[target_feature]` entry points, with the row loops unrolled when `NC` is
//! known.
//!
//! Safety contract of every function: `S` is supported by the CPU, the `Job`'s indices were
//! validated by `paged_attention` (block ids, positions, buffer lengths), and `NC` is 0
//! or `hdp / LANES`.

use crate::simd::{expf_glibc, Simd};
use super::{ggml_dot, Bufs, Job, Op, CHUNK, QUERY_TILE, TILE};
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

/// One chunk's partials `(max, sum, acc)` for the tokens `ts` (of one sequence, at most
/// [`QUERY_TILE`]; their query rows in `b.q`, `g·hdp` apart; their partials in `parts`,
/// `partial_len` apart) and KV head `kvh`, with ggml's arithmetic (see the module docs): scores
/// by [`Simd::ggml_dot16`] then `· scale`; per row in order `ms = e^(M−s)` on a new maximum (the
/// accumulator scaled and rounded), else `vs = e^(s−M)`; `acc = round(fma(v, vs, acc))`;
/// `S = fma(S, ms, vs)`. Each K and V tile is converted once for all the tokens, and each token
/// takes the rows of its own window, in position order, so its bits are those it gets alone.
#[inline(always)]
unsafe fn chunk_partial<S: Simd, T: KvElem, const NC: usize>(job: &Job<'_, T>, ts: &[usize], kvh: usize, chunk: usize, b: &mut Bufs<'_>, parts: &mut [f32]) {
    let (g, hd, hdp, pl) = (job.group, job.hd, job.hdp, job.partial_len());
    let seq = job.token_seq[ts[0]] as usize;
    let table = &job.block_tables[seq * job.max_blocks..][..job.max_blocks];
    let kv_row = job.kv_heads * hd;
    // Each token's rows in this chunk, and their union.
    let mut ranges = [(0usize, 0usize); QUERY_TILE];
    let (mut start, mut end) = (usize::MAX, 0);
    for (j, &t) in ts.iter().enumerate() {
        let part = &mut parts[j * pl..(j + 1) * pl];
        part[..g].fill(f32::NEG_INFINITY);
        part[g..].fill(0.0);
        let pos = job.positions[t] as usize;
        ranges[j] = ((chunk * CHUNK).max(job.params.first_position(pos)), ((chunk + 1) * CHUNK).min(pos + 1));
        if ranges[j].0 < ranges[j].1 {
            (start, end) = (start.min(ranges[j].0), end.max(ranges[j].1));
        }
    }
    for row in b.rows.chunks_exact_mut(hdp) {
        row[hd..].fill(0.0);
    }
    if start >= end {
        return;
    }
    let f16_acc = T::IS_F16 && chunk == 0;
    // Element offsets of the tile's K/V rows; the next tile's are computed one tile ahead and
    // prefetched: the rows sit in paged blocks, where the hardware prefetcher loses the stride.
    let (mut base, mut next) = ([0usize; TILE], [0usize; TILE]);
    let mut cursor = (start / job.block_size, start % job.block_size);
    let mut nr = TILE.min(end - start);
    tile_bases(table, job.block_size, kv_row, kvh * hd, &mut cursor, &mut base[..nr]);
    let mut p0 = start;
    while p0 < end {
        let next_nr = TILE.min(end - (p0 + nr));
        tile_bases(table, job.block_size, kv_row, kvh * hd, &mut cursor, &mut next[..next_nr]);
        for &n in &next[..next_nr] {
            prefetch_row(&job.k[n..n + hd]);
            prefetch_row(&job.v[n..n + hd]);
        }
        // The tile rows `r0..r1` each token reads.
        let rows_of = |j: usize| (ranges[j].0.saturating_sub(p0).min(nr), ranges[j].1.saturating_sub(p0).min(nr));
        // Scores of the tile's rows for every head of the group, per token. Rows outside a
        // token's range (or past `nr`, holding stale finite data) are computed and ignored.
        for (&base, row) in base[..nr].iter().zip(b.rows.chunks_exact_mut(hdp)) {
            // SAFETY: the function's contract.
            unsafe { load_row::<S, T, NC>(&job.k[base..base + hd], row) };
        }
        for j in 0..ts.len() {
            let (r0, r1) = rows_of(j);
            if r0 >= r1 {
                continue;
            }
            let mut h = 0;
            while h < g {
                if hd.is_multiple_of(64) && h + 1 < g {
                    // Two heads of the group against each K row at once.
                    let (q0, q1) = (b.q.as_ptr().add((j * g + h) * hdp), b.q.as_ptr().add((j * g + h + 1) * hdp));
                    let s = b.s.as_mut_ptr().add((j * g + h) * TILE);
                    // SAFETY: as for `ggml_dot16` below, for heads h and h + 1 (< g).
                    unsafe { S::ggml_dot16x2([q0, q1], b.rows.as_ptr(), hdp, hd / 64, [s, s.add(TILE)]) };
                    for s in b.s[(j * g + h) * TILE..(j * g + h + 2) * TILE].chunks_exact_mut(TILE) {
                        s[r0..r1].iter_mut().for_each(|s| *s = job.params.apply(*s));
                    }
                    h += 2;
                    continue;
                }
                let qh = &b.q[(j * g + h) * hdp..(j * g + h) * hdp + hd];
                let s = &mut b.s[(j * g + h) * TILE..(j * g + h + 1) * TILE];
                if hd.is_multiple_of(64) {
                    // SAFETY: `q` holds g * hdp per token and `rows` TILE * hdp elements, hd <=
                    // hdp; `s` holds TILE = 16 elements.
                    unsafe { S::ggml_dot16(qh.as_ptr(), b.rows.as_ptr(), hdp, hd / 64, s.as_mut_ptr()) };
                } else {
                    for (r, s) in s[r0..r1].iter_mut().enumerate() {
                        *s = ggml_dot(qh, &b.rows[(r0 + r) * hdp..(r0 + r) * hdp + hd]);
                    }
                }
                s[r0..r1].iter_mut().for_each(|s| *s = job.params.apply(*s));
                h += 1;
            }
        }
        for (&base, row) in base[..nr].iter().zip(b.rows.chunks_exact_mut(hdp)) {
            // SAFETY: the function's contract.
            unsafe { load_row::<S, T, NC>(&job.v[base..base + hd], row) };
        }
        for j in 0..ts.len() {
            let (r0, r1) = rows_of(j);
            if r0 >= r1 {
                continue;
            }
            let part = &mut parts[j * pl..(j + 1) * pl];
            let (m, rest) = part.split_at_mut(g);
            let (l, acc) = rest.split_at_mut(g);
            let (rows, n) = (b.rows.as_ptr().add(r0 * hdp), r1 - r0);
            // The online softmax, one row at a time in position order: first each row's
            // factors (`ms` rescales the accumulator on a new maximum, `vs` weighs the row),
            // then the value rows.
            let (mut ms, mut vs) = ([[1f32; TILE]; MAX_GROUP_IN_REGISTERS], [[1f32; TILE]; MAX_GROUP_IN_REGISTERS]);
            if NC > 4 && NC <= 8 && g >= 2 {
                // Rows of up to 8 vectors: two heads' accumulators stay in registers and share
                // each value row.
                for h0 in (0..g).step_by(2) {
                    let pair = (g - h0).min(2);
                    for k in 0..pair {
                        let s = &b.s[(j * g + h0 + k) * TILE + r0..(j * g + h0 + k + 1) * TILE];
                        // SAFETY: the module's contract.
                        unsafe { softmax_factors::<S>(s, n, &mut m[h0 + k], &mut l[h0 + k], &mut ms[k], &mut vs[k]) };
                    }
                    let a = acc.as_mut_ptr().add(h0 * hdp);
                    // SAFETY: `acc` holds g * hdp elements (heads h0, h0 + 1 < g when paired),
                    // `rows` n * hdp.
                    unsafe {
                        match (pair, f16_acc) {
                            (2, true) => accumulate_v_two::<S, NC, true>(a, rows, hdp, n, &ms, &vs),
                            (2, false) => accumulate_v_two::<S, NC, false>(a, rows, hdp, n, &ms, &vs),
                            (_, true) => accumulate_v::<S, NC, true>(a, rows, hdp, n, &ms[0], &vs[0]),
                            (_, false) => accumulate_v::<S, NC, false>(a, rows, hdp, n, &ms[0], &vs[0]),
                        }
                    }
                }
                continue;
            }
            for h in 0..g {
                let (ms, vs) = (&mut ms[h % MAX_GROUP_IN_REGISTERS], &mut vs[h % MAX_GROUP_IN_REGISTERS]);
                let s = &b.s[(j * g + h) * TILE + r0..(j * g + h + 1) * TILE];
                // SAFETY: the module's contract.
                unsafe { softmax_factors::<S>(s, n, &mut m[h], &mut l[h], ms, vs) };
                if g > MAX_GROUP_IN_REGISTERS || NC == 0 || NC > 4 {
                    let a = acc.as_mut_ptr().add(h * hdp);
                    // SAFETY: `acc` holds g * hdp, `rows` (TILE - r0) * hdp elements; `nc`
                    // vectors of LANES make up hdp.
                    unsafe {
                        if f16_acc {
                            accumulate_v::<S, NC, true>(a, rows, hdp, n, ms, vs)
                        } else {
                            accumulate_v::<S, NC, false>(a, rows, hdp, n, ms, vs)
                        }
                    };
                }
            }
            if g <= MAX_GROUP_IN_REGISTERS && NC > 0 && NC <= 4 {
                // SAFETY: as above.
                unsafe {
                    if f16_acc {
                        accumulate_v_group::<S, NC, true>(acc.as_mut_ptr(), rows, hdp, g, n, &ms, &vs)
                    } else {
                        accumulate_v_group::<S, NC, false>(acc.as_mut_ptr(), rows, hdp, g, n, &ms, &vs)
                    }
                };
            }
        }
        p0 += nr;
        (base, nr) = (next, next_nr);
    }
}

/// Fills `dst` with the element offsets of consecutive positions' rows for the KV head at
/// `head_off`, from the block-table cursor `(block, offset)`, which it advances.
#[inline(always)]
fn tile_bases(table: &[u32], block_size: usize, kv_row: usize, head_off: usize, cursor: &mut (usize, usize), dst: &mut [usize]) {
    let (blk, off) = cursor;
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
fn prefetch_row<T>(row: &[T]) {
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

/// [`accumulate_v`] for two heads (accumulators `hdp` apart, factors `ms[0..2]`, `vs[0..2]`),
/// each value row loaded once for both; NC is 5..=8.
#[inline(always)]
unsafe fn accumulate_v_two<S: Simd, const NC: usize, const F16: bool>(
    acc: *mut f32,
    rows: *const f32,
    hdp: usize,
    nr: usize,
    ms: &[[f32; TILE]; MAX_GROUP_IN_REGISTERS],
    vs: &[[f32; TILE]; MAX_GROUP_IN_REGISTERS],
) {
    let lanes = S::LANES;
    let mut av = [[S::splat(0.0); 8]; 2];
    for (h, a) in av.iter_mut().enumerate() {
        for (c, a) in a.iter_mut().enumerate().take(NC) {
            *a = S::load(acc.add(h * hdp + c * lanes));
        }
    }
    for r in 0..nr {
        let v = rows.add(r * hdp);
        for (h, a) in av.iter_mut().enumerate() {
            if ms[h][r] != 1.0 {
                let vms = S::splat(ms[h][r]);
                for a in a.iter_mut().take(NC) {
                    *a = round::<S, F16>(S::mul(*a, vms));
                }
            }
        }
        let (vs0, vs1) = (S::splat(vs[0][r]), S::splat(vs[1][r]));
        let [a0, a1] = &mut av;
        for (c, (a0, a1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate().take(NC) {
            let x = S::load(v.add(c * lanes));
            *a0 = round::<S, F16>(S::fma(x, vs0, *a0));
            *a1 = round::<S, F16>(S::fma(x, vs1, *a1));
        }
    }
    for (h, a) in av.iter().enumerate() {
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

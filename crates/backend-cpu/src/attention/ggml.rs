//! ggml's arithmetic (llama.cpp's CPU flash attention, bit for bit; the module docs of
//! `attention` list it): per key in position order an online softmax with an f16 value
//! accumulator in the first chunk. The oracle that proves rill computes what llama.cpp computes;
//! `AttentionArithmetic::Ggml` selects it. Same safety contract as `kernel`.

use crate::simd::Simd;
use super::kernel::{begin_chunk, load_row, prefetch_row, tile_bases, width};
use super::{ggml_dot, Bufs, Job, TILE};
use crate::kv_cache::KvElem;

/// One chunk's partials `(max, sum, acc)` for the tokens `ts` (of one sequence, at most
/// `QUERY_TILE`; their query rows in `b.q`, `g·hdp` apart; their partials in `parts`,
/// `partial_len` apart) and KV head `kvh`, with ggml's arithmetic (see the module docs): scores
/// by [`Simd::ggml_dot16`] then `· scale`; per row in order `ms = e^(M−s)` on a new maximum (the
/// accumulator scaled and rounded), else `vs = e^(s−M)`; `acc = round(fma(v, vs, acc))`;
/// `S = fma(S, ms, vs)`. Each K and V tile is converted once for all the tokens, and each token
/// takes the rows of its own window, in position order, so its bits are those it gets alone.
#[inline(always)]
pub(super) unsafe fn chunk_partial<S: Simd, T: KvElem, const NC: usize>(job: &Job<'_, T>, ts: &[usize], kvh: usize, chunk: usize, b: &mut Bufs<'_>, parts: &mut [f32]) {
    let (g, hd, hdp, pl) = (job.group, job.hd, job.hdp, job.partial_len());
    let seq = job.token_seq[ts[0]] as usize;
    let table = &job.block_tables[seq * job.max_blocks..][..job.max_blocks];
    let kv_row = job.kv_heads * hd;
    let (ranges, start, end) = begin_chunk(job, ts, chunk, b.rows, parts);
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

//! The default arithmetic: flash attention by tiles of [`TILE`] keys aligned to absolute
//! positions, everything in f32. Per tile, every query row of the task (its tokens × the GQA
//! group) takes its scores from one transposed K tile (a vector holds one element of 16 keys,
//! so a score row is `hd` FMAs with no horizontal sums), one softmax step (tile maximum, one
//! rescale of the accumulator, one vector `exp`), then the weighted V rows. Each token masks the
//! keys outside its window, so its arithmetic depends only on its own query, keys and position:
//! the tiles are the same whatever batch or block it comes in (batch invariance). Same safety
//! contract as `kernel`.

use crate::simd::Simd;
use super::kernel::{begin_chunk, exp_diff, load_row, prefetch_row, tile_bases};
use super::{Bufs, Job, TILE};
use crate::kv_cache::KvElem;
use rill_backend::AttentionParams;

/// Tiles between the one computed and the one whose rows are prefetched.
const PREFETCH_TILES: usize = 4;

/// One chunk's partials `(max, sum, acc)` for the tokens `ts` (of one sequence, at most
/// `QUERY_TILE`; their query rows in `b.q`, `hdp` apart, token-major; their partials in
/// `parts`, `partial_len` apart) and KV head `kvh`.
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
    // Tiles are aligned to multiples of TILE positions, so a token meets the same tiles in
    // every block (chunks are multiples of TILE). Keys before `start` (behind every token's
    // window: their blocks may be released) are never read; their rows are zeros, masked.
    let rows = ts.len() * g;
    // The accumulator of query row `i` (token i / g, head i % g).
    let acc_of = |i: usize| (i / g) * pl + 2 * g + (i % g) * hdp;
    // Each tile's row offsets (with its leading rows that are not read, and the rows read),
    // computed PREFETCH_TILES tiles ahead of use and their rows prefetched then: a tile's compute
    // is shorter than a DRAM round trip, and paged blocks hide the stride from the hardware
    // prefetcher.
    let mut ring = [([0usize; TILE], 0usize, 0usize); PREFETCH_TILES + 1];
    let mut cursor = (start / job.block_size, start % job.block_size);
    let mut queued = start;
    let mut queue = |slot: &mut ([usize; TILE], usize, usize)| {
        if queued >= end {
            return;
        }
        let lead = queued % TILE;
        let n = (TILE - lead).min(end - queued);
        tile_bases(table, job.block_size, kv_row, kvh * hd, &mut cursor, &mut slot.0[..n]);
        for &row in &slot.0[..n] {
            prefetch_row(&job.k[row..row + hd]);
            prefetch_row(&job.v[row..row + hd]);
        }
        (slot.1, slot.2) = (lead, n);
        queued += n;
    };
    ring.iter_mut().for_each(&mut queue);
    let (mut p0, mut tile) = (start / TILE * TILE, 0);
    while p0 < end {
        let slot = tile % ring.len();
        let (base, lead, n) = ring[slot];
        let nr = lead + n;
        queue(&mut ring[slot]);
        b.rows[..lead * hdp].fill(0.0);
        for (&base, row) in base[..n].iter().zip(b.rows[lead * hdp..].chunks_exact_mut(hdp)) {
            // SAFETY: the function's contract.
            unsafe { load_row::<S, T, NC>(&job.k[base..base + hd], row) };
        }
        // SAFETY: `rows` holds TILE rows of hdp and `kt` hdp * TILE elements; hdp is a
        // multiple of LANES. Rows past `nr` are stale but finite; their scores are masked.
        unsafe { S::transpose16(b.rows.as_ptr(), hdp, hdp, b.kt.as_mut_ptr()) };
        // SAFETY: `q` holds `rows` rows of hdp, `s` rows of TILE.
        unsafe { scores::<S>(b.q.as_ptr(), rows, hd, hdp, b.kt.as_ptr(), b.s.as_mut_ptr()) };
        for i in 0..rows {
            let (r0, r1) = ranges[i / g];
            let (r0, r1) = (r0.clamp(p0, p0 + nr) - p0, r1.clamp(p0, p0 + nr) - p0);
            let (m, l) = parts[(i / g) * pl..].split_at_mut(g);
            // SAFETY: `s` holds rows * TILE elements.
            b.alpha[i] = unsafe { softmax_step::<S>(&job.params, &mut b.s[i * TILE..(i + 1) * TILE], r0, r1, &mut m[i % g], &mut l[i % g]) };
        }
        b.rows[..lead * hdp].fill(0.0);
        for (&base, row) in base[..n].iter().zip(b.rows[lead * hdp..].chunks_exact_mut(hdp)) {
            // SAFETY: the function's contract.
            unsafe { load_row::<S, T, NC>(&job.v[base..base + hd], row) };
        }
        // Rows past the data have zero weight; zeroed so that no stale infinity makes a NaN.
        b.rows[nr * hdp..].fill(0.0);
        let mut i = 0;
        while i < rows {
            let n = (rows - i).min(pv_block::<S, NC>());
            let accs: [usize; 8] = std::array::from_fn(|k| acc_of(i + k.min(n - 1)));
            // SAFETY: each accumulator holds hdp elements inside `parts`; `s` and `alpha` hold
            // `rows` rows; `rows` TILE value rows of hdp.
            unsafe { accumulate::<S, NC>(parts.as_mut_ptr(), &accs[..n], &b.alpha[i..i + n], b.s.as_ptr().add(i * TILE), b.rows.as_ptr(), hdp) };
            i += n;
        }
        p0 += nr;
        tile += 1;
    }
}

/// Query rows whose accumulators [`accumulate`] keeps in registers at once.
#[inline(always)]
fn pv_block<S: Simd, const NC: usize>() -> usize {
    let registers = if S::LANES == 16 { 28 } else { 12 };
    (registers - NC.min(registers)).checked_div(NC).unwrap_or(1).clamp(1, 8)
}

/// `s[i][r] = q[i] · kt[·][r]` for the tile's 16 keys and `rows` query rows (`hdp` apart): per
/// row two chains of FMAs (even and odd elements), added at the end; blocks of up to 8 rows
/// share each loaded K vector.
#[inline(always)]
unsafe fn scores<S: Simd>(q: *const f32, rows: usize, hd: usize, hdp: usize, kt: *const f32, s: *mut f32) {
    let mut i = 0;
    while i < rows {
        let n = (rows - i).min(if S::LANES == 16 { 8 } else { 4 });
        // SAFETY: forwarded; rows i..i + n exist.
        unsafe {
            let (q, s) = (q.add(i * hdp), s.add(i * TILE));
            match n {
                8 => score_block::<S, 8>(q, hd, hdp, kt, s),
                7 => score_block::<S, 7>(q, hd, hdp, kt, s),
                6 => score_block::<S, 6>(q, hd, hdp, kt, s),
                5 => score_block::<S, 5>(q, hd, hdp, kt, s),
                4 => score_block::<S, 4>(q, hd, hdp, kt, s),
                3 => score_block::<S, 3>(q, hd, hdp, kt, s),
                2 => score_block::<S, 2>(q, hd, hdp, kt, s),
                _ => score_block::<S, 1>(q, hd, hdp, kt, s),
            }
        }
        i += n;
    }
}

/// [`scores`] for `N` rows, accumulators in registers. An odd `hd` reads one padding element
/// (zero in both the query and the keys).
#[inline(always)]
unsafe fn score_block<S: Simd, const N: usize>(q: *const f32, hd: usize, hdp: usize, kt: *const f32, s: *mut f32) {
    let tv = TILE / S::LANES;
    // [row][chain][vector of keys]
    let mut acc = [[[S::splat(0.0); 2]; 2]; N];
    let mut d = 0;
    while d < hd {
        let mut k = [[S::splat(0.0); 2]; 2];
        for (c, k) in k.iter_mut().enumerate() {
            for (v, k) in k.iter_mut().enumerate().take(tv) {
                *k = S::load(kt.add((d + c) * TILE + v * S::LANES));
            }
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            for (c, (acc, k)) in acc.iter_mut().zip(&k).enumerate() {
                let qd = S::splat(*q.add(r * hdp + d + c));
                for (a, k) in acc.iter_mut().zip(k).take(tv) {
                    *a = S::fma(qd, *k, *a);
                }
            }
        }
        d += 2;
    }
    for (r, [even, odd]) in acc.iter().enumerate() {
        for (v, (e, o)) in even.iter().zip(odd).enumerate().take(tv) {
            S::store(s.add(r * TILE + v * S::LANES), S::add(*e, *o));
        }
    }
}

/// One query row's softmax step over the tile: its scores `s` (raw `q·k`) scaled (and capped),
/// keys outside `r0..r1` masked; then `M' = max(M, max s)`, `s = e^(s − M')` in place (the
/// weights), `S = S · e^(M − M') + Σ weights`, and the accumulator's factor `e^(M − M')` is
/// returned. A row with no key here gets zero weights and factor 1.
#[inline(always)]
unsafe fn softmax_step<S: Simd>(p: &AttentionParams, s: &mut [f32], r0: usize, r1: usize, m: &mut f32, l: &mut f32) -> f32 {
    if r0 >= r1 {
        s.fill(0.0);
        return 1.0;
    }
    if p.softcap > 0.0 {
        s.iter_mut().for_each(|x| *x = p.apply(*x));
    }
    s[..r0].fill(f32::NEG_INFINITY);
    s[r1..].fill(f32::NEG_INFINITY);
    let tv = TILE / S::LANES;
    let scale = S::splat(if p.softcap > 0.0 { 1.0 } else { p.scale });
    let mut v = [S::splat(0.0); 2];
    for (k, v) in v.iter_mut().enumerate().take(tv) {
        *v = S::mul(S::load(s.as_ptr().add(k * S::LANES)), scale);
    }
    let top = if tv == 2 { S::max(v[0], v[1]) } else { v[0] };
    let new_max = m.max(S::reduce_max(top));
    // e^0 is exactly 1: the common case (no new maximum) skips the scalar exp.
    let factor = if new_max == *m { 1.0 } else { exp_diff(*m, new_max) };
    let shift = S::splat(new_max);
    let mut sum = S::splat(0.0);
    for (k, v) in v.iter().enumerate().take(tv) {
        let w = S::expf_ggml(S::sub(*v, shift));
        S::store(s.as_mut_ptr().add(k * S::LANES), w);
        sum = S::add(sum, w);
    }
    *l = l.mul_add(factor, S::reduce_add(sum));
    *m = new_max;
    factor
}

/// For each query row `i` of the block: its accumulator (at `parts + accs[i]`, hdp long)
/// times `alpha[i]` (where not 1), then plus `Σ_r w[i][r] · v[r]` over the tile's 16 value
/// rows in order (`w` rows TILE apart, `v` rows hdp apart). The block's accumulators stay in
/// registers and share each loaded value vector.
#[inline(always)]
unsafe fn accumulate<S: Simd, const NC: usize>(parts: *mut f32, accs: &[usize], alpha: &[f32], w: *const f32, v: *const f32, hdp: usize) {
    // SAFETY: forwarded.
    unsafe {
        if NC == 0 || NC > 8 {
            return accumulate_wide::<S>(parts, accs, alpha, w, v, hdp);
        }
        match accs.len() {
            8 => accumulate_block::<S, NC, 8>(parts, accs, alpha, w, v, hdp),
            7 => accumulate_block::<S, NC, 7>(parts, accs, alpha, w, v, hdp),
            6 => accumulate_block::<S, NC, 6>(parts, accs, alpha, w, v, hdp),
            5 => accumulate_block::<S, NC, 5>(parts, accs, alpha, w, v, hdp),
            4 => accumulate_block::<S, NC, 4>(parts, accs, alpha, w, v, hdp),
            3 => accumulate_block::<S, NC, 3>(parts, accs, alpha, w, v, hdp),
            2 => accumulate_block::<S, NC, 2>(parts, accs, alpha, w, v, hdp),
            _ => accumulate_block::<S, NC, 1>(parts, accs, alpha, w, v, hdp),
        }
    }
}

/// [`accumulate`] for `N` rows of `NC` (1..=8) vectors.
#[inline(always)]
unsafe fn accumulate_block<S: Simd, const NC: usize, const N: usize>(parts: *mut f32, accs: &[usize], alpha: &[f32], w: *const f32, v: *const f32, hdp: usize) {
    let lanes = S::LANES;
    let mut x = [[S::splat(0.0); 8]; N];
    for (i, x) in x.iter_mut().enumerate() {
        let a = parts.add(accs[i]);
        for (c, x) in x.iter_mut().enumerate().take(NC) {
            *x = S::load(a.add(c * lanes));
            if alpha[i] != 1.0 {
                *x = S::mul(*x, S::splat(alpha[i]));
            }
        }
    }
    for r in 0..TILE {
        let mut row = [S::splat(0.0); 8];
        for (c, y) in row.iter_mut().enumerate().take(NC) {
            *y = S::load(v.add(r * hdp + c * lanes));
        }
        for (i, x) in x.iter_mut().enumerate() {
            let wi = S::splat(*w.add(i * TILE + r));
            for (x, y) in x.iter_mut().zip(&row).take(NC) {
                *x = S::fma(*y, wi, *x);
            }
        }
    }
    for (i, x) in x.iter().enumerate() {
        let a = parts.add(accs[i]);
        for (c, x) in x.iter().enumerate().take(NC) {
            S::store(a.add(c * lanes), *x);
        }
    }
}

/// [`accumulate`] for rows of any width: one row and one vector at a time, the same operations
/// in the same order.
#[inline(always)]
unsafe fn accumulate_wide<S: Simd>(parts: *mut f32, accs: &[usize], alpha: &[f32], w: *const f32, v: *const f32, hdp: usize) {
    let lanes = S::LANES;
    for (i, &a) in accs.iter().enumerate() {
        let a = parts.add(a);
        for c in 0..hdp / lanes {
            let mut x = S::load(a.add(c * lanes));
            if alpha[i] != 1.0 {
                x = S::mul(x, S::splat(alpha[i]));
            }
            for r in 0..TILE {
                x = S::fma(S::load(v.add(r * hdp + c * lanes)), S::splat(*w.add(i * TILE + r)), x);
            }
            S::store(a.add(c * lanes), x);
        }
    }
}

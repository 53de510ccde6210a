//! `Backend::sample` on the CPU: the twin that *defines* device sampling (the rules are on
//! `rill_backend::DeviceSampling`). The CUDA kernel (`kernels/sample.cu`) runs the same steps
//! with one 1024-thread block per row, and this file reproduces that block's arithmetic order:
//!
//! - **sums** (`block_sum`): element `i` goes to partial `i % 1024`, each partial adds its
//!   elements in index order from `+0.0`; each 32-partial warp is folded by the xor butterfly of
//!   `warp_sum` (offsets 16, 8, 4, 2, 1), and the 32 warp results by the same butterfly;
//! - **the draw's running sum** (`draw`): tiles of 1024 tokens; inside a tile an inclusive
//!   Hillis–Steele scan per warp (offsets 1, 2, 4, 8, 16), the same scan over the 32 warp totals,
//!   `prefix = carry + (warp_offset + in_warp)`, and `carry += tile_total` after each tile;
//! - **thresholds** (the k-th largest weight, the top-p cut) by bisection on the `f32` bit pattern
//!   of the weights (non-negative floats order like their bits), 31 steps from `[0, +inf)`.
//!
//! All in `f32`, so the kernel's decisions equal these bit for bit except where its `expf` and
//! the host's `exp` differ by an ulp (a near-tie). Not used for serving on the CPU
//! (`samples_on_device` is false there: the host sampler does more); it is the oracle for the
//! kernel and lets the forward pass's device-sampling path run in CPU tests.

use rill_backend::{BackendError, BackendResult, DeviceSampling};

/// Threads of the kernel's block, whose reduction order the sums here follow.
pub(crate) const THREADS: usize = 1024;
const WARP: usize = 32;
const WARPS: usize = THREADS / WARP;
/// Exclusive upper end of every bisection: `+inf`'s bits (every weight is finite).
const INF_BITS: u32 = 0x7F80_0000;

/// Samples `rows` rows of `logits: [rows, vocab]` into `out[..rows]`.
pub(crate) fn sample_rows(logits: &[f32], rows: usize, vocab: usize, params: &[DeviceSampling], out: &mut [u32]) -> BackendResult<()> {
    crate::check_len("sample", "logits", logits.len(), rows * vocab)?;
    crate::check_len("sample", "params", params.len(), rows)?;
    crate::check_len("sample", "out", out.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    if vocab == 0 || vocab > i32::MAX as usize {
        return Err(BackendError::Shape { op: "sample", detail: format!("vocab {vocab} (must be in 1..=2^31-1)") });
    }
    let mut weights = Vec::new();
    for ((row, p), o) in logits.chunks_exact(vocab).zip(params).zip(out.iter_mut()).take(rows) {
        *o = sample_row(row, p, &mut weights);
    }
    Ok(())
}

fn clean(x: f32) -> f32 {
    if x.is_nan() {
        f32::NEG_INFINITY
    } else {
        x
    }
}

/// One row; `w` is scratch for the weights (the kernel recomputes them instead).
pub(crate) fn sample_row(l: &[f32], p: &DeviceSampling, w: &mut Vec<f32>) -> u32 {
    let vocab = l.len();
    let m = l.iter().copied().map(clean).fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return 0;
    }
    if p.is_greedy() {
        return l.iter().position(|&x| clean(x) == m).unwrap_or(0) as u32;
    }
    let inv_t = 1.0 / p.temperature;
    w.clear();
    w.extend(l.iter().map(|&x| {
        let x = clean(x);
        if m == f32::INFINITY {
            if x == f32::INFINITY {
                1.0
            } else {
                0.0
            }
        } else if x == f32::NEG_INFINITY {
            0.0
        } else {
            ((x - m) * inv_t).exp()
        }
    }));
    let w = &w[..];
    let bits = |i: usize| w[i].to_bits();

    // Top-k: the largest bit pattern with at least k weights at or above it is the k-th largest.
    let mut t = 0u32;
    let k = p.top_k as usize;
    if k > 1 && k < vocab {
        let (mut lo, mut hi) = (0u32, INF_BITS);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let count = (0..vocab).filter(|&i| bits(i) >= mid).count();
            if count >= k {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t = lo;
    }
    let mass = |t: u32| block_sum(vocab, |i| if bits(i) >= t { w[i] } else { 0.0 });
    let mut total = mass(t);
    // Top-p: the largest cut whose kept mass is positive and reaches top_p of top-k's.
    if p.top_p < 1.0 {
        let goal = p.top_p * total;
        let (mut lo, mut hi) = (t, INF_BITS);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let s = mass(mid);
            if s > 0.0 && s >= goal {
                lo = mid;
                total = s;
            } else {
                hi = mid;
            }
        }
        t = lo;
    }
    let u = if p.uniform.is_nan() { 0.0 } else { p.uniform.clamp(0.0, f32::from_bits(0x3F7F_FFFF)) };
    draw(w, t, u * total)
}

/// The first kept token (weight positive, bits `>= t`) in index order whose running sum exceeds
/// `target`, the sum taken as the kernel's tiled block scan takes it; else the last kept token.
fn draw(w: &[f32], t: u32, target: f32) -> u32 {
    let kept = |i: usize| i < w.len() && w[i] > 0.0 && w[i].to_bits() >= t;
    let (mut carry, mut last) = (0.0f32, 0usize);
    for base in (0..w.len()).step_by(THREADS) {
        let mut x = [0.0f32; THREADS];
        for (j, x) in x.iter_mut().enumerate() {
            if kept(base + j) {
                *x = w[base + j];
            }
        }
        for lanes in x.chunks_exact_mut(WARP) {
            warp_inclusive_scan(lanes);
        }
        let mut totals = [0.0f32; WARPS];
        for (tot, lanes) in totals.iter_mut().zip(x.chunks_exact(WARP)) {
            *tot = lanes[WARP - 1];
        }
        warp_inclusive_scan(&mut totals);
        for (j, &xj) in x.iter().enumerate() {
            let i = base + j;
            if !kept(i) {
                continue;
            }
            let warp = j / WARP;
            let offset = if warp == 0 { 0.0 } else { totals[warp - 1] };
            if carry + (offset + xj) > target {
                return i as u32;
            }
            last = i;
        }
        carry += totals[WARPS - 1];
    }
    last as u32
}

/// `__shfl_up_sync` scan: at offset `o`, lane `l >= o` adds lane `l - o`'s value of the step before.
fn warp_inclusive_scan(lanes: &mut [f32]) {
    let mut o = 1;
    while o < WARP {
        for l in (o..WARP).rev() {
            lanes[l] += lanes[l - o];
        }
        o *= 2;
    }
}

/// `warp_sum` of common.cuh: at offset `o`, every lane adds lane `l ^ o`'s value; lane 0's result.
fn warp_butterfly(lanes: &[f32; WARP]) -> f32 {
    let mut v = *lanes;
    for o in [16, 8, 4, 2, 1] {
        let before = v;
        for (l, x) in v.iter_mut().enumerate() {
            *x = before[l] + before[l ^ o];
        }
    }
    v[0]
}

/// `Σ f(i)` over `0..n` in the kernel's block-reduction order (see the module docs).
fn block_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut partial = [0.0f32; THREADS];
    for i in 0..n {
        partial[i % THREADS] += f(i);
    }
    let mut warps = [0.0f32; WARP];
    for (wv, lanes) in warps.iter_mut().zip(partial.chunks_exact(WARP)) {
        *wv = warp_butterfly(lanes.try_into().expect("32 lanes"));
    }
    warp_butterfly(&warps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: u32, top_p: f32, uniform: f32) -> DeviceSampling {
        DeviceSampling { temperature, top_k, top_p, uniform }
    }

    fn one(l: &[f32], p: DeviceSampling) -> u32 {
        sample_row(l, &p, &mut Vec::new())
    }

    /// Logits whose weights at temperature 1 are exactly `probs` / max(probs).
    fn logits_of(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn greedy_is_the_first_maximum() {
        let l = [0.5, 2.0, -1.0, 2.0, 1.0];
        for p in [DeviceSampling::GREEDY, params(-1.0, 0, 1.0, 0.9), params(f32::NAN, 0, 0.5, 0.9), params(1e-45, 0, 1.0, 0.5)] {
            assert!(p.is_greedy(), "{p:?}");
            assert_eq!(one(&l, p), 1, "{p:?}");
        }
        // top_k = 1 is greedy whatever the temperature and uniform, ties included.
        for u in [0.0, 0.3, 0.99] {
            assert_eq!(one(&l, params(2.0, 1, 1.0, u)), 1);
            assert_eq!(one(&l, params(2.0, 1, 0.2, u)), 1);
        }
        // A tie past the first tile of 1024, and a maximum alone at the very end.
        let mut long = vec![0.0f32; 3000];
        long[2047] = 5.0;
        long[2999] = 5.0;
        assert_eq!(one(&long, DeviceSampling::GREEDY), 2047);
        long[2047] = 0.0;
        assert_eq!(one(&long, DeviceSampling::GREEDY), 2999);
    }

    #[test]
    fn greedy_matches_a_plain_argmax_on_random_rows() {
        let mut s = 12345u64;
        for len in [1, 7, 1024, 1025, 5000] {
            let l: Vec<f32> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 40) % 64) as f32 // many ties
                })
                .collect();
            let want = l.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0;
            assert_eq!(one(&l, DeviceSampling::GREEDY), want as u32, "len {len}");
        }
    }

    #[test]
    fn uniforms_map_to_tokens_in_index_order() {
        // Weights 0.1, 0.4, 0.2, 0.25, 0.05 (of the max 0.4: 0.25, 1, 0.5, 0.625, 0.125).
        let l = logits_of(&[0.1, 0.4, 0.2, 0.25, 0.05]);
        let at = |k: u32, p: f32, u: f32| one(&l, params(1.0, k, p, u));
        // No truncation: cumulative 0.1, 0.5, 0.7, 0.95, 1.0.
        for (u, want) in [(0.0, 0), (0.09, 0), (0.11, 1), (0.49, 1), (0.51, 2), (0.69, 2), (0.71, 3), (0.94, 3), (0.96, 4), (0.999, 4)] {
            assert_eq!(at(0, 1.0, u), want, "u {u}");
        }
        // Top-k 2 keeps tokens 1 and 3 (0.4, 0.25 of 0.65): cumulative 0.4/0.65, 1.
        for (u, want) in [(0.0, 1), (0.6, 1), (0.62, 3), (0.99, 3)] {
            assert_eq!(at(2, 1.0, u), want, "top-k 2, u {u}");
        }
        // Top-k 3 keeps 1, 2, 3: 0.4, 0.6, 0.85 of 0.85.
        for (u, want) in [(0.4, 1), (0.48, 2), (0.7, 2), (0.71, 3)] {
            assert_eq!(at(3, 1.0, u), want, "top-k 3, u {u}");
        }
        // Top-p 0.6: 0.4 < 0.6, 0.4 + 0.25 >= 0.6 → tokens 1 and 3 again.
        for (u, want) in [(0.0, 1), (0.6, 1), (0.62, 3), (0.99, 3)] {
            assert_eq!(at(0, 0.6, u), want, "top-p 0.6, u {u}");
        }
        // Top-p 0.3 keeps only token 1; top-p 0 too (the most likely token always stays).
        for u in [0.0, 0.5, 0.99] {
            assert_eq!(at(0, 0.3, u), 1);
            assert_eq!(at(0, 0.0, u), 1);
            assert_eq!(at(0, -1.0, u), 1);
        }
        // Top-k 3 then top-p 0.75 of its 0.85 (0.6375): 0.4 + 0.25 reaches it → 1 and 3.
        assert_eq!(at(3, 0.75, 0.3), 1);
        assert_eq!(at(3, 0.75, 0.7), 3);
        // Off: top_p >= 1 or NaN, top_k >= vocab.
        assert_eq!(at(5, 1.5, 0.96), 4);
        assert_eq!(at(99, f32::NAN, 0.96), 4);
        // Uniforms out of range are clamped.
        assert_eq!(at(0, 1.0, -3.0), 0);
        assert_eq!(at(0, 1.0, 7.0), 4);
        assert_eq!(at(0, 1.0, f32::NAN), 0);
    }

    #[test]
    fn top_k_keeps_every_token_tied_with_the_kth() {
        // Weights 1, 0.5, 0.5, 0.25: top-k 2 keeps 0, 1 and 2 (cumulative 0.5, 0.75, 1.0).
        let l = logits_of(&[1.0, 0.5, 0.5, 0.25]);
        let picks: Vec<u32> = [0.1, 0.6, 0.9, 0.999].iter().map(|&u| one(&l, params(1.0, 2, 1.0, u))).collect();
        assert_eq!(picks, vec![0, 1, 2, 2]);
        // Top-p whose cut lands in a tie keeps the whole tie: 0.55 of 2.25 needs 1 + 0.5 → both 0.5s.
        let picks: Vec<u32> = [0.1, 0.6, 0.9].iter().map(|&u| one(&l, params(1.0, 0, 0.55, u))).collect();
        assert_eq!(picks, vec![0, 1, 2]);
    }

    #[test]
    fn nan_and_infinities() {
        // NaN counts as -inf: never drawn, never the argmax.
        let l = [f32::NAN, 1.0, f32::NAN, 0.0];
        assert_eq!(one(&l, DeviceSampling::GREEDY), 1);
        for i in 0..100 {
            let t = one(&l, params(1.0, 0, 1.0, i as f32 / 100.0));
            assert!(t == 1 || t == 3, "{t}");
        }
        // -inf is never drawn either.
        let l = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
        for i in 0..100 {
            let t = one(&l, params(0.7, 0, 1.0, i as f32 / 100.0));
            assert!(t == 1 || t == 3, "{t}");
        }
        // Nothing possible: token 0, greedy or not.
        let dead = [f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY];
        assert_eq!(one(&dead, DeviceSampling::GREEDY), 0);
        assert_eq!(one(&dead, params(1.0, 2, 0.5, 0.7)), 0);
        // +inf logits share all the mass.
        let inf = [0.0, f32::INFINITY, 3.0, f32::INFINITY];
        assert_eq!(one(&inf, DeviceSampling::GREEDY), 1);
        assert_eq!(one(&inf, params(1.0, 0, 1.0, 0.2)), 1);
        assert_eq!(one(&inf, params(1.0, 0, 1.0, 0.7)), 3);
        // An infinite temperature is uniform over the possible tokens.
        let l = [5.0, f32::NEG_INFINITY, -5.0, 0.0];
        let picks: Vec<u32> = [0.1, 0.4, 0.9].iter().map(|&u| one(&l, params(f32::INFINITY, 0, 1.0, u))).collect();
        assert_eq!(picks, vec![0, 2, 3]);
    }

    #[test]
    fn temperature_scales_the_logits() {
        // Logits 0 and ln 3: at T = 1 weights 1/3, 1 (token 0 holds 0.25); at T = 0.5 1/9, 1
        // (0.1); at T = 2 1/sqrt 3, 1 (0.366).
        let l = [0.0, 3f32.ln()];
        for (t, edge) in [(1.0, 0.25), (0.5, 0.1), (2.0, 0.366_025_4)] {
            assert_eq!(one(&l, params(t, 0, 1.0, edge - 1e-3)), 0, "T {t}");
            assert_eq!(one(&l, params(t, 0, 1.0, edge + 1e-3)), 1, "T {t}");
        }
    }

    #[test]
    fn draws_follow_the_distribution() {
        let logits = [1.0f32, 3.0, 2.5, 0.0, -1.0, 2.0];
        let mut s = 99u64;
        for (t, k, p) in [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.3, 4, 1.0), (1.0, 0, 0.8)] {
            // The expected distribution, in f64.
            let e: Vec<f64> = logits.iter().map(|&l| ((l as f64 - 3.0) / t as f64).exp()).collect();
            let mut order: Vec<usize> = (0..e.len()).collect();
            order.sort_by(|&a, &b| e[b].total_cmp(&e[a]));
            let mut keep = vec![k == 0; e.len()];
            order.iter().take(k as usize).for_each(|&i| keep[i] = true);
            let kept_mass: f64 = (0..e.len()).filter(|&i| keep[i]).map(|i| e[i]).sum();
            let mut acc = 0.0;
            for &i in &order {
                if keep[i] && acc >= p as f64 * kept_mass {
                    keep[i] = false;
                }
                if keep[i] {
                    acc += e[i];
                }
            }
            let total: f64 = (0..e.len()).filter(|&i| keep[i]).map(|i| e[i]).sum();
            let n = 20_000;
            let mut counts = [0usize; 6];
            for _ in 0..n {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                counts[one(&logits, params(t, k, p, u)) as usize] += 1;
            }
            for i in 0..6 {
                let want = if keep[i] { e[i] / total } else { 0.0 };
                let got = counts[i] as f64 / n as f64;
                assert!((got - want).abs() < 0.02, "T {t} k {k} p {p}: token {i} drawn {got:.4}, expected {want:.4}");
            }
        }
    }

    #[test]
    fn block_sum_and_scan_follow_the_kernel_order() {
        // Exact on integers; and a sum of 3000 ones is 3000 in any order.
        assert_eq!(block_sum(3000, |_| 1.0), 3000.0);
        assert_eq!(block_sum(0, |_| 1.0), 0.0);
        // The butterfly and the scan add what they should.
        let lanes: [f32; 32] = std::array::from_fn(|i| i as f32);
        assert_eq!(warp_butterfly(&lanes), 496.0);
        let mut scan = lanes;
        warp_inclusive_scan(&mut scan);
        assert!(scan.iter().enumerate().all(|(i, &v)| v == (i * (i + 1) / 2) as f32));
        // Over tiles: equal weights pick token floor(u * n).
        let w = vec![1.0f32; 2500];
        for (u, want) in [(0.0, 0), (0.5, 1250), (0.9999, 2499)] {
            assert_eq!(draw(&w, 0, u * 2500.0), want);
        }
    }

    #[test]
    fn rows_are_independent_and_shapes_are_checked() {
        let logits = [0.0, 1.0, 2.0, 2.0, 1.0, 0.0];
        let ps = [DeviceSampling::GREEDY, DeviceSampling::GREEDY];
        let mut out = [9u32; 3];
        sample_rows(&logits, 2, 3, &ps, &mut out).unwrap();
        assert_eq!(out, [2, 0, 9]);
        assert!(sample_rows(&logits, 3, 3, &ps, &mut out).is_err());
        assert!(sample_rows(&logits, 2, 3, &ps[..1], &mut out).is_err());
        assert!(sample_rows(&logits, 1, 0, &ps, &mut out).is_err());
        assert!(sample_rows(&logits, 0, 0, &[], &mut []).is_ok());
    }
}

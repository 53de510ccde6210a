//! The rule on hand-made rows, and the fast thresholds against a literal transcription of the
//! kernel's bisections.

use super::*;

fn params(temperature: f32, top_k: u32, top_p: f32, uniform: f32) -> DrawParams {
    DrawParams { temperature, top_k, top_p, min_p: 0.0, uniform }
}

fn one(l: &[f32], p: DrawParams) -> u32 {
    draw_token(l, &p, &mut DrawScratch::default())
}

/// Logits whose weights at temperature 1 are exactly `probs` / max(probs).
fn logits_of(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

#[test]
fn greedy_is_the_first_maximum() {
    let l = [0.5, 2.0, -1.0, 2.0, 1.0];
    for p in [DrawParams::GREEDY, params(-1.0, 0, 1.0, 0.9), params(f32::NAN, 0, 0.5, 0.9), params(1e-45, 0, 1.0, 0.5)] {
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
    assert_eq!(one(&long, DrawParams::GREEDY), 2047);
    long[2047] = 0.0;
    assert_eq!(one(&long, DrawParams::GREEDY), 2999);
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
        assert_eq!(one(&l, DrawParams::GREEDY), want as u32, "len {len}");
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
    assert_eq!(one(&l, DrawParams::GREEDY), 1);
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
    assert_eq!(one(&dead, DrawParams::GREEDY), 0);
    assert_eq!(one(&dead, params(1.0, 2, 0.5, 0.7)), 0);
    // +inf logits share all the mass.
    let inf = [0.0, f32::INFINITY, 3.0, f32::INFINITY];
    assert_eq!(one(&inf, DrawParams::GREEDY), 1);
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
fn min_p_keeps_tokens_within_a_fraction_of_the_top() {
    // Weights 0.25, 1, 0.5, 0.625, 0.125 of the max: min-p 0.55 keeps tokens 1 and 3.
    let l = logits_of(&[0.1, 0.4, 0.2, 0.25, 0.05]);
    let at = |min_p: f32, top_p: f32, u: f32| one(&l, DrawParams { min_p, top_p, ..params(1.0, 0, 1.0, u) });
    // Kept mass 1.625: token 1 up to 1/1.625 = 0.615.
    for (u, want) in [(0.0, 1), (0.6, 1), (0.63, 3), (0.99, 3)] {
        assert_eq!(at(0.55, 1.0, u), want, "u {u}");
    }
    // After top-p: top-p 0.8 keeps 1, 3, 2 (mass 2.125 of 2.5); min-p 0.55 then drops token 2.
    assert_eq!(at(0.55, 0.8, 0.99), 3);
    assert_eq!(at(0.55, 0.8, 0.7), 3);
    assert_eq!(at(0.0, 0.8, 0.5), 2);
    assert_eq!(at(0.0, 0.8, 0.99), 3);
    // Min-p 1 (or more) keeps only the most likely; NaN and <= 0 are off.
    for u in [0.0, 0.5, 0.99] {
        assert_eq!(at(1.0, 1.0, u), 1);
        assert_eq!(at(7.0, 1.0, u), 1);
    }
    assert_eq!(at(f32::NAN, 1.0, 0.999), 4);
    assert_eq!(at(-0.5, 1.0, 0.999), 4);
}

/// The rule as the kernel runs it: both thresholds by a 31-step bisection on the weights' bits,
/// every sum over the whole row.
fn kernel_transcription(l: &[f32], p: &DrawParams) -> u32 {
    let vocab = l.len();
    let m = match decided(l, p) {
        Ok(token) => return token,
        Err(max) => max,
    };
    let inv_t = 1.0 / p.temperature;
    let w: Vec<f32> = l
        .iter()
        .map(|&x| {
            let x = clean(x);
            match (m == f32::INFINITY, x) {
                (true, x) => f32::from(u8::from(x == f32::INFINITY)),
                (false, f32::NEG_INFINITY) => 0.0,
                (false, x) => ((x - m) * inv_t).exp(),
            }
        })
        .collect();
    let mass = |t: u32| block_sum(vocab, |i| if w[i].to_bits() >= t { w[i] } else { 0.0 });
    let mut t = 0u32;
    let k = p.top_k as usize;
    if k > 1 && k < vocab {
        let (mut lo, mut hi) = (0u32, INF_BITS);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if w.iter().filter(|x| x.to_bits() >= mid).count() >= k {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        t = lo;
    }
    let mut total = mass(t);
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
    if p.min_p_bits() > t {
        t = p.min_p_bits();
        total = mass(t);
    }
    block_order::draw(&w, t, p.clamped_uniform() * total)
}

#[test]
fn fast_thresholds_equal_the_kernels_bisections() {
    let mut s = 2024u64;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut scratch = DrawScratch::default();
    let settings = [(1.0, 0, 1.0, 0.0), (0.8, 40, 1.0, 0.0), (1.2, 0, 0.9, 0.0), (0.7, 50, 0.95, 0.05), (1.0, 0, 0.5, 0.1), (1.5, 3, 0.3, 0.0), (1.0, 0, 0.999, 0.0), (2.0, 1000, 0.8, 0.0), (1.0, 0, 1.0, 0.2)];
    for case in 0..400 {
        let vocab = [7, 300, 1024, 1500, 5000][case % 5];
        let spread = 2.0 + 30.0 * next();
        let mut l: Vec<f32> = (0..vocab).map(|_| spread * (next() - 0.5)).collect();
        if case % 4 == 1 {
            // Many ties: logits on a coarse grid.
            l.iter_mut().for_each(|x| *x = (*x * 0.5).round());
        }
        if case % 7 == 3 {
            for i in (0..vocab).step_by(5) {
                l[i] = f32::NEG_INFINITY;
            }
        }
        let (temperature, top_k, top_p, min_p) = settings[case % settings.len()];
        let p = DrawParams { temperature, top_k, top_p, min_p, uniform: next() };
        assert_eq!(draw_token(&l, &p, &mut scratch), kernel_transcription(&l, &p), "case {case}: {p:?}, vocab {vocab}");
    }
}

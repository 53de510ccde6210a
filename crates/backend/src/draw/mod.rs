//! The one truncate-and-draw rule: how a row of logits and one uniform become a token. Every
//! path that samples uses it — the host `Sampler` after its logits processors, the CPU's
//! `Backend::sample`, and the CUDA kernel (`kernels/sample.cu`), which reproduces this file's
//! arithmetic order — so a seeded request gets the same tokens whichever path serves it (with
//! or without `logprobs`, on the device or the host).
//!
//! For one row `l[0..vocab]`:
//!
//! 1. **Cleaning.** A NaN logit counts as `-inf`. `m` is the largest logit; with `m == -inf`
//!    (nothing possible) the token is 0.
//! 2. **Greedy** when `temperature` is not `> 0` (zero, negative or NaN), when `1 / temperature`
//!    is not finite, or when `top_k == 1`: the lowest index `i` with `l[i] == m`.
//! 3. **Weights**, in `f32`: `w[i] = exp((l[i] - m) * (1 / temperature))`, `w[i] = 0` for
//!    `l[i] == -inf` (when `m == +inf`: `w[i] = 1` for `l[i] == +inf`, else 0). So `w` lies in
//!    `[0, 1]` and the most likely token has `w == 1`.
//! 4. **Top-k** (when `1 < top_k < vocab`): `t_k` is the `top_k`-th largest `w` (counting
//!    repeats); every token with `w >= t_k` stays, so tokens tied with the k-th all stay.
//!    Otherwise `t_k = 0`. `S_k = Σ_{w[i] >= t_k} w[i]`.
//! 5. **Top-p** (when `top_p < 1`; NaN and `>= 1` are off): `t_p` is the largest value `t >= t_k`
//!    with `Σ_{w[i] >= t} w[i]` positive and `>= top_p * S_k` (each sum and the product in
//!    `f32`), so the most likely tokens are kept down to the first that brings their mass to
//!    `top_p` of what top-k kept, ties at `t_p` all kept. `top_p <= 0` keeps only the most
//!    likely token(s). Otherwise `t_p = t_k`.
//! 6. **Min-p** (when `0 < min_p`; NaN is off, above 1 counts as 1): `t = max(t_p, min_p)` — a
//!    token stays only if its weight is at least `min_p` of the most likely one's (which is 1).
//! 7. **Draw.** Kept tokens are those with `w[i] > 0` and `w[i] >= t`; `S` is their mass,
//!    `target = u * S` with `u = uniform` clamped to `[0, 1)` (NaN: 0). Walking the kept tokens
//!    in **index order** with a running sum `P`, the token is the first whose `P > target`, or
//!    the last kept one when rounding leaves none.
//!
//! Sums are `f32`, accumulated in a fixed order that mirrors a 1024-thread block reduction and a
//! 1024-wide tiled prefix scan (`block_order.rs`), so a GPU kernel reproduces them bit for bit;
//! only `exp` may differ by an ulp between backends, which changes a decision only at a near-tie.
//! Walking in index order (not by probability) is what lets the draw be a prefix scan instead of
//! a sort. The kernel finds thresholds by bisection on the weights' bit patterns (non-negative
//! floats order like their bits); here the same thresholds are found with a selection and a
//! bisection over the few candidate weights only, which gives the same values (each threshold is
//! the unique largest bit pattern meeting its condition) in far fewer passes over the row.

mod block_order;
#[cfg(test)]
mod tests;

use block_order::{block_sum, BlockSum};

/// Parameters of the rule for one row (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawParams {
    /// Softmax temperature; not `> 0` means greedy.
    pub temperature: f32,
    /// Keep the `top_k` largest weights (ties kept); 0 (or `>= vocab`) is off, 1 is greedy.
    pub top_k: u32,
    /// Nucleus mass as a fraction of what top-k kept; `>= 1` (or NaN) is off.
    pub top_p: f32,
    /// Keep tokens whose weight is at least this fraction of the most likely one's; `<= 0` (or
    /// NaN) is off.
    pub min_p: f32,
    /// One draw in `[0, 1)` from the sequence's own seeded generator.
    pub uniform: f32,
}

/// The largest `f32` below 1: uniforms are clamped to it.
pub const BELOW_ONE: f32 = f32::from_bits(0x3F7F_FFFF);
/// Exclusive upper end of every threshold: `+inf`'s bits (every weight is finite).
const INF_BITS: u32 = 0x7F80_0000;

impl DrawParams {
    /// Argmax.
    pub const GREEDY: DrawParams = DrawParams { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, uniform: 0.0 };

    /// Whether this row takes the argmax (rule 2).
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0 || !(1.0 / self.temperature).is_finite() || self.top_k == 1
    }

    /// The uniform as rule 7 uses it.
    fn clamped_uniform(&self) -> f32 {
        if self.uniform.is_nan() {
            0.0
        } else {
            self.uniform.clamp(0.0, BELOW_ONE)
        }
    }

    /// Rule 6's threshold bits; 0 when min-p is off.
    fn min_p_bits(&self) -> u32 {
        if self.min_p > 0.0 {
            self.min_p.min(1.0).to_bits()
        } else {
            0
        }
    }
}

/// Buffers [`draw_token`] reuses across calls (sized once to the vocabulary).
#[derive(Debug, Default)]
pub struct DrawScratch {
    /// `[vocab]` weights.
    weights: Vec<f32>,
    /// Weight bits, for selecting the top-k threshold.
    bits: Vec<u32>,
    /// `(index, weight)` of the weights at or above a known lower bound of the threshold, in
    /// index order: the top-p bisection sums only these.
    candidates: Vec<(u32, f32)>,
}

fn clean(x: f32) -> f32 {
    if x.is_nan() {
        f32::NEG_INFINITY
    } else {
        x
    }
}

/// `Ok(token)` where the rule needs no draw (a row of -inf/NaN: token 0; greedy: the first
/// largest logit), else `Err(max)`, the largest logit the draw's weights are relative to.
fn decided(logits: &[f32], p: &DrawParams) -> Result<u32, f32> {
    let m = logits.iter().copied().map(clean).fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return Ok(0);
    }
    if p.is_greedy() {
        return Ok(logits.iter().position(|&x| clean(x) == m).unwrap_or(0) as u32);
    }
    Err(m)
}

/// The token the rule chooses from `logits` (one row).
pub fn draw_token(logits: &[f32], p: &DrawParams, scratch: &mut DrawScratch) -> u32 {
    let vocab = logits.len();
    let m = match decided(logits, p) {
        Ok(token) => return token,
        Err(max) => max,
    };
    let inv_t = 1.0 / p.temperature;
    let w = &mut scratch.weights;
    w.clear();
    w.extend(logits.iter().map(|&x| {
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
    let w = &scratch.weights[..];

    let mut t = 0u32;
    let k = p.top_k as usize;
    if k > 1 && k < vocab {
        t = kth_largest_bits(w, k, &mut scratch.bits);
    }
    let mut total = kept_mass(w, t);
    if p.top_p < 1.0 {
        (t, total) = top_p_cut(w, t, total, p.top_p, &mut scratch.candidates);
    }
    let min_p = p.min_p_bits();
    if min_p > t {
        t = min_p;
        total = kept_mass(w, t);
    }
    block_order::draw(w, t, p.clamped_uniform() * total)
}

/// The mass of the weights whose bits are at least `t`, in the kernel's order (its `kept_mass`).
fn kept_mass(w: &[f32], t: u32) -> f32 {
    block_sum(w.len(), |i| if w[i].to_bits() >= t { w[i] } else { 0.0 })
}

/// The `k`-th largest weight's bits: the largest bit pattern with at least `k` weights at or
/// above it, which is what the kernel's bisection converges to.
fn kth_largest_bits(w: &[f32], k: usize, bits: &mut Vec<u32>) -> u32 {
    bits.clear();
    bits.extend(w.iter().map(|x| x.to_bits()));
    let (_, kth, _) = bits.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
    *kth
}

/// Rule 5: the largest cut `>= t` whose kept mass is positive and reaches `top_p` of `total`,
/// with that mass. The predicate only gets harder as the cut rises, so the answer is the one
/// largest bit pattern meeting it. The kernel bisects from `t`; here a floor below which the
/// nucleus cannot end is checked exactly once, and the bisection then sums only the candidates
/// above it (weights below a cut add exact zeros to the block sums, so skipping them changes no
/// bit).
fn top_p_cut(w: &[f32], t: u32, total: f32, top_p: f32, candidates: &mut Vec<(u32, f32)>) -> (u32, f32) {
    let goal = top_p * total;
    let meets = |s: f32| s > 0.0 && s >= goal;
    // Tokens below `floor` hold at most half of the (1 - p) share of the mass together.
    let floor = ((0.5 * (1.0 - f64::from(top_p).clamp(0.0, 1.0)) * f64::from(total) / w.len() as f64) as f32).to_bits();
    let (mut lo, mut total_at_lo) = (t, total);
    if floor > t {
        let at_floor = kept_mass(w, floor);
        if meets(at_floor) {
            (lo, total_at_lo) = (floor, at_floor);
        }
    }
    candidates.clear();
    candidates.extend(w.iter().enumerate().filter(|(_, x)| x.to_bits() >= lo).map(|(i, &x)| (i as u32, x)));
    let mut sums = BlockSum::default();
    let mut mass = |cut: u32| {
        sums.clear();
        for &(i, x) in candidates.iter() {
            if x.to_bits() >= cut {
                sums.add(i as usize, x);
            }
        }
        sums.total()
    };
    let mut hi = INF_BITS;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let s = mass(mid);
        if meets(s) {
            lo = mid;
            total_at_lo = s;
        } else {
            hi = mid;
        }
    }
    (lo, total_at_lo)
}

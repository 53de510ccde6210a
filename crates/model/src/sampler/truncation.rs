//! Top-k, top-p and min-p over one row of (unnormalized) probabilities, then the draw.
//!
//! Candidates are `u64` sort keys (probability bits, then token id) in a buffer the sampler
//! reuses, so selecting and sorting compare plain integers instead of looking probabilities up.
//! Top-k selects with `select_nth_unstable` instead of sorting the vocabulary. Top-p first drops
//! every token below `(1 - p) / vocab` of the mass (all of them together cannot reach the
//! nucleus' edge), then sorts only as long a prefix as it needs, in doubling chunks, since a
//! few hundred tokens usually hold the mass. Ties go to the lower token id, so every step is a
//! total order and the result is deterministic.

/// First sorted chunk when top-p needs the most likely tokens in order.
const FIRST_SORTED_CHUNK: usize = 64;

/// The filters of one request, already normalized by the sampler.
#[derive(Debug, Clone, Copy)]
pub(super) struct Truncation {
    /// Keep this many most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the most likely tokens until their mass reaches this fraction; 1 or more keeps all.
    pub top_p: f32,
    /// Drop tokens below this fraction of the most likely one's probability; 0 keeps all.
    pub min_p: f32,
}

/// Ascending keys put the more likely token first, and the lower id first among equals
/// (non-negative floats' bit patterns order like their values).
fn key(prob: f32, token: usize) -> u64 {
    (u64::from(!prob.to_bits()) << 32) | token as u64
}

fn token(key: u64) -> u32 {
    key as u32
}

fn prob(key: u64) -> f32 {
    f32::from_bits(!((key >> 32) as u32))
}

/// Draws a token from `probs` (`[vocab]`, non-negative, not normalized, at least one positive)
/// restricted by `filters`, with `u` uniform in `[0, 1)`. `keys` is scratch, reused across calls.
pub(super) fn sample(probs: &[f32], keys: &mut Vec<u64>, filters: Truncation, u: f64) -> u32 {
    let vocab = probs.len();
    let top_k = if filters.top_k == 0 { vocab } else { filters.top_k.min(vocab) };
    let (top_p, min_p) = (filters.top_p, filters.min_p);
    if top_k == vocab && top_p >= 1.0 {
        // No candidate list needed: scan the row, skipping what min-p drops.
        let threshold = if min_p > 0.0 { min_p * max(probs.iter().copied()) } else { 0.0 };
        return draw(probs, (0..vocab as u32).filter(|&t| probs[t as usize] >= threshold), u);
    }

    keys.clear();
    let mass: f64;
    if top_k < vocab {
        keys.extend(probs.iter().enumerate().map(|(t, &p)| key(p, t)));
        keys.select_nth_unstable(top_k - 1);
        keys.truncate(top_k);
        mass = keys.iter().map(|&k| prob(k) as f64).sum();
    } else {
        // Top-p over the whole row. Tokens below `floor` hold less than (1 - p) of the mass
        // together, so the nucleus ends before them; min-p would drop those below its own
        // threshold after top-p anyway.
        let (sum, most) = probs.iter().fold((0.0f64, 0.0f32), |(s, m), &p| (s + p as f64, m.max(p)));
        mass = sum;
        let floor = ((0.5 * (1.0 - top_p as f64) * mass / vocab as f64) as f32).max(min_p * most).min(most);
        keys.extend(probs.iter().enumerate().filter(|&(_, &p)| p >= floor).map(|(t, &p)| key(p, t)));
    }
    let mut kept = keys.len();
    if top_p < 1.0 {
        let target = top_p as f64 * mass;
        let (mut sorted, mut cumulative, mut n) = (0, 0.0, 0);
        while n < kept {
            if n == sorted {
                sorted = extend_sorted(keys, sorted);
            }
            cumulative += prob(keys[n]) as f64;
            n += 1;
            if cumulative >= target {
                break;
            }
        }
        kept = n.max(1);
    }
    if min_p > 0.0 {
        let candidates = &mut keys[..kept];
        let threshold = min_p * max(candidates.iter().map(|&k| prob(k)));
        let mut n = 0;
        for i in 0..candidates.len() {
            if prob(candidates[i]) >= threshold {
                candidates.swap(n, i);
                n += 1;
            }
        }
        kept = n.max(1);
    }
    draw(probs, keys[..kept].iter().map(|&k| token(k)), u)
}

/// Sorts the next chunk of `keys[sorted..]` into place (every key there sorts after
/// `keys[..sorted]`); returns the new sorted length.
fn extend_sorted(keys: &mut [u64], sorted: usize) -> usize {
    let len = keys.len();
    let end = (sorted + sorted.max(FIRST_SORTED_CHUNK)).min(len);
    let rest = &mut keys[sorted..];
    if end < len {
        rest.select_nth_unstable(end - sorted - 1);
    }
    rest[..end - sorted].sort_unstable();
    end
}

fn max(probs: impl Iterator<Item = f32>) -> f32 {
    probs.fold(0.0, f32::max)
}

/// Inverse-CDF draw over `candidates` in their order.
fn draw(probs: &[f32], candidates: impl Iterator<Item = u32> + Clone, u: f64) -> u32 {
    let total: f64 = candidates.clone().map(|t| probs[t as usize] as f64).sum();
    let mut target = u * total;
    let mut last = None;
    for t in candidates {
        let p = probs[t as usize] as f64;
        if p > 0.0 {
            if target < p {
                return t;
            }
            last = Some(t);
        }
        target -= p;
    }
    // Rounding left the target past the end: take the last token with any mass.
    last.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Truncation = Truncation { top_k: 0, top_p: 1.0, min_p: 0.0 };

    /// Tokens that some `u` in a fine grid can draw.
    fn support(probs: &[f32], filters: Truncation) -> Vec<u32> {
        let mut keys = Vec::new();
        let mut seen: Vec<u32> = (0..1000).map(|i| sample(probs, &mut keys, filters, i as f64 / 1000.0)).collect();
        seen.sort_unstable();
        seen.dedup();
        seen
    }

    #[test]
    fn draw_is_the_inverse_cdf() {
        let probs = [0.0, 1.0, 3.0, 0.0];
        let mut keys = Vec::new();
        assert_eq!(sample(&probs, &mut keys, ALL, 0.0), 1);
        assert_eq!(sample(&probs, &mut keys, ALL, 0.24), 1);
        assert_eq!(sample(&probs, &mut keys, ALL, 0.26), 2);
        assert_eq!(sample(&probs, &mut keys, ALL, 0.999_999), 2);
        // Past the end by rounding: the last token with mass, never a zero-probability one.
        assert_eq!(sample(&probs, &mut keys, ALL, 1.0), 2);
    }

    #[test]
    fn top_k_keeps_the_k_most_likely_and_breaks_ties_by_id() {
        let probs = [0.1, 0.5, 0.2, 0.5, 0.3];
        assert_eq!(support(&probs, Truncation { top_k: 2, ..ALL }), vec![1, 3]);
        assert_eq!(support(&probs, Truncation { top_k: 1, ..ALL }), vec![1]);
        assert_eq!(support(&probs, Truncation { top_k: 3, ..ALL }), vec![1, 3, 4]);
        assert_eq!(support(&probs, Truncation { top_k: 99, ..ALL }), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        let probs = [0.1, 0.4, 0.2, 0.3];
        assert_eq!(support(&probs, Truncation { top_p: 0.35, ..ALL }), vec![1]);
        assert_eq!(support(&probs, Truncation { top_p: 0.55, ..ALL }), vec![1, 3]);
        assert_eq!(support(&probs, Truncation { top_p: 0.85, ..ALL }), vec![1, 2, 3]);
        assert_eq!(support(&probs, Truncation { top_p: 0.0, ..ALL }), vec![1]);
        // After top-k, p is a fraction of the kept mass (0.7 here, so 0.55 of it is 0.385).
        assert_eq!(support(&probs, Truncation { top_k: 2, top_p: 0.55, ..ALL }), vec![1]);
    }

    #[test]
    fn top_p_over_a_large_flat_vocabulary_sorts_beyond_the_first_chunk() {
        // 1000 equal tokens: p = 0.5 keeps exactly the 500 lowest ids (ties by id).
        let probs = vec![1.0; 1000];
        let mut keys = Vec::new();
        let kept: Vec<u32> = (0..2000).map(|i| sample(&probs, &mut keys, Truncation { top_p: 0.5, ..ALL }, i as f64 / 2000.0)).collect();
        assert_eq!(kept.iter().copied().max(), Some(499));
        assert_eq!(kept.iter().copied().min(), Some(0));
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_top() {
        let probs = [0.05, 0.5, 0.2, 0.25];
        assert_eq!(support(&probs, Truncation { min_p: 0.45, ..ALL }), vec![1, 3]);
        assert_eq!(support(&probs, Truncation { min_p: 0.45, top_k: 3, ..ALL }), vec![1, 3]);
        assert_eq!(support(&probs, Truncation { min_p: 0.3, top_p: 0.99, ..ALL }), vec![1, 2, 3]);
        assert_eq!(support(&probs, Truncation { min_p: 1.0, ..ALL }), vec![1]);
    }
}

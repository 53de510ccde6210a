//! Log-probabilities of the model's raw distribution (`log_softmax` of the unmodified logits, as
//! OpenAI and vLLM's default "raw" mode report them). A NaN logit counts as
//! impossible (`-inf`); a `+inf` logit as the largest finite float, so nothing here panics or
//! returns NaN.

/// `log softmax(logits)[token]`; `-inf` for a token with no probability (or outside the row).
pub fn logprob(logits: &[f32], token: u32) -> f32 {
    let Some(&l) = logits.get(token as usize) else { return f32::NEG_INFINITY };
    finite_or_impossible(clean(l) - log_sum_exp(logits))
}

/// The `k` most likely tokens with their log-probabilities, most likely first (ties: lower id
/// first).
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    top_with(logits, k, log_sum_exp(logits))
}

/// `logprob(logits, token)` and `top_logprobs(logits, k)` with one pass for the normalizer.
pub(super) fn chosen_and_top(logits: &[f32], token: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let lse = log_sum_exp(logits);
    let chosen = logits.get(token as usize).map_or(f32::NEG_INFINITY, |&l| finite_or_impossible(clean(l) - lse));
    let top = if k == 0 { Vec::new() } else { top_with(logits, k, lse) };
    (chosen, top)
}

fn top_with(logits: &[f32], k: usize, lse: f32) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        let l = clean(l);
        if top.len() < k || l > top[top.len() - 1].1 {
            let at = top.partition_point(|&(_, v)| v >= l);
            top.insert(at, (i as u32, l));
            top.truncate(k);
        }
    }
    top.into_iter().map(|(i, l)| (i, finite_or_impossible(l - lse))).collect()
}

/// `ln Σ exp(logits)`, computed around the maximum.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().map(|&l| clean(l)).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f32::NEG_INFINITY;
    }
    max + logits.iter().map(|&l| (clean(l) - max).exp()).sum::<f32>().ln()
}

/// NaN → `-inf` (impossible), `+inf` → `f32::MAX` (certain, without `inf - inf`).
fn clean(l: f32) -> f32 {
    if l.is_nan() {
        f32::NEG_INFINITY
    } else {
        l.min(f32::MAX)
    }
}

/// Only a row with no possible token gives `-inf - -inf`; report that token as impossible.
fn finite_or_impossible(logprob: f32) -> f32 {
    if logprob.is_nan() {
        f32::NEG_INFINITY
    } else {
        logprob
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_softmax(logits: &[f32]) -> Vec<f64> {
        let total: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
        logits.iter().map(|&l| l as f64 - total.ln()).collect()
    }

    #[test]
    fn logprobs_are_log_softmax_and_top_is_sorted() {
        let logits = [0.0, 2.0, 1.0, 2.0f32.ln(), -3.0, 2.0];
        let exact = log_softmax(&logits);
        for (t, &e) in exact.iter().enumerate() {
            assert!((logprob(&logits, t as u32) as f64 - e).abs() < 1e-6, "token {t}");
        }
        let top = top_logprobs(&logits, 4);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 5, 2, 3]);
        for &(t, lp) in &top {
            assert!((lp as f64 - exact[t as usize]).abs() < 1e-6);
        }
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(top_logprobs(&logits, 0).is_empty());
        assert_eq!(top_logprobs(&logits, 10).len(), logits.len());
    }

    #[test]
    fn non_finite_logits_give_sane_logprobs() {
        let logits = [f32::NAN, 1.0, f32::NEG_INFINITY, 1.0];
        assert_eq!(logprob(&logits, 0), f32::NEG_INFINITY);
        assert_eq!(logprob(&logits, 2), f32::NEG_INFINITY);
        assert!((logprob(&logits, 1) - 0.5f32.ln()).abs() < 1e-6);
        let top = top_logprobs(&logits, 4);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 0, 2]);

        let inf = [1.0, f32::INFINITY, 0.0];
        assert_eq!(logprob(&inf, 1), 0.0);
        assert!(logprob(&inf, 0) < -1e30);

        let impossible = [f32::NAN, f32::NEG_INFINITY];
        assert_eq!(logprob(&impossible, 0), f32::NEG_INFINITY);
        assert!(top_logprobs(&impossible, 2).iter().all(|&(_, lp)| lp == f32::NEG_INFINITY));
    }
}

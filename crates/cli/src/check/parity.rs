//! End-to-end token parity between two runs of the same model: greedy tokens compared one by
//! one; where they first differ, each side's token must be among the other side's top
//! alternatives (vLLM's rule for near-ties), and comparison stops there.

use rill_engine::SampledToken;

/// How one prompt's two generations compare.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceParity {
    /// Tokens equal from the start.
    pub matched: usize,
    /// Tokens the shorter generation has.
    pub compared: usize,
    /// At the first difference (if any): both tokens in the other's top-k.
    pub near_tie: bool,
    /// Largest |Δ logprob| of the chosen token over the matched positions.
    pub max_logprob_diff: f32,
}

impl SequenceParity {
    pub fn passed(&self) -> bool {
        self.matched == self.compared || self.near_tie
    }
}

/// Compares `candidate` against `reference` (each with its top alternatives recorded).
pub fn compare(reference: &[SampledToken], candidate: &[SampledToken]) -> SequenceParity {
    let compared = reference.len().min(candidate.len());
    let matched = reference.iter().zip(candidate).take_while(|(r, c)| r.token == c.token).count();
    let max_logprob_diff = reference.iter().zip(candidate).take(matched).map(|(r, c)| (r.logprob.unwrap_or(f32::NAN) - c.logprob.unwrap_or(f32::NAN)).abs()).fold(0.0, f32::max);
    let near_tie = match (reference.get(matched), candidate.get(matched)) {
        (Some(r), Some(c)) if matched < compared => in_top(c.token, &r.top_logprobs) && in_top(r.token, &c.top_logprobs),
        _ => true,
    };
    SequenceParity { matched, compared, near_tie, max_logprob_diff }
}

fn in_top(id: u32, top: &[(u32, f32)]) -> bool {
    top.iter().any(|&(t, _)| t == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(id: u32, top: &[u32]) -> SampledToken {
        SampledToken { token: id, logprob: Some(-0.5 - id as f32 * 0.01), top_logprobs: top.iter().map(|&t| (t, -1.0)).collect() }
    }

    #[test]
    fn identical_sequences_match_fully() {
        let a = vec![tok(1, &[1, 2]), tok(3, &[3, 4])];
        let p = compare(&a, &a);
        assert_eq!((p.matched, p.compared, p.max_logprob_diff), (2, 2, 0.0));
        assert!(p.passed());
    }

    #[test]
    fn a_near_tie_passes_and_stops_the_comparison() {
        let r = vec![tok(1, &[1, 2]), tok(5, &[5, 6]), tok(9, &[9])];
        let c = vec![tok(1, &[1, 2]), tok(6, &[6, 5]), tok(7, &[7])];
        let p = compare(&r, &c);
        assert_eq!((p.matched, p.compared), (1, 3));
        assert!(p.near_tie && p.passed());
    }

    #[test]
    fn a_token_outside_the_other_top_k_fails() {
        let r = vec![tok(5, &[5, 6])];
        let c = vec![tok(8, &[8, 5])];
        assert!(!compare(&r, &c).passed());
        // One-sided membership is not enough either.
        let c = vec![tok(6, &[6, 7])];
        assert!(!compare(&r, &c).passed());
    }

    #[test]
    fn logprob_differences_count_only_matched_positions() {
        let r = vec![tok(1, &[1]), SampledToken { token: 2, logprob: Some(-3.0), top_logprobs: vec![(2, -3.0)] }];
        let mut c = r.clone();
        c[0].logprob = c[0].logprob.map(|l| l - 0.25);
        c[1].token = 4;
        let p = compare(&r, &c);
        assert_eq!(p.matched, 1);
        assert!((p.max_logprob_diff - 0.25).abs() < 1e-6);
    }
}

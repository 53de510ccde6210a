//! Speculative decoding by n-gram prompt lookup: a decoding sequence whose last few tokens
//! appeared earlier in it (in the prompt or its own output) proposes the tokens that followed
//! them there, and one forward pass scores its last token and every proposal together. No second
//! model runs.
//!
//! Verification (`ForwardBatch::verify`) samples the target's rows in order and keeps going only
//! while each sampled token equals the next proposal. For a proposal that is one token rather
//! than a distribution, that *is* the standard rejection rule: the draft token is accepted with
//! probability p(d), and on rejection the token sampled is distributed as p without d. Every
//! emitted token is one sample of the target with the sequence's own random stream, one draw per
//! emitted token as without speculation, and batch invariance makes the verifying rows' logits
//! the decode steps' logits: a seeded request's tokens are the same with speculation on or off.

/// How a model speculates; requests follow `default_on` unless they say otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeculationConfig {
    /// Requests that do not choose speculate (the model's `--speculation ngram`).
    pub default_on: bool,
    /// Most tokens proposed per step.
    pub num_tokens: usize,
    /// Shortest and longest suffix looked up (the longest match is tried first).
    pub min_ngram: usize,
    pub max_ngram: usize,
    /// Speculation steps aside when more sequences than this are running: with a full batch the
    /// step is compute-bound and verifying rejected proposals costs throughput.
    pub max_running: usize,
}

impl Default for SpeculationConfig {
    fn default() -> SpeculationConfig {
        SpeculationConfig { default_on: false, num_tokens: 5, min_ngram: 2, max_ngram: 4, max_running: 4 }
    }
}

/// Up to `max` tokens that followed the latest earlier occurrence of the longest suffix of
/// `tokens` (between `min_ngram` and `max_ngram` long) that occurred before; empty when none did.
pub fn propose_ngram<'t>(tokens: &'t [u32], cfg: &SpeculationConfig, max: usize) -> &'t [u32] {
    let len = tokens.len();
    if max == 0 {
        return &[];
    }
    for n in (cfg.min_ngram.max(1)..=cfg.max_ngram).rev() {
        if n >= len {
            continue;
        }
        let suffix = &tokens[len - n..];
        // The latest earlier start `i` (`i + n < len`: the occurrence is followed by something).
        if let Some(i) = (0..len - n).rev().find(|&i| &tokens[i..i + n] == suffix) {
            let follow = &tokens[i + n..];
            return &follow[..follow.len().min(max)];
        }
    }
    &[]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: usize, max: usize) -> SpeculationConfig {
        SpeculationConfig { min_ngram: min, max_ngram: max, ..SpeculationConfig::default() }
    }

    #[test]
    fn proposes_what_followed_the_latest_earlier_occurrence() {
        // "a b c d | x y | a b c" → after "a b c" came "d x y a b c"; capped at 3.
        let t = [1, 2, 3, 4, 9, 8, 1, 2, 3];
        assert_eq!(propose_ngram(&t, &cfg(2, 3), 3), &[4, 9, 8]);
        // The latest occurrence wins: "2 3" followed by 5 last time.
        let t = [2, 3, 4, 2, 3, 5, 7, 2, 3];
        assert_eq!(propose_ngram(&t, &cfg(2, 2), 2), &[5, 7]);
    }

    #[test]
    fn the_longest_suffix_is_tried_first() {
        // "3" alone last preceded 6, but the 2-gram "2 3" preceded 4.
        let t = [2, 3, 4, 0, 3, 6, 2, 3];
        assert_eq!(propose_ngram(&t, &cfg(1, 2), 1), &[4]);
        assert_eq!(propose_ngram(&t, &cfg(1, 1), 1), &[6]);
    }

    #[test]
    fn nothing_without_a_match_or_room() {
        assert!(propose_ngram(&[1, 2, 3, 4], &cfg(2, 4), 4).is_empty());
        assert!(propose_ngram(&[1, 2, 1, 2], &cfg(2, 4), 0).is_empty());
        assert!(propose_ngram(&[7], &cfg(1, 4), 4).is_empty());
        // A match at the very end has nothing after it but the suffix itself: "1 1 1".
        assert_eq!(propose_ngram(&[1, 1, 1], &cfg(2, 2), 4), &[1]);
    }
}

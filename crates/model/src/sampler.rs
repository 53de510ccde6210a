//! Choosing the next token from one row of logits. Seeded per request, so a request's tokens do
//! not depend on what else is in the batch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Temperatures at or below this are greedy.
pub const GREEDY_TEMPERATURE: f32 = 1e-5;

pub struct Sampler {
    temperature: f32,
    rng: ChaCha8Rng,
    /// Reused probability buffer (one per request, not per token).
    probs: Vec<f32>,
}

impl Sampler {
    pub fn new(temperature: f32, seed: u64) -> Sampler {
        Sampler { temperature, rng: ChaCha8Rng::seed_from_u64(seed), probs: Vec::new() }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= GREEDY_TEMPERATURE {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.probs.clear();
        self.probs.extend(logits.iter().map(|&l| ((l - max) / self.temperature).exp()));
        let total: f32 = self.probs.iter().sum();
        let mut target = self.rng.random::<f32>() * total;
        for (i, &p) in self.probs.iter().enumerate() {
            if target < p {
                return i as u32;
            }
            target -= p;
        }
        // Rounding left the target past the end: take the last token with any mass.
        self.probs.iter().rposition(|&p| p > 0.0).unwrap_or(0) as u32
    }
}

/// Index of the largest logit; the lowest index wins ties (as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `log softmax(logits)[token]`.
pub fn logprob(logits: &[f32], token: u32) -> f32 {
    logits[token as usize] - log_sum_exp(logits)
}

/// The `k` most likely tokens with their log-probabilities, most likely first.
pub fn top_logprobs(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let lse = log_sum_exp(logits);
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if top.len() < k || l > top[top.len() - 1].1 {
            let at = top.partition_point(|&(_, v)| v >= l);
            top.insert(at, (i as u32, l));
            top.truncate(k);
        }
    }
    top.into_iter().map(|(i, l)| (i, l - lse)).collect()
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(Sampler::new(0.0, 1).sample(&[0.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn top_logprobs_sorted_and_normalized() {
        let logits = [0.0, 2.0, 1.0, 2.0f32.ln()];
        let top = top_logprobs(&logits, 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        let total: f32 = logits.iter().map(|&l| l.exp()).sum();
        assert!((top[0].1 - (2f32.exp() / total).ln()).abs() < 1e-6);
        assert!((logprob(&logits, 0) - (1.0 / total).ln()).abs() < 1e-6);
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_the_distribution() {
        let logits = [0.0, 1.0, 2.0];
        let draw = |seed| {
            let mut s = Sampler::new(1.0, seed);
            (0..2000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let counts = draw(7).iter().fold([0usize; 3], |mut c, &t| {
            c[t as usize] += 1;
            c
        });
        // p = softmax([0,1,2]) = [0.090, 0.245, 0.665]
        assert!(counts[2] > 1200 && counts[2] < 1450, "{counts:?}");
        assert!(counts[0] > 120 && counts[0] < 250, "{counts:?}");
    }
}

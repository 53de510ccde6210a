//! The logits processors: what changes a row of logits before the one truncate-and-draw rule
//! (`rill_backend::draw`), in vLLM's order — `logit_bias`, then the penalties, then the
//! `min_tokens` mask, then the allowed-token mask. A processor that would change nothing this
//! step is inactive; a row whose processors are all inactive is drawn from the raw logits, which
//! is what lets it be drawn on the device.

use rill_engine::SamplingParams;

use super::penalties::Penalties;

pub(super) struct Processors {
    /// Added to the named tokens' logits (finite biases only).
    logit_bias: Vec<(u32, f32)>,
    penalties: Option<Penalties>,
    min_tokens: MinTokens,
    allowed: AllowedTokens,
}

impl Processors {
    /// `eos_token_ids` join the stop ids in the `min_tokens` mask unless `ignore_eos`.
    pub(super) fn new(params: &SamplingParams, prompt_tokens: &[u32], eos_token_ids: &[u32]) -> Processors {
        Processors {
            logit_bias: params.logit_bias.iter().copied().filter(|(_, b)| b.is_finite()).collect(),
            penalties: Penalties::new(params, prompt_tokens),
            min_tokens: MinTokens::new(params, eos_token_ids),
            allowed: AllowedTokens::default(),
        }
    }

    /// Whether any processor would change this step's logits.
    pub(super) fn is_active(&self) -> bool {
        !self.logit_bias.is_empty() || self.penalties.is_some() || self.min_tokens.is_active() || self.allowed.is_active()
    }

    /// Runs the chain over `logits` (`[vocab]`, NaN already made `-inf`).
    pub(super) fn apply(&mut self, logits: &mut [f32]) {
        for &(t, bias) in &self.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += bias;
            }
        }
        if let Some(penalties) = &mut self.penalties {
            penalties.reserve_vocab(logits.len());
            penalties.apply(logits);
        }
        self.min_tokens.apply(logits);
        self.allowed.apply(logits);
    }

    /// Counts the token chosen this step.
    pub(super) fn record(&mut self, token: u32) {
        if let Some(penalties) = &mut self.penalties {
            penalties.record(token);
        }
        self.min_tokens.record();
    }

    pub(super) fn allowed_mut(&mut self) -> &mut AllowedTokens {
        &mut self.allowed
    }
}

/// While fewer than `min_tokens` have been generated, the stop ids (and EOS unless
/// `ignore_eos`) cannot be drawn.
struct MinTokens {
    remaining: usize,
    suppressed: Vec<u32>,
}

impl MinTokens {
    fn new(params: &SamplingParams, eos_token_ids: &[u32]) -> MinTokens {
        let mut suppressed = Vec::new();
        if params.min_tokens > 0 {
            suppressed.extend_from_slice(&params.stop_token_ids);
            if !params.ignore_eos {
                suppressed.extend_from_slice(eos_token_ids);
            }
        }
        let remaining = if suppressed.is_empty() { 0 } else { params.min_tokens };
        MinTokens { remaining, suppressed }
    }

    fn is_active(&self) -> bool {
        self.remaining > 0
    }

    fn apply(&self, logits: &mut [f32]) {
        if self.is_active() {
            for &t in &self.suppressed {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    fn record(&mut self) {
        self.remaining = self.remaining.saturating_sub(1);
    }
}

/// A per-sequence set of the only tokens the next step may draw (what a grammar or a JSON
/// schema allows there); off until set.
#[derive(Default)]
pub struct AllowedTokens {
    /// One bit per token id; `None` allows every token.
    bits: Option<Vec<u64>>,
}

impl AllowedTokens {
    /// Allows only `tokens` from the next step on (until changed).
    pub fn allow_only(&mut self, tokens: &[u32]) {
        let bits = self.bits.get_or_insert_with(Vec::new);
        bits.iter_mut().for_each(|w| *w = 0);
        for &t in tokens {
            let word = t as usize / 64;
            if word >= bits.len() {
                bits.resize(word + 1, 0);
            }
            bits[word] |= 1 << (t % 64);
        }
    }

    /// Allows every token again.
    pub fn allow_all(&mut self) {
        self.bits = None;
    }

    fn is_active(&self) -> bool {
        self.bits.is_some()
    }

    fn apply(&self, logits: &mut [f32]) {
        let Some(bits) = &self.bits else { return };
        for (t, l) in logits.iter_mut().enumerate() {
            if bits.get(t / 64).is_none_or(|w| w & (1 << (t % 64)) == 0) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processors(params: &SamplingParams) -> Processors {
        Processors::new(params, &[], &[9])
    }

    #[test]
    fn inactive_unless_a_processor_would_change_the_row() {
        assert!(!processors(&SamplingParams::default()).is_active());
        // A min_tokens with nothing to mask (no stop ids, EOS ignored) changes nothing.
        assert!(!Processors::new(&SamplingParams { min_tokens: 3, ignore_eos: true, ..Default::default() }, &[], &[9]).is_active());
        assert!(!processors(&SamplingParams { logit_bias: vec![(1, f32::NAN)], ..Default::default() }).is_active());
        assert!(processors(&SamplingParams { logit_bias: vec![(1, -2.0)], ..Default::default() }).is_active());
        assert!(processors(&SamplingParams { presence_penalty: 0.5, ..Default::default() }).is_active());
    }

    #[test]
    fn min_tokens_masks_until_enough_tokens_were_recorded() {
        let mut p = processors(&SamplingParams { min_tokens: 2, stop_token_ids: vec![3], ..Default::default() });
        for step in 0..3 {
            let mut row = [0.0f32; 10];
            assert_eq!(p.is_active(), step < 2);
            p.apply(&mut row);
            let masked = step < 2;
            assert_eq!((row[3] == f32::NEG_INFINITY, row[9] == f32::NEG_INFINITY), (masked, masked), "step {step}");
            p.record(0);
        }
    }

    #[test]
    fn the_chain_runs_in_order_bias_then_mask() {
        // A bias on a token the allowed set excludes leaves it impossible.
        let mut p = processors(&SamplingParams { logit_bias: vec![(1, 50.0), (2, 1.0)], ..Default::default() });
        p.allowed_mut().allow_only(&[2, 70]);
        let mut row = vec![0.0f32; 80];
        p.apply(&mut row);
        assert_eq!(row[1], f32::NEG_INFINITY);
        assert_eq!((row[2], row[70]), (1.0, 0.0));
        assert_eq!(row.iter().filter(|l| l.is_finite()).count(), 2);
        // Narrowing again forgets the previous set; allow_all turns the mask off.
        p.allowed_mut().allow_only(&[5]);
        let mut row = vec![0.0f32; 80];
        p.apply(&mut row);
        assert_eq!(row.iter().position(|l| l.is_finite()), Some(5));
        p.allowed_mut().allow_all();
        p.logit_bias.clear();
        assert!(!p.is_active());
    }
}

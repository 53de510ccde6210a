//! Repetition, presence and frequency penalties (vLLM's definitions). The state is one `u32`
//! per vocabulary entry plus the list of distinct tokens seen, so applying the penalties touches
//! only those tokens and recording one allocates nothing. It exists only for requests that use a
//! penalty.

use rill_engine::SamplingParams;

/// Bit set in `state` for a token of the prompt.
const IN_PROMPT: u32 = 1 << 31;
/// The rest of `state`: times the token was generated.
const COUNT: u32 = IN_PROMPT - 1;

pub(super) struct Penalties {
    /// Divides positive and multiplies negative logits of prompt and output tokens; 1 is off.
    repetition: f32,
    presence: f32,
    frequency: f32,
    /// `[vocab]` `IN_PROMPT` | output count, per token id (grown once to the vocabulary).
    state: Vec<u32>,
    /// Distinct token ids with a non-zero `state`, in first-seen order.
    seen: Vec<u32>,
}

/// A finite penalty, or `off` (the sampler never panics on unvalidated parameters).
fn finite_or(value: f32, off: f32) -> f32 {
    if value.is_finite() {
        value
    } else {
        off
    }
}

impl Penalties {
    /// `None` when the request uses no penalty.
    pub(super) fn new(params: &SamplingParams, prompt_tokens: &[u32]) -> Option<Penalties> {
        let repetition = if params.repetition_penalty > 0.0 { finite_or(params.repetition_penalty, 1.0) } else { 1.0 };
        let presence = finite_or(params.presence_penalty, 0.0);
        let frequency = finite_or(params.frequency_penalty, 0.0);
        if repetition == 1.0 && presence == 0.0 && frequency == 0.0 {
            return None;
        }
        let mut penalties = Penalties { repetition, presence, frequency, state: Vec::new(), seen: Vec::new() };
        // Only the repetition penalty looks at the prompt.
        if repetition != 1.0 {
            let len = prompt_tokens.iter().map(|&t| t as usize + 1).max().unwrap_or(0);
            penalties.state.resize(len, 0);
            for &t in prompt_tokens {
                let state = &mut penalties.state[t as usize];
                if *state == 0 {
                    penalties.seen.push(t);
                }
                *state |= IN_PROMPT;
            }
        }
        Some(penalties)
    }

    /// Sizes the state for the vocabulary, so that `record` never grows it.
    pub(super) fn reserve_vocab(&mut self, vocab: usize) {
        if self.state.len() < vocab {
            self.state.resize(vocab, 0);
        }
    }

    /// Counts one generated token.
    pub(super) fn record(&mut self, token: u32) {
        let t = token as usize;
        if t >= self.state.len() {
            self.state.resize(t + 1, 0);
        }
        let state = &mut self.state[t];
        if *state == 0 {
            self.seen.push(token);
        }
        if *state & COUNT < COUNT {
            *state += 1;
        }
    }

    /// Applies the penalties to `logits` (`[vocab]`): repetition first, then frequency and presence.
    pub(super) fn apply(&self, logits: &mut [f32]) {
        for &t in &self.seen {
            let Some(l) = logits.get_mut(t as usize) else { continue };
            if self.repetition != 1.0 {
                *l = if *l > 0.0 { *l / self.repetition } else { *l * self.repetition };
            }
            let count = self.state[t as usize] & COUNT;
            if count > 0 {
                *l -= self.frequency * count as f32 + self.presence;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(repetition: f32, presence: f32, frequency: f32) -> SamplingParams {
        SamplingParams { repetition_penalty: repetition, presence_penalty: presence, frequency_penalty: frequency, ..Default::default() }
    }

    #[test]
    fn off_unless_a_penalty_is_set() {
        assert!(Penalties::new(&SamplingParams::default(), &[1, 2]).is_none());
        assert!(Penalties::new(&params(f32::NAN, 0.0, 0.0), &[1, 2]).is_none());
        assert!(Penalties::new(&params(1.0, 0.5, 0.0), &[]).is_some());
    }

    #[test]
    fn repetition_divides_positive_and_multiplies_negative_over_prompt_and_output() {
        let mut p = Penalties::new(&params(2.0, 0.0, 0.0), &[0, 1, 1]).unwrap();
        p.reserve_vocab(5);
        p.record(3);
        p.record(3);
        let mut logits = [4.0, -4.0, 4.0, -1.0, 1.0];
        p.apply(&mut logits);
        // Each seen token is penalized once, however often it appears.
        assert_eq!(logits, [2.0, -8.0, 4.0, -2.0, 1.0]);
    }

    #[test]
    fn presence_once_and_frequency_per_occurrence_over_output_only() {
        let mut p = Penalties::new(&params(1.0, 0.5, 0.25), &[0]).unwrap();
        p.reserve_vocab(4);
        for t in [1, 2, 2, 2] {
            p.record(t);
        }
        let mut logits = [1.0; 4];
        p.apply(&mut logits);
        assert_eq!(logits, [1.0, 1.0 - 0.25 - 0.5, 1.0 - 0.75 - 0.5, 1.0]);
    }

    #[test]
    fn tokens_outside_the_row_are_ignored() {
        let mut p = Penalties::new(&params(2.0, 1.0, 1.0), &[7]).unwrap();
        p.record(9);
        let mut logits = [1.0, 1.0];
        p.apply(&mut logits);
        assert_eq!(logits, [1.0, 1.0]);
    }
}

//! Reasoning spans: models that think before answering (Qwen3, DeepSeek-R1 and its distills,
//! SmolLM3) write `<think>…</think>` first. The chat API returns that span as
//! `reasoning_content` (streamed as its own deltas) and only the rest as `content`, as vLLM and
//! llama.cpp's server do. Markers may arrive split across deltas: text that may still be the start
//! of a marker is held back until the next delta decides it.

/// The markers of a model that thinks, found in its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasoningMarkers {
    pub open: String,
    pub close: String,
}

impl ReasoningMarkers {
    /// `<think>` / `</think>` when the vocabulary has both as tokens.
    pub fn of(has_token: impl Fn(&str) -> bool) -> Option<ReasoningMarkers> {
        (has_token("<think>") && has_token("</think>")).then(|| ReasoningMarkers { open: "<think>".into(), close: "</think>".into() })
    }
}

/// What one delta of text splits into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

/// One choice's text, split as it streams.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    markers: ReasoningMarkers,
    inside: bool,
    /// The answer has started: a later `<think>` is plain content.
    answered: bool,
    /// Just after `</think>`: the newlines models put there are not content.
    after_close: bool,
    held: String,
}

impl ReasoningSplitter {
    /// `starts_inside`: the prompt already opened the span (templates that end the generation
    /// prompt with `<think>\n`).
    pub fn new(markers: ReasoningMarkers, starts_inside: bool) -> ReasoningSplitter {
        ReasoningSplitter { markers, inside: starts_inside, answered: false, after_close: false, held: String::new() }
    }

    /// Splits the next delta; text that may begin a marker is kept for the next call.
    pub fn push(&mut self, text: &str) -> Split {
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(text);
        let mut out = Split::default();
        let mut rest = buf.as_str();
        loop {
            if self.inside {
                match rest.find(&self.markers.close) {
                    Some(i) => {
                        out.reasoning.push_str(&rest[..i]);
                        rest = &rest[i + self.markers.close.len()..];
                        (self.inside, self.answered, self.after_close) = (false, true, true);
                    }
                    None => {
                        let keep = partial_suffix(rest, &self.markers.close);
                        out.reasoning.push_str(&rest[..rest.len() - keep]);
                        self.held = rest[rest.len() - keep..].to_string();
                        return out;
                    }
                }
            } else {
                if self.after_close {
                    rest = rest.trim_start_matches(['\n', '\r']);
                    if rest.is_empty() {
                        return out;
                    }
                    self.after_close = false;
                }
                if self.answered {
                    out.content.push_str(rest);
                    return out;
                }
                // Before any answer text: only leading whitespace may precede an opening marker.
                let lead = rest.len() - rest.trim_start().len();
                let body = &rest[lead..];
                if let Some(after) = body.strip_prefix(self.markers.open.as_str()) {
                    rest = after;
                    self.inside = true;
                    continue;
                }
                if self.markers.open.starts_with(body) {
                    // Only whitespace and maybe the start of the marker so far: wait.
                    self.held = rest.to_string();
                    return out;
                }
                self.answered = true;
                out.content.push_str(rest);
                return out;
            }
        }
    }

    /// Whatever was held back, at the end of the choice.
    pub fn finish(&mut self) -> Split {
        let held = std::mem::take(&mut self.held);
        let mut out = Split::default();
        if self.inside {
            out.reasoning = held;
        } else if !(self.after_close && held.trim_start_matches(['\n', '\r']).is_empty()) {
            out.content = held;
        }
        out
    }
}

/// The length of the longest suffix of `s` that is a proper prefix of `marker` (at a char
/// boundary): what a streaming parser holds back (also `tool_calls`).
pub(crate) fn partial_suffix(s: &str, marker: &str) -> usize {
    (1..marker.len().min(s.len() + 1)).rev().find(|&k| s.is_char_boundary(s.len() - k) && marker.starts_with(&s[s.len() - k..])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers() -> ReasoningMarkers {
        ReasoningMarkers::of(|_| true).unwrap()
    }

    /// Whole and in every chunking (here: every split into 1..=4-byte pieces at char
    /// boundaries, by a seeded walk), the same reasoning and content.
    fn check(text: &str, starts_inside: bool, reasoning: &str, content: &str) {
        let mut whole = ReasoningSplitter::new(markers(), starts_inside);
        let (mut a, b) = (whole.push(text), whole.finish());
        a.reasoning.push_str(&b.reasoning);
        a.content.push_str(&b.content);
        assert_eq!((a.reasoning.as_str(), a.content.as_str()), (reasoning, content), "whole {text:?}");
        for seed in 0..50u64 {
            let mut s = ReasoningSplitter::new(markers(), starts_inside);
            let (mut r, mut c, mut i, mut state) = (String::new(), String::new(), 0, seed);
            while i < text.len() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut j = (i + 1 + (state >> 60) as usize % 4).min(text.len());
                while !text.is_char_boundary(j) {
                    j += 1;
                }
                let out = s.push(&text[i..j]);
                r.push_str(&out.reasoning);
                c.push_str(&out.content);
                i = j;
            }
            let out = s.finish();
            r.push_str(&out.reasoning);
            c.push_str(&out.content);
            assert_eq!((r.as_str(), c.as_str()), (reasoning, content), "seed {seed}, {text:?}");
        }
    }

    #[test]
    fn think_spans_become_reasoning_in_any_chunking() {
        // Qwen3: the model opens the span itself.
        check("<think>\nThe user asks 2+2.\n</think>\n\nIt is 4.", false, "\nThe user asks 2+2.\n", "It is 4.");
        // DeepSeek-R1 style: the prompt opened it.
        check("Hmm, 2+2 — four.</think>\n\nFour.", true, "Hmm, 2+2 — four.", "Four.");
        // No span at all, and text that only looks like a marker's start.
        check("Paris is the capital.", false, "", "Paris is the capital.");
        check("<thin ice>", false, "", "<thin ice>");
        // An answer that mentions the marker later keeps it as content.
        check("<think>a</think>Use <think> tags.", false, "a", "Use <think> tags.");
        // Cut off while thinking: all of it is reasoning.
        check("<think>still going <", false, "still going <", "");
        check("  <think>x</think>y", false, "x", "y");
    }
}

//! Stop strings over streamed text. Tokens rarely line up with a stop string, so text that could
//! still become one is held back until the next piece decides it; a stop string itself is never
//! returned, and nothing after it either.
//!
//! The result does not depend on how the text was chunked: the match that *ends* first wins (as
//! if the text arrived one character at a time), and among matches ending at the same place the
//! one starting first (so with stops `["bc", "c"]`, `"abc"` yields `"a"`). Everything is cut at
//! `char` boundaries; a stop string starts at one, so a held suffix does too.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopOutput {
    /// Text that is final: it cannot be part of a stop string.
    pub emit: String,
    /// A stop string was found: the choice is finished; `emit` is the text before it.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
pub struct StopMatcher {
    /// Non-empty stop strings (empty ones would match everywhere; validation rejects them).
    stops: Vec<String>,
    /// Text not yet emitted: the longest suffix seen that is a proper prefix of a stop string.
    held: String,
    stopped: bool,
    /// The stop string that ended the text (Anthropic's `stop_sequence`).
    matched: Option<usize>,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        StopMatcher { stops, held: String::new(), stopped: false, matched: None }
    }

    /// The stop string that was found, once one was.
    pub fn matched(&self) -> Option<&str> {
        self.matched.map(|i| self.stops[i].as_str())
    }

    /// Feeds the next piece of text; returns what can be shown now.
    pub fn push(&mut self, text: &str) -> StopOutput {
        if self.stopped {
            return StopOutput { emit: String::new(), stopped: true };
        }
        if self.stops.is_empty() {
            return StopOutput { emit: text.to_owned(), stopped: false };
        }
        self.held.push_str(text);
        if let Some((start, which)) = self.first_match() {
            self.stopped = true;
            self.matched = Some(which);
            self.held.truncate(start);
            return StopOutput { emit: std::mem::take(&mut self.held), stopped: true };
        }
        let keep_from = self.partial_start();
        let rest = self.held.split_off(keep_from);
        StopOutput { emit: std::mem::replace(&mut self.held, rest), stopped: false }
    }

    /// The generation ended without completing a stop string: releases the held text.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }

    /// Start and index of the complete stop string that ends first in `held` (ties: the one
    /// starting first).
    fn first_match(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|start| (start + s.len(), start, i)))
            .min()
            .map(|(_, start, i)| (start, i))
    }

    /// Start of the longest suffix of `held` that some stop string begins with
    /// (`held.len()` when there is none). `held` never contains a complete stop string here, so
    /// any such suffix is shorter than the longest stop.
    fn partial_start(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let from = self.held.len().saturating_sub(longest.saturating_sub(1));
        (from..self.held.len())
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Feeds `pieces`; returns (all emitted text including `finish`, stopped).
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = matcher(stops);
        let mut out = String::new();
        for p in pieces {
            let o = m.push(p);
            out.push_str(&o.emit);
            if o.stopped {
                assert_eq!(m.push("more text"), StopOutput { emit: String::new(), stopped: true });
                assert_eq!(m.finish(), "");
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn no_stops_is_passthrough_and_holds_nothing() {
        let mut m = matcher(&[]);
        assert_eq!(m.push("Hello"), StopOutput { emit: "Hello".into(), stopped: false });
        assert_eq!(m.push(" wor"), StopOutput { emit: " wor".into(), stopped: false });
        assert_eq!(m.finish(), "");
        // Empty stop strings are dropped rather than matching everywhere.
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_split_across_many_pushes() {
        let mut m = matcher(&["</answer>"]);
        assert_eq!(m.push("42 <").emit, "42 ");
        for piece in ["/", "ans", "w", "er"] {
            assert_eq!(m.push(piece), StopOutput { emit: String::new(), stopped: false });
        }
        assert_eq!(m.push("> trailing"), StopOutput { emit: String::new(), stopped: true });
        assert_eq!(m.push("x").emit, "");
    }

    #[test]
    fn partial_prefix_that_is_not_a_stop_is_released() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.push("a ST").emit, "a ");
        assert_eq!(m.push("O").emit, "");
        assert!(m.push("P!").stopped);
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.push("a ST").emit, "a ");
        assert_eq!(m.push("OW").emit, "STOW");
        assert_eq!(m.push("ST").emit, "");
        assert_eq!(m.finish(), "ST");
    }

    #[test]
    fn held_text_restarts_inside_a_failed_prefix() {
        // "aab" with stop "ab": the first "a" is released, the second starts the real match.
        assert_eq!(run(&["ab"], &["a", "a", "b"]), ("a".into(), true));
        assert_eq!(run(&["abab"], &["ab", "ab", "ab"]), ("".into(), true));
        assert_eq!(run(&["abac"], &["ab", "ab", "ac", "x"]), ("ab".into(), true));
    }

    #[test]
    fn overlapping_stops_first_to_end_wins() {
        assert_eq!(run(&["abcd", "c"], &["ab", "c", "d"]), ("ab".into(), true));
        assert_eq!(run(&["abcd", "c"], &["abcd"]), ("ab".into(), true));
        assert_eq!(run(&["bc", "c"], &["abc"]), ("a".into(), true));
        assert_eq!(run(&["c", "bc"], &["a", "b", "c"]), ("a".into(), true));
        assert_eq!(run(&["\n\n", "\nUser:"], &["Hi\n", "User:"]), ("Hi".into(), true));
        assert_eq!(run(&["\n\n", "\nUser:"], &["Hi\n", "\n"]), ("Hi".into(), true));
        assert_eq!(run(&["\n\n", "\nUser:"], &["Hi\n", "Us", "ing"]), ("Hi\nUsing".into(), false));
    }

    #[test]
    fn stop_at_the_very_start() {
        assert_eq!(run(&["###"], &["###", "rest"]), ("".into(), true));
        assert_eq!(run(&["###"], &["#", "#", "#"]), ("".into(), true));
    }

    #[test]
    fn multibyte_text_is_never_split() {
        // Stop shares its first byte (0xF0) with the emoji in the text but not the whole char.
        assert_eq!(run(&["😀!"], &["hi 😁", "😀", "?"]), ("hi 😁😀?".into(), false));
        let mut m = matcher(&["😀!"]);
        assert_eq!(m.push("héllo 😀").emit, "héllo ");
        assert!(m.push("!").stopped);
        assert_eq!(run(&["é"], &["caf", "é au lait"]), ("caf".into(), true));
        assert_eq!(run(&["🎉 done"], &["x🎉", " do", "g"]), ("x🎉 dog".into(), false));
    }

    #[test]
    fn output_does_not_depend_on_chunking() {
        let cases: [(&[&str], &str); 5] = [
            (&["abcd", "c"], "xxabcdyy"),
            (&["ab", "abab"], "aababab"),
            (&["😀!", "!"], "é😀😀!x"),
            (&["\n\nUser:", "\n\n\n"], "a\n\nUse\n\n\nr"),
            (&["never"], "nevenevernever"),
        ];
        for (stops, text) in cases {
            let expected = run(stops, &[text]);
            let chars: Vec<&str> = text.char_indices().map(|(i, c)| &text[i..i + c.len_utf8()]).collect();
            assert_eq!(run(stops, &chars), expected, "char by char: {text:?}");
            // Every split into two or three pieces at char boundaries.
            let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            for &a in &cuts {
                for &b in cuts.iter().filter(|&&b| b >= a) {
                    let pieces = [&text[..a], &text[a..b], &text[b..]];
                    assert_eq!(run(stops, &pieces), expected, "{pieces:?}");
                }
            }
        }
    }
}

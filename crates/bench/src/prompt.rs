//! Synthetic prompts: common English words drawn from a seeded generator, different for every
//! request of every level (so a prefix cache cannot make the benchmark trivial) and the same
//! on every run with the same seed (so two servers see the same text).

/// Short, common words: one token each in most vocabularies, so words ≈ tokens before
/// calibration.
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with", "his",
    "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were",
    "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if",
    "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
    "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
    "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down",
    "day", "did", "get", "come", "made", "may", "part", "over", "new", "sound", "take", "only", "little", "work",
    "know", "place", "year", "live", "me", "back", "give", "most", "very", "after", "thing", "our", "just", "name",
    "good", "man", "think", "say", "great", "where", "help", "through", "much", "before", "line", "right", "too",
    "mean", "old", "any", "same", "tell", "boy", "follow", "came", "want", "show", "also", "around", "form", "three",
    "small", "set", "put", "end", "does", "another", "well", "large", "must", "big", "even", "such", "because",
    "turn", "here", "why", "ask", "went", "men", "read", "need", "land", "different", "home", "us", "move", "try",
    "kind", "hand", "picture", "again", "change", "off", "play", "spell", "air", "away", "animal", "house", "point",
    "page", "letter", "mother", "answer", "found", "study", "still", "learn", "should", "world", "high", "every",
    "near", "add", "food", "between", "own", "below", "country", "plant", "last", "school", "father", "keep", "tree",
    "never", "start", "city", "earth", "eye", "light", "thought", "head", "under", "story", "saw", "left", "few",
    "while", "along", "might", "close", "something", "seem", "next", "hard", "open", "example", "begin", "life",
    "always", "those", "both", "paper", "together", "got", "group", "often", "run", "important", "until",
    "children", "side", "feet", "car", "mile", "night", "walk", "white", "sea", "began", "grow", "took", "river",
];

/// SplitMix64: small, fast, and good enough to pick words; the same on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The words of request `index` at level `level` (an endless stream: a prompt is its first n
/// words, so a longer prompt extends a shorter one).
pub struct PromptWords {
    rng: SplitMix64,
}

impl PromptWords {
    pub fn new(seed: u64, level: usize, index: usize) -> PromptWords {
        let state = mix(mix(seed ^ mix(level as u64 + 1)) ^ mix(index as u64 + 0x1234_5678));
        PromptWords { rng: SplitMix64(state) }
    }

    /// The first `n` words, joined by spaces, with a capital and a full stop now and then so the
    /// text looks like sentences rather than one run.
    pub fn text(seed: u64, level: usize, index: usize, n: usize) -> String {
        let mut words = PromptWords::new(seed, level, index);
        let mut out = String::with_capacity(n * 6);
        let mut sentence_left = 0;
        for i in 0..n {
            let word = words.next_word();
            if i > 0 {
                out.push(' ');
            }
            if sentence_left == 0 {
                sentence_left = 8 + (words.rng.next() % 12) as usize;
                let mut chars = word.chars();
                if let Some(c) = chars.next() {
                    out.extend(c.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push_str(word);
            }
            sentence_left -= 1;
            if sentence_left == 0 && i + 1 < n {
                out.push('.');
            }
        }
        out
    }

    fn next_word(&mut self) -> &'static str {
        WORDS[(self.rng.next() % WORDS.len() as u64) as usize]
    }
}

/// The next number of words to try when `words` words came to `tokens` tokens and `target`
/// tokens are wanted: scale by the observed words-per-token ratio, moving at least one word.
pub fn next_word_count(words: usize, tokens: usize, target: usize) -> usize {
    if tokens == target || tokens == 0 {
        return words.max(1);
    }
    let scaled = (words as f64 * target as f64 / tokens as f64).round() as usize;
    let moved = if tokens < target { scaled.max(words + 1) } else { scaled.min(words.saturating_sub(1)) };
    moved.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_deterministic_and_distinct() {
        let a = PromptWords::text(7, 0, 3, 50);
        assert_eq!(a, PromptWords::text(7, 0, 3, 50));
        assert_ne!(a, PromptWords::text(7, 0, 4, 50), "requests differ");
        assert_ne!(a, PromptWords::text(7, 1, 3, 50), "levels differ");
        assert_ne!(a, PromptWords::text(8, 0, 3, 50), "seeds differ");
        assert_eq!(a.split(' ').count(), 50);
        // The first word already differs between requests almost always: no shared prefix block.
        let firsts: std::collections::HashSet<String> = (0..64).map(|i| PromptWords::text(0, 0, i, 16)).collect();
        assert_eq!(firsts.len(), 64);
    }

    #[test]
    fn a_longer_prompt_extends_a_shorter_one_word_for_word() {
        let short = PromptWords::text(1, 2, 3, 20);
        let long = PromptWords::text(1, 2, 3, 40);
        let s: Vec<&str> = short.split(' ').collect();
        let l: Vec<&str> = long.split(' ').collect();
        for (a, b) in s.iter().zip(&l).take(19) {
            assert_eq!(a.trim_end_matches('.'), b.trim_end_matches('.'));
        }
    }

    #[test]
    fn word_counts_converge_towards_the_target() {
        assert_eq!(next_word_count(100, 100, 100), 100);
        assert_eq!(next_word_count(100, 120, 100), 83);
        assert_eq!(next_word_count(100, 99, 100), 101);
        assert_eq!(next_word_count(100, 101, 100), 99);
        assert_eq!(next_word_count(1, 3, 1), 1);
        assert_eq!(next_word_count(5, 0, 10), 5);
    }
}

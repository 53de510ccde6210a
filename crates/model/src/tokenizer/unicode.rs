//! Code point classes as llama.cpp's pre-tokenizer sees them (its own Unicode 15.1 tables).

use super::unicode_categories::{RANGES, WHITESPACE};

/// The general category classes llama.cpp's regexes distinguish (`\p{N}`, `\p{L}`, …); `O` is
/// everything else (controls, format, private use, unassigned, non-space separators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Category {
    N,
    L,
    P,
    M,
    S,
    O,
}

pub(super) fn category(c: char) -> Category {
    let cp = c as u32;
    let at = RANGES.partition_point(|&(start, _)| start <= cp);
    RANGES[at - 1].1
}

pub(super) fn is_whitespace(c: char) -> bool {
    WHITESPACE.binary_search(&(c as u32)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_llama_cpp_tables() {
        assert_eq!(category('a'), Category::L);
        assert_eq!(category('7'), Category::N);
        assert_eq!(category('!'), Category::P);
        assert_eq!(category('+'), Category::S);
        assert_eq!(category('\u{301}'), Category::M);
        assert_eq!(category('\u{200d}'), Category::O);
        assert_eq!(category('\u{2ebf0}'), Category::L, "CJK Ext. I is Unicode 15.1");
        assert_eq!(category('\u{1c89}'), Category::O, "assigned only in Unicode 16");
        assert_eq!(category(char::MAX), Category::O);
        assert!(is_whitespace('\u{3000}') && is_whitespace('\u{85}') && !is_whitespace('\u{200b}') && !is_whitespace('\u{1c}'));
    }
}

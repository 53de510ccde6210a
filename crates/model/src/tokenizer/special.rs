//! Splitting text on special tokens before the BPE model sees it.
//!
//! This reimplements llama.cpp's `tokenizer_st_partition` rather than registering the tokens
//! as `tokenizers` "added tokens", because the two disagree on overlaps: `tokenizers` takes the
//! leftmost-longest match, llama.cpp takes the longest token text first, everywhere, then the
//! next longest in the remaining text, and so on. Matching llama.cpp token-for-token needs its
//! order.

use super::attributes::Strip;
use super::vocab::TokenType;

/// A piece of the input: raw text still to be tokenized, or an already-decided token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// One token matched literally in text.
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// User-defined: matched even without `parse_special`.
    always: bool,
    strip: Strip,
}

/// The tokens that are matched literally in text, longest text first.
#[derive(Debug, Clone, Default)]
pub struct SpecialMatcher {
    tokens: Vec<Special>,
}

impl SpecialMatcher {
    /// Control, unknown and user-defined tokens are matched (as in llama.cpp); empty texts can
    /// never be found and are skipped. `strip` is by id (empty: no token strips).
    pub fn new(tokens: &[String], types: &[TokenType], strip: &[Strip]) -> SpecialMatcher {
        let mut list: Vec<Special> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (text, _))| !text.is_empty())
            .filter_map(|(id, (text, ty))| {
                let always = match ty {
                    TokenType::Control | TokenType::Unknown => false,
                    TokenType::UserDefined => true,
                    _ => return None,
                };
                Some(Special { text: text.clone(), id: id as u32, always, strip: strip.get(id).copied().unwrap_or_default() })
            })
            .collect();
        // Stable: equal lengths keep id order, so results are deterministic.
        list.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
        SpecialMatcher { tokens: list }
    }

    /// Splits `text` into fragments. With `parse_special == false` only user-defined tokens
    /// are matched, so user-supplied text cannot smuggle in control tokens.
    pub fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = if text.is_empty() { Vec::new() } else { vec![Fragment::Text(text)] };
        for special in &self.tokens {
            if !parse_special && !special.always {
                continue;
            }
            // Cheap reject: most specials never occur, and most texts contain none.
            if !text.contains(special.text.as_str()) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                match fragment {
                    Fragment::Text(raw) => split_on(raw, special, &mut next),
                    token => next.push(token),
                }
            }
            fragments = next;
        }
        fragments
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }
}

/// ASCII whitespace as C's `isspace`, which llama.cpp strips with.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn split_on<'t>(mut raw: &'t str, special: &Special, out: &mut Vec<Fragment<'t>>) {
    while let Some(at) = raw.find(special.text.as_str()) {
        let left = if special.strip.left { raw[..at].trim_end_matches(is_c_space) } else { &raw[..at] };
        if !left.is_empty() {
            out.push(Fragment::Text(left));
        }
        out.push(Fragment::Token(special.id));
        raw = &raw[at + special.text.len()..];
        if special.strip.right {
            raw = raw.trim_start_matches(is_c_space);
        }
    }
    if !raw.is_empty() {
        out.push(Fragment::Text(raw));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Fragment::{Text, Token};

    fn matcher() -> SpecialMatcher {
        let tokens = ["<|a|>", "<|ab|>", "x", "<u>", "plain"].map(String::from);
        let types = [
            TokenType::Control,
            TokenType::Control,
            TokenType::Normal,
            TokenType::UserDefined,
            TokenType::Normal,
        ];
        SpecialMatcher::new(&tokens, &types, &[])
    }

    #[test]
    fn splits_and_keeps_surrounding_text() {
        let m = matcher();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.partition("hi<|a|> there<|ab|><|a|>", true),
            vec![Text("hi"), Token(0), Text(" there"), Token(1), Token(0)]
        );
        assert_eq!(m.partition("", true), vec![]);
        assert_eq!(m.partition("plain text", true), vec![Text("plain text")]);
    }

    #[test]
    fn control_tokens_need_parse_special_but_user_defined_do_not() {
        let m = matcher();
        assert_eq!(m.partition("a<|a|>b<u>c", false), vec![Text("a<|a|>b"), Token(3), Text("c")]);
        assert_eq!(
            m.partition("a<|a|>b<u>c", true),
            vec![Text("a"), Token(0), Text("b"), Token(3), Text("c")]
        );
    }

    #[test]
    fn longest_token_wins_even_when_a_shorter_one_starts_earlier() {
        // "b|" starts first and overlaps "|b|c", but the longer token is split out first
        // (llama.cpp's order; leftmost-longest would have taken "b|").
        let tokens = ["b|", "|b|c"].map(String::from);
        let m = SpecialMatcher::new(&tokens, &[TokenType::Control, TokenType::Control], &[]);
        assert_eq!(m.partition("xb|b|c", true), vec![Text("xb"), Token(1)]);
    }

    #[test]
    fn strip_flags_eat_ascii_whitespace_beside_the_token() {
        let tokens = ["<l>", "<r>"].map(String::from);
        let strip = [Strip { left: true, right: false }, Strip { left: false, right: true }];
        let m = SpecialMatcher::new(&tokens, &[TokenType::Control, TokenType::Control], &strip);
        assert_eq!(m.partition("a \n<l> b<r>\n\t c<r>\u{a0}", true), vec![Text("a"), Token(0), Text(" b"), Token(1), Text("c"), Token(1), Text("\u{a0}")]);
        assert_eq!(m.partition(" <l><r> ", true), vec![Token(0), Token(1)]);
    }
}

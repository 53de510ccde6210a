//! Splitting text into words with a list of regexes, as llama.cpp's `unicode_regex_split` does.
//!
//! Each regex re-splits every piece the previous ones produced, keeping both its matches and
//! the text between them. llama.cpp runs a regex that names categories (`\p{L}`, `\p{N}`, …)
//! on a "collapsed" copy of the text, where every non-ASCII code point is replaced by one
//! stand-in per category (and non-ASCII whitespace by `\x0B`), with each `\p{..}` rewritten to
//! that stand-in plus its ASCII members; a regex without categories runs on the code points
//! themselves (non-ASCII whitespace again as `\x0B`). Doing the same here keeps llama.cpp's
//! quirks: its Unicode 15.1 tables, `\p{Lu}` meaning any letter, ASCII-only `\s` semantics.
//! llama.cpp's hand-written splitters for the gpt2, llama3, qwen2 and qwen35 regexes are
//! equivalent to running those regexes, so they need no code of their own.

use fancy_regex::Regex;

use super::unicode::{category, is_whitespace, Category};
use super::TokenizerError;

/// `\p{..}` names llama.cpp understands, the category stand-in, and its ASCII members.
const CATEGORY_CLASSES: &[(&str, char, &str)] = &[
    ("\\p{N}", N_MARK, "0-9"),
    ("\\p{L}", L_MARK, "A-Za-z"),
    ("\\p{P}", P_MARK, "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"),
    ("\\p{M}", M_MARK, ""),
    ("\\p{S}", S_MARK, "\\$\\+<->\\^`\\|~"),
    ("\\p{Lu}", L_MARK, "A-Za-z"),
    ("\\p{Ll}", L_MARK, "A-Za-z"),
    ("\\p{Lt}", L_MARK, "A-Za-z"),
    ("\\p{Lm}", L_MARK, "A-Za-z"),
    ("\\p{Lo}", L_MARK, "A-Za-z"),
];
const OTHER_MARK: char = '\u{D0}';
const N_MARK: char = '\u{D1}';
const L_MARK: char = '\u{D2}';
const P_MARK: char = '\u{D3}';
const M_MARK: char = '\u{D4}';
const S_MARK: char = '\u{D5}';
/// llama.cpp's stand-in for whitespace outside ASCII (its `std::regex` `\s` is ASCII only).
const SPACE_MARK: char = '\u{0B}';

struct Step {
    regex: Regex,
    /// Runs on the collapsed text (the regex names categories).
    collapsed: bool,
}

/// A pre-tokenizer's regex list, compiled.
pub(crate) struct Splitter {
    steps: Vec<Step>,
}

impl std::fmt::Debug for Splitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.iter().map(|s| s.regex.as_str())).finish()
    }
}

impl Splitter {
    pub(crate) fn new(exprs: &[&str]) -> Result<Splitter, TokenizerError> {
        let steps = exprs
            .iter()
            .map(|expr| {
                let collapsed = CATEGORY_CLASSES.iter().any(|(name, _, _)| expr.contains(name));
                let source = if collapsed { collapse_regex(expr) } else { (*expr).to_string() };
                let regex = Regex::new(&source).map_err(|e| TokenizerError::Build(format!("regex {expr:?}: {e}")))?;
                Ok(Step { regex, collapsed })
            })
            .collect::<Result<_, TokenizerError>>()?;
        Ok(Splitter { steps })
    }

    /// The words of `text`, in order; together they are `text`.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, TokenizerError> {
        let original = View::new(text, |c| c);
        let collapsed = self.steps.iter().any(|s| s.collapsed).then(|| View::new(text, collapse_char));
        let raw = self.steps.iter().any(|s| !s.collapsed).then(|| View::new(text, |c| if !c.is_ascii() && is_whitespace(c) { SPACE_MARK } else { c }));
        // Piece lengths in code points.
        let mut pieces = vec![original.len()];
        for step in &self.steps {
            let view = if step.collapsed { collapsed.as_ref() } else { raw.as_ref() };
            pieces = split_pieces(&step.regex, view.expect("built for the steps that need it"), &pieces)?;
        }
        let mut at = 0;
        Ok(pieces
            .into_iter()
            .map(|len| {
                let word = &text[original.starts[at]..original.starts[at + len]];
                at += len;
                word
            })
            .collect())
    }
}

/// A text with one char per code point of the input, and where each one starts.
struct View {
    text: String,
    /// Byte offset of every char, then the total length.
    starts: Vec<usize>,
}

impl View {
    fn new(input: &str, map: impl Fn(char) -> char) -> View {
        let mut text = String::with_capacity(input.len());
        let mut starts = Vec::with_capacity(input.len() + 1);
        for c in input.chars() {
            starts.push(text.len());
            text.push(map(c));
        }
        starts.push(text.len());
        View { text, starts }
    }

    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    fn char_index(&self, byte: usize) -> usize {
        self.starts.binary_search(&byte).expect("regex matches end on char boundaries")
    }
}

fn split_pieces(regex: &Regex, view: &View, pieces: &[usize]) -> Result<Vec<usize>, TokenizerError> {
    let mut out = Vec::with_capacity(pieces.len() * 2);
    let mut start = 0;
    for &len in pieces {
        let (from, to) = (view.starts[start], view.starts[start + len]);
        let mut done = start;
        for m in regex.find_iter(&view.text[from..to]) {
            let m = m.map_err(|e| TokenizerError::Encode(format!("pre-tokenizer regex: {e}")))?;
            let (m_start, m_end) = (view.char_index(from + m.start()), view.char_index(from + m.end()));
            if m_start > done {
                out.push(m_start - done);
            }
            if m_end > m_start {
                out.push(m_end - m_start);
            }
            done = m_end;
        }
        if start + len > done {
            out.push(start + len - done);
        }
        start += len;
    }
    Ok(out)
}

fn collapse_char(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    if is_whitespace(c) {
        return SPACE_MARK;
    }
    match category(c) {
        Category::N => N_MARK,
        Category::L => L_MARK,
        Category::P => P_MARK,
        Category::M => M_MARK,
        Category::S => S_MARK,
        Category::O => OTHER_MARK,
    }
}

/// llama.cpp's rewrite of a regex for the collapsed text: `\p{X}` becomes the stand-in plus the
/// ASCII members, bracketed unless already inside a `[...]` class.
fn collapse_regex(expr: &str) -> String {
    let bytes = expr.as_bytes();
    let mut out = String::with_capacity(expr.len() * 2);
    let mut inside = false;
    let mut i = 0;
    while i < expr.len() {
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if bytes[i] == b'[' && !escaped {
            inside = true;
        } else if bytes[i] == b']' && inside && !escaped {
            inside = false;
        } else if let Some((name, mark, ascii)) = CATEGORY_CLASSES.iter().find(|(name, _, _)| expr[i..].starts_with(name)) {
            let class = format!("{mark}{ascii}");
            out.push_str(&if inside { class } else { format!("[{class}]") });
            i += name.len();
            continue;
        }
        let c = expr[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

    fn words(exprs: &[&str], text: &str) -> Vec<String> {
        Splitter::new(exprs).unwrap().split(text).unwrap().into_iter().map(String::from).collect()
    }

    #[test]
    fn categories_are_collapsed_like_llama_cpp() {
        assert_eq!(collapse_regex(r"\p{N}|[^\s\p{L}]"), "[\u{D1}0-9]|[^\\s\u{D2}A-Za-z]");
        assert_eq!(words(&[GPT2], "Hello  world's 123!"), ["Hello", " ", " world", "'s", " 123", "!"]);
        // U+1C89 is a letter only from Unicode 16 on: llama.cpp's tables cut the word there.
        assert_eq!(words(&[GPT2], "x\u{1c89}y"), ["x", "\u{1c89}", "y"]);
        // Non-ASCII whitespace is whitespace to `\s` (and only ASCII space prefixes a word).
        assert_eq!(words(&[GPT2], "a\u{3000}\u{3000}b"), ["a", "\u{3000}", "\u{3000}", "b"]);
    }

    #[test]
    fn later_regexes_split_earlier_pieces_and_keep_gaps() {
        assert_eq!(words(&[r"\p{N}", GPT2], "ab12 cd"), ["ab", "1", "2", " cd"]);
        assert_eq!(words(&["[0-9][0-9][0-9]"], "12345x"), ["123", "45x"]);
        assert_eq!(words(&["\\s+$"], "a \u{a0}"), ["a", " \u{a0}"]);
        assert!(words(&[GPT2], "").is_empty());
    }
}

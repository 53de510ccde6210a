//! The BPE merge loop, as llama.cpp's `llm_tokenizer_bpe_session` runs it.
//!
//! Per word: every char is a symbol; the adjacent pair with the lowest merge rank (leftmost on
//! ties) merges until none is left. The merged text is not checked against the vocabulary;
//! at the end a symbol that is no token is emitted byte by byte, and bytes without a token
//! are dropped, as llama.cpp does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::symbols::{self, Symbol};
use super::TokenIndex;

/// Merge ranks: `"left right"` lines, rank = line number, the first of duplicates wins.
#[derive(Debug)]
pub(crate) struct Merges {
    /// Every text that is a side of some merge.
    sides: HashMap<Box<str>, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl Merges {
    pub(crate) fn new(lines: &[String]) -> Merges {
        let mut sides: HashMap<Box<str>, u32> = HashMap::new();
        let mut ranks = HashMap::with_capacity(lines.len());
        for (rank, line) in lines.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a left side that
            // is itself " " still parses; a line without one is an unusable ("", "") merge.
            let Some(at) = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else { continue };
            let mut side = |text: &str| {
                let next = sides.len() as u32;
                *sides.entry(text.into()).or_insert(next)
            };
            let pair = (side(&line[..at]), side(&line[at + 1..]));
            ranks.entry(pair).or_insert(rank as u32);
        }
        Merges { sides, ranks }
    }

    fn rank(&self, left: &str, right: &str) -> Option<u32> {
        let pair = (*self.sides.get(left)?, *self.sides.get(right)?);
        self.ranks.get(&pair).copied()
    }
}

/// How words become tokens beyond the merges themselves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BpeOptions {
    /// A word that is a token is emitted whole (llama3-family pre-tokenizers).
    pub ignore_merges: bool,
    /// A word of only newlines that is a token is emitted whole (gemma4).
    pub whole_newlines: bool,
    /// Words are GPT-2 byte-mapped text, so a leftover byte is the token of its one char;
    /// otherwise (gemma4) it is the `<0xNN>` token.
    pub byte_encoded: bool,
}

/// Appends the tokens of one pre-tokenized word.
pub(crate) fn encode_word(word: &str, merges: &Merges, index: &TokenIndex, options: BpeOptions, out: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    if options.ignore_merges || (options.whole_newlines && word.bytes().all(|b| b == b'\n')) {
        if let Some(id) = index.get(word) {
            out.push(id);
            return;
        }
    }
    let char_len = |at: usize| word[at..].chars().next().map_or(1, char::len_utf8);
    let mut symbols = symbols::split(word, char_len);
    // (rank, left index) ascending, with the lengths the pair had when queued.
    let mut queue: BinaryHeap<Reverse<(u32, usize, usize, usize)>> = BinaryHeap::new();
    let text = |s: &Symbol| &word[s.start..s.start + s.len];
    let push = |queue: &mut BinaryHeap<_>, symbols: &[Symbol], left: usize| {
        let Some(right) = symbols[left].next else { return };
        if let Some(rank) = merges.rank(text(&symbols[left]), text(&symbols[right])) {
            queue.push(Reverse((rank, left, symbols[left].len, symbols[right].len)));
        }
    };
    for left in 0..symbols.len() {
        push(&mut queue, &symbols, left);
    }
    while let Some(Reverse((_, left, left_len, right_len))) = queue.pop() {
        let Some(right) = symbols[left].next else { continue };
        // Stale: one side has changed since the pair was queued.
        if symbols[left].len != left_len || symbols[right].len != right_len || right_len == 0 {
            continue;
        }
        if let Some(prev) = symbols::merge_next(&mut symbols, left) {
            push(&mut queue, &symbols, prev);
        }
        push(&mut queue, &symbols, left);
    }
    for symbol in symbols::in_order(&symbols) {
        let piece = text(symbol);
        match index.get(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    // llama.cpp looks up the one raw byte as a string: only ASCII can match.
                    let byte_token = if !options.byte_encoded {
                        index.get(&format!("<0x{b:02X}>"))
                    } else if b.is_ascii() {
                        index.get(std::str::from_utf8(&[b]).expect("ASCII"))
                    } else {
                        None
                    };
                    out.extend(byte_token);
                }
            }
        }
    }
}

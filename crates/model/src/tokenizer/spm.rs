//! SentencePiece BPE, as llama.cpp's `llm_tokenizer_spm_session` runs it.
//!
//! The text (spaces already escaped to `▁`) starts as one symbol per UTF-8 char; the adjacent
//! pair whose concatenation is the highest-scoring token merges (leftmost on ties), whatever
//! that token's type, until no pair is a token. A final symbol that is no token becomes one
//! `<0xNN>` byte token per byte. There is no unknown token.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::symbols::{self, Symbol};
use super::{TokenIndex, TokenizerError};

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Bytes of the merged text, to spot pairs that changed since they were queued.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// Byte length of the UTF-8 sequence a lead byte starts, by llama.cpp's table (a stray
/// continuation byte counts as one).
fn utf8_len(lead: u8) -> usize {
    match lead >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

/// Appends the tokens of `text` (spaces already `▁`). Fails only when a byte has no token,
/// where llama.cpp aborts.
pub(crate) fn encode(text: &str, scores: &[f32], index: &TokenIndex, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
    let mut symbols = symbols::split(text, |at| utf8_len(text.as_bytes()[at]));
    if symbols.is_empty() {
        return Ok(());
    }
    let piece = |s: &Symbol| &text[s.start..s.start + s.len];
    let mut queue = BinaryHeap::new();
    let push = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: usize| {
        let Some(right) = symbols[left].next else { return };
        let (l, r) = (&symbols[left], &symbols[right]);
        let merged = &text[l.start..r.start + r.len];
        if let Some(id) = index.get(merged) {
            queue.push(Bigram { score: scores[id as usize], left, right, size: merged.len() });
        }
    };
    for left in 0..symbols.len() {
        push(&mut queue, &symbols, left);
    }
    while let Some(bigram) = queue.pop() {
        let (left, right) = (bigram.left, bigram.right);
        if symbols[left].len == 0 || symbols[right].len == 0 || symbols[left].len + symbols[right].len != bigram.size {
            continue;
        }
        if let Some(prev) = symbols::merge_next(&mut symbols, left) {
            push(&mut queue, &symbols, prev);
        }
        push(&mut queue, &symbols, left);
    }
    for symbol in symbols::in_order(&symbols) {
        let text = piece(symbol);
        match index.get(text) {
            Some(id) => out.push(id),
            None => {
                for b in text.bytes() {
                    out.push(byte_token(b, index)?);
                }
            }
        }
    }
    Ok(())
}

/// llama.cpp's `byte_to_token` for SentencePiece: the `<0xNN>` token by text, else the
/// one-byte text itself.
fn byte_token(b: u8, index: &TokenIndex) -> Result<u32, TokenizerError> {
    let single = if b.is_ascii() { index.get(std::str::from_utf8(&[b]).expect("ASCII")) } else { None };
    index.get(&format!("<0x{b:02X}>")).or(single).ok_or(TokenizerError::NoByteToken(b))
}

//! The linked list of text pieces both merge algorithms work on (llama.cpp's `llm_symbol`): each
//! symbol is a byte range of the text with links to its live neighbours; merging a pair grows
//! the left one over the right and unlinks the right.

pub(super) struct Symbol {
    pub start: usize,
    pub len: usize,
    pub prev: Option<usize>,
    pub next: Option<usize>,
}

/// One symbol per piece of `text`, pieces `piece_len(offset)` bytes long (a character, or
/// llama.cpp's byte-table reading of one), linked in order.
pub(super) fn split(text: &str, piece_len: impl Fn(usize) -> usize) -> Vec<Symbol> {
    let mut symbols = Vec::with_capacity(text.len());
    let mut start = 0;
    while start < text.len() {
        let len = piece_len(start).min(text.len() - start);
        let i = symbols.len();
        symbols.push(Symbol { start, len, prev: i.checked_sub(1), next: (start + len < text.len()).then_some(i + 1) });
        start += len;
    }
    symbols
}

/// Merges the symbol after `left` into it. The pairs that changed start at `left` and at its
/// previous symbol, which is returned.
pub(super) fn merge_next(symbols: &mut [Symbol], left: usize) -> Option<usize> {
    let right = symbols[left].next.expect("a pair has a right side");
    symbols[left].len += symbols[right].len;
    symbols[right].len = 0;
    symbols[left].next = symbols[right].next;
    if let Some(next) = symbols[right].next {
        symbols[next].prev = Some(left);
    }
    symbols[left].prev
}

/// The live symbols in text order.
pub(super) fn in_order(symbols: &[Symbol]) -> impl Iterator<Item = &Symbol> {
    std::iter::successors((!symbols.is_empty()).then_some(0), |&i| symbols[i].next).map(|i| &symbols[i])
}

//! `ForwardBatch`: one engine step flattened into plain arrays, the executor's whole input. A
//! step mixes sequences at any stage (a prompt chunk, a single decode token): every sequence
//! contributes the tokens it has not computed yet, at their positions, plus its block table.

/// One step's work. Tokens of one sequence are contiguous and in position order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardBatch {
    /// `[num_tokens]` token ids to run.
    pub token_ids: Vec<u32>,
    /// `[num_tokens]` position of each token in its sequence.
    pub positions: Vec<u32>,
    /// `[num_tokens]` index of each token's sequence within this batch.
    pub token_seq: Vec<u32>,
    /// `[num_tokens]` KV slot each token's K/V goes to (`block * block_size + offset`).
    pub slots: Vec<u32>,
    /// `[num_seqs, max_blocks_per_seq]` block ids per sequence, padded with 0.
    pub block_tables: Vec<u32>,
    pub max_blocks_per_seq: usize,
    pub num_seqs: usize,
    /// Token rows whose logits are wanted (the last token of each sampling sequence), in order.
    pub logits_rows: Vec<u32>,
    pub block_size: usize,
}

impl ForwardBatch {
    /// An empty batch whose block tables hold up to `max_blocks_per_seq` blocks per sequence.
    pub fn new(block_size: usize, max_blocks_per_seq: usize) -> ForwardBatch {
        assert!(block_size > 0, "block size must be positive");
        ForwardBatch { block_size, max_blocks_per_seq, ..ForwardBatch::default() }
    }

    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    /// Empties the batch, keeping its allocations for the next step.
    pub fn clear(&mut self) {
        self.token_ids.clear();
        self.positions.clear();
        self.token_seq.clear();
        self.slots.clear();
        self.block_tables.clear();
        self.logits_rows.clear();
        self.num_seqs = 0;
    }

    /// Adds a sequence whose `tokens` start at position `start`, stored in the blocks of
    /// `block_table` (which must cover every position up to `start + tokens.len()`). When
    /// `wants_logits`, the logits of its last token are computed.
    pub fn push_sequence(&mut self, tokens: &[u32], start: usize, block_table: &[u32], wants_logits: bool) -> Result<(), BatchError> {
        let end = start + tokens.len();
        let blocks_needed = end.div_ceil(self.block_size);
        if tokens.is_empty() {
            return Err(BatchError::EmptySequence);
        }
        if blocks_needed > block_table.len() || block_table.len() > self.max_blocks_per_seq {
            return Err(BatchError::BlockTable { positions: end, blocks: block_table.len(), max: self.max_blocks_per_seq });
        }
        let seq = self.num_seqs as u32;
        for (i, &tok) in tokens.iter().enumerate() {
            let pos = start + i;
            self.token_ids.push(tok);
            self.positions.push(pos as u32);
            self.token_seq.push(seq);
            let block = block_table[pos / self.block_size];
            self.slots.push(block * self.block_size as u32 + (pos % self.block_size) as u32);
        }
        self.block_tables.extend_from_slice(block_table);
        self.block_tables.extend(std::iter::repeat_n(0, self.max_blocks_per_seq - block_table.len()));
        if wants_logits {
            self.logits_rows.push((self.token_ids.len() - 1) as u32);
        }
        self.num_seqs += 1;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("a sequence in a batch must contribute at least one token")]
    EmptySequence,
    #[error("block table of {blocks} blocks (max {max}) cannot hold {positions} positions")]
    BlockTable { positions: usize, blocks: usize, max: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_sequences_with_slots_and_logit_rows() {
        let mut b = ForwardBatch::new(4, 3);
        b.push_sequence(&[10, 11, 12, 13, 14], 0, &[7, 2], true).unwrap();
        b.push_sequence(&[20], 6, &[5, 1], true).unwrap();
        assert_eq!(b.positions, vec![0, 1, 2, 3, 4, 6]);
        assert_eq!(b.token_seq, vec![0, 0, 0, 0, 0, 1]);
        assert_eq!(b.slots, vec![28, 29, 30, 31, 8, 6]);
        assert_eq!(b.block_tables, vec![7, 2, 0, 5, 1, 0]);
        assert_eq!(b.logits_rows, vec![4, 5]);
        assert_eq!(b.num_seqs, 2);
    }

    #[test]
    fn rejects_short_block_tables_and_empty_sequences() {
        let mut b = ForwardBatch::new(4, 2);
        assert!(matches!(b.push_sequence(&[1; 5], 0, &[0], true), Err(BatchError::BlockTable { .. })));
        assert_eq!(b.push_sequence(&[], 0, &[0], true), Err(BatchError::EmptySequence));
        assert_eq!(b.num_tokens(), 0, "a rejected sequence leaves the batch unchanged");
    }
}

//! `ForwardBatch`: one engine step flattened into plain arrays, the executor's whole input. A
//! step mixes sequences at any stage (a prompt chunk, a single decode token): every sequence
//! contributes the tokens it has not computed yet, at their positions, plus its block table.

use crate::SampledToken;

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
    /// Token rows whose logits are wanted, in order: the last token of each sampling sequence,
    /// and before it, for a sequence with proposed tokens, every proposal's row and its base's.
    pub logits_rows: Vec<u32>,
    /// `[sampling sequences]` how many proposed tokens end each sampling sequence's tokens (its
    /// logits rows are its last `drafts + 1` tokens; see [`ForwardBatch::verify`]).
    pub drafts: Vec<u32>,
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
        self.drafts.clear();
        self.num_seqs = 0;
    }

    /// Adds a sequence whose `tokens` start at position `start`, stored in the blocks of
    /// `block_table` (which must cover every position up to `start + tokens.len()`). When
    /// `wants_logits`, the logits of its last token are computed.
    pub fn push_sequence(&mut self, tokens: &[u32], start: usize, block_table: &[u32], wants_logits: bool) -> Result<(), BatchError> {
        self.push_with_drafts(tokens, start, block_table, wants_logits, 0)
    }

    /// [`ForwardBatch::push_sequence`] for a sequence whose last `drafts` tokens are proposals
    /// to verify (`wants_logits` must hold then): logits are computed for them and the token
    /// before them.
    pub fn push_with_drafts(&mut self, tokens: &[u32], start: usize, block_table: &[u32], wants_logits: bool, drafts: usize) -> Result<(), BatchError> {
        let end = start + tokens.len();
        if drafts > 0 && (!wants_logits || drafts >= tokens.len()) {
            return Err(BatchError::Drafts { drafts, tokens: tokens.len() });
        }
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
            let last = self.token_ids.len() - 1;
            self.logits_rows.extend((last - drafts..=last).map(|r| r as u32));
            self.drafts.push(drafts as u32);
        }
        self.num_seqs += 1;
        Ok(())
    }

    /// An executor's sampling loop over the step's logits rows (in order). Each sampling
    /// sequence's first row is sampled; each further row only while the token just sampled
    /// equals the proposal that row holds (`crate::speculation`: that is the verification).
    /// `sample(seq, row)` samples logits row `row` with sampling sequence `seq`'s sampler.
    pub fn verify(&self, mut sample: impl FnMut(usize, usize) -> SampledToken) -> Vec<SampledToken> {
        let mut out = Vec::with_capacity(self.drafts.len());
        let mut row = 0;
        for (seq, &drafts) in self.drafts.iter().enumerate() {
            let end = row + drafts as usize + 1;
            for r in row..end {
                let token = sample(seq, r);
                let proposed = (r + 1 < end).then(|| self.token_ids[self.logits_rows[r] as usize + 1]);
                let verified = proposed == Some(token.token);
                out.push(token);
                if !verified {
                    break;
                }
            }
            row = end;
        }
        out
    }

    /// How many of `tokens` (an executor's output for this batch, as [`ForwardBatch::verify`]
    /// makes it) belong to each sampling sequence; `None` when they cannot be its output.
    pub fn verified_counts(&self, tokens: &[SampledToken]) -> Option<Vec<usize>> {
        let (mut counts, mut next, mut row) = (Vec::with_capacity(self.drafts.len()), 0, 0);
        for &drafts in &self.drafts {
            let end = row + drafts as usize + 1;
            let mut n = 0;
            for r in row..end {
                let token = tokens.get(next + n)?.token;
                n += 1;
                if r + 1 == end || self.token_ids[self.logits_rows[r] as usize + 1] != token {
                    break;
                }
            }
            counts.push(n);
            (next, row) = (next + n, end);
        }
        (next == tokens.len()).then_some(counts)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("a sequence in a batch must contribute at least one token")]
    EmptySequence,
    #[error("block table of {blocks} blocks (max {max}) cannot hold {positions} positions")]
    BlockTable { positions: usize, blocks: usize, max: usize },
    #[error("{drafts} proposed tokens in a chunk of {tokens} that samples")]
    Drafts { drafts: usize, tokens: usize },
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

    fn token(t: u32) -> SampledToken {
        SampledToken { token: t, logprob: None, top_logprobs: Vec::new() }
    }

    #[test]
    fn verification_samples_rows_while_they_confirm_the_proposals() {
        let mut b = ForwardBatch::new(4, 4);
        // Sequence 0 decodes 5 with proposals 6, 7, 8; sequence 1 plainly decodes 9.
        b.push_with_drafts(&[5, 6, 7, 8], 10, &[0, 1, 2, 3], true, 3).unwrap();
        b.push_sequence(&[9], 3, &[4], true).unwrap();
        assert_eq!(b.logits_rows, vec![0, 1, 2, 3, 4]);
        assert_eq!(b.drafts, vec![3, 0]);
        // The target says 6 (confirms), 7 (confirms), 1 (rejects 8): rows 0-2 sampled, row 3 not.
        let target = [6, 7, 1, 99, 42];
        let mut sampled = Vec::new();
        let out = b.verify(|seq, row| {
            sampled.push((seq, row));
            token(target[row])
        });
        assert_eq!(sampled, vec![(0, 0), (0, 1), (0, 2), (1, 4)]);
        assert_eq!(out.iter().map(|t| t.token).collect::<Vec<_>>(), vec![6, 7, 1, 42]);
        assert_eq!(b.verified_counts(&out), Some(vec![3, 1]));
        // Every proposal confirmed: the last row's token comes too.
        let all = b.verify(|_, row| token([6, 7, 8, 5, 42][row]));
        assert_eq!(b.verified_counts(&all), Some(vec![4, 1]));
        // Output that cannot be this batch's.
        assert_eq!(b.verified_counts(&all[..3]), None);
        assert_eq!(b.verified_counts(&[token(6), token(7), token(1), token(3), token(4)]), None);
        assert!(matches!(b.push_with_drafts(&[1, 2], 0, &[5], false, 1), Err(BatchError::Drafts { .. })));
        assert!(matches!(b.push_with_drafts(&[1], 0, &[5], true, 1), Err(BatchError::Drafts { .. })));
    }

    #[test]
    fn rejects_short_block_tables_and_empty_sequences() {
        let mut b = ForwardBatch::new(4, 2);
        assert!(matches!(b.push_sequence(&[1; 5], 0, &[0], true), Err(BatchError::BlockTable { .. })));
        assert_eq!(b.push_sequence(&[], 0, &[0], true), Err(BatchError::EmptySequence));
        assert_eq!(b.num_tokens(), 0, "a rejected sequence leaves the batch unchanged");
    }
}

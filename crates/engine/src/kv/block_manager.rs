//! `BlockManager`: per-sequence block tables on top of the `BlockPool`, with prefix-cache lookup
//! on allocation and publication of blocks as their KV gets computed. The scheduler is its only
//! caller; the executor sees only block tables.

use std::collections::HashMap;

use super::block_pool::BlockPool;
use super::prefix_hash::{block_hash, BlockHash};
use super::{KvError, SeqId};

/// A table entry whose block was handed back because no layer reads it again (every layer's
/// attention is a sliding window that has moved past it). Backends read no further back than
/// a token's window, so they never look it up.
pub const RELEASED: u32 = u32::MAX;

/// What `allocate_prompt` found in the prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixHit {
    /// Leading prompt tokens whose KV is already in the sequence's blocks: a multiple of the block
    /// size, always less than the prompt length. The sequence starts with `num_computed` = this.
    pub cached_tokens: usize,
}

/// Cumulative counters (the engine records deltas once per step).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvStats {
    /// Prompt tokens looked up in the prefix cache (successful allocations only, so a prompt
    /// that waits for blocks is not counted once per retry).
    pub queried_tokens: u64,
    /// Of those, tokens served from the cache.
    pub hit_tokens: u64,
    /// Cached blocks reclaimed for new KV.
    pub evicted_blocks: u64,
}

/// A sequence's blocks.
struct SeqBlocks {
    table: Vec<u32>,
    /// `hashes[i]`: chained hash of block `i`, for the leading blocks that are full and computed
    /// (published, or found already published by another copy).
    hashes: Vec<BlockHash>,
    /// Leading entries handed back behind a sliding window ([`RELEASED`]).
    released: usize,
}

pub struct BlockManager {
    pool: BlockPool,
    block_size: usize,
    salt: u64,
    seqs: HashMap<SeqId, SeqBlocks>,
    queried_tokens: u64,
    hit_tokens: u64,
}

impl BlockManager {
    /// `num_blocks` blocks (ids `0..num_blocks`) of `block_size` tokens. `salt` names the model
    /// (weights and anything else that changes KV) so caches of different models never mix.
    ///
    /// # Panics
    /// On `block_size == 0` or `num_blocks >= u32::MAX`: configuration, not input.
    pub fn new(num_blocks: usize, block_size: usize, salt: u64) -> BlockManager {
        assert!(block_size > 0, "block size must be positive");
        assert!(num_blocks < u32::MAX as usize, "block ids must fit in u32");
        BlockManager {
            pool: BlockPool::new(num_blocks, block_size),
            block_size,
            salt,
            seqs: HashMap::new(),
            queried_tokens: 0,
            hit_tokens: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.pool.num_blocks()
    }

    /// Blocks a new allocation could take: free plus evictable (idle cache entries).
    pub fn num_free_blocks(&self) -> usize {
        self.pool.available()
    }

    /// Of the free blocks, those that are idle prefix-cache entries.
    pub fn num_evictable_blocks(&self) -> usize {
        self.pool.num_evictable()
    }

    /// Blocks held by at least one sequence.
    pub fn num_used_blocks(&self) -> usize {
        self.pool.num_blocks() - self.pool.available()
    }

    /// Published prefix-cache entries, in use or idle.
    pub fn num_cached_blocks(&self) -> usize {
        self.pool.num_cached()
    }

    pub fn can_allocate(&self, num_blocks: usize) -> bool {
        num_blocks <= self.pool.available()
    }

    /// Blocks needed to hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    pub fn num_sequences(&self) -> usize {
        self.seqs.len()
    }

    pub fn stats(&self) -> KvStats {
        KvStats { queried_tokens: self.queried_tokens, hit_tokens: self.hit_tokens, evicted_blocks: self.pool.evictions() }
    }

    /// How many tables hold `block` (`None` if out of range). For tests and debugging.
    pub fn ref_count(&self, block: u32) -> Option<u32> {
        self.pool.ref_count(block)
    }

    /// The cached block for a hash, if any. For tests and debugging.
    pub fn cached_block(&self, hash: BlockHash) -> Option<u32> {
        self.pool.cached_block(hash)
    }

    /// Idle cache entries, next to be evicted first.
    pub fn evictable_blocks(&self) -> impl Iterator<Item = u32> + '_ {
        self.pool.evictable_blocks()
    }

    pub fn block_table(&self, seq: SeqId) -> Result<&[u32], KvError> {
        self.seqs.get(&seq).map(|s| s.table.as_slice()).ok_or(KvError::UnknownSequence(seq))
    }

    /// Tokens of `prompt` a fresh allocation would find cached (no side effects).
    pub fn cached_prefix_len(&self, prompt: &[u32]) -> usize {
        self.lookup_prefix(prompt).0.len() * self.block_size
    }

    /// The cached blocks for the longest prefix of `prompt` in whole blocks, never covering its
    /// last token, and their hashes.
    fn lookup_prefix(&self, prompt: &[u32]) -> (Vec<u32>, Vec<BlockHash>) {
        let max_blocks = prompt.len().saturating_sub(1) / self.block_size;
        let (mut blocks, mut hashes) = (Vec::new(), Vec::new());
        for chunk in prompt.chunks_exact(self.block_size).take(max_blocks) {
            let parent = hashes.last().copied();
            let hash = block_hash(self.salt, parent, chunk);
            let Some(block) = self.pool.lookup(hash, parent, chunk) else { break };
            blocks.push(block);
            hashes.push(hash);
        }
        (blocks, hashes)
    }

    /// Gives a new sequence blocks for all of `prompt` (for a resumed sequence: everything it has,
    /// generated tokens included), reusing the longest cached prefix. All or nothing.
    pub fn allocate_prompt(&mut self, seq: SeqId, prompt: &[u32]) -> Result<PrefixHit, KvError> {
        if self.seqs.contains_key(&seq) {
            return Err(KvError::SequenceExists(seq));
        }
        let (mut table, hashes) = self.lookup_prefix(prompt);
        let needed = self.blocks_for(prompt.len()) - table.len();
        // A hit on an idle entry takes it out of the pool that fresh blocks come from.
        let reviving = table.iter().filter(|&&b| self.pool.is_evictable(b)).count();
        let available = self.pool.available() - reviving;
        if needed > available {
            return Err(KvError::OutOfBlocks { needed, available });
        }
        for &b in &table {
            self.pool.retain(b);
        }
        for _ in 0..needed {
            table.push(self.pool.allocate().expect("capacity checked above"));
        }
        let cached_tokens = hashes.len() * self.block_size;
        self.queried_tokens += prompt.len() as u64;
        self.hit_tokens += cached_tokens as u64;
        self.seqs.insert(seq, SeqBlocks { table, hashes, released: 0 });
        Ok(PrefixHit { cached_tokens })
    }

    /// Grows `seq`'s table to hold `total_tokens` tokens (never shrinks it). All or nothing.
    pub fn append_slots(&mut self, seq: SeqId, total_tokens: usize) -> Result<(), KvError> {
        let want = self.blocks_for(total_tokens);
        let s = self.seqs.get_mut(&seq).ok_or(KvError::UnknownSequence(seq))?;
        let needed = want.saturating_sub(s.table.len());
        let available = self.pool.available();
        if needed > available {
            return Err(KvError::OutOfBlocks { needed, available });
        }
        for _ in 0..needed {
            s.table.push(self.pool.allocate().expect("capacity checked above"));
        }
        Ok(())
    }

    /// Publishes the blocks that `computed` (the sequence's tokens whose KV is now written, from
    /// position 0) fills completely and that were not yet published. Returns how many became new
    /// cache entries; a block whose hash another block already holds stays private.
    pub fn publish_full_blocks(&mut self, seq: SeqId, computed: &[u32]) -> Result<usize, KvError> {
        let bs = self.block_size;
        let s = self.seqs.get_mut(&seq).ok_or(KvError::UnknownSequence(seq))?;
        let full = (computed.len() / bs).min(s.table.len());
        let mut published = 0;
        for i in s.hashes.len()..full {
            let parent = s.hashes.last().copied();
            let chunk = &computed[i * bs..(i + 1) * bs];
            let hash = block_hash(self.salt, parent, chunk);
            published += usize::from(self.pool.publish(s.table[i], hash, parent, chunk));
            s.hashes.push(hash);
        }
        Ok(published)
    }

    /// Releases `seq`'s blocks, tail first: published ones stay cached (evictable) until needed.
    pub fn free(&mut self, seq: SeqId) -> Result<(), KvError> {
        let s = self.seqs.remove(&seq).ok_or(KvError::UnknownSequence(seq))?;
        for &b in s.table[s.released..].iter().rev() {
            self.pool.release(b);
        }
        Ok(())
    }

    /// Hands back `seq`'s blocks that lie wholly before position `first_read` and are published
    /// (full and computed, so they stay in the prefix cache, evictable): with every layer's
    /// attention windowed, no token of `seq` reads them again. Their entries become [`RELEASED`].
    /// Returns how many were released.
    pub fn release_before(&mut self, seq: SeqId, first_read: usize) -> Result<usize, KvError> {
        let s = self.seqs.get_mut(&seq).ok_or(KvError::UnknownSequence(seq))?;
        let upto = (first_read / self.block_size).min(s.hashes.len());
        let newly = upto.saturating_sub(s.released);
        for b in &mut s.table[s.released..upto.max(s.released)] {
            self.pool.release(*b);
            *b = RELEASED;
        }
        s.released = s.released.max(upto);
        Ok(newly)
    }

    /// Verifies the whole state: every block is exactly one of free, evictable or referenced; ref
    /// counts equal the number of tables holding the block; every hash entry is held by its block
    /// and matches the block's tokens; no id is out of range; free + evictable + used = total.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.pool.num_blocks();
        let mut refs = vec![0u32; n];
        for (seq, s) in &self.seqs {
            if s.table[..s.released].iter().any(|&b| b != RELEASED) {
                return Err(format!("seq {seq}: a released entry holds a block"));
            }
            for &b in &s.table[s.released..] {
                let Some(r) = refs.get_mut(b as usize) else { return Err(format!("seq {seq}: block {b} out of range (0..{n})")) };
                *r += 1;
            }
            if s.hashes.len() > s.table.len() {
                return Err(format!("seq {seq}: {} block hashes for {} blocks", s.hashes.len(), s.table.len()));
            }
        }
        self.pool.check(&refs, self.salt)
    }
}

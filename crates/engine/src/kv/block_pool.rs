//! The physical side of the KV cache: which block ids are referenced and how often, which hold a
//! published prefix hash, and which are idle. It knows nothing of sequences (that is
//! `BlockManager`), which keeps the three-way state of a block in one place:
//!
//! - **referenced** (`ref_count > 0`): in some block table;
//! - **evictable** (`ref_count == 0`, hash published): idle but still a prefix-cache entry, kept
//!   in LRU order and reused only when no never-cached block is left;
//! - **free** (`ref_count == 0`, no hash): on the free list.

use std::collections::HashMap;

use super::lru::LruList;
use super::prefix_hash::{block_hash, BlockHash};

#[derive(Clone, Copy, Default)]
struct BlockMeta {
    ref_count: u32,
    /// Set while the block is the prefix-cache entry for this hash.
    hash: Option<BlockHash>,
    /// The parent hash the block was published under, to verify hits.
    parent: Option<BlockHash>,
}

pub(crate) struct BlockPool {
    block_size: usize,
    /// `[num_blocks]`
    meta: Vec<BlockMeta>,
    /// `[num_blocks, block_size]` token ids of published blocks, compared on every hit so that a
    /// hash collision can never hand out foreign KV.
    tokens: Vec<u32>,
    /// Idle, never-cached blocks; a stack, so a fresh pool hands out 0, 1, 2, …
    free: Vec<u32>,
    evictable: LruList,
    cached: HashMap<BlockHash, u32>,
    evictions: u64,
}

impl BlockPool {
    pub fn new(num_blocks: usize, block_size: usize) -> BlockPool {
        BlockPool {
            block_size,
            meta: vec![BlockMeta::default(); num_blocks],
            tokens: vec![0; num_blocks * block_size],
            free: (0..num_blocks as u32).rev().collect(),
            evictable: LruList::new(num_blocks),
            cached: HashMap::new(),
            evictions: 0,
        }
    }

    pub fn num_blocks(&self) -> usize {
        self.meta.len()
    }

    pub fn num_evictable(&self) -> usize {
        self.evictable.len()
    }

    /// Blocks a fresh allocation can take: free plus evictable.
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn ref_count(&self, block: u32) -> Option<u32> {
        self.meta.get(block as usize).map(|m| m.ref_count)
    }

    pub fn is_evictable(&self, block: u32) -> bool {
        self.evictable.contains(block)
    }

    /// Evictable blocks, next to be evicted first.
    pub fn evictable_blocks(&self) -> impl Iterator<Item = u32> + '_ {
        self.evictable.iter()
    }

    /// The cached block for `hash`, if its stored parent hash and tokens match too.
    pub fn lookup(&self, hash: BlockHash, parent: Option<BlockHash>, tokens: &[u32]) -> Option<u32> {
        let &block = self.cached.get(&hash)?;
        let ok = self.meta[block as usize].parent == parent && self.block_tokens(block) == tokens;
        ok.then_some(block)
    }

    pub fn cached_block(&self, hash: BlockHash) -> Option<u32> {
        self.cached.get(&hash).copied()
    }

    fn block_tokens(&self, block: u32) -> &[u32] {
        let start = block as usize * self.block_size;
        &self.tokens[start..start + self.block_size]
    }

    /// One more table holds `block`; an idle cached block is revived (leaves the LRU).
    pub fn retain(&mut self, block: u32) {
        if let Some(m) = self.meta.get_mut(block as usize) {
            if m.ref_count == 0 {
                self.evictable.remove(block);
            }
            m.ref_count += 1;
        }
    }

    /// A block for new KV, with ref count 1: from the free list, else by evicting the least
    /// recently released cached block. `None` when neither has one.
    pub fn allocate(&mut self) -> Option<u32> {
        let block = match self.free.pop() {
            Some(b) => b,
            None => {
                let b = self.evictable.pop_front()?;
                let m = &mut self.meta[b as usize];
                if let Some(h) = m.hash.take() {
                    self.cached.remove(&h);
                }
                m.parent = None;
                self.evictions += 1;
                b
            }
        };
        self.meta[block as usize].ref_count = 1;
        Some(block)
    }

    /// One table fewer holds `block`. At zero it becomes evictable if it is a cache entry, else
    /// free. A block that is not referenced is left alone.
    pub fn release(&mut self, block: u32) {
        let Some(m) = self.meta.get_mut(block as usize) else { return };
        if m.ref_count == 0 {
            return;
        }
        m.ref_count -= 1;
        if m.ref_count == 0 {
            if m.hash.is_some() {
                self.evictable.push_back(block);
            } else {
                self.free.push(block);
            }
        }
    }

    /// Makes `block` (referenced, full, KV computed) the cache entry for `hash`. Declined (false)
    /// when the block already is an entry or another block already holds the hash (two sequences
    /// computed the same block concurrently; the second copy simply goes back to the free list
    /// when released).
    pub fn publish(&mut self, block: u32, hash: BlockHash, parent: Option<BlockHash>, tokens: &[u32]) -> bool {
        let bs = self.block_size;
        let Some(m) = self.meta.get_mut(block as usize) else { return false };
        if m.ref_count == 0 || m.hash.is_some() || tokens.len() != bs || self.cached.contains_key(&hash) {
            return false;
        }
        m.hash = Some(hash);
        m.parent = parent;
        self.cached.insert(hash, block);
        let start = block as usize * bs;
        self.tokens[start..start + bs].copy_from_slice(tokens);
        true
    }

    /// Checks the pool against `refs[b]` (how many block tables hold block `b`).
    pub fn check(&self, refs: &[u32], salt: u64) -> Result<(), String> {
        let n = self.num_blocks();
        if refs.len() != n || self.tokens.len() != n * self.block_size {
            return Err(format!("pool: sized for {n} blocks but {} refs, {} token slots", refs.len(), self.tokens.len()));
        }
        self.evictable.check()?;
        let mut on_free = vec![0u32; n];
        for &b in &self.free {
            let Some(c) = on_free.get_mut(b as usize) else { return Err(format!("free list holds out-of-range block {b}")) };
            *c += 1;
        }
        let mut used = 0;
        for (b, m) in self.meta.iter().enumerate() {
            let id = b as u32;
            if m.ref_count != refs[b] {
                return Err(format!("block {b}: ref count {} but held by {} tables", m.ref_count, refs[b]));
            }
            let referenced = m.ref_count > 0;
            let lru = self.evictable.contains(id);
            if u32::from(referenced) + on_free[b] + u32::from(lru) != 1 {
                return Err(format!("block {b}: referenced={referenced}, on free list {}x, evictable={lru}", on_free[b]));
            }
            used += usize::from(referenced);
            if on_free[b] == 1 && m.hash.is_some() {
                return Err(format!("block {b}: on the free list but holds a hash"));
            }
            if lru && m.hash.is_none() {
                return Err(format!("block {b}: evictable without a hash"));
            }
            if let Some(h) = m.hash {
                if self.cached.get(&h) != Some(&id) {
                    return Err(format!("block {b}: holds hash {h:#x} but the map says {:?}", self.cached.get(&h)));
                }
                if block_hash(salt, m.parent, self.block_tokens(id)) != h {
                    return Err(format!("block {b}: hash {h:#x} does not match its parent and tokens"));
                }
            }
        }
        for (&h, &b) in &self.cached {
            match self.meta.get(b as usize) {
                Some(m) if m.hash == Some(h) => {}
                _ => return Err(format!("map: hash {h:#x} points at block {b}, which does not hold it")),
            }
        }
        if self.free.len() + self.evictable.len() + used != n {
            return Err(format!("free {} + evictable {} + used {used} != {n}", self.free.len(), self.evictable.len()));
        }
        Ok(())
    }
}

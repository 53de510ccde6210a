//! A seeded random walk over the whole API against a model of what the executor would do: every
//! computed token writes a value identifying its entire prefix into its slot of a simulated KV
//! cache. After every operation the invariants must hold and every live sequence must read back
//! exactly its own prefix from its block table, so a wrong prefix hit, an evicted block still in
//! use, a write into a shared block or a forgotten fork copy all show up as data corruption.

use std::collections::BTreeMap;

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// A seeded stream of choices.
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }

    fn token(&mut self) -> u32 {
        self.below(3) as u32 // a tiny vocabulary, so random suffixes collide and hit too
    }
}

/// A live sequence as the scheduler and executor see it.
struct Live {
    tokens: Vec<u32>,
    /// `idents[p]`: identity of `tokens[..=p]`, what position `p`'s KV depends on.
    idents: Vec<u64>,
    computed: usize,
}

impl Live {
    fn new(tokens: Vec<u32>, computed: usize) -> Live {
        let mut live = Live { tokens: Vec::new(), idents: Vec::new(), computed };
        for t in tokens {
            live.push(t);
        }
        live
    }

    fn push(&mut self, token: u32) {
        let prev = self.idents.last().copied().unwrap_or(0x5eed);
        self.tokens.push(token);
        self.idents.push(block_hash(prev, None, &[token]));
    }
}

struct Sim {
    m: BlockManager,
    rng: Rng,
    live: BTreeMap<SeqId, Live>,
    /// Preempted sequences' tokens, waiting to be resumed by recompute.
    waiting: Vec<Vec<u32>>,
    /// `[num_blocks * block_size]` simulated KV: the identity each slot was last written with.
    kv: Vec<u64>,
    prefixes: Vec<Vec<u32>>,
    next_id: SeqId,
    counts: BTreeMap<&'static str, usize>,
}

impl Sim {
    fn new(num_blocks: usize, block_size: usize, seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let prefixes = (0..3).map(|_| (0..3 * block_size + 2).map(|_| 10 + rng.below(50) as u32).collect()).collect();
        Sim {
            m: BlockManager::new(num_blocks, block_size, seed),
            rng,
            live: BTreeMap::new(),
            waiting: Vec::new(),
            kv: vec![u64::MAX; num_blocks * block_size],
            prefixes,
            next_id: 0,
            counts: BTreeMap::new(),
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn random_live(&mut self) -> Option<SeqId> {
        let n = self.live.len();
        let i = self.rng.below(n);
        self.live.keys().nth(i).copied()
    }

    fn max_len(&self) -> usize {
        self.m.block_size() * 10
    }

    fn admit(&mut self, tokens: Vec<u32>) -> &'static str {
        let id = self.next_id;
        self.next_id += 1;
        let peek = self.m.cached_prefix_len(&tokens);
        let free_before = self.m.num_free_blocks();
        match self.m.allocate_prompt(id, &tokens) {
            Ok(hit) => {
                let c = hit.cached_tokens;
                assert_eq!(c, peek, "peek and allocation agree");
                assert!(c % self.m.block_size() == 0 && (c < tokens.len() || c == 0), "hit {c} of {}", tokens.len());
                assert_eq!(self.m.block_table(id).unwrap().len(), self.m.blocks_for(tokens.len()));
                self.count(if c > 0 { "prefix hit" } else { "prefix miss" });
                self.live.insert(id, Live::new(tokens, c));
                "allocate"
            }
            Err(KvError::OutOfBlocks { needed, available }) => {
                assert!(needed > available && available <= free_before);
                assert_eq!(self.m.num_free_blocks(), free_before);
                assert_eq!(self.m.block_table(id), Err(KvError::UnknownSequence(id)));
                self.waiting.push(tokens);
                self.count("allocate: out of blocks");
                "allocate (out of blocks)"
            }
            Err(e) => panic!("allocate: {e}"),
        }
    }

    /// Runs part of one sequence's uncomputed tokens, as the executor would.
    fn compute(&mut self, id: SeqId) -> &'static str {
        let bs = self.m.block_size();
        let live = &self.live[&id];
        let remaining = live.tokens.len() - live.computed;
        if remaining == 0 {
            return "compute (nothing)";
        }
        let end = live.computed + 1 + self.rng.below(remaining);
        if self.m.append_slots(id, end).is_err() {
            self.count("append: out of blocks");
            return "compute (out of blocks)";
        }
        let table = self.m.block_table(id).unwrap();
        let live = self.live.get_mut(&id).unwrap();
        for pos in live.computed..end {
            let block = table[pos / bs];
            assert_eq!(self.m.ref_count(block), Some(1), "seq {id} writes position {pos} into shared block {block}");
            self.kv[block as usize * bs + pos % bs] = live.idents[pos];
        }
        live.computed = end;
        self.m.publish_full_blocks(id, &live.tokens[..end]).unwrap();
        "compute"
    }

    fn step(&mut self) -> &'static str {
        let op = self.rng.below(100);
        let crowded = self.live.len() > 12;
        match op {
            0..=14 | 75..=82 if !crowded => {
                let base = self.rng.below(self.prefixes.len() + 1);
                let mut tokens = match self.prefixes.get(base) {
                    Some(p) => p[..self.rng.below(p.len() + 1)].to_vec(),
                    None => Vec::new(),
                };
                for _ in 0..self.rng.below(2 * self.m.block_size()) {
                    tokens.push(self.rng.token());
                }
                self.admit(tokens)
            }
            15..=22 if !self.waiting.is_empty() && !crowded => {
                let i = self.rng.below(self.waiting.len());
                let tokens = self.waiting.swap_remove(i);
                self.admit(tokens)
            }
            23..=54 => match self.random_live() {
                Some(id) => self.compute(id),
                None => "compute (none live)",
            },
            55..=69 => {
                // Decode: a fully computed sequence samples one token.
                let Some(id) = self.random_live() else { return "sample (none live)" };
                let max = self.max_len();
                let live = self.live.get_mut(&id).unwrap();
                if live.computed < live.tokens.len() || live.tokens.len() >= max {
                    return "sample (not ready)";
                }
                let t = self.rng.token();
                live.push(t);
                "sample"
            }
            70..=74 => {
                let Some(id) = self.random_live() else { return "reserve (none live)" };
                let want = self.live[&id].tokens.len() + self.rng.below(3);
                let before = self.m.block_table(id).unwrap().len();
                match self.m.append_slots(id, want) {
                    Ok(()) => assert!(self.m.block_table(id).unwrap().len() * self.m.block_size() >= want),
                    Err(KvError::OutOfBlocks { .. }) => assert_eq!(self.m.block_table(id).unwrap().len(), before),
                    Err(e) => panic!("append_slots: {e}"),
                }
                "reserve"
            }
            83..=88 => {
                let Some(id) = self.random_live() else { return "finish (none live)" };
                self.live.remove(&id);
                self.m.free(id).unwrap();
                "finish"
            }
            89..=95 => {
                // Preempt by recompute: the tokens wait, the blocks go (the cache may keep them).
                let Some(id) = self.random_live() else { return "preempt (none live)" };
                let live = self.live.remove(&id).unwrap();
                self.m.free(id).unwrap();
                self.waiting.push(live.tokens);
                "preempt"
            }
            _ => self.misuse(),
        }
    }

    /// Calls that must fail without changing anything.
    fn misuse(&mut self) -> &'static str {
        let unknown = self.next_id + 1000;
        let free = self.m.num_free_blocks();
        assert_eq!(self.m.free(unknown), Err(KvError::UnknownSequence(unknown)));
        assert_eq!(self.m.append_slots(unknown, 3), Err(KvError::UnknownSequence(unknown)));
        assert_eq!(self.m.publish_full_blocks(unknown, &[1, 2, 3]), Err(KvError::UnknownSequence(unknown)));
        if let Some(id) = self.random_live() {
            assert_eq!(self.m.allocate_prompt(id, &[1, 2, 3]), Err(KvError::SequenceExists(id)));
        }
        assert_eq!(self.m.num_free_blocks(), free);
        "misuse"
    }

    /// Every live sequence reads its own prefix back through its block table.
    fn check_kv(&self) -> Result<(), String> {
        let bs = self.m.block_size();
        for (&id, live) in &self.live {
            let table = self.m.block_table(id).map_err(|e| e.to_string())?;
            for pos in 0..live.computed {
                let slot = table[pos / bs] as usize * bs + pos % bs;
                if self.kv[slot] != live.idents[pos] {
                    return Err(format!("seq {id} reads foreign KV at position {pos} (slot {slot})"));
                }
            }
        }
        Ok(())
    }
}

fn run(num_blocks: usize, block_size: usize, seed: u64, ops: usize) {
    let mut sim = Sim::new(num_blocks, block_size, seed);
    for i in 0..ops {
        let op = sim.step();
        let check = sim.m.check_invariants().and_then(|()| sim.check_kv());
        if let Err(e) = check {
            panic!("seed {seed}, blocks {num_blocks}x{block_size}, op {i} ({op}): {e}");
        }
    }
    for id in std::mem::take(&mut sim.live).into_keys() {
        sim.m.free(id).unwrap();
    }
    sim.m.check_invariants().unwrap();
    assert_eq!((sim.m.num_used_blocks(), sim.m.num_free_blocks(), sim.m.num_sequences()), (0, num_blocks, 0));
    assert!((0..num_blocks as u32).all(|b| sim.m.ref_count(b) == Some(0)), "every block is free or evictable");

    let stats = sim.m.stats();
    eprintln!("seed {seed}: {:?} {stats:?}", sim.counts);
    for what in ["prefix hit", "prefix miss", "allocate: out of blocks", "append: out of blocks"] {
        assert!(sim.counts.get(what).copied().unwrap_or(0) >= 10, "seed {seed}: too few `{what}`: {:?}", sim.counts);
    }
    assert!(stats.evicted_blocks >= 10 && stats.hit_tokens > 0, "seed {seed}: {stats:?}");
}

#[test]
fn random_walk_keeps_invariants_and_every_sequence_reads_its_own_kv() {
    for seed in 1..=3 {
        run(16, 4, seed, 10_000);
    }
}

#[test]
fn random_walk_with_single_token_blocks() {
    run(20, 1, 7, 10_000);
}

#[test]
fn random_walk_with_large_blocks() {
    run(8, 16, 11, 10_000);
}

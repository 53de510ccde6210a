//! Hand-traced scenarios with exact block ids, ref counts and eviction order.

use super::*;

/// Everything observable through the public API, to prove a failed call changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    tables: Vec<(SeqId, Vec<u32>)>,
    refs: Vec<u32>,
    evictable: Vec<u32>,
    free: usize,
    cached: usize,
    stats: KvStats,
}

fn snapshot(m: &BlockManager, seqs: &[SeqId]) -> Snapshot {
    Snapshot {
        tables: seqs.iter().filter_map(|&s| m.block_table(s).ok().map(|t| (s, t.to_vec()))).collect(),
        refs: (0..m.num_blocks() as u32).map(|b| m.ref_count(b).unwrap()).collect(),
        evictable: m.evictable_blocks().collect(),
        free: m.num_free_blocks(),
        cached: m.num_cached_blocks(),
        stats: m.stats(),
    }
}

fn refs(m: &BlockManager, blocks: &[u32]) -> Vec<u32> {
    blocks.iter().map(|&b| m.ref_count(b).unwrap()).collect()
}

fn tokens(range: std::ops::Range<u32>) -> Vec<u32> {
    range.collect()
}

#[test]
fn identical_prompt_shares_published_full_blocks_and_gets_its_own_tail() {
    let mut m = BlockManager::new(8, 4, 42);
    let p = tokens(0..10);
    assert_eq!(m.allocate_prompt(1, &p), Ok(PrefixHit { cached_tokens: 0 }));
    assert_eq!(m.block_table(1).unwrap(), &[0, 1, 2]);
    assert_eq!(m.publish_full_blocks(1, &p), Ok(2), "blocks 0 and 1 are full, 2 holds 2 of 4");
    assert_eq!(m.publish_full_blocks(1, &p), Ok(0), "publishing is idempotent");

    assert_eq!(m.allocate_prompt(2, &p), Ok(PrefixHit { cached_tokens: 8 }));
    assert_eq!(m.block_table(2).unwrap(), &[0, 1, 3]);
    assert_eq!(refs(&m, &[0, 1, 2, 3]), vec![2, 2, 1, 1]);
    assert_eq!((m.num_used_blocks(), m.num_free_blocks(), m.num_cached_blocks()), (4, 4, 2));
    assert_eq!(m.stats(), KvStats { queried_tokens: 20, hit_tokens: 8, evicted_blocks: 0 });
    m.check_invariants().unwrap();

    m.free(1).unwrap();
    assert_eq!(refs(&m, &[0, 1, 2, 3]), vec![1, 1, 0, 1]);
    m.free(2).unwrap();
    assert_eq!(m.evictable_blocks().collect::<Vec<_>>(), vec![1, 0], "tail released first, so evicted first");
    assert_eq!((m.num_used_blocks(), m.num_free_blocks(), m.num_evictable_blocks()), (0, 8, 2));

    // Idle entries are revived by a hit; the tail comes off the free list (most recently freed).
    assert_eq!(m.allocate_prompt(3, &p), Ok(PrefixHit { cached_tokens: 8 }));
    assert_eq!(m.block_table(3).unwrap(), &[0, 1, 3]);
    assert_eq!(m.num_evictable_blocks(), 0);
    m.check_invariants().unwrap();
}

#[test]
fn prefix_hit_never_covers_the_last_prompt_token() {
    let mut m = BlockManager::new(8, 4, 0);
    let p = tokens(0..8);
    m.allocate_prompt(1, &p).unwrap();
    m.publish_full_blocks(1, &p).unwrap();
    assert_eq!(m.num_cached_blocks(), 2);

    // All 8 tokens are cached, but the last one must be computed: the hit drops the last block.
    assert_eq!(m.allocate_prompt(2, &p), Ok(PrefixHit { cached_tokens: 4 }));
    assert_eq!(m.block_table(2).unwrap(), &[0, 2]);
    assert_eq!(m.cached_prefix_len(&tokens(0..9)), 8, "one more token and both blocks count");
    assert_eq!(m.cached_prefix_len(&tokens(0..5)), 4);
    assert_eq!(m.cached_prefix_len(&tokens(0..4)), 0);
    assert_eq!(m.cached_prefix_len(&[0]), 0);
    assert_eq!(m.cached_prefix_len(&[]), 0);
    assert_eq!(m.cached_prefix_len(&[0, 1, 2, 9, 4, 5, 6, 7, 8]), 0, "a different first block misses everything");

    assert_eq!(m.allocate_prompt(3, &[]), Ok(PrefixHit { cached_tokens: 0 }));
    assert_eq!(m.block_table(3).unwrap(), &[] as &[u32]);
    m.check_invariants().unwrap();
}

#[test]
fn the_salt_separates_models() {
    let p = tokens(0..9);
    let mut a = BlockManager::new(8, 4, 1);
    a.allocate_prompt(1, &p).unwrap();
    a.publish_full_blocks(1, &p).unwrap();
    assert_eq!(a.cached_prefix_len(&p), 8);
    assert!(a.cached_block(block_hash(1, None, &p[..4])).is_some());
    assert_eq!(a.cached_block(block_hash(2, None, &p[..4])), None);
}

#[test]
fn idle_cached_blocks_are_evicted_least_recently_released_first() {
    let mut m = BlockManager::new(6, 4, 0);
    let (a, b, c) = (tokens(100..108), tokens(200..208), tokens(300..308));
    for (seq, p) in [(1, &a), (2, &b), (3, &c)] {
        m.allocate_prompt(seq, p).unwrap();
        m.publish_full_blocks(seq, p).unwrap();
    }
    assert_eq!([m.block_table(1).unwrap(), m.block_table(2).unwrap(), m.block_table(3).unwrap()], [&[0, 1], &[2, 3], &[4, 5]]);
    for seq in [2, 1, 3] {
        m.free(seq).unwrap();
    }
    assert_eq!(m.evictable_blocks().collect::<Vec<_>>(), vec![3, 2, 1, 0, 5, 4]);
    assert_eq!((m.num_free_blocks(), m.num_used_blocks()), (6, 0));

    // Nothing is on the free list: three fresh blocks evict b's two, then a's tail.
    assert_eq!(m.allocate_prompt(4, &tokens(900..912)), Ok(PrefixHit { cached_tokens: 0 }));
    assert_eq!(m.block_table(4).unwrap(), &[3, 2, 1]);
    assert_eq!(m.stats().evicted_blocks, 3);
    let with_next = |p: &[u32]| [p, &[7]].concat();
    assert_eq!(m.cached_prefix_len(&with_next(&b)), 0, "b fully evicted");
    assert_eq!(m.cached_prefix_len(&with_next(&a)), 4, "a keeps its head");
    assert_eq!(m.cached_prefix_len(&with_next(&c)), 8, "c untouched");
    assert_eq!(m.num_cached_blocks(), 3);

    // A hit revives c's head from the middle of the order; the next eviction still takes a's head.
    assert_eq!(m.allocate_prompt(5, &c[..5]), Ok(PrefixHit { cached_tokens: 4 }));
    assert_eq!(m.block_table(5).unwrap(), &[4, 0]);
    assert_eq!(m.evictable_blocks().collect::<Vec<_>>(), vec![5]);
    assert_eq!(m.cached_prefix_len(&with_next(&a)), 0);
    m.check_invariants().unwrap();
}

#[test]
fn failed_calls_change_nothing() {
    let mut m = BlockManager::new(4, 4, 0);
    let p = tokens(0..9);
    m.allocate_prompt(1, &p).unwrap();
    m.publish_full_blocks(1, &p).unwrap();
    m.free(1).unwrap();
    m.allocate_prompt(2, &tokens(50..52)).unwrap();
    let seqs = [1, 2, 3];
    let before = snapshot(&m, &seqs);
    assert_eq!((before.free, before.evictable.clone()), (3, vec![1, 0]));

    // The hit would revive 2 idle blocks, leaving only 1 of the 2 fresh ones this prompt needs.
    let long = [&p[..8], &tokens(60..65)].concat();
    assert_eq!(m.allocate_prompt(3, &long), Err(KvError::OutOfBlocks { needed: 2, available: 1 }));
    assert_eq!(m.append_slots(2, 17), Err(KvError::OutOfBlocks { needed: 4, available: 3 }));
    assert_eq!(m.allocate_prompt(2, &p), Err(KvError::SequenceExists(2)));
    assert_eq!(m.append_slots(9, 1), Err(KvError::UnknownSequence(9)));
    assert_eq!(m.publish_full_blocks(9, &p), Err(KvError::UnknownSequence(9)));
    assert_eq!(m.free(9), Err(KvError::UnknownSequence(9)));
    assert_eq!(m.block_table(9), Err(KvError::UnknownSequence(9)));
    assert_eq!(m.ref_count(4), None);
    assert_eq!(snapshot(&m, &seqs), before);
    m.check_invariants().unwrap();

    // With the other sequence gone the same prompt fits, reviving both idle blocks.
    m.free(2).unwrap();
    assert_eq!(m.allocate_prompt(3, &long), Ok(PrefixHit { cached_tokens: 8 }));
    assert_eq!(m.block_table(3).unwrap(), &[0, 1, 2, 3]);
    m.check_invariants().unwrap();
}

#[test]
fn append_slots_grows_to_cover_and_never_shrinks() {
    let mut m = BlockManager::new(8, 4, 0);
    m.allocate_prompt(1, &tokens(0..3)).unwrap();
    assert_eq!(m.block_table(1).unwrap(), &[0]);
    m.append_slots(1, 4).unwrap();
    assert_eq!(m.block_table(1).unwrap(), &[0]);
    m.append_slots(1, 5).unwrap();
    assert_eq!(m.block_table(1).unwrap(), &[0, 1]);
    m.append_slots(1, 13).unwrap();
    assert_eq!(m.block_table(1).unwrap(), &[0, 1, 2, 3]);
    m.append_slots(1, 2).unwrap();
    assert_eq!(m.block_table(1).unwrap().len(), 4);
    assert!(m.can_allocate(4) && !m.can_allocate(5));
    m.check_invariants().unwrap();
}

#[test]
fn a_block_computed_twice_is_cached_once() {
    let mut m = BlockManager::new(8, 4, 0);
    let p = tokens(0..5);
    // Both admitted before either computed its prompt: both miss.
    m.allocate_prompt(1, &p).unwrap();
    m.allocate_prompt(2, &p).unwrap();
    assert_eq!(m.publish_full_blocks(1, &p), Ok(1));
    assert_eq!(m.publish_full_blocks(2, &p), Ok(0), "block 0 already holds the hash");
    m.free(2).unwrap();
    assert_eq!(m.num_evictable_blocks(), 0, "the duplicate went back to the free list");
    m.free(1).unwrap();
    assert_eq!(m.evictable_blocks().collect::<Vec<_>>(), vec![0]);
    m.check_invariants().unwrap();
}

#[test]
fn publishing_only_counts_full_blocks_within_the_table() {
    let mut m = BlockManager::new(8, 4, 0);
    m.allocate_prompt(1, &tokens(0..6)).unwrap();
    assert_eq!(m.publish_full_blocks(1, &tokens(0..3)), Ok(0));
    assert_eq!(m.publish_full_blocks(1, &tokens(0..12)), Ok(2), "only 2 blocks are in the table");
    assert_eq!(m.num_cached_blocks(), 2);
    m.check_invariants().unwrap();
}

//! Paged-KV bookkeeping, in integers only: the KV cache is `num_blocks` fixed-size blocks of
//! `block_size` token slots, and each sequence owns a block table (slot of position `p` =
//! `table[p / block_size] * block_size + p % block_size`, as `ForwardBatch` computes it).
//!
//! Decisions, after vLLM v1's KV cache manager and nano-vllm's block manager:
//!
//! - **Automatic prefix caching.** Every full block whose KV has been computed is published under
//!   a chained content hash (`prefix_hash`). A new sequence reuses the longest published prefix
//!   in whole blocks, except its last token: at least one token is always computed so the step
//!   yields logits.
//! - **Idle cache entries stay until needed.** A published block whose last user is freed is kept
//!   (evictable) and reclaimed in least-recently-released order only when no never-cached block
//!   is left. A sequence's tail blocks are released before its head, so a partly evicted prefix
//!   loses its least shareable end first.
//! - **Shared blocks are never written.** A block with `ref_count > 1` is always full and already
//!   computed (a prefix hit, or a fork's full blocks); `fork` gives the child its own copy of a
//!   partly filled tail and returns the copy the executor must do. So no copy-on-write later.
//! - **All-or-nothing, never panic.** Every call that can fail returns `KvError` and leaves the
//!   state exactly as it was; `check_invariants` verifies the whole state and backs a seeded
//!   randomized test.

mod block_manager;
mod block_pool;
mod lru;
pub mod prefix_hash;

#[cfg(test)]
mod randomized_test;
#[cfg(test)]
mod scripted_test;

pub use block_manager::{BlockManager, KvStats, PrefixHit, RELEASED};
pub use prefix_hash::{block_hash, BlockHash};

/// The engine's id for a sequence (one per sampled continuation).
pub type SeqId = u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("out of KV cache blocks: {needed} needed, {available} available")]
    OutOfBlocks { needed: usize, available: usize },
    #[error("sequence {0} holds no KV blocks")]
    UnknownSequence(SeqId),
    #[error("sequence {0} already holds KV blocks")]
    SequenceExists(SeqId),
}

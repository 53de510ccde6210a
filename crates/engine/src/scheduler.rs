//! The scheduler: which sequences run this step, and how many tokens each. One rule covers
//! everything: each sequence's `num_computed` catches up to its token count under a per-step
//! token budget, so chunked prefill, prefix-cache hits and decode need no modes.
//!
//! Running sequences go first (oldest first); then waiting ones, ordered by `priority` (lower
//! first, as vLLM), then by their tenant's share of the work so far (tokens scheduled over its
//! weight: the least served tenant's request is admitted next), then arrival. With one tenant
//! that is arrival order. When the KV pool runs out, the newest running sequence is
//! preempted by recompute: its blocks are freed and it waits again with all its tokens, to be
//! re-admitted (often mostly from the prefix cache) later.

use std::collections::HashMap;
use std::sync::Arc;

use crate::kv::{BlockManager, KvError, KvStats, SeqId};
use crate::speculation::{propose_ngram, SpeculationConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most tokens computed in one step, over all sequences.
    pub max_num_batched_tokens: usize,
    /// Most sequences in one step.
    pub max_num_seqs: usize,
    pub block_size: usize,
    pub num_blocks: usize,
    /// Every layer reads only the last `kv_window` keys (a sliding window): blocks behind a
    /// sequence's window are handed back as it advances, so a sequence holds about a window's
    /// worth of blocks however long it grows. `None`: a layer may read the whole context.
    pub kv_window: Option<usize>,
    /// N-gram speculation: the model's default and limits (`crate::speculation`).
    pub speculation: SpeculationConfig,
}

/// One sequence's share of a step: compute `tokens[start..start + len]`, then its `drafts`
/// proposed tokens (`Scheduler::draft`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub id: SeqId,
    pub start: usize,
    pub len: usize,
    /// The chunk reaches the sequence's last token, so a new token is sampled from it.
    pub samples: bool,
    /// Proposed tokens verified in this step (0 unless the sequence speculates).
    pub drafts: usize,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub seqs: Vec<ScheduledSeq>,
    /// Sequences preempted (blocks freed, back to waiting) while making this schedule.
    pub preempted: Vec<SeqId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("prompt of {prompt} tokens plus {max_new} new tokens needs {needed} KV blocks; the pool has {available}")]
    NeverFits { prompt: usize, max_new: usize, needed: usize, available: usize },
    #[error("sequence {0} is already scheduled")]
    Duplicate(SeqId),
    #[error("empty prompt")]
    EmptyPrompt,
}

#[derive(Debug)]
struct SeqState {
    tokens: Vec<u32>,
    num_computed: usize,
    priority: i32,
    arrival: u64,
    /// Tokens of the prompt found in the prefix cache at the first admission.
    cached_prompt_tokens: Option<usize>,
    preemptions: usize,
    tenant: Option<Arc<str>>,
    /// Prompt plus most new tokens: proposals never reach past it.
    max_len: usize,
    speculate: bool,
    /// This step's proposed tokens.
    draft: Vec<u32>,
}

/// One tenant's standing: tokens scheduled for it over its weight, and its sequences in the
/// scheduler. A tenant that was idle starts level with the least served active one (no credit
/// saved up while away).
#[derive(Debug)]
struct TenantShare {
    weight: f64,
    served: f64,
    active: usize,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    blocks: BlockManager,
    seqs: HashMap<SeqId, SeqState>,
    /// Admitted, holding blocks, in admission order.
    running: Vec<SeqId>,
    /// Not holding blocks, ordered by (priority, arrival).
    waiting: Vec<SeqId>,
    next_arrival: u64,
    total_preemptions: u64,
    tenants: HashMap<Option<Arc<str>>, TenantShare>,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, salt: u64) -> Scheduler {
        assert!(cfg.max_num_batched_tokens > 0 && cfg.max_num_seqs > 0, "empty step budget: {cfg:?}");
        let blocks = BlockManager::new(cfg.num_blocks, cfg.block_size, salt);
        Scheduler { cfg, blocks, seqs: HashMap::new(), running: Vec::new(), waiting: Vec::new(), next_arrival: 0, total_preemptions: 0, tenants: HashMap::new() }
    }

    pub fn config(&self) -> SchedulerConfig {
        self.cfg
    }

    /// Queues a sequence. Rejected at once when `prompt + max_new` tokens could never fit the
    /// pool, so nothing waits forever.
    pub fn add(&mut self, id: SeqId, prompt: Vec<u32>, max_new: usize, priority: i32) -> Result<(), AdmissionError> {
        self.add_for(id, prompt, max_new, priority, None)
    }

    /// [`Scheduler::add`] for a tenant, whose share of admissions its weight sets.
    pub fn add_for(&mut self, id: SeqId, prompt: Vec<u32>, max_new: usize, priority: i32, tenant: Option<crate::Tenant>) -> Result<(), AdmissionError> {
        if prompt.is_empty() {
            return Err(AdmissionError::EmptyPrompt);
        }
        if self.seqs.contains_key(&id) {
            return Err(AdmissionError::Duplicate(id));
        }
        let mut needed = self.blocks.blocks_for(prompt.len() + max_new);
        if let Some(window) = self.cfg.kv_window {
            // A prompt chunk is computed before the blocks behind it go.
            needed = needed.min(self.blocks.blocks_for(window + prompt.len().max(self.cfg.max_num_batched_tokens)) + 1);
        }
        if needed > self.cfg.num_blocks {
            return Err(AdmissionError::NeverFits { prompt: prompt.len(), max_new, needed, available: self.cfg.num_blocks });
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        let name = tenant.as_ref().map(|t| t.name.clone());
        let level = self.tenants.values().filter(|t| t.active > 0).map(|t| t.served).fold(f64::INFINITY, f64::min);
        let share = self.tenants.entry(name.clone()).or_insert(TenantShare { weight: 1.0, served: 0.0, active: 0 });
        share.weight = f64::from(tenant.map_or(1, |t| t.weight.max(1)));
        if share.active == 0 && level.is_finite() {
            share.served = share.served.max(level);
        }
        share.active += 1;
        let (max_len, speculate) = (prompt.len().saturating_add(max_new), self.cfg.speculation.default_on);
        self.seqs.insert(id, SeqState { tokens: prompt, num_computed: 0, priority, arrival, cached_prompt_tokens: None, preemptions: 0, tenant: name, max_len, speculate, draft: Vec::new() });
        self.enqueue_waiting(id);
        Ok(())
    }

    /// Counts `tokens` scheduled for `id` against its tenant's share.
    fn charge(&mut self, id: SeqId, tokens: usize) {
        let tenant = &self.seqs[&id].tenant;
        if let Some(share) = self.tenants.get_mut(tenant) {
            share.served += tokens as f64 / share.weight;
        }
    }

    /// The waiting sequence to admit next: among the best priority, the one whose tenant is least
    /// served, the earliest among equals (`waiting` is in (priority, arrival) order).
    fn next_waiting(&self) -> usize {
        let Some(first) = self.waiting.first() else { return 0 };
        let best_priority = self.seqs[first].priority;
        let (mut best, mut best_served) = (0, f64::INFINITY);
        for (i, w) in self.waiting.iter().enumerate() {
            let s = &self.seqs[w];
            if s.priority != best_priority {
                break;
            }
            let served = self.tenants.get(&s.tenant).map_or(0.0, |t| t.served);
            if served < best_served {
                (best, best_served) = (i, served);
            }
        }
        best
    }

    fn enqueue_waiting(&mut self, id: SeqId) {
        let key = |s: &SeqState| (s.priority, s.arrival);
        let k = key(&self.seqs[&id]);
        let at = self.waiting.partition_point(|w| key(&self.seqs[w]) <= k);
        self.waiting.insert(at, id);
    }

    /// Whether `id` speculates (the model's default until set).
    pub fn set_speculative(&mut self, id: SeqId, on: bool) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.speculate = on;
        }
    }

    /// The tokens `id` proposed for this step.
    pub fn draft(&self, id: SeqId) -> &[u32] {
        self.seqs.get(&id).map_or(&[], |s| s.draft.as_slice())
    }

    /// Plans the next step.
    pub fn schedule(&mut self) -> Schedule {
        let mut out = Schedule::default();
        let mut budget = self.cfg.max_num_batched_tokens;
        // Speculation steps aside when the batch is busy or work is waiting; proposals take
        // logits rows beyond the one each running sequence may need.
        let spec = self.cfg.speculation;
        let mut spare_rows = if self.running.len() <= spec.max_running && self.waiting.is_empty() { self.cfg.max_num_seqs.saturating_sub(self.running.len()) } else { 0 };
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let s = &self.seqs[&id];
            let len = (s.tokens.len() - s.num_computed).min(budget);
            if len == 0 {
                i += 1;
                continue;
            }
            let total = s.num_computed + len;
            if !self.grow_or_preempt(id, total, &mut out.preempted) {
                // `id` itself was preempted: nothing at or after `i` is left to run.
                break;
            }
            let drafts = self.propose(id, len, (budget - len).min(spare_rows));
            spare_rows -= drafts;
            let s = &self.seqs[&id];
            out.seqs.push(ScheduledSeq { id, start: s.num_computed, len, samples: total == s.tokens.len(), drafts });
            self.charge(id, len + drafts);
            budget -= len + drafts;
            i += 1;
        }
        // Admit waiting sequences only when nobody was preempted this step (else they would
        // just take the blocks back).
        while budget > 0 && out.preempted.is_empty() && self.running.len() < self.cfg.max_num_seqs && !self.waiting.is_empty() {
            let next = self.next_waiting();
            let id = self.waiting[next];
            let s = self.seqs.get_mut(&id).expect("waiting sequences exist");
            let hit = match self.blocks.allocate_prompt(id, &s.tokens) {
                Ok(hit) => hit,
                Err(KvError::OutOfBlocks { .. }) => break,
                Err(e) => unreachable!("scheduler bookkeeping out of sync with the block manager: {e}"),
            };
            s.num_computed = hit.cached_tokens;
            s.cached_prompt_tokens.get_or_insert(hit.cached_tokens);
            let len = (s.tokens.len() - s.num_computed).min(budget);
            out.seqs.push(ScheduledSeq { id, start: s.num_computed, len, samples: s.num_computed + len == s.tokens.len(), drafts: 0 });
            self.charge(id, len);
            budget -= len;
            self.waiting.remove(next);
            self.running.push(id);
        }
        out
    }

    /// Proposes up to `room` tokens for `id`, decoding its one new token (`len`) this step, when
    /// it speculates and their KV slots are free without preempting anyone. Returns how many.
    fn propose(&mut self, id: SeqId, len: usize, room: usize) -> usize {
        let s = self.seqs.get_mut(&id).expect("running sequences exist");
        s.draft.clear();
        if !s.speculate || len != 1 || s.num_computed + 1 != s.tokens.len() {
            return 0;
        }
        let room = room.min(self.cfg.speculation.num_tokens).min(s.max_len.saturating_sub(s.tokens.len() + 1));
        let proposal = propose_ngram(&s.tokens, &self.cfg.speculation, room);
        if proposal.is_empty() || self.blocks.append_slots(id, s.tokens.len() + proposal.len()).is_err() {
            return 0;
        }
        s.draft.extend_from_slice(proposal);
        s.draft.len()
    }

    /// Makes `id`'s blocks cover `total` tokens, preempting the newest running sequences as
    /// needed. Returns false when `id` itself had to be preempted.
    fn grow_or_preempt(&mut self, id: SeqId, total: usize, preempted: &mut Vec<SeqId>) -> bool {
        loop {
            match self.blocks.append_slots(id, total) {
                Ok(()) => return true,
                Err(KvError::OutOfBlocks { .. }) => {
                    let victim = *self.running.last().expect("id is running");
                    self.preempt(victim);
                    preempted.push(victim);
                    if victim == id {
                        return false;
                    }
                }
                Err(e) => unreachable!("scheduler bookkeeping out of sync with the block manager: {e}"),
            }
        }
    }

    fn preempt(&mut self, id: SeqId) {
        self.blocks.free(id).expect("running sequences hold blocks");
        self.running.retain(|&r| r != id);
        let s = self.seqs.get_mut(&id).expect("running sequences exist");
        s.num_computed = 0;
        s.preemptions += 1;
        self.total_preemptions += 1;
        self.enqueue_waiting(id);
    }

    /// Records that a scheduled chunk was computed, with the first `accepted` of its proposed
    /// tokens (they join the sequence; the KV of the rest is overwritten when their positions are
    /// computed again): `num_computed` advances and newly full blocks are published to the
    /// prefix cache.
    pub fn computed(&mut self, seq: &ScheduledSeq, accepted: usize) {
        let s = self.seqs.get_mut(&seq.id).expect("scheduled sequences exist");
        let accepted = accepted.min(seq.drafts).min(s.draft.len());
        s.tokens.extend_from_slice(&s.draft[..accepted]);
        s.draft.clear();
        s.num_computed = seq.start + seq.len + accepted;
        // Publishing only fails for unknown sequences, which scheduled ones are not.
        let _ = self.blocks.publish_full_blocks(seq.id, &s.tokens[..s.num_computed]);
        if let Some(window) = self.cfg.kv_window {
            // The next token, at position `num_computed`, reads from here on.
            let _ = self.blocks.release_before(seq.id, (s.num_computed + 1).saturating_sub(window));
        }
    }

    /// Appends a sampled token; it is computed in a later step.
    pub fn append_token(&mut self, id: SeqId, token: u32) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.push(token);
        }
    }

    /// Removes a sequence (finished or aborted) and frees its blocks. Unknown ids are ignored.
    pub fn remove(&mut self, id: SeqId) {
        if let Some(s) = self.seqs.remove(&id) {
            if let Some(share) = self.tenants.get_mut(&s.tenant) {
                share.active -= 1;
            }
            if self.running.contains(&id) {
                let _ = self.blocks.free(id);
            }
            self.running.retain(|&r| r != id);
            self.waiting.retain(|&w| w != id);
        }
    }

    pub fn block_table(&self, id: SeqId) -> &[u32] {
        self.blocks.block_table(id).unwrap_or(&[])
    }

    pub fn tokens(&self, id: SeqId) -> &[u32] {
        self.seqs.get(&id).map(|s| s.tokens.as_slice()).unwrap_or(&[])
    }

    /// Prompt tokens served from the prefix cache at first admission.
    pub fn cached_prompt_tokens(&self, id: SeqId) -> usize {
        self.seqs.get(&id).and_then(|s| s.cached_prompt_tokens).unwrap_or(0)
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn total_preemptions(&self) -> u64 {
        self.total_preemptions
    }

    pub fn kv_stats(&self) -> KvStats {
        self.blocks.stats()
    }

    pub fn num_used_blocks(&self) -> usize {
        self.blocks.num_used_blocks()
    }

    pub fn blocks(&self) -> &BlockManager {
        &self.blocks
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }
}

#[cfg(test)]
mod tests;

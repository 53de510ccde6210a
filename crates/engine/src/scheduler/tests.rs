//! Scheduler tests with no model: the scheduler is integers.

use super::*;

fn cfg(budget: usize, seqs: usize, num_blocks: usize) -> SchedulerConfig {
    SchedulerConfig { max_num_batched_tokens: budget, max_num_seqs: seqs, block_size: 4, num_blocks, kv_window: None, speculation: SpeculationConfig::default() }
}

/// Pretends to run a schedule: marks chunks computed and appends `next` for sampling rows.
fn run_step(s: &mut Scheduler, sched: &Schedule, next: u32) {
    for seq in &sched.seqs {
        s.computed(seq, 0);
        if seq.samples {
            s.append_token(seq.id, next);
        }
    }
    s.blocks().check_invariants().unwrap();
}

fn prompt(len: usize, salt: u32) -> Vec<u32> {
    (0..len as u32).map(|i| i * 7 + salt * 1000).collect()
}

#[test]
fn token_budget_chunks_prefill_and_decode_is_one_token() {
    let mut s = Scheduler::new(cfg(8, 4, 64), 0);
    s.add(1, prompt(20, 1), 4, 0).unwrap();
    let lens: Vec<(usize, usize, bool)> = (0..4)
        .map(|_| {
            let sched = s.schedule();
            run_step(&mut s, &sched, 99);
            (sched.seqs[0].start, sched.seqs[0].len, sched.seqs[0].samples)
        })
        .collect();
    assert_eq!(lens, vec![(0, 8, false), (8, 8, false), (16, 4, true), (20, 1, true)]);
}

#[test]
fn running_sequences_go_before_waiting_ones() {
    let mut s = Scheduler::new(cfg(10, 4, 64), 0);
    s.add(1, prompt(6, 1), 8, 0).unwrap();
    let first = s.schedule();
    run_step(&mut s, &first, 5);
    s.add(2, prompt(12, 2), 8, 0).unwrap();
    let sched = s.schedule();
    assert_eq!(sched.seqs[0], ScheduledSeq { id: 1, start: 6, len: 1, samples: true, drafts: 0 });
    assert_eq!(sched.seqs[1], ScheduledSeq { id: 2, start: 0, len: 9, samples: false, drafts: 0 }, "the rest of the budget");
}

#[test]
fn max_num_seqs_caps_the_step() {
    let mut s = Scheduler::new(cfg(100, 2, 64), 0);
    for id in 0..4 {
        s.add(id, prompt(3, id as u32), 2, 0).unwrap();
    }
    let sched = s.schedule();
    assert_eq!(sched.seqs.iter().map(|x| x.id).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!((s.num_running(), s.num_waiting()), (2, 2));
}

#[test]
fn priority_orders_the_waiting_queue() {
    let mut s = Scheduler::new(cfg(100, 1, 64), 0);
    s.add(1, prompt(3, 1), 2, 5).unwrap();
    s.add(2, prompt(3, 2), 2, -1).unwrap();
    s.add(3, prompt(3, 3), 2, 5).unwrap();
    assert_eq!(s.schedule().seqs[0].id, 2, "lowest priority value first");
    s.remove(2);
    assert_eq!(s.schedule().seqs[0].id, 1, "then FCFS among equals");
}

#[test]
fn newest_running_sequence_is_preempted_when_blocks_run_out() {
    // 4 blocks of 4 tokens: two 7-token prompts take 2 blocks each; growing either needs a fifth.
    let mut s = Scheduler::new(cfg(100, 4, 4), 0);
    s.add(1, prompt(7, 1), 8, 0).unwrap();
    s.add(2, prompt(7, 2), 8, 0).unwrap();
    let sched = s.schedule();
    assert_eq!(sched.seqs.len(), 2);
    run_step(&mut s, &sched, 9); // both now have 8 tokens, 7 computed
    let sched = s.schedule(); // both fit position 7 in their second block
    run_step(&mut s, &sched, 9); // 9 tokens: position 8 needs a third block each
    let sched = s.schedule();
    assert_eq!(sched.preempted, vec![2], "the newest is preempted");
    assert_eq!(sched.seqs, vec![ScheduledSeq { id: 1, start: 8, len: 1, samples: true, drafts: 0 }]);
    assert_eq!((s.num_running(), s.num_waiting(), s.total_preemptions()), (1, 1, 1));
    assert_eq!(s.tokens(2).len(), 9, "a preempted sequence keeps its tokens for recompute");
    s.remove(1);
    let sched = s.schedule();
    assert_eq!(sched.seqs[0].id, 2);
    assert!(sched.seqs[0].start < 9, "recomputes what it lost (minus prefix-cache hits)");
}

#[test]
fn a_request_that_can_never_fit_is_rejected_at_admission() {
    let mut s = Scheduler::new(cfg(100, 4, 4), 0);
    assert!(matches!(s.add(1, prompt(10, 1), 7, 0), Err(AdmissionError::NeverFits { needed: 5, available: 4, .. })));
    assert_eq!(s.add(2, vec![], 4, 0), Err(AdmissionError::EmptyPrompt));
    s.add(3, prompt(10, 1), 6, 0).unwrap();
    assert_eq!(s.add(3, prompt(1, 1), 1, 0), Err(AdmissionError::Duplicate(3)));
}

#[test]
fn removing_frees_blocks_and_nothing_leaks() {
    let mut s = Scheduler::new(cfg(16, 8, 32), 7);
    for id in 0..6 {
        s.add(id, prompt(9, id as u32), 4, 0).unwrap();
    }
    for step in 0..5 {
        let sched = s.schedule();
        run_step(&mut s, &sched, 100 + step);
    }
    assert!(s.num_used_blocks() > 0);
    for id in 0..6 {
        s.remove(id);
    }
    assert_eq!(s.num_used_blocks(), 0);
    assert!(s.is_idle());
    s.blocks().check_invariants().unwrap();
}

#[test]
fn identical_prompts_hit_the_prefix_cache() {
    let mut s = Scheduler::new(cfg(64, 8, 32), 0);
    s.add(1, prompt(10, 1), 4, 0).unwrap();
    let sched = s.schedule();
    run_step(&mut s, &sched, 1);
    s.add(2, prompt(10, 1), 4, 0).unwrap();
    let sched = s.schedule();
    let second = sched.seqs.iter().find(|x| x.id == 2).unwrap();
    assert_eq!((second.start, second.len), (8, 2), "two full blocks come from the cache");
    assert_eq!(s.cached_prompt_tokens(2), 8);
}

/// With every layer windowed, a sequence hands back the blocks behind its window as it grows:
/// it holds about a window's worth however long it runs (more tokens than the pool holds), and
/// the window's own blocks stay in its table.
#[test]
fn a_sliding_window_hands_back_the_blocks_behind_it() {
    let window = 10;
    let mut s = Scheduler::new(SchedulerConfig { kv_window: Some(window), ..cfg(8, 2, 12) }, 0);
    // 100 tokens would need 25 blocks of 4: more than the pool holds, admitted all the same.
    s.add(1, prompt(12, 1), 88, 0).unwrap();
    let mut most_used = 0;
    for step in 0..90 {
        let sched = s.schedule();
        assert!(sched.preempted.is_empty(), "step {step}: preempted {:?}", sched.preempted);
        run_step(&mut s, &sched, 3 + step as u32 % 5);
        most_used = most_used.max(s.num_used_blocks());
        let first_read = (s.seqs[&1].num_computed + 1).saturating_sub(window);
        let table = s.block_table(1);
        assert!(table[first_read / 4..].iter().all(|&b| b != crate::kv::RELEASED), "step {step}: the window's blocks are gone: {table:?}");
    }
    assert!(most_used <= window.div_ceil(4) + 3, "held up to {most_used} blocks");
    assert!(s.block_table(1).iter().filter(|&&b| b == crate::kv::RELEASED).count() > 15);
    s.remove(1);
    assert_eq!(s.num_used_blocks(), 0);
    s.blocks().check_invariants().unwrap();
}

/// Blocks handed back behind a window are published: an identical prompt still hits them.
#[test]
fn blocks_behind_a_window_stay_in_the_prefix_cache() {
    let mut s = Scheduler::new(SchedulerConfig { kv_window: Some(6), ..cfg(16, 2, 32) }, 0);
    s.add(1, prompt(12, 1), 20, 0).unwrap();
    for step in 0..12 {
        let sched = s.schedule();
        run_step(&mut s, &sched, 7 + step);
    }
    assert_eq!(s.block_table(1)[0], crate::kv::RELEASED, "the first prompt block is behind the window");
    s.add(2, prompt(12, 1), 4, 0).unwrap();
    let sched = s.schedule();
    let second = sched.seqs.iter().find(|x| x.id == 2).unwrap();
    assert_eq!(second.start, 8, "two full prompt blocks come from the cache");
    s.blocks().check_invariants().unwrap();
}

/// One tenant's burst does not hold another's request in the queue: with room for one sequence
/// at a time, tenant B's request (added after A's five) is admitted as soon as the first of A's
/// ends, and then the two alternate; with weights, the heavier tenant gets more turns.
#[test]
fn tenants_share_admissions_by_weight() {
    let tenant = |name: &str, weight: u32| Some(crate::Tenant { name: name.into(), weight });
    let run = |weights: (u32, u32)| -> Vec<u64> {
        let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 64, max_num_seqs: 1, block_size: 4, num_blocks: 64, kv_window: None, speculation: SpeculationConfig::default() }, 0);
        for id in 1..=6 {
            s.add_for(id, prompt(4, id as u32), 2, 0, tenant("a", weights.0)).unwrap();
        }
        for id in 11..=16 {
            s.add_for(id, prompt(4, id as u32), 2, 0, tenant("b", weights.1)).unwrap();
        }
        let mut order = Vec::new();
        while order.len() < 8 {
            let plan = s.schedule();
            let seq = plan.seqs[0];
            s.computed(&seq, 0);
            order.push(seq.id);
            s.remove(seq.id);
        }
        order
    };
    assert_eq!(run((1, 1)), [1, 11, 2, 12, 3, 13, 4, 14]);
    let weighted = run((3, 1));
    let a_turns = weighted.iter().filter(|&&id| id < 10).count();
    assert!(a_turns >= 5, "weight 3 against 1 gets most turns: {weighted:?}");
    // Without tenants: arrival order, as before.
    let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 64, max_num_seqs: 1, block_size: 4, num_blocks: 64, kv_window: None, speculation: SpeculationConfig::default() }, 0);
    for id in [7, 3, 5] {
        s.add(id, prompt(4, id as u32), 2, 0).unwrap();
    }
    let first = s.schedule().seqs[0].id;
    assert_eq!(first, 7);
}

fn speculating(budget: usize, seqs: usize, num_blocks: usize) -> SchedulerConfig {
    SchedulerConfig { speculation: SpeculationConfig { default_on: true, num_tokens: 4, max_running: 2, ..SpeculationConfig::default() }, ..cfg(budget, seqs, num_blocks) }
}

/// A prompt whose end ("1 2") occurred before, followed by "3 4 5 6 7".
fn repetitive(salt: u32) -> Vec<u32> {
    let mut p: Vec<u32> = (1..=7).map(|t| t + salt * 100).collect();
    p.extend([1 + salt * 100, 2 + salt * 100]);
    p
}

#[test]
fn a_decoding_sequence_proposes_what_followed_its_last_tokens() {
    let mut s = Scheduler::new(speculating(64, 8, 64), 0);
    s.add(1, repetitive(0), 20, 0).unwrap();
    let prefill = s.schedule();
    assert_eq!(prefill.seqs[0].drafts, 0, "a prompt chunk does not speculate");
    run_step(&mut s, &prefill, 3);
    let decode = s.schedule();
    // "... 1 2 3": the 3-gram "1 2 3" occurred at the start, followed by 4 5 6 7.
    assert_eq!((decode.seqs[0].len, decode.seqs[0].drafts), (1, 4));
    assert_eq!(s.draft(1), &[4, 5, 6, 7]);
    // Two proposals confirmed: they join the tokens, the next token follows them.
    s.computed(&decode.seqs[0], 2);
    s.append_token(1, 9);
    assert_eq!(&s.tokens(1)[9..], &[3, 4, 5, 9]);
    let next = s.schedule();
    assert_eq!((next.seqs[0].start, next.seqs[0].len), (12, 1), "the rejected proposals' positions are computed again");
    s.blocks().check_invariants().unwrap();
}

#[test]
fn speculation_steps_aside_when_busy_and_never_preempts() {
    // Three running sequences with `max_running` 2: nobody proposes.
    let mut s = Scheduler::new(speculating(64, 8, 64), 0);
    for id in 1..=3 {
        s.add(id, repetitive(id as u32), 20, 0).unwrap();
    }
    let prefill = s.schedule();
    run_step(&mut s, &prefill, 3);
    assert!(s.schedule().seqs.iter().all(|q| q.drafts == 0));

    // Proposals never run past max_tokens: 9 prompt tokens and 3 new ones leave room for one
    // proposal beside the token being decoded.
    let mut s = Scheduler::new(speculating(64, 8, 64), 0);
    s.add(1, repetitive(0), 3, 0).unwrap();
    let prefill = s.schedule();
    run_step(&mut s, &prefill, 3);
    assert_eq!(s.schedule().seqs[0].drafts, 1);

    // Proposals that need a block nobody has free are not made (nobody is preempted for them);
    // with one more block in the pool they are.
    for (num_blocks, drafts) in [(3, 0), (4, 3)] {
        let mut s = Scheduler::new(speculating(64, 8, num_blocks), 0);
        s.add(1, vec![1, 2, 3, 4, 5, 1, 2], 5, 0).unwrap();
        s.add(2, vec![50, 51, 52], 1, 0).unwrap();
        let prefill = s.schedule();
        run_step(&mut s, &prefill, 3);
        let decode = s.schedule();
        assert!(decode.preempted.is_empty());
        assert_eq!(decode.seqs[0].drafts, drafts, "{num_blocks} blocks");
        s.blocks().check_invariants().unwrap();
    }
}

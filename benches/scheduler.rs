//! One engine step's bookkeeping at 256 running decode sequences: `schedule()` plus the block
//! manager work it drives, and the `computed` / `append_token` updates after the step. Goal:
//! under 50 µs per step, so scheduling never shows next to a forward pass.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rill_engine::{Scheduler, SchedulerConfig};

const SEQS: u64 = 256;
const PROMPT: usize = 128;

fn decode_scheduler() -> Scheduler {
    let cfg = SchedulerConfig { max_num_batched_tokens: 8192, max_num_seqs: SEQS as usize, block_size: 16, num_blocks: 16384, kv_window: None, speculation: Default::default() };
    let mut s = Scheduler::new(cfg, 0);
    for id in 0..SEQS {
        let prompt: Vec<u32> = (0..PROMPT as u32).map(|t| t * 31 + id as u32 * 7919).collect();
        s.add(id, prompt, 100_000, 0).expect("fits");
    }
    // Prefill everything, so every later step is 256 single-token decodes.
    while s.schedule_and_complete(1) > SEQS as usize {}
    s
}

trait Step {
    /// Schedules one step, marks it computed and appends `token` to every sampling sequence;
    /// returns the tokens scheduled.
    fn schedule_and_complete(&mut self, token: u32) -> usize;
}

impl Step for Scheduler {
    fn schedule_and_complete(&mut self, token: u32) -> usize {
        let sched = self.schedule();
        let mut n = 0;
        for seq in &sched.seqs {
            self.computed(seq, 0);
            if seq.samples {
                self.append_token(seq.id, token);
            }
            n += seq.len;
        }
        n
    }
}

/// Decode steps before the sequences are rebuilt (untimed), so the pool never fills up.
const STEPS_PER_SETUP: u64 = 512;

fn bench(c: &mut Criterion) {
    c.bench_function("schedule_step_256_decoding_sequences", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut s = decode_scheduler();
                let n = STEPS_PER_SETUP.min(iters - done);
                let started = Instant::now();
                for step in 0..n {
                    let scheduled = s.schedule_and_complete(step as u32 % 40_000);
                    assert_eq!(scheduled, SEQS as usize);
                }
                total += started.elapsed();
                done += n;
            }
            total
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
